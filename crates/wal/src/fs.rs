//! The file-system boundary: every byte the log reads or writes goes through [`Fs`] and
//! [`File`].
//!
//! The traits are as small as the log needs, so that a second implementation is cheap: the real
//! one, [`StdFs`], over `std::fs`, and [`MemFs`](crate::MemFs), an in-memory one that loses
//! unsynced data on a simulated crash and injects faults, for tests and the simulator.
//!
//! The durability model both implement, and that the log relies on:
//! - Data written to a file is durable once [`File::sync_data`] returns `Ok` (fdatasync: the
//!   data and the metadata needed to read it back, such as the file's size).
//! - Creating, renaming or removing a file is durable once [`Fs::sync_dir`] on its directory
//!   returns `Ok` (fsync of the directory, as POSIX requires and ext4 and XFS need).
//! - A write that was not synced may, after a crash, be lost, kept, or kept up to some byte (a
//!   torn write); writes to one file are kept in the order they were made.
//! - After a failed fsync nothing is known about the data it covered, and retrying it proves
//!   nothing.
//!
//! There is no memory mapping: with `mmap` an I/O error arrives as SIGBUS in whatever code
//! touched the page, instead of as an error from the call that can be handled.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A file system: the directory operations the log needs.
pub trait Fs: Send + Sync + fmt::Debug {
    /// Creates `dir` and its parents if they do not exist.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the files in `dir`, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates a new, empty file for reading and writing; fails if it exists.
    fn create(&self, path: &Path) -> io::Result<Box<dyn File>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Box<dyn File>>;
    /// Renames `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open file: positional reads and writes, fdatasync, size.
pub trait File: Send + fmt::Debug {
    /// Reads up to `buffer.len()` bytes at `offset`; returns how many, 0 at the end.
    fn read_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `data` at `offset`, extending the file if needed.
    fn write_at(&mut self, data: &[u8], offset: u64) -> io::Result<()>;
    /// Makes everything written so far durable (fdatasync).
    fn sync_data(&mut self) -> io::Result<()>;
    /// The file's current size in bytes.
    fn size(&self) -> io::Result<u64>;
    /// Cuts (or zero-extends) the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;

    /// Reads exactly `buffer.len()` bytes at `offset`, failing at the end of the file.
    fn read_exact_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buffer.len() {
            match self.read_at(&mut buffer[done..], offset + done as u64) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(read) => done += read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// The real file system, through `std::fs`: `pwrite`, `pread`, `fdatasync`, and a directory
/// `fsync` through a handle on the directory.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdFs;

/// A file of [`StdFs`].
#[derive(Debug)]
struct StdFile {
    /// The open file.
    file: fs::File,
}

impl Fs for StdFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                // A name that is not UTF-8 is none of ours; the log ignores it.
                if let Ok(name) = entry.file_name().into_string() {
                    names.push(name);
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn File>> {
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        Ok(Box::new(StdFile { file }))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn File>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Box::new(StdFile { file }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        fs::File::open(dir)?.sync_all()
    }
}

impl File for StdFile {
    fn read_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buffer, offset)
    }

    fn write_at(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

/// Writes a whole small file so that it appears complete or not at all: `name.tmp` is written
/// and fsynced, renamed to `name`, and the directory fsynced. Used for the identity and
/// snapshot files; the log's segments are appended instead.
pub(crate) fn write_atomically(
    fs: &dyn Fs,
    dir: &Path,
    name: &str,
    contents: &[u8],
) -> crate::Result<()> {
    use crate::error::io_error;
    let temporary = dir.join(format!("{name}{TEMPORARY_SUFFIX}"));
    let path = dir.join(name);
    // A temporary file left by a crash is garbage: nothing was renamed from it.
    if fs.open(&temporary).is_ok() {
        fs.remove_file(&temporary).map_err(io_error("remove", &temporary))?;
    }
    let mut file = fs.create(&temporary).map_err(io_error("create", &temporary))?;
    file.write_at(contents, 0).map_err(io_error("write", &temporary))?;
    file.sync_data().map_err(io_error("fsync", &temporary))?;
    drop(file);
    fs.rename(&temporary, &path).map_err(io_error("rename", &temporary))?;
    fs.sync_dir(dir).map_err(io_error("fsync directory", dir))
}

/// The suffix of files being written by [`write_atomically`]; open removes any it finds.
pub(crate) const TEMPORARY_SUFFIX: &str = ".tmp";

/// Reads a whole file.
pub(crate) fn read_whole(fs: &dyn Fs, path: &Path) -> crate::Result<Vec<u8>> {
    use crate::error::io_error;
    let file = fs.open(path).map_err(io_error("open", path))?;
    let len = file.size().map_err(io_error("size", path))?;
    let mut contents = vec![0; len as usize];
    file.read_exact_at(&mut contents, 0).map_err(io_error("read", path))?;
    Ok(contents)
}
