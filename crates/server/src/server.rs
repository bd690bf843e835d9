//! One server: the pieces put together and started, in the order that makes failure clear.
//!
//! [`Server::start`] binds both listeners first (a port in use is a one-line error before any
//! state is touched), then opens and recovers the write-ahead log (a wrong or damaged data
//! directory is a one-line error naming it), restores the store from the newest snapshot and
//! the core from what the log recovered (the log after the snapshot is then applied again),
//! starts the peer transport, the driver, and the HTTP API. [`Server::run`] serves until the
//! shutdown signal; a leader then hands leadership to the most up-to-date voter (waiting at most
//! an election timeout and a margin), so the cluster has a new leader at once instead of after an
//! election timeout; then it stops the HTTP API, the driver (flushing the log) and the
//! transport.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use skiff_kv::Store;
use skiff_raft::{Config, Node, NodeId, TransferError};
use skiff_wal::{Options, Recovery, StdFs, Wal};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;
use crate::runtime::{Handle, NodeInfo, Parts, Runtime, ServiceError, SnapshotPolicy};
use crate::snapshot;
use crate::transport::{Transport, TransportConfig, TransportMetrics};
use crate::{faults, http};

/// Everything a server is started with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// This node's id; a key of `peers`.
    pub id: NodeId,
    /// The cluster's id: every frame carries it, and the data directory is bound to it.
    pub cluster_id: u64,
    /// Where the write-ahead log lives.
    pub data_dir: PathBuf,
    /// The address to listen on for peers.
    pub peer_addr: SocketAddr,
    /// The address to listen on for clients.
    pub client_addr: SocketAddr,
    /// Every founding voter's peer address, this node's included; for a node that joins, the
    /// running cluster's members it first talks to (its own entry optional).
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// How often the leader sends heartbeats: the core's tick.
    pub heartbeat_interval: Duration,
    /// The election timeout (at least twice the heartbeat interval); randomized up to double.
    pub election_timeout: Duration,
    /// How long a client request may take before it is answered `503 timeout`.
    pub request_timeout: Duration,
    /// When to take snapshots, and how much log to keep behind them.
    pub snapshots: SnapshotPolicy,
    /// The bytes of entries per second a leader reads from its log for followers catching up
    /// (one budget for all of them; `runtime/pacer.rs`), so that a follower far behind does
    /// not take the leader's CPU from its clients; 0: as fast as it can.
    pub catchup_rate: u64,
    /// The size at which the write-ahead log starts a new segment file; compaction deletes
    /// whole segments, so smaller ones free disk space sooner.
    pub wal_segment_bytes: u64,
    /// Whether clients may cut and heal this node's peer links (`/v1/faults`, [`faults`]):
    /// for demos and tests only, never in production.
    pub allow_fault_injection: bool,
    /// Whether this node joins a running cluster: it starts with no configuration (no
    /// voters), never campaigns, and waits for the leader to add it and replicate the log to
    /// it. Without it the node founds a cluster of `peers`. Either way, a configuration found
    /// in the log at restart takes precedence.
    pub join: bool,
    /// Whether `consistency=lease` reads are served under the leader's lease (Raft thesis
    /// §6.4.1) instead of through ReadIndex. Correct only while the nodes' clocks run at rates
    /// that differ by less than `clock_drift_bound` per election timeout; every node of the
    /// cluster must have the same setting. Off by default.
    pub lease_reads: bool,
    /// How much shorter than the election timeout the lease is, to absorb clock drift; rounded
    /// up to whole heartbeat intervals (the core's ticks), below the election timeout.
    pub clock_drift_bound: Duration,
}

