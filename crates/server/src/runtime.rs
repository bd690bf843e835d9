//! The driver: one tokio task that owns the protocol core and performs its actions.
//!
//! Everything that touches the [`Node`] happens on one task, so the core needs no locks: the
//! task wakes for any input (a tick, a peer's message, a client request, a disk notification),
//! then drains every other input already waiting (up to a bound), and only then asks the core
//! for its actions. That is where batching comes from: under load one wake-up carries many
//! proposals and many responses, and the core turns them into one write and one `Append` per
//! follower. Woken by a client request while other writes are in flight, the driver first
//! yields once, so that the handlers runnable at that moment send theirs before the drain
//! (tokio runs a woken task right after the one that woke it: one request per round otherwise).
//!
//! The actions are performed under the core's contract (crates/raft, crate docs):
//! - `PersistHardState` and `PersistEntries` go to the write-ahead log's group-commit thread,
//!   which fsyncs batches and reports the last durable entry, fed back as `Node::persisted`.
//!   The leader's own write runs while its `Append`s are already on the wire (item 2). A
//!   follower writes its entries on the driver's own thread instead, after the batch's other
//!   actions, whenever the log's thread is idle (`GroupCommit::write_now`): handing over and
//!   hearing back costs two thread wake-ups on the critical path of every commit its
//!   acknowledgement makes (measured: +4.5 % puts/s at 1 client, +5 % at 256). It blocks the
//!   driver for the fsync, meanwhile messages queue, and the next wake-up takes them together.
//! - Messages after a hard-state write are held until that write is durable (item 1), so a vote
//!   is never granted by a node that could forget it.
//! - `ReadEntries` runs on the log's reader thread (from sealed segments) or its writer thread
//!   (from the tail) and comes back as an input. Reads of entries to send
//!   to a follower (a catch-up from the log) are paced by a token bucket (`pacer.rs`): each asks
//!   for at most a chunk, and an answer that finds the bucket in debt is held until the debt is
//!   paid, when a branch of the driver's loop wakes to hand it to the core.
//! - `Apply` goes into the key-value store right here (an in-memory map, microseconds per
//!   batch); each client write waiting on an applied index gets its outcome. A waiter whose
//!   index was filled by an entry of another term learns that its write was dropped.
//! - `ReadReady` releases linearizable reads once the store has applied up to the read index.
//!   Reads reach the core in batches, one context per batch and one batch of each kind at a
//!   time (`reads.rs`). They are asked with `Node::forward_read_index`, so a follower serves
//!   them too: it asks its leader for a read index and serves from its own store once it has
//!   applied that far (thesis §6.4). `consistency=lease` asks `Node::lease_read` first, and
//!   falls back to the same when the core refuses. The core keeps no timeout for reads (a
//!   follower's request or the leader's answer may be lost), so the driver gives each batch up
//!   after two election timeouts: a follower's is answered "not leader", and the HTTP layer
//!   forwards it. Read contexts start at a random number, so they never repeat across restarts
//!   (contract item 6): an answer to a request sent before a crash cannot release a new read.
//! - `FetchSnapshot`, and taking snapshots and compacting behind them, are in `snapshot.rs`
//!   (contract items 9 to 12).
//!
//! A failure of the log (a write or fsync error) is fatal: the task stops, every waiting client
//! gets `unavailable`, and [`Runtime::run`] returns the error so the process exits. Restarting
//! runs recovery, which is the only safe way on after a failed fsync.
//!
//! The commit index is saved for restarts only together with an entry write, so it never costs
//! an fsync of its own; it may lag, which is safe (see `Restored::commit`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use skiff_kv::{Command, Outcome, Store};
use skiff_raft::{
    Action, Entry, Event, Index, Membership, MembershipChange, MembershipError, Message, Node,
    NodeId, Payload, ReadPurpose, ReadRequest, RoleKind, Status, Term, TransferError,
};
use skiff_wal::{GroupCommit, Notification, SnapshotFiles, Ticket};
use tokio::sync::{mpsc, oneshot, watch};

use crate::members;
use crate::metrics::Metrics;
use crate::transport::Transport;

mod pacer;
mod reads;
mod snapshot;
mod transfer;

pub use pacer::DEFAULT_CATCHUP_RATE;
use pacer::Pacer;
use reads::{ReadGate, ReadKind, Reads};
use snapshot::{SnapshotEvent, Snapshots};
pub use snapshot::{SnapshotOutcome, SnapshotPolicy};
use transfer::TransferWaiter;
pub use transfer::Transferred;

/// Inputs drained per wake-up at most, so a flood of one kind cannot starve the others or
/// delay the actions without bound.
const MAX_INPUTS_PER_BATCH: usize = 4096;

