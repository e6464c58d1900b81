//! The memory budget: unreferenced assets kept for reuse, least-recently-used eviction with an
//! `evicted` event, held assets never evicted, per-type budgets, and the stats that show it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use streamrt::chaos::CrashTarget;
use streamrt::messages::{AssetKey, ErrorKind, EventKind};
use streamrt::{
    wait_loaded, BuildError, DecodeError, Decoder, LoadState, Priority, ReadyError, Runtime,
    RuntimeConfig, ASSET_BYTES_MAX,
};
use streamrt_integration::{
    blob_key, wait_restart, within_patience, Blob, BlobDecoder, Gate, GatedSource, HookedWants,
    PATIENCE,
};

use crate::runtime;

/// Loads `path` to `Ready`, then lets go of it and waits until the cache saw the release.
fn load_and_release(rt: &Runtime, path: &str) {
    let handle = rt.request::<Blob>(path, Priority::Normal).unwrap();
    handle.wait_timeout(PATIENCE).unwrap().expect("loads");
    drop(handle);
    assert!(rt.sync(PATIENCE));
}

#[test]
fn a_decoders_size_claim_past_the_largest_counts_as_the_largest() {
    let source = GatedSource::default();
    source.put("huge1", b"HUGE 1");
    source.put("huge2", b"HUGE 2");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate());
    let handles: Vec<_> = ["huge1", "huge2"]
        .map(|path| rt.request::<Blob>(path, Priority::Normal).unwrap())
        .into_iter()
        .collect();
    for h in &handles {
        h.wait_timeout(PATIENCE).unwrap().expect("a huge claim still loads");
    }
    assert!(rt.sync(PATIENCE));
    let stats = &rt.cache_stats(PATIENCE)[0];
    assert_eq!((stats.resident, stats.resident_bytes), (2, 2 * ASSET_BYTES_MAX));
}

#[test]
fn an_unreferenced_asset_stays_cached_and_the_next_request_is_a_hit() {
    let source = GatedSource::with_blobs(1);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate());
    load_and_release(&rt, "a0");
    let again = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    again.wait_timeout(PATIENCE).unwrap().expect("served from memory");
    assert_eq!(source.gate.started_count("a0"), 1, "read once");
    let stats = &rt.cache_stats(PATIENCE)[0];
    assert_eq!((stats.hits, stats.misses, stats.evictions), (1, 1, 0));
    assert_eq!((stats.resident, stats.parked, stats.resident_bytes), (1, 0, 16));
    drop(again);
    assert!(rt.sync(PATIENCE));
    let stats = &rt.cache_stats(PATIENCE)[0];
    assert_eq!((stats.entries, stats.resident, stats.parked), (1, 0, 1));
}

#[test]
fn over_budget_the_least_recently_used_unreferenced_asset_is_evicted_with_an_event() {
    let source = GatedSource::with_blobs(3);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate().bytes_resident_max(40));
    let events = rt.subscribe(4096);
    load_and_release(&rt, "a0");
    load_and_release(&rt, "a1");
    load_and_release(&rt, "a2");
    let evicted = events.wait_for(PATIENCE, |e| e.kind == EventKind::Evicted).expect("evicted");
    assert_eq!(evicted.key, Some(blob_key("a0")), "the least recently used goes first");
    assert_eq!(evicted.bytes, Some(16));
    let memory = rt.memory_stats();
    assert_eq!((memory.resident_bytes, memory.evictions, memory.parked), (32, 1, 2));
    load_and_release(&rt, "a0");
    assert_eq!(source.gate.started_count("a0"), 2, "an evicted asset is read again");
    assert_eq!(source.gate.started_count("a2"), 1);
}

