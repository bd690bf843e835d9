//! The leader's view of one follower's log (Raft §5.3 "nextIndex" and "matchIndex"), and the flow
//! control that decides when to send it entries.
//!
//! A follower is in one of three states:
//! - **Probe**: the leader does not know where the follower's log stops matching. It sends one
//!   `Append` and waits for the answer (or the next heartbeat answer) before sending another.
//!   A rejection carries a hint that moves `next_index` back a whole term at a time.
//! - **Replicate**: the follower's log is known to match. The leader streams `Append`s
//!   optimistically, advancing `next_index` as it sends, with at most a window of them in flight;
//!   acknowledgements are cumulative and free the window.
//! - **Snapshot**: the entries the follower needs next were compacted away, so the leader sent it
//!   an `InstallSnapshot` and sends no `Append`s until an acknowledgement shows the follower's log
//!   reaches the leader's again (see `snapshot.rs`). Heartbeats still flow, so reads and the
//!   leader's lease keep working. Unanswered for an election timeout, the `InstallSnapshot` is
//!   sent again: it, or the follower's fetch of the snapshot, may have been lost.
//!
//! Invariants: `match_index < next_index`; `match_index` never decreases within a term; the
//! window holds strictly increasing last indexes, all at or below `next_index - 1`.

use std::collections::VecDeque;

use crate::types::Index;

/// How the leader currently sends to a follower.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// Finding the point where the logs match: one `Append` at a time.
    Probe {
        /// An `Append` is out and unanswered; send nothing more until an answer arrives.
        paused: bool,
    },
    /// Streaming entries.
    Replicate {
        /// The last index of each `Append` with entries in flight, oldest first.
        inflight: VecDeque<Index>,
    },
    /// Waiting for the follower to install a snapshot; no `Append`s are sent.
    Snapshot {
        /// The index of the snapshot last offered in an `InstallSnapshot`.
        index: Index,
        /// Ticks since it was offered; at an election timeout it is offered again.
        elapsed: u32,
    },
}

/// The leader's knowledge of one follower.
#[derive(Clone, Debug)]
pub struct Progress {
    /// The highest index known to match the leader's log and be durable on the follower.
    pub match_index: Index,
    /// The next index to send.
    pub next_index: Index,
    /// Probe or replicate.
    pub state: ProgressState,
    /// Whether the follower answered since the last check-quorum round.
    pub recent_active: bool,
    /// The first index of an outstanding `ReadEntries` for this follower; while one is out,
    /// nothing else is sent, so entries leave in order.
    pub reading: Option<Index>,
    /// The commit index last sent to the follower.
    pub sent_commit: Index,
    /// `match_index` when the previous heartbeat answer arrived: no progress across a whole
    /// heartbeat round while entries are outstanding means an `Append` or its answer was lost.
    pub match_at_heartbeat: Index,
}

impl Progress {
    /// A follower about which nothing is known, probed from `next_index`.
    pub fn new(next_index: Index) -> Progress {
        assert!(next_index.0 > 0, "next index starts at 1");
        Progress {
            match_index: Index(0),
            next_index,
            state: ProgressState::Probe { paused: false },
            recent_active: false,
            reading: None,
            sent_commit: Index(0),
            match_at_heartbeat: Index(0),
        }
    }

    /// Whether another `Append` with entries may be sent now.
    pub fn can_send(&self, window: usize) -> bool {
        if self.reading.is_some() {
            return false;
        }
        match &self.state {
            ProgressState::Probe { paused } => !paused,
            ProgressState::Replicate { inflight } => inflight.len() < window,
            ProgressState::Snapshot { .. } => false,
        }
    }

    /// Records that an `Append` ending at `last_index` was sent.
    pub fn sent(&mut self, last_index: Index, has_entries: bool) {
        match &mut self.state {
            ProgressState::Snapshot { .. } => {
                unreachable!("no Append is sent while waiting for a snapshot install")
            }
            ProgressState::Probe { paused } => *paused = true,
            ProgressState::Replicate { inflight } => {
                if has_entries {
                    assert!(
                        last_index >= self.next_index,
                        "sent entries up to {last_index} below next index {}",
                        self.next_index
                    );
                    inflight.push_back(last_index);
                    self.next_index = last_index.next();
                }
            }
        }
    }

