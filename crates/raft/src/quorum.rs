//! Quorum arithmetic: the only place that knows what "a majority" means.
//!
//! A [`Majority`] is more than half of one set of voters. While a membership change by joint
//! consensus is under way (Raft thesis §4.3), every decision — electing a leader, committing an
//! entry, confirming leadership for a read, staying leader under check-quorum — needs a majority
//! of the old voters *and* a majority of the new: a [`JointQuorum`] combines the two, taking the
//! smaller committed index and requiring both to win a vote. Outside a change, a `JointQuorum`
//! has only the one majority, so callers never need to know which case they are in.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{Index, NodeId};

/// The outcome of counting votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// A majority granted.
    Won,
    /// A majority can no longer grant.
    Lost,
    /// Neither yet.
    Pending,
}

/// A majority quorum over a set of voters.
#[derive(Clone, Copy, Debug)]
pub struct Majority<'a> {
    /// The voters; non-empty.
    voters: &'a BTreeSet<NodeId>,
}

impl<'a> Majority<'a> {
    /// The majority quorum of `voters`.
    pub fn new(voters: &'a BTreeSet<NodeId>) -> Majority<'a> {
        assert!(!voters.is_empty(), "a quorum needs at least one voter");
        Majority { voters }
    }

    /// How many voters make a majority: more than half.
    pub fn size(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// The highest index that a majority of voters has reached, given each voter's index.
    /// Voters missing from `index_of` count as index 0.
    pub fn committed_index(&self, index_of: impl Fn(NodeId) -> Index) -> Index {
        // Small clusters: a stack array avoids an allocation on the leader's hot path.
        let mut stack = [Index(0); 7];
        let mut heap;
        let indexes: &mut [Index] = if self.voters.len() <= stack.len() {
            &mut stack[..self.voters.len()]
        } else {
            heap = vec![Index(0); self.voters.len()];
            &mut heap
        };
        for (slot, voter) in indexes.iter_mut().zip(self.voters.iter()) {
            *slot = index_of(*voter);
        }
        indexes.sort_unstable_by(|a, b| b.cmp(a));
        // Sorted descending, the entry at position size-1 is held by at least `size` voters.
        indexes[self.size() - 1]
    }

    /// Counts the votes cast so far; voters that have not answered are undecided.
    pub fn vote_result(&self, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
        let mut granted = 0;
        let mut undecided = 0;
        for voter in self.voters {
            match votes.get(voter) {
                Some(true) => granted += 1,
                Some(false) => {}
                None => undecided += 1,
            }
        }
        if granted >= self.size() {
            VoteResult::Won
        } else if granted + undecided >= self.size() {
            VoteResult::Pending
        } else {
            VoteResult::Lost
        }
    }

    /// Whether `active` voters make a majority.
    pub fn is_reached_by(&self, active: impl Fn(NodeId) -> bool) -> bool {
        self.voters.iter().filter(|voter| active(**voter)).count() >= self.size()
    }
}

/// The quorum of a configuration: a majority of `incoming`, and while joint also a majority of
/// `outgoing` (Raft thesis §4.3).
#[derive(Clone, Copy, Debug)]
pub struct JointQuorum<'a> {
    /// The majority of the configuration's voters (the new ones, while joint).
    incoming: Majority<'a>,
    /// The majority of the previous voters, while joint; `None` otherwise.
    outgoing: Option<Majority<'a>>,
}

impl<'a> JointQuorum<'a> {
    /// The quorum of `incoming` voters, joint with `outgoing` voters unless that set is empty.
    pub fn new(incoming: &'a BTreeSet<NodeId>, outgoing: &'a BTreeSet<NodeId>) -> JointQuorum<'a> {
        let outgoing = (!outgoing.is_empty()).then(|| Majority::new(outgoing));
        JointQuorum { incoming: Majority::new(incoming), outgoing }
    }

