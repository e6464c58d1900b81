//! Replay as a whole: random sessions replay identically with any worker count, a session
//! recorded from a real multi-threaded run replays to the recorded terminal states, and a
//! replay that differs names where.

use std::sync::Arc;

use streamrt::messages::replay_log::{read_log, DecodeOutcome, LogPublish, LogRecord};
use streamrt::messages::{AssetKey, ErrorKind, LoadState, Priority};
use streamrt::replay::{replay, ReplayOptions};
use streamrt::{
    EntryInfo, FramePolicy, Locator, PublishMode, ReadyError, Runtime, RuntimeConfig, Source,
    SourceError, PANIC_MESSAGE_BYTES_MAX,
};
use streamrt_integration::{
    blob_key, Blob, BlobDecoder, GatedSource, HookedWants, Rng, Scenario, PATIENCE,
};

/// A random session of 40 steps over a few keys: requests (one with a dependency), cancels,
/// reprioritisations, frames, and reads and decodes that succeed, fail or panic.
fn random_session(seed: u64) -> Scenario {
    let mut rng = Rng::new(seed);
    let mut s = Scenario::new().frame_budget(3);
    s.config.reads_in_flight = 1 + rng.below(3);
    let keys = ["blob:a", "blob:b", "blob:c", "blob:d", "mesh:m", "texture:t"];
    let mut ids = Vec::new();
    for _ in 0..40 {
        let key = keys[rng.below(keys.len() as u64) as usize];
        let priority = Priority::ALL[rng.below(5) as usize];
        match rng.below(10) {
            0 | 1 if key == "mesh:m" => {
                ids.push(s.request_with_deps(key, &["texture:t"], priority))
            }
            0 | 1 => ids.push(s.request(key, priority)),
            2 if !ids.is_empty() => {
                s.cancel(ids[rng.below(ids.len() as u64) as usize]);
            }
            3 if !ids.is_empty() => {
                s.reprioritize(ids[rng.below(ids.len() as u64) as usize], priority);
            }
            4 => {
                s.frame();
            }
            5 => {
                s.read_fails(key, ErrorKind::Io("flaky".into())).retry_due(key);
            }
            6 => {
                s.decode_panics(key, "seeded panic").retry_due(key);
            }
            _ => {
                s.load(key, 1 + rng.below(64));
            }
        }
    }
    s.frame().shutdown();
    s
}

#[test]
fn a_hundred_random_sessions_replay_to_identical_hashes_whatever_worker_count_the_log_names() {
    let mut distinct = std::collections::HashSet::new();
    for seed in 0..100 {
        let session = random_session(seed);
        let first = session.replay_with(2);
        let again = session.replay_with(2);
        assert_eq!(first.lines, again.lines, "seed {seed}: two replays differ");
        assert_eq!(first.hash, again.hash);
        // The recorded run's worker count is in the log for the record only: a replay runs
        // one virtual worker, so a log naming another count replays the same.
        for workers in [1, 8] {
            let other = session.replay_with(workers);
            assert_eq!(other.hash, first.hash, "seed {seed}: {workers} workers change the hash");
        }
        distinct.insert(first.hash);
    }
    // The sessions really differ, so equal hashes above are not an accident of a constant.
    assert!(distinct.len() > 90, "only {} distinct hashes", distinct.len());
}

/// The replay of the log in `bytes`, which must end every request as its recording did.
fn replayed_as_recorded(bytes: &[u8]) -> streamrt::replay::ReplayReport {
    let report = replay(bytes, ReplayOptions::default()).unwrap();
    assert!(report.divergence.is_none(), "{:?}", report.divergence);
    report
}

/// What the source said of `k`: depends on `deps`, size unknown.
fn entry(k: &str, deps: &[&str]) -> LogRecord {
    LogRecord::Entry {
        key: streamrt_integration::key(k),
        dependencies: deps.iter().map(|d| streamrt_integration::key(d)).collect(),
        size: None,
    }
}

/// The engine's request `id` for `k`, at `Normal`.
fn request(id: u64, k: &str) -> LogRecord {
    LogRecord::Request { id, key: streamrt_integration::key(k), priority: Priority::Normal }
}

/// A threaded runtime of `config` over `source`, recording to `log`.
fn recorded(config: RuntimeConfig, source: impl Source, log: &std::path::Path) -> Runtime {
    Runtime::builder()
        .config(config)
        .source(source)
        .register(BlobDecoder::default())
        .record(log, "integration test")
        .build()
        .unwrap()
}