/// Why a client request could not be served.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// This node is not the leader; `leader` is the one it knows, with the client address it
    /// advertised, so the request can be forwarded.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
        /// That leader's client address, if known.
        leader_client_addr: Option<String>,
    },
    /// The write's entry was replaced by another leader's entry: it did not take effect.
    #[error("the leader changed before the write committed; it did not take effect")]
    Dropped,
    /// The request did not finish in time; a write may still take effect.
    #[error("the request timed out; a write may still take effect")]
    Timeout,
    /// The node cannot serve: it is shutting down or its disk failed.
    #[error("the node is unavailable: {0}")]
    Unavailable(String),
    /// The leader refused a membership change (never `NotLeader`: that is
    /// [`ServiceError::NotLeader`]).
    #[error("{0}")]
    Membership(MembershipError),
    /// The leader refused a leadership transfer (never `NotLeader`: that is
    /// [`ServiceError::NotLeader`]).
    #[error("{0}")]
    Transfer(TransferError),
    /// The leadership transfer to `target` did not complete within an election timeout (the
    /// target is down or cut off, or lost its election); the leader leads on.
    #[error("the leadership transfer to {target} did not complete within an election timeout")]
    TransferAborted {
        /// The node leadership was to be handed to.
        target: NodeId,
    },
}

/// A write applied by the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The log index of the write (the revision of the keys it set).
    pub index: Index,
    /// What the state machine did.
    pub outcome: Outcome,
}

/// A request from a client-facing task to the driver.
#[derive(Debug)]
enum Request {
    /// Propose an encoded command and answer when it is applied.
    Write {
        /// The encoded command.
        command: Bytes,
        /// The client of the command's session, if it has one.
        client: Option<u64>,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<Written, ServiceError>>,
    },
    /// Answer with the core's status.
    Status {
        /// Where the status goes.
        reply: oneshot::Sender<NodeStatus>,
    },
    /// Answer once a snapshot covers everything applied now (or at once if nothing is new).
    Snapshot {
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<SnapshotOutcome, ServiceError>>,
    },
    /// Change the membership and answer once the change is complete (see
    /// [`Handle::change_membership`]).
    ChangeMembership {
        /// The changes, all at once.
        changes: Vec<MembershipChange>,
        /// Where the configuration reached goes.
        reply: oneshot::Sender<Result<Membership, ServiceError>>,
    },
    /// Transfer leadership and answer once it completed or failed (see
    /// [`Handle::transfer_leadership`]).
    TransferLeadership {
        /// The voter to hand leadership to; `None`: the most up-to-date one.
        target: Option<NodeId>,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<Transferred, ServiceError>>,
    },
}

/// What the log's thread reports back to the driver.
#[derive(Debug)]
// Snapshot events are rare; boxing them would only add an allocation to each.
#[allow(clippy::large_enum_variant)]
enum StorageEvent {
    /// A group-commit notification.
    Notification(Notification),
    /// The result of a `ReadEntries`.
    Read(ReadRequest, skiff_wal::Result<Vec<skiff_raft::Entry>>),
    /// A snapshot task or the log's thread reports on a snapshot.
    Snapshot(SnapshotEvent),
}

/// The core's status with what the server adds to it.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    /// The core's status.
    pub core: Status,
    /// The leader's client address, if known.
    pub leader_client_addr: Option<String>,
    /// Every member of the configuration in force (voters, outgoing voters and learners).
    pub members: Vec<NodeId>,
    /// The configuration in force (also in `core`, kept here for readers of the server's view).
    pub membership: Membership,
    /// The client address of each member this node knows one for: its own, and each peer's
    /// from the latest `Hello` that peer sent (so a peer that never connected is missing).
    pub client_addrs: BTreeMap<NodeId, String>,
    /// The peer address of each member this node knows one for (its own, the address book's,
    /// `--peers`).
    pub peer_addrs: BTreeMap<NodeId, String>,
    /// The peers whose link this node has cut (fault injection, [`crate::faults`]).
    pub cut_links: BTreeSet<NodeId>,
    /// The target of the leadership transfer under way, if this node leads and is handing
    /// over.
    pub transfer_target: Option<NodeId>,
}

/// What a node is, for its status page: fixed for its lifetime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's id.
    pub id: NodeId,
    /// The cluster's id.
    pub cluster_id: u64,
    /// The address clients reach it at.
    pub client_addr: String,
    /// The address peers reach it at.
    pub peer_addr: String,
}

/// A handle for client-facing tasks: cheap to clone.
#[derive(Clone, Debug)]
pub struct Handle {
    /// What the node is.
    info: Arc<NodeInfo>,
    /// Requests to the driver (bounded: back-pressure on clients when it falls behind).
    requests: mpsc::Sender<Request>,
    /// Where linearizable reads wait, batched (`reads.rs`).
    read_gate: Arc<ReadGate>,
    /// The key-value store, written only by the driver.
    store: Arc<RwLock<Store>>,
    /// How long a request may take.
    timeout: Duration,
    /// Whether the driver is still running (false once it stopped).
    running: watch::Receiver<bool>,
    /// The data directory's snapshot files, served to followers fetching them.
    snapshot_files: SnapshotFiles,
}

impl Handle {
    /// Proposes `command` and waits until it is applied here.
    pub async fn write(&self, command: &Command) -> Result<Written, ServiceError> {
        let client = command.session.map(|session| session.client);
        let command = command.encode();
        self.ask(|reply| Request::Write { command, client, reply }).await?
    }

