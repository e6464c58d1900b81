//! Priorities and the scheduler's limits.

use streamrt::messages::replay_log::{LogReader, LogRecord};
use streamrt::{ErrorKind, Handle, Priority, ReadyError, Runtime};
use streamrt_integration::{thread_name, Blob, BlobDecoder, GatedSource, NotingDecoder, PATIENCE};

use crate::{one_read_held, raised_to_critical_while_read, runtime};

#[test]
fn reprioritise_moves_a_queued_request_ahead_of_the_others() {
    let source = GatedSource::with_blobs(5);
    let (rt, blocker) = one_read_held(&source, Priority::Normal);
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

/// The order IO starts in when a2, dispatched behind a1 while a0's read holds the one IO
/// worker, is raised by `raise`.
fn reads_after_raising_a_dispatched_load(
    raise: impl FnOnce(&Runtime, &Handle<Blob>),
) -> Vec<String> {
    let source = GatedSource::with_blobs(3);
    source.gate.hold("a0");
    // One IO worker, three reads in flight: a1 and a2 are dispatched and wait for the worker
    // that reads a0.
    let rt = runtime(&source, &BlobDecoder::default(), |b| {
        b.workers(1).reads_in_flight(3).read_credit_bytes(1)
    });
    let handles: Vec<_> =
        (0..3).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    source.gate.wait_started("a0", 1);
    assert!(rt.sync(PATIENCE));
    raise(&rt, &handles[2]);
    assert!(rt.sync(PATIENCE));
    source.gate.release("a0");
    for h in &handles {
        h.wait_timeout(PATIENCE).unwrap().unwrap();
    }
    source.gate.started()
}

#[test]
fn reprioritise_moves_a_dispatched_load_ahead_of_the_reads_staged_before_it() {
    let started =
        reads_after_raising_a_dispatched_load(|_, a2| a2.reprioritize(Priority::Critical));
    assert_eq!(started, ["a0", "a2", "a1"]);
}

#[test]
fn a_more_urgent_request_joining_a_dispatched_load_moves_it_ahead_of_the_reads_before_it() {
    let started = reads_after_raising_a_dispatched_load(|rt, _| {
        let joined = rt.request::<Blob>("a2", Priority::Critical).unwrap();
        assert!(rt.sync(PATIENCE));
        drop(joined);
    });
    assert_eq!(started, ["a0", "a2", "a1"]);
}

#[test]
fn reprioritise_moves_a_read_load_ahead_of_the_decodes_staged_before_it() {
    let source = GatedSource::with_blobs(3);
    let decoder = BlobDecoder::default();
    decoder.gate.hold("a0");
    let rt = runtime(&source, &decoder, |b| b.workers(1).decode_threads(1));
    let events = rt.subscribe(1024);
    let handles: Vec<_> =
        (0..3).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    // a0's decode holds the one decode thread; a1 and a2 are read and wait for it.
    decoder.gate.wait_started("a0", 1);
    let read = |e: &streamrt::messages::Event, key: &str| {
        e.kind == streamrt::messages::EventKind::ReadDone && e.key.as_ref().unwrap().path() == key
    };
    assert!(events.wait_for(PATIENCE, |e| read(e, "a1")).is_some());
    assert!(events.wait_for(PATIENCE, |e| read(e, "a2")).is_some());
    handles[2].reprioritize(Priority::Critical);
    assert!(rt.sync(PATIENCE));
    decoder.gate.release("a0");
    for h in &handles {
        h.wait_timeout(PATIENCE).unwrap().unwrap();
    }
    assert_eq!(decoder.gate.started(), ["a0", "a2", "a1"]);
}

#[test]
fn a_shared_load_falls_back_to_the_priority_of_the_requests_left_when_one_lets_go() {
    let source = GatedSource::with_blobs(3);
    let (rt, blocker) = one_read_held(&source, Priority::Normal);
    // a1 is queued at Normal for `raising`, and `staying` shares it at Background; a2 waits at
    // Low. Once `raising` lets go, a1 is a Background load and a2 goes first.
    let raising = rt.request::<Blob>("a1", Priority::Normal).unwrap();
    let staying = rt.request::<Blob>("a1", Priority::Background).unwrap();
    let other = rt.request::<Blob>("a2", Priority::Low).unwrap();
    assert!(rt.sync(PATIENCE));
    assert!(raising.cancel());
    assert!(rt.sync(PATIENCE));
    source.gate.release("a0");
    for h in [&blocker, &staying, &other] {
        h.wait_timeout(PATIENCE).unwrap().unwrap();
    }
    assert_eq!(source.gate.started(), ["a0", "a2", "a1"]);
}

#[test]
fn small_loads_share_a_read_credit_and_large_ones_take_a_whole_one() {
    let source = GatedSource::default();
    for name in ["s0", "s1", "s2", "s3"] {
        source.put_with_deps(&format!("blob:{name}"), &[1; 100], &[]);
    }
    for name in ["l0", "l1"] {
        source.put_with_deps(&format!("blob:{name}"), &[2; 1000], &[]);
    }
    for name in ["s0", "s1", "s2", "s3", "l0", "l1"] {
        source.gate.hold(name);
    }
    // One credit of 1,000 bytes: a 100-byte load takes a tenth of it (2 shares of 16).
    let rt = runtime(&source, &BlobDecoder::default(), |b| {
        b.workers(4).reads_in_flight(1).read_credit_bytes(1_000)
    });
    let small: Vec<_> =
        (0..4).map(|i| rt.request::<Blob>(&format!("s{i}"), Priority::High).unwrap()).collect();
    for i in 0..4 {
        source.gate.wait_started(&format!("s{i}"), 1);
    }
    let large: Vec<_> =
        ["l0", "l1"].iter().map(|n| rt.request::<Blob>(n, Priority::Normal).unwrap()).collect();
    assert!(rt.sync(PATIENCE));
    assert_eq!(rt.status().in_flight, 4, "a large load waits for the whole credit");
    for i in 0..4 {
        source.gate.release(&format!("s{i}"));
    }
    source.gate.wait_started("l0", 1);
    assert!(rt.sync(PATIENCE));
    assert_eq!(rt.status().in_flight, 1, "one large load at a time");
    assert_eq!(source.gate.started_count("l1"), 0);
    source.gate.release("l0");
    source.gate.release("l1");
    for h in small.iter().chain(&large) {
        h.wait_timeout(PATIENCE).unwrap().unwrap();
    }
}

#[test]
fn a_critical_load_dispatched_behind_small_ones_is_read_next() {
    let source = GatedSource::with_blobs(6);
    source.gate.hold("a0");
    // One credit, but small blobs take a share of it: all five loads are dispatched at once.
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.workers(1).reads_in_flight(1));
    let blocker = rt.request::<Blob>("a0", Priority::Low).unwrap();
    source.gate.wait_started("a0", 1);
    let low: Vec<_> =
        (1..5).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Low).unwrap()).collect();
    assert!(rt.sync(PATIENCE));
    let critical = rt.request::<Blob>("a5", Priority::Critical).unwrap();
    assert!(rt.sync(PATIENCE));
    assert_eq!(rt.status().in_flight, 6, "every load was dispatched before the critical one");
    source.gate.release("a0");
    for h in low.iter().chain([&blocker, &critical]) {
        h.wait_timeout(PATIENCE).unwrap().unwrap();
    }
    assert_eq!(source.gate.started(), ["a0", "a5", "a1", "a2", "a3", "a4"]);
}

