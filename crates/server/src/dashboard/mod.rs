//! # The live dashboard: a web page of the whole cluster, served by every node
//!
//! `GET /` (also `/dashboard`) on any node's client address is a plain HTML page that shows
//! every member of the cluster as the members themselves report it: role, term, leader, commit,
//! applied and last index, each follower's match index (from the leader's progress), the rate
//! at which entries commit and the p99 latency of client writes over the last minutes, with
//! leader changes marked on the timeline. It updates itself from a stream of server-sent events
//! (`GET /v1/events`); it never reloads and never polls.
//!
//! ## Where the numbers come from
//! The page shows what the nodes report and computes no Raft state. A collector task on the
//! node serving the page (`collector.rs`) runs once a second:
//! 1. it samples this node's own load from its metrics: the commit index's advance and the
//!    write-latency histogram's new observations ([`latency`]), without touching the driver;
//! 2. it asks the driver for this node's status, which names every member and the client
//!    address of each one it knows (a peer advertises it when it connects);
//! 3. it fetches `GET /v1/dashboard/node` from every other member (the same JSON as
//!    `/v1/status`, plus that node's own load sample), each bounded by a short timeout, so a
//!    dead or paused node shows up as unreachable instead of stalling the page;
//! 4. it keeps the result in a ring of the last ten minutes and sends it to every open page.
//!
//! A page that connects first gets the ring (so the charts have a past), then each new sample.
//! The collector holds only a weak reference to the dashboard: it stops when the HTTP server
//! that owns the routes stops.
//!
//! ## `skiff demo`
//! The demo process serves the same page from its own address ([`Dashboard::for_demo`]), with
//! a fixed list of members and a [`Control`] over the node processes it started: the page then
//! offers stop (SIGKILL), pause (SIGSTOP), resume (SIGCONT) and restart per node, and cut and
//! heal per link between two nodes (relayed to both ends' fault-injection API, which the demo's
//! nodes enable; `operator.rs`). Because it is not a node itself, the page stays up whichever
//! node is stopped; it relays key reads and writes to a live node.
//!
//! On every page, a snapshot of any member can be asked for (relayed to its
//! `POST /v1/snapshot`), leadership handed to a chosen voter (`POST /v1/leader/transfer`), and
//! the membership changed (`POST /v1/members`: add a voter or learner started with `--join`,
//! promote, remove); the links each node reports cut (`cut_links` in its status) are shown.
//!
//! Messages per second between nodes are each sender's own count: the sampler reads this
//! node's `skiff_network_peer_sent_messages_total` from its metrics registry (the same text
//! `/metrics` serves), so the transport needs no hook for the dashboard.
//!
//! ## What is left out
//! The demo cannot start a new node process for the page to add: a member is added once it is
//! running (`skiff node --join`), and the demo's table keeps showing the three nodes it started.
//!
//! ## Cost to the server
//! Nothing on the write path but one lock-free histogram observation per client write
//! ([`latency`]). Per second: one status request to the driver for the collector, one per
//! other member that polls this node, and one outgoing request per other member.

mod collector;
pub mod latency;
mod operator;
mod routes;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::metrics::Metrics;
use crate::runtime::Handle;

pub use latency::{LatencySnapshot, WriteLatency};

/// How often the collector samples the cluster.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// How many samples the ring keeps: ten minutes at one a second.
pub const HISTORY: usize = 600;
/// How long the collector waits for one member's answer: under the sample interval, so that a
/// paused node delays a sample but never makes the collector fall behind.
pub const FETCH_TIMEOUT: Duration = Duration::from_millis(800);

/// One member of a cluster the demo knows by its client address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The node's id.
    pub id: u64,
    /// The address it serves the HTTP API on.
    pub client_addr: String,
}

/// What a node process is doing, as the program that started it knows (`skiff demo`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessState {
    /// The process runs.
    Running,
    /// The process is stopped by SIGSTOP: alive, but it neither reads nor answers.
    Paused,
    /// The process is gone (stopped from the page, or it exited).
    Stopped,
}

/// What the page may ask the demo to do to a node process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessAction {
    /// Kill the process (SIGKILL: a crash, nothing flushed beyond what was fsynced).
    Stop,
    /// Freeze the process (SIGSTOP): to its peers it looks dead, but its state is kept.
    Pause,
    /// Let a paused process go on (SIGCONT).
    Resume,
    /// Start a stopped process again on its data directory and addresses.
    Restart,
}

impl ProcessAction {
    /// Every action, in the order the page offers them.
    pub const ALL: [ProcessAction; 4] =
        [ProcessAction::Stop, ProcessAction::Pause, ProcessAction::Resume, ProcessAction::Restart];

    /// The action's name in URLs and on the page.
    pub fn name(self) -> &'static str {
        match self {
            ProcessAction::Stop => "stop",
            ProcessAction::Pause => "pause",
            ProcessAction::Resume => "resume",
            ProcessAction::Restart => "restart",
        }
    }
}

impl std::str::FromStr for ProcessAction {
    type Err = String;

    fn from_str(name: &str) -> Result<ProcessAction, String> {
        ProcessAction::ALL
            .into_iter()
            .find(|action| action.name() == name)
            .ok_or_else(|| format!("unknown action {name:?}: one of stop, pause, resume, restart"))
    }
}

