//! Recovery: rebuilding the catalog and the hard state from the segment files at open.
//!
//! Every record of every segment is read and its checksum verified; that is what lets the log
//! promise that nothing it hands out was damaged. Segments are replayed in sequence order, each
//! header superseding what it says, each entry checked to follow the log (no gap, no term going
//! backwards) — a record that passes its checksum but breaks the log is damage, or a bug, and
//! stops the open.
//!
//! ## Torn tail or corruption?
//! A crash can only damage what was written after the last fsync, and the log fsyncs a segment
//! before it starts the next one, so **only the last segment can have a torn tail**. A bad
//! record anywhere else is corruption, possibly of entries that were acknowledged, and the open
//! fails with the file and offset. In the last segment, a bad record (incomplete, checksum
//! mismatch, zeros) is judged by what follows it:
//! - nothing but zeros: the end of the log (below), kept as it is;
//! - no valid record: a write torn in order, cut off;
//! - valid records: a batch whose sectors reached the disk out of order, cut off, if the bad
//!   record shows the trace of a lost sector (below); otherwise damage in the middle of the
//!   log, and the open fails.
//!
//! The tail from the bad record on is cut off (and the cut fsynced) before anything new is
//! written, and [`Recovered::torn_tail`] says what was cut and why, for the operator's log. A
//! last segment whose header itself is torn was created but never made durable; it is removed.
//!
//! The last segment usually ends in zeros: the log writes them ahead of its records so that an
//! fdatasync overwrites allocated blocks instead of extending the file (see "Preallocation" in
//! `wal.rs`). Zeros are never a record, so the valid records end where they start; when nothing
//! but zeros follows, that is simply the end of the log, nothing was torn, and the zeros are
//! kept for the records to come. Sealed segments never end in zeros: a roll cuts the file to
//! its records and fsyncs that before the next segment is created, so zeros in an earlier
//! segment are damage like any other bad bytes.
//!
//! ## Sectors out of order
//! Records written into preallocated zeros overwrite blocks in place, and a disk writes dirty
//! pages back in any order, so a crash during the fdatasync of a batch can leave a later sector
//! of it on the disk and not an earlier one. The tail then reads: valid records, zeros where
//! the lost sector is, then more valid records. Why cutting there loses nothing acknowledged:
//! 1. A record is acknowledged only after an fdatasync covering it returned (`Wal::sync`), and
//!    that made every byte of the file up to it durable. Call the end of the records the last
//!    returned fdatasync covered `s`: every byte before `s` reads back as written.
//! 2. A lost sector reads as it was at that fdatasync: the bytes before `s` it holds, and zeros
//!    from `s` on, because after its last synced record the last segment holds nothing but
//!    zeros (preallocated, or past the end of the file, which reads as nothing; a roll and a
//!    cut at recovery remove anything else, durably).
//! 3. So the first bad record starts at or after `s`, and every record from it on was written
//!    by the batch whose fdatasync never returned: none of them was acknowledged.
//!
//! What recovery cannot see is `s` (the format marks no batch boundaries), so it asks the bad
//! record for the shape a lost sector leaves. A disk writes a sector of 512 bytes whole or not
//! at all ([`SECTOR`]; a lost 4 KiB page is eight of them), so the record overlaps an aligned
//! sector that reads as zeros from the record's start, or from the sector's, to the sector's
//! end. One of these must hold (see [`lost_sector`]):
//! - (a) zeros from the record's start to the end of its sector, across its whole 9-byte frame
//!   (a real frame is never zero: its type byte is not);
//! - (b) a whole aligned sector of zeros that starts inside the frame (so it covers the type
//!   byte), or inside the payload when the frame's length ends the record no later than where
//!   the next valid record starts;
//! - (c) zeros from the record's start to a sector boundary inside its frame, a type byte that
//!   is not zero, and the frame's length and checksum bytes after the boundary exactly those of
//!   a record ending where the next valid record starts (when the boundary falls on the type
//!   byte, nothing of them is left to compare: eight zero bytes, a length of zero, are then
//!   the trace).
//!
//! Non-zero garbage, and a checksum mismatch with none of these shapes, cannot come from a lost
//! sector, and stay a refusal. What remains ambiguous is damage shaped like a lost sector in
//! the last segment: a disk that returns zeros for a sector it had reported flushed, or a
//! record whose command holds a whole aligned sector of zero bytes and is damaged elsewhere.
//! Those are cut like a tear, acknowledged records after them with them, as etcd's WAL cuts a
//! zeroed sector in its last file (`isTornEntry`). Telling them apart would take a mark of
//! where each synced batch ends, written in the format (see "Left out" in the crate
//! documentation).
//!
//! The older ambiguity is a bit flip in the very last record of the last segment, which looks
//! exactly like a torn write and is cut. No format can tell the two apart without writing
//! something after every record; the entry lost was the newest, and if it had been
//! acknowledged the rest of the cluster still holds it.

