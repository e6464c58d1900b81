//! Placeholders, waits over several handles, and load groups.

use std::future::Future;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use streamrt::{
    wait_all, wait_all_async, wait_all_timeout_async, wait_any, wait_any_async,
    wait_any_timeout_async, wait_loaded, LoadGroup, LoadState, Priority, ReadyError,
};
use streamrt_integration::{Blob, BlobDecoder, GatedSource, PATIENCE};

use crate::runtime;

#[test]
fn a_handle_shows_its_types_placeholder_until_the_value_is_ready() {
    let source = GatedSource::with_blobs(1);
    let decoder = BlobDecoder::default();
    decoder.gate.hold("a0");
    let rt = runtime(&source, &decoder, |b| b.placeholder(Blob(b"checkerboard".to_vec())));
    let h = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    assert_eq!(h.get_or_placeholder().unwrap().0, b"checkerboard");
    assert!(h.get().is_none());
    decoder.gate.release("a0");
    h.wait_timeout(PATIENCE).unwrap().unwrap();
    assert_eq!(h.get_or_placeholder().unwrap().0, b"blob-00000000000");
}

#[test]
fn a_placeholder_for_a_type_no_decoder_makes_is_refused_before_the_logs_are_made() {
    /// An asset type with no decoder registered.
    struct Mesh;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("session.log");
    std::fs::write(&log, b"the last session's log").unwrap();
    let built = streamrt::Runtime::builder()
        .source(GatedSource::with_blobs(0))
        .register(BlobDecoder::default())
        .record(&log, "test")
        .placeholder(Mesh)
        .build();
    let refused = built.err().expect("refused");
    assert!(
        matches!(&refused, streamrt::BuildError::PlaceholderType(t) if t.ends_with("Mesh")),
        "{refused}"
    );
    assert_eq!(std::fs::read(&log).unwrap(), b"the last session's log", "left as it was");
}

#[test]
fn wait_all_times_out_while_one_load_is_held_and_succeeds_once_released() {
    let source = GatedSource::with_blobs(3);
    source.gate.hold("a2");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b);
    let handles: Vec<_> =
        (0..3).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    source.gate.wait_started("a2", 1);
    assert!(!wait_all(&handles, Duration::from_millis(20)), "a2 is held");
    source.gate.release("a2");
    assert!(wait_all(&handles, PATIENCE));
    assert!(handles.iter().all(|h| h.state() == LoadState::Ready));
}

#[test]
fn wait_any_returns_the_request_that_ended_and_times_out_when_none_does() {
    let source = GatedSource::with_blobs(3);
    for i in 0..3 {
        source.gate.hold(&format!("a{i}"));
    }
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.workers(3));
    let handles: Vec<_> =
        (0..3).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    assert_eq!(wait_any(&handles, Duration::from_millis(20)), None);
    source.gate.release("a1");
    assert_eq!(wait_any(&handles, PATIENCE), Some(1));
    assert_eq!(futures::executor::block_on(wait_any_async(&handles)), 1, "the one ended");
    source.gate.release_all();
    let outcomes = futures::executor::block_on(wait_all_async(&handles));
    assert!(outcomes.iter().all(Result::is_ok));
    assert_eq!(futures::executor::block_on(wait_any_async(&handles)), 0, "all ended: the first");
}

/// A waker that records that it was woken, for a test to wait on.
#[derive(Default)]
struct Woken(Mutex<bool>, Condvar);

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        *self.0.lock().unwrap() = true;
        self.1.notify_all();
    }
}

impl Woken {
    /// Whether the waker was woken within `timeout`; it is then ready for the next wake.
    fn within(&self, timeout: Duration) -> bool {
        let woken = self.0.lock().unwrap();
        let mut woken = self.1.wait_timeout_while(woken, timeout, |woken| !*woken).unwrap().0;
        std::mem::take(&mut *woken)
    }
}

