//! The fixed-seed generator of Keel's property fuzzers: this crate's
//! instruction fuzzer and the host fuzz harness (crates/fuzz), so that a
//! seed printed by one run replays the same case on every machine.

/// xorshift64* (Marsaglia's xorshift with a multiplicative output step):
/// small, fast and deterministic; not for anything that needs secrecy.
/// A zero state stays zero, so seed it with a non-zero value.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits. (An endless stream, not an `Iterator`:
    /// callers want a `u64`, not an `Option`.)
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
