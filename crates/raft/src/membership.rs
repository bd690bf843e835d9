//! Cluster membership and how it changes: joint consensus (Raft thesis §4.3), single-voter
//! changes (§4.1) and learners.
//!
//! A [`Membership`] is the cluster's configuration: the **voters**, whose majority makes every
//! decision, and the **learners**, who receive the log but count toward no quorum and never
//! campaign (a new node catches up as a learner, so it cannot stall commits while it does).
//!
//! ## Changes travel in the log, and take effect when appended
//! A membership change is a log entry ([`Payload::Membership`])
//! holding the whole new configuration. Every node uses the configuration of the **latest such
//! entry in its log, committed or not** (thesis §4.1): the leader from the moment it appends the
//! entry, a follower from the moment it merges it. If the entry is truncated away (it was never
//! committed, and a new leader overwrote it), the node falls back to the configuration before
//! it. That is why a node remembers every configuration entry after its latest snapshot
//! (`MembershipLog`), and why the driver hands them back at restart
//! ([`Restored::memberships`](crate::Restored::memberships)).
//!
//! ## One voter at a time, or joint consensus
//! A request that changes at most one voter (adding one, removing one, promoting one learner,
//! with any learner changes beside it) moves straight to the new configuration: any majority of
//! the old voters and any majority of the new then share a node, so two leaders can never be
//! elected in one term by the two configurations (thesis §4.1). A request that changes more
//! than one voter goes through a **joint configuration**: the new voters, plus the old ones as
//! `outgoing`; while joint, elections and commits need a majority of **both** sets. Once the
//! joint entry commits, the leader appends the final configuration on its own (leaving joint);
//! once that commits, the change is complete.
//!
//! ## Rules the leader enforces (each refusal is a [`MembershipError`])
//! - One change at a time: no new change while the latest configuration entry is not committed,
//!   or while joint.
//! - Not before the leader has committed an entry of its own term (its no-op). Without this,
//!   single-voter changes are unsafe: a leader elected without an uncommitted change of an
//!   earlier term could commit a second one whose majority does not overlap the first's (the
//!   bug Ongaro described on raft-dev in 2015).
//! - No change while a leadership transfer is under way.
//! - A learner is promoted only once it is close behind the leader (`Config::max_learner_lag`).
//!
//! ## Learners answer vote requests
//! A learner never campaigns and never counts toward a quorum, but it does answer `Vote` and
//! `PreVote` requests like anyone else (etcd's learners do the same): a candidate counts only
//! the votes of its own configuration's voters, so a learner's vote counts exactly when the
//! candidate knows it was promoted. Refusing would deadlock a cluster whose promotion entry
//! reached the candidate but not the promoted node: in a one-voter cluster promoting its
//! learner, a leader that crashes right after appending the promotion needs the learner's vote
//! to ever be elected again, and the learner could never receive the entry without a leader.
//! For the same reason a node that may not campaign lets its leader's lease lapse after an
//! election timeout of silence, as a voter does (see `election.rs`): a promoted node that holds
//! nothing yet may not campaign, yet its vote may be the one the configuration needs.
//!
//! A leader that is not a voter of the configuration it commits steps down once it is committed
//! (thesis §4.2.2): until then it keeps replicating and committing, without counting itself in
//! majorities it is not part of.
//!
//! ## Invariants
//! - Every configuration a node uses has at least one voter, except the empty configuration of
//!   a node that joined without one and has not heard from the cluster yet.
//! - Learners are never voters: `learners` is disjoint from `voters` and `outgoing`.
//! - The configuration entries a node remembers are in its log, in increasing index order, all
//!   after its latest snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::action::Event;
use crate::error::MembershipError;
use crate::node::{Node, Role};
use crate::progress::Progress;
use crate::quorum::{JointQuorum, VoteResult};
use crate::types::{Index, NodeId, Payload};

/// A cluster configuration: who votes and who learns (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// The voters; while joint, the new voters. Never empty in a configuration the cluster used.
    pub voters: BTreeSet<NodeId>,
    /// Members that receive the log but never vote, campaign or count toward a quorum. Disjoint
    /// from `voters` and `outgoing`.
    pub learners: BTreeSet<NodeId>,
    /// While joint, the previous voters, whose majority is needed too; empty otherwise.
    pub outgoing: BTreeSet<NodeId>,
}

