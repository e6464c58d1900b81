//! `streamctl bench`: scenarios measured side by side with their baselines in one run.
//!
//! Figures are ratios against a baseline run in the same process, interleaved round by round,
//! because these machines are shared and noisy; absolute times alone prove nothing.
//!
//! Scenarios:
//! - `throughput`: files of 1–256 KiB (checksummed blobs) from a directory, page cache warm.
//!   Baseline: a plain parallel read + decode of the same files with as many threads as the
//!   runtime's IO workers and decode threads together, no scheduling.
//! - `telemetry`: assets of 1–16 KiB from memory, streamed with telemetry on (every event
//!   written to a JSON-lines file) and off; the baseline is the run with telemetry off.
//! - `coalesce`: small lz4 pack entries requested in pack order, with reads of adjacent
//!   entries coalesced into 256 KiB windows; the baseline reads every entry on its own.
//! - `frame`: the engine thread's `begin_frame` + `end_frame` with 0, 100 and 1,000 assets
//!   ready (budget 64), p50 and p99; the baseline is the empty frame.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use streamrt::messages::AssetKey;
use streamrt::{Decoder, DirSource, Priority, Runtime, RuntimeConfig};

use crate::formats::{encode_blob, Blob, BlobDecoder};

mod coalesce;
mod frame;

/// The scenarios `streamctl bench` knows.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Scenario {
    /// Files of 1–256 KiB through the runtime vs a plain parallel read+decode.
    Throughput,
    /// The same in-memory workload with telemetry on (log written) and off.
    Telemetry,
    /// Engine-thread cost of a frame boundary with 0, 100 and 1,000 assets ready.
    Frame,
    /// Small pack entries in pack order, adjacent reads coalesced vs one read each.
    Coalesce,
}

/// Options of `streamctl bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Which scenario to run.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Files to stream.
    #[arg(long, default_value_t = 20_000)]
    files: usize,
    /// IO worker threads of the runtime.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Decode threads of the runtime.
    #[arg(long, default_value_t = 2)]
    decode_threads: usize,
    /// Interleaved rounds of each system; the median round is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Frame boundaries measured per level (`frame`).
    #[arg(long, default_value_t = 2_000)]
    frames: usize,
    /// Seed of the generated files.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs the chosen scenario.
///
/// # Errors
///
/// Generating the files, starting the runtime, or a failed load.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    match args.scenario {
        Scenario::Throughput => throughput(args),
        Scenario::Telemetry => telemetry(args),
        Scenario::Frame => frame::frame(args),
        Scenario::Coalesce => coalesce::coalesce(args),
    }
}

struct Files {
    paths: Vec<String>,
    bytes: u64,
}

fn generate(root: &Path, count: usize, seed: u64) -> anyhow::Result<Files> {
    let mut rng = fastrand::Rng::with_seed(seed);
    // Payloads are windows of one random buffer: realistic entropy without generating
    // gigabytes of random numbers.
    let pool: Vec<u8> = (0..(512 << 10)).map(|_| rng.u8(..)).collect();
    let mut files = Files { paths: Vec::with_capacity(count), bytes: 0 };
    for i in 0..count {
        let dir = format!("d{:02}", i % 64);
        std::fs::create_dir_all(root.join(&dir))?;
        let len = rng.usize(1_024..=256 << 10) - 4;
        let start = rng.usize(..pool.len() - len);
        let bytes = encode_blob(&pool[start..start + len]);
        let path = format!("{dir}/f{i:06}.bin");
        std::fs::write(root.join(&path), &bytes)?;
        files.bytes += bytes.len() as u64;
        files.paths.push(path);
    }
    Ok(files)
}

/// The baseline: `threads` threads taking the next file, reading and decoding it.
fn plain_parallel(root: &Path, files: &Files, threads: usize) -> anyhow::Result<Duration> {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let kept: anyhow::Result<Vec<Vec<Arc<Blob>>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<Vec<Arc<Blob>>> {
                    let mut kept = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(path) = files.paths.get(i) else {
                            return Ok(kept);
                        };
                        let bytes = std::fs::read(root.join(path))?;
                        let key = AssetKey::parse(&format!("blob:{path}"))?;
                        kept.push(Arc::new(BlobDecoder.decode(&key, bytes)?));
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("baseline thread")).collect()
    });
    let elapsed = started.elapsed();
    let kept = kept?;
    anyhow::ensure!(kept.iter().map(Vec::len).sum::<usize>() == files.paths.len());
    Ok(elapsed)
}

/// The runtime every scenario measures: the bench's thread counts, credits of two loads per
/// thread, and a queue that takes all `requests` at once.
fn bench_config(args: &BenchArgs, requests: usize) -> RuntimeConfig {
    RuntimeConfig {
        workers: args.workers,
        reads_in_flight: args.workers * 2,
        decode_threads: args.decode_threads,
        decode_backlog_max: args.decode_threads * 2,
        queue_capacity: requests.max(1),
        ..RuntimeConfig::default()
    }
}

