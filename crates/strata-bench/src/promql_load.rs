//! `strata-bench promql-load`: remote-writes the PromQL benchmark's data set (`promql_dataset.rs`)
//! to a Prometheus remote write 1.0 endpoint, then, given the server's query URL, waits until its
//! query API counts every sample.
//!
//! The data go out in rounds of `--slices-per-request` slices, every series of a round before any of
//! the next, so that even a store that refuses samples behind its newest one (a fresh Prometheus
//! head) takes them all. A round is one request per connection, each holding the series of its own
//! instances, several samples per `TimeSeries`; the next round waits for every request of this one.
//! With the same seed, interval, hours and `--end-ms`, every server gets the same bytes, and the
//! report's `body_digest` says so. Requests answered 429, 5xx or not at all are retried; any other
//! refusal ends the run, since a benchmark on partial data would compare nothing.

use std::hash::{DefaultHasher, Hasher as _};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use clap::Args;
use prost::Message as _;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER, USER_AGENT};
use serde::Serialize;
use strata_gateway::remote_write::proto;
use tokio::task::JoinSet;

use crate::args::now_ms;
use crate::promql_dataset::{BUCKET_NAME, COUNTER_NAME, Dataset, DatasetConfig, INSTANCES, OFFSET_STEP_MS, SERIES};
use crate::promql_query::{Eval, QueryApi};

/// Encoded rounds waiting to be sent, at most.
const ROUNDS_QUEUED_MAX: usize = 4;

/// First pause before a retry; it doubles up to [`RETRY_PAUSE_MAX`].
const RETRY_PAUSE_MIN: Duration = Duration::from_millis(50);
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(5);

/// Characters of a refusal's body kept in the error.
const ERROR_BODY_CHARS_MAX: usize = 300;

/// Length of the windows whose samples are counted through the query API, in milliseconds.
const COUNT_WINDOW_MS: i64 = 3_600_000;

/// How often the counts are read again while the server has not taken everything.
const COUNT_POLL: Duration = Duration::from_secs(2);

/// Arguments of `strata-bench promql-load`.
#[derive(Debug, Args)]
pub struct PromqlLoadArgs {
    /// Remote write endpoint.
    #[arg(long, default_value = "http://127.0.0.1:7878/api/v1/write")]
    url: String,
    /// Sent as `Authorization: Bearer <key>`, to remote write and query; omit for a server without
    /// authentication.
    #[arg(long, env = "STRATA_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Name of the server in the report.
    #[arg(long, default_value = "server")]
    label: String,
    /// Hours of data, ending at `--end-ms`.
    #[arg(long, default_value_t = 24.0)]
    hours: f64,
    /// Scrape interval, in seconds.
    #[arg(long, default_value_t = 15)]
    interval_s: u64,
    /// End of the data, Unix milliseconds, rounded down to a whole interval; now when omitted. Give
    /// the same value to every server to send them the same bytes.
    #[arg(long)]
    end_ms: Option<i64>,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Requests in flight at once, each with the series of its share of the instances.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Slices (scrape intervals) per round of requests.
    #[arg(long, default_value_t = 8)]
    slices_per_request: u64,
    /// Time allowed for one request, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    timeout_ms: u64,
    /// Retries of one request answered 429, 5xx or not at all before the run fails.
    #[arg(long, default_value_t = 20)]
    retries_max: u32,
    /// Base URL of the server's Prometheus query API: after sending, wait until it counts every
    /// sample, hour by hour.
    #[arg(long)]
    query_url: Option<String>,
    /// Longest wait for the query API to count every sample, in seconds.
    #[arg(long, default_value_t = 1800)]
    wait_timeout_s: u64,
}

/// One round of requests, encoded.
struct Round {
    /// Snappy block format of a protobuf `WriteRequest`, one per connection with series.
    bodies: Vec<Bytes>,
}

/// The result of a run, printed as one JSON object.
#[derive(Debug, Serialize)]
struct Report {
    label: String,
    url: String,
    series: usize,
    interval_s: u64,
    hours: f64,
    /// Data time range, Unix milliseconds: every sample is in `start..end`.
    data_start_ms: i64,
    data_end_ms: i64,
    samples: u64,
    requests: u64,
    wire_bytes: u64,
    /// A hash of every request body in order: equal for equal data.
    body_digest: String,
    retries: u64,
    /// From the first request until the last answer.
    send_s: f64,
    samples_per_s: f64,
    /// The wait for the query API to count every sample, if one was asked for.
    counted: Option<Counted>,
}

