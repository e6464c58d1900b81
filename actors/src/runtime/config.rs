//! The runtime's configuration: thread counts, limits and budgets, each with its unit.

use std::collections::BTreeMap;
use std::path::PathBuf;

use streamrt_supervisor::{Backoff, Intensity};

use crate::frame::PublishMode;

/// How a type's failed loads are attempted again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts at most for a transient failure (IO errors, loads a crashed worker lost),
    /// counting the first, which is always made: 0 and 1 both mean no retry; past 65,535,
    /// 65,535. Other failures are not retried.
    pub attempts_max: u32,
    /// The delay before each retry: `min_ms`, doubling up to `max_ms` (a `min_ms` of 0 stays
    /// 0: every retry is at once, and `attempts_max` alone bounds them).
    pub backoff: Backoff,
    /// Decoder panics a key may cause in a row (a decode of it that works starts the count
    /// again) before it is quarantined: later requests for it fail at once with
    /// `Quarantined`. Panics below this are retried (0 and 1 both quarantine a key at its
    /// first panic).
    pub panics_max: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts_max: 3, backoff: Backoff { min_ms: 2, max_ms: 100 }, panics_max: 3 }
    }
}

impl RetryPolicy {
    /// Checks the backoff: `min_ms` at most `max_ms`, which is at most
    /// [`RETRY_BACKOFF_MS_MAX`] (a retry waiting longer would leave its request looking hung).
    ///
    /// # Errors
    ///
    /// The first setting out of its range, as a [`ConfigError`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        first_too_large(&[
            ("retry.backoff.min_ms", self.backoff.min_ms, self.backoff.max_ms),
            ("retry.backoff.max_ms", self.backoff.max_ms, RETRY_BACKOFF_MS_MAX),
        ])
    }
}

