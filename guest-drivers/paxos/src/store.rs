//! omnipaxos's [`Storage`] over the host's key-value storage, and the
//! driver's own keys (membership, base state).
//!
//! # Keys (in the driver's namespace)
//!
//! | key                     | value                          | written synced |
//! |-------------------------|--------------------------------|----------------|
//! | `op/promise`            | postcard `Ballot`              | yes            |
//! | `op/accepted-round`     | postcard `Ballot`              | yes            |
//! | `op/log/<u64 BE index>` | postcard [`Command`]           | yes            |
//! | `op/decided`            | u64 BE                         | only with others |
//! | `op/compacted`          | u64 BE                         | yes            |
//! | `op/snapshot`           | postcard [`HwState`]           | yes            |
//! | `op/stopsign`           | postcard `StopSign`            | yes            |
//! | `op/generation`         | u64 BE (single voter only)     | yes            |
//! | `membership`            | postcard [`Membership`]        | yes            |
//! | `base`                  | postcard [`HwState`]           | yes            |
//!
//! (`base` is also the whole replicated state of a single-voter
//! configuration, rewritten by each request.)
//!
//! Every batch omnipaxos writes ([`Storage::write_atomically`] or a single
//! setter) is one atomic `storage-write`. It is synced unless it only moves
//! the decided index: a promise, an accepted round and accepted entries are
//! thus durable before omnipaxos queues the Promise / Accepted that reports
//! them, and the host sends only after the export returns. A lost decided
//! index is harmless: a node relearns it from the leader, and the decided
//! entries themselves are durable on a quorum.
//!
//! Log entries are keyed by their absolute index (as if never compacted),
//! big-endian so that key order is index order. The stored entries are
//! exactly `[compacted, compacted + len)`: trimming and setting the
//! compacted index always come together in one omnipaxos batch.
//!
//! `membership` and `base` belong to the driver: the configuration this
//! node runs (omnipaxos's `ClusterConfig` plus addresses) and the state the
//! configuration started from. On a reconfiguration every `op/` key is
//! deleted in the same write that stores the new `membership` and `base`
//! ([`switch_config`]): the next configuration's omnipaxos starts on empty
//! storage.

use std::collections::BTreeMap;
use std::error::Error;
use std::rc::Rc;

use omnipaxos::ballot_leader_election::Ballot;
use omnipaxos::storage::{StopSign, Storage, StorageOp, StorageResult};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tsohost_guest_sdk::port::Host;
use tsohost_guest_sdk::storage::decode_u64;
use tsohost_guest_sdk::{DriverError, NodeId, Peer};

use crate::state::{Command, HwState};

const PROMISE: &[u8] = b"op/promise";
const ACCEPTED_ROUND: &[u8] = b"op/accepted-round";
const DECIDED: &[u8] = b"op/decided";
const COMPACTED: &[u8] = b"op/compacted";
const SNAPSHOT: &[u8] = b"op/snapshot";
const STOPSIGN: &[u8] = b"op/stopsign";
const LOG: &[u8] = b"op/log/";
const GENERATION: &[u8] = b"op/generation";
/// All omnipaxos keys: `op/` up to (excluding) `op0`.
const OP_START: &[u8] = b"op/";
const OP_END: &[u8] = b"op0";
const LOG_END: &[u8] = b"op/log0";
const MEMBERSHIP: &[u8] = b"membership";
const BASE: &[u8] = b"base";

/// Why a storage operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The host refused or failed the write.
    #[error("host storage: {0:?}")]
    Host(DriverError),
    /// A stored value cannot be what this driver wrote.
    #[error("storage is corrupt: {0}")]
    Corrupt(String),
    /// A value did not (de)serialize.
    #[error("codec: {0}")]
    Codec(#[from] postcard::Error),
    /// omnipaxos asked for something the log cannot do.
    #[error("{0}")]
    Invalid(String),
}

impl From<StoreError> for DriverError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Host(e) => e,
            other => DriverError::Storage(other.to_string()),
        }
    }
}

/// A configuration as this driver stores it: omnipaxos's configuration id
/// and the members with their peer addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// omnipaxos's `configuration_id`: 1 for the bootstrap configuration,
    /// +1 for each reconfiguration.
    pub config_id: u32,
    /// The voters, sorted by id.
    pub members: Vec<(NodeId, String)>,
}

impl Membership {
    /// The voters' ids.
    pub fn ids(&self) -> Vec<NodeId> {
        self.members.iter().map(|(id, _)| *id).collect()
    }

    /// Whether `id` is a voter.
    pub fn contains(&self, id: NodeId) -> bool {
        self.members.iter().any(|(m, _)| *m == id)
    }

    /// The members as WIT peers.
    pub fn peers(&self) -> Vec<Peer> {
        self.members
            .iter()
            .map(|(id, address)| Peer {
                id: *id,
                address: address.clone(),
            })
            .collect()
    }

    /// Votes needed for a majority.
    pub fn quorum(&self) -> usize {
        self.members.len() / 2 + 1
    }
}

