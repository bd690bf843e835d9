//! A node's configuration: who it is, who the voters are, timing in ticks, and flow-control
//! limits. Checked once by [`Config::validate`]; the node relies on it afterwards.

use std::collections::BTreeSet;

use crate::error::ConfigError;
use crate::sabotage::Sabotage;
use crate::types::NodeId;

/// The settings of one node. All times are in ticks: the driver decides how long a tick is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's id; must be one of `voters`.
    pub id: NodeId,
    /// The voting members of the cluster, this node included. Membership changes arrive with a
    /// later issue; until then the set is fixed at start.
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
    /// The seed of the node's random generator (election timeouts). Give each node its own.
    pub seed: u64,
    /// Deliberate defects for the simulator's self-test. Never set in production: all off is
    /// the only correct setting, and `Config::new` leaves them off.
    pub sabotage: Sabotage,
}

impl Config {
    /// A configuration with the defaults used by skiff's server: a 10-tick election timeout
    /// with a 1-tick heartbeat, pre-vote and check-quorum on, 64-entry / 1 MiB appends with a
    /// window of 32, a 16 MiB cache.
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
        if !self.voters.contains(&self.id) {
            return invalid(format!("node {} is not among the voters {:?}", self.id, self.voters));
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
        Ok(())
    }
}
