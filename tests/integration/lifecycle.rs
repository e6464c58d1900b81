//! Success paths, status, shutdown and the exactly-one-terminal-state guarantee.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};

use streamrt::messages::{EventKind, RequestId};
use streamrt::{
    BuildError, ErrorKind, Handle, LoadState, Priority, ReadyError, RequestError, Runtime,
    RuntimeConfig,
};
use streamrt_integration::{
    named_pipe, within_patience, Blob, BlobDecoder, GatedSource, HookedWants, PATIENCE,
};

use crate::runtime;

#[test]
fn a_requested_blob_becomes_ready_with_its_bytes() {
    let source = GatedSource::with_blobs(3);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b);
    let handle = rt.request::<Blob>("a1", Priority::Normal).unwrap();
    let value = handle.wait_timeout(PATIENCE).expect("terminal").expect("ready");
    assert_eq!(value.0, b"blob-00000000001");
    assert_eq!(handle.state(), LoadState::Ready);
    assert_eq!(handle.get().as_deref(), Some(&Blob(b"blob-00000000001".to_vec())));
    assert!(handle.error().is_none());
    rt.shutdown();
}

#[test]
fn ready_can_be_awaited_on_any_executor() {
    let source = GatedSource::with_blobs(1);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b);
    let handle = rt.request::<Blob>("a0", Priority::High).unwrap();
    let value = futures::executor::block_on(handle.ready()).expect("ready");
    assert_eq!(value.0, b"blob-00000000000");
}

#[test]
fn cancel_says_whether_it_ended_the_request() {
    let source = GatedSource::with_blobs(2);
    source.gate.hold("a0");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b);
    let held = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    source.gate.wait_started("a0", 1);
    assert!(held.cancel(), "a load in flight is ended by the cancel");
    assert!(!held.cancel(), "a second cancel finds it ended");
    assert_eq!(held.state(), LoadState::Cancelled);
    let ready = rt.request::<Blob>("a1", Priority::Normal).unwrap();
    assert!(ready.wait_timeout(PATIENCE).unwrap().is_ok());
    assert!(!ready.cancel(), "a ready request is not cancelled");
    assert_eq!(ready.state(), LoadState::Ready);
    source.gate.release_all();
    rt.shutdown();
}

#[test]
fn status_right_after_start_reports_the_configuration_and_nothing_in_flight() {
    let source = GatedSource::with_blobs(0);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.workers(2).queue_capacity(64));
    assert_eq!(rt.status().to_string(), "worker_count=2 queue_capacity=64 in_flight=0");
}

#[test]
fn a_cached_asset_is_served_again_without_a_second_read() {
    let source = GatedSource::with_blobs(1);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b);
    let first = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    first.wait_timeout(PATIENCE).unwrap().unwrap();
    let second = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    assert!(second.wait_timeout(PATIENCE).unwrap().is_ok());
    assert_eq!(source.gate.started_count("a0"), 1);
}

#[test]
fn shutdown_with_requests_in_flight_leaves_every_request_terminal() {
    let source = GatedSource::with_blobs(50);
    source.gate.hold("a0");
    let rt = runtime(&source, &BlobDecoder::default(), |b| {
        b.workers(1).reads_in_flight(1).read_credit_bytes(1)
    });
    let handles: Vec<_> =
        (0..50).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    source.gate.wait_started("a0", 1);
    std::thread::scope(|scope| {
        // Shutdown fails every request before it joins the IO worker held in `a0`'s read.
        let stopper = scope.spawn(|| rt.shutdown());
        for h in &handles {
            let outcome = h.wait_timeout(PATIENCE).expect("terminal after shutdown");
            let err = outcome.expect_err("nothing was read");
            assert!(
                matches!(&err, ReadyError::Failed(e) if e.kind == ErrorKind::Shutdown),
                "{err:?}"
            );
        }
        source.gate.release_all();
        stopper.join().unwrap();
    });
    let later = rt.request::<streamrt_integration::Blob>("a1", Priority::Normal);
    assert_eq!(later.unwrap_err(), streamrt::RequestError::Shutdown);
    let status = rt.status();
    assert_eq!(status.outstanding(), 0);
    assert_eq!((status.in_flight, status.queued), (0, 0), "nothing counted in flight after");
}

