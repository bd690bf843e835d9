//! The runner: one seed, one run, from the first tick to the verdict.
//!
//! A run has three phases. In the **fault phase** (ten simulated seconds by default) the clients
//! run their workload while the fault schedule and the network's rates do their worst. At the
//! **heal**, every fault is removed: crashed nodes restart, paused ones resume, partitions heal,
//! the network stops losing, duplicating and stalling messages. The cluster must then elect a
//! leader and commit a fresh entry (a probe the runner proposes to whoever leads) within a
//! bound: that is the liveness check. Then the clients finish what they have open (the
//! **drain**), and the history they recorded must be linearizable.
//!
//! Everything happens as events on one queue ordered by simulated time (see `queue.rs`); the
//! safety invariants (see `invariants.rs`) are checked after every event, and so is the amount
//! of work pending: a livelock that makes nodes exchange messages as fast as they can shows up
//! as a storm of events at one instant of simulated time. The first violation stops the run.

use std::collections::{BTreeMap, BTreeSet};

use skiff_raft::{Index, Message, NodeId, Payload, ReadRequest, RoleKind, Term};

use crate::driver::{Input, SimNode};
use crate::faults::FaultSchedule;
use crate::faults::SnapshotStep;
use crate::invariants::{Checker, Electable, Invariant, Observation, Violation};
use crate::linearizability::{CheckError, check_with_budget};
use crate::network::Network;
use crate::operator::Operator;
use crate::parameters::Parameters;
use crate::queue::EventQueue;
use crate::random::Random;
use crate::report::{Failure, Outcome, Stats};
use crate::sabotage::Defect;
use crate::snapshot::ChunkReply;
use crate::state_machine;
use crate::time::Time;
use crate::trace::{Trace, TraceMode, trace};
use crate::workload::{LEASE_PROBER, Next, Reply, Request, Workload, show_event};

/// How long faults are injected unless told otherwise.
pub const DEFAULT_FAULT_PHASE: Time = Time::seconds(10);

/// Events that may be pending at once. A healthy run has a few thousand (messages in flight,
/// ticks, timers); far more means nodes exchange messages faster than anything drives them.
const MAX_PENDING_EVENTS: usize = 200_000;

/// Events one simulated millisecond may hold. A healthy run averages a few dozen, and even a
/// 7-node catch-up burst stays in the hundreds; a storm of messages feeding on duplicates
/// passes this within a few hundred simulated milliseconds.
const MAX_EVENTS_PER_MILLISECOND: u64 = 20_000;

/// Search steps allowed per key when checking a history; a key that needs more is reported
/// as inconclusive, not as a violation.
const LINEARIZABILITY_BUDGET: u64 = 2_000_000;

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The seed everything is drawn from.
    pub seed: u64,
    /// A deliberate defect to switch on (the self-test), if any.
    pub defect: Option<Defect>,
    /// Force the cluster size instead of drawing it.
    pub nodes: Option<u64>,
    /// How long faults are injected before the heal.
    pub fault_phase: Time,
    /// What the trace keeps.
    pub trace: TraceMode,
    /// Run only these faults of the schedule (by number), if given: for shrinking and replays.
    pub keep_faults: Option<BTreeSet<usize>>,
    /// Whether a crash may keep a disk's unsynced writes out of order, each 512-byte sector
    /// kept or lost on its own (skiff-wal's `Faults::reorder_sectors`), as a disk writing back
    /// pages overwritten in place may; otherwise it keeps a prefix of them, torn at any byte.
    /// On by default. Not drawn from the seed but chosen, because it changes the run of every
    /// seed with a crash: seeds found before it existed replay only with it off.
    pub reorder_sectors: bool,
    /// Whether leaders let a new commit index ride on the next `Append` or heartbeat, as the
    /// server's do (`Config::eager_commit` off), rather than send it at once. On by default.
    /// Chosen, not drawn, for the same reason as `reorder_sectors`: seeds found before it
    /// existed replay only with it off.
    pub lazy_commit: bool,
}

