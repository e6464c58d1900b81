//! Test packs: blob entries `e0`, `e1`, ... written in order, each with its codec and the keys
//! it depends on.

use std::path::Path;

use streamrt::pack::{Codec, PackWriter};

/// One entry of [`write_blob_pack`]: its bytes, how they are stored, and the keys it depends on.
pub type PackEntry = (Vec<u8>, Codec, Vec<String>);

/// Writes a pack at `path` whose `i`-th entry of `entries` is `blob:e{i}`.
///
/// # Panics
///
/// If the pack cannot be written.
pub fn write_blob_pack(path: &Path, entries: impl IntoIterator<Item = PackEntry>) {
    let mut writer = PackWriter::create(path).expect("create the pack");
    for (i, (payload, codec, deps)) in entries.into_iter().enumerate() {
        writer.add(&format!("blob:e{i}"), &payload, codec, deps).expect("add an entry");
    }
    writer.finish().expect("finish the pack");
}
