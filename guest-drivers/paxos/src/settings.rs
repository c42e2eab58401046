//! The driver's options (`--driver-option key=value`) and the omnipaxos
//! timing derived from them.

use tsohost_guest_sdk::{Config, DriverError, rules};

/// Every option this driver knows; anything else is `invalid-config`.
pub const KNOWN: &[&str] = &["election-timeout-ms", "heartbeat-ms", "snapshot-every"];

/// Validated settings. All nodes of a cluster must use the same
/// `election-timeout-ms`: the lease argument compares one node's lease with
/// the other nodes' promise refusal window (see [`crate::core`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `E`: how long a node refuses to promise a new ballot after it last
    /// heard its leader's lease heartbeat (the "gate"). The leader lease is
    /// half of it, a ballot-leader-election round a half too.
    pub election_timeout_ms: u64,
    /// The period of omnipaxos's logical clock (`tick`) and of the leader's
    /// lease heartbeats.
    pub heartbeat_ms: u64,
    /// Snapshot (and drop the log before) once this many decided entries
    /// follow the last snapshot; `0` turns compaction off.
    pub snapshot_every: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            election_timeout_ms: 1000,
            heartbeat_ms: 100,
            snapshot_every: 1000,
        }
    }
}

fn invalid(msg: String) -> DriverError {
    DriverError::InvalidConfig(msg)
}

impl Settings {
    /// Parse and check `cfg.options`.
    pub fn from_config(cfg: &Config) -> Result<Self, DriverError> {
        let mut s = Settings::default();
        for (key, n) in rules::numeric_options(cfg, KNOWN)? {
            match key {
                "election-timeout-ms" => s.election_timeout_ms = n,
                "heartbeat-ms" => s.heartbeat_ms = n,
                "snapshot-every" => s.snapshot_every = n,
                _ => unreachable!("check_options admits only KNOWN keys"),
            }
        }
        if s.heartbeat_ms == 0 || s.heartbeat_ms * 4 > s.election_timeout_ms {
            return Err(invalid(format!(
                "option `heartbeat-ms` ({}) must be positive and at most a quarter of \
                 `election-timeout-ms` ({}), or the lease (half the election timeout) lapses \
                 between heartbeats",
                s.heartbeat_ms, s.election_timeout_ms
            )));
        }
        if s.election_timeout_ms > 600_000 {
            return Err(invalid(format!(
                "option `election-timeout-ms` ({}) is above 10 minutes",
                s.election_timeout_ms
            )));
        }
        Ok(s)
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

    /// omnipaxos ticks per ballot-leader-election round (about `E / 2`).
    pub fn election_ticks(&self) -> u64 {
        (self.election_timeout_ms / (2 * self.heartbeat_ms)).max(1)
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
