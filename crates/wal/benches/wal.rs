//! Benchmarks of the write-ahead log on the real disk, with the raw disk as the baseline.
//!
//! `cargo bench -p skiff-wal` runs, in one process on one file system:
//! - `raw_fdatasync`: the baseline, a plain loop of `write` + `fdatasync` appending to one
//!   file, with as many payload bytes per iteration as the log's batch carries;
//! - `append_sync`: the log appending a batch of 1 to 1,024 entries of 64 B, 256 B or 4 KiB
//!   and syncing it (one fdatasync); items/s is appends/s, bytes/s counts payload bytes only,
//!   so the record overhead (26 bytes per entry) shows as a cost;
//! - `bandwidth_1mib`: 1 MiB per fsync, as 256 entries of 4 KiB, against a raw 1 MiB write;
//! - `group_commit`: 1,000 single-entry appends submitted back to back to the writer thread,
//!   until all are reported durable: what group commit buys over one fsync per append;
//! - `recovery`: opening a log of 128 MiB (page cache warm), verifying every record.
//!
//! Files go to a temporary directory under `CARGO_TARGET_TMPDIR` (the target directory, on the
//! project's disk; not /tmp, which may be a tmpfs), or under `SKIFF_BENCH_DIR` if set.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use divan::Bencher;
use divan::counter::{BytesCount, ItemsCount};
use skiff_raft::{Entry, Index, NodeId, Payload, Term};
use skiff_wal::{GroupCommit, Notification, Options, StdFs, Wal};
use tempfile::TempDir;

fn main() {
    divan::main();
}

/// The entry payload sizes measured.
const SIZES: [usize; 3] = [64, 256, 4096];

/// The batch sizes measured: entries per fsync.
const BATCHES: [usize; 4] = [1, 16, 128, 1024];

