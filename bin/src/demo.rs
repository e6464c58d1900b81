//! `streamctl demo`: the main job on an embedded default.
//!
//! Builds a pack of a few thousand generated assets of five types with dependencies (mesh ->
//! material -> textures; see [`generate`]) in a temporary folder, runs the runtime in-process
//! on it under a simulated 60 fps frame loop that requests, reprioritises and cancels assets
//! (queued, loading or decoded), shows live progress, and prints a summary, then the report of
//! its telemetry (as `streamctl report` prints it). It fails (non-zero exit) if any request is
//! left without a terminal state.

mod generate;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use streamrt::pack::PackLimits;
use streamrt::report::quantile;
use streamrt::{LoadState, PackSource, Priority, Runtime, RuntimeConfig};

use crate::tracked::{register_all, request_any, Tracked};
use generate::DemoPack;

/// The most assets a demo makes: its pack takes about 40 KB of disk an asset, and its frame
/// loop, at its default 60 requests a frame, must request them all (and 1 in 20 again) within
/// its [`FRAMES_MAX`].
const ASSETS_MAX: u64 = 100_000;

/// Options of `streamctl demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Assets to generate.
    #[arg(long, default_value_t = 3_000, value_parser = crate::args::count::<usize>(ASSETS_MAX))]
    assets: usize,
    /// Seed of the generated assets and of the frame loop's choices.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// IO worker threads.
    #[arg(long, default_value_t = 2, value_parser = crate::args::threads())]
    workers: usize,
    /// Requests published per frame at most. Dependencies publish too: 60 requests a frame
    /// bring about 45 dependencies with them, more than a budget of 64 keeps up with.
    #[arg(long, default_value_t = 128, value_parser = crate::args::count::<u32>(u64::from(u32::MAX)))]
    frame_budget: u32,
    /// New requests per frame.
    #[arg(long, default_value_t = 60, value_parser = crate::args::count::<usize>(crate::args::COUNT_MAX))]
    requests_per_frame: usize,
    /// Write telemetry as JSON lines to this file.
    #[arg(long)]
    telemetry: Option<std::path::PathBuf>,
    /// Record the session to this replay log (`streamctl replay` runs it again).
    #[arg(long)]
    record: Option<std::path::PathBuf>,
}

const FRAME: Duration = Duration::from_micros(16_667);
/// Frames the demo runs at most: 120 seconds at 60 frames a second.
const FRAMES_MAX: u64 = 60 * 120;
/// Frames between two progress lines when stderr is no terminal: four lines a second.
const PROGRESS_LINE_FRAMES: u64 = 15;

/// How the frame loop shows its progress on stderr: a bar on a terminal; elsewhere (a log, a
/// CI job) a line every [`PROGRESS_LINE_FRAMES`] frames and one at the end, so that a run
/// read afterwards still shows how it went.
enum Progress {
    Bar(ProgressBar),
    Lines,
}

impl Progress {
    fn new(total: usize) -> Self {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Self::Lines;
        }
        Self::Bar(
            ProgressBar::new(total as u64).with_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} terminal  {msg}")
                    .expect("valid template"),
            ),
        )
    }

    fn show(&self, frame: u64, terminal: usize, total: usize, published: u32) {
        match self {
            Self::Bar(bar) => {
                bar.set_position(terminal as u64);
                bar.set_message(format!("frame {frame} published {published}"));
            }
            Self::Lines if frame % PROGRESS_LINE_FRAMES == 0 => {
                eprintln!(
                    "demo: frame {frame}: {terminal}/{total} terminal, published {published}"
                );
            }
            Self::Lines => {}
        }
    }

    fn finish(self, frames: u64, total: usize) {
        match self {
            Self::Bar(bar) => bar.finish_and_clear(),
            Self::Lines => eprintln!("demo: frame {frames}: all {total} requests terminal"),
        }
    }
}