#[test]
fn a_critical_load_is_read_at_once_while_low_loads_hold_every_read_credit() {
    let source = GatedSource::with_blobs(8);
    for i in 0..4 {
        source.gate.hold(&format!("a{i}"));
    }
    // Four whole credits, all held by low loads whose reads are held, and two workers free.
    let decoder = BlobDecoder::default();
    decoder.gate.hold("a0");
    let rt = runtime(&source, &decoder, |b| b.workers(6).reads_in_flight(4).read_credit_bytes(1));
    let low: Vec<_> =
        (0..6).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Low).unwrap()).collect();
    for i in 0..4 {
        source.gate.wait_started(&format!("a{i}"), 1);
    }
    // The critical load takes the credit kept for urgent loads and is dispatched at once; a
    // second one finds that credit taken too, so the reserve is one credit.
    source.gate.hold("a6");
    let critical = rt.request::<Blob>("a6", Priority::Critical).unwrap();
    assert!(rt.sync(PATIENCE));
    let first_dispatched = rt.status().in_flight;
    let second = rt.request::<Blob>("a7", Priority::Critical).unwrap();
    assert!(rt.sync(PATIENCE));
    let second_waited = rt.status().in_flight;
    // Then the first low read to end wakes the scheduler for the waiting critical load (a0's
    // decode is held, so its end cannot), which is read next, ahead of the low ones.
    source.gate.release("a0");
    // On failure the gates must open before the runtime is dropped, or its shutdown would wait
    // for the held work until the gates give up.
    let read = std::panic::catch_unwind(|| source.gate.wait_started("a7", 1)).is_ok();
    let order = source.gate.started();
    source.gate.release_all();
    decoder.gate.release_all();
    assert_eq!(first_dispatched, 5, "the critical load waited for a low load's credit");
    assert_eq!(second_waited, 5, "a second critical load took a credit beyond the reserve");
    assert!(read, "the second critical load was not dispatched when a0's credit came back");
    // The four low reads start on four workers in any order; the critical loads come next.
    let mut low_reads = order[..4].to_vec();
    low_reads.sort_unstable();
    assert_eq!(low_reads, ["a0", "a1", "a2", "a3"]);
    assert_eq!(order[4..6], ["a6", "a7"].map(String::from));
    for h in low.iter().chain([&critical, &second]) {
        h.wait_timeout(PATIENCE).unwrap().unwrap();
    }
}