#[test]
fn a_session_recorded_from_a_threaded_run_replays_to_the_recorded_terminal_states() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("session.log");
    let source = GatedSource::default();
    // Some reads fail once (`flaky`), some bytes fail to decode (`BAD`) or panic (`PANIC`).
    let path = |i: usize| if i % 7 == 3 { format!("flaky{i}") } else { format!("r{i}") };
    for i in 0..40 {
        let bytes = match i % 9 {
            4 => b"BAD".to_vec(),
            6 => b"PANIC".to_vec(),
            _ => vec![i as u8; 64],
        };
        source.put(&path(i), &bytes);
    }
    let config = RuntimeConfig {
        workers: 3,
        publish: PublishMode::Frames(FramePolicy::count(5)),
        ..RuntimeConfig::default()
    };
    let rt = recorded(config, source, &log);
    let handles: Vec<_> = (0..40)
        .map(|i| rt.request_key::<Blob>(blob_key(&path(i)), Priority::ALL[i % 5]).unwrap())
        .collect();
    handles[7].cancel();
    handles[12].reprioritize(Priority::Critical);
    // Five a frame: 40 requests end within 8 frames, or some never will.
    for frame in 0.. {
        if handles.iter().all(|h| h.is_terminal()) {
            break;
        }
        assert!(frame < 40, "requests still waiting after {frame} frames");
        rt.begin_frame();
        rt.end_frame();
        // Everything decoded or ended: the next boundary publishes the next five.
        assert!(streamrt::wait_loaded(&handles, PATIENCE));
    }
    rt.shutdown();
    let bytes = std::fs::read(&log).unwrap();
    let report = replayed_as_recorded(&bytes);
    assert_eq!(report.checked, 40);
    // But one read, at most: the cancelled request's, should it end as the cancel is logged
    // and before its cache marks the load cancelled (the window `cache/recording.rs` names).
    assert!(report.unused_outcomes <= 1, "{} outcomes left", report.unused_outcomes);
    let (_, records) = read_log(&bytes).unwrap();
    let due = records.iter().filter(|(_, r)| matches!(r, LogRecord::RetryDue { .. })).count();
    let retried = report.lines.iter().filter(|l| l.event == "retried").count();
    assert!(due > 0 && due <= retried, "each retry's due time is recorded: {due} of {retried}");
    let failed = report.lines.iter().filter(|l| l.event == "failed").count();
    assert_eq!(failed, handles.iter().filter(|h| h.state() == LoadState::Failed).count());
    assert!(report.lines.iter().any(|l| l.event == "retried"), "the flaky reads were replayed");
}

#[test]
fn a_load_cancelled_while_its_read_waits_for_an_outcome_gives_its_one_credit_back() {
    // One read credit, taken by `a`, whose read the recording never saw end: cancelled, its
    // job must still run (to be dropped) for `b` to be read.
    let mut s = Scenario::new();
    s.config.reads_in_flight = 1;
    let a = s.request("blob:a", Priority::Normal);
    s.cancel(a);
    let b = s.request("blob:b", Priority::Normal);
    s.load("blob:b", 10).frame_publishing(&[b]);
    s.ended(a, LoadState::Cancelled).ended(b, LoadState::Ready).shutdown();
    assert_eq!(replayed_as_recorded(&s.log()).checked, 2);
}

#[test]
fn recorded_outcomes_no_load_took_are_counted_though_every_request_ends_as_recorded() {
    let mut s = Scenario::new();
    let a = s.request("blob:a", Priority::Normal);
    // `b`'s read and decode, for a load the inputs never make.
    s.load("blob:a", 10).load("blob:b", 10).frame();
    s.ended(a, LoadState::Ready).shutdown();
    let report = s.replay_with(2);
    assert_eq!((report.divergence, report.checked), (None, 1));
    assert_eq!(report.unused_outcomes, 2, "b's read and decode");
}

#[test]
fn a_retry_is_queued_where_its_recording_says_it_came_due_not_once_the_replay_is_idle() {
    // One read credit. `a`'s read fails and `a` waits out a second's backoff; meanwhile `b` is
    // requested, loaded and published, then let go; then `a` is retried. A replay that queued
    // the retry as soon as nothing else could move gave it the one credit ahead of `b`, which
    // the cancel then found not yet published.
    let session = |due_recorded: bool| {
        let mut s = Scenario::new();
        s.config.reads_in_flight = 1;
        s.config.retry_backoff_ms = (1_000, 1_000);
        let a = s.request("blob:a", Priority::Normal);
        s.read_fails("blob:a", ErrorKind::Io("flaky".into()));
        let b = s.request("blob:b", Priority::Normal);
        s.load("blob:b", 10).frame_publishing(&[b]).ended(b, LoadState::Ready).cancel(b);
        if due_recorded {
            s.retry_due("blob:a");
        }
        s.load("blob:a", 10).frame_publishing(&[a]).ended(a, LoadState::Ready).shutdown();
        s.log()
    };
    assert_eq!(replayed_as_recorded(&session(true)).checked, 2);
    // A version 7 log has no due times: its replay retries once idle, and `b` ends cancelled.
    let mut older = session(false);
    older[8..10].copy_from_slice(&7u16.to_le_bytes());
    let divergence = replay(&older, ReplayOptions::default()).unwrap().divergence;
    assert_eq!(divergence.map(|d| (d.request, d.replayed)), Some((2, Some(LoadState::Cancelled))));
}

