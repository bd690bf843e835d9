//! Conversions between the core's [`Message`] and the wire's [`proto::Message`].
//!
//! The wire message leaves out sender and receiver: they are the enclosing frame's `from` and
//! `to`, named once per frame rather than once per message, so a batch cannot contain a message
//! from anyone but the node that sent the frame. [`encode`] therefore drops them and [`decode`]
//! takes them back from the frame.
//!
//! Encoding cannot fail: every core message has a wire form. Decoding reads bytes from the
//! network, so it checks what protobuf cannot (a oneof that must be set, ids that must not be
//! zero) and returns a [`WireError`] naming the field, never panicking. It checks structure
//! only: whether entries are consecutive or terms sensible is the core's to judge
//! (`skiff_raft::StepError::Malformed`), so that the rule lives in one place.
//!
//! Adding a kind of message: add it to `proto/peer.proto` (a message and a member of
//! `Message.body` with the next free number), then add one arm to [`encode`] and one to
//! `decode_body` (both matches are exhaustive, so the compiler points at them), and a case to
//! the round-trip test below.

use skiff_raft::{
    AppendOutcome, Body, Entry, Index, Membership, Message, NodeId, Payload, SnapshotMeta, Term,
};
use thiserror::Error;

use super::proto;
use super::proto::message::Body as WireBody;

/// Why a wire message could not be turned into a core message.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum WireError {
    /// A field that must be set (a oneof, or an id) is absent. For `body` this is also what a
    /// message kind unknown to this node looks like: protobuf skips the unknown field.
    #[error("missing field {field} (absent, zero, or a kind this node does not know)")]
    MissingField {
        /// The field, as named in `peer.proto` (`Message.body`, `Entry.payload`, ...).
        field: &'static str,
    },
}

/// The wire form of `message`, without its sender and receiver (the frame carries them).
pub fn encode(message: Message) -> proto::Message {
    let body = match message.body {
        Body::PreVote { last_index, last_term } => {
            WireBody::PreVote(proto::PreVote { last_index: last_index.0, last_term: last_term.0 })
        }
        Body::PreVoteResponse { granted } => {
            WireBody::PreVoteResponse(proto::PreVoteResponse { granted })
        }
        Body::Vote { last_index, last_term, transfer } => WireBody::Vote(proto::Vote {
            last_index: last_index.0,
            last_term: last_term.0,
            transfer,
        }),
        Body::VoteResponse { granted } => WireBody::VoteResponse(proto::VoteResponse { granted }),
        Body::Append { prev_index, prev_term, entries, commit } => {
            WireBody::Append(proto::Append {
                prev_index: prev_index.0,
                prev_term: prev_term.0,
                entries: entries.into_iter().map(encode_entry).collect(),
                commit: commit.0,
            })
        }
        Body::AppendResponse(outcome) => WireBody::AppendResponse(proto::AppendResponse {
            outcome: Some(encode_outcome(outcome)),
        }),
        Body::Heartbeat { commit, read_round } => {
            WireBody::Heartbeat(proto::Heartbeat { commit: commit.0, read_round })
        }
        Body::HeartbeatResponse { read_round } => {
            WireBody::HeartbeatResponse(proto::HeartbeatResponse { read_round })
        }
        Body::InstallSnapshot { meta } => {
            let proto::Membership { voters, learners, outgoing } =
                encode_membership(&meta.membership);
            WireBody::InstallSnapshot(proto::InstallSnapshot {
                index: meta.index.0,
                term: meta.term.0,
                voters,
                learners,
                outgoing,
            })
        }
        Body::TimeoutNow => WireBody::TimeoutNow(proto::TimeoutNow {}),
        Body::ReadIndex { request } => WireBody::ReadIndex(proto::ReadIndex { request }),
        Body::ReadIndexResponse { request, index } => {
            WireBody::ReadIndexResponse(proto::ReadIndexResponse {
                request,
                index: index.map(|index| index.0),
            })
        }
    };
    proto::Message { term: message.term.0, body: Some(body) }
}

