//! Snapshot bytes: writing the store into a snapshot file, restoring it, and moving a snapshot
//! file from the leader to a follower over HTTP (Raft §7, InstallSnapshot as a pull).
//!
//! The core decides when a follower needs a snapshot and tells it *which* one
//! (`Action::FetchSnapshot { from, meta }`); the bytes never pass through it. The follower's
//! driver fetches the leader's snapshot file from the leader's client address (which the
//! leader advertised in its transport `Hello`), chunk by chunk:
//!
//! ```text
//! GET /v1/internal/snapshot?index=I&offset=O
//! 200, the file's bytes from O (at most 1 MiB), with
//!     skiff-snapshot-index, skiff-snapshot-term   what the file covers
//!     skiff-snapshot-length                       the whole file's length
//!     skiff-snapshot-crc32c                       the crc32c of the snapshot's data (header)
//!     skiff-chunk-crc32c                          the crc32c of this chunk
//! 404 snapshot_not_found                          no such snapshot (replaced, and no
//!                                                 transfer of it read a chunk for a minute)
//! ```
//!
//! Why a pull over HTTP rather than messages on the peer transport: the transport's frames are
//! small and batched for latency, and a multi-gigabyte transfer on them would queue heartbeats
//! behind it. A separate request per chunk also makes the transfer **resumable** for free: the
//! follower asks for the offset it has durably received, so a lost chunk, a broken connection
//! or a timeout costs one chunk, not the transfer. Memory is bounded on both sides: the leader
//! reads one chunk of its file per request, and the follower streams each chunk into a
//! temporary file (`skiff_wal::SnapshotReceiver`), never holding more than one.
//!
//! ## Checksums, end to end
//! Each chunk carries its own crc32c, checked on arrival, so a damaged chunk is asked for again
//! instead of failing the whole transfer at the end. The file itself is self-checking: its
//! header has its own checksum, and the checksum of the data as the leader's store serialized
//! it. Once the last chunk is in, the follower reads the whole file back from its disk and
//! checks both, and that the header describes exactly the snapshot the core asked for (index,
//! term, voters); then it restores a store from it, which checks the store format's own
//! trailer checksum. A file that changed on the leader mid-transfer shows up as a different
//! length or data checksum in a chunk's headers and ends the fetch.
//!
//! ## A transfer outlives its file's replacement
//! The leader keeps the file it serves open between chunks (`SnapshotFiles::read_chunk`: two
//! files at most, each closed after a minute without a chunk read), so a newer snapshot taken
//! meanwhile removes the old file's name but not its bytes, and the transfer goes on. Without
//! that, a leader taking snapshots more often than a follower can fetch one would never let
//! it catch up.
//!
//! ## Failure
//! Whatever goes wrong — no address for the leader, the snapshot gone (404), five failed
//! chunks in a row, a checksum that does not match, a local disk error — the fetch ends with
//! `Node::snapshot_failed`, the temporary file is removed, and the leader offers its latest
//! snapshot again after an election timeout. The core keeps no timeout; each chunk request has
//! one ([`CHUNK_TIMEOUT`]), which bounds a fetch that makes no progress.
//!
//! ## Holding a transfer mid-way (fault injection)
//! On a node started with `--allow-fault-injection`, `POST /v1/faults/snapshot-chunks/hold`
//! makes every chunk request past the first wait until `.../release` ([`ChunkHold`]): a
//! follower fetching from this node then has the first chunk on its disk and waits for the
//! second, so a test can kill it, or this node, at a known point of a transfer instead of
//! racing one. `GET /v1/faults/snapshot-chunks` answers `{"held": true|false}`. Without the
//! flag these routes answer `403` like every `/v1/faults` route (`crate::faults`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use skiff_kv::Store;
use skiff_raft::{Index, SnapshotMeta};
use skiff_wal::{SnapshotFiles, SnapshotReader, StagedSnapshot};
use tokio::sync::watch;

