//! The wire types of skiff's HTTP API, as the client sees them.
//!
//! docs/http-api.md is the contract; this module is its client-side mirror and adds nothing to
//! it. Each JSON body the API defines is one serde type here, with the API's own field names, so
//! that `--write-out json` can print exactly what a node said. Three things are not JSON and are
//! described where they are used instead: a read's value is the raw response body, its revision
//! travels in the `skiff-revision` header, and a write's session travels in the
//! `skiff-client-id` / `skiff-sequence` headers.
//!
//! A value that is not UTF-8 cannot be a JSON string; the API then sends it as standard base64
//! (RFC 4648 §4, with `=` padding) in `value_base64`. The codec for that is the small one at the
//! end of this file, written out because it is the only place that needs base64.
//!
//! Left out: the fields of `/metrics` and `/health`, which the client commands do not read.

use serde::{Deserialize, Serialize};

/// The header carrying a read's revision: the log index of the write that produced the value.
pub const REVISION_HEADER: &str = "skiff-revision";
/// The header naming a write's client session (a `u64`, chosen at random by the client).
pub const CLIENT_ID_HEADER: &str = "skiff-client-id";
/// The header carrying a write's sequence number within its session (1, 2, 3, ...).
pub const SEQUENCE_HEADER: &str = "skiff-sequence";

/// The answer to a put or a compare-and-swap: `{"revision": R}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteAnswer {
    /// The log index of the write.
    pub revision: u64,
}

/// The answer to a delete of a key that existed: `{"revision": R, "deleted": true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteAnswer {
    /// The log index of the delete.
    pub revision: u64,
    /// Whether a key was removed (always true in a 200 answer: a missing key is a 404).
    pub deleted: bool,
}

/// The body of `POST /v1/kv/{key}/cas`. Both fields are always sent, `null` included, because
/// `null` carries meaning in both: "the key must be absent" and "delete it".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CasRequest {
    /// The value the key must hold for the swap to happen; `None`: the key must be absent.
    pub expected: Option<String>,
    /// The value to store; `None`: delete the key.
    pub value: Option<String>,
}

/// The answer to a scan: `{"revision": A, "kvs": [...], "more": false}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanAnswer {
    /// The node's applied index the scan was served at.
    pub revision: u64,
    /// The keys found, in key order.
    pub kvs: Vec<KeyValue>,
    /// Whether more keys matched than the limit let through.
    pub more: bool,
}

/// One key with its value and revision, as a scan lists it (and as `kv get -w json` prints it).
/// Exactly one of `value` and `value_base64` is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value, when it is UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value in base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    /// The log index of the write that produced the value.
    pub revision: u64,
}

impl KeyValue {
    /// Builds the API's form of a key and its raw value: a JSON string if the value is UTF-8,
    /// base64 otherwise.
    pub fn new(key: String, value: Vec<u8>, revision: u64) -> KeyValue {
        match String::from_utf8(value) {
            Ok(text) => KeyValue { key, value: Some(text), value_base64: None, revision },
            Err(error) => KeyValue {
                key,
                value: None,
                value_base64: Some(base64_encode(error.as_bytes())),
                revision,
            },
        }
    }

    /// The raw value, decoding `value_base64` when that is the form the node sent.
    pub fn value_bytes(&self) -> Result<Vec<u8>, String> {
        match (&self.value, &self.value_base64) {
            (Some(text), None) => Ok(text.as_bytes().to_vec()),
            (None, Some(encoded)) => base64_decode(encoded),
            _ => Err(format!("key {:?} must have exactly one of value and value_base64", self.key)),
        }
    }
}

/// Every error body: `{"code": "...", "message": "..."}`, plus `current` for `cas_mismatch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The machine-readable code, one of the table in docs/http-api.md ("no_leader", ...).
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// For `cas_mismatch`: the key's current value, `None` when it is absent.
    #[serde(default)]
    pub current: Option<String>,
}

