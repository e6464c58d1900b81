//! Frame task groups: parallel jobs on the runtime's workers, joined at a barrier.

use std::sync::mpsc;

use streamrt::TaskError;
use streamrt_integration::{BlobDecoder, GatedSource, PATIENCE};

use crate::runtime;

/// Joins `group` at its barrier from a thread of its own: a group that never joins fails the
/// test within `PATIENCE` rather than hanging it.
fn joined<R: Send + 'static>(group: streamrt::FrameTaskGroup<R>) -> Vec<Result<R, TaskError>> {
    let (done, results) = mpsc::channel();
    std::thread::spawn(move || done.send(group.wait()).expect("the test waits"));
    results.recv_timeout(PATIENCE).expect("the group joins")
}

#[test]
fn a_task_group_joins_every_task_at_the_barrier_in_spawn_order() {
    let source = GatedSource::with_blobs(0);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.decode_threads(2));
    rt.begin_frame();
    let group = rt.frame_tasks::<u64>();
    for i in 0..64u64 {
        group.spawn("sum", move |_| (0..=i).sum());
    }
    let results: Vec<u64> = joined(group).into_iter().map(Result::unwrap).collect();
    let expected: Vec<u64> = (0..64u64).map(|i| i * (i + 1) / 2).collect();
    assert_eq!(results, expected);
    rt.end_frame();
}

#[test]
fn a_panicking_task_becomes_an_error_at_wait_and_the_others_still_join() {
    let source = GatedSource::with_blobs(0);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.decode_threads(2));
    rt.begin_frame();
    let group = rt.frame_tasks::<&'static str>();
    group.spawn("animation", |_| "animated");
    group.spawn("particles", |_| panic!("particle buffer overflow"));
    group.spawn("culling", |_| "culled");
    let results = joined(group);
    assert_eq!(results[0], Ok("animated"));
    assert_eq!(
        results[1],
        Err(TaskError::Panicked { name: "particles", message: "particle buffer overflow".into() })
    );
    assert_eq!(results[2], Ok("culled"));
    assert_eq!(rt.live_workers().1, 2, "a task's panic costs no worker");
    rt.end_frame();
}

/// A panic payload whose own drop panics.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("the payload's drop panicked too");
    }
}

#[test]
fn a_task_whose_panic_payload_panics_when_dropped_is_still_an_error_at_wait() {
    let source = GatedSource::with_blobs(0);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.decode_threads(2));
    rt.begin_frame();
    let group = rt.frame_tasks::<u8>();
    group.spawn("bomb", |_| std::panic::panic_any(Bomb));
    group.spawn("fine", |_| 7);
    let results = joined(group);
    let payload = "non-string panic payload".to_owned();
    assert_eq!(results[0], Err(TaskError::Panicked { name: "bomb", message: payload }));
    assert_eq!(results[1], Ok(7));
    assert_eq!(rt.live_workers().1, 2);
    rt.end_frame();
}

#[test]
fn end_of_frame_cancels_tasks_not_started_and_tells_running_ones() {
    let source = GatedSource::with_blobs(0);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.decode_threads(1));
    rt.begin_frame();
    let group = rt.frame_tasks::<bool>();
    let (started_tx, started) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    group.spawn("long", move |ctx| {
        started_tx.send(()).unwrap();
        released.recv().unwrap();
        ctx.is_cancelled()
    });
    group.spawn("queued", |_| false);
    started.recv_timeout(PATIENCE).expect("the only worker took the long task");
    rt.end_frame();
    release.send(()).unwrap();
    let results = joined(group);
    assert_eq!(results[0], Ok(true), "the running task saw its frame end");
    assert_eq!(results[1], Err(TaskError::Cancelled { name: "queued" }));
}

#[test]
fn a_task_group_still_completes_after_shutdown_on_the_waiting_thread() {
    let source = GatedSource::with_blobs(0);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b);
    rt.shutdown();
    let group = rt.frame_tasks::<u32>();
    group.spawn("inline", |_| 7);
    assert_eq!(joined(group), [Ok(7)]);
}

#[test]
fn a_task_that_shuts_its_runtime_down_stops_it_whole() {
    let source = GatedSource::with_blobs(0);
    let rt =
        std::sync::Arc::new(runtime(&source, &BlobDecoder::default(), |b| b.decode_threads(1)));
    let events = rt.subscribe(4096);
    let group = rt.frame_tasks::<()>();
    let (started_tx, started) = mpsc::channel();
    let stopping = std::sync::Arc::clone(&rt);
    group.spawn("stop", move |_| {
        started_tx.send(()).unwrap();
        // On a decode thread: the stop cannot join this thread, and must not try.
        stopping.shutdown();
    });
    // Taken by the worker, not run by the waiting thread below.
    started.recv_timeout(PATIENCE).expect("the only worker took the task");
    assert_eq!(joined(group), [Ok(())]);
    let stopped = events.wait_for(PATIENCE, |e| e.kind == streamrt::messages::EventKind::Stopped);
    assert!(stopped.is_some(), "the stop went to its end");
    assert_eq!(
        rt.request::<streamrt_integration::Blob>("a0", streamrt::Priority::Normal).unwrap_err(),
        streamrt::RequestError::Shutdown
    );
}

/// A task's value whose drop says so, then panics.
struct PanicsOnDrop(mpsc::Sender<()>);

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
        panic!("a task's value panicked as it was dropped");
    }
}

#[test]
fn a_group_dropped_while_its_task_runs_drops_the_result_with_its_panic_caught() {
    let source = GatedSource::with_blobs(0);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.decode_threads(1));
    rt.begin_frame();
    let group = rt.frame_tasks::<Option<PanicsOnDrop>>();
    let (started_tx, started) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let (dropped_tx, dropped) = mpsc::channel();
    group.spawn("long", move |_| {
        started_tx.send(()).unwrap();
        released.recv().unwrap();
        Some(PanicsOnDrop(dropped_tx))
    });
    started.recv_timeout(PATIENCE).expect("the only worker took the task");
    drop(group);
    release.send(()).unwrap();
    dropped.recv_timeout(PATIENCE).expect("the result is dropped once its task ends");
    // The worker runs a later task: had the drop's panic ended it, it was rebuilt first.
    let later = rt.frame_tasks::<()>();
    let (ran_tx, ran) = mpsc::channel();
    later.spawn("later", move |_| ran_tx.send(()).unwrap());
    ran.recv_timeout(PATIENCE).expect("the worker took the later task");
    assert_eq!(joined(later), [Ok(())]);
    assert_eq!(rt.status().restarts, 0, "no worker was lost to the drop");
    assert_eq!(rt.live_workers().1, 1);
    rt.end_frame();
}