    /// Waits until the store may serve a linearizable read (ReadIndex confirmed and applied);
    /// returns the read index.
    /// On a follower the read index comes from the leader and the read is served here.
    pub async fn read_barrier(&self) -> Result<Index, ServiceError> {
        self.read(ReadKind::Index).await
    }

    /// As [`Handle::read_barrier`], but at a leader holding a lease (`--lease-reads`) without a
    /// heartbeat round: the read index is the commit index at once (Raft thesis §6.4.1,
    /// correct only under bounded clock drift). Where the core refuses a lease read (lease
    /// reads off, no lease yet, not the leader), it is an ordinary linearizable read.
    pub async fn lease_read_barrier(&self) -> Result<Index, ServiceError> {
        self.read(ReadKind::Lease).await
    }

    /// Joins the open batch of reads of `kind` and waits for its outcome.
    async fn read(&self, kind: ReadKind) -> Result<Index, ServiceError> {
        let batch = self.read_gate.join(kind);
        tokio::time::timeout(self.timeout, batch.outcome())
            .await
            .map_err(|_| ServiceError::Timeout)?
    }

    /// The node's status.
    pub async fn status(&self) -> Result<NodeStatus, ServiceError> {
        self.ask(|reply| Request::Status { reply }).await
    }

    /// Asks the leader to apply `changes` to the membership, all at once, and waits until the
    /// change is complete: its configuration entry applied here, and for a joint change the
    /// entry leaving joint consensus too. Answers the configuration then in force.
    pub async fn change_membership(
        &self,
        changes: Vec<MembershipChange>,
    ) -> Result<Membership, ServiceError> {
        self.ask(|reply| Request::ChangeMembership { changes, reply }).await?
    }

    /// Asks the leader to hand leadership to `target` (`None`: the most up-to-date voter) and
    /// waits, at most `within`, until a newer leader is known here or the core gave the
    /// transfer up (after an election timeout).
    pub async fn transfer_leadership(
        &self,
        target: Option<NodeId>,
        within: Duration,
    ) -> Result<Transferred, ServiceError> {
        self.ask_within(within, |reply| Request::TransferLeadership { target, reply }).await?
    }

    /// Takes a snapshot of everything applied so far and waits until it is durable (or learns
    /// that nothing is new). Snapshots of large stores take a while, so this waits up to
    /// [`SNAPSHOT_TIMEOUT`] or the request timeout, whichever is longer.
    pub async fn snapshot(&self) -> Result<SnapshotOutcome, ServiceError> {
        let timeout = self.timeout.max(SNAPSHOT_TIMEOUT);
        self.ask_within(timeout, |reply| Request::Snapshot { reply }).await?
    }

    /// The data directory's snapshot files.
    pub fn snapshot_files(&self) -> &SnapshotFiles {
        &self.snapshot_files
    }

    /// Runs `read` on the store as it is now (a stale read, or after `read_barrier`).
    pub fn read_store<R>(&self, read: impl FnOnce(&Store) -> R) -> R {
        let store = self.store.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        read(&store)
    }

    /// How long a request may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// What the node is.
    pub fn info(&self) -> &NodeInfo {
        &self.info
    }

    /// Whether the driver is running.
    pub fn is_running(&self) -> bool {
        *self.running.borrow()
    }

    /// Resolves once the driver has stopped (or is stopping).
    pub async fn stopped(&self) {
        let mut running = self.running.clone();
        let _ = running.wait_for(|running| !*running).await;
    }

    /// Sends a request and waits for its answer within the request timeout.
    async fn ask<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, ServiceError> {
        self.ask_within(self.timeout, request).await
    }

    /// Sends a request and waits for its answer within `timeout`.
    async fn ask_within<T>(
        &self,
        timeout: Duration,
        request: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, ServiceError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || ServiceError::Unavailable("the node has stopped".into());
        let exchange = async {
            self.requests.send(request(reply)).await.map_err(|_| stopped())?;
            answer.await.map_err(|_| stopped())
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| ServiceError::Timeout)?
    }
}

/// A client write waiting for its entry to be applied.
#[derive(Debug)]
struct WriteWaiter {
    /// The term the entry was proposed in: an applied entry of another term is not this write.
    term: Term,
    /// The client of the write's session, if any: a retried write reports the index its first
    /// attempt was applied at.
    client: Option<u64>,
    /// Where the outcome goes.
    reply: oneshot::Sender<Result<Written, ServiceError>>,
}

/// A membership change waiting to complete.
#[derive(Debug)]
struct MembershipWaiter {
    /// The index of its configuration entry.
    index: Index,
    /// The term it was appended in: an entry of another term there is not this change.
    term: Term,
    /// Where the configuration reached goes.
    reply: oneshot::Sender<Result<Membership, ServiceError>>,
}

/// Fails the membership change waiting on `entry`'s index if the entry there is another
/// leader's: that change was truncated away and did not take effect.
fn drop_superseded_membership_waiter(
    waiters: &mut Vec<MembershipWaiter>,
    entry: &skiff_raft::Entry,
) {
    let (dropped, kept): (Vec<_>, Vec<_>) = std::mem::take(waiters)
        .into_iter()
        .partition(|waiter| waiter.index == entry.index && waiter.term != entry.term);
    *waiters = kept;
    for waiter in dropped {
        let _ = waiter.reply.send(Err(ServiceError::Dropped));
    }
}