/// `POST /v1/snapshot`: `200 {"index": I, "term": T}` for a snapshot taken, and the same
/// fields (null without any snapshot) in the `409 nothing_new` error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotAnswer {
    /// Whether a snapshot was taken (`200`), or nothing was new (`409`); set by the client
    /// from the status, not sent by the node.
    #[serde(default)]
    pub taken: bool,
    /// The index of the snapshot taken, or of the latest one when nothing was new.
    pub index: Option<u64>,
    /// Its term.
    pub term: Option<u64>,
}

/// `POST /v1/leader/transfer`: the leader once the transfer completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferAnswer {
    /// The leader now.
    pub leader: u64,
    /// Its term.
    pub term: u64,
    /// The leader that handed over.
    pub previous_leader: u64,
    /// The voter leadership was handed to (the leader, unless another voter won its election).
    pub target: u64,
    /// The new leader's client address, when the node that answered knows it.
    #[serde(default)]
    pub leader_client_addr: Option<String>,
}

/// The body of `POST /v1/leader/transfer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRequest {
    /// The voter to hand leadership to; absent: the leader picks the most up-to-date one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
}

/// `GET /v1/status`: one node's view of the cluster.
///
/// The fields the commands read are typed; any others the node sends are kept in `other`, so
/// that printing this back as JSON loses nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The node's id.
    pub id: u64,
    /// The id of the cluster it belongs to.
    #[serde(default)]
    pub cluster_id: u64,
    /// "leader", "follower", "candidate" (or another role name the node uses).
    pub role: String,
    /// The node's current term.
    pub term: u64,
    /// The leader the node knows of in its term; `None` when it knows none.
    pub leader: Option<u64>,
    /// The client address of that leader.
    #[serde(default)]
    pub leader_client_addr: Option<String>,
    /// The node's commit index.
    pub commit: u64,
    /// The node's applied index.
    pub applied: u64,
    /// The index of the last entry in the node's log.
    pub last_index: u64,
    /// The last index known to be on the node's disk.
    #[serde(default)]
    pub durable: u64,
    /// The voting members as the node knows them.
    #[serde(default)]
    pub members: Vec<u64>,
    /// The address the node serves this API on.
    #[serde(default)]
    pub client_addr: String,
    /// The address the node talks to its peers on.
    #[serde(default)]
    pub peer_addr: String,
    /// The leader's replication progress of each follower (empty unless leading).
    #[serde(default)]
    pub progress: Vec<Progress>,
    /// Fields this client does not know, kept for JSON output.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// A leader's view of one follower's log (Raft §5.3: match index and next index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The follower's id.
    pub id: u64,
    /// The match index: the highest index known to be replicated on the follower.
    #[serde(rename = "match")]
    pub match_index: u64,
    /// The next index: the next entry the leader will send it.
    pub next: u64,
    /// The replication state ("probe", "replicate", "snapshot").
    pub state: String,
}

/// The base64 alphabet of RFC 4648 §4.
const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes bytes as standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut encoded = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let group = chunk
            .iter()
            .enumerate()
            .fold(0u32, |group, (position, &byte)| group | u32::from(byte) << (16 - 8 * position));
        for position in 0..4 {
            if position <= chunk.len() {
                let sextet = (group >> (18 - 6 * position)) & 0x3f;
                encoded.push(char::from(BASE64_ALPHABET[sextet as usize]));
            } else {
                encoded.push('=');
            }
        }
    }
    encoded
}

