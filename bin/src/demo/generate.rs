//! The demo's pack: assets of all five formats generated in memory and written with
//! [`PackWriter`] (LZ4), with dependencies declared in the index.
//!
//! The dependency graph is the chain an engine streams: each mesh depends on one material,
//! each material on 1 to 3 textures (the same keys its bytes name). Entries are written
//! textures first, then materials, meshes, animations and blobs, so every dependency is
//! written before its dependants. After the pack is built one blob in 70 has a byte of its
//! stored data flipped in the file: the pack's checksum catches it when the entry is read,
//! so those loads fail with `Corrupt` while the rest of the pack keeps loading.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use streamrt::messages::AssetKey;
use streamrt::pack::{Codec, PackLimits, PackReader, PackWriter};

use crate::formats::{self, Animation, Material, Mesh};

/// The five asset types of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Texture,
    Material,
    Mesh,
    Animation,
    Blob,
}

/// The built pack and what the frame loop should ask of it.
pub(super) struct DemoPack {
    /// The pack file.
    pub path: PathBuf,
    /// Assets the frame loop requests directly, in the order it should: every mesh, animation
    /// and blob, one material and one texture in four, shuffled.
    pub direct: Vec<(Kind, AssetKey)>,
    /// Raw bytes of every asset, before compression.
    pub raw_bytes: u64,
    /// The pack file's length.
    pub pack_bytes: u64,
    /// Blobs whose stored bytes were damaged after the build.
    pub corrupt: usize,
}

impl Kind {
    /// The key of the `i`th asset of this kind.
    fn key(self, i: usize) -> String {
        match self {
            Self::Texture => format!("texture:textures/t{i:05}.tex"),
            Self::Material => format!("material:materials/m{i:05}.mat"),
            Self::Mesh => format!("mesh:meshes/m{i:05}.mesh"),
            Self::Animation => format!("animation:animations/a{i:05}.anim"),
            Self::Blob => format!("blob:blobs/b{i:05}.bin"),
        }
    }

    /// One asset in this many is requested directly. Textures and materials are mostly wanted
    /// through the meshes that depend on them, so only some are asked for by themselves.
    fn direct_one_in(self) -> usize {
        match self {
            Self::Texture | Self::Material => 4,
            Self::Mesh | Self::Animation | Self::Blob => 1,
        }
    }
}

/// Writes entries and remembers what the demo needs to know about them.
struct Builder<'a> {
    writer: PackWriter,
    rng: &'a mut fastrand::Rng,
    direct: Vec<(Kind, AssetKey)>,
    raw_bytes: u64,
}

impl Builder<'_> {
    /// Adds the `i`th asset of `kind`, depending on `deps`, and returns its key.
    fn add(
        &mut self,
        kind: Kind,
        i: usize,
        bytes: &[u8],
        deps: Vec<String>,
    ) -> anyhow::Result<AssetKey> {
        let key = kind.key(i);
        self.writer.add(&key, bytes, Codec::Lz4, deps)?;
        self.raw_bytes += bytes.len() as u64;
        let key = AssetKey::parse(&key)?;
        if self.rng.usize(..kind.direct_one_in()) == 0 {
            self.direct.push((kind, key.clone()));
        }
        Ok(key)
    }
}

/// Builds the pack of about `count` assets (at least one texture and one material) under
/// `dir`: a fifth textures, a tenth materials, a quarter meshes, 15 % animations, the rest
/// blobs.
pub(super) fn build(dir: &Path, count: usize, rng: &mut fastrand::Rng) -> anyhow::Result<DemoPack> {
    let path = dir.join("demo.pack");
    let writer = PackWriter::create(&path).context("creating the demo pack")?;
    let mut b = Builder { writer, rng, direct: Vec::new(), raw_bytes: 0 };
    let (textures, materials) = ((count / 5).max(1), (count / 10).max(1));
    let (meshes, animations) = (count / 4, count * 3 / 20);
    let blobs = count.saturating_sub(textures + materials + meshes + animations);
    let mut texture_keys = Vec::with_capacity(textures);
    for i in 0..textures {
        let side = 16u16 << b.rng.u8(0..5);
        let bytes = formats::encode_texture(side, side, 4, b.rng);
        texture_keys.push(b.add(Kind::Texture, i, &bytes, vec![])?);
    }
    let mut material_keys = Vec::with_capacity(materials);
    for i in 0..materials {
        let material = random_material(&texture_keys, b.rng);
        // The pack declares exactly the keys the material's bytes name.
        let deps = material.textures.iter().map(ToString::to_string).collect();
        material_keys.push(b.add(Kind::Material, i, &formats::encode_material(&material), deps)?);
    }
    for i in 0..meshes {
        let material = material_keys[b.rng.usize(..material_keys.len())].to_string();
        let bytes = formats::encode_mesh(&random_mesh(b.rng));
        b.add(Kind::Mesh, i, &bytes, vec![material])?;
    }
    for i in 0..animations {
        let bytes = formats::encode_animation(&random_animation(b.rng));
        b.add(Kind::Animation, i, &bytes, vec![])?;
    }
    let mut damaged = Vec::new();
    for i in 0..blobs {
        let payload: Vec<u8> = (0..b.rng.usize(1_024..64 * 1_024)).map(|_| b.rng.u8(..)).collect();
        let key = b.add(Kind::Blob, i, &formats::encode_blob(&payload), vec![])?;
        if b.rng.usize(..70) == 0 {
            damaged.push(key.to_string());
        }
    }
    let Builder { writer, rng, mut direct, raw_bytes } = b;
    let pack_bytes = writer.finish().context("writing the demo pack's index")?;
    damage(&path, &damaged, rng)?;
    rng.shuffle(&mut direct);
    Ok(DemoPack { path, direct, raw_bytes, pack_bytes, corrupt: damaged.len() })
}

