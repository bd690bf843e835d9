//! The client commands as a user runs them: the `skiff` binary against real `skiff node`
//! processes on 127.0.0.1 (and against nothing at all, for the error paths).
//!
//! What these tests hold the binary to: the exit status (0, 1 on any failure, 2 on a usage
//! error), one `Error:` line on stderr, the output formats, the `SKIFF_*` variables, moving past
//! a dead endpoint, riding out a leader's death within `--command-timeout`, and a bench that
//! runs without errors. The nodes run with a 20 ms heartbeat and a 200 ms election timeout, so
//! an election takes a fraction of a second; every wait is bounded and every process is killed
//! when its test ends.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The longest any wait in these tests may take.
const PATIENCE: Duration = Duration::from_secs(30);

/// Free addresses on 127.0.0.1 (bound, then released for a node to take).
fn free_addrs(count: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1"))
        .collect();
    listeners.iter().map(|listener| listener.local_addr().expect("a bound address")).collect()
}

/// A cluster of `skiff node` processes.
struct Cluster {
    /// Every node's data directory and log.
    dir: tempfile::TempDir,
    /// Client addresses by node (index 0 is node 1).
    clients: Vec<SocketAddr>,
    /// The processes, `None` once killed.
    children: Vec<Option<Child>>,
}

impl Cluster {
    /// Starts `size` nodes and waits for a leader.
    fn start(size: usize) -> Cluster {
        let peers = free_addrs(size)
            .iter()
            .enumerate()
            .map(|(index, addr)| format!("{}={addr}", index + 1))
            .collect::<Vec<_>>()
            .join(",");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let clients = free_addrs(size);
        let children = (1..=size)
            .map(|id| {
                let log = std::fs::File::create(dir.path().join(format!("node-{id}.log")))
                    .expect("a log file");
                let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
                    .arg("node")
                    .args(["--id", &id.to_string()])
                    .arg("--data-dir")
                    .arg(dir.path().join(format!("node-{id}")))
                    .args(["--client-addr", &clients[id - 1].to_string()])
                    .args(["--peers", &peers])
                    .args(["--heartbeat-interval", "20", "--election-timeout", "200"])
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().expect("a log file handle"))
                    .stderr(log)
                    .spawn()
                    .expect("the skiff binary starts");
                Some(child)
            })
            .collect();
        let cluster = Cluster { dir, clients, children };
        cluster.leader();
        cluster
    }

    /// Every node's client address, as `--endpoints` takes them.
    fn endpoints(&self) -> String {
        self.clients.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
    }

    /// Waits until some node reports itself leader (asked with `skiff cluster status`);
    /// returns its id.
    fn leader(&self) -> u64 {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            let output =
                skiff(&["cluster", "status", "-w", "json", "--endpoints", &self.endpoints()]);
            let parsed: serde_json::Value =
                serde_json::from_slice(&output.stdout).unwrap_or_default();
            let leader = parsed.as_array().into_iter().flatten().find_map(|entry| {
                let status = entry.get("status")?;
                (status.get("role")? == "leader").then(|| status.get("id")?.as_u64()).flatten()
            });
            if let Some(leader) = leader {
                return leader;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no leader within {PATIENCE:?}; logs in {}", self.dir.path().display());
    }

    /// Kills node `id` with SIGKILL.
    fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children[id as usize - 1].take() {
            child.kill().expect("the node can be killed");
            child.wait().expect("the killed node is reaped");
        }
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

/// Runs `skiff` with these arguments and no `SKIFF_*` variables from the caller.
fn skiff(args: &[&str]) -> Output {
    skiff_with(args, &[])
}

/// Runs `skiff` with these arguments and environment variables.
fn skiff_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_skiff"));
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("SKIFF_")) {
        command.env_remove(name);
    }
    command.args(args).envs(env.iter().copied()).stdin(Stdio::null());
    command.output().expect("the skiff binary runs")
}

/// The stdout of a run that must succeed.
fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}, stderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// The stderr of a run that must fail with this exit status.
fn failed(output: Output, status: i32) -> String {
    assert_eq!(
        output.status.code(),
        Some(status),
        "stdout: {}, stderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stderr).expect("UTF-8 errors")
}

#[test]
fn every_kv_verb_and_cluster_status_against_a_real_cluster() {
    let cluster = Cluster::start(3);
    let endpoints = cluster.endpoints();
    let run = |args: &[&str]| skiff(&[args, &["--endpoints", &endpoints]].concat());

    assert_eq!(ok(run(&["kv", "put", "greeting", "hello"])), "OK\n");
    assert_eq!(ok(run(&["kv", "get", "greeting"])), "greeting\nhello\n");
    assert_eq!(ok(run(&["kv", "get", "greeting", "--print-value-only"])), "hello\n");
    let json: serde_json::Value =
        serde_json::from_str(&ok(run(&["kv", "get", "greeting", "-w", "json"]))).expect("JSON");
    assert_eq!(json["value"], "hello");
    assert!(json["revision"].as_u64().is_some_and(|revision| revision > 0), "{json}");

    assert_eq!(ok(run(&["kv", "cas", "greeting", "--expected", "hello", "--value", "hi"])), "OK\n");
    let stderr = failed(run(&["kv", "cas", "greeting", "--absent", "--value", "x"]), 1);
    assert_eq!(stderr, "Error: compare failed: greeting holds \"hi\"\n");
    assert_eq!(ok(run(&["kv", "cas", "lock", "--absent", "--value", "me"])), "OK\n");
    ok(run(&["kv", "put", "dir/with space", "1"]));

    let table = ok(run(&["kv", "scan", "-w", "table"]));
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|line| line.split("   ").map(str::trim).filter(|cell| !cell.is_empty()).collect())
        .collect();
    assert_eq!(rows[0], ["KEY", "VALUE", "REVISION"]);
    let keys: Vec<&str> = rows[1..].iter().map(|row| row[0]).collect();
    assert_eq!(keys, ["dir/with space", "greeting", "lock"]);
    assert_eq!(ok(run(&["kv", "scan", "dir/"])), "dir/with space\n1\n");

    assert_eq!(ok(run(&["kv", "del", "greeting"])), "OK\n");
    assert_eq!(failed(run(&["kv", "get", "greeting"]), 1), "Error: key not found: greeting\n");
    assert_eq!(failed(run(&["kv", "del", "greeting"]), 1), "Error: key not found: greeting\n");
    let stale = run(&["kv", "get", "lock", "--consistency", "stale"]);
    // A follower may not have applied the CAS yet; a stale read may miss it, never invent it.
    if stale.status.success() {
        assert_eq!(String::from_utf8_lossy(&stale.stdout), "lock\nme\n");
    }

    let status = ok(run(&["cluster", "status", "-w", "table"]));
    let lines: Vec<&str> = status.lines().collect();
    assert_eq!(lines.len(), 4, "{status}");
    assert!(lines[0].starts_with("ENDPOINT") && lines[0].ends_with("LAST INDEX"), "{status}");
    assert_eq!(lines.iter().filter(|line| line.contains(" leader ")).count(), 1, "{status}");
}