#[test]
fn ten_thousand_mixed_requests_each_reach_exactly_one_terminal_state() {
    let source = GatedSource::with_blobs(2_000);
    for i in 0..50 {
        source.put(&format!("bad{i}"), b"BAD bytes");
    }
    let config = streamrt::RuntimeConfig { events_buffered_max: 1 << 20, ..Default::default() };
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.config(config));
    let events = rt.subscribe(1 << 20);
    let mut handles = Vec::new();
    for i in 0..10_000u32 {
        let path = match i % 10 {
            0 => format!("missing{}", i % 97),
            1 => format!("bad{}", i % 50),
            2 => format!("ioerr{}", i % 31),
            _ => format!("a{}", (i * 7) % 2_000),
        };
        let priority = Priority::ALL[(i % 5) as usize];
        let handle = rt.request::<streamrt_integration::Blob>(&path, priority).unwrap();
        match i % 7 {
            0 => {
                handle.cancel();
            }
            1 => handle.reprioritize(Priority::Critical),
            _ => {}
        }
        handles.push(handle);
    }
    for h in &handles {
        assert!(h.wait_timeout(PATIENCE).is_some(), "{h:?} never ended");
    }
    rt.shutdown();
    let mut terminal: HashMap<RequestId, u32> = HashMap::new();
    while let Some(e) = events.try_next() {
        if matches!(
            e.kind,
            EventKind::Published | EventKind::Failed { .. } | EventKind::Cancelled { .. }
        ) {
            *terminal.entry(e.request.unwrap()).or_default() += 1;
        }
    }
    assert_eq!(terminal.len(), 10_000, "every request has a terminal event");
    assert!(terminal.values().all(|&n| n == 1), "no request has two terminal events");
    let status = rt.status();
    assert_eq!(status.ready + status.failed + status.cancelled, 10_000);
    assert_eq!(status.events_dropped, 0);
    for h in &handles {
        let want = match h.key().path() {
            p if p.starts_with("missing") => Some(ErrorKind::NotFound),
            p if p.starts_with("bad") => {
                Some(ErrorKind::Decode(format!("{} starts with BAD", h.key())))
            }
            p if p.starts_with("ioerr") => {
                Some(ErrorKind::Io(format!("scripted failure reading {}", h.key())))
            }
            _ => None,
        };
        // Cancelled or not, a request ends as its key says: a missing or bad one fails with
        // its kind, a good one is ready.
        match (h.state(), want) {
            (LoadState::Cancelled, _) => {}
            (LoadState::Failed, Some(want)) => assert_eq!(h.error().unwrap().kind, want),
            (LoadState::Ready, None) => {}
            (state, want) => panic!("{}: {state:?}, expected {want:?}", h.key()),
        }
    }
}

/// `count` requests of a runtime whose cache takes one message a wake (so that it takes
/// messages in more slowly than they come), with a0's read held: the rest wait in the queue.
fn slow_cache_with_requests(count: usize) -> (GatedSource, Runtime, Vec<Handle<Blob>>) {
    let source = GatedSource::with_blobs(count);
    source.gate.hold("a0");
    let config = streamrt::RuntimeConfig { drain_batch_max: 1, ..Default::default() };
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.config(config).workers(1));
    let handles = (0..count)
        .map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap())
        .collect();
    (source, rt, handles)
}

#[test]
fn sync_returns_only_once_the_caches_took_every_release_made_before_it() {
    let (source, rt, mut handles) = slow_cache_with_requests(20_000);
    assert!(rt.sync(PATIENCE));
    let held = handles.remove(0);
    drop(handles);
    assert!(rt.sync(PATIENCE));
    // The live counters, as below: the scheduler's queue is empty only once every release
    // reached the cache and the cache's cancels reached the scheduler.
    let status = rt.status();
    assert_eq!(status.queued, 0, "{status:?}");
    source.gate.release("a0");
    held.wait_timeout(PATIENCE).unwrap().unwrap();
}

