//! Tests that install a process-wide `tracing` subscriber, which the shared integration binary
//! cannot do per test: a subscriber that panics at a chosen runtime event, once, as an
//! embedding program's own subscriber or event code might.
//!
//! The runtime catches a subscriber's panic where it emits the event, so the panic costs that
//! event and nothing else: what these tests check is that every load still ends, its waiters
//! wake, and its dependents and counters hear of it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once, PoisonError};

use streamrt::chaos::CrashTarget;
use streamrt::messages::ErrorKind;
use streamrt::{Intensity, LoadState, Priority, ReadyError, Runtime, RuntimeConfig};
use streamrt_integration::{wait_restart, Blob, BlobDecoder, GatedSource, PATIENCE};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// The runtime event (its `event` field), the log line (its message), or the span made,
/// entered or left (`new decode`, `enter decode`, `exit frame_task`), the subscriber panics at
/// next, once.
static PANIC_AT: Mutex<Option<&'static str>> = Mutex::new(None);
/// How many times the subscriber panicked.
static PANICS: AtomicUsize = AtomicUsize::new(0);
/// Held by each test: the subscriber and its counters are the process's.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Takes every `streamrt` event and panics at the armed one.
struct PanickingSubscriber;

/// Finds an event's `event` field (the runtime's name for what happened), or else its
/// message (a log line's text).
#[derive(Default)]
struct EventName {
    event: Option<String>,
    message: Option<String>,
}

impl Visit for EventName {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "event" {
            self.event = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = Some(format!("{value:?}"));
        }
    }
}

impl Subscriber for PanickingSubscriber {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "streamrt"
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let at = SPANS.iter().position(|&name| name == span.metadata().name());
        if let Some(i) = at {
            panic_if_armed(&format!("new {}", SPANS[i]));
        }
        Id::from_u64(at.map_or(1, |i| i as u64 + 2))
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut name = EventName::default();
        event.record(&mut name);
        if let Some(name) = name.event.or(name.message) {
            panic_if_armed(&name);
        }
    }

    fn enter(&self, span: &Id) {
        if let Some(name) = span_name(span) {
            panic_if_armed(&format!("enter {name}"));
        }
    }

    fn exit(&self, span: &Id) {
        if let Some(name) = span_name(span) {
            panic_if_armed(&format!("exit {name}"));
        }
    }
}

/// The runtime's spans the subscriber tells apart (its other spans all have id 1).
const SPANS: [&str; 3] = ["read", "decode", "frame_task"];

fn span_name(span: &Id) -> Option<&'static str> {
    let at = usize::try_from(span.into_u64()).ok()?.checked_sub(2)?;
    SPANS.get(at).copied()
}

/// Panics if the subscriber is armed at `name`, and disarms it.
fn panic_if_armed(name: &str) {
    let mut armed = PANIC_AT.lock().unwrap_or_else(PoisonError::into_inner);
    if armed.is_some_and(|at| at == name) {
        *armed = None;
        drop(armed);
        PANICS.fetch_add(1, Ordering::SeqCst);
        panic!("scripted subscriber panic at {name}");
    }
}

/// Installs the subscriber (once per process) and arms it to panic at `event`; the guard
/// keeps other tests out until the test ends.
fn panic_once_at(event: &'static str) -> MutexGuard<'static, ()> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing::subscriber::set_global_default(PanickingSubscriber).expect("the only subscriber");
    });
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    PANICS.store(0, Ordering::SeqCst);
    *PANIC_AT.lock().unwrap_or_else(PoisonError::into_inner) = Some(event);
    turn
}

/// A runtime over `source` with the blob decoder.
fn runtime(source: GatedSource) -> Runtime {
    runtime_with(source, RuntimeConfig::default())
}

/// A runtime over `source` with the blob decoder and `config`.
fn runtime_with(source: GatedSource, config: RuntimeConfig) -> Runtime {
    let builder = Runtime::builder().source(source).register(BlobDecoder::default());
    builder.config(config).build().expect("builds")
}

