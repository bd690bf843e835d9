//! `skiff demo`: a three-node cluster on this machine, with no set-up.
//!
//! It makes a fresh data directory, picks free ports on 127.0.0.1, starts three `skiff node`
//! processes (this same binary), waits until they have elected a leader, and prints the client
//! addresses, the dashboard's address and commands to try. Each node logs to a file in the data
//! directory. Ctrl-C (or SIGTERM) stops every process it started; the data directory is kept,
//! and named, so the logs can be read afterwards.
//!
//! ## The dashboard
//! The demo serves the cluster's dashboard (crates/server, `dashboard`) from its own address,
//! not from a node's, so that the page stays up whichever node is stopped; there the page also
//! offers, per node, what only the program that started the processes can do ([`Processes`]):
//! stop (SIGKILL, a crash), pause (SIGSTOP: alive but silent, as a node behind a stalled disk
//! or a long GC pause looks to its peers), resume (SIGCONT) and restart on the same data
//! directory and addresses. Signals are sent with the shell's `kill`, so no libc binding is
//! needed.
//!
//! A node's stop stays a crash on purpose: it is how one watches an election happen. The
//! graceful way to move leadership off a node is the page's "Transfer leadership" (or SIGTERM
//! to a `skiff node`, which hands leadership over before it exits). Ctrl-C of the demo sends
//! every node SIGTERM at once, so its leader tries to hand over to followers that are stopping
//! too; the core gives that up after an election timeout, well within the demo's wait.
//!
//! The nodes run with `--allow-fault-injection`, so that the page can also cut and heal the
//! link between two nodes (both ends drop each other's messages and refuse each other's
//! connections, as across a network partition; `skiff_server::faults`). A restarted node
//! comes back with its links whole, but the other end of a cut link still refuses it.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;
use skiff_server::dashboard::{Control, Dashboard, Member, ProcessAction, ProcessState};

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
    /// The address to serve the dashboard and its process controls on [default: a free port
    /// on 127.0.0.1].
    #[arg(long, env = "SKIFF_DEMO_DASHBOARD_ADDR", default_value = "127.0.0.1:0")]
    pub dashboard_addr: SocketAddr,
}

/// One node the demo started.
struct DemoNode {
    /// The node's id.
    id: u64,
    /// Its client address.
    client_addr: SocketAddr,
    /// Its log file.
    log: PathBuf,
    /// The process; `None` once stopped from the dashboard.
    child: Option<Child>,
    /// Whether the process was paused (SIGSTOP) and not resumed since.
    paused: bool,
}

/// How to start a node again: what every start of it shares.
#[derive(Clone)]
struct Launch {
    /// This program.
    exe: PathBuf,
    /// The demo directory.
    dir: PathBuf,
    /// `--peers`.
    peers: String,
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
    let launch = Launch { exe: exe.clone(), dir: dir.clone(), peers };
    let mut nodes = Vec::with_capacity(count);
    for (i, client_addr) in client_addrs.iter().enumerate() {
        let id = i as u64 + 1;
        match launch.start(id, *client_addr) {
            Ok(child) => nodes.push(DemoNode {
                id,
                client_addr: *client_addr,
                log: launch.log(id),
                child: Some(child),
                paused: false,
            }),
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
    let members =
        nodes.iter().map(|node| Member { id: node.id, client_addr: node.client_addr.to_string() });
    let members: Vec<Member> = members.collect();
    let processes = Arc::new(Processes { nodes: Mutex::new(nodes), launch });
    let served = serve_dashboard(args.dashboard_addr, members, processes.clone()).await;
    let (dashboard_url, dashboard) = match served {
        Ok(served) => served,
        Err(error) => {
            let mut nodes = std::mem::take(&mut *processes.nodes());
            stop(&mut nodes).await;
            return Err(error);
        }
    };
    print_welcome(&exe, &dir, &processes.nodes(), leader, &endpoints.join(","), &dashboard_url);
    crate::node::shutdown_signal().await;
    // From here on stdout may be gone (a closed terminal or pipe): the nodes must be stopped
    // all the same, so nothing below may fail on it.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "\nstopping the cluster…");
    dashboard.close();
    // Taken out of the lock so that no lock is held across the waits of `stop`.
    let mut nodes = std::mem::take(&mut *processes.nodes());
    stop(&mut nodes).await;
    let _ = writeln!(stdout, "stopped. The data and logs stay in {}", dir.display());
    Ok(())
}

/// Serves the dashboard with process controls; returns its URL.
async fn serve_dashboard(
    addr: SocketAddr,
    members: Vec<Member>,
    processes: Arc<Processes>,
) -> anyhow::Result<(String, Dashboard)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve the dashboard on {addr}"))?;
    let url = format!("http://{}/", listener.local_addr()?);
    let dashboard = Dashboard::for_demo(members, processes);
    let router = dashboard.router();
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            eprintln!("skiff demo: the dashboard stopped: {error}");
        }
    });
    Ok((url, dashboard))
}

/// The node processes, shared by the demo and the dashboard's controls.
struct Processes {
    /// Every node, in id order.
    nodes: Mutex<Vec<DemoNode>>,
    /// How to start one again.
    launch: Launch,
}

