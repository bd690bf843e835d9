//! Linearizable reads, batched before they reach the core (ReadIndex, Raft thesis §6.4; lease
//! reads, §6.4.1).
//!
//! A linearizable read needs no work of its own from the driver: the core confirms leadership
//! with one heartbeat round for every read asked before the round started (a follower asks its
//! leader once for all of them), and the store then serves them all. So reads are batched on
//! the client side of the driver, where they cost a lock and a reference count each instead of
//! a channel message, a reply channel and a driver wake-up each:
//!
//! 1. A client task **joins the open batch** of its kind ([`ReadGate::join`]: ReadIndex, or
//!    lease first). The first to join a batch wakes the driver; the others only wait on it.
//! 2. The driver **closes the open batch** (a fresh one opens in its place) and asks the core
//!    for one read, with one context, for the whole batch ([`Runtime::submit_reads`]): a lease
//!    read if the batch asked for one and the core grants it, otherwise `forward_read_index`
//!    (at the leader a heartbeat round, on a follower a `ReadIndex` request to the leader). It
//!    keeps one batch of each kind in the core at a time: while the core confirms one, the next
//!    one fills, so under load every heartbeat round carries every read that arrived during the
//!    round before, and the driver hears from clients once per round, not once per read.
//! 3. When the core reports the read ready, the driver **finishes the batch** once the store
//!    has applied the read index (at once if it has), waking every client of the batch in one
//!    pass. If the core fails the read (leadership lost), or leaves it unanswered for two
//!    election timeouts (a follower's request or its answer lost), every client of the batch
//!    gets the error: "not leader" on a follower, which the HTTP layer forwards to the leader.
//!
//! Why this stays linearizable: a client joins its batch before the driver closes it (both
//! under the gate's lock), and the driver asks the core only after closing it, so the heartbeat
//! round that confirms the batch started after every one of its reads arrived, as §6.4
//! requires; and the batch is answered only once the store has applied the read index, which
//! the core set no lower than its commit index when the round started.
//!
//! Read contexts start at a random number and never repeat, not even across restarts (contract
//! item 6): they name a follower's requests to its leader, and an answer to a request sent
//! before a crash must not release a new read.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use skiff_raft::{Index, LeaseReadError, ReadIndexError, RoleKind};
use tokio::sync::Notify;

use super::{Runtime, ServiceError};

/// The kinds of linearizable read, each batched on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadKind {
    /// Through ReadIndex.
    Index = 0,
    /// Under the leader's lease when the core grants one, through ReadIndex otherwise.
    Lease = 1,
}

impl ReadKind {
    /// Every kind, in the order of their slots.
    const ALL: [ReadKind; 2] = [ReadKind::Index, ReadKind::Lease];
}

/// Where client tasks join batches of linearizable reads, and the driver takes them.
#[derive(Debug)]
pub(crate) struct ReadGate {
    /// The batches open for joining.
    state: Mutex<GateState>,
    /// Wakes the driver when an open batch gets its first reader. A wake-up while the driver
    /// is busy is kept (one permit), so none is lost.
    pub(super) wake: Notify,
}

/// The guarded part of the gate.
#[derive(Debug)]
struct GateState {
    /// The batch new reads of each kind join.
    open: [Arc<ReadBatch>; 2],
    /// How many reads joined each open batch; the driver submits a batch only if some did.
    readers: [u64; 2],
    /// Set once the driver stopped: the open batches are finished with an error, and every
    /// later read gets it at once.
    closed: bool,
}

/// Reads confirmed together: every client of the batch waits on it.
#[derive(Debug, Default)]
pub(crate) struct ReadBatch {
    /// The read index once the store may serve the batch, or why it cannot. Set once.
    outcome: OnceLock<Result<Index, ServiceError>>,
    /// Woken when the outcome is set.
    done: Notify,
}

impl ReadBatch {
    /// Sets the outcome and wakes every client waiting on the batch.
    fn finish(&self, outcome: Result<Index, ServiceError>) {
        // A batch is finished once; a second outcome (the driver stopping after a failure it
        // already reported) changes nothing for clients that may have seen the first.
        let _ = self.outcome.set(outcome);
        self.done.notify_waiters();
    }

