//! A run one event at a time, with a view of the whole cluster after each: what the visualizer
//! (`skiff sim --seed N --web`) shows.
//!
//! [`Stepper`] drives the same [`Simulation`] that [`crate::run`] drives, through the same
//! event handler and the same invariant checks after every event, and stops after each event
//! to let an observer look: each node's role, term, vote, commit and log terms as its core and
//! its driver hold them, the messages in flight with their arrival times, and the trace lines
//! the event wrote. Nothing here computes protocol state; it only reads it.
//!
//! Going backwards is going forwards again: a run is a pure function of its seed, so step `n`
//! is reached by a fresh stepper taking `n` steps, and is the same every time.
//!
//! Two things `run` does are not steps: the check for a message storm (a run the visualizer
//! follows event by event is one the sweep already reported), and the history's
//! linearizability check at the end, which [`crate::run`]'s outcome reports.

use skiff_raft::Message;

use crate::simulation::{Event, Options, Packet, Simulation};
use crate::time::Time;
use crate::trace::TraceMode;

/// How many trace lines one event may write and still be shown whole.
const LINES_PER_STEP: usize = 256;

/// A simulation stopped between events.
pub struct Stepper {
    /// The run.
    simulation: Simulation,
    /// How many events were handled.
    steps: u64,
    /// Whether the run is over (its end, or its queue ran dry).
    ended: bool,
}

/// The cluster after a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// How many events were handled (0: before the first).
    pub step: u64,
    /// The simulated time.
    pub time: Time,
    /// What the last event was, in a few words.
    pub event: String,
    /// The trace lines the last event wrote (the run's own narrative).
    pub lines: Vec<String>,
    /// Every node, in id order.
    pub nodes: Vec<NodeView>,
    /// The Raft messages in flight, earliest arrival first.
    pub in_flight: Vec<InFlight>,
    /// The first broken invariant, once one broke (the run stops at it).
    pub violation: Option<String>,
    /// Whether the run is over.
    pub ended: bool,
}

/// One node after a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// The node's id.
    pub id: u64,
    /// `up`, `paused`, `crashed`, `spare` (not started yet: membership changes may add it) or
    /// `retired` (removed from the cluster and stopped for good).
    pub state: &'static str,
    /// How many times it (re)started.
    pub incarnation: u64,
    /// Its core's view, while it runs (a crashed node has no core).
    pub core: Option<CoreView>,
    /// The index of the first entry of `log_terms`.
    pub log_first: u64,
    /// The terms of the last entries of its log (as its driver holds it), oldest first.
    pub log_terms: Vec<u64>,
    /// Its last log index.
    pub last_index: u64,
}

/// What a running node's core reports (`skiff_raft::Status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreView {
    /// `follower`, `pre-candidate`, `candidate` or `leader`.
    pub role: String,
    /// The current term.
    pub term: u64,
    /// The vote of the current term.
    pub vote: Option<u64>,
    /// The leader it knows.
    pub leader: Option<u64>,
    /// The commit index.
    pub commit: u64,
    /// The highest durable index.
    pub durable: u64,
    /// Per follower, when leading: (id, match index).
    pub progress: Vec<(u64, u64)>,
}

/// A Raft message on its way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// When it arrives (unless a partition or a crash is in the way then).
    pub arrives: Time,
    /// The sender.
    pub from: u64,
    /// The receiver.
    pub to: u64,
    /// The message, as the trace writes it.
    pub text: String,
}

impl Stepper {
    /// A run of `options` before its first event. The trace is kept (in `Tail` mode) whatever
    /// `options` says, since the views quote it.
    pub fn new(options: &Options) -> Stepper {
        let options = Options { trace: TraceMode::Tail(LINES_PER_STEP), ..options.clone() };
        let mut simulation = Simulation::new(&options);
        simulation.start();
        Stepper { simulation, steps: 0, ended: false }
    }

    /// How many events were handled.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Whether the run stopped: its end, or a broken invariant.
    pub fn stopped(&self) -> bool {
        self.ended || self.simulation.failure.is_some()
    }

    /// Handles the next event and checks the invariants, as the runner does; returns what the
    /// event was and the trace lines it wrote, or `None` once stopped.
    pub fn step(&mut self) -> Option<(String, Vec<String>)> {
        if self.stopped() {
            return None;
        }
        let Some((time, event)) = self.simulation.queue.pop() else {
            self.ended = true;
            return None;
        };
        assert!(
            time >= self.simulation.now,
            "time goes backwards: {} -> {time}",
            self.simulation.now
        );
        self.simulation.now = time;
        self.simulation.stats.events += 1;
        self.steps += 1;
        if matches!(event, Event::End) {
            self.ended = true;
            return Some(("the end of the run".into(), Vec::new()));
        }
        let described = describe(&event);
        let before = self.simulation.trace.lines();
        self.simulation.handle(event);
        if self.simulation.failure.is_none() {
            self.simulation.check_step();
        }
        let written = (self.simulation.trace.lines() - before) as usize;
        let tail = self.simulation.trace.tail();
        let lines = tail[tail.len().saturating_sub(written)..].to_vec();
        Some((described, lines))
    }

    /// Steps until `steps` events were handled or the run stopped; returns the last step's
    /// description and lines.
    pub fn advance_to(&mut self, steps: u64) -> (String, Vec<String>) {
        let mut last = (String::from("the start of the run"), Vec::new());
        while self.steps < steps {
            match self.step() {
                Some(step) => last = step,
                None => break,
            }
        }
        last
    }

