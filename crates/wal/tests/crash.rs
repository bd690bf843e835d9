//! Power cuts at every write boundary of a workload.
//!
//! A seeded workload (appends, superseding appends, votes, commits, syncs, compactions, with
//! small segments so that it rolls and compacts many files) runs on a [`MemFs`]. A first run
//! counts its write boundaries: every write, fsync, creation, rename and removal, including
//! those of the first open. Then, for every boundary, a fresh run cuts the power there (the
//! write in progress lands torn at a random byte), the machine crashes (unsynced data kept up
//! to a random point, torn anywhere), and the log is opened again. Each time:
//! - every entry the last successful `sync` reported durable is there, unless the workload
//!   itself superseded it afterwards;
//! - nothing half-written is visible: the log read back is a prefix of a state the workload
//!   wrote since that sync, entry for entry, byte for byte;
//! - the hard state and commit index are ones saved since that sync;
//! - the log takes new appends, and they survive a clean reopen.
//!
//! With [`Faults::reorder_sectors`], half the crashes keep each unsynced 512-byte sector or
//! lose it on its own, as a disk writing back pages overwritten in place may: a crash during a
//! batch's fdatasync can leave valid records after a lost sector. The same checks hold, and
//! the open never fails (no operator is needed after a power cut).
//!
//! Snapshots get the same treatment: the install of a leader's snapshot cut at every boundary
//! leaves the old snapshot and log or the new snapshot with an empty log after it, never a mix
//! (the core's contract item 11); a local snapshot and compaction cut anywhere leave a log that
//! passes through the newest snapshot with no entry lost.

mod common;

use std::io::Write;

use common::{
    DIR, History, ModelLog, Step, check_recovered, entry, read_all, run, small_options, workload,
};
use skiff_raft::{Config, Index, Membership, Node, NodeId, Term};
use skiff_wal::{Error, Faults, MemFs, Options, Recovery, SnapshotMeta, StagedSnapshot, Wal};

/// Opens the log, runs the steps until the power fails, and returns the history.
fn run_until_failure(fs: &MemFs, steps: &[Step], options: &Options) -> History {
    let mut history = History::new();
    // The power may fail inside the open itself: then nothing ran.
    if let Ok((mut wal, _)) = Wal::open(fs.clone(), DIR, options.clone()) {
        run(&mut wal, steps, &mut history);
    }
    history
}

/// Reopens after a crash and checks the recovered log, state and usability; returns what
/// recovery reported.
fn check_after_crash(fs: &MemFs, history: &History, context: &str, options: &Options) -> Recovery {
    let (mut wal, recovery) = Wal::open(fs.clone(), DIR, options.clone())
        .unwrap_or_else(|error| panic!("{context}: recovery failed: {error}"));
    let recovered = read_all(&mut wal);
    if let Err(reason) = check_recovered(&recovered, history) {
        panic!("{context}: {reason}");
    }
    assert_eq!(recovery.log, wal.log_state(), "{context}: the recovery summary is the log");
    assert!(
        history.hard_states.contains(&recovery.hard_state),
        "{context}: hard state {:?} was never saved since the last sync ({:?})",
        recovery.hard_state,
        history.hard_states
    );
    let last = recovered.last();
    assert!(
        history.commits.iter().any(|&commit| recovery.commit.0 == commit.min(last)),
        "{context}: commit {} is none of {:?} (clamped to {last})",
        recovery.commit,
        history.commits
    );
    // The log goes on: one more entry, synced, survives a clean reopen.
    let next = entry(last + 1, recovered.last_term().max(1), 10);
    wal.append(std::slice::from_ref(&next)).expect("the recovered log takes appends");
    wal.sync().expect("and syncs them");
    drop(wal);
    let (mut wal, _) = Wal::open(fs.clone(), DIR, options.clone()).expect("a clean reopen");
    let entries = wal.read(next.index, next.index.next(), u64::MAX).expect("reads");
    assert_eq!(entries, vec![next], "{context}: the entry appended after recovery is lost");
    assert!(wal.first_index() <= Index(last + 1));
    recovery
}

