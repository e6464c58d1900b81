//! `streamctl bench`: scenarios measured side by side with their baselines in one run.
//!
//! Figures are ratios against a baseline run in the same process, interleaved round by round,
//! because these machines are shared and noisy; absolute times alone prove nothing. Each
//! scenario prints what it ran, one line per system measured, the unit (and the target),
//! then `bench SCENARIO: ours=X baseline=Y ratio=R`, where a ratio above 1 means streamrt is
//! better; see [`outcome`]. `bench all` runs every scenario with its default sizes (or each
//! with `--count` as its main count, as a smoke run does), `scale` first: its bytes per
//! pending request are the process's peak RSS over its fill, and memory the other scenarios
//! freed, which the fill would take back, would hide part of them.
//!
//! Scenarios (each module's docs say exactly what is measured):
//! - `throughput`: lz4 assets of 1–256 KiB (and 1 in 400 at 4 MiB) from a pack and from a
//!   directory, against a plain parallel read + decompress + checksum (`limit`) and a tokio
//!   task per asset (`naive`).
//! - `slow-storage`: 1 ms added to every read, against the ideal overlapped rate.
//! - `tiny`: 64-byte assets from memory, against a channel-and-pool pipeline.
//! - `priority`: a critical request behind 10,000 queued low ones, against the same request on
//!   an idle runtime (and a FIFO queue).
//! - `cancel`: 10,000 queued, half cancelled, against the uncancelled run.
//! - `scale`: 1,000,000 pending requests against 1,000.
//! - `frame`: `begin_frame` + `end_frame` with 1,000 ready, against an empty frame.
//! - `telemetry`: telemetry on against off; `coalesce`: coalesced pack reads against one read
//!   per entry.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use streamrt::{Handle, Priority, Runtime, RuntimeConfig};

use crate::formats::Blob;

mod cancel;
mod coalesce;
mod cpu;
mod frame;
mod outcome;
mod plot;
mod priority;
mod scale;
mod slow;
mod telemetry;
mod throughput;
mod tiny;
mod workload;

use outcome::Outcome;

/// The scenarios `streamctl bench` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// Every scenario below, with its default sizes (or `--count`), `scale` first.
    All,
    /// lz4 assets of 1-256 KiB from a pack and a directory vs `limit` and `naive`.
    Throughput,
    /// 1 ms added to every read vs the ideal overlapped rate.
    SlowStorage,
    /// 64-byte assets from memory, request -> published, vs a channel-and-pool pipeline.
    Tiny,
    /// A critical request behind 10,000 queued low ones vs an idle runtime.
    Priority,
    /// 10,000 queued, half cancelled, vs the uncancelled run.
    Cancel,
    /// 1,000,000 pending requests vs 1,000.
    Scale,
    /// Engine-thread cost of a frame boundary with 0, 100 and 1,000 assets ready.
    Frame,
    /// The same in-memory workload with telemetry on (log written) and off.
    Telemetry,
    /// Small pack entries in pack order, adjacent reads coalesced vs one read each.
    Coalesce,
}

impl Scenario {
    /// What `all` runs, in order (`scale` first, see the module docs).
    const EVERY: [Scenario; 9] = [
        Scenario::Scale,
        Scenario::Throughput,
        Scenario::SlowStorage,
        Scenario::Tiny,
        Scenario::Priority,
        Scenario::Cancel,
        Scenario::Frame,
        Scenario::Telemetry,
        Scenario::Coalesce,
    ];

    fn run(self, args: &BenchArgs) -> anyhow::Result<Outcome> {
        match self {
            Scenario::Throughput => throughput::throughput(args),
            Scenario::SlowStorage => slow::slow_storage(args),
            Scenario::Tiny => tiny::tiny(args),
            Scenario::Priority => priority::priority(args),
            Scenario::Cancel => cancel::cancel(args),
            Scenario::Scale => scale::scale(args),
            Scenario::Frame => frame::frame(args),
            Scenario::Telemetry => telemetry::telemetry(args),
            Scenario::Coalesce => coalesce::coalesce(args),
            Scenario::All => bail!("`all` is not one scenario"),
        }
    }
}

