//! What a run or a sweep reports: counts, the verdict, and for a failure everything needed to
//! understand and replay it.
//!
//! A failure report names the seed, the broken invariant with its evidence, the world the seed
//! drew, the faults of the (possibly shrunk) schedule, the last lines of the trace in the
//! scenario scripts' compact form, and the one command that replays the run with its whole
//! trace: `skiff sim --seed N --trace`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::faults::FaultSchedule;
use crate::invariants::Violation;
use crate::parameters::Parameters;
use crate::simulation::{DEFAULT_FAULT_PHASE, Options};
use crate::time::Time;
use crate::workload::WorkloadStats;

/// Counts of what happened in one run (or, summed, in a sweep).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Simulated time at the end.
    pub simulated: Time,
    /// Events handled.
    pub events: u64,
    /// Messages between nodes sent (after any hold).
    pub messages: u64,
    /// Messages delivered (duplicates count twice).
    pub delivered: u64,
    /// Messages lost by the network.
    pub lost: u64,
    /// Messages dropped by partitions.
    pub blocked: u64,
    /// Messages duplicated.
    pub duplicated: u64,
    /// Faults that struck.
    pub faults: u64,
    /// Node crashes.
    pub crashes: u64,
    /// Crashes after which the log's recovery cut a batch whose sectors reached the disk out of
    /// order (valid records after a lost sector; only with `Options::reorder_sectors`).
    pub tails_out_of_order: u64,
    /// Terms that had a leader.
    pub leaders: u64,
    /// The highest index committed.
    pub committed: u64,
    /// The highest term at the end.
    pub max_term: u64,
    /// What the clients did.
    pub workload: WorkloadStats,
    /// Whether the linearizability check ran out of steps (neither passed nor failed).
    pub inconclusive: bool,
    /// Empty `Append`s sent during the final quiet period.
    pub quiet_probes: u64,
    /// Linearizable gets served (every kind but stale), each checked against the cluster's
    /// commit index when it arrived.
    pub reads: u64,
    /// Of those, by ReadIndex at the leader.
    pub leader_reads: u64,
    /// Of those, through a follower or learner, with a read index its leader confirmed.
    pub follower_reads: u64,
    /// Of those, under the leader's lease.
    pub lease_reads: u64,
    /// Of those, asked for under a lease the leader did not hold, served by ReadIndex.
    pub lease_fallbacks: u64,
    /// Retried writes that committed again and were answered from the store's session, with
    /// the first attempt's result, instead of being applied twice.
    pub deduplicated: u64,
    /// Local snapshots made durable.
    pub snapshots_taken: u64,
    /// Compactions of a log completed.
    pub compactions: u64,
    /// Fetches of a leader's snapshot started.
    pub fetches: u64,
    /// Fetches that failed (the leader offered again later).
    pub fetches_failed: u64,
    /// Snapshots fetched and installed.
    pub snapshots_installed: u64,
    /// Chunk requests sent.
    pub chunks: u64,
    /// Crashes in the middle of a snapshot step.
    pub snapshot_crashes: u64,
    /// Followers cut off by a lag fault.
    pub lags: u64,
    /// Runs (1 for a run, summed in a sweep) in which some node installed a snapshot.
    pub runs_with_install: u64,
    /// Runs that ended with final reads of every key (no acknowledged write lost).
    pub final_reads: u64,
    /// Leadership transfers started.
    pub transfers: u64,
    /// Leadership transfers given up after an election timeout.
    pub transfers_aborted: u64,
    /// Membership changes a leader accepted.
    pub membership_changes: u64,
    /// Nodes removed from the cluster and stopped for good.
    pub retired: u64,
    /// Stale gets served (left out of the history: see `workload.rs`).
    pub stale_reads: u64,
    /// Learners added (spares started and added).
    pub learners_added: u64,
    /// Spares added as voters at once, empty.
    pub voters_added: u64,
    /// Promotions the leader refused because the learner was too far behind (asked again).
    pub promotions_refused: u64,
    /// Learners promoted to voters.
    pub promotions: u64,
    /// Single removals of a voter or learner.
    pub removals: u64,
    /// Removals of the leader by itself (the leader of the change was its target).
    pub leader_removals: u64,
    /// Changes of several voters at once, through a joint configuration.
    pub joint_changes: u64,
    /// Rolling replacements completed: a spare in as a voter, then an old voter out.
    pub replacements: u64,
    /// Runs (1 for a run, summed in a sweep) that removed and retired a majority of the
    /// founders, one change at a time, the cluster living on in the rest and the spares.
    pub runs_retiring_majority: u64,
    /// Lease races struck (see `FaultKind::LeaseRace`).
    pub lease_races: u64,
    /// Lease reads the lease prober asked of old leaders during lease races.
    pub lease_probes: u64,
}

