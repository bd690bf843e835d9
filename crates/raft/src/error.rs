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
    /// The sender is not a member of the cluster.
    #[error("message from unknown node {from}")]
    UnknownSender {
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
