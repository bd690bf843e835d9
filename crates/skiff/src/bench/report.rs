//! What `skiff bench` prints after each run, in the shape of etcd's benchmark tool.
//!
//! Latencies are kept in an HDR histogram (hdrhistogram, 3 significant figures, 1 µs to 60 s;
//! a slower request is counted as 60 s) and only for requests that succeeded, as etcd's tool
//! does; failed requests are counted by message instead. From one run's histogram comes a
//! [`Summary`], printed three ways:
//!
//! - **text**, as etcd's benchmark prints it: `Summary:` (Total, Slowest, Fastest, Average,
//!   Stddev, Requests/sec, in seconds with four decimals), a response-time histogram of eleven
//!   marks evenly spaced from the fastest to the slowest request (each counting the requests
//!   slower than the mark before it and no slower than itself, with a bar of `∎` scaled to the
//!   fullest mark), the latency distribution at 10 %, 25 %, 50 %, 75 %, 90 %, 95 %, 99 % and
//!   99.9 %, and the most frequent errors;
//! - **a compact table** of all runs at the end: OP, CLIENTS, OPS/S, P50, P90, P99, MAX, ERRORS,
//!   latencies in milliseconds;
//! - **JSON** (`-w json`): `{"runs": [summary, ...]}` with the same fields, in seconds.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::output::table;

/// The percentiles of the latency distribution, as etcd's benchmark lists them.
pub const PERCENTS: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];
/// The highest latency the histogram tells apart, in microseconds (60 s).
pub const MAX_LATENCY_MICROS: u64 = 60_000_000;
/// How many marks the response-time histogram has (etcd's ten intervals make eleven marks).
const HISTOGRAM_MARKS: usize = 11;
/// The length of the fullest bar of the response-time histogram.
const BAR_LENGTH: u64 = 40;
/// How many distinct error messages a run keeps; later ones are counted together.
const MAX_DISTINCT_ERRORS: usize = 16;
/// How many distinct errors the text report lists.
const ERRORS_LISTED: usize = 5;
/// Where errors beyond [`MAX_DISTINCT_ERRORS`] are counted.
const OTHER_ERRORS: &str = "(other errors)";

/// The kind of request a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// A put of a random value to a random key.
    Put,
    /// A linearizable get of a random key.
    Get,
    /// A stale get of a random key: served from the answering node's own store.
    StaleGet,
}

impl Operation {
    /// The name used in output.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Put => "put",
            Operation::Get => "get",
            Operation::StaleGet => "stale-get",
        }
    }
}

/// A new latency histogram of the bench's bounds.
pub fn new_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (1 ≤ low, 2·low ≤ high, 3 figures).
    Histogram::new_with_bounds(1, MAX_LATENCY_MICROS, 3)
        .expect("constant histogram bounds are valid")
}

/// Failed requests, counted by message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorTally {
    /// Message → count; at most [`MAX_DISTINCT_ERRORS`] messages plus [`OTHER_ERRORS`].
    counts: BTreeMap<String, u64>,
}

impl ErrorTally {
    /// Counts `count` failures with this message.
    pub fn record(&mut self, message: String, count: u64) {
        let distinct = self.counts.len() - usize::from(self.counts.contains_key(OTHER_ERRORS));
        let message = if self.counts.contains_key(&message) || distinct < MAX_DISTINCT_ERRORS {
            message
        } else {
            OTHER_ERRORS.to_string()
        };
        *self.counts.entry(message).or_default() += count;
    }

    /// Adds another tally's counts to this one.
    pub fn merge(&mut self, other: ErrorTally) {
        for (message, count) in other.counts {
            self.record(message, count);
        }
    }

    /// How many failures in all.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// The most frequent message.
    pub fn most_frequent(&self) -> Option<String> {
        self.by_count().into_iter().next().map(|error| error.error)
    }

    /// The messages, most frequent first.
    fn by_count(&self) -> Vec<ErrorCount> {
        let mut listed: Vec<ErrorCount> = self
            .counts
            .iter()
            .map(|(error, &count)| ErrorCount { count, error: error.clone() })
            .collect();
        listed.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.error.cmp(&b.error)));
        listed
    }
}

