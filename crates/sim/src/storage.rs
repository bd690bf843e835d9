//! Simulated storage: a node's durable term, vote and log, and the writes still on their way.
//!
//! A real disk makes a write durable some time after it is issued (after the fsync), and a crash
//! keeps an unknown part of what was not yet synced. [`Disk`] models exactly that with the real
//! thing: each node has a `skiff_wal::Wal` on its own `skiff_wal::MemFs`. Writes are queued with
//! a completion time and complete in the order they were issued (contract item 2 of the core
//! asks for that order); completing one writes it to the log and syncs it. In
//! [`Disk::crash`] the writes still in flight reach the file unsynced, the file system keeps a
//! random prefix of the unsynced bytes and may tear the last write at any byte (or, with sectors
//! reordered, in half the crashes keeps or loses each unsynced 512-byte sector on its own, as a
//! disk writing back pages overwritten in place may), and the log is reopened: it must cut the
//! torn tail and recover every synced write, and the core restarts from what it recovered.
//!
//! [`LogCopy`] is a log of entries together with a running hash of each prefix (the *chain*:
//! `chain[i]` hashes every entry up to index `i`). The disk keeps one for the durable log, and
//! the node driver keeps one for the log as the core sees it (everything handed over in
//! `PersistEntries`, durable or not). Comparing two logs up to an index is then comparing two
//! numbers, which is what lets the invariant checker test log matching and leader completeness
//! after every step without walking logs.

use std::collections::VecDeque;

use skiff_kv::Store;
use skiff_raft::{
    Entry, HardState, Index, Membership, NodeId, Payload, ReadRequest, Restored, SnapshotMeta, Term,
};
use skiff_wal::{Faults, MemFs, Options, Recovery, SnapshotFiles, StagedSnapshot, Wal};

use crate::faults::SnapshotStep;
use crate::random::Random;
use crate::time::Time;

/// A log held in memory with the hash chain of its prefixes, after a *base*: the point the
/// log was compacted to or reset at by a snapshot (index 0, term 0, chain 0 for a log that
/// starts at index 1). Entries at or below the base are not held; their chain value is, at the
/// base itself, so that a compacted log compares with any other as a whole log would. The
/// configuration entries are indexed too: the configuration in force on a node whose log this
/// is, is the latest of them, else the one in force at the base.
#[derive(Clone, Debug, Default)]
pub struct LogCopy {
    /// The index of the last entry the log does not hold (the compaction point).
    base: Index,
    /// The term of the entry at `base` (0 at index 0).
    base_term: Term,
    /// The chain hash of the log up to `base` (0 at index 0).
    base_chain: u64,
    /// The configuration in force at `base`: the snapshot's, or the bootstrap one.
    base_membership: Membership,
    /// The configuration entries held, by index, in increasing order.
    memberships: Vec<(Index, Membership)>,
    /// The entries; `entries[i]` has index `base + i + 1`.
    entries: Vec<Entry>,
    /// `chain[i]` is the hash of every entry up to the one of `entries[i]`; same length.
    chain: Vec<u64>,
}

impl LogCopy {
    /// An empty log starting at index 1, in the configuration `bootstrap`.
    pub fn new(bootstrap: Membership) -> LogCopy {
        LogCopy { base_membership: bootstrap, ..LogCopy::default() }
    }

    /// An empty log after a snapshot of `index` at `term`, whose log up to it hashes to `chain`
    /// and whose configuration then was `membership`.
    pub fn after_snapshot(index: Index, term: Term, chain: u64, membership: Membership) -> LogCopy {
        LogCopy {
            base: index,
            base_term: term,
            base_chain: chain,
            base_membership: membership,
            ..LogCopy::default()
        }
    }

    /// The configuration in force on a node holding this log: that of its latest
    /// configuration entry, committed or not, else the one in force at its base.
    pub fn membership(&self) -> &Membership {
        self.memberships.last().map_or(&self.base_membership, |(_, membership)| membership)
    }

    /// The compaction point: the last index not held (0 when nothing was compacted).
    pub fn base(&self) -> Index {
        self.base
    }

    /// The index of the last entry (the base when no entry is held).
    pub fn last_index(&self) -> Index {
        Index(self.base.0 + self.entries.len() as u64)
    }

    /// The position in `entries` of `index`, if it is above the base.
    fn position(&self, index: Index) -> Option<usize> {
        index.0.checked_sub(self.base.0 + 1).map(|position| position as usize)
    }

    /// The entry at `index`, if held.
    pub fn entry(&self, index: Index) -> Option<&Entry> {
        self.position(index).and_then(|position| self.entries.get(position))
    }

    /// The term of the entry at `index` (the base's term at the base), if known.
    pub fn term(&self, index: Index) -> Option<Term> {
        if index == self.base {
            return Some(self.base_term);
        }
        self.entry(index).map(|entry| entry.term)
    }

