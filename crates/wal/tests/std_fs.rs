//! The log on the real file system, and group commit on its writer thread.
//!
//! The other tests run on `MemFs`; these check that `StdFs` does the same on real files
//! (creation, fdatasync, directory fsync, rename, removal, cutting a torn tail), and that
//! `GroupCommit` batches appends into shared fsyncs, reports every ticket durable in order,
//! reads sealed segments off its writer thread, and stops for good after a failure.

mod common;

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use common::entry;
use skiff_raft::{Entry, HardState, Index, Membership, NodeId, Term};
use skiff_wal::{
    Error, Faults, GroupCommit, MemFs, Notification, Options, SealedReader, SnapshotMeta, StdFs,
    Ticket, Wal,
};

/// Options with small segments, so that a few hundred entries roll and compact files.
fn options() -> Options {
    let mut options = Options::new(NodeId(3), 11);
    options.segment_size = 4096;
    options
}

/// The snapshot the round trip saves: index 200 of term 2, voters 1 to 3.
fn snapshot_meta() -> SnapshotMeta {
    SnapshotMeta {
        index: Index(200),
        term: Term(2),
        membership: Membership::new((1..=3).map(NodeId)),
    }
}

#[test]
fn the_log_round_trips_through_real_files() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("wal");
    let (mut wal, recovery) = Wal::open(StdFs, &path, options()).expect("opens a new log");
    assert_eq!(recovery.log.last_index, Index(0));
    wal.save_hard_state(HardState { term: Term(2), vote: Some(NodeId(3)) }).expect("saves");
    let entries: Vec<_> = (1..=300).map(|index| entry(index, 2, 40)).collect();
    for chunk in entries.chunks(7) {
        wal.append(chunk).expect("appends");
    }
    assert_eq!(wal.sync().expect("syncs"), (Index(300), Term(2)));
    // A new leader supersedes 251 onwards.
    let replacement: Vec<_> = (251..=260).map(|index| entry(index, 3, 8)).collect();
    wal.append(&replacement).expect("supersedes");
    wal.sync().expect("syncs");
    wal.save_snapshot(snapshot_meta(), b"state").expect("saves");
    wal.compact(Index(200)).expect("compacts");
    let first = wal.first_index();
    assert!(first > Index(1) && first <= Index(201), "compacted to {first}");
    drop(wal);

    // A torn write: half a record appended to the last segment by hand, after the zeros the
    // log wrote ahead of its records.
    let last_segment = std::fs::read_dir(&path)
        .expect("lists")
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "wal"))
        .max()
        .expect("segments exist");
    let length = std::fs::metadata(&last_segment).expect("exists").len();
    let mut garbage = std::fs::read(&last_segment).expect("reads");
    garbage.extend_from_slice(&[7, 0, 0, 0, 1, 2]);
    std::fs::write(&last_segment, &garbage).expect("writes");

    let (mut wal, recovery) = Wal::open(StdFs, &path, options()).expect("reopens");
    let cut_to = std::fs::metadata(&last_segment).expect("exists").len();
    assert_eq!(cut_to + recovery.torn_bytes, length + 6, "cut back");
    assert!(cut_to < length, "the zeros between the records and the tear are cut too");
    assert_eq!(recovery.hard_state, HardState { term: Term(2), vote: Some(NodeId(3)) });
    assert_eq!(recovery.log.last_index, Index(260));
    assert_eq!(recovery.log.first_index, first);
    assert_eq!(recovery.snapshot, Some(snapshot_meta()));
    let read = wal.read(Index(250), Index(261), u64::MAX).expect("reads");
    assert_eq!(read[0], entries[249]);
    assert_eq!(read[1..], replacement[..]);
    let (meta, data) = wal.load_snapshot().expect("loads").expect("a snapshot");
    assert_eq!((meta.index, data), (Index(200), b"state".to_vec()));

    let wrong = Wal::open(StdFs, &path, Options::new(NodeId(4), 11));
    assert!(matches!(wrong, Err(Error::WrongDirectory { .. })), "another node's directory");
}

/// Starts group commit on `wal`, with its notifications on the channel returned.
fn start(wal: Wal) -> (GroupCommit, mpsc::Receiver<Notification>) {
    let (sender, receiver) = mpsc::channel();
    let group = GroupCommit::start(wal, move |note| drop(sender.send(note))).expect("starts");
    (group, receiver)
}

/// Waits for the notification that covers `ticket`, returning how many arrived.
fn wait_for(receiver: &mpsc::Receiver<Notification>, ticket: Ticket) -> (usize, Index) {
    let mut count = 0;
    let mut last = Ticket(0);
    loop {
        match receiver.recv_timeout(Duration::from_secs(30)).expect("a notification in time") {
            Notification::Durable { through, index, .. } => {
                assert!(through > last, "notifications move forward: {through:?} after {last:?}");
                last = through;
                count += 1;
                if through >= ticket {
                    return (count, index);
                }
            }
            Notification::Failed(error) => panic!("the writer failed: {error}"),
        }
    }
}

