//! The nemesis: strikes the fault schedule's faults at their times, and undoes each after its
//! duration.
//!
//! Every crash or pause remembers the fault that caused it, and only that fault's recovery ends
//! it: a node crashed again by another fault while down stays down until the outage of the fault
//! that holds it ends. Partitions are counted per
//! link by the network, so overlapping partitions heal independently. The heal (in
//! `simulation.rs`) ends everything at once and disarms the triggers; faults and undos
//! scheduled after it do nothing.

use skiff_raft::NodeId;

use crate::faults::{FaultKind, Shape, Target};
use crate::history::Operation;
use crate::simulation::{Event, Simulation};
use crate::time::Time;
use crate::trace::trace;
use crate::workload::{LEASE_PROBER, ReadKind, Request};

impl Simulation {
    /// Fault number `number` strikes.
    pub(crate) fn strike(&mut self, number: usize) {
        if self.healed {
            return;
        }
        let Some(fault) = self.schedule.faults[number].clone() else { return };
        self.stats.faults += 1;
        trace!(self.trace, self.now, "fault {number}: {}", fault.kind);
        let leader = self.leader();
        match fault.kind {
            FaultKind::Crash { target, down_for } => {
                self.crash_for(target.resolve(leader), number, down_for);
            }
            FaultKind::Pause { target, paused_for } => {
                let id = target.resolve(leader);
                let node = self.nodes.get_mut(&id).expect("a node of the cluster");
                if node.core.is_some() && !node.paused {
                    node.struck_by = Some(number);
                    self.pause(id);
                    self.queue
                        .push(self.now + paused_for, Event::Recover { node: id, fault: number });
                }
            }
            FaultKind::Partition { shape, lasts } => {
                let links = shape.links(&self.ids, leader);
                self.partition(links, lasts);
            }
            FaultKind::Skew { node, per_mille } => {
                self.nodes.get_mut(&node).expect("a node of the cluster").skew = per_mille;
            }
            FaultKind::DiskStall { target, lasts } => {
                let id = target.resolve(leader);
                let node = self.nodes.get_mut(&id).expect("a node of the cluster");
                node.disk_stalled_until = node.disk_stalled_until.max(self.now + lasts);
            }
            FaultKind::Lag { fallback, lasts } => {
                // A follower: the fallback, or the node after it when the fallback leads.
                let id = if leader == Some(fallback) {
                    let position = self.ids.iter().position(|&id| id == fallback).unwrap_or(0);
                    self.ids[(position + 1) % self.ids.len()]
                } else {
                    fallback
                };
                trace!(self.trace, self.now, "fault {number}: {id} cut off for {lasts}");
                self.stats.lags += 1;
                let links = Shape::Isolate(Target::Node(id)).links(&self.ids, None);
                self.partition(links, lasts);
            }
            FaultKind::CrashInSnapshot { step, down_for } => {
                self.armed_snapshot = Some((number, step, down_for));
            }
            FaultKind::Membership(intent) => self.plan_membership(intent),
            FaultKind::LeaseRace { lasts } => {
                let Some(leader) = leader else { return };
                let skew = self.parameters.lease_skew_per_mille;
                for node in self.nodes.values_mut() {
                    node.skew = if node.id == leader { skew } else { -skew };
                }
                trace!(
                    self.trace,
                    self.now,
                    "fault {number}: {leader} ticks {skew}‰ slow, the others fast; cut off for {lasts}"
                );
                self.stats.lease_races += 1;
                let links = Shape::Isolate(Target::Node(leader)).links(&self.ids, None);
                self.partition(links, lasts);
                let until = self.now + lasts;
                self.queue.push(self.now, Event::LeaseProbe { node: leader, until, sequence: 1 });
            }
            FaultKind::Transfer { target } => {
                if let Some(leader) = leader {
                    self.transfer(leader, target);
                }
            }
            FaultKind::CrashAfterVote { .. } => self.armed_vote = Some(number),
            FaultKind::CrashAfterElected { elections, after, .. }
            | FaultKind::IsolateAfterElected { elections, after, .. } => {
                self.armed_elected = Some((number, after, elections));
            }
        }
    }

    /// A lease read of the lease prober reaches the old leader of a lease race, cut off from
    /// the others (see `FaultKind::LeaseRace`): every tick of the race, so that some arrive
    /// after the others elected a new leader and committed. The clients cannot be relied on
    /// for that: most are stuck in a write the old leader will never commit. Like every read,
    /// it is held to the commit index of the whole cluster when it arrived
    /// (`Invariant::StaleRead`); its answer goes nowhere, and it stays out of the history.
    pub(crate) fn lease_probe(&mut self, node: NodeId, until: Time, sequence: u64) {
        if self.healed || self.now >= until {
            return;
        }
        let request = Request {
            client: LEASE_PROBER,
            sequence,
            attempt: 1,
            operation: Operation::Get { key: 0 },
            forwarded_by: None,
            read: ReadKind::Lease,
        };
        self.stats.lease_probes += 1;
        self.client_request(node, request);
        let next = self.now + self.parameters.tick;
        self.queue.push(next, Event::LeaseProbe { node, until, sequence: sequence + 1 });
    }

    /// Crashes `id` on behalf of fault `number`, to restart after `down_for`.
    pub(crate) fn crash_for(&mut self, id: NodeId, number: usize, down_for: Time) {
        if self.nodes[&id].core.is_none() {
            return;
        }
        self.crash(id);
        self.nodes.get_mut(&id).expect("a node of the cluster").struck_by = Some(number);
        self.queue.push(self.now + down_for, Event::Recover { node: id, fault: number });
    }

    /// Cuts `links` for `lasts`.
    fn partition(&mut self, links: Vec<(NodeId, NodeId)>, lasts: Time) {
        let id = self.next_partition;
        self.next_partition += 1;
        self.network.block(&links);
        self.partitions.insert(id, links);
        self.queue.push(self.now + lasts, Event::Undo(id));
    }

    /// A trigger of fault `number` fired on node `id`.
    pub(crate) fn triggered(&mut self, id: NodeId, number: usize) {
        if self.healed {
            return;
        }
        match self.schedule.faults[number].as_ref().map(|fault| fault.kind.clone()) {
            Some(
                FaultKind::CrashAfterVote { down_for }
                | FaultKind::CrashAfterElected { down_for, .. },
            ) => self.crash_for(id, number, down_for),
            Some(FaultKind::IsolateAfterElected { lasts, .. }) => {
                trace!(self.trace, self.now, "fault {number}: {id} isolated for {lasts}");
                let links = Shape::Isolate(Target::Node(id)).links(&self.ids, None);
                self.partition(links, lasts);
            }
            _ => {}
        }
    }

    /// Partition `id` heals.
    pub(crate) fn undo(&mut self, id: u64) {
        if self.healed {
            return;
        }
        if let Some(links) = self.partitions.remove(&id) {
            self.network.unblock(&links);
            trace!(self.trace, self.now, "partition healed ({} links)", links.len());
        }
    }

    /// Node `id`, crashed or paused by fault `number`, restarts or resumes, unless something
    /// else has struck it since.
    pub(crate) fn recover(&mut self, id: NodeId, number: usize) {
        let node = &self.nodes[&id];
        if self.healed || node.struck_by != Some(number) {
            return;
        }
        trace!(self.trace, self.now, "fault {number} ends for {id}");
        if node.core.is_none() {
            self.restart(id);
        } else if node.paused {
            self.resume(id);
        }
    }
}
