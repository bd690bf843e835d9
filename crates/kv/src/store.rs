//! The store: an ordered map of keys to values, changed only by applying log entries.
//!
//! [`Store::apply`] takes a committed log entry's index and command bytes, decodes the
//! [`Command`], consults the client's session (see `session.rs`), performs the [`Op`] and
//! returns its [`Outcome`], which the node that proposed the entry hands to the waiting
//! client. Entries that carry no command (a new leader's no-op, Raft §8; membership changes)
//! still advance the applied index, through [`Store::skip`], so that [`Store::applied`] always
//! names the last log entry whose effect the store contains.
//!
//! Every write records its log index in the [`Value`] it sets, as the value's revision: a
//! client can tell two writes of the same bytes apart, and a reader can tell how fresh a value
//! is against the applied index.
//!
//! Cost: applying is `O(log n)` in the number of keys plus `O(log s)` in the number of
//! sessions; values are [`Bytes`], so a scan or a recorded outcome shares them instead of
//! copying.
//!
//! ## Point-in-time views
//! The maps are persistent B-trees (`imbl::OrdMap`): their nodes are reference-counted and
//! shared between copies, so **cloning a store is `O(1)`**, whatever its size, and the clone
//! is a view of the store at that moment that later applies do not change. That is what a
//! snapshot is written from, on another thread, while the original goes on applying entries: the
//! copy-on-write that Raft §7 suggests so that writing a snapshot does not delay normal
//! operation. The price is paid by writes, and only while a view is alive:
//! the first write to a node still shared with a view copies that node and the path above it
//! (a few dozen entries, each a pointer to shared [`Bytes`]), after which the node is the
//! store's own again. With no view alive a write mutates in place, as a `BTreeMap` does.

use std::ops::Bound;

use bytes::Bytes;
use imbl::OrdMap;

use crate::key::Key;
use crate::session::{Admission, SessionRecord, Sessions};
use crate::{Command, DEFAULT_MAX_SESSIONS, Op};

/// What applying a log entry did, for the client that proposed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The put set the key.
    Put,
    /// The delete ran.
    Deleted {
        /// Whether the key existed (and so was removed).
        existed: bool,
    },
    /// The compare-and-swap matched and set (or deleted) the key.
    CasSucceeded,
    /// The compare-and-swap did not match: nothing changed.
    CasFailed {
        /// The key's value when the swap was tried; `None`: the key was absent.
        current: Option<Bytes>,
    },
    /// The session's sequence is older than the client's last applied one: nothing changed.
    StaleSequence {
        /// The client's last applied sequence.
        last: u64,
    },
    /// The entry did not decode: nothing changed (the reason says why).
    Invalid {
        /// The [`DecodeError`](crate::DecodeError), as a sentence.
        reason: String,
    },
}

/// A key's value, and the write that set it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// The bytes, at most [`MAX_VALUE_BYTES`](crate::MAX_VALUE_BYTES).
    pub data: Bytes,
    /// The log index of the write that set it: at least 1, at most [`Store::applied`].
    pub revision: u64,
}

/// The replicated key-value state machine: data, client sessions and the applied index.
///
/// Two stores that applied the same entries are equal (`==`), whatever else happened.
/// `clone()` is `O(1)` and gives an independent point-in-time view (see the module
/// documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    /// The keys and their values, in key order (a persistent map: cloning it is `O(1)`).
    pub(crate) data: OrdMap<Key, Value>,
    /// The client sessions, bounded.
    pub(crate) sessions: Sessions,
    /// The index of the last log entry applied or skipped; 0 before the first.
    pub(crate) applied: u64,
    /// The sum of the lengths of all keys and values in `data`.
    pub(crate) data_bytes: u64,
}

impl Default for Store {
    fn default() -> Store {
        Store::new()
    }
}

impl Store {
    /// An empty store keeping at most [`DEFAULT_MAX_SESSIONS`] client sessions.
    pub fn new() -> Store {
        Store::with_max_sessions(DEFAULT_MAX_SESSIONS)
    }

    /// An empty store keeping at most `max` client sessions (see `session.rs` for what the
    /// bound costs). Every node of a cluster must use the same bound, or their sessions, and
    /// so their answers to retries, diverge; a snapshot carries it.
    ///
    /// # Panics
    /// If `max` is 0.
    pub fn with_max_sessions(max: usize) -> Store {
        Store { data: OrdMap::new(), sessions: Sessions::new(max), applied: 0, data_bytes: 0 }
    }

