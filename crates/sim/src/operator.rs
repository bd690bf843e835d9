//! The operator: membership changes, planned by the fault schedule and carried out on a running
//! cluster as a person with `skiff cluster add|promote|remove` would.
//!
//! A membership fault of the schedule is an *intent* (add a spare as a learner, promote a
//! learner, remove the leader, replace a voter, replace two voters at once), turned into steps
//! resolved against the configuration in force when each is carried out: which spare to start,
//! which learner to promote, which voter to remove. The operator asks the leader
//! (`Node::change_membership`) on a timer; a refusal that time mends (no leader, a change in
//! progress, a leader that has not committed its first entry, a learner still far behind, a
//! transfer under way) is asked again, anything else drops the step. A replacement is the
//! rolling kind (start a spare, add it as a learner, promote it once caught up, remove an old
//! voter): repeated, it replaces a majority of the founders one node at a time. A joint
//! replacement adds two spares as voters and removes two voters in one change, which the core
//! carries out by joint consensus.
//!
//! Spares (ids after the founders') start empty, with no configuration: they join when the
//! leader adds them. A node removed from the configuration is **retired**, stopped for good, a
//! little after the configuration entry that removed it is known committed (checked against
//! the invariant checker's record, so a removal that was truncated away retires nobody); until
//! then it runs, removed, as a real one would until its operator stops it. Ids are never
//! reused: a retired node's data directory would be stale.
//!
//! The operator stops at the heal, so that the liveness check measures the cluster, not the
//! operator's plans.
//!
//! ## What it leaves to the core
//! The operator asks as a person would, without waiting for what the core checks itself: it
//! promotes a learner however far behind it is (the core refuses with `LearnerBehind` beyond
//! `Config::max_learner_lag`, and the operator asks again), adds voters empty, and removes the
//! leader whatever its followers hold. The first sweeps with membership changes found two
//! liveness bugs of the core this way, guarded against here until ff04428 fixed them in the
//! core: a node left out of an uncommitted configuration never campaigned (a leader of
//! {n1, n2} removing itself could leave n2 needing n1's vote for good), and a voter added
//! empty kept ignoring votes the cluster needed.

use std::collections::{BTreeSet, VecDeque};

use skiff_raft::{Index, Membership, MembershipChange, MembershipError, NodeId, Term};

use crate::faults::MembershipIntent;
use crate::simulation::{Event, Simulation};
use crate::time::Time;
use crate::trace::trace;

/// Times a step is asked again before the operator gives up on it.
const MAX_TRIES: u32 = 40;

/// One membership change to ask the leader for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Start a spare and add it, as a voter or a learner; `incoming` marks the spare a
    /// replacement brings in (the later steps of the replacement name it).
    Add {
        /// As a voter at once, or as a learner.
        voter: bool,
        /// Whether this is the first step of a replacement.
        incoming: bool,
        /// The spare started for it, once started.
        spare: Option<NodeId>,
    },
    /// Promote a learner: the replacement's spare, or any.
    Promote {
        /// Whether the learner is the replacement's spare.
        incoming: bool,
    },
    /// Remove a node.
    Remove(Removal),
    /// Promote the learners the last two additions brought in and remove two voters, in one
    /// change.
    Joint,
}

/// Which node a removal takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Removal {
    /// The leader itself.
    Leader,
    /// A voter that does not lead.
    Follower,
    /// A learner.
    Learner,
    /// A voter other than the replacement's spare: the last step of a replacement.
    Replaced,
}

/// A configuration entry that removes `nodes`, waiting to be known committed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PendingRetirement {
    /// The nodes it removes.
    nodes: BTreeSet<NodeId>,
    /// Its index.
    index: Index,
    /// Its term.
    term: Term,
}

/// The operator's plans and what it waits for.
#[derive(Debug, Default)]
pub(crate) struct Operator {
    /// The steps to carry out, in order, each with the times it was asked.
    steps: VecDeque<(Step, u32)>,
    /// The spares added as learners for a promotion still to come (the newest last).
    incoming: Vec<NodeId>,
    /// The learner last promoted: a replacement removes an old voter once it is in.
    promoted: Option<NodeId>,
    /// Removals waiting for their entry to commit.
    retirements: Vec<PendingRetirement>,
    /// Whether an operator event is scheduled.
    scheduled: bool,
}

