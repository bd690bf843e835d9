//! # skiff-kv: the replicated key-value state machine
//!
//! Raft replicates a log; this crate is what the log means. Every node of a skiff cluster
//! applies the same committed entries, in the same order, to its own [`Store`], and because
//! applying is a pure function of the store and the entry, every node passes through the same
//! sequence of states. That is the State Machine Safety property of Raft (§5.4.3, Figure 3)
//! seen from the other side: Raft promises that no two nodes apply different commands at an
//! index; this crate promises that the same commands give the same state.
//!
//! ## The story in files
//! - `command.rs`: [`Command`], what a client asks for ([`Op`]: put, delete, compare-and-swap,
//!   optionally under a [`Session`]), and its versioned binary encoding, the bytes a log entry
//!   carries. Read this first.
//! - `store.rs`: [`Store`], the map of keys to [`Value`]s, [`Store::apply`] and its
//!   [`Outcome`]s, reads and scans.
//! - `session.rs`: client sessions, which turn the log's at-least-once delivery of retried
//!   writes into exactly-once application (Raft thesis §6.3), and their bound.
//! - `snapshot.rs`: the checksummed snapshot format, [`Store::write_snapshot`] and
//!   [`Store::restore`], for log compaction and for catching up a node (Raft §7).
//!
//! ## Invariants
//! - **Determinism**: the state after applying entries 1..=i depends on nothing but their
//!   bytes. Maps are ordered (`imbl::OrdMap`, a persistent B-tree: no hash-order iteration),
//!   there is no clock and no randomness, and even an entry that does not decode has a
//!   deterministic effect (it is skipped with [`Outcome::Invalid`] on every node alike).
//!   Session eviction is ordered by log index, which every node sees identically.
//! - **Entries are applied once, in order**: [`Store::apply`] and [`Store::skip`] assert that
//!   the index is above [`Store::applied`]; going backwards would mean the driver applied an
//!   entry twice or out of order, a bug that must stop the node rather than fork its state.
//! - **Writes are applied at most once per client session**: a retried write returns the first
//!   attempt's outcome and changes nothing; see `session.rs` for the bound on this promise.
//! - **Untrusted bytes never panic**: commands come from clients (through the log) and
//!   snapshots from disk or from the network. Decoding either is strict, checks every length
//!   against its limit before allocating, and reports damage as an error.
//! - A [`Value`]'s `revision` is the log index of the write that set it: revisions of a key only
//!   grow, and no revision exceeds [`Store::applied`].
//!
//! ## What is left out
//! - Reads do not go through the store's log: [`Store::get`] and [`Store::scan`] read the
//!   state as applied so far. Linearizable reads are the driver's job (ReadIndex, Raft thesis
//!   §6.4): wait until the store has applied the read index, then read.
//! - Multi-key transactions, leases and watches.
//! - Time-based session expiry (the thesis's §6.3 expires sessions by timestamps the leader
//!   puts in the log). Sessions here are bounded by count instead; see `session.rs`.
//! - Incremental snapshots: a snapshot is the whole state, written as one stream.

mod command;
mod key;
mod session;
mod snapshot;
mod store;

pub use command::{COMMAND_FORMAT_VERSION, Command, DecodeError, Op, Session};
pub use session::{DEFAULT_MAX_SESSIONS, SessionRecord};
pub use snapshot::{SNAPSHOT_FORMAT_VERSION, SNAPSHOT_MAGIC, SnapshotError};
pub use store::{Outcome, Store, Value};

/// The longest key a command may carry, in bytes. Keys are held in memory, returned by scans
/// and written to every snapshot; the HTTP API refuses longer ones with `413 too_large`.
pub const MAX_KEY_BYTES: usize = 4096;

/// The largest value a command may carry, in bytes (1 MiB). A value travels in a log entry, so
/// it is bounded well below the write-ahead log's largest record.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
