//! Log replication (Raft §5.3) and commitment (§5.4.2).
//!
//! The leader sends each follower `Append`s from its progress (see `progress.rs`): one at a time
//! while probing, a pipelined window while replicating, each batched up to a count and a byte
//! limit. Entries come from the tail cache or, for a follower far behind, from a bounded read of
//! storage; heartbeats and other followers never wait for such a read. A follower that needs
//! entries compacted away is offered the snapshot instead (`snapshot.rs`).
//!
//! A follower accepts an `Append` only if its log holds `prev_index` with `prev_term`; otherwise
//! it rejects with its conflicting term and that term's first index, so the leader skips a whole
//! term per round trip. It acknowledges only entries that are durable and known to match the
//! leader, so a leader's match index always means "on disk and identical".
//!
//! The leader counts itself only up to its own durable index: its disk write runs in parallel
//! with the `Append`s, and whichever quorum is durable first commits. Only entries of the
//! leader's own term are committed by counting (§5.4.2; Figure 8 shows why counting older ones
//! is unsafe); earlier entries are committed with them.

use crate::action::{Event, ReadPurpose, ReadRequest};
use crate::error::StepError;
use crate::membership::Membership;
use crate::message::{AppendOutcome, Body};
use crate::node::{Node, Role};
use crate::progress::ProgressState;
use crate::types::{Entry, Index, NodeId, Payload, Term};

impl Node {
    // ----- Leader -----

    /// Sends every follower what its flow control allows.
    pub(crate) fn replicate_all(&mut self) {
        for position in 0..self.peers.len() {
            let peer = self.peers[position];
            self.replicate_to(peer);
        }
    }

    /// Sends `peer` as many `Append`s as its state and window allow, starting a read when the
    /// entries are no longer cached, or an empty `Append` when only the commit index is news;
    /// offers the snapshot when the entries it needs next were compacted away.
    fn replicate_to(&mut self, peer: NodeId) {
        let window = self.config.max_inflight_appends;
        loop {
            let Role::Leader(leader) = &mut self.role else { return };
            let progress = leader.progress.get_mut(&peer).expect("a progress per peer");
            if !progress.can_send(window) {
                return;
            }
            let next = progress.next_index;
            if next < self.log.first_index() {
                self.offer_snapshot(peer);
                return;
            }
            let last = self.log.last_index();
            if next > last {
                let probing = matches!(progress.state, ProgressState::Probe { .. });
                if probing || (self.config.eager_commit && progress.sent_commit < self.log.commit())
                {
                    // A probe with no entries still learns where the logs match; an empty
                    // append in replicate state tells the follower the new commit index now
                    // rather than at the next heartbeat (`Config::eager_commit`). Neither takes
                    // a window slot.
                    progress.sent(next.prev(), false);
                    self.send_append(peer, next.prev(), Vec::new());
                }
                return;
            }
            let high = next.plus(self.config.max_append_entries as u64).min(last.next());
            match self.log.cached(next, high, self.config.max_append_bytes) {
                Some(entries) => {
                    let last_sent = entries.last().expect("a cached range is non-empty").index;
                    progress.sent(last_sent, true);
                    self.send_append(peer, next.prev(), entries);
                }
                None => {
                    // Uncached entries are durable (the cache holds every non-durable one),
                    // so the driver can read them.
                    let high = high.min(self.log.durable().next());
                    progress.reading = Some(next);
                    let term = self.term;
                    self.reads.push(ReadRequest {
                        low: next,
                        high,
                        max_bytes: self.config.max_append_bytes,
                        purpose: ReadPurpose::Replicate { to: peer, term },
                    });
                    return;
                }
            }
        }
    }

    /// Queues an `Append` of `entries` after `prev_index`, with the current commit index.
    fn send_append(&mut self, peer: NodeId, prev_index: Index, entries: Vec<Entry>) {
        let prev_term = self.log.term(prev_index).expect(
            "replicate_to sends only from the first index on, and the term before it is kept",
        );
        let commit = self.log.commit();
        if let Role::Leader(leader) = &mut self.role
            && let Some(progress) = leader.progress.get_mut(&peer)
        {
            progress.sent_commit = commit;
        }
        self.send(peer, Body::Append { prev_index, prev_term, entries, commit });
    }