/// Cuts the power at every boundary of the workload of `seed`, with `tears` crash seeds each.
fn power_cut_at_every_boundary(seed: u64, steps: usize, tears: u64) {
    let work = workload(seed, steps);
    let counting = MemFs::new(seed);
    let history = run_until_failure(&counting, &work, &small_options());
    assert!(history.syncs > 0, "the workload syncs");
    let boundaries = counting.operations();
    assert!(boundaries > 50, "a workload this long has many boundaries: {boundaries}");
    for boundary in 0..=boundaries {
        for tear in 0..tears {
            let fs = MemFs::new(seed * 1_000_003 + boundary * 31 + tear);
            fs.cut_power_after(boundary);
            let history = run_until_failure(&fs, &work, &small_options());
            fs.crash();
            let context = format!("seed {seed}, power cut at boundary {boundary}, tear {tear}");
            check_after_crash(&fs, &history, &context, &small_options());
        }
    }
}

#[test]
fn every_durable_entry_survives_a_power_cut_at_every_boundary() {
    for seed in 1..=8 {
        power_cut_at_every_boundary(seed, 60, 4);
    }
}

/// Segments of many 512-byte sectors, records reaching the file in several writes before each
/// sync, and zeros preallocated ahead of them: a batch overwrites zeros across sectors, which
/// a crash may keep out of order.
fn sector_options() -> Options {
    let mut options = small_options();
    options.segment_size = 6000;
    options.write_buffer = 200;
    options.index_interval = 500;
    options.preallocate = 2048;
    options
}

#[test]
fn every_acknowledged_entry_survives_a_crash_that_keeps_sectors_out_of_order() {
    // Half the crashes keep each unsynced 512-byte sector or lose it on its own. A crash in the
    // middle of a batch leaves valid records after a lost sector: recovery must open every
    // time (no operator) and keep everything acknowledged.
    let faults = Faults { reorder_sectors: Some(512), ..Faults::default() };
    let mut out_of_order = 0;
    for seed in 1..=8 {
        let work = workload(seed, 150);
        let counting = MemFs::with_faults(seed, faults);
        let history = run_until_failure(&counting, &work, &sector_options());
        assert!(history.syncs > 0, "the workload syncs");
        let boundaries = counting.operations();
        for boundary in 0..=boundaries {
            for tear in 0..3 {
                let fs = MemFs::with_faults(seed * 1_000_003 + boundary * 31 + tear, faults);
                fs.cut_power_after(boundary);
                let history = run_until_failure(&fs, &work, &sector_options());
                fs.crash();
                let context = format!("seed {seed}, power cut at boundary {boundary}, tear {tear}");
                let recovery = check_after_crash(&fs, &history, &context, &sector_options());
                out_of_order += u64::from(recovery.torn_tail.is_some_and(|cut| cut.out_of_order));
            }
        }
    }
    assert!(out_of_order > 60, "few crashes left records after a lost sector: {out_of_order}");
}

#[test]
fn crashes_without_power_cuts_keep_a_valid_prefix() {
    // Crashes at random points between steps, with whatever the page cache held.
    for seed in 0..200 {
        let work = workload(seed, 40);
        let fs = MemFs::new(seed);
        let cut = (seed as usize * 7) % work.len();
        let mut history = History::new();
        let (mut wal, _) = Wal::open(fs.clone(), DIR, small_options()).expect("opens");
        assert!(run(&mut wal, &work[..cut], &mut history), "no faults, no failures");
        drop(wal);
        fs.crash();
        let context = format!("seed {seed}, crash after step {cut}");
        check_after_crash(&fs, &history, &context, &small_options());
    }
}

#[test]
fn failed_writes_and_fsyncs_poison_and_lose_nothing_durable() {
    let faults = Faults { write_error_ppm: 20_000, sync_error_ppm: 20_000, ..Faults::default() };
    let mut failures = 0;
    for seed in 0..100 {
        let work = workload(seed, 60);
        let fs = MemFs::with_faults(seed, faults);
        let mut history = History::new();
        if let Ok((mut wal, _)) = Wal::open(fs.clone(), DIR, small_options())
            && !run(&mut wal, &work, &mut history)
        {
            failures += 1;
            let error = wal.sync().expect_err("a failed log refuses all work");
            assert!(matches!(error, Error::Poisoned { .. }), "seed {seed}: {error}");
            assert!(wal.poisoned().is_some());
        }
        fs.set_faults(Faults::default());
        fs.crash();
        check_after_crash(&fs, &history, &format!("seed {seed} with faults"), &small_options());
    }
    assert!(failures > 20, "the faults should fail many runs, failed {failures}");
}

