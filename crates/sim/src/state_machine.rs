//! The replicated state machine of the simulation: skiff-kv's [`Store`], the one real nodes run.
//!
//! Every simulated node applies its committed entries to its own [`Store`], through
//! [`Store::apply`] (commands) and [`Store::skip`] (a leader's no-op), exactly as a skiff node
//! does. The workload speaks in small integers (key 3, value 17); this module translates: key
//! `k` is the bytes `k3`, a value is its decimal text, and a client's write becomes a
//! [`skiff_kv::Command`] under the client's [`Session`] (its id and the operation's sequence
//! number), encoded by [`Command::encode`] into the bytes a production log carries.
//!
//! Clients retry: an attempt that timed out may still commit, and its retry commits again. A
//! retry reuses the operation's sequence number, so the store's sessions (Raft thesis §6.3)
//! apply it once and answer the retry with the first attempt's outcome; the simulator counts
//! these answers, so a sweep shows that the exactly-once path ran. Gets are not commands: they
//! never enter the log, and are served from the store by ReadIndex (see `driver.rs`).
//!
//! ## The state hash
//! The applied-entry checks of `invariants.rs` prove that every node applies the same entries;
//! the store must then hold the same data. To check that too, cheaply, each node keeps a hash of
//! its store's contents: the XOR, over every key, of a hash of the key, its value and the
//! value's revision, and over every client session, of a hash of its record (sequence, outcome,
//! the index it was applied at, the last activity). XOR makes it incremental: a command changes
//! one key and one session, so applying an entry removes their old hashes and adds the new
//! ones, read back from the store itself, in O(1) hashing. Two nodes at the same applied index
//! must have equal hashes. A store that did not get there by applying entries (restored from a
//! snapshot at a restart, or installed from the leader's) has its hash computed whole
//! ([`StateMachine::from_store`]), and must match too: that is how the checker sees that a
//! snapshot brought back exactly the state it stands for, sessions included (a node restored
//! without its sessions would apply a retry the others deduplicate).

use bytes::Bytes;
use skiff_kv::{Command, Op, Outcome, Session, SessionRecord, Store};
use skiff_raft::Index;

use crate::history::{ClientId, Key, Operation, OperationResult, Value};
use crate::storage::fnv1a;

/// What applying a log entry did, for the node that proposed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A client's write took effect now, with this result.
    Fresh(Session, OperationResult),
    /// A client's write had taken effect before (a retry): this is the result it had then.
    Repeat(Session, OperationResult),
    /// A client's write older than the client's last one: it did nothing, and nobody waits.
    Stale(Session),
    /// Not a client's write (a liveness probe): only the applied index moved.
    Other,
}

/// A node's store, with the hash of its contents.
#[derive(Clone, Debug, Default)]
pub struct StateMachine {
    /// The real store.
    store: Store,
    /// The XOR of [`pair_hash`] over every key of `store` (0 when empty).
    hash: u64,
}

impl StateMachine {
    /// A state machine holding `store` (restored or installed from a snapshot), its hash
    /// computed over the whole store.
    pub fn from_store(store: Store) -> StateMachine {
        let (pairs, _) = store.scan(b"", usize::MAX);
        let data = pairs.iter().fold(0, |hash, (key, value)| hash ^ pair_hash(key, value));
        let sessions =
            store.sessions().fold(0, |hash, (client, record)| hash ^ session_hash(client, record));
        StateMachine { store, hash: data ^ sessions }
    }

    /// The store, to write a snapshot of.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Applies the command bytes of the committed entry at `index`.
    pub fn apply(&mut self, index: Index, bytes: &[u8]) -> Applied {
        // Decoded here too, for the key and the session; the store decodes the same bytes.
        let Ok(command) = Command::decode(bytes) else {
            let outcome = self.store.apply(index.0, bytes);
            assert!(matches!(outcome, Outcome::Invalid { .. }), "{outcome:?} from bad bytes");
            return Applied::Other;
        };
        let key = command.op.key().clone();
        let client = command.session.map(|session| session.client);
        self.hash ^= self.key_and_session_hash(&key, client);
        let outcome = self.store.apply(index.0, bytes);
        self.hash ^= self.key_and_session_hash(&key, client);
        let Some(session) = command.session else { return Applied::Other };
        let result = match outcome {
            Outcome::Put => OperationResult::Put,
            Outcome::CasSucceeded => OperationResult::Cas(true),
            Outcome::CasFailed { .. } => OperationResult::Cas(false),
            Outcome::Deleted { .. } => OperationResult::Delete,
            Outcome::StaleSequence { .. } => return Applied::Stale(session),
            Outcome::Invalid { reason } => panic!("the store refused a valid command: {reason}"),
        };
        let record = self.store.session(session.client).expect("a session was just applied");
        if record.applied_at == index.0 {
            Applied::Fresh(session, result)
        } else {
            Applied::Repeat(session, result)
        }
    }

