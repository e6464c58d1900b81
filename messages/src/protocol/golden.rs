//! The wire's bytes, pinned: one sample of every message, and of every variant of the types
//! they carry, encoded and compared with the bytes this version of the protocol sends.
//!
//! postcard writes enums by variant index and structs by field order, with no names: adding a
//! variant before another, or moving a field, changes what the other side reads without any
//! error. When this test fails, the change is on the wire: bump [`PROTOCOL_VERSION`] (and
//! `REPLAY_LOG_VERSION` when the change reaches the replay log's types, which share `Event`,
//! `ErrorKind`, `LoadState` and `Priority`), then update [`GOLDEN_VERSION`] and [`GOLDEN`] to
//! what the failure prints.

use super::*;
use crate::error::ErrorKind;
use crate::event::{CancelStage, Event, EventKind};
use crate::ids::{Generation, Priority, RequestId};
use crate::state::LoadState;
use crate::status::Status;

/// The protocol version whose bytes [`GOLDEN`] holds.
const GOLDEN_VERSION: u32 = 6;

/// Every sample's frame, in hex, one line each.
const GOLDEN: &str = "
020000000006
0b0000000201046d65736801610101
03000000030101
0400000004010203
0100000001
0100000005
0100000006
0100000007
0100000008
070000000006047061636b
1200000001010203110405060708090a0b0c0d0e0f10
3e00000002060304626c6f62016200000304626c6f62016201010304626c6f62016202020304626c6f62016203030304626c6f62016204040304626c6f6201620500
0e000000030404626c6f6201630401026e6f
0100000004
3e00000005060304626c6f62016200000304626c6f62016201010304626c6f62016202020304626c6f62016203030304626c6f62016204040304626c6f6201620500
11000000060104626c6f6201020304050607080203
1a00000007010002030401010301040104626c6f62016401030105010602
16000000070101010301040104626c6f62016401030105010602
16000000070102010301040104626c6f62016401030105010602
16000000070103010301040104626c6f62016401030105010602
16000000070104010301040104626c6f62016401030105010602
16000000070105010301040104626c6f62016401030105010602
16000000070106010301040104626c6f62016401030105010602
16000000070107010301040104626c6f62016401030105010602
16000000070108010301040104626c6f62016401030105010602
16000000070109010301040104626c6f62016401030105010602
1600000007010a010301040104626c6f62016401030105010602
1700000007010b00010301040104626c6f62016401030105010602
1700000007010b01010301040104626c6f62016401030105010602
1700000007010b02010301040104626c6f62016401030105010602
1600000007010c010301040104626c6f62016401030105010602
1700000007010d00010301040104626c6f62016401030105010602
1a00000007010d0102696f010301040104626c6f62016401030105010602
1e00000007010d02066465636f6465010301040104626c6f62016401030105010602
1d00000007010d030570616e6963010301040104626c6f62016401030105010602
2200000007010d040a76616c69646174696f6e010301040104626c6f62016401030105010602
1f00000007010d0507636f7272757074010301040104626c6f62016401030105010602
1e00000007010d060664656e696564010301040104626c6f62016401030105010602
2600000007010d070774657874757265017404676f6e65010301040104626c6f62016401030105010602
1800000007010d0807010301040104626c6f62016401030105010602
1900000007010d090908010301040104626c6f62016401030105010602
1800000007010d0a03010301040104626c6f62016401030105010602
1c00000007010d0b046c6f7374010301040104626c6f62016401030105010602
1700000007010d0c010301040104626c6f62016401030105010602
1e00000007010e020105616761696e010301040104626c6f62016401030105010602
1700000007010f03010301040104626c6f62016401030105010602
20000000070110097363686564756c6572010301040104626c6f62016401030105010602
180000000701110506010301040104626c6f62016401030105010602
16000000070112010301040104626c6f62016401030105010602
1b0000000701130102030405010301040104626c6f62016401030105010602
0100000008
0400000009000102
020000000901
050000000902000908
0700000009020103626164
03000000090305
050000000904026e6f
03000000090506
020000000906
0400000009070706
060000000908036c6f67
030000000a0701
";

pub(crate) fn key(k: &str) -> AssetKey {
    AssetKey::parse(k).expect("a valid key")
}

pub(crate) fn every_error_kind() -> Vec<ErrorKind> {
    vec![
        ErrorKind::NotFound,
        ErrorKind::Io("io".into()),
        ErrorKind::Decode("decode".into()),
        ErrorKind::DecoderPanicked("panic".into()),
        ErrorKind::Validation("validation".into()),
        ErrorKind::Corrupt("corrupt".into()),
        ErrorKind::Denied("denied".into()),
        ErrorKind::DependencyFailed { dependency: key("texture:t"), cause: "gone".into() },
        ErrorKind::QueueFull { capacity: 7 },
        ErrorKind::TooLarge { size: 9, max: 8 },
        ErrorKind::Quarantined { panics: 3 },
        ErrorKind::WorkerLost("lost".into()),
        ErrorKind::Shutdown,
    ]
}

