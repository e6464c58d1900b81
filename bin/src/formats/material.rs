//! `material`: a base colour, a roughness and the textures the material samples.
//!
//! Layout: `MAT0`, texture count (u8, 1..=8), each texture key as its length (u16) and its
//! UTF-8 text (`texture:path`), then the base colour (4 × f32) and the roughness (f32).
//!
//! Invariants of a decoded [`Material`]: 1 to [`TEXTURES_MAX`] distinct keys, each a valid
//! [`AssetKey`] of type `texture`; a finite base colour; a roughness in `0..=1`. The keys are
//! the material's dependencies: whoever builds a pack declares the same keys in the material's
//! index entry, so the runtime can load them before it publishes the material.

use std::collections::HashSet;

use streamrt::messages::{AssetKey, ASSET_PATH_BYTES_MAX, ASSET_TYPE_BYTES_MAX};
use streamrt::{DecodeError, Decoder};

use super::reader::Reader;

/// The most textures one material may sample.
pub const TEXTURES_MAX: usize = 8;

// Every valid key's text (`type:path`) fits the u16 length field, so the encoder's cast below
// never truncates.
const _: () = assert!(ASSET_TYPE_BYTES_MAX + 1 + ASSET_PATH_BYTES_MAX <= u16::MAX as usize);

/// A material; see the module docs for the invariants a decoded one holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Material {
    /// The textures it samples, which are also its dependencies.
    pub textures: Vec<AssetKey>,
    /// Linear RGBA.
    pub base_color: [f32; 4],
    /// 0 (mirror) to 1 (fully rough).
    pub roughness: f32,
}

/// Decodes `material` assets.
pub struct MaterialDecoder;

