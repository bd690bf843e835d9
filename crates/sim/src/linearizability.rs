//! Linearizability checking (to be written).
