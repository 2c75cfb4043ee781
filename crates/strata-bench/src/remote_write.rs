//! `strata-bench remote-write`: sends hours of a node-exporter-like fleet's samples to a Prometheus
//! remote write 1.0 endpoint (Strata's or Prometheus's own receiver) as fast as it acknowledges them.
//!
//! The whole workload is generated, protobuf-encoded and snappy-compressed before the clock starts
//! (and timed apart), so that while measuring the client only sends and waits. Requests are built as
//! Prometheus's remote write queue builds them: series are hashed to one shard per connection, each
//! request holds up to 2,000 samples of one shard in time order, one sample per `TimeSeries` entry
//! with the full label set. A shard's requests go out one at a time on its own connection, so a
//! series' samples always arrive in order, and no connection starts a request more than
//! `--order-window-s` of data time ahead of the slowest one, so data arrives in time order closely
//! enough for a store that refuses samples far behind its newest one (Prometheus: 1 hour).
//! Requests answered 429, 5xx or not at all are retried with backoff as Prometheus retries them; other
//! refusals are counted and dropped, as Prometheus drops them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use bytes::Bytes;
use clap::Args;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER, USER_AGENT};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::args::now_ms;
use crate::process::{ProcessMemory, read_memory};
use crate::summary::Summary;
use strata_bench::metrics_workload::{Fleet, FleetConfig};

/// Error answers kept with their bodies for the report.
const ERROR_BODIES_MAX: usize = 5;

/// Characters of an error body kept.
const ERROR_BODY_CHARS_MAX: usize = 300;

/// First pause before a retry; it doubles up to [`RETRY_PAUSE_MAX`], like Prometheus's min_backoff.
const RETRY_PAUSE_MIN: Duration = Duration::from_millis(30);

/// Longest pause before a retry, `Retry-After` included (Prometheus's default max_backoff).
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(5);

/// How often a connection held back by the order window looks again without being woken.
const ORDER_POLL: Duration = Duration::from_millis(100);

/// Labels of an HA group's series, as Prometheus's external labels and Mimir's HA tracker name them.
const HA_CLUSTER_LABEL: &str = "cluster";
const HA_CLUSTER: &str = "strata-bench";
const HA_REPLICA_LABEL: &str = "__replica__";

/// What `--query-url` asks the server: its series at the end of the data, and the samples of one
/// metric family (CPU time, 128 series a host) in the data's last 10 minutes. Of one family only,
/// because `count_over_time` drops the metric name, and series of several families that differ
/// only in their name are an error in Prometheus.
const STORED_SERIES_QUERY: &str = r#"count({__name__=~".+"})"#;
const STORED_SAMPLES_QUERY: &str = "sum(count_over_time(node_cpu_seconds_total[10m]))";

/// Time between two readings of what a server stores that must agree, and the longest wait for them.
const STORED_SETTLE: Duration = Duration::from_secs(5);
const STORED_WAIT_MAX: Duration = Duration::from_secs(120);

/// Time allowed for one read of the server's `/metrics`.
const METRICS_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Time allowed for one of those queries.
const STORED_QUERY_TIMEOUT: Duration = Duration::from_secs(120);

/// How far behind now the end of the data must be before it is queried: VictoriaMetrics'
/// `-search.latencyOffset` (30 s) and a margin.
const STORED_LATENCY_OFFSET_MS: i64 = 35_000;

/// How often the server's `/metrics` is read while waiting for it to catch up.
const CATCH_UP_POLL: Duration = Duration::from_millis(250);

/// Failed reads of the server's `/metrics` in a row after which a server is taken for gone.
const CATCH_UP_FAILURES_MAX: u32 = 40;

/// Arguments of `strata-bench remote-write`.
#[derive(Debug, Args)]
pub struct RemoteWriteArgs {
    /// Remote write endpoint.
    #[arg(long, default_value = "http://127.0.0.1:7878/api/v1/write")]
    url: String,
    /// Sent as `Authorization: Bearer <token>`; omit for a server without authentication.
    #[arg(long, env = "STRATA_API_KEY", hide_env_values = true)]
    bearer_token: Option<String>,
    /// Name of the server in the report.
    #[arg(long, default_value = "server")]
    label: String,
    /// Hosts scraped, about 1,000 series each.
    #[arg(long, default_value_t = 100)]
    hosts: u32,
    /// Hours of data, ending now (or at `--end-ms`).
    #[arg(long, default_value_t = 6.0)]
    hours: f64,
    /// End of the data, in Unix milliseconds; by default the time the run starts. Runs with the same
    /// end, seed and shape send the very same samples: a replay, or the same workload to each server.
    #[arg(long)]
    end_ms: Option<i64>,
    /// Send the workload as a Prometheus HA pair (or group) of this many replicas: every series
    /// gains `cluster="strata-bench"` and `__replica__="replica-N"`, and each replica sends all of
    /// it on its own `--connections` connections, at the same time as the others. 0: one sender
    /// with neither label.
    #[arg(long, default_value_t = 0)]
    ha_replicas: u32,
    /// Scrape interval, in seconds.
    #[arg(long, default_value_t = 15)]
    interval_s: u64,
    /// Share of scrapes whose timestamp is a few milliseconds off the interval.
    #[arg(long, default_value_t = 0.25)]
    jitter_share: f64,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Concurrent connections, one shard of the series each (Prometheus's shards).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Samples per request (Prometheus's max_samples_per_send).
    #[arg(long, default_value_t = 2000)]
    samples_per_request: usize,
    /// How far, in seconds of data time, a connection may run ahead of the slowest one. Each series
    /// stays in order whatever this is; it keeps every request far inside the hour behind its newest
    /// sample that Prometheus accepts.
    #[arg(long, default_value_t = 300)]
    order_window_s: u64,
    /// Time allowed for one request, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// Retries of one request answered 429, 5xx or not at all, before it is given up.
    #[arg(long, default_value_t = 10)]
    retries_max: u32,
    /// Requests not sent within this many seconds of the start are given up.
    #[arg(long, default_value_t = 7200)]
    send_duration_max_s: u64,
    /// Strata's `/metrics` URL: after sending, wait until its metric store has consumed every sample
    /// (tsdb consumer lag 0 on every partition, and as many samples appended or rejected as were
    /// acknowledged) and report the end-to-end rate.
    #[arg(long)]
    wait_url: Option<String>,
    /// Longest wait for the server to catch up, in seconds.
    #[arg(long, default_value_t = 3600)]
    wait_timeout_s: u64,
    /// The server's Prometheus query API (`.../api/v1/query`): after sending (and after the wait,
    /// with `--wait-url`), count the series it holds at the end of the data and their samples in
    /// its last 10 minutes, to compare what servers, replays and HA pairs store.
    #[arg(long)]
    query_url: Option<String>,
    /// Pid of the server, to report its current and peak resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print one JSON object instead of a human-readable summary.
    #[arg(long)]
    json: bool,
}

