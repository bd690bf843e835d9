//! An in-memory driver for a whole cluster in one thread: for the scenario scripts, the example
//! and the benchmarks, and for embedders who want to see the core at work.
//!
//! It performs every [`Action`] the way a real driver must (contract in the crate docs), but
//! with a `Vec` for a disk and a queue for a network, and nothing happens unless asked:
//! messages wait in flight until delivered, writes wait until persisted (or are persisted at
//! once with `auto_persist`), snapshot fetches wait until done (or are done at once with
//! `auto_fetch`), and time moves only by `tick`. That makes every interleaving a test wants
//! reachable, and every run reproducible. It injects no faults by itself; the simulator
//! (crates/sim) is the place for random schedules.
//!
//! The "state machine" is the list of entries applied, so a snapshot of it is that list up to
//! the snapshot's index: installing one copies the entries themselves, and the scenario runner's
//! state-machine safety check compares them after an install like any others.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::action::{Action, ReadPurpose, ReadRequest};
use crate::config::Config;
use crate::log::LogState;
use crate::message::{Body, Message, entry_list};
use crate::node::{Node, Restored};
use crate::snapshot::SnapshotMeta;
use crate::types::{Entry, HardState, Index, NodeId, Payload, Term};

/// A durable snapshot of the test state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemorySnapshot {
    /// What it covers.
    pub meta: SnapshotMeta,
    /// The state machine's state: every entry applied up to `meta.index`, in order.
    pub state: Vec<Entry>,
}

/// A node's durable storage: what survives a crash.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    /// The durable term and vote.
    pub hard_state: HardState,
    /// The index of the last entry compacted away (0 if none): `entries[i]` has index
    /// `compacted + 1 + i`.
    pub compacted: Index,
    /// The term of the entry at `compacted` (0 if none).
    pub compacted_term: Term,
    /// The durable log after the compaction point.
    pub entries: Vec<Entry>,
    /// The newest durable snapshot; the log passes through it.
    pub snapshot: Option<MemorySnapshot>,
}

impl MemoryStorage {
    /// The index of the last stored entry (the compaction point if none is stored).
    pub fn last_index(&self) -> Index {
        self.compacted.plus(self.entries.len() as u64)
    }

    /// The stored term at `index`, if the log holds it or it is the compaction point.
    pub fn term(&self, index: Index) -> Option<Term> {
        if index == self.compacted {
            return Some(self.compacted_term);
        }
        let position = index.0.checked_sub(self.compacted.0 + 1)?;
        self.entries.get(position as usize).map(|entry| entry.term)
    }

    /// Writes entries, superseding every stored entry from the first one's index on.
    pub fn persist_entries(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        assert!(
            first.index > self.compacted && first.index <= self.last_index().next(),
            "write at {} is not within the stored log ({}, {}]",
            first.index,
            self.compacted,
            self.last_index()
        );
        self.entries.truncate(first.index.distance_from(self.compacted.next()) as usize);
        self.entries.extend_from_slice(entries);
    }

    /// Deletes the entries up to `index`, which a snapshot covers.
    pub fn compact(&mut self, index: Index) {
        let snapshot = self.snapshot.as_ref().map_or(Index(0), |snapshot| snapshot.meta.index);
        assert!(index <= snapshot, "compacting to {index} beyond the snapshot at {snapshot}");
        if index <= self.compacted {
            return;
        }
        let term = self.term(index).expect("compaction within the stored log");
        self.entries.drain(..index.distance_from(self.compacted) as usize);
        self.compacted = index;
        self.compacted_term = term;
    }

    /// Installs a snapshot atomically: it becomes the newest, and the log is replaced by an empty
    /// one after it.
    pub fn install(&mut self, snapshot: MemorySnapshot) {
        self.compacted = snapshot.meta.index;
        self.compacted_term = snapshot.meta.term;
        self.entries.clear();
        self.snapshot = Some(snapshot);
    }

