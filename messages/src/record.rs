//! Telemetry schema v1: one JSON object per line, flat, with absent fields omitted.
//!
//! [`Record`] is the line's shape. It is what the sink writes (from an [`Event`]) and what
//! `streamctl report` reads; its field names are the documented, stable schema
//! (`docs/TELEMETRY.md`). New optional fields may be added within v1; removing or renaming one
//! makes v2.

use serde::{Deserialize, Serialize};

use crate::{Event, EventKind};

/// The schema version written in every line's `v` field.
pub const TELEMETRY_SCHEMA_VERSION: u32 = 1;

/// One line of a telemetry log.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Record {
    /// Schema version.
    pub v: u32,
    /// Monotonic microseconds since the runtime started.
    pub t_us: u64,
    /// The frame index.
    pub frame: u64,
    /// The event's name (`queued`, `published`, `failed`, ...).
    pub event: String,
    /// The request concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<u64>,
    /// The load concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// The asset, as `type:path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The asset type.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub asset_type: Option<String>,
    /// The priority's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Bytes read, decoded or published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The worker's index in its pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<u32>,
    /// `cancelled`: the stage (`queued`, `loading`, `decoded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// `failed`, `retried`: the error kind's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `failed`, `retried`: the error's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `retried`: the attempt about to start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// `quarantined`: the panics that led to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panics: Option<u32>,
    /// `restarted`: which actor or worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// `frame_begin`: requests published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<u32>,
    /// `frame_begin`: the count budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<u32>,
    /// `sample`: loads queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_depth: Option<u64>,
    /// `sample`: loads in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<u64>,
    /// `sample`: IO workers busy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy_io: Option<u32>,
    /// `sample`: decode workers busy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy_decode: Option<u32>,
    /// `sample`: events dropped so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_dropped: Option<u64>,
    /// `started`: IO workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_count: Option<u32>,
    /// `started`: decode threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode_threads: Option<u32>,
    /// `started`: the scheduler's queue limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_capacity: Option<u64>,
    /// `started`: whether an urgent load's decode runs on the IO worker that read it; absent
    /// in logs written before the field, whose runtimes always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urgent_decodes_on_io: Option<bool>,
}

impl From<&Event> for Record {
    fn from(e: &Event) -> Self {
        let mut r = Record {
            v: TELEMETRY_SCHEMA_VERSION,
            t_us: e.t_us,
            frame: e.frame,
            event: e.kind.name().to_owned(),
            request: e.request.map(|r| r.0),
            generation: e.generation.map(|g| g.0),
            key: e.key.as_ref().map(ToString::to_string),
            asset_type: e.key.as_ref().map(|k| k.asset_type().to_string()),
            priority: e.priority.map(|p| p.name().to_owned()),
            bytes: e.bytes,
            worker: e.worker,
            ..Record::default()
        };
        match &e.kind {
            EventKind::Started {
                worker_count,
                decode_threads,
                queue_capacity,
                urgent_decodes_on_io,
            } => {
                r.worker_count = Some(*worker_count);
                r.decode_threads = Some(*decode_threads);
                r.queue_capacity = Some(*queue_capacity);
                r.urgent_decodes_on_io = Some(*urgent_decodes_on_io);
            }
            EventKind::Cancelled { stage } => r.stage = Some(stage.name().to_owned()),
            EventKind::Failed { kind } => {
                r.error = Some(kind.name().to_owned());
                r.message = Some(kind.to_string());
            }
            EventKind::Retried { attempt, kind } => {
                r.attempt = Some(*attempt);
                r.error = Some(kind.name().to_owned());
                r.message = Some(kind.to_string());
            }
            EventKind::Quarantined { panics } => r.panics = Some(*panics),
            EventKind::Restarted { actor } => r.actor = Some(actor.clone()),
            EventKind::FrameBegin { published, budget } => {
                r.published = Some(*published);
                r.budget = Some(*budget);
            }
            EventKind::Sample { queue_depth, in_flight, busy_io, busy_decode, events_dropped } => {
                r.queue_depth = Some(*queue_depth);
                r.in_flight = Some(*in_flight);
                r.busy_io = Some(*busy_io);
                r.busy_decode = Some(*busy_decode);
                r.events_dropped = Some(*events_dropped);
            }
            _ => {}
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AssetKey, CancelStage, Priority, RequestId};

    #[test]
    fn records_are_flat_and_omit_absent_fields() {
        let e = Event::new(42, 3, EventKind::Cancelled { stage: CancelStage::Loading })
            .with_request(RequestId(7))
            .with_key(AssetKey::parse("mesh:a/b").unwrap())
            .with_priority(Priority::High);
        let line = serde_json::to_string(&Record::from(&e)).unwrap();
        assert_eq!(
            line,
            r#"{"v":1,"t_us":42,"frame":3,"event":"cancelled","request":7,"key":"mesh:a/b","type":"mesh","priority":"high","stage":"loading"}"#
        );
        let back: Record = serde_json::from_str(&line).unwrap();
        assert_eq!(back, Record::from(&e));
    }
}

/// Writes `s` as a JSON string literal.
fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_escaped(out, s);
    out.push(b'"');
}

