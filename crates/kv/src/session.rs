//! Client sessions: exactly-once writes over a log that may carry a write twice (Raft thesis
//! §6.3).
//!
//! A client that sends a write and hears nothing back cannot tell whether the write was lost
//! or committed: the leader may have crashed after committing it and before answering. The
//! client must retry, and the retry may commit a second copy of the same write. Applying both
//! would apply the write twice, which no linearizable history explains (a put that overwrites
//! a later put, a compare-and-swap that fails against its own first attempt). So a client
//! numbers its writes, and the store keeps a **session** per client: the last sequence number
//! it applied for that client and the [`Outcome`] it returned.
//!
//! A command under session `(client, sequence)` at log index `i` is
//! - **a retry** if `sequence` equals the session's sequence: nothing changes, and the
//!   recorded outcome is returned, so the client hears what the first attempt did;
//! - **stale** if `sequence` is lower: a delayed copy of a write the client has already moved
//!   on from. Nothing changes; the answer is [`Outcome::StaleSequence`];
//! - **new** if `sequence` is higher, or the client has no session: it is applied, and its
//!   outcome replaces the record. Gaps are allowed: a client may give up on a sequence number
//!   (after a timeout, or a restart that lost its state) and move on.
//!
//! One record per client is enough for a client with one write in flight at a time. A client
//! that pipelines writes and retries an older one while a newer one has been applied gets
//! [`Outcome::StaleSequence`] for the retry: safe (nothing is applied twice) but not the first
//! answer.
//!
//! ## The bound, and what it costs
//! Sessions are replicated state: every node keeps them and every snapshot carries them. A
//! client never says it has gone away, so without a bound the sessions of every client that
//! ever wrote would grow without limit. The thesis expires sessions by time, with timestamps
//! the leader puts in the log; skiff bounds them by count instead, which needs no clock: at
//! most `max_sessions` (default [`DEFAULT_MAX_SESSIONS`]), and when a new session would exceed
//! that, the **least recently active** session is evicted. A session's activity is the log
//! index of the last command that carried it (its application, a retry or a stale copy, all of
//! which show the client is alive). Every node applies the same commands at the same indexes,
//! so every node evicts the same session at the same entry: eviction is deterministic.
//!
//! The cost: **a retry from an evicted client is applied again**. Its session is gone, so the
//! retry looks like the client's first write. With the default bound that takes 100,000 other
//! clients writing between a client's attempt and its retry; a deployment with more concurrent
//! clients must raise the bound, paying memory (and snapshot size) per session, including the
//! outcome's bytes: a recorded failed compare-and-swap keeps the value it saw alive.
//!
//! ## Invariants
//! - Every session's `last_active` is a mark in the activity queue, and no two sessions share
//!   one (at most one command is applied per log index); the marks increase along the queue.
//! - A recorded outcome is one a write produced: never `StaleSequence` or `Invalid`.
//! - At most `max_sessions` sessions, and `max_sessions` is at least 1.

use imbl::{OrdMap, Vector};

use crate::{Outcome, Session};

/// The number of client sessions a [`Store::new`](crate::Store::new) keeps before evicting the
/// least recently active one.
pub const DEFAULT_MAX_SESSIONS: usize = 100_000;

/// What the store remembers about one client's writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// The highest sequence number applied for the client.
    pub sequence: u64,
    /// The outcome of applying `sequence`, which a retry gets back. Never
    /// [`Outcome::StaleSequence`] or [`Outcome::Invalid`].
    pub outcome: Outcome,
    /// The log index at which `sequence` was applied: the revision its write produced, which a
    /// retry should report rather than its own index.
    pub applied_at: u64,
    /// The log index of the last command carrying this session (an application, a retry or a
    /// stale copy); at least `applied_at`. Eviction takes the smallest.
    pub last_active: u64,
}

/// What to do with a command under a session, decided by [`Sessions::admit`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A new write: apply it, then [`Sessions::record`] its outcome.
    Apply,
    /// A retry of the last applied write: answer with its outcome, change nothing.
    Retry(Outcome),
    /// An older write than the last applied one: change nothing.
    Stale {
        /// The client's last applied sequence.
        last: u64,
    },
}

