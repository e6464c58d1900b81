//! Telemetry: the log of a scripted run, the bounded sink, the report and the Chrome trace.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::BufReader;

use streamrt::messages::Record;
use streamrt::report::{self, LogError, Report};
use streamrt::{BuildError, LoadState, Priority, Runtime, RuntimeConfig};
use streamrt_integration::{
    named_pipe, wait_decoded, within_patience, Blob, BlobDecoder, GatedSource, PATIENCE,
};

use crate::{raised_to_critical_while_read, runtime};

fn log_of(path: &std::path::Path) -> Vec<Record> {
    report::read_log(BufReader::new(File::open(path).unwrap())).unwrap().records
}

#[test]
fn every_terminal_state_and_cancel_stage_appears_in_the_log_with_the_right_request_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    let source = GatedSource::with_blobs(5);
    let decoder = BlobDecoder::default();
    let rt = runtime(&source, &decoder, |b| {
        b.workers(1).reads_in_flight(1).read_credit_bytes(1).frame_budget(16).telemetry_path(&path)
    });
    let events = rt.subscribe(4096);
    // Ready, through a frame.
    let ready = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    wait_decoded(&events, ready.id());
    assert!(rt.sync(PATIENCE));
    rt.tick();
    assert_eq!(ready.state(), LoadState::Ready);
    // Failed.
    let failed = rt.request::<Blob>("nope", Priority::Normal).unwrap();
    assert!(failed.wait_timeout(PATIENCE).unwrap().is_err());
    // Cancelled while decoding (loading stage).
    decoder.gate.hold("a3");
    let loading = rt.request::<Blob>("a3", Priority::Normal).unwrap();
    decoder.gate.wait_started("a3", 1);
    loading.cancel();
    decoder.gate.release("a3");
    // Cancelled while queued behind a held read.
    source.gate.hold("a1");
    let blocker = rt.request::<Blob>("a1", Priority::Normal).unwrap();
    source.gate.wait_started("a1", 1);
    let queued = rt.request::<Blob>("a2", Priority::Normal).unwrap();
    assert!(rt.sync(PATIENCE));
    queued.cancel();
    source.gate.release("a1");
    wait_decoded(&events, blocker.id());
    // Cancelled once decoded, waiting for its frame.
    let decoded = rt.request::<Blob>("a4", Priority::Normal).unwrap();
    wait_decoded(&events, decoded.id());
    assert!(rt.sync(PATIENCE));
    decoded.cancel();
    rt.shutdown();
    let terminal: Vec<(u64, String, Option<String>)> = log_of(&path)
        .into_iter()
        .filter(|r| matches!(r.event.as_str(), "published" | "failed" | "cancelled"))
        .map(|r| (r.request.unwrap(), r.event, r.stage))
        .collect();
    let expect = |h: u64, event: &str, stage: Option<&str>| {
        let found: Vec<_> = terminal.iter().filter(|t| t.0 == h).collect();
        assert_eq!(found.len(), 1, "request {h}: {found:?}");
        assert_eq!((found[0].1.as_str(), found[0].2.as_deref()), (event, stage), "request {h}");
    };
    expect(ready.id().0, "published", None);
    expect(failed.id().0, "failed", None);
    expect(loading.id().0, "cancelled", Some("loading"));
    expect(queued.id().0, "cancelled", Some("queued"));
    expect(decoded.id().0, "cancelled", Some("decoded"));
}

#[test]
fn a_decoded_event_carries_the_most_urgent_priority_of_the_requests_holding_the_load() {
    let source = GatedSource::with_blobs(1);
    source.gate.hold("a0");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b);
    let events = rt.subscribe(4096);
    let low = rt.request::<Blob>("a0", Priority::Low).unwrap();
    // Read, so in flight: the critical request joins the load, which keeps its place.
    source.gate.wait_started("a0", 1);
    let critical = rt.request::<Blob>("a0", Priority::Critical).unwrap();
    assert!(rt.sync(PATIENCE), "the cache took the second request in");
    source.gate.release("a0");
    let decoded = events.wait_for(PATIENCE, |e| e.kind == streamrt::messages::EventKind::Decoded);
    assert_eq!(decoded.expect("decoded").priority, Some(Priority::Critical));
    drop((low, critical));
}

