//! # skiff-server: the runtime that makes the core a server
//!
//! The core (`skiff-raft`) decides; this crate does. It drives one [`skiff_raft::Node`] from a
//! tokio task ([`runtime`]), persists through `skiff-wal`'s group commit, applies committed
//! entries to the `skiff-kv` store, talks to peers over TCP ([`transport`]), and serves clients
//! over HTTP/JSON ([`http`], contract in docs/http-api.md) with Prometheus metrics
//! ([`metrics`]) and a live web page of the cluster ([`dashboard`]). [`server`] puts the pieces
//! together.
//!
//! ## The path of a write
//! An HTTP handler validates the request and builds a `skiff_kv::Command`; the driver proposes
//! it; the core hands back a batch of actions: the entry goes to the log's writer thread while
//! `Append`s to the followers go to their transport queues (the leader's write overlaps
//! replication); the followers persist and answer; the core commits; the driver applies the
//! entry to the store and answers the waiting handler. Every hop batches: one wake-up of the
//! driver takes every input waiting, one fsync covers every write queued behind it, one frame
//! carries every message queued for a peer.
//!
//! ## Snapshots
//! Every node snapshots its own store every `--snapshot-entries` applied entries or
//! `--snapshot-log-bytes` of them (and on `POST /v1/snapshot`) and compacts its log behind the
//! snapshot, keeping `--snapshot-catchup-entries` for followers a little behind, so disk use
//! stays bounded and a restart replays only the log after the snapshot. A follower that needs
//! entries its leader compacted away fetches the leader's snapshot file over HTTP, chunk by
//! chunk, resumable and checksummed end to end ([`snapshot`]), and installs it atomically. The driver's side of it
//! (when to take one, compaction, installing) is in `runtime/snapshot.rs`.
//!
//! ## Catch-up
//! A follower behind by more than the leader's in-memory tail is fed from the leader's log on
//! disk, a chunk per read; the driver paces those reads with a token bucket of `--catchup-rate`
//! bytes per second for the whole node (`runtime/pacer.rs`), so a follower far behind cannot
//! take the leader's CPU from its clients.
//!
//! ## Threads
//! The tokio runtime runs the driver, the HTTP server and the transport's tasks. The log writes
//! and fsyncs on its own thread (never blocking the runtime on a disk). The store is behind a
//! read-write lock that only the driver writes, so stale reads never wait for the driver.
//! Snapshots are serialized, fetched and restored on blocking threads; only their last steps
//! (a rename, a log reset) run on the log's thread, and swapping the store on the driver.
//!
//! ## Membership
//! `POST /v1/members` asks the core for a change (`Handle::change_membership`) and answers once
//! it is complete; a new member's peer address is committed first as an address record in the
//! store, so every node learns it from the log or a snapshot ([`members`]), and the driver keeps
//! the transport's peers in step with the configuration in force.
//!
//! ## Leadership transfer
//! `POST /v1/leader/transfer` asks the core to hand leadership over and answers once the new
//! leader is known (`runtime/transfer.rs`); a leader stopped by SIGTERM or Ctrl-C does the same
//! before it exits (`Server::run`), so a restart of the leader costs no election timeout.
//!
//! ## Reads
//! Linearizable reads go through ReadIndex on the leader, and on a follower through its leader
//! (`Node::forward_read_index`), then are served from the local store once it has applied the
//! read index; `consistency=lease` uses the leader's lease when `--lease-reads` is on
//! (`runtime.rs`). Stale reads take the store's lock and nothing else.
//!
//! ## Left out for now
//! TLS and authentication. Lease reads at followers (a follower's `consistency=lease` read is
//! an ordinary follower read). Snapshots are whole-store copies:
//! taking one clones the store's map (pointers, not bytes) and holds the driver for that long,
//! and installing one holds the old and the new store in memory together; an incremental or
//! copy-on-write store would avoid both.

pub mod dashboard;
pub mod faults;
pub mod http;
pub mod members;
pub mod metrics;
pub mod runtime;
pub mod server;
pub mod snapshot;
pub mod transport;

pub use runtime::{
    DEFAULT_CATCHUP_RATE, Handle, NodeInfo, NodeStatus, ServiceError, SnapshotOutcome,
    SnapshotPolicy, Transferred, Written,
};
pub use server::{Server, ServerConfig, cluster_id};