/// Options of `streamctl bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Which scenario to run; every one (`all`) when none is named.
    #[arg(value_enum, default_value_t = Scenario::All)]
    scenario: Scenario,
    /// Run the scenario on this pack's entries instead of generated ones (throughput,
    /// slow-storage, cancel).
    #[arg(long)]
    pack: Option<PathBuf>,
    /// The scenario's main count (assets, files or pending requests) instead of its default.
    #[arg(long, value_parser = crate::args::count::<usize>(crate::args::COUNT_MAX))]
    count: Option<usize>,
    /// IO worker threads of the runtime (and of the baselines).
    #[arg(long, default_value_t = 2, value_parser = crate::args::threads())]
    workers: usize,
    /// Decode threads of the runtime (and of the baselines).
    #[arg(long, default_value_t = 2, value_parser = crate::args::threads())]
    decode_threads: usize,
    /// Read credits of the runtime (default: two per IO worker). In slow-storage, the reads
    /// at once instead (default 16): the runtime gets as many IO workers, with two credits
    /// each, and the FIFO pool as many threads (`--workers` is not used there).
    #[arg(long, value_parser = crate::args::threads())]
    reads_in_flight: Option<usize>,
    /// Decode credits of the runtime (default: two per decode thread).
    #[arg(long, value_parser = crate::args::count::<usize>(streamrt::CREDITS_MAX as u64))]
    decode_backlog: Option<usize>,
    /// Steps of CPU priority the runtime's IO and decode threads run below the caller's
    /// (`RuntimeConfig::worker_nice`). The baselines' threads keep the caller's priority.
    #[arg(long, default_value_t = 0, value_parser = crate::args::worker_nice())]
    worker_nice: u8,
    /// Interleaved rounds of each system; the median round is reported. Five: on a shared
    /// machine one round in three or four can run slow, and the median of three then moves
    /// with it. (`priority` always runs its 300 trials in three rounds of its own, and reports
    /// their p99; `cancel` runs once each way; `frame` reports the p99 of its boundaries.)
    #[arg(long, default_value_t = 5, value_parser = crate::args::count::<usize>(1_000))]
    rounds: usize,
    /// Frame boundaries measured per level (`frame`).
    #[arg(long, default_value_t = 2_000, value_parser = crate::args::count::<usize>(crate::args::FRAMES_MAX))]
    frames: usize,
    /// Seed of the generated assets.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the scenarios' SVG charts (throughput against depth, latency distribution) here.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Print each result as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs the chosen scenario, or all of them, and prints each result.
