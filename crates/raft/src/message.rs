//! Messages between nodes (Raft Figure 2, plus pre-vote from the Raft thesis §9.6).
//!
//! Every message travels in a [`Message`] envelope that names sender, receiver and the sender's
//! term; the term rules of Raft §5.1 are applied to the envelope before the body is looked at.
//! Requests and responses come in pairs (`Vote` / `VoteResponse`, `Append` / `AppendResponse`).
//! These are plain Rust types; the wire schema belongs to the transport.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::snapshot::SnapshotMeta;
use crate::types::{Entry, Index, NodeId, Term};

/// A message from one node to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The sender's current term, except for `PreVote` (the term the sender would campaign for)
    /// and a granted `PreVoteResponse` (the term of the `PreVote` it grants).
    pub term: Term,
    /// What the message says.
    pub body: Body,
}

/// The body of a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// Would you vote for me if I campaigned in `term`? Changes no state at the receiver
    /// (Raft thesis §9.6), so a node that cannot win cannot disrupt the cluster.
    PreVote {
        /// The index of the last entry in the sender's log.
        last_index: Index,
        /// The term of the last entry in the sender's log.
        last_term: Term,
    },
    /// The answer to a `PreVote`.
    PreVoteResponse {
        /// Whether the receiver would vote for the sender.
        granted: bool,
    },
    /// Vote for me in `term` (Raft §5.2).
    Vote {
        /// The index of the last entry in the candidate's log (Raft §5.4.1).
        last_index: Index,
        /// The term of the last entry in the candidate's log (Raft §5.4.1).
        last_term: Term,
        /// The candidate campaigns because the leader asked it to (`TimeoutNow`, a leadership
        /// transfer, thesis §3.10): voters grant it even within their leader's lease.
        transfer: bool,
    },
    /// The answer to a `Vote`; a grant is sent only after the vote is durable.
    VoteResponse {
        /// Whether the vote was granted.
        granted: bool,
    },
    /// Append `entries` after the entry at `prev_index`, if it has term `prev_term` (Raft §5.3).
    Append {
        /// The index of the entry just before `entries`.
        prev_index: Index,
        /// The term of the entry at `prev_index`.
        prev_term: Term,
        /// Consecutive entries starting at `prev_index + 1`; may be empty.
        entries: Vec<Entry>,
        /// The leader's commit index.
        commit: Index,
    },
    /// The answer to one or more `Append`s.
    AppendResponse(AppendOutcome),
    /// The leader is alive; `commit` is the leader's commit index capped at what the receiver is
    /// known to hold, so the receiver can commit without checking its log against it.
    Heartbeat {
        /// min(leader's commit index, the receiver's match index).
        commit: Index,
        /// The leader's latest read round in this term (0 before the first): an answer echoing
        /// it confirms the leadership that linearizable reads of that round rely on (ReadIndex,
        /// Raft thesis §6.4).
        read_round: u64,
    },
    /// The answer to a `Heartbeat`.
    HeartbeatResponse {
        /// The `read_round` of the heartbeat answered (0 for an answer to a stale message).
        read_round: u64,
    },
    /// The entries you need next were compacted into this snapshot: fetch it from me and
    /// install it (Raft §7). Only the metadata travels here; the bytes are the drivers' to move.
    /// It is answered, like an `Append`, with an `AppendResponse`: accepted at the snapshot's
    /// index once installed, or at the follower's own commit index if the offer is stale.
    InstallSnapshot {
        /// The snapshot offered: its last index and term, and the membership as of that index.
        meta: SnapshotMeta,
    },
    /// A follower asks its leader for a read index on behalf of reads it will serve itself
    /// (thesis §6.4). Answered with a `ReadIndexResponse` once the leader has confirmed its
    /// leadership with a heartbeat round, or at once with a refusal if it does not lead.
    ReadIndex {
        /// The follower's name for the request (the driver's context of its first read, never
        /// reused), echoed in the answer.
        request: u64,
    },
    /// The answer to a `ReadIndex`.
    ReadIndexResponse {
        /// The request answered.
        request: u64,
        /// The read index, or `None` if the sender does not lead (or stopped leading first).
        index: Option<Index>,
    },
    /// Campaign now, for the next term, without pre-vote: the leader hands you leadership
    /// (thesis §3.10). Sent by the leader once the receiver's log matches its whole log.
    TimeoutNow,
}

