//! Linearizable reads without writing to the log: ReadIndex (Raft thesis §6.4), reads through
//! followers, and lease reads (§6.4.1).
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
//! ## Reads through followers
//! A follower can serve a linearizable read too ([`Node::forward_read_index`]): it asks its
//! leader for a read index (`ReadIndex`, batching every read asked since it last sent one), the
//! leader puts the request in its next heartbeat round like its own reads and answers
//! (`ReadIndexResponse`) once the round is confirmed; the follower then reports
//! [`Action::ReadReady`](crate::Action::ReadReady) and its driver serves the read once the
//! *follower's* state machine has applied up to that index. The follower fails its reads
//! ([`Action::ReadFailed`](crate::Action::ReadFailed)) when its leader refuses (no longer
//! leading), when it learns of a new term or leader, or when it starts campaigning.
//!
//! ## Lease reads (thesis §6.4.1), off by default
//! With check-quorum, a follower that heard from its leader ignores vote requests for an
//! election timeout (leader stickiness, §4.2.3). So once a quorum has acknowledged a heartbeat
//! round the leader sent at tick `t`, no other leader can be elected before `t` plus an
//! election timeout — *measured on the followers' clocks*. A leader with `Config::lease_reads`
//! therefore holds a **lease** until `t + election_timeout - clock_drift_bound` on its own
//! clock, and serves reads under it at once, at its commit index, with no round trip
//! ([`Node::lease_read`]). This is only as safe as the bound: **lease reads depend on the
//! nodes' clocks (tick rates) drifting apart by less than `clock_drift_bound` ticks per
//! election timeout**; a paused follower process or a skewed clock can break them, where
//! ReadIndex stays correct whatever the clocks do. To keep the lease honest the leader also:
//! - starts a new round with every heartbeat (so acknowledgements can be tied to send times);
//! - refuses lease reads until its no-op is committed (its commit index may lag its
//!   predecessor's until then);
//! - restarts the lease when the configuration changes (the new voters acknowledged nothing);
//! - stops serving lease reads for the rest of its term once it starts a leadership transfer
//!   (a transfer's vote requests are granted despite stickiness, even if delivered late);
//! - and a node that (re)starts with lease reads on ignores vote requests for its first
//!   election timeout, as it may have acknowledged a lease before it crashed.

use std::collections::{BTreeMap, VecDeque};

use crate::action::Action;
use crate::error::{LeaseReadError, ReadIndexError};
use crate::message::Body;
use crate::node::{Node, Role};
use crate::types::{Index, NodeId};

/// Who asked for a read: the driver of this node, or a follower on behalf of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reader {
    /// A read asked of this node; the driver's context.
    Local(u64),
    /// A follower's `ReadIndex` request, answered with a `ReadIndexResponse`.
    Remote {
        /// The follower.
        from: NodeId,
        /// The follower's request number.
        request: u64,
    },
}

/// A leader's reads in flight, and its lease, for one term (it lives in the leader's role).
#[derive(Debug, Default)]
pub(crate) struct ReadRounds {
    /// The newest round started in this term; 0 before the first. Heartbeats carry it.
    pub(crate) latest: u64,
    /// The round in flight, if any.
    in_flight: Option<Round>,
    /// Reads asked for while a round was in flight: they go in the next round.
    queued: Vec<Reader>,
    /// The newest round each follower has echoed in this term.
    echoed: BTreeMap<NodeId, u64>,
    /// Ticks since this node became leader: the lease's clock.
    ticks: u64,
    /// With lease reads: the tick at which each round not yet acknowledged by a quorum was
    /// sent, oldest first.
    sent: VecDeque<(u64, u64)>,
    /// With lease reads: when the newest round a quorum acknowledged was sent. The lease runs
    /// from there.
    lease_start: Option<u64>,
    /// Rounds up to this one do not count toward the lease (they were sent under another
    /// configuration).
    lease_floor: u64,
    /// A leadership transfer was started in this term: no more lease reads in it.
    transfer_started: bool,
}

