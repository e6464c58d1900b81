//! How a runtime stops: the engine's [`Runtime::shutdown`](super::Runtime::shutdown) (or drop),
//! a supervisor's escalation, or a shutdown called on a thread of the runtime's own.
//!
//! # Invariants
//!
//! - One stop takes the core and runs it to its end holding `stopping`; a later stop waits on
//!   `stopping`, then finds nothing left to stop, so it returns once the first is over.
//! - A stop never runs on a thread it joins or waits on (the core's, whose actors it asks to
//!   stop; the telemetry arbiter's; a pool's): a shutdown called there, or an escalation
//!   (which the core thread's supervisors raise), hands the stop to a thread of its own, a
//!   *stopper*.
//! - No stopper joins another, so joins never wait in a cycle (a stopper's stop joins the
//!   runtime's own threads, none of them a stopper): the engine's shutdown joins the
//!   stoppers, and so does the escalation listener's, on the escalation's stopper, the others
//!   (none of which joins it).

use std::cell::RefCell;
use std::sync::{Arc, MutexGuard, OnceLock, Weak};
use std::thread::JoinHandle;

use streamrt_messages::EventKind;
use streamrt_supervisor::{log_caught, AskPatience, Escalation};

use super::core::{EscalateFn, CORE_SUPERVISOR};
use super::Inner;
use crate::lock::{lock, HeldMark};
use crate::replay::Recorder;

/// What the embedding program is told once its runtime gave up and shut itself down (see
/// [`RuntimeBuilder::on_escalation`](super::RuntimeBuilder::on_escalation)).
pub(super) type EscalationListener = Arc<dyn Fn(&Escalation) + Send + Sync>;

/// Whether a stop joins the stoppers once it is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Joins {
    /// Every stopper but the calling thread: the engine's shutdown.
    Stoppers,
    /// None: a stopper's own stop.
    Nothing,
}

/// How shutdown waits for the core actors' acknowledgements. Once the core supervisor gave up
/// it restarts nothing, so a core actor it stopped is not waited for; after the telemetry
/// supervisor's escalation, or none, the core supervisor may still be restarting one, whose
/// successor answers.
fn shutdown_patience(escalation: Option<&Escalation>) -> AskPatience {
    match escalation {
        Some(e) if e.supervisor == CORE_SUPERVISOR => AskPatience::WhileAlive,
        _ => AskPatience::ThroughRestarts,
    }
}

/// What a supervisor's escalation does: shut the runtime down on a stopper (the supervisor
/// runs on the core thread, which the stop waits on), then tell the embedding program's
/// listener, if any, on that stopper.
pub(super) fn escalation_hook(
    inner: Weak<Inner>,
    listener: Option<EscalationListener>,
) -> EscalateFn {
    Arc::new(move |escalation: Escalation| {
        let Some(strong) = inner.upgrade() else { return };
        {
            let mut slot = lock(&strong.escalation);
            if slot.is_some() {
                return;
            }
            *slot = Some(escalation.clone());
        }
        let (weak, listener) = (Weak::clone(&inner), listener.clone());
        let stop = move || {
            if let Some(inner) = weak.upgrade() {
                inner.shut_down(Joins::Nothing);
            }
            // The listener is the embedding program's code: its panic ends nothing here.
            if let Some(listener) = listener {
                log_caught(|| listener(&escalation));
            }
        };
        // No thread to stop the runtime on: `Runtime::escalation` says why, new requests are
        // refused, and the engine's own shutdown, or the runtime's drop, stops the rest.
        let after = "new requests are refused until the engine shuts the runtime down";
        strong.spawn_stopper(strong.stoppers(), "streamrt-escalation", after, stop);
    })
}

