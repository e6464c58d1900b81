//! A chaos run: a mixed workload under injected faults, reprioritise storms and actor crashes,
//! checked for the runtime's promises.
//!
//! The run requests blobs (checksummed, so short reads are caught) through a
//! [`FaultySource`] and a [`FaultyDecoder`], cancels a share of them, reprioritises in storms,
//! crashes the scheduler, the cache, the frame coordinator, the telemetry sink and workers in
//! rotation, and then checks, from the handles and from the telemetry log, that every request
//! reached exactly one terminal state, that no cancelled handle bound a value, that no poison
//! key (its decoder always panics) ended ready, that the worker pools kept their size, that
//! no telemetry event was dropped, that once every request ended no load stays counted
//! queued or in flight (a leaked credit would stall a long-running engine), and that once
//! every handle is dropped the memory budget counts nothing held.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use streamrt_messages::{AssetKey, Event, EventKind, LoadState, Priority, RequestId};
use streamrt_supervisor::{Backoff, Intensity};

use super::{CrashTarget, FaultPlan, FaultyDecoder, FaultySource};
use crate::asset::{verify_crc32_trailer, DecodeError, Decoder};
use crate::runtime::{RetryPolicy, Runtime, RuntimeConfig};
use crate::source::MemorySource;
use crate::{EventStream, Handle};

/// What a chaos run does.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosOptions {
    /// Seed of the workload and of the faults.
    pub seed: u64,
    /// Requests to make.
    pub requests: usize,
    /// Distinct assets requested.
    pub keys: usize,
    /// Reads that fail with an IO error; a tenth of it is the rate of short reads and of
    /// decodes that fail with an error.
    pub io_error_rate: f64,
    /// Decodes that panic.
    pub panic_rate: f64,
    /// Requests cancelled by the workload.
    pub cancel_rate: f64,
    /// Requests between two injected crashes (0: none).
    pub crash_every: usize,
    /// Keys whose decoder always panics.
    pub poison_keys: usize,
    /// Shut the runtime down after this many requests, in the middle of the run.
    pub shutdown_after: Option<usize>,
    /// IO worker threads.
    pub workers: usize,
    /// Decode threads.
    pub decode_threads: usize,
    /// How long the run may take to settle before outstanding requests count as hung.
    pub patience: Duration,
}

impl Default for ChaosOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            requests: 20_000,
            keys: 2_000,
            io_error_rate: 0.05,
            panic_rate: 0.01,
            cancel_rate: 0.20,
            crash_every: 2_000,
            poison_keys: 0,
            shutdown_after: None,
            workers: 2,
            decode_threads: 2,
            patience: Duration::from_secs(60),
        }
    }
}