    /// Applies the command in the log entry at `index` (must be > applied(); assert it).
    /// A retried write (same client, same sequence as the client's last applied) changes nothing
    /// and returns the recorded Outcome of the first application.
    ///
    /// Bytes that do not decode change nothing but the applied index, and give
    /// [`Outcome::Invalid`], on every node alike.
    pub fn apply(&mut self, index: u64, command: &[u8]) -> Outcome {
        self.advance(index);
        let command = match Command::decode(command) {
            Ok(command) => command,
            Err(error) => return Outcome::Invalid { reason: error.to_string() },
        };
        let Some(session) = command.session else {
            return self.execute(index, command.op);
        };
        match self.sessions.admit(session, index) {
            Admission::Apply => {
                let outcome = self.execute(index, command.op);
                self.sessions.record(session, index, outcome.clone());
                outcome
            }
            Admission::Retry(outcome) => outcome,
            Admission::Stale { last } => Outcome::StaleSequence { last },
        }
    }

    /// Advances applied() over a log entry that carries no command (a leader's no-op).
    pub fn skip(&mut self, index: u64) {
        self.advance(index);
    }

    /// The index of the last log entry applied or skipped; 0 before the first.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The value of `key`, if it has one.
    pub fn get(&self, key: &[u8]) -> Option<&Value> {
        self.data.get(key)
    }

    /// Keys starting with `prefix`, in key order, at most `limit`; the bool says whether more
    /// matched. Values are shared ([`Bytes`]), not copied.
    pub fn scan(&self, prefix: &[u8], limit: usize) -> (Vec<(Bytes, Value)>, bool) {
        let mut matching = self
            .data
            .range::<_, [u8]>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.as_bytes().starts_with(prefix));
        let found: Vec<(Bytes, Value)> = matching
            .by_ref()
            .take(limit)
            .map(|(key, value)| (key.to_bytes(), value.clone()))
            .collect();
        let more = matching.next().is_some();
        (found, more)
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there are no keys (sessions and the applied index do not count).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Bytes of keys+values held (for metrics).
    pub fn data_bytes(&self) -> u64 {
        self.data_bytes
    }

    /// The session of `client`, if the store has one: its last applied sequence, that write's
    /// outcome and the index it was applied at. A driver answering a retry (which
    /// [`Store::apply`] answers with the first attempt's [`Outcome`]) takes the revision to
    /// report from here, since the retry's own index wrote nothing.
    pub fn session(&self, client: u64) -> Option<&SessionRecord> {
        self.sessions.get(client)
    }

    /// Every client session, in client order: for tools, and for a state digest that covers
    /// the sessions as well as the data (the simulator compares replicas with one).
    pub fn sessions(&self) -> impl ExactSizeIterator<Item = (u64, &SessionRecord)> {
        self.sessions.iter()
    }

    /// The number of client sessions held.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The most client sessions the store keeps.
    pub fn max_sessions(&self) -> usize {
        self.sessions.max()
    }

    /// Moves the applied index to `index`, which must be past it: an entry applied twice or
    /// out of order would fork this node's state from the others'.
    fn advance(&mut self, index: u64) {
        assert!(
            index > self.applied,
            "log entry {index} applied at or before the applied index {}",
            self.applied
        );
        self.applied = index;
    }

    /// Performs a decoded operation at log index `index`.
    fn execute(&mut self, index: u64, op: Op) -> Outcome {
        match op {
            Op::Put { key, value } => {
                self.put(index, key, value);
                Outcome::Put
            }
            Op::Delete { key } => Outcome::Deleted { existed: self.remove(&key) },
            Op::Cas { key, expected, value } => {
                let current = self.data.get(key.as_ref()).map(|current| &current.data);
                if current != expected.as_ref() {
                    return Outcome::CasFailed { current: current.cloned() };
                }
                match value {
                    Some(value) => self.put(index, key, value),
                    None => {
                        self.remove(&key);
                    }
                }
                Outcome::CasSucceeded
            }
        }
    }

