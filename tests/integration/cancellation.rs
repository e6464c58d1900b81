//! Cancellation at every stage, shared holders, and dropping handles.

use std::sync::atomic::Ordering;

use streamrt::messages::EventKind;
use streamrt::{LoadState, Priority, ReadyError, Runtime, RuntimeConfig};
use streamrt_integration::{Blob, BlobDecoder, GatedSource, HookedWants, PATIENCE};

use crate::{one_read_held, runtime};

#[test]
fn cancel_while_queued_ends_cancelled_and_the_asset_is_never_read() {
    let source = GatedSource::with_blobs(2);
    source.gate.hold("a0");
    let rt = runtime(&source, &BlobDecoder::default(), |b| {
        b.workers(1).reads_in_flight(1).read_credit_bytes(1)
    });
    let first = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    let queued = rt.request::<Blob>("a1", Priority::Normal).unwrap();
    source.gate.wait_started("a0", 1);
    queued.cancel();
    assert_eq!(queued.state(), LoadState::Cancelled, "cancel takes effect before it returns");
    assert!(rt.sync(PATIENCE));
    source.gate.release("a0");
    first.wait_timeout(PATIENCE).unwrap().unwrap();
    assert!(rt.sync(PATIENCE));
    rt.shutdown();
    assert_eq!(source.gate.started_count("a1"), 0, "a cancelled queued load is never read");
    assert_eq!(queued.outcome(), Some(Err(ReadyError::Cancelled)));
    assert_eq!(rt.status().cancelled, 1);
}

#[test]
fn cancel_while_decoding_never_binds_and_counts_a_cancelled_after_decode() {
    let source = GatedSource::with_blobs(1);
    let decoder = BlobDecoder::default();
    decoder.gate.hold("a0");
    let rt = runtime(&source, &decoder, |b| b);
    let events = rt.subscribe(1024);
    let handle = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    decoder.gate.wait_started("a0", 1);
    handle.cancel();
    decoder.gate.release("a0");
    let late = events.wait_for(PATIENCE, |e| e.kind == EventKind::CancelledAfterDecode);
    let late = late.expect("the late decode is reported");
    assert_eq!(late.request, Some(handle.id()));
    assert_eq!(handle.state(), LoadState::Cancelled);
    assert!(handle.get().is_none(), "a cancelled handle never binds");
    assert_eq!(rt.status().cancelled_after_decode, 1);
}

#[test]
fn when_one_of_two_holders_cancels_the_other_still_gets_ready() {
    let source = GatedSource::with_blobs(1);
    source.gate.hold("a0");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b);
    let leaving = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    let staying = rt.request::<Blob>("a0", Priority::Low).unwrap();
    source.gate.wait_started("a0", 1);
    leaving.cancel();
    assert!(rt.sync(PATIENCE));
    source.gate.release("a0");
    let value = staying.wait_timeout(PATIENCE).unwrap().expect("the other holder keeps its load");
    assert_eq!(value.0, b"blob-00000000000");
    assert_eq!(leaving.outcome(), Some(Err(ReadyError::Cancelled)));
    assert_eq!(source.gate.started_count("a0"), 1, "both holders shared one load");
}

#[test]
fn a_read_cancelled_while_it_was_read_still_counts_its_bytes() {
    let source = GatedSource::with_blobs(2);
    let (rt, cancelled) = one_read_held(&source, Priority::Normal);
    cancelled.cancel();
    // The cache has marked the load cancelled before its read returns.
    assert!(rt.sync(PATIENCE));
    source.gate.release("a0");
    // The one IO worker finishes `a0`'s read before it takes `a1`'s.
    let next = rt.request::<Blob>("a1", Priority::Normal).unwrap();
    next.wait_timeout(PATIENCE).unwrap().unwrap();
    assert_eq!(cancelled.state(), LoadState::Cancelled);
    assert_eq!(rt.status().bytes_read, 2 * 16, "both reads happened");
}

#[test]
fn dropping_the_last_handle_cancels_the_load() {
    let source = GatedSource::with_blobs(2);
    source.gate.hold("a0");
    let rt = runtime(&source, &BlobDecoder::default(), |b| {
        b.workers(1).reads_in_flight(1).read_credit_bytes(1)
    });
    let events = rt.subscribe(1024);
    let blocker = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    let dropped = rt.request::<Blob>("a1", Priority::Normal).unwrap();
    let id = dropped.id();
    source.gate.wait_started("a0", 1);
    let clone = dropped.clone();
    drop(dropped);
    assert_eq!(clone.state(), LoadState::Pending, "a clone still holds the request");
    drop(clone);
    assert!(rt.sync(PATIENCE));
    source.gate.release("a0");
    blocker.wait_timeout(PATIENCE).unwrap().unwrap();
    let cancelled = events.wait_for(PATIENCE, |e| {
        matches!(e.kind, EventKind::Cancelled { .. }) && e.request == Some(id)
    });
    assert!(cancelled.is_some());
    assert!(rt.sync(PATIENCE));
    assert_eq!(source.gate.started_count("a1"), 0);
}