#[test]
fn wait_any_over_two_runtimes_wakes_when_the_second_ones_request_ends() {
    let (first, second) = (GatedSource::with_blobs(1), GatedSource::with_blobs(1));
    first.gate.hold("a0");
    second.gate.hold("a0");
    let decoder = BlobDecoder::default();
    let (rt1, rt2) = (runtime(&first, &decoder, |b| b), runtime(&second, &decoder, |b| b));
    let handles = [
        rt1.request::<Blob>("a0", Priority::Normal).unwrap(),
        rt2.request::<Blob>("a0", Priority::Normal).unwrap(),
    ];
    // Neither ends: the blocking form gives up at its deadline.
    assert_eq!(wait_any(&handles, Duration::from_millis(20)), None);
    // Polled once, the future listens; then only the second runtime's request ends.
    let woken = Arc::new(Woken::default());
    let waker = Waker::from(Arc::clone(&woken));
    let mut any = std::pin::pin!(wait_any_async(&handles));
    assert!(any.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
    second.gate.release("a0");
    // Woken at the decode and again at the end: polled at each wake, until it is ready.
    let ended = loop {
        assert!(woken.within(PATIENCE), "the second runtime's signal was not listened to");
        if let Poll::Ready(i) = any.as_mut().poll(&mut Context::from_waker(&waker)) {
            break i;
        }
    };
    assert_eq!(ended, 1);
    assert_eq!(wait_any(&handles, PATIENCE), Some(1));
    first.gate.release_all();
}

#[test]
fn a_load_group_reports_progress_and_cancels_all_that_remain() {
    let source = GatedSource::with_blobs(4);
    for i in 1..4 {
        source.gate.hold(&format!("a{i}"));
    }
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.workers(4));
    let group: LoadGroup<Blob> =
        (0..4).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    assert!(group.handles()[0].wait_timeout(PATIENCE).unwrap().is_ok());
    assert!((group.progress() - 0.25).abs() < f64::EPSILON);
    group.cancel_all();
    assert!(group.is_done());
    assert!((group.progress() - 1.0).abs() < f64::EPSILON);
    assert!(group.wait(PATIENCE));
    let states: Vec<_> = group.handles().iter().map(|h| h.state()).collect();
    assert_eq!(
        states,
        [LoadState::Ready, LoadState::Cancelled, LoadState::Cancelled, LoadState::Cancelled]
    );
    source.gate.release_all();
}

#[test]
fn async_waits_with_a_timeout_give_up_while_held_and_resolve_once_released() {
    let source = GatedSource::with_blobs(2);
    source.gate.hold("a0");
    source.gate.hold("a1");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.workers(2));
    let handles: Vec<_> =
        (0..2).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    let short = Duration::from_millis(20);
    assert_eq!(futures::executor::block_on(wait_any_timeout_async(&handles, short)), None);
    assert!(futures::executor::block_on(wait_all_timeout_async(&handles, short)).is_none());
    source.gate.release("a0");
    assert_eq!(futures::executor::block_on(wait_any_timeout_async(&handles, PATIENCE)), Some(0));
    assert!(futures::executor::block_on(wait_all_timeout_async(&handles, short)).is_none());
    source.gate.release("a1");
    let outcomes = futures::executor::block_on(wait_all_timeout_async(&handles, PATIENCE));
    assert!(outcomes.expect("both ended").iter().all(Result::is_ok));
}

#[test]
fn wait_loaded_returns_once_everything_decoded_even_before_any_frame_publishes() {
    let source = GatedSource::with_blobs(3);
    source.gate.hold("a2");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.frame_budget(8));
    let handles: Vec<_> =
        (0..3).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    source.gate.wait_started("a2", 1);
    assert!(!wait_loaded(&handles, Duration::from_millis(20)), "a2 is held");
    source.gate.release("a2");
    assert!(wait_loaded(&handles, PATIENCE));
    assert!(handles.iter().all(|h| h.state() == LoadState::Decoded), "no frame has begun");
    assert!(rt.sync(PATIENCE));
    assert_eq!(rt.begin_frame().published, 3);
}

#[test]
fn waits_over_no_handles_answer_at_once() {
    // Each given an hour: one that waited it out would not answer within the test's patience.
    let hour = Duration::from_secs(3600);
    let (answers, answered) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let none: [streamrt::Handle<Blob>; 0] = [];
        let _ =
            answers.send((wait_all(&none, hour), wait_loaded(&none, hour), wait_any(&none, hour)));
    });
    let (all, loaded, any) = answered.recv_timeout(PATIENCE).expect("answered at once");
    assert!(all, "all of nothing ended");
    assert!(loaded, "all of nothing loaded");
    assert_eq!(any, None, "nothing can end");
}

#[test]
fn a_pending_async_wait_does_not_keep_a_request_every_handle_let_go_of() {
    let (source, rt, h) = one_held_request();
    source.gate.wait_started("a0", 1);
    // A loading screen's waits, made and then left pending as the player leaves.
    let all = streamrt::wait_all_timeout_async(std::slice::from_ref(&h), PATIENCE);
    let any = streamrt::wait_any_async(std::slice::from_ref(&h));
    drop(h);
    assert!(rt.sync(PATIENCE));
    assert_eq!(rt.status().cancelled, 1, "the request was let go of, so cancelled");
    // And the waits resolve with that end.
    let outcomes = futures::executor::block_on(all).expect("ended within the patience");
    assert!(matches!(outcomes[..], [Err(ReadyError::Cancelled)]), "{outcomes:?}");
    assert_eq!(futures::executor::block_on(any), 0);
    source.gate.release("a0");
}

