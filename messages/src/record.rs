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
            EventKind::Started { worker_count, decode_threads, queue_capacity } => {
                r.worker_count = Some(*worker_count);
                r.decode_threads = Some(*decode_threads);
                r.queue_capacity = Some(*queue_capacity);
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
