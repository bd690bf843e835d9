//! The clients: put, get, compare-and-swap and delete on a few keys, through whichever node
//! they believe leads, with retries and timeouts, recorded as a history.
//!
//! Each client runs one operation at a time. It sends the operation to the node it believes
//! leads; a node that does not lead forwards it to the leader it knows of, or answers
//! "not leader" with a hint. The client follows hints, backs off when nobody knows a leader,
//! and retries at another node when an attempt times out, reusing the operation's sequence
//! number so that the store's sessions apply a write once however many attempts commit. Gets
//! take the same path but never enter the log: each is drawn as one of the `ReadKind`s
//! (ReadIndex, through a follower, lease, stale; see `driver.rs`), and a get whose read could
//! not be confirmed is retried like a write whose entry was overwritten. Stale gets are left
//! out of the history: a stale read may return any state the node's store has been in, which
//! no linearization is owed.
//!
//! The history records what the client could observe. An operation ends
//! - `Ok` with its result, when any attempt's answer arrives;
//! - `Fail` when it gives up and no attempt can have been proposed (every attempt was refused
//!   with "not leader" by the node it reached, and none was forwarded or lost);
//! - `Unknown` when it gives up otherwise: an attempt that timed out or was forwarded may still
//!   commit, at any time after the invocation.
//!
//! Written values are unique across the run, which makes histories easier to check and
//! violations easier to read.

use std::collections::BTreeMap;
use std::fmt;

use skiff_raft::NodeId;

use crate::history::{ClientId, Event, History, Key, Operation, OperationResult, Outcome, Value};
use crate::parameters::WorkloadParameters;
use crate::random::Random;
use crate::time::Time;

/// The client id of the lease prober (see `FaultKind::LeaseRace`): the workload's clients are
/// numbered from 1, and the final reads' client after them.
pub const LEASE_PROBER: ClientId = 0;

/// How a get is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReadKind {
    /// By the leader, after a heartbeat round confirms it still leads (ReadIndex, Raft thesis
    /// §6.4).
    ReadIndex,
    /// By whichever node the client reached, once its store has applied a read index its
    /// leader confirmed (a read through a follower, §6.4).
    Follower,
    /// By the leader at once, under its lease (§6.4.1), or by ReadIndex when it holds none.
    Lease,
    /// By whichever node the client reached, from its store as it is: possibly stale, so not
    /// part of the history the linearizability check reads.
    Stale,
}

impl ReadKind {
    /// Every kind, in the order of `WorkloadParameters::reads`.
    pub const ALL: [ReadKind; 4] =
        [ReadKind::ReadIndex, ReadKind::Follower, ReadKind::Lease, ReadKind::Stale];
}

impl fmt::Display for ReadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReadKind::ReadIndex => "read-index",
            ReadKind::Follower => "follower",
            ReadKind::Lease => "lease",
            ReadKind::Stale => "stale",
        })
    }
}

/// One attempt of an operation, on its way to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The client.
    pub client: ClientId,
    /// The operation's sequence number for the client.
    pub sequence: u64,
    /// The attempt's number within the operation.
    pub attempt: u64,
    /// What to do.
    pub operation: Operation,
    /// The node that forwarded it, if it was forwarded (requests are forwarded once at most).
    pub forwarded_by: Option<NodeId>,
    /// How a get is to be served (ignored for writes).
    pub read: ReadKind,
}

/// A node's answer to an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The operation was applied with this result.
    Done(OperationResult),
    /// The node does not lead; it names the leader it knows of. Nothing was proposed.
    NotLeader(Option<NodeId>),
    /// The node proposed it, but another entry took its index: this attempt will not commit.
    Aborted,
    /// The node could not confirm the get's read (it stopped leading, or crashed, which breaks
    /// the client's connection): nothing was read.
    ReadFailed,
}

/// An answer on its way back to a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The node that answers.
    pub from: NodeId,
    /// The client.
    pub client: ClientId,
    /// The operation's sequence number.
    pub sequence: u64,
    /// The attempt answered.
    pub attempt: u64,
    /// The answer.
    pub answer: Answer,
}

