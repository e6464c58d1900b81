//! Replays of scripted sessions: their transcripts are snapshot-tested (`snapshots/`), each
//! test also asserts the behaviour it is named for, and the properties of replay itself.

mod mutations;
mod sessions;

use streamrt::messages::replay_log::LogPublish;
use streamrt::messages::{ErrorKind, LoadState, Priority};
use streamrt::replay::{replay, ReplayOptions, ReplayReport};
use streamrt_integration::Scenario;

/// Checks `text` against `snapshots/transcript_{name}.snap`.
fn snapshot(name: &str, text: &str) {
    insta::with_settings!({
        snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/../snapshots"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(format!("transcript_{name}"), text);
    });
}

/// Whether the transcript has `event` for `request`.
fn saw(report: &ReplayReport, event: &str, request: u64) -> bool {
    report.lines.iter().any(|l| l.event == event && l.request == Some(request))
}

/// The transcript's `event` lines, as (frame, request).
fn lines_of(report: &ReplayReport, event: &str) -> Vec<(u64, Option<u64>)> {
    report.lines.iter().filter(|l| l.event == event).map(|l| (l.frame, l.request)).collect()
}

#[test]
fn cold_start_reads_decodes_and_publishes_at_the_next_frame() {
    let mut s = Scenario::new();
    let ids = [("blob:a", Priority::High), ("blob:b", Priority::Normal), ("blob:c", Priority::Low)]
        .map(|(k, p)| s.request(k, p));
    s.load("blob:a", 10).load("blob:b", 20).load("blob:c", 30).frame().shutdown();
    let (text, report) = s.transcript();
    snapshot("cold_start", &text);
    assert_eq!(lines_of(&report, "published").len(), 3);
    assert!(ids.iter().all(|&id| saw(&report, "decoded", id) && saw(&report, "published", id)));
    // Decoded in frame 0, published at the boundary that starts frame 1.
    assert!(lines_of(&report, "published").iter().all(|&(frame, _)| frame == 1));
}

#[test]
fn cancel_before_dispatch_never_reads() {
    let mut s = Scenario::new();
    s.config.reads_in_flight = 1;
    let a = s.request("blob:a", Priority::Normal);
    let b = s.request("blob:b", Priority::Normal);
    s.cancel(b).load("blob:a", 10).frame().shutdown();
    let (text, report) = s.transcript();
    snapshot("cancel_before_dispatch", &text);
    assert!(saw(&report, "published", a));
    assert!(!saw(&report, "dispatched", b) && !saw(&report, "read_started", b));
    assert!(report
        .lines
        .iter()
        .any(|l| l.request == Some(b) && l.state == "cancelled while queued"));
}

#[test]
fn cancel_after_decode_never_binds() {
    let mut s = Scenario::new();
    let a = s.request("blob:a", Priority::Normal);
    s.load("blob:a", 10).cancel(a).frame().shutdown();
    let (text, report) = s.transcript();
    snapshot("cancel_after_decode", &text);
    assert!(saw(&report, "decoded", a) && !saw(&report, "published", a));
    assert!(report
        .lines
        .iter()
        .any(|l| l.request == Some(a) && l.state == "cancelled while decoded"));
}

#[test]
fn an_immediate_publish_that_lost_to_the_engines_cancel_is_not_replayed() {
    let mut s = Scenario::new();
    s.config.publish = LogPublish::Immediate;
    // `a` was decoded, then cancelled before its publish; `b` was published, then cancelled.
    let a = s.request("blob:a", Priority::Normal);
    s.load("blob:a", 4).cancel(a).ended(a, LoadState::Cancelled);
    let b = s.request("blob:b", Priority::Normal);
    s.load("blob:b", 4).publishing(&[b]).ended(b, LoadState::Ready).cancel(b);
    s.shutdown();
    let report = s.replay_with(2);
    assert!(report.divergence.is_none(), "{:?}", report.divergence);
    assert!(saw(&report, "decoded", a) && !saw(&report, "published", a));
    assert!(saw(&report, "published", b));
}

