//! Reconnection delays: exponential, capped, with jitter.
//!
//! Each failed attempt doubles the delay, from `min` up to `max`; each delay is drawn
//! uniformly from the upper half of the current step ("equal jitter"), so that nodes that lost
//! a peer at the same moment do not all redial it in lockstep, while no delay is ever shorter
//! than half a step. The generator is a splitmix64 seeded from the standard library's random
//! hasher keys: the transport runs on real clocks and sockets, outside the deterministic
//! simulator, so nothing needs to replay it, and no random-number crate is needed for it.

use std::hash::BuildHasher;
use std::time::Duration;

/// The delays before successive reconnection attempts to one peer.
#[derive(Debug)]
pub(crate) struct Backoff {
    /// The first step; `min <= current`.
    min: Duration,
    /// The last step; `current <= max`.
    max: Duration,
    /// The step the next delay is drawn from.
    current: Duration,
    /// The jitter generator's state.
    state: u64,
}

impl Backoff {
    /// A backoff from `min` to `max`. Panics if `min` is zero or above `max`.
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        assert!(!min.is_zero(), "the minimum backoff must be positive");
        assert!(min <= max, "minimum backoff {min:?} above maximum {max:?}");
        let state = std::collections::hash_map::RandomState::new().hash_one(0u8);
        Backoff { min, max, current: min, state }
    }

    /// The delay before the next attempt, in `[step / 2, step]`; doubles the step, up to `max`.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.current;
        self.current = (step * 2).min(self.max);
        let half = step / 2;
        let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = match jitter_nanos {
            0 => 0,
            nanos => self.next_random() % (nanos + 1),
        };
        half + Duration::from_nanos(jitter)
    }

    /// Starts over from `min`, after a connection that lasted.
    pub(crate) fn reset(&mut self) {
        self.current = self.min;
    }

    /// splitmix64 (Steele, Lea and Flood, 2014).
    fn next_random(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_jitter_in_the_upper_half() {
        let min = Duration::from_millis(50);
        let max = Duration::from_millis(400);
        let mut backoff = Backoff::new(min, max);
        for step in [50, 100, 200, 400, 400, 400] {
            let step = Duration::from_millis(step);
            let delay = backoff.next_delay();
            assert!(
                delay >= step / 2 && delay <= step,
                "{delay:?} outside [{:?}, {step:?}]",
                step / 2
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= min);
    }

    #[test]
    fn delays_are_jittered() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
        let delays: std::collections::BTreeSet<Duration> =
            (0..20).map(|_| backoff.next_delay()).collect();
        assert!(delays.len() > 1, "twenty equal delays: {delays:?}");
    }
}