/// What a client wants done after an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Nothing until something arrives.
    Wait,
    /// Send `request` to `to`; time the attempt out at `timeout`.
    Send {
        /// The node to send to.
        to: NodeId,
        /// The attempt.
        request: Request,
        /// When to give up on this attempt.
        timeout: Time,
    },
    /// Wake the client at `time` with `token` (a later wake request supersedes this one).
    Wake {
        /// When.
        time: Time,
        /// Which wake request this is.
        token: u64,
    },
}

/// The operation a client has open.
#[derive(Clone, Copy, Debug)]
struct Open {
    /// Its sequence number.
    sequence: u64,
    /// What it does.
    operation: Operation,
    /// The number of the latest attempt.
    attempt: u64,
    /// Whether the latest attempt awaits an answer.
    waiting: bool,
    /// When the client gives up.
    deadline: Time,
    /// Whether some attempt may have been proposed (and so may still take effect).
    maybe_applied: bool,
    /// How a get is to be served; a stale get is left out of the history.
    read: ReadKind,
}

/// One client.
#[derive(Clone, Debug)]
struct Client {
    /// The sequence number of the next operation.
    next_sequence: u64,
    /// The node it believes leads.
    leader: NodeId,
    /// Its open operation.
    open: Option<Open>,
    /// The wake request in force.
    wake_token: u64,
    /// The last value it saw under each key, for compare-and-swap.
    seen: BTreeMap<Key, Value>,
}

/// Counts of what the clients did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkloadStats {
    /// Operations invoked.
    pub invoked: u64,
    /// Operations that ended `Ok`.
    pub ok: u64,
    /// Operations that ended `Fail`.
    pub failed: u64,
    /// Operations that ended `Unknown`.
    pub unknown: u64,
    /// Attempts sent.
    pub attempts: u64,
    /// Stale gets invoked (left out of the history and of the counts above).
    pub stale_reads: u64,
}

/// All clients, and the history they record.
#[derive(Debug)]
pub struct Workload {
    /// The parameters drawn for this run.
    parameters: WorkloadParameters,
    /// The nodes clients may contact.
    nodes: Vec<NodeId>,
    /// The clients by id.
    clients: BTreeMap<ClientId, Client>,
    /// The workload's own random choices.
    random: Random,
    /// Whether new operations may start.
    running: bool,
    /// The last value written by any operation (values are unique).
    last_value: Value,
    /// The history so far.
    history: History,
    /// The counts so far.
    stats: WorkloadStats,
}

impl Workload {
    /// Clients for a cluster of `nodes`, not yet started.
    pub fn new(parameters: WorkloadParameters, nodes: Vec<NodeId>, mut random: Random) -> Workload {
        let clients = (1..=parameters.clients)
            .map(|id| {
                let leader = random.pick(&nodes);
                let client = Client {
                    next_sequence: 1,
                    leader,
                    open: None,
                    wake_token: 0,
                    seen: BTreeMap::new(),
                };
                (id, client)
            })
            .collect();
        Workload {
            parameters,
            nodes,
            clients,
            random,
            running: true,
            last_value: 0,
            history: History::default(),
            stats: WorkloadStats::default(),
        }
    }

    /// The first wake-up of every client.
    pub fn start(&mut self, now: Time) -> Vec<(ClientId, Next)> {
        let ids: Vec<ClientId> = self.clients.keys().copied().collect();
        ids.into_iter().map(|id| (id, self.think(id, now))).collect()
    }

    /// Stops new operations; open ones run to their end.
    pub fn stop(&mut self) {
        self.running = false;
    }

    /// Whether every client is idle (after `stop`, the run may end).
    pub fn idle(&self) -> bool {
        self.clients.values().all(|client| client.open.is_none())
    }

    /// Ends the run: every open operation ends `Unknown` at `now`.
    pub fn finish(&mut self, now: Time) {
        let ids: Vec<ClientId> = self.clients.keys().copied().collect();
        for id in ids {
            if self.clients[&id].open.is_some() {
                self.complete(id, Outcome::Unknown, now);
            }
        }
    }

