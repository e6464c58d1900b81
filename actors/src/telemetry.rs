//! Telemetry: live counters, the bounded event buffer producers write to, and the sink actor
//! that drains it.
//!
//! - [`Probe`] is shared by every actor, worker and handle. Producers stamp an [`Event`] with
//!   the clock and the frame index and push it into a bounded lock-free buffer; they never
//!   block and never wait on the sink. When the buffer is full the event is dropped and counted
//!   (`events_dropped`), and the count is itself reported in the status. Events are buffered
//!   only while something reads them (a telemetry file or a subscriber): with neither, the
//!   sink would drain them into nothing, so producers skip the buffer (the recorder and the tap
//!   still see every event).
//! - [`Counters`] are the live figures behind `Status`, updated where things happen, so a
//!   status query needs no round trip to any actor.
//! - [`TelemetrySink`] runs on its own arbiter. Every `flush_ms` it drains the buffer, writes
//!   JSON lines to the configured file and feeds subscribers.
//!
//! # Supervision
//!
//! A restart loses nothing: the buffer and counters live in the probe, the file and the
//! subscribers in [`SinkOutputs`], all outside the actor. The message whose handling panicked is
//! the only one lost.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, ActorContext, AsyncContext, Context, Handler};
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use streamrt_messages::{Event, EventKind};

use crate::lock::lock;
use crate::replay::Recorder;

mod stream;

pub use stream::EventStream;
pub(crate) use stream::Subscriber;
use streamrt_supervisor::{
    drain_turn, guarded_turn, log_caught, run_warning_on_panic, ChildLink, Clock, ExitReason,
    Mailbox, PoolStats, StopChild, Wake,
};

/// Live counters; see [`streamrt_messages::Status`] for their meaning.
///
/// Each counter has a cache line of its own: the engine thread, the core thread and every
/// worker update different ones on their hot paths, and sharing a line would make each update
/// wait for the line to move between cores.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requested: CachePadded<AtomicU64>,
    pub(crate) ready: CachePadded<AtomicU64>,
    pub(crate) failed: CachePadded<AtomicU64>,
    pub(crate) cancelled: CachePadded<AtomicU64>,
    pub(crate) cancelled_after_decode: CachePadded<AtomicU64>,
    pub(crate) in_flight: CachePadded<AtomicU64>,
    pub(crate) queued: CachePadded<AtomicU64>,
    pub(crate) bytes_read: CachePadded<AtomicU64>,
    pub(crate) events_dropped: CachePadded<AtomicU64>,
    pub(crate) retries: CachePadded<AtomicU64>,
    pub(crate) restarts: CachePadded<AtomicU64>,
    pub(crate) quarantined: CachePadded<AtomicU64>,
    pub(crate) resident_bytes: CachePadded<AtomicU64>,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Shared by every producer of telemetry; see the module docs.
pub(crate) struct Probe {
    clock: Arc<dyn Clock>,
    pub(crate) counters: Counters,
    events: ArrayQueue<Event>,
    frame: AtomicU64,
    /// Whether events are buffered for the sink at all (counters are always kept).
    enabled: bool,
    /// Whether anything reads the buffer: a telemetry file or a subscriber.
    read: AtomicBool,
    /// Set once the sink is stopped for good: what is buffered then, and emitted after, is
    /// dropped and counted, not left in a buffer no one drains.
    sink_gone: AtomicBool,
    /// Notified whenever any request decodes or ends, for waits over several handles.
    any_progressed: event_listener::Event,
    /// Writes the session's inputs to a replay log, when recording.
    recorder: Option<Arc<Recorder>>,
    /// Sees every event as it is emitted, in order (a deterministic run's transcript).
    tap: Option<EventTap>,
    /// Why the telemetry file was closed, if a write to it failed.
    telemetry_error: std::sync::OnceLock<String>,
}

