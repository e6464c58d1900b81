//! streamrt: an embeddable asset-streaming runtime on supervised actix actors.
//!
//! An engine builds a [`Runtime`] with a [`Source`] and one [`Decoder`] per asset type, asks
//! for assets by key and [`Priority`] and gets a [`Handle`] back at once. IO workers read,
//! decode workers decode, a cache actor per type holds the results, and the frame coordinator
//! makes them visible at `begin_frame`, most urgent first, within a budget. Any request can be
//! reprioritised or cancelled at any moment; every request reaches exactly one terminal state.
//!
//! ```no_run
//! use streamrt::{DecodeError, Decoder, DirSource, Priority, Runtime};
//! use streamrt::messages::AssetKey;
//!
//! struct Text;
//! impl Decoder for Text {
//!     type Asset = String;
//!     fn type_name(&self) -> &str { "text" }
//!     fn decode(&self, _: &AssetKey, bytes: Vec<u8>) -> Result<String, DecodeError> {
//!         String::from_utf8(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))
//!     }
//!     fn size_bytes(&self, s: &String) -> u64 { s.len() as u64 }
//! }
//!
//! let rt = Runtime::builder().source(DirSource::new("assets")).register(Text).frame_budget(64).build()?;
//! let greeting = rt.request::<String>("hello.txt", Priority::High)?;
//! loop {
//!     rt.begin_frame();
//!     if let Some(text) = greeting.get() { println!("{text}"); break; }
//!     # break;
//!     rt.end_frame();
//! }
//! rt.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The main types are [`Runtime`], [`RuntimeBuilder`], [`Handle`], [`Decoder`] and [`Source`];
//! plain data (keys, states, errors, events) comes from [`messages`]. The errors its calls return
//! are `#[non_exhaustive]`: match them with a `_` arm.

mod asset;
mod cache;
pub mod chaos;
mod deps;
mod frame;
mod id_hash;
mod key_hash;
mod lock;
mod log_file;
pub mod replay;
pub mod report;
mod request;
mod resident;
mod runtime;
mod scheduler;
mod signal;
mod source;
mod tasks;
mod telemetry;
mod throttle;
mod wait;
mod work;

pub use streamrt_messages as messages;
pub use streamrt_messages::{AssetKey, AssetLoadError, ErrorKind, LoadState, Priority, Status};
pub use streamrt_pack as pack;

pub use asset::{verify_crc32_trailer, DecodeError, Decoder, ASSET_BYTES_MAX};
pub use cache::CacheStats;
pub use deps::ByteProgress;
pub use frame::{AdaptivePolicy, FramePolicy, FrameReport, PublishMode};
pub use request::{Handle, ReadyError};
pub use resident::MemoryStats;
pub use runtime::{
    BuildError, ConfigError, RequestError, RetryPolicy, Runtime, RuntimeBuilder, RuntimeConfig,
    CREDITS_MAX, DEPENDENCY_DEPTH_MAX, EVENTS_BUFFERED_MAX, RESTART_BACKOFF_MS_MAX,
    RETRY_BACKOFF_MS_MAX, SHUTDOWN_ACK_MS_MAX, TELEMETRY_INTERVAL_MS_MAX, THREADS_MAX, TYPES_MAX,
    WORKER_NICE_MAX,
};
pub use source::{
    Coalescing, DirSource, EntryInfo, Locator, MemorySource, PackSource, ReadHook, Source,
    SourceError, Wrapped,
};
pub use streamrt_supervisor::{
    panic_message, panic_text, Backoff, Escalation, Intensity, PANIC_MESSAGE_BYTES_MAX,
};
pub use streamrt_supervisor::{Clock, ManualClock, MonotonicClock};
pub use tasks::{FrameTaskGroup, TaskContext, TaskError};
pub use telemetry::EventStream;
pub use wait::{
    progress, wait_all, wait_all_async, wait_all_timeout_async, wait_any, wait_any_async,
    wait_any_timeout_async, wait_loaded, LoadGroup,
};
