//! `streamctl bench priority`: one critical request behind 10,000 queued low ones.
//!
//! Each trial queues 10,000 `Low` requests (1 KiB assets from memory), waits until the runtime
//! holds them all, and queues again as many as the IO workers took meanwhile, until at least
//! `QUEUED_SHARE_MIN` of 10,000 are still queued (without that, a median of about 8,000 were);
//! then it requests one `Critical` asset not loaded before and times it to ready on the
//! caller's thread; the low requests are then cancelled. The memory budget is zero, so
//! the next trial's low requests load again rather than hit the assets this one left. Baselines:
//! - idle: the same critical request on an idle runtime (fresh keys, same settings);
//! - a FIFO queue: the channel-and-pool pipeline of `tiny` fed the low keys, then the critical
//!   one, which waits for every low one before it.
//!
//! The closing line compares the p99 behind the queue with the idle p99 (ratio = idle / ours;
//! the target, p99 at most 3 times idle, is a ratio of at least 0.33). Each streamrt run also
//! splits its trials: the time inside the runtime (the request's own latency, made to
//! published, `Handle::latency_us`) and the rest, mostly the caller's thread waking once the
//! request is ready, which behind the queue waits for a core the runtime's threads hold.
//!
//! A third runtime, not part of the closing line, runs the same trials with its IO and decode
//! threads `WORKER_NICE` steps of CPU priority below the caller's
//! (`RuntimeConfig::worker_nice`, off by default), so the option's effect on this latency
//! shows beside the default's in the same run; its cost shows in the other scenarios run with
//! `--worker-nice`. The first two runtimes take `--worker-nice` from the command line, the
//! third always runs at `WORKER_NICE`.
//!
//! The three runtimes' trials run in `ROUNDS` rounds, each runtime's in turn, the order rotated
//! from round to round: on this shared machine the load moves within a run, and a system that
//! always ran first or last would meet a different machine than the others.

use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::ensure;
use streamrt::messages::AssetKey;
use streamrt::report::quantile;
use streamrt::{Handle, MemorySource, Priority, Runtime, RuntimeConfig};

use super::outcome::{Outcome, Target};
use super::plot::{Chart, Series};
use super::tiny::Pipeline;
use super::{bench_config, turn_order, BenchArgs};
use crate::formats::{encode_blob, Blob, BlobDecoder};

/// Low requests queued ahead of the critical one by default.
const QUEUED: usize = 10_000;
/// The share of `--count` low loads still queued at which a trial stops topping the queue up.
const QUEUED_SHARE_MIN: f64 = 0.98;
/// Rounds of topping the queue up, at most (each queues what the workers took during the last).
const TOP_UPS_MAX: usize = 8;
/// Low keys per low load asked for: topping up takes keys past `--count`.
const LOW_KEYS_PER_QUEUED: usize = 2;
/// Critical requests timed per system.
const TRIALS: usize = 300;
/// Rounds the trials are split into, each system's in turn (see the module docs).
const ROUNDS: usize = 3;
/// FIFO trials: each waits for the whole queue.
const FIFO_TRIALS: usize = 10;
const ASSET_BYTES: usize = 1_024;
const PATIENCE: Duration = Duration::from_secs(60);
const IDLE_MULTIPLE_MAX: f64 = 3.0;
/// The third system's `worker_nice`: its IO and decode threads that many steps of CPU
/// priority below the caller's and the core thread's.
const WORKER_NICE: u8 = 10;

/// The latencies (ns) of the critical requests, sorted.
struct Latencies(Vec<u64>);

impl Latencies {
    fn p(&self, q: f64) -> f64 {
        quantile(&self.0, q) as f64 / 1e3
    }

    /// `samples` (nanoseconds), sorted.
    fn sorted(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        Self(samples)
    }

    /// Every sample, in microseconds.
    fn micros(&self) -> Vec<f64> {
        self.0.iter().map(|ns| *ns as f64 / 1e3).collect()
    }

