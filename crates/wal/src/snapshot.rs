//! Snapshot files: a state machine's whole state as of a log index, in one checksummed file.
//!
//! A snapshot is written to a temporary file, fsynced, renamed into place and the directory
//! fsynced, so a crash leaves either the old snapshot or the new one, never half of one. Older
//! snapshots are removed once the new one is durable. The log may then be compacted up to the
//! snapshot's index ([`Wal::compact`](crate::Wal::compact)).
//!
//! ## Streaming, from any thread
//! A snapshot can be far larger than what should sit in memory twice, and writing one must not
//! hold up the log's writer thread. So the two halves are apart: a [`SnapshotWriter`] (local
//! snapshots) or a [`SnapshotReceiver`] (a snapshot fetched from the leader, chunk by chunk)
//! fills the temporary file from any thread, through [`SnapshotFiles`], and ends with a
//! [`StagedSnapshot`]: complete, verified and fsynced, but not yet the node's snapshot. Only
//! [`Wal::save_staged_snapshot`](crate::Wal::save_staged_snapshot) (or `install_snapshot`, for
//! a fetched one) makes it so, with a rename and a directory fsync: quick, on the log's thread.
//! A staged snapshot dropped unsaved removes its file; one left by a crash is removed at open.
//! Reads stream too: a [`SnapshotReader`] hands out the data and checks its checksum at the
//! end, and [`SnapshotFiles::read_chunk`] serves the raw file by offset to a fetching peer,
//! keeping it open so that a transfer survives a newer snapshot replacing it.
//!
//! ## Byte layout of `snapshot-<index, 20 digits>.snap` (little-endian), format version 3
//!
//! | offset  | size   | field                                                        |
//! |---------|--------|--------------------------------------------------------------|
//! | 0       | 8      | magic: the bytes `skiffsnp`                                  |
//! | 8       | 4      | format version: u32, 3                                       |
//! | 12      | 8      | index: u64, the last entry the snapshot covers (at least 1)  |
//! | 20      | 8      | term: u64, that entry's term                                 |
//! | 28      | 4      | `m`: u32, the length of the configuration that follows       |
//! | 32      | m      | the configuration as of `index`: voters, learners, outgoing voters (layout in `membership.rs`) |
//! | 32+m    | 8      | length: u64, of the data                                     |
//! | 40+m    | 4      | crc32c of the data                                           |
//! | 44+m    | 4      | crc32c of bytes 0 to 43+m (the header before it)             |
//! | 48+m    | length | the data                                                     |
//!
//! The configuration travels with the snapshot because a node restored from it, or installing
//! it, must know the configuration as of its index (Raft §7), and the log after it may hold no
//! configuration entry.
//!
//! **Version 2** is still read (it is never written): the same layout with, at offset 28, a
//! voter count `n` (1 to 1,024) and at 32 the voters' ids (8 × n bytes, strictly increasing),
//! then length and checksums at 32+8n — a configuration of voters only. Version 1 (no version
//! field, no voters) was never deployed and is not read.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skiff_raft::{Index, Membership, NodeId, SnapshotMeta, Term};

use crate::error::{Error, Result, io_error};
use crate::fs::{File, Fs, TEMPORARY_SUFFIX};
use crate::membership;

/// The magic bytes that open a snapshot file.
const MAGIC: &[u8; 8] = b"skiffsnp";

/// The format version this build writes; it also reads [`OLD_VERSION`].
const FORMAT_VERSION: u32 = 3;

/// The older format version still read: the configuration is a plain list of voters.
const OLD_VERSION: u32 = 2;

/// The bytes before the configuration: magic, version, index, term, configuration length (or
/// voter count, in version 2).
const FIXED_LEN: usize = 32;

/// The longest configuration a header may hold: three sets of at most
/// [`membership::MAX_SET`] ids. Bounds what a damaged length makes us read.
const MAX_CONFIGURATION_LEN: usize = 12 + 3 * 8 * membership::MAX_SET;

/// The data bytes a [`SnapshotWriter`] buffers before writing them to the file.
const WRITE_BUFFER: usize = 1 << 20;

/// The bytes read at a time when verifying a received snapshot.
const VERIFY_CHUNK: usize = 1 << 20;

/// The length of the header of a snapshot whose configuration takes `configuration` bytes.
fn header_len(configuration: usize) -> usize {
    FIXED_LEN + configuration + 16
}

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

