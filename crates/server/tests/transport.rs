//! The peer transport over real TCP on 127.0.0.1: delivery of every message kind, reconnection,
//! bounded queues for dead peers, rejection of bad frames, and what a `Hello` teaches.
//!
//! Every test binds ephemeral ports and runs within [`LIMIT`], so a hang fails instead of
//! stalling the suite. Tests that need a misbehaving peer play it by hand with a raw socket and
//! the transport's own frame codec.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::registry::Registry;
use skiff_raft::{AppendOutcome, Body, Entry, Index, Message, NodeId, Payload, Term};
use skiff_server::transport::frame::{encode_frame, read_frame};
use skiff_server::transport::{
    PROTOCOL_VERSION, PeerLabel, Transport, TransportConfig, TransportMetrics, UnknownPeer, proto,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The longest any test may take.
const LIMIT: Duration = Duration::from_secs(30);

/// The cluster id of every node in these tests.
const CLUSTER: u64 = 42;

/// Runs `test` within [`LIMIT`].
async fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(LIMIT, test).await.expect("the test finished in time");
}

/// Polls `condition` every 5 ms until it holds.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let wait = async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

/// A listener on an ephemeral loopback port.
async fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind an ephemeral port");
    let address = listener.local_addr().expect("a bound listener has an address");
    (listener, address)
}

/// An address where nothing listens (a port bound then released).
async fn dead_address() -> SocketAddr {
    listen().await.1
}

/// The client address node `id` advertises.
fn client_addr(id: u64) -> String {
    format!("127.0.0.1:{}", 2378 + id)
}

/// A configuration for node `id` with fast reconnection, so tests do not wait long.
fn config(id: u64, peers: &[(u64, SocketAddr)]) -> TransportConfig {
    let peers = peers.iter().map(|&(peer, address)| (NodeId(peer), address)).collect();
    let mut config = TransportConfig::new(CLUSTER, NodeId(id), client_addr(id), peers);
    config.backoff_min = Duration::from_millis(10);
    config.backoff_max = Duration::from_millis(100);
    config
}

/// One running transport with its inbound channel and metrics.
struct Node {
    transport: Transport,
    inbound: mpsc::Receiver<Message>,
    metrics: TransportMetrics,
}

impl Node {
    /// Starts a transport on `listener` with `config` and an inbound channel of `capacity`.
    fn start(config: TransportConfig, listener: TcpListener, capacity: usize) -> Node {
        let (sender, inbound) = mpsc::channel(capacity);
        let metrics = TransportMetrics::new();
        let transport = Transport::start(config, listener, sender, metrics.clone());
        Node { transport, inbound, metrics }
    }

    /// The next inbound message.
    async fn receive(&mut self) -> Message {
        tokio::time::timeout(Duration::from_secs(10), self.inbound.recv())
            .await
            .expect("a message arrived in time")
            .expect("the transport is running")
    }

    /// The value of a counter of `family` for `peer`.
    fn count(&self, family: fn(&TransportMetrics) -> &CounterFamily, peer: u64) -> u64 {
        family(&self.metrics).get_or_create(&PeerLabel::new(NodeId(peer))).get()
    }
}

type CounterFamily = prometheus_client::metrics::family::Family<
    PeerLabel,
    prometheus_client::metrics::counter::Counter,
>;

/// Two nodes, 1 and 2, knowing each other.
async fn pair() -> (Node, Node) {
    let (listener1, address1) = listen().await;
    let (listener2, address2) = listen().await;
    let node1 = Node::start(config(1, &[(2, address2)]), listener1, 1024);
    let node2 = Node::start(config(2, &[(1, address1)]), listener2, 1024);
    (node1, node2)
}

