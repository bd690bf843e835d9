//! Linearizability checking: does some total order of a history's operations, consistent with
//! real time, explain every result the clients were told?
//!
//! A history is **linearizable** (Herlihy and Wing, 1990) if each operation can be given a
//! single instant, its *linearization point*, somewhere between its invocation and its
//! completion, such that performing the operations one at a time in the order of those points on
//! a sequential register map yields exactly the results the clients saw. This is the promise a
//! Raft key-value store makes (Raft §8), and the simulator checks it on every run.
//!
//! ## What the outcomes mean here
//! - `Ok(result)`: the operation took effect once, between invocation and completion, and the
//!   model must produce exactly `result` at its linearization point.
//! - `Fail`: the operation certainly did not take effect. It is dropped before the search.
//! - `Unknown` (a timeout, a lost leader, or an invocation never completed by the end of the
//!   history): the operation may take effect at any instant after its invocation, even after
//!   every other operation completed, or never. It is given a completion time of +infinity and
//!   an unconstrained result. An unknown `get` changes nothing and constrains nothing, so it is
//!   dropped too.
//!
//! The search succeeds as soon as every `Ok` operation is linearized: the unknown operations
//! left over may be placed after everything else (any unknown operation can take effect at the
//! end, since its result is unconstrained), which is the same as never taking effect.
//!
//! **Real time is the order of events in the history**, not their timestamps. Two events at the
//! same simulated tick still happened one after the other in the simulator: a completion recorded
//! before an invocation really did precede it. Ordering by timestamp alone would let a client's
//! read at tick 5 move before its own write acknowledged at tick 5. Timestamps are shown in
//! reports, for people.
//!
//! ## The search
//! The map is a product of independent registers, one per key, and every operation touches one
//! key, so the history is linearizable if and only if each key's sub-history is
//! (P-compositionality: Horn and Kroening, "Faster linearizability checking via
//! P-compositionality", 2015). Each key is checked on its own, which turns one search over
//! thousands of operations into a handful of small ones.
//!
//! Per key, the checker runs Wing and Gong's depth-first search with Lowe's improvements
//! ("Testing for linearizability", 2017), as porcupine does (github.com/anishathalye/porcupine):
//! - A *configuration* is the set of operations linearized so far and the register's value.
//!   The operations that may be linearized next, the *window*, are those not yet linearized that
//!   were invoked before the earliest completion among the `Ok` operations not yet linearized:
//!   anything invoked later would be ordered after an operation that had already returned.
//! - Just-in-time linearization: the search extends the order one operation at a time and
//!   backtracks when no operation in the window can go next, that is when the earliest-completing
//!   pending operation can no longer be placed before its completion. The window is read off
//!   linked lists (by invocation, by completion) that lose and regain operations in O(1).
//! - Every configuration entered is remembered, and a configuration is never explored twice.
//!   The linearized `Ok` operations are remembered as a 128-bit fingerprint: a random 128-bit
//!   key per operation, XORed together (Zobrist hashing, updated in O(1) per step). Two sets
//!   collide with probability about 2^-128 per pair; a collision can only make the search skip a
//!   configuration, that is report a violation that is not one, never miss a real violation.
//!   The linearized unknown operations are remembered exactly, as a bitset, for rule 4 below.
//! - `Ok` operations are tried before unknown ones, so a linearizable history is usually
//!   explained without placing any unknown operation until a result needs it.
//!
//! Plain Wing and Gong is exponential in ways that simulator histories hit: every subset of
//! the pending unknown writes could be placed at every point, and every subset of concurrent
//! reads in every order. Five rules cut this down, each removing only orders for which an
//! equivalent one is still explored:
//! 1. An unknown operation is never placed where it changes nothing (a `cas` whose expected value
//!    does not match, a put of the value already held, a delete of an absent key): taking it
//!    out changes no result.
//! 2. The operation placed right after an unknown one must *need* it: a get that returns the new
//!    value (absent, after a delete), a `cas` that swaps from the new value, or a failed `cas`
//!    that expected the value the unknown operation replaced. Any other successor either
//!    overwrites the effect unseen (a put or a delete: drop the unknown operation) or would
//!    accept the old value as well without changing
//!    it (a failed `cas` expecting a third value: let it go first). The replaced value is part
//!    of the configuration, since this depends on the last step; and an unknown operation that
//!    nothing in the window could need is not tried at all.
//! 3. Reads go first: where rule 2 places no restriction, if a read (a get, or a `cas` that
//!    failed) in the window is explained by the current value, it is placed next and nothing
//!    else is tried there. A read changes nothing, and nothing not yet placed completed before
//!    it was invoked, so moving it to the front of any valid order leaves the order valid.
//! 4. Dominance: a configuration is not entered if one already entered has the same `Ok`
//!    operations, value and rule-2 restriction and a subset of its unknown operations. Unknown
//!    operations not yet placed stay available, so the smaller set can do everything the larger
//!    one can.
//! 5. Unobservable values are one value: a value that no operation on the key reads or expects
//!    cannot be told apart from another such value, so the model holds "some unobservable value"
//!    instead. Unknown puts of such values (*blind writes*, typically requests that never reached
//!    a leader) are then interchangeable, and are placed only in invocation order: an earlier
//!    one can always take a later one's place.
//!
//! Why no answer is lost: any valid order can be rewritten into one that obeys rules 1, 2 and 5,
//! by deleting unknown operations that change nothing or are overwritten unseen, moving unknown
//! operations later past reads that do not need them, and exchanging blind writes placed out of
//! invocation order. Each rewrite shortens the order, moves an unknown operation later, or
//! removes an inversion, so rewriting ends; real time only constrains pairs, and an unknown
//! operation has no completion to respect. Rule 3 keeps a configuration that has a valid
//! completion from losing it, by the argument in the rule. Rule 4 is sound for a depth-first
//! search because the dominating configuration reaches the end in no more steps than the
//! dominated one. `the_checker_agrees_with_brute_force` in the tests compares the answers with
//! an exhaustive search over every subset and permutation of small histories, and catches each
//! rule when it is weakened.
//!
//! ## Invariants
//! - A history is well formed: times never decrease, a client has at most one open invocation,
//!   every completion has an open invocation, and an `Ok` result has the operation's kind. The
//!   workload records histories, so a malformed one is a simulator bug and panics.
//! - The search's linked lists are restored in exactly the reverse order of removal; each
//!   removal and restoration asserts that its neighbours agree.
//! - The search never claims success with an `Ok` operation left out.
//!
//! ## Bounded work
//! Deciding linearizability is NP-complete (Gibbons and Korach, 1997), so each key's search is
//! given a budget of steps, one step being one configuration entered (one operation placed,
//! counting again an operation placed anew after backtracking). Memory is proportional to the
//! steps (one remembered configuration each, under 200 bytes), and time to the steps times the
//! window's size. [`check_with_budget`] reports [`CheckError::Inconclusive`] when a key exhausts
//! its budget; [`check`] uses [`DEFAULT_STEP_BUDGET`] and panics on an inconclusive key, so a
//! test cannot hang.
//!
//! ## Left out
//! Checking other data models (the model is this map's register, written inline), parallel
//! search across keys, and minimizing a violation to its smallest failing sub-history: the
//! report gives the key's operations and the longest prefix the search could explain instead.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use skiff_raft::rng::Rng;