#[test]
fn a_replay_that_differs_from_its_recording_names_the_first_divergent_event() {
    let mut s = Scenario::new();
    let a = s.request("blob:a", Priority::Normal);
    let b = s.request("blob:b", Priority::Normal);
    s.load("blob:a", 10).load("blob:b", 10).frame();
    // The recording claims b was cancelled, but nothing in the inputs cancels it.
    s.ended(a, LoadState::Ready).ended(b, LoadState::Cancelled).shutdown();
    let report = s.replay_with(2);
    let divergence = report.divergence.expect("b's end differs");
    assert_eq!((divergence.request, divergence.recorded), (b, LoadState::Cancelled));
    assert_eq!(divergence.replayed, Some(LoadState::Ready));
    let line = &report.lines[divergence.event];
    assert_eq!((line.event, line.request), ("published", Some(b)));
    assert!(divergence.to_string().contains("request r2 ended cancelled in the recording"));
    assert_eq!(report.checked, 1, "a ended as recorded before it; nothing after it is counted");
}

#[test]
fn recorded_ends_are_checked_against_the_requests_they_name_whatever_their_ids() {
    // A log whose ids are not the replay's: `blob:a` was r2 in the recording, `blob:b` r1;
    // the replay gives `a` r1 and `b` r2. `a` loads, `b` is not found.
    let session = |a_ended: LoadState, b_ended: LoadState| {
        let mut s = Scenario::new();
        s.request_as(2, "blob:a", Priority::Normal).request_as(1, "blob:b", Priority::Normal);
        s.load("blob:a", 10).read_fails("blob:b", ErrorKind::NotFound).frame();
        s.ended(2, a_ended).ended(1, b_ended).shutdown();
        s.replay_with(2)
    };
    let faithful = session(LoadState::Ready, LoadState::Failed);
    assert_eq!(faithful.divergence, None, "a ready and b failed, as recorded");
    let swapped = session(LoadState::Failed, LoadState::Ready);
    let divergence = swapped.divergence.expect("the recording says a failed and b was ready");
    // `b` fails (r2 in the replay) before the frame that publishes `a`.
    assert_eq!((divergence.request, divergence.recorded), (2, LoadState::Ready));
    assert_eq!(divergence.replayed, Some(LoadState::Failed));
}

#[test]
fn a_log_cut_between_a_frames_publishes_and_its_own_record_replays_without_divergence() {
    // `begin_frame` records what it published before its own record: a log cut between the
    // two holds `a`'s end, but not the frame that published it.
    let mut s = Scenario::new();
    let a = s.request("blob:a", Priority::Normal);
    s.load("blob:a", 10).ended(a, LoadState::Ready);
    let report = s.replay_with(2);
    assert!(!report.complete);
    assert_eq!(report.divergence, None, "a's end is unknown where the log stops");
}

#[test]
fn a_log_cut_short_still_shows_a_divergence_recorded_before_its_last_frame() {
    // The recording says `x` was ready before two frames; in the replay its bytes come only
    // after them, so it is never published, and the log stops there.
    let mut s = Scenario::new();
    let x = s.request("blob:x", Priority::Normal);
    s.ended(x, LoadState::Ready).frame().frame();
    s.load("blob:x", 10);
    let report = s.replay_with(2);
    assert!(!report.complete);
    let divergence = report.divergence.expect("x's end was recorded before the last frame");
    assert_eq!((divergence.request, divergence.recorded), (x, LoadState::Ready));
    assert_eq!(divergence.replayed, None, "only the replay's shutdown failed it");
}

#[test]
fn a_cut_short_immediate_log_still_shows_a_divergence_recorded_before_its_last_publish() {
    // A daemon's log (no frames) killed mid-session, with `a`'s read record lost: the
    // recording saw `a` fail, then published `b`; the replay's `a` waits for its read until
    // the replay's own shutdown fails it.
    let mut s = Scenario::new();
    s.config.publish = LogPublish::Immediate;
    let a = s.request("blob:a", Priority::Normal);
    s.ended(a, LoadState::Failed);
    let b = s.request("blob:b", Priority::Normal);
    s.load("blob:b", 4).ended(b, LoadState::Ready).publishing(&[b]);
    let report = s.replay_with(2);
    assert!(!report.complete);
    let divergence = report.divergence.expect("a's end was recorded before the last publish");
    assert_eq!((divergence.request, divergence.recorded), (a, LoadState::Failed));
    assert_eq!(divergence.replayed, None, "only the replay's shutdown failed it");
}

#[test]
fn a_load_left_waiting_for_an_outcome_the_log_lacks_diverges_even_when_recorded_failed() {
    // The recording saw `a` fail before its shutdown; the log holds no read for it, so the
    // replay's load waits until the replay's shutdown fails it. Both say `failed`, but only
    // the shutdown ended it here.
    let mut s = Scenario::new();
    let a = s.request("blob:a", Priority::Normal);
    s.ended(a, LoadState::Failed).shutdown();
    let report = s.replay_with(2);
    assert!(report.complete);
    let divergence = report.divergence.expect("a never ended before the shutdown");
    assert_eq!((divergence.request, divergence.recorded), (a, LoadState::Failed));
    assert_eq!(divergence.replayed, None);
}