#[test]
fn sync_returns_only_once_the_caches_took_every_request_made_before_it() {
    const REQUESTS: usize = 20_000;
    let (source, rt, handles) = slow_cache_with_requests(REQUESTS);
    assert!(rt.sync(PATIENCE));
    // The live counters, read with no round trip: a cache query would take the requests in
    // itself before it answers, and so could not tell a sync that returned early.
    let status = rt.status();
    assert_eq!(status.queued + status.in_flight, REQUESTS as u64, "{status:?}");
    let stats = &rt.cache_stats(PATIENCE)[0];
    assert_eq!((stats.entries, stats.holders), (REQUESTS, REQUESTS));
    source.gate.release("a0");
    for h in &handles {
        h.wait_timeout(PATIENCE).unwrap().unwrap();
    }
}

#[test]
fn a_second_shutdown_returns_only_once_the_first_has_joined_every_thread() {
    let source = GatedSource::with_blobs(1);
    source.gate.hold("a0");
    let rt = std::sync::Arc::new(runtime(&source, &BlobDecoder::default(), |b| b));
    let _a0 = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    source.gate.wait_started("a0", 1);
    let first = {
        let rt = std::sync::Arc::clone(&rt);
        std::thread::spawn(move || rt.shutdown())
    };
    // The first shutdown has taken the core once its pools are no longer counted.
    let deadline = std::time::Instant::now() + PATIENCE;
    while rt.live_workers() != (0, 0) {
        assert!(std::time::Instant::now() < deadline, "the first shutdown never began");
        std::thread::yield_now();
    }
    let (returned, second_returned) = std::sync::mpsc::channel();
    let released = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let second = {
        let (rt, released) = (std::sync::Arc::clone(&rt), std::sync::Arc::clone(&released));
        std::thread::spawn(move || {
            rt.shutdown();
            // Whether a0's read could have ended by then.
            returned.send(released.load(std::sync::atomic::Ordering::Acquire)).unwrap();
        })
    };
    // An IO worker is still in a0's read, so neither shutdown is over: time for a second
    // shutdown that does not wait to return, before the read is let go.
    let early = second_returned.recv_timeout(std::time::Duration::from_millis(200));
    assert!(early.is_err(), "the second shutdown returned while a worker still read");
    released.store(true, std::sync::atomic::Ordering::Release);
    source.gate.release("a0");
    let after_the_read =
        second_returned.recv_timeout(PATIENCE).expect("it returns once the first is over");
    assert!(after_the_read, "the second shutdown returned while a worker still read");
    first.join().unwrap();
    second.join().unwrap();
}

#[test]
fn shutdown_leaves_a_read_blocked_in_the_source_behind_instead_of_waiting_for_it() {
    let source = GatedSource::with_blobs(1);
    source.gate.hold("a0");
    let rt = runtime(&source, &BlobDecoder::default(), |b| {
        b.config(streamrt::RuntimeConfig {
            shutdown_ack_ms_max: 5_000,
            ..streamrt::RuntimeConfig::default()
        })
    });
    let stuck = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    source.gate.wait_started("a0", 1);
    // The gate holds the read for `GATE_PATIENCE` (120 s), four times as long as this waits;
    // the pool gives its threads `shutdown_ack_ms_max` (5 s).
    within_patience("shutdown returned with the read still blocked", move || rt.shutdown());
    let ended = stuck.wait_timeout(PATIENCE).expect("terminal");
    assert!(matches!(ended, Err(ReadyError::Failed(e)) if e.kind == ErrorKind::Shutdown));
    source.gate.release("a0");
}

/// A runtime over `source` whose stop waits `ack_ms` for an actor, with its core thread held
/// in a load hint at `source`'s gate on `want` (released by the test), and the request it is
/// held in.
fn with_core_thread_held(source: &GatedSource, ack_ms: u64) -> (Runtime, Handle<Blob>) {
    let (hooked, armed) = HookedWants::holding_when_armed(source);
    let config = RuntimeConfig { shutdown_ack_ms_max: ack_ms, ..RuntimeConfig::default() };
    let rt = Runtime::builder().config(config).source(hooked).register(BlobDecoder::default());
    let rt = rt.build().unwrap();
    source.gate.hold("want");
    armed.store(true, std::sync::atomic::Ordering::Release);
    let held = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    source.gate.wait_started("want", 1);
    (rt, held)
}