/// One change to a configuration, as asked of the leader with
/// [`Node::change_membership`](crate::Node::change_membership).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Make a node that is not a member a voter at once.
    AddVoter(NodeId),
    /// Make a node that is not a member a learner.
    AddLearner(NodeId),
    /// Remove a voter or a learner.
    Remove(NodeId),
    /// Make a learner a voter; refused while it is far behind the leader.
    Promote(NodeId),
}

impl Membership {
    /// A configuration of `voters` only.
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership { voters: voters.into_iter().collect(), ..Membership::default() }
    }

    /// Whether this is a joint configuration (a change of several voters under way).
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Whether `id` votes: it is a voter, or an outgoing voter while joint.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.outgoing.contains(&id)
    }

    /// Whether `id` is a member at all: a voter, an outgoing voter or a learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.contains(&id)
    }

    /// Every member, in id order.
    pub fn members(&self) -> BTreeSet<NodeId> {
        let mut members = self.voters.clone();
        members.extend(&self.outgoing);
        members.extend(&self.learners);
        members
    }

    /// Every voter (incoming and outgoing), in id order.
    pub fn all_voters(&self) -> BTreeSet<NodeId> {
        self.voters.union(&self.outgoing).copied().collect()
    }

    /// The quorum of this configuration: a majority of the voters, and while joint also of the
    /// outgoing voters. The configuration must have voters.
    pub fn quorum(&self) -> JointQuorum<'_> {
        JointQuorum::new(&self.voters, &self.outgoing)
    }

    /// Counts votes under [`Membership::quorum`]; only voters' answers count.
    pub fn vote_result(&self, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
        self.quorum().vote_result(votes)
    }

    /// Checks what must hold of any configuration a node is told about (by a peer, a snapshot
    /// or the driver): voters, no reserved id, learners apart from voters.
    pub fn validate(&self) -> Result<(), String> {
        if self.voters.is_empty() {
            return Err("a configuration needs at least one voter".into());
        }
        if self.members().contains(&NodeId(0)) {
            return Err("node id 0 is reserved".into());
        }
        if let Some(both) = self.learners.iter().find(|id| self.is_voter(**id)) {
            return Err(format!("{both} is both a voter and a learner"));
        }
        Ok(())
    }

    /// The configuration after `changes`, each applied to this one (which must not be joint):
    /// the new configuration itself if at most one voter changes, else the joint configuration
    /// that leads to it. Refused if a change names an id twice, adds a member, removes or
    /// promotes a node that is not a member or not a learner, or would leave no voter.
    pub fn change(&self, changes: &[MembershipChange]) -> Result<Membership, MembershipError> {
        assert!(!self.is_joint(), "changing a joint configuration {self}");
        if changes.is_empty() {
            return Err(MembershipError::NoChange);
        }
        let mut voters = self.voters.clone();
        let mut learners = self.learners.clone();
        let mut named = BTreeSet::new();
        for change in changes {
            let id = match *change {
                MembershipChange::AddVoter(id)
                | MembershipChange::AddLearner(id)
                | MembershipChange::Remove(id)
                | MembershipChange::Promote(id) => id,
            };
            if id.0 == 0 {
                return Err(MembershipError::ReservedId);
            }
            if !named.insert(id) {
                return Err(MembershipError::DuplicateNode { id });
            }
            match *change {
                MembershipChange::AddVoter(_) | MembershipChange::AddLearner(_)
                    if self.contains(id) =>
                {
                    return Err(MembershipError::AlreadyMember { id });
                }
                MembershipChange::AddVoter(_) => {
                    voters.insert(id);
                }
                MembershipChange::AddLearner(_) => {
                    learners.insert(id);
                }
                MembershipChange::Remove(_) => {
                    if !voters.remove(&id) && !learners.remove(&id) {
                        return Err(MembershipError::NotMember { id });
                    }
                }
                MembershipChange::Promote(_) => {
                    if !learners.remove(&id) {
                        return Err(MembershipError::NotLearner { id });
                    }
                    voters.insert(id);
                }
            }
        }
        if voters.is_empty() {
            return Err(MembershipError::NoVoters);
        }
        let voters_changed = voters.symmetric_difference(&self.voters).count();
        let outgoing = if voters_changed > 1 { self.voters.clone() } else { BTreeSet::new() };
        let changed = Membership { voters, learners, outgoing };
        debug_assert!(changed.validate().is_ok(), "a change made {changed} invalid");
        Ok(changed)
    }

    /// The configuration a joint one leads to: its new voters and learners, no outgoing voters.
    pub fn leave_joint(&self) -> Membership {
        assert!(self.is_joint(), "leaving joint consensus from {self}, which is not joint");
        Membership { outgoing: BTreeSet::new(), ..self.clone() }
    }
}

