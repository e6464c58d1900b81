//! What a simulation run records: the order hash (phases, tasks, publishes, presents) and the
//! Chrome trace of its spans.
//!
//! The hash sees only what must be identical for two runs with the same seed: names, frame
//! numbers, keys and results, never wall-clock times. The trace sees the wall clock.

use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use streamrt::messages::Fnv1a;

use crate::trace_file::TraceFile;

/// FNV-1a over the run's ordering tokens.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrderHash(Fnv1a);

impl OrderHash {
    /// Mixes in one token; tokens are separated so "ab","c" differs from "a","bc".
    pub fn token(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
        self.0.write(&[0xff]);
    }

    /// Mixes in a labelled number.
    pub fn number(&mut self, label: &str, value: u64) {
        self.token(label.as_bytes());
        self.token(&value.to_le_bytes());
    }

    /// The hash so far.
    pub fn value(&self) -> u64 {
        self.0.finish()
    }
}

/// One complete span: a phase on the engine thread or a task on a worker.
#[derive(Debug, Clone)]
pub struct Span {
    pub name: &'static str,
    pub category: &'static str,
    pub thread: String,
    pub start_us: u64,
    pub duration_us: u64,
}

/// The spans of a run, timed against the run's start; kept only when they are to be written
/// (a run of a million frames makes about twenty million).
#[derive(Debug)]
pub struct Trace {
    start: Instant,
    spans: Vec<Span>,
    kept: bool,
}

impl Trace {
    /// A trace whose zero is now, keeping its spans if `kept`.
    pub fn new(kept: bool) -> Self {
        Self { start: Instant::now(), spans: Vec::new(), kept }
    }

    /// Microseconds since the trace's zero.
    pub fn now_us(&self) -> u64 {
        micros(self.start)
    }

    /// The instant the trace counts from, for spans timed on other threads.
    pub fn zero(&self) -> Instant {
        self.start
    }

    /// Records a span, if the trace keeps them.
    pub fn push(&mut self, span: Span) {
        if self.kept {
            self.spans.push(span);
        }
    }

    /// Writes the spans to `file` as a Chrome trace (`chrome://tracing`, Perfetto): one track
    /// per thread.
    pub fn write(&self, file: TraceFile) -> anyhow::Result<()> {
        let mut threads: Vec<&str> = Vec::new();
        let mut events = Vec::with_capacity(self.spans.len() + 8);
        for span in &self.spans {
            let tid = match threads.iter().position(|t| *t == span.thread) {
                Some(i) => i,
                None => {
                    threads.push(&span.thread);
                    threads.len() - 1
                }
            };
            events.push(serde_json::json!({
                "name": span.name, "cat": span.category, "ph": "X", "pid": 1, "tid": tid,
                "ts": span.start_us, "dur": span.duration_us.max(1),
            }));
        }
        for (tid, name) in threads.iter().enumerate() {
            events.push(serde_json::json!({
                "name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": { "name": name },
            }));
        }
        let mut out = std::io::BufWriter::new(file.as_file());
        let written =
            serde_json::to_writer(&mut out, &serde_json::json!({ "traceEvents": events }))
                .map_err(std::io::Error::from)
                .and_then(|()| out.flush());
        drop(out);
        let path = file.path().to_owned();
        written
            .and_then(|()| file.finish())
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Microseconds since `since`.
pub fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// A span of work on the current thread, from `start` (on the trace's clock) to now.
pub fn span_since(
    name: &'static str,
    category: &'static str,
    zero: Instant,
    start_us: u64,
) -> Span {
    let thread = std::thread::current().name().unwrap_or("unnamed").to_owned();
    Span { name, category, thread, start_us, duration_us: micros(zero).saturating_sub(start_us) }
}
