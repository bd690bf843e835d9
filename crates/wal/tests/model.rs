//! The log against a model: a plain vector of entries, a hard state and a commit index.
//!
//! Random sequences of appends (superseding suffixes in new terms), votes, commits, syncs,
//! reads with byte budgets, compactions, clean reopens and crashes run on a `Wal` with random
//! segment sizes, index intervals and write buffers. After every operation, every index's term,
//! the summary, the hard state and every read must be what the model says (a read planned from
//! sealed segments and run without the log, a non-empty prefix of it). After a crash the
//! recovered log must be one the model allows (see `common::check_recovered`), and becomes the
//! model from there on.

mod common;

use common::{DIR, History, ModelLog, check_recovered, entry, read_all};
use proptest::prelude::*;
use skiff_raft::{Entry, HardState, Index, LogState, NodeId, Term};
use skiff_wal::{MemFs, Options, SealedReader, Wal};

/// One operation on the log.
#[derive(Clone, Debug)]
enum Op {
    /// Append `count` entries of `size` bytes, starting `back` entries before the end (but never
    /// at or below the commit index); a superseding append starts a new term.
    Append { back: u64, count: u64, size: usize },
    /// Start a new term with a vote.
    Vote,
    /// Save a commit index, a fraction (per mille) of the durable log.
    Commit(u64),
    /// Make everything durable.
    Sync,
    /// Read from a fraction of the log to another, within a budget.
    Read { low: u64, high: u64, max_bytes: u64 },
    /// Compact up to a fraction of the commit index.
    Compact(u64),
    /// Sync, close and open again.
    Reopen,
    /// A power failure, then open again.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u64..4, 1u64..6, 0usize..100).prop_map(|(back, count, size)| Op::Append { back, count, size }),
        1 => Just(Op::Vote),
        2 => (0u64..=1000).prop_map(Op::Commit),
        3 => Just(Op::Sync),
        3 => (0u64..=1000, 0u64..=1000, 1u64..400).prop_map(|(low, high, max_bytes)| Op::Read { low, high, max_bytes }),
        1 => (0u64..=1000).prop_map(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

/// The model of the log and what is durable.
struct Model {
    /// The log as appended.
    log: ModelLog,
    /// The current term: every append uses it.
    term: u64,
    /// The hard state saved last.
    hard_state: HardState,
    /// The commit index saved last.
    commit: u64,
    /// The last index the last sync made durable.
    durable: u64,
    /// What was written since the last sync, for judging a crash.
    history: History,
}

impl Model {
    /// Records the current state as a candidate for recovery.
    fn written(&mut self) {
        self.history.logs.push(self.log.clone());
        self.history.hard_states.push(self.hard_state);
        self.history.commits.push(self.commit);
    }

    /// Records a successful sync.
    fn synced(&mut self) {
        self.durable = self.log.last();
        self.history = History {
            logs: vec![self.log.clone()],
            hard_states: vec![self.hard_state],
            commits: vec![self.commit],
            syncs: self.history.syncs + 1,
            compacted_up_to: self.history.compacted_up_to,
        };
    }

    /// The summary the log must report.
    fn log_state(&self, prev_term: Term) -> LogState {
        let mut state = LogState::from_terms(self.log.entries.iter().map(|e| (e.index, e.term)));
        state.first_index = Index(self.log.first);
        state.last_index = Index(self.log.last());
        state.prev_term = prev_term;
        state
    }

    /// What a read of `[low, high)` within `max_bytes` must return.
    fn read(&self, low: u64, high: u64, max_bytes: u64) -> Vec<Entry> {
        let mut bytes = 0;
        let mut entries = Vec::new();
        for index in low..high {
            let entry = self.log.get(index).expect("in range").clone();
            if !entries.is_empty() && bytes + entry.size() > max_bytes {
                break;
            }
            bytes += entry.size();
            entries.push(entry);
        }
        entries
    }
}

/// Options of the given sizes.
fn options(segment_size: u64, index_interval: u64, write_buffer: usize) -> Options {
    let mut options = Options::new(NodeId(1), 7);
    options.segment_size = segment_size;
    options.index_interval = index_interval;
    options.write_buffer = write_buffer;
    options
}

/// Checks everything the log reports against the model.
fn check(wal: &Wal, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(wal.first_index(), Index(model.log.first));
    prop_assert_eq!(wal.last_index(), Index(model.log.last()));
    let prev_term = wal.term(Index(model.log.first - 1)).expect("the term before the log");
    prop_assert_eq!(wal.log_state(), model.log_state(prev_term));
    for entry in &model.log.entries {
        prop_assert_eq!(wal.term(entry.index), Some(entry.term));
    }
    prop_assert_eq!(wal.term(Index(model.log.last() + 1)), None);
    prop_assert_eq!(wal.hard_state(), model.hard_state);
    prop_assert_eq!(wal.commit(), Index(model.commit));
    Ok(())
}

/// Runs the operations and checks the log after each one.
fn run_ops(ops: Vec<Op>, sizes: (u64, u64, usize), seed: u64) -> Result<(), TestCaseError> {
    let mut options = options(sizes.0, sizes.1, sizes.2);
    // Preallocation from off to past the segment size, drawn from the seed rather than as a
    // parameter of its own, so that the recorded regressions keep their meaning.
    options.preallocate = seed % 1000;
    let fs = MemFs::new(seed);
    let (mut wal, _) = Wal::open(fs.clone(), DIR, options.clone()).expect("opens");
    // Kept across reads, as the server's reader thread keeps it, so that its cursor is used.
    let mut sealed_reader = SealedReader::new();
    let mut model = Model {
        log: ModelLog::new(),
        term: 1,
        hard_state: HardState::default(),
        commit: 0,
        durable: 0,
        history: History::new(),
    };
    for op in ops {
        match op {
            Op::Append { back, count, size } => {
                let floor = model.commit.max(model.log.first - 1);
                let start = model.log.last().saturating_sub(back).max(floor) + 1;
                if start <= model.log.last() {
                    model.term += 1;
                }
                let entries: Vec<Entry> =
                    (start..start + count).map(|index| entry(index, model.term, size)).collect();
                model.log.append(&entries);
                model.durable = model.durable.min(start - 1);
                model.written();
                wal.append(&entries).expect("appends");
            }
            Op::Vote => {
                model.term += 1;
                model.hard_state = HardState { term: Term(model.term), vote: Some(NodeId(3)) };
                model.written();
                wal.save_hard_state(model.hard_state).expect("saves");
            }
            Op::Commit(per_mille) => {
                let commit = model.durable * per_mille / 1000;
                if commit > model.commit {
                    model.commit = commit;
                    model.written();
                }
                wal.save_commit(Index(commit)).expect("saves");
            }
            Op::Sync => {
                let durable = wal.sync().expect("syncs");
                model.synced();
                prop_assert_eq!(durable, (Index(model.log.last()), wal.last_term()));
            }
            Op::Read { low, high, max_bytes } => {
                let span = model.log.entries.len() as u64;
                let low = model.log.first + span * low / 1000;
                let high = (model.log.first + span * high / 1000).max(low);
                let read = wal.read(Index(low), Index(high), max_bytes).expect("reads");
                let expected = model.read(low, high, max_bytes);
                prop_assert_eq!(&read, &expected);
                let plan = wal.plan_sealed_read(Index(low), Index(high), max_bytes).expect("plans");
                if let Some(plan) = plan {
                    let sealed = sealed_reader.run(&plan).expect("reads sealed segments");
                    prop_assert!(!sealed.is_empty() && expected.starts_with(&sealed));
                }
            }
            Op::Compact(per_mille) => {
                let up_to = model.commit * per_mille / 1000;
                wal.compact(Index(up_to)).expect("compacts");
                model.synced();
                let first = wal.first_index().0;
                prop_assert!(
                    first >= model.log.first && first <= up_to.max(model.log.first - 1) + 1
                );
                model.log.entries.drain(..(first - model.log.first) as usize);
                model.log.first = first;
                model.history.compacted_up_to = model.history.compacted_up_to.max(up_to);
            }
            Op::Reopen => {
                wal.sync().expect("syncs");
                model.synced();
                drop(wal);
                let (reopened, recovery) =
                    Wal::open(fs.clone(), DIR, options.clone()).expect("reopens");
                wal = reopened;
                prop_assert_eq!(recovery.torn_bytes, 0);
            }
            Op::Crash => {
                drop(wal);
                fs.crash();
                let (reopened, recovery) =
                    Wal::open(fs.clone(), DIR, options.clone()).expect("recovers");
                wal = reopened;
                let recovered = read_all(&mut wal);
                check_recovered(&recovered, &model.history).map_err(TestCaseError::fail)?;
                prop_assert!(model.history.hard_states.contains(&recovery.hard_state));
                // What survived is the model from now on.
                model.log = recovered;
                model.hard_state = recovery.hard_state;
                model.commit = recovery.commit.0;
                model.term = model.term.max(model.log.last_term());
                model.synced();
            }
        }
        check(&wal, &model)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    /// The log behaves like the model under any mix of operations and sizes.
    #[test]
    fn the_log_matches_the_model(
        ops in proptest::collection::vec(op(), 1..80),
        segment_size in 100u64..800,
        index_interval in 1u64..400,
        write_buffer in 1usize..600,
        seed in any::<u64>(),
    ) {
        run_ops(ops, (segment_size, index_interval, write_buffer), seed)?;
    }
}
