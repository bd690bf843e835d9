//! The dashboard's HTTP routes: the page and its assets (embedded in the binary), the event
//! stream, a node's report, the snapshot relay (`operator.rs`), and in `skiff demo` the
//! process controls, the link controls and the relay of keys, leadership transfers and
//! membership changes (a node's own page calls its own API for those).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt as _;
use http_body_util::BodyExt;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::collector::{NodeReport, relay_order};
use super::{ProcessAction, Shared, Source, operator};
use crate::http::status_json;

/// The page.
const INDEX_HTML: &str = include_str!("assets/index.html");
/// Its script.
const DASHBOARD_JS: &str = include_str!("assets/dashboard.js");
/// Its style sheet.
const DASHBOARD_CSS: &str = include_str!("assets/dashboard.css");

/// The page may load its own script, style and events and nothing else: the browser itself
/// enforces that the dashboard makes no request to another origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// How long the demo waits for a node to answer a relayed key request.
const RELAY_TIMEOUT: Duration = Duration::from_secs(10);

/// The routes of `shared`'s mode (see [`super::Dashboard::router`]).
pub(super) fn router(shared: Arc<Shared>) -> Router {
    let router = Router::new()
        .route("/", get(page))
        .route("/dashboard", get(page))
        .route("/dashboard/dashboard.js", get(script))
        .route("/dashboard/dashboard.css", get(style))
        .route("/v1/events", get(events))
        .route("/v1/dashboard/nodes/{id}/snapshot", post(operator::snapshot));
    let router = match &shared.source {
        Source::Node { .. } => router.route("/v1/dashboard/node", get(node_report)),
        Source::Members(_) => router
            .route("/v1/kv/{*key}", get(relay).put(relay))
            .route("/v1/leader/transfer", post(relay))
            .route("/v1/members", get(relay).post(relay))
            .route("/v1/demo/nodes/{id}/{action}", post(act))
            .route("/v1/demo/links/{a}/{b}/{action}", post(operator::link)),
    };
    router.with_state(shared)
}

/// An error answer in the API's form: `{code, message}`.
pub(super) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "code": code, "message": message.into() }))).into_response()
}