/// Encodes the header of a snapshot of `meta` whose data has `length` bytes summing to `crc`.
fn encode_header(meta: &SnapshotMeta, length: u64, crc: u32) -> Vec<u8> {
    assert!(meta.index >= Index(1), "a snapshot covers at least index 1");
    let configuration_len = membership::encoded_len(&meta.membership);
    let mut header = Vec::with_capacity(header_len(configuration_len));
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&meta.index.0.to_le_bytes());
    header.extend_from_slice(&meta.term.0.to_le_bytes());
    header.extend_from_slice(&(configuration_len as u32).to_le_bytes());
    // Panics on a configuration without voters: the core never describes one.
    membership::encode(&mut header, &meta.membership);
    header.extend_from_slice(&length.to_le_bytes());
    header.extend_from_slice(&crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&header);
    header.extend_from_slice(&header_crc.to_le_bytes());
    assert_eq!(header.len(), header_len(configuration_len), "the documented layout");
    header
}

/// A snapshot file's header, verified.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Header {
    /// What the snapshot covers.
    meta: SnapshotMeta,
    /// The length of the data.
    data_len: u64,
    /// The crc32c of the data.
    data_crc: u32,
    /// The length of the header: the data starts here.
    len: u64,
}

impl Header {
    /// The length of the whole file.
    fn file_len(&self) -> u64 {
        self.len + self.data_len
    }
}

/// Reads and verifies the header of the snapshot file `file` at `path`.
fn read_header(file: &dyn File, path: &Path) -> Result<Header> {
    let corrupt =
        |offset: u64, reason: String| Error::Corrupt { file: path.to_path_buf(), offset, reason };
    let mut fixed = [0; FIXED_LEN];
    file.read_exact_at(&mut fixed, 0)
        .map_err(|error| corrupt(0, format!("the snapshot header cannot be read: {error}")))?;
    if &fixed[..8] != MAGIC {
        return Err(corrupt(0, "not a snapshot file".into()));
    }
    let version = u32_at(&fixed, 8);
    let configuration_len = match version {
        FORMAT_VERSION => u32_at(&fixed, 28) as usize,
        OLD_VERSION => 8 * u32_at(&fixed, 28) as usize,
        _ => {
            let reason = format!("snapshot format version {version}, not {FORMAT_VERSION}");
            return Err(corrupt(8, reason));
        }
    };
    if configuration_len > MAX_CONFIGURATION_LEN {
        return Err(corrupt(28, format!("a configuration of {configuration_len} bytes")));
    }
    let mut header = vec![0; header_len(configuration_len)];
    file.read_exact_at(&mut header, 0)
        .map_err(|error| corrupt(0, format!("the snapshot header cannot be read: {error}")))?;
    let crc_at = header.len() - 4;
    // Paired with encode_header: the whole header, configuration included, is checked before
    // use.
    if header[..FIXED_LEN] != fixed || crc32c::crc32c(&header[..crc_at]) != u32_at(&header, crc_at)
    {
        return Err(corrupt(0, "the snapshot header's checksum does not match".into()));
    }
    let configuration = &header[FIXED_LEN..FIXED_LEN + configuration_len];
    let membership = if version == OLD_VERSION {
        let voters: Vec<NodeId> =
            configuration.chunks_exact(8).map(|id| NodeId(u64_at(id, 0))).collect();
        if voters.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(corrupt(FIXED_LEN as u64, "the voters are not in increasing order".into()));
        }
        let membership = Membership::new(voters);
        membership.validate().map_err(|reason| corrupt(FIXED_LEN as u64, reason))?;
        membership
    } else {
        match membership::decode(configuration) {
            Ok((membership, used)) if used == configuration_len => membership,
            Ok(_) => {
                return Err(corrupt(28, "the configuration is shorter than its length".into()));
            }
            Err(reason) => return Err(corrupt(FIXED_LEN as u64, reason)),
        }
    };
    let index = Index(u64_at(&header, 12));
    if index == Index(0) {
        return Err(corrupt(12, "a snapshot at index 0".into()));
    }
    let meta = SnapshotMeta { index, term: Term(u64_at(&header, 20)), membership };
    let lengths_at = FIXED_LEN + configuration_len;
    Ok(Header {
        meta,
        data_len: u64_at(&header, lengths_at),
        data_crc: u32_at(&header, lengths_at + 8),
        len: header.len() as u64,
    })
}

