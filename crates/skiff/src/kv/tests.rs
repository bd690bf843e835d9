//! `skiff kv`: rendering per format, and each verb run against the mock cluster.

use std::time::Duration;

use super::*;
use crate::mock_server::{MockCluster, NodeMode};

/// The stdout of an output, as text.
fn text(output: &Output) -> &str {
    std::str::from_utf8(&output.stdout).expect("UTF-8 output")
}

#[test]
fn writes_print_ok_a_table_or_the_api_json() {
    let answer = WriteAnswer { revision: 42 };
    assert_eq!(text(&render_write(WriteOut::Simple, "k", &answer)), "OK\n");
    assert_eq!(text(&render_write(WriteOut::Table, "k", &answer)), "KEY   REVISION\nk     42\n");
    assert_eq!(text(&render_write(WriteOut::Json, "k", &answer)), "{\n  \"revision\": 42\n}\n");
    let deleted = DeleteAnswer { revision: 43, deleted: true };
    assert_eq!(text(&render_delete(WriteOut::Simple, "k", &deleted)), "OK\n");
    assert_eq!(
        text(&render_delete(WriteOut::Json, "k", &deleted)),
        "{\n  \"revision\": 43,\n  \"deleted\": true\n}\n"
    );
}

#[test]
fn get_prints_key_and_value_like_etcdctl() {
    let read = || Value { value: b"hello\nworld".to_vec(), revision: 7 };
    assert_eq!(
        text(&render_get(WriteOut::Simple, "greeting", read(), false)),
        "greeting\nhello\nworld\n"
    );
    assert_eq!(text(&render_get(WriteOut::Simple, "greeting", read(), true)), "hello\nworld\n");
    assert_eq!(
        text(&render_get(WriteOut::Table, "greeting", read(), false)),
        "KEY        VALUE          REVISION\ngreeting   hello\\nworld   7\n"
    );
    assert_eq!(
        text(&render_get(WriteOut::Json, "greeting", read(), false)),
        "{\n  \"key\": \"greeting\",\n  \"value\": \"hello\\nworld\",\n  \"revision\": 7\n}\n"
    );
}

#[test]
fn a_binary_value_is_printed_raw_or_as_base64() {
    let read = || Value { value: vec![0xff, 0x00, b'x'], revision: 1 };
    assert_eq!(render_get(WriteOut::Simple, "b", read(), true).stdout, [0xff, 0x00, b'x', b'\n']);
    assert!(
        text(&render_get(WriteOut::Json, "b", read(), false))
            .contains("\"value_base64\": \"/wB4\"")
    );
}

#[test]
fn a_scan_lists_pairs_and_says_when_it_was_cut_short() {
    let answer = ScanAnswer {
        revision: 9,
        kvs: vec![
            KeyValue::new("a/1".to_string(), b"one".to_vec(), 3),
            KeyValue::new("a/2".to_string(), vec![0xfe], 4),
        ],
        more: true,
    };
    let simple = render_scan(WriteOut::Simple, &answer).expect("renders");
    assert_eq!(simple.stdout, b"a/1\none\na/2\n\xfe\n");
    assert_eq!(
        simple.stderr,
        ["(more keys match than the 2 listed: raise --limit or narrow the prefix)"]
    );
    assert!(!simple.failed);
    let table = render_scan(WriteOut::Table, &answer).expect("renders");
    assert_eq!(text(&table), "KEY   VALUE   REVISION\na/1   one     3\na/2   \u{fffd}       4\n");
    let json = render_scan(WriteOut::Json, &answer).expect("renders");
    let parsed: ScanAnswer = serde_json::from_slice(&json.stdout).expect("the API's JSON");
    assert_eq!(parsed, answer);
    assert!(json.stderr.is_empty(), "JSON output carries `more` itself");
}

/// Runs a kv command line against the mock cluster.
async fn run(cluster: &MockCluster, line: &str) -> Result<Output, ClientError> {
    let endpoints = cluster.endpoints.join(",");
    let words =
        line.split_whitespace().chain(["--endpoints", &endpoints, "--command-timeout", "3s"]);
    let args = match <crate::Cli as clap::Parser>::try_parse_from(words) {
        Ok(crate::Cli { command: crate::Command::Kv(args) }) => args,
        other => panic!("{line:?} is not a kv command: {other:?}"),
    };
    tokio::time::timeout(Duration::from_secs(20), execute(&args)).await.expect("bounded")
}

#[tokio::test]
async fn every_verb_against_a_cluster_whose_first_node_knows_no_leader() {
    let cluster = MockCluster::start(&[NodeMode::NoLeader, NodeMode::Serve]).await;
    let ok = |output: Result<Output, ClientError>| text(&output.expect("succeeds")).to_string();
    assert_eq!(ok(run(&cluster, "skiff kv put greeting hello").await), "OK\n");
    assert_eq!(ok(run(&cluster, "skiff kv get greeting").await), "greeting\nhello\n");
    assert_eq!(
        ok(run(&cluster, "skiff kv cas greeting --expected hello --value hi -w table").await),
        "KEY        REVISION\ngreeting   2\n"
    );
    let error = run(&cluster, "skiff kv cas greeting --absent --value again")
        .await
        .expect_err("this must fail");
    assert_eq!(error.to_string(), "compare failed: greeting holds \"hi\"");
    assert_eq!(ok(run(&cluster, "skiff kv cas lock --absent --value me").await), "OK\n");
    assert_eq!(
        ok(run(&cluster, "skiff kv scan -w table").await),
        "KEY        VALUE   REVISION\ngreeting   hi      2\nlock       me      4\n"
    );
    assert_eq!(ok(run(&cluster, "skiff kv del greeting").await), "OK\n");
    let error = run(&cluster, "skiff kv get greeting --consistency stale")
        .await
        .expect_err("this must fail");
    assert_eq!(error.to_string(), "key not found: greeting");
    let error = run(&cluster, "skiff kv del greeting").await.expect_err("this must fail");
    assert_eq!(error.to_string(), "key not found: greeting");
    assert_eq!(ok(run(&cluster, "skiff kv cas lock --expected me --delete").await), "OK\n");
    assert_eq!(cluster.stored("lock"), None);
}
