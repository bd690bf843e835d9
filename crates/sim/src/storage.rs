//! Simulated storage: a node's durable term, vote and log, and the writes still on their way.
//!
//! A real disk makes a write durable some time after it is issued (after the fsync), and a crash
//! keeps an unknown part of what was not yet synced. [`Disk`] models exactly that with the real
//! thing: each node has a `skiff_wal::Wal` on its own `skiff_wal::MemFs`. Writes are queued with
//! a completion time and complete in the order they were issued (contract item 2 of the core
//! asks for that order); completing one writes it to the log and syncs it. In
//! [`Disk::crash`] the writes still in flight reach the file unsynced, the file system keeps a
//! random prefix of the unsynced bytes and may tear the last write at any byte, and the log is
//! reopened: it must cut the torn tail and recover every synced write, and the core restarts
//! from what it recovered.
//!
//! [`LogCopy`] is a log of entries together with a running hash of each prefix (the *chain*:
//! `chain[i]` hashes every entry up to index `i`). The disk keeps one for the durable log, and
//! the node driver keeps one for the log as the core sees it (everything handed over in
//! `PersistEntries`, durable or not). Comparing two logs up to an index is then comparing two
//! numbers, which is what lets the invariant checker test log matching and leader completeness
//! after every step without walking logs.

use std::collections::VecDeque;

use skiff_raft::{Entry, HardState, Index, LogState, NodeId, Payload, ReadRequest, Restored, Term};
use skiff_wal::{MemFs, Options, Recovery, Wal};

use crate::time::Time;

/// A log held in memory with the hash chain of its prefixes.
#[derive(Clone, Debug, Default)]
pub struct LogCopy {
    /// The entries; `entries[i]` has index `i + 1`.
    entries: Vec<Entry>,
    /// `chain[i]` is the hash of entries `1..=i + 1`; same length as `entries`.
    chain: Vec<u64>,
}

impl LogCopy {
    /// The index of the last entry (0 when empty).
    pub fn last_index(&self) -> Index {
        Index(self.entries.len() as u64)
    }

    /// The entry at `index`, if held.
    pub fn entry(&self, index: Index) -> Option<&Entry> {
        index.0.checked_sub(1).and_then(|position| self.entries.get(position as usize))
    }

    /// The term of the entry at `index` (0 for index 0), if held.
    pub fn term(&self, index: Index) -> Option<Term> {
        if index == Index(0) {
            return Some(Term(0));
        }
        self.entry(index).map(|entry| entry.term)
    }

    /// The hash of the log up to `index` (0 for the empty prefix), if held.
    pub fn chain(&self, index: Index) -> Option<u64> {
        match index.0 {
            0 => Some(0),
            position => self.chain.get(position as usize - 1).copied(),
        }
    }

    /// Writes `entries`, superseding everything from the first one's index on (the semantics
    /// of `Action::PersistEntries`). The first index must not leave a gap.
    pub fn write(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        assert!(
            first.index.0 >= 1 && first.index <= self.last_index().next(),
            "write at {} leaves a gap after the last index {}",
            first.index,
            self.last_index()
        );
        let keep = first.index.0 as usize - 1;
        self.entries.truncate(keep);
        self.chain.truncate(keep);
        for entry in entries {
            assert!(
                entry.index == self.last_index().next(),
                "entries of one write are consecutive"
            );
            let previous = self.chain.last().copied().unwrap_or(0);
            self.chain.push(chain_hash(previous, entry));
            self.entries.push(entry.clone());
        }
    }

    /// The entries `[low, high)` a read request asks for, as far as held, bounded by the
    /// request's byte budget (at least one entry when any is held).
    pub fn read(&self, request: &ReadRequest) -> Vec<Entry> {
        let mut entries = Vec::new();
        let mut bytes = 0;
        let mut index = request.low;
        while index < request.high {
            let Some(entry) = self.entry(index) else { break };
            if !entries.is_empty() && bytes + entry.size() > request.max_bytes {
                break;
            }
            bytes += entry.size();
            entries.push(entry.clone());
            index = index.next();
        }
        entries
    }

    /// The summary a restarting core is restored from.
    pub fn log_state(&self) -> LogState {
        LogState::from_terms(self.entries.iter().map(|entry| (entry.index, entry.term)))
    }
}