    /// The empirical distribution, microseconds against the fraction at or below.
    fn cdf(&self, name: &str) -> Series {
        let n = self.0.len().max(1) as f64;
        let points = self
            .0
            .iter()
            .enumerate()
            .map(|(i, ns)| (*ns as f64 / 1e3, (i + 1) as f64 / n))
            .collect();
        Series { name: name.into(), points }
    }
}

fn source(queued: usize, trials: usize) -> anyhow::Result<MemorySource> {
    let source = MemorySource::new();
    let bytes = encode_blob(&[7; ASSET_BYTES - 4]);
    for i in 0..queued * LOW_KEYS_PER_QUEUED {
        source.insert(AssetKey::parse(&format!("blob:low/{i}"))?, bytes.clone());
    }
    // Fresh critical keys for each of the three systems' trials.
    for i in 0..trials * SYSTEMS {
        source.insert(AssetKey::parse(&format!("blob:crit/{i}"))?, bytes.clone());
    }
    Ok(source)
}

/// A system's critical requests: each timed on the caller's thread, and split into the part
/// inside the runtime and the part after it.
struct Trials {
    /// Request to ready, on the caller's thread: what the target is measured on.
    wall: Latencies,
    /// From the request's making to its publishing, as the runtime timed it
    /// (`Handle::latency_us`).
    inside: Latencies,
    /// The rest, trial by trial: mostly the caller's thread waking once the request is ready,
    /// which on a machine whose cores the runtime keeps busy waits for a core; also the
    /// request call up to the cell's making, and both ends' rounding to microseconds. Each
    /// list is sorted on its own, so the three are distributions, not aligned trials.
    after: Latencies,
    /// The low loads still in the scheduler's queue as each critical request was made (the
    /// workers take some while the caller queues the rest): the lowest and the median.
    still_queued: (u64, u64),
}

/// One trial: its wall and inside times in nanoseconds, and the low loads still queued.
type Sample = (u64, u64, u64);

impl Trials {
    fn from_samples(samples: &[Sample]) -> Self {
        let after = samples.iter().map(|(wall, inside, _)| wall.saturating_sub(*inside)).collect();
        let mut still_queued: Vec<u64> = samples.iter().map(|s| s.2).collect();
        still_queued.sort_unstable();
        let median = still_queued.get(still_queued.len() / 2).copied().unwrap_or(0);
        Self {
            wall: Latencies::sorted(samples.iter().map(|s| s.0).collect()),
            inside: Latencies::sorted(samples.iter().map(|s| s.1).collect()),
            after: Latencies::sorted(after),
            still_queued: (still_queued.first().copied().unwrap_or(0), median),
        }
    }

    /// Where the time went: the p50 and p99 inside the runtime and after it.
    fn split_line(&self) -> String {
        let (i, a) = (&self.inside, &self.after);
        format!(
            "  inside the runtime p50={:.0} us p99={:.0} us; after it (mostly the caller waking) p50={:.0} us p99={:.0} us; low loads still queued: min {} median {}",
            i.p(0.5),
            i.p(0.99),
            a.p(0.5),
            a.p(0.99),
            self.still_queued.0,
            self.still_queued.1
        )
    }
}

/// The systems the trials run on: idle, behind the queue, and behind it with `WORKER_NICE`.
const SYSTEMS: usize = 3;
const _: () = assert!(TRIALS % ROUNDS == 0, "every round runs as many trials");

/// A runtime the trials run on: the low requests queued ahead of each critical one, and its
/// workers' `worker_nice` when not the arguments'.
#[derive(Debug, Clone, Copy)]
struct System {
    queued: usize,
    worker_nice: Option<u8>,
}

