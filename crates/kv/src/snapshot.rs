//! Snapshots: the whole store as one checksummed byte stream (Raft §7).
//!
//! A node compacts its log by saving a snapshot of the store at its applied index and
//! discarding the entries before it; a follower too far behind receives the leader's snapshot
//! instead of those entries. Either way the snapshot must bring back exactly the store that
//! wrote it, sessions included: a node restored without its sessions would apply a retry that
//! the other nodes answer from their sessions, and the replicas would diverge.
//!
//! [`Store::write_snapshot`] streams to any [`Write`] and [`Store::restore`] from any [`Read`];
//! neither holds a second copy of the data. Both buffer internally, so an unbuffered file is
//! fine.
//!
//! ## Byte layout, format version 1 (all integers little-endian)
//!
//! A **byte string** is a `u32` length `n` followed by `n` bytes; an **optional byte string**
//! is a marker byte, `0` (absent, nothing follows) or `1` (a byte string follows).
//!
//! Header (36 bytes):
//!
//! | offset | size | field                                                               |
//! |--------|------|---------------------------------------------------------------------|
//! | 0      | 8    | magic: the bytes `skiff-kv` ([`SNAPSHOT_MAGIC`])                     |
//! | 8      | 4    | format version: `u32`, currently 1 ([`SNAPSHOT_FORMAT_VERSION`])     |
//! | 12     | 8    | applied index: `u64`, the last log entry the snapshot contains      |
//! | 20     | 8    | session bound: `u64`, the store's `max_sessions`, at least 1        |
//! | 28     | 8    | session count: `u64`, at most the session bound                     |
//!
//! Then `session count` session records, in strictly increasing client order:
//!
//! | offset | size | field                                                                |
//! |--------|------|----------------------------------------------------------------------|
//! | 0      | 8    | client: `u64`                                                        |
//! | 8      | 8    | sequence: `u64`, the last applied                                    |
//! | 16     | 8    | applied at: `u64`, the index that sequence was applied at (≥ 1)      |
//! | 24     | 8    | last active: `u64`, ≥ applied at, ≤ the applied index, unique        |
//! | 32     | 1    | outcome: `1` = put, `2` = deleted, `3` = CAS succeeded, `4` = CAS failed |
//! | 33     | 1    | (deleted only) existed: `0` or `1`                                   |
//! | 33     | 1+   | (CAS failed only) current value: optional byte string                |
//!
//! Then the data: a key count (`u64`), and that many key records, in strictly increasing key
//! order (bytewise):
//!
//! | size | field                                                                         |
//! |------|-------------------------------------------------------------------------------|
//! | 4+   | key: byte string, at most [`MAX_KEY_BYTES`]                                   |
//! | 8    | revision: `u64`, at least 1, at most the applied index                        |
//! | 4+   | value: byte string, at most [`MAX_VALUE_BYTES`]                               |
//!
//! Last, the trailer: a `u32` crc32c (Castagnoli) of every byte before it, from the magic on.
//! Nothing may follow it.
//!
//! ## Reading untrusted snapshots
//! A snapshot may come from a damaged disk or from another node, so [`Store::restore`] trusts
//! nothing: every length is checked against its limit before anything is allocated (a record
//! allocates at most [`MAX_VALUE_BYTES`] before its bytes are read; counts allocate nothing),
//! every order and bound in the tables above is checked, and the checksum is compared at the
//! end. Damage is usually caught by the checksum, but since that is read last, damage to a
//! length or a count may first show up as a truncation or a broken order; either way the
//! result is an error, never a panic and never a store that differs from the one written.

use std::io::{self, BufReader, BufWriter, ErrorKind, Read, Write};

use bytes::Bytes;

use crate::key::Key;
use crate::session::{SessionRecord, Sessions};
use crate::{MAX_KEY_BYTES, MAX_VALUE_BYTES, Outcome, Store, Value};

/// The bytes that open every snapshot.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"skiff-kv";

