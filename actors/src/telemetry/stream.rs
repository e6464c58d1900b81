//! A subscriber's live feed of telemetry events: the [`EventStream`] the engine reads, and the
//! [`Subscriber`] end the sink writes to.
//!
//! # Invariants
//!
//! - A feed holds at most its capacity of undelivered events: the sink counts what it sent
//!   and the stream what it took, and an event past the capacity is dropped and counted in the
//!   stream's own [`EventStream::dropped`] (not the runtime's `events_dropped`, which counts
//!   what the runtime lost: a subscriber that reads slowly loses only its own events). Room is
//!   taken as events come, not reserved when subscribing, so a large capacity (`usize::MAX`
//!   for "no limit") costs nothing until events wait.
//! - The sink forgets a subscriber once its stream is gone, or was ended before the sink took
//!   it (a subscription not taken in time).

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
/// are dropped and counted in [`EventStream::dropped`].
pub struct EventStream {
    rx: Receiver<Event>,
    /// Shared with the sink's [`Subscriber`].
    feed: Arc<Feed>,
    /// Set once a wait found the sink's end gone and every event taken, or the subscription
    /// was ended before the sink took it.
    ended: AtomicBool,
}

/// What the two ends of a feed share.
#[derive(Default)]
struct Feed {
    /// Events sent and not yet taken.
    undelivered: AtomicUsize,
    /// Events dropped because the feed held its capacity.
    dropped: AtomicU64,
    /// Set when the stream was ended before the sink took its subscription: the sink lets go
    /// of it then, so it never delivers to a stream that says it ended.
    abandoned: AtomicBool,
}

/// The sink's end of an [`EventStream`].
pub(crate) struct Subscriber {
    tx: Sender<Event>,
    feed: Arc<Feed>,
    capacity: usize,
}

impl Subscriber {
    /// Whether its stream is still there to read.
    pub(crate) fn is_live(&self) -> bool {
        // The stream holds the only other reference to the feed.
        Arc::strong_count(&self.feed) > 1 && !self.feed.abandoned.load(Ordering::Acquire)
    }

    /// Sends the stream a copy of `event`, or drops and counts it in the stream's `dropped`
    /// when the stream holds its capacity. False once the stream is gone: the subscriber is
    /// then let go of.
    pub(crate) fn offer(&self, event: &Event) -> bool {
        if !self.is_live() {
            return false;
        }
        if self.feed.undelivered.load(Ordering::Acquire) >= self.capacity {
            Counters::bump(&self.feed.dropped);
            return true;
        }
        self.feed.undelivered.fetch_add(1, Ordering::AcqRel);
        self.tx.send(event.clone()).is_ok()
    }
}

impl EventStream {
    /// A feed holding at most `capacity` undelivered events (at least one), and the sink's end
    /// of it.
    pub(crate) fn channel(capacity: usize) -> (Subscriber, Self) {
        let (tx, rx) = mpsc::channel();
        let feed = Arc::new(Feed::default());
        let capacity = capacity.max(1);
        let subscriber = Subscriber { tx, feed: Arc::clone(&feed), capacity };
        (subscriber, Self { rx, feed, ended: AtomicBool::new(false) })
    }

    /// Ends the stream before the sink took its subscription (which the sink then drops): it
    /// says so at once, instead of missing the events of the wait.
    pub(crate) fn abandon(&self) {
        self.feed.abandoned.store(true, Ordering::Release);
        self.ended.store(true, Ordering::Relaxed);
    }

    /// Events this stream lost because it held its capacity when they came.
    pub fn dropped(&self) -> u64 {
        Counters::get(&self.feed.dropped)
    }

    /// Waits up to `timeout` (`None`: for ever) for the next event, counted as taken. `None`
    /// on timeout or once the feed ended, which it notes.
    fn next_within(&self, timeout: Option<Duration>) -> Option<Event> {
        if self.feed.abandoned.load(Ordering::Acquire) {
            return None;
        }
        let next = match timeout {
            Some(timeout) => self.rx.recv_timeout(timeout),
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(event) => {
                self.feed.undelivered.fetch_sub(1, Ordering::AcqRel);
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
    /// subscription) and every event it sent was taken; or the sink did not take the
    /// subscription in time, which ends it at once. No event comes after.
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
        let (subscriber, stream) = EventStream::channel(2);
        assert!((0..3).all(|_| subscriber.offer(&event())));
        assert_eq!(stream.dropped(), 1, "the third is past the capacity");
        assert!(stream.try_next().is_some());
        assert!(subscriber.offer(&event()));
        assert_eq!(stream.dropped(), 1, "room again once one was read");
        assert_eq!(std::iter::from_fn(|| stream.try_next()).count(), 2);
    }

    #[test]
    fn a_feed_asked_for_no_room_still_holds_one_event() {
        let (subscriber, stream) = EventStream::channel(0);
        assert!(subscriber.offer(&event()) && subscriber.offer(&event()));
        assert_eq!(stream.dropped(), 1, "the second is past the one held");
        assert!(stream.try_next().is_some());
        assert!(stream.try_next().is_none());
    }

    #[test]
    fn an_unbounded_feed_reserves_nothing_and_a_gone_one_is_let_go_of() {
        let (subscriber, stream) = EventStream::channel(usize::MAX);
        assert!(subscriber.offer(&event()));
        assert!(stream.next_timeout(Duration::ZERO).is_some());
        assert!(subscriber.is_live());
        assert_eq!(stream.dropped(), 0);
        drop(stream);
        assert!(!subscriber.is_live());
        assert!(!subscriber.offer(&event()), "the stream is gone");
    }

    #[test]
    fn an_abandoned_feed_is_ended_at_once_and_let_go_of_by_the_sink() {
        let (subscriber, stream) = EventStream::channel(4);
        stream.abandon();
        assert!(stream.is_ended());
        assert!(!subscriber.is_live(), "the sink lets it go when it takes it");
        assert!(!subscriber.offer(&event()));
        assert!(stream.next_timeout(Duration::from_secs(60)).is_none(), "at once");
    }

    #[test]
    fn a_feed_whose_sink_let_go_ends_once_its_events_are_taken() {
        let (subscriber, stream) = EventStream::channel(4);
        assert!(subscriber.offer(&event()));
        drop(subscriber);
        assert!(!stream.is_ended(), "not before a wait finds it");
        assert!(stream.next_timeout(Duration::from_secs(60)).is_some(), "the event sent first");
        assert!(!stream.is_ended());
        assert!(stream.next_timeout(Duration::from_secs(60)).is_none(), "at once, not a minute");
        assert!(stream.is_ended());
    }
}