impl Processes {
    /// The nodes (a poisoned lock still holds valid process handles).
    fn nodes(&self) -> MutexGuard<'_, Vec<DemoNode>> {
        self.nodes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Control for Processes {
    fn processes(&self) -> std::collections::BTreeMap<u64, ProcessState> {
        let mut nodes = self.nodes();
        nodes.iter_mut().map(|node| (node.id, node.state())).collect()
    }

    fn act(&self, id: u64, action: ProcessAction) -> Result<String, String> {
        let mut nodes = self.nodes();
        let node = nodes
            .iter_mut()
            .find(|node| node.id == id)
            .ok_or_else(|| format!("there is no node {id}"))?;
        let state = node.state();
        match (action, state) {
            (ProcessAction::Stop, ProcessState::Running | ProcessState::Paused) => {
                let mut child = node.child.take().expect("a running node has a process");
                // SIGKILL ends a stopped (paused) process too; it fails only for a process
                // that already exited, which the wait reaps.
                let _ = child.kill();
                let _ = child.wait();
                node.paused = false;
                Ok(format!("node {id} stopped (killed with SIGKILL)"))
            }
            (ProcessAction::Pause, ProcessState::Running) => {
                node.signal("STOP")?;
                node.paused = true;
                Ok(format!("node {id} paused (SIGSTOP): it neither sends nor answers"))
            }
            (ProcessAction::Resume, ProcessState::Paused) => {
                node.signal("CONT")?;
                node.paused = false;
                Ok(format!("node {id} resumed (SIGCONT)"))
            }
            (ProcessAction::Restart, ProcessState::Stopped) => {
                node.child = Some(self.launch.start(id, node.client_addr).map_err(|error| {
                    format!("cannot restart node {id}: {}", crate::node::one_line(&error))
                })?);
                node.paused = false;
                Ok(format!("node {id} restarted on its data directory"))
            }
            (action, state) => Err(format!(
                "cannot {} node {id}: it is {}",
                action.name(),
                match state {
                    ProcessState::Running => "running",
                    ProcessState::Paused => "paused",
                    ProcessState::Stopped => "stopped",
                }
            )),
        }
    }
}

impl DemoNode {
    /// What the process is doing; notices a process that exited by itself.
    fn state(&mut self) -> ProcessState {
        match &mut self.child {
            None => ProcessState::Stopped,
            Some(child) => match child.try_wait() {
                Ok(None) if self.paused => ProcessState::Paused,
                Ok(None) => ProcessState::Running,
                Ok(Some(_)) | Err(_) => ProcessState::Stopped,
            },
        }
    }

    /// Sends the signal named `name` (TERM, STOP, CONT) to the process, if it has one.
    fn signal(&self, name: &str) -> Result<(), String> {
        let Some(child) = &self.child else { return Ok(()) };
        let status = std::process::Command::new("sh")
            .args(["-c", "kill -s \"$0\" \"$1\"", name, &child.id().to_string()])
            .stdin(Stdio::null())
            .status()
            .map_err(|error| format!("cannot run kill: {error}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -s {name} {} failed ({status})", child.id()))
        }
    }
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

impl Launch {
    /// The log file of node `id`.
    fn log(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}.log"))
    }

    /// Starts node `id` as a child process appending to its log file (a restart continues
    /// the same log).
    fn start(&self, id: u64, client_addr: SocketAddr) -> anyhow::Result<Child> {
        let log = self.log(id);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot open the log file {}", log.display()))?;
        std::process::Command::new(&self.exe)
            .arg("node")
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(self.dir.join(format!("node-{id}")))
            .args(["--client-addr", &client_addr.to_string()])
            .args(["--peers", &self.peers])
            .args(["--cluster-token", "skiff-demo"])
            // Three nodes share this machine's cores: one thread each wastes less on wake-ups.
            .args(["--worker-threads", "1"])
            // The page's link controls cut and heal links through /v1/faults on both ends.
            .arg("--allow-fault-injection")
            .env_remove("SKIFF_CONFIG_FILE")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start node {id}"))
    }
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
            let Some(child) = &mut node.child else { continue };
            if let Some(status) = child.try_wait()? {
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
fn print_welcome(
    exe: &Path,
    dir: &Path,
    nodes: &[DemoNode],
    leader: u64,
    endpoints: &str,
    dashboard_url: &str,
) {
    let exe = exe.display();
    let first = nodes.first().map_or_else(String::new, |node| node.client_addr.to_string());
    let second = nodes.get(1).map_or_else(|| first.clone(), |node| node.client_addr.to_string());
    println!("skiff demo: a {}-node cluster on this machine", nodes.len());
    println!("  data and logs  {}", dir.display());
    for node in nodes {
        let role = if node.id == leader { "  (leader)" } else { "" };
        println!("  node {}         http://{}{role}", node.id, node.client_addr);
    }
    println!(
        "  dashboard      {dashboard_url}   (open it in a browser: stop, pause, restart nodes, \
         cut links, transfer leadership)"
    );
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

/// Stops every node: asks each to stop (SIGTERM; a paused one is resumed first, since a
/// stopped process does not act on signals), gives them a moment to exit cleanly (from a
/// terminal they got Ctrl-C too), then kills what is left.
async fn stop(nodes: &mut [DemoNode]) {
    for node in nodes.iter_mut() {
        if node.state() == ProcessState::Paused {
            let _ = node.signal("CONT");
        }
        if node.state() == ProcessState::Running {
            let _ = node.signal("TERM");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut running = 0;
        for node in nodes.iter_mut() {
            running += usize::from(node.state() != ProcessState::Stopped);
        }
        if running == 0 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for node in nodes.iter_mut() {
        if let Some(mut child) = node.child.take()
            && matches!(child.try_wait(), Ok(None))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