#[test]
fn group_commit_shares_fsyncs_and_reports_every_ticket() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (wal, _) = Wal::open(StdFs, dir.path(), options()).expect("opens");
    let (mut group, receiver) = start(wal);
    // Keep the writer busy while everything is submitted, as a slow fsync would.
    group.run(|_| std::thread::sleep(Duration::from_millis(50))).expect("queued");
    group.save_hard_state(HardState { term: Term(1), vote: Some(NodeId(3)) }).expect("queued");
    let mut ticket = Ticket(0);
    for index in 1..=500 {
        ticket = group.append(None, vec![entry(index, 1, 64)]).expect("queued");
    }
    let (fsyncs, durable) = wait_for(&receiver, ticket);
    assert_eq!(durable, Index(500));
    assert!(fsyncs < 10, "501 submissions queued together share fsyncs, took {fsyncs}");

    let (reply, answer) = mpsc::channel();
    group
        .read(Index(10), Index(13), u64::MAX, move |result| drop(reply.send(result)))
        .expect("queued");
    let read = answer.recv().expect("an answer").expect("reads");
    assert_eq!(read, (10..13).map(|index| entry(index, 1, 64)).collect::<Vec<_>>());

    let mut wal = group.stop();
    assert_eq!(wal.durable(), (Index(500), Term(1)));
    assert_eq!(wal.sync().expect("nothing left to sync"), (Index(500), Term(1)));
}

/// Reads `[low, high)` through `group`, returning the entries and the name of the thread that
/// answered.
fn read_through(group: &GroupCommit, low: u64, high: u64, max_bytes: u64) -> (Vec<Entry>, String) {
    let (reply, answer) = mpsc::channel();
    group
        .read(Index(low), Index(high), max_bytes, move |result| {
            let thread = std::thread::current().name().unwrap_or("").to_owned();
            drop(reply.send((result, thread)));
        })
        .expect("queued");
    let (result, thread) = answer.recv_timeout(Duration::from_secs(30)).expect("an answer");
    (result.expect("reads"), thread)
}

#[test]
fn group_commit_reads_sealed_segments_on_its_reader_thread_and_the_tail_on_the_writer() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (wal, _) = Wal::open(StdFs, dir.path(), options()).expect("opens");
    let (mut group, receiver) = start(wal);
    let mut ticket = Ticket(0);
    for index in 1..=300 {
        // A new term every 50 entries, so that the reader checks terms it was handed.
        ticket = group.append(None, vec![entry(index, 1 + (index - 1) / 50, 64)]).expect("queued");
    }
    assert_eq!(wait_for(&receiver, ticket).1, Index(300));
    let expected = |low: u64, high: u64| -> Vec<Entry> {
        (low..high).map(|index| entry(index, 1 + (index - 1) / 50, 64)).collect()
    };

    // Segments of 4 KiB hold a few dozen entries: entry 10 is in a sealed one. A read from
    // there stops where the sealed segments end at the latest; the rest comes from the tail.
    let (sealed, thread) = read_through(&group, 10, 301, u64::MAX);
    assert_eq!(thread, "skiff-wal-read");
    assert!(sealed.len() > 100, "reads on across sealed segments: {} entries", sealed.len());
    assert_eq!(sealed, expected(10, 10 + sealed.len() as u64));
    let next = 10 + sealed.len() as u64;
    let (tail, thread) = read_through(&group, next, 301, u64::MAX);
    assert_eq!(thread, "skiff-wal");
    assert_eq!(tail, expected(next, 301));

    // Within a budget: one chunk after another, continuing where the last stopped.
    let mut low = 1;
    while low < next {
        let (chunk, thread) = read_through(&group, low, 301, 1000);
        assert_eq!(thread, "skiff-wal-read");
        assert!(!chunk.is_empty() && chunk.iter().map(Entry::size).sum::<u64>() <= 1000);
        assert_eq!(chunk, expected(low, low + chunk.len() as u64));
        low += chunk.len() as u64;
    }
    assert_eq!(low, next, "the chunks stop where the sealed segments end");
    drop(group.stop());
}