/// The newest snapshot among the directory listing `names`, by its header (the data is
/// verified when it is read).
pub(crate) fn newest(fs: &dyn Fs, dir: &Path, names: &[String]) -> Result<Option<SnapshotMeta>> {
    let Some(index) = names.iter().filter_map(|name| parse_file_name(name)).max() else {
        return Ok(None);
    };
    let path = dir.join(file_name(index));
    let file = fs.open(&path).map_err(io_error("open", &path))?;
    let header = read_header(&*file, &path)?;
    if header.meta.index != index {
        return Err(Error::Corrupt {
            file: path,
            offset: 12,
            reason: format!("the header says index {}, the name {index}", header.meta.index),
        });
    }
    Ok(Some(header.meta))
}

/// Makes `staged` the snapshot of `dir` (rename, directory fsync), then removes every older
/// snapshot. The caller poisons the log if this fails.
pub(crate) fn save(fs: &dyn Fs, dir: &Path, mut staged: StagedSnapshot) -> Result<SnapshotMeta> {
    let temporary = staged.temporary.take().expect("a staged snapshot is saved once");
    let path = dir.join(file_name(staged.meta.index));
    fs.rename(&temporary, &path).map_err(io_error("rename", &temporary))?;
    fs.sync_dir(dir).map_err(io_error("fsync directory", dir))?;
    let names = fs.list(dir).map_err(io_error("list", dir))?;
    let index = staged.meta.index;
    let older = names.iter().filter(|name| parse_file_name(name).is_some_and(|i| i < index));
    let mut removed = false;
    for name in older {
        let path = dir.join(name);
        fs.remove_file(&path).map_err(io_error("remove", &path))?;
        removed = true;
    }
    if removed {
        fs.sync_dir(dir).map_err(io_error("fsync directory", dir))?;
    }
    Ok(staged.meta.clone())
}

/// The snapshot files of one data directory, usable from any thread: writing new ones
/// ([`SnapshotFiles::writer`], [`SnapshotFiles::receiver`]) and reading existing ones
/// ([`SnapshotFiles::open`], [`SnapshotFiles::read_chunk`]). Get one from
/// [`Wal::snapshot_files`](crate::Wal::snapshot_files); cloning it is cheap, and clones share
/// the handles kept open for transfers.
#[derive(Clone, Debug)]
pub struct SnapshotFiles {
    /// The file system the log uses.
    fs: Arc<dyn Fs>,
    /// The data directory.
    dir: PathBuf,
    /// The snapshot files being served to peers, kept open (see [`SnapshotFiles::read_chunk`]).
    serving: Arc<Mutex<Vec<Served>>>,
}

/// A snapshot file open for serving chunks.
#[derive(Debug)]
struct Served {
    /// The snapshot's index.
    index: Index,
    /// The open file; it stays readable after a newer snapshot removed its name.
    file: Box<dyn File>,
    /// Its header, verified when it was opened.
    header: Header,
    /// When a chunk was last read from it.
    last_read: Instant,
}

/// The most snapshot files kept open for transfers: the latest, and one a slow transfer
/// started on before it replaced it.
const MAX_SERVED: usize = 2;

/// A file kept open for transfers is closed after this long without a chunk read. Until then
/// a replaced snapshot's disk space is not freed, so this bounds how long a transfer can be
/// interrupted and still resume, and how long the space stays held.
const SERVED_IDLE: Duration = Duration::from_secs(60);

/// A piece of a snapshot file, as [`SnapshotFiles::read_chunk`] serves it to a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// What the snapshot covers (from its verified header).
    pub meta: SnapshotMeta,
    /// The length of the whole file.
    pub file_len: u64,
    /// The crc32c of the snapshot's data, from its header: the same in every chunk of one file.
    pub data_crc: u32,
    /// The file's bytes from the offset asked for; empty at the end of the file.
    pub bytes: Vec<u8>,
}

impl SnapshotFiles {
    /// The snapshot files of `dir` on `fs`.
    pub(crate) fn new(fs: Arc<dyn Fs>, dir: PathBuf) -> SnapshotFiles {
        SnapshotFiles { fs, dir, serving: Arc::new(Mutex::new(Vec::new())) }
    }

