//! Supervision and failure semantics: restarts lose no request, retries, quarantine,
//! escalation, and chaos runs that check every promise at once.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use streamrt::chaos::{self, ChaosOptions, CrashTarget};
use streamrt::messages::replay_log::{LogReader, LogRecord};
use streamrt::messages::EventKind;
use streamrt::{
    ErrorKind, Intensity, LoadState, Priority, ReadyError, RequestError, Runtime, RuntimeConfig,
};
use streamrt_integration::{wait_restart, Blob, BlobDecoder, GatedSource, PATIENCE};

use crate::runtime;

/// Ten requests: a0's read held, the other nine filling the queue to its capacity. Crashes
/// `target` and waits for `actor` to be restarted; releases the read; every request must
/// still become ready: the tickets the crash left queued must not count against the capacity
/// when the restarted actor queues the loads again (a0, whose read was in progress, first).
fn restart_during_load_keeps_every_request(target: &CrashTarget, actor: &str) -> GatedSource {
    let source = GatedSource::with_blobs(10);
    source.gate.hold("a0");
    let rt = runtime(&source, &BlobDecoder::default(), |b| {
        b.workers(1).reads_in_flight(1).read_credit_bytes(1).queue_capacity(9)
    });
    let events = rt.subscribe(4096);
    let mut handles = vec![rt.request::<Blob>("a0", Priority::Normal).unwrap()];
    source.gate.wait_started("a0", 1);
    handles
        .extend((1..10).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()));
    assert!(rt.sync(PATIENCE), "every request is queued before the crash");
    assert_eq!(rt.status().queued, 9, "the queue is full");
    assert!(rt.inject_crash(target));
    wait_restart(&events, actor);
    source.gate.release("a0");
    for h in &handles {
        let outcome = h.wait_timeout(PATIENCE).expect("terminal");
        assert!(outcome.is_ok(), "{h:?}: {outcome:?}");
    }
    assert_eq!(rt.status().restarts, 1);
    assert_eq!(rt.live_workers(), (1, 2));
    source
}

#[test]
fn a_cache_that_crashes_again_as_it_takes_back_what_it_held_loses_nothing() {
    let source = GatedSource::with_blobs(6);
    let rt = runtime(&source, &BlobDecoder::default(), |b| {
        b.workers(1).reads_in_flight(1).read_credit_bytes(1)
    });
    let events = rt.subscribe(4096);
    let kept = rt.request::<Blob>("a5", Priority::Normal).unwrap();
    assert!(kept.wait_timeout(PATIENCE).is_some_and(|r| r.is_ok()));
    source.gate.hold("a0");
    let handles: Vec<_> =
        (0..5).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    source.gate.wait_started("a0", 1);
    assert!(rt.sync(PATIENCE));
    assert!(rt.inject_crash(&CrashTarget::CacheRestart("blob".into())));
    // The crash, then the next incarnation's, after the first it took back.
    wait_restart(&events, "cache:blob");
    wait_restart(&events, "cache:blob");
    source.gate.release("a0");
    for h in &handles {
        let outcome = h.wait_timeout(PATIENCE).expect("terminal");
        assert!(outcome.is_ok(), "{h:?}: {outcome:?}");
    }
    assert_eq!(rt.status().restarts, 2);
    assert_eq!(kept.state(), LoadState::Ready);
    assert_eq!(source.gate.started_count("a5"), 1, "the decoded asset was kept, not read again");
    // Six held assets of 16 bytes, each counted once through both salvages.
    assert!(rt.sync(PATIENCE));
    assert_eq!(rt.memory_stats().resident_bytes, 6 * 16);
    let later = rt.request::<Blob>("a5", Priority::Normal).unwrap();
    assert!(later.wait_timeout(PATIENCE).is_some_and(|r| r.is_ok()));
    assert_eq!(source.gate.started_count("a5"), 1);
}

