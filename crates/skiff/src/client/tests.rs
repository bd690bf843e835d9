//! The client against the mock cluster: what goes on the wire and how answers are read.

use std::time::Duration;

use super::*;
use crate::mock_server::{MockCluster, NodeMode, Seen};

/// Options for a test client: short timeouts so that a failing test ends quickly.
fn options(cluster: &MockCluster) -> ClientOptions {
    ClientOptions {
        endpoints: cluster.endpoints.clone(),
        dial_timeout: Duration::from_secs(1),
        command_timeout: Duration::from_secs(3),
    }
}

/// Runs a test body with a time bound.
async fn bounded<F: std::future::Future<Output = ()>>(body: F) {
    tokio::time::timeout(Duration::from_secs(20), body).await.expect("the test took too long");
}

#[tokio::test]
async fn a_put_is_read_back_with_its_revision() {
    bounded(async {
        let cluster = MockCluster::start(&[NodeMode::Serve]).await;
        let mut client = Client::new(options(&cluster)).expect("valid options");
        assert_eq!(client.put("foo", Bytes::from("bar")).await, Ok(WriteAnswer { revision: 1 }));
        assert_eq!(client.put("foo", Bytes::from("baz")).await, Ok(WriteAnswer { revision: 2 }));
        let read = client.get("foo", Consistency::Linearizable).await.expect("the key exists");
        assert_eq!(read, Value { value: b"baz".to_vec(), revision: 2 });
        let stale = client.get("foo", Consistency::Stale).await.expect("the key exists");
        assert_eq!(stale.value, b"baz");
    })
    .await;
}

#[tokio::test]
async fn a_key_with_slashes_spaces_and_percent_signs_arrives_whole() {
    bounded(async {
        let cluster = MockCluster::start(&[NodeMode::Serve]).await;
        let mut client = Client::new(options(&cluster)).expect("valid options");
        let key = "dir/sub dir/100%?x=1#frag";
        client.put(key, Bytes::from("v")).await.expect("the put succeeds");
        assert_eq!(cluster.stored(key), Some((b"v".to_vec(), 1)));
        let read = client.get(key, Consistency::Linearizable).await.expect("the key exists");
        assert_eq!(read.value, b"v");
    })
    .await;
}

#[tokio::test]
async fn a_missing_key_is_a_one_line_error() {
    bounded(async {
        let cluster = MockCluster::start(&[NodeMode::Serve]).await;
        let mut client = Client::new(options(&cluster)).expect("valid options");
        let error = client.get("foo", Consistency::Linearizable).await.expect_err("this must fail");
        assert_eq!(error, ClientError::KeyNotFound { key: "foo".to_string() });
        assert_eq!(error.to_string(), "key not found: foo");
        let error = client.delete("foo").await.expect_err("this must fail");
        assert_eq!(error.to_string(), "key not found: foo");
    })
    .await;
}

#[tokio::test]
async fn delete_removes_the_key() {
    bounded(async {
        let cluster = MockCluster::start(&[NodeMode::Serve]).await;
        let mut client = Client::new(options(&cluster)).expect("valid options");
        client.put("foo", Bytes::from("bar")).await.expect("the put succeeds");
        assert_eq!(client.delete("foo").await, Ok(DeleteAnswer { revision: 2, deleted: true }));
        assert_eq!(cluster.stored("foo"), None);
    })
    .await;
}

#[tokio::test]
async fn compare_and_swap_follows_its_expectation() {
    bounded(async {
        let cluster = MockCluster::start(&[NodeMode::Serve]).await;
        let mut client = Client::new(options(&cluster)).expect("valid options");
        // Absent → create.
        assert_eq!(client.cas("k", None, Some("one")).await, Ok(WriteAnswer { revision: 1 }));
        // A wrong expectation names the current value.
        let error = client.cas("k", Some("zero"), Some("two")).await.expect_err("this must fail");
        assert_eq!(
            error,
            ClientError::CasMismatch { key: "k".to_string(), current: Some("one".to_string()) }
        );
        assert_eq!(error.to_string(), "compare failed: k holds \"one\"");
        // Expecting absence of a present key.
        let error = client.cas("k", None, Some("two")).await.expect_err("this must fail");
        assert_eq!(error.to_string(), "compare failed: k holds \"one\"");
        // The right expectation swaps, and `None` deletes.
        assert_eq!(
            client.cas("k", Some("one"), Some("two")).await,
            Ok(WriteAnswer { revision: 4 })
        );
        assert_eq!(client.cas("k", Some("two"), None).await, Ok(WriteAnswer { revision: 5 }));
        let error = client.cas("k", Some("two"), Some("three")).await.expect_err("this must fail");
        assert_eq!(error.to_string(), "compare failed: k is absent");
    })
    .await;
}

