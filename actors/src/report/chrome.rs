//! The Chrome trace event format (what Perfetto and `chrome://tracing` load) for a log.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{json, Value};
use streamrt_messages::Record;

use super::spans::SpanPools;

/// The track that carries the per-request async spans and the counters.
const RUNTIME_TID: u32 = 1;

/// The workers' tracks: each (pool, worker) its own thread id, numbered from 2 in the order
/// first seen. Perfetto reads a `tid` as 32 bits (a larger one lands on the process's own
/// track), so ids are dense rather than a pool's base plus the worker's index, which a log's
/// worker numbers could push past 32 bits or onto the other pool's range.
#[derive(Default)]
struct Tracks(BTreeMap<(&'static str, u32), u32>);

impl Tracks {
    fn tid(&mut self, pool: &'static str, worker: u32) -> u32 {
        let next = u32::try_from(self.0.len()).map_or(u32::MAX, |n| n.saturating_add(2));
        *self.0.entry((pool, worker)).or_insert(next)
    }
}

/// A Chrome trace of `records`: `{"traceEvents": [...]}`; see the module docs.
pub fn chrome_trace(records: &[Record]) -> Value {
    let mut events =
        vec![json!({"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "streamrt"}})];
    let mut tracks = Tracks::default();
    let mut open: HashMap<(u32, u64), &Record> = HashMap::new();
    // A request's span begins at its first `queued` (a cache's restart queues it again) and
    // ends at its first terminal line.
    let (mut begun, mut ended) = (HashSet::new(), HashSet::new());
    let mut pools = SpanPools::default();
    for r in records {
        let worker = r.worker.unwrap_or(0);
        if let Some(line) = pools.line(r) {
            if line.starts {
                open.insert((tracks.tid(line.pool, worker), r.generation.unwrap_or(0)), r);
                continue;
            }
            let Some(&tid) = tracks.0.get(&(line.pool, worker)) else { continue };
            if let Some(start) = open.remove(&(tid, r.generation.unwrap_or(0))) {
                events.push(json!({
                    "name": line.stage, "ph": "X", "pid": 1, "tid": tid,
                    "ts": start.t_us, "dur": r.t_us.saturating_sub(start.t_us),
                    "args": {"key": r.key, "request": r.request, "bytes": r.bytes},
                }));
            }
            continue;
        }
        match r.event.as_str() {
            "queued" if begun.insert(r.request) => events.push(json!({
                "name": r.key.clone().unwrap_or_default(), "cat": "request", "ph": "b",
                "id": r.request, "pid": 1, "tid": RUNTIME_TID, "ts": r.t_us,
                "args": {"priority": r.priority},
            })),
            "published" | "failed" | "cancelled" if ended.insert(r.request) => events.push(json!({
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
    for ((pool, worker), tid) in tracks.0 {
        let name = format!("{pool}-{worker}");
        events.push(
            json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": {"name": name}}),
        );
    }
    events.push(json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": RUNTIME_TID, "args": {"name": "requests"}}));
    json!({"traceEvents": events, "displayTimeUnit": "ms"})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(event: &str, worker: u32) -> Record {
        Record { event: event.into(), worker: Some(worker), ..Record::default() }
    }

    #[test]
    fn every_worker_has_a_track_of_its_own_within_32_bits() {
        let records = [
            started("decode_started", 0),
            started("read_started", 100),
            started("read_started", u32::MAX),
            started("decode_started", 100),
        ];
        let trace = chrome_trace(&records);
        let names: BTreeMap<u64, String> = trace["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == "thread_name")
            .map(|e| (e["tid"].as_u64().unwrap(), e["args"]["name"].as_str().unwrap().to_owned()))
            .collect();
        let expected = ["requests", "decode-0", "io-100", "io-4294967295", "decode-100"];
        assert_eq!(names.len(), expected.len(), "{names:?}");
        for name in expected {
            assert!(names.values().any(|n| n == name), "{name} in {names:?}");
        }
        assert!(names.keys().all(|&tid| tid <= u64::from(u32::MAX)), "{names:?}");
    }

    #[test]
    fn an_urgent_loads_decode_sits_on_the_track_of_the_io_worker_that_ran_it() {
        let at = |event: &str, worker: Option<u32>, t_us, priority: Option<&str>| Record {
            event: event.into(),
            generation: Some(7),
            worker,
            t_us,
            priority: priority.map(str::to_owned),
            ..Record::default()
        };
        let records = [
            at("dispatched", None, 0, Some("critical")),
            at("read_started", Some(1), 10, None),
            at("read_done", Some(1), 20, None),
            at("decode_started", Some(1), 20, None),
            at("decode_done", Some(1), 50, None),
        ];
        let trace = chrome_trace(&records);
        let events = trace["traceEvents"].as_array().unwrap();
        let track = |tid: &Value| {
            let names = events.iter().filter(|e| e["name"] == "thread_name");
            names.filter(|e| &e["tid"] == tid).map(|e| e["args"]["name"].clone()).next()
        };
        let spans: Vec<(Value, Option<Value>)> = events
            .iter()
            .filter(|e| e["ph"] == "X")
            .map(|e| (e["name"].clone(), track(&e["tid"])))
            .collect();
        assert_eq!(
            spans,
            [(json!("read"), Some(json!("io-1"))), (json!("decode"), Some(json!("io-1")))]
        );
    }

    #[test]
    fn a_request_queued_twice_has_one_span_from_its_first_queued() {
        let at = |event: &str, t_us| Record {
            event: event.into(),
            request: Some(1),
            t_us,
            ..Record::default()
        };
        let records = [at("queued", 0), at("queued", 900), at("published", 1_000)];
        let trace = chrome_trace(&records);
        let spans: Vec<(String, u64)> = trace["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["cat"] == "request")
            .map(|e| (e["ph"].as_str().unwrap().to_owned(), e["ts"].as_u64().unwrap()))
            .collect();
        assert_eq!(spans, [("b".to_owned(), 0), ("e".to_owned(), 1_000)]);
    }
}