#[test]
fn a_scheduler_restart_loses_no_queued_request() {
    let source = restart_during_load_keeps_every_request(&CrashTarget::Scheduler, "scheduler");
    for i in 0..10 {
        assert_eq!(source.gate.started_count(&format!("a{i}")), 1, "a{i} read once");
    }
}

#[test]
fn a_restarted_scheduler_counts_the_loads_its_predecessor_dispatched_against_its_bound() {
    // One read and one decode at a time, and room for one load more between dispatch and its
    // end: with a0 held in its decode and a1 read and waiting for the decode thread, the
    // loads in flight are at their bound and the other four wait in the queue.
    let source = GatedSource::with_blobs(6);
    let decoder = BlobDecoder::default();
    decoder.gate.hold("a0");
    let rt = runtime(&source, &decoder, |b| {
        b.config(RuntimeConfig {
            workers: 1,
            reads_in_flight: 1,
            read_credit_bytes: 1,
            decode_threads: 1,
            decode_backlog_max: 1,
            ..RuntimeConfig::default()
        })
    });
    let events = rt.subscribe(4096);
    let handles: Vec<_> =
        (0..6).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    decoder.gate.wait_started("a0", 1);
    source.gate.wait_started("a1", 1);
    assert!(rt.sync(PATIENCE));
    let in_flight_and_queued = |rt: &streamrt::Runtime| {
        let status = rt.status();
        (status.in_flight, status.queued)
    };
    assert_eq!(in_flight_and_queued(&rt), (2, 4), "a0 and a1 in flight, the rest queued");
    assert!(rt.inject_crash(&CrashTarget::Scheduler));
    wait_restart(&events, "scheduler");
    assert!(rt.sync(PATIENCE));
    // The caches resubmit a0 and a1 as in flight (`Adopt`): the new scheduler counts them
    // and dispatches nothing more, though its read credits are all free.
    assert_eq!(in_flight_and_queued(&rt), (2, 4), "the loads in flight were adopted");
    assert_eq!(source.gate.started_count("a2"), 0, "a2 waits for room");
    decoder.gate.release("a0");
    for h in &handles {
        let outcome = h.wait_timeout(PATIENCE).expect("terminal");
        assert!(outcome.is_ok(), "{h:?}: {outcome:?}");
    }
    for i in 0..6 {
        assert_eq!(source.gate.started_count(&format!("a{i}")), 1, "a{i} read once");
    }
}

#[test]
fn a_restarted_scheduler_counts_reads_its_predecessor_started_against_the_read_credits() {
    // One read credit, whole for every load, and room enough between dispatch and end: only
    // the read credit holds a1 back while a0's read is held.
    let source = GatedSource::with_blobs(2);
    source.gate.hold("a0");
    let rt = runtime(&source, &BlobDecoder::default(), |b| {
        b.config(RuntimeConfig {
            workers: 2,
            reads_in_flight: 1,
            read_credit_bytes: 1,
            decode_backlog_max: 4,
            ..RuntimeConfig::default()
        })
    });
    let events = rt.subscribe(4096);
    let a0 = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    source.gate.wait_started("a0", 1);
    let a1 = rt.request::<Blob>("a1", Priority::Normal).unwrap();
    assert!(rt.sync(PATIENCE));
    let in_flight_and_queued = |rt: &streamrt::Runtime| {
        let status = rt.status();
        (status.in_flight, status.queued)
    };
    assert_eq!(in_flight_and_queued(&rt), (1, 1), "a1 waits for a0's read credit");
    assert!(rt.inject_crash(&CrashTarget::Scheduler));
    wait_restart(&events, "scheduler");
    assert!(rt.sync(PATIENCE));
    assert_eq!(in_flight_and_queued(&rt), (1, 1), "a0's read still holds the only credit");
    assert_eq!(source.gate.started_count("a1"), 0);
    source.gate.release("a0");
    for h in [&a0, &a1] {
        let outcome = h.wait_timeout(PATIENCE).expect("terminal");
        assert!(outcome.is_ok(), "{h:?}: {outcome:?}");
    }
}

