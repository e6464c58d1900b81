//! Publishing at frame boundaries within the count budget.

use std::sync::Arc;

use streamrt::messages::EventKind;
use streamrt::{wait_loaded, AdaptivePolicy, FramePolicy, LoadState, ManualClock, Priority};
use streamrt_integration::{Blob, BlobDecoder, GatedSource, PATIENCE};

use crate::runtime;

#[test]
fn frames_publish_most_urgent_first_within_the_count_budget() {
    let source = GatedSource::with_blobs(5);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.frame_budget(2));
    let events = rt.subscribe(1024);
    let priorities =
        [Priority::Low, Priority::Critical, Priority::Normal, Priority::High, Priority::Background];
    let handles: Vec<_> = priorities
        .iter()
        .enumerate()
        .map(|(i, &p)| rt.request::<Blob>(&format!("a{i}"), p).unwrap())
        .collect();
    for _ in 0..5 {
        assert!(events.wait_for(PATIENCE, |e| e.kind == EventKind::Decoded).is_some());
    }
    assert!(rt.sync(PATIENCE));
    assert!(
        handles.iter().all(|h| h.state() == LoadState::Decoded),
        "nothing visible before a frame"
    );
    let ready = |handles: &[streamrt::Handle<Blob>]| -> Vec<usize> {
        (0..handles.len()).filter(|&i| handles[i].state() == LoadState::Ready).collect()
    };
    let first = rt.begin_frame();
    assert_eq!((first.published, first.waiting), (2, 3));
    assert_eq!(ready(&handles), [1, 3], "critical and high first");
    rt.end_frame();
    assert_eq!(rt.tick().published, 2);
    assert_eq!(ready(&handles), [0, 1, 2, 3]);
    assert_eq!(rt.tick().published, 1);
    assert_eq!(ready(&handles).len(), 5);
}

#[test]
fn a_boundary_counts_each_request_it_publishes_once_and_stamps_them_alike() {
    let source = GatedSource::with_blobs(5);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.frame_budget(3));
    let events = rt.subscribe(1024);
    let handles: Vec<_> =
        (0..5).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    assert!(wait_loaded(&handles, PATIENCE) && rt.sync(PATIENCE));
    assert_eq!(rt.status().ready, 0, "nothing counted before a frame");
    assert_eq!(rt.begin_frame().published, 3);
    assert_eq!(rt.status().ready, 3);
    let stamps: Vec<u64> = (0..3)
        .map(|_| events.wait_for(PATIENCE, |e| e.kind == EventKind::Published).unwrap().t_us)
        .collect();
    assert!(stamps.iter().all(|&t| t == stamps[0]), "one boundary, one time: {stamps:?}");
    rt.end_frame();
    assert_eq!(rt.tick().published, 2);
    assert_eq!(rt.status().ready, 5);
    assert!(handles.iter().all(|h| h.state() == LoadState::Ready));
}

#[test]
fn a_request_cancelled_while_waiting_for_its_frame_is_never_published() {
    let source = GatedSource::with_blobs(2);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.frame_budget(1));
    let events = rt.subscribe(1024);
    let cancelled = rt.request::<Blob>("a0", Priority::Critical).unwrap();
    let kept = rt.request::<Blob>("a1", Priority::Low).unwrap();
    for _ in 0..2 {
        assert!(events.wait_for(PATIENCE, |e| e.kind == EventKind::Decoded).is_some());
    }
    assert!(rt.sync(PATIENCE));
    cancelled.cancel();
    let report = rt.begin_frame();
    assert_eq!(report.published, 1, "the cancelled request costs no budget");
    assert_eq!(cancelled.state(), LoadState::Cancelled);
    assert!(cancelled.get().is_none());
    assert_eq!(kept.state(), LoadState::Ready);
}

