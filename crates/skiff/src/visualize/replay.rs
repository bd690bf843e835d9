//! A simulator run, one event at a time: `GET /v1/run` (what the run is and how it ended) and
//! `GET /v1/run/step/{n}` (the cluster after `n` events).

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use skiff_sim::Options;
use skiff_sim::stepper::Stepper;

use super::{LOG_WINDOW, error, message_json, node_json};

/// The run being shown.
pub struct Replay {
    /// What was run.
    options: Options,
    /// How many events the run has.
    steps: u64,
    /// The step after which an invariant was first found broken, if one was.
    failing_step: Option<u64>,
    /// The verdict of the whole run (as `skiff sim --seed N` gives it), in words.
    verdict: String,
    /// Whether the whole run passed.
    passed: bool,
    /// The number of nodes a step shows (founders and spares).
    nodes: usize,
    /// The stepper of the last request, with that step's event and trace lines.
    current: Mutex<(Stepper, String, Vec<String>)>,
}

impl Replay {
    /// Steps through the run once, to count it; and runs it as `skiff sim` would, for the
    /// verdict (which includes the end-of-run checks).
    pub fn new(options: Options) -> Replay {
        let mut counting = Stepper::new(&options);
        let mut failing_step = None;
        while counting.step().is_some() {
            if failing_step.is_none()
                && counting.view(String::new(), Vec::new(), 0).violation.is_some()
            {
                failing_step = Some(counting.steps());
            }
        }
        let outcome = skiff_sim::run(&options);
        // Every node a step's view shows: the founders and the spares membership changes may
        // add.
        let nodes = outcome.parameters.universe() as usize;
        let (passed, verdict) = match &outcome.failure {
            None => (true, format!("seed {} passed", options.seed)),
            Some(failure) => (
                false,
                format!("seed {} failed at {}: {}", options.seed, failure.time, failure.violation),
            ),
        };
        let steps = counting.steps();
        let current =
            Mutex::new((Stepper::new(&options), "the start of the run".into(), Vec::new()));
        Replay { options, steps, failing_step, verdict, passed, nodes, current }
    }

    /// One line for the terminal.
    pub fn summary_line(&self) -> String {
        let failing = match self.failing_step {
            Some(step) => format!("; the invariant broke at step {step}"),
            None => String::new(),
        };
        format!("{} ({} nodes, {} events{failing})", self.verdict, self.nodes, self.steps)
    }

    /// The stepper (a poisoned lock is replaced by a fresh stepper).
    fn current(&self) -> MutexGuard<'_, (Stepper, String, Vec<String>)> {
        self.current.lock().unwrap_or_else(|poisoned| {
            let mut guard = poisoned.into_inner();
            *guard = (Stepper::new(&self.options), "the start of the run".into(), Vec::new());
            guard
        })
    }

    /// The view after `step` events (at most the run's length).
    fn view(&self, step: u64) -> Value {
        let step = step.min(self.steps);
        let mut current = self.current();
        if current.0.steps() > step {
            *current = (Stepper::new(&self.options), "the start of the run".into(), Vec::new());
        }
        if current.0.steps() < step {
            let (event, lines) = current.0.advance_to(step);
            current.1 = event;
            current.2 = lines;
        }
        let (stepper, event, lines) = &*current;
        let view = stepper.view(event.clone(), lines.clone(), LOG_WINDOW);
        json!({
            "step": view.step,
            "time": view.time.to_string(),
            "time_us": view.time.0,
            "event": view.event,
            "lines": view.lines,
            "nodes": view.nodes.iter().map(node_json).collect::<Vec<_>>(),
            "in_flight": view.in_flight.iter().map(message_json).collect::<Vec<_>>(),
            "violation": view.violation,
            "ended": view.ended,
        })
    }
}

/// The routes of the run.
pub fn routes(replay: Arc<Replay>) -> Router {
    Router::new()
        .route("/v1/run", get(summary))
        .route("/v1/run/step/{step}", get(step))
        .with_state(replay)
}

/// `GET /v1/run`.
async fn summary(State(replay): State<Arc<Replay>>) -> Response {
    axum::Json(json!({
        "seed": replay.options.seed,
        "nodes": replay.nodes,
        "steps": replay.steps,
        "failing_step": replay.failing_step,
        "passed": replay.passed,
        "verdict": replay.verdict,
        "replay": skiff_sim::replay_command(&replay.options),
    }))
    .into_response()
}

/// `GET /v1/run/step/{n}`: stepping is CPU work, so it runs off the async threads.
async fn step(State(replay): State<Arc<Replay>>, Path(step): Path<u64>) -> Response {
    match tokio::task::spawn_blocking(move || replay.view(step)).await {
        Ok(view) => axum::Json(view).into_response(),
        Err(failed) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, format!("stepping failed: {failed}"))
        }
    }
}
