//! The client and admin HTTP API (docs/http-api.md is its contract, and the one place to read
//! it as a user).
//!
//! Handlers turn requests into [`skiff_kv::Command`]s for [`Handle::write`], or into reads of
//! the store after [`Handle::read_barrier`] (linearizable), [`Handle::lease_read_barrier`]
//! (`consistency=lease`) or without either (`consistency=stale`). A follower serves
//! linearizable reads itself once its leader has confirmed a read index (and forwards them to
//! the leader only when that fails). A follower forwards what only the leader can serve: it replays the request, body and session
//! headers included, against the leader's client address and relays the answer unchanged. A
//! request that was already forwarded once is never forwarded again (a leader change in between
//! answers `503 no_leader`, and the client retries), so two nodes with stale views of the
//! leader cannot bounce a request between them.
//!
//! The key routes, `/v1/kv/{key}`, the path of nearly every request, are served on hyper
//! directly (`keys.rs`, which says why); every other route goes through an axum router.
//! `serve.rs` is the accept loop and the service that sends each request to one or the other.
//!
//! Every error is JSON `{code, message}` with a fitting status; nothing a client sends can
//! panic the server, and a write is either proposed whole or not at all: the command is
//! validated against the store's limits before it goes into the log.

mod keys;
mod serve;

pub use serve::{ClientService, serve};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use serde_json::json;
use skiff_kv::{Command, MAX_KEY_BYTES, MAX_VALUE_BYTES, Op, Session};
use skiff_raft::{Index, Membership, MembershipChange, MembershipError, NodeId, TransferError};

use crate::members;
use crate::metrics::Metrics;
use crate::runtime::{Handle, NodeStatus, ServiceError, SnapshotOutcome, Transferred};
use crate::snapshot::{self, MAX_CHUNK_BYTES, SNAPSHOT_CHUNK_PATH};

/// The header a forwarding follower adds, naming itself.
pub const FORWARDED_FROM: &str = "skiff-forwarded-from";
/// The session header carrying the client id.
pub const CLIENT_ID: &str = "skiff-client-id";
/// The session header carrying the sequence number.
pub const SEQUENCE: &str = "skiff-sequence";
/// The header carrying a value's revision in `GET /v1/kv/{key}`.
pub const REVISION: &str = "skiff-revision";

/// The most keys a scan returns.
const MAX_SCAN_LIMIT: usize = 10_000;
/// The keys a scan returns unless asked.
const DEFAULT_SCAN_LIMIT: usize = 1_000;

/// What every handler shares. Axum clones it for every request (`State`), so it is one
/// reference count: cloning the parts (the handle's channel ends and paths, the forwarding
/// client's pool) cost more per request than many a whole stale read.
#[derive(Clone)]
struct Api(Arc<Shared>);

/// The parts of [`Api`].
struct Shared {
    /// The driver.
    handle: Handle,
    /// The metrics, for `/metrics`.
    metrics: Arc<Metrics>,
    /// This node's id, for the forwarding header.
    id: u64,
    /// The client used to forward requests to the leader.
    forwarder: Client<HttpConnector, Body>,
}

/// An error answer: a status and the JSON body `{code, message, ...}`.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    status: StatusCode,
    /// The JSON body.
    body: serde_json::Value,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError { status, body: json!({ "code": code, "message": message.into() }) }
    }

    /// A `400 bad_request`.
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A `413 too_large` for a body over [`BODY_LIMIT`] or a value over [`MAX_VALUE_BYTES`].
    fn too_large_body() -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is over the limit of {MAX_VALUE_BYTES} bytes"),
        )
    }

    /// A `404 key_not_found` for `key`.
    fn not_found(key: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "key_not_found", format!("key not found: {key}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> ApiError {
        let unavailable = StatusCode::SERVICE_UNAVAILABLE;
        match &error {
            ServiceError::NotLeader { .. } | ServiceError::Dropped => {
                ApiError::new(unavailable, "no_leader", error.to_string())
            }
            ServiceError::Timeout => ApiError::new(unavailable, "timeout", error.to_string()),
            ServiceError::Unavailable(_) => {
                ApiError::new(unavailable, "unavailable", error.to_string())
            }
            ServiceError::Membership(refused) => membership_error(refused),
            ServiceError::Transfer(refused) => transfer_error(refused),
            ServiceError::TransferAborted { .. } => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "transfer_aborted", error.to_string())
            }
        }
    }
}

