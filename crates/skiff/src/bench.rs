//! `skiff bench`: a load generator in the manner of etcd's benchmark tool.
//!
//! ```text
//! skiff bench --endpoints 127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379 \
//!     --clients 1,16,64,256 --duration 10s --value-size 256 --keys 10000 --op both
//! ```
//!
//! For each client count, in the order given, and for each operation (`--op put`, `get`, or
//! `both`: puts, then gets), the bench runs that many clients at once for `--duration`. Each
//! client is a tokio task with a keep-alive connection and a write session of its own; it sends
//! one request at a time, as fast as answers come back:
//!
//! - a **put** writes a fresh random value of `--value-size` letters and digits to a key drawn
//!   uniformly from the `--keys` keys `<prefix>00000000`, `<prefix>00000001`, ...
//!   (`--key-prefix`, default `bench/`);
//! - a **get** is a linearizable read of such a key (ReadIndex on the leader), a **stale-get**
//!   one served from the answering node's own store (`?consistency=stale`); `--op reads` runs
//!   both at each client count, which shows what confirming leadership costs a read. Before the
//!   first read run, every key is written once, so that no read finds its key missing.
//!
//! **Where requests go.** Any node accepts any request (followers forward to the leader), but
//! forwarding adds a hop, so by default (`--target leader`) the bench asks every endpoint for
//! `/v1/status` first and has every client talk to the leader, with the other endpoints behind
//! it in case it fails. With `--target all` (or when no leader is found) clients are spread over
//! the endpoints round-robin, client *n* starting at endpoint *n* mod *count*, which measures
//! what forwarding costs.
//!
//! **The bench's own CPU.** The bench runs on the machine it measures, so it speaks HTTP/1.1
//! straight on its connections ([`wire`]): formatting a request and parsing an answer on the
//! client's own task costs a fraction of what the general [`Client`] (hyper's pooled client)
//! does, and leaves that CPU to the nodes. Requests are the ones the general client sends.
//!
//! **Errors are counted, not fatal.** A failed request (after the client's own retries within
//! `--command-timeout`) is counted under its message, and the client pauses 10 ms before its
//! next request, so that a cluster that refuses connections is not hammered in a busy loop. The
//! run goes on; its report lists the most frequent errors. The exit status is 1 only when some
//! run completed no request at all.
//!
//! A progress bar (indicatif, on stderr, only when stderr is a terminal) shows each run's time,
//! requests and rate as it goes. The report is described in [`report`].
//!
//! Left out: a fixed request count (`--total`), rate limiting (`--rate`), and operations other
//! than put and get (CAS, scans, deletes).

pub mod report;
mod wire;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use hyper::body::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{Client, ClientOptions};
use crate::flags::{ConnectionArgs, parse_duration};
use crate::output::WriteOut;
use crate::random::Random;
use report::{
    ErrorTally, JsonReport, Operation, Summary, new_histogram, render_table, render_text,
};
pub use wire::Protocol;
use wire::WireClient;

/// The largest value the API accepts (docs/http-api.md: values up to 1 MiB).
const MAX_VALUE_SIZE: usize = 1 << 20;
/// How long a client pauses after a failed request.
const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// How many clients write the keys before the first get run.
const POPULATE_CLIENTS: u64 = 64;
/// How often the progress bar is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// Arguments of `skiff bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Where to connect and how to print (`-w json`: one JSON document at the end).
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// How many clients to run at once: a comma-separated list, one run per entry.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,16,64,256",
        value_parser = clap::value_parser!(u64).range(1..=100_000)
    )]
    pub clients: Vec<u64>,
    /// How long each run lasts.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// The size of each value written, in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// How many distinct keys requests are spread over.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub keys: u64,
    /// What to measure: put, get (linearizable), both (puts, then gets), stale-get, or reads
    /// (gets, then stale gets).
    #[arg(long, value_enum, default_value_t = BenchOp::Put)]
    pub op: BenchOp,
    /// leader: every client talks to the leader; all: clients are spread over the endpoints.
    #[arg(long, value_enum, default_value_t = Target::Leader)]
    pub target: Target,
    /// What every bench key starts with.
    #[arg(long, default_value = "bench/")]
    pub key_prefix: String,
    /// The API the endpoints speak: skiff, or etcd (v3's JSON gateway; a baseline measured with
    /// the same load generator). etcd's leader is not looked up: with `--target leader`, give
    /// it as the first endpoint.
    #[arg(long, value_enum, default_value_t = Protocol::Skiff)]
    pub protocol: Protocol,
}

