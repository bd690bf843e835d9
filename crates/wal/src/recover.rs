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
//! before it starts the next one, so **only the last segment can have a torn tail**. There, a
//! bad record (incomplete, checksum mismatch, zeros) is a torn write if nothing valid follows
//! it: writes are kept in order, so a tear leaves no whole record after it. The tail from the
//! bad record on is cut off (and the cut fsynced) before anything new is written. Everywhere
//! else — in an earlier segment, or with a valid record after the bad one — it is corruption
//! in the middle of the log, possibly of entries that were acknowledged, and the open fails
//! with the file and offset. A last segment whose header itself is torn was created but never
//! made durable; it is removed.
//!
//! The last segment usually ends in zeros: the log writes them ahead of its records so that an
//! fdatasync overwrites allocated blocks instead of extending the file (see "Preallocation" in
//! `wal.rs`). Zeros are never a record, so the valid records end where they start; when nothing
//! but zeros follows, that is simply the end of the log, nothing was torn, and the zeros are
//! kept for the records to come. When non-zero bytes follow, it is a torn write as above, and
//! the cut takes the zeros after it too. Sealed segments never end in zeros: a roll cuts the
//! file to its records and fsyncs that before the next segment is created, so zeros in an
//! earlier segment are damage like any other bad bytes.
//!
//! The one ambiguity left is a bit flip in the very last record of the last segment, which
//! looks exactly like a torn write and is cut. No format can tell the two apart without
//! writing something after every record; the entry lost was the newest, and if it had been
//! acknowledged the rest of the cluster still holds it.

use std::path::{Path, PathBuf};

use skiff_raft::{Index, Membership, Payload};

use crate::catalog::Catalog;
use crate::error::{Error, Result, io_error};
use crate::fs::{File, Fs};
use crate::record::{EntryPayload, HeaderKind, Record, SavedState};
use crate::segment::{self, RecordReader, Step};

/// The bytes read from the disk at a time while recovering.
const CHUNK: usize = 1 << 20;

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
    /// Every configuration entry of the live log, in index order: superseded and compacted
    /// ones are left out, as their entries are.
    pub(crate) memberships: Vec<(Index, Membership)>,
}

/// How a segment's scan ended.
enum Outcome {
    /// Every byte is a valid record.
    Complete,
    /// Valid records up to this offset, then only zeros to the end of the file: space the log
    /// preallocated for records to come (or a write lost whole, leaving zeros). Kept as it is.
    ZeroTail(u64),
    /// A torn write from this offset on (and maybe preallocated zeros after it).
    TornAt(u64),
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
            Outcome::TornAt(0) | Outcome::ZeroTail(0) => {
                // The header never became durable: the segment never existed.
                drop(file);
                fs.remove_file(&path).map_err(io_error("remove", &path))?;
                fs.sync_dir(dir).map_err(io_error("fsync directory", dir))?;
                if let Outcome::TornAt(_) = outcome {
                    recovered.torn_bytes += len;
                }
            }
            Outcome::ZeroTail(offset) => recovered.bytes_read += offset,
            Outcome::TornAt(offset) => {
                // The zeros after the torn bytes go too; the log writes new ones ahead.
                file.set_len(offset).map_err(io_error("cut the torn tail of", &path))?;
                file.sync_data().map_err(io_error("fsync", &path))?;
                recovered.catalog.tail_mut().size = offset;
                recovered.bytes_read += offset;
                recovered.torn_bytes += len - offset;
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
                Outcome::ZeroTail(offset) | Outcome::TornAt(offset) => offset,
            };
            recovered.catalog.tail_mut().size = end;
        }
        Ok((outcome, reader.into_buffer()))
    }

    /// Judges bad bytes at `offset`: in the last segment, the end of the log if only zeros
    /// follow, a torn tail if the checksum did not hold and no valid record follows;
    /// corruption otherwise.
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
        if segment::any_record_after_first_byte(&rest) {
            let reason = format!("{reason}, with valid records after it");
            return Err(self.corrupt(offset, reason));
        }
        Ok(Outcome::TornAt(offset))
    }
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