/// The sessions of all clients, bounded, with least-recently-active eviction.
///
/// The eviction order is kept as a queue of `(index, client)` activity marks in log order,
/// pushed at the back whenever a session is active, rather than as an ordered index from which
/// every write would remove its client's previous mark and insert the new one: three map
/// operations per write become one (perf: the sessions' upkeep was a third of a follower's
/// apply, and a follower spends half its CPU applying; `cargo bench -p skiff-kv --bench apply`,
/// same machine and hour: 4.38 -> 4.03 ms per 10,000 puts, 4.42 -> 3.99 under a view; whole
/// cluster, within the noise of `cpu_per_op.sh`). A client's earlier marks stay in the
/// queue, stale (the record's `last_active` has moved past them); eviction skips them, and when
/// stale marks outnumber the sessions the queue is rebuilt without them, `O(1)` per write
/// amortized.
#[derive(Clone, Debug)]
pub(crate) struct Sessions {
    /// Each client's record, by client id (persistent maps, like the store's data: cloning
    /// the sessions is `O(1)`).
    records: OrdMap<u64, SessionRecord>,
    /// Activity marks `(index, client)` in increasing index order: every session's
    /// `last_active` is one, and the others are stale. A persistent vector, `O(1)` to clone.
    activity: Vector<(u64, u64)>,
    /// The most sessions kept; at least 1.
    max: usize,
}

/// Two sets of sessions are equal if they hold the same records under the same bound: the
/// activity queue follows from the records, whatever stale marks it still holds.
impl PartialEq for Sessions {
    fn eq(&self, other: &Sessions) -> bool {
        self.max == other.max && self.records == other.records
    }
}

impl Eq for Sessions {}

impl Sessions {
    /// No sessions, keeping at most `max`.
    pub(crate) fn new(max: usize) -> Sessions {
        assert!(max >= 1, "a store must keep at least one session, not {max}");
        Sessions { records: OrdMap::new(), activity: Vector::new(), max }
    }

    /// Decides what a command under `session` at log index `index` does. A retry or a stale
    /// copy counts as activity of the session; a new write's activity is noted by
    /// [`Sessions::record`].
    pub(crate) fn admit(&mut self, session: Session, index: u64) -> Admission {
        // A look first: most commands are new writes, and a mutable lookup would copy the path
        // to the record for nothing while a snapshot's view shares it.
        match self.records.get(&session.client) {
            Some(record) if session.sequence <= record.sequence => {}
            _ => return Admission::Apply,
        }
        let record = self.records.get_mut(&session.client).expect("found just above");
        assert!(
            index > record.last_active,
            "index {index} is not after client {}'s last activity at {}",
            session.client,
            record.last_active
        );
        record.last_active = index;
        let admission = if session.sequence == record.sequence {
            Admission::Retry(record.outcome.clone())
        } else {
            Admission::Stale { last: record.sequence }
        };
        self.mark_active(index, session.client);
        admission
    }

    /// Records that `session`'s write was applied at `index` with `outcome`, evicting the
    /// least recently active session if that makes one too many.
    pub(crate) fn record(&mut self, session: Session, index: u64, outcome: Outcome) {
        assert!(
            !matches!(outcome, Outcome::StaleSequence { .. } | Outcome::Invalid { .. }),
            "only a write's outcome is recorded, not {outcome:?}"
        );
        let fresh = SessionRecord {
            sequence: session.sequence,
            outcome,
            applied_at: index,
            last_active: index,
        };
        // An existing record is updated where it is (one lookup); a new one is inserted.
        match self.records.get_mut(&session.client) {
            Some(record) => {
                assert!(
                    record.sequence < session.sequence,
                    "client {} recorded sequence {} after {}",
                    session.client,
                    session.sequence,
                    record.sequence
                );
                *record = fresh;
            }
            None => {
                self.records.insert(session.client, fresh);
            }
        }
        self.mark_active(index, session.client);
        if self.records.len() > self.max {
            self.evict_least_recently_active();
        }
        assert!(self.records.len() <= self.max, "more sessions than the bound {}", self.max);
    }

