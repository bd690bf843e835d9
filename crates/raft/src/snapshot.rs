//! Snapshots, log compaction and InstallSnapshot (Raft §7).
//!
//! A log cannot grow forever. Once the state machine has applied a prefix of the log, a copy of
//! its state — a **snapshot** — stands for that whole prefix, and the entries in it can be
//! deleted. The core never holds snapshot bytes: the driver takes, stores, sends and installs
//! them; the core keeps only their **metadata** ([`SnapshotMeta`]: the last index and term the
//! snapshot covers, and the membership as of that index) and decides *when* a snapshot is
//! needed.
//!
//! ## Taking a snapshot and compacting
//! The driver snapshots its state machine at its applied index `i` whenever it likes. It asks
//! [`Node::snapshot_meta_at`] for the metadata (refused unless the snapshot would be newer than
//! the node's latest, so an empty state machine can never overwrite a real snapshot), makes the
//! snapshot durable, and reports it with [`Node::snapshot_taken`]. From then on it may delete log
//! entries up to any index at or below `i`; it reports each such compaction with
//! [`Node::compacted`] *before* deleting, and the core never again asks to read them. Compaction
//! is a separate report because the driver chooses how much log to keep: keeping a tail behind
//! the snapshot lets a slightly lagging follower catch up from the log instead of a whole
//! snapshot, and a segmented log deletes whole segments only.
//!
//! ## Sending a snapshot: a pull
//! When a follower needs entries the leader no longer has (its next index is below the leader's
//! first index), the leader puts it in the **snapshot** progress state — no `Append`s — and sends
//! it `InstallSnapshot { meta }`, metadata only. The follower's core answers with
//! [`Action::FetchSnapshot`](crate::Action::FetchSnapshot): its driver fetches the bytes from the
//! leader's driver (in chunks, resumable, checksummed: transport work, not protocol), installs
//! them atomically — state machine and log together — and reports [`Node::snapshot_installed`].
//! The core resets its log to an empty one after the snapshot and acknowledges with an ordinary
//! `AppendResponse` accepted at the snapshot's index; the leader then streams `Append`s from the
//! index after it. The bytes never pass through either core, and a slow transfer blocks nothing
//! else: heartbeats, reads and the other followers carry on.
//!
//! The follower fetches only what it needs:
//! - an offer at or below its commit index is **stale** (it already holds those entries, and
//!   committed entries are the same everywhere): it answers at once with its own match index,
//!   so the leader learns where it really stands;
//! - if its log already holds the snapshot's last entry with the snapshot's term, the log
//!   matching property (Raft §5.3) says everything up to it equals the leader's log: it keeps its
//!   log, suffix included (Figure 13, step 6), commits up to the snapshot's index, and answers
//!   without fetching anything;
//! - otherwise it fetches, one snapshot at a time.
//!
//! A lost `InstallSnapshot`, a lost answer or a failed fetch ([`Node::snapshot_failed`]) are all
//! mended the same way: the leader offers its latest snapshot again after an election timeout
//! without an answer.
//!
//! ## Invariants
//! - The log is compacted only up to the latest snapshot, which covers committed, applied and
//!   durable entries only; the core never asks to read an entry at or below the compaction point.
//! - Nothing at or below the snapshot the state machine holds is handed out in an `Apply`.
//! - A node's snapshot index never decreases, across restarts too.
//! - While a fetch is outstanding the follower's log does not change (it has no pending write
//!   when the fetch starts and merges no `Append` until the install is reported), so the install
//!   never races a log write, and core and driver reset the log identically.
//! - A node that is fetching a snapshot lacks a committed entry, so it can never win an
//!   election (Raft §5.4.1) — asserted when it becomes leader.
//! - A snapshot's membership is the configuration in force as of its index (the latest
//!   configuration entry at or below it), joint or not: the log after the snapshot may not hold
//!   any configuration entry, and then the snapshot is the only place the configuration is kept.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::action::Event;
use crate::error::ReportError;
use crate::membership::Membership;
use crate::message::Body;
use crate::node::{Node, Role};
use crate::types::{Index, NodeId, Term};

