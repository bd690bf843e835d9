//! `skiff demo`: a three-node cluster on this machine, with no set-up.
//!
//! It makes a fresh data directory, picks free ports on 127.0.0.1, starts three `skiff node`
//! processes (this same binary), waits until they have elected a leader, and prints the client
//! addresses and commands to try. Each node logs to a file in the data directory. Ctrl-C (or
//! SIGTERM) stops every process it started; the data directory is kept, and named, so the
//! logs can be read afterwards.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;

use crate::client::{Client, ClientOptions};

/// Arguments of `skiff demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Where to put the nodes' data directories and logs [default: a fresh directory under
    /// the system's temporary directory].
    #[arg(long, env = "SKIFF_DEMO_DIR")]
    pub dir: Option<PathBuf>,
    /// The number of nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=7))]
    pub nodes: u64,
}

/// One node the demo started.
struct DemoNode {
    /// The node's id.
    id: u64,
    /// Its client address.
    client_addr: SocketAddr,
    /// Its log file.
    log: PathBuf,
    /// The process.
    child: Child,
}

/// Runs `skiff demo` until Ctrl-C.
pub fn run(args: DemoArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("skiff demo: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("skiff demo: {}", crate::node::one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// Starts the cluster, shows it, and stops it on a signal.
async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let dir = match args.dir {
        Some(dir) => dir,
        None => fresh_dir()?,
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the demo directory {}", dir.display()))?;
    let count = args.nodes as usize;
    let peer_addrs = free_addrs(count)?;
    let client_addrs = free_addrs(count)?;
    let peers = peer_addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("{}={addr}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let mut nodes = Vec::with_capacity(count);
    for (i, client_addr) in client_addrs.iter().enumerate() {
        let id = i as u64 + 1;
        match start_node(&exe, &dir, id, *client_addr, &peers) {
            Ok(node) => nodes.push(node),
            Err(error) => {
                stop(&mut nodes).await;
                return Err(error);
            }
        }
    }
    let endpoints: Vec<String> = client_addrs.iter().map(ToString::to_string).collect();
    let leader = match wait_for_leader(&endpoints, &mut nodes).await {
        Ok(leader) => leader,
        Err(error) => {
            stop(&mut nodes).await;
            return Err(error);
        }
    };
    print_welcome(&exe, &dir, &nodes, leader, &endpoints.join(","));
    crate::node::shutdown_signal().await;
    println!("\nstopping the cluster…");
    stop(&mut nodes).await;
    println!("stopped. The data and logs stay in {}", dir.display());
    Ok(())
}

/// A new directory under the temporary directory, named by time and process.
fn fresh_dir() -> anyhow::Result<PathBuf> {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
    Ok(std::env::temp_dir().join(format!("skiff-demo-{seconds}-{}", std::process::id())))
}

/// `count` free ports on 127.0.0.1 (bound and released; another program could take one in
/// between, in which case that node fails to start with a clear error).
fn free_addrs(count: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot find free ports on 127.0.0.1")?;
    listeners.iter().map(|listener| Ok(listener.local_addr()?)).collect()
}

/// Starts node `id` as a child process logging to a file in `dir`.
fn start_node(
    exe: &Path,
    dir: &Path,
    id: u64,
    client_addr: SocketAddr,
    peers: &str,
) -> anyhow::Result<DemoNode> {
    let log = dir.join(format!("node-{id}.log"));
    let file = std::fs::File::create(&log)
        .with_context(|| format!("cannot create the log file {}", log.display()))?;
    let child = std::process::Command::new(exe)
        .arg("node")
        .args(["--id", &id.to_string()])
        .arg("--data-dir")
        .arg(dir.join(format!("node-{id}")))
        .args(["--client-addr", &client_addr.to_string()])
        .args(["--peers", peers])
        .args(["--cluster-token", "skiff-demo"])
        .env_remove("SKIFF_CONFIG_FILE")
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot start node {id}"))?;
    Ok(DemoNode { id, client_addr, log, child })
}

/// Waits (at most 20 s) until a node reports a leader; fails early if a node exits.
async fn wait_for_leader(endpoints: &[String], nodes: &mut [DemoNode]) -> anyhow::Result<u64> {
    let client = Client::new(ClientOptions {
        endpoints: endpoints.to_vec(),
        dial_timeout: Duration::from_millis(500),
        command_timeout: Duration::from_secs(1),
    })?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        for node in nodes.iter_mut() {
            if let Some(status) = node.child.try_wait()? {
                bail!(
                    "node {} exited ({status}) while starting; its log is {}",
                    node.id,
                    node.log.display()
                );
            }
        }
        for index in 0..endpoints.len() {
            if let Ok(status) = client.status_of(index).await
                && let Some(leader) = status.leader
            {
                return Ok(leader);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no leader was elected within 20 s; see the logs in the demo directory")
}

/// Prints where everything is and what to try.
fn print_welcome(exe: &Path, dir: &Path, nodes: &[DemoNode], leader: u64, endpoints: &str) {
    let exe = exe.display();
    let first = nodes.first().map_or_else(String::new, |node| node.client_addr.to_string());
    let second = nodes.get(1).map_or_else(|| first.clone(), |node| node.client_addr.to_string());
    println!("skiff demo: a {}-node cluster on this machine", nodes.len());
    println!("  data and logs  {}", dir.display());
    for node in nodes {
        let role = if node.id == leader { "  (leader)" } else { "" };
        println!("  node {}         http://{}{role}", node.id, node.client_addr);
    }
    println!();
    println!("Try:");
    println!("  {exe} kv put greeting hello --endpoints {endpoints}");
    println!("  {exe} kv get greeting --endpoints {endpoints}");
    println!("  {exe} cluster status --endpoints {endpoints}");
    println!("  curl -X PUT http://{first}/v1/kv/greeting -d hello");
    println!("  curl http://{second}/v1/kv/greeting");
    println!("  curl http://{first}/metrics");
    println!("  {exe} bench --endpoints {endpoints} --clients 1,16,64 --duration 5s");
    println!();
    println!("Ctrl-C stops every node.");
}

/// Stops every node: they got Ctrl-C from the terminal too, so give them a moment to exit
/// cleanly, then kill what is left.
async fn stop(nodes: &mut [DemoNode]) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut running = 0;
        for node in nodes.iter_mut() {
            running += usize::from(matches!(node.child.try_wait(), Ok(None)));
        }
        if running == 0 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for node in nodes.iter_mut() {
        if matches!(node.child.try_wait(), Ok(None)) {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
    }
}
