//! An in-memory file system that crashes on request and injects faults, deterministically.
//!
//! [`MemFs`] implements [`Fs`] in memory for tests and for the simulator. What makes it useful
//! is what it does wrong, on purpose, and always the same way for the same seed:
//! - **Crashes** ([`MemFs::crash`]): everything not made durable may be lost. For each file,
//!   its unsynced writes are kept in order up to a random point, and the write at that point may
//!   be **torn at any byte**, with the rest of its span left as zeros or absent (both happen on
//!   real file systems). Creations, renames and removals not yet made durable by a directory
//!   fsync are likewise kept up to a random point. Handles opened before the crash stop working,
//!   as they would in a process that died.
//! - **Sectors out of order** ([`Faults::reorder_sectors`], off unless set): a disk writes dirty
//!   pages back in any order, and a write that overwrites allocated blocks in place loses the
//!   ordering that extending the file gave. With a sector size set, half the crashes keep each
//!   sector that the unsynced writes changed, or lose it, on its own: a later sector of a write
//!   can survive an earlier one. A lost sector reads as what it held at the last fsync (zeros
//!   past the end the file had then). Sectors are atomic, as disks promise for their sector
//!   size, and the file's size is one it had at some point since the last fsync (the size is
//!   metadata, written back on its own). Synced bytes are never lost either way.
//!   [`MemFs::crash_losing_sectors`] loses chosen sectors, for scenario tests.
//! - **Power cuts** ([`MemFs::cut_power_after`]): after a given number of mutating operations
//!   (writes, fsyncs, creations, renames, removals: the write boundaries of a workload), the
//!   next one fails, a write half done, and so does everything after it until the crash. A test
//!   can cut the power at every boundary of a workload, one run per boundary.
//! - **Faults** ([`Faults`]): EIO on a write (after writing a random prefix), EIO on an fsync
//!   (after which the unsynced data is kept only up to a random point and counts as clean, so
//!   that a retried fsync "succeeds" with the data gone: fsyncgate), and a full disk.
//! - **Damage** ([`MemFs::flip_bit`], [`MemFs::cut`], [`MemFs::zero`]): bit flips,
//!   truncations and zeroed ranges where a test puts them, to check that corruption is found.
//!
//! A `MemFs` is a handle: clones share one file system, so a simulator keeps one clone per node
//! to crash it, while the log owns another.
//!
//! Writes are kept with an undo record each (the bytes they overwrote) until the file is synced,
//! so a crash rolls them back and replays a prefix. Memory is the files' bytes plus the unsynced
//! writes twice; an fsync drops the undo records.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use skiff_raft::rng::Rng;

use crate::fs::{File, Fs};

/// The faults a [`MemFs`] injects at random, from its seed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// The chance, in parts per million, that a write fails with EIO after writing a random
    /// prefix of its bytes.
    pub write_error_ppm: u32,
    /// The chance, in parts per million, that an fsync (of a file or a directory) fails with
    /// EIO. The changes it covered are then kept only up to a random point, and the rest are
    /// forgotten as if written: a retry would succeed without making them durable.
    pub sync_error_ppm: u32,
    /// The disk's capacity in bytes, summed over all files; a write past it writes what fits and
    /// fails with `StorageFull`. `None` is unlimited.
    pub capacity: Option<u64>,
    /// The sector size in bytes at which a crash may keep unsynced writes out of order: in half
    /// the crashes ([`MemFs::crash`]), each sector of a file that its unsynced writes changed is
    /// kept or lost on its own, and the file's size is one it had since its last fsync. `None`
    /// keeps unsynced writes in order (up to a random point, torn at any byte) in every crash.
    /// A log's recovery recognises lost sectors of 512 bytes and their multiples.
    pub reorder_sectors: Option<u32>,
}

/// A shared, in-memory, fault-injecting file system (see the module documentation).
#[derive(Clone)]
pub struct MemFs {
    /// The file system's state; every clone of the handle shares it.
    state: Arc<Mutex<State>>,
}

/// One file's contents and what a crash may undo.
#[derive(Debug, Default)]
struct Inode {
    /// The bytes as reads see them now.
    data: Vec<u8>,
    /// The changes since the last successful fsync, oldest first.
    unsynced: Vec<Change>,
}

