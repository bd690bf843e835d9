//! Leadership transfer (Raft thesis §3.10): the leader hands its role to a chosen voter.
//!
//! Operators move leadership off a node they are about to restart or retire (a graceful
//! shutdown: transfer, wait for the new leader, then stop), or onto a better-placed node. The
//! leader:
//! 1. stops accepting proposals (and membership changes), so that its log stops growing
//!    ([`ProposeError::TransferInProgress`](crate::ProposeError::TransferInProgress));
//! 2. brings the target's log up to date through ordinary replication;
//! 3. once the target's match index is the leader's last index, sends it `TimeoutNow`. The
//!    target campaigns at once, without pre-vote and for the next term, marking its vote
//!    requests as a transfer: voters grant them even though they heard from the leader within
//!    the election timeout (the leader stickiness of thesis §4.2.3 protects against disruptive
//!    nodes, and this one is invited). Its log being as up to date as any, it wins; the old
//!    leader learns of the new term and steps down.
//!
//! A transfer that has not completed within an election timeout (the target is down, or
//! partitioned, or its election failed) is **aborted**: the leader accepts proposals again and
//! reports [`Event::TransferAborted`]. A new transfer may then be asked for.
//!
//! Safety does not depend on any of this: the target's election is an ordinary election (one
//! vote per term, the log check of §5.4.1), only started early. A lost `TimeoutNow` costs an
//! aborted transfer, never a second leader. The transfer mark only lifts leader stickiness,
//! which is a liveness measure; lease reads, which rely on stickiness, are refused by a leader
//! that is transferring (see `read_index.rs`).

use crate::action::Event;
use crate::error::TransferError;
use crate::message::Body;
use crate::node::{Node, Role};
use crate::types::NodeId;

/// A leadership transfer under way, in the leader's role state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transfer {
    /// The voter leadership is handed to.
    pub(crate) target: NodeId,
    /// Ticks since the transfer began; it is aborted at an election timeout.
    pub(crate) elapsed: u32,
    /// Whether `TimeoutNow` was sent (it is sent once, when the target is caught up).
    pub(crate) timeout_now_sent: bool,
}

impl Node {
    /// Asks the leader to hand leadership to `target`, or with `None` to the voter whose log is
    /// most up to date (the one that can take over soonest: what a graceful shutdown wants).
    /// Returns the target. Until the transfer completes or is aborted (after an election
    /// timeout, with [`Event::TransferAborted`]), proposals and membership changes are refused.
    /// Completion shows as this node's [`Event::RoleChanged`] to follower and an
    /// [`Event::LeaderChanged`] naming the target.
    pub fn transfer_leadership(&mut self, target: Option<NodeId>) -> Result<NodeId, TransferError> {
        let me = self.config.id;
        let last_index = self.log.last_index();
        let Role::Leader(leader) = &mut self.role else {
            return Err(TransferError::NotLeader { leader: self.leader(), term: self.term });
        };
        if let Some(transfer) = &leader.transfer {
            return Err(TransferError::InProgress { target: transfer.target });
        }
        let target = match target {
            Some(target) if target == me => return Err(TransferError::TargetIsLeader),
            // The target must be a voter of the configuration being moved to: a learner or an
            // outgoing voter would step down again, or could not win.
            Some(target) if !self.membership.voters.contains(&target) => {
                return Err(TransferError::NotAVoter { id: target });
            }
            Some(target) => target,
            None => {
                let best = self
                    .membership
                    .voters
                    .iter()
                    .filter(|id| **id != me)
                    .max_by_key(|id| leader.progress.get(id).map(|p| p.match_index));
                *best.ok_or(TransferError::NoTarget)?
            }
        };
        leader.transfer = Some(Transfer { target, elapsed: 0, timeout_now_sent: false });
        leader.reads.forbid_lease();
        let caught_up = leader.progress.get(&target).is_some_and(|p| p.match_index == last_index);
        if caught_up {
            self.send_timeout_now();
        }
        Ok(target)
    }

    /// The leadership transfer under way, if any: its target.
    pub fn transfer_target(&self) -> Option<NodeId> {
        match &self.role {
            Role::Leader(leader) => leader.transfer.map(|transfer| transfer.target),
            _ => None,
        }
    }

    /// Sends `TimeoutNow` to the transfer's target (once).
    fn send_timeout_now(&mut self) {
        let Role::Leader(leader) = &mut self.role else { return };
        let Some(transfer) = &mut leader.transfer else { return };
        if transfer.timeout_now_sent {
            return;
        }
        transfer.timeout_now_sent = true;
        let target = transfer.target;
        self.send(target, Body::TimeoutNow);
    }

    /// The target's match index advanced: send `TimeoutNow` once it holds the whole log.
    pub(crate) fn transfer_progressed(&mut self, from: NodeId) {
        let last_index = self.log.last_index();
        let Role::Leader(leader) = &self.role else { return };
        let Some(transfer) = &leader.transfer else { return };
        let caught_up = leader.progress.get(&from).is_some_and(|p| p.match_index == last_index);
        if transfer.target == from && caught_up {
            self.send_timeout_now();
        }
    }

    /// One leader tick: a transfer not completed within an election timeout is aborted.
    pub(crate) fn tick_transfer(&mut self) {
        let timeout = self.config.election_timeout;
        let Role::Leader(leader) = &mut self.role else { return };
        let Some(transfer) = &mut leader.transfer else { return };
        transfer.elapsed += 1;
        if transfer.elapsed >= timeout {
            self.abort_transfer();
        }
    }

    /// Gives up the transfer under way, if any, and reports it.
    pub(crate) fn abort_transfer(&mut self) {
        let Role::Leader(leader) = &mut self.role else { return };
        if let Some(transfer) = leader.transfer.take() {
            self.events.push(Event::TransferAborted { target: transfer.target });
        }
    }

    /// A leader about to step down because a configuration without it is committed invites
    /// the most up-to-date remaining voter to campaign at once, so the cluster is not left
    /// without a leader for a whole election timeout. Only a voter holding the whole log is
    /// invited (it would win); if there is none, the voters elect one when their timers fire.
    pub(crate) fn hand_over_before_stepping_down(&mut self) {
        let last_index = self.log.last_index();
        let Role::Leader(leader) = &self.role else { return };
        let caught_up = self
            .membership
            .voters
            .iter()
            .find(|id| leader.progress.get(id).is_some_and(|p| p.match_index == last_index));
        if let Some(&target) = caught_up {
            self.send(target, Body::TimeoutNow);
        }
    }

    /// Handles `TimeoutNow` from the leader of the current term: campaign at once, for a
    /// transfer. Ignored from anyone but our leader, and by a node that is not a voter.
    pub(crate) fn handle_timeout_now(&mut self, from: NodeId) {
        let from_leader =
            matches!(&self.role, Role::Follower(follower) if follower.leader == Some(from));
        if !from_leader || !self.may_campaign() {
            return;
        }
        self.become_candidate(true);
    }
}
