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

mod common;

use common::{DIR, History, Step, check_recovered, entry, read_all, run, small_options, workload};
use skiff_raft::Index;
use skiff_wal::{Error, Faults, MemFs, Wal};

/// Opens the log, runs the steps until the power fails, and returns the history.
fn run_until_failure(fs: &MemFs, steps: &[Step]) -> History {
    let mut history = History::new();
    // The power may fail inside the open itself: then nothing ran.
    if let Ok((mut wal, _)) = Wal::open(fs.clone(), DIR, small_options()) {
        run(&mut wal, steps, &mut history);
    }
    history
}

/// Reopens after a crash and checks the recovered log, state and usability.
fn check_after_crash(fs: &MemFs, history: &History, context: &str) {
    let (mut wal, recovery) = Wal::open(fs.clone(), DIR, small_options())
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
    let (mut wal, _) = Wal::open(fs.clone(), DIR, small_options()).expect("a clean reopen");
    let entries = wal.read(next.index, next.index.next(), u64::MAX).expect("reads");
    assert_eq!(entries, vec![next], "{context}: the entry appended after recovery is lost");
    assert!(wal.first_index() <= Index(last + 1));
}

/// Cuts the power at every boundary of the workload of `seed`, with `tears` crash seeds each.
fn power_cut_at_every_boundary(seed: u64, steps: usize, tears: u64) {
    let work = workload(seed, steps);
    let counting = MemFs::new(seed);
    let history = run_until_failure(&counting, &work);
    assert!(history.syncs > 0, "the workload syncs");
    let boundaries = counting.operations();
    assert!(boundaries > 50, "a workload this long has many boundaries: {boundaries}");
    for boundary in 0..=boundaries {
        for tear in 0..tears {
            let fs = MemFs::new(seed * 1_000_003 + boundary * 31 + tear);
            fs.cut_power_after(boundary);
            let history = run_until_failure(&fs, &work);
            fs.crash();
            let context = format!("seed {seed}, power cut at boundary {boundary}, tear {tear}");
            check_after_crash(&fs, &history, &context);
        }
    }
}

#[test]
fn every_durable_entry_survives_a_power_cut_at_every_boundary() {
    for seed in 1..=8 {
        power_cut_at_every_boundary(seed, 60, 4);
    }
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
        check_after_crash(&fs, &history, &format!("seed {seed}, crash after step {cut}"));
    }
}

#[test]
fn failed_writes_and_fsyncs_poison_and_lose_nothing_durable() {
    let faults = Faults { write_error_ppm: 20_000, sync_error_ppm: 20_000, capacity: None };
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
        check_after_crash(&fs, &history, &format!("seed {seed} with faults"));
    }
    assert!(failures > 20, "the faults should fail many runs, failed {failures}");
}