#[test]
fn a_cache_restart_loses_no_request() {
    let source =
        restart_during_load_keeps_every_request(&CrashTarget::Cache("blob".into()), "cache:blob");
    assert_eq!(source.reads_by_key(), 0, "the salvaged loads kept their slots' locators");
}

#[test]
fn a_crashed_io_worker_is_rebuilt_and_its_load_retried() {
    let source = GatedSource::with_blobs(3);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.workers(1));
    assert!(rt.inject_crash(&CrashTarget::IoWorker));
    let handles: Vec<_> =
        (0..3).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    for h in &handles {
        let outcome = h.wait_timeout(PATIENCE).expect("terminal");
        assert!(outcome.is_ok(), "{h:?}: {outcome:?}");
    }
    let status = rt.status();
    assert_eq!((status.restarts, status.retries), (1, 1));
    assert_eq!(rt.live_workers().0, 1, "the pool keeps its size");
}

#[test]
fn a_transient_io_error_is_retried_and_the_load_succeeds() {
    let source = GatedSource::with_blobs(0);
    source.put("flaky/x", b"eventually");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b);
    let events = rt.subscribe(1024);
    let handle = rt.request::<Blob>("flaky/x", Priority::Normal).unwrap();
    assert_eq!(handle.wait_timeout(PATIENCE).unwrap().unwrap().0, b"eventually");
    let retried =
        events.wait_for(PATIENCE, |e| matches!(e.kind, EventKind::Retried { attempt: 2, .. }));
    assert!(retried.is_some());
    assert_eq!(source.gate.started_count("flaky/x"), 2);
    assert_eq!(source.reads_by_key(), 0, "the retry kept its slot's locator");
}

#[test]
fn io_errors_are_retried_up_to_the_attempt_limit_then_fail() {
    let source = GatedSource::with_blobs(0);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b);
    let handle = rt.request::<Blob>("ioerr/x", Priority::Normal).unwrap();
    let Some(Err(ReadyError::Failed(err))) = handle.wait_timeout(PATIENCE) else {
        panic!("expected a failure")
    };
    let attempts = streamrt::RetryPolicy::default().attempts_max;
    assert!(matches!(err.kind, ErrorKind::Io(_)));
    assert_eq!(err.attempt, attempts);
    assert_eq!(source.gate.started_count("ioerr/x"), attempts as usize);
}

#[test]
fn poison_keys_are_quarantined_after_at_most_k_attempts_while_the_rest_complete() {
    let source = GatedSource::with_blobs(500);
    for i in 0..100 {
        source.put(&format!("poison{i}"), b"PANIC");
    }
    let decoder = BlobDecoder::default();
    let rt = runtime(&source, &decoder, |b| b);
    let k = streamrt::RetryPolicy::default().panics_max;
    let mut poison = Vec::new();
    let mut healthy = Vec::new();
    for i in 0..500 {
        healthy.push(rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap());
        if i % 5 == 0 {
            poison.push(rt.request::<Blob>(&format!("poison{}", i / 5), Priority::Normal).unwrap());
        }
    }
    for h in &healthy {
        let outcome = h.wait_timeout(PATIENCE).expect("terminal");
        assert!(outcome.is_ok(), "{h:?}: {outcome:?}");
    }
    for (i, h) in poison.iter().enumerate() {
        let Some(Err(ReadyError::Failed(err))) = h.wait_timeout(PATIENCE) else { panic!("{h:?}") };
        assert_eq!(err.kind, ErrorKind::Quarantined { panics: k });
        assert!(decoder.gate.started_count(&format!("poison{i}")) <= k as usize);
    }
    let status = rt.status();
    assert_eq!(status.quarantined, 100);
    assert_eq!(rt.live_workers(), (2, 2));
}