/// The snapshot format version [`Store::write_snapshot`] writes and [`Store::restore`] reads.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// The outcome tags of session records.
const OUTCOME_PUT: u8 = 1;
const OUTCOME_DELETED: u8 = 2;
const OUTCOME_CAS_SUCCEEDED: u8 = 3;
const OUTCOME_CAS_FAILED: u8 = 4;

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading the input failed.
    #[error("reading the snapshot failed: {0}")]
    Io(#[from] io::Error),
    /// The input does not start with [`SNAPSHOT_MAGIC`].
    #[error("not a skiff-kv snapshot: it starts with {found:02x?}")]
    BadMagic {
        /// The first eight bytes.
        found: [u8; 8],
    },
    /// The snapshot's format version is not one this build reads.
    #[error(
        "unknown snapshot format version {found} \
         (this build reads version {SNAPSHOT_FORMAT_VERSION})"
    )]
    UnknownVersion {
        /// The version found.
        found: u32,
    },
    /// The input ended in the middle of the snapshot.
    #[error("the snapshot ends early, in the {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// A field breaks the format's rules (an order, a bound, a limit, an unknown tag).
    #[error("the snapshot is malformed: {reason}")]
    Malformed {
        /// What is wrong, as a sentence.
        reason: String,
    },
    /// The trailer's checksum does not match the bytes read.
    #[error("the snapshot's checksum is {stored:#010x} but its bytes sum to {computed:#010x}")]
    ChecksumMismatch {
        /// The crc32c in the trailer.
        stored: u32,
        /// The crc32c of the bytes before it.
        computed: u32,
    },
    /// Bytes follow the trailer.
    #[error("bytes follow the end of the snapshot")]
    TrailingBytes,
}

/// A shorthand for a [`SnapshotError::Malformed`].
fn malformed(reason: String) -> SnapshotError {
    SnapshotError::Malformed { reason }
}

impl Store {
    /// Writes a checksummed snapshot of everything (data, sessions, applied index).
    ///
    /// The layout is in the module documentation. The output is flushed before returning; on
    /// an error, what was written is a torn snapshot that [`Store::restore`] refuses.
    pub fn write_snapshot(&self, out: &mut impl Write) -> io::Result<()> {
        let mut sink = Checksummed { inner: BufWriter::new(out), crc: 0 };
        let mut record = Vec::with_capacity(64);
        record.extend_from_slice(SNAPSHOT_MAGIC);
        record.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
        record.extend_from_slice(&self.applied.to_le_bytes());
        record.extend_from_slice(&(self.sessions.max() as u64).to_le_bytes());
        record.extend_from_slice(&(self.sessions.len() as u64).to_le_bytes());
        sink.write(&record)?;

        let mut sessions_written = 0;
        for (client, session) in self.sessions.iter() {
            record.clear();
            encode_session(&mut record, client, session);
            sink.write(&record)?;
            sessions_written += 1;
        }
        assert_eq!(sessions_written, self.sessions.len(), "the session count in the header");

        sink.write(&(self.data.len() as u64).to_le_bytes())?;
        let mut keys_written = 0;
        for (key, value) in &self.data {
            record.clear();
            put_bytes(&mut record, key.as_bytes());
            record.extend_from_slice(&value.revision.to_le_bytes());
            put_length(&mut record, value.data.len());
            sink.write(&record)?;
            // The value goes straight to the buffer: no copy of up to a MiB into `record`.
            sink.write(&value.data)?;
            keys_written += 1;
        }
        assert_eq!(keys_written, self.data.len(), "the key count in the header");

        let crc = sink.crc;
        let mut out = sink.inner;
        out.write_all(&crc.to_le_bytes())?;
        out.flush()
    }

