//! The driver's snapshot duties (the core's contract items 9 to 12): taking snapshots,
//! compacting the log behind them, and installing the leader's.
//!
//! ## Taking a snapshot
//! When [`SnapshotPolicy::entries`] entries have been applied since the latest snapshot, or
//! entries adding up to [`SnapshotPolicy::log_bytes`] (large values fill the log long before
//! many entries do), or when `POST /v1/snapshot` asks (the entries trigger waits, for a store
//! whose snapshot is large, until the log since is at least half the snapshot:
//! [`SnapshotPolicy::due`]), the driver asks the core for the metadata at its applied index
//! (`Node::snapshot_meta_at`) and **clones the store** under its lock. The store's maps are
//! persistent B-trees (skiff-kv, `store.rs`), so the clone is `O(1)` whatever the store's size:
//! a point-in-time view sharing every node with the live store, which later applies copy on
//! write. A blocking thread serializes the view into a temporary snapshot file and fsyncs it;
//! then the log's writer thread saves it (a rename, between two batches), and only then is the
//! core told (`snapshot_taken`). Proposals, applies and replication go on meanwhile.
//!
//! ## Compacting
//! After a snapshot at `i` the driver keeps [`SnapshotPolicy::catchup_entries`] entries of log
//! behind it, so that a follower a little behind catches up from the log rather than with the
//! whole snapshot, and compacts up to `i - catchup_entries`: `Node::compacted` first, then
//! `Wal::compact` on the writer thread (contract item 10), which deletes whole segments only.
//!
//! ## Installing the leader's snapshot
//! On `FetchSnapshot` a task fetches the file from the leader (`crate::snapshot`), verifies it
//! and restores a store from it, all off the driver. The writer thread then installs it
//! (`Wal::install_snapshot`: the snapshot saved, the log reset after it, fsynced), and only
//! then does the driver swap the store and report `snapshot_installed`. A crash before the
//! install leaves the old state; after it, the new; in between, open finishes the install.
//!
//! ## One at a time
//! A local snapshot and a fetch never run together: both end in a snapshot file, and the newer
//! must never be replaced by the older. A fetch asked for while a local snapshot is being taken
//! is reported failed at once (the leader offers again after an election timeout); no local
//! snapshot starts while a fetch is out (the follower's applied index does not move then
//! anyway). Any failure that leaves the log in doubt (saving, installing, compacting) is fatal,
//! like every failed write of the log; a failure before that (writing the temporary file) is
//! logged and retried later.

use std::time::{Duration, Instant};

use skiff_kv::Store;
use skiff_raft::{Index, NodeId, SnapshotMeta};
use skiff_wal::{SnapshotFiles, StagedSnapshot};
use tokio::sync::oneshot;

use super::{Runtime, ServiceError, StorageEvent};
use crate::snapshot::{self as transfer, FetchClient};

/// How long the driver waits after a local snapshot failed before the policy tries again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// When the driver takes snapshots, and how much log it keeps behind them.
///
/// A snapshot rewrites the whole store, however few entries it covers. So the entries
/// trigger waits, for a store whose latest snapshot file is over [`LARGE_SNAPSHOT_BYTES`],
/// until the entries applied since add up to at least half that file: snapshots then write at
/// most twice the bytes of log they replace, whatever the store's size (a 1 GiB store of
/// small values would otherwise be rewritten for every 30 MiB of log). The bytes trigger,
/// which bounds the log on disk, is never held back. See [`SnapshotPolicy::due`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Take a snapshot once this many entries were applied since the latest one (held back
    /// for a large store, above); 0 takes snapshots only when asked (`POST /v1/snapshot`) or
    /// by `log_bytes`.
    pub entries: u64,
    /// Take a snapshot once the entries applied since the latest one add up to this many bytes
    /// (`Entry::size`: the command plus a small fixed overhead, close to what the entry takes
    /// in the log); 0: entries and requests only.
    pub log_bytes: u64,
    /// Entries kept in the log behind each snapshot, for followers a little behind.
    pub catchup_entries: u64,
}

