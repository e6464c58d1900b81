//! The runtime's notion of time, behind a seam so that a deterministic run can use a virtual
//! clock instead of the machine's.

use std::time::Instant;

/// Monotonic microseconds since some fixed start.
pub trait Clock: Send + Sync + 'static {
    /// Microseconds since the clock's start; never decreases.
    fn now_us(&self) -> u64;
}

/// The machine's monotonic clock, counted from its creation.
#[derive(Debug)]
pub struct MonotonicClock {
    start: Instant,
}

impl MonotonicClock {
    /// A clock whose zero is now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}
