//! The Chrome trace event format (what Perfetto and `chrome://tracing` load) for a log.

use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Value};
use streamrt_messages::Record;

/// Thread ids: IO worker `i` is track `IO_TID + i`, decode worker `i` is `DECODE_TID + i`;
/// apart by more than any worker index (a `u32`), so no two workers share a track.
const IO_TID: u64 = 1 << 32;
const DECODE_TID: u64 = 2 << 32;
/// The track that carries the per-request async spans and the counters.
const RUNTIME_TID: u64 = 1;

/// A Chrome trace of `records`: `{"traceEvents": [...]}`; see the module docs.
pub fn chrome_trace(records: &[Record]) -> Value {
    let mut events =
        vec![json!({"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "streamrt"}})];
    let mut tracks = BTreeSet::new();
    let mut open: HashMap<(u64, u64), &Record> = HashMap::new();
    for r in records {
        let worker = u64::from(r.worker.unwrap_or(0));
        match r.event.as_str() {
            "read_started" | "decode_started" => {
                let tid = if r.event == "read_started" { IO_TID } else { DECODE_TID } + worker;
                tracks.insert(tid);
                open.insert((tid, r.generation.unwrap_or(0)), r);
            }
            "read_done" | "decode_done" => {
                let (tid, name) =
                    if r.event == "read_done" { (IO_TID, "read") } else { (DECODE_TID, "decode") };
                let tid = tid + worker;
                if let Some(start) = open.remove(&(tid, r.generation.unwrap_or(0))) {
                    events.push(json!({
                        "name": name, "ph": "X", "pid": 1, "tid": tid,
                        "ts": start.t_us, "dur": r.t_us.saturating_sub(start.t_us),
                        "args": {"key": r.key, "request": r.request, "bytes": r.bytes},
                    }));
                }
            }
            "queued" => events.push(json!({
                "name": r.key.clone().unwrap_or_default(), "cat": "request", "ph": "b",
                "id": r.request, "pid": 1, "tid": RUNTIME_TID, "ts": r.t_us,
                "args": {"priority": r.priority},
            })),
            "published" | "failed" | "cancelled" => events.push(json!({
                "name": r.key.clone().unwrap_or_default(), "cat": "request", "ph": "e",
                "id": r.request, "pid": 1, "tid": RUNTIME_TID, "ts": r.t_us,
                "args": {"state": r.event, "error": r.error, "stage": r.stage},
            })),
            "sample" => {
                events.push(json!({
                    "name": "queue_depth", "ph": "C", "pid": 1, "ts": r.t_us,
                    "args": {"queued": r.queue_depth, "in_flight": r.in_flight},
                }));
                events.push(json!({
                    "name": "resident_bytes", "ph": "C", "pid": 1, "ts": r.t_us,
                    "args": {"bytes": r.bytes.unwrap_or(0)},
                }));
            }
            _ => {}
        }
    }
    for tid in tracks {
        let name = if tid >= DECODE_TID {
            format!("decode-{}", tid - DECODE_TID)
        } else {
            format!("io-{}", tid - IO_TID)
        };
        events.push(
            json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": {"name": name}}),
        );
    }
    events.push(json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": RUNTIME_TID, "args": {"name": "requests"}}));
    json!({"traceEvents": events, "displayTimeUnit": "ms"})
}