    /// The hash of the log up to `index` (0 for the empty prefix), if known: at the base or
    /// at an entry held.
    pub fn chain(&self, index: Index) -> Option<u64> {
        if index == self.base {
            return Some(self.base_chain);
        }
        self.position(index).and_then(|position| self.chain.get(position).copied())
    }

    /// Writes `entries`, superseding everything from the first one's index on (the semantics
    /// of `Action::PersistEntries`). The first index must be above the base and leave no gap.
    pub fn write(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        assert!(
            first.index > self.base && first.index <= self.last_index().next(),
            "write at {} is not within {}..={} (after the base, without a gap)",
            first.index,
            self.base.next(),
            self.last_index().next()
        );
        let keep = self.position(first.index).expect("above the base, checked");
        self.entries.truncate(keep);
        self.chain.truncate(keep);
        self.memberships.retain(|(index, _)| *index < first.index);
        for entry in entries {
            assert!(
                entry.index == self.last_index().next(),
                "entries of one write are consecutive"
            );
            let previous = self.chain.last().copied().unwrap_or(self.base_chain);
            self.chain.push(chain_hash(previous, entry));
            self.entries.push(entry.clone());
            if let Payload::Membership(membership) = &entry.payload {
                self.memberships.push((entry.index, membership.clone()));
            }
        }
    }

    /// Forgets the entries up to `index` (at most the last index), which becomes the base. An
    /// index at or below the base changes nothing.
    pub fn compact_to(&mut self, index: Index) {
        if index <= self.base {
            return;
        }
        assert!(
            index <= self.last_index(),
            "compaction to {index} beyond the last index {}",
            self.last_index()
        );
        let count = self.position(index).expect("above the base") + 1;
        let folded = self.memberships.partition_point(|(at, _)| *at <= index);
        if let Some((_, membership)) = self.memberships.drain(..folded).next_back() {
            self.base_membership = membership;
        }
        self.base_term = self.entries[count - 1].term;
        self.base_chain = self.chain[count - 1];
        self.base = index;
        self.entries.drain(..count);
        self.chain.drain(..count);
    }

    /// The entries `[low, high)` a read request asks for, as far as held, bounded by the
    /// request's byte budget (at least one entry when any is held).
    pub fn read(&self, request: &ReadRequest) -> Vec<Entry> {
        let mut entries = Vec::new();
        let mut bytes = 0;
        let mut index = request.low;
        while index < request.high {
            let Some(entry) = self.entry(index) else { break };
            if !entries.is_empty() && bytes + entry.size() > request.max_bytes {
                break;
            }
            bytes += entry.size();
            entries.push(entry.clone());
            index = index.next();
        }
        entries
    }
}

/// The hash of a log prefix ending in `entry`, given the hash of the prefix before it.
pub fn chain_hash(previous: u64, entry: &Entry) -> u64 {
    let payload = match &entry.payload {
        Payload::Noop => 0x6E6F_6F70,
        Payload::Command(command) => fnv1a(command),
        Payload::Membership(membership) => fnv1a(membership.to_string().as_bytes()),
    };
    let mut hash = previous ^ 0x9E37_79B9_7F4A_7C15;
    for word in [entry.index.0, entry.term.0, payload] {
        hash = mix(hash ^ word);
    }
    hash
}

/// FNV-1a over bytes: a small, stable hash (std's hashers are not guaranteed stable across
/// releases, and the trace hash must be).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash
}

/// The SplitMix64 finaliser: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One write handed to the disk.
#[derive(Debug)]
pub enum Write {
    /// The term and vote.
    HardState(HardState),
    /// Entries, superseding the stored suffix from the first one's index.
    Entries(Vec<Entry>),
    /// A local snapshot, complete and fsynced under its temporary name, made the node's
    /// snapshot: a rename and a directory fsync, then older snapshots removed (the server does
    /// this on the log's thread, between two batches, as here).
    SaveSnapshot(StagedSnapshot),
    /// The log compacted up to this index (whole segments only).
    Compact(Index),
    /// A snapshot fetched from the leader and verified, installed: saved, the log reset to an
    /// empty one after it and synced, the superseded segments removed. `chain` is the hash
    /// chain of the log up to the snapshot's index, for the mirror.
    InstallSnapshot {
        /// The verified file.
        staged: StagedSnapshot,
        /// The chain hash of the log the snapshot stands for.
        chain: u64,
        /// The self-test's `install-log-first` defect: the log is reset before the snapshot
        /// is saved, so a crash between leaves a log that starts after a snapshot the disk
        /// does not have.
        log_first: bool,
    },
}

impl Write {
    /// Whether the write is a snapshot's save or install, or a compaction: the steps a crash
    /// may cut in the middle.
    pub fn is_snapshot_step(&self) -> bool {
        matches!(self, Write::SaveSnapshot(_) | Write::Compact(_) | Write::InstallSnapshot { .. })
    }
}

