//! The Raft node: its state, its inputs, and the batch of actions it returns.
//!
//! State that belongs to one role lives in that role's variant of `Role`; everything in
//! [`Node`] itself is meaningful in every role. Elections are in `election.rs`, log replication
//! in `replication.rs`; this file holds the inputs, the term rules of Raft §5.1 that apply to
//! every message, the role transitions, and the assembly of the action batch.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::action::{Action, Event, ReadPurpose, ReadRequest, RoleKind};
use crate::config::Config;
use crate::error::{ConfigError, ProposeError, ReportError, RestoreError, StepError};
use crate::log::{LogState, RaftLog};
use crate::membership::{Membership, MembershipLog};
use crate::message::{Body, Message};
use crate::progress::Progress;
use crate::read_index::ReadRounds;
use crate::rng::Rng;
use crate::snapshot::SnapshotMeta;
use crate::transfer::Transfer;
use crate::types::{Entry, HardState, Index, NodeId, Payload, Term};

/// What a node restarts from: everything its driver kept durable. `Restored::default()` is a
/// brand-new node with an empty log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// The durable term and vote.
    pub hard_state: HardState,
    /// The summary of the durable log. With a snapshot, the log must pass through it: the
    /// snapshot's index lies between the log's compaction point and its last index, and the log's
    /// term there is the snapshot's (contract item 12).
    pub log: LogState,
    /// The newest durable snapshot, which the state machine is restored from; `None` if there
    /// is none, in which case the log must never have been compacted (start at index 1).
    pub snapshot: Option<SnapshotMeta>,
    /// Every configuration entry ([`Payload::Membership`]) in the durable log after the
    /// snapshot, as `(index, configuration)` in index order: the configuration in force is the
    /// latest of them, else the snapshot's, else the bootstrap [`Config::voters`]. The driver
    /// finds them while opening its log (skiff-wal's recovery collects them). Entries at or
    /// below the snapshot's index may be included; they are ignored.
    pub memberships: Vec<(Index, Membership)>,
    /// A commit index the driver saved (it may lag: 0 is always safe). It must be a value of
    /// [`Node::durable_commit`], never the bare commit index: a follower can learn that an index
    /// is committed before its own copy of that entry is durable, and after a crash its disk may
    /// hold a different, superseded entry there. Entries up to it are re-applied unless
    /// `applied` says the state machine already has them.
    pub commit: Index,
    /// The last index the state machine had applied (and made durable, if it is durable). The
    /// core takes the larger of this and the snapshot's index: a state machine restored from a
    /// snapshot has applied everything it covers.
    pub applied: Index,
}

/// Why building a node failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NewNodeError {
    /// The configuration is inconsistent.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The restored state is inconsistent.
    #[error(transparent)]
    Restore(#[from] RestoreError),
}

/// What a message from a higher term does to our term.
enum HigherTerm {
    /// Drop the message.
    Ignore,
    /// Handle the message without changing our term.
    KeepOurs,
    /// Become a follower in the message's term, then handle it.
    Adopt,
}

/// The votes collected in one (pre-)election.
#[derive(Debug, Default)]
pub(crate) struct Campaign {
    /// Each voter's answer so far; this node's own vote is included.
    pub(crate) votes: BTreeMap<NodeId, bool>,
}

/// A follower's own state.
#[derive(Debug, Default)]
pub(crate) struct Follower {
    /// The leader of the current term, once heard from.
    pub(crate) leader: Option<NodeId>,
    /// The highest index known to match the leader's log in this term: the end of the last
    /// accepted `Append`. Only entries up to it (and durable) may be acknowledged.
    pub(crate) matched: Index,
    /// The match index last acknowledged to the leader.
    pub(crate) acknowledged: Index,
    /// Reads asked of this follower ([`Node::forward_read_index`]) not yet sent to the leader;
    /// they go in one `ReadIndex` request when the action batch is assembled.
    pub(crate) unsent_reads: Vec<u64>,
    /// Reads sent to the leader, by request number, waiting for its `ReadIndexResponse`.
    pub(crate) forwarded_reads: BTreeMap<u64, Vec<u64>>,
}

/// A leader's own state.
#[derive(Debug)]
pub(crate) struct Leader {
    /// Every other voter's progress.
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    /// Ticks since the last heartbeat broadcast.
    pub(crate) heartbeat_elapsed: u32,
    /// The index of this leader's no-op, the first entry of its term: a read index is never
    /// below it (see `read_index.rs`).
    pub(crate) term_start: Index,
    /// Linearizable reads waiting for leadership to be confirmed.
    pub(crate) reads: ReadRounds,
    /// The leadership transfer under way, if any (see `transfer.rs`).
    pub(crate) transfer: Option<Transfer>,
}

