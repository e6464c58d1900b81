//! Sources map an asset key to its stored bytes.
//!
//! A source is called from the IO worker threads, several reads at once, and may block (that is
//! what the IO pool is for). Keys arrive already validated (see `AssetKey`), so a source can
//! join them under its root; each source still guards against what the text cannot show, such
//! as symlinks.
//!
//! A source that indexes its entries (a pack, the memory source) hands out a [`Locator`] with
//! an entry's [`EntryInfo`], and the runtime hands it back with the key to
//! [`Source::read_located`]: the read then finds its entry without looking the key up a second
//! time. In a large index that second lookup was a few cache misses on the IO worker, as many
//! as the read itself (`streamctl bench tiny`, docs/PERFORMANCE.md).

mod dir;
mod memory;
mod pack;
mod wrapped;

pub use dir::DirSource;
pub use memory::MemorySource;
pub use pack::{Coalescing, PackSource};
pub use wrapped::{ReadHook, Wrapped};

use std::num::NonZeroU32;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use streamrt_supervisor::{log_caught, take_panic_message};

use streamrt_messages::{error_text, AssetKey, ErrorKind};

/// Reads assets' bytes.
pub trait Source: Send + Sync + 'static {
    /// The stored bytes of `key`.
    ///
    /// # Errors
    ///
    /// A [`SourceError`]: `NotFound`, a (transient) `Io` error, `TooLarge`, `Corrupt` or
    /// `Denied`.
    fn read(&self, key: &AssetKey) -> Result<Vec<u8>, SourceError>;

    /// The stored bytes of `key`, whose [`Source::entry_info`] gave `locator`: a source that
    /// hands out locators reads the entry the locator names, without looking `key` up. The
    /// runtime passes a locator back only with the key it was given for, to the source that
    /// gave it. By default, [`Source::read`], so a wrapper that keeps this default reads by
    /// key. A wrapper that forwards it must hand the inner source only locators that source
    /// gave for that key: one that renames keys or joins several sources must not forward
    /// `entry_info`'s locators unchanged. One that forwards locators forwards
    /// [`Source::want`] and [`Source::unwant`] too, or its inner source reads ahead blind.
    ///
    /// # Errors
    ///
    /// As [`Source::read`].
    fn read_located(&self, key: &AssetKey, locator: Locator) -> Result<Vec<u8>, SourceError> {
        let _ = locator;
        self.read(key)
    }

    /// A short description for logs and status (`dir:/path/to/root`).
    fn describe(&self) -> String;

    /// The runtime started a load of the entry at `locator` (one [`Source::entry_info`]
    /// gave): it will read the entry's bytes. Paired with one [`Source::unwant`] when the load
    /// no longer waits for them. A source that reads ahead (a pack's coalescing windows) uses
    /// the pair to stop at entries no load waits for any more, such as a cancelled one's.
    ///
    /// Advisory: a source serves every read whatever it was told. Called on the runtime's
    /// core thread, so it must answer at once, never block. A panic here is caught, logged,
    /// and turns the hints off for the rest of the runtime's life. Nothing by default.
    fn want(&self, _locator: Locator) {}

    /// The load a [`Source::want`] announced no longer waits for the entry's bytes: it got
    /// them (decoded), failed, or was cancelled. As advisory as `want`.
    fn unwant(&self, _locator: Locator) {}

    /// The bytes this source has asked its storage for so far, if it counts them: what the
    /// bandwidth limit (`RuntimeConfig::io_bytes_per_sec_max`) charges, as it grows, instead
    /// of the bytes a read hands over. A pack counts its entries as stored and its coalescing
    /// windows whole, failed reads too. `None` (the default): the limit charges what each
    /// read hands over. A wrapper (a delay, a fault injector) forwards it, or a pack behind it
    /// is charged what it hands over.
    fn storage_bytes_read(&self) -> Option<u64> {
        None
    }

    /// What is known of `key` without reading it: its dependencies and size. Called once per
    /// request on the engine's thread, so it must answer from memory (an index), never block.
    /// Nothing known by default.
    ///
    /// # Panics
    ///
    /// A panic here is caught: the request fails at once with `Io`, naming the panic. A
    /// recording keeps it (`EntryPanicked`), and its replay raises it again there.
    fn entry_info(&self, _key: &AssetKey) -> EntryInfo {
        EntryInfo::default()
    }
}

/// A boxed source is a source, so a wrapper (a delay, a fault injector) can hold any source.
impl<S: Source + ?Sized> Source for Box<S> {
    fn read(&self, key: &AssetKey) -> Result<Vec<u8>, SourceError> {
        (**self).read(key)
    }

    fn read_located(&self, key: &AssetKey, locator: Locator) -> Result<Vec<u8>, SourceError> {
        (**self).read_located(key, locator)
    }

    fn describe(&self) -> String {
        (**self).describe()
    }

    fn want(&self, locator: Locator) {
        (**self).want(locator);
    }

    fn unwant(&self, locator: Locator) {
        (**self).unwant(locator);
    }

    fn storage_bytes_read(&self) -> Option<u64> {
        (**self).storage_bytes_read()
    }

    fn entry_info(&self, key: &AssetKey) -> EntryInfo {
        (**self).entry_info(key)
    }
}

