//! What the core asks its driver to do: the output of every input.
//!
//! After feeding inputs to a [`Node`](crate::Node), the driver calls
//! [`Node::take_actions`](crate::Node::take_actions) and performs the returned actions under the
//! contract written in the crate documentation.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::membership::Membership;
use crate::message::Message;
use crate::snapshot::SnapshotMeta;
use crate::types::{Entry, HardState, Index, NodeId, Term};

/// One thing the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Make the term and vote durable. It must be durable before any `Send` that follows it in
    /// the same batch leaves the node (contract item 1).
    PersistHardState(HardState),
    /// Make these entries durable, superseding every stored entry at or after the first one's
    /// index (a suffix truncation when that index is not past the stored log). The entries are
    /// consecutive and non-empty. Report completion with [`Node::persisted`](crate::Node::persisted).
    PersistEntries(Vec<Entry>),
    /// Deliver this message to `message.to`. Delivery may fail, be delayed or be duplicated.
    Send(Message),
    /// Read durable entries from the log and hand them back with
    /// [`Node::entries_read`](crate::Node::entries_read).
    ReadEntries(ReadRequest),
    /// Fetch the snapshot `meta` from node `from`'s driver and install it atomically: the state
    /// machine replaced by the snapshot's, and the log by an empty one after `meta.index`. Report
    /// the outcome with [`Node::snapshot_installed`](crate::Node::snapshot_installed) or
    /// [`Node::snapshot_failed`](crate::Node::snapshot_failed) (contract item 11).
    FetchSnapshot {
        /// The node to fetch from: the leader that offered the snapshot.
        from: NodeId,
        /// The snapshot to fetch: the bytes fetched must be of exactly this index and term.
        meta: SnapshotMeta,
    },
    /// Apply these committed entries to the state machine, in order, after every entry applied
    /// before. They are consecutive, committed and durable on this node, and above any snapshot
    /// the state machine was restored from or installed.
    Apply(Vec<Entry>),
    /// The reads asked for with these contexts ([`Node::read_index`](crate::Node::read_index))
    /// are confirmed: serve each once the state machine has applied up to `index`.
    ReadReady {
        /// The read index: apply up to here, then read.
        index: Index,
        /// The driver's contexts of the reads, in the order asked.
        contexts: Vec<u64>,
    },
    /// The reads asked for with these contexts cannot be confirmed: this node stopped leading.
    /// Retry them at the new leader.
    ReadFailed {
        /// The driver's contexts of the reads.
        contexts: Vec<u64>,
    },
    /// Something happened that the driver may report (logs, metrics, the dashboard).
    Event(Event),
}

/// A request to read durable entries `[low, high)` from the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadRequest {
    /// The first index to read; at least the log's first index.
    pub low: Index,
    /// One past the last index to read; every index below it is durable.
    pub high: Index,
    /// Return no more entries than fit in this many bytes (by [`Entry::size`]), stopping before
    /// the entry that would exceed it; always return at least one entry.
    pub max_bytes: u64,
    /// Why the core wants the entries; return it unchanged.
    pub purpose: ReadPurpose,
}

/// Why the core asked to read entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPurpose {
    /// To send them to follower `to`, as the leader of `term`.
    Replicate {
        /// The follower that needs them.
        to: NodeId,
        /// The term in which this node led when it asked; a result from another term is dropped.
        term: Term,
    },
    /// To apply them to the state machine.
    Apply,
}

/// The role a node plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RoleKind {
    /// Follows a leader, or waits for one.
    Follower,
    /// Asks whether it could win an election before starting one (Raft thesis §9.6).
    PreCandidate,
    /// Campaigns for votes (Raft §5.2).
    Candidate,
    /// Leads the cluster for its term.
    Leader,
}

/// Something the core reports for observation; it needs no action for correctness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The node took a new role.
    RoleChanged {
        /// The new role.
        role: RoleKind,
        /// The term the role is held in.
        term: Term,
    },
    /// The node learned of a newer term.
    TermChanged {
        /// The new term; larger than any before.
        term: Term,
    },
    /// The node learned who leads (or that it does not know).
    LeaderChanged {
        /// The leader, if known.
        leader: Option<NodeId>,
        /// The term of that leadership.
        term: Term,
    },
    /// The commit index advanced.
    CommitAdvanced {
        /// The new commit index; larger than any before.
        commit: Index,
    },
    /// A leadership transfer to `target` did not complete within an election timeout and was
    /// given up: the leader accepts proposals again.
    TransferAborted {
        /// The node leadership was to be transferred to.
        target: NodeId,
    },
    /// The configuration in force changed: a configuration entry was appended, one was
    /// truncated away (the previous configuration is back in force), or a snapshot brought
    /// one. A driver that connects to peers by id learns here whom to reach.
    MembershipChanged {
        /// The index of the configuration entry (or snapshot) it comes from.
        index: Index,
        /// The configuration now in force.
        membership: Membership,
    },
}

impl fmt::Display for RoleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            RoleKind::Follower => "follower",
            RoleKind::PreCandidate => "pre-candidate",
            RoleKind::Candidate => "candidate",
            RoleKind::Leader => "leader",
        };
        f.write_str(name)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::RoleChanged { role, term } => write!(f, "role={role} term={term}"),
            Event::TermChanged { term } => write!(f, "term={term}"),
            Event::LeaderChanged { leader: Some(leader), term } => {
                write!(f, "leader={leader} term={term}")
            }
            Event::LeaderChanged { leader: None, term } => write!(f, "leader=none term={term}"),
            Event::CommitAdvanced { commit } => write!(f, "commit={commit}"),
            Event::TransferAborted { target } => write!(f, "transfer to {target} aborted"),
            Event::MembershipChanged { index, membership } => {
                write!(f, "membership {membership} (entry {index})")
            }
        }
    }
}