#[test]
fn a_read_or_decode_that_panics_still_ends_its_workers_span_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    let source = GatedSource::default();
    source.put("readpanic", b"never read");
    source.put("broken", b"PANIC in the decoder");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate().telemetry_path(&path));
    for name in ["readpanic", "broken"] {
        let handle = rt.request::<Blob>(name, Priority::Normal).unwrap();
        assert!(handle.wait_timeout(PATIENCE).unwrap().is_err(), "{name} fails");
    }
    rt.shutdown();
    let log = log_of(&path);
    for (start, done) in [("read_started", "read_done"), ("decode_started", "decode_done")] {
        let generations = |event: &str| -> BTreeSet<u64> {
            log.iter().filter(|r| r.event == event).filter_map(|r| r.generation).collect()
        };
        let started = generations(start);
        assert!(!started.is_empty(), "a {start} in the log");
        assert_eq!(started, generations(done), "every {start} has its {done}");
    }
    let report = Report::from_records(&log);
    assert!(report.decode_utilisation > 0.0, "the panicked decode counts as busy");
}

#[test]
fn an_overflowing_sink_counts_drops_and_never_blocks_a_producer() {
    let source = GatedSource::with_blobs(200);
    let dir = tempfile::tempdir().unwrap();
    // A file reads the buffer, so events are buffered (and overflow it).
    let config = RuntimeConfig {
        events_buffered_max: 4,
        telemetry_flush_ms: 1_000,
        telemetry_sample_ms: 3_600_000,
        telemetry_path: Some(dir.path().join("run.jsonl")),
        ..Default::default()
    };
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.config(config));
    let handles: Vec<_> = (0..2_000)
        .map(|i| rt.request::<Blob>(&format!("a{}", i % 200), Priority::Normal).unwrap())
        .collect();
    for h in &handles {
        assert!(h.wait_timeout(PATIENCE).unwrap().is_ok());
    }
    // A publish wakes its waiters before it counts itself ready.
    assert!(rt.sync(PATIENCE));
    let status = rt.status();
    assert!(status.events_dropped > 0, "a 4-event buffer overflowed: {status:?}");
    assert_eq!(status.ready, 2_000);
    rt.shutdown();
    // The log's last sample, written at the sink's stop whatever the sampling period, past
    // the buffer it counts, tells the drops.
    let report = Report::from_records(&log_of(&dir.path().join("run.jsonl")));
    let dropped = rt.status().events_dropped;
    assert!(report.events_dropped > 0 && report.events_dropped <= dropped, "{report:?}");
}

#[test]
fn a_telemetry_file_that_cannot_be_written_is_said_so_and_its_events_counted_dropped() {
    let source = GatedSource::with_blobs(10);
    // Every write to /dev/full fails with "no space left on device".
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.telemetry_path("/dev/full"));
    let handles: Vec<_> =
        (0..10).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    for h in &handles {
        assert!(h.wait_timeout(PATIENCE).unwrap().is_ok(), "the runtime goes on");
    }
    assert!(rt.flush_telemetry(), "the sink answers");
    let error = rt.telemetry_error().expect("the failed write is reported");
    assert!(error.contains("space"), "{error}");
    let dropped = rt.status().events_dropped;
    assert!(dropped >= 10 * 3, "each request's events are counted lost: {dropped}");
    rt.shutdown();
}

#[test]
fn a_telemetry_pipe_no_one_reads_is_refused_and_a_stalled_one_holds_nothing_up_but_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("telemetry.fifo");
    named_pipe(&fifo);
    let source = GatedSource::with_blobs(2_000);
    // No reader: refused at once, not waited on (built on a thread of its own, so that a
    // build that waits fails the test rather than hanging it).
    let (unread, no_reader) = (source.clone(), fifo.clone());
    let refused = within_patience("the build returns", move || {
        let rt = Runtime::builder()
            .source(unread)
            .register(BlobDecoder::default())
            .telemetry_path(&no_reader)
            .build();
        rt.map(drop)
    });
    assert!(matches!(refused, Err(BuildError::Io(_))), "{refused:?}");
    // A reader that never reads: the pipe fills, and the sink's write blocks.
    let nonblocking_read = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK;
    let reader = rustix::fs::open(&fifo, nonblocking_read, rustix::fs::Mode::empty()).unwrap();
    let config = RuntimeConfig {
        shutdown_ack_ms_max: 100,
        telemetry_path: Some(fifo.clone()),
        ..RuntimeConfig::default()
    };
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.config(config));
    let handles: Vec<_> = (0..2_000)
        .map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap())
        .collect();
    for h in &handles {
        assert!(h.wait_timeout(PATIENCE).unwrap().is_ok(), "producers never wait on the sink");
    }
    // Their lines are far more than the pipe holds: the sink is stuck in its write for good.
    assert!(!rt.flush_telemetry(), "a sink stuck writing does not answer");
    // A subscription it cannot take says it ended, rather than missing the events meanwhile.
    let events = rt.subscribe(16);
    assert!(events.is_ended());
    assert!(events.next_timeout(PATIENCE).is_none());
    drop(handles);
    let error = within_patience("the shutdown returns, the sink left behind", move || {
        rt.shutdown();
        rt.telemetry_error()
    });
    let error = error.expect("a log cut short at shutdown is reported");
    assert!(error.contains("did not finish its last writes"), "{error}");
    // Its write then fails (no reader) and its thread ends.
    drop(reader);
}