/// What a snapshot covers: the state machine's state after applying every entry up to `index`.
/// The core knows snapshots by this metadata only; the bytes are the driver's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The index of the last entry the snapshot covers; at least 1.
    pub index: Index,
    /// The term of that entry: what a follower compares with its own log (Raft §7).
    pub term: Term,
    /// The cluster's configuration as of `index`: voters, learners, and the outgoing voters if
    /// a joint change was under way (membership travels with the snapshot). Has voters.
    pub membership: Membership,
}

impl fmt::Display for SnapshotMeta {
    /// The compact trace form: `20@2 voters=n1,n2,n3` (and learners or outgoing voters).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{} {}", self.index, self.term, self.membership)
    }
}

impl Node {
    /// The node's latest snapshot, if it has one: taken, installed, or restored from.
    pub fn snapshot(&self) -> Option<&SnapshotMeta> {
        self.snapshot.as_ref()
    }

    /// The index of the latest snapshot, 0 if there is none.
    pub(crate) fn snapshot_index(&self) -> Index {
        self.snapshot.as_ref().map_or(Index(0), |meta| meta.index)
    }

    /// The metadata for a snapshot of the state machine at applied index `index` (contract
    /// item 9), or `None` if such a snapshot must not be taken: it would be no newer than the
    /// node's latest snapshot (after a restart the state machine starts at that snapshot, and an
    /// empty or older one must never replace it), `index` has not been handed out to apply, or
    /// the configuration as of `index` is unknown here (a node that joined without one knows
    /// nothing of the configurations before the first it received).
    pub fn snapshot_meta_at(&self, index: Index) -> Option<SnapshotMeta> {
        if index <= self.snapshot_index() || index > self.applied {
            return None;
        }
        let term = self.log.term(index).expect("an applied index above the snapshot is in the log");
        let (_, membership) = self.memberships.at(index);
        if membership.voters.is_empty() {
            return None;
        }
        Some(SnapshotMeta { index, term, membership: membership.clone() })
    }

    /// The driver made a snapshot of its state machine durable (contract item 9). It may now
    /// compact the log up to `meta.index`, reporting it with [`Node::compacted`]. Refused, and
    /// ignored, if it is not what [`Node::snapshot_meta_at`] would have described.
    pub fn snapshot_taken(&mut self, meta: SnapshotMeta) -> Result<(), ReportError> {
        let refuse = |reason: String| Err(ReportError::BadSnapshot { index: meta.index, reason });
        let latest = self.snapshot_index();
        if meta.index <= latest {
            return refuse(format!("not newer than the latest snapshot, at {latest}"));
        }
        if meta.index > self.applied {
            return refuse(format!("beyond the applied index {}", self.applied));
        }
        // Paired check: the term the driver recorded must be the one our log has there.
        let term = self.log.term(meta.index);
        if term != Some(meta.term) {
            return refuse(format!("term {} but the log has {term:?} there", meta.term));
        }
        let (_, membership) = self.memberships.at(meta.index);
        if meta.membership != *membership {
            return refuse(format!(
                "membership {} but the log's as of there is {membership}",
                meta.membership
            ));
        }
        // The configurations before the snapshot are now the snapshot's business.
        self.memberships.rebase(meta.index);
        self.snapshot = Some(meta);
        Ok(())
    }

    /// The driver is about to delete log entries up to `index` (contract item 10): the core
    /// will not ask to read them again, and forgets its outstanding reads that reach them (the
    /// driver may drop those unanswered). Refused beyond the latest snapshot, which is what
    /// stands for the deleted entries. An index at or below an earlier compaction changes
    /// nothing.
    pub fn compacted(&mut self, index: Index) -> Result<(), ReportError> {
        let latest = self.snapshot_index();
        if index > latest {
            return Err(ReportError::BadCompaction {
                index,
                reason: format!("beyond the latest snapshot, at {latest}"),
            });
        }
        self.log.compact_to(index);
        // Reads to apply start above the applied index, which is at or above the snapshot's.
        assert!(
            self.applied >= index,
            "compacted to {index} above the applied index {}",
            self.applied
        );
        if let Role::Leader(leader) = &mut self.role {
            for progress in leader.progress.values_mut() {
                if progress.reading.is_some_and(|low| low <= index) {
                    // The follower is offered the snapshot at the next take_actions instead.
                    progress.reading = None;
                }
            }
        }
        Ok(())
    }

