//! The live status of a runtime, as a status query returns it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A snapshot of the runtime's configuration and live counters.
///
/// Its `Display` is the one-line form `streamctl status` prints:
/// `worker_count=2 queue_capacity=64 in_flight=0`.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Status {
    /// IO worker threads.
    pub worker_count: usize,
    /// Decode worker threads.
    pub decode_threads: usize,
    /// The scheduler's queue limit.
    pub queue_capacity: usize,
    /// Steps of CPU priority the IO and decode threads were asked to run below the runtime's
    /// builder (`RuntimeConfig::worker_nice`, applied on Linux only; protocol version 5).
    pub worker_nice: u8,
    /// Loads dispatched to workers and not yet finished.
    pub in_flight: u64,
    /// Loads waiting in the scheduler's queue.
    pub queued: u64,
    /// Requests made.
    pub requested: u64,
    /// Requests that became `Ready`.
    pub ready: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Requests that were cancelled.
    pub cancelled: u64,
    /// Decoded values dropped because their load had been cancelled: by the requests letting
    /// go, or by a cache's restart, which loads its unfinished requests again under new
    /// loads.
    pub cancelled_after_decode: u64,
    /// Bytes read from sources, as each source gives them (a pack's entries decompressed),
    /// the reads of loads cancelled while they were read included.
    pub bytes_read: u64,
    /// Load attempts retried after a transient failure.
    pub retries: u64,
    /// Actors and workers restarted by their supervisors.
    pub restarts: u64,
    /// Keys quarantined after repeated decoder panics.
    pub quarantined: u64,
    /// Telemetry events the runtime lost: dropped at its full buffer, or not written to a
    /// telemetry file whose write failed. (A subscriber's feed counts its own.)
    pub events_dropped: u64,
    /// The current frame index.
    pub frame: u64,
}

impl Status {
    /// Requests that have not reached a terminal state.
    pub fn outstanding(&self) -> u64 {
        self.requested.saturating_sub(self.ended())
    }

    /// Requests that reached a terminal state. Saturating: a status may come from a peer.
    pub fn ended(&self) -> u64 {
        self.ready.saturating_add(self.failed).saturating_add(self.cancelled)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "worker_count={} queue_capacity={} in_flight={}",
            self.worker_count, self.queue_capacity, self.in_flight
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_a_peer_saturate_rather_than_overflow() {
        let s = Status { requested: 5, ready: u64::MAX, failed: 1, ..Status::default() };
        assert_eq!((s.ended(), s.outstanding()), (u64::MAX, 0));
    }
}
