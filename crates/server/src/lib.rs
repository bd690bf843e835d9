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
//! ## Threads
//! The tokio runtime runs the driver, the HTTP server and the transport's tasks. The log writes
//! and fsyncs on its own thread (never blocking the runtime on a disk). The store is behind a
//! read-write lock that only the driver writes, so stale reads never wait for the driver.
//!
//! ## Left out for now
//! Snapshots and log compaction (the store has its snapshot entry points), membership changes,
//! lease reads, TLS and authentication.

pub mod dashboard;
pub mod http;
pub mod metrics;
pub mod runtime;
pub mod server;
pub mod transport;

pub use runtime::{Handle, NodeInfo, NodeStatus, ServiceError, Written};
pub use server::{Server, ServerConfig, cluster_id};