/// What a chaos run found. `Display` is the one-line form `streamctl chaos` prints; it
/// serialises with the fields' names (`streamctl chaos --json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChaosReport {
    /// Requests made.
    pub requests: usize,
    /// Requests that reached a terminal state.
    pub terminal: usize,
    /// Requests with no terminal event in the telemetry log.
    pub lost: usize,
    /// Requests with more than one terminal event.
    pub duplicated: usize,
    /// Requests cancelled by the workload that a `published` event named, or that later
    /// showed a value.
    pub bound_after_cancel: usize,
    /// Requests not terminal when the run's patience ran out.
    pub hung: usize,
    /// Loads the scheduler still counted queued or in flight once every request had ended and
    /// the workers had finished what they held (a leaked credit or in-flight entry), when
    /// the run's patience ran out.
    pub leaked: u64,
    /// Worker threads (IO + decode) at the start.
    pub workers_start: usize,
    /// Worker threads (IO + decode) at the end.
    pub workers_end: usize,
    /// Actors and workers restarted.
    pub restarts: u64,
    /// Restarts by actor, from the `restarted` events (`scheduler`, `cache:chaos`,
    /// `io-worker`, `decode-worker`, `frame`, `telemetry`): each injected crash's target shows
    /// here (a decode worker's rebuilds after decoder panics too).
    pub restarts_by_actor: BTreeMap<String, u64>,
    /// Keys quarantined.
    pub quarantined: u64,
    /// Requests that failed because their key was quarantined.
    pub failed_quarantined: usize,
    /// Requests that reached `Ready`.
    pub ready: usize,
    /// Requests for poison keys (their decoder always panics) that reached `Ready`: none may.
    pub poison_ready: usize,
    /// Telemetry events dropped, by the runtime or by the run's feed (the lost/duplicated
    /// counts need 0).
    pub events_dropped: u64,
    /// Bytes the memory budget still counted held once every handle was dropped (held bytes
    /// leaked by a crash, a cancel or a restart's readmission; every resident byte, and at
    /// least 1, when the actors did not take the releases in within the patience): none may
    /// be.
    pub held_bytes_left: u64,
    /// Crashes injected (each accepted by its target; a worker's waits for the next job its
    /// pool takes).
    pub crashes: usize,
    /// Crashes the plan asked for that their target refused, before any shutdown of the
    /// workload's own: none may be (a run that injected nothing proves nothing).
    pub crashes_refused: usize,
    /// Requests the workload did not make because the runtime refused one, before any
    /// shutdown of the workload's own: none may be.
    pub requests_refused: usize,
    /// The supervisor that gave up and the child it gave up after (`supervisor/child`), if the
    /// runtime escalated: its shutdown then refused the rest of the workload's requests, which
    /// the other figures reflect.
    pub escalated: Option<String>,
}

impl ChaosReport {
    /// Whether every promise held: nothing lost, duplicated, bound after cancel, hung or
    /// leaked (loads or held bytes), no poison key ready, the pools kept their size, the log
    /// is complete, and the workload ran whole (every request made, every crash injected).
    pub fn holds(&self) -> bool {
        self.requests_refused == 0
            && self.crashes_refused == 0
            && self.lost == 0
            && self.duplicated == 0
            && self.bound_after_cancel == 0
            && self.hung == 0
            && self.leaked == 0
            && self.held_bytes_left == 0
            && self.poison_ready == 0
            && self.workers_start == self.workers_end
            && self.events_dropped == 0
            && self.escalated.is_none()
    }
}

impl fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "chaos: requests={} terminal={} lost={} duplicated={} bound_after_cancel={} hung={} \
             leaked={} held_bytes_left={} poison_ready={} crashes={} crashes_refused={} \
             requests_refused={} workers_start={} workers_end={} restarts={} quarantined={} \
             escalated={}",
            self.requests,
            self.terminal,
            self.lost,
            self.duplicated,
            self.bound_after_cancel,
            self.hung,
            self.leaked,
            self.held_bytes_left,
            self.poison_ready,
            self.crashes,
            self.crashes_refused,
            self.requests_refused,
            self.workers_start,
            self.workers_end,
            self.restarts,
            self.quarantined,
            self.escalated.as_deref().unwrap_or("no")
        )
    }
}

/// The chaos run's asset: bytes checked against a trailing CRC-32.
#[derive(Debug)]
pub struct ChaosBlob(pub Vec<u8>);

/// Decodes [`ChaosBlob`]s; payloads starting with `POISON` make it panic.
#[derive(Debug, Clone, Copy)]
pub struct ChaosBlobDecoder;

impl Decoder for ChaosBlobDecoder {
    type Asset = ChaosBlob;

    fn type_name(&self) -> &str {
        "chaos"
    }

    fn decode(&self, key: &AssetKey, bytes: Vec<u8>) -> Result<ChaosBlob, DecodeError> {
        let payload = verify_crc32_trailer(bytes)?;
        assert!(!payload.starts_with(b"POISON"), "poison asset {key}");
        Ok(ChaosBlob(payload))
    }

    fn size_bytes(&self, blob: &ChaosBlob) -> u64 {
        blob.0.len() as u64
    }
}

