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

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::api::{CLIENT_ID_HEADER, SEQUENCE_HEADER};
use crate::client::percent_encode;

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
        let head = format!(
            "PUT /v1/kv/{} HTTP/1.1\r\nhost: skiff\r\ncontent-type: application/octet-stream\r\n\
             {CLIENT_ID_HEADER}: {client}\r\n{SEQUENCE_HEADER}: {sequence}\r\n\
             content-length: {}\r\n\r\n",
            percent_encode(key),
            value.len()
        );
        self.request.extend_from_slice(head.as_bytes());
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
        let query = if stale { "?consistency=stale" } else { "" };
        let key = percent_encode(key);
        let head = format!("GET /v1/kv/{key}{query} HTTP/1.1\r\nhost: skiff\r\n\r\n");
        self.request.extend_from_slice(head.as_bytes());
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
    async fn exchange(&mut self) -> Result<(), WireError> {
        let timeout = self.timeout;
        let result = match tokio::time::timeout(timeout, self.exchange_once()).await {
            Ok(result) => result,
            Err(_) => Err(WireError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {timeout:?}"),
            ))),
        };
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
