//! Reading a telemetry log (schema v1) and summarising it the way engine teams read it: where
//! the time went, what failed, what was cancelled, per asset type; and a Chrome trace of it.
//!
//! - [`for_each_record`] parses JSON lines into [`Record`]s one at a time, with a typed error
//!   naming the line; [`read_log`] keeps them all.
//! - [`ReportBuilder`] computes the summary a record at a time ([`Report::from_records`] of
//!   records read whole); [`Report::render`] prints it as text,
//!   deterministically (sorted maps, fixed precision), so it can be snapshot-tested.
//! - [`chrome_trace`] builds a trace Perfetto loads: one track per worker with read and decode
//!   spans, an async span per request, counters for queue depth and resident bytes.
//! - `spans` says which pool ran each worker span: an urgent load's decode ran on its IO
//!   worker, and counts there in both.

mod chrome;
mod spans;

pub use chrome::{chrome_trace, ChromeTrace};

use spans::{SpanLine, SpanPools};

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::BufRead;

use serde::{Deserialize, Serialize};
use streamrt_messages::{error_text, escape_controls, Record, TELEMETRY_SCHEMA_VERSION};

/// Why a log could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The file could not be read.
    #[error("reading the log: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not a schema v1 record.
    #[error("line {line}: {message}")]
    Malformed {
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

/// A log line's length at most, in bytes: a record is a few hundred, and a file with no
/// line breaks (`/dev/zero`) must not be read into memory whole.
pub const LINE_BYTES_MAX: usize = 1 << 20;

/// A telemetry log as [`read_log`] read it.
#[derive(Debug, Clone, Default)]
pub struct TelemetryLog {
    /// Its records, in order.
    pub records: Vec<Record>,
    /// The number (from 1) of its last line, skipped because it was cut short: it has no line
    /// break and ends before its record does (the process writing the log was killed
    /// mid-write, or its disk filled).
    pub cut_line: Option<usize>,
}

/// Reads a JSON-lines telemetry log whole. Blank lines are skipped, and so is a last line cut
/// short (see [`TelemetryLog::cut_line`]). It keeps every record: a long session's log is
/// better read a record at a time ([`for_each_record`]).
///
/// # Errors
///
/// As [`for_each_record`].
pub fn read_log(reader: impl BufRead) -> Result<TelemetryLog, LogError> {
    let mut records = Vec::new();
    let cut_line = for_each_record(reader, |r| records.push(r))?;
    Ok(TelemetryLog { records, cut_line })
}

/// Reads a JSON-lines telemetry log a record at a time, handing each to `take`, in order,
/// keeping none: memory stays at a line's ([`LINE_BYTES_MAX`] at most) however long the log.
/// Blank lines are skipped, and so is a last line cut short, whose number (from 1) it returns
/// (see [`TelemetryLog::cut_line`]).
///
/// # Errors
///
/// [`LogError::Malformed`] for a line that is not a record of a known schema version (bytes
/// that are not UTF-8 included), or longer than [`LINE_BYTES_MAX`]; the records before it
/// were handed over.
pub fn for_each_record(
    mut reader: impl BufRead,
    mut take: impl FnMut(Record),
) -> Result<Option<usize>, LogError> {
    let mut bytes = Vec::new();
    for i in 0.. {
        bytes.clear();
        let limit = LINE_BYTES_MAX as u64 + 1;
        if std::io::Read::take(&mut reader, limit).read_until(b'\n', &mut bytes)? == 0 {
            break;
        }
        let whole = bytes.last() == Some(&b'\n');
        match parse_line(i + 1, &mut bytes) {
            Ok(Some(record)) => take(record),
            Ok(None) => {}
            // A last line (`read_until` stopped at the end of the input, not at a line break)
            // that ends before its record does; one whole but wrong is malformed, as any.
            Err(BadLine { incomplete: true, .. }) if !whole => return Ok(Some(i + 1)),
            Err(BadLine { error, .. }) => return Err(error),
        }
    }
    Ok(None)
}

/// A line that is not a record: why, and whether its bytes end before a record would (a line
/// cut short, if it is the last and has no line break).
struct BadLine {
    error: LogError,
    incomplete: bool,
}

/// The record on line `line`, whose `bytes` were read with their line break if any; `None`
/// for a blank line.
fn parse_line(line: usize, bytes: &mut Vec<u8>) -> Result<Option<Record>, BadLine> {
    // Cut: serde quotes a value it did not expect whole, up to the line's megabyte.
    let bad = |message: String, incomplete: bool| BadLine {
        error: LogError::Malformed { line, message: error_text(message) },
        incomplete,
    };
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    } else if bytes.len() > LINE_BYTES_MAX {
        return Err(bad(format!("longer than {LINE_BYTES_MAX} bytes"), false));
    }
    if bytes.trim_ascii().is_empty() {
        return Ok(None);
    }
    // Checked whole: serde skips a field it does not know without looking at its bytes. A
    // character cut in two is incomplete, not invalid (`error_len` is `None`).
    let text =
        std::str::from_utf8(bytes).map_err(|e| bad(e.to_string(), e.error_len().is_none()))?;
    let unknown =
        |v: u32| format!("schema version {v} (this reader knows {TELEMETRY_SCHEMA_VERSION})");
    let record: Record = serde_json::from_str(text).map_err(|e| {
        // A later schema may rename or retype a field this reader needs: its version, read
        // alone, names the cause, where the field's error would not.
        match serde_json::from_str::<SchemaVersion>(text) {
            Ok(SchemaVersion { v }) if v != TELEMETRY_SCHEMA_VERSION => bad(unknown(v), false),
            _ => bad(e.to_string(), e.is_eof()),
        }
    })?;
    if record.v != TELEMETRY_SCHEMA_VERSION {
        return Err(bad(unknown(record.v), false));
    }
    Ok(Some(record))
}