/// The role a node plays, with the state only that role has.
#[derive(Debug)]
pub(crate) enum Role {
    /// Follows a leader, or waits for one.
    Follower(Follower),
    /// Polls for pre-votes before campaigning (Raft thesis §9.6).
    PreCandidate(Campaign),
    /// Campaigns for votes (Raft §5.2).
    Candidate(Campaign),
    /// Leads the cluster.
    Leader(Leader),
}

impl Role {
    /// The role's kind.
    pub(crate) fn kind(&self) -> RoleKind {
        match self {
            Role::Follower(_) => RoleKind::Follower,
            Role::PreCandidate(_) => RoleKind::PreCandidate,
            Role::Candidate(_) => RoleKind::Candidate,
            Role::Leader(_) => RoleKind::Leader,
        }
    }
}

/// A snapshot of a node's state for tests, tools and dashboards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The node's id.
    pub id: NodeId,
    /// The node's role.
    pub role: RoleKind,
    /// The current term.
    pub term: Term,
    /// The vote cast in the current term.
    pub vote: Option<NodeId>,
    /// The leader of the current term, if known (this node, when leading).
    pub leader: Option<NodeId>,
    /// The last index in the log.
    pub last_index: Index,
    /// The term of the last entry.
    pub last_term: Term,
    /// The highest durable index.
    pub durable: Index,
    /// The commit index.
    pub commit: Index,
    /// The highest index handed to the state machine.
    pub applied: Index,
    /// The index of the latest snapshot (0 if none).
    pub snapshot: Index,
    /// The configuration in force.
    pub membership: Membership,
    /// The first index in the log; entries before it were compacted away.
    pub first_index: Index,
    /// Per follower, when leading: (match index, next index, state name).
    pub progress: BTreeMap<NodeId, (Index, Index, &'static str)>,
}

/// A Raft node: the whole protocol, with no I/O. See the crate documentation for how to drive it.
#[derive(Debug)]
pub struct Node {
    /// This node's configuration, validated.
    pub(crate) config: Config,
    /// The current term (Raft Figure 2); never decreases.
    pub(crate) term: Term,
    /// The vote cast in `term`; at most one per term.
    pub(crate) vote: Option<NodeId>,
    /// The role and its state.
    pub(crate) role: Role,
    /// The log as far as the core needs it.
    pub(crate) log: RaftLog,
    /// The highest index handed to the driver in an `Apply`, or covered by the snapshot the
    /// state machine holds; never above the commit index.
    pub(crate) applied: Index,
    /// The latest snapshot (taken, installed or restored from): its index never decreases, and
    /// the log is never compacted beyond it.
    pub(crate) snapshot: Option<SnapshotMeta>,
    /// The snapshot a `FetchSnapshot` asked the driver for, until it reports the install or
    /// its failure. While it is set, the log does not change (see `snapshot.rs`).
    pub(crate) fetching: Option<SnapshotMeta>,
    /// A `FetchSnapshot` produced since the last `take_actions`: from whom, and what.
    pub(crate) fetch: Option<(NodeId, SnapshotMeta)>,
    /// Whether an `Apply` read is outstanding.
    pub(crate) apply_reading: bool,
    /// With lease reads, the ticks left during which this node, just started, ignores vote
    /// requests: it may have acknowledged a leader's lease before it crashed.
    pub(crate) startup_lease_guard: u32,
    /// Ticks since the last reset: the check-quorum period for leaders; for everyone else the
    /// election timer, restarted when the node hears from a leader, grants a vote or
    /// campaigns — and only then: a node that may not campaign lets it run on past the
    /// timeout, so it always measures how long ago this node last heard from its leader (the
    /// leader lease of `in_leader_lease` depends on it).
    pub(crate) election_elapsed: u32,
    /// The randomized election timeout in force, in `[election_timeout, 2 * election_timeout)`.
    pub(crate) randomized_timeout: u32,
    /// The source of randomized timeouts, seeded from the configuration.
    pub(crate) rng: Rng,
    /// The configurations this node knows of: as of its snapshot, and every configuration
    /// entry in its log after it (see `membership.rs`).
    pub(crate) memberships: MembershipLog,
    /// The configuration in force: the latest of `memberships`.
    pub(crate) membership: Membership,
    /// Every other member (voters, outgoing voters, learners), in order: whom a leader
    /// replicates to. Derived from `membership`, kept to avoid rebuilding it on every batch.
    pub(crate) peers: Vec<NodeId>,
    /// The term and vote last handed to the driver for persisting.
    pub(crate) persisted_hard_state: HardState,
    /// Messages produced since the last `take_actions`.
    pub(crate) outbox: Vec<Message>,
    /// Reads requested since the last `take_actions`.
    pub(crate) reads: Vec<ReadRequest>,
    /// Committed entries to apply, produced since the last `take_actions`.
    pub(crate) to_apply: Vec<Entry>,
    /// Read confirmations and failures produced since the last `take_actions`.
    pub(crate) ready_reads: Vec<Action>,
    /// Events produced since the last `take_actions`.
    pub(crate) events: Vec<Event>,
}