impl Options {
    /// Seed `seed` with every default: no defect, drawn cluster size, ten seconds of faults, no
    /// trace, the whole fault schedule, sectors reordered in crashes, commit indexes sent lazily.
    pub fn new(seed: u64) -> Options {
        Options {
            seed,
            defect: None,
            nodes: None,
            fault_phase: DEFAULT_FAULT_PHASE,
            trace: TraceMode::Off,
            keep_faults: None,
            reorder_sectors: true,
            lazy_commit: true,
        }
    }
}

/// Something that happens at a point in simulated time.
#[derive(Clone, Debug)]
pub(crate) enum Event {
    /// A node's clock ticks (ignored if the node restarted since it was scheduled).
    Tick { node: NodeId, incarnation: u64 },
    /// A message between nodes arrives.
    Deliver(Packet),
    /// The oldest pending write of a node's disk becomes durable.
    DiskDone { node: NodeId, incarnation: u64 },
    /// A read of a node's storage completes.
    ReadDone { node: NodeId, incarnation: u64, request: ReadRequest },
    /// A client's request arrives at a node.
    ToNode { node: NodeId, request: Request },
    /// A node's answer arrives at a client.
    ToClient(Reply),
    /// A client wakes up (to invoke, or to retry after a back-off).
    ClientWake { client: u64, token: u64 },
    /// A client's attempt times out.
    ClientTimeout { client: u64, sequence: u64, attempt: u64 },
    /// Fault number `n` of the schedule strikes.
    Fault(usize),
    /// Partition `n` (numbered as partitions start) heals.
    Undo(u64),
    /// A node crashed or paused by fault `fault` restarts or resumes.
    Recover { node: NodeId, fault: usize },
    /// A trigger of fault `fault` strikes `node`.
    Triggered { node: NodeId, fault: usize },
    /// The heal: every fault is removed.
    Heal,
    /// Propose a fresh entry to the leader, if the liveness check still waits for one.
    Probe,
    /// The liveness check's deadline.
    LivenessDeadline,
    /// The clients are done: a quiet period starts, in which only heartbeats should flow.
    Quiet,
    /// A snapshot is asked for on demand of a node (as `POST /v1/snapshot` asks).
    SnapshotNow { node: NodeId },
    /// A node's local snapshot file is written (ignored if the node restarted since).
    SnapshotWritten { node: NodeId, incarnation: u64 },
    /// A chunk request of a node's fetch went unanswered (ignored if the node restarted since).
    ChunkTimeout { node: NodeId, incarnation: u64, fetch: u64, attempt: u64 },
    /// The operator's turn to carry out membership changes.
    Operator,
    /// During a lease race, a lease read asked of the old leader `node` (the next follows a
    /// tick later, until `until`).
    LeaseProbe { node: NodeId, until: Time, sequence: u64 },
    /// A node removed from the cluster is stopped for good.
    Retire { node: NodeId },
    /// The end of the run.
    End,
}

/// A message between nodes.
#[derive(Clone, Debug)]
pub(crate) enum Packet {
    /// A Raft message.
    Raft(Message),
    /// A client request forwarded by `from` to the leader `to`.
    Forward { from: NodeId, to: NodeId, request: Request },
    /// `from` asks `to` for the chunk of `to`'s snapshot at `index` starting at `offset`, for
    /// its fetch `fetch`.
    ChunkRequest { from: NodeId, to: NodeId, fetch: u64, index: Index, offset: u64 },
    /// `from`'s answer to a chunk request of `to`'s fetch `fetch`.
    Chunk { from: NodeId, to: NodeId, fetch: u64, offset: u64, reply: ChunkReply },
}

impl Packet {
    /// The sender and receiver.
    pub(crate) fn link(&self) -> (NodeId, NodeId) {
        match self {
            Packet::Raft(message) => (message.from, message.to),
            Packet::Forward { from, to, .. }
            | Packet::ChunkRequest { from, to, .. }
            | Packet::Chunk { from, to, .. } => (*from, *to),
        }
    }
}

