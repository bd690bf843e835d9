//! The fault schedule: what goes wrong, when, drawn from the seed before the run starts.
//!
//! The schedule is a list of timed faults, each of which undoes itself after a while: a crash
//! is followed by a restart, a pause by a resumption, a partition by its healing. Drawing the
//! whole list up front (rather than deciding faults as the run goes) is what makes shrinking
//! possible: a failing seed can be re-run with some faults left out (`--faults 3,7`) and
//! everything else unchanged, to find the few that matter.
//!
//! Who a fault strikes is partly decided when it strikes: "crash the leader" or "isolate the
//! leader" pick whichever node leads at that moment, since the point is to hit the leader. Three
//! kinds are *triggers*, armed at their time and fired by the next matching event: crash the next
//! node that grants a vote (just after the grant leaves, which is when a vote that was not made
//! durable is lost), and crash or isolate the next nodes elected leader shortly after their
//! election (before their first entries are replicated, which is where Figure 8 starts).
//!
//! A disk stall holds every write of one node for a while, as a stuck fsync does; writes pile
//! up behind it, which is how a follower comes to have several overlapping writes pending
//! across leader changes.
//!
//! Some entries are not failures but what operators do, at moments no failure would choose:
//! leadership transfers, and membership changes (carried out by `operator.rs`). In seeds with
//! lease reads, a lease race drifts the clocks apart as far as the drift bound covers and cuts
//! the leader off (see `FaultKind::LeaseRace`).
//!
//! The partition shapes: a minority cut from the majority; the leader isolated; a bridge (two
//! halves that cannot talk, and one node that talks to both); one-way links (a node that can
//! send but not receive, or the reverse); random link failures. Message loss, duplication and
//! delay are not in the schedule: they are rates of the network, drawn with the other
//! parameters.

use std::collections::BTreeSet;
use std::fmt;

use skiff_raft::NodeId;

use crate::parameters::Parameters;
use crate::random::Random;
use crate::time::Time;

/// Whom a fault strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Whichever node leads when the fault strikes (or `fallback` if none does).
    Leader {
        /// The node struck when there is no leader.
        fallback: NodeId,
    },
    /// This node.
    Node(NodeId),
}

/// A step of taking, moving or installing a snapshot, where a crash can strike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotStep {
    /// Finishing a local snapshot's temporary file (its header, its fsync).
    Write,
    /// Saving a local snapshot: the rename, the directory fsync, older snapshots removed.
    Save,
    /// Compacting the log: segment files removed one by one.
    Compact,
    /// Writing a received chunk of the leader's snapshot into the temporary file.
    Receive,
    /// Installing the leader's snapshot: saved, the log reset after it, superseded segments
    /// removed.
    Install,
}

impl SnapshotStep {
    /// Every step, in the order drawn from.
    pub const ALL: [SnapshotStep; 5] = [
        SnapshotStep::Write,
        SnapshotStep::Save,
        SnapshotStep::Compact,
        SnapshotStep::Receive,
        SnapshotStep::Install,
    ];
}

impl fmt::Display for SnapshotStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SnapshotStep::Write => "snapshot write",
            SnapshotStep::Save => "snapshot save",
            SnapshotStep::Compact => "compaction",
            SnapshotStep::Receive => "chunk receipt",
            SnapshotStep::Install => "snapshot install",
        })
    }
}

/// A membership change an operator plans, resolved against the configuration in force when it
/// is carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipIntent {
    /// Start a spare and add it as a learner.
    AddLearner,
    /// Start a spare and add it as a voter at once.
    AddVoter,
    /// Promote a learner to voter (refused while it is far behind: retried).
    Promote,
    /// Remove the leader itself (it hands over once the removal commits).
    RemoveLeader,
    /// Remove a voter that does not lead.
    RemoveFollower,
    /// Remove a learner.
    RemoveLearner,
    /// Replace a voter, one node at a time: start a spare, add it as a learner, promote it,
    /// then remove an old voter. Repeated, these replace a majority.
    Replace,
    /// Add two spares as voters and remove two voters in one change: joint consensus.
    JointReplace,
}

