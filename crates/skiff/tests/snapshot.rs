//! Snapshots and compaction on real `skiff node` processes: a node that was down while the
//! others compacted past it catches up with the leader's snapshot (InstallSnapshot over HTTP),
//! a node restarts from its own snapshot plus its log tail, `POST /v1/snapshot` and
//! `skiff cluster snapshot` take snapshots on demand, snapshots follow the log's bytes as well
//! as its entries, and the log's disk use stays bounded. A transfer held mid-way by fault
//! injection lets two tests kill, at a known point, the follower receiving a snapshot (it
//! restarts and ends with exactly the leader's state) and the leader sending it (the follower
//! gets the next leader's snapshot instead); no acknowledged write is lost in either. Without
//! compaction, a follower far behind catches up from the leader's log, paced by
//! `--catchup-rate`.
//!
//! The nodes snapshot every 50 applied entries, keep 10 entries behind each snapshot, and use
//! 4 KiB log segments, so a few hundred writes roll, snapshot and compact many times. Every
//! wait is bounded, and every process is killed when its test ends, pass or fail.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Answer, free_addrs, http, json_number};

/// The longest any wait in these tests may take.
const PATIENCE: Duration = Duration::from_secs(30);

/// The snapshot flags every node runs with (unless a test says otherwise).
const SNAPSHOT_FLAGS: [&str; 6] =
    ["--snapshot-entries", "50", "--snapshot-catchup-entries", "10", "--wal-segment-bytes", "4096"];

/// A cluster of `skiff node` processes.
struct Cluster {
    /// Every node's data directory and log.
    dir: tempfile::TempDir,
    /// `--peers`.
    peers: String,
    /// Client addresses by node (index 0 is node 1).
    clients: Vec<SocketAddr>,
    /// The processes, `None` while a node is down.
    children: Vec<Option<Child>>,
    /// The snapshot flags the nodes run with.
    flags: Vec<String>,
}