/// One encoded request.
struct Request {
    /// Snappy block format of a protobuf `WriteRequest`.
    body: Bytes,
    samples: u64,
    /// Timestamp of its first sample, in Unix milliseconds.
    first_ms: i64,
}

/// A request as the generator hands it to a compressor.
struct RawRequest {
    shard: usize,
    sequence: usize,
    protobuf: Vec<u8>,
    samples: u64,
    first_ms: i64,
}

/// The generated workload, ready to send.
struct Encoded {
    /// Requests of each shard, in time order.
    shards: Vec<Vec<Request>>,
    series: u64,
    samples: u64,
    protobuf_bytes: u64,
    wire_bytes: u64,
    start_ms: i64,
    end_ms: i64,
    seconds: f64,
}

/// Everything the connection tasks share.
struct Plan {
    url: String,
    shards: Vec<Vec<Request>>,
    /// Per shard, the first timestamp of its request not yet answered; `i64::MAX` once it is done.
    progress: Vec<AtomicI64>,
    progressed: Notify,
    order_window_ms: i64,
    retries_max: u32,
    give_up: Instant,
}

/// Figures of one connection, merged at the end.
#[derive(Default)]
struct ConnectionStats {
    attempts_by_status: BTreeMap<String, u64>,
    error_bodies: Vec<ErrorBody>,
    requests_sent: u64,
    samples_sent: u64,
    samples_acknowledged: u64,
    samples_refused: u64,
    samples_given_up: u64,
    samples_unsent: u64,
    retries: u64,
    latencies_ms: Vec<f64>,
    order_wait_s: f64,
    last_answer: Option<Instant>,
}

impl ConnectionStats {
    fn merge(&mut self, other: ConnectionStats) {
        for (status, count) in other.attempts_by_status {
            *self.attempts_by_status.entry(status).or_default() += count;
        }
        let room = ERROR_BODIES_MAX.saturating_sub(self.error_bodies.len());
        self.error_bodies.extend(other.error_bodies.into_iter().take(room));
        self.requests_sent += other.requests_sent;
        self.samples_sent += other.samples_sent;
        self.samples_acknowledged += other.samples_acknowledged;
        self.samples_refused += other.samples_refused;
        self.samples_given_up += other.samples_given_up;
        self.samples_unsent += other.samples_unsent;
        self.retries += other.retries;
        self.latencies_ms.extend(other.latencies_ms);
        self.order_wait_s += other.order_wait_s;
        self.last_answer = self.last_answer.max(other.last_answer);
    }
}

/// A refusal and what the server said.
#[derive(Debug, Clone, Serialize)]
struct ErrorBody {
    status: String,
    body: String,
}

