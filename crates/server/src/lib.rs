//! skiff-server (being written).

/// The peer transport: Raft messages between nodes over TCP, framed as `proto/peer.proto`.
pub mod transport;
