//! The events a replay keeps for its transcript, and the two limits on them: a count and the
//! bytes they and their transcript lines take.
//!
//! # Invariants
//!
//! - At most `max` events are kept, taking at most `bytes_max` by [`held_bytes`]'s estimate;
//!   the first event past either is dropped and makes [`Kept::check`] fail from then on.
//! - Events a wall clock emits are never kept nor counted, so the limits do not depend on how
//!   long a replay took.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use streamrt_messages::{ErrorKind, Event, EventKind};

use super::transcript::{self, TranscriptLine};
use super::{ReplayError, ReplayOptions, REPLAY_EVENTS_MAX, REPLAY_KEPT_BYTES_MAX};
use crate::lock::lock;

/// The events a replay keeps for its transcript: at most `max`, taking at most `bytes_max`;
/// one more makes the replay stop with `TooManyEvents` or `TooManyEventBytes` (checked at the
/// end of each record and after the replay's own shutdown).
pub(super) struct Kept {
    held: Mutex<Held>,
    max: usize,
    bytes_max: u64,
    overflowed: AtomicBool,
}

#[derive(Default)]
struct Held {
    events: Vec<Event>,
    bytes: u64,
    /// Which limit an event went past first, once one did.
    past: Option<Past>,
}

#[derive(Clone, Copy)]
enum Past {
    Count,
    Bytes,
}

impl Kept {
    pub(super) fn new(options: ReplayOptions) -> Self {
        Self {
            held: Mutex::default(),
            max: options.events_max.map_or(REPLAY_EVENTS_MAX, |max| max.min(REPLAY_EVENTS_MAX)),
            bytes_max: options
                .event_bytes_max
                .map_or(REPLAY_KEPT_BYTES_MAX, |max| max.min(REPLAY_KEPT_BYTES_MAX)),
            overflowed: AtomicBool::new(false),
        }
    }

    pub(super) fn keep(&self, event: &Event) {
        // Left out of the transcript, and so of the limits, which they would make depend on
        // how long the replay took.
        if transcript::is_wall_clocked(event) {
            return;
        }
        let bytes = held_bytes(event);
        let mut held = lock(&self.held);
        if held.past.is_some() {
            return;
        }
        let past = if held.events.len() >= self.max {
            Some(Past::Count)
        } else if held.bytes.saturating_add(bytes) > self.bytes_max {
            Some(Past::Bytes)
        } else {
            None
        };
        match past {
            None => {
                held.events.push(event.clone());
                held.bytes += bytes;
            }
            Some(past) => {
                held.past = Some(past);
                self.overflowed.store(true, Ordering::Relaxed);
            }
        }
    }

    /// The limit's error at `offset` once an event was past it.
    pub(super) fn check(&self, offset: u64) -> Result<(), ReplayError> {
        if !self.overflowed.load(Ordering::Relaxed) {
            return Ok(());
        }
        Err(match lock(&self.held).past {
            Some(Past::Bytes) => ReplayError::TooManyEventBytes { offset, max: self.bytes_max },
            _ => ReplayError::TooManyEvents { offset, max: self.max },
        })
    }

    /// The events kept, in the order they came.
    pub(super) fn take(&self) -> Vec<Event> {
        std::mem::take(&mut lock(&self.held).events)
    }
}

/// What keeping `event` takes, in bytes: the event's copy and the transcript line made of it
/// later, each holding its key and its error's text (a failure shared by a million requests
/// gives each its own copy of the text, up to `ERROR_TEXT_BYTES_MAX`).
fn held_bytes(event: &Event) -> u64 {
    let key = event.key.as_ref().map_or(0, |k| k.asset_type().as_str().len() + k.path().len() + 1);
    let text = match &event.kind {
        EventKind::Failed { kind } | EventKind::Retried { kind, .. } => error_text_bytes(kind),
        EventKind::Restarted { actor } => actor.len(),
        _ => 0,
    };
    let fixed = size_of::<Event>() + size_of::<TranscriptLine>();
    u64::try_from(fixed + key + 2 * text).unwrap_or(u64::MAX)
}

/// The heap bytes of `kind`'s text, with a little for the words its display adds.
fn error_text_bytes(kind: &ErrorKind) -> usize {
    let text = match kind {
        ErrorKind::Io(m)
        | ErrorKind::Decode(m)
        | ErrorKind::DecoderPanicked(m)
        | ErrorKind::Validation(m)
        | ErrorKind::Corrupt(m)
        | ErrorKind::Denied(m)
        | ErrorKind::WorkerLost(m) => m.len(),
        ErrorKind::DependencyFailed { dependency, cause } => {
            dependency.path().len() + dependency.asset_type().as_str().len() + cause.len()
        }
        _ => 0,
    };
    text + 32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(events_max: usize, event_bytes_max: u64) -> ReplayOptions {
        ReplayOptions {
            events_max: Some(events_max),
            event_bytes_max: Some(event_bytes_max),
            ..ReplayOptions::default()
        }
    }

    #[test]
    fn the_events_limit_leaves_out_the_samples_a_wall_clock_timer_emits() {
        let kept = Kept::new(options(1, u64::MAX));
        let sample = EventKind::Sample {
            queue_depth: 0,
            in_flight: 0,
            busy_io: 0,
            busy_decode: 0,
            events_dropped: 0,
        };
        for _ in 0..3 {
            kept.keep(&Event::new(0, 0, sample.clone()));
        }
        kept.keep(&Event::new(0, 0, EventKind::Restarted { actor: "cache".into() }));
        assert!(kept.check(0).is_ok(), "one event kept, its limit");
        assert_eq!(kept.take().len(), 1);
    }

    #[test]
    fn events_with_long_error_texts_stop_at_the_bytes_limit_before_the_count() {
        let failed = |text: &str| EventKind::Failed { kind: ErrorKind::Decode(text.into()) };
        let short = held_bytes(&Event::new(0, 0, failed("x")));
        let long = held_bytes(&Event::new(0, 0, failed(&"x".repeat(4_096))));
        assert!(long >= short + 2 * 4_095, "each copy of the text counts: {long} against {short}");
        let kept = Kept::new(options(100, 10 * long));
        for _ in 0..10 {
            kept.keep(&Event::new(0, 0, failed(&"x".repeat(4_096))));
        }
        assert!(kept.check(0).is_ok(), "ten fit");
        kept.keep(&Event::new(0, 0, failed("x")));
        match kept.check(7) {
            Err(ReplayError::TooManyEventBytes { offset: 7, max }) => assert_eq!(max, 10 * long),
            other => panic!("the bytes limit holds: {other:?}"),
        }
        assert_eq!(kept.take().len(), 10, "the event past it is not kept");
    }
}
