//! The host's clocks, behind one trait so that tests and the chaos harness can
//! inject time (DESIGN §4: time reaches a driver only through the contract).

use crate::allocator::Now;
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