    /// Serves a read request from the stored entries.
    pub fn read(&self, request: &ReadRequest) -> Vec<Entry> {
        let mut bytes = 0;
        let mut result = Vec::new();
        let offset = |index: Index| index.distance_from(self.compacted.next()) as usize;
        assert!(request.low > self.compacted, "read of compacted entries at {}", request.low);
        for entry in &self.entries[offset(request.low)..offset(request.high)] {
            if !result.is_empty() && bytes + entry.size() > request.max_bytes {
                break;
            }
            bytes += entry.size();
            result.push(entry.clone());
        }
        result
    }

    /// What a node restarting on this storage is restored from.
    pub fn restored(&self) -> Restored {
        let snapshot = self.snapshot.as_ref().map(|snapshot| snapshot.meta.clone());
        // Like a real log's recovery, collect the configuration entries while reading the log.
        let memberships = self
            .entries
            .iter()
            .filter_map(|entry| match &entry.payload {
                Payload::Membership(membership) => Some((entry.index, membership.clone())),
                _ => None,
            })
            .collect();
        Restored {
            hard_state: self.hard_state,
            log: LogState::from_terms_after(
                self.compacted,
                self.compacted_term,
                self.entries.iter().map(|entry| (entry.index, entry.term)),
            ),
            commit: Index(0),
            // The state machine is restored from the snapshot (see `LocalCluster::restart`).
            applied: snapshot.as_ref().map_or(Index(0), |meta| meta.index),
            snapshot,
            memberships,
        }
    }
}

/// One node of a [`LocalCluster`] with its storage and state machine.
#[derive(Debug)]
pub struct LocalNode {
    /// The protocol core.
    pub node: Node,
    /// The configuration it was built with (kept for restarts).
    pub config: Config,
    /// What is durable.
    pub storage: MemoryStorage,
    /// Entry writes handed over but not yet durable, oldest first.
    pub pending_writes: VecDeque<Vec<Entry>>,
    /// Every entry applied, in order, including those a snapshot brought: the state machine.
    pub applied: Vec<Entry>,
    /// Every linearizable read answered, in order: its context, and its read index (`None` if
    /// it failed).
    pub reads: Vec<(u64, Option<Index>)>,
    /// Whether entry writes become durable as soon as they are handed over.
    pub auto_persist: bool,
    /// A `FetchSnapshot` not yet done: from whom, and what.
    pub pending_fetch: Option<(NodeId, SnapshotMeta)>,
    /// Whether snapshot fetches are done as soon as they are asked for.
    pub auto_fetch: bool,
    /// Whether the node is crashed: it receives nothing and does nothing until restarted.
    pub down: bool,
}

impl LocalNode {
    /// A new node with `config` and empty storage, writes and fetches completed at once.
    fn new(config: Config) -> LocalNode {
        let node = Node::new(config.clone(), Restored::default())
            .expect("the test configuration is valid");
        LocalNode {
            node,
            config,
            storage: MemoryStorage::default(),
            pending_writes: VecDeque::new(),
            applied: Vec::new(),
            reads: Vec::new(),
            auto_persist: true,
            pending_fetch: None,
            auto_fetch: true,
            down: false,
        }
    }
}

/// A cluster of nodes in one process, driven step by step.
#[derive(Debug)]
pub struct LocalCluster {
    /// The nodes by id.
    pub nodes: BTreeMap<NodeId, LocalNode>,
    /// Messages in flight, in the order they were sent.
    pub network: VecDeque<Message>,
    /// Directed links that drop every message: (from, to).
    pub cut: BTreeSet<(NodeId, NodeId)>,
    /// The trace of what happened, if recording; drained by `take_trace`.
    pub trace: Option<Vec<String>>,
}

