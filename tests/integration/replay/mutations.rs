//! Damaged logs: every truncation and every single-bit flip of a recorded log replays to a
//! transcript or to a typed error, never a panic; a record no recording writes is refused.

use std::panic::{catch_unwind, AssertUnwindSafe};

use streamrt::messages::replay_log::{read_log, DecodeOutcome, LogErrorKind, LogRecord};
use streamrt::messages::{ErrorKind, Priority};
use streamrt::replay::{replay, ReplayError, ReplayOptions};
use streamrt::{BuildError, ConfigError, TYPES_MAX};
use streamrt_integration::{key, Scenario};

/// A session of about 1,300 bytes touching every kind of record.
fn recorded_log() -> Vec<u8> {
    let mut s = Scenario::new();
    let mut ids = Vec::new();
    for i in 0..12 {
        let key = format!("blob:asset{i}");
        ids.push(s.request(&key, Priority::ALL[i % 5]));
        s.load(&key, 10 * i as u64 + 1);
    }
    let mesh = s.request_with_deps("mesh:m", &["texture:t1", "texture:t2"], Priority::High);
    s.load("texture:t1", 64).read_fails("texture:t2", ErrorKind::Io("flaky".into()));
    s.retry_due("texture:t2");
    s.load("texture:t2", 64).load("mesh:m", 128).reprioritize(mesh, Priority::Critical);
    s.cancel(ids[1]).frame().frame_publishing(&[ids[0], mesh, ids[1]]);
    s.read("blob:z", 4).decode_panics("blob:z", "boom").retry_due("blob:z");
    for id in ids {
        s.ended(id, streamrt::LoadState::Ready);
    }
    s.frame().shutdown();
    s.log()
}

/// Replays `bytes`, failing the test if the replay panics.
fn replay_must_not_panic(bytes: &[u8], what: &str) -> Result<(), ReplayError> {
    match catch_unwind(AssertUnwindSafe(|| replay(bytes, ReplayOptions::default()))) {
        Ok(result) => result.map(drop),
        Err(_) => panic!("replaying the log with {what} panicked"),
    }
}

