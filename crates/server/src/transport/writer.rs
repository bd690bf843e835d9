//! The writer task of one peer: connect, say hello, send batches, and reconnect on failure.
//!
//! The task owns the only outgoing connection to its peer. It loops forever (until the
//! transport aborts it at shutdown): dial with a timeout, set TCP_NODELAY (a batch is one
//! write; Nagle's delay would only add latency to it), write the `Hello`, then take everything
//! queued as one `Batch` frame per write. When the queue is empty it waits for a push while
//! watching the connection's read side: the peer never writes on this connection, so a read
//! that returns is the peer closing it (or a protocol violation), noticed at once rather than
//! at the next write. On any failure the connection is dropped, the messages of the failed
//! write are counted as dropped (Raft retransmits), and the task sleeps a jittered exponential
//! backoff before dialling again. The backoff starts over only after a connection that lasted
//! at least `backoff_max`, so a peer that accepts and at once closes (say, because it belongs
//! to another cluster) is redialled slowly, not every `backoff_min`; or when the peer itself
//! connects to this node with a valid `Hello`, which ends the wait at once: a restarted peer
//! hears from this node within moments of coming up, not after the backoff its downtime grew
//! (a leader's heartbeats held back that long let the peer's election timer run out).
//!
//! While the link is cut (fault injection, [`super::Transport::cut`]) the writer holds no
//! connection: it closes the one it has, discards what is queued (counted as dropped) and
//! waits for the heal, then dials at once.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

use super::backoff::Backoff;
use super::frame::{ENVELOPE_BYTES, LENGTH_PREFIX_BYTES, PROTOCOL_VERSION, encode_frame};
use super::{Peer, Shared, proto};

/// Runs the writer of `peer` until the task is aborted or the peer removed.
pub(crate) async fn run(shared: Arc<Shared>, peer: Arc<Peer>) {
    let mut removed = peer.removed.subscribe();
    tokio::select! {
        () = serve(shared, peer.clone()) => {}
        // The sender lives in `peer`, which this task holds: the wait ends only on a removal.
        _ = removed.wait_for(|removed| *removed) => {}
    }
}

/// Keeps a connection to `peer` and sends on it, forever.
async fn serve(shared: Arc<Shared>, peer: Arc<Peer>) {
    let config = &shared.config;
    let mut backoff = Backoff::new(config.backoff_min, config.backoff_max);
    let mut cut = peer.cut.subscribe();
    loop {
        if *cut.borrow_and_update() {
            let discarded = peer.queue.take_batch(usize::MAX).len() as u64;
            shared.metrics.dropped_messages.get_or_create(&peer.label).inc_by(discarded);
            // The sender lives in `peer`, which this task holds: the wait ends only on a heal.
            let _ = cut.wait_for(|cut| !*cut).await;
            backoff.reset();
            continue;
        }
        match connect(&shared, &peer).await {
            Ok(stream) => {
                let since = Instant::now();
                peer.set_connected(true, &shared.metrics);
                tracing::info!(peer = %peer.id, address = %peer.address, "connected to peer");
                let reason = send_until_failure(&shared, &peer, stream, &mut cut).await;
                peer.set_connected(false, &shared.metrics);
                if peer.is_cut() {
                    tracing::info!(peer = %peer.id, "connection to peer closed: the link is cut");
                    continue;
                }
                tracing::warn!(
                    peer = %peer.id, address = %peer.address, %reason,
                    "connection to peer lost; reconnecting"
                );
                if since.elapsed() >= config.backoff_max {
                    backoff.reset();
                }
            }
            Err(error) => {
                shared.metrics.send_failures.get_or_create(&peer.label).inc();
                tracing::debug!(
                    peer = %peer.id, address = %peer.address, %error,
                    "cannot connect to peer"
                );
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.next_delay()) => {}
            () = peer.heard_from.notified() => backoff.reset(),
        }
    }
}

/// Dials `peer` and writes the `Hello` that opens every connection.
async fn connect(shared: &Shared, peer: &Peer) -> io::Result<TcpStream> {
    let config = &shared.config;
    let mut stream = timeout(config.connect_timeout, TcpStream::connect(peer.address))
        .await
        .map_err(|_| timed_out("connect", config.connect_timeout))??;
    stream.set_nodelay(true)?;
    let hello = proto::frame::Kind::Hello(proto::Hello { client_addr: config.client_addr.clone() });
    let bytes = encode_frame(&envelope(shared, peer, hello));
    write(&mut stream, &bytes, config.write_timeout).await?;
    shared.metrics.sent_bytes.get_or_create(&peer.label).inc_by(bytes.len() as u64);
    Ok(stream)
}

/// Sends batches on `stream` until it fails or the link is cut, and says why it stopped.
async fn send_until_failure(
    shared: &Shared,
    peer: &Peer,
    mut stream: TcpStream,
    cut: &mut watch::Receiver<bool>,
) -> io::Error {
    let config = &shared.config;
    let budget = config.max_frame_bytes - ENVELOPE_BYTES;
    let (mut read_half, mut write_half) = stream.split();
    let mut probe = [0u8; 1];
    let link_cut = || io::Error::new(io::ErrorKind::ConnectionAborted, "the link was cut");
    loop {
        if *cut.borrow() {
            return link_cut();
        }
        let batch = peer.queue.take_batch(budget);
        if batch.is_empty() {
            tokio::select! {
                () = peer.queue.pushed() => continue,
                _ = cut.wait_for(|cut| *cut) => return link_cut(),
                read = read_half.read(&mut probe) => return match read {
                    Ok(0) => io::Error::new(io::ErrorKind::UnexpectedEof, "the peer closed it"),
                    Ok(_) => io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the peer wrote on a connection that only carries frames to it",
                    ),
                    Err(error) => error,
                },
            }
        }
        let count = batch.len() as u64;
        let kind = proto::frame::Kind::Batch(proto::Batch { messages: batch });
        let bytes = encode_frame(&envelope(shared, peer, kind));
        assert!(
            bytes.len() <= LENGTH_PREFIX_BYTES + config.max_frame_bytes,
            "a batch frame of {} bytes exceeds the maximum of {}",
            bytes.len(),
            config.max_frame_bytes
        );
        let metrics = &shared.metrics;
        if let Err(error) = write(&mut write_half, &bytes, config.write_timeout).await {
            metrics.send_failures.get_or_create(&peer.label).inc();
            metrics.dropped_messages.get_or_create(&peer.label).inc_by(count);
            return error;
        }
        metrics.sent_bytes.get_or_create(&peer.label).inc_by(bytes.len() as u64);
        metrics.sent_messages.get_or_create(&peer.label).inc_by(count);
    }
}

/// A frame from this node to `peer` carrying `kind`.
fn envelope(shared: &Shared, peer: &Peer, kind: proto::frame::Kind) -> proto::Frame {
    proto::Frame {
        version: PROTOCOL_VERSION,
        cluster_id: shared.config.cluster_id,
        from: shared.config.id.0,
        to: peer.id.0,
        kind: Some(kind),
    }
}

/// Writes all of `bytes`, failing if that takes longer than `limit`: a peer that stopped
/// reading (a hung process, a host gone without a reset) must not hold the connection forever.
async fn write<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
    limit: Duration,
) -> io::Result<()> {
    timeout(limit, writer.write_all(bytes)).await.map_err(|_| timed_out("write", limit))?
}

/// The error of an operation that took longer than `limit`.
fn timed_out(operation: &str, limit: Duration) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{operation} timed out after {limit:?}"))
}
