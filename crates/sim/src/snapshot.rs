//! The driver's snapshot duties (the core's contract items 9 to 12), as the server performs
//! them (crates/server/src/runtime/snapshot.rs), on the simulated disk and network.
//!
//! ## Taking a snapshot, and compacting
//! A node takes a snapshot when it has applied [`SnapshotParameters::every`] entries since its
//! latest one, and when one is asked for on demand (an event of the run, like
//! `POST /v1/snapshot`). It asks its core for the metadata at its applied index, writes the
//! store, as it is at that instant, into a temporary snapshot file through skiff-wal's
//! `SnapshotWriter` (unsynced: a crash meanwhile loses or tears it), and carries on applying.
//! Some time later the file is finished (its header written and fsynced), and its save (a
//! rename and a directory fsync) queues on the disk behind the log's writes, as it queues on
//! the server's log thread. Only once the save is durable is the core told
//! (`snapshot_taken`), and then the log is compacted up to the snapshot less
//! [`SnapshotParameters::catchup`] entries: the core hears of it first (`compacted`), then the
//! compaction queues on the disk (it deletes whole segments only).
//!
//! ## InstallSnapshot, chunk by chunk
//! A `FetchSnapshot { from, meta }` starts a fetch: a `SnapshotReceiver` for a temporary file,
//! and a request for the chunk at offset 0 sent to `from` through the simulated network, which
//! loses, delays, duplicates and reorders requests and chunks like any other message, and may
//! flip a bit of a chunk. The leader answers each request from its `SnapshotFiles::read_chunk`
//! (the server's code path: the file it serves stays open between chunks, so a transfer
//! survives a newer snapshot replacing it) with the chunk's crc32c; "not found" ends the fetch.
//! The follower takes only the chunk at the offset it has received up to, checks its checksum
//! and the file's length and data checksum against the first chunk's, and asks again after
//! [`SnapshotParameters::chunk_timeout`] without an answer; five failed requests in a row end
//! the fetch. So a lost or damaged chunk costs one request, not the transfer. Once the whole
//! file is in, the receiver fsyncs and verifies it whole, a store is restored from it, and the
//! install (saved, the log reset after it, synced: `Wal::install_snapshot`) queues on the disk.
//! When it is durable the store is swapped in and the core hears `snapshot_installed`. Every
//! fetch ends in `snapshot_installed` or `snapshot_failed`, or in a crash, which forgets it.
//!
//! One at a time: a fetch asked for while a local snapshot is under way is refused at once
//! (the leader offers again after an election timeout), and no local snapshot starts during a
//! fetch (the applied index does not move then anyway).
//!
//! ## Crashes in the middle
//! A crash-in-snapshot fault strikes the next node that reaches its step (finishing the file,
//! saving, compacting, writing a received chunk, installing): the power fails after a random
//! number of file-system operations of that step (none, some, or all of them) and the node
//! crashes. Ordinary crashes also catch snapshot steps in flight on the disk queue the same
//! way. Whatever the point, the node must come back with the old state or the new one: its log
//! opens, its newest snapshot restores a store whose hash is the one every node had at that
//! index, it is never older than a snapshot it made durable before, and the log passes
//! through it (`Invariant::Recovery` and `Invariant::StateMachineSafety`).

use skiff_kv::Store;
use skiff_raft::{Index, NodeId, SnapshotMeta};
use skiff_wal::{SnapshotReceiver, SnapshotWriter};

use crate::driver::Input;
use crate::faults::SnapshotStep;
use crate::invariants::{Invariant, Violation};
use crate::sabotage::Defect;
use crate::simulation::{Event, Packet, Simulation};
use crate::state_machine::StateMachine;
use crate::storage::{LogCopy, Write};
use crate::time::Time;
use crate::trace::trace;

/// Failed chunk requests in a row after which a fetch gives up (as the server's).
const MAX_CHUNK_FAILURES: u32 = 5;

/// The most file-system operations a crash in a snapshot step lets through before the power
/// fails (a save is about five, an install with its compaction about ten).
const POWER_CUT_RANGE: u64 = 12;

/// A local snapshot under way.
#[derive(Debug)]
pub(crate) enum Taking {
    /// The store's copy is in the temporary file, not yet finished.
    Writing {
        /// What it covers.
        meta: SnapshotMeta,
        /// The file being written.
        writer: SnapshotWriter,
    },
    /// Finished, and waiting on the disk queue to be saved.
    Saving {
        /// What it covers.
        meta: SnapshotMeta,
    },
}

