//! The record: the unit of everything written to a segment file, and its byte layout.
//!
//! A segment file is nothing but records, one after another, with no padding and no index
//! block. Every record carries its own length and checksum, so a reader needs nothing but the
//! bytes to verify it, and a write torn at any byte is detected by the first record it damaged.
//!
//! ## Framing (all integers little-endian)
//!
//! | offset | size     | field                                                          |
//! |--------|----------|----------------------------------------------------------------|
//! | 0      | 4        | `length`: u32, the number of payload bytes (the type excluded) |
//! | 4      | 4        | `crc`: u32, crc32c (Castagnoli) of the type byte and payload   |
//! | 8      | 1        | `type`: u8, what the payload is (below); 0 is never valid      |
//! | 9      | `length` | `payload`                                                      |
//!
//! The checksum does not cover `length`, but a damaged `length` makes the reader check the
//! wrong span of bytes, which fails the checksum all the same (and a length above
//! [`MAX_PAYLOAD`] is refused before anything is read). A run of zeros, what some file
//! systems leave where a write was lost, is never a valid record: its type is 0, and the
//! crc32c of a zero byte is not 0.
//!
//! ## Payloads
//!
//! Type 1, **header** (37 bytes), the first record of every segment file:
//!
//! | offset | size | field                                                              |
//! |--------|------|--------------------------------------------------------------------|
//! | 0      | 8    | magic: the bytes `skiffwal`                                        |
//! | 8      | 4    | format version: u32, currently 1                                   |
//! | 12     | 8    | sequence: u64, the number in the file's name                       |
//! | 20     | 8    | first index: u64, the index the segment's first entry has          |
//! | 28     | 8    | previous term: u64, the term of the entry at `first index - 1`     |
//! | 36     | 1    | kind: 0 = follows (supersedes the log from `first index` on), 1 = reset (discards every older segment) |
//!
//! Type 2, **entry** (17 bytes + payload bytes):
//!
//! | offset | size | field                                                              |
//! |--------|------|--------------------------------------------------------------------|
//! | 0      | 8    | index: u64                                                         |
//! | 8      | 8    | term: u64                                                          |
//! | 16     | 1    | payload kind: 0 = no-op, 1 = command, 2 = configuration            |
//! | 17     | rest | a command's bytes; a configuration in the layout of `membership.rs`; nothing for a no-op |
//!
//! Kind 2 was added after the first release of format version 1 without a version bump: every
//! log written before it reads as before, and a build that predates it refuses a log holding a
//! configuration entry as malformed rather than misreading it.
//!
//! Type 3, **state** (24 bytes), the hard state and saved commit index:
//!
//! | offset | size | field                                       |
//! |--------|------|---------------------------------------------|
//! | 0      | 8    | term: u64                                   |
//! | 8      | 8    | vote: u64, the node voted for; 0 = no vote  |
//! | 16     | 8    | commit: u64                                 |

use skiff_raft::{Entry, HardState, Index, NodeId, Payload, Term};

use crate::membership;

/// The bytes before a record's payload: length, crc and type.
pub(crate) const FRAME_LEN: usize = 9;

/// The largest payload a record may have (64 MiB). A larger `length` can only be damage, so the
/// reader refuses it without reading; [`Wal::append`](crate::Wal::append) refuses larger
/// entries.
pub const MAX_PAYLOAD: u32 = 64 << 20;

/// The bytes of an entry record's payload before the command.
pub(crate) const ENTRY_FIXED_LEN: usize = 17;

/// The magic bytes that open every header payload.
const MAGIC: &[u8; 8] = b"skiffwal";

/// The format version written in every header; a reader refuses any other.
const VERSION: u32 = 1;

/// The record types, as written in the type byte.
const TYPE_HEADER: u8 = 1;
const TYPE_ENTRY: u8 = 2;
const TYPE_STATE: u8 = 3;

/// The payload sizes of the fixed-size records.
const HEADER_LEN: usize = 37;
const STATE_LEN: usize = 24;