    /// Notes that `client` was active at `index`, the latest index any session was active at;
    /// drops the stale marks once they outnumber the live ones.
    fn mark_active(&mut self, index: u64, client: u64) {
        if let Some(&(last, other)) = self.activity.back() {
            assert!(index > last, "client {client} active at {index}, client {other} at {last}");
        }
        self.activity.push_back((index, client));
        if self.activity.len() > 2 * self.records.len() + STALE_MARKS_KEPT {
            let records = &self.records;
            self.activity.retain(|&(index, client)| is_live(records, index, client));
        }
        assert!(self.activity.len() >= self.records.len(), "a session lost its activity mark");
    }

    /// Forgets the session whose last activity is the oldest.
    fn evict_least_recently_active(&mut self) {
        loop {
            let (index, client) = self.activity.pop_front().expect("every session has a mark");
            if is_live(&self.records, index, client) {
                self.records.remove(&client).expect("a live mark has a record");
                return;
            }
        }
    }

    /// Adds a session read from a snapshot, refusing what [`Sessions::record`] could never
    /// have produced. Sessions must come in increasing client order.
    pub(crate) fn restore(&mut self, client: u64, record: SessionRecord) -> Result<(), String> {
        if let Some(&(last, _)) = self.records.get_max()
            && client <= last
        {
            return Err(format!("session of client {client} follows client {last}"));
        }
        if self.records.len() == self.max {
            return Err(format!("more sessions than the bound of {}", self.max));
        }
        if record.applied_at == 0 || record.applied_at > record.last_active {
            return Err(format!(
                "client {client}'s session was applied at {} and last active at {}",
                record.applied_at, record.last_active
            ));
        }
        if matches!(record.outcome, Outcome::StaleSequence { .. } | Outcome::Invalid { .. }) {
            return Err(format!("client {client}'s session records {:?}", record.outcome));
        }
        // Sessions come in client order, not activity order: each mark goes in its place.
        let at = match self.activity.binary_search_by_key(&record.last_active, |&(index, _)| index)
        {
            Ok(found) => {
                let other = self.activity[found].1;
                return Err(format!(
                    "clients {other} and {client} were both last active at index {}",
                    record.last_active
                ));
            }
            Err(at) => at,
        };
        self.activity.insert(at, (record.last_active, client));
        self.records.insert(client, record);
        Ok(())
    }

    /// The session of `client`, if it has one.
    pub(crate) fn get(&self, client: u64) -> Option<&SessionRecord> {
        self.records.get(&client)
    }

    /// Every session, in increasing client order.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = (u64, &SessionRecord)> {
        self.records.iter().map(|(&client, record)| (client, record))
    }

    /// The number of sessions.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// The most sessions kept.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// The largest `last_active` of any session (0 with none): no session may be active after
    /// the store's applied index. (The last mark is always live: nothing came after it.)
    pub(crate) fn last_activity(&self) -> u64 {
        self.activity.back().map_or(0, |&(index, _)| index)
    }
}

/// Stale activity marks tolerated beyond as many as there are sessions before the queue is
/// rebuilt, so that a store with few sessions does not rebuild it every few writes.
const STALE_MARKS_KEPT: usize = 1024;