use std::fmt;
use std::path::{Path, PathBuf};

use skiff_raft::{Index, Membership, Payload};

use crate::catalog::Catalog;
use crate::error::{Error, Result, io_error};
use crate::fs::{File, Fs};
use crate::record::{self, EntryPayload, FRAME_LEN, HeaderKind, MAX_PAYLOAD, Record, SavedState};
use crate::segment::{self, RecordReader, Step};

/// The bytes read from the disk at a time while recovering.
const CHUNK: usize = 1 << 20;

/// The unit a disk writes whole or not at all, as recovery assumes it: 512 bytes, the smallest
/// sector disks have (a 4 KiB sector or page is eight of them, so a lost one shows as eight
/// lost 512-byte sectors). A lost sector is recognised only at this alignment.
pub(crate) const SECTOR: u64 = 512;

/// What recovery rebuilt from the segment files.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// The log's summary.
    pub(crate) catalog: Catalog,
    /// The last hard state and commit index saved.
    pub(crate) state: SavedState,
    /// The bytes of valid records read, over all segments.
    pub(crate) bytes_read: u64,
    /// The bytes cut off the tail as a torn write.
    pub(crate) torn_bytes: u64,
    /// What was cut off the tail as a torn write, where and why; `None` if nothing.
    pub(crate) torn_tail: Option<TornTail>,
    /// Every configuration entry of the live log, in index order: superseded and compacted
    /// ones are left out, as their entries are.
    pub(crate) memberships: Vec<(Index, Membership)>,
}

/// What recovery cut off the last segment as a torn write (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file cut, or removed when its header was torn.
    pub file: PathBuf,
    /// Where the cut was made: the first bad record.
    pub offset: u64,
    /// The bytes cut off, the zeros after the torn ones included.
    pub bytes: u64,
    /// Whether valid records lay after the bad one: a batch whose sectors reached the disk out
    /// of order, cut at the first lost sector (none of its records was acknowledged).
    pub out_of_order: bool,
    /// Why the bytes were judged torn, in words.
    pub reason: String,
}

impl fmt::Display for TornTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match self.offset {
            0 => write!(f, "removed {file} ({} bytes): {}", self.bytes, self.reason),
            offset => {
                write!(f, "cut {} bytes of {file} from byte {offset}: {}", self.bytes, self.reason)
            }
        }
    }
}

/// How a segment's scan ended.
enum Outcome {
    /// Every byte is a valid record.
    Complete,
    /// Valid records up to this offset, then only zeros to the end of the file: space the log
    /// preallocated for records to come (or a write lost whole, leaving zeros). Kept as it is.
    ZeroTail(u64),
    /// A torn write from this offset on (and maybe preallocated zeros after it), whether valid
    /// records follow it (sectors out of order), and why it is judged torn.
    TornAt(u64, bool, String),
}

