//! `strata-bench search-http`: search latency through a running server's HTTP API, beside ripgrep
//! asked the same question of the same lines in the same run.
//!
//! Generated lines (every `--rare-every`-th with a rare token in its message) are written to an
//! NDJSON file and ingested, as they are, through the ingest API. Once the histogram API counts
//! every line, each query is timed through the search API (limit 100, newest first, after warm-up
//! runs), and `rg --count` is timed over the file for the same words. The match counts of both are
//! reported side by side: they differ a little where a token is not a word (`upstream_ms` holds the
//! token `upstream` for the index, and the substring for ripgrep).

use std::fs::File;
use std::io::{BufRead as _, BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use clap::Args;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::args::{WorkloadArgs, now_ms};
use crate::index::RARE_TOKEN;
use crate::summary::Summary;
use crate::workload::Workload;

/// Time allowed for one HTTP request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the server may take to index every line after the last acknowledgement.
const INDEXED_WITHIN: Duration = Duration::from_secs(900);

/// Hits asked for, as a user's first page.
const LIMIT: usize = 100;

/// Arguments of `strata-bench search-http`.
#[derive(Debug, Args)]
pub struct SearchHttpArgs {
    /// Base URL of the server.
    #[arg(long, default_value = strata_client::DEFAULT_BASE_URL)]
    url: String,
    /// API key, sent as `Authorization: Bearer <key>`; omit for a server running with --no-auth.
    #[arg(long, env = "STRATA_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// NDJSON file the lines are written to, and ripgrep reads.
    #[arg(long)]
    file: PathBuf,
    /// Lines to generate, ingest and search.
    #[arg(long, default_value_t = 1_000_000)]
    lines: u64,
    /// Every K-th line's message gets the extra token "xyzzyrare".
    #[arg(long, default_value_t = 10_000)]
    rare_every: u64,
    /// Timestamps are spread evenly over this many minutes, ending a minute before the run.
    #[arg(long, default_value_t = 50)]
    minutes: u64,
    /// Lines per ingest request.
    #[arg(long, default_value_t = 1000)]
    batch_lines: usize,
    /// Ingest requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Measured searches of each query: a search takes a few milliseconds, so enough of them
    /// for a p50 that one busy moment of a shared machine does not move.
    #[arg(long, default_value_t = 500)]
    iterations: usize,
    /// Unmeasured searches of each query before the measured ones.
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Measured ripgrep runs of each query (after one unmeasured run).
    #[arg(long, default_value_t = 10)]
    rg_iterations: usize,
    /// The ripgrep binary.
    #[arg(long, default_value = "rg")]
    rg: String,
    /// Print one JSON object instead of a human-readable summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    workload: WorkloadArgs,
}

/// One query of the benchmark: what the search API is asked, and what ripgrep is.
struct QuerySpec {
    name: &'static str,
    q: &'static str,
    source_id: Option<&'static str>,
    level: Option<&'static str>,
    rg: &'static [&'static str],
}

/// The queries measured. Words come from the generator's templates: "upstream" is in most lines
/// (a debug template and the padding), "accepted connection" starts about one info line in four,
/// "failed" is in both error templates, and host-00001 is the most frequent source. The generator
/// writes a line's keys in order (`level`, `message`, ..., `source_id`), which the last pattern
/// relies on. Every line with the rare token also carries the trace id [`TRACE_PROBE`], a trace of
/// as many lines (the generator's other trace ids are random, each on one line).
const QUERIES: [QuerySpec; 5] = [
    QuerySpec { name: "rare_term", q: RARE_TOKEN, source_id: None, level: None, rg: &["--ignore-case", RARE_TOKEN] },
    QuerySpec { name: "common_term", q: "upstream", source_id: None, level: None, rg: &["--ignore-case", "upstream"] },
    QuerySpec {
        name: "phrase",
        q: "\"accepted connection\"",
        source_id: None,
        level: None,
        rg: &["--ignore-case", "accepted connection"],
    },
    QuerySpec {
        name: "term_source_level",
        q: "failed",
        source_id: Some("host-00001"),
        level: Some("error"),
        rg: &["--ignore-case", r#""level":"error","message":".*failed.*"source_id":"host-00001""#],
    },
    QuerySpec {
        name: "trace_id",
        q: "trace_id:5ca1ab1e0ddba11c0ffee5e1ec7ab1e5",
        source_id: None,
        level: None,
        rg: &["--ignore-case", TRACE_PROBE],
    },
];

/// The trace id of the lines with the rare token.
const TRACE_PROBE: &str = "5ca1ab1e0ddba11c0ffee5e1ec7ab1e5";

/// The result of a run, as printed with `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    lines: u64,
    file_bytes: u64,
    ingest_seconds: f64,
    /// From the last acknowledgement until the histogram API counted every line.
    indexed_after_seconds: f64,
    queries: Vec<QueryReport>,
}

