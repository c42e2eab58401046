//! The driver's options (`--driver-option key=value`) and the openraft
//! configuration derived from them.

use std::time::Duration;

use openraft::{Config as RaftConfig, SnapshotPolicy, StepDownPolicy};
use tsohost_guest_sdk::{Config, DriverError, rules};

/// Every option this driver knows; anything else is `invalid-config`.
pub const KNOWN: &[&str] = &["election-timeout-ms", "heartbeat-ms", "snapshot-every"];

/// Validated settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// The minimum election timeout; the maximum is twice it. All nodes of a
    /// cluster must use the same value: the lease argument compares this
    /// node's lease with the other nodes' vote refusal (see
    /// [`crate::core`]).
    pub election_timeout_ms: u64,
    /// The leader's heartbeat interval.
    pub heartbeat_ms: u64,
    /// A snapshot is taken, and the log before it purged, every this many
    /// entries.
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
        if s.heartbeat_ms == 0 || s.heartbeat_ms * 3 > s.election_timeout_ms {
            return Err(invalid(format!(
                "option `heartbeat-ms` ({}) must be positive and at most a third of \
                 `election-timeout-ms` ({}), or followers time out between heartbeats",
                s.heartbeat_ms, s.election_timeout_ms
            )));
        }
        if s.election_timeout_ms > 600_000 {
            return Err(invalid(format!(
                "option `election-timeout-ms` ({}) is above 10 minutes",
                s.election_timeout_ms
            )));
        }
        if s.snapshot_every == 0 {
            return Err(invalid("option `snapshot-every` must be positive".into()));
        }
        Ok(s)
    }

    /// The longest election timeout; openraft's followers refuse votes for
    /// this long after hearing from a leader.
    pub fn election_timeout_max_ms(&self) -> u64 {
        self.election_timeout_ms * 2
    }

    /// How long after a quorum acknowledged the leader it may serve: three
    /// quarters of the minimum election timeout (see [`crate::core`] for why
    /// this is safe).
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.election_timeout_ms * 3 / 4)
    }

    /// How long a leader that handed leadership over waits for a successor
    /// before `transfer-leadership` fails: five of the longest election
    /// timeouts. The target first waits (at most the minimum timeout) for
    /// its log, then campaigns; should it not win, the followers elect once
    /// their timers fire, possibly after split votes. Two timeouts covered
    /// that on an idle machine but not on a loaded two-core CI runner, and
    /// a failure here only makes the operator retry what was happening.
    pub fn handover_budget(&self) -> Duration {
        Duration::from_millis(5 * self.election_timeout_max_ms())
    }

    /// How long `change-membership` waits for new nodes, added as learners,
    /// to replicate the log before it makes them voters. The log a learner
    /// needs is bounded by snapshots, so this is ample for a node that runs
    /// and is reachable; one that is not stays a learner and the request
    /// fails rather than making an unreachable voter part of every quorum.
    pub fn catch_up_budget(&self) -> Duration {
        Duration::from_millis(5 * self.election_timeout_max_ms())
    }

    /// The openraft configuration.
    pub fn raft_config(&self) -> Result<RaftConfig, DriverError> {
        RaftConfig {
            cluster_name: "tsohost".into(),
            election_timeout_min: self.election_timeout_ms,
            election_timeout_max: self.election_timeout_max_ms(),
            heartbeat_interval: self.heartbeat_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            // Entries a slightly lagging follower can still fetch after a
            // snapshot; a follower further behind receives the (tiny)
            // snapshot instead.
            max_in_snapshot_log_to_keep: self.snapshot_every.min(100),
            // A node that cannot win (partitioned, stale) does not inflate
            // the term and disturb a healthy leader.
            enable_pre_vote: Some(true),
            // openraft would make a leader removed from the membership hand
            // leadership over on its own, behind the driver's back, and the
            // handed-over election ignores leases: the driver does it
            // itself, after telling the host to stop serving (see
            // `crate::core`, "Handing leadership over").
            removed_leader_step_down: StepDownPolicy::Never,
            ..Default::default()
        }
        .validate()
        .map_err(|e| invalid(format!("openraft rejects the derived configuration: {e}")))
    }
}
