//! A cache's side of the memory budget: taking a parked asset back (a hit), parking one no
//! request holds, counting a decoded one, and reporting what the budget evicted.
//!
//! # Invariants
//!
//! - Every change of residency goes through [`Cache::change_residency`], which publishes the
//!   resident total under the budget's lock and drops the evicted assets only after it is
//!   released (see `resident`); what a change evicted is reported with
//!   [`Cache::report_evicted`], an `evicted` event each.

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard, PoisonError};

use streamrt_messages::{AssetPath, EventKind};

use super::Cache;
use crate::key_hash::KeyParts;
use crate::resident::{AnyValue, Evicted, Residency};

impl<T: Send + Sync + 'static> Cache<T> {
    pub(super) fn residency(&self) -> MutexGuard<'_, Residency> {
        self.links.residency.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `change` on the budget and publishes the resident total under the same lock, then
    /// drops what it evicted once the lock is released: an asset's own `Drop` (freeing a GPU resource, say) may be slow or panic, and
    /// the lock is shared with threads off the caches' arbiter (`Runtime::memory_stats`, the
    /// daemon's `stats`), which a slow drop would hold up and a panic would poison it for.
    ///
    /// # Panics
    ///
    /// With the first panic of an evicted asset's `Drop`, after every other one evicted was
    /// dropped (a second panic while one unwinds would abort the process).
    pub(super) fn change_residency<R>(&self, change: impl FnOnce(&mut Residency) -> R) -> R {
        let (out, let_go) = {
            let mut residency = self.residency();
            let out = change(&mut residency);
            let resident = residency.resident_bytes();
            self.links.probe.counters.resident_bytes.store(resident, Ordering::Relaxed);
            (out, residency.take_let_go())
        };
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
        out
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

    /// Reports what the budget evicted: an `evicted` event each.
    pub(super) fn report_evicted(&self, evicted: Vec<Evicted>) {
        let probe = &self.links.probe;
        for e in evicted {
            probe.emit(probe.event(EventKind::Evicted).with_key(e.key).with_bytes(e.bytes));
        }
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
        let evicted = self.change_residency(|r| r.park(t, key, value, bytes));
        self.report_evicted(evicted);
    }
}