#[test]
fn restarts_past_the_intensity_escalate_and_the_runtime_shuts_down_cleanly_and_says_so() {
    let source = GatedSource::with_blobs(5);
    source.gate.hold("a0");
    let config = streamrt::RuntimeConfig {
        restart_intensity: Intensity { restarts_max: 1, window_ms: 3_600_000 },
        workers: 1,
        reads_in_flight: 1,
        read_credit_bytes: 1,
        // Past the test's patience: the actors the supervisor stopped must not be waited for.
        shutdown_ack_ms_max: 2 * PATIENCE.as_millis() as u64,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("session.log");
    let (told, listened) = std::sync::mpsc::channel();
    let rt = runtime(&source, &BlobDecoder::default(), |b| {
        b.config(config).record(&log, "test").on_escalation(move |e| {
            told.send(e.child.clone()).unwrap();
        })
    });
    let events = rt.subscribe(4096);
    let handles: Vec<_> =
        (0..5).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    source.gate.wait_started("a0", 1);
    assert!(rt.inject_crash(&CrashTarget::Scheduler));
    wait_restart(&events, "scheduler");
    assert!(rt.inject_crash(&CrashTarget::Scheduler), "one restart more than the intensity");
    for h in &handles {
        let outcome = h.wait_timeout(PATIENCE).expect("every request ends after escalation");
        assert!(matches!(outcome, Err(ReadyError::Failed(e)) if e.kind == ErrorKind::Shutdown));
    }
    // The listener is told once the shutdown is over, which joins the worker held here.
    source.gate.release_all();
    assert_eq!(listened.recv_timeout(PATIENCE).unwrap(), "scheduler", "the program is told");
    rt.shutdown();
    assert!(listened.try_recv().is_err(), "told once");
    let escalation = rt.escalation().expect("the runtime knows why it stopped");
    assert_eq!(escalation.child, "scheduler");
    assert_eq!(rt.request::<Blob>("a1", Priority::Normal).unwrap_err(), RequestError::Shutdown);
    // The session's replay log ends it as the engine's shutdown would: a whole log.
    let bytes = std::fs::read(&log).unwrap();
    let mut reader = LogReader::new(&bytes).unwrap();
    let mut shutdowns = 0;
    while let Some(record) = reader.next_record().unwrap() {
        shutdowns += usize::from(record == LogRecord::Shutdown);
    }
    assert_eq!(shutdowns, 1, "the escalation's shutdown is recorded, once");
}

#[test]
fn an_escalation_listener_may_shut_its_runtime_down_itself() {
    let source = GatedSource::with_blobs(1);
    let config = RuntimeConfig {
        restart_intensity: Intensity { restarts_max: 1, window_ms: 3_600_000 },
        ..Default::default()
    };
    // The listener reaches its runtime through this slot, filled once the runtime is built.
    let slot: Arc<OnceLock<Arc<Runtime>>> = Default::default();
    let (told, listened) = std::sync::mpsc::channel();
    let reached = Arc::clone(&slot);
    let rt = Arc::new(runtime(&source, &BlobDecoder::default(), |b| {
        b.config(config).on_escalation(move |_| {
            // On the escalation's own thread, which a shutdown must not try to join.
            reached.get().expect("built").shutdown();
            told.send(()).unwrap();
        })
    }));
    assert!(slot.set(Arc::clone(&rt)).is_ok());
    let events = rt.subscribe(4096);
    assert!(rt.inject_crash(&CrashTarget::Scheduler));
    wait_restart(&events, "scheduler");
    assert!(rt.inject_crash(&CrashTarget::Scheduler), "one restart more than the intensity");
    listened.recv_timeout(PATIENCE).expect("the listener ran to its end");
    rt.shutdown();
    assert_eq!(rt.request::<Blob>("a0", Priority::Normal).unwrap_err(), RequestError::Shutdown);
}

#[test]
fn a_chaos_run_of_twenty_thousand_requests_keeps_every_promise() {
    let options = ChaosOptions { patience: Duration::from_secs(240), ..ChaosOptions::default() };
    assert_eq!(
        (options.io_error_rate, options.panic_rate, options.cancel_rate),
        (0.05, 0.01, 0.20)
    );
    let report = chaos::run(&options).unwrap();
    assert!(report.holds(), "{report:?}");
    assert_eq!(report.requests, 20_000);
    assert_eq!(report.terminal, 20_000);
    // One every 2,000 requests, each of the seven targets at least once.
    assert_eq!(report.crashes, 10, "{report:?}");
    assert!(report.restarts >= 10, "injected crashes were restarted: {report:?}");
    // Each target's restart is its crash's: only a decoder's panic restarts anything else.
    let targets = ["scheduler", "cache:chaos", "io-worker", "decode-worker", "frame", "telemetry"];
    for actor in targets {
        let restarts = report.restarts_by_actor.get(actor).copied().unwrap_or(0);
        assert!(restarts >= 1, "{actor} was never restarted: {:?}", report.restarts_by_actor);
    }
    // A cache's two crashes, one of them restarting it with its loads taken back.
    assert!(report.restarts_by_actor["cache:chaos"] >= 2, "{:?}", report.restarts_by_actor);
    assert!(report.ready > 10_000, "most requests still succeed: {report:?}");
}

#[test]
fn shutdown_in_the_middle_of_a_chaos_run_leaves_every_request_terminal() {
    let options = ChaosOptions {
        requests: 10_000,
        shutdown_after: Some(4_000),
        patience: Duration::from_secs(240),
        ..ChaosOptions::default()
    };
    let report = chaos::run(&options).unwrap();
    assert_eq!(report.requests, 4_000, "requests after shutdown are refused");
    assert_eq!(report.terminal, 4_000);
    assert_eq!(
        (report.lost, report.duplicated, report.hung, report.bound_after_cancel),
        (0, 0, 0, 0)
    );
}

#[test]
fn a_cancelled_handle_stays_cancelled_through_restarts() {
    let source = GatedSource::with_blobs(2);
    let decoder = BlobDecoder::default();
    decoder.gate.hold("a0");
    let rt = runtime(&source, &decoder, |b| b);
    let events = rt.subscribe(1024);
    let h = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    let other = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    decoder.gate.wait_started("a0", 1);
    h.cancel();
    assert!(rt.inject_crash(&CrashTarget::Cache("blob".into())));
    wait_restart(&events, "cache:blob");
    decoder.gate.release("a0");
    assert!(other.wait_timeout(PATIENCE).unwrap().is_ok());
    assert_eq!(h.state(), LoadState::Cancelled);
    assert!(h.get().is_none());
}

#[test]
fn a_heavy_chaos_run_with_frequent_crashes_keeps_every_promise() {
    for seed in [5, 6] {
        let options = ChaosOptions {
            seed,
            requests: 10_000,
            io_error_rate: 0.3,
            panic_rate: 0.1,
            cancel_rate: 0.5,
            crash_every: 300,
            poison_keys: 50,
            patience: Duration::from_secs(240),
            ..ChaosOptions::default()
        };
        let report = chaos::run(&options).unwrap();
        assert!(report.holds(), "seed {seed}: {report:?}");
        assert!(report.quarantined > 0 && report.failed_quarantined > 0, "{report:?}");
    }
}

#[test]
fn a_types_own_retry_policy_out_of_range_is_refused_naming_the_type() {
    let backoff = streamrt::Backoff { min_ms: 1, max_ms: streamrt::RETRY_BACKOFF_MS_MAX + 1 };
    let policy = streamrt::RetryPolicy { backoff, ..streamrt::RetryPolicy::default() };
    let refused = streamrt::Runtime::builder()
        .source(GatedSource::with_blobs(1))
        .register_with_policy(BlobDecoder::default(), policy)
        .build();
    let Err(error) = refused else { panic!("an endless backoff is refused") };
    assert!(
        matches!(&error, streamrt::BuildError::TypePolicy { asset_type, .. } if asset_type == "blob"),
        "{error:?}"
    );
    assert!(error.to_string().contains("retry policy of asset type blob"), "{error}");
}

#[test]
fn a_scheduler_restart_does_not_cut_a_retrys_backoff_short() {
    let source = GatedSource::with_blobs(1);
    source.put("flaky/x", b"eventually");
    // An hour's backoff: the retry must not be read again before it.
    let backoff = streamrt::Backoff { min_ms: 3_600_000, max_ms: 3_600_000 };
    let policy = streamrt::RetryPolicy { backoff, ..streamrt::RetryPolicy::default() };
    let rt = streamrt::Runtime::builder()
        .source(source.clone())
        .register_with_policy(BlobDecoder::default(), policy)
        .workers(1)
        .reads_in_flight(1)
        .build()
        .expect("runtime builds");
    let events = rt.subscribe(1024);
    let flaky = rt.request::<Blob>("flaky/x", Priority::Normal).unwrap();
    let retried = events.wait_for(PATIENCE, |e| matches!(e.kind, EventKind::Retried { .. }));
    assert!(retried.is_some(), "the first read failed and a retry waits out its backoff");
    assert!(rt.inject_crash(&CrashTarget::Scheduler));
    wait_restart(&events, "scheduler");
    // One IO worker reads in dispatch order: a retry resubmitted to the restarted scheduler
    // ahead of its backoff would be read before this later request.
    let later = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    later.wait_timeout(PATIENCE).unwrap().unwrap();
    assert_eq!(source.gate.started_count("flaky/x"), 1, "the retry is not read yet");
    assert_eq!(flaky.state(), LoadState::Pending);
}

/// A waker that counts its wakes and panics: the engine's executor's code, run where a
/// request's change wakes it.
#[derive(Default)]
struct PanickingWaker(std::sync::atomic::AtomicUsize);

impl std::task::Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
        panic!("a waker that panics");
    }
}