/// A line's schema version alone (serde skips its other fields).
#[derive(Deserialize)]
struct SchemaVersion {
    v: u32,
}

/// The 50th, 95th and 99th percentiles of a sample, in microseconds (0 for an empty one,
/// which `samples` tells apart from a sample of zeros).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    /// How many values the sample holds.
    pub samples: usize,
    /// Median.
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
    /// 99th percentile.
    pub p99: u64,
}

/// The nearest-rank value at quantile `q` (0 to 1) of samples sorted ascending: the smallest
/// sample with at least `q` of the samples at or below it; 0 for none.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Percentiles {
    fn of(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        let at = |q| quantile(&samples, q);
        Self { samples: samples.len(), p50: at(0.50), p95: at(0.95), p99: at(0.99) }
    }
}

/// One asset type's line of the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TypeRow {
    /// Requests of this type.
    pub requests: u64,
    /// Requests that became ready.
    pub ready: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Requests that were cancelled.
    pub cancelled: u64,
    /// Bytes read for this type.
    pub bytes_read: u64,
    /// Median request→ready, in microseconds; `None` when no request of the type became
    /// ready from a queue.
    pub ready_p50_us: Option<u64>,
}

/// The summary of a telemetry log; see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// IO workers (from the `started` event).
    pub worker_count: u32,
    /// Decode threads.
    pub decode_threads: u32,
    /// The scheduler's queue limit.
    pub queue_capacity: u64,
    /// Requests with no terminal event when the log ends.
    pub in_flight: u64,
    /// Requests seen.
    pub requests: u64,
    /// Requests that became ready.
    pub ready: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Requests that were cancelled.
    pub cancelled: u64,
    /// From the first event to the last, in seconds.
    pub duration_s: f64,
    /// Terminal requests per second.
    pub requests_per_s: f64,
    /// MiB read per second.
    pub mib_per_s: f64,
    /// Queued → dispatched of each load.
    pub queue_wait_us: Percentiles,
    /// Queued → ready of each request.
    pub request_to_ready_us: Percentiles,
    /// Share of time IO workers spent reading (0 to 1).
    pub io_utilisation: f64,
    /// Share of time decode workers spent decoding (0 to 1).
    pub decode_utilisation: f64,
    /// The deepest queue sampled.
    pub queue_depth_max: u64,
    /// The mean of the sampled queue depths.
    pub queue_depth_mean: f64,
    /// Failures by error kind.
    pub failures_by_kind: BTreeMap<String, u64>,
    /// Failures by asset type.
    pub failures_by_type: BTreeMap<String, u64>,
    /// Cancellations by stage.
    pub cancellations_by_stage: BTreeMap<String, u64>,
    /// Counts of the other events (`retried`, `restarted`, `quarantined`, `evicted`, ...).
    pub other_events: BTreeMap<String, u64>,
    /// Telemetry events dropped (from the last sample).
    pub events_dropped: u64,
    /// One row per asset type.
    pub types: BTreeMap<String, TypeRow>,
}

