//! Pacing the catch-up of followers: a token bucket over the entries the leader reads from its
//! log to send to followers, so that a follower far behind is fed at a bounded rate instead of
//! as fast as the leader can read and encode (issue 6: catching up must not slow the leader's
//! clients by more than a fifth).
//!
//! ## Why here and not in the core
//! The core is clock-free (crates/raft), and it already tolerates a late answer to a read
//! (contract item 4): it keeps at most one read per follower outstanding (`progress.reading`),
//! and sends nothing more to that follower from the log until the answer comes. So the driver
//! can pace the catch-up on its own by choosing *when* it hands an answer back: a follower whose
//! entries are held waits, while heartbeats, replication from the in-memory tail to the other
//! followers, and everything else go on. Entries the core still holds in memory (the newest
//! ones, for followers in step) never come through here and are never paced; nor are reads to
//! apply entries ([`skiff_raft::ReadPurpose::Apply`]).
//!
//! ## The bucket
//! One bucket for the whole node, filled at `rate` bytes per second (bytes as `Entry::size`
//! counts them), holding at most one **chunk**: `rate / 32`, at least 64 KiB. Each read for a
//! follower asks the log for at most one chunk ([`Pacer::max_bytes`]), so each `Append` the
//! follower writes is small, and when its answer comes back its bytes are charged
//! ([`Pacer::admit`]). A read that leaves the bucket with no debt goes to the core at once; one
//! that leaves it in debt is held until the debt is paid, `debt / rate` later, then released in
//! arrival order ([`Pacer::release`]). The bucket holds no more than a chunk, so there are no
//! bursts after a quiet spell; it may owe any amount (one read returns at least one entry,
//! whatever its size).
//!
//! The bucket is kept as one instant, the moment its debt is (or was) paid: before it, the bucket
//! owes the bytes that would fill the time left at `rate`; after it, it holds the bytes that time
//! would have filled, at most a chunk. Charging `bytes` moves that moment `bytes / rate` later.
//!
//! ## Invariants
//! - Held reads are released in the order they arrived, never before their release time.
//! - At most one read per follower and leadership is held (the core asks for no second one
//!   before the first is answered, and a new leadership starts afresh; what an ended one left
//!   held goes to the core, which drops it), so the memory held is bounded by a chunk per
//!   follower for each leadership of this node still in flight.
//! - A rate of 0 turns pacing off: nothing is capped, nothing is held.
//!
//! ## The default rate
//! 8 MiB/s: about 60,000 entries a second of 64-byte commands, a million in under 20 s. Measured
//! on the development machine (three nodes and the load on two cores and one disk;
//! `CATCHUP_RATE=R ROUNDS=3 ENTRIES=1000000 SLICE=1s crates/skiff/benches/catchup.sh`, 16
//! clients), the clients' latency during a catch-up against the same cluster in step, medians
//! over three rounds: at 8 MiB/s mean x1.07, p50 x0.92, puts/s x0.94; at 16 MiB/s, twice as
//! fast a catch-up, mean x1.23, p50 x0.95, puts/s x0.81, past the fifth issue 6 allows. The
//! cost is CPU and disk on the catching-up follower's machine, shared here with the others; a
//! deployment with a machine per node can afford a higher rate.
//!
//! ## Left out
//! Fairness between followers (one bucket, first come first served) and pacing of snapshot
//! transfers (an HTTP pull with its own chunks, `crate::snapshot`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The catch-up rate a node runs with unless told otherwise: 8 MiB/s (see "The default rate").
pub const DEFAULT_CATCHUP_RATE: u64 = 8 << 20;

/// A chunk is this fraction of a second's rate: small enough that one `Append` of a catch-up
/// costs the follower a short write, and the bucket's burst stays a thirty-second of a second.
const CHUNKS_PER_SECOND: u64 = 32;

/// The smallest chunk: below this a read and an `Append` cost more in fixed overhead than in
/// bytes.
const MIN_CHUNK_BYTES: u64 = 64 << 10;

/// A token bucket over catch-up reads, holding the reads (`T`) that must wait for it.
#[derive(Debug)]
pub(super) struct Pacer<T> {
    /// Bytes per second; 0: no pacing.
    rate: u64,
    /// The most a read may ask for, and the bucket's capacity: `rate / 32`, at least 64 KiB.
    chunk: u64,
    /// The time the bucket takes to fill a chunk at `rate`.
    capacity: Duration,
    /// When the bucket's debt is paid (see the module documentation); `None` before the first
    /// charge: the bucket is full.
    paid_at: Option<Instant>,
    /// Reads waiting for the bucket, in arrival order; their release times never decrease.
    held: VecDeque<Held<T>>,
}

