//! Plain data shared by every streamrt crate.
//!
//! This crate has no IO and no message handlers: it defines what travels between the actors,
//! the engine and `streamctl`, so that each of them agrees on one spelling of it.
//!
//! - [`AssetKey`] names an asset: its type and a confined relative path. Building one validates
//!   it; an `AssetKey` that exists is always safe to hand to a source.
//! - [`RequestId`], [`Generation`] and [`Priority`] identify and order work.
//! - [`LoadState`] is a request's lifecycle, with [`LoadState::can_become`] as its transition
//!   check.
//! - [`AssetLoadError`] is the structured failure every waiter of a load sees (shared behind an
//!   `Arc`).
//! - [`Event`] is one telemetry event and [`Record`] its line in the JSON log (schema v1);
//!   [`Status`] is the live summary a status query returns.
//!
//! - [`Fnv1a`] hashes alike on every build, for what must (a replay transcript's hash).
//!
//! - [`protocol`] is the control protocol between `streamctl` and the daemon: its messages and
//!   the length-prefixed postcard frames they travel in (pure encoding, no IO).
//!
//! Every type here is `serde`-serialisable so that the control protocol and the replay log
//! carry the same values the actors use.

mod decode;
mod error;
mod event;
mod fnv;
mod ids;
mod key;
pub mod protocol;
mod record;
pub mod replay_log;
mod state;
mod status;
mod text;

pub use error::{error_text, error_text_of, AssetLoadError, ErrorKind, ERROR_TEXT_BYTES_MAX};
pub use event::{CancelStage, Event, EventKind};
pub use fnv::Fnv1a;
pub use ids::{Generation, Priority, RequestId};
pub use key::{
    AssetKey, AssetPath, AssetTypeName, InvalidKey, ASSET_PATH_BYTES_MAX, ASSET_TYPE_BYTES_MAX,
};
pub use record::{Record, TELEMETRY_SCHEMA_VERSION};
pub use state::LoadState;
pub use status::Status;
pub use text::{escape_controls, escape_where, needs_escape};