/// A change to a file's bytes.
#[derive(Clone, Debug)]
enum Write {
    /// These bytes written at this offset.
    At {
        /// Where the bytes go.
        offset: usize,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// The file cut or extended to this length.
    SetLen(usize),
}

/// A change and what it takes to roll it back.
#[derive(Debug)]
struct Change {
    /// What was done.
    write: Write,
    /// The file's length before the change.
    len_before: usize,
    /// Where the overwritten bytes were.
    offset: usize,
    /// The bytes the change overwrote or cut away.
    overwritten: Vec<u8>,
}

/// A directory change that is not durable until its directory is synced.
#[derive(Clone, Debug)]
enum DirOp {
    /// A file created with this name.
    Create(PathBuf, u64),
    /// A file removed.
    Remove(PathBuf),
    /// A file renamed, replacing any file at the destination.
    Rename(PathBuf, PathBuf),
}

/// Whether the machine has power.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Power {
    /// Everything works.
    On,
    /// The power fails at the mutating operation with this number (counting from 0).
    CutAt(u64),
    /// The power failed; every operation fails until the crash.
    Off,
}

/// The state behind a [`MemFs`].
#[derive(Debug)]
struct State {
    /// Draws every random choice: crash points, tears, faults.
    rng: Rng,
    /// Bumped at every crash; handles from an older epoch are dead.
    epoch: u64,
    /// The directories that exist (created durably, for simplicity: the log creates its
    /// directory once, before anything else).
    dirs: BTreeSet<PathBuf>,
    /// The names a listing shows now.
    names: BTreeMap<PathBuf, u64>,
    /// The names that survive a crash.
    durable_names: BTreeMap<PathBuf, u64>,
    /// Directory changes not yet synced, oldest first.
    pending: Vec<DirOp>,
    /// Every file's contents, by inode number.
    inodes: BTreeMap<u64, Inode>,
    /// The number the next file created gets.
    next_inode: u64,
    /// Open handles per inode, so that removed files are freed when the last handle closes.
    handles: BTreeMap<u64, usize>,
    /// The faults injected at random.
    faults: Faults,
    /// Whether the machine has power.
    power: Power,
    /// Mutating operations started so far (writes, fsyncs, creations, renames, removals).
    operations: u64,
}

/// A handle on a file of a [`MemFs`].
struct MemFile {
    /// The file system.
    state: Arc<Mutex<State>>,
    /// The file.
    inode: u64,
    /// The crash epoch the handle was opened in.
    epoch: u64,
}

/// The error of an operation on a machine without power.
fn power_failure() -> io::Error {
    io::Error::other("simulated power failure")
}

/// The error of an injected fault.
fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} error (EIO)"))
}

/// The directory a path is in.
fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl DirOp {
    /// The directory the change happens in.
    fn dir(&self) -> PathBuf {
        match self {
            DirOp::Create(path, _) | DirOp::Remove(path) | DirOp::Rename(_, path) => parent(path),
        }
    }

    /// Applies the change to a set of names.
    fn apply(&self, names: &mut BTreeMap<PathBuf, u64>) {
        match self {
            DirOp::Create(path, inode) => {
                names.insert(path.clone(), *inode);
            }
            DirOp::Remove(path) => {
                names.remove(path);
            }
            DirOp::Rename(from, to) => {
                if let Some(inode) = names.remove(from) {
                    names.insert(to.clone(), inode);
                }
            }
        }
    }
}

impl Inode {
    /// Applies `write` to the data and returns the change with its undo record.
    fn apply(&mut self, write: Write) -> Change {
        let len_before = self.data.len();
        let (offset, overwritten) = match &write {
            Write::At { offset, bytes } => {
                let end = offset + bytes.len();
                let overwritten =
                    self.data[(*offset).min(len_before)..end.min(len_before)].to_vec();
                if end > self.data.len() {
                    self.data.resize(end, 0);
                }
                self.data[*offset..end].copy_from_slice(bytes);
                (*offset, overwritten)
            }
            Write::SetLen(len) => {
                let overwritten = self.data[(*len).min(len_before)..].to_vec();
                self.data.resize(*len, 0);
                (*len, overwritten)
            }
        };
        Change { write, len_before, offset, overwritten }
    }

    /// Rolls a change back; changes are rolled back newest first.
    fn roll_back(&mut self, change: &Change) {
        let end = change.offset + change.overwritten.len();
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[change.offset..end].copy_from_slice(&change.overwritten);
        self.data.resize(change.len_before, 0);
    }