impl Cluster {
    /// Starts `size` nodes with `flags` added to their command lines.
    fn start(size: usize, flags: &[&str]) -> Cluster {
        let peers = free_addrs(size)
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
            flags: flags.iter().map(ToString::to_string).collect(),
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

    /// Starts (or restarts) node `id` on its data directory.
    fn start_node(&mut self, id: u64) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node-{id}.log")))
            .expect("a log file");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("node")
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(["--client-addr", &self.clients[id as usize - 1].to_string()])
            .args(["--peers", &self.peers])
            .args(["--heartbeat-interval", "20", "--election-timeout", "200"])
            .args(&self.flags)
            .env("SKIFF_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log file handle"))
            .stderr(log)
            .spawn()
            .expect("the skiff binary starts");
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
        panic!("no leader within {PATIENCE:?}:\n{}", self.logs());
    }

    /// Every node's log, for failure messages.
    fn logs(&self) -> String {
        (1..=self.clients.len())
            .map(|id| {
                let path = self.dir.path().join(format!("node-{id}.log"));
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
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
        panic!("{method} {path} on node {id} never answered {expected}; last: {last:?}\n{}", {
            self.logs()
        });
    }

    /// Writes `key-<i>` = `value-<i>` for every `i` in `keys` through node `id`, four
    /// connections at a time.
    fn write_keys(&self, id: u64, keys: std::ops::Range<u64>) {
        std::thread::scope(|scope| {
            for lane in 0..4 {
                let keys = keys.clone();
                scope.spawn(move || {
                    for i in keys.filter(|i| i % 4 == lane) {
                        let path = format!("/v1/kv/key-{i:04}");
                        self.until(id, "PUT", &path, format!("value-{i}").as_bytes(), 200);
                    }
                });
            }
        });
    }

    /// Checks that node `id` serves `key-<i>` = `value-<i>` for every `i` in `keys`, with
    /// stale reads (its own state), waiting for it to catch up.
    fn check_keys(&self, id: u64, keys: std::ops::Range<u64>) {
        for i in keys {
            let path = format!("/v1/kv/key-{i:04}?consistency=stale");
            let answer = self.until(id, "GET", &path, b"", 200);
            assert_eq!(answer.body, format!("value-{i}"), "node {id}, key {i}");
        }
    }

    /// The status of node `id`.
    fn status(&self, id: u64) -> String {
        self.until(id, "GET", "/v1/status", b"", 200).body
    }

    /// The value of an unlabelled metric of node `id`, 0 if absent.
    fn metric(&self, id: u64, name: &str) -> f64 {
        let text = self.until(id, "GET", "/metrics", b"", 200).body;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
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

/// Flags for the tests that interrupt a snapshot transfer: values of 32 KiB fill a snapshot
/// of several 1 MiB chunks, and fault injection lets a test hold a transfer mid-way.
const TRANSFER_FLAGS: [&str; 7] = [
    "--snapshot-entries",
    "20",
    "--snapshot-catchup-entries",
    "5",
    "--wal-segment-bytes",
    "262144",
    "--allow-fault-injection",
];

/// The number of 32 KiB values written before a transfer: a snapshot of about 3 MiB.
const BIG_VALUES: u64 = 96;

/// The 32 KiB value of `big-<i>`: its number over and over, so that values cannot be mixed up.
fn big_value(i: u64) -> Vec<u8> {
    format!("{i:04}|").repeat(32 * 1024 / 5).into_bytes()
}

impl Cluster {
    /// Writes `big-<i>` for every `i` in `keys` through node `id`.
    fn write_big_values(&self, id: u64, keys: std::ops::Range<u64>) {
        for i in keys {
            self.until(id, "PUT", &format!("/v1/kv/big-{i:04}"), &big_value(i), 200);
        }
    }

    /// Checks that node `id` serves every `big-<i>` of `keys` (stale reads, waiting for it).
    fn check_big_values(&self, id: u64, keys: std::ops::Range<u64>) {
        for i in keys {
            let path = format!("/v1/kv/big-{i:04}?consistency=stale");
            let answer = self.until(id, "GET", &path, b"", 200);
            assert!(answer.body.as_bytes() == big_value(i), "node {id}: big-{i:04} differs");
        }
    }

    /// Asks node `id` for a fault (`/v1/faults/<action>`).
    fn fault(&self, id: u64, action: &str) {
        self.until(id, "POST", &format!("/v1/faults/{action}"), b"", 200);
    }

    /// Waits until node `id` has received part of a snapshot, and no more: a temporary snapshot
    /// file of at least one chunk (1 MiB) on its disk while the rest is held. Returns its name.
    fn wait_for_partial_fetch(&self, id: u64) -> String {
        let dir = self.data_dir(id);
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            for name in files_ending(&dir, ".tmp") {
                let len = std::fs::metadata(dir.join(&name)).map_or(0, |meta| meta.len());
                if len >= 1 << 20 {
                    return name;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("node {id} never received a first chunk:\n{}", self.logs());
    }

    /// Waits until nodes `a` and `b` have applied the same index, then checks that they hold
    /// exactly the same keys, values and revisions.
    fn assert_same_state(&self, a: u64, b: u64) {
        let deadline = Instant::now() + PATIENCE;
        let applied = |id| json_number(&self.status(id), "applied").expect("an applied index");
        loop {
            let (applied_a, applied_b) = (applied(a), applied(b));
            if applied_a == applied_b {
                let scan = "/v1/kv?prefix=&limit=10000&consistency=stale";
                let (state_a, state_b) =
                    (self.until(a, "GET", scan, b"", 200), self.until(b, "GET", scan, b"", 200));
                // Nothing is written meanwhile, so equal applied indexes must scan equal.
                if applied(a) == applied_a && applied(b) == applied_b {
                    assert!(state_a.body.contains("\"more\":false"), "{}", state_a.body.len());
                    assert!(
                        state_a.body == state_b.body,
                        "nodes {a} and {b} differ at applied index {applied_a}:\n{}",
                        self.logs()
                    );
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "nodes {a} and {b} stayed at applied {applied_a} and {applied_b}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The files in `dir` whose names end with `suffix`.
fn files_ending(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("the data directory exists")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(suffix))
        .collect();
    names.sort();
    names
}

#[test]
fn a_node_left_behind_a_compaction_catches_up_with_the_leaders_snapshot() {
    let mut cluster = Cluster::start(3, &SNAPSHOT_FLAGS);
    let leader = cluster.leader();
    let behind = (1..=3).find(|id| *id != leader).expect("a follower");
    cluster.write_keys(leader, 0..20);
    cluster.check_keys(behind, 0..20);
    cluster.kill(behind);

    // The two others go on, snapshot and compact far past what the stopped node holds.
    cluster.write_keys(leader, 20..400);
    let status = cluster.status(leader);
    let first_index = json_number(&status, "first_index").expect("a first index");
    assert!(first_index > 30, "the leader compacted its log: {status}");

    // Restarted, the node cannot catch up from the leader's log: it needs the snapshot.
    cluster.start_node(behind);
    cluster.check_keys(behind, 0..400);
    assert!(
        cluster.metric(behind, "skiff_network_snapshot_receive_success_total") >= 1.0,
        "the node caught up by installing the leader's snapshot:\n{}",
        cluster.logs()
    );
    let snapshots = files_ending(&cluster.data_dir(behind), ".snap");
    assert_eq!(snapshots.len(), 1, "one snapshot file: {snapshots:?}");
    assert!(files_ending(&cluster.data_dir(behind), ".tmp").is_empty(), "no temporary left");

    // Replication goes on from the snapshot: new writes reach the node.
    cluster.write_keys(leader, 400..420);
    cluster.check_keys(behind, 400..420);
}

/// Starts three nodes, writes, stops a follower, and writes enough (3 MiB of values, and
/// compaction far past the follower's log) that the restarted follower needs the leader's
/// snapshot; then holds the leader's transfers past their first chunk, restarts the follower
/// and waits until it holds exactly one chunk. Returns the cluster, the leader and the
/// follower.
fn a_follower_stuck_in_a_transfer() -> (Cluster, u64, u64) {
    let mut cluster = Cluster::start(3, &TRANSFER_FLAGS);
    let leader = cluster.leader();
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    cluster.write_keys(leader, 0..20);
    cluster.check_keys(follower, 0..20);
    cluster.kill(follower);
    cluster.write_big_values(leader, 0..BIG_VALUES);
    cluster.write_keys(leader, 20..100);
    let status = cluster.status(leader);
    let first_index = json_number(&status, "first_index").expect("a first index");
    assert!(first_index > 30, "the leader compacted past the follower: {status}");

    cluster.fault(leader, "snapshot-chunks/hold");
    cluster.start_node(follower);
    cluster.wait_for_partial_fetch(follower);
    (cluster, leader, follower)
}

#[test]
fn a_follower_killed_while_fetching_a_snapshot_restarts_and_ends_with_the_leaders_state() {
    let (mut cluster, leader, follower) = a_follower_stuck_in_a_transfer();
    // Writes acknowledged while the follower is half-way through the transfer.
    cluster.write_keys(leader, 100..150);
    cluster.kill(follower);
    let leftovers = files_ending(&cluster.data_dir(follower), ".tmp");
    assert_eq!(leftovers.len(), 1, "killed with a partial snapshot on its disk: {leftovers:?}");

    cluster.fault(leader, "snapshot-chunks/release");
    cluster.start_node(follower);
    cluster.write_keys(leader, 150..170);
    cluster.check_keys(follower, 0..170);
    cluster.check_big_values(follower, 0..BIG_VALUES);
    cluster.assert_same_state(leader, follower);
    assert!(
        cluster.metric(follower, "skiff_network_snapshot_receive_success_total") >= 1.0,
        "the restarted follower installed a snapshot:\n{}",
        cluster.logs()
    );
    let leftovers = files_ending(&cluster.data_dir(follower), ".tmp");
    assert!(leftovers.is_empty(), "the partial file was cleaned up: {leftovers:?}");
}

#[test]
fn a_follower_whose_leader_is_killed_mid_transfer_catches_up_from_the_next_leader() {
    let (mut cluster, leader, follower) = a_follower_stuck_in_a_transfer();
    let other = (1..=3).find(|id| *id != leader && *id != follower).expect("a third node");
    cluster.write_keys(leader, 100..150);
    cluster.kill(leader);

    // The follower's log is behind, so the third node wins the election with its vote, and
    // sends it its own snapshot once the broken transfer has failed.
    assert_eq!(cluster.leader(), other, "the node with the whole log leads");
    cluster.write_keys(other, 150..170);
    cluster.check_keys(follower, 0..170);
    cluster.check_big_values(follower, 0..BIG_VALUES);
    cluster.assert_same_state(other, follower);
    assert!(
        cluster.metric(follower, "skiff_network_snapshot_receive_failures_total") >= 1.0,
        "the fetch from the killed leader failed:\n{}",
        cluster.logs()
    );
    assert!(cluster.metric(follower, "skiff_network_snapshot_receive_success_total") >= 1.0);

    // The old leader comes back and ends with the same state too.
    cluster.start_node(leader);
    cluster.check_keys(leader, 0..170);
    cluster.assert_same_state(other, leader);
}

/// The catch-up rate of the paced test: 512 KiB/s, so its 1.5 MiB of values take about three
/// seconds, in reads of one 64 KiB chunk (the smallest).
const SLOW_CATCHUP_RATE: &str = "524288";

#[test]
fn a_follower_far_behind_catches_up_from_the_log_at_a_paced_rate() {
    let flags = [
        "--snapshot-entries",
        "0",
        "--snapshot-log-bytes",
        "0",
        "--catchup-rate",
        SLOW_CATCHUP_RATE,
        "--wal-segment-bytes",
        "262144",
    ];
    let mut cluster = Cluster::start(3, &flags);
    let leader = cluster.leader();
    let behind = (1..=3).find(|id| *id != leader).expect("a follower");
    let other = (1..=3).find(|id| *id != leader && *id != behind).expect("a third node");
    cluster.write_keys(leader, 0..20);
    cluster.check_keys(behind, 0..20);
    cluster.kill(behind);
    let big_values = 48;
    cluster.write_big_values(leader, 0..big_values);
    cluster.write_keys(leader, 20..100);

    // A leader holds its newest entries in memory (16 MiB) and sends them from there. Restarted,
    // the two others hold none: whichever leads reads what the follower misses from its log.
    cluster.kill(leader);
    cluster.kill(other);
    cluster.start_node(leader);
    cluster.start_node(other);
    let leader = cluster.leader();
    cluster.start_node(behind);
    cluster.check_keys(behind, 0..100);
    cluster.check_big_values(behind, 0..big_values);
    cluster.assert_same_state(leader, behind);

    let read = cluster.metric(leader, "skiff_server_catchup_read_bytes_total");
    assert!(
        read >= (big_values * 32_000) as f64,
        "the leader read the values it sent from its log ({read} bytes):\n{}",
        cluster.logs()
    );
    // Each value is about half a chunk, and reads come back far faster than 512 KiB/s: after
    // the first chunk, the bucket is in debt and holds them.
    let paced = cluster.metric(leader, "skiff_server_catchup_paced_seconds_total");
    assert!(paced > 0.0, "the pacer held reads:\n{}", cluster.logs());
    // Replication goes on after the catch-up.
    cluster.write_keys(leader, 100..120);
    cluster.check_keys(behind, 100..120);
}

#[test]
fn a_node_restarts_from_its_snapshot_and_log_tail_with_bounded_disk_use() {
    let mut cluster = Cluster::start(1, &SNAPSHOT_FLAGS);
    cluster.leader();
    cluster.write_keys(1, 0..600);
    let dir = cluster.data_dir(1);
    // A snapshot every 50 entries, 10 kept behind it, 4 KiB segments of about 60 entries:
    // without compaction 600 writes fill about 10 segments. With it, the segments after the
    // latest compaction remain: one or two, three while a compaction is due, more only if
    // snapshots fall behind the writes.
    let segments = files_ending(&dir, ".wal");
    assert!(segments.len() <= 5, "compaction keeps the log short: {segments:?}");
    assert_eq!(files_ending(&dir, ".snap").len(), 1, "older snapshots are removed");

    cluster.kill(1);
    cluster.start_node(1);
    cluster.leader();
    let status = cluster.status(1);
    let snapshot = json_number(&status, "snapshot").expect("a snapshot index");
    let first_index = json_number(&status, "first_index").expect("a first index");
    assert!(snapshot >= 550, "restarted from its snapshot: {status}");
    assert!(first_index > 1 && first_index <= snapshot + 1, "and its log tail: {status}");
    cluster.check_keys(1, 0..600);
    let log = std::fs::read_to_string(cluster.dir.path().join("node-1.log")).expect("a log");
    assert!(log.contains("restored the store from its snapshot"), "{}", cluster.logs());

    // It goes on taking writes and snapshots after the restart.
    cluster.write_keys(1, 600..700);
    cluster.check_keys(1, 600..700);
}

#[test]
fn snapshots_are_also_taken_every_so_many_log_bytes() {
    let flags = [
        "--snapshot-entries",
        "0",
        "--snapshot-log-bytes",
        "16384",
        "--snapshot-catchup-entries",
        "0",
        "--wal-segment-bytes",
        "4096",
    ];
    let cluster = Cluster::start(1, &flags);
    cluster.leader();
    // A hundred small writes (about 50 log bytes each) stay below the threshold.
    cluster.write_keys(1, 0..100);
    let status = cluster.status(1);
    assert_eq!(json_number(&status, "snapshot"), Some(0), "no snapshot yet: {status}");

    // Forty 4 KiB values pass it every four writes or so.
    let value = vec![b'x'; 4096];
    for i in 0..40 {
        cluster.until(1, "PUT", &format!("/v1/kv/big-{i:02}"), &value, 200);
    }
    let last = json_number(&cluster.status(1), "last_index").expect("a last index");
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        let status = cluster.status(1);
        let snapshot = json_number(&status, "snapshot").expect("a snapshot index");
        // Within five big entries of the end: the bytes since are below the threshold.
        if snapshot + 5 >= last || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let snapshot = json_number(&status, "snapshot").expect("a snapshot index");
    assert!(snapshot + 5 >= last, "snapshots follow the log's bytes: {status}");
    let first_index = json_number(&status, "first_index").expect("a first index");
    assert!(first_index > 100, "and the log is compacted behind them: {status}");
    let log = std::fs::read_to_string(cluster.dir.path().join("node-1.log")).expect("a log");
    let by_bytes = log.lines().filter(|line| line.contains("trigger=\"log bytes\"")).count();
    assert!(by_bytes >= 3, "several snapshots, each by log bytes:\n{}", cluster.logs());
    assert_eq!(log.matches("taking a snapshot").count(), by_bytes, "and none by entries");
    cluster.check_keys(1, 0..100);
}

#[test]
fn snapshots_are_taken_on_demand_with_the_api_and_the_cli() {
    let cluster = Cluster::start(3, &["--snapshot-entries", "0"]);
    let leader = cluster.leader();
    cluster.write_keys(leader, 0..5);
    cluster.check_keys(leader, 0..5);

    let taken = cluster.until(leader, "POST", "/v1/snapshot", b"", 200);
    let index = json_number(&taken.body, "index").expect("an index");
    assert!(index >= 6, "the snapshot covers the writes and the leader's first entry: {taken:?}");
    assert!(json_number(&taken.body, "term").is_some(), "{taken:?}");
    let again = http(cluster.client(leader), "POST", "/v1/snapshot", b"").expect("an answer");
    assert_eq!(again.status, 409, "nothing new: {again:?}");
    assert!(again.body.contains("nothing_new"), "{again:?}");
    assert_eq!(json_number(&again.body, "index"), Some(index), "it names the latest: {again:?}");
    assert_eq!(files_ending(&cluster.data_dir(leader), ".snap").len(), 1);

    // The CLI asks every node; the followers snapshot their own state.
    let endpoints: Vec<String> = (1..=3).map(|id| cluster.client(id).to_string()).collect();
    for id in 1..=3 {
        cluster.check_keys(id, 0..5);
    }
    let cli = |format: &str| {
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["cluster", "snapshot", "--endpoints", &endpoints.join(","), "-w", format])
            .output()
            .expect("the skiff binary runs")
    };
    let output = cli("simple");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    let took = stdout.lines().filter(|line| line.contains("took a snapshot at index")).count();
    assert_eq!(took, 2, "the two followers took one, the leader had nothing new: {stdout}");
    assert!(stdout.contains("nothing new since the snapshot at index"), "{stdout}");
    let output = cli("json");
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.matches("\"taken\": false").count(), 3, "nothing new anywhere: {stdout}");
}
