//! The core's view of the replicated log: enough to decide everything, without holding it all.
//!
//! The log itself lives in the driver's storage and may be far larger than memory. The core
//! keeps only:
//! - the **term runs**: for every term that has entries, the index of its first entry. Terms
//!   change rarely, so this is tiny, and it answers `term(i)` for any index in O(log terms) —
//!   all that vote checks, `Append` consistency checks and conflict hints need;
//! - the **tail cache**: the newest entries, in memory. Every entry that is not yet durable is
//!   in it (the driver may not be able to read those back yet), plus recently durable ones up to
//!   a byte budget, so a leader in steady state sends and applies without reading storage;
//! - the **durable index** and the **commit index**.
//!
//! Older entries are read on request ([`ReadRequest`](crate::ReadRequest)): a read is one
//! bounded batch, so catching up a follower costs time linear in the entries sent.
//!
//! **Compaction** moves the first index forward once a snapshot covers the entries before it
//! (`compact_to`); the entry just before the first index, the *compaction point*, keeps its term
//! (`prev_term`), so consistency checks against it still work. Above the compaction point the
//! log answers exactly as the uncompacted log would. **Installing a snapshot** replaces the whole
//! log with an empty one after the snapshot's last entry (`install_snapshot`, Raft §7).
//!
//! Invariants (checked by `assert!` where they could break):
//! - indexes are consecutive from `first_index` to `last_index`; terms never decrease along the
//!   log, starting from `prev_term`; term runs are strictly increasing in both index and term,
//!   and the first one starts at `first_index`;
//! - `first_index - 1 <= durable` and `first_index - 1 <= commit`: only durable, committed
//!   entries are compacted;
//! - `commit <= last_index` and never decreases; nothing at or below `commit` is ever
//!   truncated (Raft §5.4: committed entries are permanent);
//! - `durable <= last_index`, and `log[..=durable]` is durable in the driver's storage;
//! - every entry above `durable` is in the cache.

use std::collections::VecDeque;

use crate::error::RestoreError;
use crate::types::{Entry, Index, Term};

/// What a restarting node's storage holds, in summary: the driver computes it while opening its
/// log (every record is read at open anyway).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogState {
    /// The index of the first entry in storage; 1 for a log that was never compacted.
    pub first_index: Index,
    /// The index of the last entry in storage; `first_index - 1` when empty.
    pub last_index: Index,
    /// The term of the entry just before `first_index` (0 for a log never compacted).
    pub prev_term: Term,
    /// For each term with entries in storage, the index of its first entry, in order.
    pub term_starts: Vec<(Index, Term)>,
}

impl Default for LogState {
    /// The empty log of a new node.
    fn default() -> LogState {
        LogState {
            first_index: Index(1),
            last_index: Index(0),
            prev_term: Term(0),
            term_starts: Vec::new(),
        }
    }
}

impl LogState {
    /// The summary of a log holding exactly these (index, term) pairs, in order, starting at 1.
    pub fn from_terms(entries: impl IntoIterator<Item = (Index, Term)>) -> LogState {
        LogState::from_terms_after(Index(0), Term(0), entries)
    }

    /// The summary of a log compacted up to `prev_index`, whose entry had `prev_term`, and
    /// holding these (index, term) pairs after it, in order.
    pub fn from_terms_after(
        prev_index: Index,
        prev_term: Term,
        entries: impl IntoIterator<Item = (Index, Term)>,
    ) -> LogState {
        let mut state = LogState {
            first_index: prev_index.next(),
            last_index: prev_index,
            prev_term,
            term_starts: Vec::new(),
        };
        for (index, term) in entries {
            if state.term_starts.last().is_none_or(|&(_, last_term)| last_term != term) {
                state.term_starts.push((index, term));
            }
            state.last_index = index;
        }
        state
    }
}

/// A `PersistEntries` handed to the driver and not yet reported durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PendingWrite {
    /// The index of its first entry: it supersedes everything stored from here on.
    first: Index,
    /// The index of its last entry.
    last: Index,
    /// The term of its last entry: with `last`, what the driver reports when it completes.
    last_term: Term,
}

