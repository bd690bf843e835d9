//! The safety invariants of Raft, checked after every step of a run.
//!
//! The checker watches every node from outside, through what the core reports (role, term,
//! commit index) and what the driver knows (the log as handed over in `PersistEntries`, the
//! entries applied, the votes sent), and keeps a record across the whole run:
//!
//! - **Election safety** (Raft §5.2): at most one leader per term, ever.
//! - **Vote safety** (Figure 2, votedFor is durable): a node grants at most one candidate per
//!   term, across crashes. Checked on grants that actually left the node.
//! - **Log matching** (§5.3): two logs that hold an entry with the same index and term hold the
//!   same entries up to it. Every log carries a hash chain of its prefixes (see `storage.rs`),
//!   and the checker remembers the chain value of every `(index, term)` ever written: a second
//!   value for the same pair is a violation.
//! - **Leader completeness** (§5.4): an entry committed in term `U` is in the log of every
//!   leader of a term above `U`. An entry counts as committed once any node's commit index
//!   reaches it; the term it was committed in is bounded by the term of the first node seen
//!   committing it (a node in term `T` only learns commits made in terms up to `T`), which keeps
//!   the check sound. Checked when a node becomes leader and whenever the record of committed
//!   entries grows. And checked *before* any election, after every step: no node that lacks a
//!   committed entry may be able to win one. A node can win only with the votes of a majority
//!   whose logs its own log is at least as up-to-date as (§5.4.1); in correct Raft every node of
//!   the quorum that committed an entry holds, durably, an entry of the committing term at or
//!   after it, so no node lacking the entry compares as up-to-date with any of them, and the
//!   nodes it could win over are a minority. (Each node counts with its current log and with
//!   its durable log, which is what it restarts with.) This is Figure 8's situation (c) caught
//!   as it arises, rather than waiting for the unlucky election of (d).
//! - **State-machine safety** (§5.4.3): no two nodes commit or apply different entries at one
//!   index, and each node applies a gap-free prefix of the log, from just after the snapshot
//!   its store was restored from at each start (index 1 without one), and from just after an
//!   installed snapshot. Seen from the state machine: two nodes that applied up to the same
//!   index hold the same store contents and sessions (compared by the stores' hashes, see
//!   `state_machine.rs`), and so does a store restored or installed from a snapshot at that
//!   index. The applied index never goes back while a node runs (an install moves it forward
//!   only); across a restart it goes back to the newest durable snapshot, never older than one
//!   the node saved or installed (see **recovery**).
//! - **Compacted logs** compare as whole logs: a log compacted up to, or reset after a snapshot
//!   of, index `b` carries the chain hash of the log up to `b` (the one every log holding the
//!   entry at `b` agrees on), so every check below holds for it from `b` on.
//! - **Monotonic term and commit**: within one run of a node (between restarts), neither ever
//!   decreases. (The commit index is not durable, so a restarted node starts again from 0.)
//! - **Applied only when committed**: an entry is applied only at or below the node's commit
//!   index.
//!
//! Liveness, bounded work (no message storm), linearizability, stale reads (checked by the
//! driver when it serves a read, see `driver.rs`), recovery (a node comes back from any crash,
//! in the middle of a snapshot step included, with its newest durable snapshot and a log that
//! passes through it; see `snapshot.rs`) and the core's own assertions are reported through the
//! same [`Violation`] type by the runner.

use std::collections::BTreeMap;
use std::fmt;

use skiff_raft::{Entry, Index, Membership, NodeId, Payload, RoleKind, Term};

use crate::storage::{LogCopy, fnv1a};

/// A property a run must keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    /// At most one leader per term.
    ElectionSafety,
    /// At most one vote granted per node and term, across crashes.
    VoteSafety,
    /// Equal (index, term) means equal logs up to that index.
    LogMatching,
    /// Every leader holds every entry committed in an earlier term.
    LeaderCompleteness,
    /// No two nodes commit or apply different entries at one index; applies are gap-free.
    StateMachineSafety,
    /// A node's term never decreases while it runs.
    MonotonicTerm,
    /// A node's commit index never decreases while it runs.
    MonotonicCommit,
    /// Nothing is applied beyond the commit index.
    AppliedBeforeCommitted,
    /// A node uses the configuration of the latest configuration entry in its log, committed
    /// or not (Raft thesis §4.1), else the one its snapshot or its start gave it.
    ConfigurationInForce,
    /// With faults removed, a leader is elected and commits a fresh entry in bounded time.
    Liveness,
    /// The cluster's work stays proportional to its load: no message storm, no livelock.
    BoundedWork,
    /// The clients' history has a linearization.
    Linearizability,
    /// A read is served from a store that has applied every entry committed anywhere when the
    /// read reached the node (ReadIndex, Raft thesis §6.4).
    StaleRead,
    /// The core panicked: one of its own assertions failed.
    CoreAssertion,
    /// The core and the simulated driver disagree about the contract (e.g. a refused report).
    DriverContract,
    /// A node comes back from a crash with what it made durable: its log opens, its newest
    /// snapshot restores a store and is no older than one it saved or installed, and its log
    /// passes through that snapshot (never a mix of an old and a new state).
    Recovery,
}

