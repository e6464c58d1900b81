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