    /// The path of the temporary file of the snapshot at `index`, emptied and created anew.
    fn create_temporary(&self, index: Index) -> Result<(PathBuf, Box<dyn File>)> {
        let temporary = self.dir.join(format!("{}{TEMPORARY_SUFFIX}", file_name(index)));
        // A leftover from an attempt that failed is garbage: nothing was renamed from it.
        if self.fs.open(&temporary).is_ok() {
            self.fs.remove_file(&temporary).map_err(io_error("remove", &temporary))?;
        }
        let file = self.fs.create(&temporary).map_err(io_error("create", &temporary))?;
        Ok((temporary, file))
    }

    /// Starts writing a snapshot of `meta` whose data the caller streams in (see
    /// [`SnapshotWriter`]).
    pub fn writer(&self, meta: SnapshotMeta) -> Result<SnapshotWriter> {
        // Checked here rather than at the end, so a caller learns it before writing gigabytes.
        drop(encode_header(&meta, 0, 0));
        let (temporary, file) = self.create_temporary(meta.index)?;
        let data_offset = header_len(membership::encoded_len(&meta.membership)) as u64;
        let staged =
            StagedSnapshot { fs: self.fs.clone(), meta, temporary: Some(temporary), file_len: 0 };
        Ok(SnapshotWriter {
            staged: Some(staged),
            file,
            written: data_offset,
            data_offset,
            buffer: Vec::with_capacity(WRITE_BUFFER),
            crc: 0,
        })
    }

    /// Starts receiving the file of the snapshot `meta` from a peer, chunk by chunk (see
    /// [`SnapshotReceiver`]).
    pub fn receiver(&self, meta: SnapshotMeta) -> Result<SnapshotReceiver> {
        let (temporary, file) = self.create_temporary(meta.index)?;
        let staged =
            StagedSnapshot { fs: self.fs.clone(), meta, temporary: Some(temporary), file_len: 0 };
        Ok(SnapshotReceiver { staged: Some(staged), file, received: 0 })
    }