/// One heartbeat round and the reads waiting on it.
#[derive(Debug)]
struct Round {
    /// The round's number: the heartbeats of this round carry it.
    number: u64,
    /// The read index of every read in the round.
    index: Index,
    /// Who asked, in the order asked.
    readers: Vec<Reader>,
}

impl ReadRounds {
    /// Every read not yet confirmed, for failing them when leadership ends.
    pub(crate) fn unconfirmed(self) -> Vec<Reader> {
        let mut readers = self.in_flight.map(|round| round.readers).unwrap_or_default();
        readers.extend(self.queued);
        readers
    }

    /// One tick of the leader's clock.
    pub(crate) fn tick(&mut self) {
        self.ticks += 1;
    }

    /// The configuration changed: acknowledgements of rounds sent so far say nothing about the
    /// new configuration's quorums, so the lease must be earned again.
    pub(crate) fn restart_lease(&mut self) {
        self.lease_start = None;
        self.lease_floor = self.latest;
        self.sent.clear();
    }

    /// A leadership transfer began: no more lease reads in this term.
    pub(crate) fn forbid_lease(&mut self) {
        self.transfer_started = true;
    }

    /// Starts a new round and, for a lease, records when it was sent.
    fn new_round(&mut self, lease: bool) -> u64 {
        self.latest += 1;
        if lease {
            self.sent.push_back((self.latest, self.ticks));
        }
        self.latest
    }
}

impl Node {
    /// Asks for a linearizable read: when leadership is confirmed, the core answers with an
    /// [`Action::ReadReady`] carrying `context` and the index the state machine must have
    /// applied before the read is served; if leadership is lost first, with an
    /// [`Action::ReadFailed`]. Only the leader serves reads; others return the leader they
    /// know, so the driver can forward the read (or use [`Node::forward_read_index`]).
    pub fn read_index(&mut self, context: u64) -> Result<(), ReadIndexError> {
        if !matches!(self.role, Role::Leader(_)) {
            return Err(ReadIndexError::NotLeader { leader: self.leader(), term: self.term });
        }
        self.leader_read(Reader::Local(context));
        Ok(())
    }

    /// Asks for a linearizable read that this node serves even if it is a follower (thesis
    /// §6.4): a follower asks its leader for a read index, and answers with an
    /// [`Action::ReadReady`] once the leader has confirmed it — serve the read once *this*
    /// node's state machine has applied up to that index — or an [`Action::ReadFailed`] if the
    /// leader refused or this node lost its leader first. On the leader it is
    /// [`Node::read_index`]. Refused only when no leader is known. `context` must never have
    /// been used before by this node, not even before a restart (contract item 6).
    pub fn forward_read_index(&mut self, context: u64) -> Result<(), ReadIndexError> {
        match &mut self.role {
            Role::Leader(_) => {
                self.leader_read(Reader::Local(context));
                Ok(())
            }
            Role::Follower(follower) if follower.leader.is_some() => {
                follower.unsent_reads.push(context);
                Ok(())
            }
            _ => Err(ReadIndexError::NotLeader { leader: self.leader(), term: self.term }),
        }
    }

    /// Serves a read at once under the leader's lease (thesis §6.4.1): an [`Action::ReadReady`]
    /// at the commit index comes in the same batch. Refused, with the reason, when lease reads
    /// are off, this node does not lead, its no-op is not committed yet, its lease has run out
    /// (no quorum acknowledged a heartbeat round recently enough), or it started a leadership
    /// transfer in this term; [`Node::read_index`] then still works. Correct only while the
    /// nodes' clocks drift apart by less than `Config::clock_drift_bound` (see the module
    /// documentation).
    pub fn lease_read(&mut self, context: u64) -> Result<(), LeaseReadError> {
        let commit = self.log.commit();
        let me = self.config.id;
        let Role::Leader(leader) = &self.role else {
            return Err(LeaseReadError::NotLeader { leader: self.leader(), term: self.term });
        };
        if !self.config.lease_reads {
            return Err(LeaseReadError::Disabled);
        }
        if commit < leader.term_start {
            return Err(LeaseReadError::LeaderNotReady { index: leader.term_start });
        }
        if leader.reads.transfer_started {
            return Err(LeaseReadError::TransferStarted);
        }
        let reads = &leader.reads;
        let alone = self.membership.quorum().is_reached_by(|id| id == me);
        let held = reads.lease_start.is_some_and(|start| reads.ticks < start + self.lease_length());
        if !alone && !held {
            return Err(LeaseReadError::Expired);
        }
        // The no-op is committed, so the commit index covers every write acknowledged before.
        self.ready_reads.push(Action::ReadReady { index: commit, contexts: vec![context] });
        Ok(())
    }