/// The time each pool's workers spent on loads, from their start and done events, and the
/// bytes read.
#[derive(Default)]
struct PoolBusy {
    /// When each span not yet done started, by pool, worker and generation.
    open: HashMap<(&'static str, u32, u64), u64>,
    io_us: u64,
    decode_us: u64,
    bytes_read: u64,
}

impl PoolBusy {
    fn key(pool: &'static str, r: &Record) -> (&'static str, u32, u64) {
        (pool, r.worker.unwrap_or(0), r.generation.unwrap_or(0))
    }

    /// Starts or ends the span of `line`, the `r` of a worker.
    fn line(&mut self, line: SpanLine, r: &Record, types: &mut BTreeMap<String, TypeRow>) {
        if line.starts {
            self.open.insert(Self::key(line.pool, r), r.t_us);
        } else {
            self.done(line, r, types);
        }
    }

    /// Ends the span `r` closes; a read's bytes count overall and for its type in `types`.
    fn done(&mut self, line: SpanLine, r: &Record, types: &mut BTreeMap<String, TypeRow>) {
        if let Some(start) = self.open.remove(&Self::key(line.pool, r)) {
            let span = r.t_us.saturating_sub(start);
            // A log is input: sums saturate rather than overflow on figures no run makes.
            if line.pool == "io" {
                self.io_us = self.io_us.saturating_add(span);
            } else {
                self.decode_us = self.decode_us.saturating_add(span);
            }
        }
        if line.stage == "read" {
            let bytes = r.bytes.unwrap_or(0);
            self.bytes_read = self.bytes_read.saturating_add(bytes);
            if let Some(ty) = &r.asset_type {
                let row = types.entry(ty.clone()).or_default();
                row.bytes_read = row.bytes_read.saturating_add(bytes);
            }
        }
    }
}

#[derive(Default)]
struct RequestTimes {
    /// The first `queued`: a cache's restart queues a request again, and its time to ready
    /// still runs from when it was first queued.
    queued: Option<u64>,
    /// Whether the load was dispatched yet: a retry dispatches it again, and its queue wait is
    /// the first dispatch's.
    dispatched: bool,
    asset_type: Option<String>,
    /// The first terminal line: a request ends once, and a second line (a damaged log) counts
    /// for nothing.
    terminal: Option<(String, u64)>,
}

/// A [`Report`] made a record at a time, as a log is read ([`for_each_record`]): what it
/// keeps grows with the requests a log names, not with its lines.
#[derive(Default)]
pub struct ReportBuilder {
    report: Report,
    requests: HashMap<u64, RequestTimes>,
    waits: Vec<u64>,
    busy: PoolBusy,
    pools: SpanPools,
    /// The earliest and latest times seen.
    span: Option<(u64, u64)>,
    /// The sampled queue depths: how many, their sum and the deepest.
    depths: (u64, u128, u64),
}

impl ReportBuilder {
    /// Takes in the log's next record.
    pub fn push(&mut self, r: &Record) {
        self.span =
            Some(self.span.map_or((r.t_us, r.t_us), |(a, b)| (a.min(r.t_us), b.max(r.t_us))));
        if let Some(line) = self.pools.line(r) {
            self.busy.line(line, r, &mut self.report.types);
            return;
        }
        let report = &mut self.report;
        let entry = r.request.map(|id| self.requests.entry(id).or_default());
        match (r.event.as_str(), entry) {
            ("started", _) => {
                report.worker_count = r.worker_count.unwrap_or(0);
                report.decode_threads = r.decode_threads.unwrap_or(0);
                report.queue_capacity = r.queue_capacity.unwrap_or(0);
            }
            ("queued", Some(t)) => {
                t.queued.get_or_insert(r.t_us);
                t.asset_type.clone_from(&r.asset_type);
            }
            ("dispatched", Some(t)) => {
                if let (Some(q), false) = (t.queued, t.dispatched) {
                    t.dispatched = true;
                    self.waits.push(r.t_us.saturating_sub(q));
                }
            }
            (name @ ("published" | "failed" | "cancelled"), Some(t)) if t.terminal.is_none() => {
                t.terminal = Some((name.to_owned(), r.t_us));
                if t.asset_type.is_none() {
                    t.asset_type.clone_from(&r.asset_type);
                }
                report.count_terminal(name, r);
            }
            ("sample", _) => {
                let depth = r.queue_depth.unwrap_or(0);
                let (n, sum, max) = self.depths;
                self.depths = (n + 1, sum + u128::from(depth), max.max(depth));
                report.events_dropped = r.events_dropped.unwrap_or(0);
            }
            (
                name @ ("retried"
                | "restarted"
                | "quarantined"
                | "evicted"
                | "cancelled_after_decode"),
                _,
            ) => {
                *report.other_events.entry(name.to_owned()).or_default() += 1;
            }
            _ => {}
        }
    }