/// Recovers the log from the segments with these sequence numbers (ascending). The catalog has
/// no segment when none survives: a new log, or one whose first segment never became durable.
pub(crate) fn recover(
    fs: &dyn Fs,
    dir: &Path,
    sequences: &[u64],
    index_interval: u64,
) -> Result<Recovered> {
    let mut recovered = Recovered {
        catalog: Catalog::new(index_interval),
        state: SavedState::default(),
        bytes_read: 0,
        torn_bytes: 0,
        torn_tail: None,
        memberships: Vec::new(),
    };
    let mut buffer = Vec::new();
    for (position, &sequence) in sequences.iter().enumerate() {
        let path = dir.join(segment::segment_name(sequence));
        let mut file = fs.open(&path).map_err(io_error("open", &path))?;
        let len = file.size().map_err(io_error("size", &path))?;
        let is_last = position + 1 == sequences.len();
        let scan = Scan { path: &path, is_first: position == 0, is_last, sequence, len };
        let (outcome, returned) = scan.run(&*file, &mut recovered, buffer)?;
        buffer = returned;
        match outcome {
            Outcome::Complete => recovered.bytes_read += len,
            Outcome::TornAt(0, _, _) | Outcome::ZeroTail(0) => {
                // The header never became durable: the segment never existed.
                drop(file);
                fs.remove_file(&path).map_err(io_error("remove", &path))?;
                fs.sync_dir(dir).map_err(io_error("fsync directory", dir))?;
                if let Outcome::TornAt(offset, out_of_order, reason) = outcome {
                    recovered.torn_bytes += len;
                    let (file, bytes) = (path.clone(), len);
                    let torn = TornTail { file, offset, bytes, out_of_order, reason };
                    recovered.torn_tail = Some(torn);
                }
            }
            Outcome::ZeroTail(offset) => recovered.bytes_read += offset,
            Outcome::TornAt(offset, out_of_order, reason) => {
                // The zeros after the torn bytes go too; the log writes new ones ahead.
                file.set_len(offset).map_err(io_error("cut the torn tail of", &path))?;
                file.sync_data().map_err(io_error("fsync", &path))?;
                recovered.catalog.tail_mut().size = offset;
                recovered.bytes_read += offset;
                recovered.torn_bytes += len - offset;
                let (file, bytes) = (path.clone(), len - offset);
                recovered.torn_tail = Some(TornTail { file, offset, bytes, out_of_order, reason });
            }
        }
    }
    if !recovered.catalog.segments.is_empty() {
        recovered.catalog.check_invariants();
    }
    // Segments older than the first live one were deleted by compaction or are dead: their
    // configuration entries are not in the log.
    let first = recovered.catalog.first_index;
    recovered.memberships.retain(|(index, _)| *index >= first);
    Ok(recovered)
}

/// The scan of one segment file.
struct Scan<'a> {
    /// The file's path, for errors.
    path: &'a Path,
    /// Whether it is the first segment (which defines where the log starts).
    is_first: bool,
    /// Whether it is the last segment (the only one that may have a torn tail).
    is_last: bool,
    /// The sequence number in its name.
    sequence: u64,
    /// Its length in bytes.
    len: u64,
}

