//! Group commit: many appends share one fsync, on a writer thread of their own.
//!
//! An fsync costs about as much for one entry as for a thousand, so the way to many durable
//! appends per second is to make each fsync cover as many as possible. [`GroupCommit`] owns a
//! [`Wal`] on a thread. Callers submit appends and hard states and get a [`Ticket`] back at
//! once, without waiting for any disk. The thread takes the first request queued, then drains
//! everything else queued behind it (up to [`MAX_BATCH_BYTES`] of entries, so that a flood
//! cannot starve the fsync), writes it all, makes **one** fsync, and reports with a
//! [`Notification::Durable`] the highest ticket and the last entry now durable — the core's
//! `persisted(index, term)` input. While one fsync runs, the next batch queues up: the batch
//! grows exactly as much as the disk is slow, which is what group commit is.
//!
//! The caller never waits on an fsync it does not need: submitting never blocks, and a job
//! run on the thread (a read, a compaction, a snapshot) waits only for the batch in progress
//! ahead of it, never for an fsync of its own. Nor do the writes wait for a long read: a read
//! that starts in a sealed segment is only planned on the writer thread and runs on a second
//! thread, the reader ([`GroupCommit::read`]; see `read.rs`).
//!
//! A failure (a write or fsync error) is reported once with [`Notification::Failed`], and the
//! thread stops: every later submission fails with [`Error::Stopped`]. The log is poisoned by
//! then anyway (except after a full disk stopped a preallocation, which leaves it intact, but
//! the writer stops all the same); the process should restart, which runs recovery.
//!
//! ## Writing on the caller's thread when the writer is idle
//! Handing a write to the thread and hearing back costs two thread wake-ups, each tens of
//! microseconds on a busy or virtualised machine, around an fsync of about 150 µs. A follower
//! with a single write in flight pays them on every commit's critical path. So
//! [`GroupCommit::write_now`] writes and fsyncs on the caller's thread instead, when nothing is
//! queued and no batch is in progress, and says so; otherwise it declines, and the caller
//! submits as usual (order is kept: the caller is the only submitter, and an idle writer has
//! written and fsynced everything before; its notification of that may still be on the way,
//! and arrive after the caller's own write, whose report covers it). The log sits behind a
//! mutex that the writer holds for each batch and `write_now` for its write: never both, and
//! never contended when `write_now` is allowed. A failure poisons the log either way: later
//! submissions fail.
//!
//! This layer is deliberately thin and holds no logic the [`Wal`] does not: the simulator
//! drives the `Wal` directly, step by step, and the server drives it through this.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use skiff_raft::{Entry, HardState, Index, Term};

use crate::error::{Error, Result};
use crate::read::SealedReader;
use crate::wal::Wal;

/// The most bytes of entries one batch takes before it is written and fsynced (8 MiB).
pub const MAX_BATCH_BYTES: u64 = 8 << 20;

/// A submission's place in line: tickets increase with every submission, and a
/// [`Notification::Durable`] covers every ticket up to the one it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// What the writer thread reports.
#[derive(Debug)]
pub enum Notification {
    /// Every submission up to and including `through` is durable, and the log's last entry
    /// (`index`, `term`) with it.
    Durable {
        /// The highest ticket now durable.
        through: Ticket,
        /// The index of the log's last entry, now durable.
        index: Index,
        /// That entry's term.
        term: Term,
        /// How long the write and fsync of the batch took (for the
        /// `skiff_disk_wal_fsync_duration_seconds` histogram).
        sync_duration: Duration,
    },
    /// The writer failed and stopped; nothing after the last `Durable` is known durable.
    Failed(Error),
}

/// A job run on the writer thread with the log, between submissions.
type Job = Box<dyn FnOnce(&mut Wal) + Send>;

/// A read planned on the writer thread and run on the reader thread.
type ReadJob = Box<dyn FnOnce(&mut SealedReader) + Send>;

/// What the writer thread is asked to do.
enum Request {
    /// Save a commit index, if any, then append entries: one request, so that one batch,
    /// and one fsync, takes both.
    Append(Ticket, Option<Index>, Vec<Entry>),
    /// Save the hard state.
    HardState(Ticket, HardState),
    /// Run a job with the log.
    Job(Job),
}

/// What the writer thread and [`GroupCommit::write_now`] share.
#[derive(Debug)]
struct Shared {
    /// The log: the writer holds it for each batch, `write_now` for its write.
    wal: Mutex<Wal>,
    /// Submissions not yet performed and reported: the writer is idle when this is 0.
    queued: AtomicUsize,
}

impl Shared {
    /// The log, even if a thread panicked holding it (the log poisons itself on any failure
    /// that matters; a panic elsewhere leaves it as consistent as it was).
    fn wal(&self) -> MutexGuard<'_, Wal> {
        self.wal.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A write made on the caller's thread by [`GroupCommit::write_now`], durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrittenNow {
    /// The index of the log's last entry, now durable.
    pub index: Index,
    /// That entry's term.
    pub term: Term,
    /// How long the write and fsync took.
    pub sync_duration: Duration,
}

