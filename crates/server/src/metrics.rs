//! The server's Prometheus metrics, named as etcd names the same things (with the `skiff_`
//! prefix), so dashboards and alerts written for etcd read naturally.
//!
//! Counters end in `_total`, durations are in seconds, and histogram buckets start at 100 µs:
//! an fsync on this class of machine takes about 0.19 ms, below the 1 ms floor of etcd's
//! buckets. The peer metrics (`skiff_network_peer_*`) belong to the transport and are registered
//! in the same registry. `GET /metrics` encodes the registry in the Prometheus text format.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::dashboard::WriteLatency;

/// Histogram buckets for durations: 100 µs doubling up to about 3.3 s.
fn duration_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_1, 2.0, 16)
}

/// Every metric of one server, and the registry that exposes them.
#[derive(Debug)]
pub struct Metrics {
    /// The registry `GET /metrics` encodes.
    registry: Registry,
    /// 1 when this node knows a leader, else 0.
    pub has_leader: Gauge,
    /// 1 when this node is the leader, else 0.
    pub is_leader: Gauge,
    /// How many times this node saw the leader change.
    pub leader_changes_seen: Counter,
    /// The current term.
    pub term: Gauge,
    /// The commit index.
    pub commit_index: Gauge,
    /// The applied index.
    pub applied_index: Gauge,
    /// Entries that became committed on this node (the commit index's advance).
    pub proposals_committed: Counter,
    /// Entries applied to the state machine.
    pub proposals_applied: Counter,
    /// Client writes waiting to be applied.
    pub proposals_pending: Gauge,
    /// Client writes that failed (not leader, dropped by a leader change, timed out).
    pub proposals_failed: Counter,
    /// Linearizable reads that could not be confirmed.
    pub read_indexes_failed: Counter,
    /// Reads served under the leader's lease (`consistency=lease`), without a heartbeat round.
    pub lease_reads: Counter,
    /// Lease reads the core refused (lease reads off, no lease yet, a transfer started), served
    /// through ReadIndex instead.
    pub lease_reads_refused: Counter,
    /// Linearizable reads a follower asked its leader a read index for (to serve them from its
    /// own store once confirmed).
    pub follower_reads: Counter,
    /// Time to apply one batch of committed entries.
    pub apply_duration: Histogram,
    /// Time of one write-ahead-log batch: write plus fsync.
    pub wal_fsync_duration: Histogram,
    /// Time from a client write's arrival to its answer, on the node that proposed it (not
    /// counting writes it forwarded). Lock-free: observed once per write.
    pub write_duration: WriteLatency,
    /// The index of the latest snapshot, taken or installed (0 before the first).
    pub snapshot_index: Gauge,
    /// Time to take a local snapshot: view the store, serialize, fsync, save.
    pub snapshot_save_duration: Histogram,
    /// Snapshots fetched from the leader and installed.
    pub snapshot_receive_success: Counter,
    /// Fetches of the leader's snapshot that failed.
    pub snapshot_receive_failures: Counter,
    /// Bytes of entries (by `Entry::size`) this leader read from its log to send to followers
    /// catching up.
    pub catchup_read_bytes: Counter,
    /// Seconds the catch-up pacer held reads for followers, summed over the reads (two
    /// followers held together count twice).
    pub catchup_paced_seconds: Counter<f64, AtomicU64>,
}

