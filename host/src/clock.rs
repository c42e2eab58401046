//! The host's clocks, behind one trait so that tests and the chaos harness can
//! inject time (docs/architecture.md §4: time reaches a driver only through the contract).

use crate::allocator::Now;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Now;
}

/// The system's wall clock and a monotonic clock counted from process start
/// (from 1, so that 0 can mean "never").
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Now {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Now {
            wall_ms,
            mono_ms: self.start.elapsed().as_millis() as u64 + 1,
        }
    }
}

/// Another clock with an adjustable offset on its wall clock: a step of the
/// system time (an NTP correction, an operator's mistake), injected through
/// the admin API to show that timestamps never go backwards when the wall
/// clock does. The monotonic clock, on which leases are measured, is left
/// alone: a step of the wall clock does not stretch a lease.
pub struct SkewedClock {
    inner: Arc<dyn Clock>,
    offset_ms: AtomicI64,
}

/// The largest offset accepted: a day either way.
pub const MAX_OFFSET_MS: i64 = 24 * 3600 * 1000;

impl SkewedClock {
    pub fn new(inner: Arc<dyn Clock>) -> SkewedClock {
        SkewedClock {
            inner,
            offset_ms: AtomicI64::new(0),
        }
    }

    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Relaxed)
    }

    /// Step the wall clock to the inner one plus `offset_ms` (clamped to
    /// [`MAX_OFFSET_MS`] either way).
    pub fn set_offset_ms(&self, offset_ms: i64) {
        let clamped = offset_ms.clamp(-MAX_OFFSET_MS, MAX_OFFSET_MS);
        self.offset_ms.store(clamped, Relaxed);
    }
}

impl Clock for SkewedClock {
    fn now(&self) -> Now {
        let now = self.inner.now();
        Now {
            wall_ms: now.wall_ms.saturating_add_signed(self.offset_ms()),
            ..now
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Clock for Fixed {
        fn now(&self) -> Now {
            Now {
                wall_ms: 1_000,
                mono_ms: 7,
            }
        }
    }

    #[test]
    fn an_offset_moves_the_wall_clock_only() {
        let c = SkewedClock::new(Arc::new(Fixed));
        c.set_offset_ms(-400);
        assert_eq!((c.now().wall_ms, c.now().mono_ms), (600, 7));
        c.set_offset_ms(-5_000);
        assert_eq!(c.now().wall_ms, 0, "saturates at the epoch");
        c.set_offset_ms(i64::MAX);
        assert_eq!(c.offset_ms(), MAX_OFFSET_MS);
    }
}
