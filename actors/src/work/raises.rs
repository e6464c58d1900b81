//! Which dispatched loads of one cache were raised to a more urgent priority, by slot index:
//! one shared table per asset type, as [`super::CancelTable`] is, so that a load raised after
//! its dispatch is read, staged for its decode and woken for at its new priority, wherever
//! it is on its way.
//!
//! [`RaiseTable`] keeps, per slot index, the last load raised there and its priority. The
//! cache writes (on its own thread); workers read when they stage a load and when they decide
//! what an urgent load skips.
//!
//! # Invariants
//!
//! - A load's priority is the most urgent of its dispatch's and its last raise's: a raise
//!   never makes a load less urgent.
//! - A raise concerns its load only: a later load of the same slot, with another generation,
//!   reads its own dispatch's priority until it is raised itself.
//! - Reads take no lock (see `slot_words`).
//!
//! # Limits
//!
//! Slot indexes below `CHUNK_SLOTS` × `CHUNKS_MAX`, as for cancels, and generations below
//! 2^61 (a word holds the generation and the priority): a load past either keeps its
//! dispatch's priority.

use std::sync::atomic::Ordering;

use streamrt_messages::{Generation, Priority};

use super::slot_words::SlotWords;

/// Bits of a word that hold the priority (its index plus one: 0 is no raise).
const PRIORITY_BITS: u32 = 3;
/// The last generation a word can hold.
const GENERATION_MAX: u64 = u64::MAX >> PRIORITY_BITS;

/// See the module docs.
#[derive(Default)]
pub(crate) struct RaiseTable {
    words: SlotWords,
}

impl RaiseTable {
    /// Raises the dispatched load of `slot` whose generation is `generation` to `priority`,
    /// unless a raise of that load made it as urgent already.
    pub(crate) fn raise(&self, slot: usize, generation: Generation, priority: Priority) {
        if generation.0 > GENERATION_MAX {
            return;
        }
        let Some(word) = self.words.word_to_write(slot) else { return };
        let raised = generation.0 << PRIORITY_BITS | (priority.index() as u64 + 1);
        // The level's bits grow with urgency's fall (index plus one), and 0 is no raise.
        let more_urgent = |now: u64| now >> PRIORITY_BITS != generation.0 || raised < now;
        let _ = word.fetch_update(Ordering::Release, Ordering::Relaxed, |now| {
            more_urgent(now).then_some(raised)
        });
    }

    /// The priority now of the load of `slot` whose generation is `generation`, dispatched at
    /// `dispatched`.
    pub(crate) fn priority(
        &self,
        slot: usize,
        generation: Generation,
        dispatched: Priority,
    ) -> Priority {
        let Some(word) = self.words.word(slot) else { return dispatched };
        let word = word.load(Ordering::Acquire);
        if word >> PRIORITY_BITS != generation.0 {
            return dispatched;
        }
        let level = (word & ((1 << PRIORITY_BITS) - 1)) as usize;
        let raised = level.checked_sub(1).and_then(Priority::from_index);
        raised.map_or(dispatched, |raised| raised.min(dispatched))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raise_concerns_its_load_only_and_never_lowers_it() {
        let table = RaiseTable::default();
        let (slot, load) = (9, Generation(40));
        assert_eq!(table.priority(slot, load, Priority::Low), Priority::Low, "never raised");
        table.raise(slot, load, Priority::Critical);
        assert_eq!(table.priority(slot, load, Priority::Low), Priority::Critical);
        assert_eq!(table.priority(slot, Generation(41), Priority::Low), Priority::Low, "reused");
        assert_eq!(table.priority(slot + 1, load, Priority::Low), Priority::Low, "another slot");
        table.raise(slot, load, Priority::Normal);
        assert_eq!(table.priority(slot, load, Priority::Background), Priority::Critical, "kept");
        table.raise(slot, Generation(41), Priority::Low);
        assert_eq!(table.priority(slot, Generation(41), Priority::Background), Priority::Low);
        assert_eq!(table.priority(slot, load, Priority::Background), Priority::Background, "gone");
    }

    #[test]
    fn a_generation_past_what_a_word_holds_keeps_its_dispatch_priority() {
        let table = RaiseTable::default();
        let past = Generation(GENERATION_MAX + 1);
        table.raise(3, past, Priority::Critical);
        assert_eq!(table.priority(3, past, Priority::Low), Priority::Low);
    }
}