    /// Rolls back every unsynced change, then keeps the first `keep`; if `tear` is given, the
    /// next write is also kept up to that many bytes, the rest of its span zeroed if `zero_fill`.
    /// What remains counts as durable.
    fn settle(&mut self, keep: usize, tear: Option<(usize, bool)>) {
        let changes = std::mem::take(&mut self.unsynced);
        for change in changes.iter().rev() {
            self.roll_back(change);
        }
        for change in &changes[..keep] {
            self.apply(change.write.clone());
        }
        if let (Some((cut, zero_fill)), Some(change)) = (tear, changes.get(keep))
            && let Write::At { offset, bytes } = &change.write
        {
            let mut torn = bytes[..cut.min(bytes.len())].to_vec();
            if zero_fill {
                torn.resize(bytes.len(), 0);
            }
            self.apply(Write::At { offset: *offset, bytes: torn });
        }
    }

    /// The lengths the file had since its last fsync, that one included, oldest first: the
    /// sizes a crash may leave it at.
    fn lengths_since_sync(&self) -> Vec<usize> {
        let mut lengths: Vec<usize> =
            self.unsynced.iter().map(|change| change.len_before).collect();
        lengths.push(self.data.len());
        lengths
    }

    /// Rolls back every unsynced change, then keeps, of the sectors (`sector` bytes, aligned)
    /// whose bytes they changed, those `keep` picks by number, each whole or not at all. The
    /// file is then `length` bytes long; a lost sector, and bytes past the length the file had
    /// at its last fsync, read as they did then (zeros past its end). What remains counts as
    /// durable.
    fn settle_sectors(&mut self, sector: usize, length: usize, mut keep: impl FnMut(u64) -> bool) {
        assert!(sector > 0, "a sector of zero bytes");
        let new = self.data.clone();
        let changes = std::mem::take(&mut self.unsynced);
        for change in changes.iter().rev() {
            self.roll_back(change);
        }
        let old = std::mem::take(&mut self.data);
        let byte = |bytes: &[u8], at: usize| bytes.get(at).copied().unwrap_or(0);
        let mut data = old.clone();
        data.resize(length, 0);
        for (number, start) in (0..length).step_by(sector).enumerate() {
            let end = (start + sector).min(length);
            let changed = (start..end).any(|at| byte(&old, at) != byte(&new, at));
            if changed && keep(number as u64) {
                for (at, target) in data[start..end].iter_mut().enumerate() {
                    *target = byte(&new, start + at);
                }
            }
        }
        self.data = data;
    }
}

impl State {
    /// Draws true with the given chance in parts per million.
    fn chance(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.rng.between(0, 1_000_000) < u64::from(ppm)
    }

    /// Draws how much of an inode's `count` unsynced changes a crash keeps, and whether (and
    /// where) the next one is torn, zero-filled or not.
    fn draw_crash_point(&mut self, inode: u64, count: u64) -> (usize, Option<(usize, bool)>) {
        let keep = self.rng.between(0, count + 1) as usize;
        if self.rng.between(0, 2) == 0 {
            return (keep, None);
        }
        let length = match self.inodes[&inode].unsynced.get(keep).map(|change| &change.write) {
            Some(Write::At { bytes, .. }) => bytes.len(),
            _ => 0,
        };
        let cut = self.rng.next_u64() as usize % (length + 1);
        (keep, Some((cut, self.rng.between(0, 2) == 0)))
    }

    /// Settles an inode's unsynced writes as a crash that writes sectors back out of order
    /// leaves them: a size it had since its last fsync, and each changed sector kept with one
    /// chance drawn per crash, so that some crashes keep most sectors and others lose most.
    fn settle_out_of_order(&mut self, inode: u64, sector: usize) {
        let State { inodes, rng, .. } = self;
        let Some(target) = inodes.get_mut(&inode) else { return };
        let lengths = target.lengths_since_sync();
        let length = lengths[rng.between(0, lengths.len() as u64) as usize];
        let chance = rng.between(0, 1_000_001);
        target.settle_sectors(sector, length, |_| rng.between(0, 1_000_000) < chance);
    }

    /// Counts a mutating operation and says whether the power holds for it.
    fn start_operation(&mut self) -> io::Result<()> {
        match self.power {
            Power::Off => return Err(power_failure()),
            Power::CutAt(at) if at == self.operations => {
                self.power = Power::Off;
                self.operations += 1;
                return Err(power_failure());
            }
            _ => {}
        }
        self.operations += 1;
        Ok(())
    }

