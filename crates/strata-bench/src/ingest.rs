//! `strata-bench ingest`: sends generated records to a server's native ingest API and reports the
//! acknowledged throughput, the answers by status and the acknowledgement latency.
//!
//! Request bodies are generated (and compressed) before the clock starts, so the measured path is only
//! sending and waiting. With `--rate`, requests are sent open-loop: request `k` is due at
//! `start + k * batch_records / rate`, and its latency counts from that due time, not from when a
//! connection became free to send it. A server that falls behind therefore shows its queueing in the
//! latency figures instead of silently slowing the load down (coordinated omission).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use strata_client::{Compression, RecordKind};
use tokio::time::Instant;

use crate::args::{CompressionArg, KindArg, WorkloadArgs, now_ms};
use crate::process::{ProcessMemory, read_memory};
use crate::workload::Workload;

/// Highest latency the histogram tells apart: one hour, in microseconds.
const LATENCY_US_MAX: u64 = 3_600_000_000;

/// Requests due within this long are sent at once rather than after a sleep, because the timer wheel
/// only has millisecond resolution; their latency counts from when they were actually sent.
const TIMER_SLACK: Duration = Duration::from_millis(1);

/// Pause of a closed-loop connection after its request could not connect.
const CONNECT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Arguments of `strata-bench ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Base URL of the server.
    #[arg(long, default_value = strata_client::DEFAULT_BASE_URL)]
    url: String,
    /// API key, sent as `Authorization: Bearer <key>`; omit for a server running with --no-auth.
    #[arg(long, env = "STRATA_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Kind of record to send.
    #[arg(long, value_enum, default_value_t = KindArg::Logs)]
    kind: KindArg,
    /// Target rate in records per second; 0 sends as fast as the connections allow (closed loop).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// How long to send for, in seconds.
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// Concurrent connections, each with at most one request in flight.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Records per request.
    #[arg(long, default_value_t = 500)]
    batch_records: usize,
    /// How requests are sent: the native NDJSON endpoint, OTLP/HTTP protobuf (`/v1/logs`,
    /// `/v1/metrics`), or OTLP/gRPC over HTTP/2 (logs and metrics only).
    #[arg(long, value_enum, default_value_t = Protocol::Native)]
    protocol: Protocol,
    /// Compression of request bodies.
    #[arg(long, value_enum, default_value_t = CompressionArg::None)]
    compression: CompressionArg,
    /// Distinct request bodies generated up front and sent in rotation.
    #[arg(long, default_value_t = 32)]
    pool_bodies: usize,
    /// Time allowed for one request, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// Pid of the server, to report its current and peak resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print one JSON object instead of a human-readable summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    workload: WorkloadArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Native,
    OtlpHttp,
    OtlpGrpc,
}

/// One pre-generated request body.
struct PoolBody {
    /// The bytes sent, compressed if asked.
    wire: Bytes,
    /// Size of the NDJSON before compression.
    ndjson_bytes: u64,
    records: u64,
}

/// Everything the connection tasks share.
struct Plan {
    url: String,
    protocol: Protocol,
    pool: Vec<PoolBody>,
    start: Instant,
    /// No request is due at or after this instant.
    end: Instant,
    /// Requests still undone by now are given up, so an overloaded server cannot stretch the run forever.
    give_up: Instant,
    /// Seconds between consecutive due times; `None` in closed loop.
    interval_s: Option<f64>,
    next_request: AtomicU64,
}

/// What became of one request.
enum Outcome {
    /// 200 and every record accepted.
    Acknowledged,
    /// 200 with some records rejected.
    Partial { accepted: u64 },
    /// Any other status.
    Status(u16),
    /// No HTTP answer.
    Transport(&'static str),
}

#[derive(Deserialize)]
struct IngestAnswer {
    accepted: u64,
}

/// Figures of one connection, merged at the end.
struct ConnectionStats {
    requests: u64,
    by_status: BTreeMap<String, u64>,
    records_acknowledged: u64,
    bytes_acknowledged: u64,
    records_partially_accepted: u64,
    latency_us: Histogram<u64>,
    last_answer: Option<Instant>,
}

impl ConnectionStats {
    fn new() -> ConnectionStats {
        ConnectionStats {
            requests: 0,
            by_status: BTreeMap::new(),
            records_acknowledged: 0,
            bytes_acknowledged: 0,
            records_partially_accepted: 0,
            latency_us: Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("histogram bounds are valid"),
            last_answer: None,
        }
    }

    fn record(&mut self, outcome: Outcome, body: &PoolBody, latency: Duration, answered: Instant) {
        self.requests += 1;
        self.last_answer = Some(answered);
        let status = match outcome {
            Outcome::Acknowledged => {
                self.records_acknowledged += body.records;
                self.bytes_acknowledged += body.ndjson_bytes;
                self.latency_us.saturating_record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
                "200".to_owned()
            }
            Outcome::Partial { accepted } => {
                self.records_partially_accepted += accepted;
                "200_partial".to_owned()
            }
            Outcome::Status(status) => status.to_string(),
            Outcome::Transport(cause) => format!("transport_{cause}"),
        };
        *self.by_status.entry(status).or_default() += 1;
    }

    fn merge(&mut self, other: ConnectionStats) {
        self.requests += other.requests;
        for (status, count) in other.by_status {
            *self.by_status.entry(status).or_default() += count;
        }
        self.records_acknowledged += other.records_acknowledged;
        self.bytes_acknowledged += other.bytes_acknowledged;
        self.records_partially_accepted += other.records_partially_accepted;
        self.latency_us.add(&other.latency_us).expect("histograms with the same bounds add up");
        self.last_answer = self.last_answer.max(other.last_answer);
    }
}

/// The result of a run, as printed with `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    kind: String,
    url: String,
    /// Records per second asked for; 0 for closed loop.
    target_rate: f64,
    duration_s: u64,
    /// From the start until the last answer.
    elapsed_s: f64,
    connections: usize,
    batch_records: usize,
    compression: String,
    /// Average NDJSON bytes per record of the generated bodies.
    record_bytes_avg: f64,
    /// Requests due in the run (open loop only).
    requests_scheduled: Option<u64>,
    requests_sent: u64,
    requests_by_status: BTreeMap<String, u64>,
    records_acknowledged: u64,
    /// NDJSON bytes (before compression) of acknowledged requests.
    bytes_acknowledged: u64,
    records_partially_accepted: u64,
    records_per_s: f64,
    /// Acknowledged NDJSON megabytes (10^6 bytes) per second.
    mb_per_s: f64,
    /// Acknowledgement latency of fully acknowledged requests, in milliseconds.
    latency_ms: LatencyReport,
    server: Option<ProcessMemory>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Serialize)]