/// A read waiting for the bucket.
#[derive(Debug)]
struct Held<T> {
    /// The read.
    item: T,
    /// When it came back from the log.
    arrived: Instant,
    /// When it may go to the core: the bucket's debt is paid then.
    release_at: Instant,
}

/// A read the bucket let go, and how long it held it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Released<T> {
    /// The read.
    pub(super) item: T,
    /// How long it was held (zero if it went at once).
    pub(super) held_for: Duration,
}

impl<T> Pacer<T> {
    /// A pacer of `rate` bytes per second; 0 turns pacing off.
    pub(super) fn new(rate: u64) -> Pacer<T> {
        let chunk =
            if rate == 0 { u64::MAX } else { (rate / CHUNKS_PER_SECOND).max(MIN_CHUNK_BYTES) };
        let mut pacer =
            Pacer { rate, chunk, capacity: Duration::ZERO, paid_at: None, held: VecDeque::new() };
        pacer.capacity = pacer.time_for(chunk);
        pacer
    }

    /// The most a read for a follower may ask the log for, given the core's own limit `asked`:
    /// one chunk, but never more than the core asked. The core accepts any non-empty prefix of
    /// what it asked for (`Node::entries_read`), and the log returns at least one entry whatever
    /// the limit.
    pub(super) fn max_bytes(&self, asked: u64) -> u64 {
        self.chunk.min(asked)
    }

    /// A read of `bytes` came back from the log at `now`: charges the bucket, and hands the read
    /// back if it may go to the core at once, or holds it (`None`) until [`Pacer::release`]
    /// lets it go. A read behind held ones waits for them, even with the debt paid, so that
    /// reads reach the core in the order they came back.
    pub(super) fn admit(&mut self, item: T, bytes: u64, now: Instant) -> Option<T> {
        if self.rate == 0 {
            return Some(item);
        }
        // A full bucket is one whose debt was paid a chunk's worth of time ago or earlier. Right
        // after the machine booted the subtraction may underflow: the bucket then starts empty.
        let full = now.checked_sub(self.capacity).unwrap_or(now);
        let from = self.paid_at.map_or(full, |paid_at| paid_at.max(full));
        let paid_at = from + self.time_for(bytes);
        self.paid_at = Some(paid_at);
        if paid_at <= now && self.held.is_empty() {
            return Some(item);
        }
        let release_at = self.held.back().map_or(paid_at, |last| paid_at.max(last.release_at));
        self.held.push_back(Held { item, arrived: now, release_at });
        None
    }

    /// When the first held read may go, if one is held.
    pub(super) fn next_release(&self) -> Option<Instant> {
        self.held.front().map(|held| held.release_at)
    }

    /// Lets go of every held read whose time has come by `now`, first come first out.
    pub(super) fn release(&mut self, now: Instant) -> Vec<Released<T>> {
        let mut released = Vec::new();
        while self.held.front().is_some_and(|held| held.release_at <= now) {
            let held = self.held.pop_front().expect("checked by is_some_and just above");
            let held_for = now.saturating_duration_since(held.arrived);
            released.push(Released { item: held.item, held_for });
        }
        released
    }

    /// Whether no read is held.
    pub(super) fn is_idle(&self) -> bool {
        self.held.is_empty()
    }