#[tokio::test]
async fn a_scan_lists_the_prefix_in_key_order_up_to_the_limit() {
    bounded(async {
        let cluster = MockCluster::start(&[NodeMode::Serve]).await;
        let mut client = Client::new(options(&cluster)).expect("valid options");
        for key in ["b/2", "a/1", "b/1", "b/3", "c"] {
            client.put(key, Bytes::from(key.to_uppercase())).await.expect("the put succeeds");
        }
        let scan = client.scan("b/", Some(2), Consistency::Linearizable).await.expect("scans");
        let keys: Vec<&str> = scan.kvs.iter().map(|entry| entry.key.as_str()).collect();
        assert_eq!(keys, ["b/1", "b/2"]);
        assert_eq!(scan.kvs[0].value.as_deref(), Some("B/1"));
        assert!(scan.more);
        let scan = client.scan("b/", None, Consistency::Stale).await.expect("scans");
        assert_eq!(scan.kvs.len(), 3);
        assert!(!scan.more);
    })
    .await;
}

#[tokio::test]
async fn writes_carry_a_session_whose_sequence_rises_by_one() {
    bounded(async {
        let cluster = MockCluster::start(&[NodeMode::Serve]).await;
        let mut client = Client::new(options(&cluster)).expect("valid options");
        let id = client.client_id();
        assert_ne!(id, 0);
        client.put("a", Bytes::from("1")).await.expect("the put succeeds");
        client.get("a", Consistency::Linearizable).await.expect("the key exists");
        client.cas("a", Some("1"), Some("2")).await.expect("the swap succeeds");
        client.delete("a").await.expect("the key exists");
        let sessions: Vec<Option<(u64, u64)>> =
            cluster.seen().into_iter().map(|seen| seen.session).collect();
        assert_eq!(sessions, [Some((id, 1)), None, Some((id, 2)), Some((id, 3))]);
        // Two clients have two sessions.
        let other = Client::new(options(&cluster)).expect("valid options");
        assert_ne!(other.client_id(), id);
    })
    .await;
}

#[tokio::test]
async fn no_leader_moves_the_write_to_the_next_endpoint_with_the_same_sequence() {
    bounded(async {
        let cluster = MockCluster::start(&[NodeMode::NoLeader, NodeMode::Serve]).await;
        let mut client = Client::new(options(&cluster)).expect("valid options");
        let id = client.client_id();
        assert_eq!(client.put("k", Bytes::from("v")).await, Ok(WriteAnswer { revision: 1 }));
        assert_eq!(
            cluster.seen(),
            [
                Seen { node: 0, request: "PUT k".to_string(), session: Some((id, 1)) },
                Seen { node: 1, request: "PUT k".to_string(), session: Some((id, 1)) },
            ]
        );
        // The endpoint that answered is asked first from then on.
        client.put("k", Bytes::from("w")).await.expect("the put succeeds");
        let last = cluster.seen().pop().expect("a request arrived");
        assert_eq!(last, Seen { node: 1, request: "PUT k".to_string(), session: Some((id, 2)) });
        assert_eq!(cluster.seen().len(), 3);
    })
    .await;
}

#[tokio::test]
async fn a_down_endpoint_is_skipped() {
    bounded(async {
        let cluster = MockCluster::start(&[NodeMode::Down, NodeMode::Serve]).await;
        let mut client = Client::new(options(&cluster)).expect("valid options");
        client.put("k", Bytes::from("v")).await.expect("the second endpoint serves");
        let read = client.get("k", Consistency::Linearizable).await.expect("the key exists");
        assert_eq!(read.value, b"v");
    })
    .await;
}

#[tokio::test]
async fn a_write_retried_after_a_timeout_is_applied_once() {
    bounded(async {
        let cluster = MockCluster::start(&[NodeMode::TimeoutAfterApply, NodeMode::Serve]).await;
        let mut client = Client::new(options(&cluster)).expect("valid options");
        // Node 0 applies the write and answers 503 timeout; the retry on node 1 carries the
        // same sequence and gets the first attempt's answer.
        assert_eq!(client.put("k", Bytes::from("v")).await, Ok(WriteAnswer { revision: 1 }));
        assert_eq!(cluster.applied(), 1);
        let sessions: Vec<(usize, Option<(u64, u64)>)> =
            cluster.seen().into_iter().map(|seen| (seen.node, seen.session)).collect();
        let id = client.client_id();
        assert_eq!(sessions, [(0, Some((id, 1))), (1, Some((id, 1)))]);
    })
    .await;
}

