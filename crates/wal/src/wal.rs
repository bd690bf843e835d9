//! The write-ahead log itself: open, append, sync, read, compact.
//!
//! [`Wal`] is synchronous and single-threaded: every call does its I/O before it returns, and
//! nothing happens between calls. That is what lets the simulator drive it step by step on a
//! [`MemFs`](crate::MemFs), and what keeps its invariants easy to check. Group commit, the
//! overlap of many callers' appends into one fsync, is a thin layer on top
//! ([`GroupCommit`](crate::GroupCommit)).
//!
//! Writes go into a buffer of encoded records, which is written to the tail segment when it
//! grows past [`Options::write_buffer`] and at every [`Wal::sync`]. Only `sync` fsyncs (and a
//! segment roll, which must make the old segment durable before the new one exists), so a
//! caller decides when to pay for durability and pays once for everything before.
//!
//! ## Preallocation
//! Every batch is one `pwrite` and one `fdatasync`. When the write extends the file, the
//! fdatasync must also commit the new size and block allocation through the file system's
//! journal (jbd2 on ext4), which every process on the disk shares; measured here, that made an
//! fdatasync of 4 KiB cost 1.2-3.5 ms instead of 0.4-1.0 ms for one that overwrites blocks
//! already written. So [`Wal::sync`] keeps the tail segment filled with **written zeros**
//! ([`Options::preallocate`] bytes, 1 MiB by default) ahead of its last record: when fewer than
//! half of them are left, it writes the next stretch of zeros (up to the segment size) before
//! the records, and the same fdatasync makes both durable. One sync per half a preallocation
//! (512 KiB of log by default) pays the metadata commit; every other sync only overwrites.
//! Large batches (over a quarter of the preallocation, as a follower catching up writes) get
//! no zeros: the metadata commit is a small part of their cost, and zeros would double their
//! bytes; measured, a catch-up ran at half the speed with them.
//! (`fallocate` would not do: it leaves unwritten extents, and converting them to written is a
//! metadata change again, measured at 1.4 ms.)
//!
//! Zeros need no format change: a run of zeros is never a record (its type byte is 0), so
//! recovery reads a zero tail in the last segment as the end of the log and keeps it for the
//! records to come, and a torn write into it is cut as before. Overwriting in place loses one
//! thing extending kept: order. A disk writes the pages of a batch back in any order, so a
//! power cut during its fdatasync can keep a later sector and lose an earlier one, which reads
//! as the zeros it held: valid records after a hole. The batch was never acknowledged, and
//! recovery cuts it at the hole (see "Sectors out of order" in `recover.rs`). Sealed segments
//! carry no zero tail: a roll cuts the file to its records before the fdatasync that seals it,
//! so recovery's rule that only the last segment may end in anything but a whole record
//! stands. The zeros are written from the thread that syncs, a stretch at a time, rather than
//! a whole segment ahead by a background thread (etcd's `file_pipeline.go`): it stays
//! deterministic for the simulator, creates no temporary files for a crash to leave behind,
//! and allocates at most `preallocate` bytes beyond the log instead of a whole spare segment
//! per node.
//!
//! A full disk shows first when preallocating: the sync that needs more zeros fails with an
//! [`Error::Io`] whose operation is "preallocate" (kind `StorageFull`), before any of its
//! records is written. That failure does not poison the log (nothing the log relies on was
//! touched: at most some zeros landed beyond its end); the records stay buffered, and a later
//! sync, once there is room, writes and syncs them. Any other failed write of zeros (EIO)
//! poisons the log like every failed write. Records written into preallocated space need no
//! new blocks, so they never fail for lack of space (on file systems that overwrite in place,
//! as ext4 and XFS do; on copy-on-write ones, btrfs or ZFS, preallocating buys nothing).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use skiff_raft::{
    Entry, HardState, Index, LogState, NodeId, Payload, Restored, SnapshotMeta, Term,
};

use crate::catalog::Catalog;
use crate::error::{Error, Result, io_error};
use crate::fs::{File, Fs, TEMPORARY_SUFFIX};
use crate::identity;
use crate::read::{
    self, Cursor, ReadProgress, SealedRead, SealedSegment, SegmentRead, SegmentSpan,
};
use crate::record::{self, HeaderKind, MAX_PAYLOAD, SavedState, SegmentHeader};
use crate::recover::{self, Recovered, TornTail};
use crate::segment;
use crate::snapshot::{self, SnapshotFiles, SnapshotReader, StagedSnapshot};

/// How a [`Wal`] is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The node this process is; checked against the data directory's identity file.
    pub node: NodeId,
    /// The cluster the node belongs to; checked against the identity file too.
    pub cluster: u64,
    /// A segment receives no new entry once it holds this many bytes (default 64 MiB). Larger
    /// segments mean fewer files and fsyncs at rolls; smaller ones let compaction free space
    /// sooner.
    pub segment_size: u64,
    /// The distance in bytes between points of the sparse index (default 256 KiB): the most a
    /// random read scans, and 16 bytes of memory per this many bytes of log.
    pub index_interval: u64,
    /// Encoded records are written to the file once this many bytes are buffered (default
    /// 1 MiB), and at every sync.
    pub write_buffer: usize,
    /// How far ahead of its last record the tail segment is filled with written zeros
    /// (default 1 MiB; 0 turns preallocation off). An fdatasync that only overwrites blocks
    /// already allocated and written commits no file-system metadata, so it skips the journal
    /// commit an fdatasync that extends the file pays (see "Preallocation" in `wal.rs`).
    pub preallocate: u64,
}

