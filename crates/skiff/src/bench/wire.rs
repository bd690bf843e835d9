//! The bench's own HTTP/1.1 connection: one keep-alive TCP connection per bench client, requests
//! written and answers parsed right on the client's task.
//!
//! The bench shares the machine with the nodes it measures, so every microsecond of CPU it spends
//! per request is taken from them. The general [`Client`](crate::client::Client) runs its
//! connection on a task of its own (hyper's pool), which costs two task hand-offs, a pool lock and
//! a JSON parse per request: about as much CPU as the leader spends serving the request. Here a
//! request is one `write` of bytes formatted into a reused buffer and one or two `read`s, the
//! answer's head parsed with `httparse` (already in the tree through hyper).
//!
//! Requests are the same ones the general client sends — same paths, same session headers
//! (client id and a rising sequence per write, so the server does the same exactly-once work) —
//! and any answer but a 2xx is an error with its status and body. A connection that fails is
//! dropped; the next request connects again, trying the endpoints in the client's order.
//!
//! With [`Protocol::Etcd`] the same connection speaks etcd v3's JSON gateway instead
//! (`POST /v3/kv/put` and `POST /v3/kv/range`, keys and values in base64), so that one load
//! generator measures skiff and etcd on the same machine in the same run. etcd's native clients
//! speak gRPC; the gateway costs etcd a JSON translation per request, as skiff's HTTP API costs
//! skiff — both are measured through their HTTP front door.

use std::io::{self, Write as _};
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::api::{CLIENT_ID_HEADER, SEQUENCE_HEADER};
use crate::client::push_percent_encoded;

/// Answers larger than this are refused (the bench's values are at most 64 KiB).
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The most header lines of an answer parsed.
const MAX_HEADERS: usize = 32;

/// Which API the requests are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// skiff's `/v1/kv` API.
    Skiff,
    /// etcd v3's JSON gateway (`/v3/kv/put`, `/v3/kv/range`): a baseline on the same machine.
    Etcd,
}

/// One bench client's connection to the cluster.
pub(crate) struct WireClient {
    /// The API spoken.
    protocol: Protocol,
    /// The endpoints (host:port) in the order to try them.
    endpoints: Vec<String>,
    /// The open connection and the endpoint it goes to, if any.
    stream: Option<(TcpStream, usize)>,
    /// How long a connect or a request may take.
    timeout: Duration,
    /// This client's session id.
    client_id: u64,
    /// The sequence number of its last write.
    sequence: u64,
    /// The request being written (reused).
    request: Vec<u8>,
    /// The answer being read (reused).
    answer: Vec<u8>,
    /// The timer that bounds the request in flight (see [`WireClient::exchange`]); made at the
    /// first request.
    watchdog: Option<Pin<Box<Sleep>>>,
}

/// What went wrong with one request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    /// The connection failed (refused, reset, closed, timed out).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The node answered with an error status.
    #[error("HTTP {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The answer's body, as text.
        body: String,
    },
    /// The answer was not HTTP the bench understands.
    #[error("a malformed answer: {0}")]
    Malformed(String),
}

impl WireClient {
    /// A client speaking `protocol`, trying `endpoints` in order, with session id `client_id`.
    pub(crate) fn new(
        protocol: Protocol,
        endpoints: Vec<String>,
        timeout: Duration,
        client_id: u64,
    ) -> WireClient {
        WireClient {
            protocol,
            endpoints,
            stream: None,
            timeout,
            client_id,
            sequence: 0,
            request: Vec::with_capacity(1024),
            answer: Vec::with_capacity(1024),
            watchdog: None,
        }
    }

