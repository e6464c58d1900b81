//! Asset types: how bytes become a value, and how big that value is.

use streamrt_messages::{error_text, AssetKey, ErrorKind};

/// The most bytes one decoded asset counts for in the memory budget: 1 TiB. A decoder's size
/// is its own code's claim; clamped, the budget's sums stay exact for millions of assets, where
/// two claims of `u64::MAX` overflowed them.
pub const ASSET_BYTES_MAX: u64 = 1 << 40;

/// Decodes one asset type. Registered once per type with the runtime builder; runs on the
/// decode worker threads (and on the IO worker that read a `High` or `Critical` load), several
/// calls at once.
///
/// A decoder may panic: the panic is caught and the worker that ran it is rebuilt; the load is
/// retried until its key has panicked `panics_max` times (`RetryPolicy`), and its requests then
/// fail with `Quarantined`. It must not block on other work of the runtime.
pub trait Decoder: Send + Sync + 'static {
    /// The decoded value handles give out (shared behind an `Arc`).
    type Asset: Send + Sync + 'static;

    /// The type's name in keys: `mesh` in `mesh:props/chair.mesh`. 1 to 32 of `[a-z0-9_-]`.
    fn type_name(&self) -> &str;

    /// Turns the stored bytes of `key` into a value.
    ///
    /// # Errors
    ///
    /// [`DecodeError::Malformed`] when the bytes are not this type's format,
    /// [`DecodeError::Validation`] when they parse but break a rule of the type.
    fn decode(&self, key: &AssetKey, bytes: Vec<u8>) -> Result<Self::Asset, DecodeError>;

    /// The bytes the value keeps resident, for the memory budget and telemetry. A claim over
    /// [`ASSET_BYTES_MAX`] counts as that.
    fn size_bytes(&self, asset: &Self::Asset) -> u64;
}

/// Why a decoder refused its bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes are not in this type's format.
    #[error("malformed: {0}")]
    Malformed(String),
    /// The bytes parse but break a rule of the type.
    #[error("invalid: {0}")]
    Validation(String),
}

impl From<DecodeError> for ErrorKind {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Malformed(m) => ErrorKind::Decode(error_text(m)),
            DecodeError::Validation(m) => ErrorKind::Validation(error_text(m)),
        }
    }
}

/// Spare room a verified payload may keep past its bytes, in bytes: an exact read's (the
/// checksum's 4) is kept, as giving it back would cost a reallocation for each payload.
const PAYLOAD_SLACK_BYTES: usize = 64;

/// Splits a payload from its trailing CRC-32 (little-endian) and checks it: the layout of
/// `streamctl`'s blobs and of the chaos run's assets.
///
/// # Errors
///
/// [`DecodeError::Malformed`] when there is no room for a checksum, [`DecodeError::Validation`]
/// when the checksum does not match.
pub fn verify_crc32_trailer(mut bytes: Vec<u8>) -> Result<Vec<u8>, DecodeError> {
    let Some(split) = bytes.len().checked_sub(4) else {
        return Err(DecodeError::Malformed(format!("{} bytes, no checksum", bytes.len())));
    };
    let stored = u32::from_le_bytes(bytes[split..].try_into().expect("4 bytes"));
    bytes.truncate(split);
    let actual = crc32fast::hash(&bytes);
    if stored != actual {
        return Err(DecodeError::Validation(format!(
            "checksum {actual:08x} does not match the stored {stored:08x}"
        )));
    }
    // The payload keeps the buffer it came in: past a little slack (the checksum's 4 bytes, an
    // exact read's), its spare room is given back, so that a value holding the payload holds
    // what its length says (a file of sysfs tells 4096 bytes and holds a few, and a buffer
    // sized for 4096 would be held uncounted as long as the value is).
    if bytes.capacity() - bytes.len() > PAYLOAD_SLACK_BYTES {
        bytes.shrink_to_fit();
    }
    Ok(bytes)
}
