//! Deliberately broken variants of this driver, for the trust gate's mutant
//! suite (`guest-drivers/testing/README.md`).
//!
//! Compiled only with `--cfg tsohost_mutants`, which the build script of the
//! test-only copy `guest-drivers/testing/mutant-paxos` sets for that package
//! alone: the real driver has neither this module nor any hook, refuses the
//! option `mutant` like any unknown one, and is named `paxos`; the copy is
//! named `paxos-mutant`, so that it never shares a storage namespace with
//! it. The copy selects at most one mutant per instance with the driver
//! option `mutant=NAME` and behaves exactly as the real driver without it.
//!
//! Each mutant is one small change at one place in [`super`], marked
//! `#[cfg(tsohost_mutants)]` there, that breaks one rule of the contract.

use std::rc::Rc;

use tsohost_guest_sdk::port::Host;
use tsohost_guest_sdk::rules::ZERO_EPOCH;
use tsohost_guest_sdk::{Config, DriverError, Epoch};

use super::PaxosDriver;

/// One way to break the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutant {
    /// omnipaxos's promise, accepted round and accepted entries (every
    /// `op/` key) are written without sync, so a node answers Promise and
    /// Accepted for state a power cut loses. Breaks: what a protocol needs
    /// durable before a message leaves is synced; a completed persist
    /// survives the loss of every instance.
    UnsyncedAccept,
    /// The leader's lease runs from its own latest heartbeat, whether or
    /// not a quorum acknowledged it: a leader cut off from its quorum keeps
    /// extending its lease while the others elect a new one. Breaks: a
    /// lease is backed by a quorum that refuses other ballots until it ends.
    UnackedLease,
    /// The lease is `W + W/2` (750 ms by default) instead of `W/2`: longer
    /// than the promise gate `W` that keeps other ballots out. Breaks: no
    /// other node leads and serves before `lease-until-ms`.
    LongLease,
    /// `persist-high-water` no longer checks the request's epoch. Breaks:
    /// a request with an epoch older than the newest accepted fails with
    /// `fenced`.
    NoFence,
    /// `persist-high-water` proposes `at-least - 1`. Breaks: a persist
    /// completes with a durable high water of at least `at-least`.
    ShortPersist,
    /// `load-high-water` answers the leader's applied state without
    /// deciding a barrier: a new leader has not applied what its
    /// predecessors decided yet. Breaks: load is linearizable.
    StaleRead,
}

/// Every mutant by its option value.
pub const MUTANTS: &[(&str, Mutant)] = &[
    ("unsynced-accept", Mutant::UnsyncedAccept),
    ("unacked-lease", Mutant::UnackedLease),
    ("long-lease", Mutant::LongLease),
    ("no-fence", Mutant::NoFence),
    ("short-persist", Mutant::ShortPersist),
    ("stale-read", Mutant::StaleRead),
];

/// The name the mutant copy reports (`info().name`, its storage namespace).
pub const NAME: &str = "paxos-mutant";

/// The mutant `cfg` selects with `mutant=NAME`, and `cfg` without that
/// option (for the real option parsing, which refuses unknown keys).
pub fn take(cfg: &Config) -> Result<(Option<Mutant>, Config), DriverError> {
    tsohost_guest_sdk::mutant::take(cfg, MUTANTS)
}

/// The host the driver runs on: `host`, or for [`Mutant::UnsyncedAccept`]
/// one that writes omnipaxos's keys without sync.
pub fn host(mutant: Option<Mutant>, host: Rc<dyn Host>) -> Rc<dyn Host> {
    match mutant {
        Some(Mutant::UnsyncedAccept) => {
            tsohost_guest_sdk::mutant::unsynced(host, |k| k.starts_with(b"op/"))
        }
        _ => host,
    }
}

impl PaxosDriver {
    /// Whether this instance runs mutant `m`.
    pub(super) fn mutant_is(&self, m: Mutant) -> bool {
        self.mutant == Some(m)
    }

    /// The epoch a persist must not be older than: `accepted`, or for
    /// [`Mutant::NoFence`] none.
    pub(super) fn mutant_fence(&self, accepted: Epoch) -> Epoch {
        if self.mutant_is(Mutant::NoFence) {
            ZERO_EPOCH
        } else {
            accepted
        }
    }

    /// The value a persist proposes: `value`, or one less for
    /// [`Mutant::ShortPersist`].
    pub(super) fn mutant_target(&self, value: u64) -> u64 {
        if self.mutant_is(Mutant::ShortPersist) {
            value.saturating_sub(1)
        } else {
            value
        }
    }

    /// The lease a leader reports: `lease_until`, or the mutated one.
    pub(super) fn mutant_lease(&self, lease_until: u64) -> u64 {
        let settings = &self.settings;
        match self.mutant {
            Some(Mutant::UnackedLease) => self.lease.lease_from_last_heartbeat(settings.lease_ms()),
            Some(Mutant::LongLease) => self
                .lease
                .lease_until(settings.gate_ms() + settings.lease_ms()),
            _ => lease_until,
        }
    }

    /// [`Mutant::StaleRead`]: the applied high water, as if it were the
    /// cluster's.
    pub(super) fn read_locally(&mut self, request: u64) {
        let hw = self.state.high_water.max(self.floor);
        self.host.completed(request, Ok(hw));
    }
}