/// Writes `name=n1,n2` for a non-empty set.
fn write_set(f: &mut fmt::Formatter<'_>, name: &str, set: &BTreeSet<NodeId>) -> fmt::Result {
    let ids: Vec<String> = set.iter().map(NodeId::to_string).collect();
    write!(f, "{name}={}", ids.join(","))
}

impl fmt::Display for Membership {
    /// The compact trace form: `voters=n1,n2,n3`, then ` learners=n4` and ` outgoing=n1,n2`
    /// when there are any.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_set(f, "voters", &self.voters)?;
        if !self.learners.is_empty() {
            f.write_str(" ")?;
            write_set(f, "learners", &self.learners)?;
        }
        if self.is_joint() {
            f.write_str(" ")?;
            write_set(f, "outgoing", &self.outgoing)?;
        }
        Ok(())
    }
}

impl fmt::Display for MembershipChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MembershipChange::AddVoter(id) => write!(f, "add voter {id}"),
            MembershipChange::AddLearner(id) => write!(f, "add learner {id}"),
            MembershipChange::Remove(id) => write!(f, "remove {id}"),
            MembershipChange::Promote(id) => write!(f, "promote {id}"),
        }
    }
}

/// The configurations a node knows of: the one as of its latest snapshot (or the bootstrap
/// configuration, as of index 0), and every configuration entry in its log after that, in
/// order. The latest is the one in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MembershipLog {
    /// The configuration as of `base.0`: the latest snapshot's, or the bootstrap one at 0.
    base: (Index, Membership),
    /// The configuration entries in the log after `base.0`, strictly increasing in index.
    entries: Vec<(Index, Membership)>,
}

impl MembershipLog {
    /// Knows only `membership`, as of `index`.
    pub(crate) fn new(index: Index, membership: Membership) -> MembershipLog {
        MembershipLog { base: (index, membership), entries: Vec::new() }
    }

    /// The latest configuration and the index of its entry (the base's index if none).
    pub(crate) fn latest(&self) -> (Index, &Membership) {
        let (index, membership) = self.entries.last().unwrap_or(&self.base);
        (*index, membership)
    }

    /// The configuration before the latest: the one the latest configuration entry replaced
    /// (the base itself if there is no entry after it).
    pub(crate) fn before_latest(&self) -> &Membership {
        match self.entries.len() {
            0 | 1 => &self.base.1,
            count => &self.entries[count - 2].1,
        }
    }

    /// The configuration in force as of `index` (at or above the base's index), and the index
    /// of its entry.
    pub(crate) fn at(&self, index: Index) -> (Index, &Membership) {
        assert!(index >= self.base.0, "configuration at {index}, before the base {}", self.base.0);
        let position = self.entries.partition_point(|(at, _)| *at <= index);
        let (at, membership) = if position == 0 { &self.base } else { &self.entries[position - 1] };
        (*at, membership)
    }

    /// Records the configuration entry at `index`, after every one known.
    pub(crate) fn append(&mut self, index: Index, membership: Membership) {
        let (latest, _) = self.latest();
        assert!(index > latest, "configuration entry {index} appended after {latest}");
        self.entries.push((index, membership));
    }

    /// Forgets the configuration entries from `index` on (the log was truncated there).
    pub(crate) fn truncate_from(&mut self, index: Index) {
        assert!(
            index > self.base.0,
            "truncating configurations from {index}, at or below the base {}",
            self.base.0
        );
        self.entries.retain(|(at, _)| *at < index);
    }

    /// A snapshot at `index` now stands for the log up to it: its configuration becomes the
    /// base, and older entries are forgotten.
    pub(crate) fn rebase(&mut self, index: Index) {
        if index <= self.base.0 {
            return;
        }
        let (_, membership) = self.at(index);
        self.base = (index, membership.clone());
        self.entries.retain(|(at, _)| *at > index);
    }

    /// Replaces everything by `membership` as of `index` (a snapshot installed over the log).
    pub(crate) fn reset(&mut self, index: Index, membership: Membership) {
        *self = MembershipLog::new(index, membership);
    }
}