/// The path of the chunk endpoint.
pub const SNAPSHOT_CHUNK_PATH: &str = "/v1/internal/snapshot";
/// The most bytes one chunk carries (1 MiB).
pub const MAX_CHUNK_BYTES: usize = 1 << 20;
/// The header naming the index of the snapshot a chunk belongs to.
pub const INDEX_HEADER: &str = "skiff-snapshot-index";
/// The header naming its term.
pub const TERM_HEADER: &str = "skiff-snapshot-term";
/// The header giving the whole file's length.
pub const LENGTH_HEADER: &str = "skiff-snapshot-length";
/// The header giving the crc32c of the snapshot's data, as its file's header records it.
pub const DATA_CRC_HEADER: &str = "skiff-snapshot-crc32c";
/// The header giving the crc32c of the chunk's bytes.
pub const CHUNK_CRC_HEADER: &str = "skiff-chunk-crc32c";

/// How long one chunk request may take, connection included.
pub const CHUNK_TIMEOUT: Duration = Duration::from_secs(10);
/// Failed chunk requests in a row after which a fetch gives up.
const MAX_FAILURES: u32 = 5;
/// The wait after the first failed chunk; it grows linearly with each further failure.
const RETRY_DELAY: Duration = Duration::from_millis(100);

/// The HTTP client a follower fetches chunks with (keep-alive: one connection per transfer).
pub type FetchClient = Client<HttpConnector, Empty<Bytes>>;

/// A client for fetching snapshot chunks.
pub fn fetch_client() -> FetchClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Writes `store` as the snapshot `meta` into a staged snapshot file (blocking: call it off
/// the async runtime). The store must be exactly at the snapshot's index.
pub fn write_local(
    files: &SnapshotFiles,
    meta: SnapshotMeta,
    store: &Store,
) -> Result<StagedSnapshot, String> {
    assert_eq!(store.applied(), meta.index.0, "a snapshot of the store at its applied index");
    let index = meta.index;
    let mut writer =
        files.writer(meta).map_err(|error| format!("cannot start snapshot {index}: {error}"))?;
    store
        .write_snapshot(&mut writer)
        .map_err(|error| format!("cannot write snapshot {index}: {error}"))?;
    writer.finish().map_err(|error| format!("cannot finish snapshot {index}: {error}"))
}

/// Restores a store from the data of the snapshot `meta` (blocking). The store's own applied
/// index must be the snapshot's: a paired check of the two headers.
pub fn restore_store(meta: &SnapshotMeta, reader: &mut SnapshotReader) -> Result<Store, String> {
    let store = Store::restore(reader)
        .map_err(|error| format!("cannot restore the store from snapshot {meta}: {error}"))?;
    if store.applied() != meta.index.0 {
        return Err(format!(
            "snapshot {meta} holds a store at applied index {}, not {}",
            store.applied(),
            meta.index
        ));
    }
    Ok(store)
}

/// Answers a chunk request (the leader's side): up to `max_len` bytes of the file of the
/// snapshot at `index` from `offset`, with the headers of the module documentation, read on a
/// blocking thread. `404 snapshot_not_found` if no such file, `400 bad_request` for an offset
/// past its end, `500 internal` if it cannot be read (its header is damaged, say).
pub async fn serve_chunk(
    files: SnapshotFiles,
    index: Index,
    offset: u64,
    max_len: usize,
) -> Response {
    let error = |status: StatusCode, code: &str, message: String| {
        (status, axum::Json(json!({ "code": code, "message": message }))).into_response()
    };
    let read = tokio::task::spawn_blocking(move || files.read_chunk(index, offset, max_len)).await;
    let chunk = match read {
        Ok(Ok(Some(chunk))) => chunk,
        Ok(Ok(None)) => {
            let message = format!("this node has no snapshot at index {index}");
            return error(StatusCode::NOT_FOUND, "snapshot_not_found", message);
        }
        Ok(Err(failure)) => {
            tracing::error!(error = %failure, %index, "cannot serve a snapshot chunk");
            let message = format!("cannot read snapshot {index}: {failure}");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", message);
        }
        Err(failure) => {
            let message = format!("reading snapshot {index} failed: {failure}");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", message);
        }
    };
    if offset > chunk.file_len {
        let message = format!("offset {offset} is past the file's {} bytes", chunk.file_len);
        return error(StatusCode::BAD_REQUEST, "bad_request", message);
    }
    let headers = [
        (INDEX_HEADER, HeaderValue::from(chunk.meta.index.0)),
        (TERM_HEADER, HeaderValue::from(chunk.meta.term.0)),
        (LENGTH_HEADER, HeaderValue::from(chunk.file_len)),
        (DATA_CRC_HEADER, HeaderValue::from(chunk.data_crc)),
        (CHUNK_CRC_HEADER, HeaderValue::from(skiff_wal::checksum(&chunk.bytes))),
        (header::CONTENT_TYPE.as_str(), HeaderValue::from_static("application/octet-stream")),
    ];
    let mut response = Response::new(Body::from(chunk.bytes));
    for (name, value) in headers {
        response.headers_mut().insert(name, value);
    }
    response
}

/// Runs blocking work off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| format!("a snapshot task failed: {error}"))?
}