/// What a segment's header says about where the segment stands in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeaderKind {
    /// The segment continues the log before it from `first_index`: every older entry at or after
    /// `first_index` is superseded (none, for a plain roll to a new file; a suffix, for a
    /// truncation), and `prev_term` must match the term of the entry at `first_index - 1`.
    Follows,
    /// The segment starts a new log at `first_index` (after installing a snapshot): every older
    /// segment is discarded, whatever it holds.
    Reset,
}

/// The header record of a segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// The segment's sequence number; equal to the one in its file name.
    pub(crate) sequence: u64,
    /// The index the segment's first entry has (or would have).
    pub(crate) first_index: Index,
    /// The term of the entry at `first_index - 1`.
    pub(crate) prev_term: Term,
    /// How the segment relates to older ones.
    pub(crate) kind: HeaderKind,
}

/// The hard state and the saved commit index, as one state record holds them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SavedState {
    /// The term and vote.
    pub(crate) hard_state: HardState,
    /// The commit index the driver last saved; it may lag the real one.
    pub(crate) commit: Index,
}

/// What an entry record carries, borrowing its bytes from the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryPayload<'a> {
    /// A no-op.
    Noop,
    /// A command's bytes.
    Command(&'a [u8]),
    /// A configuration's bytes, already checked to decode to a valid configuration.
    Membership(&'a [u8]),
}

impl EntryPayload<'_> {
    /// The core's payload, copying the bytes.
    pub(crate) fn to_payload(self) -> Payload {
        match self {
            EntryPayload::Noop => Payload::Noop,
            EntryPayload::Command(command) => {
                Payload::Command(bytes::Bytes::copy_from_slice(command))
            }
            EntryPayload::Membership(bytes) => {
                let (membership, _) =
                    membership::decode(bytes).expect("checked when the record was parsed");
                Payload::Membership(membership)
            }
        }
    }
}

/// One decoded record, borrowing its payload bytes from the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Record<'a> {
    /// A segment header.
    Header(SegmentHeader),
    /// A log entry.
    Entry {
        /// The entry's index.
        index: Index,
        /// The entry's term.
        term: Term,
        /// What the entry carries.
        payload: EntryPayload<'a>,
    },
    /// A hard state and commit index.
    State(SavedState),
}