#[test]
fn an_end_that_raced_the_recorded_shutdown_is_not_held_against_the_replay() {
    let mut s = Scenario::new();
    let [a, b, c] = ["blob:a", "blob:b", "blob:c"].map(|k| s.request(k, Priority::Normal));
    s.load("blob:b", 4).frame_publishing(&[b]).ended(b, LoadState::Ready);
    // The engine's cancel of `a` came after the shutdown's record, before its stop failed `a`
    // (a cancel records the end, then the release); so did `c`'s load and (as in immediate
    // mode) its publish.
    s.shutdown().ended(a, LoadState::Cancelled).cancel(a);
    s.load("blob:c", 4).ended(c, LoadState::Ready);
    let report = s.replay_with(2);
    assert!(report.divergence.is_none(), "{:?}", report.divergence);
    assert_eq!(report.checked, 1, "only `b`'s end is checked");
    // A request that ended before the shutdown is checked, whenever its handle went.
    let mut s = Scenario::new();
    let a = s.request("blob:a", Priority::Normal);
    s.ended(a, LoadState::Ready).shutdown().cancel(a);
    let divergence = s.replay_with(2).divergence.expect("`a` never became ready here");
    assert_eq!((divergence.request, divergence.recorded), (a, LoadState::Ready));
}

#[test]
fn a_version_3_immediate_log_publishes_as_each_request_decodes() {
    let mut s = Scenario::new();
    s.config.publish = LogPublish::Immediate;
    let a = s.request("blob:a", Priority::Normal);
    // A frame, recorded in version 3 as in a threaded run's: its empty publish list first.
    s.load("blob:a", 4).ended(a, LoadState::Ready).frame_publishing(&[]).shutdown();
    let mut log = s.log();
    log[8..10].copy_from_slice(&3u16.to_le_bytes());
    let report = replay(&log, ReplayOptions::default()).unwrap();
    assert!(report.divergence.is_none(), "{:?}", report.divergence);
    assert!(saw(&report, "published", a), "no Published record needed before version 4");
}

#[test]
fn a_frame_publishes_what_its_recording_published_so_a_later_cancel_still_lands() {
    let mut s = Scenario::new();
    let a = s.request("blob:a", Priority::High);
    let b = s.request("blob:b", Priority::Normal);
    // Both decoded, but the recorded frame published only `b`: `a` reached the threaded run's
    // frame coordinator after the frame began, and the engine cancelled it before the next.
    s.load("blob:a", 10).load("blob:b", 10).frame_publishing(&[b]).ended(b, LoadState::Ready);
    s.cancel(a).ended(a, LoadState::Cancelled).frame_publishing(&[]).shutdown();
    let report = s.replay_with(1);
    assert!(report.divergence.is_none(), "{:?}", report.divergence);
    assert!(saw(&report, "published", b) && !saw(&report, "published", a));
}

#[test]
fn a_request_recorded_published_before_the_replay_staged_it_is_published_at_the_next_frame() {
    let mut s = Scenario::new();
    let a = s.request("blob:a", Priority::Normal);
    // The recording dispatched `a` sooner than the replay does; here its decode comes after.
    s.frame_publishing(&[a]).ended(a, LoadState::Ready).load("blob:a", 10);
    s.frame_publishing(&[]).shutdown();
    let report = s.replay_with(1);
    assert!(report.divergence.is_none(), "{:?}", report.divergence);
    assert!(saw(&report, "published", a));
}

#[test]
fn two_holders_share_one_load_and_one_cancel_leaves_the_other() {
    let mut s = Scenario::new();
    let first = s.request("blob:a", Priority::Normal);
    let second = s.request("blob:a", Priority::High);
    s.cancel(first).load("blob:a", 10).frame().shutdown();
    let (text, report) = s.transcript();
    snapshot("two_holders_one_cancels", &text);
    assert_eq!(lines_of(&report, "read_started").len(), 1, "one load for both holders");
    assert!(saw(&report, "cancelled", first) && saw(&report, "published", second));
}

#[test]
fn a_reprioritise_storm_dispatches_by_each_loads_priority_at_the_time() {
    let mut s = Scenario::new();
    s.config.reads_in_flight = 1;
    let keys = ["blob:k1", "blob:k2", "blob:k3", "blob:k4", "blob:k5"];
    let ids: Vec<u64> = keys.iter().map(|k| s.request(k, Priority::Low)).collect();
    s.reprioritize(ids[1], Priority::Critical).reprioritize(ids[4], Priority::Low);
    s.reprioritize(ids[2], Priority::High).reprioritize(ids[1], Priority::Background);
    s.reprioritize(ids[4], Priority::Critical).reprioritize(ids[3], Priority::High);
    s.reprioritize(ids[2], Priority::Normal);
    for k in keys {
        s.load(k, 8);
    }
    s.frame().shutdown();
    let (text, report) = s.transcript();
    snapshot("reprioritise_storm", &text);
    let dispatched: Vec<Option<u64>> =
        lines_of(&report, "dispatched").iter().map(|l| l.1).collect();
    // k1 was dispatched before the storm, and took the one read credit. k2, Critical for a
    // moment, was dispatched then, on the credit kept for urgent loads; moving it back to
    // Background cannot call back a dispatched load. The rest by their final priorities:
    // Critical k5, High k4, Normal k3 — not the order they were requested in.
    let expect = [0, 1, 4, 3, 2].map(|i| Some(ids[i]));
    assert_eq!(dispatched, expect);
}

