//! A small deterministic generator (xorshift) for random test sequences, seeded from an
//! environment variable or the clock, and printed, so a failing sequence can be replayed.
#![allow(dead_code)] // Shared by several test binaries; each uses a part.

/// The generator's state.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `variable` if set, else from the clock; the seed is printed as
    /// `VARIABLE=SEED` for a replay.
    pub fn seeded_from(variable: &str) -> Rng {
        let seed = std::env::var(variable).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
        });
        eprintln!("{variable}={seed}");
        Rng(seed)
    }

    /// The seed's current state (to name a failing run).
    pub fn state(&self) -> u64 {
        self.0
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