/// What a completed write made durable: what the node's process hears of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Durable {
    /// The term and vote.
    HardState(HardState),
    /// Entries up to this one (index and term of the write's last entry).
    Entries(Index, Term),
    /// The local snapshot is the node's snapshot.
    SnapshotSaved(SnapshotMeta),
    /// The log was compacted; it now starts after this index (whole segments went, so this
    /// may be below the index asked for).
    Compacted(Index),
    /// The leader's snapshot is installed and the log reset after it.
    SnapshotInstalled(SnapshotMeta),
}

/// A write on its way to durability.
#[derive(Debug)]
struct PendingWrite {
    /// The write's number on this disk; strictly increasing.
    sequence: u64,
    /// What is written.
    write: Write,
}

/// Why a write did not become durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteFailure {
    /// A second vote in a term whose vote the log already holds (the log would panic on it;
    /// the driver reports a vote-safety breach).
    SecondVote(String),
    /// The power was cut in the middle of the write (a fault): the node must crash now.
    PowerCut(String),
}

/// Why a node's disk cannot be brought back after a crash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unrecoverable(pub String);

/// The data directory of every node's log on its own file system.
const WAL_DIR: &str = "/skiff";

/// The cluster id written in every node's identity file.
const CLUSTER: u64 = 1;

/// The sector a crash keeps or loses whole when sectors are reordered: 512 bytes, the smallest
/// a disk writes atomically and the unit whose loss the log's recovery recognises (it also
/// recognises multiples, so larger pages would be covered as well).
pub const SECTOR: u32 = 512;

/// A node's disk: the real write-ahead log on a fault-injecting in-memory file system, the
/// writes in flight, and a mirror of what the log holds durably.
#[derive(Debug)]
pub struct Disk {
    /// The node's file system: survives crashes, losing (and tearing) what was not synced.
    fs: MemFs,
    /// The node's write-ahead log, opened on `fs`.
    wal: Wal,
    /// The log's snapshot files, kept for the life of the open log: files served to fetching
    /// peers stay open in it between chunks (see `SnapshotFiles::read_chunk`).
    files: SnapshotFiles,
    /// The options the log is (re)opened with.
    options: Options,
    /// What the log's last open recovered: what a restart restores the core from.
    recovery: Recovery,
    /// The durable term and vote: what the log holds, as of the last sync or recovery.
    pub hard_state: HardState,
    /// The durable log, as the log holds it (rebuilt from the log itself at recovery).
    pub log: LogCopy,
    /// Writes issued and not yet durable, oldest first; they complete in this order.
    pending: VecDeque<PendingWrite>,
    /// The number the next write gets.
    next_sequence: u64,
    /// When the newest pending write completes: a later write never completes before it.
    last_completion: Time,
    /// The number of the newest pending hard-state write, if one is pending.
    pending_hard_state: Option<u64>,
    /// Where a crash cuts the power in a snapshot step that is in flight.
    random: Random,
    /// The configuration the node was started with (none, for a node that joins).
    bootstrap: Membership,
}

impl Disk {
    /// A new, empty disk of node `id`, started in the configuration `bootstrap`, its file
    /// system's random choices drawn from `seed`; the log rolls to a new segment file every
    /// `segment_size` bytes. With `reorder_sectors`, a crash may keep the unsynced sectors of a
    /// file out of order (see [`SECTOR`]).
    pub fn new(
        id: NodeId,
        seed: u64,
        segment_size: u64,
        bootstrap: Membership,
        reorder_sectors: bool,
    ) -> Disk {
        let faults =
            Faults { reorder_sectors: reorder_sectors.then_some(SECTOR), ..Faults::default() };
        let fs = MemFs::with_faults(seed, faults);
        let mut options = Options::new(id, CLUSTER);
        // Every record goes to the file as it is written, so that a crash finds unsynced
        // records in the file to keep, drop or tear.
        options.write_buffer = 0;
        // A point of the sparse index every few entries. With the default (one every 256 KiB,
        // more than a simulated log ever holds) every read scanned its segment from the start,
        // and leaders read constantly, for followers at different places in the log: the
        // simulator spent over two thirds of its time verifying the same records again. Small
        // intervals also give the sparse index many points to search and to cut back at a
        // truncation, which the default never does here.
        options.index_interval = 256;
        // Small segments, so that compaction deletes files (it deletes whole segments only)
        // and a crash can fall between the deletions.
        options.segment_size = segment_size;
        let (wal, recovery) = Wal::open(fs.clone(), WAL_DIR, options.clone())
            .expect("a new log opens on an empty file system");
        Disk {
            fs,
            files: wal.snapshot_files(),
            wal,
            options,
            recovery,
            hard_state: HardState::default(),
            log: LogCopy::new(bootstrap.clone()),
            pending: VecDeque::new(),
            next_sequence: 0,
            last_completion: Time::ZERO,
            pending_hard_state: None,
            random: Random::new(seed ^ 0x5EED_C0DE_0000_0001),
            bootstrap,
        }
    }

