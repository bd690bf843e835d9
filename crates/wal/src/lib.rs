//! # skiff-wal: the durable storage of a skiff node
//!
//! A Raft node must keep three things across a crash (Raft Figure 2): its current term and
//! vote, so that it never votes twice in a term (§5.2); its log, so that an entry it
//! acknowledged is never lost (§5.3, §5.4); and, once the log is compacted, a snapshot of the
//! state machine (§7). This crate keeps all three in one data directory, knowing nothing about
//! elections: it serves the core's `PersistHardState`, `PersistEntries` and `ReadEntries`
//! actions, and at open it hands back what [`skiff_raft::Node::new`] needs
//! ([`Recovery::restored`]).
//!
//! ## The story in files
//! - `record.rs`: the record, the unit of everything written, and its byte layout: length,
//!   crc32c, type, payload. Read this first.
//! - `segment.rs`: segment files (`00000000000000000001.wal`) and reading their records.
//! - `catalog.rs`: the in-memory summary: term runs, live segments, sparse index.
//! - `recover.rs`: open-time recovery: verify everything, cut a torn tail, refuse corruption.
//! - `wal.rs`: [`Wal`], the synchronous log: append, sync, read, compact, reset.
//! - `read.rs`: reading records back into entries, and [`SealedRead`], a read of sealed
//!   segments planned with the log and run without it, on another thread.
//! - `group_commit.rs`: [`GroupCommit`], a writer thread sharing one fsync among many appends.
//! - `identity.rs`, `snapshot.rs`: the identity file and snapshot files; `membership.rs`: the
//!   byte layout of a cluster configuration, in configuration entries and snapshot headers.
//! - `fs.rs`, `memfs.rs`: the file-system trait, [`StdFs`] and the fault-injecting [`MemFs`].
//!
//! ## The log on disk
//! The log is a sequence of **segment files**, each a sequence of checksummed records: a
//! header, then entries and state records. Segments are append-only and **never rewritten in
//! place**. A truncation (a new leader superseding entries that were never committed, Raft
//! §5.3) is not an overwrite but a new segment whose header says "the log continues from
//! index `i`": it supersedes every older entry from `i` on, which stays on disk, dead, until
//! compaction deletes its file. As with a block DAG in Chained Raft, nothing uncommitted is
//! destroyed; it is superseded. A reset header (after installing a snapshot) supersedes
//! everything older.
//!
//! The hard state (term, vote) and the commit index are **state records in the same stream**,
//! so a vote and the entries around it share one fsync, and every new segment repeats the
//! latest state, so that compaction never deletes its last copy. The identity file (node and
//! cluster id, refusing a wrong data directory) and snapshot files are whole files written
//! atomically: temporary file, fsync, rename, directory fsync (snapshots are streamed into
//! their temporary file, so their size is not bounded by memory).
//!
//! ## The driver's use
//! 1. [`Wal::open`] recovers and returns the [`Recovery`]; build the core's node from
//!    [`Recovery::restored`].
//! 2. For `PersistHardState`, [`Wal::save_hard_state`]; for `PersistEntries`, [`Wal::append`]
//!    (which writes the superseding header itself when the entries start inside the log).
//! 3. [`Wal::sync`] makes everything before it durable with one fdatasync (plus a directory
//!    fsync if a segment was created) and returns the last entry's index and term: hand that
//!    to the core's `persisted`. Nothing is durable before `sync` returns, and a hard state
//!    must be synced before the messages that follow it are sent (contract item 1).
//! 4. For `ReadEntries`, [`Wal::read`].
//! 5. Snapshots: stream a local one into a [`SnapshotWriter`] (from
//!    [`Wal::snapshot_files`], on any thread), then [`Wal::save_staged_snapshot`], then
//!    [`Wal::compact`] up to some index at or below it. A snapshot fetched from the leader
//!    arrives through a [`SnapshotReceiver`] and is installed with [`Wal::install_snapshot`]
//!    (snapshot and log reset together: a crash leaves the old state or the new). At restart,
//!    [`Wal::open_snapshot`] streams the newest snapshot back; open has already made the log
//!    pass through it.
//!
//! The [`Wal`] is synchronous and single-threaded so that the deterministic simulator can drive
//! it on a [`MemFs`], one step at a time. [`GroupCommit`] puts it on a writer thread for the
//! server: submissions return at once, and one fsync covers everything queued; and when the
//! writer is idle, [`GroupCommit::write_now`] writes on the caller's thread, saving the two
//! thread wake-ups of a hand-over (a follower's acknowledgement waits on them).
//!
//! ## Invariants
//! - Only [`Wal::sync`] reports entries durable, and only after the fdatasync (and the
//!   directory fsync, for a new segment) returned `Ok`.
//! - After its last record, the tail segment holds nothing but zeros, written ahead so that
//!   an fdatasync overwrites allocated blocks (see "Preallocation" in `wal.rs`); a sealed
//!   segment ends with its last record.
//! - **An fsync error is fatal and never retried**: after a failed fsync the kernel may have
//!   dropped the dirty pages and marked them clean, so a retry can succeed with the data gone
//!   (PostgreSQL's "fsyncgate", 2018). The same holds for a failed write. The log is then
//!   poisoned: every later call fails with [`Error::Poisoned`], and only a restart (which runs
//!   recovery) goes on.
//! - A segment is fsynced before the next one is created, so only the last segment can hold a
//!   torn write. Recovery cuts a torn tail there (a write torn in order, or a batch whose
//!   sectors reached the disk out of order, known by the zeros a lost sector leaves, with
//!   valid records after it that were never acknowledged), says what it cut
//!   ([`Recovery::torn_tail`]), and refuses, naming file and offset, damage anywhere else or
//!   of any other shape: it never drops entries that may have been acknowledged, unless the
//!   disk itself returns zeros for sectors it had reported flushed. See `recover.rs`.
//! - Appended indexes have no gaps and terms never decrease; committed entries (up to the
//!   saved commit index) are never superseded; terms never go back and a vote never changes
//!   within a term. Breaking any of these is a bug in the caller and panics.
//! - Every record is verified by its checksum twice: at open, and again when read.
//!
//! ## Memory
//! The log is never held in memory. What grows with it is the catalog: one `(index, term)`
//! pair per term, and per segment a **sparse index** of one offset every `index_interval`
//! bytes (256 KiB): 64 KiB of memory per GiB of log, whatever the entry size, against 95 to
//! 190 MiB per GiB for a dense index (8 or 16 bytes per entry) of 64-byte entries. A random read scans at most `index_interval`
//! bytes; sequential reads continue from a cursor where the last one stopped. Sealed segments
//! are opened on demand, one handle cached, so file descriptors stay flat too.
//!
//! ## File access
//! Everything goes through the [`Fs`] and [`File`] traits: [`StdFs`] for real (pwrite,
//! pread, fdatasync, directory fsync; never mmap, whose I/O errors arrive as SIGBUS), and
//! [`MemFs`] for tests and the simulator, which loses unsynced data in a crash, tears writes
//! at any byte or keeps their sectors out of order, flips bits, and fails writes and fsyncs,
//! all from a seed.
//!
//! ## Performance
//! `cargo bench -p skiff-wal` measures the log against a raw `write` + `fdatasync` loop in the
//! same run (see `benches/wal.rs`). On the 2-core development VM (ext4 on a virtual disk,
//! November 2026), medians over three runs:
//! - one append and sync: 126-184 µs for 64-byte entries against 134-180 µs raw (0.91-1.08x),
//!   162-200 µs against 147-201 µs for 256 bytes; 4 KiB entries cost up to 1.5x raw, as each
//!   record (4,122 bytes) straddles two pages;
//! - 1 MiB per fsync: 395-466 MB/s against 470-533 MB/s raw (84-89 %); the difference is
//!   the CPU for copying and checksumming, about 0.23 ms per MiB;
//! - batches of 1,024 small entries: 1.6-2.0 million appends/s (64 B) with one fsync each;
//! - group commit: 1,000 single-entry appends submitted back to back are durable in about
//!   1.2 ms, against about 5,500 appends/s with one fsync each;
//! - preallocation (`preallocation` cases; November 2026, load about 6 from other work, so
//!   the disk was slow for every case): one append and sync of 256 bytes, median 3.98-4.00 ms
//!   extending against 3.99 ms preallocated alone, and 374-440 µs against 296-343 µs (0.78x)
//!   as one of three logs syncing at once. On the cluster (three nodes sharing the disk,
//!   `crates/skiff/benches/compare.sh` with `--op put`, 1 client, main against this, two
//!   rounds): p50 0.955 -> 0.763 ms and 1.045 -> 0.827 ms (0.80x), puts/s 806 -> 991 and
//!   626 -> 846; no change at 256 clients (CPU-bound under the load). A follower catching up
//!   300,000 entries (`ENTRIES=300000 SLICE=1s crates/skiff/benches/catchup.sh`, two rounds):
//!   the leader's mean fsync during the catch-up 2.20 -> 1.09 ms and 2.15 -> 0.97 ms, clients'
//!   p50 during it against in step 2.2x-2.8x before, 1.04x-1.21x after, catch-up speed equal.
//!   Overwriting in place gives up the order that extending the file kept: a power cut during
//!   a batch's fdatasync can leave a later sector of it on the disk and not an earlier one.
//!   Recovery cuts such a batch (none of it was acknowledged; see `recover.rs`), so the gain
//!   costs nothing on the write path and needs no operator after a power cut; judging the
//!   tail costs a scan of the bytes after the lost sector, only when there is one;
//! - recovery (every record verified): 1.9-2.8 GB/s for 256-byte entries and 6 GB/s for 4 KiB
//!   from the page cache; 1.2 and 1.9 GB/s from the disk (`SKIFF_BENCH_COLD=1`).
//!
//! ## Left out, with room made for it
//! - Preallocating a whole segment ahead on a background thread (etcd's `file_pipeline.go`):
//!   the log writes zeros 1 MiB ahead of its records instead, in the sync that needs them
//!   (see "Preallocation" in `wal.rs` for why). Writing those zeros while the group-commit
//!   thread is idle would take them off the write path too.
//! - Overlapping the encoding of the next batch with the fsync of this one in
//!   [`GroupCommit`]; and a bound on its queue, for back-pressure (the core's own limits on
//!   proposals and in-flight appends bound it today).
//! - A smaller entry frame: 26 bytes per entry is 40 % of a 64-byte entry.
//! - Direct I/O and io_uring: the write path is one `pwrite` and one `fdatasync` per batch.
//! - Compression and encryption of records: a new record type can carry them.
//! - A mark of where each synced batch ends (a small record per sync): recovery could then
//!   tell a sector lost in a crash, always in the last batch, from one the disk zeroed after
//!   reporting it flushed, which it cuts alike today if it lies in the last segment.

mod catalog;
mod error;
mod fs;
mod group_commit;
mod identity;
mod membership;
mod memfs;
mod read;
mod record;
mod recover;
mod segment;
mod snapshot;
mod wal;

pub use error::{Error, Result};
pub use fs::{File, Fs, StdFs};
pub use group_commit::{GroupCommit, MAX_BATCH_BYTES, Notification, Ticket, WrittenNow};
pub use memfs::{Faults, MemFs};
pub use read::{SealedRead, SealedReader};
pub use record::{MAX_PAYLOAD, describe_records};
pub use recover::TornTail;
pub use skiff_raft::SnapshotMeta;
pub use snapshot::{
    SnapshotChunk, SnapshotFiles, SnapshotReader, SnapshotReceiver, SnapshotWriter, StagedSnapshot,
};
pub use wal::{Options, Recovery, Wal};

/// The checksum used everywhere in the log and its snapshot files: crc32c (Castagnoli), as
/// computed by the `crc32c` crate (hardware-accelerated where the CPU has it). Exposed so that
/// a transport moving snapshot chunks checks them with the same function.
pub fn checksum(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}