#[test]
fn cancelling_a_ready_handle_keeps_its_asset_held_until_the_handle_is_dropped() {
    let source = GatedSource::with_blobs(1);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate().bytes_resident_max(8));
    let handle = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    handle.wait_timeout(PATIENCE).unwrap().expect("loads");
    assert!(!handle.cancel(), "a ready request is not cancelled");
    assert!(rt.sync(PATIENCE));
    let memory = rt.memory_stats();
    assert_eq!((memory.resident_bytes, memory.evictions), (16, 0), "still held, over the budget");
    let again = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    again.wait_timeout(PATIENCE).unwrap().expect("served from memory");
    assert_eq!(source.gate.started_count("a0"), 1, "read once");
    drop((handle, again));
    assert!(rt.sync(PATIENCE));
    assert_eq!(rt.memory_stats().evictions, 1, "let go of, over the budget: evicted");
}

/// Crashes the blob cache and waits until its next incarnation took back what it salvaged.
fn crash_the_cache(rt: &Runtime, events: &streamrt::EventStream) {
    assert!(rt.sync(PATIENCE));
    assert!(rt.inject_crash(&CrashTarget::Cache("blob".into())));
    wait_restart(events, "cache:blob");
    assert!(rt.sync(PATIENCE));
}

#[test]
fn a_cache_restart_keeps_a_held_asset_counted_and_serves_it_without_a_reload() {
    let source = GatedSource::with_blobs(1);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate());
    let events = rt.subscribe(4096);
    let held = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    held.wait_timeout(PATIENCE).unwrap().expect("loads");
    crash_the_cache(&rt, &events);
    assert_eq!(rt.memory_stats().resident_bytes, 16, "still held, still counted");
    let again = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    again.wait_timeout(PATIENCE).unwrap().expect("served from memory");
    assert_eq!(source.gate.started_count("a0"), 1, "read once");
    drop((held, again));
    assert!(rt.sync(PATIENCE));
    let memory = rt.memory_stats();
    assert_eq!((memory.resident_bytes, memory.parked), (16, 1), "let go of: parked for reuse");
}

#[test]
fn a_cache_restart_keeps_a_decoded_request_for_its_frame_without_a_reload() {
    let source = GatedSource::with_blobs(1);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.frame_budget(8));
    let events = rt.subscribe(4096);
    let decoded = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    assert!(wait_loaded(std::slice::from_ref(&decoded), PATIENCE));
    crash_the_cache(&rt, &events);
    assert_eq!(decoded.state(), LoadState::Decoded, "waiting for a frame");
    assert_eq!(rt.begin_frame().published, 1);
    assert_eq!(decoded.state(), LoadState::Ready);
    assert_eq!(source.gate.started_count("a0"), 1, "read once");
    assert_eq!(rt.memory_stats().resident_bytes, 16);
}

#[test]
fn a_held_asset_is_never_evicted_even_when_held_assets_exceed_the_budget() {
    let source = GatedSource::with_blobs(3);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate().bytes_resident_max(20));
    let held: Vec<_> =
        (0..3).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    for handle in &held {
        handle.wait_timeout(PATIENCE).unwrap().expect("loads");
    }
    assert!(rt.sync(PATIENCE));
    let memory = rt.memory_stats();
    assert_eq!((memory.resident_bytes, memory.evictions), (48, 0), "held bytes stay");
    assert!(held.iter().all(|h| h.get().is_some()));
    drop(held);
    assert!(rt.sync(PATIENCE));
    let memory = rt.memory_stats();
    assert!(memory.resident_bytes <= 20, "released assets go as soon as they are parked");
    assert_eq!(memory.evictions, 2);
}

