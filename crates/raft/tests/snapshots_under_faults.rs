//! Snapshots, compaction and InstallSnapshot under random schedules: proposals, snapshots on any
//! node, ticks, lost, duplicated and reordered messages, crashes and restarts, in any order. After
//! every step the state machines — live ones and those durable in snapshots — must be prefixes of
//! one history, and no term may have two leaders; once the faults stop, every node must catch up
//! to the same state (through a snapshot or the log, whichever its leader can serve). The core's
//! own assertions (nothing applied at or below a snapshot, no write pending under an install, no
//! election won while fetching) run throughout.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;
use skiff_raft::testkit::LocalCluster;
use skiff_raft::{Entry, NodeId, RoleKind};

const NODES: u64 = 3;

/// One step of a schedule.
#[derive(Clone, Debug)]
enum Step {
    /// The leader, if any, proposes this many commands.
    Propose(usize),
    /// A node snapshots its state machine and compacts its log.
    Snapshot(u64),
    /// A node ticks this many times.
    Tick(u64, u32),
    /// The oldest messages in flight, this many, are delivered.
    Deliver(usize),
    /// The message at this position (modulo the count in flight) is lost.
    Drop(usize),
    /// The message at this position is delivered twice, the copy behind everything else.
    Duplicate(usize),
    /// The message at this position overtakes everything in flight.
    Overtake(usize),
    /// A node crashes (if up) or restarts (if down).
    CrashOrRestart(u64),
}

fn step() -> impl Strategy<Value = Step> {
    let node = 1..=NODES;
    prop_oneof![
        3 => (1usize..4).prop_map(Step::Propose),
        2 => node.clone().prop_map(Step::Snapshot),
        3 => (node.clone(), 1u32..12).prop_map(|(id, ticks)| Step::Tick(id, ticks)),
        6 => (1usize..10).prop_map(Step::Deliver),
        1 => any::<usize>().prop_map(Step::Drop),
        1 => any::<usize>().prop_map(Step::Duplicate),
        1 => any::<usize>().prop_map(Step::Overtake),
        1 => node.prop_map(Step::CrashOrRestart),
    ]
}

/// Delivers the first message in flight to its receiver (lost if the receiver is down).
fn deliver_one(cluster: &mut LocalCluster) {
    let Some(message) = cluster.network.pop_front() else { return };
    let to = message.to;
    if cluster.nodes[&to].down {
        return;
    }
    cluster.node_mut(to).step(message).expect("cluster messages are well-formed");
    cluster.process(to);
}

fn perform(cluster: &mut LocalCluster, step: &Step, proposed: &mut u64) {
    match *step {
        Step::Propose(count) => {
            let Some(leader) = cluster.leader() else { return };
            for _ in 0..count {
                *proposed += 1;
                let command = Bytes::from(format!("c{proposed}"));
                cluster.node_mut(leader).propose(command).expect("the leader accepts");
            }
            cluster.process(leader);
        }
        Step::Snapshot(id) => {
            let id = NodeId(id);
            if !cluster.nodes[&id].down {
                cluster.take_snapshot(id);
                cluster.process(id);
            }
        }
        Step::Tick(id, ticks) => cluster.tick(NodeId(id), ticks),
        Step::Deliver(count) => {
            for _ in 0..count {
                deliver_one(cluster);
            }
        }
        Step::Drop(position) if !cluster.network.is_empty() => {
            let position = position % cluster.network.len();
            cluster.network.remove(position);
        }
        Step::Duplicate(position) if !cluster.network.is_empty() => {
            let position = position % cluster.network.len();
            let copy = cluster.network[position].clone();
            cluster.network.push_back(copy);
        }
        Step::Overtake(position) if !cluster.network.is_empty() => {
            let position = position % cluster.network.len();
            let message = cluster.network.remove(position).expect("position is in range");
            cluster.network.push_front(message);
        }
        Step::Drop(_) | Step::Duplicate(_) | Step::Overtake(_) => {}
        Step::CrashOrRestart(id) => {
            let id = NodeId(id);
            if cluster.nodes[&id].down {
                cluster.restart(id);
                cluster.process(id);
            } else {
                cluster.crash(id);
            }
        }
    }
}