/// A fetch of the leader's snapshot.
#[derive(Debug)]
pub(crate) struct Fetch {
    /// The fetch's number on this node (never reused): late chunks of another fetch are
    /// recognized by it.
    pub(crate) id: u64,
    /// The node fetched from.
    pub(crate) from: NodeId,
    /// The snapshot fetched.
    pub(crate) meta: SnapshotMeta,
    /// How far it got.
    pub(crate) state: FetchState,
}

/// How far a fetch got.
#[derive(Debug)]
pub(crate) enum FetchState {
    /// Chunks are coming in.
    Receiving {
        /// The temporary file they go into.
        receiver: SnapshotReceiver,
        /// The file's length and data checksum, as the first chunk gave them.
        advertised: Option<(u64, u32)>,
        /// Failed requests in a row.
        failures: u32,
        /// The number of the current request (a timeout of an older one is stale).
        attempt: u64,
    },
    /// Received, verified, restored; the install is on the disk queue.
    Installing {
        /// The store restored from the file, swapped in once the install is durable.
        machine: StateMachine,
        /// The hash chain of the log the snapshot stands for, for the log mirrors.
        chain: u64,
    },
}

/// The leader's answer to a chunk request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ChunkReply {
    /// The file's bytes from the offset asked for (empty at its end).
    Data {
        /// The whole file's length.
        file_len: u64,
        /// The crc32c of the snapshot's data, from the file's header.
        data_crc: u32,
        /// The crc32c of `bytes`, as the leader computed it.
        crc: u32,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// The leader has no such snapshot (replaced, and not open for a transfer).
    NotFound,
}

impl Simulation {
    /// Takes a snapshot of node `id` if its policy says one is due (after each batch).
    pub(crate) fn maybe_snapshot(&mut self, id: NodeId) {
        let every = self.parameters.snapshots.every;
        let node = &self.nodes[&id];
        let Some(core) = node.core.as_ref() else { return };
        if node.paused || node.taking.is_some() || node.fetch.is_some() {
            return;
        }
        let latest = core.snapshot().map_or(Index(0), |meta| meta.index);
        if node.machine.applied().0 >= latest.0 + every {
            self.start_snapshot(id);
        }
    }

    /// A snapshot asked for on demand of node `id` (taken if it runs and is not busy), and the
    /// next such request scheduled.
    pub(crate) fn snapshot_on_demand(&mut self, id: NodeId) {
        if let Some(mean) = self.parameters.snapshots.on_demand {
            let gap = -(mean.0 as f64) * (1.0 - self.snapshot_random.unit()).ln();
            let next = self.snapshot_random.pick(&self.ids);
            self.queue.push(self.now + Time(gap as u64 + 1), Event::SnapshotNow { node: next });
        }
        let node = &self.nodes[&id];
        if node.core.is_some() && !node.paused && node.taking.is_none() && node.fetch.is_none() {
            trace!(self.trace, self.now, "{id} snapshot asked for on demand");
            self.start_snapshot(id);
        }
    }

    /// Starts a local snapshot of node `id`'s store at its applied index: the store's copy goes
    /// into a temporary file now, finished later (see the module documentation).
    fn start_snapshot(&mut self, id: NodeId) {
        let defect = self.defect;
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let core = node.core.as_mut().expect("only running nodes take snapshots");
        let Some(meta) = core.snapshot_meta_at(node.machine.applied()) else { return };
        // The store as it is now goes into the file (unsynced); the node applies on meanwhile.
        let files = node.disk.snapshot_files();
        let written =
            files.writer(meta.clone()).map_err(|error| error.to_string()).and_then(|mut writer| {
                let store = node.machine.store();
                store.write_snapshot(&mut writer).map_err(|error| error.to_string())?;
                std::io::Write::flush(&mut writer).map_err(|error| error.to_string())?;
                Ok(writer)
            });
        let writer = match written {
            Ok(writer) => writer,
            Err(error) => {
                let detail = format!("{id} cannot write snapshot {meta}: {error}");
                return self.fail(Violation::new(Invariant::DriverContract, detail));
            }
        };
        trace!(self.trace, self.now, "{id} snapshot {meta} started");
        if defect == Some(Defect::SnapshotBeforeDurable) {
            // The defect: the core hears of the snapshot, and the log is compacted behind it,
            // before the snapshot is durable (contract item 9 says durable, then report).
            self.report_snapshot(id, &meta);
        }
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        node.taking = Some(Taking::Writing { meta, writer });
        let latency = Time(self.disk_random.between(0, self.parameters.snapshots.write_max.0 + 1));
        let incarnation = node.incarnation;
        self.queue.push(self.now + latency, Event::SnapshotWritten { node: id, incarnation });
    }

