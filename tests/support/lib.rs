//! Test support for streamrt's integration tests: a test asset type, and a source and decoder
//! whose work the test opens and closes like gates, so tests wait on events instead of
//! sleeping.
//!
//! - [`TextDecoder`]: a second asset type (`text`, UTF-8 strings), for dependencies of another
//!   type.
//! - [`Blob`] / [`BlobDecoder`]: bytes as they were stored. Bytes starting with `BAD` fail to
//!   decode; bytes starting with `PANIC` (or `LOUDPANIC`, with a 2 MiB message) make the decoder panic, with `SIZEPANIC` its sizing
//!   panic, and with `HUGE` its sizing claims `u64::MAX` bytes.
//! - [`Gate`]: a set of held names plus a log of what started; [`GatedSource`] consults it
//!   before each read and [`BlobDecoder`] before each decode. A held name blocks the worker
//!   until the test releases it, or gives up after [`GATE_PATIENCE`]. Its reads of paths
//!   starting with `ioerr` fail, of `flaky` fail the first time, of `wornout` fail after
//!   the second, and of `readpanic` panic;
//!   looking up a path starting with `infopanic` panics, and of `infohold` passes the gate
//!   on `info:` and the path (on the engine's thread, as the request is made).
//! - [`HookedWants`]: a gated source whose load hint runs the test's code on the runtime's
//!   core thread.
//! - [`Scenario`]: a scripted session written as a replay log, for transcript tests.
//! - [`Rng`] and [`noise`]: deterministic random sessions and incompressible bytes.
//! - [`write_blob_pack`]: a pack of blob entries `e0`, `e1`, ...
//! - [`named_pipe`] makes a FIFO; [`within_patience`] runs what may block on a thread of its
//!   own, so that a test whose call never returns fails instead of hanging.

mod packs;
mod rng;
mod scenario;

pub use packs::{write_blob_pack, PackEntry};
pub use rng::{noise, Rng};
pub use scenario::{key, Scenario};

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use streamrt::messages::{AssetKey, AssetTypeName, EventKind, RequestId};
use streamrt::{DecodeError, Decoder, EntryInfo, Locator, MemorySource, Source, SourceError};

/// How long a test waits for anything before it fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// How long a held gate blocks its worker at most: longer than a test's waits while it holds
/// one (a few of [`PATIENCE`] each), so it gives up only in a test that already failed.
pub const GATE_PATIENCE: Duration = Duration::from_secs(4 * PATIENCE.as_secs());

/// A decoded test asset: the stored bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob(pub Vec<u8>);

#[derive(Default)]
struct GateState {
    held: HashSet<String>,
    started: Vec<String>,
    finished: HashMap<String, u32>,
}

/// See the crate docs. Cloning shares the gate.
#[derive(Clone, Default)]
pub struct Gate {
    state: Arc<(Mutex<GateState>, Condvar)>,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes work on `name` block until [`Gate::release`].
    pub fn hold(&self, name: &str) {
        self.lock().held.insert(name.to_owned());
    }

    /// Lets work on `name` proceed.
    pub fn release(&self, name: &str) {
        self.lock().held.remove(name);
        self.state.1.notify_all();
    }

    /// Lets all held work proceed.
    pub fn release_all(&self) {
        self.lock().held.clear();
        self.state.1.notify_all();
    }

