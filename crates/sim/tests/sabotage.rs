//! The self-test: with each deliberate defect switched on, the default seed budget must report
//! a violation of the invariant the defect breaks. A checker that cannot fail proves nothing.

use skiff_sim::sweep::{DEFAULT_SEEDS, investigate};
use skiff_sim::{Defect, Sweep, failure_report, sweep};

/// Sweeps the default budget with `defect` on; returns after the first violation, checking it.
fn caught(defect: Defect) {
    let plan =
        Sweep { defect: Some(defect), stop_at_first_failure: true, ..Sweep::new(0, DEFAULT_SEEDS) };
    let summary = sweep(&plan, |_| {});
    let Some((options, outcome)) = summary.failures.first() else {
        panic!(
            "{defect} went unnoticed through {DEFAULT_SEEDS} seeds: the simulator lost its teeth"
        );
    };
    let failure = outcome.failure.as_ref().expect("a failure");
    let (replay, traced) = investigate(options, outcome, 0);
    assert!(
        defect.expected().contains(&failure.violation.invariant),
        "{defect} was caught as {} instead of one of {:?}:\n{}",
        failure.violation.invariant,
        defect.expected(),
        failure_report(&replay, &traced)
    );
    // The report replays: the traced run fails the same way.
    assert_eq!(
        traced.failure.as_ref().map(|f| f.violation.clone()),
        Some(failure.violation.clone())
    );
    println!("{defect}: caught by seed {} after {} seeds", outcome.seed, summary.seeds);
}

#[test]
fn committing_earlier_terms_by_counting_is_caught() {
    caught(Defect::CommitEarlierTerms);
}

#[test]
fn voting_without_the_log_check_is_caught() {
    caught(Defect::VoteWithoutLogCheck);
}

#[test]
fn replying_to_a_vote_before_it_is_durable_is_caught() {
    caught(Defect::VoteBeforeDurable);
}

#[test]
fn forgetting_the_vote_on_restart_is_caught() {
    caught(Defect::ForgetVote);
}

#[test]
fn acknowledging_an_append_before_it_is_durable_is_caught() {
    caught(Defect::AcknowledgeBeforeDurable);
}

#[test]
fn applying_beyond_the_commit_index_is_caught() {
    caught(Defect::ApplyBeyondCommit);
}
