//! # Scenario scripts: the write-ahead log told as stories
//!
//! Each file in `tests/scenarios/` is a [goldenscript] that drives one [`Wal`] on a [`MemFs`]
//! and records what it did: what open recovered, what reads returned, which files exist and,
//! byte by byte, which records they hold. The file name states the claim; `#` comments say
//! what to look for. The recorded output is the expectation: a change shows up as a diff to
//! review like code.
//!
//! Regenerate the outputs with
//! `UPDATE_GOLDENFILES=1 cargo test -p skiff-wal --test scenarios`, then read every changed
//! line before committing it. A new script needs a rebuild of this test
//! (`touch crates/wal/tests/scenarios.rs`): the list of files is read at compile time.
//!
//! ## The commands
//! The log lives in `/data` on a `MemFs` seeded with 1. Entries are written `index@term`, or
//! `low..high@term` for a run (both ends included); each entry's command is `c<index>.<term>`,
//! padded with dots to `size=` bytes if given.
//!
//! - `open [segment_size=B] [index_interval=B] [preallocate=B] [write_buffer=B] [node=N]
//!   [cluster=C]`: opens the log (node 1 of cluster 7 unless told), printing what recovery
//!   found. Preallocation (zeros written ahead of the records) is off unless `preallocate=`
//!   says how far ahead, so that the other scripts' file sizes and dumps show records only.
//!   `write_buffer=0` writes every record to the file as it is appended, before any sync.
//! - `append ENTRY... [size=B]`: appends the entries (not yet durable).
//! - `configure ENTRY VOTER...`: appends one configuration entry (`index@term`) whose
//!   configuration is these voters. Open prints the configuration entries recovery found.
//! - `sync`: makes everything durable; prints the last durable entry.
//! - `vote TERM [NODE]`, `commit INDEX`: save the hard state, the commit index.
//! - `read LOW HIGH [max_bytes=B]`: reads entries `[LOW, HIGH)`.
//! - `status`: first and last index, term runs, hard state, commit, durable entry, segments.
//! - `compact UP_TO`, `reset INDEX TERM`: compaction; restarting the log after a snapshot.
//! - `snapshot INDEX TERM DATA`, `load_snapshot`: save and load a snapshot (of voters n1, n2
//!   and n3; of the latest `configure` instead, if there was one). `install INDEX TERM DATA`: install a snapshot fetched from a leader (save it,
//!   reset the log, sync). `save_only INDEX TERM DATA`: the first half of an install, as a
//!   crash would leave it.
//! - `crash [lose_unsynced=true]`: a power failure (random tears, or losing every unsynced
//!   byte), after which the log is closed until the next `open`.
//! - `lose_sectors SEGMENT SECTOR...`: a power failure in which every unsynced write reached
//!   the disk except these 512-byte sectors of a segment file (numbered from 0 at the start of
//!   the file), which read as they were at the last fsync: a disk that wrote a batch's later
//!   sectors back before an earlier one.
//! - `ls`: the files in `/data` and their sizes. `dump SEGMENT`: the records of a segment file
//!   (by sequence number), one per line with its byte offset.
//! - `flip SEGMENT OFFSET [bit=N]`, `cut SEGMENT LENGTH`, `zero SEGMENT OFFSET LENGTH`: damage
//!   a segment file durably (a bit flipped, the file cut, a range read back as zeros).
//! - `faults [write_error_ppm=N] [sync_error_ppm=N] [capacity=B]`: the faults injected from
//!   now on (all off when no argument is given).

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use skiff_raft::{Entry, HardState, Index, Membership, NodeId, Payload, Term};
use skiff_wal::{Faults, MemFs, Options, Recovery, SnapshotMeta, Wal, describe_records};

test_each_file::test_each_path! { in "crates/wal/tests/scenarios" => run }

/// Runs one scenario script with a fresh runner.
fn run(path: &Path) {
    goldenscript::run(&mut Runner::new(), path).expect("the scenario script runs");
}

/// The script commands; the module documentation describes each.
#[derive(goldenscript::Command)]
enum Command {
    Open {
        #[arg(key)]
        segment_size: Option<u64>,
        #[arg(key)]
        index_interval: Option<u64>,
        #[arg(key)]
        preallocate: Option<u64>,
        #[arg(key)]
        write_buffer: Option<usize>,
        #[arg(key)]
        node: Option<u64>,
        #[arg(key)]
        cluster: Option<u64>,
    },
    Append {
        entries: Vec<String>,
        #[arg(key)]
        size: Option<usize>,
    },
    Configure {
        entry: String,
        voters: Vec<u64>,
    },
    Sync,
    Vote(u64, #[arg(optional)] Option<u64>),
    Commit(u64),
    Read {
        low: u64,
        high: u64,
        #[arg(key)]
        max_bytes: Option<u64>,
    },
    Status,
    Compact(u64),
    Reset(u64, u64),
    Snapshot(u64, u64, String),
    Install(u64, u64, String),
    SaveOnly(u64, u64, String),
    LoadSnapshot,
    Crash {
        #[arg(key)]
        lose_unsynced: Option<bool>,
    },
    LoseSectors(u64, Vec<u64>),
    Ls,
    Dump(u64),
    Flip {
        segment: u64,
        offset: u64,
        #[arg(key)]
        bit: Option<u8>,
    },
    Cut(u64, u64),
    Zero(u64, u64, u64),
    Faults {
        #[arg(key)]
        write_error_ppm: Option<u32>,
        #[arg(key)]
        sync_error_ppm: Option<u32>,
        #[arg(key)]
        capacity: Option<u64>,
    },
}

/// The directory the log lives in.
const DIR: &str = "/data";

/// Runs the commands against one log on one in-memory file system.
struct Runner {
    /// The file system; survives crashes and reopens.
    fs: MemFs,
    /// The open log, if any.
    wal: Option<Wal>,
    /// The configuration of the latest `configure`, which snapshots record.
    membership: Option<Membership>,
}

impl Runner {
    /// A runner with an empty file system and no log open.
    fn new() -> Runner {
        Runner { fs: MemFs::new(1), wal: None, membership: None }
    }

