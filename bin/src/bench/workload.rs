//! The assets the IO-bound scenarios stream: generated (checksummed blobs, lz4) into a pack or
//! a directory, or the entries of a pack the user gives (`--pack`).
//!
//! Every system in a scenario reads the same bytes and does the same work per asset: the pack's
//! own read (positioned read, lz4, checksum) or the directory file's read and lz4, then the
//! asset type's decoder. [`decode_any`] is that work for the baselines.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use streamrt::messages::AssetKey;
use streamrt::pack::{Codec, PackLimits, PackReader, PackWriter};
use streamrt::{
    DecodeError, Decoder, DirSource, PackSource, Priority, Runtime, RuntimeBuilder, Source,
};

use crate::formats::{
    encode_blob, AnimationDecoder, Blob, BlobDecoder, MaterialDecoder, MeshDecoder, TextureDecoder,
};
use crate::tracked::{is_known_type, register_all, request_any, Tracked};

use super::cpu::{Span, Stopwatch};

/// Where a workload's bytes live.
#[derive(Clone)]
pub(super) enum Store {
    /// A pack, read through its reader (positioned reads, lz4, checksum).
    Pack { path: PathBuf, reader: Arc<PackReader> },
    /// A directory of lz4-compressed blobs (`lz4_flex`'s size-prepended blocks).
    Dir(PathBuf),
}

/// The keys to stream and where their bytes are.
#[derive(Clone)]
pub(super) struct Workload {
    pub(super) keys: Vec<AssetKey>,
    /// Stored bytes of every key together (compressed).
    pub(super) stored_bytes: u64,
    pub(super) store: Store,
}

/// The sizes of generated assets: uniform in `1..=kib_max` KiB, and every `huge_every`th
/// asset (if any) at `huge_bytes`.
pub(super) struct Sizes {
    pub(super) kib_max: usize,
    pub(super) huge_every: Option<usize>,
    pub(super) huge_bytes: usize,
}

impl Sizes {
    /// The throughput scenario's: 1–256 KiB, and 1 in 400 at 4 MiB.
    pub(super) const THROUGHPUT: Sizes =
        Sizes { kib_max: 256, huge_every: Some(400), huge_bytes: 4 << 20 };
    /// Small assets, 1–64 KiB, for scenarios about scheduling rather than bandwidth.
    pub(super) const SMALL: Sizes = Sizes { kib_max: 64, huge_every: None, huge_bytes: 0 };

    pub(super) fn describe(&self) -> String {
        match self.huge_every {
            Some(n) => {
                format!("1-{} KiB (1 in {n} at {} MiB)", self.kib_max, self.huge_bytes >> 20)
            }
            None => format!("1-{} KiB", self.kib_max),
        }
    }

    fn of(&self, i: usize, rng: &mut fastrand::Rng) -> usize {
        match self.huge_every {
            Some(n) if i % n == n - 1 => self.huge_bytes,
            _ => rng.usize(1_024..=self.kib_max << 10),
        }
    }
}

/// The payload of asset `i`: windows of a pool that lz4 stores in about three fifths of
/// its size, as it does many game assets (see [`compressible_pool`]).
struct Payloads<'s> {
    sizes: &'s Sizes,
    pool: Vec<u8>,
    rng: fastrand::Rng,
}

impl<'s> Payloads<'s> {
    fn new(sizes: &'s Sizes, seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let largest = sizes.huge_bytes.max(sizes.kib_max << 10);
        let pool = compressible_pool(largest + (64 << 10), &mut rng);
        Self { sizes, pool, rng }
    }

    /// A blob (payload and checksum) of asset `i`'s size.
    fn blob(&mut self, i: usize) -> Vec<u8> {
        let len = self.sizes.of(i, &mut self.rng) - 4;
        let start = self.rng.usize(..self.pool.len() - len);
        encode_blob(&self.pool[start..start + len])
    }
}

/// `len` bytes in runs of 8–64, each at random either random bytes or a copy of bytes up to
/// 4 KiB back: lz4 stores a window of them in about 59 % of its size (`throughput`'s 2.64
/// GiB in 1.55), less well under a few KiB. Random values alone, as the pool was until the
/// twenty-second session, do not compress: the pack writer kept every entry as is, and
/// `throughput` measured no decompression from the pack.
fn compressible_pool(len: usize, rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut pool = Vec::with_capacity(len);
    while pool.len() < len {
        let run = rng.usize(8..=64).min(len - pool.len());
        let back = rng.usize(run..=4 << 10);
        if rng.bool() && back <= pool.len() {
            let from = pool.len() - back;
            pool.extend_from_within(from..from + run);
        } else {
            pool.extend((0..run).map(|_| rng.u8(..)));
        }
    }
    pool
}

/// Writes `count` blobs of `sizes` into an lz4 pack.
pub(super) fn generate_pack(
    path: &Path,
    sizes: &Sizes,
    count: usize,
    seed: u64,
) -> anyhow::Result<Workload> {
    let mut payloads = Payloads::new(sizes, seed);
    let mut writer = PackWriter::create(path)?;
    let mut keys = Vec::with_capacity(count);
    for i in 0..count {
        let key = format!("blob:p/{i:07}.bin");
        writer.add(&key, &payloads.blob(i), Codec::Lz4, vec![])?;
        keys.push(AssetKey::parse(&key)?);
    }
    writer.finish()?;
    open_pack(path, Some(keys))
}

