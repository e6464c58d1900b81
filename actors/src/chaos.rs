//! Fault injection, seeded: a source that fails, slows and truncates reads, a decoder that
//! fails and panics, and named crash targets for [`Runtime::inject_crash`].
//!
//! Used by the chaos tests and by `streamctl chaos`. Each decision is drawn from a generator
//! seeded with the plan's seed, the key and how many decisions that key drew before, so a
//! key's `n`th read (or decode) meets the same fault in every run of a seed. Which load is a
//! key's `n`th still depends on the threads' timing (a cancel, a retry), so two runs of a seed
//! need not inject the same faults into the same requests.
//!
//! [`Runtime::inject_crash`]: crate::Runtime::inject_crash

mod run;

pub use run::{run, ChaosBlob, ChaosBlobDecoder, ChaosOptions, ChaosReport};
pub use streamrt_supervisor::panic_message;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use streamrt_messages::{AssetKey, Fnv1a};

use crate::asset::{DecodeError, Decoder};
use crate::lock::lock;
use crate::source::{ReadHook, Source, SourceError, Wrapped};

/// An actor or pool to crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrashTarget {
    /// The scheduler actor.
    Scheduler,
    /// The cache actor of the named asset type.
    Cache(String),
    /// The cache actor of the named asset type, and then its next incarnation as it takes back
    /// what the crashed one held (after the first asset or request it took back).
    CacheRestart(String),
    /// The frame coordinator actor.
    FrameCoordinator,
    /// The telemetry sink actor.
    TelemetrySink,
    /// One IO worker (the next to take a job).
    IoWorker,
    /// One decode worker (the next to take a job).
    DecodeWorker,
}

/// Rates (0 to 1) and sizes of the faults to inject.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultPlan {
    /// Seed of every decision.
    pub seed: u64,
    /// Reads that fail with an IO error.
    pub io_error_rate: f64,
    /// Reads that return fewer bytes than stored.
    pub short_read_rate: f64,
    /// Reads that are delayed by up to `latency_us_max`.
    pub latency_rate: f64,
    /// The longest injected read delay, in microseconds.
    pub latency_us_max: u64,
    /// Decodes that fail with a decode error.
    pub decode_error_rate: f64,
    /// Decodes that panic.
    pub panic_rate: f64,
}

/// Draws reproducible decisions for one wrapper: a key's `n`th draw is the same in every run.
#[derive(Debug)]
struct Dice {
    seed: u64,
    /// Draws made so far, by key. It grows with the keys a run touches (chaos runs only).
    draws: Mutex<HashMap<AssetKey, u64>>,
}

impl Dice {
    fn new(seed: u64) -> Self {
        Self { seed, draws: Mutex::default() }
    }

    fn roll(&self, key: &AssetKey) -> fastrand::Rng {
        let n = {
            let mut draws = lock(&self.draws);
            // A key is cloned only at its first draw.
            match draws.get_mut(key) {
                Some(n) => {
                    *n += 1;
                    *n
                }
                None => {
                    draws.insert(key.clone(), 1);
                    1
                }
            }
        };
        // A hash every build computes alike: `DefaultHasher`'s may change with the standard
        // library, and a seed that failed in CI must throw the same dice on a newer toolchain.
        let mut hasher = Fnv1a::default();
        hasher.write(&self.seed.to_le_bytes());
        hasher.write(key.to_string().as_bytes());
        hasher.write(&[0xff]);
        hasher.write(&n.to_le_bytes());
        fastrand::Rng::with_seed(hasher.finish())
    }
}

/// A source that injects the read faults of a [`FaultPlan`]: `inner` read through
/// [`ReadFaults`], which forwards what the inner source knows of a key (its dependencies, size
/// and locator), so a chaos run reads by locator, with faults, as a runtime over that source
/// does.
pub type FaultySource<S> = Wrapped<S, ReadFaults>;

impl<S: Source> FaultySource<S> {
    /// Wraps `inner`.
    pub fn faulty(inner: S, plan: FaultPlan) -> Self {
        Self::new(inner, ReadFaults { plan, dice: Dice::new(plan.seed) })
    }
}

/// The read faults of a [`FaultPlan`], around each read of a [`FaultySource`].
#[derive(Debug)]
pub struct ReadFaults {
    plan: FaultPlan,
    dice: Dice,
}

impl ReadHook for ReadFaults {
    fn around(
        &self,
        key: &AssetKey,
        read: impl FnOnce() -> Result<Vec<u8>, SourceError>,
    ) -> Result<Vec<u8>, SourceError> {
        let mut rng = self.dice.roll(key);
        if rng.f64() < self.plan.latency_rate && self.plan.latency_us_max > 0 {
            // Simulated slow storage: the IO worker thread waits as a slow disk would.
            std::thread::sleep(Duration::from_micros(rng.u64(..=self.plan.latency_us_max)));
        }
        if rng.f64() < self.plan.io_error_rate {
            return Err(SourceError::Io(format!("injected IO error reading {key}")));
        }
        let mut bytes = read()?;
        if rng.f64() < self.plan.short_read_rate && !bytes.is_empty() {
            bytes.truncate(rng.usize(..bytes.len()));
        }
        Ok(bytes)
    }

    fn describe(&self, inner: &str) -> String {
        format!("faulty({inner})")
    }
}

/// A decoder that injects the decode faults of a [`FaultPlan`].
#[derive(Debug)]
pub struct FaultyDecoder<D> {
    inner: D,
    plan: FaultPlan,
    dice: Dice,
}

impl<D: Decoder> FaultyDecoder<D> {
    /// Wraps `inner`.
    pub fn new(inner: D, plan: FaultPlan) -> Self {
        Self { inner, plan, dice: Dice::new(plan.seed ^ 0x9e37_79b9_7f4a_7c15) }
    }
}

impl<D: Decoder> Decoder for FaultyDecoder<D> {
    type Asset = D::Asset;

    fn type_name(&self) -> &str {
        self.inner.type_name()
    }

    fn decode(&self, key: &AssetKey, bytes: Vec<u8>) -> Result<D::Asset, DecodeError> {
        let mut rng = self.dice.roll(key);
        if rng.f64() < self.plan.panic_rate {
            panic!("injected decoder panic on {key}");
        }
        if rng.f64() < self.plan.decode_error_rate {
            return Err(DecodeError::Malformed(format!("injected decode error on {key}")));
        }
        self.inner.decode(key, bytes)
    }

    fn size_bytes(&self, asset: &D::Asset) -> u64 {
        self.inner.size_bytes(asset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemorySource;

    fn plan(io_error_rate: f64) -> FaultPlan {
        FaultPlan { seed: 1, io_error_rate, ..FaultPlan::default() }
    }

    #[test]
    fn a_located_read_goes_through_the_same_faults_as_a_read_by_key() {
        let inner = MemorySource::new();
        let key = AssetKey::parse("blob:a").unwrap();
        inner.insert(key.clone(), b"bytes".to_vec());
        let clean = FaultySource::faulty(inner.clone(), plan(0.0));
        let locator = clean.entry_info(&key).locator.expect("the inner source's locator");
        assert_eq!(clean.read_located(&key, locator).unwrap(), b"bytes");
        let failing = FaultySource::faulty(inner, plan(1.0));
        assert!(matches!(failing.read_located(&key, locator), Err(SourceError::Io(_))));
        assert!(matches!(failing.read(&key), Err(SourceError::Io(_))));
    }
}
