//! `streamctl simulate`: the runtime inside a synthetic engine frame loop.
//!
//! Each frame runs ordered phases (frame start, input snapshot, fixed-step simulation,
//! gameplay, scene mutations, transforms, parallel tasks, snapshot, surfaces, frame end). The
//! parallel tasks (animation, particles, culling, LOD, shader builds) and the surfaces (main,
//! shadow, reflection, UI; recorded in parallel, presented in order) run in `FrameTaskGroup`s.
//! Gameplay streams the zones ahead of a moving camera through the real runtime (requests by
//! distance, reprioritisation as the camera nears, cancels of what it left behind) and draws
//! with fallback pipelines until each zone's synthetic shader build finishes. A detached
//! thread consumes telemetry. The publish budget adapts to simulated frame time.
//!
//! # Determinism
//!
//! Frame time is simulated (a cost model of the frame's work on a `ManualClock`), and before
//! each frame boundary the loop waits until every outstanding load has decoded
//! (`wait_loaded` + `sync`), so what a boundary publishes depends only on the seed. The
//! `order_hash` covers phases, task results, publishes, cancels and presents; two runs with
//! the same seed print the same hash whatever the thread timing. Wall-clock times are printed
//! and traced but never hashed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use streamrt::messages::{AssetKey, AssetTypeName};
use streamrt::{
    wait_loaded, AdaptivePolicy, FramePolicy, FrameReport, Handle, LoadState, ManualClock,
    MemorySource, Priority, Runtime,
};

use crate::formats::{self, Mesh, MeshDecoder, Texture, TextureDecoder};
use crate::shown::json_line;

mod trace;
mod world;

use trace::{micros, span_since, OrderHash, Span, Trace};

use crate::trace_file::TraceFile;
use world::{FrameWork, World, WorldConfig};

/// The most zones a simulation streams: their assets are made in memory before it starts,
/// about 0.9 MB a zone.
const ZONES_MAX: u64 = 500;

/// The most frames a traced simulation runs: the trace keeps every span (about 20 a frame)
/// in memory until the run ends, and writes them as one JSON document.
const TRACE_FRAMES_MAX: u64 = 10_000;

/// Options of `streamctl simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Frames to run.
    #[arg(long, default_value_t = 120, value_parser = crate::args::count::<u64>(crate::args::FRAMES_MAX))]
    frames: u64,
    /// Seed of the world, the assets and every choice the loop makes.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Write a Chrome trace of phases and task spans to this file (at most 10,000 frames).
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Zones of streamed assets along the camera's path.
    #[arg(long, default_value_t = 24, value_parser = crate::args::count::<u32>(ZONES_MAX))]
    zones: u32,
    /// Entities simulated.
    #[arg(long, default_value_t = 800, value_parser = crate::args::count::<usize>(1_000_000))]
    entities: usize,
    /// Print only the closing line.
    #[arg(long)]
    quiet: bool,
    /// Print each frame as a JSON line `{"frame": {..}}` and the closing figures as
    /// `{"simulate": {..}}`.
    #[arg(long)]
    json: bool,
}

/// Frame time the adaptive budget aims for: 60 Hz.
const TARGET_FRAME_US: u64 = 16_667;
/// How long the loop waits for outstanding loads before calling the run broken.
const LOAD_PATIENCE: Duration = Duration::from_secs(30);
const TASKS: [&str; 4] = ["animation", "particles", "culling", "lod"];
const SURFACES: [&str; 4] = ["main", "shadow", "reflection", "ui"];

/// Runs the simulation and prints its lines.
///
/// # Errors
///
/// As [`simulate`], or a line cannot be written.
pub fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    let (quiet, json) = (args.quiet, args.json);
    let mut printed = Ok(());
    let summary = simulate(args, &mut |line| {
        if !quiet && printed.is_ok() {
            printed = print(json, "frame", line);
        }
    })?;
    printed?;
    print(json, "simulate", &summary)
}

