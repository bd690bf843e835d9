//! A follower far behind catches up in work linear in the entries it needs: each `Append` it
//! receives carries a full batch, each storage read is one bounded batch, no entry is sent twice
//! in the steady stream, and the leader keeps replicating to the other follower meanwhile.

use bytes::Bytes;
use skiff_raft::testkit::LocalCluster;
use skiff_raft::{
    Action, Body, Entry, Index, Message, NodeId, Payload, ReadPurpose, RoleKind, Term,
};

const BEHIND: u64 = 50_000;
const BATCH: usize = 64;

#[test]
fn far_behind_follower_catches_up_linearly() {
    let (leader, healthy, lagging) = (NodeId(1), NodeId(2), NodeId(3));
    let mut cluster = LocalCluster::new(3, false, |config| {
        config.max_append_entries = BATCH;
        config.max_inflight_appends = 4;
        // A small cache: most of the backlog must come back from storage reads.
        config.max_cached_bytes = 64 << 10;
    });
    cluster.node_mut(leader).campaign();
    cluster.stabilize();
    assert_eq!(cluster.leader(), Some(leader));

    cluster.crash(lagging);
    for chunk in 0..BEHIND / 1000 {
        for item in 0..1000 {
            let command = Bytes::from(format!("put {chunk}-{item}"));
            cluster.node_mut(leader).propose(command).expect("node 1 leads");
        }
        cluster.stabilize();
    }
    let target = cluster.node(leader).commit();
    assert!(target.0 > BEHIND, "the backlog is committed by the leader and the healthy follower");

    // Bring the follower back and drive the cluster by hand, counting what the leader does for
    // it: Appends with entries, entries sent, and storage reads.
    cluster.restart(lagging);
    let mut appends = 0u64;
    let mut entries_sent = 0u64;
    let mut reads = 0u64;
    let mut rounds = 0;
    while cluster.node(lagging).commit() < target {
        rounds += 1;
        assert!(rounds < 1_000_000, "catch-up does not finish");
        // One heartbeat tick now and then; otherwise deliver one message at a time.
        if cluster.network.is_empty() {
            cluster.node_mut(leader).tick();
        }
        for action in cluster.node_mut(leader).take_actions() {
            match &action {
                Action::Send(message) if message.to == lagging => {
                    if let Body::Append { entries, .. } = &message.body
                        && !entries.is_empty()
                    {
                        appends += 1;
                        entries_sent += entries.len() as u64;
                    }
                }
                Action::ReadEntries(request) if matches!(request.purpose, ReadPurpose::Replicate { to, .. } if to == lagging) =>
                {
                    reads += 1;
                    assert!(request.high.0 - request.low.0 <= BATCH as u64, "bounded read");
                }
                _ => {}
            }
            replay(&mut cluster, leader, action);
        }
        if let Some(message) = cluster.network.pop_front() {
            let to = message.to;
            cluster.node_mut(to).step(message).expect("cluster messages are well-formed");
            if to != leader {
                // The leader's actions are taken (and counted) at the top of the loop.
                cluster.process(to);
            }
        }
    }

    let needed = target.0;
    let batches = needed.div_ceil(BATCH as u64);
    assert!(entries_sent <= needed + 4 * BATCH as u64, "sent {entries_sent} entries for {needed}");
    assert!(appends <= batches + 8, "{appends} appends for {batches} batches");
    assert!(reads <= batches + 8, "{reads} reads for {batches} batches");
    assert!(reads >= batches / 2, "the backlog came from storage: {reads} reads");

    // The healthy follower was never held back: it has everything the leader has.
    cluster.stabilize();
    let healthy_status = cluster.node(healthy).status();
    assert_eq!(healthy_status.commit, cluster.node(leader).commit());
    let applied: Vec<_> = cluster.nodes[&lagging].applied.iter().map(|e| e.index).collect();
    assert_eq!(applied.len() as u64, cluster.node(lagging).commit().0, "applied gap-free");
}

/// Performs one action of `id` the way `LocalCluster::process` would.
fn replay(cluster: &mut LocalCluster, id: NodeId, action: Action) {
    match action {
        Action::Send(message) => cluster.network.push_back(message),
        Action::ReadEntries(request) => {
            let local = cluster.nodes.get_mut(&id).expect("a node");
            let entries = local.storage.read(&request);
            local.node.entries_read(request, entries).expect("reads come from our own log");
        }
        Action::PersistHardState(hard_state) => {
            cluster.nodes.get_mut(&id).expect("a node").storage.hard_state = hard_state;
        }
        Action::PersistEntries(entries) => {
            let local = cluster.nodes.get_mut(&id).expect("a node");
            local.storage.persist_entries(&entries);
            let last = entries.last().expect("non-empty");
            local.node.persisted(last.index, last.term);
        }
        Action::Apply(entries) => {
            cluster.nodes.get_mut(&id).expect("a node").applied.extend(entries);
        }
        Action::ReadReady { .. } | Action::ReadFailed { .. } | Action::Event(_) => {}
        Action::FetchSnapshot { .. } => unreachable!("only the leader's actions are replayed"),
    }
}

/// A read for a follower answered after its leader stepped down is ignored whatever it holds:
/// the next leader may have truncated the log meanwhile, so the storage may hand back other
/// entries or none. While the leader still leads, the same answer is a storage bug.
#[test]
fn a_read_answered_after_its_leadership_ended_is_ignored() {
    let (leader, healthy, lagging) = (NodeId(1), NodeId(2), NodeId(3));
    let mut cluster = LocalCluster::new(3, false, |config| {
        config.max_append_entries = BATCH;
        config.max_cached_bytes = 4 << 10;
    });
    cluster.node_mut(leader).campaign();
    cluster.stabilize();
    cluster.crash(lagging);
    for item in 0..2_000 {
        let command = Bytes::from(format!("put {item}"));
        cluster.node_mut(leader).propose(command).expect("node 1 leads");
    }
    cluster.stabilize();

    // The follower comes back; drive the leader until it asks its storage for entries to send.
    cluster.restart(lagging);
    let request = 'found: loop {
        if cluster.network.is_empty() {
            cluster.node_mut(leader).tick();
        }
        for action in cluster.node_mut(leader).take_actions() {
            match action {
                Action::ReadEntries(request)
                    if matches!(request.purpose, ReadPurpose::Replicate { .. }) =>
                {
                    break 'found request;
                }
                action => replay(&mut cluster, leader, action),
            }
        }
        if let Some(message) = cluster.network.pop_front() {
            let to = message.to;
            cluster.node_mut(to).step(message).expect("cluster messages are well-formed");
            if to != leader {
                cluster.process(to);
            }
        }
    };
    let wrong = vec![Entry { index: request.low, term: Term(99), payload: Payload::Noop }];
    assert!(
        cluster.node_mut(leader).entries_read(request, wrong.clone()).is_err(),
        "while it leads, entries its log does not hold are a storage bug"
    );

    // A later term's leader heard from: node 1 steps down, and the answer no longer matters.
    let term = cluster.node(leader).term();
    let append = Body::Append {
        prev_index: Index(0),
        prev_term: Term(0),
        entries: Vec::new(),
        commit: Index(0),
    };
    let message = Message { from: healthy, to: leader, term: Term(term.0 + 1), body: append };
    cluster.node_mut(leader).step(message).expect("a well-formed message");
    assert_ne!(cluster.node(leader).role(), RoleKind::Leader);
    for answer in [wrong, Vec::new()] {
        let outcome = cluster.node_mut(leader).entries_read(request, answer);
        assert_eq!(outcome, Ok(()), "a read of an ended leadership is dropped unchecked");
    }
}
