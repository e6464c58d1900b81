//! Sources as the runtime reads them: a source that indexes its entries (a pack, the memory
//! source) gets each read with the locator it gave for that key, and reads the entry there; a
//! folder's files are read within their size limit, and only its regular files.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use streamrt::pack::{Codec, PackLimits};
use streamrt::{
    AssetKey, DirSource, EntryInfo, Locator, MemorySource, PackSource, Priority, Runtime, Source,
    SourceError,
};
use streamrt_integration::{blob_key, named_pipe, write_blob_pack, Blob, BlobDecoder, PATIENCE};

/// Reads counted by how they came: with a locator, or by key alone.
#[derive(Default)]
struct Reads {
    located: AtomicUsize,
    by_key: AtomicUsize,
}

/// `inner`, counting its reads; a read whose locator is not the one `inner` gives for its key
/// panics (and fails its load).
struct Counting<S> {
    inner: S,
    reads: Arc<Reads>,
}

impl<S: Source> Source for Counting<S> {
    fn read(&self, key: &AssetKey) -> Result<Vec<u8>, SourceError> {
        self.reads.by_key.fetch_add(1, Ordering::Relaxed);
        self.inner.read(key)
    }

    fn read_located(&self, key: &AssetKey, locator: Locator) -> Result<Vec<u8>, SourceError> {
        assert_eq!(self.inner.entry_info(key).locator, Some(locator), "{key} read elsewhere");
        self.reads.located.fetch_add(1, Ordering::Relaxed);
        self.inner.read_located(key, locator)
    }

    fn describe(&self) -> String {
        format!("counting {}", self.inner.describe())
    }

    fn entry_info(&self, key: &AssetKey) -> EntryInfo {
        self.inner.entry_info(key)
    }
}

fn payload(i: usize) -> Vec<u8> {
    (0..600).map(|j| ((j * 3 + i) % 251) as u8).collect()
}

/// Requests `e0`..`e{count}` from `source`, checks each asset's bytes, and returns how the
/// reads came.
fn load_all(source: impl Source, count: usize) -> Arc<Reads> {
    let reads = Arc::new(Reads::default());
    let counting = Counting { inner: source, reads: Arc::clone(&reads) };
    let rt = Runtime::builder().source(counting).register(BlobDecoder::default()).build().unwrap();
    let handles: Vec<_> = (0..count)
        .map(|i| rt.request::<Blob>(&format!("e{i}"), Priority::Normal).unwrap())
        .collect();
    for (i, handle) in handles.iter().enumerate() {
        let blob = handle.wait_timeout(PATIENCE).expect("ends in time").expect("loads");
        assert_eq!(blob.0, payload(i), "e{i}'s bytes");
    }
    rt.shutdown();
    reads
}

/// A pack of `e0`..`e{count}` in `dir`, each `e{i}` depending on the keys `deps(i)` names.
fn pack(dir: &Path, count: usize, deps: impl Fn(usize) -> Vec<String>) -> PackSource {
    let path = dir.join("located.pack");
    write_blob_pack(&path, (0..count).map(|i| (payload(i), Codec::Lz4, deps(i))));
    PackSource::open(&path, PackLimits::default()).unwrap()
}

#[test]
fn every_read_of_a_pack_finds_its_entry_by_the_locator_the_pack_gave() {
    let dir = tempfile::tempdir().unwrap();
    let reads = load_all(pack(dir.path(), 30, |_| vec![]), 30);
    assert_eq!(reads.located.load(Ordering::Relaxed), 30);
    assert_eq!(reads.by_key.load(Ordering::Relaxed), 0);
}

#[test]
fn the_dependencies_a_pack_declares_are_read_by_their_own_locators() {
    let dir = tempfile::tempdir().unwrap();
    let chain = |i: usize| if i == 0 { vec![] } else { vec![format!("blob:e{}", i - 1)] };
    let source = pack(dir.path(), 10, chain);
    let reads = Arc::new(Reads::default());
    let counting = Counting { inner: source, reads: Arc::clone(&reads) };
    let rt = Runtime::builder().source(counting).register(BlobDecoder::default()).build().unwrap();
    let last = rt.request::<Blob>("e9", Priority::Normal).unwrap();
    assert_eq!(last.wait_timeout(PATIENCE).expect("ends in time").expect("loads").0, payload(9));
    rt.shutdown();
    assert_eq!(reads.located.load(Ordering::Relaxed), 10, "e9 and its nine dependencies");
    assert_eq!(reads.by_key.load(Ordering::Relaxed), 0);
}