/// Sleeps until `at`, or for ever without it: a `select!` branch with nothing to wait for.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// The driver task's state.
pub struct Runtime {
    /// The protocol core.
    node: Node,
    /// This node's client address (for `leader_client_addr` when leading).
    client_addr: String,
    /// This node's peer address.
    peer_addr: String,
    /// The peer addresses given at start (`--peers`).
    flag_addresses: BTreeMap<NodeId, SocketAddr>,
    /// The address book of the store (`members.rs`), as of the last change of it applied.
    recorded_addresses: BTreeMap<NodeId, SocketAddr>,
    /// The index of the latest configuration entry (as of the latest `MembershipChanged`).
    latest_configuration: Index,
    /// Membership changes waiting to complete.
    membership_waiters: Vec<MembershipWaiter>,
    /// Leadership transfers waiting to complete (`transfer.rs`).
    transfer_waiters: Vec<TransferWaiter>,
    /// The write-ahead log on its group-commit thread.
    wal: GroupCommit,
    /// The peer transport.
    transport: Transport,
    /// The key-value store.
    store: Arc<RwLock<Store>>,
    /// The metrics.
    metrics: Arc<Metrics>,
    /// How often the core ticks.
    tick: Duration,
    /// Requests from clients.
    requests: mpsc::Receiver<Request>,
    /// Messages from peers.
    inbound: mpsc::Receiver<Message>,
    /// Reports from the log's thread.
    storage: mpsc::UnboundedReceiver<StorageEvent>,
    /// A sender of reports, handed to the log's thread with each read.
    storage_sender: mpsc::UnboundedSender<StorageEvent>,
    /// The ticket of the newest hard-state write not yet durable, if any.
    pending_hard_state: Option<Ticket>,
    /// Messages held until the hard-state write of the ticket is durable (contract item 1).
    held: VecDeque<(Ticket, Message)>,
    /// The highest durable-commit index saved to the log.
    saved_commit: Index,
    /// Client writes by index.
    writes: BTreeMap<Index, WriteWaiter>,
    /// Where clients' linearizable reads wait, batched.
    read_gate: Arc<ReadGate>,
    /// The batches of reads in the core and waiting to be applied.
    reads: Reads,
    /// The highest index applied to the store.
    applied: Index,
    /// Tells handles the driver stopped.
    running: watch::Sender<bool>,
    /// Snapshots taken, fetched and installed (`snapshot.rs`).
    snapshots: Snapshots,
    /// The catch-up's token bucket, and the reads for followers it holds (`pacer.rs`).
    pacer: Pacer<(ReadRequest, Vec<Entry>)>,
}

/// What the runtime is built from.
pub struct Parts {
    /// The core, restored from the log's recovery.
    pub node: Node,
    /// The store, restored from the log's snapshot (empty without one).
    pub store: Store,
    /// The write-ahead log, opened and recovered; the runtime starts its group commit.
    pub wal: skiff_wal::Wal,
    /// The transport, started.
    pub transport: Transport,
    /// The receiving end of the transport's inbound messages.
    pub inbound: mpsc::Receiver<Message>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The tick interval.
    pub tick: Duration,
    /// How long a client request may take.
    pub request_timeout: Duration,
    /// What the node is.
    pub info: NodeInfo,
    /// The peer addresses given at start (`--peers`), this node's included or not.
    pub peer_addrs: BTreeMap<NodeId, SocketAddr>,
    /// When to take snapshots.
    pub snapshots: SnapshotPolicy,
    /// The election timeout (the core's, as a duration).
    pub election_timeout: Duration,
    /// The bytes of entries per second the leader reads from its log for followers catching
    /// up (`pacer.rs`); 0: as fast as it can.
    pub catchup_rate: u64,
}

/// The shortest time a client waits for a snapshot it asked for.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(60);

