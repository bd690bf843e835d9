//! Membership changes on a real cluster: `skiff node` processes on 127.0.0.1, changed with the
//! `skiff cluster` verbs and `POST /v1/members`.
//!
//! One story, step by step: a three-node cluster grows to four (node 4 starts with `--join`, is
//! added as a learner, catches up, is promoted and then counts in the quorum), a restarted node
//! whose `--peers` never named node 4 still reaches it (the address book is in the log), a
//! follower is removed, then the leader (a new one is elected and the removed one serves no
//! more writes). Errors come with the right status. Every wait is bounded; every process is
//! killed when the test ends, pass or fail.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Answer, free_addrs, http, json_number};
use serde_json::Value;

/// The longest any wait in this test may take.
const PATIENCE: Duration = Duration::from_secs(30);

/// Up to four `skiff node` processes.
struct Cluster {
    /// Every node's data directory and log.
    dir: tempfile::TempDir,
    /// Peer addresses by node (index 0 is node 1).
    peer_addrs: Vec<SocketAddr>,
    /// Client addresses by node.
    clients: Vec<SocketAddr>,
    /// The processes, `None` while a node is down.
    children: Vec<Option<Child>>,
    /// `--election-timeout`, in milliseconds.
    election_ms: u64,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in 1..=self.children.len() as u64 {
            self.kill(id);
        }
    }
}

impl Cluster {
    /// Room for `size` nodes, none started.
    fn new(size: usize) -> Cluster {
        Cluster {
            dir: tempfile::tempdir().expect("a temporary directory"),
            peer_addrs: free_addrs(size),
            clients: free_addrs(size),
            children: (0..size).map(|_| None).collect(),
            election_ms: 200,
        }
    }

    /// `--peers` naming nodes `ids`.
    fn peers(&self, ids: &[u64]) -> String {
        let entries: Vec<String> =
            ids.iter().map(|id| format!("{id}={}", self.peer_addrs[*id as usize - 1])).collect();
        entries.join(",")
    }