impl Default for SnapshotPolicy {
    /// A snapshot every 100,000 entries (etcd 3.4's `--snapshot-count`), 5,000 kept behind it
    /// (etcd's catch-up entries); and one every 256 MiB of log (four of the log's default
    /// segments), which 100,000 entries reach with values of about 2.6 KiB.
    ///
    /// A snapshot rewrites the whole store, however few entries it covers, so it is taken
    /// rarely. etcd 3.6 lowered its count to 10,000 because etcd holds every entry since its
    /// latest snapshot in memory; skiff's log is on disk behind a bounded cache, so the count
    /// bounds only the log replayed at a restart (100,000 entries: a fraction of a second).
    /// Measured with 10,000 (`crates/skiff/benches/cpu_per_op.sh`, three alternating rounds,
    /// puts at 256 clients over 10,000 keys, three nodes sharing one disk): snapshots five
    /// times a second per node wrote about as many bytes as the log did, and cost 12 % of the
    /// puts per second and a third of their p99 latency against 100,000.
    fn default() -> SnapshotPolicy {
        SnapshotPolicy { entries: 100_000, log_bytes: 256 << 20, catchup_entries: 5_000 }
    }
}

/// A snapshot file larger than this (64 MiB) holds back the entries trigger until the log
/// since it is at least half its size; a smaller one is cheap enough to rewrite every
/// [`SnapshotPolicy::entries`] entries.
pub const LARGE_SNAPSHOT_BYTES: u64 = 64 << 20;

impl SnapshotPolicy {
    /// Why a snapshot is due, if one is: `entries` entries adding up to `log_bytes` (by
    /// `Entry::size`) were applied since the latest snapshot, whose file holds
    /// `latest_file_bytes` (0 if there is none).
    pub fn due(
        &self,
        entries: u64,
        log_bytes: u64,
        latest_file_bytes: u64,
    ) -> Option<&'static str> {
        let worth_rewriting = latest_file_bytes <= LARGE_SNAPSHOT_BYTES
            || log_bytes.saturating_mul(2) >= latest_file_bytes;
        if self.entries > 0 && entries >= self.entries && worth_rewriting {
            Some("entries")
        } else if self.log_bytes > 0 && log_bytes >= self.log_bytes {
            Some("log bytes")
        } else {
            None
        }
    }
}

/// The answer to a request for a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotOutcome {
    /// A snapshot covering everything applied when it was asked for is durable (taken here, or
    /// installed from the leader meanwhile).
    Taken(SnapshotMeta),
    /// Nothing was applied since the latest snapshot: none was taken.
    NothingNew {
        /// The latest snapshot, if there is one.
        latest: Option<SnapshotMeta>,
        /// The applied index.
        applied: Index,
    },
}

/// A request for a snapshot waiting for one to cover its index.
type Waiter = (Index, oneshot::Sender<Result<SnapshotOutcome, ServiceError>>);

/// What the snapshot tasks and the log's thread report to the driver.
#[derive(Debug)]
pub(super) enum SnapshotEvent {
    /// The local snapshot was written to its temporary file, or failed to be.
    Written(SnapshotMeta, Result<StagedSnapshot, String>),
    /// The log's thread saved the local snapshot.
    Saved(SnapshotMeta, skiff_wal::Result<()>),
    /// The log's thread compacted the log.
    Compacted(skiff_wal::Result<()>),
    /// A fetch ended: the verified file and the store restored from it, or why not.
    Fetched(SnapshotMeta, Result<(StagedSnapshot, Store), String>),
    /// The log's thread installed the fetched snapshot; the store goes with it.
    Installed(SnapshotMeta, Box<Store>, skiff_wal::Result<()>),
}

/// The driver's snapshot state.
pub(super) struct Snapshots {
    /// When to take snapshots.
    policy: SnapshotPolicy,
    /// The data directory's snapshot files.
    files: SnapshotFiles,
    /// The client fetches use.
    client: FetchClient,
    /// The local snapshot being taken, and since when.
    taking: Option<(SnapshotMeta, Instant)>,
    /// The leader's snapshot being fetched or installed.
    fetching: Option<SnapshotMeta>,
    /// Requests waiting for a snapshot at or above their index.
    waiters: Vec<Waiter>,
    /// The index compaction was last reported at.
    compacted: Index,
    /// The log bytes (`Entry::size`) of the entries applied since the latest snapshot, or since
    /// the one being taken, which covers those before it.
    applied_bytes: u64,
    /// The log bytes the snapshot being taken covers: counted again if it fails.
    taking_bytes: u64,
    /// The size of the latest snapshot's file (0 with none): what the policy weighs the log
    /// against.
    latest_file_bytes: u64,
    /// The size of the file of the snapshot being saved or installed.
    pending_file_bytes: u64,
    /// No policy snapshot before this, after a failure.
    retry_at: Option<Instant>,
}

