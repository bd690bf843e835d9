//! A node's settings: who it is, the cluster's initial voters, timing in ticks, and flow-control
//! limits. Checked once by [`Config::validate`]; the node relies on it afterwards. (The cluster's
//! *membership* is not a setting: after the start it lives in the log and in snapshots, see
//! `membership.rs`.)

use std::collections::BTreeSet;

use crate::error::ConfigError;
use crate::sabotage::Sabotage;
use crate::types::NodeId;

/// The settings of one node. All times are in ticks: the driver decides how long a tick is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's id; never 0.
    pub id: NodeId,
    /// The bootstrap configuration: the voters the cluster was founded with. It is used only
    /// while the node's log holds no configuration entry and it has no snapshot; from then on
    /// the membership comes from the log and snapshots. Every founding member is given the same
    /// set, this node included. A node **joining** an existing cluster is given the empty set:
    /// it is then a member of nothing (it never campaigns) until the leader, having added it
    /// with [`Node::change_membership`](crate::Node::change_membership), replicates the
    /// configuration to it.
    pub voters: BTreeSet<NodeId>,
    /// The minimum election timeout. Each timeout is drawn uniformly from
    /// `[election_timeout, 2 * election_timeout)` (Raft §5.2). Also the period of check-quorum
    /// and the length of the leader lease that makes followers ignore disruptive votes.
    pub election_timeout: u32,
    /// How often a leader sends heartbeats; must be below `election_timeout`.
    pub heartbeat_interval: u32,
    /// Ask "would you vote for me?" before campaigning (Raft thesis §9.6).
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within an election timeout steps down, and
    /// followers that hear from a leader ignore votes for the rest of that timeout (thesis §6.2).
    pub check_quorum: bool,
    /// At most this many entries in one `Append`.
    pub max_append_entries: usize,
    /// At most this many bytes of entries in one `Append` (one entry is always allowed).
    pub max_append_bytes: u64,
    /// At most this many `Append`s with entries in flight to one follower (the pipeline window).
    pub max_inflight_appends: usize,
    /// Durable entries kept in memory for sending and applying without a read, in bytes.
    /// Entries that are not yet durable are always kept, whatever this says.
    pub max_cached_bytes: u64,
    /// At most this many bytes of entries in one `Apply` action (one entry is always allowed).
    pub max_apply_bytes: u64,
    /// Whether a leader tells its followers of a new commit index at once, with an `Append`
    /// that carries nothing else (as etcd's raft does), or lets it ride on the next `Append`
    /// with entries or the next heartbeat (as the Raft paper has it, §5.3). At once costs two
    /// messages per follower per commit when writes come one at a time (the `Append` and its
    /// answer, and their wake-ups); later, a follower applies a write, and serves it to stale
    /// reads, up to a heartbeat interval after the leader did when no write follows it.
    /// Linearizable reads wait for neither: the heartbeat round that confirms a read index
    /// carries the commit index to every follower.
    pub eager_commit: bool,
    /// Serve [`Node::lease_read`](crate::Node::lease_read)s (thesis §6.4.1): off by default.
    /// Lease reads are correct only while the nodes' clocks (their tick rates) drift apart by
    /// less than `clock_drift_bound` ticks per election timeout; they need `check_quorum`, and
    /// every node of the cluster must have the same setting (followers protect the lease).
    pub lease_reads: bool,
    /// How many ticks the lease is shorter than the election timeout, to absorb clock drift
    /// between the leader and its followers; below `election_timeout`.
    pub clock_drift_bound: u32,
    /// A learner is promoted to voter only if its log is at most this many entries behind the
    /// leader's; further behind, it would hold up commits as a voter while catching up.
    pub max_learner_lag: u64,
    /// The seed of the node's random generator (election timeouts). Give each node its own.
    pub seed: u64,
    /// Deliberate defects for the simulator's self-test. Never set in production: all off is
    /// the only correct setting, and `Config::new` leaves them off.
    pub sabotage: Sabotage,
}

impl Config {
    /// A configuration with these defaults: a 10-tick election timeout with a 1-tick
    /// heartbeat, pre-vote and check-quorum on, 64-entry / 1 MiB appends with a window of 32, a
    /// 16 MiB cache, commit indexes sent to followers at once, learners promoted when at most
    /// 1,000 entries behind, and lease reads off (with a drift bound of 2 ticks for when they
    /// are turned on). skiff's server changes some (crates/server, `server.rs`).
    pub fn new(id: NodeId, voters: impl IntoIterator<Item = NodeId>) -> Config {
        Config {
            id,
            voters: voters.into_iter().collect(),
            election_timeout: 10,
            heartbeat_interval: 1,
            pre_vote: true,
            check_quorum: true,
            max_append_entries: 64,
            max_append_bytes: 1 << 20,
            max_inflight_appends: 32,
            max_cached_bytes: 16 << 20,
            max_apply_bytes: 1 << 20,
            eager_commit: true,
            max_learner_lag: 1000,
            lease_reads: false,
            clock_drift_bound: 2,
            seed: id.0,
            sabotage: Sabotage::default(),
        }
    }

    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |reason: String| Err(ConfigError { reason });
        if self.id.0 == 0 {
            return invalid("node id 0 is reserved".into());
        }
        if self.voters.iter().any(|voter| voter.0 == 0) {
            return invalid("node id 0 is reserved and cannot be a voter".into());
        }
        if !self.voters.is_empty() && !self.voters.contains(&self.id) {
            return invalid(format!(
                "node {} is not among the initial voters {:?} (a joining node is given none)",
                self.id, self.voters
            ));
        }
        if self.heartbeat_interval == 0 {
            return invalid("heartbeat interval must be at least one tick".into());
        }
        if self.election_timeout <= self.heartbeat_interval {
            return invalid(format!(
                "election timeout ({}) must be longer than the heartbeat interval ({})",
                self.election_timeout, self.heartbeat_interval
            ));
        }
        if self.max_append_entries == 0 || self.max_append_bytes == 0 {
            return invalid("append limits must allow at least one entry".into());
        }
        if self.max_inflight_appends == 0 {
            return invalid("the inflight window must allow at least one append".into());
        }
        if self.max_apply_bytes == 0 {
            return invalid("the apply limit must allow at least one entry".into());
        }
        if self.clock_drift_bound >= self.election_timeout {
            return invalid(format!(
                "the clock drift bound ({}) must be below the election timeout ({})",
                self.clock_drift_bound, self.election_timeout
            ));
        }
        if self.lease_reads && !self.check_quorum {
            return invalid("lease reads need check-quorum: followers protect the lease".into());
        }
        Ok(())
    }
}