/// A whole simulated run.
#[derive(Debug)]
pub struct Simulation {
    /// The world drawn from the seed.
    pub(crate) parameters: Parameters,
    /// The defect switched on, if any.
    pub(crate) defect: Option<Defect>,
    /// The current simulated time.
    pub(crate) now: Time,
    /// What happens next.
    pub(crate) queue: EventQueue<Event>,
    /// The cluster's ids, in order.
    pub(crate) ids: Vec<NodeId>,
    /// The nodes with their drivers.
    pub(crate) nodes: BTreeMap<NodeId, SimNode>,
    /// The network.
    pub(crate) network: Network,
    /// The disks' random choices (latencies).
    pub(crate) disk_random: Random,
    /// The probability that a write stalls, in force (zero after the heal).
    pub(crate) disk_stall: f64,
    /// The clients.
    pub(crate) workload: Workload,
    /// The faults.
    pub(crate) schedule: FaultSchedule,
    /// The links each active partition cuts, by partition number.
    pub(crate) partitions: BTreeMap<u64, Vec<(NodeId, NodeId)>>,
    /// The number of the next partition.
    pub(crate) next_partition: u64,
    /// An armed crash-after-vote trigger: its fault number.
    pub(crate) armed_vote: Option<usize>,
    /// An armed crash-after-election trigger: its fault number, the delay, and how many more
    /// elections it fires for.
    pub(crate) armed_elected: Option<(usize, Time, u32)>,
    /// An armed crash-in-snapshot trigger: its fault number, the step, the time down.
    pub(crate) armed_snapshot: Option<(usize, SnapshotStep, Time)>,
    /// The probability that a chunk is damaged in transit, in force (zero after the heal).
    pub(crate) chunk_damage: f64,
    /// The random choices of snapshots on demand (which node, when).
    pub(crate) snapshot_random: Random,
    /// The operator of membership changes.
    pub(crate) operator: Operator,
    /// The operator's random choices (which node to remove).
    pub(crate) operator_random: Random,
    /// Whether the heal happened.
    pub(crate) healed: bool,
    /// When the liveness probe committed, once it did.
    pub(crate) live_at: Option<Time>,
    /// The number of probes proposed.
    pub(crate) probes: u64,
    /// Where each probe went in its leader's log: (index, term).
    pub(crate) probe_entries: Vec<(Index, Term)>,
    /// The invariant checker.
    pub(crate) checker: Checker,
    /// The trace.
    pub(crate) trace: Trace,
    /// The first violation, which ends the run.
    pub(crate) failure: Option<Failure>,
    /// Counts for the summary.
    pub(crate) stats: Stats,
    /// How many history events are in the trace already.
    pub(crate) history_traced: usize,
    /// When the quiet period started, once it did.
    pub(crate) quiet_since: Option<Time>,
    /// The simulated millisecond whose events `events_this_millisecond` counts.
    millisecond: u64,
    /// Events handled in that millisecond.
    events_this_millisecond: u64,
}

/// Runs one seed to its verdict.
pub fn run(options: &Options) -> Outcome {
    let mut simulation = Simulation::new(options);
    simulation.start();
    simulation.run_events();
    simulation.finish()
}

impl Simulation {
    /// A cluster and its world, before the first event.
    pub(crate) fn new(options: &Options) -> Simulation {
        let mut parameters =
            Parameters::from_seed(options.seed, options.nodes, options.fault_phase);
        parameters.disk.reorder_sectors = options.reorder_sectors;
        parameters.eager_commit = !options.lazy_commit;
        // Independent streams, forked in a fixed order (see `random.rs`).
        let mut root = Random::new(options.seed ^ 0xF0F0_0000_0000_0001);
        let mut fault_random = root.fork();
        let network_random = root.fork();
        let disk_random = root.fork();
        let workload_random = root.fork();
        let node_random = root.fork();
        // Forked last, so that adding it left the streams before it as they were.
        let snapshot_random = root.fork();
        let operator_random = root.fork();
        let mut schedule = FaultSchedule::generate(&parameters, &mut fault_random);
        if let Some(keep) = &options.keep_faults {
            schedule.keep_only(keep);
        }
        let ids: Vec<NodeId> = (1..=parameters.universe()).map(NodeId).collect();
        let founders: Vec<NodeId> = (1..=parameters.nodes).map(NodeId).collect();
        let nodes = ids
            .iter()
            .map(|&id| {
                let random = node_random.clone();
                (id, SimNode::new(id, &founders, &parameters, options.defect, random))
            })
            .collect();
        Simulation {
            network: Network::new(parameters.network, network_random),
            disk_random,
            disk_stall: parameters.disk.stall,
            workload: Workload::new(parameters.workload, ids.clone(), workload_random),
            schedule,
            partitions: BTreeMap::new(),
            next_partition: 0,
            armed_vote: None,
            armed_elected: None,
            armed_snapshot: None,
            chunk_damage: parameters.snapshots.chunk_damage,
            snapshot_random,
            operator: Operator::default(),
            operator_random,
            healed: false,
            live_at: None,
            probes: 0,
            probe_entries: Vec::new(),
            checker: Checker::new(),
            trace: Trace::new(options.trace),
            failure: None,
            stats: Stats::default(),
            history_traced: 0,
            quiet_since: None,
            millisecond: 0,
            events_this_millisecond: 0,
            defect: options.defect,
            now: Time::ZERO,
            queue: EventQueue::new(),
            ids,
            nodes,
            parameters,
        }
    }

