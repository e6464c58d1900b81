//! `animation`: rotation keyframes for a fixed set of channels (bones, say).
//!
//! Layout: `ANIM`, channel count (u16), keyframe count (u32), then each keyframe: its time
//! (f32 seconds) followed by one rotation quaternion ([f32; 4]) per channel.
//!
//! Invariants of a decoded [`Animation`]: at least one channel and one keyframe (checked once
//! the counts fit the bytes, so a count that does not is `Malformed`); `rotations` holds exactly
//! `channels` entries per keyframe, keyframe-major; times strictly increase (a player can
//! binary-search them and never divides by a zero interval); every value is finite. The
//! decoder checks the counts against the byte length before it allocates anything.

use streamrt::messages::AssetKey;
use streamrt::{DecodeError, Decoder};

use super::reader::Reader;

/// Bytes of the fixed header: magic, channel count, keyframe count.
const HEADER_BYTES: usize = 10;
/// Bytes of one rotation.
const ROTATION_BYTES: usize = 16;

/// Rotation keyframes; see the module docs for the invariants a decoded one holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Animation {
    /// Channels animated by every keyframe.
    pub channels: u16,
    /// Each keyframe's time in seconds.
    pub times: Vec<f32>,
    /// `channels` rotations per keyframe, keyframe after keyframe.
    pub rotations: Vec<[f32; 4]>,
}

/// Decodes `animation` assets.
pub struct AnimationDecoder;