#[test]
fn a_planned_read_reads_segments_a_compaction_deleted_since() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (mut wal, _) = Wal::open(StdFs, dir.path(), options()).expect("opens");
    let entries: Vec<Entry> = (1..=300).map(|index| entry(index, 1, 64)).collect();
    wal.append(&entries).expect("appends");
    wal.save_commit(Index(300)).expect("saves");
    wal.sync().expect("syncs");
    let plan = wal.plan_sealed_read(Index(1), Index(301), u64::MAX).expect("plans");
    let plan = plan.expect("entry 1 is in a sealed segment");
    let before = std::fs::read_dir(dir.path()).expect("lists").count();
    wal.compact(Index(250)).expect("compacts");
    let after = std::fs::read_dir(dir.path()).expect("lists").count();
    assert!(after < before, "the compaction deleted segments: {before} files, then {after}");
    let read = SealedReader::new().run(&plan).expect("reads through the handles it holds");
    assert!(read.len() > 100);
    assert_eq!(read, entries[..read.len()]);
}

#[test]
fn group_commit_writes_on_the_callers_thread_only_while_the_writer_is_idle() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (wal, _) = Wal::open(StdFs, dir.path(), options()).expect("opens");
    let (mut group, receiver) = start(wal);

    // Idle: written and fsynced right here, with the commit index riding along.
    let written = group
        .write_now(Some(Index(1)), &[entry(1, 1, 64), entry(2, 1, 64)])
        .expect("the writer is idle")
        .expect("writes");
    assert_eq!((written.index, written.term), (Index(2), Term(1)));
    assert!(receiver.try_recv().is_err(), "a write made here is not notified");

    // Busy with a job: declined, and nothing is written; the caller submits instead, behind it.
    let (started, job_started) = mpsc::channel();
    let (release, job_released) = mpsc::channel::<()>();
    group
        .run(move |_| {
            started.send(()).expect("the test waits for it");
            job_released.recv().expect("the test releases it");
        })
        .expect("queued");
    job_started.recv().expect("the job runs");
    assert!(group.write_now(None, &[entry(3, 1, 64)]).is_none(), "the writer is busy");
    let ticket = group.append(None, vec![entry(3, 1, 64)]).expect("queued");
    // Still busy while the append waits behind the job: declined again.
    assert!(group.write_now(None, &[entry(4, 1, 64)]).is_none(), "a submission is queued");
    release.send(()).expect("the job waits for it");
    let (_, durable) = wait_for(&receiver, ticket);
    assert_eq!(durable, Index(3));

    // Idle again once everything queued is written and reported.
    let written = group.write_now(None, &[entry(4, 1, 64)]).expect("idle again").expect("writes");
    assert_eq!(written.index, Index(4));

    let mut wal = group.stop();
    assert_eq!(wal.durable(), (Index(4), Term(1)));
    let read = wal.read(Index(1), Index(5), u64::MAX).expect("reads");
    assert_eq!(read, (1..=4).map(|index| entry(index, 1, 64)).collect::<Vec<_>>());
    drop(wal);
    let (_, recovery) = Wal::open(StdFs, dir.path(), options()).expect("reopens");
    assert_eq!(recovery.log.last_index, Index(4), "written here or there, all of it is durable");
    assert_eq!(recovery.commit, Index(1), "the commit index written here is kept");
}

#[test]
fn a_commit_index_takes_the_fsync_of_the_entries_it_is_submitted_with() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (wal, _) = Wal::open(StdFs, dir.path(), options()).expect("opens");
    let (mut group, receiver) = start(wal);
    let first = group.append(None, vec![entry(1, 1, 64), entry(2, 1, 64)]).expect("queued");
    wait_for(&receiver, first);
    // One submission: the writer, idle until now, cannot wake for the commit index alone.
    let second = group.append(Some(Index(2)), vec![entry(3, 1, 64)]).expect("queued");
    let (fsyncs, durable) = wait_for(&receiver, second);
    assert_eq!((fsyncs, durable), (1, Index(3)), "one fsync for the commit index and the entry");
    drop(group.stop());
    let (_, recovery) = Wal::open(StdFs, dir.path(), options()).expect("reopens");
    assert_eq!((recovery.commit, recovery.log.last_index), (Index(2), Index(3)));
}

#[test]
fn a_failed_write_on_the_callers_thread_poisons_the_log() {
    let fs = MemFs::new(9);
    let (wal, _) = Wal::open(fs.clone(), Path::new("/data"), options()).expect("opens");
    let (mut group, _receiver) = start(wal);
    group.write_now(None, &[entry(1, 1, 8)]).expect("idle").expect("writes");
    fs.set_faults(Faults { sync_error_ppm: 1_000_000, ..Faults::default() });
    match group.write_now(None, &[entry(2, 1, 8)]).expect("idle") {
        Err(Error::Io { operation, .. }) => assert_eq!(operation, "fsync"),
        other => panic!("expected the fsync failure, got {other:?}"),
    }
    fs.set_faults(Faults::default());
    assert!(
        matches!(group.write_now(None, &[entry(3, 1, 8)]), Some(Err(_))),
        "the log is poisoned: no write succeeds after a failed fsync"
    );
    let wal = group.stop();
    assert!(wal.poisoned().is_some(), "the log is poisoned, not retried");
}

