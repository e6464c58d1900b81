//! Coalescing reads of adjacent pack entries: one positioned read of a window of the data
//! region serves every small entry inside it.
//!
//! Packs are written in the order assets are usually wanted (a level's assets together), so a
//! request for one small entry is often followed by requests for its neighbours. When a small
//! entry (at most a quarter of the window) is not in a recent window, the source reads the
//! window starting at it: the entry and the entries that follow it in the file, as many whole
//! ones as fit in `window_bytes`. It keeps the last `windows_max` windows; later entries, of
//! any size, that lie in one are copied out of it without a system call. Large entries, and
//! small ones whose next entry does not fit, are read on their own.
//!
//! A window ends at an entry's end: one that read a fixed `window_bytes` cut its last entry in
//! two, which was then read again on its own, and read bytes that belonged to no entry served.
//! On `streamctl bench throughput`'s pack (entries of 1–256 KiB, every one requested) that read
//! 31 % more bytes than the entries hold, each of them zeroed and copied; windows of whole
//! entries read 11 % more, as two IO workers reading neighbours at once each read a window
//! (until windows being read were registered, below).
//!
//! Windows being read are registered, so no two windows cover the same bytes: an entry inside
//! a window another IO worker is reading is read on its own (it does not wait: waiting for a
//! busy core's wake ran `throughput` slower), and a new window ends before the first window
//! read or being read that starts after it. On `bench cancel`'s pack (entries of 1–64 KiB,
//! every one requested) the file reads fell from 1.63 times the entries' bytes to 1.25; on
//! `bench coalesce`'s (1–16 KiB) the reads rose from about 1,200 to about 4,200 of 20,000
//! entries, as a worker reads alone what the other's window is still reading, at the same
//! rate.
//!
//! A window also stops before an entry the runtime asked for and no load waits for any more
//! (cancelled, or already read and decoded; see `interest`), and reads on through entries
//! never asked for. With every other load of `bench cancel` cancelled, windows had read the
//! cancelled entries after each wanted one: 87.5–93.7 % of the uncancelled run's bytes.
//!
//! A window's buffer is kept when the window is dropped from the recent ones, and a later
//! window is read into it (growing it if it is shorter, spare capacity not zeroed): a fresh buffer
//! is zeroed and faulted in page by page before the read overwrites it, which cost the IO
//! workers about as much CPU as the checksum of the entries in it (`streamctl bench
//! throughput`, docs/PERFORMANCE.md). Windows allocate only while fewer buffers are kept than
//! they need. A window reads and uses the first `len` bytes of its buffer only, and serves
//! nothing past them. A window whose read fails (a neighbour's bad bytes) gives way to a read
//! of the entry alone.
//!
//! # Invariants
//!
//! - Memory held is at most `(windows_max + SPARE_BUFFERS_MAX) × window_bytes`, plus one
//!   buffer for each IO worker reading a window, or copying an entry out of a dropped one, at
//!   that moment.
//! - The windows' lock is held only to find or store a window, never while bytes are copied;
//!   finding one looks at [`WINDOW_ENTRIES_MAX`] entries at most.
//! - A window holds whole entries only, so a byte is read in a window at most once per
//!   window it is in, and a window is read only when it serves more than its first entry.
//! - No window starts inside, or runs into, a window being read or a recent one: a byte is
//!   in one of them at most. An entry can still be read on its own while a window holds it.
//! - The bytes served are exactly the entry's stored bytes: a window is a verbatim copy of the
//!   file range, and entries are still decompressed and checksummed as usual.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use streamrt_pack::{EntryError, IndexEntry, PackReader};

use super::interest::Interest;
use crate::lock::lock;

/// How adjacent reads are coalesced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coalescing {
    /// Bytes read at most at once for a small entry and the entries that follow it (and at
    /// most the pack's `entry_bytes_max`); 0 turns coalescing off.
    pub window_bytes: u64,
    /// Windows kept for the entries that follow; 0 turns coalescing off too (a window no one
    /// keeps would serve only the entry it was read for).
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

/// Buffers of dropped windows kept for the next windows: one per IO worker reading a window
/// at once, on the runtime's default of two workers, with room for more.
const SPARE_BUFFERS_MAX: usize = 4;

