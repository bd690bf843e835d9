//! Client histories: what clients asked for and what they were told, in real (simulated) time.
//!
//! The workload records one [`Event`] per invocation and one per completion. A completion is
//! `Ok` (the operation took effect, with this result), `Fail` (it certainly did not take
//! effect: e.g. refused before being proposed), or `Unknown` (a timeout or a lost leader: it may
//! have taken effect at any time after its invocation, or never). The linearizability checker
//! consumes a history and decides whether some total order of the operations, consistent with
//! real time, explains every result.

use std::fmt;

/// A client's identity within one simulation.
pub type ClientId = u64;

/// A key of the store, as the workload numbers it (the store's key is `k` and the number).
pub type Key = u64;

/// A value stored under a key.
pub type Value = u64;

/// An operation on the store: a map of registers, one per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: Key,
        /// The new value.
        value: Value,
    },
    /// Read `key`.
    Get {
        /// The key.
        key: Key,
    },
    /// Remove `key`, if it has a value.
    Delete {
        /// The key.
        key: Key,
    },
    /// Set `key` to `new` if it currently holds `expected` (`None`: absent).
    Cas {
        /// The key.
        key: Key,
        /// The value the key must hold for the swap to happen.
        expected: Option<Value>,
        /// The value to store if it does.
        new: Value,
    },
}

impl Operation {
    /// The key the operation touches.
    pub fn key(&self) -> Key {
        match *self {
            Operation::Put { key, .. }
            | Operation::Get { key }
            | Operation::Delete { key }
            | Operation::Cas { key, .. } => key,
        }
    }
}

/// What an operation returned when it completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperationResult {
    /// A put completed.
    Put,
    /// A get saw this value (`None`: absent).
    Get(Option<Value>),
    /// A delete completed. (The store also says whether the key existed; the history leaves
    /// that out, so a delete is checked as a write of "absent", like a put.)
    Delete,
    /// A compare-and-swap completed; `true` if it swapped.
    Cas(bool),
}

/// How an invocation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It took effect, with this result.
    Ok(OperationResult),
    /// It certainly did not take effect.
    Fail,
    /// It may or may not have taken effect, at any time after its invocation.
    Unknown,
}

/// One entry of a history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// `client` invoked `operation` at `time`. A client has at most one invocation open.
    Invoke {
        /// The client.
        client: ClientId,
        /// The operation.
        operation: Operation,
        /// The simulated time of the invocation.
        time: u64,
    },
    /// `client`'s open invocation completed at `time`.
    Complete {
        /// The client.
        client: ClientId,
        /// How it ended.
        outcome: Outcome,
        /// The simulated time of the completion.
        time: u64,
    },
}

/// A whole history, in the order events happened (times are non-decreasing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// The events, in order.
    pub events: Vec<Event>,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::Put { key, value } => write!(f, "put k{key}={value}"),
            Operation::Get { key } => write!(f, "get k{key}"),
            Operation::Delete { key } => write!(f, "delete k{key}"),
            Operation::Cas { key, expected: Some(expected), new } => {
                write!(f, "cas k{key} {expected}→{new}")
            }
            Operation::Cas { key, expected: None, new } => write!(f, "cas k{key} none→{new}"),
        }
    }
}