    /// The open log, or an error for the script.
    fn wal(&mut self) -> Result<&mut Wal, Box<dyn Error>> {
        self.wal.as_mut().ok_or_else(|| "the log is not open".into())
    }

    /// The path of the segment file with this sequence number.
    fn segment_path(sequence: u64) -> PathBuf {
        Path::new(DIR).join(format!("{sequence:020}.wal"))
    }
}

/// Parses `index@term` or `low..high@term` into entries, with commands of at least `size`
/// bytes.
fn parse_entries(spec: &str, size: usize) -> Result<Vec<Entry>, Box<dyn Error>> {
    let (indexes, term) = spec.split_once('@').ok_or("an entry is written index@term")?;
    let term: u64 = term.parse()?;
    let (low, high): (u64, u64) = match indexes.split_once("..") {
        Some((low, high)) => (low.parse()?, high.parse()?),
        None => (indexes.parse()?, indexes.parse()?),
    };
    Ok((low..=high)
        .map(|index| {
            let mut command = format!("c{index}.{term}");
            if command.len() < size {
                command.push_str(&".".repeat(size - command.len()));
            }
            Entry {
                index: Index(index),
                term: Term(term),
                payload: Payload::Command(Bytes::from(command)),
            }
        })
        .collect())
}

/// The snapshot at `index` of `term`, of `membership`, or voters n1, n2 and n3.
fn snapshot_meta(index: u64, term: u64, membership: Option<&Membership>) -> SnapshotMeta {
    let membership = membership.cloned().unwrap_or_else(|| Membership::new((1..=3).map(NodeId)));
    SnapshotMeta { index: Index(index), term: Term(term), membership }
}

/// Entries in the trace's compact form: `[1@1 c1.1, 2@1 c2.1]`.
fn entry_list(entries: &[Entry]) -> String {
    let shown: Vec<String> = entries.iter().map(Entry::to_string).collect();
    format!("[{}]", shown.join(", "))
}

/// Term runs as `index@term` starts.
fn term_runs(runs: &[(Index, Term)]) -> String {
    let shown: Vec<String> = runs.iter().map(|(index, term)| format!("{index}@{term}")).collect();
    format!("[{}]", shown.join(" "))
}

/// A vote in words.
fn vote(hard_state: &HardState) -> String {
    hard_state.vote.map_or("none".into(), |node| node.to_string())
}

/// What recovery found, in one line plus a line for a cut tail.
fn describe_recovery(recovery: &Recovery) -> String {
    let log = &recovery.log;
    let mut text = format!(
        "recovered log [{}, {}] prev_term={} terms={} term={} vote={} commit={} segments={}",
        log.first_index,
        log.last_index,
        log.prev_term,
        term_runs(&log.term_starts),
        recovery.hard_state.term,
        vote(&recovery.hard_state),
        recovery.commit,
        recovery.segments,
    );
    if let Some(snapshot) = &recovery.snapshot {
        write!(text, " snapshot={snapshot}").expect("to a string");
    }
    for (index, membership) in &recovery.memberships {
        write!(text, "\nconfiguration entry {index}: {membership}").expect("to a string");
    }
    if recovery.reset_to_snapshot {
        write!(text, "\nreset the log to the snapshot").expect("to a string");
    }
    if recovery.torn_bytes > 0 {
        write!(text, "\ncut a torn tail of {} bytes", recovery.torn_bytes).expect("to a string");
    }
    if let Some(torn_tail) = &recovery.torn_tail {
        write!(text, "\n{torn_tail}").expect("to a string");
    }
    text
}

impl goldenscript::Runner for Runner {
    type Command = Command;

