//! A three-node cluster driven by hand: `skiff_raft::testkit::LocalCluster`, where nothing
//! happens unless asked. `GET /v1/hand` shows it; `POST /v1/hand/{action}` acts on it.
//!
//! | action | what it does |
//! |---|---|
//! | `deliver?message=i` | delivers the i-th message in flight (and lets its receiver act) |
//! | `drop?message=i` | loses it |
//! | `tick?node=n` | one tick of node n's clock (a leader's tick may send heartbeats) |
//! | `timeout?node=n` | ticks node n until its election timer fires (its role or term changes), at most twice the longest election timeout |
//! | `crash?node=n`, `restart?node=n` | loses what is not durable / restarts from the disk |
//! | `isolate?node=n`, `heal` | cuts node n's links both ways / restores every link |
//! | `propose` | proposes an entry at the leader |
//! | `reset` | a fresh cluster |

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use skiff_raft::testkit::LocalCluster;
use skiff_raft::{Index, NodeId};
use skiff_sim::stepper::{CoreView, NodeView};

use super::{LOG_WINDOW, core_json, error, node_json};

/// The size of the hand-driven cluster.
const NODES: u64 = 3;
/// How many trace lines the page keeps.
const TRACE_LINES: usize = 200;

/// The hand-driven cluster and what it did.
pub struct Hand {
    /// The cluster and its trace so far, newest last.
    state: Mutex<(LocalCluster, Vec<String>, u64)>,
}

/// The parameters of an action.
#[derive(Debug, Default, Deserialize)]
pub struct Target {
    /// The node acted on.
    node: Option<u64>,
    /// The position of the message acted on, in the list of messages in flight.
    message: Option<usize>,
}

/// A fresh cluster, tracing.
fn fresh() -> LocalCluster {
    LocalCluster::new(NODES, true, |_| {})
}

impl Hand {
    /// A fresh cluster.
    pub fn new() -> Hand {
        Hand { state: Mutex::new((fresh(), Vec::new(), 0)) }
    }

    /// The cluster (a poisoned lock, left by a panic inside the core, gets a fresh cluster).
    fn state(&self) -> MutexGuard<'_, (LocalCluster, Vec<String>, u64)> {
        self.state.lock().unwrap_or_else(|poisoned| {
            let mut guard = poisoned.into_inner();
            *guard = (fresh(), vec!["the cluster was reset after a failure".into()], 0);
            guard
        })
    }
}

/// Does `action` to the cluster; `Ok` says what was done.
fn act(cluster: &mut LocalCluster, action: &str, target: &Target) -> Result<String, String> {
    let node = || -> Result<NodeId, String> {
        let id = target.node.ok_or("which node? (?node=N)")?;
        let id = NodeId(id);
        if cluster.nodes.contains_key(&id) { Ok(id) } else { Err(format!("there is no node {id}")) }
    };
    match action {
        "deliver" | "drop" => {
            let position = target.message.ok_or("which message? (?message=I)")?;
            let message = cluster
                .network
                .remove(position)
                .ok_or_else(|| format!("there is no message {position} in flight"))?;
            let text = message.to_string();
            if action == "drop" {
                return Ok(format!("dropped {text}"));
            }
            // Deliver just this one: the others wait aside, and what the receiver sends in
            // answer joins them at the back.
            let waiting = std::mem::take(&mut cluster.network);
            cluster.network.push_back(message);
            let delivered = cluster.deliver(|_| true);
            let sent = std::mem::replace(&mut cluster.network, waiting);
            cluster.network.extend(sent);
            Ok(if delivered == 1 {
                format!("delivered {text}")
            } else {
                format!("{text} was lost: its receiver is down")
            })
        }
        "tick" => {
            let id = node()?;
            cluster.tick(id, 1);
            Ok(format!("{id} ticked"))
        }
        "timeout" => {
            let id = node()?;
            if cluster.nodes[&id].down {
                return Err(format!("{id} is down"));
            }
            let before = (cluster.node(id).role(), cluster.node(id).term());
            let limit = 2 * cluster.nodes[&id].config.election_timeout + 1;
            for ticks in 1..=limit {
                cluster.tick(id, 1);
                if (cluster.node(id).role(), cluster.node(id).term()) != before {
                    return Ok(format!(
                        "{id}'s election timeout fired after {ticks} ticks: now {} in term {}",
                        cluster.node(id).role(),
                        cluster.node(id).term()
                    ));
                }
            }
            Ok(format!(
                "{id} ticked {limit} times without a change (a leader's election timer does not \
                 fire; a pre-candidate without a quorum of answers stays one)"
            ))
        }
        "crash" => {
            let id = node()?;
            cluster.crash(id);
            Ok(format!("{id} crashed: what was not durable is lost"))
        }
        "restart" => {
            let id = node()?;
            if !cluster.nodes[&id].down {
                return Err(format!("{id} is running; crash it first"));
            }
            cluster.restart(id);
            cluster.process(id);
            Ok(format!("{id} restarted from its durable state"))
        }
        "isolate" => {
            let id = node()?;
            let others: Vec<NodeId> = cluster.nodes.keys().copied().filter(|o| *o != id).collect();
            for other in others {
                cluster.cut.insert((id, other));
                cluster.cut.insert((other, id));
            }
            Ok(format!("{id} is cut off: messages to and from it are dropped when sent"))
        }
        "heal" => {
            cluster.cut.clear();
            Ok("every link is healed".into())
        }
        "propose" => {
            let leader = cluster.leader().ok_or("no node leads: fire a timeout first")?;
            let command = Bytes::from(format!("entry {}", cluster.node(leader).commit().0 + 1));
            let index = cluster.node_mut(leader).propose(command).map_err(|e| e.to_string())?;
            cluster.process(leader);
            Ok(format!("proposed an entry at {leader}: index {index}"))
        }
        other => Err(format!("unknown action {other:?}")),
    }
}