    /// Waits for the outcome.
    pub(crate) async fn outcome(&self) -> Result<Index, ServiceError> {
        loop {
            // Registered before the check, so a `finish` between the check and the wait
            // still wakes this task.
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(outcome) = self.outcome.get() {
                return outcome.clone();
            }
            notified.await;
        }
    }
}

impl ReadGate {
    /// A gate with empty open batches.
    pub(crate) fn new() -> ReadGate {
        let state = GateState { open: Default::default(), readers: [0; 2], closed: false };
        ReadGate { state: Mutex::new(state), wake: Notify::new() }
    }

    /// Joins the open batch of `kind`; the caller waits on [`ReadBatch::outcome`].
    pub(crate) fn join(&self, kind: ReadKind) -> Arc<ReadBatch> {
        let slot = kind as usize;
        let mut state = self.lock();
        let batch = state.open[slot].clone();
        if state.closed {
            return batch;
        }
        state.readers[slot] += 1;
        let first = state.readers[slot] == 1;
        drop(state);
        if first {
            self.wake.notify_one();
        }
        batch
    }

    /// Closes the open batch of `kind` if any read joined it, opening a fresh one; returns it
    /// and how many reads joined it.
    fn take(&self, kind: ReadKind) -> Option<(Arc<ReadBatch>, u64)> {
        let slot = kind as usize;
        let mut state = self.lock();
        if state.readers[slot] == 0 || state.closed {
            return None;
        }
        let readers = std::mem::take(&mut state.readers[slot]);
        Some((std::mem::take(&mut state.open[slot]), readers))
    }

    /// Whether reads of `kind` are waiting in the open batch.
    fn has_readers(&self, kind: ReadKind) -> bool {
        self.lock().readers[kind as usize] > 0
    }

    /// Finishes the open batches with `error`, and every later read too: the driver stopped.
    fn close(&self, error: &ServiceError) {
        let mut state = self.lock();
        state.closed = true;
        for batch in &state.open {
            batch.finish(Err(error.clone()));
        }
    }

    /// The state; a panic elsewhere while it was held cannot leave it inconsistent (every
    /// update is a single assignment), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A batch the core is confirming.
#[derive(Debug)]
struct InCore {
    /// The context the core knows it by.
    context: u64,
    /// The batch.
    batch: Arc<ReadBatch>,
    /// How many reads it holds (for the metrics).
    readers: u64,
    /// When it is given up if the core has not answered.
    deadline: Instant,
}

/// The driver's side of the batches: those in the core, and those waiting to be applied.
#[derive(Debug)]
pub(crate) struct Reads {
    /// The batch of each kind the core is confirming.
    in_core: [Option<InCore>; 2],
    /// Confirmed batches waiting for the store to apply their read index.
    ready: BTreeMap<Index, Vec<Arc<ReadBatch>>>,
    /// The context of the next batch asked of the core. Starts at a random number: contexts
    /// name a follower's requests to its leader and must never repeat, not even across
    /// restarts (contract item 6).
    next_context: u64,
    /// How long a batch may wait for the core: two election timeouts.
    patience: Duration,
}

impl Reads {
    /// No reads yet; a batch the core leaves unanswered is given up after `patience`.
    pub(crate) fn new(patience: Duration) -> Reads {
        Reads {
            in_core: [None, None],
            ready: BTreeMap::new(),
            next_context: first_read_context(),
            patience,
        }
    }

    /// Takes every batch in the core that `contexts` names. One answer can name both kinds:
    /// a follower sends the batches it submitted in one action batch to its leader as one
    /// `ReadIndex` request, answered once for all of them.
    fn take_answered(&mut self, contexts: &[u64]) -> Vec<InCore> {
        let named = |slot: &mut InCore| contexts.contains(&slot.context);
        self.in_core.iter_mut().filter_map(|slot| slot.take_if(named)).collect()
    }
}

/// The first read context of this run of the node: random, so that contexts never repeat
/// across restarts (contract item 6) whatever the clock does. `RandomState` is seeded from the
/// operating system's randomness; the time is mixed in as well.
fn first_read_context() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.finish()
}