/// The core message `message` is the wire form of, sent by `from` to `to` (the frame's ids).
pub fn decode(from: NodeId, to: NodeId, message: proto::Message) -> Result<Message, WireError> {
    if from.0 == 0 {
        return Err(WireError::MissingField { field: "Frame.from" });
    }
    if to.0 == 0 {
        return Err(WireError::MissingField { field: "Frame.to" });
    }
    let body = message.body.ok_or(WireError::MissingField { field: "Message.body" })?;
    Ok(Message { from, to, term: Term(message.term), body: decode_body(body)? })
}

/// The core body of a wire body.
fn decode_body(body: WireBody) -> Result<Body, WireError> {
    Ok(match body {
        WireBody::PreVote(proto::PreVote { last_index, last_term }) => {
            Body::PreVote { last_index: Index(last_index), last_term: Term(last_term) }
        }
        WireBody::PreVoteResponse(proto::PreVoteResponse { granted }) => {
            Body::PreVoteResponse { granted }
        }
        WireBody::Vote(proto::Vote { last_index, last_term, transfer }) => {
            Body::Vote { last_index: Index(last_index), last_term: Term(last_term), transfer }
        }
        WireBody::VoteResponse(proto::VoteResponse { granted }) => Body::VoteResponse { granted },
        WireBody::Append(proto::Append { prev_index, prev_term, entries, commit }) => {
            Body::Append {
                prev_index: Index(prev_index),
                prev_term: Term(prev_term),
                entries: entries.into_iter().map(decode_entry).collect::<Result<_, _>>()?,
                commit: Index(commit),
            }
        }
        WireBody::AppendResponse(proto::AppendResponse { outcome }) => {
            let outcome =
                outcome.ok_or(WireError::MissingField { field: "AppendResponse.outcome" })?;
            Body::AppendResponse(decode_outcome(outcome))
        }
        WireBody::Heartbeat(proto::Heartbeat { commit, read_round }) => {
            Body::Heartbeat { commit: Index(commit), read_round }
        }
        WireBody::HeartbeatResponse(proto::HeartbeatResponse { read_round }) => {
            Body::HeartbeatResponse { read_round }
        }
        WireBody::InstallSnapshot(proto::InstallSnapshot {
            index,
            term,
            voters,
            learners,
            outgoing,
        }) => {
            let membership = decode_membership(proto::Membership { voters, learners, outgoing })
                .map_err(|_| WireError::MissingField { field: "InstallSnapshot.voters" })?;
            Body::InstallSnapshot {
                meta: SnapshotMeta { index: Index(index), term: Term(term), membership },
            }
        }
        WireBody::TimeoutNow(proto::TimeoutNow {}) => Body::TimeoutNow,
        WireBody::ReadIndex(proto::ReadIndex { request }) => Body::ReadIndex { request },
        WireBody::ReadIndexResponse(proto::ReadIndexResponse { request, index }) => {
            Body::ReadIndexResponse { request, index: index.map(Index) }
        }
    })
}

/// The wire form of a log entry; a command's bytes are shared, not copied.
fn encode_entry(entry: Entry) -> proto::Entry {
    let payload = match entry.payload {
        Payload::Noop => proto::entry::Payload::Noop(proto::Noop {}),
        Payload::Command(command) => proto::entry::Payload::Command(command),
        Payload::Membership(membership) => {
            proto::entry::Payload::Membership(encode_membership(&membership))
        }
    };
    proto::Entry { index: entry.index.0, term: entry.term.0, payload: Some(payload) }
}

/// The log entry of a wire entry; a command's bytes are shared with the received frame.
fn decode_entry(entry: proto::Entry) -> Result<Entry, WireError> {
    let payload = match entry.payload {
        Some(proto::entry::Payload::Noop(proto::Noop {})) => Payload::Noop,
        Some(proto::entry::Payload::Command(command)) => Payload::Command(command),
        Some(proto::entry::Payload::Membership(membership)) => {
            Payload::Membership(decode_membership(membership)?)
        }
        None => return Err(WireError::MissingField { field: "Entry.payload" }),
    };
    Ok(Entry { index: Index(entry.index), term: Term(entry.term), payload })
}