impl ServerConfig {
    /// Checks the settings against each other.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !self.join && !self.peers.contains_key(&self.id) {
            bail!("--peers must include this node's own id {} with its peer address", self.id.0);
        }
        if self.heartbeat_interval.is_zero() {
            bail!("the heartbeat interval must be positive");
        }
        if self.wal_segment_bytes < 4096 {
            bail!("the WAL segment size must be at least 4096 bytes");
        }
        if self.lease_reads && self.drift_ticks() >= self.election_ticks() {
            bail!(
                "the clock drift bound ({:?}) must be below the election timeout ({:?}), in whole \
                 heartbeat intervals",
                self.clock_drift_bound,
                self.election_timeout
            );
        }
        if self.election_timeout < self.heartbeat_interval * 2 {
            bail!(
                "the election timeout ({:?}) must be at least twice the heartbeat interval ({:?})",
                self.election_timeout,
                self.heartbeat_interval
            );
        }
        Ok(())
    }

    /// The election timeout in ticks (heartbeat intervals).
    fn election_ticks(&self) -> u32 {
        let ticks = self.election_timeout.as_micros() / self.heartbeat_interval.as_micros();
        u32::try_from(ticks).unwrap_or(u32::MAX)
    }

    /// The clock drift bound in ticks, rounded up (a longer margin is the safe side), at
    /// least one.
    fn drift_ticks(&self) -> u32 {
        let ticks =
            self.clock_drift_bound.as_micros().div_ceil(self.heartbeat_interval.as_micros());
        u32::try_from(ticks).unwrap_or(u32::MAX).max(1)
    }
}

/// A running server.
pub struct Server {
    /// The driver's handle.
    handle: Handle,
    /// The address clients reach (the bound one, with the real port when 0 was asked).
    client_addr: SocketAddr,
    /// The driver task.
    driver: tokio::task::JoinHandle<Result<(), skiff_wal::Error>>,
    /// The HTTP task.
    api: tokio::task::JoinHandle<()>,
    /// Tells the driver and the HTTP API to stop.
    stop: watch::Sender<bool>,
    /// The election timeout: how long the core tries a leadership transfer before giving up.
    election_timeout: Duration,
}

/// The length of each listener's queue of connections not yet accepted. A burst of new
/// connections beyond it has its SYNs dropped, and each is retried only after TCP's one-second
/// initial timeout: with the 128 that `TcpListener::bind` asks for, 256 clients connecting at
/// once overflowed it (`nstat`: TcpExtListenOverflows 67) and some requests took 1.03 s. The
/// kernel caps it at `net.core.somaxconn` (4096 by default), as etcd's listeners are.
const LISTEN_BACKLOG: u32 = 4096;

/// Listens on `addr` with a queue of [`LISTEN_BACKLOG`] connections (and `SO_REUSEADDR`, as
/// `TcpListener::bind` sets it, so that a restarted node rebinds its port at once).
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