    /// Issues `write` at `now`, taking `latency` on its own; returns its number and when it
    /// completes (never before an earlier write). The write reaches the log when it completes
    /// (or, partly, in a crash before).
    pub fn submit(&mut self, write: Write, now: Time, latency: Time) -> (u64, Time) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        if matches!(write, Write::HardState(_)) {
            self.pending_hard_state = Some(sequence);
        }
        let completion = (now + latency).max(self.last_completion);
        self.last_completion = completion;
        self.pending.push_back(PendingWrite { sequence, write });
        (sequence, completion)
    }

    /// The snapshot step the oldest pending write is, if it is one.
    pub fn next_step(&self) -> Option<SnapshotStep> {
        match self.pending.front().map(|pending| &pending.write)? {
            Write::SaveSnapshot(_) => Some(SnapshotStep::Save),
            Write::Compact(_) => Some(SnapshotStep::Compact),
            Write::InstallSnapshot { .. } => Some(SnapshotStep::Install),
            Write::HardState(_) | Write::Entries(_) => None,
        }
    }

    /// Makes the oldest pending write durable: written to the log and synced (or saved,
    /// compacted, installed). Returns its number and what became durable. With `power_cut`,
    /// the power fails after that many more file-system operations: the write fails if it
    /// needs more, and the caller must crash the node either way.
    pub fn complete_next(
        &mut self,
        power_cut: Option<u64>,
    ) -> Result<Option<(u64, Durable)>, WriteFailure> {
        let Some(PendingWrite { sequence, write }) = self.pending.pop_front() else {
            return Ok(None);
        };
        if let Write::HardState(hard_state) = &write
            && let Some(refusal) = self.second_vote(*hard_state)
        {
            return Err(WriteFailure::SecondVote(refusal));
        }
        if let Some(operations) = power_cut {
            self.fs.cut_power_after(operations);
        }
        let durable = self.perform(write).map_err(WriteFailure::PowerCut)?;
        if let Durable::HardState(_) = durable
            && self.pending_hard_state == Some(sequence)
        {
            self.pending_hard_state = None;
        }
        Ok(Some((sequence, durable)))
    }

    /// Performs one write on the log and makes it durable; updates the mirrors.
    fn perform(&mut self, write: Write) -> Result<Durable, String> {
        let failed = |error: skiff_wal::Error| error.to_string();
        match write {
            Write::HardState(hard_state) => {
                self.wal.save_hard_state(hard_state).map_err(failed)?;
                self.wal.sync().map_err(failed)?;
                self.hard_state = hard_state;
                Ok(Durable::HardState(hard_state))
            }
            Write::Entries(entries) => {
                self.wal.append(&entries).map_err(failed)?;
                let (index, term) = self.wal.sync().map_err(failed)?;
                self.log.write(&entries);
                let last = entries.last().expect("writes are non-empty");
                assert_eq!(
                    (index, term),
                    (last.index, last.term),
                    "the log's sync reports the write's last entry durable"
                );
                Ok(Durable::Entries(index, term))
            }
            Write::SaveSnapshot(staged) => {
                let meta = staged.meta().clone();
                self.wal.save_staged_snapshot(staged).map_err(failed)?;
                Ok(Durable::SnapshotSaved(meta))
            }
            Write::Compact(up_to) => {
                self.wal.compact(up_to).map_err(failed)?;
                let base = self.wal.first_index().prev();
                self.log.compact_to(base);
                Ok(Durable::Compacted(base))
            }
            Write::InstallSnapshot { staged, chain, log_first } => {
                let meta = staged.meta().clone();
                if log_first {
                    self.wal.reset(&meta).map_err(failed)?;
                    self.wal.sync().map_err(failed)?;
                    self.wal.save_staged_snapshot(staged).map_err(failed)?;
                } else {
                    self.wal.install_snapshot(staged).map_err(failed)?;
                }
                // The superseded segments go at once, as the server does: the reset left them
                // all dead.
                self.wal.compact(meta.index).map_err(failed)?;
                self.log =
                    LogCopy::after_snapshot(meta.index, meta.term, chain, meta.membership.clone());
                Ok(Durable::SnapshotInstalled(meta))
            }
        }
    }

    /// Why saving `hard_state` would be a second vote in a term, if it would.
    fn second_vote(&self, hard_state: HardState) -> Option<String> {
        let saved = self.wal.hard_state();
        (hard_state.term == saved.term && saved.vote.is_some() && hard_state.vote != saved.vote)
            .then(|| {
                format!(
                    "the log holds a vote for {} in term {}, and a vote for {} was to be saved",
                    saved.vote.map_or_else(|| "none".to_string(), |vote| vote.to_string()),
                    saved.term,
                    hard_state.vote.map_or_else(|| "none".to_string(), |vote| vote.to_string()),
                )
            })
    }

    /// Serves a read of the durable log through the log's own `read` (every record verified
    /// again), as far as the log holds the range (not below its first index: compacted).
    pub fn read(&mut self, request: &ReadRequest) -> Vec<Entry> {
        let high = request.high.min(self.wal.last_index().next());
        if request.low < self.wal.first_index() || request.low >= high {
            return Vec::new();
        }
        self.wal
            .read(request.low, high, request.max_bytes)
            .expect("the simulated file system injects no errors")
    }

    /// The log's snapshot files: for writing a local snapshot, receiving the leader's, and
    /// serving chunks of this node's to a peer.
    pub fn snapshot_files(&self) -> &SnapshotFiles {
        &self.files
    }

    /// The newest snapshot saved or installed, as the log knows it.
    pub fn snapshot(&self) -> Option<&SnapshotMeta> {
        self.wal.snapshot()
    }

    /// The store in the newest snapshot, read back and verified (for a restart).
    pub fn load_snapshot_store(&self) -> Result<Option<(SnapshotMeta, Store)>, String> {
        let Some((meta, mut reader)) =
            self.wal.open_snapshot().map_err(|error| error.to_string())?
        else {
            return Ok(None);
        };
        let store = Store::restore(&mut reader)
            .map_err(|error| format!("cannot restore the store from snapshot {meta}: {error}"))?;
        Ok(Some((meta, store)))
    }

    /// The number of the newest hard-state write not yet durable, if any: a message must not
    /// leave before it completes (contract item 1).
    pub fn pending_hard_state(&self) -> Option<u64> {
        self.pending_hard_state
    }

    /// Lets `operations` more file-system operations succeed, then fails every one after
    /// (a power cut in the middle of what comes next; the node must then crash).
    pub fn cut_power_after(&mut self, operations: u64) {
        self.fs.cut_power_after(operations);
    }

    /// How many writes are pending.
    pub fn pending_writes(&self) -> usize {
        self.pending.len()
    }

    /// The number of live segment files of the log.
    pub fn segments(&self) -> usize {
        self.wal.segment_count()
    }

    /// A crash. The writes in flight reach the disk as far as they get: log records reach the
    /// file unsynced, in order; a snapshot step (save, compaction, install) in flight runs
    /// until the power fails at a random file-system operation within it, and nothing after it
    /// reaches the disk. Then the file system crashes: unsynced bytes are kept up to a random
    /// point and may be torn at any byte (or, with sectors reordered, in half the crashes each
    /// changed sector is kept or lost on its own), unsynced directory changes likewise. The log is
    /// reopened and recovers (cutting a torn tail, finishing an interrupted install); the
    /// durable mirror is rebuilt from what it recovered, with `chain_of` giving the hash chain
    /// up to the log's new base. Returns the recovery, or why the disk cannot come back.
    pub fn crash(
        &mut self,
        chain_of: impl Fn(Index, Term) -> Option<u64>,
    ) -> Result<Recovery, Unrecoverable> {
        self.power_failure();
        self.recover(chain_of)
    }

    /// The first half of [`Disk::crash`]: the writes in flight get as far as they get, then
    /// the power fails, so that nothing the dead process still holds (a snapshot file being
    /// written or received, whose drop would remove it) changes the disk any more.
    pub fn power_failure(&mut self) {
        let mut pending = std::mem::take(&mut self.pending).into_iter();
        for PendingWrite { write, .. } in pending.by_ref() {
            if write.is_snapshot_step() {
                let operations = self.random.below(12);
                self.fs.cut_power_after(operations);
                // Whatever it did before the power failed is on the disk, synced or not.
                let _ = self.perform(write);
                break;
            }
            let reached = match &write {
                Write::HardState(hard_state) if self.second_vote(*hard_state).is_some() => false,
                Write::HardState(hard_state) => self.wal.save_hard_state(*hard_state).is_ok(),
                Write::Entries(entries) => self.wal.append(entries).is_ok(),
                _ => unreachable!("snapshot steps are handled above"),
            };
            if !reached {
                break;
            }
        }
        self.pending_hard_state = None;
        self.fs.cut_power_after(0);
        // Writes that never started: a staged snapshot among them removes nothing now.
        drop(pending);
    }

    /// The second half of [`Disk::crash`], after [`Disk::power_failure`]: the file system
    /// crashes, the log is opened again, and the mirror rebuilt from what it recovered.
    pub fn recover(
        &mut self,
        chain_of: impl Fn(Index, Term) -> Option<u64>,
    ) -> Result<Recovery, Unrecoverable> {
        self.fs.crash();
        let (wal, recovery) = Wal::open(self.fs.clone(), WAL_DIR, self.options.clone())
            .map_err(|error| Unrecoverable(format!("the log does not open again: {error}")))?;
        self.files = wal.snapshot_files();
        self.wal = wal;
        self.hard_state = recovery.hard_state;
        let base = self.wal.first_index().prev();
        let base_term = self.wal.term(base).expect("the log knows the term before its first entry");
        let Some(chain) = chain_of(base, base_term) else {
            return Err(Unrecoverable(format!(
                "the recovered log starts after {base}@{base_term}, an entry no node ever wrote"
            )));
        };
        // Without a configuration entry in the log, the configuration in force is the one at
        // the base: the snapshot's (nothing changed between the base and the snapshot, or the
        // entry that did would be in the log), or without a snapshot the bootstrap one.
        let membership = recovery
            .snapshot
            .as_ref()
            .map_or(self.bootstrap.clone(), |meta| meta.membership.clone());
        self.log = LogCopy::after_snapshot(base, base_term, chain, membership);
        let last = self.wal.last_index();
        if last > base {
            let entries = self
                .wal
                .read(base.next(), last.next(), u64::MAX)
                .expect("the recovered log reads back");
            self.log.write(&entries);
        }
        self.recovery = recovery.clone();
        Ok(recovery)
    }

    /// What a restart restores the core from: the log's last recovery.
    pub fn restored(&self) -> Restored {
        self.recovery.restored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use skiff_raft::{NodeId, ReadPurpose};

    /// The chain lookup of a disk that was never compacted: only the empty prefix.
    fn no_chain(index: Index, _: Term) -> Option<u64> {
        (index == Index(0)).then_some(0)
    }

    fn entry(index: u64, term: u64, command: &'static str) -> Entry {
        Entry {
            index: Index(index),
            term: Term(term),
            payload: Payload::Command(Bytes::from_static(command.as_bytes())),
        }
    }

    #[test]
    fn chains_agree_exactly_on_equal_prefixes() {
        let mut a = LogCopy::default();
        let mut b = LogCopy::default();
        a.write(&[entry(1, 1, "x"), entry(2, 1, "y"), entry(3, 2, "z")]);
        b.write(&[entry(1, 1, "x"), entry(2, 1, "y"), entry(3, 3, "z")]);
        assert_eq!(a.chain(Index(2)), b.chain(Index(2)));
        assert_ne!(a.chain(Index(3)), b.chain(Index(3)));
        b.write(&[entry(3, 2, "z")]);
        assert_eq!(a.chain(Index(3)), b.chain(Index(3)), "a rewrite supersedes the suffix");
        b.write(&[entry(2, 1, "w")]);
        assert_eq!(b.last_index(), Index(2));
        assert_ne!(a.chain(Index(2)), b.chain(Index(2)), "payloads count");
    }

    #[test]
    fn reads_respect_bounds_and_budget() {
        let mut log = LogCopy::default();
        log.write(&[entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 1, "c")]);
        let request = |low, high, max_bytes| ReadRequest {
            low: Index(low),
            high: Index(high),
            max_bytes,
            purpose: ReadPurpose::Replicate { to: NodeId(2), term: Term(1) },
        };
        assert_eq!(log.read(&request(2, 4, u64::MAX)).len(), 2);
        assert_eq!(log.read(&request(1, 4, 1)).len(), 1, "at least one entry");
        assert_eq!(log.read(&request(4, 6, u64::MAX)).len(), 0);
    }

    #[test]
    fn a_compacted_log_compares_as_the_whole_log_would() {
        let mut whole = LogCopy::default();
        whole.write(&[entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 2, "c")]);
        let mut compacted = whole.clone();
        compacted.compact_to(Index(2));
        assert_eq!(compacted.base(), Index(2));
        assert_eq!(compacted.entry(Index(2)), None, "compacted away");
        assert_eq!(compacted.term(Index(2)), Some(Term(1)), "the base's term is known");
        assert_eq!(compacted.chain(Index(2)), whole.chain(Index(2)));
        assert_eq!(compacted.chain(Index(3)), whole.chain(Index(3)));
        assert_eq!(compacted.chain(Index(1)), None);
        let chain = whole.chain(Index(2)).expect("held");
        let mut installed =
            LogCopy::after_snapshot(Index(2), Term(1), chain, Membership::default());
        installed.write(&[entry(3, 2, "c")]);
        assert_eq!(
            installed.chain(Index(3)),
            whole.chain(Index(3)),
            "a snapshot stands for its log"
        );
        assert_eq!(installed.last_index(), Index(3));
    }

    fn meta(index: u64, term: u64) -> SnapshotMeta {
        let membership = skiff_raft::Membership::new([NodeId(1)]);
        SnapshotMeta { index: Index(index), term: Term(term), membership }
    }

    /// A staged snapshot of `meta` holding `data`, written on `disk`.
    fn staged(disk: &Disk, meta: SnapshotMeta, data: &[u8]) -> StagedSnapshot {
        let mut writer = disk.snapshot_files().writer(meta).expect("starts");
        std::io::Write::write_all(&mut writer, data).expect("writes");
        writer.finish().expect("finishes")
    }

    /// Where the crash tests cut the power (a number of file-system operations, also the
    /// disk's seed), each with sectors kept in order and out of order.
    fn cuts() -> impl Iterator<Item = (u64, bool)> {
        (0..16).flat_map(|cut| [(cut, false), (cut, true)])
    }

    /// A disk (small segments) holding `count` durable entries of `term`, and their log.
    fn disk_with(seed: u64, reorder_sectors: bool, count: u64, term: u64) -> (Disk, LogCopy) {
        let mut disk =
            Disk::new(NodeId(1), seed, 256, Membership::new([NodeId(1)]), reorder_sectors);
        let entries: Vec<Entry> = (1..=count).map(|index| entry(index, term, "payload")).collect();
        disk.submit(Write::Entries(entries.clone()), Time(0), Time(1));
        assert!(disk.complete_next(None).is_ok());
        let mut log = LogCopy::default();
        log.write(&entries);
        (disk, log)
    }

    #[test]
    fn a_crash_anywhere_in_a_snapshot_save_and_compaction_keeps_the_old_state_or_the_new() {
        let mut outcomes = std::collections::BTreeSet::new();
        for (cut, reorder) in cuts() {
            let case = format!("cut {cut}, sectors reordered {reorder}");
            let (mut disk, log) = disk_with(cut, reorder, 40, 1);
            let segments = disk.segments();
            let snapshot = staged(&disk, meta(30, 1), b"the state at 30");
            disk.submit(Write::SaveSnapshot(snapshot), Time(0), Time(1));
            disk.submit(Write::Compact(Index(30)), Time(0), Time(1));
            let saved = disk.complete_next(Some(cut)).is_ok() && disk.complete_next(None).is_ok();
            let recovery = disk.crash(|index, _| log.chain(index)).expect("comes back");
            let snapshot = recovery.snapshot.clone();
            assert!(snapshot.is_none() || snapshot == Some(meta(30, 1)), "{case}: {snapshot:?}");
            assert_eq!(disk.log.last_index(), Index(40), "{case}: no entry is lost");
            assert_eq!(disk.log.chain(Index(40)), log.chain(Index(40)));
            match &snapshot {
                None => assert_eq!(disk.log.base(), Index(0), "{case}: not compacted"),
                Some(_) => {
                    let loaded = disk.wal.load_snapshot().expect("verified");
                    assert_eq!(loaded, Some((meta(30, 1), b"the state at 30".to_vec())));
                    assert!(disk.log.base() <= Index(30), "{case}");
                }
            }
            outcomes.insert((snapshot.is_some(), disk.segments() < segments, saved));
        }
        assert!(outcomes.contains(&(false, false, false)), "some cut keeps the old state");
        assert!(outcomes.contains(&(true, true, true)), "some cut keeps the new one: {outcomes:?}");
    }

    #[test]
    fn a_crash_anywhere_in_an_install_keeps_the_old_state_or_the_new() {
        let mut outcomes = std::collections::BTreeSet::new();
        for (cut, reorder) in cuts() {
            let case = format!("cut {cut}, sectors reordered {reorder}");
            let (mut disk, log) = disk_with(cut, reorder, 10, 1);
            let snapshot = staged(&disk, meta(30, 2), b"the leader's state at 30");
            let chain = 0xC4A1;
            let install = Write::InstallSnapshot { staged: snapshot, chain, log_first: false };
            disk.submit(install, Time(0), Time(1));
            let installed = disk.complete_next(Some(cut)).is_ok();
            let chain_of = |index: Index, term: Term| match (index, term) {
                (Index(30), Term(2)) => Some(chain),
                _ => log.chain(index),
            };
            let recovery = disk.crash(chain_of).expect("comes back");
            match recovery.snapshot {
                None => {
                    assert_eq!(disk.log.chain(Index(10)), log.chain(Index(10)), "{case}");
                    assert_eq!(disk.log.base(), Index(0), "{case}: the old log, whole");
                }
                Some(snapshot) => {
                    assert_eq!(snapshot, meta(30, 2), "{case}");
                    assert_eq!(
                        (disk.log.base(), disk.log.last_index(), disk.log.chain(Index(30))),
                        (Index(30), Index(30), Some(chain)),
                        "{case}: an empty log after the snapshot"
                    );
                }
            }
            outcomes.insert((disk.snapshot().is_some(), installed));
        }
        assert!(outcomes.contains(&(false, false)), "some cut keeps the old state: {outcomes:?}");
        assert!(outcomes.contains(&(true, true)), "some cut keeps the new one: {outcomes:?}");
    }

    #[test]
    fn installing_log_first_can_leave_neither_state() {
        let broken = cuts().any(|(cut, reorder)| {
            let (mut disk, log) = disk_with(cut, reorder, 10, 1);
            let snapshot = staged(&disk, meta(30, 2), b"the leader's state at 30");
            let install = Write::InstallSnapshot { staged: snapshot, chain: 7, log_first: true };
            disk.submit(install, Time(0), Time(1));
            let _ = disk.complete_next(Some(cut));
            let chain_of =
                |index: Index, term: Term| if term == Term(2) { Some(7) } else { log.chain(index) };
            match disk.crash(chain_of) {
                Err(_) => true,
                Ok(recovery) => skiff_raft::Node::new(
                    skiff_raft::Config::new(NodeId(1), [NodeId(1)]),
                    recovery.restored(),
                )
                .is_err(),
            }
        });
        assert!(broken, "the defect's window exists: the self-test can catch it");
    }

    #[test]
    fn a_crash_reordering_sectors_loses_only_unsynced_entries_and_leaves_a_prefix() {
        // Entries of a few hundred bytes: writes in flight span several sectors.
        let big = |index: u64| Entry {
            index: Index(index),
            term: Term(1),
            payload: Payload::Command(Bytes::from(vec![b'x'; 300])),
        };
        let mut out_of_order = [0, 0];
        for seed in 0..32 {
            for reorder in [false, true] {
                let bootstrap = Membership::new([NodeId(1)]);
                let mut disk = Disk::new(NodeId(1), seed, 1 << 20, bootstrap, reorder);
                let mut written = LogCopy::default();
                let synced: Vec<Entry> = (1..=4).map(big).collect();
                disk.submit(Write::Entries(synced.clone()), Time(0), Time(1));
                assert!(disk.complete_next(None).is_ok());
                written.write(&synced);
                for batch in [5..=10, 11..=16] {
                    let entries: Vec<Entry> = batch.map(big).collect();
                    disk.submit(Write::Entries(entries.clone()), Time(0), Time(1));
                    written.write(&entries);
                }
                let recovery = disk.crash(no_chain).expect("recovers");
                let last = disk.log.last_index();
                assert!(last >= Index(4), "seed {seed}, reordered {reorder}: synced entries kept");
                assert_eq!(
                    disk.log.chain(last),
                    written.chain(last),
                    "seed {seed}, reordered {reorder}: what survives is a prefix of what was written"
                );
                let torn = recovery.torn_tail.as_ref().is_some_and(|torn| torn.out_of_order);
                out_of_order[usize::from(reorder)] += u64::from(torn);
            }
        }
        assert_eq!(out_of_order[0], 0, "writes kept in order leave no valid record after a tear");
        assert!(out_of_order[1] > 0, "no crash kept sectors out of order: the option is not wired");
    }

    #[test]
    fn writes_complete_in_order_and_a_crash_loses_the_rest() {
        let mut disk = Disk::new(NodeId(1), 7, 1 << 20, Membership::new([NodeId(1)]), true);
        let hard_state = HardState { term: Term(2), vote: Some(NodeId(1)) };
        let (first, first_done) = disk.submit(Write::HardState(hard_state), Time(0), Time(50));
        let (_, second_done) =
            disk.submit(Write::Entries(vec![entry(1, 2, "a")]), Time(1), Time(5));
        assert!(second_done >= first_done, "a later write never overtakes an earlier one");
        assert_eq!(disk.pending_hard_state(), Some(first));
        assert!(
            matches!(disk.complete_next(None), Ok(Some((sequence, Durable::HardState(_)))) if sequence == first)
        );
        assert_eq!(disk.hard_state, hard_state);
        assert_eq!(disk.pending_hard_state(), None);
        let recovery = disk.crash(no_chain).expect("recovers");
        assert!(matches!(disk.complete_next(None), Ok(None)));
        assert_eq!(recovery.hard_state, hard_state, "the synced vote survives");
        assert!(disk.log.last_index() <= Index(1), "the entry write may survive, unsynced");
        assert_eq!(disk.hard_state, hard_state);
    }

    #[test]
    fn the_log_serves_reads_and_refuses_a_second_vote() {
        let mut disk = Disk::new(NodeId(1), 3, 1 << 20, Membership::new([NodeId(1)]), true);
        let vote = |node| HardState { term: Term(2), vote: Some(NodeId(node)) };
        disk.submit(Write::HardState(vote(1)), Time(0), Time(1));
        disk.submit(Write::Entries(vec![entry(1, 2, "a"), entry(2, 2, "b")]), Time(0), Time(1));
        assert!(disk.complete_next(None).is_ok());
        assert!(disk.complete_next(None).is_ok());
        let request = ReadRequest {
            low: Index(1),
            high: Index(5),
            max_bytes: u64::MAX,
            purpose: ReadPurpose::Replicate { to: NodeId(2), term: Term(2) },
        };
        assert_eq!(disk.read(&request), disk.log.read(&request));
        assert_eq!(disk.read(&request).len(), 2);
        disk.crash(no_chain).expect("recovers");
        assert_eq!(disk.log.last_index(), Index(2), "synced entries survive a crash");
        disk.submit(Write::HardState(vote(3)), Time(0), Time(1));
        assert!(
            matches!(disk.complete_next(None), Err(WriteFailure::SecondVote(_))),
            "a second vote in term 2 is refused"
        );
    }
}
