//! Sources map an asset key to its stored bytes.
//!
//! A source is called from the IO worker threads, several reads at once, and may block (that is
//! what the IO pool is for). Keys arrive already validated (see `AssetKey`), so a source can
//! join them under its root; each source still guards against what the text cannot show, such
//! as symlinks.

mod dir;
mod memory;
mod pack;

pub use dir::DirSource;
pub use memory::MemorySource;
pub use pack::{Coalescing, PackSource};

use streamrt_messages::{AssetKey, ErrorKind};

/// Reads assets' bytes.
pub trait Source: Send + Sync + 'static {
    /// The stored bytes of `key`.
    ///
    /// # Errors
    ///
    /// A [`SourceError`]: `NotFound`, a (transient) `Io` error, `TooLarge`, `Corrupt` or
    /// `Denied`.
    fn read(&self, key: &AssetKey) -> Result<Vec<u8>, SourceError>;

    /// A short description for logs and status (`dir:/path/to/root`).
    fn describe(&self) -> String;

    /// What is known of `key` without reading it: its dependencies and size. Called once per
    /// request on the engine's thread, so it must answer from memory (an index), never block.
    /// Nothing known by default.
    fn entry_info(&self, _key: &AssetKey) -> EntryInfo {
        EntryInfo::default()
    }
}

/// A boxed source is a source, so a wrapper (a delay, a fault injector) can hold any source.
impl<S: Source + ?Sized> Source for Box<S> {
    fn read(&self, key: &AssetKey) -> Result<Vec<u8>, SourceError> {
        (**self).read(key)
    }

    fn describe(&self) -> String {
        (**self).describe()
    }

    fn entry_info(&self, key: &AssetKey) -> EntryInfo {
        (**self).entry_info(key)
    }
}

/// What a source knows of an asset without reading it ([`Source::entry_info`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryInfo {
    /// The assets it depends on, of any type: a request for it is published only once all of
    /// them are ready.
    pub dependencies: Vec<AssetKey>,
    /// Its size in bytes (a pack's raw size), for byte-weighted progress.
    pub size: Option<u64>,
}

/// Why a source could not produce an asset's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// No such asset.
    #[error("not found")]
    NotFound,
    /// The read failed.
    #[error("io: {0}")]
    Io(String),
    /// The stored bytes do not match their checksum or size.
    #[error("corrupt: {0}")]
    Corrupt(String),
    /// The read would leave the source's root.
    #[error("denied: {0}")]
    Denied(String),
    /// The asset is larger than the source's limit.
    #[error("too large: {size} bytes, limit {max}")]
    TooLarge {
        /// The stored size in bytes.
        size: u64,
        /// The limit in bytes.
        max: u64,
    },
}

impl From<SourceError> for ErrorKind {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::NotFound => ErrorKind::NotFound,
            SourceError::Io(m) => ErrorKind::Io(m),
            SourceError::TooLarge { size, max } => ErrorKind::TooLarge { size, max },
            SourceError::Corrupt(m) => ErrorKind::Corrupt(m),
            SourceError::Denied(m) => ErrorKind::Denied(m),
        }
    }
}
