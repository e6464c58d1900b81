//! Waiting on several requests at once: [`wait_all`], [`wait_any`], [`wait_loaded`], their
//! async forms (with and without a timeout), [`progress`] by bytes over dependency trees, and
//! [`LoadGroup`], a set of requests with aggregate progress and cancel-all.
//!
//! Waits listen to the runtime's "a request decoded or ended" signal, so one thread waits on
//! any number of handles without polling; `wait_any` over handles of several runtimes listens
//! to each runtime's. The async forms work on any executor; their timeouts
//! come from streamrt's own timer thread (see `timer`), not from the executor's. A timeout
//! longer than an `Instant` can reach (`Duration::MAX`) means no deadline, in every wait.
//!
//! # Frames
//!
//! In frames mode a request becomes `Ready` only at a `begin_frame`. The thread that calls
//! `begin_frame` must not wait for `Ready` ([`wait_all`], [`wait_any`], `Handle::wait_timeout`)
//! on a request not yet published: no boundary comes while it waits, so it waits out its whole
//! timeout (for ever, with `Duration::MAX`). It waits with [`wait_loaded`] instead, which ends
//! once the requests are decoded; a decoded request reaches the publish queue a moment later
//! (the coordinator's next turn), so the boundary right after may not publish it yet. A tool
//! that needs it there calls `Runtime::sync` before `begin_frame`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use streamrt_messages::LoadState;

use crate::deps::ByteProgress;
use crate::request::{Handle, ReadyError, Watched};
use crate::signal::{deadline_after, listen_async, wait_until, Signal};

mod timer;

use timer::WithDeadline;

/// Blocks until every handle is terminal or `timeout` passes. Returns whether all ended (true
/// at once for an empty slice).
pub fn wait_all<T: Send + Sync + 'static>(handles: &[Handle<T>], timeout: Duration) -> bool {
    wait_every(handles, timeout, Handle::is_terminal)
}

/// Blocks until any handle is terminal or `timeout` passes. Returns the lowest index of a
/// terminal handle (not necessarily the first to end), or `None` on timeout (or for an empty
/// slice).
///
/// Each time a request of the runtime decodes or ends, the handles are looked at again, from
/// the first: a wait on many handles while many other requests progress costs their product
/// (`wait_all` looks at each handle once it reached it, whatever the events).
pub fn wait_any<T: Send + Sync + 'static>(
    handles: &[Handle<T>],
    timeout: Duration,
) -> Option<usize> {
    // Nothing to listen to: an empty slice never has an ended handle.
    let progressed = handles.first()?.any_progressed();
    let deadline = deadline_after(timeout);
    if !one_runtime(handles.iter().map(Handle::any_progressed)) {
        // Handles of several runtimes: a thread blocks on one signal at a time, a future on
        // several at once.
        return block_until(wait_any_async(handles), deadline);
    }
    wait_until(deadline, || handles.iter().position(Handle::is_terminal).ok_or(progressed))
}

/// Runs `future` on the calling thread until it resolves (`None` once `deadline` passes),
/// parking between its wakes. Not `futures::executor::block_on`, which panics when called
/// inside another executor, and with the OS's timed park rather than the timer thread.
fn block_until<F: Future>(future: F, deadline: Option<Instant>) -> Option<F::Output> {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut Context::from_waker(&waker)) {
            return Some(out);
        }
        match deadline {
            None => std::thread::park(),
            Some(deadline) => {
                std::thread::park_timeout(deadline.checked_duration_since(Instant::now())?)
            }
        }
    }
}

/// Whether every handle comes from one runtime (the usual case), checked without allocating.
fn one_runtime<'a>(mut signals: impl Iterator<Item = &'a Signal>) -> bool {
    let Some(first) = signals.next() else { return true };
    signals.all(|signal| std::ptr::eq(signal, first))
}

