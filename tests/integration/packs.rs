//! Pack sources beyond corruption (see `confinement` for that): adjacent reads coalesced, and
//! dependencies declared in a pack's index loaded through the runtime.

use streamrt::pack::{Codec, PackLimits, PackWriter};
use streamrt::{Coalescing, LoadState, PackSource, Priority, Runtime, Source};
use streamrt_integration::{Blob, BlobDecoder, PATIENCE};

fn payload(i: u32) -> Vec<u8> {
    (0..1_500u32).map(|j| ((j * 7 + i) % 251) as u8).collect()
}

fn small_pack(dir: &std::path::Path, count: u32) -> std::path::PathBuf {
    let path = dir.join("small.pack");
    let mut writer = PackWriter::create(&path).unwrap();
    for i in 0..count {
        let deps = if i == 0 { vec![] } else { vec![format!("blob:e{}", i - 1)] };
        writer.add(&format!("blob:e{i}"), &payload(i), Codec::Lz4, deps).unwrap();
    }
    writer.finish().unwrap();
    path
}

#[test]
fn adjacent_small_entries_are_served_by_one_read_with_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = small_pack(dir.path(), 40);
    let coalesced = PackSource::open(&path, PackLimits::default()).unwrap();
    let plain =
        PackSource::open(&path, PackLimits::default()).unwrap().with_coalescing(Coalescing::off());
    for entry in coalesced.entries().to_vec() {
        let key = streamrt::AssetKey::parse(&entry.key).unwrap();
        assert_eq!(coalesced.read(&key).unwrap(), plain.read(&key).unwrap(), "{key}");
    }
    assert_eq!(plain.reads(), 40, "one read per entry without coalescing");
    assert_eq!(coalesced.reads(), 1, "40 entries of under 1.5 KiB fit one 256 KiB window");
}

#[test]
fn a_window_never_reads_more_than_the_packs_per_entry_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = small_pack(dir.path(), 40);
    // Every entry (1,500 raw bytes) is within the limit; a 256 KiB window would not be.
    let limits = PackLimits { entry_bytes_max: 4_000, ..PackLimits::default() };
    let source = PackSource::open(&path, limits).unwrap();
    for entry in source.entries().to_vec() {
        let key = streamrt::AssetKey::parse(&entry.key).unwrap();
        assert!(source.read(&key).is_ok(), "{key}: {:?}", source.read(&key));
    }
    assert!(source.reads() < 40, "windows of whole entries under the limit still coalesce");
}

#[test]
fn a_pack_chain_publishes_every_link_and_progress_counts_the_raw_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let path = small_pack(dir.path(), 5);
    let source = PackSource::open(&path, PackLimits::default()).unwrap();
    let rt = Runtime::builder()
        .source(source)
        .register(BlobDecoder::default())
        .immediate()
        .build()
        .unwrap();
    let last = rt.request::<Blob>("e4", Priority::Normal).unwrap();
    assert_eq!(last.progress().total, 5 * 1_500, "the whole chain, by raw size");
    assert_eq!(last.wait_timeout(PATIENCE).unwrap().unwrap().0, payload(4));
    assert_eq!(last.progress().done, 5 * 1_500);
    // The `ready` count adds a publish batch after its last request is woken: a waiter woken
    // by its own request can read the count before its batch is in it.
    assert!(rt.sync(PATIENCE), "the runtime syncs");
    assert_eq!(rt.status().ready, 5, "the four dependencies were published too");
    assert_eq!(last.state(), LoadState::Ready);
}
