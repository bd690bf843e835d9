//! Serving the client API: the accept loop, each connection driven by hyper's HTTP/1.1
//! connection, and the service that sends a request to the key routes (`keys.rs`) or to the
//! axum router of everything else.
//!
//! This is what `axum::serve` does for a router, less what the API does not use: HTTP/2
//! sniffing and connection upgrades (the dashboard streams with server-sent events, plain
//! HTTP/1.1).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use axum::Router;
use axum::http::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use super::{Api, keys};

/// How long to wait before accepting again after an accept failed for a reason other than the
/// one connection (out of file descriptors, say), so that a full table is not spun on.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The service of every client connection.
#[derive(Clone)]
pub struct ClientService {
    /// What the key routes share.
    api: Api,
    /// Everything but the key routes.
    routes: TowerToHyperService<Router>,
}

impl ClientService {
    /// The key routes of `api`, and `routes` for the rest.
    pub(super) fn new(api: Api, routes: Router) -> ClientService {
        ClientService { api, routes: TowerToHyperService::new(routes) }
    }
}

/// The answer to one request, on its way.
type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl Service<Request<Incoming>> for ClientService {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: Request<Incoming>) -> Answer {
        if request.uri().path().starts_with(keys::PREFIX) {
            let api = self.api.clone();
            Box::pin(async move { Ok(keys::serve(api, request).await) })
        } else {
            Box::pin(self.routes.call(request))
        }
    }
}

/// Serves `service` on `listener` until `shutdown` resolves; then stops accepting, lets every
/// connection finish the request it is serving, and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    service: ClientService,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Answers are copied into the connection's write buffer and go out in one `write`, instead
    // of a `writev` of the head and the body's own buffer. The copy is a few hundred bytes for
    // a put's answer or a get's value; what it saves is hyper's queue of buffers and the
    // kernel's second segment of the vector. `cpu_per_op.sh`, 6 alternating rounds of puts at
    // 256 clients: the leader's CPU per put lower in all 6 (-2 to -12 %, -5.5 % mean), puts/s
    // +1.7 % mean; gets at 256 clients, 2 rounds: 12.1/12.4 -> 11.7/11.6 us, +2/+7 % gets/s.
    builder.writev(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                tracing::error!(%error, "accepting a client connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // As every other socket of the project: an answer written in more than one piece (a
        // large scan flushed as the buffer fills) must not wait for the client's delayed ACK.
        // Puts at 256 clients, 6 alternating rounds: leader CPU per put -2 % (noise level).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY on a client connection");
        }
        let connection =
            graceful.watch(builder.serve_connection(TokioIo::new(stream), service.clone()));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "a client connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Whether an accept failed for the one connection only (it was reset before it was
/// accepted), so that accepting again at once is right.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