pub struct LatencyReport {
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
}

/// Runs the benchmark and prints its report.
pub fn run(args: IngestArgs) -> anyhow::Result<()> {
    validate(&args)?;
    if let Some(pid) = args.server_pid {
        // Fail before the run, not after it, when the pid is wrong.
        read_memory(pid).with_context(|| format!("cannot read the memory of server pid {pid}"))?;
    }
    let pool = generate_pool(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    let report = runtime.block_on(measure(&args, pool))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_summary(&report);
    }
    Ok(())
}

fn validate(args: &IngestArgs) -> anyhow::Result<()> {
    crate::args::check_url(&args.url)?;
    ensure!(args.rate.is_finite() && args.rate >= 0.0, "rate must be 0 or more records/s, got {}", args.rate);
    ensure!(args.duration_s >= 1, "duration-s must be at least 1, got {}", args.duration_s);
    ensure!(args.connections >= 1, "connections must be at least 1, got {}", args.connections);
    ensure!(args.batch_records >= 1, "batch-records must be at least 1, got {}", args.batch_records);
    ensure!(args.pool_bodies >= 1, "pool-bodies must be at least 1, got {}", args.pool_bodies);
    ensure!(args.timeout_ms >= 1, "timeout-ms must be at least 1, got {}", args.timeout_ms);
    ensure!(
        args.protocol == Protocol::Native || matches!(args.kind, KindArg::Logs | KindArg::Metrics),
        "OTLP carries logs and metrics only"
    );
    ensure!(
        args.protocol == Protocol::Native || matches!(args.compression, CompressionArg::None),
        "OTLP bodies are sent uncompressed by this benchmark"
    );
    Ok(())
}

