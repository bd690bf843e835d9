//! Benchmarks of the write-ahead log on the real disk, with the raw disk as the baseline.
//!
//! `cargo bench -p skiff-wal` runs, in one process on one file system:
//! - `append_sync::<SIZE>` with `N wal`: the log appending a batch of N (1 to 1,024) entries
//!   of SIZE (64 B, 256 B or 4 KiB) and syncing it (one fdatasync); items/s is appends/s, and
//!   bytes/s counts payload bytes only, so the record overhead (26 bytes per entry) shows as a
//!   cost;
//! - `append_sync::<SIZE>` with `N raw`: the baseline, a plain loop of `write` + `fdatasync`
//!   appending the same payload bytes to one file. Each raw case runs right before its log
//!   case, so that both see the disk in the same mood;
//! - `bandwidth_1mib`: 1 MiB per fsync, as 256 entries of 4 KiB, against a raw 1 MiB write;
//! - `preallocation`: one append and sync of a 256-byte entry with preallocation off and on
//!   (zeros written ahead, so that the fdatasync overwrites instead of extending the file),
//!   for one log alone and for one of three logs syncing at once from three threads (the
//!   three nodes of a cluster sharing one disk and its journal);
//! - `group_commit`: 1,000 single-entry appends submitted back to back to the writer thread,
//!   until all are reported durable: what group commit buys over one fsync per append;
//! - `recovery`: opening a log of 128 MiB, verifying every record: from the page cache, or
//!   from the disk with `SKIFF_BENCH_COLD=1` (drops the page cache before each open; root).
//!
//! Files go to temporary directories under `CARGO_TARGET_TMPDIR` (the target directory, on the
//! project's disk; not /tmp, which may be a tmpfs), or under `SKIFF_BENCH_DIR` if set. They are
//! removed only when every benchmark is done: on a file system mounted with `discard`, removing
//! hundreds of megabytes issues TRIMs that slow the fsyncs of whatever runs next.
//!
//! fdatasync latency on a shared virtual disk is bimodal (about 0.2 ms, and 4 ms when the
//! journal waits for other processes' writes); compare a case with its neighbour, and run
//! again when the two modes mix.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use bytes::Bytes;
use divan::Bencher;
use divan::counter::{BytesCount, ItemsCount};
use skiff_raft::{Entry, Index, NodeId, Payload, Term};
use skiff_wal::{GroupCommit, Notification, Options, StdFs, Wal};
use tempfile::TempDir;

fn main() {
    divan::main();
    KEPT.lock().expect("no benchmark panicked holding it").clear();
}

/// The entry payload sizes measured.
const SIZES: [usize; 3] = [64, 256, 4096];

/// One case of `append_sync`: a batch size, for the log or for the raw baseline.
#[derive(Clone, Copy, Debug)]
struct Case {
    /// Entries (or their payload bytes, for the baseline) per fsync.
    batch: usize,
    /// Whether the log is measured, rather than the raw disk.
    wal: bool,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.batch, if self.wal { "wal" } else { "raw" })
    }
}

/// Every batch size, raw then log (the names sort that way too).
const CASES: [Case; 8] = [
    Case { batch: 1, wal: false },
    Case { batch: 1, wal: true },
    Case { batch: 16, wal: false },
    Case { batch: 16, wal: true },
    Case { batch: 128, wal: false },
    Case { batch: 128, wal: true },
    Case { batch: 1024, wal: false },
    Case { batch: 1024, wal: true },
];

/// Temporary directories kept until every benchmark has run.
static KEPT: Mutex<Vec<TempDir>> = Mutex::new(Vec::new());

/// A fresh temporary directory on the disk under test, removed when the run ends.
fn bench_dir() -> PathBuf {
    let root = std::env::var_os("SKIFF_BENCH_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    std::fs::create_dir_all(&root).expect("the benchmark directory can be created");
    let dir = tempfile::tempdir_in(root).expect("a temporary directory");
    let path = dir.path().to_path_buf();
    KEPT.lock().expect("no benchmark panicked holding it").push(dir);
    path
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

/// A new log in a fresh directory, and the directory.
fn new_wal() -> (PathBuf, Wal) {
    let dir = bench_dir().join("wal");
    let (wal, _) = Wal::open(StdFs, &dir, Options::new(NodeId(1), 1)).expect("the log opens");
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
        .open(dir.join("raw"))
        .expect("the file is created");
    let buffer = vec![0x5a; bytes];
    bencher.counter(ItemsCount::new(items)).counter(BytesCount::new(bytes)).bench_local(|| {
        file.write_all(&buffer).expect("writes");
        file.sync_data().expect("fdatasyncs");
    });
}

/// Appending batches of SIZE-byte entries with one fsync each: the log, or the raw baseline.
#[divan::bench(consts = SIZES, args = CASES, sample_count = 300, max_time = 3)]
fn append_sync<const SIZE: usize>(bencher: Bencher, case: Case) {
    if !case.wal {
        return raw_loop(bencher, SIZE * case.batch, case.batch);
    }
    let (_, mut wal) = new_wal();
    let mut entries = entries(case.batch, SIZE);
    let counted =
        bencher.counter(ItemsCount::new(case.batch)).counter(BytesCount::new(SIZE * case.batch));
    counted.bench_local(|| {
        renumber(&mut entries, wal.last_index());
        wal.append(&entries).expect("appends");
        wal.sync().expect("syncs")
    });
}

/// Bandwidth: 1 MiB per fsync, for the raw disk and for the log (256 entries of 4 KiB).
mod bandwidth_1mib {
    use super::*;

    /// One MiB.
    const MIB: usize = 1 << 20;

    #[divan::bench(sample_count = 300, max_time = 5)]
    fn raw(bencher: Bencher) {
        raw_loop(bencher, MIB, 1);
    }

    #[divan::bench(sample_count = 300, max_time = 5)]
    fn wal(bencher: Bencher) {
        let (_, mut wal) = new_wal();
        let mut entries = entries(MIB / 4096, 4096);
        bencher.counter(BytesCount::new(MIB)).bench_local(|| {
            renumber(&mut entries, wal.last_index());
            wal.append(&entries).expect("appends");
            wal.sync().expect("syncs")
        });
    }
}

/// A case of `preallocation`: how many logs sync at once, and whether they preallocate.
#[derive(Clone, Copy, Debug)]
struct Shared {
    /// The logs syncing at once, each from its own thread; one of them is measured.
    logs: usize,
    /// Whether the logs preallocate (the default) or extend their files with every write.
    preallocate: bool,
}

impl fmt::Display for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.preallocate { "preallocated" } else { "extending" };
        write!(f, "{} log{} {mode}", self.logs, if self.logs == 1 { "" } else { "s" })
    }
}