impl Invariant {
    /// The invariant's name, as printed.
    pub fn name(self) -> &'static str {
        match self {
            Invariant::ElectionSafety => "election safety",
            Invariant::VoteSafety => "vote safety",
            Invariant::LogMatching => "log matching",
            Invariant::LeaderCompleteness => "leader completeness",
            Invariant::StateMachineSafety => "state machine safety",
            Invariant::MonotonicTerm => "monotonic term",
            Invariant::MonotonicCommit => "monotonic commit",
            Invariant::AppliedBeforeCommitted => "applied before committed",
            Invariant::ConfigurationInForce => "configuration in force",
            Invariant::Liveness => "liveness",
            Invariant::BoundedWork => "bounded work",
            Invariant::Linearizability => "linearizability",
            Invariant::StaleRead => "stale read",
            Invariant::CoreAssertion => "core assertion",
            Invariant::DriverContract => "driver contract",
            Invariant::Recovery => "recovery",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A broken invariant and what broke it, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant.
    pub invariant: Invariant,
    /// The evidence.
    pub detail: String,
}

impl Violation {
    /// A violation of `invariant` with `detail`.
    pub fn new(invariant: Invariant, detail: impl Into<String>) -> Violation {
        Violation { invariant, detail: detail.into() }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

/// What the checker sees of one running node after a step.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'a> {
    /// The node.
    pub id: NodeId,
    /// How many times it was started: observations of one incarnation are compared.
    pub incarnation: u64,
    /// Its role.
    pub role: RoleKind,
    /// Its term.
    pub term: Term,
    /// Its commit index.
    pub commit: Index,
    /// Its log as the core sees it.
    pub log: &'a LogCopy,
    /// The configuration the core uses.
    pub membership: &'a Membership,
}

/// A node as a potential candidate and voter: its current log and its durable log.
#[derive(Clone, Copy, Debug)]
pub struct Electable<'a> {
    /// The node.
    pub id: NodeId,
    /// The log the core holds now (the durable log while the node is down).
    pub log: &'a LogCopy,
    /// The durable log: what the node restarts with.
    pub durable: &'a LogCopy,
}

/// An entry known to be committed.
#[derive(Clone, Copy, Debug)]
struct Committed {
    /// The entry's term.
    term: Term,
    /// The chain hash of the log up to it.
    chain: u64,
    /// A term at or after the one it was committed in; non-decreasing along the log.
    commit_term: Term,
}

/// What the checker remembers of one node between steps.
#[derive(Clone, Copy, Debug)]
struct Watch {
    /// The incarnation observed.
    incarnation: u64,
    /// The term last observed.
    term: Term,
    /// The commit index last observed.
    commit: Index,
    /// The term it was last seen leading, if it leads.
    leading: Option<Term>,
}

/// What the checker remembers of node `id`, if it was observed before.
fn watch_of(watches: &mut [(NodeId, Watch)], id: NodeId) -> Option<&mut Watch> {
    watches.iter_mut().find(|(watched, _)| *watched == id).map(|(_, watch)| watch)
}

/// The record of a run, and the checks against it.
#[derive(Debug, Default)]
pub struct Checker {
    /// The leader of every term that had one.
    leaders: BTreeMap<Term, NodeId>,
    /// Every vote granted: (voter, term) → candidate.
    votes: BTreeMap<(NodeId, Term), NodeId>,
    /// The chain hash of every (index, term) ever written, with the first node that wrote it.
    written: BTreeMap<(Index, Term), (u64, NodeId)>,
    /// Every committed entry, by index (`committed[i]` is index `i + 1`).
    committed: Vec<Committed>,
    /// The first node that committed each index, for reports.
    committed_by: Vec<NodeId>,
    /// Every applied entry: (term, payload hash, first node that applied it), by index.
    applied: Vec<(Term, u64, NodeId)>,
    /// The store's hash after applying each index, with the first node that applied it.
    states: Vec<(u64, NodeId)>,
    /// The nodes as last observed, in the order first seen. A cluster has a handful of nodes,
    /// looked up twice per node after every step: a linear search beats a map here.
    watches: Vec<(NodeId, Watch)>,
}

impl Checker {
    /// An empty record.
    pub fn new() -> Checker {
        Checker::default()
    }