impl Snapshots {
    /// The state of a driver that has just started, whose latest snapshot holds
    /// `latest_file_bytes` (0 for none).
    pub(super) fn new(
        policy: SnapshotPolicy,
        files: SnapshotFiles,
        latest_file_bytes: u64,
    ) -> Snapshots {
        Snapshots {
            policy,
            files,
            client: transfer::fetch_client(),
            taking: None,
            fetching: None,
            waiters: Vec::new(),
            compacted: Index(0),
            applied_bytes: 0,
            taking_bytes: 0,
            latest_file_bytes,
            pending_file_bytes: 0,
            retry_at: None,
        }
    }

    /// Entries of `bytes` log bytes were applied.
    pub(super) fn applied(&mut self, bytes: u64) {
        self.applied_bytes += bytes;
    }

    /// Whether a local snapshot or a fetch is under way.
    fn busy(&self) -> bool {
        self.taking.is_some() || self.fetching.is_some()
    }

    /// The driver stops: the waiting requests learn why.
    pub(super) fn stop(self, reason: &str) {
        for (_, reply) in self.waiters {
            let _ = reply.send(Err(ServiceError::Unavailable(reason.to_string())));
        }
    }
}

impl Runtime {
    /// A request for a snapshot (`POST /v1/snapshot`): answered once a snapshot covers the
    /// applied index as it is now, or at once if nothing was applied since the latest.
    pub(super) fn on_snapshot_request(
        &mut self,
        reply: oneshot::Sender<Result<SnapshotOutcome, ServiceError>>,
    ) {
        if self.snapshots.busy() || self.start_snapshot("asked") {
            self.snapshots.waiters.push((self.applied, reply));
        } else {
            let latest = self.node.snapshot().cloned();
            let _ = reply.send(Ok(SnapshotOutcome::NothingNew { latest, applied: self.applied }));
        }
    }

    /// Takes a snapshot when the policy says so (called after every batch of actions).
    pub(super) fn maybe_snapshot(&mut self) {
        let policy = self.snapshots.policy;
        if self.snapshots.busy() || self.snapshots.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let latest = self.node.snapshot().map_or(Index(0), |meta| meta.index);
        let entries = self.applied.0.saturating_sub(latest.0);
        let log_bytes = self.snapshots.applied_bytes;
        if let Some(trigger) = policy.due(entries, log_bytes, self.snapshots.latest_file_bytes) {
            self.start_snapshot(trigger);
        }
    }

    /// Answers the waiting requests the latest snapshot covers, and starts a snapshot for the
    /// others (or tells them there is nothing new).
    fn serve_snapshot_waiters(&mut self) {
        let latest = self.node.snapshot().cloned();
        let covered = latest.as_ref().map_or(Index(0), |meta| meta.index);
        let mut waiting = Vec::new();
        for (index, reply) in std::mem::take(&mut self.snapshots.waiters) {
            match &latest {
                Some(meta) if index <= covered => {
                    let _ = reply.send(Ok(SnapshotOutcome::Taken(meta.clone())));
                }
                _ => waiting.push((index, reply)),
            }
        }
        self.snapshots.waiters = waiting;
        if self.snapshots.waiters.is_empty() || self.snapshots.busy() {
            return;
        }
        if !self.start_snapshot("asked") {
            let applied = self.applied;
            for (_, reply) in std::mem::take(&mut self.snapshots.waiters) {
                let latest = latest.clone();
                let _ = reply.send(Ok(SnapshotOutcome::NothingNew { latest, applied }));
            }
        }
    }

    /// Starts a local snapshot of the store at its applied index (`trigger` says why, for the
    /// log); false if the core says it would not be newer than the latest.
    fn start_snapshot(&mut self, trigger: &'static str) -> bool {
        let started = Instant::now();
        let view = {
            let store = self.store.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            let Some(meta) = self.node.snapshot_meta_at(Index(store.applied())) else {
                return false;
            };
            // O(1): the view shares the store's tree nodes (copy on write).
            (meta, store.clone())
        };
        let (meta, store) = view;
        // Making the view is the only part that holds up the driver.
        let log_bytes = self.snapshots.applied_bytes;
        tracing::info!(
            %meta, trigger, log_bytes, keys = store.len(), view = ?started.elapsed(),
            "taking a snapshot"
        );
        self.snapshots.taking = Some((meta.clone(), started));
        self.snapshots.taking_bytes = std::mem::take(&mut self.snapshots.applied_bytes);
        let files = self.snapshots.files.clone();
        let reports = self.storage_sender.clone();
        tokio::task::spawn_blocking(move || {
            let written = transfer::write_local(&files, meta.clone(), &store);
            drop(store);
            let _ = reports.send(StorageEvent::Snapshot(SnapshotEvent::Written(meta, written)));
        });
        true
    }