impl Simulation {
    /// A membership fault strikes: its intent becomes steps.
    pub(crate) fn plan_membership(&mut self, intent: MembershipIntent) {
        let steps: &[Step] = match intent {
            MembershipIntent::AddLearner => {
                &[Step::Add { voter: false, incoming: false, spare: None }]
            }
            // A voter comes in as a learner first, promoted once it holds the whole log (see
            // known bug 2 in the module documentation).
            MembershipIntent::AddVoter => {
                &[Step::Add { voter: true, incoming: false, spare: None }]
            }
            MembershipIntent::Promote => &[Step::Promote { incoming: false }],
            MembershipIntent::RemoveLeader => &[Step::Remove(Removal::Leader)],
            MembershipIntent::RemoveFollower => &[Step::Remove(Removal::Follower)],
            MembershipIntent::RemoveLearner => &[Step::Remove(Removal::Learner)],
            MembershipIntent::Replace => &[
                Step::Add { voter: false, incoming: true, spare: None },
                Step::Promote { incoming: true },
                Step::Remove(Removal::Replaced),
            ],
            MembershipIntent::JointReplace => &[
                Step::Add { voter: false, incoming: true, spare: None },
                Step::Add { voter: false, incoming: true, spare: None },
                Step::Joint,
            ],
        };
        self.operator.steps.extend(steps.iter().map(|&step| (step, 0)));
        self.schedule_operator(Time::ZERO);
    }

    /// Schedules the operator's next attempt in `after`, unless one is scheduled.
    fn schedule_operator(&mut self, after: Time) {
        if !self.operator.scheduled {
            self.operator.scheduled = true;
            self.queue.push(self.now + after, Event::Operator);
        }
    }

    /// The operator's turn: retire the nodes whose removal committed, and ask for the next
    /// step.
    pub(crate) fn operate(&mut self) {
        self.operator.scheduled = false;
        if self.healed {
            self.operator.steps.clear();
            return;
        }
        self.retire_removed();
        if let Some((step, tries)) = self.operator.steps.pop_front() {
            match self.attempt_step(step) {
                Attempt::Done => {}
                Attempt::Again(step) if tries + 1 < MAX_TRIES => {
                    self.operator.steps.push_front((step, tries + 1));
                }
                Attempt::Again(step) => {
                    trace!(self.trace, self.now, "operator gives up on {step:?}");
                }
            }
        }
        if !self.operator.steps.is_empty() || !self.operator.retirements.is_empty() {
            let retry = self.parameters.election_duration().times(1).max(Time(1_000));
            self.schedule_operator(retry);
        }
    }

    /// Carries out `step` if the leader accepts it.
    fn attempt_step(&mut self, step: Step) -> Attempt {
        let Some(leader) = self.leader() else { return Attempt::Again(step) };
        let node = &self.nodes[&leader];
        let Some(core) = node.core.as_ref() else { return Attempt::Again(step) };
        if node.paused {
            return Attempt::Again(step);
        }
        let membership = core.membership().clone();
        let (changes, step) = match self.resolve(step, leader, &membership) {
            Resolved::Changes(changes, step) => (changes, step),
            Resolved::Nothing => {
                trace!(self.trace, self.now, "operator: nothing to do for {step:?}");
                return Attempt::Done;
            }
        };
        let node = self.nodes.get_mut(&leader).expect("a node of the cluster");
        let core = node.core.as_mut().expect("checked running");
        let changed = match crate::driver::guarded(leader, || core.change_membership(&changes)) {
            Ok(changed) => changed,
            Err(violation) => {
                self.fail(violation);
                return Attempt::Done;
            }
        };
        match changed {
            Ok(index) => {
                trace!(
                    self.trace,
                    self.now, "operator: {leader} changes membership {changes:?} at {index}"
                );
                self.count_change(leader, step, &changes);
                if let Step::Add { incoming: true, spare: Some(spare), .. } = step {
                    self.operator.incoming.push(spare);
                }
                self.operator
                    .incoming
                    .retain(|&spare| !changes.contains(&MembershipChange::Promote(spare)));
                if let [MembershipChange::Promote(learner)] = changes[..] {
                    self.operator.promoted = Some(learner);
                }
                self.take_and_perform(leader);
                Attempt::Done
            }
            Err(
                MembershipError::NotLeader { .. }
                | MembershipError::ChangeInProgress { .. }
                | MembershipError::LeaderNotReady { .. }
                | MembershipError::TransferInProgress { .. },
            ) => Attempt::Again(step),
            Err(MembershipError::LearnerBehind { .. }) => {
                self.stats.promotions_refused += 1;
                Attempt::Again(step)
            }
            Err(error) => {
                trace!(self.trace, self.now, "operator: {leader} refuses {changes:?}: {error}");
                Attempt::Done
            }
        }
    }

