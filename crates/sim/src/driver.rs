//! The node driver: performs the core's actions on the simulated disk and network, under the
//! driver contract of `skiff_raft` (crates/raft/src/lib.rs), item by item.
//!
//! 1. `PersistHardState` is queued on the disk, and every `Send` after it is **held** until
//!    that write is durable. Later batches' messages queue behind it too, so no message carrying
//!    a term or a vote leaves before they are durable.
//! 2. `PersistEntries` is queued on the same disk, in order; the mirror of the core's log is
//!    updated at once (it is what the core now holds), and when the write completes the core
//!    hears `persisted(index, term)` for the write's last entry.
//! 3. `Send`s leave through the simulated network, which may lose, duplicate, delay and
//!    reorder them.
//! 4. `ReadEntries` is served from durable storage after a short delay.
//! 5. `Apply` entries go to the node's skiff-kv store, in order (`state_machine.rs`); the node
//!    that proposed a client's write answers the client when it applies it (or tells it
//!    another entry took its index).
//! 6. `ReadReady` confirms gets asked for with `read_index`, `forward_read_index` or
//!    `lease_read`: each is served from the store once it has applied up to the read index,
//!    which may be at once or after later `Apply`s. `ReadFailed` tells their clients to retry
//!    (contract item 6).
//! 7. `Event`s go to the trace; a node elected leader may fire an armed fault trigger.
//! 8. Snapshots, compaction, `FetchSnapshot` and restarts from a snapshot (items 9 to 12) are
//!    in `snapshot.rs`.
//!
//! Gets never enter the log. The node a get reaches serves it by the get's kind
//! (`ReadKind`): a ReadIndex get or a lease get asks its core for a read index
//! (`read_index`), or a lease (`lease_read`, falling back on `read_index` when the leader holds
//! none, as a server does), and a node that does not lead forwards it to the leader it knows of,
//! or refuses it, as it does a write; a follower get asks the node's own core
//! (`forward_read_index`), which asks its leader; a stale get is answered at once from the
//! store. When a read of the first three kinds is served, the checker holds it to ReadIndex's
//! promise: the store has applied every entry that was committed anywhere in the cluster when
//! the read reached the node (`Invariant::StaleRead`). A deposed leader that still believes it
//! leads (or holds a lease) breaks that promise as soon as the new leader commits something,
//! whether or not a client's history shows it.
//!
//! A crash loses the core, the state machine, the pending writes, the held messages, the
//! snapshot work under way and the reads in progress (their clients are told the read failed,
//! as a broken connection tells them); a restart rebuilds the core from the durable term, vote,
//! snapshot and log, and the store from the snapshot, then applies the log after it again. A paused node keeps its
//! inputs in a stash and processes them on resumption; its disk carries on meanwhile.
//!
//! The core runs inside `catch_unwind`: a failed assertion in the core ends the run as a
//! violation with the panic's message, not as a crash of the simulator.
//!
//! Two defects of the self-test live here, because they break the driver's side of the
//! contract: `vote-before-durable` lets vote replies skip the hold, and `forget-vote` restarts
//! a node without its vote.