    /// Restores a store from a snapshot; corrupt or truncated input is an error, never a panic.
    ///
    /// The whole input must be one snapshot: bytes after the trailer are an error.
    pub fn restore(input: &mut impl Read) -> Result<Store, SnapshotError> {
        let mut source = Source { inner: BufReader::new(input), crc: 0 };
        let (applied, max_sessions, session_count) = read_header(&mut source)?;
        let mut store = Store::with_max_sessions(max_sessions);
        store.applied = applied;
        read_sessions(&mut source, &mut store.sessions, session_count, applied)?;
        read_data(&mut source, &mut store)?;

        let computed = source.crc;
        let stored = u32::from_le_bytes(source.array_unsummed("checksum")?);
        if stored != computed {
            return Err(SnapshotError::ChecksumMismatch { stored, computed });
        }
        if !source.at_end()? {
            return Err(SnapshotError::TrailingBytes);
        }
        assert!(store.sessions.last_activity() <= store.applied, "checked per session");
        Ok(store)
    }
}

/// Appends a session record.
fn encode_session(out: &mut Vec<u8>, client: u64, session: &SessionRecord) {
    out.extend_from_slice(&client.to_le_bytes());
    out.extend_from_slice(&session.sequence.to_le_bytes());
    out.extend_from_slice(&session.applied_at.to_le_bytes());
    out.extend_from_slice(&session.last_active.to_le_bytes());
    match &session.outcome {
        Outcome::Put => out.push(OUTCOME_PUT),
        Outcome::Deleted { existed } => {
            out.push(OUTCOME_DELETED);
            out.push(u8::from(*existed));
        }
        Outcome::CasSucceeded => out.push(OUTCOME_CAS_SUCCEEDED),
        Outcome::CasFailed { current } => {
            out.push(OUTCOME_CAS_FAILED);
            match current {
                None => out.push(0),
                Some(current) => {
                    out.push(1);
                    put_bytes(out, current);
                }
            }
        }
        outcome @ (Outcome::StaleSequence { .. } | Outcome::Invalid { .. }) => {
            unreachable!("sessions never record {outcome:?}")
        }
    }
}

/// Appends a byte string.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_length(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Appends a byte string's length. Keys and values in a store passed the command limits, far
/// below 4 GiB.
fn put_length(out: &mut Vec<u8>, length: usize) {
    let length = u32::try_from(length).expect("stored keys and values are within the limits");
    out.extend_from_slice(&length.to_le_bytes());
}

/// Reads the header; returns the applied index, the session bound and the session count.
fn read_header<R: Read>(source: &mut Source<R>) -> Result<(u64, usize, u64), SnapshotError> {
    let magic: [u8; 8] = source.array("magic")?;
    if &magic != SNAPSHOT_MAGIC {
        return Err(SnapshotError::BadMagic { found: magic });
    }
    let version = source.u32("format version")?;
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(SnapshotError::UnknownVersion { found: version });
    }
    let applied = source.u64("applied index")?;
    let max_sessions = source.u64("session bound")?;
    let max_sessions = match usize::try_from(max_sessions) {
        Ok(max) if max >= 1 => max,
        _ => return Err(malformed(format!("a session bound of {max_sessions}"))),
    };
    let session_count = source.u64("session count")?;
    if session_count > max_sessions as u64 {
        return Err(malformed(format!(
            "{session_count} sessions, over the bound of {max_sessions}"
        )));
    }
    Ok((applied, max_sessions, session_count))
}

/// Reads `count` session records into `sessions`.
fn read_sessions<R: Read>(
    source: &mut Source<R>,
    sessions: &mut Sessions,
    count: u64,
    applied: u64,
) -> Result<(), SnapshotError> {
    for _ in 0..count {
        let client = source.u64("session client")?;
        let sequence = source.u64("session sequence")?;
        let applied_at = source.u64("session applied index")?;
        let last_active = source.u64("session last activity")?;
        let outcome = match source.u8("session outcome")? {
            OUTCOME_PUT => Outcome::Put,
            OUTCOME_DELETED => Outcome::Deleted { existed: source.flag("session existed flag")? },
            OUTCOME_CAS_SUCCEEDED => Outcome::CasSucceeded,
            OUTCOME_CAS_FAILED => {
                let current = if source.flag("session current value marker")? {
                    Some(source.bytes("session current value", MAX_VALUE_BYTES)?)
                } else {
                    None
                };
                Outcome::CasFailed { current }
            }
            tag => return Err(malformed(format!("client {client}'s session outcome tag {tag}"))),
        };
        if last_active > applied {
            return Err(malformed(format!(
                "client {client}'s session was active at {last_active}, \
                 after the applied index {applied}"
            )));
        }
        let record = SessionRecord { sequence, outcome, applied_at, last_active };
        sessions.restore(client, record).map_err(malformed)?;
    }
    Ok(())
}