/// Fetches the snapshot `meta` from the leader's client address `addr` into a staged file,
/// verifies it, and restores a store from it (see the module documentation). Nothing of a
/// failed fetch is kept.
pub async fn fetch(
    client: FetchClient,
    addr: String,
    files: SnapshotFiles,
    meta: SnapshotMeta,
) -> Result<(StagedSnapshot, Store), String> {
    let asked = meta.clone();
    let mut receiver = blocking(move || {
        files.receiver(asked).map_err(|error| format!("cannot start receiving: {error}"))
    })
    .await?;
    // The file's length and data checksum, as the first chunk gave them.
    let mut advertised: Option<(u64, u32)> = None;
    let mut failures = 0;
    loop {
        let offset = receiver.received();
        if advertised.is_some_and(|(file_len, _)| offset >= file_len) {
            break;
        }
        let chunk = match get_chunk(&client, &addr, &meta, offset).await {
            Ok(chunk) => chunk,
            Err(ChunkError::Fatal(reason)) => return Err(reason),
            Err(ChunkError::Retry(reason)) => {
                failures += 1;
                if failures >= MAX_FAILURES {
                    return Err(format!("{failures} chunk requests failed in a row: {reason}"));
                }
                tracing::debug!(%meta, offset, %reason, "retrying a snapshot chunk");
                tokio::time::sleep(RETRY_DELAY * failures).await;
                continue;
            }
        };
        let shape = (chunk.file_len, chunk.data_crc);
        if advertised.is_some_and(|first| first != shape) {
            return Err(format!("snapshot {meta} changed on {addr} during the transfer"));
        }
        advertised = Some(shape);
        if chunk.bytes.is_empty() && offset < chunk.file_len {
            return Err(format!("{addr} sent an empty chunk at {offset} of {}", chunk.file_len));
        }
        failures = 0;
        receiver = blocking(move || {
            receiver
                .write_chunk(offset, &chunk.bytes)
                .map_err(|error| format!("cannot store a chunk: {error}"))?;
            Ok(receiver)
        })
        .await?;
    }
    blocking(move || {
        let staged =
            receiver.finish().map_err(|error| format!("the received snapshot is bad: {error}"))?;
        let mut reader = staged.reader().map_err(|error| error.to_string())?;
        let store = restore_store(staged.meta(), &mut reader)?;
        Ok((staged, store))
    })
    .await
}

/// A chunk as received, its checksum checked.
#[derive(Debug)]
struct Chunk {
    /// The whole file's length.
    file_len: u64,
    /// The crc32c of the snapshot's data.
    data_crc: u32,
    /// The bytes.
    bytes: Bytes,
}

/// Why a chunk request failed.
#[derive(Debug)]
enum ChunkError {
    /// Asking again may work: a timeout, a broken connection, a damaged chunk, a 5xx.
    Retry(String),
    /// Asking again will not help: the snapshot is gone or is another one.
    Fatal(String),
}