impl Scan<'_> {
    /// A corruption error at `offset` of this file.
    fn corrupt(&self, offset: u64, reason: impl Into<String>) -> Error {
        Error::Corrupt { file: PathBuf::from(self.path), offset, reason: reason.into() }
    }

    /// Replays the file's records into `recovered`; returns how the scan ended and the buffer.
    fn run(
        &self,
        file: &dyn File,
        recovered: &mut Recovered,
        buffer: Vec<u8>,
    ) -> Result<(Outcome, Vec<u8>)> {
        let mut reader = RecordReader::new(file, 0, self.len, CHUNK, buffer);
        let mut started = false;
        let outcome = loop {
            let step = reader.next().map_err(io_error("read", self.path))?;
            let (record, offset, length) = match step {
                Step::Record { record, offset, length } => (record, offset, length),
                Step::End if started => break Outcome::Complete,
                Step::End => break self.bad(file, 0, "an empty segment".into(), false)?,
                Step::Bad { offset, reason, checksum_held } => {
                    break self.bad(file, offset, reason, checksum_held)?;
                }
            };
            match (started, record) {
                (false, Record::Header(header)) => {
                    if header.sequence != self.sequence {
                        let reason = format!("the header says sequence {}", header.sequence);
                        return Err(self.corrupt(0, reason));
                    }
                    let catalog = &mut recovered.catalog;
                    catalog
                        .start_segment(&header, length, self.is_first)
                        .map_err(|reason| self.corrupt(0, reason))?;
                    // The header supersedes the log from its first index on (all of it, for a
                    // reset), configuration entries included.
                    if self.is_first || header.kind == HeaderKind::Reset {
                        recovered.memberships.clear();
                    } else {
                        recovered.memberships.retain(|(index, _)| *index < header.first_index);
                    }
                    started = true;
                }
                (false, _) => {
                    return Err(self.corrupt(0, "the segment does not start with a header"));
                }
                (true, Record::Header(_)) => return Err(self.corrupt(offset, "a second header")),
                (true, Record::Entry { index, term, payload }) => {
                    recovered
                        .catalog
                        .push_entry(index, term, offset, offset + length)
                        .map_err(|reason| self.corrupt(offset, reason))?;
                    if let EntryPayload::Membership(_) = payload
                        && let Payload::Membership(membership) = payload.to_payload()
                    {
                        recovered.memberships.push((index, membership));
                    }
                }
                (true, Record::State(state)) => {
                    check_state_follows(&recovered.state, &state)
                        .map_err(|reason| self.corrupt(offset, reason))?;
                    recovered.state = state;
                }
            }
        };
        if started {
            // State records after the last entry count too: the segment ends where it was read.
            let end = match outcome {
                Outcome::Complete => self.len,
                Outcome::ZeroTail(offset) | Outcome::TornAt(offset, _, _) => offset,
            };
            recovered.catalog.tail_mut().size = end;
        }
        Ok((outcome, reader.into_buffer()))
    }

    /// Judges bad bytes at `offset` (see the module documentation): in the last segment, the
    /// end of the log if only zeros follow, a torn tail if the checksum did not hold and either
    /// no valid record follows or the bad record shows the trace of a lost sector; corruption
    /// otherwise.
    fn bad(
        &self,
        file: &dyn File,
        offset: u64,
        reason: String,
        checksum_held: bool,
    ) -> Result<Outcome> {
        if !self.is_last || checksum_held {
            return Err(self.corrupt(offset, reason));
        }
        // The rest is at most a torn batch and the zeros preallocated after the records (both
        // bounded by the options), so it is read whole.
        let mut rest = vec![0; (self.len - offset) as usize];
        file.read_exact_at(&mut rest, offset).map_err(io_error("read", self.path))?;
        if rest.iter().all(|&byte| byte == 0) {
            return Ok(Outcome::ZeroTail(offset));
        }
        let Some(next) = segment::first_record_after_first_byte(&rest) else {
            let reason = format!("{reason}, and no whole record after it");
            return Ok(Outcome::TornAt(offset, false, reason));
        };
        match lost_sector(&rest, offset, next) {
            Some(trace) => {
                let why = format!(
                    "{reason}; {trace}: a sector the last fdatasync never made durable, so the \
                     records after it (the next at byte {}) were never acknowledged",
                    offset + next as u64
                );
                Ok(Outcome::TornAt(offset, true, why))
            }
            None => Err(self.corrupt(offset, format!("{reason}, with valid records after it"))),
        }
    }
}

/// The trace of a lost sector on the bad record at `offset`, in words, if it has one; `rest`
/// holds the file's bytes from `offset` on, and the next valid record starts `next` bytes in.
/// The three shapes, (a) to (c), are argued in the module documentation.
fn lost_sector(rest: &[u8], offset: u64, next: usize) -> Option<String> {
    assert!(next > 0 && next < rest.len(), "the next record ({next}) lies inside the rest");
    let sector = SECTOR as usize;
    let zeros = |from: usize, to: usize| rest[from..to.min(rest.len())].iter().all(|&b| b == 0);
    let at = |relative: usize| offset + relative as u64;
    // Where the sector holding the record's first byte ends, relative to the record.
    let boundary = sector - (offset % SECTOR) as usize;
    // (a) The record starts in a lost sector: zeros across its frame to the sector's end.
    if boundary >= FRAME_LEN && zeros(0, boundary) {
        return Some(format!("bytes [{}, {}) are zeros", at(0), at(boundary.min(rest.len()))));
    }
    // (b) A whole lost sector inside the record. Past the frame, only where the frame's length
    // (then not damaged by the loss) ends the record by the next valid one.
    let claimed = record::needed(rest);
    let mut start = boundary;
    while start < next && (start < FRAME_LEN || (claimed <= next && start < claimed)) {
        if zeros(start, start + sector) {
            let end = at((start + sector).min(rest.len()));
            return Some(format!("the sector [{}, {end}) is zeros", at(start)));
        }
        start += sector;
    }
    // (c) The record starts in a lost sector that ends inside its frame, and the rest of the
    // frame is that of the record ending where the next valid one starts.
    if boundary < FRAME_LEN && zeros(0, boundary) && next > FRAME_LEN && rest[FRAME_LEN - 1] != 0 {
        if next - FRAME_LEN > MAX_PAYLOAD as usize {
            return None;
        }
        let fields = record::length_and_checksum(&rest[FRAME_LEN - 1..next]);
        if fields[boundary..] == rest[boundary..FRAME_LEN - 1] {
            return Some(format!(
                "bytes [{}, {}) are zeros, and the frame after them is that of a record ending \
                 at byte {}",
                at(0),
                at(boundary),
                at(next)
            ));
        }
    }
    None
}

