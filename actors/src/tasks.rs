//! Structured parallel work inside one frame: [`FrameTaskGroup`].
//!
//! The engine spawns closures (animation, particles, culling) into a group; they run on the
//! runtime's decode workers, and [`FrameTaskGroup::wait`] joins them at a barrier. The waiting
//! thread helps: it runs tasks no worker has taken yet, so a barrier never waits behind a
//! decode backlog and still completes after shutdown.
//!
//! # Invariants
//!
//! - Every spawned task gives exactly one result at `wait`, in spawn order: its value,
//!   `Panicked` (the panic is caught; the worker and the other tasks are unaffected) or
//!   `Cancelled`.
//! - A group belongs to the frame it was made in: `end_frame` cancels it. Tasks not started by
//!   then never start; running ones see [`TaskContext::is_cancelled`] and may stop early.
//!   Dropping a group cancels it too.
//!
//! # Backpressure
//!
//! The pool queue carries small "run a task of this group" notes, at most `notes_max` of a
//! group's at once (the decode pool's size: no more workers could run its tasks at once); a
//! worker that takes one puts one back while tasks wait, so a group spawning thousands of
//! tasks never buries the decodes queued behind them. The tasks themselves stay in the
//! group, bounded by what the engine spawns in a frame.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use streamrt_supervisor::{drop_each_warning_on_panic, take_panic_message, PoolSender};

use crate::lock::lock;
use crate::work::DecodeJob;

/// Why a task gave no value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; the message is the panic's.
    #[error("frame task {name} panicked: {message}")]
    Panicked {
        /// The name it was spawned with.
        name: &'static str,
        /// The panic message.
        message: String,
    },
    /// The frame ended (or the group was dropped) before the task started.
    #[error("frame task {name} was cancelled at the end of its frame")]
    Cancelled {
        /// The name it was spawned with.
        name: &'static str,
    },
}

/// What a running task can ask.
pub struct TaskContext<'a> {
    cancelled: &'a AtomicBool,
}

impl TaskContext<'_> {
    /// Whether the task's frame ended; long tasks check this and return early.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}

