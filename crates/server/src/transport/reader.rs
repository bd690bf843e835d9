//! Accepting peer connections and reading them: validation, rejection, delivery.
//!
//! One task accepts; each accepted connection gets a reader task, kept in a `JoinSet` so that
//! shutdown can stop them all. A reader expects a `Hello` within [`HELLO_TIMEOUT`], then
//! batches, and checks every frame before anything in it is delivered:
//!
//! 1. the length prefix is within the maximum frame size ([`MAX_HELLO_BYTES`] for the
//!    `Hello`), and the bytes decode as a `Frame`;
//! 2. `version` is [`PROTOCOL_VERSION`];
//! 3. `cluster_id` is this node's cluster;
//! 4. `to` is this node;
//! 5. `from` is a configured peer, the same one on every frame of the connection;
//! 6. the first frame is a `Hello` and every later one a `Batch`;
//! 7. every message of the batch decodes ([`wire::decode`]).
//!
//! A frame failing any check is rejected whole: logged with `tracing::warn!` naming the reason
//! and the remote address, counted in `skiff_network_peer_rejected_frames_total`, and the
//! connection closed (after a bad frame, nothing later on the stream can be trusted to be in
//! step). Nothing from the network can panic the node. Valid messages go to the inbound channel
//! with `send().await`: while the runtime is behind, the reader stops reading, the socket's
//! buffers fill, and TCP's flow control pushes back on the peer's writer.
//!
//! While the link to a peer is cut (fault injection, [`super::Transport::cut`]), its
//! connections are closed right after their `Hello` and its open one at once, and nothing it
//! sends is delivered.
//!
//! A new connection from a peer supersedes the older one: its reader is told to stop. A peer
//! reconnects only when it believes its old connection dead, and this keeps a connection whose
//! end vanished without a FIN (a host that lost power) from lingering with its task.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use skiff_raft::{Message, NodeId};
use thiserror::Error;
use tokio::io::{AsyncRead, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::frame::{PROTOCOL_VERSION, ReadError, read_frame};
use super::metrics::PeerLabel;
use super::wire::{self, WireError};
use super::{Peer, Shared, proto};

/// How long an accepted connection may stay silent before its `Hello`: a connection that never
/// says who it is would otherwise hold a task and a socket forever.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest `Hello` frame accepted. A `Hello` is a few dozen bytes; holding a connection
/// that has not said who it is to this limit, rather than the maximum frame size, means an
/// unidentified connection can make the node allocate kilobytes, not megabytes.
pub const MAX_HELLO_BYTES: usize = 4096;

/// How long to pause after a failed `accept` (say, out of file descriptors) before the next,
/// so that a persistent failure does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The read buffer of a connection: large enough that small frames take one system call for
/// several, small enough not to matter per connection.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Why a received frame was rejected.
#[derive(Debug, Error)]
pub(crate) enum Rejection {
    /// The frame is oversize or not protobuf.
    #[error("{0}")]
    Unreadable(ReadError),
    /// The frame speaks another protocol version.
    #[error("protocol version {found}, but this node speaks {PROTOCOL_VERSION}")]
    Version {
        /// The frame's version.
        found: u32,
    },
    /// The frame comes from another cluster.
    #[error("cluster id {found}, but this node is in cluster {expected}")]
    Cluster {
        /// The frame's cluster id.
        found: u64,
        /// This node's cluster id.
        expected: u64,
    },
    /// The frame is addressed to another node.
    #[error("frame for node {to}, but this is node {this}")]
    Recipient {
        /// The frame's receiver.
        to: u64,
        /// This node.
        this: NodeId,
    },
    /// The frame's sender is not a configured peer.
    #[error("sender {from} is not a peer of this node")]
    Sender {
        /// The frame's sender.
        from: u64,
    },
    /// The frame's sender is not the one that opened the connection.
    #[error("sender {from} on a connection opened by {hello}")]
    SenderChanged {
        /// The frame's sender.
        from: u64,
        /// The sender named by the connection's `Hello`.
        hello: NodeId,
    },
    /// The connection's first frame is not a `Hello`.
    #[error("the first frame is not a hello")]
    ExpectedHello,
    /// A frame after the first is not a `Batch`.
    #[error("a frame after the hello is not a batch")]
    ExpectedBatch,
    /// A message of the batch is invalid.
    #[error("invalid message: {0}")]
    Message(WireError),
}

/// How a connection ended.
enum Ending {
    /// The peer closed it between frames.
    Closed,
    /// A newer connection from the same peer replaced it.
    Superseded,
    /// The runtime dropped the inbound channel: nobody listens any more.
    InboundClosed,
    /// The link to the peer is cut (fault injection): the connection is refused or closed.
    Cut,
    /// The connection failed, ended inside a frame, or said nothing in time.
    Failed(io::Error),
    /// A frame was rejected; `peer` is the sender if it was identified.
    Rejected {
        /// The label to count the rejection under.
        peer: PeerLabel,
        /// Why.
        rejection: Rejection,
    },
}

/// Accepts peer connections on `listener` and serves each, until `shutdown` changes (or its
/// sender is dropped); then stops every reader and returns.
pub(crate) async fn accept(
    shared: Arc<Shared>,
    listener: TcpListener,
    inbound: mpsc::Sender<Message>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(ended) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = ended && error.is_panic() {
                    tracing::error!("a peer connection's reader panicked (a bug)");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    connections.spawn(serve(shared.clone(), stream, remote, inbound.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a peer connection failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
        }
    }
    connections.shutdown().await;
}

/// Reads one connection until it ends, and logs and counts how it did.
async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    remote: SocketAddr,
    inbound: mpsc::Sender<Message>,
) {
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, stream);
    match receive(&shared, &mut reader, remote, &inbound).await {
        Ending::Closed => tracing::debug!(%remote, "peer closed its connection"),
        Ending::Superseded => tracing::debug!(%remote, "peer connection replaced by a newer one"),
        Ending::InboundClosed => tracing::debug!(%remote, "inbound channel closed"),
        Ending::Cut => tracing::debug!(%remote, "peer connection closed: the link is cut"),
        Ending::Failed(error) => tracing::debug!(%remote, %error, "peer connection failed"),
        Ending::Rejected { peer, rejection } => {
            tracing::warn!(
                %remote, peer = %peer.peer, reason = %rejection,
                "rejected a frame from a peer connection; closing it"
            );
            shared.metrics.rejected_frames.get_or_create(&peer).inc();
        }
    }
}