#[test]
fn requests_cancelled_while_waiting_leave_the_ready_set_before_any_frame_reaches_them() {
    let source = GatedSource::with_blobs(4);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.frame_budget(1));
    let events = rt.subscribe(1024);
    let mut handles: Vec<_> =
        (0..4).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    for _ in 0..4 {
        assert!(events.wait_for(PATIENCE, |e| e.kind == EventKind::Decoded).is_some());
    }
    assert!(rt.sync(PATIENCE));
    // The last three are cancelled: a frame of one would reach them only in three frames.
    for cancelled in handles.drain(1..) {
        cancelled.cancel();
    }
    assert!(rt.sync(PATIENCE));
    let report = rt.begin_frame();
    assert_eq!((report.published, report.waiting), (1, 0), "nothing cancelled still waits");
    assert_eq!(handles[0].state(), LoadState::Ready);
}

#[test]
fn the_byte_budget_limits_what_one_frame_publishes() {
    let source = GatedSource::with_blobs(4);
    let policy =
        streamrt::FramePolicy { publish_bytes_max: 40, ..streamrt::FramePolicy::count(10) };
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.frame_policy(policy));
    let events = rt.subscribe(1024);
    let handles: Vec<_> =
        (0..4).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    for _ in 0..4 {
        assert!(events.wait_for(PATIENCE, |e| e.kind == EventKind::Decoded).is_some());
    }
    assert!(rt.sync(PATIENCE));
    // Each blob is 16 bytes: two fit in 40, a third would not.
    let first = rt.begin_frame();
    assert_eq!((first.published, first.published_bytes, first.waiting), (2, 32, 2));
    assert_eq!(rt.tick().published, 2);
    assert!(handles.iter().all(|h| h.state() == LoadState::Ready));
}

#[test]
fn within_a_priority_the_oldest_request_publishes_first_whatever_order_they_decoded_in() {
    let source = GatedSource::with_blobs(3);
    source.gate.hold("a0");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.frame_budget(1).workers(2));
    let handles: Vec<_> =
        (0..3).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    assert!(wait_loaded(&handles[1..], PATIENCE), "a1 and a2 decode while a0 is held");
    source.gate.release("a0");
    assert!(wait_loaded(&handles, PATIENCE));
    assert!(rt.sync(PATIENCE));
    let mut order = Vec::new();
    for _ in 0..3 {
        rt.tick();
        let now: Vec<usize> = (0..3)
            .filter(|&i| handles[i].state() == LoadState::Ready && !order.contains(&i))
            .collect();
        order.extend(now);
    }
    assert_eq!(order, [0, 1, 2], "request order, not decode order");
}

#[test]
fn the_adaptive_budget_backs_off_when_loaded_frames_run_long_and_recovers_when_short() {
    let source = GatedSource::with_blobs(600);
    let clock = Arc::new(ManualClock::new());
    let adaptive =
        AdaptivePolicy { window_frames: 2, increase_step: 1, ..AdaptivePolicy::target(16_000, 8) };
    let rt = runtime(&source, &BlobDecoder::default(), |b| {
        b.frame_policy(FramePolicy::adaptive(8, adaptive)).clock(Arc::clone(&clock))
    });
    let handles: Vec<_> =
        (0..600).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    assert!(wait_loaded(&handles, PATIENCE));
    assert!(rt.sync(PATIENCE));
    assert_eq!(rt.begin_frame().budget, 8);
    let mut budgets = Vec::new();
    for _ in 0..20 {
        clock.advance(33_000);
        let report = rt.tick();
        assert_eq!(report.frame_us, 33_000);
        assert_eq!(report.published, report.budget, "plenty waiting: every frame is loaded");
        budgets.push(report.budget);
    }
    assert!(budgets.windows(2).all(|w| w[1] <= w[0]), "only down while over: {budgets:?}");
    assert_eq!(*budgets.last().unwrap(), 1, "backed off to the floor: {budgets:?}");
    for _ in 0..40 {
        clock.advance(4_000);
        budgets.push(rt.tick().budget);
    }
    assert!(budgets[20..].windows(2).all(|w| w[1] >= w[0]), "only up while short");
    assert_eq!(*budgets.last().unwrap(), 8, "recovered to the ceiling: {budgets:?}");
}

