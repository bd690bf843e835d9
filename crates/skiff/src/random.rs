//! A small pseudo-random generator for client ids, bench keys and bench values.
//!
//! Nothing here needs cryptographic quality, only ids that two processes (or two bench clients
//! of one process) are unlikely to share, and keys spread evenly over the key space. SplitMix64
//! (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014) gives both in
//! a dozen lines, which is why there is no `rand` crate in the tree. Seeds come from the clock,
//! the process id and a per-process counter, so that two generators made in the same nanosecond
//! still differ.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct Random {
    /// The generator's state; it advances by the golden-ratio increment at each draw.
    state: u64,
}

impl Random {
    /// A generator whose whole sequence follows from `seed`.
    pub fn new(seed: u64) -> Random {
        Random { state: seed }
    }

    /// A generator seeded from the clock, the process id and a per-process counter.
    pub fn from_entropy() -> Random {
        /// Distinguishes generators made by this process in the same clock tick.
        static MADE: AtomicU64 = AtomicU64::new(0);
        let nanos =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_nanos() as u64);
        let made = MADE.fetch_add(1, Ordering::Relaxed);
        let mut mixer = Random::new(nanos ^ u64::from(std::process::id()).rotate_left(32));
        // One draw of the mixer spreads the counter's few changing bits over the whole seed.
        Random::new(mixer.next_u64() ^ made.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    /// A number in `0..bound`, by Lemire's multiply-and-shift (the bias, below 2^-32 for any
    /// bound a bench uses, does not matter here).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "an empty range has no numbers to draw");
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// Fills `buffer` with random letters and digits: printable, so that a bench value reads
    /// well in `skiff kv get`.
    pub fn fill_alphanumeric(&mut self, buffer: &mut [u8]) {
        const SYMBOLS: &[u8; 62] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        for byte in buffer {
            *byte = SYMBOLS[self.below(SYMBOLS.len() as u64) as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_its_reference_sequence() {
        // The first outputs of the reference implementation seeded with 1234567.
        let mut random = Random::new(1234567);
        assert_eq!(random.next_u64(), 6457827717110365317);
        assert_eq!(random.next_u64(), 3203168211198807973);
        assert_eq!(random.next_u64(), 9817491932198370423);
    }

    #[test]
    fn draws_stay_below_the_bound_and_reach_every_number() {
        let mut random = Random::new(7);
        let mut seen = [false; 10];
        for _ in 0..1_000 {
            let number = random.below(10);
            assert!(number < 10, "{number} is out of range");
            seen[number as usize] = true;
        }
        assert!(seen.iter().all(|&hit| hit), "some number never came up: {seen:?}");
    }

    #[test]
    fn generators_made_at_once_differ() {
        let first = Random::from_entropy().next_u64();
        let second = Random::from_entropy().next_u64();
        assert_ne!(first, second);
    }
}