/// One run: an operation at one client count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// What was measured.
    pub op: Operation,
    /// How many clients sent requests at once.
    pub clients: usize,
    /// The wall time of the run, from the first request sent to the last answered.
    pub total_seconds: f64,
    /// Requests that succeeded (the ones the latencies describe).
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
    /// The slowest successful request.
    pub slowest_seconds: f64,
    /// The fastest successful request.
    pub fastest_seconds: f64,
    /// The mean latency.
    pub average_seconds: f64,
    /// The standard deviation of the latency.
    pub stddev_seconds: f64,
    /// Successful requests per second of wall time.
    pub requests_per_second: f64,
    /// The response-time histogram: each mark with the requests at or below it (and above the
    /// mark before it).
    pub histogram: Vec<Bucket>,
    /// The latency at each of [`PERCENTS`].
    pub latency_distribution: Vec<Percentile>,
    /// The failures by message, most frequent first.
    pub error_distribution: Vec<ErrorCount>,
}

/// One mark of the response-time histogram.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// The mark.
    pub seconds: f64,
    /// How many requests took longer than the mark before and at most this long.
    pub count: u64,
}

/// One point of the latency distribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Percentile {
    /// The percentile, 0 to 100.
    pub percent: f64,
    /// The latency that this percent of requests did not exceed.
    pub seconds: f64,
}

/// One kind of failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorCount {
    /// How many requests failed so.
    pub count: u64,
    /// The error, as the client printed it.
    pub error: String,
}

/// Microseconds to seconds.
fn seconds(micros: u64) -> f64 {
    micros as f64 / 1e6
}

impl Summary {
    /// Summarises one run from the latencies (microseconds) of its successful requests.
    pub fn new(
        op: Operation,
        clients: usize,
        total: Duration,
        latencies: &Histogram<u64>,
        errors: &ErrorTally,
    ) -> Summary {
        let requests = latencies.len();
        let total_seconds = total.as_secs_f64();
        let (fastest, slowest) =
            if requests == 0 { (0, 0) } else { (latencies.min(), latencies.max()) };
        Summary {
            op,
            clients,
            total_seconds,
            requests,
            errors: errors.total(),
            slowest_seconds: seconds(slowest),
            fastest_seconds: seconds(fastest),
            average_seconds: if requests == 0 { 0.0 } else { latencies.mean() / 1e6 },
            stddev_seconds: if requests == 0 { 0.0 } else { latencies.stdev() / 1e6 },
            requests_per_second: if total_seconds > 0.0 {
                requests as f64 / total_seconds
            } else {
                0.0
            },
            histogram: buckets(latencies, fastest, slowest),
            latency_distribution: PERCENTS
                .iter()
                .map(|&percent| Percentile {
                    percent,
                    seconds: if requests == 0 {
                        0.0
                    } else {
                        seconds(latencies.value_at_quantile(percent / 100.0))
                    },
                })
                .collect(),
            error_distribution: errors.by_count(),
        }
    }

    /// The latency at a percentile of [`PERCENTS`].
    fn percentile(&self, percent: f64) -> f64 {
        self.latency_distribution
            .iter()
            .find(|point| point.percent == percent)
            .map_or(0.0, |point| point.seconds)
    }
}

/// The response-time histogram, as etcd's benchmark builds it: marks evenly spaced from the
/// fastest to the slowest request, each request counted at the first mark it does not exceed.
fn buckets(latencies: &Histogram<u64>, fastest: u64, slowest: u64) -> Vec<Bucket> {
    if latencies.is_empty() {
        return Vec::new();
    }
    let step = (slowest - fastest) as f64 / (HISTOGRAM_MARKS - 1) as f64;
    let marks: Vec<f64> = (0..HISTOGRAM_MARKS)
        .map(|mark| {
            if mark + 1 == HISTOGRAM_MARKS {
                slowest as f64
            } else {
                fastest as f64 + step * mark as f64
            }
        })
        .collect();
    let mut counts = vec![0u64; HISTOGRAM_MARKS];
    let mut mark = 0;
    for recorded in latencies.iter_recorded() {
        // The lowest value of the histogram's slot, so that the fastest request (the lowest
        // value of its slot too) falls on the first mark as it would with exact latencies.
        let latency = latencies.lowest_equivalent(recorded.value_iterated_to()) as f64;
        while mark + 1 < HISTOGRAM_MARKS && latency > marks[mark] {
            mark += 1;
        }
        counts[mark] += recorded.count_at_value();
    }
    marks.iter().zip(counts).map(|(&mark, count)| Bucket { seconds: mark / 1e6, count }).collect()
}