#[test]
fn an_io_failure_is_retried_and_the_retry_succeeds() {
    let mut s = Scenario::new();
    let a = s.request("blob:a", Priority::Normal);
    s.read_fails("blob:a", ErrorKind::Io("disk hiccup".into())).retry_due("blob:a");
    s.load("blob:a", 10).frame().shutdown();
    let (text, report) = s.transcript();
    snapshot("io_failure_retry_success", &text);
    assert!(saw(&report, "retried", a) && saw(&report, "published", a));
    assert_eq!(lines_of(&report, "read_started").len(), 2);
}

#[test]
fn a_load_reprioritised_while_it_is_read_is_retried_at_its_new_priority() {
    let mut s = Scenario::new();
    s.config.reads_in_flight = 1;
    let a = s.request("blob:a", Priority::Low);
    let b = s.request("blob:b", Priority::Normal);
    let c = s.request("blob:c", Priority::Normal);
    // `a` took the one read credit; raised now, only its retry can move in the queue.
    s.reprioritize(a, Priority::Critical);
    s.read_fails("blob:a", ErrorKind::Io("disk hiccup".into())).retry_due("blob:a");
    s.load("blob:a", 10);
    s.load("blob:b", 10).load("blob:c", 10).frame().shutdown();
    let (text, report) = s.transcript();
    snapshot("retry_at_new_priority", &text);
    let dispatched: Vec<Option<u64>> =
        lines_of(&report, "dispatched").iter().map(|l| l.1).collect();
    let retry = dispatched.iter().rposition(|&r| r == Some(a)).expect("a is retried");
    let of_c = dispatched.iter().position(|&r| r == Some(c)).expect("c is dispatched");
    assert!(retry < of_c, "the Critical retry waited behind Normal c: {dispatched:?} (b={b:?})");
    assert!(saw(&report, "published", a));
}

#[test]
fn a_panicking_decoder_restarts_its_worker_then_the_key_is_quarantined() {
    let mut s = Scenario::new();
    s.config.panics_max = 2;
    let a = s.request("blob:a", Priority::Normal);
    s.read("blob:a", 10).decode_panics("blob:a", "bad header").retry_due("blob:a");
    s.read("blob:a", 10).decode_panics("blob:a", "bad header");
    let again = s.request("blob:a", Priority::Normal);
    s.frame().shutdown();
    let (text, report) = s.transcript();
    snapshot("decoder_panic_restart_quarantine", &text);
    assert_eq!(lines_of(&report, "restarted").len(), 2, "the decode worker rebuilt twice");
    assert!(saw(&report, "quarantined", a) && saw(&report, "failed", a));
    let refused = report.lines.iter().find(|l| l.request == Some(again) && l.event == "failed");
    assert!(refused.is_some_and(|l| l.state.contains("quarantined")), "{refused:?}");
    assert!(!saw(&report, "read_started", again));
}

#[test]
fn a_session_recorded_with_an_adaptive_budget_starting_at_zero_replays() {
    // An adaptive policy may start at a count of 0 (raised to its minimum); its log records
    // that 0, and the replay's count budget must still publish.
    let mut s = Scenario::new().frame_budget(0);
    let a = s.request("blob:a", Priority::Normal);
    s.load("blob:a", 10).frame().ended(a, streamrt::LoadState::Ready);
    s.shutdown();
    let (_, report) = s.transcript();
    assert!(report.divergence.is_none(), "{:?}", report.divergence);
    assert!(saw(&report, "published", a));
}

