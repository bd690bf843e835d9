//! Everything a run is made of, drawn from its seed: the cluster, its timing, the network and
//! disk behaviour, the workload and the fault rates.
//!
//! Varying the world per seed, rather than only the fault schedule, is what makes a seed sweep
//! cover ground: some seeds run a 7-node cluster on a lossy network with pipelined appends of
//! 64 entries, others a 3-node cluster with a cache of zero bytes (every send and every apply
//! goes through `ReadEntries`), one entry per append and a window of one. Ranges are chosen to
//! reach the corners (a disk slower than the network, messages delayed past several election
//! timeouts, a tick rate skewed by a fifth) while keeping a seed of ten simulated seconds cheap.
//!
//! [`Parameters::describe`] prints the draw, so a failure report says what world it happened in.

use std::fmt::Write as _;

use crate::random::Random;
use crate::time::Time;

/// How the network behaves while faults are on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NetworkParameters {
    /// The smallest latency of a message.
    pub latency_min: Time,
    /// The largest latency of an ordinary message.
    pub latency_max: Time,
    /// The probability that a message is lost.
    pub loss: f64,
    /// The probability that a message is delivered twice.
    pub duplicate: f64,
    /// The probability that a message is slow: its latency is drawn from a heavy tail.
    pub slow: f64,
    /// The largest latency of a slow message.
    pub slow_max: Time,
}

/// How fast the disks are.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiskParameters {
    /// The smallest time a write takes to become durable.
    pub write_min: Time,
    /// The largest time an ordinary write takes.
    pub write_max: Time,
    /// The probability that a write stalls (a slow fsync).
    pub stall: f64,
    /// The largest time a stalled write takes.
    pub stall_max: Time,
    /// The largest time a read takes.
    pub read_max: Time,
    /// Whether a crash may keep unsynced sectors out of order (see
    /// `Options::reorder_sectors`, which sets it: it is not drawn).
    pub reorder_sectors: bool,
}

/// The clients and their habits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WorkloadParameters {
    /// How many clients issue operations.
    pub clients: u64,
    /// How many keys they share (few keys, many conflicts).
    pub keys: u64,
    /// The longest pause between an operation's end and the client's next invocation.
    pub think_max: Time,
    /// How long a client waits for one attempt before retrying elsewhere.
    pub attempt_timeout: Time,
    /// How long a client keeps retrying one operation before giving up on it.
    pub operation_deadline: Time,
    /// Relative weights of put, get, compare-and-swap and delete.
    pub mix: [u64; 4],
    /// Relative weights of the kinds of get, in the order of `ReadKind::ALL`: by ReadIndex at
    /// the leader, through a follower, under the leader's lease, stale.
    pub reads: [u64; 4],
}

/// When nodes take snapshots, how they move them, and how their logs are cut into files.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SnapshotParameters {
    /// A node takes a snapshot once it has applied this many entries since its latest (the
    /// server's `--snapshot-entries`).
    pub every: u64,
    /// Entries kept in the log behind each snapshot, for followers a little behind (the
    /// server's `--snapshot-catchup-entries`); 0 compacts right up to the snapshot.
    pub catchup: u64,
    /// The mean time between snapshots asked for on demand (`POST /v1/snapshot`) of a random
    /// node, if any are.
    pub on_demand: Option<Time>,
    /// The most bytes of a snapshot file one chunk of a transfer carries.
    pub chunk_bytes: usize,
    /// The probability that a chunk arrives damaged (a bit flipped in transit).
    pub chunk_damage: f64,
    /// How long a follower waits for a chunk before asking for it again.
    pub chunk_timeout: Time,
    /// The time it takes to write a snapshot's file, at most.
    pub write_max: Time,
    /// The size at which a log rolls to a new segment file (compaction deletes whole files).
    pub segment_bytes: u64,
}