/// Prints `value` as its text line, or as the JSON line `{"{name}": value}`.
fn print<T: std::fmt::Display + serde::Serialize>(
    json: bool,
    name: &str,
    value: &T,
) -> anyhow::Result<()> {
    if json {
        println!("{}", json_line(&serde_json::json!({ name: value }))?);
    } else {
        println!("{value}");
    }
    Ok(())
}

/// One frame's line.
#[derive(Debug, serde::Serialize)]
pub struct FrameLine {
    frame: u64,
    /// The frame's simulated time.
    sim_us: u64,
    /// The wall-clock time the loop took for the frame.
    wall_us: u64,
    published: u32,
    budget: u32,
    waiting: usize,
    fallbacks: u32,
}

impl std::fmt::Display for FrameLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "frame {:>4}: sim={:>5.1} ms wall={:>5.1} ms published={:>3} budget={:>3} \
             waiting={:>4} fallbacks={:>4}",
            self.frame,
            self.sim_us as f64 / 1e3,
            self.wall_us as f64 / 1e3,
            self.published,
            self.budget,
            self.waiting,
            self.fallbacks
        )
    }
}

/// What a run ends with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    frames: u64,
    /// Loads requested over the run, and those of them not yet ended when it stopped (decoded
    /// in the last frames and not yet published, say).
    requested: u64,
    outstanding: u64,
    published: u64,
    failed: u64,
    cancelled: u64,
    pipelines: usize,
    fallback_draws: u64,
    budget_min: u32,
    budget_max: u32,
    telemetry_events: u64,
    /// Events the telemetry thread's feed lost (it held its capacity), and the runtime's own
    /// buffer: `telemetry_events` is what was seen, short by these.
    telemetry_dropped: u64,
    /// Written in hex, as the text line has it: JSON readers keep 53 bits of a number.
    #[serde(serialize_with = "hex")]
    order_hash: u64,
}

fn hex<S: serde::Serializer>(value: &u64, to: S) -> Result<S::Ok, S::Error> {
    to.collect_str(&format_args!("{value:016x}"))
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "simulate: frames={} requested={} published={} failed={} cancelled={} outstanding={} \
             pipelines={} fallback_draws={} budget_min={} budget_max={} telemetry_events={} \
             telemetry_dropped={} order_hash={:016x}",
            self.frames,
            self.requested,
            self.published,
            self.failed,
            self.cancelled,
            self.outstanding,
            self.pipelines,
            self.fallback_draws,
            self.budget_min,
            self.budget_max,
            self.telemetry_events,
            self.telemetry_dropped,
            self.order_hash
        )
    }
}

/// A streamed asset of either type.
enum LoadHandle {
    Mesh(Handle<Mesh>),
    Texture(Handle<Texture>),
}

impl LoadHandle {
    fn state(&self) -> LoadState {
        match self {
            Self::Mesh(h) => h.state(),
            Self::Texture(h) => h.state(),
        }
    }
}

struct Load {
    path: String,
    handle: LoadHandle,
    priority: Priority,
    reported: bool,
}

/// The streaming side of gameplay: each zone's loads, in request order.
struct Streaming {
    zones: Vec<Option<Vec<Load>>>,
    published: u64,
    failed: u64,
    cancelled: u64,
}

/// The order hash and the trace, fed as the frame runs.
struct Recorder {
    hash: OrderHash,
    trace: Trace,
}

impl Recorder {
    /// Runs one phase on the engine thread: hashed by name, traced with its wall time. The
    /// phase may mix its own tokens into the hash.
    fn phase<R>(&mut self, name: &'static str, f: impl FnOnce(&mut OrderHash) -> R) -> R {
        self.hash.token(name.as_bytes());
        let start = self.trace.now_us();
        let out = f(&mut self.hash);
        self.trace.push(span_since(name, "phase", self.trace.zero(), start));
        out
    }
}

