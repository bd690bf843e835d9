//! The driver's side of leadership transfer (the core's contract item 14): asking the core to
//! hand leadership over, and answering the client that asked once it is known how that went.
//!
//! The core decides everything: whom to hand over to (with no target, the most up-to-date
//! voter), when to send `TimeoutNow`, and when to give up (after an election timeout, with
//! `Event::TransferAborted`). The driver only watches the events that come out: the transfer
//! is **complete** when this node learns of a leader of a newer term than the one it led in
//! (`Event::LeaderChanged`), normally the target, and **failed** on `TransferAborted`. A node
//! that stepped down without learning the new leader keeps its waiter until it does; the
//! client's own timeout bounds the wait.
//!
//! A graceful shutdown (`Server::run`) is a transfer with no target and a bounded wait, then
//! the stop.

use skiff_raft::{NodeId, Term, TransferError};
use tokio::sync::oneshot;

use super::{Runtime, ServiceError};

/// A completed leadership transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transferred {
    /// The node that led when the transfer was asked for (this node).
    pub previous_leader: NodeId,
    /// The voter the core handed leadership to.
    pub target: NodeId,
    /// The leader now, as this node learned it (the target, unless its election failed and
    /// another voter won the term).
    pub leader: NodeId,
    /// The term of the new leader; newer than the one the transfer started in.
    pub term: Term,
}

/// A client waiting for a transfer to complete or fail.
#[derive(Debug)]
pub(super) struct TransferWaiter {
    /// The voter leadership is handed to.
    target: NodeId,
    /// The term this node led in when the transfer began.
    term: Term,
    /// Where the outcome goes.
    reply: oneshot::Sender<Result<Transferred, ServiceError>>,
}

impl Runtime {
    /// Asks the core to transfer leadership to `target` (or, with `None`, to the most
    /// up-to-date voter); the answer goes to `reply` once the transfer completes or fails.
    pub(super) fn on_transfer_request(
        &mut self,
        target: Option<NodeId>,
        reply: oneshot::Sender<Result<Transferred, ServiceError>>,
    ) {
        let term = self.node.term();
        match self.node.transfer_leadership(target) {
            Ok(target) => {
                tracing::info!(target = target.0, %term, "leadership transfer started");
                self.transfer_waiters.push(TransferWaiter { target, term, reply });
            }
            Err(TransferError::NotLeader { leader, .. }) => {
                let _ = reply.send(Err(self.not_leader(leader)));
            }
            Err(TransferError::TargetIsLeader) => {
                // Already where the client wants it: nothing to do, and a retried request
                // (its first attempt succeeded) is answered as the first was.
                let me = self.node.id();
                let done = Transferred { previous_leader: me, target: me, leader: me, term };
                let _ = reply.send(Ok(done));
            }
            Err(error) => {
                let _ = reply.send(Err(ServiceError::Transfer(error)));
            }
        }
    }

    /// This node learned that `leader` leads in `term`: transfers begun in an older term are
    /// complete.
    pub(super) fn transfer_leader_changed(&mut self, leader: NodeId, term: Term) {
        let me = self.node.id();
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.transfer_waiters)
            .into_iter()
            .partition(|waiter| term > waiter.term);
        self.transfer_waiters = waiting;
        for waiter in done {
            tracing::info!(
                target = waiter.target.0,
                leader = leader.0,
                %term,
                "leadership transferred"
            );
            let transferred =
                Transferred { previous_leader: me, target: waiter.target, leader, term };
            let _ = waiter.reply.send(Ok(transferred));
        }
    }

    /// The core gave up the transfer to `target` (an election timeout passed): its waiters
    /// learn that it failed.
    pub(super) fn transfer_aborted(&mut self, target: NodeId) {
        tracing::info!(target = target.0, "leadership transfer aborted");
        for waiter in std::mem::take(&mut self.transfer_waiters) {
            let _ = waiter.reply.send(Err(ServiceError::TransferAborted { target }));
        }
    }
}
