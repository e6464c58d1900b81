//! Priorities and the scheduler's limits.

use streamrt::{ErrorKind, Priority, ReadyError};
use streamrt_integration::{Blob, BlobDecoder, GatedSource, PATIENCE};

use crate::runtime;

#[test]
fn reprioritise_moves_a_queued_request_ahead_of_the_others() {
    let source = GatedSource::with_blobs(5);
    source.gate.hold("a0");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.workers(1).reads_in_flight(1));
    let blocker = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    source.gate.wait_started("a0", 1);
    let queued: Vec<_> =
        (1..5).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Low).unwrap()).collect();
    queued[3].reprioritize(Priority::Critical);
    assert!(rt.sync(PATIENCE));
    source.gate.release("a0");
    for h in queued.iter().chain([&blocker]) {
        h.wait_timeout(PATIENCE).unwrap().unwrap();
    }
    assert_eq!(source.gate.started(), ["a0", "a4", "a1", "a2", "a3"]);
}

#[test]
fn urgent_requests_are_dispatched_before_older_lower_ones() {
    let source = GatedSource::with_blobs(4);
    source.gate.hold("a0");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.workers(1).reads_in_flight(1));
    let blocker = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    source.gate.wait_started("a0", 1);
    let handles = [
        rt.request::<Blob>("a1", Priority::Background).unwrap(),
        rt.request::<Blob>("a2", Priority::Normal).unwrap(),
        rt.request::<Blob>("a3", Priority::Critical).unwrap(),
    ];
    assert!(rt.sync(PATIENCE));
    source.gate.release("a0");
    for h in handles.iter().chain([&blocker]) {
        h.wait_timeout(PATIENCE).unwrap().unwrap();
    }
    assert_eq!(source.gate.started(), ["a0", "a3", "a2", "a1"]);
}

#[test]
fn a_request_past_the_queue_capacity_fails_with_queue_full() {
    let source = GatedSource::with_blobs(4);
    source.gate.hold("a0");
    let rt = runtime(&source, &BlobDecoder::default(), |b| {
        b.workers(1).reads_in_flight(1).queue_capacity(2)
    });
    let _blocker = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    source.gate.wait_started("a0", 1);
    let a1 = rt.request::<Blob>("a1", Priority::Normal).unwrap();
    let a2 = rt.request::<Blob>("a2", Priority::Normal).unwrap();
    let over = rt.request::<Blob>("a3", Priority::Normal).unwrap();
    match over.wait_timeout(PATIENCE).expect("terminal") {
        Err(ReadyError::Failed(e)) => assert_eq!(e.kind, ErrorKind::QueueFull { capacity: 2 }),
        other => panic!("expected QueueFull, got {other:?}"),
    }
    assert!(!a1.is_terminal() && !a2.is_terminal(), "requests within capacity stay queued");
    source.gate.release_all();
    assert!(a1.wait_timeout(PATIENCE).unwrap().is_ok());
    assert!(a2.wait_timeout(PATIENCE).unwrap().is_ok());
}

#[test]
fn requests_past_the_outstanding_limit_fail_at_once_with_queue_full() {
    let source = GatedSource::with_blobs(3);
    source.gate.hold("a0");
    let config = streamrt::RuntimeConfig { requests_outstanding_max: 2, ..Default::default() };
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.config(config));
    let _held = [
        rt.request::<Blob>("a0", Priority::Normal).unwrap(),
        rt.request::<Blob>("a0", Priority::Normal).unwrap(),
    ];
    let over = rt.request::<Blob>("a1", Priority::Normal).unwrap();
    let err = over.error().expect("failed before request returned");
    assert_eq!(err.kind, ErrorKind::QueueFull { capacity: 2 });
    source.gate.release_all();
}

#[test]
fn under_a_bandwidth_limit_every_asset_still_loads_and_every_byte_is_counted() {
    let source = GatedSource::with_blobs(8);
    let rt = runtime(&source, &BlobDecoder::default(), |b| {
        b.immediate().workers(2).io_bytes_per_sec_max(1 << 20)
    });
    let handles: Vec<_> =
        (0..8).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    assert!(streamrt::wait_all(&handles, PATIENCE));
    assert!(handles.iter().all(|h| h.get().is_some()));
    assert_eq!(rt.status().bytes_read, 8 * 16);
}
