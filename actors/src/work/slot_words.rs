//! One atomic word per cache slot index, in chunks made when a slot in their range is first
//! written: the shape of the per-type tables that workers read between stages and only the
//! type's cache writes ([`super::CancelTable`], [`super::RaiseTable`]).
//!
//! # Invariants
//!
//! - Reads take no lock: chunks are created once ([`OnceLock`]) and never move.
//! - A slot past `CHUNK_SLOTS` × `CHUNKS_MAX` has no word: writes to it do nothing and reads
//!   find none.

use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

/// Entries per chunk: 128 KiB, allocated when a slot index in its range is first written.
pub(super) const CHUNK_SLOTS: usize = 16_384;
/// Chunks at most: the top-level array, made with the table (one per registered type), is
/// 24 KiB.
pub(super) const CHUNKS_MAX: usize = 1_024;

/// See the module docs.
pub(super) struct SlotWords {
    chunks: Box<[OnceLock<Box<[AtomicU64]>>]>,
}

impl Default for SlotWords {
    fn default() -> Self {
        Self { chunks: (0..CHUNKS_MAX).map(|_| OnceLock::new()).collect() }
    }
}

impl SlotWords {
    /// `slot`'s word, its chunk made (zeroed) if it was not; none past the table.
    pub(super) fn word_to_write(&self, slot: usize) -> Option<&AtomicU64> {
        let chunk = self.chunks.get(slot / CHUNK_SLOTS)?;
        let chunk = chunk.get_or_init(|| (0..CHUNK_SLOTS).map(|_| AtomicU64::new(0)).collect());
        Some(&chunk[slot % CHUNK_SLOTS])
    }

    /// `slot`'s word, if it was ever written (or another in its chunk was).
    pub(super) fn word(&self, slot: usize) -> Option<&AtomicU64> {
        let chunk = self.chunks.get(slot / CHUNK_SLOTS).and_then(OnceLock::get)?;
        Some(&chunk[slot % CHUNK_SLOTS])
    }
}