/// A fresh temporary directory on the disk under test.
fn bench_dir() -> TempDir {
    let root = std::env::var_os("SKIFF_BENCH_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    std::fs::create_dir_all(&root).expect("the benchmark directory can be created");
    tempfile::tempdir_in(root).expect("a temporary directory")
}

/// `count` entries of `size` payload bytes, from index 1.
fn entries(count: usize, size: usize) -> Vec<Entry> {
    let command = Bytes::from(vec![0x5a; size]);
    (1..=count as u64)
        .map(|index| Entry {
            index: Index(index),
            term: Term(1),
            payload: Payload::Command(command.clone()),
        })
        .collect()
}

/// A new log in a fresh directory (kept alive by the returned guard).
fn new_wal() -> (TempDir, Wal) {
    let dir = bench_dir();
    let (wal, _) = Wal::open(StdFs, dir.path().join("wal"), Options::new(NodeId(1), 1))
        .expect("the log opens");
    (dir, wal)
}

/// Moves a batch's indexes on to follow the log's last entry.
fn renumber(batch: &mut [Entry], last: Index) {
    for (offset, entry) in batch.iter_mut().enumerate() {
        entry.index = last.plus(offset as u64 + 1);
    }
}

/// The baseline: `write` + `fdatasync` of `bytes` bytes, appending to one file.
fn raw_loop(bencher: Bencher, bytes: usize, items: usize) {
    let dir = bench_dir();
    let mut file: File = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(dir.path().join("raw"))
        .expect("the file is created");
    let buffer = vec![0x5a; bytes];
    bencher.counter(ItemsCount::new(items)).counter(BytesCount::new(bytes)).bench_local(|| {
        file.write_all(&buffer).expect("writes");
        file.sync_data().expect("fdatasyncs");
    });
}

/// The baseline for `append_sync::<SIZE>` with `batch` entries: the same payload bytes.
#[divan::bench(consts = SIZES, args = BATCHES, max_time = 3)]
fn raw_fdatasync<const SIZE: usize>(bencher: Bencher, batch: usize) {
    raw_loop(bencher, SIZE * batch, batch);
}

/// The log: append `batch` entries of `SIZE` bytes, then sync.
#[divan::bench(consts = SIZES, args = BATCHES, max_time = 3)]
fn append_sync<const SIZE: usize>(bencher: Bencher, batch: usize) {
    let (_dir, mut wal) = new_wal();
    let mut entries = entries(batch, SIZE);
    bencher.counter(ItemsCount::new(batch)).counter(BytesCount::new(SIZE * batch)).bench_local(
        || {
            renumber(&mut entries, wal.last_index());
            wal.append(&entries).expect("appends");
            wal.sync().expect("syncs")
        },
    );
}

/// Bandwidth: 1 MiB per fsync, for the raw disk and for the log (256 entries of 4 KiB).
mod bandwidth_1mib {
    use super::*;

    /// One MiB.
    const MIB: usize = 1 << 20;

    #[divan::bench(max_time = 4)]
    fn raw(bencher: Bencher) {
        raw_loop(bencher, MIB, 1);
    }

    #[divan::bench(max_time = 4)]
    fn wal(bencher: Bencher) {
        let (_dir, mut wal) = new_wal();
        let mut entries = entries(MIB / 4096, 4096);
        bencher.counter(BytesCount::new(MIB)).bench_local(|| {
            renumber(&mut entries, wal.last_index());
            wal.append(&entries).expect("appends");
            wal.sync().expect("syncs")
        });
    }
}

/// 1,000 single-entry appends of 256 bytes submitted back to back to the writer thread, until
/// the last is reported durable.
#[divan::bench(sample_count = 20, max_time = 5)]
fn group_commit(bencher: Bencher) {
    const APPENDS: usize = 1000;
    let (_dir, wal) = new_wal();
    let (sender, receiver) = mpsc::channel();
    let mut group = GroupCommit::start(wal, move |note| drop(sender.send(note))).expect("starts");
    let command = Bytes::from(vec![0x5a; 256]);
    let mut next = 1;
    bencher.counter(ItemsCount::new(APPENDS)).bench_local(|| {
        let mut last = None;
        for _ in 0..APPENDS {
            let entry = Entry {
                index: Index(next),
                term: Term(1),
                payload: Payload::Command(command.clone()),
            };
            next += 1;
            last = Some(group.append(vec![entry]).expect("queued"));
        }
        let last = last.expect("submitted");
        loop {
            match receiver.recv_timeout(Duration::from_secs(60)).expect("a notification") {
                Notification::Durable { through, .. } if through >= last => break,
                Notification::Durable { .. } => {}
                Notification::Failed(error) => panic!("the writer failed: {error}"),
            }
        }
    });
    group.stop();
}

/// Recovery: opening a synced log of about 128 MiB with entries of `SIZE` bytes.
#[divan::bench(consts = [256, 4096], sample_count = 10, max_time = 20)]
fn recovery<const SIZE: usize>(bencher: Bencher) {
    const TOTAL: usize = 128 << 20;
    let (dir, mut wal) = new_wal();
    let per_batch = (1 << 20) / SIZE;
    let mut batch = entries(per_batch, SIZE);
    for _ in 0..TOTAL / (1 << 20) {
        renumber(&mut batch, wal.last_index());
        wal.append(&batch).expect("appends");
    }
    wal.sync().expect("syncs");
    let last = wal.last_index();
    drop(wal);
    let path = dir.path().join("wal");
    let on_disk: u64 = std::fs::read_dir(&path)
        .expect("lists")
        .map(|entry| entry.expect("an entry").metadata().expect("metadata").len())
        .sum();
    bencher.counter(BytesCount::new(on_disk)).bench_local(|| {
        let (wal, recovery) = Wal::open(StdFs, &path, Options::new(NodeId(1), 1)).expect("opens");
        assert_eq!(recovery.log.last_index, last);
        wal
    });
}