/// Writes the same blobs as [`generate_pack`] as lz4 files under `root`.
pub(super) fn generate_dir(
    root: &Path,
    sizes: &Sizes,
    count: usize,
    seed: u64,
) -> anyhow::Result<Workload> {
    let mut payloads = Payloads::new(sizes, seed);
    let (mut keys, mut stored_bytes) = (Vec::with_capacity(count), 0);
    for i in 0..count {
        let dir = format!("d{:02}", i % 64);
        std::fs::create_dir_all(root.join(&dir))?;
        let path = format!("{dir}/{i:07}.bin");
        let bytes = lz4_flex::compress_prepend_size(&payloads.blob(i));
        std::fs::write(root.join(&path), &bytes)?;
        stored_bytes += bytes.len() as u64;
        keys.push(AssetKey::parse(&format!("blob:{path}"))?);
    }
    // On disk before anything is measured, as the pack is (its writer syncs it): the kernel's
    // write-back of a gigabyte and more would otherwise land in the rounds, some systems' more
    // than others'.
    rustix::fs::syncfs(std::fs::File::open(root)?)?;
    Ok(Workload { keys, stored_bytes, store: Store::Dir(root.to_owned()) })
}

/// A pack's entries of the types `streamctl` decodes (all of them when `keys` is `None`).
///
/// # Errors
///
/// The pack cannot be opened, or has no entry of a known type.
pub(super) fn open_pack(path: &Path, keys: Option<Vec<AssetKey>>) -> anyhow::Result<Workload> {
    let reader = PackReader::open(path, PackLimits::default())
        .with_context(|| format!("opening {}", path.display()))?;
    let keys = match keys {
        Some(keys) => keys,
        None => reader
            .entries()
            .iter()
            .filter_map(|e| AssetKey::parse(&e.key).ok())
            .filter(|k| is_known_type(k.asset_type()))
            .collect(),
    };
    anyhow::ensure!(
        !keys.is_empty(),
        "{} has no entry of a type streamctl decodes",
        path.display()
    );
    let stored_bytes =
        keys.iter().filter_map(|k| reader.entry(&k.to_string())).map(|e| e.stored_size).sum();
    let store = Store::Pack { path: path.to_owned(), reader: Arc::new(reader) };
    Ok(Workload { keys, stored_bytes, store })
}

impl Workload {
    /// What the workload is, for the scenario's first line.
    pub(super) fn describe(&self) -> String {
        let (what, at) = match &self.store {
            Store::Pack { path, .. } => ("pack", path),
            Store::Dir(root) => ("directory", root),
        };
        format!(
            "{} assets, {:.2} GiB stored, from a {what} ({})",
            self.keys.len(),
            self.stored_bytes as f64 / f64::from(1 << 30),
            at.display()
        )
    }

    /// A builder with this workload's source and decoders.
    ///
    /// # Errors
    ///
    /// The pack cannot be opened again.
    pub(super) fn builder(&self) -> anyhow::Result<RuntimeBuilder> {
        self.builder_over(|s| s)
    }

    /// As [`Workload::builder`], with the source wrapped by `wrap` (a slow-storage delay).
    pub(super) fn builder_over<S: Source>(
        &self,
        wrap: impl FnOnce(Box<dyn Source>) -> S,
    ) -> anyhow::Result<RuntimeBuilder> {
        Ok(match &self.store {
            Store::Pack { path, .. } => {
                let source = PackSource::open(path, PackLimits::default())?;
                register_all(Runtime::builder().source(wrap(Box::new(source))))
            }
            Store::Dir(root) => Runtime::builder()
                .source(wrap(Box::new(DirSource::new(root))))
                .register(Lz4BlobDecoder),
        })
    }

    /// Requests every key at `Normal`.
    ///
    /// # Errors
    ///
    /// A refused request.
    pub(super) fn request_all(&self, rt: &Runtime) -> anyhow::Result<Vec<Box<dyn Tracked>>> {
        let request = |k: &AssetKey| request_any(rt, k.clone(), Priority::Normal);
        Ok(self.keys.iter().map(request).collect::<Result<Vec<_>, _>>()?)
    }

    /// Streams every key through `rt`, timed from the first request to the last `Ready`
    /// (each handle dropped once ready), then shuts `rt` down.
    ///
    /// # Errors
    ///
    /// A refused, failed or unfinished request.
    pub(super) fn stream(&self, rt: &Runtime) -> anyhow::Result<Span> {
        let watch = Stopwatch::start();
        for h in self.request_all(rt)? {
            anyhow::ensure!(h.wait(Duration::from_secs(600)), "{} did not finish", h.key());
            if let Some(e) = h.error_text() {
                anyhow::bail!("{}: {e}", h.key());
            }
        }
        let span = watch.stop();
        rt.shutdown();
        Ok(span)
    }