/// The node processes a program started and can act on (implemented by `skiff demo`).
pub trait Control: Send + Sync + 'static {
    /// The state of every process, by node id.
    fn processes(&self) -> BTreeMap<u64, ProcessState>;

    /// Does `action` to node `node`'s process; `Ok` says what was done, `Err` why not. Called
    /// on a blocking thread: it may wait for a process to exit or start.
    fn act(&self, node: u64, action: ProcessAction) -> Result<String, String>;
}

/// One node's load over the last sample interval, measured by the node itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Load {
    /// The length of the window, in seconds.
    pub window_seconds: f64,
    /// How far the node's commit index advanced per second.
    pub commits_per_second: f64,
    /// Client writes this node proposed and answered, per second (zero on a follower, which
    /// forwards its writes to the leader).
    pub writes_per_second: f64,
    /// The median latency of those writes, in seconds; `None` without writes.
    pub write_p50_seconds: Option<f64>,
    /// Their 99th percentile latency, in seconds; `None` without writes.
    pub write_p99_seconds: Option<f64>,
    /// Raft messages this node wrote to each peer per second, by peer id (from its transport's
    /// `skiff_network_peer_sent_messages_total`).
    #[serde(default)]
    pub messages_per_second: BTreeMap<u64, f64>,
}

/// Which nodes the dashboard shows, and how it learns about them.
#[derive(Clone)]
enum Source {
    /// Served by a node: it asks its own driver, and the members it names.
    Node {
        /// The node's driver.
        handle: Handle,
        /// The node's metrics, for its load.
        metrics: Arc<Metrics>,
    },
    /// Served by a program that knows the members' addresses (`skiff demo`).
    Members(Vec<Member>),
}

/// A sample of the whole cluster, rendered once as JSON for every page.
#[derive(Debug)]
struct Sample {
    /// Its sequence number, increasing from 1: the page drops what it has seen.
    sequence: u64,
    /// The JSON the pages receive.
    json: String,
}

/// The state the routes and the collector share.
struct Shared {
    /// Where the nodes are.
    source: Source,
    /// The process control, in `skiff demo`.
    control: Option<Arc<dyn Control>>,
    /// Who serves the page ("node 2", "demo").
    title: String,
    /// The last [`HISTORY`] samples, oldest first.
    history: Mutex<VecDeque<Arc<Sample>>>,
    /// Each new sample, to every open page.
    updates: broadcast::Sender<Arc<Sample>>,
    /// This node's load over the last interval (node mode), for `/v1/dashboard/node`.
    load: Mutex<Option<Load>>,
    /// The HTTP client for the other members (and the demo's relayed key requests).
    client: Client<HttpConnector, Body>,
    /// Set once the server stops: every open event stream ends, so that a page left open
    /// never holds up a graceful shutdown.
    closed: watch::Sender<bool>,
}

impl Shared {
    /// The ring of samples.
    fn history(&self) -> MutexGuard<'_, VecDeque<Arc<Sample>>> {
        self.history.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// This node's latest load.
    fn load(&self) -> MutexGuard<'_, Option<Load>> {
        self.load.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps a new sample and sends it to the open pages.
    fn publish(&self, sample: Sample) {
        let sample = Arc::new(sample);
        {
            let mut history = self.history();
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back(sample.clone());
        }
        // No page open is not an error.
        let _ = self.updates.send(sample);
    }
}

/// The dashboard: its routes and its collector.
#[derive(Clone)]
pub struct Dashboard {
    /// What the routes and the collector share.
    shared: Arc<Shared>,
}

impl Dashboard {
    /// The dashboard of the node driven by `handle`; starts its collector on the current tokio
    /// runtime.
    pub fn for_node(handle: Handle, metrics: Arc<Metrics>) -> Dashboard {
        let title = format!("node {}", handle.info().id.0);
        let stopped = handle.clone();
        let dashboard = Dashboard::start(Source::Node { handle, metrics }, None, title);
        let closing = dashboard.clone();
        tokio::spawn(async move {
            stopped.stopped().await;
            closing.close();
        });
        dashboard
    }

    /// The dashboard `skiff demo` serves for its `members`, with `control` over their
    /// processes; starts its collector on the current tokio runtime.
    pub fn for_demo(members: Vec<Member>, control: Arc<dyn Control>) -> Dashboard {
        Dashboard::start(Source::Members(members), Some(control), "demo".into())
    }

    /// Builds the shared state and starts the collector.
    fn start(source: Source, control: Option<Arc<dyn Control>>, title: String) -> Dashboard {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(FETCH_TIMEOUT));
        let shared = Arc::new(Shared {
            source,
            control,
            title,
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            updates: broadcast::channel(16).0,
            load: Mutex::new(None),
            client: Client::builder(TokioExecutor::new()).build(connector),
            closed: watch::channel(false).0,
        });
        tokio::spawn(collector::run(Arc::downgrade(&shared)));
        Dashboard { shared }
    }

    /// The dashboard's routes (see docs/http-api.md): the page and its assets, `/v1/events`,
    /// and, by mode, `/v1/dashboard/node` (a node) or the process controls and a relay of
    /// `/v1/kv/{key}` (the demo).
    pub fn router(&self) -> Router {
        routes::router(self.shared.clone())
    }

    /// Ends every open event stream (and refuses new ones): call before a graceful shutdown
    /// of the HTTP server. A node's dashboard does it by itself when the node stops.
    pub fn close(&self) {
        self.shared.closed.send_replace(true);
    }
}