/// The most bytes of a request body read: a value at its limit, with room for a JSON
/// compare-and-swap's quoting or a membership change's body.
const BODY_LIMIT: usize = MAX_VALUE_BYTES + 64 * 1024;

/// The whole client API: the key routes served directly (`keys.rs`), everything else by an axum
/// router, which `extend` may add routes and layers to (fault injection).
pub fn service(
    handle: Handle,
    metrics: Arc<Metrics>,
    id: u64,
    extend: impl FnOnce(Router) -> Router,
) -> ClientService {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    let forwarder = Client::builder(TokioExecutor::new()).build(connector);
    let api = Api(Arc::new(Shared { handle, metrics, id, forwarder }));
    let router = Router::new()
        .route("/v1/kv", get(scan))
        .route("/v1/status", get(status))
        .route("/v1/members", get(get_members).post(post_members))
        .route("/v1/leader/transfer", post(transfer_leader))
        .route("/v1/snapshot", post(take_snapshot))
        .route(SNAPSHOT_CHUNK_PATH, get(snapshot_chunk))
        .route("/metrics", get(metrics_text))
        .route("/health", get(ready))
        .route("/readyz", get(ready))
        .route("/livez", get(live))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(api.clone())
        .merge(
            crate::dashboard::Dashboard::for_node(api.handle.clone(), api.metrics.clone()).router(),
        );
    ClientService::new(api.clone(), extend(router))
}

/// How a read is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Consistency {
    /// Confirmed with a quorum (ReadIndex), at the leader or asked of it by a follower.
    Linearizable,
    /// Under the leader's lease when it holds one, linearizable otherwise.
    Lease,
    /// From this node's store as it is.
    Stale,
}

/// The `consistency` parameter of reads.
#[derive(Debug, Default, Deserialize)]
struct ReadParams {
    /// `linearizable` (the default), `lease` or `stale`.
    consistency: Option<String>,
    /// For scans: the key prefix.
    prefix: Option<String>,
    /// For scans: the most keys to return.
    limit: Option<usize>,
}

impl ReadParams {
    /// The consistency asked for.
    fn consistency(&self) -> Result<Consistency, ApiError> {
        match self.consistency.as_deref() {
            None | Some("linearizable") => Ok(Consistency::Linearizable),
            Some("lease") => Ok(Consistency::Lease),
            Some("stale") => Ok(Consistency::Stale),
            Some(other) => Err(ApiError::bad_request(format!(
                "consistency must be linearizable, lease or stale, not {other:?}"
            ))),
        }
    }
}

/// Checks a key from the path.
fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::bad_request("the key is empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the key is {} bytes, over the limit of {MAX_KEY_BYTES}", key.len()),
        ));
    }
    Ok(())
}

/// Checks a key a client writes: a valid key, and not in the range reserved for the cluster's
/// own records (keys beginning with a NUL byte: the address book, `members.rs`).
fn check_written_key(key: &str) -> Result<(), ApiError> {
    check_key(key)?;
    if key.starts_with('\0') {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "reserved_key",
            "keys beginning with a NUL byte are reserved for the cluster's own records",
        ));
    }
    Ok(())
}

/// The body of a request, or why it could not be read.
fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large_body()
        } else {
            ApiError::bad_request(format!("unreadable body: {rejection}"))
        }
    })?;
    check_value(body)
}

/// A body whose bytes are within a value's limit.
fn check_value(body: Bytes) -> Result<Bytes, ApiError> {
    if body.len() > MAX_VALUE_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the value is {} bytes, over the limit of {MAX_VALUE_BYTES}", body.len()),
        ));
    }
    Ok(body)
}