/// Entries one window spans, at most: planning a window looks at this many entries at most,
/// under the windows' lock. Without it, a run of empty entries (each one adds no bytes, so
/// never fills the window) was walked to the end of the index at every read, under the lock
/// every IO worker takes. A window of the default 256 KiB reaches it only with entries of
/// 256 bytes or less.
const WINDOW_ENTRIES_MAX: usize = 1_024;

#[derive(Debug)]
struct Window {
    start: u64,
    /// The bytes read, at the start of `bytes`.
    len: usize,
    /// A buffer at least `len` long, kept for later windows. Shared, so an entry is
    /// copied out of it after the lock is let go: a copy allocates, and an allocation that
    /// faulted in a page or grew the heap under the lock held the other IO workers up.
    bytes: Arc<Vec<u8>>,
}

impl Window {
    /// The range of `bytes` holding `len` bytes at `offset` of the file, if all are here.
    fn range(&self, offset: u64, len: u64) -> Option<Range<usize>> {
        let from = usize::try_from(offset.checked_sub(self.start)?).ok()?;
        let to = from.checked_add(usize::try_from(len).ok()?)?;
        (to <= self.len).then_some(from..to)
    }
}

/// The recent windows, newest last, the windows being read, and the buffers of dropped ones.
#[derive(Debug, Default)]
struct Windows {
    recent: VecDeque<Window>,
    /// The file ranges of windows an IO worker is reading now.
    reading: Vec<Range<u64>>,
    spare: Vec<Vec<u8>>,
}

/// How an entry's stored bytes are got.
enum Plan {
    /// Copied out of a recent window's buffer, at this range.
    Copied(Arc<Vec<u8>>, Range<usize>),
    /// Read on its own.
    Alone,
    /// Read in a window of this many bytes starting at the entry, registered as being read.
    Window(u64),
}

impl Windows {
    /// How to get the stored bytes of the entry at `at`: from a recent window; `None` while a
    /// window being read holds them (another IO worker is reading them); else in a new
    /// window that ends before any window read or being read starts, so no byte is read twice
    /// while its window is kept.
    fn plan(&self, pack: Entries<'_>, at: usize, bytes_max: u64) -> Option<Plan> {
        let entry = &pack.entries[at];
        let copied = self.recent.iter().rev().find_map(|w| {
            w.range(entry.offset, entry.stored_size).map(|r| (Arc::clone(&w.bytes), r))
        });
        if let Some((bytes, range)) = copied {
            return Some(Plan::Copied(bytes, range));
        }
        if self.reading.iter().any(|r| r.contains(&entry.offset)) {
            return None;
        }
        let starts = self.recent.iter().map(|w| w.start);
        let starts = starts.chain(self.reading.iter().map(|r| r.start));
        let stop = starts.filter(|&start| start > entry.offset).min().unwrap_or(u64::MAX);
        let len = window_len(pack, at, bytes_max, stop);
        Some(if len <= entry.stored_size { Plan::Alone } else { Plan::Window(len) })
    }

    /// Keeps `bytes` for a later window if there is room; else hands it back, for the caller
    /// to free once the lock is let go.
    fn give_back(&mut self, bytes: Vec<u8>) -> Option<Vec<u8>> {
        if self.spare.len() >= SPARE_BUFFERS_MAX {
            return Some(bytes);
        }
        self.spare.push(bytes);
        None
    }
}

/// The windows of one pack; see the module docs.
#[derive(Debug)]
pub(crate) struct Coalescer {
    policy: Coalescing,
    windows: Mutex<Windows>,
}

