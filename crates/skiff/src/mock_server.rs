//! A stand-in cluster for the unit tests: a few HTTP servers that speak docs/http-api.md.
//!
//! Each node is an axum server on its own `127.0.0.1:0` port; all nodes share one key-value map,
//! one log index and one session table, as the nodes of a real cluster share one replicated
//! state machine. That is enough to test what the client is responsible for (paths, bodies,
//! headers, status codes, moving between endpoints, and a retried write applied once) without
//! Raft. Each node can be told to misbehave with a [`NodeMode`].
//!
//! It is a test double, not a reference server: it never forwards, never elects, and applies a
//! write at once. Tests of the real thing start real `skiff node` processes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value as Json, json};
use tokio::task::JoinHandle;

use crate::api::{CLIENT_ID_HEADER, CasRequest, KeyValue, REVISION_HEADER, SEQUENCE_HEADER};

/// How one mock node behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeMode {
    /// Serves every request.
    Serve,
    /// Answers every request `503 no_leader`.
    NoLeader,
    /// Applies the next write, then answers it `503 timeout` (as a node whose leader went
    /// quiet after committing), and serves normally from then on.
    TimeoutAfterApply,
    /// Not listening: its port refuses connections.
    Down,
}

/// A request a node received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Which node (0-based).
    pub node: usize,
    /// The method and the path as the router decoded it, such as `PUT foo`.
    pub request: String,
    /// The session headers, if any: client id and sequence.
    pub session: Option<(u64, u64)>,
}

/// The state every node shares.
#[derive(Debug, Default)]
struct Shared {
    /// Key → (value, revision).
    kvs: BTreeMap<String, (Vec<u8>, u64)>,
    /// The last log index used.
    index: u64,
    /// Client id → (last sequence, its answer).
    sessions: BTreeMap<u64, (u64, (StatusCode, Json))>,
    /// Every request received, in order.
    seen: Vec<Seen>,
    /// Each node's mode.
    modes: Vec<NodeMode>,
}

/// One node's handle on the shared state.
#[derive(Debug, Clone)]
struct Node {
    /// The shared state.
    shared: Arc<Mutex<Shared>>,
    /// This node's number.
    number: usize,
    /// Every node's address, to fill `leader_client_addr`.
    endpoints: Arc<Vec<String>>,
}

/// A running mock cluster; its servers stop when it is dropped.
#[derive(Debug)]
pub struct MockCluster {
    /// The shared state.
    shared: Arc<Mutex<Shared>>,
    /// Each node's `127.0.0.1:port`.
    pub endpoints: Vec<String>,
    /// The server tasks.
    tasks: Vec<JoinHandle<()>>,
}

impl MockCluster {
    /// Starts one node per mode. Node 0 is the leader (when it serves).
    pub async fn start(modes: &[NodeMode]) -> MockCluster {
        let shared = Arc::new(Mutex::new(Shared { modes: modes.to_vec(), ..Shared::default() }));
        let mut listeners = Vec::new();
        let mut endpoints = Vec::new();
        for mode in modes {
            let listener =
                tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("this must succeed");
            endpoints.push(listener.local_addr().expect("this must succeed").to_string());
            // A down node's port was bound and is let go: nothing listens there.
            listeners.push((*mode != NodeMode::Down).then_some(listener));
        }
        let shared_endpoints = Arc::new(endpoints.clone());
        let mut tasks = Vec::new();
        for (number, listener) in listeners.into_iter().enumerate() {
            let Some(listener) = listener else { continue };
            let node = Node { shared: shared.clone(), number, endpoints: shared_endpoints.clone() };
            let router = Router::new()
                .route("/v1/kv", get(scan))
                .route("/v1/kv/{key}", get(read).put(put).delete(delete))
                .route("/v1/kv/{key}/cas", post(cas))
                .route("/v1/status", get(status))
                .with_state(node);
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            }));
        }
        MockCluster { shared, endpoints, tasks }
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.shared).seen.clone()
    }

    /// The stored value and revision of a key.
    pub fn stored(&self, key: &str) -> Option<(Vec<u8>, u64)> {
        lock(&self.shared).kvs.get(key).cloned()
    }

    /// The last log index used: how many writes were applied.
    pub fn applied(&self) -> u64 {
        lock(&self.shared).index
    }

    /// Changes a node's mode (not to or from [`NodeMode::Down`]).
    pub fn set_mode(&self, node: usize, mode: NodeMode) {
        lock(&self.shared).modes[node] = mode;
    }
}

impl Drop for MockCluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Locks the shared state; a test that panicked while holding it has failed already.
fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An API error answer.
fn error(status: StatusCode, code: &str, message: &str) -> (StatusCode, Json) {
    (status, json!({"code": code, "message": message}))
}

/// Renders a (status, JSON) pair.
fn respond((status, body): (StatusCode, Json)) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Reads the session headers.
fn session_of(headers: &HeaderMap) -> Option<(u64, u64)> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.parse::<u64>().ok();
    Some((number(CLIENT_ID_HEADER)?, number(SEQUENCE_HEADER)?))
}

impl Node {
    /// Records a request and returns the node's mode.
    fn arrive(&self, request: String, headers: &HeaderMap) -> NodeMode {
        let mut shared = lock(&self.shared);
        shared.seen.push(Seen { node: self.number, request, session: session_of(headers) });
        shared.modes[self.number]
    }