/// Shuts `rt`, its one strong reference, down on a thread of its own once `first` returned
/// there, and hands `kept` back. A stop that does not return within `patience` fails the
/// test with `kept` forgotten, not dropped: a stop deadlocked on its own thread holds what a
/// handle's drop waits on (a cache's lane, the recorder's order lock).
fn shut_down_in_time<K>(
    rt: Arc<Runtime>,
    first: impl FnOnce() + Send + 'static,
    patience: std::time::Duration,
    kept: K,
) -> K {
    let (stopped, returned) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        first();
        rt.shutdown();
        stopped.send(())
    });
    if returned.recv_timeout(patience).is_err() {
        std::mem::forget(kept);
        panic!("shutdown never returned");
    }
    kept
}

#[test]
fn a_core_thread_held_in_the_engines_code_holds_the_stop_for_its_limit_twice_not_once_an_actor() {
    let source = GatedSource::with_blobs(1);
    // Waited for each of the core thread's five (a cache, the scheduler, the frame
    // coordinator, their supervisor, the thread's join), 35 s, past `PATIENCE`; for the first
    // and the join, 14 s.
    let (rt, held) = with_core_thread_held(&source, 7_000);
    within_patience("shutdown returned with the core thread held", move || rt.shutdown());
    assert!(!held.is_terminal(), "left with the core thread, which holds its slot");
    source.gate.release("want");
}

/// A waker that says it was woken, then shuts its runtime down: the engine's code, run as a
/// request it waits on ends.
struct ShuttingDown {
    woken: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    runtime: Arc<OnceLock<Weak<Runtime>>>,
}

impl ShuttingDown {
    /// A waker shutting `rt` down, and what it says it was woken on.
    fn of(rt: &Arc<Runtime>) -> (std::task::Waker, std::sync::mpsc::Receiver<()>) {
        let runtime: Arc<OnceLock<Weak<Runtime>>> = Arc::default();
        assert!(runtime.set(Arc::downgrade(rt)).is_ok());
        let (woken, says) = std::sync::mpsc::channel();
        let waker = Self { woken: std::sync::Mutex::new(woken), runtime };
        (std::task::Waker::from(Arc::new(waker)), says)
    }
}

impl std::task::Wake for ShuttingDown {
    fn wake(self: Arc<Self>) {
        let _ = self.woken.lock().unwrap().send(());
        if let Some(rt) = self.runtime.get().and_then(Weak::upgrade) {
            rt.shutdown();
        }
    }
}

#[test]
fn a_shutdown_called_back_on_the_thread_stopping_the_runtime_returns_and_the_stop_ends() {
    use std::future::Future;
    let source = GatedSource::with_blobs(2);
    let (rt, held) = with_core_thread_held(&source, 300);
    let rt = Arc::new(rt);
    // The core thread is held: a1's load waits in its cache's lane, and the stop fails it on
    // the thread that stops the runtime, waking the waker below there.
    let queued = rt.request::<Blob>("a1", Priority::Normal).unwrap();
    let (waker, _says) = ShuttingDown::of(&rt);
    let mut ready = Box::pin(queued.ready());
    assert!(ready.as_mut().poll(&mut std::task::Context::from_waker(&waker)).is_pending());
    let (held, queued, _ready) = shut_down_in_time(rt, || {}, PATIENCE, (held, queued, ready));
    let ended = queued.wait_timeout(PATIENCE).expect("failed by the stop");
    assert!(matches!(ended, Err(ReadyError::Failed(e)) if e.kind == ErrorKind::Shutdown));
    source.gate.release("want");
    drop(held);
}

