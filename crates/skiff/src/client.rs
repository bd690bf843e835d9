//! A client of skiff's HTTP API (docs/http-api.md) over plain HTTP/1.1.
//!
//! One [`Client`] holds a keep-alive connection pool (hyper-util's legacy client), the list of
//! endpoints to try, and a client session for its writes. It is what `skiff kv`,
//! `skiff cluster` and each task of `skiff bench` use.
//!
//! ## Which node answers
//! Any node can serve any request: a follower forwards writes and linearizable reads to its
//! leader. So the client needs no leader discovery, only a way past nodes that cannot help.
//! A request goes to the endpoint that answered last (at first, the first one given) and moves
//! on to the next, in the order given, when
//! - the node cannot be reached (connection refused, or no connection within `--dial-timeout`),
//! - the node answers `503 no_leader` or `503 unavailable` (it knows no leader, or it is
//!   shutting down),
//! - the node answers `503 timeout` (the request may still take effect), or the connection
//!   breaks after the request was sent.
//!
//! Repeating a request on another node is always safe here: a read changes nothing, and every
//! write carries its session (below), so a write that did take effect is not applied twice.
//!
//! When a whole round over the endpoints fails and at least one node did answer (an election
//! is under way, say), the client waits (50 ms, doubling up to 1 s) and starts another round.
//! When no node answered at all, it gives up at once: nothing is listening, and waiting would
//! only delay the error. Everything, retries included, must finish within `--command-timeout`.
//!
//! ## Sessions: a retried write is applied once
//! A write that times out or loses its connection may or may not have been applied. Sending it
//! again is only safe because of sessions (Raft thesis §6.3): every write carries
//! `skiff-client-id` (a random `u64` chosen when the client is made) and `skiff-sequence`
//! (1 for the first write, one more for each next write). A retry reuses the sequence of its
//! first attempt, so the cluster recognises it and answers with the first attempt's result
//! instead of applying it again. The cluster requires a session's sequence numbers to rise, so
//! writes of one session must not overlap: that is why the write methods take `&mut self`, and
//! why each bench task has a client of its own.
//!
//! ## Errors
//! Every failure is one [`ClientError`], whose `Display` is a single line fit for a terminal:
//! `key not found: foo`, `no endpoint reachable: 127.0.0.1:2379: connection refused`,
//! `127.0.0.1:2379: bad_request: ...`.
//!
//! Left out: TLS (the API is plain HTTP), following redirects (the API forwards instead), and
//! reading `skiff-forwarded-from`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::{Instant, sleep_until, timeout_at};

use crate::api::{
    CLIENT_ID_HEADER, CasRequest, DeleteAnswer, ErrorBody, Members, MembersRequest,
    REVISION_HEADER, SEQUENCE_HEADER, ScanAnswer, SnapshotAnswer, Status, TransferAnswer,
    TransferRequest, WriteAnswer,
};
use crate::random::Random;

/// How long the client first waits after a round in which no node could help.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// The longest wait between two rounds.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What a client is told to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// The endpoints, `host:port` (an `http://` prefix is accepted and dropped), in the order
    /// to try them.
    pub endpoints: Vec<String>,
    /// How long to wait for a TCP connection.
    pub dial_timeout: Duration,
    /// How long one call may take, every retry included.
    pub command_timeout: Duration,
}

/// How a read is served (docs/http-api.md, "Reads are linearizable by default").
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Consistency {
    /// Confirmed by the leader with a quorum (ReadIndex, Raft thesis §6.4): sees every write
    /// that finished before the read began.
    Linearizable,
    /// Under the leader's lease, without a heartbeat round, on nodes started with
    /// `--lease-reads` (linearizable while clocks drift less than the bound; elsewhere the
    /// same as linearizable).
    Lease,
    /// Served from the answering node's own state: fast, possibly behind.
    Stale,
}

impl Consistency {
    /// The query parameter that asks for it (the linearizable default needs none).
    fn parameter(self) -> Option<&'static str> {
        match self {
            Consistency::Linearizable => None,
            Consistency::Lease => Some("consistency=lease"),
            Consistency::Stale => Some("consistency=stale"),
        }
    }
}