impl Runtime {
    /// Builds the runtime and the handle clients use; call [`Runtime::run`] to start it.
    pub fn new(parts: Parts) -> Result<(Runtime, Handle), skiff_wal::Error> {
        let snapshot_files = parts.wal.snapshot_files();
        // The state machine starts where its snapshot left it, and the core hands out nothing
        // at or below that (contract item 12).
        let applied = Index(parts.store.applied());
        // The size of the latest snapshot, which the snapshot policy weighs the log against.
        // The store was restored from that file a moment ago; should it fail to open now, 0
        // only means that the policy holds nothing back until the next snapshot.
        let latest_snapshot_bytes = parts
            .node
            .snapshot()
            .and_then(|meta| snapshot_files.open(meta.index).ok().flatten())
            .map_or(0, |(_, reader)| reader.data_len());
        let (storage_sender, storage) = mpsc::unbounded_channel();
        let notifications = storage_sender.clone();
        let wal = GroupCommit::start(parts.wal, move |notification| {
            // The driver may have stopped; then nobody needs the news.
            let _ = notifications.send(StorageEvent::Notification(notification));
        })?;
        let (request_sender, requests) = mpsc::channel(16 * 1024);
        let (running, running_receiver) = watch::channel(true);
        let recorded_addresses = members::addresses_in(&parts.store);
        let store = Arc::new(RwLock::new(parts.store));
        let read_gate = Arc::new(ReadGate::new());
        let handle = Handle {
            info: Arc::new(parts.info.clone()),
            requests: request_sender,
            read_gate: read_gate.clone(),
            store: store.clone(),
            timeout: parts.request_timeout,
            running: running_receiver,
            snapshot_files: snapshot_files.clone(),
        };
        let runtime = Runtime {
            node: parts.node,
            client_addr: parts.info.client_addr,
            peer_addr: parts.info.peer_addr,
            flag_addresses: parts.peer_addrs,
            recorded_addresses,
            latest_configuration: Index(0),
            membership_waiters: Vec::new(),
            transfer_waiters: Vec::new(),
            wal,
            transport: parts.transport,
            store,
            metrics: parts.metrics,
            tick: parts.tick,
            requests,
            inbound: parts.inbound,
            storage,
            storage_sender,
            pending_hard_state: None,
            held: VecDeque::new(),
            saved_commit: Index(0),
            writes: BTreeMap::new(),
            read_gate,
            reads: Reads::new(parts.election_timeout * 2),
            applied,
            running,
            snapshots: Snapshots::new(parts.snapshots, snapshot_files, latest_snapshot_bytes),
            pacer: Pacer::new(parts.catchup_rate),
        };
        Ok((runtime, handle))
    }