    /// Node `id`'s snapshot file is written: it is finished (header, fsync) and its save queues
    /// on the disk.
    pub(crate) fn snapshot_written(&mut self, id: NodeId) {
        let trigger = self.snapshot_trigger(SnapshotStep::Write);
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let Some(Taking::Writing { meta, writer }) = node.taking.take() else { return };
        if let Some((_, cut, _)) = trigger {
            node.disk.cut_power_after(cut);
        }
        match writer.finish() {
            Ok(staged) => {
                node.taking = Some(Taking::Saving { meta });
                self.submit(id, Write::SaveSnapshot(staged));
            }
            Err(error) if trigger.is_none() => {
                let detail = format!("{id} cannot finish snapshot {meta}: {error}");
                return self.fail(Violation::new(Invariant::DriverContract, detail));
            }
            Err(_) => {}
        }
        if let Some((fault, cut, down_for)) = trigger {
            self.crash_in_step(id, fault, SnapshotStep::Write, cut, down_for);
        }
    }

    /// Node `id`'s local snapshot is durable: the core hears of it, and the log is compacted
    /// behind it.
    pub(crate) fn snapshot_saved(&mut self, id: NodeId, meta: SnapshotMeta) {
        trace!(self.trace, self.now, "{id} snapshot {meta} taken");
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        match node.taking.take() {
            Some(Taking::Saving { meta: saving }) if saving == meta => {}
            other => {
                let detail = format!("{id} saved snapshot {meta} while taking {other:?}");
                return self.fail(Violation::new(Invariant::DriverContract, detail));
            }
        }
        self.stats.snapshots_taken += 1;
        if self.defect != Some(Defect::SnapshotBeforeDurable) {
            self.report_snapshot(id, &meta);
        }
    }

    /// Tells node `id`'s core of its snapshot `meta`, and compacts the log behind it.
    fn report_snapshot(&mut self, id: NodeId, meta: &SnapshotMeta) {
        let catchup = self.parameters.snapshots.catchup;
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let core = node.core.as_mut().expect("a running node saved its snapshot");
        if let Err(error) = core.snapshot_taken(meta.clone()) {
            let detail = format!("{id}'s core refused the snapshot it described: {error}");
            return self.fail(Violation::new(Invariant::DriverContract, detail));
        }
        let up_to = Index(meta.index.0.saturating_sub(catchup));
        if up_to <= node.compacted {
            return;
        }
        // Reported before the deletion (contract item 10).
        if let Err(error) = core.compacted(up_to) {
            let detail = format!("{id}'s core refused a compaction behind its snapshot: {error}");
            return self.fail(Violation::new(Invariant::DriverContract, detail));
        }
        node.compacted = up_to;
        node.log.compact_to(up_to);
        trace!(self.trace, self.now, "{id} compact to {up_to}");
        self.submit(id, Write::Compact(up_to));
    }

