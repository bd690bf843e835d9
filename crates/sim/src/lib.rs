//! # skiff-sim: the deterministic simulator
//!
//! (essay to come with the simulator)

pub mod history;
pub mod linearizability;
