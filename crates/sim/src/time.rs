//! Simulated time: microseconds since the start of a run, advanced only by the event queue.
//!
//! Nothing in the simulator reads a clock. Time moves when the next event is taken from the
//! queue, so a run is as fast as its events are cheap, and a second of simulated time with a
//! quiet cluster costs almost nothing.

use std::fmt;
use std::ops::{Add, Sub};

/// A point in simulated time, or a duration: microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(pub u64);

impl Time {
    /// The start of every run.
    pub const ZERO: Time = Time(0);

    /// `micros` microseconds.
    pub const fn micros(micros: u64) -> Time {
        Time(micros)
    }

    /// `millis` milliseconds.
    pub const fn millis(millis: u64) -> Time {
        Time(millis * 1_000)
    }

    /// `seconds` seconds.
    pub const fn seconds(seconds: u64) -> Time {
        Time(seconds * 1_000_000)
    }

    /// This duration multiplied by `factor`.
    pub fn times(self, factor: u64) -> Time {
        Time(self.0.saturating_mul(factor))
    }

    /// The duration as (fractional) seconds, for summaries.
    pub fn as_seconds(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

impl Add for Time {
    type Output = Time;
    fn add(self, other: Time) -> Time {
        Time(self.0.saturating_add(other.0))
    }
}

impl Sub for Time {
    type Output = Time;
    /// The duration between two times, saturating at zero.
    fn sub(self, other: Time) -> Time {
        Time(self.0.saturating_sub(other.0))
    }
}

impl fmt::Display for Time {
    /// Seconds with microsecond precision: `12.000345s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_and_display() {
        assert_eq!(Time::millis(3) + Time::micros(5), Time(3_005));
        assert_eq!(Time::millis(1) - Time::seconds(1), Time::ZERO);
        assert_eq!(Time::seconds(12).times(2).to_string(), "24.000000s");
        assert_eq!(Time(1_000_345).to_string(), "1.000345s");
    }
}
