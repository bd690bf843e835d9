//! Operator actions the page asks of the nodes, relayed by whoever serves it (the page may
//! only talk to its own origin): a snapshot of one node, and in `skiff demo` cutting and
//! healing the link between two nodes.
//!
//! - `POST /v1/dashboard/nodes/{id}/snapshot` relays to node `id`'s `POST /v1/snapshot` and
//!   answers what the node answered, unchanged.
//! - `POST /v1/demo/links/{a}/{b}/{cut|heal}` (demo only) asks both ends of the link,
//!   `POST /v1/faults/links/{b}/...` on `a` and `.../{a}/...` on `b` (the demo starts its nodes
//!   with `--allow-fault-injection`). Either end alone parts the two nodes both ways; asking
//!   both makes each report the cut, and keeps the link cut if one of them restarts. The
//!   answer says what each end did.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::json;

use super::routes::error;
use super::{Shared, Source};

/// How long a node may take to answer a snapshot request: it waits up to a minute for a large
/// store's snapshot to be durable (`runtime::SNAPSHOT_TIMEOUT`), and a little more covers the
/// hop.
const SNAPSHOT_PATIENCE: Duration = Duration::from_secs(65);

/// How long a node may take to cut or heal a link (it only flips a flag): short, so that a
/// paused node holds the page's request for no longer than this.
const LINK_PATIENCE: Duration = Duration::from_secs(2);

/// The client address of member `id`: from the demo's list, or from the latest sample (a node
/// learns its peers' addresses from their `Hello`s).
fn member_addr(shared: &Shared, id: u64) -> Option<String> {
    if let Source::Members(members) = &shared.source {
        return members.iter().find(|member| member.id == id).map(|m| m.client_addr.clone());
    }
    let latest = shared.history().back().cloned()?;
    let parsed: serde_json::Value = serde_json::from_str(&latest.json).ok()?;
    let node = parsed["nodes"].as_array()?.iter().find(|node| node["id"] == id)?;
    node["client_addr"].as_str().map(str::to_string)
}

/// `POST http://{addr}{path}` with an empty body, within `patience`: the status and body, or
/// why there is none.
async fn post(
    shared: &Shared,
    addr: &str,
    path: &str,
    patience: Duration,
) -> Result<(StatusCode, axum::body::Bytes), String> {
    let exchange = async {
        let request = axum::http::Request::post(format!("http://{addr}{path}"))
            .body(Body::empty())
            .map_err(|bad| format!("bad address {addr}: {bad}"))?;
        let response = shared.client.request(request).await.map_err(|failure| {
            format!("{addr} unreachable: {}", super::collector::root_cause(&failure))
        })?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|failure| format!("{addr}: the answer broke off: {failure}"))?;
        Ok((status, body.to_bytes()))
    };
    tokio::time::timeout(patience, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("{addr}: no answer within {patience:?}")))
}

/// `POST /v1/dashboard/nodes/{id}/snapshot`.
pub(super) async fn snapshot(State(shared): State<Arc<Shared>>, Path(id): Path<u64>) -> Response {
    let Some(addr) = member_addr(&shared, id) else {
        let message = format!("node {id} is not a member whose address this page knows");
        return error(StatusCode::NOT_FOUND, "unknown_node", message);
    };
    match post(&shared, &addr, "/v1/snapshot", SNAPSHOT_PATIENCE).await {
        Ok((status, body)) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(failure) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", failure),
    }
}

/// `POST /v1/demo/links/{a}/{b}/{action}`.
pub(super) async fn link(
    State(shared): State<Arc<Shared>>,
    Path((a, b, action)): Path<(u64, u64, String)>,
) -> Response {
    if action != "cut" && action != "heal" {
        let message = format!("unknown action {action:?}: cut or heal");
        return error(StatusCode::BAD_REQUEST, "bad_request", message);
    }
    if a == b {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("node {a} has no link to itself"),
        );
    }
    let (Some(addr_a), Some(addr_b)) = (member_addr(&shared, a), member_addr(&shared, b)) else {
        let message = format!("nodes {a} and {b} are not both members");
        return error(StatusCode::NOT_FOUND, "unknown_node", message);
    };
    let (path_a, path_b) =
        (format!("/v1/faults/links/{b}/{action}"), format!("/v1/faults/links/{a}/{action}"));
    let (at_a, at_b) = tokio::join!(
        post(&shared, &addr_a, &path_a, LINK_PATIENCE),
        post(&shared, &addr_b, &path_b, LINK_PATIENCE),
    );
    let outcome = |node: u64, answer: Result<(StatusCode, axum::body::Bytes), String>| match answer
    {
        Ok((status, _)) if status.is_success() => Ok(()),
        Ok((status, body)) => {
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let message = body["message"].as_str().unwrap_or("no message").to_string();
            Err(format!("node {node} answered {status}: {message}"))
        }
        Err(failure) => Err(format!("node {node}: {failure}")),
    };
    let (at_a, at_b) = (outcome(a, at_a), outcome(b, at_b));
    let past = if action == "cut" { "cut" } else { "healed" };
    match (at_a, at_b) {
        (Ok(()), Ok(())) => {
            let message = if action == "cut" {
                format!(
                    "link {a}–{b} cut: each node drops the other's messages and refuses its \
                     connections"
                )
            } else {
                format!("link {a}–{b} healed: the two nodes reconnect")
            };
            axum::Json(json!({ "message": message })).into_response()
        }
        (Err(failure), Err(other)) => {
            let message = format!("link {a}–{b} not {past}: {failure}; {other}");
            error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
        (Ok(()), Err(failure)) | (Err(failure), Ok(())) => {
            let done = if failure.starts_with(&format!("node {a}")) { b } else { a };
            let consequence = if action == "cut" {
                "one end is enough: the two nodes are apart"
            } else {
                "the other end still refuses: heal again once it answers (a restart heals it too)"
            };
            let message =
                format!("link {a}–{b} {past} at node {done} only ({failure}); {consequence}");
            error(StatusCode::SERVICE_UNAVAILABLE, "partial", message)
        }
    }
}