impl Options {
    /// The default options for `node` of `cluster`.
    pub fn new(node: NodeId, cluster: u64) -> Options {
        Options {
            node,
            cluster,
            segment_size: 64 << 20,
            index_interval: 256 << 10,
            write_buffer: 1 << 20,
            preallocate: 1 << 20,
        }
    }
}

/// What [`Wal::open`] found: everything a restarting node needs, and what recovery did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The last term and vote saved.
    pub hard_state: HardState,
    /// The last commit index saved, at most the last index (it may lag the real one).
    pub commit: Index,
    /// The summary of the log: first and last index, previous term, term runs.
    pub log: LogState,
    /// The newest snapshot, if any (its data is read by [`Wal::open_snapshot`]). The log passes
    /// through it: open resets a log that does not (see [`Wal::open`]).
    pub snapshot: Option<SnapshotMeta>,
    /// The number of live segment files.
    pub segments: usize,
    /// The bytes of valid records read and verified.
    pub bytes_read: u64,
    /// The bytes of a torn tail cut off, the zeros after it included (0 after a clean
    /// shutdown: zeros preallocated after the last record are no tear, and are kept).
    pub torn_bytes: u64,
    /// What was cut off as a torn tail, where and why, for the operator's log (`None` if
    /// nothing was): a write torn in order, or a batch whose sectors reached the disk out of
    /// order, whose records after the lost sector were never acknowledged.
    pub torn_tail: Option<TornTail>,
    /// Whether open reset the log to the snapshot, because a crash had interrupted the
    /// installation of a snapshot after the snapshot was saved and before the log was reset.
    pub reset_to_snapshot: bool,
    /// Every configuration entry in the log, as `(index, configuration)` in index order: what
    /// the core needs besides the snapshot to know the configuration in force
    /// ([`Restored::memberships`]).
    pub memberships: Vec<(Index, skiff_raft::Membership)>,
}

impl Recovery {
    /// What to build the core's node from. `applied` is left at 0: the core takes the
    /// snapshot's index for it, as the state machine must be restored from the snapshot
    /// (contract item 12) before the node applies anything.
    pub fn restored(&self) -> Restored {
        Restored {
            hard_state: self.hard_state,
            log: self.log.clone(),
            commit: self.commit,
            applied: Index(0),
            snapshot: self.snapshot.clone(),
            memberships: self.memberships.clone(),
        }
    }
}

/// The durable log of one node (see the crate and module documentation).
pub struct Wal {
    /// The file system everything goes through (shared with [`SnapshotFiles`]).
    fs: Arc<dyn Fs>,
    /// The data directory.
    dir: PathBuf,
    /// The options it was opened with.
    options: Options,
    /// What the log holds and where.
    catalog: Catalog,
    /// The hard state and commit index last saved.
    state: SavedState,
    /// The tail segment, open for appending.
    tail: Box<dyn File>,
    /// The bytes of the tail segment written to the file; `pending` goes after them.
    written: u64,
    /// The length of the tail file: from `written` up to here it holds zeros, written (and
    /// synced at the next sync) ahead of the records that will overwrite them.
    zeroed: u64,
    /// The bytes of the tail segment's records as of the last sync (or open, or roll): the
    /// batch a sync makes durable is what lies after them.
    synced_size: u64,
    /// Encoded records not yet written to the file.
    pending: Vec<u8>,
    /// Whether the tail file has writes (or buffered records) not yet fsynced.
    tail_unsynced: bool,
    /// Whether the directory has creations or removals not yet fsynced.
    dir_unsynced: bool,
    /// The last entry known durable: what the last `sync` reported.
    durable: (Index, Term),
    /// Why the log refuses all work, after a failed write or fsync.
    poisoned: Option<String>,
    /// The sequence number of the next segment.
    next_sequence: u64,
    /// The newest snapshot.
    snapshot: Option<SnapshotMeta>,
    /// Where the previous read stopped.
    cursor: Option<Cursor>,
    /// A handle on the sealed segment read last, kept for the next read.
    read_file: Option<(u64, Box<dyn File>)>,
    /// The read buffer, reused across reads.
    read_buffer: Vec<u8>,
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("first_index", &self.catalog.first_index)
            .field("last_index", &self.catalog.last_index)
            .field("segments", &self.catalog.segments.len())
            .field("durable", &self.durable)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// The most zeros written by one call when preallocating.
const ZERO_CHUNK: u64 = 1 << 20;

impl Wal {
    /// Opens the log in `dir` (creating it if new), checks the directory's identity, and
    /// recovers: every record is verified, a torn tail is cut, corruption anywhere else is an
    /// error naming the file and offset.
    ///
    /// The log must pass through the newest snapshot (the core's contract item 12): its
    /// compaction point at or below the snapshot's index, and the snapshot's term at that index
    /// (as the entry there, or as the term before the log's first entry, right after an
    /// install). A log that ends before the snapshot's index or holds another term there is
    /// what a crash between saving an installed snapshot and resetting the log leaves
    /// ([`Wal::install_snapshot`]); the snapshot supersedes it, and open resets the log to it
    /// (durably, before returning). A log compacted beyond the snapshot, or one whose saved
    /// commit index covers a different entry at the snapshot's index, cannot come from a crash
    /// and is refused as corrupt.
    pub fn open(
        fs: impl Fs + 'static,
        dir: impl Into<PathBuf>,
        options: Options,
    ) -> Result<(Wal, Recovery)> {
        let fs: Arc<dyn Fs> = Arc::new(fs);
        let dir = dir.into();
        fs.create_dir_all(&dir).map_err(io_error("create directory", &dir))?;
        let names = fs.list(&dir).map_err(io_error("list", &dir))?;
        for name in names.iter().filter(|name| name.ends_with(TEMPORARY_SUFFIX)) {
            let path = dir.join(name);
            fs.remove_file(&path).map_err(io_error("remove", &path))?;
        }
        let sequences: Vec<u64> =
            names.iter().filter_map(|name| segment::parse_segment_name(name)).collect();
        identity::check_or_create(
            &*fs,
            &dir,
            &names,
            !sequences.is_empty(),
            options.node,
            options.cluster,
        )?;
        let snapshot = snapshot::newest(&*fs, &dir, &names)?;
        let next_sequence = sequences.last().map_or(1, |last| last + 1);
        let recovered = recover::recover(&*fs, &dir, &sequences, options.index_interval)?;
        let Recovered { catalog, state, bytes_read, torn_bytes, torn_tail, mut memberships } =
            recovered;
        let (catalog, state, next_sequence) = if catalog.segments.is_empty() {
            let catalog = Wal::create(&*fs, &dir, &options, snapshot.as_ref(), next_sequence)?;
            (catalog, SavedState::default(), next_sequence + 1)
        } else {
            (catalog, state, next_sequence)
        };
        let mut wal = Wal::resume(fs, dir, options, catalog, state, next_sequence)?;
        wal.snapshot = snapshot.clone();
        let reset_to_snapshot = match &snapshot {
            Some(meta) => wal.pass_through(meta)?,
            None => false,
        };
        if reset_to_snapshot {
            memberships.clear();
        }
        let recovery = Recovery {
            hard_state: wal.state.hard_state,
            commit: wal.state.commit,
            log: wal.catalog.log_state(),
            snapshot,
            segments: wal.catalog.segments.len(),
            bytes_read,
            torn_bytes,
            torn_tail,
            reset_to_snapshot,
            memberships,
        };
        Ok((wal, recovery))
    }