    /// The baselines' pool: `threads` threads, each taking the next asset, waiting `delay`
    /// (a slow store's latency; none when zero), then loading it; the time (and CPU) for all.
    ///
    /// # Errors
    ///
    /// An asset that does not load.
    pub(super) fn load_in_parallel(&self, threads: usize, delay: Duration) -> anyhow::Result<Span> {
        let next = AtomicUsize::new(0);
        let threads = threads.max(1);
        let started = std::sync::Barrier::new(threads + 1);
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| -> anyhow::Result<()> {
                        started.wait();
                        while let Some(key) = self.keys.get(next.fetch_add(1, Ordering::Relaxed)) {
                            if !delay.is_zero() {
                                std::thread::sleep(delay);
                            }
                            self.load(key)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            // Timed from the threads' start, not their spawning: streamrt's threads, and the
            // naive baseline's runtime, are made before their timers start too.
            started.wait();
            let watch = Stopwatch::start();
            workers.into_iter().try_for_each(|w| w.join().expect("a pool thread panicked"))?;
            Ok(watch.stop())
        })
    }

    /// The baselines' work for `key`: read, decompress, verify, decode; the decoded size.
    ///
    /// # Errors
    ///
    /// The read failed or the bytes do not decode.
    pub(super) fn load(&self, key: &AssetKey) -> anyhow::Result<u64> {
        self.decode(key, self.read(key)?)
    }

    /// The decode half of [`Workload::load`], for bytes [`Workload::read`] returned.
    ///
    /// # Errors
    ///
    /// The bytes do not decode.
    pub(super) fn decode(&self, key: &AssetKey, bytes: Vec<u8>) -> anyhow::Result<u64> {
        match self.store {
            Store::Pack { .. } => decode_any(key, bytes),
            Store::Dir(_) => Ok(Lz4BlobDecoder.decode(key, bytes)?.0.len() as u64),
        }
    }

    /// The stored bytes of `key`, decompressed when the store does that on read (a pack).
    ///
    /// # Errors
    ///
    /// The read failed.
    pub(super) fn read(&self, key: &AssetKey) -> anyhow::Result<Vec<u8>> {
        match &self.store {
            Store::Pack { reader, .. } => {
                let entry =
                    reader.entry(&key.to_string()).with_context(|| format!("{key} not in pack"))?;
                Ok(reader.read(entry)?)
            }
            Store::Dir(root) => Ok(std::fs::read(root.join(key.path()))?),
        }
    }
}

/// Decodes `bytes` with the decoder of `key`'s type; the decoded size.
///
/// # Errors
///
/// An unknown type, or bytes that do not decode.
pub(super) fn decode_any(key: &AssetKey, bytes: Vec<u8>) -> anyhow::Result<u64> {
    fn size<D: Decoder>(d: &D, key: &AssetKey, bytes: Vec<u8>) -> anyhow::Result<u64> {
        let asset = d.decode(key, bytes)?;
        Ok(d.size_bytes(&asset))
    }
    match key.asset_type().as_str() {
        "blob" => size(&BlobDecoder, key, bytes),
        "mesh" => size(&MeshDecoder, key, bytes),
        "texture" => size(&TextureDecoder, key, bytes),
        "animation" => size(&AnimationDecoder, key, bytes),
        "material" => size(&MaterialDecoder, key, bytes),
        other => anyhow::bail!("streamctl has no decoder for {other}"),
    }
}

/// Decodes the directory workload's files: lz4 (size prepended), then a checksummed blob.
pub(super) struct Lz4BlobDecoder;

impl Decoder for Lz4BlobDecoder {
    type Asset = Blob;

    fn type_name(&self) -> &str {
        "blob"
    }

    fn decode(&self, key: &AssetKey, bytes: Vec<u8>) -> Result<Blob, DecodeError> {
        let raw = lz4_flex::decompress_size_prepended(&bytes)
            .map_err(|e| DecodeError::Malformed(format!("lz4: {e}")))?;
        BlobDecoder.decode(key, raw)
    }

    fn size_bytes(&self, blob: &Blob) -> u64 {
        blob.0.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_blobs_are_stored_compressed_in_the_pack() {
        let dir = tempfile::tempdir().unwrap();
        let pack = generate_pack(&dir.path().join("t.pack"), &Sizes::SMALL, 40, 7).unwrap();
        let Store::Pack { reader, .. } = &pack.store else { panic!("a pack workload") };
        // A window of a few KiB holds few of its copies' sources (up to 4 KiB back), so only
        // the larger entries are sure to shrink.
        for entry in reader.entries().iter().filter(|e| e.raw_size >= 4 << 10) {
            assert_eq!(entry.codec, Codec::Lz4, "{} stored as is", entry.key);
        }
        let sum = |size: fn(&streamrt::pack::IndexEntry) -> u64| {
            reader.entries().iter().map(size).sum::<u64>()
        };
        let (stored, raw) = (sum(|e| e.stored_size), sum(|e| e.raw_size));
        assert!(stored * 4 < raw * 3, "{stored} bytes stored of {raw}");
    }
}