#[test]
fn a_type_budget_evicts_within_its_type() {
    let source = GatedSource::with_blobs(2);
    let rt = runtime(&source, &BlobDecoder::default(), |b| {
        b.immediate().type_bytes_resident_max("blob", 20)
    });
    load_and_release(&rt, "a0");
    load_and_release(&rt, "a1");
    let stats = &rt.cache_stats(PATIENCE)[0];
    assert_eq!((stats.evictions, stats.parked, stats.resident_bytes), (1, 1, 16));
    // Refused before the logs are made: the last session's, at the same paths, stay whole.
    let dir = tempfile::tempdir().unwrap();
    let (log, telemetry) = (dir.path().join("last.log"), dir.path().join("last.jsonl"));
    std::fs::write(&log, b"the last session").unwrap();
    std::fs::write(&telemetry, b"the last session").unwrap();
    let unknown = Runtime::builder()
        .source(source.clone())
        .register(BlobDecoder::default())
        .type_bytes_resident_max("mesh", 1)
        .record(&log, "a test")
        .telemetry_path(&telemetry)
        .build();
    assert!(matches!(unknown, Err(BuildError::BudgetType(t)) if t == "mesh"));
    assert_eq!(std::fs::read(&log).unwrap(), b"the last session");
    assert_eq!(std::fs::read(&telemetry).unwrap(), b"the last session");
    // A name from a file can be as long as its line: the error cuts it.
    let long = Runtime::builder()
        .source(source.clone())
        .register(BlobDecoder::default())
        .type_bytes_resident_max(&"m".repeat(1 << 20), 1)
        .build();
    let cut = streamrt::messages::ERROR_TEXT_BYTES_MAX + 4;
    assert!(matches!(long, Err(BuildError::BudgetType(t)) if t.len() <= cut));
}

#[test]
fn a_cancelled_handle_the_engine_keeps_holds_no_value_the_budget_let_go_of() {
    let source = GatedSource::with_blobs(2);
    let rt =
        runtime(&source, &BlobDecoder::default(), |b| b.frame_budget(8).bytes_resident_max(16));
    let ready = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    assert!(wait_loaded(std::slice::from_ref(&ready), PATIENCE));
    assert!(rt.sync(PATIENCE));
    assert_eq!(rt.begin_frame().published, 1);
    let value = std::sync::Arc::downgrade(&ready.get().expect("published"));
    // Served from memory and waiting for a frame, then cancelled: an engine may keep the
    // handle (in an entity that asked for the asset) long after.
    let kept = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    assert!(wait_loaded(std::slice::from_ref(&kept), PATIENCE));
    assert!(kept.cancel());
    drop(ready);
    assert!(rt.sync(PATIENCE));
    assert_eq!(value.strong_count(), 1, "parked: the budget's pool holds the only reference");
    // Past the budget with a1: a0, let go of, is evicted, and its memory freed with it.
    let other = rt.request::<Blob>("a1", Priority::Normal).unwrap();
    assert!(wait_loaded(std::slice::from_ref(&other), PATIENCE));
    assert!(rt.sync(PATIENCE));
    assert_eq!(rt.memory_stats().evictions, 1);
    assert!(value.upgrade().is_none(), "evicted and freed, though its cancelled handle is kept");
    assert_eq!(kept.state(), LoadState::Cancelled);
}

/// An asset whose drop passes a gate, as freeing a GPU resource may take a while, or panics
/// (its bytes start with `PANIC`). It weighs as many bytes as it was stored with.
struct SlowDrop {
    name: String,
    gate: Gate,
    bytes: u64,
    panics: bool,
}

impl Drop for SlowDrop {
    /// Passes the gate (counted there), then panics if scripted to.
    fn drop(&mut self) {
        self.gate.pass(&format!("drop:{}", self.name));
        assert!(!self.panics, "scripted panic dropping {}", self.name);
    }
}

/// Decodes `slow:` assets into [`SlowDrop`]s.
#[derive(Clone, Default)]
struct SlowDropDecoder {
    gate: Gate,
}

impl Decoder for SlowDropDecoder {
    type Asset = SlowDrop;

    fn type_name(&self) -> &str {
        "slow"
    }

    fn decode(&self, key: &AssetKey, bytes: Vec<u8>) -> Result<SlowDrop, DecodeError> {
        Ok(SlowDrop {
            name: key.path().to_owned(),
            gate: self.gate.clone(),
            bytes: bytes.len() as u64,
            panics: bytes.starts_with(b"PANIC"),
        })
    }