impl Coalescer {
    pub(crate) fn new(policy: Coalescing) -> Self {
        Self { policy, windows: Mutex::default() }
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, Windows> {
        // Nothing panics while the lock is held (slices are checked), so a poisoned lock
        // still guards consistent windows.
        lock(&self.windows)
    }

    /// The stored bytes of the entry at `at` in `reader`'s index, from a window when one holds
    /// it or it is small enough to start one; `reads` is told each positioned read's length.
    pub(crate) fn stored(
        &self,
        reader: &PackReader,
        interest: &Interest,
        at: usize,
        reads: &dyn Fn(u64),
    ) -> Result<Vec<u8>, EntryError> {
        let entry = &reader.entries()[at];
        // An empty entry needs no read, and would start no window that serves more than it.
        if entry.stored_size == 0 {
            return Ok(Vec::new());
        }
        // A window is one read, so the pack's per-read limit bounds it too.
        let bytes_max = self.policy.window_bytes.min(reader.limits().entry_bytes_max);
        let pack = Entries { entries: reader.entries(), interest };
        let alone = || {
            reads(entry.stored_size);
            reader.read_stored(entry.offset, entry.stored_size)
        };
        let len = match self.plan(pack, at, bytes_max) {
            Plan::Copied(bytes, range) => return copy_out(&bytes, Some(range)),
            Plan::Alone => return alone(),
            Plan::Window(len) => len,
        };
        // Once the window is kept (or its read failed), it is no longer being read.
        let _reading = Reading { coalescer: self, start: entry.offset };
        reads(len);
        // `len` is at most `bytes_max`, itself at most the pack's per-read limit.
        let too_large = EntryError::TooLarge { size: len, max: bytes_max };
        let len = usize::try_from(len).map_err(|_| too_large)?;
        let Some(window) = self.read_window(reader, entry.offset, len) else {
            // The window's failure may be a neighbour's (a bad sector, a pack cut short since
            // it was opened): the entry's own bytes decide, read on their own, so that an
            // entry fails only for its own bytes, on every attempt as on the first.
            return alone();
        };
        let stored = copy_out(&window.bytes, window.range(entry.offset, entry.stored_size));
        self.keep(window);
        stored
    }

    /// How to get the stored bytes of the entry at `at` (see [`Windows::plan`]); a new window
    /// is registered as being read.
    fn plan(&self, pack: Entries<'_>, at: usize, bytes_max: u64) -> Plan {
        if self.policy.window_bytes == 0 || self.policy.windows_max == 0 {
            return Plan::Alone;
        }
        let mut windows = self.windows();
        match windows.plan(pack, at, bytes_max) {
            // Another IO worker is reading the bytes in its window: read them alone rather
            // than wait for it. Waiting read a fifth fewer bytes in `streamctl bench cancel`
            // but ran `throughput` slower in four alternated pairs of four: a wait for a busy
            // core's wake costs more than the read of one entry.
            None => Plan::Alone,
            Some(Plan::Window(len)) => {
                let start = pack.entries[at].offset;
                windows.reading.push(start..start + len);
                Plan::Window(len)
            }
            Some(plan) => plan,
        }
    }

    /// Reads the `len` bytes at `offset` into the front of a kept buffer (grown if it is
    /// shorter; nothing zeroed; only those bytes read), or into a new one. A failed read gives
    /// the buffer back and `None`: the caller reads its entry alone, which says why.
    fn read_window(&self, reader: &PackReader, offset: u64, len: usize) -> Option<Window> {
        let mut bytes = self.windows().spare.pop().unwrap_or_default();
        if reader.read_stored_front(offset, len as u64, &mut bytes).is_err() {
            let freed = self.windows().give_back(bytes);
            drop(freed);
            return None;
        }
        Some(Window { start: offset, len, bytes: Arc::new(bytes) })
    }

    /// Adds `window` to the recent ones. The buffer of the window it pushes out (one at most,
    /// as one comes in) is kept for a later window, up to `SPARE_BUFFERS_MAX`, or freed once
    /// the lock is let go.
    fn keep(&self, window: Window) {
        let mut windows = self.windows();
        windows.recent.push_back(window);
        let full = windows.recent.len() > self.policy.windows_max;
        let dropped = if full { windows.recent.pop_front() } else { None };
        let (mut unkept, mut shared) = (None, None);
        if let Some(dropped) = dropped {
            // A buffer an entry is still being copied out of stays with its reader.
            match Arc::try_unwrap(dropped.bytes) {
                Ok(bytes) => unkept = windows.give_back(bytes),
                Err(still_read) => shared = Some(still_read),
            }
        }
        drop(windows);
        drop((unkept, shared));
    }
}

/// An entry's bytes copied out of its window's buffer, at `range`. The index was checked: an
/// entry lies inside the data region, so inside any window that holds its start.
fn copy_out(bytes: &[u8], range: Option<Range<usize>>) -> Result<Vec<u8>, EntryError> {
    let copied = range.and_then(|range| bytes.get(range)).map(<[u8]>::to_vec);
    copied.ok_or_else(|| EntryError::Corrupt("entry outside its read window".into()))
}

/// A window registered as being read, from its plan until it is kept or its read failed.
struct Reading<'c> {
    coalescer: &'c Coalescer,
    start: u64,
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        let mut windows = self.coalescer.windows();
        if let Some(i) = windows.reading.iter().position(|r| r.start == self.start) {
            windows.reading.swap_remove(i);
        }
    }
}

