//! Which pool ran each worker span of a log: a read ran on the IO pool; a decode ran on the
//! decode pool, unless its load was urgent (`High` or `Critical`) as its read ended, by the
//! priority its `read_done` line gives, in a runtime that decodes urgent loads on the IO worker
//! that read them (`work.rs`; `docs/TELEMETRY.md`, the `worker` field and `started`'s
//! `urgent_decodes_on_io`, absent in older logs, whose runtimes always did). A log whose
//! `read_done` lines give no priority (an older runtime's) is read by its `dispatched`
//! priority.
//! Both the report and the Chrome trace read spans through [`SpanPools`], so an urgent decode
//! counts as the IO worker's busy time, not the decode pool's, and sits on that IO worker's
//! track: counted as a decode worker's, it pushed decode utilisation past 100 % with few
//! decode threads and overlapped a decode worker's own spans on its track.
//!
//! The rule is the threaded runtime's. A deterministic runtime (a replay) decodes urgent loads
//! on its decode pool too, but its events go to its tap, never to a log this reads.

use std::collections::HashSet;

use streamrt_messages::{Priority, Record};

use crate::work::URGENT;

/// What a span's line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SpanLine {
    /// The pool that ran it: `io` or `decode`.
    pub(super) pool: &'static str,
    /// `read` or `decode`.
    pub(super) stage: &'static str,
    /// Whether the line starts the span (else it ends it).
    pub(super) starts: bool,
}

/// The loads decoded on their IO worker, by generation, from the log's `started`,
/// `dispatched` and `read_done` lines so far.
pub(super) struct SpanPools {
    urgent: HashSet<u64>,
    /// From the `started` line; until one, or without the field, as runtimes always did.
    urgent_decodes_on_io: bool,
}

impl Default for SpanPools {
    fn default() -> Self {
        Self { urgent: HashSet::new(), urgent_decodes_on_io: true }
    }
}

impl SpanPools {
    /// Takes in `r`; if it starts or ends a worker's span, what span and which pool ran it.
    pub(super) fn line(&mut self, r: &Record) -> Option<SpanLine> {
        let (stage, starts) = match r.event.as_str() {
            "started" => {
                self.urgent_decodes_on_io = r.urgent_decodes_on_io.unwrap_or(true);
                return None;
            }
            "dispatched" => {
                self.dispatched(r);
                return None;
            }
            "read_started" => ("read", true),
            "read_done" => {
                self.read_done(r);
                ("read", false)
            }
            "decode_started" => ("decode", true),
            "decode_done" => ("decode", false),
            _ => return None,
        };
        let urgent = || r.generation.is_some_and(|g| self.urgent.contains(&g));
        let pool = if stage == "read" || urgent() { "io" } else { "decode" };
        if stage == "decode" && !starts {
            if let Some(g) = r.generation {
                self.urgent.remove(&g);
            }
        }
        Some(SpanLine { pool, stage, starts })
    }

    /// Where a read load is decoded, by its priority as the read ended, if the line gives it:
    /// a raise since its dispatch may have made it urgent, and a failed read decodes nothing.
    fn read_done(&mut self, r: &Record) {
        let priority = r.priority.as_deref().and_then(Priority::parse);
        let (Some(generation), Some(priority)) = (r.generation, priority) else { return };
        if priority <= URGENT && self.urgent_decodes_on_io && r.bytes.is_some() {
            self.urgent.insert(generation);
        } else {
            self.urgent.remove(&generation);
        }
    }

    fn dispatched(&mut self, r: &Record) {
        let priority = r.priority.as_deref().and_then(Priority::parse);
        if let (Some(generation), Some(priority)) = (r.generation, priority) {
            if priority <= URGENT && self.urgent_decodes_on_io {
                self.urgent.insert(generation);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event: &str, generation: u64, priority: Option<&str>) -> Record {
        Record {
            event: event.into(),
            generation: Some(generation),
            priority: priority.map(str::to_owned),
            ..Record::default()
        }
    }

    #[test]
    fn an_urgent_loads_decode_ran_on_the_io_pool_and_any_other_on_the_decode_pool() {
        let mut pools = SpanPools::default();
        assert_eq!(pools.line(&record("dispatched", 1, Some("critical"))), None);
        pools.line(&record("dispatched", 2, Some("normal")));
        pools.line(&record("dispatched", 3, Some("high")));
        let pool = |pools: &mut SpanPools, event: &str, g: u64| {
            pools.line(&record(event, g, None)).map(|s| (s.pool, s.stage, s.starts))
        };
        assert_eq!(pool(&mut pools, "read_done", 2), Some(("io", "read", false)));
        assert_eq!(pool(&mut pools, "decode_started", 1), Some(("io", "decode", true)));
        assert_eq!(pool(&mut pools, "decode_done", 1), Some(("io", "decode", false)));
        assert_eq!(pool(&mut pools, "decode_started", 2), Some(("decode", "decode", true)));
        assert_eq!(pool(&mut pools, "decode_done", 3), Some(("io", "decode", false)));
        assert_eq!(pool(&mut pools, "published", 3), None);
        assert!(pools.urgent.is_empty(), "a load's entry goes with its decode's end");
    }

    #[test]
    fn the_priority_a_read_ended_at_says_where_its_load_was_decoded() {
        let mut pools = SpanPools::default();
        let read_done = |g: u64, priority: &str, bytes: Option<u64>| Record {
            bytes,
            ..record("read_done", g, Some(priority))
        };
        pools.line(&record("dispatched", 1, Some("normal")));
        pools.line(&record("dispatched", 2, Some("critical")));
        pools.line(&record("dispatched", 3, Some("critical")));
        // Raised to urgent while read; not urgent as its read ended; failed.
        pools.line(&read_done(1, "critical", Some(10)));
        pools.line(&read_done(2, "normal", Some(10)));
        pools.line(&read_done(3, "critical", None));
        let pool = |pools: &mut SpanPools, g: u64| {
            pools.line(&record("decode_started", g, None)).map(|s| s.pool)
        };
        assert_eq!(pool(&mut pools, 1), Some("io"));
        assert_eq!(pool(&mut pools, 2), Some("decode"));
        assert!(!pools.urgent.contains(&3), "a failed read decodes nothing: nothing kept");
    }

    #[test]
    fn a_runtime_that_decodes_every_load_on_its_decode_threads_says_so_at_its_start() {
        let mut pools = SpanPools::default();
        let started = Record {
            event: "started".into(),
            urgent_decodes_on_io: Some(false),
            ..Record::default()
        };
        assert_eq!(pools.line(&started), None);
        pools.line(&record("dispatched", 1, Some("critical")));
        let line = pools.line(&record("decode_started", 1, None));
        assert_eq!(line.map(|s| s.pool), Some("decode"));
        assert!(pools.urgent.is_empty());
    }
}
