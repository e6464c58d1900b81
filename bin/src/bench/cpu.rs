//! The process's CPU time over a timed section, beside its wall time.
//!
//! Two systems that both keep both cores busy differ in rate by the CPU each spends per item,
//! so that figure says where a ratio comes from (and whether a system left a core idle). It
//! moves with the machine's load too, as a neighbour slows every instruction: compare systems
//! within one run, as with the rates. The CPU time is the whole process's (every thread, those
//! that exited included), read from the process's CPU-time clock in nanoseconds
//! (`/proc/self/stat` counts it in ticks of 10 ms, which a short section rounds off).

use std::time::{Duration, Instant};

use super::median;

/// Wall and CPU time of one timed section.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    pub(super) wall: Duration,
    /// User and system time of every thread of the process, if readable.
    pub(super) cpu: Option<Duration>,
}

/// A started timed section.
pub(super) struct Stopwatch {
    wall: Instant,
    cpu: Option<Duration>,
}

impl Stopwatch {
    pub(super) fn start() -> Self {
        Self { cpu: process_cpu(), wall: Instant::now() }
    }

    /// Wall time since [`Stopwatch::start`], for a part of the section.
    pub(super) fn elapsed(&self) -> Duration {
        self.wall.elapsed()
    }

    /// The section from [`Stopwatch::start`] to now.
    pub(super) fn stop(&self) -> Span {
        let wall = self.wall.elapsed();
        let cpu = self.cpu.zip(process_cpu()).map(|(from, to)| to.saturating_sub(from));
        Span { wall, cpu }
    }
}

/// The process's user and system time so far.
fn process_cpu() -> Option<Duration> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    let nanos = u32::try_from(now.tv_nsec).ok()?;
    Some(Duration::new(u64::try_from(now.tv_sec).ok()?, nanos))
}

/// Microseconds of `cpu` per item.
fn micros_per(cpu: Duration, items: usize) -> f64 {
    cpu.as_secs_f64() * 1e6 / items.max(1) as f64
}

/// One system's median round and median CPU per item over its rounds.
pub(super) struct Medians {
    pub(super) wall: Duration,
    pub(super) cpu_us_per_item: Option<f64>,
}

impl Medians {
    pub(super) fn of(spans: &[Span], items: usize) -> Self {
        // Every round's CPU time or none: a median of some rounds would compare unlike ones.
        let cpu: Option<Vec<Duration>> = spans.iter().map(|s| s.cpu).collect();
        Self {
            wall: median(spans.iter().map(|s| s.wall).collect()),
            cpu_us_per_item: cpu.map(|cpu| micros_per(median(cpu), items)),
        }
    }

    /// The CPU per item for a report line, with one decimal (`-` where unknown).
    pub(super) fn cpu_text(&self) -> String {
        self.cpu_us_per_item.map_or("-".into(), |us| format!("{us:.1}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_cpu_time_advances_while_it_works() {
        let watch = Stopwatch::start();
        let mut x = 0u64;
        // Spins until 20 ms are counted; a reading that never moves fails at the bound.
        while watch.stop().cpu.is_some_and(|cpu| cpu < Duration::from_millis(20))
            && watch.wall.elapsed() < Duration::from_secs(10)
        {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        let span = watch.stop();
        assert!(span.cpu.is_some_and(|cpu| cpu >= Duration::from_millis(20)), "{span:?}");
    }
}