/// The session of a write, from its headers. (Looked up by [`HeaderName`]s made once: a
/// lookup by `&str` parses the name again on every request.)
fn session(headers: &HeaderMap) -> Result<Option<Session>, ApiError> {
    static CLIENT_ID_HEADER: HeaderName = HeaderName::from_static(CLIENT_ID);
    static SEQUENCE_HEADER: HeaderName = HeaderName::from_static(SEQUENCE);
    let number = |name: &HeaderName| -> Result<Option<u64>, ApiError> {
        headers
            .get(name)
            .map(|value| {
                value
                    .to_str()
                    .ok()
                    .and_then(|text| text.trim().parse::<u64>().ok())
                    .ok_or_else(|| ApiError::bad_request(format!("{name} must be a number")))
            })
            .transpose()
    };
    match (number(&CLIENT_ID_HEADER)?, number(&SEQUENCE_HEADER)?) {
        (Some(client), Some(sequence)) if sequence > 0 => Ok(Some(Session { client, sequence })),
        (Some(_), Some(_)) => Err(ApiError::bad_request(format!("{SEQUENCE} starts at 1"))),
        (None, None) => Ok(None),
        _ => Err(ApiError::bad_request(format!("{CLIENT_ID} and {SEQUENCE} go together"))),
    }
}

/// The request as received, kept for forwarding it to the leader.
struct Original {
    /// The method.
    method: Method,
    /// The path and query.
    uri: Uri,
    /// The headers.
    headers: HeaderMap,
    /// The body.
    body: Bytes,
}

impl std::ops::Deref for Api {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Api {
    /// Forwards the original request to the leader at `leader_addr`, this node not leading; or
    /// answers `503 no_leader` if no leader is known or the request was forwarded already.
    async fn forward_to_leader(&self, original: Original, leader_addr: Option<String>) -> Response {
        let fallback = || {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_leader",
                "this node does not lead and knows no leader to forward to; retry",
            )
            .into_response()
        };
        let Some(leader_addr) = leader_addr else { return fallback() };
        if original.headers.contains_key(FORWARDED_FROM) {
            return fallback();
        }
        self.forward(original, &leader_addr).await.unwrap_or_else(IntoResponse::into_response)
    }

    /// Replays `original` against the leader at `leader_addr` and relays its answer.
    async fn forward(&self, original: Original, leader_addr: &str) -> Result<Response, ApiError> {
        let path = original.uri.path_and_query().map_or("/", |path| path.as_str());
        let uri: Uri = format!("http://{leader_addr}{path}")
            .parse()
            .map_err(|error| ApiError::bad_request(format!("cannot forward: {error}")))?;
        let mut request = axum::http::Request::builder().method(original.method).uri(uri);
        for name in [header::CONTENT_TYPE.as_str(), CLIENT_ID, SEQUENCE] {
            if let Some(value) = original.headers.get(name) {
                request = request.header(name, value);
            }
        }
        let request = request
            .header(FORWARDED_FROM, self.id)
            .body(Body::from(original.body))
            .map_err(|error| ApiError::bad_request(format!("cannot forward: {error}")))?;
        let unreachable = |error: String| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("the leader at {leader_addr} did not answer: {error}"),
            )
        };
        // The leader answers within its own request timeout; a little more covers the hop, and
        // a leader that hangs cannot hold this handler forever.
        let patience = self.handle.timeout() + Duration::from_secs(1);
        let exchange = async {
            let response = self.forwarder.request(request).await.map_err(|e| e.to_string())?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|error| error.to_string())?;
            Ok::<_, String>((parts, body))
        };
        let (mut parts, body) = tokio::time::timeout(patience, exchange)
            .await
            .map_err(|_| ApiError::from(ServiceError::Timeout))?
            .map_err(unreachable)?;
        parts.headers.insert(
            FORWARDED_FROM,
            HeaderValue::from_str(&self.id.to_string()).expect("a number is a valid header"),
        );
        Ok(Response::from_parts(parts, Body::from(body.to_bytes())))
    }

    /// Proposes a write and renders its outcome, or forwards it.
    async fn write(&self, original: Original, key: &str, op: Op) -> Response {
        let command = match session(&original.headers) {
            Ok(session) => Command { session, op },
            Err(error) => return error.into_response(),
        };
        if let Err(error) = command.validate() {
            let error =
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", error.to_string());
            return error.into_response();
        }
        let started = Instant::now();
        match self.handle.write(&command).await {
            Err(ServiceError::NotLeader { leader_client_addr, .. }) => {
                self.forward_to_leader(original, leader_client_addr).await
            }
            Err(error) => ApiError::from(error).into_response(),
            Ok(written) => {
                // Lock-free (dashboard::latency): the only cost the dashboard adds to a write.
                self.metrics.write_duration.observe(started.elapsed());
                keys::render_written(key, written)
            }
        }
    }

    /// Waits until a read of `consistency` may be served here, or says where to forward it.
    async fn read_barrier(
        &self,
        consistency: Consistency,
    ) -> Result<Result<(), Option<String>>, ApiError> {
        let barrier = match consistency {
            Consistency::Stale => return Ok(Ok(())),
            Consistency::Linearizable => self.handle.read_barrier().await,
            Consistency::Lease => self.handle.lease_read_barrier().await,
        };
        match barrier {
            Ok(_) => Ok(Ok(())),
            Err(ServiceError::NotLeader { leader_client_addr, .. }) => Ok(Err(leader_client_addr)),
            Err(error) => Err(error.into()),
        }
    }
}