impl Node {
    /// A node with `config`, restarting from `restored` (`Restored::default()` for a new node).
    pub fn new(config: Config, restored: Restored) -> Result<Node, NewNodeError> {
        config.validate()?;
        let mut log = RaftLog::restore(&restored.log, restored.commit, config.max_cached_bytes)?;
        Self::check_restored_snapshot(&log, restored.snapshot.as_ref())?;
        let snapshot_index = restored.snapshot.as_ref().map_or(Index(0), |meta| meta.index);
        if snapshot_index > log.commit() {
            // The snapshot's entries are committed, and the log holds the last of them.
            log.commit_to(snapshot_index);
        }
        if restored.applied > log.commit() {
            return Err(RestoreError {
                reason: format!(
                    "applied index {} is beyond the commit index {}",
                    restored.applied,
                    log.commit()
                ),
            }
            .into());
        }
        let memberships = Self::restore_memberships(&config, &log, &restored)?;
        let (_, membership) = memberships.latest();
        let membership = membership.clone();
        let mut rng = Rng::new(config.seed);
        let randomized_timeout = Self::draw_timeout(&mut rng, config.election_timeout);
        // The state machine was restored from the snapshot: nothing at or below it is applied
        // again (contract item 5).
        let applied = restored.applied.max(snapshot_index);
        Ok(Node {
            term: restored.hard_state.term,
            vote: restored.hard_state.vote,
            role: Role::Follower(Follower::default()),
            log,
            applied,
            snapshot: restored.snapshot,
            fetching: None,
            fetch: None,
            apply_reading: false,
            startup_lease_guard: if config.lease_reads { config.election_timeout } else { 0 },
            election_elapsed: 0,
            randomized_timeout,
            rng,
            peers: membership.members().into_iter().filter(|id| *id != config.id).collect(),
            memberships,
            membership,
            persisted_hard_state: restored.hard_state,
            outbox: Vec::new(),
            reads: Vec::new(),
            to_apply: Vec::new(),
            ready_reads: Vec::new(),
            events: Vec::new(),
            config,
        })
    }

    /// Checks that the restored log passes through the restored snapshot (contract item 12), and
    /// that a compacted log has a snapshot standing for what was compacted.
    fn check_restored_snapshot(
        log: &RaftLog,
        snapshot: Option<&SnapshotMeta>,
    ) -> Result<(), RestoreError> {
        let invalid = |reason: String| Err(RestoreError { reason });
        let compacted = log.first_index().prev();
        let Some(meta) = snapshot else {
            if compacted > Index(0) {
                return invalid(format!(
                    "the log is compacted up to {compacted} without a snapshot"
                ));
            }
            return Ok(());
        };
        if meta.index == Index(0) {
            return invalid("a snapshot covers at least index 1".into());
        }
        if meta.index < compacted {
            return invalid(format!(
                "entries {} to {compacted} are neither in the snapshot nor in the log",
                meta.index.next()
            ));
        }
        match log.term(meta.index) {
            Some(term) if term == meta.term => {}
            Some(term) => {
                return invalid(format!("snapshot {meta} but the log has term {term} there"));
            }
            None => {
                let last = log.last_index();
                return invalid(format!("snapshot {meta} but the log ends at {last}"));
            }
        }
        if let Err(reason) = meta.membership.validate() {
            return invalid(format!("snapshot {meta}: {reason}"));
        }
        Ok(())
    }

