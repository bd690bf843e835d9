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
//!   §6.4) in `read_index.rs`, so a leader that was deposed without knowing it serves stale
//!   reads.
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
}

impl Sabotage {
    /// Whether any defect is switched on.
    pub fn any(&self) -> bool {
        self.commit_earlier_terms
            || self.vote_without_log_check
            || self.acknowledge_before_durable
            || self.apply_beyond_commit
            || self.read_without_quorum
    }
}