#[test]
fn truncating_a_log_anywhere_gives_a_typed_error_with_its_offset() {
    let log = recorded_log();
    let (_, records) = read_log(&log).unwrap();
    let boundaries: Vec<usize> = records.iter().map(|(offset, _)| *offset as usize).collect();
    // At a record boundary the log is a shorter session: it replays.
    for &at in &boundaries {
        replay_must_not_panic(&log[..at], "a truncation at a boundary").unwrap();
    }
    // Inside a frame (the header's, each record's, the last one's too) it is truncated, and
    // the error names the frame's offset.
    let header = 10;
    let frames: Vec<usize> =
        std::iter::once(header).chain(boundaries.iter().copied()).chain([log.len()]).collect();
    for window in frames.windows(2) {
        let cut = window[0] + (window[1] - window[0]) / 2;
        match replay_must_not_panic(&log[..cut], "a truncation inside a frame") {
            Err(ReplayError::Log(e)) => {
                assert_eq!(e.offset as usize, window[0]);
                assert!(matches!(e.kind, LogErrorKind::Truncated { .. }), "{e}");
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    // Inside the magic and version, it is not a log.
    for cut in [0, 4, header - 1] {
        assert!(replay_must_not_panic(&log[..cut], "a cut preamble").is_err(), "cut at {cut}");
    }
}

#[test]
fn ten_thousand_single_bit_flips_never_panic() {
    let log = recorded_log();
    let bits = log.len() * 8;
    assert!(bits >= 10_000, "the log has only {bits} bits");
    // Two threads share the flips: each replay builds and stops a whole runtime.
    let flips = |bits: std::ops::Range<usize>| {
        let (mut replayed, mut refused) = (0, 0);
        for bit in bits {
            let mut damaged = log.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            match replay_must_not_panic(&damaged, &format!("bit {bit} flipped")) {
                Ok(()) => replayed += 1,
                Err(ReplayError::Log(e)) => {
                    assert!(e.offset as usize <= log.len(), "{e}");
                    refused += 1;
                }
                Err(_) => refused += 1,
            }
        }
        (replayed, refused)
    };
    let ((a, b), (c, d)) = std::thread::scope(|scope| {
        let first = scope.spawn(|| flips(0..bits / 2));
        let second = flips(bits / 2..bits);
        (first.join().expect("no panic escapes replay_must_not_panic"), second)
    });
    let (replayed, refused) = (a + c, b + d);
    // Both kinds of damage occur: the test exercises the replay and the checks.
    assert!(replayed > 100 && refused > 100, "replayed {replayed}, refused {refused}");
}

#[test]
fn a_log_naming_more_types_than_a_runtime_registers_is_refused() {
    let mut s = Scenario::new();
    s.types = (0..=TYPES_MAX).map(|i| format!("t{i}")).collect();
    s.frame().shutdown();
    match replay_must_not_panic(&s.log(), "too many types") {
        Err(ReplayError::Build(BuildError::TooManyTypes { max })) => assert_eq!(max, TYPES_MAX),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_log_with_a_self_dependency_replays_to_the_depth_limit_and_an_absurd_limit_is_refused() {
    // `blob:a` depends on itself. Recorded by a version 5 runtime, whose walks requested it
    // again at each level (a later one refuses the cycle at once): down to the depth limit.
    let log_with_depth = |depth_max: usize| {
        let mut s = Scenario::new();
        s.config.dependency_depth_max = depth_max as u64;
        s.request_with_deps("blob:a", &["blob:a"], Priority::Normal);
        s.frame().shutdown();
        let mut log = s.log();
        log[8..10].copy_from_slice(&5u16.to_le_bytes());
        log
    };
    let deepest = log_with_depth(streamrt::DEPENDENCY_DEPTH_MAX);
    let report = replay(&deepest, ReplayOptions::default()).expect("replays");
    let limit = format!("deeper than {}", streamrt::DEPENDENCY_DEPTH_MAX);
    assert!(report.lines.iter().any(|l| l.to_string().contains(&limit)), "no refusal at the limit");
    // Past what a live runtime takes, the log is damaged: refused as the runtime refuses it.
    match replay_must_not_panic(&log_with_depth(1 << 20), "an absurd depth") {
        Err(ReplayError::Build(BuildError::Config(ConfigError::TooLarge { name, max }))) => {
            assert_eq!((name, max), ("dependency_depth_max", streamrt::DEPENDENCY_DEPTH_MAX));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_type_policy_for_an_unknown_type_twice_or_after_the_first_record_is_refused() {
    let policy = |type_name: &str| LogRecord::TypePolicy {
        type_name: type_name.into(),
        attempts_max: 1,
        backoff_ms: (1, 1),
        panics_max: 1,
    };
    let refused = |s: &Scenario| match replay_must_not_panic(&s.log(), "a bad policy") {
        Err(ReplayError::BadRecord { reason, .. }) => reason,
        other => panic!("{other:?}"),
    };
    let mut unknown = Scenario::new();
    unknown.record(policy("sound")).shutdown();
    assert!(refused(&unknown).contains("sound, which is not registered"));
    let mut twice = Scenario::new();
    twice.record(policy("mesh")).record(policy("mesh")).shutdown();
    assert!(refused(&twice).contains("a second retry policy for mesh"));
    let mut late = Scenario::new();
    late.request("blob:a", Priority::Normal);
    late.record(policy("mesh")).shutdown();
    assert!(refused(&late).contains("after the session began"));
    let mut first = Scenario::new();
    first.record(policy("mesh")).shutdown();
    assert!(replay_must_not_panic(&first.log(), "a policy first").is_ok());
    // A name as long as a record can hold is named cut, not copied whole into the error.
    let mut long = Scenario::new();
    long.record(policy(&"s".repeat(1_000_000))).shutdown();
    let reason = refused(&long);
    assert!(
        reason.ends_with("which is not registered") && reason.len() < 8_192,
        "{}",
        reason.len()
    );
}

#[test]
fn a_request_no_recording_writes_is_refused_with_its_offset() {
    let refused = |s: &Scenario, what: &str| {
        let log = s.log();
        let (_, records) = read_log(&log).unwrap();
        let last_request = records
            .iter()
            .rev()
            .find(|(_, r)| matches!(r, LogRecord::Request { .. }))
            .map(|(offset, _)| *offset)
            .unwrap();
        match replay_must_not_panic(&log, what) {
            Err(ReplayError::BadRecord { offset, reason }) => {
                assert_eq!(offset, last_request, "{what}: {reason}");
                reason
            }
            other => panic!("{what}: {other:?}"),
        }
    };
    let mut unknown_type = Scenario::new();
    unknown_type.request("blob:a", Priority::Normal);
    unknown_type.request("sound:a", Priority::Normal);
    assert!(refused(&unknown_type, "a type the header lacks").contains("sound"));
    let mut twice = Scenario::new();
    twice.request_as(7, "blob:a", Priority::Normal).request_as(7, "blob:b", Priority::Normal);
    assert!(refused(&twice, "an id made twice").contains("second time"));
    let mut after = Scenario::new();
    after.request("blob:a", Priority::Normal);
    after.shutdown().request("blob:b", Priority::Normal);
    assert!(refused(&after, "a request after the shutdown").contains("after the shutdown"));
}

#[test]
fn a_few_records_that_walk_large_trees_again_and_again_stop_at_the_events_limit() {
    // Each request of the root walks its 200 dependencies; each cancel ends all of them.
    let mut s = Scenario::new();
    let deps: Vec<String> = (0..200).map(|i| format!("blob:d{i}")).collect();
    let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
    for _ in 0..10 {
        let root = s.request_with_deps("blob:root", &deps, Priority::Normal);
        s.cancel(root);
    }
    s.shutdown();
    let log = s.log();
    let whole = replay(&log, ReplayOptions::default()).expect("replays within the default");
    assert!(whole.lines.len() > 4_000, "{} lines", whole.lines.len());
    let options = ReplayOptions { events_max: Some(1_000), ..ReplayOptions::default() };
    match replay(&log, options) {
        Err(ReplayError::TooManyEvents { offset, max: 1_000 }) => {
            assert!(offset < log.len() as u64, "names the record at fault: {offset}");
        }
        other => panic!("the limit holds: {:?}", other.map(|r| r.lines.len())),
    }
}

#[test]
fn a_failure_shared_by_many_requests_stops_at_the_bytes_limit_of_the_kept_events() {
    // Each of the 1,000 requests' `failed` events, and its transcript line, holds its own copy
    // of the 4 KiB error text: about 8 MiB, though only some 2,000 events.
    let mut s = Scenario::new();
    for _ in 0..1_000 {
        s.request("blob:a", Priority::Normal);
    }
    let text = "x".repeat(4_096);
    let outcome = DecodeOutcome::Failed(ErrorKind::Decode(text));
    s.read("blob:a", 64).record(LogRecord::Decode { key: key("blob:a"), outcome });
    s.shutdown();
    let log = s.log();
    let whole = replay(&log, ReplayOptions::default()).expect("replays within the defaults");
    let failed = whole.lines.iter().filter(|l| l.event == "failed").count();
    assert_eq!(failed, 1_000, "every request fails with the decode");
    let max = 2 << 20;
    let options = ReplayOptions {
        events_max: Some(whole.lines.len()),
        event_bytes_max: Some(max),
        ..ReplayOptions::default()
    };
    match replay(&log, options) {
        Err(ReplayError::TooManyEventBytes { offset, max: got }) => {
            assert_eq!(got, max);
            assert!(offset < log.len() as u64, "names the record at fault: {offset}");
        }
        other => panic!("the bytes limit holds: {:?}", other.map(|r| r.lines.len())),
    }
}

#[test]
fn a_record_its_logs_version_cannot_hold_is_refused_naming_it() {
    let policy = LogRecord::TypePolicy {
        type_name: "blob".into(),
        attempts_max: 1,
        backoff_ms: (1, 1),
        panics_max: 1,
    };
    let published = LogRecord::Published { requests: vec![1] };
    let cases = [
        (policy, 4u16, false, "a retry policy record, which logs hold from version 5"),
        (
            published.clone(),
            2,
            false,
            "a frame's publish list record, which logs hold from version 3",
        ),
        // Not a frame's (no `BeginFrame` follows it), and naming a request.
        (published, 3, true, "an immediate publish record, which logs hold from version 4"),
        (
            LogRecord::RetryDue { key: key("blob:a") },
            7,
            false,
            "a retry's due time record, which logs hold from version 8",
        ),
        (
            LogRecord::Ended { id: 1, state: streamrt::LoadState::Pending },
            6,
            false,
            "an end in the pending state, which is not an end",
        ),
    ];
    for (record, version, immediate, reason) in cases {
        let mut s = Scenario::new();
        if immediate {
            s.config.publish = streamrt::messages::replay_log::LogPublish::Immediate;
        }
        s.record(record).shutdown();
        let mut log = s.log();
        log[8..10].copy_from_slice(&version.to_le_bytes());
        match replay(&log, ReplayOptions::default()) {
            Err(ReplayError::BadRecord { reason: got, .. }) => assert_eq!(got, reason),
            other => panic!("version {version}: {reason}: {:?}", other.map(|r| r.lines.len())),
        }
    }
}

#[test]
fn the_events_limit_holds_through_the_replays_own_shutdown_of_a_log_cut_short() {
    // No `Shutdown` record: the replay's own shutdown fails the 200 dependencies left.
    let mut s = Scenario::new();
    s.config.queue_capacity = 1_024;
    let deps: Vec<String> = (0..200).map(|i| format!("blob:d{i}")).collect();
    let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
    s.request_with_deps("blob:root", &deps, Priority::Normal);
    let log = s.log();
    let whole = replay(&log, ReplayOptions::default()).expect("replays within the default");
    // Nothing ends before the shutdown: the first end is the shutdown's, and every line from
    // it on is past the limit.
    let ends = |l: &&streamrt::replay::TranscriptLine| ["failed", "cancelled"].contains(&l.event);
    let max = whole.lines.iter().position(|l| ends(&l)).expect("the shutdown ends them");
    assert!(whole.lines.iter().filter(ends).count() > 200, "the tree ends at the shutdown");
    let options = ReplayOptions { events_max: Some(max), ..ReplayOptions::default() };
    match replay(&log, options) {
        Err(ReplayError::TooManyEvents { offset, max: got }) => {
            assert_eq!((offset, got), (log.len() as u64, max), "at the log's end");
        }
        other => panic!("the limit holds: {:?}", other.map(|r| r.lines.len())),
    }
}