fn log_key(idx: usize) -> Vec<u8> {
    let mut k = LOG.to_vec();
    k.extend_from_slice(&(idx as u64).to_be_bytes());
    k
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    Ok(postcard::to_stdvec(v)?)
}

fn get<T: DeserializeOwned>(host: &dyn Host, key: &[u8]) -> Result<Option<T>, StoreError> {
    host.storage_get(key)
        .map(|bytes| postcard::from_bytes(&bytes).map_err(StoreError::from))
        .transpose()
}

fn get_usize(host: &dyn Host, key: &[u8]) -> Result<usize, StoreError> {
    match host.storage_get(key) {
        None => Ok(0),
        Some(b) => decode_u64(&b)
            .map(|v| v as usize)
            .ok_or_else(|| StoreError::Corrupt(format!("{} is not a u64", show(key)))),
    }
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// The stored membership, if this node has one.
pub fn membership(host: &dyn Host) -> Result<Option<Membership>, StoreError> {
    get(host, MEMBERSHIP)
}

/// The state the current configuration started from.
pub fn base(host: &dyn Host) -> Result<HwState, StoreError> {
    Ok(get(host, BASE)?.unwrap_or_default())
}

/// Store the state of a single-voter configuration (synced).
pub fn set_base(host: &dyn Host, base: &HwState) -> Result<(), StoreError> {
    host.storage_write(&[(BASE.to_vec(), enc(base)?)], &[], true)
        .map_err(StoreError::Host)
}

/// Take the next generation of a single-voter configuration (synced).
pub fn next_generation(host: &dyn Host) -> Result<u32, StoreError> {
    let current = get_usize(host, GENERATION)? as u64;
    let next = u32::try_from(current + 1)
        .map_err(|_| StoreError::Invalid("generations exhausted".into()))?;
    host.storage_write(
        &[(GENERATION.to_vec(), u64::from(next).to_be_bytes().to_vec())],
        &[],
        true,
    )
    .map_err(StoreError::Host)?;
    Ok(next)
}

/// Start running configuration `m` from state `base`: one synced write that
/// stores both and deletes every key of the previous configuration's
/// omnipaxos instance.
pub fn switch_config(host: &dyn Host, m: &Membership, base: &HwState) -> Result<(), StoreError> {
    let deletes: Vec<Vec<u8>> = host
        .storage_scan(OP_START, OP_END, u32::MAX)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let puts = vec![(MEMBERSHIP.to_vec(), enc(m)?), (BASE.to_vec(), enc(base)?)];
    host.storage_write(&puts, &deletes, true)
        .map_err(StoreError::Host)
}

/// omnipaxos's storage on the host. `first..end` is the stored log range.
pub struct PaxosStore {
    host: Rc<dyn Host>,
    first: usize,
    end: usize,
}

impl PaxosStore {
    /// Open over the host's storage, checking that the stored log is
    /// contiguous from the compacted index.
    pub fn open(host: Rc<dyn Host>) -> Result<Self, StoreError> {
        let first = get_usize(&*host, COMPACTED)?;
        let keys = host.storage_scan(LOG, LOG_END, u32::MAX);
        let end = first + keys.len();
        for (i, (k, _)) in keys.iter().enumerate() {
            if *k != log_key(first + i) {
                return Err(StoreError::Corrupt(format!(
                    "log entry {} where entry {} was expected (compacted index {first})",
                    show(k),
                    first + i
                )));
            }
        }
        Ok(PaxosStore { host, first, end })
    }

    fn read_entries(&self, from: usize, to: usize) -> Result<Vec<Command>, StoreError> {
        if from < self.first || to > self.end || from >= to {
            return Ok(Vec::new());
        }
        let rows = self
            .host
            .storage_scan(&log_key(from), &log_key(to), (to - from) as u32);
        if rows.len() != to - from {
            return Err(StoreError::Corrupt(format!(
                "log entries {from}..{to} expected, {} found",
                rows.len()
            )));
        }
        rows.iter()
            .map(|(_, v)| postcard::from_bytes(v).map_err(StoreError::from))
            .collect()
    }

    fn write(&mut self, ops: Vec<StorageOp<Command>>) -> Result<(), StoreError> {
        let sync = !ops
            .iter()
            .all(|op| matches!(op, StorageOp::SetDecidedIndex(_)));
        let (mut first, mut end) = (self.first, self.end);
        // Net effect per key: `Some` put, `None` delete (the host applies
        // puts before deletes, so a key must not be in both).
        let mut staged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        let append = |staged: &mut BTreeMap<_, _>, end: &mut usize, entries: Vec<Command>| {
            for e in entries {
                staged.insert(log_key(*end), Some(enc(&e)?));
                *end += 1;
            }
            Ok::<(), StoreError>(())
        };
        for op in ops {
            match op {
                StorageOp::AppendEntry(e) => append(&mut staged, &mut end, vec![e])?,
                StorageOp::AppendEntries(es) => append(&mut staged, &mut end, es)?,
                StorageOp::AppendOnPrefix(from, es) => {
                    if from < first || from > end {
                        return Err(StoreError::Invalid(format!(
                            "append at {from} outside the stored log {first}..{end}"
                        )));
                    }
                    for i in from..end {
                        staged.insert(log_key(i), None);
                    }
                    end = from;
                    append(&mut staged, &mut end, es)?;
                }
                StorageOp::SetPromise(b) => {
                    staged.insert(PROMISE.to_vec(), Some(enc(&b)?));
                }
                StorageOp::SetDecidedIndex(i) => {
                    staged.insert(DECIDED.to_vec(), Some((i as u64).to_be_bytes().to_vec()));
                }
                StorageOp::SetAcceptedRound(b) => {
                    staged.insert(ACCEPTED_ROUND.to_vec(), Some(enc(&b)?));
                }
                StorageOp::SetCompactedIdx(i) => {
                    staged.insert(COMPACTED.to_vec(), Some((i as u64).to_be_bytes().to_vec()));
                }
                StorageOp::Trim(idx) => {
                    for i in first..idx.min(end) {
                        staged.insert(log_key(i), None);
                    }
                    first = first.max(idx);
                    end = end.max(first);
                }
                StorageOp::SetStopsign(ss) => {
                    let v = ss.map(|ss| enc(&ss)).transpose()?;
                    staged.insert(STOPSIGN.to_vec(), v);
                }
                StorageOp::SetSnapshot(s) => {
                    let v = s.map(|s| enc(&s)).transpose()?;
                    staged.insert(SNAPSHOT.to_vec(), v);
                }
            }
        }
        let mut puts = Vec::new();
        let mut deletes = Vec::new();
        for (k, v) in staged {
            match v {
                Some(v) => puts.push((k, v)),
                None => deletes.push(k),
            }
        }
        self.host
            .storage_write(&puts, &deletes, sync)
            .map_err(StoreError::Host)?;
        self.first = first;
        self.end = end;
        Ok(())
    }

    fn one(&mut self, op: StorageOp<Command>) -> StorageResult<()> {
        Ok(self.write(vec![op])?)
    }
}

fn boxed(e: StoreError) -> Box<dyn Error> {
    Box::new(e)
}

impl Storage<Command> for PaxosStore {
    fn write_atomically(&mut self, ops: Vec<StorageOp<Command>>) -> StorageResult<()> {
        self.write(ops).map_err(boxed)
    }

    fn append_entry(&mut self, entry: Command) -> StorageResult<()> {
        self.one(StorageOp::AppendEntry(entry))
    }

    fn append_entries(&mut self, entries: Vec<Command>) -> StorageResult<()> {
        self.one(StorageOp::AppendEntries(entries))
    }

    fn append_on_prefix(&mut self, from_idx: usize, entries: Vec<Command>) -> StorageResult<()> {
        self.one(StorageOp::AppendOnPrefix(from_idx, entries))
    }

    fn set_promise(&mut self, n_prom: Ballot) -> StorageResult<()> {
        self.one(StorageOp::SetPromise(n_prom))
    }

    fn set_decided_idx(&mut self, ld: usize) -> StorageResult<()> {
        self.one(StorageOp::SetDecidedIndex(ld))
    }

    fn get_decided_idx(&self) -> StorageResult<usize> {
        get_usize(&*self.host, DECIDED).map_err(boxed)
    }

    fn set_accepted_round(&mut self, na: Ballot) -> StorageResult<()> {
        self.one(StorageOp::SetAcceptedRound(na))
    }

    fn get_accepted_round(&self) -> StorageResult<Option<Ballot>> {
        get(&*self.host, ACCEPTED_ROUND).map_err(boxed)
    }

    fn get_entries(&self, from: usize, to: usize) -> StorageResult<Vec<Command>> {
        self.read_entries(from, to).map_err(boxed)
    }

    fn get_log_len(&self) -> StorageResult<usize> {
        Ok(self.end - self.first)
    }

    fn get_suffix(&self, from: usize) -> StorageResult<Vec<Command>> {
        self.read_entries(from, self.end).map_err(boxed)
    }

    fn get_promise(&self) -> StorageResult<Option<Ballot>> {
        get(&*self.host, PROMISE).map_err(boxed)
    }

    fn set_stopsign(&mut self, s: Option<StopSign>) -> StorageResult<()> {
        self.one(StorageOp::SetStopsign(s))
    }

    fn get_stopsign(&self) -> StorageResult<Option<StopSign>> {
        get(&*self.host, STOPSIGN).map_err(boxed)
    }

    fn trim(&mut self, idx: usize) -> StorageResult<()> {
        self.one(StorageOp::Trim(idx))
    }

    fn set_compacted_idx(&mut self, idx: usize) -> StorageResult<()> {
        self.one(StorageOp::SetCompactedIdx(idx))
    }

    fn get_compacted_idx(&self) -> StorageResult<usize> {
        get_usize(&*self.host, COMPACTED).map_err(boxed)
    }

    fn set_snapshot(&mut self, snapshot: Option<HwState>) -> StorageResult<()> {
        self.one(StorageOp::SetSnapshot(snapshot))
    }

    fn get_snapshot(&self) -> StorageResult<Option<HwState>> {
        get(&*self.host, SNAPSHOT).map_err(boxed)
    }
}
