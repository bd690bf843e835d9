//! Many seeds in a row: the simulator's everyday use, from `skiff sim --seeds N` and the tests.
//!
//! A sweep runs seeds `first..first + count` with the trace off (the fast path), sums their
//! counts, and keeps the failures. [`investigate`] turns a failure into a report worth reading:
//! it shrinks the fault schedule, then replays the shrunk run with the trace on, which fails the
//! same way because runs are deterministic, to collect the last trace lines.

use crate::report::{Outcome, Stats};
use crate::sabotage::Defect;
use crate::shrink::shrink;
use crate::simulation::{DEFAULT_FAULT_PHASE, Options, run};
use crate::time::Time;
use crate::trace::TraceMode;

/// The default number of seeds of `skiff sim` (and of the self-test: each defect must be
/// caught within it).
pub const DEFAULT_SEEDS: u64 = 300;

/// Trace lines shown in a failure report.
pub const REPORT_TAIL: usize = 40;

/// Which seeds to run, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sweep {
    /// The first seed.
    pub first_seed: u64,
    /// How many seeds.
    pub count: u64,
    /// A deliberate defect to switch on, if any.
    pub defect: Option<Defect>,
    /// Force the cluster size.
    pub nodes: Option<u64>,
    /// How long faults are injected in each run.
    pub fault_phase: Time,
    /// Stop at the first failing seed.
    pub stop_at_first_failure: bool,
    /// Whether crashes may keep unsynced sectors out of order (`Options::reorder_sectors`).
    pub reorder_sectors: bool,
    /// Whether leaders send commit indexes lazily (`Options::lazy_commit`).
    pub lazy_commit: bool,
}

impl Sweep {
    /// `count` seeds from `first_seed`, with every other default.
    pub fn new(first_seed: u64, count: u64) -> Sweep {
        Sweep {
            first_seed,
            count,
            defect: None,
            nodes: None,
            fault_phase: DEFAULT_FAULT_PHASE,
            stop_at_first_failure: false,
            reorder_sectors: true,
            lazy_commit: true,
        }
    }

    /// The options of one seed of the sweep.
    pub fn options(&self, seed: u64) -> Options {
        Options {
            seed,
            defect: self.defect,
            nodes: self.nodes,
            fault_phase: self.fault_phase,
            trace: TraceMode::Off,
            keep_faults: None,
            reorder_sectors: self.reorder_sectors,
            lazy_commit: self.lazy_commit,
        }
    }
}

/// What a sweep found.
#[derive(Clone, Debug, Default)]
pub struct SweepSummary {
    /// Seeds run.
    pub seeds: u64,
    /// The counts of every run, summed.
    pub totals: Stats,
    /// The failing runs, with their options.
    pub failures: Vec<(Options, Outcome)>,
    /// Runs whose linearizability check was inconclusive.
    pub inconclusive: u64,
}

/// Runs the seeds of `sweep`, calling `progress` after each.
pub fn sweep(sweep: &Sweep, mut progress: impl FnMut(&Outcome)) -> SweepSummary {
    let mut summary = SweepSummary::default();
    for seed in sweep.first_seed..sweep.first_seed.saturating_add(sweep.count) {
        let options = sweep.options(seed);
        let outcome = run(&options);
        summary.seeds += 1;
        summary.totals.add(&outcome.stats);
        summary.inconclusive += u64::from(outcome.stats.inconclusive);
        progress(&outcome);
        if !outcome.passed() {
            summary.failures.push((options, outcome));
            if sweep.stop_at_first_failure {
                break;
            }
        }
    }
    summary
}

/// Shrinks a failing run's fault schedule (within `shrink_budget` runs; 0 to skip) and replays
/// the result with the trace on. Returns the options of the replay and its outcome.
pub fn investigate(
    options: &Options,
    outcome: &Outcome,
    shrink_budget: usize,
) -> (Options, Outcome) {
    let mut replay = options.clone();
    if let Some(failure) = &outcome.failure
        && shrink_budget > 0
        && !outcome.faults.is_empty()
    {
        let kept = shrink(options, &outcome.faults, failure.violation.invariant, shrink_budget);
        if kept.len() < outcome.faults.len() {
            replay.keep_faults = Some(kept);
        }
    }
    replay.trace = TraceMode::Tail(REPORT_TAIL);
    let traced = run(&replay);
    (replay, traced)
}
