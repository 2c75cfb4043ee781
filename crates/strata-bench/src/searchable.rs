//! `strata-bench searchable`: how long after its ingest acknowledgement a line can be found through
//! the search API of a running server, while other lines are ingested at a steady rate.
//!
//! Every probe interval a line with a unique token is ingested; once the server acknowledges it
//! (after fsync), the search API is asked for the token every poll interval until it answers the
//! line. The latency runs from the acknowledgement to the answer that has it, so it is resolved to
//! about one poll interval plus one search.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use clap::Args;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use strata_client::RecordKind;
use tokio::sync::Semaphore;
use tokio::time::{Instant, MissedTickBehavior};

use crate::args::{WorkloadArgs, now_ms};
use crate::summary::Summary;
use crate::workload::Workload;

/// Background requests in flight at once; past it the background load waits, and its achieved rate
/// shows the shortfall.
const BACKGROUND_IN_FLIGHT_MAX: usize = 32;

/// Distinct background request bodies, generated up front and sent in rotation.
const BACKGROUND_BODIES: usize = 50;

/// Time allowed for one HTTP request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Searches for a probe cover this long on each side of when it was sent.
const PROBE_WINDOW_MS: i64 = 60_000;

/// The source of probe lines.
const PROBE_SOURCE: &str = "strata-bench-probe";

/// Arguments of `strata-bench searchable`.
#[derive(Debug, Args)]
pub struct SearchableArgs {
    /// Base URL of the server.
    #[arg(long, default_value = strata_client::DEFAULT_BASE_URL)]
    url: String,
    /// API key, sent as `Authorization: Bearer <key>`; omit for a server running with --no-auth.
    #[arg(long, env = "STRATA_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Background lines per second ingested during the run; 0 for none.
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    /// Lines per background request.
    #[arg(long, default_value_t = 100)]
    batch_lines: usize,
    /// Probe lines to time.
    #[arg(long, default_value_t = 100)]
    probes: usize,
    /// Milliseconds between two probes.
    #[arg(long, default_value_t = 200)]
    probe_interval_ms: u64,
    /// Milliseconds between two searches for the same probe.
    #[arg(long, default_value_t = 20)]
    poll_interval_ms: u64,
    /// Seconds after its acknowledgement when a probe not found yet counts as missing.
    #[arg(long, default_value_t = 30)]
    give_up_s: u64,
    /// Print one JSON object instead of a human-readable summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    workload: WorkloadArgs,
}

/// The result of a run, as printed with `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    url: String,
    probes: usize,
    /// Probes the search API answered.
    found: usize,
    /// Probes acknowledged but not found within `give_up_s`.
    missing: usize,
    /// Probes the ingest API did not acknowledge; not timed.
    probe_ingest_errors: usize,
    /// From the probe's acknowledgement to the first answer that had it, in milliseconds.
    searchable_ms: Summary,
    /// From sending a probe to its acknowledgement, in milliseconds.
    ack_ms: Summary,
    searches: u64,
    /// Searches answered with anything but 200.
    search_errors: u64,
    probe_interval_ms: u64,
    poll_interval_ms: u64,
    give_up_s: u64,
    background_target_rate: f64,
    background_lines_acknowledged: u64,
    /// Background requests that were not fully acknowledged.
    background_errors: u64,
    background_rate: f64,
    elapsed_s: f64,
}

#[derive(Deserialize)]
struct IngestAnswer {
    accepted: u64,
}

#[derive(Deserialize)]
struct SearchAnswer {
    hits: Vec<serde_json::Value>,
}

/// What became of one probe.
enum Probe {
    Found { ack: Duration, searchable: Duration, searches: u64, search_errors: u64 },
    Missing { ack: Duration, searches: u64, search_errors: u64 },
    IngestFailed(String),
}

/// Counters of the background load, shared by its request tasks.
#[derive(Default)]
struct Background {
    lines_acknowledged: AtomicU64,
    errors: AtomicU64,
}

/// Everything the probe tasks share.
struct Endpoints {
    client: reqwest::Client,
    ingest: Url,
    search: Url,
    poll_interval: Duration,
    give_up: Duration,
}