/// Decodes standard base64 with padding; anything else is an error naming what is wrong.
pub fn base64_decode(encoded: &str) -> Result<Vec<u8>, String> {
    if !encoded.len().is_multiple_of(4) {
        return Err(format!("base64 of length {} is not a multiple of 4", encoded.len()));
    }
    let mut bytes = Vec::with_capacity(encoded.len() / 4 * 3);
    let quads = encoded.as_bytes().chunks(4);
    let last = quads.len().saturating_sub(1);
    for (number, quad) in quads.enumerate() {
        let padding = quad.iter().rev().take_while(|&&symbol| symbol == b'=').count();
        if padding > 2 || (padding > 0 && number != last) {
            return Err("misplaced base64 padding".to_string());
        }
        let mut group = 0u32;
        for &symbol in &quad[..4 - padding] {
            let sextet = BASE64_ALPHABET
                .iter()
                .position(|&letter| letter == symbol)
                .ok_or_else(|| format!("{:?} is not a base64 symbol", char::from(symbol)))?;
            group = group << 6 | sextet as u32;
        }
        group <<= 6 * padding;
        let decoded = [(group >> 16) as u8, (group >> 8) as u8, group as u8];
        bytes.extend_from_slice(&decoded[..3 - padding]);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_test_vectors() {
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
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
            assert_eq!(base64_decode(encoded).expect("this must succeed"), plain.as_bytes());
        }
    }

    #[test]
    fn base64_round_trips_every_byte() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(base64_decode(&base64_encode(&bytes)).expect("this must succeed"), bytes);
    }

    #[test]
    fn base64_rejects_malformed_input() {
        assert!(base64_decode("Zg=").is_err());
        assert!(base64_decode("Zg==Zm8=").is_err());
        assert!(base64_decode("Z===").is_err());
        assert!(base64_decode("Zm9*").is_err());
    }

    #[test]
    fn a_non_utf8_value_travels_as_base64() {
        let entry = KeyValue::new("k".to_string(), vec![0xff, 0x00], 7);
        assert_eq!(entry.value, None);
        assert_eq!(entry.value_base64.as_deref(), Some("/wA="));
        assert_eq!(entry.value_bytes().expect("this must succeed"), vec![0xff, 0x00]);
        assert_eq!(
            serde_json::to_string(&entry).expect("this must succeed"),
            r#"{"key":"k","value_base64":"/wA=","revision":7}"#
        );
    }

    #[test]
    fn status_keeps_fields_it_does_not_know() {
        let text = r#"{"id":1,"cluster_id":7,"role":"leader","term":3,"leader":1,
            "leader_client_addr":"127.0.0.1:2379","commit":120,"applied":120,"last_index":120,
            "durable":120,"members":[1,2,3],"client_addr":"127.0.0.1:2379",
            "peer_addr":"127.0.0.1:2380","progress":[{"id":2,"match":120,"next":121,
            "state":"replicate"}],"uptime_seconds":9}"#;
        let status: Status = serde_json::from_str(text).expect("this must succeed");
        assert_eq!(status.progress[0].match_index, 120);
        let again = serde_json::to_value(&status).expect("this must succeed");
        assert_eq!(
            again,
            serde_json::from_str::<serde_json::Value>(text).expect("this must succeed")
        );
    }
}

/// One change of `POST /v1/members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberChange {
    /// `add_voter`, `add_learner`, `remove` or `promote`.
    pub action: String,
    /// The node.
    pub id: u64,
    /// Where peers reach the node (adds only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_addr: Option<String>,
}

/// The body of `POST /v1/members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersRequest {
    /// The changes, made at once.
    pub changes: Vec<MemberChange>,
}

/// One member in `GET /v1/members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node's id.
    pub id: u64,
    /// `voter` or `learner`.
    pub role: String,
    /// Where peers reach it, when known.
    #[serde(default)]
    pub peer_addr: Option<String>,
    /// Where clients reach it, when known.
    #[serde(default)]
    pub client_addr: Option<String>,
}

/// The answer of `GET /v1/members` and of a completed `POST /v1/members`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    /// The voters (while joint, the incoming ones).
    pub voters: Vec<u64>,
    /// The learners.
    pub learners: Vec<u64>,
    /// While joint, the outgoing voters; empty otherwise.
    #[serde(default)]
    pub outgoing: Vec<u64>,
    /// Whether the configuration is joint.
    #[serde(default)]
    pub joint: bool,
    /// The leader the answering node knows of.
    #[serde(default)]
    pub leader: Option<u64>,
    /// Every member with its role and addresses.
    pub members: Vec<Member>,
}