/// How often faults strike and which kinds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultParameters {
    /// The mean time between two faults.
    pub mean_interval: Time,
    /// Relative weights of the fault kinds, in the order of `FaultKind::WEIGHT_ORDER`.
    pub weights: [u64; 13],
    /// The longest time a crashed node stays down.
    pub down_max: Time,
    /// The longest time a paused node stays paused.
    pub pause_max: Time,
    /// The longest time a partition lasts.
    pub partition_max: Time,
    /// How many lag faults strike (at random times of the fault phase, besides the others).
    pub lags: u64,
    /// The longest time a follower is cut off by a lag fault (long enough that the leader
    /// compacts past it, so that it needs a snapshot).
    pub lag_max: Time,
}

/// Everything drawn from one seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Parameters {
    /// The seed everything was drawn from.
    pub seed: u64,
    /// The number of nodes the cluster is founded with (its first voters): 3, 5 or 7.
    pub nodes: u64,
    /// The number of spare nodes, with ids after the founders', that membership changes may
    /// add (each starts empty and joins); a node removed is retired for good, so spares are also
    /// what replaces it.
    pub spares: u64,
    /// The core's bound on how far behind a learner may be and still be promoted.
    pub max_learner_lag: u64,
    /// Whether leaders serve lease reads (thesis §6.4.1). Seeds with leases have no pauses
    /// (a paused leader's clock stops while its lease runs out) and a drift bound that covers
    /// every tick-rate skew the seed can have.
    pub lease_reads: bool,
    /// The core's `clock_drift_bound`, in ticks: how much shorter than an election timeout a
    /// lease is.
    pub clock_drift_bound: u32,
    /// With lease reads, the largest tick-rate skew (in thousandths, either way) the drift
    /// bound covers: every skew the seed draws or a skew fault sets is within it, and a lease
    /// race skews the nodes by exactly as much. 0 without lease reads.
    pub lease_skew_per_mille: i64,
    /// The nominal time between two ticks of a node.
    pub tick: Time,
    /// Each node's tick-rate skew, in thousandths (+50: its ticks are 5% further apart), the
    /// spares' after the founders'.
    pub skew_per_mille: Vec<i64>,
    /// The core's minimum election timeout, in ticks.
    pub election_timeout: u32,
    /// The core's heartbeat interval, in ticks.
    pub heartbeat_interval: u32,
    /// Whether the core uses pre-vote.
    pub pre_vote: bool,
    /// Whether the core uses check-quorum.
    pub check_quorum: bool,
    /// The core's limit of entries per `Append`.
    pub max_append_entries: usize,
    /// The core's limit of bytes per `Append`.
    pub max_append_bytes: u64,
    /// The core's window of `Append`s in flight per follower.
    pub max_inflight_appends: usize,
    /// The core's entry cache, in bytes (0: every read goes to storage).
    pub max_cached_bytes: u64,
    /// The core's limit of bytes per `Apply`.
    pub max_apply_bytes: u64,
    /// Whether leaders send followers each new commit index at once (`Config::eager_commit`;
    /// set from `Options::lazy_commit`, not drawn).
    pub eager_commit: bool,
    /// The network.
    pub network: NetworkParameters,
    /// The disks.
    pub disk: DiskParameters,
    /// The workload.
    pub workload: WorkloadParameters,
    /// The faults.
    pub faults: FaultParameters,
    /// Snapshots, their transfers and the logs' segments.
    pub snapshots: SnapshotParameters,
    /// How long faults are injected before the heal phase.
    pub fault_phase: Time,
}