use crate::history::{ClientId, Event, History, Key, Operation, OperationResult, Outcome, Value};

/// Search steps (configurations entered) allowed per key by [`check`]. Measured on histories
/// of a sequential model with random concurrency: 2,000 to 3,000 operations over 5 keys, with 8
/// to 20 clients and 80 to 140 unknown writes, take at most about 1,000 steps per key, violations
/// included; 3,000 operations on a single key with 10 clients take up to about 100,000. At the
/// limit a key's search holds about 200 MB and runs for a few seconds.
pub const DEFAULT_STEP_BUDGET: u64 = 1_000_000;

/// One invocation paired with how it ended, as the checker saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordedOperation {
    /// The client that invoked it.
    pub client: ClientId,
    /// What was asked.
    pub operation: Operation,
    /// The simulated time of the invocation.
    pub invoked_at: u64,
    /// The simulated time of the completion; `None` if the history ended first.
    pub completed_at: Option<u64>,
    /// How it ended; `Unknown` if the history ended before it completed.
    pub outcome: Outcome,
}

/// A key whose operations no real-time-respecting order explains, with what the search found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The key whose sub-history is not linearizable.
    pub key: Key,
    /// Every operation on the key, failed ones included, in invocation order.
    pub operations: Vec<RecordedOperation>,
    /// The longest order the search found (by `Ok` operations placed) that explains every
    /// result in it, as indexes into `operations`, first linearized first.
    pub longest_prefix: Vec<usize>,
    /// The register's value after `longest_prefix`; `None` while absent.
    pub value_after_prefix: Option<Value>,
    /// After the prefix, the `Ok` operation completing earliest among those not placed, as an
    /// index into `operations`: it had to be linearized before anything invoked after its
    /// completion, and no way of doing so worked.
    pub due_after_prefix: usize,
    /// The operations that could have been linearized right after the prefix, as indexes into
    /// `operations`; every continuation through them failed.
    pub candidates_after_prefix: Vec<usize>,
}

/// Why [`check_with_budget`] could not confirm a history linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckError {
    /// A key's sub-history is certainly not linearizable.
    Violation(Violation),
    /// A key's search used its whole step budget without an answer.
    Inconclusive {
        /// The key whose search gave up.
        key: Key,
        /// The steps spent on it: the budget.
        steps: u64,
    },
}

/// Checks that `history` is linearizable, with [`DEFAULT_STEP_BUDGET`] steps per key.
///
/// # Panics
/// If a key's search exhausts the budget (use [`check_with_budget`] to handle that case), or if
/// the history is malformed (see the module's invariants).
pub fn check(history: &History) -> Result<(), Violation> {
    match check_with_budget(history, DEFAULT_STEP_BUDGET) {
        Ok(()) => Ok(()),
        Err(CheckError::Violation(violation)) => Err(violation),
        Err(CheckError::Inconclusive { key, steps }) => panic!(
            "the linearizability check of key {key} gave up after {steps} steps; \
             use check_with_budget with a larger budget"
        ),
    }
}