    /// The highest index known to be committed.
    pub fn committed_index(&self) -> Index {
        Index(self.committed.len() as u64)
    }

    /// The term of the entry committed at `index`, if `index` is known to be committed.
    pub fn committed_term(&self, index: Index) -> Option<Term> {
        let position = index.0.checked_sub(1)?;
        self.committed.get(position as usize).map(|entry| entry.term)
    }

    /// The number of terms that had a leader.
    pub fn leader_count(&self) -> usize {
        self.leaders.len()
    }

    /// Checks every running node after a step. The nodes are gone through twice (hence
    /// `Clone`), so that the simulator can hand over a view of its nodes instead of collecting
    /// them into a vector after every step.
    pub fn after_step<'a, I>(&mut self, nodes: I) -> Result<(), Violation>
    where
        I: IntoIterator<Item = Observation<'a>>,
        I::IntoIter: Clone,
    {
        let nodes = nodes.into_iter();
        let mut record_grew = false;
        for node in nodes.clone() {
            record_grew |= self.observe(&node)?;
        }
        for node in nodes.filter(|node| node.role == RoleKind::Leader) {
            let watch = watch_of(&mut self.watches, node.id).expect("observed just now");
            let newly_leading = watch.leading != Some(node.term);
            watch.leading = Some(node.term);
            if newly_leading || record_grew {
                self.check_leader(&node)?;
            }
        }
        Ok(())
    }

    /// Checks one node against its last observation and the record; returns whether the record
    /// of committed entries changed.
    fn observe(&mut self, node: &Observation<'_>) -> Result<bool, Violation> {
        let fresh = Watch {
            incarnation: node.incarnation,
            term: node.term,
            commit: Index(0),
            leading: None,
        };
        if watch_of(&mut self.watches, node.id).is_none() {
            self.watches.push((node.id, fresh));
        }
        let watch = watch_of(&mut self.watches, node.id).expect("added just now");
        if watch.incarnation != node.incarnation {
            *watch = fresh;
        }
        if node.role != RoleKind::Leader {
            watch.leading = None;
        }
        if node.term < watch.term {
            return Err(Violation::new(
                Invariant::MonotonicTerm,
                format!("{} went from term {} back to {}", node.id, watch.term, node.term),
            ));
        }
        watch.term = node.term;
        // Thesis §4.1: a configuration is in force from the moment its entry is in the log,
        // committed or not; one in force only at commit lets two configurations whose
        // majorities do not overlap each elect a leader.
        let logged = node.log.membership();
        if node.membership != logged {
            return Err(Violation::new(
                Invariant::ConfigurationInForce,
                format!(
                    "{} uses configuration {}, but the latest in its log (last index {}) is {}",
                    node.id,
                    node.membership,
                    node.log.last_index(),
                    logged
                ),
            ));
        }
        if node.commit < watch.commit {
            return Err(Violation::new(
                Invariant::MonotonicCommit,
                format!("{} went from commit {} back to {}", node.id, watch.commit, node.commit),
            ));
        }
        // A node seen leading this term before was checked against the record then.
        if node.role == RoleKind::Leader && watch.leading != Some(node.term) {
            let leader = *self.leaders.entry(node.term).or_insert(node.id);
            if leader != node.id {
                return Err(Violation::new(
                    Invariant::ElectionSafety,
                    format!("{leader} and {} both lead term {}", node.id, node.term),
                ));
            }
        }
        let previous = watch.commit;
        watch.commit = node.commit;
        if node.commit > previous {
            return self.record_commit(node);
        }
        Ok(false)
    }

