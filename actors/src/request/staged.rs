//! The value a request is staged with: set once, when its asset decoded; read once the request
//! is `Ready`; taken back by its cache at the release of a request that ended without it.
//!
//! # Invariants
//!
//! - Set at most once: the first value stays, a later one is dropped (as in a `OnceLock`).
//! - Taken only from a cancelled or failed request, at its release: nothing reads the value of
//!   either (a `Ready` one's stays, as a `ready()` future may read it after the last handle
//!   went). So a cancelled or failed handle the engine keeps holds no asset the memory budget
//!   let go of (an eviction then frees the asset's memory, as the budget counts it).
//! - The one exception: a `Ready` request's value stays while anything holds its cell (a
//!   `ready()` future, a sharer's new handle) after its cache parked a copy at the release; if
//!   the budget evicts that copy, `resident_bytes` drops but the memory is freed only once the
//!   cell goes.

use std::sync::{Arc, Mutex, OnceLock};

use crate::lock::lock;

/// See the module docs. Lives in the request's side box (`Side`), made when the request is
/// staged or fails (or with the cell, for a request in a dependency tree), so a pending request
/// outside a tree pays nothing for it.
pub(crate) struct StagedValue<T>(OnceLock<Mutex<Option<Arc<T>>>>);

impl<T> StagedValue<T> {
    pub(crate) const fn new() -> Self {
        Self(OnceLock::new())
    }

    /// Stages `value`, unless a value was staged before.
    pub(crate) fn set(&self, value: Arc<T>) {
        // A slot set already keeps its value; the one refused is dropped here.
        let _ = self.0.set(Mutex::new(Some(value)));
    }

    /// The value staged, unless there was none or it was taken.
    pub(crate) fn get(&self) -> Option<Arc<T>> {
        self.0.get().and_then(|value| lock(value).clone())
    }

    /// Whether a value was ever staged, taken since or not.
    pub(crate) fn was_set(&self) -> bool {
        self.0.get().is_some()
    }

    /// Takes the value staged out (see the module's invariants).
    pub(crate) fn take(&self) -> Option<Arc<T>> {
        self.0.get().and_then(|value| lock(value).take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_value_stays_until_taken_and_none_is_set_after() {
        let staged = StagedValue::new();
        assert!(!staged.was_set());
        staged.set(Arc::new(1));
        staged.set(Arc::new(2));
        assert_eq!(staged.get(), Some(Arc::new(1)));
        let taken = staged.take().expect("staged");
        assert_eq!(Arc::strong_count(&taken), 1, "the slot keeps no copy");
        assert_eq!((staged.get(), staged.was_set()), (None, true));
        staged.set(Arc::new(3));
        assert_eq!(staged.get(), None, "set once only");
    }
}