/// The simulation's runtime over `source`: two IO and two decode threads, an adaptive publish
/// budget aiming at the frame's target, time from the simulated `clock`.
fn runtime(source: MemorySource, clock: &Arc<ManualClock>) -> anyhow::Result<Runtime> {
    let adaptive = AdaptivePolicy {
        budget_min: 4,
        window_frames: 4,
        ..AdaptivePolicy::target(TARGET_FRAME_US, 128)
    };
    Runtime::builder()
        .source(source)
        .register(MeshDecoder)
        .register(TextureDecoder)
        .workers(2)
        .decode_threads(2)
        .frame_policy(FramePolicy::adaptive(64, adaptive))
        .clock(Arc::clone(clock))
        .build()
        .context("cannot start the runtime")
}

/// Runs the simulation, handing each per-frame line to `on_frame`.
///
/// # Errors
///
/// A trace asked for past [`TRACE_FRAMES_MAX`] frames or whose file cannot be created (both
/// refused before the first frame), the runtime cannot start, a load does not decode within
/// `LOAD_PATIENCE`, or the trace cannot be written.
pub fn simulate(
    args: &SimulateArgs,
    on_frame: &mut dyn FnMut(&FrameLine),
) -> anyhow::Result<Summary> {
    anyhow::ensure!(
        args.trace.is_none() || args.frames <= TRACE_FRAMES_MAX,
        "--trace keeps every span in memory: at most {TRACE_FRAMES_MAX} frames, not {}",
        args.frames
    );
    let trace_file = args.trace.as_deref().map(TraceFile::create).transpose()?;
    let config = world_config(args);
    let clock = Arc::new(ManualClock::new());
    let rt = runtime(generate(&config, args.seed)?, &clock)?;
    let telemetry = detached_telemetry(&rt)?;
    let mut world = World::new(config, args.seed);
    let mut streaming = Streaming {
        zones: (0..config.zones).map(|_| None).collect(),
        published: 0,
        failed: 0,
        cancelled: 0,
    };
    let trace = Trace::new(trace_file.is_some());
    let mut rec = Recorder { hash: OrderHash::default(), trace };
    let (mut last_frame_us, mut fallback_draws) = (0, 0u64);
    let mut budget_range = (u32::MAX, 0);
    for frame in 1..=args.frames {
        let wall = Instant::now();
        rec.hash.number("frame", frame);
        let report = rec.phase("frame_start", |_| rt.begin_frame());
        budget_range = (budget_range.0.min(report.budget), budget_range.1.max(report.budget));
        let work = run_frame(&rt, &mut world, &mut streaming, &mut rec, last_frame_us, &report)?;
        fallback_draws += u64::from(work.fallback_draws);
        rec.phase("frame_end", |_| rt.end_frame());
        settle(&rt, &streaming)?;
        last_frame_us = world::frame_cost_us(&work);
        clock.advance(last_frame_us);
        on_frame(&FrameLine {
            frame,
            sim_us: last_frame_us,
            wall_us: micros(wall),
            published: report.published,
            budget: report.budget,
            waiting: report.waiting,
            fallbacks: work.fallback_draws,
        });
    }
    // The loads that ended in the last frame (cancelled with their zone, refused) are counted
    // as ended, not outstanding; the order hash covers the frames only.
    streaming.poll(&mut OrderHash::default());
    rt.shutdown();
    let (telemetry_events, feed_dropped) = telemetry.join().unwrap_or((0, 0));
    let telemetry_dropped = feed_dropped + rt.status().events_dropped;
    if let Some(file) = trace_file {
        rec.trace.write(file)?;
    }
    Ok(Summary {
        frames: args.frames,
        requested: streaming.loads().count() as u64,
        outstanding: streaming.loads().filter(|l| !l.reported).count() as u64,
        published: streaming.published,
        failed: streaming.failed,
        cancelled: streaming.cancelled,
        pipelines: world.ready_pipelines.len(),
        fallback_draws,
        budget_min: budget_range.0.min(budget_range.1),
        budget_max: budget_range.1,
        telemetry_events,
        telemetry_dropped,
        order_hash: rec.hash.value(),
    })
}

