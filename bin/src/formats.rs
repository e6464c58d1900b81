//! The asset types `streamctl` generates and decodes: checksummed blobs, meshes and textures.
//!
//! Each format is small and strict: a decoder rejects bytes whose sizes, indices or checksum do
//! not add up with a typed `Malformed` or `Validation` error, never a panic.
//!
//! | type | layout (little-endian) |
//! |---|---|
//! | `blob` | payload, then CRC-32 of the payload (4 bytes) |
//! | `mesh` | `MESH`, vertex count (u32), index count (u32), vertices (3 × f32 each), indices (u32) |
//! | `texture` | `TEX0`, width (u16), height (u16), mip count (u8), RGBA8 mip chain, largest first |

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
        streamrt::verify_crc32_trailer(bytes).map(Blob)
    }

    fn size_bytes(&self, blob: &Blob) -> u64 {
        blob.0.len() as u64
    }
}

/// A triangle mesh.
#[derive(Debug)]
pub struct Mesh {
    /// Vertex positions.
    pub vertices: Vec<[f32; 3]>,
    /// Triangle indices into `vertices`.
    pub indices: Vec<u32>,
}

/// Decodes `mesh` assets.
pub struct MeshDecoder;

/// Encodes a mesh.
pub fn encode_mesh(mesh: &Mesh) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + mesh.vertices.len() * 12 + mesh.indices.len() * 4);
    out.extend_from_slice(b"MESH");
    out.extend_from_slice(&(mesh.vertices.len() as u32).to_le_bytes());
    out.extend_from_slice(&(mesh.indices.len() as u32).to_le_bytes());
    for v in &mesh.vertices {
        for c in v {
            out.extend_from_slice(&c.to_le_bytes());
        }
    }
    for i in &mesh.indices {
        out.extend_from_slice(&i.to_le_bytes());
    }
    out
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

impl Decoder for MeshDecoder {
    type Asset = Mesh;

    fn type_name(&self) -> &str {
        "mesh"
    }

    fn decode(&self, _: &AssetKey, bytes: Vec<u8>) -> Result<Mesh, DecodeError> {
        if bytes.len() < 12 || &bytes[..4] != b"MESH" {
            return Err(DecodeError::Malformed("no MESH header".into()));
        }
        let (nv, ni) = (u32_at(&bytes, 4) as usize, u32_at(&bytes, 8) as usize);
        let want = nv.checked_mul(12).and_then(|v| ni.checked_mul(4).map(|i| 12 + v + i));
        if want != Some(bytes.len()) {
            return Err(DecodeError::Validation(format!(
                "{nv} vertices and {ni} indices do not fit {} bytes",
                bytes.len()
            )));
        }
        let f = |at: usize| f32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let vertices = (0..nv).map(|v| [f(12 + v * 12), f(16 + v * 12), f(20 + v * 12)]).collect();
        let base = 12 + nv * 12;
        let indices: Vec<u32> = (0..ni).map(|i| u32_at(&bytes, base + i * 4)).collect();
        if let Some(bad) = indices.iter().find(|&&i| i as usize >= nv) {
            return Err(DecodeError::Validation(format!("index {bad} out of {nv} vertices")));
        }
        Ok(Mesh { vertices, indices })
    }

    fn size_bytes(&self, mesh: &Mesh) -> u64 {
        (mesh.vertices.len() * 12 + mesh.indices.len() * 4) as u64
    }
}

/// An RGBA8 texture with its mip chain.
#[derive(Debug)]
pub struct Texture {
    /// Width of mip 0 in texels.
    pub width: u16,
    /// Height of mip 0 in texels.
    pub height: u16,
    /// Each mip's texels, largest first.
    pub mips: Vec<Vec<u8>>,
}

/// Decodes `texture` assets.
pub struct TextureDecoder;

fn mip_bytes(width: u16, height: u16, level: u8) -> usize {
    let w = (usize::from(width) >> level).max(1);
    let h = (usize::from(height) >> level).max(1);
    w * h * 4
}

