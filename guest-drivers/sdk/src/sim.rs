//! In-memory hosts for native tests and simulations of drivers (feature
//! `sim`).
//!
//! [`SimHost`] implements [`Host`] over a [`MemStorage`] that outlives the
//! driver instance (a "crash" drops the instance and keeps the storage, as
//! the real host does), a clock shared by a simulated cluster, and queues of
//! everything the driver emitted (messages, leadership reports, completions,
//! logs) for the test to route and check.
//!
//! [`cluster`] builds a deterministic simulated cluster of driver instances
//! on these hosts, with the single-serving-leader check every replicated
//! driver must pass; [`contract`] is the suite of tests every driver runs in
//! it ([`contract_suite!`](crate::contract_suite)).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::port::Host;
use crate::{Driver, DriverError, Leadership, LogLevel, NodeId, Peer};

pub mod cluster;
pub mod contract;

/// What the contract suite needs of a replicated driver beyond its exports:
/// the bounds it claims for its leases, and the state a node has applied,
/// which no export reveals (a follower answers `load-high-water` with
/// `not-leader`) but which shows that a node caught up. Implemented by each
/// replicated driver under its `sim` feature, so that release builds carry
/// nothing for the simulator.
pub trait SimDriver: Driver {
    /// The longest lease, in ms from when it is reported, the driver grants
    /// with the default timing options. The contract suite checks it, and
    /// that it is at most an election timeout
    /// ([`contract::ELECTION_TIMEOUT_MS`]).
    const MAX_LEASE_MS: u64 = contract::ELECTION_TIMEOUT_MS;

    /// Whether, in the contract's scenarios, no leadership starts serving
    /// before every older lease ran out, even one its holder ended early by
    /// reporting again: the conservative reading
    /// ([`cluster::assert_single_serving_leader`]). The suite checks it when
    /// true; the host's own model
    /// ([`cluster::assert_single_serving_leader_host_model`]) always.
    const HONOURS_EVERY_LEASE: bool = false;

    /// The high water this instance has applied (the replicated state
    /// machine's, not necessarily committed cluster-wide yet).
    fn applied_high_water(&self) -> u64;
}

/// The value a key had before a write, `None` if absent.
type Undo = (Vec<u8>, Option<Vec<u8>>);

/// A node's key-value storage; clones share it.
///
/// It models what a power cut would leave: a synced write makes durable
/// everything written before it (as an fsync of the host's store does);
/// writes since the last synced one can be lost together
/// ([`MemStorage::lose_unsynced`]).
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    map: Rc<RefCell<BTreeMap<Vec<u8>, Vec<u8>>>>,
    synced_writes: Rc<Cell<u64>>,
    /// How to undo every write since the last synced one, oldest first.
    unsynced: Rc<RefCell<Vec<Undo>>>,
}

impl MemStorage {
    /// Apply `puts` then `deletes`; with `sync`, everything written so far
    /// becomes durable.
    fn write(&self, puts: &[(Vec<u8>, Vec<u8>)], deletes: &[Vec<u8>], sync: bool) {
        let mut map = self.map.borrow_mut();
        let mut unsynced = self.unsynced.borrow_mut();
        for (k, v) in puts {
            let old = map.insert(k.clone(), v.clone());
            if !sync {
                unsynced.push((k.clone(), old));
            }
        }
        for k in deletes {
            let old = map.remove(k);
            if !sync {
                unsynced.push((k.clone(), old));
            }
        }
        if sync {
            unsynced.clear();
            self.synced_writes.set(self.synced_writes.get() + 1);
        }
    }