thread_local! {
    /// The runtimes this thread is stopping, by their `Inner`'s address: the stop runs the
    /// engine's code (a waker or the subscriber as it fails requests, an asset's drop), which
    /// may call `shutdown` again on this thread, where `stopping` is held.
    static STOPPING_HERE: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

impl Inner {
    /// Stops the runtime, then joins the stoppers if `joins` says so and flushes the replay
    /// log, so that what every stopping thread recorded is in it. Called back on a thread
    /// already stopping it (from the engine's code the stop runs), it only refuses new
    /// requests: the stop under way goes on when it returns.
    pub(super) fn shut_down(&self, joins: Joins) {
        let Some(_marked) = HeldMark::new(&STOPPING_HERE, std::ptr::from_ref(self) as usize) else {
            return self.submitter.close();
        };
        let recorder = self.probe.recorder();
        self.stop();
        if joins == Joins::Stoppers {
            self.join_stoppers();
        }
        if let Some(error) = recorder.and_then(Recorder::finish) {
            log_caught(
                || tracing::error!(target: "streamrt", %error, "the replay log is incomplete"),
            );
        }
    }

    /// Hands the stop to a stopper: the calling thread is one of the runtime's own. New
    /// requests are refused from here on. One stopper is enough: with one started before (an
    /// escalation's, or an earlier hand-off's), or the core stopped already, nothing is done.
    pub(super) fn hand_off_stop(inner: &Arc<Self>) {
        inner.submitter.close();
        let stoppers = inner.stoppers();
        if !stoppers.is_empty() || inner.core().is_none() {
            return;
        }
        let stopper = Arc::clone(inner);
        let after = "new requests are refused, and the engine's shutdown stops the rest";
        let stop = move || stopper.shut_down(Joins::Nothing);
        inner.spawn_stopper(stoppers, "streamrt-stop", after, stop);
    }

    /// Whether the calling thread is one the core's stop joins or waits on.
    pub(super) fn on_own_thread(&self) -> bool {
        on_one_of(&self.own_threads)
    }

    /// Whether the calling thread is one the actors run on.
    pub(super) fn on_actor_thread(&self) -> bool {
        on_one_of(&self.actor_threads)
    }

    /// The stoppers, locked.
    fn stoppers(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        lock(&self.stoppers)
    }

    /// Starts `stop` on a stopper named `name`, added to `stoppers` (held while the thread
    /// starts, so that a shutdown joining them finds it); should the thread not start, logs
    /// why and what the runtime does `after` that.
    fn spawn_stopper(
        &self,
        mut stoppers: MutexGuard<'_, Vec<JoinHandle<()>>>,
        name: &str,
        after: &str,
        stop: impl FnOnce() + Send + 'static,
    ) {
        match std::thread::Builder::new().name(name.into()).spawn(stop) {
            Ok(thread) => stoppers.push(thread),
            Err(e) => {
                drop(stoppers);
                self.submitter.close();
                log_caught(|| {
                    tracing::error!(target: "streamrt", error = %e, "cannot start {name}: {after}");
                });
            }
        }
    }

    /// Joins every stopper but the calling thread (an escalation listener's shutdown runs on
    /// the escalation's).
    fn join_stoppers(&self) {
        let current = std::thread::current().id();
        let others: Vec<_> = {
            let mut stoppers = self.stoppers();
            let (mine, others) = std::mem::take(&mut *stoppers)
                .into_iter()
                .partition(|thread| thread.thread().id() == current);
            *stoppers = mine;
            others
        };
        for thread in others {
            let _ = thread.join();
        }
    }

    /// Stops the runtime. The first stop to close it records the session's `Shutdown`, so a
    /// replay log holds one however its session ended. It waits for each core actor as
    /// `shutdown_patience` says, asked again before each ask (a supervisor may give up while
    /// the stop goes on); whatever an actor did not take is failed as its mailbox closes.
    fn stop(&self) {
        self.submitter.close();
        // Another thread (the engine's, or a stopper) may be stopping it: `shutdown` promises
        // the stop over when it returns, so this waits for that stop.
        let _stopping = lock(&self.stopping);
        let core = self.core().take();
        if let Some(core) = core {
            // Read again before each ask: a supervisor may give up while the stop goes on.
            let patience = || {
                let escalation = lock(&self.escalation);
                shutdown_patience(escalation.as_ref())
            };
            core.stop(&patience, || self.probe.emit(self.probe.event(EventKind::Stopped)));
            // The sink is gone: the events of the requests the stop failed after its last
            // flush (what a cache's salvage held) are counted dropped, not left buffered.
            self.probe.sink_stopped();
        }
    }
}

/// Whether the calling thread is one of `threads` (none before they are set).
fn on_one_of(threads: &OnceLock<Box<[std::thread::ThreadId]>>) -> bool {
    let current = std::thread::current().id();
    threads.get().is_some_and(|threads| threads.contains(&current))
}