/// Whether the mark `(index, client)` is `client`'s last activity.
fn is_live(records: &OrdMap<u64, SessionRecord>, index: u64, client: u64) -> bool {
    records.get(&client).is_some_and(|record| record.last_active == index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(client: u64, sequence: u64) -> Session {
        Session { client, sequence }
    }

    #[test]
    fn a_new_client_or_a_higher_sequence_applies() {
        let mut sessions = Sessions::new(10);
        assert_eq!(sessions.admit(session(1, 5), 1), Admission::Apply);
        sessions.record(session(1, 5), 1, Outcome::Put);
        assert_eq!(sessions.admit(session(1, 6), 2), Admission::Apply, "the next sequence");
        assert_eq!(sessions.admit(session(1, 9), 2), Admission::Apply, "a gap is allowed");
    }

    #[test]
    fn a_retry_returns_the_recorded_outcome_and_a_lower_sequence_is_stale() {
        let mut sessions = Sessions::new(10);
        sessions.record(session(1, 5), 3, Outcome::Deleted { existed: true });
        assert_eq!(
            sessions.admit(session(1, 5), 4),
            Admission::Retry(Outcome::Deleted { existed: true })
        );
        assert_eq!(sessions.admit(session(1, 4), 5), Admission::Stale { last: 5 });
        let record = sessions.get(1).expect("client 1 has a session");
        assert_eq!(record.applied_at, 3, "a retry does not move the application");
        assert_eq!(record.last_active, 5, "a retry and a stale copy are activity");
    }

    #[test]
    fn the_least_recently_active_session_is_evicted() {
        let mut sessions = Sessions::new(2);
        sessions.record(session(1, 1), 1, Outcome::Put);
        sessions.record(session(2, 1), 2, Outcome::Put);
        // Client 1 retries, so client 2 is now the least recently active.
        assert_eq!(sessions.admit(session(1, 1), 3), Admission::Retry(Outcome::Put));
        sessions.record(session(3, 1), 4, Outcome::Put);
        assert_eq!(sessions.len(), 2);
        assert!(sessions.get(2).is_none(), "client 2 was evicted");
        assert!(sessions.get(1).is_some());
        assert!(sessions.get(3).is_some());
        // The evicted client's retry is applied again: the documented cost of the bound.
        assert_eq!(sessions.admit(session(2, 1), 5), Admission::Apply);
    }

    #[test]
    fn eviction_skips_stale_marks_and_the_queue_sheds_them() {
        let mut sessions = Sessions::new(3);
        let mut index = 0;
        // Clients 1 and 2 write in turn, leaving far more stale marks than are kept.
        for sequence in 1..=2_000 {
            for client in [1, 2] {
                index += 1;
                sessions.record(session(client, sequence), index, Outcome::Put);
            }
        }
        let marks = sessions.activity.len();
        assert!(marks <= 2 * 2 + STALE_MARKS_KEPT + 1, "stale marks are shed: {marks}");
        // Client 1 was last active before client 2: new clients evict 1 first, then 2.
        index += 1;
        sessions.record(session(3, 1), index, Outcome::Put);
        index += 1;
        sessions.record(session(4, 1), index, Outcome::Put);
        assert!(sessions.get(1).is_none() && sessions.get(2).is_some(), "client 1 went first");
        index += 1;
        sessions.record(session(5, 1), index, Outcome::Put);
        assert!(sessions.get(2).is_none(), "then client 2");
        assert_eq!(sessions.len(), 3);
        assert_eq!(sessions.last_activity(), index);
    }

    #[test]
    fn restore_refuses_what_record_never_produces() {
        let record = |applied_at, last_active| SessionRecord {
            sequence: 1,
            outcome: Outcome::Put,
            applied_at,
            last_active,
        };
        let mut sessions = Sessions::new(2);
        assert_eq!(sessions.restore(5, record(1, 2)), Ok(()));
        assert!(sessions.restore(5, record(3, 3)).is_err(), "a client twice");
        assert!(sessions.restore(4, record(3, 3)).is_err(), "clients out of order");
        assert!(sessions.restore(6, record(1, 2)).is_err(), "two sessions active at one index");
        assert!(sessions.restore(6, record(4, 3)).is_err(), "applied after last active");
        assert!(sessions.restore(6, record(0, 3)).is_err(), "applied at index 0");
        let stale = SessionRecord { outcome: Outcome::StaleSequence { last: 1 }, ..record(3, 3) };
        assert!(sessions.restore(6, stale).is_err(), "a stale outcome is never recorded");
        assert_eq!(sessions.restore(6, record(3, 3)), Ok(()));
        assert!(sessions.restore(7, record(4, 4)).is_err(), "over the bound");
        assert_eq!(sessions.last_activity(), 3);
    }

    #[test]
    #[should_panic(expected = "at least one session")]
    fn a_bound_of_zero_is_a_bug() {
        Sessions::new(0);
    }
}