#[test]
fn a_log_cut_short_excuses_a_recorded_publish_the_replay_staged_after_its_last_frame() {
    // The recording published `x` at its one frame (its end comes first, as `begin_frame`
    // records it); the replay stages `x` only after that frame, and the log stops there. The
    // repeated and unknown ids are a damaged log's, and are dropped.
    let mut s = Scenario::new();
    let x = s.request("blob:x", Priority::Normal);
    s.ended(x, LoadState::Ready).frame_publishing(&[x, x, 999]).load("blob:x", 10);
    let report = s.replay_with(2);
    assert!(!report.complete);
    assert_eq!(report.divergence, None, "x would have been published at the next frame");
    assert_eq!(report.checked, 0, "x's end is excused");
}

#[test]
fn an_end_recorded_before_its_request_is_checked_under_the_replays_id() {
    // `b` (r1 in the recording, r2 in the replay) ended before its own request's record, as a
    // request failed while it is being made is recorded.
    let session = |b_ended: LoadState| {
        let mut s = Scenario::new();
        s.request_as(2, "blob:a", Priority::Normal).ended(1, b_ended);
        s.request_as(1, "blob:b", Priority::Normal);
        s.load("blob:a", 10).read_fails("blob:b", ErrorKind::NotFound).frame();
        s.ended(2, LoadState::Ready).shutdown();
        s.replay_with(2)
    };
    assert_eq!(session(LoadState::Failed).divergence, None);
    let divergence = session(LoadState::Ready).divergence.expect("b failed in the replay");
    assert_eq!((divergence.request, divergence.recorded), (2, LoadState::Ready));
}

#[test]
fn a_recorded_source_panic_replays_as_the_same_lost_reads() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("session.log");
    let rt = recorded(RuntimeConfig::default(), GatedSource::with_blobs(1), &log);
    let boom = rt.request::<Blob>("readpanic/x", Priority::Normal).unwrap();
    let fine = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    assert!(boom.wait_timeout(PATIENCE).unwrap().is_err(), "every read of it panicked");
    assert!(fine.wait_timeout(PATIENCE).unwrap().is_ok());
    rt.shutdown();
    let report = replayed_as_recorded(&std::fs::read(&log).unwrap());
    assert_eq!(report.checked, 2);
    let attempts = streamrt::RetryPolicy::default().attempts_max as usize;
    let restarts = report.lines.iter().filter(|l| l.event == "restarted").count();
    assert_eq!(restarts, attempts, "each replayed read panicked and lost its worker");
}

#[test]
fn a_version_4_log_replays_the_dependencies_its_recorder_requested_past_a_failed_one() {
    // `root` depends on `bad`, whose own dependency has no decoder, then on `m0` and `m1`. A
    // version 4 recorder walked on past `bad`: `m0` and `m1` took ids 3 and 4 and were
    // released at once. `z`, requested next, took id 5.
    let mut s = Scenario::new();
    s.record(entry("blob:bad", &["sound:x"])).record(entry("blob:m0", &[]));
    s.record(entry("blob:m1", &[]));
    s.record(entry("blob:root", &["blob:bad", "blob:m0", "blob:m1"]))
        .record(request(1, "blob:root"));
    s.ended(2, LoadState::Failed).ended(1, LoadState::Failed);
    s.ended(3, LoadState::Cancelled).ended(4, LoadState::Cancelled);
    s.record(entry("blob:z", &[])).record(request(5, "blob:z"));
    s.load("blob:z", 10).frame_publishing(&[5]).ended(5, LoadState::Ready).shutdown();
    let mut log = s.log();
    log[8..10].copy_from_slice(&4u16.to_le_bytes());
    let report = replayed_as_recorded(&log);
    assert_eq!(report.checked, 5);
}

#[test]
fn a_version_5_log_replays_a_dependency_shared_in_a_tree_as_the_two_requests_it_recorded() {
    // `root` depends on `m1` and `m2`, which both depend on `s`, then on `bad`, whose own
    // dependency has no decoder. A version 5 recorder requested `s` once for each: ids 3 and
    // 5, and `bad` 6; `z`, requested next, took id 7 (6 from version 6 on).
    let mut s = Scenario::new();
    s.record(entry("blob:m1", &["blob:s"])).record(entry("blob:s", &[]));
    s.record(entry("blob:m2", &["blob:s"])).record(entry("blob:s", &[]));
    s.record(entry("blob:bad", &["sound:x"]));
    s.record(entry("blob:root", &["blob:m1", "blob:m2", "blob:bad"]))
        .record(request(1, "blob:root"));
    s.ended(6, LoadState::Failed).ended(1, LoadState::Failed);
    for id in 2..=5 {
        s.ended(id, LoadState::Cancelled);
    }
    s.record(entry("blob:z", &[])).record(request(7, "blob:z"));
    s.load("blob:z", 10).frame_publishing(&[7]).ended(7, LoadState::Ready).shutdown();
    let mut log = s.log();
    log[8..10].copy_from_slice(&5u16.to_le_bytes());
    let report = replayed_as_recorded(&log);
    assert_eq!(report.checked, 7);
}

