//! `skiff sim`: the deterministic cluster simulator's command line.
//!
//! With `--web`, it serves the visualizer of one seed instead (`visualize`).
//!
//! A thin front over crates/sim: it turns flags into a [`Sweep`] (many seeds, failures shrunk
//! and reported at the end) or into single traced runs (`--trace`, or `--faults` to replay a
//! shrunk schedule). The exit status is 1 when any seed breaks an invariant, and also when a
//! `--sabotage` defect goes unnoticed, because then the simulator has lost its teeth.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use skiff_sim::sweep::{DEFAULT_SEEDS, investigate};
use skiff_sim::{
    DEFAULT_FAULT_PHASE, Defect, Options, Sweep, Time, TraceMode, failure_report, run, sweep,
};

/// Arguments of `skiff sim`.
#[derive(Args, Debug)]
pub struct SimArgs {
    /// The (first) seed. Alone, runs just this seed; with --seeds, the range from it.
    #[arg(long)]
    seed: Option<u64>,
    /// How many seeds to run (default: 300 from seed 0, or 1 when --seed is given).
    #[arg(long)]
    seeds: Option<u64>,
    /// Print the whole trace of every run as it happens.
    #[arg(long)]
    trace: bool,
    /// Switch on a deliberate defect (the self-test); the sweep must report a violation.
    #[arg(long, alias = "break", value_parser = parse_defect)]
    sabotage: Option<Defect>,
    /// Force the cluster size (3, 5 or 7 are drawn otherwise).
    #[arg(long)]
    nodes: Option<u64>,
    /// How long faults are injected before the heal, in simulated milliseconds.
    #[arg(long, default_value_t = DEFAULT_FAULT_PHASE.0 / 1_000)]
    fault_ms: u64,
    /// Run only these faults of each schedule, by number ("none" for no faults): the form a
    /// shrunk failure's replay command uses.
    #[arg(long, value_parser = parse_faults)]
    faults: Option<FaultList>,
    /// Runs to spend shrinking a failing schedule (0: do not shrink).
    #[arg(long, default_value_t = 200)]
    shrink: usize,
    /// Keep going after a failing seed.
    #[arg(long)]
    keep_going: bool,
    /// Crashes keep a disk's unsynced writes in order (a prefix of them, the last one torn at
    /// any byte) instead of keeping or losing each 512-byte sector on its own in half of them:
    /// the fault model of seeds found before sectors were reordered, which replay only with it.
    #[arg(long)]
    no_reorder_sectors: bool,
    /// Leaders send followers each new commit index at once, in an append of its own, instead
    /// of with the next append or heartbeat as skiff's server does: how seeds found before
    /// 2026-12-05 ran, which replay only with it.
    #[arg(long)]
    no_lazy_commit: bool,
    /// Serve the visualizer for the seed (--seed, default 0) instead of running it: a web page
    /// that steps through the run forwards and backwards, and a small cluster to drive by hand.
    #[arg(long)]
    web: bool,
    /// The address the visualizer listens on.
    #[arg(long, default_value = "127.0.0.1:0", requires = "web")]
    web_addr: std::net::SocketAddr,
}

impl SimArgs {
    /// The options of a run of `seed` under these flags, with the trace off.
    pub(crate) fn options(&self, seed: u64) -> Options {
        Options {
            seed,
            defect: self.sabotage,
            nodes: self.nodes,
            fault_phase: Time::millis(self.fault_ms),
            trace: TraceMode::Off,
            keep_faults: self.faults.as_ref().map(|list| list.0.clone()),
            reorder_sectors: !self.no_reorder_sectors,
            lazy_commit: !self.no_lazy_commit,
        }
    }
}

/// A list of fault numbers.
#[derive(Clone, Debug)]
struct FaultList(BTreeSet<usize>);

/// Parses a defect name.
fn parse_defect(name: &str) -> Result<Defect, String> {
    name.parse()
}

/// Parses `3,7,12` or `none`.
fn parse_faults(list: &str) -> Result<FaultList, String> {
    if list == "none" {
        return Ok(FaultList(BTreeSet::new()));
    }
    list.split(',')
        .map(|number| {
            number.trim().parse::<usize>().map_err(|error| format!("{number:?}: {error}"))
        })
        .collect::<Result<BTreeSet<usize>, String>>()
        .map(FaultList)
}