/// A function every emitted event is passed to, on the emitting thread.
pub(crate) type EventTap = Arc<dyn Fn(&Event) + Send + Sync>;

impl Probe {
    pub(crate) fn new(clock: Arc<dyn Clock>, events_buffered_max: usize, enabled: bool) -> Self {
        Self {
            enabled,
            read: AtomicBool::new(false),
            sink_gone: AtomicBool::new(false),
            any_progressed: event_listener::Event::new(),
            clock,
            counters: Counters::default(),
            events: ArrayQueue::new(events_buffered_max.max(1)),
            frame: AtomicU64::new(0),
            recorder: None,
            tap: None,
            telemetry_error: std::sync::OnceLock::new(),
        }
    }

    /// Why the telemetry file was closed, if a write to it failed, or why its log may end
    /// early (a sink that did not finish by the end of a shutdown).
    pub(crate) fn telemetry_error(&self) -> Option<&str> {
        self.telemetry_error.get().map(String::as_str)
    }

    /// Keeps `error` as [`Probe::telemetry_error`], unless one is kept already (the first
    /// says why the log ends where it does), and logs it.
    pub(crate) fn telemetry_failed(&self, error: &str) {
        if self.telemetry_error.set(error.to_owned()).is_ok() {
            log_caught(|| tracing::error!(target: "streamrt", %error, "telemetry log incomplete"));
        }
    }

    /// Records the session's inputs with `recorder` and passes every event to `tap`.
    pub(crate) fn observed(
        mut self,
        recorder: Option<Arc<Recorder>>,
        tap: Option<EventTap>,
    ) -> Self {
        self.recorder = recorder;
        self.tap = tap;
        self
    }

    /// Says whether anything reads the buffer from now on (see the module docs).
    pub(crate) fn set_read(&self, read: bool) {
        self.read.store(read, Ordering::Release);
    }

    /// The session recorder, when recording.
    pub(crate) fn recorder(&self) -> Option<&Recorder> {
        self.recorder.as_deref()
    }

    pub(crate) fn any_progressed(&self) -> &event_listener::Event {
        &self.any_progressed
    }

    pub(crate) fn now_us(&self) -> u64 {
        self.clock.now_us()
    }

    pub(crate) fn frame(&self) -> u64 {
        self.frame.load(Ordering::Acquire)
    }

