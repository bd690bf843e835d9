//! The transport's Prometheus metrics, one series per peer.
//!
//! Every metric has the one label `peer`, the peer's node id in decimal (`peer="2"`). The label
//! set is bounded by the configured peers, plus `peer="unknown"` on
//! `skiff_network_peer_rejected_frames_total` for frames whose sender could not be identified.
//! Series for every configured peer exist from the start, at zero, so that a dashboard shows a
//! peer that was never reached.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use skiff_raft::NodeId;

/// The label of every transport metric: which peer the series is about.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct PeerLabel {
    /// The peer's node id in decimal, or `unknown` for a sender that was not identified.
    pub peer: String,
}

impl PeerLabel {
    /// The label of `peer`'s series.
    pub fn new(peer: NodeId) -> PeerLabel {
        PeerLabel { peer: peer.0.to_string() }
    }

    /// The label of frames whose sender is not a known peer.
    pub fn unknown() -> PeerLabel {
        PeerLabel { peer: "unknown".to_owned() }
    }
}

/// The transport's metrics. Cheap to clone: clones share the same series.
#[derive(Clone, Debug, Default)]
pub struct TransportMetrics {
    /// Bytes written to the peer's connection, length prefixes included
    /// (`skiff_network_peer_sent_bytes_total`).
    pub sent_bytes: Family<PeerLabel, Counter>,
    /// Bytes of valid frames read from the peer's connections, length prefixes included
    /// (`skiff_network_peer_received_bytes_total`).
    pub received_bytes: Family<PeerLabel, Counter>,
    /// Raft messages written to the peer's connection
    /// (`skiff_network_peer_sent_messages_total`).
    pub sent_messages: Family<PeerLabel, Counter>,
    /// Failed attempts to connect to the peer, and failed writes to it
    /// (`skiff_network_peer_send_failures_total`).
    pub send_failures: Family<PeerLabel, Counter>,
    /// Messages for the peer that were dropped: refused by a full queue, too large for a frame,
    /// or lost in a failed write (`skiff_network_peer_dropped_messages_total`).
    pub dropped_messages: Family<PeerLabel, Counter>,
    /// 1 while an outgoing connection to the peer is up, else 0
    /// (`skiff_network_peer_connected`).
    pub connected: Family<PeerLabel, Gauge>,
    /// Frames received and rejected (bad version, other cluster, garbage, oversize, invalid
    /// message); each closed its connection (`skiff_network_peer_rejected_frames_total`).
    pub rejected_frames: Family<PeerLabel, Counter>,
}

impl TransportMetrics {
    /// Metrics with no series yet; the transport creates one per peer when it starts.
    pub fn new() -> TransportMetrics {
        TransportMetrics::default()
    }

    /// Registers every metric in `registry`. prometheus-client appends `_total` to counters,
    /// so counters are registered under their name without it.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "skiff_network_peer_sent_bytes",
            "Bytes written to the peer, length prefixes included.",
            self.sent_bytes.clone(),
        );
        registry.register(
            "skiff_network_peer_received_bytes",
            "Bytes of valid frames read from the peer, length prefixes included.",
            self.received_bytes.clone(),
        );
        registry.register(
            "skiff_network_peer_sent_messages",
            "Raft messages written to the peer.",
            self.sent_messages.clone(),
        );
        registry.register(
            "skiff_network_peer_send_failures",
            "Failed connection attempts and failed writes to the peer.",
            self.send_failures.clone(),
        );
        registry.register(
            "skiff_network_peer_dropped_messages",
            "Messages for the peer dropped: queue full, too large for a frame, or lost in a \
             failed write.",
            self.dropped_messages.clone(),
        );
        registry.register(
            "skiff_network_peer_connected",
            "1 while the outgoing connection to the peer is up, else 0.",
            self.connected.clone(),
        );
        registry.register(
            "skiff_network_peer_rejected_frames",
            "Frames rejected (bad version, other cluster, garbage, oversize, invalid message); \
             each closed its connection.",
            self.rejected_frames.clone(),
        );
    }

    /// Creates `peer`'s series at zero, so that they are exposed before anything happens.
    pub(crate) fn create_series(&self, peer: &PeerLabel) {
        for family in [
            &self.sent_bytes,
            &self.received_bytes,
            &self.sent_messages,
            &self.send_failures,
            &self.dropped_messages,
            &self.rejected_frames,
        ] {
            drop(family.get_or_create(peer));
        }
        self.connected.get_or_create(peer).set(0);
    }
}