/// Everything a runtime is sized by. Every number is fixed by the configuration, never derived
/// from the machine unless asked (see [`RuntimeConfig::decode_threads_per_core`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// IO worker threads; each performs one blocking read at a time.
    pub workers: usize,
    /// Loads dispatched and not yet read, at most (read credits). At least `workers` keeps
    /// every IO thread fed without waiting for the scheduler. A load whose size the source
    /// declares below `read_credit_bytes` takes only a share of a credit (see there). One
    /// credit more is kept for `High` and `Critical` loads, so that one is dispatched at once
    /// while normal loads hold all of these.
    pub reads_in_flight: usize,
    /// The bytes one read credit (and one decode credit) stands for, as the source declares a
    /// load's size (a pack's raw size). A load of unknown size, or of this size or more, takes
    /// a whole credit; a smaller one takes a share in proportion, at least 1/16 of a credit. So
    /// credits bound bytes in flight, and small assets get up to 16 times as many loads in
    /// flight as large ones. At most 4 GiB (`u32::MAX`).
    pub read_credit_bytes: u64,
    /// Decode worker threads.
    pub decode_threads: usize,
    /// Whether a `High` or `Critical` load is decoded on the IO worker that read it (the
    /// default), not queued for a decode thread: it then waits for no decode thread to get a
    /// core, and up to `workers + decode_threads` decodes may run at once. Off, every decode
    /// runs on the decode threads, and `decode_threads` is the decode parallelism exactly. A
    /// deterministic run decodes on its stepped decode worker either way.
    pub urgent_decodes_on_io: bool,
    /// How many steps of CPU priority (a nice increment) the IO and decode threads run below
    /// the thread that builds the runtime: 0 runs them alike, [`WORKER_NICE_MAX`] at the
    /// lowest priority (a builder already niced gets fewer steps: 19 is the floor). An engine
    /// whose own threads must not wait behind streaming sets it: the OS shares the CPU by
    /// weight, and at nice 10 a worker weighs about a tenth of a thread at the builder's
    /// priority, so the engine's threads (and the runtime's core thread, which keeps the
    /// builder's priority) get most of a contended core and wake sooner. What it costs: the
    /// workers get less CPU while anything else wants it (see docs/PERFORMANCE.md). What runs
    /// on the workers runs lowered too: urgent loads' reads, frame tasks, and any thread a
    /// decoder or a source starts (threads inherit their creator's priority). Linux only
    /// (Linux keeps a priority per thread); ignored elsewhere and in deterministic runs.
    pub worker_nice: u8,
    /// Bytes the IO workers read per second at most, on average (`None`: no limit): what the
    /// storage was asked for where the source counts it (a pack: entries as stored, its
    /// coalescing windows whole, failed reads too; `Source::storage_bytes_read`), else what
    /// each read hands over. A read past the rate holds its worker and read credit until it
    /// is paid for.
    pub io_bytes_per_sec_max: Option<u64>,
    /// Decode credits: loads between dispatch and their end are bounded by `reads_in_flight +
    /// decode_backlog_max` credits (in shares, see `read_credit_bytes`), so at most this many
    /// credits' worth wait to be decoded while every read credit is in use.
    pub decode_backlog_max: usize,
    /// Loads waiting in the scheduler's queue, at most; past it a new load fails with
    /// `QueueFull` (a retry, or a load queued again after a restart, is not refused).
    pub queue_capacity: usize,
    /// Requests not yet terminal, at most; past it `request` returns a handle already failed
    /// with `QueueFull`. Bounds the requests in the engine-to-runtime queues, but for those
    /// whose handles were dropped before their cache took them in (ended, so no longer
    /// counted; see the cache's `# Backpressure`); a request adds at most one release to its
    /// cache's lane besides (its handles' let-go, none for a refused one), and at most one
    /// reprioritisation waiting at a time (changes made meanwhile are read as it is applied). The
    /// count is read without a lock, so requests made at the same moment on other threads can each
    /// pass it: the bound is exceeded by at most one per thread requesting at once.
    pub requests_outstanding_max: usize,
    /// When decoded assets become visible.
    pub publish: PublishMode,
    /// Telemetry events buffered for the sink, at most, up to [`EVENTS_BUFFERED_MAX`]; past it
    /// events are dropped and counted. The buffer is allocated whole when the runtime starts.
    pub events_buffered_max: usize,
    /// Where the sink writes JSON lines, if anywhere: created or truncated when the runtime
    /// starts. A named pipe must have a reader by then (else the build fails with `Io`); a
    /// sink still blocked writing at shutdown is left behind after `shutdown_ack_ms_max`.
    pub telemetry_path: Option<PathBuf>,
    /// How often the sink drains its buffer, in milliseconds (0 counts as 1).
    pub telemetry_flush_ms: u64,
    /// How often the sink records a `sample` event (queue depth, busy workers), in
    /// milliseconds (0 counts as 1).
    pub telemetry_sample_ms: u64,
    /// Whether events reach the sink's buffer (the telemetry file and subscribers). `tracing`
    /// at debug level, a replay recording and the counters (and so `status`) get them either
    /// way.
    pub events_enabled: bool,
    /// Messages an actor takes per wake from each of its mailboxes before yielding to the
    /// others on its arbiter (a cache takes the scheduler's dispatch orders in full).
    pub drain_batch_max: usize,
    /// How long shutdown waits for each actor's acknowledgement, in milliseconds, before it
    /// fails the actor's requests itself (after the core supervisor gave up, only while the
    /// actor lives), and for each worker pool's threads to end (a thread still in a source's
    /// read, a decode or a frame task then is left behind, to end on its own) and for the
    /// telemetry thread (left behind likewise while it is blocked writing) and the core thread
    /// (left behind while an actor is held in the engine's code, an asset's `Drop`) and for the
    /// replay log's last writes (its thread left behind likewise); also how long `subscribe`
    /// and `flush_telemetry` wait for the telemetry sink.
    pub shutdown_ack_ms_max: u64,
    /// Levels of dependencies below a request at most, up to [`DEPENDENCY_DEPTH_MAX`]; a deeper
    /// chain fails the request with `DependencyFailed` (as does a cycle a custom source
    /// reports, named as one).
    pub dependency_depth_max: usize,
    /// Requests in one request's dependency tree at most, itself included: each asset once,
    /// however many dependents share it.
    pub dependency_nodes_max: usize,
    /// Bytes of decoded assets kept resident, all types together. Assets no request holds
    /// are evicted least recently used first to stay within it; held assets never are.
    pub bytes_resident_max: u64,
    /// Bytes resident per asset type (by type name), on top of the overall budget.
    pub type_bytes_resident_max: BTreeMap<String, u64>,
    /// Retries and quarantine, for types registered without their own policy.
    pub retry: RetryPolicy,
    /// Restarts the runtime's supervisors allow within a window before they escalate and the
    /// runtime shuts down.
    pub restart_intensity: Intensity,
    /// The delay before an actor restart: `min_ms`, doubling with each of that actor's own
    /// restarts in the intensity window up to `max_ms`. The default's `min_ms` is 0: an actor
    /// restarts at once (its successor takes over its mailbox and what it salvaged), and
    /// `restart_intensity` alone bounds a crash loop.
    pub restart_backoff: Backoff,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            reads_in_flight: 4,
            read_credit_bytes: 256 << 10,
            decode_threads: 2,
            worker_nice: 0,
            urgent_decodes_on_io: true,
            io_bytes_per_sec_max: None,
            decode_backlog_max: 4,
            queue_capacity: 65_536,
            requests_outstanding_max: 1 << 20,
            publish: PublishMode::Immediate,
            events_buffered_max: 1 << 16,
            telemetry_path: None,
            telemetry_flush_ms: 10,
            telemetry_sample_ms: 100,
            events_enabled: true,
            drain_batch_max: 256,
            shutdown_ack_ms_max: 10_000,
            dependency_depth_max: 32,
            dependency_nodes_max: 4_096,
            bytes_resident_max: 512 << 20,
            type_bytes_resident_max: BTreeMap::new(),
            retry: RetryPolicy::default(),
            restart_intensity: Intensity { restarts_max: 20, window_ms: 10_000 },
            restart_backoff: Backoff { min_ms: 0, max_ms: 100 },
        }
    }
}

