//! `skiff node`: run one member of a cluster.
//!
//! Every setting has one name, used as a flag (`--data-dir`), an environment variable
//! (`SKIFF_DATA_DIR`) and a key of the TOML file given with `--config-file` (`data-dir`).
//! Precedence is flag, then environment, then file, then default — unlike etcd, a file never
//! silently overrides a flag. `--print-config` prints the settings in force, as TOML, and exits.
//!
//! ```text
//! skiff node --id 1 --data-dir /var/lib/skiff/1 --client-addr 127.0.0.1:2379 \
//!     --peers 1=127.0.0.1:2380,2=127.0.0.1:12380,3=127.0.0.1:22380
//! ```
//! The peer address to listen on defaults to this node's entry in `--peers`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use skiff_raft::NodeId;
use skiff_server::{DEFAULT_CATCHUP_RATE, Server, ServerConfig, SnapshotPolicy, cluster_id};

/// The default client address.
const DEFAULT_CLIENT_ADDR: &str = "127.0.0.1:2379";
/// The default heartbeat interval in milliseconds (etcd's).
const DEFAULT_HEARTBEAT_MS: u64 = 100;
/// The default election timeout in milliseconds (etcd's).
const DEFAULT_ELECTION_MS: u64 = 1000;
/// The default request timeout in milliseconds.
const DEFAULT_REQUEST_MS: u64 = 5000;
/// The default cluster token.
const DEFAULT_CLUSTER_TOKEN: &str = "skiff";
/// The default size of a write-ahead-log segment file (64 MiB).
const DEFAULT_WAL_SEGMENT_BYTES: u64 = 64 << 20;

/// Arguments of `skiff node`. Each is optional here so that the file and the defaults can fill
/// in what neither a flag nor the environment set.
#[derive(Args, Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NodeArgs {
    /// This node's id, a positive number; it must appear in --peers.
    #[arg(long, env = "SKIFF_ID")]
    pub id: Option<u64>,
    /// The directory of this node's write-ahead log (created if missing).
    #[arg(long, env = "SKIFF_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The address to listen on for peers [default: this node's entry in --peers].
    #[arg(long, env = "SKIFF_PEER_ADDR")]
    pub peer_addr: Option<SocketAddr>,
    /// The address to listen on for clients [default: 127.0.0.1:2379].
    #[arg(long, env = "SKIFF_CLIENT_ADDR")]
    pub client_addr: Option<SocketAddr>,
    /// Every member's peer address, this node's included: `1=host:port,2=host:port,...`. With
    /// --join, the members of the running cluster (and this node, unless --peer-addr is given).
    #[arg(long, env = "SKIFF_PEERS")]
    pub peers: Option<String>,
    /// A name shared by the cluster's members; frames and data directories of another cluster
    /// are refused [default: skiff].
    #[arg(long, env = "SKIFF_CLUSTER_TOKEN")]
    pub cluster_token: Option<String>,
    /// The heartbeat interval in milliseconds [default: 100].
    #[arg(long, env = "SKIFF_HEARTBEAT_INTERVAL")]
    pub heartbeat_interval: Option<u64>,
    /// The election timeout in milliseconds [default: 1000].
    #[arg(long, env = "SKIFF_ELECTION_TIMEOUT")]
    pub election_timeout: Option<u64>,
    /// How long a client request may take, in milliseconds [default: 5000].
    #[arg(long, env = "SKIFF_REQUEST_TIMEOUT")]
    pub request_timeout: Option<u64>,
    /// Take a snapshot and compact the log every this many applied entries (for a snapshot
    /// over 64 MiB, once they also add up to half its size); 0 only on `POST /v1/snapshot`
    /// or by --snapshot-log-bytes [default: 100000].
    #[arg(long, env = "SKIFF_SNAPSHOT_ENTRIES")]
    pub snapshot_entries: Option<u64>,
    /// Also take a snapshot once the entries applied since the latest one add up to this many
    /// bytes (their commands plus 24 bytes each), so large values cannot fill the disk before
    /// --snapshot-entries is reached; 0 turns this off [default: 268435456, 256 MiB].
    #[arg(long, env = "SKIFF_SNAPSHOT_LOG_BYTES")]
    pub snapshot_log_bytes: Option<u64>,
    /// Entries of log kept behind each snapshot, so that a follower a little behind catches up
    /// without a snapshot [default: 5000].
    #[arg(long, env = "SKIFF_SNAPSHOT_CATCHUP_ENTRIES")]
    pub snapshot_catchup_entries: Option<u64>,
    /// The bytes of entries per second a leader reads from its log for followers catching up,
    /// all of them together (by their commands plus 24 bytes each), so that a follower far
    /// behind does not take the leader's CPU from its clients; 0: as fast as it can
    /// [default: 8388608, 8 MiB/s].
    #[arg(long, env = "SKIFF_CATCHUP_RATE")]
    pub catchup_rate: Option<u64>,
    /// The size of a write-ahead-log segment file in bytes; compaction deletes whole segments
    /// [default: 67108864, 64 MiB].
    #[arg(long, env = "SKIFF_WAL_SEGMENT_BYTES")]
    pub wal_segment_bytes: Option<u64>,
    /// Threads running the node's async work (HTTP, peers, the driver) [default: one per CPU].
    /// Nodes sharing a machine (`skiff demo`) run faster with one each: fewer threads than
    /// cores means fewer cross-thread wake-ups.
    #[arg(long, env = "SKIFF_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// Let clients cut and heal this node's links to its peers (`/v1/faults`), as a network
    /// partition would: for `skiff demo` and tests, never in production [default: false].
    #[arg(
        long,
        env = "SKIFF_ALLOW_FAULT_INJECTION",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub allow_fault_injection: Option<bool>,
    /// Join a running cluster instead of founding one: start with no configuration, never
    /// campaign, and wait until the leader adds this node (`skiff cluster add`) and sends it
    /// the log. Ignored once the node has a configuration in its log [default: false].
    #[arg(
        long,
        env = "SKIFF_JOIN",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub join: Option<bool>,
    /// Serve `consistency=lease` reads at the leader under its lease (Raft thesis §6.4.1),
    /// without a heartbeat round. Correct only while the nodes' clocks drift apart by less than
    /// --clock-drift-bound per election timeout; set it on every node or none [default: false].
    #[arg(
        long,
        env = "SKIFF_LEASE_READS",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub lease_reads: Option<bool>,
    /// With --lease-reads: how much shorter than the election timeout the lease is, in
    /// milliseconds, to absorb clock drift between nodes; rounded up to whole heartbeat
    /// intervals [default: a fifth of the election timeout].
    #[arg(long, env = "SKIFF_CLOCK_DRIFT_BOUND")]
    pub clock_drift_bound: Option<u64>,
    /// A TOML file with any of these settings (keys as the flags, without the dashes).
    #[arg(long, env = "SKIFF_CONFIG_FILE")]
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
    /// Print the settings in force as TOML and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,
}