    /// Schedules the first events: every node's first tick, the clients, the faults, the heal.
    pub(crate) fn start(&mut self) {
        trace!(
            self.trace,
            self.now,
            "seed {}{}",
            self.parameters.seed,
            match self.defect {
                Some(defect) => format!(" with defect {defect}"),
                None => String::new(),
            }
        );
        if self.trace.on() {
            for line in self.parameters.describe().lines() {
                self.trace.line(self.now, format_args!("{line}"));
            }
        }
        for id in self.ids.clone() {
            if self.nodes[&id].core.is_some() {
                self.start_ticking(id);
            }
        }
        for (client, next) in self.workload.start(self.now) {
            self.client_next(client, next);
        }
        let faults: Vec<(usize, Time)> = self
            .schedule
            .faults
            .iter()
            .enumerate()
            .filter_map(|(number, fault)| fault.as_ref().map(|fault| (number, fault.time)))
            .collect();
        for (number, time) in faults {
            self.queue.push(time, Event::Fault(number));
        }
        self.queue.push(self.parameters.fault_phase, Event::Heal);
        if self.parameters.snapshots.on_demand.is_some() {
            // The first request finds nothing applied yet; it schedules the next.
            let first = self.snapshot_random.pick(&self.ids);
            self.queue.push(Time::ZERO, Event::SnapshotNow { node: first });
        }
    }

    /// The event loop: until the end, or the first violation.
    fn run_events(&mut self) {
        while self.failure.is_none() {
            let Some((time, event)) = self.queue.pop() else { break };
            assert!(time >= self.now, "time goes backwards: {} -> {time}", self.now);
            self.now = time;
            self.stats.events += 1;
            if matches!(event, Event::End) {
                break;
            }
            self.handle(event);
            if self.failure.is_none() {
                self.check_step();
            }
            if self.now.0 / 1_000 != self.millisecond {
                self.millisecond = self.now.0 / 1_000;
                self.events_this_millisecond = 0;
            }
            self.events_this_millisecond += 1;
            if self.events_this_millisecond > MAX_EVENTS_PER_MILLISECOND
                || self.queue.len() > MAX_PENDING_EVENTS
            {
                let detail = format!(
                    "a message storm: {} events in one simulated millisecond, {} pending ({})",
                    self.events_this_millisecond,
                    self.queue.len(),
                    self.cluster_summary()
                );
                self.fail(Violation::new(Invariant::BoundedWork, detail));
            }
        }
    }