    fn size_bytes(&self, asset: &SlowDrop) -> u64 {
        asset.bytes
    }
}

/// A runtime with `decoder`'s `slow:` type over `source`, publishing at once, within a memory
/// budget of `bytes_resident_max`.
fn slow_runtime(
    source: &GatedSource,
    decoder: &SlowDropDecoder,
    bytes_resident_max: u64,
) -> Runtime {
    Runtime::builder()
        .source(source.clone())
        .register(decoder.clone())
        .immediate()
        .bytes_resident_max(bytes_resident_max)
        .build()
        .unwrap()
}

/// Loads the `slow:` asset `path`, then lets go of it (parked) and syncs.
fn load_and_park(rt: &Runtime, path: &str) {
    let handle = rt.request::<SlowDrop>(path, Priority::Normal).unwrap();
    assert!(handle.wait_timeout(PATIENCE).unwrap().is_ok(), "{path} loads");
    drop(handle);
    assert!(rt.sync(PATIENCE), "{path} is parked");
}

#[test]
fn two_evicted_assets_whose_drops_panic_restart_the_cache_and_the_process_stays_up() {
    let source = GatedSource::default();
    source.put_with_deps("slow:p0", b"PANIC-0---", &[]);
    source.put_with_deps("slow:p1", b"PANIC-1---", &[]);
    source.put_with_deps("slow:big", &[b'b'; 20], &[]);
    let decoder = SlowDropDecoder::default();
    let rt = slow_runtime(&source, &decoder, 25);
    let events = rt.subscribe(4096);
    let evictions = rt.subscribe(4096);
    load_and_park(&rt, "p0");
    load_and_park(&rt, "p1");
    // `big`'s 20 bytes evict both: two drops that panic, one after the other.
    let big = rt.request::<SlowDrop>("big", Priority::Normal).unwrap();
    wait_restart(&events, "cache:slow");
    let outcome = big.wait_timeout(PATIENCE).expect("big ends");
    assert!(outcome.is_ok(), "the restarted cache serves what it salvaged");
    assert_eq!(rt.memory_stats().evictions, 2);
    assert_eq!(rt.status().restarts, 1, "one panic reported, the other dropped too");
    // Each eviction is told, though the drops panicked.
    assert!(rt.flush_telemetry());
    let mut evicted = Vec::new();
    while let Some(e) = evictions.try_next() {
        if e.kind == EventKind::Evicted {
            evicted.push(e.key.expect("an eviction names its asset").path().to_owned());
        }
    }
    evicted.sort();
    assert_eq!(evicted, ["p0", "p1"]);
}

#[test]
fn a_parked_asset_whose_drop_panics_at_shutdown_still_ends_every_request_of_its_type() {
    let source = GatedSource::default();
    source.put_with_deps("slow:p0", b"PANIC-0---", &[]);
    source.put_with_deps("slow:held", b"held", &[]);
    let decoder = SlowDropDecoder::default();
    let rt = slow_runtime(&source, &decoder, 1 << 20);
    load_and_park(&rt, "p0");
    source.gate.hold("held");
    let pending = rt.request::<SlowDrop>("held", Priority::Normal).unwrap();
    source.gate.wait_started("held", 1);
    // The cache's shutdown drops p0 from the pool, and its drop panics: the pending request
    // is still failed with the shutdown, not left in a salvage no incarnation takes back.
    let stopped = std::thread::spawn(move || {
        rt.shutdown();
        rt
    });
    let ended = pending.wait_timeout(PATIENCE).expect("the pending request ends");
    let error = ended.err();
    let by_shutdown =
        matches!(&error, Some(ReadyError::Failed(e)) if e.kind == ErrorKind::Shutdown);
    assert!(by_shutdown, "{:?}", error.map(|e| e.to_string()));
    source.gate.release("held");
    let rt = stopped.join().unwrap();
    // Ended by the shutdown itself: the cache was not restarted to take it again.
    assert_eq!(rt.status().restarts, 0);
}