    /// Records a cumulative acknowledgement up to `match_index`. Returns whether the match index
    /// advanced.
    pub fn acknowledged(&mut self, match_index: Index) -> bool {
        self.recent_active = true;
        if match_index < self.match_index {
            if let ProgressState::Probe { paused } = &mut self.state {
                *paused = false;
            }
            return false;
        }
        if match_index == self.match_index {
            // A probe answered at the known match index: the logs match exactly there, so
            // stream from it (as etcd does). Unpausing alone would probe it again forever.
            if let ProgressState::Probe { .. } = self.state {
                self.next_index = match_index.next();
                self.state = ProgressState::Replicate { inflight: VecDeque::new() };
            }
            return false;
        }
        self.match_index = match_index;
        self.next_index = self.next_index.max(match_index.next());
        match &mut self.state {
            // The follower installed the snapshot (or showed that its log already held the
            // snapshot's last entry): its log matches exactly up to here, so stream from it. If
            // that is still below the leader's first index, the leader offers a newer snapshot.
            ProgressState::Probe { .. } | ProgressState::Snapshot { .. } => {
                // The logs match up to here: stream from the end of what matched.
                self.next_index = match_index.next();
                self.state = ProgressState::Replicate { inflight: VecDeque::new() };
            }
            ProgressState::Replicate { inflight } => {
                while inflight.front().is_some_and(|&last| last <= match_index) {
                    inflight.pop_front();
                }
            }
        }
        true
    }

    /// Records that an `InstallSnapshot` offering the snapshot ending at `index` was sent: no
    /// `Append`s until the follower acknowledges it.
    pub fn offered_snapshot(&mut self, index: Index) {
        assert!(
            index >= self.next_index,
            "offering snapshot {index}, which does not cover the next index {}",
            self.next_index
        );
        self.state = ProgressState::Snapshot { index, elapsed: 0 };
    }

    /// One tick while waiting for a snapshot install. Returns whether the offer has gone
    /// unanswered for `timeout` ticks and should be made again.
    pub fn snapshot_tick(&mut self, timeout: u32) -> bool {
        let ProgressState::Snapshot { elapsed, .. } = &mut self.state else { return false };
        *elapsed += 1;
        *elapsed >= timeout
    }

    /// Falls back to probing from `next_index` (after a rejection or a stall).
    pub fn probe_from(&mut self, next_index: Index) {
        assert!(
            next_index > self.match_index,
            "probing at {next_index}, at or below the match index {}",
            self.match_index
        );
        self.next_index = next_index;
        self.state = ProgressState::Probe { paused: false };
    }

    /// The follower answered a heartbeat: unpause a probe. Returns whether replication looks
    /// stalled (nothing acknowledged across a whole heartbeat round although `last_index` is
    /// ahead of the match index).
    pub fn heartbeat_answered(&mut self, last_index: Index) -> bool {
        self.recent_active = true;
        let stalled = match &mut self.state {
            ProgressState::Probe { paused } => {
                *paused = false;
                false
            }
            ProgressState::Replicate { .. } => {
                self.match_index < last_index && self.match_index == self.match_at_heartbeat
            }
            // Installing a snapshot may take many heartbeat rounds; its own timer resends.
            ProgressState::Snapshot { .. } => false,
        };
        self.match_at_heartbeat = self.match_index;
        stalled
    }

    /// The state's name for traces and status output.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            ProgressState::Probe { .. } => "probe",
            ProgressState::Replicate { .. } => "replicate",
            ProgressState::Snapshot { .. } => "snapshot",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_sends_one_at_a_time_then_replicates_with_a_window() {
        let mut progress = Progress::new(Index(5));
        assert!(progress.can_send(2));
        progress.sent(Index(6), true);
        assert!(!progress.can_send(2), "a probe waits for its answer");
        assert!(progress.acknowledged(Index(6)));
        assert_eq!(progress.next_index, Index(7));
        progress.sent(Index(8), true);
        progress.sent(Index(10), true);
        assert!(!progress.can_send(2), "the window of two is full");
        assert!(progress.acknowledged(Index(8)));
        assert!(progress.can_send(2), "one append acknowledged frees one slot");
        assert_eq!(progress.next_index, Index(11));
    }

    #[test]
    fn stall_is_detected_after_a_silent_heartbeat_round() {
        let mut progress = Progress::new(Index(1));
        progress.acknowledged(Index(0));
        progress.sent(Index(1), true);
        progress.acknowledged(Index(1));
        progress.sent(Index(3), true);
        assert!(!progress.heartbeat_answered(Index(3)), "first round: the append may be in flight");
        assert!(progress.heartbeat_answered(Index(3)), "second round without progress: stalled");
    }

    #[test]
    fn a_snapshot_offer_pauses_appends_until_acknowledged_then_streams() {
        let mut progress = Progress::new(Index(3));
        progress.offered_snapshot(Index(10));
        assert!(!progress.can_send(8), "no appends while the follower installs");
        assert!(!progress.heartbeat_answered(Index(12)), "a long install is not a stall");
        assert!(!progress.snapshot_tick(2));
        assert!(progress.snapshot_tick(2), "unanswered for a timeout: offer again");
        assert!(!progress.acknowledged(Index(0)), "a stale acknowledgement changes nothing");
        assert_eq!(progress.state_name(), "snapshot");
        assert!(progress.acknowledged(Index(10)));
        assert_eq!((progress.state_name(), progress.next_index), ("replicate", Index(11)));
        assert!(progress.can_send(8));
    }
}