    /// The report of the records taken in.
    pub fn finish(self) -> Report {
        let Self { mut report, requests, waits, busy, span, depths, .. } = self;
        let (first, last) = span.unwrap_or_default();
        report.duration_s = last.saturating_sub(first) as f64 / 1e6;
        report.finish(&requests, waits, busy.bytes_read, (busy.io_us, busy.decode_us));
        let (n, sum, max) = depths;
        report.queue_depth_max = max;
        report.queue_depth_mean = if n == 0 { 0.0 } else { sum as f64 / n as f64 };
        report
    }
}

impl Report {
    /// Summarises a log read whole ([`ReportBuilder`] takes one a record at a time).
    pub fn from_records(records: &[Record]) -> Self {
        let mut builder = ReportBuilder::default();
        records.iter().for_each(|r| builder.push(r));
        builder.finish()
    }

    fn count_terminal(&mut self, name: &str, r: &Record) {
        match name {
            "published" => self.ready += 1,
            "failed" => {
                self.failed += 1;
                let kind = r.error.clone().unwrap_or_else(|| "unknown".into());
                *self.failures_by_kind.entry(kind).or_default() += 1;
                let ty = r.asset_type.clone().unwrap_or_else(|| "unknown".into());
                *self.failures_by_type.entry(ty).or_default() += 1;
            }
            _ => {
                self.cancelled += 1;
                let stage = r.stage.clone().unwrap_or_else(|| "unknown".into());
                *self.cancellations_by_stage.entry(stage).or_default() += 1;
            }
        }
    }