/// Runs the benchmark and prints its report.
pub fn run(args: SearchableArgs) -> anyhow::Result<()> {
    validate(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    let report = runtime.block_on(measure(&args))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_summary(&report);
    }
    if report.missing > 0 || report.probe_ingest_errors > 0 {
        eprintln!(
            "warning: {} probes were not found within {} s and {} were not acknowledged",
            report.missing, report.give_up_s, report.probe_ingest_errors
        );
    }
    Ok(())
}

fn validate(args: &SearchableArgs) -> anyhow::Result<()> {
    crate::args::check_url(&args.url)?;
    ensure!(args.rate.is_finite() && args.rate >= 0.0, "rate must be 0 or more lines/s, got {}", args.rate);
    ensure!(args.batch_lines >= 1, "batch-lines must be at least 1, got {}", args.batch_lines);
    ensure!(args.probes >= 1, "probes must be at least 1, got {}", args.probes);
    ensure!(args.probe_interval_ms >= 1, "probe-interval-ms must be at least 1, got {}", args.probe_interval_ms);
    ensure!(args.poll_interval_ms >= 1, "poll-interval-ms must be at least 1, got {}", args.poll_interval_ms);
    ensure!(args.give_up_s >= 1, "give-up-s must be at least 1, got {}", args.give_up_s);
    Ok(())
}

