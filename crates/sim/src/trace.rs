//! The trace of a run: one line per thing that happened, in the scenario scripts' compact form.
//!
//! A line starts with the simulated time and then says what happened: a message delivered
//! (`n1@2 → n3 Append base=1@1 [2@2 noop] commit=1`, the core's `Display` for `Message` with
//! the entries' commands decoded), a write issued or made durable, an apply, a read confirmed
//! or served, a fault, a client's invocation or answer. The trace
//! is the evidence of determinism: its hash is a fingerprint of the whole run, and the same seed
//! on the same commit must give the same hash.
//!
//! Formatting every line costs more than simulating most events, so a sweep runs with the trace
//! off. When a seed fails, the runner replays it with the trace on (the run is deterministic, so
//! the replay fails the same way) to print the last lines before the violation.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::io::Write as _;

use skiff_raft::{Body, Entry, Message, Payload};

use crate::state_machine::describe;
use crate::storage::fnv1a;
use crate::time::Time;

/// What the trace keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceMode {
    /// Nothing: the fastest runs.
    Off,
    /// The hash of every line and the last `n` lines.
    Tail(usize),
    /// The hash of every line, the last 200 lines, and every line printed to stdout as it
    /// happens.
    Print,
}

/// The trace of one run.
#[derive(Debug)]
pub struct Trace {
    /// What to keep.
    mode: TraceMode,
    /// The last lines, oldest first, at most `capacity`.
    tail: VecDeque<String>,
    /// How many lines `tail` keeps.
    capacity: usize,
    /// FNV-1a over every line so far, each followed by a newline.
    hash: u64,
    /// How many lines were recorded.
    lines: u64,
    /// A scratch buffer for formatting, reused across lines.
    buffer: String,
}

impl Trace {
    /// An empty trace in `mode`.
    pub fn new(mode: TraceMode) -> Trace {
        let capacity = match mode {
            TraceMode::Off => 0,
            TraceMode::Tail(lines) => lines,
            TraceMode::Print => 200,
        };
        Trace {
            mode,
            tail: VecDeque::with_capacity(capacity),
            capacity,
            hash: fnv1a(&[]),
            lines: 0,
            buffer: String::new(),
        }
    }

    /// Whether lines are recorded: callers test this before formatting anything.
    pub fn on(&self) -> bool {
        self.mode != TraceMode::Off
    }

    /// Records one line at `time`.
    pub fn line(&mut self, time: Time, text: fmt::Arguments<'_>) {
        if !self.on() {
            return;
        }
        self.buffer.clear();
        let _ = write!(self.buffer, "{time:>12} {text}");
        for &byte in self.buffer.as_bytes().iter().chain(b"\n") {
            self.hash ^= u64::from(byte);
            self.hash = self.hash.wrapping_mul(0x0000_0100_0000_01B3);
        }
        self.lines += 1;
        if self.mode == TraceMode::Print {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", self.buffer);
        }
        if self.capacity > 0 {
            let mut line = if self.tail.len() == self.capacity {
                self.tail.pop_front().unwrap_or_default()
            } else {
                String::new()
            };
            line.clear();
            line.push_str(&self.buffer);
            self.tail.push_back(line);
        }
    }

    /// The hash of every line recorded: equal traces have equal hashes.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// How many lines were recorded.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// The last lines recorded, oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
}

/// A message in trace form: the core's `Display`, except that an `Append`'s entries show their
/// commands decoded (see [`show_entries`]).
pub fn show_message(message: &Message) -> String {
    match &message.body {
        Body::Append { prev_index, prev_term, entries, commit } => format!(
            "{}@{} → {} Append base={prev_index}@{prev_term} {} commit={commit}",
            message.from,
            message.term,
            message.to,
            show_entries(entries)
        ),
        _ => message.to_string(),
    }
}

/// Entries in trace form, like the core's `entry_list` (all of them when few, else the ends and
/// the count), with each command decoded: `[4@2 c3.7:put:k1=5, 5@2 noop]`. The core prints
/// command bytes as text when they are; skiff-kv's binary commands are not.
pub fn show_entries(entries: &[Entry]) -> String {
    let show = |entry: &Entry| match &entry.payload {
        Payload::Noop => format!("{}@{} noop", entry.index, entry.term),
        Payload::Command(bytes) => format!("{}@{} {}", entry.index, entry.term, describe(bytes)),
        Payload::Membership(_) => entry.to_string(),
    };
    match entries {
        [first, .., last] if entries.len() > 3 => {
            format!("[{}, …, {}] ({} entries)", show(first), show(last), entries.len())
        }
        _ => {
            let shown: Vec<String> = entries.iter().map(show).collect();
            format!("[{}]", shown.join(", "))
        }
    }
}

/// Records a trace line if the trace is on, without formatting anything when it is off.
macro_rules! trace {
    ($trace:expr, $time:expr, $($format:tt)+) => {
        if $trace.on() {
            $trace.line($time, format_args!($($format)+));
        }
    };
}
pub(crate) use trace;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_tail_and_hashes_everything() {
        let mut a = Trace::new(TraceMode::Tail(2));
        let mut b = Trace::new(TraceMode::Tail(5));
        for number in 0..4 {
            trace!(a, Time(number), "line {number}");
            trace!(b, Time(number), "line {number}");
        }
        assert_eq!(a.tail().len(), 2);
        assert!(a.tail()[1].ends_with("line 3"), "{:?}", a.tail());
        assert_eq!(a.hash(), b.hash(), "the hash covers every line, not the tail");
        assert_eq!(a.lines(), 4);
        trace!(b, Time(9), "one more");
        assert_ne!(a.hash(), b.hash());
        let mut off = Trace::new(TraceMode::Off);
        trace!(off, Time(0), "nothing");
        assert_eq!(off.lines(), 0);
    }
}