    /// Handles one event.
    pub(crate) fn handle(&mut self, event: Event) {
        match event {
            Event::Tick { node, incarnation } => self.tick(node, incarnation),
            Event::Deliver(packet) => self.deliver(packet),
            Event::DiskDone { node, incarnation } => self.disk_done(node, incarnation),
            Event::ReadDone { node, incarnation, request } => {
                self.read_done(node, incarnation, request);
            }
            Event::ToNode { node, request } => self.client_request(node, request),
            Event::ToClient(reply) => {
                trace!(
                    self.trace,
                    self.now,
                    "{} → c{} {} (c{}.{} attempt {})",
                    reply.from,
                    reply.client,
                    reply.answer,
                    reply.client,
                    reply.sequence,
                    reply.attempt
                );
                let next = self.workload.reply(reply, self.now);
                self.client_next(reply.client, next);
            }
            Event::ClientWake { client, token } => {
                let next = self.workload.wake(client, token, self.now);
                self.client_next(client, next);
            }
            Event::ClientTimeout { client, sequence, attempt } => {
                let next = self.workload.timeout(client, sequence, attempt, self.now);
                if next != Next::Wait {
                    trace!(
                        self.trace,
                        self.now, "c{client} timeout (c{client}.{sequence} attempt {attempt})"
                    );
                }
                self.client_next(client, next);
            }
            Event::Fault(number) => self.strike(number),
            Event::Undo(number) => self.undo(number),
            Event::Recover { node, fault } => self.recover(node, fault),
            Event::Triggered { node, fault } => self.triggered(node, fault),
            Event::Heal => self.heal(),
            Event::Probe => self.probe(),
            Event::LivenessDeadline => {
                if self.live_at.is_none() {
                    let detail = format!(
                        "no fresh entry committed within {} of the heal ({})",
                        self.now - self.parameters.fault_phase,
                        self.cluster_summary()
                    );
                    self.fail(Violation::new(Invariant::Liveness, detail));
                }
            }
            Event::Quiet => self.quiet(),
            Event::SnapshotNow { node } => self.snapshot_on_demand(node),
            Event::SnapshotWritten { node, incarnation } => {
                if self.nodes[&node].incarnation == incarnation {
                    self.input(node, Input::SnapshotWritten);
                }
            }
            Event::ChunkTimeout { node, incarnation, fetch, attempt } => {
                if self.nodes[&node].incarnation == incarnation {
                    self.input(node, Input::ChunkTimeout { fetch, attempt });
                }
            }
            Event::Operator => self.operate(),
            Event::Retire { node } => self.retire(node),
            Event::LeaseProbe { node, until, sequence } => self.lease_probe(node, until, sequence),
            Event::End => {}
        }
    }

    /// Acts on what a client wants next.
    pub(crate) fn client_next(&mut self, client: u64, next: Next) {
        self.record_history();
        match next {
            Next::Wait => {}
            Next::Wake { time, token } => {
                self.queue.push(time, Event::ClientWake { client, token })
            }
            Next::Send { to, request, timeout } => {
                let Request { sequence, attempt, operation, .. } = request;
                trace!(
                    self.trace,
                    self.now,
                    "c{client} → {to} {operation} (c{client}.{sequence} attempt {attempt})"
                );
                self.queue.push(timeout, Event::ClientTimeout { client, sequence, attempt });
                if let Some(latency) = self.network.route_client() {
                    self.queue.push(self.now + latency, Event::ToNode { node: to, request });
                }
            }
        }
        if self.live_at.is_some() && self.workload.idle() {
            self.queue.push(self.now, Event::Quiet);
        }
    }

    /// Traces history events added since the last call.
    fn record_history(&mut self) {
        if !self.trace.on() {
            return;
        }
        let events = &self.workload.history().events;
        for event in &events[self.history_traced..] {
            self.trace.line(self.now, format_args!("{}", show_event(event)));
        }
        self.history_traced = events.len();
    }

    /// Sends a node's answer to a client (the lease prober's are dropped: the read was
    /// checked as it was served).
    pub(crate) fn reply(&mut self, reply: Reply) {
        if reply.client == LEASE_PROBER {
            return;
        }
        if let Some(latency) = self.network.route_client() {
            self.queue.push(self.now + latency, Event::ToClient(reply));
        }
    }

    /// The heal: removes every fault and starts the liveness check.
    fn heal(&mut self) {
        trace!(self.trace, self.now, "heal: every fault removed");
        self.healed = true;
        self.armed_vote = None;
        self.armed_elected = None;
        self.armed_snapshot = None;
        self.chunk_damage = 0.0;
        self.network.heal();
        self.partitions.clear();
        self.disk_stall = 0.0;
        for id in self.ids.clone() {
            let node = &self.nodes[&id];
            if node.core.is_none() {
                self.restart(id);
            } else if node.paused {
                self.resume(id);
            }
            let node = self.nodes.get_mut(&id).expect("a node of the cluster");
            node.skew = self.parameters.skew_per_mille[id.0 as usize - 1];
            node.disk_stalled_until = Time::ZERO;
        }
        let election = self.parameters.election_duration();
        let bound = Time::seconds(2) + election.times(30);
        self.queue.push(self.now, Event::Probe);
        self.queue.push(self.now + bound, Event::LivenessDeadline);
    }

