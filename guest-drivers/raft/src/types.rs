//! The openraft type configuration of the driver and the replicated
//! commands.

use std::fmt;

use serde::{Deserialize, Serialize};
use tsohost_guest_sdk::Epoch;
use tsohost_guest_sdk::runtime::GuestRuntime;

openraft::declare_raft_types!(
    /// openraft types for the driver: `u64` node ids, the peer address as the
    /// node label, the guest runtime.
    pub TypeConfig:
        D = Command,
        R = Applied,
        AsyncRuntime = GuestRuntime,
);

/// The openraft handle of the driver.
pub type Raft = openraft::Raft<TypeConfig, crate::store::StateMachine>;
/// A log entry.
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
/// A log id.
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
/// A vote.
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
/// A leader id: `(term, node)`, which is also the committed leader id of a
/// log id (openraft's default "advanced" leader ids).
pub type LeaderId = openraft::alias::LeaderIdOf<TypeConfig>;
/// Membership as stored with the state machine.
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;

/// What the replicated log carries besides openraft's own entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Raise the high water to at least `at_least`, unless `epoch` is older
    /// than the newest leadership this state machine has applied an entry of
    /// (then the request is fenced and nothing changes).
    Persist {
        /// The value the host wants durable.
        at_least: u64,
        /// The epoch the requesting host led under, `(hi, lo)`.
        epoch: (u64, u64),
    },
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Persist { at_least, epoch } => {
                write!(f, "persist(>= {at_least}, epoch {}.{})", epoch.0, epoch.1)
            }
        }
    }
}

/// The state machine's answer to a [`Command`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// The high water after applying the command.
    HighWater(u64),
    /// The command's epoch was older than this one, the newest applied.
    Fenced((u64, u64)),
}

/// The epoch of a leadership: `hi` = term, `lo` = leader node. With
/// openraft's advanced leader ids, `(term, node)` is totally ordered
/// lexicographically and every later leadership has a greater one (a voter
/// grants only votes `>=` its own, and equal means the same leadership), so
/// the encoding is lossless and keeps the order WIT requires.
pub fn epoch_of(leader: &LeaderId) -> Epoch {
    Epoch {
        hi: leader.term,
        lo: leader.node_id,
    }
}

/// [`Epoch`] as a plain pair, the form stored in the log.
pub fn pair(e: Epoch) -> (u64, u64) {
    (e.hi, e.lo)
}

/// A pair back into an [`Epoch`].
pub fn unpair(p: (u64, u64)) -> Epoch {
    Epoch { hi: p.0, lo: p.1 }
}