#[test]
fn every_read_of_the_memory_source_finds_its_entry_by_the_locator_it_gave() {
    let source = MemorySource::new();
    // Inserted out of request order, so that no entry's place is its number.
    for i in (0..30).rev() {
        source.insert(blob_key(&format!("e{i}")), payload(i));
    }
    let reads = load_all(source, 30);
    assert_eq!(reads.located.load(Ordering::Relaxed), 30);
    assert_eq!(reads.by_key.load(Ordering::Relaxed), 0);
}

#[test]
fn a_folders_size_limit_refuses_a_larger_file_and_the_largest_limit_means_none() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("five"), b"12345").unwrap();
    let key = blob_key("five");
    let unlimited = DirSource::new(dir.path()).with_bytes_max(u64::MAX);
    assert_eq!(unlimited.read(&key), Ok(b"12345".to_vec()));
    let exact = DirSource::new(dir.path()).with_bytes_max(5);
    assert_eq!(exact.read(&key), Ok(b"12345".to_vec()));
    let small = DirSource::new(dir.path()).with_bytes_max(4);
    assert_eq!(small.read(&key), Err(SourceError::TooLarge { size: 5, max: 4 }));
}

#[cfg(target_os = "linux")]
#[test]
fn a_sparse_file_larger_than_memory_can_hold_is_refused_as_too_large_without_a_limit() {
    // tmpfs takes a sparse file of 2^60 bytes (ext4 stops at 16 TiB, which an overcommitting
    // kernel could hand out as address space); no allocator can reserve that much, so the read
    // must be refused for good rather than abort the process on a failed allocation.
    let dir = tempfile::tempdir_in("/dev/shm").expect("a tmpfs at /dev/shm");
    let huge = std::fs::File::create(dir.path().join("huge")).unwrap();
    huge.set_len(1 << 60).unwrap();
    let unlimited = DirSource::new(dir.path()).with_bytes_max(u64::MAX);
    let read = unlimited.read(&blob_key("huge"));
    assert_eq!(read, Err(SourceError::TooLarge { size: 1 << 60, max: u64::MAX }));
}

#[test]
fn a_named_pipe_or_a_socket_in_a_folder_is_refused_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plain"), b"plain").unwrap();
    let pipe = dir.path().join("pipe");
    named_pipe(&pipe);
    let source = DirSource::new(dir.path());
    // The first read of a folder resolves the path; once the folder is known, the path is
    // opened as it is. Both opens must refuse the pipe.
    for _ in 0..2 {
        match read_or_unblock(&source, "pipe", &pipe) {
            Err(SourceError::Denied(why)) => assert!(why.contains("not a regular file"), "{why}"),
            other => panic!("the pipe read as {other:?}"),
        }
        assert_eq!(source.read(&blob_key("plain")), Ok(b"plain".to_vec()));
    }
    // A socket cannot even be opened; it is refused the same way, not retried as an IO error.
    let _listener = std::os::unix::net::UnixListener::bind(dir.path().join("socket")).unwrap();
    match source.read(&blob_key("socket")) {
        Err(SourceError::Denied(why)) => assert!(why.contains("not a regular file"), "{why}"),
        other => panic!("the socket read as {other:?}"),
    }
}

/// Reads `key` on another thread; if that read has not ended within [`PATIENCE`], opens the
/// pipe at `pipe` for writing, so that the read ends and the test fails rather than hangs.
fn read_or_unblock(source: &DirSource, key: &str, pipe: &Path) -> Result<Vec<u8>, SourceError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (source, key) = (source.clone(), blob_key(key));
    std::thread::spawn(move || tx.send(source.read(&key)));
    rx.recv_timeout(PATIENCE).unwrap_or_else(|_| {
        drop(std::fs::OpenOptions::new().write(true).open(pipe));
        panic!("the read waited for a writer");
    })
}

