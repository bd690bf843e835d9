//! The simulator's self-test: defects switched on on purpose, each of which the default seed
//! budget must catch.
//!
//! A checker that cannot fail proves nothing. Seven defects live in the core, behind the
//! switches of [`skiff_raft::Sabotage`]; four break the driver's half of the contract and live
//! in this simulator's node driver (two of them in its snapshot duties, `snapshot.rs`). Each
//! defect names the invariant its violation is expected to show up as (the checks are
//! independent, so a defect may trip a neighbouring one first; the self-test accepts the ones
//! listed). Two are caught by checks made for them: a configuration put in force only at
//! commit by `Invariant::ConfigurationInForce` (before any split vote it allows happens), and
//! a lease without the drift bound by the lease races of seeds with lease reads, whose probes
//! reach the old leader after its successor committed (`Invariant::StaleRead`).

use std::fmt;
use std::str::FromStr;

use crate::invariants::Invariant;

/// A deliberate defect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Defect {
    /// The core commits entries of earlier terms by counting replicas (Raft §5.4.2, Figure 8).
    CommitEarlierTerms,
    /// The core grants votes without the up-to-date check (Raft §5.4.1).
    VoteWithoutLogCheck,
    /// The driver sends a vote reply before the vote is durable (contract item 1).
    VoteBeforeDurable,
    /// The driver restarts a node with its vote forgotten (Raft Figure 2: votedFor is durable).
    ForgetVote,
    /// The core acknowledges appended entries before they are durable (contract item 2).
    AcknowledgeBeforeDurable,
    /// The core applies entries beyond the commit index.
    ApplyBeyondCommit,
    /// The core confirms reads without a heartbeat round (ReadIndex, Raft thesis §6.4).
    ReadWithoutQuorum,
    /// The driver reports a snapshot to the core, and compacts the log behind it, as soon as it
    /// starts writing it, before it is durable (contract item 9).
    SnapshotBeforeDurable,
    /// The driver installs the leader's snapshot by resetting the log first and saving the
    /// snapshot after, so a crash between leaves neither the old state nor the new (contract
    /// item 11: atomically).
    InstallLogFirst,
    /// The core puts a configuration in force only once its entry is committed, not when it is
    /// appended (thesis §4.1).
    ApplyMembershipAtCommit,
    /// The core's read lease lasts a whole election timeout, without the clock drift bound
    /// (thesis §6.4.1).
    LeaseWithoutDriftBound,
}

impl Defect {
    /// Every defect, in a fixed order.
    pub const ALL: [Defect; 11] = [
        Defect::CommitEarlierTerms,
        Defect::VoteWithoutLogCheck,
        Defect::VoteBeforeDurable,
        Defect::ForgetVote,
        Defect::AcknowledgeBeforeDurable,
        Defect::ApplyBeyondCommit,
        Defect::ReadWithoutQuorum,
        Defect::SnapshotBeforeDurable,
        Defect::InstallLogFirst,
        Defect::ApplyMembershipAtCommit,
        Defect::LeaseWithoutDriftBound,
    ];

    /// The defect's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Defect::CommitEarlierTerms => "commit-earlier-terms",
            Defect::VoteWithoutLogCheck => "vote-without-log-check",
            Defect::VoteBeforeDurable => "vote-before-durable",
            Defect::ForgetVote => "forget-vote",
            Defect::AcknowledgeBeforeDurable => "acknowledge-before-durable",
            Defect::ApplyBeyondCommit => "apply-beyond-commit",
            Defect::ReadWithoutQuorum => "read-without-quorum",
            Defect::SnapshotBeforeDurable => "snapshot-before-durable",
            Defect::InstallLogFirst => "install-log-first",
            Defect::ApplyMembershipAtCommit => "apply-membership-at-commit",
            Defect::LeaseWithoutDriftBound => "lease-without-drift-bound",
        }
    }

    /// The invariants a violation caused by this defect is expected to break.
    pub fn expected(self) -> &'static [Invariant] {
        use Invariant::*;
        match self {
            Defect::CommitEarlierTerms => &[StateMachineSafety, LeaderCompleteness],
            Defect::VoteWithoutLogCheck => &[LeaderCompleteness, StateMachineSafety],
            Defect::VoteBeforeDurable | Defect::ForgetVote => &[VoteSafety, ElectionSafety],
            Defect::AcknowledgeBeforeDurable => &[LeaderCompleteness, StateMachineSafety],
            Defect::ApplyBeyondCommit => &[AppliedBeforeCommitted],
            Defect::ReadWithoutQuorum => &[StaleRead, Linearizability],
            Defect::SnapshotBeforeDurable | Defect::InstallLogFirst => &[Recovery],
            Defect::ApplyMembershipAtCommit => {
                &[ConfigurationInForce, ElectionSafety, LeaderCompleteness, StateMachineSafety]
            }
            Defect::LeaseWithoutDriftBound => &[StaleRead, Linearizability],
        }
    }

    /// The core's switches for this defect (all off for the driver's defects).
    pub fn core_switches(self) -> skiff_raft::Sabotage {
        let mut sabotage = skiff_raft::Sabotage::default();
        match self {
            Defect::CommitEarlierTerms => sabotage.commit_earlier_terms = true,
            Defect::VoteWithoutLogCheck => sabotage.vote_without_log_check = true,
            Defect::AcknowledgeBeforeDurable => sabotage.acknowledge_before_durable = true,
            Defect::ApplyBeyondCommit => sabotage.apply_beyond_commit = true,
            Defect::ReadWithoutQuorum => sabotage.read_without_quorum = true,
            Defect::ApplyMembershipAtCommit => sabotage.apply_membership_at_commit = true,
            Defect::LeaseWithoutDriftBound => sabotage.lease_without_drift_bound = true,
            Defect::VoteBeforeDurable
            | Defect::ForgetVote
            | Defect::SnapshotBeforeDurable
            | Defect::InstallLogFirst => {}
        }
        sabotage
    }
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Defect {
    type Err = String;

    fn from_str(name: &str) -> Result<Defect, String> {
        Defect::ALL.into_iter().find(|defect| defect.name() == name).ok_or_else(|| {
            let names: Vec<&str> = Defect::ALL.iter().map(|defect| defect.name()).collect();
            format!("unknown defect {name:?}; one of: {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for defect in Defect::ALL {
            assert_eq!(defect.name().parse::<Defect>(), Ok(defect));
        }
        assert!("nonsense".parse::<Defect>().is_err());
    }
}
