//! Tests of the linearizability checker: small histories known to be linearizable and known
//! not to be, property tests against a sequential model and a brute-force checker, and a
//! performance sanity check.
use super::*;
use proptest::prelude::*;
// Named, so that it wins over proptest's `Rng` trait from the glob import.
use skiff_raft::rng::Rng;

// ---- Hand-written histories ---------------------------------------------------------------

/// One operation of a hand-written history: who asked what, when, and how it ended.
struct Call {
    client: ClientId,
    operation: Operation,
    invoked: u64,
    /// `None`: the history ends before it completes.
    completed: Option<u64>,
    outcome: Outcome,
}

fn call(
    client: ClientId,
    operation: Operation,
    invoked: u64,
    completed: u64,
    outcome: Outcome,
) -> Call {
    Call { client, operation, invoked, completed: Some(completed), outcome }
}

/// An invocation still open when the history ends.
fn pending(client: ClientId, operation: Operation, invoked: u64) -> Call {
    Call { client, operation, invoked, completed: None, outcome: Outcome::Unknown }
}

fn put(key: Key, value: Value) -> Operation {
    Operation::Put { key, value }
}

fn get(key: Key) -> Operation {
    Operation::Get { key }
}

fn delete(key: Key) -> Operation {
    Operation::Delete { key }
}

fn cas(key: Key, expected: Option<Value>, new: Value) -> Operation {
    Operation::Cas { key, expected, new }
}

const DONE: Outcome = Outcome::Ok(OperationResult::Put);

fn saw(value: Option<Value>) -> Outcome {
    Outcome::Ok(OperationResult::Get(value))
}

fn swapped(swapped: bool) -> Outcome {
    Outcome::Ok(OperationResult::Cas(swapped))
}

/// The history of `calls`, events ordered by time; every time must be distinct so that the
/// order is the one written.
fn history_of(calls: &[Call]) -> History {
    let mut timed: Vec<(u64, Event)> = Vec::new();
    for call in calls {
        let Call { client, operation, invoked, completed, outcome } = *call;
        timed.push((invoked, Event::Invoke { client, operation, time: invoked }));
        if let Some(time) = completed {
            timed.push((time, Event::Complete { client, outcome, time }));
        }
    }
    timed.sort_by_key(|(time, _)| *time);
    let times: Vec<u64> = timed.iter().map(|(time, _)| *time).collect();
    assert!(times.windows(2).all(|pair| pair[0] < pair[1]), "repeated times: {times:?}");
    History { events: timed.into_iter().map(|(_, event)| event).collect() }
}

fn assert_linearizable(calls: &[Call]) {
    let history = history_of(calls);
    if let Err(violation) = check(&history) {
        panic!("expected linearizable, got:\n{violation}");
    }
}

fn assert_violation(calls: &[Call]) -> Violation {
    match check(&history_of(calls)) {
        Ok(()) => panic!("expected a violation, the history was found linearizable"),
        Err(violation) => violation,
    }
}

#[test]
fn empty_history_is_linearizable() {
    assert_eq!(check(&History::default()), Ok(()));
}

#[test]
fn sequential_history_is_linearizable() {
    assert_linearizable(&[
        call(1, get(1), 0, 1, saw(None)),
        call(1, put(1, 10), 2, 3, DONE),
        call(2, get(1), 4, 5, saw(Some(10))),
        call(2, put(1, 20), 6, 7, DONE),
        call(1, get(1), 8, 9, saw(Some(20))),
    ]);
}

#[test]
fn a_read_overlapping_a_write_may_see_either_value() {
    for seen in [None, Some(10)] {
        assert_linearizable(&[call(1, put(1, 10), 0, 10, DONE), call(2, get(1), 2, 8, saw(seen))]);
    }
}

#[test]
fn concurrent_writes_may_take_effect_in_either_order() {
    for last in [10, 20] {
        assert_linearizable(&[
            call(1, put(1, 10), 0, 10, DONE),
            call(2, put(1, 20), 1, 9, DONE),
            call(3, get(1), 11, 12, saw(Some(last))),
            call(3, get(1), 13, 14, saw(Some(last))),
        ]);
    }
}

#[test]
fn overlapping_reads_may_disagree_while_a_write_is_in_flight() {
    // r1 sees the new value, r2 the old, but r2 started before r1 ended: r2 goes first.
    assert_linearizable(&[
        call(1, put(1, 1), 0, 1, DONE),
        call(2, put(1, 2), 2, 20, DONE),
        call(3, get(1), 3, 6, saw(Some(2))),
        call(4, get(1), 5, 8, saw(Some(1))),
    ]);
}