/// A pack's index with what loads wait for, as a window is planned over them.
#[derive(Clone, Copy)]
struct Entries<'p> {
    entries: &'p [IndexEntry],
    interest: &'p Interest,
}

/// The bytes of a window starting at the entry at `at`: the entry and the whole entries
/// that follow it contiguously (up to [`WINDOW_ENTRIES_MAX`] in all), within `window_bytes`,
/// ending at `stop` (a file offset) at
/// the latest and before the first entry no load waits for any more; just the entry's own
/// bytes when it is large (over a quarter of `window_bytes`), when no next entry fits, or
/// when coalescing is off (`window_bytes` 0).
fn window_len(pack: Entries<'_>, at: usize, window_bytes: u64, stop: u64) -> u64 {
    let first = &pack.entries[at];
    if first.stored_size.saturating_mul(4) > window_bytes {
        return first.stored_size;
    }
    let mut end = first.offset.saturating_add(first.stored_size);
    let next = pack.entries.iter().enumerate().skip(at + 1).take(WINDOW_ENTRIES_MAX - 1);
    for (i, next) in next {
        let next_end = next.offset.saturating_add(next.stored_size);
        if next.offset != end || next_end - first.offset > window_bytes || next_end > stop {
            break;
        }
        if pack.interest.is_unwanted(i) {
            break;
        }
        end = next_end;
    }
    end - first.offset
}

#[cfg(test)]
mod tests {
    use streamrt_pack::Codec;

    use super::*;