impl MembershipIntent {
    /// Every intent, in the order drawn from (replacements weigh double).
    pub const ALL: [MembershipIntent; 10] = [
        MembershipIntent::AddLearner,
        MembershipIntent::AddVoter,
        MembershipIntent::Promote,
        MembershipIntent::RemoveLeader,
        MembershipIntent::RemoveFollower,
        MembershipIntent::RemoveLearner,
        MembershipIntent::Replace,
        MembershipIntent::Replace,
        MembershipIntent::JointReplace,
        MembershipIntent::JointReplace,
    ];
}

impl fmt::Display for MembershipIntent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MembershipIntent::AddLearner => "add a spare as a learner",
            MembershipIntent::AddVoter => "add a spare as a voter",
            MembershipIntent::Promote => "promote a learner",
            MembershipIntent::RemoveLeader => "remove the leader",
            MembershipIntent::RemoveFollower => "remove a follower",
            MembershipIntent::RemoveLearner => "remove a learner",
            MembershipIntent::Replace => "replace a voter (learner, promotion, removal)",
            MembershipIntent::JointReplace => "replace two voters at once (joint consensus)",
        })
    }
}

/// The shape of a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// These nodes (fewer than half) cannot talk with the others.
    Minority(Vec<NodeId>),
    /// The target cannot talk with anybody.
    Isolate(Target),
    /// `left` and the other nodes cannot talk, except through `bridge`, which talks to all.
    Bridge {
        /// One side (the bridge is on neither).
        left: Vec<NodeId>,
        /// The node connected to both sides.
        bridge: NodeId,
    },
    /// The target can send but not receive (`inbound`), or receive but not send.
    OneWay {
        /// The node.
        target: Target,
        /// Whether the links into it are cut (else the links out of it).
        inbound: bool,
    },
    /// Each directed link among these is cut.
    Links(Vec<(NodeId, NodeId)>),
}