    /// Proposes a fresh entry to the leader (the highest-term one) until one commits.
    fn probe(&mut self) {
        if self.live_at.is_some() || self.failure.is_some() {
            return;
        }
        if let Some(leader) = self.leader() {
            self.probes += 1;
            let probe = format!("probe.{}", self.probes);
            self.propose_probe(leader, probe);
        }
        let retry = self.parameters.election_duration();
        self.queue.push(self.now + retry, Event::Probe);
    }

    /// A probe committed (some node's commit index reached it): the cluster is live. Clients finish what they have open.
    pub(crate) fn probe_committed(&mut self) {
        if self.live_at.is_some() {
            return;
        }
        self.live_at = Some(self.now);
        trace!(
            self.trace,
            self.now,
            "live: a fresh entry committed {} after the heal",
            self.now - self.parameters.fault_phase
        );
        self.workload.stop();
        let drain =
            self.parameters.workload.operation_deadline + self.parameters.workload.attempt_timeout;
        self.queue.push(self.now + drain, Event::End);
        if self.workload.idle() {
            self.queue.push(self.now, Event::End);
        }
    }

    /// Starts the quiet period (once): no clients, no faults, so the traffic must be heartbeats.
    fn quiet(&mut self) {
        if self.quiet_since.is_some() {
            return;
        }
        self.workload.finish(self.now);
        self.quiet_since = Some(self.now);
        self.stats.quiet_probes = 0;
        let length = self.parameters.election_duration().times(4);
        trace!(self.trace, self.now, "quiet for {length}: only heartbeats should flow");
        self.queue.push(self.now + length, Event::End);
    }

    /// The quiet period's verdict: empty `Append`s are probes, at most one per follower per
    /// heartbeat answer, or commit-index news, and the commit index does not move while no one
    /// proposes. Many more means a livelock of probes.
    fn check_quiet(&mut self) {
        let Some(since) = self.quiet_since else { return };
        let heartbeat = self.parameters.tick.times(u64::from(self.parameters.heartbeat_interval));
        let rounds = (self.now - since).0.div_ceil(heartbeat.0.max(1));
        let allowance = 3 * (self.parameters.nodes - 1) * rounds + 20;
        if self.stats.quiet_probes > allowance {
            let detail = format!(
                "the idle cluster sent {} empty Appends in {} ({} heartbeat rounds allow about \
                 {allowance}): {}",
                self.stats.quiet_probes,
                self.now - since,
                rounds,
                self.cluster_summary()
            );
            self.fail(Violation::new(Invariant::BoundedWork, detail));
        }
    }

