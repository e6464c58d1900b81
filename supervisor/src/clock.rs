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
        Self { start: Instant::now() }
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

/// A clock that moves only when told: for deterministic runs and for tests of time-based
/// policies (restart intensity, backoff) without sleeping.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_us: std::sync::atomic::AtomicU64,
}

impl ManualClock {
    /// A clock at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `us` microseconds.
    pub fn advance(&self, us: u64) {
        self.now_us.fetch_add(us, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Clock for ManualClock {
    fn now_us(&self) -> u64 {
        self.now_us.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl<C: Clock> Clock for std::sync::Arc<C> {
    fn now_us(&self) -> u64 {
        (**self).now_us()
    }
}
