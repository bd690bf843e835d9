//! # skiff: the one binary
//!
//! For now it has one command, `skiff sim`, the deterministic cluster simulator (crates/sim).
//! `skiff demo`, `node`, `kv`, `cluster` and `bench` arrive with the server.
//!
//! ```text
//! skiff sim                      # the default sweep: seeds 0..300
//! skiff sim --seeds 1000         # seeds 0..1000
//! skiff sim --seed 42 --trace    # one seed, with its whole trace
//! skiff sim --sabotage forget-vote   # the self-test: this defect must be caught
//! ```
//! A failing seed prints its report (the broken invariant, the last trace lines, the replay
//! command) and the process exits with status 1.

mod sim;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    /// Run the deterministic cluster simulator over one seed or a range of seeds.
    Sim(sim::SimArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(args) => sim::simulate(args),
    }
}
