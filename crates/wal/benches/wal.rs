//! Benchmarks of the write-ahead log (being written).

fn main() {}