#[test]
fn a_waker_that_panics_when_a_value_is_handed_out_harms_neither_the_cache_nor_later_waits() {
    use std::future::Future;
    let source = GatedSource::with_blobs(1);
    let decoder = BlobDecoder::default();
    decoder.gate.hold("a0");
    let rt = runtime(&source, &decoder, |b| b.immediate());
    let a = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    let b = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    decoder.gate.wait_started("a0", 1);
    // Waiting for any request to move, with a waker the cache runs as it stages the first
    // holder, before the second gets the value.
    let mut waiting = Box::pin(streamrt::wait_any_async(std::slice::from_ref(&a)));
    let panicking = Arc::new(PanickingWaker::default());
    let waker = std::task::Waker::from(Arc::clone(&panicking));
    let polled = waiting.as_mut().poll(&mut std::task::Context::from_waker(&waker));
    assert!(polled.is_pending());
    decoder.gate.release("a0");
    for h in [&a, &b] {
        let outcome = h.wait_timeout(PATIENCE).expect("terminal");
        assert!(outcome.is_ok(), "{h:?}: {outcome:?}");
    }
    assert!(rt.sync(PATIENCE));
    assert_eq!(panicking.0.load(Ordering::Relaxed), 1, "the waker was woken, and panicked");
    assert_eq!(rt.status().restarts, 0, "the cache did not fail");
    drop(waiting);
    // The signal the waker was woken through still serves later waits.
    let c = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    assert_eq!(futures::executor::block_on(streamrt::wait_any_async(&[c])), 0);
    assert_eq!(decoder.gate.started_count("a0"), 1, "decoded once");
}