    /// Fails if the machine has no power, for reads and listings (which count as no boundary).
    fn check_power(&self) -> io::Result<()> {
        if self.power == Power::Off { Err(power_failure()) } else { Ok(()) }
    }

    /// The inode behind a handle, if the handle survived every crash since it was opened.
    fn inode(&mut self, inode: u64, epoch: u64) -> io::Result<&mut Inode> {
        if epoch != self.epoch {
            return Err(io::Error::other("stale file handle from before a crash"));
        }
        self.inodes.get_mut(&inode).ok_or_else(|| io::Error::other("file vanished"))
    }

    /// The bytes all files hold together.
    fn used(&self) -> u64 {
        self.inodes.values().map(|inode| inode.data.len() as u64).sum()
    }

    /// Forgets files that no name, pending change or open handle refers to any more.
    fn collect_garbage(&mut self) {
        let mut referenced: BTreeSet<u64> = self.names.values().copied().collect();
        referenced.extend(self.durable_names.values().copied());
        referenced.extend(self.pending.iter().filter_map(|op| match op {
            DirOp::Create(_, inode) => Some(*inode),
            _ => None,
        }));
        referenced.extend(self.handles.iter().filter(|(_, count)| **count > 0).map(|(i, _)| *i));
        self.inodes.retain(|inode, _| referenced.contains(inode));
    }

    /// The end of a crash, once the files are settled: the durable names are what a listing
    /// shows, every handle dies, and the power is back.
    fn restart(&mut self) {
        self.names = self.durable_names.clone();
        self.handles.clear();
        self.epoch += 1;
        self.power = Power::On;
        self.collect_garbage();
    }

    /// Opens a handle on an inode.
    fn handle(&mut self, state: &Arc<Mutex<State>>, inode: u64) -> Box<dyn File> {
        *self.handles.entry(inode).or_default() += 1;
        Box::new(MemFile { state: Arc::clone(state), inode, epoch: self.epoch })
    }

    /// A write of `bytes` at `offset`, with faults.
    fn write(&mut self, inode: u64, epoch: u64, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.inode(inode, epoch)?;
        let offset = offset as usize;
        let (faults, used) = (self.faults, self.used());
        let power_cut = self.start_operation().is_err();
        let write_error = !power_cut && self.chance(faults.write_error_ppm);
        let current_len = self.inode(inode, epoch)?.data.len();
        let growth = (offset + bytes.len()).saturating_sub(current_len) as u64;
        let room = faults.capacity.map(|capacity| capacity.saturating_sub(used));
        let full = room.is_some_and(|room| growth > room);
        let keep = if power_cut || write_error {
            self.rng.between(0, bytes.len() as u64 + 1) as usize
        } else if let (true, Some(room)) = (full, room) {
            (current_len.max(offset) + room as usize).saturating_sub(offset)
        } else {
            bytes.len()
        };
        if keep > 0 {
            let target = self.inode(inode, epoch)?;
            let change = target.apply(Write::At { offset, bytes: bytes[..keep].to_vec() });
            target.unsynced.push(change);
        }
        if power_cut {
            Err(power_failure())
        } else if write_error {
            Err(injected("write"))
        } else if full {
            Err(io::Error::new(io::ErrorKind::StorageFull, "simulated full disk"))
        } else {
            Ok(())
        }
    }

    /// An fsync of a file, with faults.
    fn sync_file(&mut self, inode: u64, epoch: u64) -> io::Result<()> {
        self.inode(inode, epoch)?;
        self.start_operation()?;
        if self.chance(self.faults.sync_error_ppm) {
            let count = self.inode(inode, epoch)?.unsynced.len() as u64;
            let keep = self.rng.between(0, count + 1) as usize;
            self.inode(inode, epoch)?.settle(keep, None);
            return Err(injected("fsync"));
        }
        self.inode(inode, epoch)?.unsynced.clear();
        Ok(())
    }