/// The distinct "a request decoded or ended" signals of several runtimes' requests.
fn distinct<'a>(all: impl Iterator<Item = &'a Signal>) -> Vec<&'a Signal> {
    let mut signals: Vec<&Signal> = Vec::new();
    for signal in all {
        if !signals.iter().any(|known| std::ptr::eq(*known, signal)) {
            signals.push(signal);
        }
    }
    signals
}

/// Blocks until every handle is loaded (decoded with its whole dependency tree, or already
/// ended) or `timeout` passes. Returns whether all are. For loading screens, and for tools that
/// need every outstanding load in memory before the next frame boundary.
///
/// Loaded is not yet published: with frames, a loaded request publishes at the coming
/// boundaries as their budgets allow, and a dependent only at a boundary after its last
/// dependency published (its gate hands it to the frame coordinator then), so the root of a
/// chain `k` levels deep publishes `k` boundaries after its leaf at the soonest.
pub fn wait_loaded<T: Send + Sync + 'static>(handles: &[Handle<T>], timeout: Duration) -> bool {
    wait_every(handles, timeout, is_loaded)
}

/// Terminal, or decoded with every dependency in its tree decoded or ended: a dependent is
/// decoded as soon as its own bytes are, while it waits in its gate for its dependencies.
fn is_loaded<T: Send + Sync + 'static>(handle: &Handle<T>) -> bool {
    handle.is_terminal()
        || (handle.state() == LoadState::Decoded && handle.progress().is_complete())
}

/// Blocks until `done` holds for every handle or `timeout` passes; whether it does.
///
/// `done` must stay true once true (being terminal, being loaded): so each wake-up resumes at
/// the first handle not yet done instead of scanning all of them again, and waiting on `n`
/// handles costs `O(n)` checks in all rather than `O(n)` per wake-up.
fn wait_every<T: Send + Sync + 'static>(
    handles: &[Handle<T>],
    timeout: Duration,
    done: impl Fn(&Handle<T>) -> bool,
) -> bool {
    let mut first = 0;
    wait_until(deadline_after(timeout), || {
        while handles.get(first).is_some_and(&done) {
            first += 1;
        }
        // The first handle not done is the one whose runtime's signal matters.
        handles.get(first).map_or(Ok(()), |pending| Err(pending.any_progressed()))
    })
    .is_some()
}

/// Resolves once every handle is terminal, with each outcome in order.
///
/// The future watches the requests without holding them, as [`Handle::ready`]'s does: one
/// every handle let go of is cancelled, and resolves so.
pub fn wait_all_async<T: Send + Sync + 'static>(
    handles: &[Handle<T>],
) -> impl Future<Output = Vec<Result<Arc<T>, ReadyError>>> + Send + 'static {
    let watched: Vec<Watched<T>> = handles.iter().map(Handle::watched).collect();
    async move {
        let mut out = Vec::with_capacity(watched.len());
        for w in watched {
            out.push(w.ready().await);
        }
        out
    }
}

/// Resolves once any handle is terminal, with its index (never, for an empty slice; unlike
/// [`wait_any`], which gives `None` at once).
///
/// The future watches the requests without holding them, as [`wait_all_async`]'s does.
pub fn wait_any_async<T: Send + Sync + 'static>(
    handles: &[Handle<T>],
) -> impl Future<Output = usize> + Send + 'static {
    let watched: Vec<Watched<T>> = handles.iter().map(Handle::watched).collect();
    async move {
        if watched.is_empty() {
            return std::future::pending().await;
        }
        let ended = || watched.iter().position(Watched::is_terminal);
        // Every runtime's signal, as the handles may come from several; with one runtime,
        // its one listener, without a list or a select to build at each wake-up.
        let all = || watched.iter().map(Watched::any_progressed);
        let signals = if one_runtime(all()) { Vec::new() } else { distinct(all()) };
        loop {
            if let Some(i) = ended() {
                return i;
            }
            if signals.is_empty() {
                let listener = listen_async(watched[0].any_progressed());
                if let Some(i) = ended() {
                    return i;
                }
                listener.await;
                continue;
            }
            let mut listeners: Vec<_> = signals.iter().map(|signal| listen_async(signal)).collect();
            if let Some(i) = ended() {
                return i;
            }
            // The first listener to fire ends the wait; each pending one has the waker.
            std::future::poll_fn(|cx| {
                let fired = listeners.iter_mut().any(|l| Pin::new(l).poll(cx).is_ready());
                if fired {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
        }
    }
}

/// As [`wait_all_async`], giving up after `timeout`: `None` if some handle had not ended. The
/// deadline is `timeout` after the call that makes the future, not after its first poll.
pub fn wait_all_timeout_async<T: Send + Sync + 'static>(
    handles: &[Handle<T>],
    timeout: Duration,
) -> impl Future<Output = Option<Vec<Result<Arc<T>, ReadyError>>>> + Send + 'static {
    WithDeadline::new(wait_all_async(handles), deadline_after(timeout))
}