/// A new log in a fresh directory, with preallocation on or off.
fn new_wal_preallocating(preallocate: bool) -> Wal {
    let mut options = Options::new(NodeId(1), 1);
    if !preallocate {
        options.preallocate = 0;
    }
    Wal::open(StdFs, bench_dir().join("wal"), options).expect("the log opens").0
}

/// Appends one entry after the log's last and syncs it.
fn append_one(wal: &mut Wal, entry: &mut [Entry]) {
    renumber(entry, wal.last_index());
    wal.append(entry).expect("appends");
    wal.sync().expect("syncs");
}

/// One append and sync of a 256-byte entry: preallocation off and on, one log alone or one
/// of three syncing at once (the other two loop on their own threads while this one is
/// timed). Extending and preallocated cases alternate, so that each pair sees the disk alike.
#[divan::bench(
    args = [
        Shared { logs: 1, preallocate: false },
        Shared { logs: 1, preallocate: true },
        Shared { logs: 3, preallocate: false },
        Shared { logs: 3, preallocate: true },
    ],
    sample_count = 1000,
    max_time = 5
)]
fn preallocation(bencher: Bencher, case: Shared) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let others: Vec<_> = (1..case.logs)
        .map(|_| {
            let mut wal = new_wal_preallocating(case.preallocate);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut entry = entries(1, 256);
                while !stop.load(Ordering::Relaxed) {
                    append_one(&mut wal, &mut entry);
                }
            })
        })
        .collect();
    let mut wal = new_wal_preallocating(case.preallocate);
    let mut entry = entries(1, 256);
    bencher.bench_local(|| append_one(&mut wal, &mut entry));
    stop.store(true, Ordering::Relaxed);
    for other in others {
        other.join().expect("a background log panicked");
    }
}

/// 1,000 single-entry appends of 256 bytes submitted back to back to the writer thread, until
/// the last is reported durable.
#[divan::bench(sample_count = 20, max_time = 5)]
fn group_commit(bencher: Bencher) {
    const APPENDS: usize = 1000;
    let (_, wal) = new_wal();
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
            last = Some(group.append(None, vec![entry]).expect("queued"));
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
    let (path, mut wal) = new_wal();
    let per_batch = (1 << 20) / SIZE;
    let mut batch = entries(per_batch, SIZE);
    for _ in 0..TOTAL / (1 << 20) {
        renumber(&mut batch, wal.last_index());
        wal.append(&batch).expect("appends");
    }
    wal.sync().expect("syncs");
    let last = wal.last_index();
    drop(wal);
    let on_disk: u64 = std::fs::read_dir(&path)
        .expect("lists")
        .map(|entry| entry.expect("an entry").metadata().expect("metadata").len())
        .sum();
    // With SKIFF_BENCH_COLD=1 (root only), the page cache is dropped before every open, so
    // that recovery reads from the disk; otherwise it measures verification from memory.
    let cold = std::env::var_os("SKIFF_BENCH_COLD").is_some_and(|value| value == "1");
    bencher
        .counter(BytesCount::new(on_disk))
        .with_inputs(|| cold.then(drop_page_cache))
        .bench_local_values(|_| {
            let (wal, recovery) =
                Wal::open(StdFs, &path, Options::new(NodeId(1), 1)).expect("opens");
            assert_eq!(recovery.log.last_index, last);
            wal
        });
}

/// Writes back and drops the page cache (Linux, root), outside the timed part.
fn drop_page_cache() {
    let status = std::process::Command::new("sync").status().expect("runs sync");
    assert!(status.success(), "sync failed");
    std::fs::write("/proc/sys/vm/drop_caches", "3").expect("dropping the page cache needs root");
}