/// The wire form of a cluster configuration.
fn encode_membership(membership: &Membership) -> proto::Membership {
    let ids = |set: &std::collections::BTreeSet<NodeId>| set.iter().map(|id| id.0).collect();
    proto::Membership {
        voters: ids(&membership.voters),
        learners: ids(&membership.learners),
        outgoing: ids(&membership.outgoing),
    }
}

/// The cluster configuration of a wire one; an id 0 is a missing id. Whether the sets make a
/// valid configuration is the core's to judge.
fn decode_membership(membership: proto::Membership) -> Result<Membership, WireError> {
    let proto::Membership { voters, learners, outgoing } = membership;
    if [&voters, &learners, &outgoing].iter().any(|set| set.contains(&0)) {
        return Err(WireError::MissingField { field: "Membership.voters" });
    }
    let ids = |set: Vec<u64>| set.into_iter().map(NodeId).collect();
    Ok(Membership { voters: ids(voters), learners: ids(learners), outgoing: ids(outgoing) })
}

/// The wire form of an append outcome.
fn encode_outcome(outcome: AppendOutcome) -> proto::append_response::Outcome {
    match outcome {
        AppendOutcome::Accepted { match_index } => {
            proto::append_response::Outcome::Accepted(proto::Accepted {
                match_index: match_index.0,
            })
        }
        AppendOutcome::Rejected { prev_index, conflict_term, conflict_index } => {
            proto::append_response::Outcome::Rejected(proto::Rejected {
                prev_index: prev_index.0,
                conflict_term: conflict_term.map(|term| term.0),
                conflict_index: conflict_index.0,
            })
        }
    }
}