/// What became of one attempt.
enum Attempt {
    Answered { status: u16, retry_after: Option<Duration>, body: Bytes },
    Transport(&'static str),
}

/// The result of a run, as printed with `--json`.
#[derive(Debug, Serialize)]
struct Report {
    label: String,
    url: String,
    hosts: u32,
    /// Series of one sender; an HA group sends them once per replica.
    series: u64,
    ha_replicas: u32,
    hours: f64,
    interval_s: u64,
    jitter_share: f64,
    /// Data time range, Unix milliseconds.
    data_start_ms: i64,
    data_end_ms: i64,
    samples_generated: u64,
    requests_generated: u64,
    /// Protobuf bytes before compression, and snappy bytes sent, per sample.
    protobuf_bytes_per_sample: f64,
    wire_bytes_per_sample: f64,
    /// Time spent generating and encoding, before the clock started.
    encode_s: f64,
    connections: usize,
    samples_per_request: usize,
    order_window_s: u64,
    requests_sent: u64,
    attempts_by_status: BTreeMap<String, u64>,
    retries: u64,
    error_bodies: Vec<ErrorBody>,
    samples_sent: u64,
    /// Samples of requests answered 2xx.
    samples_acknowledged: u64,
    /// Samples of requests refused with a status not worth retrying (dropped, as Prometheus does).
    samples_refused: u64,
    /// Samples of requests still failing after every retry.
    samples_given_up: u64,
    /// Samples never sent because the run ran out of time.
    samples_unsent: u64,
    /// From the first request until the last answer.
    wall_s: f64,
    acknowledged_samples_per_s: f64,
    /// Time connections spent held back to keep the data in time order, summed over connections.
    order_wait_s: f64,
    /// Latency of acknowledged attempts, in milliseconds.
    latency_ms: Summary,
    /// Server memory right after the last answer.
    server: Option<ProcessMemory>,
    caught_up: Option<CaughtUp>,
    stored: Option<Stored>,
    /// Why `stored` is missing though `--query-url` was given.
    stored_error: Option<String>,
}

/// What the server holds at the end of the data, by PromQL.
#[derive(Debug, Serialize)]
struct Stored {
    /// Evaluation time of the queries: the end of the data, Unix seconds.
    time_s: f64,
    /// [`STORED_SERIES_QUERY`]: series with a sample in the 5 minutes before the end.
    series: f64,
    /// [`STORED_SAMPLES_QUERY`]: samples of `node_cpu_seconds_total` in the last 10 minutes of the data.
    cpu_samples_last_10m: f64,
    /// Whether two readings agreed, on more than no series, before the wait for them ended.
    settled: bool,
}

/// How long the server took to consume everything it acknowledged.
#[derive(Debug, Serialize)]
struct CaughtUp {
    /// Whether it caught up before the wait timed out.
    complete: bool,
    /// From the first request until caught up (or the wait gave up).
    after_s: f64,
    /// Acknowledged samples / `after_s`.
    samples_per_s: f64,
    /// Counted by the metric store during the run: appended; equal to the stored sample or dropped
    /// by a dedup interval; refused (too old, bad).
    tsdb_samples_appended: f64,
    tsdb_samples_unchanged: f64,
    tsdb_samples_rejected: f64,
    /// Dropped by the gateway as samples of an HA group's replica not elected.
    ha_dropped_samples: f64,
    /// Largest consumer lag of the `tsdb` group at the last look, in records.
    tsdb_lag_records_max: f64,
    /// Server memory once caught up.
    server: Option<ProcessMemory>,
}

/// Runs the benchmark and prints its report.
pub fn run(args: RemoteWriteArgs) -> anyhow::Result<()> {
    validate(&args)?;
    if let Some(pid) = args.server_pid {
        // Fail before the long generation, not after it, when the pid is wrong.
        read_memory(pid).with_context(|| format!("cannot read the memory of server pid {pid}"))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    let baseline = match &args.wait_url {
        Some(url) => Some(
            runtime
                .block_on(read_store_progress(&metrics_client()?, url))
                .with_context(|| format!("cannot read the server's metrics at {url} (needed for --wait-url)"))?,
        ),
        None => None,
    };
    let fleet = Fleet::new(FleetConfig {
        seed: args.seed,
        hosts: args.hosts,
        interval_ms: i64::try_from(args.interval_s * 1000).context("interval-s is too large")?,
        jitter_share: args.jitter_share,
    })?;
    eprintln!(
        "remote-write: generating {} h of {} hosts x {} series every {} s ...",
        args.hours,
        args.hosts,
        fleet.series_per_host(),
        args.interval_s
    );
    let encoded = encode(fleet, &args)?;
    eprintln!(
        "remote-write: {} samples in {} requests ({:.1} MB on the wire) encoded in {:.1} s; sending to {} ...",
        encoded.samples,
        encoded.shards.iter().map(Vec::len).sum::<usize>(),
        encoded.wire_bytes as f64 / 1e6,
        encoded.seconds,
        args.url
    );
    let report = runtime.block_on(measure(&args, encoded, baseline))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_summary(&report);
    }
    Ok(())
}

fn validate(args: &RemoteWriteArgs) -> anyhow::Result<()> {
    crate::args::check_url(&args.url)?;
    for url in [&args.wait_url, &args.query_url].into_iter().flatten() {
        crate::args::check_url(url)?;
    }
    ensure!(args.hosts >= 1, "hosts must be at least 1, got {}", args.hosts);
    ensure!(args.ha_replicas <= 16, "ha-replicas must be at most 16, got {}", args.ha_replicas);
    ensure!(args.hours.is_finite() && args.hours > 0.0, "hours must be more than 0, got {}", args.hours);
    ensure!(args.hours <= 24.0 * 7.0, "hours must be at most a week (168), got {}", args.hours);
    ensure!(args.interval_s >= 1, "interval-s must be at least 1, got {}", args.interval_s);
    ensure!(args.connections >= 1, "connections must be at least 1, got {}", args.connections);
    ensure!(args.samples_per_request >= 1, "samples-per-request must be at least 1, got {}", args.samples_per_request);
    ensure!(args.timeout_ms >= 1, "timeout-ms must be at least 1, got {}", args.timeout_ms);
    ensure!(args.send_duration_max_s >= 1, "send-duration-max-s must be at least 1, got {}", args.send_duration_max_s);
    Ok(())
}

/// Generates the fleet's samples of the past `hours` and encodes them into requests, compressing on
/// every core while the fleet is generated.
fn encode(mut fleet: Fleet, args: &RemoteWriteArgs) -> anyhow::Result<Encoded> {
    let started = std::time::Instant::now();
    let end_ms = args.end_ms.unwrap_or_else(now_ms);
    let start_ms = end_ms - (args.hours * 3_600_000.0) as i64;
    let per_host = fleet.series_per_host();
    let hosts = fleet.config().hosts;
    let senders = senders(args);
    // Per sender, the encoded labels of every series; a series goes to the same shard of each.
    let mut series_labels = vec![Vec::with_capacity(hosts as usize * per_host); senders];
    let mut series_shard = Vec::with_capacity(hosts as usize * per_host);
    for host in 0..hosts {
        for series in 0..per_host {
            let labels = fleet.labels(host, series);
            series_shard.push((fnv1a(&encode_labels(&labels)) % args.connections as u64) as usize);
            for (sender, encoded) in series_labels.iter_mut().enumerate() {
                encoded.push(encode_labels(&sender_labels(args, sender, labels.clone())));
            }
        }
    }

    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let (sender, receiver) = mpsc::sync_channel::<RawRequest>(workers * 4);
    let receiver = Mutex::new(receiver);
    let per_request = args.samples_per_request as u64;
    let (compressed, protobuf_bytes, samples) = std::thread::scope(|scope| {
        let compressors: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    let mut encoder = snap::raw::Encoder::new();
                    loop {
                        // The lock is held only to take the next request, not while compressing it.
                        let next = receiver.lock().expect("no compressor panics holding the lock").recv();
                        let Ok(raw) = next else { break };
                        let body = encoder.compress_vec(&raw.protobuf).expect("snappy compresses any input");
                        let request = Request { body: Bytes::from(body), samples: raw.samples, first_ms: raw.first_ms };
                        done.push((raw.shard, raw.sequence, request));
                    }
                    done
                })
            })
            .collect();

        let mut pending: Vec<RawRequest> = (0..senders * args.connections)
            .map(|shard| RawRequest { shard, sequence: 0, protobuf: Vec::new(), samples: 0, first_ms: 0 })
            .collect();
        let mut protobuf_bytes = 0u64;
        let mut samples = 0u64;
        let mut send = |request: &mut RawRequest| {
            let next = RawRequest {
                shard: request.shard,
                sequence: request.sequence + 1,
                protobuf: Vec::with_capacity(request.protobuf.capacity()),
                samples: 0,
                first_ms: 0,
            };
            let full = std::mem::replace(request, next);
            protobuf_bytes += full.protobuf.len() as u64;
            samples += full.samples;
            sender.send(full).expect("compressors run until the sender is dropped");
        };
        let scrapes: Vec<(u32, i64)> = fleet.scrapes(start_ms, end_ms).collect();
        for (host, timestamp_ms) in scrapes {
            let first_series = host as usize * per_host;
            fleet.scrape(host, timestamp_ms, |series, value| {
                let global = first_series + series;
                for (sender, labels) in series_labels.iter().enumerate() {
                    let request = &mut pending[sender * args.connections + series_shard[global]];
                    if request.samples == 0 {
                        request.first_ms = timestamp_ms;
                    }
                    encode_sample(&mut request.protobuf, &labels[global], value, timestamp_ms);
                    request.samples += 1;
                    if request.samples == per_request {
                        send(request);
                    }
                }
            });
        }
        for request in &mut pending {
            if request.samples > 0 {
                send(request);
            }
        }
        drop(sender);
        let compressed: Vec<(usize, usize, Request)> = compressors
            .into_iter()
            .flat_map(|compressor| compressor.join().expect("a compressor thread panicked"))
            .collect();
        (compressed, protobuf_bytes, samples)
    });

    let mut shards: Vec<Vec<(usize, Request)>> = (0..senders * args.connections).map(|_| Vec::new()).collect();
    for (shard, sequence, request) in compressed {
        shards[shard].push((sequence, request));
    }
    let shards: Vec<Vec<Request>> = shards
        .into_iter()
        .map(|mut requests| {
            requests.sort_by_key(|(sequence, _)| *sequence);
            requests.into_iter().map(|(_, request)| request).collect()
        })
        .collect();
    let wire_bytes = shards.iter().flatten().map(|request| request.body.len() as u64).sum();
    Ok(Encoded {
        shards,
        series: fleet.series(),
        samples,
        protobuf_bytes,
        wire_bytes,
        start_ms,
        end_ms,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Senders of the workload: one, or each replica of an HA group.
fn senders(args: &RemoteWriteArgs) -> usize {
    args.ha_replicas.max(1) as usize
}

/// A series' labels as sender `sender` sends them: with the HA labels of its replica when the
/// workload is sent by an HA group, sorted by name.
fn sender_labels(args: &RemoteWriteArgs, sender: usize, mut labels: Labels) -> Labels {
    if args.ha_replicas > 0 {
        labels.push((HA_CLUSTER_LABEL.to_owned(), HA_CLUSTER.to_owned()));
        labels.push((HA_REPLICA_LABEL.to_owned(), format!("replica-{}", sender + 1)));
        labels.sort();
    }
    labels
}

/// The `labels` fields of a `TimeSeries`: one `Label` message per pair.
fn encode_labels(labels: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in labels {
        let field_len = |text: &str| 1 + prost::encoding::encoded_len_varint(text.len() as u64) + text.len();
        out.push(0x0a);
        prost::encoding::encode_varint((field_len(name) + field_len(value)) as u64, &mut out);
        for (tag, text) in [(0x0a, name), (0x12, value)] {
            out.push(tag);
            prost::encoding::encode_varint(text.len() as u64, &mut out);
            out.extend_from_slice(text.as_bytes());
        }
    }
    out
}

/// Appends one `WriteRequest.timeseries` entry with one sample. Encoded by hand because building
/// prost messages would allocate every label string of every sample again; it skips zero values as
/// protobuf 3 encoders do.
fn encode_sample(out: &mut Vec<u8>, labels: &[u8], value: f64, timestamp_ms: i64) {
    let mut sample = [0u8; 20];
    let mut sample_len = 0;
    if value != 0.0 {
        sample[0] = 0x09;
        sample[1..9].copy_from_slice(&value.to_le_bytes());
        sample_len = 9;
    }
    if timestamp_ms != 0 {
        sample[sample_len] = 0x10;
        let mut varint = &mut sample[sample_len + 1..];
        let before = varint.len();
        prost::encoding::encode_varint(timestamp_ms as u64, &mut varint);
        sample_len += 1 + before - varint.len();
    }
    let series_len = labels.len() + 1 + prost::encoding::encoded_len_varint(sample_len as u64) + sample_len;
    out.push(0x0a);
    prost::encoding::encode_varint(series_len as u64, out);
    out.extend_from_slice(labels);
    out.push(0x12);
    prost::encoding::encode_varint(sample_len as u64, out);
    out.extend_from_slice(&sample[..sample_len]);
}

/// FNV-1a, to spread series over shards the same way on every run and machine.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

async fn measure(args: &RemoteWriteArgs, encoded: Encoded, baseline: Option<StoreProgress>) -> anyhow::Result<Report> {
    let clients = (0..encoded.shards.len()).map(|_| http_client(args)).collect::<anyhow::Result<Vec<_>>>()?;
    let requests_generated = encoded.shards.iter().map(Vec::len).sum::<usize>() as u64;
    let start = Instant::now();
    let plan = Arc::new(Plan {
        url: args.url.clone(),
        progress: encoded.shards.iter().map(|_| AtomicI64::new(i64::MIN)).collect(),
        shards: encoded.shards,
        progressed: Notify::new(),
        order_window_ms: i64::try_from(args.order_window_s.saturating_mul(1000)).unwrap_or(i64::MAX),
        retries_max: args.retries_max,
        give_up: start + Duration::from_secs(args.send_duration_max_s),
    });
    let connections: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(shard, client)| tokio::spawn(connection(Arc::clone(&plan), shard, client)))
        .collect();
    let mut stats = ConnectionStats::default();
    for connection in connections {
        stats.merge(connection.await.context("a connection task failed")?);
    }
    let wall_s = stats.last_answer.map_or(0.0, |last| last.duration_since(start).as_secs_f64()).max(f64::EPSILON);
    let server_memory = || -> anyhow::Result<Option<ProcessMemory>> {
        args.server_pid
            .map(|pid| read_memory(pid).with_context(|| format!("cannot read the memory of server pid {pid}")))
            .transpose()
    };
    let server = server_memory()?;
    eprintln!(
        "remote-write: {} of {} samples acknowledged in {wall_s:.1} s ({:.0} samples/s)",
        stats.samples_acknowledged,
        encoded.samples,
        stats.samples_acknowledged as f64 / wall_s
    );

    let caught_up = match (&args.wait_url, baseline) {
        (Some(url), Some(baseline)) => {
            let deadline = Instant::now() + Duration::from_secs(args.wait_timeout_s);
            let (complete, progress) = wait_caught_up(url, &baseline, stats.samples_acknowledged, deadline).await?;
            let after_s = start.elapsed().as_secs_f64();
            Some(CaughtUp {
                complete,
                after_s,
                samples_per_s: stats.samples_acknowledged as f64 / after_s,
                tsdb_samples_appended: progress.appended - baseline.appended,
                tsdb_samples_unchanged: progress.unchanged - baseline.unchanged,
                tsdb_samples_rejected: progress.rejected - baseline.rejected,
                ha_dropped_samples: progress.ha_dropped - baseline.ha_dropped,
                tsdb_lag_records_max: progress.lag_max,
                server: server_memory()?,
            })
        }
        _ => None,
    };

    // A server that refuses the count (a limit on series per query) still gets its other figures.
    let (stored, stored_error) = match &args.query_url {
        Some(url) => match read_stored(args, url, encoded.end_ms).await {
            Ok(stored) => (Some(stored), None),
            Err(error) => {
                eprintln!("remote-write: cannot count what the server stores: {error:#}");
                (None, Some(format!("{error:#}")))
            }
        },
        None => (None, None),
    };

    let samples = encoded.samples.max(1) as f64;
    Ok(Report {
        label: args.label.clone(),
        url: args.url.clone(),
        hosts: args.hosts,
        series: encoded.series,
        ha_replicas: args.ha_replicas,
        hours: args.hours,
        interval_s: args.interval_s,
        jitter_share: args.jitter_share,
        data_start_ms: encoded.start_ms,
        data_end_ms: encoded.end_ms,
        samples_generated: encoded.samples,
        requests_generated,
        protobuf_bytes_per_sample: encoded.protobuf_bytes as f64 / samples,
        wire_bytes_per_sample: encoded.wire_bytes as f64 / samples,
        encode_s: encoded.seconds,
        connections: args.connections,
        samples_per_request: args.samples_per_request,
        order_window_s: args.order_window_s,
        requests_sent: stats.requests_sent,
        attempts_by_status: stats.attempts_by_status,
        retries: stats.retries,
        error_bodies: stats.error_bodies,
        samples_sent: stats.samples_sent,
        samples_acknowledged: stats.samples_acknowledged,
        samples_refused: stats.samples_refused,
        samples_given_up: stats.samples_given_up,
        samples_unsent: stats.samples_unsent,
        wall_s,
        acknowledged_samples_per_s: stats.samples_acknowledged as f64 / wall_s,
        order_wait_s: stats.order_wait_s,
        latency_ms: Summary::of(stats.latencies_ms),
        server,
        caught_up,
        stored,
        stored_error,
    })
}

/// Series and samples a server holds at the end of the data, by PromQL through its query API.
async fn read_stored(args: &RemoteWriteArgs, url: &str, end_ms: i64) -> anyhow::Result<Stored> {
    // Counting a million series takes a server seconds.
    let client = reader_client(STORED_QUERY_TIMEOUT)?;
    let time = format!("{:.3}", end_ms as f64 / 1000.0);
    let auth = args.bearer_token.as_deref();
    let query = |promql: &'static str| {
        let client = &client;
        let time = &time;
        async move {
            let mut request = client.get(url).query(&[("query", promql), ("time", time.as_str())]);
            if let Some(token) = auth {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.with_context(|| format!("GET {url} {promql} failed"))?;
            let status = response.status();
            let body: serde_json::Value =
                response.json().await.with_context(|| format!("GET {url} {promql}: the answer is not JSON"))?;
            ensure!(status.is_success(), "GET {url} {promql} answered {status}: {body}");
            let value = body["data"]["result"][0]["value"][1].as_str().unwrap_or("0");
            value.parse::<f64>().with_context(|| format!("GET {url} {promql}: {value} is not a number"))
        }
    };
    // VictoriaMetrics answers queries only up to 30 s before now (`-search.latencyOffset`): wait
    // until the end of the data is that far behind.
    let behind_ms = now_ms() - end_ms;
    if behind_ms < STORED_LATENCY_OFFSET_MS {
        tokio::time::sleep(Duration::from_millis((STORED_LATENCY_OFFSET_MS - behind_ms) as u64)).await;
    }
    // A server may make samples queryable a while after acknowledging them (VictoriaMetrics'
    // in-memory buffers and index): read until two readings STORED_SETTLE apart agree on some.
    let deadline = Instant::now() + STORED_WAIT_MAX;
    let mut last = None;
    loop {
        let reading = (query(STORED_SERIES_QUERY).await?, query(STORED_SAMPLES_QUERY).await?);
        let settled = last == Some(reading) && reading.0 > 0.0;
        if settled || Instant::now() >= deadline {
            return Ok(Stored {
                time_s: end_ms as f64 / 1000.0,
                series: reading.0,
                cpu_samples_last_10m: reading.1,
                settled,
            });
        }
        last = Some(reading);
        tokio::time::sleep(STORED_SETTLE).await;
    }
}

/// One client per connection, so that each shard really has its own TCP connection.
fn http_client(args: &RemoteWriteArgs) -> anyhow::Result<reqwest::Client> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
    headers.insert("X-Prometheus-Remote-Write-Version", HeaderValue::from_static("0.1.0"));
    headers.insert(USER_AGENT, HeaderValue::from_static("strata-bench-remote-write"));
    crate::args::http_client(headers, args.bearer_token.as_deref(), Duration::from_millis(args.timeout_ms), true)
}