    /// Opens the snapshot at `index` for reading its data; `None` if there is no such file.
    pub fn open(&self, index: Index) -> Result<Option<(SnapshotMeta, SnapshotReader)>> {
        let path = self.dir.join(file_name(index));
        match SnapshotReader::open(&*self.fs, &path) {
            Ok(opened) => Ok(Some(opened)),
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Reads up to `max_len` bytes of the file of the snapshot at `index`, from `offset`: what a
    /// leader serves to a follower fetching it. `None` if there is no such file.
    ///
    /// The file is kept open between chunks (two files at most, each until a minute passes
    /// without a chunk read), so a transfer goes on to its end even when a newer snapshot
    /// replaces the file's name meanwhile: otherwise a leader taking snapshots faster than a
    /// follower can fetch one would never let it finish. The header is verified when the file
    /// is opened, so a chunk never comes from a damaged or foreign file; the data is verified
    /// by the receiver, end to end.
    pub fn read_chunk(
        &self,
        index: Index,
        offset: u64,
        max_len: usize,
    ) -> Result<Option<SnapshotChunk>> {
        let path = self.dir.join(file_name(index));
        // A poisoned lock only means a read panicked; the handles are still good.
        let mut serving = self.serving.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        serving.retain(|served| served.last_read.elapsed() < SERVED_IDLE);
        let position = match serving.iter().position(|served| served.index == index) {
            Some(position) => position,
            None => {
                let file = match self.fs.open(&path) {
                    Ok(file) => file,
                    Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(error) => return Err(io_error("open", &path)(error)),
                };
                let header = read_header(&*file, &path)?;
                if serving.len() >= MAX_SERVED {
                    // The one read longest ago goes: its transfer is the likeliest abandoned.
                    let oldest = (0..serving.len()).min_by_key(|&at| serving[at].last_read);
                    serving.remove(oldest.expect("the list is full, so not empty"));
                }
                serving.push(Served { index, file, header, last_read: Instant::now() });
                serving.len() - 1
            }
        };
        let served = &mut serving[position];
        served.last_read = Instant::now();
        let header = &served.header;
        let file_len = header.file_len();
        let length = file_len.saturating_sub(offset).min(max_len as u64) as usize;
        let mut bytes = vec![0; length];
        served.file.read_exact_at(&mut bytes, offset).map_err(io_error("read", &path))?;
        let (meta, data_crc) = (header.meta.clone(), header.data_crc);
        Ok(Some(SnapshotChunk { meta, file_len, data_crc, bytes }))
    }
}

/// A snapshot file complete, verified and fsynced under its temporary name, waiting to be made
/// the node's snapshot by [`Wal::save_staged_snapshot`](crate::Wal::save_staged_snapshot) or
/// [`Wal::install_snapshot`](crate::Wal::install_snapshot). Dropped unsaved, it removes its
/// file.
#[derive(Debug)]
pub struct StagedSnapshot {
    /// The file system it is on.
    fs: Arc<dyn Fs>,
    /// What it covers.
    meta: SnapshotMeta,
    /// The temporary file; `None` once saved (renamed).
    temporary: Option<PathBuf>,
    /// The length of the whole file.
    file_len: u64,
}

impl StagedSnapshot {
    /// What the snapshot covers.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// The length of the whole file, header included.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Opens the staged file for reading its data (to restore a state machine from it before
    /// installing it).
    pub fn reader(&self) -> Result<SnapshotReader> {
        let temporary = self.temporary.as_ref().expect("an unsaved staged snapshot has a file");
        let (meta, reader) = SnapshotReader::open(&*self.fs, temporary)?;
        assert_eq!(meta, self.meta, "a staged snapshot's header was verified when staged");
        Ok(reader)
    }
}

impl Drop for StagedSnapshot {
    fn drop(&mut self) {
        if let Some(temporary) = self.temporary.take() {
            // Best effort: a file left behind is removed at the next open.
            let _ = self.fs.remove_file(&temporary);
        }
    }
}

/// Writes a local snapshot: the caller streams the state machine's bytes in through
/// [`Write`], then [`SnapshotWriter::finish`] writes the header, fsyncs and returns the
/// [`StagedSnapshot`]. Memory stays at one buffer however large the snapshot.
#[derive(Debug)]
pub struct SnapshotWriter {
    /// What it becomes; `None` once finished.
    staged: Option<StagedSnapshot>,
    /// The temporary file.
    file: Box<dyn File>,
    /// The bytes of the file written so far (the header's place included).
    written: u64,
    /// Where the data starts: the header's length.
    data_offset: u64,
    /// Data not yet written to the file.
    buffer: Vec<u8>,
    /// The crc32c of the data so far.
    crc: u32,
}

impl SnapshotWriter {
    /// Writes the buffered data to the file.
    fn write_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.file.write_at(&self.buffer, self.written)?;
        self.written += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// Writes the rest of the data and the header, fsyncs the file, and hands it over staged.
    pub fn finish(mut self) -> Result<StagedSnapshot> {
        let mut staged = self.staged.take().expect("a writer finishes once");
        let path = staged.temporary.clone().expect("an unsaved staged snapshot has a file");
        self.write_buffer().map_err(io_error("write", &path))?;
        let data_len = self.written - self.data_offset;
        let header = encode_header(&staged.meta, data_len, self.crc);
        assert_eq!(header.len() as u64, self.data_offset, "the header fills its place");
        self.file.write_at(&header, 0).map_err(io_error("write", &path))?;
        self.file.sync_data().map_err(io_error("fsync", &path))?;
        staged.file_len = self.written;
        Ok(staged)
    }
}

impl Write for SnapshotWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= WRITE_BUFFER {
            self.write_buffer()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Durability comes from `finish`; flushing only moves the buffer into the file.
        self.write_buffer()
    }
}

/// Receives a snapshot file from a peer, in order, by offset: [`SnapshotReceiver::write_chunk`]
/// takes each chunk, and a lost chunk is asked for again from
/// [`SnapshotReceiver::received`], so a transfer resumes where it broke. Then
/// [`SnapshotReceiver::finish`] fsyncs the file and verifies all of it, read back from the
/// disk — the header against the snapshot asked for, the data against its checksum — before
/// handing it over staged.
#[derive(Debug)]
pub struct SnapshotReceiver {
    /// What it becomes; `None` once finished.
    staged: Option<StagedSnapshot>,
    /// The temporary file.
    file: Box<dyn File>,
    /// The bytes received so far: the next chunk's offset.
    received: u64,
}

impl SnapshotReceiver {
    /// The bytes received so far: the offset of the next chunk to ask for.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Writes the chunk of the file at `offset`, which must be [`SnapshotReceiver::received`].
    pub fn write_chunk(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let path = self.path();
        if offset != self.received {
            return Err(Error::Corrupt {
                file: path,
                offset,
                reason: format!("a chunk at {offset} where {} belongs", self.received),
            });
        }
        self.file.write_at(bytes, offset).map_err(io_error("write", &path))?;
        self.received += bytes.len() as u64;
        Ok(())
    }

