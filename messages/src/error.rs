//! The structured failure of a load.
//!
//! One [`AssetLoadError`] is built per failed load and shared (`Arc`) by every request waiting on
//! it, so its text is formatted once however many holders read it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::key::AssetKey;

/// The most bytes of text an error keeps from code outside the runtime (a decoder's or a
/// source's message, a panic's): the text is copied into the error of every request the
/// failure ends, into events, telemetry log lines, replay log records and protocol frames, and
/// each of those has a size limit. A decoder that put a whole asset's dump in its message made
/// a telemetry log `streamctl report` refused (its lines are at most 1 MiB).
pub const ERROR_TEXT_BYTES_MAX: usize = 4096;

/// `text`, cut at [`ERROR_TEXT_BYTES_MAX`] bytes (on a character boundary, ending with `…`
/// when cut); as it is when it fits.
pub fn error_text(text: String) -> String {
    if text.len() <= ERROR_TEXT_BYTES_MAX {
        return text;
    }
    error_text_of(&text)
}

/// [`error_text`] of borrowed text: only the part kept is copied, however long `text` is.
pub fn error_text_of(text: &str) -> String {
    if text.len() <= ERROR_TEXT_BYTES_MAX {
        return text.to_owned();
    }
    let ellipsis = '…';
    let mut end = ERROR_TEXT_BYTES_MAX - ellipsis.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut cut = String::with_capacity(end + ellipsis.len_utf8());
    cut.push_str(&text[..end]);
    cut.push(ellipsis);
    cut
}

/// Why a load failed, with what the engine needs to react to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("loading {key} failed (attempt {attempt}): {kind}")]
pub struct AssetLoadError {
    /// The asset whose load failed; its type is `key.asset_type()`.
    pub key: AssetKey,
    /// Which attempt failed, from 1.
    pub attempt: u32,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl AssetLoadError {
    /// A shared error for the first attempt at `key`.
    pub fn shared(key: AssetKey, kind: ErrorKind) -> Arc<Self> {
        Arc::new(Self { key, attempt: 1, kind })
    }
}

/// The kinds of load failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The source has no such asset.
    #[error("not found")]
    NotFound,
    /// The source failed to read; transient, may be retried.
    #[error("io error: {0}")]
    Io(String),
    /// The decoder rejected the bytes.
    #[error("decode error: {0}")]
    Decode(String),
    /// The decoder panicked; the worker was restarted.
    #[error("decoder panicked: {0}")]
    DecoderPanicked(String),
    /// The decoded value broke a rule of its type (an index out of range, say).
    #[error("validation error: {0}")]
    Validation(String),
    /// The stored bytes do not match their checksum or their declared layout.
    #[error("corrupt: {0}")]
    Corrupt(String),
    /// The source refused the read: it would leave the source's root (a symlink out of it),
    /// the file is not a regular one, or the system denies the process access to it.
    #[error("denied: {0}")]
    Denied(String),
    /// A dependency failed, for the reason given.
    #[error("dependency {dependency} failed: {cause}")]
    DependencyFailed {
        /// The dependency that failed.
        dependency: AssetKey,
        /// Its failure, as text.
        cause: String,
    },
    /// The scheduler's queue, or the runtime's admission limit, was full.
    #[error("queue full ({capacity} queued)")]
    QueueFull {
        /// The limit that was reached.
        capacity: usize,
    },
    /// The asset is larger than allowed.
    #[error("too large: {size} bytes, limit {max}")]
    TooLarge {
        /// The asset's size in bytes.
        size: u64,
        /// The limit in bytes.
        max: u64,
    },
    /// The key's decoder panicked too often; it is no longer attempted.
    #[error("quarantined after {panics} decoder panics")]
    Quarantined {
        /// How many panics led to the quarantine.
        panics: u32,
    },
    /// A worker crashed while it held the load; transient, may be retried.
    #[error("worker lost the load: {0}")]
    WorkerLost(String),
    /// The runtime shut down before the load finished.
    #[error("runtime shut down")]
    Shutdown,
}

impl ErrorKind {
    /// A short stable name, for telemetry and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Io(_) => "io",
            Self::Decode(_) => "decode",
            Self::DecoderPanicked(_) => "decoder_panicked",
            Self::Validation(_) => "validation",
            Self::Corrupt(_) => "corrupt",
            Self::Denied(_) => "denied",
            Self::DependencyFailed { .. } => "dependency_failed",
            Self::QueueFull { .. } => "queue_full",
            Self::TooLarge { .. } => "too_large",
            Self::Quarantined { .. } => "quarantined",
            Self::WorkerLost(_) => "worker_lost",
            Self::Shutdown => "shutdown",
        }
    }

    /// Whether another attempt could succeed: IO errors and loads a crashed worker lost.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Io(_) | Self::WorkerLost(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_past_its_limit_is_cut_on_a_character_boundary_and_marked() {
        assert_eq!(error_text("short".into()), "short");
        let fits = "a".repeat(ERROR_TEXT_BYTES_MAX);
        assert_eq!(error_text(fits.clone()), fits);
        let cut = error_text("é".repeat(ERROR_TEXT_BYTES_MAX));
        assert!(cut.len() <= ERROR_TEXT_BYTES_MAX, "{} bytes", cut.len());
        assert!(cut.len() > ERROR_TEXT_BYTES_MAX - 8, "{} bytes", cut.len());
        assert!(cut.starts_with("éé") && cut.ends_with('…'));
    }
}
