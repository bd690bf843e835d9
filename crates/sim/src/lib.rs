//! # skiff-sim: the deterministic cluster simulator
//!
//! The evidence that skiff is correct is not that its tests pass, but that the real core
//! (crates/raft, unchanged) survives thousands of randomized failure schedules, each checked
//! after every step, and that any failure can be replayed exactly. This crate runs a whole
//! cluster in one thread on simulated time, a simulated network and simulated disks, in the
//! tradition of FoundationDB's simulation and TigerBeetle's VOPR.
//!
//! ## One seed, one run
//! A `u64` seed derives everything (`parameters.rs`): the cluster size (3, 5 or 7), the tick
//! length and per-node skew, the core's timeouts and flow-control limits, the network's latency,
//! loss, duplication and slow-message rates, the disks' latencies and stalls, the workload, the
//! fault rates and the fault schedule itself (`faults.rs`). Nothing reads a clock, every choice
//! comes from seeded streams (`random.rs`), every map iterates in order, and events at the same
//! simulated time run in the order they were scheduled (`queue.rs`). The same seed on the same
//! commit therefore gives a byte-identical trace (`trace.rs`); a test holds us to it.
//!
//! ## The pieces
//! - `network.rs`: loss, duplication, delay up to seconds, reordering, partitions of every shape.
//! - `storage.rs`: a disk whose writes become durable after a delay, in order, and are lost by a
//!   crash when not yet durable.
//! - `driver.rs`: the node driver, honouring the core's contract item by item (hold messages
//!   until the hard state is durable; report writes only once durable; serve reads from storage).
//! - `state_machine.rs`: a register map with client sessions, until crates/kv lands.
//! - `workload.rs`: clients doing put, get and compare-and-swap with retries, forwarding and
//!   timeouts, recording a history (`history.rs`).
//! - `faults.rs` and `nemesis.rs`: the schedule of crashes, pauses, partitions, skews and
//!   triggers, and its execution.
//! - `invariants.rs`: the safety checks, after every step.
//! - `linearizability.rs`: the history check at the end of a run.
//! - `simulation.rs`: the runner and its phases: faults, heal (liveness), drain (history).
//! - `sabotage.rs`: the self-test: defects switched on to prove the checks can fail.
//! - `report.rs` and `shrink.rs`: failure reports, replay commands, schedule shrinking.
//! - `sweep.rs`: many seeds in a row, for the CLI (`skiff sim`) and the tests.
//! - `stepper.rs`: a run one event at a time, with a view of the cluster after each, for the
//!   visualizer (`skiff sim --seed N --web`).
//!
//! ## Left out for now
//! Bit flips and I/O errors from the file system (crates/wal's `MemFs` can inject both; a node
//! would stop on them, which the simulator does not model yet), the kv crate's state machine, snapshots and membership changes (not in the core yet), clients
//! behind partitions, and batching several inputs per `take_actions`.

pub mod driver;
pub mod faults;
pub mod history;
pub mod invariants;
pub mod linearizability;
pub mod nemesis;
pub mod network;
pub mod parameters;
pub mod queue;
pub mod random;
pub mod report;
pub mod sabotage;
pub mod shrink;
pub mod simulation;
pub mod state_machine;
pub mod stepper;
pub mod storage;
pub mod sweep;
pub mod time;
pub mod trace;
pub mod workload;

pub use invariants::{Invariant, Violation};
pub use report::{Failure, Outcome, Stats, failure_report, replay_command};
pub use sabotage::Defect;
pub use simulation::{DEFAULT_FAULT_PHASE, Options, run};
pub use sweep::{Sweep, SweepSummary, sweep};
pub use time::Time;
pub use trace::TraceMode;