    /// Moves the applied index over an entry without a command (a leader's no-op).
    pub fn skip(&mut self, index: Index) {
        self.store.skip(index.0);
    }

    /// The value under `key`, as the store has it now.
    pub fn get(&self, key: Key) -> Option<Value> {
        let value = self.store.get(&key_bytes(key))?;
        let text = std::str::from_utf8(&value.data).expect("the simulator writes decimal text");
        Some(text.parse().expect("the simulator writes decimal numbers"))
    }

    /// The index of the last entry applied or skipped.
    pub fn applied(&self) -> Index {
        Index(self.store.applied())
    }

    /// The hash of the store's contents (see the module documentation).
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The part of the hash that `key` and `client`'s session contribute now.
    fn key_and_session_hash(&self, key: &[u8], client: Option<ClientId>) -> u64 {
        let data = self.store.get(key).map_or(0, |value| pair_hash(key, value));
        let session = client
            .and_then(|client| Some(session_hash(client, self.store.session(client)?)))
            .unwrap_or(0);
        data ^ session
    }
}

/// Whether the bytes of a log entry are a client's write (a liveness probe is not).
pub fn is_write(bytes: &[u8]) -> bool {
    Command::decode(bytes).is_ok()
}

/// The command a client's write travels as; `None` for a get, which is no command.
pub fn command(client: ClientId, sequence: u64, operation: Operation) -> Option<Command> {
    let op = match operation {
        Operation::Put { key, value } => Op::Put { key: key_bytes(key), value: value_bytes(value) },
        Operation::Delete { key } => Op::Delete { key: key_bytes(key) },
        Operation::Cas { key, expected, new } => Op::Cas {
            key: key_bytes(key),
            expected: expected.map(value_bytes),
            value: Some(value_bytes(new)),
        },
        Operation::Get { .. } => return None,
    };
    Some(Command { session: Some(Session { client, sequence }), op })
}

/// A command's bytes in trace form: `c3.7:put:k1=5`, `c3.8:cas:k1:5>6` (`_`: absent),
/// `c3.9:del:k1`; other bytes as text when they are (probes), else their length.
pub fn describe(bytes: &[u8]) -> String {
    let Ok(Command { session, op }) = Command::decode(bytes) else {
        return match std::str::from_utf8(bytes) {
            Ok(text) => text.to_string(),
            Err(_) => format!("<{} bytes>", bytes.len()),
        };
    };
    let text = |bytes: &Bytes| String::from_utf8_lossy(bytes).into_owned();
    let optional = |bytes: &Option<Bytes>| bytes.as_ref().map_or("_".to_string(), text);
    let session = session
        .map_or("-".to_string(), |session| format!("c{}.{}", session.client, session.sequence));
    match op {
        Op::Put { key, value } => format!("{session}:put:{}={}", text(&key), text(&value)),
        Op::Delete { key } => format!("{session}:del:{}", text(&key)),
        Op::Cas { key, expected, value } => {
            format!("{session}:cas:{}:{}>{}", text(&key), optional(&expected), optional(&value))
        }
    }
}

/// The store's key for the workload's key `key`.
fn key_bytes(key: Key) -> Bytes {
    Bytes::from(format!("k{key}"))
}

/// The store's value for the workload's value `value`.
fn value_bytes(value: Value) -> Bytes {
    Bytes::from(value.to_string())
}

/// The hash of one key and its value, for the state hash.
fn pair_hash(key: &[u8], value: &skiff_kv::Value) -> u64 {
    // The key's length first, so that no two (key, value) pairs hash the same bytes.
    let mut hash = fnv1a(&(key.len() as u64).to_le_bytes());
    let revision = value.revision.to_le_bytes();
    for &byte in key.iter().chain(value.data.iter()).chain(&revision) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash
}

