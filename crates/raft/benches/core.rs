//! Benchmarks of the core's hot paths (no I/O): a leader turning a proposal into actions, a
//! leader handling an append response, and whole commit rounds of a three-node cluster in
//! memory, unbatched and with 64 proposals per round. Run: `cargo bench -p skiff-raft --bench core`.

use std::cell::RefCell;

use bytes::Bytes;
use divan::Bencher;
use divan::counter::ItemsCount;
use skiff_raft::testkit::LocalCluster;
use skiff_raft::{AppendOutcome, Body, Config, Index, Message, Node, NodeId};

fn main() {
    divan::main();
}

/// A stabilized three-node cluster whose node 1 leads, with no trace recorded.
fn cluster(configure: impl Fn(&mut Config)) -> LocalCluster {
    let mut cluster = LocalCluster::new(3, false, configure);
    cluster.node_mut(NodeId(1)).campaign();
    cluster.stabilize();
    assert_eq!(cluster.leader(), Some(NodeId(1)), "node 1 campaigned alone and must lead");
    cluster
}

/// Takes the leader out of a stabilized cluster, followers' messages discarded from now on.
fn leader(configure: impl Fn(&mut Config)) -> Node {
    let mut cluster = cluster(configure);
    let local = cluster.nodes.remove(&NodeId(1)).expect("node 1 exists");
    local.node
}

const COMMAND: &[u8] = b"put key-0001 value-0001";

/// Propose one command on the leader and take the resulting actions (persist + two Appends),
/// then report the leader's write durable. The window is unbounded so it never throttles.
#[divan::bench]
fn propose_to_actions(bencher: Bencher) {
    let mut node = leader(|config| config.max_inflight_appends = usize::MAX);
    let command = Bytes::from_static(COMMAND);
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        let index = node.propose(command.clone()).expect("node 1 leads");
        let actions = node.take_actions();
        node.persisted(index, node.term());
        actions
    });
}

/// The leader handles one follower's acknowledgement (progress, window, commit check).
#[divan::bench]
fn append_response(bencher: Bencher) {
    let node = RefCell::new(leader(|config| config.max_inflight_appends = usize::MAX));
    let command = Bytes::from_static(COMMAND);
    bencher
        .counter(ItemsCount::new(1usize))
        .with_inputs(|| {
            let mut node = node.borrow_mut();
            let index = node.propose(command.clone()).expect("node 1 leads");
            node.take_actions();
            let term = node.term();
            node.persisted(index, term);
            Message {
                from: NodeId(2),
                to: NodeId(1),
                term,
                body: Body::AppendResponse(AppendOutcome::Accepted { match_index: index }),
            }
        })
        .bench_local_values(|message| {
            let mut node = node.borrow_mut();
            node.step(message).expect("a valid acknowledgement");
            node.take_actions()
        });
}

/// A full commit round of a three-node cluster in memory: propose `BATCH` commands on the
/// leader, then deliver, persist and apply until every node is quiet.
#[divan::bench(consts = [1, 64])]
fn cluster_commit<const BATCH: usize>(bencher: Bencher) {
    let mut cluster = cluster(|_| {});
    let command = Bytes::from_static(COMMAND);
    let mut last = Index(0);
    bencher.counter(ItemsCount::new(BATCH)).bench_local(|| {
        for _ in 0..BATCH {
            last = cluster.node_mut(NodeId(1)).propose(command.clone()).expect("node 1 leads");
        }
        cluster.stabilize();
    });
    for local in cluster.nodes.values() {
        assert_eq!(local.node.commit(), last, "every proposal committed everywhere");
    }
}