/// One key of a scan's answer.
#[derive(Debug, Serialize)]
struct ScannedKey {
    /// The key.
    key: String,
    /// The value, when it is UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    /// The value in base64, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    value_base64: Option<String>,
    /// The log index of the write that set the value.
    revision: u64,
}

/// `GET /v1/kv?prefix=P&limit=N`: keys by prefix, in order.
async fn scan(
    State(api): State<Api>,
    Query(params): Query<ReadParams>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let result: Result<Result<Response, Option<String>>, ApiError> = async {
        let limit = params.limit.unwrap_or(DEFAULT_SCAN_LIMIT);
        if limit == 0 || limit > MAX_SCAN_LIMIT {
            return Err(ApiError::bad_request(format!("limit must be 1 to {MAX_SCAN_LIMIT}")));
        }
        if let Err(leader) = api.read_barrier(params.consistency()?).await? {
            return Ok(Err(leader));
        }
        let prefix = params.prefix.clone().unwrap_or_default();
        let (applied, (found, more)) =
            api.handle.read_store(|store| (store.applied(), store.scan(prefix.as_bytes(), limit)));
        let kvs: Vec<ScannedKey> = found
            .into_iter()
            .map(|(key, value)| {
                let key = String::from_utf8_lossy(&key).into_owned();
                match String::from_utf8(value.data.to_vec()) {
                    Ok(text) => ScannedKey {
                        key,
                        value: Some(text),
                        value_base64: None,
                        revision: value.revision,
                    },
                    Err(_) => ScannedKey {
                        key,
                        value: None,
                        value_base64: Some(base64(&value.data)),
                        revision: value.revision,
                    },
                }
            })
            .collect();
        Ok(Ok(axum::Json(json!({ "revision": applied, "kvs": kvs, "more": more })).into_response()))
    }
    .await;
    match result {
        Ok(Ok(response)) => response,
        Ok(Err(leader)) => {
            let original = Original { method, uri, headers, body: Bytes::new() };
            api.forward_to_leader(original, leader).await
        }
        Err(error) => error.into_response(),
    }
}