impl Node {
    /// The configuration in force on this node: that of the latest configuration entry in its
    /// log, committed or not, else of its snapshot, else the bootstrap one.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// Asks the leader to change the membership (see the module documentation): appends the
    /// configuration entry and returns its index. The change is in force at once, and complete
    /// when that entry is applied — or, for a joint change (several voters changed), when the
    /// entry leaving joint consensus, which the leader appends by itself once the first commits,
    /// is applied.
    pub fn change_membership(
        &mut self,
        changes: &[MembershipChange],
    ) -> Result<Index, MembershipError> {
        let commit = self.log.commit();
        let Role::Leader(leader) = &self.role else {
            return Err(MembershipError::NotLeader { leader: self.leader(), term: self.term });
        };
        if let Some(transfer) = &leader.transfer {
            return Err(MembershipError::TransferInProgress { target: transfer.target });
        }
        let (latest, _) = self.memberships.latest();
        if latest > commit || self.membership.is_joint() {
            return Err(MembershipError::ChangeInProgress { index: latest });
        }
        if commit < leader.term_start {
            return Err(MembershipError::LeaderNotReady { index: leader.term_start });
        }
        let changed = self.membership.change(changes)?;
        let last_index = self.log.last_index();
        for change in changes {
            if let MembershipChange::Promote(id) = *change {
                let match_index = leader.progress.get(&id).map_or(Index(0), |p| p.match_index);
                let max_lag = self.config.max_learner_lag;
                if last_index.distance_from(match_index) > max_lag {
                    return Err(MembershipError::LearnerBehind {
                        id,
                        match_index,
                        last_index,
                        max_lag,
                    });
                }
            }
        }
        Ok(self.append_membership(changed))
    }

    /// Whether this node may campaign: it is a voter of the configuration in force — or, while
    /// that configuration is not known to be committed, of the one before it, which is: a
    /// leader appends a configuration only once the one before it has committed. A node
    /// being removed is still needed until its removal commits (thesis §4.2.2): if the leader
    /// that appended the removal is lost, the remaining voters may hold shorter logs and could
    /// elect no one without it. Its own vote then counts only where it is a voter of the
    /// configuration in force. Learners and nodes outside both configurations never campaign.
    ///
    /// The configuration before the latest, not the one at the commit index: a node that has
    /// just restarted may know no commit index at all (the driver's saved one may lag), and the
    /// configuration at 0 is the bootstrap one, with no voters for a node that joined (seed
    /// 12396: such a node held the longest log, its removal uncommitted, and never campaigned).
    pub fn may_campaign(&self) -> bool {
        let me = self.config.id;
        if self.membership.is_voter(me) {
            return true;
        }
        let commit = self.log.commit().max(self.snapshot_index());
        let (latest, _) = self.memberships.latest();
        latest > commit && self.memberships.before_latest().is_voter(me)
    }

    /// Appends a configuration entry as the leader and puts it in force.
    fn append_membership(&mut self, membership: Membership) -> Index {
        assert!(matches!(self.role, Role::Leader(_)), "only a leader appends configurations");
        // One change at a time: two uncommitted configurations could have majorities that do
        // not overlap.
        let (latest, current) = self.memberships.latest();
        assert!(
            latest <= self.log.commit(),
            "a configuration entry appended while the one at {latest} is uncommitted (commit {})",
            self.log.commit()
        );
        // Any majority of the old voters must share a node with any majority of the new: at
        // most one voter changes, or the change goes through (or leaves) a joint configuration
        // of exactly the two (thesis §4.1, §4.3).
        let one_voter = !current.is_joint()
            && !membership.is_joint()
            && current.voters.symmetric_difference(&membership.voters).count() <= 1;
        let entering_joint = !current.is_joint() && membership.outgoing == current.voters;
        let leaving_joint = current.is_joint() && membership == current.leave_joint();
        assert!(
            one_voter || entering_joint || leaving_joint,
            "configuration {membership} cannot follow {current} directly"
        );
        let index = self.append_as_leader(Payload::Membership(membership.clone()));
        self.memberships.append(index, membership);
        self.refresh_membership();
        index
    }

    /// The configuration entry a node must use: the latest in its log, or — with the
    /// `apply_membership_at_commit` defect — the latest committed one.
    fn membership_in_force(&self) -> (Index, &Membership) {
        if self.config.sabotage.apply_membership_at_commit {
            return self.memberships.at(self.log.commit().max(self.snapshot_index()));
        }
        self.memberships.latest()
    }

