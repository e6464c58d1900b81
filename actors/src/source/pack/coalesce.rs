//! Coalescing reads of adjacent pack entries: one positioned read of a window of the data
//! region serves every small entry inside it.
//!
//! Packs are written in the order assets are usually wanted (a level's assets together), so a
//! request for one small entry is often followed by requests for its neighbours. When a small
//! entry (at most a quarter of the window) is not in a recent window, the source reads the
//! window starting at it, up to `window_bytes` or the end of the data region, and keeps the
//! last `windows_max` windows; later entries that lie wholly inside one are copied out of it
//! without a system call. Large entries are read on their own.
//!
//! # Invariants
//!
//! - Memory held is at most `windows_max × window_bytes`.
//! - The bytes served are exactly the entry's stored bytes: a window is a verbatim copy of the
//!   file range, and entries are still decompressed and checksummed as usual.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use streamrt_pack::{EntryError, IndexEntry, PackReader};

/// How adjacent reads are coalesced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coalescing {
    /// Bytes read at once for a small entry; 0 turns coalescing off.
    pub window_bytes: u64,
    /// Windows kept for the entries that follow.
    pub windows_max: usize,
}

impl Default for Coalescing {
    fn default() -> Self {
        Self { window_bytes: 256 << 10, windows_max: 8 }
    }
}

impl Coalescing {
    /// No coalescing: every entry is its own read.
    pub fn off() -> Self {
        Self { window_bytes: 0, windows_max: 0 }
    }
}

#[derive(Debug)]
struct Window {
    start: u64,
    bytes: Arc<Vec<u8>>,
}

impl Window {
    fn slice(&self, offset: u64, len: u64) -> Option<&[u8]> {
        let from = usize::try_from(offset.checked_sub(self.start)?).ok()?;
        let to = from.checked_add(usize::try_from(len).ok()?)?;
        self.bytes.get(from..to)
    }
}

/// The windows of one pack; see the module docs.
#[derive(Debug)]
pub(crate) struct Coalescer {
    policy: Coalescing,
    windows: Mutex<VecDeque<Window>>,
}

impl Coalescer {
    pub(crate) fn new(policy: Coalescing) -> Self {
        Self { policy, windows: Mutex::new(VecDeque::new()) }
    }

    /// The stored bytes of `entry`, from a window when it is small enough; `reads` counts the
    /// positioned reads made.
    pub(crate) fn stored(
        &self,
        reader: &PackReader,
        entry: &IndexEntry,
        reads: &dyn Fn(),
    ) -> Result<Vec<u8>, EntryError> {
        let window_bytes = self.policy.window_bytes;
        if window_bytes == 0 || entry.stored_size.saturating_mul(4) > window_bytes {
            reads();
            return reader.read_stored(entry.offset, entry.stored_size);
        }
        if let Some(bytes) = self.cached(entry) {
            return Ok(bytes);
        }
        let len = window_bytes.min(reader.data_end().saturating_sub(entry.offset));
        reads();
        let window =
            Window { start: entry.offset, bytes: Arc::new(reader.read_stored(entry.offset, len)?) };
        let stored = window.slice(entry.offset, entry.stored_size).map(<[u8]>::to_vec);
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        windows.push_back(window);
        while windows.len() > self.policy.windows_max {
            windows.pop_front();
        }
        drop(windows);
        // The index was checked: an entry lies inside the data region, so inside its window.
        stored.ok_or_else(|| EntryError::Corrupt("entry outside its read window".into()))
    }

    fn cached(&self, entry: &IndexEntry) -> Option<Vec<u8>> {
        let windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        windows
            .iter()
            .rev()
            .find_map(|w| w.slice(entry.offset, entry.stored_size))
            .map(<[u8]>::to_vec)
    }
}