async fn measure(args: &SearchableArgs) -> anyhow::Result<Report> {
    let base = args.url.trim_end_matches('/');
    let endpoints = Arc::new(Endpoints {
        client: http_client(args)?,
        ingest: Url::parse(&format!("{base}/ingest/v1/logs"))?,
        search: Url::parse(&format!("{base}/query/v1/logs/search"))?,
        poll_interval: Duration::from_millis(args.poll_interval_ms),
        give_up: Duration::from_secs(args.give_up_s),
    });
    preflight(&endpoints).await?;

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Background::default());
    let background = (args.rate > 0.0).then(|| {
        let bodies = background_bodies(args)?;
        let interval = Duration::from_secs_f64(args.batch_lines as f64 / args.rate);
        let task = background(
            Arc::clone(&endpoints),
            bodies,
            args.batch_lines as u64,
            interval,
            Arc::clone(&stop),
            Arc::clone(&counters),
        );
        anyhow::Ok(tokio::spawn(task))
    });
    let background = background.transpose()?;

    let mut ticker = tokio::time::interval(Duration::from_millis(args.probe_interval_ms));
    let mut probes = Vec::with_capacity(args.probes);
    for _ in 0..args.probes {
        ticker.tick().await;
        probes.push(tokio::spawn(probe(Arc::clone(&endpoints))));
    }
    let (mut searchable, mut acks) = (Vec::new(), Vec::new());
    let (mut missing, mut ingest_errors, mut searches, mut search_errors) = (0, 0, 0, 0);
    let mut first_ingest_error = None;
    for probe in probes {
        match probe.await.context("a probe task failed")? {
            Probe::Found { ack, searchable: latency, searches: n, search_errors: e } => {
                acks.push(ms(ack));
                searchable.push(ms(latency));
                searches += n;
                search_errors += e;
            }
            Probe::Missing { ack, searches: n, search_errors: e } => {
                acks.push(ms(ack));
                missing += 1;
                searches += n;
                search_errors += e;
            }
            Probe::IngestFailed(reason) => {
                ingest_errors += 1;
                first_ingest_error.get_or_insert(reason);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(background) = background {
        background.await.context("the background load failed")?;
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    if let Some(reason) = first_ingest_error {
        eprintln!("warning: a probe was not acknowledged: {reason}");
    }
    let lines_acknowledged = counters.lines_acknowledged.load(Ordering::Relaxed);
    Ok(Report {
        url: args.url.clone(),
        probes: args.probes,
        found: searchable.len(),
        missing,
        probe_ingest_errors: ingest_errors,
        searchable_ms: Summary::of(searchable),
        ack_ms: Summary::of(acks),
        searches,
        search_errors,
        probe_interval_ms: args.probe_interval_ms,
        poll_interval_ms: args.poll_interval_ms,
        give_up_s: args.give_up_s,
        background_target_rate: args.rate,
        background_lines_acknowledged: lines_acknowledged,
        background_errors: counters.errors.load(Ordering::Relaxed),
        background_rate: lines_acknowledged as f64 / elapsed_s,
        elapsed_s,
    })
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn http_client(args: &SearchableArgs) -> anyhow::Result<reqwest::Client> {
    crate::args::http_client(HeaderMap::new(), args.api_key.as_deref(), REQUEST_TIMEOUT, false)
}

/// Fails before the run when the search API cannot be used (not listening, wrong key, ...).
async fn preflight(endpoints: &Endpoints) -> anyhow::Result<()> {
    let url = search_url(&endpoints.search, "strataprobepreflight", now_ms());
    let response =
        endpoints.client.get(url).send().await.with_context(|| format!("cannot reach {}", endpoints.search))?;
    let status = response.status();
    if status != StatusCode::OK {
        let body = response.text().await.unwrap_or_default();
        bail!("{} answered {status}: {}", endpoints.search, body.trim());
    }
    Ok(())
}

/// The search for `token` in the minutes around `sent_ms`, one hit at most.
fn search_url(search: &Url, token: &str, sent_ms: i64) -> Url {
    let mut url = search.clone();
    url.query_pairs_mut()
        .append_pair("q", token)
        .append_pair("limit", "1")
        .append_pair("from", &(sent_ms - PROBE_WINDOW_MS).to_string())
        .append_pair("to", &(sent_ms + PROBE_WINDOW_MS).to_string());
    url
}

/// The NDJSON of one probe line carrying `token`; the server stamps it with its receive time.
fn probe_line(token: &str) -> String {
    let line = serde_json::json!({
        "source_id": PROBE_SOURCE,
        "level": "info",
        "message": format!("searchable probe {token}"),
    });
    format!("{line}\n")
}

async fn probe(endpoints: Arc<Endpoints>) -> Probe {
    let token = format!("probe{:016x}", rand::random::<u64>());
    let sent_ms = now_ms();
    let sent = Instant::now();
    if let Err(reason) = ingest(&endpoints, Bytes::from(probe_line(&token)), 1).await {
        return Probe::IngestFailed(reason);
    }
    let acked = Instant::now();
    let ack = acked - sent;
    let url = search_url(&endpoints.search, &token, sent_ms);
    let mut ticker = tokio::time::interval(endpoints.poll_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut searches, mut search_errors) = (0, 0);
    loop {
        ticker.tick().await;
        if acked.elapsed() > endpoints.give_up {
            return Probe::Missing { ack, searches, search_errors };
        }
        searches += 1;
        match found(&endpoints.client, &url).await {
            Ok(true) => {
                return Probe::Found { ack, searchable: acked.elapsed(), searches, search_errors };
            }
            Ok(false) => {}
            Err(_) => search_errors += 1,
        }
    }
}

/// Whether the search at `url` answers at least one hit.
async fn found(client: &reqwest::Client, url: &Url) -> Result<bool, String> {
    let response = client.get(url.clone()).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if status != StatusCode::OK {
        return Err(format!("status {status}"));
    }
    let answer: SearchAnswer = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(!answer.hits.is_empty())
}

/// Sends one NDJSON body of `lines` lines; Ok once every line is acknowledged.
async fn ingest(endpoints: &Endpoints, body: Bytes, lines: u64) -> Result<(), String> {
    let response = endpoints
        .client
        .post(endpoints.ingest.clone())
        .header(CONTENT_TYPE, "application/x-ndjson")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let answer = response.bytes().await.map_err(|e| e.to_string())?;
    if status != StatusCode::OK {
        return Err(format!("status {status}: {}", String::from_utf8_lossy(&answer).trim()));
    }
    match serde_json::from_slice::<IngestAnswer>(&answer) {
        Ok(answer) if answer.accepted == lines => Ok(()),
        Ok(answer) => Err(format!("{} of {lines} lines accepted", answer.accepted)),
        Err(e) => Err(format!("invalid answer: {e}")),
    }
}

fn background_bodies(args: &SearchableArgs) -> anyhow::Result<Arc<Vec<Bytes>>> {
    let mut workload = Workload::new(args.workload.config())?;
    let now = now_ms();
    let bodies = (0..BACKGROUND_BODIES)
        .map(|_| {
            let mut body = Vec::with_capacity(args.batch_lines * (args.workload.event_bytes + 64));
            workload.write_ndjson(RecordKind::Logs, args.batch_lines, now, &mut body);
            Bytes::from(body)
        })
        .collect();
    Ok(Arc::new(bodies))
}

/// Sends a body every `interval` until `stop`, open loop up to [`BACKGROUND_IN_FLIGHT_MAX`] requests in
/// flight; returns once every request sent has been answered.
async fn background(
    endpoints: Arc<Endpoints>,
    bodies: Arc<Vec<Bytes>>,
    lines_per_body: u64,
    interval: Duration,
    stop: Arc<AtomicBool>,
    counters: Arc<Background>,
) {
    let in_flight = Arc::new(Semaphore::new(BACKGROUND_IN_FLIGHT_MAX));
    let mut ticker = tokio::time::interval(interval);
    let mut sent = 0usize;
    while !stop.load(Ordering::Relaxed) {
        ticker.tick().await;
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else { break };
        let body = bodies[sent % bodies.len()].clone();
        sent += 1;
        let (endpoints, counters) = (Arc::clone(&endpoints), Arc::clone(&counters));
        tokio::spawn(async move {
            match ingest(&endpoints, body, lines_per_body).await {
                Ok(()) => counters.lines_acknowledged.fetch_add(lines_per_body, Ordering::Relaxed),
                Err(_) => counters.errors.fetch_add(1, Ordering::Relaxed),
            };
            drop(permit);
        });
    }
    // Every permit back means every request answered.
    let _ = in_flight.acquire_many(BACKGROUND_IN_FLIGHT_MAX as u32).await;
}

fn print_summary(report: &Report) {
    let s = &report.searchable_ms;
    let a = &report.ack_ms;
    println!("strata-bench searchable: {} probes against {}", report.probes, report.url);
    println!(
        "  background    {:.0} lines/s acknowledged (target {:.0}), {} lines, {} failed requests",
        report.background_rate,
        report.background_target_rate,
        report.background_lines_acknowledged,
        report.background_errors
    );
    println!(
        "  searchable    ack to found ms: p50 {:.1}  p99 {:.1}  max {:.1}  mean {:.1}  ({} found, {} missing after {} s)",
        s.p50, s.p99, s.max, s.mean, report.found, report.missing, report.give_up_s
    );
    println!(
        "  probe ack     ms: p50 {:.1}  p99 {:.1}  max {:.1}  ({} not acknowledged)",
        a.p50, a.p99, a.max, report.probe_ingest_errors
    );
    println!(
        "  searches      {} every {} ms, {} failed; {:.1} s in all",
        report.searches, report.poll_interval_ms, report.search_errors, report.elapsed_s
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_search_asks_for_the_token_around_the_send_time() {
        let search = Url::parse("http://127.0.0.1:7000/query/v1/logs/search").unwrap();
        let url = search_url(&search, "probe00ff", 1_714_564_800_000);
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let expected = [("q", "probe00ff"), ("limit", "1"), ("from", "1714564740000"), ("to", "1714564860000")];
        assert_eq!(pairs, expected.map(|(k, v)| (k.to_owned(), v.to_owned())));
    }

    #[test]
    fn probe_line_normalises_with_its_token_in_the_message() {
        let line = probe_line("probe0123456789abcdef");
        assert!(line.ends_with('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        let normalised = strata_model::normalize_log(value, 7, &strata_model::Limits::default()).unwrap();
        assert_eq!(normalised.message, "searchable probe probe0123456789abcdef");
        assert_eq!(normalised.timestamp_ns, 7, "the server stamps a probe with its receive time");
    }
}