/// The hash of a log prefix ending in `entry`, given the hash of the prefix before it.
pub fn chain_hash(previous: u64, entry: &Entry) -> u64 {
    let payload = match &entry.payload {
        Payload::Noop => 0x6E6F_6F70,
        Payload::Command(command) => fnv1a(command),
        Payload::Membership(membership) => fnv1a(membership.to_string().as_bytes()),
    };
    let mut hash = previous ^ 0x9E37_79B9_7F4A_7C15;
    for word in [entry.index.0, entry.term.0, payload] {
        hash = mix(hash ^ word);
    }
    hash
}

/// FNV-1a over bytes: a small, stable hash (std's hashers are not guaranteed stable across
/// releases, and the trace hash must be).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash
}

/// The SplitMix64 finaliser: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One write handed to the disk.
#[derive(Clone, Debug)]
pub enum Write {
    /// The term and vote.
    HardState(HardState),
    /// Entries, superseding the stored suffix from the first one's index.
    Entries(Vec<Entry>),
}

/// A write on its way to durability.
#[derive(Clone, Debug)]
struct PendingWrite {
    /// The write's number on this disk; strictly increasing.
    sequence: u64,
    /// What is written.
    write: Write,
}

/// The data directory of every node's log on its own file system.
const WAL_DIR: &str = "/skiff";

/// The cluster id written in every node's identity file.
const CLUSTER: u64 = 1;

/// A node's disk: the real write-ahead log on a fault-injecting in-memory file system, the
/// writes in flight, and a mirror of what the log holds durably.
#[derive(Debug)]
pub struct Disk {
    /// The node's file system: survives crashes, losing (and tearing) what was not synced.
    fs: MemFs,
    /// The node's write-ahead log, opened on `fs`.
    wal: Wal,
    /// The options the log is (re)opened with.
    options: Options,
    /// What the log's last open recovered: what a restart restores the core from.
    recovery: Recovery,
    /// The durable term and vote: what the log holds, as of the last sync or recovery.
    pub hard_state: HardState,
    /// The durable log, as the log holds it (rebuilt from the log itself at recovery).
    pub log: LogCopy,
    /// Writes issued and not yet durable, oldest first; they complete in this order.
    pending: VecDeque<PendingWrite>,
    /// The number the next write gets.
    next_sequence: u64,
    /// When the newest pending write completes: a later write never completes before it.
    last_completion: Time,
    /// The number of the newest pending hard-state write, if one is pending.
    pending_hard_state: Option<u64>,
}

/// Why a write was refused by the log before it reached it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecondVote(pub String);

impl Disk {
    /// A new, empty disk of node `id`, its file system's random choices drawn from `seed`.
    pub fn new(id: NodeId, seed: u64) -> Disk {
        let fs = MemFs::new(seed);
        let mut options = Options::new(id, CLUSTER);
        // Every record goes to the file as it is written, so that a crash finds unsynced
        // records in the file to keep, drop or tear.
        options.write_buffer = 0;
        // A point of the sparse index every few entries. With the default (one every 256 KiB,
        // more than a simulated log ever holds) every read scanned its segment from the start,
        // and leaders read constantly, for followers at different places in the log: the
        // simulator spent over two thirds of its time verifying the same records again. Small
        // intervals also give the sparse index many points to search and to cut back at a
        // truncation, which the default never does here.
        options.index_interval = 256;
        let (wal, recovery) = Wal::open(fs.clone(), WAL_DIR, options.clone())
            .expect("a new log opens on an empty file system");
        Disk {
            fs,
            wal,
            options,
            recovery,
            hard_state: HardState::default(),
            log: LogCopy::default(),
            pending: VecDeque::new(),
            next_sequence: 0,
            last_completion: Time::ZERO,
            pending_hard_state: None,
        }
    }