/// The world `args` ask for: their zones and entities, 64 meshes and 24 textures a zone.
fn world_config(args: &SimulateArgs) -> WorldConfig {
    WorldConfig {
        zones: args.zones,
        meshes_per_zone: 64,
        textures_per_zone: 24,
        entities: args.entities,
    }
}

/// One frame after its start: the phases up to (not including) the frame's end.
fn run_frame(
    rt: &Runtime,
    world: &mut World,
    streaming: &mut Streaming,
    rec: &mut Recorder,
    last_frame_us: u64,
    report: &FrameReport,
) -> anyhow::Result<FrameWork> {
    let speed = rec.phase("input_snapshot", |_| world.input());
    rec.hash.number("speed", u64::from(speed));
    let steps = rec.phase("fixed_step_simulation", |_| world.fixed_steps(last_frame_us));
    rec.hash.number("steps", u64::from(steps));
    rec.phase("gameplay", |hash| gameplay(rt, world, streaming, hash))?;
    let mutated = rec.phase("scene_mutations", |_| world.mutate());
    rec.hash.number("mutated", u64::from(mutated));
    let transforms = rec.phase("transforms", |_| world.transforms());
    rec.hash.number("transforms", transforms);
    let build_units = frame_tasks(rt, world, rec);
    let positions = rec.phase("snapshot", |_| world.snapshot());
    let fallback_draws = surfaces(rt, world, rec, &positions);
    Ok(FrameWork {
        entities: positions.len(),
        published: report.published,
        fallback_draws,
        build_units,
        spike: world.spike(),
    })
}

/// Gameplay: sees what this frame published, then streams around the camera.
fn gameplay(
    rt: &Runtime,
    world: &mut World,
    streaming: &mut Streaming,
    hash: &mut OrderHash,
) -> anyhow::Result<()> {
    streaming.poll(hash);
    let here = world.zone();
    let wanted = [Priority::Critical, Priority::High, Priority::Normal, Priority::Low];
    for (distance, priority) in wanted.into_iter().enumerate() {
        let zone = here + distance as u32;
        if zone >= world.config.zones {
            break;
        }
        if streaming.zones[zone as usize].is_none() {
            streaming.zones[zone as usize] = Some(request_zone(rt, &world.config, zone, priority)?);
            world.start_build(zone);
            hash.number("requested_zone", u64::from(zone));
        } else {
            streaming.raise(zone, priority, hash);
        }
    }
    for behind in 0..here.saturating_sub(1) {
        streaming.cancel_zone(behind, hash);
    }
    Ok(())
}

impl Streaming {
    /// Every load requested so far.
    fn loads(&self) -> impl Iterator<Item = &Load> {
        self.zones.iter().flatten().flatten()
    }

    /// Notes every load that reached a terminal state since the last poll, in request order.
    fn poll(&mut self, hash: &mut OrderHash) {
        for load in self.zones.iter_mut().flatten().flatten().filter(|l| !l.reported) {
            let state = load.handle.state();
            let counter = match state {
                LoadState::Ready => &mut self.published,
                LoadState::Failed => &mut self.failed,
                LoadState::Cancelled => &mut self.cancelled,
                _ => continue,
            };
            *counter += 1;
            load.reported = true;
            hash.token(state.name().as_bytes());
            hash.token(load.path.as_bytes());
        }
    }

    /// Raises a zone's waiting loads to `priority` as the camera nears.
    fn raise(&mut self, zone: u32, priority: Priority, hash: &mut OrderHash) {
        let Some(Some(loads)) = self.zones.get_mut(zone as usize) else { return };
        for load in loads.iter_mut().filter(|l| l.priority > priority && !l.reported) {
            load.priority = priority;
            match &load.handle {
                LoadHandle::Mesh(h) => h.reprioritize(priority),
                LoadHandle::Texture(h) => h.reprioritize(priority),
            }
            hash.token(b"reprioritized");
            hash.token(load.path.as_bytes());
        }
    }