/// A waker that says it was called, then blocks until the test lets it go: the engine's own
/// code, run by a boundary as it publishes.
struct BlockingWaker {
    entered: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    released: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl BlockingWaker {
    /// The waker, what says it was called, and what lets it go.
    fn waker() -> (std::task::Waker, std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
        let (entered_tx, entered) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel();
        let waker = std::task::Waker::from(Arc::new(BlockingWaker {
            entered: std::sync::Mutex::new(entered_tx),
            released: std::sync::Mutex::new(released),
        }));
        (waker, entered, release)
    }
}

impl std::task::Wake for BlockingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let _ = self.entered.lock().unwrap().send(());
        // Longer than the test's `sync` may take: a core thread that waited for this publish
        // would answer only after the sync gave up.
        let _ = self.released.lock().unwrap().recv_timeout(PATIENCE * 2);
    }
}

#[test]
fn a_publish_held_up_by_the_engines_own_waker_does_not_hold_up_the_core_thread() {
    use std::future::Future;
    let source = GatedSource::with_blobs(2);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.frame_budget(8));
    let first = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    assert!(wait_loaded(std::slice::from_ref(&first), PATIENCE));
    // Staged: the boundary below publishes it.
    assert!(rt.sync(PATIENCE));
    let (waker, entered, release) = BlockingWaker::waker();
    let mut ready = Box::pin(first.ready());
    let polled = ready.as_mut().poll(&mut std::task::Context::from_waker(&waker));
    assert!(polled.is_pending(), "decoded, not yet published");
    std::thread::scope(|scope| {
        let boundary = scope.spawn(|| rt.begin_frame());
        entered.recv_timeout(PATIENCE).expect("publishing `a0` wakes its waiter");
        // The boundary holds the ready set: `a1`'s decode reaches the coordinator now.
        let second = rt.request::<Blob>("a1", Priority::Normal).unwrap();
        assert!(wait_loaded(std::slice::from_ref(&second), PATIENCE));
        assert!(rt.sync(PATIENCE), "the core thread answers while the engine publishes");
        release.send(()).unwrap();
        let report = boundary.join().unwrap();
        assert_eq!(report.published, 1);
        assert_eq!(report.waiting, 1, "`a1`, left for the set's next taker, still waits");
        assert_eq!(rt.begin_frame().published, 1, "`a1`, staged once the set was free");
        assert!(second.wait_timeout(PATIENCE).unwrap().is_ok());
    });
}

#[test]
fn requests_moved_while_a_publish_holds_the_set_go_at_their_last_priority_at_the_next_frame() {
    use std::future::Future;
    let source = GatedSource::with_blobs(4);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.frame_budget(1));
    let handles: Vec<_> =
        (0..4).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    assert!(wait_loaded(&handles, PATIENCE));
    assert!(rt.sync(PATIENCE), "all four staged");
    let (waker, entered, release) = BlockingWaker::waker();
    let mut ready = Box::pin(handles[0].ready());
    let polled = ready.as_mut().poll(&mut std::task::Context::from_waker(&waker));
    assert!(polled.is_pending(), "decoded, not yet published");
    std::thread::scope(|scope| {
        let boundary = scope.spawn(|| rt.begin_frame());
        entered.recv_timeout(PATIENCE).expect("publishing `a0`, the oldest, wakes its waiter");
        // Each change is left for the set's next taker; the last of each request's counts.
        for round in 0..100 {
            let (up, down) = if round % 2 == 0 {
                (Priority::Critical, Priority::Background)
            } else {
                (Priority::Background, Priority::Critical)
            };
            handles[2].reprioritize(up);
            handles[3].reprioritize(down);
            assert!(rt.sync(PATIENCE), "the coordinator takes the change while the set is held");
        }
        handles[1].reprioritize(Priority::Low);
        assert!(rt.sync(PATIENCE));
        release.send(()).unwrap();
        assert_eq!(boundary.join().unwrap().published, 1);
    });
    let published_next = |rt: &streamrt::Runtime| {
        assert_eq!(rt.begin_frame().published, 1);
        rt.end_frame();
        (0..4).filter(|&i| handles[i].state() == LoadState::Ready).collect::<Vec<_>>()
    };
    assert_eq!(published_next(&rt), [0, 3], "`a3`, last moved to critical");
    assert_eq!(published_next(&rt), [0, 1, 3], "`a1`, low, ahead of `a2`, background");
    assert_eq!(published_next(&rt), [0, 1, 2, 3]);
}