#[test]
fn cas_succeeds_on_the_expected_value_and_fails_otherwise() {
    assert_linearizable(&[
        call(1, cas(1, None, 1), 0, 1, swapped(true)),
        call(1, cas(1, Some(1), 2), 2, 3, swapped(true)),
        call(2, cas(1, Some(1), 3), 4, 5, swapped(false)),
        call(2, cas(1, None, 4), 6, 7, swapped(false)),
        call(1, get(1), 8, 9, saw(Some(2))),
    ]);
}

#[test]
fn concurrent_cas_from_the_same_value_one_wins() {
    assert_linearizable(&[
        call(1, put(1, 1), 0, 1, DONE),
        call(2, cas(1, Some(1), 2), 2, 10, swapped(false)),
        call(3, cas(1, Some(1), 3), 3, 9, swapped(true)),
        call(1, get(1), 11, 12, saw(Some(3))),
    ]);
}

#[test]
fn an_unknown_write_may_be_observed_later() {
    assert_linearizable(&[
        call(1, put(1, 5), 0, 1, Outcome::Unknown),
        call(2, get(1), 2, 3, saw(None)),
        call(2, get(1), 4, 5, saw(Some(5))),
        call(2, get(1), 6, 7, saw(Some(5))),
    ]);
}

#[test]
fn an_open_invocation_may_take_effect_after_everything_else() {
    assert_linearizable(&[
        pending(1, put(1, 5), 0),
        call(2, put(1, 6), 1, 2, DONE),
        call(2, get(1), 3, 4, saw(Some(6))),
        call(2, get(1), 5, 6, saw(Some(5))),
    ]);
}

#[test]
fn a_delete_makes_the_key_absent_again() {
    const DELETED: Outcome = Outcome::Ok(OperationResult::Delete);
    assert_linearizable(&[
        call(1, put(1, 5), 0, 1, DONE),
        call(1, delete(1), 2, 3, DELETED),
        call(2, get(1), 4, 5, saw(None)),
        call(2, cas(1, None, 6), 6, 7, swapped(true)),
    ]);
    assert_violation(&[
        call(1, put(1, 5), 0, 1, DONE),
        call(1, delete(1), 2, 3, DELETED),
        call(2, get(1), 4, 5, saw(Some(5))),
    ]);
}

#[test]
fn an_unknown_delete_may_explain_a_later_absence() {
    assert_linearizable(&[
        call(1, put(1, 5), 0, 1, DONE),
        call(1, delete(1), 2, 3, Outcome::Unknown),
        call(2, get(1), 4, 5, saw(Some(5))),
        call(2, get(1), 6, 7, saw(None)),
        call(2, cas(1, None, 6), 8, 9, swapped(true)),
    ]);
    assert_violation(&[
        call(1, put(1, 5), 0, 1, DONE),
        call(2, get(1), 2, 3, saw(None)),
        call(1, delete(1), 4, 5, Outcome::Unknown),
    ]);
}

#[test]
fn an_unknown_write_may_never_take_effect() {
    assert_linearizable(&[
        call(1, put(1, 5), 0, 1, Outcome::Unknown),
        pending(3, put(1, 7), 2),
        call(2, get(1), 3, 4, saw(None)),
        call(2, get(1), 5, 6, saw(None)),
    ]);
}

#[test]
fn a_failed_write_never_observed_is_fine() {
    assert_linearizable(&[
        call(1, put(1, 5), 0, 1, Outcome::Fail),
        call(2, get(1), 2, 3, saw(None)),
    ]);
}

#[test]
fn an_unknown_cas_may_explain_a_later_value() {
    assert_linearizable(&[
        call(1, put(1, 1), 0, 1, DONE),
        call(2, cas(1, Some(1), 2), 2, 3, Outcome::Unknown),
        call(3, put(1, 9), 4, 5, Outcome::Unknown),
        call(1, get(1), 6, 7, saw(Some(1))),
        call(1, get(1), 8, 9, saw(Some(2))),
    ]);
}

