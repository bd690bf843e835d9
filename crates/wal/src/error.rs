//! The one error type of skiff-wal.
//!
//! I/O failures, damaged files and requests the log cannot serve are errors. A broken
//! invariant in the caller's use of the log (a gap in appended indexes, a term going backwards,
//! superseding committed entries) is a panic, because it is a bug that would corrupt the log.

use std::io;
use std::path::{Path, PathBuf};

use skiff_raft::{Index, NodeId};
use thiserror::Error;

/// What went wrong in the write-ahead log.
#[derive(Debug, Error)]
pub enum Error {
    /// The file system failed an operation on `path`.
    #[error("{operation} {path}: {source}")]
    Io {
        /// What the log was doing, in words ("write", "fsync", ...).
        operation: &'static str,
        /// The file or directory it was doing it to.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: io::Error,
    },
    /// A file holds bytes that cannot have been written by this log and cannot be a torn write:
    /// damage before the tail, a missing segment, a foreign file. Nothing was truncated; an
    /// operator must look at `file` from `offset`.
    #[error("corrupt write-ahead log: {file} at byte {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// The byte offset in `file` where the damage starts.
        offset: u64,
        /// What is wrong, in words.
        reason: String,
    },
    /// An earlier write or fsync failed, so what is on disk is unknown. The log refuses every
    /// further call; reopening it (which runs recovery) is the only way on. An fsync is never
    /// retried: after a failed fsync the kernel may have dropped the dirty pages and a retry
    /// would report success for data that is gone ("fsyncgate", PostgreSQL 2018).
    #[error("the write-ahead log failed earlier and refuses all work: {reason}")]
    Poisoned {
        /// The failure that poisoned the log.
        reason: String,
    },
    /// The data directory belongs to another node or cluster.
    #[error(
        "wrong data directory {dir}: it belongs to node {found_node} of cluster {found_cluster}, \
         not node {node} of cluster {cluster}"
    )]
    WrongDirectory {
        /// The data directory.
        dir: PathBuf,
        /// The node this process is.
        node: NodeId,
        /// The cluster this process belongs to.
        cluster: u64,
        /// The node the directory belongs to.
        found_node: NodeId,
        /// The cluster the directory belongs to.
        found_cluster: u64,
    },
    /// The data directory holds log segments but no identity file, so it cannot be checked.
    #[error("data directory {dir} has log segments but no identity file")]
    MissingIdentity {
        /// The data directory.
        dir: PathBuf,
    },
    /// A read asked for entries below the first index: they were compacted away.
    #[error("entry {index} was compacted; the log starts at {first_index}")]
    Compacted {
        /// The first index asked for.
        index: Index,
        /// The first index the log holds.
        first_index: Index,
    },
    /// A read asked for entries beyond the last index.
    #[error("entry {index} is beyond the last index {last_index}")]
    Unavailable {
        /// The index asked for.
        index: Index,
        /// The last index the log holds.
        last_index: Index,
    },
    /// An entry is larger than a record can hold.
    #[error("entry {index} is {size} bytes, more than the {limit}-byte record limit")]
    EntryTooLarge {
        /// The entry's index.
        index: Index,
        /// Its payload size in bytes.
        size: usize,
        /// The limit ([`MAX_PAYLOAD`](crate::MAX_PAYLOAD) less the entry's fixed fields).
        limit: usize,
    },
    /// The group-commit writer thread has stopped (after an error, or shut down).
    #[error("the write-ahead log's writer has stopped")]
    Stopped,
}

/// The result of every fallible operation of the log.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A closure that wraps an I/O error with what was being done to which path. The path is
/// copied only when there is an error: readers call this once per record.
pub(crate) fn io_error(operation: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Io { operation, path: path.to_path_buf(), source }
}
