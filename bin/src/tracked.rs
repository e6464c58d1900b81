//! Handles of any asset type behind one trait, so a tool can hold a mixed workload in one list.

use streamrt::{Handle, LoadState, Priority};

/// What `streamctl` needs from a handle, whatever its asset type.
pub trait Tracked {
    /// The request's state.
    fn state(&self) -> LoadState;
    /// Cancels the request.
    fn cancel(&self);
    /// Changes the request's priority.
    fn reprioritize(&self, priority: Priority);
    /// Microseconds from request to terminal state, once terminal.
    fn latency_us(&self) -> Option<u64>;
}

impl<T: Send + Sync + 'static> Tracked for Handle<T> {
    fn state(&self) -> LoadState {
        Handle::state(self)
    }

    fn cancel(&self) {
        Handle::cancel(self);
    }

    fn reprioritize(&self, priority: Priority) {
        Handle::reprioritize(self, priority);
    }

    fn latency_us(&self) -> Option<u64> {
        Handle::latency_us(self)
    }
}

/// The value at quantile `q` (0 to 1) of sorted samples, or 0 for none.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_pick_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 51);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
