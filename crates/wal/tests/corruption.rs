//! Damage to the files: torn tails are cut, everything else refuses to open.
//!
//! Every byte and every bit, not a sample: the logs are small enough to try them all.
//! - A last segment cut at any byte opens, with exactly the records before the cut.
//! - A bit flipped anywhere in any segment either refuses to open with an error naming that
//!   file, or — only in the last record of the last segment, where damage and a torn write look
//!   the same — opens without that record. Never does a damaged entry come back.
//! - The same in a last segment of many 512-byte sectors ending in preallocated zeros: a
//!   sector lost in a crash is recognised by whole sectors of zeros, a shape no bit flip makes.
//! - A missing segment, a foreign segment and a damaged identity file refuse to open.

mod common;

use std::path::{Path, PathBuf};

use common::{DIR, ModelLog, entry, read_all};
use skiff_raft::NodeId;
use skiff_wal::{Error, MemFs, Options, Wal};

/// Options with 250-byte segments, so that a few entries span several files.
fn options() -> Options {
    let mut options = Options::new(NodeId(1), 7);
    options.segment_size = 250;
    options.index_interval = 64;
    options
}

/// A synced log of 20 entries over several segments, a vote and a commit index, on a fresh
/// file system. Returns the file system, the log as written, and its segment files in order.
fn written_log() -> (MemFs, ModelLog, Vec<PathBuf>) {
    let fs = MemFs::new(5);
    let (mut wal, _) = Wal::open(fs.clone(), DIR, options()).expect("opens");
    wal.save_hard_state(skiff_raft::HardState { term: skiff_raft::Term(2), vote: Some(NodeId(1)) })
        .expect("saves");
    let entries: Vec<_> =
        (1..=20).map(|index| entry(index, 1 + index / 8, (index * 3) as usize)).collect();
    for chunk in entries.chunks(3) {
        wal.append(chunk).expect("appends");
    }
    wal.save_commit(skiff_raft::Index(12)).expect("saves");
    wal.sync().expect("syncs");
    let model = read_all(&mut wal);
    assert_eq!(model.entries, entries);
    let segments: Vec<PathBuf> = fs
        .files()
        .into_iter()
        .map(|(path, _)| path)
        .filter(|path| path.extension().is_some_and(|extension| extension == "wal"))
        .collect();
    assert!(segments.len() >= 4, "the log spans several segments: {segments:?}");
    (fs, model, segments)
}

/// Whether `recovered` is a prefix of `original`, entry for entry.
fn is_prefix(recovered: &ModelLog, original: &ModelLog) -> bool {
    recovered.first == original.first
        && recovered.entries.len() <= original.entries.len()
        && recovered.entries[..] == original.entries[..recovered.entries.len()]
}

#[test]
fn a_last_segment_cut_at_any_byte_opens_with_the_records_before_the_cut() {
    let (fs, original, segments) = written_log();
    let last = segments.last().expect("segments exist");
    let length = fs.contents(last).expect("exists").len() as u64;
    let mut previous_last = 0;
    for cut in 0..=length {
        let (fs, _, _) = written_log();
        fs.cut(last, cut).expect("cut");
        let (mut wal, recovery) = Wal::open(fs.clone(), DIR, options())
            .unwrap_or_else(|error| panic!("cut at {cut}: a torn tail must open: {error}"));
        let recovered = read_all(&mut wal);
        assert!(is_prefix(&recovered, &original), "cut at {cut}: not a prefix of the log");
        assert!(recovered.last() >= previous_last, "cut at {cut}: a longer file lost entries");
        previous_last = recovered.last();
        let kept = fs.contents(last).map_or(0, |bytes| bytes.len() as u64);
        assert_eq!(kept + recovery.torn_bytes, cut, "cut at {cut}: the tail is cut exactly");
        assert_eq!(recovery.hard_state.term.0, 2, "the vote is in the first segment");
    }
    assert_eq!(previous_last, original.last(), "the whole file holds the whole log");
}

#[test]
fn a_bit_flipped_anywhere_refuses_to_open_or_cuts_only_the_last_record() {
    let (fs, original, segments) = written_log();
    let mut refused = 0;
    let mut cut = 0;
    for (position, segment) in segments.iter().enumerate() {
        let length = fs.contents(segment).expect("exists").len() as u64;
        let is_last = position + 1 == segments.len();
        for bit in 0..length * 8 {
            let (fs, _, _) = written_log();
            fs.flip_bit(segment, bit / 8, (bit % 8) as u8).expect("flip");
            let context = format!("bit {bit} of {}", segment.display());
            match Wal::open(fs.clone(), DIR, options()) {
                Err(Error::Corrupt { file, offset, .. }) => {
                    assert_eq!(&file, segment, "{context}: the error names the damaged file");
                    assert!(offset <= bit / 8, "{context}: damage found at {offset}, after it");
                    refused += 1;
                }
                Err(error) => panic!("{context}: the wrong error: {error}"),
                Ok((mut wal, recovery)) => {
                    assert!(is_last, "{context}: damage before the last segment was accepted");
                    assert!(recovery.torn_bytes > 0, "{context}: a damaged record went unnoticed");
                    let recovered = read_all(&mut wal);
                    assert!(is_prefix(&recovered, &original), "{context}: a damaged entry");
                    assert!(
                        recovered.last() + 1 >= original.last(),
                        "{context}: more than one lost"
                    );
                    cut += 1;
                }
            }
        }
    }
    assert!(refused > 1000 && cut > 100, "refused {refused}, cut {cut}");
}