    /// The configurations a restarting node knows: the snapshot's (or the bootstrap one) and
    /// the configuration entries of its log after the snapshot, which must be valid, in order,
    /// and in the log.
    fn restore_memberships(
        config: &Config,
        log: &RaftLog,
        restored: &Restored,
    ) -> Result<MembershipLog, RestoreError> {
        let mut memberships = match &restored.snapshot {
            Some(meta) => MembershipLog::new(meta.index, meta.membership.clone()),
            None => MembershipLog::new(Index(0), Membership::new(config.voters.iter().copied())),
        };
        let base = restored.snapshot.as_ref().map_or(Index(0), |meta| meta.index);
        for (index, membership) in &restored.memberships {
            if *index <= base {
                continue;
            }
            let invalid = |reason: String| {
                Err(RestoreError { reason: format!("configuration entry {index}: {reason}") })
            };
            if *index < log.first_index() || *index > log.last_index() {
                return invalid("not in the log".into());
            }
            if *index <= memberships.latest().0 {
                return invalid("out of order".into());
            }
            if let Err(reason) = membership.validate() {
                return invalid(reason);
            }
            memberships.append(*index, membership.clone());
        }
        Ok(memberships)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The current role.
    pub fn role(&self) -> RoleKind {
        self.role.kind()
    }

    /// The leader of the current term, if known.
    pub fn leader(&self) -> Option<NodeId> {
        match &self.role {
            Role::Leader(_) => Some(self.config.id),
            Role::Follower(follower) => follower.leader,
            Role::PreCandidate(_) | Role::Candidate(_) => None,
        }
    }

    /// The commit index.
    pub fn commit(&self) -> Index {
        self.log.commit()
    }

    /// The highest index that is both committed and durable on this node: the commit index a
    /// driver may save and restore with (see [`Restored::commit`]).
    pub fn durable_commit(&self) -> Index {
        self.log.commit().min(self.log.durable())
    }

    /// A snapshot of the node's state.
    pub fn status(&self) -> Status {
        let progress = match &self.role {
            Role::Leader(leader) => leader
                .progress
                .iter()
                .map(|(id, p)| (*id, (p.match_index, p.next_index, p.state_name())))
                .collect(),
            _ => BTreeMap::new(),
        };
        Status {
            id: self.config.id,
            role: self.role.kind(),
            term: self.term,
            vote: self.vote,
            leader: self.leader(),
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            durable: self.log.durable(),
            commit: self.log.commit(),
            applied: self.applied,
            snapshot: self.snapshot_index(),
            membership: self.membership.clone(),
            first_index: self.log.first_index(),
            progress,
        }
    }

    /// One tick of logical time: drives election timeouts, heartbeats and check-quorum.
    pub fn tick(&mut self) {
        // Saturating: a node that may not campaign can wait for a leader indefinitely.
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        self.startup_lease_guard = self.startup_lease_guard.saturating_sub(1);
        if matches!(self.role, Role::Leader(_)) {
            self.tick_leader();
        } else if self.election_elapsed >= self.randomized_timeout && self.may_campaign() {
            // Campaigning restarts the timer with a freshly drawn timeout.
            self.campaign();
        }
        // A node that may not campaign (a learner, a removed node, a node that joined, a
        // voter its own log does not name yet) leaves its timer running past the timeout, as
        // etcd does: its leader's lease then ends for it too (`in_leader_lease`), and it
        // answers the vote requests of the nodes that may campaign. Restarting the timer kept
        // it inside the lease for good when its timeout was drawn at the minimum: simulator
        // seed 1756's promoted voter, empty and unable to campaign, ignored every vote request
        // after its leader crashed, and no leader could be elected without its vote.
    }

    /// Proposes a command. On the leader it is appended to the log and its index returned; it
    /// is committed once a quorum holds it durably, and then comes back in an `Apply`.
    pub fn propose(&mut self, command: Bytes) -> Result<Index, ProposeError> {
        let Role::Leader(leader) = &self.role else {
            return Err(ProposeError::NotLeader { leader: self.leader(), term: self.term });
        };
        if let Some(transfer) = &leader.transfer {
            return Err(ProposeError::TransferInProgress { target: transfer.target });
        }
        Ok(self.append_as_leader(Payload::Command(command)))
    }

    /// Handles a message from another node. A malformed or misaddressed message is refused
    /// with an error and changes nothing.
    pub fn step(&mut self, message: Message) -> Result<(), StepError> {
        self.validate(&message)?;
        if message.term > self.term {
            match self.higher_term_rule(&message) {
                HigherTerm::Ignore => return Ok(()),
                HigherTerm::KeepOurs => {}
                HigherTerm::Adopt => {
                    let leader = match message.body {
                        Body::Append { .. }
                        | Body::Heartbeat { .. }
                        | Body::InstallSnapshot { .. } => Some(message.from),
                        _ => None,
                    };
                    self.become_follower(message.term, leader);
                }
            }
        } else if message.term < self.term {
            self.answer_stale(message);
            return Ok(());
        }
        match message.body {
            Body::PreVote { last_index, last_term } => {
                self.handle_vote_request(message.from, message.term, last_index, last_term, true);
            }
            Body::Vote { last_index, last_term, .. } => {
                self.handle_vote_request(message.from, message.term, last_index, last_term, false);
            }
            Body::TimeoutNow => self.handle_timeout_now(message.from),
            Body::ReadIndex { request } => self.handle_read_index_request(message.from, request),
            Body::ReadIndexResponse { request, index } => {
                self.handle_read_index_response(message.from, request, index);
            }
            Body::PreVoteResponse { granted } => {
                self.handle_vote_response(message.from, message.term, granted, true);
            }
            Body::VoteResponse { granted } => {
                self.handle_vote_response(message.from, message.term, granted, false);
            }
            Body::Append { prev_index, prev_term, entries, commit } => {
                self.follow(message.from);
                self.handle_append(message.from, prev_index, prev_term, entries, commit);
            }
            Body::Heartbeat { commit, read_round } => {
                self.follow(message.from);
                self.handle_heartbeat(message.from, commit, read_round);
            }
            Body::AppendResponse(outcome) => self.handle_append_response(message.from, outcome)?,
            Body::HeartbeatResponse { read_round } => {
                self.handle_heartbeat_response(message.from, read_round);
            }
            Body::InstallSnapshot { meta } => {
                self.follow(message.from);
                self.handle_install_snapshot(message.from, meta);
            }
        }
        Ok(())
    }

    /// The driver completed the `PersistEntries` write whose last entry is `index` at `term`,
    /// and every write handed over before it (contract item 2). Only what no still-pending write
    /// will overwrite counts as durable; a report matching no pending write (a duplicate) is
    /// ignored.
    pub fn persisted(&mut self, index: Index, term: Term) {
        if !self.log.persisted(index, term) {
            return;
        }
        match &self.role {
            Role::Leader(_) => self.maybe_commit(),
            Role::Follower(_) => self.acknowledge(false),
            Role::PreCandidate(_) | Role::Candidate(_) => {}
        }
    }

    /// The driver read the entries a `ReadEntries` asked for (contract item 4).
    pub fn entries_read(
        &mut self,
        request: ReadRequest,
        entries: Vec<Entry>,
    ) -> Result<(), ReportError> {
        if request.low < self.log.first_index() {
            // Asked for before a compaction or a snapshot install: the core forgot the request
            // then (contract item 10), and the entries are no longer its log's to check.
            return Ok(());
        }
        if let ReadPurpose::Replicate { term, .. } = request.purpose
            && (term != self.term || !matches!(self.role, Role::Leader(_)))
        {
            // Asked for by a leadership that has ended: the next leader may have truncated the
            // log since (Raft §5.3), so the entries, read before or after that, need not be
            // ours any more, and nobody wants them. A node leads at most once per term, and a
            // leader never truncates its own log, so a read of the leadership still in place
            // is checked in full below.
            return Ok(());
        }
        let bad_read = || ReportError::BadRead { low: request.low, high: request.high };
        let consecutive = entries
            .iter()
            .enumerate()
            .all(|(offset, entry)| entry.index == request.low.plus(offset as u64));
        let in_range = entries.last().is_none_or(|entry| entry.index < request.high);
        // Paired check: the entries must be the ones our log records at those indexes, so a
        // storage bug cannot make us apply or replicate something else.
        let ours = entries.iter().all(|entry| self.log.term(entry.index) == Some(entry.term));
        if entries.is_empty() || !consecutive || !in_range || !ours {
            return Err(bad_read());
        }
        match request.purpose {
            ReadPurpose::Apply => self.apply_read(request.low, entries),
            ReadPurpose::Replicate { to, term } => {
                self.replicate_read(to, term, request.low, entries);
            }
        }
        Ok(())
    }

    /// Starts an election now, as if the election timeout had fired (with pre-vote if
    /// configured). Tests use it to pick a leader. Does nothing on a leader, or on a node that
    /// may not campaign (see [`Node::may_campaign`]: learners never do).
    pub fn campaign(&mut self) {
        if matches!(self.role, Role::Leader(_)) || !self.may_campaign() {
            return;
        }
        if self.config.pre_vote {
            self.become_pre_candidate();
        } else {
            self.become_candidate(false);
        }
    }

    /// Everything the driver must do for the inputs since the last call, in the order the crate
    /// documentation's contract requires: hard state, then entries to persist, then messages,
    /// reads, entries to apply, and events.
    pub fn take_actions(&mut self) -> Vec<Action> {
        if matches!(self.role, Role::Leader(_)) {
            self.replicate_all();
        }
        self.send_forwarded_reads();
        self.release_applies();
        let hard_state = HardState { term: self.term, vote: self.vote };
        let hard_state_changed = hard_state != self.persisted_hard_state;
        let entries = self.log.take_unpersisted();
        let count = usize::from(hard_state_changed)
            + usize::from(entries.is_some())
            + self.outbox.len()
            + self.reads.len()
            + usize::from(self.fetch.is_some())
            + usize::from(!self.to_apply.is_empty())
            + self.ready_reads.len()
            + self.events.len();
        if count == 0 {
            return Vec::new();
        }
        let mut actions = Vec::with_capacity(count);
        if hard_state_changed {
            self.persisted_hard_state = hard_state;
            actions.push(Action::PersistHardState(hard_state));
        }
        if let Some(entries) = entries {
            actions.push(Action::PersistEntries(entries));
        }
        actions.extend(self.outbox.drain(..).map(Action::Send));
        actions.extend(self.reads.drain(..).map(Action::ReadEntries));
        if let Some((from, meta)) = self.fetch.take() {
            actions.push(Action::FetchSnapshot { from, meta });
        }
        if !self.to_apply.is_empty() {
            actions.push(Action::Apply(std::mem::take(&mut self.to_apply)));
        }
        // After the applies of the same batch: a read index is served once applied.
        actions.append(&mut self.ready_reads);
        actions.extend(self.events.drain(..).map(Action::Event));
        actions
    }

    // ----- Messages and the term rules of Raft §5.1 -----

    /// Refuses messages that could only come from a confused or foreign peer: misaddressed, from
    /// ourselves or id 0, `Append`s whose entries are not consecutive, whose terms go backwards
    /// or beyond the message's, or whose configurations are invalid, and snapshot offers that
    /// could not be of a committed prefix. A sender outside our configuration is accepted: a
    /// leader elected under a configuration our log does not hold yet is one.
    fn validate(&self, message: &Message) -> Result<(), StepError> {
        if message.to != self.config.id {
            return Err(StepError::WrongRecipient { to: message.to, this: self.config.id });
        }
        if message.from == self.config.id || message.from.0 == 0 {
            return Err(StepError::InvalidSender { from: message.from });
        }
        if let Body::Append { prev_index, prev_term, entries, .. } = &message.body {
            let malformed =
                |reason: String| Err(StepError::Malformed { from: message.from, reason });
            let mut previous = (*prev_index, *prev_term);
            for entry in entries {
                if entry.index != previous.0.next() {
                    return malformed(format!("entry {} follows {}", entry.index, previous.0));
                }
                if entry.term < previous.1 || entry.term > message.term {
                    return malformed(format!("entry {} has term {}", entry.index, entry.term));
                }
                if let Payload::Membership(membership) = &entry.payload
                    && let Err(reason) = membership.validate()
                {
                    return malformed(format!("entry {}: {reason}", entry.index));
                }
                previous = (entry.index, entry.term);
            }
        }
        if let Body::InstallSnapshot { meta } = &message.body {
            let malformed =
                |reason: String| Err(StepError::Malformed { from: message.from, reason });
            if meta.index == Index(0) || meta.term == Term(0) || meta.term > message.term {
                return malformed(format!("snapshot {meta} offered in term {}", message.term));
            }
            if let Err(reason) = meta.membership.validate() {
                return malformed(format!("snapshot {meta}: {reason}"));
            }
        }
        Ok(())
    }

    /// What to do with a message from a higher term. Under check-quorum, a node that heard
    /// from a live leader within the election timeout ignores vote requests (thesis §4.2.3): a
    /// rejoining node must not depose a leader a quorum still follows. A pre-vote and a granted
    /// pre-vote answer carry a proposed term, not one anybody holds, so they are handled in
    /// ours. A vote request marked as a leadership transfer is never ignored: the leader asked
    /// for it (thesis §3.10). Everything else makes us adopt the newer term (Raft §5.1).
    fn higher_term_rule(&self, message: &Message) -> HigherTerm {
        match message.body {
            // A vote request for a leadership transfer was invited by the leader itself.
            Body::Vote { transfer: true, .. } => HigherTerm::Adopt,
            Body::Vote { .. } | Body::PreVote { .. } if self.in_leader_lease() => {
                HigherTerm::Ignore
            }
            Body::PreVote { .. } | Body::PreVoteResponse { granted: true } => HigherTerm::KeepOurs,
            _ => HigherTerm::Adopt,
        }
    }

    /// Whether this node heard from a leader (or is one) within the election timeout — or,
    /// with lease reads, started less than an election timeout ago (see `read_index.rs`).
    /// Never longer (thesis §4.2.3): once an election timeout has passed without a word from
    /// the leader, the lease is over for every node, whether or not it may campaign (see
    /// [`Node::tick`]); a node that ignored vote requests for good could leave a cluster that
    /// needs its vote without a leader forever.
    fn in_leader_lease(&self) -> bool {
        let heard_from_leader =
            self.leader().is_some() && self.election_elapsed < self.config.election_timeout;
        self.config.check_quorum && (heard_from_leader || self.startup_lease_guard > 0)
    }

    /// Answers a message from an older term with one that carries our term, so a deposed leader
    /// or a stale candidate learns it is behind (Raft §5.1). Other stale messages are dropped.
    fn answer_stale(&mut self, message: Message) {
        let body = match message.body {
            Body::Append { .. } | Body::Heartbeat { .. } | Body::InstallSnapshot { .. } => {
                Body::HeartbeatResponse { read_round: 0 }
            }
            Body::PreVote { .. } => Body::PreVoteResponse { granted: false },
            Body::Vote { .. } => Body::VoteResponse { granted: false },
            Body::ReadIndex { request } => Body::ReadIndexResponse { request, index: None },
            // Responses, and a TimeoutNow from a deposed leader, need no answer.
            _ => return,
        };
        self.send(message.from, body);
    }

    /// Queues a message in the current term.
    pub(crate) fn send(&mut self, to: NodeId, body: Body) {
        self.send_with_term(to, self.term, body);
    }

    /// Queues a message with an explicit term (pre-votes carry a proposed term).
    pub(crate) fn send_with_term(&mut self, to: NodeId, term: Term, body: Body) {
        self.outbox.push(Message { from: self.config.id, to, term, body });
    }

    // ----- Role transitions -----

    /// Becomes a follower in `term` (which must not be older), following `leader` if known.
    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        assert!(term >= self.term, "term goes backwards: {} -> {term}", self.term);
        let previous_role = self.role.kind();
        let previous_leader = self.leader();
        let term_changed = term > self.term;
        if term_changed {
            self.term = term;
            self.vote = None;
            self.events.push(Event::TermChanged { term });
        }
        let previous = std::mem::replace(
            &mut self.role,
            Role::Follower(Follower { leader, ..Follower::default() }),
        );
        self.fail_reads_of(previous);
        self.reset_election_timer();
        if previous_role != RoleKind::Follower || term_changed {
            self.events.push(Event::RoleChanged { role: RoleKind::Follower, term });
        }
        if previous_leader != leader || term_changed {
            self.events.push(Event::LeaderChanged { leader, term });
        }
    }

