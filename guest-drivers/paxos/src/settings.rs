//! The driver's options (`--driver-option key=value`) and the omnipaxos
//! timing derived from them.

use tsohost_guest_sdk::rules::{Timing, TimingRules};
use tsohost_guest_sdk::{Config, DriverError};

/// Validated settings: the shared [`Timing`] options. All nodes of a
/// cluster must use the same `election-timeout-ms`: the lease argument
/// compares one node's lease with the other nodes' promise refusal window
/// (see [`crate::core`]). `E` is how long a node refuses to promise a new
/// ballot after it last heard its leader's lease heartbeat (the "gate");
/// the leader lease is half of it, a ballot-leader-election round a fifth.
/// `heartbeat-ms` is the period of omnipaxos's logical clock (`tick`) and
/// of the leader's lease heartbeats; `snapshot-every = 0` turns compaction
/// off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settings(pub Timing);

impl std::ops::Deref for Settings {
    type Target = Timing;
    fn deref(&self) -> &Timing {
        &self.0
    }
}

impl Settings {
    /// Parse and check `cfg.options`.
    pub fn from_config(cfg: &Config) -> Result<Self, DriverError> {
        Timing::from_config(
            cfg,
            TimingRules {
                heartbeats_per_timeout: 4,
                because: "the lease (half the election timeout) lapses between heartbeats",
                snapshots_optional: true,
            },
        )
        .map(Settings)
    }

    /// `W`: how long after hearing a leader a node refuses other ballots.
    pub fn gate_ms(&self) -> u64 {
        self.election_timeout_ms
    }

    /// `L`: how long after a quorum acknowledged a lease heartbeat (from its
    /// send time) the leader may serve. `L = W / 2 < W`: the gap absorbs
    /// clock-rate differences and millisecond rounding.
    pub fn lease_ms(&self) -> u64 {
        self.election_timeout_ms / 2
    }

    /// omnipaxos ticks per ballot-leader-election (BLE) round: about `E / 5`,
    /// at least two heartbeats (a reply must come back within the round).
    /// BLE needs two or three rounds to agree the leader is gone; short
    /// rounds let that happen while the gate is still closed, so the
    /// takeover is ready when it opens (`W` after the last heartbeat, the
    /// lower bound of a failover). Short rounds cost no stability: a round
    /// that misses a live leader is held back by the gate (see
    /// [`crate::core`], "The leader lease").
    pub fn election_ticks(&self) -> u64 {
        (self.election_timeout_ms / (5 * self.heartbeat_ms)).max(2)
    }

    /// omnipaxos ticks before it resends a possibly lost Prepare, Promise or
    /// PrepareReq.
    pub fn resend_ticks(&self) -> u64 {
        2
    }

    /// How long a persist or load may wait to be decided before it fails
    /// (a leader that lost its quorum does not know it).
    pub fn request_timeout_ms(&self) -> u64 {
        self.election_timeout_ms * 3
    }
}