fn every_event_kind() -> Vec<EventKind> {
    let mut kinds = vec![
        EventKind::Started {
            worker_count: 2,
            decode_threads: 3,
            queue_capacity: 4,
            urgent_decodes_on_io: true,
        },
        EventKind::Stopped,
        EventKind::Queued,
        EventKind::Dispatched,
        EventKind::ReadStarted,
        EventKind::ReadDone,
        EventKind::DecodeStarted,
        EventKind::DecodeDone,
        EventKind::Decoded,
        EventKind::Evicted,
        EventKind::Published,
    ];
    let stages = [CancelStage::Queued, CancelStage::Loading, CancelStage::Decoded];
    kinds.extend(stages.map(|stage| EventKind::Cancelled { stage }));
    kinds.push(EventKind::CancelledAfterDecode);
    kinds.extend(every_error_kind().into_iter().map(|kind| EventKind::Failed { kind }));
    kinds.extend([
        EventKind::Retried { attempt: 2, kind: ErrorKind::Io("again".into()) },
        EventKind::Quarantined { panics: 3 },
        EventKind::Restarted { actor: "scheduler".into() },
        EventKind::FrameBegin { published: 5, budget: 6 },
        EventKind::FrameEnd,
        EventKind::Sample {
            queue_depth: 1,
            in_flight: 2,
            busy_io: 3,
            busy_decode: 4,
            events_dropped: 5,
        },
    ]);
    kinds
}

/// A status whose every field differs, so a moved field shows.
fn status() -> Status {
    Status {
        worker_count: 1,
        decode_threads: 2,
        queue_capacity: 3,
        worker_nice: 17,
        in_flight: 4,
        queued: 5,
        requested: 6,
        ready: 7,
        failed: 8,
        cancelled: 9,
        cancelled_after_decode: 10,
        bytes_read: 11,
        retries: 12,
        restarts: 13,
        quarantined: 14,
        events_dropped: 15,
        frame: 16,
    }
}

fn client_samples() -> Vec<ClientMsg> {
    vec![
        ClientMsg::Hello { version: PROTOCOL_VERSION },
        ClientMsg::Load { keys: vec![key("mesh:a")], priority: Priority::High, wait: true },
        ClientMsg::Cancel { requests: vec![RequestId(1)] },
        ClientMsg::Reprioritize { requests: vec![RequestId(2)], priority: Priority::Low },
        ClientMsg::Status,
        ClientMsg::InFlight,
        ClientMsg::Stats,
        ClientMsg::Watch,
        ClientMsg::Shutdown,
    ]
}

fn server_samples() -> Vec<ServerMsg> {
    let infos: Vec<RequestInfo> = LoadState::ALL
        .into_iter()
        .zip(Priority::ALL.into_iter().cycle())
        .map(|(state, priority)| RequestInfo {
            request: RequestId(3),
            key: key("blob:b"),
            state,
            priority,
        })
        .collect();
    let mut samples = vec![
        ServerMsg::Welcome { version: PROTOCOL_VERSION, source: "pack".into() },
        ServerMsg::Status(status()),
        ServerMsg::Loaded(infos.clone()),
        ServerMsg::Ended {
            request: RequestId(4),
            key: key("blob:c"),
            state: LoadState::Failed,
            error: Some("no".into()),
        },
        ServerMsg::Done,
        ServerMsg::InFlight(infos),
        ServerMsg::Stats {
            types: vec![TypeStats {
                asset_type: "blob".into(),
                entries: 1,
                resident: 2,
                parked: 3,
                resident_bytes: 4,
                hits: 5,
                misses: 6,
                evictions: 7,
                quarantined: 8,
            }],
            resident_bytes: 2,
            bytes_resident_max: 3,
        },
    ];
    samples.extend(every_event_kind().into_iter().map(|kind| {
        let event =
            Event::new(1, 2, kind).with_request(RequestId(3)).with_generation(Generation(4));
        let event = event.with_key(key("blob:d")).with_priority(Priority::Low);
        ServerMsg::Event(event.with_bytes(5).with_worker(6))
    }));
    samples.push(ServerMsg::ShuttingDown);
    samples.extend(
        [
            ProtocolError::Version { client: 1, daemon: 2 },
            ProtocolError::HandshakeRequired,
            ProtocolError::Frame(FrameError::TooLarge { len: 9, max: 8 }),
            ProtocolError::Frame(FrameError::Malformed("bad".into())),
            ProtocolError::UnknownRequest(RequestId(5)),
            ProtocolError::Refused("no".into()),
            ProtocolError::Busy(6),
            ProtocolError::ShuttingDown,
            ProtocolError::ReplyTooLarge { bytes: 7, max: 6 },
            ProtocolError::StoppedBadly("log".into()),
        ]
        .map(ServerMsg::Error),
    );
    samples.push(ServerMsg::Waiting { request: RequestId(7), state: LoadState::Loading });
    samples
}

