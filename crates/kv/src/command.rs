//! Commands: what a client asks the store to do, and the bytes a log entry carries for it.
//!
//! A [`Command`] is one write: an [`Op`] (put, delete or compare-and-swap) and, optionally, the
//! client [`Session`] that makes retries of it safe (see `session.rs`). The leader encodes it
//! with [`Command::encode`] into a log entry; every node decodes it with [`Command::decode`]
//! when the entry is committed and applies it. Reads are not commands: they never enter the log.
//!
//! ## Byte layout, format version 1 (all integers little-endian)
//!
//! Two building blocks:
//! - a **byte string** is a `u32` length `n` followed by `n` bytes;
//! - an **optional byte string** is a marker byte, `0` (absent, nothing follows) or `1`
//!   (present, a byte string follows).
//!
//! | offset | size | field                                                           |
//! |--------|------|-----------------------------------------------------------------|
//! | 0      | 1    | format version: `u8`, currently 1 ([`COMMAND_FORMAT_VERSION`])  |
//! | 1      | 1    | session marker: `0` = no session, `1` = a session follows       |
//! | 2      | 8    | (marker `1` only) client: `u64`                                 |
//! | 10     | 8    | (marker `1` only) sequence: `u64`                               |
//! | next   | 1    | operation: `1` = put, `2` = delete, `3` = compare-and-swap      |
//! | next   | rest | the operation's fields, in this order:                          |
//!
//! - put: key (byte string), value (byte string);
//! - delete: key (byte string);
//! - compare-and-swap: key (byte string), expected (optional byte string; absent = the key
//!   must not exist), value (optional byte string; absent = delete the key).
//!
//! Keys are at most [`MAX_KEY_BYTES`] and values (including a CAS's expected value) at most
//! [`MAX_VALUE_BYTES`]; the empty key is a key like any other. A put of key `k` and value `v`
//! with a session takes `27 + len(k) + len(v)` bytes.
//!
//! ## Decoding is strict
//! Exactly one byte sequence encodes a command, and [`Command::decode`] accepts nothing else:
//! an unknown version, operation or marker, a length over its limit, a field cut short, or a
//! byte left over after the last field is an error. Decoding never panics, and it allocates only
//! after a length has been checked against both its limit and the bytes actually remaining, so
//! a hostile entry cannot make a node allocate more than the entry's own size.
//!
//! Strictness matters beyond hygiene: what a node does with an entry must not depend on which
//! build it runs. An entry that does not decode is skipped ([`Outcome::Invalid`]) by every node
//! alike, so a malformed entry cannot fork the replicas. The same argument says how to change
//! this format: a new version may only be proposed once every node of the cluster can decode
//! it, or the nodes that cannot would skip what the others apply.
//!
//! [`Outcome::Invalid`]: crate::Outcome::Invalid

use bytes::Bytes;

use crate::{MAX_KEY_BYTES, MAX_VALUE_BYTES};

/// The format version [`Command::encode`] writes, and the only one [`Command::decode`] reads.
pub const COMMAND_FORMAT_VERSION: u8 = 1;

/// The session marker bytes.
const NO_SESSION: u8 = 0;
const WITH_SESSION: u8 = 1;

/// The operation tags.
const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const OP_CAS: u8 = 3;

/// The optional byte string markers.
const ABSENT: u8 = 0;
const PRESENT: u8 = 1;

/// A client session for exactly-once writes (Raft thesis §6.3).
///
/// A client numbers its writes; a retry of a write reuses the number, so the store can tell a
/// retry from a new write and apply it once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    /// The client's id, unique among the cluster's clients (chosen by the client).
    pub client: u64,
    /// The write's sequence number: higher than every earlier write of the client, the same
    /// for every retry of one write.
    pub sequence: u64,
}