#[test]
fn a_version_6_log_replays_a_chain_of_shares_past_the_depth_limit_as_it_loaded() {
    // `r` lists a1, a2 and a3, each depending on the one before: a chain three deep below `r`
    // through shares, past a limit of 2. A version 6 recorder shared them and loaded the tree;
    // from version 7 the third share is refused, so the same log no longer replays as it was.
    let mut s = Scenario::new().dependency_depth(2);
    s.record(entry("blob:a1", &[])).record(entry("blob:a2", &["blob:a1"]));
    s.record(entry("blob:a3", &["blob:a2"]));
    s.record(entry("blob:r", &["blob:a1", "blob:a2", "blob:a3"])).record(request(1, "blob:r"));
    s.load("blob:a1", 4).load("blob:a2", 4).load("blob:a3", 4).load("blob:r", 4);
    for id in [2, 3, 4, 1] {
        s.frame_publishing(&[id]).ended(id, LoadState::Ready);
    }
    s.shutdown();
    let mut log = s.log();
    log[8..10].copy_from_slice(&6u16.to_le_bytes());
    assert_eq!(replayed_as_recorded(&log).checked, 4);
    log[8..10].copy_from_slice(&7u16.to_le_bytes());
    let report = replay(&log, ReplayOptions::default()).unwrap();
    assert!(report.divergence.is_some(), "a version 7 walk refuses the third share");
}

#[test]
fn a_recorded_tree_sharing_a_dependency_replays_as_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("session.log");
    let source = GatedSource::default();
    source.put_with_deps("blob:root", b"root", &["blob:m1", "blob:m2"]);
    source.put_with_deps("blob:m1", b"m1", &["blob:s"]);
    source.put_with_deps("blob:m2", b"m2", &["blob:s"]);
    source.put_with_deps("blob:s", b"s", &[]);
    let config = RuntimeConfig { publish: PublishMode::Immediate, ..RuntimeConfig::default() };
    let rt = recorded(config, source, &log);
    let root = rt.request::<Blob>("root", Priority::Normal).unwrap();
    let after = rt.request::<Blob>("s", Priority::Normal).unwrap();
    for handle in [&root, &after] {
        assert!(handle.wait_timeout(PATIENCE).unwrap().is_ok());
    }
    assert_eq!(after.id().0, 5, "root, m1, s, m2 and then this");
    rt.shutdown();
    let report = replayed_as_recorded(&std::fs::read(&log).unwrap());
    assert_eq!(report.checked, 5);
}

#[test]
fn a_recorded_cycle_replays_refused_as_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("session.log");
    let source = GatedSource::default();
    source.put_with_deps("blob:a", b"a", &["blob:b"]);
    source.put_with_deps("blob:b", b"b", &["blob:a"]);
    source.put("c", b"c");
    let config = RuntimeConfig { publish: PublishMode::Immediate, ..RuntimeConfig::default() };
    let rt = recorded(config, source, &log);
    let cyclic = rt.request::<Blob>("a", Priority::Normal).unwrap();
    let Some(Err(ReadyError::Failed(error))) = cyclic.wait_timeout(PATIENCE) else {
        panic!("the cycle fails");
    };
    assert!(error.to_string().contains("cycle: blob:a -> blob:b -> blob:a"), "{error}");
    let after = rt.request::<Blob>("c", Priority::Normal).unwrap();
    assert!(after.wait_timeout(PATIENCE).unwrap().is_ok());
    assert_eq!(after.id().0, 3, "a, b and then this");
    rt.shutdown();
    let report = replayed_as_recorded(&std::fs::read(&log).unwrap());
    assert_eq!(report.checked, 3);
}

#[test]
fn a_type_with_a_retry_policy_of_its_own_replays_under_that_policy() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("session.log");
    let source = GatedSource::default();
    source.put("flaky", b"fails once");
    let once = streamrt::RetryPolicy { attempts_max: 1, ..streamrt::RetryPolicy::default() };
    let rt = Runtime::builder()
        .source(source)
        .register_with_policy(BlobDecoder::default(), once)
        .immediate()
        .record(&log, "integration test")
        .build()
        .unwrap();
    let handle = rt.request::<Blob>("flaky", Priority::Normal).unwrap();
    assert!(handle.wait_timeout(PATIENCE).unwrap().is_err(), "one attempt, which failed");
    rt.shutdown();
    let report = replayed_as_recorded(&std::fs::read(&log).unwrap());
    assert_eq!(report.checked, 1);
    assert!(!report.lines.iter().any(|l| l.event == "retried"), "the type's policy retries none");
}