/// Whether `key` is one of the poison keys, which come after the first `keys` keys.
fn is_poison(key: &AssetKey, keys: usize) -> bool {
    key.path().strip_prefix('k').and_then(|n| n.parse::<usize>().ok()).is_some_and(|n| n >= keys)
}

fn source(options: &ChaosOptions, rng: &mut fastrand::Rng) -> MemorySource {
    let source = MemorySource::new();
    for k in 0..options.keys + options.poison_keys {
        let mut payload: Vec<u8> = (0..rng.usize(16..2_048)).map(|_| rng.u8(..)).collect();
        if k >= options.keys {
            payload.splice(0..0, *b"POISON");
        }
        let crc = crc32fast::hash(&payload);
        payload.extend_from_slice(&crc.to_le_bytes());
        let key = AssetKey::parse(&format!("chaos:k{k}")).expect("valid key");
        source.insert(key, payload);
    }
    source
}

const CRASHES: [fn() -> CrashTarget; 7] = [
    || CrashTarget::Scheduler,
    || CrashTarget::Cache("chaos".into()),
    || CrashTarget::CacheRestart("chaos".into()),
    || CrashTarget::IoWorker,
    || CrashTarget::DecodeWorker,
    || CrashTarget::FrameCoordinator,
    || CrashTarget::TelemetrySink,
];

/// Runs the workload of `options` and checks it; see the module docs.
///
/// # Errors
///
/// The runtime could not be built.
pub fn run(options: &ChaosOptions) -> Result<ChaosReport, crate::BuildError> {
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let plan = FaultPlan {
        seed: options.seed,
        io_error_rate: options.io_error_rate,
        short_read_rate: options.io_error_rate / 10.0,
        latency_rate: 0.01,
        latency_us_max: 200,
        decode_error_rate: options.io_error_rate / 10.0,
        panic_rate: options.panic_rate,
    };
    let mut config = RuntimeConfig {
        workers: options.workers,
        reads_in_flight: options.workers.saturating_mul(2),
        decode_threads: options.decode_threads,
        queue_capacity: options.requests.max(1),
        requests_outstanding_max: options.requests.max(1),
        // Room for every event of the run (about 16 a request), so none is dropped, within the
        // `EVENTS_BUFFERED_MAX` of a large run, whose sink drains as it goes.
        events_buffered_max: events_of(options.requests).min(EVENTS_BUFFERED_MAX),
        restart_intensity: Intensity { restarts_max: 10_000, window_ms: 10_000 },
        retry: RetryPolicy {
            attempts_max: 5,
            backoff: Backoff { min_ms: 0, max_ms: 2 },
            panics_max: 3,
        },
        ..RuntimeConfig::default()
    };
    config.publish = crate::PublishMode::Frames(crate::FramePolicy::count(512));
    let rt = Runtime::builder()
        .config(config)
        .source(FaultySource::faulty(source(options, &mut rng), plan))
        .register(FaultyDecoder::new(ChaosBlobDecoder, plan))
        .build()?;
    let tally = tally_events(rt.subscribe(events_of(options.requests)))?;
    let (io, decode) = rt.live_workers();
    let mut report = ChaosReport { workers_start: io + decode, ..ChaosReport::default() };
    let Workload { handles, cancelled, crashes, crashes_refused, requests_refused } =
        workload(&rt, options, &mut rng);
    report.requests = handles.len();
    (report.crashes, report.crashes_refused) = (crashes, crashes_refused);
    report.requests_refused = requests_refused;
    report.hung = settle(&rt, &handles, options.patience);
    report.leaked = drained(&rt, options.patience);
    // Before the shutdown, which ends every request still outstanding.
    report.terminal = handles.iter().filter(|h| h.is_terminal()).count();
    report.escalated = rt.escalation().map(|e| format!("{}/{}", e.supervisor, e.child));
    let (io, decode) = rt.live_workers();
    report.workers_end = io + decode;
    outcomes(&handles, &cancelled, options, &mut report);
    let ids: Vec<RequestId> = handles.iter().map(Handle::id).collect();
    let cancelled: Vec<RequestId> = cancelled.iter().map(|&i| ids[i]).collect();
    // Every handle let go: what the budget still counts held, no request holds. Actors that
    // did not take their releases in within the patience leave every byte unaccounted for.
    drop(handles);
    let synced = rt.sync(options.patience);
    let memory = rt.memory_stats();
    let unparked = memory.resident_bytes.saturating_sub(memory.parked_bytes);
    report.held_bytes_left = if synced { unparked } else { memory.resident_bytes.max(1) };
    rt.flush_telemetry();
    rt.shutdown();
    tally.finish().report(&ids, &cancelled, &mut report);
    let status = rt.status();
    (report.restarts, report.quarantined) = (status.restarts, status.quarantined);
    // The runtime's own drops, besides the feed's.
    report.events_dropped += status.events_dropped;
    Ok(report)
}

