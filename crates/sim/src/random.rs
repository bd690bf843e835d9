//! Seeded randomness for the simulator: every choice in a run is drawn from here.
//!
//! One `u64` seed makes the whole run. Each subsystem (parameters, network, disks, workload,
//! faults) draws from its own stream, forked from the seed in a fixed order, so that a change
//! in how often one subsystem draws does not reshuffle the choices of the others: removing one
//! fault while shrinking a schedule leaves the workload's plan of operations intact, for example.
//! The generator is the core's SplitMix64 ([`skiff_raft::rng::Rng`]); this wrapper adds the
//! shapes of draws a simulator needs (probabilities, picks, heavy-tailed delays).

use skiff_raft::rng::Rng;

/// A seeded stream of random choices.
#[derive(Clone, Debug)]
pub struct Random {
    /// The underlying generator; the whole stream is a function of its seed.
    rng: Rng,
}

impl Random {
    /// A stream that is a pure function of `seed`.
    pub fn new(seed: u64) -> Random {
        // SplitMix64 maps nearby seeds to unrelated streams already; mixing the seed once more
        // keeps seed 0 from starting at a state of all zeroes.
        let mut rng = Rng::new(seed ^ 0x5EED_5EED_5EED_5EED);
        let mixed = rng.next_u64();
        Random { rng: Rng::new(mixed) }
    }

    /// An independent stream, derived from this one (which advances by one draw).
    pub fn fork(&mut self) -> Random {
        Random::new(self.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// A number in `[low, high)`; `high` must be above `low`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        self.rng.between(low, high)
    }

    /// A number in `[0, bound)`; `bound` must be positive.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.rng.between(0, bound)
    }

    /// A uniform number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        // The top 53 bits fill an f64's mantissa exactly.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `probability` (0 never, 1 always).
    pub fn chance(&mut self, probability: f64) -> bool {
        probability > 0.0 && self.unit() < probability
    }

    /// One element of a non-empty slice.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        assert!(!items.is_empty(), "pick from an empty slice");
        items[self.below(items.len() as u64) as usize]
    }

    /// An index drawn with the given relative weights (at least one must be positive).
    pub fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        assert!(total > 0, "weighted draw with all weights zero");
        let mut draw = self.below(total);
        for (position, &weight) in weights.iter().enumerate() {
            if draw < weight {
                return position;
            }
            draw -= weight;
        }
        unreachable!("the draw is below the total weight")
    }

    /// A number in `[low, high]` whose logarithm is uniform: most draws are small, a few are
    /// large, as with network and disk latencies. `low` must be positive; a `high` below `low`
    /// counts as `low`.
    pub fn log_uniform(&mut self, low: u64, high: u64) -> u64 {
        assert!(low > 0, "log-uniform range [{low}, {high}] starts at zero");
        let high = high.max(low);
        let (low_log, high_log) = ((low as f64).ln(), (high as f64).ln());
        let value = (low_log + self.unit() * (high_log - low_log)).exp();
        (value.round() as u64).clamp(low, high)
    }

    /// A random subset of `items` of exactly `count` elements, in the items' order.
    pub fn subset<T: Copy>(&mut self, items: &[T], count: usize) -> Vec<T> {
        assert!(count <= items.len(), "subset of {count} from {} items", items.len());
        let mut positions: Vec<usize> = (0..items.len()).collect();
        // A partial Fisher-Yates shuffle: the first `count` positions end up a uniform sample.
        for slot in 0..count {
            let chosen = slot + self.below((positions.len() - slot) as u64) as usize;
            positions.swap(slot, chosen);
        }
        let mut chosen = positions[..count].to_vec();
        chosen.sort_unstable();
        chosen.into_iter().map(|position| items[position]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_forks_differ() {
        let mut a = Random::new(42);
        let mut b = Random::new(42);
        assert_eq!(a.next_u64(), b.next_u64());
        let mut fork_a = a.fork();
        let mut fork_b = b.fork();
        assert_eq!(fork_a.next_u64(), fork_b.next_u64());
        assert_ne!(fork_a.next_u64(), a.next_u64());
        assert_ne!(Random::new(0).next_u64(), Random::new(1).next_u64());
    }

    #[test]
    fn draws_stay_in_their_ranges() {
        let mut random = Random::new(7);
        for _ in 0..1000 {
            let value = random.log_uniform(10, 5000);
            assert!((10..=5000).contains(&value), "{value}");
            let position = random.weighted(&[0, 3, 1]);
            assert!(position == 1 || position == 2, "{position}");
            let subset = random.subset(&[1, 2, 3, 4, 5], 2);
            assert_eq!(subset.len(), 2);
            assert!(subset[0] < subset[1], "{subset:?}");
        }
        assert!(!random.chance(0.0));
        assert!(random.chance(1.0));
    }
}