#[test]
fn a_source_that_panicked_looking_a_key_up_panics_the_same_way_in_the_replay() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("session.log");
    let rt = recorded(RuntimeConfig::default(), GatedSource::with_blobs(1), &log);
    let boom = rt.request::<Blob>("infopanic/x", Priority::Normal).unwrap();
    let Some(Err(ReadyError::Failed(recorded))) = boom.wait_timeout(PATIENCE) else {
        panic!("the lookup's panic fails the request");
    };
    let fine = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    assert!(fine.wait_timeout(PATIENCE).unwrap().is_ok());
    rt.shutdown();
    let bytes = std::fs::read(&log).unwrap();
    let panicked = read_log(&bytes).unwrap().1.into_iter().filter(|(_, r)| {
        matches!(r, LogRecord::EntryPanicked { key, .. } if key.path().starts_with("infopanic"))
    });
    assert_eq!(panicked.count(), 1, "the lookup's panic is recorded");
    let report = replayed_as_recorded(&bytes);
    assert_eq!(report.checked, 2);
    let failed = report.lines.iter().find(|l| l.event == "failed").expect("a failed line");
    let message = recorded.kind.to_string();
    assert!(failed.state.contains(&message), "{} should say {message}", failed.state);
}

#[test]
fn a_decoder_panic_past_a_records_limit_is_recorded_cut_and_the_log_stays_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("session.log");
    let source = GatedSource::default();
    source.put("loud", b"LOUDPANIC");
    let rt = recorded(RuntimeConfig::default(), source, &log);
    let loud = rt.request::<Blob>("loud", Priority::Normal).unwrap();
    let Some(Err(ReadyError::Failed(e))) = loud.wait_timeout(PATIENCE) else { panic!("loads") };
    assert!(e.to_string().len() < PANIC_MESSAGE_BYTES_MAX + 256, "the error holds the cut text");
    rt.shutdown();
    let bytes = std::fs::read(&log).unwrap();
    let (_, records) = read_log(&bytes).unwrap();
    let cut = records.iter().any(|(_, r)| {
        matches!(r, LogRecord::Decode { outcome: DecodeOutcome::Panicked(m), .. }
            if m.len() <= PANIC_MESSAGE_BYTES_MAX && m.ends_with('…'))
    });
    assert!(cut, "the panic is recorded, cut");
    assert_eq!(records.last().map(|(_, r)| r), Some(&LogRecord::Shutdown), "the log is whole");
    replayed_as_recorded(&bytes);
}

/// A gated source whose `entry_info` first passes the gate on `info/{path}`: a request made on
/// it waits inside `Runtime::request` until the test lets it go.
struct InfoGated(GatedSource);

impl Source for InfoGated {
    fn read(&self, key: &AssetKey) -> Result<Vec<u8>, SourceError> {
        self.0.read(key)
    }

    fn read_located(&self, key: &AssetKey, locator: Locator) -> Result<Vec<u8>, SourceError> {
        self.0.read_located(key, locator)
    }

    fn describe(&self) -> String {
        self.0.describe()
    }

    fn entry_info(&self, key: &AssetKey) -> EntryInfo {
        self.0.gate.pass(&format!("info/{}", key.path()));
        self.0.entry_info(key)
    }
}

#[test]
fn a_request_made_as_the_runtime_shuts_down_is_recorded_before_the_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("session.log");
    let source = GatedSource::with_blobs(1);
    let gate = source.gate.clone();
    gate.hold("info/a0");
    let rt = Arc::new(recorded(RuntimeConfig::default(), InfoGated(source), &log));
    let requester = {
        let rt = Arc::clone(&rt);
        std::thread::spawn(move || rt.request::<Blob>("a0", Priority::Normal).map(|h| h.id()))
    };
    gate.wait_started("info/a0", 1);
    // The shutdown starts while the request is inside the runtime, past its first check.
    let (calling, called) = std::sync::mpsc::channel();
    let stopper = {
        let rt = Arc::clone(&rt);
        std::thread::spawn(move || {
            calling.send(()).unwrap();
            rt.shutdown();
        })
    };
    called.recv().unwrap();
    gate.release("info/a0");
    let made = requester.join().unwrap().expect("made before the runtime closed");
    stopper.join().unwrap();
    let (_, records) = read_log(&std::fs::read(&log).unwrap()).unwrap();
    let at = |wanted: &LogRecord| records.iter().position(|(_, r)| r == wanted);
    let request = records
        .iter()
        .position(|(_, r)| matches!(r, LogRecord::Request { id, .. } if *id == made.0));
    assert!(request.is_some(), "the request is recorded");
    assert!(request < at(&LogRecord::Shutdown), "{records:?}");
    replayed_as_recorded(&std::fs::read(&log).unwrap());
}

