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
    /// The failure's kind (`corrupt`, `validation`, ...), once failed.
    fn failure_kind(&self) -> Option<&'static str>;
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

    fn failure_kind(&self) -> Option<&'static str> {
        Handle::error(self).map(|e| e.kind.name())
    }
}
