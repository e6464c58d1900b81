//! Fuzzes the pack index parser: any bytes must give an index or a typed error, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes choose where the data region ends, so bounds checks are exercised too.
    let (end, index) = data.split_at(data.len().min(8));
    let mut word = [0u8; 8];
    word[..end.len()].copy_from_slice(end);
    let _ = streamrt_pack::parse_index(index, u64::from_le_bytes(word));
});