    /// Sets `key` to `data` at revision `index`.
    fn put(&mut self, index: u64, key: Bytes, data: Bytes) {
        let added = data.len() as u64;
        let key_bytes = key.len() as u64;
        match self.data.insert(Key::new(key), Value { data, revision: index }) {
            None => self.data_bytes += key_bytes + added,
            Some(previous) => {
                assert!(
                    previous.revision < index,
                    "revision {} not before {index}",
                    previous.revision
                );
                self.data_bytes -= previous.data.len() as u64;
                self.data_bytes += added;
            }
        }
    }

    /// Removes `key`; whether it existed.
    fn remove(&mut self, key: &[u8]) -> bool {
        let Some((key, value)) = self.data.remove_with_key(key) else {
            return false;
        };
        let removed = (key.len() + value.data.len()) as u64;
        self.data_bytes =
            self.data_bytes.checked_sub(removed).expect("data_bytes counts every key");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Session;

    fn put(key: &str, value: &str) -> Op {
        Op::Put {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    fn delete(key: &str) -> Op {
        Op::Delete { key: Bytes::copy_from_slice(key.as_bytes()) }
    }

    fn cas(key: &str, expected: Option<&str>, value: Option<&str>) -> Op {
        let bytes = |text: &str| Bytes::copy_from_slice(text.as_bytes());
        Op::Cas { key: bytes(key), expected: expected.map(bytes), value: value.map(bytes) }
    }

    fn plain(op: Op) -> Bytes {
        Command { session: None, op }.encode()
    }

    fn with_session(client: u64, sequence: u64, op: Op) -> Bytes {
        Command { session: Some(Session { client, sequence }), op }.encode()
    }

    fn value_of(store: &Store, key: &str) -> Option<(String, u64)> {
        let value = store.get(key.as_bytes())?;
        Some((
            String::from_utf8(value.data.to_vec()).expect("test values are UTF-8"),
            value.revision,
        ))
    }

    #[test]
    fn put_sets_and_overwrites_with_the_revision_of_the_write() {
        let mut store = Store::new();
        assert_eq!(store.apply(1, &plain(put("a", "one"))), Outcome::Put);
        assert_eq!(value_of(&store, "a"), Some(("one".into(), 1)));
        assert_eq!(store.apply(2, &plain(put("a", "two"))), Outcome::Put);
        assert_eq!(value_of(&store, "a"), Some(("two".into(), 2)));
        assert_eq!(store.len(), 1);
        assert_eq!(store.data_bytes(), 4, "one key byte and three value bytes");
        assert_eq!(store.applied(), 2);
    }

    #[test]
    fn delete_says_whether_the_key_existed() {
        let mut store = Store::new();
        store.apply(1, &plain(put("a", "one")));
        assert_eq!(store.apply(2, &plain(delete("a"))), Outcome::Deleted { existed: true });
        assert_eq!(store.get(b"a"), None);
        assert_eq!(store.apply(3, &plain(delete("a"))), Outcome::Deleted { existed: false });
        assert!(store.is_empty());
        assert_eq!(store.data_bytes(), 0);
    }

    #[test]
    fn cas_on_an_absent_key() {
        let mut store = Store::new();
        let failed = store.apply(1, &plain(cas("a", Some("x"), Some("y"))));
        assert_eq!(failed, Outcome::CasFailed { current: None }, "expected a value, found none");
        assert_eq!(store.apply(2, &plain(cas("a", None, Some("y")))), Outcome::CasSucceeded);
        assert_eq!(value_of(&store, "a"), Some(("y".into(), 2)), "created at the CAS's index");
        let failed = store.apply(3, &plain(cas("a", None, Some("z"))));
        assert_eq!(failed, Outcome::CasFailed { current: Some(Bytes::from("y")) }, "it exists now");
        assert_eq!(value_of(&store, "a"), Some(("y".into(), 2)), "a failed CAS changes nothing");
    }

    #[test]
    fn cas_on_a_present_key() {
        let mut store = Store::new();
        store.apply(1, &plain(put("a", "x")));
        let failed = store.apply(2, &plain(cas("a", Some("w"), Some("y"))));
        assert_eq!(failed, Outcome::CasFailed { current: Some(Bytes::from("x")) });
        assert_eq!(store.apply(3, &plain(cas("a", Some("x"), Some("y")))), Outcome::CasSucceeded);
        assert_eq!(value_of(&store, "a"), Some(("y".into(), 3)));
        assert_eq!(store.apply(4, &plain(cas("a", Some("y"), Some("y")))), Outcome::CasSucceeded);
        assert_eq!(value_of(&store, "a"), Some(("y".into(), 4)), "same bytes, new revision");
    }

    #[test]
    fn cas_can_delete() {
        let mut store = Store::new();
        store.apply(1, &plain(put("a", "x")));
        assert_eq!(store.apply(2, &plain(cas("a", Some("x"), None))), Outcome::CasSucceeded);
        assert_eq!(store.get(b"a"), None);
        assert_eq!(store.data_bytes(), 0);
        assert_eq!(
            store.apply(3, &plain(cas("a", None, None))),
            Outcome::CasSucceeded,
            "absent and expected absent: a successful delete of nothing"
        );
        assert!(store.is_empty());
    }

    #[test]
    fn a_retry_changes_nothing_and_returns_the_first_outcome() {
        let mut store = Store::new();
        assert_eq!(
            store.apply(1, &with_session(7, 1, cas("a", None, Some("x")))),
            Outcome::CasSucceeded
        );
        // Someone else changes the key; the retry must neither re-run the CAS nor fail it.
        store.apply(2, &plain(put("a", "y")));
        assert_eq!(
            store.apply(3, &with_session(7, 1, cas("a", None, Some("x")))),
            Outcome::CasSucceeded
        );
        assert_eq!(value_of(&store, "a"), Some(("y".into(), 2)));
        let record = store.session(7).expect("client 7 has a session");
        assert_eq!((record.sequence, record.applied_at, record.last_active), (1, 1, 3));
        assert_eq!(store.applied(), 3, "the retry's entry is applied, even though it did nothing");
    }

    #[test]
    fn a_retry_of_a_failed_cas_returns_what_it_saw() {
        let mut store = Store::new();
        store.apply(1, &plain(put("a", "x")));
        let first = store.apply(2, &with_session(7, 1, cas("a", None, Some("y"))));
        assert_eq!(first, Outcome::CasFailed { current: Some(Bytes::from("x")) });
        store.apply(3, &plain(delete("a")));
        assert_eq!(store.apply(4, &with_session(7, 1, cas("a", None, Some("y")))), first);
        assert_eq!(store.get(b"a"), None, "the retry did not apply, though it would now succeed");
    }

    #[test]
    fn an_older_sequence_is_stale_and_a_newer_one_applies() {
        let mut store = Store::new();
        store.apply(1, &with_session(7, 5, put("a", "five")));
        assert_eq!(
            store.apply(2, &with_session(7, 4, put("a", "four"))),
            Outcome::StaleSequence { last: 5 }
        );
        assert_eq!(value_of(&store, "a"), Some(("five".into(), 1)));
        assert_eq!(
            store.apply(3, &with_session(7, 9, put("a", "nine"))),
            Outcome::Put,
            "a gap is fine"
        );
        assert_eq!(value_of(&store, "a"), Some(("nine".into(), 3)));
        assert_eq!(
            store.apply(4, &with_session(8, 5, put("a", "other"))),
            Outcome::Put,
            "clients are independent"
        );
        assert_eq!(store.session_count(), 2);
    }

    #[test]
    fn an_evicted_client_s_retry_applies_again() {
        let mut store = Store::with_max_sessions(2);
        store.apply(1, &with_session(1, 1, put("a", "1")));
        store.apply(2, &with_session(2, 1, put("b", "1")));
        store.apply(3, &with_session(3, 1, put("c", "1")));
        assert_eq!(store.session_count(), 2);
        assert!(store.session(1).is_none(), "client 1 was least recently active");
        assert_eq!(store.apply(4, &with_session(1, 1, put("a", "1"))), Outcome::Put);
        assert_eq!(value_of(&store, "a"), Some(("1".into(), 4)), "applied a second time");
        assert!(store.session(2).is_none(), "which in turn evicted client 2");
    }

    #[test]
    fn writes_without_a_session_are_not_remembered() {
        let mut store = Store::new();
        store.apply(1, &plain(put("a", "x")));
        assert_eq!(store.session_count(), 0);
    }

    #[test]
    fn invalid_entries_change_nothing_but_the_applied_index() {
        let mut store = Store::new();
        store.apply(1, &plain(put("a", "x")));
        let before = store.clone();
        let outcome = store.apply(2, &[9, 9, 9]);
        assert_eq!(
            outcome,
            Outcome::Invalid {
                reason: "unknown command format version 9 (this build reads version 1)".into()
            }
        );
        let mut truncated = with_session(1, 1, put("b", "y")).to_vec();
        truncated.pop();
        assert!(matches!(store.apply(3, &truncated), Outcome::Invalid { .. }));
        assert_eq!(store.applied(), 3);
        assert_eq!(store.session_count(), 0, "an undecodable entry has no session to record");
        assert_eq!((store.data.clone(), store.data_bytes), (before.data, before.data_bytes));
    }

    #[test]
    fn skip_advances_the_applied_index_only() {
        let mut store = Store::new();
        store.skip(1);
        assert_eq!(store.applied(), 1);
        store.apply(2, &plain(put("a", "x")));
        store.skip(5);
        assert_eq!(store.applied(), 5);
        assert_eq!(value_of(&store, "a"), Some(("x".into(), 2)));
    }

    #[test]
    #[should_panic(expected = "log entry 2 applied at or before the applied index 2")]
    fn applying_an_index_twice_is_a_bug() {
        let mut store = Store::new();
        store.apply(2, &plain(put("a", "x")));
        store.apply(2, &plain(put("a", "x")));
    }

    #[test]
    #[should_panic(expected = "log entry 3 applied at or before the applied index 4")]
    fn skipping_backwards_is_a_bug() {
        let mut store = Store::new();
        store.skip(4);
        store.skip(3);
    }

    #[test]
    fn scan_returns_matching_keys_in_order_up_to_the_limit() {
        let mut store = Store::new();
        for (index, key) in ["b/2", "a", "b/1", "b/3", "b", "c"].into_iter().enumerate() {
            store.apply(index as u64 + 1, &plain(put(key, key)));
        }
        let keys = |(found, more): (Vec<(Bytes, Value)>, bool)| {
            let keys: Vec<String> =
                found.iter().map(|(key, _)| String::from_utf8_lossy(key).into()).collect();
            (keys, more)
        };
        assert_eq!(
            keys(store.scan(b"b", 10)),
            (vec!["b".into(), "b/1".into(), "b/2".into(), "b/3".into()], false)
        );
        assert_eq!(keys(store.scan(b"b/", 2)), (vec!["b/1".into(), "b/2".into()], true));
        assert_eq!(
            keys(store.scan(b"b/", 3)),
            (vec!["b/1".into(), "b/2".into(), "b/3".into()], false),
            "exactly the limit: no more"
        );
        assert_eq!(keys(store.scan(b"b/", 0)), (vec![], true));
        assert_eq!(keys(store.scan(b"d", 10)), (vec![], false));
        assert_eq!(
            keys(store.scan(b"", 1)),
            (vec!["a".into()], true),
            "the empty prefix matches all"
        );
        let (found, _) = store.scan(b"b/3", 1);
        assert_eq!(found[0].1, Value { data: Bytes::from("b/3"), revision: 4 });
    }

    #[test]
    fn scan_handles_prefixes_ending_in_0xff() {
        let mut store = Store::new();
        store.apply(1, &plain(Op::Put { key: Bytes::from_static(&[0xff]), value: Bytes::new() }));
        store.apply(
            2,
            &plain(Op::Put { key: Bytes::from_static(&[0xff, 0xff]), value: Bytes::new() }),
        );
        store.apply(3, &plain(Op::Put { key: Bytes::from_static(&[0xfe]), value: Bytes::new() }));
        let (found, more) = store.scan(&[0xff], 10);
        assert_eq!(found.len(), 2);
        assert!(!more);
    }

    #[test]
    fn data_bytes_follows_every_change() {
        let mut store = Store::new();
        store.apply(1, &plain(put("key", "value")));
        assert_eq!(store.data_bytes(), 8);
        store.apply(2, &plain(put("key", "v")));
        assert_eq!(store.data_bytes(), 4);
        store.apply(3, &plain(cas("k2", None, Some("vv"))));
        assert_eq!(store.data_bytes(), 8);
        store.apply(4, &plain(cas("key", Some("v"), None)));
        assert_eq!(store.data_bytes(), 4);
        store.apply(5, &plain(delete("k2")));
        assert_eq!(store.data_bytes(), 0);
    }
}
