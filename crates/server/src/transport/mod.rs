//! # The peer transport: Raft messages between nodes, over TCP
//!
//! The core (`skiff-raft`) emits messages and expects to be handed the messages other nodes
//! sent it; it does not care how they travel, only that a message arrives intact or not at
//! all. Raft tolerates loss, duplication and reordering (Raft §5.1: "servers retry RPCs if they
//! do not receive a response in a timely manner"), so this transport promises no more: it makes
//! a best effort, in order per connection, and drops rather than waits.
//!
//! ## Connection model
//! Each node opens **one long-lived outgoing TCP connection to each peer, used only to send**,
//! and accepts connections from its peers, **used only to receive**. Between two nodes there
//! are thus two connections, one per direction. That costs a socket, and buys simplicity: no
//! dialling races to break when two nodes connect to each other at once, one writer per socket,
//! and a connection's direction alone says who talks on it. A connection opens with a `Hello`
//! frame (sender id and the address where it serves clients, which [`Transport::client_addr`]
//! reports so that a follower can forward a client to the leader); every later frame is a
//! `Batch` of Raft messages.
//!
//! Outgoing connections are kept by one writer task per peer (`writer.rs`): it dials, sends,
//! and on any failure closes the connection, waits an exponential, jittered backoff
//! (`backoff.rs`) and dials again, or at once when the peer connects to this node: a `Hello`
//! from it shows it is up (say, just restarted), so a backoff grown while it was down does not
//! keep it unreached for seconds. Incoming connections are read by one task each
//! (`reader.rs`); a newer connection from the same peer replaces the older one.
//!
//! ## Frames
//! A frame is a u32 big-endian length, then that many bytes of protobuf `Frame`
//! (`proto/peer.proto`, package `skiff.peer.v1`, documented field by field):
//!
//! ```text
//! offset  size  content
//! 0       4     N: u32 big-endian, the length of what follows (N <= max_frame_bytes)
//! 4       N     proto Frame:  08 01            version = 1, always the first two bytes
//!                             10 <varint>      cluster_id
//!                             18 <varint>      from (sender id)
//!                             20 <varint>      to (receiver id)
//!                             2a <len> Hello   client_addr           (first frame only)
//!                          or 32 <len> Batch   repeated Message      (every later frame)
//! Message:  08 <varint> term, then one body: 12 PreVote, 1a PreVoteResponse, 22 Vote,
//!           2a VoteResponse, 32 Append, 3a AppendResponse, 42 Heartbeat, 4a HeartbeatResponse,
//!           52 InstallSnapshot
//! ```
//!
//! Protobuf leaves out fields that are zero, so a field may be missing. `frame.rs` reads and
//! writes frames; `wire.rs` maps Raft messages to their wire form. A frame never exceeds
//! [`TransportConfig::max_frame_bytes`] (64 MiB by default), and a reader refuses a longer
//! length prefix before allocating anything. Every node of a cluster should use the same
//! maximum: a frame the sender thinks fine is rejected by a receiver with a smaller one.
//!
//! ## Batching
//! [`Transport::send`] only queues. The writer wakes, takes everything queued for its peer (up
//! to the maximum frame size) and writes it as one frame with one system call: while a write is
//! in progress the next batch accumulates, so the busier the link, the larger the batches and
//! the fewer the writes. TCP_NODELAY is set, since each batch is already one write and Nagle's
//! algorithm would only delay it.
//!
//! ## Back-pressure and loss
//! - **Outgoing**: each peer's queue is bounded in messages and in bytes
//!   ([`TransportConfig::queue_messages`], [`TransportConfig::queue_bytes`]). When it is full,
//!   `send` drops the message and counts it (`skiff_network_peer_dropped_messages_total`): a
//!   leader must never block on, nor buffer without bound for, a dead or slow peer. The loss
//!   only costs time: appends are retried from the follower's match index, heartbeats and
//!   votes are re-sent at the next timeout. Messages of a failed write are dropped and counted
//!   too; messages still queued are sent on the next connection.
//! - **Incoming**: valid messages go to the runtime's channel with `send().await`. While the
//!   runtime is behind, the reader stops reading, the socket buffers fill, and TCP flow control
//!   stalls the peer's writer, whose queue then fills and drops: back-pressure reaches the
//!   sender without any buffer growing.
//!
//! ## Validation
//! Everything read from the network is checked (`reader.rs` lists the checks: size, protobuf,
//! version, cluster id, receiver, sender, frame order, every message). A frame failing a check
//! is rejected whole, with a `tracing::warn!` naming the reason and the remote address, a count
//! in `skiff_network_peer_rejected_frames_total`, and the connection closed. Nothing received
//! can panic the node. Semantic checks of the messages (consecutive entries, sensible terms) are
//! the core's (`skiff_raft::StepError`).
//!
//! ## Failure detection
//! A writer learns that its peer closed the connection at once (it watches the read side, on
//! which the peer never writes), that a dial hangs after [`TransportConfig::connect_timeout`],
//! and that a peer stopped reading after [`TransportConfig::write_timeout`]. A reader gives an
//! accepted connection [`HELLO_TIMEOUT`] to say hello, in at most [`MAX_HELLO_BYTES`].
//!
//! ## Cutting a link (fault injection)
//! [`Transport::cut`] makes the link to one peer behave as a network partition between the two
//! nodes, both ways, until [`Transport::heal`]: messages for the peer are dropped (and counted
//! in `skiff_network_peer_dropped_messages_total`, with what was queued), the writer closes
//! its connection and does not dial while the link is cut, and the reader closes the peer's
//! inbound connection and refuses every new one right after its `Hello` (the first moment the
//! peer is known), delivering nothing. The peer sees what it would see across a partition:
//! its messages are lost and its connections fail. A cut lives in memory only: a restart
//! heals it. The runtime never cuts a link; only the fault-injection API does
//! (`crate::faults`), and only on a node started with `--allow-fault-injection`, for
//! `skiff demo` and tests.
//!
//! ## Peers come and go
//! The runtime adds a peer ([`Transport::add_peer`]) when a node joins the configuration and its
//! peer address is known, and removes one ([`Transport::remove_peer`]) when it leaves: the
//! removed peer's writer stops, its inbound connection is closed, and any later connection from
//! it is refused at its `Hello` (an unknown sender). Adding a peer again with a new address
//! replaces the old one.
//!
//! ## Left out
//! - **TLS and authentication.** Anyone who can reach the peer port can claim to be a peer and
//!   send votes and entries; the cluster id guards against mistakes (two clusters on one host),
//!   not attacks. Run the peer network on a trusted network until TLS (with client
//!   certificates naming node ids) is added at the connection layer.
//! - **Priorities.** A heartbeat queued behind a large append waits for it; a frame is capped,
//!   and the core's appends are small (about 1 MiB by default), so the wait is short.
//! - **Compression**, and a limit on the number of unidentified inbound connections.