fn generate_pool(args: &IngestArgs) -> anyhow::Result<Vec<PoolBody>> {
    let kind = RecordKind::from(args.kind);
    let compression = Compression::from(args.compression);
    let mut workload = Workload::new(args.workload.config())?;
    let now = now_ms();
    (0..args.pool_bodies)
        .map(|_| {
            let mut ndjson = Vec::with_capacity(args.batch_records * (args.workload.event_bytes + 64));
            workload.write_ndjson(kind, args.batch_records, now, &mut ndjson);
            let wire = match (args.protocol, compression) {
                (Protocol::OtlpHttp, _) => crate::otlp_body::encode(kind, &ndjson, now)?,
                (Protocol::OtlpGrpc, _) => crate::otlp_body::frame(crate::otlp_body::encode(kind, &ndjson, now)?),
                (Protocol::Native, Compression::None) => ndjson.clone(),
                (Protocol::Native, other) => strata_client::compress(other, &ndjson)?,
            };
            Ok(PoolBody {
                wire: Bytes::from(wire),
                ndjson_bytes: ndjson.len() as u64,
                records: args.batch_records as u64,
            })
        })
        .collect()
}

async fn measure(args: &IngestArgs, pool: Vec<PoolBody>) -> anyhow::Result<Report> {
    let kind = RecordKind::from(args.kind);
    let compression = Compression::from(args.compression);
    let record_bytes_avg =
        pool.iter().map(|body| body.ndjson_bytes as f64).sum::<f64>() / (pool.len() * args.batch_records) as f64;

    let duration = Duration::from_secs(args.duration_s);
    let interval_s = (args.rate > 0.0).then(|| args.batch_records as f64 / args.rate);
    let start = Instant::now();
    let base = args.url.trim_end_matches('/');
    let url = match (args.protocol, kind) {
        (Protocol::Native, _) => format!("{base}/ingest/v1/{kind}"),
        (Protocol::OtlpHttp, RecordKind::Metrics) => format!("{base}/v1/metrics"),
        (Protocol::OtlpHttp, _) => format!("{base}/v1/logs"),
        (Protocol::OtlpGrpc, RecordKind::Metrics) => {
            format!("{base}/opentelemetry.proto.collector.metrics.v1.MetricsService/Export")
        }
        (Protocol::OtlpGrpc, _) => format!("{base}/opentelemetry.proto.collector.logs.v1.LogsService/Export"),
    };
    let clients = (0..args.connections).map(|_| client(args, &url)).collect::<anyhow::Result<Vec<_>>>()?;
    let plan = Arc::new(Plan {
        url,
        protocol: args.protocol,
        pool,
        start,
        end: start + duration,
        give_up: start + duration * 2 + Duration::from_millis(args.timeout_ms),
        interval_s,
        next_request: AtomicU64::new(0),
    });
    let connections: Vec<_> =
        clients.into_iter().map(|client| tokio::spawn(connection(Arc::clone(&plan), client))).collect();
    let mut stats = ConnectionStats::new();
    for connection in connections {
        stats.merge(connection.await.context("a connection task failed")?);
    }

    let server = match args.server_pid {
        Some(pid) => Some(read_memory(pid).with_context(|| format!("cannot read the memory of server pid {pid}"))?),
        None => None,
    };
    let elapsed_s =
        stats.last_answer.map_or(duration, |last| last.duration_since(start)).as_secs_f64().max(f64::EPSILON);
    let requests_scheduled = interval_s.map(|interval| (args.duration_s as f64 / interval).ceil() as u64);
    let histogram = &stats.latency_us;
    let ms = |us: u64| us as f64 / 1000.0;
    let latency_ms = if histogram.is_empty() {
        LatencyReport { p50: 0.0, p90: 0.0, p99: 0.0, p999: 0.0, max: 0.0, mean: 0.0 }
    } else {
        LatencyReport {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: histogram.mean() / 1000.0,
        }
    };
    Ok(Report {
        kind: kind.to_string(),
        url: args.url.clone(),
        target_rate: args.rate,
        duration_s: args.duration_s,
        elapsed_s,
        connections: args.connections,
        batch_records: args.batch_records,
        compression: compression.to_string(),
        record_bytes_avg,
        requests_scheduled,
        requests_sent: stats.requests,
        requests_by_status: stats.by_status,
        records_acknowledged: stats.records_acknowledged,
        bytes_acknowledged: stats.bytes_acknowledged,
        records_partially_accepted: stats.records_partially_accepted,
        records_per_s: stats.records_acknowledged as f64 / elapsed_s,
        mb_per_s: stats.bytes_acknowledged as f64 / 1e6 / elapsed_s,
        latency_ms,
        server,
    })
}