    /// Advances the frame index and returns the new one.
    pub(crate) fn next_frame(&self) -> u64 {
        self.frame.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// A fresh event stamped with the time and frame.
    pub(crate) fn event(&self, kind: EventKind) -> Event {
        self.event_at(self.now_us(), kind)
    }

    /// A fresh event stamped with `t_us` (a time the caller already read) and the frame.
    pub(crate) fn event_at(&self, t_us: u64, kind: EventKind) -> Event {
        Event::new(t_us, self.frame(), kind)
    }

    /// Whether an event emitted now would reach anything: the buffer (a file or a subscriber
    /// reads it), the recorder, the tap or a `tracing` subscriber at debug level.
    fn wants_events(&self) -> bool {
        self.recorder.is_some()
            || self.tap.is_some()
            || (self.enabled && self.read.load(Ordering::Acquire))
            || tracing_wants_events()
    }

    /// Emits the event `make` builds, building it only if it would reach anything: on the
    /// hot paths building one costs a clock read and a key's shared reference count.
    pub(crate) fn emit_with(&self, make: impl FnOnce() -> Event) {
        if self.wants_events() {
            self.emit(make());
        }
    }

    /// Buffers an event for the sink; drops and counts it when the buffer is full. Also
    /// reported to `tracing` (target `streamrt`, level debug) when that is enabled.
    ///
    /// # Panics
    ///
    /// Never for a `tracing` subscriber's panic: the subscriber is the embedding program's
    /// code, and its panic is caught here and in `emit_with`'s check of whether it wants
    /// events (the panic hook has reported it), so that event is all it costs. Events are
    /// emitted in the middle of the runtime's own steps (a request's end is emitted before its
    /// waiters wake and its dependents hear of it, and a batch of publishes is counted after
    /// its last), and unwinding from one would leave them half done.
    pub(crate) fn emit(&self, event: Event) {
        self.observe(&event);
        if !self.buffering() {
            return;
        }
        if self.events.push(event).is_err() {
            Counters::bump(&self.counters.events_dropped);
        } else if self.sink_gone.load(Ordering::SeqCst) && self.events.pop().is_some() {
            // Pushed as the sink went: one event (this or another) that `sink_stopped` did
            // not count, counted here (each is popped, and counted, once).
            Counters::bump(&self.counters.events_dropped);
        }
    }

    /// The sink stopped for good (the runtime's stop joined it): the events left in the
    /// buffer, and those emitted from now on, are dropped and counted.
    pub(crate) fn sink_stopped(&self) {
        self.sink_gone.store(true, Ordering::SeqCst);
        while self.events.pop().is_some() {
            Counters::bump(&self.counters.events_dropped);
        }
    }

    /// What every emitted event goes to besides the buffer: `tracing`, the recorder, the tap.
    fn observe(&self, event: &Event) {
        trace(event);
        if let Some(recorder) = &self.recorder {
            recorder.observe(event);
        }
        if let Some(tap) = &self.tap {
            tap(event);
        }
    }

    /// Whether emitted events are buffered for the sink (see the module docs).
    fn buffering(&self) -> bool {
        self.enabled && self.read.load(Ordering::Acquire)
    }

    /// Counts and reports the restart of `actor`.
    pub(crate) fn restarted(&self, actor: &str) {
        Counters::bump(&self.counters.restarts);
        self.emit(self.event(EventKind::Restarted { actor: actor.to_owned() }));
    }

    fn take_event(&self) -> Option<Event> {
        self.events.pop()
    }

    /// Events in the buffer now.
    fn buffered(&self) -> usize {
        self.events.len()
    }
}

/// Whether a `tracing` subscriber takes the runtime's events (target `streamrt`, debug). The
/// subscriber is the embedding program's code: a panic in it counts as no (see
/// [`Probe::emit`]).
fn tracing_wants_events() -> bool {
    let mut wants = false;
    log_caught(|| wants = tracing::enabled!(target: "streamrt", tracing::Level::DEBUG));
    wants
}

/// Reports `event` to `tracing`, catching the subscriber's panic (see [`Probe::emit`]).
fn trace(event: &Event) {
    log_caught(|| {
        tracing::debug!(
            target: "streamrt",
            event = event.kind.name(),
            request = event.request.map(|r| r.0),
            key = event.key.as_ref().map(tracing::field::display),
            frame = event.frame,
        );
    });
}

/// What the sink actor is told.
pub(crate) enum SinkMsg {
    /// Subscribe a feed to every later event; reply once subscribed.
    Subscribe(Subscriber, mpsc::Sender<()>),
    /// Drain and write everything buffered so far, then reply.
    Flush(mpsc::Sender<()>),
    /// Panic (fault injection).
    Crash,
}

/// Where drained events go. Kept outside the actor so a restarted sink keeps its file and
/// subscribers.
pub(crate) struct SinkOutputs {
    writer: Option<File>,
    subscribers: Vec<Subscriber>,
    /// Lines not yet written: written at `LINES_BYTES_MAX` and at the end of each drain, in
    /// one call each (no second buffer to copy through). Reused from drain to drain.
    lines: Vec<u8>,
    /// Events in `lines`: counted as dropped if their write fails. Once a write failed (the
    /// probe keeps its error), every event after is dropped from the log, and counted so.
    lines_events: u64,
}

/// The lines the sink gathers before it writes them to its file, in bytes.
const LINES_BYTES_MAX: usize = 64 * 1024;

impl SinkOutputs {
    /// Writes the lines to the file and empties them. A failed write closes the file: its
    /// lines not written whole (a write failing part way leaves whole lines only, where the
    /// file allows it), and every event after, are counted as dropped, the error is kept for
    /// [`Probe::telemetry_error`] and logged, and the runtime goes on.
    fn write_lines(&mut self, probe: &Probe) {
        if let Some(w) = &mut self.writer {
            if !self.lines.is_empty() {
                if let Err(failed) = crate::log_file::write_lines(w, &self.lines) {
                    let (e, lost) = (failed.error, self.lines_events - failed.lines_written);
                    self.writer = None;
                    probe.counters.events_dropped.fetch_add(lost, Ordering::Relaxed);
                    probe.telemetry_failed(&format!("writing the telemetry file failed: {e}"));
                }
            }
        }
        self.lines.clear();
        self.lines_events = 0;
    }
}

impl SinkOutputs {
    /// Outputs writing JSON lines to `path`, if given.
    ///
    /// # Errors
    ///
    /// The file cannot be created, or is a named pipe no one reads (`ENXIO`).
    pub(crate) fn new(path: Option<&Path>) -> std::io::Result<Arc<Mutex<Self>>> {
        let writer = path.map(crate::log_file::create).transpose()?;
        Ok(Arc::new(Mutex::new(Self {
            writer,
            subscribers: Vec::new(),
            lines: Vec::new(),
            lines_events: 0,
        })))
    }
}

/// How often the sink drains and samples, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SinkTiming {
    pub(crate) flush_ms: u64,
    pub(crate) sample_ms: u64,
}