impl NodeArgs {
    /// Fills what is unset from `file`.
    fn or_file(self, file: NodeArgs) -> NodeArgs {
        NodeArgs {
            id: self.id.or(file.id),
            data_dir: self.data_dir.or(file.data_dir),
            peer_addr: self.peer_addr.or(file.peer_addr),
            client_addr: self.client_addr.or(file.client_addr),
            peers: self.peers.or(file.peers),
            cluster_token: self.cluster_token.or(file.cluster_token),
            heartbeat_interval: self.heartbeat_interval.or(file.heartbeat_interval),
            election_timeout: self.election_timeout.or(file.election_timeout),
            request_timeout: self.request_timeout.or(file.request_timeout),
            snapshot_entries: self.snapshot_entries.or(file.snapshot_entries),
            snapshot_log_bytes: self.snapshot_log_bytes.or(file.snapshot_log_bytes),
            snapshot_catchup_entries: self
                .snapshot_catchup_entries
                .or(file.snapshot_catchup_entries),
            catchup_rate: self.catchup_rate.or(file.catchup_rate),
            wal_segment_bytes: self.wal_segment_bytes.or(file.wal_segment_bytes),
            worker_threads: self.worker_threads.or(file.worker_threads),
            allow_fault_injection: self.allow_fault_injection.or(file.allow_fault_injection),
            join: self.join.or(file.join),
            lease_reads: self.lease_reads.or(file.lease_reads),
            clock_drift_bound: self.clock_drift_bound.or(file.clock_drift_bound),
            config_file: self.config_file,
            print_config: self.print_config,
        }
    }