#[derive(Debug, Serialize)]
pub struct QueryReport {
    name: &'static str,
    q: &'static str,
    source_id: Option<&'static str>,
    level: Option<&'static str>,
    /// Lines the histogram API counts for the query over the whole range.
    matches: u64,
    /// Hits on the first page.
    hits: usize,
    search_ms: Summary,
    rg_args: Vec<&'static str>,
    rg_count: u64,
    rg_ms: Summary,
    /// ripgrep's p50 over the search API's p50.
    speedup_p50: f64,
}

#[derive(Deserialize)]
struct SearchAnswer {
    hits: Vec<Value>,
}

#[derive(Deserialize)]
struct HistogramAnswer {
    buckets: Vec<BucketAnswer>,
}

#[derive(Deserialize)]
struct BucketAnswer {
    count: u64,
}

#[derive(Deserialize)]
struct IngestAnswer {
    accepted: u64,
}

/// The search API's endpoints and the time range every query covers.
struct Api {
    client: reqwest::Client,
    ingest: Url,
    search: Url,
    histogram: Url,
    from_ms: i64,
    to_ms: i64,
}

pub fn run(args: SearchHttpArgs) -> anyhow::Result<()> {
    ensure!(args.lines > 0, "--lines must be at least 1");
    ensure!(args.rare_every > 0, "--rare-every must be at least 1");
    ensure!(args.batch_lines > 0 && args.concurrency > 0, "--batch-lines and --concurrency must be at least 1");
    ensure!(args.iterations > 0 && args.rg_iterations > 0, "--iterations and --rg-iterations must be at least 1");
    crate::args::check_url(&args.url)?;
    let rg_version = Command::new(&args.rg)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {:?} (install ripgrep)", args.rg))?;
    ensure!(rg_version.status.success(), "{} --version failed", args.rg);
    let end_ms = now_ms() - 60_000;
    let start_ms = end_ms - i64::try_from(args.minutes).unwrap_or(i64::MAX / 2) * 60_000;
    let file_bytes = write_lines(&args, start_ms, end_ms)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let base = Url::parse(&args.url)?;
    let api = Api {
        client: crate::args::http_client(HeaderMap::new(), args.api_key.as_deref(), REQUEST_TIMEOUT, false)?,
        ingest: base.join("/ingest/v1/logs")?,
        search: base.join("/query/v1/logs/search")?,
        histogram: base.join("/query/v1/logs/histogram")?,
        from_ms: start_ms - 1,
        to_ms: end_ms + 1,
    };
    let report = runtime.block_on(measure(&args, &api, file_bytes))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_summary(&report);
    }
    Ok(())
}