/// Names what a sample is, by a match with no wildcard: a variant added to an enum the wire
/// carries fails to compile here, beside the samples, until an arm names it, so whoever adds
/// it is led to add its sample above (a variant appended at the end changes no pinned byte,
/// yet an older peer cannot read it). The compiler cannot check that the sample was added.
fn variant(msg: &ServerMsg) -> &'static str {
    let error = |e: &ErrorKind| match e {
        ErrorKind::NotFound
        | ErrorKind::Io(_)
        | ErrorKind::Decode(_)
        | ErrorKind::DecoderPanicked(_)
        | ErrorKind::Validation(_)
        | ErrorKind::Corrupt(_)
        | ErrorKind::Denied(_)
        | ErrorKind::DependencyFailed { .. }
        | ErrorKind::QueueFull { .. }
        | ErrorKind::TooLarge { .. }
        | ErrorKind::Quarantined { .. }
        | ErrorKind::WorkerLost(_)
        | ErrorKind::Shutdown => "error kind",
    };
    match msg {
        ServerMsg::Event(Event { kind, .. }) => match kind {
            EventKind::Failed { kind } | EventKind::Retried { kind, .. } => error(kind),
            EventKind::Cancelled { stage } => match stage {
                CancelStage::Queued | CancelStage::Loading | CancelStage::Decoded => "stage",
            },
            EventKind::Started { .. }
            | EventKind::Stopped
            | EventKind::Queued
            | EventKind::Dispatched
            | EventKind::ReadStarted
            | EventKind::ReadDone
            | EventKind::DecodeStarted
            | EventKind::DecodeDone
            | EventKind::Decoded
            | EventKind::Evicted
            | EventKind::Published
            | EventKind::CancelledAfterDecode
            | EventKind::Quarantined { .. }
            | EventKind::Restarted { .. }
            | EventKind::FrameBegin { .. }
            | EventKind::FrameEnd
            | EventKind::Sample { .. } => "event",
        },
        ServerMsg::Loaded(infos) | ServerMsg::InFlight(infos) => {
            for info in infos {
                let _ = match info.state {
                    LoadState::Pending
                    | LoadState::Loading
                    | LoadState::Decoded
                    | LoadState::Ready
                    | LoadState::Failed
                    | LoadState::Cancelled => "state",
                };
                let _ = match info.priority {
                    Priority::Critical
                    | Priority::High
                    | Priority::Normal
                    | Priority::Low
                    | Priority::Background => "priority",
                };
            }
            "requests"
        }
        ServerMsg::Error(e) => match e {
            ProtocolError::Frame(FrameError::TooLarge { .. } | FrameError::Malformed(_))
            | ProtocolError::Version { .. }
            | ProtocolError::HandshakeRequired
            | ProtocolError::UnknownRequest(_)
            | ProtocolError::Refused(_)
            | ProtocolError::Busy(_)
            | ProtocolError::ShuttingDown
            | ProtocolError::ReplyTooLarge { .. }
            | ProtocolError::StoppedBadly(_) => "protocol error",
        },
        ServerMsg::Welcome { .. }
        | ServerMsg::Status(_)
        | ServerMsg::Ended { .. }
        | ServerMsg::Done
        | ServerMsg::Stats { .. }
        | ServerMsg::ShuttingDown
        | ServerMsg::Waiting { .. } => "answer",
    }
}

/// As [`variant`], for what a client sends.
fn client_variant(msg: &ClientMsg) -> &'static str {
    match msg {
        ClientMsg::Hello { .. }
        | ClientMsg::Load { .. }
        | ClientMsg::Cancel { .. }
        | ClientMsg::Reprioritize { .. }
        | ClientMsg::Status
        | ClientMsg::InFlight
        | ClientMsg::Stats
        | ClientMsg::Watch
        | ClientMsg::Shutdown => "request",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_message_is_sent_as_this_protocol_version_pins_it() {
    let (clients, servers) = (client_samples(), server_samples());
    // Compiled for their exhaustive matches (see `variant`); what they name is not checked.
    clients.iter().for_each(|m| {
        let _ = client_variant(m);
    });
    servers.iter().for_each(|m| {
        let _ = variant(m);
    });
    let client = clients.iter().map(|m| hex(&encode_frame(m).expect("encodes")));
    let server = servers.iter().map(|m| hex(&encode_frame(m).expect("encodes")));
    let lines: Vec<String> = client.chain(server).collect();
    let now = lines.join("\n");
    assert!(
        now == GOLDEN.trim() && PROTOCOL_VERSION == GOLDEN_VERSION,
        "the wire changed, or the version did without it: bump PROTOCOL_VERSION (now {}, \
         pinned {GOLDEN_VERSION}) and pin these bytes:\n{now}",
        PROTOCOL_VERSION
    );
}
