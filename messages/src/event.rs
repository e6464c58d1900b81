//! Telemetry events: one record per lifecycle step.
//!
//! Events carry monotonic microseconds since the runtime started (`t_us`), never wall-clock
//! time, so a log is comparable across runs and a replay can regenerate it.

use serde::{Deserialize, Serialize};

use crate::key::AssetKey;
use crate::{ErrorKind, Generation, LoadState, Priority, RequestId};

/// The stage a request was in when it was cancelled.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum CancelStage {
    /// Still queued: no byte was read.
    Queued,
    /// Dispatched: being read or decoded.
    Loading,
    /// Decoded, waiting to be published.
    Decoded,
}

impl CancelStage {
    /// The stage matching a request's state when it was cancelled.
    pub fn of(state: LoadState) -> Self {
        match state {
            LoadState::Pending => Self::Queued,
            LoadState::Loading => Self::Loading,
            _ => Self::Decoded,
        }
    }

    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Loading => "loading",
            Self::Decoded => "decoded",
        }
    }
}

/// What happened.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum EventKind {
    /// The runtime started, with its configuration.
    Started {
        /// IO worker threads.
        worker_count: u32,
        /// Decode threads.
        decode_threads: u32,
        /// The scheduler's queue limit.
        queue_capacity: u64,
        /// Whether a `High` or `Critical` load is decoded on the IO worker that read it (its
        /// `decode_*` events then carry that IO worker's index), not on a decode thread.
        urgent_decodes_on_io: bool,
    },
    /// The runtime stopped.
    Stopped,
    /// A request was accepted by its cache.
    Queued,
    /// The scheduler sent a load to an IO worker.
    Dispatched,
    /// An IO worker started reading a load.
    ReadStarted,
    /// An IO worker finished reading a load (`bytes` read, none on failure).
    ReadDone,
    /// A decode worker started decoding a load.
    DecodeStarted,
    /// A decode worker finished decoding a load.
    DecodeDone,
    /// A load's bytes were decoded and the cache took the value.
    Decoded,
    /// An unreferenced resident asset was evicted to stay within the memory budget.
    Evicted,
    /// A request became `Ready`.
    Published,
    /// A request was cancelled.
    Cancelled {
        /// Where it was.
        stage: CancelStage,
    },
    /// A decoded value arrived for a load that had been cancelled; it was dropped.
    CancelledAfterDecode,
    /// A request failed.
    Failed {
        /// Why.
        kind: ErrorKind,
    },
    /// A load failed transiently and will be attempted again.
    Retried {
        /// The attempt about to start, from 2.
        attempt: u32,
        /// Why the previous attempt failed.
        kind: ErrorKind,
    },
    /// A key's decoder panicked too often; requests for it now fail at once.
    Quarantined {
        /// The panics that led to it.
        panics: u32,
    },
    /// A supervised actor or worker was restarted. An actor's restart is reported once the new
    /// incarnation serves (it can be asked at once), except for a cache incarnation that failed
    /// to take its loads back as it started: that restart is reported as it stops, and the next
    /// one's event follows once that one serves. A worker's is reported as it is rebuilt.
    Restarted {
        /// Which one (`scheduler`, `cache:mesh`, `io-worker`, ...).
        actor: String,
    },
    /// A frame began and published this many requests.
    FrameBegin {
        /// Requests published at this boundary.
        published: u32,
        /// The count budget of this frame.
        budget: u32,
    },
    /// A frame ended.
    FrameEnd,
    /// A periodic sample of the runtime's load.
    Sample {
        /// Loads waiting in the scheduler's queue.
        queue_depth: u64,
        /// Loads dispatched and not finished.
        in_flight: u64,
        /// IO workers busy.
        busy_io: u32,
        /// Decode workers busy.
        busy_decode: u32,
        /// Telemetry events dropped so far.
        events_dropped: u64,
    },
}

impl EventKind {
    /// A short stable name, as the JSON log spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Started { .. } => "started",
            Self::Stopped => "stopped",
            Self::Queued => "queued",
            Self::Dispatched => "dispatched",
            Self::ReadStarted => "read_started",
            Self::ReadDone => "read_done",
            Self::DecodeStarted => "decode_started",
            Self::DecodeDone => "decode_done",
            Self::Decoded => "decoded",
            Self::Evicted => "evicted",
            Self::Published => "published",
            Self::Cancelled { .. } => "cancelled",
            Self::CancelledAfterDecode => "cancelled_after_decode",
            Self::Failed { .. } => "failed",
            Self::Retried { .. } => "retried",
            Self::Quarantined { .. } => "quarantined",
            Self::Restarted { .. } => "restarted",
            Self::FrameBegin { .. } => "frame_begin",
            Self::FrameEnd => "frame_end",
            Self::Sample { .. } => "sample",
        }
    }
}

/// One telemetry record.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Event {
    /// Monotonic microseconds since the runtime started.
    pub t_us: u64,
    /// What happened.
    pub kind: EventKind,
    /// The request concerned; for a load shared by several requests, the one that started it.
    pub request: Option<RequestId>,
    /// The load concerned.
    pub generation: Option<Generation>,
    /// The asset concerned.
    pub key: Option<AssetKey>,
    /// The request's or load's priority.
    pub priority: Option<Priority>,
    /// Bytes read or resident, where known.
    pub bytes: Option<u64>,
    /// The worker (index within its pool: IO for reads, decode for decodes).
    pub worker: Option<u32>,
    /// The frame index at the time.
    pub frame: u64,
}

impl Event {
    /// An event with only a time, a kind and a frame; fill the rest with the `with_*` setters.
    pub fn new(t_us: u64, frame: u64, kind: EventKind) -> Self {
        Self {
            t_us,
            kind,
            request: None,
            generation: None,
            key: None,
            priority: None,
            bytes: None,
            worker: None,
            frame,
        }
    }

    /// Sets the request.
    #[must_use]
    pub fn with_request(mut self, request: RequestId) -> Self {
        self.request = Some(request);
        self
    }

    /// Sets the generation.
    #[must_use]
    pub fn with_generation(mut self, generation: Generation) -> Self {
        self.generation = Some(generation);
        self
    }

    /// Sets the key.
    #[must_use]
    pub fn with_key(mut self, key: AssetKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Sets the priority.
    #[must_use]
    pub fn with_priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Sets the worker.
    #[must_use]
    pub fn with_worker(mut self, worker: u32) -> Self {
        self.worker = Some(worker);
        self
    }

    /// Sets the byte count.
    #[must_use]
    pub fn with_bytes(mut self, bytes: u64) -> Self {
        self.bytes = Some(bytes);
        self
    }
}