/// Writes and fans out telemetry; see the module docs.
pub(crate) struct TelemetrySink {
    probe: Arc<Probe>,
    mailbox: Mailbox<SinkMsg>,
    outputs: Arc<Mutex<SinkOutputs>>,
    timing: SinkTiming,
    /// The IO and decode pools, sampled for busy workers.
    pools: [Arc<PoolStats>; 2],
    link: ChildLink,
}

impl TelemetrySink {
    pub(crate) fn new(
        probe: Arc<Probe>,
        mailbox: Mailbox<SinkMsg>,
        outputs: Arc<Mutex<SinkOutputs>>,
        timing: SinkTiming,
        pools: [Arc<PoolStats>; 2],
        link: ChildLink,
    ) -> Self {
        Self { probe, mailbox, outputs, timing, pools, link }
    }

    /// Emits a sample. It does not pass through the buffer it reports on: the buffer is
    /// drained first, then the sample goes straight to the outputs, so a sample is never
    /// dropped with the events it counts, and its `events_dropped` covers every line before it.
    fn sample(&self) {
        let mut outputs = lock(&self.outputs);
        self.drain_into(&mut outputs);
        let c = &self.probe.counters;
        let busy = |p: &PoolStats| u32::try_from(p.busy()).unwrap_or(u32::MAX);
        let sample = self.probe.event(EventKind::Sample {
            queue_depth: Counters::get(&c.queued),
            in_flight: Counters::get(&c.in_flight),
            busy_io: busy(&self.pools[0]),
            busy_decode: busy(&self.pools[1]),
            events_dropped: Counters::get(&c.events_dropped),
        });
        // A sample's `bytes` are the bytes resident in every cache.
        let sample = sample.with_bytes(Counters::get(&c.resident_bytes));
        self.probe.observe(&sample);
        if self.probe.buffering() {
            self.output(&mut outputs, &sample);
            outputs.write_lines(&self.probe);
        }
    }

    fn drain(&self) {
        let mut outputs = lock(&self.outputs);
        self.drain_into(&mut outputs);
    }

