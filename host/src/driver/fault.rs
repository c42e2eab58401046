//! Faults injected into a running guest for chaos runs
//! (`PUT /v1/admin/faults {"guest": "trap"}`, `"hang"` or `"exhaust"`).
//!
//! Each fires inside the guest, so the real failure path runs, not a
//! shortcut around it. `trap` and `hang` fire in the guest's next call into
//! the host: the import traps (the guest unwinds as from `unreachable`), or
//! it blocks past the per-call time limit and returns, and the guest is
//! interrupted at its next epoch check as a hung guest is. `exhaust` fires
//! with the next peer message: it is delivered grown past the guest's
//! memory cap, so the guest's own allocator, asked to hold it, fails to
//! grow its memory as a guest allocating without bound does. Either way the
//! actor drops the instance, fails its open requests and rebuilds it from
//! storage.

use std::sync::atomic::{AtomicU8, Ordering};

/// What the running guest's next call into the host does: the admin API's
/// type, so that the API and its client cannot disagree on the names.
pub use tsohost_client::admin::GuestFault;

/// The fault waiting for the running guest's next host call, if any. Shared
/// by the node's spawner (every instance it starts) and the admin API.
#[derive(Debug, Default)]
pub struct GuestFaults(AtomicU8);

impl GuestFaults {
    pub fn inject(&self, fault: GuestFault) {
        self.0.store(Self::code(Some(fault)), Ordering::Relaxed);
    }

    /// Withdraw the fault not fired yet, if any.
    pub fn clear(&self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// The fault not fired yet.
    pub fn pending(&self) -> Option<GuestFault> {
        Self::fault(self.0.load(Ordering::Relaxed))
    }

    /// Whether `fault` is pending, consuming it if so.
    pub(super) fn take(&self, fault: GuestFault) -> bool {
        let code = Self::code(Some(fault));
        self.0
            .compare_exchange(code, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    fn code(fault: Option<GuestFault>) -> u8 {
        match fault {
            None => 0,
            Some(GuestFault::Trap) => 1,
            Some(GuestFault::Hang) => 2,
            Some(GuestFault::Exhaust) => 3,
        }
    }

    fn fault(code: u8) -> Option<GuestFault> {
        match code {
            1 => Some(GuestFault::Trap),
            2 => Some(GuestFault::Hang),
            3 => Some(GuestFault::Exhaust),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_fires_once_and_only_where_it_belongs() {
        let f = GuestFaults::default();
        assert!(!f.take(GuestFault::Hang));
        f.inject(GuestFault::Hang);
        assert_eq!(f.pending(), Some(GuestFault::Hang));
        assert!(!f.take(GuestFault::Trap));
        assert!(f.take(GuestFault::Hang));
        assert!(!f.take(GuestFault::Hang));
        assert_eq!(f.pending(), None);
    }
}
