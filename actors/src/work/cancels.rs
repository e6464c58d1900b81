//! Which loads of one cache are cancelled, by slot index: one shared table per asset type, so
//! a load carries no cancel flag of its own (an allocation and 40 bytes per pending request
//! fewer than a shared flag per load).
//!
//! [`CancelTable`] keeps, per slot index, the latest generation cancelled there. The cache
//! writes (on its own thread); workers read between stages.
//!
//! # Invariants
//!
//! - A load `(slot, generation)` is cancelled once `cancel(slot, generation)` ran, and stays
//!   cancelled: entries only grow
//!   (`fetch_max`), and generations never repeat and only grow, so a slot reused by a later
//!   load, cancelled or not, never un-cancels an earlier one.
//! - A load is reported cancelled only if it was: a later load's cancel on the same slot
//!   also marks the earlier loads of that slot, but a slot is reused only once its earlier
//!   load was cancelled or had ended.
//! - Reads take no lock (see `slot_words`).
//!
//! # Limits
//!
//! Slot indexes below `CHUNK_SLOTS` × `CHUNKS_MAX` (16,777,216 slots alive at once in one
//! cache); the load of a slot past it is never seen cancelled: it runs to its end and its
//! reply is dropped by generation as any stale one.

use std::sync::atomic::Ordering;

use streamrt_messages::Generation;

use super::slot_words::SlotWords;

/// See the module docs.
#[derive(Default)]
pub(crate) struct CancelTable {
    words: SlotWords,
}

impl CancelTable {
    /// Cancels the load of `slot` whose generation is `generation`.
    pub(crate) fn cancel(&self, slot: usize, generation: Generation) {
        if let Some(word) = self.words.word_to_write(slot) {
            word.fetch_max(generation.0, Ordering::Release);
        }
    }

    /// Whether the load of `slot` whose generation is `generation` was cancelled.
    pub(crate) fn is_cancelled(&self, slot: usize, generation: Generation) -> bool {
        let word = self.words.word(slot);
        word.is_some_and(|w| w.load(Ordering::Acquire) >= generation.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::work::slot_words::{CHUNKS_MAX, CHUNK_SLOTS};

    const SLOTS_MAX: usize = CHUNK_SLOTS * CHUNKS_MAX;

    #[test]
    fn a_cancel_marks_its_load_and_the_earlier_loads_of_its_slot_only() {
        let table = CancelTable::default();
        table.cancel(5, Generation(10));
        assert!(table.is_cancelled(5, Generation(10)));
        assert!(table.is_cancelled(5, Generation(3)), "an earlier load of the slot");
        assert!(!table.is_cancelled(5, Generation(11)), "a later load reusing the slot");
        assert!(!table.is_cancelled(4, Generation(10)), "another slot");
        assert!(!table.is_cancelled(5 + CHUNK_SLOTS, Generation(10)), "another chunk");
    }

    #[test]
    fn a_later_cancel_on_a_reused_slot_never_uncancels_an_earlier_one() {
        let table = CancelTable::default();
        table.cancel(7, Generation(20));
        table.cancel(7, Generation(8));
        assert!(table.is_cancelled(7, Generation(20)));
        assert!(!table.is_cancelled(7, Generation(21)));
    }

    #[test]
    fn a_slot_past_the_table_is_never_cancelled_one_by_one() {
        let table = CancelTable::default();
        table.cancel(SLOTS_MAX, Generation(1));
        assert!(!table.is_cancelled(SLOTS_MAX, Generation(1)));
    }
}