    /// A fetch the core asks for (contract item 11).
    pub(super) fn on_fetch_snapshot(&mut self, from: NodeId, meta: SnapshotMeta) {
        if self.snapshots.busy() {
            tracing::info!(%meta, "a snapshot is under way; the leader will offer again");
            self.node.snapshot_failed(&meta);
            return;
        }
        let Some(addr) = self.client_addr_of(from) else {
            tracing::warn!(%meta, leader = from.0, "no client address known for the leader");
            self.metrics.snapshot_receive_failures.inc();
            self.node.snapshot_failed(&meta);
            return;
        };
        tracing::info!(%meta, leader = from.0, %addr, "fetching the leader's snapshot");
        self.snapshots.fetching = Some(meta.clone());
        let (client, files) = (self.snapshots.client.clone(), self.snapshots.files.clone());
        let reports = self.storage_sender.clone();
        tokio::spawn(async move {
            let fetched = transfer::fetch(client, addr, files, meta.clone()).await;
            let _ = reports.send(StorageEvent::Snapshot(SnapshotEvent::Fetched(meta, fetched)));
        });
    }

    /// Handles a report of a snapshot task or of the log's thread. A failure of the log is
    /// returned, and stops the node.
    pub(super) fn on_snapshot_event(
        &mut self,
        event: SnapshotEvent,
    ) -> Result<(), skiff_wal::Error> {
        match event {
            SnapshotEvent::Written(meta, Ok(staged)) => {
                self.snapshots.pending_file_bytes = staged.file_len();
                let reports = self.storage_sender.clone();
                self.wal.run(move |wal| {
                    let saved = wal.save_staged_snapshot(staged);
                    let _ = reports.send(StorageEvent::Snapshot(SnapshotEvent::Saved(meta, saved)));
                })?;
            }
            SnapshotEvent::Written(meta, Err(reason)) => {
                tracing::warn!(%meta, %reason, "taking a snapshot failed; retrying later");
                self.snapshots.taking = None;
                self.snapshots.applied_bytes += std::mem::take(&mut self.snapshots.taking_bytes);
                self.snapshots.retry_at = Some(Instant::now() + RETRY_AFTER_FAILURE);
                for (_, reply) in std::mem::take(&mut self.snapshots.waiters) {
                    let _ = reply.send(Err(ServiceError::Unavailable(reason.clone())));
                }
            }
            SnapshotEvent::Saved(meta, saved) => {
                saved?;
                self.on_snapshot_saved(meta);
            }
            SnapshotEvent::Compacted(compacted) => compacted?,
            SnapshotEvent::Fetched(meta, Ok((staged, store))) => {
                self.snapshots.pending_file_bytes = staged.file_len();
                let reports = self.storage_sender.clone();
                let index = meta.index;
                self.wal.run(move |wal| {
                    // The superseded segments go at once: the reset left them all dead.
                    let installed = wal.install_snapshot(staged).and_then(|()| wal.compact(index));
                    let event = SnapshotEvent::Installed(meta, Box::new(store), installed);
                    let _ = reports.send(StorageEvent::Snapshot(event));
                })?;
            }
            SnapshotEvent::Fetched(meta, Err(reason)) => {
                tracing::warn!(%meta, %reason, "fetching the leader's snapshot failed");
                self.metrics.snapshot_receive_failures.inc();
                self.snapshots.fetching = None;
                self.node.snapshot_failed(&meta);
                self.serve_snapshot_waiters();
            }
            SnapshotEvent::Installed(meta, store, installed) => {
                installed?;
                self.on_snapshot_installed(meta, *store);
                // The snapshot's store carries the address book of the cluster it came from.
                self.reload_addresses();
            }
        }
        Ok(())
    }

    /// A local snapshot is durable: tell the core, compact behind it, answer the waiters.
    fn on_snapshot_saved(&mut self, meta: SnapshotMeta) {
        let (_, started) = self.snapshots.taking.take().expect("a snapshot was being taken");
        self.snapshots.taking_bytes = 0;
        self.snapshots.latest_file_bytes = std::mem::take(&mut self.snapshots.pending_file_bytes);
        self.metrics.snapshot_save_duration.observe(started.elapsed().as_secs_f64());
        self.metrics.snapshot_index.set(meta.index.0 as i64);
        tracing::info!(%meta, elapsed = ?started.elapsed(), "took a snapshot");
        if let Err(error) = self.node.snapshot_taken(meta.clone()) {
            // The metadata came from the core a moment ago and nothing else changes it while
            // a snapshot is taken: a refusal is a bug here or in the core.
            panic!("the core refused the snapshot it described: {error}");
        }
        let up_to = Index(meta.index.0.saturating_sub(self.snapshots.policy.catchup_entries));
        if up_to > self.snapshots.compacted {
            self.snapshots.compacted = up_to;
            // Reported before the deletion (contract item 10).
            if let Err(error) = self.node.compacted(up_to) {
                panic!("the core refused a compaction behind its snapshot: {error}");
            }
            let reports = self.storage_sender.clone();
            let queued = self.wal.run(move |wal| {
                let compacted = wal.compact(up_to);
                let _ = reports.send(StorageEvent::Snapshot(SnapshotEvent::Compacted(compacted)));
            });
            if queued.is_err() {
                // The writer stopped: its failure notification stops the driver.
                tracing::warn!("the log's writer stopped before compacting");
            }
        }
        self.serve_snapshot_waiters();
    }

