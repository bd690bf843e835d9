//! Deliberate defects, for the simulator's self-test only. **Never set in production.**
//!
//! A checker that cannot fail proves nothing. The simulator (crates/sim) switches one of these
//! on, runs its default seed budget, and must report a violation of the invariant the defect
//! breaks; if it does not, the simulator has lost its teeth. Each switch is one `if` at the exact
//! place of the rule it breaks, so the hooks read as a list of the rules that matter most:
//!
//! - `commit_earlier_terms` drops the Figure 8 rule (Raft §5.4.2) in `replication.rs`;
//! - `vote_without_log_check` drops the up-to-date check of Raft §5.4.1 in `election.rs`;
//! - `acknowledge_before_durable` lets a follower acknowledge entries still on their way to its
//!   disk (`replication.rs`), so a leader can count a replica a crash will lose;
//! - `apply_beyond_commit` hands durable but uncommitted entries to the state machine
//!   (`node.rs`), bypassing the core's own assertion so that the simulator's check must catch it;
//! - `read_without_quorum` confirms reads without the heartbeat round of ReadIndex (thesis
//!   §6.4) in `read_index.rs` — ReadIndex without the leadership check — so a leader that was
//!   deposed without knowing it serves stale reads;
//! - `lease_without_drift_bound` makes the read lease last a whole election timeout
//!   (`read_index.rs`), ignoring `Config::clock_drift_bound`: with followers' clocks running
//!   faster than the leader's, a new leader can be elected while the old one still serves
//!   lease reads;
//! - `apply_membership_at_commit` puts a configuration in force only once its entry is
//!   committed instead of when it is appended (`membership.rs`), so two configurations without
//!   overlapping majorities can each elect a leader in the same term (thesis §4.1).
//!
//! Two more defects of the same list live in the simulator's driver, because they break the
//! driver's side of the contract rather than the core: replying to a vote before the vote is
//! durable, and forgetting the vote on restart.
//!
//! All switches are off by default, and `Config::new` never turns one on.

/// Which deliberate defects are switched on (all off by default). For the simulator's self-test
/// only: a node with any of these set is not Raft.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sabotage {
    /// Commit entries of earlier terms by counting replicas (breaks Raft §5.4.2, Figure 8).
    pub commit_earlier_terms: bool,
    /// Grant votes and pre-votes without checking that the candidate's log is at least as
    /// up-to-date as ours (breaks Raft §5.4.1).
    pub vote_without_log_check: bool,
    /// Acknowledge appended entries as soon as they are accepted, before they are durable
    /// (breaks contract item 2 from the core's side).
    pub acknowledge_before_durable: bool,
    /// Apply entries as soon as they are durable, even beyond the commit index.
    pub apply_beyond_commit: bool,
    /// Answer reads at once with the commit index, without confirming leadership by a
    /// heartbeat round (breaks ReadIndex, Raft thesis §6.4).
    pub read_without_quorum: bool,
    /// Let the read lease last a whole election timeout, ignoring the clock drift bound
    /// (breaks lease reads, thesis §6.4.1, once clocks drift).
    pub lease_without_drift_bound: bool,
    /// Put a configuration in force when its entry is committed rather than when it is
    /// appended (breaks membership changes, thesis §4.1).
    pub apply_membership_at_commit: bool,
}

impl Sabotage {
    /// Whether any defect is switched on.
    pub fn any(&self) -> bool {
        self.commit_earlier_terms
            || self.vote_without_log_check
            || self.acknowledge_before_durable
            || self.apply_beyond_commit
            || self.read_without_quorum
            || self.lease_without_drift_bound
            || self.apply_membership_at_commit
    }
}

#[cfg(test)]
mod tests {
    use crate::testkit::LocalCluster;
    use crate::{Action, LeaseReadError, MembershipChange, NodeId};

    /// A three-node cluster (with the settings `configure` makes), ticked until it has a
    /// leader, and stable; returns it with its leader.
    fn cluster(configure: impl Fn(&mut crate::Config)) -> (LocalCluster, NodeId) {
        let mut cluster = LocalCluster::new(3, false, configure);
        for _ in 0..100 {
            if let Some(leader) = cluster.leader() {
                cluster.stabilize();
                return (cluster, leader);
            }
            for id in 1..=3 {
                cluster.tick(NodeId(id), 1);
            }
            cluster.stabilize();
        }
        panic!("no leader elected");
    }

    #[test]
    fn apply_membership_at_commit_delays_the_configuration() {
        for defect in [false, true] {
            let (mut cluster, id) =
                cluster(|config| config.sabotage.apply_membership_at_commit = defect);
            cluster.add_node(NodeId(4));
            let leader = cluster.node_mut(id);
            leader.change_membership(&[MembershipChange::AddVoter(NodeId(4))]).expect("valid");
            // Correct: in force at once. Defective: only once committed.
            assert_eq!(leader.membership().voters.contains(&NodeId(4)), !defect);
            cluster.stabilize();
            assert!(cluster.node(id).membership().voters.contains(&NodeId(4)));
        }
    }

    #[test]
    fn lease_without_drift_bound_stretches_the_lease_to_the_election_timeout() {
        for defect in [false, true] {
            let (mut cluster, id) = cluster(|config| {
                config.lease_reads = true;
                config.clock_drift_bound = 3;
                config.sabotage.lease_without_drift_bound = defect;
            });
            // One acknowledged heartbeat round, then silence.
            cluster.tick(id, 1);
            cluster.stabilize();
            for _ in 0..7 {
                cluster.node_mut(id).tick();
            }
            cluster.drop_messages(|_| true);
            // Seven ticks after the round: 10 - 3 = 7 is over, 10 is not.
            let read = cluster.node_mut(id).lease_read(1);
            if defect {
                assert_eq!(read, Ok(()));
                let actions = cluster.node_mut(id).take_actions();
                assert!(actions.iter().any(|a| matches!(a, Action::ReadReady { .. })));
            } else {
                assert_eq!(read, Err(LeaseReadError::Expired));
            }
        }
    }

    #[test]
    fn read_without_quorum_is_the_readindex_leadership_check() {
        for defect in [false, true] {
            let (mut cluster, id) = cluster(|config| config.sabotage.read_without_quorum = defect);
            let leader = cluster.node_mut(id);
            leader.read_index(1).expect("leads");
            let commit = leader.commit();
            let ready = leader
                .take_actions()
                .into_iter()
                .any(|action| matches!(action, Action::ReadReady { index, .. } if index == commit));
            // Correct: no answer before a heartbeat round confirms leadership.
            assert_eq!(ready, defect);
        }
    }
}