/// A [`Wal`] on its own writer thread, with group commit (see the module documentation).
#[derive(Debug)]
pub struct GroupCommit {
    /// Submissions to the writer thread.
    sender: Sender<Request>,
    /// The number of the next ticket.
    next_ticket: u64,
    /// The log and the count of submissions in flight, shared with the writer thread.
    shared: Arc<Shared>,
    /// The writer thread; it ends when the submissions channel closes.
    thread: JoinHandle<()>,
    /// Reads of sealed segments, planned by the writer, to the reader thread.
    reads: Sender<ReadJob>,
    /// The reader thread; it ends when the writer's and this handle's `reads` are gone.
    reader: JoinHandle<()>,
}

impl GroupCommit {
    /// Starts the writer thread with `wal`. `notify` is called on that thread after every
    /// fsync, and once on failure; it should return quickly (hand the news to a channel).
    pub fn start(
        wal: Wal,
        notify: impl FnMut(Notification) + Send + 'static,
    ) -> Result<GroupCommit> {
        let (sender, receiver) = mpsc::channel();
        let shared = Arc::new(Shared { wal: Mutex::new(wal), queued: AtomicUsize::new(0) });
        let writer = shared.clone();
        let start_error =
            |source| Error::Io { operation: "start writer thread", path: "".into(), source };
        let thread = thread::Builder::new()
            .name("skiff-wal".into())
            .spawn(move || write_loop(&writer, receiver, notify))
            .map_err(start_error)?;
        let (reads, read_jobs) = mpsc::channel::<ReadJob>();
        let reader = thread::Builder::new()
            .name("skiff-wal-read".into())
            .spawn(move || {
                let mut reader = SealedReader::new();
                while let Ok(job) = read_jobs.recv() {
                    job(&mut reader);
                }
            })
            .map_err(start_error)?;
        Ok(GroupCommit { sender, next_ticket: 1, shared, thread, reads, reader })
    }

    /// Queues a request for the writer thread.
    fn send(&self, request: Request) -> Result<()> {
        self.shared.queued.fetch_add(1, Ordering::SeqCst);
        self.sender.send(request).map_err(|_| {
            self.shared.queued.fetch_sub(1, Ordering::SeqCst);
            Error::Stopped
        })
    }

    /// Queues a submission and returns its ticket.
    fn submit(&mut self, request: impl FnOnce(Ticket) -> Request) -> Result<Ticket> {
        let ticket = Ticket(self.next_ticket);
        self.send(request(ticket))?;
        self.next_ticket += 1;
        Ok(ticket)
    }

    /// Saves `commit` (if any) and appends `entries`, and fsyncs them, right here on the
    /// caller's thread, if the writer is idle: nothing queued, no batch in progress (see the
    /// module documentation). `None`: the writer is busy, nothing was done, and the caller
    /// submits them instead. Blocks for the fsync.
    ///
    /// # Errors
    /// A write or fsync error, after which the log is poisoned and the writer fails every
    /// later submission.
    pub fn write_now(
        &mut self,
        commit: Option<Index>,
        entries: &[Entry],
    ) -> Option<Result<WrittenNow>> {
        if self.shared.queued.load(Ordering::SeqCst) != 0 {
            return None;
        }
        // Nothing queued: the writer has let go of the log (it does before it counts a batch
        // done) and waits for a submission, which only this caller makes.
        let mut wal = self.shared.wal.try_lock().ok()?;
        let started = Instant::now();
        let written = (|| {
            write_commit_and_entries(&mut wal, commit, entries)?;
            let (index, term) = wal.sync()?;
            Ok(WrittenNow { index, term, sync_duration: started.elapsed() })
        })();
        Some(written)
    }

    /// Queues `commit` (if any) to save and entries to append (see [`Wal::save_commit`] and
    /// [`Wal::append`]), as [`GroupCommit::write_now`] takes them; durable when a
    /// notification's `through` reaches the ticket.
    ///
    /// One submission for both, not two: the writer starts a batch with whatever is queued
    /// when it wakes, so a commit index submitted on its own could wake an idle writer, be
    /// fsynced alone, and leave the entries behind it to a second fsync. Measured at one client
    /// (`perf stat -e syscalls:sys_enter_fdatasync` on each node over 4 s of puts): a leader
    /// made 1.28 fdatasyncs per put when these were two submissions, on the disk its
    /// followers' fsyncs wait for, and makes 1.00 now.
    pub fn append(&mut self, commit: Option<Index>, entries: Vec<Entry>) -> Result<Ticket> {
        self.submit(|ticket| Request::Append(ticket, commit, entries))
    }

    /// Queues a hard state to save (see [`Wal::save_hard_state`]).
    pub fn save_hard_state(&mut self, hard_state: HardState) -> Result<Ticket> {
        self.submit(|ticket| Request::HardState(ticket, hard_state))
    }