    /// The leader's snapshot is installed on disk: swap the store, tell the core, release the
    /// reads it satisfies.
    fn on_snapshot_installed(&mut self, meta: SnapshotMeta, store: Store) {
        assert_eq!(store.applied(), meta.index.0, "checked when the store was restored");
        assert!(meta.index > self.applied, "installing {meta} at applied index {}", self.applied);
        let replaced = std::mem::replace(
            &mut *self.store.write().unwrap_or_else(|poisoned| poisoned.into_inner()),
            store,
        );
        // Freeing a large store takes a while: not on the driver.
        tokio::task::spawn_blocking(move || drop(replaced));
        self.applied = meta.index;
        self.snapshots.fetching = None;
        // Nothing is applied while a fetch is out, and the new store is all snapshot.
        self.snapshots.applied_bytes = 0;
        self.snapshots.latest_file_bytes = std::mem::take(&mut self.snapshots.pending_file_bytes);
        self.snapshots.compacted = self.snapshots.compacted.max(meta.index);
        self.metrics.applied_index.set(meta.index.0 as i64);
        self.metrics.snapshot_index.set(meta.index.0 as i64);
        self.metrics.snapshot_receive_success.inc();
        tracing::info!(%meta, "installed the leader's snapshot");
        if let Err(error) = self.node.snapshot_installed(meta) {
            // Only a restart forgets a fetch, and this process asked for this one.
            panic!("the core refused the snapshot it asked for: {error}");
        }
        self.release_ready_reads();
        self.serve_snapshot_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_small_store_is_snapshotted_every_so_many_entries() {
        let policy = SnapshotPolicy::default();
        assert_eq!(policy.due(99_999, 30 * MIB, 3 * MIB), None);
        assert_eq!(policy.due(100_000, 30 * MIB, 3 * MIB), Some("entries"));
        // However little log the entries made: the snapshot is small.
        assert_eq!(policy.due(100_000, MIB, LARGE_SNAPSHOT_BYTES), Some("entries"));
        assert_eq!(policy.due(100_000, 0, 0), Some("entries"), "no snapshot yet");
    }

    #[test]
    fn a_large_store_waits_for_half_its_size_of_log() {
        let policy = SnapshotPolicy::default();
        let store = 400 * MIB;
        assert_eq!(policy.due(100_000, 30 * MIB, store), None, "13x the log's bytes");
        assert_eq!(policy.due(600_000, 199 * MIB, store), None);
        assert_eq!(policy.due(600_000, 200 * MIB, store), Some("entries"));
        assert_eq!(policy.due(1, 200 * MIB, store), None, "not before the entries are in");
    }

    #[test]
    fn the_log_bytes_bound_is_never_held_back() {
        let policy = SnapshotPolicy::default();
        let huge = 10 << 30;
        assert_eq!(policy.due(900_000, 255 * MIB, huge), None);
        assert_eq!(policy.due(900_000, 256 * MIB, huge), Some("log bytes"));
        assert_eq!(policy.due(10, 256 * MIB, 0), Some("log bytes"));
    }

    #[test]
    fn zero_turns_a_trigger_off() {
        let entries_only = SnapshotPolicy { log_bytes: 0, ..SnapshotPolicy::default() };
        assert_eq!(entries_only.due(99_999, u64::MAX, 0), None);
        let bytes_only = SnapshotPolicy { entries: 0, ..SnapshotPolicy::default() };
        assert_eq!(bytes_only.due(u64::MAX, 256 * MIB - 1, 0), None);
        assert_eq!(bytes_only.due(1, 256 * MIB, 0), Some("log bytes"));
        let never = SnapshotPolicy { entries: 0, log_bytes: 0, catchup_entries: 0 };
        assert_eq!(never.due(u64::MAX, u64::MAX, 0), None, "only when asked");
    }
}
