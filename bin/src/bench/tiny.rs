//! `streamctl bench tiny`: 200,000 assets of 64 bytes from memory, request → published.
//!
//! Ours: every asset requested at once from a fresh runtime (immediate publishing), timed to
//! the last `Ready`; the request loop alone gives `request()`'s amortised cost on the caller's
//! thread. Baseline: a pipeline a user would write instead: the caller sends each key down a
//! channel to IO threads, which copy the bytes out of the same source and pass them down a second channel
//! to decode threads, which decode and store the result in its slot: the same thread counts,
//! the same decoder. Interleaved rounds, median reported.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use streamrt::messages::AssetKey;
use streamrt::{Decoder, Handle, MemorySource, Runtime, Source};

use super::cpu::{Medians, Span, Stopwatch};
use super::outcome::{Outcome, Target};
use super::{
    bench_config, check_numbered, interleaved, median, numbered_payload, request_all,
    wait_all_ready, BenchArgs,
};
use crate::formats::{encode_blob, Blob, BlobDecoder};

/// The assets of the scenario.
pub(super) const ASSETS: usize = 200_000;
/// The stored size of each asset, its checksum included.
const ASSET_BYTES: usize = 64;
/// The targets.
const RATE_MIN: f64 = 500_000.0;
const REQUEST_NS_MAX: f64 = 1_000.0;

/// One run of ours: (the span to the last `Ready`, time spent in the request loop).
fn ours(
    source: &MemorySource,
    keys: &[String],
    args: &BenchArgs,
) -> anyhow::Result<(Span, Duration)> {
    let config = bench_config(args, keys.len());
    let rt =
        Runtime::builder().config(config).source(source.clone()).register(BlobDecoder).build()?;
    let watch = Stopwatch::start();
    let handles = request_all(&rt, keys)?;
    let requested = watch.elapsed();
    wait_all_ready(&handles)?;
    let span = watch.stop();
    check_numbered(handles.iter().map(Handle::get))?;
    rt.shutdown();
    Ok((span, requested))
}