/// How long after the last answer the query API counted every sample.
#[derive(Debug, Serialize)]
struct Counted {
    windows: usize,
    samples: u64,
    after_s: f64,
}

/// Sends the data set and prints the report.
pub fn run(args: PromqlLoadArgs) -> anyhow::Result<()> {
    let config = dataset_config(&args)?;
    if let Some(url) = &args.query_url {
        crate::args::check_url(url)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    eprintln!(
        "promql-load: {} series, {} slices of {} s ({} samples) to {} ...",
        SERIES,
        config.slices,
        args.interval_s,
        config.samples(),
        args.url
    );
    let (rounds_tx, rounds_rx) = tokio::sync::mpsc::channel(ROUNDS_QUEUED_MAX);
    let connections = args.connections;
    let slices_per_request = args.slices_per_request;
    let generator = std::thread::spawn(move || generate(config, connections, slices_per_request, &rounds_tx));
    let sent = runtime.block_on(send_all(&args, rounds_rx));
    // The generator stops once the receiver is gone, whether sending succeeded or not.
    generator.join().map_err(|_| anyhow::anyhow!("the generator thread panicked"))??;
    let sent = sent?;
    eprintln!(
        "promql-load: {} samples acknowledged in {:.1} s ({:.0} samples/s)",
        config.samples(),
        sent.seconds,
        config.samples() as f64 / sent.seconds
    );
    let counted = match &args.query_url {
        Some(url) => Some(runtime.block_on(wait_counted(&args, url, config))?),
        None => None,
    };
    let report = Report {
        label: args.label,
        url: args.url,
        series: SERIES,
        interval_s: args.interval_s,
        hours: args.hours,
        data_start_ms: config.start_ms,
        data_end_ms: config.end_ms(),
        samples: config.samples(),
        requests: sent.requests,
        wire_bytes: sent.wire_bytes,
        body_digest: format!("{:016x}", sent.digest),
        retries: sent.retries,
        send_s: sent.seconds,
        samples_per_s: config.samples() as f64 / sent.seconds,
        counted,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn dataset_config(args: &PromqlLoadArgs) -> anyhow::Result<DatasetConfig> {
    crate::args::check_url(&args.url)?;
    ensure!(args.hours.is_finite() && args.hours > 0.0, "hours must be more than 0, got {}", args.hours);
    ensure!(args.hours <= 24.0 * 7.0, "hours must be at most a week (168), got {}", args.hours);
    ensure!(args.interval_s >= 1, "interval-s must be at least 1, got {}", args.interval_s);
    ensure!(
        (1..=INSTANCES).contains(&args.connections),
        "connections must be 1 to {INSTANCES} (one instance each at least), got {}",
        args.connections
    );
    ensure!(args.slices_per_request >= 1, "slices-per-request must be at least 1, got {}", args.slices_per_request);
    let interval_ms = i64::try_from(args.interval_s * 1000).context("interval-s is too large")?;
    let end_ms = args.end_ms.unwrap_or_else(now_ms);
    let end_ms = end_ms - end_ms.rem_euclid(interval_ms);
    let slices = (args.hours * 3_600_000.0 / interval_ms as f64).round() as u64;
    ensure!(slices >= 1, "{} hours hold no whole interval of {} s", args.hours, args.interval_s);
    Ok(DatasetConfig { seed: args.seed, interval_ms, start_ms: end_ms - slices as i64 * interval_ms, slices })
}

/// Generates the data set round by round into `rounds`, until it is done or the receiver is gone.
/// Each connection's request holds the series of the instances `instance % connections` picks, one
/// `TimeSeries` per series with its samples of the round.
fn generate(
    config: DatasetConfig,
    connections: usize,
    slices_per_request: u64,
    rounds: &tokio::sync::mpsc::Sender<Round>,
) -> anyhow::Result<()> {
    let mut dataset = Dataset::new(config)?;
    let mut requests: Vec<proto::WriteRequest> = (0..connections).map(|_| proto::WriteRequest::default()).collect();
    // Where each series sits: its request and its place in it.
    let mut places = Vec::with_capacity(SERIES);
    for series in 0..SERIES {
        let request = &mut requests[Dataset::instance_of(series) % connections];
        let labels = Dataset::labels(series).into_iter().map(|(name, value)| proto::Label { name, value }).collect();
        places.push((Dataset::instance_of(series) % connections, request.timeseries.len()));
        request.timeseries.push(proto::TimeSeries { labels, samples: Vec::new() });
    }
    let mut encoder = snap::raw::Encoder::new();
    let mut more = true;
    while more {
        for request in &mut requests {
            request.timeseries.iter_mut().for_each(|series| series.samples.clear());
        }
        let mut slices = 0;
        while slices < slices_per_request && more {
            more = dataset.next_slice(|series, timestamp, value| {
                let (request, place) = places[series];
                requests[request].timeseries[place].samples.push(proto::Sample { value, timestamp });
            });
            slices += u64::from(more);
        }
        if slices == 0 {
            break;
        }
        let bodies = requests
            .iter()
            .map(|request| encoder.compress_vec(&request.encode_to_vec()).map(Bytes::from))
            .collect::<Result<Vec<_>, _>>()
            .context("snappy failed to compress a request")?;
        if rounds.blocking_send(Round { bodies }).is_err() {
            // The sender gave up; its error is the one to report.
            break;
        }
    }
    Ok(())
}

/// What sending took.
struct Sent {
    requests: u64,
    wire_bytes: u64,
    digest: u64,
    retries: u64,
    seconds: f64,
}

async fn send_all(args: &PromqlLoadArgs, mut rounds: tokio::sync::mpsc::Receiver<Round>) -> anyhow::Result<Sent> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
    headers.insert("X-Prometheus-Remote-Write-Version", HeaderValue::from_static("0.1.0"));
    headers.insert(USER_AGENT, HeaderValue::from_static("strata-bench-promql-load"));
    let client =
        crate::args::http_client(headers, args.api_key.as_deref(), Duration::from_millis(args.timeout_ms), false)?;
    let mut digest = DefaultHasher::new();
    let mut sent = Sent { requests: 0, wire_bytes: 0, digest: 0, retries: 0, seconds: 0.0 };
    let started = Instant::now();
    while let Some(round) = rounds.recv().await {
        let mut in_flight = JoinSet::new();
        for body in round.bodies {
            digest.write(&body);
            sent.requests += 1;
            sent.wire_bytes += body.len() as u64;
            let (client, url, retries_max) = (client.clone(), args.url.clone(), args.retries_max);
            in_flight.spawn(async move { send_with_retries(&client, &url, body, retries_max).await });
        }
        while let Some(done) = in_flight.join_next().await {
            sent.retries += u64::from(done.context("a request task failed")??);
        }
    }
    sent.seconds = started.elapsed().as_secs_f64().max(f64::EPSILON);
    sent.digest = digest.finish();
    Ok(sent)
}

/// Sends one request until it is acknowledged; returns the retries it took.
async fn send_with_retries(client: &reqwest::Client, url: &str, body: Bytes, retries_max: u32) -> anyhow::Result<u32> {
    let mut retry = 0;
    loop {
        let (why, retry_after) = match client.post(url).body(body.clone()).send().await {
            Ok(response) => {
                let status = response.status();
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(strata_client::parse_retry_after);
                let text = response.text().await.unwrap_or_default();
                if status.is_success() {
                    return Ok(retry);
                }
                let text: String = text.chars().take(ERROR_BODY_CHARS_MAX).collect();
                if status.as_u16() != 429 && !status.is_server_error() {
                    bail!("POST {url} refused the data with {status}: {text}");
                }
                (format!("{status}: {text}"), retry_after)
            }
            Err(error) => (format!("{error}"), None),
        };
        if retry >= retries_max {
            bail!("POST {url} failed {} times; the last: {why}", retry + 1);
        }
        let jitter = f64::from(retry % 7) / 7.0;
        tokio::time::sleep(strata_client::retry_delay(retry, retry_after, RETRY_PAUSE_MIN, RETRY_PAUSE_MAX, jitter))
            .await;
        retry += 1;
    }
}

/// Waits until the query API counts every sample of the data set, window by window.
async fn wait_counted(args: &PromqlLoadArgs, url: &str, config: DatasetConfig) -> anyhow::Result<Counted> {
    let api = QueryApi::new(url, args.api_key.as_deref(), Duration::from_millis(args.timeout_ms))?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.wait_timeout_s);
    let windows = count_windows(config);
    let mut last_print = Instant::now();
    for (at, window) in &windows {
        let range_s = window.slices as i64 * config.interval_ms / 1000;
        let query = format!(
            "sum(count_over_time({COUNTER_NAME}[{range_s}s])) + sum(count_over_time({BUCKET_NAME}[{range_s}s]))"
        );
        let eval = Eval::Instant { time: format!("{:.3}", *at as f64 / 1000.0) };
        let expected = window.slices * SERIES as u64;
        loop {
            let counted = match api.run(&query, &eval).await {
                Ok((_, answer)) => answer.first_value.unwrap_or(0.0),
                Err(error) => {
                    eprintln!("promql-load: counting failed: {error:#}");
                    0.0
                }
            };
            if counted == expected as f64 {
                break;
            }
            ensure!(
                counted <= expected as f64,
                "{url} counts {counted} samples in the {range_s} s before {at} ms, more than the {expected} sent"
            );
            ensure!(
                Instant::now() < deadline,
                "{url} still counts {counted} of {expected} samples in the {range_s} s before {at} ms after {} s",
                args.wait_timeout_s
            );
            if last_print.elapsed() >= Duration::from_secs(10) {
                eprintln!("promql-load: waiting: {counted} of {expected} samples counted in the window ending {at} ms");
                last_print = Instant::now();
            }
            tokio::time::sleep(COUNT_POLL).await;
        }
    }
    Ok(Counted { windows: windows.len(), samples: config.samples(), after_s: started.elapsed().as_secs_f64() })
}

/// A run of whole slices counted by one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    slices: u64,
}