/// What goes wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The node crashes, losing everything not durable, and restarts after `down_for`.
    Crash {
        /// Who.
        target: Target,
        /// How long it stays down.
        down_for: Time,
    },
    /// The node stops processing (like SIGSTOP) for `paused_for`; its disk and the network
    /// carry on.
    Pause {
        /// Who.
        target: Target,
        /// How long.
        paused_for: Time,
    },
    /// A partition of `shape` for `lasts`.
    Partition {
        /// Its shape.
        shape: Shape,
        /// How long it lasts.
        lasts: Time,
    },
    /// The node's ticks come `per_mille` thousandths further apart (or closer when negative)
    /// until the heal phase.
    Skew {
        /// Who.
        node: NodeId,
        /// The new skew.
        per_mille: i64,
    },
    /// The node's disk completes no write for `lasts` (a stuck fsync): writes pile up behind
    /// it, and a crash meanwhile loses them all.
    DiskStall {
        /// Whose disk.
        target: Target,
        /// How long.
        lasts: Time,
    },
    /// Arms a trigger: the next node that grants a vote crashes right after the grant leaves,
    /// and restarts after `down_for`.
    CrashAfterVote {
        /// How long it stays down.
        down_for: Time,
    },
    /// Arms a trigger: the next `elections` nodes elected leader each crash `after` their
    /// election, and restart after `down_for`. A run of such crashes leaves entries of several
    /// terms on a few nodes each: the raw material of Figure 8.
    CrashAfterElected {
        /// How many elections the trigger stays armed for.
        elections: u32,
        /// How long after the election.
        after: Time,
        /// How long it stays down.
        down_for: Time,
    },
    /// A follower (the node after `fallback`, in id order, when `fallback` leads) is cut off
    /// from every other node for `lasts`: long enough, usually, that the leader takes snapshots
    /// and compacts its log past it, so that it can only catch up by installing a snapshot.
    Lag {
        /// The node struck, unless it leads.
        fallback: NodeId,
        /// How long it is cut off.
        lasts: Time,
    },
    /// An operator plans a membership change, carried out when the leader accepts it (see
    /// `operator.rs`).
    Membership(MembershipIntent),
    /// Only in seeds with lease reads: the clocks drift apart as far as the seed's drift bound
    /// covers (the leader's ticks `Parameters::lease_skew_per_mille` slower than nominal,
    /// everyone else's as much faster), and the leader is cut off from every other node for
    /// `lasts`. The others elect a new leader as early as their clocks let them, while clients
    /// still reading at the old leader find out whether its lease ended first (thesis §6.4.1).
    LeaseRace {
        /// How long the leader is cut off.
        lasts: Time,
    },
    /// An operator asks the leader to hand leadership over (thesis §3.10): to `target`, or with
    /// `None` to the most up-to-date voter. Not a fault, but it moves leadership at moments no
    /// failure would, while proposals are refused for its duration.
    Transfer {
        /// The node asked for (which may be the leader itself or no voter: then refused).
        target: Option<NodeId>,
    },
    /// Arms a trigger: the next node to reach `step` of a snapshot crashes in the middle of
    /// it (the power fails after a random number of its file-system operations, possibly none
    /// or all), and restarts after `down_for`. After the restart it must hold either the old
    /// state or the new one, never a mix.
    CrashInSnapshot {
        /// Where the crash strikes.
        step: SnapshotStep,
        /// How long the node stays down.
        down_for: Time,
    },
    /// Arms a trigger: the next `elections` nodes elected leader are each cut off from every
    /// other node `after` their election, for `lasts`. Unlike a crash, the new leader keeps
    /// its first entries (durable or not), orphans of its term that the others never see.
    IsolateAfterElected {
        /// How many elections the trigger stays armed for.
        elections: u32,
        /// How long after the election.
        after: Time,
        /// How long the isolation lasts.
        lasts: Time,
    },
}

impl FaultKind {
    /// The kinds in the order of `FaultParameters::weights`.
    pub const WEIGHT_ORDER: [&'static str; 13] = [
        "crash",
        "pause",
        "minority",
        "isolate",
        "bridge",
        "one-way",
        "skew",
        "trigger",
        "disk",
        "snapshot",
        "transfer",
        "membership",
        "lease-race",
    ];
}

/// One fault of the schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// When it strikes.
    pub time: Time,
    /// What it does.
    pub kind: FaultKind,
}

/// The faults of a run, in time order. A fault's position is its number (for `--faults`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultSchedule {
    /// The faults; `None` where one was left out.
    pub faults: Vec<Option<Fault>>,
}