    /// Fails the reads a role was waiting on, as it is left: a leader's unconfirmed reads, and
    /// a follower's reads sent to (or meant for) its leader — with another role, term or
    /// leader, their answers would never come or could not be trusted.
    pub(crate) fn fail_reads_of(&mut self, previous: Role) {
        match previous {
            Role::Leader(deposed) => self.fail_reads(deposed.reads.unconfirmed()),
            Role::Follower(follower) => {
                let mut contexts = follower.unsent_reads;
                contexts.extend(follower.forwarded_reads.into_values().flatten());
                if !contexts.is_empty() {
                    self.ready_reads.push(Action::ReadFailed { contexts });
                }
            }
            Role::PreCandidate(_) | Role::Candidate(_) => {}
        }
    }

    /// Records that `leader` leads the current term, turning a (pre-)candidate into its
    /// follower. Two leaders in one term would break election safety (Raft §5.2).
    fn follow(&mut self, leader: NodeId) {
        match &mut self.role {
            Role::Leader(_) => {
                panic!("two leaders in term {}: {} and {leader}", self.term, self.config.id)
            }
            Role::Follower(follower) => {
                if let Some(known) = follower.leader {
                    assert!(
                        known == leader,
                        "two leaders in term {}: {known} and {leader}",
                        self.term
                    );
                } else {
                    follower.leader = Some(leader);
                    self.events
                        .push(Event::LeaderChanged { leader: Some(leader), term: self.term });
                }
            }
            Role::PreCandidate(_) | Role::Candidate(_) => {
                self.become_follower(self.term, Some(leader));
            }
        }
        // Hearing from the leader restarts the election timer and renews its lease.
        self.election_elapsed = 0;
    }