/// Reads the key count and the key records into `store`.
fn read_data<R: Read>(source: &mut Source<R>, store: &mut Store) -> Result<(), SnapshotError> {
    let count = source.u64("key count")?;
    for _ in 0..count {
        let key = source.bytes("key", MAX_KEY_BYTES)?;
        let revision = source.u64("revision")?;
        if revision == 0 || revision > store.applied {
            return Err(malformed(format!(
                "revision {revision} outside 1..={} (the applied index)",
                store.applied
            )));
        }
        let data = source.bytes("value", MAX_VALUE_BYTES)?;
        if let Some((last, _)) = store.data.get_max()
            && key.as_ref() <= last.as_bytes()
        {
            return Err(malformed(format!("key {key:?} follows key {last:?}")));
        }
        store.data_bytes += (key.len() + data.len()) as u64;
        store.data.insert(Key::new(key), Value { data, revision });
    }
    Ok(())
}

/// A writer that keeps the crc32c of everything written through it.
struct Checksummed<W: Write> {
    /// Where the bytes go.
    inner: W,
    /// The crc32c of the bytes written so far.
    crc: u32,
}

impl<W: Write> Checksummed<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.write_all(bytes)?;
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        Ok(())
    }
}

/// A reader that keeps the crc32c of everything read through it, and turns an early end of
/// input into [`SnapshotError::Truncated`].
struct Source<R: Read> {
    /// Where the bytes come from.
    inner: R,
    /// The crc32c of the bytes read so far (except by [`Source::array_unsummed`]).
    crc: u32,
}

impl<R: Read> Source<R> {
    /// Fills `buffer`, without adding it to the checksum.
    fn fill(&mut self, buffer: &mut [u8], field: &'static str) -> Result<(), SnapshotError> {
        self.inner.read_exact(buffer).map_err(|error| match error.kind() {
            ErrorKind::UnexpectedEof => SnapshotError::Truncated { field },
            _ => SnapshotError::Io(error),
        })
    }

