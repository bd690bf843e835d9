//! Segment files: their names, and reading their records in order.
//!
//! A segment is named by its sequence number, zero-padded so that names sort as numbers do:
//! `00000000000000000001.wal`. The sequence only grows; the header inside repeats it, so a
//! renamed or copied file is caught.

use std::io;

use crate::fs::File;
use crate::record::{self, Decoded, Record};

/// The suffix of segment file names.
const SUFFIX: &str = ".wal";

/// The file name of the segment with this sequence number.
pub(crate) fn segment_name(sequence: u64) -> String {
    format!("{sequence:020}{SUFFIX}")
}

/// The sequence number in a segment's file name, or `None` for any other file.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What the next bytes of a segment hold.
#[derive(Debug)]
pub(crate) enum Step<'a> {
    /// A record that passed its checksum, at `offset`, `length` bytes long.
    Record {
        /// The record.
        record: Record<'a>,
        /// Its offset in the file.
        offset: u64,
        /// Its length in bytes, frame included.
        length: u64,
    },
    /// The end of the readable bytes, exactly at a record boundary.
    End,
    /// Bytes at `offset` that are no valid record (damage, a torn write), with the reason.
    Bad {
        /// Where the bad bytes start.
        offset: u64,
        /// What is wrong with them.
        reason: String,
        /// Whether the record's checksum held (then it cannot be a torn write).
        checksum_held: bool,
    },
}

/// The bytes the first read of a [`RecordReader`] asks for. Each later read asks for twice as
/// many as the one before, up to the reader's chunk: a read of a few entries (a follower's next
/// batch, served from the sparse index) copies a few KiB instead of a whole chunk, and a long
/// scan (recovery, a follower catching up) reaches full-size reads after a few steps.
const FIRST_READ: usize = 4 << 10;

/// Reads records one after another from `[start, limit)` of a file, in reads growing up to
/// large chunks, reusing one buffer.
pub(crate) struct RecordReader<'f> {
    /// The file.
    file: &'f dyn File,
    /// Bytes read ahead; `buffer[start..end]` is unread.
    buffer: Vec<u8>,
    /// The first unread byte in `buffer`.
    start: usize,
    /// The end of valid bytes in `buffer`.
    end: usize,
    /// The file offset of `buffer[start]`.
    offset: u64,
    /// The end of the readable bytes of the file.
    limit: u64,
    /// How many bytes to read at a time, at most (unless one record needs more).
    chunk: usize,
    /// How many bytes the next read asks for (unless one record needs more); starts at
    /// `FIRST_READ` and doubles up to `chunk`.
    read_size: usize,
}

impl<'f> RecordReader<'f> {
    /// A reader of `file` from `start` up to `limit`, reading up to `chunk` bytes at a time
    /// into `buffer` (whose allocation is reused).
    pub(crate) fn new(
        file: &'f dyn File,
        start: u64,
        limit: u64,
        chunk: usize,
        buffer: Vec<u8>,
    ) -> RecordReader<'f> {
        let read_size = FIRST_READ.min(chunk);
        RecordReader { file, buffer, start: 0, end: 0, offset: start, limit, chunk, read_size }
    }

    /// The file offset of the next unread byte.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Gives the buffer back for reuse.
    pub(crate) fn into_buffer(self) -> Vec<u8> {
        self.buffer
    }

    /// The next record, the end, or bad bytes. After `Bad` or `End` the reader stays put.
    pub(crate) fn next(&mut self) -> io::Result<Step<'_>> {
        loop {
            let needed = record::needed(&self.buffer[self.start..self.end]);
            let buffered = self.end - self.start;
            if buffered >= needed || self.offset + buffered as u64 >= self.limit {
                break;
            }
            self.refill(needed)?;
        }
        // Borrow the fields apart: the record borrows the buffer while the position moves on.
        let RecordReader { buffer, start, end, offset, .. } = self;
        let at = *offset;
        let bad =
            |reason: String, checksum_held: bool| Step::Bad { offset: at, reason, checksum_held };
        Ok(match record::decode(&buffer[*start..*end]) {
            Decoded::Record(record, length) => {
                *start += length;
                *offset += length as u64;
                Step::Record { record, offset: at, length: length as u64 }
            }
            Decoded::Incomplete { .. } if start == end => Step::End,
            Decoded::Incomplete { total } => {
                let buffered = *end - *start;
                bad(
                    format!("an incomplete record: {total} bytes long, {buffered} before the end"),
                    false,
                )
            }
            Decoded::Damaged(reason) => bad(reason.to_string(), false),
            Decoded::Malformed(reason) => bad(reason, true),
        })
    }

    /// Reads more of the file so that at least `needed` bytes (or all up to the limit) are
    /// buffered, and `read_size` more if the file has them.
    fn refill(&mut self, needed: usize) -> io::Result<()> {
        self.buffer.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        let file_end = self.offset + self.end as u64;
        let wanted = needed.max(self.end + self.read_size) - self.end;
        let to_read = (wanted as u64).min(self.limit - file_end) as usize;
        self.read_size = (self.read_size * 2).min(self.chunk);
        if self.buffer.len() < self.end + to_read {
            self.buffer.resize(self.end + to_read, 0);
        }
        let target = &mut self.buffer[self.end..self.end + to_read];
        self.file.read_exact_at(target, file_end)?;
        self.end += to_read;
        Ok(())
    }
}

/// Where the first record whose checksum holds starts in `bytes`, after its first byte, if
/// anywhere. Used on a bad record in the last segment: a write torn in order leaves nothing
/// valid after the tear, so a valid record there means either sectors of the last batch that
/// reached the disk out of order, or damage in the middle of the log (see `recover.rs`).
pub(crate) fn first_record_after_first_byte(bytes: &[u8]) -> Option<usize> {
    (1..bytes.len()).find(|&start| {
        matches!(record::decode(&bytes[start..]), Decoded::Record(..) | Decoded::Malformed(_))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_numerically() {
        assert_eq!(segment_name(42), "00000000000000000042.wal");
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert!(segment_name(9) < segment_name(10));
        assert_eq!(parse_segment_name("identity"), None);
        assert_eq!(parse_segment_name("42.wal"), None);
    }
}
