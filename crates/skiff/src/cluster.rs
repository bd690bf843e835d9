//! `skiff cluster`: what each node says about the cluster.
//!
//! `skiff cluster status` asks every endpoint for `/v1/status` (each one directly: no moving
//! on, since the point is to see each node) and prints one row per endpoint:
//!
//! ```text
//! $ skiff cluster status --endpoints 127.0.0.1:2379,127.0.0.1:22379 -w table
//! ENDPOINT          ID   ROLE       TERM   LEADER   COMMIT   APPLIED   LAST INDEX
//! 127.0.0.1:2379    1    leader     3      1        120      120       120
//! 127.0.0.1:22379   2    follower   3      1        120      119       120
//! ```
//!
//! Simple output is one line per endpoint with the same fields; JSON output is an array with,
//! per endpoint, `{"endpoint": ..., "status": <the API's status>}` or
//! `{"endpoint": ..., "error": "..."}`. An endpoint that does not answer is reported on stderr
//! and makes the exit status 1, after the others have been printed.
//!
//! `skiff cluster snapshot` asks every endpoint to take a snapshot of its own state now and
//! compact its log (`POST /v1/snapshot`; snapshots are per node, so each endpoint is asked
//! directly). One line per endpoint: the snapshot taken, or "nothing new" with the latest
//! snapshot when nothing was applied since — which is not a failure.
//!
//! The membership verbs change the configuration through `POST /v1/members` (any endpoint:
//! followers forward to the leader) and print the configuration reached once the change is
//! complete; `members` prints it as the first endpoint that answers knows it:
//!
//! ```text
//! $ skiff cluster add 4 127.0.0.1:32380 --learner   # a node started with `skiff node --join`
//! $ skiff cluster promote 4                          # once it has caught up
//! $ skiff cluster remove 2
//! $ skiff cluster members -w table
//! ID   ROLE      PEER ADDR         CLIENT ADDR
//! 1    voter     127.0.0.1:2380    127.0.0.1:2379
//! 3    voter     127.0.0.1:22380   127.0.0.1:22379
//! 4    voter     127.0.0.1:32380   127.0.0.1:32379
//! ```
//!
//! `skiff cluster transfer [--to ID]` hands leadership to voter `ID`, or without `--to` to the
//! voter the leader finds most up to date (`POST /v1/leader/transfer`, through any endpoint),
//! and prints the new leader once it is known:
//!
//! ```text
//! $ skiff cluster transfer --to 3
//! Leadership transferred from 1 to 3 (term 4)
//! ```

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::api::{MemberChange, Members, MembersRequest, SnapshotAnswer, Status, TransferAnswer};
use crate::client::{Client, ClientError};
use crate::flags::ConnectionArgs;
use crate::output::{Output, WriteOut, json, table};

/// Arguments of `skiff cluster`.
#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// Where to connect and how to print.
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// The verb.
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// The verbs of `skiff cluster`.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum ClusterCommand {
    /// Show each endpoint's role, term, leader and log indexes.
    Status,
    /// Have each endpoint snapshot its state now and compact its log.
    Snapshot,
    /// Add a node (started with `skiff node --join`) as a voter, or with --learner as a
    /// learner; waits until the change is committed.
    Add {
        /// The new node's id.
        id: u64,
        /// Where peers reach the new node: host:port of its peer listener.
        peer_addr: String,
        /// Add it as a learner (receives the log, does not vote); promote it once caught up.
        #[arg(long)]
        learner: bool,
    },
    /// Remove a voter or learner; waits until the change is committed.
    Remove {
        /// The node's id.
        id: u64,
    },
    /// Make a learner a voter; refused while it is far behind the leader.
    Promote {
        /// The learner's id.
        id: u64,
    },
    /// Show the configuration: each member's role and addresses.
    Members,
    /// Hand leadership to another voter and wait until it leads.
    Transfer {
        /// The voter to hand leadership to [default: the most up-to-date voter].
        #[arg(long)]
        to: Option<u64>,
    },
}

/// One endpoint's line of `cluster snapshot -w json`.
#[derive(Debug, Serialize)]
struct EndpointSnapshot<'a> {
    /// The endpoint asked.
    endpoint: &'a str,
    /// The snapshot taken, or the latest one when nothing was new (`taken` false).
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<&'a SnapshotAnswer>,
    /// Why it gave no answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// One endpoint's line of `cluster status -w json`.
