//! A cache's side of the memory budget: taking a parked asset back (a hit), parking one no
//! request holds, counting a decoded one, and reporting what the budget evicted.
//!
//! # Invariants
//!
//! - Every change of resident bytes goes through [`Cache::change_residency`] (taking a parked
//!   asset back, which moves no byte, and counting a hit lock the budget directly), which
//!   publishes the
//!   resident total under the budget's lock and drops the evicted assets only after it is
//!   released (see `resident`); a change that may evict goes through
//!   [`Cache::change_evicting`], which reports an `evicted` event for each before the drops
//!   (one of which may panic).

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use streamrt_messages::{AssetPath, EventKind};

use super::Cache;
use crate::key_hash::KeyParts;
use crate::lock::lock;
use crate::resident::{AnyValue, Evicted, Residency};

impl<T: Send + Sync + 'static> Cache<T> {
    pub(super) fn residency(&self) -> MutexGuard<'_, Residency> {
        lock(&self.links.residency)
    }

    /// Runs `change` on the budget and publishes the resident total under the same lock, then
    /// drops what it evicted once the lock is released: an asset's own `Drop` (freeing a GPU
    /// resource, say) may be slow or panic, and the lock is shared with threads off the caches'
    /// arbiter (`Runtime::memory_stats`, the daemon's `stats`), which a slow drop would hold up
    /// and a panic would poison it for.
    ///
    /// # Panics
    ///
    /// With the first panic of an evicted asset's `Drop`, after every other one evicted was
    /// dropped (a second panic while one unwinds would abort the process).
    pub(super) fn change_residency<R>(&self, change: impl FnOnce(&mut Residency) -> R) -> R {
        let (out, let_go) = self.locked_change(change);
        drop_let_go(let_go);
        out
    }

    /// Runs `change`, which may evict, as [`Cache::change_residency`] does, and reports what it
    /// evicted (an `evicted` event each) before the evicted assets are dropped, so that a
    /// panicking `Drop` loses no event.
    ///
    /// # Panics
    ///
    /// As [`Cache::change_residency`].
    pub(super) fn change_evicting(&self, change: impl FnOnce(&mut Residency) -> Vec<Evicted>) {
        let (evicted, let_go) = self.locked_change(change);
        let probe = &self.links.probe;
        for e in evicted {
            probe.emit(probe.event(EventKind::Evicted).with_key(e.key).with_bytes(e.bytes));
        }
        drop_let_go(let_go);
    }

    /// Runs `change` under the budget's lock and publishes the resident total; what it let go
    /// of, to drop once the lock is released.
    fn locked_change<R>(&self, change: impl FnOnce(&mut Residency) -> R) -> (R, Vec<AnyValue>) {
        let mut residency = self.residency();
        let out = change(&mut residency);
        let resident = residency.resident_bytes();
        self.links.probe.counters.resident_bytes.store(resident, Ordering::Relaxed);
        (out, residency.take_let_go())
    }

    /// Takes `path`'s asset back from the budget's pool, with its size, if it is parked; counts
    /// the hit, or the miss, under the same lock.
    pub(super) fn unpark(&self, path: &AssetPath) -> Option<(Arc<T>, u64)> {
        let t = self.budget_index();
        let mut residency = self.residency();
        // Keys carry their type, so a parked value of this key is of this cache's type.
        let taken = residency
            .take(&KeyParts(&self.asset_type, path))
            .and_then(|(value, bytes)| Some((value.downcast::<T>().ok()?, bytes)));
        if taken.is_some() {
            residency.hit(t);
        } else {
            residency.miss(t);
        }
        taken
    }

    /// This type's index in the memory budget.
    pub(super) fn budget_index(&self) -> usize {
        usize::from(self.type_index)
    }

    /// Keeps `path`'s decoded value, which no request holds any more, in the budget's pool for
    /// reuse; reports what the budget evicted to make room.
    pub(super) fn park(&mut self, path: &AssetPath, value: AnyValue, bytes: u64) {
        let key = self.key_of(path);
        let t = self.budget_index();
        self.change_evicting(|r| r.park(t, key, value, bytes));
    }
}

/// Drops each of `let_go`, every one even if one's `Drop` panics; then resumes the first panic.
fn drop_let_go(let_go: Vec<AnyValue>) {
    let mut first_panic = None;
    for value in let_go {
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(value)));
        if let Err(payload) = dropped {
            first_panic.get_or_insert(payload);
        }
    }
    if let Some(payload) = first_panic {
        std::panic::resume_unwind(payload);
    }
}