    /// Fetches the snapshot `meta` from `from` for node `id`'s core (contract item 11).
    pub(crate) fn fetch_snapshot(&mut self, id: NodeId, from: NodeId, meta: SnapshotMeta) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let core = node.core.as_mut().expect("only running nodes fetch");
        if node.taking.is_some() {
            trace!(self.trace, self.now, "{id} refuses to fetch {meta}: a snapshot is under way");
            core.snapshot_failed(&meta);
            return;
        }
        let receiver = match node.disk.snapshot_files().receiver(meta.clone()) {
            Ok(receiver) => receiver,
            Err(error) => {
                let detail = format!("{id} cannot start receiving snapshot {meta}: {error}");
                return self.fail(Violation::new(Invariant::DriverContract, detail));
            }
        };
        trace!(self.trace, self.now, "{id} fetch {meta} from {from}");
        let fetch_id = node.next_fetch;
        node.next_fetch += 1;
        let state = FetchState::Receiving { receiver, advertised: None, failures: 0, attempt: 0 };
        node.fetch = Some(Fetch { id: fetch_id, from, meta, state });
        self.stats.fetches += 1;
        self.request_chunk(id);
    }

    /// Asks for the next chunk of node `id`'s fetch, and times the request out.
    fn request_chunk(&mut self, id: NodeId) {
        let timeout = self.parameters.snapshots.chunk_timeout;
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let incarnation = node.incarnation;
        let Some(fetch) = node.fetch.as_mut() else { return };
        let FetchState::Receiving { receiver, attempt, .. } = &mut fetch.state else { return };
        *attempt += 1;
        let packet = Packet::ChunkRequest {
            from: id,
            to: fetch.from,
            fetch: fetch.id,
            index: fetch.meta.index,
            offset: receiver.received(),
        };
        let (fetch_id, attempt) = (fetch.id, *attempt);
        self.stats.chunks += 1;
        self.send_packet(packet);
        let event = Event::ChunkTimeout { node: id, incarnation, fetch: fetch_id, attempt };
        self.queue.push(self.now + timeout, event);
    }

    /// Node `id` serves a chunk of its snapshot at `index` to `to` (whatever its role).
    pub(crate) fn serve_chunk(
        &mut self,
        id: NodeId,
        to: NodeId,
        fetch: u64,
        index: Index,
        offset: u64,
    ) {
        let chunk_bytes = self.parameters.snapshots.chunk_bytes;
        let node = &self.nodes[&id];
        let reply = match node.disk.snapshot_files().read_chunk(index, offset, chunk_bytes) {
            Ok(Some(chunk)) => ChunkReply::Data {
                file_len: chunk.file_len,
                data_crc: chunk.data_crc,
                crc: skiff_wal::checksum(&chunk.bytes),
                bytes: chunk.bytes,
            },
            Ok(None) => ChunkReply::NotFound,
            Err(error) => {
                let detail = format!("{id} cannot read its snapshot {index}: {error}");
                return self.fail(Violation::new(Invariant::Recovery, detail));
            }
        };
        self.send_packet(Packet::Chunk { from: id, to, fetch, offset, reply });
    }

    /// A chunk for node `id`'s fetch `fetch` arrived.
    pub(crate) fn chunk_arrived(&mut self, id: NodeId, fetch: u64, offset: u64, reply: ChunkReply) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let Some(current) = node.fetch.as_mut() else { return };
        let FetchState::Receiving { receiver, advertised, failures, .. } = &mut current.state
        else {
            return;
        };
        if current.id != fetch || offset != receiver.received() {
            // A duplicate, or an answer to a request asked again since.
            return;
        }
        let (file_len, data_crc, crc, bytes) = match reply {
            ChunkReply::NotFound => {
                let reason = format!("{} no longer has it", current.from);
                return self.fail_fetch(id, &reason);
            }
            ChunkReply::Data { file_len, data_crc, crc, bytes } => (file_len, data_crc, crc, bytes),
        };
        if skiff_wal::checksum(&bytes) != crc {
            // Damaged in transit: asked for again.
            *failures += 1;
            trace!(self.trace, self.now, "{id} chunk at {offset} damaged: asked again");
            return self.retry_chunk(id);
        }
        if advertised.is_some_and(|first| first != (file_len, data_crc)) {
            return self.fail_fetch(id, "the file changed during the transfer");
        }
        *advertised = Some((file_len, data_crc));
        if bytes.is_empty() && offset < file_len {
            return self.fail_fetch(id, "an empty chunk before the end");
        }
        *failures = 0;
        let trigger = self.snapshot_trigger(SnapshotStep::Receive);
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        if let Some((_, cut, _)) = trigger {
            node.disk.cut_power_after(cut);
        }
        let Some(Fetch { state: FetchState::Receiving { receiver, .. }, .. }) = node.fetch.as_mut()
        else {
            unreachable!("checked above");
        };
        let written = receiver.write_chunk(offset, &bytes);
        let complete = receiver.received() >= file_len;
        if let Some((fault, cut, down_for)) = trigger {
            return self.crash_in_step(id, fault, SnapshotStep::Receive, cut, down_for);
        }
        if let Err(error) = written {
            let detail = format!("{id} cannot store a chunk: {error}");
            return self.fail(Violation::new(Invariant::DriverContract, detail));
        }
        if complete {
            self.finish_fetch(id);
        } else {
            self.request_chunk(id);
        }
    }

    /// A chunk request of node `id` went unanswered: asked again, or the fetch gives up.
    pub(crate) fn chunk_timeout(&mut self, id: NodeId, fetch: u64, attempt: u64) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let Some(current) = node.fetch.as_mut() else { return };
        let FetchState::Receiving { failures, attempt: latest, .. } = &mut current.state else {
            return;
        };
        if current.id != fetch || *latest != attempt {
            return;
        }
        *failures += 1;
        self.retry_chunk(id);
    }

    /// Asks for node `id`'s chunk again, or gives up after too many failures in a row.
    fn retry_chunk(&mut self, id: NodeId) {
        let node = &self.nodes[&id];
        let Some(Fetch { state: FetchState::Receiving { failures, .. }, .. }) = &node.fetch else {
            return;
        };
        if *failures >= MAX_CHUNK_FAILURES {
            let reason = format!("{failures} chunk requests failed in a row");
            return self.fail_fetch(id, &reason);
        }
        self.request_chunk(id);
    }

    /// Node `id`'s fetch failed: nothing of it is kept, and the core hears of it.
    fn fail_fetch(&mut self, id: NodeId, reason: &str) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let Some(fetch) = node.fetch.take() else { return };
        trace!(self.trace, self.now, "{id} fetch of {} failed: {reason}", fetch.meta);
        self.stats.fetches_failed += 1;
        // Dropping the receiver removes its temporary file.
        drop(fetch.state);
        let core = node.core.as_mut().expect("only running nodes fetch");
        core.snapshot_failed(&fetch.meta);
    }

    /// Node `id` received the whole file: verified, a store restored from it, and the install
    /// queued on the disk.
    fn finish_fetch(&mut self, id: NodeId) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let Some(fetch) = node.fetch.take() else { return };
        let FetchState::Receiving { receiver, .. } = fetch.state else {
            unreachable!("finished while receiving");
        };
        let meta = fetch.meta.clone();
        let restored = receiver.finish().map_err(|error| error.to_string()).and_then(|staged| {
            let mut reader = staged.reader().map_err(|error| error.to_string())?;
            let store = Store::restore(&mut reader).map_err(|error| error.to_string())?;
            Ok((staged, store))
        });
        let (staged, store) = match restored {
            Ok(restored) => restored,
            Err(error) => {
                // Every chunk passed its checksum, so the file is the leader's: its damage
                // would be a bug of the leader's snapshot or of the transfer.
                let detail =
                    format!("{id} received snapshot {meta} intact but cannot use it: {error}");
                return self.fail(Violation::new(Invariant::DriverContract, detail));
            }
        };
        if store.applied() != meta.index.0 {
            let detail = format!(
                "snapshot {meta} from {} holds a store at applied index {}",
                fetch.from,
                store.applied()
            );
            return self.fail(Violation::new(Invariant::StateMachineSafety, detail));
        }
        let Some(chain) = self.checker.chain_of(meta.index, meta.term) else {
            let detail = format!("{id} fetched snapshot {meta}, of an entry no node ever wrote");
            return self.fail(Violation::new(Invariant::LogMatching, detail));
        };
        trace!(self.trace, self.now, "{id} received {meta} whole: installing");
        let machine = StateMachine::from_store(store);
        let log_first = self.defect == Some(Defect::InstallLogFirst);
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        node.fetch = Some(Fetch { state: FetchState::Installing { machine, chain }, ..fetch });
        self.submit(id, Write::InstallSnapshot { staged, chain, log_first });
    }

    /// Node `id`'s install is durable: the store is swapped in, and the core hears of it.
    pub(crate) fn snapshot_installed(&mut self, id: NodeId, meta: SnapshotMeta) {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let fetch = node.fetch.take();
        let Some(Fetch { state: FetchState::Installing { machine, chain }, .. }) = fetch else {
            let detail = format!("{id} installed snapshot {meta}, which it was not fetching");
            return self.fail(Violation::new(Invariant::DriverContract, detail));
        };
        if meta.index <= node.machine.applied() {
            let detail = format!(
                "{id} installed snapshot {meta} over a store at applied index {}: the applied \
                 index would go back",
                node.machine.applied()
            );
            return self.fail(Violation::new(Invariant::StateMachineSafety, detail));
        }
        trace!(self.trace, self.now, "{id} installed {meta}");
        node.machine = machine;
        node.log = LogCopy::after_snapshot(meta.index, meta.term, chain, meta.membership.clone());
        node.compacted = node.compacted.max(meta.index);
        // Proposals at or below the snapshot are covered by it (whether or not this node's
        // entries won those indexes): their clients retry, and sessions answer them.
        node.proposals = node.proposals.split_off(&meta.index.next());
        let hash = node.machine.hash();
        let core = node.core.as_mut().expect("a running node installed its snapshot");
        if let Err(error) = core.snapshot_installed(meta.clone()) {
            let detail = format!("{id}'s core refused the snapshot it asked for: {error}");
            return self.fail(Violation::new(Invariant::DriverContract, detail));
        }
        self.stats.snapshots_installed += 1;
        if let Err(violation) = self.checker.state_installed(id, meta.index, hash) {
            return self.fail(violation);
        }
        self.serve_reads(id);
    }

    /// At a restart: node `id`'s store comes back from its newest durable snapshot (contract
    /// item 12), which must be no older than any snapshot it made durable before.
    pub(crate) fn restore_from_snapshot(&mut self, id: NodeId) -> Result<(), Violation> {
        let node = self.nodes.get_mut(&id).expect("a node of the cluster");
        let recovery = |detail: String| Violation::new(Invariant::Recovery, detail);
        let loaded = node.disk.load_snapshot_store().map_err(|error| {
            recovery(format!("{id} cannot restore its store from its snapshot: {error}"))
        })?;
        let index = loaded.as_ref().map_or(Index(0), |(meta, _)| meta.index);
        if index < node.snapshot_floor {
            return Err(recovery(format!(
                "{id} restarts from snapshot {index}, but snapshot {} was durable",
                node.snapshot_floor
            )));
        }
        node.machine = match loaded {
            Some((meta, store)) => {
                if store.applied() != meta.index.0 {
                    return Err(recovery(format!(
                        "{id}'s snapshot {meta} holds a store at applied index {}",
                        store.applied()
                    )));
                }
                StateMachine::from_store(store)
            }
            None => StateMachine::default(),
        };
        node.compacted = node.disk.log.base();
        if index > Index(0) {
            let hash = node.machine.hash();
            self.checker.state_installed(id, index, hash)?;
        }
        Ok(())
    }

    /// The armed crash-in-snapshot trigger, if it is for `step`: disarmed, with its fault
    /// number, the number of file-system operations to let through, and the time down.
    pub(crate) fn snapshot_trigger(&mut self, step: SnapshotStep) -> Option<(usize, u64, Time)> {
        let (fault, armed, down_for) = self.armed_snapshot?;
        if armed != step || self.healed {
            return None;
        }
        self.armed_snapshot = None;
        Some((fault, self.disk_random.below(POWER_CUT_RANGE), down_for))
    }

    /// A crash-in-snapshot trigger fired on node `id` in `step`, its power cut after `cut`
    /// operations: the node crashes now.
    pub(crate) fn crash_in_step(
        &mut self,
        id: NodeId,
        fault: usize,
        step: SnapshotStep,
        cut: u64,
        down_for: Time,
    ) {
        trace!(
            self.trace,
            self.now,
            "fault {fault} triggered: {id} loses power in its {step} after {cut} operations"
        );
        self.stats.snapshot_crashes += 1;
        self.crash_for(id, fault, down_for);
    }
}

impl Simulation {
    /// Handles a snapshot input of running node `id` (see `driver.rs`'s `Input`).
    pub(crate) fn snapshot_input(&mut self, id: NodeId, input: Input) {
        match input {
            Input::SnapshotWritten => self.snapshot_written(id),
            Input::ChunkRequest { from, fetch, index, offset } => {
                self.serve_chunk(id, from, fetch, index, offset);
            }
            Input::Chunk { fetch, offset, reply } => self.chunk_arrived(id, fetch, offset, reply),
            Input::ChunkTimeout { fetch, attempt } => self.chunk_timeout(id, fetch, attempt),
            _ => unreachable!("only snapshot inputs come here"),
        }
    }
}