    /// Issues `write` at `now`, taking `latency` on its own; returns its number and when it
    /// completes (never before an earlier write). The write reaches the log when it completes
    /// (or, partly, in a crash before).
    pub fn submit(&mut self, write: Write, now: Time, latency: Time) -> (u64, Time) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        if matches!(write, Write::HardState(_)) {
            self.pending_hard_state = Some(sequence);
        }
        let completion = (now + latency).max(self.last_completion);
        self.last_completion = completion;
        self.pending.push_back(PendingWrite { sequence, write });
        (sequence, completion)
    }

    /// Makes the oldest pending write durable: written to the log and synced. Returns its
    /// number and contents, or why the log refuses it: a second vote in a term whose vote the
    /// log already holds (the log would panic on it; the driver reports a vote-safety breach).
    pub fn complete_next(&mut self) -> Result<Option<(u64, Write)>, SecondVote> {
        let Some(PendingWrite { sequence, write }) = self.pending.pop_front() else {
            return Ok(None);
        };
        if let Write::HardState(hard_state) = &write
            && let Some(refusal) = self.second_vote(*hard_state)
        {
            return Err(refusal);
        }
        self.write_to_log(&write);
        let (index, term) = self.wal.sync().expect("the simulated file system injects no errors");
        match &write {
            Write::HardState(hard_state) => {
                self.hard_state = *hard_state;
                if self.pending_hard_state == Some(sequence) {
                    self.pending_hard_state = None;
                }
            }
            Write::Entries(entries) => {
                self.log.write(entries);
                let last = entries.last().expect("writes are non-empty");
                assert_eq!(
                    (index, term),
                    (last.index, last.term),
                    "the log's sync reports the write's last entry durable"
                );
            }
        }
        Ok(Some((sequence, write)))
    }

    /// Why saving `hard_state` would be a second vote in a term, if it would.
    fn second_vote(&self, hard_state: HardState) -> Option<SecondVote> {
        let saved = self.wal.hard_state();
        (hard_state.term == saved.term && saved.vote.is_some() && hard_state.vote != saved.vote)
            .then(|| {
                SecondVote(format!(
                    "the log holds a vote for {} in term {}, and a vote for {} was to be saved",
                    saved.vote.map_or_else(|| "none".to_string(), |vote| vote.to_string()),
                    saved.term,
                    hard_state.vote.map_or_else(|| "none".to_string(), |vote| vote.to_string()),
                ))
            })
    }

    /// Hands `write` to the log (written to the file, not synced).
    fn write_to_log(&mut self, write: &Write) {
        let result = match write {
            Write::HardState(hard_state) => self.wal.save_hard_state(*hard_state),
            Write::Entries(entries) => self.wal.append(entries),
        };
        result.expect("the simulated file system injects no errors");
    }

    /// Serves a read of the durable log through the log's own `read` (every record verified
    /// again), as far as the log holds the range.
    pub fn read(&mut self, request: &ReadRequest) -> Vec<Entry> {
        let high = request.high.min(self.wal.last_index().next());
        if request.low < self.wal.first_index() || request.low >= high {
            return Vec::new();
        }
        self.wal
            .read(request.low, high, request.max_bytes)
            .expect("the simulated file system injects no errors")
    }

    /// The number of the newest hard-state write not yet durable, if any: a message must not
    /// leave before it completes (contract item 1).
    pub fn pending_hard_state(&self) -> Option<u64> {
        self.pending_hard_state
    }

    /// How many writes are pending.
    pub fn pending_writes(&self) -> usize {
        self.pending.len()
    }

    /// A crash. The writes in flight reach the file, unsynced, in order (as far as the log
    /// takes them), then the file system crashes: unsynced bytes are kept up to a random point
    /// and may be torn at any byte. The log is reopened and recovers (cutting a torn tail);
    /// the durable mirror is rebuilt from what it recovered. Returns the recovery.
    pub fn crash(&mut self) -> Recovery {
        for PendingWrite { write, .. } in std::mem::take(&mut self.pending) {
            if let Write::HardState(hard_state) = &write
                && self.second_vote(*hard_state).is_some()
            {
                break;
            }
            self.write_to_log(&write);
        }
        self.pending_hard_state = None;
        self.fs.crash();
        let (wal, recovery) = Wal::open(self.fs.clone(), WAL_DIR, self.options.clone())
            .expect("the log recovers from a crash of the simulated file system");
        self.wal = wal;
        self.hard_state = recovery.hard_state;
        self.log = LogCopy::default();
        let last = self.wal.last_index();
        if last >= Index(1) {
            let entries = self
                .wal
                .read(Index(1), last.next(), u64::MAX)
                .expect("the recovered log reads back");
            self.log.write(&entries);
        }
        self.recovery = recovery.clone();
        recovery
    }

    /// What a restart restores the core from: the log's last recovery.
    pub fn restored(&self) -> Restored {
        self.recovery.restored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use skiff_raft::{NodeId, ReadPurpose};

    fn entry(index: u64, term: u64, command: &'static str) -> Entry {
        Entry {
            index: Index(index),
            term: Term(term),
            payload: Payload::Command(Bytes::from_static(command.as_bytes())),
        }
    }

    #[test]
    fn chains_agree_exactly_on_equal_prefixes() {
        let mut a = LogCopy::default();
        let mut b = LogCopy::default();
        a.write(&[entry(1, 1, "x"), entry(2, 1, "y"), entry(3, 2, "z")]);
        b.write(&[entry(1, 1, "x"), entry(2, 1, "y"), entry(3, 3, "z")]);
        assert_eq!(a.chain(Index(2)), b.chain(Index(2)));
        assert_ne!(a.chain(Index(3)), b.chain(Index(3)));
        b.write(&[entry(3, 2, "z")]);
        assert_eq!(a.chain(Index(3)), b.chain(Index(3)), "a rewrite supersedes the suffix");
        b.write(&[entry(2, 1, "w")]);
        assert_eq!(b.last_index(), Index(2));
        assert_ne!(a.chain(Index(2)), b.chain(Index(2)), "payloads count");
    }

    #[test]
    fn reads_respect_bounds_and_budget() {
        let mut log = LogCopy::default();
        log.write(&[entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 1, "c")]);
        let request = |low, high, max_bytes| ReadRequest {
            low: Index(low),
            high: Index(high),
            max_bytes,
            purpose: ReadPurpose::Replicate { to: NodeId(2), term: Term(1) },
        };
        assert_eq!(log.read(&request(2, 4, u64::MAX)).len(), 2);
        assert_eq!(log.read(&request(1, 4, 1)).len(), 1, "at least one entry");
        assert_eq!(log.read(&request(4, 6, u64::MAX)).len(), 0);
    }

    #[test]
    fn writes_complete_in_order_and_a_crash_loses_the_rest() {
        let mut disk = Disk::new(NodeId(1), 7);
        let hard_state = HardState { term: Term(2), vote: Some(NodeId(1)) };
        let (first, first_done) = disk.submit(Write::HardState(hard_state), Time(0), Time(50));
        let (_, second_done) =
            disk.submit(Write::Entries(vec![entry(1, 2, "a")]), Time(1), Time(5));
        assert!(second_done >= first_done, "a later write never overtakes an earlier one");
        assert_eq!(disk.pending_hard_state(), Some(first));
        assert!(
            matches!(disk.complete_next(), Ok(Some((sequence, Write::HardState(_)))) if sequence == first)
        );
        assert_eq!(disk.hard_state, hard_state);
        assert_eq!(disk.pending_hard_state(), None);
        let recovery = disk.crash();
        assert!(matches!(disk.complete_next(), Ok(None)));
        assert_eq!(recovery.hard_state, hard_state, "the synced vote survives");
        assert!(disk.log.last_index() <= Index(1), "the entry write may survive, unsynced");
        assert_eq!(disk.hard_state, hard_state);
    }

    #[test]
    fn the_log_serves_reads_and_refuses_a_second_vote() {
        let mut disk = Disk::new(NodeId(1), 3);
        let vote = |node| HardState { term: Term(2), vote: Some(NodeId(node)) };
        disk.submit(Write::HardState(vote(1)), Time(0), Time(1));
        disk.submit(Write::Entries(vec![entry(1, 2, "a"), entry(2, 2, "b")]), Time(0), Time(1));
        assert!(disk.complete_next().is_ok());
        assert!(disk.complete_next().is_ok());
        let request = ReadRequest {
            low: Index(1),
            high: Index(5),
            max_bytes: u64::MAX,
            purpose: ReadPurpose::Replicate { to: NodeId(2), term: Term(2) },
        };
        assert_eq!(disk.read(&request), disk.log.read(&request));
        assert_eq!(disk.read(&request).len(), 2);
        disk.crash();
        assert_eq!(disk.log.last_index(), Index(2), "synced entries survive a crash");
        disk.submit(Write::HardState(vote(3)), Time(0), Time(1));
        assert!(disk.complete_next().is_err(), "a second vote in term 2 is refused");
    }
}