    fn finish(
        &mut self,
        requests: &HashMap<u64, RequestTimes>,
        waits: Vec<u64>,
        bytes_read: u64,
        (busy_io, busy_decode): (u64, u64),
    ) {
        let mut to_ready = Vec::new();
        let mut per_type: HashMap<String, Vec<u64>> = HashMap::new();
        for t in requests.values() {
            self.requests += 1;
            let ty = t.asset_type.clone().unwrap_or_else(|| "unknown".into());
            let row = self.types.entry(ty.clone()).or_default();
            row.requests += 1;
            match &t.terminal {
                None => self.in_flight += 1,
                Some((state, at)) => match state.as_str() {
                    "published" => {
                        row.ready += 1;
                        if let Some(q) = t.queued {
                            to_ready.push(at.saturating_sub(q));
                            per_type.entry(ty).or_default().push(at.saturating_sub(q));
                        }
                    }
                    "failed" => row.failed += 1,
                    _ => row.cancelled += 1,
                },
            }
        }
        for (ty, samples) in per_type {
            if let Some(row) = self.types.get_mut(&ty) {
                row.ready_p50_us = Some(Percentiles::of(samples).p50);
            }
        }
        self.queue_wait_us = Percentiles::of(waits);
        self.request_to_ready_us = Percentiles::of(to_ready);
        let span_us = self.duration_s * 1e6;
        if span_us > 0.0 {
            let terminal = (self.ready + self.failed + self.cancelled) as f64;
            self.requests_per_s = terminal / self.duration_s;
            self.mib_per_s = bytes_read as f64 / f64::from(1 << 20) / self.duration_s;
            let share =
                |busy: u64, threads: u32| busy as f64 / (span_us * f64::from(threads.max(1)));
            self.io_utilisation = share(busy_io, self.worker_count);
            self.decode_utilisation = share(busy_decode, self.decode_threads);
        }
    }

