//! [`Fnv1a`]: a 64-bit FNV-1a hash, the same on every build and platform, for what must hash
//! alike wherever it runs (a replay transcript's hash, a simulation's order hash, a chaos
//! run's dice). Not for maps: it does nothing against keys chosen to collide.

/// See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    /// Mixes in `bytes`.
    pub fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_gives_the_published_fnv1a_values() {
        // The reference values of the FNV-1a test suite (64 bits).
        assert_eq!(Fnv1a::default().finish(), 0xcbf2_9ce4_8422_2325);
        let mut a = Fnv1a::default();
        a.write(b"a");
        assert_eq!(a.finish(), 0xaf63_dc4c_8601_ec8c);
        let mut foobar = Fnv1a::default();
        foobar.write(b"foo");
        foobar.write(b"bar");
        assert_eq!(foobar.finish(), 0x85944171f73967e8);
    }
}
