//! The process's CPU time over a timed section, beside its wall time.
//!
//! Two systems that both keep both cores busy differ in rate by the CPU each spends per item,
//! so that figure says where a ratio comes from (and whether a system left a core idle). It
//! moves with the machine's load too, as a neighbour slows every instruction: compare systems
//! within one run, as with the rates. The CPU time is the
//! whole process's (every thread, those that exited included), read from `/proc/self/stat`
//! in clock ticks of 10 ms, so a section should take at least a few tenths of a second; it is
//! `None` where that file is not there.

use std::time::{Duration, Instant};

use super::median;

/// Clock ticks per second of `/proc/self/stat`'s `utime` and `stime` (`USER_HZ`, fixed at
/// 100 by the Linux ABI whatever the kernel's own tick).
const USER_HZ: u64 = 100;

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
    parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// User plus system time from the text of `/proc/PID/stat`: fields 14 and 15, counted after
/// the command name, which is in parentheses and may itself hold spaces or parentheses.
fn parse_stat(stat: &str) -> Option<Duration> {
    let (_, after_name) = stat.rsplit_once(')')?;
    // Field 3 (the state) is the first after the name, so fields 14 and 15 are the 12th and
    // 13th.
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 1_000 / USER_HZ))
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
    fn user_and_system_ticks_are_read_after_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (a (b) c) R 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4";
        assert_eq!(parse_stat(stat), Some(Duration::from_millis(3_000)));
        assert_eq!(parse_stat("4242 (cut short) R 1 2"), None);
    }

    // `/proc/self/stat` is Linux's; elsewhere the CPU time is `None`, as the module says.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_process_cpu_time_advances_while_it_works() {
        let watch = Stopwatch::start();
        let mut x = 0u64;
        // Spins until two ticks are counted; a reading that never moves fails at the bound.
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