    /// The temporary file's path.
    fn path(&self) -> PathBuf {
        let staged = self.staged.as_ref().expect("an unfinished receiver has its staged file");
        staged.temporary.clone().expect("an unsaved staged snapshot has a file")
    }

    /// Fsyncs the file and verifies it whole (see the type's documentation); on success it is
    /// the snapshot asked for, byte for byte as the peer wrote it, up to crc32c's odds.
    pub fn finish(mut self) -> Result<StagedSnapshot> {
        let path = self.path();
        self.file.sync_data().map_err(io_error("fsync", &path))?;
        let mut staged = self.staged.take().expect("a receiver finishes once");
        let (meta, mut reader) = SnapshotReader::open(&*staged.fs, &path)?;
        if meta != staged.meta {
            return Err(Error::Corrupt {
                file: path,
                offset: 0,
                reason: format!("received snapshot {meta}, not the {} asked for", staged.meta),
            });
        }
        let mut buffer = vec![0; VERIFY_CHUNK];
        loop {
            match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) => {
                    return Err(Error::Corrupt {
                        file: path,
                        offset: 0,
                        reason: error.to_string(),
                    });
                }
            }
        }
        staged.file_len = self.received;
        Ok(staged)
    }
}

/// Reads a snapshot's data, verifying it against the header's length and checksum as it goes:
/// the read that reaches the end fails with [`io::ErrorKind::InvalidData`] if they do not
/// match, so a consumer that reads to the end never takes damaged data for good.
#[derive(Debug)]
pub struct SnapshotReader {
    /// The file.
    file: Box<dyn File>,
    /// Its path, for errors.
    path: PathBuf,
    /// The next byte to read.
    offset: u64,
    /// The end of the data: the file's length.
    end: u64,
    /// The crc32c of the data read so far.
    crc: u32,
    /// The crc32c the header gives.
    expected_crc: u32,
    /// Whether the end was reached and the checksum matched.
    verified: bool,
}

impl SnapshotReader {
    /// Opens the snapshot file at `path`, verifying its header and length.
    fn open(fs: &dyn Fs, path: &Path) -> Result<(SnapshotMeta, SnapshotReader)> {
        let file = fs.open(path).map_err(io_error("open", path))?;
        let header = read_header(&*file, path)?;
        let size = file.size().map_err(io_error("size", path))?;
        if size != header.file_len() {
            return Err(Error::Corrupt {
                file: path.to_path_buf(),
                offset: header.len,
                reason: format!("the file has {size} bytes, its header says {}", header.file_len()),
            });
        }
        let reader = SnapshotReader {
            file,
            path: path.to_path_buf(),
            offset: header.len,
            end: header.file_len(),
            crc: 0,
            expected_crc: header.data_crc,
            verified: false,
        };
        Ok((header.meta, reader))
    }

    /// The length of the data.
    pub fn data_len(&self) -> u64 {
        self.end - self.offset
    }
}

