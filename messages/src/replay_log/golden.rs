//! The replay log's record bytes, pinned: one sample of every record and of every outcome they
//! carry, encoded and compared with what this version of the log writes.
//!
//! postcard writes enums by variant index and structs by field order, with no names: a record
//! variant added before another, or a field moved, makes older logs read as something else
//! without any error. When this test fails, the change is in the log: bump
//! [`REPLAY_LOG_VERSION`] (and keep reading the older versions, or raise
//! `REPLAY_LOG_VERSION_MIN`), then update [`GOLDEN_VERSION`] and [`GOLDEN`] to what the
//! failure prints. The types the log shares with the protocol (`ErrorKind`, `LoadState`,
//! `Priority`) are pinned, every variant, by the protocol's golden test.

use super::*;

/// The log version whose bytes [`GOLDEN`] holds.
const GOLDEN_VERSION: u16 = 4;

/// Every sample's payload, in hex, one line each.
const GOLDEN: &str = "
000104626c6f62016101
01086d6174657269616c016d01077465787475726501740109
0202
030303
0404
05
0604626c6f6201620005
0604626c6f6201630100
0704626c6f6201640006
0704626c6f620165010203626164
0704626c6f6201660204626f6f6d
080703
09
0a020809
";

fn key(k: &str) -> AssetKey {
    AssetKey::parse(k).expect("a valid key")
}

fn samples() -> Vec<LogRecord> {
    vec![
        LogRecord::Request { id: 1, key: key("blob:a"), priority: Priority::High },
        LogRecord::Entry {
            key: key("material:m"),
            dependencies: vec![key("texture:t")],
            size: Some(9),
        },
        LogRecord::Cancel { id: 2 },
        LogRecord::Reprioritize { id: 3, priority: Priority::Low },
        LogRecord::BeginFrame { published: 4 },
        LogRecord::EndFrame,
        LogRecord::Read { key: key("blob:b"), outcome: ReadOutcome::Bytes(5) },
        LogRecord::Read { key: key("blob:c"), outcome: ReadOutcome::Failed(ErrorKind::NotFound) },
        LogRecord::Decode { key: key("blob:d"), outcome: DecodeOutcome::Value(6) },
        LogRecord::Decode {
            key: key("blob:e"),
            outcome: DecodeOutcome::Failed(ErrorKind::Decode("bad".into())),
        },
        LogRecord::Decode { key: key("blob:f"), outcome: DecodeOutcome::Panicked("boom".into()) },
        LogRecord::Ended { id: 7, state: LoadState::Ready },
        LogRecord::Shutdown,
        LogRecord::Published { requests: vec![8, 9] },
    ]
}

/// Names what a sample is, by a match with no wildcard: a record or outcome added fails to
/// compile here until a sample of it is added above.
fn variant(record: &LogRecord) -> &'static str {
    match record {
        LogRecord::Read { outcome: ReadOutcome::Bytes(_) | ReadOutcome::Failed(_), .. } => "read",
        LogRecord::Decode {
            outcome: DecodeOutcome::Value(_) | DecodeOutcome::Failed(_) | DecodeOutcome::Panicked(_),
            ..
        } => "decode",
        LogRecord::Request { .. }
        | LogRecord::Entry { .. }
        | LogRecord::Cancel { .. }
        | LogRecord::Reprioritize { .. }
        | LogRecord::BeginFrame { .. }
        | LogRecord::EndFrame
        | LogRecord::Ended { .. }
        | LogRecord::Shutdown
        | LogRecord::Published { .. } => "record",
    }
}

#[test]
fn every_record_is_written_as_this_log_version_pins_it() {
    let records = samples();
    assert!(records.iter().all(|r| !variant(r).is_empty()));
    let hex = |bytes: Vec<u8>| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let lines: Vec<String> =
        records.iter().map(|r| hex(postcard::to_allocvec(r).expect("encodes"))).collect();
    let now = lines.join("\n");
    assert!(
        now == GOLDEN.trim() && REPLAY_LOG_VERSION == GOLDEN_VERSION,
        "the log's records changed, or the version did without them: bump REPLAY_LOG_VERSION \
         (now {REPLAY_LOG_VERSION}, pinned {GOLDEN_VERSION}) and pin these bytes:\n{now}"
    );
}
