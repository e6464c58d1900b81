//! Opening and reading packs, trusting nothing in the file until it is checked.
//!
//! # Errors
//!
//! Opening gives a [`PackError`] naming what is wrong with the file (magic, version, a
//! checksum, a bound, a key); reading an entry gives an [`EntryError`] naming the entry.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use rustix::buffer::spare_capacity;
use rustix::io::Errno;

use streamrt_messages::AssetKey;

use crate::format::{
    Codec, Header, IndexEntry, PackIndex, HEADER_LEN, INDEX_BYTES_CEILING, MAGIC, VERSION,
};
use crate::graph::{check_graph, DepLists, Repeats};
use crate::lookup::{KeyTable, TableError};

/// What a reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackLimits {
    /// The largest index, in bytes (at most [`INDEX_BYTES_CEILING`], whatever this says).
    pub index_bytes_max: u64,
    /// The largest entry, stored or decompressed, in bytes.
    pub entry_bytes_max: u64,
}

impl Default for PackLimits {
    /// A 64 MiB index, 256 MiB per entry.
    fn default() -> Self {
        Self { index_bytes_max: 64 << 20, entry_bytes_max: 256 << 20 }
    }
}

/// Why a pack cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// The file could not be read.
    #[error("io: {0}")]
    Io(String),
    /// Not a regular file (a pipe, a socket, a device, a folder): a pack is read by position.
    #[error("not a regular file: a pack is read by position")]
    NotAFile,
    /// Shorter than its header.
    #[error("truncated: {len} bytes, the header alone is {HEADER_LEN}")]
    Truncated {
        /// The file's length.
        len: u64,
    },
    /// Not a pack.
    #[error("not a streamrt pack (bad magic)")]
    BadMagic,
    /// A version this reader does not know.
    #[error("unsupported pack version {found} (this reader knows {VERSION})")]
    UnsupportedVersion {
        /// The version in the header.
        found: u32,
    },
    /// The header sets flags this reader does not know (all are reserved, 0).
    #[error("unknown header flags {flags:#x}")]
    UnknownFlags {
        /// The flags.
        flags: u32,
    },
    /// The header's checksum does not match.
    #[error("header checksum mismatch")]
    HeaderChecksum,
    /// The index lies outside the file or the header.
    #[error("index at {at}+{len} lies outside the file of {file_len} bytes")]
    IndexOutOfBounds {
        /// Where the header says it starts.
        at: u64,
        /// Its length according to the header.
        len: u64,
        /// The file's length.
        file_len: u64,
    },
    /// The index is larger than the limit.
    #[error("index of {len} bytes over the limit of {max}")]
    IndexTooLarge {
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The index's checksum does not match.
    #[error("index checksum mismatch")]
    IndexChecksum,
    /// The index does not decode.
    #[error("index does not decode: {0}")]
    IndexDecode(String),
    /// An entry of the index is inconsistent.
    #[error("entry {key:?}: {reason}")]
    BadEntry {
        /// The entry's key as written.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// Why one entry cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The read failed.
    #[error("io: {0}")]
    Io(String),
    /// The entry is larger than the limit (checked before allocating).
    #[error("too large: {size} bytes, limit {max}")]
    TooLarge {
        /// The size the index claims.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The bytes do not decompress to the size and checksum the index records.
    #[error("corrupt: {0}")]
    Corrupt(String),
}

/// Reads and checks the header.
fn parse_header(bytes: &[u8; HEADER_LEN as usize]) -> Result<Header, PackError> {
    if bytes[..8] != MAGIC {
        return Err(PackError::BadMagic);
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    if u32_at(36) != crc32fast::hash(&bytes[..36]) {
        return Err(PackError::HeaderChecksum);
    }
    let version = u32_at(8);
    if version != VERSION {
        return Err(PackError::UnsupportedVersion { found: version });
    }
    // Reserved: a pack that sets a flag means something this reader does not know.
    let flags = u32_at(12);
    if flags != 0 {
        return Err(PackError::UnknownFlags { flags });
    }
    Ok(Header { version, index_at: u64_at(16), index_len: u64_at(24), index_crc: u32_at(32) })
}

/// Decodes and checks an index whose data region ends at `data_end`: no byte after the index,
/// every key valid and unique, entries in file order inside the data region and not
/// overlapping, no codec-none entry whose sizes differ, and a dependency graph as the writer
/// makes it (at most [`DEPS_PER_ENTRY_MAX`](crate::DEPS_PER_ENTRY_MAX) per entry, each an entry
/// of the pack, no cycle; a dependency named twice, which older writers let through, is
/// kept, and its users take it once). Entries over the reader's `entry_bytes_max` are kept:
/// reading one fails with `TooLarge`, and the rest of the pack stays usable.
///
/// # Errors
///
/// [`PackError::IndexDecode`] or [`PackError::BadEntry`].
pub fn parse_index(bytes: &[u8], data_end: u64) -> Result<PackIndex, PackError> {
    parse_index_table(bytes, data_end).map(|parsed| parsed.index)
}

/// What [`parse_index`] checked, with the table of the entries by key and their dependencies
/// as positions, which it made on the way.
struct ParsedIndex {
    index: PackIndex,
    by_key: KeyTable,
    deps: DepLists,
}

/// [`parse_index`], keeping what it made on the way.
fn parse_index_table(bytes: &[u8], data_end: u64) -> Result<ParsedIndex, PackError> {
    let (index, rest): (PackIndex, _) =
        postcard::take_from_bytes(bytes).map_err(|e| PackError::IndexDecode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(PackError::IndexDecode(format!("{} bytes after the index", rest.len())));
    }
    // Where the previous entry ended: entries are in file order and do not overlap, so no
    // stored bytes are served (or decompressed by `verify`) twice.
    let mut data_at = HEADER_LEN;
    let mut table = KeyTable::with_capacity(index.entries.len());
    for (at, entry) in index.entries.iter().enumerate() {
        let bad = |reason: String| PackError::BadEntry { key: entry.key.clone(), reason };
        AssetKey::check(&entry.key).map_err(|e| bad(e.to_string()))?;
        table.insert(&index.entries, at).map_err(|e| match e {
            TableError::Repeated(_) => bad("appears twice".into()),
            TableError::TooMany => PackError::IndexDecode(format!(
                "{} entries: a pack numbers fewer than 2^32",
                index.entries.len()
            )),
        })?;
        let end = entry.offset.checked_add(entry.stored_size);
        let Some(end) = end.filter(|&end| entry.offset >= HEADER_LEN && end <= data_end) else {
            return Err(bad(format!(
                "{}+{} lies outside the data region {HEADER_LEN}..{data_end}",
                entry.offset, entry.stored_size
            )));
        };
        if entry.offset < data_at {
            return Err(bad(format!(
                "starts at {}, before the previous entry's end {data_at}",
                entry.offset
            )));
        }
        data_at = end;
        if entry.codec == Codec::None && entry.stored_size != entry.raw_size {
            return Err(bad(format!(
                "stored {} and raw {} differ without a codec",
                entry.stored_size, entry.raw_size
            )));
        }
    }
    let deps = check_graph(&index.entries, &table, Repeats::TakeOnce)
        .map_err(|e| PackError::BadEntry { key: e.key().to_owned(), reason: e.to_string() })?;
    Ok(ParsedIndex { index, by_key: table, deps })
}

/// The most raw bytes one stored byte of an LZ4 block stands for: a match's length grows by
/// at most 255 per byte of its encoding (a few bytes more per block are allowed for).
const LZ4_EXPANSION_MAX: u64 = 255;

/// Decompresses one entry's stored bytes and checks them against the index: the raw size is
/// checked against `entry_bytes_max` before the output buffer is allocated, decompression
/// cannot write past it, and the result must match the recorded size and checksum.
///
/// # Errors
///
/// [`EntryError::TooLarge`] or [`EntryError::Corrupt`] (an LZ4 entry whose raw size its
/// stored bytes cannot hold is corrupt before any buffer is made).
pub fn decode_entry(
    entry: &IndexEntry,
    stored: Vec<u8>,
    entry_bytes_max: u64,
) -> Result<Vec<u8>, EntryError> {
    if entry.raw_size > entry_bytes_max {
        return Err(EntryError::TooLarge { size: entry.raw_size, max: entry_bytes_max });
    }
    let too_large = || EntryError::TooLarge { size: entry.raw_size, max: entry_bytes_max };
    let lz4_holds = (stored.len() as u64).saturating_mul(LZ4_EXPANSION_MAX).saturating_add(16);
    if entry.codec == Codec::Lz4 && entry.raw_size > lz4_holds {
        // Refused before the buffer is made and cleared, which a read of such an entry would
        // otherwise pay at its claimed size each time, only to fail.
        return Err(EntryError::Corrupt(format!(
            "lz4: {} stored bytes cannot hold {} raw bytes",
            stored.len(),
            entry.raw_size
        )));
    }
    let raw_len = usize::try_from(entry.raw_size).map_err(|_| too_large())?;
    // Sized from the index, within the limit: a limit raised past what the machine can
    // allocate refuses the entry rather than aborting the process.
    let mut out = Vec::new();
    if entry.codec != Codec::None {
        out.try_reserve_exact(raw_len).map_err(|_| too_large())?;
    }
    let raw = match entry.codec {
        // Stored as is: the bytes read are the raw bytes, no copy.
        Codec::None => stored,
        Codec::Lz4 => {
            out.resize(raw_len, 0);
            let n = lz4_flex::block::decompress_into(&stored, &mut out)
                .map_err(|e| EntryError::Corrupt(format!("lz4: {e}")))?;
            out.truncate(n);
            out
        }
        Codec::Zstd => {
            let mut zstd = zstd::bulk::Decompressor::new()
                .map_err(|e| EntryError::Io(format!("zstd: {e}")))?;
            // Into the spare capacity reserved above, and no further.
            zstd.decompress_to_buffer(&stored, &mut out)
                .map_err(|e| EntryError::Corrupt(format!("zstd: {e}")))?;
            out
        }
    };
    if raw.len() as u64 != entry.raw_size {
        return Err(EntryError::Corrupt(format!(
            "{} bytes decompressed, the index says {}",
            raw.len(),
            entry.raw_size
        )));
    }
    if crc32fast::hash(&raw) != entry.crc32 {
        return Err(EntryError::Corrupt("checksum mismatch".into()));
    }
    Ok(raw)
}

/// An open pack; see the crate docs. Reads are positioned, so one reader serves many threads.
#[derive(Debug)]
pub struct PackReader {
    file: File,
    index: PackIndex,
    by_key: KeyTable,
    deps: DepLists,
    limits: PackLimits,
    data_end: u64,
}

/// Why [`read_into_spare`] stopped short.
enum Short {
    /// The file ends at this byte.
    Ends(u64),
    /// A read failed.
    Failed(std::io::Error),
}

/// Reads `file`'s bytes from `offset` + `buf`'s length into `buf`'s spare room (reserved by
/// the caller), nothing zeroed first, until `buf` holds `n` bytes.
fn read_into_spare(file: &File, buf: &mut Vec<u8>, n: usize, offset: u64) -> Result<(), Short> {
    while buf.len() < n {
        let at = offset + buf.len() as u64;
        match rustix::io::pread(file, spare_capacity(buf), at) {
            Ok(0) => return Err(Short::Ends(at)),
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(Short::Failed(e.into())),
        }
    }
    Ok(())
}

impl PackReader {
    /// Opens `path` and checks its header and index.
    ///
    /// # Errors
    ///
    /// See [`PackError`].
    pub fn open(path: &Path, limits: PackLimits) -> Result<Self, PackError> {
        let io = |e: std::io::Error| PackError::Io(e.to_string());
        // Non-blocking, so that a named pipe with no writer is refused below instead of
        // holding the caller; it changes nothing for a regular file's reads. Never a
        // controlling terminal: a daemon (a session leader) given a terminal's path as its
        // pack would take it as one before refusing it, and a hangup on it would stop it.
        let flags = libc::O_NONBLOCK | libc::O_NOCTTY;
        let opened = OpenOptions::new().read(true).custom_flags(flags).open(path);
        // A socket cannot be opened at all.
        let file = opened.map_err(|e| match e.raw_os_error() {
            Some(libc::ENXIO) => PackError::NotAFile,
            _ => io(e),
        })?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(PackError::NotAFile);
        }
        let file_len = meta.len();
        if file_len < HEADER_LEN {
            return Err(PackError::Truncated { len: file_len });
        }
        let mut head = [0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut head, 0).map_err(io)?;
        let header = parse_header(&head)?;
        let (at, len) = (header.index_at, header.index_len);
        if at < HEADER_LEN || at.checked_add(len) != Some(file_len) {
            return Err(PackError::IndexOutOfBounds { at, len, file_len });
        }
        let max = limits.index_bytes_max.min(INDEX_BYTES_CEILING);
        if len > max {
            return Err(PackError::IndexTooLarge { len, max });
        }
        // Reserved, not allocated outright: a limit raised past what the machine can allocate
        // refuses the index rather than aborting the process. Read into the reserved room,
        // nothing zeroed first.
        let too_large = || PackError::IndexTooLarge { len, max };
        let n = usize::try_from(len).map_err(|_| too_large())?;
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(n).map_err(|_| too_large())?;
        match read_into_spare(&file, &mut bytes, n, at) {
            Ok(()) => {}
            // Shorter than when its length was read: it changed under the reader.
            Err(Short::Ends(_)) => return Err(io(std::io::ErrorKind::UnexpectedEof.into())),
            Err(Short::Failed(e)) => return Err(io(e)),
        }
        // The room reserved may be larger, and the file grown since: its checksum decides.
        bytes.truncate(n);
        if crc32fast::hash(&bytes) != header.index_crc {
            return Err(PackError::IndexChecksum);
        }
        let ParsedIndex { index, by_key, deps } = parse_index_table(&bytes, at)?;
        Ok(Self { file, index, by_key, deps, limits, data_end: at })
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.index.entries
    }

    /// The entry of `key` (`type:path`).
    pub fn entry(&self, key: &str) -> Option<&IndexEntry> {
        self.position(key).map(|i| &self.index.entries[i])
    }

    /// The place of `key`'s entry in [`PackReader::entries`].
    pub fn position(&self, key: &str) -> Option<usize> {
        self.by_key.find(&self.index.entries, key)
    }

    /// [`PackReader::position`] of a parsed key, whose text is not put together to look it up.
    pub fn key_position(&self, key: &AssetKey) -> Option<usize> {
        self.by_key.find_parts(&self.index.entries, key.asset_type().as_str(), key.path())
    }

    /// The places in [`PackReader::entries`] of the entry at `at`'s dependencies, each once
    /// (one an older writer named twice included), in the order the index names them first.
    ///
    /// # Panics
    ///
    /// If `at` is not a place in [`PackReader::entries`].
    pub fn dependency_positions(&self, at: usize) -> &[u32] {
        self.deps.of(at)
    }

    /// Where the data region ends (and the index starts).
    pub fn data_end(&self) -> u64 {
        self.data_end
    }

    /// The limits the pack was opened with.
    pub fn limits(&self) -> PackLimits {
        self.limits
    }

    /// Reads `len` stored bytes at `offset` (inside the data region, as the index was checked).
    ///
    /// # Errors
    ///
    /// As [`PackReader::read_stored_front`].
    pub fn read_stored(&self, offset: u64, len: u64) -> Result<Vec<u8>, EntryError> {
        let mut stored = Vec::new();
        self.read_stored_front(offset, len, &mut stored)?;
        // A fresh buffer grows to exactly `len`; kept to it whatever the allocator gave.
        stored.truncate(usize::try_from(len).unwrap_or(usize::MAX));
        Ok(stored)
    }

    /// Reads `len` stored bytes at `offset` into the front of `buf`, a buffer kept from read to
    /// read: `buf` ends at least `len` long, and its bytes past `len` are a former read's, kept
    /// so that a later read into it neither grows nor zeroes it. Exactly `len` bytes are read:
    /// into the part of `buf` already initialised, then, past it, into its spare capacity,
    /// which is not zeroed (a buffer zeroed only for the read to overwrite it cost a third
    /// as much CPU as the read itself, as the zeroing was the first touch of memory long out
    /// of the caches: `streamctl bench throughput`, docs/PERFORMANCE.md). Only when `buf`'s
    /// spare capacity reaches past `len` are the bytes between its length and `len` zeroed
    /// (a buffer a failed read left part filled, taken again for a longer one), so that no
    /// spare capacity past `len` is read into.
    ///
    /// # Errors
    ///
    /// [`EntryError::Io`], `Corrupt` when the file ends inside the entry, or `TooLarge` past
    /// the entry limit.
    pub fn read_stored_front(
        &self,
        offset: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<(), EntryError> {
        let max = self.limits.entry_bytes_max;
        if len > max {
            return Err(EntryError::TooLarge { size: len, max });
        }
        let n = usize::try_from(len).map_err(|_| EntryError::TooLarge { size: len, max })?;
        // A spare capacity past `n` would be read whole, for nothing: such a buffer is
        // initialised up to `n` instead (only the bytes between its length and `n` zeroed).
        if buf.len() < n && buf.capacity() > n {
            buf.resize(n, 0);
        }
        let initialised = buf.len().min(n);
        // The index, checked against the file when it was opened, says the entry is there: a
        // file that now ends before it changed under the reader, and reading it again will not
        // bring the bytes back, so it is `Corrupt`, not `Io` (which the runtime retries).
        let ends =
            |at: u64| EntryError::Corrupt(format!("the file ends at byte {at}, in the entry"));
        match self.file.read_exact_at(&mut buf[..initialised], offset) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                let end = offset + initialised as u64;
                return Err(EntryError::Corrupt(format!(
                    "the file ends before byte {end}, in the entry"
                )));
            }
            Err(e) => return Err(EntryError::Io(e.to_string())),
        }
        // Past what is initialised: the spare capacity, reserved to the last byte wanted (or
        // refused, should a limit raised past what the machine can allocate let it through).
        if buf.len() < n {
            let refused = EntryError::TooLarge { size: len, max };
            buf.try_reserve_exact(n - buf.len()).map_err(|_| refused)?;
        }
        read_into_spare(&self.file, buf, n, offset).map_err(|short| match short {
            Short::Ends(at) => ends(at),
            Short::Failed(e) => EntryError::Io(e.to_string()),
        })
    }

    /// Reads, decompresses and verifies one entry.
    ///
    /// # Errors
    ///
    /// See [`EntryError`].
    pub fn read(&self, entry: &IndexEntry) -> Result<Vec<u8>, EntryError> {
        self.read_with(entry, || self.read_stored(entry.offset, entry.stored_size))
    }

    /// Reads one entry whose stored bytes come from `stored` (a caller's own read, such as a
    /// coalesced one), then decompresses and verifies them. An entry over the limit, raw or
    /// stored, is refused before `stored` is called: a hostile index's huge stored size is
    /// then neither read nor counted as read (a caller's read counts and throttles it).
    ///
    /// # Errors
    ///
    /// See [`EntryError`].
    pub fn read_with(
        &self,
        entry: &IndexEntry,
        stored: impl FnOnce() -> Result<Vec<u8>, EntryError>,
    ) -> Result<Vec<u8>, EntryError> {
        let max = self.limits.entry_bytes_max;
        let size = entry.raw_size.max(entry.stored_size);
        if size > max {
            return Err(EntryError::TooLarge { size, max });
        }
        decode_entry(entry, stored()?, max)
    }

    /// Reads every entry; returns the ones that fail, with why.
    pub fn verify(&self) -> Vec<(String, EntryError)> {
        self.index
            .entries
            .iter()
            .filter_map(|e| self.read(e).err().map(|err| (e.key.clone(), err)))
            .collect()
    }
}