    /// `PUT /v1/kv/{key}` with `value`, in this client's session (etcd: `POST /v3/kv/put`).
    pub(crate) async fn put(&mut self, key: &str, value: &[u8]) -> Result<(), WireError> {
        if self.protocol == Protocol::Etcd {
            let body =
                format!(r#"{{"key":"{}","value":"{}"}}"#, base64(key.as_bytes()), base64(value));
            return self.etcd("put", &body).await;
        }
        self.sequence += 1;
        let (client, sequence) = (self.client_id, self.sequence);
        self.request.clear();
        self.request.extend_from_slice(b"PUT /v1/kv/");
        push_percent_encoded(&mut self.request, key);
        write!(
            self.request,
            " HTTP/1.1\r\nhost: skiff\r\ncontent-type: application/octet-stream\r\n\
             {CLIENT_ID_HEADER}: {client}\r\n{SEQUENCE_HEADER}: {sequence}\r\n\
             content-length: {}\r\n\r\n",
            value.len()
        )?;
        self.request.extend_from_slice(value);
        self.exchange().await
    }

    /// `GET /v1/kv/{key}`: linearizable, or `stale` (`?consistency=stale`). etcd: `POST
    /// /v3/kv/range`, linearizable, or `serializable` (etcd's name for a local read).
    pub(crate) async fn get(&mut self, key: &str, stale: bool) -> Result<(), WireError> {
        if self.protocol == Protocol::Etcd {
            let key = base64(key.as_bytes());
            let body = format!(r#"{{"key":"{key}","serializable":{stale}}}"#);
            return self.etcd("range", &body).await;
        }
        self.request.clear();
        self.request.extend_from_slice(b"GET /v1/kv/");
        push_percent_encoded(&mut self.request, key);
        if stale {
            self.request.extend_from_slice(b"?consistency=stale");
        }
        self.request.extend_from_slice(b" HTTP/1.1\r\nhost: skiff\r\n\r\n");
        self.exchange().await
    }

    /// `POST /v3/kv/{call}` with the JSON `body`, to etcd's gateway.
    async fn etcd(&mut self, call: &str, body: &str) -> Result<(), WireError> {
        self.request.clear();
        let head = format!(
            "POST /v3/kv/{call} HTTP/1.1\r\nhost: etcd\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        );
        self.request.extend_from_slice(head.as_bytes());
        self.request.extend_from_slice(body.as_bytes());
        self.exchange().await
    }

    /// Sends the request in the buffer and reads its answer, within the timeout. On any failure
    /// the connection is dropped (a half-read answer would poison the next one).
    ///
    /// The timeout is one timer per client, not one per request: a request that is answered in
    /// time leaves the timer set for an earlier request's deadline, and only when that fires is
    /// it moved on to the deadline of the request then in flight. Registering and cancelling a
    /// tokio timer for every request was 8 % of the bench's CPU at 256 clients (perf), CPU
    /// taken from the nodes on the same machine.
    async fn exchange(&mut self) -> Result<(), WireError> {
        let timeout = self.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut watchdog = match self.watchdog.take() {
            Some(mut watchdog) if watchdog.is_elapsed() => {
                watchdog.as_mut().reset(deadline);
                watchdog
            }
            Some(watchdog) => watchdog,
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        let result = {
            let once = self.exchange_once();
            tokio::pin!(once);
            loop {
                tokio::select! {
                    biased;
                    result = &mut once => break result,
                    () = &mut watchdog => {
                        if tokio::time::Instant::now() >= deadline {
                            break Err(WireError::Io(io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!("no answer within {timeout:?}"),
                            )));
                        }
                        watchdog.as_mut().reset(deadline);
                    }
                }
            }
        };
        self.watchdog = Some(watchdog);
        if matches!(result, Err(WireError::Io(_) | WireError::Malformed(_))) {
            self.stream = None;
        }
        result
    }

    /// One request and answer, connecting first if needed.
    async fn exchange_once(&mut self) -> Result<(), WireError> {
        if self.stream.is_none() {
            self.stream = Some(self.connect().await?);
        }
        let (stream, _) = self.stream.as_mut().expect("connected just above");
        stream.write_all(&self.request).await?;
        self.answer.clear();
        loop {
            if let Some(Answer { status, body }) = parse_answer(&self.answer)? {
                if (200..300).contains(&status) {
                    return Ok(());
                }
                let body = String::from_utf8_lossy(&self.answer[body]).into_owned();
                return Err(WireError::Status { status, body });
            }
            if self.answer.len() > MAX_ANSWER_BYTES {
                return Err(WireError::Malformed(format!("over {MAX_ANSWER_BYTES} bytes")));
            }
            self.answer.reserve(4096);
            let read = stream.read_buf(&mut self.answer).await?;
            if read == 0 {
                return Err(WireError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the node closed the connection",
                )));
            }
        }
    }

    /// Connects to the first endpoint that accepts, in order.
    async fn connect(&self) -> Result<(TcpStream, usize), WireError> {
        let mut last = None;
        for (place, endpoint) in self.endpoints.iter().enumerate() {
            match TcpStream::connect(endpoint.as_str()).await {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok((stream, place));
                }
                Err(error) => last = Some(error),
            }
        }
        Err(WireError::Io(last.unwrap_or_else(|| io::Error::other("no endpoints"))))
    }
}