/// Checks that `history` is linearizable, spending at most `max_steps` search steps per key.
/// Keys are checked in ascending order; a violation is reported in preference to an
/// inconclusive key.
///
/// # Panics
/// If the history is malformed (see the module's invariants).
pub fn check_with_budget(history: &History, max_steps: u64) -> Result<(), CheckError> {
    let mut inconclusive = None;
    for (key, operations) in operations_by_key(history) {
        match Search::new(&operations, max_steps).run() {
            SearchEnd::Linearizable => {}
            SearchEnd::OutOfSteps => {
                inconclusive.get_or_insert(CheckError::Inconclusive { key, steps: max_steps });
            }
            SearchEnd::NotLinearizable(found) => {
                let violation = Violation {
                    key,
                    operations: operations.iter().map(|timed| timed.record).collect(),
                    longest_prefix: found.prefix,
                    value_after_prefix: found.value,
                    due_after_prefix: found.due,
                    candidates_after_prefix: found.candidates,
                };
                return Err(CheckError::Violation(violation));
            }
        }
    }
    inconclusive.map_or(Ok(()), Err)
}

/// A recorded operation with its place in the history's real-time order.
#[derive(Clone, Copy, Debug)]
struct Timed {
    /// The operation, for reports.
    record: RecordedOperation,
    /// The position of its invocation among the history's events.
    invoked: usize,
    /// The position of its completion among the history's events; `None` if there is none.
    completed: Option<usize>,
}

/// Pairs invocations with completions and groups them by key, each key's operations in
/// invocation order. Asserts that the history is well formed.
fn operations_by_key(history: &History) -> BTreeMap<Key, Vec<Timed>> {
    let mut open: BTreeMap<ClientId, Timed> = BTreeMap::new();
    let mut by_key: BTreeMap<Key, Vec<Timed>> = BTreeMap::new();
    let mut last_time = 0;
    for (position, event) in history.events.iter().enumerate() {
        match *event {
            Event::Invoke { client, operation, time } => {
                assert!(time >= last_time, "event {position} at t={time} is before t={last_time}");
                last_time = time;
                let record = RecordedOperation {
                    client,
                    operation,
                    invoked_at: time,
                    completed_at: None,
                    outcome: Outcome::Unknown,
                };
                let timed = Timed { record, invoked: position, completed: None };
                let previous = open.insert(client, timed);
                assert!(previous.is_none(), "client {client} invoked twice at event {position}");
            }
            Event::Complete { client, outcome, time } => {
                assert!(time >= last_time, "event {position} at t={time} is before t={last_time}");
                last_time = time;
                let Some(mut timed) = open.remove(&client) else {
                    panic!("client {client} completed at event {position} with nothing open");
                };
                if let Outcome::Ok(result) = outcome {
                    assert_kind_matches(&timed.record.operation, &result);
                }
                timed.record.completed_at = Some(time);
                timed.record.outcome = outcome;
                timed.completed = Some(position);
                by_key.entry(timed.record.operation.key()).or_default().push(timed);
            }
        }
    }
    // Invocations still open when the history ends are unknown: they may yet take effect.
    for timed in open.into_values() {
        by_key.entry(timed.record.operation.key()).or_default().push(timed);
    }
    for operations in by_key.values_mut() {
        operations.sort_by_key(|timed| timed.invoked);
    }
    by_key
}

/// Asserts that an `Ok` result is of the kind its operation returns.
fn assert_kind_matches(operation: &Operation, result: &OperationResult) {
    let matches = matches!(
        (operation, result),
        (Operation::Put { .. }, OperationResult::Put)
            | (Operation::Delete { .. }, OperationResult::Delete)
            | (Operation::Get { .. }, OperationResult::Get(_))
            | (Operation::Cas { .. }, OperationResult::Cas(_))
    );
    assert!(matches, "{operation} completed with {result:?}");
}

/// One key's register, as far as the key's operations can tell (rule 5 of the module essay).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Register {
    /// No value: how every key starts.
    Absent,
    /// A value that some operation on the key reads or expects.
    Holds(Value),
    /// One of the values that no operation on the key reads or expects, which all behave alike.
    Unobservable,
}

impl Register {
    /// Whether the register holds `value`, as a get returns it or a `cas` expects it.
    fn is(self, value: Option<Value>) -> bool {
        match (self, value) {
            (Register::Absent, None) => true,
            (Register::Holds(held), Some(value)) => held == value,
            _ => false,
        }
    }
}

/// The sequential model of one key's register.
#[derive(Clone, Debug, Default)]
struct Model {
    /// Every value that an operation taking part in the search reads (an `Ok` get's result) or
    /// expects (a `cas`'s expected value). Any other value written is [`Register::Unobservable`].
    observed: HashSet<Value>,
}

impl Model {
    /// The model of a key whose search takes part `candidates`.
    fn new(candidates: &[Candidate]) -> Model {
        let observed = candidates
            .iter()
            .filter_map(|candidate| match (candidate.operation, candidate.result()) {
                (Operation::Get { .. }, Some(OperationResult::Get(seen))) => seen,
                (Operation::Cas { expected, .. }, _) => expected,
                _ => None,
            })
            .collect();
        Model { observed }
    }

    /// The register after `value` is written.
    fn written(&self, value: Value) -> Register {
        if self.observed.contains(&value) { Register::Holds(value) } else { Register::Unobservable }
    }

    /// Where `operation` takes the register from `register` when it returns `result` (`None`:
    /// unknown, any result will do); `None` if it cannot return `result` from there.
    fn apply(
        &self,
        operation: &Operation,
        result: Option<OperationResult>,
        register: Register,
    ) -> Option<Register> {
        match (*operation, result) {
            (Operation::Put { value, .. }, _) => Some(self.written(value)),
            (Operation::Delete { .. }, _) => Some(Register::Absent),
            (Operation::Get { .. }, Some(OperationResult::Get(seen))) => {
                register.is(seen).then_some(register)
            }
            (Operation::Get { .. }, _) => Some(register),
            (Operation::Cas { expected, new, .. }, None) => {
                Some(if register.is(expected) { self.written(new) } else { register })
            }
            (Operation::Cas { expected, new, .. }, Some(OperationResult::Cas(true))) => {
                register.is(expected).then(|| self.written(new))
            }
            (Operation::Cas { expected, .. }, Some(OperationResult::Cas(false))) => {
                (!register.is(expected)).then_some(register)
            }
            (Operation::Cas { .. }, Some(_)) => None,
        }
    }
}