/// A runtime over `source` whose decoder notes the thread each key was decoded on.
fn noting_threads(source: &GatedSource) -> (Runtime, NotingDecoder<String>) {
    let decoder = NotingDecoder::new(thread_name);
    let rt = Runtime::builder()
        .source(source.clone())
        .register(decoder.clone())
        .build()
        .expect("runtime builds");
    (rt, decoder)
}

#[test]
fn an_urgent_load_is_decoded_by_the_io_worker_that_read_it() {
    let source = GatedSource::with_blobs(3);
    let (rt, decoder) = noting_threads(&source);
    let handles = [
        rt.request::<Blob>("a0", Priority::Normal).unwrap(),
        rt.request::<Blob>("a1", Priority::High).unwrap(),
        rt.request::<Blob>("a2", Priority::Critical).unwrap(),
    ];
    for h in &handles {
        h.wait_timeout(PATIENCE).unwrap().unwrap();
    }
    let threads = decoder.notes();
    assert!(threads["a0"].starts_with("streamrt-decode"), "a0 on {}", threads["a0"]);
    assert!(threads["a1"].starts_with("streamrt-io"), "a1 on {}", threads["a1"]);
    assert!(threads["a2"].starts_with("streamrt-io"), "a2 on {}", threads["a2"]);
}

#[test]
fn a_load_raised_to_urgent_while_it_is_read_is_decoded_by_the_io_worker_that_read_it() {
    let source = GatedSource::with_blobs(1);
    source.gate.hold("a0");
    let (rt, decoder) = noting_threads(&source);
    let handle = raised_to_critical_while_read(&rt, &source);
    handle.wait_timeout(PATIENCE).unwrap().unwrap();
    let threads = decoder.notes();
    assert!(threads["a0"].starts_with("streamrt-io"), "a0 on {}", threads["a0"]);
}

#[test]
fn with_urgent_decodes_off_the_io_workers_never_decode() {
    let source = GatedSource::with_blobs(2);
    let decoder = NotingDecoder::new(thread_name);
    let config = streamrt::RuntimeConfig { urgent_decodes_on_io: false, ..Default::default() };
    let rt = Runtime::builder()
        .config(config)
        .source(source.clone())
        .register(decoder.clone())
        .build()
        .expect("runtime builds");
    let handles = [
        rt.request::<Blob>("a0", Priority::High).unwrap(),
        rt.request::<Blob>("a1", Priority::Critical).unwrap(),
    ];
    for h in &handles {
        h.wait_timeout(PATIENCE).unwrap().unwrap();
    }
    let threads = decoder.notes();
    assert_eq!(threads.len(), 2);
    for (key, thread) in threads {
        assert!(thread.starts_with("streamrt-decode"), "{key} on {thread}");
    }
}