/// Encodes `anim` as given, for tests of the decoder too: each keyframe's row of `channels`
/// rotations is written if `rotations` holds it whole, and left out otherwise (a decoder then
/// refuses the bytes, which no longer fit); rotations past the last keyframe's are not written.
pub fn encode_animation(anim: &Animation) -> Vec<u8> {
    let channels = usize::from(anim.channels);
    let mut out = Vec::with_capacity(
        HEADER_BYTES + anim.times.len() * 4 + anim.rotations.len() * ROTATION_BYTES,
    );
    out.extend_from_slice(b"ANIM");
    out.extend_from_slice(&anim.channels.to_le_bytes());
    out.extend_from_slice(&(anim.times.len() as u32).to_le_bytes());
    for (k, time) in anim.times.iter().enumerate() {
        out.extend_from_slice(&time.to_le_bytes());
        let row = anim.rotations.get(k * channels..(k + 1) * channels).unwrap_or_default();
        for value in row.iter().flatten() {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
    out
}

impl Decoder for AnimationDecoder {
    type Asset = Animation;

    fn type_name(&self) -> &str {
        "animation"
    }

    fn decode(&self, _: &AssetKey, bytes: Vec<u8>) -> Result<Animation, DecodeError> {
        let mut r = Reader::after_magic(&bytes, b"ANIM")?;
        let (channels, keyframes) = (r.u16()?, r.u32()? as usize);
        let per_keyframe = 4 + usize::from(channels) * ROTATION_BYTES;
        if keyframes.checked_mul(per_keyframe) != Some(r.remaining()) {
            return Err(DecodeError::Malformed(format!(
                "{keyframes} keyframes of {channels} channels do not fit {} bytes",
                bytes.len()
            )));
        }
        // Laid out right, then checked for what a player needs: a channel, and a first
        // keyframe to read.
        if channels == 0 {
            return Err(DecodeError::Validation("an animation with no channels".into()));
        }
        if keyframes == 0 {
            return Err(DecodeError::Validation("an animation with no keyframes".into()));
        }
        let mut times = Vec::with_capacity(keyframes);
        let mut rotations = Vec::with_capacity(keyframes * usize::from(channels));
        for k in 0..keyframes {
            let time = r.f32()?;
            if !time.is_finite() {
                return Err(DecodeError::Validation(format!("keyframe {k}: time {time}")));
            }
            if let Some(&before) = times.last().filter(|&&before| time <= before) {
                return Err(DecodeError::Validation(format!(
                    "keyframe {k} at {time} s does not follow the previous one at {before} s"
                )));
            }
            times.push(time);
            for channel in 0..channels {
                let rotation = r.f32s::<4>()?;
                if !rotation.iter().all(|v| v.is_finite()) {
                    return Err(DecodeError::Validation(format!(
                        "keyframe {k}, channel {channel}: rotation {rotation:?}"
                    )));
                }
                rotations.push(rotation);
            }
        }
        Ok(Animation { channels, times, rotations })
    }

    fn size_bytes(&self, anim: &Animation) -> u64 {
        (anim.times.len() * 4 + anim.rotations.len() * ROTATION_BYTES) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::reader::assert_every_truncation_refused;

    fn key() -> AssetKey {
        AssetKey::parse("animation:x").unwrap()
    }

    /// Two channels over three keyframes.
    fn walk() -> Animation {
        let rotations = (0..6u8).map(|i| [f32::from(i), 0.0, 0.0, 1.0]).collect();
        Animation { channels: 2, times: vec![0.0, 0.5, 1.0], rotations }
    }

    fn refused(anim: &Animation) -> bool {
        matches!(
            AnimationDecoder.decode(&key(), encode_animation(anim)),
            Err(DecodeError::Validation(_))
        )
    }

    #[test]
    fn animations_round_trip() {
        let anim = walk();
        let bytes = encode_animation(&anim);
        assert_eq!(bytes.len(), HEADER_BYTES + 3 * (4 + 2 * ROTATION_BYTES));
        let decoded = AnimationDecoder.decode(&key(), bytes).unwrap();
        assert_eq!(decoded, anim);
        assert_eq!(AnimationDecoder.size_bytes(&decoded), 3 * 4 + 6 * 16);
    }

    #[test]
    fn keyframe_times_must_strictly_increase() {
        assert!(refused(&Animation { times: vec![0.0, 0.5, 0.5], ..walk() }));
        assert!(refused(&Animation { times: vec![0.0, 1.0, 0.5], ..walk() }));
    }

    #[test]
    fn non_finite_values_are_rejected() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            assert!(refused(&Animation { times: vec![0.0, bad, 2.0], ..walk() }), "time {bad}");
            let mut anim = walk();
            anim.rotations[5][2] = bad;
            assert!(refused(&anim), "rotation {bad}");
        }
    }

    #[test]
    fn zero_channels_or_zero_keyframes_are_rejected() {
        assert!(refused(&Animation { channels: 0, times: vec![0.0], rotations: vec![] }));
        assert!(refused(&Animation { channels: 1, times: vec![], rotations: vec![] }));
    }

    #[test]
    fn counts_that_do_not_fit_the_bytes_are_rejected() {
        let bytes = encode_animation(&walk());
        // No channels in bytes laid out for two: the layout is checked first (`Malformed`).
        for (at, value) in [(4, 3u32), (4, 1), (4, 0), (6, 4), (6, 2), (6, u32::MAX)] {
            let mut lying = bytes.clone();
            if at == 4 {
                lying[4..6].copy_from_slice(&(value as u16).to_le_bytes());
            } else {
                lying[6..10].copy_from_slice(&value.to_le_bytes());
            }
            let result = AnimationDecoder.decode(&key(), lying);
            assert!(matches!(result, Err(DecodeError::Malformed(_))), "{at}: {value}");
        }
        let mut long = bytes;
        long.push(0);
        assert!(matches!(AnimationDecoder.decode(&key(), long), Err(DecodeError::Malformed(_))));
        let short = Animation { rotations: walk().rotations[..5].to_vec(), ..walk() };
        let result = AnimationDecoder.decode(&key(), encode_animation(&short));
        assert!(matches!(result, Err(DecodeError::Malformed(_))), "{result:?}");
    }

    #[test]
    fn every_truncated_animation_is_refused() {
        assert_every_truncation_refused(&encode_animation(&walk()), |b| {
            AnimationDecoder.decode(&key(), b)
        });
    }
}
