//! The vocabulary of the protocol: node ids, terms, log indexes and log entries.
//!
//! `NodeId`, `Term` and `Index` are distinct newtypes so that an index can never be passed where
//! a term is expected. All three are plain `u64`s underneath; zero is meaningful for `Term` and
//! `Index` (the empty log has last index 0 at term 0) but never a valid `NodeId`.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::membership::Membership;

/// The identity of a cluster member. Never zero: zero is reserved to catch uninitialised ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

/// A Raft term (Raft §5.1): a logical clock that only moves forward on every node.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Term(pub u64);

/// A position in the replicated log. The first entry has index 1; index 0 is "before the log".
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Index(pub u64);

impl Term {
    /// The term after this one: what a candidate campaigns for.
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl Index {
    /// The index after this one.
    pub fn next(self) -> Index {
        Index(self.0 + 1)
    }

    /// The index before this one, saturating at zero ("before the log").
    pub fn prev(self) -> Index {
        Index(self.0.saturating_sub(1))
    }

    /// This index moved `n` positions forward.
    pub fn plus(self, n: u64) -> Index {
        Index(self.0 + n)
    }

    /// The number of indexes in `[from, self)`, or zero if `from` is not below `self`.
    pub fn distance_from(self, from: Index) -> u64 {
        self.0.saturating_sub(from.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a log entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// The entry a new leader appends at the start of its term (Raft §5.4.2, §8): committing it
    /// commits every earlier entry, and it lets the leader learn the commit index promptly.
    Noop,
    /// An opaque command for the state machine, exactly as proposed by the client.
    Command(Bytes),
    /// A new cluster configuration, in force on every node from the moment the entry is in its
    /// log (see `membership.rs`). The state machine has nothing to do with it.
    Membership(Membership),
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The entry's position; contiguous and increasing within any log.
    pub index: Index,
    /// The term of the leader that created the entry; never decreasing along a log.
    pub term: Term,
    /// What the entry carries.
    pub payload: Payload,
}

impl Entry {
    /// The size the entry counts for in byte budgets (batching limits, caches): its payload plus a
    /// fixed overhead for index, term and framing, so that empty entries still cost something.
    pub fn size(&self) -> u64 {
        const OVERHEAD: u64 = 24;
        match &self.payload {
            Payload::Noop => OVERHEAD,
            Payload::Command(command) => OVERHEAD + command.len() as u64,
            Payload::Membership(membership) => OVERHEAD + 8 * membership.members().len() as u64,
        }
    }
}

impl fmt::Display for Entry {
    /// The compact form used in traces: `index@term`, with the command when it is text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.index, self.term)?;
        match &self.payload {
            Payload::Noop => write!(f, " noop"),
            Payload::Command(command) => match std::str::from_utf8(command) {
                Ok(text) if text.len() <= 32 && !text.contains(char::is_whitespace) => {
                    write!(f, " {text}")
                }
                _ => write!(f, " <{} bytes>", command.len()),
            },
            Payload::Membership(membership) => write!(f, " membership {membership}"),
        }
    }
}

/// The state every node must keep durable across restarts (Raft Figure 2, "persistent state"):
/// the current term and the vote cast in it. The log is persisted separately.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this node has seen; never decreases.
    pub term: Term,
    /// The candidate this node voted for in `term`, if any; at most one per term.
    pub vote: Option<NodeId>,
}