/// Fills in what the handles' outcomes say: ready, poison keys ready, quarantined, and values
/// after a cancel.
fn outcomes(
    handles: &[Handle<ChaosBlob>],
    cancelled: &[usize],
    options: &ChaosOptions,
    report: &mut ChaosReport,
) {
    report.ready = handles.iter().filter(|h| h.state() == LoadState::Ready).count();
    let poison = |h: &&Handle<ChaosBlob>| is_poison(&h.key(), options.keys);
    report.poison_ready =
        handles.iter().filter(poison).filter(|h| h.state() == LoadState::Ready).count();
    report.failed_quarantined = handles
        .iter()
        .filter(|h| h.error().is_some_and(|e| e.kind.name() == "quarantined"))
        .count();
    report.bound_after_cancel = cancelled
        .iter()
        .filter(|&&i| handles[i].state() != LoadState::Cancelled || handles[i].get().is_some())
        .count();
}

/// What the workload made.
struct Workload {
    handles: Vec<Handle<ChaosBlob>>,
    /// The indexes of the handles the workload cancelled while they were not terminal.
    cancelled: Vec<usize>,
    /// Crashes injected and accepted.
    crashes: usize,
    /// Crashes the plan asked for and their target refused, before the workload's shutdown.
    crashes_refused: usize,
    /// Requests not made after one was refused, before the workload's shutdown.
    requests_refused: usize,
}

/// Issues the requests, cancels, storms and crashes.
fn workload(rt: &Runtime, options: &ChaosOptions, rng: &mut fastrand::Rng) -> Workload {
    let mut handles = Vec::with_capacity(options.requests);
    let mut cancelled = Vec::new();
    let (mut crashes, mut crashes_refused, mut requests_refused) = (0, 0, 0);
    let mut shut_down = false;
    let keys = options.keys + options.poison_keys;
    for i in 0..options.requests {
        if options.shutdown_after == Some(i) {
            rt.shutdown();
            shut_down = true;
        }
        let key = format!("k{}", rng.usize(..keys.max(1)));
        let priority = Priority::ALL[rng.usize(..Priority::LEVELS)];
        let Ok(handle) = rt.request::<ChaosBlob>(&key, priority) else {
            if !shut_down {
                requests_refused = options.requests - i;
            }
            break;
        };
        handles.push(handle);
        if rng.f64() < options.cancel_rate {
            let victim = rng.usize(..handles.len());
            // Only a cancel that ended the request counts: one of an ended request (or one
            // cancelled before) changes nothing.
            if handles[victim].cancel() {
                cancelled.push(victim);
            }
        }
        if i % 1_000 == 999 {
            for _ in 0..500 {
                let priority = Priority::ALL[rng.usize(..Priority::LEVELS)];
                handles[rng.usize(..handles.len())].reprioritize(priority);
            }
        }
        if options.crash_every > 0 && i % options.crash_every == options.crash_every - 1 {
            let target = CRASHES[(i / options.crash_every) % CRASHES.len()]();
            let accepted = rt.inject_crash(&target);
            crashes += usize::from(accepted);
            crashes_refused += usize::from(!accepted && !shut_down);
        }
        if i % 64 == 0 {
            rt.tick();
        }
    }
    Workload { handles, cancelled, crashes, crashes_refused, requests_refused }
}