impl Parameters {
    /// The world of `seed`. `nodes` forces the cluster size when given; `fault_phase` is how
    /// long faults are injected.
    pub fn from_seed(seed: u64, nodes: Option<u64>, fault_phase: Time) -> Parameters {
        let mut random = Random::new(seed);
        let drawn_nodes = [3, 3, 3, 5, 5, 7][random.below(6) as usize];
        let nodes = nodes.unwrap_or(drawn_nodes);
        let network = Self::draw_network(&mut random);
        let disk = Self::draw_disk(&mut random);
        let election_timeout = random.between(4, 21) as u32;
        let heartbeat_interval =
            random.between(1, u64::from(election_timeout / 3).max(1) + 1) as u32;
        // Raft needs broadcast time << election timeout (§5.6): an election is two round trips
        // plus a durable vote. Ticks are stretched so that the minimum election timeout covers
        // that several times over even when every message takes the longest ordinary latency;
        // otherwise no election could ever finish and the liveness check would be meaningless.
        let election_round = network.latency_max.times(4) + disk.write_max.times(2);
        let shortest_tick = election_round.times(4).0 / u64::from(election_timeout);
        let tick = Time(random.log_uniform(2_000, 20_000).max(shortest_tick));
        let skewed = random.chance(0.5);
        let skew_per_mille = (0..nodes)
            .map(|_| if skewed { random.between(0, 301) as i64 - 150 } else { 0 })
            .collect();
        let election_duration = tick.times(u64::from(election_timeout));
        let attempt_timeout = election_duration.times(random.between(2, 7));
        let workload = WorkloadParameters {
            clients: random.between(1, 7),
            keys: random.between(1, 5),
            think_max: Time(random.log_uniform(500, 100_000)),
            attempt_timeout,
            operation_deadline: attempt_timeout.times(random.between(2, 6)),
            // The weight of deletes is drawn last, below.
            mix: [random.between(1, 5), random.between(1, 5), random.between(1, 5), 0],
            // Drawn at the very end, below.
            reads: [1, 0, 0, 0],
        };
        let faults = Self::draw_faults(&mut random, election_duration);
        let mut parameters = Parameters {
            seed,
            nodes,
            spares: 0,
            max_learner_lag: 1000,
            lease_reads: false,
            clock_drift_bound: 2,
            lease_skew_per_mille: 0,
            tick,
            skew_per_mille,
            election_timeout,
            heartbeat_interval,
            pre_vote: random.chance(0.8),
            check_quorum: random.chance(0.8),
            max_append_entries: random.pick(&[1, 3, 64]),
            max_append_bytes: random.pick(&[64, 1 << 20]),
            max_inflight_appends: random.pick(&[1, 2, 32]),
            max_cached_bytes: random.pick(&[0, 512, 16 << 20]),
            max_apply_bytes: random.pick(&[1, 1 << 20]),
            eager_commit: false,
            network,
            disk,
            workload,
            faults,
            snapshots: SnapshotParameters {
                every: 0,
                catchup: 0,
                on_demand: None,
                chunk_bytes: 0,
                chunk_damage: 0.0,
                chunk_timeout: Time::ZERO,
                write_max: Time::ZERO,
                segment_bytes: 0,
            },
            fault_phase,
        };
        // Drawn after everything else, so that adding deletes left every earlier draw of a seed
        // (cluster, timing, network, disks, faults) as it was. Some seeds delete nothing.
        parameters.workload.mix[3] = random.between(0, 3);
        // Snapshots and their faults came later still, and are drawn after the deletes.
        parameters.snapshots = Self::draw_snapshots(&mut random, &parameters);
        if parameters.faults.weights.iter().any(|&weight| weight > 0) {
            // Every seed with faults has some crashes inside snapshots, and most have a few
            // followers cut off for long.
            parameters.faults.weights[9] = random.pick(&[1, 1, 2]);
            parameters.faults.lags = random.pick(&[0, 1, 1, 2, 3]);
        }
        // Leadership transfers came after snapshots, and are drawn after them.
        if parameters.faults.weights.iter().any(|&weight| weight > 0) {
            parameters.faults.weights[10] = random.pick(&[0, 1, 1, 2]);
        }
        parameters.faults.lag_max = Time(random.log_uniform(1_000_000, 4_000_000));
        // Membership changes came after transfers, and are drawn after them. Seeds without
        // spares still remove nodes (and so shrink the cluster) when they change membership.
        parameters.spares = random.pick(&[0, 1, 2, 3, 4]);
        let skewed = parameters.skew_per_mille.iter().any(|&skew| skew != 0);
        for _ in 0..parameters.spares {
            let skew = if skewed { random.between(0, 301) as i64 - 150 } else { 0 };
            parameters.skew_per_mille.push(skew);
        }
        parameters.max_learner_lag = random.pick(&[0, 4, 64, 1000]);
        if parameters.faults.weights.iter().any(|&weight| weight > 0) {
            parameters.faults.weights[11] = random.pick(&[0, 1, 1, 2]);
        }
        // Reads of every kind came last.
        parameters.workload.reads = [
            random.between(1, 4),
            random.between(0, 3),
            random.between(0, 3),
            random.between(0, 2),
        ];
        // Leases need leader stickiness (check-quorum), no pauses (a paused process's clock
        // stops, which no drift bound covers) and a drift bound that covers the seed's skews:
        // those it drew, skew faults' (up to 500‰), or more, drawn here, for lease races.
        if parameters.check_quorum && random.chance(0.6) {
            let drawn = parameters.skew_per_mille.iter().map(|skew| skew.abs()).max().unwrap_or(0);
            let skew = if parameters.faults.weights[6] > 0 {
                500
            } else {
                random.pick(&[drawn, 300, 500]).max(drawn)
            };
            if let Some(bound) = drift_bound(parameters.election_timeout, skew) {
                parameters.lease_reads = true;
                parameters.clock_drift_bound = bound;
                parameters.lease_skew_per_mille = skew;
                parameters.faults.weights[1] = 0;
                // Gets, and lease reads among them, weigh enough that clients are reading at
                // the old leader when a race ends its lease.
                let workload = &mut parameters.workload;
                workload.reads[2] = workload.reads[2].max(workload.reads[0]);
                workload.mix[1] = workload.mix[1].max(workload.mix[0] + workload.mix[2]);
                if parameters.faults.weights.iter().any(|&weight| weight > 0) {
                    parameters.faults.weights[12] = random.pick(&[1, 1, 2]);
                }
            }
        }
        parameters
    }