#[test]
fn a_recorded_session_shut_down_by_a_waker_its_publish_wakes_stops_whole_and_logs_it() {
    use std::future::Future;
    let source = GatedSource::with_blobs(1);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("session.log");
    // Past `PATIENCE`: a core thread held for good holds a stop at least this long.
    let config = RuntimeConfig { shutdown_ack_ms_max: 60_000, ..RuntimeConfig::default() };
    let rt = Runtime::builder().config(config).source(source.clone());
    let rt = rt.register(BlobDecoder::default()).immediate().record(&log, "test");
    let rt = Arc::new(rt.build().unwrap());
    source.gate.hold("a0");
    let held = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    // Woken by the publish on the core thread, under the recorder's order lock.
    let (waker, woken) = ShuttingDown::of(&rt);
    let mut ready = Box::pin(held.ready());
    assert!(ready.as_mut().poll(&mut std::task::Context::from_waker(&waker)).is_pending());
    source.gate.release("a0");
    let woken = move || woken.recv_timeout(PATIENCE).expect("the publish wakes the waker");
    let (held, _ready) = shut_down_in_time(rt, woken, PATIENCE * 2, (held, ready));
    assert!(held.wait_timeout(PATIENCE).unwrap().is_ok(), "published before the stop");
    let bytes = std::fs::read(&log).unwrap();
    let mut reader = streamrt::messages::replay_log::LogReader::new(&bytes).unwrap();
    let mut shutdowns = 0;
    while let Some(record) = reader.next_record().unwrap() {
        shutdowns += usize::from(record == streamrt::messages::replay_log::LogRecord::Shutdown);
    }
    assert_eq!(shutdowns, 1, "the log is whole");
}

/// A waker that calls the engine's code given to it once, then says so.
struct CallingBack {
    call: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
    done: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
}

impl std::task::Wake for CallingBack {
    fn wake(self: Arc<Self>) {
        if let Some(call) = self.call.lock().unwrap().take() {
            call();
        }
        let _ = self.done.lock().unwrap().send(());
    }
}

#[test]
fn a_recorded_frames_waker_that_requests_cancels_and_moves_requests_returns_and_replays() {
    use std::future::Future;
    let source = GatedSource::with_blobs(4);
    source.gate.hold("a1");
    source.gate.hold("a2");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("session.log");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.frame_budget(8).record(&log, "test"));
    let rt = Arc::new(rt);
    let published = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    let reading = rt.request::<Blob>("a1", Priority::Normal).unwrap();
    let moved = rt.request::<Blob>("a2", Priority::Low).unwrap();
    assert!(streamrt::wait_loaded(std::slice::from_ref(&published), PATIENCE));
    assert!(rt.sync(PATIENCE), "`a0` staged for the frame");
    let (done_tx, done) = std::sync::mpsc::channel();
    let made: Arc<OnceLock<Handle<Blob>>> = Arc::default();
    let call = {
        let (rt, made) = (Arc::downgrade(&rt), Arc::clone(&made));
        let (reading, moved) = (reading.clone(), moved.clone());
        move || {
            // Each takes the recorder's order lock, which the frame's publish holds here.
            assert!(reading.cancel());
            moved.reprioritize(Priority::Critical);
            let rt = rt.upgrade().expect("the test holds it");
            let _ = made.set(rt.request::<Blob>("a3", Priority::Normal).unwrap());
        }
    };
    let waker = std::task::Waker::from(Arc::new(CallingBack {
        call: std::sync::Mutex::new(Some(Box::new(call))),
        done: std::sync::Mutex::new(done_tx),
    }));
    let mut ready = Box::pin(published.ready());
    assert!(ready.as_mut().poll(&mut std::task::Context::from_waker(&waker)).is_pending());
    let (frame_tx, frame) = std::sync::mpsc::channel();
    let boundary = {
        let rt = Arc::clone(&rt);
        std::thread::spawn(move || frame_tx.send(rt.begin_frame().published).unwrap())
    };
    let returned = done.recv_timeout(PATIENCE).is_ok();
    let ended = returned && frame.recv_timeout(PATIENCE) == Ok(1);
    if !ended {
        // Dropped, they would take the lock the stuck frame holds: the test would hang.
        std::mem::forget((rt, published, reading, moved, ready));
        panic!("the waker returned: {returned}; the frame ended publishing `a0` alone: false");
    }
    boundary.join().unwrap();
    source.gate.release_all();
    let made = made.get().expect("requested from the waker");
    assert!(streamrt::wait_loaded(&[moved.clone(), made.clone()], PATIENCE));
    assert_eq!(rt.begin_frame().published, 2, "`a2` and `a3`");
    assert_eq!(reading.state(), LoadState::Cancelled);
    drop(ready);
    Arc::into_inner(rt).expect("the last reference").shutdown();
    let report = streamrt::replay::replay(&std::fs::read(&log).unwrap(), Default::default());
    let report = report.expect("the log replays");
    assert_eq!(report.divergence, None, "{:#?}", report.lines);
}