    fn run(
        &mut self,
        command: &Command,
        _context: &goldenscript::Context,
    ) -> Result<String, Box<dyn Error>> {
        let mut output = String::new();
        match command {
            Command::Open {
                segment_size,
                index_interval,
                preallocate,
                write_buffer,
                node,
                cluster,
            } => {
                self.wal = None;
                let mut options = Options::new(NodeId(node.unwrap_or(1)), cluster.unwrap_or(7));
                options.segment_size = segment_size.unwrap_or(options.segment_size);
                options.index_interval = index_interval.unwrap_or(options.index_interval);
                options.preallocate = preallocate.unwrap_or(0);
                options.write_buffer = write_buffer.unwrap_or(options.write_buffer);
                let (wal, recovery) = Wal::open(self.fs.clone(), DIR, options)?;
                self.wal = Some(wal);
                writeln!(output, "{}", describe_recovery(&recovery))?;
            }
            Command::Append { entries, size } => {
                let mut all = Vec::new();
                for spec in entries {
                    all.extend(parse_entries(spec, size.unwrap_or(0))?);
                }
                self.wal()?.append(&all)?;
            }
            Command::Configure { entry, voters } => {
                let mut entries = parse_entries(entry, 0)?;
                let membership = Membership::new(voters.iter().copied().map(NodeId));
                let [entry] = &mut entries[..] else { return Err("one entry".into()) };
                entry.payload = Payload::Membership(membership.clone());
                self.wal()?.append(&entries)?;
                self.membership = Some(membership);
            }
            Command::Sync => {
                let (index, term) = self.wal()?.sync()?;
                writeln!(output, "durable {index}@{term}")?;
            }
            Command::Vote(term, node) => {
                let hard_state = HardState { term: Term(*term), vote: node.map(NodeId) };
                self.wal()?.save_hard_state(hard_state)?;
            }
            Command::Commit(index) => self.wal()?.save_commit(Index(*index))?,
            Command::Read { low, high, max_bytes } => {
                let max_bytes = max_bytes.unwrap_or(u64::MAX);
                let entries = self.wal()?.read(Index(*low), Index(*high), max_bytes)?;
                writeln!(output, "{}", entry_list(&entries))?;
            }
            Command::Status => {
                let wal = self.wal()?;
                let log = wal.log_state();
                let (durable_index, durable_term) = wal.durable();
                writeln!(
                    output,
                    "log [{}, {}] prev_term={} terms={} term={} vote={} commit={} \
                     durable={durable_index}@{durable_term} segments={}",
                    log.first_index,
                    log.last_index,
                    log.prev_term,
                    term_runs(&log.term_starts),
                    wal.hard_state().term,
                    vote(&wal.hard_state()),
                    wal.commit(),
                    wal.segment_count(),
                )?;
            }
            Command::Compact(up_to) => self.wal()?.compact(Index(*up_to))?,
            Command::Reset(index, term) => {
                self.wal()?.reset(&snapshot_meta(*index, *term, None))?
            }
            Command::Snapshot(index, term, data) | Command::SaveOnly(index, term, data) => {
                let meta = snapshot_meta(*index, *term, self.membership.as_ref());
                self.wal()?.save_snapshot(meta, data.as_bytes())?;
            }
            Command::Install(index, term, data) => {
                let meta = snapshot_meta(*index, *term, self.membership.as_ref());
                let wal = self.wal()?;
                let mut writer = wal.snapshot_files().writer(meta)?;
                std::io::Write::write_all(&mut writer, data.as_bytes())?;
                wal.install_snapshot(writer.finish()?)?;
            }
            Command::LoadSnapshot => match self.wal()?.load_snapshot()? {
                Some((meta, data)) => {
                    writeln!(output, "snapshot {meta}: {}", String::from_utf8_lossy(&data))?
                }
                None => writeln!(output, "no snapshot")?,
            },
            Command::Crash { lose_unsynced } => {
                self.wal = None;
                if lose_unsynced.unwrap_or(false) {
                    self.fs.crash_losing_unsynced();
                } else {
                    self.fs.crash();
                }
            }
            Command::LoseSectors(segment, sectors) => {
                self.wal = None;
                self.fs.crash_losing_sectors(&Runner::segment_path(*segment), 512, sectors);
            }
            Command::Ls => {
                for (path, size) in self.fs.files() {
                    let name = path.file_name().and_then(|name| name.to_str()).unwrap_or("?");
                    writeln!(output, "{name} {size}")?;
                }
            }
            Command::Dump(sequence) => {
                let bytes = self.fs.contents(&Runner::segment_path(*sequence))?;
                for line in describe_records(&bytes) {
                    writeln!(output, "{line}")?;
                }
            }
            Command::Flip { segment, offset, bit } => {
                self.fs.flip_bit(&Runner::segment_path(*segment), *offset, bit.unwrap_or(0))?;
            }
            Command::Cut(segment, length) => {
                self.fs.cut(&Runner::segment_path(*segment), *length)?
            }
            Command::Zero(segment, offset, length) => {
                self.fs.zero(&Runner::segment_path(*segment), *offset, *length)?
            }
            Command::Faults { write_error_ppm, sync_error_ppm, capacity } => {
                self.fs.set_faults(Faults {
                    write_error_ppm: write_error_ppm.unwrap_or(0),
                    sync_error_ppm: sync_error_ppm.unwrap_or(0),
                    capacity: *capacity,
                    reorder_sectors: None,
                });
            }
        }
        Ok(output)
    }
}