/// What the bytes at the start of a buffer hold.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// A whole record that passed its checksum, and its length in bytes (frame included).
    Record(Record<'a>, usize),
    /// The start of a record that needs `total` bytes, more than the buffer holds: read more, or
    /// at the end of a file, an incomplete record.
    Incomplete {
        /// The record's length, frame included, or just the frame's when even that is cut.
        total: usize,
    },
    /// Bytes that are not a record: a checksum mismatch, an impossible length or type zero. A
    /// torn write looks like this.
    Damaged(&'static str),
    /// A record whose checksum holds but whose content is impossible (unknown type, wrong size,
    /// bad magic or version). A torn write cannot produce this; damage or a foreign file can.
    Malformed(String),
}

/// Appends the frame and payload of a record of `record_type` to `buffer`; `payload` writes
/// the payload bytes.
fn encode(buffer: &mut Vec<u8>, record_type: u8, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = buffer.len();
    buffer.extend_from_slice(&[0; 8]);
    buffer.push(record_type);
    payload(buffer);
    let length = buffer.len() - start - FRAME_LEN;
    assert!(length <= MAX_PAYLOAD as usize, "record payload of {length} bytes exceeds the limit");
    let fields = length_and_checksum(&buffer[start + 8..]);
    buffer[start..start + 8].copy_from_slice(&fields);
}

/// The first 8 bytes of the frame (length, then crc) of the record whose type byte and payload
/// are `body`. Recovery uses it too, to check a frame whose first bytes a crash zeroed.
pub(crate) fn length_and_checksum(body: &[u8]) -> [u8; 8] {
    assert!(!body.is_empty(), "a record has at least its type byte");
    let mut fields = [0; 8];
    fields[..4].copy_from_slice(&((body.len() - 1) as u32).to_le_bytes());
    fields[4..].copy_from_slice(&crc32c::crc32c(body).to_le_bytes());
    fields
}

/// Appends the record of `entry` to `buffer`.
pub(crate) fn encode_entry(buffer: &mut Vec<u8>, entry: &Entry) {
    encode(buffer, TYPE_ENTRY, |buffer| {
        buffer.extend_from_slice(&entry.index.0.to_le_bytes());
        buffer.extend_from_slice(&entry.term.0.to_le_bytes());
        match &entry.payload {
            Payload::Noop => buffer.push(0),
            Payload::Command(command) => {
                buffer.push(1);
                buffer.extend_from_slice(command);
            }
            Payload::Membership(configuration) => {
                buffer.push(2);
                membership::encode(buffer, configuration);
            }
        }
    });
}

/// Appends the record of a segment header to `buffer`.
pub(crate) fn encode_header(buffer: &mut Vec<u8>, header: &SegmentHeader) {
    encode(buffer, TYPE_HEADER, |buffer| {
        buffer.extend_from_slice(MAGIC);
        buffer.extend_from_slice(&VERSION.to_le_bytes());
        buffer.extend_from_slice(&header.sequence.to_le_bytes());
        buffer.extend_from_slice(&header.first_index.0.to_le_bytes());
        buffer.extend_from_slice(&header.prev_term.0.to_le_bytes());
        buffer.push(match header.kind {
            HeaderKind::Follows => 0,
            HeaderKind::Reset => 1,
        });
    });
}

/// Appends the record of a hard state and commit index to `buffer`.
pub(crate) fn encode_state(buffer: &mut Vec<u8>, state: &SavedState) {
    encode(buffer, TYPE_STATE, |buffer| {
        buffer.extend_from_slice(&state.hard_state.term.0.to_le_bytes());
        let vote = state.hard_state.vote.map_or(0, |node| node.0);
        buffer.extend_from_slice(&vote.to_le_bytes());
        buffer.extend_from_slice(&state.commit.0.to_le_bytes());
    });
}

/// Reads the little-endian u64 at `offset` of `bytes`, which the caller has sized.
fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let array: [u8; 8] = bytes[offset..offset + 8].try_into().expect("the slice is 8 bytes long");
    u64::from_le_bytes(array)
}

/// Reads the little-endian u32 at `offset` of `bytes`, which the caller has sized.
fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let array: [u8; 4] = bytes[offset..offset + 4].try_into().expect("the slice is 4 bytes long");
    u32::from_le_bytes(array)
}

/// How many bytes the record at the start of `bytes` occupies, as far as can be told: the
/// frame's length until the frame is there, then the whole record's. An impossible length
/// counts as just the frame, for [`decode`] to refuse.
pub(crate) fn needed(bytes: &[u8]) -> usize {
    if bytes.len() < FRAME_LEN {
        return FRAME_LEN;
    }
    match u32_at(bytes, 0) {
        length if length > MAX_PAYLOAD => FRAME_LEN,
        length => FRAME_LEN + length as usize,
    }
}

/// Decodes the record at the start of `bytes`, verifying its checksum.
pub(crate) fn decode(bytes: &[u8]) -> Decoded<'_> {
    if bytes.len() < FRAME_LEN {
        return Decoded::Incomplete { total: FRAME_LEN };
    }
    let length = u32_at(bytes, 0);
    if length > MAX_PAYLOAD {
        return Decoded::Damaged("the length is beyond any record's");
    }
    let total = FRAME_LEN + length as usize;
    if bytes.len() < total {
        return Decoded::Incomplete { total };
    }
    let record_type = bytes[8];
    if record_type == 0 {
        return Decoded::Damaged("the type is zero");
    }
    if crc32c::crc32c(&bytes[8..total]) != u32_at(bytes, 4) {
        return Decoded::Damaged("the checksum does not match");
    }
    match parse(record_type, &bytes[FRAME_LEN..total]) {
        Ok(record) => Decoded::Record(record, total),
        Err(reason) => Decoded::Malformed(reason),
    }
}