/// The most events a chaos run's telemetry buffer holds: 2M, about 300 MB.
const EVENTS_BUFFERED_MAX: usize = 1 << 21;

/// Room for every event a run of `requests` emits (about 16 a request, and its faults'),
/// should the count fall that far behind.
fn events_of(requests: usize) -> usize {
    requests.saturating_mul(16).saturating_add(65_536)
}

/// Ticks frames until every request is terminal or `patience` runs out; returns how many are
/// still outstanding.
fn settle(rt: &Runtime, handles: &[Handle<ChaosBlob>], patience: Duration) -> usize {
    let deadline = crate::signal::deadline_after(patience);
    let mut next = 0;
    while next < handles.len() && deadline.is_none_or(|deadline| Instant::now() < deadline) {
        rt.tick();
        // A frame's worth of waiting on the oldest outstanding request, as an engine would.
        if handles[next].wait_timeout(Duration::from_millis(2)).is_some() {
            next += 1;
        }
    }
    handles.iter().filter(|h| !h.is_terminal()).count()
}

/// Waits until the scheduler counts no load queued or in flight: once every request ended,
/// the loads of the cancelled ones may still be with the workers, and each ends with its
/// `JobFinished`. Returns what is still counted when `patience` runs out or a barrier fails
/// (at least 1 then: counters a barrier did not bring up to date prove nothing), 0 when
/// drained.
fn drained(rt: &Runtime, patience: Duration) -> u64 {
    let deadline = crate::signal::deadline_after(patience);
    loop {
        // A barrier through the actors: what the workers finished reaches the scheduler.
        let synced = rt.sync(patience);
        let status = rt.status();
        let left = status.in_flight + status.queued;
        let late = deadline.is_some_and(|deadline| Instant::now() >= deadline);
        if !synced {
            return left.max(1);
        }
        if left == 0 || late {
            return left;
        }
        // Workers still hold loads: let them run before looking again.
        std::thread::yield_now();
    }
}

/// Each request's terminal events and each actor's restarts, counted from a run's events.
#[derive(Default)]
struct Tally {
    terminal: HashMap<RequestId, u32>,
    /// The requests a `published` event named.
    published: HashSet<RequestId>,
    restarts_by_actor: BTreeMap<String, u64>,
    /// Events the feed dropped (it held its capacity).
    dropped: u64,
}

impl Tally {
    fn add(&mut self, event: Event) {
        match event.kind {
            EventKind::Restarted { actor } => {
                *self.restarts_by_actor.entry(actor).or_default() += 1;
            }
            EventKind::Published | EventKind::Failed { .. } | EventKind::Cancelled { .. } => {
                if let Some(request) = event.request {
                    *self.terminal.entry(request).or_default() += 1;
                    if event.kind == EventKind::Published {
                        self.published.insert(request);
                    }
                }
            }
            _ => {}
        }
    }

    /// Puts in `report` the requests of `ids` with no terminal event or more than one, those
    /// of `cancelled` (which the workload's cancel ended) that a `published` event named, the
    /// restarts by actor, and the events the feed dropped.
    fn report(self, ids: &[RequestId], cancelled: &[RequestId], report: &mut ChaosReport) {
        report.events_dropped += self.dropped;
        report.bound_after_cancel +=
            cancelled.iter().filter(|id| self.published.contains(id)).count();
        for id in ids {
            match self.terminal.get(id).copied().unwrap_or(0) {
                0 => report.lost += 1,
                1 => {}
                _ => report.duplicated += 1,
            }
        }
        report.restarts_by_actor = self.restarts_by_actor;
    }
}