/// The `--op` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchOp {
    /// Puts of random values to random keys.
    Put,
    /// Linearizable gets of random keys (the keys are written first).
    Get,
    /// Puts, then gets, at each client count.
    Both,
    /// Stale gets of random keys (the keys are written first), served from the answering
    /// node's store without asking the leader.
    StaleGet,
    /// Linearizable gets, then stale gets, at each client count: what confirming leadership
    /// costs a read.
    Reads,
}

/// The `--target` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Every client talks to the leader (found with /v1/status).
    Leader,
    /// Clients are spread over the endpoints round-robin.
    All,
}

/// Which endpoints each client tries, in which order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Routing {
    /// The endpoints as given.
    endpoints: Vec<String>,
    /// The place of the leader in `endpoints`, when clients are to start there.
    leader: Option<usize>,
}

impl Routing {
    /// The endpoint order of client `number`: the leader first (the others after it, in
    /// order), or the endpoints rotated by the client's number.
    fn order_for(&self, number: u64) -> Vec<String> {
        let count = self.endpoints.len();
        let order: Vec<usize> = match self.leader {
            Some(leader) => {
                std::iter::once(leader).chain((0..count).filter(|&index| index != leader)).collect()
            }
            None => {
                let first = (number % count as u64) as usize;
                (0..count).map(|offset| (first + offset) % count).collect()
            }
        };
        order.into_iter().map(|index| self.endpoints[index].clone()).collect()
    }
}

/// What every client of a run shares.
#[derive(Debug)]
struct Workload {
    /// The key prefix.
    prefix: String,
    /// The size of the key space.
    keys: u64,
    /// The size of each value.
    value_size: usize,
    /// The kind of request.
    operation: Operation,
    /// When clients stop sending.
    deadline: Instant,
    /// Requests finished so far (successful or not), for the progress bar.
    finished: AtomicU64,
}

/// Key number `number` of the bench's key space.
fn bench_key(prefix: &str, number: u64) -> String {
    let mut key = String::new();
    set_bench_key(&mut key, prefix, number);
    key
}

/// Makes `key` key number `number` of the bench's key space, reusing its allocation.
fn set_bench_key(key: &mut String, prefix: &str, number: u64) {
    use std::fmt::Write as _;
    key.clear();
    write!(key, "{prefix}{number:08}").expect("writing to a String cannot fail");
}

/// How many requests a client finishes between two updates of the shared count the progress
/// bar shows (one shared atomic written by every request of every client was a cache line
/// bouncing between the bench's threads).
const FINISHED_BATCH: u64 = 32;

/// What one client measured.
#[derive(Debug)]
struct ClientResult {
    /// The latencies of its successful requests, in microseconds.
    latencies: Histogram<u64>,
    /// Its failures.
    errors: ErrorTally,
}

/// Runs the bench, printing to `out` as it goes, and returns every run's summary.
pub async fn execute(args: &BenchArgs, out: &mut dyn Write) -> anyhow::Result<Vec<Summary>> {
    if args.value_size > MAX_VALUE_SIZE {
        bail!("--value-size {} is over the API's limit of {MAX_VALUE_SIZE} bytes", args.value_size);
    }
    let operations: &[Operation] = match args.op {
        BenchOp::Put => &[Operation::Put],
        BenchOp::Get => &[Operation::Get],
        BenchOp::Both => &[Operation::Put, Operation::Get],
        BenchOp::StaleGet => &[Operation::StaleGet],
        BenchOp::Reads => &[Operation::Get, Operation::StaleGet],
    };
    let options = args.connection.client_options();
    let routing = match args.protocol {
        Protocol::Skiff => route(&options, args.target).await?,
        Protocol::Etcd => Routing {
            endpoints: Client::new(options.clone())?.endpoints().to_vec(),
            leader: (args.target == Target::Leader).then_some(0),
        },
    };
    if operations.iter().any(|operation| *operation != Operation::Put) {
        populate(args, &options, &routing).await?;
    }
    let mut summaries = Vec::new();
    for &clients in &args.clients {
        for &operation in operations {
            let summary = run(args, &options, &routing, operation, clients).await?;
            if args.connection.write_out != WriteOut::Json {
                writeln!(out, "{}", render_text(&summary))?;
                out.flush()?;
            }
            summaries.push(summary);
        }
    }
    match args.connection.write_out {
        WriteOut::Json => {
            out.write_all(crate::output::json(&JsonReport { runs: &summaries }).as_bytes())?
        }
        WriteOut::Simple | WriteOut::Table => out.write_all(render_table(&summaries).as_bytes())?,
    }
    Ok(summaries)
}

