//! An in-memory driver for a whole cluster in one thread: for the scenario scripts, the example
//! and the benchmarks, and for embedders who want to see the core at work.
//!
//! It performs every [`Action`] the way a real driver must (contract in the crate docs), but
//! with a `Vec` for a disk and a queue for a network, and nothing happens unless asked:
//! messages wait in flight until delivered, writes wait until persisted (or are persisted at
//! once with `auto_persist`), and time moves only by `tick`. That makes every interleaving a
//! test wants reachable, and every run reproducible. It injects no faults by itself; the
//! simulator (crates/sim) is the place for random schedules.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::action::{Action, ReadPurpose, ReadRequest};
use crate::config::Config;
use crate::log::LogState;
use crate::message::{Body, Message, entry_list};
use crate::node::{Node, Restored};
use crate::types::{Entry, HardState, Index, NodeId};

/// A node's durable storage: what survives a crash.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    /// The durable term and vote.
    pub hard_state: HardState,
    /// The durable log; `entries[i]` has index `i + 1`.
    pub entries: Vec<Entry>,
}

impl MemoryStorage {
    /// Writes entries, superseding every stored entry from the first one's index on.
    pub fn persist_entries(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        assert!(
            first.index.0 >= 1 && first.index.0 <= self.entries.len() as u64 + 1,
            "write at {} leaves a gap after the stored last index {}",
            first.index,
            self.entries.len()
        );
        self.entries.truncate(first.index.0 as usize - 1);
        self.entries.extend_from_slice(entries);
    }

    /// Serves a read request from the stored entries.
    pub fn read(&self, request: &ReadRequest) -> Vec<Entry> {
        let mut bytes = 0;
        let mut result = Vec::new();
        for entry in &self.entries[request.low.0 as usize - 1..request.high.0 as usize - 1] {
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
        Restored {
            hard_state: self.hard_state,
            log: LogState::from_terms(self.entries.iter().map(|entry| (entry.index, entry.term))),
            commit: Index(0),
            applied: Index(0),
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
    /// Every entry applied, in order.
    pub applied: Vec<Entry>,
    /// Every linearizable read answered, in order: its context, and its read index (`None` if
    /// it failed).
    pub reads: Vec<(u64, Option<Index>)>,
    /// Whether entry writes become durable as soon as they are handed over.
    pub auto_persist: bool,
    /// Whether the node is crashed: it receives nothing and does nothing until restarted.
    pub down: bool,
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
                let node = Node::new(config.clone(), Restored::default())
                    .expect("the test configuration is valid");
                let local = LocalNode {
                    node,
                    config,
                    storage: MemoryStorage::default(),
                    pending_writes: VecDeque::new(),
                    applied: Vec::new(),
                    reads: Vec::new(),
                    auto_persist: true,
                    down: false,
                };
                (id, local)
            })
            .collect();
        LocalCluster {
            nodes,
            network: VecDeque::new(),
            cut: BTreeSet::new(),
            trace: record.then(Vec::new),
        }
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
                if self.cut.contains(&(message.from, message.to)) {
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
        self.network.retain(|message| message.to != id);
    }

    /// Restarts a crashed node from its durable storage. Its state machine is rebuilt by
    /// re-applying committed entries, as an in-memory state machine must.
    pub fn restart(&mut self, id: NodeId) {
        let local = self.nodes.get_mut(&id).expect("a node");
        local.node = Node::new(local.config.clone(), local.storage.restored())
            .expect("durable state written by the core is consistent");
        local.applied.clear();
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