/// Asks `addr` for the chunk of snapshot `meta` at `offset`, and checks what comes back.
async fn get_chunk(
    client: &FetchClient,
    addr: &str,
    meta: &SnapshotMeta,
    offset: u64,
) -> Result<Chunk, ChunkError> {
    let uri = format!("http://{addr}{SNAPSHOT_CHUNK_PATH}?index={}&offset={offset}", meta.index);
    let request = Request::get(uri)
        .body(Empty::new())
        .map_err(|error| ChunkError::Fatal(format!("cannot ask {addr}: {error}")))?;
    let exchange = async {
        let response = client.request(request).await.map_err(|error| error.to_string())?;
        let (parts, body) = response.into_parts();
        // Bounded: a peer cannot make us buffer more than a chunk (plus room for the framing).
        let body = Limited::new(body, MAX_CHUNK_BYTES + 1024).collect().await;
        Ok::<_, String>((parts, body.map_err(|error| error.to_string())?.to_bytes()))
    };
    let (parts, bytes) = match tokio::time::timeout(CHUNK_TIMEOUT, exchange).await {
        Err(_) => return Err(ChunkError::Retry(format!("no answer from {addr} in time"))),
        Ok(Err(reason)) => return Err(ChunkError::Retry(format!("{addr}: {reason}"))),
        Ok(Ok(answer)) => answer,
    };
    match parts.status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => {
            return Err(ChunkError::Fatal(format!("{addr} no longer has snapshot {meta}")));
        }
        status if status.is_server_error() => {
            return Err(ChunkError::Retry(format!("{addr} answered {status}")));
        }
        status => return Err(ChunkError::Fatal(format!("{addr} answered {status}"))),
    }
    let header = |name: &str| -> Result<u64, ChunkError> {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| ChunkError::Fatal(format!("{addr} sent no valid {name} header")))
    };
    let (index, term) = (header(INDEX_HEADER)?, header(TERM_HEADER)?);
    if (index, term) != (meta.index.0, meta.term.0) {
        return Err(ChunkError::Fatal(format!(
            "{addr} holds snapshot {index}@{term}, not the {meta} asked for"
        )));
    }
    let file_len = header(LENGTH_HEADER)?;
    let data_crc = u32::try_from(header(DATA_CRC_HEADER)?)
        .map_err(|_| ChunkError::Fatal(format!("{addr} sent a bad {DATA_CRC_HEADER}")))?;
    let chunk_crc = header(CHUNK_CRC_HEADER)?;
    if u64::from(skiff_wal::checksum(&bytes)) != chunk_crc {
        return Err(ChunkError::Retry(format!("the chunk at {offset} failed its checksum")));
    }
    if offset + bytes.len() as u64 > file_len {
        return Err(ChunkError::Fatal(format!("{addr} sent bytes past the end of the file")));
    }
    Ok(Chunk { file_len, data_crc, bytes })
}

/// Whether this node holds the chunks of its snapshot transfers past the first (fault
/// injection; see the module documentation). Cheap to clone: the clones share the switch.
#[derive(Clone, Debug)]
pub struct ChunkHold {
    /// `true` while chunks are held.
    held: Arc<watch::Sender<bool>>,
}

impl Default for ChunkHold {
    fn default() -> ChunkHold {
        ChunkHold { held: Arc::new(watch::channel(false).0) }
    }
}

impl ChunkHold {
    /// Holds (`true`) or releases (`false`) chunks; whether that changed anything.
    pub fn set(&self, held: bool) -> bool {
        self.held.send_if_modified(|current| std::mem::replace(current, held) != held)
    }

    /// Whether chunks are held now.
    pub fn is_held(&self) -> bool {
        *self.held.borrow()
    }

    /// Resolves once chunks are not held.
    async fn released(&self) {
        let mut held = self.held.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = held.wait_for(|held| !*held).await;
    }

    /// The fault-injection routes (`/v1/faults/snapshot-chunks`), to merge into a node's API
    /// only when fault injection is allowed.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/faults/snapshot-chunks", get(chunk_hold_state))
            .route("/v1/faults/snapshot-chunks/{action}", post(chunk_hold_action))
            .with_state(self.clone())
    }
}

/// `GET /v1/faults/snapshot-chunks`.
async fn chunk_hold_state(State(hold): State<ChunkHold>) -> Response {
    axum::Json(json!({ "held": hold.is_held() })).into_response()
}