    /// Puts the configuration in force (after an append, a truncation, a snapshot install, or
    /// a commit under the `apply_membership_at_commit` defect), if it changed: the peers to
    /// replicate to, the leader's progress for each, and an event.
    pub(crate) fn refresh_membership(&mut self) {
        let (index, in_force) = self.membership_in_force();
        if *in_force == self.membership {
            return;
        }
        let membership = in_force.clone();
        let me = self.config.id;
        self.peers = membership.members().into_iter().filter(|id| *id != me).collect();
        let next_index = self.log.last_index().next();
        if let Role::Leader(leader) = &mut self.role {
            leader.progress.retain(|id, _| membership.contains(*id));
            for peer in &self.peers {
                leader.progress.entry(*peer).or_insert_with(|| Progress::new(next_index));
            }
            // A lease earned under the old configuration says nothing about the new one's
            // quorums: wait for acknowledgements of rounds sent from now on.
            leader.reads.restart_lease();
        }
        self.membership = membership.clone();
        self.events.push(Event::MembershipChanged { index, membership });
        // A transfer to a node no longer a voter cannot complete.
        if let Some(target) = self.transfer_target()
            && !self.membership.voters.contains(&target)
        {
            self.abort_transfer();
        }
    }

    /// The leader's duties once its commit index advanced: leave a committed joint
    /// configuration, and step down once a configuration it is not a voter of is committed
    /// (thesis §4.2.2; it kept replicating until then).
    pub(crate) fn membership_committed(&mut self) {
        let Role::Leader(_) = &self.role else { return };
        let (latest, membership) = self.memberships.latest();
        if latest > self.log.commit() {
            return;
        }
        if membership.is_joint() {
            let leave = membership.leave_joint();
            self.append_membership(leave);
        } else if !membership.voters.contains(&self.config.id) {
            // No longer a voter, it must not lead; the remaining voters elect a leader among
            // themselves (it is not a voter, so it never campaigns again). Its last Appends tell
            // them the commit index first, and a caught-up voter is invited to campaign at once.
            self.replicate_all();
            self.hand_over_before_stepping_down();
            self.become_follower(self.term, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MembershipChange::{AddLearner, AddVoter, Promote, Remove};

    fn ids(list: &[u64]) -> BTreeSet<NodeId> {
        list.iter().copied().map(NodeId).collect()
    }

    fn membership(voters: &[u64], learners: &[u64], outgoing: &[u64]) -> Membership {
        Membership { voters: ids(voters), learners: ids(learners), outgoing: ids(outgoing) }
    }

    #[test]
    fn one_voter_changes_directly_and_several_go_joint() {
        let base = membership(&[1, 2, 3], &[4], &[]);
        let add = base.change(&[AddVoter(NodeId(5))]).expect("valid");
        assert_eq!(add, membership(&[1, 2, 3, 5], &[4], &[]));
        let promote = base.change(&[Promote(NodeId(4)), AddLearner(NodeId(6))]).expect("valid");
        assert_eq!(promote, membership(&[1, 2, 3, 4], &[6], &[]), "learners change freely");
        let replace = base.change(&[AddVoter(NodeId(5)), Remove(NodeId(1))]).expect("valid");
        assert_eq!(replace, membership(&[2, 3, 5], &[4], &[1, 2, 3]));
        assert!(replace.is_joint());
        assert_eq!(replace.leave_joint(), membership(&[2, 3, 5], &[4], &[]));
        let learner_gone = base.change(&[Remove(NodeId(4))]).expect("valid");
        assert_eq!(learner_gone, membership(&[1, 2, 3], &[], &[]));
    }

    #[test]
    fn invalid_changes_are_refused_with_their_reason() {
        let base = membership(&[1, 2], &[3], &[]);
        let refused = |changes: &[MembershipChange]| base.change(changes).expect_err("refused");
        assert_eq!(refused(&[]), MembershipError::NoChange);
        assert_eq!(refused(&[AddVoter(NodeId(0))]), MembershipError::ReservedId);
        assert_eq!(
            refused(&[AddVoter(NodeId(2))]),
            MembershipError::AlreadyMember { id: NodeId(2) }
        );
        assert_eq!(
            refused(&[AddLearner(NodeId(3))]),
            MembershipError::AlreadyMember { id: NodeId(3) }
        );
        assert_eq!(refused(&[Remove(NodeId(9))]), MembershipError::NotMember { id: NodeId(9) });
        assert_eq!(refused(&[Promote(NodeId(1))]), MembershipError::NotLearner { id: NodeId(1) });
        assert_eq!(
            refused(&[AddVoter(NodeId(5)), Remove(NodeId(5))]),
            MembershipError::DuplicateNode { id: NodeId(5) }
        );
        assert_eq!(refused(&[Remove(NodeId(1)), Remove(NodeId(2))]), MembershipError::NoVoters);
    }

    #[test]
    fn joint_quorum_needs_both_sets() {
        let joint = membership(&[3, 4, 5], &[6], &[1, 2, 3]);
        assert!(joint.is_voter(NodeId(1)) && joint.is_voter(NodeId(5)));
        assert!(!joint.is_voter(NodeId(6)) && joint.contains(NodeId(6)));
        assert!(!joint.quorum().is_reached_by(|id| [1, 2, 6].contains(&id.0)));
        assert!(joint.quorum().is_reached_by(|id| [2, 3, 4].contains(&id.0)));
        assert_eq!(joint.to_string(), "voters=n3,n4,n5 learners=n6 outgoing=n1,n2,n3");
    }

    #[test]
    fn validation_catches_what_a_peer_could_send() {
        assert!(membership(&[1], &[], &[]).validate().is_ok());
        assert!(membership(&[], &[2], &[]).validate().is_err(), "no voter");
        assert!(membership(&[1, 0], &[], &[]).validate().is_err(), "id 0");
        assert!(membership(&[1, 2], &[2], &[]).validate().is_err(), "voter and learner");
        assert!(membership(&[1], &[2], &[2]).validate().is_err(), "outgoing and learner");
    }

    #[test]
    fn the_log_of_configurations_follows_appends_truncations_and_snapshots() {
        let mut log = MembershipLog::new(Index(0), membership(&[1], &[], &[]));
        log.append(Index(3), membership(&[1, 2], &[], &[]));
        log.append(Index(7), membership(&[1, 2, 3], &[], &[]));
        assert_eq!(log.latest().0, Index(7));
        assert_eq!(log.at(Index(5)), (Index(3), &membership(&[1, 2], &[], &[])));
        assert_eq!(log.at(Index(2)).0, Index(0));
        log.truncate_from(Index(7));
        assert_eq!(log.latest(), (Index(3), &membership(&[1, 2], &[], &[])), "reverted");
        log.append(Index(8), membership(&[1, 2, 4], &[], &[]));
        assert_eq!(log.before_latest(), &membership(&[1, 2], &[], &[]));
        log.rebase(Index(5));
        assert_eq!(log.at(Index(5)), (Index(5), &membership(&[1, 2], &[], &[])), "the base");
        assert_eq!(log.latest().0, Index(8));
        log.reset(Index(20), membership(&[9], &[], &[]));
        assert_eq!(log.latest(), (Index(20), &membership(&[9], &[], &[])));
    }

    #[test]
    fn the_leader_refuses_changes_it_cannot_make_safely() {
        use crate::testkit::LocalCluster;
        let mut cluster = LocalCluster::new(3, false, |_| {});
        cluster.node_mut(NodeId(1)).campaign();
        cluster.process_all();
        // Deliver the votes but hold the no-op's acknowledgements: n1 leads, uncommitted.
        while cluster.deliver(|message| !matches!(message.body, crate::Body::Append { .. })) > 0 {}
        let leader = cluster.node_mut(NodeId(1));
        assert_eq!(leader.role(), crate::RoleKind::Leader);
        let add = [AddLearner(NodeId(4))];
        assert_eq!(
            leader.change_membership(&add),
            Err(MembershipError::LeaderNotReady { index: Index(1) })
        );
        cluster.stabilize();
        assert_eq!(
            cluster.node_mut(NodeId(2)).change_membership(&add),
            Err(MembershipError::NotLeader { leader: Some(NodeId(1)), term: crate::Term(1) })
        );
        let leader = cluster.node_mut(NodeId(1));
        assert_eq!(leader.change_membership(&add), Ok(Index(2)));
        assert_eq!(
            leader.change_membership(&[Remove(NodeId(4))]),
            Err(MembershipError::ChangeInProgress { index: Index(2) })
        );
        cluster.stabilize();
        let leader = cluster.node_mut(NodeId(1));
        assert_eq!(leader.change_membership(&[Remove(NodeId(4))]), Ok(Index(3)));
    }

    #[test]
    #[should_panic(expected = "appended after")]
    fn configuration_entries_are_appended_in_order() {
        let mut log = MembershipLog::new(Index(0), membership(&[1], &[], &[]));
        log.append(Index(3), membership(&[1, 2], &[], &[]));
        log.append(Index(3), membership(&[1], &[], &[]));
    }
}
