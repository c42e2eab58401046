//! The replicated state machine: log entries ([`Command`]), the state they
//! build ([`HwState`]) and its snapshot.
//!
//! Invariants:
//! - the high water never decreases: applying an entry takes a maximum;
//! - an entry whose epoch is older than the newest epoch already applied is
//!   fenced (not applied), so a superseded leader cannot move the high water
//!   even if one of its entries were decided after a newer leader's;
//! - the state is a pure function of the decided log (and of the base state
//!   a configuration started from), so every node computes the same state
//!   and a fresh instance recomputes it from storage.

use omnipaxos::storage::{Entry, Snapshot};
use serde::{Deserialize, Serialize};
use tsohost_guest_sdk::Epoch;

use crate::ballot::unpair;

/// One log entry. `epoch` is the proposing leader's ballot encoded (see
/// [`crate::ballot`]); `(epoch, request)` identifies the proposal, so the
/// leader knows whether the entry decided at an index is its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Raise the high water to at least `at_least`.
    Persist {
        /// The value to reach.
        at_least: u64,
        /// The proposer's epoch.
        epoch: (u64, u64),
        /// The host's request id.
        request: u64,
    },
    /// A no-op a new or serving leader decides before answering a
    /// linearizable load; it also raises the high water to the node's
    /// `floor`, so the cluster never answers less afterwards.
    Barrier {
        /// The proposer's `config.floor`.
        floor: u64,
        /// The proposer's epoch.
        epoch: (u64, u64),
        /// The host's request id.
        request: u64,
    },
}

impl Command {
    /// The proposer's epoch.
    pub fn epoch(&self) -> Epoch {
        match self {
            Command::Persist { epoch, .. } | Command::Barrier { epoch, .. } => unpair(*epoch),
        }
    }

    /// The host's request id of the proposal.
    pub fn request(&self) -> u64 {
        match self {
            Command::Persist { request, .. } | Command::Barrier { request, .. } => *request,
        }
    }

    fn value(&self) -> u64 {
        match self {
            Command::Persist { at_least, .. } => *at_least,
            Command::Barrier { floor, .. } => *floor,
        }
    }
}

/// What applying an entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied: the high water after it.
    HighWater(u64),
    /// Fenced: the newer epoch already applied.
    Fenced(Epoch),
}

/// The replicated state: the high water and the newest epoch applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HwState {
    /// The durable high water.
    pub high_water: u64,
    /// The newest epoch of an applied entry, as a pair.
    pub highest_epoch: (u64, u64),
}

impl HwState {
    /// The newest epoch applied.
    pub fn highest_epoch(&self) -> Epoch {
        unpair(self.highest_epoch)
    }

    /// Apply one decided entry.
    pub fn apply(&mut self, cmd: &Command) -> Applied {
        let epoch = cmd.epoch();
        if epoch < self.highest_epoch() {
            return Applied::Fenced(self.highest_epoch());
        }
        self.highest_epoch = (epoch.hi, epoch.lo);
        self.high_water = self.high_water.max(cmd.value());
        Applied::HighWater(self.high_water)
    }

    /// Take in a snapshot (or a base state): both fields only grow.
    pub fn absorb(&mut self, other: &HwState) {
        self.high_water = self.high_water.max(other.high_water);
        self.highest_epoch = self.highest_epoch.max(other.highest_epoch);
    }
}

impl Entry for Command {
    type Snapshot = HwState;
}

/// A snapshot is the state of a prefix of the log.
///
/// `merge` takes maxima. That equals applying the delta's entries after the
/// base's because epochs never decrease along a decided log (a leader only
/// proposes entries carrying its own ballot, and Paxos decides a log whose
/// ballots are non-decreasing), so no entry of a later delta is fenced by an
/// earlier one.
impl Snapshot<Command> for HwState {
    fn create(entries: &[Command]) -> Self {
        let mut s = HwState::default();
        for e in entries {
            s.apply(e);
        }
        s
    }

    fn merge(&mut self, delta: Self) {
        self.absorb(&delta);
    }

    fn use_snapshots() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn persist(at_least: u64, hi: u64) -> Command {
        Command::Persist {
            at_least,
            epoch: (hi, 1),
            request: 0,
        }
    }

    #[test]
    fn never_decreases_and_fences_older_epochs() {
        let mut s = HwState::default();
        assert_eq!(s.apply(&persist(10, 1)), Applied::HighWater(10));
        assert_eq!(s.apply(&persist(5, 1)), Applied::HighWater(10));
        assert_eq!(s.apply(&persist(20, 2)), Applied::HighWater(20));
        assert_eq!(
            s.apply(&persist(30, 1)),
            Applied::Fenced(Epoch { hi: 2, lo: 1 })
        );
        assert_eq!(s.high_water, 20);
    }

    #[test]
    fn snapshots_equal_replay() {
        let log = [
            persist(10, 1),
            persist(7, 1),
            persist(30, 2),
            persist(40, 3),
        ];
        let mut replay = HwState::default();
        for e in &log {
            replay.apply(e);
        }
        let mut snap = HwState::create(&log[..2]);
        snap.merge(HwState::create(&log[2..]));
        assert_eq!(snap, replay);
    }
}