    /// The cluster now; `log_window` is how many of each log's last entries to include.
    pub fn view(&self, event: String, lines: Vec<String>, log_window: u64) -> View {
        let simulation = &self.simulation;
        let nodes = simulation
            .nodes
            .values()
            .map(|node| {
                let last_index = node.log.last_index().0;
                // Entries at or below the log's base were compacted away.
                let log_first = last_index.saturating_sub(log_window).max(node.log.base().0 + 1);
                let log_terms = (log_first..=last_index)
                    .map(|index| node.log.term(skiff_raft::Index(index)).map_or(0, |term| term.0))
                    .collect();
                let core = node.core.as_ref().map(|core| {
                    let status = core.status();
                    CoreView {
                        role: status.role.to_string(),
                        term: status.term.0,
                        vote: status.vote.map(|vote| vote.0),
                        leader: status.leader.map(|leader| leader.0),
                        commit: status.commit.0,
                        durable: status.durable.0,
                        progress: status
                            .progress
                            .iter()
                            .map(|(id, (match_index, _, _))| (id.0, match_index.0))
                            .collect(),
                    }
                });
                let state = match (&node.core, node.paused) {
                    (None, _) if node.dormant => "spare",
                    (None, _) if node.retired => "retired",
                    (None, _) => "crashed",
                    (Some(_), true) => "paused",
                    (Some(_), false) => "up",
                };
                NodeView {
                    id: node.id.0,
                    state,
                    incarnation: node.incarnation,
                    core,
                    log_first,
                    log_terms,
                    last_index,
                }
            })
            .collect();
        let mut in_flight: Vec<InFlight> = simulation
            .queue
            .iter()
            .filter_map(|(time, event)| match event {
                Event::Deliver(Packet::Raft(message)) => Some(in_flight(time, message)),
                _ => None,
            })
            .collect();
        in_flight.sort_by_key(|message| (message.arrives, message.from, message.to));
        View {
            step: self.steps,
            time: simulation.now,
            event,
            lines,
            nodes,
            in_flight,
            violation: simulation.failure.as_ref().map(|failure| failure.violation.to_string()),
            ended: self.stopped(),
        }
    }
}

/// A message in flight, for a view.
fn in_flight(arrives: Time, message: &Message) -> InFlight {
    InFlight { arrives, from: message.from.0, to: message.to.0, text: message.to_string() }
}

/// An event in a few words.
fn describe(event: &Event) -> String {
    match event {
        Event::Tick { node, .. } => format!("{node} ticks"),
        Event::Deliver(Packet::Raft(message)) => format!("delivered: {message}"),
        Event::Deliver(Packet::Forward { from, to, .. }) => {
            format!("{from} forwards a client request to {to}")
        }
        Event::Deliver(Packet::ChunkRequest { from, to, .. }) => {
            format!("{from} asks {to} for a chunk of its snapshot")
        }
        Event::Deliver(Packet::Chunk { from, to, .. }) => {
            format!("{from} answers a chunk request of {to}")
        }
        Event::SnapshotNow { node } => format!("a snapshot of {node} is asked for"),
        Event::SnapshotWritten { node, .. } => format!("{node}'s snapshot file is written"),
        Event::ChunkTimeout { node, .. } => format!("a chunk request of {node} times out"),
        Event::Operator => "the operator's turn (membership changes)".into(),
        Event::Retire { node } => format!("{node}, removed, is stopped for good"),
        Event::LeaseProbe { node, .. } => format!("the lease prober reads at {node}"),
        Event::DiskDone { node, .. } => format!("a write of {node} became durable"),
        Event::ReadDone { node, .. } => format!("a log read of {node} completed"),
        Event::ToNode { node, request } => {
            format!("a request of client c{} reaches {node}", request.client)
        }
        Event::ToClient(reply) => format!("an answer reaches client c{}", reply.client),
        Event::ClientWake { client, .. } => format!("client c{client} wakes"),
        Event::ClientTimeout { client, .. } => format!("a request of client c{client} times out"),
        Event::Fault(number) => format!("fault #{number} strikes"),
        Event::Undo(number) => format!("partition #{number} heals"),
        Event::Recover { node, .. } => format!("{node} recovers"),
        Event::Triggered { node, fault } => format!("a trigger of fault #{fault} strikes {node}"),
        Event::Heal => "the heal: every fault is removed".into(),
        Event::Probe => "a liveness probe is proposed".into(),
        Event::LivenessDeadline => "the liveness deadline".into(),
        Event::Quiet => "the clients are done: quiet period".into(),
        Event::End => "the end of the run".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_step_twice_is_the_same_view() {
        let options = Options::new(7);
        let mut first = Stepper::new(&options);
        let (event, lines) = first.advance_to(500);
        let a = first.view(event, lines, 20);
        let mut second = Stepper::new(&options);
        let (event, lines) = second.advance_to(500);
        let b = second.view(event, lines, 20);
        assert_eq!(a, b);
        assert_eq!(a.step, 500);
        assert_eq!(a.nodes.len(), first.simulation.ids.len());
    }

    #[test]
    fn a_passing_seed_steps_to_its_end_without_a_violation() {
        let mut stepper = Stepper::new(&Options::new(3));
        while stepper.step().is_some() {}
        let view = stepper.view(String::new(), Vec::new(), 10);
        assert!(view.ended);
        assert_eq!(view.violation, None);
        assert!(view.nodes.iter().any(|node| node.last_index > 0), "something was replicated");
    }
}
