//! Leader election (Raft §5.2, §5.4.1), pre-vote (thesis §9.6) and check-quorum (thesis §6.2).
//!
//! A follower whose election timer fires first polls the voters with `PreVote` for the next term,
//! changing nothing; only if a quorum would vote for it does it increment its term and ask for
//! real votes. A node cut off from the cluster therefore never inflates its term, and cannot
//! depose a healthy leader when it returns. Votes are granted at most once per term, only to a
//! candidate whose log is at least as up-to-date (§5.4.1), and are durable before the answer
//! leaves (contract item 1). A leader that has not heard from a quorum within an election
//! timeout steps down, so a partitioned leader does not linger.
//!
//! Under check-quorum, a node that heard from a leader within the election timeout ignores
//! vote requests (the leader lease of thesis §4.2.3, `Node::in_leader_lease`), so a server
//! removed or cut off cannot depose a leader a quorum still follows — but only within it. The
//! election timer of a node that may not campaign (a learner, a removed or joining node, a
//! voter its own log does not name yet) runs on past the timeout instead of restarting, so
//! that, like everyone else, it answers vote requests once the leader has been silent for an
//! election timeout: the voters may need its vote to elect anyone at all.

use crate::action::{Event, RoleKind};
use crate::message::Body;
use crate::node::{Campaign, Node, Role};
use crate::quorum::VoteResult;
use crate::types::{Index, NodeId, Term};

impl Node {
    /// Starts a pre-vote round for the next term, without changing our own term or vote.
    pub(crate) fn become_pre_candidate(&mut self) {
        let mut campaign = Campaign::default();
        campaign.votes.insert(self.config.id, true);
        let previous = std::mem::replace(&mut self.role, Role::PreCandidate(campaign));
        self.fail_reads_of(previous);
        self.reset_election_timer();
        self.events.push(Event::RoleChanged { role: RoleKind::PreCandidate, term: self.term });
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let proposed = self.term.next();
        for voter in self.other_voters() {
            self.send_with_term(voter, proposed, Body::PreVote { last_index, last_term });
        }
        self.tally(true);
    }

    /// Starts an election: a new term, a vote for ourselves, and vote requests to all voters,
    /// marked as a leadership transfer if the leader asked for it (`TimeoutNow`).
    pub(crate) fn become_candidate(&mut self, transfer: bool) {
        self.term = self.term.next();
        self.vote = Some(self.config.id);
        let mut campaign = Campaign::default();
        campaign.votes.insert(self.config.id, true);
        let previous = std::mem::replace(&mut self.role, Role::Candidate(campaign));
        self.fail_reads_of(previous);
        self.reset_election_timer();
        self.events.push(Event::TermChanged { term: self.term });
        self.events.push(Event::RoleChanged { role: RoleKind::Candidate, term: self.term });
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        for voter in self.other_voters() {
            self.send(voter, Body::Vote { last_index, last_term, transfer });
        }
        self.tally(false);
    }

    /// The voters other than this node (outgoing ones included while joint): whom a candidate
    /// asks for votes. Learners are not asked; their votes would not count.
    fn other_voters(&self) -> Vec<NodeId> {
        let me = self.config.id;
        self.membership.all_voters().into_iter().filter(|id| *id != me).collect()
    }

    /// Answers a `Vote` or `PreVote` whose term is at least ours (the caller applied the term
    /// rules: a real vote from a newer term has already made us its follower).
    pub(crate) fn handle_vote_request(
        &mut self,
        candidate: NodeId,
        term: Term,
        last_index: Index,
        last_term: Term,
        pre_vote: bool,
    ) {
        // One vote per term: we may repeat a vote, or give one if we have neither voted nor
        // heard from a leader in this term. A pre-vote for a later term changes nothing here,
        // so it only needs the log check.
        let can_vote = self.vote == Some(candidate)
            || (self.vote.is_none() && self.leader().is_none())
            || (pre_vote && term > self.term);
        let up_to_date = self.log.is_up_to_date(last_index, last_term);
        let up_to_date = up_to_date || self.config.sabotage.vote_without_log_check;
        let granted = can_vote && up_to_date;
        if pre_vote {
            // A granted pre-vote answers in the proposed term; a refusal carries ours, so a
            // pre-candidate behind us learns our term.
            let answer_term = if granted { term } else { self.term };
            self.send_with_term(candidate, answer_term, Body::PreVoteResponse { granted });
            return;
        }
        if granted {
            assert!(
                self.vote.is_none() || self.vote == Some(candidate),
                "second vote in term {}: had {:?}, now {candidate}",
                self.term,
                self.vote
            );
            self.vote = Some(candidate);
            // Granting a vote restarts the timer, so we do not campaign against the candidate.
            self.reset_election_timer();
        }
        // Sent after the vote is durable: take_actions puts PersistHardState first.
        self.send(candidate, Body::VoteResponse { granted });
    }

    /// Counts an answer to our `PreVote` or `Vote`.
    pub(crate) fn handle_vote_response(
        &mut self,
        voter: NodeId,
        term: Term,
        granted: bool,
        pre_vote: bool,
    ) {
        let campaign = match &mut self.role {
            Role::PreCandidate(campaign) if pre_vote => campaign,
            Role::Candidate(campaign) if !pre_vote && term == self.term => campaign,
            _ => return,
        };
        // A granted pre-vote answer carries the proposed term; any other answer carries the
        // voter's term, which the term rules made equal to ours.
        if pre_vote && granted && term != self.term.next() {
            return;
        }
        campaign.votes.insert(voter, granted);
        self.tally(pre_vote);
    }

    /// Acts on the votes collected so far: win, lose, or keep waiting.
    fn tally(&mut self, pre_vote: bool) {
        let votes = match &self.role {
            Role::PreCandidate(campaign) | Role::Candidate(campaign) => &campaign.votes,
            _ => return,
        };
        match self.membership.vote_result(votes) {
            VoteResult::Won if pre_vote => self.become_candidate(false),
            VoteResult::Won => self.become_leader(),
            VoteResult::Lost => self.become_follower(self.term, None),
            VoteResult::Pending => {}
        }
    }

    /// The leader's tick: heartbeats, and check-quorum once per election timeout.
    pub(crate) fn tick_leader(&mut self) {
        let Role::Leader(leader) = &mut self.role else {
            unreachable!("tick_leader is only called on a leader");
        };
        leader.heartbeat_elapsed += 1;
        leader.reads.tick();
        let heartbeat_due = leader.heartbeat_elapsed >= self.config.heartbeat_interval;
        if heartbeat_due {
            leader.heartbeat_elapsed = 0;
        }
        if self.election_elapsed >= self.config.election_timeout {
            self.election_elapsed = 0;
            if self.config.check_quorum && !self.quorum_active() {
                self.become_follower(self.term, None);
                return;
            }
        }
        if heartbeat_due {
            self.start_lease_round();
            self.broadcast_heartbeat();
        }
        self.tick_snapshot_offers();
        self.tick_transfer();
    }

    /// Whether a quorum (counting ourselves) answered during the last period; resets the marks.
    fn quorum_active(&mut self) -> bool {
        let me = self.config.id;
        let Role::Leader(leader) = &mut self.role else {
            unreachable!("only a leader checks its quorum");
        };
        let progress = &leader.progress;
        let active = self
            .membership
            .quorum()
            .is_reached_by(|id| id == me || progress.get(&id).is_some_and(|p| p.recent_active));
        for progress in leader.progress.values_mut() {
            progress.recent_active = false;
        }
        active
    }
}