/// One message of every kind from `from` to `to`, with a distinct term each.
fn every_kind(from: u64, to: u64) -> Vec<Message> {
    let bodies = vec![
        Body::PreVote { last_index: Index(7), last_term: Term(2) },
        Body::PreVoteResponse { granted: true },
        Body::Vote { last_index: Index(7), last_term: Term(2), transfer: true },
        Body::TimeoutNow,
        Body::VoteResponse { granted: false },
        Body::Append {
            prev_index: Index(7),
            prev_term: Term(2),
            entries: vec![
                Entry { index: Index(8), term: Term(3), payload: Payload::Noop },
                Entry {
                    index: Index(9),
                    term: Term(3),
                    payload: Payload::Command(Bytes::from_static(b"put x 1")),
                },
            ],
            commit: Index(7),
        },
        Body::AppendResponse(AppendOutcome::Accepted { match_index: Index(9) }),
        Body::AppendResponse(AppendOutcome::Rejected {
            prev_index: Index(7),
            conflict_term: Some(Term(1)),
            conflict_index: Index(4),
        }),
        Body::Heartbeat { commit: Index(9), read_round: 5 },
        Body::HeartbeatResponse { read_round: 5 },
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(term, body)| Message {
            from: NodeId(from),
            to: NodeId(to),
            term: Term(term as u64 + 1),
            body,
        })
        .collect()
}

/// A heartbeat from `from` to `to` in `term`.
fn heartbeat(from: u64, to: u64, term: u64) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        body: Body::Heartbeat { commit: Index(0), read_round: 0 },
    }
}

/// A frame from `from` to `to` of cluster [`CLUSTER`] carrying `kind`.
fn frame(from: u64, to: u64, kind: proto::frame::Kind) -> proto::Frame {
    proto::Frame { version: PROTOCOL_VERSION, cluster_id: CLUSTER, from, to, kind: Some(kind) }
}

/// A `Hello` frame from `from` to `to`.
fn hello(from: u64, to: u64) -> proto::Frame {
    frame(from, to, proto::frame::Kind::Hello(proto::Hello { client_addr: client_addr(from) }))
}

/// A `Batch` frame from `from` to `to`.
fn batch(from: u64, to: u64, messages: Vec<proto::Message>) -> proto::Frame {
    frame(from, to, proto::frame::Kind::Batch(proto::Batch { messages }))
}

/// Waits until the other end closes `stream` (end of stream or reset), reading whatever it
/// sends meanwhile (nothing, from a transport).
async fn closed_by_peer(stream: &mut TcpStream) {
    let mut buffer = [0u8; 64];
    let wait = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("the transport closed the connection");
}