/// Standard base64 with padding (RFC 4648 §4), for values that are not UTF-8.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let group = u32::from(chunk[0]) << 16
            | u32::from(chunk.get(1).copied().unwrap_or(0)) << 8
            | u32::from(chunk.get(2).copied().unwrap_or(0));
        for position in 0..4 {
            if position <= chunk.len() {
                let sextet = (group >> (18 - 6 * position)) & 0x3f;
                text.push(char::from(ALPHABET[sextet as usize]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

/// One follower in the status.
#[derive(Debug, Serialize)]
struct FollowerProgress {
    /// The follower's id.
    id: u64,
    /// Its match index.
    #[serde(rename = "match")]
    match_index: u64,
    /// Its next index.
    next: u64,
    /// `probe` or `replicate`.
    state: &'static str,
}

/// Renders a node's status as `GET /v1/status` answers it.
pub fn status_json(
    status: &NodeStatus,
    cluster_id: u64,
    client_addr: &str,
    peer_addr: &str,
) -> serde_json::Value {
    let core = &status.core;
    let progress: Vec<FollowerProgress> = core
        .progress
        .iter()
        .map(|(id, (match_index, next, state))| FollowerProgress {
            id: id.0,
            match_index: match_index.0,
            next: next.0,
            state,
        })
        .collect();
    json!({
        "id": core.id.0,
        "cluster_id": cluster_id,
        "role": core.role.to_string(),
        "term": core.term.0,
        "leader": core.leader.map(|leader| leader.0),
        "leader_client_addr": status.leader_client_addr,
        "commit": core.commit.0,
        "applied": core.applied.0,
        "last_index": core.last_index.0,
        "durable": core.durable.0,
        "snapshot": core.snapshot.0,
        "first_index": core.first_index.0,
        "members": status.members.iter().map(|member| member.0).collect::<Vec<_>>(),
        "membership": membership_json(&status.membership),
        "roles": status
            .members
            .iter()
            .map(|member| (member.0.to_string(), json!(role_of(&status.membership, *member))))
            .collect::<serde_json::Map<_, _>>(),
        "peer_addrs": status
            .peer_addrs
            .iter()
            .map(|(member, addr)| (member.0.to_string(), json!(addr)))
            .collect::<serde_json::Map<_, _>>(),
        "client_addrs": status
            .client_addrs
            .iter()
            .map(|(member, addr)| (member.0.to_string(), json!(addr)))
            .collect::<serde_json::Map<_, _>>(),
        "client_addr": client_addr,
        "peer_addr": peer_addr,
        "progress": progress,
        "cut_links": status.cut_links.iter().map(|peer| peer.0).collect::<Vec<_>>(),
        "transfer_target": status.transfer_target.map(|target| target.0),
    })
}

/// `GET /v1/status`.
async fn status(State(api): State<Api>) -> Response {
    match api.handle.status().await {
        Ok(status) => {
            let info = api.handle.info();
            axum::Json(status_json(&status, info.cluster_id, &info.client_addr, &info.peer_addr))
                .into_response()
        }
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// `POST /v1/snapshot`: this node takes a snapshot of everything it applied and compacts its
/// log behind it. Not forwarded: every node snapshots its own state.
async fn take_snapshot(State(api): State<Api>) -> Response {
    match api.handle.snapshot().await {
        Ok(SnapshotOutcome::Taken(meta)) => {
            axum::Json(json!({ "index": meta.index.0, "term": meta.term.0 })).into_response()
        }
        Ok(SnapshotOutcome::NothingNew { latest, applied }) => {
            let message = match &latest {
                Some(meta) => format!(
                    "nothing was applied since the latest snapshot (index {}, applied {applied})",
                    meta.index
                ),
                None => "nothing was applied yet".to_string(),
            };
            let body = json!({
                "code": "nothing_new",
                "message": message,
                "index": latest.as_ref().map(|meta| meta.index.0),
                "term": latest.as_ref().map(|meta| meta.term.0),
            });
            (StatusCode::CONFLICT, axum::Json(body)).into_response()
        }
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// The parameters of a snapshot chunk request.
#[derive(Debug, Deserialize)]
struct ChunkParams {
    /// The index of the snapshot.
    index: u64,
    /// The byte offset in its file.
    offset: u64,
}

/// `GET /v1/internal/snapshot?index=I&offset=O`: up to 1 MiB of the file of this node's
/// snapshot at `I`, from byte `O`, for a follower fetching it (`snapshot.rs` has the protocol).
async fn snapshot_chunk(State(api): State<Api>, Query(params): Query<ChunkParams>) -> Response {
    let files = api.handle.snapshot_files().clone();
    snapshot::serve_chunk(files, Index(params.index), params.offset, MAX_CHUNK_BYTES).await
}

/// `GET /metrics`: Prometheus text format.
async fn metrics_text(State(api): State<Api>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], api.metrics.encode()).into_response()
}

/// `GET /health` and `/readyz`: healthy when the node runs and knows a leader.
async fn ready(State(api): State<Api>) -> Response {
    let reason = if !api.handle.is_running() {
        Some("the node has stopped".to_string())
    } else {
        match api.handle.status().await {
            Ok(status) if status.core.leader.is_some() => None,
            Ok(_) => Some("no leader is known".to_string()),
            Err(error) => Some(error.to_string()),
        }
    };
    match reason {
        None => axum::Json(json!({ "health": true })).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "health": false, "reason": reason })),
        )
            .into_response(),
    }
}

/// `GET /livez`: the process answers.
async fn live() -> Response {
    axum::Json(json!({ "health": true })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_test_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn session_headers_go_together() {
        let mut headers = HeaderMap::new();
        assert_eq!(session(&headers).expect("no session is fine"), None);
        headers.insert(CLIENT_ID, HeaderValue::from_static("7"));
        assert!(session(&headers).is_err(), "a client id alone is refused");
        headers.insert(SEQUENCE, HeaderValue::from_static("0"));
        assert!(session(&headers).is_err(), "sequences start at 1");
        headers.insert(SEQUENCE, HeaderValue::from_static("3"));
        assert_eq!(
            session(&headers).expect("a whole session"),
            Some(Session { client: 7, sequence: 3 })
        );
        headers.insert(SEQUENCE, HeaderValue::from_static("x"));
        assert!(session(&headers).is_err(), "a sequence must be a number");
    }
}

/// The role of `member` in `membership`: `voter` (outgoing voters of a joint configuration
/// included) or `learner`.
fn role_of(membership: &Membership, member: NodeId) -> &'static str {
    if membership.is_voter(member) { "voter" } else { "learner" }
}

/// A configuration as JSON: `{voters, learners, outgoing, joint}`.
fn membership_json(membership: &Membership) -> serde_json::Value {
    let ids =
        |set: &std::collections::BTreeSet<NodeId>| set.iter().map(|id| id.0).collect::<Vec<_>>();
    json!({
        "voters": ids(&membership.voters),
        "learners": ids(&membership.learners),
        "outgoing": ids(&membership.outgoing),
        "joint": membership.is_joint(),
    })
}

/// The answer of `GET /v1/members` (and of a completed `POST`): the configuration and, per
/// member, its role and the addresses this node knows.
fn members_json(status: &NodeStatus, membership: &Membership) -> serde_json::Value {
    let members: Vec<serde_json::Value> = membership
        .members()
        .into_iter()
        .map(|member| {
            json!({
                "id": member.0,
                "role": role_of(membership, member),
                "peer_addr": status.peer_addrs.get(&member),
                "client_addr": status.client_addrs.get(&member),
            })
        })
        .collect();
    let mut body = membership_json(membership);
    body["leader"] = json!(status.core.leader.map(|leader| leader.0));
    body["members"] = json!(members);
    body
}

/// The error for a membership change the leader refused.
fn membership_error(refused: &MembershipError) -> ApiError {
    let message = refused.to_string();
    match refused {
        MembershipError::NotLeader { .. } | MembershipError::LeaderNotReady { .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_leader", message)
        }
        MembershipError::ChangeInProgress { .. } => {
            ApiError::new(StatusCode::CONFLICT, "change_in_progress", message)
        }
        MembershipError::TransferInProgress { .. } => {
            ApiError::new(StatusCode::CONFLICT, "transfer_in_progress", message)
        }
        MembershipError::AlreadyMember { .. } => {
            ApiError::new(StatusCode::CONFLICT, "already_member", message)
        }
        MembershipError::NotMember { .. } => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_node", message)
        }
        MembershipError::NotLearner { .. } => {
            ApiError::new(StatusCode::CONFLICT, "not_a_learner", message)
        }
        MembershipError::LearnerBehind { .. } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "learner_behind", message)
        }
        MembershipError::NoChange
        | MembershipError::ReservedId
        | MembershipError::DuplicateNode { .. }
        | MembershipError::NoVoters => ApiError::bad_request(message),
    }
}