/// Parses a payload whose checksum has been verified.
fn parse(record_type: u8, payload: &[u8]) -> Result<Record<'_>, String> {
    let expect_len = |expected: usize| {
        if payload.len() == expected {
            Ok(())
        } else {
            Err(format!("a type {record_type} record of {} bytes, not {expected}", payload.len()))
        }
    };
    match record_type {
        TYPE_HEADER => {
            expect_len(HEADER_LEN)?;
            if &payload[..8] != MAGIC {
                return Err("a segment header without the skiffwal magic".into());
            }
            let version = u32_at(payload, 8);
            if version != VERSION {
                return Err(format!("format version {version}; this build reads {VERSION}"));
            }
            let kind = match payload[36] {
                0 => HeaderKind::Follows,
                1 => HeaderKind::Reset,
                other => return Err(format!("unknown segment kind {other}")),
            };
            Ok(Record::Header(SegmentHeader {
                sequence: u64_at(payload, 12),
                first_index: Index(u64_at(payload, 20)),
                prev_term: Term(u64_at(payload, 28)),
                kind,
            }))
        }
        TYPE_ENTRY => {
            if payload.len() < ENTRY_FIXED_LEN {
                return Err(format!("an entry record of {} bytes", payload.len()));
            }
            let index = Index(u64_at(payload, 0));
            let term = Term(u64_at(payload, 8));
            let rest = &payload[ENTRY_FIXED_LEN..];
            let payload = match payload[16] {
                0 if rest.is_empty() => EntryPayload::Noop,
                0 => return Err("a no-op entry with command bytes".into()),
                1 => EntryPayload::Command(rest),
                2 => match membership::decode(rest) {
                    Ok((_, length)) if length == rest.len() => EntryPayload::Membership(rest),
                    Ok(_) => return Err("a configuration entry with bytes after it".into()),
                    Err(reason) => return Err(format!("configuration entry {index}: {reason}")),
                },
                other => return Err(format!("unknown payload kind {other}")),
            };
            Ok(Record::Entry { index, term, payload })
        }
        TYPE_STATE => {
            expect_len(STATE_LEN)?;
            let vote = u64_at(payload, 8);
            Ok(Record::State(SavedState {
                hard_state: HardState {
                    term: Term(u64_at(payload, 0)),
                    vote: (vote != 0).then_some(NodeId(vote)),
                },
                commit: Index(u64_at(payload, 16)),
            }))
        }
        other => Err(format!("unknown record type {other}")),
    }
}

/// Describes the records in `bytes` (a segment file's contents), one line each: the offset,
/// the type and the fields. Stops at the first bytes that are no valid record, saying why (or
/// that only zeros, preallocated space, follow). For
/// operators (a `wal dump` command) and for scenario tests.
pub fn describe_records(bytes: &[u8]) -> Vec<String> {
    let mut lines = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if rest.iter().all(|&byte| byte == 0) {
            lines.push(format!("{offset}: zeros to the end ({} bytes)", rest.len()));
            break;
        }
        let (text, length) = match decode(rest) {
            Decoded::Record(record, length) => (describe(&record), Some(length)),
            Decoded::Incomplete { total } => {
                (format!("incomplete record: {total} bytes long, {} present", rest.len()), None)
            }
            Decoded::Damaged(reason) => (format!("damaged: {reason}"), None),
            Decoded::Malformed(reason) => (format!("malformed: {reason}"), None),
        };
        lines.push(format!("{offset}: {text}"));
        match length {
            Some(length) => offset += length,
            None => break,
        }
    }
    lines
}