/// How a follower answered an `Append`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendOutcome {
    /// The follower's log matches the leader's up to `match_index`, and all of it is durable.
    /// Acknowledgements are cumulative: one may answer several `Append`s.
    Accepted {
        /// The highest index known to match the leader's log and be durable on the follower.
        match_index: Index,
    },
    /// The entry at `prev_index` is missing or has another term. The hint lets the leader skip
    /// a whole term of conflicting entries per round trip (Raft §5.3, the optimisation at the
    /// end of the section) instead of one entry per round trip.
    Rejected {
        /// The `prev_index` of the rejected `Append`, so the leader can discard stale rejections.
        prev_index: Index,
        /// The term of the follower's entry at `prev_index`, if it has one.
        conflict_term: Option<Term>,
        /// The first index of `conflict_term` in the follower's log, or one past the follower's
        /// last index if it has no entry at `prev_index`.
        conflict_index: Index,
    },
}

impl fmt::Display for Message {
    /// The compact trace form: `n1@2 → n3 Append base=1@1 [2@2 noop] commit=1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{} → {} ", self.from, self.term, self.to)?;
        match &self.body {
            Body::PreVote { last_index, last_term } => {
                write!(f, "PreVote last={last_index}@{last_term}")
            }
            Body::PreVoteResponse { granted } => {
                write!(f, "PreVoteResponse {}", if *granted { "granted" } else { "rejected" })
            }
            Body::Vote { last_index, last_term, transfer: false } => {
                write!(f, "Vote last={last_index}@{last_term}")
            }
            Body::Vote { last_index, last_term, transfer: true } => {
                write!(f, "Vote last={last_index}@{last_term} transfer")
            }
            Body::VoteResponse { granted } => {
                write!(f, "VoteResponse {}", if *granted { "granted" } else { "rejected" })
            }
            Body::Append { prev_index, prev_term, entries, commit } => {
                let entries = entry_list(entries);
                write!(f, "Append base={prev_index}@{prev_term} {entries} commit={commit}")
            }
            Body::AppendResponse(AppendOutcome::Accepted { match_index }) => {
                write!(f, "AppendResponse match={match_index}")
            }
            Body::AppendResponse(AppendOutcome::Rejected {
                prev_index,
                conflict_term,
                conflict_index,
            }) => {
                write!(f, "AppendResponse reject base={prev_index} conflict=")?;
                match conflict_term {
                    Some(term) => write!(f, "{conflict_index}@{term}"),
                    None => write!(f, "{conflict_index}@none"),
                }
            }
            Body::Heartbeat { commit, read_round: 0 } => write!(f, "Heartbeat commit={commit}"),
            Body::Heartbeat { commit, read_round } => {
                write!(f, "Heartbeat commit={commit} round={read_round}")
            }
            Body::HeartbeatResponse { read_round: 0 } => write!(f, "HeartbeatResponse"),
            Body::HeartbeatResponse { read_round } => {
                write!(f, "HeartbeatResponse round={read_round}")
            }
            Body::InstallSnapshot { meta } => write!(f, "InstallSnapshot {meta}"),
            Body::TimeoutNow => write!(f, "TimeoutNow"),
            Body::ReadIndex { request } => write!(f, "ReadIndex request={request}"),
            Body::ReadIndexResponse { request, index: Some(index) } => {
                write!(f, "ReadIndexResponse request={request} index={index}")
            }
            Body::ReadIndexResponse { request, index: None } => {
                write!(f, "ReadIndexResponse request={request} refused")
            }
        }
    }
}

/// A compact rendering of a list of entries for traces: all of them when few, else the ends and
/// the count.
pub fn entry_list(entries: &[Entry]) -> String {
    match entries {
        [first, .., last] if entries.len() > 3 => {
            format!("[{first}, …, {last}] ({} entries)", entries.len())
        }
        _ => {
            let shown: Vec<String> = entries.iter().map(Entry::to_string).collect();
            format!("[{}]", shown.join(", "))
        }
    }
}
