//! `streamctl demo`: the main job on an embedded default.
//!
//! Writes a few thousand synthetic assets of three types to a temporary folder, runs the
//! runtime in-process under a simulated 60 fps frame loop that requests, reprioritises and
//! cancels assets, shows live progress, and prints a summary. It fails (non-zero exit) if any
//! request is left without a terminal state.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use streamrt::{DirSource, LoadState, Priority, Runtime, RuntimeConfig};

use crate::formats::{self, Blob, BlobDecoder, Mesh, MeshDecoder, Texture, TextureDecoder};
use streamrt::report::quantile;

use crate::tracked::Tracked;

/// Options of `streamctl demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Assets to generate.
    #[arg(long, default_value_t = 3_000)]
    assets: usize,
    /// Seed of the generated assets and of the frame loop's choices.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// IO worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Requests published per frame at most.
    #[arg(long, default_value_t = 64)]
    frame_budget: u32,
    /// New requests per frame.
    #[arg(long, default_value_t = 60)]
    requests_per_frame: usize,
    /// Write telemetry as JSON lines to this file.
    #[arg(long)]
    telemetry: Option<std::path::PathBuf>,
}

const FRAME: Duration = Duration::from_micros(16_667);

struct Generated {
    paths: Vec<(u8, String)>,
    bytes: u64,
    corrupt: usize,
}

/// Writes the demo's assets under `root`: a third each of blobs, meshes and textures, with one
/// blob in 70 corrupted so that some loads fail.
fn generate(root: &Path, count: usize, rng: &mut fastrand::Rng) -> anyhow::Result<Generated> {
    let mut out = Generated { paths: Vec::with_capacity(count), bytes: 0, corrupt: 0 };
    for dir in ["blob", "mesh", "texture"] {
        std::fs::create_dir_all(root.join(dir))?;
    }
    for i in 0..count {
        let kind = (i % 3) as u8;
        let (path, mut bytes) = match kind {
            0 => {
                let payload: Vec<u8> =
                    (0..rng.usize(1_024..64 * 1_024)).map(|_| rng.u8(..)).collect();
                (format!("blob/b{i:05}.bin"), formats::encode_blob(&payload))
            }
            1 => {
                let nv = rng.usize(50..3_000);
                let vertices = (0..nv).map(|_| [rng.f32(), rng.f32(), rng.f32()]).collect();
                let indices = (0..nv * 3).map(|_| rng.u32(..nv as u32)).collect();
                (format!("mesh/m{i:05}.mesh"), formats::encode_mesh(&Mesh { vertices, indices }))
            }
            _ => {
                let side = 16u16 << rng.u8(0..5);
                (format!("texture/t{i:05}.tex"), formats::encode_texture(side, side, 4, rng))
            }
        };
        // Only blobs carry a checksum, so only their damage is certain to be caught.
        if kind == 0 && rng.usize(..70) == 0 {
            let at = rng.usize(..bytes.len());
            bytes[at] ^= 0x5a;
            out.corrupt += 1;
        }
        out.bytes += bytes.len() as u64;
        std::fs::write(root.join(&path), &bytes)?;
        out.paths.push((kind, path));
    }
    Ok(out)
}

fn request(rt: &Runtime, kind: u8, path: &str, p: Priority) -> anyhow::Result<Box<dyn Tracked>> {
    Ok(match kind {
        0 => Box::new(rt.request::<Blob>(path, p)?),
        1 => Box::new(rt.request::<Mesh>(path, p)?),
        _ => Box::new(rt.request::<Texture>(path, p)?),
    })
}

/// Runs the demo and prints its summary.
///
/// # Errors
///
/// Generating the assets or starting the runtime failed, or a request was left non-terminal.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating the demo folder")?;
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let generated = generate(dir.path(), args.assets, &mut rng)?;
    let mut config = RuntimeConfig {
        workers: args.workers,
        reads_in_flight: args.workers * 4,
        queue_capacity: 16_384,
        telemetry_path: args.telemetry.clone(),
        ..RuntimeConfig::default()
    }
    .decode_threads_per_core();
    config.publish = streamrt::PublishMode::Frames(streamrt::FramePolicy::count(args.frame_budget));
    let rt = Runtime::builder()
        .config(config)
        .source(DirSource::new(dir.path()))
        .register(BlobDecoder)
        .register(MeshDecoder)
        .register(TextureDecoder)
        .build()?;
    let started = Instant::now();
    let (handles, frames) = frame_loop(&rt, args, &generated, &mut rng)?;
    let elapsed = started.elapsed();
    rt.shutdown();
    summarise(&rt, &handles, &generated, frames, elapsed)
}

fn frame_loop(
    rt: &Runtime,
    args: &DemoArgs,
    generated: &Generated,
    rng: &mut fastrand::Rng,
) -> anyhow::Result<(Vec<Box<dyn Tracked>>, u64)> {
    let total = generated.paths.len() + generated.paths.len() / 20;
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} terminal  {msg}")
            .expect("valid template"),
    );
    let mut handles: Vec<Box<dyn Tracked>> = Vec::with_capacity(total);
    let (mut next, mut frames) = (0, 0u64);
    let mut deadline = Instant::now();
    loop {
        let report = rt.begin_frame();
        frames += 1;
        for _ in 0..args.requests_per_frame {
            if handles.len() >= total {
                break;
            }
            // One request in 20 asks again for an asset already requested: a shared load.
            let (kind, path) = if next < generated.paths.len() && rng.usize(..20) != 0 {
                next += 1;
                &generated.paths[next - 1]
            } else {
                &generated.paths[rng.usize(..next.max(1))]
            };
            handles.push(request(rt, *kind, path, Priority::ALL[rng.usize(..Priority::LEVELS)])?);
        }
        steer(&handles, rng);
        let terminal = handles.iter().filter(|h| h.state().is_terminal()).count();
        bar.set_position(terminal as u64);
        bar.set_message(format!("frame {} published {}", report.frame, report.published));
        rt.end_frame();
        if handles.len() >= total && terminal == handles.len() {
            break;
        }
        deadline += FRAME;
        if let Some(wait) = deadline.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if frames > 60 * 120 {
            bail!("the demo did not finish within 120 simulated seconds");
        }
    }
    bar.finish_and_clear();
    Ok((handles, frames))
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
    for _ in 0..2 {
        let h = &handles[rng.usize(..handles.len())];
        if h.state() == LoadState::Pending {
            h.cancel();
        }
    }
}

fn summarise(
    rt: &Runtime,
    handles: &[Box<dyn Tracked>],
    generated: &Generated,
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
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    println!(
        "demo: {} assets ({:.1} MiB, {} corrupt) over {frames} frames in {secs:.2} s",
        generated.paths.len(),
        mib(generated.bytes),
        generated.corrupt,
    );
    println!("requested={} ready={ready} failed={failed} cancelled={cancelled}", handles.len());
    println!(
        "throughput: {:.0} requests/s, {:.1} MiB/s read",
        (ready + failed + cancelled) as f64 / secs,
        mib(status.bytes_read) / secs
    );
    println!(
        "request->ready: p50={:.2} ms p99={:.2} ms (frame-paced: a load waits for its frame)",
        quantile(&latencies, 0.50) as f64 / 1e3,
        quantile(&latencies, 0.99) as f64 / 1e3
    );
    let stuck = handles.len() - ready - failed - cancelled;
    if stuck > 0 {
        bail!("{stuck} requests never reached a terminal state");
    }
    Ok(())
}