/// How a connection task sends: HTTP/1.1 with the lean client, gRPC (HTTP/2) with reqwest.
enum Client {
    Http1(crate::http1::Http1),
    Grpc(reqwest::Client),
}

fn content_type(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Native => "application/x-ndjson",
        Protocol::OtlpHttp => "application/x-protobuf",
        Protocol::OtlpGrpc => "application/grpc",
    }
}

/// One client per connection, so that each connection task really has its own TCP connection.
fn client(args: &IngestArgs, url: &str) -> anyhow::Result<Client> {
    if args.protocol == Protocol::OtlpGrpc {
        return http_client(args).map(Client::Grpc);
    }
    let bearer = args.api_key.as_deref().map(|key| format!("Bearer {key}"));
    let mut headers = vec![("Content-Type", content_type(args.protocol))];
    if let Some(encoding) = Compression::from(args.compression).content_encoding() {
        headers.push(("Content-Encoding", encoding));
    }
    if let Some(bearer) = bearer.as_deref() {
        headers.push(("Authorization", bearer));
    }
    crate::http1::Http1::new(url, &headers, Duration::from_millis(args.timeout_ms)).map(Client::Http1)
}

/// The gRPC client: HTTP/2 without TLS from the first byte, one connection per client.
fn http_client(args: &IngestArgs) -> anyhow::Result<reqwest::Client> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(args.protocol)));
    {
        // gRPC: HTTP/2 without TLS from the first byte, one connection per client.
        headers.insert("te", HeaderValue::from_static("trailers"));
        if let Some(key) = args.api_key.as_deref() {
            let auth = HeaderValue::from_str(&format!("Bearer {key}")).context("the api key is not a header value")?;
            headers.insert(reqwest::header::AUTHORIZATION, auth);
        }
        reqwest::Client::builder()
            .default_headers(headers)
            .http2_prior_knowledge()
            .timeout(Duration::from_millis(args.timeout_ms))
            .pool_max_idle_per_host(1)
            .build()
            .context("failed to build the http/2 client")
    }
}

/// Sends requests one after another on one connection until the run is over.
async fn connection(plan: Arc<Plan>, mut client: Client) -> ConnectionStats {
    let mut stats = ConnectionStats::new();
    loop {
        let request = plan.next_request.fetch_add(1, Ordering::Relaxed);
        let due = match plan.interval_s {
            Some(interval_s) => {
                let due = plan.start + Duration::from_secs_f64(request as f64 * interval_s);
                if due >= plan.end {
                    break;
                }
                Some(due)
            }
            None => None,
        };
        let now = Instant::now();
        if now >= plan.give_up || (due.is_none() && now >= plan.end) {
            break;
        }
        if let Some(wake) = due.and_then(|due| due.checked_sub(TIMER_SLACK))
            && wake > now
        {
            tokio::time::sleep_until(wake).await;
        }

        let body = &plan.pool[(request % plan.pool.len() as u64) as usize];
        let sent = Instant::now();
        // A request sent late is measured from when it was due; one sent a little early, from when it
        // was sent.
        let measured_from = due.map_or(sent, |due| due.max(sent));
        let outcome = send(&mut client, &plan, body).await;
        let answered = Instant::now();
        let unreachable = matches!(outcome, Outcome::Transport("connect"));
        stats.record(outcome, body, answered.saturating_duration_since(measured_from), answered);
        if unreachable && due.is_none() {
            // Closed loop against a server that is not listening: do not spin.
            tokio::time::sleep(CONNECT_ERROR_PAUSE).await;
        }
    }
    stats
}

