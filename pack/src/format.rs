//! The bytes of pack format v1: the fixed header, the codecs, and the index's records.
//!
//! ```text
//! offset 0   magic      8 bytes  "STRMPACK"
//!        8   version    u32 LE   1
//!       12   flags      u32 LE   0 (reserved)
//!       16   index_at   u64 LE   where the index starts (= end of the data region)
//!       24   index_len  u64 LE   its length in bytes
//!       32   index_crc  u32 LE   CRC-32 of the index bytes
//!       36   header_crc u32 LE   CRC-32 of bytes 0..36
//!       40   data region: entries' stored bytes, back to back
//! index_at   index: postcard `PackIndex`, to the end of the file
//! ```

use serde::{Deserialize, Serialize};

/// The first eight bytes of every pack.
pub const MAGIC: [u8; 8] = *b"STRMPACK";
/// The format version this crate reads and writes.
pub const VERSION: u32 = 1;
/// Dependencies one entry may declare, at most: a request walks its asset's whole list, so a
/// pack's lists must stay small whatever its index's size.
pub const DEPS_PER_ENTRY_MAX: usize = 1024;
/// The largest index a pack may have, whatever the limits say (4 GiB less a byte): every entry
/// and every dependency it names takes a byte of it at least, so entry positions and the
/// count of dependencies in all fit in 32 bits.
pub const INDEX_BYTES_CEILING: u64 = u32::MAX as u64;
/// Bytes of the fixed header; the data region starts here.
pub const HEADER_LEN: u64 = 40;

/// How an entry's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Codec {
    /// As they are.
    None,
    /// LZ4 block format (no frame), decompressed into exactly `raw_size` bytes.
    Lz4,
    /// One zstd frame, decompressed into exactly `raw_size` bytes.
    Zstd,
}

impl Codec {
    /// Its name in `streamctl` and `docs/PACK.md`.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// One asset in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The asset key, `type:path` (validated when read).
    pub key: String,
    /// Where its stored bytes start, from the start of the file.
    pub offset: u64,
    /// Its stored (compressed) length.
    pub stored_size: u64,
    /// Its length once decompressed.
    pub raw_size: u64,
    /// How it is stored.
    pub codec: Codec,
    /// CRC-32 of the raw (decompressed) bytes.
    pub crc32: u32,
    /// Keys of the assets it depends on, each an entry of the same pack.
    pub deps: Vec<String>,
}

/// The index: every entry, sorted by offset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackIndex {
    /// The entries.
    pub entries: Vec<IndexEntry>,
}

/// The fixed header, as read or to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The format version.
    pub version: u32,
    /// Where the index starts.
    pub index_at: u64,
    /// The index's length in bytes.
    pub index_len: u64,
    /// CRC-32 of the index bytes.
    pub index_crc: u32,
}

impl Header {
    /// The 40 header bytes, checksummed.
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut out = [0u8; HEADER_LEN as usize];
        out[..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&self.version.to_le_bytes());
        out[16..24].copy_from_slice(&self.index_at.to_le_bytes());
        out[24..32].copy_from_slice(&self.index_len.to_le_bytes());
        out[32..36].copy_from_slice(&self.index_crc.to_le_bytes());
        let crc = crc32fast::hash(&out[..36]);
        out[36..40].copy_from_slice(&crc.to_le_bytes());
        out
    }
}
