//! # Scenario scripts: the protocol core told as stories
//!
//! Each file in `tests/scenarios/` is a [goldenscript] that builds a [`LocalCluster`], drives it
//! step by step, and records what happened: every message sent, every write, read and apply,
//! every event. The file name states the claim; `#` comments say what to look for. The recorded
//! output is the expectation: a change in behaviour shows up as a diff to review like code.
//!
//! Regenerate the outputs with
//! `UPDATE_GOLDENFILES=1 cargo test -p skiff-raft --test scenarios`, then read every changed
//! line against the Raft paper before committing it. A new script file needs a rebuild of this
//! test (`touch crates/raft/tests/scenarios.rs`): the list of files is read at compile time.
//!
//! ## The commands
//! Node ids are plain numbers (`1` is the node the trace calls `n1`). Nothing happens unless a
//! command asks for it: messages wait in flight until delivered, time moves only by `tick`, and
//! writes wait until persisted unless the node auto-persists (the default).
//!
//! - `cluster nodes=N [pre_vote=B] [check_quorum=B] [election_timeout=T]
//!   [heartbeat_interval=H] [max_append_entries=E] [max_append_bytes=B]
//!   [max_inflight_appends=W] [max_cached_bytes=C] [max_learner_lag=L] [lease_reads=B]
//!   [clock_drift_bound=D] [eager_commit=B]`: a new cluster of nodes 1..=N with the
//!   default configuration (`Config::new`) changed as given. Node `i` seeds its election
//!   timeouts with `i`, so runs are reproducible.
//! - `campaign ID`: the node starts an election now (`Node::campaign`), with pre-vote if on.
//! - `tick ID... [n=K]`: K rounds (default 1); in each, every listed node ticks once.
//! - `propose ID COMMAND...`: proposes the commands in order, then lets the node act once, so
//!   they travel together. Prints each entry proposed, or why the proposal was refused.
//! - `add_node ID`: starts a new, empty node that joins the cluster: it has no initial
//!   configuration, so it never campaigns, and waits for a leader that added it
//!   (`LocalCluster::add_node`).
//! - `change ID [add_voter=IDS] [add_learner=IDS] [remove=IDS] [promote=IDS]`: asks the node
//!   for one membership change (`Node::change_membership`) made of these changes, where `IDS`
//!   is one id or several joined by `/` (`add_voter=4/5`); then lets the node act once. Prints
//!   the configuration entry appended, or why the change was refused.
//! - `membership [ID...]`: the configuration in force on each node (all by default).
//! - `transfer ID [to=ID]`: asks the leader to transfer leadership (`Node::transfer_leadership`)
//!   to the node named, or to the most up-to-date voter; then lets it act once. Prints the
//!   target, or why the transfer was refused.
//! - `read ID CONTEXT...`: asks the node for linearizable reads (`Node::read_index`), one per
//!   context number, then lets it act once. `n1 read ready at 5: [1, 2]` says reads 1 and 2 may
//!   be served once index 5 is applied; `n1 read failed: [3]` that read 3 lost its leader.
//! - `forward_read ID CONTEXT...`: the same through `Node::forward_read_index`: a follower asks
//!   its leader for the read index, and its own `read ready` line says when it may serve them.
//! - `lease_read ID CONTEXT...`: reads under the leader's lease (`Node::lease_read`): ready in
//!   the same batch, or refused with the reason.
//! - `deliver [from=ID] [to=ID] [type=T] [count=K]`: delivers the messages in flight that match
//!   (all of them, or the first K), oldest first; each receiver acts before the next delivery.
//!   Messages sent meanwhile stay in flight. `T` is a message name: `PreVote`,
//!   `PreVoteResponse`, `Vote`, `VoteResponse`, `Append`, `AppendResponse`, `Heartbeat`,
//!   `HeartbeatResponse`, `InstallSnapshot`, `TimeoutNow`, `ReadIndex`, `ReadIndexResponse`.
//! - `drop`, `duplicate`, `reorder`, with the same filters: lose the matching messages; send a
//!   copy of each again (behind everything in flight); reverse their order among themselves.
//! - `stabilize`: delivers and acts until no message is in flight (no ticks pass).
//! - `persist ID [count=K]`: completes the node's oldest K pending writes (default all), and
//!   lets the node act on it.
//! - `auto_persist ID BOOL`: whether the node's writes complete as soon as they are handed over.
//! - `crash ID` / `restart ID`: a crash loses pending writes, a pending snapshot fetch and the
//!   messages in flight to the node; a restart rebuilds the node from its durable storage (the
//!   state machine from its snapshot, if it has one).
//! - `snapshot ID`: the node snapshots its state machine at its applied index, makes it durable
//!   and compacts its log up to it (`Node::snapshot_meta_at`, `snapshot_taken`, `compacted`).
//! - `fetch ID [fail=B]`: completes the node's pending snapshot fetch by copying the snapshot
//!   from the source node's storage and installing it, or fails it with `fail=true` (a fetch
//!   also fails if the source is down or holds another snapshot by then); then lets the node
//!   act. `auto_fetch ID BOOL`: whether fetches complete as soon as they are asked for (the
//!   default).
//! - `cut FROM TO`: drops every message from FROM to TO (one direction), in flight or later.
//!   `partition ID...`: cuts both directions between the listed nodes and all others. `heal`:
//!   restores every link.
//! - `status [ID...]`: term, vote, role, leader, last entry, durable, commit and applied index,
//!   the snapshot index and first log index once there is a snapshot, and a leader's view of
//!   each follower (match index, next index, probe, replicate or snapshot).
//! - `log ID...`: the node's snapshot and compaction point, the entries in its storage, and its
//!   pending writes.
//! - `network`: the messages in flight, oldest first.
//!
//! Every command prints the trace lines the cluster recorded while it ran
//! ([`LocalCluster::take_trace`]): `n1@2 → n3 Append base=1@1 [2@2 noop] commit=1` is a message
//! from n1 in term 2; `n3 persist [...]` a write handed over, `n3 durable 2@2` its completion;
//! `n1 read [2, 5) for n3 in term 2 → [...]` a storage read (or `to apply`); `n3 apply [...]`
//! entries handed to the state machine; `n3 fetch snapshot ...` and `n3 installed snapshot ...`
//! a snapshot transfer; and lines such as
//! `n3 role=leader term=2` or `n3 commit=2` are events.
//!
//! ## Checked after every command
//! Whatever a script does, the cluster must keep Raft's safety properties (Raft Figure 3):
//! at most one leader per term (election safety), and every two nodes' applied entries agree
//! where both have them, durable snapshots included (state machine safety). Each node's durable
//! storage must also be restorable: its log passes through its snapshot. A breach fails the command, and so the script,
//! unless the script expects the failure with `!` (goldenscript's mark for a command that must
//! fail): scenarios named `bug_*` use that to record a known bug, and start failing once it is
//! fixed. Likewise `stabilize` fails if the nodes never fall silent (a livelock), showing the
//! first lines of the endless exchange.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::error::Error;
use std::fmt::Write as _;
use std::path::Path;

