//! Pack sources beyond corruption (see `confinement` for that): adjacent reads coalesced, but
//! never into the entries no load waits for, and dependencies declared in a pack's index
//! loaded through the runtime, and a pack cut short under a running runtime.

use streamrt::messages::AssetKey;
use streamrt::pack::{Codec, PackLimits};
use streamrt::{
    Coalescing, EntryInfo, Handle, LoadState, Locator, PackSource, Priority, Runtime, Source,
    SourceError,
};
use streamrt_integration::{noise, write_blob_pack, Blob, BlobDecoder, Gate, PATIENCE};

fn payload(i: u32) -> Vec<u8> {
    (0..1_500u32).map(|j| ((j * 7 + i) % 251) as u8).collect()
}

fn small_pack(dir: &std::path::Path, count: u32) -> std::path::PathBuf {
    let path = dir.join("small.pack");
    write_blob_pack(
        &path,
        (0..count).map(|i| {
            let deps = if i == 0 { vec![] } else { vec![format!("blob:e{}", i - 1)] };
            (payload(i), Codec::Lz4, deps)
        }),
    );
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
fn a_locator_naming_another_keys_entry_reads_the_key_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let source = PackSource::open(small_pack(dir.path(), 3), PackLimits::default()).unwrap();
    let key = |k: &str| streamrt::AssetKey::parse(k).unwrap();
    let e0 = source.entry_info(&key("blob:e0")).locator.unwrap();
    let e2 = key("blob:e2");
    assert_eq!(source.read_located(&e2, e0).unwrap(), source.read(&e2).unwrap());
    assert_ne!(source.read_located(&e2, e0).unwrap(), source.read(&key("blob:e0")).unwrap());
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

/// A pack source whose reads first pass a gate on the key's path, and whose `want` hints pass
/// it on `want` (which holds the runtime's core thread); it forwards the runtime's load hints,
/// as a wrapper that forwards locators must.
struct GatedPack {
    inner: PackSource,
    gate: Gate,
}

impl Source for GatedPack {
    fn read(&self, key: &AssetKey) -> Result<Vec<u8>, SourceError> {
        self.gate.pass(key.path());
        self.inner.read(key)
    }

    fn read_located(&self, key: &AssetKey, locator: Locator) -> Result<Vec<u8>, SourceError> {
        self.gate.pass(key.path());
        self.inner.read_located(key, locator)
    }

    fn describe(&self) -> String {
        format!("gated {}", self.inner.describe())
    }

    fn entry_info(&self, key: &AssetKey) -> EntryInfo {
        self.inner.entry_info(key)
    }

    fn want(&self, locator: Locator) {
        self.gate.pass("want");
        self.inner.want(locator);
    }

    fn unwant(&self, locator: Locator) {
        self.inner.unwant(locator);
    }
}

/// A pack of entries `e0`.. holding `payloads`, with no dependencies, and a runtime over it
/// that reads one load at a time, with `e0`'s read held at the gate.
fn one_read_at_a_time(dir: &std::path::Path, payloads: &[Vec<u8>]) -> (PackSource, Gate, Runtime) {
    let path = dir.join("flat.pack");
    write_blob_pack(&path, payloads.iter().map(|p| (p.clone(), Codec::Lz4, vec![])));
    let source = PackSource::open(&path, PackLimits::default()).unwrap();
    let gate = Gate::default();
    gate.hold("e0");
    let rt = Runtime::builder()
        .source(GatedPack { inner: source.clone(), gate: gate.clone() })
        .register(BlobDecoder::default())
        .workers(1)
        .reads_in_flight(1)
        .read_credit_bytes(1)
        .build()
        .unwrap();
    (source, gate, rt)
}

/// The stored bytes of `source`'s entries `e{i}` for each `i` of `which`.
fn stored_bytes(source: &PackSource, which: impl IntoIterator<Item = usize>) -> u64 {
    which.into_iter().map(|i| source.entries()[i].stored_size).sum()
}

#[test]
fn a_coalescing_window_never_reads_the_entries_of_cancelled_loads() {
    let dir = tempfile::tempdir().unwrap();
    // Ten entries of 1,500 bytes: all of them fit one window.
    let (source, gate, rt) =
        one_read_at_a_time(dir.path(), &(0..10).map(payload).collect::<Vec<_>>());
    let handles: Vec<Handle<Blob>> =
        (0..10).map(|i| rt.request::<Blob>(&format!("e{i}"), Priority::Normal).unwrap()).collect();
    gate.wait_started("e0", 1);
    // The cache has started every load before they are cancelled.
    assert!(rt.sync(PATIENCE));
    for cancelled in handles.iter().skip(1).step_by(2) {
        cancelled.cancel();
    }
    // The cache has let go of the cancelled loads before `e0`'s window is planned.
    assert!(rt.sync(PATIENCE));
    every_other_entry_read_alone(&source, &gate, &rt, &handles);
}

/// Releases `e0`'s read, checks that the even entries of `handles` load, and that each was
/// read on its own: every wanted entry is followed by a cancelled one.
fn every_other_entry_read_alone(
    source: &PackSource,
    gate: &Gate,
    rt: &Runtime,
    handles: &[Handle<Blob>],
) {
    gate.release("e0");
    for (i, kept) in handles.iter().enumerate().step_by(2) {
        assert_eq!(kept.wait_timeout(PATIENCE).unwrap().unwrap().0, payload(i as u32));
    }
    rt.shutdown();
    assert_eq!(source.bytes_read(), stored_bytes(source, (0..10).step_by(2)));
    assert_eq!(source.reads(), 5);
}

#[test]
fn a_coalescing_window_never_reads_the_entries_of_loads_cancelled_before_they_started() {
    let dir = tempfile::tempdir().unwrap();
    let (source, gate, rt) =
        one_read_at_a_time(dir.path(), &(0..10).map(payload).collect::<Vec<_>>());
    // The core thread waits in `e0`'s `want` while the others are requested and cancelled.
    gate.hold("want");
    let first = rt.request::<Blob>("e0", Priority::Normal).unwrap();
    gate.wait_started("want", 1);
    let mut handles = vec![first];
    handles
        .extend((1..10).map(|i| rt.request::<Blob>(&format!("e{i}"), Priority::Normal).unwrap()));
    for cancelled in handles.iter().skip(1).step_by(2) {
        cancelled.cancel();
    }
    gate.release("want");
    gate.wait_started("e0", 1);
    // The cache has seen every request, the cancelled ones already ended, before `e0`'s window
    // is planned.
    assert!(rt.sync(PATIENCE));
    every_other_entry_read_alone(&source, &gate, &rt, &handles);
}

#[test]
fn a_coalescing_window_stops_before_an_entry_already_loaded_and_reads_ahead_past_it() {
    let dir = tempfile::tempdir().unwrap();
    // `e3`, of 100 KiB that do not compress, is read alone (a window starts only at a small
    // entry), but fits in the window of the small entries before it.
    let mut payloads: Vec<Vec<u8>> = (0..10).map(payload).collect();
    payloads[3] = noise(100 << 10);
    let (source, gate, rt) = one_read_at_a_time(dir.path(), &payloads);
    gate.release("e0");
    let loaded = rt.request::<Blob>("e3", Priority::Normal).unwrap();
    assert_eq!(loaded.wait_timeout(PATIENCE).unwrap().unwrap().0, payloads[3]);
    let handles: Vec<Handle<Blob>> = [0, 1, 2, 4]
        .iter()
        .map(|i| rt.request::<Blob>(&format!("e{i}"), Priority::Normal).unwrap())
        .collect();
    for handle in &handles {
        handle.wait_timeout(PATIENCE).unwrap().unwrap();
    }
    rt.shutdown();
    // `e3` alone, `e0`-`e2` up to the loaded `e3`, then `e4` and the never-requested entries
    // after it, which may be requested next: every byte read once.
    assert_eq!(source.reads(), 3);
    assert_eq!(source.bytes_read(), stored_bytes(&source, 0..10));
}

#[test]
fn an_entry_of_a_pack_cut_short_after_it_was_opened_fails_corrupt_at_its_first_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.pack");
    write_blob_pack(&path, (0..2).map(|i| (payload(i), Codec::None, vec![])));
    let source =
        PackSource::open(&path, PackLimits::default()).unwrap().with_coalescing(Coalescing::off());
    let cut = source.entries()[1].offset + 10;
    let rt = Runtime::builder().source(source).register(BlobDecoder::default()).build().unwrap();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(cut).unwrap();
    let err = match rt.request::<Blob>("e1", Priority::Normal).unwrap().wait_timeout(PATIENCE) {
        Some(Err(streamrt::ReadyError::Failed(err))) => err,
        other => panic!("{other:?}"),
    };
    assert!(matches!(err.kind, streamrt::ErrorKind::Corrupt(_)), "{err}");
    assert_eq!(err.attempt, 1, "not retried: reading again brings no bytes back");
    let first = rt.request::<Blob>("e0", Priority::Normal).unwrap();
    assert!(first.wait_timeout(PATIENCE).unwrap().is_ok(), "the entry before the cut still reads");
}
