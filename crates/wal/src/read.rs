//! Reading entries back: the record loop that [`Wal::read`](crate::Wal::read) and
//! [`SealedRead`] share, and [`SealedRead`] itself, a read planned with the log and run
//! without it.
//!
//! ## Why reads of sealed segments run elsewhere
//! A leader feeding a follower far behind reads its log a chunk at a time, hundreds of KiB of
//! records to check and decode. Under [`GroupCommit`](crate::GroupCommit) every call on the log
//! runs on its one writer thread, so each such read delayed the next batch's write and fsync,
//! and with it every client's commit (measured while a follower caught up at 16 MiB/s: about
//! 130 reads a second, 111 µs each at the median and 1.5 ms at the 99th percentile, in front
//! of fsyncs of about 0.2 ms). A sealed segment never changes after its roll (a truncation
//! supersedes it with a new segment; a compaction only deletes it), so nothing but finding it
//! needs the log: [`Wal::plan_sealed_read`](crate::Wal::plan_sealed_read) locates the records
//! and opens the files (a handle keeps reading a file that a compaction deletes meanwhile),
//! and [`SealedReader::run`] reads them on any thread. A read that starts in the tail segment,
//! which the writer is appending to, stays with the log.
//!
//! What a planned read returns may be stale by the time it is used: a segment superseded
//! after the plan still holds the entries it held. That is the same as for any read whose
//! answer arrives after the log moved on, and the caller already deals with it (the core
//! checks every entry read against its own log).

use std::path::PathBuf;

use skiff_raft::{Entry, Index, Term};

use crate::error::{Error, Result};
use crate::fs::File;
use crate::record::Record;
use crate::segment::{self, RecordReader, Step};

/// The bytes read from a segment at a time when serving reads.
pub(crate) const READ_CHUNK: usize = 256 << 10;

/// Where the previous read stopped, so that the next one, if it continues there, need not
/// search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// The segment read.
    pub(crate) sequence: u64,
    /// The next index.
    pub(crate) index: Index,
    /// The offset of its record.
    pub(crate) offset: u64,
}

/// How a read of one segment ended.
pub(crate) enum SegmentRead {
    /// The read is complete (the range or the byte budget is exhausted).
    Done,
    /// The segment's live entries ran out; the read continues in the next segment.
    Continue,
}

/// A read in progress, across segments.
pub(crate) struct ReadProgress {
    /// The next index to read.
    pub(crate) next: Index,
    /// One past the last index wanted.
    pub(crate) high: Index,
    /// The byte budget, by `Entry::size`.
    pub(crate) max_bytes: u64,
    /// The bytes read so far, by `Entry::size`.
    pub(crate) bytes: u64,
    /// The entries read so far.
    pub(crate) entries: Vec<Entry>,
    /// Where the next entry's record starts, once the read stops inside a segment.
    pub(crate) stopped_at: Option<u64>,
}

impl ReadProgress {
    /// A read of `[low, high)` within `max_bytes`, nothing read yet.
    pub(crate) fn new(low: Index, high: Index, max_bytes: u64) -> ReadProgress {
        ReadProgress { next: low, high, max_bytes, bytes: 0, entries: Vec::new(), stopped_at: None }
    }
}

/// One segment's part of a read: where its records are and what it holds.
pub(crate) struct SegmentSpan<'a> {
    /// The segment's file.
    pub(crate) file: &'a dyn File,
    /// The file's path, built only to name it in an error.
    pub(crate) path: &'a dyn Fn() -> PathBuf,
    /// Where to start reading records.
    pub(crate) offset: u64,
    /// The end of its records.
    pub(crate) limit: u64,
    /// The index of its last live entry.
    pub(crate) last_index: Index,
}

/// Reads entries from one segment into `progress`, checking each record's checksum, its index
/// against the one expected next and its term against `term` (the log's term at an index).
/// Returns the read buffer for reuse along with the outcome.
pub(crate) fn read_segment(
    span: &SegmentSpan<'_>,
    term: impl Fn(Index) -> Option<Term>,
    progress: &mut ReadProgress,
    buffer: Vec<u8>,
) -> (Result<SegmentRead>, Vec<u8>) {
    let corrupt =
        |offset: u64, reason: String| Error::Corrupt { file: (span.path)(), offset, reason };
    let mut reader = RecordReader::new(span.file, span.offset, span.limit, READ_CHUNK, buffer);
    let outcome = loop {
        let step = match reader.next() {
            Ok(step) => step,
            Err(source) => {
                break Err(Error::Io { operation: "read", path: (span.path)(), source });
            }
        };
        let (index, entry_term, payload, at, length) = match step {
            Step::Record { record: Record::Entry { index, term, payload }, offset, length } => {
                (index, term, payload, offset, length)
            }
            Step::Record { .. } => continue,
            Step::End => {
                let reason = format!("the segment ends before entry {}", progress.next);
                break Err(corrupt(reader.offset(), reason));
            }
            Step::Bad { offset, reason, .. } => break Err(corrupt(offset, reason)),
        };
        if index < progress.next {
            continue;
        }
        if index != progress.next {
            break Err(corrupt(at, format!("entry {index} where {} belongs", progress.next)));
        }
        if term(index) != Some(entry_term) {
            let reason = format!("entry {index} has term {entry_term}, the log says otherwise");
            break Err(corrupt(at, reason));
        }
        let entry = Entry { index, term: entry_term, payload: payload.to_payload() };
        if !progress.entries.is_empty() && progress.bytes + entry.size() > progress.max_bytes {
            progress.stopped_at = Some(at);
            break Ok(SegmentRead::Done);
        }
        progress.bytes += entry.size();
        progress.entries.push(entry);
        progress.next = index.next();
        if progress.next > span.last_index && progress.next < progress.high {
            break Ok(SegmentRead::Continue);
        }
        if progress.next >= progress.high {
            let continues_here = progress.next <= span.last_index;
            progress.stopped_at = continues_here.then_some(at + length);
            break Ok(SegmentRead::Done);
        }
    };
    (outcome, reader.into_buffer())
}