/// Reads the `Hello`, then batches, delivering their messages to `inbound`.
async fn receive<R: AsyncRead + Unpin>(
    shared: &Shared,
    reader: &mut R,
    remote: SocketAddr,
    inbound: &mpsc::Sender<Message>,
) -> Ending {
    let max_frame_bytes = shared.config.max_frame_bytes;
    let unknown = PeerLabel::unknown();
    let (frame, size) =
        match tokio::time::timeout(HELLO_TIMEOUT, read_frame(reader, MAX_HELLO_BYTES)).await {
            Err(_) => {
                let message = format!("no hello within {HELLO_TIMEOUT:?}");
                return Ending::Failed(io::Error::new(io::ErrorKind::TimedOut, message));
            }
            Ok(Ok(None)) => return Ending::Closed,
            Ok(Ok(Some(read))) => read,
            Ok(Err(error)) => return unreadable(error, unknown),
        };
    // Before the hello is accepted, a rejection is counted under the sender the frame names if
    // that is a configured peer: a bounded label set, and the likely culprit.
    let claimed = shared.peer(NodeId(frame.from)).map_or(unknown, |peer| peer.label.clone());
    let peer = match check_envelope(shared, &frame) {
        Ok(peer) => peer,
        Err(rejection) => return Ending::Rejected { peer: claimed, rejection },
    };
    let Some(proto::frame::Kind::Hello(hello)) = frame.kind else {
        return Ending::Rejected { peer: claimed, rejection: Rejection::ExpectedHello };
    };
    // Refused before it supersedes anything: across a cut link no connection gets through.
    let mut cut = peer.cut.subscribe();
    if *cut.borrow_and_update() {
        return Ending::Cut;
    }
    let superseded = peer.accept_hello(hello.client_addr);
    shared.metrics.received_bytes.get_or_create(&peer.label).inc_by(size as u64);
    tracing::info!(peer = %peer.id, %remote, "peer connected");

    loop {
        let read = tokio::select! {
            read = read_frame(reader, max_frame_bytes) => read,
            () = superseded.notified() => return Ending::Superseded,
            _ = cut.wait_for(|cut| *cut) => return Ending::Cut,
        };
        let (frame, size) = match read {
            Ok(None) => return Ending::Closed,
            Ok(Some(read)) => read,
            Err(error) => return unreadable(error, peer.label.clone()),
        };
        let messages = match check_batch(shared, &peer, frame) {
            Ok(messages) => messages,
            Err(rejection) => return Ending::Rejected { peer: peer.label.clone(), rejection },
        };
        if peer.is_cut() {
            // Read just as the link was cut: lost in the partition.
            return Ending::Cut;
        }
        shared.metrics.received_bytes.get_or_create(&peer.label).inc_by(size as u64);
        for message in messages {
            if inbound.send(message).await.is_err() {
                return Ending::InboundClosed;
            }
        }
    }
}

/// The ending for a frame that could not be read.
fn unreadable(error: ReadError, peer: PeerLabel) -> Ending {
    match error {
        ReadError::Io(error) => Ending::Failed(error),
        error @ (ReadError::Oversize { .. } | ReadError::Garbage(_)) => {
            Ending::Rejected { peer, rejection: Rejection::Unreadable(error) }
        }
    }
}

/// Checks version, cluster, receiver and sender of `frame` (checks 2 to 5 of the module
/// documentation), returning the sending peer.
fn check_envelope(shared: &Shared, frame: &proto::Frame) -> Result<Arc<Peer>, Rejection> {
    let config = &shared.config;
    if frame.version != PROTOCOL_VERSION {
        return Err(Rejection::Version { found: frame.version });
    }
    if frame.cluster_id != config.cluster_id {
        return Err(Rejection::Cluster { found: frame.cluster_id, expected: config.cluster_id });
    }
    if frame.to != config.id.0 {
        return Err(Rejection::Recipient { to: frame.to, this: config.id });
    }
    match shared.peer(NodeId(frame.from)) {
        Some(peer) => Ok(peer),
        None => Err(Rejection::Sender { from: frame.from }),
    }
}

/// Checks a frame after the `Hello` from `peer` and decodes its messages, all or none.
fn check_batch(
    shared: &Shared,
    peer: &Peer,
    frame: proto::Frame,
) -> Result<Vec<Message>, Rejection> {
    let sender = check_envelope(shared, &frame)?;
    if sender.id != peer.id {
        return Err(Rejection::SenderChanged { from: frame.from, hello: peer.id });
    }
    let Some(proto::frame::Kind::Batch(batch)) = frame.kind else {
        return Err(Rejection::ExpectedBatch);
    };
    let (from, to) = (peer.id, shared.config.id);
    batch
        .messages
        .into_iter()
        .map(|message| wire::decode(from, to, message).map_err(Rejection::Message))
        .collect()
}