/// Sends one shard's requests in order, each once it is within the order window of every shard.
async fn connection(plan: Arc<Plan>, shard: usize, client: reqwest::Client) -> ConnectionStats {
    let mut stats = ConnectionStats::default();
    for (index, request) in plan.shards[shard].iter().enumerate() {
        plan.progress[shard].store(request.first_ms, Ordering::Release);
        plan.progressed.notify_waiters();
        let held = Instant::now();
        if !wait_for_order(&plan, request.first_ms).await {
            stats.samples_unsent += plan.shards[shard][index..].iter().map(|request| request.samples).sum::<u64>();
            break;
        }
        stats.order_wait_s += held.elapsed().as_secs_f64();
        stats.requests_sent += 1;
        stats.samples_sent += request.samples;
        send_with_retries(&plan, &client, request, &mut stats).await;
    }
    plan.progress[shard].store(i64::MAX, Ordering::Release);
    plan.progressed.notify_waiters();
    stats
}

/// Waits until no shard is further behind than the order window allows for a request starting at
/// `first_ms`. The shard furthest behind never waits, so every shard ends up sending. False when the
/// run ran out of time.
async fn wait_for_order(plan: &Plan, first_ms: i64) -> bool {
    let floor = first_ms.saturating_sub(plan.order_window_ms);
    loop {
        let progressed = plan.progressed.notified();
        tokio::pin!(progressed);
        // Registered before looking, so a wake-up between the look and the wait is not lost.
        progressed.as_mut().enable();
        if plan.progress.iter().all(|progress| progress.load(Ordering::Acquire) >= floor) {
            return true;
        }
        if Instant::now() >= plan.give_up {
            return false;
        }
        tokio::select! {
            () = progressed => {}
            () = tokio::time::sleep(ORDER_POLL) => {}
        }
    }
}