pub mod frame;
pub mod metrics;
pub mod wire;

mod backoff;
mod queue;
mod reader;
mod writer;

/// The wire types generated from `proto/peer.proto` (package `skiff.peer.v1`).
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/skiff.peer.v1.rs"));
}

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use skiff_raft::{Message, NodeId};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

pub use frame::PROTOCOL_VERSION;
pub use metrics::{PeerLabel, TransportMetrics};
pub use reader::{HELLO_TIMEOUT, MAX_HELLO_BYTES};

use frame::ENVELOPE_BYTES;
use queue::{Full, Queue};

/// The longest advertised client address: short enough for a `Hello` to fit
/// [`MAX_HELLO_BYTES`] with room to spare, long enough for any host name (253 bytes) and port.
pub const MAX_CLIENT_ADDR_BYTES: usize = 1024;

/// How a node's transport is set up.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// The cluster this node belongs to; frames of any other cluster are rejected.
    pub cluster_id: u64,
    /// This node's id; never zero.
    pub id: NodeId,
    /// The address where this node serves clients, advertised to peers in every `Hello`; at
    /// most [`MAX_CLIENT_ADDR_BYTES`] long, empty if it serves none.
    pub client_addr: String,
    /// The peer address of every other node of the cluster; never contains `id`.
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// The largest frame sent or accepted, in bytes of protobuf (the 4-byte prefix aside).
    /// At most `u32::MAX`; should be the same on every node.
    pub max_frame_bytes: usize,
    /// The most messages queued for one peer; more are dropped.
    pub queue_messages: usize,
    /// The most bytes (of encoded messages) queued for one peer; more are dropped.
    pub queue_bytes: usize,
    /// The first reconnection delay after a failure; positive.
    pub backoff_min: Duration,
    /// The largest reconnection delay; at least `backoff_min`.
    pub backoff_max: Duration,
    /// How long a dial may take before it counts as failed; positive.
    pub connect_timeout: Duration,
    /// How long one frame's write may take before the connection counts as failed; positive.
    pub write_timeout: Duration,
}