#[test]
fn an_unknown_write_may_explain_a_failed_cas() {
    // Without the unknown put, the register holds 1 and the cas would have swapped.
    assert_linearizable(&[
        call(1, put(1, 1), 0, 1, DONE),
        call(2, put(1, 3), 2, 3, Outcome::Unknown),
        call(1, cas(1, Some(1), 2), 4, 5, swapped(false)),
    ]);
}

#[test]
fn unknown_writes_in_a_chain_may_all_take_effect() {
    // Each unknown cas needs the one before it: rule 2 must not cut the chain.
    assert_linearizable(&[
        call(1, put(1, 1), 0, 5, Outcome::Unknown),
        call(2, cas(1, Some(1), 2), 1, 6, Outcome::Unknown),
        call(3, cas(1, Some(2), 3), 2, 7, Outcome::Unknown),
        call(4, get(1), 8, 9, saw(Some(3))),
    ]);
}

#[test]
fn blind_writes_may_each_explain_a_failed_cas() {
    // No operation reads or expects 7 or 8: the two unknown puts are blind writes. Each
    // failed cas needs one to take effect just before it, and only the first was invoked
    // before the first cas.
    assert_linearizable(&[
        call(1, put(1, 1), 0, 1, DONE),
        pending(2, put(1, 7), 2),
        call(1, cas(1, Some(1), 2), 3, 4, swapped(false)),
        call(1, put(1, 1), 5, 6, DONE),
        pending(3, put(1, 8), 7),
        call(1, cas(1, Some(1), 3), 8, 9, swapped(false)),
    ]);
}

#[test]
fn a_blind_write_cannot_explain_a_failed_cas_before_its_invocation() {
    assert_violation(&[
        call(1, put(1, 1), 0, 1, DONE),
        call(1, cas(1, Some(1), 2), 2, 3, swapped(false)),
        pending(2, put(1, 7), 4),
    ]);
}

#[test]
fn keys_are_independent() {
    assert_linearizable(&[
        call(1, put(1, 10), 0, 1, DONE),
        call(2, put(2, 20), 2, 3, DONE),
        call(1, get(2), 4, 5, saw(Some(20))),
        call(2, get(1), 6, 7, saw(Some(10))),
        call(3, get(3), 8, 9, saw(None)),
    ]);
}

#[test]
fn a_stale_read_after_a_completed_write_is_a_violation() {
    let violation =
        assert_violation(&[call(1, put(1, 10), 0, 1, DONE), call(2, get(1), 2, 3, saw(None))]);
    assert_eq!(violation.key, 1);
    assert_eq!(violation.longest_prefix, vec![0]);
    assert_eq!(violation.value_after_prefix, Some(10));
    assert_eq!(violation.due_after_prefix, 1);
    assert_eq!(violation.candidates_after_prefix, vec![1]);
}

#[test]
fn a_read_of_a_value_never_written_is_a_violation() {
    assert_violation(&[call(1, put(1, 10), 0, 5, DONE), call(2, get(1), 1, 4, saw(Some(11)))]);
}

#[test]
fn an_observed_failed_write_is_a_violation() {
    assert_violation(&[
        call(1, put(1, 5), 0, 1, Outcome::Fail),
        call(2, get(1), 2, 3, saw(Some(5))),
    ]);
}

#[test]
fn an_unknown_write_observed_before_its_invocation_is_a_violation() {
    assert_violation(&[
        call(2, get(1), 0, 1, saw(Some(5))),
        call(1, put(1, 5), 2, 3, Outcome::Unknown),
    ]);
}

#[test]
fn two_sequential_cas_from_the_same_value_cannot_both_swap() {
    assert_violation(&[
        call(1, put(1, 1), 0, 1, DONE),
        call(1, cas(1, Some(1), 2), 2, 3, swapped(true)),
        call(2, cas(1, Some(1), 3), 4, 5, swapped(true)),
    ]);
}

#[test]
fn a_read_cannot_go_back_in_time() {
    // As in the overlapping case above, but r2 starts after r1 ends.
    let violation = assert_violation(&[
        call(1, put(1, 1), 0, 1, DONE),
        call(2, put(1, 2), 2, 20, DONE),
        call(3, get(1), 3, 4, saw(Some(2))),
        call(4, get(1), 5, 6, saw(Some(1))),
    ]);
    assert_eq!(violation.operations.len(), 4);
    assert_eq!(violation.longest_prefix, vec![0, 1, 2]);
}