#[test]
fn held_assets_whose_drops_panic_as_a_stopping_cache_empties_its_table_leave_the_process_up() {
    const HELD: usize = 512;
    let source = GatedSource::default();
    for i in 0..HELD {
        source.put_with_deps(&format!("slow:p{i}"), b"PANIC-----", &[]);
    }
    source.put_with_deps("slow:a0", b"a0--------", &[]);
    source.put_with_deps("slow:a1", b"a1--------", &[]);
    let decoder = SlowDropDecoder::default();
    // One release a drain: the shutdown, asked in the mailbox, comes after the first.
    let config = RuntimeConfig {
        drain_batch_max: 1,
        bytes_resident_max: 10 * (HELD as u64 + 1),
        ..RuntimeConfig::default()
    };
    let rt = Runtime::builder().config(config).source(source.clone()).register(decoder.clone());
    let rt = Arc::new(rt.immediate().build().unwrap());
    load_and_park(&rt, "a0");
    let held: Vec<_> = (0..HELD)
        .map(|i| rt.request::<SlowDrop>(&format!("p{i}"), Priority::Normal).unwrap())
        .collect();
    for h in &held {
        assert!(h.wait_timeout(PATIENCE).unwrap().is_ok());
    }
    // a1's decode evicts a0, whose drop holds the cache's thread at the gate.
    decoder.gate.hold("drop:a0");
    let a1 = rt.request::<SlowDrop>("a1", Priority::Normal).unwrap();
    decoder.gate.wait_started("drop:a0", 1);
    // Their releases wait in the cache's lane behind the drop, and the shutdown's ask after
    // them: the cache takes a release, then the shutdown, whose table still holds the other
    // slots, each the last holder of its asset. Every drop's panic is caught, or the second
    // would unwind through the first and abort the process.
    drop(held);
    let stopping = Arc::clone(&rt);
    let stopped = std::thread::spawn(move || stopping.shutdown());
    // A refused request says the stop began; its ask follows at once, long before the cache,
    // let go, has taken the releases one a drain (which it would, unasked, without the bug).
    while rt.request::<SlowDrop>("a0", Priority::Normal).is_ok() {
        std::thread::yield_now();
    }
    decoder.gate.release("drop:a0");
    assert!(a1.wait_timeout(PATIENCE).is_some(), "a1 ends");
    within_patience("the shutdown returns", move || stopped.join().unwrap());
    let dropped = (0..HELD).filter(|i| decoder.gate.started_count(&format!("drop:p{i}")) == 1);
    assert_eq!(dropped.count(), HELD, "every held asset is dropped once, its panic caught");
    assert_eq!(rt.status().restarts, 0, "the stopping cache was not restarted");
}

#[test]
fn a_parked_asset_whose_drop_blocks_at_shutdown_holds_the_shutdown_up_only_for_its_ack_limit() {
    let source = GatedSource::default();
    source.put_with_deps("slow:a0", b"a0", &[]);
    let decoder = SlowDropDecoder::default();
    let config = RuntimeConfig { shutdown_ack_ms_max: 100, ..RuntimeConfig::default() };
    let rt = Runtime::builder()
        .config(config)
        .source(source.clone())
        .register(decoder.clone())
        .immediate()
        .build()
        .unwrap();
    load_and_park(&rt, "a0");
    // The drop waits for the engine, which lets it go only once the shutdown returned: a
    // texture freed through the render thread that is the one shutting down, say.
    decoder.gate.hold("drop:a0");
    let (returned, wait_returned) = std::sync::mpsc::channel();
    let stopping = std::thread::spawn(move || {
        rt.shutdown();
        let _ = returned.send(());
        rt
    });
    decoder.gate.wait_started("drop:a0", 1);
    let shutdown_returned = wait_returned.recv_timeout(PATIENCE).is_ok();
    decoder.gate.release("drop:a0");
    let rt = stopping.join().unwrap();
    assert!(shutdown_returned, "the shutdown waited for the core thread's drop");
    assert!(rt.request::<SlowDrop>("a0", Priority::Normal).is_err(), "and it is shut down");
}