async fn send_with_retries(plan: &Plan, client: &reqwest::Client, request: &Request, stats: &mut ConnectionStats) {
    let mut pause = RETRY_PAUSE_MIN;
    for attempt in 0..=plan.retries_max {
        let sent = Instant::now();
        let outcome = send(client, &plan.url, request).await;
        let answered = Instant::now();
        stats.last_answer = Some(answered);
        let retry_after = match outcome {
            Attempt::Answered { status, retry_after, body } => {
                *stats.attempts_by_status.entry(status.to_string()).or_default() += 1;
                if (200..300).contains(&status) {
                    stats.samples_acknowledged += request.samples;
                    stats.latencies_ms.push(answered.duration_since(sent).as_secs_f64() * 1000.0);
                    return;
                }
                if stats.error_bodies.len() < ERROR_BODIES_MAX {
                    let body: String = String::from_utf8_lossy(&body).chars().take(ERROR_BODY_CHARS_MAX).collect();
                    stats.error_bodies.push(ErrorBody { status: status.to_string(), body });
                }
                if status != 429 && status < 500 {
                    stats.samples_refused += request.samples;
                    return;
                }
                retry_after
            }
            Attempt::Transport(cause) => {
                *stats.attempts_by_status.entry(format!("transport_{cause}")).or_default() += 1;
                None
            }
        };
        if attempt == plan.retries_max || answered >= plan.give_up {
            break;
        }
        stats.retries += 1;
        tokio::time::sleep(retry_after.unwrap_or(pause).min(RETRY_PAUSE_MAX)).await;
        pause = (pause * 2).min(RETRY_PAUSE_MAX);
    }
    stats.samples_given_up += request.samples;
}

