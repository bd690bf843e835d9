//! Fault injection over HTTP: cutting and healing this node's link to a peer, so that a person
//! (`skiff demo`'s page) or a test can partition a running cluster of real processes.
//!
//! A cut is the transport's ([`Transport::cut`]): the link behaves as a network partition,
//! both ways, until healed; it lives in memory only, so a restart heals it. Cutting on one
//! end is enough to part two nodes; `skiff demo` cuts on both ends, so that each node reports
//! the cut in its status (`cut_links`) even if the other restarts.
//!
//! These routes exist only on a node started with `--allow-fault-injection`. On any other
//! node every `/v1/faults/...` request is refused with `403 fault_injection_disabled`, naming
//! the flag: a production node never lets a client partition it. The routes are per node and
//! never forwarded.
//!
//! | request | answer |
//! |---|---|
//! | `GET /v1/faults/links` | `{"cut": [2, 3]}`: the peers whose link is cut |
//! | `POST /v1/faults/links/{peer}/cut` | cuts the link; `{"cut": [...], "changed": true}` |
//! | `POST /v1/faults/links/{peer}/heal` | heals it; the same answer |
//!
//! `/v1/faults/snapshot-chunks` (holding snapshot transfers mid-way) lives with the transfer, in
//! `crate::snapshot` (`ChunkHold`), and is merged in by the server under the same flag.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::json;
use skiff_raft::NodeId;

use crate::transport::Transport;

/// The flag that enables these routes.
pub const FLAG: &str = "--allow-fault-injection";

/// The routes: working ones over `transport` when fault injection is allowed, refusals when it
/// is `None`.
pub fn router(transport: Option<Transport>) -> Router {
    match transport {
        Some(transport) => Router::new()
            .route("/v1/faults/links", get(links))
            .route("/v1/faults/links/{peer}/{action}", post(act))
            .with_state(transport),
        None => Router::new().route("/v1/faults/{*rest}", any(disabled)),
    }
}

/// An error answer in the API's form.
fn error(status: StatusCode, code: &str, message: String) -> Response {
    (status, axum::Json(json!({ "code": code, "message": message }))).into_response()
}

/// The answer every route gives: the links cut now.
fn cut_links(transport: &Transport) -> Vec<u64> {
    transport.cut_links().into_iter().map(|peer| peer.0).collect()
}

/// `GET /v1/faults/links`.
async fn links(State(transport): State<Transport>) -> Response {
    axum::Json(json!({ "cut": cut_links(&transport) })).into_response()
}

/// `POST /v1/faults/links/{peer}/{cut|heal}`.
async fn act(
    State(transport): State<Transport>,
    Path((peer, action)): Path<(String, String)>,
) -> Response {
    let this = transport.config().id;
    let Ok(peer) = peer.parse::<u64>().map(NodeId) else {
        let message = format!("{peer:?} is not a node id");
        return error(StatusCode::BAD_REQUEST, "bad_request", message);
    };
    if peer == this {
        let message = format!("node {this} has no link to itself");
        return error(StatusCode::BAD_REQUEST, "bad_request", message);
    }
    let changed = match action.as_str() {
        "cut" => transport.cut(peer),
        "heal" => transport.heal(peer),
        _ => {
            let message = format!("unknown action {action:?}: cut or heal");
            return error(StatusCode::BAD_REQUEST, "bad_request", message);
        }
    };
    match changed {
        Ok(changed) => {
            axum::Json(json!({ "cut": cut_links(&transport), "changed": changed })).into_response()
        }
        Err(unknown) => error(StatusCode::NOT_FOUND, "unknown_node", unknown.to_string()),
    }
}

/// Any `/v1/faults/...` request on a node without fault injection.
async fn disabled() -> Response {
    let message = format!(
        "fault injection is disabled on this node: only a node started with {FLAG} (for demos \
         and tests, never in production) lets a client cut its links"
    );
    error(StatusCode::FORBIDDEN, "fault_injection_disabled", message)
}