impl System {
    fn start(self, source: &MemorySource, args: &BenchArgs) -> anyhow::Result<Runtime> {
        // Nothing stays resident once released, so every trial's low requests are loads
        // queued ahead of the critical one, not hits on the previous trial's assets.
        let mut config =
            RuntimeConfig { bytes_resident_max: 0, ..bench_config(args, self.queued + 1) };
        config.worker_nice = self.worker_nice.unwrap_or(config.worker_nice);
        let rt = Runtime::builder().config(config).source(source.clone()).register(BlobDecoder);
        Ok(rt.build()?)
    }
}

/// Times the critical requests `crit/{keys}` on `rt`, each with `queued` low ones ahead; each
/// sample is (wall, inside) in nanoseconds and the low loads still queued (see [`Trials`]).
fn critical(rt: &Runtime, queued: usize, keys: Range<usize>) -> anyhow::Result<Vec<Sample>> {
    let mut samples = Vec::with_capacity(keys.len());
    for key in keys {
        let (low, still_queued) = queue_low(rt, queued)?;
        let started = Instant::now();
        let crit = rt.request::<Blob>(&format!("crit/{key}"), Priority::Critical)?;
        ensure!(matches!(crit.wait_timeout(PATIENCE), Some(Ok(_))), "the critical request failed");
        let wall = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let inside = crit.latency_us().unwrap_or(0).saturating_mul(1_000);
        samples.push((wall, inside, still_queued));
        for h in &low {
            h.cancel();
        }
        ensure!(rt.sync(PATIENCE), "the runtime did not take the cancels");
    }
    Ok(samples)
}

/// Queues `queued` low requests on `rt` and tops the queue up as the IO workers take from it
/// (see the module docs); the requests and the loads still queued at the end.
fn queue_low(rt: &Runtime, queued: usize) -> anyhow::Result<(Vec<Handle<Blob>>, u64)> {
    let keys = queued * LOW_KEYS_PER_QUEUED;
    let (mut low, mut still_queued) = (Vec::with_capacity(keys), 0);
    for _ in 0..TOP_UPS_MAX {
        let short = queued.saturating_sub(still_queued as usize).min(keys - low.len());
        if short == 0 || still_queued as f64 >= queued as f64 * QUEUED_SHARE_MIN {
            break;
        }
        let next = low.len();
        for i in next..next + short {
            low.push(rt.request::<Blob>(&format!("low/{i}"), Priority::Low)?);
        }
        ensure!(rt.sync(PATIENCE), "the runtime did not take the low requests");
        still_queued = rt.status().queued;
    }
    Ok((low, still_queued))
}

/// Runs every system's trials in `ROUNDS` rounds, the order rotated from round to round (see
/// the module docs), each system on one runtime for all its rounds (a fresh runtime's first
/// trial wakes threads that never ran); the systems' trials in [`SYSTEMS`] order.
fn rotated(
    source: &MemorySource,
    systems: [System; SYSTEMS],
    args: &BenchArgs,
) -> anyhow::Result<[Trials; SYSTEMS]> {
    let runtimes = systems.iter().map(|s| s.start(source, args)).collect::<Result<Vec<_>, _>>()?;
    let per_round = TRIALS / ROUNDS;
    let mut samples: [Vec<Sample>; SYSTEMS] = Default::default();
    for round in 0..ROUNDS {
        for s in turn_order(round, SYSTEMS) {
            // Each system has `TRIALS` keys of its own, each round a slice of them.
            let first = s * TRIALS + round * per_round;
            let keys = first..first + per_round;
            samples[s].extend(critical(&runtimes[s], systems[s].queued, keys)?);
        }
    }
    for rt in runtimes {
        rt.shutdown();
    }
    Ok(samples.map(|s| Trials::from_samples(&s)))
}

