//! openraft's log store and state machine, kept in host storage.
//!
//! Nothing lives only in guest memory: a fresh instance reads everything
//! back from these keys (values are postcard-encoded openraft/serde types):
//!
//! | key                     | value                                   | written  |
//! |-------------------------|-----------------------------------------|----------|
//! | `format`                | `[1]`, the layout version               | once     |
//! | `log/` + be64(index)    | the entry (big-endian: scans are ordered) | synced |
//! | `vote`                  | the vote                                | synced   |
//! | `committed`             | the last committed log id               | synced   |
//! | `purged`                | the last purged log id                  | with the purge |
//! | `sm`                    | [`SmState`]                             | unsynced |
//! | `snapshot`              | [`StoredSnapshot`]                      | synced   |
//!
//! Why these sync choices: a vote and a log append must be durable before
//! this node says so to anyone (openraft sends the vote response or the
//! append acknowledgement after the callback). The committed index must be
//! durable before anything it covers is applied and answered: a leader
//! whose committed vote survives a restart resumes its term without a new
//! election and without a new entry, and answers a ReadIndex read with its
//! stored committed index, so after a power cut that lost it the read would
//! miss a persist already completed (the SDK's contract test
//! `a_power_cut_of_every_node_loses_nothing_acknowledged`). The state
//! machine can be rebuilt from the synced log, snapshot and committed index,
//! so losing its latest unsynced write only makes openraft re-apply entries
//! (which [`Command::Persist`] tolerates: it is idempotent). A snapshot is
//! written synced together with the state it captures before openraft purges
//! the log it replaces.

use std::cell::RefCell;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::rc::Rc;

use futures_util::{Stream, TryStreamExt};
use openraft::alias::SnapshotOf;
use openraft::entry::RaftEntry;
use openraft::storage::{
    EntryResponder, IOFlushed, LogState, RaftLogReader, RaftLogStorage, RaftSnapshotBuilder,
    RaftStateMachine,
};
use openraft::{EntryPayload, OptionalSend};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tsohost_guest_sdk::DriverError;
use tsohost_guest_sdk::port::Host;

use crate::types::{
    Applied, Command, Entry, LogId, SnapshotMeta, StoredMembership, TypeConfig, Vote, epoch_of,
    pair,
};

const FORMAT: &[u8] = b"format";
const FORMAT_VERSION: u8 = 1;
const LOG: &[u8] = b"log/";
/// The first key after every `log/` key.
const LOG_END: &[u8] = b"log0";
const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"purged";
const SM: &[u8] = b"sm";
const SNAPSHOT: &[u8] = b"snapshot";

/// Entries read per `storage-scan` call.
const SCAN_BATCH: u32 = 256;

fn log_key(index: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(LOG.len() + 8);
    k.extend_from_slice(LOG);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).expect("postcard encodes every openraft type to a Vec")
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> io::Result<T> {
    postcard::from_bytes(bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "storage key {:?} does not decode: {e}",
                String::from_utf8_lossy(key)
            ),
        )
    })
}

fn io_err(e: DriverError) -> io::Error {
    io::Error::other(format!("host storage: {e:?}"))
}

/// Typed access to the driver's storage namespace.
#[derive(Clone)]
pub struct Storage {
    host: Rc<dyn Host>,
}