    /// Records the run's final reads: every key read at `now`, after every operation ended,
    /// as `values` gives it (a store that has applied everything committed), by a client of
    /// its own. They hold the history to its acknowledged writes: a write acknowledged and
    /// lost since, whether or not a later get happened to look, leaves a final read no
    /// linearization explains.
    pub fn final_reads(
        &mut self,
        values: impl IntoIterator<Item = (Key, Option<Value>)>,
        now: Time,
    ) {
        let client = self.parameters.clients + 1;
        for (key, value) in values {
            let operation = Operation::Get { key };
            self.history.events.push(Event::Invoke { client, operation, time: now.0 });
            let outcome = Outcome::Ok(OperationResult::Get(value));
            self.history.events.push(Event::Complete { client, outcome, time: now.0 });
        }
    }

    /// The keys the clients use.
    pub fn keys(&self) -> u64 {
        self.parameters.keys
    }

    /// The history recorded.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The counts so far.
    pub fn stats(&self) -> WorkloadStats {
        self.stats
    }

    /// A wake-up: invoke the next operation, or retry the open one after a back-off.
    pub fn wake(&mut self, id: ClientId, token: u64, now: Time) -> Next {
        let client = self.clients.get_mut(&id).expect("a client of this run");
        if client.wake_token != token {
            return Next::Wait;
        }
        match client.open {
            Some(open) if open.waiting => Next::Wait,
            Some(_) => self.attempt(id, now),
            None if self.running => self.invoke(id, now),
            None => Next::Wait,
        }
    }

    /// An answer from a node.
    pub fn reply(&mut self, reply: Reply, now: Time) -> Next {
        let client = self.clients.get_mut(&reply.client).expect("a client of this run");
        let Some(open) = &mut client.open else { return Next::Wait };
        if open.sequence != reply.sequence {
            return Next::Wait;
        }
        match reply.answer {
            // Any attempt's result is the operation's: sessions applied it once.
            Answer::Done(result) => {
                if let (Operation::Get { key }, OperationResult::Get(Some(value))) =
                    (open.operation, result)
                {
                    client.seen.insert(key, value);
                }
                self.complete(reply.client, Outcome::Ok(result), now);
                self.think(reply.client, now)
            }
            _ if open.attempt != reply.attempt || !open.waiting => Next::Wait,
            Answer::NotLeader(hint) => {
                open.waiting = false;
                match hint {
                    Some(leader) => {
                        client.leader = leader;
                        self.attempt(reply.client, now)
                    }
                    None => {
                        // Nobody knows a leader: an election is on. Wait a little for it.
                        let backoff =
                            Time(self.random.between(1, 1 + self.parameters.attempt_timeout.0 / 4));
                        self.wake_at(reply.client, now + backoff)
                    }
                }
            }
            Answer::Aborted | Answer::ReadFailed => {
                open.waiting = false;
                self.attempt(reply.client, now)
            }
        }
    }

    /// An attempt's timer fired.
    pub fn timeout(&mut self, id: ClientId, sequence: u64, attempt: u64, now: Time) -> Next {
        let nodes = self.nodes.clone();
        let client = self.clients.get_mut(&id).expect("a client of this run");
        let Some(open) = &mut client.open else { return Next::Wait };
        if open.sequence != sequence || open.attempt != attempt || !open.waiting {
            return Next::Wait;
        }
        // The attempt may have been proposed and may still commit.
        open.waiting = false;
        open.maybe_applied = true;
        client.leader = self.random.pick(&nodes);
        self.attempt(id, now)
    }

    /// Starts a new operation.
    fn invoke(&mut self, id: ClientId, now: Time) -> Next {
        let operation = self.draw_operation(id);
        let read = match operation {
            Operation::Get { .. } => ReadKind::ALL[self.random.weighted(&self.parameters.reads)],
            _ => ReadKind::ReadIndex,
        };
        let client = self.clients.get_mut(&id).expect("a client of this run");
        let sequence = client.next_sequence;
        client.next_sequence += 1;
        client.open = Some(Open {
            sequence,
            operation,
            attempt: 0,
            waiting: false,
            deadline: now + self.parameters.operation_deadline,
            maybe_applied: false,
            read,
        });
        if read == ReadKind::Stale {
            // A stale read promises nothing the history could hold it to.
            self.stats.stale_reads += 1;
        } else {
            self.history.events.push(Event::Invoke { client: id, operation, time: now.0 });
            self.stats.invoked += 1;
        }
        self.attempt(id, now)
    }