/// Windows of at most an hour covering every slice once, each with its evaluation time: half an
/// offset step before the end of its last slice, so that no sample sits on either edge.
fn count_windows(config: DatasetConfig) -> Vec<(i64, Window)> {
    let per_window = (COUNT_WINDOW_MS / config.interval_ms).max(1) as u64;
    let mut windows = Vec::new();
    let mut first = 0;
    while first < config.slices {
        let slices = per_window.min(config.slices - first);
        let at = config.slice_start_ms(first + slices) - OFFSET_STEP_MS / 2;
        windows.push((at, Window { slices }));
        first += slices;
    }
    windows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_windows_cover_every_slice_once() {
        let config = DatasetConfig { seed: 1, interval_ms: 15_000, start_ms: 1_000_000_000, slices: 500 };
        let windows = count_windows(config);
        assert_eq!(windows.iter().map(|(_, w)| w.slices).collect::<Vec<_>>(), vec![240, 240, 20]);
        let mut covered_from = config.start_ms;
        for (at, window) in windows {
            let from = at - window.slices as i64 * config.interval_ms;
            // The window (from, at] starts just before the first sample it should count.
            assert_eq!(from, covered_from - OFFSET_STEP_MS / 2);
            covered_from = at + OFFSET_STEP_MS / 2;
        }
        assert_eq!(covered_from, config.end_ms());
    }

    #[test]
    fn rounds_carry_every_sample_of_the_data_set_in_time_order() {
        let config = DatasetConfig { seed: 3, interval_ms: 15_000, start_ms: 1_700_000_000_000, slices: 20 };
        let (sender, mut receiver) = tokio::sync::mpsc::channel(64);
        generate(config, 3, 8, &sender).unwrap();
        drop(sender);
        let mut rounds = Vec::new();
        while let Ok(round) = receiver.try_recv() {
            rounds.push(round);
        }
        assert_eq!(rounds.len(), 3, "20 slices in rounds of 8");
        let mut samples = 0;
        let mut newest_of_round = i64::MIN;
        for round in rounds {
            let mut oldest = i64::MAX;
            let mut newest = i64::MIN;
            for body in &round.bodies {
                let protobuf = snap::raw::Decoder::new().decompress_vec(body).unwrap();
                let request = proto::WriteRequest::decode(&protobuf[..]).unwrap();
                for series in request.timeseries {
                    assert!(series.samples.is_sorted_by_key(|sample| sample.timestamp));
                    samples += series.samples.len();
                    oldest = oldest.min(series.samples[0].timestamp);
                    newest = newest.max(series.samples.last().unwrap().timestamp);
                }
            }
            assert!(oldest > newest_of_round, "a round starts after the previous one ended");
            newest_of_round = newest;
        }
        assert_eq!(samples as u64, config.samples());
    }
}