    fn array_unsummed<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], SnapshotError> {
        let mut buffer = [0; N];
        self.fill(&mut buffer, field)?;
        Ok(buffer)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], SnapshotError> {
        let buffer = self.array_unsummed(field)?;
        self.crc = crc32c::crc32c_append(self.crc, &buffer);
        Ok(buffer)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, SnapshotError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A byte that must be 0 (false) or 1 (true).
    fn flag(&mut self, field: &'static str) -> Result<bool, SnapshotError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(malformed(format!("the {field} is {other}, neither 0 nor 1"))),
        }
    }

    /// A byte string of at most `limit` bytes; the limit is checked before allocating.
    fn bytes(&mut self, field: &'static str, limit: usize) -> Result<Bytes, SnapshotError> {
        let length = self.u32(field)?;
        let length = usize::try_from(length).unwrap_or(usize::MAX);
        if length > limit {
            return Err(malformed(format!(
                "a {field} of {length} bytes, over the limit of {limit}"
            )));
        }
        let mut buffer = vec![0; length];
        self.fill(&mut buffer, field)?;
        self.crc = crc32c::crc32c_append(self.crc, &buffer);
        Ok(Bytes::from(buffer))
    }

    /// Whether the input has no more bytes.
    fn at_end(&mut self) -> Result<bool, SnapshotError> {
        let mut byte = [0; 1];
        loop {
            match self.inner.read(&mut byte) {
                Ok(read) => return Ok(read == 0),
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => return Err(SnapshotError::Io(error)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, Op, Session};

    fn bytes(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    fn command(session: Option<(u64, u64)>, op: Op) -> Bytes {
        let session = session.map(|(client, sequence)| Session { client, sequence });
        Command { session, op }.encode()
    }

    /// A small store with every kind of recorded outcome and a skipped entry.
    fn sample_store() -> Store {
        let mut store = Store::with_max_sessions(8);
        store.apply(1, &command(Some((1, 1)), Op::Put { key: bytes("a"), value: bytes("one") }));
        store.apply(2, &command(None, Op::Put { key: bytes("b"), value: Bytes::new() }));
        store.apply(3, &command(Some((2, 4)), Op::Delete { key: bytes("zz") }));
        let op = Op::Cas { key: bytes("a"), expected: None, value: Some(bytes("x")) };
        store.apply(4, &command(Some((3, 1)), op));
        let op = Op::Cas { key: bytes("c"), expected: None, value: Some(bytes("")) };
        store.apply(5, &command(Some((4, 9)), op));
        store.apply(6, &command(Some((1, 1)), Op::Delete { key: bytes("a") }));
        store.skip(7);
        store
    }

    fn snapshot_of(store: &Store) -> Vec<u8> {
        let mut out = Vec::new();
        store.write_snapshot(&mut out).expect("writing to a Vec cannot fail");
        out
    }

    fn restore(bytes: &[u8]) -> Result<Store, SnapshotError> {
        Store::restore(&mut &bytes[..])
    }

    /// Recomputes the trailer, for tests of damage the checksum alone would catch.
    fn reseal(bytes: &mut Vec<u8>) {
        let body = bytes.len() - 4;
        let crc = crc32c::crc32c(&bytes[..body]);
        bytes.truncate(body);
        bytes.extend_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn a_snapshot_restores_the_same_store() {
        let store = sample_store();
        assert_eq!(store.session_count(), 4);
        let restored = restore(&snapshot_of(&store)).expect("a fresh snapshot restores");
        assert_eq!(restored, store);
        assert_eq!(restored.data_bytes(), store.data_bytes());
        assert_eq!(restored.max_sessions(), 8, "the session bound travels with the snapshot");
        let empty = Store::new();
        assert_eq!(restore(&snapshot_of(&empty)).expect("an empty store restores"), empty);
    }

    #[test]
    fn the_header_matches_the_documented_layout() {
        let snapshot = snapshot_of(&Store::with_max_sessions(3));
        let expected: Vec<u8> =
            [&b"skiff-kv"[..], &[1, 0, 0, 0], &[0; 8], &[3, 0, 0, 0, 0, 0, 0, 0], &[0; 8], &[0; 8]]
                .concat();
        assert_eq!(snapshot[..snapshot.len() - 4], expected[..], "header, no sessions, no keys");
        let crc = crc32c::crc32c(&expected).to_le_bytes();
        assert_eq!(snapshot[snapshot.len() - 4..], crc);
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let snapshot = snapshot_of(&sample_store());
        for bit in 0..snapshot.len() * 8 {
            let mut damaged = snapshot.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(restore(&damaged).is_err(), "a flip of bit {bit} went unnoticed");
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let snapshot = snapshot_of(&sample_store());
        for length in 0..snapshot.len() {
            let error = restore(&snapshot[..length]).expect_err("a truncated snapshot is refused");
            assert!(
                matches!(error, SnapshotError::Truncated { .. }),
                "a cut at {length} gave {error}"
            );
        }
    }

    #[test]
    fn bytes_after_the_trailer_are_refused() {
        let mut snapshot = snapshot_of(&sample_store());
        snapshot.push(0);
        assert!(matches!(restore(&snapshot), Err(SnapshotError::TrailingBytes)));
    }

    #[test]
    fn a_damaged_body_fails_the_checksum() {
        let mut snapshot = snapshot_of(&sample_store());
        // Client 1's sequence number: no rule constrains it, only the checksum protects it.
        snapshot[44] ^= 0x20;
        let error = restore(&snapshot).expect_err("a flipped sequence is refused");
        assert!(matches!(error, SnapshotError::ChecksumMismatch { .. }), "{error}");
    }

    #[test]
    fn the_magic_and_version_are_checked() {
        let mut snapshot = snapshot_of(&Store::new());
        snapshot[0] = b'S';
        assert!(matches!(restore(&snapshot), Err(SnapshotError::BadMagic { .. })));
        let mut snapshot = snapshot_of(&Store::new());
        snapshot[8] = 2;
        let error = restore(&snapshot).expect_err("version 2 is unknown");
        assert_eq!(
            error.to_string(),
            "unknown snapshot format version 2 (this build reads version 1)"
        );
    }

    /// Snapshots whose checksum is right but whose contents break the rules: what a buggy or
    /// hostile writer could send.
    #[test]
    fn a_well_sealed_but_malformed_snapshot_is_refused() {
        let mut store = Store::with_max_sessions(4);
        store.apply(1, &command(Some((1, 1)), Op::Put { key: bytes("a"), value: bytes("v") }));
        store.apply(2, &command(None, Op::Put { key: bytes("b"), value: bytes("v") }));
        let snapshot = snapshot_of(&store);
        // Offsets: header 36; session 36..69 (33 bytes, a put); key count 69..77;
        // key "a" at 77: length 77..81, key 81, revision 82..90, value length 90..94, value 94;
        // key "b" at 95: length 95..99, key 99, revision 100..108.
        let damage = |offset: usize, replacement: &[u8]| {
            let mut damaged = snapshot.clone();
            damaged[offset..offset + replacement.len()].copy_from_slice(replacement);
            reseal(&mut damaged);
            restore(&damaged).expect_err("a malformed snapshot is refused").to_string()
        };
        assert_eq!(restore(&snapshot).expect("the original is fine"), store);
        assert!(damage(20, &[0; 8]).contains("a session bound of 0"));
        assert!(damage(28, &[5]).contains("5 sessions, over the bound of 4"));
        assert!(damage(68, &[7]).contains("session outcome tag 7"));
        assert!(damage(60, &[9]).contains("after the applied index 2"));
        assert!(damage(99, b"a").contains("follows key"), "keys out of order");
        assert!(damage(100, &[0]).contains("revision 0"));
        assert!(damage(100, &[3]).contains("revision 3 outside 1..=2"));
        assert!(damage(77, &[0xff, 0xff, 0xff, 0x7f]).contains("over the limit of 4096"));
        assert!(damage(90, &[0xff, 0xff, 0xff, 0xff]).contains("over the limit of 1048576"));
        // A huge key count runs into the trailer, allocating nothing on the way (the trailer,
        // read as a key's length, is over the key limit).
        assert!(damage(69, &[0xff; 8]).contains("over the limit of 4096"));
    }

    #[test]
    fn io_errors_are_reported() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let error = Store::restore(&mut Failing).expect_err("the read fails");
        assert!(matches!(error, SnapshotError::Io(_)));
        assert_eq!(error.to_string(), "reading the snapshot failed: disk on fire");
    }

    #[test]
    fn a_restored_store_continues_like_the_original() {
        let mut original = sample_store();
        let mut restored = restore(&snapshot_of(&original)).expect("a fresh snapshot restores");
        let retry = command(Some((4, 9)), Op::Delete { key: bytes("ignored") });
        let next = command(Some((5, 1)), Op::Put { key: bytes("d"), value: bytes("v") });
        for (index, entry) in [(8, &retry), (9, &next)] {
            assert_eq!(restored.apply(index, entry), original.apply(index, entry));
        }
        assert_eq!(restored.apply(10, &retry), Outcome::CasSucceeded, "the session survived");
        original.apply(10, &retry);
        assert_eq!(restored, original);
    }
}