/// One change of a `POST /v1/members` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    /// `add_voter`, `add_learner`, `remove` or `promote`.
    action: String,
    /// The node.
    id: u64,
    /// Where peers reach the node: required to add one, refused otherwise.
    peer_addr: Option<String>,
}

/// The body of `POST /v1/members`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersBody {
    /// The changes, made all at once (one voter changed: directly; several: joint consensus).
    changes: Vec<ChangeBody>,
}

/// The peer address of each node a `POST /v1/members` adds.
type NewAddresses = Vec<(NodeId, SocketAddr)>;

/// The changes of a `POST /v1/members` body, and the peer address of each node it adds.
fn parse_changes(body: &[u8]) -> Result<(Vec<MembershipChange>, NewAddresses), ApiError> {
    let parsed: MembersBody = serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request(format!(
            "the body must be {{\"changes\": [{{\"action\": \"add_voter\" | \"add_learner\" | \
             \"remove\" | \"promote\", \"id\": N, \"peer_addr\": \"host:port\" (adds only)}}]}}: \
             {error}"
        ))
    })?;
    if parsed.changes.is_empty() {
        return Err(ApiError::bad_request("no change was given"));
    }
    let mut changes = Vec::new();
    let mut addresses = Vec::new();
    for change in parsed.changes {
        if change.id == 0 {
            return Err(ApiError::bad_request("node id 0 is reserved"));
        }
        let id = NodeId(change.id);
        let adds = matches!(change.action.as_str(), "add_voter" | "add_learner");
        match (&change.peer_addr, adds) {
            (None, true) => {
                return Err(ApiError::bad_request(format!("adding node {id} needs its peer_addr")));
            }
            (Some(addr), true) => {
                let addr = addr.parse::<SocketAddr>().map_err(|error| {
                    ApiError::bad_request(format!("peer_addr {addr:?} is not ip:port: {error}"))
                })?;
                addresses.push((id, addr));
            }
            (Some(_), false) => {
                return Err(ApiError::bad_request(format!(
                    "peer_addr is only for adding a node, not for {}",
                    change.action
                )));
            }
            (None, false) => {}
        }
        changes.push(match change.action.as_str() {
            "add_voter" => MembershipChange::AddVoter(id),
            "add_learner" => MembershipChange::AddLearner(id),
            "remove" => MembershipChange::Remove(id),
            "promote" => MembershipChange::Promote(id),
            other => {
                return Err(ApiError::bad_request(format!(
                    "action must be add_voter, add_learner, remove or promote, not {other:?}"
                )));
            }
        });
    }
    Ok((changes, addresses))
}