use std::collections::{BTreeMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;
use skiff_raft::{
    Action, Body, Config, Entry, Event as CoreEvent, HardState, Index, LeaseReadError, Membership,
    Message, Node, NodeId, Payload, ProposeError, ReadIndexError, ReadRequest, Restored, RoleKind,
    Term,
};

use crate::history::{Operation, OperationResult};
use crate::invariants::{Invariant, Violation};
use crate::network::Fate;
use crate::parameters::Parameters;
use crate::random::Random;
use crate::sabotage::Defect;
use crate::simulation::{Event, Packet, Simulation};
use crate::snapshot::{ChunkReply, Fetch, Taking};
use crate::state_machine::{self, Applied, StateMachine};
use crate::storage::{Disk, Durable, LogCopy, Unrecoverable, Write, WriteFailure};
use crate::time::Time;
use crate::trace::{show_entries, show_message, trace};
use crate::workload::{Answer, ReadKind, Reply, Request};

/// An input to a node's process: what a paused node keeps for later.
#[derive(Clone, Debug)]
pub(crate) enum Input {
    /// A tick of its clock.
    Tick,
    /// A message from another node.
    Step(Message),
    /// A client request, directly or forwarded.
    Client(Request),
    /// A disk write completed (it is durable already; this is the process hearing of it).
    Durable(u64, Durable),
    /// A read of storage completed.
    Read(ReadRequest),
    /// The local snapshot's file is written (a background thread of the process finished).
    SnapshotWritten,
    /// A peer asks for a chunk of this node's snapshot at `index`.
    ChunkRequest {
        /// The peer.
        from: NodeId,
        /// The peer's fetch.
        fetch: u64,
        /// The snapshot's index.
        index: Index,
        /// Where the chunk starts in the file.
        offset: u64,
    },
    /// A chunk for this node's fetch `fetch` arrived.
    Chunk {
        /// The fetch it answers.
        fetch: u64,
        /// Where it starts in the file.
        offset: u64,
        /// The chunk, or why there is none.
        reply: ChunkReply,
    },
    /// A chunk request of fetch `fetch` went unanswered for too long.
    ChunkTimeout {
        /// The fetch.
        fetch: u64,
        /// Which request of it.
        attempt: u64,
    },
}

/// One simulated node: the core and everything its driver keeps.
#[derive(Debug)]
pub(crate) struct SimNode {
    /// The node's id.
    pub(crate) id: NodeId,
    /// The configuration the core is built with (the seed changes per incarnation).
    pub(crate) config: Config,
    /// The core; `None` while the node is down.
    pub(crate) core: Option<Node>,
    /// How many times the node was (re)started; events of an earlier incarnation are ignored.
    pub(crate) incarnation: u64,
    /// The disk: survives crashes.
    pub(crate) disk: Disk,
    /// The log as the core holds it: everything handed over in `PersistEntries`.
    pub(crate) log: LogCopy,
    /// Messages waiting for a hard-state write to be durable: (write number, message).
    pub(crate) held: VecDeque<(u64, Message)>,
    /// Whether the process is paused.
    pub(crate) paused: bool,
    /// The fault that crashed or paused the node, so that only its own undo ends the fault.
    pub(crate) struck_by: Option<usize>,
    /// Inputs that arrived while paused, in order.
    pub(crate) stash: Vec<Input>,
    /// Whether a tick is scheduled.
    pub(crate) ticking: bool,
    /// The tick-rate skew in force, in thousandths.
    pub(crate) skew: i64,
    /// No write completes before this time (a stalled disk).
    pub(crate) disk_stalled_until: Time,
    /// The state machine: a skiff-kv store, and the hash of its contents.
    pub(crate) machine: StateMachine,
    /// Client requests this node proposed, by log index, awaiting their apply.
    pub(crate) proposals: BTreeMap<Index, Request>,
    /// Gets this node asked its core to confirm, by the context given to `read_index`.
    pub(crate) reads: BTreeMap<u64, PendingRead>,
    /// Confirmed gets waiting for the store to apply up to their read index, in confirmation
    /// order.
    pub(crate) ready_reads: Vec<(Index, PendingRead)>,
    /// The context of the next `read_index` call: never reused, across incarnations too.
    pub(crate) next_read: u64,
    /// The node's random stream for per-incarnation core seeds.
    pub(crate) random: Random,
    /// The local snapshot under way, if any.
    pub(crate) taking: Option<Taking>,
    /// The fetch of the leader's snapshot under way, if any.
    pub(crate) fetch: Option<Fetch>,
    /// The number of the next fetch: never reused, across incarnations too.
    pub(crate) next_fetch: u64,
    /// The index the core was last told the log is compacted to (or the log's base after a
    /// restart or an install).
    pub(crate) compacted: Index,
    /// The newest snapshot this node's disk made durable (saved or installed): a restart must
    /// come back with it or a newer one.
    pub(crate) snapshot_floor: Index,
    /// A spare not started yet: it has never run, and runs once an operator adds it.
    pub(crate) dormant: bool,
    /// Removed from the cluster and stopped for good: it never runs again.
    pub(crate) retired: bool,
    /// The configuration the core last reported in force (to see what a leader's change
    /// removed).
    pub(crate) membership: Membership,
}

impl SimNode {
    /// A new node with an empty disk: a founder of the cluster `founders`, started, or a spare
    /// (not among them), dormant until an operator adds it, with no configuration (it joins).
    pub(crate) fn new(
        id: NodeId,
        founders: &[NodeId],
        parameters: &Parameters,
        defect: Option<Defect>,
        mut random: Random,
    ) -> SimNode {
        let founder = founders.contains(&id);
        let voters = if founder { founders.to_vec() } else { Vec::new() };
        let mut config = Config::new(id, voters.iter().copied());
        config.max_learner_lag = parameters.max_learner_lag;
        config.lease_reads = parameters.lease_reads;
        config.clock_drift_bound = parameters.clock_drift_bound;
        config.election_timeout = parameters.election_timeout;
        config.heartbeat_interval = parameters.heartbeat_interval;
        config.pre_vote = parameters.pre_vote;
        config.check_quorum = parameters.check_quorum;
        config.max_append_entries = parameters.max_append_entries;
        config.max_append_bytes = parameters.max_append_bytes;
        config.max_inflight_appends = parameters.max_inflight_appends;
        config.max_cached_bytes = parameters.max_cached_bytes;
        config.max_apply_bytes = parameters.max_apply_bytes;
        config.eager_commit = parameters.eager_commit;
        config.sabotage = defect.map(Defect::core_switches).unwrap_or_default();
        for _ in 0..id.0 {
            random.next_u64();
        }
        config.seed = random.next_u64();
        // The file system's seed is a function of the core's, so that no stream draws more.
        let bootstrap = Membership::new(voters);
        let seed = config.seed ^ 0xD15C_D15C_D15C_D15C;
        let disk = Disk::new(
            id,
            seed,
            parameters.snapshots.segment_bytes,
            bootstrap.clone(),
            parameters.disk.reorder_sectors,
        );
        let core = founder.then(|| {
            Node::new(config.clone(), Restored::default())
                .expect("the drawn configuration is valid")
        });
        SimNode {
            id,
            config,
            core,
            incarnation: 0,
            disk,
            log: LogCopy::new(bootstrap.clone()),
            held: VecDeque::new(),
            paused: false,
            struck_by: None,
            stash: Vec::new(),
            ticking: false,
            skew: parameters.skew_per_mille[id.0 as usize - 1],
            disk_stalled_until: Time::ZERO,
            machine: StateMachine::default(),
            proposals: BTreeMap::new(),
            reads: BTreeMap::new(),
            ready_reads: Vec::new(),
            next_read: 1,
            random,
            taking: None,
            fetch: None,
            next_fetch: 1,
            compacted: Index(0),
            snapshot_floor: Index(0),
            dormant: !founder,
            retired: false,
            membership: bootstrap,
        }
    }
}

/// Why a node would not take a linearizable read: it leads nothing, and knows this leader.
struct ReadRefusal(Option<NodeId>);

impl From<ReadIndexError> for ReadRefusal {
    fn from(error: ReadIndexError) -> ReadRefusal {
        let ReadIndexError::NotLeader { leader, .. } = error;
        ReadRefusal(leader)
    }
}

/// How a linearizable get is being confirmed (for the stats: each is checked the same way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadPath {
    /// ReadIndex at the leader (asked for ReadIndex, or a follower read that reached the
    /// leader).
    Leader,
    /// A read index asked of the leader by a follower (or a learner), served from the
    /// follower's store.
    Follower,
    /// Under the leader's lease, with no round trip.
    Lease,
    /// Asked for under a lease the leader did not hold: served by ReadIndex instead.
    LeaseFallback,
}