impl Read for SnapshotReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if self.offset == self.end || buffer.is_empty() {
            if !self.verified && self.offset == self.end {
                if self.crc != self.expected_crc {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "the snapshot data in {} does not match its checksum",
                            self.path.display()
                        ),
                    ));
                }
                self.verified = true;
            }
            return Ok(0);
        }
        let wanted = buffer.len().min((self.end - self.offset) as usize);
        let read = self.file.read_at(&mut buffer[..wanted], self.offset)?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.crc = crc32c::crc32c_append(self.crc, &buffer[..read]);
        self.offset += read as u64;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::memfs::MemFs;

    fn meta(index: u64, term: u64) -> SnapshotMeta {
        let voters: BTreeSet<NodeId> = [1, 2, 3].into_iter().map(NodeId).collect();
        SnapshotMeta { index: Index(index), term: Term(term), membership: Membership::new(voters) }
    }

    fn files() -> (MemFs, SnapshotFiles) {
        let fs = MemFs::new(0);
        fs.create_dir_all(Path::new("/data")).expect("mkdir");
        let files = SnapshotFiles::new(Arc::new(fs.clone()), "/data".into());
        (fs, files)
    }

    /// Writes and saves a snapshot of `data`.
    fn save_data(files: &SnapshotFiles, meta: SnapshotMeta, data: &[u8]) {
        let mut writer = files.writer(meta).expect("starts");
        writer.write_all(data).expect("writes");
        let staged = writer.finish().expect("finishes");
        save(&*files.fs, &files.dir, staged).expect("saves");
    }

    /// The data of the snapshot at `index`, read to the end.
    fn read_data(files: &SnapshotFiles, index: u64) -> io::Result<Vec<u8>> {
        let (_, mut reader) = files.open(Index(index)).expect("opens").expect("exists");
        let mut data = Vec::new();
        reader.read_to_end(&mut data)?;
        Ok(data)
    }

    #[test]
    fn a_saved_snapshot_loads_and_replaces_older_ones() {
        let (fs, files) = files();
        save_data(&files, meta(10, 2), b"old");
        save_data(&files, meta(20, 3), b"new state");
        let names = fs.list(Path::new("/data")).expect("list");
        assert_eq!(names, vec![file_name(Index(20))], "the older snapshot is gone");
        let newest = newest(&fs, Path::new("/data"), &names).expect("readable");
        assert_eq!(newest, Some(meta(20, 3)), "the configuration comes back too");
        assert_eq!(read_data(&files, 20).expect("verified"), b"new state");
        assert!(files.open(Index(10)).expect("no error").is_none(), "removed");
    }

    #[test]
    fn the_header_is_laid_out_as_documented() {
        let header = encode_header(&meta(7, 2), 5, 0xAABB_CCDD);
        // Three voters, no learner, no outgoing voter: 4 + 24 + 4 + 4 configuration bytes.
        assert_eq!(header.len(), 48 + 36);
        assert_eq!(&header[..8], b"skiffsnp");
        assert_eq!(u32_at(&header, 8), 3);
        assert_eq!((u64_at(&header, 12), u64_at(&header, 20)), (7, 2));
        assert_eq!(u32_at(&header, 28), 36);
        assert_eq!(u32_at(&header, 32), 3, "the voter count");
        assert_eq!((u64_at(&header, 36), u64_at(&header, 52)), (1, 3));
        assert_eq!((u32_at(&header, 60), u32_at(&header, 64)), (0, 0), "no learners, not joint");
        assert_eq!((u64_at(&header, 68), u32_at(&header, 76)), (5, 0xAABB_CCDD));
        assert_eq!(u32_at(&header, 80), crc32c::crc32c(&header[..80]));
    }

    #[test]
    fn a_version_2_snapshot_is_still_read() {
        // The layout of version 2, written by hand: voters n1, n2, n3, data "old".
        let mut file = Vec::new();
        file.extend_from_slice(b"skiffsnp");
        file.extend_from_slice(&2u32.to_le_bytes());
        file.extend_from_slice(&7u64.to_le_bytes());
        file.extend_from_slice(&2u64.to_le_bytes());
        file.extend_from_slice(&3u32.to_le_bytes());
        for voter in 1..=3u64 {
            file.extend_from_slice(&voter.to_le_bytes());
        }
        file.extend_from_slice(&3u64.to_le_bytes());
        file.extend_from_slice(&crc32c::crc32c(b"old").to_le_bytes());
        let header_crc = crc32c::crc32c(&file);
        file.extend_from_slice(&header_crc.to_le_bytes());
        file.extend_from_slice(b"old");
        let (fs, files) = files();
        let path = Path::new("/data").join(file_name(Index(7)));
        let mut written = fs.create(&path).expect("create");
        written.write_at(&file, 0).expect("write");
        written.sync_data().expect("sync");
        let names = fs.list(Path::new("/data")).expect("list");
        let newest = newest(&fs, Path::new("/data"), &names).expect("readable");
        assert_eq!(newest, Some(meta(7, 2)), "a configuration of voters only");
        assert_eq!(read_data(&files, 7).expect("verified"), b"old");
    }

    #[test]
    fn learners_and_outgoing_voters_travel_in_the_header() {
        let (fs, files) = files();
        let joint = Membership {
            voters: [2, 3, 4].map(NodeId).into(),
            learners: [5].map(NodeId).into(),
            outgoing: [1, 2, 3].map(NodeId).into(),
        };
        let meta = SnapshotMeta { index: Index(4), term: Term(1), membership: joint };
        save_data(&files, meta.clone(), b"state");
        let names = fs.list(Path::new("/data")).expect("list");
        assert_eq!(newest(&fs, Path::new("/data"), &names).expect("readable"), Some(meta));
        assert_eq!(read_data(&files, 4).expect("verified"), b"state");
    }

    #[test]
    fn damaged_data_is_refused_at_the_end_of_the_read() {
        let (fs, files) = files();
        save_data(&files, meta(5, 1), b"state");
        let header = header_len(36) as u64;
        fs.flip_bit(&Path::new("/data").join(file_name(Index(5))), header + 2, 3).expect("flip");
        let error = read_data(&files, 5).expect_err("damage is found");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    }

    #[test]
    fn a_damaged_header_is_refused() {
        let (fs, files) = files();
        save_data(&files, meta(5, 1), b"state");
        fs.flip_bit(&Path::new("/data").join(file_name(Index(5))), 40, 0).expect("flip");
        let error = files.open(Index(5)).expect_err("damage is found");
        assert!(matches!(error, Error::Corrupt { offset: 0, .. }), "{error}");
        let error = files.read_chunk(Index(5), 0, 100).expect_err("not served either");
        assert!(matches!(error, Error::Corrupt { .. }), "{error}");
    }

    #[test]
    fn a_snapshot_received_in_chunks_resumes_and_is_verified_whole() {
        let (_, leader) = files();
        let data: Vec<u8> = (0..10_000u32).flat_map(u32::to_le_bytes).collect();
        save_data(&leader, meta(9, 2), &data);
        let (_, follower) = files();
        let mut receiver = follower.receiver(meta(9, 2)).expect("starts");
        loop {
            let offset = receiver.received();
            let chunk = leader.read_chunk(Index(9), offset, 4096).expect("reads").expect("exists");
            assert_eq!(chunk.meta, meta(9, 2));
            if chunk.bytes.is_empty() {
                assert_eq!(offset, chunk.file_len);
                break;
            }
            // A chunk sent at the wrong offset (a lost one before it) is refused, not written.
            assert!(receiver.write_chunk(offset + 1, &chunk.bytes).is_err());
            receiver.write_chunk(offset, &chunk.bytes).expect("writes");
        }
        let staged = receiver.finish().expect("verified");
        assert_eq!(staged.meta(), &meta(9, 2));
        let mut restored = Vec::new();
        staged.reader().expect("opens").read_to_end(&mut restored).expect("reads");
        assert_eq!(restored, data);
    }

    #[test]
    fn a_transfer_goes_on_after_a_newer_snapshot_replaces_the_file() {
        let (_, leader) = files();
        save_data(&leader, meta(9, 2), &[9; 3000]);
        let first = leader.read_chunk(Index(9), 0, 1000).expect("reads").expect("exists");
        save_data(&leader, meta(20, 2), &[20; 3000]);
        let fresh = SnapshotFiles::new(leader.fs.clone(), leader.dir.clone());
        assert!(fresh.read_chunk(Index(9), 0, 1000).expect("no error").is_none(), "replaced");
        let next = leader.read_chunk(Index(9), 1000, 1000).expect("reads").expect("still open");
        assert_eq!((next.meta, next.file_len), (first.meta, first.file_len));
        assert_eq!(next.bytes, vec![9; 1000], "the replaced file's data");
        // Two more snapshots served: the one read longest ago is closed.
        leader.read_chunk(Index(20), 0, 10).expect("reads").expect("exists");
        save_data(&leader, meta(30, 2), &[30; 3000]);
        leader.read_chunk(Index(30), 0, 10).expect("reads").expect("exists");
        assert!(leader.read_chunk(Index(9), 2000, 10).expect("no error").is_none(), "closed");
    }

    #[test]
    fn a_damaged_or_different_transfer_is_refused() {
        let (_, leader) = files();
        save_data(&leader, meta(9, 2), &[7; 5000]);
        let (follower_fs, follower) = files();
        let receive = |asked: SnapshotMeta| {
            let mut receiver = follower.receiver(asked).expect("starts");
            let chunk = leader.read_chunk(Index(9), 0, usize::MAX).expect("reads").expect("found");
            receiver.write_chunk(0, &chunk.bytes).expect("writes");
            receiver
        };
        let other_term = receive(meta(9, 3)).finish().expect_err("another snapshot");
        assert!(other_term.to_string().contains("not the"), "{other_term}");
        let receiver = receive(meta(9, 2));
        follower_fs.flip_bit(&receiver.path(), 100, 1).expect("flip");
        let error = receiver.finish().expect_err("a flipped bit is found");
        assert!(error.to_string().contains("checksum"), "{error}");
        assert!(
            follower_fs.files().iter().all(|(path, _)| !path.ends_with(file_name(Index(9)))),
            "nothing of a refused transfer is kept"
        );
    }
}