    /// Fills what is still unset with the defaults that have one.
    fn or_defaults(self) -> anyhow::Result<NodeArgs> {
        let peers = self.peers.as_deref().map(parse_peers).transpose()?;
        let own_peer_addr = match (self.id, &peers) {
            (Some(id), Some(peers)) => peers.get(&NodeId(id)).copied(),
            _ => None,
        };
        Ok(NodeArgs {
            peer_addr: self.peer_addr.or(own_peer_addr),
            client_addr: self
                .client_addr
                .or(Some(DEFAULT_CLIENT_ADDR.parse().expect("the default client address parses"))),
            cluster_token: self.cluster_token.or(Some(DEFAULT_CLUSTER_TOKEN.into())),
            heartbeat_interval: self.heartbeat_interval.or(Some(DEFAULT_HEARTBEAT_MS)),
            election_timeout: self.election_timeout.or(Some(DEFAULT_ELECTION_MS)),
            request_timeout: self.request_timeout.or(Some(DEFAULT_REQUEST_MS)),
            snapshot_entries: self.snapshot_entries.or(Some(SnapshotPolicy::default().entries)),
            snapshot_log_bytes: self
                .snapshot_log_bytes
                .or(Some(SnapshotPolicy::default().log_bytes)),
            snapshot_catchup_entries: self
                .snapshot_catchup_entries
                .or(Some(SnapshotPolicy::default().catchup_entries)),
            catchup_rate: self.catchup_rate.or(Some(DEFAULT_CATCHUP_RATE)),
            wal_segment_bytes: self.wal_segment_bytes.or(Some(DEFAULT_WAL_SEGMENT_BYTES)),
            worker_threads: self.worker_threads.or_else(|| {
                Some(std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
            }),
            allow_fault_injection: self.allow_fault_injection.or(Some(false)),
            join: self.join.or(Some(false)),
            lease_reads: self.lease_reads.or(Some(false)),
            clock_drift_bound: self.clock_drift_bound.or_else(|| {
                self.election_timeout.or(Some(DEFAULT_ELECTION_MS)).map(|ms| ms.div_ceil(5))
            }),
            ..self
        })
    }

    /// The complete settings: flags and environment, then the file, then defaults.
    pub fn resolve(self) -> anyhow::Result<NodeArgs> {
        let merged = match &self.config_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the config file {}", path.display()))?;
                let file: NodeArgs = toml::from_str(&text)
                    .with_context(|| format!("bad config file {}", path.display()))?;
                self.or_file(file)
            }
            None => self,
        };
        merged.or_defaults()
    }

    /// The server configuration these settings describe.
    pub fn server_config(&self) -> anyhow::Result<ServerConfig> {
        let id = self.id.ok_or_else(|| anyhow!("--id is required"))?;
        if id == 0 {
            bail!("--id must be a positive number");
        }
        let peers =
            parse_peers(self.peers.as_deref().ok_or_else(|| anyhow!("--peers is required"))?)?;
        let data_dir = self.data_dir.clone().ok_or_else(|| anyhow!("--data-dir is required"))?;
        let peer_addr = self.peer_addr.ok_or_else(|| {
            anyhow!("--peers has no address for this node's id {id}, and no --peer-addr is given")
        })?;
        let millis = |value: Option<u64>, name: &str| -> anyhow::Result<Duration> {
            match value {
                Some(0) | None => bail!("--{name} must be a positive number of milliseconds"),
                Some(ms) => Ok(Duration::from_millis(ms)),
            }
        };
        Ok(ServerConfig {
            id: NodeId(id),
            cluster_id: cluster_id(self.cluster_token.as_deref().unwrap_or(DEFAULT_CLUSTER_TOKEN)),
            data_dir,
            peer_addr,
            client_addr: self.client_addr.ok_or_else(|| anyhow!("--client-addr is required"))?,
            peers,
            heartbeat_interval: millis(self.heartbeat_interval, "heartbeat-interval")?,
            election_timeout: millis(self.election_timeout, "election-timeout")?,
            request_timeout: millis(self.request_timeout, "request-timeout")?,
            snapshots: SnapshotPolicy {
                entries: self.snapshot_entries.unwrap_or(SnapshotPolicy::default().entries),
                log_bytes: self.snapshot_log_bytes.unwrap_or(SnapshotPolicy::default().log_bytes),
                catchup_entries: self
                    .snapshot_catchup_entries
                    .unwrap_or(SnapshotPolicy::default().catchup_entries),
            },
            catchup_rate: self.catchup_rate.unwrap_or(DEFAULT_CATCHUP_RATE),
            wal_segment_bytes: self.wal_segment_bytes.unwrap_or(DEFAULT_WAL_SEGMENT_BYTES),
            allow_fault_injection: self.allow_fault_injection.unwrap_or(false),
            join: self.join.unwrap_or(false),
            lease_reads: self.lease_reads.unwrap_or(false),
            clock_drift_bound: Duration::from_millis(
                self.clock_drift_bound.unwrap_or(DEFAULT_ELECTION_MS.div_ceil(5)),
            ),
        })
    }
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_peers(text: &str) -> anyhow::Result<BTreeMap<NodeId, SocketAddr>> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| anyhow!("bad --peers entry {item:?}: expected ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| anyhow!("bad --peers entry {item:?}: {id:?} is not a node id"))?;
        if id == 0 {
            bail!("bad --peers entry {item:?}: node ids start at 1");
        }
        let addr: SocketAddr = addr.trim().parse().map_err(|error| {
            anyhow!("bad --peers entry {item:?}: {addr:?} is not HOST:PORT ({error})")
        })?;
        if peers.insert(NodeId(id), addr).is_some() {
            bail!("bad --peers: node {id} appears twice");
        }
    }
    if peers.is_empty() {
        bail!("--peers is empty");
    }
    Ok(peers)
}