    /// The time the bucket takes to earn `bytes` at its rate (zero without a rate), to the
    /// nanosecond, saturating at `u64::MAX` nanoseconds (centuries).
    fn time_for(&self, bytes: u64) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let nanos = u128::from(bytes) * 1_000_000_000 / u128::from(self.rate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1 MiB/s: a chunk of 64 KiB (the floor, above 1 MiB / 32), earned in 62.5 ms.
    const RATE: u64 = 1 << 20;
    /// One chunk at `RATE`.
    const CHUNK: u64 = 64 << 10;

    /// `us` microseconds: every time in these tests is a whole number of them, so they compare
    /// exactly.
    fn micros(us: u64) -> Duration {
        Duration::from_micros(us)
    }

    #[test]
    fn a_read_that_leaves_no_debt_goes_at_once() {
        let start = Instant::now();
        let mut pacer = Pacer::new(RATE);
        assert_eq!(pacer.admit("first", CHUNK, start), Some("first"), "a full bucket pays it");
        assert!(pacer.is_idle());
        // A chunk's worth of time later the bucket is full again.
        let later = start + micros(62_500);
        assert_eq!(pacer.admit("second", CHUNK, later), Some("second"));
        // Half a chunk's time later, half a chunk is paid for.
        let half = later + micros(31_250);
        assert_eq!(pacer.admit("third", CHUNK / 2, half), Some("third"));
        assert_eq!(pacer.next_release(), None);
    }

    #[test]
    fn a_read_in_debt_waits_until_the_debt_is_paid_at_the_rate() {
        let start = Instant::now();
        let mut pacer = Pacer::new(RATE);
        assert_eq!(pacer.admit(1, CHUNK, start), Some(1));
        // The bucket is empty: two chunks more owe two chunks, 125 ms at 1 MiB/s.
        assert_eq!(pacer.admit(2, 2 * CHUNK, start), None);
        assert_eq!(pacer.next_release(), Some(start + micros(125_000)));
        assert!(pacer.release(start + micros(124_900)).is_empty(), "not before the debt is paid");
        let released = pacer.release(start + micros(125_000));
        assert_eq!(released, vec![Released { item: 2, held_for: micros(125_000) }]);
        assert!(pacer.is_idle());

        // Paid off exactly: a read 10 ms later owes what 10 ms did not earn.
        let later = start + micros(135_000);
        assert_eq!(pacer.admit(3, CHUNK, later), None);
        assert_eq!(pacer.next_release(), Some(later + micros(52_500)));
    }

    #[test]
    fn the_bucket_holds_one_chunk_so_a_quiet_spell_earns_no_burst() {
        let start = Instant::now();
        let mut pacer = Pacer::new(RATE);
        assert_eq!(pacer.admit(1, CHUNK, start), Some(1));
        let after_a_minute = start + Duration::from_secs(60);
        assert_eq!(pacer.admit(2, CHUNK, after_a_minute), Some(2), "a chunk was saved up");
        assert_eq!(pacer.admit(3, 1, after_a_minute), None, "but no more than one");
    }

    #[test]
    fn held_reads_go_in_the_order_they_came() {
        let start = Instant::now();
        let mut pacer = Pacer::new(RATE);
        assert_eq!(pacer.admit('a', CHUNK, start), Some('a'));
        assert_eq!(pacer.admit('b', CHUNK, start), None);
        assert_eq!(pacer.admit('c', CHUNK / 4, start), None);
        assert_eq!(pacer.admit('d', CHUNK, start + micros(1_000)), None);
        // The debt of b is paid at 62.5 ms, c's at 78.125 ms, d's at 140.625 ms.
        let items = |released: Vec<Released<char>>| -> Vec<char> {
            released.into_iter().map(|released| released.item).collect()
        };
        assert_eq!(items(pacer.release(start + micros(80_000))), vec!['b', 'c']);
        assert_eq!(pacer.next_release(), Some(start + micros(140_625)));
        // A read that would owe nothing still waits behind one held.
        let due = start + micros(300_000);
        assert_eq!(pacer.admit('e', 1, due), None, "e waits behind d");
        assert_eq!(items(pacer.release(due)), vec!['d', 'e']);
        assert!(pacer.is_idle());
    }

    #[test]
    fn a_rate_of_zero_never_holds_nor_caps() {
        let start = Instant::now();
        let mut pacer = Pacer::new(0);
        for i in 0..1000 {
            assert_eq!(pacer.admit(i, 1 << 30, start), Some(i));
        }
        assert_eq!(pacer.next_release(), None);
        assert_eq!(pacer.max_bytes(1 << 20), 1 << 20);
    }

    #[test]
    fn a_chunk_is_a_thirty_second_of_the_rate_between_64_kib_and_the_cores_limit() {
        let core_limit = 1 << 20;
        assert_eq!(Pacer::<()>::new(16 << 20).max_bytes(core_limit), 512 << 10);
        assert_eq!(Pacer::<()>::new(1 << 20).max_bytes(core_limit), 64 << 10, "the floor");
        assert_eq!(Pacer::<()>::new(1).max_bytes(core_limit), 64 << 10, "the floor");
        assert_eq!(Pacer::<()>::new(1 << 30).max_bytes(core_limit), core_limit, "the core's");
        assert_eq!(Pacer::<()>::new(16 << 20).max_bytes(4096), 4096, "a core asking less");
        assert_eq!(Pacer::<()>::new(DEFAULT_CATCHUP_RATE).max_bytes(core_limit), 256 << 10);
    }

    #[test]
    fn a_read_larger_than_a_chunk_goes_and_leaves_its_debt_to_the_next() {
        let start = Instant::now();
        let mut pacer = Pacer::new(RATE);
        // One entry larger than a chunk: the log returns it whatever the limit.
        assert_eq!(pacer.admit(1, 4 * CHUNK, start), None, "it owes three chunks");
        assert_eq!(pacer.next_release(), Some(start + micros(187_500)));
        assert_eq!(pacer.admit(2, CHUNK, start), None);
        assert_eq!(pacer.release(start + micros(250_000)).len(), 2);
    }
}