/// How long the counting thread waits for an event before it looks whether to stop.
const TALLY_WAIT: Duration = Duration::from_secs(1);

/// The count of a run's events, going on on a thread of its own (see [`tally_events`]).
struct Counting {
    thread: JoinHandle<Tally>,
    /// Set once the runtime was shut down: the count stops at the feed's end, or at the first
    /// wait that finds no event (a sink left behind by the shutdown, wedged, never ends it).
    stopped: Arc<AtomicBool>,
}

impl Counting {
    /// The count, once the runtime was shut down: every event its sink delivered.
    fn finish(self) -> Tally {
        self.stopped.store(true, Ordering::Release);
        self.thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// Counts `events` on a thread of its own as the run goes: the feed then holds only what the
/// count has not caught up with, where read at the end it held every event of the run (about
/// 16 a request, each a few hundred bytes), and a run past its estimate dropped some and
/// failed.
///
/// # Errors
///
/// The thread could not be started.
fn tally_events(events: EventStream) -> std::io::Result<Counting> {
    let stopped = Arc::new(AtomicBool::new(false));
    let told = Arc::clone(&stopped);
    let count = move || {
        let mut tally = Tally::default();
        while !events.is_ended() {
            match events.next_timeout(TALLY_WAIT) {
                Some(event) => tally.add(event),
                None if told.load(Ordering::Acquire) => break,
                None => {}
            }
        }
        tally.dropped = events.dropped();
        tally
    };
    let thread = std::thread::Builder::new().name("streamrt-chaos-tally".into()).spawn(count)?;
    Ok(Counting { thread, stopped })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_left_counted_after_every_request_ended_breaks_the_promises() {
        assert!(ChaosReport::default().holds());
        assert!(!ChaosReport { leaked: 1, ..ChaosReport::default() }.holds());
        assert!(!ChaosReport { held_bytes_left: 1, ..ChaosReport::default() }.holds());
        let nothing_injected = ChaosReport { crashes_refused: 1, ..ChaosReport::default() };
        assert!(!nothing_injected.holds(), "a crash the plan asked for was not injected");
        assert!(nothing_injected.to_string().contains(" crashes_refused=1 "));
        assert!(!ChaosReport { requests_refused: 1, ..ChaosReport::default() }.holds());
        assert!(ChaosReport { leaked: 2, ..ChaosReport::default() }
            .to_string()
            .contains(" leaked=2 "));
        let escalated =
            ChaosReport { escalated: Some("core/scheduler".into()), ..ChaosReport::default() };
        assert!(!escalated.holds(), "a runtime that gave up broke its promise");
        assert!(escalated.to_string().ends_with(" escalated=core/scheduler"), "{escalated}");
        assert!(ChaosReport::default().to_string().ends_with(" escalated=no"));
    }

    #[test]
    fn a_cancelled_request_a_published_event_names_is_bound_after_cancel() {
        let (kept, cancelled, other) = (RequestId(1), RequestId(2), RequestId(3));
        let mut tally = Tally::default();
        for request in [kept, cancelled] {
            tally.add(Event::new(0, 0, EventKind::Published).with_request(request));
        }
        let cancel = EventKind::Cancelled { stage: streamrt_messages::CancelStage::Queued };
        tally.add(Event::new(0, 0, cancel).with_request(other));
        let mut report = ChaosReport::default();
        tally.report(&[kept, cancelled, other], &[cancelled, other], &mut report);
        assert_eq!((report.bound_after_cancel, report.lost, report.duplicated), (1, 0, 0));
        assert!(!report.holds());
    }

    #[test]
    fn the_poison_keys_are_the_ones_after_the_first_keys() {
        let key = |path: &str| AssetKey::parse(&format!("chaos:{path}")).unwrap();
        assert!(!is_poison(&key("k4"), 5));
        assert!(is_poison(&key("k5"), 5));
        assert!(!is_poison(&key("x9"), 5), "not a chaos key");
    }
}