    /// Runs `job` on the writer thread with the log, after everything submitted before it has
    /// been written (not necessarily fsynced): reads, compaction, snapshots. The job reports
    /// its result however it likes (a channel, a callback).
    pub fn run(&self, job: impl FnOnce(&mut Wal) + Send + 'static) -> Result<()> {
        self.send(Request::Job(Box::new(job)))
    }

    /// Reads entries `[low, high)` within `max_bytes` (see [`Wal::read`]) and hands the result
    /// to `reply`: on the reader thread when the read starts in a sealed segment, planned by
    /// the writer thread ([`Wal::plan_sealed_read`]; it may then return a prefix that ends
    /// with the sealed segments), else on the writer thread, after everything submitted before
    /// it has been written. Either way a read of many records does not hold up the writes
    /// queued behind it (see `read.rs`).
    pub fn read(
        &self,
        low: Index,
        high: Index,
        max_bytes: u64,
        reply: impl FnOnce(Result<Vec<Entry>>) + Send + 'static,
    ) -> Result<()> {
        let reads = self.reads.clone();
        self.run(move |wal| match wal.plan_sealed_read(low, high, max_bytes) {
            Ok(Some(plan)) => {
                let job: ReadJob = Box::new(move |reader| reply(reader.run(&plan)));
                // The reader thread outlives the writer (`stop`), so this fails only if it
                // panicked; the read then runs here.
                if let Err(mpsc::SendError(job)) = reads.send(job) {
                    job(&mut SealedReader::new());
                }
            }
            Ok(None) => reply(wal.read(low, high, max_bytes)),
            Err(error) => reply(Err(error)),
        })
    }

    /// Stops the writer after it has written, fsynced and reported everything submitted, and
    /// returns the log.
    pub fn stop(self) -> Wal {
        let GroupCommit { sender, shared, thread, reads, reader, .. } = self;
        // Closing the channel lets the thread finish the queue and end; then the reader
        // thread, which the writer's jobs may have handed reads to until then.
        drop(sender);
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
        drop(reads);
        if let Err(panic) = reader.join() {
            std::panic::resume_unwind(panic);
        }
        let shared = Arc::into_inner(shared).expect("the writer thread, the other holder, ended");
        shared.wal.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The writer thread: batches, one fsync per batch, a notification per fsync. It holds the log
/// for each batch, and counts the batch's requests done only after letting go of it, and
/// before notifying.
fn write_loop(shared: &Shared, receiver: Receiver<Request>, mut notify: impl FnMut(Notification)) {
    while let Ok(first) = receiver.recv() {
        let mut through = None;
        let mut batch_bytes = 0;
        let mut next = Some(first);
        let mut outcome = Ok(());
        let mut performed = 0;
        let mut wal = shared.wal();
        while let Some(request) = next.take() {
            performed += 1;
            outcome = perform(&mut wal, request, &mut through, &mut batch_bytes);
            if outcome.is_err() || batch_bytes >= MAX_BATCH_BYTES {
                break;
            }
            next = receiver.try_recv().ok();
        }
        let mut durable = None;
        if let (Ok(()), Some(through)) = (&outcome, through) {
            let started = Instant::now();
            match wal.sync() {
                Ok((index, term)) => {
                    let sync_duration = started.elapsed();
                    durable = Some(Notification::Durable { through, index, term, sync_duration });
                }
                Err(error) => outcome = Err(error),
            }
        }
        drop(wal);
        if let Err(error) = outcome {
            notify(Notification::Failed(error));
            break;
        }
        // Counted done before the notification goes out: whoever sees it and has nothing else
        // queued finds the writer idle (`write_now`).
        shared.queued.fetch_sub(performed, Ordering::SeqCst);
        if let Some(durable) = durable {
            notify(durable);
        }
    }
}

/// Saves `commit` (if any), then appends `entries`, unsynced: what an append carries, on the
/// writer thread or the caller's.
fn write_commit_and_entries(wal: &mut Wal, commit: Option<Index>, entries: &[Entry]) -> Result<()> {
    if let Some(commit) = commit {
        wal.save_commit(commit)?;
    }
    wal.append(entries)
}

/// Performs one request; writes raise `through` to their ticket.
fn perform(
    wal: &mut Wal,
    request: Request,
    through: &mut Option<Ticket>,
    batch_bytes: &mut u64,
) -> Result<()> {
    match request {
        Request::Append(ticket, commit, entries) => {
            *batch_bytes += entries.iter().map(Entry::size).sum::<u64>();
            write_commit_and_entries(wal, commit, &entries)?;
            *through = Some(ticket);
        }
        Request::HardState(ticket, hard_state) => {
            wal.save_hard_state(hard_state)?;
            *through = Some(ticket);
        }
        Request::Job(job) => job(wal),
    }
    Ok(())
}