    /// How long a lease lasts from the send of the round that earned it, in ticks: the election
    /// timeout less the clock drift bound (or the whole timeout, under the
    /// `lease_without_drift_bound` defect).
    fn lease_length(&self) -> u64 {
        let drift = if self.config.sabotage.lease_without_drift_bound {
            0
        } else {
            self.config.clock_drift_bound
        };
        u64::from(self.config.election_timeout - drift)
    }

    /// A read for the leader to confirm: at once if it alone is a quorum, else in a round.
    fn leader_read(&mut self, reader: Reader) {
        let me = self.config.id;
        let commit = self.log.commit();
        let Role::Leader(leader) = &mut self.role else {
            unreachable!("only a leader confirms reads");
        };
        let alone = self.membership.quorum().is_reached_by(|id| id == me);
        if alone || self.config.sabotage.read_without_quorum {
            // Alone, the leader is the quorum: nothing to confirm. (The sabotage switch skips
            // the confirmation in any cluster: a deposed leader unaware of it reads stale data.)
            let index = commit.max(leader.term_start);
            self.answer_reads(index, vec![reader]);
            return;
        }
        if leader.reads.in_flight.is_some() {
            leader.reads.queued.push(reader);
        } else {
            self.start_read_round(vec![reader]);
        }
    }

    /// Starts a heartbeat round for `readers` with the read index as of now.
    fn start_read_round(&mut self, readers: Vec<Reader>) {
        let commit = self.log.commit();
        let Role::Leader(leader) = &mut self.role else {
            unreachable!("only a leader starts read rounds");
        };
        assert!(leader.reads.in_flight.is_none(), "a read round is already in flight");
        let number = leader.reads.new_round(self.config.lease_reads);
        leader.reads.in_flight =
            Some(Round { number, index: commit.max(leader.term_start), readers });
        self.broadcast_heartbeat();
    }

    /// With lease reads, every heartbeat is a new round, so that acknowledgements tell when
    /// the leader was last known to lead. Called before a periodic heartbeat.
    pub(crate) fn start_lease_round(&mut self) {
        if !self.config.lease_reads {
            return;
        }
        if let Role::Leader(leader) = &mut self.role {
            leader.reads.new_round(true);
        }
    }

    /// Tells the readers of a confirmed round (or of a read needing no round) its read index:
    /// the driver for its own reads, followers for theirs.
    fn answer_reads(&mut self, index: Index, readers: Vec<Reader>) {
        let mut contexts = Vec::new();
        for reader in readers {
            match reader {
                Reader::Local(context) => contexts.push(context),
                Reader::Remote { from, request } => {
                    self.send(from, Body::ReadIndexResponse { request, index: Some(index) });
                }
            }
        }
        if !contexts.is_empty() {
            self.ready_reads.push(Action::ReadReady { index, contexts });
        }
    }

    /// Fails the reads of a leader that stopped leading: the driver's are reported failed,
    /// followers are told (they retry at the new leader).
    pub(crate) fn fail_reads(&mut self, readers: Vec<Reader>) {
        let mut contexts = Vec::new();
        for reader in readers {
            match reader {
                Reader::Local(context) => contexts.push(context),
                Reader::Remote { from, request } => {
                    self.send(from, Body::ReadIndexResponse { request, index: None });
                }
            }
        }
        if !contexts.is_empty() {
            self.ready_reads.push(Action::ReadFailed { contexts });
        }
    }