async fn send(client: &mut Client, plan: &Plan, body: &PoolBody) -> Outcome {
    let (status, grpc_status, answer) = match client {
        Client::Http1(c) => match c.post(&body.wire).await {
            Ok(answer) => (answer.status, None, Bytes::from(answer.body)),
            Err(cause) => return Outcome::Transport(cause),
        },
        Client::Grpc(c) => {
            let response = match c.post(&plan.url).body(body.wire.clone()).send().await {
                Ok(response) => response,
                Err(error) => return Outcome::Transport(transport_cause(&error)),
            };
            let status = response.status().as_u16();
            let grpc_status =
                response.headers().get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u16>().ok());
            match response.bytes().await {
                Ok(answer) => (status, grpc_status, answer),
                Err(error) => return Outcome::Transport(transport_cause(&error)),
            }
        }
    };
    if status != 200 {
        return Outcome::Status(status);
    }
    match plan.protocol {
        Protocol::Native => {}
        // A gRPC error is a trailers-only answer: no message, `grpc-status` among the headers.
        Protocol::OtlpGrpc if grpc_status.is_some() || answer.len() < 5 => {
            return Outcome::Status(grpc_status.unwrap_or(2) + 1000);
        }
        Protocol::OtlpGrpc | Protocol::OtlpHttp => {
            let message = if plan.protocol == Protocol::OtlpGrpc { &answer[5..] } else { &answer[..] };
            return match crate::otlp_body::rejected(message) {
                Some(0) => Outcome::Acknowledged,
                Some(rejected) => Outcome::Partial { accepted: body.records.saturating_sub(rejected) },
                None => Outcome::Transport("invalid_answer"),
            };
        }
    }
    match serde_json::from_slice::<IngestAnswer>(&answer) {
        Ok(answer) if answer.accepted == body.records => Outcome::Acknowledged,
        Ok(answer) => Outcome::Partial { accepted: answer.accepted },
        Err(_) => Outcome::Transport("invalid_answer"),
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

fn print_summary(report: &Report) {
    let mode = if report.target_rate > 0.0 {
        format!("{:.0} records/s (open loop, latency from due time)", report.target_rate)
    } else {
        "as fast as possible (closed loop)".to_owned()
    };
    let statuses: Vec<String> =
        report.requests_by_status.iter().map(|(status, count)| format!("{status}={count}")).collect();
    let scheduled = report.requests_scheduled.map(|scheduled| format!(" of {scheduled} due")).unwrap_or_default();
    let latency = &report.latency_ms;
    println!("strata-bench ingest: {} to {} for {} s", report.kind, report.url, report.duration_s);
    println!("  target        {mode}");
    println!(
        "  load          {} connections, {} records per request, {:.0} bytes per record, compression {}",
        report.connections, report.batch_records, report.record_bytes_avg, report.compression
    );
    println!("  requests      {} sent{scheduled}: {}", report.requests_sent, statuses.join(" "));
    println!(
        "  acknowledged  {} records in {:.2} s: {:.0} records/s, {:.2} MB/s",
        report.records_acknowledged, report.elapsed_s, report.records_per_s, report.mb_per_s
    );
    println!(
        "  latency ms    p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  mean {:.2}",
        latency.p50, latency.p90, latency.p99, latency.p999, latency.max, latency.mean
    );
    if let Some(server) = &report.server {
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        println!(
            "  server rss    {:.1} MiB now, {:.1} MiB peak (pid {})",
            mib(server.rss_bytes),
            mib(server.rss_peak_bytes),
            server.pid
        );
    }
    if report.requests_sent == 0 {
        eprintln!("warning: no request was sent");
    }
}