/// The FIFO queue: the critical key sent after the low ones, timed from its send.
fn fifo(source: &MemorySource, queued: usize, args: &BenchArgs) -> anyhow::Result<Latencies> {
    let mut samples = Vec::with_capacity(FIFO_TRIALS);
    for _ in 0..FIFO_TRIALS {
        let mut keys: Vec<String> = (0..queued).map(|i| format!("low/{i}")).collect();
        keys.push("crit/0".into());
        let pipeline = Pipeline::start(source, keys.len(), args);
        for (i, k) in keys.iter().enumerate().take(queued) {
            pipeline.send(i, k)?;
        }
        let started = Instant::now();
        pipeline.send(queued, &keys[queued])?;
        pipeline.wait_for(queued)?;
        samples.push(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
        pipeline.finish()?;
    }
    Ok(Latencies::sorted(samples))
}

/// The latency distribution's chart: idle, behind the queue, and the FIFO queue.
fn chart(queued: usize, idle: &Latencies, behind: &Latencies, fifo: &Latencies) -> Chart {
    Chart {
        file: "latency-distribution.svg",
        title: format!("request -> ready latency of a critical request ({queued} queued low)"),
        x_label: "microseconds (log)".into(),
        y_label: "fraction of requests ready".into(),
        x_log: true,
        series: vec![
            idle.cdf("idle runtime"),
            behind.cdf(&format!("streamrt, {queued} low queued")),
            fifo.cdf(&format!("fifo queue, {queued} ahead")),
        ],
    }
}

/// Runs the scenario.
pub(super) fn priority(args: &BenchArgs) -> anyhow::Result<Outcome> {
    let queued = args.count.unwrap_or(QUEUED);
    let source = source(queued, TRIALS)?;
    let systems = [
        System { queued: 0, worker_nice: None },
        System { queued, worker_nice: None },
        System { queued, worker_nice: Some(WORKER_NICE) },
    ];
    let [idle, behind, niced] = rotated(&source, systems, args)?;
    let fifo = fifo(&source, queued, args)?;
    let line = |name: &str, l: &Latencies| {
        format!("{name}: p50={:.0} us p99={:.0} us max={:.0} us", l.p(0.5), l.p(0.99), l.p(1.0))
    };
    let ratio = idle.wall.p(0.99) / behind.wall.p(0.99);
    let chart = chart(queued, &idle.wall, &behind.wall, &fifo);
    Ok(Outcome {
        scenario: "priority",
        lines: vec![
            format!(
                "priority: one critical request (1 KiB, from memory) behind {queued} queued low ones, {TRIALS} trials in {ROUNDS} rotated rounds"
            ),
            line("idle runtime (baseline)", &idle.wall),
            idle.split_line(),
            // Too few trials for a p99: the median and the worst only.
            format!(
                "fifo queue, {FIFO_TRIALS} trials: p50={:.0} us max={:.0} us",
                fifo.p(0.5),
                fifo.p(1.0)
            ),
            line(&format!("streamrt behind {queued} low"), &behind.wall),
            behind.split_line(),
            line(&format!("streamrt behind {queued} low, worker_nice {WORKER_NICE}"), &niced.wall),
            niced.split_line(),
        ],
        unit: "us, p99 request -> ready of the critical request; baseline: idle".into(),
        ours: behind.wall.p(0.99),
        baseline: idle.wall.p(0.99),
        ratio,
        target: Some(Target::new(
            format!("p99 <= {IDLE_MULTIPLE_MAX:.0}x idle (ratio >= 1/{IDLE_MULTIPLE_MAX:.0})"),
            ratio >= 1.0 / IDLE_MULTIPLE_MAX,
        )),
        extra: serde_json::json!({
            "queued": queued, "trials": TRIALS,
            "idle_us": idle.wall.micros(),
            "behind_us": behind.wall.micros(),
            "idle_inside_us": idle.inside.micros(),
            "behind_inside_us": behind.inside.micros(),
            "idle_after_us": idle.after.micros(),
            "behind_after_us": behind.after.micros(),
            "worker_nice": args.worker_nice,
            "niced_worker_nice": WORKER_NICE,
            "niced_us": niced.wall.micros(),
            "niced_inside_us": niced.inside.micros(),
            "niced_after_us": niced.after.micros(),
            "fifo_us": fifo.micros(),
        }),
        charts: vec![chart],
    })
}