/// An embedded asset with its content type; pages are never cached, so that a new binary
/// serves its own script at once.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// `GET /` and `/dashboard`.
async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /dashboard/dashboard.js`.
async fn script() -> Response {
    asset("text/javascript; charset=utf-8", DASHBOARD_JS)
}

/// `GET /dashboard/dashboard.css`.
async fn style() -> Response {
    asset("text/css; charset=utf-8", DASHBOARD_CSS)
}

/// `GET /v1/events`: a `hello` event (the page's settings and the samples so far), then a
/// `sample` event per sample, until the page leaves or the server stops.
async fn events(State(shared): State<Arc<Shared>>) -> Response {
    let mut closed = shared.closed.subscribe();
    if *closed.borrow() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the server is stopping");
    }
    // Subscribed before the history is read: a sample published in between arrives twice
    // (the page drops it by its sequence number) rather than never.
    let updates = shared.updates.subscribe();
    let history: Vec<String> = shared.history().iter().map(|sample| sample.json.clone()).collect();
    let served_by = match &shared.source {
        Source::Node { handle, .. } => Some(handle.info().id.0),
        Source::Members(_) => None,
    };
    let actions: Vec<&str> = match shared.control {
        Some(_) => ProcessAction::ALL.iter().map(|action| action.name()).collect(),
        None => Vec::new(),
    };
    let settings = json!({
        "title": shared.title,
        "served_by": served_by,
        "process_actions": actions,
        "link_actions": matches!(shared.source, Source::Members(_)),
        "sample_interval_ms": super::SAMPLE_INTERVAL.as_millis() as u64,
    });
    let hello = format!(r#"{{"settings":{settings},"history":[{}]}}"#, history.join(","));
    let first = futures_util::stream::once(async move {
        Ok::<Event, Infallible>(Event::default().event("hello").data(hello))
    });
    let rest = futures_util::stream::unfold(updates, |mut updates| async move {
        loop {
            match updates.recv().await {
                Ok(sample) => {
                    let event = Event::default()
                        .event("sample")
                        .id(sample.sequence.to_string())
                        .data(sample.json.clone());
                    return Some((Ok(event), updates));
                }
                // A page that fell behind skips what it missed; the next sample is whole.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let until_closed = async move {
        let _ = closed.wait_for(|closed| *closed).await;
    };
    let stream = first.chain(rest).take_until(until_closed);
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

/// `GET /v1/dashboard/node`: this node's status and load, for the other members' collectors.
async fn node_report(State(shared): State<Arc<Shared>>) -> Response {
    let Source::Node { handle, .. } = &shared.source else {
        return error(StatusCode::NOT_FOUND, "bad_request", "not a node");
    };
    match handle.status().await {
        Ok(status) => {
            let info = handle.info();
            let status = status_json(&status, info.cluster_id, &info.client_addr, &info.peer_addr);
            let load = shared.load().clone();
            axum::Json(NodeReport { status, load }).into_response()
        }
        Err(service) => error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", service.to_string()),
    }
}

/// `POST /v1/demo/nodes/{id}/{action}`: stop, pause, resume or restart a node's process.
async fn act(
    State(shared): State<Arc<Shared>>,
    Path((id, action)): Path<(u64, String)>,
) -> Response {
    let Some(control) = shared.control.clone() else {
        return error(StatusCode::NOT_FOUND, "bad_request", "no process control here");
    };
    let action: ProcessAction = match action.parse() {
        Ok(action) => action,
        Err(message) => return error(StatusCode::BAD_REQUEST, "bad_request", message),
    };
    match tokio::task::spawn_blocking(move || control.act(id, action)).await {
        Ok(Ok(message)) => axum::Json(json!({ "message": message })).into_response(),
        Ok(Err(message)) => error(StatusCode::CONFLICT, "refused", message),
        Err(panicked) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the process control failed: {panicked}"),
        ),
    }
}

/// `GET` and `PUT /v1/kv/{key}`, `POST /v1/leader/transfer` and `GET`/`POST /v1/members` in
/// the demo: relayed to a live node, the leader first (any node forwards what only the leader
/// can do). A read moves on to the next node on any failure; a write, transfer or membership
/// change only when it could not connect, since a request that reached a node may have taken
/// effect.
async fn relay(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("/", |path| path.as_str()).to_string();
    let mut failures = Vec::new();
    for addr in relay_order(&shared) {
        let mut request = axum::http::Request::builder()
            .method(method.clone())
            .uri(format!("http://{addr}{path}"));
        if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = match request.body(Body::from(body.clone())) {
            Ok(request) => request,
            Err(bad) => return error(StatusCode::BAD_REQUEST, "bad_request", bad.to_string()),
        };
        let exchange = async {
            let response = shared
                .client
                .request(request)
                .await
                .map_err(|failure| (failure.is_connect(), format!("{addr}: {failure}")))?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|failure| (false, format!("{addr}: the answer broke off: {failure}")))?;
            Ok::<_, (bool, String)>(Response::from_parts(parts, Body::from(body.to_bytes())))
        };
        match tokio::time::timeout(RELAY_TIMEOUT, exchange).await {
            Ok(Ok(response)) => return response,
            Ok(Err((not_sent, failure))) => {
                failures.push(failure);
                if !not_sent && method != Method::GET {
                    break;
                }
            }
            Err(_) => {
                failures.push(format!("{addr}: no answer within {RELAY_TIMEOUT:?}"));
                if method != Method::GET {
                    break;
                }
            }
        }
    }
    let message = if failures.is_empty() {
        "no node answered the last sample; retry in a moment".to_string()
    } else {
        format!("no node took the request ({}); its outcome is unknown", failures.join("; "))
    };
    error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
}