/// Requests `a0` at each priority (a `Critical` load is decoded on the IO worker that read
/// it, a `Normal` one on a decode thread) with the subscriber armed to panic at `event`, and
/// checks that the subscriber panicked and the load still became `Ready`, after `retries`
/// retries.
fn a0_is_ready_despite_a_panic_at(event: &'static str, retries: u64) {
    for priority in [Priority::Normal, Priority::Critical] {
        let _turn = panic_once_at(event);
        let source = GatedSource::with_blobs(1);
        let rt = runtime(source);
        let handle = rt.request::<Blob>("a0", priority).expect("request");
        let outcome = handle.wait_timeout(PATIENCE);
        assert!(outcome.is_some(), "the load of a0 at {priority:?} never ended");
        // Joins the workers: a span's exit hook may run after the request was published.
        rt.shutdown();
        assert_eq!(PANICS.load(Ordering::SeqCst), 1, "the subscriber panicked at {priority:?}");
        assert_eq!(handle.state(), LoadState::Ready, "at {priority:?}");
        assert_eq!(rt.status().retries, retries, "at {priority:?}");
    }
}

#[test]
fn a_subscriber_that_panics_as_a_decode_starts_does_not_leave_the_load_loading() {
    // Caught where it is emitted, the panic costs neither the worker nor the attempt.
    a0_is_ready_despite_a_panic_at("decode_started", 0);
}

#[test]
fn a_subscriber_that_panics_as_a_decode_ends_does_not_lose_the_decoded_value() {
    a0_is_ready_despite_a_panic_at("decode_done", 0);
}

#[test]
fn a_subscriber_that_panics_entering_a_decode_span_loses_the_attempt_not_the_load() {
    // The job is still in its guard: it ends as lost, and the retry decodes.
    a0_is_ready_despite_a_panic_at("enter decode", 1);
}

#[test]
fn a_subscriber_that_panics_leaving_a_decode_span_does_not_lose_the_decoded_value() {
    a0_is_ready_despite_a_panic_at("exit decode", 0);
}

/// Runs `tasks` frame tasks (the first panicking if `first_panics`) with the subscriber armed
/// to panic at `event`; checks that the group joins and the subscriber panicked once, and gives
/// the failed tasks' errors.
fn failed_frame_tasks_despite_a_panic_at(
    event: &'static str,
    tasks: u32,
    first_panics: bool,
) -> Vec<String> {
    let _turn = panic_once_at(event);
    let rt = runtime(GatedSource::with_blobs(0));
    rt.begin_frame();
    let group = rt.frame_tasks::<u32>();
    for i in 0..tasks {
        group.spawn("step", move |_| {
            assert!(!(first_panics && i == 0), "scripted task panic");
            i
        });
    }
    let (joined, results) = std::sync::mpsc::channel();
    std::thread::spawn(move || joined.send(group.wait()).expect("the test waits"));
    let results = results.recv_timeout(PATIENCE).expect("the group joins");
    assert_eq!(PANICS.load(Ordering::SeqCst), 1, "the subscriber panicked");
    rt.end_frame();
    results.iter().filter_map(|r| r.as_ref().err()).map(|e| format!("{e:?}")).collect()
}

#[test]
fn a_subscriber_that_panics_making_or_entering_a_frame_tasks_span_fails_that_task_only() {
    for event in ["new frame_task", "enter frame_task"] {
        let failed = failed_frame_tasks_despite_a_panic_at(event, 4, false);
        assert_eq!(failed.len(), 1, "at {event}: {failed:?}");
        assert!(failed[0].contains("scripted subscriber panic"), "at {event}: {failed:?}");
    }
}

#[test]
fn a_subscriber_that_panics_leaving_a_panicked_tasks_span_does_not_abort_the_process() {
    // The one task panics, so its span is the one left: left while the task's own panic
    // unwound through it, a subscriber's panic there aborted the process.
    let failed = failed_frame_tasks_despite_a_panic_at("exit frame_task", 1, true);
    assert_eq!(failed.len(), 1, "{failed:?}");
}