impl FaultSchedule {
    /// The schedule of a run with `parameters`, drawn from `random`.
    pub fn generate(parameters: &Parameters, random: &mut Random) -> FaultSchedule {
        let nodes: Vec<NodeId> = (1..=parameters.universe()).map(NodeId).collect();
        let rates = &parameters.faults;
        let mut faults = Vec::new();
        if rates.weights.iter().all(|&weight| weight == 0) {
            return FaultSchedule { faults };
        }
        let mut time = Time::ZERO;
        loop {
            // Exponential gaps: faults arrive as a Poisson process.
            let gap = -(rates.mean_interval.0 as f64) * (1.0 - random.unit()).ln();
            time = time + Time(gap as u64);
            if time >= parameters.fault_phase {
                break;
            }
            let kind = match random.weighted(&rates.weights) {
                0 => FaultKind::Crash {
                    target: Self::target(random, &nodes),
                    down_for: Time(random.log_uniform(1_000, rates.down_max.0.max(1_000))),
                },
                1 => FaultKind::Pause {
                    target: Self::target(random, &nodes),
                    paused_for: Time(random.log_uniform(1_000, rates.pause_max.0.max(1_000))),
                },
                kind => {
                    if kind == 6 {
                        let node = random.pick(&nodes);
                        FaultKind::Skew { node, per_mille: random.between(0, 1001) as i64 - 500 }
                    } else if kind == 7 {
                        Self::trigger(random, parameters)
                    } else if kind == 8 {
                        let target = Self::target(random, &nodes);
                        let lasts = Time(random.log_uniform(1_000, rates.pause_max.0.max(1_000)));
                        FaultKind::DiskStall { target, lasts }
                    } else if kind == 9 {
                        let step = random.pick(&SnapshotStep::ALL);
                        let election = parameters.election_duration().0.max(1_000);
                        let down_for = Time(random.log_uniform(100, election.saturating_mul(4)));
                        FaultKind::CrashInSnapshot { step, down_for }
                    } else if kind == 10 {
                        let target = random.chance(0.7).then(|| random.pick(&nodes));
                        FaultKind::Transfer { target }
                    } else if kind == 11 {
                        FaultKind::Membership(random.pick(&MembershipIntent::ALL))
                    } else if kind == 12 {
                        let election = parameters.election_duration().0.max(1_000);
                        let lasts = Time(random.log_uniform(election * 2, election * 10));
                        FaultKind::LeaseRace { lasts }
                    } else {
                        let shape = Self::shape(random, &nodes, kind);
                        let lasts =
                            Time(random.log_uniform(1_000, rates.partition_max.0.max(1_000)));
                        FaultKind::Partition { shape, lasts }
                    }
                }
            };
            faults.push(Some(Fault { time, kind }));
        }
        // Lag faults come on their own: they last seconds, and as many as the others would be
        // a follower cut off for the whole run.
        for _ in 0..rates.lags {
            let time = Time(random.below(parameters.fault_phase.0.max(1)));
            let fallback = random.pick(&nodes);
            let lasts =
                Time(random.log_uniform(rates.lag_max.0.max(2) / 2, rates.lag_max.0.max(2)));
            faults.push(Some(Fault { time, kind: FaultKind::Lag { fallback, lasts } }));
        }
        faults.sort_by_key(|fault| fault.as_ref().map(|fault| fault.time));
        FaultSchedule { faults }
    }

    /// The leader half of the time, else a random node.
    fn target(random: &mut Random, nodes: &[NodeId]) -> Target {
        let node = random.pick(nodes);
        if random.chance(0.5) { Target::Leader { fallback: node } } else { Target::Node(node) }
    }

    /// One of the triggers. Crashes are short: the node should be back within the same
    /// election, when a forgotten vote can be cast again.
    fn trigger(random: &mut Random, parameters: &Parameters) -> FaultKind {
        let election = parameters.election_duration().0.max(1_000);
        let down_for = Time(random.log_uniform(100, election));
        // Soon after the election, often before the new leader's first entry is replicated.
        let round_trip = parameters.network.latency_max.times(2).0.max(2);
        let elections = random.between(1, 5) as u32;
        let after = Time(random.log_uniform(1, round_trip));
        match random.below(3) {
            0 => FaultKind::CrashAfterVote { down_for },
            1 => FaultKind::CrashAfterElected { elections, after, down_for },
            _ => {
                let lasts = Time(random.log_uniform(1_000, election.saturating_mul(8)));
                FaultKind::IsolateAfterElected { elections, after, lasts }
            }
        }
    }

    /// A partition shape of kind 2 (minority), 3 (isolate), 4 (bridge) or 5 (one-way); random
    /// link failures stand in for a bridge in clusters too small for one.
    fn shape(random: &mut Random, nodes: &[NodeId], kind: usize) -> Shape {
        let count = nodes.len();
        match kind {
            2 => {
                // Fewer than half: at least one node, even in clusters of one or two.
                let size = random.between(1, count.div_ceil(2).max(2) as u64) as usize;
                Shape::Minority(random.subset(nodes, size))
            }
            3 => Shape::Isolate(Self::target(random, nodes)),
            4 if count >= 3 && random.chance(0.7) => {
                let bridge = random.pick(nodes);
                let others: Vec<NodeId> = nodes.iter().copied().filter(|&n| n != bridge).collect();
                let size = random.between(1, others.len() as u64) as usize;
                Shape::Bridge { left: random.subset(&others, size), bridge }
            }
            4 => {
                let mut links = Vec::new();
                for &from in nodes {
                    for &to in nodes {
                        if from != to && random.chance(0.3) {
                            links.push((from, to));
                        }
                    }
                }
                Shape::Links(links)
            }
            _ => Shape::OneWay { target: Self::target(random, nodes), inbound: random.chance(0.5) },
        }
    }