/// The cluster as the page draws it.
fn view(cluster: &LocalCluster, trace: &[String], actions: u64) -> Value {
    let nodes: Vec<Value> = cluster
        .nodes
        .iter()
        .map(|(id, local)| {
            let last_index = local.storage.last_index().0;
            let log_first = last_index.saturating_sub(LOG_WINDOW).max(1);
            let log_terms: Vec<u64> = (log_first..=last_index)
                .map(|index| local.storage.term(Index(index)).map_or(0, |term| term.0))
                .collect();
            let core = (!local.down).then(|| {
                let status = local.node.status();
                CoreView {
                    role: status.role.to_string(),
                    term: status.term.0,
                    vote: status.vote.map(|vote| vote.0),
                    leader: status.leader.map(|leader| leader.0),
                    commit: status.commit.0,
                    durable: status.durable.0,
                    progress: status.progress.iter().map(|(id, (m, _, _))| (id.0, m.0)).collect(),
                }
            });
            let isolated = cluster.cut.iter().any(|(from, _)| from == id);
            let mut json = node_json(&NodeView {
                id: id.0,
                state: if local.down { "crashed" } else { "up" },
                incarnation: 0,
                core: None,
                log_first,
                log_terms,
                last_index,
            });
            json["core"] = core.as_ref().map_or(Value::Null, core_json);
            json["isolated"] = json!(isolated);
            json
        })
        .collect();
    let in_flight: Vec<Value> = cluster
        .network
        .iter()
        .enumerate()
        .map(|(position, message)| {
            json!({
                "position": position,
                "from": message.from.0,
                "to": message.to.0,
                "text": message.to_string(),
            })
        })
        .collect();
    json!({
        "actions": actions,
        "nodes": nodes,
        "in_flight": in_flight,
        "lines": trace,
        "leader": cluster.leader().map(|leader| leader.0),
    })
}

/// The routes of the hand-driven cluster.
pub fn routes(hand: Arc<Hand>) -> Router {
    Router::new()
        .route("/v1/hand", get(show))
        .route("/v1/hand/{action}", post(perform))
        .with_state(hand)
}

/// `GET /v1/hand`.
async fn show(State(hand): State<Arc<Hand>>) -> Response {
    let state = hand.state();
    axum::Json(view(&state.0, &state.1, state.2)).into_response()
}

/// `POST /v1/hand/{action}`: acts, then answers the new view with `message`.
async fn perform(
    State(hand): State<Arc<Hand>>,
    Path(action): Path<String>,
    Query(target): Query<Target>,
) -> Response {
    let mut state = hand.state();
    let (cluster, trace, actions) = &mut *state;
    let outcome = if action == "reset" {
        *cluster = fresh();
        trace.clear();
        Ok("a fresh cluster".to_string())
    } else {
        act(cluster, &action, &target)
    };
    match outcome {
        Ok(message) => {
            *actions += 1;
            trace.push(format!("#{actions} {message}"));
            trace.extend(cluster.take_trace().into_iter().map(|line| format!("   {line}")));
            let excess = trace.len().saturating_sub(TRACE_LINES);
            trace.drain(..excess);
            let mut answer = view(cluster, trace, *actions);
            answer["message"] = json!(message);
            axum::Json(answer).into_response()
        }
        Err(message) => error(StatusCode::CONFLICT, message),
    }
}