/// A doubly linked list over the ids `0..capacity`, in a fixed order, from which ids are removed
/// and restored in last-out-first-in order (Knuth's dancing links): both take O(1), and a
/// restored id returns to exactly where it was.
#[derive(Debug)]
struct Links {
    /// The id after each id; `sentinel` after the last.
    next: Vec<usize>,
    /// The id before each id; `sentinel` before the first.
    previous: Vec<usize>,
    /// The list's head and tail marker, `capacity`: never removed.
    sentinel: usize,
}

impl Links {
    /// A list of `order`'s ids, in that order; every id is below `capacity`.
    fn new(order: &[usize], capacity: usize) -> Links {
        let sentinel = capacity;
        let mut next = vec![sentinel; capacity + 1];
        let mut previous = vec![sentinel; capacity + 1];
        let mut last = sentinel;
        for &id in order {
            assert!(id < capacity, "id {id} beyond capacity {capacity}");
            next[last] = id;
            previous[id] = last;
            last = id;
        }
        next[last] = sentinel;
        previous[sentinel] = last;
        Links { next, previous, sentinel }
    }

    /// The first id in the list.
    fn first(&self) -> Option<usize> {
        self.after(self.sentinel)
    }

    /// The id after `id`, which must be in the list (or be the sentinel).
    fn after(&self, id: usize) -> Option<usize> {
        let next = self.next[id];
        (next != self.sentinel).then_some(next)
    }

    /// Takes `id` out of the list; it keeps its own links for [`Links::restore`].
    fn remove(&mut self, id: usize) {
        let (previous, next) = (self.previous[id], self.next[id]);
        assert_eq!(self.next[previous], id, "removing {id}, which is not in the list");
        assert_eq!(self.previous[next], id, "removing {id}, which is not in the list");
        self.next[previous] = next;
        self.previous[next] = previous;
    }

    /// Puts `id` back where it was: it must be the id removed most recently.
    fn restore(&mut self, id: usize) {
        let (previous, next) = (self.previous[id], self.next[id]);
        assert_eq!(self.next[previous], next, "restoring {id} out of order");
        assert_eq!(self.previous[next], previous, "restoring {id} out of order");
        self.next[previous] = id;
        self.previous[next] = id;
    }
}

/// What a candidate must return, and by when.
#[derive(Clone, Copy, Debug)]
enum Expected {
    /// An `Ok` operation: exactly `result`, at a point before its completion.
    Ok {
        /// The result the client was told.
        result: OperationResult,
        /// The position of its completion among the history's events.
        completed: usize,
    },
    /// An unknown operation: any result, at any point after its invocation, or never.
    Unknown {
        /// Its bit in the set of linearized unknown operations.
        bit: usize,
        /// If it is a *blind write*, a put of a value no operation reads or expects: its rank
        /// among the key's blind writes, in invocation order (rule 5).
        blind: Option<usize>,
    },
}

/// An operation that takes part in one key's search (failed operations and unknown gets do
/// not).
#[derive(Clone, Copy, Debug)]
struct Candidate {
    /// Its index among the key's operations, for reports.
    index: usize,
    /// What it does.
    operation: Operation,
    /// The position of its invocation among the history's events.
    invoked: usize,
    /// What it must return, and by when.
    expected: Expected,
}

impl Candidate {
    /// The result it must return; `None` if it is unknown and may return anything.
    fn result(&self) -> Option<OperationResult> {
        match self.expected {
            Expected::Ok { result, .. } => Some(result),
            Expected::Unknown { .. } => None,
        }
    }

    /// Whether it is unknown.
    fn is_unknown(&self) -> bool {
        matches!(self.expected, Expected::Unknown { .. })
    }
}

/// One linearized operation on the search's stack, with what it replaced.
#[derive(Clone, Copy, Debug)]
struct Frame {
    /// The candidate linearized.
    candidate: usize,
    /// The register's value before it.
    state_before: Register,
    /// The restriction rule 2 placed on it (see [`Search::replaced`]).
    replaced_before: Option<Register>,
    /// The register's actual value before it (see [`Search::value`]).
    value_before: Option<Value>,
}

/// What identifies a configuration, apart from the unknown operations it has linearized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ConfigurationKey {
    /// The Zobrist hash of the linearized `Ok` operations.
    ok_hash: u128,
    /// The register's value.
    state: Register,
    /// The restriction rule 2 places on the next operation (see [`Search::replaced`]).
    replaced: Option<Register>,
}

/// The configuration with the most `Ok` operations placed that the search reached.
#[derive(Clone, Debug, Default)]
struct Deepest {
    /// How many `Ok` operations it places.
    placed: usize,
    /// Its order, as indexes among the key's operations.
    prefix: Vec<usize>,
    /// The register's value after it; `None` while absent.
    value: Option<Value>,
    /// The earliest-completing `Ok` operation not placed, as an index among the key's operations.
    due: usize,
    /// The operations that could come next, as indexes among the key's operations.
    candidates: Vec<usize>,
}