/// A value read with `get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The raw value.
    pub value: Vec<u8>,
    /// The log index of the write that produced it.
    pub revision: u64,
}

/// Why a call failed. Each variant prints as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// `404 key_not_found`.
    #[error("key not found: {key}")]
    KeyNotFound {
        /// The key asked for.
        key: String,
    },
    /// `409 cas_mismatch`: the key did not hold the expected value.
    #[error("compare failed: {key} {}", describe_current(.current))]
    CasMismatch {
        /// The key.
        key: String,
        /// Its current value; `None` when it is absent.
        current: Option<String>,
    },
    /// Any other error answer of a node.
    #[error("{endpoint}: {code}: {message}")]
    Api {
        /// The node that answered.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// The API's error code, such as `bad_request`.
        code: String,
        /// The API's message.
        message: String,
    },
    /// No endpoint could be reached in a whole round.
    #[error("no endpoint reachable: {}", join_failures(.failures))]
    Unreachable {
        /// Each endpoint with why it failed.
        failures: Vec<(String, String)>,
    },
    /// The call did not finish within the command timeout.
    #[error("timed out after {after:?}{}", .last.as_ref().map(|last| format!(" (last error: {last})")).unwrap_or_default())]
    Timeout {
        /// The command timeout.
        after: Duration,
        /// The last thing that went wrong, if anything did before time ran out.
        last: Option<String>,
    },
    /// A node answered something the API does not allow.
    #[error("{endpoint}: unexpected answer: {reason}")]
    Protocol {
        /// The node.
        endpoint: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// The client was given something it cannot use.
    #[error("{0}")]
    Usage(String),
}

/// Says what a CAS found: "is absent" or "holds \"v\"".
fn describe_current(current: &Option<String>) -> String {
    match current {
        Some(value) => format!("holds {value:?}"),
        None => "is absent".to_string(),
    }
}

/// Joins `(endpoint, reason)` pairs as `a: reason; b: reason`.
fn join_failures(failures: &[(String, String)]) -> String {
    let parts: Vec<String> =
        failures.iter().map(|(endpoint, reason)| format!("{endpoint}: {reason}")).collect();
    parts.join("; ")
}

/// A client session (Raft thesis §6.3): the id of this client and its last write's sequence.
#[derive(Debug)]
struct Session {
    /// Random and non-zero, chosen once per client.
    client_id: u64,
    /// The sequence of the last write sent; 0 before the first. Rises by one per write, and
    /// stays the same across the retries of one write.
    last_sequence: u64,
}

/// One request, as sent to any endpoint (and again on a retry).
#[derive(Debug)]
struct Call {
    /// The HTTP method.
    method: Method,
    /// Path and query, starting with `/`, already percent-encoded.
    path: String,
    /// The request body.
    body: Bytes,
    /// The session headers of a write: client id and sequence. Every write has them, which
    /// is what makes sending a write again safe.
    session: Option<(u64, u64)>,
}

/// A node's answer, whatever its status.
#[derive(Debug)]
struct Answer {
    /// The endpoint that answered.
    endpoint: String,
    /// The HTTP status.
    status: StatusCode,
    /// The response headers.
    headers: HeaderMap,
    /// The whole body.
    body: Bytes,
}

/// What one attempt at one endpoint came to.
#[derive(Debug)]
enum Attempt {
    /// An answer to hand to the caller (success or an error the caller must see).
    Answered(Answer),
    /// This endpoint cannot help now; `reachable` tells whether a node did answer.
    MoveOn {
        /// Why the endpoint could not help.
        reason: String,
        /// Whether a node answered (so the cluster is alive and a later round may succeed).
        reachable: bool,
    },
    /// A failure no other endpoint can fix.
    Fail(ClientError),
}

/// A client of one cluster. See the module documentation.
#[derive(Debug)]
pub struct Client {
    /// The keep-alive connection pool.
    http: HttpClient<HttpConnector, Full<Bytes>>,
    /// The endpoints, `host:port`, never empty.
    endpoints: Vec<String>,
    /// How long one call may take.
    command_timeout: Duration,
    /// The endpoint that answered last, tried first by the next call. Always a valid index.
    preferred: AtomicUsize,
    /// The session of this client's writes.
    session: Session,
}

