//! Benchmarks of the state machine's apply path, which every node runs for every write: a put
//! under a client session (decode, admit, insert, record) into a store of 10,000 keys with 256
//! active clients, as `skiff bench --clients 256 --keys 10000` drives it; and the same while a
//! point-in-time view is held (a snapshot being written), so that writes copy the nodes they
//! touch. Run: `cargo bench -p skiff-kv --bench apply`.

use std::cell::RefCell;

use bytes::Bytes;
use divan::Bencher;
use divan::counter::ItemsCount;
use skiff_kv::{Command, Op, Session, Store};

fn main() {
    divan::main();
}

/// Keys in the store, as the cluster benchmark's default.
const KEYS: u64 = 10_000;
/// Clients writing, each with its session.
const CLIENTS: u64 = 256;

/// Encoded puts under sessions, round-robin over the clients, keys spread over the key space.
struct Workload {
    store: Store,
    index: u64,
    sequences: Vec<u64>,
    value: Bytes,
}

impl Workload {
    /// A store holding every key once, each client with one write applied.
    fn new() -> Workload {
        let mut workload = Workload {
            store: Store::new(),
            index: 0,
            sequences: vec![0; CLIENTS as usize],
            value: Bytes::from(vec![b'v'; 256]),
        };
        for _ in 0..KEYS {
            workload.apply_next();
        }
        workload
    }

    /// The next write, encoded as the HTTP layer proposes it.
    fn next_command(&mut self) -> Vec<u8> {
        let client = self.index % CLIENTS;
        self.sequences[client as usize] += 1;
        // A multiplicative hash spreads consecutive writes over the keys.
        let key = format!("key-{:05}", self.index.wrapping_mul(2_654_435_761) % KEYS);
        let command = Command {
            session: Some(Session { client, sequence: self.sequences[client as usize] }),
            op: Op::Put { key: Bytes::from(key), value: self.value.clone() },
        };
        command.encode().to_vec()
    }

    /// Applies the next write.
    fn apply_next(&mut self) {
        let command = self.next_command();
        self.index += 1;
        self.store.apply(self.index, &command);
    }
}

/// Writes per measured batch: one snapshot interval of the server's default policy.
const BATCH: usize = 10_000;

/// A batch of puts under sessions into a store no view shares.
#[divan::bench(sample_count = 30)]
fn put_with_session(bencher: Bencher) {
    bench_batches(bencher, false);
}

/// The same batch while a view of the store taken before it is held, as while a snapshot is
/// written: the first write to each part of the maps after the view copies that part.
#[divan::bench(sample_count = 30)]
fn put_with_session_under_a_view(bencher: Bencher) {
    bench_batches(bencher, true);
}

/// Measures batches of `BATCH` puts, each made before it is measured, under a view if `view`.
fn bench_batches(bencher: Bencher, view: bool) {
    let workload = RefCell::new(Workload::new());
    bencher
        .counter(ItemsCount::new(BATCH))
        .with_inputs(|| {
            let mut workload = workload.borrow_mut();
            (0..BATCH).map(|_| workload.next_command()).collect::<Vec<_>>()
        })
        .bench_local_values(|commands| apply_all(&workload, &commands, view));
}

/// Applies `commands` in order, holding a view of the store taken first if `view`; returns the
/// view so that dropping it is not measured.
fn apply_all(workload: &RefCell<Workload>, commands: &[Vec<u8>], view: bool) -> Option<Store> {
    let mut workload = workload.borrow_mut();
    let held = view.then(|| workload.store.clone());
    for command in commands {
        workload.index += 1;
        let index = workload.index;
        workload.store.apply(index, command);
    }
    held
}
