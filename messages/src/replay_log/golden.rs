//! The replay log's bytes, pinned: its header (with every field distinct, once per way of
//! publishing) and one sample of every record and of every outcome they carry, encoded and
//! compared with what this version of the log writes.
//!
//! postcard writes enums by variant index and structs by field order, with no names: a record
//! variant added before another, or a field moved, makes older logs read as something else
//! without any error. When this test fails, the change is in the log: bump
//! [`REPLAY_LOG_VERSION`] (and keep reading the older versions, or raise
//! `REPLAY_LOG_VERSION_MIN`), then update [`GOLDEN_VERSION`] and [`GOLDEN`] to what the
//! failure prints. The types the log shares with the protocol (`ErrorKind`, `LoadState`,
//! `Priority`) are pinned here too, every variant, as the records carry them: a change to one
//! changes the log as well as the protocol, and both versions must move.

use super::*;
use crate::protocol::golden::{every_error_kind, key};

/// The log version whose bytes [`GOLDEN`] holds.
const GOLDEN_VERSION: u16 = 8;

/// The headers', then every sample's payload, in hex, one line each.
const GOLDEN: &str = "
06676f6c64656e0204626c6f62046d6573680102030405060708090104626c6f620a0b0c0d0e00
06676f6c64656e0204626c6f62046d6573680102030405060708090104626c6f620a0b0c0d0e01010203
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
0b046d6573680a0b0c0d
0c04626c6f620167046f6f7073
0d04626c6f62016a
0604626c6f6201680100
0604626c6f620168010102696f
0604626c6f6201680102066465636f6465
0604626c6f62016801030570616e6963
0604626c6f62016801040a76616c69646174696f6e
0604626c6f620168010507636f7272757074
0604626c6f62016801060664656e696564
0604626c6f62016801070774657874757265017404676f6e65
0604626c6f620168010807
0604626c6f62016801090908
0604626c6f620168010a03
0604626c6f620168010b046c6f7374
0604626c6f620168010c
080e00
080e01
080e02
080e03
080e04
080e05
000f04626c6f62016900
000f04626c6f62016901
000f04626c6f62016902
000f04626c6f62016903
000f04626c6f62016904
";

fn samples() -> Vec<LogRecord> {
    let mut records = vec![
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
        LogRecord::TypePolicy {
            type_name: "mesh".into(),
            attempts_max: 10,
            backoff_ms: (11, 12),
            panics_max: 13,
        },
        LogRecord::EntryPanicked { key: key("blob:g"), message: "oops".into() },
        LogRecord::RetryDue { key: key("blob:j") },
    ];
    // Every kind a read can fail with, every terminal state and every priority, as records
    // carry them.
    let kinds = every_error_kind().into_iter();
    records.extend(
        kinds
            .map(|kind| LogRecord::Read { key: key("blob:h"), outcome: ReadOutcome::Failed(kind) }),
    );
    records.extend(LoadState::ALL.map(|state| LogRecord::Ended { id: 14, state }));
    records.extend(Priority::ALL.map(|priority| LogRecord::Request {
        id: 15,
        key: key("blob:i"),
        priority,
    }));
    records
}

/// Names what a sample is, by a match with no wildcard: a record or outcome added fails to
/// compile here, beside the samples, until an arm names it, so whoever adds it is led to add
/// its sample above. The compiler cannot check that the sample was added.
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
        | LogRecord::Published { .. }
        | LogRecord::TypePolicy { .. }
        | LogRecord::EntryPanicked { .. }
        | LogRecord::RetryDue { .. } => "record",
    }
}

/// A header for each way of publishing, every field distinct, so a moved field shows.
fn headers() -> Vec<LogHeader> {
    let publishing = [
        LogPublish::Immediate,
        LogPublish::Frames { publish_count_max: 1, publish_bytes_max: 2, aging_frames_max: 3 },
    ];
    publishing
        .into_iter()
        .map(|publish| {
            // Compiled for its exhaustive match, as `variant` is.
            let _ = match publish {
                LogPublish::Immediate | LogPublish::Frames { .. } => "publish",
            };
            LogHeader {
                recorded_by: "golden".into(),
                types: vec!["blob".into(), "mesh".into()],
                config: LogConfig {
                    workers: 1,
                    reads_in_flight: 2,
                    read_credit_bytes: 3,
                    decode_backlog_max: 4,
                    queue_capacity: 5,
                    requests_outstanding_max: 6,
                    dependency_depth_max: 7,
                    dependency_nodes_max: 8,
                    bytes_resident_max: 9,
                    type_bytes_resident_max: vec![("blob".into(), 10)],
                    retry_attempts_max: 11,
                    retry_backoff_ms: (12, 13),
                    panics_max: 14,
                    publish,
                },
            }
        })
        .collect()
}

#[test]
fn every_record_is_written_as_this_log_version_pins_it() {
    let records = samples();
    // Compiled for its exhaustive match (see `variant`); what it names is not checked.
    records.iter().for_each(|r| {
        let _ = variant(r);
    });
    let hex = |bytes: Vec<u8>| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let headers = headers().into_iter().map(|h| hex(postcard::to_allocvec(&h).expect("encodes")));
    let lines: Vec<String> = headers
        .chain(records.iter().map(|r| hex(postcard::to_allocvec(r).expect("encodes"))))
        .collect();
    let now = lines.join("\n");
    assert!(
        now == GOLDEN.trim() && REPLAY_LOG_VERSION == GOLDEN_VERSION,
        "the log's records changed, or the version did without them: bump REPLAY_LOG_VERSION \
         (now {REPLAY_LOG_VERSION}, pinned {GOLDEN_VERSION}) and pin these bytes:\n{now}"
    );
}