#[test]
fn with_urgent_decodes_off_an_urgent_reply_does_not_wait_for_the_decodes_behind_it() {
    let source = GatedSource::with_blobs(4);
    let decoder = BlobDecoder::default();
    let config = streamrt::RuntimeConfig {
        urgent_decodes_on_io: false,
        workers: 1,
        decode_threads: 1,
        ..Default::default()
    };
    let rt = runtime(&source, &decoder, |b| b.config(config));
    let [n0, c, n1, s] = ["a0", "a1", "a2", "a3"];
    // The one decode thread is held in n0's decode.
    decoder.gate.hold(n0);
    let first = rt.request::<Blob>(n0, Priority::Normal).unwrap();
    decoder.gate.wait_started(n0, 1);
    // c, then n1, read by the one IO worker one after the other: each read's start says the
    // load before it is staged for the decode thread.
    source.gate.hold(c);
    let critical = rt.request::<Blob>(c, Priority::Critical).unwrap();
    source.gate.wait_started(c, 1);
    source.gate.hold(n1);
    let _n1 = rt.request::<Blob>(n1, Priority::Normal).unwrap();
    source.gate.release(c);
    source.gate.wait_started(n1, 1);
    source.gate.hold(s);
    let _s = rt.request::<Blob>(s, Priority::Low).unwrap();
    source.gate.release(n1);
    source.gate.wait_started(s, 1);
    // The decode thread takes c (most urgent, n1 still waiting) once n0 is done, and is held
    // in c's decode until the cache has taken n0's reply: no wake of n0's is left to carry
    // c's reply along.
    decoder.gate.hold(c);
    decoder.gate.release(n0);
    decoder.gate.wait_started(c, 1);
    assert!(first.wait_timeout(PATIENCE).expect("n0 ready").is_ok());
    // Then c's reply is posted, and the thread stops in n1's decode.
    decoder.gate.hold(n1);
    decoder.gate.release(c);
    assert!(critical.wait_timeout(PATIENCE).expect("ready while n1 decodes").is_ok());
    decoder.gate.wait_started(n1, 1);
    decoder.gate.release_all();
    source.gate.release_all();
}

#[test]
fn urgent_requests_are_dispatched_before_older_lower_ones() {
    let source = GatedSource::with_blobs(4);
    let (rt, blocker) = one_read_held(&source, Priority::Normal);
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
        b.workers(1).reads_in_flight(1).read_credit_bytes(1).queue_capacity(2)
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
fn a_refused_requests_dropped_handle_lets_go_of_nothing_and_records_no_cancel() {
    let source = GatedSource::with_blobs(2);
    source.gate.hold("a0");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("session.log");
    let config = streamrt::RuntimeConfig { requests_outstanding_max: 1, ..Default::default() };
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.config(config).record(&log, "test"));
    let held = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    let refused = rt.request::<Blob>("a1", Priority::Normal).unwrap();
    assert_eq!(refused.error().expect("refused").kind, ErrorKind::QueueFull { capacity: 1 });
    let refused_id = refused.id().0;
    drop(refused);
    source.gate.release("a0");
    held.wait_timeout(PATIENCE).unwrap().unwrap();
    rt.shutdown();
    let bytes = std::fs::read(&log).unwrap();
    let mut reader = LogReader::new(&bytes).unwrap();
    while let Some(record) = reader.next_record().unwrap() {
        assert_ne!(record, LogRecord::Cancel { id: refused_id }, "it was never at its cache");
    }
}

#[test]
fn under_a_bandwidth_limit_every_asset_still_loads_no_faster_than_the_limit_and_every_byte_is_counted(
) {
    const BLOB_BYTES: usize = 32 << 10;
    let source = GatedSource::default();
    for i in 0..8u8 {
        source.put(&format!("b{i}"), &vec![i; BLOB_BYTES]);
    }
    let rt = runtime(&source, &BlobDecoder::default(), |b| {
        b.immediate().workers(2).io_bytes_per_sec_max(1 << 20)
    });
    let started = std::time::Instant::now();
    let handles: Vec<_> =
        (0..8).map(|i| rt.request::<Blob>(&format!("b{i}"), Priority::Normal).unwrap()).collect();
    assert!(streamrt::wait_all(&handles, PATIENCE));
    // 256 KiB at 1 MiB/s take 250 ms, of which a burst of at most 100 ms goes at once: a
    // lower bound, which a slow machine only passes by more.
    let took = started.elapsed();
    assert!(took >= std::time::Duration::from_millis(140), "read in {took:?}");
    assert!(handles.iter().all(|h| h.get().is_some()));
    assert_eq!(rt.status().bytes_read, 8 * BLOB_BYTES as u64);
}