    /// The running node that leads the highest term, if any.
    pub(crate) fn leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .filter_map(|node| node.core.as_ref())
            .filter(|core| core.role() == RoleKind::Leader)
            .max_by_key(|core| core.term())
            .map(|core| core.id())
    }

    /// One line about each node, for reports.
    fn cluster_summary(&self) -> String {
        let parts: Vec<String> = self
            .nodes
            .values()
            .map(|node| match &node.core {
                None => format!("{} down", node.id),
                Some(core) => format!(
                    "{} {} term {} commit {} last {}{}",
                    node.id,
                    core.role(),
                    core.term(),
                    core.commit(),
                    node.log.last_index(),
                    if node.paused { " paused" } else { "" }
                ),
            })
            .collect();
        parts.join("; ")
    }

    /// Records the first violation; the run stops after the current event.
    pub(crate) fn fail(&mut self, violation: Violation) {
        if self.failure.is_none() {
            trace!(self.trace, self.now, "VIOLATION {violation}");
            self.failure = Some(Failure { violation, time: self.now });
        }
    }

    /// The invariant checks after a step.
    pub(crate) fn check_step(&mut self) {
        // Views of the nodes, not vectors: this runs after every event, and collecting the
        // nodes into vectors cost about as much as the checks themselves.
        let observations = self.nodes.values().filter_map(|node| {
            let core = node.core.as_ref()?;
            Some(Observation {
                id: node.id,
                incarnation: node.incarnation,
                role: core.role(),
                term: core.term(),
                commit: core.commit(),
                log: &node.log,
                membership: core.membership(),
            })
        });
        if let Err(violation) = self.checker.after_step(observations) {
            return self.fail(violation);
        }
        let electable = self.nodes.values().filter(|node| !node.retired).map(|node| Electable {
            id: node.id,
            log: &node.log,
            durable: &node.disk.log,
        });
        if let Err(violation) = self.checker.check_electable(electable) {
            return self.fail(violation);
        }
        if self.live_at.is_none()
            && self
                .probe_entries
                .iter()
                .any(|&(index, term)| self.checker.committed_term(index) == Some(term))
        {
            self.probe_committed();
        }
    }

    /// No acknowledged write lost: at the end, every key is read from the store of a node that
    /// has applied every client write committed, and the reads join the history (see
    /// `Workload::final_reads`). Skipped, and said in the trace, if no node has (the run may
    /// end in the event that committed the liveness probe, before anyone applied it, and the
    /// probe is no client write).
    fn final_reads(&mut self) {
        let committed = self.checker.committed_index();
        let has_every_write = |node: &&SimNode| {
            let applied = node.machine.applied();
            node.core.is_some()
                && (applied.0 + 1..=committed.0).all(|index| {
                    node.log.entry(Index(index)).is_some_and(|entry| match &entry.payload {
                        Payload::Noop | Payload::Membership(_) => true,
                        Payload::Command(bytes) => !state_machine::is_write(bytes),
                    })
                })
        };
        let store =
            self.nodes.values().filter(has_every_write).max_by_key(|node| node.machine.applied());
        let Some(node) = store else {
            trace!(self.trace, self.now, "no node has applied every write: no final reads");
            return;
        };
        let id = node.id;
        let values: Vec<_> =
            (0..self.workload.keys()).map(|key| (key, node.machine.get(key))).collect();
        let applied = node.machine.applied();
        trace!(self.trace, self.now, "final reads from {id}, at applied index {applied}");
        self.workload.final_reads(values, self.now);
        self.stats.final_reads += 1;
    }

    /// The verdict: the failure if any, else the linearizability of the history.
    fn finish(mut self) -> Outcome {
        if self.failure.is_none() {
            self.check_quiet();
        }
        if self.failure.is_none() {
            self.workload.finish(self.now);
            self.final_reads();
            self.record_history();
            match check_with_budget(self.workload.history(), LINEARIZABILITY_BUDGET) {
                Ok(()) => {}
                Err(CheckError::Violation(violation)) => {
                    self.fail(Violation::new(Invariant::Linearizability, violation.to_string()));
                }
                Err(CheckError::Inconclusive { key, steps }) => {
                    trace!(
                        self.trace,
                        self.now, "linearizability of key {key} inconclusive after {steps} steps"
                    );
                    self.stats.inconclusive = true;
                }
            }
        }
        self.stats.simulated = self.now;
        self.stats.runs_with_install = u64::from(self.stats.snapshots_installed > 0);
        let founders = self.parameters.nodes;
        let founders_retired =
            self.nodes.values().filter(|node| node.id.0 <= founders && node.retired).count() as u64;
        self.stats.runs_retiring_majority = u64::from(founders_retired > founders / 2);
        self.stats.leaders = self.checker.leader_count() as u64;
        self.stats.committed = self.checker.committed_index().0;
        self.stats.workload = self.workload.stats();
        self.stats.max_term = self
            .nodes
            .values()
            .filter_map(|node| node.core.as_ref().map(|core| core.term()))
            .max()
            .unwrap_or(Term(0))
            .0;
        Outcome {
            seed: self.parameters.seed,
            failure: self.failure,
            stats: self.stats,
            trace_hash: self.trace.hash(),
            trace_lines: self.trace.lines(),
            tail: self.trace.tail(),
            faults: self.schedule.numbers(),
            parameters: self.parameters,
            schedule: self.schedule,
        }
    }
}