    /// An fsync of a directory, with faults: its pending changes become durable.
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        self.start_operation()?;
        let failed = self.chance(self.faults.sync_error_ppm);
        let (mine, others): (Vec<DirOp>, Vec<DirOp>) =
            std::mem::take(&mut self.pending).into_iter().partition(|op| op.dir() == dir);
        self.pending = others;
        let keep =
            if failed { self.rng.between(0, mine.len() as u64 + 1) as usize } else { mine.len() };
        for op in &mine[..keep] {
            op.apply(&mut self.durable_names);
        }
        self.collect_garbage();
        if failed { Err(injected("directory fsync")) } else { Ok(()) }
    }
}

impl MemFs {
    /// An empty file system whose random choices all come from `seed`, with no faults.
    pub fn new(seed: u64) -> MemFs {
        MemFs::with_faults(seed, Faults::default())
    }

    /// An empty file system injecting `faults`, its random choices drawn from `seed`.
    pub fn with_faults(seed: u64, faults: Faults) -> MemFs {
        let state = State {
            rng: Rng::new(seed),
            epoch: 0,
            dirs: BTreeSet::new(),
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            pending: Vec::new(),
            inodes: BTreeMap::new(),
            next_inode: 1,
            handles: BTreeMap::new(),
            faults,
            power: Power::On,
            operations: 0,
        };
        MemFs { state: Arc::new(Mutex::new(state)) }
    }

    /// The state, locked. A panic elsewhere while holding the lock leaves no half-done change
    /// that matters to a test, so a poisoned lock is used as it is.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the faults injected from now on.
    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Simulates a power failure and restart: unsynced data and directory changes are kept
    /// only up to a random point (a write may be torn at any byte), or with
    /// [`Faults::reorder_sectors`] in half the crashes sector by sector out of order; every
    /// open handle dies, and the power comes back on.
    pub fn crash(&self) {
        self.crash_keeping(true);
    }

    /// Simulates a power failure in which nothing unsynced reached the disk: every unsynced
    /// write and directory change is lost. The worst case for durability, without tears.
    pub fn crash_losing_unsynced(&self) {
        self.crash_keeping(false);
    }

    /// A crash that keeps a random prefix of the unsynced changes (`random`), or none.
    fn crash_keeping(&self, random: bool) {
        let mut state = self.lock();
        let state = &mut *state;
        let inodes: Vec<u64> = state.inodes.keys().copied().collect();
        for inode in inodes {
            let count = state.inodes[&inode].unsynced.len() as u64;
            // No draw unless sectors may be reordered: the same seed crashes as it always did.
            if let (true, Some(sector)) = (random && count > 0, state.faults.reorder_sectors)
                && state.rng.between(0, 2) == 0
            {
                state.settle_out_of_order(inode, sector as usize);
                continue;
            }
            let (keep, tear) =
                if random { state.draw_crash_point(inode, count) } else { (0, None) };
            if let Some(target) = state.inodes.get_mut(&inode) {
                target.settle(keep, tear);
            }
        }
        let pending = state.pending.len() as u64;
        let keep = if random { state.rng.between(0, pending + 1) as usize } else { 0 };
        for op in state.pending.drain(..).take(keep) {
            op.apply(&mut state.durable_names);
        }
        state.restart();
    }

    /// Simulates a power failure in which every unsynced change reached the disk except the
    /// sectors of the file at `path` numbered in `lost` (sectors of `sector` bytes from the
    /// start of the file), which read as they did at the last fsync: a disk that wrote a
    /// write's later sectors back and not an earlier one. Directory changes are all kept.
    pub fn crash_losing_sectors(&self, path: &Path, sector: u32, lost: &[u64]) {
        let mut state = self.lock();
        let state = &mut *state;
        let target = state.names.get(path).copied();
        for (inode, file) in &mut state.inodes {
            let length = file.data.len();
            let here = Some(*inode) == target;
            file.settle_sectors(sector as usize, length, |number| {
                !(here && lost.contains(&number))
            });
        }
        for op in state.pending.drain(..) {
            op.apply(&mut state.durable_names);
        }
        state.restart();
    }

    /// Lets `operations` more mutating operations succeed, then fails the next one (a write
    /// half done) and everything after it, until [`MemFs::crash`].
    pub fn cut_power_after(&self, operations: u64) {
        let mut state = self.lock();
        state.power = Power::CutAt(state.operations + operations);
    }

    /// The number of mutating operations (writes, fsyncs, creations, renames, removals)
    /// started so far: the write boundaries a power cut can fall on.
    pub fn operations(&self) -> u64 {
        self.lock().operations
    }