/// `bytes` in standard base64 with padding (RFC 4648 §4), as etcd's JSON gateway wants bytes.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let word = group
            .iter()
            .enumerate()
            .fold(0u32, |word, (at, &byte)| word | u32::from(byte) << (16 - 8 * at));
        for sextet in 0..4 {
            if sextet <= group.len() {
                text.push(char::from(ALPHABET[(word >> (18 - 6 * sextet) & 63) as usize]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

/// A whole answer: its status and where its body is in the buffer.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    /// The status code.
    status: u16,
    /// The body's range in the buffer.
    body: std::ops::Range<usize>,
}

/// Parses `bytes` as an HTTP/1.1 answer with a `content-length`: `None` while incomplete.
fn parse_answer(bytes: &[u8]) -> Result<Option<Answer>, WireError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(bytes) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(WireError::Malformed(error.to_string())),
    };
    let status = response.code.ok_or_else(|| WireError::Malformed("no status".into()))?;
    let mut length = None;
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(header.value).unwrap_or_default();
            length = Some(text.trim().parse::<usize>().map_err(|_| {
                WireError::Malformed(format!("content-length {text:?} is not a number"))
            })?);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(WireError::Malformed("a chunked answer (the API sends lengths)".into()));
        }
    }
    let length = length.ok_or_else(|| WireError::Malformed("no content-length".into()))?;
    if bytes.len() < head + length {
        return Ok(None);
    }
    Ok(Some(Answer { status, body: head..head + length }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node on a real socket that reads requests one at a time and answers the n-th after
    /// `delays[n]` (`None`: never).
    async fn slow_node(delays: Vec<Option<Duration>>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("bound").to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accepts");
            let mut buffer = vec![0u8; 4096];
            for delay in delays {
                let read = stream.read(&mut buffer).await.expect("reads");
                assert!(read > 0, "the bench closed the connection");
                let Some(delay) = delay else { break };
                tokio::time::sleep(delay).await;
                let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
                stream.write_all(answer).await.expect("writes");
            }
            // Holds the connection open, unanswered, until the test ends.
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        addr
    }

    #[tokio::test]
    async fn each_request_gets_the_whole_timeout_and_no_more() {
        let timeout = Duration::from_secs(1);
        let delays = vec![Some(Duration::ZERO), Some(timeout / 2), None];
        let endpoint = slow_node(delays).await;
        let mut client = WireClient::new(Protocol::Skiff, vec![endpoint], timeout, 7);
        client.put("a", b"1").await.expect("answered at once");
        // The timer still runs to the first request's deadline, a second after it started. The
        // second request starts 750 ms later and is answered half a second after that: after
        // the timer fired (which must not fail it), half a second within its own deadline.
        tokio::time::sleep(timeout * 3 / 4).await;
        client.put("a", b"2").await.expect("answered within its own timeout");
        let started = std::time::Instant::now();
        let error = client.put("a", b"3").await.expect_err("never answered");
        let waited = started.elapsed();
        assert!(
            matches!(&error, WireError::Io(io) if io.kind() == io::ErrorKind::TimedOut),
            "{error}"
        );
        assert!(waited >= timeout, "gave up after {waited:?}, before the timeout");
        assert!(waited < timeout * 4, "gave up only after {waited:?}");
    }

    #[test]
    fn an_answer_is_complete_only_with_its_whole_body() {
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        for cut in 0..answer.len() {
            assert_eq!(parse_answer(&answer[..cut]).expect("a valid prefix"), None, "cut at {cut}");
        }
        let head = answer.len() - 5;
        assert_eq!(
            parse_answer(answer).expect("a valid answer"),
            Some(Answer { status: 200, body: head..answer.len() })
        );
    }

    #[test]
    fn base64_matches_rfc_4648_test_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn error_statuses_and_garbage_are_told_apart() {
        let answer = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}";
        assert!(matches!(
            parse_answer(answer).expect("a valid answer"),
            Some(Answer { status: 503, .. })
        ));
        assert!(matches!(parse_answer(b"HTTP/9 nonsense\r\n\r\n"), Err(WireError::Malformed(_))));
        let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
        assert!(matches!(parse_answer(chunked), Err(WireError::Malformed(_))));
        let no_length = b"HTTP/1.1 200 OK\r\n\r\n";
        assert!(matches!(parse_answer(no_length), Err(WireError::Malformed(_))));
    }
}