/// The snapshot at `index` of `term`, of voters n1, n2 and n3.
fn snapshot_meta(index: u64, term: u64) -> SnapshotMeta {
    SnapshotMeta {
        index: Index(index),
        term: Term(term),
        membership: Membership::new((1..=3).map(NodeId)),
    }
}

/// A follower's log before an install: entries 1 to 35 of term 1 over several segments, 20
/// committed, its own snapshot at 12 ("old") with the log compacted behind it.
fn before_install(fs: &MemFs) -> Wal {
    let (mut wal, _) = Wal::open(fs.clone(), DIR, small_options()).expect("opens");
    let entries: Vec<_> = (1..=35).map(|index| entry(index, 1, 20)).collect();
    wal.append(&entries).expect("appends");
    wal.save_commit(Index(20)).expect("saves the commit index");
    wal.sync().expect("syncs");
    wal.save_snapshot(snapshot_meta(12, 1), b"old").expect("saves");
    wal.compact(Index(12)).expect("compacts");
    wal
}

/// Streams `data` into a staged snapshot of `meta`.
fn staged(wal: &Wal, meta: SnapshotMeta, data: &[u8]) -> skiff_wal::Result<StagedSnapshot> {
    let mut writer = wal.snapshot_files().writer(meta)?;
    writer.write_all(data).map_err(|source| Error::Io {
        operation: "write",
        path: DIR.into(),
        source,
    })?;
    writer.finish()
}

/// What a node restarting from `fs` holds: its snapshot's metadata and data, and its log. The
/// core must accept it (contract item 12), and no temporary file may be left.
fn restart(fs: &MemFs, context: &str) -> (SnapshotMeta, Vec<u8>, ModelLog, Wal) {
    let (mut wal, recovery) = Wal::open(fs.clone(), DIR, small_options())
        .unwrap_or_else(|error| panic!("{context}: recovery failed: {error}"));
    let config = Config::new(NodeId(1), (1..=3).map(NodeId));
    if let Err(error) = Node::new(config, recovery.restored()) {
        panic!("{context}: the core refuses what recovery found: {error}");
    }
    let (meta, data) = wal.load_snapshot().expect("loads").expect("a snapshot is always there");
    assert_eq!(recovery.snapshot.as_ref(), Some(&meta), "{context}");
    let log = read_all(&mut wal);
    let names: Vec<_> = fs.files().into_iter().map(|(path, _)| path).collect();
    assert!(
        names.iter().all(|path| !path.to_string_lossy().ends_with(".tmp")),
        "{context}: a temporary file survived the open: {names:?}"
    );
    (meta, data, log, wal)
}

#[test]
fn an_install_cut_at_any_write_boundary_leaves_the_old_state_or_all_of_the_new() {
    let new = snapshot_meta(50, 2);
    let counting = MemFs::new(1);
    let mut wal = before_install(&counting);
    let start = counting.operations();
    let staged_new = staged(&wal, new.clone(), b"new").expect("stages");
    wal.install_snapshot(staged_new).expect("installs");
    let boundaries = counting.operations() - start;
    assert!(boundaries > 8, "an install has many boundaries: {boundaries}");
    let (mut olds, mut news) = (0, 0);
    for boundary in 0..=boundaries {
        for tear in 0..4 {
            let fs = MemFs::new(boundary * 7 + tear);
            let mut wal = before_install(&fs);
            fs.cut_power_after(boundary);
            let installed =
                staged(&wal, new.clone(), b"new").and_then(|staged| wal.install_snapshot(staged));
            drop(wal);
            fs.crash();
            let context = format!("power cut at boundary {boundary} of the install, tear {tear}");
            let (meta, data, log, _) = restart(&fs, &context);
            if meta == new {
                news += 1;
                assert_eq!(data, b"new", "{context}");
                assert_eq!(log.last(), 50, "{context}: the log is reset after the snapshot");
            } else {
                olds += 1;
                assert!(installed.is_err(), "{context}: a finished install was lost");
                assert_eq!((meta, data), (snapshot_meta(12, 1), b"old".to_vec()), "{context}");
                assert_eq!(log.last(), 35, "{context}: the old log is whole");
                for index in 13..=35 {
                    assert_eq!(log.get(index), Some(&entry(index, 1, 20)), "{context}");
                }
            }
        }
    }
    assert!(olds > 0 && news > 0, "both outcomes happen: {olds} old, {news} new");
}