impl Server {
    /// Binds, recovers and starts everything (see the module documentation).
    pub async fn start(config: ServerConfig) -> anyhow::Result<Server> {
        config.validate()?;
        let peer_listener = listen(config.peer_addr)
            .with_context(|| format!("cannot listen for peers on {}", config.peer_addr))?;
        let client_listener = listen(config.client_addr)
            .with_context(|| format!("cannot listen for clients on {}", config.client_addr))?;
        let client_addr = client_listener.local_addr()?;
        let peer_addr = peer_listener.local_addr()?;

        let mut options = Options::new(config.id, config.cluster_id);
        options.segment_size = config.wal_segment_bytes;
        let data_dir = config.data_dir.clone();
        let (wal, recovery, store) =
            tokio::task::spawn_blocking(move || recover(data_dir, options)).await?.with_context(
                || format!("cannot open the data directory {}", config.data_dir.display()),
            )?;
        tracing::info!(
            node = config.id.0,
            first_index = recovery.log.first_index.0,
            last_index = recovery.log.last_index.0,
            commit = recovery.commit.0,
            term = recovery.hard_state.term.0,
            snapshot = recovery.snapshot.as_ref().map(|meta| meta.index.0),
            reset_to_snapshot = recovery.reset_to_snapshot,
            torn_bytes = recovery.torn_bytes,
            "recovered the write-ahead log"
        );
        if let Some(torn) = &recovery.torn_tail {
            // A write a crash tore, never acknowledged unless the disk lost synced data (see
            // skiff-wal's recover.rs); an operator missing entries on this node learns why here.
            tracing::warn!(node = config.id.0, out_of_order = torn.out_of_order, "{torn}");
        }

        let founders: Vec<NodeId> =
            if config.join { Vec::new() } else { config.peers.keys().copied().collect() };
        let mut raft = Config::new(config.id, founders);
        raft.election_timeout = config.election_ticks();
        raft.heartbeat_interval = 1;
        raft.seed = seed(config.id);
        raft.lease_reads = config.lease_reads;
        if config.lease_reads {
            raft.clock_drift_bound = config.drift_ticks();
            tracing::info!(
                clock_drift_bound_ticks = raft.clock_drift_bound,
                election_timeout_ticks = raft.election_timeout,
                "lease reads are on: correct only while clocks drift less than the bound"
            );
        }
        // A short window of large appends: under load, entries proposed while a few appends are
        // in flight wait for the next and travel together, so a follower steps, writes and
        // answers once per batch rather than once per proposal (a third less CPU per write at
        // 256 clients, measured). Without load nothing waits: the window is empty.
        raft.max_inflight_appends = 4;
        raft.max_append_entries = 1024;
        // Followers learn a commit index with the next append or heartbeat, not from an append
        // of its own: at one client that was two more messages per follower per write, and
        // their wake-ups on a busy machine. Without them, puts/s at one client rose 7 to 10 %
        // in one same-run comparison (compare.sh, 3 rounds) and 4 % on average in another
        // (-7 to +11 % by round). Under load the index rides on the next batch anyway. The
        // cost: after the last write of a burst, followers apply it (and stale reads there see
        // it) at the next heartbeat.
        raft.eager_commit = false;
        let node = Node::new(raft, recovery.restored()).context("cannot restore the node")?;

        let transport_metrics = TransportMetrics::new();
        let metrics = Arc::new(Metrics::new(|registry| transport_metrics.register(registry)));
        let others: BTreeMap<NodeId, SocketAddr> = config
            .peers
            .iter()
            .filter(|(id, _)| **id != config.id)
            .map(|(id, addr)| (*id, *addr))
            .collect();
        let transport_config =
            TransportConfig::new(config.cluster_id, config.id, client_addr.to_string(), others);
        transport_config.validate().context("invalid peer configuration")?;
        let (inbound_sender, inbound) = mpsc::channel(16 * 1024);
        let transport =
            Transport::start(transport_config, peer_listener, inbound_sender, transport_metrics);
        let faults = faults::router(config.allow_fault_injection.then(|| transport.clone()));
        if config.allow_fault_injection {
            tracing::warn!(
                node = config.id.0,
                "fault injection is allowed: any client may cut this node's links (/v1/faults)"
            );
        }

        let info = NodeInfo {
            id: config.id,
            cluster_id: config.cluster_id,
            client_addr: client_addr.to_string(),
            peer_addr: peer_addr.to_string(),
        };
        let snapshot_index = recovery.snapshot.as_ref().map_or(0, |meta| meta.index.0);
        metrics.snapshot_index.set(snapshot_index as i64);
        let (runtime, handle) = Runtime::new(Parts {
            node,
            store,
            wal,
            transport,
            inbound,
            metrics: metrics.clone(),
            tick: config.heartbeat_interval,
            request_timeout: config.request_timeout,
            info,
            peer_addrs: config.peers.clone(),
            snapshots: config.snapshots,
            election_timeout: config.election_timeout,
            catchup_rate: config.catchup_rate,
        })?;
        let (stop, stopped) = watch::channel(false);
        let driver = tokio::spawn(runtime.run(wait_for(stopped.clone())));
        let hold_chunks = config.allow_fault_injection;
        let service = http::service(handle.clone(), metrics, config.id.0, |router| {
            let router = router.merge(faults);
            if !hold_chunks {
                return router;
            }
            // Snapshot transfers can be held mid-way (`snapshot::ChunkHold`).
            let hold = snapshot::ChunkHold::default();
            router
                .merge(hold.router())
                .layer(axum::middleware::from_fn_with_state(hold, snapshot::hold_chunks))
        });
        let api = tokio::spawn(http::serve(client_listener, service, wait_for(stopped)));
        tracing::info!(node = config.id.0, %client_addr, %peer_addr, "serving");
        let election_timeout = config.election_timeout;
        Ok(Server { handle, client_addr, driver, api, stop, election_timeout })
    }