    /// Writes the events buffered when it starts to the file and the subscribers. Those that
    /// come meanwhile wait for the next drain: producers that keep pace with the sink would
    /// otherwise keep it draining, and its other messages and its samples waiting.
    fn drain_into(&self, outputs: &mut SinkOutputs) {
        for _ in 0..self.probe.buffered() {
            let Some(event) = self.probe.take_event() else { break };
            self.output(outputs, &event);
        }
        outputs.write_lines(&self.probe);
        // Also those no event reached since their streams went: with events off, none ever
        // does, and each subscription would be kept for the runtime's life.
        outputs.subscribers.retain(Subscriber::is_live);
        // A failed file still reads the events, to count each one it lost.
        let failed = self.probe.telemetry_error().is_some();
        if outputs.writer.is_none() && !failed && outputs.subscribers.is_empty() {
            // Set again by the next subscription, which this actor handles too.
            self.probe.set_read(false);
        }
    }

    /// Gives `event` to the file's lines and to each subscriber.
    fn output(&self, outputs: &mut SinkOutputs, event: &Event) {
        if outputs.writer.is_some() {
            event.write_json_line(&mut outputs.lines);
            outputs.lines_events += 1;
            if outputs.lines.len() >= LINES_BYTES_MAX {
                outputs.write_lines(&self.probe);
            }
        } else if self.probe.telemetry_error().is_some() {
            Counters::bump(&self.probe.counters.events_dropped);
        }
        outputs.subscribers.retain(|s| s.offer(event));
    }

    fn handle_msg(&mut self, msg: SinkMsg) {
        match msg {
            SinkMsg::Subscribe(tx, ack) => {
                // Events buffered before the subscription belong to earlier readers; the new
                // reader gets every event from its acknowledgement on.
                self.drain();
                lock(&self.outputs).subscribers.push(tx);
                self.probe.set_read(true);
                let _ = ack.send(());
            }
            SinkMsg::Flush(ack) => {
                self.drain();
                let _ = ack.send(());
            }
            SinkMsg::Crash => panic!("injected crash of the telemetry sink"),
        }
    }
}

impl Actor for TelemetrySink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.mailbox.attach(ctx.address().recipient());
        if self.link.incarnation() > 1 {
            self.probe.restarted("telemetry");
        }
        // The timers' work is the actor's as a handler's is: its panic is reported as the
        // sink's exit, and the sink stops (to be restarted), as after a handler's.
        ctx.run_interval(Duration::from_millis(self.timing.flush_ms.max(1)), |sink, ctx| {
            let link = sink.link.clone();
            guarded_turn(sink, ctx, &link, |sink| sink.drain());
        });
        ctx.run_interval(Duration::from_millis(self.timing.sample_ms.max(1)), |sink, ctx| {
            let link = sink.link.clone();
            guarded_turn(sink, ctx, &link, |sink| sink.sample());
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // A last sample after the last events: the log's figures are its end's. Not raised:
        // the sink is stopping anyway, and a panic while a panic unwinds would abort.
        run_warning_on_panic("the telemetry sink's last sample", || self.sample());
        self.link.exit(ExitReason::Normal);
    }
}

impl Handler<Wake> for TelemetrySink {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        let (mailbox, link) = (self.mailbox.clone(), self.link.clone());
        drain_turn(self, ctx, &mailbox, &link, 64, Self::handle_msg, |_, _| {});
    }
}

impl Handler<StopChild> for TelemetrySink {
    type Result = ();

    fn handle(&mut self, _: StopChild, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamrt_supervisor::MonotonicClock;

    #[test]
    fn events_left_when_the_sink_stopped_and_those_after_are_counted_dropped() {
        let probe = Probe::new(Arc::new(MonotonicClock::new()), 16, true);
        probe.set_read(true);
        probe.emit(probe.event(EventKind::Stopped));
        probe.emit(probe.event(EventKind::Stopped));
        assert_eq!(probe.buffered(), 2);
        probe.sink_stopped();
        probe.emit(probe.event(EventKind::Stopped));
        assert_eq!(probe.buffered(), 0, "nothing left for a sink that is gone");
        assert_eq!(Counters::get(&probe.counters.events_dropped), 3);
    }
}