    /// Cancels what the camera left behind (a fast travel skips zones) and is not yet published.
    fn cancel_zone(&mut self, zone: u32, hash: &mut OrderHash) {
        let Some(Some(loads)) = self.zones.get_mut(zone as usize) else { return };
        for load in loads.iter().filter(|l| !l.reported && !l.handle.state().is_terminal()) {
            match &load.handle {
                LoadHandle::Mesh(h) => h.cancel(),
                LoadHandle::Texture(h) => h.cancel(),
            };
            hash.token(b"cancel");
            hash.token(load.path.as_bytes());
        }
    }
}

fn request_zone(
    rt: &Runtime,
    config: &WorldConfig,
    zone: u32,
    priority: Priority,
) -> anyhow::Result<Vec<Load>> {
    let mut loads = Vec::new();
    for i in 0..config.meshes_per_zone {
        let path = format!("zone{zone}/m{i}");
        let handle = LoadHandle::Mesh(rt.request::<Mesh>(&path, priority)?);
        loads.push(Load { path, handle, priority, reported: false });
    }
    for i in 0..config.textures_per_zone {
        let path = format!("zone{zone}/t{i}");
        let handle = LoadHandle::Texture(rt.request::<Texture>(&path, priority)?);
        loads.push(Load { path, handle, priority, reported: false });
    }
    Ok(loads)
}

/// Waits until every outstanding load has decoded and the frame coordinator holds it, so the
/// next boundary publishes from a set that depends only on the seed.
fn settle(rt: &Runtime, streaming: &Streaming) -> anyhow::Result<()> {
    let (mut meshes, mut textures) = (Vec::new(), Vec::new());
    for load in streaming.loads() {
        match &load.handle {
            LoadHandle::Mesh(h) if !h.is_terminal() => meshes.push(h.clone()),
            LoadHandle::Texture(h) if !h.is_terminal() => textures.push(h.clone()),
            _ => {}
        }
    }
    let loaded = (meshes.is_empty() || wait_loaded(&meshes, LOAD_PATIENCE))
        && (textures.is_empty() || wait_loaded(&textures, LOAD_PATIENCE));
    if !loaded || !rt.sync(LOAD_PATIENCE) {
        bail!("outstanding loads did not decode within {LOAD_PATIENCE:?}");
    }
    Ok(())
}

/// The frame's parallel tasks and shader builds, joined at a barrier. Returns the compile
/// units spent.
fn frame_tasks(rt: &Runtime, world: &mut World, rec: &mut Recorder) -> u32 {
    let positions = world.snapshot();
    let camera_x = world.camera_x;
    let builds = world.builds_this_frame();
    let group = rt.frame_tasks::<(u64, Span)>();
    let zero = rec.trace.zero();
    for name in TASKS {
        let positions = Arc::clone(&positions);
        group.spawn(name, move |_| {
            let start = micros(zero);
            let sum = world::task(name, &positions, camera_x);
            (sum, span_since(name, "task", zero, start))
        });
    }
    for &(zone, units) in &builds {
        group.spawn("shader_build", move |_| {
            let start = micros(zero);
            let sum = world::compile(zone, units);
            (sum, span_since("shader_build", "task", zero, start))
        });
    }
    let results = rec.phase("tasks_barrier", |_| group.wait());
    let names = TASKS.iter().copied().chain(builds.iter().map(|_| "shader_build"));
    for (name, result) in names.zip(results) {
        rec.hash.token(name.as_bytes());
        match result {
            Ok((sum, span)) => {
                rec.hash.number("result", sum);
                rec.trace.push(span);
            }
            Err(e) => rec.hash.token(e.to_string().as_bytes()),
        }
    }
    for zone in world.finish_builds(&builds) {
        rec.hash.number("pipeline_ready", u64::from(zone));
    }
    builds.iter().map(|b| b.1).sum()
}