/// What an unknown write placed in the current configuration could be needed for by the next
/// operation (rule 2), gathered from the window.
#[derive(Clone, Debug, Default)]
struct Needs {
    /// Values that an operation in the window would read or swap from.
    values: Vec<Value>,
    /// Whether an operation in the window would read the key absent or swap from absent: an
    /// unknown delete could be needed.
    absent: bool,
    /// Whether a failed `cas` in the window expects the current value: any unknown write that
    /// replaces it could explain the failure.
    failed_cas_expects_current: bool,
}

impl Needs {
    /// Takes note of what `candidate`, in the window, could need, the current value being `state`.
    fn add(&mut self, candidate: &Candidate, state: Register) {
        match (candidate.operation, candidate.result()) {
            (Operation::Get { .. }, Some(OperationResult::Get(Some(value))))
            | (
                Operation::Cas { expected: Some(value), .. },
                Some(OperationResult::Cas(true)) | None,
            ) => {
                self.values.push(value);
            }
            (Operation::Get { .. }, Some(OperationResult::Get(None)))
            | (Operation::Cas { expected: None, .. }, Some(OperationResult::Cas(true)) | None) => {
                self.absent = true;
            }
            (Operation::Cas { expected, .. }, Some(OperationResult::Cas(false))) => {
                self.failed_cas_expects_current |= state.is(expected);
            }
            _ => {}
        }
    }

    /// Whether an unknown write taking the register to `state` could be needed next.
    fn could_need(&self, state: Register) -> bool {
        let holds_needed = match state {
            Register::Holds(value) => self.values.contains(&value),
            Register::Absent => self.absent,
            Register::Unobservable => false,
        };
        self.failed_cas_expects_current || holds_needed
    }
}

/// How one key's search ended.
#[derive(Debug)]
enum SearchEnd {
    /// Every `Ok` operation was placed in an order that explains all results.
    Linearizable,
    /// Every order failed; the deepest configuration reached explains why.
    NotLinearizable(Deepest),
    /// The step budget ran out.
    OutOfSteps,
}

/// The depth-first search over one key's configurations.
struct Search {
    /// The operations taking part, in invocation order; ids below are indexes into this.
    candidates: Vec<Candidate>,
    /// `Ok` operations not yet linearized, by invocation.
    ok_by_invocation: Links,
    /// Unknown operations not yet linearized, by invocation.
    unknown_by_invocation: Links,
    /// `Ok` operations not yet linearized, by completion: the first one bounds what may come next.
    ok_by_completion: Links,
    /// How many `Ok` operations take part.
    ok_total: usize,
    /// A random 128-bit key per candidate, XORed into `ok_hash` while an `Ok` one is linearized.
    zobrist: Vec<u128>,
    /// The configurations entered: for each key, the sets of linearized unknown operations
    /// seen with it, `words` words each, back to back, none a superset of another.
    visited: HashMap<ConfigurationKey, Vec<u64>>,
    /// The words in a set of unknown operations (at least one).
    words: usize,
    /// Configurations entered so far (operations linearized, counting again those linearized
    /// anew after backtracking); never above `max_steps`.
    steps: u64,
    /// The step budget.
    max_steps: u64,
    /// The linearized operations, in order, with what each replaced.
    stack: Vec<Frame>,
    /// How many `Ok` operations are on the stack.
    ok_placed: usize,
    /// The register's value after the stack.
    state: Register,
    /// If the last operation on the stack is unknown, the value it replaced: by rule 2 of the
    /// module essay, the next operation must be one that needs its effect.
    replaced: Option<Register>,
    /// The Zobrist hash of the `Ok` operations on the stack.
    ok_hash: u128,
    /// The unknown operations on the stack, as a bitset of `words` words.
    unknown_linearized: Vec<u64>,
    /// The register's model for this key.
    model: Model,
    /// How many blind writes are on the stack: always those of rank below this (rule 5).
    blind_placed: usize,
    /// Rule 3's forced read in the current configuration, if any; kept up to date by
    /// [`Search::refresh`].
    forced_read: Option<usize>,
    /// What an unknown write placed now could be needed for; kept up to date by
    /// [`Search::refresh`].
    needs: Needs,
    /// The register's actual value after the stack, which [`Register`] does not keep when no
    /// operation can observe it; `None` while absent. Kept along with the stack, for the report.
    value: Option<Value>,
    /// The most informative configuration reached, for the report.
    deepest: Deepest,
    /// How many frames at the bottom of the stack the deepest configuration's prefix shares with
    /// it: recording a deeper one copies only the frames above. (Copying the whole stack each
    /// time made a long linearizable history quadratic.)
    deepest_shared: usize,
}