#[test]
fn an_evicted_assets_slow_drop_does_not_hold_up_memory_stats_on_another_thread() {
    let source = GatedSource::default();
    source.put_with_deps("slow:a0", b"a0--------", &[]);
    source.put_with_deps("slow:a1", b"a1--------", &[]);
    let decoder = SlowDropDecoder::default();
    decoder.gate.hold("drop:a0");
    let rt = slow_runtime(&source, &decoder, 15);
    load_and_park(&rt, "a0");
    // a1's decode evicts a0, whose drop then waits at the gate on the cache's thread.
    let a1 = rt.request::<SlowDrop>("a1", Priority::Normal).unwrap();
    decoder.gate.wait_started("drop:a0", 1);
    let memory = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel();
        let rt = &rt;
        scope.spawn(move || tx.send(rt.memory_stats()));
        let memory = rx.recv_timeout(PATIENCE);
        decoder.gate.release("drop:a0");
        memory
    });
    let memory = memory.expect("the budget's lock is free while a0 drops");
    assert_eq!((memory.evictions, memory.resident_bytes), (1, 10));
    assert!(a1.wait_timeout(PATIENCE).unwrap().is_ok());
}

#[test]
fn a_decode_every_request_let_go_of_before_the_cache_took_it_is_not_counted_and_evicts_nothing() {
    let source = GatedSource::with_blobs(3);
    source.put("w", b"the hint holder");
    let (hooked, armed) = HookedWants::holding_when_armed(&source);
    let decoder = BlobDecoder::default();
    // One engine message a cache turn, then the workers' replies: a decode's reply is taken
    // before a release that waits behind the message the core thread is held in.
    let config = RuntimeConfig { drain_batch_max: 1, ..RuntimeConfig::default() };
    // The parked a0 and one more blob of 16 bytes do not fit.
    let rt = Runtime::builder()
        .config(config)
        .source(hooked)
        .register(decoder.clone())
        .workers(1)
        .decode_threads(1)
        .bytes_resident_max(31)
        .build()
        .unwrap();
    load_and_release(&rt, "a0");
    assert_eq!(rt.memory_stats().parked_bytes, 16, "a0 is parked");
    decoder.gate.hold("a1");
    decoder.gate.hold("a2");
    let abandoned = rt.request::<Blob>("a1", Priority::Normal).unwrap();
    let next = rt.request::<Blob>("a2", Priority::Normal).unwrap();
    decoder.gate.wait_started("a1", 1);
    // Read, so its cache took its load in (one engine message a turn): armed before that,
    // the hook would hold the core thread in a2's load, which then never decodes.
    source.gate.wait_started("a2", 1);
    source.gate.hold("want");
    source.gate.hold("w");
    armed.store(true, Ordering::Release);
    let holder = rt.request::<Blob>("w", Priority::Background).unwrap();
    source.gate.wait_started("want", 1);
    // With the core thread held: a1's release waits in its cache's engine lane, and its
    // decode's reply is posted (the one decode thread went on to a2's).
    drop(abandoned);
    decoder.gate.release("a1");
    decoder.gate.wait_started("a2", 1);
    source.gate.release("want");
    assert!(rt.sync(PATIENCE));
    let memory = rt.memory_stats();
    assert_eq!(memory.evictions, 0, "a0 was evicted for a value no request held");
    assert_eq!((memory.resident_bytes, memory.parked_bytes), (16, 16), "{memory:?}");
    assert_eq!(rt.status().cancelled_after_decode, 1);
    decoder.gate.release("a2");
    source.gate.release("w");
    next.wait_timeout(PATIENCE).unwrap().expect("a2 loads");
    holder.wait_timeout(PATIENCE).unwrap().expect("w loads");
}