/// `GET /v1/members`: the configuration in force on this node (the latest configuration entry
/// in its log, committed or not), each member's role and known addresses.
async fn get_members(State(api): State<Api>) -> Response {
    match api.handle.status().await {
        Ok(status) => axum::Json(members_json(&status, &status.membership)).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// `POST /v1/members`: changes the membership; answered once the change is complete. The
/// address record of each node added is committed first (`members.rs`), then the change is
/// asked of the leader. A follower forwards the request to the leader.
async fn post_members(
    State(api): State<Api>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let prepared = body_bytes(body).and_then(|body| Ok((parse_changes(&body)?, body)));
    let ((changes, addresses), body) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => return error.into_response(),
    };
    let original = Original { method, uri, headers, body };
    let status = match api.handle.status().await {
        Ok(status) => status,
        Err(error) => return ApiError::from(error).into_response(),
    };
    if status.core.leader != Some(status.core.id) {
        return api.forward_to_leader(original, status.leader_client_addr).await;
    }
    // Unknown nodes first: a 404 says more than the core's refusal of the whole request.
    for change in &changes {
        if let MembershipChange::Remove(id) | MembershipChange::Promote(id) = *change
            && !status.membership.contains(id)
        {
            let message = format!("node {} is not a member", id.0);
            return ApiError::new(StatusCode::NOT_FOUND, "unknown_node", message).into_response();
        }
    }
    for (id, addr) in addresses {
        match api.handle.write(&members::address_record(id, addr)).await {
            Ok(_) => {}
            Err(ServiceError::NotLeader { leader_client_addr, .. }) => {
                return api.forward_to_leader(original, leader_client_addr).await;
            }
            Err(error) => return ApiError::from(error).into_response(),
        }
    }
    match api.handle.change_membership(changes).await {
        Ok(membership) => match api.handle.status().await {
            Ok(status) => axum::Json(members_json(&status, &membership)).into_response(),
            Err(error) => ApiError::from(error).into_response(),
        },
        Err(ServiceError::NotLeader { leader_client_addr, .. }) => {
            api.forward_to_leader(original, leader_client_addr).await
        }
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// The error for a leadership transfer the leader refused.
fn transfer_error(refused: &TransferError) -> ApiError {
    let message = refused.to_string();
    match refused {
        TransferError::NotLeader { .. } => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_leader", message)
        }
        TransferError::InProgress { .. } => {
            ApiError::new(StatusCode::CONFLICT, "transfer_in_progress", message)
        }
        TransferError::NotAVoter { .. } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "not_a_voter", message)
        }
        TransferError::NoTarget => ApiError::new(StatusCode::CONFLICT, "no_target", message),
        // The runtime answers a transfer to the leader itself as done; kept for completeness.
        TransferError::TargetIsLeader => {
            ApiError::new(StatusCode::CONFLICT, "already_leader", message)
        }
    }
}