impl Client {
    /// Makes a client; nothing is dialled until the first call.
    pub fn new(options: ClientOptions) -> Result<Client, ClientError> {
        let endpoints = options
            .endpoints
            .iter()
            .map(|endpoint| normalize_endpoint(endpoint))
            .collect::<Result<Vec<String>, ClientError>>()?;
        if endpoints.is_empty() {
            return Err(ClientError::Usage("no endpoints given".to_string()));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(options.dial_timeout));
        connector.set_nodelay(true);
        let http = HttpClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let client_id = Random::from_entropy().next_u64().max(1);
        Ok(Client {
            http,
            endpoints,
            command_timeout: options.command_timeout,
            preferred: AtomicUsize::new(0),
            session: Session { client_id, last_sequence: 0 },
        })
    }

    /// The endpoints, normalised to `host:port`, in the order given.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The random id of this client's session.
    #[cfg(test)]
    pub fn client_id(&self) -> u64 {
        self.session.client_id
    }

    /// `PUT /v1/kv/{key}`: stores a value.
    pub async fn put(&mut self, key: &str, value: Bytes) -> Result<WriteAnswer, ClientError> {
        let call = self.write(Method::PUT, key_path(key, "")?, value);
        let answer = self.send(&call).await?;
        expect_json(key, answer)
    }

