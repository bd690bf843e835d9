//! Leadership transfer, graceful shutdown, lease and follower reads, and a joint change of two
//! voters, on real `skiff node` processes on 127.0.0.1.
//!
//! Every wait is bounded; every process is killed when its test ends, pass or fail. Nothing here
//! asserts a duration: a graceful shutdown is shown to have handed leadership over by what the
//! nodes log and report, not by how fast the next leader came.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Answer, free_addrs, http};
use serde_json::Value;

/// The longest any wait in this test may take.
const PATIENCE: Duration = Duration::from_secs(30);

/// Up to five `skiff node` processes.
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
    /// Flags every node is started with, besides the usual ones.
    extra: Vec<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in 1..=self.children.len() as u64 {
            self.kill(id);
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

impl Cluster {
    /// Room for `size` nodes, none started.
    fn new(size: usize, election_ms: u64) -> Cluster {
        // All in one call: addresses bound together are distinct, whereas a second call could
        // be handed a port the first just released.
        let mut peer_addrs = free_addrs(2 * size);
        let clients = peer_addrs.split_off(size);
        Cluster {
            dir: tempfile::tempdir().expect("a temporary directory"),
            peer_addrs,
            clients,
            children: (0..size).map(|_| None).collect(),
            election_ms,
            extra: Vec::new(),
        }
    }

    /// Starts nodes 1 to 3 as a founding cluster and returns its leader.
    fn start_three(&mut self) -> u64 {
        for id in 1..=3 {
            self.start(id, &[1, 2, 3], false);
        }
        self.leader_among(&[1, 2, 3])
    }

    /// Starts node `id` with `--peers` naming `peers`, joining a running cluster if `join`.
    fn start(&mut self, id: u64, peers: &[u64], join: bool) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))
            .expect("a log file");
        let entries: Vec<String> =
            peers.iter().map(|id| format!("{id}={}", self.peer_addrs[*id as usize - 1])).collect();
        let mut command = Command::new(env!("CARGO_BIN_EXE_skiff"));
        command
            .arg("node")
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("node-{id}")))
            .args(["--client-addr", &self.client(id).to_string()])
            .args(["--peer-addr", &self.peer_addrs[id as usize - 1].to_string()])
            .args(["--peers", &entries.join(",")])
            .args(["--heartbeat-interval", "20", "--election-timeout"])
            .arg(self.election_ms.to_string())
            .args(&self.extra)
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

    /// Sends node `id` SIGTERM and waits for it to exit; its exit status.
    fn terminate(&mut self, id: u64) -> std::process::ExitStatus {
        let mut child = self.children[id as usize - 1].take().expect("the node runs");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().expect("the child can be waited for") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("node {id} did not exit after SIGTERM\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The client address of node `id`.
    fn client(&self, id: u64) -> SocketAddr {
        self.clients[id as usize - 1]
    }

    /// Where node `id` logs.
    fn log_path(&self, id: u64) -> std::path::PathBuf {
        self.dir.path().join(format!("node-{id}.log"))
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
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{what}: not within {PATIENCE:?}\n{}", self.logs());
    }

    /// Waits until one of `among` reports itself leader and the others follow it; returns it.
    fn leader_among(&self, among: &[u64]) -> u64 {
        let mut found = None;
        self.wait_for("a leader every node follows", || {
            found = among.iter().copied().find(|id| {
                status(self.client(*id)).is_some_and(|status| status["role"] == "leader")
            });
            found.is_some_and(|leader| {
                among.iter().all(|id| {
                    status(self.client(*id)).is_some_and(|status| status["leader"] == leader)
                })
            })
        });
        found.expect("waited for it")
    }

    /// Every node's log tail, for failure messages.
    fn logs(&self) -> String {
        (1..=self.clients.len() as u64)
            .map(|id| {
                let text = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
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

/// The JSON body of an answer.
fn body(answer: &Answer) -> Value {
    serde_json::from_str(&answer.body).unwrap_or(Value::Null)
}

/// `POST /v1/leader/transfer` to `addr` with `body`.
fn transfer(addr: SocketAddr, body: &str) -> Answer {
    http(addr, "POST", "/v1/leader/transfer", body.as_bytes()).expect("the node answers")
}

/// Puts `key` through `addr`; the answer.
fn put(addr: SocketAddr, key: &str, value: &str) -> Answer {
    http(addr, "PUT", &format!("/v1/kv/{key}"), value.as_bytes()).expect("the node answers")
}

/// Asserts a CLI run succeeded; its stdout.
fn assert_ok(output: &Output, cluster: &Cluster) -> String {
    assert!(
        output.status.success(),
        "skiff cluster failed: {}{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        cluster.logs()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The term node `id` reports.
fn term_of(cluster: &Cluster, id: u64) -> u64 {
    status(cluster.client(id)).and_then(|status| status["term"].as_u64()).expect("a term")
}

#[test]
fn transfers_through_http_and_the_cli_move_leadership_to_the_target() {
    let mut cluster = Cluster::new(3, 600);
    let first = cluster.start_three();
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != first).collect();
    assert_eq!(put(cluster.client(first), "k", "1").status, 200);
    let term = term_of(&cluster, first);

    // Over HTTP, to a chosen follower, asked of the leader.
    let answer = transfer(cluster.client(first), &format!(r#"{{"to": {}}}"#, others[0]));
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, cluster.logs());
    let json = body(&answer);
    assert_eq!(json["leader"], others[0], "{json}");
    assert_eq!(json["previous_leader"], first, "{json}");
    assert!(json["term"].as_u64().is_some_and(|new| new > term), "{json}");
    let second = cluster.leader_among(&[1, 2, 3]);
    assert_eq!(second, others[0]);
    assert_eq!(put(cluster.client(second), "k", "2").status, 200);

    // With the CLI, through a follower (which forwards), back to the first leader.
    let output = cluster.cli(others[1], &["transfer", "--to", &first.to_string()]);
    let stdout = assert_ok(&output, &cluster);
    assert!(
        stdout.starts_with(&format!("Leadership transferred from {second} to {first} (term ")),
        "{stdout}"
    );
    assert_eq!(cluster.leader_among(&[1, 2, 3]), first);

    // Without a target the leader picks a voter; leadership moves off it.
    let output = cluster.cli(first, &["transfer", "-w", "json"]);
    let stdout = assert_ok(&output, &cluster);
    let json: Value = serde_json::from_str(&stdout).expect("JSON output");
    assert_eq!(json["previous_leader"], first, "{json}");
    assert_ne!(json["leader"], first, "{json}");
    let third = cluster.leader_among(&[1, 2, 3]);
    assert_eq!(json["leader"], third, "{json}");

    // Asking for the leader it already has is done at once.
    let answer = transfer(cluster.client(third), &format!(r#"{{"to": {third}}}"#));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(body(&answer)["leader"], third);
    // Every write went through, in order.
    let read = http(cluster.client(third), "GET", "/v1/kv/k", b"").expect("the leader answers");
    assert_eq!(read.body, "2");
}

#[test]
fn transfer_errors_are_clear() {
    // A long election timeout: an aborted transfer is in progress long enough to be seen.
    let mut cluster = Cluster::new(4, 1500);
    let leader = cluster.start_three();
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    let leader_addr = cluster.client(leader);

    let answer = transfer(leader_addr, r#"{"to": 9}"#);
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(body(&answer)["code"], "unknown_node");
    let answer = transfer(leader_addr, r#"{"to": "two"}"#);
    assert_eq!(answer.status, 400, "{}", answer.body);
    let answer = transfer(leader_addr, r#"{"to": 0}"#);
    assert_eq!(answer.status, 400, "{}", answer.body);
    let output = cluster.cli(others[0], &["transfer", "--to", "9"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown_node"));

    // A learner cannot lead.
    cluster.start(4, &[1, 2, 3, 4], true);
    let add = format!(
        r#"{{"changes": [{{"action": "add_learner", "id": 4, "peer_addr": "{}"}}]}}"#,
        cluster.peer_addrs[3]
    );
    let added = http(leader_addr, "POST", "/v1/members", add.as_bytes()).expect("an answer");
    assert_eq!(added.status, 200, "{}", added.body);
    let answer = transfer(leader_addr, r#"{"to": 4}"#);
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert_eq!(body(&answer)["code"], "not_a_voter");

    // A follower that is down cannot be caught up: the transfer is aborted after an election
    // timeout, and while it is under way a second one is refused, as are writes' proposals.
    cluster.kill(others[1]);
    let target = others[1];
    let pending =
        std::thread::spawn(move || transfer(leader_addr, &format!(r#"{{"to": {target}}}"#)));
    cluster.wait_for("the transfer is under way", || {
        status(leader_addr).is_some_and(|status| status["transfer_target"] == target)
    });
    let second = transfer(leader_addr, &format!(r#"{{"to": {}}}"#, others[0]));
    assert_eq!(second.status, 409, "{}", second.body);
    assert_eq!(body(&second)["code"], "transfer_in_progress");
    let aborted = pending.join().expect("the transfer's thread");
    assert_eq!(aborted.status, 504, "{}\n{}", aborted.body, cluster.logs());
    assert_eq!(body(&aborted)["code"], "transfer_aborted");
    // The leader leads on and takes writes again.
    assert_eq!(status(leader_addr).expect("the leader answers")["role"], "leader");
    assert_eq!(status(leader_addr).expect("the leader answers")["transfer_target"], Value::Null);
    assert_eq!(put(leader_addr, "after", "abort").status, 200);
}

#[test]
fn sigterm_of_the_leader_hands_leadership_over_before_it_exits() {
    // A long election timeout: without a handover the next leader would need one to pass.
    let mut cluster = Cluster::new(3, 2000);
    let leader = cluster.start_three();
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    assert_eq!(put(cluster.client(leader), "k", "before").status, 200);
    let term = term_of(&cluster, leader);

    let exit = cluster.terminate(leader);
    assert!(exit.success(), "a graceful stop exits 0: {exit:?}\n{}", cluster.logs());
    let log = std::fs::read_to_string(cluster.log_path(leader)).expect("the leader's log");
    let handed = log
        .lines()
        .find(|line| line.contains("shutting down: leadership handed over"))
        .unwrap_or_else(|| panic!("the old leader handed nothing over:\n{}", cluster.logs()));
    let new_leader = cluster.leader_among(&others);
    assert!(handed.contains(&format!("leader={new_leader}")), "{handed}");
    // The target was told to campaign at once: one election, in the next term.
    assert_eq!(term_of(&cluster, new_leader), term + 1, "{}", cluster.logs());
    assert_eq!(put(cluster.client(new_leader), "k", "after").status, 200);
}

/// The value of the counter `name` in a node's `/metrics`, 0 when absent.
fn counter(addr: SocketAddr, name: &str) -> u64 {
    let answer = http(addr, "GET", "/metrics", b"").expect("the node answers");
    answer
        .body
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

/// `GET /v1/kv/{key}` with `query` at `addr`: the value, and whether another node served it.
fn get(addr: SocketAddr, key: &str, query: &str) -> (String, bool) {
    let answer = http(addr, "GET", &format!("/v1/kv/{key}{query}"), b"").expect("an answer");
    assert_eq!(answer.status, 200, "GET {key}{query}: {}", answer.body);
    (answer.body.clone(), answer.header("skiff-forwarded-from").is_some())
}

#[test]
fn lease_reads_and_follower_reads_return_the_latest_acknowledged_write() {
    let mut cluster = Cluster::new(3, 1000);
    cluster.extra = vec!["--lease-reads".to_string()];
    let leader = cluster.start_three();
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    let leader_addr = cluster.client(leader);

    for round in 0..20 {
        let value = round.to_string();
        assert_eq!(put(leader_addr, "k", &value).status, 200);
        // Each read begins after the write was acknowledged, so it must see it.
        assert_eq!(get(leader_addr, "k", "?consistency=lease"), (value.clone(), false));
        // Followers serve linearizable and lease reads from their own stores (not forwarded),
        // having asked the leader for a read index.
        assert_eq!(get(cluster.client(followers[0]), "k", ""), (value.clone(), false));
        let (read, forwarded) = get(cluster.client(followers[1]), "k", "?consistency=lease");
        assert_eq!((read, forwarded), (value.clone(), false));
        let scan =
            http(cluster.client(followers[0]), "GET", "/v1/kv?prefix=k&consistency=lease", b"")
                .expect("an answer");
        let scanned = body(&scan);
        assert_eq!(scanned["kvs"][0]["value"], value.as_str(), "{scanned}");
    }
    assert!(counter(leader_addr, "skiff_server_lease_reads_total") > 0, "no read used the lease");
    for follower in &followers {
        assert!(counter(cluster.client(*follower), "skiff_server_follower_reads_total") >= 20);
    }
    let bad = http(leader_addr, "GET", "/v1/kv/k?consistency=eventual", b"").expect("an answer");
    assert_eq!(bad.status, 400, "{}", bad.body);
}

#[test]
fn lease_reads_without_the_flag_are_served_through_read_index() {
    let mut cluster = Cluster::new(3, 600);
    let leader = cluster.start_three();
    assert_eq!(put(cluster.client(leader), "k", "v").status, 200);
    assert_eq!(get(cluster.client(leader), "k", "?consistency=lease"), ("v".to_string(), false));
    assert_eq!(counter(cluster.client(leader), "skiff_server_lease_reads_total"), 0);
    assert!(counter(cluster.client(leader), "skiff_server_lease_reads_refused_total") >= 1);
}

#[test]
fn two_voters_are_replaced_at_once_and_the_cluster_serves_on_without_them() {
    let mut cluster = Cluster::new(5, 600);
    let leader = cluster.start_three();
    let removed: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    assert_eq!(put(cluster.client(leader), "before", "3 voters").status, 200);
    cluster.start(4, &[1, 2, 3, 4], true);
    cluster.start(5, &[1, 2, 3, 5], true);

    // One request: two voters in, two out, through joint consensus.
    let change = format!(
        r#"{{"changes": [
            {{"action": "add_voter", "id": 4, "peer_addr": "{}"}},
            {{"action": "add_voter", "id": 5, "peer_addr": "{}"}},
            {{"action": "remove", "id": {}}},
            {{"action": "remove", "id": {}}}]}}"#,
        cluster.peer_addrs[3], cluster.peer_addrs[4], removed[0], removed[1]
    );
    let answer = http(cluster.client(removed[0]), "POST", "/v1/members", change.as_bytes())
        .expect("an answer");
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, cluster.logs());
    let view = body(&answer);
    let mut voters = vec![leader, 4, 5];
    voters.sort_unstable();
    assert_eq!(view["voters"], serde_json::json!(voters), "{view}");
    assert_eq!(view["joint"], false, "{view}");

    // The removed nodes, still running, do not disturb the new configuration: the leader
    // keeps its term while writes commit.
    let term = term_of(&cluster, leader);
    for round in 0..10 {
        assert_eq!(put(cluster.client(leader), "during", &round.to_string()).status, 200);
    }
    assert_eq!(term_of(&cluster, leader), term, "{}", cluster.logs());
    // They are no longer needed: with both gone the new voters commit.
    cluster.kill(removed[0]);
    cluster.kill(removed[1]);
    assert_eq!(put(cluster.client(leader), "after", "new voters").status, 200);
    for id in [4, 5] {
        assert_eq!(get(cluster.client(id), "before", ""), ("3 voters".to_string(), false));
        assert_eq!(get(cluster.client(id), "after", ""), ("new voters".to_string(), false));
    }
    // And the new configuration elects without them: leadership moves to a new voter.
    let answer = transfer(cluster.client(leader), r#"{"to": 4}"#);
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, cluster.logs());
    assert_eq!(cluster.leader_among(&voters), 4);
    assert_eq!(put(cluster.client(5), "last", "through a follower").status, 200);
}