/// One record, in words.
fn describe(record: &Record<'_>) -> String {
    match record {
        Record::Header(header) => {
            let kind = match header.kind {
                HeaderKind::Follows => "follows",
                HeaderKind::Reset => "reset",
            };
            format!(
                "header sequence={} first={} prev_term={} {kind}",
                header.sequence, header.first_index, header.prev_term
            )
        }
        Record::Entry { index, term, payload } => {
            let payload = payload.to_payload();
            format!("entry {}", Entry { index: *index, term: *term, payload })
        }
        Record::State(state) => {
            let vote = state.hard_state.vote.map_or("none".to_string(), |node| node.to_string());
            format!("state term={} vote={vote} commit={}", state.hard_state.term, state.commit)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn command(index: u64, term: u64, bytes: &[u8]) -> Entry {
        Entry {
            index: Index(index),
            term: Term(term),
            payload: Payload::Command(Bytes::copy_from_slice(bytes)),
        }
    }

    #[test]
    fn the_frame_is_laid_out_as_documented() {
        let mut buffer = Vec::new();
        encode_entry(&mut buffer, &command(7, 3, b"xy"));
        assert_eq!(buffer.len(), FRAME_LEN + ENTRY_FIXED_LEN + 2);
        assert_eq!(u32_at(&buffer, 0), (ENTRY_FIXED_LEN + 2) as u32, "length");
        assert_eq!(u32_at(&buffer, 4), crc32c::crc32c(&buffer[8..]), "crc over type + payload");
        assert_eq!(buffer[8], TYPE_ENTRY);
        assert_eq!(u64_at(&buffer, 9), 7, "index");
        assert_eq!(u64_at(&buffer, 17), 3, "term");
        assert_eq!(buffer[25], 1, "a command");
        assert_eq!(&buffer[26..], b"xy");
    }

    #[test]
    fn zeros_are_never_a_record() {
        assert_eq!(decode(&[0; 64]), Decoded::Damaged("the type is zero"));
    }

    #[test]
    fn every_record_kind_round_trips() {
        let header = SegmentHeader {
            sequence: 9,
            first_index: Index(100),
            prev_term: Term(4),
            kind: HeaderKind::Reset,
        };
        let state = SavedState {
            hard_state: HardState { term: Term(5), vote: Some(NodeId(2)) },
            commit: Index(99),
        };
        let noop = Entry { index: Index(100), term: Term(5), payload: Payload::Noop };
        let joint = skiff_raft::Membership {
            voters: [2, 3].map(NodeId).into(),
            learners: [4].map(NodeId).into(),
            outgoing: [1, 2].map(NodeId).into(),
        };
        let configuration =
            Entry { index: Index(101), term: Term(5), payload: Payload::Membership(joint.clone()) };
        let mut buffer = Vec::new();
        encode_header(&mut buffer, &header);
        encode_state(&mut buffer, &state);
        encode_entry(&mut buffer, &noop);
        encode_entry(&mut buffer, &configuration);
        let mut rest = &buffer[..];
        let mut records = Vec::new();
        while !rest.is_empty() {
            let Decoded::Record(record, length) = decode(rest) else { panic!("undecodable") };
            records.push(record);
            rest = &rest[length..];
        }
        assert_eq!(
            records,
            vec![
                Record::Header(header),
                Record::State(state),
                Record::Entry { index: Index(100), term: Term(5), payload: EntryPayload::Noop },
                records[3],
            ]
        );
        let Record::Entry { index, payload, .. } = records[3] else { panic!("an entry") };
        assert_eq!((index, payload.to_payload()), (Index(101), Payload::Membership(joint)));
    }

    proptest! {
        /// Every prefix of a record is incomplete, and every single bit flipped in it is caught.
        #[test]
        fn cuts_and_flips_are_detected(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut buffer = Vec::new();
            encode_entry(&mut buffer, &command(1, 1, &bytes));
            for cut in 0..buffer.len() {
                let is_incomplete = matches!(decode(&buffer[..cut]), Decoded::Incomplete { .. });
                prop_assert!(is_incomplete, "cut at {}", cut);
            }
            for bit in 0..buffer.len() * 8 {
                let mut damaged = buffer.clone();
                damaged[bit / 8] ^= 1 << (bit % 8);
                let accepted = matches!(decode(&damaged), Decoded::Record(..));
                prop_assert!(!accepted, "bit {} flipped went unnoticed", bit);
            }
        }
    }
}