use bytes::Bytes;
use skiff_raft::message::entry_list;
use skiff_raft::testkit::LocalCluster;
use skiff_raft::{
    Body, Entry, Index, MembershipChange, Message, NodeId, Payload, ProposeError, ReadIndexError,
    RoleKind,
};

test_each_file::test_each_path! { in "crates/raft/tests/scenarios" => run }

/// Runs one scenario script with a fresh runner.
fn run(path: &Path) {
    goldenscript::run(&mut Runner::default(), path).expect("the scenario script runs");
}

/// The script commands; the module documentation describes each.
#[derive(goldenscript::Command)]
enum Command {
    /// `cluster nodes=N [setting=value...]`
    Cluster {
        #[arg(key)]
        nodes: u64,
        #[arg(key)]
        pre_vote: Option<bool>,
        #[arg(key)]
        check_quorum: Option<bool>,
        #[arg(key)]
        election_timeout: Option<u32>,
        #[arg(key)]
        heartbeat_interval: Option<u32>,
        #[arg(key)]
        max_append_entries: Option<usize>,
        #[arg(key)]
        max_append_bytes: Option<u64>,
        #[arg(key)]
        max_inflight_appends: Option<usize>,
        #[arg(key)]
        max_cached_bytes: Option<u64>,
        #[arg(key)]
        max_learner_lag: Option<u64>,
        #[arg(key)]
        lease_reads: Option<bool>,
        #[arg(key)]
        clock_drift_bound: Option<u32>,
        #[arg(key)]
        eager_commit: Option<bool>,
    },
    /// `campaign ID`
    Campaign(u64),
    /// `tick ID... [n=K]`
    Tick {
        ids: Vec<u64>,
        #[arg(key)]
        n: Option<u32>,
    },
    /// `propose ID COMMAND...`
    Propose { id: u64, commands: Vec<String> },
    /// `add_node ID`
    AddNode(u64),
    /// `change ID [add_voter=IDS] [add_learner=IDS] [remove=IDS] [promote=IDS]`
    Change {
        id: u64,
        #[arg(key)]
        add_voter: Option<String>,
        #[arg(key)]
        add_learner: Option<String>,
        #[arg(key)]
        remove: Option<String>,
        #[arg(key)]
        promote: Option<String>,
    },
    /// `membership [ID...]`
    Membership(#[arg(optional)] Vec<u64>),
    /// `transfer ID [to=ID]`
    Transfer {
        id: u64,
        #[arg(key)]
        to: Option<u64>,
    },
    /// `read ID CONTEXT...`
    Read { id: u64, contexts: Vec<u64> },
    /// `forward_read ID CONTEXT...`
    ForwardRead { id: u64, contexts: Vec<u64> },
    /// `lease_read ID CONTEXT...`
    LeaseRead { id: u64, contexts: Vec<u64> },
    /// `deliver [from=ID] [to=ID] [type=T] [count=K]`
    Deliver(#[arg(optional)] BTreeMap<String, String>),
    /// `drop [from=ID] [to=ID] [type=T] [count=K]`
    Drop(#[arg(optional)] BTreeMap<String, String>),
    /// `duplicate [from=ID] [to=ID] [type=T] [count=K]`
    Duplicate(#[arg(optional)] BTreeMap<String, String>),
    /// `reorder [from=ID] [to=ID] [type=T] [count=K]`
    Reorder(#[arg(optional)] BTreeMap<String, String>),
    /// `stabilize`
    Stabilize,
    /// `persist ID [count=K]`
    Persist {
        id: u64,
        #[arg(key)]
        count: Option<usize>,
    },
    /// `auto_persist ID BOOL`
    AutoPersist(u64, bool),
    /// `snapshot ID`
    Snapshot(u64),
    /// `fetch ID [fail=B]`
    Fetch {
        id: u64,
        #[arg(key)]
        fail: Option<bool>,
    },
    /// `auto_fetch ID BOOL`
    AutoFetch(u64, bool),
    /// `crash ID`
    Crash(u64),
    /// `restart ID`
    Restart(u64),
    /// `cut FROM TO`
    Cut(u64, u64),
    /// `partition ID...`
    Partition(Vec<u64>),
    /// `heal`
    Heal,
    /// `status [ID...]`
    Status(#[arg(optional)] Vec<u64>),
    /// `log ID...`
    Log(Vec<u64>),
    /// `network`
    Network,
}

/// The names of message bodies, as `type=` filters spell them.
const MESSAGE_TYPES: [&str; 12] = [
    "PreVote",
    "PreVoteResponse",
    "Vote",
    "VoteResponse",
    "Append",
    "AppendResponse",
    "Heartbeat",
    "HeartbeatResponse",
    "InstallSnapshot",
    "TimeoutNow",
    "ReadIndex",
    "ReadIndexResponse",
];

/// The name of a message body, as the trace and `type=` filters spell it.
fn type_name(body: &Body) -> &'static str {
    match body {
        Body::PreVote { .. } => "PreVote",
        Body::PreVoteResponse { .. } => "PreVoteResponse",
        Body::Vote { .. } => "Vote",
        Body::VoteResponse { .. } => "VoteResponse",
        Body::Append { .. } => "Append",
        Body::AppendResponse(_) => "AppendResponse",
        Body::Heartbeat { .. } => "Heartbeat",
        Body::HeartbeatResponse { .. } => "HeartbeatResponse",
        Body::InstallSnapshot { .. } => "InstallSnapshot",
        Body::TimeoutNow => "TimeoutNow",
        Body::ReadIndex { .. } => "ReadIndex",
        Body::ReadIndexResponse { .. } => "ReadIndexResponse",
    }
}

/// Which messages in flight a `deliver`, `drop`, `duplicate` or `reorder` applies to.
struct Filter {
    /// Only messages from this node.
    from: Option<NodeId>,
    /// Only messages to this node.
    to: Option<NodeId>,
    /// Only messages with this body (one of `MESSAGE_TYPES`).
    kind: Option<String>,
    /// Only the first this many matching messages, oldest first.
    count: Option<usize>,
}

impl Filter {
    /// Reads `from=`, `to=`, `type=` and `count=`; anything else is a script error.
    fn parse(args: &BTreeMap<String, String>) -> Result<Filter, Box<dyn Error>> {
        let mut filter = Filter { from: None, to: None, kind: None, count: None };
        for (key, value) in args {
            match key.as_str() {
                "from" => filter.from = Some(NodeId(value.parse()?)),
                "to" => filter.to = Some(NodeId(value.parse()?)),
                "type" if MESSAGE_TYPES.contains(&value.as_str()) => {
                    filter.kind = Some(value.clone());
                }
                "type" => return Err(format!("unknown message type {value}").into()),
                "count" => filter.count = Some(value.parse()?),
                _ => return Err(format!("unknown filter {key}").into()),
            }
        }
        Ok(filter)
    }

    /// Whether `message` passes the filter, count aside.
    fn matches(&self, message: &Message) -> bool {
        self.from.is_none_or(|from| message.from == from)
            && self.to.is_none_or(|to| message.to == to)
            && self.kind.as_deref().is_none_or(|kind| type_name(&message.body) == kind)
    }

    /// The positions in `network` of the messages the filter selects, oldest first.
    fn select<'a>(&self, network: impl IntoIterator<Item = &'a Message>) -> Vec<usize> {
        let matching = network.into_iter().enumerate().filter(|(_, message)| self.matches(message));
        matching.map(|(position, _)| position).take(self.count.unwrap_or(usize::MAX)).collect()
    }
}

/// Runs the commands of one script against one cluster.
#[derive(Default)]
struct Runner {
    /// The cluster, once a `cluster` command has built it.
    cluster: Option<LocalCluster>,
}

impl goldenscript::Runner for Runner {
    type Command = Command;

    fn run(
        &mut self,
        command: &Command,
        _context: &goldenscript::Context,
    ) -> Result<String, Box<dyn Error>> {
        let mut output = String::new();
        if let Command::Cluster { .. } = command {
            self.cluster = Some(build_cluster(command));
            return Ok(output);
        }
        let cluster = self.cluster.as_mut().ok_or("no cluster: start the script with `cluster`")?;
        match command {
            Command::Cluster { .. } => unreachable!("handled above"),
            Command::Campaign(id) => {
                let id = live_node(cluster, *id)?;
                cluster.node_mut(id).campaign();
                cluster.process(id);
            }
            Command::Tick { ids, n } => {
                let ids =
                    ids.iter().map(|&id| node_id(cluster, id)).collect::<Result<Vec<_>, _>>()?;
                for _ in 0..n.unwrap_or(1) {
                    for &id in &ids {
                        cluster.tick(id, 1);
                    }
                }
            }
            Command::Propose { id, commands } => {
                let id = live_node(cluster, *id)?;
                for command in commands {
                    let command = Bytes::from(command.clone());
                    match cluster.node_mut(id).propose(command.clone()) {
                        Ok(index) => {
                            let term = cluster.node(id).term();
                            let entry = Entry { index, term, payload: Payload::Command(command) };
                            writeln!(output, "{id} proposed {entry}")?;
                        }
                        Err(ProposeError::NotLeader { leader, term }) => writeln!(
                            output,
                            "{id} refused a proposal: not leader (leader={} term={term})",
                            name(leader)
                        )?,
                        Err(error) => writeln!(output, "{id} refused a proposal: {error}")?,
                    }
                }
                cluster.process(id);
            }
            Command::AddNode(id) => {
                if cluster.nodes.contains_key(&NodeId(*id)) || *id == 0 {
                    return Err(format!("cannot add node {id}").into());
                }
                cluster.add_node(NodeId(*id));
                writeln!(output, "n{id} started, with no configuration")?;
            }
            Command::Change { id, add_voter, add_learner, remove, promote } => {
                let id = live_node(cluster, *id)?;
                let mut changes = Vec::new();
                for (ids, change) in [
                    (add_voter, MembershipChange::AddVoter as fn(NodeId) -> MembershipChange),
                    (add_learner, MembershipChange::AddLearner),
                    (remove, MembershipChange::Remove),
                    (promote, MembershipChange::Promote),
                ] {
                    for node in ids.iter().flat_map(|ids| ids.split('/')) {
                        changes.push(change(NodeId(node.parse()?)));
                    }
                }
                match cluster.node_mut(id).change_membership(&changes) {
                    Ok(index) => {
                        let term = cluster.node(id).term();
                        let membership = cluster.node(id).membership().clone();
                        let entry = Entry { index, term, payload: Payload::Membership(membership) };
                        writeln!(output, "{id} proposed {entry}")?;
                    }
                    Err(error) => writeln!(output, "{id} refused the change: {error}")?,
                }
                cluster.process(id);
            }
            Command::Membership(ids) => {
                let ids = if ids.is_empty() {
                    cluster.nodes.keys().copied().collect()
                } else {
                    ids.iter().map(|&id| node_id(cluster, id)).collect::<Result<Vec<_>, _>>()?
                };
                for id in ids {
                    let membership = cluster.node(id).membership();
                    if membership.voters.is_empty() && membership.learners.is_empty() {
                        writeln!(output, "{id}: no configuration")?;
                    } else {
                        writeln!(output, "{id}: {membership}")?;
                    }
                }
            }
            Command::Transfer { id, to } => {
                let id = live_node(cluster, *id)?;
                match cluster.node_mut(id).transfer_leadership(to.map(NodeId)) {
                    Ok(target) => writeln!(output, "{id} transfers leadership to {target}")?,
                    Err(error) => writeln!(output, "{id} refused the transfer: {error}")?,
                }
                cluster.process(id);
            }
            Command::Read { id, contexts } => {
                let id = live_node(cluster, *id)?;
                for &context in contexts {
                    if let Err(ReadIndexError::NotLeader { leader, term }) =
                        cluster.node_mut(id).read_index(context)
                    {
                        let leader = name(leader);
                        writeln!(
                            output,
                            "{id} refused read {context}: not leader (leader={leader} term={term})"
                        )?;
                    }
                }
                cluster.process(id);
            }
            Command::ForwardRead { id, contexts } => {
                let id = live_node(cluster, *id)?;
                for &context in contexts {
                    if let Err(error) = cluster.node_mut(id).forward_read_index(context) {
                        writeln!(output, "{id} refused read {context}: {error}")?;
                    }
                }
                cluster.process(id);
            }
            Command::LeaseRead { id, contexts } => {
                let id = live_node(cluster, *id)?;
                for &context in contexts {
                    if let Err(error) = cluster.node_mut(id).lease_read(context) {
                        writeln!(output, "{id} refused lease read {context}: {error}")?;
                    }
                }
                cluster.process(id);
            }
            Command::Deliver(args) => deliver(cluster, &Filter::parse(args)?, &mut output)?,
            Command::Drop(args) => {
                let filter = Filter::parse(args)?;
                for message in take_selected(cluster, &filter) {
                    writeln!(output, "{message} (dropped)")?;
                }
            }
            Command::Duplicate(args) => {
                let filter = Filter::parse(args)?;
                let positions = filter.select(&cluster.network);
                for position in positions {
                    let copy = cluster.network[position].clone();
                    writeln!(output, "{copy} (duplicated)")?;
                    cluster.network.push_back(copy);
                }
            }
            Command::Reorder(args) => {
                let filter = Filter::parse(args)?;
                let positions = filter.select(&cluster.network);
                let mut messages: Vec<Message> =
                    positions.iter().map(|&position| cluster.network[position].clone()).collect();
                messages.reverse();
                for (&position, message) in positions.iter().zip(messages) {
                    writeln!(output, "{message} (reordered)")?;
                    cluster.network[position] = message;
                }
            }
            Command::Stabilize => stabilize(cluster, &mut output)?,
            Command::Persist { id, count } => {
                let id = live_node(cluster, *id)?;
                cluster.persist(id, count.unwrap_or(usize::MAX));
                // The driver lets the node act on the news, as after any input.
                cluster.process(id);
            }
            Command::AutoPersist(id, on) => {
                let id = node_id(cluster, *id)?;
                cluster.nodes.get_mut(&id).expect("checked by node_id").auto_persist = *on;
            }
            Command::Snapshot(id) => {
                let id = live_node(cluster, *id)?;
                cluster.take_snapshot(id);
                cluster.process(id);
            }
            Command::Fetch { id, fail } => {
                let id = live_node(cluster, *id)?;
                if cluster.nodes[&id].pending_fetch.is_none() {
                    return Err(format!("{id} has no pending fetch").into());
                }
                cluster.fetch(id, fail.unwrap_or(false));
                cluster.process(id);
            }
            Command::AutoFetch(id, on) => {
                let id = node_id(cluster, *id)?;
                cluster.nodes.get_mut(&id).expect("checked by node_id").auto_fetch = *on;
            }
            Command::Crash(id) => {
                let id = live_node(cluster, *id)?;
                let writes = cluster.nodes[&id].pending_writes.len();
                let messages = cluster.network.iter().filter(|message| message.to == id).count();
                cluster.crash(id);
                let (writes, messages) =
                    (plural(writes, "pending write"), plural(messages, "message"));
                writeln!(output, "{id} crashed: lost {writes} and {messages} in flight to it")?;
            }
            Command::Restart(id) => {
                let id = node_id(cluster, *id)?;
                if !cluster.nodes[&id].down {
                    return Err(format!("{id} is not down").into());
                }
                cluster.restart(id);
                write!(output, "{id} restarted: ")?;
                write_status(cluster, id, &mut output)?;
                cluster.process(id);
            }
            Command::Cut(from, to) => {
                let link = (node_id(cluster, *from)?, node_id(cluster, *to)?);
                cut(cluster, &[link], &mut output)?;
            }
            Command::Partition(ids) => {
                let inside =
                    ids.iter().map(|&id| node_id(cluster, id)).collect::<Result<Vec<_>, _>>()?;
                let outside: Vec<NodeId> =
                    cluster.nodes.keys().copied().filter(|id| !inside.contains(id)).collect();
                let mut links = Vec::new();
                for &a in &inside {
                    for &b in &outside {
                        links.extend([(a, b), (b, a)]);
                    }
                }
                cut(cluster, &links, &mut output)?;
            }
            Command::Heal => cluster.cut.clear(),
            Command::Status(ids) => {
                let ids = if ids.is_empty() {
                    cluster.nodes.keys().copied().collect()
                } else {
                    ids.iter().map(|&id| node_id(cluster, id)).collect::<Result<Vec<_>, _>>()?
                };
                for id in ids {
                    write!(output, "{id}: ")?;
                    write_status(cluster, id, &mut output)?;
                }
            }
            Command::Log(ids) => {
                for &id in ids {
                    let id = node_id(cluster, id)?;
                    let local = &cluster.nodes[&id];
                    if let Some(snapshot) = &local.storage.snapshot {
                        writeln!(output, "{id}: snapshot {}", snapshot.meta)?;
                    }
                    if local.storage.compacted > Index(0) {
                        let (index, term) = (local.storage.compacted, local.storage.compacted_term);
                        writeln!(output, "{id}: compacted through {index}@{term}")?;
                    }
                    if local.storage.entries.is_empty() {
                        writeln!(output, "{id}: no entries stored")?;
                    }
                    for entry in &local.storage.entries {
                        writeln!(output, "{id}: {entry}")?;
                    }
                    for write in &local.pending_writes {
                        writeln!(output, "{id}: pending write {}", entry_list(write))?;
                    }
                }
            }
            Command::Network => {
                if cluster.network.is_empty() {
                    writeln!(output, "no messages in flight")?;
                }
                for message in &cluster.network {
                    writeln!(output, "{message}")?;
                }
            }
        }
        flush_trace(cluster, &mut output);
        // Raft's safety properties must hold after every command (Raft Figure 3). A breach
        // fails the command, with its trace, so a script can only pass it by expecting the
        // failure with `!`: that is how a scenario records a known bug.
        if let Err(violation) = check_safety(cluster) {
            return Err(format!("safety violated: {violation}\n{output}").into());
        }
        Ok(output)
    }
}

/// A new cluster with the configuration the `cluster` command asks for.
fn build_cluster(command: &Command) -> LocalCluster {
    let Command::Cluster {
        nodes,
        pre_vote,
        check_quorum,
        election_timeout,
        heartbeat_interval,
        max_append_entries,
        max_append_bytes,
        max_inflight_appends,
        max_cached_bytes,
        max_learner_lag,
        lease_reads,
        clock_drift_bound,
        eager_commit,
    } = command
    else {
        unreachable!("only called for the cluster command");
    };
    LocalCluster::new(*nodes, true, |config| {
        config.pre_vote = pre_vote.unwrap_or(config.pre_vote);
        config.check_quorum = check_quorum.unwrap_or(config.check_quorum);
        config.election_timeout = election_timeout.unwrap_or(config.election_timeout);
        config.heartbeat_interval = heartbeat_interval.unwrap_or(config.heartbeat_interval);
        config.max_append_entries = max_append_entries.unwrap_or(config.max_append_entries);
        config.max_append_bytes = max_append_bytes.unwrap_or(config.max_append_bytes);
        config.max_inflight_appends = max_inflight_appends.unwrap_or(config.max_inflight_appends);
        config.max_cached_bytes = max_cached_bytes.unwrap_or(config.max_cached_bytes);
        config.max_learner_lag = max_learner_lag.unwrap_or(config.max_learner_lag);
        config.lease_reads = lease_reads.unwrap_or(config.lease_reads);
        config.clock_drift_bound = clock_drift_bound.unwrap_or(config.clock_drift_bound);
        config.eager_commit = eager_commit.unwrap_or(config.eager_commit);
    })
}

/// The id of cluster member `id`, or a script error.
fn node_id(cluster: &LocalCluster, id: u64) -> Result<NodeId, Box<dyn Error>> {
    let id = NodeId(id);
    if !cluster.nodes.contains_key(&id) {
        return Err(format!("no node {id} in the cluster").into());
    }
    Ok(id)
}

/// The id of cluster member `id` if it is up, or a script error.
fn live_node(cluster: &LocalCluster, id: u64) -> Result<NodeId, Box<dyn Error>> {
    let id = node_id(cluster, id)?;
    if cluster.nodes[&id].down {
        return Err(format!("{id} is down").into());
    }
    Ok(id)
}

/// A node id or `none`.
fn name(id: Option<NodeId>) -> String {
    id.map_or("none".to_string(), |id| id.to_string())
}

/// `count` things, in words: "1 message", "2 messages".
fn plural(count: usize, thing: &str) -> String {
    if count == 1 { format!("1 {thing}") } else { format!("{count} {thing}s") }
}

/// Appends the trace recorded since the last flush to `output`.
fn flush_trace(cluster: &mut LocalCluster, output: &mut String) {
    for line in cluster.take_trace() {
        output.push_str(&line);
        output.push('\n');
    }
}

/// Removes the messages `filter` selects from the network and returns them, oldest first.
fn take_selected(cluster: &mut LocalCluster, filter: &Filter) -> Vec<Message> {
    let positions = filter.select(&cluster.network);
    let mut taken = Vec::with_capacity(positions.len());
    for &position in positions.iter().rev() {
        taken.push(cluster.network.remove(position).expect("selected positions exist"));
    }
    taken.reverse();
    taken
}

/// Delivers the selected messages one at a time, oldest first, letting each receiver act (and
/// tracing it) before the next delivery. Messages sent meanwhile queue behind them.
fn deliver(
    cluster: &mut LocalCluster,
    filter: &Filter,
    output: &mut String,
) -> Result<(), Box<dyn Error>> {
    for message in take_selected(cluster, filter) {
        if cluster.nodes[&message.to].down {
            writeln!(output, "{message} (lost: {} is down)", message.to)?;
            continue;
        }
        // LocalCluster::deliver delivers what its selector picks from the network: put the
        // message at the front and pick exactly one.
        cluster.network.push_front(message);
        let first = Cell::new(true);
        cluster.deliver(|_| first.replace(false));
        flush_trace(cluster, output);
    }
    Ok(())
}

/// Delivers messages in flight, oldest first, until none is left, like
/// [`LocalCluster::stabilize`], but gives up (with the trace so far) if the nodes keep talking:
/// a cluster that never falls silent without ticks is a livelock worth reporting.
fn stabilize(cluster: &mut LocalCluster, output: &mut String) -> Result<(), Box<dyn Error>> {
    const LIMIT: usize = 10_000;
    const SHOWN: usize = 12;
    cluster.process_all();
    for _ in 0..LIMIT {
        if cluster.network.is_empty() {
            return Ok(());
        }
        let first = Cell::new(true);
        cluster.deliver(|_| first.replace(false));
    }
    let trace = cluster.take_trace();
    let mut message = format!("livelock: still talking after {LIMIT} deliveries\n{output}");
    for line in trace.iter().take(SHOWN) {
        writeln!(message, "{line}")?;
    }
    if trace.len() > SHOWN {
        writeln!(message, "… and {} more lines", trace.len() - SHOWN)?;
    }
    Err(message.into())
}

/// Cuts the directed `links`, dropping the messages in flight on them.
fn cut(
    cluster: &mut LocalCluster,
    links: &[(NodeId, NodeId)],
    output: &mut String,
) -> Result<(), Box<dyn Error>> {
    cluster.cut.extend(links.iter().copied());
    let (lost, kept): (VecDeque<Message>, VecDeque<Message>) = std::mem::take(&mut cluster.network)
        .into_iter()
        .partition(|message| links.contains(&(message.from, message.to)));
    cluster.network = kept;
    for message in lost {
        writeln!(output, "{message} (dropped: link cut)")?;
    }
    Ok(())
}

/// One line of a node's state, and for a leader one line per follower.
fn write_status(
    cluster: &LocalCluster,
    id: NodeId,
    output: &mut String,
) -> Result<(), Box<dyn Error>> {
    if cluster.nodes[&id].down {
        writeln!(output, "down")?;
        return Ok(());
    }
    let status = cluster.node(id).status();
    write!(
        output,
        "{} term={} vote={} leader={} last={}@{} durable={} commit={} applied={}",
        status.role,
        status.term,
        name(status.vote),
        name(status.leader),
        status.last_index,
        status.last_term,
        status.durable,
        status.commit,
        status.applied,
    )?;
    if status.snapshot > Index(0) {
        write!(output, " snapshot={} first={}", status.snapshot, status.first_index)?;
    }
    writeln!(output)?;
    for (follower, (match_index, next_index, state)) in &status.progress {
        let learner = if status.membership.learners.contains(follower) { " learner" } else { "" };
        writeln!(output, "    {follower}: match={match_index} next={next_index} {state}{learner}")?;
    }
    Ok(())
}

/// Election safety (at most one leader per term) and state machine safety (applied entries
/// agree at every index), across the cluster.
fn check_safety(cluster: &LocalCluster) -> Result<(), Box<dyn Error>> {
    let mut leaders: BTreeMap<_, NodeId> = BTreeMap::new();
    for (&id, local) in &cluster.nodes {
        if local.down || local.node.role() != RoleKind::Leader {
            continue;
        }
        if let Some(other) = leaders.insert(local.node.term(), id) {
            return Err(
                format!("two leaders in term {}: {other} and {id}", local.node.term()).into()
            );
        }
    }
    // Every state machine, live or durable in a snapshot, is a prefix of one history.
    let mut states: Vec<(String, &[Entry])> = Vec::new();
    for (&id, local) in &cluster.nodes {
        states.push((format!("{id}"), &local.applied));
        if let Some(snapshot) = &local.storage.snapshot {
            states.push((format!("{id}'s snapshot"), &snapshot.state));
        }
    }
    for (position, (a, first)) in states.iter().enumerate() {
        for (b, second) in &states[position + 1..] {
            for (x, y) in first.iter().zip(second.iter()) {
                if x != y {
                    return Err(format!("{a} applied {x} but {b} applied {y}").into());
                }
            }
        }
    }
    // What a restart would read must be consistent: the log passes through the snapshot.
    for (&id, local) in &cluster.nodes {
        let storage = &local.storage;
        if let Some(snapshot) = &storage.snapshot {
            let meta = &snapshot.meta;
            if snapshot.state.len() as u64 != meta.index.0 {
                return Err(format!(
                    "{id}'s snapshot {meta} holds {} entries",
                    snapshot.state.len()
                )
                .into());
            }
            if storage.term(meta.index) != Some(meta.term) {
                return Err(
                    format!("{id}'s stored log does not pass through snapshot {meta}").into()
                );
            }
        }
    }
    Ok(())
}