#[test]
fn group_commit_stops_for_good_after_a_failed_fsync() {
    let fs = MemFs::new(9);
    let (wal, _) = Wal::open(fs.clone(), Path::new("/data"), options()).expect("opens");
    let (mut group, receiver) = start(wal);
    let ticket = group.append(None, vec![entry(1, 1, 8)]).expect("queued");
    wait_for(&receiver, ticket);
    fs.set_faults(Faults { sync_error_ppm: 1_000_000, ..Faults::default() });
    group.append(None, vec![entry(2, 1, 8)]).expect("queued");
    match receiver.recv_timeout(Duration::from_secs(30)).expect("a notification") {
        Notification::Failed(Error::Io { operation, .. }) => assert_eq!(operation, "fsync"),
        other => panic!("expected the fsync failure, got {other:?}"),
    }
    // The writer is gone: submissions fail once it has dropped its end.
    let stopped = (0..1000).any(|index| {
        std::thread::sleep(Duration::from_millis(1));
        matches!(group.append(None, vec![entry(3 + index, 1, 8)]), Err(Error::Stopped))
    });
    assert!(stopped, "submissions after a failure must fail");
    let wal = group.stop();
    assert!(wal.poisoned().is_some(), "the log is poisoned, not retried");
}

#[test]
fn index_memory_grows_with_bytes_not_entries() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut options = Options::new(NodeId(1), 1);
    options.segment_size = 4 << 20;
    let (mut wal, _) = Wal::open(StdFs, dir.path(), options.clone()).expect("opens");
    let command = bytes::Bytes::from(vec![1; 64]);
    let count = 200_000u64;
    for start in (1..=count).step_by(1000) {
        let batch: Vec<_> = (start..start + 1000)
            .map(|index| skiff_raft::Entry {
                index: Index(index),
                term: Term(1),
                payload: skiff_raft::Payload::Command(command.clone()),
            })
            .collect();
        wal.append(&batch).expect("appends");
    }
    wal.sync().expect("syncs");
    // 200,000 entries of 90 bytes on disk: 18 MB. A dense index would hold 16 bytes per entry
    // (3.2 MB); the sparse one holds 16 bytes per 256 KiB of log, plus one per term.
    let log_bytes = count * 90;
    let bound = (log_bytes / options.index_interval + wal.segment_count() as u64 + 1) * 16;
    assert!(wal.index_memory() as u64 <= bound, "{} bytes of index", wal.index_memory());
    assert!(wal.index_memory() < 2048, "{} bytes of index", wal.index_memory());
    drop(wal);
    let (wal, _) = Wal::open(StdFs, dir.path(), options).expect("reopens");
    assert!(wal.index_memory() < 2048, "recovery builds the same sparse index");
}

#[test]
fn the_tail_is_preallocated_with_written_zeros_and_sealed_segments_are_cut() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("wal");
    let mut options = Options::new(NodeId(1), 1);
    options.segment_size = 256 << 10;
    options.preallocate = 64 << 10;
    let (mut wal, _) = Wal::open(StdFs, &path, options.clone()).expect("opens");
    wal.append(&[entry(1, 1, 100)]).expect("appends");
    wal.sync().expect("syncs");
    let segment = path.join("00000000000000000001.wal");
    let metadata = std::fs::metadata(&segment).expect("exists");
    assert!(metadata.len() >= 64 << 10, "zeros ahead of the records: {} bytes", metadata.len());
    // Written zeros, not a hole: the blocks are allocated (st_blocks counts 512-byte units).
    assert!(metadata.blocks() * 512 >= metadata.len(), "the zeros are allocated, not sparse");
    let bytes = std::fs::read(&segment).expect("reads");
    assert!(bytes[200..].iter().all(|&byte| byte == 0), "zeros after the records");
    // Past the segment size: the log rolls, and the sealed segment ends with its records.
    let entries: Vec<_> = (2..=1000).map(|index| entry(index, 1, 400)).collect();
    for chunk in entries.chunks(50) {
        wal.append(chunk).expect("appends");
        wal.sync().expect("syncs");
    }
    assert!(wal.segment_count() >= 2, "rolled");
    drop(wal);
    let sealed = std::fs::read(&segment).expect("reads");
    assert_ne!(sealed.last(), Some(&0), "a sealed segment ends with its last record's payload");
    let (mut wal, recovery) = Wal::open(StdFs, &path, options).expect("reopens");
    assert_eq!(recovery.torn_bytes, 0, "zeros after the last record are no tear");
    assert_eq!(recovery.log.last_index, Index(1000));
    assert_eq!(wal.read(Index(1000), Index(1001), u64::MAX).expect("reads"), [entry(1000, 1, 400)]);
}
