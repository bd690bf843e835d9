//! A latency histogram the write path can feed without a lock.
//!
//! prometheus-client's `Histogram` takes a mutex on every observation. That is fine once per
//! batch (the apply and fsync histograms), but a client write is observed once per request, on
//! the HTTP tasks of every concurrent client, and there a shared mutex would serialize them.
//! [`WriteLatency`] is an array of atomic counters instead: an observation is a binary search
//! over 33 bounds and two relaxed `fetch_add`s, with no lock and no allocation.
//!
//! It is read in two ways: `GET /metrics` encodes it as an ordinary Prometheus histogram
//! (`skiff_server_write_duration_seconds`), and the dashboard's sampler takes a
//! [`LatencySnapshot`] every second and subtracts the previous one, which gives the latencies
//! of the last second alone, whose p99 the dashboard charts.
//!
//! The bounds grow by √2 from 100 µs to about 6.6 s: twice as fine as the other duration
//! histograms, because a p99 read off doubling buckets can be out by almost a factor of two.
//! A quantile is interpolated linearly inside its bucket, as Prometheus's `histogram_quantile`
//! does, and so is an estimate whose error is bounded by the bucket's width.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// The number of finite bucket bounds.
const BOUNDS: usize = 33;

/// The upper bound of finite bucket `index`, in seconds: 100 µs × √2^index.
fn bound(index: usize) -> f64 {
    0.000_1 * std::f64::consts::SQRT_2.powi(index as i32)
}

/// Write latencies, observed without a lock (see the module documentation). Cheap to clone:
/// clones share the counters.
#[derive(Clone, Debug)]
pub struct WriteLatency {
    /// The counters, shared by every clone.
    inner: Arc<Counters>,
}

/// The counters behind a [`WriteLatency`].
#[derive(Debug)]
struct Counters {
    /// The upper bounds of the finite buckets, in seconds, increasing.
    bounds: [f64; BOUNDS],
    /// Observations per bucket (not cumulative); the last counts those above every bound.
    counts: [AtomicU64; BOUNDS + 1],
    /// The sum of every observation, in nanoseconds (wraps after 584 years of latency).
    sum_nanos: AtomicU64,
}

impl Default for WriteLatency {
    fn default() -> WriteLatency {
        WriteLatency::new()
    }
}

impl WriteLatency {
    /// An empty histogram.
    pub fn new() -> WriteLatency {
        WriteLatency {
            inner: Arc::new(Counters {
                bounds: std::array::from_fn(bound),
                counts: std::array::from_fn(|_| AtomicU64::new(0)),
                sum_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Records one write that took `elapsed`.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = self.inner.bounds.partition_point(|bound| *bound < seconds);
        self.inner.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The counters as they are now. Taken bucket by bucket while writes go on, so a write
    /// observed during the copy may be counted in the next snapshot instead of this one.
    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            counts: std::array::from_fn(|bucket| self.inner.counts[bucket].load(Ordering::Relaxed)),
            sum_nanos: self.inner.sum_nanos.load(Ordering::Relaxed),
        }
    }
}

/// The counters of a [`WriteLatency`] at one moment, or the difference of two such moments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencySnapshot {
    /// Observations per bucket, as in [`Counters::counts`].
    counts: [u64; BOUNDS + 1],
    /// The sum of the observations, in nanoseconds.
    sum_nanos: u64,
}

impl LatencySnapshot {
    /// The observations made after `earlier` and up to `self`.
    pub fn since(&self, earlier: &LatencySnapshot) -> LatencySnapshot {
        LatencySnapshot {
            counts: std::array::from_fn(|bucket| {
                self.counts[bucket].saturating_sub(earlier.counts[bucket])
            }),
            sum_nanos: self.sum_nanos.wrapping_sub(earlier.sum_nanos),
        }
    }

    /// How many observations there are.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The mean, in seconds; `None` without observations.
    pub fn mean_seconds(&self) -> Option<f64> {
        let count = self.count();
        (count > 0).then(|| self.sum_nanos as f64 / 1e9 / count as f64)
    }

    /// The `quantile` (0 to 1) in seconds, interpolated inside its bucket; `None` without
    /// observations. Observations above the last bound report that bound: a lower bound.
    pub fn quantile_seconds(&self, quantile: f64) -> Option<f64> {
        assert!((0.0..=1.0).contains(&quantile), "a quantile is within 0 and 1: {quantile}");
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = quantile * count as f64;
        let mut below = 0u64;
        for (bucket, &in_bucket) in self.counts.iter().enumerate() {
            if in_bucket > 0 && (below + in_bucket) as f64 >= rank {
                if bucket == BOUNDS {
                    return Some(bound(BOUNDS - 1));
                }
                let lower = if bucket == 0 { 0.0 } else { bound(bucket - 1) };
                let upper = bound(bucket);
                let fraction = ((rank - below as f64) / in_bucket as f64).clamp(0.0, 1.0);
                return Some(lower + (upper - lower) * fraction);
            }
            below += in_bucket;
        }
        unreachable!("the ranks of {count} observations end in some bucket")
    }
}

impl TypedMetric for WriteLatency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for WriteLatency {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.snapshot();
        let buckets: Vec<(f64, u64)> = (0..=BOUNDS)
            .map(|bucket| {
                let upper = if bucket == BOUNDS { f64::MAX } else { bound(bucket) };
                (upper, snapshot.counts[bucket])
            })
            .collect();
        let sum = snapshot.sum_nanos as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, snapshot.count(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_grow_by_the_square_root_of_two_from_100_microseconds() {
        assert!((bound(0) - 0.000_1).abs() < 1e-12);
        assert!((bound(2) - 0.000_2).abs() < 1e-12);
        assert!((bound(32) - 6.5536).abs() < 1e-9);
    }

    #[test]
    fn an_empty_window_has_no_quantile() {
        let latency = WriteLatency::new();
        assert_eq!(latency.snapshot().quantile_seconds(0.99), None);
        assert_eq!(latency.snapshot().mean_seconds(), None);
    }

    #[test]
    fn p99_of_a_window_ignores_what_came_before_it() {
        let latency = WriteLatency::new();
        for _ in 0..1000 {
            latency.observe(Duration::from_secs(2));
        }
        let before = latency.snapshot();
        for _ in 0..99 {
            latency.observe(Duration::from_micros(150));
        }
        latency.observe(Duration::from_millis(10));
        let window = latency.snapshot().since(&before);
        assert_eq!(window.count(), 100);
        let p50 = window.quantile_seconds(0.5).expect("observations");
        assert!((0.000_141..=0.000_201).contains(&p50), "p50 {p50} is in 150 µs's bucket");
        let p99 = window.quantile_seconds(0.99).expect("observations");
        assert!((0.000_141..=0.000_201).contains(&p99), "99 of 100 are 150 µs: {p99}");
        let p100 = window.quantile_seconds(1.0).expect("observations");
        assert!((0.009..=0.0129).contains(&p100), "the slowest is 10 ms: {p100}");
        let mean = window.mean_seconds().expect("observations");
        assert!((mean - 0.000_248_5).abs() < 1e-9, "mean {mean}");
    }

    #[test]
    fn latencies_beyond_the_last_bound_report_the_last_bound() {
        let latency = WriteLatency::new();
        latency.observe(Duration::from_secs(60));
        assert_eq!(latency.snapshot().quantile_seconds(0.99), Some(bound(BOUNDS - 1)));
    }
}