    /// The address clients reach this server at.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// The driver's handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Serves until `shutdown` resolves or the driver fails; then stops everything. A failure
    /// of the write-ahead log is returned as an error.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let driver_result = tokio::select! {
            () = &mut shutdown => None,
            result = &mut self.driver => Some(result),
        };
        if driver_result.is_none() {
            self.hand_over_leadership().await;
        }
        let _ = self.stop.send(true);
        let driver_result = match driver_result {
            Some(result) => result,
            None => self.driver.await,
        };
        // The HTTP server gets 5 s to finish the requests it serves; a connection still busy
        // then (a dashboard's event stream never ends) is left to the runtime's shutdown.
        if let Ok(Err(error)) = tokio::time::timeout(Duration::from_secs(5), self.api).await {
            tracing::warn!(%error, "the HTTP server task failed");
        }
        driver_result
            .context("the driver task failed")?
            .context("the write-ahead log failed; the node stopped (restart it to recover)")
    }
}

impl Server {
    /// A graceful stop of a leader (the core's contract item 14): transfer leadership to the
    /// most up-to-date voter and wait until the new leader is known or the core gave up (after
    /// an election timeout; the wait is bounded a little above it). A node that does not lead,
    /// or leads alone, has nothing to hand over.
    async fn hand_over_leadership(&self) {
        let Ok(status) = self.handle.status().await else { return };
        if status.core.leader != Some(status.core.id) {
            return;
        }
        let patience = self.election_timeout * 2 + Duration::from_millis(500);
        tracing::info!("shutting down: handing leadership over first");
        match self.handle.transfer_leadership(None, patience).await {
            Ok(done) => tracing::info!(
                leader = done.leader.0,
                term = done.term.0,
                "shutting down: leadership handed over"
            ),
            // A leader alone: nobody to hand over to.
            Err(ServiceError::Transfer(TransferError::NoTarget)) => {}
            Err(error) => tracing::warn!(%error, "shutting down without handing leadership over"),
        }
    }
}

/// Opens and recovers the log, and restores the store from its newest snapshot (an empty store
/// without one). Blocking.
fn recover(data_dir: PathBuf, options: Options) -> anyhow::Result<(Wal, Recovery, Store)> {
    let (wal, recovery) = Wal::open(StdFs, data_dir, options)?;
    let store = match wal.open_snapshot()? {
        Some((meta, mut reader)) => {
            let store = snapshot::restore_store(&meta, &mut reader).map_err(anyhow::Error::msg)?;
            tracing::info!(%meta, keys = store.len(), "restored the store from its snapshot");
            store
        }
        None => Store::new(),
    };
    Ok((wal, recovery, store))
}

/// Resolves once `stopped` says so (or its sender is gone).
async fn wait_for(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// A seed for the core's election timeouts: different per node and per start, so two nodes
/// never draw the same timeouts in lockstep.
fn seed(id: NodeId) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    nanos ^ id.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(std::process::id())
}

/// The cluster id for a cluster token (as etcd's `--initial-cluster-token`): FNV-1a of its
/// bytes, so every node started with the same token agrees without coordination.
pub fn cluster_id(token: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in token.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listener_queues_a_burst_of_connections_past_the_default_backlog() {
        // Nothing accepts here, so every connection waits in the listener's queue: the 129th
        // connects only if the queue is longer than the 128 `TcpListener::bind` asks for.
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0))).expect("listens");
        let addr = listener.local_addr().expect("bound");
        // The kernel caps the queue at net.core.somaxconn (4096 since Linux 5.4, 128 before).
        let cap: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(4096);
        let burst = cap.min(300);
        let connections: Vec<_> = (0..burst)
            .map(|number| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))
                    .unwrap_or_else(|error| panic!("connection {number} not queued: {error}"))
            })
            .collect();
        assert_eq!(connections.len(), burst);
    }
}