/// Finds the leader among the endpoints (when `--target leader`) by asking each for its status.
async fn route(options: &ClientOptions, target: Target) -> anyhow::Result<Routing> {
    let client = Client::new(options.clone())?;
    let endpoints = client.endpoints().to_vec();
    if target == Target::All {
        return Ok(Routing { endpoints, leader: None });
    }
    let mut failures = Vec::new();
    for index in 0..endpoints.len() {
        match client.status_of(index).await {
            Ok(status) if status.role == "leader" => {
                eprintln!("bench: the leader is node {} at {}", status.id, endpoints[index]);
                return Ok(Routing { endpoints, leader: Some(index) });
            }
            Ok(_) => {}
            Err(error) => failures.push(error.to_string()),
        }
    }
    if failures.len() == endpoints.len() {
        bail!("no endpoint answered /v1/status: {}", failures.join("; "));
    }
    eprintln!("bench: no endpoint is the leader; clients are spread over the endpoints");
    Ok(Routing { endpoints, leader: None })
}

/// A progress bar on stderr (drawn only when stderr is a terminal).
fn progress_bar(length: u64, prefix: String) -> ProgressBar {
    let bar = ProgressBar::new(length);
    let style = ProgressStyle::with_template("{prefix:>18} [{bar:40}] {msg}")
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(prefix);
    bar
}

/// A client writing the keys before a run of gets.
enum PopulatingClient {
    /// skiff's general client.
    Skiff(Client),
    /// The bench's own connection, speaking etcd's gateway.
    Etcd(WireClient),
}

/// Writes every key once, so that gets find them.
async fn populate(
    args: &BenchArgs,
    options: &ClientOptions,
    routing: &Routing,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(args.keys, format!("writing {} keys", args.keys));
    let mut tasks = JoinSet::new();
    let mut ids = Random::from_entropy();
    for number in 0..POPULATE_CLIENTS.min(args.keys) {
        let endpoints = routing.order_for(number);
        // skiff's general client waits out elections and follows redirects; etcd's gateway is
        // spoken by the bench's connection only.
        let mut client = match args.protocol {
            Protocol::Skiff => PopulatingClient::Skiff(Client::new(ClientOptions {
                endpoints,
                ..options.clone()
            })?),
            Protocol::Etcd => PopulatingClient::Etcd(WireClient::new(
                args.protocol,
                endpoints,
                options.command_timeout,
                ids.next_u64(),
            )),
        };
        let (next, bar, prefix) = (next.clone(), bar.clone(), args.key_prefix.clone());
        let (keys, value_size) = (args.keys, args.value_size);
        tasks.spawn(async move {
            let mut random = Random::from_entropy();
            let mut value = vec![0u8; value_size];
            let mut errors = ErrorTally::default();
            loop {
                let number = next.fetch_add(1, Ordering::Relaxed);
                if number >= keys {
                    return errors;
                }
                random.fill_alphanumeric(&mut value);
                let key = bench_key(&prefix, number);
                let written = match &mut client {
                    PopulatingClient::Skiff(client) => client
                        .put(&key, Bytes::copy_from_slice(&value))
                        .await
                        .map(drop)
                        .map_err(|error| error.to_string()),
                    PopulatingClient::Etcd(client) => {
                        client.put(&key, &value).await.map_err(|error| error.to_string())
                    }
                };
                if let Err(error) = written {
                    errors.record(error, 1);
                }
                bar.inc(1);
            }
        });
    }
    let mut errors = ErrorTally::default();
    while let Some(joined) = tasks.join_next().await {
        errors.merge(joined.context("a populating client panicked")?);
    }
    bar.finish_and_clear();
    if errors.total() == args.keys {
        let most_frequent = errors.most_frequent().unwrap_or_default();
        bail!("could not write any of the {} keys: {most_frequent}", args.keys);
    }
    if errors.total() > 0 {
        eprintln!(
            "bench: {} of {} keys could not be written; gets of them fail",
            errors.total(),
            args.keys
        );
    }
    Ok(())
}