    /// `GET /v1/kv/{key}`: reads a value.
    pub async fn get(&self, key: &str, consistency: Consistency) -> Result<Value, ClientError> {
        let mut path = key_path(key, "")?;
        if let Some(parameter) = consistency.parameter() {
            path.push('?');
            path.push_str(parameter);
        }
        let answer = self.send(&Call::read(Method::GET, path)).await?;
        if answer.status != StatusCode::OK {
            return Err(error_of(key, answer));
        }
        let revision = answer
            .headers
            .get(REVISION_HEADER)
            .and_then(|header| header.to_str().ok())
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| ClientError::Protocol {
                endpoint: answer.endpoint.clone(),
                reason: format!("a read without a numeric {REVISION_HEADER} header"),
            })?;
        Ok(Value { value: answer.body.to_vec(), revision })
    }

    /// `DELETE /v1/kv/{key}`: removes a key; a missing key is [`ClientError::KeyNotFound`].
    pub async fn delete(&mut self, key: &str) -> Result<DeleteAnswer, ClientError> {
        let call = self.write(Method::DELETE, key_path(key, "")?, Bytes::new());
        let answer = self.send(&call).await?;
        expect_json(key, answer)
    }

    /// `POST /v1/kv/{key}/cas`: sets (or, with `value: None`, deletes) the key if it holds
    /// `expected` (or, with `expected: None`, if it is absent).
    pub async fn cas(
        &mut self,
        key: &str,
        expected: Option<&str>,
        value: Option<&str>,
    ) -> Result<WriteAnswer, ClientError> {
        let request =
            CasRequest { expected: expected.map(str::to_string), value: value.map(str::to_string) };
        let body = serde_json::to_vec(&request).map_err(|error| {
            ClientError::Usage(format!("cannot encode the compare-and-swap: {error}"))
        })?;
        let call = self.write(Method::POST, key_path(key, "/cas")?, Bytes::from(body));
        let answer = self.send(&call).await?;
        expect_json(key, answer)
    }

    /// `GET /v1/kv?prefix=P`: the keys starting with `prefix`, in key order, at most `limit`
    /// of them (the node's default when `None`).
    pub async fn scan(
        &self,
        prefix: &str,
        limit: Option<u32>,
        consistency: Consistency,
    ) -> Result<ScanAnswer, ClientError> {
        let mut path = format!("/v1/kv?prefix={}", percent_encode(prefix));
        if let Some(limit) = limit {
            path.push_str(&format!("&limit={limit}"));
        }
        if let Some(parameter) = consistency.parameter() {
            path.push('&');
            path.push_str(parameter);
        }
        let answer = self.send(&Call::read(Method::GET, path)).await?;
        expect_json(prefix, answer)
    }

    /// `GET /v1/members`: the configuration as the first endpoint that answers knows it.
    pub async fn members(&self) -> Result<Members, ClientError> {
        let answer = self.send(&Call::read(Method::GET, "/v1/members".to_string())).await?;
        expect_json("", answer)
    }

    /// `POST /v1/members`: changes the membership (forwarded to the leader by any node) and
    /// waits until the change is complete.
    pub async fn change_members(&self, request: &MembersRequest) -> Result<Members, ClientError> {
        let body = serde_json::to_vec(request).map_err(|error| {
            ClientError::Usage(format!("cannot encode the membership change: {error}"))
        })?;
        let call = Call {
            method: Method::POST,
            path: "/v1/members".to_string(),
            body: Bytes::from(body),
            session: None,
        };
        expect_json("", self.send(&call).await?)
    }

    /// `POST /v1/leader/transfer`: hands leadership to `to` (the leader's pick when `None`;
    /// forwarded to the leader by any node) and waits until the new leader is known.
    pub async fn transfer_leadership(
        &self,
        to: Option<u64>,
    ) -> Result<TransferAnswer, ClientError> {
        let body = serde_json::to_vec(&TransferRequest { to }).map_err(|error| {
            ClientError::Usage(format!("cannot encode the transfer request: {error}"))
        })?;
        let call = Call {
            method: Method::POST,
            path: "/v1/leader/transfer".to_string(),
            body: Bytes::from(body),
            session: None,
        };
        expect_json("", self.send(&call).await?)
    }

    /// `GET /v1/status` of one endpoint (by its place in [`Client::endpoints`]), without
    /// moving on to another.
    pub async fn status_of(&self, index: usize) -> Result<Status, ClientError> {
        let call = Call::read(Method::GET, "/v1/status".to_string());
        expect_json("", self.ask_one(index, &call).await?)
    }

    /// `POST /v1/snapshot` to one endpoint, without moving on: that node snapshots its own
    /// state. A `409 nothing_new` (naming the latest snapshot) is an answer too, with `taken`
    /// false.
    pub async fn snapshot_of(&self, index: usize) -> Result<SnapshotAnswer, ClientError> {
        let call = Call::read(Method::POST, "/v1/snapshot".to_string());
        let answer = self.ask_one(index, &call).await?;
        let taken = answer.status == StatusCode::OK;
        if !taken && answer.status != StatusCode::CONFLICT {
            return Err(error_of("", answer));
        }
        let parsed: SnapshotAnswer =
            serde_json::from_slice(&answer.body).map_err(|error| ClientError::Protocol {
                endpoint: answer.endpoint.clone(),
                reason: format!("a body that is not the API's JSON ({error})"),
            })?;
        Ok(SnapshotAnswer { taken, ..parsed })
    }

    /// Sends a call to one endpoint (by its place in [`Client::endpoints`]) within the command
    /// timeout, without moving on to another.
    async fn ask_one(&self, index: usize, call: &Call) -> Result<Answer, ClientError> {
        let deadline = Instant::now() + self.command_timeout;
        let answer = match timeout_at(deadline, self.attempt(index, call)).await {
            Err(_elapsed) => {
                return Err(ClientError::Timeout { after: self.command_timeout, last: None });
            }
            Ok(Attempt::Answered(answer)) => answer,
            Ok(Attempt::MoveOn { reason, reachable: true }) => {
                return Err(ClientError::Api {
                    endpoint: self.endpoints[index].clone(),
                    status: StatusCode::SERVICE_UNAVAILABLE.as_u16(),
                    code: "unavailable".to_string(),
                    message: reason,
                });
            }
            Ok(Attempt::MoveOn { reason, reachable: false }) => {
                return Err(ClientError::Unreachable {
                    failures: vec![(self.endpoints[index].clone(), reason)],
                });
            }
            Ok(Attempt::Fail(error)) => return Err(error),
        };
        Ok(answer)
    }

    /// A write call: the next sequence number of the session is taken here, once, so that
    /// every retry of this call carries the same one.
    fn write(&mut self, method: Method, path: String, body: Bytes) -> Call {
        self.session.last_sequence += 1;
        Call {
            method,
            path,
            body,
            session: Some((self.session.client_id, self.session.last_sequence)),
        }
    }

    /// Sends a call, moving over the endpoints as the module documentation describes, until
    /// an endpoint gives an answer or the command timeout runs out.
    async fn send(&self, call: &Call) -> Result<Answer, ClientError> {
        let deadline = Instant::now() + self.command_timeout;
        let first = self.preferred.load(Ordering::Relaxed);
        let mut backoff = FIRST_BACKOFF;
        let mut last: Option<String> = None;
        loop {
            let mut failures = Vec::new();
            let mut reachable = false;
            for offset in 0..self.endpoints.len() {
                let index = (first + offset) % self.endpoints.len();
                let attempt = match timeout_at(deadline, self.attempt(index, call)).await {
                    Ok(attempt) => attempt,
                    Err(_elapsed) => {
                        return Err(ClientError::Timeout { after: self.command_timeout, last });
                    }
                };
                match attempt {
                    Attempt::Answered(answer) => {
                        self.preferred.store(index, Ordering::Relaxed);
                        return Ok(answer);
                    }
                    Attempt::MoveOn { reason, reachable: answered } => {
                        reachable |= answered;
                        last = Some(format!("{}: {reason}", self.endpoints[index]));
                        failures.push((self.endpoints[index].clone(), reason));
                    }
                    Attempt::Fail(error) => return Err(error),
                }
            }
            if !reachable {
                return Err(ClientError::Unreachable { failures });
            }
            let wake = Instant::now() + backoff;
            if wake >= deadline {
                return Err(ClientError::Timeout { after: self.command_timeout, last });
            }
            sleep_until(wake).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Sends a call to one endpoint and judges the answer.
    async fn attempt(&self, index: usize, call: &Call) -> Attempt {
        let endpoint = &self.endpoints[index];
        let mut request = Request::builder()
            .method(call.method.clone())
            .uri(format!("http://{endpoint}{}", call.path));
        if let Some((client_id, sequence)) = call.session {
            request = request
                .header(CLIENT_ID_HEADER, client_id.to_string())
                .header(SEQUENCE_HEADER, sequence.to_string());
        }
        if call.method == Method::POST {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let request = match request.body(Full::new(call.body.clone())) {
            Ok(request) => request,
            Err(error) => {
                return Attempt::Fail(ClientError::Usage(format!(
                    "cannot make a request to {endpoint}: {error}"
                )));
            }
        };
        let response = match self.http.request(request).await {
            Ok(response) => response,
            Err(error) if error.is_connect() => {
                return Attempt::MoveOn {
                    reason: format!("cannot connect: {}", innermost(&error)),
                    reachable: false,
                };
            }
            Err(error) => return broken(&error),
        };
        let (parts, body) = response.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => return broken(&error),
        };
        let answer = Answer {
            endpoint: endpoint.clone(),
            status: parts.status,
            headers: parts.headers,
            body,
        };
        if answer.status == StatusCode::SERVICE_UNAVAILABLE {
            // no_leader, unavailable and timeout alike: another node may do better, and a
            // write that did take effect is recognised by its session.
            let error = serde_json::from_slice::<ErrorBody>(&answer.body).ok();
            let code = error.as_ref().map_or("unavailable", |error| error.code.as_str());
            let message = error.as_ref().map_or("", |error| error.message.as_str());
            return Attempt::MoveOn { reason: format!("{code}: {message}"), reachable: true };
        }
        Attempt::Answered(answer)
    }
}

impl Call {
    /// A read: no session.
    fn read(method: Method, path: String) -> Call {
        Call { method, path, body: Bytes::new(), session: None }
    }
}

/// Accepts `host:port` or `http://host:port/` and returns `host:port`.
fn normalize_endpoint(endpoint: &str) -> Result<String, ClientError> {
    let trimmed = endpoint.trim();
    if trimmed.starts_with("https://") {
        return Err(ClientError::Usage(format!("endpoint {trimmed:?}: skiff speaks plain HTTP")));
    }
    let bare = trimmed.strip_prefix("http://").unwrap_or(trimmed).trim_end_matches('/');
    let valid = !bare.is_empty()
        && !bare.contains('/')
        && bare.parse::<hyper::http::uri::Authority>().is_ok()
        && bare.rsplit_once(':').is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    if valid {
        Ok(bare.to_string())
    } else {
        Err(ClientError::Usage(format!("endpoint {endpoint:?} is not host:port")))
    }
}

/// The longest key the API accepts, in bytes (docs/http-api.md).
const MAX_KEY_LEN: usize = 4096;

/// The path of a key: `/v1/kv/` + the key percent-encoded as one segment + `suffix`. A key the
/// API would refuse is refused here, with a clearer message than a node could give (an empty
/// key would not even reach the key routes).
fn key_path(key: &str, suffix: &str) -> Result<String, ClientError> {
    if key.is_empty() {
        return Err(ClientError::Usage("a key must not be empty".to_string()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(ClientError::Usage(format!(
            "a key is at most {MAX_KEY_LEN} bytes; this one has {}",
            key.len()
        )));
    }
    Ok(format!("/v1/kv/{}{suffix}", percent_encode(key)))
}

/// Percent-encodes every byte except RFC 3986's unreserved characters, so that a key's `/`,
/// `?`, `%` or space reach the node as part of the key (the node percent-decodes the path).
pub fn percent_encode(text: &str) -> String {
    let mut encoded = Vec::with_capacity(text.len());
    push_percent_encoded(&mut encoded, text);
    String::from_utf8(encoded).expect("percent-encoding writes ASCII only")
}

/// Appends `text` percent-encoded to `out`, as [`percent_encode`] does (the bench builds its
/// requests this way, without a `String` per request).
pub fn push_percent_encoded(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in text.as_bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte);
        } else {
            out.extend_from_slice(&[
                b'%',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 15)],
            ]);
        }
    }
}

