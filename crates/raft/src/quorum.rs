//! Quorum arithmetic over a set of voters: the only place that knows what "a majority" means.
//!
//! Keeping it here leaves room for joint consensus (Raft §6), where a decision needs a majority
//! of the old voters *and* of the new: a joint configuration combines two `Majority`s, taking
//! the smaller committed index and requiring both to win a vote.

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