#[derive(Debug, Serialize)]
struct EndpointStatus<'a> {
    /// The endpoint asked.
    endpoint: &'a str,
    /// Its answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a Status>,
    /// Why it gave none.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Runs a `skiff cluster` verb.
pub async fn execute(args: &ClusterArgs) -> Result<Output, ClientError> {
    let client = Client::new(args.connection.client_options())?;
    match args.command {
        ClusterCommand::Status => {
            let mut answers = Vec::with_capacity(client.endpoints().len());
            for (index, endpoint) in client.endpoints().iter().enumerate() {
                answers.push((endpoint.clone(), client.status_of(index).await));
            }
            Ok(render_status(args.connection.write_out, &answers))
        }
        ClusterCommand::Snapshot => {
            let mut answers = Vec::with_capacity(client.endpoints().len());
            for (index, endpoint) in client.endpoints().iter().enumerate() {
                answers.push((endpoint.clone(), client.snapshot_of(index).await));
            }
            Ok(render_snapshots(args.connection.write_out, &answers))
        }
        ClusterCommand::Members => {
            Ok(render_members(args.connection.write_out, &client.members().await?, None))
        }
        ClusterCommand::Add { id, ref peer_addr, learner } => {
            let (action, role) =
                if learner { ("add_learner", "learner") } else { ("add_voter", "voter") };
            let change =
                MemberChange { action: action.to_string(), id, peer_addr: Some(peer_addr.clone()) };
            change_members(args, &client, change, &format!("Member {id} added as a {role}")).await
        }
        ClusterCommand::Remove { id } => {
            let change = MemberChange { action: "remove".to_string(), id, peer_addr: None };
            change_members(args, &client, change, &format!("Member {id} removed")).await
        }
        ClusterCommand::Promote { id } => {
            let change = MemberChange { action: "promote".to_string(), id, peer_addr: None };
            change_members(args, &client, change, &format!("Member {id} promoted to voter")).await
        }
        ClusterCommand::Transfer { to } => {
            let answer = client.transfer_leadership(to).await?;
            Ok(render_transfer(args.connection.write_out, &answer))
        }
    }
}

/// Asks for one membership change and renders the configuration reached; `done` is the line
/// simple output starts with.
async fn change_members(
    args: &ClusterArgs,
    client: &Client,
    change: MemberChange,
    done: &str,
) -> Result<Output, ClientError> {
    let request = MembersRequest { changes: vec![change] };
    let members = client.change_members(&request).await?;
    Ok(render_members(args.connection.write_out, &members, Some(done)))
}

/// Renders a configuration; `done` is the line simple output starts with after a change.
pub fn render_members(format: WriteOut, members: &Members, done: Option<&str>) -> Output {
    let optional = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_string());
    let rows: Vec<Vec<String>> = members
        .members
        .iter()
        .map(|member| {
            vec![
                member.id.to_string(),
                member.role.clone(),
                optional(&member.peer_addr),
                optional(&member.client_addr),
            ]
        })
        .collect();
    let text = match format {
        WriteOut::Json => json(members),
        WriteOut::Table => table(&["id", "role", "peer addr", "client addr"], &rows),
        WriteOut::Simple => {
            let mut lines = String::new();
            if let Some(done) = done {
                lines.push_str(done);
                lines.push('\n');
            }
            for row in &rows {
                lines.push_str(&row.join(", "));
                lines.push('\n');
            }
            if members.joint {
                let outgoing: Vec<String> = members.outgoing.iter().map(u64::to_string).collect();
                lines.push_str(&format!("joint: outgoing voters {}\n", outgoing.join(",")));
            }
            lines
        }
    };
    Output::text(text)
}

/// Renders a completed leadership transfer.
pub fn render_transfer(format: WriteOut, answer: &TransferAnswer) -> Output {
    let text = match format {
        WriteOut::Json => json(answer),
        WriteOut::Table => table(
            &["leader", "term", "previous leader", "leader client addr"],
            &[vec![
                answer.leader.to_string(),
                answer.term.to_string(),
                answer.previous_leader.to_string(),
                answer.leader_client_addr.clone().unwrap_or_else(|| "-".to_string()),
            ]],
        ),
        WriteOut::Simple if answer.leader == answer.previous_leader => {
            format!("Node {} already leads (term {})\n", answer.leader, answer.term)
        }
        WriteOut::Simple => format!(
            "Leadership transferred from {} to {} (term {})\n",
            answer.previous_leader, answer.leader, answer.term
        ),
    };
    Output::text(text)
}