    /// Records that `node` committed up to its commit index; checks it against the record.
    fn record_commit(&mut self, node: &Observation<'_>) -> Result<bool, Violation> {
        let commit = node.commit;
        let base = node.log.base();
        let Some(chain) = node.log.chain(commit) else {
            return Err(Violation::new(
                Invariant::StateMachineSafety,
                format!(
                    "{} commits {commit} outside its log (after {base}, up to {})",
                    node.id,
                    node.log.last_index()
                ),
            ));
        };
        let known = self.committed_index();
        if base > known {
            // A log compacted (or reset by a snapshot) beyond anything seen committed: the
            // snapshot it stands on covers entries no node committed.
            return Err(Violation::new(
                Invariant::StateMachineSafety,
                format!("{}'s log starts after {base}, beyond the highest commit {known}", node.id),
            ));
        }
        // Compared where both the log and the record reach: a compacted log holds its prefix
        // as the chain hash at its base.
        let overlap = commit.min(known).max(base);
        if overlap > Index(0) {
            let record = self.committed[overlap.0 as usize - 1];
            if node.log.chain(overlap) != Some(record.chain) {
                let first_difference = (base.0.max(1)..=overlap.0)
                    .map(Index)
                    .find(|&index| {
                        node.log.chain(index) != Some(self.committed[index.0 as usize - 1].chain)
                    })
                    .unwrap_or(overlap);
                let position = first_difference.0 as usize - 1;
                return Err(Violation::new(
                    Invariant::StateMachineSafety,
                    format!(
                        "{} committed {} where {} committed {}@{}",
                        node.id,
                        describe(node.log.entry(first_difference)),
                        self.committed_by[position],
                        first_difference,
                        self.committed[position].term
                    ),
                ));
            }
        }
        let mut changed = false;
        // The commit term bound only improves: a node in an earlier term committing the same
        // prefix proves it was committed by then.
        let mut position = overlap.0 as usize;
        while position > 0 && self.committed[position - 1].commit_term > node.term {
            self.committed[position - 1].commit_term = node.term;
            position -= 1;
            changed = true;
        }
        for index in (known.0 + 1..=commit.0).map(Index) {
            let entry = node.log.entry(index).expect("held: the chain up to commit exists");
            let chain = node.log.chain(index).expect("held");
            self.committed.push(Committed { term: entry.term, chain, commit_term: node.term });
            self.committed_by.push(node.id);
            changed = true;
        }
        debug_assert_eq!(node.log.chain(commit), Some(chain));
        Ok(changed)
    }

    /// Leader completeness for one leader: it holds every entry committed before its term.
    fn check_leader(&self, node: &Observation<'_>) -> Result<(), Violation> {
        let count = self.committed.partition_point(|entry| entry.commit_term < node.term);
        if count == 0 {
            return Ok(());
        }
        // A leader's log compacted beyond those entries holds them in its base's chain hash.
        let base = node.log.base();
        let index = Index(count as u64).max(base);
        let Some(&record) = self.committed.get(index.0 as usize - 1) else {
            // Its base is beyond every commit seen: the log check of `observe` reports that.
            return Ok(());
        };
        if node.log.chain(index) == Some(record.chain) {
            return Ok(());
        }
        let missing = (base.0.max(1)..=index.0)
            .map(Index)
            .find(|&at| node.log.chain(at) != Some(self.committed[at.0 as usize - 1].chain))
            .unwrap_or(index);
        let position = missing.0 as usize - 1;
        Err(Violation::new(
            Invariant::LeaderCompleteness,
            format!(
                "{} leads term {} without {}@{}, committed by {} no later than term {} \
                 (its log has {} there)",
                node.id,
                node.term,
                missing,
                self.committed[position].term,
                self.committed_by[position],
                self.committed[position].commit_term,
                describe(node.log.entry(missing))
            ),
        ))
    }