    /// The report as text, one fact per line, in a fixed order.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let kv = |m: &BTreeMap<String, u64>| -> String {
            if m.is_empty() {
                return "none".into();
            }
            // Names from the log: a type's or an error's, shown escaped.
            m.iter()
                .map(|(k, v)| format!("{}={v}", escape_controls(k)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        // An empty sample has no percentiles: 0 would read as no wait at all.
        let p = |p: &Percentiles| match p.samples {
            0 => "none".to_owned(),
            _ => format!("p50={} p95={} p99={}", p.p50, p.p95, p.p99),
        };
        let _ = writeln!(
            out,
            "worker_count={} decode_threads={} queue_capacity={} in_flight={}",
            self.worker_count, self.decode_threads, self.queue_capacity, self.in_flight
        );
        let _ = writeln!(
            out,
            "requests={} ready={} failed={} cancelled={} over {:.3} s",
            self.requests, self.ready, self.failed, self.cancelled, self.duration_s
        );
        let _ = writeln!(
            out,
            "throughput: {:.1} requests/s {:.2} MiB/s",
            self.requests_per_s, self.mib_per_s
        );
        let _ = writeln!(out, "queue wait us: {}", p(&self.queue_wait_us));
        let _ = writeln!(out, "request->ready us: {}", p(&self.request_to_ready_us));
        let _ = writeln!(
            out,
            "utilisation: io={:.1}% decode={:.1}%",
            self.io_utilisation * 100.0,
            self.decode_utilisation * 100.0
        );
        let _ = writeln!(
            out,
            "queue depth: max={} mean={:.1}",
            self.queue_depth_max, self.queue_depth_mean
        );
        let _ = writeln!(out, "failures by kind: {}", kv(&self.failures_by_kind));
        let _ = writeln!(out, "failures by type: {}", kv(&self.failures_by_type));
        let _ = writeln!(out, "cancellations by stage: {}", kv(&self.cancellations_by_stage));
        let _ = writeln!(
            out,
            "other events: {} dropped={}",
            kv(&self.other_events),
            self.events_dropped
        );
        self.render_types(&mut out);
        out
    }

    /// The table of types, one row each, under its header.
    fn render_types(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "{:<12} {:>8} {:>8} {:>8} {:>9} {:>10} {:>12}",
            "type", "requests", "ready", "failed", "cancelled", "MiB read", "p50 ready us"
        );
        for (ty, row) in &self.types {
            let _ = writeln!(
                out,
                "{:<12} {:>8} {:>8} {:>8} {:>9} {:>10.2} {:>12}",
                escape_controls(ty),
                row.requests,
                row.ready,
                row.failed,
                row.cancelled,
                row.bytes_read as f64 / f64::from(1 << 20),
                row.ready_p50_us.map_or_else(|| "-".to_owned(), |us| us.to_string())
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{quantile, read_log, LogError, Report, LINE_BYTES_MAX};

    /// A schema v1 line of `event` for request 1 at `t_us`.
    fn line(event: &str, t_us: u64) -> String {
        format!(r#"{{"v":1,"t_us":{t_us},"frame":0,"event":"{event}","request":1,"type":"blob"}}"#)
    }

    fn report(lines: &[String]) -> Report {
        Report::from_records(&read_log(lines.join("\n").as_bytes()).unwrap().records)
    }

    #[test]
    fn a_request_queued_again_and_retried_keeps_its_first_queued_and_first_dispatch() {
        // Queued, dispatched after 10 us, retried and dispatched again, queued again by a
        // cache's restart, published at 1,000 us.
        let times = [("queued", 0), ("dispatched", 10), ("dispatched", 500), ("queued", 900)];
        let mut lines: Vec<String> = times.iter().map(|&(e, t)| line(e, t)).collect();
        lines.push(line("published", 1_000));
        let r = report(&lines);
        assert_eq!(r.queue_wait_us.p99, 10, "one queue wait per load, its first");
        assert_eq!(r.request_to_ready_us.p50, 1_000, "from the first queued");
    }

    #[test]
    fn an_urgent_loads_decode_is_the_io_workers_busy_time_not_the_decode_pools() {
        // One IO worker and one decode thread over 1,000 us: a critical load read for 100 us
        // and decoded by its IO worker for 300, a normal one decoded on the decode pool for 200.
        let at = |event: &str, generation: u64, t_us: u64, extra: &str| {
            format!(
                r#"{{"v":1,"t_us":{t_us},"frame":0,"event":"{event}","request":{generation},"generation":{generation},"worker":0{extra}}}"#
            )
        };
        let lines = [
            r#"{"v":1,"t_us":0,"frame":0,"event":"started","worker_count":1,"decode_threads":1,"queue_capacity":8}"#.to_owned(),
            at("dispatched", 1, 0, r#","priority":"critical""#),
            at("read_started", 1, 0, ""),
            at("read_done", 1, 100, r#","bytes":10"#),
            at("decode_started", 1, 100, ""),
            at("decode_done", 1, 400, ""),
            at("dispatched", 2, 400, r#","priority":"normal""#),
            at("decode_started", 2, 500, ""),
            at("decode_done", 2, 700, ""),
            at("published", 2, 1_000, ""),
        ];
        let r = report(&lines);
        assert_eq!((r.io_utilisation, r.decode_utilisation), (0.4, 0.2));
        let bytes_read = r.mib_per_s * f64::from(1 << 20) * r.duration_s;
        assert_eq!(bytes_read.round(), 10.0, "a decode's end counts no bytes read");
    }

    #[test]
    fn a_log_with_no_ready_request_renders_no_latency_rather_than_zero() {
        let lines = [line("cancelled", 10)];
        let text = report(&lines).render();
        assert!(text.contains("queue wait us: none\n"), "{text}");
        assert!(text.contains("request->ready us: none\n"), "{text}");
        let row = text.lines().find(|l| l.starts_with("blob")).expect("the blob row");
        assert!(row.ends_with(" -"), "{row}");
    }

    #[test]
    fn names_from_the_log_render_with_their_control_characters_escaped() {
        let hostile = r#"{"v":1,"t_us":5,"frame":0,"event":"failed","request":1,"type":"b\u001b[2J\nready=9","error":"io"}"#;
        let text = report(&[line("queued", 0), hostile.to_owned()]).render();
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains(r"failures by type: b\u{1b}[2J\nready=9=1"), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("ready=9")), "no line forged: {text}");
    }

    #[test]
    fn a_request_with_two_terminal_lines_is_counted_once() {
        let lines = [line("queued", 0), line("published", 10), line("cancelled", 20)];
        let r = report(&lines);
        assert_eq!((r.requests, r.ready, r.cancelled), (1, 1, 0));
    }

    #[test]
    fn a_line_that_is_not_utf8_or_too_long_is_malformed_with_its_number() {
        let mut bytes = format!("{}\n", line("queued", 0)).into_bytes();
        // A whole line but for one byte that is not UTF-8, in a field the reader skips.
        bytes.extend_from_slice(
            b"{\"v\":1,\"t_us\":0,\"frame\":0,\"event\":\"queued\",\"x\":\"\xff\"}\n",
        );
        let refused = read_log(bytes.as_slice()).unwrap_err();
        assert!(matches!(refused, LogError::Malformed { line: 2, .. }), "{refused}");
        // No line break at all: refused at the limit, not read into memory whole.
        let endless = std::io::Read::take(std::io::repeat(b'x'), 64 << 20);
        let refused = read_log(std::io::BufReader::new(endless)).unwrap_err();
        let message = format!("line 1: longer than {LINE_BYTES_MAX} bytes");
        assert_eq!(refused.to_string(), message);
        // A value of the wrong type, which serde quotes whole: cut in the error.
        let wrong = format!("{{\"v\":1,\"t_us\":\"{}\"}}\n", "a".repeat(LINE_BYTES_MAX / 2));
        let refused = read_log(wrong.as_bytes()).unwrap_err().to_string();
        assert!(refused.len() <= streamrt_messages::ERROR_TEXT_BYTES_MAX + 16, "{}", refused.len());
    }

    #[test]
    fn a_last_line_cut_short_is_left_out_and_named_and_a_cut_line_before_others_is_malformed() {
        let whole = format!("{}\n{}\n", line("queued", 0), line("published", 10));
        let cut = format!("{whole}{}", &line("queued", 20)[..25]);
        let log = read_log(cut.as_bytes()).unwrap();
        assert_eq!((log.records.len(), log.cut_line), (2, Some(3)));
        let log = read_log(whole.as_bytes()).unwrap();
        assert_eq!((log.records.len(), log.cut_line), (2, None));
        // A record whose line break alone is missing is whole.
        let log = read_log(whole.trim_end().as_bytes()).unwrap();
        assert_eq!((log.records.len(), log.cut_line), (2, None));
        let inside = format!("{}\n{whole}", &line("queued", 20)[..25]);
        let refused = read_log(inside.as_bytes()).unwrap_err();
        assert!(matches!(refused, LogError::Malformed { line: 1, .. }), "{refused}");
        // A last line whole but wrong (another schema, a bad byte) is malformed, not cut.
        let other = format!("{whole}{}", line("queued", 20).replace("\"v\":1", "\"v\":9"));
        let refused = read_log(other.as_bytes()).unwrap_err();
        assert!(matches!(refused, LogError::Malformed { line: 3, .. }), "{refused}");
        // Named by its version, also where that schema renamed a field this one needs.
        let renamed = line("queued", 20).replace("\"v\":1", "\"v\":2").replace("event", "kind");
        let refused = read_log(format!("{whole}{renamed}\n").as_bytes()).unwrap_err();
        assert!(refused.to_string().contains("schema version 2"), "{refused}");
        let mut bad_byte = whole.clone().into_bytes();
        bad_byte.extend_from_slice(b"{\"v\":1,\"x\":\"\xff\"}");
        let refused = read_log(bad_byte.as_slice()).unwrap_err();
        assert!(matches!(refused, LogError::Malformed { line: 3, .. }), "{refused}");
        // A character cut in two at the end is a cut line.
        let mut cut_char = whole.into_bytes();
        cut_char.extend_from_slice("{\"v\":1,\"key\":\"blob:é".as_bytes());
        cut_char.pop();
        let log = read_log(cut_char.as_slice()).unwrap();
        assert_eq!((log.records.len(), log.cut_line), (2, Some(3)));
    }

    #[test]
    fn quantiles_pick_the_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.95), 95);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&v, 0.0), 1);
        assert_eq!(quantile(&[10, 1000], 0.5), 10, "the lower middle of an even count");
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