/// Runs the demo and prints its summary.
///
/// # Errors
///
/// Generating the assets or starting the runtime failed, or a request was left non-terminal.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    // Checked before the pack is made (the direct assets are not known until then): at most
    // every asset is requested directly, and 1 in 20 again.
    let requests_max = Picks::new(args.assets).total();
    let frames_to_request = requests_max.div_ceil(args.requests_per_frame.max(1)) as u64;
    if frames_to_request > FRAMES_MAX {
        bail!(
            "--assets {} may take {requests_max} requests: at --requests-per-frame {}, \
             {frames_to_request} frames, more than the demo's {FRAMES_MAX}; raise \
             --requests-per-frame or lower --assets",
            args.assets,
            args.requests_per_frame
        );
    }
    // Every request is published in a frame, `--frame-budget` at most a frame (and their
    // dependencies with them, not counted here).
    let frames_to_publish = requests_max.div_ceil(args.frame_budget as usize) as u64;
    if frames_to_publish > FRAMES_MAX {
        bail!(
            "--assets {} may take {requests_max} requests: at --frame-budget {}, \
             {frames_to_publish} frames to publish them, more than the demo's {FRAMES_MAX}; \
             raise --frame-budget or lower --assets",
            args.assets,
            args.frame_budget
        );
    }
    let dir = crate::interrupt::temp_dir("demo")?;
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let pack = generate::build(dir.path(), args.assets, &mut rng)?;
    let source = PackSource::open(&pack.path, PackLimits::default())
        .with_context(|| format!("opening {}", pack.path.display()))?;
    // Always kept, for the report the demo ends with: in the demo's folder unless asked for.
    let telemetry = args.telemetry.clone().unwrap_or_else(|| dir.path().join("telemetry.jsonl"));
    let mut config = RuntimeConfig {
        workers: args.workers,
        reads_in_flight: args.workers.saturating_mul(4),
        queue_capacity: 16_384,
        telemetry_path: Some(telemetry.clone()),
        ..RuntimeConfig::default()
    }
    .decode_threads_per_core();
    config.publish = streamrt::PublishMode::Frames(streamrt::FramePolicy::count(args.frame_budget));
    let mut builder = Runtime::builder().config(config).source(source.clone());
    if let Some(path) = &args.record {
        builder = builder.record(path, "streamctl demo");
    }
    let rt = register_all(builder).build()?;
    let started = Instant::now();
    let (handles, frames) = frame_loop(&rt, args, &pack, &mut rng)?;
    let elapsed = started.elapsed();
    rt.shutdown();
    summarise(&rt, &handles, &pack, &source, frames, elapsed)?;
    // The logs were asked for: one cut short by a failed write is a failed run.
    if let Some(error) = rt.telemetry_error() {
        bail!("the telemetry log is incomplete: {error}");
    }
    if let Some(error) = rt.record_error() {
        bail!("the replay log is incomplete: {error}");
    }
    print_report(&telemetry)
}

/// The report of the telemetry log at `path`, as `streamctl report` prints it.
fn print_report(path: &std::path::Path) -> anyhow::Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // Written whole: the demo checked the log's writes before it reads it.
    let mut report = streamrt::report::ReportBuilder::default();
    streamrt::report::for_each_record(std::io::BufReader::new(file), |r| report.push(&r))
        .with_context(|| format!("reading {}", path.display()))?;
    println!("report of the session's telemetry (streamctl report):");
    print!("{}", report.finish().render());
    Ok(())
}