async fn send(client: &reqwest::Client, url: &str, request: &Request) -> Attempt {
    let response = match client.post(url).body(request.body.clone()).send().await {
        Ok(response) => response,
        Err(error) => return Attempt::Transport(transport_cause(&error)),
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    match response.bytes().await {
        Ok(body) => Attempt::Answered { status, retry_after, body },
        Err(error) => Attempt::Transport(transport_cause(&error)),
    }
}

fn transport_cause(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else {
        "error"
    }
}

/// Label pairs of a sample, in the order they appear.
type Labels = Vec<(String, String)>;

/// How far Strata's metric store has got, from its `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct StoreProgress {
    appended: f64,
    /// Samples equal to the stored one at their timestamp, or dropped by a dedup interval.
    unchanged: f64,
    rejected: f64,
    /// Samples of an HA group's replicas not elected, acknowledged and dropped by the gateway.
    ha_dropped: f64,
    /// Partitions of the `tsdb` consumer group seen.
    lag_partitions: usize,
    lag_max: f64,
}

impl StoreProgress {
    /// Samples the server is done with: stored, found already stored, refused or dropped.
    fn consumed(&self) -> f64 {
        self.appended + self.unchanged + self.rejected + self.ha_dropped
    }
}

/// A client for reading the server's `/metrics` and query API, each request allowed `timeout`.
fn reader_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder().timeout(timeout).build().context("failed to build the http client")
}

fn metrics_client() -> anyhow::Result<reqwest::Client> {
    reader_client(METRICS_READ_TIMEOUT)
}

async fn read_store_progress(client: &reqwest::Client, url: &str) -> anyhow::Result<StoreProgress> {
    let response = client.get(url).send().await.with_context(|| format!("GET {url} failed"))?;
    let status = response.status();
    ensure!(status.is_success(), "GET {url} answered {status}");
    let text = response.text().await.with_context(|| format!("GET {url} failed"))?;
    Ok(store_progress(&text))
}

fn store_progress(exposition: &str) -> StoreProgress {
    let mut progress = StoreProgress {
        appended: 0.0,
        unchanged: 0.0,
        rejected: 0.0,
        ha_dropped: 0.0,
        lag_partitions: 0,
        lag_max: 0.0,
    };
    for (name, labels, value) in exposition.lines().filter_map(parse_sample_line) {
        match name {
            "strata_tsdb_samples_appended_total" => progress.appended += value,
            "strata_tsdb_samples_unchanged_total" | "strata_tsdb_samples_deduplicated_total" => {
                progress.unchanged += value;
            }
            "strata_tsdb_samples_rejected_total" => progress.rejected += value,
            "strata_ingest_ha_dropped_samples_total" => progress.ha_dropped += value,
            "strata_consumer_lag_records" if labels.iter().any(|(k, v)| k == "group" && v == "tsdb") => {
                progress.lag_partitions += 1;
                progress.lag_max = progress.lag_max.max(value);
            }
            _ => {}
        }
    }
    progress
}

/// Polls `url` until the metric store has consumed `acknowledged` samples more than at `baseline`
/// and no partition lags; gives up at `deadline`. Returns whether it caught up and the last reading.
async fn wait_caught_up(
    url: &str,
    baseline: &StoreProgress,
    acknowledged: u64,
    deadline: Instant,
) -> anyhow::Result<(bool, StoreProgress)> {
    let client = metrics_client()?;
    let mut last = *baseline;
    let mut last_print = Instant::now();
    let mut failures = 0;
    loop {
        match read_store_progress(&client, url).await {
            Ok(progress) => {
                failures = 0;
                last = progress;
                let consumed = progress.consumed() - baseline.consumed();
                if progress.lag_partitions > 0 && progress.lag_max == 0.0 && consumed >= acknowledged as f64 {
                    return Ok((true, progress));
                }
                if last_print.elapsed() >= Duration::from_secs(10) {
                    eprintln!(
                        "remote-write: waiting for the store: {consumed:.0} of {acknowledged} samples consumed, lag up to {:.0} records",
                        progress.lag_max
                    );
                    last_print = Instant::now();
                }
            }
            Err(error) => {
                failures += 1;
                eprintln!("remote-write: {error:#}");
                if failures >= CATCH_UP_FAILURES_MAX {
                    eprintln!(
                        "remote-write: gave up waiting: the server's metrics did not answer {failures} times in a row"
                    );
                    return Ok((false, last));
                }
            }
        }
        if Instant::now() >= deadline {
            eprintln!("remote-write: the store did not catch up before the wait timed out");
            return Ok((false, last));
        }
        tokio::time::sleep(CATCH_UP_POLL).await;
    }
}

