//! A real cluster: `skiff node` processes on 127.0.0.1, real TCP between them, real files with
//! real fsyncs, killed with SIGKILL and restarted on their data directories.
//!
//! The nodes run with a short heartbeat (20 ms) and election timeout (200 ms) so elections
//! take a fraction of a second; every wait is bounded, and every process is killed when its
//! test ends, pass or fail (the cluster's `Drop`).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Answer, free_addrs, http, json_number};

/// The longest any wait in these tests may take.
const PATIENCE: Duration = Duration::from_secs(30);

/// A cluster of `skiff node` processes.
struct Cluster {
    /// The directory holding every node's data and log.
    dir: tempfile::TempDir,
    /// `--peers`.
    peers: String,
    /// Client addresses by node (index 0 is node 1).
    clients: Vec<SocketAddr>,
    /// The processes, `None` while a node is down.
    children: Vec<Option<Child>>,
}

impl Cluster {
    /// Starts `size` nodes.
    fn start(size: usize) -> Cluster {
        let peer_addrs = free_addrs(size);
        let peers = peer_addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| format!("{}={addr}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            dir: tempfile::tempdir().expect("a temporary directory"),
            peers,
            clients: free_addrs(size),
            children: (0..size).map(|_| None).collect(),
        };
        for id in 1..=size as u64 {
            cluster.start_node(id);
        }
        cluster
    }

