//! Criterion benches of the runtime's hot paths, each on the caller's thread:
//! `Runtime::request` (amortised over a batch), a frame boundary publishing 64 of 1,000 ready
//! requests, key parsing, and the per-asset checks (blob checksum, pack entry lz4 + checksum).
//!
//! Run with `cargo bench -p streamrt`. Whole-pipeline figures against baselines come from
//! `streamctl bench`; these isolate the parts.

// criterion's macros define undocumented public functions.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use streamrt::messages::AssetKey;
use streamrt::pack::{decode_entry, Codec, IndexEntry};
use streamrt::{
    verify_crc32_trailer, wait_loaded, DecodeError, Decoder, MemorySource, Priority, Runtime,
};

/// Raw bytes as the asset: the cheapest decoder, so the runtime's own costs show.
struct Raw;

impl Decoder for Raw {
    type Asset = Vec<u8>;

    fn type_name(&self) -> &str {
        "raw"
    }

    fn decode(&self, _: &AssetKey, bytes: Vec<u8>) -> Result<Vec<u8>, DecodeError> {
        Ok(bytes)
    }

    fn size_bytes(&self, bytes: &Vec<u8>) -> u64 {
        bytes.len() as u64
    }
}

const PATIENCE: Duration = Duration::from_secs(60);

fn source(count: usize) -> MemorySource {
    let source = MemorySource::new();
    for i in 0..count {
        source.insert(AssetKey::parse(&format!("raw:a/{i}")).unwrap(), vec![1u8; 64]);
    }
    source
}

/// `request()` amortised over batches of 1,000 distinct keys, made before the timing as
/// `bench tiny` makes its; the runtime's work on them happens on its own threads and is
/// waited for outside the timing. Nothing is kept resident, so each batch's requests are
/// fresh loads, not hits on the batch before.
fn request(c: &mut Criterion) {
    const BATCH: usize = 1_000;
    let rt = Runtime::builder()
        .source(source(BATCH))
        .register(Raw)
        .bytes_resident_max(0)
        .build()
        .unwrap();
    let keys: Vec<String> = (0..BATCH).map(|i| format!("a/{i}")).collect();
    c.bench_function("request (amortised over 1,000)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters.div_ceil(BATCH as u64) {
                let mut handles = Vec::with_capacity(BATCH);
                let started = Instant::now();
                handles.extend(
                    keys.iter().map(|key| rt.request::<Vec<u8>>(key, Priority::Normal).unwrap()),
                );
                total += started.elapsed();
                drop(handles);
                assert!(rt.sync(PATIENCE));
            }
            // Whole batches ran: scale to the `iters` requests criterion asked for.
            total.mul_f64(iters as f64 / (iters.div_ceil(BATCH as u64) * BATCH as u64) as f64)
        });
    });
    rt.shutdown();
}

/// `begin_frame` + `end_frame` publishing 64 of 1,000 decoded requests; the ready set is
/// topped up between boundaries, untimed.
fn frame_boundary(c: &mut Criterion) {
    const READY: usize = 1_000;
    const BUDGET: u32 = 64;
    let keys = 200_000;
    let rt = Runtime::builder()
        .source(source(keys))
        .register(Raw)
        .frame_budget(BUDGET)
        .queue_capacity(keys)
        .build()
        .unwrap();
    let mut next = 0;
    let mut top_up = |n: usize| {
        let handles: Vec<_> = (next..next + n)
            .map(|i| rt.request::<Vec<u8>>(&format!("a/{}", i % keys), Priority::Normal).unwrap())
            .collect();
        next += n;
        assert!(wait_loaded(&handles, PATIENCE) && rt.sync(PATIENCE));
        handles
    };
    let mut held = top_up(READY);
    c.bench_function("frame boundary (64 of 1,000 ready)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let report = rt.begin_frame();
                rt.end_frame();
                total += started.elapsed();
                // As `bench frame` checks: every boundary measured had the whole backlog.
                assert_eq!(report.waiting + report.published as usize, READY, "backlog drifted");
                held.retain(|h| !h.is_terminal());
                held.extend(top_up(report.published as usize));
            }
            total
        });
    });
    drop(held);
    rt.shutdown();
}

fn key_parse(c: &mut Criterion) {
    c.bench_function("AssetKey::parse", |b| {
        b.iter(|| AssetKey::parse(black_box("texture:levels/forest/bark_albedo.ktx2")).unwrap());
    });
}

fn checks(c: &mut Criterion) {
    let payload: Vec<u8> = (0..64 << 10).map(|i| (i % 61) as u8).collect();
    let mut blob = payload.clone();
    blob.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    c.bench_function("verify_crc32_trailer (64 KiB)", |b| {
        b.iter_batched(|| blob.clone(), verify_crc32_trailer, BatchSize::SmallInput);
    });
    let stored = lz4_flex::block::compress(&payload);
    let entry = IndexEntry {
        key: "raw:a".into(),
        offset: 0,
        stored_size: stored.len() as u64,
        raw_size: payload.len() as u64,
        codec: Codec::Lz4,
        crc32: crc32fast::hash(&payload),
        deps: vec![],
    };
    c.bench_function("pack decode_entry (lz4 + checksum, 64 KiB)", |b| {
        b.iter_batched(
            || stored.clone(),
            |s| decode_entry(&entry, s, u64::MAX).unwrap(),
            BatchSize::SmallInput,
        );
    });
}

criterion_group! {
    name = hot_paths;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = request, frame_boundary, key_parse, checks
}
criterion_main!(hot_paths);