/// The connection broke after the request went out: the node may be gone, so move on.
fn broken(error: &(dyn std::error::Error + 'static)) -> Attempt {
    Attempt::MoveOn { reason: format!("connection lost: {}", innermost(error)), reachable: false }
}

/// The message at the bottom of an error's chain ("Connection refused (os error 111)"), which
/// says more than hyper's wrappers ("client error (Connect)").
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut deepest = error;
    while let Some(source) = deepest.source() {
        deepest = source;
    }
    deepest.to_string()
}

/// A `200` answer's JSON body, or the error the answer stands for.
fn expect_json<T: serde::de::DeserializeOwned>(
    key: &str,
    answer: Answer,
) -> Result<T, ClientError> {
    if answer.status != StatusCode::OK {
        return Err(error_of(key, answer));
    }
    serde_json::from_slice(&answer.body).map_err(|error| ClientError::Protocol {
        endpoint: answer.endpoint,
        reason: format!("a body that is not the API's JSON ({error})"),
    })
}

/// The error a non-200 answer stands for, with the key filled in where the error is about it.
fn error_of(key: &str, answer: Answer) -> ClientError {
    let Ok(body) = serde_json::from_slice::<ErrorBody>(&answer.body) else {
        return ClientError::Protocol {
            endpoint: answer.endpoint,
            reason: format!(
                "status {} with a body that is not an API error: {:?}",
                answer.status.as_u16(),
                String::from_utf8_lossy(&answer.body)
            ),
        };
    };
    match (answer.status, body.code.as_str()) {
        (StatusCode::NOT_FOUND, "key_not_found") => {
            ClientError::KeyNotFound { key: key.to_string() }
        }
        (StatusCode::CONFLICT, "cas_mismatch") => {
            ClientError::CasMismatch { key: key.to_string(), current: body.current }
        }
        (status, _) => ClientError::Api {
            endpoint: answer.endpoint,
            status: status.as_u16(),
            code: body.code,
            message: body.message,
        },
    }
}

#[cfg(test)]
mod tests;