impl Metrics {
    /// Creates the metrics; `register_more` adds others (the transport's) to the registry.
    pub fn new(register_more: impl FnOnce(&mut Registry)) -> Metrics {
        let mut registry = Registry::default();
        let metrics = Metrics {
            registry: Registry::default(),
            has_leader: Gauge::default(),
            is_leader: Gauge::default(),
            leader_changes_seen: Counter::default(),
            term: Gauge::default(),
            commit_index: Gauge::default(),
            applied_index: Gauge::default(),
            proposals_committed: Counter::default(),
            proposals_applied: Counter::default(),
            proposals_pending: Gauge::default(),
            proposals_failed: Counter::default(),
            read_indexes_failed: Counter::default(),
            lease_reads: Counter::default(),
            lease_reads_refused: Counter::default(),
            follower_reads: Counter::default(),
            apply_duration: Histogram::new(duration_buckets()),
            wal_fsync_duration: Histogram::new(duration_buckets()),
            write_duration: WriteLatency::new(),
            snapshot_index: Gauge::default(),
            snapshot_save_duration: Histogram::new(duration_buckets()),
            snapshot_receive_success: Counter::default(),
            snapshot_receive_failures: Counter::default(),
            catchup_read_bytes: Counter::default(),
            catchup_paced_seconds: Counter::default(),
        };
        let server = registry.sub_registry_with_prefix("skiff_server");
        server.register(
            "has_leader",
            "Whether a leader is known (1) or not (0)",
            metrics.has_leader.clone(),
        );
        server.register(
            "is_leader",
            "Whether this node is the leader (1) or not (0)",
            metrics.is_leader.clone(),
        );
        server.register(
            "leader_changes_seen",
            "The number of leader changes seen",
            metrics.leader_changes_seen.clone(),
        );
        server.register("term", "The current term", metrics.term.clone());
        server.register("commit_index", "The commit index", metrics.commit_index.clone());
        server.register("applied_index", "The applied index", metrics.applied_index.clone());
        server.register(
            "proposals_committed",
            "The number of entries committed",
            metrics.proposals_committed.clone(),
        );
        server.register(
            "proposals_applied",
            "The number of entries applied",
            metrics.proposals_applied.clone(),
        );
        server.register(
            "proposals_pending",
            "The number of client writes waiting to be applied",
            metrics.proposals_pending.clone(),
        );
        server.register(
            "proposals_failed",
            "The number of client writes that failed",
            metrics.proposals_failed.clone(),
        );
        server.register(
            "read_indexes_failed",
            "The number of linearizable reads that could not be confirmed",
            metrics.read_indexes_failed.clone(),
        );
        server.register(
            "lease_reads",
            "The number of reads served under the leader's lease",
            metrics.lease_reads.clone(),
        );
        server.register(
            "lease_reads_refused",
            "The number of lease reads refused by the core and served through ReadIndex",
            metrics.lease_reads_refused.clone(),
        );
        server.register(
            "follower_reads",
            "The number of linearizable reads this follower served after asking its leader",
            metrics.follower_reads.clone(),
        );
        server.register(
            "apply_duration_seconds",
            "The time to apply a batch of committed entries",
            metrics.apply_duration.clone(),
        );
        server.register(
            "write_duration_seconds",
            "The time from a client write's arrival to its answer, on the node that proposed it",
            metrics.write_duration.clone(),
        );
        server.register(
            "snapshot_index",
            "The index of the latest snapshot, taken or installed",
            metrics.snapshot_index.clone(),
        );
        server.register(
            "catchup_read_bytes",
            "The bytes of entries read from the log to send to followers catching up",
            metrics.catchup_read_bytes.clone(),
        );
        server.register(
            "catchup_paced_seconds",
            "The seconds reads for followers catching up were held to the catch-up rate, summed \
             over the reads",
            metrics.catchup_paced_seconds.clone(),
        );
        let disk = registry.sub_registry_with_prefix("skiff_disk");
        disk.register(
            "wal_fsync_duration_seconds",
            "The time of a write-ahead-log batch: write and fsync",
            metrics.wal_fsync_duration.clone(),
        );
        disk.register(
            "snapshot_save_duration_seconds",
            "The time to take a snapshot: view the store, serialize, fsync and save",
            metrics.snapshot_save_duration.clone(),
        );
        let network = registry.sub_registry_with_prefix("skiff_network");
        network.register(
            "snapshot_receive_success",
            "The number of snapshots fetched from the leader and installed",
            metrics.snapshot_receive_success.clone(),
        );
        network.register(
            "snapshot_receive_failures",
            "The number of fetches of the leader's snapshot that failed",
            metrics.snapshot_receive_failures.clone(),
        );
        register_more(&mut registry);
        Metrics { registry, ..metrics }
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_etcd_with_the_skiff_prefix() {
        let metrics = Metrics::new(|_| {});
        metrics.leader_changes_seen.inc();
        metrics.wal_fsync_duration.observe(0.000_19);
        let text = metrics.encode();
        for name in [
            "skiff_server_has_leader ",
            "skiff_server_is_leader ",
            "skiff_server_leader_changes_seen_total 1",
            "skiff_server_proposals_committed_total ",
            "skiff_server_proposals_applied_total ",
            "skiff_server_proposals_pending ",
            "skiff_server_proposals_failed_total ",
            "skiff_server_read_indexes_failed_total ",
            "skiff_server_lease_reads_total 0",
            "skiff_server_lease_reads_refused_total 0",
            "skiff_server_follower_reads_total 0",
            "skiff_server_apply_duration_seconds_bucket{le=\"0.0001\"} 0",
            "skiff_disk_wal_fsync_duration_seconds_bucket{le=\"0.0002\"} 1",
            "skiff_server_write_duration_seconds_count 0",
            "skiff_server_snapshot_index 0",
            "skiff_disk_snapshot_save_duration_seconds_count 0",
            "skiff_network_snapshot_receive_success_total 0",
            "skiff_network_snapshot_receive_failures_total 0",
            "skiff_server_catchup_read_bytes_total 0",
            "skiff_server_catchup_paced_seconds_total 0",
        ] {
            assert!(text.contains(name), "{name:?} missing from:\n{text}");
        }
    }
}
