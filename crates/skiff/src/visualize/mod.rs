//! `skiff sim --seed N --web`: the protocol visualizer, a web page served on 127.0.0.1.
//!
//! It has two parts, on one page:
//! - **A simulator run, one event at a time** (`replay.rs`): seed N of crates/sim, stepped
//!   forwards and backwards; after each event the page shows every node's role, term, vote,
//!   commit index and log (terms coloured and written), the Raft messages in flight, the trace
//!   lines the event wrote, and whether every invariant still holds. A failing seed offers a
//!   jump to the step where the invariant broke.
//! - **A small cluster driven by hand** (`hand.rs`): three cores of crates/raft in the
//!   in-memory `LocalCluster` of its testkit, where nothing happens unless the person asks:
//!   deliver or drop a chosen message, tick a node or fire its election timeout, crash or
//!   restart it, cut it off from the others or heal, propose an entry at the leader.
//!
//! Both only show what the core, its driver and the simulator report; the page computes no
//! protocol state. Assets are embedded; the page makes no request to another origin.
//!
//! Backwards is forwards again: a simulator run is a pure function of its seed, so the server
//! reaches step `n` by replaying from the start (keeping the stepper of the last request, so
//! that stepping forwards costs one event). The run is counted once at start-up, to know its
//! length and failing step.

mod hand;
mod replay;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use skiff_sim::Options;
use skiff_sim::stepper::{CoreView, InFlight, NodeView};

/// The page.
const INDEX_HTML: &str = include_str!("assets/index.html");
/// Its script.
const VISUALIZE_JS: &str = include_str!("assets/visualize.js");
/// Its style sheet.
const VISUALIZE_CSS: &str = include_str!("assets/visualize.css");

/// The page may load only its own script, style and data.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// How many of each log's last entries a view shows.
pub const LOG_WINDOW: u64 = 30;

/// Serves the visualizer for `options` on `addr` until Ctrl-C.
pub fn serve(options: Options, addr: SocketAddr) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("skiff sim: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options, addr)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("skiff sim: {}", crate::node::one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// Counts the run, binds, prints the URL and serves.
async fn run(options: Options, addr: SocketAddr) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let seed = options.seed;
    eprintln!("skiff sim: stepping through seed {seed} once to count its events…");
    let replay = tokio::task::spawn_blocking(move || replay::Replay::new(options)).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve the visualizer on {addr}"))?;
    let url = format!("http://{}/", listener.local_addr()?);
    println!("{}", replay.summary_line());
    println!("visualizer  {url}   (open it in a browser; Ctrl-C stops it)");
    let router = router(Arc::new(replay), Arc::new(hand::Hand::new()));
    axum::serve(listener, router).with_graceful_shutdown(crate::node::shutdown_signal()).await?;
    Ok(())
}

/// Every route: the page, its assets, the run's steps and the hand-driven cluster.
fn router(replay: Arc<replay::Replay>, hand: Arc<hand::Hand>) -> Router {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route(
            "/visualize/visualize.js",
            get(|| async { asset("text/javascript; charset=utf-8", VISUALIZE_JS) }),
        )
        .route(
            "/visualize/visualize.css",
            get(|| async { asset("text/css; charset=utf-8", VISUALIZE_CSS) }),
        )
        .merge(replay::routes(replay))
        .merge(hand::routes(hand))
}

/// An embedded asset.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    response
}

/// An error answer in the API's form.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let code = if status.is_client_error() { "bad_request" } else { "internal" };
    (status, axum::Json(json!({ "code": code, "message": message.into() }))).into_response()
}

/// A node as the page draws it (the same shape for both parts).
fn node_json(node: &NodeView) -> Value {
    json!({
        "id": node.id,
        "state": node.state,
        "incarnation": node.incarnation,
        "core": node.core.as_ref().map(core_json),
        "log_first": node.log_first,
        "log_terms": node.log_terms,
        "last_index": node.last_index,
    })
}

/// A core's report.
fn core_json(core: &CoreView) -> Value {
    json!({
        "role": core.role,
        "term": core.term,
        "vote": core.vote,
        "leader": core.leader,
        "commit": core.commit,
        "durable": core.durable,
        "progress": core.progress.iter().map(|(id, index)| json!({"id": id, "match": index}))
            .collect::<Vec<_>>(),
    })
}

/// A message in flight; `arrives_us` is simulated microseconds, absent by hand.
fn message_json(message: &InFlight) -> Value {
    json!({
        "arrives_us": message.arrives.0,
        "arrives": message.arrives.to_string(),
        "from": message.from,
        "to": message.to,
        "text": message.text,
    })
}