/// A transport configuration that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("invalid transport configuration: {reason}")]
pub struct InvalidConfig {
    /// What is wrong, in words.
    pub reason: String,
}

impl TransportConfig {
    /// The default maximum frame size: 64 MiB, far above the core's appends (~1 MiB).
    pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 << 20;

    /// A configuration with the defaults: 64 MiB frames, queues of 4096 messages or 64 MiB,
    /// backoff from 50 ms to 2 s, 1 s to connect and 10 s to write a frame.
    pub fn new(
        cluster_id: u64,
        id: NodeId,
        client_addr: String,
        peers: BTreeMap<NodeId, SocketAddr>,
    ) -> TransportConfig {
        TransportConfig {
            cluster_id,
            id,
            client_addr,
            peers,
            max_frame_bytes: Self::DEFAULT_MAX_FRAME_BYTES,
            queue_messages: 4096,
            queue_bytes: 64 << 20,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(10),
        }
    }

    /// Checks the invariants stated on the fields.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let fail = |reason: String| Err(InvalidConfig { reason });
        if self.id.0 == 0 {
            return fail("node id 0 is reserved".to_owned());
        }
        if self.peers.contains_key(&self.id) {
            return fail(format!("node {} is listed among its own peers", self.id));
        }
        if self.client_addr.len() > MAX_CLIENT_ADDR_BYTES {
            return fail(format!(
                "client_addr is {} bytes long, more than {MAX_CLIENT_ADDR_BYTES}",
                self.client_addr.len()
            ));
        }
        if self.peers.contains_key(&NodeId(0)) {
            return fail("peer id 0 is reserved".to_owned());
        }
        let largest = usize::try_from(u32::MAX).unwrap_or(usize::MAX);
        if self.max_frame_bytes <= 2 * ENVELOPE_BYTES || self.max_frame_bytes > largest {
            return fail(format!(
                "max_frame_bytes {} is not within ({}, {largest}]",
                self.max_frame_bytes,
                2 * ENVELOPE_BYTES
            ));
        }
        if self.queue_messages == 0 || self.queue_bytes == 0 {
            return fail("queue_messages and queue_bytes must be positive".to_owned());
        }
        if self.backoff_min.is_zero() || self.backoff_min > self.backoff_max {
            return fail(format!(
                "backoff {:?} .. {:?} must be positive and increasing",
                self.backoff_min, self.backoff_max
            ));
        }
        if self.connect_timeout.is_zero() || self.write_timeout.is_zero() {
            return fail("connect_timeout and write_timeout must be positive".to_owned());
        }
        Ok(())
    }
}

/// A running peer transport. Cheap to clone: clones share the same connections and queues.
/// Dropping every clone without [`Transport::shutdown`] stops the tasks too, just not
/// before returning.
#[derive(Clone, Debug)]
pub struct Transport {
    /// What the tasks share with the handle.
    shared: Arc<Shared>,
    /// The tasks, until shutdown takes them. Only handles hold this, never the tasks, so
    /// dropping the last handle drops it, which stops them.
    tasks: Arc<Mutex<Option<Tasks>>>,
}

/// The state the transport's tasks and handles share.
#[derive(Debug)]
struct Shared {
    /// The configuration, validated.
    config: TransportConfig,
    /// Every current peer (changed by [`Transport::add_peer`] and [`Transport::remove_peer`]).
    peers: RwLock<BTreeMap<NodeId, Arc<Peer>>>,
    /// Where everything is counted.
    metrics: TransportMetrics,
}