    /// Sends the open operation's next attempt, or gives up if its deadline passed.
    fn attempt(&mut self, id: ClientId, now: Time) -> Next {
        let client = self.clients.get_mut(&id).expect("a client of this run");
        let Some(open) = &mut client.open else { return Next::Wait };
        if now >= open.deadline {
            let outcome = if open.maybe_applied { Outcome::Unknown } else { Outcome::Fail };
            self.complete(id, outcome, now);
            return self.think(id, now);
        }
        open.attempt += 1;
        open.waiting = true;
        let request = Request {
            client: id,
            sequence: open.sequence,
            attempt: open.attempt,
            operation: open.operation,
            forwarded_by: None,
            read: open.read,
        };
        let timeout = (now + self.parameters.attempt_timeout).min(open.deadline);
        self.stats.attempts += 1;
        Next::Send { to: client.leader, request, timeout }
    }

    /// Ends the open operation with `outcome`.
    fn complete(&mut self, id: ClientId, outcome: Outcome, now: Time) {
        let client = self.clients.get_mut(&id).expect("a client of this run");
        let Some(open) = client.open.take() else { return };
        if open.read == ReadKind::Stale {
            return;
        }
        match outcome {
            Outcome::Ok(_) => self.stats.ok += 1,
            Outcome::Fail => self.stats.failed += 1,
            Outcome::Unknown => self.stats.unknown += 1,
        }
        self.history.events.push(Event::Complete { client: id, outcome, time: now.0 });
    }

    /// Schedules the client's next invocation after a pause.
    fn think(&mut self, id: ClientId, now: Time) -> Next {
        let pause = Time(self.random.between(0, self.parameters.think_max.0 + 1));
        self.wake_at(id, now + pause)
    }

    /// A wake-up request that supersedes earlier ones.
    fn wake_at(&mut self, id: ClientId, time: Time) -> Next {
        let client = self.clients.get_mut(&id).expect("a client of this run");
        client.wake_token += 1;
        Next::Wake { time, token: client.wake_token }
    }

    /// A random operation on a random key.
    fn draw_operation(&mut self, id: ClientId) -> Operation {
        let key = self.random.below(self.parameters.keys);
        let kind = self.random.weighted(&self.parameters.mix);
        let seen = self.clients[&id].seen.get(&key).copied();
        match kind {
            0 => Operation::Put { key, value: self.fresh_value() },
            1 => Operation::Get { key },
            3 => Operation::Delete { key },
            _ => {
                // Mostly the value last seen (likely to swap), sometimes absent or stale.
                let expected = match self.random.below(4) {
                    0 => None,
                    1 => Some(self.random.between(1, self.last_value + 2)),
                    _ => seen,
                };
                Operation::Cas { key, expected, new: self.fresh_value() }
            }
        }
    }

    /// A value never written before.
    fn fresh_value(&mut self) -> Value {
        self.last_value += 1;
        self.last_value
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Done(result) => write!(f, "done: {}", show_result(*result)),
            Answer::NotLeader(Some(leader)) => write!(f, "not leader, try {leader}"),
            Answer::NotLeader(None) => write!(f, "not leader, no leader known"),
            Answer::Aborted => write!(f, "aborted: another entry took its index"),
            Answer::ReadFailed => write!(f, "read failed: not confirmed"),
        }
    }
}

/// A result in trace form: `ok`, `→ 5`, `→ absent`, `→ swapped`, `→ not swapped`.
pub fn show_result(result: OperationResult) -> String {
    match result {
        OperationResult::Put | OperationResult::Delete => "ok".to_string(),
        OperationResult::Get(Some(value)) => format!("→ {value}"),
        OperationResult::Get(None) => "→ absent".to_string(),
        OperationResult::Cas(true) => "→ swapped".to_string(),
        OperationResult::Cas(false) => "→ not swapped".to_string(),
    }
}

