//! The catalog: what the log holds, in summary, and where on disk to find any entry.
//!
//! The catalog is the log's only in-memory structure that grows with the log, so it is built
//! to grow slowly:
//! - the **term runs**, one `(first index, term)` pair per term with entries (terms change
//!   rarely), answer `term(i)` for any index without touching the disk;
//! - the **live segments**, in order, each with its index range and a **sparse index**: the
//!   file offset of one entry every `index_interval` bytes (256 KiB by default). Finding an
//!   entry is a binary search over segments, another over the segment's points, and a scan of
//!   at most `index_interval` bytes from the point found.
//!
//! A dense index (one offset per entry) would cost 8 to 16 bytes per entry: 95 to 190 MiB per
//! GiB of log of 64-byte entries (90 bytes each on disk). The sparse one costs 16 bytes per
//! `index_interval` of log, whatever the entry size: 64 KiB per GiB of log. The price is the
//! scan on a random read, at most 256 KiB from the page cache; sequential reads (a follower catching up, applying after a restart)
//! skip even that by continuing from the read cursor where the previous read stopped.
//!
//! Segments are **superseded**, never rewritten. A segment whose header says it follows from
//! index `f` supersedes every older entry at `f` or after: live segments that start at `f` or
//! later become dead (their files wait for the next compaction), and the one holding `f - 1`
//! ends there. A reset header kills every older segment. Hence the invariants:
//! - live segments are in file-sequence order, with strictly increasing first indexes and
//!   contiguous ranges: each ends just before the next one starts;
//! - the term runs are strictly increasing in both index and term and cover exactly
//!   `[first_index, last_index]`; the first may continue the term of the entry before the
//!   log (`prev_term`), after compaction;
//! - every live segment but the last (the tail, being written) holds at least one entry.

use skiff_raft::{Index, LogState, Term};

use crate::record::{HeaderKind, SegmentHeader};

/// A live segment file, as the catalog knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// The number in the file's name; increases with every new segment.
    pub(crate) sequence: u64,
    /// The index of the segment's first entry (from its header).
    pub(crate) first_index: Index,
    /// What its header says: whether it follows the log before it or resets the log.
    pub(crate) kind: HeaderKind,
    /// The index of its last live entry; `first_index - 1` when it has none.
    pub(crate) last_index: Index,
    /// The bytes of records in the segment (some maybe still in the write buffer).
    pub(crate) size: u64,
    /// `(index, file offset)` of some of its entries, increasing: the first entry, then one at
    /// least every `index_interval` bytes.
    pub(crate) sparse: Vec<(Index, u64)>,
}

/// The summary of the log (see the module documentation).
#[derive(Clone, Debug)]
pub(crate) struct Catalog {
    /// The index of the first entry; entries below it were compacted away or reset.
    pub(crate) first_index: Index,
    /// The term of the entry at `first_index - 1`.
    pub(crate) prev_term: Term,
    /// The index of the last entry; `first_index - 1` when the log is empty.
    pub(crate) last_index: Index,
    /// `(first index, term)` of every term with entries, strictly increasing in both.
    pub(crate) term_starts: Vec<(Index, Term)>,
    /// The live segments, oldest first; the last one is the tail.
    pub(crate) segments: Vec<Segment>,
    /// The sequence numbers and header kinds of segment files that are entirely superseded,
    /// oldest first.
    pub(crate) dead: Vec<(u64, HeaderKind)>,
    /// The distance in bytes between the sparse index's points.
    index_interval: u64,
}

impl Catalog {
    /// An empty catalog, before the first segment's header is read.
    pub(crate) fn new(index_interval: u64) -> Catalog {
        Catalog {
            first_index: Index(1),
            prev_term: Term(0),
            last_index: Index(0),
            term_starts: Vec::new(),
            segments: Vec::new(),
            dead: Vec::new(),
            index_interval: index_interval.max(1),
        }
    }

    /// The term of the entry at `index`, if the log holds it or it is the one just before.
    pub(crate) fn term(&self, index: Index) -> Option<Term> {
        if index == self.first_index.prev() {
            return Some(self.prev_term);
        }
        if index < self.first_index || index > self.last_index {
            return None;
        }
        let position = self.term_starts.partition_point(|&(start, _)| start <= index);
        Some(self.term_starts[position - 1].1)
    }

    /// The term of the last entry (or of the one before the log, when it is empty).
    pub(crate) fn last_term(&self) -> Term {
        self.term_starts.last().map_or(self.prev_term, |&(_, term)| term)
    }

    /// The summary a restarting core needs.
    pub(crate) fn log_state(&self) -> LogState {
        LogState {
            first_index: self.first_index,
            last_index: self.last_index,
            prev_term: self.prev_term,
            term_starts: self.term_starts.clone(),
        }
    }

    /// The tail segment, being written.
    pub(crate) fn tail(&self) -> &Segment {
        self.segments.last().expect("the catalog always has a tail segment once opened")
    }