impl Stats {
    /// Adds another run's counts to these.
    pub fn add(&mut self, other: &Stats) {
        self.simulated = self.simulated + other.simulated;
        self.events += other.events;
        self.messages += other.messages;
        self.delivered += other.delivered;
        self.lost += other.lost;
        self.blocked += other.blocked;
        self.duplicated += other.duplicated;
        self.faults += other.faults;
        self.crashes += other.crashes;
        self.tails_out_of_order += other.tails_out_of_order;
        self.leaders += other.leaders;
        self.committed += other.committed;
        self.max_term = self.max_term.max(other.max_term);
        let (mine, theirs) = (&mut self.workload, &other.workload);
        mine.invoked += theirs.invoked;
        mine.ok += theirs.ok;
        mine.failed += theirs.failed;
        mine.unknown += theirs.unknown;
        mine.attempts += theirs.attempts;
        mine.stale_reads += theirs.stale_reads;
        self.inconclusive |= other.inconclusive;
        self.quiet_probes += other.quiet_probes;
        self.reads += other.reads;
        self.deduplicated += other.deduplicated;
        self.snapshots_taken += other.snapshots_taken;
        self.compactions += other.compactions;
        self.fetches += other.fetches;
        self.fetches_failed += other.fetches_failed;
        self.snapshots_installed += other.snapshots_installed;
        self.chunks += other.chunks;
        self.snapshot_crashes += other.snapshot_crashes;
        self.lags += other.lags;
        self.runs_with_install += other.runs_with_install;
        self.final_reads += other.final_reads;
        self.transfers += other.transfers;
        self.transfers_aborted += other.transfers_aborted;
        self.membership_changes += other.membership_changes;
        self.retired += other.retired;
        self.stale_reads += other.stale_reads;
        self.leader_reads += other.leader_reads;
        self.follower_reads += other.follower_reads;
        self.lease_reads += other.lease_reads;
        self.lease_fallbacks += other.lease_fallbacks;
        self.learners_added += other.learners_added;
        self.promotions += other.promotions;
        self.promotions_refused += other.promotions_refused;
        self.voters_added += other.voters_added;
        self.removals += other.removals;
        self.leader_removals += other.leader_removals;
        self.joint_changes += other.joint_changes;
        self.replacements += other.replacements;
        self.runs_retiring_majority += other.runs_retiring_majority;
        self.lease_races += other.lease_races;
        self.lease_probes += other.lease_probes;
    }
}

/// The first violation of a run, and when it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What was violated.
    pub violation: Violation,
    /// When.
    pub time: Time,
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// The first violation, if any.
    pub failure: Option<Failure>,
    /// What happened.
    pub stats: Stats,
    /// The hash of the whole trace (meaningful when the trace was on).
    pub trace_hash: u64,
    /// The number of trace lines (0 when the trace was off).
    pub trace_lines: u64,
    /// The last trace lines (empty when the trace was off).
    pub tail: Vec<String>,
    /// The numbers of the faults that were in the schedule.
    pub faults: BTreeSet<usize>,
    /// The world the seed drew.
    pub parameters: Parameters,
    /// The fault schedule, with left-out faults as `None`.
    pub schedule: FaultSchedule,
}

impl Outcome {
    /// Whether the run kept every invariant.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// The command that replays `options` with its whole trace.
pub fn replay_command(options: &Options) -> String {
    let mut command = format!("skiff sim --seed {} --trace", options.seed);
    if let Some(defect) = options.defect {
        let _ = write!(command, " --sabotage {defect}");
    }
    if let Some(nodes) = options.nodes {
        let _ = write!(command, " --nodes {nodes}");
    }
    if options.fault_phase != DEFAULT_FAULT_PHASE {
        let _ = write!(command, " --fault-ms {}", options.fault_phase.0 / 1_000);
    }
    if !options.reorder_sectors {
        command.push_str(" --no-reorder-sectors");
    }
    if !options.lazy_commit {
        command.push_str(" --no-lazy-commit");
    }
    if let Some(keep) = &options.keep_faults {
        let numbers: Vec<String> = keep.iter().map(usize::to_string).collect();
        let _ = write!(
            command,
            " --faults {}",
            if numbers.is_empty() { "none".to_string() } else { numbers.join(",") }
        );
    }
    command
}

/// The full report of a failed run (`outcome` should come from a run with the trace on).
pub fn failure_report(options: &Options, outcome: &Outcome) -> String {
    let mut text = String::new();
    let Some(failure) = &outcome.failure else {
        let _ = writeln!(text, "seed {} passed", outcome.seed);
        return text;
    };
    let _ = writeln!(
        text,
        "FAILED seed {}: {} violated at {}",
        outcome.seed, failure.violation.invariant, failure.time
    );
    let _ = writeln!(text, "  {}", failure.violation.detail);
    if let Some(defect) = options.defect {
        let _ = writeln!(text, "  (defect switched on: {defect})");
    }
    let _ = writeln!(text, "\nworld:");
    for line in outcome.parameters.describe().lines() {
        let _ = writeln!(text, "  {line}");
    }
    let faults: Vec<String> = outcome
        .schedule
        .faults
        .iter()
        .enumerate()
        .filter_map(|(number, fault)| fault.as_ref().map(|fault| format!("  #{number} {fault}")))
        .collect();
    let _ = writeln!(text, "\nfault schedule ({} faults):", faults.len());
    for line in faults.iter().take(40) {
        let _ = writeln!(text, "{line}");
    }
    if faults.len() > 40 {
        let _ = writeln!(text, "  … {} more", faults.len() - 40);
    }
    if !outcome.tail.is_empty() {
        let _ = writeln!(text, "\nlast {} trace lines:", outcome.tail.len());
        for line in &outcome.tail {
            let _ = writeln!(text, "  {line}");
        }
    }
    let _ = writeln!(text, "\nreplay: {}", replay_command(options));
    text
}