/// What the transport keeps about one peer.
#[derive(Debug)]
struct Peer {
    /// The peer's id.
    id: NodeId,
    /// Where the peer accepts connections.
    address: SocketAddr,
    /// The peer's label in every metric.
    label: PeerLabel,
    /// Messages waiting for the peer's writer.
    queue: Queue,
    /// Whether the writer's connection is up (hello written, no failure seen since).
    connected: AtomicBool,
    /// The client address from the peer's latest `Hello`; `None` before one, or if empty.
    client_addr: Mutex<Option<String>>,
    /// Wakes the reader of the peer's current inbound connection when a newer one replaces it.
    inbound: Mutex<Option<Arc<Notify>>>,
    /// Wakes the writer from its backoff when the peer connects to this node.
    heard_from: Notify,
    /// Whether the link to the peer is cut ([`Transport::cut`]); the writer and the readers
    /// watch it, so that a cut closes their connections at once.
    cut: watch::Sender<bool>,
    /// Set once the peer is removed ([`Transport::remove_peer`]): its writer stops.
    removed: watch::Sender<bool>,
}

/// A node that is not a configured peer, named where one was expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("node {0} is not a peer of this node")]
pub struct UnknownPeer(pub NodeId);

/// The running tasks.
#[derive(Debug)]
struct Tasks {
    /// Set to `true` to stop the acceptor, which then stops every reader.
    shutdown: watch::Sender<bool>,
    /// The task accepting connections; it owns the readers.
    acceptor: JoinHandle<()>,
    /// One writer per peer.
    writers: JoinSet<()>,
}

impl Transport {
    /// Starts accepting peer connections on `listener` and connecting to every peer; valid
    /// inbound messages go to `inbound`. Must be called inside a tokio runtime.
    ///
    /// # Panics
    /// If `config` fails [`TransportConfig::validate`]: check it first where it is read.
    pub fn start(
        config: TransportConfig,
        listener: TcpListener,
        inbound: mpsc::Sender<Message>,
        metrics: TransportMetrics,
    ) -> Transport {
        if let Err(error) = config.validate() {
            panic!("{error}");
        }
        let peers: BTreeMap<NodeId, Arc<Peer>> = config
            .peers
            .iter()
            .map(|(&id, &address)| (id, Arc::new(Peer::new(id, address, &config))))
            .collect();
        for peer in peers.values() {
            metrics.create_series(&peer.label);
        }
        tracing::info!(
            node = %config.id,
            cluster = config.cluster_id,
            listen = ?listener.local_addr().ok(),
            peers = ?config.peers,
            "peer transport starting"
        );
        let writers_of: Vec<Arc<Peer>> = peers.values().cloned().collect();
        let shared = Arc::new(Shared { config, peers: RwLock::new(peers), metrics });
        let (shutdown, shutdown_receiver) = watch::channel(false);
        let acceptor =
            tokio::spawn(reader::accept(shared.clone(), listener, inbound, shutdown_receiver));
        let mut writers = JoinSet::new();
        for peer in writers_of {
            writers.spawn(writer::run(shared.clone(), peer));
        }
        let tasks = Tasks { shutdown, acceptor, writers };
        Transport { shared, tasks: Arc::new(Mutex::new(Some(tasks))) }
    }

    /// Queues `message` for its receiver's writer, without blocking. If the receiver's queue
    /// is full (in messages or bytes), or the message could not fit a frame, it is dropped and
    /// counted: Raft tolerates loss, and a dead peer must never make the leader buffer without
    /// bound. A message for a node that is not a configured peer is dropped with a warning.
    ///
    /// # Panics
    /// If `message.from` is not this node: the core only sends its own messages.
    pub fn send(&self, message: Message) {
        let config = &self.shared.config;
        assert_eq!(message.from, config.id, "a node sends only its own messages: {message}");
        let Some(peer) = self.shared.peer(message.to) else {
            tracing::warn!(%message, "message for a node that is not a peer; dropped");
            return;
        };
        let dropped = self.shared.metrics.dropped_messages.get_or_create(&peer.label);
        if peer.is_cut() {
            // Lost in the partition, as on a real network.
            dropped.inc();
            return;
        }
        let encoded = wire::encode(message);
        let cost = queue::batch_cost(&encoded);
        let budget = config.max_frame_bytes - ENVELOPE_BYTES;
        if cost > budget {
            tracing::warn!(
                peer = %peer.id, bytes = cost, max_frame_bytes = config.max_frame_bytes,
                "message too large for a frame; dropped"
            );
            dropped.inc();
            return;
        }
        if let Err((full, starts_run)) = peer.queue.push(encoded, cost) {
            dropped.inc();
            if starts_run {
                let (messages, bytes) = peer.queue.len();
                let bound = match full {
                    Full::Messages => "messages",
                    Full::Bytes => "bytes",
                };
                tracing::warn!(
                    peer = %peer.id, messages, bytes, bound,
                    "outgoing queue to peer full; dropping messages until it drains"
                );
            }
        }
    }

