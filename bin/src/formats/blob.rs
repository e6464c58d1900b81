//! `blob`: an opaque payload followed by the CRC-32 of the payload (4 bytes, little-endian).
//!
//! The only format with its own checksum, so damage to a blob is always caught by its
//! decoder even when the bytes come from a source without checksums (a directory).

use streamrt::messages::AssetKey;
use streamrt::{DecodeError, Decoder};

/// A checksummed blob's payload.
#[derive(Debug)]
pub struct Blob(pub Vec<u8>);

/// Decodes `blob` assets, verifying their checksum.
pub struct BlobDecoder;

/// Encodes a blob: the payload followed by its CRC-32.
pub fn encode_blob(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(payload);
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out
}

impl Decoder for BlobDecoder {
    type Asset = Blob;

    fn type_name(&self) -> &str {
        "blob"
    }

    fn decode(&self, _: &AssetKey, bytes: Vec<u8>) -> Result<Blob, DecodeError> {
        // The payload holds what `size_bytes` says, give or take the helper's small slack.
        streamrt::verify_crc32_trailer(bytes).map(Blob)
    }

    fn size_bytes(&self, blob: &Blob) -> u64 {
        blob.0.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AssetKey {
        AssetKey::parse("blob:x").unwrap()
    }

    #[test]
    fn a_blob_holds_no_more_memory_than_its_size_says() {
        let mut bytes = Vec::with_capacity(1 << 20);
        bytes.extend(encode_blob(b"x"));
        let blob = BlobDecoder.decode(&key(), bytes).unwrap();
        assert!(blob.0.capacity() as u64 <= BlobDecoder.size_bytes(&blob), "{}", blob.0.capacity());
    }

    #[test]
    fn blobs_round_trip_and_a_flipped_byte_is_caught() {
        let mut bytes = encode_blob(b"hello");
        assert_eq!(BlobDecoder.decode(&key(), bytes.clone()).unwrap().0, b"hello");
        bytes[1] ^= 1;
        assert!(matches!(BlobDecoder.decode(&key(), bytes), Err(DecodeError::Validation(_))));
        assert!(matches!(BlobDecoder.decode(&key(), vec![1, 2]), Err(DecodeError::Malformed(_))));
    }

    /// A blob has no length of its own: cut short, it is too short for its checksum
    /// (`Malformed`) or its checksum no longer matches what is left (`Validation`).
    #[test]
    fn every_truncated_blob_is_refused() {
        let bytes = encode_blob(b"hello, world");
        for len in 0..bytes.len() {
            let result = BlobDecoder.decode(&key(), bytes[..len].to_vec());
            match len {
                0..4 => assert!(matches!(result, Err(DecodeError::Malformed(_))), "{len}"),
                _ => assert!(matches!(result, Err(DecodeError::Validation(_))), "{len}"),
            }
        }
    }
}
