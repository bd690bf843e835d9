//! The collector: once a second, one sample of every member (the steps are in the module
//! documentation of `dashboard`).

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tokio::time::MissedTickBehavior;

use super::{
    FETCH_TIMEOUT, LatencySnapshot, Load, Member, ProcessState, SAMPLE_INTERVAL, Sample, Shared,
    Source,
};
use crate::http::status_json;
use crate::metrics::Metrics;

/// What `GET /v1/dashboard/node` answers: the node's `/v1/status` and its own load.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct NodeReport {
    /// The same JSON as `GET /v1/status`.
    pub status: serde_json::Value,
    /// The node's load over its last sample interval; `None` in its first second.
    pub load: Option<Load>,
}

/// One node in a sample, as the page receives it.
#[derive(Debug, Serialize)]
struct NodeView {
    /// The node's id.
    id: u64,
    /// Where it serves clients, if known.
    client_addr: Option<String>,
    /// Its process, when the program serving the page started it (`skiff demo`).
    process: Option<ProcessState>,
    /// Its `/v1/status`, when it answered.
    status: Option<serde_json::Value>,
    /// Its load, when it answered and has one.
    load: Option<Load>,
    /// Why it did not answer.
    error: Option<String>,
}

/// The collector's memory between samples.
struct Collector {
    /// The number of the last sample.
    sequence: u64,
    /// The last measurement of this node's metrics (node mode).
    meter: Option<Meter>,
    /// The members and their client addresses as last known: a node that cannot reach its own
    /// driver for a moment still shows the others.
    members: BTreeMap<u64, Option<String>>,
}

/// This node's counters at the start of the current window.
struct Meter {
    /// When they were read.
    at: Instant,
    /// The commit index then.
    commit: i64,
    /// The write latencies then.
    writes: LatencySnapshot,
    /// Raft messages sent to each peer so far, by peer id.
    sent: BTreeMap<u64, u64>,
}

impl Meter {
    /// Reads the counters now.
    fn read(metrics: &Metrics) -> Meter {
        Meter {
            at: Instant::now(),
            commit: metrics.commit_index.get(),
            writes: metrics.write_duration.snapshot(),
            sent: sent_messages(&metrics.encode()),
        }
    }

    /// The load since this measurement, and the measurement that starts the next window.
    fn load_until(&self, now: Meter) -> (Load, Meter) {
        let seconds = now.at.duration_since(self.at).as_secs_f64().max(1e-3);
        let writes = now.writes.since(&self.writes);
        // The commit index restarts from the log's saved value after a restart; a step
        // backwards is not negative progress.
        let committed = (now.commit - self.commit).max(0) as f64;
        let load = Load {
            window_seconds: seconds,
            commits_per_second: committed / seconds,
            writes_per_second: writes.count() as f64 / seconds,
            write_p50_seconds: writes.quantile_seconds(0.5),
            write_p99_seconds: writes.quantile_seconds(0.99),
            messages_per_second: now
                .sent
                .iter()
                .map(|(peer, sent)| {
                    // A counter that went backwards restarted (a new series): count from zero.
                    let before = self.sent.get(peer).copied().filter(|before| before <= sent);
                    (*peer, (sent - before.unwrap_or(0)) as f64 / seconds)
                })
                .collect(),
        };
        (load, now)
    }
}

/// Samples the cluster every [`SAMPLE_INTERVAL`] until the dashboard is dropped.
pub(super) async fn run(shared: Weak<Shared>) {
    let mut ticker = tokio::time::interval(SAMPLE_INTERVAL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick is immediate; the first window starts there.
    ticker.tick().await;
    let mut collector = {
        let Some(shared) = shared.upgrade() else { return };
        let meter = match &shared.source {
            Source::Node { metrics, .. } => Some(Meter::read(metrics)),
            Source::Members(_) => None,
        };
        let members = match &shared.source {
            Source::Node { .. } => BTreeMap::new(),
            Source::Members(members) => members
                .iter()
                .map(|Member { id, client_addr }| (*id, Some(client_addr.clone())))
                .collect(),
        };
        Collector { sequence: 0, meter, members }
    };
    loop {
        ticker.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let sample = collector.sample(&shared).await;
        shared.publish(sample);
    }
}

impl Collector {
    /// Takes one sample of every member.
    async fn sample(&mut self, shared: &Shared) -> Sample {
        let mut own: Option<(u64, Result<NodeReport, String>)> = None;
        if let Source::Node { handle, metrics } = &shared.source {
            let load = self.meter.take().map(|meter| {
                let (load, next) = meter.load_until(Meter::read(metrics));
                self.meter = Some(next);
                load
            });
            *shared.load() = load.clone();
            let id = handle.info().id.0;
            let report = match handle.status().await {
                Ok(status) => {
                    self.members = status
                        .members
                        .iter()
                        .map(|member| (member.0, status.client_addrs.get(member).cloned()))
                        .collect();
                    let info = handle.info();
                    let status =
                        status_json(&status, info.cluster_id, &info.client_addr, &info.peer_addr);
                    Ok(NodeReport { status, load })
                }
                Err(error) => Err(format!("its own driver did not answer: {error}")),
            };
            self.members.entry(id).or_insert_with(|| Some(handle.info().client_addr.clone()));
            own = Some((id, report));
        }
        let processes = shared.control.as_ref().map(|control| control.processes());
        let fetches = self.members.iter().map(|(id, client_addr)| {
            let id = *id;
            let own = match own.take() {
                Some((own_id, report)) if own_id == id => Some(report),
                other => {
                    own = other;
                    None
                }
            };
            async move {
                let report = match (own, client_addr) {
                    (Some(report), _) => report,
                    (None, Some(addr)) => fetch(shared, addr).await,
                    (None, None) => Err("its client address is not known yet: it has not \
                                         connected to this node since this node started"
                        .to_string()),
                };
                (id, client_addr.clone(), report)
            }
        });
        let reports = futures_util::future::join_all(fetches).await;
        let nodes: Vec<NodeView> = reports
            .into_iter()
            .map(|(id, client_addr, report)| {
                let process = processes.as_ref().and_then(|processes| processes.get(&id)).copied();
                let (status, load, error) = match report {
                    Ok(NodeReport { status, load }) => (Some(status), load, None),
                    Err(error) => (None, None, Some(error)),
                };
                NodeView { id, client_addr, process, status, load, error }
            })
            .collect();
        self.sequence += 1;
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX));
        let json = serde_json::json!({
            "sequence": self.sequence,
            "unix_ms": unix_ms,
            "nodes": nodes,
        });
        Sample { sequence: self.sequence, json: json.to_string() }
    }
}

