//! `skiff bench` against the mock cluster: short runs, bounded in time.

use std::collections::BTreeSet;

use clap::Parser;

use super::*;
use crate::mock_server::{MockCluster, NodeMode};

/// The bench arguments of a command line, pointed at the mock cluster.
fn args(cluster: &MockCluster, line: &str) -> BenchArgs {
    let endpoints = cluster.endpoints.join(",");
    let words = line.split_whitespace().chain(["--endpoints", &endpoints]);
    match crate::Cli::try_parse_from(words) {
        Ok(crate::Cli { command: crate::Command::Bench(args) }) => args,
        other => panic!("{line:?} is not a bench command: {other:?}"),
    }
}

/// Runs the bench, returning its summaries and what it printed.
async fn bench(args: &BenchArgs) -> (Vec<Summary>, String) {
    let mut out = Vec::new();
    let summaries = tokio::time::timeout(Duration::from_secs(30), execute(args, &mut out))
        .await
        .expect("bounded")
        .expect("the bench runs");
    (summaries, String::from_utf8(out).expect("UTF-8 report"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_and_gets_at_two_client_counts() {
    let cluster = MockCluster::start(&[NodeMode::Serve, NodeMode::Serve]).await;
    let args = args(
        &cluster,
        "skiff bench --clients 1,4 --duration 300ms --value-size 32 --keys 50 --op both",
    );
    let (summaries, printed) = bench(&args).await;
    let runs: Vec<(Operation, usize)> =
        summaries.iter().map(|summary| (summary.op, summary.clients)).collect();
    assert_eq!(
        runs,
        [(Operation::Put, 1), (Operation::Get, 1), (Operation::Put, 4), (Operation::Get, 4)]
    );
    for summary in &summaries {
        assert!(summary.requests > 0, "{summary:?}");
        assert_eq!(summary.errors, 0, "{:?}", summary.error_distribution);
        assert!(summary.total_seconds >= 0.3, "{summary:?}");
    }
    // Every key was written before the gets, with a value of the asked size.
    for number in 0..50 {
        let (value, _) = cluster.stored(&format!("bench/{number:08}")).expect("populated");
        assert_eq!(value.len(), 32);
        assert!(value.iter().all(u8::is_ascii_alphanumeric));
    }
    assert_eq!(printed.matches("Summary:\n").count(), 4, "{printed}");
    assert_eq!(printed.matches("Latency distribution:\n").count(), 4, "{printed}");
    assert!(printed.contains("\nOP    CLIENTS   OPS/S"), "{printed}");
    // Every request went to the leader, node 0.
    let nodes: BTreeSet<usize> = cluster
        .seen()
        .iter()
        .filter(|seen| seen.request != "STATUS")
        .map(|seen| seen.node)
        .collect();
    assert_eq!(nodes, BTreeSet::from([0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_all_spreads_clients_over_the_endpoints() {
    let cluster = MockCluster::start(&[NodeMode::Serve, NodeMode::Serve]).await;
    let args = args(&cluster, "skiff bench --clients 4 --duration 200ms --keys 10 --target all");
    let (summaries, _) = bench(&args).await;
    assert_eq!(summaries.len(), 1);
    let nodes: BTreeSet<usize> = cluster.seen().iter().map(|seen| seen.node).collect();
    assert_eq!(nodes, BTreeSet::from([0, 1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_output_is_one_document_with_every_run() {
    let cluster = MockCluster::start(&[NodeMode::Serve]).await;
    let args = args(&cluster, "skiff bench --clients 2 --duration 200ms --keys 10 -w json");
    let (summaries, printed) = bench(&args).await;
    let parsed: serde_json::Value = serde_json::from_str(&printed).expect("one JSON document");
    assert_eq!(parsed["runs"].as_array().map(Vec::len), Some(1));
    assert_eq!(parsed["runs"][0]["requests"], summaries[0].requests);
    assert_eq!(parsed["runs"][0]["op"], "put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_counted_not_fatal() {
    // The leader is down after the lookup: node 0 knows no leader, node 1 is the only way.
    let cluster = MockCluster::start(&[NodeMode::NoLeader, NodeMode::Serve]).await;
    let mut args = args(&cluster, "skiff bench --clients 2 --duration 300ms --keys 10");
    args.connection.command_timeout = Duration::from_millis(100);
    args.connection.endpoints.truncate(1);
    let (summaries, printed) = bench(&args).await;
    let summary = &summaries[0];
    assert_eq!(summary.requests, 0);
    assert!(summary.errors > 0);
    assert!(printed.contains("No request succeeded."), "{printed}");
    assert!(printed.contains("Error distribution ("), "{printed}");
    assert!(printed.contains("no_leader"), "{printed}");
}

#[tokio::test]
async fn an_unreachable_cluster_stops_the_bench_at_once() {
    let cluster = MockCluster::start(&[NodeMode::Down]).await;
    let args = args(&cluster, "skiff bench --clients 1 --duration 10s");
    let mut out = Vec::new();
    let error = tokio::time::timeout(Duration::from_secs(10), execute(&args, &mut out))
        .await
        .expect("bounded")
        .expect_err("this must fail");
    assert!(error.to_string().starts_with("no endpoint answered /v1/status"), "{error}");
}

#[test]
fn clients_start_at_the_leader_or_round_robin() {
    let endpoints: Vec<String> = ["a:1", "b:2", "c:3"].map(String::from).to_vec();
    let leader = Routing { endpoints: endpoints.clone(), leader: Some(1) };
    assert_eq!(leader.order_for(0), ["b:2", "a:1", "c:3"]);
    assert_eq!(leader.order_for(5), ["b:2", "a:1", "c:3"]);
    let spread = Routing { endpoints, leader: None };
    assert_eq!(spread.order_for(0), ["a:1", "b:2", "c:3"]);
    assert_eq!(spread.order_for(1), ["b:2", "c:3", "a:1"]);
    assert_eq!(spread.order_for(5), ["c:3", "a:1", "b:2"]);
}

#[tokio::test]
async fn a_value_over_the_api_limit_is_refused() {
    let cluster = MockCluster::start(&[NodeMode::Serve]).await;
    let args = args(&cluster, "skiff bench --value-size 2000000");
    let error = execute(&args, &mut Vec::new()).await.expect_err("this must fail");
    assert!(error.to_string().contains("over the API's limit"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_need_their_keys_written_first() {
    let cluster = MockCluster::start(&[NodeMode::NoLeader]).await;
    let mut args = args(&cluster, "skiff bench --clients 1 --duration 10s --keys 10 --op get");
    args.connection.command_timeout = Duration::from_millis(100);
    let error = tokio::time::timeout(Duration::from_secs(10), execute(&args, &mut Vec::new()))
        .await
        .expect("bounded")
        .expect_err("no key can be written");
    let message = error.to_string();
    assert!(message.starts_with("could not write any of the 10 keys: timed out"), "{message}");
    assert!(message.contains("no_leader"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_run_linearizable_then_stale_gets() {
    let cluster = MockCluster::start(&[NodeMode::Serve]).await;
    let args = args(&cluster, "skiff bench --clients 2 --duration 200ms --keys 10 --op reads");
    let (summaries, printed) = bench(&args).await;
    let runs: Vec<Operation> = summaries.iter().map(|summary| summary.op).collect();
    assert_eq!(runs, [Operation::Get, Operation::StaleGet]);
    assert!(summaries.iter().all(|summary| summary.requests > 0 && summary.errors == 0));
    assert!(printed.contains("\nstale-get "), "{printed}");
    let seen: Vec<String> = cluster.seen().into_iter().map(|seen| seen.request).collect();
    let stale = seen.iter().filter(|request| request.ends_with(" (stale)")).count();
    let linearizable =
        seen.iter().filter(|request| request.starts_with("GET ") && !request.ends_with(" (stale)"));
    assert!(stale > 0 && linearizable.count() > 0, "{seen:?}");
}