/// Checks that a saved state can follow the one before it: terms never decrease, a vote is
/// never changed within a term, and the commit index never decreases.
fn check_state_follows(before: &SavedState, after: &SavedState) -> Result<(), String> {
    let (old, new) = (before.hard_state, after.hard_state);
    if new.term < old.term {
        return Err(format!("the term goes back from {} to {}", old.term, new.term));
    }
    if new.term == old.term && old.vote.is_some() && new.vote != old.vote {
        return Err(format!(
            "the vote in term {} changes from {:?} to {:?}",
            new.term, old.vote, new.vote
        ));
    }
    if after.commit < before.commit {
        return Err(format!(
            "the commit index goes back from {} to {}",
            before.commit, after.commit
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_raft::{Entry, Term};

    /// Two entry records with commands of `first` and `second` bytes, back to back; returns
    /// the bytes and where the second starts.
    fn two_records(first: usize, second: usize) -> (Vec<u8>, usize) {
        let command = |index: u64, size: usize| Entry {
            index: Index(index),
            term: Term(1),
            payload: Payload::Command(vec![b'x'; size].into()),
        };
        let mut bytes = Vec::new();
        record::encode_entry(&mut bytes, &command(1, first));
        let next = bytes.len();
        record::encode_entry(&mut bytes, &command(2, second));
        (bytes, next)
    }

    #[test]
    fn zeros_across_the_frame_to_the_end_of_its_sector_are_a_lost_sector() {
        let (mut bytes, next) = two_records(600, 10);
        bytes[..12].fill(0);
        assert!(lost_sector(&bytes, 2 * SECTOR - 12, next).is_some(), "(a)");
        // The same zeros, but the sector goes on after them with bytes of the record: no
        // sector was lost whole.
        assert!(lost_sector(&bytes, 2 * SECTOR - 20, next).is_none(), "zeros short of the end");
    }

    #[test]
    fn a_whole_sector_of_zeros_inside_the_record_is_a_lost_sector_unless_its_length_lies() {
        let (mut bytes, next) = two_records(900, 10);
        // The record starts 100 bytes before a boundary; the sector after it is lost.
        bytes[100..612].fill(0);
        assert!(lost_sector(&bytes, 3 * SECTOR - 100, next).is_some(), "(b)");
        // The same zeros with a length claiming more than the record's own bytes: damage.
        bytes[2] ^= 0x10;
        assert!(lost_sector(&bytes, 3 * SECTOR - 100, next).is_none(), "a length past the next");
    }

    #[test]
    fn a_frame_cut_by_a_lost_sector_is_checked_against_the_record_that_follows() {
        for lost in 1..FRAME_LEN - 1 {
            let (mut bytes, next) = two_records(40, 10);
            let offset = 5 * SECTOR - lost as u64;
            bytes[..lost].fill(0);
            assert!(lost_sector(&bytes, offset, next).is_some(), "(c) with {lost} bytes lost");
            // A bit flipped in the payload as well: the checksum bytes kept do not match.
            bytes[30] ^= 4;
            assert!(lost_sector(&bytes, offset, next).is_none(), "damage with {lost} lost");
        }
        // With length and checksum all zeros, only the type byte is left to check: eight zero
        // bytes from a record's start to a boundary are taken for a lost sector (a real
        // frame's length is never zero).
        let (mut bytes, next) = two_records(40, 10);
        bytes[..8].fill(0);
        bytes[30] ^= 4;
        assert!(lost_sector(&bytes, 5 * SECTOR - 8, next).is_some(), "nothing left to check");
    }
}