/// Writes `name` as a JSON string literal without looking for characters to escape: for the
/// names the schema defines (event kinds, priorities, stages, error kinds) and asset type
/// names, which are validated to `[a-z0-9_-]`. Most of a line's strings are these, and
/// scanning them was a quarter of the sink's instructions (`streamctl bench telemetry`).
fn write_name(out: &mut Vec<u8>, name: &str) {
    debug_assert!(!needs_escape(name), "{name:?} needs escaping");
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.push(b'"');
}

fn needs_escape(s: &str) -> bool {
    s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
}

fn write_escaped(out: &mut Vec<u8>, s: &str) {
    // Paths, messages and actor names rarely need escaping: those are copied whole.
    if !needs_escape(s) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            // The short escapes serde_json writes.
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0..=0x1f => {
                let hex = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(hex[usize::from(b >> 4)]);
                out.push(hex[usize::from(b & 0xf)]);
            }
            _ => out.push(b),
        }
    }
}

/// Appends `field` (a name with its punctuation, as `b",\"t_us\":"`) and `value`. The name's
/// length is known in each instance, so it is copied without a call to `memcpy`: a line
/// has several numbers, and those calls were a tenth of the sink's instructions.
fn write_u64<const N: usize>(out: &mut Vec<u8>, field: &[u8; N], value: u64) {
    out.extend_from_slice(field);
    push_u64(out, value);
}

/// Appends `value` in decimal. The sink writes every event of a run, several numbers each,
/// and `write!`'s formatting machinery was a third of its thread's time
/// (`streamctl bench telemetry`); `itoa` writes two digits a step.
fn push_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Room for a line without its key's path or an error's message, so that writing one grows
/// the buffer once at most.
const LINE_BYTES_TYPICAL: usize = 320;