#[test]
fn a_dependency_failing_on_another_thread_mid_walk_leaves_the_walk_to_finish_as_a_replay_does() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("session.log");
    let source = GatedSource::default();
    // `gone` is not in the source: its read fails, and with it `root`, while the walk is held
    // describing `m0`.
    let rest: Vec<String> = (0..10).map(|i| format!("blob:m{i}")).collect();
    let mut deps = vec!["blob:gone"];
    deps.extend(rest.iter().map(String::as_str));
    source.put_with_deps("blob:root", b"root", &deps);
    for dep in &rest {
        source.put_with_deps(dep, b"m", &[]);
    }
    let gate = source.gate.clone();
    gate.hold("info/m0");
    let rt = Arc::new(recorded(RuntimeConfig::default(), InfoGated(source), &log));
    let events = rt.subscribe(4096);
    let requester = {
        let rt = Arc::clone(&rt);
        std::thread::spawn(move || rt.request::<Blob>("root", Priority::Normal).map(|h| h.id()))
    };
    let root_failed = events.wait_for(PATIENCE, |e| {
        matches!(e.kind, streamrt::messages::EventKind::Failed { .. })
            && e.key.as_ref().is_some_and(|k| k.to_string() == "blob:root")
    });
    assert!(root_failed.is_some(), "root fails with `gone` while its walk is held");
    gate.release("info/m0");
    requester.join().unwrap().expect("requested");
    assert!(rt.sync(PATIENCE));
    assert_eq!(
        rt.status().requested,
        12,
        "root, gone and every m: only the walk's own failures stop it"
    );
    rt.shutdown();
    let report = replayed_as_recorded(&std::fs::read(&log).unwrap());
    assert_eq!(report.checked, 12);
}

#[test]
fn an_immediate_mode_session_records_its_publishes_and_replays_to_the_recorded_states() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("session.log");
    let source = GatedSource::default();
    for i in 0..40 {
        source.put(&format!("r{i}"), &[i as u8; 64]);
    }
    let config =
        RuntimeConfig { workers: 3, publish: PublishMode::Immediate, ..Default::default() };
    let rt = recorded(config, source, &log);
    let handles: Vec<_> = (0..40)
        .map(|i| rt.request::<Blob>(&format!("r{i}"), Priority::ALL[i % 5]).unwrap())
        .collect();
    // Cancels racing the loads: each lands before or after its publish.
    for h in handles.iter().step_by(3) {
        h.cancel();
    }
    for h in &handles {
        assert!(h.wait_timeout(PATIENCE).is_some(), "every request ends before the shutdown");
    }
    rt.shutdown();
    let bytes = std::fs::read(&log).unwrap();
    let (_, records) = read_log(&bytes).unwrap();
    let published: usize = records
        .iter()
        .map(|(_, r)| match r {
            LogRecord::Published { requests } => requests.len(),
            _ => 0,
        })
        .sum();
    let ready = handles.iter().filter(|h| h.state() == LoadState::Ready).count();
    assert_eq!(published, ready, "every immediate publish is recorded");
    let report = replayed_as_recorded(&bytes);
    assert_eq!(report.checked, 40);
}

#[test]
fn a_read_that_failed_as_its_request_was_cancelled_replays_as_the_cancel_it_lost_to() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("session.log");
    let source = GatedSource::default();
    source.put("w", b"the hint holder");
    // Once armed, the next load hint holds the core thread, where the read's failure is taken.
    let (hooked, armed) = HookedWants::holding_when_armed(&source);
    source.gate.hold("missing");
    let rt = recorded(RuntimeConfig::default(), hooked, &log);
    let missing = rt.request::<Blob>("missing", Priority::Normal).unwrap();
    source.gate.wait_started("missing", 1);
    source.gate.hold("want");
    armed.store(true, std::sync::atomic::Ordering::Release);
    let holder = rt.request::<Blob>("w", Priority::Normal).unwrap();
    source.gate.wait_started("want", 1);
    // The read fails (no such entry) while the core thread is held; the engine cancels before
    // the cache takes the failure: the request ends cancelled.
    let events = rt.subscribe(1024);
    source.gate.release("missing");
    let read = events.wait_for(PATIENCE, |e| e.kind == streamrt::messages::EventKind::ReadDone);
    assert!(read.is_some(), "the read is over");
    assert!(missing.cancel(), "the cancel ended the request");
    source.gate.release("want");
    holder.wait_timeout(PATIENCE).unwrap().unwrap();
    rt.shutdown();
    let report = replayed_as_recorded(&std::fs::read(&log).unwrap());
    assert_eq!(report.checked, 2, "both requests end as recorded");
}

#[test]
fn an_entry_a_source_adds_while_recording_replays_as_the_source_then_said() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("session.log");
    let source = GatedSource::default();
    source.put("t", b"t");
    let rt = recorded(RuntimeConfig::default(), source.clone(), &log);
    let before = rt.request::<Blob>("a", Priority::Normal).unwrap();
    let ended = before.wait_timeout(PATIENCE).expect("ends");
    assert!(matches!(ended, Err(ReadyError::Failed(e)) if e.kind == ErrorKind::NotFound));
    // Added while the runtime runs, with a dependency: the next request walks a tree of two.
    source.put_with_deps("blob:a", b"a", &["blob:t"]);
    let after = rt.request::<Blob>("a", Priority::Normal).unwrap();
    assert_eq!(after.wait_timeout(PATIENCE).unwrap().unwrap().0, b"a");
    rt.shutdown();
    let report = replayed_as_recorded(&std::fs::read(&log).unwrap());
    assert_eq!(report.checked, 3, "a twice and its dependency t");
}

