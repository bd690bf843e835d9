//! A minimal HTTP/1.1 client for the dashboard tests: one request per connection, bounded in
//! time, chunked bodies decoded, and a reader of server-sent events.

// Shared by several test crates, each of which uses only part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, decoded if it was chunked.
    pub body: String,
}

impl Answer {
    /// The value of header `name` (lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }
}

/// Sends one request (`Connection: close`) and reads the whole answer.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let content_type =
        content_type.map(|value| format!("content-type: {value}\r\n")).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n{content_type}\
         content-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader)?;
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse::<usize>().ok());
    let mut raw = Vec::new();
    if chunked {
        while let Some(chunk) = read_chunk(&mut reader)? {
            raw.extend_from_slice(&chunk);
        }
    } else if let Some(length) = length {
        // Not to the end: a server may keep the connection open despite `close`.
        raw.resize(length, 0);
        reader.read_exact(&mut raw)?;
    } else {
        reader.read_to_end(&mut raw)?;
    }
    Ok(Answer { status, headers, body: String::from_utf8_lossy(&raw).into_owned() })
}

/// A `GET` of `path`.
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<Answer> {
    request(addr, "GET", path, None, b"")
}

/// Reads a status line and headers.
fn read_head(reader: &mut impl BufRead) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            return Ok((status, headers));
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
}

/// Reads one chunk of a chunked body; `None` at the last (empty) chunk.
fn read_chunk(reader: &mut impl BufRead) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
        .map_err(|_| std::io::Error::other(format!("bad chunk size line {line:?}")))?;
    let mut chunk = vec![0; size + 2];
    reader.read_exact(&mut chunk)?;
    chunk.truncate(size);
    Ok((size > 0).then_some(chunk))
}

/// An open stream of server-sent events.
pub struct Events {
    /// The connection, after the head.
    reader: BufReader<TcpStream>,
    /// Decoded bytes not yet split into events.
    pending: String,
}

/// One server-sent event.
#[derive(Debug)]
pub struct Event {
    /// Its `event:` name.
    pub name: String,
    /// Its `data:`, lines joined.
    pub data: String,
}

impl Events {
    /// Opens `GET path` as an event stream.
    pub fn open(addr: SocketAddr, path: &str) -> std::io::Result<Events> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let head =
            format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\n\r\n");
        stream.write_all(head.as_bytes())?;
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader)?;
        let is_events = headers
            .iter()
            .any(|(name, value)| name == "content-type" && value == "text/event-stream");
        if status != 200 || !is_events {
            return Err(std::io::Error::other(format!(
                "not an event stream: {status} {headers:?}"
            )));
        }
        Ok(Events { reader, pending: String::new() })
    }

    /// The next event (comments and keep-alives skipped).
    pub fn next(&mut self) -> std::io::Result<Event> {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                let mut event = Event { name: "message".into(), data: String::new() };
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event:") {
                        event.name = name.trim().to_string();
                    } else if let Some(data) = line.strip_prefix("data:") {
                        if !event.data.is_empty() {
                            event.data.push('\n');
                        }
                        event.data.push_str(data.strip_prefix(' ').unwrap_or(data));
                    }
                }
                if !event.data.is_empty() {
                    return Ok(event);
                }
                continue;
            }
            let chunk = read_chunk(&mut self.reader)?
                .ok_or_else(|| std::io::Error::other("the event stream ended"))?;
            self.pending.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Reads `sample` events until `accept` takes one, for at most `patience`.
    pub fn sample_where(
        &mut self,
        patience: Duration,
        mut accept: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + patience;
        let mut last = None;
        while Instant::now() < deadline {
            let event = self.next().expect("the event stream goes on");
            let samples: Vec<serde_json::Value> = match event.name.as_str() {
                "hello" => {
                    let hello: serde_json::Value =
                        serde_json::from_str(&event.data).expect("hello is JSON");
                    hello["history"].as_array().cloned().unwrap_or_default()
                }
                "sample" => vec![serde_json::from_str(&event.data).expect("a sample is JSON")],
                other => panic!("unexpected event {other:?}"),
            };
            for sample in samples {
                if accept(&sample) {
                    return sample;
                }
                last = Some(sample);
            }
        }
        panic!("no sample as expected within {patience:?}; the last: {last:#?}");
    }
}