    /// Every node id a run may use: the founders, then the spares.
    pub fn universe(&self) -> u64 {
        self.nodes + self.spares
    }

    /// The snapshot policy and transfers: from a snapshot every few entries with nothing kept
    /// behind it (every lagging follower needs a snapshot) to one every few hundred.
    fn draw_snapshots(random: &mut Random, parameters: &Parameters) -> SnapshotParameters {
        let every = random.log_uniform(2, 300);
        let catchup = match random.below(4) {
            0 | 1 => 0,
            2 => random.between(0, every + 1),
            _ => every * 2,
        };
        let on_demand = random.chance(0.5).then(|| Time(random.log_uniform(50_000, 3_000_000)));
        let network = &parameters.network;
        SnapshotParameters {
            every,
            catchup,
            on_demand,
            chunk_bytes: random.pick(&[16, 64, 256, 1 << 20]),
            chunk_damage: random.pick(&[0.0, 0.0, 0.01, 0.1]),
            chunk_timeout: network.latency_max.times(random.between(3, 9)),
            write_max: parameters.disk.write_max.times(random.between(1, 11)),
            segment_bytes: random.pick(&[256, 1024, 4096, 1 << 20]),
        }
    }

    /// The network's behaviour: from a quiet LAN to a lossy, jittery WAN.
    fn draw_network(random: &mut Random) -> NetworkParameters {
        let latency_min = Time(random.log_uniform(20, 2_000));
        let latency_max = latency_min.times(random.between(2, 21));
        NetworkParameters {
            latency_min,
            latency_max,
            loss: random.pick(&[0.0, 0.0, 0.001, 0.01, 0.05, 0.2]),
            duplicate: random.pick(&[0.0, 0.0, 0.01, 0.05]),
            slow: random.pick(&[0.0, 0.001, 0.01, 0.05]),
            slow_max: Time(random.log_uniform(100_000, 3_000_000)),
        }
    }