#[test]
fn under_a_bandwidth_limit_a_critical_load_does_not_wait_for_a_background_read_charged_before_it() {
    let source = GatedSource::default();
    // 100 KB at 1,000 bytes a second: 100 s of the schedule, past the test's patience.
    source.put("big", &vec![1; 100_000]);
    source.put("small", &[2; 16]);
    let rt = runtime(&source, &BlobDecoder::default(), |b| {
        b.immediate().workers(2).io_bytes_per_sec_max(1_000)
    });
    let events = rt.subscribe(1024);
    let big = rt.request::<Blob>("big", Priority::Background).unwrap();
    let read = |e: &streamrt::messages::Event| {
        e.kind == streamrt::messages::EventKind::ReadDone
            && e.key.as_ref().is_some_and(|k| k.path() == "big")
    };
    assert!(events.wait_for(PATIENCE, read).is_some());
    let small = rt.request::<Blob>("small", Priority::Critical).unwrap();
    let loaded = small.wait_timeout(PATIENCE).expect("not held behind the background read");
    assert_eq!(loaded.unwrap().0, [2; 16]);
    assert!(big.get().is_none(), "still paying for its bytes");
    // Its worker stops paying once it is let go of.
    assert!(big.cancel());
}

/// A runtime of `workers` IO workers reading at 1,000 bytes a second, with `big` 100 KB
/// assets (100 s of the schedule each, past the tests' patience) and a small one, `small`;
/// once every `big` load was read, its worker is paying for its bytes.
fn paying_for_background_reads(
    source: &GatedSource,
    workers: usize,
    big: usize,
) -> (streamrt::Runtime, Vec<streamrt::Handle<Blob>>) {
    for i in 0..big {
        source.put(&format!("big{i}"), &vec![1; 100_000]);
    }
    source.put("small", &[2; 16]);
    let rt = runtime(source, &BlobDecoder::default(), |b| {
        b.immediate().workers(workers).io_bytes_per_sec_max(1_000)
    });
    let events = rt.subscribe(1024);
    let handles: Vec<_> = (0..big)
        .map(|i| rt.request::<Blob>(&format!("big{i}"), Priority::Background).unwrap())
        .collect();
    for _ in 0..big {
        let read = |e: &streamrt::messages::Event| {
            e.kind == streamrt::messages::EventKind::ReadDone
                && e.key.as_ref().is_some_and(|k| k.path().starts_with("big"))
        };
        assert!(events.wait_for(PATIENCE, read).is_some());
    }
    (rt, handles)
}

#[test]
fn under_a_bandwidth_limit_a_critical_load_does_not_wait_while_every_worker_pays_for_a_read() {
    let source = GatedSource::default();
    let (rt, _big) = paying_for_background_reads(&source, 2, 2);
    let small = rt.request::<Blob>("small", Priority::Critical).unwrap();
    let loaded = small.wait_timeout(PATIENCE).expect("not held behind the background reads");
    assert_eq!(loaded.unwrap().0, [2; 16]);
}

#[test]
fn under_a_bandwidth_limit_a_load_raised_to_critical_while_its_worker_pays_goes_on_at_once() {
    let source = GatedSource::default();
    let (_rt, big) = paying_for_background_reads(&source, 2, 1);
    big[0].reprioritize(Priority::Critical);
    let loaded = big[0].wait_timeout(PATIENCE).expect("its worker stops paying");
    assert_eq!(loaded.unwrap().0.len(), 100_000);
}

#[test]
fn a_reprioritise_to_the_priority_a_request_has_is_neither_sent_nor_recorded() {
    let source = GatedSource::with_blobs(1);
    source.gate.hold("a0");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("session.log");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.record(&log, "test"));
    let held = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    source.gate.wait_started("a0", 1);
    // An engine that sets every handle's priority each frame, most often to what it was.
    for priority in [Priority::Normal, Priority::Normal, Priority::High, Priority::High] {
        held.reprioritize(priority);
    }
    source.gate.release("a0");
    held.wait_timeout(PATIENCE).unwrap().unwrap();
    rt.shutdown();
    let bytes = std::fs::read(&log).unwrap();
    let mut reader = LogReader::new(&bytes).unwrap();
    let mut moves = Vec::new();
    while let Some(record) = reader.next_record().unwrap() {
        if let LogRecord::Reprioritize { priority, .. } = record {
            moves.push(priority);
        }
    }
    assert_eq!(moves, [Priority::High], "only the change is recorded");
}