    /// Flips bit `bit` (0 to 7) of the byte at `offset` in the file at `path`, durably: damage
    /// on the medium.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> io::Result<()> {
        let mut state = self.lock();
        let inode = *state.names.get(path).ok_or(io::ErrorKind::NotFound)?;
        let target = state.inodes.get_mut(&inode).ok_or(io::ErrorKind::NotFound)?;
        let byte = target.data.get_mut(offset as usize).ok_or(io::ErrorKind::UnexpectedEof)?;
        *byte ^= 1 << (bit % 8);
        Ok(())
    }

    /// Cuts the file at `path` to `len` bytes, durably: what a torn write at that byte leaves.
    pub fn cut(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut state = self.lock();
        let inode = *state.names.get(path).ok_or(io::ErrorKind::NotFound)?;
        let target = state.inodes.get_mut(&inode).ok_or(io::ErrorKind::NotFound)?;
        target.unsynced.clear();
        target.data.truncate(len as usize);
        Ok(())
    }

    /// Overwrites `length` bytes of the file at `path` from `offset` with zeros, durably: what
    /// a medium that lost sectors, or returns zeros for them, shows.
    pub fn zero(&self, path: &Path, offset: u64, length: u64) -> io::Result<()> {
        let mut state = self.lock();
        let inode = *state.names.get(path).ok_or(io::ErrorKind::NotFound)?;
        let target = state.inodes.get_mut(&inode).ok_or(io::ErrorKind::NotFound)?;
        let end = (offset + length) as usize;
        let range =
            target.data.get_mut(offset as usize..end).ok_or(io::ErrorKind::UnexpectedEof)?;
        range.fill(0);
        Ok(())
    }

    /// Every file and its size in bytes, sorted by path.
    pub fn files(&self) -> Vec<(PathBuf, u64)> {
        let state = self.lock();
        let size = |inode: &u64| state.inodes.get(inode).map_or(0, |i| i.data.len() as u64);
        state.names.iter().map(|(path, inode)| (path.clone(), size(inode))).collect()
    }

    /// The bytes of the file at `path`, as reads see them now.
    pub fn contents(&self, path: &Path) -> io::Result<Vec<u8>> {
        let state = self.lock();
        let inode = state.names.get(path).ok_or(io::ErrorKind::NotFound)?;
        Ok(state.inodes.get(inode).map(|i| i.data.clone()).unwrap_or_default())
    }
}

impl fmt::Debug for MemFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemFs")
            .field("files", &state.names.len())
            .field("operations", &state.operations)
            .field("power", &state.power)
            .finish_non_exhaustive()
    }
}

impl Fs for MemFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.check_power()?;
        state.dirs.extend(dir.ancestors().map(Path::to_path_buf));
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.lock();
        state.check_power()?;
        if !state.dirs.contains(dir) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let in_dir = state.names.keys().filter(|path| path.parent() == Some(dir));
        let names = in_dir.filter_map(|path| path.file_name()?.to_str().map(str::to_owned));
        Ok(names.collect())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn File>> {
        let mut state = self.lock();
        if !state.dirs.contains(&parent(path)) {
            return Err(io::ErrorKind::NotFound.into());
        }
        if state.names.contains_key(path) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        state.start_operation()?;
        let inode = state.next_inode;
        state.next_inode += 1;
        state.inodes.insert(inode, Inode::default());
        state.names.insert(path.to_path_buf(), inode);
        state.pending.push(DirOp::Create(path.to_path_buf(), inode));
        Ok(state.handle(&self.state, inode))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn File>> {
        let mut state = self.lock();
        state.check_power()?;
        let inode = *state.names.get(path).ok_or(io::ErrorKind::NotFound)?;
        Ok(state.handle(&self.state, inode))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        assert_eq!(parent(from), parent(to), "renames stay in one directory");
        let inode = *state.names.get(from).ok_or(io::ErrorKind::NotFound)?;
        state.start_operation()?;
        state.names.remove(from);
        state.names.insert(to.to_path_buf(), inode);
        state.pending.push(DirOp::Rename(from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        if !state.names.contains_key(path) {
            return Err(io::ErrorKind::NotFound.into());
        }
        state.start_operation()?;
        state.names.remove(path);
        state.pending.push(DirOp::Remove(path.to_path_buf()));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.lock().sync_dir(dir)
    }
}

impl MemFile {
    /// The file system's state, locked.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemFile(inode {}, epoch {})", self.inode, self.epoch)
    }
}

impl File for MemFile {
    fn read_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut state = self.lock();
        state.check_power()?;
        let data = &state.inode(self.inode, self.epoch)?.data;
        let start = (offset as usize).min(data.len());
        let count = buffer.len().min(data.len() - start);
        buffer[..count].copy_from_slice(&data[start..start + count]);
        Ok(count)
    }

    fn write_at(&mut self, data: &[u8], offset: u64) -> io::Result<()> {
        self.lock().write(self.inode, self.epoch, data, offset)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.lock().sync_file(self.inode, self.epoch)
    }

    fn size(&self) -> io::Result<u64> {
        let mut state = self.lock();
        state.check_power()?;
        Ok(state.inode(self.inode, self.epoch)?.data.len() as u64)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut state = self.lock();
        state.inode(self.inode, self.epoch)?;
        state.start_operation()?;
        let target = state.inode(self.inode, self.epoch)?;
        let change = target.apply(Write::SetLen(len as usize));
        target.unsynced.push(change);
        Ok(())
    }
}

