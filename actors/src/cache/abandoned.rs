//! Loads every request let go of before the cache took their releases: the releases wait in
//! the engine's lane, which a turn reaches after the dispatch orders and the workers' replies.
//! Met there (a load's dispatch, its failure), such a load is cancelled at once: it is not
//! read, retried, or recorded as failing in a replay log.

use std::sync::Arc;

use super::slots::Slot;
use super::Cache;
use crate::request::Ticket;

/// Whether every request holding `slot` let go of it (their releases may still be on their
/// way to the cache, behind what it handles now).
pub(super) fn all_released<T: Send + Sync + 'static>(slot: &Slot<Ticket<T>>) -> bool {
    slot.holders.iter().all(|t| t.cell().is_released())
}

impl<T: Send + Sync + 'static> Cache<T> {
    /// Takes now the releases of the requests holding the slot at `at`, if every one let go:
    /// its load is cancelled, and nothing more is done for it. Whether they had all let go.
    pub(super) fn release_abandoned(&mut self, at: usize) -> bool {
        let Some(slot) = self.table.get(at).filter(|slot| all_released(slot)) else {
            return false;
        };
        let released: Vec<_> = slot.holders.iter().map(|t| Arc::clone(t.cell())).collect();
        released.iter().for_each(|cell| self.release(cell));
        true
    }
}
