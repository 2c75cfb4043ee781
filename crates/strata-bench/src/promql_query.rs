//! `strata-bench promql-query`: times one PromQL query through the Prometheus HTTP API
//! (`/api/v1/query` or `/api/v1/query_range`) of Strata, Prometheus or VictoriaMetrics.
//!
//! The query runs once to warm caches, then `--runs` times one after another; each answer must be
//! a success with at least one series, and every run must give as many series as the first. A run
//! is timed from sending the request until the whole body has arrived, as a dashboard waits for it;
//! the body is parsed after the clock stops.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::Args;
use reqwest::header::HeaderMap;
use serde::Serialize;
use serde_json::Value;

use crate::summary::percentile;

/// Arguments of `strata-bench promql-query`.
#[derive(Debug, Args)]
pub struct PromqlQueryArgs {
    /// Base URL of the server (its `/api/v1/...` paths are appended).
    #[arg(long)]
    url: String,
    /// API key, sent as `Authorization: Bearer <key>`; omit for a server without authentication.
    #[arg(long, env = "STRATA_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The PromQL expression.
    #[arg(long)]
    query: String,
    /// Evaluation time of an instant query (Unix seconds or RFC 3339).
    #[arg(long, conflicts_with_all = ["start", "end"])]
    time: Option<String>,
    /// Start of a range query (Unix seconds or RFC 3339).
    #[arg(long, requires_all = ["end", "step"])]
    start: Option<String>,
    /// End of a range query.
    #[arg(long, requires = "start")]
    end: Option<String>,
    /// Step of a range query (`15s`, or seconds).
    #[arg(long, requires = "start")]
    step: Option<String>,
    /// Timed runs, after one warm-up run.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Name of the server in the report.
    #[arg(long, default_value = "server")]
    label: String,
    /// Time allowed for one request, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
}

/// When a query is evaluated.
#[derive(Debug, Clone, PartialEq)]
pub enum Eval {
    /// At one time (`/api/v1/query`).
    Instant { time: String },
    /// At every step from start to end (`/api/v1/query_range`).
    Range { start: String, end: String, step: String },
}

/// A client of one server's Prometheus query API.
pub struct QueryApi {
    client: reqwest::Client,
    base_url: String,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Series of a vector or matrix; 1 for a scalar.
    pub series: usize,
    /// Values in the answer: one per series of a vector, every point of a matrix.
    pub points: usize,
    /// The value of the first series at its first point, if there is one.
    pub first_value: Option<f64>,
    pub body_bytes: usize,
}

impl QueryApi {
    /// A client of the server at `base_url`, with `api_key` sent as a bearer token.
    pub fn new(base_url: &str, api_key: Option<&str>, timeout: Duration) -> anyhow::Result<QueryApi> {
        crate::args::check_url(base_url)?;
        let client = crate::args::http_client(HeaderMap::new(), api_key, timeout, true)?;
        Ok(QueryApi { client, base_url: base_url.trim_end_matches('/').to_owned() })
    }

    /// Runs `query` once; returns how long the server took to send the whole answer, and the answer.
    /// An error answer, or one that is not Prometheus's JSON, is an error.
    pub async fn run(&self, query: &str, eval: &Eval) -> anyhow::Result<(Duration, Answer)> {
        let (path, form) = match eval {
            Eval::Instant { time } => ("query", vec![("query", query), ("time", time.as_str())]),
            Eval::Range { start, end, step } => (
                "query_range",
                vec![("query", query), ("start", start.as_str()), ("end", end.as_str()), ("step", step)],
            ),
        };
        let url = format!("{}/api/v1/{path}", self.base_url);
        let sent = Instant::now();
        let response = self.client.post(&url).form(&form).send().await.with_context(|| format!("POST {url} failed"))?;
        let status = response.status();
        let body = response.bytes().await.with_context(|| format!("POST {url} failed reading the answer"))?;
        let took = sent.elapsed();
        ensure!(status.is_success(), "POST {url} answered {status}: {}", String::from_utf8_lossy(&body));
        let answer =
            parse_answer(&body).with_context(|| format!("POST {url} answered {status} with an unexpected body"))?;
        Ok((took, answer))
    }
}