    /// The client address `peer` advertised in its latest `Hello`, if it has connected and
    /// advertised one.
    pub fn client_addr(&self, peer: NodeId) -> Option<String> {
        let peer = self.shared.peer(peer)?;
        lock(&peer.client_addr).clone()
    }

    /// Whether an outgoing connection to `peer` is currently up (dialled, hello written, no
    /// failure seen since). False for a node that is not a peer.
    pub fn connected(&self, peer: NodeId) -> bool {
        self.shared.peer(peer).is_some_and(|peer| peer.connected.load(Ordering::Acquire))
    }

    /// How many messages and bytes are queued for `peer`, waiting for its writer; `(0, 0)` for
    /// a node that is not a peer. Never above the configured queue bounds.
    pub fn queued(&self, peer: NodeId) -> (usize, usize) {
        self.shared.peer(peer).map_or((0, 0), |peer| peer.queue.len())
    }

    /// Cuts the link to `peer` both ways, as a network partition would (see the module
    /// documentation): until [`Transport::heal`], nothing is sent to or accepted from it.
    /// Returns whether the link was up before. For fault injection only.
    pub fn cut(&self, peer: NodeId) -> Result<bool, UnknownPeer> {
        let peer = self.shared.peer(peer).ok_or(UnknownPeer(peer))?;
        let was_cut = peer.cut.send_replace(true);
        if !was_cut {
            tracing::warn!(
                peer = %peer.id,
                "link to peer cut (fault injection): its messages are dropped and its \
                 connections refused until the link is healed"
            );
        }
        Ok(!was_cut)
    }

    /// Heals the link to `peer` after [`Transport::cut`]: the writer dials again at once and
    /// the peer's connections are accepted. Returns whether the link was cut before.
    pub fn heal(&self, peer: NodeId) -> Result<bool, UnknownPeer> {
        let peer = self.shared.peer(peer).ok_or(UnknownPeer(peer))?;
        let was_cut = peer.cut.send_replace(false);
        if was_cut {
            tracing::warn!(peer = %peer.id, "link to peer healed (fault injection)");
        }
        Ok(was_cut)
    }

    /// The peers whose link is cut, in id order.
    pub fn cut_links(&self) -> BTreeSet<NodeId> {
        read(&self.shared.peers).values().filter(|peer| peer.is_cut()).map(|peer| peer.id).collect()
    }

    /// The current peers and their addresses, in id order.
    pub fn peers(&self) -> BTreeMap<NodeId, SocketAddr> {
        read(&self.shared.peers).iter().map(|(id, peer)| (*id, peer.address)).collect()
    }

    /// Starts talking to `id` at `address` (a node that joined the configuration): a writer
    /// dials it, and its connections are accepted. If `id` is a peer already at another
    /// address, the old peer is removed first; at the same address, nothing changes. Returns
    /// whether anything changed. Must be called inside a tokio runtime.
    pub fn add_peer(&self, id: NodeId, address: SocketAddr) -> Result<bool, UnknownPeer> {
        if id == self.shared.config.id || id.0 == 0 {
            return Err(UnknownPeer(id));
        }
        if let Some(existing) = self.shared.peer(id) {
            if existing.address == address {
                return Ok(false);
            }
            self.remove_peer(id);
        }
        let mut tasks = lock(&self.tasks);
        let Some(tasks) = tasks.as_mut() else {
            // Shut down: nothing to talk with.
            return Ok(false);
        };
        let peer = Arc::new(Peer::new(id, address, &self.shared.config));
        self.shared.metrics.create_series(&peer.label);
        write(&self.shared.peers).insert(id, peer.clone());
        tasks.writers.spawn(writer::run(self.shared.clone(), peer));
        tracing::info!(peer = %id, %address, "peer added");
        Ok(true)
    }

