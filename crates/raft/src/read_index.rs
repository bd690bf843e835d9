//! Linearizable reads without writing to the log: ReadIndex (Raft thesis §6.4).
//!
//! A read is linearizable if it sees every write that completed before it began. The leader's
//! state machine has all of them once it has applied up to its commit index — provided it is
//! still the leader: a deposed leader that does not know it yet would serve stale data. So:
//!
//! 1. When a read arrives, the leader notes the *read index*: its commit index, or the index of
//!    its own no-op if that is not committed yet (everything committed in earlier terms lies
//!    below the no-op, by leader completeness, Raft §5.4).
//! 2. It confirms that it still leads by a heartbeat round: heartbeats carry a *read round*
//!    number, and once a quorum (counting itself) has echoed a round at least as new as the
//!    read's, no other leader can have existed when those answers were sent.
//! 3. It tells the driver the read index ([`Action::ReadReady`](crate::Action::ReadReady)); the
//!    driver serves the read once its state machine has applied up to that index.
//!
//! Reads are batched: one round is in flight at a time, and every read that arrives meanwhile
//! joins the next round, started as soon as the current one is confirmed. Under load, a
//! thousand concurrent reads then cost one heartbeat round, not a thousand. A round gets its
//! read index when it starts, never earlier than its reads arrived, so each read's index is at
//! least the commit index when it arrived.
//!
//! A leader that loses its role fails every read not yet confirmed
//! ([`Action::ReadFailed`](crate::Action::ReadFailed)); the driver may retry them at the new
//! leader. A read already confirmed stays valid: its index was committed.
//!
//! Left out for now: lease reads (thesis §6.4.1) and reads through followers (a follower asking
//! the leader for a read index); both arrive with the membership and reads issue.

use std::collections::BTreeMap;

use crate::action::Action;
use crate::error::ReadIndexError;
use crate::node::{Node, Role};
use crate::types::{Index, NodeId};

/// A leader's reads in flight, for one term (it lives in the leader's role state).
#[derive(Debug, Default)]
pub(crate) struct ReadRounds {
    /// The newest round started in this term; 0 before the first. Heartbeats carry it.
    pub(crate) latest: u64,
    /// The round in flight, if any.
    in_flight: Option<Round>,
    /// Reads asked for while a round was in flight: they go in the next round.
    queued: Vec<u64>,
    /// The newest round each follower has echoed in this term.
    echoed: BTreeMap<NodeId, u64>,
}

/// One heartbeat round and the reads waiting on it.
#[derive(Debug)]
struct Round {
    /// The round's number: the heartbeats of this round carry it.
    number: u64,
    /// The read index of every read in the round.
    index: Index,
    /// The driver's contexts of the reads in the round.
    contexts: Vec<u64>,
}

impl ReadRounds {
    /// Every read not yet confirmed, for failing them when leadership ends.
    pub(crate) fn unconfirmed(self) -> Vec<u64> {
        let mut contexts = self.in_flight.map(|round| round.contexts).unwrap_or_default();
        contexts.extend(self.queued);
        contexts
    }
}

impl Node {
    /// Asks for a linearizable read: when leadership is confirmed, the core answers with an
    /// [`Action::ReadReady`] carrying `context` and the index the state machine must have
    /// applied before the read is served; if leadership is lost first, with an
    /// [`Action::ReadFailed`]. Only the leader serves reads; others return the leader they
    /// know, so the driver can forward the read.
    pub fn read_index(&mut self, context: u64) -> Result<(), ReadIndexError> {
        let Role::Leader(leader) = &mut self.role else {
            return Err(ReadIndexError::NotLeader { leader: self.leader(), term: self.term });
        };
        let me = self.config.id;
        let alone = self.membership.quorum().is_reached_by(|id| id == me);
        if alone || self.config.sabotage.read_without_quorum {
            // Alone, the leader is the quorum: nothing to confirm. (The sabotage switch skips
            // the confirmation in any cluster: a deposed leader unaware of it reads stale data.)
            let index = self.log.commit().max(leader.term_start);
            self.ready_reads.push(Action::ReadReady { index, contexts: vec![context] });
            return Ok(());
        }
        if leader.reads.in_flight.is_some() {
            leader.reads.queued.push(context);
        } else {
            self.start_read_round(vec![context]);
        }
        Ok(())
    }

    /// Starts a heartbeat round for `contexts` with the read index as of now.
    fn start_read_round(&mut self, contexts: Vec<u64>) {
        let commit = self.log.commit();
        let Role::Leader(leader) = &mut self.role else {
            unreachable!("only a leader starts read rounds");
        };
        assert!(leader.reads.in_flight.is_none(), "a read round is already in flight");
        leader.reads.latest += 1;
        leader.reads.in_flight = Some(Round {
            number: leader.reads.latest,
            index: commit.max(leader.term_start),
            contexts,
        });
        self.broadcast_heartbeat();
    }

    /// A follower echoed read round `round`: confirms the round in flight once a quorum has.
    pub(crate) fn handle_read_echo(&mut self, from: NodeId, round: u64) {
        let me = self.config.id;
        let Role::Leader(leader) = &mut self.role else { return };
        if round > leader.reads.latest {
            // Only a confused peer echoes a round this leader never started (the input comes
            // from the network, so it is ignored rather than asserted).
            return;
        }
        let echoed = leader.reads.echoed.entry(from).or_default();
        *echoed = (*echoed).max(round);
        let Some(in_flight) = &leader.reads.in_flight else { return };
        let number = in_flight.number;
        let echoes = &leader.reads.echoed;
        let confirmed = self
            .membership
            .quorum()
            .is_reached_by(|id| id == me || echoes.get(&id).is_some_and(|&echo| echo >= number));
        if !confirmed {
            return;
        }
        let round = leader.reads.in_flight.take().expect("checked just above");
        let queued = std::mem::take(&mut leader.reads.queued);
        self.ready_reads.push(Action::ReadReady { index: round.index, contexts: round.contexts });
        if !queued.is_empty() {
            self.start_read_round(queued);
        }
    }
}