/// The channel-and-pool pipeline a user would write: IO threads copy the bytes out of the
/// source, decode threads decode them into their slot and report the slot's index back.
pub(super) struct Pipeline {
    requests: Option<crossbeam_channel::Sender<(usize, String)>>,
    done: crossbeam_channel::Receiver<usize>,
    slots: Arc<Vec<OnceLock<Arc<Blob>>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pipeline {
    /// Starts the IO and decode threads for `total` slots.
    pub(super) fn start(source: &MemorySource, total: usize, args: &BenchArgs) -> Self {
        let slots: Arc<Vec<OnceLock<Arc<Blob>>>> =
            Arc::new((0..total).map(|_| OnceLock::new()).collect());
        let (read_tx, read_rx) = crossbeam_channel::unbounded::<(usize, String)>();
        let (decode_tx, decode_rx) = crossbeam_channel::unbounded::<(usize, AssetKey, Vec<u8>)>();
        let (done_tx, done) = crossbeam_channel::unbounded::<usize>();
        let mut threads = Vec::new();
        for _ in 0..args.workers.max(1) {
            let (rx, tx, source) = (read_rx.clone(), decode_tx.clone(), source.clone());
            threads.push(std::thread::spawn(move || {
                for (i, path) in rx {
                    let key =
                        AssetKey::parse(&format!("blob:{path}")).expect("bench keys are valid");
                    let bytes = source.read(&key).expect("bench assets exist");
                    if tx.send((i, key, bytes)).is_err() {
                        return;
                    }
                }
            }));
        }
        for _ in 0..args.decode_threads.max(1) {
            let (rx, slots, done) = (decode_rx.clone(), Arc::clone(&slots), done_tx.clone());
            threads.push(std::thread::spawn(move || {
                for (i, key, bytes) in rx {
                    let blob = BlobDecoder.decode(&key, bytes).expect("bench blobs are intact");
                    let _ = slots[i].set(Arc::new(blob));
                    let _ = done.send(i);
                }
            }));
        }
        Self { requests: Some(read_tx), done, slots, threads }
    }

    /// Requests `path` into slot `i`.
    pub(super) fn send(&self, i: usize, path: &str) -> anyhow::Result<()> {
        let requests = self.requests.as_ref().expect("requests are open until finish");
        requests.send((i, path.to_owned())).map_err(|_| anyhow::anyhow!("the pipeline stopped"))
    }

    /// Waits until slot `i` is decoded.
    pub(super) fn wait_for(&self, i: usize) -> anyhow::Result<()> {
        while self.done.recv()? != i {}
        Ok(())
    }

    /// Waits until `n` slots are decoded.
    fn wait_count(&self, n: usize) -> anyhow::Result<()> {
        for _ in 0..n {
            self.done.recv()?;
        }
        Ok(())
    }

    /// Closes the requests and joins the threads; the slots' values, in slot order.
    pub(super) fn finish(mut self) -> anyhow::Result<Vec<Option<Arc<Blob>>>> {
        drop(self.requests.take());
        for t in self.threads.drain(..) {
            t.join().map_err(|_| anyhow::anyhow!("a pipeline thread panicked"))?;
        }
        Ok(self.slots.iter().map(|s| s.get().cloned()).collect())
    }
}

/// One run of the pipeline: every key sent, timed to the last decode.
fn baseline(source: &MemorySource, keys: &[String], args: &BenchArgs) -> anyhow::Result<Span> {
    let pipeline = Pipeline::start(source, keys.len(), args);
    let watch = Stopwatch::start();
    for (i, key) in keys.iter().enumerate() {
        pipeline.send(i, key)?;
    }
    pipeline.wait_count(keys.len())?;
    let span = watch.stop();
    check_numbered(pipeline.finish()?.into_iter())?;
    Ok(span)
}

/// Runs the scenario.
pub(super) fn tiny(args: &BenchArgs) -> anyhow::Result<Outcome> {
    let count = args.count.unwrap_or(ASSETS);
    let keys: Vec<String> = (0..count).map(|i| format!("t/{i}")).collect();
    let source = MemorySource::new();
    for (i, k) in keys.iter().enumerate() {
        source.insert(
            AssetKey::parse(&format!("blob:{k}"))?,
            encode_blob(&numbered_payload(i as u64, ASSET_BYTES - 4)),
        );
    }
    // The pipeline's runs carry no request-loop time of their own.
    let run = |system: usize| match system {
        0 => Ok((baseline(&source, &keys, args)?, Duration::ZERO)),
        _ => ours(&source, &keys, args),
    };
    let names = ["channel pipeline", "streamrt"];
    let [base, ours_runs] = interleaved(args, names, run, |r: &(Span, Duration)| r.0.wall)?;
    let requests: Vec<Duration> = ours_runs.iter().map(|r| r.1).collect();
    let base: Vec<Span> = base.into_iter().map(|r| r.0).collect();
    let ours_runs: Vec<Span> = ours_runs.into_iter().map(|r| r.0).collect();
    let rate = |d: Duration| count as f64 / d.as_secs_f64().max(1e-9);
    let (base, ours) = (Medians::of(&base, count), Medians::of(&ours_runs, count));
    let (b, o, r) = (base.wall, ours.wall, median(requests));
    let request_ns = r.as_nanos() as f64 / count.max(1) as f64;
    let threads = format!("{} io + {} decode threads", args.workers, args.decode_threads);
    Ok(Outcome {
        scenario: "tiny",
        lines: vec![
            format!(
                "tiny: {count} assets of {ASSET_BYTES} bytes from memory, request -> published"
            ),
            format!(
                "baseline channel-and-pool pipeline, {threads}: {:.0} requests/s, {} us \
                 CPU/request",
                rate(b),
                base.cpu_text()
            ),
            format!(
                "streamrt, {threads}: {:.0} requests/s, {} us CPU/request, request() \
                 {request_ns:.0} ns amortised",
                rate(o),
                ours.cpu_text()
            ),
        ],
        unit: "requests/s".into(),
        ours: rate(o),
        baseline: rate(b),
        ratio: rate(o) / rate(b),
        target: Some(Target::new(
            format!(">= {RATE_MIN:.0} requests/s and request() <= {REQUEST_NS_MAX:.0} ns"),
            rate(o) >= RATE_MIN && request_ns <= REQUEST_NS_MAX,
        )),
        extra: serde_json::json!({
            "requests": count,
            "request_ns": request_ns,
            "cpu_us_per_request": {
                "ours": ours.cpu_us_per_item, "baseline": base.cpu_us_per_item,
            },
        }),
        charts: vec![],
    })
}