    /// A power cut: undo every write made since the last synced one.
    pub fn lose_unsynced(&self) {
        let mut map = self.map.borrow_mut();
        for (k, old) in self.unsynced.borrow_mut().drain(..).rev() {
            match old {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
    }

    /// Number of keys stored.
    pub fn len(&self) -> usize {
        self.map.borrow().len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.map.borrow().is_empty()
    }

    /// Total bytes of keys and values.
    pub fn bytes(&self) -> usize {
        self.map
            .borrow()
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum()
    }

    /// Writes made with `sync`.
    pub fn synced_writes(&self) -> u64 {
        self.synced_writes.get()
    }

    /// Keys starting with `prefix`.
    pub fn count_prefix(&self, prefix: &[u8]) -> usize {
        self.map
            .borrow()
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .count()
    }
}

/// A clock shared by the hosts of a simulated cluster, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct SimClock(Rc<Cell<u64>>);

impl SimClock {
    /// The current time.
    pub fn now(&self) -> u64 {
        self.0.get()
    }

    /// Set the time; it never goes backwards.
    pub fn set(&self, ms: u64) {
        self.0.set(self.0.get().max(ms));
    }
}

/// A host for one driver instance.
#[derive(Debug)]
pub struct SimHost {
    /// The node this host runs.
    pub node: NodeId,
    /// The node's storage, shared with later instances.
    pub storage: MemStorage,
    /// The cluster's clock.
    pub clock: SimClock,
    /// Messages sent and not yet routed: `(to, payload)`.
    pub outbox: RefCell<Vec<(NodeId, Vec<u8>)>>,
    /// Leadership reports with the time they were made.
    pub reports: RefCell<Vec<(u64, Leadership)>>,
    /// Completed requests.
    pub completions: RefCell<Vec<(u64, Result<u64, DriverError>)>>,
    /// Log lines.
    pub logs: RefCell<Vec<(LogLevel, String)>>,
    /// Every membership reported, oldest first.
    pub memberships: RefCell<Vec<Vec<Peer>>>,
    /// Print log lines of at most this severity to stderr (0 = error ... 4 =
    /// trace); `None` prints nothing.
    pub echo: Option<u8>,
}

impl SimHost {
    /// A host for `node` over `storage` and `clock`.
    pub fn new(node: NodeId, storage: MemStorage, clock: SimClock) -> Self {
        SimHost {
            node,
            storage,
            clock,
            outbox: RefCell::default(),
            reports: RefCell::default(),
            completions: RefCell::default(),
            logs: RefCell::default(),
            memberships: RefCell::default(),
            echo: None,
        }
    }

    /// The last membership reported, if any.
    pub fn last_membership(&self) -> Option<Vec<Peer>> {
        self.memberships.borrow().last().cloned()
    }

    /// The last leadership report, if any.
    pub fn last_report(&self) -> Option<Leadership> {
        self.reports.borrow().last().map(|(_, r)| *r)
    }

    /// Take the outcome of `request` if it has completed; panics if it was
    /// completed more than once.
    pub fn take_completion(&self, request: u64) -> Option<Result<u64, DriverError>> {
        let mut all = self.completions.borrow_mut();
        let found: Vec<usize> = all
            .iter()
            .enumerate()
            .filter(|(_, (r, _))| *r == request)
            .map(|(i, _)| i)
            .collect();
        assert!(
            found.len() <= 1,
            "request {request} completed {} times",
            found.len()
        );
        found.first().map(|&i| all.remove(i).1)
    }
}

fn level_rank(level: LogLevel) -> u8 {
    match level {
        LogLevel::Error => 0,
        LogLevel::Warn => 1,
        LogLevel::Info => 2,
        LogLevel::Debug => 3,
        LogLevel::Trace => 4,
    }
}

impl Host for SimHost {
    fn send(&self, to: NodeId, payload: &[u8]) {
        self.outbox.borrow_mut().push((to, payload.to_vec()));
    }

    fn storage_get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.storage.map.borrow().get(key).cloned()
    }

    fn storage_write(
        &self,
        puts: &[(Vec<u8>, Vec<u8>)],
        deletes: &[Vec<u8>],
        sync: bool,
    ) -> Result<(), DriverError> {
        self.storage.write(puts, deletes, sync);
        Ok(())
    }

    fn storage_scan(&self, start: &[u8], end: &[u8], limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
        let map = self.storage.map.borrow();
        map.range(start.to_vec()..)
            .take_while(|(k, _)| end.is_empty() || k.as_slice() < end)
            .take(limit as usize)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn now_ms(&self) -> u64 {
        self.clock.now()
    }

    fn report_leadership(&self, report: Leadership) {
        self.reports.borrow_mut().push((self.clock.now(), report));
    }

    fn completed(&self, request: u64, outcome: Result<u64, DriverError>) {
        self.completions.borrow_mut().push((request, outcome));
    }

    fn log(&self, level: LogLevel, message: &str) {
        if self.echo.is_some_and(|max| level_rank(level) <= max) {
            eprintln!(
                "[{} node {}] {level:?} {message}",
                self.clock.now(),
                self.node
            );
        }
        self.logs.borrow_mut().push((level, message.to_string()));
    }

    fn report_membership(&self, members: &[Peer]) {
        self.memberships.borrow_mut().push(members.to_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(host: &SimHost, key: &[u8]) -> Option<Vec<u8>> {
        host.storage_get(key)
    }

    #[test]
    fn a_power_cut_loses_exactly_the_writes_since_the_last_sync() {
        let storage = MemStorage::default();
        let host = SimHost::new(1, storage.clone(), SimClock::default());
        let put = |k: &[u8], v: &[u8]| (k.to_vec(), v.to_vec());
        host.storage_write(&[put(b"a", b"1")], &[], false).unwrap();
        host.storage_write(&[put(b"b", b"1")], &[], true).unwrap();
        host.storage_write(&[put(b"a", b"2"), put(b"c", b"1")], &[], false)
            .unwrap();
        host.storage_write(&[put(b"a", b"3")], &[b"b".to_vec()], false)
            .unwrap();
        storage.lose_unsynced();
        assert_eq!(get(&host, b"a"), Some(b"1".to_vec()), "synced by b's write");
        assert_eq!(
            get(&host, b"b"),
            Some(b"1".to_vec()),
            "the delete is undone"
        );
        assert_eq!(get(&host, b"c"), None);
        assert_eq!(storage.synced_writes(), 1);
        storage.lose_unsynced();
        assert_eq!(storage.len(), 2, "nothing more to lose");
    }
}