impl Search {
    /// A search over one key's operations (in invocation order).
    fn new(operations: &[Timed], max_steps: u64) -> Search {
        let mut unknown_count = 0;
        let mut candidates: Vec<Candidate> = operations
            .iter()
            .enumerate()
            .filter_map(|(index, timed)| {
                let operation = timed.record.operation;
                let expected = match (timed.record.outcome, timed.completed) {
                    (Outcome::Ok(result), Some(completed)) => Expected::Ok { result, completed },
                    (Outcome::Ok(_), None) => unreachable!("an Ok outcome is a completion"),
                    (Outcome::Fail, _) => return None,
                    (Outcome::Unknown, _) if matches!(operation, Operation::Get { .. }) => {
                        return None;
                    }
                    (Outcome::Unknown, _) => {
                        unknown_count += 1;
                        Expected::Unknown { bit: unknown_count - 1, blind: None }
                    }
                };
                Some(Candidate { index, operation, invoked: timed.invoked, expected })
            })
            .collect();
        let model = Model::new(&candidates);
        let mut blind_count = 0;
        for candidate in &mut candidates {
            if let (Operation::Put { value, .. }, Expected::Unknown { blind, .. }) =
                (candidate.operation, &mut candidate.expected)
                && model.written(value) == Register::Unobservable
            {
                *blind = Some(blind_count);
                blind_count += 1;
            }
        }
        let capacity = candidates.len();
        let (unknown, ok): (Vec<usize>, Vec<usize>) =
            (0..capacity).partition(|&id| candidates[id].is_unknown());
        let mut ok_completing = ok.clone();
        ok_completing.sort_by_key(|&id| match candidates[id].expected {
            Expected::Ok { completed, .. } => completed,
            Expected::Unknown { .. } => unreachable!("partitioned out"),
        });
        // Fixed seed: a run's answer, like everything in the simulator, depends only on its input.
        let mut rng = Rng::new(0x6C69_6E65_6172_697A);
        let zobrist = (0..capacity)
            .map(|_| (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64()))
            .collect();
        let words = unknown_count.div_ceil(64).max(1);
        let mut search = Search {
            ok_by_invocation: Links::new(&ok, capacity),
            unknown_by_invocation: Links::new(&unknown, capacity),
            ok_by_completion: Links::new(&ok_completing, capacity),
            ok_total: ok.len(),
            candidates,
            zobrist,
            visited: HashMap::new(),
            words,
            steps: 0,
            max_steps,
            stack: Vec::new(),
            ok_placed: 0,
            state: Register::Absent,
            replaced: None,
            ok_hash: 0,
            unknown_linearized: vec![0; words],
            model,
            blind_placed: 0,
            forced_read: None,
            needs: Needs::default(),
            value: None,
            deepest: Deepest::default(),
            deepest_shared: 0,
        };
        search.refresh();
        search.remember();
        search.record_deepest();
        search
    }

    /// Runs the search to an answer or out of steps.
    fn run(&mut self) -> SearchEnd {
        // The candidate last tried in the current configuration: the next try starts after it.
        let mut tried = None;
        loop {
            if self.ok_by_completion.first().is_none() {
                assert_eq!(self.ok_placed, self.ok_total, "success with Ok operations left");
                return SearchEnd::Linearizable;
            }
            let Some(id) = self.next_candidate(tried) else {
                // Every way forward from here failed: undo the last step and try its successor.
                let Some(frame) = self.stack.pop() else {
                    return SearchEnd::NotLinearizable(std::mem::take(&mut self.deepest));
                };
                self.undo(frame);
                tried = Some(frame.candidate);
                continue;
            };
            tried = Some(id);
            if let Some(next_state) = self.try_step(id) {
                if self.steps == self.max_steps {
                    return SearchEnd::OutOfSteps;
                }
                self.steps += 1;
                self.step(id, next_state);
                tried = None;
            }
        }
    }

    /// The register's value after linearizing candidate `id` now, if the model allows it, the
    /// pruning rules keep it, and no configuration entered already dominates the one it leads to.
    fn try_step(&self, id: usize) -> Option<Register> {
        let candidate = self.candidates[id];
        if let Some(replaced) = self.replaced
            && !needs_unknown_before(&candidate, replaced)
        {
            return None; // Rule 2.
        }
        if let Expected::Unknown { blind: Some(rank), .. } = candidate.expected
            && rank != self.blind_placed
        {
            return None; // Rule 5: blind writes are placed in invocation order.
        }
        let next_state = self.model.apply(&candidate.operation, candidate.result(), self.state)?;
        let (key, extra_bit) = match candidate.expected {
            Expected::Ok { .. } => {
                let ok_hash = self.ok_hash ^ self.zobrist[id];
                (ConfigurationKey { ok_hash, state: next_state, replaced: None }, None)
            }
            // Rule 1: an unknown operation that changes nothing is left out.
            Expected::Unknown { .. } if next_state == self.state => return None,
            // Rule 2, looking ahead: nothing in the window (which an unknown operation does not
            // change) could go next, so the configuration would be a dead end.
            Expected::Unknown { .. } if !self.needs.could_need(next_state) => return None,
            Expected::Unknown { bit, .. } => {
                let replaced = Some(self.state);
                (ConfigurationKey { ok_hash: self.ok_hash, state: next_state, replaced }, Some(bit))
            }
        };
        (!self.dominated(key, extra_bit)).then_some(next_state)
    }

    /// Whether a configuration entered already dominates the one with `key` and the unknown
    /// operations linearized now plus `extra_bit` (rule 4): the same `Ok` operations, value
    /// and rule-2 restriction, and a subset of the unknown operations.
    fn dominated(&self, key: ConfigurationKey, extra_bit: Option<usize>) -> bool {
        let Some(sets) = self.visited.get(&key) else {
            return false;
        };
        let (extra_word, extra_mask) = extra_bit.map_or((0, 0), |bit| (bit / 64, 1 << (bit % 64)));
        sets.chunks(self.words).any(|set| {
            set.iter().zip(&self.unknown_linearized).enumerate().all(|(word, (set, linearized))| {
                let linearized =
                    if word == extra_word { linearized | extra_mask } else { *linearized };
                set & !linearized == 0
            })
        })
    }