#[test]
fn a_subscriber_that_panics_at_a_publish_leaves_no_request_of_its_batch_unpublished() {
    let _turn = panic_once_at("published");
    let rt = runtime(GatedSource::with_blobs(8));
    let handles: Vec<_> = (0..8)
        .map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).expect("request"))
        .collect();
    for h in &handles {
        let outcome = h.wait_timeout(PATIENCE);
        assert!(matches!(outcome, Some(Ok(_))), "{} woke to {outcome:?}", h.key());
    }
    assert_eq!(PANICS.load(Ordering::SeqCst), 1, "the subscriber panicked");
    assert!(rt.sync(PATIENCE));
    assert_eq!(rt.status().ready, 8, "every publish was counted");
}

#[test]
fn a_subscriber_that_panics_at_a_failure_still_fails_the_requests_that_depend_on_it() {
    let _turn = panic_once_at("failed");
    let source = GatedSource::default();
    source.put_with_deps("blob:root", b"root", &["blob:missing"]);
    let rt = runtime(source);
    let root = rt.request::<Blob>("root", Priority::Normal).expect("request");
    let outcome = root.wait_timeout(PATIENCE);
    let Some(Err(ReadyError::Failed(error))) = outcome else {
        panic!("the root woke to {outcome:?}");
    };
    assert!(matches!(error.kind, ErrorKind::DependencyFailed { .. }), "{error}");
    assert_eq!(PANICS.load(Ordering::SeqCst), 1, "the subscriber panicked");
    assert_eq!(root.state(), LoadState::Failed);
}

#[test]
fn a_subscriber_that_panics_at_a_workers_crash_report_costs_the_pool_no_thread() {
    let _turn = panic_once_at("worker panicked; rebuilding it with fresh state");
    let config = RuntimeConfig { workers: 1, ..RuntimeConfig::default() };
    let rt = runtime_with(GatedSource::with_blobs(1), config);
    // The one IO worker crashes on a0's read; only that same thread, rebuilt, can read it again.
    assert!(rt.inject_crash(&CrashTarget::IoWorker));
    let outcome =
        rt.request::<Blob>("a0", Priority::Normal).expect("request").wait_timeout(PATIENCE);
    assert!(matches!(outcome, Some(Ok(_))), "a0 woke to {outcome:?}");
    assert_eq!(PANICS.load(Ordering::SeqCst), 1, "the subscriber panicked");
    assert_eq!(rt.live_workers().0, 1);
    assert_eq!(rt.status().retries, 1, "the crash cost the attempt");
}

#[test]
fn a_subscriber_that_panics_at_an_escalations_report_still_shuts_the_runtime_down() {
    let _turn = panic_once_at("supervisor gave up; escalating");
    let restart_intensity = Intensity { restarts_max: 1, window_ms: 3_600_000 };
    let source = GatedSource::with_blobs(1);
    source.gate.hold("a0");
    let config = RuntimeConfig { restart_intensity, ..RuntimeConfig::default() };
    let rt = runtime_with(source.clone(), config);
    let events = rt.subscribe(4096);
    let handle = rt.request::<Blob>("a0", Priority::Normal).expect("request");
    source.gate.wait_started("a0", 1);
    assert!(rt.inject_crash(&CrashTarget::Scheduler));
    wait_restart(&events, "scheduler");
    assert!(rt.inject_crash(&CrashTarget::Scheduler), "one restart more than the intensity");
    let outcome = handle.wait_timeout(PATIENCE);
    let Some(Err(ReadyError::Failed(error))) = outcome else {
        panic!("a0 woke to {outcome:?}");
    };
    assert_eq!(error.kind, ErrorKind::Shutdown);
    assert_eq!(PANICS.load(Ordering::SeqCst), 1, "the subscriber panicked");
    source.gate.release_all();
    rt.shutdown();
    assert_eq!(rt.escalation().expect("the runtime knows why it stopped").child, "scheduler");
}