/// Renders every endpoint's snapshot answer; endpoints that failed go to stderr.
pub fn render_snapshots(
    format: WriteOut,
    answers: &[(String, Result<SnapshotAnswer, ClientError>)],
) -> Output {
    let mut output = Output::default();
    let mut rows = Vec::new();
    let mut lines = String::new();
    let number = |value: Option<u64>| value.map_or("none".to_string(), |value| value.to_string());
    for (endpoint, answer) in answers {
        let snapshot = match answer {
            Ok(answer) => answer,
            Err(error) => {
                output.failed = true;
                output.stderr.push(format!("Error: {endpoint}: {error}"));
                continue;
            }
        };
        let (index, term) = (number(snapshot.index), number(snapshot.term));
        let line = match (snapshot.taken, snapshot.index) {
            (true, _) => format!("{endpoint}: took a snapshot at index {index}, term {term}\n"),
            (false, Some(_)) => {
                format!("{endpoint}: nothing new since the snapshot at index {index}\n")
            }
            (false, None) => format!("{endpoint}: nothing applied yet, no snapshot\n"),
        };
        lines.push_str(&line);
        let result = if snapshot.taken { "taken" } else { "nothing new" };
        rows.push(vec![endpoint.clone(), result.to_string(), index, term]);
    }
    let text = match format {
        WriteOut::Simple => lines,
        WriteOut::Table => table(&["endpoint", "snapshot", "index", "term"], &rows),
        WriteOut::Json => {
            let entries: Vec<EndpointSnapshot<'_>> = answers
                .iter()
                .map(|(endpoint, answer)| EndpointSnapshot {
                    endpoint,
                    snapshot: answer.as_ref().ok(),
                    error: answer.as_ref().err().map(ToString::to_string),
                })
                .collect();
            json(&entries)
        }
    };
    output.stdout = text.into_bytes();
    output
}

