//! streamrt's integration tests: one binary, real actors and threads, gated IO, no sleeps.
//!
//! Each test waits on an event (a gate, a handle's terminal state, a telemetry event or a
//! `Runtime::sync` barrier) with a bounded patience, so a broken runtime fails a test instead
//! of hanging it.

mod cancellation;
mod confinement;
mod dependencies;
mod failures;
mod frames;
mod lifecycle;
mod limits;
mod memory;
mod packs;
mod replay;
mod sources;
mod supervision;
mod tasks;
mod telemetry;
mod waits;
#[cfg(target_os = "linux")]
mod workers;

use streamrt::{Handle, Priority, Runtime, RuntimeBuilder};
use streamrt_integration::{Blob, BlobDecoder, GatedSource, PATIENCE};

/// A runtime over `source` and `decoder`, shaped further by `shape`.
fn runtime(
    source: &GatedSource,
    decoder: &BlobDecoder,
    shape: impl FnOnce(RuntimeBuilder) -> RuntimeBuilder,
) -> Runtime {
    shape(Runtime::builder().source(source.clone()).register(decoder.clone()))
        .build()
        .expect("runtime builds")
}

/// A runtime over `source` that reads one load at a time, its one read (of `a0`, requested at
/// `priority`) held at the gate: what the test requests next waits in the scheduler's queue
/// until it releases `a0`. The runtime and `a0`'s handle.
fn one_read_held(source: &GatedSource, priority: Priority) -> (Runtime, Handle<Blob>) {
    source.gate.hold("a0");
    let rt = runtime(source, &BlobDecoder::default(), |b| {
        b.workers(1).reads_in_flight(1).read_credit_bytes(1)
    });
    let blocker = rt.request::<Blob>("a0", priority).expect("a0 is requested");
    source.gate.wait_started("a0", 1);
    (rt, blocker)
}

/// Requests `a0` of `source` (held at the gate first) at `Normal`, raises it to `Critical`
/// while it is read, then lets the read go. Its handle.
fn raised_to_critical_while_read(rt: &Runtime, source: &GatedSource) -> Handle<Blob> {
    let handle = rt.request::<Blob>("a0", Priority::Normal).expect("a0 is requested");
    source.gate.wait_started("a0", 1);
    handle.reprioritize(Priority::Critical);
    assert!(rt.sync(PATIENCE));
    source.gate.release("a0");
    handle
}