#[test]
fn a_snapshot_and_compaction_cut_at_any_write_boundary_keep_a_log_through_the_snapshot() {
    let counting = MemFs::new(1);
    let mut wal = before_install(&counting);
    let start = counting.operations();
    wal.save_snapshot(snapshot_meta(30, 1), b"at-30").expect("saves");
    wal.compact(Index(25)).expect("compacts");
    let boundaries = counting.operations() - start;
    for boundary in 0..=boundaries {
        for tear in 0..4 {
            let fs = MemFs::new(boundary * 7 + tear);
            let mut wal = before_install(&fs);
            fs.cut_power_after(boundary);
            let _ = wal.save_snapshot(snapshot_meta(30, 1), b"at-30");
            let _ = wal.compact(Index(25));
            drop(wal);
            fs.crash();
            let context = format!("power cut at boundary {boundary} of a snapshot, tear {tear}");
            let (meta, data, log, wal) = restart(&fs, &context);
            let expected_data: &[u8] = if meta.index == Index(30) { b"at-30" } else { b"old" };
            assert_eq!(data, expected_data, "{context}");
            assert_eq!(log.last(), 35, "{context}: no entry is lost");
            assert!(wal.first_index() <= meta.index.next(), "{context}: the log passes through");
            for index in wal.first_index().0..=35 {
                assert_eq!(log.get(index), Some(&entry(index, 1, 20)), "{context}");
            }
        }
    }
}

/// A log whose live part follows a reset that was itself superseded: entries 1 to 12 over
/// several segments, then the install of a snapshot at 15 (a reset header at 16), entries 16
/// to 18 of term 2 after it, and entry 16 of term 3 superseding them (a segment that follows
/// from 16). Every segment but the tail is dead, the reset among them.
fn after_a_superseded_reset(fs: &MemFs) -> Wal {
    let (mut wal, _) = Wal::open(fs.clone(), DIR, small_options()).expect("opens");
    let entries: Vec<_> = (1..=12).map(|index| entry(index, 1, 20)).collect();
    wal.append(&entries).expect("appends");
    wal.sync().expect("syncs");
    let installed = staged(&wal, snapshot_meta(15, 1), b"at-15").expect("stages");
    wal.install_snapshot(installed).expect("installs");
    let entries: Vec<_> = (16..=18).map(|index| entry(index, 2, 20)).collect();
    wal.append(&entries).expect("appends after the reset");
    wal.sync().expect("syncs");
    wal.append(&[entry(16, 3, 20)]).expect("supersedes 16 to 18");
    wal.sync().expect("syncs");
    wal
}

/// Sim seed 28724: compaction deleted the superseded segments newest first, the reset header
/// first of all, and a power cut right after left the segments of 1 to 12 followed by one
/// that follows from 16: a log that does not open. Cut anywhere, a compaction must leave the
/// log the reset started.
#[test]
fn a_compaction_cut_at_any_write_boundary_keeps_a_superseded_reset_until_what_it_killed_is_gone() {
    let counting = MemFs::new(1);
    let mut wal = after_a_superseded_reset(&counting);
    let segments = counting.files().len();
    let start = counting.operations();
    wal.compact(Index(15)).expect("compacts");
    let boundaries = counting.operations() - start;
    assert!(boundaries >= 4, "the compaction deletes several segments: {boundaries}");
    assert_eq!(counting.files().len() + 3, segments, "it deleted the three dead segments");
    for boundary in 0..=boundaries {
        for tear in 0..4 {
            let fs = MemFs::new(boundary * 7 + tear);
            let mut wal = after_a_superseded_reset(&fs);
            fs.cut_power_after(boundary);
            let _ = wal.compact(Index(15));
            drop(wal);
            fs.crash();
            let context = format!("power cut at boundary {boundary} of a compaction, tear {tear}");
            let (meta, data, log, wal) = restart(&fs, &context);
            assert_eq!((meta, data), (snapshot_meta(15, 1), b"at-15".to_vec()), "{context}");
            assert_eq!((wal.first_index(), log.last()), (Index(16), 16), "{context}");
            assert_eq!(log.get(16), Some(&entry(16, 3, 20)), "{context}");
        }
    }
}