    /// The driver installed the snapshot a [`FetchSnapshot`](crate::Action::FetchSnapshot)
    /// asked for (contract item 11): the state machine now holds the snapshot's state, and the
    /// durable log is empty after `meta.index`. The core resets its log the same way and
    /// acknowledges the snapshot's index to the leader. Refused if no fetch of `meta` is
    /// outstanding (e.g. one asked for before a restart).
    pub fn snapshot_installed(&mut self, meta: SnapshotMeta) -> Result<(), ReportError> {
        if self.fetching.as_ref() != Some(&meta) {
            return Err(ReportError::BadSnapshot {
                index: meta.index,
                reason: "no fetch of this snapshot is outstanding".into(),
            });
        }
        self.fetching = None;
        // The log did not change while fetching, and did not hold the snapshot's last entry when
        // the fetch began (else nothing would have been fetched); so nothing at or above the
        // snapshot's index is committed or applied here yet.
        assert!(
            self.log.term(meta.index) != Some(meta.term),
            "installing snapshot {meta} whose last entry the log already holds"
        );
        assert!(
            self.applied < meta.index,
            "installing snapshot {} at or below the applied index {}",
            meta.index,
            self.applied
        );
        self.log.install_snapshot(meta.index, meta.term);
        // The log is gone, and with it every configuration entry: the snapshot's is in force.
        self.memberships.reset(meta.index, meta.membership.clone());
        self.refresh_membership();
        // Entries queued to apply and not yet handed out are below the snapshot: it replaces
        // them. An apply read still out is answered for compacted entries and ignored.
        self.to_apply.clear();
        self.apply_reading = false;
        self.applied = meta.index;
        self.events.push(Event::CommitAdvanced { commit: meta.index });
        if let Role::Follower(follower) = &mut self.role {
            follower.matched = follower.matched.max(meta.index);
        }
        self.snapshot = Some(meta);
        self.acknowledge(true);
        Ok(())
    }

    /// The driver could not fetch or install the snapshot `meta` (contract item 11); it kept
    /// nothing of it. The leader offers a snapshot again after an election timeout. A report
    /// for a fetch that is not outstanding changes nothing.
    pub fn snapshot_failed(&mut self, meta: &SnapshotMeta) {
        if self.fetching.as_ref() == Some(meta) {
            self.fetching = None;
        }
    }

    // ----- Leader -----

    /// Offers `peer` the latest snapshot, because the entries it needs next were compacted away;
    /// no `Append`s go to it until it acknowledges.
    pub(crate) fn offer_snapshot(&mut self, peer: NodeId) {
        let meta = self.snapshot.clone().expect("the log is compacted only up to a snapshot");
        let Role::Leader(leader) = &mut self.role else { return };
        let progress = leader.progress.get_mut(&peer).expect("a progress per peer");
        progress.offered_snapshot(meta.index);
        self.send(peer, Body::InstallSnapshot { meta });
    }

    /// One leader tick for the followers offered a snapshot: an offer unanswered for an election
    /// timeout is made again (the message, the answer, or the fetch may have been lost).
    pub(crate) fn tick_snapshot_offers(&mut self) {
        let timeout = self.config.election_timeout;
        let Role::Leader(leader) = &mut self.role else { return };
        let due: Vec<NodeId> = leader
            .progress
            .iter_mut()
            .filter_map(|(&peer, progress)| progress.snapshot_tick(timeout).then_some(peer))
            .collect();
        for peer in due {
            self.offer_snapshot(peer);
        }
    }

    // ----- Follower -----