    /// Leaves out every fault whose number is not in `keep`.
    pub fn keep_only(&mut self, keep: &BTreeSet<usize>) {
        for (number, fault) in self.faults.iter_mut().enumerate() {
            if !keep.contains(&number) {
                *fault = None;
            }
        }
    }

    /// The numbers of the faults still in the schedule.
    pub fn numbers(&self) -> BTreeSet<usize> {
        self.faults
            .iter()
            .enumerate()
            .filter_map(|(number, fault)| fault.as_ref().map(|_| number))
            .collect()
    }
}

impl Shape {
    /// The directed links the shape cuts, given the cluster and the node that leads (if any).
    pub fn links(&self, nodes: &[NodeId], leader: Option<NodeId>) -> Vec<(NodeId, NodeId)> {
        let both_ways = |inside: &[NodeId]| -> Vec<(NodeId, NodeId)> {
            let mut links = Vec::new();
            for &a in inside {
                for &b in nodes.iter().filter(|node| !inside.contains(node)) {
                    links.push((a, b));
                    links.push((b, a));
                }
            }
            links
        };
        match self {
            Shape::Minority(minority) => both_ways(minority),
            Shape::Isolate(target) => both_ways(&[target.resolve(leader)]),
            Shape::Bridge { left, bridge } => {
                let right: Vec<NodeId> =
                    nodes.iter().copied().filter(|n| n != bridge && !left.contains(n)).collect();
                let mut links = Vec::new();
                for &a in left {
                    for &b in &right {
                        links.push((a, b));
                        links.push((b, a));
                    }
                }
                links
            }
            Shape::OneWay { target, inbound } => {
                let node = target.resolve(leader);
                let others = nodes.iter().copied().filter(|&other| other != node);
                if *inbound {
                    others.map(|other| (other, node)).collect()
                } else {
                    others.map(|other| (node, other)).collect()
                }
            }
            Shape::Links(links) => links.clone(),
        }
    }
}

impl Target {
    /// The node struck, given the node that leads (if any).
    pub fn resolve(self, leader: Option<NodeId>) -> NodeId {
        match self {
            Target::Leader { fallback } => leader.unwrap_or(fallback),
            Target::Node(node) => node,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Leader { fallback } => write!(f, "the leader (else {fallback})"),
            Target::Node(node) => write!(f, "{node}"),
        }
    }
}