    /// Records the current configuration as entered, dropping any recorded one it dominates.
    fn remember(&mut self) {
        let key =
            ConfigurationKey { ok_hash: self.ok_hash, state: self.state, replaced: self.replaced };
        let sets = self.visited.entry(key).or_default();
        if sets.chunks(self.words).any(|set| is_subset(&self.unknown_linearized, set)) {
            let kept: Vec<u64> = sets
                .chunks(self.words)
                .filter(|set| !is_subset(&self.unknown_linearized, set))
                .flatten()
                .copied()
                .collect();
            *sets = kept;
        }
        sets.extend_from_slice(&self.unknown_linearized);
    }

    /// The candidate to try after `tried` in the current configuration (`None`: from the
    /// start). If rule 3 forces a read, it is the only candidate. Otherwise `Ok` operations come
    /// first, then unknown ones, each in invocation order, up to the completion of the
    /// earliest-completing `Ok` operation not yet linearized.
    fn next_candidate(&self, tried: Option<usize>) -> Option<usize> {
        if let Some(forced) = self.forced_read {
            return tried.is_none().then_some(forced);
        }
        let bound = self.bound()?;
        let next = match tried {
            None => self.ok_by_invocation.first(),
            Some(id) if self.candidates[id].is_unknown() => self.unknown_by_invocation.after(id),
            Some(id) => self.ok_by_invocation.after(id),
        };
        let in_window = |id: &usize| self.candidates[*id].invoked < bound;
        match (next.filter(in_window), tried) {
            (Some(id), _) => Some(id),
            // Past the last unknown candidate: none left.
            (None, Some(id)) if self.candidates[id].is_unknown() => None,
            // Past the last Ok candidate: on to the unknown ones.
            (None, _) => self.unknown_by_invocation.first().filter(in_window),
        }
    }

    /// The completion of the earliest-completing `Ok` operation not yet linearized: only
    /// operations invoked before it may be linearized next. `None` once all are linearized.
    fn bound(&self) -> Option<usize> {
        let due = self.ok_by_completion.first()?;
        let Expected::Ok { completed, .. } = self.candidates[due].expected else {
            unreachable!("only Ok operations are listed by completion");
        };
        Some(completed)
    }

    /// Rule 3: in a configuration without a rule-2 restriction, the first `Ok` read (a get, or
    /// a `cas` that failed) that may be linearized next and whose result the current value
    /// explains.
    fn find_forced_read(&self) -> Option<usize> {
        if self.replaced.is_some() {
            return None;
        }
        let bound = self.bound()?;
        let mut next = self.ok_by_invocation.first();
        while let Some(id) = next.filter(|&id| self.candidates[id].invoked < bound) {
            let candidate = &self.candidates[id];
            let is_read = matches!(
                candidate.result(),
                Some(OperationResult::Get(_) | OperationResult::Cas(false))
            );
            let explained = self.model.apply(&candidate.operation, candidate.result(), self.state);
            if is_read && explained.is_some() {
                return Some(id);
            }
            next = self.ok_by_invocation.after(id);
        }
        None
    }

    /// Every operation that may be linearized next, whatever the rules say, for reports.
    fn window(&self) -> Vec<usize> {
        let Some(bound) = self.bound() else {
            return Vec::new();
        };
        let mut window = Vec::new();
        for list in [&self.ok_by_invocation, &self.unknown_by_invocation] {
            let mut next = list.first();
            while let Some(id) = next.filter(|&id| self.candidates[id].invoked < bound) {
                window.push(self.candidates[id].index);
                next = list.after(id);
            }
        }
        window.sort_unstable();
        window
    }

    /// Linearizes candidate `id`, which takes the register to `next_state`.
    fn step(&mut self, id: usize, next_state: Register) {
        self.stack.push(Frame {
            candidate: id,
            state_before: self.state,
            replaced_before: self.replaced,
            value_before: self.value,
        });
        self.value = value_after(&self.candidates[id], self.value);
        match self.candidates[id].expected {
            Expected::Ok { .. } => {
                self.ok_by_invocation.remove(id);
                self.ok_by_completion.remove(id);
                self.ok_placed += 1;
                self.ok_hash ^= self.zobrist[id];
                self.replaced = None;
            }
            Expected::Unknown { bit, blind } => {
                self.unknown_by_invocation.remove(id);
                self.unknown_linearized[bit / 64] |= 1 << (bit % 64);
                self.replaced = Some(self.state);
                if let Some(rank) = blind {
                    assert_eq!(rank, self.blind_placed, "blind write placed out of order");
                    self.blind_placed += 1;
                }
            }
        }
        self.state = next_state;
        self.refresh();
        self.remember();
        if self.ok_placed > self.deepest.placed {
            self.record_deepest();
        }
    }

    /// Takes the last linearized operation back off.
    fn undo(&mut self, frame: Frame) {
        let id = frame.candidate;
        match self.candidates[id].expected {
            Expected::Ok { .. } => {
                // Restored in the reverse order of removal, as dancing links require.
                self.ok_by_completion.restore(id);
                self.ok_by_invocation.restore(id);
                assert!(self.ok_placed > 0, "undoing an Ok operation with none placed");
                self.ok_placed -= 1;
                self.ok_hash ^= self.zobrist[id];
            }
            Expected::Unknown { bit, blind } => {
                self.unknown_by_invocation.restore(id);
                self.unknown_linearized[bit / 64] &= !(1 << (bit % 64));
                if let Some(rank) = blind {
                    assert!(self.blind_placed > 0, "undoing a blind write with none placed");
                    self.blind_placed -= 1;
                    assert_eq!(rank, self.blind_placed, "blind write undone out of order");
                }
            }
        }
        self.state = frame.state_before;
        self.replaced = frame.replaced_before;
        self.value = frame.value_before;
        self.deepest_shared = self.deepest_shared.min(self.stack.len());
        self.refresh();
    }

