//! The replicated state machine of the simulation: a map of registers with client sessions.
//!
//! Until crates/kv lands, each simulated node applies committed commands to a [`RegisterMap`]:
//! put, get and compare-and-swap on small integer keys. Gets go through the log like writes
//! (there is no ReadIndex yet), so every result a client sees comes from applying the log.
//!
//! Clients retry: an attempt that timed out may still commit, and its retry commits again.
//! Applying both would apply the operation twice, which no linearizable history explains. So
//! each command carries the client's id and a per-client sequence number, and the state
//! machine keeps a **session** per client with the last sequence applied and its result
//! (Raft thesis §6.3): a repeat of the last command returns the stored result without applying
//! it again, and an older one is ignored. A client has one operation open at a time, so one
//! remembered result per client is enough.
//!
//! Commands are encoded as short text (`c3.7:put:k1=5`), which the core's trace form prints
//! as-is, so trace lines show what each entry does.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::history::{ClientId, Key, Operation, OperationResult, Value};

/// A client's operation as it travels through the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command {
    /// The client that issued it.
    pub client: ClientId,
    /// The client's sequence number for this operation; retries reuse it.
    pub sequence: u64,
    /// What to do.
    pub operation: Operation,
}

impl Command {
    /// The command's bytes in the log: `c{client}.{sequence}:{operation}`.
    pub fn encode(&self) -> Bytes {
        let Command { client, sequence, operation } = *self;
        let text = match operation {
            Operation::Put { key, value } => format!("c{client}.{sequence}:put:k{key}={value}"),
            Operation::Get { key } => format!("c{client}.{sequence}:get:k{key}"),
            Operation::Cas { key, expected, new } => {
                let expected = expected.map_or("_".to_string(), |value| value.to_string());
                format!("c{client}.{sequence}:cas:k{key}:{expected}>{new}")
            }
        };
        Bytes::from(text)
    }

    /// Parses bytes written by [`Command::encode`]; `None` for anything else (probes).
    pub fn decode(bytes: &[u8]) -> Option<Command> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (header, rest) = text.strip_prefix('c')?.split_once(':')?;
        let (client, sequence) = header.split_once('.')?;
        let (client, sequence) = (client.parse().ok()?, sequence.parse().ok()?);
        let (verb, argument) = rest.split_once(':')?;
        let key_of = |text: &str| -> Option<Key> { text.strip_prefix('k')?.parse().ok() };
        let operation = match verb {
            "put" => {
                let (key, value) = argument.split_once('=')?;
                Operation::Put { key: key_of(key)?, value: value.parse().ok()? }
            }
            "get" => Operation::Get { key: key_of(argument)? },
            "cas" => {
                let (key, swap) = argument.split_once(':')?;
                let (expected, new) = swap.split_once('>')?;
                let expected = match expected {
                    "_" => None,
                    value => Some(value.parse().ok()?),
                };
                Operation::Cas { key: key_of(key)?, expected, new: new.parse().ok()? }
            }
            _ => return None,
        };
        Some(Command { client, sequence, operation })
    }
}

/// What applying a command did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The command took effect now, with this result.
    Fresh(OperationResult),
    /// The command had taken effect before (a retry); this is the result it had then.
    Repeat(OperationResult),
    /// The client has moved on to a later command: this one is stale and did nothing.
    Stale,
}

/// A client session: the last command applied for the client and its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Session {
    /// The last sequence number applied.
    sequence: u64,
    /// Its result.
    result: OperationResult,
}

/// Registers keyed by small integers, with a session per client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegisterMap {
    /// Every key that was ever written, with its value.
    values: BTreeMap<Key, Value>,
    /// One session per client that ever had a command applied.
    sessions: BTreeMap<ClientId, Session>,
}

impl RegisterMap {
    /// Applies `command` exactly once per (client, sequence).
    pub fn apply(&mut self, command: &Command) -> Applied {
        if let Some(session) = self.sessions.get(&command.client) {
            if command.sequence == session.sequence {
                return Applied::Repeat(session.result);
            }
            if command.sequence < session.sequence {
                return Applied::Stale;
            }
        }
        let result = match command.operation {
            Operation::Put { key, value } => {
                self.values.insert(key, value);
                OperationResult::Put
            }
            Operation::Get { key } => OperationResult::Get(self.values.get(&key).copied()),
            Operation::Cas { key, expected, new } => {
                let swapped = self.values.get(&key).copied() == expected;
                if swapped {
                    self.values.insert(key, new);
                }
                OperationResult::Cas(swapped)
            }
        };
        self.sessions.insert(command.client, Session { sequence: command.sequence, result });
        Applied::Fresh(result)
    }

    /// The value under `key`, if any.
    pub fn get(&self, key: Key) -> Option<Value> {
        self.values.get(&key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_their_text() {
        let operations = [
            Operation::Put { key: 1, value: 42 },
            Operation::Get { key: 0 },
            Operation::Cas { key: 3, expected: None, new: 7 },
            Operation::Cas { key: 3, expected: Some(7), new: 8 },
        ];
        for operation in operations {
            let command = Command { client: 12, sequence: 345, operation };
            let bytes = command.encode();
            assert!(bytes.len() <= 32, "short enough to print in traces: {bytes:?}");
            assert_eq!(Command::decode(&bytes), Some(command));
        }
        assert_eq!(Command::decode(b"probe.1"), None);
        assert_eq!(Command::decode(b"c1.x:get:k1"), None);
    }

    #[test]
    fn sessions_apply_each_command_once() {
        let mut map = RegisterMap::default();
        let put =
            Command { client: 1, sequence: 1, operation: Operation::Put { key: 1, value: 5 } };
        let cas = Command {
            client: 2,
            sequence: 1,
            operation: Operation::Cas { key: 1, expected: Some(5), new: 6 },
        };
        assert_eq!(map.apply(&put), Applied::Fresh(OperationResult::Put));
        assert_eq!(map.apply(&cas), Applied::Fresh(OperationResult::Cas(true)));
        assert_eq!(map.apply(&cas), Applied::Repeat(OperationResult::Cas(true)), "a retry");
        assert_eq!(map.apply(&put), Applied::Repeat(OperationResult::Put));
        assert_eq!(map.get(1), Some(6), "the retried put did not apply again");
        let later = Command { client: 1, sequence: 2, operation: Operation::Get { key: 1 } };
        assert_eq!(map.apply(&later), Applied::Fresh(OperationResult::Get(Some(6))));
        assert_eq!(map.apply(&put), Applied::Stale, "older than the session");
    }
}
