//! What actix lacks for a runtime that must never hang or shrink.
//!
//! actix's `Supervisor` restarts an actor that stopped, never one that panicked, and a panic
//! closes the actor's mailbox for good; a `SyncArbiter` thread that panics is not replaced. This
//! crate supplies the missing parts:
//!
//! - [`Mailbox`]: a batched, multi-producer mailbox that lives outside the actor. Producers on
//!   any thread post without blocking; the actor drains in batches on one `Wake`. Because the
//!   queue is not the actor's, a restarted actor re-attaches to it and finds every message
//!   its predecessor had not taken, and those of its last batch it had not handled: only the
//!   one whose handler panicked is lost.
//! - [`WorkerPool`]: a fixed number of joinable threads running [`Worker`]s. A panic in a job
//!   is caught, the worker is rebuilt from its factory with fresh state, and the pool keeps its
//!   configured size (as long as the factory does not panic).
//! - [`RestartPolicy`] and [`RestartWindow`]: restart policies as data (kind, strategy,
//!   intensity, backoff) and the pure intensity check that decides when to escalate.
//! - [`Supervisor`]: an actor that starts children from [`ChildSpec`]s, turns a caught panic
//!   ([`guarded`]) or an abnormal stop into a restart per policy, and escalates past the
//!   intensity.
//! - [`Clock`], [`MonotonicClock`], [`ManualClock`]: time behind a seam, so restart intensity
//!   and the backoff's length are testable without sleeping (the backoff itself waits on
//!   actix's wall-clock timer).
//! - [`Activity`] and [`WorkerPool::stepped`]: what a deterministic driver needs: to know when
//!   the actors are idle, and to run the workers' jobs itself, one at a time, in its order.

mod activity;
mod clock;
mod mailbox;
mod policy;
mod pool;
mod supervisor;

pub use activity::Activity;
pub use clock::{Clock, ManualClock, MonotonicClock};
pub use mailbox::{AskPatience, Mailbox, MailboxClosed, Wake};
pub use policy::{Backoff, Intensity, RestartKind, RestartPolicy, RestartWindow, Strategy};
pub use pool::{PoolClosed, PoolSender, PoolStats, Worker, WorkerPool};
pub use supervisor::{
    drain_guarded, drain_lane, drain_turn, guarded, guarded_turn, wake_after_others, ChildLink,
    ChildSpec, Drained, Escalation, ExitReason, StartFn, StopChild, Supervisor, SupervisorMsg,
    SupervisorStats,
};

/// Runs `log`, a `tracing` call, catching a panic of the subscriber it reaches.
///
/// The subscriber is the embedding program's code: a log line is never worth leaving the step
/// it reports (a worker's rebuild, an escalation) half done. The panic hook has reported the
/// panic, so it is dropped here (see [`take_panic_message`]).
pub fn log_caught(log: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(log)) {
        drop_payload(panic);
    }
}

/// Runs `f`, the embedding program's code (an asset's `Drop`, say), where nothing is left to
/// fail should it panic (a shutdown, a task already cancelled): its panic is caught and logged
/// as a warning that `what` panicked, and the step that ran it goes on.
pub fn run_warning_on_panic(what: &str, f: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        let message = take_panic_message(panic);
        log_caught(|| tracing::warn!(target: "streamrt", %message, "{what} panicked"));
    }
}

/// Drops each of `items` under a catch of its own ([`run_warning_on_panic`]): they belong to
/// the embedding program (a message, a job, a task's captures), and a second panic while the
/// first unwinds through a drop would abort the process.
pub fn drop_each_warning_on_panic<T>(what: &str, items: impl IntoIterator<Item = T>) {
    for item in items {
        run_warning_on_panic(what, || drop(item));
    }
}

/// The most bytes of a panic's message kept: it is copied into the error of every request the
/// panic failed, into events and into a replay log, whose records have a size limit. The same
/// as any error text from outside the runtime keeps.
pub const PANIC_MESSAGE_BYTES_MAX: usize = streamrt_messages::ERROR_TEXT_BYTES_MAX;

/// [`panic_message`] of a caught panic's payload, which is then dropped where its own `Drop`
/// cannot unwind any further: a payload is whatever value the panicking code chose, and one
/// whose drop panics would otherwise escape the catch (a second panic's payload is leaked,
/// as the standard library's docs advise).
pub fn take_panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let message = panic_message(&*payload);
    drop_payload(payload);
    message
}

fn drop_payload(payload: Box<dyn std::any::Any + Send>) {
    if let Err(second) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(payload))) {
        std::mem::forget(second);
    }
}

/// The text of a caught panic's payload, cut at [`PANIC_MESSAGE_BYTES_MAX`] bytes (on a
/// character boundary, ending with `…` when cut).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    streamrt_messages::error_text_of(panic_text(payload).unwrap_or("non-string panic payload"))
}

/// The whole text of a panic's payload, if it is text (`panic!`'s `&str` or `String`).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    let text = payload.downcast_ref::<&str>().copied();
    text.or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic payload whose own drop panics.
    struct Bomb;

    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("the payload's drop panicked too");
        }
    }

    #[test]
    fn a_caught_payload_whose_drop_panics_does_not_unwind_past_the_catch() {
        log_caught(|| std::panic::panic_any(Bomb));
        let payload: Box<dyn std::any::Any + Send> = Box::new(Bomb);
        assert_eq!(take_panic_message(payload), "non-string panic payload");
    }

    #[test]
    fn a_long_panic_message_is_cut_on_a_character_boundary() {
        let short: Box<dyn std::any::Any + Send> = Box::new("short");
        assert_eq!(panic_message(&*short), "short");
        let long: Box<dyn std::any::Any + Send> = Box::new("é".repeat(PANIC_MESSAGE_BYTES_MAX));
        let cut = panic_message(&*long);
        assert!(cut.len() <= PANIC_MESSAGE_BYTES_MAX, "{} bytes", cut.len());
        assert!(cut.len() > PANIC_MESSAGE_BYTES_MAX - 8, "{} bytes", cut.len());
        assert!(cut.starts_with("éé") && cut.ends_with('…'));
        let other: Box<dyn std::any::Any + Send> = Box::new(7_u8);
        assert_eq!(panic_message(&*other), "non-string panic payload");
    }
}