    /// Handles the leader's offer of a snapshot (see the module documentation).
    pub(crate) fn handle_install_snapshot(&mut self, leader: NodeId, meta: SnapshotMeta) {
        let commit = self.log.commit();
        let known_match = if meta.index <= commit {
            // Stale: committed entries equal the leader's, so the log matches up to commit.
            Some(commit)
        } else if self.log.term(meta.index) == Some(meta.term) {
            // The log holds the snapshot's last entry: it matches the leader's up to there.
            self.advance_commit(meta.index);
            Some(meta.index)
        } else {
            None
        };
        if let Some(index) = known_match {
            if let Role::Follower(follower) = &mut self.role {
                follower.matched = follower.matched.max(index);
            }
            self.acknowledge(true);
            return;
        }
        // One fetch at a time: an offer repeated while fetching is the leader's retry timer.
        // With writes pending, a later write could land after the install; wait for the next
        // offer instead.
        if self.fetching.is_some() || self.log.has_unfinished_writes() {
            return;
        }
        self.fetching = Some(meta.clone());
        self.fetch = Some((leader, meta));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::node::Restored;
    use crate::testkit::LocalCluster;

    fn membership() -> Membership {
        Membership::new((1..=3).map(NodeId))
    }

    /// A three-node cluster led by node 1 that committed and applied `count` commands.
    fn cluster_with(count: usize) -> LocalCluster {
        let mut cluster = LocalCluster::new(3, false, |_| {});
        cluster.node_mut(NodeId(1)).campaign();
        cluster.stabilize();
        for command in 0..count {
            cluster.node_mut(NodeId(1)).propose(format!("c{command}").into()).expect("leads");
        }
        cluster.stabilize();
        cluster
    }

    #[test]
    fn a_snapshot_must_be_newer_applied_and_agree_with_the_log() {
        let mut cluster = cluster_with(3);
        let node = cluster.node_mut(NodeId(1));
        assert_eq!(node.status().applied, Index(4));
        assert_eq!(node.snapshot_meta_at(Index(0)), None);
        assert_eq!(node.snapshot_meta_at(Index(5)), None, "not applied yet");
        let meta = node.snapshot_meta_at(Index(3)).expect("applied and newer");
        assert_eq!(meta, SnapshotMeta { index: Index(3), term: Term(1), membership: membership() });
        let wrong_term = SnapshotMeta { term: Term(2), ..meta.clone() };
        assert!(node.snapshot_taken(wrong_term).is_err());
        let wrong_voters =
            SnapshotMeta { membership: Membership::new([NodeId(1)]), ..meta.clone() };
        assert!(node.snapshot_taken(wrong_voters).is_err());
        node.snapshot_taken(meta.clone()).expect("a valid snapshot");
        assert!(node.snapshot_taken(meta).is_err(), "the same snapshot twice");
        assert_eq!(node.snapshot_meta_at(Index(2)), None, "older than the latest");
        assert!(node.compacted(Index(4)).is_err(), "compaction beyond the snapshot");
        node.compacted(Index(3)).expect("up to the snapshot");
        assert!(node.compacted(Index(2)).is_ok(), "an older compaction changes nothing");
    }

    #[test]
    fn an_install_report_without_a_fetch_is_refused() {
        let mut cluster = cluster_with(1);
        let meta = SnapshotMeta { index: Index(9), term: Term(1), membership: membership() };
        let node = cluster.node_mut(NodeId(2));
        assert!(node.snapshot_installed(meta.clone()).is_err());
        node.snapshot_failed(&meta);
        assert_eq!(node.status().commit, Index(2), "a stray failure report changes nothing");
    }

    #[test]
    fn restore_refuses_a_log_that_does_not_pass_through_the_snapshot() {
        let config = Config::new(NodeId(1), membership().voters);
        let meta = SnapshotMeta { index: Index(5), term: Term(2), membership: membership() };
        let log = |first: u64, last: u64, prev_term: u64, runs: &[(u64, u64)]| crate::LogState {
            first_index: Index(first),
            last_index: Index(last),
            prev_term: Term(prev_term),
            term_starts: runs.iter().map(|&(index, term)| (Index(index), Term(term))).collect(),
        };
        let restore = |log, snapshot| {
            Node::new(config.clone(), Restored { log, snapshot, ..Restored::default() })
        };
        let empty_after = log(6, 5, 2, &[]);
        let node = restore(empty_after.clone(), Some(meta.clone())).expect("a fresh install");
        assert_eq!((node.status().applied, node.status().commit), (Index(5), Index(5)));
        let tail = log(4, 7, 1, &[(4, 2)]);
        let node = restore(tail, Some(meta.clone())).expect("a log through the snapshot");
        assert_eq!(node.status().applied, Index(5), "nothing at or below the snapshot again");
        assert!(restore(log(7, 8, 2, &[(7, 2)]), Some(meta.clone())).is_err(), "a gap");
        assert!(restore(log(1, 4, 0, &[(1, 2)]), Some(meta.clone())).is_err(), "too short");
        assert!(restore(log(1, 6, 0, &[(1, 1), (6, 3)]), Some(meta)).is_err(), "other term");
        assert!(restore(empty_after, None).is_err(), "compacted without a snapshot");
    }
}