/// As [`wait_any_async`], giving up after `timeout`: `None` if no handle had ended (always,
/// for an empty slice, once the timeout passed; never without one). The deadline is
/// `timeout` after the call that makes the future, not after its first poll.
pub fn wait_any_timeout_async<T: Send + Sync + 'static>(
    handles: &[Handle<T>],
    timeout: Duration,
) -> impl Future<Output = Option<usize>> + Send + 'static {
    WithDeadline::new(wait_any_async(handles), deadline_after(timeout))
}

/// How much of `handles` has loaded, weighted by bytes across each one's whole dependency
/// tree; never goes backwards. Sum the results of several calls (`ByteProgress` adds up) to
/// follow requests of several types.
pub fn progress<T: Send + Sync + 'static>(handles: &[Handle<T>]) -> ByteProgress {
    handles.iter().map(Handle::progress).sum()
}

/// Several requests handled as one: a level's assets, a character's parts.
#[derive(Debug)]
pub struct LoadGroup<T: Send + Sync + 'static> {
    handles: Vec<Handle<T>>,
}

impl<T: Send + Sync + 'static> Default for LoadGroup<T> {
    fn default() -> Self {
        Self { handles: Vec::new() }
    }
}

impl<T: Send + Sync + 'static> LoadGroup<T> {
    /// An empty group.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a request to the group.
    pub fn push(&mut self, handle: Handle<T>) {
        self.handles.push(handle);
    }

    /// The group's requests.
    pub fn handles(&self) -> &[Handle<T>] {
        &self.handles
    }

    /// The share of requests that ended, from 0 to 1 (1 for an empty group). Between pushes it
    /// never goes backwards: a request that ended stays ended (a push adds one that has not).
    pub fn progress(&self) -> f64 {
        if self.handles.is_empty() {
            return 1.0;
        }
        let ended = self.handles.iter().filter(|h| h.is_terminal()).count();
        ended as f64 / self.handles.len() as f64
    }

    /// The group's progress by bytes over every request's dependency tree (see [`progress`]).
    pub fn bytes_progress(&self) -> ByteProgress {
        progress(&self.handles)
    }

    /// Whether every request ended.
    pub fn is_done(&self) -> bool {
        self.handles.iter().all(Handle::is_terminal)
    }

    /// Cancels every request that has not ended.
    pub fn cancel_all(&self) {
        for h in &self.handles {
            h.cancel();
        }
    }

    /// Blocks until every request ended or `timeout` passes; returns whether all ended.
    ///
    /// In frames mode, not from the thread that calls `begin_frame` while a request waits to
    /// be published (see the module's `# Frames`): [`wait_loaded`] is for that thread.
    pub fn wait(&self, timeout: Duration) -> bool {
        wait_all(&self.handles, timeout)
    }
}

impl<T: Send + Sync + 'static> FromIterator<Handle<T>> for LoadGroup<T> {
    fn from_iter<I: IntoIterator<Item = Handle<T>>>(iter: I) -> Self {
        Self { handles: iter.into_iter().collect() }
    }
}