/// The core's view of the log (see the module documentation).
#[derive(Debug)]
pub(crate) struct RaftLog {
    /// The first index in the log; entries below it were compacted away.
    first_index: Index,
    /// The term of the entry at `first_index - 1`.
    prev_term: Term,
    /// The index of the last entry.
    last_index: Index,
    /// `(first index, term)` of every term that has entries, strictly increasing in both.
    term_runs: Vec<(Index, Term)>,
    /// The newest entries, consecutive and ending at `last_index` when not empty. Holds every
    /// entry above `durable`.
    cache: VecDeque<Entry>,
    /// The sum of `Entry::size` over `cache`.
    cache_bytes: u64,
    /// The budget for durable entries kept in `cache`.
    max_cached_bytes: u64,
    /// The highest index such that the log up to it, as it stands, is durable.
    durable: Index,
    /// The first index appended since the last `take_unpersisted`, if any: the start of the
    /// next `PersistEntries` action.
    unpersisted_from: Option<Index>,
    /// The writes handed to the driver and not yet reported durable, oldest first. Writes
    /// complete in this order, so a report settles the oldest write it matches and every write
    /// before it — and only entries below every still-pending write's first index count as
    /// durable (a later pending write may supersede what the completed one wrote).
    pending_writes: VecDeque<PendingWrite>,
    /// The highest index known to be committed.
    commit: Index,
}

impl RaftLog {
    /// The log as restored from storage; everything in storage is durable.
    pub(crate) fn restore(
        state: &LogState,
        commit: Index,
        max_cached_bytes: u64,
    ) -> Result<RaftLog, RestoreError> {
        let invalid = |reason: String| Err(RestoreError { reason });
        if state.first_index.0 == 0 {
            return invalid("the first log index is 1 or later".into());
        }
        if state.last_index < state.first_index.prev() {
            return invalid(format!(
                "last index {} is before first index {}",
                state.last_index, state.first_index
            ));
        }
        let empty = state.last_index < state.first_index;
        match state.term_starts.first() {
            None if !empty => return invalid("a non-empty log needs its term runs".into()),
            Some(_) if empty => return invalid("an empty log has no term runs".into()),
            Some(&(start, _)) if start != state.first_index => {
                return invalid(format!(
                    "the first term run starts at {start}, not at the first index"
                ));
            }
            _ => {}
        }
        // The first run may continue the compaction point's term; later runs raise the term.
        let mut previous = state.first_index.prev();
        let mut previous_term = state.prev_term;
        for (position, &(start, term)) in state.term_starts.iter().enumerate() {
            let term_in_order =
                if position == 0 { term >= previous_term } else { term > previous_term };
            if start > state.last_index || start <= previous || !term_in_order {
                return invalid(format!("term run {start}@{term} is out of order"));
            }
            previous = start;
            previous_term = term;
        }
        if commit > state.last_index {
            return invalid(format!(
                "commit {commit} is beyond the last index {}",
                state.last_index
            ));
        }
        Ok(RaftLog {
            first_index: state.first_index,
            prev_term: state.prev_term,
            last_index: state.last_index,
            term_runs: state.term_starts.clone(),
            cache: VecDeque::new(),
            cache_bytes: 0,
            max_cached_bytes,
            durable: state.last_index,
            unpersisted_from: None,
            pending_writes: VecDeque::new(),
            commit: commit.max(state.first_index.prev()),
        })
    }

    /// The first index in the log.
    pub(crate) fn first_index(&self) -> Index {
        self.first_index
    }

    /// The index of the last entry (`first_index - 1` when empty).
    pub(crate) fn last_index(&self) -> Index {
        self.last_index
    }

    /// The term of the last entry.
    pub(crate) fn last_term(&self) -> Term {
        self.term_runs.last().map_or(self.prev_term, |&(_, term)| term)
    }

    /// The highest index such that the log up to it is durable.
    pub(crate) fn durable(&self) -> Index {
        self.durable
    }

    /// The commit index.
    pub(crate) fn commit(&self) -> Index {
        self.commit
    }

    /// The term of the entry at `index`, if the log holds it (or it is the compaction point).
    pub(crate) fn term(&self, index: Index) -> Option<Term> {
        if index == self.first_index.prev() {
            return Some(self.prev_term);
        }
        if index < self.first_index || index > self.last_index {
            return None;
        }
        // The run containing `index` is the last one starting at or before it.
        let position = self.term_runs.partition_point(|&(start, _)| start <= index);
        Some(self.term_runs[position - 1].1)
    }

    /// The first index of the run of entries that contains `index` (which must be in the log).
    pub(crate) fn first_index_of_run_at(&self, index: Index) -> Index {
        let position = self.term_runs.partition_point(|&(start, _)| start <= index);
        assert!(position > 0, "index {index} is not in the log [{}..]", self.first_index);
        self.term_runs[position - 1].0
    }