/// The series `skiff_network_peer_sent_messages_total{peer="N"} V` of a Prometheus text
/// exposition, by peer id.
fn sent_messages(text: &str) -> BTreeMap<u64, u64> {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("skiff_network_peer_sent_messages_total{")?;
            let (labels, value) = rest.split_once('}')?;
            let peer = labels.split(',').find_map(|label| {
                label.trim().strip_prefix("peer=\"")?.strip_suffix('"')?.parse().ok()
            })?;
            Some((peer, value.trim().parse().ok()?))
        })
        .collect()
}

/// `GET http://{addr}/v1/dashboard/node`, within [`FETCH_TIMEOUT`].
async fn fetch(shared: &Shared, addr: &str) -> Result<NodeReport, String> {
    let exchange = async {
        let request = axum::http::Request::get(format!("http://{addr}/v1/dashboard/node"))
            .body(Body::empty())
            .map_err(|error| format!("bad address {addr}: {error}"))?;
        let response = shared
            .client
            .request(request)
            .await
            .map_err(|error| format!("unreachable: {}", root_cause(&error)))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| format!("the answer broke off: {error}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("answered {status}: {}", String::from_utf8_lossy(&body)));
        }
        serde_json::from_slice(&body).map_err(|error| format!("answered unreadable JSON: {error}"))
    };
    tokio::time::timeout(FETCH_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} ms", FETCH_TIMEOUT.as_millis())))
}

/// The innermost cause of an error, which says what happened ("Connection refused (os error
/// 111)"); the outer layers of a client error only say where.
pub(super) fn root_cause(error: &dyn std::error::Error) -> String {
    let mut innermost = error;
    while let Some(cause) = innermost.source() {
        innermost = cause;
    }
    innermost.to_string()
}

/// The client addresses of the reachable nodes of the latest sample, the leader's first: where
/// the demo relays key requests. (Reads the JSON back rather than keeping a second copy.)
pub(super) fn relay_order(shared: &Arc<Shared>) -> Vec<String> {
    let Some(latest) = shared.history().back().cloned() else {
        return match &shared.source {
            Source::Members(members) => {
                members.iter().map(|member| member.client_addr.clone()).collect()
            }
            Source::Node { handle, .. } => vec![handle.info().client_addr.clone()],
        };
    };
    let parsed: serde_json::Value = serde_json::from_str(&latest.json).unwrap_or_default();
    let mut leaders = Vec::new();
    let mut others = Vec::new();
    for node in parsed["nodes"].as_array().into_iter().flatten() {
        let Some(addr) = node["client_addr"].as_str() else { continue };
        match node["status"]["role"].as_str() {
            Some("leader") => leaders.push(addr.to_string()),
            Some(_) => others.push(addr.to_string()),
            None => {}
        }
    }
    leaders.extend(others);
    leaders
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_messages_are_read_from_the_exposition_by_peer() {
        let text = "# HELP skiff_network_peer_sent_messages Raft messages written to the peer.\n\
                    # TYPE skiff_network_peer_sent_messages counter\n\
                    skiff_network_peer_sent_messages_total{peer=\"2\"} 120\n\
                    skiff_network_peer_sent_messages_total{peer=\"3\"} 7\n\
                    skiff_network_peer_sent_messages_total{peer=\"unknown\"} 1\n\
                    skiff_network_peer_sent_bytes_total{peer=\"2\"} 9000\n";
        assert_eq!(sent_messages(text), BTreeMap::from([(2, 120), (3, 7)]));
    }
}
