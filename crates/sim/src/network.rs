//! The simulated network: latency, loss, duplication, reordering and partitions.
//!
//! Every message between nodes is routed here when it leaves its sender. It may be lost, it may
//! be duplicated (both copies travel independently), and each copy gets its own latency, drawn
//! from a uniform base range or, for a few "slow" messages, a heavy tail up to seconds; unequal
//! latencies are what reorder messages. A partition is a set of blocked directed links; a
//! message on a blocked link is dropped when sent and also when it arrives, so a partition cuts
//! off what was already in flight, as a real one would. Partitions are counted per link, so
//! overlapping partitions heal independently.
//!
//! Clients reach nodes over links that see loss and latency but no partitions: a client that
//! cannot reach one node tries another, and what is interesting is the cluster's side.

use std::collections::BTreeMap;

use skiff_raft::NodeId;

use crate::parameters::NetworkParameters;
use crate::random::Random;
use crate::time::Time;

/// What happens to a message when it is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Lost by the network.
    Lost,
    /// Dropped because a partition blocks the link.
    Blocked,
    /// Delivered after the first latency, and a second time after the second one if duplicated.
    Delivered(Time, Option<Time>),
}

/// The network between nodes, and between clients and nodes.
#[derive(Debug)]
pub struct Network {
    /// Loss, duplication and latency in force (the heal phase sets them to calm values).
    parameters: NetworkParameters,
    /// Blocked directed links `(from, to)`, with the number of active partitions blocking each.
    blocked: BTreeMap<(NodeId, NodeId), u32>,
    /// The network's own stream of random choices.
    random: Random,
}

impl Network {
    /// A network with `parameters`, drawing from `random`.
    pub fn new(parameters: NetworkParameters, random: Random) -> Network {
        Network { parameters, blocked: BTreeMap::new(), random }
    }

    /// With `probability`, flips one random bit of `bytes` (a chunk damaged in transit, which
    /// its checksum must catch); returns whether it did.
    pub fn damage(&mut self, bytes: &mut [u8], probability: f64) -> bool {
        if bytes.is_empty() || !self.random.chance(probability) {
            return false;
        }
        let position = self.random.below(bytes.len() as u64) as usize;
        bytes[position] ^= 1 << self.random.below(8);
        true
    }

    /// Decides the fate of a message from node `from` to node `to`.
    pub fn route(&mut self, from: NodeId, to: NodeId) -> Fate {
        if self.is_blocked(from, to) {
            return Fate::Blocked;
        }
        if self.random.chance(self.parameters.loss) {
            return Fate::Lost;
        }
        let first = self.latency();
        let second = self.random.chance(self.parameters.duplicate).then(|| self.latency());
        Fate::Delivered(first, second)
    }

    /// The latency of a message between a client and a node, or `None` if it is lost.
    pub fn route_client(&mut self) -> Option<Time> {
        if self.random.chance(self.parameters.loss) {
            return None;
        }
        Some(self.latency())
    }

    /// Whether a partition currently blocks messages from `from` to `to`.
    pub fn is_blocked(&self, from: NodeId, to: NodeId) -> bool {
        self.blocked.contains_key(&(from, to))
    }

    /// Blocks `links` (one more partition over each).
    pub fn block(&mut self, links: &[(NodeId, NodeId)]) {
        for &link in links {
            *self.blocked.entry(link).or_insert(0) += 1;
        }
    }

    /// Lifts one partition's blocks from `links`.
    pub fn unblock(&mut self, links: &[(NodeId, NodeId)]) {
        for link in links {
            if let Some(count) = self.blocked.get_mut(link) {
                *count -= 1;
                if *count == 0 {
                    self.blocked.remove(link);
                }
            }
        }
    }

    /// The number of blocked directed links.
    pub fn blocked_links(&self) -> usize {
        self.blocked.len()
    }

    /// Removes every fault: no partitions, no loss, no duplicates, no slow messages. Latency
    /// stays in its base range, which still reorders messages.
    pub fn heal(&mut self) {
        self.blocked.clear();
        self.parameters.loss = 0.0;
        self.parameters.duplicate = 0.0;
        self.parameters.slow = 0.0;
    }

    /// One message's latency.
    fn latency(&mut self) -> Time {
        let NetworkParameters { latency_min, latency_max, slow, slow_max, .. } = self.parameters;
        if self.random.chance(slow) {
            return Time(self.random.log_uniform(latency_max.0.max(1), slow_max.0.max(1)));
        }
        Time(self.random.between(latency_min.0, latency_max.0 + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameters(loss: f64, duplicate: f64) -> NetworkParameters {
        NetworkParameters {
            latency_min: Time(100),
            latency_max: Time(200),
            loss,
            duplicate,
            slow: 0.0,
            slow_max: Time(1000),
        }
    }

    #[test]
    fn partitions_block_per_link_and_heal_independently() {
        let mut network = Network::new(parameters(0.0, 0.0), Random::new(1));
        let link = (NodeId(1), NodeId(2));
        network.block(&[link]);
        network.block(&[link]);
        assert_eq!(network.route(NodeId(1), NodeId(2)), Fate::Blocked);
        assert!(matches!(network.route(NodeId(2), NodeId(1)), Fate::Delivered(..)), "one-way");
        network.unblock(&[link]);
        assert!(network.is_blocked(NodeId(1), NodeId(2)), "still blocked by the other");
        network.unblock(&[link]);
        assert!(!network.is_blocked(NodeId(1), NodeId(2)));
    }

    #[test]
    fn loss_duplication_and_latency_follow_the_parameters() {
        let mut network = Network::new(parameters(0.5, 1.0), Random::new(2));
        let mut lost = 0;
        for _ in 0..1000 {
            match network.route(NodeId(1), NodeId(2)) {
                Fate::Lost => lost += 1,
                Fate::Delivered(first, Some(second)) => {
                    assert!((100..=200).contains(&first.0) && (100..=200).contains(&second.0));
                }
                other => panic!("unexpected fate {other:?}"),
            }
        }
        assert!((400..600).contains(&lost), "about half lost: {lost}");
        network.heal();
        assert!(matches!(network.route(NodeId(1), NodeId(2)), Fate::Delivered(_, None)));
    }
}