    /// Records that work on `name` started, then blocks while `name` is held.
    ///
    /// # Panics
    ///
    /// When `name` is still held after [`GATE_PATIENCE`]: a test that failed while holding it
    /// shuts its runtime down, which waits for this worker, so the test fails rather than
    /// hangs. The runtime takes the panic as any other of a source or a decoder (a retried
    /// read, a decoder panic).
    pub fn pass(&self, name: &str) {
        let deadline = Instant::now() + GATE_PATIENCE;
        let mut state = self.lock();
        state.started.push(name.to_owned());
        self.state.1.notify_all();
        while state.held.contains(name) {
            let left = deadline.checked_duration_since(Instant::now());
            let left = left.unwrap_or_else(|| panic!("work on {name} held past the patience"));
            state =
                self.state.1.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        *state.finished.entry(name.to_owned()).or_default() += 1;
    }

    /// Waits until work on `name` has started `times` times in all.
    ///
    /// # Panics
    ///
    /// After [`PATIENCE`], so a broken runtime fails the test rather than hanging it.
    pub fn wait_started(&self, name: &str, times: usize) {
        let deadline = Instant::now() + PATIENCE;
        let mut state = self.lock();
        while state.started.iter().filter(|s| *s == name).count() < times {
            let left = deadline.checked_duration_since(Instant::now());
            let left = left.unwrap_or_else(|| panic!("work on {name} never started"));
            state =
                self.state.1.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    /// Every name whose work started, in order.
    pub fn started(&self) -> Vec<String> {
        self.lock().started.clone()
    }

    /// How many times work on `name` started.
    pub fn started_count(&self, name: &str) -> usize {
        self.lock().started.iter().filter(|s| *s == name).count()
    }
}

/// Serves a [`MemorySource`] through a [`Gate`] on each key's path; missing keys are
/// `NotFound`, keys whose path starts with `ioerr` fail with an IO error, and keys whose path
/// starts with `flaky` fail with an IO error on their first read only (`wornout`: on every
/// read after the second). Looking up a key whose
/// path starts with `infopanic` panics, and one whose path starts with `infohold` passes the
/// gate on `info:` and the path first.
#[derive(Clone, Default)]
pub struct GatedSource {
    /// The assets served.
    pub inner: MemorySource,
    /// Passed before each read, on the key's path.
    pub gate: Gate,
    /// Reads that came by key alone, without the locator the memory source gives.
    by_key: Arc<AtomicUsize>,
}

impl GatedSource {
    /// A gated source over `count` blobs named `a0`, `a1`, ... of 16 bytes each.
    pub fn with_blobs(count: usize) -> Self {
        let source = Self::default();
        for i in 0..count {
            source.put(&format!("a{i}"), format!("blob-{i:011}").as_bytes());
        }
        source
    }

    /// Reads that came by key alone: every read the runtime makes of a key its source
    /// located comes with the locator, so this stays 0.
    pub fn reads_by_key(&self) -> usize {
        self.by_key.load(Ordering::Relaxed)
    }

    /// Stores `bytes` under `blob:path`.
    pub fn put(&self, path: &str, bytes: &[u8]) {
        self.inner.insert(blob_key(path), bytes.to_vec());
    }

    /// Stores `bytes` under `key`, depending on the keys `deps` (`type:path` each).
    ///
    /// # Panics
    ///
    /// If a key does not parse.
    pub fn put_with_deps(&self, key: &str, bytes: &[u8], deps: &[&str]) {
        let parse = |k: &str| AssetKey::parse(k).expect("valid key");
        self.inner.insert_with_dependencies(
            parse(key),
            bytes.to_vec(),
            deps.iter().map(|d| parse(d)).collect(),
        );
    }
}

impl GatedSource {
    /// Passes the gate on `key`'s path, then plays the path's script: what every read does
    /// before the memory source's.
    fn pass(&self, key: &AssetKey) -> Result<(), SourceError> {
        self.gate.pass(key.path());
        assert!(!key.path().starts_with("readpanic"), "scripted panic reading {key}");
        if key.path().starts_with("ioerr") {
            return Err(SourceError::Io(format!("scripted failure reading {key}")));
        }
        if key.path().starts_with("flaky") && self.gate.started_count(key.path()) == 1 {
            return Err(SourceError::Io(format!("scripted first-read failure of {key}")));
        }
        if key.path().starts_with("wornout") && self.gate.started_count(key.path()) > 2 {
            return Err(SourceError::Io(format!("scripted failure of {key} after two reads")));
        }
        Ok(())
    }
}

impl Source for GatedSource {
    fn read(&self, key: &AssetKey) -> Result<Vec<u8>, SourceError> {
        self.by_key.fetch_add(1, Ordering::Relaxed);
        self.pass(key)?;
        self.inner.read(key)
    }

    fn read_located(&self, key: &AssetKey, locator: Locator) -> Result<Vec<u8>, SourceError> {
        self.pass(key)?;
        self.inner.read_located(key, locator)
    }

    fn describe(&self) -> String {
        "gated memory source".to_owned()
    }

    fn entry_info(&self, key: &AssetKey) -> EntryInfo {
        assert!(!key.path().starts_with("infopanic"), "scripted panic looking up {key}");
        if key.path().starts_with("infohold") {
            self.gate.pass(&format!("info:{}", key.path()));
        }
        self.inner.entry_info(key)
    }
}

/// How long the message of a `LOUDPANIC` decode's panic is: past a replay log record's limit.
pub const LOUD_PANIC_BYTES: usize = 2 << 20;

/// Decodes [`Blob`]s, passing a [`Gate`] on each key's path first. Scripted by the bytes:
/// `PANIC…` panics decoding (`LOUDPANIC…` with a message of [`LOUD_PANIC_BYTES`]), `BAD…` is
/// malformed, and a decoded `SIZEPANIC…` panics when its size is asked.
#[derive(Clone, Default)]
pub struct BlobDecoder {
    /// Passed before each decode, on the key's path.
    pub gate: Gate,
}

impl Decoder for BlobDecoder {
    type Asset = Blob;

    fn type_name(&self) -> &str {
        "blob"
    }

    fn decode(&self, key: &AssetKey, bytes: Vec<u8>) -> Result<Blob, DecodeError> {
        self.gate.pass(key.path());
        if bytes.starts_with(b"LOUDPANIC") {
            panic!("scripted decoder panic on {key}: {}", "!".repeat(LOUD_PANIC_BYTES));
        }
        if bytes.starts_with(b"PANIC") {
            panic!("scripted decoder panic on {key}");
        }
        if bytes.starts_with(b"BAD") {
            return Err(DecodeError::Malformed(format!("{key} starts with BAD")));
        }
        Ok(Blob(bytes))
    }

    fn size_bytes(&self, blob: &Blob) -> u64 {
        assert!(!blob.0.starts_with(b"SIZEPANIC"), "scripted panic sizing a decoded blob");
        if blob.0.starts_with(b"HUGE") {
            return u64::MAX;
        }
        blob.0.len() as u64
    }
}

/// Decodes blobs as they are, noting `note()`, taken on the decoding thread, by key path: where
/// (and how) each key was decoded.
#[derive(Clone)]
pub struct NotingDecoder<T> {
    note: fn() -> T,
    notes: Arc<Mutex<HashMap<String, T>>>,
}

impl<T> NotingDecoder<T> {
    /// Notes `note()` at each decode.
    pub fn new(note: fn() -> T) -> Self {
        Self { note, notes: Arc::default() }
    }

    /// What each key's decode noted, by path.
    pub fn notes(&self) -> HashMap<String, T>
    where
        T: Clone,
    {
        self.notes.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl<T: Send + Sync + 'static> Decoder for NotingDecoder<T> {
    type Asset = Blob;

    fn type_name(&self) -> &str {
        "blob"
    }

    fn decode(&self, key: &AssetKey, bytes: Vec<u8>) -> Result<Blob, DecodeError> {
        let note = (self.note)();
        let mut notes = self.notes.lock().unwrap_or_else(PoisonError::into_inner);
        notes.insert(key.path().to_owned(), note);
        Ok(Blob(bytes))
    }

    fn size_bytes(&self, blob: &Blob) -> u64 {
        blob.0.len() as u64
    }
}

/// Makes a named pipe (FIFO) at `path`, readable and writable by its owner.
///
/// # Panics
///
/// If it cannot be made.
pub fn named_pipe(path: &std::path::Path) {
    let owner_rw = rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR;
    rustix::fs::mkfifoat(rustix::fs::CWD, path, owner_rw).expect("mkfifo");
}

/// A [`GatedSource`] whose load hint ([`Source::want`], which the caches give on the runtime's
/// core thread as a load starts to wait for its bytes) runs `hook` first: a test's way to act
/// on that thread, or to hold it.
pub struct HookedWants {
    inner: GatedSource,
    hook: Box<dyn Fn() + Send + Sync>,
}

impl HookedWants {
    /// `inner`, each of its load hints running `hook`.
    pub fn new(inner: &GatedSource, hook: impl Fn() + Send + Sync + 'static) -> Self {
        Self { inner: inner.clone(), hook: Box::new(hook) }
    }

    /// `inner`, whose first load hint once the flag returned is set holds the core thread
    /// (its caches and scheduler) at `inner`'s gate on `want`, which the test holds first: a
    /// way to line a race up on that thread.
    pub fn holding_when_armed(inner: &GatedSource) -> (Self, Arc<AtomicBool>) {
        let armed = Arc::new(AtomicBool::new(false));
        let (arming, gate) = (Arc::clone(&armed), inner.gate.clone());
        let hooked = Self::new(inner, move || {
            if arming.swap(false, Ordering::AcqRel) {
                gate.pass("want");
            }
        });
        (hooked, armed)
    }
}

impl Source for HookedWants {
    fn read(&self, key: &AssetKey) -> Result<Vec<u8>, SourceError> {
        self.inner.read(key)
    }

    fn read_located(&self, key: &AssetKey, locator: Locator) -> Result<Vec<u8>, SourceError> {
        self.inner.read_located(key, locator)
    }

    fn describe(&self) -> String {
        "gated memory source with hooked load hints".to_owned()
    }

    fn entry_info(&self, key: &AssetKey) -> EntryInfo {
        self.inner.entry_info(key)
    }

    fn want(&self, _: Locator) {
        (self.hook)();
    }
}

/// Runs `call` on a thread of its own and returns what it returned.
///
/// # Panics
///
/// With `what` if `call` has not returned within [`PATIENCE`] (its thread is left running).
pub fn within_patience<T: Send + 'static>(
    what: &str,
    call: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (returned, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = returned.send(call());
    });
    outcome.recv_timeout(PATIENCE).expect(what)
}

/// The calling thread's name, empty if it has none.
pub fn thread_name() -> String {
    std::thread::current().name().unwrap_or_default().to_owned()
}

/// Decodes `text` assets (UTF-8), so tests have a second asset type to depend on.
#[derive(Clone, Copy, Default)]
pub struct TextDecoder;

impl Decoder for TextDecoder {
    type Asset = String;

    fn type_name(&self) -> &str {
        "text"
    }

    fn decode(&self, key: &AssetKey, bytes: Vec<u8>) -> Result<String, DecodeError> {
        String::from_utf8(bytes).map_err(|e| DecodeError::Malformed(format!("{key}: {e}")))
    }

    fn size_bytes(&self, text: &String) -> u64 {
        text.len() as u64
    }
}

/// The key `blob:path`.
///
/// # Panics
///
/// If `path` is not a valid key path.
pub fn blob_key(path: &str) -> AssetKey {
    AssetKey::new(AssetTypeName::new("blob").expect("valid type"), path).expect("valid path")
}

/// Waits for `request`'s own `decoded` event (its dependencies may still be loading).
///
/// # Panics
///
/// If it does not come within [`PATIENCE`].
pub fn wait_decoded(events: &streamrt::EventStream, request: RequestId) {
    let decoded =
        events.wait_for(PATIENCE, |e| e.kind == EventKind::Decoded && e.request == Some(request));
    assert!(decoded.is_some(), "{request} never decoded");
}

/// Waits for the supervisor's report that `actor` restarted.
///
/// # Panics
///
/// If it does not come within [`PATIENCE`].
pub fn wait_restart(events: &streamrt::EventStream, actor: &str) {
    let restarted = events
        .wait_for(PATIENCE, |e| matches!(&e.kind, EventKind::Restarted { actor: a } if a == actor));
    assert!(restarted.is_some(), "{actor} was not restarted");
}