#[tokio::test]
async fn two_nodes_exchange_every_kind_of_message() {
    bounded(async {
        let (mut node1, mut node2) = pair().await;
        for message in every_kind(1, 2) {
            node1.transport.send(message);
        }
        for message in every_kind(2, 1) {
            node2.transport.send(message);
        }
        for expected in every_kind(1, 2) {
            assert_eq!(node2.receive().await, expected);
        }
        for expected in every_kind(2, 1) {
            assert_eq!(node1.receive().await, expected);
        }
        assert!(node1.transport.connected(NodeId(2)));
        assert!(node2.transport.connected(NodeId(1)));
        let sent = every_kind(1, 2).len() as u64;
        assert_eq!(node1.count(|m| &m.sent_messages, 2), sent);
        assert!(node1.count(|m| &m.sent_bytes, 2) > 0);
        eventually("node 2 counted every byte node 1 sent", || {
            node2.count(|m| &m.received_bytes, 1) == node1.count(|m| &m.sent_bytes, 2)
        })
        .await;
        assert_eq!(node1.count(|m| &m.dropped_messages, 2), 0);
        node1.transport.shutdown().await;
        node2.transport.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_client_address_is_learned_from_the_hello() {
    bounded(async {
        let (listener1, address1) = listen().await;
        let (listener2, address2) = listen().await;
        let mut quiet = config(2, &[(1, address1)]);
        quiet.client_addr = String::new();
        let node1 = Node::start(config(1, &[(2, address2)]), listener1, 16);
        let node2 = Node::start(quiet, listener2, 16);
        eventually("node 2 learned node 1's client address", || {
            node2.transport.client_addr(NodeId(1)).is_some()
        })
        .await;
        assert_eq!(node2.transport.client_addr(NodeId(1)), Some(client_addr(1)));
        eventually("node 2 connected to node 1", || node2.transport.connected(NodeId(1))).await;
        // Node 2 said hello advertising no client address: that is not an address.
        assert_eq!(node1.transport.client_addr(NodeId(2)), None);
        assert_eq!(node1.transport.client_addr(NodeId(7)), None);
        node1.transport.shutdown().await;
        node2.transport.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_peer_that_starts_later_is_reached_after_reconnecting() {
    bounded(async {
        let (listener1, address1) = listen().await;
        let address2 = dead_address().await;
        let node1 = Node::start(config(1, &[(2, address2)]), listener1, 16);
        node1.transport.send(heartbeat(1, 2, 1));
        eventually("a dial failed", || node1.count(|m| &m.send_failures, 2) >= 2).await;
        assert!(!node1.transport.connected(NodeId(2)));

        let listener2 = TcpListener::bind(address2).await.expect("the released port is free");
        let mut node2 = Node::start(config(2, &[(1, address1)]), listener2, 16);
        // The message queued while node 2 was down is delivered once node 1 gets through.
        assert_eq!(node2.receive().await, heartbeat(1, 2, 1));
        assert!(node1.transport.connected(NodeId(2)));
        node1.transport.shutdown().await;
        node2.transport.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_peer_that_connects_cuts_the_backoff_to_it_short() {
    bounded(async {
        let (listener1, address1) = listen().await;
        let address2 = dead_address().await;
        // A backoff far longer than the test may take: only the peer's own hello can end it.
        let mut config1 = config(1, &[(2, address2)]);
        config1.backoff_min = Duration::from_secs(60);
        config1.backoff_max = Duration::from_secs(60);
        let node1 = Node::start(config1, listener1, 16);
        node1.transport.send(heartbeat(1, 2, 1));
        eventually("a dial failed", || node1.count(|m| &m.send_failures, 2) >= 1).await;

        let listener2 = TcpListener::bind(address2).await.expect("the released port is free");
        // Node 2 dials node 1 as it starts; its hello is what ends node 1's backoff.
        let mut node2 = Node::start(config(2, &[(1, address1)]), listener2, 16);
        assert_eq!(node2.receive().await, heartbeat(1, 2, 1), "node 1 redialled at once");
        node1.transport.shutdown().await;
        node2.transport.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_restarted_peer_is_reached_again() {
    bounded(async {
        let (listener1, address1) = listen().await;
        let (listener2, address2) = listen().await;
        let node1 = Node::start(config(1, &[(2, address2)]), listener1, 16);
        let mut node2 = Node::start(config(2, &[(1, address1)]), listener2, 16);
        node1.transport.send(heartbeat(1, 2, 1));
        assert_eq!(node2.receive().await, heartbeat(1, 2, 1));

        node2.transport.shutdown().await;
        eventually("node 1 saw the connection go", || !node1.transport.connected(NodeId(2))).await;
        let listener2 = TcpListener::bind(address2).await.expect("the released port is free");
        let mut node2 = Node::start(config(2, &[(1, address1)]), listener2, 16);
        node1.transport.send(heartbeat(1, 2, 2));
        assert_eq!(node2.receive().await, heartbeat(1, 2, 2));
        node1.transport.shutdown().await;
        node2.transport.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_killed_connection_is_noticed_and_reopened_with_a_new_hello() {
    bounded(async {
        let (listener1, _) = listen().await;
        let (fake2, address2) = listen().await;
        let node1 = Node::start(config(1, &[(2, address2)]), listener1, 16);

        let (mut first, _) = fake2.accept().await.expect("node 1 dials node 2");
        let (opening, _) = read_frame(&mut first, 1 << 20).await.expect("a frame").expect("open");
        assert_eq!(opening, hello(1, 2));
        eventually("node 1 is connected", || node1.transport.connected(NodeId(2))).await;
        drop(first);
        // Node 1 sends nothing, yet notices the close (it watches the read side).
        eventually("node 1 noticed the close", || !node1.transport.connected(NodeId(2))).await;

        // Messages queued meanwhile go out on the new connection, all in one batch.
        for term in 3..=5 {
            node1.transport.send(heartbeat(1, 2, term));
        }
        let (mut second, _) = fake2.accept().await.expect("node 1 dials node 2 again");
        let (opening, _) = read_frame(&mut second, 1 << 20).await.expect("a frame").expect("open");
        assert_eq!(opening, hello(1, 2));
        let (received, _) = read_frame(&mut second, 1 << 20).await.expect("a frame").expect("open");
        let expected =
            (3..=5).map(|term| skiff_server::transport::wire::encode(heartbeat(1, 2, term)));
        assert_eq!(received, batch(1, 2, expected.collect()));
        node1.transport.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_dead_peers_queue_stays_bounded_and_drops_are_counted() {
    bounded(async {
        let (listener1, _) = listen().await;
        let address2 = dead_address().await;
        let address3 = dead_address().await;
        let mut config1 = config(1, &[(2, address2), (3, address3)]);
        config1.queue_messages = 1000;
        config1.queue_bytes = 64 * 1024;
        let node1 = Node::start(config1, listener1, 16);

        // Bounded by messages: 100,000 small heartbeats, 1,000 kept.
        for term in 0..100_000 {
            node1.transport.send(heartbeat(1, 2, term));
        }
        let (messages, bytes) = node1.transport.queued(NodeId(2));
        assert_eq!(messages, 1000);
        assert!(bytes <= 64 * 1024, "{bytes} bytes queued");
        assert_eq!(node1.count(|m| &m.dropped_messages, 2), 99_000);

        // Bounded by bytes: 1,000 appends of 1 KiB each, about 60 kept.
        let command = Bytes::from(vec![7u8; 1024]);
        for index in 1..=1000 {
            let entry = Entry {
                index: Index(index),
                term: Term(1),
                payload: Payload::Command(command.clone()),
            };
            node1.transport.send(Message {
                from: NodeId(1),
                to: NodeId(3),
                term: Term(1),
                body: Body::Append {
                    prev_index: Index(index - 1),
                    prev_term: Term(1),
                    entries: vec![entry],
                    commit: Index(0),
                },
            });
        }
        let (messages, bytes) = node1.transport.queued(NodeId(3));
        assert!(bytes <= 64 * 1024, "{bytes} bytes queued");
        assert!((50..64).contains(&messages), "{messages} messages queued");
        assert_eq!(node1.count(|m| &m.dropped_messages, 3), 1000 - messages as u64);
        node1.transport.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn batches_respect_the_maximum_frame_size_and_oversize_messages_are_dropped() {
    bounded(async {
        let (listener1, address1) = listen().await;
        let (listener2, address2) = listen().await;
        let mut config1 = config(1, &[(2, address2)]);
        let mut config2 = config(2, &[(1, address1)]);
        config1.max_frame_bytes = 4096;
        config2.max_frame_bytes = 4096;
        let node1 = Node::start(config1, listener1, 16);
        let mut node2 = Node::start(config2, listener2, 16);
        let append = |index: u64, bytes: usize| Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(1),
            body: Body::Append {
                prev_index: Index(index - 1),
                prev_term: Term(1),
                entries: vec![Entry {
                    index: Index(index),
                    term: Term(1),
                    payload: Payload::Command(Bytes::from(vec![1u8; bytes])),
                }],
                commit: Index(0),
            },
        };
        node1.transport.send(append(1, 8192));
        assert_eq!(node1.count(|m| &m.dropped_messages, 2), 1);
        assert_eq!(node1.transport.queued(NodeId(2)), (0, 0));
        // 200 appends of 500 bytes: 100 kB, at most 4 kB a frame. Node 2 would reject a larger
        // frame and close the connection, losing messages; all of them arrive, in order.
        for index in 2..=201 {
            node1.transport.send(append(index, 500));
        }
        for index in 2..=201 {
            assert_eq!(node2.receive().await, append(index, 500));
        }
        assert_eq!(
            node2.metrics.rejected_frames.get_or_create(&PeerLabel::new(NodeId(1))).get(),
            0
        );
        assert_eq!(node1.count(|m| &m.dropped_messages, 2), 1);
        node1.transport.shutdown().await;
        node2.transport.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_slow_receiver_pushes_back_without_losing_or_reordering() {
    bounded(async {
        let (listener1, address1) = listen().await;
        let (listener2, address2) = listen().await;
        let node1 = Node::start(config(1, &[(2, address2)]), listener1, 16);
        // Node 2's runtime takes one message at a time.
        let mut node2 = Node::start(config(2, &[(1, address1)]), listener2, 1);
        for term in 1..=3000 {
            node1.transport.send(heartbeat(1, 2, term));
        }
        for term in 1..=3000 {
            assert_eq!(node2.receive().await, heartbeat(1, 2, term));
        }
        assert_eq!(node1.count(|m| &m.dropped_messages, 2), 0);
        node1.transport.shutdown().await;
        node2.transport.shutdown().await;
    })
    .await;
}

/// Opens a raw connection to `address`, writes `bytes`, and waits for the transport to close it.
async fn rejected(address: SocketAddr, bytes: &[u8]) {
    let mut stream = TcpStream::connect(address).await.expect("the transport accepts");
    // The transport may close before reading everything; a failed write is fine then.
    let _ = stream.write_all(bytes).await;
    closed_by_peer(&mut stream).await;
}

/// The bytes of `frames`, one after another.
fn frames(frames: &[proto::Frame]) -> Vec<u8> {
    frames.iter().flat_map(encode_frame).collect()
}

#[tokio::test]
async fn bad_frames_are_rejected_and_their_connection_closed() {
    bounded(async {
        let (mut node1, node2) = pair().await;
        let address1 = node2.transport.config().peers[&NodeId(1)];
        let rejections = |node: &Node, peer: &str| {
            node.metrics.rejected_frames.get_or_create(&PeerLabel { peer: peer.to_owned() }).get()
        };

        let mut other_cluster = hello(2, 1);
        other_cluster.cluster_id = CLUSTER + 1;
        rejected(address1, &frames(&[other_cluster])).await;
        assert_eq!(rejections(&node1, "2"), 1);

        let mut newer = hello(2, 1);
        newer.version = PROTOCOL_VERSION + 1;
        rejected(address1, &frames(&[newer])).await;
        assert_eq!(rejections(&node1, "2"), 2);

        rejected(address1, &frames(&[hello(2, 3)])).await;
        assert_eq!(rejections(&node1, "2"), 3);

        rejected(address1, &frames(&[hello(9, 1)])).await;
        assert_eq!(rejections(&node1, "unknown"), 1);

        // Garbage inside a plausible length prefix, then garbage as the prefix itself (an HTTP
        // request reads as a length of about 1.1 GiB), then the largest length there is.
        rejected(address1, &[0, 0, 0, 6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).await;
        rejected(address1, b"GET / HTTP/1.1\r\nHost: skiff\r\n\r\n").await;
        rejected(address1, &[0xff, 0xff, 0xff, 0xff]).await;
        // A first frame of 1 MiB is within the maximum frame size but cannot be a hello: the
        // connection is closed without waiting for (or allocating) the megabyte.
        rejected(address1, &[0x00, 0x10, 0x00, 0x00]).await;
        assert_eq!(rejections(&node1, "unknown"), 5);

        // A batch before the hello; a second hello; a batch with a message without a body,
        // after a valid one that must not be delivered either (frames are rejected whole).
        let valid = skiff_server::transport::wire::encode(heartbeat(2, 1, 999));
        let invalid = proto::Message { term: 999, body: None };
        rejected(address1, &frames(&[batch(2, 1, vec![valid.clone()])])).await;
        rejected(address1, &frames(&[hello(2, 1), hello(2, 1)])).await;
        rejected(address1, &frames(&[hello(2, 1), batch(2, 1, vec![valid, invalid])])).await;
        // A sender that changes in the middle of a connection.
        rejected(address1, &frames(&[hello(2, 1), batch(3, 1, vec![])])).await;
        assert_eq!(rejections(&node1, "2"), 7);

        // The transport is still healthy for the good peer, whose own connection the forged
        // hellos replaced: node 2 notices, reconnects, and gets through.
        let mut term = 1;
        let delivered = loop {
            node2.transport.send(heartbeat(2, 1, term));
            match tokio::time::timeout(Duration::from_millis(50), node1.inbound.recv()).await {
                Ok(Some(message)) => break message,
                Ok(None) => panic!("node 1's transport stopped"),
                Err(_) => term += 1,
            }
        };
        assert_ne!(delivered.term, Term(999), "a message of a rejected frame was delivered");
        assert_eq!(delivered.from, NodeId(2));
        node1.transport.shutdown().await;
        node2.transport.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_closes_every_connection() {
    bounded(async {
        let (node1, node2) = pair().await;
        let address1 = node2.transport.config().peers[&NodeId(1)];
        eventually("both directions are up", || {
            node1.transport.connected(NodeId(2)) && node2.transport.connected(NodeId(1))
        })
        .await;
        node1.transport.shutdown().await;
        // Node 1's reader closed node 2's connection, and its listener is gone.
        eventually("node 2 saw its connection close", || !node2.transport.connected(NodeId(1)))
            .await;
        assert!(TcpStream::connect(address1).await.is_err(), "node 1 still listens");
        let gauge = node1.metrics.connected.get_or_create(&PeerLabel::new(NodeId(2))).get();
        assert_eq!(gauge, 0);
        node2.transport.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn metrics_are_exposed_under_their_documented_names() {
    bounded(async {
        let (listener1, _) = listen().await;
        let node1 = Node::start(config(1, &[(2, dead_address().await)]), listener1, 16);
        let mut registry = Registry::default();
        node1.metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        for series in [
            "skiff_network_peer_sent_bytes_total{peer=\"2\"} 0",
            "skiff_network_peer_received_bytes_total{peer=\"2\"} 0",
            "skiff_network_peer_sent_messages_total{peer=\"2\"} 0",
            "skiff_network_peer_send_failures_total{peer=\"2\"}",
            "skiff_network_peer_dropped_messages_total{peer=\"2\"} 0",
            "skiff_network_peer_connected{peer=\"2\"} 0",
            "skiff_network_peer_rejected_frames_total{peer=\"2\"} 0",
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
        node1.transport.shutdown().await;
    })
    .await;
}

/// Asserts that nothing arrives on `node`'s inbound channel for a while (the other end keeps
/// trying meanwhile).
async fn nothing_arrives(node: &mut Node, what: &str) {
    let arrived = tokio::time::timeout(Duration::from_millis(500), node.inbound.recv()).await;
    assert!(arrived.is_err(), "{what}, yet {arrived:?} arrived");
}

#[tokio::test]
async fn a_cut_link_loses_everything_both_ways_until_healed() {
    bounded(async {
        let (listener1, address1) = listen().await;
        let (listener2, address2) = listen().await;
        let mut node1 = Node::start(config(1, &[(2, address2)]), listener1, 1024);
        let mut node2 = Node::start(config(2, &[(1, address1)]), listener2, 1024);
        node1.transport.send(heartbeat(1, 2, 1));
        assert_eq!(node2.receive().await, heartbeat(1, 2, 1));
        node2.transport.send(heartbeat(2, 1, 1));
        assert_eq!(node1.receive().await, heartbeat(2, 1, 1));

        // Only node 1 cuts: that alone must part the two nodes both ways.
        assert_eq!(node1.transport.cut(NodeId(2)), Ok(true));
        assert_eq!(node1.transport.cut(NodeId(2)), Ok(false), "already cut");
        assert_eq!(node1.transport.cut(NodeId(7)), Err(UnknownPeer(NodeId(7))));
        assert_eq!(node1.transport.cut_links().into_iter().collect::<Vec<_>>(), [NodeId(2)]);
        assert!(node2.transport.cut_links().is_empty());
        eventually("node 1's connection to node 2 closed", || {
            !node1.transport.connected(NodeId(2))
        })
        .await;
        let dropped = node1.count(|m| &m.dropped_messages, 2);
        node1.transport.send(heartbeat(1, 2, 2));
        assert_eq!(node1.count(|m| &m.dropped_messages, 2), dropped + 1, "lost, and counted");
        for term in 2..5 {
            node2.transport.send(heartbeat(2, 1, term));
        }
        nothing_arrives(&mut node1, "node 1 cut its link to node 2").await;
        nothing_arrives(&mut node2, "node 1 cut its link to node 2").await;
        // A connection that says it is node 2 is closed right after its hello.
        let mut stream = TcpStream::connect(address1).await.expect("node 1 accepts");
        stream.write_all(&frames(&[hello(2, 1)])).await.expect("the hello is written");
        closed_by_peer(&mut stream).await;

        // Healed: both directions work again, without a restart.
        assert_eq!(node1.transport.heal(NodeId(2)), Ok(true));
        assert_eq!(node1.transport.heal(NodeId(2)), Ok(false), "already healed");
        assert!(node1.transport.cut_links().is_empty());
        node1.transport.send(heartbeat(1, 2, 9));
        assert_eq!(node2.receive().await, heartbeat(1, 2, 9));
        // Node 2's writer redials after its backoff. Of what it sent across the cut, what its
        // failed connections did not take may still be queued: that arrives first, in order.
        node2.transport.send(heartbeat(2, 1, 9));
        let mut received = node1.receive().await;
        while received != heartbeat(2, 1, 9) {
            let next = node1.receive().await;
            assert!(received.term < next.term, "in order: {received}, then {next}");
            received = next;
        }
        node1.transport.shutdown().await;
        node2.transport.shutdown().await;
    })
    .await;
}
