//! The event queue: what happens next, in simulated time.
//!
//! Events are ordered by `(time, sequence)`, where the sequence number counts insertions. Two
//! events at the same time therefore run in the order they were scheduled, never in an order
//! that depends on memory addresses or hashing, and a run is a pure function of its seed.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::time::Time;

/// A priority queue of events keyed by `(time, insertion sequence)`.
#[derive(Debug)]
pub struct EventQueue<E> {
    /// The pending events; the heap's top is the earliest.
    heap: BinaryHeap<Scheduled<E>>,
    /// The sequence number of the next insertion; strictly increasing.
    next_sequence: u64,
}

/// One pending event.
#[derive(Debug)]
struct Scheduled<E> {
    /// When it happens.
    time: Time,
    /// Its insertion number: the tie-breaker among events at the same time.
    sequence: u64,
    /// What happens.
    event: E,
}

impl<E> PartialEq for Scheduled<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.sequence) == (other.time, other.sequence)
    }
}

impl<E> Eq for Scheduled<E> {}

impl<E> PartialOrd for Scheduled<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Scheduled<E> {
    /// Reversed, so that `BinaryHeap` (a max-heap) yields the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.sequence).cmp(&(self.time, self.sequence))
    }
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue { heap: BinaryHeap::new(), next_sequence: 0 }
    }
}

impl<E> EventQueue<E> {
    /// An empty queue.
    pub fn new() -> EventQueue<E> {
        EventQueue::default()
    }

    /// Schedules `event` at `time`, after every event already scheduled at that time.
    pub fn push(&mut self, time: Time, event: E) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.heap.push(Scheduled { time, sequence, event });
    }

    /// The earliest event and its time.
    pub fn pop(&mut self) -> Option<(Time, E)> {
        self.heap.pop().map(|scheduled| (scheduled.time, scheduled.event))
    }

    /// How many events are pending.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_then_insertion_order() {
        let mut queue = EventQueue::new();
        queue.push(Time(5), "late");
        queue.push(Time(1), "first");
        queue.push(Time(1), "second");
        queue.push(Time(3), "middle");
        let order: Vec<&str> = std::iter::from_fn(|| queue.pop().map(|(_, event)| event)).collect();
        assert_eq!(order, vec!["first", "second", "middle", "late"]);
    }
}
