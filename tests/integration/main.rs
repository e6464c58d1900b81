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
mod supervision;
mod tasks;
mod telemetry;
mod waits;

use streamrt::{Runtime, RuntimeBuilder};
use streamrt_integration::{BlobDecoder, GatedSource};

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