/// Encodes a texture of `width` × `height` with `mips` levels of pseudo-random texels.
pub fn encode_texture(width: u16, height: u16, mips: u8, rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"TEX0");
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes());
    out.push(mips);
    for level in 0..mips {
        out.extend((0..mip_bytes(width, height, level)).map(|_| rng.u8(..)));
    }
    out
}

impl Decoder for TextureDecoder {
    type Asset = Texture;

    fn type_name(&self) -> &str {
        "texture"
    }

    fn decode(&self, _: &AssetKey, bytes: Vec<u8>) -> Result<Texture, DecodeError> {
        if bytes.len() < 9 || &bytes[..4] != b"TEX0" {
            return Err(DecodeError::Malformed("no TEX0 header".into()));
        }
        let width = u16::from_le_bytes([bytes[4], bytes[5]]);
        let height = u16::from_le_bytes([bytes[6], bytes[7]]);
        let mips = bytes[8];
        if width == 0 || height == 0 || mips == 0 || mips > 16 {
            return Err(DecodeError::Validation(format!("{width}x{height} with {mips} mips")));
        }
        let sizes: Vec<usize> = (0..mips).map(|l| mip_bytes(width, height, l)).collect();
        if 9 + sizes.iter().sum::<usize>() != bytes.len() {
            return Err(DecodeError::Validation(format!(
                "mip chain of {width}x{height}x{mips} does not fit {} bytes",
                bytes.len()
            )));
        }
        let mut at = 9;
        let chain = sizes
            .iter()
            .map(|&n| {
                at += n;
                bytes[at - n..at].to_vec()
            })
            .collect();
        Ok(Texture { width, height, mips: chain })
    }

    fn size_bytes(&self, t: &Texture) -> u64 {
        debug_assert_eq!(t.mips[0].len(), mip_bytes(t.width, t.height, 0));
        t.mips.iter().map(|m| m.len() as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamrt::messages::AssetKey;

    fn key() -> AssetKey {
        AssetKey::parse("blob:x").unwrap()
    }

    #[test]
    fn blobs_round_trip_and_a_flipped_byte_is_caught() {
        let mut bytes = encode_blob(b"hello");
        assert_eq!(BlobDecoder.decode(&key(), bytes.clone()).unwrap().0, b"hello");
        bytes[1] ^= 1;
        assert!(matches!(BlobDecoder.decode(&key(), bytes), Err(DecodeError::Validation(_))));
        assert!(matches!(BlobDecoder.decode(&key(), vec![1, 2]), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn meshes_round_trip_and_out_of_range_indices_are_rejected() {
        let mesh = Mesh { vertices: vec![[0.0; 3], [1.0; 3], [2.0; 3]], indices: vec![0, 1, 2] };
        let decoded = MeshDecoder.decode(&key(), encode_mesh(&mesh)).unwrap();
        assert_eq!(decoded.indices, mesh.indices);
        let bad = Mesh { indices: vec![0, 1, 3], ..mesh };
        assert!(matches!(
            MeshDecoder.decode(&key(), encode_mesh(&bad)),
            Err(DecodeError::Validation(_))
        ));
        let mut short = encode_mesh(&bad);
        short.pop();
        assert!(matches!(MeshDecoder.decode(&key(), short), Err(DecodeError::Validation(_))));
    }

    #[test]
    fn textures_round_trip_and_inconsistent_chains_are_rejected() {
        let mut rng = fastrand::Rng::with_seed(1);
        let bytes = encode_texture(8, 4, 3, &mut rng);
        let t = TextureDecoder.decode(&key(), bytes.clone()).unwrap();
        assert_eq!(t.mips.iter().map(Vec::len).collect::<Vec<_>>(), [128, 32, 8]);
        let mut lying = bytes;
        lying[8] = 4;
        assert!(matches!(TextureDecoder.decode(&key(), lying), Err(DecodeError::Validation(_))));
    }
}
