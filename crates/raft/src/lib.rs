//! # skiff-raft: the Raft protocol core
//!
//! Raft (Ongaro and Ousterhout, "In Search of an Understandable Consensus Algorithm", 2014, and
//! Ongaro's thesis, 2014) keeps a log identical on a cluster of nodes, so that each node can
//! apply the same commands in the same order to its own copy of a state machine. A **leader**,
//! elected for a **term** by a **quorum** (a majority of voters), accepts commands, appends them
//! to its log and replicates them to **followers**; once a quorum holds an entry of the leader's
//! term durably, the entry and every entry before it are **committed** and may be applied. If the
//! leader is lost, a follower whose **election timeout** fires campaigns for the next term.
//!
//! This crate is the protocol and nothing else: no I/O, no clock, no threads, no async, no
//! unseeded randomness. A [`Node`] takes inputs — [`Node::tick`], [`Node::step`] (a message),
//! [`Node::propose`], [`Node::read_index`] (and [`Node::forward_read_index`],
//! [`Node::lease_read`]), [`Node::change_membership`],
//! [`Node::transfer_leadership`], and the driver's reports [`Node::persisted`],
//! [`Node::entries_read`], [`Node::snapshot_taken`], [`Node::compacted`],
//! [`Node::snapshot_installed`] and [`Node::snapshot_failed`] — and answers with a batch of
//! [`Action`]s from [`Node::take_actions`]. The same core is driven
//! by the simulator (crates/sim) on a simulated network and disk, and by the server
//! (crates/server) on TCP and files; neither re-implements any protocol logic. One seed and one
//! sequence of inputs always produce the same actions.
//!
//! ## The story in files
//! - `node.rs`: state, inputs, the term rules of Raft §5.1, role transitions, the action batch.
//! - `election.rs`: timeouts, pre-vote (thesis §9.6), votes (§5.2, §5.4.1), check-quorum.
//! - `replication.rs`: `Append`s and their answers (§5.3), fast backtracking, commit (§5.4.2).
//! - `progress.rs`: the leader's view of each follower: probe / replicate, the inflight window.
//! - `log.rs`: the core's view of the log: term runs, the tail cache, durable and commit indexes.
//! - `quorum.rs`: majority arithmetic, the one place that knows what a quorum is (joint
//!   quorums included).
//! - `membership.rs`: configurations of voters and learners, and changing them: one voter at a
//!   time or by joint consensus (thesis §4.3), in force from the moment they are appended.
//! - `transfer.rs`: leadership transfer (thesis §3.10): catch the target up, then `TimeoutNow`.
//! - `read_index.rs`: linearizable reads confirmed by a heartbeat round (thesis §6.4), batched;
//!   reads through followers; lease reads (§6.4.1).
//! - `snapshot.rs`: snapshots, log compaction and InstallSnapshot as a pull (Raft §7).
//! - `testkit.rs`: an in-memory driver for a whole cluster, for tests, examples and benchmarks.
//!
//! ## The driver's contract
//! After any inputs, call [`Node::take_actions`] and perform the batch:
//! 1. [`Action::PersistHardState`] (term and vote) must be durable **before** any
//!    [`Action::Send`] after it in the same batch leaves the node. This is what makes a vote
//!    binding across a crash (one vote per term, Raft §5.2). It comes first in every batch.
//! 2. [`Action::PersistEntries`] may be written **in parallel** with the sends: the leader's own
//!    disk write overlaps replication. Writes must complete in the order handed over; after a
//!    write completes, call [`Node::persisted`] with the index and term of its last entry (after
//!    a group commit of several writes, reporting the last one covers them all). The
//!    core counts the leader toward a quorum, and lets a follower acknowledge, only entries
//!    reported durable — so never report a write before it is on disk (after fsync).
//!    A write whose first index is not past the stored log supersedes the stored suffix from
//!    that index (a truncation; it never reaches committed entries).
//! 3. [`Action::Send`] may be delivered late, out of order, twice, or never: the protocol
//!    tolerates all of it. Messages to one peer should be sent in order for efficiency.
//! 4. [`Action::ReadEntries`] asks for durable entries the core no longer holds in memory (for a
//!    follower far behind, or for applying after a restart). Read them in the background and hand
//!    them back with [`Node::entries_read`]; the core checks their terms against its own log.
//!    It never asks for an entry at or below a compaction point it was told of (item 10). An
//!    answer to a read for a follower that comes after this node stopped leading, or led again
//!    in a later term, is ignored whatever it holds (the log may have been truncated since):
//!    hand back what the storage returns, even nothing.
//! 5. [`Action::Apply`] entries are committed and durable here: apply them in order, after
//!    everything applied before. Applying may run in parallel with everything else. No-ops and
//!    configuration entries ([`Payload::Membership`]) come too: the state machine skips them,
//!    but they count as applied.
//!    A commit index saved for restarts must come from [`Node::durable_commit`]. Never apply an
//!    entry at or below the index of the snapshot the state machine holds (restored from or
//!    installed): the core hands out none, and an entry handed out before an install and not
//!    yet applied when the install happens is skipped — the snapshot already contains it.
//! 6. [`Action::ReadReady`] answers [`Node::read_index`], [`Node::forward_read_index`] and
//!    [`Node::lease_read`]: serve each of its reads once *this node's* state machine has applied
//!    up to its index (an apply that comes in the same batch counts). [`Action::ReadFailed`]
//!    means leadership was lost (or, for a follower, its leader) before the read was confirmed:
//!    retry it at the new leader. The core keeps no timeout for reads; the driver does (a
//!    follower's request or its answer may be lost). The contexts given to
//!    [`Node::forward_read_index`] must never repeat, **not even across restarts** of the node
//!    (start the counter from the clock, or draw them at random): they name the requests to
//!    the leader, and an answer to a request sent before a crash may still arrive after it.
//!    Lease reads are correct only while the nodes' tick rates drift apart by less than
//!    [`Config::clock_drift_bound`] ticks per election timeout: turn [`Config::lease_reads`] on
//!    only where that holds, and on every node (with it, a node ignores vote requests for an
//!    election timeout after it starts).
//! 7. [`Action::Event`]s are for observation (logs, metrics, dashboards) and need no action.
//! 8. Call [`Node::tick`] at a steady rate; election timeouts and heartbeats are in ticks. Feed
//!    one node's inputs from one thread; [`Node::take_actions`] may follow many inputs, and
//!    batching them is how the core sends fewer, larger messages and writes.
//! 9. **Taking a snapshot** is the driver's choice of time. At the state machine's applied index
//!    `i`, ask [`Node::snapshot_meta_at`]`(i)` for the metadata; `None` means the snapshot would
//!    not be newer than the latest (after a restart, the one restored from), so write nothing.
//!    Make the snapshot and its metadata durable, **then** report [`Node::snapshot_taken`]. Keep
//!    the latest snapshot readable by peers, by index and term, until a newer one is durable:
//!    followers fetch it (item 11).
//! 10. **Compacting**: after [`Node::snapshot_taken`], log entries up to any index at or below the
//!     snapshot's may be deleted — report [`Node::compacted`] **before** deleting them. The core
//!     never again asks to read them; a [`Action::ReadEntries`] asked earlier that reaches them
//!     may be dropped unanswered (or answered: the core ignores it). How much log to keep behind
//!     the snapshot is the driver's choice: entries kept let a lagging follower catch up without
//!     a snapshot.
//! 11. [`Action::FetchSnapshot`] `{ from, meta }`: fetch the snapshot `meta` from `from`'s driver
//!     (in the background; chunked, resumable and checksummed end to end as the transport sees
//!     fit), then **install it atomically**: the state machine replaced by the snapshot's, the
//!     snapshot and its metadata durable, and the log replaced by an empty one whose compaction
//!     point is `meta.index` at `meta.term` — a crash must leave either the old state or all of
//!     the new. Then report [`Node::snapshot_installed`]; on any failure (the peer no longer has
//!     it, a checksum mismatch, a timeout — the core keeps no timeout) keep nothing of it and
//!     report [`Node::snapshot_failed`]. Every fetch must end in one of the two reports. While a
//!     fetch is out, the core issues no [`Action::PersistEntries`], and it asks for one only when
//!     no write is pending, so the install never races a log write. A restart forgets a fetch.
//! 12. **Restarting**: [`Restored::snapshot`] is the newest durable snapshot, and the state
//!     machine is restored from it before any [`Action::Apply`]. The restored log must pass through
//!     it: its compaction point at or below the snapshot's index, its last index at or above, and
//!     its term there the snapshot's. A log that does not (a crash between writing a snapshot and
//!     resetting the log) is superseded by the snapshot and must be reset to it by the driver;
//!     the core refuses to start on it rather than guess. [`Restored::memberships`] lists every
//!     configuration entry of the restored log after the snapshot: with the snapshot's
//!     configuration (or, with neither, the bootstrap [`Config::voters`]) they give the
//!     configuration in force. skiff-wal's recovery collects them.
//! 13. **Membership**: the configuration in force is [`Node::membership`], and every change of it
//!     is reported as [`Event::MembershipChanged`] (when its entry is appended, truncated away or
//!     installed with a snapshot — not when it commits); a driver that connects to peers learns
//!     from it whom to reach. Found a cluster by giving every founding node the same
//!     [`Config::voters`]; start a node that **joins** a running cluster with no voters at all:
//!     it waits, never campaigning, until the leader has added it with
//!     [`Node::change_membership`] and replicates the configuration to it. A node removed from
//!     the configuration is no longer replicated to, and campaigns no more once it knows the
//!     removal committed (a removed leader steps down then): its driver may stop it once the
//!     removal is applied.
//! 14. **Leadership transfer and graceful shutdown**: [`Node::transfer_leadership`] on the
//!     leader (with no target: the most up-to-date voter). Until it completes, proposals and
//!     membership changes are refused ([`ProposeError::TransferInProgress`]); it completes when
//!     this node reports [`Event::LeaderChanged`] for a newer term, and is given up after an
//!     election timeout ([`Event::TransferAborted`]). To stop a leader gracefully, transfer,
//!     wait for either event, then stop.
//!
//! ## The log, when it is larger than memory
//! The log lives in the driver's storage. The core keeps the term of every entry in compressed
//! form (one `(first index, term)` pair per term), every entry not yet durable, and a byte-bounded
//! cache of the newest durable ones; anything older is asked for with a bounded
//! [`Action::ReadEntries`]. We chose asking over a storage trait the core calls, because a read
//! then never blocks the core's thread on a disk (heartbeats and other followers keep flowing
//! while a far-behind follower's entries are read), and the core stays free of I/O by
//! construction rather than by convention. Catching up a follower millions of entries behind
//! costs one bounded read and one `Append` per batch: time linear in the entries sent.
//!
//! ## Invariants, asserted where they could break
//! - At most one leader per term (a leader that receives an `Append` of its own term panics);
//!   at most one vote per term.
//! - Terms and commit indexes never decrease; committed entries are never truncated.
//! - Appended indexes have no gaps; terms never decrease along the log.
//! - Nothing is applied beyond the commit index, and applies are gap-free and in order; nothing at
//!   or below the state machine's snapshot is applied.
//! - The log is compacted only up to the latest snapshot, which covers only committed, applied,
//!   durable entries; the core never asks to read a compacted entry, and a snapshot's index never
//!   decreases.
//! - Only entries of the current term are committed by counting replicas (§5.4.2, Figure 8).
//! - A configuration is in force from the moment its entry is appended, and reverts when the entry
//!   is truncated; while joint, elections and commits need a majority of both voter sets; one
//!   change at a time, and none before the leader's no-op is committed.
//!
//! Bad input from the network is an error ([`StepError`]), never a panic: messages to another
//! node, from ourselves, or with inconsistent entries or configurations are refused and change
//! nothing.
//!
//! ## Left out for now, with room made for it
//! Demoting a voter to a learner in one step (remove it, then add it as a learner). Lease reads
//! at followers (a follower asks the leader, as for ReadIndex). Keeping a removed node informed
//! of its removal: the leader stops replicating to it at once (pre-vote and leader stickiness
//! keep it harmless; its driver stops it). Snapshot *bytes* are deliberately not here, and never
//! will be: taking, storing, chunking and checksumming them is the driver's and the WAL's work;
//! the core decides only when a snapshot is needed and what it must cover.

pub mod action;
pub mod config;
mod election;
pub mod error;
pub mod log;
pub mod membership;
pub mod message;
pub mod node;
pub mod progress;
pub mod quorum;
mod read_index;
mod replication;
pub mod rng;
pub mod sabotage;
pub mod snapshot;
pub mod testkit;
mod transfer;
pub mod types;

pub use action::{Action, Event, ReadPurpose, ReadRequest, RoleKind};
pub use config::Config;
pub use error::{
    ConfigError, LeaseReadError, MembershipError, ProposeError, ReadIndexError, ReportError,
    RestoreError, StepError, TransferError,
};
pub use log::LogState;
pub use membership::{Membership, MembershipChange};
pub use message::{AppendOutcome, Body, Message};
pub use node::{NewNodeError, Node, Restored, Status};
pub use sabotage::Sabotage;
pub use snapshot::SnapshotMeta;
pub use types::{Entry, HardState, Index, NodeId, Payload, Term};