/// Ours: every file requested at once from a fresh runtime, timed to the last `Ready`.
fn streamrt_run(root: &Path, files: &Files, args: &BenchArgs) -> anyhow::Result<Duration> {
    let config = bench_config(args, files.paths.len());
    let rt = Runtime::builder()
        .config(config)
        .source(DirSource::new(root))
        .register(BlobDecoder)
        .build()?;
    let elapsed = stream_all(&rt, &files.paths)?;
    rt.shutdown();
    Ok(elapsed)
}

/// Requests every path at once and times the run to the last `Ready`.
///
/// # Errors
///
/// A request was refused, failed, or did not finish within 10 minutes.
fn stream_all(rt: &Runtime, paths: &[String]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let handles = paths
        .iter()
        .map(|p| rt.request::<Blob>(p, Priority::Normal))
        .collect::<Result<Vec<_>, _>>()?;
    for h in &handles {
        match h.wait_timeout(Duration::from_secs(600)) {
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("{}: {e}", h.key()),
            None => bail!("{} did not finish", h.key()),
        }
    }
    Ok(started.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn throughput(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating the bench folder")?;
    let root: PathBuf = dir.path().to_owned();
    let files = generate(&root, args.files, args.seed)?;
    let threads = args.workers + args.decode_threads;
    // One untimed pass warms the page cache for both systems.
    plain_parallel(&root, &files, threads)?;
    let (mut base, mut ours) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds.max(1) {
        base.push(plain_parallel(&root, &files, threads)?);
        ours.push(streamrt_run(&root, &files, args)?);
        if !args.json {
            println!(
                "  round {round}: baseline {:.3} s  streamrt {:.3} s",
                base[round - 1].as_secs_f64(),
                ours[round - 1].as_secs_f64()
            );
        }
    }
    let rate = |d: Duration| files.paths.len() as f64 / d.as_secs_f64();
    let mibs = |d: Duration| files.bytes as f64 / f64::from(1 << 20) / d.as_secs_f64();
    let (b, o) = (median(base), median(ours));
    let ratio = rate(o) / rate(b);
    if args.json {
        let out = serde_json::json!({
            "scenario": "throughput", "unit": "files/s", "files": files.paths.len(),
            "bytes": files.bytes, "ours": rate(o), "baseline": rate(b), "ratio": ratio,
            "ours_mib_s": mibs(o), "baseline_mib_s": mibs(b),
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "throughput: {} files, {:.2} GiB, 1-256 KiB each, page cache warm",
        files.paths.len(),
        files.bytes as f64 / f64::from(1 << 30)
    );
    println!(
        "baseline plain parallel read+decode, {threads} threads: {:.0} files/s {:.1} MiB/s",
        rate(b),
        mibs(b)
    );
    println!(
        "streamrt {} io workers + {} decode threads: {:.0} files/s {:.1} MiB/s",
        args.workers,
        args.decode_threads,
        rate(o),
        mibs(o)
    );
    println!("unit: files/s");
    println!("bench throughput: ours={:.0} baseline={:.0} ratio={ratio:.2}", rate(o), rate(b));
    Ok(())
}

/// One run of the telemetry scenario: every asset requested at once, timed to the last end.
fn memory_run(
    source: &streamrt::MemorySource,
    keys: &[String],
    args: &BenchArgs,
    log: Option<&Path>,
) -> anyhow::Result<Duration> {
    let config = RuntimeConfig {
        events_enabled: log.is_some(),
        telemetry_path: log.map(Path::to_owned),
        ..bench_config(args, keys.len())
    };
    let rt =
        Runtime::builder().config(config).source(source.clone()).register(BlobDecoder).build()?;
    let elapsed = stream_all(&rt, keys)?;
    rt.shutdown();
    Ok(elapsed)
}

fn telemetry(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating the bench folder")?;
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let source = streamrt::MemorySource::new();
    let keys: Vec<String> = (0..args.files).map(|i| format!("m{i}")).collect();
    for k in &keys {
        let payload: Vec<u8> = (0..rng.usize(1_024..16 << 10)).map(|_| rng.u8(..)).collect();
        source.insert(AssetKey::parse(&format!("blob:{k}"))?, encode_blob(&payload));
    }
    let log = dir.path().join("bench.jsonl");
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds.max(1) {
        off.push(memory_run(&source, &keys, args, None)?);
        on.push(memory_run(&source, &keys, args, Some(&log))?);
        if !args.json {
            println!(
                "  round {round}: telemetry off {:.3} s  on {:.3} s",
                off[round - 1].as_secs_f64(),
                on[round - 1].as_secs_f64()
            );
        }
    }
    let rate = |d: Duration| keys.len() as f64 / d.as_secs_f64();
    let (o, b) = (median(on), median(off));
    let ratio = rate(o) / rate(b);
    if args.json {
        let out = serde_json::json!({
            "scenario": "telemetry", "unit": "requests/s", "requests": keys.len(),
            "ours": rate(o), "baseline": rate(b), "ratio": ratio,
        });
        println!("{out}");
        return Ok(());
    }
    println!("telemetry: {} in-memory assets of 1-16 KiB, every event written when on", keys.len());
    println!("telemetry off (baseline): {:.0} requests/s", rate(b));
    println!("telemetry on: {:.0} requests/s", rate(o));
    println!("unit: requests/s");
    println!("bench telemetry: ours={:.0} baseline={:.0} ratio={ratio:.2}", rate(o), rate(b));
    Ok(())
}