/// Renders one run as etcd's benchmark does, under a heading naming the run.
pub fn render_text(summary: &Summary) -> String {
    let mut text = format!(
        "{} with {} client{}:\n\n",
        summary.op.name(),
        summary.clients,
        if summary.clients == 1 { "" } else { "s" }
    );
    text.push_str("Summary:\n");
    text.push_str(&format!("  Total:\t{:.4} secs.\n", summary.total_seconds));
    text.push_str(&format!("  Slowest:\t{:.4} secs.\n", summary.slowest_seconds));
    text.push_str(&format!("  Fastest:\t{:.4} secs.\n", summary.fastest_seconds));
    text.push_str(&format!("  Average:\t{:.4} secs.\n", summary.average_seconds));
    text.push_str(&format!("  Stddev:\t{:.4} secs.\n", summary.stddev_seconds));
    text.push_str(&format!("  Requests/sec:\t{:.4}\n", summary.requests_per_second));
    if summary.requests > 0 {
        text.push_str("\nResponse time histogram:\n");
        let fullest = summary.histogram.iter().map(|bucket| bucket.count).max().unwrap_or(0);
        for bucket in &summary.histogram {
            let bar = (bucket.count * BAR_LENGTH).checked_div(fullest).unwrap_or(0);
            text.push_str(&format!(
                "  {:.4} [{}]\t|{}\n",
                bucket.seconds,
                bucket.count,
                "∎".repeat(bar as usize)
            ));
        }
        text.push_str("\nLatency distribution:\n");
        for point in &summary.latency_distribution {
            text.push_str(&format!("  {}% in {:.4} secs.\n", point.percent, point.seconds));
        }
    } else {
        text.push_str("\nNo request succeeded.\n");
    }
    if !summary.error_distribution.is_empty() {
        text.push_str(&format!("\nError distribution ({} failed):\n", summary.errors));
        for error in summary.error_distribution.iter().take(ERRORS_LISTED) {
            text.push_str(&format!("  [{}]\t{}\n", error.count, error.error));
        }
        let unlisted = summary.error_distribution.len().saturating_sub(ERRORS_LISTED);
        if unlisted > 0 {
            text.push_str(&format!("  (and {unlisted} more kinds of error)\n"));
        }
    }
    text
}

/// A latency in milliseconds with three decimals.
fn millis(seconds: f64) -> String {
    format!("{:.3}ms", seconds * 1e3)
}

/// The compact table of every run.
pub fn render_table(summaries: &[Summary]) -> String {
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|summary| {
            vec![
                summary.op.name().to_string(),
                summary.clients.to_string(),
                format!("{:.1}", summary.requests_per_second),
                millis(summary.percentile(50.0)),
                millis(summary.percentile(90.0)),
                millis(summary.percentile(99.0)),
                millis(summary.slowest_seconds),
                summary.errors.to_string(),
            ]
        })
        .collect();
    table(&["op", "clients", "ops/s", "p50", "p90", "p99", "max", "errors"], &rows)
}