#[test]
fn a_dead_endpoint_and_a_dead_leader_are_ridden_out() {
    let mut cluster = Cluster::start(3);
    let dead = free_addrs(1)[0].to_string();
    // The first endpoint refuses connections: the others serve.
    let endpoints = format!("{dead},{}", cluster.endpoints());
    let run = |args: &[&str]| skiff(&[args, &["--endpoints", &endpoints]].concat());
    assert_eq!(ok(run(&["kv", "put", "k", "before"])), "OK\n");

    // With the leader killed, a write waits out the election (no_leader, then a new leader)
    // within the command timeout; nothing acknowledged is lost.
    let leader = cluster.leader();
    cluster.kill(leader);
    assert_eq!(ok(run(&["kv", "put", "k", "after", "--command-timeout", "10s"])), "OK\n");
    assert_eq!(ok(run(&["kv", "get", "k"])), "k\nafter\n");
    assert_ne!(cluster.leader(), leader);

    // `cluster status` reports the dead nodes on stderr and fails, after printing the others.
    let output = run(&["cluster", "status"]);
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(printed.lines().count(), 2, "{printed}");
    let stderr = failed(output, 1);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(stderr.lines().all(|line| line.starts_with("Error: ")), "{stderr}");
}

#[test]
fn bench_puts_and_gets_against_a_real_cluster() {
    let cluster = Cluster::start(3);
    let output = skiff(&[
        "bench",
        "--endpoints",
        &cluster.endpoints(),
        "--clients",
        "1,4",
        "--duration",
        "400ms",
        "--keys",
        "20",
        "--value-size",
        "64",
        "--op",
        "both",
        "-w",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&ok(output)).expect("one JSON document");
    let runs = report["runs"].as_array().expect("a list of runs");
    let shape: Vec<(String, u64)> = runs
        .iter()
        .map(|run| {
            (run["op"].as_str().unwrap_or("?").to_string(), run["clients"].as_u64().unwrap_or(0))
        })
        .collect();
    assert_eq!(shape, [("put".into(), 1), ("get".into(), 1), ("put".into(), 4), ("get".into(), 4)]);
    for run in runs {
        assert!(run["requests"].as_u64().is_some_and(|requests| requests > 0), "{run}");
        assert_eq!(run["errors"], 0, "{run}");
    }
}

#[test]
fn nothing_listening_is_one_error_line_and_exit_status_1() {
    let dead = free_addrs(1)[0].to_string();
    let stderr = failed(skiff(&["kv", "get", "k", "--endpoints", &dead]), 1);
    assert!(
        stderr.starts_with(&format!("Error: no endpoint reachable: {dead}: cannot connect")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn every_global_flag_is_also_an_environment_variable() {
    let dead = free_addrs(1)[0].to_string();
    let stderr = failed(skiff_with(&["kv", "get", "k"], &[("SKIFF_ENDPOINTS", &dead)]), 1);
    assert!(stderr.contains(&dead), "{stderr}");
    // The flag wins over the variable.
    let other = free_addrs(1)[0].to_string();
    let stderr = failed(
        skiff_with(&["kv", "get", "k", "--endpoints", &other], &[("SKIFF_ENDPOINTS", &dead)]),
        1,
    );
    assert!(stderr.contains(&other) && !stderr.contains(&dead), "{stderr}");
    let stderr = failed(skiff_with(&["kv", "get", "k"], &[("SKIFF_WRITE_OUT", "yaml")]), 2);
    assert!(stderr.contains("yaml"), "{stderr}");
    let stderr = failed(skiff_with(&["kv", "get", "k"], &[("SKIFF_DIAL_TIMEOUT", "soon")]), 2);
    assert!(stderr.contains("soon"), "{stderr}");
    let stderr = failed(skiff_with(&["kv", "get", "k"], &[("SKIFF_COMMAND_TIMEOUT", "9")]), 2);
    assert!(stderr.contains("has no unit"), "{stderr}");
}

#[test]
fn a_usage_error_exits_with_status_2() {
    let stderr = failed(skiff(&["kv", "cas", "k", "--value", "v"]), 2);
    assert!(stderr.contains("--expected"), "{stderr}");
    failed(skiff(&["kv", "put", "k"]), 2);
    failed(skiff(&["bench", "--clients", "0"]), 2);
}
