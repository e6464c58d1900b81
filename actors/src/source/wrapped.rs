//! A source wrapped around another that changes only its reads: slow storage, a gate a test
//! holds, injected faults.
//!
//! [`Wrapped`] calls its [`ReadHook`] around both of the inner source's reads (by key and by
//! locator) and forwards everything else unchanged: its entry info (so its locators, which
//! go back to the source that gave them), the load hints and the storage bytes read, as
//! [`Source::read_located`] asks of a wrapper that forwards locators.

use streamrt_messages::AssetKey;

use super::{EntryInfo, Locator, Source, SourceError};

/// What a [`Wrapped`] source does around each read of its inner source.
pub trait ReadHook: Send + Sync + 'static {
    /// The bytes of `key`: what `read` (the inner source's read of `key`, by key or by
    /// locator) returns, with what this hook adds around it (a delay before, a fault instead,
    /// a truncation after). Called on an IO worker's thread, so it may block.
    ///
    /// # Errors
    ///
    /// `read`'s error, or one the hook makes.
    fn around(
        &self,
        key: &AssetKey,
        read: impl FnOnce() -> Result<Vec<u8>, SourceError>,
    ) -> Result<Vec<u8>, SourceError>;

    /// The wrapped source's description, given the inner source's.
    fn describe(&self, inner: &str) -> String;
}

/// `inner`, each of whose reads goes through `hook` (see the module docs).
#[derive(Debug, Clone)]
pub struct Wrapped<S, H> {
    inner: S,
    hook: H,
}

impl<S: Source, H: ReadHook> Wrapped<S, H> {
    /// Reads `inner` through `hook`.
    pub const fn new(inner: S, hook: H) -> Self {
        Self { inner, hook }
    }

    /// The hook, to drive it (open a gate) or read what it counted.
    pub const fn hook(&self) -> &H {
        &self.hook
    }
}

impl<S: Source, H: ReadHook> Source for Wrapped<S, H> {
    fn read(&self, key: &AssetKey) -> Result<Vec<u8>, SourceError> {
        self.hook.around(key, || self.inner.read(key))
    }

    fn read_located(&self, key: &AssetKey, locator: Locator) -> Result<Vec<u8>, SourceError> {
        self.hook.around(key, || self.inner.read_located(key, locator))
    }

    fn describe(&self) -> String {
        self.hook.describe(&self.inner.describe())
    }

    fn want(&self, locator: Locator) {
        self.inner.want(locator);
    }

    fn unwant(&self, locator: Locator) {
        self.inner.unwant(locator);
    }

    fn storage_bytes_read(&self) -> Option<u64> {
        self.inner.storage_bytes_read()
    }

    fn entry_info(&self, key: &AssetKey) -> EntryInfo {
        self.inner.entry_info(key)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::source::MemorySource;

    /// Counts the reads it sees and fails every second one.
    #[derive(Default)]
    struct EverySecondFails {
        reads: AtomicUsize,
    }

    impl ReadHook for EverySecondFails {
        fn around(
            &self,
            key: &AssetKey,
            read: impl FnOnce() -> Result<Vec<u8>, SourceError>,
        ) -> Result<Vec<u8>, SourceError> {
            if self.reads.fetch_add(1, Ordering::Relaxed) % 2 == 1 {
                return Err(SourceError::Io(format!("second read of {key}")));
            }
            read()
        }

        fn describe(&self, inner: &str) -> String {
            format!("flaky {inner}")
        }
    }

    #[test]
    fn both_reads_go_through_the_hook_and_the_inner_sources_locators_come_through() {
        let inner = MemorySource::new();
        let key = AssetKey::parse("blob:a").unwrap();
        inner.insert(key.clone(), b"bytes".to_vec());
        let wrapped = Wrapped::new(inner.clone(), EverySecondFails::default());
        let locator = wrapped.entry_info(&key).locator;
        assert_eq!(locator, inner.entry_info(&key).locator);
        let locator = locator.expect("the memory source gives locators");
        assert_eq!(wrapped.read_located(&key, locator).unwrap(), b"bytes");
        assert!(matches!(wrapped.read(&key), Err(SourceError::Io(_))));
        assert_eq!(wrapped.read(&key).unwrap(), b"bytes");
        assert!(matches!(wrapped.read_located(&key, locator), Err(SourceError::Io(_))));
        assert_eq!(wrapped.hook().reads.load(Ordering::Relaxed), 4);
        assert_eq!(wrapped.describe(), format!("flaky {}", inner.describe()));
    }
}
