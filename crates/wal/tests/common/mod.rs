//! What the crash, corruption and model tests share: a seeded workload generator and the
//! checks of a recovered log against the history of what was written.

#![allow(dead_code, reason = "each test file uses a different part")]

use bytes::Bytes;
use skiff_raft::rng::Rng;
use skiff_raft::{Entry, HardState, Index, NodeId, Payload, Term};
use skiff_wal::{Options, Wal};

/// The data directory of every test log.
pub const DIR: &str = "/data";

/// Small segments, buffers and index intervals, so that a short workload rolls segments,
/// splits writes and uses the sparse index; and zeros preallocated a little ahead, so that a
/// segment is zero-filled in several stretches, each a boundary a power cut can fall on.
pub fn small_options() -> Options {
    let mut options = Options::new(NodeId(1), 7);
    options.segment_size = 300;
    options.write_buffer = 64;
    options.index_interval = 100;
    options.preallocate = 256;
    options
}

/// An entry whose command is `size` bytes derived from its index and term, so that any mix-up
/// shows.
pub fn entry(index: u64, term: u64, size: usize) -> Entry {
    let pattern = format!("{index}.{term};");
    let command: Vec<u8> = pattern.bytes().cycle().take(size).collect();
    Entry { index: Index(index), term: Term(term), payload: Payload::Command(Bytes::from(command)) }
}

/// One step of a workload.
#[derive(Clone, Debug)]
pub enum Step {
    /// Append these entries (they may supersede a suffix).
    Append(Vec<Entry>),
    /// Save this hard state.
    HardState(HardState),
    /// Save this commit index.
    Commit(Index),
    /// Make everything durable.
    Sync,
    /// Compact up to this index.
    Compact(Index),
}

/// A log as a model: the entries from `first` on, by index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelLog {
    /// The index of the first entry held.
    pub first: u64,
    /// The entries held, from `first` on.
    pub entries: Vec<Entry>,
}

impl ModelLog {
    /// An empty log starting at 1.
    pub fn new() -> ModelLog {
        ModelLog { first: 1, entries: Vec::new() }
    }

    /// The index of the last entry (first - 1 when empty).
    pub fn last(&self) -> u64 {
        self.first + self.entries.len() as u64 - 1
    }

    /// The term of the last entry, or 0.
    pub fn last_term(&self) -> u64 {
        self.entries.last().map_or(0, |entry| entry.term.0)
    }

    /// Applies an append: entries from the first one's index on are replaced.
    pub fn append(&mut self, entries: &[Entry]) {
        let start = entries[0].index.0;
        self.entries.truncate((start - self.first) as usize);
        self.entries.extend_from_slice(entries);
    }

    /// The entry at `index`, if held.
    pub fn get(&self, index: u64) -> Option<&Entry> {
        self.entries.get(index.checked_sub(self.first)? as usize)
    }
}

/// A seeded workload of about `steps` steps: appends of 1 to 4 entries (sometimes superseding
/// a suffix in a new term, with a vote), commits, syncs and compactions. Every step is valid
/// for the log as the workload leaves it: committed entries are never superseded.
pub fn workload(seed: u64, steps: usize) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let mut model = ModelLog::new();
    let mut term = 1;
    let mut commit = 0;
    let mut durable = 0;
    let mut out = vec![Step::HardState(HardState { term: Term(1), vote: Some(NodeId(1)) })];
    for _ in 0..steps {
        match rng.between(0, 10) {
            0 if model.last() > commit.max(model.first - 1) => {
                // A new leader supersedes a suffix above the commit index.
                term += 1;
                let low = commit.max(model.first - 1) + 1;
                let start = rng.between(low, model.last() + 1);
                let count = rng.between(1, 4);
                let entries: Vec<Entry> = (start..start + count)
                    .map(|index| entry(index, term, rng.between(0, 80) as usize))
                    .collect();
                out.push(Step::HardState(HardState { term: Term(term), vote: Some(NodeId(2)) }));
                model.append(&entries);
                out.push(Step::Append(entries));
                durable = durable.min(start - 1);
            }
            1 if durable > commit => {
                commit = rng.between(commit + 1, durable + 1);
                out.push(Step::Commit(Index(commit)));
            }
            2 | 3 => {
                out.push(Step::Sync);
                durable = model.last();
            }
            4 if commit >= model.first => {
                out.push(Step::Sync);
                durable = model.last();
                out.push(Step::Compact(Index(rng.between(model.first, commit + 1))));
                // The model cannot know which segments go; it never compacts its own entries.
            }
            _ => {
                let start = model.last() + 1;
                let count = rng.between(1, 5);
                let entries: Vec<Entry> = (start..start + count)
                    .map(|index| entry(index, term, rng.between(0, 120) as usize))
                    .collect();
                model.append(&entries);
                out.push(Step::Append(entries));
            }
        }
    }
    out.push(Step::Sync);
    out
}

