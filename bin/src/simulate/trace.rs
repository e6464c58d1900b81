//! What a simulation run records: the order hash (phases, tasks, publishes, presents) and the
//! Chrome trace of its spans.
//!
//! The hash sees only what must be identical for two runs with the same seed: names, frame
//! numbers, keys and results, never wall-clock times. The trace sees the wall clock.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

/// FNV-1a over the run's ordering tokens.
#[derive(Debug, Clone, Copy)]
pub struct OrderHash(u64);

impl Default for OrderHash {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl OrderHash {
    /// Mixes in one token; tokens are separated so "ab","c" differs from "a","bc".
    pub fn token(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().chain([0xff].iter()) {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// Mixes in a labelled number.
    pub fn number(&mut self, label: &str, value: u64) {
        self.token(label.as_bytes());
        self.token(&value.to_le_bytes());
    }

    /// The hash so far.
    pub fn value(&self) -> u64 {
        self.0
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
    pub fn write(&self, mut file: TraceFile) -> anyhow::Result<()> {
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
        let written = (|| {
            let mut out = std::io::BufWriter::new(file.file.as_ref().context("written once")?);
            serde_json::to_writer(&mut out, &serde_json::json!({ "traceEvents": events }))?;
            out.flush()?;
            anyhow::Ok(())
        })();
        written.with_context(|| format!("cannot write {}", file.path.display()))?;
        file.file = None;
        Ok(())
    }
}

/// The file a trace is written to, created before the run so that a path that cannot be
/// written is refused before the frames, not after them. Dropped unwritten (the run failed),
/// it is removed.
pub struct TraceFile {
    path: PathBuf,
    /// Open until the trace is written whole.
    file: Option<File>,
}

impl TraceFile {
    /// Creates (or truncates) the file at `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be created.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { path: path.to_owned(), file: Some(file) })
    }
}

impl Drop for TraceFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            // A half-written or empty trace would only mislead: best effort, since the run's
            // own error is the one to report.
            let _ = std::fs::remove_file(&self.path);
        }
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