/// Renders every endpoint's status; endpoints that failed go to stderr.
pub fn render_status(
    format: WriteOut,
    answers: &[(String, Result<Status, ClientError>)],
) -> Output {
    let mut output = Output::default();
    let mut rows = Vec::new();
    let mut lines = String::new();
    for (endpoint, answer) in answers {
        let status = match answer {
            Ok(status) => status,
            Err(error) => {
                output.failed = true;
                output.stderr.push(format!("Error: {endpoint}: {error}"));
                continue;
            }
        };
        let leader = status.leader.map_or("none".to_string(), |leader| leader.to_string());
        lines.push_str(&format!(
            "{endpoint}: id {}, {}, term {}, leader {leader}, commit {}, applied {}, last index {}\n",
            status.id, status.role, status.term, status.commit, status.applied, status.last_index
        ));
        rows.push(vec![
            endpoint.clone(),
            status.id.to_string(),
            status.role.clone(),
            status.term.to_string(),
            leader,
            status.commit.to_string(),
            status.applied.to_string(),
            status.last_index.to_string(),
        ]);
    }
    let text = match format {
        WriteOut::Simple => lines,
        WriteOut::Table => table(
            &["endpoint", "id", "role", "term", "leader", "commit", "applied", "last index"],
            &rows,
        ),
        WriteOut::Json => {
            let entries: Vec<EndpointStatus<'_>> = answers
                .iter()
                .map(|(endpoint, answer)| EndpointStatus {
                    endpoint,
                    status: answer.as_ref().ok(),
                    error: answer.as_ref().err().map(ToString::to_string),
                })
                .collect();
            json(&entries)
        }
    };
    output.stdout = text.into_bytes();
    output
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::mock_server::{MockCluster, NodeMode};

    /// A status as a node of the mock would give it.
    fn status(id: u64, role: &str, applied: u64) -> Status {
        serde_json::from_value(serde_json::json!({
            "id": id, "cluster_id": 7, "role": role, "term": 3, "leader": 1,
            "leader_client_addr": "127.0.0.1:2379", "commit": 120, "applied": applied,
            "last_index": 121, "durable": 121, "members": [1, 2], "client_addr": "x:1",
            "peer_addr": "x:2", "progress": []
        }))
        .expect("a valid status")
    }

    fn answers() -> Vec<(String, Result<Status, ClientError>)> {
        vec![
            ("127.0.0.1:2379".to_string(), Ok(status(1, "leader", 120))),
            ("127.0.0.1:22379".to_string(), Ok(status(2, "follower", 119))),
            (
                "127.0.0.1:32379".to_string(),
                Err(ClientError::Unreachable {
                    failures: vec![("127.0.0.1:32379".to_string(), "cannot connect".to_string())],
                }),
            ),
        ]
    }

    #[test]
    fn the_status_table_has_a_row_per_answering_endpoint() {
        let output = render_status(WriteOut::Table, &answers());
        assert_eq!(
            String::from_utf8(output.stdout).expect("text"),
            "ENDPOINT          ID   ROLE       TERM   LEADER   COMMIT   APPLIED   LAST INDEX\n\
             127.0.0.1:2379    1    leader     3      1        120      120       121\n\
             127.0.0.1:22379   2    follower   3      1        120      119       121\n"
        );
        assert_eq!(
            output.stderr,
            ["Error: 127.0.0.1:32379: no endpoint reachable: 127.0.0.1:32379: cannot connect"]
        );
        assert!(output.failed);
    }

    #[test]
    fn simple_status_is_a_line_per_endpoint() {
        let output = render_status(WriteOut::Simple, &answers()[..1]);
        assert_eq!(
            String::from_utf8(output.stdout).expect("text"),
            "127.0.0.1:2379: id 1, leader, term 3, leader 1, commit 120, applied 120, \
             last index 121\n"
        );
        assert!(!output.failed);
    }

    #[test]
    fn json_status_wraps_the_api_answer_per_endpoint() {
        let output = render_status(WriteOut::Json, &answers());
        let parsed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
        assert_eq!(parsed[0]["endpoint"], "127.0.0.1:2379");
        assert_eq!(parsed[0]["status"]["role"], "leader");
        assert_eq!(parsed[0]["status"]["progress"], serde_json::json!([]));
        assert_eq!(parsed[2]["error"], "no endpoint reachable: 127.0.0.1:32379: cannot connect");
        assert!(parsed[2].get("status").is_none());
    }

    /// A snapshot answer at `index` (of term 3).
    fn answer(taken: bool, index: Option<u64>) -> SnapshotAnswer {
        SnapshotAnswer { taken, index, term: index.map(|_| 3) }
    }

    #[test]
    fn a_snapshot_line_per_endpoint_and_nothing_new_is_no_failure() {
        let answers = vec![
            ("a:1".to_string(), Ok(answer(true, Some(120)))),
            ("b:2".to_string(), Ok(answer(false, Some(100)))),
            ("c:3".to_string(), Ok(answer(false, None))),
        ];
        let output = render_snapshots(WriteOut::Simple, &answers);
        assert_eq!(
            String::from_utf8(output.stdout).expect("text"),
            "a:1: took a snapshot at index 120, term 3\n\
             b:2: nothing new since the snapshot at index 100\n\
             c:3: nothing applied yet, no snapshot\n"
        );
        assert!(!output.failed);
        let output = render_snapshots(WriteOut::Json, &answers[..1]);
        let parsed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
        assert_eq!(parsed[0]["snapshot"]["taken"], true);
        assert_eq!(parsed[0]["snapshot"]["index"], 120);
    }

    #[tokio::test]
    async fn every_endpoint_is_asked() {
        let cluster = MockCluster::start(&[NodeMode::Serve, NodeMode::Serve, NodeMode::Down]).await;
        let args = ClusterArgs {
            connection: ConnectionArgs {
                endpoints: cluster.endpoints.clone(),
                write_out: WriteOut::Table,
                dial_timeout: Duration::from_secs(1),
                command_timeout: Duration::from_secs(3),
            },
            command: ClusterCommand::Status,
        };
        let output = tokio::time::timeout(Duration::from_secs(20), execute(&args))
            .await
            .expect("bounded")
            .expect("the client is made");
        let text = String::from_utf8(output.stdout).expect("text");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let first: Vec<&str> = lines[1].split_whitespace().take(3).collect();
        assert_eq!(first, [cluster.endpoints[0].as_str(), "1", "leader"], "{text}");
        let second: Vec<&str> = lines[2].split_whitespace().take(3).collect();
        assert_eq!(second, [cluster.endpoints[1].as_str(), "2", "follower"], "{text}");
        assert_eq!(output.stderr.len(), 1);
        assert!(output.failed);
    }
}
