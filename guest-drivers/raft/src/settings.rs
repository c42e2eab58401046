//! The driver's options (`--driver-option key=value`) and the openraft
//! configuration derived from them.

use std::time::Duration;

use openraft::{Config as RaftConfig, SnapshotPolicy, StepDownPolicy};
use tsohost_guest_sdk::rules::{Timing, TimingRules};
use tsohost_guest_sdk::{Config, DriverError};

/// Validated settings: the shared [`Timing`] options.
/// `election-timeout-ms` (`E`) is how long a follower honours a leader it
/// heard (refuses votes and does not campaign: [`Settings::follower_lease_ms`]);
/// it campaigns after a further random wait ([`Settings::campaign_delay_ms`]),
/// so between `E` and `1.5 E` after it last heard a leader. All nodes of a
/// cluster must use the same value: the lease argument compares this node's
/// lease with the other nodes' vote refusal (see [`crate::core`]). A
/// snapshot is taken, and the log before it purged, every `snapshot-every`
/// entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settings(pub Timing);

impl std::ops::Deref for Settings {
    type Target = Timing;
    fn deref(&self) -> &Timing {
        &self.0
    }
}

fn invalid(msg: String) -> DriverError {
    DriverError::InvalidConfig(msg)
}

impl Settings {
    /// Parse and check `cfg.options`.
    pub fn from_config(cfg: &Config) -> Result<Self, DriverError> {
        Timing::from_config(
            cfg,
            TimingRules {
                heartbeats_per_timeout: 3,
                because: "followers time out between heartbeats",
                snapshots_optional: false,
            },
        )
        .map(Settings)
    }

    /// `F`: how long a node refuses votes after it heard a leader (openraft's
    /// `leader_lease`, patched to be configurable: `vendor/openraft`), and
    /// after it restarted with a committed vote: the election timeout `E`.
    pub fn follower_lease_ms(&self) -> u64 {
        self.election_timeout_ms
    }

    /// The range `[min, max)` of openraft's election timeout: the random
    /// wait, after the follower lease ran out, before a node campaigns (a
    /// pre-vote), and a candidate's wait before it campaigns again. From
    /// just over one heartbeat (openraft demands more than one) to half the
    /// election timeout: a wide range keeps split votes rare, a short one
    /// keeps failover fast (the first campaign comes at most `1.5 E` after
    /// the last heartbeat).
    pub fn campaign_delay_ms(&self) -> (u64, u64) {
        let min = self.heartbeat_ms + 1;
        (min, (self.election_timeout_ms / 2).max(min + 1))
    }

    /// How long after a quorum acknowledged the leader it may serve: half
    /// the follower lease (see [`crate::core`] for why this is safe).
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.follower_lease_ms() / 2)
    }

    /// How long a new leader retries a write that openraft refuses for now
    /// (before its first quorum acknowledgement, while a membership change
    /// is in progress): two election timeouts.
    pub fn retry_budget(&self) -> Duration {
        Duration::from_millis(2 * self.election_timeout_ms)
    }

    /// How long a leader that handed leadership over waits for a successor
    /// before `transfer-leadership` fails: ten election timeouts. The
    /// target first waits (at most the shortest campaign delay) for its log,
    /// then campaigns; should it not win, the followers elect once their
    /// leases ran out and their timers fire, possibly after split votes.
    /// Four timeouts covered that on an idle machine but not on a loaded
    /// two-core CI runner, and a failure here only makes the operator retry
    /// what was happening.
    pub fn handover_budget(&self) -> Duration {
        Duration::from_millis(10 * self.election_timeout_ms)
    }

    /// How long `change-membership` waits for new nodes, added as learners,
    /// to replicate the log before it makes them voters. The log a learner
    /// needs is bounded by snapshots, so this is ample for a node that runs
    /// and is reachable; one that is not stays a learner and the request
    /// fails rather than making an unreachable voter part of every quorum.
    pub fn catch_up_budget(&self) -> Duration {
        Duration::from_millis(10 * self.election_timeout_ms)
    }

    /// The openraft configuration; `alone`: this node was configured as
    /// the whole cluster (no peers but itself).
    pub fn raft_config(&self, alone: bool) -> Result<RaftConfig, DriverError> {
        let (campaign_min, campaign_max) = self.campaign_delay_ms();
        RaftConfig {
            cluster_name: "tsohost".into(),
            election_timeout_min: campaign_min,
            election_timeout_max: campaign_max,
            // The follower lease F (upstream: `election_timeout_max`).
            leader_lease: Some(self.follower_lease_ms()),
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
            // openraft restores a restarted leader in its old term, so a new
            // instance would lead again in the epoch of the one it replaces;
            // WIT demands a strictly greater epoch of every later
            // leadership, and a single node has no followers whose lease
            // makes the old term worth keeping. Alone, a restarted leader
            // starts as a follower and, its own quorum, is elected in the
            // next term within milliseconds. In a cluster, restore keeps a
            // restarted or swapped leader serving under the lease its
            // followers still honour, in the same leadership.
            enable_leader_restore: Some(!alone),
            ..Default::default()
        }
        .validate()
        .map_err(|e| invalid(format!("openraft rejects the derived configuration: {e}")))
    }
}