#[test]
fn a_recorded_immediate_publish_does_not_hold_the_core_thread_while_a_cancel_runs_the_engines_waker(
) {
    use std::future::Future;
    let source = GatedSource::with_blobs(2);
    source.gate.hold("a0");
    source.gate.hold("a1");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("session.log");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate().record(&log, "test"));
    let events = rt.subscribe(64);
    let decoded = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    let cancelled = rt.request::<Blob>("a1", Priority::Normal).unwrap();
    let (waker, entered, release) = BlockingWaker::waker();
    let mut ready = Box::pin(cancelled.ready());
    let polled = ready.as_mut().poll(&mut std::task::Context::from_waker(&waker));
    assert!(polled.is_pending());
    std::thread::scope(|scope| {
        // The cancel and its record happen under the recorder's order lock, and so does the
        // waker it wakes, which blocks.
        let cancel = scope.spawn(|| cancelled.cancel());
        entered.recv_timeout(PATIENCE).expect("the cancel wakes its waiter");
        source.gate.release("a0");
        let decode = |e: &streamrt::messages::Event| e.kind == EventKind::Decoded;
        assert!(events.wait_for(PATIENCE, decode).is_some(), "`a0` decoded");
        assert!(rt.sync(PATIENCE), "the core thread answers while the engine holds the lock");
        assert_eq!(decoded.state(), LoadState::Decoded, "its publish waits for the lock");
        release.send(()).unwrap();
        assert!(cancel.join().unwrap());
    });
    assert!(decoded.wait_timeout(PATIENCE).unwrap().is_ok(), "published once the lock is free");
    drop(ready);
    source.gate.release_all();
    rt.shutdown();
    let report = streamrt::replay::replay(&std::fs::read(&log).unwrap(), Default::default());
    assert_eq!(report.expect("the log replays").divergence, None);
}

/// A waker that moves the runtime's clock on when a publish wakes it: the engine's own code
/// taking that long.
struct ClockMovingWaker {
    clock: Arc<ManualClock>,
    us: u64,
}

impl std::task::Wake for ClockMovingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.clock.advance(self.us);
    }
}

#[test]
fn the_publish_time_budget_is_spent_by_the_runtimes_clock() {
    use std::future::Future;
    let source = GatedSource::with_blobs(4);
    let clock = Arc::new(ManualClock::new());
    // Each publish takes 1 s by the runtime's clock and next to nothing by the machine's: a
    // budget of 1.5 s lets the second publish begin, and no third.
    let policy = FramePolicy { publish_time_us_max: 1_500_000, ..FramePolicy::count(8) };
    let rt = runtime(&source, &BlobDecoder::default(), |b| {
        b.frame_policy(policy).clock(Arc::clone(&clock))
    });
    let handles: Vec<_> =
        (0..4).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    assert!(wait_loaded(&handles, PATIENCE));
    assert!(rt.sync(PATIENCE));
    let waker = std::task::Waker::from(Arc::new(ClockMovingWaker { clock, us: 1_000_000 }));
    let mut waits: Vec<_> = handles.iter().map(|h| Box::pin(h.ready())).collect();
    for wait in &mut waits {
        let polled = wait.as_mut().poll(&mut std::task::Context::from_waker(&waker));
        assert!(polled.is_pending(), "decoded, not yet published");
    }
    let report = rt.begin_frame();
    assert_eq!((report.published, report.waiting), (2, 2));
    assert_eq!(rt.begin_frame().published, 2, "the rest at the next boundary");
}