/// What [`QueryingWaker`] tells: the thread that woke it, whether its `sync` was done, and
/// how long the `sync` took.
type QueryTold = (Option<String>, bool, Duration);

/// A waker that, woken, asks its runtime for a `sync` and tells how that went: an engine's
/// executor whose wake-up runs code that queries the runtime, on whatever thread wakes it.
struct QueryingWaker {
    rt: std::sync::Weak<streamrt::Runtime>,
    told: std::sync::Mutex<Option<std::sync::mpsc::Sender<QueryTold>>>,
}

impl std::task::Wake for QueryingWaker {
    fn wake(self: Arc<Self>) {
        let Some(told) = self.told.lock().unwrap().take() else { return };
        let Some(rt) = self.rt.upgrade() else { return };
        let started = std::time::Instant::now();
        let synced = rt.sync(PATIENCE);
        let thread = std::thread::current().name().map(str::to_owned);
        let _ = told.send((thread, synced, started.elapsed()));
    }
}

#[test]
fn a_query_made_on_the_actors_thread_answers_at_once_instead_of_waiting_on_itself() {
    use std::future::Future;
    let source = GatedSource::with_blobs(1);
    let decoder = BlobDecoder::default();
    decoder.gate.hold("a0");
    let rt = Arc::new(runtime(&source, &decoder, |b| b.immediate()));
    let a = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    decoder.gate.wait_started("a0", 1);
    // Woken by the cache as it hands the value out, on the core thread.
    let mut waiting = Box::pin(streamrt::wait_any_async(std::slice::from_ref(&a)));
    let (told, tell) = std::sync::mpsc::channel();
    let waker = Arc::new(QueryingWaker {
        rt: Arc::downgrade(&rt),
        told: std::sync::Mutex::new(Some(told)),
    });
    let waker = std::task::Waker::from(waker);
    assert!(waiting.as_mut().poll(&mut std::task::Context::from_waker(&waker)).is_pending());
    decoder.gate.release("a0");
    let (thread, synced, took) = tell.recv_timeout(4 * PATIENCE).expect("the waker was woken");
    assert_eq!(thread.as_deref(), Some("streamrt-core"), "woken where the actors run");
    assert!(!synced, "a sync there cannot be done");
    assert!(took < PATIENCE, "and is refused at once, not after its patience: {took:?}");
    a.wait_timeout(PATIENCE).unwrap().expect("a0 loads all the same");
    assert!(rt.sync(PATIENCE), "on the engine's thread it is");
}

