//! Handles of any asset type behind one trait, so a tool can hold a mixed workload in one list,
//! and requests by key for the five asset types `streamctl` knows.

use std::time::Duration;

use streamrt::messages::{AssetKey, AssetTypeName, RequestId};
use streamrt::{Handle, LoadState, Priority, RequestError, Runtime, RuntimeBuilder};

use crate::formats::{
    Animation, AnimationDecoder, Blob, BlobDecoder, Material, MaterialDecoder, Mesh, MeshDecoder,
    Texture, TextureDecoder,
};

/// Registers the decoders of every asset type `streamctl` knows.
pub fn register_all(builder: RuntimeBuilder) -> RuntimeBuilder {
    builder
        .register(BlobDecoder)
        .register(MeshDecoder)
        .register(TextureDecoder)
        .register(AnimationDecoder)
        .register(MaterialDecoder)
}

/// The asset types `streamctl` decodes: those [`register_all`] registers and [`request_any`]
/// requests.
pub const KNOWN_TYPES: [&str; 5] = ["blob", "mesh", "texture", "animation", "material"];

/// Whether [`request_any`] knows `asset_type`.
pub fn is_known_type(asset_type: &AssetTypeName) -> bool {
    KNOWN_TYPES.contains(&asset_type.as_str())
}

/// Requests `key`, whichever of the known types it names.
///
/// # Errors
///
/// The runtime refused it: an unknown type or a runtime shutting down.
pub fn request_any(
    rt: &Runtime,
    key: AssetKey,
    priority: Priority,
) -> Result<Box<dyn Tracked>, RequestError> {
    Ok(match key.asset_type().as_str() {
        "texture" => Box::new(rt.request_key::<Texture>(key, priority)?),
        "material" => Box::new(rt.request_key::<Material>(key, priority)?),
        "mesh" => Box::new(rt.request_key::<Mesh>(key, priority)?),
        "animation" => Box::new(rt.request_key::<Animation>(key, priority)?),
        "blob" => Box::new(rt.request_key::<Blob>(key, priority)?),
        other => return Err(RequestError::UnknownType(other.to_owned())),
    })
}

/// What `streamctl` needs from a handle, whatever its asset type.
pub trait Tracked: Send + Sync {
    /// The request's id.
    fn id(&self) -> RequestId;
    /// The requested asset.
    fn key(&self) -> AssetKey;
    /// The request's priority.
    fn priority(&self) -> Priority;
    /// The failure, as text, once failed.
    fn error_text(&self) -> Option<String>;
    /// Blocks until the request is terminal or `timeout` passes; whether it is terminal.
    fn wait(&self, timeout: Duration) -> bool;
    /// The request's state.
    fn state(&self) -> LoadState;
    /// Cancels the request; whether this call ended it.
    fn cancel(&self) -> bool;
    /// Changes the request's priority.
    fn reprioritize(&self, priority: Priority);
    /// Microseconds from request to terminal state, once terminal.
    fn latency_us(&self) -> Option<u64>;
    /// The failure's kind (`corrupt`, `validation`, ...), once failed.
    fn failure_kind(&self) -> Option<&'static str>;
}

impl<T: Send + Sync + 'static> Tracked for Handle<T> {
    fn id(&self) -> RequestId {
        Handle::id(self)
    }

    fn key(&self) -> AssetKey {
        Handle::key(self)
    }

    fn priority(&self) -> Priority {
        Handle::priority(self)
    }

    fn error_text(&self) -> Option<String> {
        Handle::error(self).map(|e| e.to_string())
    }

    fn wait(&self, timeout: Duration) -> bool {
        self.wait_timeout(timeout).is_some()
    }

    fn state(&self) -> LoadState {
        Handle::state(self)
    }

    fn cancel(&self) -> bool {
        Handle::cancel(self)
    }

    fn reprioritize(&self, priority: Priority) {
        Handle::reprioritize(self, priority);
    }

    fn latency_us(&self) -> Option<u64> {
        Handle::latency_us(self)
    }

    fn failure_kind(&self) -> Option<&'static str> {
        Handle::error(self).map(|e| e.kind.name())
    }
}