#[test]
fn a_decode_that_works_starts_a_keys_panic_count_again() {
    let mut s = Scenario::new();
    s.config.panics_max = 2;
    // Nothing stays resident, so the second request reads and decodes again.
    s.config.bytes_resident_max = 0;
    let first = s.request("blob:a", Priority::Normal);
    s.read("blob:a", 10).decode_panics("blob:a", "bad header").retry_due("blob:a");
    s.load("blob:a", 10).frame().ended(first, streamrt::LoadState::Ready).cancel(first);
    let second = s.request("blob:a", Priority::Normal);
    s.read("blob:a", 10).decode_panics("blob:a", "bad header").retry_due("blob:a");
    s.load("blob:a", 10).frame().ended(second, streamrt::LoadState::Ready);
    s.shutdown();
    let (_, report) = s.transcript();
    assert!(report.divergence.is_none(), "{:?}", report.divergence);
    assert!(!saw(&report, "quarantined", second), "one panic in a row after a decode that worked");
    assert!(saw(&report, "published", second));
}

#[test]
fn a_failed_dependency_fails_its_dependent() {
    let mut s = Scenario::new();
    let mesh = s.request_with_deps("mesh:m", &["texture:t"], Priority::Normal);
    s.read_fails("texture:t", ErrorKind::NotFound).load("mesh:m", 40).frame().shutdown();
    let (text, report) = s.transcript();
    snapshot("failed_dependency", &text);
    let failed = report.lines.iter().find(|l| l.request == Some(mesh) && l.event == "failed");
    assert!(failed.is_some_and(|l| l.state.contains("texture:t")), "{failed:?}");
    assert!(saw(&report, "failed", mesh + 1) && !saw(&report, "published", mesh));
    // Failed, the mesh lets go of its own load, which is dropped before it is read.
    assert!(!saw(&report, "read_started", mesh));
}

#[test]
fn the_publish_budget_spreads_ready_requests_over_frames() {
    let mut s = Scenario::new().frame_budget(2);
    let keys = ["blob:p1", "blob:p2", "blob:p3", "blob:p4", "blob:p5"];
    for k in keys {
        s.request(k, Priority::Normal);
    }
    for k in keys {
        s.load(k, 4);
    }
    s.frame().frame().frame().shutdown();
    let (text, report) = s.transcript();
    snapshot("publish_budget_limiting", &text);
    let frames: Vec<u64> = lines_of(&report, "published").iter().map(|l| l.0).collect();
    assert_eq!(frames, vec![1, 1, 2, 2, 3]);
}

#[test]
fn a_full_queue_fails_the_loads_past_its_capacity() {
    let mut s = Scenario::new();
    s.config.reads_in_flight = 1;
    s.config.queue_capacity = 2;
    let ids: Vec<u64> = ["blob:q1", "blob:q2", "blob:q3", "blob:q4", "blob:q5"]
        .iter()
        .map(|k| s.request(k, Priority::Normal))
        .collect();
    s.frame().shutdown();
    let (text, report) = s.transcript();
    snapshot("queue_full", &text);
    let full: Vec<u64> = report
        .lines
        .iter()
        .filter(|l| l.event == "failed" && l.state.contains("queue full"))
        .filter_map(|l| l.request)
        .collect();
    assert_eq!(full, ids[3..].to_vec());
}

#[test]
fn shutdown_in_flight_fails_every_request_with_shutdown() {
    let mut s = Scenario::new();
    let a = s.request("blob:a", Priority::Normal);
    let b = s.request("blob:b", Priority::Normal);
    s.read("blob:a", 10).shutdown();
    let (text, report) = s.transcript();
    snapshot("shutdown_in_flight", &text);
    for id in [a, b] {
        let line = report.lines.iter().find(|l| l.request == Some(id) && l.event == "failed");
        assert!(line.is_some_and(|l| l.state.contains("shut down")), "{line:?}");
    }
}

#[test]
fn eviction_under_the_memory_budget_drops_the_least_recently_used() {
    let mut s = Scenario::new();
    s.config.bytes_resident_max = 250;
    let a = s.request("blob:a", Priority::Normal);
    let b = s.request("blob:b", Priority::Normal);
    s.load("blob:a", 100).load("blob:b", 100).frame().cancel(a).cancel(b);
    let c = s.request("blob:c", Priority::Normal);
    s.load("blob:c", 100).frame();
    let again = s.request("blob:a", Priority::Normal);
    s.load("blob:a", 100).frame().shutdown();
    let (text, report) = s.transcript();
    snapshot("eviction_under_memory_budget", &text);
    let evicted: Vec<&str> = report
        .lines
        .iter()
        .filter(|l| l.event == "evicted")
        .filter_map(|l| l.key.as_deref())
        .collect();
    assert_eq!(evicted.first(), Some(&"blob:a"), "the least recently used goes first");
    assert!(saw(&report, "published", c) && saw(&report, "read_started", again));
    assert!(report.divergence.is_none());
}