/// One sample line of the Prometheus text format: name, labels and value. `None` for comments,
/// blank lines and lines it cannot read.
fn parse_sample_line(line: &str) -> Option<(&str, Labels, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut label_name = String::new();
        let close = loop {
            let (at, c) = chars.next()?;
            match c {
                '}' => break at,
                ',' | ' ' => {}
                '=' => {
                    let (_, quote) = chars.next()?;
                    if quote != '"' {
                        return None;
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.push((std::mem::take(&mut label_name), value));
                }
                other => label_name.push(other),
            }
        };
        rest = &inner[close + 1..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some((name, labels, value))
}

fn print_summary(report: &Report) {
    let statuses: Vec<String> =
        report.attempts_by_status.iter().map(|(status, count)| format!("{status}={count}")).collect();
    let latency = &report.latency_ms;
    println!("strata-bench remote-write: {} ({})", report.label, report.url);
    println!(
        "  workload      {} hosts, {} series{}, {} h every {} s: {} samples in {} requests",
        report.hosts,
        report.series,
        if report.ha_replicas > 0 {
            format!(" sent by each of {} HA replicas", report.ha_replicas)
        } else {
            String::new()
        },
        report.hours,
        report.interval_s,
        report.samples_generated,
        report.requests_generated
    );
    println!(
        "  encoding      {:.1} s before the clock; {:.1} protobuf bytes and {:.2} snappy bytes per sample",
        report.encode_s, report.protobuf_bytes_per_sample, report.wire_bytes_per_sample
    );
    println!(
        "  load          {} connections, {} samples per request, order window {} s (held back {:.1} s in all)",
        report.connections, report.samples_per_request, report.order_window_s, report.order_wait_s
    );
    println!(
        "  attempts      {} requests sent, {} retries: {}",
        report.requests_sent,
        report.retries,
        statuses.join(" ")
    );
    for error in &report.error_bodies {
        println!("  error         {}: {}", error.status, error.body);
    }
    println!(
        "  samples       {} sent, {} acknowledged, {} refused, {} given up, {} unsent",
        report.samples_sent,
        report.samples_acknowledged,
        report.samples_refused,
        report.samples_given_up,
        report.samples_unsent
    );
    println!(
        "  acknowledged  {:.0} samples/s over {:.1} s; latency ms p50 {:.1} p99 {:.1} max {:.1}",
        report.acknowledged_samples_per_s, report.wall_s, latency.p50, latency.p99, latency.max
    );
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    if let Some(server) = &report.server {
        println!("  server rss    {:.1} MiB now, {:.1} MiB peak", mib(server.rss_bytes), mib(server.rss_peak_bytes));
    }
    if let Some(caught_up) = &report.caught_up {
        println!(
            "  caught up     {} after {:.1} s: {:.0} samples/s end to end ({:.0} appended, {:.0} unchanged, \
             {:.0} rejected by the store, {:.0} dropped as an HA replica's)",
            if caught_up.complete { "yes" } else { "NO" },
            caught_up.after_s,
            caught_up.samples_per_s,
            caught_up.tsdb_samples_appended,
            caught_up.tsdb_samples_unchanged,
            caught_up.tsdb_samples_rejected,
            caught_up.ha_dropped_samples
        );
        if let Some(server) = &caught_up.server {
            println!(
                "  server rss    {:.1} MiB now, {:.1} MiB peak",
                mib(server.rss_bytes),
                mib(server.rss_peak_bytes)
            );
        }
    }
    if let Some(stored) = &report.stored {
        println!(
            "  stored        {:.0} series at the end of the data, {:.0} samples of node_cpu_seconds_total in its last \
             10 minutes{}",
            stored.series,
            stored.cpu_samples_last_10m,
            if stored.settled { "" } else { " (still changing when the wait for it ended)" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The server's own remote write messages: what the bench writes by hand must be what Strata
    // decodes.
    use strata_gateway::remote_write::proto;

    fn series(labels: &[(&str, &str)], value: f64, timestamp: i64) -> proto::TimeSeries {
        proto::TimeSeries {
            labels: labels
                .iter()
                .map(|(name, value)| proto::Label { name: (*name).to_owned(), value: (*value).to_owned() })
                .collect(),
            samples: vec![proto::Sample { value, timestamp }],
        }
    }

    #[test]
    fn hand_encoding_matches_prost_byte_for_byte() {
        let long_value = "x".repeat(300);
        type Case<'a> = (Vec<(&'a str, &'a str)>, f64, i64);
        let cases: Vec<Case> = vec![
            (vec![("__name__", "up"), ("instance", "host-001:9100"), ("job", "node")], 1.0, 1_700_000_000_123),
            (vec![("__name__", "node_load1")], 0.0, 1_700_000_000_000),
            (vec![("__name__", "x"), ("long", long_value.as_str())], -2.5e300, 0),
            (vec![("__name__", "nan")], f64::NAN, -1),
            (vec![("__name__", "inf")], f64::INFINITY, i64::MAX),
        ];
        let mut ours = Vec::new();
        let mut expected = proto::WriteRequest::default();
        for (labels, value, timestamp) in &cases {
            let owned: Vec<(String, String)> =
                labels.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
            encode_sample(&mut ours, &encode_labels(&owned), *value, *timestamp);
            expected.timeseries.push(series(labels, *value, *timestamp));
        }
        assert_eq!(ours, prost::Message::encode_to_vec(&expected));
        let decoded = <proto::WriteRequest as prost::Message>::decode(&ours[..]).unwrap();
        assert_eq!(decoded.timeseries.len(), cases.len());
        assert!(decoded.timeseries[3].samples[0].value.is_nan());
    }

    fn args(hosts: u32, hours: f64, connections: usize) -> RemoteWriteArgs {
        RemoteWriteArgs {
            url: "http://127.0.0.1:1/api/v1/write".to_owned(),
            bearer_token: None,
            label: "test".to_owned(),
            hosts,
            hours,
            end_ms: None,
            ha_replicas: 0,
            interval_s: 15,
            jitter_share: 0.25,
            seed: 1,
            connections,
            samples_per_request: 2000,
            order_window_s: 60,
            timeout_ms: 1000,
            retries_max: 0,
            send_duration_max_s: 10,
            wait_url: None,
            wait_timeout_s: 1,
            query_url: None,
            server_pid: None,
            json: true,
        }
    }

    #[test]
    fn requests_hold_every_sample_once_with_each_series_in_time_order() {
        let args = args(3, 0.25, 4);
        let fleet = Fleet::new(FleetConfig { seed: 1, hosts: 3, interval_ms: 15_000, jitter_share: 0.25 }).unwrap();
        let per_host = fleet.series_per_host();
        let encoded = encode(fleet, &args).unwrap();
        // 3 hosts scraped every 15 s for 15 minutes: 60 scrapes each.
        assert_eq!(encoded.samples, 3 * 60 * per_host as u64);
        let mut seen: std::collections::HashMap<Vec<(String, String)>, (usize, i64)> = Default::default();
        let mut samples = 0;
        for (shard, requests) in encoded.shards.iter().enumerate() {
            let mut previous_first = i64::MIN;
            for request in requests {
                let protobuf = snap::raw::Decoder::new().decompress_vec(&request.body).unwrap();
                let decoded = <proto::WriteRequest as prost::Message>::decode(&protobuf[..]).unwrap();
                assert!(decoded.timeseries.len() <= 2000);
                assert_eq!(decoded.timeseries.len() as u64, request.samples);
                assert_eq!(decoded.timeseries[0].samples[0].timestamp, request.first_ms);
                assert!(request.first_ms >= previous_first, "requests of a shard are in time order");
                previous_first = request.first_ms;
                for series in decoded.timeseries {
                    samples += 1;
                    let labels: Vec<(String, String)> =
                        series.labels.into_iter().map(|label| (label.name, label.value)).collect();
                    assert!(labels.is_sorted());
                    let timestamp = series.samples[0].timestamp;
                    assert!((encoded.start_ms..encoded.end_ms).contains(&timestamp));
                    if let Some((their_shard, last)) = seen.insert(labels, (shard, timestamp)) {
                        assert_eq!(their_shard, shard, "a series stays on one shard");
                        assert!(timestamp > last, "a series' samples are in time order");
                    }
                }
            }
        }
        assert_eq!(samples, encoded.samples);
        assert_eq!(seen.len(), 3 * per_host);
        assert!(encoded.shards.iter().all(|requests| !requests.is_empty()), "series spread over every shard");
    }

    /// One sample as sent: its series' labels, timestamp and value bits.
    type SentSample = (Labels, i64, u64);

    /// Every sample of some requests, in the order sent.
    fn decoded_samples(requests: &[Request]) -> Vec<SentSample> {
        let mut out = Vec::new();
        for request in requests {
            let protobuf = snap::raw::Decoder::new().decompress_vec(&request.body).unwrap();
            let decoded = <proto::WriteRequest as prost::Message>::decode(&protobuf[..]).unwrap();
            for series in decoded.timeseries {
                let labels = series.labels.into_iter().map(|label| (label.name, label.value)).collect();
                out.push((labels, series.samples[0].timestamp, series.samples[0].value.to_bits()));
            }
        }
        out
    }

    #[test]
    fn each_replica_of_an_ha_group_sends_the_single_senders_samples_with_its_labels() {
        let fleet = || Fleet::new(FleetConfig { seed: 1, hosts: 2, interval_ms: 15_000, jitter_share: 0.25 }).unwrap();
        let end_ms = 1_700_000_000_000;
        let mut single = args(2, 0.1, 3);
        single.end_ms = Some(end_ms);
        let mut pair = args(2, 0.1, 3);
        pair.end_ms = Some(end_ms);
        pair.ha_replicas = 2;
        let one = encode(fleet(), &single).unwrap();
        assert_eq!(one.end_ms, end_ms, "the end is the one asked for");
        let again = encode(fleet(), &single).unwrap();
        let two = encode(fleet(), &pair).unwrap();
        assert_eq!((one.shards.len(), two.shards.len()), (3, 6), "each replica has its own connections");
        assert_eq!(two.samples, 2 * one.samples);

        let sent_once: Vec<_> = one.shards.iter().flat_map(|shard| decoded_samples(shard)).collect();
        let sent_again: Vec<_> = again.shards.iter().flat_map(|shard| decoded_samples(shard)).collect();
        assert_eq!(sent_once, sent_again, "the same end and seed send the very same samples");
        for replica in 0..2 {
            let shards = &two.shards[replica * 3..(replica + 1) * 3];
            let replica_value = format!("replica-{}", replica + 1);
            let mut without_ha_labels = Vec::new();
            for (shard, requests) in shards.iter().enumerate() {
                for (mut labels, timestamp, value) in decoded_samples(requests) {
                    assert!(labels.is_sorted());
                    let before = labels.len();
                    labels.retain(|pair| {
                        *pair != ("cluster".to_owned(), "strata-bench".to_owned())
                            && *pair != ("__replica__".to_owned(), replica_value.clone())
                    });
                    assert_eq!(labels.len() + 2, before, "both HA labels of replica {replica_value}");
                    without_ha_labels.push((shard, labels, timestamp, value));
                }
            }
            let single_sender: Vec<_> = one
                .shards
                .iter()
                .enumerate()
                .flat_map(|(shard, requests)| {
                    decoded_samples(requests).into_iter().map(move |(l, t, v)| (shard, l, t, v))
                })
                .collect();
            assert_eq!(without_ha_labels, single_sender, "a replica sends what one sender sends, on the same shards");
        }
    }

    #[test]
    fn reads_the_store_progress_from_strata_metrics() {
        let text = r#"# TYPE strata_tsdb_samples_appended_total counter
strata_tsdb_samples_appended_total{tenant="default"} 1500
strata_tsdb_samples_appended_total{tenant="other"} 500
strata_tsdb_samples_rejected_total{tenant="default",reason="out_of_order"} 7
strata_tsdb_samples_unchanged_total{tenant="default"} 20
strata_tsdb_samples_deduplicated_total{tenant="default"} 3
strata_ingest_ha_dropped_samples_total{tenant="default"} 40
strata_consumer_lag_records{group="tsdb",topic="metrics",partition="0"} 0
strata_consumer_lag_records{group="tsdb",topic="metrics",partition="1"} 12
strata_consumer_lag_records{group="search",topic="logs",partition="0"} 99
strata_build_info{version="a \"quoted\\ value",commit="x"} 1
"#;
        assert_eq!(
            store_progress(text),
            StoreProgress {
                appended: 2000.0,
                unchanged: 23.0,
                rejected: 7.0,
                ha_dropped: 40.0,
                lag_partitions: 2,
                lag_max: 12.0
            }
        );
        assert_eq!(store_progress(text).consumed(), 2070.0);
        let (name, labels, value) = parse_sample_line(r#"m{a="x,y}",b="2"} 3.5 1700000000"#).unwrap();
        assert_eq!((name, value), ("m", 3.5));
        assert_eq!(labels, vec![("a".to_owned(), "x,y}".to_owned()), ("b".to_owned(), "2".to_owned())]);
        assert_eq!(parse_sample_line("plain 4").unwrap().2, 4.0);
        assert_eq!(parse_sample_line("# HELP plain help"), None);
        assert_eq!(parse_sample_line("broken{a=1} 2"), None);
    }
}