/// A history event in trace form: `c3 invokes put k1=5`, `c3 completes: → 5`.
pub fn show_event(event: &Event) -> String {
    match *event {
        Event::Invoke { client, operation, .. } => format!("c{client} invokes {operation}"),
        Event::Complete { client, outcome, .. } => match outcome {
            Outcome::Ok(result) => format!("c{client} completes: {}", show_result(result)),
            Outcome::Fail => format!("c{client} completes: failed"),
            Outcome::Unknown => format!("c{client} completes: unknown"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload() -> Workload {
        let parameters = WorkloadParameters {
            clients: 1,
            keys: 2,
            think_max: Time(10),
            attempt_timeout: Time(100),
            operation_deadline: Time(250),
            mix: [1, 1, 1, 1],
            reads: [1, 0, 0, 0],
        };
        Workload::new(parameters, vec![NodeId(1), NodeId(2), NodeId(3)], Random::new(3))
    }

    fn woken(workload: &mut Workload, next: Next, now: Time) -> Next {
        match next {
            Next::Wake { token, .. } => workload.wake(1, token, now),
            other => panic!("expected a wake-up, got {other:?}"),
        }
    }

    #[test]
    fn an_answer_ends_the_operation_and_the_history_records_it() {
        let mut workload = workload();
        let next = workload.start(Time(0))[0].1;
        let Next::Send { request, .. } = woken(&mut workload, next, Time(5)) else { panic!() };
        let result = match request.operation {
            Operation::Put { .. } => OperationResult::Put,
            Operation::Get { .. } => OperationResult::Get(None),
            Operation::Delete { .. } => OperationResult::Delete,
            Operation::Cas { .. } => OperationResult::Cas(false),
        };
        let reply = Reply {
            from: NodeId(1),
            client: 1,
            sequence: request.sequence,
            attempt: request.attempt,
            answer: Answer::Done(result),
        };
        assert!(matches!(workload.reply(reply, Time(9)), Next::Wake { .. }));
        assert_eq!(workload.history().events.len(), 2);
        assert_eq!(workload.stats().ok, 1);
        assert!(workload.idle());
    }

    #[test]
    fn timeouts_retry_elsewhere_and_end_unknown_at_the_deadline() {
        let mut workload = workload();
        let next = workload.start(Time(0))[0].1;
        let Next::Send { request, timeout, .. } = woken(&mut workload, next, Time(0)) else {
            panic!()
        };
        let Next::Send { request: retry, timeout, .. } =
            workload.timeout(1, request.sequence, request.attempt, timeout)
        else {
            panic!("a timed-out attempt is retried")
        };
        assert_eq!(retry.sequence, request.sequence, "a retry reuses the sequence number");
        assert_eq!(retry.attempt, request.attempt + 1);
        let Next::Send { request: third, timeout, .. } =
            workload.timeout(1, retry.sequence, retry.attempt, timeout)
        else {
            panic!()
        };
        let next = workload.timeout(1, third.sequence, third.attempt, timeout);
        assert!(matches!(next, Next::Wake { .. }), "the deadline passed: {next:?}");
        assert_eq!(workload.stats().unknown, 1);
    }

    #[test]
    fn refusals_only_end_in_fail() {
        let mut workload = workload();
        let next = workload.start(Time(0))[0].1;
        let mut next = woken(&mut workload, next, Time(0));
        let mut now = Time(0);
        for _ in 0..100 {
            match next {
                Next::Send { request, .. } => {
                    now = now + Time(30);
                    let reply = Reply {
                        from: NodeId(2),
                        client: 1,
                        sequence: request.sequence,
                        attempt: request.attempt,
                        answer: Answer::NotLeader(None),
                    };
                    next = workload.reply(reply, now);
                }
                Next::Wake { token, time } => {
                    now = time;
                    if workload.idle() {
                        break;
                    }
                    next = workload.wake(1, token, now);
                }
                Next::Wait => panic!("a refused client always has something to do"),
            }
        }
        assert_eq!(workload.stats().failed, 1, "{:?}", workload.stats());
    }
}
