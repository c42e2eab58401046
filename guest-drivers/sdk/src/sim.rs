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
//! driver must pass.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::port::Host;
use crate::{DriverError, Leadership, LogLevel, NodeId, Peer};

pub mod cluster;

/// A node's key-value storage; clones share it.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    map: Rc<RefCell<BTreeMap<Vec<u8>, Vec<u8>>>>,
    synced_writes: Rc<Cell<u64>>,
}

impl MemStorage {
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
        let mut map = self.storage.map.borrow_mut();
        for (k, v) in puts {
            map.insert(k.clone(), v.clone());
        }
        for k in deletes {
            map.remove(k);
        }
        if sync {
            self.storage
                .synced_writes
                .set(self.storage.synced_writes.get() + 1);
        }
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