impl RuntimeConfig {
    /// One decode thread per available core: the one setting that reads the machine.
    #[must_use]
    pub fn decode_threads_per_core(mut self) -> Self {
        self.decode_threads = std::thread::available_parallelism().map_or(1, usize::from);
        self
    }

    /// Checks that every count is usable: at least 1 (but `dependency_depth_max`, where 0 lets
    /// no request have dependencies), threads and credits within [`THREADS_MAX`] and
    /// [`CREDITS_MAX`] (the scheduler counts credits in sixteenths, and a count near
    /// `usize::MAX` would overflow), the event buffer within [`EVENTS_BUFFERED_MAX`],
    /// dependency levels within [`DEPENDENCY_DEPTH_MAX`], the workers' nice within
    /// [`WORKER_NICE_MAX`], the ack limit within [`SHUTDOWN_ACK_MS_MAX`], the telemetry
    /// intervals within [`TELEMETRY_INTERVAL_MS_MAX`], `read_credit_bytes` from 1 to
    /// `u32::MAX`, `io_bytes_per_sec_max` at least 1, the publish mode's budget and adaptive
    /// policy, the retry policy, and the restart backoff's `min_ms` at most its `max_ms`, at most
    /// [`RESTART_BACKOFF_MS_MAX`].
    ///
    /// # Errors
    ///
    /// The first setting out of its range, as a [`ConfigError`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("workers", self.workers),
            ("reads_in_flight", self.reads_in_flight),
            ("decode_threads", self.decode_threads),
            ("decode_backlog_max", self.decode_backlog_max),
            ("queue_capacity", self.queue_capacity),
            ("requests_outstanding_max", self.requests_outstanding_max),
            ("events_buffered_max", self.events_buffered_max),
            ("drain_batch_max", self.drain_batch_max),
            ("dependency_nodes_max", self.dependency_nodes_max),
        ]
        .map(|(name, v)| (name, v as u64));
        // An ack limit of 0 would give no actor time to stop: each shutdown would fail their
        // requests from outside and leave every thread behind.
        let positive_u64 = [
            ("read_credit_bytes", self.read_credit_bytes),
            ("shutdown_ack_ms_max", self.shutdown_ack_ms_max),
            ("restart_intensity.window_ms", self.restart_intensity.window_ms),
        ];
        let bounded = [
            ("workers", self.workers, THREADS_MAX),
            ("decode_threads", self.decode_threads, THREADS_MAX),
            ("reads_in_flight", self.reads_in_flight, CREDITS_MAX),
            ("decode_backlog_max", self.decode_backlog_max, CREDITS_MAX),
            ("events_buffered_max", self.events_buffered_max, EVENTS_BUFFERED_MAX),
            ("dependency_depth_max", self.dependency_depth_max, DEPENDENCY_DEPTH_MAX),
            ("worker_nice", usize::from(self.worker_nice), usize::from(WORKER_NICE_MAX)),
        ]
        .map(|(name, v, max)| (name, v as u64, max as u64));
        first_zero(positive.iter().chain(&positive_u64))?;
        self.retry.validate()?;
        // A restart delayed past it leaves loads stalled, with nothing escalated; an ack limit
        // past it is a shutdown that may wait for ever; the sink's intervals are no use past it.
        let restart = self.restart_backoff;
        first_too_large(&[
            ("restart_backoff.min_ms", restart.min_ms, restart.max_ms),
            ("restart_backoff.max_ms", restart.max_ms, RESTART_BACKOFF_MS_MAX),
            ("shutdown_ack_ms_max", self.shutdown_ack_ms_max, SHUTDOWN_ACK_MS_MAX),
            ("telemetry_flush_ms", self.telemetry_flush_ms, TELEMETRY_INTERVAL_MS_MAX),
            ("telemetry_sample_ms", self.telemetry_sample_ms, TELEMETRY_INTERVAL_MS_MAX),
        ])?;
        // A request keeps its declared size saturated at 4 GiB, where a load takes a whole
        // credit only if a credit is no larger.
        first_too_large(&[("read_credit_bytes", self.read_credit_bytes, u64::from(u32::MAX))])?;
        if self.io_bytes_per_sec_max == Some(0) {
            return Err(ConfigError::Zero("io_bytes_per_sec_max"));
        }
        self.validate_publish()?;
        first_too_large(&bounded)
    }

    /// [`RuntimeConfig::validate`]'s checks of the publish mode.
    fn validate_publish(&self) -> Result<(), ConfigError> {
        // A count budget of 0 would publish nothing ever: it gates even requests past aging.
        // With an adaptive policy the count is only where the budget starts, raised to the
        // policy's minimum.
        if let PublishMode::Frames(policy) = &self.publish {
            if policy.publish_count_max == 0 && policy.adaptive.is_none() {
                return Err(ConfigError::Zero("publish_count_max"));
            }
            if let Some(a) = policy.adaptive {
                // A budget that never rises: from 0, by steps of 0, or under a band as wide as
                // the target (no frame is ever fast enough to be below it); a target of 0
                // that every frame is over; and a window of no frames, which decides on none.
                first_zero(&[
                    ("adaptive.window_frames", u64::from(a.window_frames)),
                    ("adaptive.budget_min", u64::from(a.budget_min)),
                    ("adaptive.increase_step", u64::from(a.increase_step)),
                    ("adaptive.target_frame_us", a.target_frame_us),
                ])?;
                // The budget stays within [budget_min, budget_max]: an empty range would pin it
                // at the minimum, over the maximum; percents past 100 mean nothing.
                first_too_large(
                    &[
                        ("adaptive.budget_min", a.budget_min, a.budget_max),
                        ("adaptive.band_pct", a.band_pct, 99),
                        ("adaptive.decrease_pct", a.decrease_pct, 100),
                    ]
                    .map(|(name, v, max)| (name, u64::from(v), u64::from(max))),
                )?;
            }
        }
        Ok(())
    }
}