/// What a workload run saw: the log and hard state after every step, and which of those
/// states the last successful sync made durable.
#[derive(Clone, Debug)]
pub struct History {
    /// The log after each write step, from the last successful sync on (the first is the one
    /// that sync made durable).
    pub logs: Vec<ModelLog>,
    /// The hard states saved from the last successful sync on (the first is the durable one).
    pub hard_states: Vec<HardState>,
    /// The commit indexes saved from the last successful sync on (the first is durable).
    pub commits: Vec<u64>,
    /// The number of syncs that succeeded.
    pub syncs: usize,
    /// The highest index a compaction was asked to reach (it may have deleted up to there).
    pub compacted_up_to: u64,
}

impl History {
    /// The history of a new log: empty, nothing saved.
    pub fn new() -> History {
        History {
            logs: vec![ModelLog::new()],
            hard_states: vec![HardState::default()],
            commits: vec![0],
            syncs: 0,
            compacted_up_to: 0,
        }
    }
}

/// Runs `steps` on `wal` until one fails, recording the history. Returns whether all ran.
pub fn run(wal: &mut Wal, steps: &[Step], history: &mut History) -> bool {
    for step in steps {
        let mut log = history.logs.last().expect("not empty").clone();
        let result = match step {
            Step::Append(entries) => {
                log.append(entries);
                history.logs.push(log);
                wal.append(entries)
            }
            Step::HardState(hard_state) => {
                history.hard_states.push(*hard_state);
                wal.save_hard_state(*hard_state)
            }
            Step::Commit(commit) => {
                history.commits.push(commit.0);
                wal.save_commit(*commit)
            }
            Step::Sync => match wal.sync() {
                Ok((index, term)) => {
                    assert_eq!(index.0, log.last(), "sync reports the last entry");
                    assert_eq!(term.0, log.last_term(), "sync reports the last entry's term");
                    history.logs.drain(..history.logs.len() - 1);
                    history.hard_states.drain(..history.hard_states.len() - 1);
                    history.commits.drain(..history.commits.len() - 1);
                    history.syncs += 1;
                    Ok(())
                }
                Err(error) => Err(error),
            },
            Step::Compact(up_to) => {
                history.compacted_up_to = history.compacted_up_to.max(up_to.0);
                wal.compact(*up_to)
            }
        };
        if result.is_err() {
            return false;
        }
    }
    true
}

/// Reads the whole log back.
pub fn read_all(wal: &mut Wal) -> ModelLog {
    let (first, last) = (wal.first_index(), wal.last_index());
    let mut entries = Vec::new();
    let mut next = first;
    while next <= last {
        let batch = wal.read(next, last.next(), 512).expect("every live entry reads back");
        assert!(!batch.is_empty(), "a read returns at least one entry");
        next = next.plus(batch.len() as u64);
        entries.extend(batch);
    }
    ModelLog { first: first.0, entries }
}

/// Checks a recovered log against the history: it must be a prefix of some state written at or
/// after the last successful sync (nothing half-written, nothing invented), hold every entry
/// that sync made durable unless a later write superseded it, and start no later than
/// compaction allowed. Returns the position of the matching state in the history.
pub fn check_recovered(recovered: &ModelLog, history: &History) -> Result<usize, String> {
    if recovered.first > history.compacted_up_to + 1 {
        return Err(format!(
            "the log starts at {} but compaction only went up to {}",
            recovered.first, history.compacted_up_to
        ));
    }
    let durable = &history.logs[0];
    let matching = history.logs.iter().position(|state| {
        let is_prefix = recovered.last() <= state.last()
            && recovered.entries.iter().all(|entry| state.get(entry.index.0) == Some(entry));
        // The entries of the durable state that this state still holds must all survive.
        let kept = (durable.first..=durable.last())
            .take_while(|&index| durable.get(index) == state.get(index))
            .last()
            .unwrap_or(0);
        is_prefix && recovered.last() >= kept
    });
    matching.ok_or_else(|| {
        format!(
            "recovered log [{}, {}] matches no state written since the last sync (durable: \
             [{}, {}], {} states since)",
            recovered.first,
            recovered.last(),
            durable.first,
            durable.last(),
            history.logs.len() - 1
        )
    })
}
