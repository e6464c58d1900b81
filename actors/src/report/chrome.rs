//! The Chrome trace event format (what Perfetto and `chrome://tracing` load) for a log.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Write};

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

/// The requests' async spans, each a begin (`b`) and an end (`e`) on the requests' track.
///
/// A request's span begins at its first `queued` (a cache's restart queues it again) and ends
/// at its first terminal line. A request refused or cancelled before its cache queued it has
/// no `queued`, and a cancel can race the cache's `queued` and be logged first: a viewer drops
/// an end with no begin before it, and shows that request as never ending. So the pairs are
/// made once the log is read: a span begins at the earlier of the two, and one never queued
/// begins where it ends. It keeps two records a request.
#[derive(Default)]
struct RequestSpans {
    begun: HashMap<Option<u64>, Record>,
    /// In the order the requests ended.
    ended: Vec<Record>,
    ended_ids: HashSet<Option<u64>>,
}

impl RequestSpans {
    fn queued(&mut self, r: &Record) {
        self.begun.entry(r.request).or_insert_with(|| r.clone());
    }

    fn ended(&mut self, r: &Record) {
        if self.ended_ids.insert(r.request) {
            self.ended.push(r.clone());
        }
    }

    /// Every ended request's pair, then a begin for each request that never ended (its span
    /// runs to the end of the trace).
    fn emit(mut self, mut emit: impl FnMut(&Value)) {
        for end in &self.ended {
            let begin = self.begun.remove(&end.request);
            let t_us = begin.as_ref().map_or(end.t_us, |b| b.t_us.min(end.t_us));
            let priority = begin.as_ref().and_then(|b| b.priority.as_deref());
            emit(&begin_event(end, t_us, priority));
            emit(&json!({
                "name": end.key.clone().unwrap_or_default(), "cat": "request", "ph": "e",
                "id": end.request, "pid": 1, "tid": RUNTIME_TID, "ts": end.t_us,
                "args": {"state": end.event, "error": end.error, "stage": end.stage},
            }));
        }
        let mut open: Vec<Record> = self.begun.into_values().collect();
        open.sort_by_key(|r| (r.t_us, r.request));
        for b in &open {
            emit(&begin_event(b, b.t_us, b.priority.as_deref()));
        }
    }
}

fn begin_event(r: &Record, t_us: u64, priority: Option<&str>) -> Value {
    json!({
        "name": r.key.clone().unwrap_or_default(), "cat": "request", "ph": "b",
        "id": r.request, "pid": 1, "tid": RUNTIME_TID, "ts": t_us,
        "args": {"priority": priority},
    })
}

/// A Chrome trace of `records`: `{"traceEvents": [...]}`; see the module docs. Built whole in
/// memory: a long session's log is better written a record at a time ([`ChromeTrace`]).
pub fn chrome_trace(records: &[Record]) -> Value {
    let mut trace = ChromeTrace::new(Vec::new());
    records.iter().for_each(|r| trace.push(r));
    let bytes = trace.finish().expect("writing to memory does not fail");
    serde_json::from_slice(&bytes).expect("the trace is JSON")
}

/// A Chrome trace (`{"traceEvents": [...]}`) written to `out` a record at a time: each worker
/// span and counter as its record comes, the requests' spans at the end. What it keeps grows
/// with the requests a log names and the worker spans open, not with its lines.
///
/// # Errors
///
/// The first write error is kept, nothing is written after it, and [`ChromeTrace::finish`]
/// returns it.
pub struct ChromeTrace<W: Write> {
    out: W,
    error: Option<io::Error>,
    tracks: Tracks,
    /// Worker spans begun and not yet done, by track and generation: their start.
    open: HashMap<(u32, u64), u64>,
    requests: RequestSpans,
    pools: SpanPools,
}

