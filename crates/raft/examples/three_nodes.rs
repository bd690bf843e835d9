//! A three-node cluster in memory, printing every message, write, apply and event: the core at
//! work with nothing else around it. Run it with `cargo run -p skiff-raft --example three_nodes`.

use bytes::Bytes;
use skiff_raft::testkit::LocalCluster;
use skiff_raft::{NodeId, RoleKind};

/// Ticks every live node once per round until some node leads; returns the leader.
fn elect(cluster: &mut LocalCluster) -> NodeId {
    for _ in 0..100 {
        let ids: Vec<NodeId> = cluster.nodes.keys().copied().collect();
        for id in ids {
            cluster.tick(id, 1);
        }
        cluster.stabilize();
        if let Some(leader) = cluster.leader() {
            return leader;
        }
    }
    panic!("no leader elected within 100 rounds");
}

fn print_trace(cluster: &mut LocalCluster, heading: &str) {
    println!("\n== {heading}");
    for line in cluster.take_trace() {
        println!("   {line}");
    }
}

fn main() {
    let mut cluster = LocalCluster::new(3, true, |_| {});

    let leader = elect(&mut cluster);
    print_trace(&mut cluster, &format!("election: {leader} wins (pre-vote, then vote)"));

    for command in ["x=1", "y=2", "z=3"] {
        cluster.node_mut(leader).propose(Bytes::from(command)).expect("proposed on the leader");
    }
    cluster.stabilize();
    print_trace(&mut cluster, "three proposals, one batched Append per follower");

    // Heartbeats carry the commit index to the followers, which then apply.
    cluster.tick(leader, 1);
    cluster.stabilize();
    print_trace(&mut cluster, "a heartbeat round");

    cluster.crash(leader);
    let survivors_leader = elect(&mut cluster);
    print_trace(&mut cluster, &format!("{leader} crashes; {survivors_leader} takes over"));

    cluster.node_mut(survivors_leader).propose(Bytes::from("w=4")).expect("proposed on the leader");
    cluster.stabilize();
    cluster.restart(leader);
    cluster.tick(survivors_leader, 1);
    cluster.stabilize();
    cluster.tick(survivors_leader, 1);
    cluster.stabilize();
    print_trace(&mut cluster, &format!("{leader} restarts and catches up"));

    println!("\n== final state");
    for (id, local) in &cluster.nodes {
        let status = local.node.status();
        let role = if status.role == RoleKind::Leader { "leader" } else { "follower" };
        println!(
            "   {id}: {role:8} term={} last={}@{} commit={} applied={}",
            status.term,
            status.last_index,
            status.last_term,
            status.commit,
            local.applied.len()
        );
    }
}
