//! Which pack entries loads wait for, as the runtime tells the pack source ([`Source::want`],
//! [`Source::unwant`]), so that a coalescing window stops at an entry whose load was cancelled
//! or already got its bytes, instead of reading it for nobody.
//!
//! Each entry has a 16-bit count: 0 while the runtime never asked for the entry, then 1 plus
//! the loads waiting for it. A window reads on through an entry never asked for (packs are
//! written in the order assets are wanted, so its request may come next), but stops at one
//! asked for that no load waits for now (count 1). Before this, `streamctl bench cancel` read
//! 87.5–93.7 % of the uncancelled run's bytes with half of the loads cancelled: windows
//! starting at a wanted entry read the cancelled ones after it.
//!
//! An entry decoded and later evicted from the memory budget stays let go until a load asks
//! for it again (eviction sends no hint), so windows stop before it meanwhile: a streamed-in
//! area read again one request at a time coalesces less until its requests come.
//!
//! # Invariants
//!
//! - Advisory: a read is served whatever the counts say, so a wrong count costs bytes read,
//!   never a wrong or missing asset. Counts saturate instead of wrapping, and an `unwant` with
//!   no `want` before it changes nothing.
//! - Relaxed atomics: the counts order nothing else, and a window that sees a count late reads
//!   one entry more or less.
//!
//! [`Source::want`]: crate::Source::want
//! [`Source::unwant`]: crate::Source::unwant

use std::sync::atomic::{AtomicU16, Ordering};

/// The count of an entry asked for that no load waits for now.
const UNWANTED: u16 = 1;

/// Per entry of one pack, the loads waiting for it; see the module docs.
#[derive(Debug)]
pub(crate) struct Interest(Box<[AtomicU16]>);

impl Interest {
    /// No entry of the `entries` asked for yet (2 bytes per entry).
    pub(crate) fn new(entries: usize) -> Self {
        Self((0..entries).map(|_| AtomicU16::new(0)).collect())
    }

    /// A load of the entry at `at` waits for its bytes.
    pub(crate) fn want(&self, at: usize) {
        if let Some(count) = self.0.get(at) {
            let more = |n: u16| Some(n.max(UNWANTED).saturating_add(1));
            let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, more);
        }
    }

    /// A load of the entry at `at` no longer waits for its bytes.
    pub(crate) fn unwant(&self, at: usize) {
        if let Some(count) = self.0.get(at) {
            let fewer = |n: u16| (n > UNWANTED).then(|| n - 1);
            let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, fewer);
        }
    }

    /// Whether the entry at `at` was asked for and no load waits for it now: a window read
    /// for another entry stops before it.
    pub(crate) fn is_unwanted(&self, at: usize) -> bool {
        self.0.get(at).is_some_and(|count| count.load(Ordering::Relaxed) == UNWANTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_unwanted_only_once_asked_for_and_let_go_by_every_load() {
        let interest = Interest::new(3);
        assert!(!interest.is_unwanted(0), "never asked for: it may be asked for next");
        interest.want(0);
        interest.want(0);
        interest.unwant(0);
        assert!(!interest.is_unwanted(0), "one load still waits");
        interest.unwant(0);
        assert!(interest.is_unwanted(0));
        interest.unwant(0);
        assert!(interest.is_unwanted(0), "an unwant too many changes nothing");
        interest.want(0);
        assert!(!interest.is_unwanted(0), "asked for again");
        interest.unwant(1);
        assert!(!interest.is_unwanted(1), "an unwant with no want before it changes nothing");
        interest.want(7);
        interest.unwant(7);
        assert!(!interest.is_unwanted(7), "past the index: never unwanted");
    }

    #[test]
    fn a_count_saturates_instead_of_wrapping() {
        let interest = Interest::new(1);
        for _ in 0..=u16::MAX {
            interest.want(0);
        }
        interest.unwant(0);
        assert!(!interest.is_unwanted(0));
    }
}