/// A get on its way through ReadIndex.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PendingRead {
    /// The client's request.
    request: Request,
    /// How it is confirmed.
    path: ReadPath,
    /// The highest index committed anywhere in the cluster when the get reached the node: the
    /// store must have applied it before serving the get.
    committed: Index,
}

thread_local! {
    /// Whether a panic on this thread is expected (a core assertion under `catch_unwind`) and
    /// should not be printed by the panic hook.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs (once) a panic hook that stays silent for panics caught from the core, and
/// defers to the previous hook for every other panic.
fn install_quiet_hook() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs `work` on the core, turning a panic into a violation.
pub(crate) fn guarded<T>(id: NodeId, work: impl FnOnce() -> T) -> Result<T, Violation> {
    install_quiet_hook();
    QUIET.with(|quiet| quiet.set(true));
    let result = catch_unwind(AssertUnwindSafe(work));
    QUIET.with(|quiet| quiet.set(false));
    result.map_err(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|text| text.to_string()))
            .unwrap_or_else(|| "a panic without a message".to_string());
        Violation::new(Invariant::CoreAssertion, format!("{id} panicked: {message}"))
    })
}

impl Simulation {
    /// Hands `input` to node `id`: dropped if the node is down, kept if it is paused.
    pub(crate) fn input(&mut self, id: NodeId, input: Input) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        if node.core.is_none() {
            return;
        }
        if node.paused {
            node.stash.push(input);
            return;
        }
        self.process(id, input);
    }

    /// Feeds one input to a running node's core and performs the actions it returns.
    pub(crate) fn process(&mut self, id: NodeId, input: Input) {
        if self.failure.is_some() {
            return;
        }
        let now = self.now;
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let Some(core) = node.core.as_mut() else { return };
        let result = match input {
            Input::Tick => guarded(id, || core.tick()).map(|()| Vec::new()),
            Input::Step(message) => {
                trace!(self.trace, now, "{}", show_message(&message));
                let text = self.trace.on().then(|| show_message(&message));
                guarded(id, || core.step(message)).and_then(|stepped| {
                    stepped.map(|()| Vec::new()).map_err(|error| {
                        Violation::new(
                            Invariant::DriverContract,
                            format!("{id} refused {}: {error}", text.unwrap_or_default()),
                        )
                    })
                })
            }
            Input::Client(request) => return self.client_input(id, request),
            Input::Durable(sequence, durable) => match durable {
                Durable::Entries(index, term) => {
                    guarded(id, || core.persisted(index, term)).map(|()| Vec::new())
                }
                Durable::HardState(_) => {
                    let mut released = Vec::new();
                    while node.held.front().is_some_and(|&(wait, _)| wait <= sequence) {
                        released.push(node.held.pop_front().expect("checked non-empty").1);
                    }
                    Ok(released)
                }
                Durable::SnapshotSaved(meta) => {
                    self.snapshot_saved(id, meta);
                    Ok(Vec::new())
                }
                Durable::Compacted(_) => {
                    self.stats.compactions += 1;
                    Ok(Vec::new())
                }
                Durable::SnapshotInstalled(meta) => {
                    self.snapshot_installed(id, meta);
                    Ok(Vec::new())
                }
            },
            Input::Read(request) => serve_read(node, request).map(|()| Vec::new()),
            snapshot => {
                self.snapshot_input(id, snapshot);
                Ok(Vec::new())
            }
        };
        match result {
            Ok(released) => {
                for message in released {
                    self.transmit(message);
                }
                self.take_and_perform(id);
            }
            Err(violation) => self.fail(violation),
        }
    }

    /// Takes the core's action batch and performs it; then takes a snapshot if one is due.
    pub(crate) fn take_and_perform(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let Some(core) = node.core.as_mut() else { return };
        match guarded(id, || core.take_actions()) {
            Ok(actions) => {
                for action in actions {
                    if self.failure.is_some() {
                        return;
                    }
                    self.perform(id, action);
                }
            }
            Err(violation) => return self.fail(violation),
        }
        if self.failure.is_none() {
            self.maybe_snapshot(id);
        }
    }

    /// Performs one action of node `id` (the contract's items, in the module documentation).
    fn perform(&mut self, id: NodeId, action: Action) {
        match action {
            Action::PersistHardState(hard_state) => {
                trace!(self.trace, self.now, "{id} persist {}", show_hard_state(hard_state));
                self.submit(id, Write::HardState(hard_state));
            }
            Action::PersistEntries(entries) => {
                trace!(self.trace, self.now, "{id} persist {}", show_entries(&entries));
                let node = self.nodes.get_mut(&id).expect("a node of the cluster");
                let first = entries.first().expect("writes are non-empty").index;
                node.log.write(&entries);
                if let Err(violation) = self.checker.entries_written(id, &node.log, first) {
                    self.fail(violation);
                }
                self.submit(id, Write::Entries(entries));
            }
            Action::Send(message) => {
                let node = self.nodes.get_mut(&id).expect("a node of the cluster");
                let skip_hold = self.defect == Some(Defect::VoteBeforeDurable)
                    && matches!(message.body, Body::VoteResponse { .. });
                match node.disk.pending_hard_state() {
                    Some(sequence) if !skip_hold => node.held.push_back((sequence, message)),
                    _ => self.transmit(message),
                }
            }
            Action::ReadEntries(request) => {
                let node = &self.nodes[&id];
                let latency =
                    Time(self.disk_random.between(0, self.parameters.disk.read_max.0 + 1));
                let incarnation = node.incarnation;
                self.queue
                    .push(self.now + latency, Event::ReadDone { node: id, incarnation, request });
            }
            Action::Apply(entries) => {
                trace!(self.trace, self.now, "{id} apply {}", show_entries(&entries));
                for entry in entries {
                    if self.failure.is_some() {
                        return;
                    }
                    self.apply(id, entry);
                }
                self.serve_reads(id);
            }
            Action::ReadReady { index, contexts } => self.reads_ready(id, index, contexts),
            Action::ReadFailed { contexts } => self.reads_failed(id, contexts),
            Action::FetchSnapshot { from, meta } => self.fetch_snapshot(id, from, meta),
            Action::Event(event) => {
                trace!(self.trace, self.now, "{id} {event}");
                if let CoreEvent::TransferAborted { .. } = event {
                    self.stats.transfers_aborted += 1;
                }
                if let CoreEvent::MembershipChanged { index, membership } = &event {
                    self.membership_changed(id, *index, membership.clone());
                }
                if let CoreEvent::RoleChanged { role: RoleKind::Leader, .. } = event
                    && let Some((fault, after, elections)) = self.armed_elected.take()
                {
                    trace!(
                        self.trace,
                        self.now, "fault {fault} triggered: strikes {id} in {after}"
                    );
                    self.queue.push(self.now + after, Event::Triggered { node: id, fault });
                    if elections > 1 {
                        self.armed_elected = Some((fault, after, elections - 1));
                    }
                }
            }
        }
    }

    /// Queues a write on node `id`'s disk and schedules its completion.
    pub(crate) fn submit(&mut self, id: NodeId, write: Write) {
        let disk = self.parameters.disk;
        let latency = if self.disk_random.chance(self.disk_stall) {
            Time(self.disk_random.log_uniform(disk.write_max.0.max(1), disk.stall_max.0.max(1)))
        } else {
            Time(self.disk_random.between(disk.write_min.0, disk.write_max.0 + 1))
        };
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let (_, completion) = node.disk.submit(write, self.now, latency);
        let incarnation = node.incarnation;
        self.queue.push(completion, Event::DiskDone { node: id, incarnation });
    }

    /// The oldest pending write of node `id` became durable.
    pub(crate) fn disk_done(&mut self, id: NodeId, incarnation: u64) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        if node.incarnation != incarnation {
            return;
        }
        if self.now < node.disk_stalled_until {
            // Writes complete in order: this one, and every one behind it, waits out the stall.
            let until = node.disk_stalled_until;
            self.queue.push(until, Event::DiskDone { node: id, incarnation });
            return;
        }
        let step = node.disk.next_step();
        let trigger = step.and_then(|step| self.snapshot_trigger(step).map(|fired| (step, fired)));
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let completed = node.disk.complete_next(trigger.map(|(_, (_, cut, _))| cut));
        let (sequence, durable) = match completed {
            Ok(Some(completed)) => completed,
            Ok(None) => return,
            Err(WriteFailure::SecondVote(refusal)) => {
                return self.fail(Violation::new(
                    Invariant::VoteSafety,
                    format!("{id} votes twice in one term: {refusal}"),
                ));
            }
            Err(WriteFailure::PowerCut(reason)) => {
                let Some((step, (fault, cut, down_for))) = trigger else {
                    let detail = format!("{id}'s disk failed a write with no fault: {reason}");
                    return self.fail(Violation::new(Invariant::DriverContract, detail));
                };
                return self.crash_in_step(id, fault, step, cut, down_for);
            }
        };
        if let Durable::SnapshotSaved(meta) | Durable::SnapshotInstalled(meta) = &durable {
            node.snapshot_floor = node.snapshot_floor.max(meta.index);
        }
        if self.trace.on() {
            let what = match &durable {
                Durable::HardState(hard_state) => show_hard_state(*hard_state),
                Durable::Entries(index, term) => format!("{index}@{term}"),
                Durable::SnapshotSaved(meta) => format!("snapshot {meta} saved"),
                Durable::Compacted(base) => format!("compaction: the log starts after {base}"),
                Durable::SnapshotInstalled(meta) => format!("snapshot {meta} installed"),
            };
            self.trace.line(self.now, format_args!("{id} durable {what}"));
        }
        if let Some((step, (fault, cut, down_for))) = trigger {
            // The step completed before the power failed: durable, but the process never
            // hears of it.
            return self.crash_in_step(id, fault, step, cut, down_for);
        }
        self.input(id, Input::Durable(sequence, durable));
    }

    /// A read of node `id`'s storage completed.
    pub(crate) fn read_done(&mut self, id: NodeId, incarnation: u64, request: ReadRequest) {
        if self.nodes[&id].incarnation == incarnation {
            self.input(id, Input::Read(request));
        }
    }

    /// A message leaves its sender (after any hold): it meets the network.
    pub(crate) fn transmit(&mut self, message: Message) {
        if self.quiet_since.is_some()
            && matches!(&message.body, Body::Append { entries, .. } if entries.is_empty())
        {
            self.stats.quiet_probes += 1;
        }
        if let Body::VoteResponse { granted: true } = message.body {
            if let Err(violation) =
                self.checker.vote_granted(message.from, message.term, message.to)
            {
                self.fail(violation);
            }
            if let Some(fault) = self.armed_vote.take() {
                let voter = message.from;
                trace!(
                    self.trace,
                    self.now, "fault {fault} triggered: crash {voter} after its vote"
                );
                self.queue.push(self.now, Event::Triggered { node: voter, fault });
            }
        }
        self.send_packet(Packet::Raft(message));
    }

    /// Routes a packet between nodes through the network.
    pub(crate) fn send_packet(&mut self, packet: Packet) {
        let (from, to) = packet.link();
        self.stats.messages += 1;
        match self.network.route(from, to) {
            Fate::Lost => {
                self.stats.lost += 1;
                trace!(self.trace, self.now, "{} (lost)", show_packet(&packet));
            }
            Fate::Blocked => {
                self.stats.blocked += 1;
                trace!(self.trace, self.now, "{} (blocked)", show_packet(&packet));
            }
            Fate::Delivered(first, second) => {
                if let Some(second) = second {
                    self.stats.duplicated += 1;
                    self.queue.push(self.now + second, Event::Deliver(packet.clone()));
                }
                let mut packet = packet;
                if let Packet::Chunk { reply: ChunkReply::Data { bytes, .. }, .. } = &mut packet
                    && self.network.damage(bytes, self.chunk_damage)
                {
                    trace!(self.trace, self.now, "{} (damaged)", show_packet(&packet));
                }
                self.queue.push(self.now + first, Event::Deliver(packet));
            }
        }
    }

    /// A packet arrives, unless a partition now blocks its link.
    pub(crate) fn deliver(&mut self, packet: Packet) {
        let (from, to) = packet.link();
        if self.network.is_blocked(from, to) {
            self.stats.blocked += 1;
            trace!(self.trace, self.now, "{} (blocked on arrival)", show_packet(&packet));
            return;
        }
        self.stats.delivered += 1;
        if let Packet::ChunkRequest { .. } | Packet::Chunk { .. } = &packet {
            trace!(self.trace, self.now, "{}", show_packet(&packet));
        }
        match packet {
            Packet::Raft(message) => self.input(to, Input::Step(message)),
            Packet::Forward { request, .. } => self.input(to, Input::Client(request)),
            Packet::ChunkRequest { from, fetch, index, offset, .. } => {
                self.input(to, Input::ChunkRequest { from, fetch, index, offset });
            }
            Packet::Chunk { fetch, offset, reply, .. } => {
                self.input(to, Input::Chunk { fetch, offset, reply });
            }
        }
    }

    /// A client request reached node `id`: propose it, forward it to the leader, or refuse.
    pub(crate) fn client_request(&mut self, id: NodeId, request: Request) {
        self.input(id, Input::Client(request));
    }

    /// A running node handles a client request: a write is proposed, a get asks for a read
    /// index.
    fn client_input(&mut self, id: NodeId, request: Request) {
        let Some(command) =
            state_machine::command(request.client, request.sequence, request.operation)
        else {
            return self.read_input(id, request);
        };
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let core = node.core.as_mut().expect("only running nodes get inputs");
        let proposed = match guarded(id, || core.propose(command.encode())) {
            Ok(proposed) => proposed,
            Err(violation) => return self.fail(violation),
        };
        match proposed {
            Ok(index) => {
                trace!(
                    self.trace,
                    self.now,
                    "{id} propose {index} c{}.{} {}",
                    request.client,
                    request.sequence,
                    request.operation
                );
                node.proposals.insert(index, request);
                self.take_and_perform(id);
            }
            Err(ProposeError::NotLeader { leader, .. }) => self.not_leader(id, request, leader),
            // Leadership is on its way to another node: the client waits a little and retries.
            Err(ProposeError::TransferInProgress { .. }) => self.not_leader(id, request, None),
        }
    }

    /// A running node asks its core to confirm a get (ReadIndex).
    fn read_input(&mut self, id: NodeId, request: Request) {
        let committed = self.checker.committed_index();
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let core = node.core.as_mut().expect("only running nodes get inputs");
        let context = node.next_read;
        let leading = core.role() == RoleKind::Leader;
        let asked = guarded(id, || match request.read {
            ReadKind::ReadIndex => {
                core.read_index(context).map(|()| ReadPath::Leader).map_err(ReadRefusal::from)
            }
            ReadKind::Follower => core
                .forward_read_index(context)
                .map(|()| if leading { ReadPath::Leader } else { ReadPath::Follower })
                .map_err(ReadRefusal::from),
            // Without a lease (or with lease reads off), ReadIndex serves it: what a server
            // asked for a lease read does.
            ReadKind::Lease => match core.lease_read(context) {
                Ok(()) => Ok(ReadPath::Lease),
                Err(LeaseReadError::NotLeader { leader, .. }) => Err(ReadRefusal(leader)),
                Err(_) => core
                    .read_index(context)
                    .map(|()| ReadPath::LeaseFallback)
                    .map_err(ReadRefusal::from),
            },
            // Not asked of the core at all.
            ReadKind::Stale => Ok(ReadPath::Leader),
        });
        match asked {
            Ok(Ok(_)) if request.read == ReadKind::Stale => {
                let Operation::Get { key } = request.operation else {
                    unreachable!("only gets take the read path");
                };
                let value = node.machine.get(key);
                let applied = node.machine.applied();
                trace!(
                    self.trace,
                    self.now,
                    "{id} stale read at applied index {applied} c{}.{} {}",
                    request.client,
                    request.sequence,
                    request.operation
                );
                self.stats.stale_reads += 1;
                self.answer(id, request, Answer::Done(OperationResult::Get(value)));
            }
            Ok(Ok(path)) => {
                trace!(
                    self.trace,
                    self.now,
                    "{id} {path:?} read #{context} c{}.{} {}",
                    request.client,
                    request.sequence,
                    request.operation
                );
                node.next_read += 1;
                node.reads.insert(context, PendingRead { request, path, committed });
                self.take_and_perform(id);
            }
            Ok(Err(ReadRefusal(leader))) => self.not_leader(id, request, leader),
            Err(violation) => self.fail(violation),
        }
    }

    /// Node `id` does not lead: it forwards the request to the leader it knows of (once), or
    /// tells the client who that is.
    fn not_leader(&mut self, id: NodeId, request: Request, leader: Option<NodeId>) {
        match leader {
            Some(leader) if leader != id && request.forwarded_by.is_none() => {
                let forwarded = Request { forwarded_by: Some(id), ..request };
                self.send_packet(Packet::Forward { from: id, to: leader, request: forwarded });
            }
            _ => {
                let answer = Answer::NotLeader(leader.filter(|&leader| leader != id));
                self.answer(id, request, answer);
            }
        }
    }

    /// Node `id` answers the client of `request`.
    fn answer(&mut self, id: NodeId, request: Request, answer: Answer) {
        self.reply(Reply {
            from: id,
            client: request.client,
            sequence: request.sequence,
            attempt: request.attempt,
            answer,
        });
    }

    /// The core confirmed the reads `contexts` at read `index`: they are served once the store
    /// has applied up to it.
    fn reads_ready(&mut self, id: NodeId, index: Index, contexts: Vec<u64>) {
        trace!(self.trace, self.now, "{id} read ready at {index}: {}", show_contexts(&contexts));
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        for context in contexts {
            let Some(read) = node.reads.remove(&context) else {
                return self.fail(Violation::new(
                    Invariant::DriverContract,
                    format!("{id} confirmed read #{context}, which it was never asked for"),
                ));
            };
            node.ready_reads.push((index, read));
        }
        self.serve_reads(id);
    }

    /// The core could not confirm the reads `contexts` (it stopped leading): their clients are
    /// told, and retry.
    fn reads_failed(&mut self, id: NodeId, contexts: Vec<u64>) {
        trace!(self.trace, self.now, "{id} read failed: {}", show_contexts(&contexts));
        for context in contexts {
            let node = self.nodes.get_mut(&id).expect("a node of the cluster");
            let Some(read) = node.reads.remove(&context) else {
                return self.fail(Violation::new(
                    Invariant::DriverContract,
                    format!("{id} failed read #{context}, which it was never asked for"),
                ));
            };
            self.answer(id, read.request, Answer::ReadFailed);
        }
    }

    /// Serves every confirmed read whose read index the store has applied, from the store.
    pub(crate) fn serve_reads(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let applied = node.machine.applied();
        if node.ready_reads.iter().all(|&(index, _)| index > applied) {
            return;
        }
        let (due, waiting): (Vec<_>, Vec<_>) =
            node.ready_reads.drain(..).partition(|&(index, _)| index <= applied);
        node.ready_reads = waiting;
        let mut answers = Vec::with_capacity(due.len());
        for (index, PendingRead { request, path, committed }) in due {
            if applied < committed {
                let detail = format!(
                    "{id} served c{}.{} {} at applied index {applied} (read index {index}), but \
                     {committed} was committed when the read reached it",
                    request.client, request.sequence, request.operation
                );
                return self.fail(Violation::new(Invariant::StaleRead, detail));
            }
            let Operation::Get { key } = request.operation else {
                unreachable!("only gets take the ReadIndex path");
            };
            let value = node.machine.get(key);
            answers.push((request, Answer::Done(OperationResult::Get(value))));
            match path {
                ReadPath::Leader => self.stats.leader_reads += 1,
                ReadPath::Follower => self.stats.follower_reads += 1,
                ReadPath::Lease => self.stats.lease_reads += 1,
                ReadPath::LeaseFallback => self.stats.lease_fallbacks += 1,
            }
        }
        self.stats.reads += answers.len() as u64;
        for (request, answer) in answers {
            self.answer(id, request, answer);
        }
    }

    /// Asks `leader` to hand leadership to `target` (or to the most up-to-date voter).
    pub(crate) fn transfer(&mut self, leader: NodeId, target: Option<NodeId>) {
        let node = self.nodes.get_mut(&leader).expect("a node of the cluster");
        if node.paused {
            return;
        }
        let Some(core) = node.core.as_mut() else { return };
        match guarded(leader, || core.transfer_leadership(target)) {
            Ok(Ok(target)) => {
                trace!(self.trace, self.now, "{leader} transfers leadership to {target}");
                self.stats.transfers += 1;
                self.take_and_perform(leader);
            }
            Ok(Err(error)) => {
                trace!(self.trace, self.now, "{leader} refuses a transfer: {error}");
            }
            Err(violation) => self.fail(violation),
        }
    }

    /// Proposes a liveness probe at `leader`.
    pub(crate) fn propose_probe(&mut self, leader: NodeId, probe: String) {
        let node = self.nodes.get_mut(&leader).expect("a node of the cluster");
        if node.paused {
            return;
        }
        let Some(core) = node.core.as_mut() else { return };
        let term = core.term();
        match guarded(leader, || core.propose(Bytes::from(probe))) {
            Ok(Ok(index)) => {
                trace!(self.trace, self.now, "{leader} propose {index} probe");
                self.probe_entries.push((index, term));
                self.take_and_perform(leader);
            }
            Ok(Err(_)) => {}
            Err(violation) => self.fail(violation),
        }
    }

    /// Node `id` applies one committed entry: the checks, the state machine, the answers.
    fn apply(&mut self, id: NodeId, entry: Entry) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let commit = node.core.as_ref().map_or(Index(0), Node::commit);
        if let Err(violation) = self.checker.applying(id, &entry, node.machine.applied(), commit) {
            return self.fail(violation);
        }
        let applied = match &entry.payload {
            Payload::Command(bytes) => node.machine.apply(entry.index, bytes),
            Payload::Noop | Payload::Membership(_) => {
                node.machine.skip(entry.index);
                Applied::Other
            }
        };
        if let Err(violation) = self.checker.state_after(id, entry.index, node.machine.hash()) {
            return self.fail(violation);
        }
        let Some(request) = node.proposals.remove(&entry.index) else { return };
        let ours = |session: skiff_kv::Session| {
            session.client == request.client && session.sequence == request.sequence
        };
        let answer = match applied {
            Applied::Fresh(session, result) if ours(session) => Answer::Done(result),
            Applied::Repeat(session, result) if ours(session) => {
                self.stats.deduplicated += 1;
                Answer::Done(result)
            }
            // The client moved on: nobody waits for this answer.
            Applied::Stale(session) if ours(session) => return,
            _ => Answer::Aborted,
        };
        self.answer(id, request, answer);
    }

    /// A tick of node `id`, and the next one scheduled.
    pub(crate) fn tick(&mut self, id: NodeId, incarnation: u64) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        if node.incarnation != incarnation || node.core.is_none() {
            return;
        }
        if node.paused {
            // A stopped process does not tick; resumption starts the clock again.
            node.ticking = false;
            return;
        }
        let interval = self.tick_interval(id);
        self.queue.push(self.now + interval, Event::Tick { node: id, incarnation });
        self.process(id, Input::Tick);
    }

    /// Schedules node `id`'s next tick if none is scheduled.
    pub(crate) fn start_ticking(&mut self, id: NodeId) {
        let interval = self.tick_interval(id);
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        if node.ticking {
            return;
        }
        node.ticking = true;
        let incarnation = node.incarnation;
        self.queue.push(self.now + interval, Event::Tick { node: id, incarnation });
    }

    /// The time between two ticks of node `id`, with its skew.
    fn tick_interval(&self, id: NodeId) -> Time {
        let skew = self.nodes[&id].skew;
        let tick = self.parameters.tick.0 as i64;
        Time((tick + tick * skew / 1000).max(1) as u64)
    }

    /// Crashes node `id`: the core, the state machine, pending writes, held messages,
    /// stashed inputs and snapshot work under way are lost; the disk keeps what is durable.
    pub(crate) fn crash(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        if node.core.is_none() {
            return;
        }
        let lost = node.disk.pending_writes();
        node.core = None;
        node.incarnation += 1;
        node.disk.power_failure();
        // Dropped without power: a dead process removes no temporary file.
        node.taking = None;
        node.fetch = None;
        let checker = &self.checker;
        let recovery = match node.disk.recover(|index, term| checker.chain_of(index, term)) {
            Ok(recovery) => recovery,
            Err(Unrecoverable(reason)) => {
                let detail = format!("{id} cannot come back from a crash: {reason}");
                return self.fail(Violation::new(Invariant::Recovery, detail));
            }
        };
        // Entries of a term whose hard state did not survive never left the node: every message
        // of that term waited for it (contract item 1). The node may lead that term again after
        // its restart, writing other entries at those indexes; that is no second history (a
        // node alone in its configuration wins its election without sending anything, so it
        // can lead before its vote is durable). Nor is it a second leader when, restarted, it
        // votes for another candidate of that term (seeds 10628 and 12215).
        let durable_term = recovery.hard_state.term;
        self.checker.forget_leadership(id, durable_term);
        let unsent: Vec<(Index, Term)> = (node.log.base().0 + 1..=node.log.last_index().0)
            .filter_map(|index| node.log.entry(Index(index)))
            .filter(|entry| entry.term > durable_term)
            .map(|entry| (entry.index, entry.term))
            .collect();
        self.checker.forget_unsent(id, &unsent);
        node.log = node.disk.log.clone();
        node.held.clear();
        node.stash.clear();
        node.paused = false;
        node.ticking = false;
        node.machine = StateMachine::default();
        node.proposals.clear();
        let reads = std::mem::take(&mut node.reads).into_values();
        let failed: Vec<PendingRead> =
            reads.chain(node.ready_reads.drain(..).map(|(_, read)| read)).collect();
        self.stats.crashes += 1;
        let out_of_order = recovery.torn_tail.as_ref().is_some_and(|torn| torn.out_of_order);
        self.stats.tails_out_of_order += u64::from(out_of_order);
        trace!(
            self.trace,
            self.now,
            "{id} crash ({lost} writes in flight; recovered entries {}..={}{}, {} torn bytes \
             cut{}{})",
            recovery.log.first_index,
            recovery.log.last_index,
            recovery
                .snapshot
                .as_ref()
                .map_or(String::new(), |meta| format!(" after snapshot {meta}")),
            recovery.torn_bytes,
            if out_of_order { " (sectors out of order)" } else { "" },
            if recovery.reset_to_snapshot { ", an interrupted install finished" } else { "" }
        );
        for read in failed {
            self.answer(id, read.request, Answer::ReadFailed);
        }
    }

    /// Restarts node `id` from its durable state.
    pub(crate) fn restart(&mut self, id: NodeId) {
        let forget_vote = self.defect == Some(Defect::ForgetVote);
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        if node.core.is_some() || node.dormant || node.retired {
            return;
        }
        let mut restored = node.disk.restored();
        if forget_vote {
            restored.hard_state.vote = None;
        }
        let hard_state = restored.hard_state;
        let mut config = node.config.clone();
        config.seed = node.random.next_u64();
        node.struck_by = None;
        let snapshot = restored.snapshot.clone();
        match Node::new(config, restored) {
            Ok(core) => {
                node.membership = core.membership().clone();
                node.core = Some(core);
                trace!(
                    self.trace,
                    self.now,
                    "{id} restart at {} with entries {}..={}{}",
                    show_hard_state(hard_state),
                    node.disk.log.base().next(),
                    node.disk.log.last_index(),
                    snapshot.map_or(String::new(), |meta| format!(" after snapshot {meta}"))
                );
                if let Err(violation) = self.restore_from_snapshot(id) {
                    return self.fail(violation);
                }
                self.start_ticking(id);
            }
            Err(error) => self.fail(Violation::new(
                Invariant::Recovery,
                format!("{id} cannot restart from its durable state: {error}"),
            )),
        }
    }

    /// Pauses node `id`'s process.
    pub(crate) fn pause(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        if node.core.is_some() && !node.paused {
            node.paused = true;
            trace!(self.trace, self.now, "{id} pause");
        }
    }

    /// Resumes node `id`'s process: it handles what arrived meanwhile, and ticks again.
    pub(crate) fn resume(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        if !node.paused {
            return;
        }
        node.paused = false;
        node.struck_by = None;
        let stash = std::mem::take(&mut node.stash);
        trace!(self.trace, self.now, "{id} resume ({} inputs waited)", stash.len());
        for input in stash {
            self.process(id, input);
        }
        // One of the inputs may have crashed it (a crash fault armed for a snapshot step): then
        // its restart starts the clock. A tick scheduled now would find no process, yet leave
        // the node marked as ticking, so the restart would schedule none, and the node would
        // never tick again (seed 3532).
        if self.nodes[&id].core.is_some() {
            self.start_ticking(id);
        }
    }
}