/// Records the surfaces in parallel and presents them in order. Returns the fallback draws.
fn surfaces(
    rt: &Runtime,
    world: &World,
    rec: &mut Recorder,
    positions: &Arc<Vec<[f32; 3]>>,
) -> u32 {
    let group = rt.frame_tasks::<((Vec<u32>, u32), Span)>();
    let zero = rec.trace.zero();
    let ready = Arc::new(world.ready_pipelines.clone());
    for surface in SURFACES {
        let (positions, ready, camera_x) =
            (Arc::clone(positions), Arc::clone(&ready), world.camera_x);
        group.spawn(surface, move |_| {
            let start = micros(zero);
            let recorded = world::record_surface(surface, &positions, camera_x, &ready);
            (recorded, span_since(surface, "surface", zero, start))
        });
    }
    let results = rec.phase("record_surfaces", |_| group.wait());
    let mut fallbacks = 0;
    rec.phase("present", |_| ());
    for (surface, result) in SURFACES.iter().zip(results) {
        rec.hash.token(surface.as_bytes());
        match result {
            Ok(((draws, fallback), span)) => {
                rec.hash.number("draws", draws.len() as u64);
                rec.hash.number("first_draw", u64::from(draws.first().copied().unwrap_or(0)));
                fallbacks += fallback;
                rec.trace.push(span);
            }
            Err(e) => rec.hash.token(e.to_string().as_bytes()),
        }
    }
    fallbacks
}

/// A thread that consumes the runtime's telemetry while the frame loop runs; it ends when the
/// runtime shuts down and returns the events it saw and those its feed dropped.
fn detached_telemetry(rt: &Runtime) -> anyhow::Result<std::thread::JoinHandle<(u64, u64)>> {
    let stream = rt.subscribe(1 << 16);
    let thread =
        std::thread::Builder::new().name("simulate-telemetry".into()).spawn(move || {
            let mut seen = 0;
            while stream.next_timeout(Duration::from_secs(3600)).is_some() {
                seen += 1;
            }
            (seen, stream.dropped())
        })?;
    Ok(thread)
}

/// Every zone's meshes and textures, in memory; one texture in 23 has a mip chain that does
/// not fit its size, so its load fails to decode (malformed).
fn generate(config: &WorldConfig, seed: u64) -> anyhow::Result<MemorySource> {
    let source = MemorySource::new();
    let (mesh, texture) = (AssetTypeName::new("mesh")?, AssetTypeName::new("texture")?);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut texture_count = 0;
    for zone in 0..config.zones {
        for i in 0..config.meshes_per_zone {
            let n = rng.u32(30..300);
            let vertices = (0..n).map(|_| [rng.f32(), rng.f32(), rng.f32()]).collect();
            let indices = (0..3 * (n - 2)).map(|_| rng.u32(0..n)).collect();
            let bytes = formats::encode_mesh(&Mesh { vertices, indices });
            source.insert(AssetKey::new(mesh.clone(), &format!("zone{zone}/m{i}"))?, bytes);
        }
        for i in 0..config.textures_per_zone {
            let side = 16 << rng.u16(0..4);
            let mut bytes = formats::encode_texture(side, side, 3, &mut rng);
            texture_count += 1;
            if texture_count % 23 == 0 {
                bytes.pop();
            }
            source.insert(AssetKey::new(texture.clone(), &format!("zone{zone}/t{i}"))?, bytes);
        }
    }
    Ok(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(seed: u64) -> SimulateArgs {
        SimulateArgs {
            frames: 40,
            seed,
            trace: None,
            zones: 8,
            entities: 200,
            quiet: true,
            json: false,
        }
    }

    #[test]
    fn two_runs_with_the_same_seed_print_the_same_order_hash() {
        let first = simulate(&args(7), &mut |_| {}).unwrap();
        let second = simulate(&args(7), &mut |_| {}).unwrap();
        assert_eq!(first.order_hash, second.order_hash);
        assert_eq!(first.published, second.published);
        assert!(first.published > 0, "assets were streamed: {first:?}");
        assert!(first.pipelines > 0, "shader builds finished: {first:?}");
    }

    #[test]
    fn a_different_seed_gives_a_different_order_hash() {
        let a = simulate(&args(7), &mut |_| {}).unwrap();
        let b = simulate(&args(8), &mut |_| {}).unwrap();
        assert_ne!(a.order_hash, b.order_hash);
    }
}
