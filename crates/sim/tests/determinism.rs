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
        let first = run(&traced(seed));
        let second = run(&traced(seed));
        assert!(first.trace_lines > 1000, "seed {seed} traced only {} lines", first.trace_lines);
        assert_eq!(
            (first.trace_hash, first.trace_lines),
            (second.trace_hash, second.trace_lines),
            "seed {seed} ran twice with different traces"
        );
        assert_eq!(first.stats, second.stats);
    }
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
