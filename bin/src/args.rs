//! The ranges of `streamctl`'s numeric arguments: every count a command takes is bounded, so a
//! zero or a mistyped huge value is a usage error (exit 2, naming the argument), never a panic,
//! an allocation the machine cannot make, or a run that measures nothing.

use clap::builder::RangedU64ValueParser;

/// Assets, requests, files or pending requests a command makes at most.
pub(crate) const COUNT_MAX: u64 = 10_000_000;

/// Frames a command runs at most.
pub(crate) const FRAMES_MAX: u64 = 1_000_000;

/// A count from 1 to `max`.
pub(crate) fn count<T>(max: u64) -> RangedU64ValueParser<T>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
    <T as TryFrom<u64>>::Error: std::fmt::Display,
{
    RangedU64ValueParser::new().range(1..=max)
}

/// A thread count, from 1 to the runtime's `THREADS_MAX` (checked here too, since a benchmark's
/// baselines start their threads before any runtime is built).
pub(crate) fn threads() -> RangedU64ValueParser<usize> {
    count(streamrt::THREADS_MAX as u64)
}

/// A share from 0 to 1 (a rate); NaN, a negative share or one past 1 is a usage error.
pub(crate) fn share(text: &str) -> Result<f64, String> {
    let share: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&share) {
        Ok(share)
    } else {
        Err(format!("{text} is not a share from 0 to 1"))
    }
}

/// A `worker_nice`, from 0 to the runtime's `WORKER_NICE_MAX`.
pub(crate) fn worker_nice() -> RangedU64ValueParser<u8> {
    RangedU64ValueParser::new().range(0..=u64::from(streamrt::WORKER_NICE_MAX))
}