fn frame_loop(
    rt: &Runtime,
    args: &DemoArgs,
    pack: &DemoPack,
    rng: &mut fastrand::Rng,
) -> anyhow::Result<(Vec<Box<dyn Tracked>>, u64)> {
    let direct = &pack.direct;
    let mut picks = Picks::new(direct.len());
    let total = picks.total();
    let progress = Progress::new(total);
    let mut handles: Vec<Box<dyn Tracked>> = Vec::with_capacity(total);
    let mut frames = 0u64;
    let mut deadline = Instant::now();
    loop {
        let report = rt.begin_frame();
        frames += 1;
        for _ in 0..args.requests_per_frame {
            let Some(pick) = picks.next(rng) else { break };
            let (_, key) = &direct[pick];
            let priority = Priority::ALL[rng.usize(..Priority::LEVELS)];
            handles.push(request_any(rt, key.clone(), priority)?);
        }
        steer(&handles, rng);
        let terminal = handles.iter().filter(|h| h.state().is_terminal()).count();
        progress.show(frames, terminal, total, report.published);
        rt.end_frame();
        if handles.len() >= total && terminal == handles.len() {
            break;
        }
        if frames >= FRAMES_MAX {
            bail!("the demo did not finish within {FRAMES_MAX} frames");
        }
        deadline += FRAME;
        if let Some(wait) = deadline.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    progress.finish(frames, total);
    Ok((handles, frames))
}

/// Which of the pack's direct assets the frame loop requests next: every one once, in order,
/// and one in 20 more requests asking again for one already requested (a shared load), mixed
/// in at one request in 20 while new ones remain and made last otherwise.
struct Picks {
    direct: usize,
    next: usize,
    repeats: usize,
}

impl Picks {
    fn new(direct: usize) -> Self {
        Self { direct, next: 0, repeats: 0 }
    }

    /// How many requests the loop makes.
    fn total(&self) -> usize {
        self.direct + self.direct / 20
    }

    /// The index of the next asset to request; `None` once every request was made.
    fn next(&mut self, rng: &mut fastrand::Rng) -> Option<usize> {
        let repeat = self.repeats < self.direct / 20
            && self.next > 0
            && (self.next == self.direct || rng.usize(..20) == 0);
        if repeat {
            self.repeats += 1;
            return Some(rng.usize(..self.next));
        }
        (self.next < self.direct).then(|| {
            self.next += 1;
            self.next - 1
        })
    }
}

/// The frame loop's steering: each frame a few outstanding requests change priority (the
/// camera turned) and a few are cancelled (the player walked away).
fn steer(handles: &[Box<dyn Tracked>], rng: &mut fastrand::Rng) {
    if handles.is_empty() {
        return;
    }
    for _ in 0..8 {
        let h = &handles[rng.usize(..handles.len())];
        if !h.state().is_terminal() {
            h.reprioritize(Priority::ALL[rng.usize(..Priority::LEVELS)]);
        }
    }
    // Whatever stage it is at: queued, being read, or decoded and waiting for its frame.
    for _ in 0..2 {
        let h = &handles[rng.usize(..handles.len())];
        if !h.state().is_terminal() {
            h.cancel();
        }
    }
}

fn summarise(
    rt: &Runtime,
    handles: &[Box<dyn Tracked>],
    pack: &DemoPack,
    source: &PackSource,
    frames: u64,
    elapsed: Duration,
) -> anyhow::Result<()> {
    let count = |s: LoadState| handles.iter().filter(|h| h.state() == s).count();
    let (ready, failed, cancelled) =
        (count(LoadState::Ready), count(LoadState::Failed), count(LoadState::Cancelled));
    let mut latencies: Vec<u64> = handles
        .iter()
        .filter(|h| h.state() == LoadState::Ready)
        .filter_map(|h| h.latency_us())
        .collect();
    latencies.sort_unstable();
    let secs = elapsed.as_secs_f64();
    let status = rt.status();
    println!(
        "demo: {} assets ({:.1} MiB, {} corrupt) over {frames} frames in {secs:.2} s",
        source.entries().len(),
        mib(pack.raw_bytes),
        pack.corrupt,
    );
    print_pack(pack, source);
    println!("requested={} ready={ready} failed={failed} cancelled={cancelled}", handles.len());
    print_failures(handles);
    println!(
        "throughput: {:.0} requests/s, {:.1} MiB/s read",
        (ready + failed + cancelled) as f64 / secs,
        mib(status.bytes_read) / secs
    );
    println!("{}", latency_line(&latencies));
    let stuck = handles.len() - ready - failed - cancelled;
    if stuck > 0 {
        bail!("{stuck} requests never reached a terminal state");
    }
    Ok(())
}

/// The request→ready percentiles of `latencies` (µs, sorted), or `none` without one: a 0 would
/// say every load was instant (a run whose every request failed or was cancelled).
fn latency_line(latencies: &[u64]) -> String {
    if latencies.is_empty() {
        return "request->ready: none (no request became ready)".to_owned();
    }
    format!(
        "request->ready: p50={:.2} ms p99={:.2} ms (frame-paced: a load waits for its frame)",
        quantile(latencies, 0.50) as f64 / 1e3,
        quantile(latencies, 0.99) as f64 / 1e3
    )
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// The pack as the runtime opened it: entries, size on disk, and the dependency edges its
/// index declares.
fn print_pack(pack: &DemoPack, source: &PackSource) {
    let entries = source.entries();
    let edges: usize = entries.iter().map(|e| e.deps.len()).sum();
    let dependants = entries.iter().filter(|e| !e.deps.is_empty()).count();
    println!(
        "pack: {} entries, {:.1} MiB (lz4), {edges} dependency edges from {dependants} entries",
        entries.len(),
        mib(pack.pack_bytes),
    );
}

/// Failed requests by error kind, so damaged entries show up as `corrupt`.
fn print_failures(handles: &[Box<dyn Tracked>]) {
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for kind in handles.iter().filter_map(|h| h.failure_kind()) {
        *kinds.entry(kind).or_default() += 1;
    }
    if !kinds.is_empty() {
        let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}={n}")).collect();
        println!("failures: {}", list.join(" "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_where_nothing_became_ready_says_none_not_zero() {
        assert_eq!(latency_line(&[]), "request->ready: none (no request became ready)");
        assert!(latency_line(&[1_000, 3_000]).starts_with("request->ready: p50=1.00 ms"));
    }

    #[test]
    fn the_frame_loop_requests_every_direct_asset_once_in_order_and_one_in_20_again() {
        for direct in [0, 1, 19, 20, 41, 2_400] {
            for seed in 0..50 {
                let mut rng = fastrand::Rng::with_seed(seed);
                let mut picks = Picks::new(direct);
                let made: Vec<usize> = std::iter::from_fn(|| picks.next(&mut rng)).collect();
                assert_eq!(made.len(), direct + direct / 20, "{direct} assets, seed {seed}");
                let mut seen = 0;
                for &pick in &made {
                    assert!(pick <= seen && pick < direct, "{pick} after {seen} new ones");
                    if pick == seen {
                        seen += 1;
                    }
                }
                assert_eq!(seen, direct, "every asset requested: {direct} assets, seed {seed}");
            }
        }
    }
}