/// The append outcome of a wire outcome.
fn decode_outcome(outcome: proto::append_response::Outcome) -> AppendOutcome {
    match outcome {
        proto::append_response::Outcome::Accepted(proto::Accepted { match_index }) => {
            AppendOutcome::Accepted { match_index: Index(match_index) }
        }
        proto::append_response::Outcome::Rejected(rejected) => AppendOutcome::Rejected {
            prev_index: Index(rejected.prev_index),
            conflict_term: rejected.conflict_term.map(Term),
            conflict_index: Index(rejected.conflict_index),
        },
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;
    use prost::Message as _;

    use super::*;

    /// One message of every body kind (and both payloads, both outcomes, with and without a
    /// conflict term): the list a new message kind must join.
    fn every_kind() -> Vec<Message> {
        let message =
            |term, body| Message { from: NodeId(1), to: NodeId(2), term: Term(term), body };
        vec![
            message(3, Body::PreVote { last_index: Index(7), last_term: Term(2) }),
            message(3, Body::PreVoteResponse { granted: true }),
            message(3, Body::PreVoteResponse { granted: false }),
            message(4, Body::Vote { last_index: Index(0), last_term: Term(0), transfer: false }),
            message(4, Body::Vote { last_index: Index(9), last_term: Term(3), transfer: true }),
            message(4, Body::VoteResponse { granted: true }),
            message(4, Body::VoteResponse { granted: false }),
            message(
                5,
                Body::Append {
                    prev_index: Index(9),
                    prev_term: Term(4),
                    entries: vec![
                        Entry { index: Index(10), term: Term(5), payload: Payload::Noop },
                        Entry {
                            index: Index(11),
                            term: Term(5),
                            payload: Payload::Command(Bytes::from_static(b"put x 1")),
                        },
                        Entry {
                            index: Index(12),
                            term: Term(5),
                            payload: Payload::Command(Bytes::new()),
                        },
                        Entry {
                            index: Index(13),
                            term: Term(5),
                            payload: Payload::Membership(Membership {
                                voters: [2, 3, 4].map(NodeId).into(),
                                learners: [5].map(NodeId).into(),
                                outgoing: [1, 2, 3].map(NodeId).into(),
                            }),
                        },
                    ],
                    commit: Index(9),
                },
            ),
            message(
                5,
                Body::Append {
                    prev_index: Index(0),
                    prev_term: Term(0),
                    entries: vec![],
                    commit: Index(0),
                },
            ),
            message(5, Body::AppendResponse(AppendOutcome::Accepted { match_index: Index(12) })),
            message(
                5,
                Body::AppendResponse(AppendOutcome::Rejected {
                    prev_index: Index(9),
                    conflict_term: Some(Term(3)),
                    conflict_index: Index(6),
                }),
            ),
            message(
                5,
                Body::AppendResponse(AppendOutcome::Rejected {
                    prev_index: Index(9),
                    conflict_term: None,
                    conflict_index: Index(4),
                }),
            ),
            message(6, Body::Heartbeat { commit: Index(12), read_round: 0 }),
            message(6, Body::Heartbeat { commit: Index(12), read_round: 17 }),
            message(6, Body::HeartbeatResponse { read_round: 17 }),
            message(
                7,
                Body::InstallSnapshot {
                    meta: SnapshotMeta {
                        index: Index(40),
                        term: Term(6),
                        membership: Membership {
                            learners: [4].map(NodeId).into(),
                            ..Membership::new([1, 2, 3].map(NodeId))
                        },
                    },
                },
            ),
            message(7, Body::TimeoutNow),
            message(7, Body::ReadIndex { request: 3 }),
            message(7, Body::ReadIndexResponse { request: 3, index: Some(Index(40)) }),
            message(7, Body::ReadIndexResponse { request: 4, index: None }),
        ]
    }

    /// Encodes to protobuf bytes and back, as the wire does.
    fn round_trip(message: &Message) -> Result<Message, WireError> {
        let bytes = encode(message.clone()).encode_to_vec();
        let decoded = proto::Message::decode(bytes.as_slice()).expect("our own encoding decodes");
        decode(message.from, message.to, decoded)
    }

    #[test]
    fn every_kind_of_message_survives_the_wire() {
        for message in every_kind() {
            assert_eq!(round_trip(&message), Ok(message.clone()), "{message}");
        }
    }

    #[test]
    fn an_empty_command_stays_a_command_not_a_noop() {
        let entry =
            Entry { index: Index(1), term: Term(1), payload: Payload::Command(Bytes::new()) };
        let bytes = encode_entry(entry.clone()).encode_to_vec();
        let decoded = proto::Entry::decode(bytes.as_slice()).expect("our own encoding decodes");
        assert_eq!(decode_entry(decoded), Ok(entry));
    }

    #[test]
    fn a_message_without_a_body_is_an_error() {
        let message = proto::Message { term: 3, body: None };
        assert_eq!(
            decode(NodeId(1), NodeId(2), message),
            Err(WireError::MissingField { field: "Message.body" })
        );
    }

    #[test]
    fn a_body_kind_from_a_newer_node_is_an_error() {
        // Field 15 of Message, a length-delimited submessage this schema does not define:
        // prost skips it, leaving no body.
        let bytes = [0x08, 0x03, 0x7a, 0x02, 0x08, 0x01];
        let message = proto::Message::decode(bytes.as_slice()).expect("unknown fields are skipped");
        assert_eq!(
            decode(NodeId(1), NodeId(2), message),
            Err(WireError::MissingField { field: "Message.body" })
        );
    }

    #[test]
    fn zero_ids_are_errors() {
        let message = encode(every_kind().remove(0));
        assert_eq!(
            decode(NodeId(0), NodeId(2), message.clone()),
            Err(WireError::MissingField { field: "Frame.from" })
        );
        assert_eq!(
            decode(NodeId(1), NodeId(0), message),
            Err(WireError::MissingField { field: "Frame.to" })
        );
        let offer = proto::InstallSnapshot {
            index: 4,
            term: 1,
            voters: vec![1, 0],
            learners: vec![],
            outgoing: vec![],
        };
        let message = proto::Message { term: 1, body: Some(WireBody::InstallSnapshot(offer)) };
        assert_eq!(
            decode(NodeId(1), NodeId(2), message),
            Err(WireError::MissingField { field: "InstallSnapshot.voters" })
        );
    }

    #[test]
    fn an_entry_without_payload_is_an_error() {
        let append = proto::Append {
            prev_index: 0,
            prev_term: 0,
            entries: vec![proto::Entry { index: 1, term: 1, payload: None }],
            commit: 0,
        };
        let message = proto::Message { term: 1, body: Some(WireBody::Append(append)) };
        assert_eq!(
            decode(NodeId(1), NodeId(2), message),
            Err(WireError::MissingField { field: "Entry.payload" })
        );
    }

    #[test]
    fn an_append_response_without_outcome_is_an_error() {
        let response = proto::AppendResponse { outcome: None };
        let message = proto::Message { term: 1, body: Some(WireBody::AppendResponse(response)) };
        assert_eq!(
            decode(NodeId(1), NodeId(2), message),
            Err(WireError::MissingField { field: "AppendResponse.outcome" })
        );
    }

    /// Any message the core can build, with arbitrary numbers and payloads.
    fn any_message() -> impl Strategy<Value = Message> {
        let ids = || proptest::collection::btree_set((1..=u64::MAX).prop_map(NodeId), 0..5);
        let membership = (ids(), ids(), ids())
            .prop_map(|(voters, learners, outgoing)| Membership { voters, learners, outgoing });
        let payload = prop_oneof![
            Just(Payload::Noop),
            proptest::collection::vec(any::<u8>(), 0..64)
                .prop_map(|command| Payload::Command(Bytes::from(command))),
            membership.clone().prop_map(Payload::Membership),
        ];
        let entry = (any::<u64>(), any::<u64>(), payload).prop_map(|(index, term, payload)| {
            Entry { index: Index(index), term: Term(term), payload }
        });
        let body = prop_oneof![
            (any::<u64>(), any::<u64>()).prop_map(|(index, term)| Body::PreVote {
                last_index: Index(index),
                last_term: Term(term)
            }),
            any::<bool>().prop_map(|granted| Body::PreVoteResponse { granted }),
            (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(index, term, transfer)| {
                Body::Vote { last_index: Index(index), last_term: Term(term), transfer }
            }),
            any::<bool>().prop_map(|granted| Body::VoteResponse { granted }),
            (any::<u64>(), any::<u64>(), proptest::collection::vec(entry, 0..8), any::<u64>())
                .prop_map(|(prev_index, prev_term, entries, commit)| Body::Append {
                    prev_index: Index(prev_index),
                    prev_term: Term(prev_term),
                    entries,
                    commit: Index(commit),
                }),
            any::<u64>().prop_map(|index| Body::AppendResponse(AppendOutcome::Accepted {
                match_index: Index(index)
            })),
            (any::<u64>(), any::<Option<u64>>(), any::<u64>()).prop_map(
                |(prev_index, conflict_term, conflict_index)| {
                    Body::AppendResponse(AppendOutcome::Rejected {
                        prev_index: Index(prev_index),
                        conflict_term: conflict_term.map(Term),
                        conflict_index: Index(conflict_index),
                    })
                }
            ),
            (any::<u64>(), any::<u64>()).prop_map(|(commit, read_round)| Body::Heartbeat {
                commit: Index(commit),
                read_round
            }),
            any::<u64>().prop_map(|read_round| Body::HeartbeatResponse { read_round }),
            (any::<u64>(), any::<u64>(), membership).prop_map(|(index, term, membership)| {
                Body::InstallSnapshot {
                    meta: SnapshotMeta { index: Index(index), term: Term(term), membership },
                }
            }),
            Just(Body::TimeoutNow),
            any::<u64>().prop_map(|request| Body::ReadIndex { request }),
            (any::<u64>(), any::<Option<u64>>()).prop_map(|(request, index)| {
                Body::ReadIndexResponse { request, index: index.map(Index) }
            }),
        ];
        (1..=u64::MAX, 1..=u64::MAX, any::<u64>(), body).prop_map(|(from, to, term, body)| {
            Message { from: NodeId(from), to: NodeId(to), term: Term(term), body }
        })
    }

    proptest! {
        #[test]
        fn any_message_survives_the_wire(message in any_message()) {
            prop_assert_eq!(round_trip(&message), Ok(message));
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(
            bytes in proptest::collection::vec(any::<u8>(), 0..256)
        ) {
            if let Ok(message) = proto::Message::decode(bytes.as_slice()) {
                let _ = decode(NodeId(1), NodeId(2), message);
            }
        }
    }
}