/// A sealed segment a [`SealedRead`] reads, opened when the read was planned.
#[derive(Debug)]
pub(crate) struct SealedSegment {
    /// The number in its file's name.
    pub(crate) sequence: u64,
    /// Its file.
    pub(crate) file: Box<dyn File>,
    /// The bytes of its records.
    pub(crate) size: u64,
    /// The index of its last live entry when the read was planned.
    pub(crate) last_index: Index,
}

/// A read of entries from sealed segments only, planned with the log by
/// [`Wal::plan_sealed_read`](crate::Wal::plan_sealed_read) and run without it, on any thread,
/// by [`SealedReader::run`] (see the module documentation). It returns at least one entry and
/// may stop short of what was asked where the sealed segments end: a prefix of the range.
#[derive(Debug)]
pub struct SealedRead {
    /// The log's directory, to name a file in an error.
    pub(crate) dir: PathBuf,
    /// The first index wanted.
    pub(crate) low: Index,
    /// One past the last index wanted.
    pub(crate) high: Index,
    /// The byte budget, by `Entry::size`.
    pub(crate) max_bytes: u64,
    /// Where the sparse index says the first segment's read starts.
    pub(crate) offset: u64,
    /// The segments to read, in order, the first holding `low`.
    pub(crate) segments: Vec<SealedSegment>,
    /// `(first index, term)` of every term with entries in the segments, as the log had them.
    pub(crate) term_starts: Vec<(Index, Term)>,
}

impl SealedRead {
    /// The term of the entry at `index` as the log had it, for indexes in the planned segments.
    fn term(&self, index: Index) -> Option<Term> {
        let position = self.term_starts.partition_point(|&(start, _)| start <= index);
        position.checked_sub(1).map(|position| self.term_starts[position].1)
    }
}

/// Runs [`SealedRead`]s, one after another, remembering where the last one stopped so that a
/// read continuing there starts at once (a read from the sparse index's point scans up to
/// [`Options::index_interval`](crate::Options::index_interval) bytes first), and reusing its
/// buffer.
#[derive(Debug, Default)]
pub struct SealedReader {
    /// Where the previous read stopped.
    cursor: Option<Cursor>,
    /// The read buffer.
    buffer: Vec<u8>,
}

impl SealedReader {
    /// A reader with nothing read yet.
    pub fn new() -> SealedReader {
        SealedReader::default()
    }

    /// Reads what `read` planned: entries from `read.low`, within its byte budget, up to its
    /// end or the end of its segments, whichever comes first; at least one entry.
    ///
    /// # Errors
    /// An I/O error, or a record that fails its checksum or is not the entry the log had at
    /// its index ([`Error::Corrupt`]).
    pub fn run(&mut self, read: &SealedRead) -> Result<Vec<Entry>> {
        let mut progress = ReadProgress::new(read.low, read.high, read.max_bytes);
        let mut offset = match self.cursor {
            Some(cursor)
                if cursor.index == read.low
                    && read.segments.first().is_some_and(|s| s.sequence == cursor.sequence) =>
            {
                cursor.offset
            }
            _ => read.offset,
        };
        self.cursor = None;
        for segment in &read.segments {
            let path = || read.dir.join(segment::segment_name(segment.sequence));
            let span = SegmentSpan {
                file: &*segment.file,
                path: &path,
                offset,
                limit: segment.size,
                last_index: segment.last_index,
            };
            let buffer = std::mem::take(&mut self.buffer);
            let (outcome, buffer) =
                read_segment(&span, |index| read.term(index), &mut progress, buffer);
            self.buffer = buffer;
            match outcome? {
                SegmentRead::Done => {
                    self.cursor = progress.stopped_at.map(|offset| Cursor {
                        sequence: segment.sequence,
                        index: progress.next,
                        offset,
                    });
                    break;
                }
                SegmentRead::Continue => offset = 0,
            }
        }
        debug_assert!(
            !progress.entries.is_empty(),
            "a planned read's first segment holds its first entry"
        );
        Ok(progress.entries)
    }
}