/// Election safety and state machine safety, snapshots included.
fn check_safety(cluster: &LocalCluster) -> Result<(), String> {
    let mut leaders = BTreeMap::new();
    for (&id, local) in &cluster.nodes {
        if !local.down
            && local.node.role() == RoleKind::Leader
            && let Some(other) = leaders.insert(local.node.term(), id)
        {
            return Err(format!("two leaders in term {}: {other} and {id}", local.node.term()));
        }
    }
    let mut states: Vec<&[Entry]> = Vec::new();
    for local in cluster.nodes.values() {
        states.push(&local.applied);
        if let Some(snapshot) = &local.storage.snapshot {
            states.push(&snapshot.state);
        }
    }
    for (position, first) in states.iter().enumerate() {
        for second in &states[position + 1..] {
            if let Some((x, y)) = first.iter().zip(second.iter()).find(|(x, y)| x != y) {
                return Err(format!("state machines differ: {x} and {y}"));
            }
        }
    }
    Ok(())
}

/// Delivers messages until none is in flight, or fails if the nodes never fall silent (a
/// livelock), where `LocalCluster::stabilize` would loop forever.
fn settle(cluster: &mut LocalCluster) -> Result<(), String> {
    cluster.process_all();
    for _ in 0..100_000 {
        if cluster.network.is_empty() {
            return Ok(());
        }
        deliver_one(cluster);
    }
    Err("livelock: the nodes keep talking without ticks".into())
}

/// Restarts every node and runs the cluster without faults until every node has applied all
/// the leader has, including a command the leader proposed in its own term.
fn heal(cluster: &mut LocalCluster) -> Result<(), String> {
    let ids: Vec<NodeId> = cluster.nodes.keys().copied().collect();
    for &id in &ids {
        if cluster.nodes[&id].down {
            cluster.restart(id);
            cluster.process(id);
        }
    }
    let mut proposed_in = None;
    for _ in 0..400 {
        settle(cluster)?;
        if let Some(leader) = cluster.leader() {
            let status = cluster.node(leader).status();
            if proposed_in != Some(status.term) {
                // Once per leader: a proposal of a deposed one may be lost, which is allowed.
                proposed_in = Some(status.term);
                cluster.node_mut(leader).propose(Bytes::from("last")).expect("leads");
                cluster.process(leader);
                continue;
            }
            let settled = status.commit == status.last_index && status.last_term == status.term;
            let applied =
                ids.iter().all(|&id| cluster.nodes[&id].applied.len() as u64 == status.commit.0);
            if settled && applied {
                return Ok(());
            }
        }
        for &id in &ids {
            cluster.tick(id, 1);
        }
    }
    let status: Vec<String> = ids
        .iter()
        .map(|&id| {
            let s = cluster.node(id).status();
            let machine = cluster.nodes[&id].applied.len();
            format!(
                "{id} {} term={} last={}@{} commit={} applied={} machine={machine} \
                 snapshot={} first={} progress={:?}",
                s.role,
                s.term,
                s.last_index,
                s.last_term,
                s.commit,
                s.applied,
                s.snapshot,
                s.first_index,
                s.progress
            )
        })
        .collect();
    Err(format!("no convergence after the faults:\n{}", status.join("\n")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn snapshots_keep_state_machines_safe_and_converge(
        steps in proptest::collection::vec(step(), 1..150),
        cache in prop_oneof![Just(0u64), Just(200), Just(1 << 20)],
    ) {
        let mut cluster = LocalCluster::new(NODES, false, |config| {
            config.max_cached_bytes = cache;
            config.max_append_entries = 3;
        });
        cluster.node_mut(NodeId(1)).campaign();
        settle(&mut cluster).map_err(TestCaseError::fail)?;
        let mut proposed = 0;
        for step in &steps {
            perform(&mut cluster, step, &mut proposed);
            check_safety(&cluster).map_err(TestCaseError::fail)?;
        }
        heal(&mut cluster).map_err(TestCaseError::fail)?;
        check_safety(&cluster).map_err(TestCaseError::fail)?;
    }
}