impl Runtime {
    /// Whether an open batch with reads could be submitted now (the core is not confirming
    /// another batch of its kind).
    pub(super) fn reads_to_submit(&self) -> bool {
        ReadKind::ALL.into_iter().any(|kind| {
            self.reads.in_core[kind as usize].is_none() && self.read_gate.has_readers(kind)
        })
    }

    /// Asks the core to confirm the open batch of each kind, if reads joined it and the core
    /// is not confirming another batch of that kind. Returns whether the core has new work.
    pub(super) fn submit_reads(&mut self) -> bool {
        let mut submitted = false;
        for kind in ReadKind::ALL {
            if self.reads.in_core[kind as usize].is_some() {
                continue;
            }
            let Some((batch, readers)) = self.read_gate.take(kind) else { continue };
            submitted |= self.submit(kind, batch, readers);
        }
        submitted
    }

    /// Asks the core for one read for `batch`: under the lease for a lease batch when the core
    /// grants it, otherwise through ReadIndex, at the leader or (on a follower) asked of the
    /// leader. Returns whether the core took it.
    fn submit(&mut self, kind: ReadKind, batch: Arc<ReadBatch>, readers: u64) -> bool {
        let context = self.reads.next_context;
        self.reads.next_context = context.wrapping_add(1);
        let granted = kind == ReadKind::Lease && {
            match self.node.lease_read(context) {
                Ok(()) => true,
                Err(LeaseReadError::NotLeader { .. }) => false,
                Err(refused) => {
                    tracing::debug!(%refused, "lease read refused; reading through ReadIndex");
                    self.metrics.lease_reads_refused.inc_by(readers);
                    false
                }
            }
        };
        if granted {
            self.metrics.lease_reads.inc_by(readers);
        } else if let Err(ReadIndexError::NotLeader { leader, .. }) =
            self.node.forward_read_index(context)
        {
            // Not a failure: the HTTP layer forwards the reads to the leader.
            batch.finish(Err(self.not_leader(leader)));
            return false;
        } else if self.node.role() != RoleKind::Leader {
            self.metrics.follower_reads.inc_by(readers);
        }
        let deadline = Instant::now() + self.reads.patience;
        self.reads.in_core[kind as usize] = Some(InCore { context, batch, readers, deadline });
        true
    }

    /// The core confirmed the reads of `contexts` at `index`: the batches among them are
    /// answered once the store has applied `index`.
    pub(super) fn on_read_ready(&mut self, index: Index, contexts: &[u64]) {
        for InCore { batch, .. } in self.reads.take_answered(contexts) {
            if self.applied >= index {
                batch.finish(Ok(index));
            } else {
                self.reads.ready.entry(index).or_default().push(batch);
            }
        }
    }

    /// The core could not confirm the reads of `contexts` (leadership lost, or the leader
    /// refused a follower's request): their clients retry at the leader.
    pub(super) fn on_read_failed(&mut self, contexts: &[u64]) {
        for InCore { batch, readers, .. } in self.reads.take_answered(contexts) {
            self.metrics.read_indexes_failed.inc_by(readers);
            batch.finish(Err(self.not_leader(self.node.leader())));
        }
    }

    /// Gives up the batches the core has not answered within their patience: a follower's
    /// request or its leader's answer was lost, or leadership is in doubt. A follower's is
    /// answered "not leader" (the HTTP layer forwards the reads to the leader), a leader's
    /// "timeout".
    pub(super) fn expire_reads(&mut self) {
        let now = Instant::now();
        for kind in ReadKind::ALL {
            let slot = &mut self.reads.in_core[kind as usize];
            let Some(InCore { batch, readers, .. }) =
                slot.take_if(|in_core| in_core.deadline <= now)
            else {
                continue;
            };
            self.metrics.read_indexes_failed.inc_by(readers);
            let error = if self.node.role() == RoleKind::Leader {
                ServiceError::Timeout
            } else {
                self.not_leader(self.node.leader())
            };
            batch.finish(Err(error));
        }
    }

    /// Answers the confirmed batches whose read index the store has applied.
    pub(super) fn release_ready_reads(&mut self) {
        let applied = self.applied;
        let still_waiting = self.reads.ready.split_off(&applied.next());
        for batches in std::mem::replace(&mut self.reads.ready, still_waiting).into_values() {
            for batch in batches {
                batch.finish(Ok(applied));
            }
        }
    }