    /// Leader completeness before the fact: no node lacking a committed entry can collect a
    /// majority of votes (see the module documentation). `nodes` is every node that may still
    /// run (retired ones left out), gone through once per candidate (hence `Clone`). A candidate
    /// needs a majority of the voters of the configuration its own log puts in force (of both
    /// voter sets, while joint); any node of those sets whose log it is at least as up-to-date
    /// as is counted as a vote.
    pub fn check_electable<'a, I>(&self, nodes: I) -> Result<(), Violation>
    where
        I: IntoIterator<Item = Electable<'a>>,
        I::IntoIter: Clone,
    {
        let nodes = nodes.into_iter();
        let Some(record) = self.committed.last() else { return Ok(()) };
        let committed = self.committed_index();
        let last =
            |log: &LogCopy| (log.term(log.last_index()).unwrap_or_default(), log.last_index());
        for candidate in nodes.clone() {
            for log in [candidate.log, candidate.durable] {
                if log.chain(committed) == Some(record.chain) {
                    continue;
                }
                let membership = log.membership();
                let offer = last(log);
                let would_vote = |voter: &Electable<'_>| {
                    last(voter.log) <= offer || last(voter.durable) <= offer
                };
                // Counted without collecting: this runs after every step, and the names are
                // only wanted for a report.
                let wins = |set: &std::collections::BTreeSet<NodeId>| {
                    let votes =
                        nodes.clone().filter(|voter| set.contains(&voter.id) && would_vote(voter));
                    votes.count() > set.len() / 2
                };
                let electable = !membership.voters.is_empty()
                    && wins(&membership.voters)
                    && (membership.outgoing.is_empty() || wins(&membership.outgoing));
                if electable {
                    let voters = nodes
                        .clone()
                        .filter(|voter| {
                            membership.voters.contains(&voter.id)
                                || membership.outgoing.contains(&voter.id)
                        })
                        .filter(would_vote)
                        .map(|voter| voter.id);
                    let missing = (log.base().0.max(1)..=committed.0)
                        .map(Index)
                        .find(|&at| log.chain(at) != Some(self.committed[at.0 as usize - 1].chain))
                        .unwrap_or(committed);
                    let position = missing.0 as usize - 1;
                    let names: Vec<String> = voters.map(|voter| voter.to_string()).collect();
                    return Err(Violation::new(
                        Invariant::LeaderCompleteness,
                        format!(
                            "{} could be elected without committed entry {missing}@{} (committed by {}): its \
                             log ending at {}@{} is at least as up-to-date as a log of each of \
                             {}, a majority of its configuration {membership}",
                            candidate.id,
                            self.committed[position].term,
                            self.committed_by[position],
                            offer.1,
                            offer.0,
                            names.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Forgets the entries `unsent` that node `id` wrote and no other node can hold: it crashed
    /// before the hard state of their terms was durable, so no message carried them (see
    /// `driver.rs`). Only entries it was the first to write are forgotten.
    pub fn forget_unsent(&mut self, id: NodeId, unsent: &[(Index, Term)]) {
        for key in unsent {
            if self.written.get(key).is_some_and(|&(_, first)| first == id) {
                self.written.remove(key);
            }
        }
    }

    /// Forgets that node `id` led any term after `durable_term`, the term its crash left on
    /// its disk. It led those terms without a durable vote (a node alone in its configuration
    /// wins at once), so as their leader it sent nothing (every message waited for the hard
    /// state) and committed nothing (its entries were queued on the disk behind the hard
    /// state): no one could observe it lead, and after its restart it may rightly vote for
    /// another candidate of the same term (see `driver.rs`). Its leadership is no first leader
    /// of the term for election safety.
    pub fn forget_leadership(&mut self, id: NodeId, durable_term: Term) {
        self.leaders.retain(|term, leader| *term <= durable_term || *leader != id);
    }

    /// Log matching for entries a node just handed to its disk: `log` from `from` on.
    pub fn entries_written(
        &mut self,
        id: NodeId,
        log: &LogCopy,
        from: Index,
    ) -> Result<(), Violation> {
        let mut index = from;
        while let Some(entry) = log.entry(index) {
            let chain = log.chain(index).expect("held");
            let (first_chain, first_node) =
                *self.written.entry((index, entry.term)).or_insert((chain, id));
            if first_chain != chain {
                return Err(Violation::new(
                    Invariant::LogMatching,
                    format!(
                        "{id} and {first_node} both hold an entry {index}@{} but their logs \
                         differ up to it",
                        entry.term
                    ),
                ));
            }
            index = index.next();
        }
        Ok(())
    }

    /// A vote grant left `voter` for `candidate` in `term`.
    pub fn vote_granted(
        &mut self,
        voter: NodeId,
        term: Term,
        candidate: NodeId,
    ) -> Result<(), Violation> {
        let first = *self.votes.entry((voter, term)).or_insert(candidate);
        if first != candidate {
            return Err(Violation::new(
                Invariant::VoteSafety,
                format!("{voter} voted for {first} and then for {candidate} in term {term}"),
            ));
        }
        Ok(())
    }

    /// `node` applies `entry`, having applied up to `applied` before, with commit index `commit`.
    pub fn applying(
        &mut self,
        node: NodeId,
        entry: &Entry,
        applied: Index,
        commit: Index,
    ) -> Result<(), Violation> {
        if entry.index != applied.next() {
            return Err(Violation::new(
                Invariant::StateMachineSafety,
                format!("{node} applied {} after {applied}: not a gap-free prefix", entry.index),
            ));
        }
        if entry.index > commit {
            return Err(Violation::new(
                Invariant::AppliedBeforeCommitted,
                format!("{node} applied {entry} with commit index {commit}"),
            ));
        }
        if let Some(committed) = self.committed_term(entry.index)
            && committed != entry.term
        {
            let first = self.committed_by[entry.index.0 as usize - 1];
            return Err(Violation::new(
                Invariant::StateMachineSafety,
                format!(
                    "{node} applied {entry} where {first} committed {}@{committed}",
                    entry.index
                ),
            ));
        }
        let payload = match &entry.payload {
            Payload::Noop => 0,
            Payload::Command(command) => fnv1a(command),
            Payload::Membership(membership) => fnv1a(membership.to_string().as_bytes()),
        };
        let position = entry.index.0 as usize - 1;
        match self.applied.get(position) {
            Some(&(term, hash, first)) if (term, hash) != (entry.term, payload) => {
                Err(Violation::new(
                    Invariant::StateMachineSafety,
                    format!("{node} applied {entry} where {first} applied an entry of term {term}"),
                ))
            }
            Some(_) => Ok(()),
            None if position == self.applied.len() => {
                self.applied.push((entry.term, payload, node));
                Ok(())
            }
            // Applies are gap-free from the node's snapshot on, and a snapshot covers only
            // entries some node applied: a gap in the record means a snapshot that no apply
            // produced.
            None => Err(Violation::new(
                Invariant::StateMachineSafety,
                format!(
                    "{node} applied {entry}, after a snapshot beyond the {} entries any node \
                     applied",
                    self.applied.len()
                ),
            )),
        }
    }

    /// The chain hash of the log up to the entry `index@term` (0 for index 0), if any node
    /// ever wrote that entry: what a log compacted to it, or reset after a snapshot of it,
    /// stands on.
    pub fn chain_of(&self, index: Index, term: Term) -> Option<u64> {
        if index == Index(0) {
            return Some(0);
        }
        self.written.get(&(index, term)).map(|&(chain, _)| chain)
    }
}

impl Checker {
    /// `node`'s store hashes to `hash` after applying `index`, which [`Checker::applying`]
    /// accepted just before.
    pub fn state_after(&mut self, node: NodeId, index: Index, hash: u64) -> Result<(), Violation> {
        let position = index.0 as usize - 1;
        match self.states.get(position) {
            Some(&(first_hash, first)) if first_hash != hash => Err(Violation::new(
                Invariant::StateMachineSafety,
                format!(
                    "{node}'s store differs from {first}'s after applying the same entries up \
                     to {index} (state hash {hash:016x}, not {first_hash:016x})"
                ),
            )),
            Some(_) => Ok(()),
            None if position == self.states.len() => {
                self.states.push((hash, node));
                Ok(())
            }
            None => Err(Violation::new(
                Invariant::StateMachineSafety,
                format!(
                    "{node}'s store reached {index}, beyond the {} entries any node applied, \
                     without applying them",
                    self.states.len()
                ),
            )),
        }
    }

    /// `node`'s store, restored at a restart or installed from the leader's snapshot, stands
    /// at `index` with `hash`: it must be the store every node had after applying up to
    /// `index` (which some node did, to take the snapshot).
    pub fn state_installed(
        &mut self,
        node: NodeId,
        index: Index,
        hash: u64,
    ) -> Result<(), Violation> {
        match index.0.checked_sub(1).and_then(|position| self.states.get(position as usize)) {
            Some(&(first_hash, first)) if first_hash != hash => Err(Violation::new(
                Invariant::StateMachineSafety,
                format!(
                    "{node}'s store from a snapshot at {index} differs from {first}'s after \
                     applying the entries up to it (state hash {hash:016x}, not \
                     {first_hash:016x})"
                ),
            )),
            Some(_) => Ok(()),
            None => Err(Violation::new(
                Invariant::StateMachineSafety,
                format!(
                    "{node}'s store comes from a snapshot at {index}, beyond the {} entries any \
                     node applied",
                    self.states.len()
                ),
            )),
        }
    }
}

/// An entry for a report, or a note that it is missing.
fn describe(entry: Option<&Entry>) -> String {
    entry.map_or_else(|| "nothing".to_string(), Entry::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(index: u64, term: u64, command: &str) -> Entry {
        Entry {
            index: Index(index),
            term: Term(term),
            payload: Payload::Command(Bytes::from(command.to_string())),
        }
    }

    fn log(entries: &[Entry]) -> LogCopy {
        let mut log = LogCopy::new(skiff_raft::Membership::new((1..=5).map(NodeId)));
        log.write(entries);
        log
    }

    fn observe<'a>(
        id: u64,
        role: RoleKind,
        term: u64,
        commit: u64,
        log: &'a LogCopy,
    ) -> Observation<'a> {
        Observation {
            id: NodeId(id),
            incarnation: 0,
            role,
            term: Term(term),
            commit: Index(commit),
            log,
            membership: log.membership(),
        }
    }

    #[test]
    fn a_configuration_in_force_only_at_commit_is_caught() {
        let founders = Membership::new((1..=3).map(NodeId));
        let grown = Membership::new((1..=4).map(NodeId));
        let mut log = LogCopy::new(founders.clone());
        log.write(&[Entry {
            index: Index(1),
            term: Term(1),
            payload: Payload::Membership(grown.clone()),
        }]);
        let mut checker = Checker::new();
        // Appended, not committed: already in force.
        let correct =
            Observation { membership: &grown, ..observe(1, RoleKind::Leader, 1, 0, &log) };
        checker.after_step([correct]).expect("the latest configuration of the log is in force");
        let late =
            Observation { membership: &founders, ..observe(2, RoleKind::Follower, 1, 0, &log) };
        let error = checker.after_step([late]).expect_err("still the committed configuration");
        assert_eq!(error.invariant, Invariant::ConfigurationInForce);
    }

    #[test]
    fn two_leaders_in_one_term_are_caught() {
        let empty = LogCopy::default();
        let mut checker = Checker::new();
        checker.after_step([observe(1, RoleKind::Leader, 2, 0, &empty)]).expect("one leader");
        let error = checker
            .after_step([observe(2, RoleKind::Leader, 2, 0, &empty)])
            .expect_err("two leaders");
        assert_eq!(error.invariant, Invariant::ElectionSafety);
    }

    #[test]
    fn a_leadership_whose_term_a_crash_lost_is_forgotten() {
        let empty = LogCopy::default();
        let mut checker = Checker::new();
        checker.after_step([observe(1, RoleKind::Leader, 2, 0, &empty)]).expect("one leader");
        checker.after_step([observe(1, RoleKind::Leader, 3, 0, &empty)]).expect("one leader");
        // n1 crashes with term 2 on its disk: no one saw it lead term 3, but it led term 2.
        checker.forget_leadership(NodeId(1), Term(2));
        checker.after_step([observe(2, RoleKind::Leader, 3, 0, &empty)]).expect("forgotten");
        let error = checker
            .after_step([observe(3, RoleKind::Leader, 2, 0, &empty)])
            .expect_err("a durable leadership is kept");
        assert_eq!(error.invariant, Invariant::ElectionSafety);
    }

    #[test]
    fn terms_and_commits_never_go_back_within_an_incarnation() {
        let a = log(&[entry(1, 1, "x"), entry(2, 1, "y")]);
        let mut checker = Checker::new();
        checker.after_step([observe(1, RoleKind::Follower, 3, 2, &a)]).expect("fine");
        let error =
            checker.after_step([observe(1, RoleKind::Follower, 3, 1, &a)]).expect_err("back");
        assert_eq!(error.invariant, Invariant::MonotonicCommit);
        let mut checker = Checker::new();
        checker.after_step([observe(1, RoleKind::Follower, 3, 0, &a)]).expect("fine");
        let error =
            checker.after_step([observe(1, RoleKind::Follower, 2, 0, &a)]).expect_err("back");
        assert_eq!(error.invariant, Invariant::MonotonicTerm);
        let restarted = Observation { incarnation: 1, ..observe(1, RoleKind::Follower, 2, 0, &a) };
        checker.after_step([restarted]).expect("a restart may lose an undurable term");
    }

    #[test]
    fn different_committed_entries_and_incomplete_leaders_are_caught() {
        let a = log(&[entry(1, 1, "x"), entry(2, 1, "y")]);
        let b = log(&[entry(1, 1, "x"), entry(2, 2, "z")]);
        let short = log(&[entry(1, 1, "x")]);
        let mut checker = Checker::new();
        checker.after_step([observe(1, RoleKind::Leader, 1, 2, &a)]).expect("commit");
        let error =
            checker.after_step([observe(2, RoleKind::Leader, 2, 0, &short)]).expect_err("lacks 2");
        assert_eq!(error.invariant, Invariant::LeaderCompleteness);
        let mut checker = Checker::new();
        checker.after_step([observe(1, RoleKind::Follower, 2, 2, &a)]).expect("commit");
        let error =
            checker.after_step([observe(2, RoleKind::Follower, 2, 2, &b)]).expect_err("differs");
        assert_eq!(error.invariant, Invariant::StateMachineSafety);
    }

    #[test]
    fn a_stale_leader_need_not_hold_entries_committed_after_its_term() {
        let a = log(&[entry(1, 1, "x"), entry(2, 3, "y")]);
        let short = log(&[entry(1, 1, "x")]);
        let mut checker = Checker::new();
        checker.after_step([observe(1, RoleKind::Leader, 3, 2, &a)]).expect("commit in term 3");
        checker.after_step([observe(2, RoleKind::Leader, 2, 0, &short)]).expect("term 2 is older");
    }

    #[test]
    fn a_node_that_could_be_elected_without_a_committed_entry_is_caught() {
        // Figure 8 (c): index 2 of term 2 counted as committed on n1, n2 and n3, while n5 holds
        // 2@3 and n1's term-4 entry is not durable yet: n5 could win every vote.
        let committed = log(&[entry(1, 1, "a"), entry(2, 2, "b")]);
        let with_noop = log(&[entry(1, 1, "a"), entry(2, 2, "b"), entry(3, 4, "noop")]);
        let short = log(&[entry(1, 1, "a")]);
        let orphan = log(&[entry(1, 1, "a"), entry(2, 3, "c")]);
        let mut checker = Checker::new();
        checker.after_step([observe(1, RoleKind::Leader, 4, 2, &with_noop)]).expect("commit");
        let node = |id, log, durable| Electable { id: NodeId(id), log, durable };
        let cluster = [
            node(1, &with_noop, &committed),
            node(2, &committed, &committed),
            node(3, &committed, &committed),
            node(4, &short, &short),
            node(5, &orphan, &orphan),
        ];
        let error = checker.check_electable(cluster).expect_err("n5 could win");
        assert_eq!(error.invariant, Invariant::LeaderCompleteness);
        // Once the term-4 entry is durable on a majority (as the §5.4.2 rule waits for), n5 can
        // only win n4.
        let cluster = [
            node(1, &with_noop, &with_noop),
            node(2, &with_noop, &with_noop),
            node(3, &with_noop, &with_noop),
            node(4, &short, &short),
            node(5, &orphan, &orphan),
        ];
        checker.check_electable(cluster).expect("safe");
    }

    #[test]
    fn log_matching_votes_and_applies() {
        let a = log(&[entry(1, 1, "x"), entry(2, 2, "y")]);
        let b = log(&[entry(1, 1, "w"), entry(2, 2, "y")]);
        let mut checker = Checker::new();
        checker.entries_written(NodeId(1), &a, Index(1)).expect("first");
        let error = checker.entries_written(NodeId(2), &b, Index(2)).expect_err("prefix differs");
        assert_eq!(error.invariant, Invariant::LogMatching);
        checker.vote_granted(NodeId(1), Term(4), NodeId(2)).expect("first vote");
        checker.vote_granted(NodeId(1), Term(4), NodeId(2)).expect("repeated vote");
        let error = checker.vote_granted(NodeId(1), Term(4), NodeId(3)).expect_err("second");
        assert_eq!(error.invariant, Invariant::VoteSafety);
        let error =
            checker.applying(NodeId(1), &entry(1, 1, "x"), Index(0), Index(0)).expect_err("early");
        assert_eq!(error.invariant, Invariant::AppliedBeforeCommitted);
        checker.applying(NodeId(1), &entry(1, 1, "x"), Index(0), Index(1)).expect("fine");
        let error = checker
            .applying(NodeId(2), &entry(1, 1, "w"), Index(0), Index(1))
            .expect_err("differs");
        assert_eq!(error.invariant, Invariant::StateMachineSafety);
        let error =
            checker.applying(NodeId(2), &entry(3, 1, "w"), Index(1), Index(3)).expect_err("gap");
        assert_eq!(error.invariant, Invariant::StateMachineSafety);
    }

    #[test]
    fn stores_that_differ_after_the_same_entries_are_caught() {
        let mut checker = Checker::new();
        checker.state_after(NodeId(1), Index(1), 7).expect("first");
        checker.state_after(NodeId(2), Index(1), 7).expect("equal");
        let error = checker.state_after(NodeId(3), Index(1), 8).expect_err("differs");
        assert_eq!(error.invariant, Invariant::StateMachineSafety);
    }
}