    /// The last index holding an entry of `term`, if the log has any.
    pub(crate) fn last_index_of_term(&self, term: Term) -> Option<Index> {
        let position =
            self.term_runs.binary_search_by(|&(_, run_term)| run_term.cmp(&term)).ok()?;
        Some(match self.term_runs.get(position + 1) {
            Some(&(next_start, _)) => next_start.prev(),
            None => self.last_index,
        })
    }

    /// Whether a log ending at `(last_index, last_term)` is at least as up-to-date as this one
    /// (Raft §5.4.1): the later last term wins; with equal last terms, the longer log wins.
    pub(crate) fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index)
    }

    /// Appends entries that follow the last entry directly (the leader's own proposals).
    pub(crate) fn append(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            assert!(
                entry.index == self.last_index.next(),
                "gap in appended indexes: entry {} after last index {}",
                entry.index,
                self.last_index
            );
            let last_term = self.last_term();
            assert!(
                entry.term >= last_term,
                "term goes backwards in the log: entry {} after last term {last_term}",
                entry.index
            );
            if entry.term > last_term || self.term_runs.is_empty() {
                self.term_runs.push((entry.index, entry.term));
            }
            self.last_index = entry.index;
            self.unpersisted_from.get_or_insert(entry.index);
            self.cache_bytes += entry.size();
            self.cache.push_back(entry);
        }
        self.evict();
    }

    /// Merges entries from the leader that follow `prev_index` (which the caller has matched):
    /// entries already present with the same term are kept, the first conflicting one and
    /// everything after it are replaced (Raft §5.3). Returns the index of the last entry given,
    /// and the index the log was truncated from, if it was.
    pub(crate) fn merge(
        &mut self,
        prev_index: Index,
        entries: Vec<Entry>,
    ) -> (Index, Option<Index>) {
        let last_given = prev_index.plus(entries.len() as u64);
        let mut new_entries = entries.into_iter().peekable();
        let mut truncated_from = None;
        // Skip the prefix we already hold; the log matching property makes it identical.
        while let Some(entry) = new_entries.peek() {
            match self.term(entry.index) {
                Some(term) if term == entry.term => {
                    new_entries.next();
                }
                Some(_) => {
                    truncated_from = Some(entry.index);
                    self.truncate_from(entry.index);
                    break;
                }
                None => break,
            }
        }
        self.append(new_entries.collect());
        (last_given, truncated_from)
    }

    /// Removes every entry from `index` on. Committed entries are never removed.
    fn truncate_from(&mut self, index: Index) {
        assert!(
            index > self.commit,
            "truncating committed entries: from {index} with commit {}",
            self.commit
        );
        assert!(
            index <= self.last_index,
            "truncating beyond the log: {index} > {}",
            self.last_index
        );
        while self.term_runs.last().is_some_and(|&(start, _)| start >= index) {
            self.term_runs.pop();
        }
        while self.cache.back().is_some_and(|entry| entry.index >= index) {
            let entry = self.cache.pop_back().expect("back exists: checked by is_some_and");
            self.cache_bytes -= entry.size();
        }
        self.last_index = index.prev();
        self.durable = self.durable.min(self.last_index);
        // Entries handed to the driver already are superseded by the next PersistEntries, which
        // will start at or before `index`: `merge` always appends the replacing entries next.
        if self.unpersisted_from.is_some_and(|from| from > index) {
            self.unpersisted_from = Some(index);
        }
    }

    /// The entries appended since the last call, for a `PersistEntries` action.
    pub(crate) fn take_unpersisted(&mut self) -> Option<Vec<Entry>> {
        let from = self.unpersisted_from.take()?;
        assert!(
            from <= self.last_index,
            "a truncation at {from} without replacing entries (last index {})",
            self.last_index
        );
        let entries = self.cached(from, self.last_index.next(), u64::MAX);
        let entries = entries.expect("every entry above the durable index is cached");
        let last = entries.last().expect("a write has at least one entry");
        self.pending_writes.push_back(PendingWrite {
            first: from,
            last: last.index,
            last_term: last.term,
        });
        Some(entries)
    }

    /// Records that the driver completed the write whose last entry is `index` at `term`, and
    /// every write handed over before it. A report that matches no pending write (a duplicate)
    /// is ignored. Returns whether `durable` moved.
    ///
    /// Matching on (index, term) alone is not enough: a follower can be handed `[2@1]`, then
    /// `[2@2]`, then `[2@1, 3@3]` by three leaders in turn. When the first write completes, entry
    /// 2@1 is back in the log, but the disk will hold 2@2 once the second completes — so nothing
    /// from index 2 on is durable until the third does. Hence the queue, and the bound below by
    /// the first index of every write still pending.
    pub(crate) fn persisted(&mut self, index: Index, term: Term) -> bool {
        let Some(position) = self
            .pending_writes
            .iter()
            .position(|write| write.last == index && write.last_term == term)
        else {
            return false;
        };
        self.pending_writes.drain(..=position);
        // After the completed writes the disk's log ends at `index`; what a pending write or a
        // not yet handed-over append will replace is not durable as the log now stands.
        let mut durable = index.min(self.last_index);
        if let Some(first) = self.pending_writes.iter().map(|write| write.first).min() {
            durable = durable.min(first.prev());
        }
        if let Some(from) = self.unpersisted_from {
            durable = durable.min(from.prev());
        }
        if durable <= self.durable {
            return false;
        }
        self.durable = durable;
        self.evict();
        true
    }

    /// Advances the commit index to `index`.
    pub(crate) fn commit_to(&mut self, index: Index) {
        assert!(index > self.commit, "commit goes backwards: {} -> {index}", self.commit);
        assert!(
            index <= self.last_index,
            "committing beyond the log: {index} > last index {}",
            self.last_index
        );
        self.commit = index;
    }

    /// Compacts the log up to `index`: entries at or below it are no longer held by the driver,
    /// and the first index becomes `index + 1`, with the term at `index` kept as `prev_term`.
    /// Only durable, committed entries may be compacted (a snapshot covers them). An index at or
    /// below the current compaction point changes nothing.
    pub(crate) fn compact_to(&mut self, index: Index) {
        if index < self.first_index {
            return;
        }
        assert!(index <= self.commit, "compacting {index} beyond the commit index {}", self.commit);
        assert!(
            index <= self.durable,
            "compacting {index} beyond the durable index {}",
            self.durable
        );
        let term = self.term(index).expect("a durable index is in the log");
        let first = index.next();
        if first > self.last_index {
            self.term_runs.clear();
        } else {
            // Keep the run holding the new first index, clipped to start there.
            let position = self.term_runs.partition_point(|&(start, _)| start <= first);
            self.term_runs.drain(..position - 1);
            self.term_runs[0].0 = first;
        }
        while self.cache.front().is_some_and(|entry| entry.index <= index) {
            let entry = self.cache.pop_front().expect("front exists: checked by is_some_and");
            self.cache_bytes -= entry.size();
        }
        self.first_index = first;
        self.prev_term = term;
    }

    /// Replaces the whole log by an empty one after a snapshot whose last entry is `index` at
    /// `term` (Raft §7: the snapshot's state stands for every entry up to it, and a log that does
    /// not hold that entry disagrees with it). The snapshot is committed and durable, so both
    /// indexes move to it. The caller has made sure no write is pending: one landing after the
    /// install would write into the replaced log.
    pub(crate) fn install_snapshot(&mut self, index: Index, term: Term) {
        assert!(
            !self.has_unfinished_writes(),
            "installing snapshot {index}@{term} while log writes are pending"
        );
        assert!(
            index > self.commit,
            "installing snapshot {index} at or below the commit index {}",
            self.commit
        );
        self.first_index = index.next();
        self.prev_term = term;
        self.last_index = index;
        self.term_runs.clear();
        self.cache.clear();
        self.cache_bytes = 0;
        self.durable = index;
        self.commit = index;
    }

    /// Whether entries were appended that the driver has not yet reported durable (handed over
    /// or not).
    pub(crate) fn has_unfinished_writes(&self) -> bool {
        !self.pending_writes.is_empty() || self.unpersisted_from.is_some()
    }

    /// Entries `[low, high)` from the cache, stopping after `max_bytes` (at least one entry), or
    /// `None` if `low` is no longer cached and must be read from storage.
    pub(crate) fn cached(&self, low: Index, high: Index, max_bytes: u64) -> Option<Vec<Entry>> {
        let front = self.cache.front()?.index;
        if low < front {
            return None;
        }
        let high = high.min(self.last_index.next());
        let mut entries = Vec::with_capacity(high.distance_from(low).min(64) as usize);
        let mut bytes = 0;
        let skip = low.distance_from(front) as usize;
        for entry in self.cache.iter().skip(skip).take(high.distance_from(low) as usize) {
            if !entries.is_empty() && bytes + entry.size() > max_bytes {
                break;
            }
            bytes += entry.size();
            entries.push(entry.clone());
        }
        Some(entries)
    }

    /// Drops the oldest durable entries from the cache while it is over budget.
    fn evict(&mut self) {
        while self.cache_bytes > self.max_cached_bytes {
            match self.cache.front() {
                Some(entry) if entry.index <= self.durable => {
                    self.cache_bytes -= entry.size();
                    self.cache.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Checks every invariant of the module documentation; O(cache), for tests.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        assert!(self.commit <= self.last_index);
        assert!(self.durable <= self.last_index);
        assert!(self.first_index.prev() <= self.commit && self.first_index.prev() <= self.durable);
        assert!(self.last_index >= self.first_index.prev());
        match self.term_runs.first() {
            Some(&(start, term)) => {
                assert_eq!(start, self.first_index, "the first run starts at the first index");
                assert!(term >= self.prev_term, "the first run's term is below prev_term");
            }
            None => assert_eq!(self.last_index, self.first_index.prev(), "entries without runs"),
        }
        for pair in self.term_runs.windows(2) {
            assert!(pair[0].0 < pair[1].0 && pair[0].1 < pair[1].1, "runs {:?}", self.term_runs);
        }
        if let Some(front) = self.cache.front() {
            assert!(front.index <= self.durable.next(), "non-durable entry not cached");
            for (offset, entry) in self.cache.iter().enumerate() {
                assert_eq!(entry.index, front.index.plus(offset as u64));
                assert_eq!(Some(entry.term), self.term(entry.index));
            }
            assert_eq!(self.cache.back().map(|entry| entry.index), Some(self.last_index));
        } else {
            assert_eq!(self.durable, self.last_index, "non-durable entries missing from cache");
        }
        assert_eq!(self.cache_bytes, self.cache.iter().map(Entry::size).sum::<u64>());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Payload;
    use proptest::prelude::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry { index: Index(index), term: Term(term), payload: Payload::Noop }
    }

    fn empty_log(max_cached_bytes: u64) -> RaftLog {
        RaftLog::restore(&LogState::from_terms([]), Index(0), max_cached_bytes)
            .expect("an empty log is valid")
    }

    #[test]
    fn terms_come_from_runs() {
        let mut log = empty_log(0);
        log.append(vec![entry(1, 1), entry(2, 1), entry(3, 3), entry(4, 3), entry(5, 4)]);
        let terms: Vec<_> = (0..=6).map(|i| log.term(Index(i)).map(|t| t.0)).collect();
        assert_eq!(terms, vec![Some(0), Some(1), Some(1), Some(3), Some(3), Some(4), None]);
        assert_eq!(log.first_index_of_run_at(Index(4)), Index(3));
        assert_eq!(log.last_index_of_term(Term(3)), Some(Index(4)));
        assert_eq!(log.last_index_of_term(Term(2)), None);
        assert_eq!(log.last_index_of_term(Term(4)), Some(Index(5)));
    }

    #[test]
    fn durable_entries_leave_the_cache_when_over_budget() {
        let mut log = empty_log(0);
        log.append(vec![entry(1, 1)]);
        assert_eq!(log.take_unpersisted().map(|e| e.len()), Some(1));
        log.append(vec![entry(2, 1)]);
        assert_eq!(log.take_unpersisted().map(|e| e.len()), Some(1));
        assert!(log.cached(Index(1), Index(3), u64::MAX).is_some());
        assert!(log.persisted(Index(1), Term(1)));
        assert!(log.cached(Index(1), Index(3), u64::MAX).is_none(), "durable entry 1 evicted");
        assert_eq!(log.cached(Index(2), Index(3), u64::MAX).map(|e| e.len()), Some(1));
        log.check_invariants();
    }

    #[test]
    fn stale_durability_reports_are_ignored() {
        let mut log = empty_log(u64::MAX);
        log.append(vec![entry(1, 1), entry(2, 1), entry(3, 1)]);
        log.take_unpersisted();
        // A new leader replaces entries 2 and 3 before the first write completes.
        log.merge(Index(1), vec![entry(2, 2)]);
        let rewrite = log.take_unpersisted().expect("the replacement must be written");
        assert_eq!(rewrite, vec![entry(2, 2)]);
        assert!(log.persisted(Index(3), Term(1)), "the first write made entry 1 durable");
        assert_eq!(log.durable(), Index(1), "entry 2 is superseded by the pending rewrite");
        assert!(log.persisted(Index(2), Term(2)));
        assert_eq!(log.durable(), Index(2));
        log.check_invariants();
    }

    #[test]
    fn a_completed_write_counts_only_below_later_pending_writes() {
        // Three leaders in turn hand this follower [2@1], [2@2], then [2@1, 3@3].
        let mut log = empty_log(u64::MAX);
        log.append(vec![entry(1, 1)]);
        log.take_unpersisted();
        assert!(log.persisted(Index(1), Term(1)));
        log.merge(Index(1), vec![entry(2, 1)]);
        log.take_unpersisted();
        log.merge(Index(1), vec![entry(2, 2)]);
        log.take_unpersisted();
        log.merge(Index(1), vec![entry(2, 1), entry(3, 3)]);
        log.take_unpersisted();
        // The first write completes: 2@1 is in the log again, but the pending [2@2] will
        // overwrite it on disk, so it is not durable.
        assert!(!log.persisted(Index(2), Term(1)));
        assert_eq!(log.durable(), Index(1));
        assert!(!log.persisted(Index(2), Term(2)), "2@2 is no longer in the log");
        assert_eq!(log.durable(), Index(1));
        assert!(log.persisted(Index(3), Term(3)));
        assert_eq!(log.durable(), Index(3));
        assert!(!log.persisted(Index(3), Term(3)), "a duplicate report changes nothing");
        log.check_invariants();
    }

    #[test]
    fn a_completed_write_counts_only_below_every_later_pending_write() {
        // A deposed leader wrote [2@1] and [3@1] as two writes; the new leader's [2@2] replaces
        // both. When [2@1] completes, [3@1] is at the front of the queue, but [2@2] behind it
        // will overwrite index 2: nothing from 2 on is durable.
        let mut log = empty_log(u64::MAX);
        log.append(vec![entry(1, 1)]);
        log.take_unpersisted();
        assert!(log.persisted(Index(1), Term(1)));
        log.append(vec![entry(2, 1)]);
        log.take_unpersisted();
        log.append(vec![entry(3, 1)]);
        log.take_unpersisted();
        log.merge(Index(1), vec![entry(2, 2)]);
        log.take_unpersisted();
        log.persisted(Index(2), Term(1));
        assert_eq!(log.durable(), Index(1), "2@2 is still on its way to the disk");
    }

    #[test]
    fn restore_accepts_a_compacted_log_continuing_the_snapshot_term() {
        let state = LogState {
            first_index: Index(7),
            last_index: Index(9),
            prev_term: Term(1),
            term_starts: vec![(Index(7), Term(1)), (Index(9), Term(2))],
        };
        let log = RaftLog::restore(&state, Index(0), 0).expect("a compacted log is valid");
        assert_eq!(log.term(Index(6)), Some(Term(1)));
        assert_eq!(log.term(Index(8)), Some(Term(1)));
        assert_eq!(log.term(Index(9)), Some(Term(2)));
    }

    #[test]
    fn compaction_keeps_the_term_of_the_compaction_point() {
        let mut log = empty_log(u64::MAX);
        log.append(vec![entry(1, 1), entry(2, 1), entry(3, 2), entry(4, 2), entry(5, 3)]);
        log.take_unpersisted();
        assert!(log.persisted(Index(5), Term(3)));
        log.commit_to(Index(4));
        log.compact_to(Index(3));
        assert_eq!((log.first_index(), log.term(Index(3))), (Index(4), Some(Term(2))));
        assert_eq!(log.term(Index(2)), None, "compacted entries are gone");
        assert_eq!(log.first_index_of_run_at(Index(4)), Index(4), "the run is clipped");
        assert!(log.cached(Index(3), Index(6), u64::MAX).is_none(), "3 must not be served");
        assert_eq!(log.cached(Index(4), Index(6), u64::MAX).map(|e| e.len()), Some(2));
        log.compact_to(Index(2));
        assert_eq!(log.first_index(), Index(4), "compacting backwards changes nothing");
        log.compact_to(Index(4));
        assert_eq!((log.first_index(), log.last_term()), (Index(5), Term(3)));
        log.check_invariants();
    }

    #[test]
    fn a_log_compacted_to_its_end_is_empty_but_keeps_its_last_term() {
        let mut log = empty_log(u64::MAX);
        log.append(vec![entry(1, 1), entry(2, 2)]);
        log.take_unpersisted();
        log.persisted(Index(2), Term(2));
        log.commit_to(Index(2));
        log.compact_to(Index(2));
        assert_eq!(
            (log.first_index(), log.last_index(), log.last_term()),
            (Index(3), Index(2), Term(2))
        );
        assert!(log.is_up_to_date(Index(2), Term(2)));
        assert!(!log.is_up_to_date(Index(5), Term(1)));
        log.append(vec![entry(3, 2)]);
        assert_eq!(log.term(Index(3)), Some(Term(2)));
        log.check_invariants();
    }

    #[test]
    #[should_panic(expected = "beyond the commit index")]
    fn uncommitted_entries_are_never_compacted() {
        let mut log = empty_log(u64::MAX);
        log.append(vec![entry(1, 1), entry(2, 1)]);
        log.take_unpersisted();
        log.persisted(Index(2), Term(1));
        log.commit_to(Index(1));
        log.compact_to(Index(2));
    }

    #[test]
    fn installing_a_snapshot_replaces_the_whole_log() {
        let mut log = empty_log(u64::MAX);
        log.append(vec![entry(1, 1), entry(2, 1), entry(3, 2)]);
        log.take_unpersisted();
        log.persisted(Index(3), Term(2));
        log.commit_to(Index(1));
        log.install_snapshot(Index(7), Term(3));
        assert_eq!(
            (log.first_index(), log.last_index(), log.last_term()),
            (Index(8), Index(7), Term(3))
        );
        assert_eq!((log.commit(), log.durable()), (Index(7), Index(7)));
        assert_eq!(log.term(Index(7)), Some(Term(3)));
        assert_eq!(log.term(Index(3)), None, "the old log is gone");
        log.append(vec![entry(8, 3)]);
        log.check_invariants();
    }

    #[test]
    #[should_panic(expected = "while log writes are pending")]
    fn a_snapshot_is_never_installed_under_a_pending_write() {
        let mut log = empty_log(u64::MAX);
        log.append(vec![entry(1, 1)]);
        log.take_unpersisted();
        log.install_snapshot(Index(5), Term(1));
    }

    #[test]
    #[should_panic(expected = "truncating committed entries")]
    fn committed_entries_are_never_truncated() {
        let mut log = empty_log(u64::MAX);
        log.append(vec![entry(1, 1), entry(2, 1)]);
        log.commit_to(Index(2));
        log.merge(Index(1), vec![entry(2, 2)]);
    }

    #[test]
    fn restore_rejects_inconsistent_summaries() {
        let bad = LogState {
            first_index: Index(1),
            last_index: Index(5),
            prev_term: Term(0),
            term_starts: vec![(Index(1), Term(2)), (Index(3), Term(1))],
        };
        assert!(RaftLog::restore(&bad, Index(0), 0).is_err());
        let good = LogState::from_terms([(Index(1), Term(1)), (Index(2), Term(2))]);
        assert!(RaftLog::restore(&good, Index(3), 0).is_err(), "commit beyond the log");
        let log = RaftLog::restore(&good, Index(1), 0).expect("consistent");
        assert_eq!(
            (log.last_index(), log.last_term(), log.durable()),
            (Index(2), Term(2), Index(2))
        );
    }

    /// One step of the model-based property test.
    #[derive(Clone, Debug)]
    enum Op {
        /// Leader-style append of `count` entries at `term` (raised to the last term if lower).
        Append { count: u64, term: u64 },
        /// Follower-style merge after `prev` of `count` entries at `term`.
        Merge { prev: u64, count: u64, term: u64 },
        /// The driver reports the write ending at the current last index durable.
        Persist,
        /// Commit up to a fraction of the log.
        Commit { per_mille: u64 },
        /// Compact up to a fraction of what is committed and durable (a snapshot covers it).
        Compact { per_mille: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u64..5, 1u64..6).prop_map(|(count, term)| Op::Append { count, term }),
            (0u64..12, 0u64..5, 1u64..6).prop_map(|(prev, count, term)| Op::Merge {
                prev,
                count,
                term
            }),
            Just(Op::Persist),
            (0u64..1000).prop_map(|per_mille| Op::Commit { per_mille }),
            (0u64..1000).prop_map(|per_mille| Op::Compact { per_mille }),
        ]
    }

    proptest! {
        /// The log behaves like a plain vector of (index, term) under appends and merges, never
        /// loses committed entries, and keeps its invariants — with any cache budget.
        #[test]
        fn log_matches_a_vector_model(ops in proptest::collection::vec(op(), 1..60), budget in 0u64..200) {
            let mut log = empty_log(budget);
            let mut model: Vec<u64> = Vec::new(); // model[i] = term of index i + 1
            for op in ops {
                match op {
                    Op::Append { count, term } => {
                        let term = term.max(model.last().copied().unwrap_or(0));
                        let start = model.len() as u64 + 1;
                        log.append((start..start + count).map(|i| entry(i, term)).collect());
                        model.extend(std::iter::repeat_n(term, count as usize));
                    }
                    Op::Merge { prev, count, term } => {
                        // Only merges a leader could send: prev matches, the new term is at
                        // least the prev term, and no committed entry would be replaced. (A
                        // follower clips an Append reaching below its compaction point before
                        // merging, so merges start at or after it.)
                        if prev > model.len() as u64 || prev < log.first_index().prev().0 {
                            continue;
                        }
                        let prev_term = if prev == 0 { 0 } else { model[prev as usize - 1] };
                        let term = term.max(prev_term);
                        let new: Vec<u64> = (0..count).map(|_| term).collect();
                        let conflict = (0..count).find(|&k| {
                            model.get((prev + k) as usize).is_some_and(|&t| t != term)
                        });
                        if let Some(k) = conflict {
                            if prev + k < log.commit().0 { continue; }
                            // Entries after a conflict-free prefix must not sit below later
                            // terms of the kept prefix: a leader's log never does that.
                            model.truncate((prev + k) as usize);
                        }
                        if model.len() as u64 > prev + count
                            && model[(prev + count) as usize..].iter().any(|&t| t < term) {
                            continue;
                        }
                        let entries: Vec<Entry> =
                            (0..count).map(|k| entry(prev + 1 + k, new[k as usize])).collect();
                        log.merge(Index(prev), entries);
                        for k in 0..count {
                            let position = (prev + k) as usize;
                            if position < model.len() { model[position] = term; } else { model.push(term); }
                        }
                    }
                    Op::Persist => {
                        log.take_unpersisted();
                        let last = log.last_index();
                        if let Some(term) = log.term(last) { log.persisted(last, term); }
                        prop_assert_eq!(log.durable(), last);
                    }
                    Op::Commit { per_mille } => {
                        let target = Index(log.durable().0 * per_mille / 1000);
                        if target > log.commit() { log.commit_to(target); }
                    }
                    Op::Compact { per_mille } => {
                        let target = Index(log.commit().min(log.durable()).0 * per_mille / 1000);
                        log.compact_to(target);
                        prop_assert!(log.first_index() > target);
                    }
                }
                log.check_invariants();
                // Above the compaction point the log answers as the uncompacted model does;
                // below it, it holds nothing.
                prop_assert_eq!(log.last_index(), Index(model.len() as u64));
                prop_assert_eq!(log.last_term(), Term(model.last().copied().unwrap_or(0)));
                let compacted = log.first_index().prev().0;
                for (position, &term) in model.iter().enumerate() {
                    let index = Index(position as u64 + 1);
                    if index.0 >= compacted {
                        prop_assert_eq!(log.term(index), Some(Term(term)));
                    } else {
                        prop_assert_eq!(log.term(index), None);
                    }
                    if index.0 > compacted {
                        let run = log.first_index_of_run_at(index);
                        let start = (1..=index.0).rev()
                            .take_while(|&i| model[i as usize - 1] == term)
                            .last()
                            .expect("the index itself has the term");
                        prop_assert_eq!(run, Index(start.max(compacted + 1)));
                        let last_of_term =
                            model.iter().rposition(|&t| t == term).map(|p| Index(p as u64 + 1));
                        prop_assert_eq!(log.last_index_of_term(Term(term)), last_of_term);
                    }
                    if let Some(entries) = log.cached(index, index.next(), u64::MAX) {
                        prop_assert!(index.0 > compacted, "a compacted entry is still served");
                        prop_assert_eq!(entries.len(), 1);
                        prop_assert_eq!(entries[0].term, Term(term));
                    }
                }
            }
        }
    }
}