    /// Makes the recovered log pass through the snapshot `meta`, resetting it to the snapshot
    /// if a crash interrupted an install (see [`Wal::open`]); returns whether it reset.
    fn pass_through(&mut self, meta: &SnapshotMeta) -> Result<bool> {
        let compacted = self.catalog.first_index.prev();
        let corrupt = |reason: String| Error::Corrupt {
            file: self.dir.join(format!("snapshot-{:020}.snap", meta.index.0)),
            offset: 0,
            reason,
        };
        if compacted > meta.index {
            return Err(corrupt(format!(
                "the log is compacted up to {compacted}, beyond the newest snapshot"
            )));
        }
        let term = self.catalog.term(meta.index);
        if term == Some(meta.term) {
            return Ok(false);
        }
        if term.is_some() && self.state.commit >= meta.index {
            return Err(corrupt(format!(
                "the log's committed entry {} has term {term:?}, the snapshot's is {}",
                meta.index, meta.term
            )));
        }
        self.reset(meta)?;
        self.sync()?;
        Ok(true)
    }

    /// The first segment of a new log, durable before the open returns. With a snapshot but
    /// no segment left, the log starts after the snapshot.
    fn create(
        fs: &dyn Fs,
        dir: &Path,
        options: &Options,
        snapshot: Option<&SnapshotMeta>,
        sequence: u64,
    ) -> Result<Catalog> {
        let (first_index, prev_term) =
            snapshot.map_or((Index(1), Term(0)), |s| (s.index.next(), s.term));
        let header = SegmentHeader { sequence, first_index, prev_term, kind: HeaderKind::Reset };
        let mut bytes = Vec::new();
        record::encode_header(&mut bytes, &header);
        let path = dir.join(segment::segment_name(sequence));
        let mut file = fs.create(&path).map_err(io_error("create", &path))?;
        file.write_at(&bytes, 0).map_err(io_error("write", &path))?;
        file.sync_data().map_err(io_error("fsync", &path))?;
        fs.sync_dir(dir).map_err(io_error("fsync directory", dir))?;
        let mut catalog = Catalog::new(options.index_interval);
        catalog
            .start_segment(&header, bytes.len() as u64, true)
            .expect("the first header of a new log is always valid");
        Ok(catalog)
    }

    /// The log as recovered (or created), appending to the tail segment.
    fn resume(
        fs: Arc<dyn Fs>,
        dir: PathBuf,
        options: Options,
        catalog: Catalog,
        mut state: SavedState,
        next_sequence: u64,
    ) -> Result<Wal> {
        let tail_path = dir.join(segment::segment_name(catalog.tail().sequence));
        let tail = fs.open(&tail_path).map_err(io_error("open", &tail_path))?;
        // Recovery left only zeros after the tail's last record, if anything.
        let zeroed = tail.size().map_err(io_error("size", &tail_path))?;
        assert!(
            zeroed >= catalog.tail().size,
            "the tail file ({zeroed} bytes) is shorter than its records ({} bytes)",
            catalog.tail().size
        );
        // A commit index saved before the entries it covers were written can outlive them in a
        // crash; a lower commit index is always safe to restart from.
        state.commit = state.commit.min(catalog.last_index);
        Ok(Wal {
            fs,
            dir,
            options,
            written: catalog.tail().size,
            zeroed,
            synced_size: catalog.tail().size,
            durable: (catalog.last_index, catalog.last_term()),
            catalog,
            state,
            tail,
            pending: Vec::new(),
            tail_unsynced: false,
            dir_unsynced: false,
            poisoned: None,
            next_sequence,
            snapshot: None,
            cursor: None,
            read_file: None,
            read_buffer: Vec::new(),
        })
    }
}

impl Wal {
    /// The index of the first entry; entries below it were compacted away.
    pub fn first_index(&self) -> Index {
        self.catalog.first_index
    }

