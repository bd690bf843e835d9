//! # skiff: the one binary
//!
//! One binary for everything a user of skiff runs, with etcdctl's noun-verb commands:
//!
//! | command | what it does | module |
//! |---|---|---|
//! | `skiff node` | runs one member of a cluster (crates/server) | `node` |
//! | `skiff demo` | starts a three-node cluster on this machine | `demo` |
//! | `skiff sim` | the deterministic cluster simulator (crates/sim) | `sim` |
//! | `skiff kv put\|get\|del\|cas\|scan` | reads and writes keys over the HTTP API | `kv` |
//! | `skiff cluster status` | each node's role, term, leader and log indexes | `cluster` |
//! | `skiff bench` | a load generator printing etcd-benchmark-style reports | `bench` |
//!
//! ## The simulator
//! ```text
//! skiff sim                      # the default sweep: seeds 0..300
//! skiff sim --seeds 1000         # seeds 0..1000
//! skiff sim --seed 42 --trace    # one seed, with its whole trace
//! skiff sim --sabotage forget-vote   # the self-test: this defect must be caught
//! skiff sim --seed 42 --web      # the visualizer: step through seed 42 in a browser
//! skiff sim --seed 205 --no-reorder-sectors --no-lazy-commit   # a seed pinned before both
//! ```
//! A failing seed prints its report (the broken invariant, the last trace lines, the replay
//! command) and the process exits with status 1.
//!
//! ## The client commands
//! They speak the HTTP API of docs/http-api.md to a running cluster, through the client in
//! `client` (keep-alive connections, moving to the next endpoint when a node is down or knows
//! no leader, exactly-once retries of writes through client sessions).
//! ```text
//! skiff kv put greeting hello                      # OK
//! skiff kv get greeting                            # greeting / hello
//! skiff kv get greeting --consistency stale        # served by the node asked, maybe behind
//! skiff kv cas greeting --expected hello --value hi
//! skiff kv cas lock --absent --value me            # create only if absent
//! skiff kv del greeting
//! skiff kv scan user/ --limit 100 -w table
//! skiff cluster status -w table
//! skiff bench --clients 1,16,64 --duration 10s --op both
//! ```
//! Flags shared by all of them, each also an environment variable (the flag wins):
//!
//! | flag | variable | default |
//! |---|---|---|
//! | `--endpoints host:port,...` | `SKIFF_ENDPOINTS` | `127.0.0.1:2379` |
//! | `-w, --write-out simple\|table\|json` | `SKIFF_WRITE_OUT` | `simple` |
//! | `--dial-timeout` | `SKIFF_DIAL_TIMEOUT` | `2s` |
//! | `--command-timeout` | `SKIFF_COMMAND_TIMEOUT` | `5s` |
//!
//! They are flags of `kv`, `cluster` and `bench` (written before or after the verb), not of
//! the root command. Results go to stdout; every error goes to stderr as one line starting
//! with `Error:`, and the exit status is 1 (a missing key included: `skiff kv get nope` prints
//! `Error: key not found: nope`). A usage error exits with status 2.
//!
//! ## Runtime
//! The simulator is single-threaded and needs no runtime. `node` and `demo` build their own
//! (see their modules). The client commands run on a
//! current-thread tokio runtime (one request at a time needs no more); the bench runs on a
//! multi-threaded one, so that its clients use every core.

/// The allocator of every skiff process: mimalloc. A node allocates and frees small buffers for
/// every request it serves, on several threads; glibc's allocator spent about 15 % of a leader's
/// CPU at 256 clients (perf), mimalloc's thread-local free lists much less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod api;
mod bench;
mod client;
mod cluster;
mod demo;
mod flags;
mod kv;
#[cfg(test)]
mod mock_server;
mod node;
mod output;
mod random;
mod sim;
mod visualize;

use std::io::Write as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::Output;

/// skiff: a Raft consensus system.
#[derive(Parser, Debug)]
#[command(name = "skiff", version, about)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
enum Command {
    /// Start a three-node cluster on this machine, with no set-up (Ctrl-C stops it).
    Demo(demo::DemoArgs),
    /// Run one member of a cluster.
    Node(node::NodeArgs),
    /// Run the deterministic cluster simulator over one seed or a range of seeds.
    ///
    /// Each seed draws a cluster and its network, disks, workload and faults, and runs it in
    /// simulated time with every safety invariant checked after each step. A crash keeps what a
    /// disk had not synced as a real one may: in half the crashes each unsynced 512-byte sector
    /// is kept or lost on its own (--no-reorder-sectors keeps a prefix of the unsynced writes
    /// instead, the fault model under which older seeds were found). A failing seed prints its
    /// report and the one command that replays it.
    Sim(sim::SimArgs),
    /// Read and write keys: put, get, del, cas, scan.
    Kv(kv::KvArgs),
    /// Look at the cluster: status.
    Cluster(cluster::ClusterArgs),
    /// Measure throughput and latency of puts and gets under concurrent clients.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Node(args) => node::run(args),
        Command::Sim(args) => sim::simulate(args),
        Command::Kv(args) => {
            finish(current_thread().and_then(|runtime| Ok(runtime.block_on(kv::execute(&args))?)))
        }
        Command::Cluster(args) => finish(
            current_thread().and_then(|runtime| Ok(runtime.block_on(cluster::execute(&args))?)),
        ),
        Command::Bench(args) => bench(&args),
    }
}

/// A runtime for commands that send one request at a time.
fn current_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

/// Prints a command's output and turns its outcome into the exit status.
fn finish(outcome: anyhow::Result<Output>) -> ExitCode {
    match outcome {
        Ok(output) => {
            // A closed stdout (`skiff kv scan | head -1`) is not an error of the command.
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(&output.stdout).and_then(|()| stdout.flush());
            for line in &output.stderr {
                eprintln!("{line}");
            }
            if output.failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
        }
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `skiff bench`, on a multi-threaded runtime.
fn bench(args: &bench::BenchArgs) -> ExitCode {
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(bench::execute(args, &mut std::io::stdout())));
    match outcome {
        Ok(summaries) if summaries.iter().all(|summary| summary.requests > 0) => ExitCode::SUCCESS,
        Ok(_) => {
            eprintln!("Error: a run completed no request");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests;