/// One run: `clients` clients sending `operation` requests for `--duration`.
async fn run(
    args: &BenchArgs,
    options: &ClientOptions,
    routing: &Routing,
    operation: Operation,
    clients: u64,
) -> anyhow::Result<Summary> {
    let mut made = Vec::new();
    let mut ids = Random::from_entropy();
    for number in 0..clients {
        let endpoints = routing.order_for(number);
        made.push(WireClient::new(
            args.protocol,
            endpoints,
            options.command_timeout,
            ids.next_u64(),
        ));
    }
    let started = Instant::now();
    let workload = Arc::new(Workload {
        prefix: args.key_prefix.clone(),
        keys: args.keys,
        value_size: args.value_size,
        operation,
        deadline: started + args.duration,
        finished: AtomicU64::new(0),
    });
    let mut tasks = JoinSet::new();
    for client in made {
        tasks.spawn(send_until_deadline(client, workload.clone()));
    }
    let bar =
        progress_bar(args.duration.as_millis() as u64, format!("{} × {clients}", operation.name()));
    let ticker = tokio::spawn({
        let (bar, workload) = (bar.clone(), workload.clone());
        async move {
            let mut interval = tokio::time::interval(PROGRESS_INTERVAL);
            loop {
                interval.tick().await;
                let elapsed = started.elapsed();
                let finished = workload.finished.load(Ordering::Relaxed);
                bar.set_position(elapsed.as_millis() as u64);
                bar.set_message(format!(
                    "{:.1}s, {finished} requests, {:.0}/s",
                    elapsed.as_secs_f64(),
                    finished as f64 / elapsed.as_secs_f64().max(1e-3)
                ));
            }
        }
    });
    let mut latencies = new_histogram();
    let mut errors = ErrorTally::default();
    while let Some(joined) = tasks.join_next().await {
        let result = joined.context("a bench client panicked")?;
        latencies.add(&result.latencies).context("merging latency histograms")?;
        errors.merge(result.errors);
    }
    let total = started.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    Ok(Summary::new(operation, clients as usize, total, &latencies, &errors))
}

/// One client's loop: a request, its answer, the next request, until the deadline.
async fn send_until_deadline(mut client: WireClient, workload: Arc<Workload>) -> ClientResult {
    let mut random = Random::from_entropy();
    let mut latencies = new_histogram();
    let mut errors = ErrorTally::default();
    let mut value = vec![0u8; workload.value_size];
    let mut key = String::new();
    let mut unreported = 0;
    while Instant::now() < workload.deadline {
        set_bench_key(&mut key, &workload.prefix, random.below(workload.keys));
        let started = Instant::now();
        let outcome = match workload.operation {
            Operation::Put => {
                random.fill_alphanumeric(&mut value);
                client.put(&key, &value).await
            }
            Operation::Get => client.get(&key, false).await,
            Operation::StaleGet => client.get(&key, true).await,
        };
        match outcome {
            Ok(()) => latencies.saturating_record(started.elapsed().as_micros() as u64),
            Err(error) => {
                errors.record(error.to_string(), 1);
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
        unreported += 1;
        if unreported == FINISHED_BATCH {
            workload.finished.fetch_add(unreported, Ordering::Relaxed);
            unreported = 0;
        }
    }
    workload.finished.fetch_add(unreported, Ordering::Relaxed);
    ClientResult { latencies, errors }
}

#[cfg(test)]
mod tests;