#[test]
fn a_decode_cancelled_while_it_ran_leaves_no_outcome_for_the_keys_next_load_to_replay() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("session.log");
    let source = GatedSource::with_blobs(1);
    source.put("c", b"BAD the first bytes");
    let decoder = BlobDecoder::default();
    decoder.gate.hold("c");
    decoder.gate.hold("a0");
    let rt = Runtime::builder()
        .source(source.clone())
        .register(decoder.clone())
        .decode_threads(1)
        .record(&log, "integration test")
        .build()
        .unwrap();
    let first = rt.request::<Blob>("c", Priority::Normal).unwrap();
    decoder.gate.wait_started("c", 1);
    let next = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    first.cancel();
    assert!(rt.sync(PATIENCE), "c's load is cancelled while its decode runs");
    decoder.gate.release("c");
    // The one decode thread went on to a0's: c's failure was posted, then taken.
    decoder.gate.wait_started("a0", 1);
    assert!(rt.sync(PATIENCE));
    decoder.gate.release("a0");
    next.wait_timeout(PATIENCE).unwrap().expect("a0 loads");
    source.put("c", b"good bytes");
    let second = rt.request::<Blob>("c", Priority::Normal).unwrap();
    second.wait_timeout(PATIENCE).unwrap().expect("c's new bytes decode");
    rt.shutdown();
    let bytes = std::fs::read(&log).unwrap();
    let decodes_of_c = read_log(&bytes)
        .unwrap()
        .1
        .iter()
        .filter(|(_, r)| matches!(r, LogRecord::Decode { key, .. } if key.path() == "c"))
        .count();
    assert_eq!(decodes_of_c, 1, "only the decode that took effect is recorded");
    // The failure, banked, would have been the next load's outcome in the replay.
    let report = replayed_as_recorded(&bytes);
    assert_eq!(report.checked, 3);
}

#[test]
fn a_read_cancelled_while_it_ran_leaves_no_outcome_for_the_keys_next_load_to_replay() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("session.log");
    let source = GatedSource::default();
    // Read twice, then failing: a third load finds it gone.
    source.put("wornout", b"some bytes");
    source.gate.hold("wornout");
    // Nothing is kept once let go of: the third load reads again.
    let config = RuntimeConfig { workers: 1, bytes_resident_max: 1, ..RuntimeConfig::default() };
    let rt = recorded(config, source.clone(), &log);
    let first = rt.request::<Blob>("wornout", Priority::Normal).unwrap();
    source.gate.wait_started("wornout", 1);
    first.cancel();
    assert!(rt.sync(PATIENCE), "the load is cancelled while its read runs");
    let second = rt.request::<Blob>("wornout", Priority::Normal).unwrap();
    source.gate.release("wornout");
    // The one IO worker finished the cancelled read before it started this one.
    source.gate.wait_started("wornout", 2);
    second.wait_timeout(PATIENCE).unwrap().expect("the second load reads");
    drop(second);
    let third = rt.request::<Blob>("wornout", Priority::Normal).unwrap();
    let failed = third.wait_timeout(PATIENCE).unwrap();
    assert!(matches!(failed, Err(ReadyError::Failed(_))), "{failed:?}");
    rt.shutdown();
    let bytes = std::fs::read(&log).unwrap();
    // The cancelled read, banked, would have been the third load's in the replay.
    let report = replayed_as_recorded(&bytes);
    assert_eq!(report.checked, 3);
}

#[test]
fn a_read_gives_its_credit_back_in_the_replay_where_it_did_in_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("session.log");
    let source = GatedSource::with_blobs(2);
    let decoder = BlobDecoder::default();
    decoder.gate.hold("a0");
    // One read at a time, whatever its size: a1's read could start only once a0's was done.
    let config = RuntimeConfig {
        workers: 1,
        reads_in_flight: 1,
        read_credit_bytes: 1,
        ..RuntimeConfig::default()
    };
    let rt = Runtime::builder()
        .config(config)
        .source(source.clone())
        .register(decoder.clone())
        .decode_threads(2)
        .record(&log, "integration test")
        .build()
        .unwrap();
    let slow = rt.request::<Blob>("a0", Priority::Normal).unwrap();
    decoder.gate.wait_started("a0", 1);
    let quick = rt.request::<Blob>("a1", Priority::Normal).unwrap();
    quick.wait_timeout(PATIENCE).unwrap().expect("a1 loads while a0 decodes");
    // Let go of once ready: a replay that had not loaded a1 by now would cancel it.
    drop(quick);
    decoder.gate.release("a0");
    slow.wait_timeout(PATIENCE).unwrap().expect("a0 loads");
    rt.shutdown();
    let bytes = std::fs::read(&log).unwrap();
    let report = replayed_as_recorded(&bytes);
    assert_eq!(report.checked, 2);
}