    /// The data directory of node `id`.
    fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    /// The command line of node `id`, with its data directory `data_dir`.
    fn node_command(&self, id: u64, data_dir: &Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_skiff"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node-{id}.log")))
            .expect("a log file");
        command
            .arg("node")
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--client-addr", &self.clients[id as usize - 1].to_string()])
            .args(["--peers", &self.peers])
            .args(["--heartbeat-interval", "20", "--election-timeout", "200"])
            .env("SKIFF_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log file handle"))
            .stderr(log);
        command
    }

    /// Starts (or restarts) node `id` on its data directory.
    fn start_node(&mut self, id: u64) {
        let child =
            self.node_command(id, &self.data_dir(id)).spawn().expect("the skiff binary starts");
        self.children[id as usize - 1] = Some(child);
    }

    /// Kills node `id` with SIGKILL: no chance to flush anything.
    fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children[id as usize - 1].take() {
            child.kill().expect("the node can be killed");
            child.wait().expect("the killed node is reaped");
        }
    }

    /// The client address of node `id`.
    fn client(&self, id: u64) -> SocketAddr {
        self.clients[id as usize - 1]
    }

    /// Waits until a node that is up reports a leader that is up too; returns its id.
    fn leader(&self) -> u64 {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            for (i, child) in self.children.iter().enumerate() {
                if child.is_none() {
                    continue;
                }
                let Ok(answer) = http(self.clients[i], "GET", "/v1/status", b"") else {
                    continue;
                };
                let Some(leader) = json_number(&answer.body, "leader") else { continue };
                if self.children.get(leader as usize - 1).is_some_and(Option::is_some) {
                    return leader;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "no leader within {PATIENCE:?}; logs in {}:\n{}",
            self.dir.path().display(),
            self.logs()
        );
    }

    /// Every node's log, for failure messages.
    fn logs(&self) -> String {
        (1..=self.clients.len())
            .map(|id| {
                let path = self.dir.path().join(format!("node-{id}.log"));
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                format!(
                    "--- node {id} ---\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Retries `request` against node `id` until it answers `expected` (or panics after the
    /// patience runs out, showing the last answer).
    fn until(&self, id: u64, method: &str, path: &str, body: &[u8], expected: u16) -> Answer {
        let deadline = Instant::now() + PATIENCE;
        let mut last = None;
        while Instant::now() < deadline {
            match http(self.client(id), method, path, body) {
                Ok(answer) if answer.status == expected => return answer,
                other => last = Some(other),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{method} {path} on node {id} never answered {expected}; last: {last:?}\n{}",
            self.logs()
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_cluster_elects_a_leader_replicates_writes_and_forwards_from_followers() {
    let cluster = Cluster::start(3);
    let leader = cluster.leader();
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");

    // A write sent to a follower is forwarded to the leader and acknowledged.
    let put = cluster.until(follower, "PUT", "/v1/kv/greeting", b"hello", 200);
    assert_eq!(put.header("skiff-forwarded-from"), Some(follower.to_string().as_str()));
    assert!(put.body.contains("\"revision\""), "{put:?}");

    // A linearizable read anywhere sees it at once; a stale read on every node soon does.
    for id in 1..=3 {
        let get = cluster.until(id, "GET", "/v1/kv/greeting", b"", 200);
        assert_eq!(get.body, "hello");
        cluster.until(id, "GET", "/v1/kv/greeting?consistency=stale", b"", 200);
    }

    // Compare-and-swap, delete and scan.
    let swapped = cluster.until(
        leader,
        "POST",
        "/v1/kv/greeting/cas",
        br#"{"expected": "hello", "value": "hi"}"#,
        200,
    );
    assert!(swapped.body.contains("revision"), "{swapped:?}");
    let mismatch = http(
        cluster.client(leader),
        "POST",
        "/v1/kv/greeting/cas",
        br#"{"expected": "hello", "value": "x"}"#,
    )
    .expect("an answer");
    assert_eq!(mismatch.status, 409, "{mismatch:?}");
    assert!(mismatch.body.contains("cas_mismatch") && mismatch.body.contains("\"current\":\"hi\""));
    let scan = cluster.until(follower, "GET", "/v1/kv?prefix=gr", b"", 200);
    assert!(
        scan.body.contains("\"key\":\"greeting\"") && scan.body.contains("\"value\":\"hi\""),
        "{scan:?}"
    );
    cluster.until(follower, "DELETE", "/v1/kv/greeting", b"", 200);
    let gone = http(cluster.client(leader), "GET", "/v1/kv/greeting", b"").expect("an answer");
    assert_eq!(gone.status, 404, "{gone:?}");
    assert!(gone.body.contains("key_not_found"));

    // Bad requests get clear errors, and change nothing.
    let bad_cas =
        http(cluster.client(leader), "POST", "/v1/kv/k/cas", b"not json").expect("an answer");
    assert_eq!(bad_cas.status, 400, "{bad_cas:?}");
    assert!(bad_cas.body.contains("bad_request"));
    let long_key = format!("/v1/kv/{}", "k".repeat(5000));
    let too_long = http(cluster.client(leader), "PUT", &long_key, b"v").expect("an answer");
    assert_eq!(too_long.status, 413, "{too_long:?}");
    let huge = vec![b'v'; (1 << 20) + 1];
    let too_large = http(cluster.client(leader), "PUT", "/v1/kv/big", &huge).expect("an answer");
    assert_eq!(too_large.status, 413, "{too_large:?}");
    let bad_consistency =
        http(cluster.client(leader), "GET", "/v1/kv/k?consistency=maybe", b"").expect("an answer");
    assert_eq!(bad_consistency.status, 400, "{bad_consistency:?}");
    let not_utf8 = http(cluster.client(leader), "PUT", "/v1/kv/%FF", b"v").expect("an answer");
    assert_eq!(not_utf8.status, 400, "{not_utf8:?}");
    assert!(not_utf8.body.contains("bad_request"), "{not_utf8:?}");
    let patch = http(cluster.client(leader), "PATCH", "/v1/kv/big", b"v").expect("an answer");
    assert_eq!(patch.status, 405, "{patch:?}");
    assert!(patch.body.contains("method_not_allowed"), "{patch:?}");
    assert_eq!(patch.header("allow"), Some("GET, HEAD, PUT, DELETE, POST"), "{patch:?}");
    let missing = http(cluster.client(leader), "GET", "/v1/kv/big", b"").expect("an answer");
    assert_eq!(missing.status, 404, "the refused writes left nothing behind: {missing:?}");

    // Keys are percent-decoded from the path, `/` and all; HEAD is GET without the body.
    cluster.until(leader, "PUT", "/v1/kv/dir%2Fa%20b", b"spaced", 200);
    let spaced = cluster.until(leader, "GET", "/v1/kv/dir/a%20b", b"", 200);
    assert_eq!(spaced.body, "spaced");
    let listed = cluster.until(leader, "GET", "/v1/kv?prefix=dir/", b"", 200);
    assert!(listed.body.contains("\"key\":\"dir/a b\""), "{listed:?}");
    let head = cluster.until(leader, "HEAD", "/v1/kv/dir/a%20b", b"", 200);
    assert_eq!(head.body, "", "{head:?}");
    assert!(head.header("skiff-revision").is_some(), "{head:?}");

    // Status and metrics.
    let status = cluster.until(leader, "GET", "/v1/status", b"", 200);
    assert!(status.body.contains("\"role\":\"leader\""), "{status:?}");
    assert!(status.body.contains("\"progress\":[{"), "a leader shows its followers: {status:?}");
    assert!(status.body.contains("\"cut_links\":[]"), "no link cut: {status:?}");
    // Fault injection is refused, naming the flag that would allow it.
    let refused =
        http(cluster.client(leader), "POST", "/v1/faults/links/2/cut", b"").expect("an answer");
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(
        refused.body.contains("fault_injection_disabled")
            && refused.body.contains("--allow-fault-injection"),
        "{refused:?}"
    );
    let metrics = cluster.until(leader, "GET", "/metrics", b"", 200);
    for name in [
        "skiff_server_has_leader 1",
        "skiff_server_is_leader 1",
        "skiff_disk_wal_fsync_duration_seconds_bucket",
    ] {
        assert!(metrics.body.contains(name), "{name} missing from /metrics");
    }
}

#[test]
fn killing_the_leader_elects_another_and_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3);
    let first_leader = cluster.leader();
    let acknowledged: Vec<String> = (0..50)
        .map(|i| {
            let key = format!("key-{i:02}");
            cluster.until(
                first_leader,
                "PUT",
                &format!("/v1/kv/{key}"),
                format!("value-{i}").as_bytes(),
                200,
            );
            key
        })
        .collect();

    cluster.kill(first_leader);
    let second_leader = cluster.leader();
    assert_ne!(second_leader, first_leader, "a killed node cannot lead");
    for (i, key) in acknowledged.iter().enumerate() {
        let get = cluster.until(second_leader, "GET", &format!("/v1/kv/{key}"), b"", 200);
        assert_eq!(get.body, format!("value-{i}"), "acknowledged write {key} survived");
    }
    // The cluster keeps taking writes with one node down.
    cluster.until(second_leader, "PUT", "/v1/kv/after", b"kill", 200);

    // The killed node restarts from its write-ahead log and catches up with what it missed.
    cluster.start_node(first_leader);
    let caught_up = cluster.until(first_leader, "GET", "/v1/kv/after?consistency=stale", b"", 200);
    assert_eq!(caught_up.body, "kill");
    let old = cluster.until(first_leader, "GET", "/v1/kv/key-49?consistency=stale", b"", 200);
    assert_eq!(old.body, "value-49", "its own log survived the kill");
}

#[test]
fn a_node_refuses_another_nodes_data_directory_and_bad_flags() {
    let mut cluster = Cluster::start(1);
    cluster.leader();
    cluster.until(1, "PUT", "/v1/kv/k", b"v", 200);
    cluster.kill(1);

    // Node 2's command line on node 1's data directory: refused with the reason.
    let output = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["node", "--id", "2", "--data-dir"])
        .arg(cluster.data_dir(1))
        .args(["--client-addr", "127.0.0.1:0", "--peers", "2=127.0.0.1:0"])
        .output()
        .expect("the skiff binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("wrong data directory"), "{stderr}");

    // A bad flag value is one clear line.
    let output = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["node", "--id", "1", "--data-dir", "/tmp/x", "--peers", "1=nowhere"])
        .output()
        .expect("the skiff binary runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad --peers entry") && stderr.lines().count() == 1, "{stderr}");
}
