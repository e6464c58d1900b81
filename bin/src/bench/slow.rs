//! `streamctl bench slow-storage`: 2,000 assets (1–64 KiB, lz4 pack, or `--pack`) with 1 ms
//! added to every read, as from a slow disk or a network store.
//!
//! The runtime gets `READS_IN_FLIGHT` IO workers (`--reads-in-flight` overrides it) with two
//! read credits each, so at most that many reads wait at once, and two decode threads. Systems:
//! - the ideal overlapped rate: reads in flight / latency (the delay as the machine gives it,
//!   measured before the rounds: a 1 ms sleep takes longer), capped by what the machine manages
//!   without any delay: `limit` (read, lz4, checksum, decode) on as many threads as ours has,
//!   IO workers and decode threads (measured in the same run);
//! - a FIFO pool: as many threads as reads in flight, each taking the next asset, one read at a
//!   time (delay, read, decode);
//! - ours: every asset requested at once, timed to the last `Ready`.
//!
//! The closing line compares ours with the ideal.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use streamrt::messages::AssetKey;
use streamrt::{ReadHook, RuntimeConfig, SourceError, Wrapped};

use super::outcome::{Outcome, Target};
use super::throughput::limit;
use super::workload::{generate_pack, open_pack, Sizes, Workload};
use super::{bench_config, interleaved, median, BenchArgs};

/// Assets of the scenario by default.
const ASSETS: usize = 2_000;
/// What every read waits before it starts.
const READ_DELAY: Duration = Duration::from_millis(1);
/// Reads in flight (and IO workers) by default.
const READS_IN_FLIGHT: usize = 16;
const IDEAL_RATIO_MIN: f64 = 0.8;

/// Sleeps each of `threads` threads take at once to measure the delay.
const CALIBRATION_SLEEPS: usize = 50;

/// The delay a read of `READ_DELAY` takes on this machine, measured with `threads` threads
/// sleeping at once and nothing else running: a sleep always takes longer than asked (timer
/// slack, the wake), and the ideal rate divides by the latency the storage has. Measured
/// alone, not in ours' rounds, where ours' own work would lengthen the wakes it is measured by.
fn calibrated_delay(threads: usize) -> Duration {
    let slept = Slept::default();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| (0..CALIBRATION_SLEEPS).for_each(|_| slept.sleep(READ_DELAY)));
        }
    });
    slept.mean(READ_DELAY)
}

/// The delays some sleeps took.
#[derive(Default)]
struct Slept {
    nanos: AtomicU64,
    count: AtomicU64,
}

impl Slept {
    /// Sleeps `delay` and counts how long that took.
    fn sleep(&self, delay: Duration) {
        let started = Instant::now();
        std::thread::sleep(delay);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The mean delay, or `asked` when nothing slept.
    fn mean(&self, asked: Duration) -> Duration {
        match self.count.load(Ordering::Relaxed) {
            0 => asked,
            n => Duration::from_nanos(self.nanos.load(Ordering::Relaxed) / n),
        }
    }
}

/// Every read first waits `delay`, on the IO worker's thread.
struct Delayed {
    delay: Duration,
}

impl ReadHook for Delayed {
    fn around(
        &self,
        _key: &AssetKey,
        read: impl FnOnce() -> Result<Vec<u8>, SourceError>,
    ) -> Result<Vec<u8>, SourceError> {
        std::thread::sleep(self.delay);
        read()
    }

    fn describe(&self, inner: &str) -> String {
        format!("{inner} + {:?} per read", self.delay)
    }
}

/// Ours, with `reads` IO workers and credits.
fn ours(workload: &Workload, reads: usize, args: &BenchArgs) -> anyhow::Result<Duration> {
    // Two credits per worker: each worker has its next load queued when a read ends, so it
    // never waits for the scheduler to hand a credit back; still `reads` reads at once.
    // Nothing kept resident, as in the throughput scenario: the baselines keep no asset.
    let config = RuntimeConfig {
        workers: reads,
        reads_in_flight: reads.saturating_mul(2),
        bytes_resident_max: super::throughput::BYTES_RESIDENT_MAX,
        ..bench_config(args, workload.keys.len())
    };
    let delayed =
        workload.builder_over(|inner| Wrapped::new(inner, Delayed { delay: READ_DELAY }))?;
    Ok(workload.stream(&delayed.config(config).build()?)?.wall)
}

/// Runs the scenario.
pub(super) fn slow_storage(args: &BenchArgs) -> anyhow::Result<Outcome> {
    let dir = crate::interrupt::temp_dir("bench")?;
    let workload = match &args.pack {
        Some(pack) => open_pack(pack, None)?,
        None => generate_pack(
            &dir.path().join("slow.pack"),
            &Sizes::SMALL,
            args.count.unwrap_or(ASSETS),
            args.seed,
        )?,
    };
    let reads = args.reads_in_flight.unwrap_or(READS_IN_FLIGHT).max(1);
    let n = workload.keys.len() as f64;
    // One untimed pass warms the page cache. The cap is then `limit`'s rate on our threads,
    // IO workers and decode threads: read, lz4, checksum and decode of each asset with no
    // delay, which ours cannot beat (until the twenty-fourth session it ran on the decode
    // threads alone, below what ours reaches with the reads and lz4 on its IO workers).
    let threads = reads + args.decode_threads.max(1);
    limit(&workload, threads)?;
    let latency = calibrated_delay(reads);
    let run = |system: usize| match system {
        0 => Ok(limit(&workload, threads)?.wall),
        1 => Ok(workload.load_in_parallel(reads, READ_DELAY)?.wall),
        _ => ours(&workload, reads, args),
    };
    let names = ["no-delay limit", "fifo pool", "streamrt"];
    let [no_delay, pool, own] = interleaved(args, names, run, |d: &Duration| *d)?;
    let rate = |d: Duration| n / d.as_secs_f64();
    let no_delay_cap = rate(median(no_delay));
    let overlapped = reads as f64 / latency.as_secs_f64();
    let ideal = overlapped.min(no_delay_cap);
    let (p, o) = (rate(median(pool)), rate(median(own)));
    let ratio = o / ideal;
    Ok(Outcome {
        scenario: "slow-storage",
        lines: vec![
            format!(
                "slow-storage: {}, {:?} added to every read, {reads} reads in flight",
                workload.describe(),
                READ_DELAY
            ),
            format!(
                "ideal overlapped rate: {ideal:.0} assets/s ({reads} reads / {:.3} ms, the delay measured = {overlapped:.0}, no-delay cap on {threads} threads {no_delay_cap:.0})",
                latency.as_secs_f64() * 1e3
            ),
            format!("fifo pool, {reads} threads, one read each: {p:.0} assets/s"),
            format!("streamrt, {reads} io workers + {} decode threads: {o:.0} assets/s", args.decode_threads),
        ],
        unit: "assets/s; baseline: the ideal overlapped rate".into(),
        ours: o,
        baseline: ideal,
        ratio,
        target: Some(Target::new(format!(">= {IDEAL_RATIO_MIN:.1}x ideal"), ratio >= IDEAL_RATIO_MIN)),
        extra: serde_json::json!({
            "assets": workload.keys.len(), "reads_in_flight": reads, "fifo_pool": p,
            "no_delay_cap": no_delay_cap, "read_delay_measured_us": latency.as_secs_f64() * 1e6,
        }),
        charts: vec![],
    })
}