/// `POST /v1/faults/snapshot-chunks/{hold|release}`.
async fn chunk_hold_action(State(hold): State<ChunkHold>, Path(action): Path<String>) -> Response {
    let changed = match action.as_str() {
        "hold" => hold.set(true),
        "release" => hold.set(false),
        _ => {
            let message = format!("unknown action {action:?}: hold or release");
            let body = json!({ "code": "bad_request", "message": message });
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    };
    tracing::warn!(held = hold.is_held(), "fault injection: snapshot chunks past the first");
    axum::Json(json!({ "held": hold.is_held(), "changed": changed })).into_response()
}

/// A middleware that makes requests for chunks past the first wait while `hold` holds them
/// (the follower's own [`CHUNK_TIMEOUT`] still applies to it).
pub async fn hold_chunks(
    State(hold): State<ChunkHold>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let past_first = request.uri().path() == SNAPSHOT_CHUNK_PATH
        && request.uri().query().is_some_and(|query| {
            query.split('&').any(|pair| pair.starts_with("offset=") && pair != "offset=0")
        });
    if past_first {
        hold.released().await;
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::extract::{Query, State};
    use skiff_kv::{Command, Op};
    use skiff_raft::{NodeId, Term};
    use skiff_wal::{MemFs, Options, Wal};

    use super::*;

    /// A chunk small enough that a test snapshot takes many.
    const SMALL_CHUNK: usize = 4096;

    /// The parameters of a chunk request.
    #[derive(serde::Deserialize)]
    struct Params {
        index: u64,
        offset: u64,
    }

    /// How the test leader misbehaves, by request number.
    #[derive(Clone)]
    struct Leader {
        files: SnapshotFiles,
        requests: Arc<AtomicUsize>,
    }

    /// Serves chunks like a node does, but fails the second request with a 500 and flips a
    /// byte of the fourth chunk (its checksum header still the true bytes').
    async fn faulty_chunk(State(leader): State<Leader>, Query(params): Query<Params>) -> Response {
        let request = leader.requests.fetch_add(1, Ordering::SeqCst);
        if request == 1 {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        let index = Index(params.index);
        let response = serve_chunk(leader.files, index, params.offset, SMALL_CHUNK).await;
        if request != 3 {
            return response;
        }
        let (parts, body) = response.into_parts();
        let mut bytes = body.collect().await.expect("a body").to_bytes().to_vec();
        bytes[10] ^= 0x40;
        Response::from_parts(parts, Body::from(bytes))
    }

    /// A store that applied `count` puts of 100-byte values.
    fn store_with(count: u64) -> Store {
        let mut store = Store::new();
        for index in 1..=count {
            let op = Op::Put {
                key: format!("key-{index}").into(),
                value: vec![index as u8; 100].into(),
            };
            store.apply(index, &Command { session: None, op }.encode());
        }
        store
    }

    /// A log on an in-memory file system, for its snapshot files.
    fn wal(node: u64) -> Wal {
        let fs = MemFs::new(node);
        Wal::open(fs, format!("/node-{node}"), Options::new(NodeId(node), 7)).expect("opens").0
    }

    fn meta(index: u64, term: u64) -> SnapshotMeta {
        SnapshotMeta {
            index: Index(index),
            term: Term(term),
            membership: skiff_raft::Membership::new((1..=3).map(NodeId)),
        }
    }

    /// Starts the faulty leader's chunk endpoint; returns its address.
    async fn serve(leader: Leader) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("bound").to_string();
        let router = Router::new().route(SNAPSHOT_CHUNK_PATH, axum::routing::get(faulty_chunk));
        tokio::spawn(async move { axum::serve(listener, router.with_state(leader)).await });
        addr
    }

    #[tokio::test]
    async fn a_fetch_resumes_past_failed_and_damaged_chunks_and_restores_the_same_store() {
        let mut leader_wal = wal(1);
        let store = store_with(300);
        let staged = write_local(&leader_wal.snapshot_files(), meta(300, 2), &store).expect("ok");
        leader_wal.save_staged_snapshot(staged).expect("saves");
        let requests = Arc::new(AtomicUsize::new(0));
        let leader = Leader { files: leader_wal.snapshot_files(), requests: requests.clone() };
        let addr = serve(leader).await;

        let follower = wal(2).snapshot_files();
        let fetched = fetch(fetch_client(), addr.clone(), follower.clone(), meta(300, 2)).await;
        let (staged, restored) = fetched.expect("the fetch gets past both faults");
        assert_eq!(restored, store, "the very store the leader wrote");
        assert_eq!(staged.meta(), &meta(300, 2));
        let chunks = staged.file_len().div_ceil(SMALL_CHUNK as u64) as usize;
        assert!(chunks > 5, "many chunks: {chunks}");
        assert_eq!(requests.load(Ordering::SeqCst), chunks + 2, "each fault cost one request");

        // Another term at that index, or an index the leader has no snapshot at: given up.
        let other = fetch(fetch_client(), addr.clone(), follower.clone(), meta(300, 3)).await;
        assert!(other.expect_err("another snapshot").contains("not the"));
        let gone = fetch(fetch_client(), addr, follower, meta(200, 2)).await;
        assert!(gone.expect_err("no such snapshot").contains("no longer has"));
    }
}