/// The memory source, whose load hints panic: every `want` it is told panics.
struct PanickingHints {
    inner: MemorySource,
    wants: Arc<AtomicUsize>,
    unwants: Arc<AtomicUsize>,
}

impl Source for PanickingHints {
    fn read(&self, key: &AssetKey) -> Result<Vec<u8>, SourceError> {
        self.inner.read(key)
    }

    fn read_located(&self, key: &AssetKey, locator: Locator) -> Result<Vec<u8>, SourceError> {
        self.inner.read_located(key, locator)
    }

    fn describe(&self) -> String {
        "memory source with panicking hints".to_owned()
    }

    fn entry_info(&self, key: &AssetKey) -> EntryInfo {
        self.inner.entry_info(key)
    }

    fn want(&self, _: Locator) {
        self.wants.fetch_add(1, Ordering::Relaxed);
        panic!("scripted panic in a load hint");
    }

    fn unwant(&self, _: Locator) {
        self.unwants.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn a_source_whose_load_hints_panic_still_loads_everything_and_is_told_no_more_hints() {
    let (wants, unwants) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let inner = MemorySource::new();
    for i in 0..5 {
        inner.insert(blob_key(&format!("e{i}")), payload(i));
    }
    let source = PanickingHints { inner, wants: Arc::clone(&wants), unwants: Arc::clone(&unwants) };
    let rt = Runtime::builder().source(source).register(BlobDecoder::default()).build().unwrap();
    for i in 0..5 {
        let handle = rt.request::<Blob>(&format!("e{i}"), Priority::Normal).unwrap();
        assert_eq!(
            handle.wait_timeout(PATIENCE).expect("ends in time").expect("loads").0,
            payload(i)
        );
    }
    assert_eq!(rt.status().restarts, 0, "the panic stayed in the hint");
    rt.shutdown();
    assert_eq!(wants.load(Ordering::Relaxed), 1, "hints are off after the first panic");
    assert_eq!(unwants.load(Ordering::Relaxed), 0);
}

/// `inner`, telling the runtime it asked its storage for 100 bytes per read, whatever it
/// hands over (a compressed store's stored size), after `before` bytes read before the runtime
/// was built (an earlier runtime over a clone of the same store).
struct StoredSmall {
    inner: MemorySource,
    reads: AtomicUsize,
    before: u64,
}

impl Source for StoredSmall {
    fn read(&self, key: &AssetKey) -> Result<Vec<u8>, SourceError> {
        self.reads.fetch_add(1, Ordering::AcqRel);
        self.inner.read(key)
    }

    fn describe(&self) -> String {
        "stored small".into()
    }

    fn storage_bytes_read(&self) -> Option<u64> {
        Some(self.before + 100 * self.reads.load(Ordering::Acquire) as u64)
    }

    fn entry_info(&self, key: &AssetKey) -> EntryInfo {
        self.inner.entry_info(key)
    }
}

#[test]
fn the_bandwidth_limit_charges_what_a_source_says_it_read_from_storage_since_the_runtime_began() {
    // 1 MiB handed over at 1,000 bytes a second would hold the read for about 17 minutes, and
    // the 1 GB read before the runtime was built for 12 days; the 100 bytes the storage gave
    // for this read are within the limit's burst, so the load is not held.
    let inner = MemorySource::new();
    inner.insert(blob_key("big"), vec![7; 1 << 20]);
    let source = StoredSmall { inner, reads: AtomicUsize::new(0), before: 1 << 30 };
    let rt = Runtime::builder()
        .source(source)
        .register(BlobDecoder::default())
        .io_bytes_per_sec_max(1_000)
        .immediate()
        .build()
        .unwrap();
    let handle = rt.request::<Blob>("big", Priority::Normal).unwrap();
    let loaded = handle.wait_timeout(PATIENCE).expect("not held for the bytes handed over");
    assert_eq!(loaded.unwrap().0.len(), 1 << 20);
}