/// Nodes as `{n1,n2}`.
fn set(nodes: &[NodeId]) -> String {
    let names: Vec<String> = nodes.iter().map(NodeId::to_string).collect();
    format!("{{{}}}", names.join(","))
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Minority(minority) => write!(f, "minority {} cut off", set(minority)),
            Shape::Isolate(target) => write!(f, "{target} isolated"),
            Shape::Bridge { left, bridge } => {
                write!(f, "{} cut from the rest but {bridge}", set(left))
            }
            Shape::OneWay { target, inbound: true } => write!(f, "{target} cannot receive"),
            Shape::OneWay { target, inbound: false } => write!(f, "{target} cannot send"),
            Shape::Links(links) => {
                let names: Vec<String> = links.iter().map(|(a, b)| format!("{a}→{b}")).collect();
                write!(f, "links cut: {}", names.join(" "))
            }
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::Crash { target, down_for } => write!(f, "crash {target} for {down_for}"),
            FaultKind::Pause { target, paused_for } => write!(f, "pause {target} for {paused_for}"),
            FaultKind::Partition { shape, lasts } => write!(f, "partition: {shape}, for {lasts}"),
            FaultKind::Skew { node, per_mille } => write!(f, "skew {node}'s ticks by {per_mille}‰"),
            FaultKind::DiskStall { target, lasts } => {
                write!(f, "stall {target}'s disk for {lasts}")
            }
            FaultKind::CrashAfterVote { down_for } => {
                write!(f, "arm: crash the next voter after its grant, for {down_for}")
            }
            FaultKind::Lag { fallback, lasts } => {
                write!(f, "lag: cut off follower {fallback} (or the next, if it leads) for {lasts}")
            }
            FaultKind::Membership(intent) => write!(f, "membership: {intent}"),
            FaultKind::LeaseRace { lasts } => {
                write!(
                    f,
                    "lease race: skew the leader slow and the others fast, cut it off for {lasts}"
                )
            }
            FaultKind::Transfer { target: Some(target) } => {
                write!(f, "transfer leadership to {target}")
            }
            FaultKind::Transfer { target: None } => {
                write!(f, "transfer leadership to the most up-to-date voter")
            }
            FaultKind::CrashInSnapshot { step, down_for } => {
                write!(f, "arm: crash the next node in the middle of a {step}, for {down_for}")
            }
            FaultKind::IsolateAfterElected { elections, after, lasts } => write!(
                f,
                "arm: isolate each of the next {elections} leaders {after} after its election, \
                 for {lasts}"
            ),
            FaultKind::CrashAfterElected { elections, after, down_for } => write!(
                f,
                "arm: crash each of the next {elections} leaders {after} after its election, \
                 for {down_for}"
            ),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {}: {}", self.time, self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_deterministic_ordered_and_within_the_fault_phase() {
        for seed in 0..50 {
            let parameters = Parameters::from_seed(seed, None, Time::seconds(10));
            let a = FaultSchedule::generate(&parameters, &mut Random::new(seed));
            let b = FaultSchedule::generate(&parameters, &mut Random::new(seed));
            assert_eq!(a, b);
            let times: Vec<Time> = a.faults.iter().flatten().map(|fault| fault.time).collect();
            assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{times:?}");
            assert!(times.iter().all(|&time| time < parameters.fault_phase));
        }
    }

    #[test]
    fn shapes_cut_the_links_they_say() {
        let nodes: Vec<NodeId> = (1..=5).map(NodeId).collect();
        let minority = Shape::Minority(vec![NodeId(1), NodeId(2)]).links(&nodes, None);
        assert_eq!(minority.len(), 2 * 2 * 3);
        let bridge = Shape::Bridge { left: vec![NodeId(1)], bridge: NodeId(3) }.links(&nodes, None);
        assert!(!bridge.iter().any(|&(a, b)| a == NodeId(3) || b == NodeId(3)));
        assert_eq!(bridge.len(), 2 * 3);
        let leader = Target::Leader { fallback: NodeId(5) };
        let isolated = Shape::Isolate(leader).links(&nodes, Some(NodeId(2)));
        assert!(isolated.iter().all(|&(a, b)| a == NodeId(2) || b == NodeId(2)));
        let deaf =
            Shape::OneWay { target: Target::Node(NodeId(4)), inbound: true }.links(&nodes, None);
        assert!(deaf.iter().all(|&(_, to)| to == NodeId(4)) && deaf.len() == 4);
    }

    #[test]
    fn keeping_a_subset_keeps_the_numbers() {
        let parameters = Parameters::from_seed(3, None, Time::seconds(10));
        let mut schedule = FaultSchedule::generate(&parameters, &mut Random::new(1));
        let all = schedule.numbers();
        let keep: BTreeSet<usize> = all.iter().copied().step_by(2).collect();
        schedule.keep_only(&keep);
        assert_eq!(schedule.numbers(), keep);
        assert_eq!(schedule.faults.len(), all.len());
    }
}