    /// Applies a write once per session sequence, as docs/http-api.md "Exactly-once writes"
    /// says, and answers it.
    fn write(
        &self,
        request: String,
        headers: &HeaderMap,
        apply: impl FnOnce(&mut Shared, u64) -> (StatusCode, Json),
    ) -> Response {
        let mode = self.arrive(request, headers);
        if mode == NodeMode::NoLeader {
            return respond(error(StatusCode::SERVICE_UNAVAILABLE, "no_leader", "no leader known"));
        }
        let mut shared = lock(&self.shared);
        let session = session_of(headers);
        if let Some((client, sequence)) = session
            && let Some((last, answer)) = shared.sessions.get(&client)
        {
            if sequence < *last {
                return respond(error(StatusCode::CONFLICT, "stale_sequence", "old sequence"));
            }
            if sequence == *last {
                return respond(answer.clone());
            }
        }
        shared.index += 1;
        let index = shared.index;
        let answer = apply(&mut shared, index);
        if let Some((client, sequence)) = session {
            shared.sessions.insert(client, (sequence, answer.clone()));
        }
        if mode == NodeMode::TimeoutAfterApply {
            shared.modes[self.number] = NodeMode::Serve;
            return respond(error(StatusCode::SERVICE_UNAVAILABLE, "timeout", "outcome unknown"));
        }
        respond(answer)
    }
}

/// `PUT /v1/kv/{key}`.
async fn put(
    State(node): State<Node>,
    Path(key): Path<String>,
    headers: HeaderMap,
    value: Bytes,
) -> Response {
    node.write(format!("PUT {key}"), &headers, |shared, index| {
        shared.kvs.insert(key, (value.to_vec(), index));
        (StatusCode::OK, json!({"revision": index}))
    })
}

/// `DELETE /v1/kv/{key}`.
async fn delete(State(node): State<Node>, Path(key): Path<String>, headers: HeaderMap) -> Response {
    node.write(format!("DELETE {key}"), &headers, |shared, index| match shared.kvs.remove(&key) {
        Some(_) => (StatusCode::OK, json!({"revision": index, "deleted": true})),
        None => error(StatusCode::NOT_FOUND, "key_not_found", "no such key"),
    })
}

/// `POST /v1/kv/{key}/cas`.
async fn cas(
    State(node): State<Node>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(request) = serde_json::from_slice::<CasRequest>(&body) else {
        return respond(error(StatusCode::BAD_REQUEST, "bad_request", "not a CAS body"));
    };
    node.write(format!("CAS {key}"), &headers, |shared, index| {
        let current = shared.kvs.get(&key).map(|(value, _)| String::from_utf8_lossy(value).into());
        if current != request.expected {
            let mut answer = error(StatusCode::CONFLICT, "cas_mismatch", "expectation not met");
            answer.1["current"] = json!(current);
            return answer;
        }
        match request.value {
            Some(value) => shared.kvs.insert(key, (value.into_bytes(), index)),
            None => shared.kvs.remove(&key),
        };
        (StatusCode::OK, json!({"revision": index}))
    })
}

/// `GET /v1/kv/{key}`; recorded as `GET key`, or `GET key (stale)` with `consistency=stale`.
async fn read(
    State(node): State<Node>,
    Path(key): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let stale = uri.query().is_some_and(|query| query.split('&').any(|p| p == "consistency=stale"));
    let seen = if stale { format!("GET {key} (stale)") } else { format!("GET {key}") };
    if node.arrive(seen, &headers) == NodeMode::NoLeader {
        return respond(error(StatusCode::SERVICE_UNAVAILABLE, "no_leader", "no leader known"));
    }
    match lock(&node.shared).kvs.get(&key) {
        Some((value, revision)) => (
            StatusCode::OK,
            [(REVISION_HEADER, revision.to_string())],
            [("content-type", "application/octet-stream")],
            value.clone(),
        )
            .into_response(),
        None => respond(error(StatusCode::NOT_FOUND, "key_not_found", "no such key")),
    }
}

/// `GET /v1/kv?prefix=P&limit=N`.
async fn scan(
    State(node): State<Node>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    if node.arrive(format!("SCAN {prefix}"), &headers) == NodeMode::NoLeader {
        return respond(error(StatusCode::SERVICE_UNAVAILABLE, "no_leader", "no leader known"));
    }
    let Ok(limit) = query.get("limit").map_or(Ok(1000), |limit| limit.parse::<usize>()) else {
        return respond(error(StatusCode::BAD_REQUEST, "bad_request", "bad limit"));
    };
    let shared = lock(&node.shared);
    let matching: Vec<KeyValue> = shared
        .kvs
        .range(prefix.clone()..)
        .take_while(|(key, _)| key.starts_with(&prefix))
        .map(|(key, (value, revision))| KeyValue::new(key.clone(), value.clone(), *revision))
        .collect();
    let more = matching.len() > limit;
    let kvs: Vec<KeyValue> = matching.into_iter().take(limit).collect();
    respond((StatusCode::OK, json!({"revision": shared.index, "kvs": kvs, "more": more})))
}

/// `GET /v1/status`: node 0 leads unless it has no leader.
async fn status(State(node): State<Node>, headers: HeaderMap) -> Response {
    let mode = node.arrive("STATUS".to_string(), &headers);
    let shared = lock(&node.shared);
    let leader_known = mode != NodeMode::NoLeader && shared.modes[0] != NodeMode::NoLeader;
    let index = shared.index;
    respond((
        StatusCode::OK,
        json!({
            "id": node.number + 1,
            "cluster_id": 7,
            "role": if node.number == 0 && leader_known { "leader" } else { "follower" },
            "term": 2,
            "leader": leader_known.then_some(1),
            "leader_client_addr": leader_known.then(|| node.endpoints[0].clone()),
            "commit": index,
            "applied": index,
            "last_index": index,
            "durable": index,
            "members": (1..=node.endpoints.len()).collect::<Vec<_>>(),
            "client_addr": node.endpoints[node.number],
            "peer_addr": "127.0.0.1:1",
            "progress": [],
        }),
    ))
}