/// Flips one byte inside the stored data of each of `keys`, leaving the header and the index
/// intact, so the pack still opens and only those entries fail their checksum.
fn damage(path: &Path, keys: &[String], rng: &mut fastrand::Rng) -> anyhow::Result<()> {
    let reader = PackReader::open(path, PackLimits::default())?;
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    for key in keys {
        let entry = reader.entry(key).with_context(|| format!("{key} is not in the pack"))?;
        let at = entry.offset + rng.u64(..entry.stored_size.max(1));
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, at)?;
        file.write_all_at(&[byte[0] ^ 0x5a], at)?;
    }
    file.sync_all()?;
    Ok(())
}

/// A material sampling 1 to 3 distinct textures of `textures` (which is not empty).
fn random_material(textures: &[AssetKey], rng: &mut fastrand::Rng) -> Material {
    let wanted = rng.usize(1..=3).min(textures.len());
    let mut picked: Vec<AssetKey> = Vec::with_capacity(wanted);
    while picked.len() < wanted {
        let key = &textures[rng.usize(..textures.len())];
        if !picked.contains(key) {
            picked.push(key.clone());
        }
    }
    Material {
        textures: picked,
        base_color: [rng.f32(), rng.f32(), rng.f32(), 1.0],
        roughness: rng.f32(),
    }
}

fn random_mesh(rng: &mut fastrand::Rng) -> Mesh {
    let nv = rng.usize(50..3_000);
    let vertices = (0..nv).map(|_| [rng.f32(), rng.f32(), rng.f32()]).collect();
    let indices = (0..nv * 3).map(|_| rng.u32(..nv as u32)).collect();
    Mesh { vertices, indices }
}

/// Keyframes at 30 per second over 1 to 24 channels, each rotation a unit quaternion.
fn random_animation(rng: &mut fastrand::Rng) -> Animation {
    let channels = rng.u16(1..=24);
    let keyframes = rng.usize(8..120);
    let times = (0..keyframes).map(|k| k as f32 / 30.0).collect();
    let rotations = (0..keyframes * usize::from(channels))
        .map(|_| {
            let q = [rng.f32() - 0.5, rng.f32() - 0.5, rng.f32() - 0.5, rng.f32() - 0.5];
            let norm = q.iter().map(|v| v * v).sum::<f32>().sqrt().max(f32::EPSILON);
            q.map(|v| v / norm)
        })
        .collect();
    Animation { channels, times, rotations }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{
        AnimationDecoder, BlobDecoder, MaterialDecoder, MeshDecoder, TextureDecoder,
    };
    use streamrt::Decoder;

    #[test]
    fn the_pack_declares_the_dependency_chain_and_every_undamaged_entry_decodes() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = fastrand::Rng::with_seed(3);
        let pack = build(dir.path(), 400, &mut rng).unwrap();
        let reader = PackReader::open(&pack.path, PackLimits::default()).unwrap();
        assert_eq!(reader.entries().len(), 400);
        let bad: Vec<String> = reader.verify().into_iter().map(|(key, _)| key).collect();
        assert_eq!(bad.len(), pack.corrupt);
        assert!(pack.corrupt > 0 && bad.iter().all(|k| k.starts_with("blob:")), "{bad:?}");
        for entry in reader.entries() {
            if bad.contains(&entry.key) {
                continue;
            }
            let key = AssetKey::parse(&entry.key).unwrap();
            let bytes = reader.read(entry);
            match key.asset_type().as_str() {
                "material" => {
                    let material = MaterialDecoder.decode(&key, bytes.unwrap()).unwrap();
                    let named: Vec<String> =
                        material.textures.iter().map(ToString::to_string).collect();
                    assert_eq!(named, entry.deps, "{key}");
                }
                "mesh" => {
                    MeshDecoder.decode(&key, bytes.unwrap()).unwrap();
                    assert_eq!(entry.deps.len(), 1, "{key}");
                    assert!(entry.deps[0].starts_with("material:"), "{key}");
                }
                kind => {
                    let bytes = bytes.unwrap();
                    let decoded = match kind {
                        "texture" => TextureDecoder.decode(&key, bytes).map(drop),
                        "animation" => AnimationDecoder.decode(&key, bytes).map(drop),
                        _ => BlobDecoder.decode(&key, bytes).map(drop),
                    };
                    assert_eq!(decoded, Ok(()), "{key}");
                    assert!(entry.deps.is_empty(), "{key}");
                }
            }
        }
        let direct = |kind| pack.direct.iter().filter(|(k, _)| *k == kind).count();
        assert_eq!(direct(Kind::Mesh), 100);
        assert!(direct(Kind::Texture) > 0 && direct(Kind::Texture) < 80);
    }
}
