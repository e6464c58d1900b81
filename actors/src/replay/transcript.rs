//! Transcripts: one line per event of a deterministic run — frame, event, request, key, state —
//! with no time, worker or generation, and the hash that sums them up.

use std::fmt;

use serde::Serialize;
use streamrt_messages::{escape_controls, Event, EventKind};

/// One event of a transcript.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TranscriptLine {
    /// The frame index when it happened.
    pub frame: u64,
    /// The event's name (`queued`, `published`, ...).
    pub event: &'static str,
    /// The request concerned, if any.
    pub request: Option<u64>,
    /// The asset concerned, if any.
    pub key: Option<String>,
    /// The request's state after the event, or the event's detail.
    pub state: String,
}

/// Whether `event` is timed by the wall clock (`sample`): a replay's transcript leaves it out,
/// as it depends on how long the replay took.
pub(crate) fn is_wall_clocked(event: &Event) -> bool {
    matches!(event.kind, EventKind::Sample { .. })
}

impl TranscriptLine {
    /// The line of `event`, or `None` for events timed by the wall clock.
    pub(crate) fn of(event: &Event) -> Option<Self> {
        if is_wall_clocked(event) {
            return None;
        }
        let state = match &event.kind {
            EventKind::Sample { .. } => return None,
            EventKind::Started { .. } | EventKind::Stopped | EventKind::FrameEnd => String::new(),
            EventKind::Queued => "pending".into(),
            EventKind::Dispatched
            | EventKind::ReadStarted
            | EventKind::ReadDone
            | EventKind::DecodeStarted
            | EventKind::DecodeDone => "loading".into(),
            EventKind::Decoded => "decoded".into(),
            EventKind::Evicted => format!("evicted {} bytes", event.bytes.unwrap_or(0)),
            EventKind::Published => "ready".into(),
            EventKind::Cancelled { stage } => format!("cancelled while {}", stage.name()),
            EventKind::CancelledAfterDecode => "cancelled; decoded value dropped".into(),
            EventKind::Failed { kind } => format!("failed: {kind}"),
            EventKind::Retried { attempt, kind } => {
                format!("pending: attempt {attempt} after {kind}")
            }
            EventKind::Quarantined { panics } => format!("quarantined after {panics} panics"),
            EventKind::Restarted { actor } => actor.clone(),
            EventKind::FrameBegin { published, budget } => {
                format!("published {published} of budget {budget}")
            }
        };
        Some(Self {
            frame: event.frame,
            event: event.kind.name(),
            request: event.request.map(|r| r.0),
            key: event.key.as_ref().map(ToString::to_string),
            state,
        })
    }
}

impl fmt::Display for TranscriptLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let request = self.request.map_or_else(|| "-".to_owned(), |r| format!("r{r}"));
        let key = escape_controls(self.key.as_deref().unwrap_or("-"));
        let state = escape_controls(&self.state);
        let line = format!("{:>4} {:<22} {request:>5} {key} {state}", self.frame, self.event);
        f.write_str(line.trim_end())
    }
}

/// FNV-1a (64 bits) of the transcript's lines, each followed by a newline: stable across
/// builds and platforms.
pub(crate) fn transcript_hash(lines: &[TranscriptLine]) -> u64 {
    let mut hash = streamrt_messages::Fnv1a::default();
    for line in lines {
        hash.write(line.to_string().as_bytes());
        hash.write(b"\n");
    }
    hash.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_line_detail_or_a_key_with_a_newline_stays_on_its_line() {
        let line = TranscriptLine {
            frame: 3,
            event: "failed",
            request: Some(7),
            key: Some("blob:a\nb".into()),
            state: "failed: decoder panicked: left\n  right\u{1b}[2J".into(),
        };
        let shown = line.to_string();
        assert!(!shown.contains(char::is_control), "{shown:?}");
        let escaped = r"blob:a\nb failed: decoder panicked: left\n  right\u{1b}[2J";
        assert!(shown.ends_with(escaped), "{shown}");
    }
}
