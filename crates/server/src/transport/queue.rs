//! The outgoing queue of one peer: bounded in messages and in bytes, never blocking the sender.
//!
//! The runtime pushes from the core's action loop, which must never wait on a slow or dead
//! peer; the peer's writer task takes everything queued at once to send as one batch. When
//! either bound would be exceeded the message is refused (and the caller counts it dropped):
//! Raft retransmits what matters (appends are retried from the follower's match index, votes
//! and heartbeats are re-sent on the next timeout), so losing a message costs time, whereas
//! buffering without bound for a dead peer would cost the leader its memory.

use std::collections::VecDeque;
use std::sync::Mutex;

use prost::Message as _;
use tokio::sync::Notify;

use super::proto;

/// Why a message was not queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Full {
    /// The queue holds its maximum number of messages.
    Messages,
    /// The message would take the queue past its byte bound.
    Bytes,
}

/// A bounded, non-blocking queue of encoded messages for one peer's writer.
#[derive(Debug)]
pub(crate) struct Queue {
    /// The messages and the bytes they take.
    inner: Mutex<Inner>,
    /// Woken on every push; the writer waits on it when the queue is empty. `Notify` keeps one
    /// permit when nobody waits, so a push between the writer's check and its wait is not lost.
    pushed: Notify,
    /// At most this many messages are queued.
    max_messages: usize,
    /// At most this many bytes (sums of [`batch_cost`]) are queued.
    max_bytes: usize,
}

/// The guarded part of the queue.
#[derive(Debug, Default)]
struct Inner {
    /// Queued messages, oldest first, each with its [`batch_cost`].
    messages: VecDeque<(proto::Message, usize)>,
    /// The sum of the queued messages' costs; never above `max_bytes`.
    bytes: usize,
    /// Whether the last push was refused: lets the caller log the start of a run of drops
    /// once, not every drop.
    refusing: bool,
}

/// What a message adds to an encoded `Batch`: its field key (1 byte), its length (a varint)
/// and its encoding.
pub(crate) fn batch_cost(message: &proto::Message) -> usize {
    let length = message.encoded_len();
    1 + prost::length_delimiter_len(length) + length
}

impl Queue {
    /// An empty queue holding at most `max_messages` messages and `max_bytes` bytes.
    pub(crate) fn new(max_messages: usize, max_bytes: usize) -> Queue {
        assert!(max_messages > 0, "a queue must hold at least one message");
        Queue { inner: Mutex::default(), pushed: Notify::new(), max_messages, max_bytes }
    }

    /// Queues `message` (whose [`batch_cost`] is `cost`) unless a bound would be exceeded.
    /// On refusal, also says whether this starts a run of refusals (the previous push was
    /// accepted).
    pub(crate) fn push(&self, message: proto::Message, cost: usize) -> Result<(), (Full, bool)> {
        let mut inner = self.lock();
        let full = if inner.messages.len() >= self.max_messages {
            Some(Full::Messages)
        } else if inner.bytes + cost > self.max_bytes {
            Some(Full::Bytes)
        } else {
            None
        };
        if let Some(full) = full {
            let starts_run = !inner.refusing;
            inner.refusing = true;
            return Err((full, starts_run));
        }
        inner.refusing = false;
        inner.bytes += cost;
        inner.messages.push_back((message, cost));
        drop(inner);
        self.pushed.notify_one();
        Ok(())
    }

    /// Takes the oldest messages whose costs sum to at most `budget`, and always at least one
    /// if any is queued (the sender only queues messages that fit a frame alone).
    pub(crate) fn take_batch(&self, budget: usize) -> Vec<proto::Message> {
        let mut inner = self.lock();
        let mut batch = Vec::new();
        let mut taken = 0;
        while let Some((_, cost)) = inner.messages.front() {
            let cost = *cost;
            if !batch.is_empty() && taken + cost > budget {
                break;
            }
            let (message, _) = inner.messages.pop_front().expect("the front was just seen");
            taken += cost;
            inner.bytes -= cost;
            batch.push(message);
        }
        assert!(
            !inner.messages.is_empty() || inner.bytes == 0,
            "an empty queue counts {} bytes",
            inner.bytes
        );
        batch
    }

    /// Waits until something may have been pushed since the last wait. Cancel-safe.
    pub(crate) async fn pushed(&self) {
        self.pushed.notified().await;
    }

    /// How many messages and bytes are queued.
    pub(crate) fn len(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.messages.len(), inner.bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock (no allocation failure aside), so poisoning
        // would mean a bug worth stopping for.
        self.inner.lock().expect("no code panics while holding the queue lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(term: u64) -> proto::Message {
        proto::Message {
            term,
            body: Some(proto::message::Body::HeartbeatResponse(proto::HeartbeatResponse {
                read_round: 0,
            })),
        }
    }

    #[test]
    fn the_message_bound_refuses_and_reports_the_start_of_a_run() {
        let queue = Queue::new(2, 1 << 20);
        assert_eq!(queue.push(message(1), 10), Ok(()));
        assert_eq!(queue.push(message(2), 10), Ok(()));
        assert_eq!(queue.push(message(3), 10), Err((Full::Messages, true)));
        assert_eq!(queue.push(message(4), 10), Err((Full::Messages, false)));
        assert_eq!(queue.len(), (2, 20));
    }

    #[test]
    fn the_byte_bound_refuses() {
        let queue = Queue::new(100, 25);
        assert_eq!(queue.push(message(1), 10), Ok(()));
        assert_eq!(queue.push(message(2), 10), Ok(()));
        assert_eq!(queue.push(message(3), 10), Err((Full::Bytes, true)));
        assert_eq!(queue.push(message(4), 5), Ok(()));
        assert_eq!(queue.len(), (3, 25));
    }

    #[test]
    fn a_batch_takes_the_oldest_within_budget_and_at_least_one() {
        let queue = Queue::new(100, 1 << 20);
        for term in 1..=4 {
            queue.push(message(term), 10).expect("room");
        }
        let terms = |batch: Vec<proto::Message>| batch.iter().map(|m| m.term).collect::<Vec<_>>();
        assert_eq!(terms(queue.take_batch(25)), vec![1, 2]);
        assert_eq!(terms(queue.take_batch(5)), vec![3]);
        assert_eq!(terms(queue.take_batch(100)), vec![4]);
        assert_eq!(terms(queue.take_batch(100)), Vec::<u64>::new());
        assert_eq!(queue.len(), (0, 0));
    }

    #[test]
    fn the_batch_cost_is_exactly_what_a_batch_grows_by() {
        let messages = vec![message(1), message(300), message(1 << 40)];
        let batch = proto::Batch { messages: messages.clone() };
        assert_eq!(batch.encoded_len(), messages.iter().map(batch_cost).sum::<usize>());
    }
}