    /// The tail segment, mutably.
    pub(crate) fn tail_mut(&mut self) -> &mut Segment {
        self.segments.last_mut().expect("the catalog always has a tail segment once opened")
    }

    /// Takes in a new segment from its header (at `size` bytes), superseding what it says. The
    /// first segment file of the directory defines where the log starts. An inconsistent
    /// header is refused with the reason, and changes nothing.
    pub(crate) fn start_segment(
        &mut self,
        header: &SegmentHeader,
        size: u64,
        is_first_file: bool,
    ) -> Result<(), String> {
        if header.first_index.0 == 0 {
            return Err("a segment starting at index 0".into());
        }
        if is_first_file || header.kind == HeaderKind::Reset {
            self.dead
                .extend(self.segments.drain(..).map(|segment| (segment.sequence, segment.kind)));
            self.first_index = header.first_index;
            self.prev_term = header.prev_term;
            self.last_index = header.first_index.prev();
            self.term_starts.clear();
        } else {
            if header.first_index < self.first_index || header.first_index > self.last_index.next()
            {
                return Err(format!(
                    "segment {} starts at index {}, outside the log [{}, {}] before it: a \
                     segment is missing",
                    header.sequence, header.first_index, self.first_index, self.last_index
                ));
            }
            let prev_term = self.term(header.first_index.prev());
            if prev_term != Some(header.prev_term) {
                return Err(format!(
                    "segment {} says entry {} has term {}, the log before it says {prev_term:?}",
                    header.sequence,
                    header.first_index.prev(),
                    header.prev_term
                ));
            }
            self.truncate_from(header.first_index);
        }
        self.segments.push(Segment {
            sequence: header.sequence,
            first_index: header.first_index,
            kind: header.kind,
            last_index: header.first_index.prev(),
            size,
            sparse: Vec::new(),
        });
        Ok(())
    }

    /// Supersedes every entry from `index` on: live segments starting there or later die, the
    /// one holding `index - 1` ends there.
    fn truncate_from(&mut self, index: Index) {
        while self.segments.last().is_some_and(|segment| segment.first_index >= index) {
            let segment = self.segments.pop().expect("checked by is_some_and");
            self.dead.push((segment.sequence, segment.kind));
        }
        if let Some(segment) = self.segments.last_mut()
            && segment.last_index >= index
        {
            segment.last_index = index.prev();
            segment.sparse.retain(|&(point, _)| point < index);
        }
        while self.term_starts.last().is_some_and(|&(start, _)| start >= index) {
            self.term_starts.pop();
        }
        self.last_index = self.last_index.min(index.prev());
    }

    /// Records an entry written to the tail segment at `offset`, ending at `end`. An entry that
    /// does not follow the log (a gap, a term going backwards) is refused with the reason.
    pub(crate) fn push_entry(
        &mut self,
        index: Index,
        term: Term,
        offset: u64,
        end: u64,
    ) -> Result<(), String> {
        if index != self.last_index.next() {
            return Err(format!("entry {index} follows entry {}", self.last_index));
        }
        let last_term = self.last_term();
        if term < last_term {
            return Err(format!(
                "entry {index} has term {term}, below the term {last_term} before it"
            ));
        }
        if self.term_starts.is_empty() || term > last_term {
            self.term_starts.push((index, term));
        }
        self.last_index = index;
        let interval = self.index_interval;
        let tail = self.tail_mut();
        let point_due = tail.sparse.last().is_none_or(|&(_, at)| offset - at >= interval);
        if point_due {
            tail.sparse.push((index, offset));
        }
        tail.last_index = index;
        tail.size = end;
        Ok(())
    }

    /// Where to start scanning for entry `index`: the position of its segment in `segments`,
    /// and the offset of the nearest indexed entry at or before it.
    pub(crate) fn locate(&self, index: Index) -> Option<(usize, u64)> {
        let position = self.segments.partition_point(|s| s.first_index <= index).checked_sub(1)?;
        let segment = &self.segments[position];
        if index > segment.last_index {
            return None;
        }
        let point = segment.sparse.partition_point(|&(point, _)| point <= index);
        let offset = point.checked_sub(1).map_or(0, |point| segment.sparse[point].1);
        Some((position, offset))
    }

    /// Drops the first `count` live segments (compacted away) and every dead one from the
    /// catalog; the log then starts at the first entry of the segment after them.
    pub(crate) fn drop_prefix(&mut self, count: usize) {
        assert!(count < self.segments.len(), "compaction never removes the tail segment");
        self.dead.clear();
        if count == 0 {
            return;
        }
        let first_index = self.segments[count].first_index;
        self.prev_term =
            self.term(first_index.prev()).expect("the term before a live segment is known");
        self.segments.drain(..count);
        self.first_index = first_index;
        while self.term_starts.get(1).is_some_and(|&(start, _)| start <= first_index) {
            self.term_starts.remove(0);
        }
        if self.last_index < first_index {
            self.term_starts.clear();
        } else if let Some(run) = self.term_starts.first_mut() {
            run.0 = run.0.max(first_index);
        }
    }