/// Writes the generated lines to `--file`; returns its size.
fn write_lines(args: &SearchHttpArgs, start_ms: i64, end_ms: i64) -> anyhow::Result<u64> {
    let mut workload = Workload::new(args.workload.config())?;
    let file = File::create(&args.file).with_context(|| format!("cannot create {}", args.file.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let span = (end_ms - start_ms) as f64;
    for i in 0..args.lines {
        let ts = start_ms + (span * i as f64 / args.lines as f64) as i64;
        let mut line = workload.log(ts);
        if (i + 1).is_multiple_of(args.rare_every)
            && let Some(Value::String(message)) = line.get_mut("message")
        {
            message.push(' ');
            message.push_str(RARE_TOKEN);
            line["trace_id"] = Value::String(TRACE_PROBE.into());
        }
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(std::fs::metadata(&args.file)?.len())
}

async fn measure(args: &SearchHttpArgs, api: &Api, file_bytes: u64) -> anyhow::Result<Report> {
    let started = Instant::now();
    ingest_file(args, api).await?;
    let ingest_seconds = started.elapsed().as_secs_f64();
    let acked = Instant::now();
    loop {
        let counted = count(api, &QuerySpec { name: "all", q: "", source_id: None, level: None, rg: &[] }).await?;
        if counted >= args.lines {
            ensure!(counted == args.lines, "the server counts {counted} lines, {} were ingested", args.lines);
            break;
        }
        if acked.elapsed() > INDEXED_WITHIN {
            bail!("{counted} of {} lines searchable {INDEXED_WITHIN:?} after the last acknowledgement", args.lines);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let indexed_after_seconds = acked.elapsed().as_secs_f64();
    let mut queries = Vec::new();
    for spec in &QUERIES {
        let matches = count(api, spec).await?;
        let mut hits = 0;
        for _ in 0..args.warmup {
            hits = search(api, spec).await?;
        }
        let mut samples = Vec::with_capacity(args.iterations);
        for _ in 0..args.iterations {
            let t = Instant::now();
            hits = search(api, spec).await?;
            samples.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ensure!(
            hits == LIMIT.min(usize::try_from(matches).unwrap_or(usize::MAX)),
            "{}: {hits} hits on the first page of {matches} matches",
            spec.name
        );
        let (rg_count, rg_ms) = ripgrep(args, spec)?;
        let search_ms = Summary::of(samples);
        queries.push(QueryReport {
            name: spec.name,
            q: spec.q,
            source_id: spec.source_id,
            level: spec.level,
            matches,
            hits,
            speedup_p50: rg_ms.p50 / search_ms.p50,
            search_ms,
            rg_args: spec.rg.to_vec(),
            rg_count,
            rg_ms,
        });
    }
    Ok(Report { lines: args.lines, file_bytes, ingest_seconds, indexed_after_seconds, queries })
}

/// Sends the file in bodies of `--batch-lines` lines, `--concurrency` at once.
async fn ingest_file(args: &SearchHttpArgs, api: &Api) -> anyhow::Result<()> {
    let in_flight = Arc::new(Semaphore::new(args.concurrency));
    let mut tasks = Vec::new();
    let mut reader = BufReader::with_capacity(1 << 20, File::open(&args.file)?);
    let mut body = Vec::new();
    let mut lines = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n > 0 {
            body.extend_from_slice(&line);
            lines += 1;
        }
        if (n == 0 && lines > 0) || lines == args.batch_lines as u64 {
            let permit = Arc::clone(&in_flight).acquire_owned().await?;
            let request = api
                .client
                .post(api.ingest.clone())
                .header(CONTENT_TYPE, "application/x-ndjson")
                .body(Bytes::from(std::mem::take(&mut body)));
            let sent = lines;
            tasks.push(tokio::spawn(async move {
                let answer = send_ingest(request, sent).await;
                drop(permit);
                answer
            }));
            lines = 0;
        }
        if n == 0 {
            break;
        }
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

async fn send_ingest(request: reqwest::RequestBuilder, lines: u64) -> anyhow::Result<()> {
    let response = request.send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    ensure!(status == StatusCode::OK, "ingest answered {status}: {}", String::from_utf8_lossy(&body).trim());
    let answer: IngestAnswer = serde_json::from_slice(&body)?;
    ensure!(answer.accepted == lines, "{} of {lines} lines accepted", answer.accepted);
    Ok(())
}

fn with_query(api: &Api, base: &Url, spec: &QuerySpec) -> Url {
    let mut url = base.clone();
    {
        let mut pairs = url.query_pairs_mut();
        if !spec.q.is_empty() {
            pairs.append_pair("q", spec.q);
        }
        if let Some(s) = spec.source_id {
            pairs.append_pair("source_id", s);
        }
        if let Some(l) = spec.level {
            pairs.append_pair("level", l);
        }
        pairs.append_pair("from", &api.from_ms.to_string()).append_pair("to", &api.to_ms.to_string());
    }
    url
}

/// Lines matching `spec` over the whole range, by the histogram API.
async fn count(api: &Api, spec: &QuerySpec) -> anyhow::Result<u64> {
    let mut url = with_query(api, &api.histogram, spec);
    url.query_pairs_mut().append_pair("interval", "1h");
    let response = api.client.get(url).send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    ensure!(status == StatusCode::OK, "histogram answered {status}: {}", String::from_utf8_lossy(&body).trim());
    let answer: HistogramAnswer = serde_json::from_slice(&body)?;
    Ok(answer.buckets.iter().map(|b| b.count).sum())
}

/// One search for the first page of `spec`; returns its number of hits.
async fn search(api: &Api, spec: &QuerySpec) -> anyhow::Result<usize> {
    let mut url = with_query(api, &api.search, spec);
    url.query_pairs_mut().append_pair("limit", &LIMIT.to_string());
    let response = api.client.get(url).send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    ensure!(status == StatusCode::OK, "search answered {status}: {}", String::from_utf8_lossy(&body).trim());
    let answer: SearchAnswer = serde_json::from_slice(&body)?;
    Ok(answer.hits.len())
}

/// `rg --count` of `spec`'s pattern over the file: its count and timings.
fn ripgrep(args: &SearchHttpArgs, spec: &QuerySpec) -> anyhow::Result<(u64, Summary)> {
    let run = |file: &Path| -> anyhow::Result<(u64, f64)> {
        let t = Instant::now();
        let out = Command::new(&args.rg).arg("--count").args(spec.rg).arg(file).output()?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        // Exit status 1 means no line matched.
        let count = match out.status.code() {
            Some(0) => String::from_utf8_lossy(&out.stdout).trim().parse()?,
            Some(1) => 0,
            _ => bail!("rg {:?} failed: {}", spec.rg, String::from_utf8_lossy(&out.stderr).trim()),
        };
        Ok((count, ms))
    };
    let (count, _) = run(&args.file)?;
    let mut samples = Vec::with_capacity(args.rg_iterations);
    for _ in 0..args.rg_iterations {
        let (c, ms) = run(&args.file)?;
        ensure!(c == count, "rg counted {c} and then {count}");
        samples.push(ms);
    }
    Ok((count, Summary::of(samples)))
}

fn print_summary(report: &Report) {
    println!(
        "{} lines ({} bytes of NDJSON) ingested in {:.1} s; all searchable {:.1} s after the last acknowledgement",
        report.lines, report.file_bytes, report.ingest_seconds, report.indexed_after_seconds
    );
    println!("query                matches  search p50/p99 ms   rg count   rg p50 ms   rg/search");
    for q in &report.queries {
        println!(
            "{:<18} {:>9}  {:>8.2} / {:<8.2} {:>9}  {:>10.1}   {:>8.1}x",
            q.name, q.matches, q.search_ms.p50, q.search_ms.p99, q.rg_count, q.rg_ms.p50, q.speedup_p50
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_query_asks_for_the_probe_id() {
        let trace = QUERIES.iter().find(|q| q.name == "trace_id").unwrap();
        assert_eq!(trace.q.strip_prefix("trace_id:"), Some(TRACE_PROBE));
        assert!(TRACE_PROBE.len() == 32 && TRACE_PROBE.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