/// One operation on the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` to `value`, whether or not it existed.
    Put {
        /// The key to set, at most [`MAX_KEY_BYTES`].
        key: Bytes,
        /// Its new value, at most [`MAX_VALUE_BYTES`].
        value: Bytes,
    },
    /// Removes `key`, if it exists.
    Delete {
        /// The key to remove, at most [`MAX_KEY_BYTES`].
        key: Bytes,
    },
    /// Compare-and-swap: if the key's current value equals `expected`, sets it to `value`.
    /// expected None = key must be absent; value None = delete the key.
    Cas {
        /// The key to compare and set, at most [`MAX_KEY_BYTES`].
        key: Bytes,
        /// The value the key must hold for the swap to happen; `None`: the key must be absent.
        expected: Option<Bytes>,
        /// The value to set on a match; `None`: delete the key. At most [`MAX_VALUE_BYTES`].
        value: Option<Bytes>,
    },
}

/// A write as it travels through the log: an operation, optionally under a client session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// The client session making retries of this write safe; `None`: no retry protection, a
    /// retry applies again.
    pub session: Option<Session>,
    /// What to do.
    pub op: Op,
}

/// Why bytes are not a command (from [`Command::decode`] or [`Command::validate`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// There were no bytes at all.
    #[error("the command is empty")]
    Empty,
    /// The first byte names a format this build cannot read.
    #[error(
        "unknown command format version {found} (this build reads version {COMMAND_FORMAT_VERSION})"
    )]
    UnknownVersion {
        /// The version byte found.
        found: u8,
    },
    /// The operation tag is not one of put, delete, compare-and-swap.
    #[error("unknown operation tag {found} (expected 1 = put, 2 = delete, 3 = compare-and-swap)")]
    UnknownOperation {
        /// The tag found.
        found: u8,
    },
    /// A presence marker (session, CAS expected or value) is neither 0 nor 1.
    #[error("the {field} marker is {found}, neither 0 (absent) nor 1 (present)")]
    BadMarker {
        /// Which marker.
        field: &'static str,
        /// The byte found.
        found: u8,
    },
    /// A field needs more bytes than remain.
    #[error("the command ends early: the {field} needs {needed} bytes but {remaining} remain")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// The bytes it needs.
        needed: usize,
        /// The bytes left in the input.
        remaining: usize,
    },
    /// A key or value is longer than its limit ([`MAX_KEY_BYTES`], [`MAX_VALUE_BYTES`]).
    #[error("the {field} is {length} bytes, over the limit of {limit}")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length (as encoded, or as given to [`Command::validate`]).
        length: usize,
        /// The limit it exceeds.
        limit: usize,
    },
    /// Bytes remain after the command's last field.
    #[error("{count} bytes follow the end of the command")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
}

impl Command {
    /// Encodes the command in the current format (see the module documentation).
    ///
    /// Encoding does not check the length limits, so that a command over them still has bytes;
    /// decoding them fails, and applying them is [`Outcome::Invalid`](crate::Outcome::Invalid).
    /// Call [`Command::validate`] first to refuse such a command before it enters the log.
    ///
    /// # Panics
    /// If a key or value is 4 GiB or longer, which a `u32` length cannot describe (and which
    /// [`Command::validate`] refuses long before).
    pub fn encode(&self) -> Bytes {
        let length = self.encoded_len();
        let mut out = Vec::with_capacity(length);
        out.push(COMMAND_FORMAT_VERSION);
        match self.session {
            None => out.push(NO_SESSION),
            Some(Session { client, sequence }) => {
                out.push(WITH_SESSION);
                out.extend_from_slice(&client.to_le_bytes());
                out.extend_from_slice(&sequence.to_le_bytes());
            }
        }
        match &self.op {
            Op::Put { key, value } => {
                out.push(OP_PUT);
                put_bytes(&mut out, key);
                put_bytes(&mut out, value);
            }
            Op::Delete { key } => {
                out.push(OP_DELETE);
                put_bytes(&mut out, key);
            }
            Op::Cas { key, expected, value } => {
                out.push(OP_CAS);
                put_bytes(&mut out, key);
                put_optional_bytes(&mut out, expected.as_ref());
                put_optional_bytes(&mut out, value.as_ref());
            }
        }
        assert_eq!(out.len(), length, "the encoded length must match the computed one");
        Bytes::from(out)
    }

