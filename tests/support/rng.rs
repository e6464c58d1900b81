//! A small deterministic generator (xorshift64*), so tests that need random-looking sessions or
//! bytes need no crate and draw the same sequence on every run.

/// See the module docs. Never seeded with 0 (xorshift would stay at 0).
pub struct Rng(u64);

impl Rng {
    /// A generator whose sequence `seed` chooses (any seed, 0 included).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n`.
    ///
    /// # Panics
    ///
    /// If `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// `len` bytes that lz4 cannot compress: no run of them repeats a pattern it could match.
pub fn noise(len: usize) -> Vec<u8> {
    let mut rng = Rng::new(len as u64);
    (0..len).map(|_| rng.next_u64().to_le_bytes()[7]).collect()
}