impl Drop for MemFile {
    fn drop(&mut self) {
        let mut state = self.lock();
        if state.epoch == self.epoch
            && let Some(count) = state.handles.get_mut(&self.inode)
        {
            *count = count.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_file(fs: &MemFs, path: &str, chunks: &[&[u8]], sync_after: usize) -> Box<dyn File> {
        let mut file = fs.create(Path::new(path)).expect("create");
        let mut offset = 0;
        for (number, chunk) in chunks.iter().enumerate() {
            file.write_at(chunk, offset).expect("write");
            offset += chunk.len() as u64;
            if number + 1 == sync_after {
                file.sync_data().expect("sync");
                fs.sync_dir(Path::new("/d")).expect("sync dir");
            }
        }
        file
    }

    #[test]
    fn synced_data_survives_every_crash_and_unsynced_data_is_a_prefix() {
        let mut outcomes = BTreeSet::new();
        for seed in 0..200 {
            let fs = MemFs::new(seed);
            fs.create_dir_all(Path::new("/d")).expect("mkdir");
            drop(write_file(&fs, "/d/f", &[b"abc", b"def", b"ghi"], 1));
            fs.crash();
            let data = fs.contents(Path::new("/d/f")).expect("the synced file exists");
            assert!(data.starts_with(b"abc"), "seed {seed}: synced bytes lost: {data:?}");
            let tail = &data[3..];
            let written = b"defghi";
            let is_prefix = written.starts_with(tail);
            let zero_filled =
                tail.iter().zip(written).skip_while(|(a, b)| a == b).all(|(a, _)| *a == 0);
            assert!(is_prefix || zero_filled, "seed {seed}: not a torn prefix: {tail:?}");
            outcomes.insert(data.len());
        }
        assert!(outcomes.len() > 3, "crashes should tear at many points: {outcomes:?}");
    }

    #[test]
    fn unsynced_creations_may_vanish_and_handles_die() {
        let mut vanished = false;
        for seed in 0..50 {
            let fs = MemFs::new(seed);
            fs.create_dir_all(Path::new("/d")).expect("mkdir");
            let mut file = write_file(&fs, "/d/f", &[b"x"], 0);
            file.sync_data().expect("data synced, but not the directory");
            fs.crash();
            vanished |= fs.contents(Path::new("/d/f")).is_err();
            assert!(file.write_at(b"y", 1).is_err(), "a handle from before the crash works");
        }
        assert!(vanished, "an unsynced creation never vanished in 50 crashes");
    }

    #[test]
    fn power_cut_fails_the_chosen_operation_and_everything_after() {
        let fs = MemFs::new(1);
        fs.create_dir_all(Path::new("/d")).expect("mkdir");
        fs.cut_power_after(2);
        let mut file = fs.create(Path::new("/d/f")).expect("operation 0");
        file.write_at(b"a", 0).expect("operation 1");
        assert!(file.write_at(b"b", 1).is_err(), "operation 2 fails");
        assert!(file.sync_data().is_err(), "no power until the crash");
        assert_eq!(fs.operations(), 3);
        fs.crash();
        assert!(fs.create(Path::new("/d/g")).is_ok(), "the power is back");
    }

    #[test]
    fn a_failed_fsync_is_not_made_good_by_a_retry() {
        let faults = Faults { sync_error_ppm: 1_000_000, ..Faults::default() };
        let fs = MemFs::new(3);
        fs.create_dir_all(Path::new("/d")).expect("mkdir");
        let mut file = write_file(&fs, "/d/f", &[b"abc"], 1);
        for offset in 3..40 {
            file.write_at(b"z", offset).expect("write");
        }
        fs.set_faults(faults);
        assert!(file.sync_data().is_err());
        fs.set_faults(Faults::default());
        file.sync_data().expect("the retry reports success");
        let after_retry = fs.contents(Path::new("/d/f")).expect("exists");
        assert!(after_retry.len() < 40, "the failed fsync dropped some writes for good");
    }

    /// A file with one synced sector of `s`, then four unsynced sectors of `1` to `4`.
    fn file_with_unsynced_sectors(fs: &MemFs) -> Box<dyn File> {
        fs.create_dir_all(Path::new("/d")).expect("mkdir");
        let chunks: Vec<Vec<u8>> =
            [b's', b'1', b'2', b'3', b'4'].iter().map(|&byte| vec![byte; 512]).collect();
        let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
        write_file(fs, "/d/f", &chunks, 1)
    }

    #[test]
    fn sectors_out_of_order_each_survive_whole_or_not_and_synced_ones_always() {
        let faults = Faults { reorder_sectors: Some(512), ..Faults::default() };
        let written: Vec<u8> = (b'1'..=b'4').flat_map(|byte| [byte; 512]).collect();
        let (mut later_without_earlier, mut torn_in_order) = (false, false);
        for seed in 0..200 {
            let fs = MemFs::with_faults(seed, faults);
            drop(file_with_unsynced_sectors(&fs));
            fs.crash();
            let data = fs.contents(Path::new("/d/f")).expect("the synced file exists");
            assert!(data[..512].iter().all(|&byte| byte == b's'), "seed {seed}: synced bytes lost");
            let tail = &data[512..];
            // Half the crashes keep the writes in order up to a point, torn at any byte.
            let zero_filled =
                tail.iter().zip(&written).skip_while(|(a, b)| a == b).all(|(a, _)| *a == 0);
            let in_order = written.starts_with(tail) || zero_filled;
            // The others keep each sector whole or lose it, whatever came before it.
            let kept: Vec<Option<bool>> = tail
                .chunks(512)
                .zip(written.chunks(512))
                .map(|(sector, new)| match sector {
                    _ if sector == new => Some(true),
                    _ if sector.len() == 512 && sector.iter().all(|&byte| byte == 0) => Some(false),
                    _ => None,
                })
                .collect();
            let by_sector = kept.iter().all(Option::is_some);
            assert!(in_order || by_sector, "seed {seed}: neither shape: {tail:?}");
            later_without_earlier |= kept.windows(2).any(|pair| pair == [Some(false), Some(true)]);
            torn_in_order |= !by_sector;
        }
        assert!(later_without_earlier, "no crash kept a later sector without an earlier one");
        assert!(torn_in_order, "no crash tore a write in order");
    }

    #[test]
    fn a_crash_losing_chosen_sectors_keeps_everything_else() {
        let fs = MemFs::new(0);
        drop(file_with_unsynced_sectors(&fs));
        fs.crash_losing_sectors(Path::new("/d/f"), 512, &[2, 3]);
        let data = fs.contents(Path::new("/d/f")).expect("exists");
        let sector = |number: usize| &data[number * 512..(number + 1) * 512];
        assert_eq!(data.len(), 5 * 512, "the size reached the disk");
        assert!(sector(1).iter().all(|&byte| byte == b'1'));
        assert!(sector(2).iter().chain(sector(3)).all(|&byte| byte == 0), "lost: zeros");
        assert!(sector(4).iter().all(|&byte| byte == b'4'), "a later sector survives");
    }

    #[test]
    fn a_full_disk_writes_what_fits() {
        let fs = MemFs::with_faults(0, Faults { capacity: Some(10), ..Faults::default() });
        fs.create_dir_all(Path::new("/d")).expect("mkdir");
        let mut file = fs.create(Path::new("/d/f")).expect("create");
        file.write_at(b"12345678", 0).expect("fits");
        let error = file.write_at(b"abcd", 8).expect_err("does not fit");
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
        assert_eq!(fs.contents(Path::new("/d/f")).expect("exists"), b"12345678ab");
    }
}
