//! Locking a mutex whose holders never leave its value half-changed.
//!
//! A mutex is poisoned when a thread panicked while holding it. The runtime's shared state is
//! guarded so that nothing panics between two changes that must go together (or the value is
//! whole after each change), so a poisoned lock still guards a consistent value: taking it
//! anyway keeps one panic (caught and turned into a restart elsewhere) from failing every later
//! caller.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, taking its value even if a panic poisoned it (see the module docs).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The things (by address) a thread is inside of: stopping a runtime, holding a recorder's
/// order lock. The engine's code run there may call back into the runtime, which must not
/// then wait on what this very thread holds.
pub(crate) type HeldHere = std::thread::LocalKey<std::cell::RefCell<Vec<usize>>>;

/// Marks `address` in `held` on this thread while it lives (see [`HeldHere`]).
pub(crate) struct HeldMark {
    held: &'static HeldHere,
    address: usize,
}

impl HeldMark {
    /// Marks `address` in `held`, unless this thread marked it already.
    pub(crate) fn new(held: &'static HeldHere, address: usize) -> Option<Self> {
        let fresh = held.with_borrow_mut(|marks| {
            let fresh = !marks.contains(&address);
            if fresh {
                marks.push(address);
            }
            fresh
        });
        fresh.then_some(Self { held, address })
    }

    /// Whether this thread marked `address` in `held`.
    pub(crate) fn is_marked(held: &'static HeldHere, address: usize) -> bool {
        held.with_borrow(|marks| marks.contains(&address))
    }
}

impl Drop for HeldMark {
    fn drop(&mut self) {
        self.held.with_borrow_mut(|marks| marks.retain(|&a| a != self.address));
    }
}