#[tokio::test]
async fn nothing_listening_fails_at_once_naming_every_endpoint() {
    bounded(async {
        let cluster = MockCluster::start(&[NodeMode::Down, NodeMode::Down]).await;
        let client = Client::new(options(&cluster)).expect("valid options");
        let started = Instant::now();
        let error = client.get("k", Consistency::Linearizable).await.expect_err("this must fail");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "gave up after {:?}",
            started.elapsed()
        );
        let ClientError::Unreachable { failures } = &error else {
            panic!("expected Unreachable, got {error:?}");
        };
        assert_eq!(failures.len(), 2);
        let message = error.to_string();
        assert!(message.starts_with("no endpoint reachable: "), "{message}");
        assert!(
            message.contains(&format!("{}: cannot connect", cluster.endpoints[1])),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
    })
    .await;
}

#[tokio::test]
async fn a_cluster_without_leader_is_retried_until_the_command_timeout() {
    bounded(async {
        let cluster = MockCluster::start(&[NodeMode::NoLeader, NodeMode::NoLeader]).await;
        let mut options = options(&cluster);
        options.command_timeout = Duration::from_millis(400);
        let mut client = Client::new(options).expect("valid options");
        let error = client.put("k", Bytes::from("v")).await.expect_err("this must fail");
        let message = error.to_string();
        assert!(message.starts_with("timed out after 400ms (last error: "), "{message}");
        assert!(message.contains("no_leader"), "{message}");
        // Several rounds were made, every one with the same sequence.
        let seen = cluster.seen();
        assert!(seen.len() >= 4, "only {} attempts", seen.len());
        assert!(seen.iter().all(|seen| seen.session == Some((client.client_id(), 1))));
    })
    .await;
}

#[tokio::test]
async fn a_leader_returning_mid_retry_is_found() {
    bounded(async {
        let cluster = MockCluster::start(&[NodeMode::NoLeader]).await;
        let mut client = Client::new(options(&cluster)).expect("valid options");
        let put = tokio::spawn(async move { client.put("k", Bytes::from("v")).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        cluster.set_mode(0, NodeMode::Serve);
        let answer = put.await.expect("the task ran");
        assert_eq!(answer, Ok(WriteAnswer { revision: 1 }));
    })
    .await;
}

#[tokio::test]
async fn status_asks_one_endpoint_without_moving_on() {
    bounded(async {
        let cluster = MockCluster::start(&[NodeMode::Down, NodeMode::Serve]).await;
        let client = Client::new(options(&cluster)).expect("valid options");
        assert!(matches!(client.status_of(0).await, Err(ClientError::Unreachable { .. })));
        let status = client.status_of(1).await.expect("node 1 answers");
        assert_eq!((status.id, status.role.as_str(), status.leader), (2, "follower", Some(1)));
    })
    .await;
}

#[test]
fn endpoints_are_host_and_port() {
    assert_eq!(normalize_endpoint("127.0.0.1:2379"), Ok("127.0.0.1:2379".to_string()));
    assert_eq!(normalize_endpoint("http://node1:2379/"), Ok("node1:2379".to_string()));
    assert_eq!(normalize_endpoint(" [::1]:2379 "), Ok("[::1]:2379".to_string()));
    for bad in ["", "node1", "node1:port", "https://node1:2379", "node1:2379/v1", "a b:1"] {
        assert!(normalize_endpoint(bad).is_err(), "{bad:?} was accepted");
    }
    let error = Client::new(ClientOptions {
        endpoints: vec![],
        dial_timeout: Duration::from_secs(1),
        command_timeout: Duration::from_secs(1),
    })
    .expect_err("this must fail");
    assert_eq!(error.to_string(), "no endpoints given");
}

#[tokio::test]
async fn a_key_the_api_would_refuse_is_refused_before_sending() {
    let cluster = MockCluster::start(&[NodeMode::Serve]).await;
    let mut client = Client::new(options(&cluster)).expect("valid options");
    let error = client.put("", Bytes::from("v")).await.expect_err("an empty key");
    assert_eq!(error.to_string(), "a key must not be empty");
    let long = "k".repeat(4097);
    let error = client.get(&long, Consistency::Stale).await.expect_err("a long key");
    assert_eq!(error.to_string(), "a key is at most 4096 bytes; this one has 4097");
    assert!(cluster.seen().is_empty());
    assert!(client.get(&"k".repeat(4096), Consistency::Stale).await.is_err(), "absent, but sent");
    assert_eq!(cluster.seen().len(), 1);
}

#[test]
fn percent_encoding_keeps_only_unreserved_characters() {
    assert_eq!(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
    assert_eq!(percent_encode("a/b c%"), "a%2Fb%20c%25");
    assert_eq!(percent_encode("é"), "%C3%A9");
}