    /// Counts a change the leader accepted, by kind.
    fn count_change(&mut self, leader: NodeId, step: Step, changes: &[MembershipChange]) {
        let stats = &mut self.stats;
        stats.membership_changes += 1;
        let promotions =
            changes.iter().filter(|c| matches!(c, MembershipChange::Promote(_))).count();
        let removals = changes.iter().filter(|c| matches!(c, MembershipChange::Remove(_))).count();
        if promotions + removals > 1 {
            stats.joint_changes += 1;
        } else {
            stats.promotions += promotions as u64;
            stats.removals += removals as u64;
        }
        if changes.contains(&MembershipChange::Remove(leader)) {
            stats.leader_removals += 1;
        }
        if changes.iter().any(|c| matches!(c, MembershipChange::AddLearner(_))) {
            stats.learners_added += 1;
        }
        if changes.iter().any(|c| matches!(c, MembershipChange::AddVoter(_))) {
            stats.voters_added += 1;
        }
        if step == Step::Remove(Removal::Replaced) {
            stats.replacements += 1;
        }
    }

    /// The changes `step` asks for under `membership`, led by `leader`; a spare it needs is
    /// started (once).
    fn resolve(&mut self, step: Step, leader: NodeId, membership: &Membership) -> Resolved {
        let followers: Vec<NodeId> =
            membership.voters.iter().copied().filter(|&voter| voter != leader).collect();
        match step {
            Step::Add { voter, incoming, spare } => {
                let Some(spare) = spare.or_else(|| self.start_spare()) else {
                    return Resolved::Nothing;
                };
                let change = if voter {
                    MembershipChange::AddVoter(spare)
                } else {
                    MembershipChange::AddLearner(spare)
                };
                Resolved::Changes(vec![change], Step::Add { voter, incoming, spare: Some(spare) })
            }
            Step::Promote { incoming } => {
                let learner = if incoming {
                    self.operator.incoming.pop().filter(|spare| membership.learners.contains(spare))
                } else {
                    membership.learners.first().copied()
                };
                let Some(learner) = learner else { return Resolved::Nothing };
                if incoming {
                    // Kept for the next attempt, should the core find it too far behind.
                    self.operator.incoming.push(learner);
                }
                Resolved::Changes(vec![MembershipChange::Promote(learner)], step)
            }
            Step::Remove(removal) => {
                let target = match removal {
                    Removal::Leader => Some(leader),
                    Removal::Follower => self.pick(&followers),
                    Removal::Learner => {
                        let learners: Vec<NodeId> = membership.learners.iter().copied().collect();
                        self.pick(&learners)
                    }
                    Removal::Replaced => {
                        let incoming = self.operator.promoted.take();
                        let spare_in =
                            incoming.is_some_and(|spare| membership.voters.contains(&spare));
                        // The oldest voter other than the newcomer: founders go first.
                        let old = membership.voters.iter().copied().find(|&v| Some(v) != incoming);
                        if spare_in { old } else { None }
                    }
                };
                let Some(target) = target else { return Resolved::Nothing };
                if membership.voters.len() == 1 && membership.voters.contains(&target) {
                    return Resolved::Nothing;
                }
                Resolved::Changes(vec![MembershipChange::Remove(target)], step)
            }
            Step::Joint => {
                let learners: Vec<NodeId> = std::mem::take(&mut self.operator.incoming)
                    .into_iter()
                    .filter(|spare| membership.learners.contains(spare))
                    .collect();
                // Kept for the next attempt, should the core find one too far behind.
                self.operator.incoming = learners.clone();
                let mut changes: Vec<MembershipChange> =
                    learners.iter().map(|&learner| MembershipChange::Promote(learner)).collect();
                let mut removable = followers.clone();
                // Now and then the leader goes too.
                if self.operator_random.chance(0.3) {
                    removable.insert(0, leader);
                }
                for _ in 0..2 {
                    if let Some(target) = self.pick(&removable) {
                        removable.retain(|&node| node != target);
                        changes.push(MembershipChange::Remove(target));
                    }
                }
                if changes.len() < 2 {
                    return Resolved::Nothing;
                }
                Resolved::Changes(changes, Step::Joint)
            }
        }
    }

