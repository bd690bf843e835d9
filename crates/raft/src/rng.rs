//! A tiny seeded pseudo-random generator (SplitMix64). The core draws its election timeouts from
//! it so that one seed reproduces a whole run; it is not for cryptography.

/// A SplitMix64 generator (Steele, Lea, Flood 2014): 64 bits of state, passes BigCrush, and is
/// a few instructions per draw.
#[derive(Clone, Debug)]
pub struct Rng {
    /// The generator's state; every draw advances it by a fixed odd constant.
    state: u64,
}

impl Rng {
    /// A generator that produces the same sequence for the same seed.
    pub fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[low, high)`; `high` must be above `low`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        assert!(low < high, "empty range [{low}, {high})");
        // The modulo bias is below 2^-32 for the small ranges used here.
        low + self.next_u64() % (high - low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Rng::new(7).next_u64(), Rng::new(8).next_u64());
    }

    #[test]
    fn between_stays_in_range_and_covers_it() {
        let mut rng = Rng::new(1);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let value = rng.between(10, 20);
            assert!((10..20).contains(&value), "{value} out of range");
            seen[(value - 10) as usize] = true;
        }
        assert!(seen.iter().all(|&hit| hit), "some values never drawn: {seen:?}");
    }
}