    /// Runs the driver until `shutdown` resolves (a clean stop: the log is flushed and closed)
    /// or the log fails (the error is returned).
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), skiff_wal::Error> {
        // The log may have changed the configuration since `--peers` was written.
        self.reconcile_peers();
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let result = loop {
            let next_release = self.pacer.next_release();
            let woken = tokio::select! {
                biased;
                () = &mut shutdown => break Ok(()),
                Some(event) = self.storage.recv() => self.on_storage(event),
                () = sleep_until(next_release) => {
                    self.release_paced_reads();
                    Ok(())
                }
                Some(message) = self.inbound.recv() => {
                    self.on_message(message);
                    Ok(())
                }
                Some(request) = self.requests.recv() => {
                    self.on_request(request);
                    // Under load (other writes in flight), let the tasks runnable now go first:
                    // other clients' handlers, about to send their requests, join this batch.
                    // Tokio runs a task right after the task that woke it, so without this the
                    // driver took 1.5 requests per round at 256 clients (12 with it) and paid
                    // its whole round for each. A lone write goes at once.
                    if self.writes.len() > 1 {
                        tokio::task::yield_now().await;
                    }
                    Ok(())
                }
                _ = ticker.tick() => {
                    self.node.tick();
                    self.expire_reads();
                    Ok(())
                }
                () = self.read_gate.wake.notified() => {
                    // Reads are waiting to be submitted: let the tasks runnable now go first,
                    // so that the reads they are about to ask join the same batch.
                    tokio::task::yield_now().await;
                    Ok(())
                }
            };
            if let Err(error) = woken.and_then(|()| self.drain()).and_then(|()| self.act()) {
                break Err(error);
            }
        };
        self.stop(result.as_ref().err()).await;
        result
    }

    /// Handles every input already waiting, up to the batch bound, and the paced reads due.
    fn drain(&mut self) -> Result<(), skiff_wal::Error> {
        // Under a flood of inputs the loop may not get to the pacer's branch for a while (the
        // select is biased); the reads due go now rather than after the flood.
        self.release_paced_reads();
        for _ in 0..MAX_INPUTS_PER_BATCH {
            if let Ok(event) = self.storage.try_recv() {
                self.on_storage(event)?;
            } else if let Ok(message) = self.inbound.try_recv() {
                self.on_message(message);
            } else if let Ok(request) = self.requests.try_recv() {
                self.on_request(request);
            } else {
                break;
            }
        }
        Ok(())
    }

    /// Steps a peer's message into the core; a bad one is logged and dropped.
    fn on_message(&mut self, message: Message) {
        let from = message.from;
        if let Err(error) = self.node.step(message) {
            tracing::warn!(%from, %error, "refused a message from a peer");
        }
    }

    /// Handles a client request.
    fn on_request(&mut self, request: Request) {
        match request {
            Request::Write { command, client, reply } => match self.node.propose(command) {
                Ok(index) => {
                    let term = self.node.term();
                    let waiter = WriteWaiter { term, client, reply };
                    if let Some(replaced) = self.writes.insert(index, waiter) {
                        // An earlier proposal at this index was superseded by a leader change
                        // and never applied: it did not take effect.
                        self.metrics.proposals_failed.inc();
                        let _ = replaced.reply.send(Err(ServiceError::Dropped));
                    }
                    self.metrics.proposals_pending.set(self.writes.len() as i64);
                }
                Err(skiff_raft::ProposeError::NotLeader { leader, .. }) => {
                    // Not a failure: the HTTP layer forwards the write to the leader.
                    let _ = reply.send(Err(self.not_leader(leader)));
                }
                Err(skiff_raft::ProposeError::TransferInProgress { .. }) => {
                    // Leadership is moving: no leader to forward to yet, the client retries.
                    let _ = reply.send(Err(self.not_leader(None)));
                }
            },
            Request::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Request::Snapshot { reply } => self.on_snapshot_request(reply),
            Request::ChangeMembership { changes, reply } => {
                match self.node.change_membership(&changes) {
                    Ok(index) => {
                        tracing::info!(?changes, %index, "membership change proposed");
                        let term = self.node.term();
                        self.membership_waiters.push(MembershipWaiter { index, term, reply });
                    }
                    Err(MembershipError::NotLeader { leader, .. }) => {
                        let _ = reply.send(Err(self.not_leader(leader)));
                    }
                    Err(error) => {
                        let _ = reply.send(Err(ServiceError::Membership(error)));
                    }
                }
            }
            Request::TransferLeadership { target, reply } => {
                self.on_transfer_request(target, reply);
            }
        }
    }

    /// The node's status, with what the server adds to the core's.
    fn status(&self) -> NodeStatus {
        let core = self.node.status();
        let leader_client_addr = core.leader.and_then(|leader| self.client_addr_of(leader));
        let membership = core.membership.clone();
        let members: Vec<NodeId> = membership.members().into_iter().collect();
        let client_addrs = members
            .iter()
            .filter_map(|member| Some((*member, self.client_addr_of(*member)?)))
            .collect();
        let mut peer_addrs: BTreeMap<NodeId, String> = members
            .iter()
            .filter_map(|member| {
                let address =
                    self.recorded_addresses.get(member).or(self.flag_addresses.get(member))?;
                Some((*member, address.to_string()))
            })
            .collect();
        peer_addrs.insert(self.node.id(), self.peer_addr.clone());
        let cut_links = self.transport.cut_links();
        let transfer_target = self.node.transfer_target();
        NodeStatus {
            core,
            leader_client_addr,
            members,
            membership,
            client_addrs,
            peer_addrs,
            cut_links,
            transfer_target,
        }
    }

    /// Makes the transport talk to exactly the members of the configuration in force, at their
    /// addresses (`members.rs`): dials new members, disconnects removed ones.
    fn reconcile_peers(&mut self) {
        let wanted = members::wanted_peers(
            self.node.id(),
            self.node.membership(),
            self.node.leader(),
            &self.recorded_addresses,
            &self.flag_addresses,
        );
        for (id, _) in self.transport.peers() {
            if !wanted.contains_key(&id) {
                self.transport.remove_peer(id);
            }
        }
        for (id, address) in wanted {
            if let Err(error) = self.transport.add_peer(id, address) {
                tracing::warn!(%error, "cannot add a peer");
            }
        }
        for member in self.node.membership().members() {
            if member != self.node.id() && !self.transport.peers().contains_key(&member) {
                tracing::warn!(
                    %member,
                    "no peer address known for a member yet (its address record is not applied)"
                );
            }
        }
    }

    /// Re-reads the address book from the store and reconciles the transport if it changed.
    fn reload_addresses(&mut self) {
        let recorded = {
            let store = self.store.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            members::addresses_in(&store)
        };
        if recorded != self.recorded_addresses {
            self.recorded_addresses = recorded;
            self.reconcile_peers();
        }
    }

    /// Answers the membership changes that are complete: their entry applied, and no joint
    /// configuration or later configuration entry still waiting to be applied.
    fn answer_membership_waiters(&mut self) {
        if self.membership_waiters.is_empty() {
            return;
        }
        let settled =
            !self.node.membership().is_joint() && self.applied >= self.latest_configuration;
        let applied = self.applied;
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.membership_waiters)
            .into_iter()
            .partition(|waiter| settled && waiter.index <= applied);
        self.membership_waiters = waiting;
        for waiter in done {
            let _ = waiter.reply.send(Ok(self.node.membership().clone()));
        }
    }

    /// The client address of `node`, if known.
    fn client_addr_of(&self, node: NodeId) -> Option<String> {
        if node == self.node.id() {
            Some(self.client_addr.clone())
        } else {
            self.transport.client_addr(node)
        }
    }

    /// The error for a request that only the leader can serve.
    fn not_leader(&self, leader: Option<NodeId>) -> ServiceError {
        ServiceError::NotLeader {
            leader,
            leader_client_addr: leader.and_then(|leader| self.client_addr_of(leader)),
        }
    }

    /// Handles a report from the log's thread.
    fn on_storage(&mut self, event: StorageEvent) -> Result<(), skiff_wal::Error> {
        match event {
            StorageEvent::Notification(Notification::Durable {
                through,
                index,
                term,
                sync_duration,
            }) => {
                self.metrics.wal_fsync_duration.observe(sync_duration.as_secs_f64());
                if index > Index(0) {
                    self.node.persisted(index, term);
                }
                if self.pending_hard_state.is_some_and(|ticket| ticket <= through) {
                    self.pending_hard_state = None;
                }
                while self.held.front().is_some_and(|(ticket, _)| *ticket <= through) {
                    let (_, message) = self.held.pop_front().expect("checked just above");
                    self.transport.send(message);
                }
                Ok(())
            }
            StorageEvent::Notification(Notification::Failed(error)) => Err(error),
            StorageEvent::Read(_, Err(skiff_wal::Error::Compacted { .. })) => {
                // A read queued behind a compaction that reached it: the core forgot it when it
                // was told of the compaction, and wants no answer (contract item 10).
                Ok(())
            }
            StorageEvent::Read(request, result) => {
                let entries = result?;
                if let ReadPurpose::Replicate { .. } = request.purpose {
                    let bytes = entries.iter().map(Entry::size).sum();
                    self.metrics.catchup_read_bytes.inc_by(bytes);
                    // Held, if the bucket is in debt: `release_paced_reads` hands it over.
                    let now = Instant::now();
                    if let Some((request, entries)) =
                        self.pacer.admit((request, entries), bytes, now)
                    {
                        self.entries_read(request, entries);
                    }
                } else {
                    self.entries_read(request, entries);
                }
                Ok(())
            }
            StorageEvent::Snapshot(event) => self.on_snapshot_event(event),
        }
    }

    /// Hands the reads for followers that the pacer held to the core, once their time came.
    fn release_paced_reads(&mut self) {
        if self.pacer.is_idle() {
            return;
        }
        for released in self.pacer.release(Instant::now()) {
            self.metrics.catchup_paced_seconds.inc_by(released.held_for.as_secs_f64());
            let (request, entries) = released.item;
            self.entries_read(request, entries);
        }
    }

    /// Hands entries read from the log to the core (contract item 4).
    fn entries_read(&mut self, request: ReadRequest, entries: Vec<Entry>) {
        // A read for a follower answered after this node stopped leading is the core's to
        // drop (contract item 4): the log may have been truncated since.
        if let Err(error) = self.node.entries_read(request, entries) {
            // The log handed back something the core did not ask for: a bug in the log or
            // here, and the log cannot be trusted.
            panic!("the log answered a read wrongly: {error}");
        }
    }

    /// Takes the core's actions and performs them.
    fn act(&mut self) -> Result<(), skiff_wal::Error> {
        self.submit_reads();
        // A follower's write made right here is durable at once, and the core has the
        // acknowledgement ready: send it now, not at the next wake-up.
        loop {
            let actions = self.node.take_actions();
            if !self.perform_all(actions)? {
                break;
            }
        }
        self.maybe_snapshot();
        // A batch of reads answered just now leaves the core free for the next one. The driver
        // comes back for it after the tasks runnable now, among them the readers just
        // answered, so that the reads they and other clients send meanwhile join it as well.
        if self.reads_to_submit() {
            self.read_gate.wake.notify_one();
        }
        Ok(())
    }

    /// Performs the core's actions; says whether entries were made durable right here (then
    /// the core has new actions).
    ///
    /// A leader hands its entries to the log's thread, so that its fsync overlaps the `Append`s
    /// it sends (contract item 2). Any other node writes them here, after every other action of
    /// the batch, when the log's thread is idle (`GroupCommit::write_now`): the two thread
    /// wake-ups that handing over and hearing back cost are on the critical path of every
    /// commit its acknowledgement makes, and the driver has nothing better to do meanwhile than
    /// let messages queue, which the next wake-up then takes in one batch.
    fn perform_all(&mut self, actions: Vec<Action>) -> Result<bool, skiff_wal::Error> {
        let mut entries_here = None;
        for action in actions {
            match action {
                Action::PersistEntries(entries) if self.node.role() != RoleKind::Leader => {
                    entries_here = Some(entries);
                }
                action => self.perform(action)?,
            }
        }
        let Some(entries) = entries_here else { return Ok(false) };
        let commit = self.commit_to_save();
        match self.wal.write_now(commit, &entries) {
            Some(written) => {
                let written = written?;
                if let Some(commit) = commit {
                    self.saved_commit = commit;
                }
                self.metrics.wal_fsync_duration.observe(written.sync_duration.as_secs_f64());
                self.node.persisted(written.index, written.term);
                Ok(true)
            }
            None => {
                self.perform(Action::PersistEntries(entries))?;
                Ok(false)
            }
        }
    }

    /// The commit index to save with the next entries written, if it moved since the last
    /// one saved (contract: always the core's durable commit, never the bare commit index).
    fn commit_to_save(&self) -> Option<Index> {
        let commit = self.node.durable_commit();
        (commit > self.saved_commit).then_some(commit)
    }

    /// Performs one of the core's actions.
    fn perform(&mut self, action: Action) -> Result<(), skiff_wal::Error> {
        match action {
            Action::PersistHardState(hard_state) => {
                self.pending_hard_state = Some(self.wal.save_hard_state(hard_state)?);
            }
            Action::PersistEntries(entries) => {
                // The commit index rides on the fsync of the entries.
                let commit = self.commit_to_save();
                self.wal.append(commit, entries)?;
                if let Some(commit) = commit {
                    self.saved_commit = commit;
                }
            }
            Action::Send(message) => match self.pending_hard_state {
                Some(ticket) => self.held.push_back((ticket, message)),
                None => self.transport.send(message),
            },
            Action::ReadEntries(request) => {
                let max_bytes = match request.purpose {
                    // A catch-up reads a chunk at a time (`pacer.rs`); the core takes any
                    // non-empty prefix of what it asked for.
                    ReadPurpose::Replicate { .. } => self.pacer.max_bytes(request.max_bytes),
                    ReadPurpose::Apply => request.max_bytes,
                };
                let reports = self.storage_sender.clone();
                self.wal.read(request.low, request.high, max_bytes, move |result| {
                    let _ = reports.send(StorageEvent::Read(request, result));
                })?;
            }
            Action::Apply(entries) => self.apply(entries),
            Action::FetchSnapshot { from, meta } => self.on_fetch_snapshot(from, meta),
            Action::ReadReady { index, contexts } => self.on_read_ready(index, &contexts),
            Action::ReadFailed { contexts } => self.on_read_failed(&contexts),
            Action::Event(event) => self.on_event(event),
        }
        Ok(())
    }

    /// Applies committed entries to the store and answers the writes and reads waiting on them.
    fn apply(&mut self, entries: Vec<skiff_raft::Entry>) {
        let started = Instant::now();
        let Some(last) = entries.last().map(|entry| entry.index) else { return };
        self.snapshots.applied(entries.iter().map(skiff_raft::Entry::size).sum());
        let mut addresses_touched = false;
        {
            let mut store = self.store.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            for entry in entries {
                let outcome = match &entry.payload {
                    Payload::Noop => {
                        store.skip(entry.index.0);
                        None
                    }
                    Payload::Membership(_) => {
                        store.skip(entry.index.0);
                        drop_superseded_membership_waiter(&mut self.membership_waiters, &entry);
                        None
                    }
                    Payload::Command(command) => {
                        addresses_touched |= members::may_be_address_record(command);
                        Some(store.apply(entry.index.0, command))
                    }
                };
                self.metrics.proposals_applied.inc();
                let Some(waiter) = self.writes.remove(&entry.index) else { continue };
                let answer = match outcome {
                    Some(outcome) if waiter.term == entry.term => {
                        let first_applied = waiter
                            .client
                            .and_then(|client| store.session(client))
                            .map(|session| Index(session.applied_at));
                        Ok(Written { index: first_applied.unwrap_or(entry.index), outcome })
                    }
                    _ => {
                        self.metrics.proposals_failed.inc();
                        Err(ServiceError::Dropped)
                    }
                };
                let _ = waiter.reply.send(answer);
            }
        }
        self.applied = last;
        self.metrics.apply_duration.observe(started.elapsed().as_secs_f64());
        self.metrics.applied_index.set(last.0 as i64);
        self.metrics.proposals_pending.set(self.writes.len() as i64);
        self.release_ready_reads();
        if addresses_touched {
            self.reload_addresses();
        }
        self.answer_membership_waiters();
    }

    /// Records an event in the metrics and the log.
    fn on_event(&mut self, event: Event) {
        match event {
            Event::RoleChanged { role, term } => {
                tracing::info!(%role, %term, "role changed");
                self.metrics.is_leader.set(i64::from(role == RoleKind::Leader));
            }
            Event::TermChanged { term } => {
                self.metrics.term.set(term.0 as i64);
            }
            Event::LeaderChanged { leader, term } => {
                tracing::info!(leader = ?leader.map(|id| id.0), %term, "leader changed");
                self.metrics.has_leader.set(i64::from(leader.is_some()));
                if let Some(leader) = leader {
                    self.metrics.leader_changes_seen.inc();
                    self.transfer_leader_changed(leader, term);
                }
                // The leader is talked to even when it is not a member (`members.rs`).
                self.reconcile_peers();
            }
            Event::CommitAdvanced { commit } => {
                let previous = self.metrics.commit_index.set(commit.0 as i64);
                self.metrics.proposals_committed.inc_by((commit.0 as i64 - previous).max(0) as u64);
            }
            Event::MembershipChanged { index, membership } => {
                tracing::info!(%index, %membership, "membership changed");
                self.latest_configuration = index;
                self.reconcile_peers();
            }
            Event::TransferAborted { target } => self.transfer_aborted(target),
        }
    }

    /// Stops: answers every waiting client, flushes the log (unless it failed).
    async fn stop(mut self, failure: Option<&skiff_wal::Error>) {
        let _ = self.running.send(false);
        let reason = match failure {
            Some(error) => format!("the write-ahead log failed: {error}"),
            None => "the node is shutting down".to_string(),
        };
        self.stop_reads(&ServiceError::Unavailable(reason.clone()));
        let unavailable = || Err(ServiceError::Unavailable(reason.clone()));
        for waiter in self.writes.into_values() {
            let _ = waiter.reply.send(unavailable());
        }
        for waiter in self.membership_waiters {
            let _ = waiter.reply.send(Err(ServiceError::Unavailable(reason.clone())));
        }
        // Their handles learn that the node stopped.
        drop(self.transfer_waiters);
        self.snapshots.stop(&reason);
        self.transport.shutdown().await;
        if failure.is_none() {
            // Flushes and fsyncs what was submitted; on the writer thread, so off the runtime.
            let wal = self.wal;
            let _ = tokio::task::spawn_blocking(move || drop(wal.stop())).await;
        }
    }
}