/// A runtime with one request, `a0`, whose read is held until the test releases it.
fn one_held_request() -> (GatedSource, streamrt::Runtime, streamrt::Handle<Blob>) {
    let source = GatedSource::with_blobs(1);
    source.gate.hold("a0");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b);
    let handle = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    (source, rt, handle)
}

#[test]
fn a_zero_timeout_wait_is_a_poll_none_while_held_the_value_once_ready() {
    let (source, _rt, h) = one_held_request();
    source.gate.wait_started("a0", 1);
    assert!(h.wait_timeout(Duration::ZERO).is_none(), "a0 is held");
    source.gate.release("a0");
    h.wait_timeout(PATIENCE).unwrap().unwrap();
    assert_eq!(h.wait_timeout(Duration::ZERO).unwrap().unwrap().0, b"blob-00000000000");
}

#[test]
fn a_waiter_listening_before_the_load_ends_is_woken_by_its_end() {
    let (source, _rt, handle) = one_held_request();
    let mut ready = Box::pin(handle.ready());
    // One poll while the read is held registers the future's listener.
    let waker = futures::task::noop_waker();
    let polled = ready.as_mut().poll(&mut std::task::Context::from_waker(&waker));
    assert!(polled.is_pending(), "the load is held");
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || tx.send(futures::executor::block_on(ready)).unwrap());
    source.gate.release("a0");
    let outcome = rx.recv_timeout(PATIENCE).expect("the end woke the listener");
    assert_eq!(outcome.unwrap().0, b"blob-00000000000");
    waiter.join().unwrap();
}

#[test]
fn a_ready_future_outliving_the_last_handle_still_gets_the_value_once_it_was_let_go_of() {
    let (source, rt, handle) = one_held_request();
    let ready = handle.ready();
    source.gate.release("a0");
    handle.wait_timeout(PATIENCE).unwrap().unwrap();
    drop(handle);
    // The cache handled the release: it parked the value, which the future may still read.
    assert!(rt.sync(PATIENCE));
    assert_eq!(rt.memory_stats().parked, 1);
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || tx.send(futures::executor::block_on(ready)).unwrap());
    let outcome = rx.recv_timeout(PATIENCE).expect("the future resolves");
    assert_eq!(outcome.unwrap().0, b"blob-00000000000");
    waiter.join().unwrap();
}

#[test]
fn a_timeout_too_long_for_an_instant_waits_without_a_deadline_instead_of_panicking() {
    let (source, rt, h) = one_held_request();
    let events = rt.subscribe(64);
    let waiting = h.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || tx.send(waiting.wait_timeout(Duration::MAX)).unwrap());
    source.gate.release("a0");
    let outcome = rx.recv_timeout(PATIENCE).expect("the end woke the waiter");
    assert!(matches!(outcome, Some(Ok(_))), "{outcome:?}");
    waiter.join().unwrap();
    let handles = [h];
    assert!(wait_all(&handles, Duration::MAX));
    assert_eq!(wait_any(&handles, Duration::MAX), Some(0));
    assert!(wait_loaded(&handles, Duration::MAX));
    assert_eq!(
        futures::executor::block_on(wait_any_timeout_async(&handles, Duration::MAX)),
        Some(0)
    );
    assert!(futures::executor::block_on(wait_all_timeout_async(&handles, Duration::MAX)).is_some());
    assert!(rt.sync(Duration::MAX));
    assert!(events.wait_for(Duration::MAX, |_| true).is_some());
    assert_eq!(rt.cache_stats(Duration::MAX).len(), 1);
}

#[test]
fn wait_loaded_waits_for_a_dependents_dependencies_not_only_its_own_bytes() {
    let source = GatedSource::default();
    source.put("tex", b"texture");
    source.put_with_deps("blob:mat", b"material", &["blob:tex"]);
    source.gate.hold("tex");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.frame_budget(100));
    let events = rt.subscribe(64);
    let mat = rt.request::<Blob>("mat", Priority::Normal).unwrap();
    source.gate.wait_started("tex", 1);
    // mat's own bytes decode; its texture is still being read.
    streamrt_integration::wait_decoded(&events, mat.id());
    assert!(!wait_loaded(std::slice::from_ref(&mat), Duration::from_millis(20)), "tex is held");
    source.gate.release("tex");
    assert!(wait_loaded(std::slice::from_ref(&mat), PATIENCE));
    // Loaded means in memory: frames publish the texture, then the material, reading nothing.
    assert!(rt.sync(PATIENCE));
    rt.begin_frame();
    assert!(rt.sync(PATIENCE));
    rt.begin_frame();
    assert_eq!(mat.state(), LoadState::Ready);
}