    /// A random node of `nodes`, from the operator's stream.
    fn pick(&mut self, nodes: &[NodeId]) -> Option<NodeId> {
        (!nodes.is_empty()).then(|| self.operator_random.pick(nodes))
    }

    /// Starts the next dormant spare (empty, with no configuration: it joins), if any is left.
    fn start_spare(&mut self) -> Option<NodeId> {
        let spare = self.nodes.values().find(|node| node.dormant).map(|node| node.id)?;
        self.nodes.get_mut(&spare).expect("a node of the universe").dormant = false;
        trace!(self.trace, self.now, "operator starts spare {spare}");
        self.restart(spare);
        Some(spare)
    }

    /// A node reported a new configuration in force; a leader's that removes members is
    /// remembered, so that they retire once it commits.
    pub(crate) fn membership_changed(&mut self, id: NodeId, index: Index, membership: Membership) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let previous = std::mem::replace(&mut node.membership, membership.clone());
        let Some(core) = node.core.as_ref() else { return };
        if core.role() != skiff_raft::RoleKind::Leader {
            return;
        }
        let current = membership.members();
        let removed: BTreeSet<NodeId> = previous.members().difference(&current).copied().collect();
        if !removed.is_empty() {
            let term = core.term();
            self.operator.retirements.push(PendingRetirement { nodes: removed, index, term });
            self.schedule_operator(self.parameters.election_duration());
        }
    }

    /// Retires (a little later) the nodes whose removal is known committed; forgets removals
    /// whose entry was truncated away.
    fn retire_removed(&mut self) {
        let mut waiting = Vec::new();
        for pending in std::mem::take(&mut self.operator.retirements) {
            match self.checker.committed_term(pending.index) {
                None => waiting.push(pending),
                Some(term) if term != pending.term => {}
                Some(_) => {
                    for node in pending.nodes {
                        let delay = self
                            .operator_random
                            .between(0, 2 * self.parameters.election_duration().0 + 1);
                        self.queue.push(self.now + Time(delay), Event::Retire { node });
                    }
                }
            }
        }
        self.operator.retirements = waiting;
    }

    /// Stops node `id` for good: it was removed from the cluster.
    pub(crate) fn retire(&mut self, id: NodeId) {
        if self.nodes[&id].retired {
            return;
        }
        trace!(self.trace, self.now, "operator retires {id}: removed from the cluster");
        self.crash(id);
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        node.retired = true;
        self.stats.retired += 1;
    }
}

/// How an attempt at a step went.
enum Attempt {
    /// Carried out, or nothing to do: the next step is due.
    Done,
    /// Not now: ask again later.
    Again(Step),
}

/// A step resolved against a configuration.
enum Resolved {
    /// These changes, and the step as it now stands (with the spares it started).
    Changes(Vec<MembershipChange>, Step),
    /// Nothing applies (no spare left, no learner, no voter to remove).
    Nothing,
}
