//! The byte layout of a cluster configuration ([`Membership`]), shared by configuration entries
//! in segment files and by snapshot file headers.
//!
//! ## Layout (all integers little-endian)
//!
//! | size   | field                                                    |
//! |--------|----------------------------------------------------------|
//! | 4      | voter count `v`: u32, 1 to 1,024                         |
//! | 8 × v  | the voters' ids: u64 each, strictly increasing, never 0  |
//! | 4      | learner count `l`: u32, 0 to 1,024                       |
//! | 8 × l  | the learners' ids, likewise                              |
//! | 4      | outgoing voter count `o`: u32, 0 to 1,024 (0 unless joint) |
//! | 8 × o  | the outgoing voters' ids, likewise                       |
//!
//! A decoded configuration is checked as the core would ([`Membership::validate`]: voters,
//! no id 0, learners apart from voters), so a damaged one is refused rather than handed over.

use std::collections::BTreeSet;

use skiff_raft::{Membership, NodeId};

/// The most ids one set may hold; bounds what a damaged count makes a reader allocate.
pub(crate) const MAX_SET: usize = 1024;

/// The encoded length of `membership`.
pub(crate) fn encoded_len(membership: &Membership) -> usize {
    12 + 8 * (membership.voters.len() + membership.learners.len() + membership.outgoing.len())
}

/// Appends the encoding of `membership` to `buffer`. Panics on a configuration the core could
/// never produce (no voters, or a set past [`MAX_SET`]): that is a bug in the caller.
pub(crate) fn encode(buffer: &mut Vec<u8>, membership: &Membership) {
    assert!(!membership.voters.is_empty(), "a configuration without voters: {membership}");
    for set in [&membership.voters, &membership.learners, &membership.outgoing] {
        assert!(set.len() <= MAX_SET, "a configuration set of {} ids", set.len());
        buffer.extend_from_slice(&(set.len() as u32).to_le_bytes());
        for id in set {
            buffer.extend_from_slice(&id.0.to_le_bytes());
        }
    }
}

/// Decodes the configuration at the start of `bytes`: the configuration and the number of
/// bytes it took, or why the bytes are not a valid one.
pub(crate) fn decode(bytes: &[u8]) -> Result<(Membership, usize), String> {
    let mut at = 0;
    let mut sets = Vec::with_capacity(3);
    for name in ["voter", "learner", "outgoing voter"] {
        let count = bytes
            .get(at..at + 4)
            .map(|count| u32::from_le_bytes(count.try_into().expect("4 bytes")) as usize)
            .ok_or_else(|| format!("the configuration ends before its {name} count"))?;
        at += 4;
        if count > MAX_SET {
            return Err(format!("{count} {name}s, more than {MAX_SET}"));
        }
        let ids = bytes
            .get(at..at + 8 * count)
            .ok_or_else(|| format!("the configuration ends within its {name}s"))?;
        at += 8 * count;
        let ids: Vec<NodeId> = ids
            .chunks_exact(8)
            .map(|id| NodeId(u64::from_le_bytes(id.try_into().expect("8 bytes"))))
            .collect();
        if ids.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(format!("the {name}s are not in increasing order"));
        }
        sets.push(ids.into_iter().collect::<BTreeSet<NodeId>>());
    }
    let outgoing = sets.pop().expect("three sets");
    let learners = sets.pop().expect("three sets");
    let voters = sets.pop().expect("three sets");
    let membership = Membership { voters, learners, outgoing };
    membership.validate()?;
    Ok((membership, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn membership(voters: &[u64], learners: &[u64], outgoing: &[u64]) -> Membership {
        let set = |ids: &[u64]| ids.iter().copied().map(NodeId).collect();
        Membership { voters: set(voters), learners: set(learners), outgoing: set(outgoing) }
    }

    #[test]
    fn configurations_round_trip_and_are_laid_out_as_documented() {
        let joint = membership(&[3, 4, 5], &[9], &[1, 2, 3]);
        let mut bytes = Vec::new();
        encode(&mut bytes, &joint);
        assert_eq!(bytes.len(), encoded_len(&joint));
        assert_eq!(&bytes[..4], &3u32.to_le_bytes(), "voter count");
        assert_eq!(&bytes[4..12], &3u64.to_le_bytes(), "first voter");
        assert_eq!(&bytes[28..32], &1u32.to_le_bytes(), "learner count");
        bytes.extend_from_slice(b"rest");
        assert_eq!(decode(&bytes), Ok((joint, bytes.len() - 4)));
    }

    #[test]
    fn damaged_configurations_are_refused() {
        let mut bytes = Vec::new();
        encode(&mut bytes, &membership(&[1, 2], &[3], &[]));
        assert!(decode(&bytes[..bytes.len() - 1]).is_err(), "cut short");
        let mut swapped = bytes.clone();
        swapped[4..12].copy_from_slice(&2u64.to_le_bytes());
        swapped[12..20].copy_from_slice(&1u64.to_le_bytes());
        assert!(decode(&swapped).is_err(), "out of order");
        let mut learner_votes = bytes.clone();
        learner_votes[24..32].copy_from_slice(&1u64.to_le_bytes());
        assert!(decode(&learner_votes).is_err(), "a learner that is also a voter");
        let mut huge = bytes;
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_err(), "an impossible count");
        assert!(decode(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err(), "no voters");
    }
}
