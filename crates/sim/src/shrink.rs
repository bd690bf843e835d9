//! Shrinking a failing seed's fault schedule to the few faults that matter.
//!
//! A failing seed typically ran dozens of faults, most of them irrelevant. Because the schedule
//! is drawn before the run and each subsystem has its own random stream (see `random.rs`), the
//! same seed can be re-run with a subset of the faults and everything else drawn the same way.
//! The search is delta debugging (Zeller and Hildebrandt, 2002) in its simple form: try to drop
//! chunks of the schedule, halving the chunk size whenever no chunk can be dropped, keeping any
//! subset that still fails with the same invariant. The result is 1-minimal when the budget
//! allows: dropping any single remaining fault makes the failure go away.
//!
//! Other runs of the same seed may take a different path once a fault is gone (a message that
//! was lost now arrives), so a shrunk schedule is a new, smaller reproduction of the same kind of
//! failure, not necessarily the same execution; its replay command is printed with it.

use std::collections::BTreeSet;

use crate::invariants::Invariant;
use crate::simulation::{Options, run};
use crate::trace::TraceMode;

/// The smallest subset of `faults` found (within `budget` runs) that still makes `options`
/// fail with `invariant`; `faults` itself if nothing could be dropped.
pub fn shrink(
    options: &Options,
    faults: &BTreeSet<usize>,
    invariant: Invariant,
    budget: usize,
) -> BTreeSet<usize> {
    let mut current: Vec<usize> = faults.iter().copied().collect();
    let mut runs = 0;
    let mut chunk = current.len().div_ceil(2).max(1);
    let still_fails = |keep: &[usize]| {
        let mut trial = options.clone();
        trial.trace = TraceMode::Off;
        trial.keep_faults = Some(keep.iter().copied().collect());
        run(&trial).failure.is_some_and(|failure| failure.violation.invariant == invariant)
    };
    while !current.is_empty() && runs < budget {
        let mut start = 0;
        let mut dropped_any = false;
        while start < current.len() && runs < budget {
            let end = (start + chunk).min(current.len());
            let candidate: Vec<usize> =
                current[..start].iter().chain(&current[end..]).copied().collect();
            runs += 1;
            if still_fails(&candidate) {
                current = candidate;
                dropped_any = true;
            } else {
                start = end;
            }
        }
        if !dropped_any {
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
    }
    current.into_iter().collect()
}
