//! The replay log's writer thread: the threads that record (the core thread among them) hand
//! it whole frames and never wait on the file, which may be a pipe a tool reads slowly, or
//! not at all, or a file on a mount that hangs.
//!
//! [`Spool`] gathers the frames it is given, [`SPOOL_BATCH_BYTES`] at a time, and hands each
//! batch to its thread, which writes it out through a [`WholeWrites`]: the file still ends
//! at a whole frame however a write ends.
//!
//! # Backpressure
//!
//! The bytes handed over and not yet written are at most `behind_bytes_max`
//! ([`SPOOL_BEHIND_BYTES_MAX`] for the replay log). A write that would pass it fails instead,
//! and so does every write after it: the recorder stops recording there, as after any failed
//! write, and the log ends at the last frame handed over before, whole, once the file takes
//! it. Nothing that records ever waits on the file.
//!
//! # Errors
//!
//! A write out that failed on the thread is reported by the next [`Spool`] write or flush. A
//! flush waits for its thread to write out everything handed over before it, at most
//! `flush_wait`; past that it fails, and the thread is left behind, blocked in its write,
//! until the file takes it (a pipe's reader reads or goes) or the process ends.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{TakeBack, WholeWrites};
use crate::lock::lock;

/// The bytes a [`Spool`] gathers before it hands them to its thread.
const SPOOL_BATCH_BYTES: usize = 8 << 10;

/// How far the replay log's file may fall behind the recording, in bytes handed over and not
/// yet written, before the recording stops.
pub(crate) const SPOOL_BEHIND_BYTES_MAX: usize = 64 << 20;

/// Writes to a file on a thread of its own (see the module docs). Each `write` call's bytes
/// must be whole frames: a batch ends only between two calls.
pub(crate) struct Spool {
    batch: Vec<u8>,
    shared: Arc<Shared>,
    flush_wait: Duration,
    behind_bytes_max: usize,
}

/// What a [`Spool`] and its thread share.
struct Shared {
    queue: Mutex<Queue>,
    /// Set with the queue's `error`: a write looks here, not at the queue's lock.
    failed: AtomicBool,
    /// Signalled when a batch is handed over or the spool is dropped.
    work: Condvar,
    /// Signalled when a batch was written out (or failed to be).
    written: Condvar,
}

#[derive(Default)]
struct Queue {
    batches: VecDeque<Vec<u8>>,
    /// Bytes handed over and not yet written out.
    behind_bytes: usize,
    /// Batches handed over so far.
    handed: u64,
    /// Batches written out (or failed) so far.
    done: u64,
    /// The first error: a failed write out, or the spool fallen too far behind.
    error: Option<String>,
    /// The spool was dropped: the thread writes out what is left and ends.
    closed: bool,
}

impl Spool {
    /// Starts the thread that writes to `file`.
    ///
    /// # Errors
    ///
    /// The thread could not be started.
    pub(crate) fn new<F: TakeBack + Send + 'static>(
        file: F,
        flush_wait: Duration,
        behind_bytes_max: usize,
    ) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            failed: AtomicBool::new(false),
            work: Condvar::new(),
            written: Condvar::new(),
        });
        let theirs = Arc::clone(&shared);
        let writes = WholeWrites::new(file);
        std::thread::Builder::new()
            .name("streamrt-replay-log".into())
            .spawn(move || theirs.write_out(writes))?;
        let batch = Vec::with_capacity(SPOOL_BATCH_BYTES);
        Ok(Self { batch, shared, flush_wait, behind_bytes_max })
    }

    /// Hands the batch gathered so far to the thread; the batches handed over so far.
    fn hand_over(&mut self) -> io::Result<u64> {
        let mut queue = lock(&self.shared.queue);
        queue.failed()?;
        if self.batch.is_empty() {
            return Ok(queue.handed);
        }
        let behind = queue.behind_bytes + self.batch.len();
        if behind > self.behind_bytes_max {
            let why = format!(
                "the log's file fell {} bytes behind the recording (at most {}): it is not \
                 taking writes, and the runtime does not wait on it",
                behind, self.behind_bytes_max
            );
            self.shared.fail(&mut queue, why.clone());
            return Err(io::Error::other(why));
        }
        queue.behind_bytes = behind;
        queue.handed += 1;
        let next = Vec::with_capacity(SPOOL_BATCH_BYTES);
        queue.batches.push_back(std::mem::replace(&mut self.batch, next));
        self.shared.work.notify_one();
        Ok(queue.handed)
    }
}

impl Write for Spool {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.shared.failed.load(Ordering::Acquire) {
            lock(&self.shared.queue).failed()?;
        }
        self.batch.extend_from_slice(bytes);
        if self.batch.len() >= SPOOL_BATCH_BYTES {
            self.hand_over()?;
        }
        Ok(bytes.len())
    }

    /// Hands everything over and waits, at most `flush_wait`, until it is written out. One
    /// that runs out of time stops the spool, as a failed write does: a later flush (a second
    /// stop's) then fails at once rather than waiting as long again.
    fn flush(&mut self) -> io::Result<()> {
        let handed = self.hand_over()?;
        let deadline = Instant::now() + self.flush_wait;
        let mut queue = lock(&self.shared.queue);
        while queue.done < handed && queue.error.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let why = format!(
                    "the log's writer did not finish its last writes within {} ms (its file \
                     is not taking them): the log may end before the session did",
                    self.flush_wait.as_millis()
                );
                self.shared.fail(&mut queue, why);
                break;
            }
            queue = wait(&self.shared.written, queue, left);
        }
        queue.failed()
    }
}