#[test]
fn cancelling_after_ready_keeps_the_value() {
    let source = GatedSource::with_blobs(1);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b);
    let handle = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    handle.wait_timeout(PATIENCE).unwrap().unwrap();
    handle.cancel();
    assert_eq!(handle.state(), LoadState::Ready);
    assert!(handle.get().is_some());
}

#[test]
fn loads_released_while_their_dispatch_is_on_its_way_give_their_credits_back() {
    // One read credit: a single credit a stale dispatch kept would stall every later load.
    // The race is made likely, not forced: the release leaves the engine as the read's credit
    // wakes the scheduler; a few to a few dozen of the 500 rounds reach the cache second.
    let rounds = 500;
    let source = GatedSource::with_blobs(2 * rounds + 1);
    let decoder = BlobDecoder::default();
    let rt = runtime(&source, &decoder, |b| b.workers(1).reads_in_flight(1).read_credit_bytes(1));
    for round in 0..rounds {
        let (reading, queued) = (format!("a{}", 2 * round), format!("a{}", 2 * round + 1));
        source.gate.hold(&reading);
        decoder.gate.hold(&reading);
        let first = rt.request::<Blob>(&reading, Priority::High).unwrap();
        let second = rt.request::<Blob>(&queued, Priority::Normal).unwrap();
        source.gate.wait_started(&reading, 1);
        assert!(rt.sync(PATIENCE));
        // The read's end frees the credit, and the scheduler dispatches `second` while its
        // release is on its way: either may reach the cache first.
        source.gate.release(&reading);
        decoder.gate.wait_started(&reading, 1);
        second.cancel();
        decoder.gate.release(&reading);
        first.wait_timeout(PATIENCE).expect("the first load ends").unwrap();
    }
    let last = rt.request::<Blob>(&format!("a{}", 2 * rounds), Priority::Normal).unwrap();
    last.wait_timeout(PATIENCE).expect("the credit came back").unwrap();
    assert!(rt.sync(PATIENCE));
    let status = rt.status();
    assert_eq!((status.in_flight, status.queued), (0, 0), "nothing left counted in flight");
}

#[test]
fn a_load_every_request_let_go_of_before_its_dispatch_reached_the_cache_is_never_read() {
    let source = GatedSource::with_blobs(2);
    source.put("w", b"the hint holder");
    let (hooked, armed) = HookedWants::holding_when_armed(&source);
    source.gate.hold("a0");
    // One engine message a cache turn: the scheduler has turns between them.
    let config = RuntimeConfig { drain_batch_max: 1, ..RuntimeConfig::default() };
    let rt = Runtime::builder()
        .config(config)
        .source(hooked)
        .register(BlobDecoder::default())
        .workers(1)
        .reads_in_flight(1)
        .read_credit_bytes(1)
        .build()
        .unwrap();
    let events = rt.subscribe(1024);
    let reading = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    let released = rt.request::<Blob>("a1", Priority::Low).unwrap();
    source.gate.wait_started("a0", 1);
    assert!(rt.sync(PATIENCE), "a1 waits in the scheduler's queue for the one credit");
    source.gate.hold("want");
    armed.store(true, Ordering::Release);
    let holder = rt.request::<Blob>("w", Priority::Background).unwrap();
    source.gate.wait_started("want", 1);
    // With the core thread held: a1's release waits in its cache's engine lane behind 200
    // other commands, and a0's read ends, its credit waking the scheduler, which dispatches
    // a1 long before the cache's turns reach the release.
    for i in 0..200 {
        reading.reprioritize(if i % 2 == 0 { Priority::High } else { Priority::Normal });
    }
    released.cancel();
    source.gate.release("a0");
    let decoding = |e: &streamrt::messages::Event| {
        e.kind == EventKind::DecodeStarted && e.request == Some(reading.id())
    };
    assert!(events.wait_for(PATIENCE, decoding).is_some(), "a0's read is over");
    source.gate.release("want");
    holder.wait_timeout(PATIENCE).expect("w loads once a1 let its credit go").unwrap();
    reading.wait_timeout(PATIENCE).unwrap().unwrap();
    assert_eq!(released.outcome(), Some(Err(ReadyError::Cancelled)));
    assert!(rt.sync(PATIENCE) && rt.flush_telemetry());
    // Not even sent to the IO pool, whose worker would only have seen it cancelled there.
    let a1 = released.id();
    let dispatched = std::iter::from_fn(|| events.try_next())
        .any(|e| e.kind == EventKind::Dispatched && e.request == Some(a1));
    assert!(!dispatched, "no request wanted a1 any more, yet its load was dispatched");
    assert_eq!(source.gate.started_count("a1"), 0);
    let status = rt.status();
    assert_eq!((status.in_flight, status.queued), (0, 0), "nothing left counted in flight");
}
