//! The pool's tests: jobs in order, panics rebuilding workers in place, shutdowns that leave
//! a blocked thread behind, stepped pools.

use super::*;
use std::sync::mpsc;

struct Echo {
    generation: usize,
    out: mpsc::Sender<(u32, usize)>,
}

impl Worker for Echo {
    type Job = u32;
    fn run(&mut self, job: u32) {
        assert!(job != 13, "unlucky job");
        self.out.send((job, self.generation)).unwrap();
        self.generation += 1;
    }
}

const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs each job, a closure, and says when its thread is done with it.
struct Runner(mpsc::Sender<()>);

impl Worker for Runner {
    type Job = Box<dyn FnOnce() + Send>;
    fn run(&mut self, job: Self::Job) {
        job();
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

#[test]
fn a_job_that_shuts_its_pool_down_ends_its_thread_after_the_jobs_queued_behind_it() {
    let (ended_tx, ended) = mpsc::channel();
    let ended_tx = std::sync::Mutex::new(ended_tx);
    let pool =
        WorkerPool::start("test-runner", 1, move |_| Runner(ended_tx.lock().unwrap().clone()))
            .unwrap();
    let (stats, sender) = (pool.stats(), pool.sender());
    let held = std::sync::Arc::new(std::sync::Mutex::new(Some(pool)));
    let (queued_ran, ran) = mpsc::channel();
    let (entered, shutting) = mpsc::channel();
    let (go, released) = mpsc::channel::<()>();
    let owner = std::sync::Arc::clone(&held);
    sender
        .submit(Box::new(move || {
            entered.send(()).unwrap();
            released.recv().unwrap();
            // On the pool's one thread: the pool cannot join it, and must not try.
            drop(owner.lock().unwrap().take());
        }))
        .unwrap_or_else(|_| panic!("the pool is open"));
    shutting.recv_timeout(PATIENCE).unwrap();
    let queued = sender.submit(Box::new(move || queued_ran.send(()).unwrap()));
    assert!(queued.is_ok(), "the pool is open");
    go.send(()).unwrap();
    ran.recv_timeout(PATIENCE).expect("the job queued behind it still ran");
    // Its thread then takes its stop and ends, though a sender is still held.
    ended.recv_timeout(PATIENCE).expect("the thread took its stop and ended");
    assert!(held.lock().unwrap().is_none());
    drop((stats, sender));
}

#[test]
fn a_shutdown_within_leaves_a_blocked_thread_behind_which_ends_once_its_job_returns() {
    let (ended_tx, ended) = mpsc::channel();
    let ended_tx = std::sync::Mutex::new(ended_tx);
    let pool =
        WorkerPool::start("test-runner", 1, move |_| Runner(ended_tx.lock().unwrap().clone()))
            .unwrap();
    let sender = pool.sender();
    let (entered, blocked) = mpsc::channel();
    let (go, released) = mpsc::channel::<()>();
    let job = Box::new(move || {
        entered.send(()).unwrap();
        released.recv().unwrap();
    });
    sender.submit(job).unwrap_or_else(|_| panic!("the pool is open"));
    blocked.recv_timeout(PATIENCE).unwrap();
    assert_eq!(pool.shutdown_within(Duration::ZERO), 1, "its one thread is left behind");
    assert!(sender.submit(Box::new(|| ())).is_err(), "the pool is closed all the same");
    assert!(ended.try_recv().is_err(), "still running its job");
    go.send(()).unwrap();
    // Its stop was left in the queue for it, though a sender is still held.
    ended.recv_timeout(PATIENCE).expect("the thread took its stop and ended");
}

#[test]
fn a_stepped_pool_runs_jobs_on_the_caller_in_its_order_and_survives_panics() {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let pool =
        WorkerPool::stepped(move |_| Echo { generation: 0, out: tx.lock().unwrap().clone() });
    let sender = pool.sender();
    for job in [1, 2, 13, 3] {
        sender.submit(job).unwrap();
    }
    assert!(rx.try_recv().is_err(), "a stepped pool runs nothing by itself");
    let mut queued = pool.take_queued();
    assert_eq!(queued, vec![1, 2, 13, 3]);
    queued.reverse();
    queued.into_iter().for_each(|job| pool.run(job));
    let got: Vec<_> = rx.try_iter().collect();
    // 3 ran first; 13 panicked and rebuilt the worker, so 2 starts its count afresh.
    assert_eq!(got, vec![(3, 0), (2, 0), (1, 1)]);
    assert_eq!(pool.stats().restarts(), 1);
    assert_eq!(pool.size(), 0);
}

#[test]
fn thread_ids_are_those_of_the_threads_its_jobs_run_on() {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let pool = WorkerPool::start("where", 2, move |_| {
        let out = tx.lock().unwrap().clone();
        Runner(out)
    })
    .unwrap();
    let ids: Vec<_> = pool.thread_ids().collect();
    assert_eq!(ids.len(), 2);
    assert!(!ids.contains(&std::thread::current().id()));
    let (ran_tx, ran) = mpsc::channel();
    for _ in 0..8 {
        let ran_tx = ran_tx.clone();
        let job = move || ran_tx.send(std::thread::current().id()).unwrap();
        assert!(pool.sender().submit(Box::new(job)).is_ok());
    }
    for _ in 0..8 {
        assert!(ids.contains(&ran.recv_timeout(PATIENCE).unwrap()));
    }
    pool.shutdown();
    assert_eq!(rx.try_iter().count(), 2, "each thread's worker was dropped as it ended");
}

#[test]
fn submit_all_queues_the_jobs_in_order_and_a_closed_pool_hands_every_one_back() {
    let (tx, _rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let pool =
        WorkerPool::stepped(move |_| Echo { generation: 0, out: tx.lock().unwrap().clone() });
    let sender = pool.sender();
    sender.submit_all([4, 5, 6]).unwrap();
    sender.submit(7).unwrap();
    assert_eq!(pool.take_queued(), vec![4, 5, 6, 7]);
    pool.shutdown();
    let refused = sender.submit_all([8, 9]).expect_err("the pool is closed");
    assert_eq!(refused.0, vec![8, 9]);
}

/// Keeps its jobs until the pool calls `idle`, then sends them as one batch; job 0 first
/// waits for `gate`, so that the jobs after it are queued by the time it ends.
struct Batcher {
    batch: Vec<u32>,
    gate: Option<mpsc::Receiver<()>>,
    out: mpsc::Sender<Vec<u32>>,
}

impl Worker for Batcher {
    type Job = u32;
    fn run(&mut self, job: u32) {
        if job == 0 {
            self.gate.take().expect("one gate").recv().unwrap();
        }
        self.batch.push(job);
    }

    fn idle(&mut self) {
        self.out.send(std::mem::take(&mut self.batch)).unwrap();
    }
}

fn batcher(
    gate: mpsc::Receiver<()>,
) -> (impl Fn(usize) -> Batcher + Send + Sync, mpsc::Receiver<Vec<u32>>) {
    let (tx, rx) = mpsc::channel();
    let (gate, tx) = (std::sync::Mutex::new(Some(gate)), std::sync::Mutex::new(tx));
    let factory = move |_| Batcher {
        batch: Vec::new(),
        gate: gate.lock().unwrap().take(),
        out: tx.lock().unwrap().clone(),
    };
    (factory, rx)
}

#[test]
fn a_worker_is_idle_only_once_the_queue_is_empty() {
    let (open, gate) = mpsc::channel();
    let (factory, batches) = batcher(gate);
    let pool = WorkerPool::start("batcher", 1, factory).unwrap();
    // Idle before the first job: nothing was queued yet.
    assert_eq!(batches.recv_timeout(PATIENCE).unwrap(), Vec::<u32>::new());
    let sender = pool.sender();
    for job in 0..4 {
        sender.submit(job).unwrap();
    }
    open.send(()).unwrap();
    assert_eq!(batches.recv_timeout(PATIENCE).unwrap(), vec![0, 1, 2, 3]);
    pool.shutdown();
    assert!(batches.try_recv().is_err(), "no idle call after the last batch");
}

#[test]
fn a_worker_that_takes_its_stop_behind_queued_jobs_is_idle_once_more_first() {
    let (open, gate) = mpsc::channel();
    let (factory, batches) = batcher(gate);
    let pool = WorkerPool::start("batcher", 1, factory).unwrap();
    assert_eq!(batches.recv_timeout(PATIENCE).unwrap(), Vec::<u32>::new());
    let sender = pool.sender();
    for job in 0..3 {
        sender.submit(job).unwrap();
    }
    // The stop is queued behind the three jobs while job 0 waits at its gate.
    assert_eq!(pool.shutdown_within(Duration::ZERO), 1, "its thread is held at the gate");
    open.send(()).unwrap();
    assert_eq!(batches.recv_timeout(PATIENCE).unwrap(), vec![0, 1, 2], "the last batch goes on");
}

#[test]
fn a_stepped_worker_is_idle_after_every_job() {
    let (open, gate) = mpsc::channel();
    let (factory, batches) = batcher(gate);
    let pool = WorkerPool::stepped(factory);
    open.send(()).unwrap();
    for job in 0..3 {
        pool.run(job);
    }
    assert_eq!(batches.try_iter().collect::<Vec<_>>(), vec![vec![0], vec![1], vec![2]]);
}

#[test]
fn a_panicking_job_rebuilds_its_worker_and_the_pool_keeps_its_size() {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let pool = WorkerPool::start("echo", 1, move |_| Echo {
        generation: 0,
        out: tx.lock().unwrap().clone(),
    })
    .unwrap();
    let sender = pool.sender();
    for job in [1, 2, 13, 3] {
        sender.submit(job).unwrap();
    }
    let got: Vec<_> = (0..3).map(|_| rx.recv_timeout(PATIENCE).unwrap()).collect();
    // The worker's state (its job counter) starts afresh after the panic on job 13.
    assert_eq!(got, vec![(1, 0), (2, 1), (3, 0)]);
    let stats = pool.stats();
    assert_eq!(stats.restarts(), 1);
    assert_eq!(stats.live(), 1);
    assert_eq!(pool.size(), 1);
    pool.shutdown();
    assert_eq!(stats.live(), 0);
    assert!(matches!(sender.submit(4), Err(PoolClosed(4))));
}

/// Panics in its drop once a job panicked in it: the state such a panic leaves behind.
struct Brittle {
    armed: bool,
    out: mpsc::Sender<u32>,
}

impl Worker for Brittle {
    type Job = u32;
    fn run(&mut self, job: u32) {
        self.armed = job == 13;
        assert!(job != 13, "unlucky job");
        self.out.send(job).unwrap();
    }
}

impl Drop for Brittle {
    fn drop(&mut self) {
        assert!(!self.armed, "dropped half-updated");
    }
}

#[test]
fn a_worker_whose_drop_panics_after_its_job_did_is_still_replaced_in_place() {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let make = move |_| Brittle { armed: false, out: tx.lock().unwrap().clone() };
    let pool = WorkerPool::start("brittle", 1, make).unwrap();
    for job in [13, 1] {
        pool.sender().submit(job).unwrap();
    }
    assert_eq!(rx.recv_timeout(PATIENCE), Ok(1), "the thread runs on with a new worker");
    assert_eq!((pool.stats().live(), pool.stats().restarts()), (1, 1));
    pool.shutdown();
}

#[test]
fn a_thread_that_a_panic_ends_is_counted_out_of_live() {
    let builds = AtomicUsize::new(0);
    let (tx, _rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    // The rebuild after job 13's panic panics itself: a panic the loop cannot catch.
    let pool = WorkerPool::start("echo", 1, move |_| {
        assert_eq!(builds.fetch_add(1, Ordering::SeqCst), 0, "scripted factory panic");
        Echo { generation: 0, out: tx.lock().unwrap().clone() }
    })
    .unwrap();
    let stats = pool.stats();
    pool.sender().submit(13).unwrap();
    // Waits on the count itself: nothing else outlives the thread to tell when it ended.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while stats.live() != 0 {
        assert!(std::time::Instant::now() < deadline, "the ended thread is still counted");
        std::thread::yield_now();
    }
    pool.shutdown();
    assert_eq!(stats.live(), 0, "counted out once");
}