#[test]
fn the_violating_key_is_named_among_good_ones() {
    let violation = assert_violation(&[
        call(1, put(1, 10), 0, 1, DONE),
        call(2, put(2, 20), 2, 3, DONE),
        call(1, get(2), 4, 5, saw(Some(21))),
        call(2, get(3), 6, 7, saw(None)),
    ]);
    assert_eq!(violation.key, 2);
    let operations: Vec<Operation> = violation.operations.iter().map(|o| o.operation).collect();
    assert_eq!(operations, vec![put(2, 20), get(2)]);
    let report = violation.to_string();
    assert!(report.contains("key 2 is not linearizable"), "{report}");
    assert!(report.contains("#1 client 1 get k2 t=4..5 → 21"), "{report}");
    assert!(report.contains("longest linearizable prefix: #0 (value afterwards: 20)"), "{report}");
}

#[test]
fn the_report_gives_the_actual_value_even_when_no_operation_reads_it() {
    let violation =
        assert_violation(&[call(1, put(1, 5), 0, 1, DONE), call(2, get(1), 2, 3, saw(Some(7)))]);
    assert_eq!(violation.longest_prefix, vec![0]);
    assert_eq!(violation.value_after_prefix, Some(5));
}

#[test]
fn events_at_the_same_time_keep_their_recorded_order() {
    // The write is acknowledged before the read is invoked, both at t=5.
    let history = History {
        events: vec![
            Event::Invoke { client: 1, operation: put(1, 1), time: 0 },
            Event::Complete { client: 1, outcome: DONE, time: 5 },
            Event::Invoke { client: 2, operation: get(1), time: 5 },
            Event::Complete { client: 2, outcome: saw(None), time: 6 },
        ],
    };
    assert!(check(&history).is_err());
}

#[test]
fn a_search_out_of_steps_is_inconclusive() {
    let history = history_of(&[
        call(1, put(1, 1), 0, 10, DONE),
        call(2, put(1, 2), 1, 11, DONE),
        call(3, get(1), 12, 13, saw(Some(1))),
    ]);
    assert_eq!(check_with_budget(&history, 1), Err(CheckError::Inconclusive { key: 1, steps: 1 }));
    assert_eq!(check_with_budget(&history, 100), Ok(()));
}

#[test]
#[should_panic(expected = "with nothing open")]
fn a_completion_without_an_invocation_is_a_bug() {
    let history = History { events: vec![Event::Complete { client: 1, outcome: DONE, time: 0 }] };
    let _ = check(&history);
}

// ---- Generated histories ------------------------------------------------------------------

/// Where one generated client is in its current operation.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// No operation open.
    Idle,
    /// Invoked, not yet taken effect.
    Invoked(Operation),
    /// Taken effect with this result, not yet answered.
    Applied(OperationResult),
}

/// A linearizable history: `clients` clients run `operations` operations over `keys` keys
/// on a sequential register map, each taking effect at a random instant between its
/// invocation and its completion. Some fail before taking effect, some end unknown (before
/// or after taking effect), and some are still open at the end. Values written are unique
/// and start at 1.
fn generate(seed: u64, operations: usize, clients: usize, keys: u64) -> History {
    let mut rng = Rng::new(seed);
    let mut map: BTreeMap<Key, Value> = BTreeMap::new();
    let mut phases = vec![Phase::Idle; clients];
    let mut history = History::default();
    let (mut invoked, mut next_value, mut time) = (0, 1, 0);
    loop {
        let all_idle = phases.iter().all(|phase| matches!(phase, Phase::Idle));
        if invoked == operations && (all_idle || rng.between(0, 8) == 0) {
            return history;
        }
        time += rng.between(0, 3);
        let client = rng.between(0, clients as u64);
        let phase = &mut phases[client as usize];
        let complete = |outcome| Event::Complete { client, outcome, time };
        match *phase {
            Phase::Idle if invoked < operations => {
                let key = rng.between(0, keys);
                let operation = match rng.between(0, 4) {
                    0 => put(key, next_value),
                    1 => get(key),
                    2 => delete(key),
                    _ => {
                        let expected = match rng.between(0, 4) {
                            0 => None,
                            1 => Some(rng.between(1, next_value + 1)),
                            _ => map.get(&key).copied(),
                        };
                        cas(key, expected, next_value)
                    }
                };
                next_value += 1;
                invoked += 1;
                history.events.push(Event::Invoke { client, operation, time });
                *phase = Phase::Invoked(operation);
            }
            Phase::Idle => {}
            Phase::Invoked(operation) => match rng.between(0, 100) {
                0..4 => {
                    history.events.push(complete(Outcome::Fail));
                    *phase = Phase::Idle;
                }
                4..7 => {
                    history.events.push(complete(Outcome::Unknown));
                    *phase = Phase::Idle;
                }
                _ => *phase = Phase::Applied(take_effect(&mut map, operation)),
            },
            Phase::Applied(result) => {
                let outcome =
                    if rng.between(0, 100) < 3 { Outcome::Unknown } else { Outcome::Ok(result) };
                history.events.push(complete(outcome));
                *phase = Phase::Idle;
            }
        }
    }
}

