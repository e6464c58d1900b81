//! `texture`: an RGBA8 texture with its mip chain, largest first.
//!
//! Layout: `TEX0`, width (u16), height (u16), mip count (u8, 1..=16), then each mip's texels.
//! Mip `l` is `max(width >> l, 1)` × `max(height >> l, 1)` texels of 4 bytes; the decoder
//! refuses a zero size, a mip count out of range, and a chain whose sizes do not add up to
//! exactly the bytes given.

use streamrt::messages::AssetKey;
use streamrt::{DecodeError, Decoder};

use super::reader::Reader;

/// The most mip levels a texture may declare: enough for a 65535-texel side.
const MIPS_MAX: u8 = 16;

/// An RGBA8 texture with its mip chain.
#[derive(Debug)]
pub struct Texture {
    /// Width of mip 0 in texels.
    pub width: u16,
    /// Height of mip 0 in texels.
    pub height: u16,
    /// Each mip's texels, largest first; never empty once decoded.
    pub mips: Vec<Vec<u8>>,
}

/// Decodes `texture` assets.
pub struct TextureDecoder;

/// Bytes of mip `level`, in u64: a 65535 × 65535 header claims more than a 32-bit `usize`
/// holds, and a lying header must be refused, not overflow.
fn mip_bytes(width: u16, height: u16, level: u8) -> u64 {
    // Past level 63 a shift would overflow (a panic in a debug build): every side is 1 there.
    let side = |s: u16| u64::from(s).checked_shr(u32::from(level)).unwrap_or(0).max(1);
    side(width) * side(height) * 4
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
        let mut r = Reader::after_magic(&bytes, b"TEX0")?;
        let (width, height, mips) = (r.u16()?, r.u16()?, r.u8()?);
        // A chain stops at its 1x1 level: a 4x4 texture has 3 levels (4, 2, 1), never more.
        let levels = 16 - width.max(height).leading_zeros() as u8;
        if width == 0 || height == 0 || mips == 0 || mips > MIPS_MAX || mips > levels {
            return Err(DecodeError::Validation(format!("{width}x{height} with {mips} mips")));
        }
        let sizes: Vec<u64> = (0..mips).map(|l| mip_bytes(width, height, l)).collect();
        if sizes.iter().sum::<u64>() != r.remaining() as u64 {
            return Err(DecodeError::Malformed(format!(
                "mip chain of {width}x{height}x{mips} does not fit {} bytes",
                bytes.len()
            )));
        }
        // Every size is at most the bytes left, checked above, so `as usize` is lossless.
        let chain = sizes
            .iter()
            .map(|&n| r.take(n as usize).map(<[u8]>::to_vec))
            .collect::<Result<_, _>>()?;
        Ok(Texture { width, height, mips: chain })
    }

    fn size_bytes(&self, t: &Texture) -> u64 {
        // The decoder sized the chain from the header, so only a texture built by hand could
        // disagree; the texels are counted, not the list of levels (16 at most).
        debug_assert_eq!(
            t.mips.first().map(Vec::len),
            Some(mip_bytes(t.width, t.height, 0) as usize)
        );
        t.mips.iter().map(|m| m.len() as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::reader::assert_every_truncation_refused;

    fn key() -> AssetKey {
        AssetKey::parse("texture:x").unwrap()
    }

    #[test]
    fn textures_round_trip_and_inconsistent_chains_are_rejected() {
        let mut rng = fastrand::Rng::with_seed(1);
        let bytes = encode_texture(8, 4, 3, &mut rng);
        let t = TextureDecoder.decode(&key(), bytes.clone()).unwrap();
        assert_eq!(t.mips.iter().map(Vec::len).collect::<Vec<_>>(), [128, 32, 8]);
        assert_eq!(t.mips.concat(), bytes[9..]);
        let mut lying = bytes.clone();
        lying[8] = 4;
        assert!(matches!(TextureDecoder.decode(&key(), lying), Err(DecodeError::Malformed(_))));
        let mut long = bytes;
        long.push(0);
        assert!(matches!(TextureDecoder.decode(&key(), long), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn a_chain_down_to_its_one_texel_level_is_accepted() {
        let mut rng = fastrand::Rng::with_seed(2);
        for (w, h, mips) in [(4, 4, 3), (8, 2, 4), (1, 1, 1), (u16::MAX, 1, MIPS_MAX)] {
            let bytes = encode_texture(w, h, mips, &mut rng);
            assert!(TextureDecoder.decode(&key(), bytes).is_ok(), "{w}x{h}x{mips}");
        }
    }

    #[test]
    fn zero_sizes_and_too_many_mips_are_rejected() {
        let mut rng = fastrand::Rng::with_seed(2);
        // 200 levels: past 64, where a level's sides can no longer be shifted down.
        for (w, h, mips) in [
            (0, 4, 1),
            (4, 0, 1),
            (4, 4, 0),
            (4, 4, MIPS_MAX + 1),
            (4, 4, 4),
            (1, 1, 2),
            (4, 4, 200),
        ] {
            let bytes = encode_texture(w, h, mips, &mut rng);
            let result = TextureDecoder.decode(&key(), bytes);
            assert!(matches!(result, Err(DecodeError::Validation(_))), "{w}x{h}x{mips}");
        }
    }

    #[test]
    fn every_truncated_texture_is_refused() {
        let bytes = encode_texture(4, 4, 3, &mut fastrand::Rng::with_seed(3));
        assert_every_truncation_refused(&bytes, |b| TextureDecoder.decode(&key(), b));
    }
}