    /// Becomes the leader of the current term: every follower is probed from the end of our
    /// log, and a no-op entry of the new term is appended so that earlier entries can be
    /// committed through it (Raft §5.4.2, §8).
    pub(crate) fn become_leader(&mut self) {
        assert!(
            self.vote == Some(self.config.id),
            "leader of term {} without voting for itself",
            self.term
        );
        // A node fetching a snapshot lacks a committed entry: no quorum can have elected it
        // (Raft §5.4.1), and its log must stay still until the install.
        assert!(
            self.fetching.is_none(),
            "{} won term {} while fetching snapshot {:?}",
            self.config.id,
            self.term,
            self.fetching
        );
        let next_index = self.log.last_index().next();
        let progress = self.peers.iter().map(|id| (*id, Progress::new(next_index))).collect();
        self.role = Role::Leader(Leader {
            progress,
            heartbeat_elapsed: 0,
            term_start: next_index,
            reads: ReadRounds::default(),
            transfer: None,
        });
        self.election_elapsed = 0;
        self.events.push(Event::RoleChanged { role: RoleKind::Leader, term: self.term });
        self.events.push(Event::LeaderChanged { leader: Some(self.config.id), term: self.term });
        let noop = self.append_as_leader(Payload::Noop);
        assert_eq!(noop, next_index, "the no-op is the first entry of the term");
    }

