//! Faults injected into a running guest for chaos runs
//! (`PUT /v1/admin/faults {"guest": "trap"}` or `"hang"`).
//!
//! The fault fires inside the guest's next call into the host, so the real
//! failure path runs, not a shortcut around it: the import traps (the guest
//! unwinds as from `unreachable`), or it blocks past the per-call time limit
//! and returns, and the guest is interrupted at its next epoch check as a
//! hung guest is. Either way the actor drops the instance, fails its open
//! requests and rebuilds it from storage.

use std::sync::atomic::{AtomicU8, Ordering};

/// What the running guest's next call into the host does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestFault {
    /// Trap.
    Trap,
    /// Block past the per-call time limit.
    Hang,
}

/// The fault waiting for the running guest's next host call, if any. Shared
/// by the node's spawner (every instance it starts) and the admin API.
#[derive(Debug, Default)]
pub struct GuestFaults(AtomicU8);

impl GuestFaults {
    pub fn inject(&self, fault: GuestFault) {
        self.0.store(Self::code(Some(fault)), Ordering::Relaxed);
    }

    /// The fault not fired yet.
    pub fn pending(&self) -> Option<GuestFault> {
        Self::fault(self.0.load(Ordering::Relaxed))
    }

    /// The pending fault, consumed.
    pub(super) fn take(&self) -> Option<GuestFault> {
        Self::fault(self.0.swap(0, Ordering::Relaxed))
    }

    fn code(fault: Option<GuestFault>) -> u8 {
        match fault {
            None => 0,
            Some(GuestFault::Trap) => 1,
            Some(GuestFault::Hang) => 2,
        }
    }

    fn fault(code: u8) -> Option<GuestFault> {
        match code {
            1 => Some(GuestFault::Trap),
            2 => Some(GuestFault::Hang),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_fires_once() {
        let f = GuestFaults::default();
        assert_eq!(f.take(), None);
        f.inject(GuestFault::Hang);
        assert_eq!(f.pending(), Some(GuestFault::Hang));
        assert_eq!(f.take(), Some(GuestFault::Hang));
        assert_eq!(f.take(), None);
    }
}
