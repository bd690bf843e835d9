//! The errors of skiff-raft. Bad input and "not leader" are errors; a broken invariant is a
//! panic, because it means a bug and continuing could lose acknowledged data.

use thiserror::Error;

use crate::types::{Index, NodeId, Term};

/// The configuration is inconsistent.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("invalid raft configuration: {reason}")]
pub struct ConfigError {
    /// What is wrong, in words.
    pub reason: String,
}

/// The state a node was restored from contradicts itself.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("inconsistent restored raft state: {reason}")]
pub struct RestoreError {
    /// What is wrong, in words.
    pub reason: String,
}

/// Why a proposal was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum ProposeError {
    /// Only the leader accepts proposals; `leader` is the one this node knows of, if any, so the
    /// driver can forward the proposal or redirect the client.
    #[error("not the leader (leader: {leader:?}, term {term})")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
        /// This node's current term.
        term: Term,
    },
    /// The leader is handing leadership to `target` and accepts no proposals meanwhile (thesis
    /// §3.10). Retry at the new leader, or here if the transfer is aborted.
    #[error("a leadership transfer to {target} is in progress")]
    TransferInProgress {
        /// The node leadership is being transferred to.
        target: NodeId,
    },
}

/// Why a leadership transfer ([`Node::transfer_leadership`](crate::Node::transfer_leadership))
/// was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum TransferError {
    /// Only the leader transfers leadership; `leader` is the one this node knows of.
    #[error("not the leader (leader: {leader:?}, term {term})")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
        /// This node's current term.
        term: Term,
    },
    /// A transfer to `target` is already under way.
    #[error("a leadership transfer to {target} is already in progress")]
    InProgress {
        /// The node leadership is being transferred to.
        target: NodeId,
    },
    /// The target is this node, which already leads.
    #[error("the target is already the leader")]
    TargetIsLeader,
    /// The target is not a voter of the configuration in force (unknown, a learner, or an
    /// outgoing voter of a joint configuration).
    #[error("{id} is not a voter")]
    NotAVoter {
        /// The target asked for.
        id: NodeId,
    },
    /// No target was named and there is no other voter to transfer to.
    #[error("there is no other voter to transfer leadership to")]
    NoTarget,
}

/// Why a linearizable read was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum ReadIndexError {
    /// Only the leader confirms reads; `leader` is the one this node knows of, if any.
    #[error("not the leader (leader: {leader:?}, term {term})")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
        /// This node's current term.
        term: Term,
    },
}

/// Why a membership change ([`Node::change_membership`](crate::Node::change_membership)) was
/// refused. Nothing was appended to the log.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum MembershipError {
    /// Only the leader changes the membership; `leader` is the one this node knows of.
    #[error("not the leader (leader: {leader:?}, term {term})")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
        /// This node's current term.
        term: Term,
    },
    /// Another change is under way: the configuration entry at `index` is not committed yet,
    /// or it is joint and the leader has not left it yet. Retry once it completes.
    #[error("a membership change is already in progress (configuration entry {index})")]
    ChangeInProgress {
        /// The index of the configuration entry still in progress.
        index: Index,
    },
    /// The leader has not yet committed the no-op of its term at `index`: until it has, a
    /// change could overlap an uncommitted one of an earlier leader (see `membership.rs`).
    /// Retry shortly.
    #[error("the leader has not committed its first entry ({index}) yet")]
    LeaderNotReady {
        /// The index of the leader's no-op.
        index: Index,
    },
    /// A leadership transfer to `target` is under way; retry after it.
    #[error("a leadership transfer to {target} is in progress")]
    TransferInProgress {
        /// The node leadership is being transferred to.
        target: NodeId,
    },
    /// The request holds no change.
    #[error("no membership change was requested")]
    NoChange,
    /// Node id 0 is reserved.
    #[error("node id 0 is reserved")]
    ReservedId,
    /// The request names `id` in more than one change.
    #[error("{id} is named in more than one change")]
    DuplicateNode {
        /// The node named twice.
        id: NodeId,
    },
    /// The node to add is already a member.
    #[error("{id} is already a member")]
    AlreadyMember {
        /// The node.
        id: NodeId,
    },
    /// The node to remove is not a member (unknown node).
    #[error("{id} is not a member")]
    NotMember {
        /// The node.
        id: NodeId,
    },
    /// The node to promote is not a learner.
    #[error("{id} is not a learner")]
    NotLearner {
        /// The node.
        id: NodeId,
    },
    /// The change would leave the cluster without voters.
    #[error("the change would leave no voter")]
    NoVoters,
    /// The learner to promote is more than `max_lag` entries behind the leader's log: as a
    /// voter it could stall commits while it catches up. Retry once it has.
    #[error(
        "learner {id} is not caught up: it holds {match_index}, the leader {last_index} (at most {max_lag} behind allowed)"
    )]
    LearnerBehind {
        /// The learner.
        id: NodeId,
        /// The learner's match index, as the leader knows it.
        match_index: Index,
        /// The leader's last index.
        last_index: Index,
        /// The allowed lag ([`Config::max_learner_lag`](crate::Config::max_learner_lag)).
        max_lag: u64,
    },
}