    /// What loads wait for when no runtime told the source anything: every entry may be read
    /// ahead.
    fn none_asked() -> &'static Interest {
        static NONE: std::sync::LazyLock<Interest> = std::sync::LazyLock::new(|| Interest::new(0));
        &NONE
    }

    /// `entries`, none of them asked for.
    fn unasked(entries: &[IndexEntry]) -> Entries<'_> {
        Entries { entries, interest: none_asked() }
    }

    /// Entries laid end to end from offset 100, of these stored sizes.
    fn laid_out(sizes: &[u64]) -> Vec<IndexEntry> {
        let mut offset = 100;
        sizes
            .iter()
            .enumerate()
            .map(|(i, &stored_size)| {
                let entry = IndexEntry {
                    key: format!("blob:e{i}"),
                    offset,
                    stored_size,
                    raw_size: stored_size,
                    codec: Codec::None,
                    crc32: 0,
                    deps: Vec::new(),
                };
                offset += stored_size;
                entry
            })
            .collect()
    }

    #[test]
    fn a_window_ends_at_the_end_of_the_last_whole_entry_that_fits() {
        let entries = laid_out(&[10, 20, 30, 50, 5]);
        // 10 + 20 + 30 fit; with the 50 the window would be 110 bytes.
        assert_eq!(window_len(unasked(&entries), 0, 100, u64::MAX), 60);
        // A large entry (over a quarter of the window) is read alone; so is a small one whose
        // next entry does not fit.
        assert_eq!(window_len(unasked(&entries), 3, 100, u64::MAX), 50);
        assert_eq!(window_len(unasked(&laid_out(&[10, 95])), 0, 100, u64::MAX), 10);
        // A smaller bound (the pack's per-read limit) ends the window sooner, as does a stop
        // (where another window begins); off reads alone.
        assert_eq!(window_len(unasked(&entries), 0, 40, u64::MAX), 30);
        assert_eq!(window_len(unasked(&entries), 0, 100, 100 + 30), 30);
        assert_eq!(window_len(unasked(&entries), 0, 0, u64::MAX), 10);
    }

    #[test]
    fn a_window_spans_a_bounded_number_of_entries_and_empty_ones_never_fill_it() {
        // A small entry, then more empty ones than a window spans, then small ones.
        let mut sizes = vec![1];
        sizes.extend([0; 2 * WINDOW_ENTRIES_MAX]);
        sizes.extend([1; 4]);
        let entries = laid_out(&sizes);
        assert_eq!(window_len(unasked(&entries), 0, 1 << 20, u64::MAX), 1);
        // Entries of a byte each: the window ends at the bound, not at its byte limit.
        let entries = laid_out(&[1; 2 * WINDOW_ENTRIES_MAX]);
        let len = window_len(unasked(&entries), 0, 1 << 20, u64::MAX);
        assert_eq!(len, WINDOW_ENTRIES_MAX as u64);
    }

    #[test]
    fn an_empty_entry_is_served_without_a_read() {
        let dir = tempfile::tempdir().unwrap();
        let reader = pack_of(&dir, &[10, 0, 0, 10]);
        let coalescer = Coalescer::new(Coalescing::default());
        let reads = std::cell::RefCell::new(Vec::new());
        let count = |len: u64| reads.borrow_mut().push(len);
        assert_eq!(coalescer.stored(&reader, none_asked(), 1, &count).unwrap(), Vec::<u8>::new());
        assert_eq!(coalescer.stored(&reader, none_asked(), 2, &count).unwrap(), Vec::<u8>::new());
        assert!(reads.borrow().is_empty(), "{:?}", reads.borrow());
        assert_eq!(coalescer.stored(&reader, none_asked(), 0, &count).unwrap(), vec![0; 10]);
        assert_eq!(coalescer.stored(&reader, none_asked(), 3, &count).unwrap(), vec![3; 10]);
        assert_eq!(*reads.borrow(), [20], "the empty ones inside the window cost nothing");
    }

    /// A pack of entries stored as they are, entry `i` being `sizes[i]` bytes of value `i`.
    fn pack_of(dir: &tempfile::TempDir, sizes: &[usize]) -> PackReader {
        let path = dir.path().join("windows.pack");
        let mut writer = streamrt_pack::PackWriter::create(&path).unwrap();
        for (i, &size) in (0u8..).zip(sizes) {
            let bytes = vec![i; size];
            writer.add(&format!("blob:e{i}"), &bytes, Codec::None, vec![]).unwrap();
        }
        writer.finish().unwrap();
        PackReader::open(&path, streamrt_pack::PackLimits::default()).unwrap()
    }

    #[test]
    fn no_window_kept_is_no_coalescing_every_entry_read_alone() {
        let dir = tempfile::tempdir().unwrap();
        let reader = pack_of(&dir, &[20, 20, 20]);
        let coalescer = Coalescer::new(Coalescing { window_bytes: 100, windows_max: 0 });
        let reads = std::cell::RefCell::new(Vec::new());
        for at in 0..3 {
            let stored =
                coalescer.stored(&reader, none_asked(), at, &|n| reads.borrow_mut().push(n));
            assert_eq!(stored.unwrap(), vec![at as u8; 20]);
        }
        assert_eq!(*reads.borrow(), [20, 20, 20], "a window no one keeps is not read");
    }

    #[test]
    fn a_dropped_window_lends_its_buffer_to_the_next() {
        let dir = tempfile::tempdir().unwrap();
        // Windows of 100 bytes, one kept: entries 0-2 make the first window (60 bytes), 4-5 the
        // second (40), 7-8 the third (20), read into the first one's buffer; 3, 6 and 9 are
        // read on their own.
        let reader = pack_of(&dir, &[20, 20, 20, 50, 20, 20, 70, 10, 10, 90]);
        let coalescer = Coalescer::new(Coalescing { window_bytes: 100, windows_max: 1 });
        let stored = |at: usize| coalescer.stored(&reader, none_asked(), at, &|_| {}).unwrap();
        assert_eq!(stored(0), vec![0; 20]);
        let first = coalescer.windows().recent[0].bytes.as_ptr();
        assert_eq!(stored(3), vec![3; 50]);
        assert_eq!(stored(4), vec![4; 20]);
        assert_eq!(coalescer.windows().spare.len(), 1, "the first window's buffer is kept");
        assert_eq!(stored(6), vec![6; 70]);
        assert_eq!(stored(7), vec![7; 10]);
        let windows = coalescer.windows();
        assert_eq!(windows.spare.len(), 1, "the second window's buffer is kept in its turn");
        assert_eq!(windows.recent[0].bytes.as_ptr(), first, "read into the kept buffer");
        assert_eq!(windows.recent[0].len, 20, "a window is as long as its read");
        let stale = &windows.recent[0].bytes[20..60];
        assert_eq!(stale, [[1; 20], [2; 20]].concat(), "and reads no byte past its own");
        drop(windows);
        assert_eq!(stored(8), vec![8; 10]);
        assert_eq!(stored(9), vec![9; 90]);
    }

    #[test]
    fn each_read_is_counted_at_its_length_a_window_whole() {
        let dir = tempfile::tempdir().unwrap();
        let reader = pack_of(&dir, &[20, 20, 20, 50]);
        let coalescer = Coalescer::new(Coalescing { window_bytes: 100, windows_max: 1 });
        let lengths = std::cell::RefCell::new(Vec::new());
        let count = |len: u64| lengths.borrow_mut().push(len);
        for at in 0..4 {
            coalescer.stored(&reader, none_asked(), at, &count).unwrap();
        }
        // Entries 0-2 in one window of 60 bytes (1 and 2 served from it), 3 on its own.
        assert_eq!(*lengths.borrow(), [60, 50]);
    }

    #[test]
    fn a_window_whose_read_fails_past_its_entry_gives_way_to_the_entry_alone() {
        let dir = tempfile::tempdir().unwrap();
        let reader = pack_of(&dir, &[20, 20, 20]);
        // The pack is cut inside entry 2 after it was opened: a window of 0-2 cannot be read.
        let cut = reader.entries()[2].offset + 5;
        let path = dir.path().join("windows.pack");
        std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(cut).unwrap();
        let coalescer = Coalescer::new(Coalescing { window_bytes: 100, windows_max: 1 });
        let lengths = std::cell::RefCell::new(Vec::new());
        let count = |len: u64| lengths.borrow_mut().push(len);
        assert_eq!(coalescer.stored(&reader, none_asked(), 0, &count).unwrap(), vec![0; 20]);
        assert_eq!(*lengths.borrow(), [60, 20], "the window, then the entry alone");
        assert!(coalescer.windows().reading.is_empty());
        let cut_entry = coalescer.stored(&reader, none_asked(), 2, &count);
        assert!(matches!(cut_entry, Err(EntryError::Corrupt(_))), "{cut_entry:?}");
    }

    #[test]
    fn a_new_window_stops_before_a_window_being_read_or_kept_and_never_covers_one() {
        // Entries of 20 bytes at offsets 100, 120, ... 200 (entries 0 to 5).
        let entries = laid_out(&[20, 20, 20, 20, 20, 20]);
        let plan = |windows: &Windows, at: usize| match windows.plan(unasked(&entries), at, 100) {
            None => "in a window being read".to_owned(),
            Some(Plan::Alone) => "alone".to_owned(),
            Some(Plan::Window(len)) => format!("window of {len}"),
            Some(Plan::Copied(_, range)) => format!("copied {range:?}"),
        };
        // Another IO worker reads a window of entries 2-3.
        let mut windows = Windows::default();
        windows.reading.push(140..180);
        assert_eq!(plan(&windows, 3), "in a window being read");
        assert_eq!(
            plan(&windows, 0),
            "window of 40",
            "it stops where the window being read starts"
        );
        assert_eq!(plan(&windows, 4), "window of 40");
        // Kept, the window serves its entries; one before it still stops at its start.
        windows.reading.clear();
        windows.recent.push_back(Window { start: 140, len: 40, bytes: Arc::new(vec![0; 40]) });
        assert_eq!(plan(&windows, 3), "copied 20..40");
        assert_eq!(plan(&windows, 1), "alone", "entry 2 starts the kept window: nothing fits");
    }

    #[test]
    fn an_entry_in_a_window_being_read_is_read_alone_not_in_a_second_window() {
        let dir = tempfile::tempdir().unwrap();
        let reader = pack_of(&dir, &[20, 20, 20]);
        let coalescer = Coalescer::new(Coalescing { window_bytes: 100, windows_max: 1 });
        // Entry 0 starts a window of the three, registered as being read...
        assert!(matches!(coalescer.plan(unasked(reader.entries()), 0, 100), Plan::Window(60)));
        let reading = Reading { coalescer: &coalescer, start: reader.entries()[0].offset };
        // ...so entry 1 is read on its own meanwhile,
        let lengths = std::cell::RefCell::new(Vec::new());
        let count = |len: u64| lengths.borrow_mut().push(len);
        assert_eq!(coalescer.stored(&reader, none_asked(), 1, &count).unwrap(), vec![1; 20]);
        assert_eq!(*lengths.borrow(), [20]);
        // ...and once the window is kept, entry 2 comes from it without a read.
        let window = coalescer.read_window(&reader, reader.entries()[0].offset, 60).unwrap();
        coalescer.keep(window);
        drop(reading);
        assert!(coalescer.windows().reading.is_empty());
        assert_eq!(coalescer.stored(&reader, none_asked(), 2, &count).unwrap(), vec![2; 20]);
        assert_eq!(*lengths.borrow(), [20]);
    }

    #[test]
    fn a_window_serves_only_the_bytes_it_read_from_a_longer_kept_buffer() {
        // A buffer kept from a 100-byte window, now holding a 20-byte window at offset 100.
        let window = Window { start: 100, len: 20, bytes: Arc::new(vec![7; 100]) };
        assert_eq!(window.range(110, 10), Some(10..20));
        assert_eq!(window.range(120, 10), None, "past the read: an older window's bytes");
        assert_eq!(window.range(115, 10), None, "partly past the read");
        assert_eq!(window.range(90, 10), None, "before the window");
    }

    #[test]
    fn a_buffer_still_being_copied_from_is_not_kept_for_another_window() {
        let dir = tempfile::tempdir().unwrap();
        let reader = pack_of(&dir, &[20, 20, 20, 50, 20, 20, 70]);
        let coalescer = Coalescer::new(Coalescing { window_bytes: 100, windows_max: 1 });
        let stored = |at: usize| coalescer.stored(&reader, none_asked(), at, &|_| {}).unwrap();
        assert_eq!(stored(0), vec![0; 20]);
        // A reader still holds the first window, as `stored` does while it copies from it.
        let held = Arc::clone(&coalescer.windows().recent[0].bytes);
        assert_eq!(stored(4), vec![4; 20], "a second window pushes the first out");
        assert!(coalescer.windows().spare.is_empty(), "the held buffer is not kept");
        assert_eq!(held[..60], [[0; 20], [1; 20], [2; 20]].concat(), "and is left as it was");
    }

    #[test]
    fn a_window_stops_before_an_entry_no_load_waits_for_and_reads_on_through_unasked_ones() {
        let entries = laid_out(&[10, 10, 10, 10, 10]);
        let interest = Interest::new(entries.len());
        let pack = Entries { entries: &entries, interest: &interest };
        assert_eq!(window_len(pack, 0, 100, u64::MAX), 50, "none asked for: all may come next");
        interest.want(3);
        interest.want(2);
        interest.unwant(3);
        assert_eq!(window_len(pack, 0, 100, u64::MAX), 30, "3 was let go: stop before it");
        interest.want(3);
        assert_eq!(window_len(pack, 0, 100, u64::MAX), 50, "3 is wanted again");
        interest.unwant(1);
        assert_eq!(window_len(pack, 0, 100, u64::MAX), 50, "1 was never asked for");
    }

    #[test]
    fn a_window_stops_at_a_gap_between_entries() {
        let mut entries = laid_out(&[10, 10, 10]);
        entries[2].offset += 1;
        assert_eq!(window_len(unasked(&entries), 0, 100, u64::MAX), 20);
    }
}