#[test]
fn a_runtime_started_and_stopped_at_once_reports_its_configuration_and_nothing_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idle.jsonl");
    let source = GatedSource::with_blobs(0);
    let rt = runtime(&source, &BlobDecoder::default(), |b| {
        b.workers(2).queue_capacity(64).telemetry_path(&path)
    });
    rt.shutdown();
    let text = Report::from_records(&log_of(&path)).render();
    let first = text.lines().next().unwrap();
    assert_eq!(first, "worker_count=2 decode_threads=2 queue_capacity=64 in_flight=0");
}

#[test]
fn the_report_of_a_fixed_log_matches_its_snapshot() {
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/telemetry-v1.jsonl");
    let records = log_of(std::path::Path::new(fixture));
    let text = Report::from_records(&records).render();
    insta::with_settings!({
        snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots"),
        prepend_module_to_snapshot => false,
    }, {
        insta::assert_snapshot!("report_of_telemetry_v1_fixture", text);
    });
}

#[test]
fn a_load_raised_to_urgent_while_it_is_read_is_reported_decoded_on_its_io_worker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raised.jsonl");
    let source = GatedSource::with_blobs(1);
    source.gate.hold("a0");
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.telemetry_path(&path));
    let handle = raised_to_critical_while_read(&rt, &source);
    handle.wait_timeout(PATIENCE).unwrap().unwrap();
    rt.shutdown();
    let records = log_of(&path);
    let trace = report::chrome_trace(&records);
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    let track = |tid: &serde_json::Value| {
        let names = events.iter().filter(|e| e["name"] == "thread_name" && &e["tid"] == tid);
        names.map(|e| e["args"]["name"].as_str().unwrap().to_owned()).next()
    };
    let spans = |name: &str| -> Vec<_> {
        let spans = events.iter().filter(|e| e["ph"] == "X" && e["name"] == name);
        spans.map(|e| track(&e["tid"]).unwrap()).collect()
    };
    let (reads, decodes) = (spans("read"), spans("decode"));
    assert!(reads.len() == 1 && reads[0].starts_with("io-"), "{reads:?}");
    assert_eq!(decodes, reads, "dispatched normal, decoded on the IO worker that read it");
    let summary = Report::from_records(&records);
    assert_eq!(summary.decode_utilisation, 0.0, "no decode thread decoded it");
}

#[test]
fn the_chrome_trace_is_valid_json_with_trace_events_and_one_track_per_worker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trace.jsonl");
    let source = GatedSource::with_blobs(100);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.telemetry_path(&path));
    let handles: Vec<_> =
        (0..100).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    for h in &handles {
        assert!(h.wait_timeout(PATIENCE).unwrap().is_ok());
    }
    rt.shutdown();
    let records = log_of(&path);
    let text = serde_json::to_string(&report::chrome_trace(&records)).unwrap();
    let trace: serde_json::Value = serde_json::from_str(&text).unwrap();
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    let tracks: BTreeSet<(u64, String)> = events
        .iter()
        .filter(|e| e["name"] == "thread_name")
        .map(|e| (e["tid"].as_u64().unwrap(), e["args"]["name"].as_str().unwrap().to_owned()))
        .collect();
    let workers_in_log: BTreeSet<(String, u32)> = records
        .iter()
        .filter_map(|r| match r.event.as_str() {
            "read_started" => Some(("io".to_owned(), r.worker.unwrap())),
            "decode_started" => Some(("decode".to_owned(), r.worker.unwrap())),
            _ => None,
        })
        .collect();
    let named: BTreeSet<String> = tracks.iter().map(|t| t.1.clone()).collect();
    for (pool, worker) in &workers_in_log {
        assert!(named.contains(&format!("{pool}-{worker}")), "{pool}-{worker} has a track");
    }
    assert_eq!(tracks.len(), workers_in_log.len() + 1, "one per worker, plus the requests track");
    let spans = |name: &str| events.iter().filter(|e| e["ph"] == "X" && e["name"] == name).count();
    assert_eq!((spans("read"), spans("decode")), (100, 100));
    assert_eq!(events.iter().filter(|e| e["ph"] == "b").count(), 100, "an async span per request");
}