    /// The disks' behaviour: from fast SSDs to fsyncs that stall for up to a second.
    fn draw_disk(random: &mut Random) -> DiskParameters {
        let write_min = Time(random.log_uniform(10, 1_000));
        DiskParameters {
            write_min,
            write_max: write_min.times(random.between(2, 51)),
            stall: random.pick(&[0.0, 0.001, 0.01, 0.05]),
            stall_max: Time(random.log_uniform(10_000, 1_000_000)),
            read_max: Time(random.log_uniform(10, 5_000)),
            // The default of `Options`, which the runner applies: no draw, so that the option
            // leaves the rest of the world as it was.
            reorder_sectors: true,
        }
    }

    /// Fault rates and the mix of kinds: a few seeds are fault-free, most favour some kinds.
    fn draw_faults(random: &mut Random, election_duration: Time) -> FaultParameters {
        let mut weights = [0; 13];
        if !random.chance(0.05) {
            // The last ones (crashes in snapshots, leadership transfers) are drawn at the very
            // end of the seed.
            for weight in &mut weights[..9] {
                *weight = random.pick(&[0, 1, 1, 3]);
            }
            // Triggers strike where it matters (right after a vote, right after an election),
            // so every seed with faults has some.
            weights[7] = weights[7].max(1);
        }
        FaultParameters {
            mean_interval: Time(random.log_uniform(20_000, 1_000_000)),
            weights,
            down_max: Time(random.log_uniform(election_duration.0.max(1), 4_000_000)),
            pause_max: Time(random.log_uniform(election_duration.0.max(1), 3_000_000)),
            partition_max: Time(random.log_uniform(election_duration.0.max(1), 5_000_000)),
            lags: 0,
            lag_max: Time::ZERO,
        }
    }

    /// The time one minimum election timeout takes at the nominal tick rate.
    pub fn election_duration(&self) -> Time {
        self.tick.times(u64::from(self.election_timeout))
    }

    /// A few lines describing the draw, for failure reports and `--trace`.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        let network = &self.network;
        let disk = &self.disk;
        let workload = &self.workload;
        let faults = &self.faults;
        let _ = writeln!(
            text,
            "cluster: {} nodes and {} spares (learners promoted within {} entries), tick {}, skew \
             {:?}‰, election timeout {} ticks, heartbeat {} ticks, pre-vote {}, check-quorum {}",
            self.nodes,
            self.spares,
            self.max_learner_lag,
            self.tick,
            self.skew_per_mille,
            self.election_timeout,
            self.heartbeat_interval,
            self.pre_vote,
            self.check_quorum
        );
        let _ = writeln!(
            text,
            "reads: lease reads {} (drift bound {} ticks, covering skews up to {}‰), kinds \
             read-index/follower/lease/stale {:?}",
            self.lease_reads,
            self.clock_drift_bound,
            self.lease_skew_per_mille,
            self.workload.reads
        );
        let _ = writeln!(
            text,
            "flow: {} entries / {} bytes per append, window {}, cache {} bytes, apply {} bytes, \
             commit sent at once {}",
            self.max_append_entries,
            self.max_append_bytes,
            self.max_inflight_appends,
            self.max_cached_bytes,
            self.max_apply_bytes,
            self.eager_commit
        );
        let _ = writeln!(
            text,
            "network: latency {}..{}, loss {}, duplicate {}, slow {} up to {}",
            network.latency_min,
            network.latency_max,
            network.loss,
            network.duplicate,
            network.slow,
            network.slow_max
        );
        let _ = writeln!(
            text,
            "disk: write {}..{}, stall {} up to {}, read up to {}, sectors reordered in crashes {}",
            disk.write_min,
            disk.write_max,
            disk.stall,
            disk.stall_max,
            disk.read_max,
            disk.reorder_sectors
        );
        let _ = writeln!(
            text,
            "workload: {} clients, {} keys, think up to {}, attempt timeout {}, deadline {}, \
             mix put/get/cas/delete {:?}",
            workload.clients,
            workload.keys,
            workload.think_max,
            workload.attempt_timeout,
            workload.operation_deadline,
            workload.mix
        );
        let snapshots = &self.snapshots;
        let _ = writeln!(
            text,
            "snapshots: every {} entries, {} kept behind, on demand {}, chunks of {} bytes \
             ({} damaged, timeout {}), written in up to {}, segments of {} bytes",
            snapshots.every,
            snapshots.catchup,
            snapshots.on_demand.map_or("never".to_string(), |mean| format!("every {mean}")),
            snapshots.chunk_bytes,
            snapshots.chunk_damage,
            snapshots.chunk_timeout,
            snapshots.write_max,
            snapshots.segment_bytes
        );
        let _ = write!(
            text,
            "faults: every {} on average for {}, weights {:?}, down up to {}, paused up to {}, \
             partitioned up to {}, {} followers lagging up to {}",
            faults.mean_interval,
            self.fault_phase,
            faults.weights,
            faults.down_max,
            faults.pause_max,
            faults.partition_max,
            faults.lags,
            faults.lag_max
        );
        text
    }
}