    /// The highest index that both majorities have reached: the smaller of the two.
    pub fn committed_index(&self, index_of: impl Fn(NodeId) -> Index) -> Index {
        let incoming = self.incoming.committed_index(&index_of);
        match &self.outgoing {
            Some(outgoing) => incoming.min(outgoing.committed_index(&index_of)),
            None => incoming,
        }
    }

    /// Won when both majorities granted, lost when either can no longer grant.
    pub fn vote_result(&self, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
        let incoming = self.incoming.vote_result(votes);
        let Some(outgoing) = &self.outgoing else { return incoming };
        match (incoming, outgoing.vote_result(votes)) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }

    /// Whether `active` voters make a majority of both sets.
    pub fn is_reached_by(&self, active: impl Fn(NodeId) -> bool) -> bool {
        self.incoming.is_reached_by(&active)
            && self.outgoing.as_ref().is_none_or(|outgoing| outgoing.is_reached_by(&active))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn voters(n: u64) -> BTreeSet<NodeId> {
        (1..=n).map(NodeId).collect()
    }

    #[test]
    fn majority_sizes() {
        let sizes: Vec<usize> = (1..=7).map(|n| Majority::new(&voters(n)).size()).collect();
        assert_eq!(sizes, vec![1, 2, 2, 3, 3, 4, 4]);
    }

    #[test]
    fn vote_counting() {
        let set = voters(3);
        let majority = Majority::new(&set);
        let mut votes = BTreeMap::new();
        assert_eq!(majority.vote_result(&votes), VoteResult::Pending);
        votes.insert(NodeId(1), true);
        assert_eq!(majority.vote_result(&votes), VoteResult::Pending);
        votes.insert(NodeId(2), false);
        assert_eq!(majority.vote_result(&votes), VoteResult::Pending);
        votes.insert(NodeId(3), true);
        assert_eq!(majority.vote_result(&votes), VoteResult::Won);
        votes.insert(NodeId(3), false);
        assert_eq!(majority.vote_result(&votes), VoteResult::Lost);
    }

    fn set(ids: &[u64]) -> BTreeSet<NodeId> {
        ids.iter().copied().map(NodeId).collect()
    }

    #[test]
    fn joint_commit_needs_both_majorities() {
        // Old voters 1, 2, 3; new voters 3, 4, 5.
        let (old, new) = (set(&[1, 2, 3]), set(&[3, 4, 5]));
        let joint = JointQuorum::new(&new, &old);
        // 1 and 2 hold 9 (a majority of the old), 4 and 5 hold only 4: the new majority decides.
        let index_of = |id: NodeId| Index([0, 9, 9, 2, 4, 4][id.0 as usize]);
        assert_eq!(Majority::new(&old).committed_index(index_of), Index(9));
        assert_eq!(joint.committed_index(index_of), Index(4));
        // Node 3 is in both: with it at 9, the old majority is at 9 and the new at 4 still.
        let index_of = |id: NodeId| Index([0, 1, 1, 9, 7, 1][id.0 as usize]);
        assert_eq!(joint.committed_index(index_of), Index(1), "old majority {{1, 2}} at 1");
        let empty = BTreeSet::new();
        let simple = JointQuorum::new(&new, &empty);
        assert_eq!(simple.committed_index(index_of), Index(7), "not joint: one majority");
    }

    #[test]
    fn joint_votes_need_both_majorities() {
        let (old, new) = (set(&[1, 2, 3]), set(&[3, 4, 5]));
        let joint = JointQuorum::new(&new, &old);
        let votes = |granted: &[u64], refused: &[u64]| {
            let mut votes: BTreeMap<NodeId, bool> =
                granted.iter().map(|&id| (NodeId(id), true)).collect();
            votes.extend(refused.iter().map(|&id| (NodeId(id), false)));
            votes
        };
        assert_eq!(joint.vote_result(&votes(&[1, 2], &[])), VoteResult::Pending, "old only");
        assert_eq!(joint.vote_result(&votes(&[4, 5], &[])), VoteResult::Pending, "new only");
        assert_eq!(joint.vote_result(&votes(&[1, 3, 4], &[])), VoteResult::Won);
        assert_eq!(joint.vote_result(&votes(&[1, 2, 4, 5], &[])), VoteResult::Won);
        assert_eq!(joint.vote_result(&votes(&[1, 2, 3], &[4, 5])), VoteResult::Lost);
        assert_eq!(joint.vote_result(&votes(&[3, 4, 5], &[1, 2])), VoteResult::Lost);
        assert!(!joint.is_reached_by(|id| id.0 <= 3), "the old voters alone");
        assert!(joint.is_reached_by(|id| id.0 >= 2 && id.0 <= 4));
    }

    proptest! {
        /// A joint quorum decides exactly as both majorities together: its committed index is
        /// reached by a majority of each set, and no higher index is reached by both.
        #[test]
        fn joint_committed_index_is_the_highest_index_both_majorities_reach(
            indexes in proptest::collection::vec(0u64..20, 1..=9),
            incoming_mask in 1u16..512,
            outgoing_mask in 0u16..512,
        ) {
            let n = indexes.len();
            let pick = |mask: u16| -> BTreeSet<NodeId> {
                (0..n).filter(|bit| mask & (1 << bit) != 0).map(|bit| NodeId(bit as u64 + 1)).collect()
            };
            let (incoming, outgoing) = (pick(incoming_mask), pick(outgoing_mask));
            prop_assume!(!incoming.is_empty());
            let joint = JointQuorum::new(&incoming, &outgoing);
            let index_of = |id: NodeId| Index(indexes[(id.0 - 1) as usize]);
            let committed = joint.committed_index(index_of);
            let reached_by_both = |at: Index| {
                let reaches = |set: &BTreeSet<NodeId>| {
                    set.is_empty() || set.iter().filter(|&&id| index_of(id) >= at).count() > set.len() / 2
                };
                reaches(&incoming) && reaches(&outgoing)
            };
            prop_assert!(reached_by_both(committed));
            prop_assert!(!reached_by_both(committed.next()));
            prop_assert_eq!(joint.is_reached_by(|id| index_of(id) >= committed), true);
        }
    }

    proptest! {
        /// The committed index is reached by a majority, and no higher index is.
        #[test]
        fn committed_index_is_the_highest_majority_index(
            indexes in proptest::collection::vec(0u64..20, 1..=9)
        ) {
            let set = voters(indexes.len() as u64);
            let majority = Majority::new(&set);
            let index_of = |id: NodeId| Index(indexes[(id.0 - 1) as usize]);
            let committed = majority.committed_index(index_of);
            let reaching = |at: Index| indexes.iter().filter(|&&i| Index(i) >= at).count();
            prop_assert!(reaching(committed) >= majority.size());
            prop_assert!(reaching(committed.next()) < majority.size());
        }

        /// A vote is won exactly when a majority granted, and lost exactly when a majority can
        /// no longer grant.
        #[test]
        fn vote_result_matches_counting(answers in proptest::collection::vec(0u8..3, 1..=9)) {
            let set = voters(answers.len() as u64);
            let majority = Majority::new(&set);
            let mut votes = BTreeMap::new();
            for (position, answer) in answers.iter().enumerate() {
                let id = NodeId(position as u64 + 1);
                match answer {
                    0 => { votes.insert(id, true); }
                    1 => { votes.insert(id, false); }
                    _ => {}
                }
            }
            let granted = answers.iter().filter(|&&a| a == 0).count();
            let rejected = answers.iter().filter(|&&a| a == 1).count();
            let expected = if granted >= majority.size() {
                VoteResult::Won
            } else if answers.len() - rejected < majority.size() {
                VoteResult::Lost
            } else {
                VoteResult::Pending
            };
            prop_assert_eq!(majority.vote_result(&votes), expected);
        }
    }
}