/// `Zero` for the first of `settings` (a name and its value) that is 0.
fn first_zero<'a>(
    settings: impl IntoIterator<Item = &'a (&'static str, u64)>,
) -> Result<(), ConfigError> {
    match settings.into_iter().find(|(_, v)| *v == 0) {
        Some(&(name, _)) => Err(ConfigError::Zero(name)),
        None => Ok(()),
    }
}

/// `TooLarge` for the first of `limits` (a name, its value and its most) whose value is over
/// its most.
fn first_too_large(limits: &[(&'static str, u64, u64)]) -> Result<(), ConfigError> {
    match limits.iter().find(|(_, v, max)| v > max) {
        Some(&(name, _, max)) => {
            Err(ConfigError::TooLarge { name, max: usize::try_from(max).unwrap_or(usize::MAX) })
        }
        None => Ok(()),
    }
}

/// [`RetryPolicy::backoff`]'s `max_ms` at most: an hour.
pub const RETRY_BACKOFF_MS_MAX: u64 = 3_600_000;

/// [`RuntimeConfig::restart_backoff`]'s `max_ms` at most: a minute.
pub const RESTART_BACKOFF_MS_MAX: u64 = 60_000;

/// [`RuntimeConfig::shutdown_ack_ms_max`] at most: an hour. Near `u64::MAX` a shutdown's
/// waits had no deadline at all.
pub const SHUTDOWN_ACK_MS_MAX: u64 = 3_600_000;

/// [`RuntimeConfig::telemetry_flush_ms`] and [`RuntimeConfig::telemetry_sample_ms`] at most:
/// an hour (a test's way to say never): nothing longer is of use, and no interval is left
/// unchecked for the sink's timers to add to the clock.
pub const TELEMETRY_INTERVAL_MS_MAX: u64 = 3_600_000;

/// [`RuntimeConfig::worker_nice`] at most: Unix's lowest priority is 19 steps below the
/// default.
pub const WORKER_NICE_MAX: u8 = 19;

/// Threads of one pool (IO workers, decode threads), at most.
pub const THREADS_MAX: usize = 4096;

/// Read credits or decode credits, at most.
pub const CREDITS_MAX: usize = 1 << 24;

/// `events_buffered_max` at most: the buffer's slots are allocated, and written, when the
/// runtime starts, about 150 bytes each, so this many take about 600 MB; `usize::MAX` made the
/// allocation itself panic inside `build`.
pub const EVENTS_BUFFERED_MAX: usize = 1 << 22;

/// `dependency_depth_max` at most. A request's dependencies are requested by recursion on
/// the caller's thread, one level a call: a chain of 20,000 levels overflowed an 8 MiB stack
/// and aborted the process. This many levels fit a 1 MiB stack in a debug build (the
/// integration tests; 256 levels did not).
pub const DEPENDENCY_DEPTH_MAX: usize = 128;

/// A setting out of its range ([`RuntimeConfig::validate`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting that must be positive is 0.
    #[error("configuration: {0} must be at least 1")]
    Zero(&'static str),
    /// A setting is past its largest usable value.
    #[error("configuration: {name} must be at most {max}")]
    TooLarge {
        /// The setting's name.
        name: &'static str,
        /// Its largest usable value.
        max: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{AdaptivePolicy, FramePolicy};

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(RuntimeConfig::default().validate(), Ok(()));
    }

    #[test]
    fn a_zero_ack_limit_or_window_and_an_inverted_or_endless_backoff_are_refused_by_name() {
        let with = |f: fn(&mut RuntimeConfig)| {
            let mut config = RuntimeConfig::default();
            f(&mut config);
            config.validate()
        };
        assert_eq!(
            with(|c| c.shutdown_ack_ms_max = 0),
            Err(ConfigError::Zero("shutdown_ack_ms_max"))
        );
        let window = Err(ConfigError::Zero("restart_intensity.window_ms"));
        assert_eq!(with(|c| c.restart_intensity.window_ms = 0), window);
        let inverted = with(|c| c.restart_backoff = Backoff { min_ms: 200, max_ms: 100 });
        assert_eq!(
            inverted,
            Err(ConfigError::TooLarge { name: "restart_backoff.min_ms", max: 100 })
        );
        let endless = with(|c| c.restart_backoff.max_ms = RESTART_BACKOFF_MS_MAX + 1);
        let max = RESTART_BACKOFF_MS_MAX as usize;
        assert_eq!(endless, Err(ConfigError::TooLarge { name: "restart_backoff.max_ms", max }));
        let endless = with(|c| c.retry.backoff.max_ms = u64::MAX);
        let max = RETRY_BACKOFF_MS_MAX as usize;
        assert_eq!(endless, Err(ConfigError::TooLarge { name: "retry.backoff.max_ms", max }));
        let inverted = with(|c| c.retry.backoff.min_ms = 101);
        let min = Err(ConfigError::TooLarge { name: "retry.backoff.min_ms", max: 100 });
        assert_eq!(inverted, min);
        assert_eq!(with(|c| c.restart_backoff.max_ms = RESTART_BACKOFF_MS_MAX), Ok(()));
        let endless = with(|c| c.shutdown_ack_ms_max = u64::MAX);
        let max = SHUTDOWN_ACK_MS_MAX as usize;
        assert_eq!(endless, Err(ConfigError::TooLarge { name: "shutdown_ack_ms_max", max }));
        assert_eq!(with(|c| c.shutdown_ack_ms_max = SHUTDOWN_ACK_MS_MAX), Ok(()));
        let max = TELEMETRY_INTERVAL_MS_MAX as usize;
        let seldom = with(|c| c.telemetry_flush_ms = TELEMETRY_INTERVAL_MS_MAX + 1);
        assert_eq!(seldom, Err(ConfigError::TooLarge { name: "telemetry_flush_ms", max }));
        let seldom = with(|c| c.telemetry_sample_ms = u64::MAX);
        assert_eq!(seldom, Err(ConfigError::TooLarge { name: "telemetry_sample_ms", max }));
    }

    #[test]
    fn a_zero_count_or_bandwidth_is_refused_by_name() {
        let zero_workers = RuntimeConfig { workers: 0, ..RuntimeConfig::default() };
        assert_eq!(zero_workers.validate(), Err(ConfigError::Zero("workers")));
        let stalled = RuntimeConfig { io_bytes_per_sec_max: Some(0), ..RuntimeConfig::default() };
        assert_eq!(stalled.validate(), Err(ConfigError::Zero("io_bytes_per_sec_max")));
        let frames = |policy| RuntimeConfig {
            publish: PublishMode::Frames(policy),
            ..RuntimeConfig::default()
        };
        assert_eq!(
            frames(FramePolicy::count(0)).validate(),
            Err(ConfigError::Zero("publish_count_max"))
        );
        let adaptive = AdaptivePolicy { budget_min: 0, ..AdaptivePolicy::target(16_667, 64) };
        let adaptive = frames(FramePolicy::adaptive(8, adaptive)).validate();
        assert_eq!(adaptive, Err(ConfigError::Zero("adaptive.budget_min")));
        assert_eq!(frames(FramePolicy::count(1)).validate(), Ok(()));
        let starts_at_zero = FramePolicy::adaptive(0, AdaptivePolicy::target(16_667, 64));
        assert_eq!(frames(starts_at_zero).validate(), Ok(()), "raised to the minimum");
    }

    #[test]
    fn an_adaptive_policy_that_could_never_rise_or_has_an_empty_range_is_refused() {
        let frames = |adaptive| RuntimeConfig {
            publish: PublishMode::Frames(FramePolicy::adaptive(8, adaptive)),
            ..RuntimeConfig::default()
        };
        let target = AdaptivePolicy::target(16_667, 4);
        let empty = frames(AdaptivePolicy { budget_min: 8, ..target }).validate();
        assert_eq!(empty, Err(ConfigError::TooLarge { name: "adaptive.budget_min", max: 4 }));
        for band_pct in [100, 101] {
            let band = frames(AdaptivePolicy { band_pct, ..target }).validate();
            assert_eq!(band, Err(ConfigError::TooLarge { name: "adaptive.band_pct", max: 99 }));
        }
        let flat = frames(AdaptivePolicy { increase_step: 0, ..target }).validate();
        assert_eq!(flat, Err(ConfigError::Zero("adaptive.increase_step")));
        let no_window = frames(AdaptivePolicy { window_frames: 0, ..target }).validate();
        assert_eq!(no_window, Err(ConfigError::Zero("adaptive.window_frames")));
        let no_target = frames(AdaptivePolicy { target_frame_us: 0, ..target }).validate();
        assert_eq!(no_target, Err(ConfigError::Zero("adaptive.target_frame_us")));
        let decrease = frames(AdaptivePolicy { decrease_pct: 200, ..target }).validate();
        assert_eq!(
            decrease,
            Err(ConfigError::TooLarge { name: "adaptive.decrease_pct", max: 100 })
        );
        assert_eq!(frames(AdaptivePolicy { budget_min: 4, ..target }).validate(), Ok(()));
    }

    #[test]
    fn a_read_credit_past_four_gib_is_refused() {
        let huge = RuntimeConfig { read_credit_bytes: 1 << 36, ..RuntimeConfig::default() };
        let max = u32::MAX as usize;
        assert_eq!(huge.validate(), Err(ConfigError::TooLarge { name: "read_credit_bytes", max }));
        let largest =
            RuntimeConfig { read_credit_bytes: u64::from(u32::MAX), ..RuntimeConfig::default() };
        assert_eq!(largest.validate(), Ok(()));
    }

    #[test]
    fn a_worker_nice_past_the_lowest_priority_is_refused() {
        let nice = RuntimeConfig { worker_nice: 20, ..RuntimeConfig::default() };
        assert_eq!(
            nice.validate(),
            Err(ConfigError::TooLarge { name: "worker_nice", max: usize::from(WORKER_NICE_MAX) })
        );
        let lowest = RuntimeConfig { worker_nice: 19, ..RuntimeConfig::default() };
        assert_eq!(lowest.validate(), Ok(()));
    }

    #[test]
    fn counts_the_scheduler_would_overflow_on_are_refused() {
        let credits = RuntimeConfig { reads_in_flight: 1 << 60, ..RuntimeConfig::default() };
        let err = credits.validate().unwrap_err();
        assert_eq!(err, ConfigError::TooLarge { name: "reads_in_flight", max: CREDITS_MAX });
        assert_eq!(
            err.to_string(),
            format!("configuration: reads_in_flight must be at most {CREDITS_MAX}")
        );
        let at_max = RuntimeConfig {
            reads_in_flight: CREDITS_MAX,
            decode_backlog_max: CREDITS_MAX,
            workers: THREADS_MAX,
            ..RuntimeConfig::default()
        };
        assert_eq!(at_max.validate(), Ok(()));
        let threads = RuntimeConfig { decode_threads: THREADS_MAX + 1, ..RuntimeConfig::default() };
        assert!(matches!(
            threads.validate(),
            Err(ConfigError::TooLarge { name: "decode_threads", .. })
        ));
    }

    #[test]
    fn an_event_buffer_too_large_to_allocate_is_refused_not_a_panic_in_build() {
        let huge = RuntimeConfig { events_buffered_max: usize::MAX, ..RuntimeConfig::default() };
        let max = EVENTS_BUFFERED_MAX;
        assert_eq!(
            huge.validate(),
            Err(ConfigError::TooLarge { name: "events_buffered_max", max })
        );
        let at_max = RuntimeConfig { events_buffered_max: max, ..RuntimeConfig::default() };
        assert_eq!(at_max.validate(), Ok(()));
    }
}