    /// The driver stops: every read waiting, and every later one, gets `error`.
    pub(super) fn stop_reads(&mut self, error: &ServiceError) {
        for in_core in self.reads.in_core.iter_mut().filter_map(Option::take) {
            in_core.batch.finish(Err(error.clone()));
        }
        for batch in std::mem::take(&mut self.reads.ready).into_values().flatten() {
            batch.finish(Err(error.clone()));
        }
        self.read_gate.close(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_joining_before_the_driver_takes_the_batch_share_it() {
        let gate = ReadGate::new();
        assert!(gate.take(ReadKind::Index).is_none(), "an empty batch is never submitted");
        let first = gate.join(ReadKind::Index);
        let second = gate.join(ReadKind::Index);
        assert!(Arc::ptr_eq(&first, &second));
        let (taken, readers) = gate.take(ReadKind::Index).expect("two reads joined");
        assert_eq!(readers, 2);
        assert!(Arc::ptr_eq(&taken, &first));
        let third = gate.join(ReadKind::Index);
        assert!(!Arc::ptr_eq(&third, &first), "a read after the take waits for the next round");
        taken.finish(Ok(Index(7)));
        assert_eq!(first.outcome().await, Ok(Index(7)));
        assert_eq!(second.outcome().await, Ok(Index(7)));
        assert!(third.outcome.get().is_none());
    }

    #[tokio::test]
    async fn a_waiting_read_is_woken_by_the_finish() {
        let gate = Arc::new(ReadGate::new());
        let batch = gate.join(ReadKind::Index);
        let waiter = tokio::spawn(async move { batch.outcome().await });
        tokio::task::yield_now().await;
        let (taken, _) = gate.take(ReadKind::Index).expect("one read joined");
        taken.finish(Err(ServiceError::Timeout));
        assert_eq!(waiter.await.expect("the waiter ran"), Err(ServiceError::Timeout));
    }

    #[tokio::test]
    async fn a_closed_gate_fails_every_read_at_once() {
        let gate = ReadGate::new();
        let waiting = gate.join(ReadKind::Index);
        gate.close(&ServiceError::Unavailable("stopped".into()));
        let later = gate.join(ReadKind::Index);
        let stopped = Err(ServiceError::Unavailable("stopped".into()));
        assert_eq!(waiting.outcome().await, stopped);
        assert_eq!(later.outcome().await, stopped);
        assert!(
            gate.take(ReadKind::Index).is_none(),
            "nothing is submitted after the driver stopped"
        );
    }

    #[tokio::test]
    async fn each_kind_of_read_has_its_own_batch() {
        let gate = ReadGate::new();
        let index = gate.join(ReadKind::Index);
        let lease = gate.join(ReadKind::Lease);
        assert!(!Arc::ptr_eq(&index, &lease));
        let (taken, readers) = gate.take(ReadKind::Lease).expect("a lease read joined");
        assert_eq!(readers, 1);
        assert!(Arc::ptr_eq(&taken, &lease));
        let (taken, _) = gate.take(ReadKind::Index).expect("a read joined");
        assert!(Arc::ptr_eq(&taken, &index));
    }

    #[test]
    fn one_answer_naming_batches_of_both_kinds_takes_them_both() {
        // A follower asks its leader once for the batches of both kinds it submitted together,
        // and the answer names both contexts: taking only the first left the other waiting for
        // an answer that had come, until it expired two election timeouts later.
        let mut reads = Reads::new(Duration::from_secs(1));
        let deadline = Instant::now() + Duration::from_secs(1);
        for (kind, context) in [(ReadKind::Index, 5), (ReadKind::Lease, 6)] {
            let batch = Arc::new(ReadBatch::default());
            reads.in_core[kind as usize] = Some(InCore { context, batch, readers: 1, deadline });
        }
        let answered: Vec<u64> =
            reads.take_answered(&[6, 5]).iter().map(|batch| batch.context).collect();
        assert_eq!(answered, vec![5, 6]);
        assert!(reads.in_core.iter().all(Option::is_none), "nothing is left in the core");
        assert!(reads.take_answered(&[5]).is_empty(), "an answer is taken once");
    }
}
