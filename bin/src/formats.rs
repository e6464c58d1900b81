//! The asset types `streamctl` generates and decodes: checksummed blobs, meshes, textures,
//! animations and materials (which depend on textures).
//!
//! Each format is small and strict: a decoder rejects bytes whose sizes, indices or checksum do
//! not add up with a typed error, never a panic. As the `Decoder` trait asks, bytes not laid out
//! as the format says are `Malformed` (no magic, a truncation, a count that does not fit the
//! bytes, bytes left over, a key that is not UTF-8, a blob with no room for its checksum); a
//! value that breaks a rule of its type is `Validation` (an index or a range, a non-finite
//! number, a blob's checksum). Fields are read through [`reader::Reader`], which checks every
//! length. A header's own ranges (a texture's sides and levels, a material's texture count)
//! are checked as they are read, before the bytes after them: one out of range is `Validation`
//! even where the rest would not fit either. Counts the rest of the bytes is measured against
//! (a mesh's, an animation's) are checked against them first.
//!
//! | type | layout (little-endian) |
//! |---|---|
//! | `blob` | payload, then CRC-32 of the payload (4 bytes) |
//! | `mesh` | `MESH`, vertex count (u32), index count (u32, in threes, at least one triangle), vertices (3 finite f32 each), indices (u32, each naming a vertex) |
//! | `texture` | `TEX0`, width (u16, not 0), height (u16, not 0), mip count (u8, 1..=16, down to 1×1 at most), RGBA8 mip chain, largest first |
//! | `animation` | `ANIM`, channel count (u16, not 0), keyframe count (u32, not 0), keyframes: time (f32 s), then one rotation (4 × f32) per channel |
//! | `material` | `MAT0`, texture count (u8, 1..=8), texture keys (u16 length, UTF-8 `texture:path`), base colour (4 × f32), roughness (f32, 0..=1) |

mod animation;
mod blob;
mod material;
mod mesh;
mod reader;
mod texture;

pub use animation::{encode_animation, Animation, AnimationDecoder};
pub use blob::{encode_blob, Blob, BlobDecoder};
pub use material::{encode_material, Material, MaterialDecoder};
pub use mesh::{encode_mesh, Mesh, MeshDecoder};
pub use texture::{encode_texture, Texture, TextureDecoder};

#[cfg(test)]
mod tests {
    use streamrt::messages::AssetKey;
    use streamrt::Decoder;

    use super::*;

    /// Decodes `bytes` as `decoder`'s type: an error of either kind, or a value whose claimed
    /// size is within what the bytes could hold (a decoder allocates no more than its input).
    fn check<D: Decoder>(decoder: &D, bytes: &[u8]) -> Result<(), String> {
        let key = AssetKey::parse(&format!("{}:fuzz", decoder.type_name())).unwrap();
        match decoder.decode(&key, bytes.to_vec()) {
            Ok(asset) => {
                let size = decoder.size_bytes(&asset);
                // A material's keys are counted with their allocations' overhead.
                let room = bytes.len() as u64 * 2 + 4096;
                (size <= room).then_some(()).ok_or(format!("{size} bytes from {}", bytes.len()))
            }
            // Any error: a decoder refuses bad bytes, it does not panic on them.
            Err(_) => Ok(()),
        }
    }

    /// Valid encodings of every format, to mutate.
    fn seeds(rng: &mut fastrand::Rng) -> Vec<Vec<u8>> {
        let texture = AssetKey::parse("texture:t/a.tex").unwrap();
        let mesh = Mesh { vertices: vec![[0.5; 3]; 5], indices: vec![0, 1, 2, 2, 3, 4] };
        let anim = Animation {
            channels: 2,
            times: vec![0.0, 0.5],
            rotations: vec![[0.0, 0.0, 0.0, 1.0]; 4],
        };
        let material = Material { textures: vec![texture], base_color: [1.0; 4], roughness: 0.5 };
        vec![
            encode_blob(b"hostile"),
            encode_mesh(&mesh),
            encode_texture(4, 2, 3, rng),
            encode_animation(&anim),
            encode_material(&material),
        ]
    }

    #[test]
    fn no_hostile_bytes_make_a_decoder_panic_or_claim_more_than_its_input() {
        let mut rng = fastrand::Rng::with_seed(7);
        let seeds = seeds(&mut rng);
        for round in 0..20_000 {
            let mut bytes = seeds[round % seeds.len()].clone();
            // Flip, cut or grow the encoding, a few times over.
            for _ in 0..rng.usize(1..4) {
                match rng.u8(..3) {
                    0 if !bytes.is_empty() => {
                        let at = rng.usize(..bytes.len());
                        bytes[at] = rng.u8(..);
                    }
                    1 => bytes.truncate(rng.usize(..=bytes.len())),
                    _ => bytes.extend((0..rng.usize(..8)).map(|_| rng.u8(..))),
                }
            }
            let checked = [
                check(&BlobDecoder, &bytes),
                check(&MeshDecoder, &bytes),
                check(&TextureDecoder, &bytes),
                check(&AnimationDecoder, &bytes),
                check(&MaterialDecoder, &bytes),
            ];
            for result in checked {
                assert!(result.is_ok(), "round {round}, {bytes:02x?}: {result:?}");
            }
        }
    }
}