impl Event {
    /// Appends this event's schema v1 line (with its newline) to `out`: the same JSON as
    /// serialising `Record::from(self)`, written without building the record, because the
    /// sink writes every event of a run.
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        out.reserve(LINE_BYTES_TYPICAL + self.key.as_ref().map_or(0, |k| k.path().len()));
        out.extend_from_slice(b"{\"v\":");
        push_u64(out, u64::from(TELEMETRY_SCHEMA_VERSION));
        write_u64(out, b",\"t_us\":", self.t_us);
        write_u64(out, b",\"frame\":", self.frame);
        out.extend_from_slice(b",\"event\":");
        write_name(out, self.kind.name());
        if let Some(r) = self.request {
            write_u64(out, b",\"request\":", r.0);
        }
        if let Some(g) = self.generation {
            write_u64(out, b",\"generation\":", g.0);
        }
        if let Some(k) = &self.key {
            out.extend_from_slice(b",\"key\":\"");
            out.extend_from_slice(k.asset_type().as_str().as_bytes());
            out.push(b':');
            write_escaped(out, k.path());
            out.extend_from_slice(b"\",\"type\":");
            write_name(out, k.asset_type().as_str());
        }
        if let Some(p) = self.priority {
            out.extend_from_slice(b",\"priority\":");
            write_name(out, p.name());
        }
        if let Some(b) = self.bytes {
            write_u64(out, b",\"bytes\":", b);
        }
        if let Some(w) = self.worker {
            write_u64(out, b",\"worker\":", u64::from(w));
        }
        self.write_kind_fields(out);
        out.extend_from_slice(b"}\n");
    }

    fn write_kind_fields(&self, out: &mut Vec<u8>) {
        let error = |out: &mut Vec<u8>, kind: &crate::ErrorKind| {
            out.extend_from_slice(b",\"error\":");
            write_name(out, kind.name());
            out.extend_from_slice(b",\"message\":");
            write_str(out, &kind.to_string());
        };
        match &self.kind {
            EventKind::Started {
                worker_count,
                decode_threads,
                queue_capacity,
                urgent_decodes_on_io,
            } => {
                write_u64(out, b",\"worker_count\":", u64::from(*worker_count));
                write_u64(out, b",\"decode_threads\":", u64::from(*decode_threads));
                write_u64(out, b",\"queue_capacity\":", *queue_capacity);
                out.extend_from_slice(b",\"urgent_decodes_on_io\":");
                out.extend_from_slice(if *urgent_decodes_on_io { b"true" } else { b"false" });
            }
            EventKind::Cancelled { stage } => {
                out.extend_from_slice(b",\"stage\":");
                write_name(out, stage.name());
            }
            EventKind::Failed { kind } => error(out, kind),
            EventKind::Retried { attempt, kind } => {
                error(out, kind);
                write_u64(out, b",\"attempt\":", u64::from(*attempt));
            }
            EventKind::Quarantined { panics } => {
                write_u64(out, b",\"panics\":", u64::from(*panics))
            }
            EventKind::Restarted { actor } => {
                out.extend_from_slice(b",\"actor\":");
                write_str(out, actor);
            }
            EventKind::FrameBegin { published, budget } => {
                write_u64(out, b",\"published\":", u64::from(*published));
                write_u64(out, b",\"budget\":", u64::from(*budget));
            }
            EventKind::Sample { queue_depth, in_flight, busy_io, busy_decode, events_dropped } => {
                write_u64(out, b",\"queue_depth\":", *queue_depth);
                write_u64(out, b",\"in_flight\":", *in_flight);
                write_u64(out, b",\"busy_io\":", u64::from(*busy_io));
                write_u64(out, b",\"busy_decode\":", u64::from(*busy_decode));
                write_u64(out, b",\"events_dropped\":", *events_dropped);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod writer_tests {
    use super::*;
    use crate::{AssetKey, CancelStage, ErrorKind, Generation, Priority, RequestId};

    fn samples() -> Vec<Event> {
        let key = AssetKey::parse("mesh:we\"ird/\u{1}pa\n\tth\r\u{8}\u{c}").unwrap();
        let kinds = vec![
            EventKind::Started {
                worker_count: 2,
                decode_threads: 3,
                queue_capacity: 64,
                urgent_decodes_on_io: false,
            },
            EventKind::Queued,
            EventKind::ReadDone,
            EventKind::Cancelled { stage: CancelStage::Decoded },
            EventKind::Failed { kind: ErrorKind::Io("disk \"gone\"\n\tat sector 7".into()) },
            EventKind::Retried { attempt: 2, kind: ErrorKind::WorkerLost("x".into()) },
            EventKind::Quarantined { panics: 3 },
            EventKind::Restarted { actor: "cache:mesh".into() },
            EventKind::FrameBegin { published: 4, budget: 8 },
            EventKind::Sample {
                queue_depth: 1,
                in_flight: 2,
                busy_io: 1,
                busy_decode: 0,
                events_dropped: 9,
            },
        ];
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| {
                Event::new(i as u64, 7, kind)
                    .with_request(RequestId(5))
                    .with_generation(Generation(6))
                    .with_key(key.clone())
                    .with_priority(Priority::Low)
                    .with_bytes(99)
                    .with_worker(1)
            })
            .chain([Event::new(1, 0, EventKind::Stopped)])
            .chain([0, 9, 10, 1_000_007, u64::MAX].map(|t| Event::new(t, t, EventKind::Published)))
            .collect()
    }

    #[test]
    fn the_fast_writer_writes_exactly_the_record() {
        for e in samples() {
            let mut line = Vec::new();
            e.write_json_line(&mut line);
            let mut want = serde_json::to_vec(&Record::from(&e)).unwrap();
            want.push(b'\n');
            assert_eq!(String::from_utf8(line).unwrap(), String::from_utf8(want).unwrap());
        }
    }
}
