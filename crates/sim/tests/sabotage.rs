//! The self-test: with each deliberate defect switched on, the default seed budget must report
//! a violation of the invariant the defect breaks. A checker that cannot fail proves nothing.

use skiff_sim::sweep::{DEFAULT_SEEDS, investigate};
use skiff_sim::{Defect, Options, failure_report, run};

/// Runs the default budget with `defect` on until a seed breaks one of the invariants the
/// defect is expected to break; returns how many seeds that took. Seeds that break another
/// invariant first (a defect can break several things, and the core has known bugs, see
/// tests/sweep.rs) do not count as catching the defect.
fn caught(defect: Defect) -> u64 {
    for seed in 0..DEFAULT_SEEDS {
        let options = Options { defect: Some(defect), ..Options::new(seed) };
        let outcome = run(&options);
        let Some(failure) = &outcome.failure else { continue };
        if !defect.expected().contains(&failure.violation.invariant) {
            continue;
        }
        // The report replays: the traced run fails the same way.
        let (replay, traced) = investigate(&options, &outcome, 0);
        let replayed = traced.failure.as_ref().map(|failure| &failure.violation);
        assert_eq!(replayed, Some(&failure.violation), "{}", failure_report(&replay, &traced));
        println!("{defect}: caught by seed {seed} after {} seeds: {}", seed + 1, failure.violation);
        return seed + 1;
    }
    panic!("{defect} went unnoticed through {DEFAULT_SEEDS} seeds: the simulator lost its teeth");
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

#[test]
fn reading_without_confirming_leadership_is_caught() {
    caught(Defect::ReadWithoutQuorum);
}

#[test]
fn reporting_a_snapshot_before_it_is_durable_is_caught() {
    caught(Defect::SnapshotBeforeDurable);
}

#[test]
fn installing_a_snapshot_log_first_is_caught() {
    caught(Defect::InstallLogFirst);
}

#[test]
fn putting_a_configuration_in_force_only_at_commit_is_caught() {
    caught(Defect::ApplyMembershipAtCommit);
}

#[test]
fn a_lease_without_the_drift_bound_is_caught() {
    caught(Defect::LeaseWithoutDriftBound);
}