impl<W: Write> ChromeTrace<W> {
    /// Starts the trace in `out` (a buffered writer: it is written an event at a time).
    pub fn new(out: W) -> Self {
        let mut trace = Self {
            out,
            error: None,
            tracks: Tracks::default(),
            open: HashMap::new(),
            requests: RequestSpans::default(),
            pools: SpanPools::default(),
        };
        trace.write(|out| out.write_all(b"{\"traceEvents\":["));
        let name =
            json!({"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "streamrt"}});
        trace.write(|out| serde_json::to_writer(out, &name).map_err(io::Error::from));
        trace
    }

    /// Takes in the log's next record.
    pub fn push(&mut self, r: &Record) {
        let worker = r.worker.unwrap_or(0);
        if let Some(line) = self.pools.line(r) {
            if line.starts {
                let tid = self.tracks.tid(line.pool, worker);
                self.open.insert((tid, r.generation.unwrap_or(0)), r.t_us);
                return;
            }
            let Some(&tid) = self.tracks.0.get(&(line.pool, worker)) else { return };
            if let Some(start) = self.open.remove(&(tid, r.generation.unwrap_or(0))) {
                self.event(&json!({
                    "name": line.stage, "ph": "X", "pid": 1, "tid": tid,
                    "ts": start, "dur": r.t_us.saturating_sub(start),
                    "args": {"key": r.key, "request": r.request, "bytes": r.bytes},
                }));
            }
            return;
        }
        match r.event.as_str() {
            "queued" => self.requests.queued(r),
            "published" | "failed" | "cancelled" => self.requests.ended(r),
            "sample" => {
                self.event(&json!({
                    "name": "queue_depth", "ph": "C", "pid": 1, "ts": r.t_us,
                    "args": {"queued": r.queue_depth, "in_flight": r.in_flight},
                }));
                self.event(&json!({
                    "name": "resident_bytes", "ph": "C", "pid": 1, "ts": r.t_us,
                    "args": {"bytes": r.bytes.unwrap_or(0)},
                }));
            }
            _ => {}
        }
    }

    /// Writes the requests' spans and the tracks' names, ends the trace, and flushes it.
    ///
    /// # Errors
    ///
    /// The first write error.
    pub fn finish(mut self) -> io::Result<W> {
        let requests = std::mem::take(&mut self.requests);
        requests.emit(|event| self.event(event));
        for ((pool, worker), tid) in std::mem::take(&mut self.tracks.0) {
            let name = format!("{pool}-{worker}");
            let args = json!({"name": name});
            self.event(
                &json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": args}),
            );
        }
        let args = json!({"name": "requests"});
        self.event(
            &json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": RUNTIME_TID, "args": args}),
        );
        self.write(|out| out.write_all(b"],\"displayTimeUnit\":\"ms\"}"));
        self.write(Write::flush);
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.out),
        }
    }

    /// Writes `event`, after the one before it.
    fn event(&mut self, event: &Value) {
        self.write(|out| {
            out.write_all(b",")?;
            serde_json::to_writer(out, event).map_err(io::Error::from)
        });
    }

    /// Runs `write` on the output unless an earlier write failed; keeps its error.
    fn write(&mut self, write: impl FnOnce(&mut W) -> io::Result<()>) {
        if self.error.is_none() {
            if let Err(e) = write(&mut self.out) {
                self.error = Some(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(event: &str, worker: u32) -> Record {
        Record { event: event.into(), worker: Some(worker), ..Record::default() }
    }

    #[test]
    fn every_request_span_that_ends_begins_no_later_than_it_ends() {
        let line = |event: &str, request: u64, t_us: u64| Record {
            event: event.into(),
            request: Some(request),
            t_us,
            ..Record::default()
        };
        let records = [
            // Refused before it was queued.
            line("failed", 2, 5),
            // A cancel logged before the cache's `queued`, which raced it.
            line("cancelled", 1, 10),
            line("queued", 1, 12),
            line("queued", 3, 20),
            line("published", 3, 30),
            // Never ended: the log was cut short.
            line("queued", 4, 40),
        ];
        let trace = chrome_trace(&records);
        let spans = |ph: &str| -> BTreeMap<u64, u64> {
            let events = trace["traceEvents"].as_array().unwrap();
            let of = events.iter().filter(|e| e["ph"] == ph);
            of.map(|e| (e["id"].as_u64().unwrap(), e["ts"].as_u64().unwrap())).collect()
        };
        let (begins, ends) = (spans("b"), spans("e"));
        assert_eq!(ends, BTreeMap::from([(1, 10), (2, 5), (3, 30)]));
        assert_eq!(begins, BTreeMap::from([(1, 10), (2, 5), (3, 20), (4, 40)]));
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