type TaskFn<R> = Box<dyn FnOnce(&TaskContext<'_>) -> R + Send>;

struct Pending<R> {
    index: usize,
    name: &'static str,
    run: TaskFn<R>,
}

struct GroupState<R> {
    pending: VecDeque<Pending<R>>,
    results: Vec<Option<Result<R, TaskError>>>,
    running: usize,
    /// Notes in the pool's queue, not taken yet.
    notes: usize,
    /// The group was dropped without its barrier: a result is dropped as it comes, its
    /// panic caught, on the thread that ran its task, not kept for the last reference's.
    abandoned: bool,
}

/// Where a group's notes go: the decode pool, and how many of the group's it holds at most.
pub(crate) struct TaskPool {
    pub(crate) sender: PoolSender<DecodeJob>,
    pub(crate) notes_max: usize,
}

/// The state a group shares with the workers that run its tasks.
pub(crate) struct Group<R> {
    state: Mutex<GroupState<R>>,
    finished: Condvar,
    cancelled: AtomicBool,
    pool: Option<TaskPool>,
}

/// A group, seen by the worker pool and the frame coordinator without its result type.
pub(crate) trait GroupWork: Send + Sync {
    /// Runs one task nobody has taken yet, if any: what a worker does with a note.
    fn run_one(self: Arc<Self>);
    /// A note was taken and lost (its worker crashed before it ran a task).
    fn note_lost(self: Arc<Self>);
    /// Cancels the tasks not started yet.
    fn cancel(&self);
}

impl<R: Send + 'static> Group<R> {
    fn lock(&self) -> MutexGuard<'_, GroupState<R>> {
        // Tasks run, and cancelled ones are dropped, outside the lock, so it is never
        // poisoned by a task's panic.
        lock(&self.state)
    }

    /// Queues a note for a worker to run one of the waiting tasks, unless `notes_max` are
    /// queued already (those reach this task too: a taken note is put back while tasks wait).
    fn note(self: &Arc<Self>, state: &mut GroupState<R>) {
        let Some(pool) = &self.pool else { return };
        if state.pending.is_empty() || state.notes >= pool.notes_max {
            return;
        }
        state.notes += 1;
        // A closed pool (shutdown) leaves the tasks to the waiting thread.
        if pool.sender.submit(DecodeJob::Task(Arc::clone(self) as Arc<dyn GroupWork>)).is_err() {
            state.notes -= 1;
        }
    }

    /// Takes the next task to run; tasks found after a cancel are resolved as cancelled, and
    /// their closures handed back in `discarded`, to be dropped once the lock is let go
    /// ([`Group::drop_discarded`]): a value one captured may panic as it is dropped. Each
    /// counts as running until it is dropped, so the barrier returns only after its captures
    /// are gone, as it did when they were dropped under the lock.
    fn take(
        &self,
        state: &mut GroupState<R>,
        discarded: &mut Vec<TaskFn<R>>,
    ) -> Option<Pending<R>> {
        while let Some(task) = state.pending.pop_front() {
            if self.cancelled.load(Ordering::Acquire) {
                state.results[task.index] = Some(Err(TaskError::Cancelled { name: task.name }));
                discarded.push(task.run);
                state.running += 1;
                continue;
            }
            state.running += 1;
            return Some(task);
        }
        None
    }

    /// Drops the closures of cancelled tasks, each on its own, then counts them no longer
    /// running: a panic dropping one (a value it captured) is caught, as a task's own panic
    /// is, so it neither reaches the engine's `wait` nor ends a worker, and the task stays
    /// cancelled.
    fn drop_discarded(&self, discarded: Vec<TaskFn<R>>) {
        if discarded.is_empty() {
            return;
        }
        let n = discarded.len();
        drop_each_warning_on_panic("a cancelled frame task's drop", discarded);
        let mut state = self.lock();
        state.running -= n;
        drop(state);
        self.finished.notify_all();
    }

    fn run(&self, task: Pending<R>) {
        let Pending { index, name, run } = task;
        let context = TaskContext { cancelled: &self.cancelled };
        // The task's own panic is caught inside its span, so the span is left normally. The
        // span's subscriber is the embedding program's code: a panic making, entering or
        // leaving the span is caught outside it and fails the task as its own would, instead
        // of leaving `wait` blocked on a task that never reports (or, raised while the task's
        // panic unwound through the span, aborting the process).
        // The span is closed (dropped) only once no panic unwinds: a subscriber panicking as
        // it closes a span it just panicked in would abort the process too.
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let span = tracing::debug_span!(target: "streamrt", "frame_task", name);
            let ran = catch_unwind(AssertUnwindSafe(|| {
                span.in_scope(|| catch_unwind(AssertUnwindSafe(|| run(&context))))
            }));
            drop(span);
            ran
        }));
        let result = outcome
            .and_then(|entered| entered)
            .and_then(|ran| ran)
            .map_err(|panic| TaskError::Panicked { name, message: take_panic_message(panic) });
        let mut state = self.lock();
        state.running -= 1;
        let unwanted = if state.abandoned {
            Some(result)
        } else {
            state.results[index] = Some(result);
            None
        };
        drop(state);
        self.finished.notify_all();
        drop_each_warning_on_panic("a frame task's result, its group dropped", unwanted);
    }
}

impl<R: Send + 'static> GroupWork for Group<R> {
    fn note_lost(self: Arc<Self>) {
        let mut state = self.lock();
        state.notes = state.notes.saturating_sub(1);
        self.note(&mut state);
    }

    fn run_one(self: Arc<Self>) {
        let mut state = self.lock();
        state.notes = state.notes.saturating_sub(1);
        let mut discarded = Vec::new();
        let task = self.take(&mut state, &mut discarded);
        self.note(&mut state);
        drop(state);
        self.drop_discarded(discarded);
        if let Some(task) = task {
            self.run(task);
        }
    }

    fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }
}