/// Performs `operation` on the sequential map and returns its result.
fn take_effect(map: &mut BTreeMap<Key, Value>, operation: Operation) -> OperationResult {
    match operation {
        Operation::Put { key, value } => {
            map.insert(key, value);
            OperationResult::Put
        }
        Operation::Get { key } => OperationResult::Get(map.get(&key).copied()),
        Operation::Delete { key } => {
            map.remove(&key);
            OperationResult::Delete
        }
        Operation::Cas { key, expected, new } => {
            let swaps = map.get(&key).copied() == expected;
            if swaps {
                map.insert(key, new);
            }
            OperationResult::Cas(swaps)
        }
    }
}

/// `history` with one `Ok` read, chosen by `choice`, now seeing a value never written.
fn corrupt_a_read(history: &History, choice: usize) -> Option<History> {
    let reads: Vec<usize> = (0..history.events.len())
        .filter(|&position| {
            matches!(
                history.events[position],
                Event::Complete { outcome: Outcome::Ok(OperationResult::Get(_)), .. }
            )
        })
        .collect();
    let position = *reads.get(choice % reads.len().max(1))?;
    let mut corrupted = history.clone();
    if let Event::Complete { outcome, .. } = &mut corrupted.events[position] {
        *outcome = saw(Some(Value::MAX));
    }
    Some(corrupted)
}

/// Whether some order of the `Ok` operations and a subset of the unknown ones, respecting
/// real time, explains every result: by trying every subset and every permutation. For
/// single-key histories of a handful of operations; shares no code with the checker.
fn brute_force(history: &History) -> bool {
    // (operation, result or None if unknown, invocation position, completion position)
    let mut operations: Vec<(Operation, Option<OperationResult>, usize, usize)> = Vec::new();
    let mut open: BTreeMap<ClientId, (Operation, usize)> = BTreeMap::new();
    for (position, event) in history.events.iter().enumerate() {
        match *event {
            Event::Invoke { client, operation, .. } => {
                open.insert(client, (operation, position));
            }
            Event::Complete { client, outcome, .. } => {
                let (operation, invoked) = open.remove(&client).expect("invoked before");
                match outcome {
                    Outcome::Ok(result) => {
                        operations.push((operation, Some(result), invoked, position))
                    }
                    Outcome::Fail => {}
                    Outcome::Unknown => operations.push((operation, None, invoked, usize::MAX)),
                }
            }
        }
    }
    operations
        .extend(open.values().map(|&(operation, invoked)| (operation, None, invoked, usize::MAX)));
    let unknown: Vec<usize> =
        (0..operations.len()).filter(|&i| operations[i].1.is_none()).collect();
    (0..1usize << unknown.len()).any(|mask| {
        let chosen: Vec<usize> = (0..operations.len())
            .filter(|i| match unknown.iter().position(|u| u == i) {
                Some(bit) => mask & (1 << bit) != 0,
                None => true,
            })
            .collect();
        some_order_explains(&operations, &chosen, &mut Vec::new(), None)
    })
}

