//! The checks every driver applies to a persist, in one place so that all
//! Rust drivers answer a bad request with the same error.

use crate::{DriverError, Epoch};

/// The largest physical time, in ms, a timestamp can carry: 46 bits.
pub const MAX_PHYSICAL_MS: u64 = (1 << 46) - 1;

/// `at-least` must fit the 46-bit physical part of a timestamp.
pub fn check_range(at_least: u64) -> Result<(), DriverError> {
    if at_least > MAX_PHYSICAL_MS {
        Err(DriverError::OutOfRange(at_least))
    } else {
        Ok(())
    }
}

/// A request from an epoch older than `accepted` is fenced: it comes from a
/// leader that has been superseded and must not move the high water.
pub fn check_epoch(request: Epoch, accepted: Epoch) -> Result<(), DriverError> {
    if request < accepted {
        Err(DriverError::Fenced(accepted))
    } else {
        Ok(())
    }
}

/// The epoch the empty cluster starts from; every real epoch is greater.
pub const ZERO_EPOCH: Epoch = Epoch { hi: 0, lo: 0 };

/// Reject options this driver does not know, so a typo on the command line
/// is an error rather than a silently ignored setting.
pub fn check_options(cfg: &crate::Config, known: &[&str]) -> Result<(), DriverError> {
    match cfg
        .options
        .iter()
        .find(|(k, _)| !known.contains(&k.as_str()))
    {
        None => Ok(()),
        Some((k, _)) => Err(DriverError::InvalidConfig(format!(
            "unknown driver option `{k}`; this driver knows {}",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ))),
    }
}

/// The options of `cfg`, all of which must be known and whole numbers (as
/// the timing options of replicated drivers are), as `(key, value)` pairs.
pub fn numeric_options<'a>(
    cfg: &'a crate::Config,
    known: &[&str],
) -> Result<Vec<(&'a str, u64)>, DriverError> {
    check_options(cfg, known)?;
    cfg.options
        .iter()
        .map(|(key, value)| {
            let n = value.parse().map_err(|_| {
                DriverError::InvalidConfig(format!(
                    "option `{key}`: `{value}` is not a non-negative integer"
                ))
            })?;
            Ok((key.as_str(), n))
        })
        .collect()
}

/// The timing options of the replicated drivers (`election-timeout-ms`,
/// `heartbeat-ms`, `snapshot-every`), parsed and checked alike. Every node
/// of a cluster must use the same election timeout: a driver's lease
/// argument compares one node's lease with the others' refusal windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The minimum election timeout: how long a node hears no leader before
    /// it may campaign. A leader's lease must be shorter.
    pub election_timeout_ms: u64,
    /// How often a leader heartbeats (and so extends its lease).
    pub heartbeat_ms: u64,
    /// Compact the log every this many entries; `0`: never (where allowed).
    pub snapshot_every: u64,
}

/// What a driver demands of its [`Timing`].
#[derive(Debug, Clone, Copy)]
pub struct TimingRules {
    /// At least this many heartbeats fit in one election timeout, so that a
    /// few lost heartbeats do not end a healthy lease or start an election,
    pub heartbeats_per_timeout: u64,
    /// or else this happens (for the error message).
    pub because: &'static str,
    /// Whether `snapshot-every = 0` (no compaction) is allowed.
    pub snapshots_optional: bool,
}

impl Default for Timing {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Timing {
    /// The timing without options: a 500 ms election timeout, heartbeats
    /// every 50 ms, a snapshot every 1000 entries. After a kill of the
    /// leader a new one serves within about 1.5 election timeouts, under a
    /// second (raft and paxos, 3 nodes on a 2-core machine:
    /// `docs/benchmarks.md`); the timeout spans 10 heartbeats, and a healthy
    /// cluster under full load sees no election.
    pub const DEFAULT: Timing = Timing {
        election_timeout_ms: 500,
        heartbeat_ms: 50,
        snapshot_every: 1000,
    };

    /// The option keys; a driver with no other options passes these to
    /// [`check_options`].
    pub const OPTIONS: &'static [&'static str] =
        &["election-timeout-ms", "heartbeat-ms", "snapshot-every"];

    /// Parse and check `cfg.options` (only [`Timing::OPTIONS`] are known).
    pub fn from_config(cfg: &crate::Config, rules: TimingRules) -> Result<Timing, DriverError> {
        let invalid = DriverError::InvalidConfig;
        let mut t = Timing::default();
        for (key, n) in numeric_options(cfg, Self::OPTIONS)? {
            match key {
                "election-timeout-ms" => t.election_timeout_ms = n,
                "heartbeat-ms" => t.heartbeat_ms = n,
                "snapshot-every" => t.snapshot_every = n,
                _ => unreachable!("check_options admits only the known keys"),
            }
        }
        if t.heartbeat_ms == 0
            || t.heartbeat_ms * rules.heartbeats_per_timeout > t.election_timeout_ms
        {
            return Err(invalid(format!(
                "option `heartbeat-ms` ({}) must be positive and at most 1/{} of \
                 `election-timeout-ms` ({}), or {}",
                t.heartbeat_ms, rules.heartbeats_per_timeout, t.election_timeout_ms, rules.because
            )));
        }
        if t.election_timeout_ms > 600_000 {
            return Err(invalid(format!(
                "option `election-timeout-ms` ({}) is above 10 minutes",
                t.election_timeout_ms
            )));
        }
        if t.snapshot_every == 0 && !rules.snapshots_optional {
            return Err(invalid("option `snapshot-every` must be positive".into()));
        }
        Ok(t)
    }
}
