//! Snapshot files: a state machine's whole state as of a log index, in one checksummed file.
//!
//! A snapshot is written to a temporary file, fsynced, renamed into place and the directory
//! fsynced, so a crash leaves either the old snapshot or the new one, never half of one. Older
//! snapshots are removed once the new one is durable. The log may then be compacted up to the
//! snapshot's index ([`Wal::compact`](crate::Wal::compact)).
//!
//! Byte layout of `snapshot-<index, 20 digits>.snap` (little-endian):
//!
//! | offset | size   | field                          |
//! |--------|--------|--------------------------------|
//! | 0      | 8      | magic: the bytes `skiffsnp`    |
//! | 8      | 8      | index: u64, the last entry the snapshot covers |
//! | 16     | 8      | term: u64, that entry's term   |
//! | 24     | 8      | length: u64, of the data       |
//! | 32     | 4      | crc32c of the data             |
//! | 36     | 4      | crc32c of bytes 0 to 35        |
//! | 40     | length | the data                       |

use std::path::Path;

use skiff_raft::{Index, Term};

use crate::error::{Error, Result, io_error};
use crate::fs::{self, Fs};

/// What a snapshot covers: the log up to and including `index`, whose entry has `term`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The last log index the snapshot includes.
    pub index: Index,
    /// The term of the entry at `index`.
    pub term: Term,
}

/// The magic bytes that open a snapshot file.
const MAGIC: &[u8; 8] = b"skiffsnp";

/// The bytes before the data.
const HEADER_LEN: usize = 40;

/// The file name of the snapshot at `index`.
fn file_name(index: Index) -> String {
    format!("snapshot-{:020}.snap", index.0)
}

/// The index in a snapshot's file name, or `None` for any other file.
fn parse_file_name(name: &str) -> Option<Index> {
    let digits = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok().map(Index))?
}

/// Reads the little-endian u64 at `at`.
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("the slice is 8 bytes"))
}

/// Reads the little-endian u32 at `at`.
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("the slice is 4 bytes"))
}

/// Writes a snapshot durably, then removes every older one.
pub(crate) fn save(fs: &dyn Fs, dir: &Path, meta: SnapshotMeta, data: &[u8]) -> Result<()> {
    let mut contents = Vec::with_capacity(HEADER_LEN + data.len());
    contents.extend_from_slice(MAGIC);
    contents.extend_from_slice(&meta.index.0.to_le_bytes());
    contents.extend_from_slice(&meta.term.0.to_le_bytes());
    contents.extend_from_slice(&(data.len() as u64).to_le_bytes());
    contents.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
    let header_crc = crc32c::crc32c(&contents);
    contents.extend_from_slice(&header_crc.to_le_bytes());
    contents.extend_from_slice(data);
    fs::write_atomically(fs, dir, &file_name(meta.index), &contents)?;
    let names = fs.list(dir).map_err(io_error("list", dir))?;
    let older = names.iter().filter(|name| parse_file_name(name).is_some_and(|i| i < meta.index));
    let mut removed = false;
    for name in older {
        let path = dir.join(name);
        fs.remove_file(&path).map_err(io_error("remove", &path))?;
        removed = true;
    }
    if removed {
        fs.sync_dir(dir).map_err(io_error("fsync directory", dir))?;
    }
    Ok(())
}

/// The newest snapshot among `names`, by its header (the data is verified by [`load`]).
pub(crate) fn newest(fs: &dyn Fs, dir: &Path, names: &[String]) -> Result<Option<SnapshotMeta>> {
    let Some(index) = names.iter().filter_map(|name| parse_file_name(name)).max() else {
        return Ok(None);
    };
    let path = dir.join(file_name(index));
    let file = fs.open(&path).map_err(io_error("open", &path))?;
    let mut header = [0; HEADER_LEN];
    file.read_exact_at(&mut header, 0).map_err(|error| Error::Corrupt {
        file: path.clone(),
        offset: 0,
        reason: format!("the snapshot header cannot be read: {error}"),
    })?;
    let (meta, _, _) = parse_header(&header, &path)?;
    if meta.index != index {
        return Err(Error::Corrupt {
            file: path,
            offset: 8,
            reason: format!("the header says index {}, the name {index}", meta.index),
        });
    }
    Ok(Some(meta))
}

/// Parses and verifies a snapshot header: what it covers, the data's length and checksum.
fn parse_header(header: &[u8], path: &Path) -> Result<(SnapshotMeta, u64, u32)> {
    let corrupt = |offset: u64, reason: &str| Error::Corrupt {
        file: path.to_path_buf(),
        offset,
        reason: reason.into(),
    };
    if &header[..8] != MAGIC {
        return Err(corrupt(0, "not a snapshot file"));
    }
    if crc32c::crc32c(&header[..36]) != u32_at(header, 36) {
        return Err(corrupt(0, "the snapshot header's checksum does not match"));
    }
    let meta = SnapshotMeta { index: Index(u64_at(header, 8)), term: Term(u64_at(header, 16)) };
    Ok((meta, u64_at(header, 24), u32_at(header, 32)))
}

/// Reads and verifies the snapshot at `index`.
pub(crate) fn load(fs: &dyn Fs, dir: &Path, index: Index) -> Result<(SnapshotMeta, Vec<u8>)> {
    let path = dir.join(file_name(index));
    let mut contents = fs::read_whole(fs, &path)?;
    if contents.len() < HEADER_LEN {
        return Err(Error::Corrupt { file: path, offset: 0, reason: "a cut snapshot file".into() });
    }
    let (meta, length, crc) = parse_header(&contents[..HEADER_LEN], &path)?;
    let data = contents.split_off(HEADER_LEN);
    if data.len() as u64 != length || crc32c::crc32c(&data) != crc {
        return Err(Error::Corrupt {
            file: path,
            offset: HEADER_LEN as u64,
            reason: "the snapshot data does not match its length and checksum".into(),
        });
    }
    Ok((meta, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memfs::MemFs;

    #[test]
    fn a_saved_snapshot_loads_and_replaces_older_ones() {
        let fs = MemFs::new(0);
        let dir = Path::new("/data");
        fs.create_dir_all(dir).expect("mkdir");
        let first = SnapshotMeta { index: Index(10), term: Term(2) };
        let second = SnapshotMeta { index: Index(20), term: Term(3) };
        save(&fs, dir, first, b"old").expect("save");
        save(&fs, dir, second, b"new state").expect("save");
        let names = fs.list(dir).expect("list");
        assert_eq!(names, vec![file_name(Index(20))], "the older snapshot is gone");
        assert_eq!(newest(&fs, dir, &names).expect("readable"), Some(second));
        assert_eq!(load(&fs, dir, Index(20)).expect("loads"), (second, b"new state".to_vec()));
    }

    #[test]
    fn a_damaged_snapshot_is_refused() {
        let fs = MemFs::new(0);
        let dir = Path::new("/data");
        fs.create_dir_all(dir).expect("mkdir");
        save(&fs, dir, SnapshotMeta { index: Index(5), term: Term(1) }, b"state").expect("save");
        fs.flip_bit(&dir.join(file_name(Index(5))), 42, 3).expect("flip");
        let error = load(&fs, dir, Index(5)).expect_err("damage is found");
        assert!(matches!(error, Error::Corrupt { offset: 40, .. }), "{error}");
    }
}