    /// The length of [`Command::encode`]'s output, in bytes.
    pub fn encoded_len(&self) -> usize {
        let session = if self.session.is_some() { 16 } else { 0 };
        let optional =
            |bytes: &Option<Bytes>| 1 + bytes.as_ref().map_or(0, |bytes| 4 + bytes.len());
        let op = match &self.op {
            Op::Put { key, value } => 4 + key.len() + 4 + value.len(),
            Op::Delete { key } => 4 + key.len(),
            Op::Cas { key, expected, value } => {
                4 + key.len() + optional(expected) + optional(value)
            }
        };
        3 + session + op
    }

    /// Decodes a command from exactly the bytes [`Command::encode`] wrote. Never panics; any
    /// other input is an error saying what is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        let mut input = Reader { rest: bytes };
        let version = input.u8("format version").map_err(|_| DecodeError::Empty)?;
        if version != COMMAND_FORMAT_VERSION {
            return Err(DecodeError::UnknownVersion { found: version });
        }
        let session = match input.u8("session marker")? {
            NO_SESSION => None,
            WITH_SESSION => {
                let client = input.u64("session client")?;
                let sequence = input.u64("session sequence")?;
                Some(Session { client, sequence })
            }
            found => return Err(DecodeError::BadMarker { field: "session", found }),
        };
        let op = match input.u8("operation")? {
            OP_PUT => {
                let key = input.bytes("key", MAX_KEY_BYTES)?;
                let value = input.bytes("value", MAX_VALUE_BYTES)?;
                Op::Put { key, value }
            }
            OP_DELETE => Op::Delete { key: input.bytes("key", MAX_KEY_BYTES)? },
            OP_CAS => {
                let key = input.bytes("key", MAX_KEY_BYTES)?;
                let expected = input.optional_bytes("expected value", MAX_VALUE_BYTES)?;
                let value = input.optional_bytes("value", MAX_VALUE_BYTES)?;
                Op::Cas { key, expected, value }
            }
            found => return Err(DecodeError::UnknownOperation { found }),
        };
        if !input.rest.is_empty() {
            return Err(DecodeError::TrailingBytes { count: input.rest.len() });
        }
        Ok(Command { session, op })
    }

    /// Checks the length limits that [`Command::decode`] enforces, so that a command that
    /// would be [`Outcome::Invalid`](crate::Outcome::Invalid) can be refused before it is
    /// proposed. A command that passes encodes to bytes that decode back to it.
    pub fn validate(&self) -> Result<(), DecodeError> {
        let check = |field: &'static str, bytes: &Bytes, limit: usize| {
            if bytes.len() > limit {
                return Err(DecodeError::TooLong { field, length: bytes.len(), limit });
            }
            Ok(())
        };
        match &self.op {
            Op::Put { key, value } => {
                check("key", key, MAX_KEY_BYTES)?;
                check("value", value, MAX_VALUE_BYTES)
            }
            Op::Delete { key } => check("key", key, MAX_KEY_BYTES),
            Op::Cas { key, expected, value } => {
                check("key", key, MAX_KEY_BYTES)?;
                if let Some(expected) = expected {
                    check("expected value", expected, MAX_VALUE_BYTES)?;
                }
                if let Some(value) = value {
                    check("value", value, MAX_VALUE_BYTES)?;
                }
                Ok(())
            }
        }
    }
}

impl Op {
    /// The key the operation acts on.
    pub fn key(&self) -> &Bytes {
        match self {
            Op::Put { key, .. } | Op::Delete { key } | Op::Cas { key, .. } => key,
        }
    }
}

/// Appends a byte string: its `u32` length, then its bytes.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let length =
        u32::try_from(bytes.len()).expect("a byte string under 4 GiB (see encode's panics)");
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Appends an optional byte string: a marker, then the byte string if present.
fn put_optional_bytes(out: &mut Vec<u8>, bytes: Option<&Bytes>) {
    match bytes {
        None => out.push(ABSENT),
        Some(bytes) => {
            out.push(PRESENT);
            put_bytes(out, bytes);
        }
    }
}