impl Drop for Spool {
    /// Hands over what is left, if it can, and lets the thread end once it is written out,
    /// without waiting for it (the spool may be dropped on the core thread): what was
    /// recorded after the last flush (the shutdown's) is written unless the process ends
    /// first.
    fn drop(&mut self) {
        let _ = self.hand_over();
        lock(&self.shared.queue).closed = true;
        self.shared.work.notify_one();
    }
}

impl Queue {
    /// The first error, if any.
    fn failed(&self) -> io::Result<()> {
        match &self.error {
            Some(why) => Err(io::Error::other(why.clone())),
            None => Ok(()),
        }
    }
}

impl Shared {
    /// Stops the spool for `why`, unless it stopped already.
    fn fail(&self, queue: &mut Queue, why: String) {
        queue.error.get_or_insert(why);
        self.failed.store(true, Ordering::Release);
    }

    /// The thread: writes out each batch handed over, in order, until the spool is dropped
    /// and nothing is left.
    fn write_out<F: TakeBack>(&self, mut file: WholeWrites<F>) {
        let mut queue = lock(&self.queue);
        loop {
            let Some(batch) = queue.batches.pop_front() else {
                if queue.closed {
                    return;
                }
                queue = self.work.wait(queue).unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            drop(queue);
            // Written out whole, or taken back: `WholeWrites` refuses every write after a
            // failed one, so the file ends at the last batch written whole.
            let result = file.write_all(&batch).and_then(|()| file.flush());
            queue = lock(&self.queue);
            queue.behind_bytes -= batch.len();
            queue.done += 1;
            if let Err(e) = result {
                self.fail(&mut queue, e.to_string());
            }
            self.written.notify_all();
        }
    }
}

fn wait<'a>(cv: &Condvar, queue: MutexGuard<'a, Queue>, left: Duration) -> MutexGuard<'a, Queue> {
    cv.wait_timeout(queue, left).unwrap_or_else(PoisonError::into_inner).0
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// A file whose writes block until its gate lets them through, each sending what it took.
    struct Held {
        gate: Gate,
        taken: mpsc::Sender<Vec<u8>>,
    }

    impl Write for Held {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (open, cv) = &*self.gate;
            let mut open = lock(open);
            while !*open {
                open = cv.wait(open).unwrap_or_else(PoisonError::into_inner);
            }
            self.taken.send(buf.to_vec()).map_err(io::Error::other)?;
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl TakeBack for Held {
        fn take_back_to(&mut self, _len: u64) {}
    }

    type Gate = Arc<(Mutex<bool>, Condvar)>;

    fn held() -> (Held, Gate, mpsc::Receiver<Vec<u8>>) {
        let gate = Gate::default();
        let (taken, received) = mpsc::channel();
        (Held { gate: Arc::clone(&gate), taken }, gate, received)
    }

    fn open(gate: &(Mutex<bool>, Condvar)) {
        *lock(&gate.0) = true;
        gate.1.notify_all();
    }

    #[test]
    fn a_file_that_takes_no_writes_holds_no_writer_and_stops_the_spool_past_its_limit() {
        let (file, gate, taken) = held();
        let frame = vec![7; SPOOL_BATCH_BYTES];
        let mut spool = Spool::new(file, Duration::from_millis(10), 3 * SPOOL_BATCH_BYTES).unwrap();
        for _ in 0..3 {
            spool.write_all(&frame).expect("within the limit, handed over without waiting");
        }
        let refused = spool.write_all(&frame).unwrap_err();
        assert!(refused.to_string().contains("fell"), "{refused}");
        assert!(spool.write_all(b"x").is_err(), "nothing after the spool stopped");
        assert!(spool.flush().is_err());
        open(&gate);
        drop(spool);
        let written: Vec<Vec<u8>> = taken.iter().collect();
        assert_eq!(written, vec![frame.clone(), frame.clone(), frame], "what was handed over");
    }

    #[test]
    fn a_flush_past_its_patience_stops_the_spool() {
        let (file, gate, taken) = held();
        let mut spool =
            Spool::new(file, Duration::from_millis(10), SPOOL_BEHIND_BYTES_MAX).unwrap();
        spool.write_all(b"frame").unwrap();
        let late = spool.flush().unwrap_err();
        assert!(late.to_string().contains("did not finish"), "{late}");
        // Stopped: a second flush does not wait as long again, and nothing more is taken.
        spool.flush_wait = Duration::from_secs(600);
        assert!(spool.flush().is_err());
        assert!(spool.write_all(b"more").is_err());
        open(&gate);
        drop(spool);
        let written: Vec<Vec<u8>> = taken.iter().collect();
        assert_eq!(written, [b"frame".to_vec()], "what was handed over before, written out");
    }

    #[test]
    fn a_flush_waits_for_the_writes_before_it_and_the_drop_hands_over_the_rest() {
        let (file, gate, taken) = held();
        open(&gate);
        let mut spool = Spool::new(file, Duration::from_secs(600), SPOOL_BEHIND_BYTES_MAX).unwrap();
        spool.write_all(b"frame").unwrap();
        spool.flush().expect("written out once the file takes it");
        assert_eq!(taken.try_recv().unwrap(), b"frame", "written before the flush returned");
        spool.write_all(b"tail").unwrap();
        drop(spool);
        assert_eq!(taken.recv().unwrap(), b"tail", "what is left is written out at the drop");
    }
}