/// The JSON document of `-w json`.
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    /// Every run, in the order run.
    pub runs: &'a [Summary],
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Latencies of 1, 2, ..., 100 ms over a 10 s run, and a few failures.
    fn sample() -> Summary {
        let mut latencies = new_histogram();
        for millis in 1..=100 {
            latencies.record(millis * 1_000).expect("within bounds");
        }
        let mut errors = ErrorTally::default();
        errors.record("127.0.0.1:2379: no_leader: no leader known".to_string(), 3);
        errors.record("timed out after 5s".to_string(), 1);
        Summary::new(Operation::Put, 16, Duration::from_secs(10), &latencies, &errors)
    }

    #[test]
    fn the_summary_describes_the_latencies() {
        let summary = sample();
        assert_eq!(summary.requests, 100);
        assert_eq!(summary.errors, 4);
        assert_eq!(summary.fastest_seconds, 0.001);
        // Three significant figures: 100 ms is kept as the top of its slot, 100.031 ms.
        assert!((summary.slowest_seconds - 0.100).abs() < 0.0001, "{}", summary.slowest_seconds);
        assert!((summary.average_seconds - 0.0505).abs() < 0.0001, "{}", summary.average_seconds);
        assert!((summary.requests_per_second - 10.0).abs() < 1e-9);
        assert!((summary.percentile(50.0) - 0.050).abs() < 0.0001);
        assert!((summary.percentile(99.9) - 0.100).abs() < 0.0001);
        let counted: u64 = summary.histogram.iter().map(|bucket| bucket.count).sum();
        assert_eq!(counted, 100, "every request is in one bucket");
        assert_eq!(summary.histogram.len(), 11);
        assert_eq!(summary.histogram[0].count, 1, "only the fastest is at the first mark");
    }

    #[test]
    fn the_text_report_has_etcds_shape() {
        let text = render_text(&sample());
        let expected_start = "put with 16 clients:\n\n\
            Summary:\n\
            \x20 Total:\t10.0000 secs.\n\
            \x20 Slowest:\t0.1000 secs.\n\
            \x20 Fastest:\t0.0010 secs.\n\
            \x20 Average:\t0.0505 secs.\n\
            \x20 Stddev:\t0.0289 secs.\n\
            \x20 Requests/sec:\t10.0000\n\
            \n\
            Response time histogram:\n\
            \x20 0.0010 [1]\t|∎∎∎∎\n\
            \x20 0.0109 [9]\t|∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎\n\
            \x20 0.0208 [10]\t|∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎\n";
        assert!(text.starts_with(expected_start), "{text}");
        let expected_end = "Latency distribution:\n\
            \x20 10% in 0.0100 secs.\n\
            \x20 25% in 0.0250 secs.\n\
            \x20 50% in 0.0500 secs.\n\
            \x20 75% in 0.0750 secs.\n\
            \x20 90% in 0.0900 secs.\n\
            \x20 95% in 0.0950 secs.\n\
            \x20 99% in 0.0990 secs.\n\
            \x20 99.9% in 0.1000 secs.\n\
            \n\
            Error distribution (4 failed):\n\
            \x20 [3]\t127.0.0.1:2379: no_leader: no leader known\n\
            \x20 [1]\ttimed out after 5s\n";
        assert!(text.ends_with(expected_end), "{text}");
    }

    #[test]
    fn the_compact_table_has_a_row_per_run() {
        let mut get = sample();
        get.op = Operation::Get;
        get.clients = 1;
        get.errors = 0;
        assert_eq!(
            render_table(&[sample(), get]),
            "OP    CLIENTS   OPS/S   P50        P90        P99        MAX         ERRORS\n\
             put   16        10.0    50.015ms   90.047ms   99.007ms   100.031ms   4\n\
             get   1         10.0    50.015ms   90.047ms   99.007ms   100.031ms   0\n"
        );
    }

    #[test]
    fn json_has_the_same_fields() {
        let summaries = [sample()];
        let value = serde_json::to_value(JsonReport { runs: &summaries }).expect("serialisable");
        let run = &value["runs"][0];
        assert_eq!(run["op"], "put");
        assert_eq!(run["clients"], 16);
        assert_eq!(run["requests"], 100);
        assert_eq!(run["errors"], 4);
        assert_eq!(run["latency_distribution"][7]["percent"], 99.9);
        assert_eq!(run["histogram"].as_array().map(Vec::len), Some(11));
        assert_eq!(run["error_distribution"][0]["count"], 3);
        for field in [
            "total_seconds",
            "slowest_seconds",
            "fastest_seconds",
            "average_seconds",
            "stddev_seconds",
            "requests_per_second",
        ] {
            assert!(run[field].is_f64(), "{field} is missing");
        }
    }

    #[test]
    fn a_run_without_success_says_so() {
        let mut errors = ErrorTally::default();
        errors.record("no endpoint reachable".to_string(), 7);
        let summary =
            Summary::new(Operation::Get, 1, Duration::from_secs(1), &new_histogram(), &errors);
        let text = render_text(&summary);
        assert!(text.contains("Requests/sec:\t0.0000\n\nNo request succeeded.\n"), "{text}");
        assert!(text.ends_with("  [7]\tno endpoint reachable\n"), "{text}");
    }

    #[test]
    fn distinct_errors_are_bounded() {
        let mut errors = ErrorTally::default();
        for number in 0..40 {
            errors.record(format!("error {number}"), 1);
        }
        errors.record("error 3".to_string(), 1);
        assert_eq!(errors.total(), 41);
        let listed = errors.by_count();
        assert_eq!(listed.len(), MAX_DISTINCT_ERRORS + 1);
        assert_eq!(listed[0], ErrorCount { count: 24, error: OTHER_ERRORS.to_string() });
        assert_eq!(listed[1], ErrorCount { count: 2, error: "error 3".to_string() });
        assert_eq!(errors.most_frequent().as_deref(), Some(OTHER_ERRORS));
    }
}
