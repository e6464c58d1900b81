//! The asset types `streamctl` generates and decodes: checksummed blobs, meshes, textures,
//! animations and materials (which depend on textures).
//!
//! Each format is small and strict: a decoder rejects bytes whose sizes, indices or checksum do
//! not add up with a typed error, never a panic. As the `Decoder` trait asks, bytes not laid out
//! as the format says are `Malformed` (no magic, a truncation, a count that does not fit the
//! bytes, bytes left over, a key that is not UTF-8, a blob with no room for its checksum); a
//! value that breaks a rule of its type is `Validation` (an index or a range, a non-finite
//! number, a blob's checksum). Fields are read through [`reader::Reader`], which checks every
//! length.
//!
//! | type | layout (little-endian) |
//! |---|---|
//! | `blob` | payload, then CRC-32 of the payload (4 bytes) |
//! | `mesh` | `MESH`, vertex count (u32), index count (u32, in threes), vertices (3 finite f32 each), indices (u32, each naming a vertex) |
//! | `texture` | `TEX0`, width (u16, not 0), height (u16, not 0), mip count (u8, 1..=16, down to 1×1 at most), RGBA8 mip chain, largest first |
//! | `animation` | `ANIM`, channel count (u16), keyframe count (u32), keyframes: time (f32 s), then one rotation (4 × f32) per channel |
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