impl LocalCluster {
    /// A cluster of nodes 1..=size with the default configuration adjusted by `configure`,
    /// recording a trace if `record` is set. Writes are persisted at once.
    pub fn new(size: u64, record: bool, configure: impl Fn(&mut Config)) -> LocalCluster {
        let ids: Vec<NodeId> = (1..=size).map(NodeId).collect();
        let nodes = ids
            .iter()
            .map(|&id| {
                let mut config = Config::new(id, ids.iter().copied());
                configure(&mut config);
                (id, LocalNode::new(config))
            })
            .collect();
        LocalCluster {
            nodes,
            network: VecDeque::new(),
            cut: BTreeSet::new(),
            trace: record.then(Vec::new),
        }
    }

    /// Starts a new, empty node `id` that joins the cluster: it has no initial configuration
    /// ([`Config::voters`] empty), so it waits, never campaigning, until a leader that added it
    /// with [`Node::change_membership`] replicates to it. Its other settings are node 1's (or
    /// the lowest-numbered node's).
    pub fn add_node(&mut self, id: NodeId) {
        assert!(!self.nodes.contains_key(&id), "{id} is already in the cluster");
        let template = self.nodes.values().next().expect("a cluster has nodes");
        let config =
            Config { id, voters: Default::default(), seed: id.0, ..template.config.clone() };
        self.nodes.insert(id, LocalNode::new(config));
    }

