//! Deliberately broken variants of this driver, for the trust gate's mutant
//! suite (`guest-drivers/testing/README.md`).
//!
//! Compiled only with `--cfg tsohost_mutants`, which the build script of the
//! test-only copy `guest-drivers/testing/mutant-raft` sets for that package
//! alone: the real driver has neither this module nor any hook, refuses the
//! option `mutant` like any unknown one, and is named `raft`; the copy is
//! named `raft-mutant`, so that it never shares a storage namespace with it.
//! The copy selects at most one mutant per instance with the driver option
//! `mutant=NAME` and behaves exactly as the real driver without it.
//!
//! Each mutant is one small change at one place in [`super`], marked
//! `#[cfg(tsohost_mutants)]` there, that breaks one rule of the contract.

use std::rc::Rc;
use std::time::Duration;

use tsohost_guest_sdk::port::Host;
use tsohost_guest_sdk::{Config, DriverError, Epoch};

use super::{Lead, RaftDriver, write};
use crate::settings::Settings;
use crate::types::{Command, pair};

/// One way to break the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutant {
    /// The leader reports a lease of `F + E = 2E` (1 s by default) instead
    /// of `E / 2`: longer than the window in which the voters that
    /// acknowledged it refuse to vote (`F = E`), so a new leader can be
    /// elected and serve while the old lease runs. Breaks: no other node leads and serves
    /// before `lease-until-ms`.
    LongLease,
    /// `persist-high-water` completes once the entry is appended (and
    /// synced) on the leader, before a quorum holds it. Breaks: a persist
    /// completes only once the value survives the loss of this instance
    /// (for a replicated driver: committed by a quorum).
    EarlyAck,
    /// The committed index is written without sync. After a power cut a
    /// leader resumes its term with an older committed index and its
    /// ReadIndex load misses a completed persist. Breaks: a completed
    /// persist is durable; a load reflects every completed persist.
    UnsyncedCommit,
    /// `load-high-water` answers the leader's applied state without
    /// openraft's ReadIndex (no quorum confirmation, no wait for the
    /// entries committed before the read). A newly elected leader has not
    /// applied its predecessor's last entries yet. Breaks: load is
    /// linearizable.
    StaleRead,
    /// `config.floor` is ignored. Breaks: `load-high-water` never answers
    /// below `config.floor`.
    NoFloor,
    /// `transfer-leadership` (and a removed leader's hand-over) lets
    /// openraft transfer without first reporting the step-down: the old
    /// leader keeps its lease while the target, whose transfer election
    /// ignores leases, is elected and serves. Breaks: a leader stops
    /// serving before its successor can be elected; no two leaderships
    /// serve at once.
    NoStepDown,
}

/// Every mutant by its option value.
pub const MUTANTS: &[(&str, Mutant)] = &[
    ("long-lease", Mutant::LongLease),
    ("early-ack", Mutant::EarlyAck),
    ("unsynced-commit", Mutant::UnsyncedCommit),
    ("stale-read", Mutant::StaleRead),
    ("no-floor", Mutant::NoFloor),
    ("no-step-down", Mutant::NoStepDown),
];

/// The name the mutant copy reports (`info().name`, its storage namespace).
pub const NAME: &str = "raft-mutant";

/// The mutant `cfg` selects with `mutant=NAME`, and `cfg` without that
/// option (for the real option parsing, which refuses unknown keys).
pub fn take(cfg: &Config) -> Result<(Option<Mutant>, Config), DriverError> {
    tsohost_guest_sdk::mutant::take(cfg, MUTANTS)
}

/// The host the driver runs on: `host`, or for [`Mutant::UnsyncedCommit`]
/// one that writes the committed index without sync.
pub fn host(mutant: Option<Mutant>, host: Rc<dyn Host>) -> Rc<dyn Host> {
    match mutant {
        Some(Mutant::UnsyncedCommit) => {
            tsohost_guest_sdk::mutant::unsynced(host, |k| k == b"committed")
        }
        _ => host,
    }
}

/// The lease a leader reports after a quorum acknowledged it.
pub fn lease(mutant: Option<Mutant>, settings: &Settings, lease: Duration) -> Duration {
    match mutant {
        Some(Mutant::LongLease) => {
            Duration::from_millis(settings.follower_lease_ms() + settings.election_timeout_ms)
        }
        _ => lease,
    }
}

impl RaftDriver {
    /// Whether this instance runs mutant `m`.
    pub(super) fn mutant_is(&self, m: Mutant) -> bool {
        self.mutant == Some(m)
    }

    /// [`Mutant::EarlyAck`]: propose the persist, let the leader append
    /// it, and complete `request` at once with what it would become.
    pub(super) fn ack_early(&mut self, request: u64, lead: Lead, at_least: u64, epoch: Epoch) {
        let retry = self.retry_policy();
        let cmd = Command::Persist {
            at_least,
            epoch: pair(epoch),
        };
        self.exec.spawn(async move {
            let _ = write(&lead, cmd, retry).await;
        });
        self.settle();
        let hw = self.state.borrow().high_water.max(at_least).max(self.floor);
        self.host.completed(request, Ok(hw));
    }

    /// [`Mutant::StaleRead`]: the applied high water, as if it were the
    /// cluster's.
    pub(super) fn read_locally(&mut self, request: u64) {
        let hw = self.state.borrow().high_water.max(self.floor);
        self.host.completed(request, Ok(hw));
    }
}
