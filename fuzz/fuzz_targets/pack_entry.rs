//! Fuzzes entry decoding: arbitrary stored bytes under each codec, with arbitrary claimed raw
//! sizes, must decode, or fail with `TooLarge` or `Corrupt`, never panic or allocate past the
//! limit.

#![no_main]

use libfuzzer_sys::fuzz_target;
use streamrt_pack::{decode_entry, Codec, IndexEntry, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let codec = match data[0] % 3 {
        0 => Codec::None,
        1 => Codec::Lz4,
        _ => Codec::Zstd,
    };
    let raw_size = u64::from(u32::from_le_bytes([data[1], data[2], data[3], data[4]]));
    let crc32 = u32::from_le_bytes([data[5], data[6], data[7], data[8]]);
    let stored = &data[9..];
    let entry = IndexEntry {
        key: "blob:fuzz".into(),
        offset: HEADER_LEN,
        stored_size: stored.len() as u64,
        raw_size,
        codec,
        crc32,
        deps: Vec::new(),
    };
    let _ = decode_entry(&entry, stored.to_vec(), 1 << 20);
});
