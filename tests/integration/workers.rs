//! The runtime's worker threads: the CPU priority they run at (Linux keeps one per thread).

use std::sync::{Arc, Mutex, PoisonError};

use streamrt::messages::AssetKey;
use streamrt::{
    wait_loaded, DecodeError, Decoder, EntryInfo, Locator, Priority, Runtime, Source, SourceError,
};
use streamrt_integration::{Blob, BlobDecoder, GatedSource, PATIENCE};

/// The calling thread's nice value (Linux keeps one per thread).
fn own_nice() -> i32 {
    rustix::process::getpriority_process(None).expect("a thread may read its own priority")
}

/// The nice values of the threads that ran something, one per run.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<i32>>>);

impl Seen {
    fn note(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(own_nice());
    }

    fn all(&self) -> Vec<i32> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// A gated source that notes the nice of each thread that reads.
#[derive(Clone, Default)]
struct NotingSource {
    inner: GatedSource,
    seen: Seen,
}

impl Source for NotingSource {
    fn read(&self, key: &AssetKey) -> Result<Vec<u8>, SourceError> {
        self.seen.note();
        self.inner.read(key)
    }

    fn read_located(&self, key: &AssetKey, locator: Locator) -> Result<Vec<u8>, SourceError> {
        self.seen.note();
        self.inner.read_located(key, locator)
    }

    fn entry_info(&self, key: &AssetKey) -> EntryInfo {
        self.inner.entry_info(key)
    }

    fn describe(&self) -> String {
        "memory source noting its readers' priority".to_owned()
    }
}

/// A blob decoder that notes the nice of each thread that decodes.
#[derive(Clone, Default)]
struct NotingDecoder {
    inner: BlobDecoder,
    seen: Seen,
}

impl Decoder for NotingDecoder {
    type Asset = Blob;

    fn type_name(&self) -> &str {
        self.inner.type_name()
    }

    fn decode(&self, key: &AssetKey, bytes: Vec<u8>) -> Result<Blob, DecodeError> {
        self.seen.note();
        self.inner.decode(key, bytes)
    }

    fn size_bytes(&self, blob: &Blob) -> u64 {
        self.inner.size_bytes(blob)
    }
}

/// Loads four blobs at `Normal` (read on the IO pool, decoded on the decode pool) on a runtime
/// built with `worker_nice(nice)`: the nice values seen reading and decoding.
fn nice_of_workers(nice: u8) -> (Vec<i32>, Vec<i32>) {
    let source = NotingSource { inner: GatedSource::with_blobs(4), seen: Seen::default() };
    let decoder = NotingDecoder::default();
    let rt = Runtime::builder()
        .source(source.clone())
        .register(decoder.clone())
        .worker_nice(nice)
        .build()
        .expect("runtime builds");
    let handles: Vec<_> = (0..4)
        .map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).expect("requested"))
        .collect();
    assert!(wait_loaded(&handles, PATIENCE), "every blob loads");
    rt.shutdown();
    (source.seen.all(), decoder.seen.all())
}

#[test]
fn io_and_decode_threads_run_the_configured_steps_below_the_thread_that_built_the_runtime() {
    let base = own_nice();
    assert!(base < 19, "at the lowest priority already, lowering it cannot be seen");
    let lowered = (base + 5).min(19);
    let (reads, decodes) = nice_of_workers(5);
    assert!(reads.len() == 4 && reads.iter().all(|&n| n == lowered), "reads at {reads:?}");
    assert!(decodes.len() == 4 && decodes.iter().all(|&n| n == lowered), "{decodes:?}");
    assert_eq!(own_nice(), base, "the building thread keeps its priority");
    let (reads, decodes) = nice_of_workers(0);
    assert_eq!((reads.len(), decodes.len()), (4, 4));
    assert!(reads.iter().chain(&decodes).all(|&n| n == base), "{reads:?} {decodes:?}");
}