    /// Starts node `id` with `--peers` naming `peers`, joining a running cluster if `join`.
    fn start(&mut self, id: u64, peers: &[u64], join: bool) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node-{id}.log")))
            .expect("a log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_skiff"));
        command
            .arg("node")
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("node-{id}")))
            .args(["--client-addr", &self.client(id).to_string()])
            .args(["--peer-addr", &self.peer_addrs[id as usize - 1].to_string()])
            .args(["--peers", &self.peers(peers)])
            .args(["--heartbeat-interval", "20", "--election-timeout"])
            .arg(self.election_ms.to_string())
            .env("SKIFF_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log file handle"))
            .stderr(log);
        if join {
            command.arg("--join");
        }
        self.children[id as usize - 1] = Some(command.spawn().expect("the skiff binary starts"));
    }

    /// Kills node `id` with SIGKILL.
    fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children[id as usize - 1].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The client address of node `id`.
    fn client(&self, id: u64) -> SocketAddr {
        self.clients[id as usize - 1]
    }

    /// Runs `skiff cluster ARGS` against node `via`.
    fn cli(&self, via: u64, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("cluster")
            .args(args)
            .args(["--endpoints", &self.client(via).to_string(), "--command-timeout", "10s"])
            .output()
            .expect("the skiff binary runs")
    }

    /// Waits until `check` holds, or fails with `what` and every node's log.
    fn wait_for(&self, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{what}: not within {PATIENCE:?}\n{}", self.logs());
    }

    /// Waits until one of `among` reports itself leader; returns it.
    fn leader_among(&self, among: &[u64]) -> u64 {
        let mut found = None;
        self.wait_for("a leader", || {
            found = among.iter().copied().find(|id| {
                status(self.client(*id)).is_some_and(|status| status["role"] == "leader")
            });
            found.is_some()
        });
        found.expect("waited for it")
    }

    /// Every node's log tail, for failure messages.
    fn logs(&self) -> String {
        (1..=self.clients.len())
            .map(|id| {
                let path = self.dir.path().join(format!("node-{id}.log"));
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- node {id} ---\n{}", tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A node's `/v1/status`, if it answers.
fn status(addr: SocketAddr) -> Option<Value> {
    let answer = http(addr, "GET", "/v1/status", b"").ok()?;
    serde_json::from_str(&answer.body).ok()
}

/// A node's `/v1/members`, if it answers.
fn members(addr: SocketAddr) -> Option<Value> {
    let answer = http(addr, "GET", "/v1/members", b"").ok()?;
    serde_json::from_str(&answer.body).ok()
}

/// Puts `key` through `addr`; the answer.
fn put(addr: SocketAddr, key: &str, value: &str) -> Answer {
    http(addr, "PUT", &format!("/v1/kv/{key}"), value.as_bytes()).expect("the node answers")
}

/// The ids in a JSON array.
fn ids(value: &Value) -> Vec<u64> {
    value.as_array().map(|ids| ids.iter().filter_map(Value::as_u64).collect()).unwrap_or_default()
}

/// Asserts a CLI run succeeded.
fn assert_ok(output: &Output, cluster: &Cluster) {
    assert!(
        output.status.success(),
        "skiff cluster failed: {}{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        cluster.logs()
    );
}

#[test]
fn a_cluster_grows_by_a_learner_promoted_then_loses_a_follower_and_its_leader() {
    let mut cluster = Cluster::new(4);
    for id in 1..=3 {
        cluster.start(id, &[1, 2, 3], false);
    }
    let leader = cluster.leader_among(&[1, 2, 3]);
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    assert_eq!(put(cluster.client(leader), "before", "3 nodes").status, 200);

    // Bad requests are refused before anything is proposed.
    let bad = http(cluster.client(leader), "POST", "/v1/members", b"{\"changes\": 4}")
        .expect("the leader answers");
    assert_eq!(bad.status, 400, "{}", bad.body);
    let no_addr = br#"{"changes": [{"action": "add_learner", "id": 4}]}"#;
    let bad =
        http(cluster.client(leader), "POST", "/v1/members", no_addr).expect("the leader answers");
    assert_eq!(bad.status, 400, "{}", bad.body);
    let unknown = cluster.cli(followers[0], &["promote", "9"]);
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("unknown_node"), "{stderr}");
    let reserved = http(cluster.client(leader), "PUT", "/v1/kv/%00skiff%2Fpeer%2F4", b"x")
        .expect("the leader answers");
    assert_eq!(reserved.status, 403, "{}", reserved.body);

    // Node 4 joins: it starts knowing only the running members, and waits.
    cluster.start(4, &[1, 2, 3, 4], true);
    let peer4 = cluster.peer_addrs[3].to_string();
    // Added through a follower, which forwards to the leader.
    let added = cluster.cli(followers[0], &["add", "4", &peer4, "--learner"]);
    assert_ok(&added, &cluster);
    let view = members(cluster.client(leader)).expect("the leader answers");
    assert_eq!(ids(&view["learners"]), vec![4], "{view}");
    // A learner cannot be promoted twice, and a second add of it is a conflict.
    let again = cluster.cli(leader, &["add", "4", &peer4]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already_member"));

    // It catches up: the write made before it existed reaches its store.
    cluster.wait_for("node 4 catches up", || {
        http(cluster.client(4), "GET", "/v1/kv/before?consistency=stale", b"")
            .is_ok_and(|answer| answer.body == "3 nodes")
    });
    let promoted = cluster.cli(leader, &["promote", "4"]);
    assert_ok(&promoted, &cluster);
    let view = members(cluster.client(leader)).expect("the leader answers");
    assert_eq!(ids(&view["voters"]), vec![1, 2, 3, 4], "{view}");
    let node4 = &view["members"][3];
    assert_eq!(node4["role"], "voter");
    assert_eq!(node4["peer_addr"], peer4.as_str());

    // It votes: with one follower down, three of four voters (leader, the other, node 4) are
    // needed for a commit.
    cluster.kill(followers[0]);
    assert_eq!(put(cluster.client(leader), "after", "4 voters").status, 200);
    // Restarted with --peers that never named node 4, the follower still knows where it is:
    // the address book came back from its log.
    cluster.start(followers[0], &[1, 2, 3], false);
    cluster.wait_for("the restarted follower knows node 4's address", || {
        members(cluster.client(followers[0]))
            .is_some_and(|view| view["members"][3]["peer_addr"] == peer4.as_str())
    });

    // A follower is removed.
    let removed = cluster.cli(leader, &["remove", &followers[1].to_string()]);
    assert_ok(&removed, &cluster);
    let view = members(cluster.client(leader)).expect("the leader answers");
    let mut expected = vec![leader, followers[0], 4];
    expected.sort_unstable();
    assert_eq!(ids(&view["voters"]), expected, "{view}");
    assert_eq!(put(cluster.client(leader), "three", "again").status, 200);

    // The leader is removed: a new one is elected among the rest, and the old one no longer
    // serves writes.
    let removed = cluster.cli(followers[0], &["remove", &leader.to_string()]);
    assert_ok(&removed, &cluster);
    let new_leader = cluster.leader_among(&[followers[0], 4]);
    assert_ne!(new_leader, leader);
    assert_eq!(put(cluster.client(new_leader), "after-leader", "gone").status, 200);
    let view = members(cluster.client(new_leader)).expect("the new leader answers");
    let mut expected = vec![followers[0], 4];
    expected.sort_unstable();
    assert_eq!(ids(&view["voters"]), expected, "{view}");
    let refused = put(cluster.client(leader), "on-removed", "no");
    assert_ne!(refused.status, 200, "a removed leader took a write: {}", refused.body);
    let json = status(cluster.client(leader)).expect("the removed node still answers");
    assert_ne!(json["role"], "leader", "{json}");
    assert!(json_number(&json.to_string(), "term").is_some());
}

#[test]
fn a_second_change_while_one_is_pending_is_refused_and_the_first_completes_later() {
    let mut cluster = Cluster::new(4);
    // A long election timeout keeps the leader leading while its change cannot commit.
    cluster.election_ms = 2000;
    for id in 1..=3 {
        cluster.start(id, &[1, 2, 3], false);
    }
    let leader = cluster.leader_among(&[1, 2, 3]);
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    assert_eq!(put(cluster.client(leader), "k", "v").status, 200);

    // With one follower down and node 4 not running, the configuration {1, 2, 3, 4} needs
    // three of four voters and has two: the change is appended (in force) but cannot commit.
    cluster.kill(followers[1]);
    let leader_addr = cluster.client(leader);
    let add = format!(
        r#"{{"changes": [{{"action": "add_voter", "id": 4, "peer_addr": "{}"}}]}}"#,
        cluster.peer_addrs[3]
    );
    let first =
        std::thread::spawn(move || http(leader_addr, "POST", "/v1/members", add.as_bytes()));
    cluster.wait_for("the change is in force on the leader", || {
        members(leader_addr).is_some_and(|view| ids(&view["voters"]).contains(&4))
    });
    let remove = format!(r#"{{"changes": [{{"action": "remove", "id": {}}}]}}"#, followers[0]);
    let second =
        http(leader_addr, "POST", "/v1/members", remove.as_bytes()).expect("the leader answers");
    assert_eq!(second.status, 409, "{}", second.body);
    assert!(second.body.contains("change_in_progress"), "{}", second.body);

    // Node 4 comes up (joining) and the follower returns: the change commits.
    cluster.start(4, &[1, 2, 3, 4], true);
    cluster.start(followers[1], &[1, 2, 3], false);
    let first = first.join().expect("the first request's thread").expect("an answer");
    // The first request may have waited past its timeout; either way the change completes.
    assert!(first.status == 200 || first.status == 503, "{}", first.body);
    let new_leader = cluster.leader_among(&[1, 2, 3, 4]);
    cluster.wait_for("four voters on a committed configuration", || {
        put(cluster.client(new_leader), "after", "v").status == 200
            && members(cluster.client(new_leader))
                .is_some_and(|view| ids(&view["voters"]) == vec![1, 2, 3, 4])
    });
}
