//! A subscriber's live feed of telemetry events: the [`EventStream`] the engine reads, and the
//! [`Subscriber`] end the sink writes to.
//!
//! # Invariants
//!
//! - A feed holds at most its capacity of undelivered events: the sink counts what it sent
//!   and the stream what it took, and an event past the capacity is dropped and counted in
//!   `events_dropped`. Room is taken as events come, not reserved when subscribing, so a large
//!   capacity (`usize::MAX` for "no limit") costs nothing until events wait.
//! - The sink forgets a subscriber once its stream is gone.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamrt_messages::Event;

use super::Counters;

/// A live feed of telemetry events from a runtime.
///
/// # Backpressure
///
/// The feed holds at most the capacity it was made with; past it, events for this subscriber
/// are dropped and counted in `events_dropped`.
pub struct EventStream {
    rx: Receiver<Event>,
    /// Events sent and not yet taken: shared with the sink's [`Subscriber`].
    undelivered: Arc<AtomicUsize>,
    /// Set once a wait found the sink's end gone and every event taken.
    ended: AtomicBool,
}

/// The sink's end of an [`EventStream`].
pub(crate) struct Subscriber {
    tx: Sender<Event>,
    undelivered: Arc<AtomicUsize>,
    capacity: usize,
}

impl Subscriber {
    /// Whether its stream is still there to read.
    pub(crate) fn is_live(&self) -> bool {
        // The stream holds the only other reference to the count.
        Arc::strong_count(&self.undelivered) > 1
    }

    /// Sends the stream a copy of `event`, or drops and counts it in `dropped` when the stream
    /// holds its capacity. False once the stream is gone: the subscriber is then let go of.
    pub(crate) fn offer(&self, event: &Event, dropped: &AtomicU64) -> bool {
        if !self.is_live() {
            return false;
        }
        if self.undelivered.load(Ordering::Acquire) >= self.capacity {
            Counters::bump(dropped);
            return true;
        }
        self.undelivered.fetch_add(1, Ordering::AcqRel);
        self.tx.send(event.clone()).is_ok()
    }
}

impl EventStream {
    /// A feed holding at most `capacity` undelivered events (at least one), and the sink's end
    /// of it.
    pub(crate) fn channel(capacity: usize) -> (Subscriber, Self) {
        let (tx, rx) = mpsc::channel();
        let undelivered = Arc::new(AtomicUsize::new(0));
        let capacity = capacity.max(1);
        let subscriber = Subscriber { tx, undelivered: Arc::clone(&undelivered), capacity };
        (subscriber, Self { rx, undelivered, ended: AtomicBool::new(false) })
    }

    /// Waits up to `timeout` (`None`: for ever) for the next event, counted as taken. `None`
    /// on timeout or once the feed ended, which it notes.
    fn next_within(&self, timeout: Option<Duration>) -> Option<Event> {
        let next = match timeout {
            Some(timeout) => self.rx.recv_timeout(timeout),
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(event) => {
                self.undelivered.fetch_sub(1, Ordering::AcqRel);
                Some(event)
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                self.ended.store(true, Ordering::Relaxed);
                None
            }
        }
    }

    /// Waits up to `timeout` for the next event. `None` on timeout or, at once, once the
    /// feed ended ([`EventStream::is_ended`]).
    pub fn next_timeout(&self, timeout: Duration) -> Option<Event> {
        self.next_within(Some(timeout))
    }

    /// The next event if one is waiting.
    pub fn try_next(&self) -> Option<Event> {
        self.next_within(Some(Duration::ZERO))
    }

    /// Waits up to `timeout` for an event matching `pred`, discarding the others.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Event) -> bool) -> Option<Event> {
        // A timeout past what an `Instant` holds waits for ever.
        let deadline = crate::signal::deadline_after(timeout);
        loop {
            let left = match deadline {
                Some(deadline) => Some(deadline.checked_duration_since(Instant::now())?),
                None => None,
            };
            let event = self.next_within(left)?;
            if pred(&event) {
                return Some(event);
            }
        }
    }

    /// Whether a wait ([`EventStream::next_timeout`]) found the feed ended: the runtime's
    /// telemetry sink let go of it (the runtime stopped, or its sink could not take the
    /// subscription) and every event it sent was taken. No event comes after.
    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use streamrt_messages::EventKind;

    use super::*;

    fn event() -> Event {
        Event::new(0, 0, EventKind::Restarted { actor: "sink".into() })
    }

    #[test]
    fn a_feed_holds_its_capacity_and_takes_more_once_read() {
        let dropped = AtomicU64::new(0);
        let (subscriber, stream) = EventStream::channel(2);
        assert!((0..3).all(|_| subscriber.offer(&event(), &dropped)));
        assert_eq!(dropped.load(Ordering::Relaxed), 1, "the third is past the capacity");
        assert!(stream.try_next().is_some());
        assert!(subscriber.offer(&event(), &dropped));
        assert_eq!(dropped.load(Ordering::Relaxed), 1, "room again once one was read");
        assert_eq!(std::iter::from_fn(|| stream.try_next()).count(), 2);
    }

    #[test]
    fn a_feed_asked_for_no_room_still_holds_one_event() {
        let dropped = AtomicU64::new(0);
        let (subscriber, stream) = EventStream::channel(0);
        assert!(subscriber.offer(&event(), &dropped) && subscriber.offer(&event(), &dropped));
        assert_eq!(dropped.load(Ordering::Relaxed), 1, "the second is past the one held");
        assert!(stream.try_next().is_some());
        assert!(stream.try_next().is_none());
    }

    #[test]
    fn an_unbounded_feed_reserves_nothing_and_a_gone_one_is_let_go_of() {
        let dropped = AtomicU64::new(0);
        let (subscriber, stream) = EventStream::channel(usize::MAX);
        assert!(subscriber.offer(&event(), &dropped));
        assert!(stream.next_timeout(Duration::ZERO).is_some());
        assert!(subscriber.is_live());
        drop(stream);
        assert!(!subscriber.is_live());
        assert!(!subscriber.offer(&event(), &dropped), "the stream is gone");
        assert_eq!(dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_feed_whose_sink_let_go_ends_once_its_events_are_taken() {
        let dropped = AtomicU64::new(0);
        let (subscriber, stream) = EventStream::channel(4);
        assert!(subscriber.offer(&event(), &dropped));
        drop(subscriber);
        assert!(!stream.is_ended(), "not before a wait finds it");
        assert!(stream.next_timeout(Duration::from_secs(60)).is_some(), "the event sent first");
        assert!(!stream.is_ended());
        assert!(stream.next_timeout(Duration::from_secs(60)).is_none(), "at once, not a minute");
        assert!(stream.is_ended());
    }
}