/// Calls into a source that the runtime can do without (hints, a count): the source is the
/// engine's code, and its first panic turns them off for good, with one log line, rather than
/// failing the caller at every call.
#[derive(Debug, Default)]
pub(crate) struct OptionalCalls {
    off: AtomicBool,
}

impl OptionalCalls {
    /// `call`'s result, or `None` once one has panicked; `what` names the call and `after`
    /// says what the runtime does without it, in the log line.
    pub(crate) fn call<R>(
        &self,
        source: &dyn Source,
        what: &str,
        after: &str,
        call: impl FnOnce() -> R,
    ) -> Option<R> {
        if self.off.load(Ordering::Relaxed) {
            return None;
        }
        catch_unwind(AssertUnwindSafe(call)).map_or_else(
            |panic| {
                self.off.store(true, Ordering::Relaxed);
                let message = take_panic_message(panic);
                log_caught(|| {
                    tracing::warn!(
                        target: "streamrt", source = %source.describe(), %message,
                        "the source's {what} panicked: {after}"
                    );
                });
                None
            },
            Some,
        )
    }
}

/// The runtime's side of [`Source::want`] and [`Source::unwant`]: the caches call them
/// through this, for located loads only, and a panic in either turns both off for good (one
/// log line), rather than failing the cache at every load.
pub(crate) struct LoadHints {
    source: Arc<dyn Source>,
    calls: OptionalCalls,
}

impl LoadHints {
    pub(crate) fn new(source: Arc<dyn Source>) -> Self {
        Self { source, calls: OptionalCalls::default() }
    }

    /// A load of the entry at `locator` starts to wait for its bytes.
    pub(crate) fn want(&self, locator: Option<Locator>) {
        self.hint(locator, "want", |source, locator| source.want(locator));
    }

    /// A load [`LoadHints::want`] announced no longer waits for its bytes.
    pub(crate) fn unwant(&self, locator: Option<Locator>) {
        self.hint(locator, "unwant", |source, locator| source.unwant(locator));
    }

    fn hint(&self, locator: Option<Locator>, name: &str, hint: fn(&dyn Source, Locator)) {
        let Some(locator) = locator else { return };
        let source = &*self.source;
        let off = "load hints are off from now on";
        self.calls.call(source, name, off, || hint(source, locator));
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
    /// Where the source keeps it, for [`Source::read_located`]; `None` from a source that reads
    /// by key only.
    pub locator: Option<Locator>,
}

/// An entry's place in its source's own table (an index), from [`Source::entry_info`] to
/// [`Source::read_located`]; it means something only to the source that made it. Four bytes,
/// `None` included: a pending load keeps one in its cache slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Locator(NonZeroU32);

impl Locator {
    /// The locator of the entry at `index`; `None` past `u32::MAX - 1`, where the source
    /// reads by key instead.
    pub fn new(index: usize) -> Option<Self> {
        let index = u32::try_from(index).ok()?;
        NonZeroU32::new(index.wrapping_add(1)).map(Self)
    }

    /// The index it was made with.
    pub fn index(self) -> usize {
        (self.0.get() - 1) as usize
    }
}

/// Why a source could not produce an asset's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
    /// The source refuses the read: it would leave the source's root, the file is not a
    /// regular one, or the system denies the process access to it. Not retried.
    #[error("denied: {0}")]
    Denied(String),
    /// The asset is larger than the source's limit, or than memory can hold at once (a
    /// source with no limit).
    #[error("too large: {size} bytes, limit {max}")]
    TooLarge {
        /// The size found over the limit, in bytes: the file's (or what was read of it) for
        /// a directory, the larger of an entry's stored and raw sizes for a pack.
        size: u64,
        /// The limit in bytes.
        max: u64,
    },
}

impl From<SourceError> for ErrorKind {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::NotFound => ErrorKind::NotFound,
            SourceError::Io(m) => ErrorKind::Io(error_text(m)),
            SourceError::TooLarge { size, max } => ErrorKind::TooLarge { size, max },
            SourceError::Corrupt(m) => ErrorKind::Corrupt(error_text(m)),
            SourceError::Denied(m) => ErrorKind::Denied(error_text(m)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locator_gives_back_its_index_and_fits_in_four_bytes_with_none() {
        for index in [0, 1, 12_345, u32::MAX as usize - 1] {
            assert_eq!(Locator::new(index).map(Locator::index), Some(index));
        }
        assert_eq!(Locator::new(u32::MAX as usize), None);
        assert_eq!(Locator::new(usize::MAX), None);
        assert_eq!(std::mem::size_of::<Option<Locator>>(), 4);
    }

    #[test]
    fn the_engines_long_error_text_is_cut_as_it_becomes_a_load_error() {
        let long = || "x".repeat(2 << 20);
        let kinds = [
            ErrorKind::from(SourceError::Io(long())),
            ErrorKind::from(SourceError::Corrupt(long())),
            ErrorKind::from(SourceError::Denied(long())),
            ErrorKind::from(crate::DecodeError::Malformed(long())),
            ErrorKind::from(crate::DecodeError::Validation(long())),
        ];
        for kind in kinds {
            let text = kind.to_string();
            assert!(text.len() < 2 * streamrt_messages::ERROR_TEXT_BYTES_MAX, "{}", text.len());
            assert!(text.ends_with('…'));
        }
    }
}
