//! Tests that install a process-wide `tracing` subscriber, which the shared integration binary
//! cannot do per test: a subscriber that panics at a chosen runtime event, once, as an
//! embedding program's own subscriber or event code might.
//!
//! The runtime catches a subscriber's panic where it emits the event, so the panic costs that
//! event and nothing else: what these tests check is that every load still ends, its waiters
//! wake, and its dependents and counters hear of it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once, PoisonError};

use streamrt::{LoadState, Priority, Runtime};
use streamrt_integration::{Blob, BlobDecoder, GatedSource, PATIENCE};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// The runtime event (its `event` field) the subscriber panics at next, once.
static PANIC_AT: Mutex<Option<&'static str>> = Mutex::new(None);
/// How many times the subscriber panicked.
static PANICS: AtomicUsize = AtomicUsize::new(0);
/// Held by each test: the subscriber and its counters are the process's.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Takes every `streamrt` event and panics at the armed one.
struct PanickingSubscriber;

/// Finds an event's `event` field: the runtime's name for what happened.
#[derive(Default)]
struct EventName(Option<String>);

impl Visit for EventName {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "event" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

impl Subscriber for PanickingSubscriber {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "streamrt"
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut name = EventName::default();
        event.record(&mut name);
        let Some(name) = name.0 else { return };
        let mut armed = PANIC_AT.lock().unwrap_or_else(PoisonError::into_inner);
        if armed.is_some_and(|at| at == name) {
            *armed = None;
            drop(armed);
            PANICS.fetch_add(1, Ordering::SeqCst);
            panic!("scripted subscriber panic at {name}");
        }
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
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

/// Requests `a0` at each priority (a `Critical` load is decoded on the IO worker that read
/// it, a `Normal` one on a decode thread) with the subscriber armed to panic at `event`, and
/// checks that the subscriber panicked and the load still became `Ready`, after `retries`
/// retries.
fn a0_is_ready_despite_a_panic_at(event: &'static str, retries: u64) {
    for priority in [Priority::Normal, Priority::Critical] {
        let _turn = panic_once_at(event);
        let source = GatedSource::with_blobs(1);
        let rt = Runtime::builder()
            .source(source)
            .register(BlobDecoder::default())
            .build()
            .expect("runtime builds");
        let handle = rt.request::<Blob>("a0", priority).expect("request");
        let outcome = handle.wait_timeout(PATIENCE);
        assert!(outcome.is_some(), "the load of a0 at {priority:?} never ended");
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
fn a_subscriber_that_panics_at_a_publish_leaves_no_request_of_its_batch_unpublished() {
    let _turn = panic_once_at("published");
    let rt = Runtime::builder()
        .source(GatedSource::with_blobs(8))
        .register(BlobDecoder::default())
        .build()
        .expect("runtime builds");
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
    let rt = Runtime::builder()
        .source(source)
        .register(BlobDecoder::default())
        .build()
        .expect("runtime builds");
    let root = rt.request::<Blob>("root", Priority::Normal).expect("request");
    let outcome = root.wait_timeout(PATIENCE);
    assert!(matches!(outcome, Some(Err(_))), "the root woke to {outcome:?}");
    assert_eq!(PANICS.load(Ordering::SeqCst), 1, "the subscriber panicked");
    assert_eq!(root.state(), LoadState::Failed);
}