#[test]
fn a_missing_segment_refuses_to_open() {
    let (fs, _, segments) = written_log();
    let middle = &segments[1];
    let remove = |fs: &MemFs, path: &Path| {
        use skiff_wal::Fs as _;
        fs.remove_file(path).expect("removes");
        fs.sync_dir(Path::new(DIR)).expect("syncs");
    };
    remove(&fs, middle);
    let error = Wal::open(fs.clone(), DIR, options()).expect_err("a gap in the log");
    assert!(error.to_string().contains("a segment is missing"), "{error}");
}

#[test]
fn a_segment_under_another_name_refuses_to_open() {
    use skiff_wal::Fs as _;
    let (fs, _, segments) = written_log();
    let renamed = Path::new(DIR).join("00000000000000000099.wal");
    fs.rename(segments.last().expect("segments exist"), &renamed).expect("renames");
    fs.sync_dir(Path::new(DIR)).expect("syncs");
    let error = Wal::open(fs.clone(), DIR, options()).expect_err("a foreign segment");
    assert!(error.to_string().contains("the header says sequence"), "{error}");
}

#[test]
fn a_damaged_identity_file_refuses_to_open() {
    let (fs, _, _) = written_log();
    fs.flip_bit(&Path::new(DIR).join("identity"), 9, 1).expect("flip");
    let error = Wal::open(fs.clone(), DIR, options()).expect_err("the identity cannot be checked");
    assert!(matches!(error, Error::Corrupt { .. }), "{error}");
}

#[test]
fn segments_without_an_identity_file_refuse_to_open() {
    use skiff_wal::Fs as _;
    let (fs, _, _) = written_log();
    fs.remove_file(&Path::new(DIR).join("identity")).expect("removes");
    let error = Wal::open(fs.clone(), DIR, options()).expect_err("an unidentified directory");
    assert!(matches!(error, Error::MissingIdentity { .. }), "{error}");
}

/// A synced log whose only segment spans several 512-byte sectors and ends in preallocated
/// zeros: 24 entries of 30 to 99 bytes, so that records start at many offsets within sectors.
fn written_sectors_log() -> (MemFs, ModelLog, PathBuf) {
    let mut options = options();
    options.segment_size = 1 << 20;
    options.preallocate = 4096;
    let fs = MemFs::new(6);
    let (mut wal, _) = Wal::open(fs.clone(), DIR, options.clone()).expect("opens");
    let entries: Vec<_> =
        (1..=24).map(|index| entry(index, 1, 30 + (index * 29) as usize % 70)).collect();
    for chunk in entries.chunks(5) {
        wal.append(chunk).expect("appends");
        wal.sync().expect("syncs");
    }
    let model = read_all(&mut wal);
    let segment = Path::new(DIR).join("00000000000000000001.wal");
    (fs, model, segment)
}

#[test]
fn a_bit_flipped_in_a_last_segment_of_many_sectors_refuses_to_open_or_cuts_only_the_last_record() {
    // Lost sectors are recognised by their zeros: no single bit flipped in the records of the
    // last segment takes that shape, so a flip before the last record still refuses to open.
    let (fs, original, segment) = written_sectors_log();
    let bytes = fs.contents(&segment).expect("exists");
    let records_end = bytes.iter().rposition(|&byte| byte != 0).expect("records") as u64 + 1;
    assert!(records_end > 3 * 512, "the records span several sectors: {records_end}");
    let mut options = options();
    options.segment_size = 1 << 20;
    options.preallocate = 4096;
    let (mut refused, mut cut) = (0, 0);
    for bit in 0..records_end * 8 {
        let (fs, _, _) = written_sectors_log();
        fs.flip_bit(&segment, bit / 8, (bit % 8) as u8).expect("flip");
        let context = format!("bit {bit}");
        match Wal::open(fs.clone(), DIR, options.clone()) {
            Err(Error::Corrupt { offset, .. }) => {
                assert!(offset <= bit / 8, "{context}: damage found at {offset}, after it");
                refused += 1;
            }
            Err(error) => panic!("{context}: the wrong error: {error}"),
            Ok((mut wal, recovery)) => {
                assert!(recovery.torn_bytes > 0, "{context}: a damaged record went unnoticed");
                let recovered = read_all(&mut wal);
                assert!(is_prefix(&recovered, &original), "{context}: a damaged entry");
                assert_eq!(recovered.last() + 1, original.last(), "{context}: {recovery:?}");
                cut += 1;
            }
        }
    }
    assert!(refused > 10_000 && cut > 100, "refused {refused}, cut {cut}");
}