/// Reads the `data` of a Prometheus API answer.
fn parse_answer(body: &[u8]) -> anyhow::Result<Answer> {
    let json: Value = serde_json::from_slice(body).context("the body is not JSON")?;
    let status = json.get("status").and_then(Value::as_str);
    ensure!(status == Some("success"), "status is {status:?}, not \"success\": {json}");
    let data = json.get("data").context("no data")?;
    let result = data.get("result").context("no data.result")?;
    let value_of = |pair: &Value| pair.get(1).and_then(Value::as_str).and_then(|text| text.parse::<f64>().ok());
    let (series, points, first_value) = match data.get("resultType").and_then(Value::as_str) {
        Some("scalar" | "string") => (1, 1, value_of(result)),
        Some("vector") => {
            let result = result.as_array().context("data.result of a vector is not an array")?;
            let first = result.first().and_then(|sample| sample.get("value")).and_then(value_of);
            (result.len(), result.len(), first)
        }
        Some("matrix") => {
            let result = result.as_array().context("data.result of a matrix is not an array")?;
            let values = |series: &Value| series.get("values").and_then(Value::as_array).map_or(0, Vec::len);
            let first = result
                .first()
                .and_then(|series| series.get("values"))
                .and_then(|values| values.get(0))
                .and_then(value_of);
            (result.len(), result.iter().map(values).sum(), first)
        }
        other => bail!("data.resultType is {other:?}"),
    };
    Ok(Answer { series, points, first_value, body_bytes: body.len() })
}

/// The result of a run, printed as one JSON object.
#[derive(Debug, Serialize)]
struct Report {
    label: String,
    url: String,
    query: String,
    /// `instant` or `range`.
    kind: &'static str,
    runs: usize,
    median_ms: f64,
    p90_ms: f64,
    min_ms: f64,
    max_ms: f64,
    series: usize,
    points: usize,
    body_bytes: usize,
    warm_up_ms: f64,
}

/// Runs the benchmark and prints its report.
pub fn run(args: PromqlQueryArgs) -> anyhow::Result<()> {
    ensure!(args.runs >= 1, "runs must be at least 1, got {}", args.runs);
    let eval = match (args.time, args.start, args.end, args.step) {
        (Some(time), None, None, None) => Eval::Instant { time },
        (None, Some(start), Some(end), Some(step)) => Eval::Range { start, end, step },
        _ => bail!("give either --time, or --start, --end and --step"),
    };
    let api = QueryApi::new(&args.url, args.api_key.as_deref(), Duration::from_secs(args.timeout_s))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the tokio runtime")?;
    let query = args.query.as_str();
    let (warm_up, first) = runtime.block_on(api.run(query, &eval))?;
    ensure!(first.series > 0, "{}: the query answered no series: {query}", args.label);
    let mut took_ms = Vec::with_capacity(args.runs);
    for run in 1..=args.runs {
        let (took, answer) = runtime.block_on(api.run(query, &eval))?;
        ensure!(
            answer.series == first.series,
            "{}: run {run} answered {} series, the warm-up {}: {query}",
            args.label,
            answer.series,
            first.series
        );
        took_ms.push(took.as_secs_f64() * 1000.0);
    }
    took_ms.sort_by(f64::total_cmp);
    let report = Report {
        label: args.label,
        url: args.url,
        query: args.query,
        kind: if matches!(eval, Eval::Instant { .. }) { "instant" } else { "range" },
        runs: args.runs,
        median_ms: percentile(&took_ms, 0.5),
        p90_ms: percentile(&took_ms, 0.9),
        min_ms: took_ms[0],
        max_ms: took_ms[took_ms.len() - 1],
        series: first.series,
        points: first.points,
        body_bytes: first.body_bytes,
        warm_up_ms: warm_up.as_secs_f64() * 1000.0,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_prometheus_answers() {
        let cases: [(&str, Option<Answer>); 6] = [
            (
                r#"{"status":"success","data":{"resultType":"matrix","result":[
                    {"metric":{"job":"a"},"values":[[1,"2.5"],[2,"3"]]},{"metric":{"job":"b"},"values":[[1,"1"]]}]}}"#,
                Some(Answer { series: 2, points: 3, first_value: Some(2.5), body_bytes: 0 }),
            ),
            (
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"42"]}]}}"#,
                Some(Answer { series: 1, points: 1, first_value: Some(42.0), body_bytes: 0 }),
            ),
            (
                r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
                Some(Answer { series: 0, points: 0, first_value: None, body_bytes: 0 }),
            ),
            (
                r#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#,
                Some(Answer { series: 1, points: 1, first_value: Some(f64::NAN), body_bytes: 0 }),
            ),
            (r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#, None),
            (r#"{"status":"success","data":{"resultType":"tensor","result":[]}}"#, None),
        ];
        for (body, expected) in cases {
            let got = parse_answer(body.as_bytes()).ok().map(|answer| Answer { body_bytes: 0, ..answer });
            match (&got, &expected) {
                // NaN is not equal to itself.
                (Some(got), Some(expected)) if expected.first_value.is_some_and(f64::is_nan) => {
                    assert!(got.first_value.is_some_and(f64::is_nan), "{body}");
                    assert_eq!((got.series, got.points), (expected.series, expected.points), "{body}");
                }
                _ => assert_eq!(got, expected, "{body}"),
            }
        }
    }
}