/// Serves a completed read from `node`'s durable log to its core. A read for a follower that
/// the log was truncated under (the node stopped leading) may come back short or empty; the
/// core drops it unchecked (contract item 4), and refusing any other answer is a breach.
fn serve_read(node: &mut SimNode, request: ReadRequest) -> Result<(), Violation> {
    let id = node.id;
    let entries = node.disk.read(&request);
    let core = node.core.as_mut().expect("only running nodes get inputs");
    match guarded(id, || core.entries_read(request, entries))? {
        Ok(()) => Ok(()),
        Err(error) => Err(Violation::new(
            Invariant::DriverContract,
            format!("{id} refused a read of its own durable log: {error}"),
        )),
    }
}

/// A hard state in trace form: `term=3 vote=n2`.
fn show_hard_state(hard_state: HardState) -> String {
    let vote = hard_state.vote.map_or_else(|| "none".to_string(), |vote| vote.to_string());
    format!("term={} vote={vote}", hard_state.term)
}

/// Read contexts in trace form: `#3 #4`.
fn show_contexts(contexts: &[u64]) -> String {
    let shown: Vec<String> = contexts.iter().map(|context| format!("#{context}")).collect();
    shown.join(" ")
}

/// A packet in trace form.
fn show_packet(packet: &Packet) -> String {
    match packet {
        Packet::Raft(message) => show_message(message),
        Packet::Forward { from, to, request } => format!(
            "{from} → {to} forward c{}.{} {}",
            request.client, request.sequence, request.operation
        ),
        Packet::ChunkRequest { from, to, fetch, index, offset } => {
            format!("{from} → {to} chunk? snapshot {index} offset {offset} (fetch {fetch})")
        }
        Packet::Chunk { from, to, fetch, offset, reply } => match reply {
            ChunkReply::Data { file_len, bytes, .. } => format!(
                "{from} → {to} chunk offset {offset} +{} of {file_len} (fetch {fetch})",
                bytes.len()
            ),
            ChunkReply::NotFound => format!("{from} → {to} chunk: not found (fetch {fetch})"),
        },
    }
}