/// The hash of one client's session record, for the state hash.
fn session_hash(client: ClientId, record: &SessionRecord) -> u64 {
    let outcome = match &record.outcome {
        Outcome::Put => 1,
        Outcome::Deleted { existed } => 2 + u64::from(*existed),
        Outcome::CasSucceeded => 4,
        Outcome::CasFailed { current } => {
            5 ^ current.as_ref().map_or(0, |value| fnv1a(value).rotate_left(3))
        }
        Outcome::StaleSequence { .. } | Outcome::Invalid { .. } => {
            unreachable!("a session records a write's outcome, never {:?}", record.outcome)
        }
    };
    let mut hash = 0x5E55_1075_0000_0000;
    for word in [client, record.sequence, record.applied_at, record.last_active, outcome] {
        hash = fnv1a(&(hash ^ word).to_le_bytes());
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(client: ClientId, sequence: u64, operation: Operation) -> Bytes {
        command(client, sequence, operation).expect("a write").encode()
    }

    #[test]
    fn commands_round_trip_through_the_store_encoding() {
        let put = write(12, 345, Operation::Put { key: 1, value: 42 });
        assert_eq!(describe(&put), "c12.345:put:k1=42");
        let cas = write(3, 8, Operation::Cas { key: 1, expected: None, new: 6 });
        assert_eq!(describe(&cas), "c3.8:cas:k1:_>6");
        let delete = write(3, 9, Operation::Delete { key: 2 });
        assert_eq!(describe(&delete), "c3.9:del:k2");
        assert_eq!(describe(b"probe.1"), "probe.1");
        assert_eq!(command(1, 1, Operation::Get { key: 1 }), None, "a get is no command");
    }

    #[test]
    fn sessions_apply_each_write_once() {
        let mut machine = StateMachine::default();
        let put = write(1, 1, Operation::Put { key: 1, value: 5 });
        let cas = write(2, 1, Operation::Cas { key: 1, expected: Some(5), new: 6 });
        let first = Session { client: 1, sequence: 1 };
        let second = Session { client: 2, sequence: 1 };
        assert_eq!(machine.apply(Index(1), &put), Applied::Fresh(first, OperationResult::Put));
        machine.skip(Index(2));
        let swapped = OperationResult::Cas(true);
        assert_eq!(machine.apply(Index(3), &cas), Applied::Fresh(second, swapped));
        assert_eq!(machine.apply(Index(4), &cas), Applied::Repeat(second, swapped), "a retry");
        assert_eq!(machine.apply(Index(5), &put), Applied::Repeat(first, OperationResult::Put));
        assert_eq!(machine.get(1), Some(6), "the retried put did not apply again");
        let later = write(1, 3, Operation::Delete { key: 1 });
        let third = Session { client: 1, sequence: 3 };
        assert_eq!(machine.apply(Index(6), &later), Applied::Fresh(third, OperationResult::Delete));
        assert_eq!(machine.apply(Index(7), &put), Applied::Stale(first), "older than the session");
        assert_eq!(machine.apply(Index(8), b"probe.1"), Applied::Other);
        assert_eq!(machine.get(1), None);
        assert_eq!(machine.applied(), Index(8));
        let whole = StateMachine::from_store(machine.store().clone());
        assert_eq!(machine.hash(), whole.hash(), "the incremental hash is the whole store's");
    }

    #[test]
    fn a_store_brought_back_from_a_snapshot_hashes_as_the_one_that_wrote_it() {
        let mut machine = StateMachine::default();
        machine.apply(Index(1), &write(1, 1, Operation::Put { key: 1, value: 5 }));
        machine.apply(Index(2), &write(2, 1, Operation::Cas { key: 1, expected: Some(4), new: 6 }));
        machine.apply(Index(3), &write(1, 2, Operation::Delete { key: 2 }));
        let mut bytes = Vec::new();
        machine.store().write_snapshot(&mut bytes).expect("writes to memory");
        let restored = Store::restore(&mut bytes.as_slice()).expect("restores");
        assert_eq!(StateMachine::from_store(restored).hash(), machine.hash());
        // A store with the same data but without its sessions hashes differently.
        let mut sessionless = StateMachine::default();
        sessionless.apply(
            Index(1),
            &Command { session: None, op: Op::Put { key: key_bytes(1), value: value_bytes(5) } }
                .encode(),
        );
        let mut data_only = StateMachine::default();
        data_only.apply(Index(1), &write(9, 1, Operation::Put { key: 1, value: 5 }));
        assert_ne!(sessionless.hash(), data_only.hash(), "sessions count");
    }

    #[test]
    fn the_state_hash_depends_on_the_contents_only() {
        let mut one = StateMachine::default();
        let mut other = StateMachine::default();
        one.apply(Index(1), &write(1, 1, Operation::Put { key: 1, value: 5 }));
        one.apply(Index(2), &write(1, 2, Operation::Put { key: 2, value: 6 }));
        other.apply(Index(1), &write(1, 1, Operation::Put { key: 1, value: 5 }));
        assert_ne!(one.hash(), other.hash());
        other.apply(Index(2), &write(1, 2, Operation::Put { key: 2, value: 6 }));
        assert_eq!(one.hash(), other.hash());
        one.apply(Index(3), &write(1, 3, Operation::Put { key: 2, value: 7 }));
        other.apply(Index(3), &write(1, 3, Operation::Put { key: 1, value: 7 }));
        assert_ne!(one.hash(), other.hash(), "the same values under other keys");
    }
}