/// Parallel jobs of one frame, joined at a barrier; see the module docs.
pub struct FrameTaskGroup<R: Send + 'static> {
    group: Arc<Group<R>>,
}

impl<R: Send + 'static> FrameTaskGroup<R> {
    pub(crate) fn new(pool: Option<TaskPool>) -> Self {
        let state = GroupState {
            pending: VecDeque::new(),
            results: Vec::new(),
            running: 0,
            notes: 0,
            abandoned: false,
        };
        let group = Group {
            state: Mutex::new(state),
            finished: Condvar::new(),
            cancelled: AtomicBool::new(false),
            pool,
        };
        Self { group: Arc::new(group) }
    }

    pub(crate) fn work(&self) -> Arc<dyn GroupWork> {
        Arc::clone(&self.group) as Arc<dyn GroupWork>
    }

    /// Queues `task` to run on a worker (or on the thread that waits).
    pub fn spawn(
        &self,
        name: &'static str,
        task: impl FnOnce(&TaskContext<'_>) -> R + Send + 'static,
    ) {
        let mut state = self.group.lock();
        let index = state.results.len();
        state.results.push(None);
        state.pending.push_back(Pending { index, name, run: Box::new(task) });
        self.group.note(&mut state);
    }

    /// Whether the group's frame ended (or it was cancelled).
    pub fn is_cancelled(&self) -> bool {
        self.group.cancelled.load(Ordering::Acquire)
    }

    /// The barrier: runs tasks no worker took, waits for the running ones, and returns every
    /// task's result in spawn order.
    pub fn wait(self) -> Vec<Result<R, TaskError>> {
        let group = &self.group;
        let mut state = group.lock();
        let mut discarded = Vec::new();
        loop {
            // Tasks are discarded only once the group is cancelled, after which none is taken.
            if let Some(task) = group.take(&mut state, &mut discarded) {
                drop(state);
                group.run(task);
                state = group.lock();
            } else if !discarded.is_empty() {
                drop(state);
                group.drop_discarded(std::mem::take(&mut discarded));
                state = group.lock();
            } else if state.running == 0 {
                break;
            } else {
                state = group.finished.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
        }
        let results = std::mem::take(&mut state.results);
        results.into_iter().map(|r| r.expect("every task ended before the barrier")).collect()
    }
}

impl<R: Send + 'static> Drop for FrameTaskGroup<R> {
    /// Cancels the tasks not started, and drops them and the results of the tasks that ended
    /// here, their panics caught; a task still running drops its result as it ends (a group
    /// dropped without its barrier would otherwise drop them with its last reference, on
    /// whichever thread let go of it last, uncaught).
    fn drop(&mut self) {
        self.group.cancel();
        let mut discarded = Vec::new();
        let mut state = self.group.lock();
        let taken = self.group.take(&mut state, &mut discarded);
        debug_assert!(taken.is_none(), "a cancelled group hands out no task");
        state.abandoned = true;
        let results = std::mem::take(&mut state.results);
        drop(state);
        self.group.drop_discarded(discarded);
        drop_each_warning_on_panic("a frame task's result, its group dropped", results);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_pool_the_waiting_thread_runs_every_task_in_order() {
        let group = FrameTaskGroup::new(None);
        for i in 0..4 {
            group.spawn("square", move |_| i * i);
        }
        let results: Vec<_> = group.wait().into_iter().map(Result::unwrap).collect();
        assert_eq!(results, [0, 1, 4, 9]);
    }

    /// A value whose drop panics, captured by a task that never runs.
    struct PanicsWhenDropped;

    impl Drop for PanicsWhenDropped {
        fn drop(&mut self) {
            panic!("a captured value panicked as it was dropped");
        }
    }

    #[test]
    fn a_cancelled_task_whose_capture_panics_as_it_drops_is_still_just_cancelled() {
        let group = FrameTaskGroup::new(None);
        group.spawn("kept", |_| 1);
        let captured = PanicsWhenDropped;
        group.spawn("dropped", move |_| {
            let _kept = &captured;
            2
        });
        group.group.cancel();
        let results = group.wait();
        assert_eq!(results[0], Err(TaskError::Cancelled { name: "kept" }));
        assert_eq!(results[1], Err(TaskError::Cancelled { name: "dropped" }));
    }

    #[test]
    fn a_group_dropped_without_its_barrier_drops_its_tasks_without_a_panic_escaping() {
        let group = FrameTaskGroup::<u32>::new(None);
        let captured = PanicsWhenDropped;
        group.spawn("never run", move |_| {
            let _kept = &captured;
            1
        });
        drop(group);
    }

    #[test]
    fn a_panicking_task_is_an_error_and_the_others_still_run() {
        let group = FrameTaskGroup::new(None);
        group.spawn("ok", |_| 1);
        group.spawn("boom", |_| panic!("culling blew up"));
        group.spawn("ok", |_| 3);
        let results = group.wait();
        assert_eq!(results[0], Ok(1));
        assert_eq!(
            results[1],
            Err(TaskError::Panicked { name: "boom", message: "culling blew up".into() })
        );
        assert_eq!(results[2], Ok(3));
    }

    /// Runs the notes a stepped pool queued, as a decode worker does.
    struct NoteRunner;

    impl streamrt_supervisor::Worker for NoteRunner {
        type Job = DecodeJob;
        fn run(&mut self, job: DecodeJob) {
            if let DecodeJob::Task(group) = job {
                group.run_one();
            }
        }
    }

    /// A stepped pool and a group of `tasks` squares queueing 2 notes at most in it.
    fn squares(tasks: u64) -> (streamrt_supervisor::WorkerPool<DecodeJob>, FrameTaskGroup<u64>) {
        let pool = streamrt_supervisor::WorkerPool::stepped(|_| NoteRunner);
        let group = FrameTaskGroup::new(Some(TaskPool { sender: pool.sender(), notes_max: 2 }));
        for i in 0..tasks {
            group.spawn("square", move |_| i * i);
        }
        (pool, group)
    }

    #[test]
    fn a_group_keeps_at_most_its_notes_queued_and_its_tasks_still_all_run_on_the_workers() {
        let (pool, group) = squares(100);
        let mut queued = pool.take_queued();
        assert_eq!(queued.len(), 2, "two notes for a hundred tasks");
        let mut ran = 0;
        while let Some(note) = queued.pop() {
            pool.run(note);
            ran += 1;
            queued.extend(pool.take_queued());
            assert!(queued.len() <= 2, "a taken note is put back, no more");
        }
        // A note a task, and the second note found the last task taken.
        assert_eq!(ran, 101);
        assert!(group.group.lock().results.iter().all(Option::is_some), "all ran on workers");
        let results: Vec<_> = group.wait().into_iter().map(Result::unwrap).collect();
        assert_eq!(results, (0..100).map(|i| i * i).collect::<Vec<_>>());
    }

    #[test]
    fn a_note_a_crashed_worker_lost_is_put_back_while_tasks_wait() {
        let (pool, group) = squares(10);
        let mut queued = pool.take_queued();
        assert_eq!(queued.len(), 2);
        // A worker took one and crashed before running it.
        drop(queued.pop());
        group.work().note_lost();
        queued.extend(pool.take_queued());
        assert_eq!(queued.len(), 2, "the lost note is put back");
        while let Some(note) = queued.pop() {
            pool.run(note);
            queued.extend(pool.take_queued());
        }
        assert!(group.group.lock().results.iter().all(Option::is_some), "all ran on workers");
    }

    #[test]
    fn tasks_not_started_before_a_cancel_are_cancelled() {
        let group = FrameTaskGroup::new(None);
        group.spawn("late", |_| ());
        group.work().cancel();
        assert!(group.is_cancelled());
        assert_eq!(group.wait(), [Err(TaskError::Cancelled { name: "late" })]);
    }
}
