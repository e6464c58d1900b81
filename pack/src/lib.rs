//! streamrt's pack files: many assets in one file, with an index, per-entry compression,
//! checksums and a dependency graph. The format is specified in `docs/PACK.md`.
//!
//! - [`PackWriter`] builds a pack (rejecting dependency cycles and dependencies on missing
//!   keys, naming the keys).
//! - [`PackReader`] opens one: it checks the header and the index (bounds, checksums, keys,
//!   sizes) before trusting anything, then reads entries by offset with positioned reads,
//!   decompressing into a buffer sized from the index and bounded by a configured maximum, so
//!   a lying size is refused before allocation, and verifies each entry's checksum.
//! - [`parse_index`] and [`decode_entry`] are the pure parts, also the fuzz targets' entries.
//!
//! # Invariants
//!
//! - Nothing read from a pack is trusted before it is checked: every error is typed
//!   ([`PackError`] for the file, [`EntryError`] for one entry) and nothing panics on any input.
//! - No allocation is sized from the file beyond `index_bytes_max` (the index) and
//!   `entry_bytes_max` (one entry). The decoded index is a constant times the first at most:
//!   about 28, for dependency keys of one character before the keys are checked (two bytes in
//!   the file; a 24-byte `String` and a 32-byte allocation in memory). The default limit of
//!   64 MiB can so take about 1.9 GB before such an index is refused: lower
//!   `index_bytes_max` where a pack is not trusted and memory is short.
//! - An LZ4 entry's raw size is at most 255 times its stored size plus 16 bytes (the most an
//!   LZ4 block can expand): one claiming more is corrupt, refused before its buffer is made.

mod format;
mod graph;
mod lookup;
mod read;
mod write;

pub use format::{
    Codec, Header, IndexEntry, PackIndex, DEPS_PER_ENTRY_MAX, HEADER_LEN, INDEX_BYTES_CEILING,
    MAGIC, VERSION,
};
pub use graph::MISSING_LISTED_MAX;
pub use read::{decode_entry, parse_index, EntryError, PackError, PackLimits, PackReader};
pub use write::{BuildError, PackWriter};

#[cfg(test)]
mod tests;
