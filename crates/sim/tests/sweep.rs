//! The smoke sweep CI runs: a fixed range of seeds, every one of which must keep every
//! invariant, recover after the heal, and produce a linearizable history. A failure prints the
//! full report, with the command that replays it.

use skiff_sim::sweep::investigate;
use skiff_sim::{Sweep, failure_report, sweep};

/// Seeds run by `cargo test`; `skiff sim --seeds N` runs more on demand.
const SMOKE_SEEDS: u64 = 300;

#[test]
fn every_seed_of_the_smoke_sweep_passes() {
    let summary = sweep(&Sweep::new(0, SMOKE_SEEDS), |_| {});
    if let Some((options, outcome)) = summary.failures.first() {
        let (replay, traced) = investigate(options, outcome, 0);
        panic!("{}", failure_report(&replay, &traced));
    }
    assert_eq!(summary.seeds, SMOKE_SEEDS);
    let totals = summary.totals;
    // The sweep must have done something worth checking.
    assert!(totals.faults > SMOKE_SEEDS * 10, "too few faults: {totals:?}");
    assert!(totals.crashes > SMOKE_SEEDS, "too few crashes: {totals:?}");
    assert!(totals.workload.ok > SMOKE_SEEDS * 100, "too few operations: {totals:?}");
    assert!(totals.workload.unknown > 0, "no operation ended unknown: {totals:?}");
    assert!(totals.lost > 0 && totals.blocked > 0 && totals.duplicated > 0, "{totals:?}");
    assert_eq!(summary.inconclusive, 0, "a linearizability check was inconclusive");
}