    /// Checks the invariants of the module documentation; O(segments + terms).
    pub(crate) fn check_invariants(&self) {
        let mut expected_first = self.first_index;
        for (position, segment) in self.segments.iter().enumerate() {
            assert_eq!(segment.first_index, expected_first, "segments are contiguous: {self:?}");
            let is_tail = position + 1 == self.segments.len();
            assert!(is_tail || segment.last_index >= segment.first_index, "empty non-tail segment");
            expected_first = segment.last_index.next();
        }
        assert_eq!(expected_first, self.last_index.next(), "segments end at the last index");
        // The first run may continue the term of the entry before the log (after compaction);
        // later runs strictly increase in both index and term.
        let mut previous: Option<(Index, Term)> = None;
        for &(start, term) in &self.term_starts {
            match previous {
                None => assert!(term >= self.prev_term, "first run below prev_term: {self:?}"),
                Some((before, before_term)) => {
                    assert!(start > before && term > before_term, "term runs increase: {self:?}");
                }
            }
            previous = Some((start, term));
        }
        let covers = self.term_starts.first().map(|&(start, _)| start);
        let empty = self.last_index < self.first_index;
        assert_eq!(covers, (!empty).then_some(self.first_index), "runs cover the log: {self:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(sequence: u64, first: u64, prev_term: u64, kind: HeaderKind) -> SegmentHeader {
        SegmentHeader { sequence, first_index: Index(first), prev_term: Term(prev_term), kind }
    }

    /// A catalog with segment 1 holding entries 1..=4 (terms 1, 1, 2, 2), 100 bytes apart.
    fn catalog() -> Catalog {
        let mut catalog = Catalog::new(150);
        catalog.start_segment(&header(1, 1, 0, HeaderKind::Follows), 46, true).expect("first");
        for (index, term) in [(1, 1), (2, 1), (3, 2), (4, 2)] {
            let offset = index * 100;
            catalog.push_entry(Index(index), Term(term), offset, offset + 100).expect("follows");
        }
        catalog
    }

    #[test]
    fn a_truncating_segment_supersedes_the_suffix() {
        let mut catalog = catalog();
        catalog.start_segment(&header(2, 3, 1, HeaderKind::Follows), 46, false).expect("valid");
        catalog.push_entry(Index(3), Term(3), 46, 146).expect("follows the truncation");
        catalog.check_invariants();
        assert_eq!(catalog.term_starts, vec![(Index(1), Term(1)), (Index(3), Term(3))]);
        assert_eq!(catalog.segments[0].last_index, Index(2));
        assert_eq!(catalog.locate(Index(2)), Some((0, 100)), "nearest point at or before 2");
        assert_eq!(catalog.locate(Index(3)), Some((1, 46)));
        assert_eq!(catalog.locate(Index(4)), None);
    }

    #[test]
    fn headers_that_do_not_fit_the_log_are_refused() {
        let mut catalog = catalog();
        let gap = catalog.start_segment(&header(2, 6, 2, HeaderKind::Follows), 46, false);
        assert!(gap.expect_err("a gap").contains("a segment is missing"));
        let wrong_term = catalog.start_segment(&header(2, 4, 1, HeaderKind::Follows), 46, false);
        assert!(wrong_term.expect_err("entry 3 has term 2").contains("term 1"));
        let backwards = catalog.push_entry(Index(5), Term(1), 500, 600);
        assert!(backwards.is_err(), "terms never go backwards");
        catalog.check_invariants();
    }

    #[test]
    fn compaction_moves_the_first_index_to_the_next_segment() {
        let mut catalog = catalog();
        catalog.start_segment(&header(2, 5, 2, HeaderKind::Follows), 46, false).expect("roll");
        catalog.push_entry(Index(5), Term(3), 46, 146).expect("follows");
        catalog.drop_prefix(1);
        catalog.check_invariants();
        assert_eq!((catalog.first_index, catalog.prev_term), (Index(5), Term(2)));
        assert_eq!(catalog.term(Index(4)), Some(Term(2)));
        assert_eq!(catalog.term(Index(3)), None);
    }

    #[test]
    fn a_reset_discards_everything_before_it() {
        let mut catalog = catalog();
        catalog.start_segment(&header(2, 101, 7, HeaderKind::Reset), 46, false).expect("reset");
        catalog.check_invariants();
        assert_eq!(catalog.dead, vec![(1, HeaderKind::Follows)]);
        assert_eq!((catalog.first_index, catalog.last_index), (Index(101), Index(100)));
        assert_eq!(catalog.term(Index(100)), Some(Term(7)));
    }
}