/// The smallest drift bound that keeps leases safe with tick rates up to `skew` thousandths
/// off nominal either way, for an election timeout of `timeout` ticks, if one shorter than the
/// timeout does. A lease lasts `timeout - bound` of the leader's ticks from the send of a
/// heartbeat round (a round sent between two ticks counts from the earlier one: up to one tick
/// more); a follower that answered it ignores vote requests until `timeout` of its own ticks
/// have passed since its receipt, the first of which may come at once: `timeout - 1` whole
/// ticks. The lease must end first even with the leader's ticks slowest and the follower's
/// fastest: `(timeout - bound + 1) (1 + s) <= (timeout - 1) (1 - s)`.
fn drift_bound(timeout: u32, skew: i64) -> Option<u32> {
    let skew = skew.unsigned_abs().min(999);
    let timeout = u64::from(timeout);
    let protected = (timeout - 1) * (1000 - skew) / (1000 + skew);
    let bound = (timeout + 1).checked_sub(protected)?;
    (bound < timeout).then_some(bound as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_determines_the_world_and_seeds_differ() {
        let a = Parameters::from_seed(9, None, Time::seconds(10));
        assert_eq!(a, Parameters::from_seed(9, None, Time::seconds(10)));
        assert_ne!(a, Parameters::from_seed(10, None, Time::seconds(10)));
        assert!([3, 5, 7].contains(&a.nodes));
        assert!(a.heartbeat_interval < a.election_timeout);
        assert_eq!(Parameters::from_seed(9, Some(5), Time::seconds(1)).nodes, 5);
    }

    #[test]
    fn seeds_cover_every_cluster_size() {
        let sizes: std::collections::BTreeSet<u64> =
            (0..100).map(|seed| Parameters::from_seed(seed, None, Time::ZERO).nodes).collect();
        assert_eq!(sizes.into_iter().collect::<Vec<_>>(), vec![3, 5, 7]);
    }

    #[test]
    fn the_drift_bound_ends_every_lease_before_a_follower_may_vote() {
        // No skew: the lease ends a tick before the slowest follower's stickiness can.
        assert_eq!(drift_bound(10, 0), Some(2));
        // Too much skew for so short a timeout: no lease at all.
        assert_eq!(drift_bound(6, 500), None);
        for timeout in 4..=20 {
            for skew in [0, 1, 50, 150, 300, 500] {
                let Some(bound) = drift_bound(timeout, skew) else { continue };
                assert!(bound < timeout, "timeout {timeout}, skew {skew}: bound {bound}");
                let (timeout, bound, skew) = (u64::from(timeout), u64::from(bound), skew as u64);
                let lease_at_slowest = (timeout - bound + 1) * (1000 + skew);
                let sticky_at_fastest = (timeout - 1) * (1000 - skew);
                assert!(lease_at_slowest <= sticky_at_fastest, "timeout {timeout}, skew {skew}");
            }
        }
    }
}