#[test]
fn a_restarted_scheduler_checks_new_loads_against_the_queue_the_caches_resubmit() {
    let source = GatedSource::with_blobs(5);
    source.gate.hold("a0");
    let rt = runtime(&source, &BlobDecoder::default(), |b| {
        b.workers(1).reads_in_flight(1).read_credit_bytes(1).queue_capacity(2)
    });
    let events = rt.subscribe(1024);
    let _reading = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    source.gate.wait_started("a0", 1);
    let queued: Vec<_> =
        ["a1", "a2"].iter().map(|k| rt.request::<Blob>(k, Priority::Normal).unwrap()).collect();
    assert!(rt.sync(PATIENCE));
    assert!(rt.inject_crash(&CrashTarget::Scheduler));
    // Made as the restarted scheduler starts: before or after the cache resubmits `a1` and
    // `a2`, it finds the queue full.
    let over = rt.request::<Blob>("a3", Priority::Normal).unwrap();
    wait_restart(&events, "scheduler");
    let outcome = over.wait_timeout(PATIENCE);
    let Some(Err(ReadyError::Failed(error))) = outcome else {
        panic!("a load past the capacity is refused: {outcome:?}, {:?}", rt.status());
    };
    assert_eq!(error.kind, ErrorKind::QueueFull { capacity: 2 });
    assert!(rt.sync(PATIENCE));
    assert_eq!(rt.status().queued, 2, "a1 and a2, resubmitted");
    source.gate.release_all();
    for handle in queued {
        assert!(handle.wait_timeout(PATIENCE).unwrap().is_ok());
    }
}
