//! A bounds-checked little-endian reader over a decoder's bytes, shared by the formats.
//!
//! Every read checks the remaining length first and reports a shortfall as a typed
//! [`DecodeError`], so a decoder built on it cannot panic on truncated or lying input.
//!
//! Invariant, as the `Decoder` trait asks: what breaks a format's layout is `Malformed` (a
//! missing magic, bytes cut short, counts that do not fit the bytes, bytes left over, text that
//! is not UTF-8); a value that breaks a rule of its type in bytes laid out right is
//! `Validation` (an index out of range, a non-finite number, a zero size).

use streamrt::DecodeError;

/// Reads fields front to back; see the module docs.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// Starts at the first byte after `magic`.
    ///
    /// # Errors
    ///
    /// `Malformed` when `bytes` do not start with `magic` (too short included).
    pub(crate) fn after_magic(bytes: &'a [u8], magic: &[u8; 4]) -> Result<Self, DecodeError> {
        if bytes.get(..4) != Some(magic.as_slice()) {
            let name = String::from_utf8_lossy(magic);
            return Err(DecodeError::Malformed(format!("no {name} header")));
        }
        Ok(Self { bytes, at: 4 })
    }

    /// The next `n` bytes.
    ///
    /// # Errors
    ///
    /// `Malformed` when fewer than `n` bytes are left.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err(DecodeError::Malformed(format!(
                "truncated: {n} bytes wanted at offset {}, {} bytes long",
                self.at,
                self.bytes.len()
            )));
        };
        let field = &self.bytes[self.at..end];
        self.at = end;
        Ok(field)
    }

    /// The next `N` bytes as an array.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        self.array::<1>().map(|[b]| b)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn f32(&mut self) -> Result<f32, DecodeError> {
        self.array().map(f32::from_le_bytes)
    }

    /// `N` consecutive `f32`s.
    pub(crate) fn f32s<const N: usize>(&mut self) -> Result<[f32; N], DecodeError> {
        let mut out = [0f32; N];
        for value in &mut out {
            *value = self.f32()?;
        }
        Ok(out)
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// Succeeds only when every byte was read, so trailing bytes are refused.
    ///
    /// # Errors
    ///
    /// `Malformed` naming how many bytes follow `what`.
    pub(crate) fn finish(&self, what: &str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::Malformed(format!("{extra} bytes after the {what}"))),
        }
    }
}

/// Asserts `decode` refuses every strict prefix of `bytes` as `Malformed`, never with a
/// panic. Shared by the formats' truncation tests.
#[cfg(test)]
pub(crate) fn assert_every_truncation_refused<T: std::fmt::Debug>(
    bytes: &[u8],
    decode: impl Fn(Vec<u8>) -> Result<T, DecodeError>,
) {
    for len in 0..bytes.len() {
        let result = decode(bytes[..len].to_vec());
        assert!(matches!(result, Err(DecodeError::Malformed(_))), "{len}: {result:?}");
    }
}