/// Encodes `material` as given. A texture count over 255 is written as 255, which the decoder
/// refuses like any count over [`TEXTURES_MAX`].
pub fn encode_material(material: &Material) -> Vec<u8> {
    let mut out = b"MAT0".to_vec();
    out.push(u8::try_from(material.textures.len()).unwrap_or(u8::MAX));
    for key in &material.textures {
        let text = key.to_string();
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    for value in material.base_color.iter().chain([&material.roughness]) {
        out.extend_from_slice(&value.to_le_bytes());
    }
    out
}

/// Reads the texture count and keys, refusing what breaks the module's invariants.
fn read_textures(r: &mut Reader<'_>) -> Result<Vec<AssetKey>, DecodeError> {
    let count = usize::from(r.u8()?);
    if !(1..=TEXTURES_MAX).contains(&count) {
        return Err(DecodeError::Validation(format!("{count} textures, want 1 to {TEXTURES_MAX}")));
    }
    let mut textures = Vec::with_capacity(count);
    let mut seen = HashSet::with_capacity(count);
    for i in 0..count {
        let len = usize::from(r.u16()?);
        let text = std::str::from_utf8(r.take(len)?)
            .map_err(|e| DecodeError::Malformed(format!("texture {i}: key is not UTF-8: {e}")))?;
        let key = AssetKey::parse(text)
            .map_err(|e| DecodeError::Validation(format!("texture {i}: {e}")))?;
        if key.asset_type().as_str() != "texture" {
            return Err(DecodeError::Validation(format!("texture {i}: {key} is not a texture")));
        }
        if !seen.insert(key.clone()) {
            return Err(DecodeError::Validation(format!("texture {i}: {key} named twice")));
        }
        textures.push(key);
    }
    Ok(textures)
}

impl Decoder for MaterialDecoder {
    type Asset = Material;

    fn type_name(&self) -> &str {
        "material"
    }

    fn decode(&self, _: &AssetKey, bytes: Vec<u8>) -> Result<Material, DecodeError> {
        let mut r = Reader::after_magic(&bytes, b"MAT0")?;
        let textures = read_textures(&mut r)?;
        let base_color = r.f32s::<4>()?;
        if !base_color.iter().all(|v| v.is_finite()) {
            return Err(DecodeError::Validation(format!("base colour {base_color:?}")));
        }
        let roughness = r.f32()?;
        // `contains` is false for NaN, so this also refuses a non-finite roughness.
        if !(0.0..=1.0).contains(&roughness) {
            return Err(DecodeError::Validation(format!("roughness {roughness}, want 0 to 1")));
        }
        r.finish("roughness")?;
        Ok(Material { textures, base_color, roughness })
    }

    fn size_bytes(&self, material: &Material) -> u64 {
        // Each key's path and type name live behind allocations of their own (each parsed key
        // made its own), with an `Arc`'s two counts each.
        let behind = |k: &AssetKey| k.path().len() + k.asset_type().as_str().len() + 32;
        let paths: usize = material.textures.iter().map(behind).sum();
        let keys = material.textures.len() * std::mem::size_of::<AssetKey>();
        (std::mem::size_of::<Material>() + keys + paths) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::reader::assert_every_truncation_refused;

    fn key() -> AssetKey {
        AssetKey::parse("material:x").unwrap()
    }

    fn texture(name: &str) -> AssetKey {
        AssetKey::parse(&format!("texture:{name}")).unwrap()
    }

    fn brick() -> Material {
        Material {
            textures: vec![texture("brick/albedo.tex"), texture("brick/normal.tex")],
            base_color: [0.8, 0.3, 0.2, 1.0],
            roughness: 0.7,
        }
    }

    fn decode(bytes: Vec<u8>) -> Result<Material, DecodeError> {
        MaterialDecoder.decode(&key(), bytes)
    }

    fn refused(bytes: Vec<u8>) -> bool {
        matches!(decode(bytes), Err(DecodeError::Validation(_)))
    }

    fn malformed(bytes: Vec<u8>) -> bool {
        matches!(decode(bytes), Err(DecodeError::Malformed(_)))
    }

    /// A material with `keys` written as raw bytes, so keys that are not valid can be tested.
    fn raw(keys: &[&[u8]]) -> Vec<u8> {
        let mut out = b"MAT0".to_vec();
        out.push(keys.len() as u8);
        for k in keys {
            out.extend_from_slice(&(k.len() as u16).to_le_bytes());
            out.extend_from_slice(k);
        }
        out.extend([1.0f32, 1.0, 1.0, 1.0, 0.5].iter().flat_map(|v| v.to_le_bytes()));
        out
    }

    #[test]
    fn materials_round_trip() {
        assert_eq!(decode(encode_material(&brick())).unwrap(), brick());
        assert_eq!(decode(raw(&[b"texture:a"])).unwrap().textures, [texture("a")]);
    }

    #[test]
    fn texture_counts_outside_one_to_eight_are_rejected() {
        assert!(refused(encode_material(&Material { textures: vec![], ..brick() })));
        let nine = (0..9).map(|i| texture(&format!("t{i}"))).collect();
        assert!(refused(encode_material(&Material { textures: nine, ..brick() })));
        let eight = (0..8).map(|i| texture(&format!("t{i}"))).collect();
        assert!(decode(encode_material(&Material { textures: eight, ..brick() })).is_ok());
    }

    #[test]
    fn keys_must_be_valid_distinct_texture_keys() {
        for bad in
            [b"mesh:a".as_slice(), b"texture:../a", b"texture:/etc/passwd", b"no-type", b"texture:"]
        {
            assert!(refused(raw(&[bad])), "{}", String::from_utf8_lossy(bad));
        }
        assert!(malformed(raw(&[b"texture:\xff"])), "not UTF-8: not this format's text");
        assert!(refused(raw(&[b"texture:a", b"texture:a"])));
    }

    #[test]
    fn colours_and_roughness_must_be_in_range() {
        for roughness in [-0.1, 1.1, f32::NAN, f32::INFINITY] {
            assert!(refused(encode_material(&Material { roughness, ..brick() })), "{roughness}");
        }
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let base_color = [1.0, bad, 1.0, 1.0];
            assert!(refused(encode_material(&Material { base_color, ..brick() })), "{bad}");
        }
        assert!(decode(encode_material(&Material { roughness: 0.0, ..brick() })).is_ok());
        assert!(decode(encode_material(&Material { roughness: 1.0, ..brick() })).is_ok());
    }

    #[test]
    fn lying_lengths_and_trailing_bytes_are_rejected() {
        let bytes = encode_material(&brick());
        let mut long_key = bytes.clone();
        long_key[5..7].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(malformed(long_key));
        let mut short_key = bytes.clone();
        short_key[5] -= 1;
        assert!(decode(short_key).is_err());
        let mut trailing = bytes;
        trailing.push(0);
        assert!(malformed(trailing));
    }

    #[test]
    fn every_truncated_material_is_refused() {
        assert_every_truncation_refused(&encode_material(&brick()), decode);
    }
}
