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
//! ahead of it, never for an fsync of its own.
//!
//! A failure (a write or fsync error) is reported once with [`Notification::Failed`], and the
//! thread stops: every later submission fails with [`Error::Stopped`]. The log is poisoned by
//! then anyway (except after a full disk stopped a preallocation, which leaves it intact, but
//! the writer stops all the same); the process should restart, which runs recovery.
//!
//! This layer is deliberately thin and holds no logic the [`Wal`] does not: the simulator
//! drives the `Wal` directly, step by step, and the server drives it through this.

use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use skiff_raft::{Entry, HardState, Index, Term};

use crate::error::{Error, Result};
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

/// What the writer thread is asked to do.
enum Request {
    /// Append entries.
    Append(Ticket, Vec<Entry>),
    /// Save the hard state.
    HardState(Ticket, HardState),
    /// Save the commit index.
    Commit(Ticket, Index),
    /// Run a job with the log.
    Job(Job),
}

/// A [`Wal`] on its own writer thread, with group commit (see the module documentation).
#[derive(Debug)]
pub struct GroupCommit {
    /// Submissions to the writer thread.
    sender: Sender<Request>,
    /// The number of the next ticket.
    next_ticket: u64,
    /// The writer thread; it hands the log back when it ends.
    thread: Option<JoinHandle<Wal>>,
}

impl GroupCommit {
    /// Starts the writer thread with `wal`. `notify` is called on that thread after every
    /// fsync, and once on failure; it should return quickly (hand the news to a channel).
    pub fn start(
        wal: Wal,
        notify: impl FnMut(Notification) + Send + 'static,
    ) -> Result<GroupCommit> {
        let (sender, receiver) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("skiff-wal".into())
            .spawn(move || write_loop(wal, receiver, notify))
            .map_err(|source| Error::Io {
                operation: "start writer thread",
                path: "".into(),
                source,
            })?;
        Ok(GroupCommit { sender, next_ticket: 1, thread: Some(thread) })
    }

    /// Queues a submission and returns its ticket.
    fn submit(&mut self, request: impl FnOnce(Ticket) -> Request) -> Result<Ticket> {
        let ticket = Ticket(self.next_ticket);
        self.sender.send(request(ticket)).map_err(|_| Error::Stopped)?;
        self.next_ticket += 1;
        Ok(ticket)
    }

    /// Queues entries to append (see [`Wal::append`]); durable when a notification's `through`
    /// reaches the ticket.
    pub fn append(&mut self, entries: Vec<Entry>) -> Result<Ticket> {
        self.submit(|ticket| Request::Append(ticket, entries))
    }

    /// Queues a hard state to save (see [`Wal::save_hard_state`]).
    pub fn save_hard_state(&mut self, hard_state: HardState) -> Result<Ticket> {
        self.submit(|ticket| Request::HardState(ticket, hard_state))
    }

    /// Queues a commit index to save (see [`Wal::save_commit`]).
    pub fn save_commit(&mut self, commit: Index) -> Result<Ticket> {
        self.submit(|ticket| Request::Commit(ticket, commit))
    }

    /// Runs `job` on the writer thread with the log, after everything submitted before it has
    /// been written (not necessarily fsynced): reads, compaction, snapshots. The job reports
    /// its result however it likes (a channel, a callback).
    pub fn run(&self, job: impl FnOnce(&mut Wal) + Send + 'static) -> Result<()> {
        self.sender.send(Request::Job(Box::new(job))).map_err(|_| Error::Stopped)
    }

    /// Reads entries `[low, high)` within `max_bytes` on the writer thread (see
    /// [`Wal::read`]) and hands the result to `reply` there.
    pub fn read(
        &self,
        low: Index,
        high: Index,
        max_bytes: u64,
        reply: impl FnOnce(Result<Vec<Entry>>) + Send + 'static,
    ) -> Result<()> {
        self.run(move |wal| reply(wal.read(low, high, max_bytes)))
    }

    /// Stops the writer after it has written, fsynced and reported everything submitted, and
    /// returns the log.
    pub fn stop(mut self) -> Wal {
        let thread = self.thread.take().expect("the writer thread is joined only here");
        // Closing the channel lets the thread finish the queue and end.
        let (closed, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.sender, closed));
        match thread.join() {
            Ok(wal) => wal,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// The writer thread: batches, one fsync per batch, a notification per fsync.
fn write_loop(
    mut wal: Wal,
    receiver: Receiver<Request>,
    mut notify: impl FnMut(Notification),
) -> Wal {
    while let Ok(first) = receiver.recv() {
        let mut through = None;
        let mut batch_bytes = 0;
        let mut next = Some(first);
        let mut outcome = Ok(());
        while let Some(request) = next.take() {
            outcome = perform(&mut wal, request, &mut through, &mut batch_bytes);
            if outcome.is_err() || batch_bytes >= MAX_BATCH_BYTES {
                break;
            }
            next = receiver.try_recv().ok();
        }
        if let (Ok(()), Some(through)) = (&outcome, through) {
            let started = Instant::now();
            outcome = wal.sync().map(|(index, term)| {
                let sync_duration = started.elapsed();
                notify(Notification::Durable { through, index, term, sync_duration });
            });
        }
        if let Err(error) = outcome {
            notify(Notification::Failed(error));
            break;
        }
    }
    wal
}

/// Performs one request; writes raise `through` to their ticket.
fn perform(
    wal: &mut Wal,
    request: Request,
    through: &mut Option<Ticket>,
    batch_bytes: &mut u64,
) -> Result<()> {
    match request {
        Request::Append(ticket, entries) => {
            *batch_bytes += entries.iter().map(Entry::size).sum::<u64>();
            wal.append(&entries)?;
            *through = Some(ticket);
        }
        Request::HardState(ticket, hard_state) => {
            wal.save_hard_state(hard_state)?;
            *through = Some(ticket);
        }
        Request::Commit(ticket, commit) => {
            wal.save_commit(commit)?;
            *through = Some(ticket);
        }
        Request::Job(job) => job(wal),
    }
    Ok(())
}