    /// Entries read from storage for `peer`: send them if they are still what it needs.
    pub(crate) fn replicate_read(
        &mut self,
        peer: NodeId,
        term: Term,
        low: Index,
        mut entries: Vec<Entry>,
    ) {
        let window = self.config.max_inflight_appends;
        let max_entries = self.config.max_append_entries;
        let Role::Leader(leader) = &mut self.role else { return };
        if term != self.term {
            return;
        }
        let Some(progress) = leader.progress.get_mut(&peer) else { return };
        if progress.reading != Some(low) {
            return;
        }
        progress.reading = None;
        if progress.next_index != low || !progress.can_send(window) {
            // The follower's needs changed while reading (a rejection moved it back); the next
            // take_actions sends from its new position.
            return;
        }
        entries.truncate(max_entries);
        let last_sent = entries.last().expect("entries_read checked non-empty").index;
        progress.sent(last_sent, true);
        self.send_append(peer, low.prev(), entries);
    }

    /// Handles a follower's answer to an `Append`.
    pub(crate) fn handle_append_response(
        &mut self,
        from: NodeId,
        outcome: AppendOutcome,
    ) -> Result<(), StepError> {
        let last_index = self.log.last_index();
        let Role::Leader(leader) = &mut self.role else { return Ok(()) };
        // An answer from a node no longer a member (it was removed since) changes nothing.
        let Some(progress) = leader.progress.get_mut(&from) else { return Ok(()) };
        match outcome {
            AppendOutcome::Accepted { match_index } => {
                if match_index > last_index {
                    return Err(StepError::Malformed {
                        from,
                        reason: format!("acknowledged {match_index} beyond our last {last_index}"),
                    });
                }
                if progress.acknowledged(match_index) {
                    self.transfer_progressed(from);
                    self.maybe_commit();
                }
            }
            AppendOutcome::Rejected { prev_index, conflict_term, conflict_index } => {
                progress.recent_active = true;
                let stale = match progress.state {
                    ProgressState::Probe { .. } => prev_index != progress.next_index.prev(),
                    // A rejection at or below the match index answers an Append sent before
                    // the match was learned (messages were reordered).
                    ProgressState::Replicate { .. } => prev_index <= progress.match_index,
                    // An offered snapshot is answered by an acceptance; a rejection answers an
                    // Append sent before the offer, and the offer's own timer mends any loss.
                    ProgressState::Snapshot { .. } => true,
                };
                if stale || prev_index == Index(0) {
                    // Index 0 always matches, so a rejection there is stale or bogus.
                    return Ok(());
                }
                let hinted = match conflict_term.and_then(|term| self.log.last_index_of_term(term))
                {
                    Some(last_of_term) => last_of_term.next(),
                    None => conflict_index,
                };
                // Always move back (the rejected prev_index does not match) but never to or
                // below what is known to match.
                let next = hinted.min(prev_index).max(progress.match_index.next());
                progress.probe_from(next);
            }
        }
        Ok(())
    }

    /// Handles a follower's answer to a heartbeat: unpause a probe, or restart a stalled stream.
    pub(crate) fn handle_heartbeat_response(&mut self, from: NodeId, read_round: u64) {
        let last_index = self.log.last_index();
        let Role::Leader(leader) = &mut self.role else { return };
        let Some(progress) = leader.progress.get_mut(&from) else { return };
        if progress.heartbeat_answered(last_index) {
            let resume = progress.match_index.next();
            progress.probe_from(resume);
        }
        if read_round > 0 {
            self.handle_read_echo(from, read_round);
        }
    }

    /// Sends every follower a heartbeat, with the commit index capped at what it holds.
    pub(crate) fn broadcast_heartbeat(&mut self) {
        let commit = self.log.commit();
        let Role::Leader(leader) = &self.role else { return };
        let read_round = leader.reads.latest;
        let beats: Vec<(NodeId, Index)> = leader
            .progress
            .iter()
            .map(|(id, progress)| (*id, commit.min(progress.match_index)))
            .collect();
        for (peer, commit) in beats {
            self.send(peer, Body::Heartbeat { commit, read_round });
        }
    }

    /// Advances the commit index to the highest index of the current term held durably by a
    /// quorum, counting ourselves only up to our own durable index (Raft §5.4.2).
    pub(crate) fn maybe_commit(&mut self) {
        let me = self.config.id;
        let durable = self.log.durable();
        let Role::Leader(leader) = &self.role else { return };
        let progress = &leader.progress;
        // While joint, a majority of the old voters and of the new (thesis §4.3); a leader that
        // is not a voter of a set (it is being removed) is not counted in it.
        let quorum_index = self.membership.quorum().committed_index(|id| {
            if id == me { durable } else { progress.get(&id).map_or(Index(0), |p| p.match_index) }
        });
        if quorum_index <= self.log.commit() {
            return;
        }
        // The Figure 8 rule: an entry from an earlier term may be on a quorum and still be
        // overwritten by a later leader, so only the current term's entries commit by counting.
        if self.log.term(quorum_index) != Some(self.term)
            && !self.config.sabotage.commit_earlier_terms
        {
            return;
        }
        self.advance_commit(quorum_index);
    }