#[test]
fn a_malformed_log_line_is_a_typed_error_naming_the_line() {
    let log = "{\"v\":1,\"t_us\":0,\"frame\":0,\"event\":\"started\"}\nnot json\n";
    match report::read_log(log.as_bytes()) {
        Err(LogError::Malformed { line, .. }) => assert_eq!(line, 2),
        other => panic!("expected a malformed-line error, got {other:?}"),
    }
    let future = "{\"v\":2,\"t_us\":0,\"frame\":0,\"event\":\"started\"}\n";
    assert!(matches!(
        report::read_log(future.as_bytes()),
        Err(LogError::Malformed { line: 1, .. })
    ));
}

#[test]
fn events_are_buffered_only_while_something_reads_them() {
    let source = GatedSource::with_blobs(8);
    // A buffer of 4 that the sink never drains by itself: buffered events would overflow it.
    let config = RuntimeConfig {
        events_buffered_max: 4,
        telemetry_flush_ms: 3_600_000,
        ..RuntimeConfig::default()
    };
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.config(config).immediate());
    for i in 0..4 {
        let handle = rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap();
        assert!(handle.wait_timeout(PATIENCE).expect("terminal").is_ok());
    }
    assert_eq!(rt.status().events_dropped, 0, "no reader: nothing buffered, nothing dropped");
    let _events = rt.subscribe(4096);
    let a5 = rt.request::<Blob>("a5", Priority::Normal).unwrap();
    assert!(a5.wait_timeout(PATIENCE).expect("terminal").is_ok());
    assert!(rt.status().events_dropped > 0, "with a reader, one load's events overflow 4 slots");
}

#[test]
fn a_subscriber_that_does_not_read_loses_its_own_events_only_and_counts_them() {
    let source = GatedSource::with_blobs(20);
    // No samples: sent to every subscriber on a wall-clock timer, one between the two
    // subscriptions would reach one only.
    let config = RuntimeConfig { telemetry_sample_ms: 3_600_000, ..RuntimeConfig::default() };
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.config(config).immediate());
    let (unread, read) = (rt.subscribe(1), rt.subscribe(usize::MAX));
    let handles: Vec<_> =
        (0..20).map(|i| rt.request::<Blob>(&format!("a{i}"), Priority::Normal).unwrap()).collect();
    for h in &handles {
        assert!(h.wait_timeout(PATIENCE).unwrap().is_ok());
    }
    assert!(rt.sync(PATIENCE) && rt.flush_telemetry());
    let delivered = std::iter::from_fn(|| read.try_next()).count();
    assert!(delivered > 20, "the reader got every event: {delivered}");
    assert_eq!(read.dropped(), 0);
    // The one it held and the rest, dropped for it alone.
    assert_eq!(unread.dropped(), delivered as u64 - 1);
    assert_eq!(rt.status().events_dropped, 0, "the runtime lost nothing");
}

#[test]
fn a_subscription_with_events_off_is_ended_at_once() {
    let source = GatedSource::with_blobs(1);
    let config = RuntimeConfig { events_enabled: false, ..RuntimeConfig::default() };
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.config(config));
    let events = rt.subscribe(16);
    assert!(events.is_ended(), "no event would ever come");
    let handle = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    assert!(handle.wait_timeout(PATIENCE).unwrap().is_ok());
    assert!(rt.flush_telemetry());
    assert_eq!(events.try_next(), None);
}

#[test]
fn a_subscription_without_a_limit_reserves_nothing_and_delivers_every_event() {
    let source = GatedSource::with_blobs(1);
    let rt = runtime(&source, &BlobDecoder::default(), |b| b.immediate());
    let events = rt.subscribe(usize::MAX);
    let h = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    assert!(h.wait_timeout(PATIENCE).unwrap().is_ok());
    let published = events.wait_for(PATIENCE, |e| {
        e.kind == streamrt::messages::EventKind::Published && e.request == Some(h.id())
    });
    assert!(published.is_some(), "the feed delivers");
    assert_eq!(rt.status().events_dropped, 0);
}
