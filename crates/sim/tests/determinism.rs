//! One seed, one run: the same seed on the same commit gives a byte-identical trace, and
//! different seeds give different runs.

use std::collections::BTreeSet;

use skiff_sim::{Options, TraceMode, run};

/// A run of `seed` with the trace hashed (and no lines kept).
fn traced(seed: u64) -> Options {
    Options { trace: TraceMode::Tail(0), ..Options::new(seed) }
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    for seed in [0, 1, 7, 12345] {
        // Sectors reordered in crashes (the default) and kept in order (older seeds' model).
        for reorder_sectors in [true, false] {
            let options = Options { reorder_sectors, ..traced(seed) };
            let first = run(&options);
            let second = run(&options);
            assert!(
                first.trace_lines > 1000,
                "seed {seed} traced only {} lines",
                first.trace_lines
            );
            assert_eq!(
                (first.trace_hash, first.trace_lines),
                (second.trace_hash, second.trace_lines),
                "seed {seed} (sectors reordered: {reorder_sectors}) ran twice with different traces"
            );
            assert_eq!(first.stats, second.stats);
        }
    }
}

#[test]
fn reordering_sectors_changes_runs_with_crashes_only() {
    // The option draws nothing but at a crash, from the crashed disk's own stream: a run
    // without crashes is the same either way (its trace differs only in the line saying which
    // model it ran under), and some runs with crashes differ.
    let mut changed = 0;
    for seed in 0..8 {
        let reordered = run(&Options::new(seed));
        let in_order = run(&Options { reorder_sectors: false, ..Options::new(seed) });
        if reordered.stats.crashes == 0 {
            assert_eq!(reordered.stats, in_order.stats, "seed {seed} has no crash");
        }
        changed += u64::from(reordered.stats != in_order.stats);
    }
    assert!(changed > 0, "no seed of eight ran differently with sectors reordered");
}

#[test]
fn different_seeds_give_different_traces() {
    let hashes: BTreeSet<u64> = (0..8).map(|seed| run(&traced(seed)).trace_hash).collect();
    assert_eq!(hashes.len(), 8, "two of eight seeds produced the same trace");
}

#[test]
fn a_subset_of_the_fault_schedule_replays_deterministically() {
    let full = run(&traced(3));
    let keep: BTreeSet<usize> = full.faults.iter().copied().step_by(2).collect();
    let options = Options { keep_faults: Some(keep.clone()), ..traced(3) };
    let first = run(&options);
    let second = run(&options);
    assert_eq!(first.faults, keep);
    assert_eq!(first.trace_hash, second.trace_hash);
    assert_ne!(first.trace_hash, full.trace_hash, "leaving faults out changes the run");
}

#[test]
fn the_trace_does_not_change_the_run() {
    // Tracing only observes: a run with the trace off makes the same choices.
    let quiet = run(&Options::new(5));
    let loud = run(&traced(5));
    assert_eq!(quiet.stats, loud.stats);
}