    /// A follower echoed read round `round`: confirms the round in flight once a quorum has,
    /// and with lease reads extends the lease.
    pub(crate) fn handle_read_echo(&mut self, from: NodeId, round: u64) {
        let me = self.config.id;
        let lease_reads = self.config.lease_reads;
        let Role::Leader(leader) = &mut self.role else { return };
        if round > leader.reads.latest {
            // Only a confused peer echoes a round this leader never started (the input comes
            // from the network, so it is ignored rather than asserted).
            return;
        }
        let echoed = leader.reads.echoed.entry(from).or_default();
        *echoed = (*echoed).max(round);
        let reads = &mut leader.reads;
        if lease_reads {
            // The newest round a quorum has echoed (this leader counts as echoing its latest):
            // the same arithmetic as a commit index, over round numbers.
            let (latest, echoes) = (reads.latest, &reads.echoed);
            let acknowledged = self.membership.quorum().committed_index(|id| {
                Index(if id == me { latest } else { echoes.get(&id).copied().unwrap_or(0) })
            });
            let acknowledged = acknowledged.0;
            if acknowledged > reads.lease_floor {
                while let Some(&(number, sent_at)) = reads.sent.front() {
                    if number > acknowledged {
                        break;
                    }
                    if number == acknowledged {
                        reads.lease_start =
                            Some(reads.lease_start.map_or(sent_at, |s| s.max(sent_at)));
                    }
                    reads.sent.pop_front();
                }
            }
        }
        let Some(in_flight) = &reads.in_flight else { return };
        let number = in_flight.number;
        let echoes = &reads.echoed;
        let confirmed = self
            .membership
            .quorum()
            .is_reached_by(|id| id == me || echoes.get(&id).is_some_and(|&echo| echo >= number));
        if !confirmed {
            return;
        }
        let round = reads.in_flight.take().expect("checked just above");
        let queued = std::mem::take(&mut reads.queued);
        self.answer_reads(round.index, round.readers);
        if !queued.is_empty() {
            self.start_read_round(queued);
        }
    }

    // ----- Reads through followers -----

    /// Sends the reads asked of this follower since the last batch to its leader, as one
    /// `ReadIndex` request. Called when the action batch is assembled.
    pub(crate) fn send_forwarded_reads(&mut self) {
        let Role::Follower(follower) = &mut self.role else { return };
        let Some(leader) = follower.leader else { return };
        let Some(&request) = follower.unsent_reads.first() else { return };
        // The request is named after its first read's context, which the driver never reuses,
        // not even across restarts (contract item 6): an answer to a request sent before a
        // crash, still in flight, can then never be taken for a new one's.
        let contexts = std::mem::take(&mut follower.unsent_reads);
        follower.forwarded_reads.entry(request).or_default().extend(contexts);
        self.send(leader, Body::ReadIndex { request });
    }

    /// A follower's `ReadIndex`: the leader confirms it in a heartbeat round; anyone else
    /// refuses at once.
    pub(crate) fn handle_read_index_request(&mut self, from: NodeId, request: u64) {
        if matches!(self.role, Role::Leader(_)) {
            self.leader_read(Reader::Remote { from, request });
        } else {
            self.send(from, Body::ReadIndexResponse { request, index: None });
        }
    }

    /// The leader's answer to our `ReadIndex` request: the reads are ready at `index`, or
    /// failed. An answer to a request this follower no longer waits for changes nothing.
    pub(crate) fn handle_read_index_response(
        &mut self,
        from: NodeId,
        request: u64,
        index: Option<Index>,
    ) {
        let Role::Follower(follower) = &mut self.role else { return };
        if follower.leader != Some(from) {
            return;
        }
        let Some(contexts) = follower.forwarded_reads.remove(&request) else { return };
        match index {
            Some(index) => self.ready_reads.push(Action::ReadReady { index, contexts }),
            None => self.ready_reads.push(Action::ReadFailed { contexts }),
        }
    }
}