fn some_order_explains(
    operations: &[(Operation, Option<OperationResult>, usize, usize)],
    chosen: &[usize],
    order: &mut Vec<usize>,
    value: Option<Value>,
) -> bool {
    if order.len() == chosen.len() {
        return true;
    }
    for &next in chosen {
        if order.contains(&next) {
            continue;
        }
        // `next` may not follow an operation invoked after `next` completed.
        if order.iter().any(|&earlier| operations[next].3 < operations[earlier].2) {
            continue;
        }
        let (operation, result, _, _) = operations[next];
        let after = match (operation, result) {
            (Operation::Put { value: written, .. }, None | Some(OperationResult::Put)) => {
                Some(Some(written))
            }
            (Operation::Delete { .. }, None | Some(OperationResult::Delete)) => Some(None),
            (Operation::Get { .. }, None) => Some(value),
            (Operation::Get { .. }, Some(OperationResult::Get(seen))) if seen == value => {
                Some(value)
            }
            (Operation::Cas { expected, new, .. }, result) => {
                let swaps = value == expected;
                let after = if swaps { Some(new) } else { value };
                match result {
                    None => Some(after),
                    Some(OperationResult::Cas(claimed)) if claimed == swaps => Some(after),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(after) = after {
            order.push(next);
            if some_order_explains(operations, chosen, order, after) {
                return true;
            }
            order.pop();
        }
    }
    false
}

/// A small single-key history with arbitrary results: linearizable or not.
fn arbitrary_small_history(seed: u64, operations: u64) -> History {
    let mut rng = Rng::new(seed);
    let mut events: Vec<(u64, u64, Event)> = Vec::new();
    for client in 0..operations {
        let value = |rng: &mut Rng| rng.between(1, 4);
        let maybe = |rng: &mut Rng| {
            if rng.between(0, 4) == 0 { None } else { Some(value(rng)) }
        };
        let (operation, result) = match rng.between(0, 4) {
            0 => (put(0, value(&mut rng)), OperationResult::Put),
            1 => (get(0), OperationResult::Get(maybe(&mut rng))),
            2 => (delete(0), OperationResult::Delete),
            _ => (
                cas(0, maybe(&mut rng), value(&mut rng)),
                OperationResult::Cas(rng.between(0, 2) == 0),
            ),
        };
        let invoked = rng.between(0, 12);
        events.push((invoked, rng.next_u64(), Event::Invoke { client, operation, time: invoked }));
        let completed = invoked + rng.between(1, 8);
        let outcome = match rng.between(0, 20) {
            0..12 => Outcome::Ok(result),
            12..15 => Outcome::Fail,
            15..18 => Outcome::Unknown,
            _ => continue, // still open at the end
        };
        events.push((
            completed,
            rng.next_u64(),
            Event::Complete { client, outcome, time: completed },
        ));
    }
    events.sort_by_key(|&(time, tiebreak, _)| (time, tiebreak));
    History { events: events.into_iter().map(|(_, _, event)| event).collect() }
}

proptest! {
    #[test]
    fn histories_of_a_sequential_model_are_linearizable(
        seed in any::<u64>(),
        operations in 1usize..300,
        clients in 1usize..10,
        keys in 1u64..4,
    ) {
        let history = generate(seed, operations, clients, keys);
        let verdict = check(&history);
        prop_assert!(verdict.is_ok(), "{}", verdict.err().map(|v| v.to_string()).unwrap_or_default());
    }

    #[test]
    fn a_read_of_a_value_never_written_is_caught(
        seed in any::<u64>(),
        operations in 20usize..300,
        clients in 1usize..10,
        keys in 1u64..4,
        choice in any::<usize>(),
    ) {
        let history = generate(seed, operations, clients, keys);
        let corrupted = corrupt_a_read(&history, choice);
        prop_assume!(corrupted.is_some());
        let corrupted = corrupted.expect("assumed");
        prop_assert!(check(&corrupted).is_err());
    }
}

proptest! {
    // Small histories are cheap, and the pruning rules are where a checker hides its bugs.
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    #[test]
    fn the_checker_agrees_with_brute_force(seed in any::<u64>(), operations in 1u64..8) {
        let history = arbitrary_small_history(seed, operations);
        prop_assert_eq!(check(&history).is_ok(), brute_force(&history), "{:?}", history);
    }
}

#[test]
fn a_long_history_checks_well_within_the_default_budget() {
    // 2,000 operations over 5 keys with 8 clients take under 1,000 steps per key, so a
    // fiftieth of the default budget leaves room; this catches the search slowing down.
    let budget = DEFAULT_STEP_BUDGET / 50;
    for seed in 0..4 {
        let history = generate(seed, 2_000, 8, 5);
        assert_eq!(check_with_budget(&history, budget), Ok(()), "seed {seed}");
        let corrupted = corrupt_a_read(&history, seed as usize).expect("a long history has reads");
        let verdict = check_with_budget(&corrupted, budget);
        assert!(matches!(verdict, Err(CheckError::Violation(_))), "seed {seed}: {verdict:?}");
    }
}