    /// Restarts the election timer with a freshly drawn timeout.
    pub(crate) fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        self.randomized_timeout = Self::draw_timeout(&mut self.rng, self.config.election_timeout);
    }

    /// A random timeout in `[minimum, 2 * minimum)` (Raft §5.2).
    fn draw_timeout(rng: &mut Rng, minimum: u32) -> u32 {
        rng.between(u64::from(minimum), 2 * u64::from(minimum)) as u32
    }

    /// Appends one entry of the current term to the leader's log; returns its index.
    pub(crate) fn append_as_leader(&mut self, payload: Payload) -> Index {
        let index = self.log.last_index().next();
        self.log.append(vec![Entry { index, term: self.term, payload }]);
        // A leader alone in its cluster commits as soon as the entry is durable; with peers the
        // entry goes out at the next take_actions, batched with whatever else was proposed.
        index
    }

    /// Hands committed, durable entries to the state machine, from the cache or by a read.
    fn release_applies(&mut self) {
        let mut ready = self.log.commit().min(self.log.durable());
        if self.config.sabotage.apply_beyond_commit {
            ready = self.log.durable();
        }
        if self.apply_reading || self.applied >= ready {
            return;
        }
        let low = self.applied.next();
        let high = ready.next();
        match self.log.cached(low, high, self.config.max_apply_bytes) {
            Some(entries) => self.queue_apply(entries),
            None => {
                self.apply_reading = true;
                self.reads.push(ReadRequest {
                    low,
                    high,
                    max_bytes: self.config.max_apply_bytes,
                    purpose: ReadPurpose::Apply,
                });
            }
        }
    }

    /// Records entries read for applying, if they are still the next ones to apply.
    fn apply_read(&mut self, low: Index, entries: Vec<Entry>) {
        if !self.apply_reading || low != self.applied.next() {
            return;
        }
        self.apply_reading = false;
        let ready = self.log.commit().min(self.log.durable());
        let entries: Vec<Entry> =
            entries.into_iter().filter(|entry| entry.index <= ready).collect();
        if !entries.is_empty() {
            self.queue_apply(entries);
        }
    }

    /// Queues entries for the next `Apply` action.
    fn queue_apply(&mut self, entries: Vec<Entry>) {
        let snapshot = self.snapshot_index();
        for entry in &entries {
            // The state machine holds the snapshot's state: an entry it covers applied again
            // would be applied twice (contract item 5).
            assert!(
                entry.index > snapshot,
                "applying {} at or below the snapshot index {snapshot}",
                entry.index
            );
            assert!(
                entry.index == self.applied.next(),
                "applying {} out of order after {}",
                entry.index,
                self.applied
            );
            assert!(
                entry.index <= self.log.commit() || self.config.sabotage.apply_beyond_commit,
                "applying {} beyond the commit index {}",
                entry.index,
                self.log.commit()
            );
            self.applied = entry.index;
        }
        self.to_apply.extend(entries);
    }
}