impl Storage {
    /// Open the namespace, refusing a layout this build does not know.
    pub fn open(host: Rc<dyn Host>) -> Result<Self, DriverError> {
        match host.storage_get(FORMAT).as_deref() {
            None => host.storage_write(&[(FORMAT.to_vec(), vec![FORMAT_VERSION])], &[], true)?,
            Some([FORMAT_VERSION]) => {}
            Some(other) => {
                return Err(DriverError::Storage(format!(
                    "raft storage layout {other:?} is not the one this build reads ({FORMAT_VERSION})"
                )));
            }
        }
        Ok(Storage { host })
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> io::Result<Option<T>> {
        self.host
            .storage_get(key)
            .map(|b| decode(key, &b))
            .transpose()
    }

    fn write(
        &self,
        puts: Vec<(Vec<u8>, Vec<u8>)>,
        deletes: Vec<Vec<u8>>,
        sync: bool,
    ) -> io::Result<()> {
        self.host
            .storage_write(&puts, &deletes, sync)
            .map_err(io_err)
    }

    /// Log entries with index in `[start, end)` (`end` = `None`: to the last).
    fn scan_log(&self, start: u64, end: Option<u64>) -> io::Result<Vec<(u64, Vec<u8>)>> {
        let end_key = end.map(log_key).unwrap_or_else(|| LOG_END.to_vec());
        let mut from = log_key(start);
        let mut out = Vec::new();
        loop {
            let batch = self.host.storage_scan(&from, &end_key, SCAN_BATCH);
            let full = batch.len() == SCAN_BATCH as usize;
            for (k, v) in batch {
                let index = k
                    .strip_prefix(LOG)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidData, "malformed log key")
                    })?;
                out.push((index, v));
                // The last possible index ends the log (and `+ 1` would
                // wrap to index 0 and scan it again).
                let Some(next) = index.checked_add(1) else {
                    return Ok(out);
                };
                from = log_key(next);
            }
            if !full {
                return Ok(out);
            }
        }
    }

    /// The stored vote, if any.
    pub fn vote(&self) -> io::Result<Option<Vote>> {
        self.get(VOTE)
    }

    /// Whether nothing of a cluster was ever stored here: no vote, no log,
    /// no snapshot. Only then may `bootstrap` initialize a cluster.
    pub fn is_pristine(&self) -> io::Result<bool> {
        Ok(self.vote()?.is_none()
            && self.host.storage_get(PURGED).is_none()
            && self.host.storage_get(SNAPSHOT).is_none()
            && self.host.storage_scan(LOG, LOG_END, 1).is_empty())
    }
}

/// openraft's log store over [`Storage`].
#[derive(Clone)]
pub struct LogStore {
    st: Storage,
}

impl LogStore {
    /// The log store of `st`.
    pub fn new(st: Storage) -> Self {
        LogStore { st }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.checked_add(1),
            Bound::Excluded(&e) => Some(e),
            Bound::Unbounded => None,
        };
        if end.is_some_and(|e| e <= start) {
            return Ok(Vec::new());
        }
        self.st
            .scan_log(start, end)?
            .into_iter()
            .map(|(i, v)| {
                let entry: Entry = decode(&log_key(i), &v)?;
                // openraft assumes the entry under index i has index i;
                // storage that says otherwise (corrupt) would send it in
                // circles (found by fuzzing).
                if entry.log_id.index != i {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "the log entry stored under index {i} has index {}",
                            entry.log_id.index
                        ),
                    ));
                }
                Ok(entry)
            })
            .collect()
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        self.st.vote()
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let purged: Option<LogId> = self.st.get(PURGED)?;
        // The last entry: scan backwards is not offered, so find it by a
        // forward scan from the purge point. The log is bounded by snapshots.
        let from = purged.map_or(0, |p| p.index() + 1);
        let last = match self.st.scan_log(from, None)?.pop() {
            Some((i, v)) => Some(decode::<Entry>(&log_key(i), &v)?.log_id()),
            None => purged,
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        self.st
            .write(vec![(VOTE.to_vec(), encode(vote))], vec![], true)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        self.st
            .write(vec![(COMMITTED.to_vec(), encode(&committed))], vec![], true)
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        Ok(self.st.get::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let puts: Vec<_> = entries
            .into_iter()
            .map(|e| (log_key(e.index()), encode(&e)))
            .collect();
        let result = self.st.write(puts, vec![], true);
        let flushed = match &result {
            Ok(()) => Ok(()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        callback.io_completed(flushed);
        result
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let from = last_log_id.map_or(0, |l| l.index() + 1);
        let deletes = self
            .st
            .scan_log(from, None)?
            .into_iter()
            .map(|(i, _)| log_key(i))
            .collect();
        self.st.write(vec![], deletes, true)
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        let deletes = self
            .st
            .scan_log(0, Some(log_id.index() + 1))?
            .into_iter()
            .map(|(i, _)| log_key(i))
            .collect();
        self.st
            .write(vec![(PURGED.to_vec(), encode(&log_id))], deletes, false)
    }
}

/// The replicated state: the high water and what fences it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmState {
    /// The durable high water: the largest `at_least` of any applied,
    /// unfenced persist. Never decreases.
    pub high_water: u64,
    /// The newest epoch among applied persists and the leaderships that
    /// appended applied entries. A persist with an older epoch is fenced.
    pub highest_epoch: (u64, u64),
    /// The last entry applied.
    pub last_applied: Option<LogId>,
    /// The last membership applied.
    pub membership: StoredMembership,
}

impl SmState {
    /// Apply one entry; returns the answer for its client, if it is a
    /// command.
    pub fn apply(&mut self, entry: &Entry) -> Option<Applied> {
        let log_id = entry.log_id();
        self.last_applied = Some(log_id);
        let leadership = pair(epoch_of(&log_id.leader_id));
        match &entry.payload {
            EntryPayload::Blank => {
                self.highest_epoch = self.highest_epoch.max(leadership);
                None
            }
            EntryPayload::Membership(m) => {
                self.highest_epoch = self.highest_epoch.max(leadership);
                self.membership = StoredMembership::new(Some(log_id), m.clone());
                None
            }
            EntryPayload::Normal(Command::Persist { at_least, epoch }) => {
                let newest = self.highest_epoch.max(leadership);
                if *epoch < newest {
                    self.highest_epoch = newest;
                    return Some(Applied::Fenced(newest));
                }
                self.highest_epoch = *epoch;
                self.high_water = self.high_water.max(*at_least);
                Some(Applied::HighWater(self.high_water))
            }
        }
    }
}

/// A snapshot as stored: the state it captures is tiny, so it is kept whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredSnapshot {
    /// openraft's metadata.
    pub meta: SnapshotMeta,
    /// The state at `meta.last_log_id`.
    pub data: SmState,
}