#[test]
fn a_shutdown_called_on_the_core_thread_hands_the_stop_off_and_the_stop_ends_whole() {
    let source = GatedSource::with_blobs(1);
    source.gate.hold("a0");
    let slot: Arc<OnceLock<Weak<Runtime>>> = Arc::default();
    let reached = Arc::clone(&slot);
    // As an engine's code holding its runtime might, on the core thread.
    let hinting = HookedWants::new(&source, move || {
        if let Some(rt) = reached.get().and_then(Weak::upgrade) {
            rt.shutdown();
        }
    });
    // A stop run on the core thread would wait this long for each of the actors that thread
    // runs, far past `PATIENCE`.
    let config = RuntimeConfig { shutdown_ack_ms_max: 3_600_000, ..RuntimeConfig::default() };
    let rt = Runtime::builder().config(config).source(hinting).register(BlobDecoder::default());
    let rt = Arc::new(rt.build().unwrap());
    assert!(slot.set(Arc::downgrade(&rt)).is_ok());
    let events = rt.subscribe(4096);
    let held = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    let ended = held.wait_timeout(PATIENCE).expect("the stop failed the request");
    assert!(
        matches!(&ended, Err(ReadyError::Failed(e)) if e.kind == ErrorKind::Shutdown),
        "{ended:?}"
    );
    assert_eq!(rt.request::<Blob>("a0", Priority::Normal).unwrap_err(), RequestError::Shutdown);
    // The IO worker in a0's read is the last thread the stop waits for.
    source.gate.release("a0");
    let stopped = events.wait_for(PATIENCE, |e| e.kind == EventKind::Stopped);
    assert!(stopped.is_some(), "the stop went to its end");
    within_patience("the engine's shutdown joins the stop it handed off", move || rt.shutdown());
}

#[test]
fn a_replay_log_pipe_no_one_reads_is_refused_at_build_and_a_stalled_one_holds_nothing_up() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("session.fifo");
    named_pipe(&fifo);
    let (source, no_reader) = (GatedSource::with_blobs(1), fifo.clone());
    // Built on a thread of its own: a build that waits for a reader fails the test.
    let refused = within_patience("the build returns", move || {
        let built = Runtime::builder()
            .source(source)
            .register(BlobDecoder::default())
            .record(&no_reader, "test")
            .build();
        built.map(drop)
    });
    assert!(matches!(refused, Err(BuildError::Io(_))), "{refused:?}");
    // A reader that never reads: the pipe fills, and the log's writes block.
    let nonblocking_read = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK;
    let reader = rustix::fs::open(&fifo, nonblocking_read, rustix::fs::Mode::empty()).unwrap();
    let source = GatedSource::with_blobs(2_000);
    let config = RuntimeConfig { shutdown_ack_ms_max: 100, ..RuntimeConfig::default() };
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.config(config).record(&fifo, "t"));
    let rt = Arc::new(rt);
    // Their records are far more than the pipe holds: the threads that record them (the
    // engine's, the core thread, the IO workers) never wait on it. On a thread of its own, so
    // that a wait fails the test, whose end then lets go of the pipe, rather than hanging it.
    let engine = Arc::clone(&rt);
    let ready = within_patience("every load ends, none waiting on the log", move || {
        let handles: Vec<_> = (0..2_000)
            .map(|i| engine.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap())
            .collect();
        handles.iter().all(|h| h.wait_timeout(PATIENCE).is_some_and(|o| o.is_ok()))
    });
    assert!(ready, "every load is ready");
    let error = within_patience("the shutdown returns, the log's writer left behind", move || {
        rt.shutdown();
        rt.record_error()
    });
    let error = error.expect("a log cut short at shutdown is reported");
    assert!(error.contains("did not finish its last writes"), "{error}");
    // Its write then fails (no reader) and its thread ends.
    drop(reader);
}