/// Runs `skiff node` until Ctrl-C or SIGTERM.
pub fn run(args: NodeArgs) -> ExitCode {
    match run_node(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("skiff node: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, skipping a cause that its parent's message already
/// quotes (many I/O errors print their source inside their own message).
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

/// Resolves the settings, then starts and runs the server.
fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let args = args.resolve()?;
    if args.print_config {
        print!("{}", toml::to_string(&args).context("cannot render the settings")?);
        return Ok(());
    }
    let config = args.server_config()?;
    let worker_threads = match args.worker_threads {
        Some(0) => bail!("--worker-threads must be a positive number"),
        Some(threads) => threads,
        None => 1,
    };
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let server = Server::start(config).await?;
        server.run(shutdown_signal()).await
    })
}

/// Logs to stderr, filtered by `SKIFF_LOG` (or `RUST_LOG`), `info` by default.
fn init_logging() {
    let filter = std::env::var("SKIFF_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_bad_entries_say_why() {
        let peers = parse_peers("1=127.0.0.1:2380, 2=127.0.0.1:12380").expect("valid peers");
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[&NodeId(2)], "127.0.0.1:12380".parse().expect("an address"));
        for (bad, says) in [
            ("1", "expected ID=HOST:PORT"),
            ("x=127.0.0.1:1", "not a node id"),
            ("0=127.0.0.1:1", "start at 1"),
            ("1=localhost", "not HOST:PORT"),
            ("1=127.0.0.1:1,1=127.0.0.1:2", "appears twice"),
            ("", "empty"),
        ] {
            let error = parse_peers(bad).expect_err(bad).to_string();
            assert!(error.contains(says), "{bad:?}: {error}");
        }
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let flags = NodeArgs { id: Some(2), ..NodeArgs::default() };
        let file: NodeArgs = toml::from_str(
            "id = 9\npeers = \"1=127.0.0.1:7001,2=127.0.0.1:7002\"\nheartbeat-interval = 50\n\
             snapshot-log-bytes = 1024\ncatchup-rate = 0\n",
        )
        .expect("a valid file");
        let resolved = flags.or_file(file).or_defaults().expect("valid settings");
        assert_eq!(resolved.id, Some(2), "the flag wins");
        assert_eq!(resolved.heartbeat_interval, Some(50), "the file fills what flags left");
        assert_eq!(resolved.election_timeout, Some(DEFAULT_ELECTION_MS), "then the defaults");
        assert_eq!(resolved.snapshot_log_bytes, Some(1024));
        assert_eq!(resolved.snapshot_entries, Some(SnapshotPolicy::default().entries));
        assert_eq!(resolved.catchup_rate, Some(0), "0 turns pacing off, and is kept");
        let defaults = NodeArgs::default().or_defaults().expect("valid settings");
        assert_eq!(defaults.catchup_rate, Some(DEFAULT_CATCHUP_RATE));
        assert_eq!(resolved.peer_addr, Some("127.0.0.1:7002".parse().expect("an address")));
        let error = resolved.server_config().expect_err("no data dir").to_string();
        assert!(error.contains("--data-dir"), "{error}");
    }

    #[test]
    fn an_error_chain_is_one_line_without_repeats() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = anyhow::Error::new(io).context("create directory /x: no such file");
        let error = error.context("cannot open the data directory /x");
        assert_eq!(
            one_line(&error),
            "cannot open the data directory /x: create directory /x: no such file"
        );
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let parsed: Result<NodeArgs, _> = toml::from_str("data_dir = \"/x\"\n");
        assert!(parsed.is_err(), "keys are spelt as the flags: data-dir");
    }
}