    /// Recomputes what depends on the window and the value: rule 3's forced read, and what an
    /// unknown write would be needed for. Called on entering or returning to a configuration.
    fn refresh(&mut self) {
        self.forced_read = self.find_forced_read();
        let mut needs = Needs::default();
        if let Some(bound) = self.bound() {
            for list in [&self.ok_by_invocation, &self.unknown_by_invocation] {
                let mut next = list.first();
                while let Some(id) = next.filter(|&id| self.candidates[id].invoked < bound) {
                    needs.add(&self.candidates[id], self.state);
                    next = list.after(id);
                }
            }
        }
        self.needs = needs;
    }

    /// Remembers the current configuration as the deepest, for the report.
    fn record_deepest(&mut self) {
        let index_of = |id: usize| self.candidates[id].index;
        let shared = self.deepest_shared.min(self.deepest.prefix.len());
        self.deepest.prefix.truncate(shared);
        let above = self.stack[shared..].iter().map(|frame| index_of(frame.candidate));
        self.deepest.prefix.extend(above);
        self.deepest_shared = self.stack.len();
        self.deepest.placed = self.ok_placed;
        self.deepest.value = self.value;
        self.deepest.due = self.ok_by_completion.first().map_or(0, index_of);
        self.deepest.candidates = self.window();
    }
}

/// The register's actual value after `candidate`, given the value before it: a plain register,
/// unlike [`Register`], which forgets values no operation can observe.
fn value_after(candidate: &Candidate, value: Option<Value>) -> Option<Value> {
    match (candidate.operation, candidate.result()) {
        (Operation::Put { value: written, .. }, _) => Some(written),
        (Operation::Delete { .. }, _) => None,
        (Operation::Cas { expected, new, .. }, Some(OperationResult::Cas(true)) | None)
            if value == expected =>
        {
            Some(new)
        }
        _ => value,
    }
}

/// Whether every bit of `small` is set in `large` (bitsets of equal length).
fn is_subset(small: &[u64], large: &[u64]) -> bool {
    small.iter().zip(large).all(|(small, large)| small & !large == 0)
}

/// Rule 2: whether `candidate`, linearized right after an unknown operation that replaced the
/// value `replaced`, could need that operation's effect. A put or a delete overwrites it unseen;
/// a failed `cas` that expected something other than `replaced` would have failed without it
/// and could have gone first. Every other candidate the model accepts reads the new value: a get that
/// returns it, a `cas` that swaps from it.
fn needs_unknown_before(candidate: &Candidate, replaced: Register) -> bool {
    match (candidate.operation, candidate.result()) {
        (Operation::Put { .. } | Operation::Delete { .. }, _) => false,
        (Operation::Cas { expected, .. }, Some(OperationResult::Cas(false))) => {
            replaced.is(expected)
        }
        _ => true,
    }
}

impl fmt::Display for RecordedOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let completed = self.completed_at.map_or("…".to_string(), |time| time.to_string());
        write!(
            f,
            "client {} {} t={}..{} ",
            self.client, self.operation, self.invoked_at, completed
        )?;
        let shown = |value: Option<Value>| value.map_or("absent".to_string(), |v| v.to_string());
        match self.outcome {
            Outcome::Ok(OperationResult::Put | OperationResult::Delete) => write!(f, "ok"),
            Outcome::Ok(OperationResult::Get(seen)) => write!(f, "→ {}", shown(seen)),
            Outcome::Ok(OperationResult::Cas(true)) => write!(f, "→ swapped"),
            Outcome::Ok(OperationResult::Cas(false)) => write!(f, "→ not swapped"),
            Outcome::Fail => write!(f, "failed"),
            Outcome::Unknown => write!(f, "unknown"),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |indexes: &[usize]| -> String {
            let names: Vec<String> = indexes.iter().map(|index| format!("#{index}")).collect();
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        };
        writeln!(
            f,
            "key {} is not linearizable: no order of its operations that respects real time \
             explains every result",
            self.key
        )?;
        writeln!(f, "operations, in invocation order (t=invoked..completed):")?;
        for (index, operation) in self.operations.iter().enumerate() {
            writeln!(f, "  #{index} {operation}")?;
        }
        let value = self.value_after_prefix.map_or("absent".to_string(), |v| v.to_string());
        writeln!(
            f,
            "longest linearizable prefix: {} (value afterwards: {value})",
            list(&self.longest_prefix)
        )?;
        write!(
            f,
            "then #{} (the earliest to complete of those left) must take effect before anything \
             invoked after its completion, but no continuation through the operations that could \
             come next ({}) explains every result",
            self.due_after_prefix,
            list(&self.candidates_after_prefix)
        )
    }
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Violation(violation) => write!(f, "{violation}"),
            CheckError::Inconclusive { key, steps } => {
                write!(f, "the linearizability check of key {key} gave up after {steps} steps")
            }
        }
    }
}

impl std::error::Error for Violation {}

impl std::error::Error for CheckError {}

#[cfg(test)]
mod tests;