/// `skiff sim`.
pub fn simulate(args: SimArgs) -> ExitCode {
    if args.nodes.is_some_and(|nodes| !(1..=15).contains(&nodes)) {
        eprintln!("--nodes must be between 1 and 15");
        return ExitCode::from(2);
    }
    let first_seed = args.seed.unwrap_or(0);
    if args.web {
        return crate::visualize::serve(args.options(first_seed), args.web_addr);
    }
    let count = args.seeds.unwrap_or(if args.seed.is_some() { 1 } else { DEFAULT_SEEDS });
    if args.trace || args.faults.is_some() {
        return run_each(&args, first_seed, count);
    }
    let plan = Sweep {
        first_seed,
        count,
        defect: args.sabotage,
        nodes: args.nodes,
        fault_phase: Time::millis(args.fault_ms),
        stop_at_first_failure: !args.keep_going,
        reorder_sectors: !args.no_reorder_sectors,
        lazy_commit: !args.no_lazy_commit,
    };
    let started = Instant::now();
    let interactive = std::io::stderr().is_terminal();
    let mut done = 0;
    let summary = sweep(&plan, |outcome| {
        done += 1;
        if let Some(failure) = &outcome.failure {
            // Said at once, so that a long sweep shows its failures as it goes.
            if interactive {
                eprintln!();
            }
            eprintln!("seed {} failed: {}", outcome.seed, failure.violation);
        }
        if interactive && (done % 10 == 0 || done == count) {
            eprint!("\r{done}/{count} seeds (last: {}){}", outcome.seed, " ".repeat(8));
            let _ = std::io::stderr().flush();
        }
    });
    if interactive {
        eprintln!();
    }
    let elapsed = started.elapsed().as_secs_f64();
    for (options, outcome) in &summary.failures {
        let (replay, traced) = investigate(options, outcome, args.shrink);
        if let Some(kept) = &replay.keep_faults {
            println!(
                "(the schedule of seed {} shrank from {} faults to {})",
                outcome.seed,
                outcome.faults.len(),
                kept.len()
            );
        }
        println!("{}", failure_report(&replay, &traced));
    }
    let totals = &summary.totals;
    let workload = &totals.workload;
    println!(
        "{} seeds in {elapsed:.1}s ({:.1} seeds/s): {} simulated, {} messages ({} lost, {} blocked \
         by partitions, {} duplicated), {} faults ({} crashes, {} of them cut a tail of sectors \
         kept out of order), {} leaders elected, {} entries committed",
        summary.seeds,
        summary.seeds as f64 / elapsed.max(1e-9),
        totals.simulated,
        totals.messages,
        totals.lost,
        totals.blocked,
        totals.duplicated,
        totals.faults,
        totals.crashes,
        totals.tails_out_of_order,
        totals.leaders,
        totals.committed
    );
    println!(
        "snapshots: {} taken, {} compactions, {} installed ({} fetches, {} failed, {} chunk \
         requests) in {} of {} seeds, {} crashes inside snapshot steps, {} lagging followers",
        totals.snapshots_taken,
        totals.compactions,
        totals.snapshots_installed,
        totals.fetches,
        totals.fetches_failed,
        totals.chunks,
        totals.runs_with_install,
        summary.seeds,
        totals.snapshot_crashes,
        totals.lags
    );
    println!(
        "client operations checked: {} ({} ok, {} failed, {} unknown){}",
        workload.invoked,
        workload.ok,
        workload.failed,
        workload.unknown,
        if summary.inconclusive > 0 {
            format!("; linearizability inconclusive in {} seeds", summary.inconclusive)
        } else {
            String::new()
        }
    );
    match (&args.sabotage, summary.failures.len()) {
        (_, 0) => {
            println!("violations: 0");
            if let Some(defect) = args.sabotage {
                println!("the defect {defect} was NOT caught: the simulator has lost its teeth");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        (Some(defect), failures) => {
            println!("violations: {failures} (defect {defect} caught)");
            ExitCode::FAILURE
        }
        (None, failures) => {
            println!("violations: {failures}");
            ExitCode::FAILURE
        }
    }
}

/// Runs seeds one at a time with the trace printed (or a chosen fault subset).
fn run_each(args: &SimArgs, first_seed: u64, count: u64) -> ExitCode {
    let mut failed = false;
    for seed in first_seed..first_seed.saturating_add(count) {
        let trace = if args.trace { TraceMode::Print } else { TraceMode::Tail(40) };
        let options = Options { trace, ..args.options(seed) };
        let outcome = run(&options);
        let stats = &outcome.stats;
        if outcome.passed() {
            println!(
                "seed {seed} passed: {} simulated, {} messages, {} faults, {} leaders, {} entries \
                 committed, {} client operations; trace {:016x} ({} lines)",
                stats.simulated,
                stats.messages,
                stats.faults,
                stats.leaders,
                stats.committed,
                stats.workload.invoked,
                outcome.trace_hash,
                outcome.trace_lines
            );
        } else {
            failed = true;
            println!("{}", failure_report(&options, &outcome));
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