/// openraft's state machine over [`Storage`]. The live state is shared with
/// the driver core (reads after a linearizable barrier).
#[derive(Clone)]
pub struct StateMachine {
    st: Storage,
    state: Rc<RefCell<SmState>>,
}

impl StateMachine {
    /// Load the state machine: the stored state, or the snapshot if that is
    /// newer (an unsynced state write may have been lost).
    pub fn open(st: Storage) -> io::Result<Self> {
        let mut state: SmState = st.get(SM)?.unwrap_or_default();
        if let Some(snap) = st.get::<StoredSnapshot>(SNAPSHOT)?
            && snap.meta.last_log_id > state.last_applied
        {
            state = snap.data;
        }
        Ok(StateMachine {
            st,
            state: Rc::new(RefCell::new(state)),
        })
    }

    /// The live state, shared.
    pub fn state(&self) -> Rc<RefCell<SmState>> {
        self.state.clone()
    }

    fn save(&self, sync: bool) -> io::Result<()> {
        let bytes = encode(&*self.state.borrow());
        self.st.write(vec![(SM.to_vec(), bytes)], vec![], sync)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = SmState;

    async fn build_snapshot(&mut self) -> io::Result<SnapshotOf<TypeConfig, SmState>> {
        let data = self.state.borrow().clone();
        let meta = SnapshotMeta {
            last_log_id: data.last_applied,
            last_membership: data.membership.clone(),
        };
        self.save_snapshot(&meta, &data)?;
        Ok(SnapshotOf::<TypeConfig, SmState> {
            meta,
            snapshot: data,
        })
    }
}

impl StateMachine {
    /// Store a snapshot and the state machine it captures in one synced
    /// write, so that storage never holds a snapshot newer than the state.
    fn save_snapshot(&self, meta: &SnapshotMeta, data: &SmState) -> io::Result<()> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        self.st.write(
            vec![
                (SNAPSHOT.to_vec(), encode(&stored)),
                (SM.to_vec(), encode(data)),
            ],
            vec![],
            true,
        )
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SmState;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let s = self.state.borrow();
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        let mut answers = Vec::new();
        while let Some((entry, responder)) = entries.try_next().await? {
            let answer = self.state.borrow_mut().apply(&entry);
            if let Some(responder) = responder {
                answers.push((responder, answer));
            }
        }
        self.save(false)?;
        for (responder, answer) in answers {
            // A blank or membership entry has no command; its responder
            // still wants an answer of type `R`.
            let hw = self.state.borrow().high_water;
            responder.send(answer.unwrap_or(Applied::HighWater(hw)));
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: SmState) -> io::Result<()> {
        let mut data = snapshot;
        data.last_applied = meta.last_log_id;
        data.membership = meta.last_membership.clone();
        self.save_snapshot(meta, &data)?;
        *self.state.borrow_mut() = data;
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> io::Result<Option<SnapshotOf<TypeConfig, SmState>>> {
        Ok(self
            .st
            .get::<StoredSnapshot>(SNAPSHOT)?
            .map(|s| SnapshotOf::<TypeConfig, SmState> {
                meta: s.meta,
                snapshot: s.data,
            }))
    }
}