    /// The node with `id`.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[&id].node
    }

    /// The node with `id`, mutably.
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes.get_mut(&id).expect("a node of the cluster").node
    }

    /// The trace recorded since the last call.
    pub fn take_trace(&mut self) -> Vec<String> {
        self.trace.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Records a trace line, if recording.
    fn record(&mut self, line: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            trace.push(line());
        }
    }

    /// Performs the actions of node `id` until it has none left.
    pub fn process(&mut self, id: NodeId) {
        loop {
            let local = self.nodes.get_mut(&id).expect("a node of the cluster");
            if local.down {
                return;
            }
            let actions = local.node.take_actions();
            if actions.is_empty() {
                return;
            }
            for action in actions {
                self.perform(id, action);
            }
        }
    }

    /// Performs the actions of every node until none has any left.
    pub fn process_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.process(id);
        }
    }

    /// Performs one action of node `id`.
    fn perform(&mut self, id: NodeId, action: Action) {
        match action {
            Action::PersistHardState(hard_state) => {
                // Durable at once, so it precedes every later Send (contract item 1).
                self.record(|| {
                    let vote = hard_state.vote.map_or("none".to_string(), |v| v.to_string());
                    format!("{id} persist term={} vote={vote}", hard_state.term)
                });
                self.nodes.get_mut(&id).expect("a node").storage.hard_state = hard_state;
            }
            Action::PersistEntries(entries) => {
                self.record(|| format!("{id} persist {}", entry_list(&entries)));
                let local = self.nodes.get_mut(&id).expect("a node");
                local.pending_writes.push_back(entries);
                if local.auto_persist {
                    self.persist(id, usize::MAX);
                }
            }
            Action::Send(message) => {
                if !self.nodes.contains_key(&message.to) {
                    self.record(|| format!("{message} (dropped: no such node)"));
                } else if self.cut.contains(&(message.from, message.to)) {
                    self.record(|| format!("{message} (dropped: link cut)"));
                } else {
                    self.record(|| message.to_string());
                    self.network.push_back(message);
                }
            }
            Action::ReadEntries(request) => {
                let entries = self.nodes[&id].storage.read(&request);
                self.record(|| {
                    let purpose = match request.purpose {
                        ReadPurpose::Apply => "to apply".to_string(),
                        ReadPurpose::Replicate { to, term } => format!("for {to} in term {term}"),
                    };
                    let (low, high) = (request.low, request.high);
                    format!("{id} read [{low}, {high}) {purpose} → {}", entry_list(&entries))
                });
                let local = self.nodes.get_mut(&id).expect("a node");
                local.node.entries_read(request, entries).expect("reads come from our own log");
            }
            Action::FetchSnapshot { from, meta } => {
                self.record(|| format!("{id} fetch snapshot {meta} from {from}"));
                let local = self.nodes.get_mut(&id).expect("a node");
                assert!(local.pending_fetch.is_none(), "{id} asked for a second fetch at once");
                local.pending_fetch = Some((from, meta));
                if local.auto_fetch {
                    self.fetch(id, false);
                }
            }
            Action::Apply(entries) => {
                self.record(|| format!("{id} apply {}", entry_list(&entries)));
                let local = self.nodes.get_mut(&id).expect("a node");
                for entry in entries {
                    let expected = Index(local.applied.len() as u64 + 1);
                    assert_eq!(entry.index, expected, "{id} applied out of order");
                    local.applied.push(entry);
                }
            }
            Action::ReadReady { index, contexts } => {
                self.record(|| format!("{id} read ready at {index}: {contexts:?}"));
                let local = self.nodes.get_mut(&id).expect("a node");
                local.reads.extend(contexts.into_iter().map(|context| (context, Some(index))));
            }
            Action::ReadFailed { contexts } => {
                self.record(|| format!("{id} read failed: {contexts:?}"));
                let local = self.nodes.get_mut(&id).expect("a node");
                local.reads.extend(contexts.into_iter().map(|context| (context, None)));
            }
            Action::Event(event) => self.record(|| format!("{id} {event}")),
        }
    }

    /// Makes up to `count` of node `id`'s pending writes durable, oldest first, and reports it.
    pub fn persist(&mut self, id: NodeId, count: usize) {
        for _ in 0..count {
            let local = self.nodes.get_mut(&id).expect("a node");
            let Some(entries) = local.pending_writes.pop_front() else { return };
            local.storage.persist_entries(&entries);
            let last = entries.last().expect("writes are non-empty");
            local.node.persisted(last.index, last.term);
            let (index, term) = (last.index, last.term);
            self.record(|| format!("{id} durable {index}@{term}"));
        }
    }

    /// Does node `id`'s pending snapshot fetch, if any: copies the snapshot from the source's
    /// storage and installs it atomically, or reports a failure — when `fail` is set (an
    /// injected fault), the source is down, or it no longer holds that snapshot. The node acts
    /// on the report at its next `process`.
    pub fn fetch(&mut self, id: NodeId, fail: bool) {
        let local = self.nodes.get_mut(&id).expect("a node");
        let Some((from, meta)) = local.pending_fetch.take() else { return };
        let source = &self.nodes[&from];
        let found = source.storage.snapshot.as_ref().filter(|snapshot| snapshot.meta == meta);
        let failure = if fail {
            Some("injected fault".to_string())
        } else if source.down {
            Some(format!("{from} is down"))
        } else if found.is_none() {
            Some(match &source.storage.snapshot {
                Some(snapshot) => format!("{from} now holds snapshot {}", snapshot.meta.index),
                None => format!("{from} holds no snapshot"),
            })
        } else {
            None
        };
        if let Some(reason) = failure {
            self.record(|| {
                format!("{id} fetch of snapshot {} from {from} failed: {reason}", meta.index)
            });
            let local = self.nodes.get_mut(&id).expect("a node");
            local.node.snapshot_failed(&meta);
            return;
        }
        let snapshot = found.expect("checked above").clone();
        let local = self.nodes.get_mut(&id).expect("a node");
        // The core writes nothing while fetching, so no write can land after the install.
        assert!(local.pending_writes.is_empty(), "{id} installs under pending writes");
        local.applied = snapshot.state.clone();
        local.storage.install(snapshot);
        local.node.snapshot_installed(meta.clone()).expect("the fetch the core asked for");
        self.record(|| format!("{id} installed snapshot {meta}"));
    }

    /// Takes a snapshot of node `id`'s state machine at its applied index, makes it durable, and
    /// compacts the log up to it (contract items 9 and 10). Returns the snapshot, or `None` if
    /// the node refused one (nothing applied since its latest).
    pub fn take_snapshot(&mut self, id: NodeId) -> Option<SnapshotMeta> {
        let local = self.nodes.get_mut(&id).expect("a node");
        let applied = Index(local.applied.len() as u64);
        let Some(meta) = local.node.snapshot_meta_at(applied) else {
            self.record(|| {
                format!("{id} snapshot refused at {applied}: not newer than the latest")
            });
            return None;
        };
        let state = local.applied.clone();
        local.storage.snapshot = Some(MemorySnapshot { meta: meta.clone(), state });
        local.node.snapshot_taken(meta.clone()).expect("the metadata the core described");
        local.node.compacted(meta.index).expect("compaction up to the snapshot");
        local.storage.compact(meta.index);
        self.record(|| format!("{id} snapshot taken at {meta}, log compacted through {applied}"));
        Some(meta)
    }

    /// Delivers messages in flight that `select` picks, in order, and processes each receiver.
    /// Messages to a crashed node are lost. Returns how many were delivered.
    pub fn deliver(&mut self, select: impl Fn(&Message) -> bool) -> usize {
        let (picked, kept): (VecDeque<Message>, VecDeque<Message>) =
            std::mem::take(&mut self.network).into_iter().partition(|m| select(m));
        self.network = kept;
        let mut delivered = 0;
        for message in picked {
            let to = message.to;
            let local = self.nodes.get_mut(&to).expect("messages go to cluster members");
            if local.down {
                continue;
            }
            local.node.step(message).expect("cluster messages are well-formed");
            delivered += 1;
            self.process(to);
        }
        delivered
    }

    /// Drops messages in flight that `select` picks. Returns how many.
    pub fn drop_messages(&mut self, select: impl Fn(&Message) -> bool) -> usize {
        let before = self.network.len();
        self.network.retain(|message| !select(message));
        before - self.network.len()
    }

    /// Delivers, persists (where `auto_persist`) and processes until nothing is in flight and no
    /// node has anything to do. Ticks are not advanced.
    pub fn stabilize(&mut self) {
        self.process_all();
        while let Some(message) = self.network.pop_front() {
            let to = message.to;
            let local = self.nodes.get_mut(&to).expect("messages go to cluster members");
            if local.down {
                continue;
            }
            local.node.step(message).expect("cluster messages are well-formed");
            self.process(to);
        }
    }

    /// Advances node `id`'s clock by `ticks`, processing after each.
    pub fn tick(&mut self, id: NodeId, ticks: u32) {
        for _ in 0..ticks {
            let local = self.nodes.get_mut(&id).expect("a node");
            if local.down {
                return;
            }
            local.node.tick();
            self.process(id);
        }
    }

    /// Crashes node `id`: everything not durable is lost, in-flight messages to it are dropped.
    pub fn crash(&mut self, id: NodeId) {
        let local = self.nodes.get_mut(&id).expect("a node");
        local.down = true;
        local.pending_writes.clear();
        local.pending_fetch = None;
        self.network.retain(|message| message.to != id);
    }

    /// Restarts a crashed node from its durable storage. Its state machine is restored from the
    /// snapshot, if any, then rebuilt by re-applying committed entries, as an in-memory state
    /// machine must.
    pub fn restart(&mut self, id: NodeId) {
        let local = self.nodes.get_mut(&id).expect("a node");
        local.node = Node::new(local.config.clone(), local.storage.restored())
            .expect("durable state written by the core is consistent");
        local.applied = local.storage.snapshot.as_ref().map_or(Vec::new(), |s| s.state.clone());
        local.down = false;
    }

    /// The leader with the highest term, if any node believes it leads.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .filter(|local| !local.down && local.node.leader() == Some(local.node.id()))
            .max_by_key(|local| local.node.term())
            .map(|local| local.node.id())
    }
}

/// Whether a message is an `Append` carrying at least one entry (for selective delivery).
pub fn carries_entries(message: &Message) -> bool {
    matches!(&message.body, Body::Append { entries, .. } if !entries.is_empty())
}
