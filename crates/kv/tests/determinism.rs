//! The store is a deterministic function of the log: the laws every replica relies on.
//!
//! - Two stores applying the same entries end equal (and write byte-identical snapshots).
//! - A store restored from a snapshot at any point, then fed the rest of the log, ends equal to
//!   one that never snapshotted.
//! - A clone of a store (what a snapshot is written from) stays the store as it was while the
//!   original applies more, and neither changes the other.
//!
//! The generated logs are small on purpose: a few keys, a few clients, a low session bound, and
//! sequences that repeat and go backwards, so that CAS matches, retries, stale writes and
//! session evictions all happen often.

use bytes::Bytes;
use proptest::prelude::*;
use skiff_kv::{Command, Op, Session, Store};

/// One log entry: a command's bytes (perhaps damaged), or no command (a leader's no-op).
#[derive(Clone, Debug)]
enum Entry {
    Command(Bytes),
    NoOp,
}

fn key() -> impl Strategy<Value = Bytes> {
    (0u8..4).prop_map(|key| Bytes::from(vec![b'k', b'0' + key]))
}

fn value() -> impl Strategy<Value = Bytes> {
    (0u8..3).prop_map(|value| Bytes::from(vec![b'v', b'0' + value]))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (key(), value()).prop_map(|(key, value)| Op::Put { key, value }),
        key().prop_map(|key| Op::Delete { key }),
        (key(), prop::option::of(value()), prop::option::of(value()))
            .prop_map(|(key, expected, value)| Op::Cas { key, expected, value }),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    let session = prop::option::of((0u64..5, 0u64..6))
        .prop_map(|session| session.map(|(client, sequence)| Session { client, sequence }));
    let command = (session, op()).prop_map(|(session, op)| Command { session, op }.encode());
    prop_oneof![
        8 => command.prop_map(Entry::Command),
        1 => Just(Entry::NoOp),
        1 => prop::collection::vec(any::<u8>(), 0..8)
            .prop_map(|bytes| Entry::Command(bytes.into())),
    ]
}

/// Applies `entries` to `store`, the first at `first_index`, and returns the outcomes.
fn apply_all(store: &mut Store, first_index: u64, entries: &[Entry]) -> Vec<skiff_kv::Outcome> {
    let mut outcomes = Vec::new();
    for (offset, entry) in entries.iter().enumerate() {
        let index = first_index + offset as u64;
        match entry {
            Entry::Command(bytes) => outcomes.push(store.apply(index, bytes)),
            Entry::NoOp => store.skip(index),
        }
    }
    outcomes
}

fn snapshot_of(store: &Store) -> Vec<u8> {
    let mut out = Vec::new();
    store.write_snapshot(&mut out).expect("writing to a Vec cannot fail");
    out
}

proptest! {
    #[test]
    fn two_stores_applying_the_same_log_end_identical(
        entries in prop::collection::vec(entry(), 0..200),
    ) {
        let mut first = Store::with_max_sessions(3);
        let mut second = Store::with_max_sessions(3);
        let first_outcomes = apply_all(&mut first, 1, &entries);
        let second_outcomes = apply_all(&mut second, 1, &entries);
        prop_assert_eq!(first_outcomes, second_outcomes);
        prop_assert_eq!(snapshot_of(&first), snapshot_of(&second));
        prop_assert_eq!(first, second);
    }

    #[test]
    fn snapshot_restore_continue_equals_never_snapshotted(
        entries in prop::collection::vec(entry(), 0..200),
        split in any::<prop::sample::Index>(),
    ) {
        let split = split.index(entries.len() + 1);
        let mut never = Store::with_max_sessions(3);
        let never_outcomes = apply_all(&mut never, 1, &entries);

        let mut before = Store::with_max_sessions(3);
        let mut outcomes = apply_all(&mut before, 1, &entries[..split]);
        let snapshot = snapshot_of(&before);
        let mut restored = Store::restore(&mut &snapshot[..]).expect("a fresh snapshot restores");
        prop_assert_eq!(&restored, &before);
        outcomes.extend(apply_all(&mut restored, split as u64 + 1, &entries[split..]));

        prop_assert_eq!(outcomes, never_outcomes);
        prop_assert_eq!(restored, never);
    }
}

/// A put, delete or compare-and-swap over many keys: enough that the store's maps span many
/// tree nodes, some shared with a view and some not.
fn wide_entry() -> impl Strategy<Value = Entry> {
    let key = (0u16..2_000).prop_map(|key| Bytes::from(format!("key-{key:04}")));
    let value = (0u8..3).prop_map(|value| Bytes::from(vec![b'v', b'0' + value]));
    let op = prop_oneof![
        4 => (key.clone(), value.clone()).prop_map(|(key, value)| Op::Put { key, value }),
        1 => key.clone().prop_map(|key| Op::Delete { key }),
        1 => (key, prop::option::of(value.clone()), prop::option::of(value))
            .prop_map(|(key, expected, value)| Op::Cas { key, expected, value }),
    ];
    let session = prop::option::of((0u64..200, 0u64..6))
        .prop_map(|session| session.map(|(client, sequence)| Session { client, sequence }));
    (session, op).prop_map(|(session, op)| Entry::Command(Command { session, op }.encode()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A snapshot is written from a clone while the store goes on applying: the clone must
    /// stay the store as it was, and the store must not notice the clone.
    #[test]
    fn a_clone_is_a_point_in_time_view_the_store_s_later_applies_do_not_change(
        entries in prop::collection::vec(wide_entry(), 0..3_000),
        split in any::<prop::sample::Index>(),
    ) {
        let split = split.index(entries.len() + 1);
        let mut store = Store::with_max_sessions(100);
        apply_all(&mut store, 1, &entries[..split]);
        let expected_view = snapshot_of(&store);
        let view = store.clone();
        let mut untouched = store.clone();
        apply_all(&mut store, split as u64 + 1, &entries[split..]);

        prop_assert_eq!(snapshot_of(&view), expected_view);
        prop_assert_eq!(view.applied(), split as u64);
        let mut never_cloned = Store::with_max_sessions(100);
        apply_all(&mut never_cloned, 1, &entries);
        prop_assert_eq!(snapshot_of(&store), snapshot_of(&never_cloned));
        prop_assert_eq!(&store, &never_cloned);
        // The view, fed the same tail, becomes the same store: sharing went both ways safely.
        apply_all(&mut untouched, split as u64 + 1, &entries[split..]);
        prop_assert_eq!(untouched, never_cloned);
    }
}