    /// The index of the last entry; `first_index - 1` when the log is empty.
    pub fn last_index(&self) -> Index {
        self.catalog.last_index
    }

    /// The term of the last entry (of the entry before the log, when it is empty).
    pub fn last_term(&self) -> Term {
        self.catalog.last_term()
    }

    /// The term of the entry at `index`, if the log holds it or it is `first_index - 1`.
    pub fn term(&self, index: Index) -> Option<Term> {
        self.catalog.term(index)
    }

    /// The summary of the log a restarting core needs.
    pub fn log_state(&self) -> LogState {
        self.catalog.log_state()
    }

    /// The last hard state saved (durable after the next [`Wal::sync`]).
    pub fn hard_state(&self) -> HardState {
        self.state.hard_state
    }

    /// The last commit index saved.
    pub fn commit(&self) -> Index {
        self.state.commit
    }

    /// The last entry (index and term) that the last [`Wal::sync`] made durable.
    pub fn durable(&self) -> (Index, Term) {
        self.durable
    }

    /// The newest snapshot saved.
    pub fn snapshot(&self) -> Option<&SnapshotMeta> {
        self.snapshot.as_ref()
    }

    /// The snapshot files of the data directory, for writing, receiving and reading snapshots
    /// from other threads (see `snapshot.rs`).
    pub fn snapshot_files(&self) -> SnapshotFiles {
        SnapshotFiles::new(self.fs.clone(), self.dir.clone())
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Why the log refuses all work, if an earlier write or fsync failed.
    pub fn poisoned(&self) -> Option<&str> {
        self.poisoned.as_deref()
    }

    /// The number of live segment files (superseded ones waiting for compaction excluded).
    pub fn segment_count(&self) -> usize {
        self.catalog.segments.len()
    }

    /// The approximate bytes of memory the catalog holds: term runs and sparse index points.
    /// It grows by 16 bytes per `index_interval` of log, not per entry.
    pub fn index_memory(&self) -> usize {
        let points: usize = self.catalog.segments.iter().map(|s| s.sparse.len()).sum();
        let pair = std::mem::size_of::<(Index, u64)>();
        points * pair + self.catalog.term_starts.len() * pair
    }

    /// Refuses all work once poisoned.
    fn check(&self) -> Result<()> {
        match &self.poisoned {
            Some(reason) => Err(Error::Poisoned { reason: reason.clone() }),
            None => Ok(()),
        }
    }

    /// Poisons the log after a failed write or fsync, and returns the error.
    fn fail(&mut self, operation: &'static str, path: PathBuf, source: io::Error) -> Error {
        self.poisoned = Some(format!("{operation} {}: {source}", path.display()));
        Error::Io { operation, path, source }
    }

    /// The path of the segment with this sequence number.
    fn segment_path(&self, sequence: u64) -> PathBuf {
        self.dir.join(segment::segment_name(sequence))
    }

    /// Appends entries, superseding every stored entry at or after the first one's index: a
    /// suffix truncation when that index is not past the log, written as a new segment whose
    /// header says so (nothing is rewritten in place). Durable after the next [`Wal::sync`].
    ///
    /// Panics if the entries do not follow the log (a gap, indexes not consecutive, a term
    /// going backwards) or would supersede compacted or committed entries: those are bugs.
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        self.check()?;
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let limit = MAX_PAYLOAD as usize - record::ENTRY_FIXED_LEN;
        for entry in entries {
            if let Payload::Command(command) = &entry.payload
                && command.len() > limit
            {
                return Err(Error::EntryTooLarge {
                    index: entry.index,
                    size: command.len(),
                    limit,
                });
            }
        }
        for pair in entries.windows(2) {
            assert_eq!(pair[1].index, pair[0].index.next(), "appended indexes are not consecutive");
            assert!(pair[1].term >= pair[0].term, "term goes backwards at entry {}", pair[1].index);
        }
        let last = self.catalog.last_index;
        assert!(first.index <= last.next(), "a gap in the log: entry {} after {last}", first.index);
        assert!(
            first.index >= self.catalog.first_index,
            "entry {} supersedes compacted entries: the log starts at {}",
            first.index,
            self.catalog.first_index
        );
        let prev_term =
            self.catalog.term(first.index.prev()).expect("the first index is in the log");
        assert!(
            first.term >= prev_term,
            "term goes backwards: entry {} has term {} after term {prev_term}",
            first.index,
            first.term
        );
        if first.index <= last {
            assert!(
                first.index > self.state.commit,
                "superseding committed entry {} (commit index {})",
                first.index,
                self.state.commit
            );
            self.roll(first.index, prev_term, HeaderKind::Follows)?;
        }
        for entry in entries {
            if self.catalog.tail().size >= self.options.segment_size {
                self.roll(entry.index, self.catalog.last_term(), HeaderKind::Follows)?;
            }
            let offset = self.catalog.tail().size;
            let before = self.pending.len();
            record::encode_entry(&mut self.pending, entry);
            // Set at once, not after the loop: a roll later in this batch must fsync these.
            self.tail_unsynced = true;
            let end = offset + (self.pending.len() - before) as u64;
            if let Err(reason) = self.catalog.push_entry(entry.index, entry.term, offset, end) {
                panic!("an appended entry does not follow the log: {reason}");
            }
            if self.pending.len() >= self.options.write_buffer {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// Saves the term and vote; durable after the next [`Wal::sync`]. Saving the state already
    /// saved writes nothing.
    ///
    /// Panics if the term goes backwards or the vote changes within a term (Raft §5.2).
    pub fn save_hard_state(&mut self, hard_state: HardState) -> Result<()> {
        self.check()?;
        let saved = self.state.hard_state;
        assert!(
            hard_state.term >= saved.term,
            "term goes backwards: {} -> {}",
            saved.term,
            hard_state.term
        );
        if hard_state.term == saved.term && saved.vote.is_some() {
            assert_eq!(hard_state.vote, saved.vote, "a second vote in term {}", saved.term);
        }
        if hard_state == saved {
            return Ok(());
        }
        self.state.hard_state = hard_state;
        self.write_state()
    }

    /// Saves the commit index; durable after the next [`Wal::sync`]. A commit index not above
    /// the saved one is ignored: the saved one may lag the real one, never lead it.
    pub fn save_commit(&mut self, commit: Index) -> Result<()> {
        self.check()?;
        if commit <= self.state.commit {
            return Ok(());
        }
        self.state.commit = commit;
        self.write_state()
    }

    /// Buffers a state record with the current hard state and commit index.
    fn write_state(&mut self) -> Result<()> {
        let before = self.pending.len();
        record::encode_state(&mut self.pending, &self.state);
        self.catalog.tail_mut().size += (self.pending.len() - before) as u64;
        self.tail_unsynced = true;
        if self.pending.len() >= self.options.write_buffer {
            self.flush()?;
        }
        Ok(())
    }

    /// Makes everything appended and saved so far durable: writes the buffer, fsyncs the tail
    /// segment, and fsyncs the directory if segments were created. Returns the last entry,
    /// now durable: what the core's `persisted` wants. Costs nothing if nothing changed.
    ///
    /// A failed fsync poisons the log: it is never retried.
    pub fn sync(&mut self) -> Result<(Index, Term)> {
        self.check()?;
        if !self.tail_unsynced && !self.dir_unsynced {
            return Ok(self.durable);
        }
        self.preallocate()?;
        self.flush()?;
        if self.tail_unsynced {
            if let Err(error) = self.tail.sync_data() {
                return Err(self.fail(
                    "fsync",
                    self.segment_path(self.catalog.tail().sequence),
                    error,
                ));
            }
            self.tail_unsynced = false;
        }
        if self.dir_unsynced {
            if let Err(error) = self.fs.sync_dir(&self.dir) {
                return Err(self.fail("fsync directory", self.dir.clone(), error));
            }
            self.dir_unsynced = false;
        }
        self.durable = (self.catalog.last_index, self.catalog.last_term());
        self.synced_size = self.written;
        Ok(self.durable)
    }

    /// Writes the buffered records to the tail segment (no fsync).
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.tail.write_at(&self.pending, self.written) {
            return Err(self.fail("write", self.segment_path(self.catalog.tail().sequence), error));
        }
        self.written += self.pending.len() as u64;
        self.zeroed = self.zeroed.max(self.written);
        self.pending.clear();
        Ok(())
    }

    /// Writes the next stretch of zeros after the records (those buffered included) if fewer
    /// than half of [`Options::preallocate`] are left, up to `preallocate` bytes after them but
    /// not past the segment size (see "Preallocation" in the module documentation). A batch of
    /// more than a quarter of `preallocate` gets none: it would overwrite most of them at once,
    /// so they would double its bytes for one metadata commit saved over many bytes (a
    /// follower catching up took twice as long with them). Called by
    /// `sync` before the records are written, so that the fdatasync covers both, and so that a
    /// full disk shows before any record is written: that error is returned without poisoning
    /// the log, which it leaves as it was. Any other write error poisons, as for any write.
    fn preallocate(&mut self) -> Result<()> {
        let ahead = self.options.preallocate;
        let end = self.written + self.pending.len() as u64;
        let limit = self.options.segment_size;
        // Zeros beyond the limit can be there after a crash; they are enough.
        let enough = self.zeroed >= (end + ahead / 2).min(limit);
        let large = end - self.synced_size > ahead / 4;
        if ahead == 0 || end >= limit || enough || large {
            return Ok(());
        }
        let start = self.zeroed.max(end);
        let target = (end + ahead).min(limit);
        let zeros = vec![0; (target - start).min(ZERO_CHUNK) as usize];
        let mut offset = start;
        while offset < target {
            let length = (target - offset).min(zeros.len() as u64) as usize;
            if let Err(source) = self.tail.write_at(&zeros[..length], offset) {
                let path = self.segment_path(self.catalog.tail().sequence);
                if source.kind() == io::ErrorKind::StorageFull {
                    return Err(Error::Io { operation: "preallocate", path, source });
                }
                return Err(self.fail("preallocate", path, source));
            }
            offset += length as u64;
        }
        self.zeroed = target;
        self.tail_unsynced = true;
        Ok(())
    }

    /// Starts a new segment whose first entry will be `first_index` (after `prev_term`). The
    /// old tail is made durable first, so that only the last segment can ever have a torn tail.
    fn roll(&mut self, first_index: Index, prev_term: Term, kind: HeaderKind) -> Result<()> {
        self.flush()?;
        // A sealed segment ends with its last record: recovery calls anything after it
        // corruption. The file's own size is asked, not `zeroed`: a preallocation that failed
        // part way may have left zeros beyond it. The cut is made durable by the fdatasync
        // below, before the next segment exists.
        let path = self.segment_path(self.catalog.tail().sequence);
        let size = match self.tail.size() {
            Ok(size) => size,
            Err(error) => return Err(self.fail("size", path, error)),
        };
        if size > self.written {
            if let Err(error) = self.tail.set_len(self.written) {
                return Err(self.fail("cut the preallocated tail of", path, error));
            }
            self.tail_unsynced = true;
        }
        self.zeroed = self.written;
        if self.tail_unsynced {
            if let Err(error) = self.tail.sync_data() {
                return Err(self.fail(
                    "fsync",
                    self.segment_path(self.catalog.tail().sequence),
                    error,
                ));
            }
            self.tail_unsynced = false;
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let path = self.segment_path(sequence);
        let file = match self.fs.create(&path) {
            Ok(file) => file,
            Err(error) => return Err(self.fail("create", path, error)),
        };
        let header = SegmentHeader { sequence, first_index, prev_term, kind };
        record::encode_header(&mut self.pending, &header);
        if self.state != SavedState::default() {
            // Every segment repeats the state, so that compaction never deletes the last copy.
            record::encode_state(&mut self.pending, &self.state);
        }
        let size = self.pending.len() as u64;
        if let Err(reason) = self.catalog.start_segment(&header, size, false) {
            panic!("a new segment does not fit the log: {reason}");
        }
        self.tail = file;
        self.written = 0;
        self.zeroed = 0;
        self.synced_size = 0;
        self.tail_unsynced = true;
        self.dir_unsynced = true;
        self.cursor = None;
        Ok(())
    }

    /// Discards the whole log and starts it again after a snapshot: the next entry appended is
    /// `snapshot.index + 1`. For a follower that installed a snapshot from its leader; save the
    /// snapshot first ([`Wal::install_snapshot`] does both). Durable after the next
    /// [`Wal::sync`].
    pub fn reset(&mut self, snapshot: &SnapshotMeta) -> Result<()> {
        self.check()?;
        assert!(
            snapshot.index >= self.state.commit,
            "a reset to {} would discard committed entries up to {}",
            snapshot.index,
            self.state.commit
        );
        self.roll(snapshot.index.next(), snapshot.term, HeaderKind::Reset)
    }

    /// Reads entries `[low, high)`, stopping before the entry that would take the total past
    /// `max_bytes` (by [`Entry::size`]), but always returning at least one entry. Every record
    /// read is verified against its checksum again, and its index and term against the log.
    pub fn read(&mut self, low: Index, high: Index, max_bytes: u64) -> Result<Vec<Entry>> {
        if !self.check_read(low, high)? {
            return Ok(Vec::new());
        }
        // The file must hold every record asked for: write out the buffer (no fsync).
        if !self.pending.is_empty() && high > self.catalog.tail().first_index {
            self.flush()?;
        }
        let (mut position, mut offset) = self.start_of(low);
        let mut progress = ReadProgress::new(low, high, max_bytes);
        loop {
            let sequence = self.catalog.segments[position].sequence;
            let end = self.read_segment(position, offset, &mut progress)?;
            match end {
                SegmentRead::Done => {
                    self.cursor = progress.stopped_at.map(|offset| Cursor {
                        sequence,
                        index: progress.next,
                        offset,
                    });
                    return Ok(progress.entries);
                }
                SegmentRead::Continue => {
                    position += 1;
                    offset = 0;
                }
            }
        }
    }

    /// Plans a read like [`Wal::read`]'s of entries `[low, high)` from sealed segments, to run
    /// without the log on another thread ([`SealedReader::run`]; see `read.rs`): locates the
    /// first record and opens the segments the read may need, and reads nothing. `None` when
    /// `low` lies in the tail segment, which only [`Wal::read`] reads, or the range is empty.
    /// The read it plans stops where the sealed segments end, so it may return a prefix of the
    /// range even within the byte budget.
    ///
    /// # Errors
    /// As [`Wal::read`]: a poisoned log, a range outside the log, a segment that does not open.
    pub fn plan_sealed_read(
        &mut self,
        low: Index,
        high: Index,
        max_bytes: u64,
    ) -> Result<Option<SealedRead>> {
        if !self.check_read(low, high)? {
            return Ok(None);
        }
        let (first, offset) = self.catalog.locate(low).expect("a live index has a segment");
        let sealed = &self.catalog.segments[..self.catalog.segments.len() - 1];
        let mut segments = Vec::new();
        let mut bytes = 0;
        for segment in sealed.iter().skip(first) {
            // Enough segments for the budget: their record bytes exceed the entries' sizes.
            if segment.first_index >= high || (bytes > max_bytes && !segments.is_empty()) {
                break;
            }
            let path = self.segment_path(segment.sequence);
            let file = self.fs.open(&path).map_err(io_error("open", &path))?;
            bytes += segment.size - if segments.is_empty() { offset } else { 0 };
            segments.push(SealedSegment {
                sequence: segment.sequence,
                file,
                size: segment.size,
                last_index: segment.last_index,
            });
        }
        let Some(last) = segments.last() else { return Ok(None) };
        // The terms of the entries planned: from the one `low` has to the last segment's last.
        let terms = &self.catalog.term_starts;
        let start = terms.partition_point(|&(first, _)| first <= low) - 1;
        let end = terms.partition_point(|&(first, _)| first <= last.last_index);
        let term_starts = terms[start..end].to_vec();
        Ok(Some(SealedRead {
            dir: self.dir.clone(),
            low,
            high,
            max_bytes,
            offset,
            segments,
            term_starts,
        }))
    }

    /// Checks a read of `[low, high)` against the log: an error if the log is poisoned or the
    /// range reaches outside it; whether there is anything to read.
    fn check_read(&self, low: Index, high: Index) -> Result<bool> {
        self.check()?;
        let (first, last) = (self.catalog.first_index, self.catalog.last_index);
        if low < first {
            return Err(Error::Compacted { index: low, first_index: first });
        }
        if high > last.next() {
            return Err(Error::Unavailable { index: high.prev(), last_index: last });
        }
        Ok(low < high)
    }

    /// Where a read of `low` starts: the read cursor if the previous read stopped there, else
    /// the sparse index.
    fn start_of(&self, low: Index) -> (usize, u64) {
        let (position, offset) = self.catalog.locate(low).expect("a live index has a segment");
        match self.cursor {
            Some(cursor)
                if cursor.index == low
                    && cursor.sequence == self.catalog.segments[position].sequence =>
            {
                (position, cursor.offset)
            }
            _ => (position, offset),
        }
    }

    /// Reads entries from the segment at `position` of the catalog, from `offset` on.
    fn read_segment(
        &mut self,
        position: usize,
        offset: u64,
        progress: &mut ReadProgress,
    ) -> Result<SegmentRead> {
        let is_tail = position + 1 == self.catalog.segments.len();
        let sequence = self.catalog.segments[position].sequence;
        // The path is built only to open the file or to name it in an error: formatting it on
        // every read cost a quarter of a short read.
        let dir = &self.dir;
        let path = || dir.join(segment::segment_name(sequence));
        if !is_tail && self.read_file.as_ref().is_none_or(|(cached, _)| *cached != sequence) {
            let path = path();
            let file = self.fs.open(&path).map_err(io_error("open", &path))?;
            self.read_file = Some((sequence, file));
        }
        let (file, limit): (&dyn File, u64) = match &self.read_file {
            Some((_, file)) if !is_tail => (&**file, self.catalog.segments[position].size),
            _ => (&*self.tail, self.written),
        };
        let span = SegmentSpan {
            file,
            path: &path,
            offset,
            limit,
            last_index: self.catalog.segments[position].last_index,
        };
        let catalog = &self.catalog;
        let buffer = std::mem::take(&mut self.read_buffer);
        let (outcome, buffer) =
            read::read_segment(&span, |index| catalog.term(index), progress, buffer);
        self.read_buffer = buffer;
        outcome
    }

    /// Deletes whole segments whose entries are all at or below `up_to` (the tail segment is
    /// always kept), and every superseded segment. The log then starts at the first entry of
    /// the oldest segment kept, which may be below `up_to + 1`. Call it once a snapshot covering
    /// `up_to` is durable.
    ///
    /// Everything is synced first, so no deletion can outrun the records that superseded what
    /// it deletes. Each deletion is made durable before the next, in an order such that a
    /// crash in the middle leaves a log that recovery reads as the same one: it never finds a
    /// gap. Superseded segments go first, newest first (a segment that follows one deleted
    /// before it would start past the log before it), except those with a reset header: a
    /// reset kills every segment before it, so it goes only once they are all gone, oldest
    /// reset first (sim seed 28724: a superseded reset deleted first revived the segments it
    /// had killed, before a segment that follows from the reset's first index). Then the live
    /// segments compacted away, oldest first.
    pub fn compact(&mut self, up_to: Index) -> Result<()> {
        self.check()?;
        self.sync()?;
        let (mut resets, mut dead) = (Vec::new(), Vec::new());
        for &(sequence, kind) in &self.catalog.dead {
            match kind {
                HeaderKind::Reset => resets.push(sequence),
                HeaderKind::Follows => dead.push(sequence),
            }
        }
        dead.sort_unstable_by(|a, b| b.cmp(a));
        resets.sort_unstable();
        let sealed = &self.catalog.segments[..self.catalog.segments.len() - 1];
        let count = sealed.iter().take_while(|segment| segment.last_index <= up_to).count();
        let live = sealed[..count].iter().map(|segment| segment.sequence);
        let doomed: Vec<u64> = dead.into_iter().chain(resets).chain(live).collect();
        for sequence in doomed {
            self.remove_segment(sequence)?;
        }
        self.catalog.drop_prefix(count);
        self.cursor = None;
        Ok(())
    }

    /// Removes one segment file, durably.
    fn remove_segment(&mut self, sequence: u64) -> Result<()> {
        if self.read_file.as_ref().is_some_and(|(cached, _)| *cached == sequence) {
            self.read_file = None;
        }
        let path = self.segment_path(sequence);
        if let Err(error) = self.fs.remove_file(&path) {
            return Err(self.fail("remove", path, error));
        }
        if let Err(error) = self.fs.sync_dir(&self.dir) {
            return Err(self.fail("fsync directory", self.dir.clone(), error));
        }
        Ok(())
    }

    /// Saves a snapshot held in memory durably (temporary file, fsync, rename, directory
    /// fsync) and removes older ones: [`SnapshotFiles::writer`] and
    /// [`Wal::save_staged_snapshot`] in one call. A failure poisons the log, like any failed
    /// write.
    pub fn save_snapshot(&mut self, meta: SnapshotMeta, data: &[u8]) -> Result<()> {
        self.check()?;
        let index = meta.index;
        let staged = self.snapshot_files().writer(meta).and_then(|mut writer| {
            io::Write::write_all(&mut writer, data).map_err(|source| Error::Io {
                operation: "write",
                path: self.dir.clone(),
                source,
            })?;
            writer.finish()
        });
        match staged {
            Ok(staged) => self.save_staged_snapshot(staged),
            Err(error) => {
                self.poisoned = Some(format!("saving snapshot {index}: {error}"));
                Err(error)
            }
        }
    }

    /// Makes a staged snapshot (written by a [`SnapshotWriter`](crate::SnapshotWriter), already
    /// fsynced) the newest snapshot: rename, directory fsync, then older snapshots removed. It
    /// costs no data write, so it may run on the log's thread between batches. A failure
    /// poisons the log.
    ///
    /// Panics unless the snapshot is newer than the newest saved: the caller must never let an
    /// older state replace a newer one (the core's `snapshot_meta_at` refuses those).
    pub fn save_staged_snapshot(&mut self, staged: StagedSnapshot) -> Result<()> {
        self.check()?;
        let index = staged.meta().index;
        if let Some(newest) = &self.snapshot {
            assert!(index > newest.index, "snapshot {index} is not newer than {newest}");
        }
        match snapshot::save(&*self.fs, &self.dir, staged) {
            Ok(meta) => {
                self.snapshot = Some(meta);
                Ok(())
            }
            Err(error) => {
                self.poisoned = Some(format!("saving snapshot {index}: {error}"));
                Err(error)
            }
        }
    }

    /// Installs a snapshot fetched from the leader (the core's contract item 11): saves it,
    /// then resets the log to an empty one after it, durably. A crash at any point leaves the
    /// old snapshot and log, or the new snapshot — and a log that [`Wal::open`] then resets to
    /// it — never a mix. Superseded segments go at the next [`Wal::compact`].
    pub fn install_snapshot(&mut self, staged: StagedSnapshot) -> Result<()> {
        let meta = staged.meta().clone();
        self.save_staged_snapshot(staged)?;
        self.reset(&meta)?;
        self.sync()?;
        Ok(())
    }

    /// Opens the newest snapshot for reading its data, verified as it is read; `None` if there
    /// is none. For restoring a state machine at restart (contract item 12).
    pub fn open_snapshot(&self) -> Result<Option<(SnapshotMeta, SnapshotReader)>> {
        self.check()?;
        let Some(meta) = &self.snapshot else { return Ok(None) };
        match self.snapshot_files().open(meta.index)? {
            Some((found, reader)) if found == *meta => Ok(Some((found, reader))),
            Some((found, _)) => Err(Error::Corrupt {
                file: self.dir.clone(),
                offset: 0,
                reason: format!("snapshot {meta} was saved, but its file says {found}"),
            }),
            None => Err(Error::Corrupt {
                file: self.dir.clone(),
                offset: 0,
                reason: format!("snapshot {meta} was saved, but its file is missing"),
            }),
        }
    }

    /// Reads and verifies the newest snapshot, if any, whole into memory (for tests and the
    /// simulator; [`Wal::open_snapshot`] streams).
    pub fn load_snapshot(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>> {
        let Some((meta, mut reader)) = self.open_snapshot()? else { return Ok(None) };
        let mut data = Vec::new();
        io::Read::read_to_end(&mut reader, &mut data).map_err(|error| Error::Corrupt {
            file: self.dir.clone(),
            offset: 0,
            reason: format!("reading snapshot {}: {error}", meta.index),
        })?;
        Ok(Some((meta, data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memfs::MemFs;

    fn entry(index: u64, term: u64) -> Entry {
        Entry { index: Index(index), term: Term(term), payload: Payload::Noop }
    }

    fn open() -> Wal {
        let (wal, _) =
            Wal::open(MemFs::new(0), "/data", Options::new(NodeId(1), 1)).expect("opens");
        wal
    }

    #[test]
    #[should_panic(expected = "a gap in the log")]
    fn a_gap_in_appended_indexes_panics() {
        let mut wal = open();
        wal.append(&[entry(1, 1)]).expect("appends");
        let _ = wal.append(&[entry(3, 1)]);
    }

    #[test]
    #[should_panic(expected = "term goes backwards")]
    fn a_term_going_backwards_panics() {
        let mut wal = open();
        wal.append(&[entry(1, 2)]).expect("appends");
        let _ = wal.append(&[entry(2, 1)]);
    }

    #[test]
    #[should_panic(expected = "superseding committed entry 2")]
    fn superseding_committed_entries_panics() {
        let mut wal = open();
        wal.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]).expect("appends");
        wal.save_commit(Index(2)).expect("saves");
        let _ = wal.append(&[entry(2, 2)]);
    }

    #[test]
    #[should_panic(expected = "a second vote in term 3")]
    fn a_second_vote_in_a_term_panics() {
        let mut wal = open();
        wal.save_hard_state(HardState { term: Term(3), vote: Some(NodeId(1)) }).expect("saves");
        let _ = wal.save_hard_state(HardState { term: Term(3), vote: Some(NodeId(2)) });
    }

    #[test]
    fn a_sync_with_nothing_new_does_no_io() {
        let fs = MemFs::new(0);
        let (mut wal, _) =
            Wal::open(fs.clone(), "/data", Options::new(NodeId(1), 1)).expect("opens");
        wal.append(&[entry(1, 1)]).expect("appends");
        wal.sync().expect("syncs");
        let operations = fs.operations();
        assert_eq!(wal.sync().expect("syncs"), (Index(1), Term(1)));
        wal.save_hard_state(HardState::default()).expect("the same state again");
        wal.save_commit(Index(0)).expect("an older commit index");
        assert_eq!(wal.sync().expect("syncs"), (Index(1), Term(1)));
        assert_eq!(fs.operations(), operations, "no write, no fsync");
    }
}