/// A cursor over the bytes being decoded. Every read checks the remaining length first.
struct Reader<'a> {
    /// The bytes not yet consumed.
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Consumes the next `length` bytes, or fails without consuming anything.
    fn take(&mut self, length: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if length > self.rest.len() {
            let remaining = self.rest.len();
            return Err(DecodeError::Truncated { field, needed: length, remaining });
        }
        let (head, tail) = self.rest.split_at(length);
        self.rest = tail;
        Ok(head)
    }

    /// Consumes `N` bytes as an array.
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N, field)?;
        Ok(bytes.try_into().expect("take returned exactly N bytes"))
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// Consumes a byte string of at most `limit` bytes. The length is checked against the
    /// limit and against the remaining input before anything is copied.
    fn bytes(&mut self, field: &'static str, limit: usize) -> Result<Bytes, DecodeError> {
        // A length that does not fit a usize is over any limit; saturating keeps it so.
        let length = usize::try_from(self.u32(field)?).unwrap_or(usize::MAX);
        if length > limit {
            return Err(DecodeError::TooLong { field, length, limit });
        }
        Ok(Bytes::copy_from_slice(self.take(length, field)?))
    }

    /// Consumes an optional byte string.
    fn optional_bytes(
        &mut self,
        field: &'static str,
        limit: usize,
    ) -> Result<Option<Bytes>, DecodeError> {
        match self.u8(field)? {
            ABSENT => Ok(None),
            PRESENT => Ok(Some(self.bytes(field, limit)?)),
            found => Err(DecodeError::BadMarker { field, found }),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn put(key: &'static str, value: &'static str) -> Op {
        Op::Put { key: Bytes::from(key), value: Bytes::from(value) }
    }

    /// The layout in the module documentation, byte by byte, for one command of each shape.
    #[test]
    fn encoding_matches_the_documented_layout() {
        let session = Some(Session { client: 0x0102, sequence: 7 });
        let command = Command { session, op: put("k", "vv") };
        let expected: Vec<u8> = [
            &[1u8, 1][..],
            &[2, 1, 0, 0, 0, 0, 0, 0],
            &[7, 0, 0, 0, 0, 0, 0, 0],
            &[1],
            &[1, 0, 0, 0, b'k'],
            &[2, 0, 0, 0, b'v', b'v'],
        ]
        .concat();
        assert_eq!(command.encode()[..], expected[..]);
        assert_eq!(expected.len(), 27 + 1 + 2, "the documented size of a put with a session");

        let delete = Command { session: None, op: Op::Delete { key: Bytes::from("k") } };
        assert_eq!(delete.encode()[..], [1, 0, 2, 1, 0, 0, 0, b'k']);

        let op = Op::Cas { key: Bytes::from("k"), expected: None, value: Some(Bytes::from("v")) };
        let cas = Command { session: None, op };
        assert_eq!(cas.encode()[..], [1, 0, 3, 1, 0, 0, 0, b'k', 0, 1, 1, 0, 0, 0, b'v']);
    }

    #[test]
    fn each_kind_of_damage_has_its_error() {
        let good = Command { session: None, op: put("k", "v") }.encode().to_vec();
        let with = |index: usize, byte: u8| {
            let mut bytes = good.clone();
            bytes[index] = byte;
            Command::decode(&bytes)
        };
        assert_eq!(Command::decode(&[]), Err(DecodeError::Empty));
        assert_eq!(with(0, 2), Err(DecodeError::UnknownVersion { found: 2 }));
        assert_eq!(with(1, 5), Err(DecodeError::BadMarker { field: "session", found: 5 }));
        assert_eq!(with(2, 9), Err(DecodeError::UnknownOperation { found: 9 }));
        assert_eq!(
            with(3, 10),
            Err(DecodeError::Truncated { field: "key", needed: 10, remaining: 6 }),
            "a key length of 10 in a command with 6 bytes left"
        );
        assert_eq!(
            Command::decode(&good[..good.len() - 1]),
            Err(DecodeError::Truncated { field: "value", needed: 1, remaining: 0 })
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(Command::decode(&trailing), Err(DecodeError::TrailingBytes { count: 1 }));

        let cas = Command {
            session: None,
            op: Op::Cas { key: Bytes::from("k"), expected: None, value: None },
        };
        let mut bad_marker = cas.encode().to_vec();
        bad_marker[8] = 2;
        assert_eq!(
            Command::decode(&bad_marker),
            Err(DecodeError::BadMarker { field: "expected value", found: 2 })
        );
    }

    #[test]
    fn lengths_over_the_limits_are_refused_before_reading_them() {
        // A 4 GiB key length in a 10-byte command: refused for the limit, nothing allocated.
        let hostile = [1, 0, 1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0];
        let error = Command::decode(&hostile).expect_err("a 4 GiB key is over the limit");
        assert!(matches!(error, DecodeError::TooLong { field: "key", limit: MAX_KEY_BYTES, .. }));

        let key = Bytes::from(vec![b'k'; MAX_KEY_BYTES]);
        let value = Bytes::from(vec![b'v'; MAX_VALUE_BYTES]);
        let largest = Command { session: None, op: Op::Put { key: key.clone(), value } };
        assert_eq!(largest.validate(), Ok(()));
        assert_eq!(Command::decode(&largest.encode()), Ok(largest));

        let long_key = Bytes::from(vec![b'k'; MAX_KEY_BYTES + 1]);
        let too_long = Command { session: None, op: Op::Delete { key: long_key } };
        let expected =
            DecodeError::TooLong { field: "key", length: MAX_KEY_BYTES + 1, limit: MAX_KEY_BYTES };
        assert_eq!(too_long.validate(), Err(expected.clone()));
        assert_eq!(Command::decode(&too_long.encode()), Err(expected));

        let big = Some(Bytes::from(vec![0; MAX_VALUE_BYTES + 1]));
        let op = Op::Cas { key, expected: big, value: None };
        let error = Command { session: None, op }.validate().expect_err("expected is too big");
        assert!(matches!(error, DecodeError::TooLong { field: "expected value", .. }));
    }

    #[test]
    fn errors_read_as_sentences() {
        let error = DecodeError::Truncated { field: "value", needed: 5, remaining: 2 };
        assert_eq!(
            error.to_string(),
            "the command ends early: the value needs 5 bytes but 2 remain"
        );
        assert_eq!(
            DecodeError::UnknownVersion { found: 9 }.to_string(),
            "unknown command format version 9 (this build reads version 1)"
        );
    }

    fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
        prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
    }

    fn command() -> impl Strategy<Value = Command> {
        let session = prop::option::of((any::<u64>(), any::<u64>()))
            .prop_map(|session| session.map(|(client, sequence)| Session { client, sequence }));
        let op = prop_oneof![
            (bytes(16), bytes(64)).prop_map(|(key, value)| Op::Put { key, value }),
            bytes(16).prop_map(|key| Op::Delete { key }),
            (bytes(16), prop::option::of(bytes(64)), prop::option::of(bytes(64)))
                .prop_map(|(key, expected, value)| Op::Cas { key, expected, value }),
        ];
        (session, op).prop_map(|(session, op)| Command { session, op })
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(command in command()) {
            let encoded = command.encode();
            prop_assert_eq!(encoded.len(), command.encoded_len());
            prop_assert_eq!(Command::decode(&encoded), Ok(command));
        }

        #[test]
        fn decode_never_panics_on_arbitrary_bytes(
            bytes in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let _ = Command::decode(&bytes);
        }

        /// Damaged encodings are closer to real hostile input than uniform noise: they get past
        /// the version byte and into the length fields.
        #[test]
        fn decode_never_panics_on_damaged_commands(
            command in command(),
            position in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut bytes = command.encode().to_vec();
            let position = position.index(bytes.len());
            bytes[position] = byte;
            let _ = Command::decode(&bytes);
            let _ = Command::decode(&bytes[..cut.index(bytes.len())]);
        }
    }
}