    /// Moves the commit index forward and reports it; a leader then acts on a configuration
    /// that became committed (leaving joint consensus, or stepping down if removed).
    pub(crate) fn advance_commit(&mut self, commit: Index) {
        self.log.commit_to(commit);
        self.events.push(Event::CommitAdvanced { commit });
        if self.config.sabotage.apply_membership_at_commit {
            self.refresh_membership();
        }
        self.membership_committed();
    }

    // ----- Follower -----

    /// Handles an `Append` from the leader of the current term (Raft §5.3).
    pub(crate) fn handle_append(
        &mut self,
        leader: NodeId,
        mut prev_index: Index,
        mut prev_term: Term,
        mut entries: Vec<Entry>,
        commit: Index,
    ) {
        if self.fetching.is_some() {
            // The log stays still while a snapshot is being fetched, so that its install never
            // races a write (see `snapshot.rs`). The leader's retries bring these entries again.
            return;
        }
        // Entries before our first index were compacted into a snapshot: they are committed,
        // hence identical to the leader's, so match from the compaction point instead.
        let compacted = self.log.first_index().prev();
        if prev_index < compacted {
            entries.retain(|entry| entry.index > compacted);
            prev_index = compacted;
            prev_term = self.log.term(compacted).expect("the compaction point has a term");
        }
        match self.log.term(prev_index) {
            None => {
                let outcome = AppendOutcome::Rejected {
                    prev_index,
                    conflict_term: None,
                    conflict_index: self.log.last_index().next(),
                };
                self.send(leader, Body::AppendResponse(outcome));
            }
            Some(term) if term != prev_term => {
                let outcome = AppendOutcome::Rejected {
                    prev_index,
                    conflict_term: Some(term),
                    conflict_index: self.log.first_index_of_run_at(prev_index),
                };
                self.send(leader, Body::AppendResponse(outcome));
            }
            Some(_) => {
                let last_given = self.merge(prev_index, entries);
                if let Role::Follower(follower) = &mut self.role {
                    follower.matched = follower.matched.max(last_given);
                }
                // Only up to the last entry this Append vouches for: beyond it our log may still
                // differ from the leader's.
                let commit = commit.min(last_given);
                if commit > self.log.commit() {
                    self.advance_commit(commit);
                }
                // Answer now if everything is durable already (a duplicate, or an empty probe);
                // otherwise `persisted` answers once it is. An early partial answer would make a
                // probing leader resend what is already on its way to our disk.
                if last_given <= self.log.durable()
                    || self.config.sabotage.acknowledge_before_durable
                {
                    self.acknowledge(true);
                }
            }
        }
    }

    /// Merges the leader's entries into the log (Raft §5.3), keeping the configurations in step:
    /// those of truncated entries are forgotten, those of new entries take effect at once.
    /// Returns the index of the last entry given.
    fn merge(&mut self, prev_index: Index, entries: Vec<Entry>) -> Index {
        let configurations: Vec<(Index, Membership)> = entries
            .iter()
            .filter_map(|entry| match &entry.payload {
                Payload::Membership(membership) => Some((entry.index, membership.clone())),
                _ => None,
            })
            .collect();
        let (last_given, truncated_from) = self.log.merge(prev_index, entries);
        if let Some(index) = truncated_from {
            self.memberships.truncate_from(index);
        }
        // Entries the log already held (same index and term) are the same entries, already
        // known; the new ones come after everything known.
        for (index, membership) in configurations {
            if index > self.memberships.latest().0 {
                self.memberships.append(index, membership);
            }
        }
        self.refresh_membership();
        last_given
    }

    /// Handles a heartbeat from the leader of the current term.
    pub(crate) fn handle_heartbeat(&mut self, leader: NodeId, commit: Index, read_round: u64) {
        // The leader capped `commit` at our match index, so our log holds it and agrees.
        let commit = commit.min(self.log.last_index());
        if commit > self.log.commit() {
            self.advance_commit(commit);
        }
        self.send(leader, Body::HeartbeatResponse { read_round });
    }

    /// Acknowledges to the leader everything durable that matches its log; only when that grew,
    /// unless `always`.
    pub(crate) fn acknowledge(&mut self, always: bool) {
        let durable = self.log.durable();
        let Role::Follower(follower) = &mut self.role else { return };
        let Some(leader) = follower.leader else { return };
        let mut match_index = durable.min(follower.matched);
        if self.config.sabotage.acknowledge_before_durable {
            match_index = follower.matched;
        }
        if match_index <= follower.acknowledged && !always {
            return;
        }
        follower.acknowledged = follower.acknowledged.max(match_index);
        self.send(leader, Body::AppendResponse(AppendOutcome::Accepted { match_index }));
    }
}
