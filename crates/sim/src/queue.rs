//! The event queue: what happens next, in simulated time.
//!
//! Events are ordered by `(time, sequence)`, where the sequence number counts insertions. Two
//! events at the same time therefore run in the order they were scheduled, never in an order
//! that depends on memory addresses or hashing, and a run is a pure function of its seed.
//!
//! The heap holds only small keys; each event waits in a slot of its own until it is due.
//! Every event of a run passes through the heap, and moving keys instead of whole events
//! (88 bytes in the simulator) halves the cost of a pop. Which slot an event gets has no effect
//! on the order.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::time::Time;

/// A priority queue of events keyed by `(time, insertion sequence)`.
#[derive(Debug)]
pub struct EventQueue<E> {
    /// The keys of the pending events; the heap's top is the earliest.
    heap: BinaryHeap<Scheduled>,
    /// The pending events, each in the slot its key names; `None` in a free slot.
    slots: Vec<Option<E>>,
    /// The free slots, reused before `slots` grows.
    free: Vec<usize>,
    /// The sequence number of the next insertion; strictly increasing.
    next_sequence: u64,
}

/// The key of one pending event.
#[derive(Debug)]
struct Scheduled {
    /// When it happens.
    time: Time,
    /// Its insertion number: the tie-breaker among events at the same time.
    sequence: u64,
    /// The slot holding the event.
    slot: usize,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.sequence) == (other.time, other.sequence)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    /// Reversed, so that `BinaryHeap` (a max-heap) yields the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.sequence).cmp(&(self.time, self.sequence))
    }
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            next_sequence: 0,
        }
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
        let slot = match self.free.pop() {
            Some(slot) => {
                assert!(self.slots[slot].is_none(), "free slot {slot} holds an event");
                self.slots[slot] = Some(event);
                slot
            }
            None => {
                self.slots.push(Some(event));
                self.slots.len() - 1
            }
        };
        self.heap.push(Scheduled { time, sequence, slot });
    }

    /// The earliest event and its time.
    pub fn pop(&mut self) -> Option<(Time, E)> {
        let Scheduled { time, slot, .. } = self.heap.pop()?;
        let event = self.slots[slot].take().expect("a scheduled event waits in its slot");
        self.free.push(slot);
        Some((time, event))
    }

    /// How many events are pending.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The pending events with their times, in no particular order: for observers (the
    /// visualizer shows the messages in flight).
    pub fn iter(&self) -> impl Iterator<Item = (Time, &E)> {
        self.heap.iter().map(|scheduled| {
            let event = self.slots[scheduled.slot].as_ref();
            (scheduled.time, event.expect("a scheduled event waits in its slot"))
        })
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