    /// Stops talking to `id` (a node that left the configuration): its writer stops, its
    /// inbound connection is closed and new ones are refused, and messages for it are dropped.
    /// Returns whether it was a peer.
    pub fn remove_peer(&self, id: NodeId) -> bool {
        let Some(peer) = write(&self.shared.peers).remove(&id) else {
            return false;
        };
        peer.removed.send_replace(true);
        // A removed peer's reader closes its connection as on a cut link.
        peer.cut.send_replace(true);
        peer.set_connected(false, &self.shared.metrics);
        tracing::info!(peer = %id, address = %peer.address, "peer removed");
        true
    }

    /// The configuration the transport runs with.
    pub fn config(&self) -> &TransportConfig {
        &self.shared.config
    }

    /// Stops every task and closes every connection; returns once all are gone. Messages still
    /// queued are discarded. Other clones of this handle stay usable, but send nothing more.
    pub async fn shutdown(self) {
        let Some(tasks) = lock(&self.tasks).take() else {
            return;
        };
        let Tasks { shutdown, acceptor, mut writers } = tasks;
        // The acceptor holds the receiver until it returns, so this cannot fail before.
        let _ = shutdown.send(true);
        if let Err(error) = acceptor.await
            && error.is_panic()
        {
            std::panic::resume_unwind(error.into_panic());
        }
        writers.shutdown().await;
        for peer in read(&self.shared.peers).values() {
            peer.set_connected(false, &self.shared.metrics);
        }
        tracing::info!(node = %self.shared.config.id, "peer transport stopped");
    }
}

impl Peer {
    /// A peer not yet connected in either direction.
    fn new(id: NodeId, address: SocketAddr, config: &TransportConfig) -> Peer {
        Peer {
            id,
            address,
            label: PeerLabel::new(id),
            queue: Queue::new(config.queue_messages, config.queue_bytes),
            connected: AtomicBool::new(false),
            client_addr: Mutex::new(None),
            inbound: Mutex::new(None),
            heard_from: Notify::new(),
            cut: watch::channel(false).0,
            removed: watch::channel(false).0,
        }
    }

    /// Whether the link to the peer is cut.
    fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }

    /// Records whether the outgoing connection is up, in the flag and the gauge.
    fn set_connected(&self, connected: bool, metrics: &TransportMetrics) {
        self.connected.store(connected, Ordering::Release);
        metrics.connected.get_or_create(&self.label).set(i64::from(connected));
    }

    /// Records a `Hello` received on a new inbound connection: remembers the client address,
    /// wakes the writer if it is backing off, and tells the reader of the previous connection,
    /// if any, to stop. Returns what the new connection's reader must wait on to learn that it
    /// was replaced in turn.
    fn accept_hello(&self, client_addr: String) -> Arc<Notify> {
        *lock(&self.client_addr) = Some(client_addr).filter(|address| !address.is_empty());
        // A permit kept while the writer is connected ends its next backoff early, once: the
        // peer may have restarted just before that connection failed.
        self.heard_from.notify_one();
        let superseded = Arc::new(Notify::new());
        if let Some(previous) = lock(&self.inbound).replace(superseded.clone()) {
            // `notify_one` keeps a permit if the old reader is not waiting right now.
            previous.notify_one();
        }
        superseded
    }
}

impl Shared {
    /// The peer `id`, if it is one now.
    fn peer(&self, id: NodeId) -> Option<Arc<Peer>> {
        read(&self.peers).get(&id).cloned()
    }
}

/// Reads the peer map (see [`lock`] on poisoning).
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().expect("no code panics while holding a transport lock")
}

/// Writes the peer map (see [`lock`] on poisoning).
fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().expect("no code panics while holding a transport lock")
}

/// Locks `mutex`. Nothing panics while holding the transport's locks, so a poisoned one means
/// a bug worth stopping for.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().expect("no code panics while holding a transport lock")
}