///
/// # Errors
///
/// Generating the assets, starting the runtime, or a failed load.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let scenarios: &[Scenario] = match args.scenario {
        Scenario::All => &Scenario::EVERY,
        ref one => std::slice::from_ref(one),
    };
    let uses_pack = [Scenario::Throughput, Scenario::SlowStorage, Scenario::Cancel];
    if args.pack.is_some() {
        let skipped: Vec<_> = scenarios.iter().filter(|s| !uses_pack.contains(s)).collect();
        if !skipped.is_empty() {
            eprintln!(
                "bench: --pack applies to throughput, slow-storage and cancel; not to {skipped:?}"
            );
        }
    }
    let started = Instant::now();
    let mut closing = Vec::new();
    for (i, scenario) in scenarios.iter().enumerate() {
        if i > 0 && !args.json {
            print_line("");
        }
        let outcome = scenario.run(args)?;
        outcome.print(args.json);
        if let Some(dir) = &args.plot {
            std::fs::create_dir_all(dir)?;
            for chart in &outcome.charts {
                let path = dir.join(chart.file);
                std::fs::write(&path, chart.render())?;
                eprintln!("wrote {}", path.display());
            }
        }
        closing.push(outcome.closing());
    }
    if scenarios.len() > 1 && !args.json {
        print_line("");
        let seconds = started.elapsed().as_secs_f64();
        print_line(&format!("bench all: {} scenarios in {seconds:.1} s", closing.len()));
        closing.iter().for_each(|line| print_line(line));
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
fn print_line(line: &str) {
    println!("{line}");
}

/// Runs `N` systems for `--rounds` interleaved rounds, calling `run(system)` for each, in an
/// order rotated by one from round to round: on a shared machine the load moves within a run,
/// and a system that always ran first (or last) met its own share of it. Reports each round's
/// times (`wall` of each result) under `names`; returns each system's results, round by round.
///
/// # Errors
///
/// The first error a run returns.
fn interleaved<T, const N: usize>(
    args: &BenchArgs,
    names: [&str; N],
    mut run: impl FnMut(usize) -> anyhow::Result<T>,
    wall: impl Fn(&T) -> Duration,
) -> anyhow::Result<[Vec<T>; N]> {
    let mut results: [Vec<T>; N] = std::array::from_fn(|_| Vec::new());
    for round in 0..args.rounds.max(1) {
        for system in turn_order(round, N) {
            results[system].push(run(system)?);
        }
        let times: Vec<(&str, Duration)> =
            (0..N).map(|s| (names[s], wall(&results[s][round]))).collect();
        round_line(args, round + 1, &times);
    }
    Ok(results)
}

/// The order `systems` run in at `round`: each round starts one system later than the one
/// before, so none always runs first (or last).
fn turn_order(round: usize, systems: usize) -> impl Iterator<Item = usize> {
    (0..systems).map(move |turn| (round + turn) % systems)
}

/// Reports a round's times on stderr, so stdout holds only the result.
fn round_line(args: &BenchArgs, round: usize, systems: &[(&str, Duration)]) {
    if args.json {
        return;
    }
    let times: Vec<String> =
        systems.iter().map(|(name, d)| format!("{name} {:.3} s", d.as_secs_f64())).collect();
    eprintln!("  round {round}: {}", times.join("  "));
}

/// Requests every `blob` path at `Normal`.
///
/// # Errors
///
/// A refused request.
fn request_all(rt: &Runtime, paths: &[String]) -> anyhow::Result<Vec<Handle<Blob>>> {
    Ok(paths
        .iter()
        .map(|p| rt.request::<Blob>(p, Priority::Normal))
        .collect::<Result<Vec<_>, _>>()?)
}

/// A payload of `len` bytes (at least 8) that starts with `number`, so that a check can tell
/// whose bytes a loaded asset got ([`check_numbered`]).
fn numbered_payload(number: u64, len: usize) -> Vec<u8> {
    let mut payload = vec![number as u8; len.max(8)];
    payload[..8].copy_from_slice(&number.to_le_bytes());
    payload
}

/// Checks that the `i`th blob is loaded, with the payload of number `i`: a load bound to
/// another key's bytes would pass as ready otherwise.
///
/// # Errors
///
/// A blob missing or numbered otherwise.
fn check_numbered(blobs: impl Iterator<Item = Option<Arc<Blob>>>) -> anyhow::Result<()> {
    for (i, blob) in blobs.enumerate() {
        if !blob.is_some_and(|b| is_numbered(&b, i as u64)) {
            bail!("asset {i} is missing or came with another asset's bytes");
        }
    }
    Ok(())
}

/// Whether `blob`'s payload is the one of number `number` ([`numbered_payload`]).
fn is_numbered(blob: &Blob, number: u64) -> bool {
    blob.0.get(..8) == Some(&number.to_le_bytes()[..])
}

/// Waits until every handle is ready.
///
/// # Errors
///
/// A load failed, or did not finish within 10 minutes.
fn wait_all_ready<T: Send + Sync + 'static>(handles: &[Handle<T>]) -> anyhow::Result<()> {
    for h in handles {
        match h.wait_timeout(Duration::from_secs(600)) {
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("{}: {e}", h.key()),
            None => bail!("{} did not finish", h.key()),
        }
    }
    Ok(())
}

/// The runtime every scenario measures: the bench's thread counts, credits of two loads per
/// thread, and a queue that takes all `requests` at once.
fn bench_config(args: &BenchArgs, requests: usize) -> RuntimeConfig {
    let defaults = RuntimeConfig::default();
    RuntimeConfig {
        workers: args.workers,
        reads_in_flight: args.reads_in_flight.unwrap_or(args.workers.saturating_mul(2)),
        decode_threads: args.decode_threads,
        decode_backlog_max: args.decode_backlog.unwrap_or(args.decode_threads.saturating_mul(2)),
        worker_nice: args.worker_nice,
        queue_capacity: requests.max(1),
        // Every request at once, and `scale`'s one more held across its steps (`--count`
        // goes past the default limit).
        requests_outstanding_max: requests.saturating_add(1).max(defaults.requests_outstanding_max),
        ..defaults
    }
}

/// Requests every path at once and times the run to the last `Ready`.
///
/// # Errors
///
/// A request was refused, failed, or did not finish within 10 minutes.
fn stream_all(rt: &Runtime, paths: &[String]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    wait_all_ready(&request_all(rt, paths)?)?;
    Ok(started.elapsed())
}

/// The middle of `v`, or the mean of its two middles for an even count (the upper one alone
/// made every system's median its slower round of two).
fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    let upper = v[v.len() / 2];
    if v.len() % 2 == 0 {
        (v[v.len() / 2 - 1] + upper) / 2
    } else {
        upper
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_its_two_middles() {
        let ms = |v: &[u64]| v.iter().map(|&m| Duration::from_millis(m)).collect::<Vec<_>>();
        assert_eq!(median(ms(&[30, 10])), Duration::from_millis(20));
        assert_eq!(median(ms(&[30, 10, 20])), Duration::from_millis(20));
        assert_eq!(median(ms(&[40, 10, 30, 20])), Duration::from_millis(25));
    }
}