/// The body of `POST /v1/leader/transfer` (optional: no body, or `{}`, lets the leader pick).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    /// The voter to hand leadership to.
    to: Option<u64>,
}

/// How long a transfer may take before the client is answered `503 timeout`: the core gives
/// it up after an election timeout, which is far below any sensible request timeout, so this
/// only bounds a node that stepped down and never learned the new leader.
fn transfer_patience(api: &Api) -> Duration {
    api.handle.timeout()
}

/// `POST /v1/leader/transfer`: hands leadership to `to` (or to the most up-to-date voter) and
/// answers once the new leader is known, or the transfer failed. A follower forwards it to the
/// leader; a request that reaches a node no longer leading after a forward is answered
/// `503 no_leader` naming the leader it knows.
async fn transfer_leader(
    State(api): State<Api>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let prepared = body_bytes(body).and_then(|body| {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok((TransferBody::default(), body));
        }
        let parsed: TransferBody = serde_json::from_slice(&body).map_err(|error| {
            ApiError::bad_request(format!("the body must be empty or {{\"to\": node id}}: {error}"))
        })?;
        Ok((parsed, body))
    });
    let (parsed, body) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => return error.into_response(),
    };
    if parsed.to == Some(0) {
        return ApiError::bad_request("node id 0 is reserved").into_response();
    }
    let target = parsed.to.map(NodeId);
    let original = Original { method, uri, headers, body };
    let status = match api.handle.status().await {
        Ok(status) => status,
        Err(error) => return ApiError::from(error).into_response(),
    };
    if status.core.leader != Some(status.core.id) {
        return forward_transfer(&api, original, &status).await;
    }
    // A node that is not a member at all is a 404, as for membership changes; a learner (or an
    // outgoing voter) is the core's 422 not_a_voter.
    if let Some(target) = target
        && !status.membership.contains(target)
    {
        let message = format!("node {} is not a member", target.0);
        return ApiError::new(StatusCode::NOT_FOUND, "unknown_node", message).into_response();
    }
    match api.handle.transfer_leadership(target, transfer_patience(&api)).await {
        Ok(transferred) => render_transferred(&api, transferred).await,
        Err(ServiceError::NotLeader { .. }) => match api.handle.status().await {
            Ok(status) => forward_transfer(&api, original, &status).await,
            Err(error) => ApiError::from(error).into_response(),
        },
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// Forwards a transfer to the leader this node knows; when it cannot (no leader known, or the
/// request was forwarded already), `503 no_leader` with the leader's id and client address.
async fn forward_transfer(api: &Api, original: Original, status: &NodeStatus) -> Response {
    if status.leader_client_addr.is_some() && !original.headers.contains_key(FORWARDED_FROM) {
        return api.forward_to_leader(original, status.leader_client_addr.clone()).await;
    }
    let body = json!({
        "code": "no_leader",
        "message": "this node does not lead; ask the leader (or retry once one is known)",
        "leader": status.core.leader.map(|leader| leader.0),
        "leader_client_addr": status.leader_client_addr,
    });
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

/// The answer of a completed transfer: the new leader, its term and client address.
async fn render_transferred(api: &Api, transferred: Transferred) -> Response {
    let leader_client_addr = match api.handle.status().await {
        Ok(status) => status.client_addrs.get(&transferred.leader).cloned(),
        Err(_) => None,
    };
    axum::Json(json!({
        "leader": transferred.leader.0,
        "term": transferred.term.0,
        "previous_leader": transferred.previous_leader.0,
        "target": transferred.target.0,
        "leader_client_addr": leader_client_addr,
    }))
    .into_response()
}