/// Why a lease read ([`Node::lease_read`](crate::Node::lease_read)) was refused. Nothing was
/// queued; [`Node::read_index`](crate::Node::read_index) still serves the read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum LeaseReadError {
    /// Only the leader holds a lease; `leader` is the one this node knows of.
    #[error("not the leader (leader: {leader:?}, term {term})")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
        /// This node's current term.
        term: Term,
    },
    /// Lease reads are off ([`Config::lease_reads`](crate::Config::lease_reads)).
    #[error("lease reads are disabled")]
    Disabled,
    /// The leader's no-op at `index` is not committed yet: until it is, the commit index may
    /// lag writes its predecessor acknowledged.
    #[error("the leader has not committed its first entry ({index}) yet")]
    LeaderNotReady {
        /// The index of the leader's no-op.
        index: Index,
    },
    /// No quorum acknowledged a heartbeat round recent enough: the lease ran out (or was never
    /// earned, or was restarted by a configuration change).
    #[error("the leader's lease has expired")]
    Expired,
    /// The leader started a leadership transfer in this term; it serves no lease reads for the
    /// rest of the term.
    #[error("a leadership transfer was started in this term")]
    TransferStarted,
}

/// Why a message was refused. Messages come from the network: a bad one is an error, never a
/// panic.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum StepError {
    /// The message is addressed to another node.
    #[error("message for {to} delivered to {this}")]
    WrongRecipient {
        /// Who the message is for.
        to: crate::NodeId,
        /// Who received it.
        this: crate::NodeId,
    },
    /// The sender is this node itself, or has the reserved id 0. (Messages from non-members
    /// are accepted: a leader may be one this node's configuration does not know yet.)
    #[error("message from invalid sender {from}")]
    InvalidSender {
        /// The sender.
        from: crate::NodeId,
    },
    /// The message contradicts itself (e.g. entries that are not consecutive).
    #[error("malformed message from {from}: {reason}")]
    Malformed {
        /// The sender.
        from: crate::NodeId,
        /// What is wrong.
        reason: String,
    },
}

/// Why the driver's report was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ReportError {
    /// The entries read do not start at the requested index or are not consecutive.
    #[error("entries read for [{low}, {high}) are not the requested consecutive range")]
    BadRead {
        /// The requested first index.
        low: Index,
        /// The requested end.
        high: Index,
    },
    /// A snapshot reported taken or installed contradicts the log, the applied index, or the
    /// snapshot the node already has (see contract items 9 and 11).
    #[error("snapshot at {index} refused: {reason}")]
    BadSnapshot {
        /// The snapshot's last index.
        index: Index,
        /// What is wrong, in words.
        reason: String,
    },
    /// A compaction reported beyond what the latest snapshot covers (contract item 10).
    #[error("compaction up to {index} refused: {reason}")]
    BadCompaction {
        /// The index reported compacted.
        index: Index,
        /// What is wrong, in words.
        reason: String,
    },
}
