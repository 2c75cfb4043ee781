//! `GET|POST /api/v1/query` and `/api/v1/query_range`: PromQL through `strata-query` over one
//! tenant's metric store. Parameters are read and checked in Prometheus's order with its error
//! texts; the evaluation runs off the async runtime under the `[query]` limits; the answer is
//! written in Prometheus's JSON on the same blocking thread, as it may hold millions of points.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use strata_model::TenantId;
use strata_query::tsdb::TsdbStorage;
use strata_query::{Engine, Limits, QueryError, QueryResult, Union, Value};

use super::params::{Params, parse_duration};
use super::{PromError, read_request, render};
use crate::server::App;

/// Points per series of a range query, as Prometheus: a week at a 60 s step, a year at 1 h.
const POINTS_PER_SERIES_MAX: i64 = 11_000;
/// How deep a query's syntax tree may nest, as bounded by [`depth_bound`]. Parsing and
/// evaluation recurse once per level on a blocking thread's 2 MiB stack, and a stack overflow
/// aborts the whole server; dashboards and rules nest a few dozen levels at most.
const QUERY_DEPTH_MAX: usize = 256;
/// How long past its timeout a query's answer is still awaited before the client is told it
/// timed out: the engine stops itself at the timeout and its own error says where; this is for
/// an engine that overruns, and is a tenth of the timeout so that a client asking for 50 ms
/// gets its answer in about that.
const TIMEOUT_GRACE_MAX: Duration = Duration::from_secs(1);

enum Eval {
    Instant { t_ms: i64 },
    Range { start_ms: i64, end_ms: i64, step_ms: i64 },
}

/// A parsed request, ready to run.
struct Request {
    tenant: TenantId,
    query: String,
    eval: Eval,
    timeout: Option<Duration>,
    limit: usize,
}

pub async fn instant(State(app): State<Arc<App>>, headers: HeaderMap, RawQuery(raw): RawQuery, body: Body) -> Response {
    let started = Instant::now();
    let answer = match read_request(&app, &headers, raw.as_deref(), body).await {
        Ok((tenant, params)) => match instant_request(tenant, &params) {
            Ok(req) => run(&app, req).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    respond("query", started, answer)
}

pub async fn range(State(app): State<Arc<App>>, headers: HeaderMap, RawQuery(raw): RawQuery, body: Body) -> Response {
    let started = Instant::now();
    let answer = match read_request(&app, &headers, raw.as_deref(), body).await {
        Ok((tenant, params)) => match range_request(tenant, &params) {
            Ok(req) => run(&app, req).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    respond("query_range", started, answer)
}

/// Prometheus's `api.query`: `time` (default now), `timeout`, then the query.
fn instant_request(tenant: TenantId, params: &Params) -> Result<Request, PromError> {
    let t_ms = params.time_or("time", now_ms()).map_err(|e| PromError::invalid_param("time", e))?;
    let timeout = timeout_param(params)?;
    let limit = limit_param(params)?;
    let query = query_param(params).map_err(|e| PromError::invalid_param("query", e))?;
    Ok(Request { tenant, query, eval: Eval::Instant { t_ms }, timeout, limit })
}

/// Prometheus's `api.queryRange`: `start`, `end`, `step`, the points per series, `timeout`,
/// then the query, whose errors it does not prefix with the parameter's name.
fn range_request(tenant: TenantId, params: &Params) -> Result<Request, PromError> {
    let start_ms = super::params::parse_time(params.get("start")).map_err(|e| PromError::invalid_param("start", e))?;
    let end_ms = super::params::parse_time(params.get("end")).map_err(|e| PromError::invalid_param("end", e))?;
    if end_ms < start_ms {
        return Err(PromError::invalid_param("end", "end timestamp must not be before start time"));
    }
    let step_ns = parse_duration(params.get("step")).map_err(|e| PromError::invalid_param("step", e))?;
    // Prometheus evaluates in milliseconds: a positive step under 1 ms would be 0 there (and
    // makes it divide by zero); refused here as the zero step it becomes.
    let step_ms = step_ns / 1_000_000;
    if step_ms <= 0 {
        return Err(PromError::invalid_param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    // Go's end.Sub(start) saturates at the largest Duration; so does this.
    let span_ns = (i128::from(end_ms) - i128::from(start_ms)) * 1_000_000;
    if span_ns.min(i128::from(i64::MAX)) / i128::from(step_ns) > i128::from(POINTS_PER_SERIES_MAX) {
        return Err(PromError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let timeout = timeout_param(params)?;
    let limit = limit_param(params)?;
    let query = query_param(params).map_err(PromError::bad_data)?;
    Ok(Request { tenant, query, eval: Eval::Range { start_ms, end_ms, step_ms }, timeout, limit })
}

/// The `timeout` parameter; zero when it is negative.
fn timeout_param(params: &Params) -> Result<Option<Duration>, PromError> {
    match params.get("timeout") {
        "" => Ok(None),
        v => {
            let ns = parse_duration(v).map_err(|e| PromError::invalid_param("timeout", e))?;
            Ok(Some(Duration::from_nanos(ns.max(0) as u64)))
        }
    }
}

/// The `limit` parameter of Prometheus 3: at most this many series are returned, 0 for all.
fn limit_param(params: &Params) -> Result<usize, PromError> {
    match params.get("limit") {
        "" => Ok(0),
        v => match v.parse::<i64>() {
            Ok(n) if n < 0 => Err(PromError::invalid_param("limit", "limit must be non-negative")),
            Ok(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            Err(_) => Err(PromError::invalid_param("limit", format!("strconv.Atoi: parsing {v:?}: invalid syntax"))),
        },
    }
}

/// The query, refused before parsing when it is empty (with the parser's words, as Prometheus
/// answers) or nests deeper than this server can evaluate.
fn query_param(params: &Params) -> Result<String, String> {
    let query = params.get("query");
    if query.trim().is_empty() {
        return Err("1:1: parse error: no expression found in input".to_string());
    }
    let depth = depth_bound(query);
    if depth > QUERY_DEPTH_MAX {
        return Err(format!(
            "the query nests up to {depth} brackets and operators deep, more than the {QUERY_DEPTH_MAX} this server evaluates"
        ));
    }
    Ok(query.to_string())
}

/// An upper bound on the depth of a query's syntax tree: the most brackets open at once plus
/// every operator outside label matchers (a chain `a + b + c` nests one level per `+`). String
/// literals and comments are skipped.
fn depth_bound(query: &str) -> usize {
    let b = query.as_bytes();
    let (mut depth, mut depth_max, mut operators, mut braces) = (0usize, 0usize, 0usize, 0usize);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            quote @ (b'"' | b'\'' | b'`') => {
                i += 1;
                while i < b.len() && b[i] != quote {
                    i += if b[i] == b'\\' && quote != b'`' { 2 } else { 1 };
                }
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                depth_max = depth_max.max(depth);
                braces += usize::from(b[i] == b'{');
            }
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                braces = braces.saturating_sub(usize::from(b[i] == b'}'));
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' | b'=' | b'!' if braces == 0 => operators += 1,
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                    i += 1;
                }
                let word = &query[start..i];
                if braces == 0 && ["and", "or", "unless", "atan2"].iter().any(|k| word.eq_ignore_ascii_case(k)) {
                    operators += 1;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    depth_max + operators
}

/// Evaluates a request on a blocking thread and writes its answer there too.
///
/// A tenant already running `query.concurrent_per_tenant_max` queries gets 503 with
/// `Retry-After: 1` and Prometheus's own `unavailable` error type, not 429. 503 is what
/// Prometheus answers when it cannot evaluate now (timeout, cancellation, storage not ready);
/// its Go client (promtool, vmalert-style tools, query frontends) classes a 5xx as a
/// `server_error`, a transient condition worth retrying, and a 4xx as a `client_error`, the
/// caller's fault; Cortex-style query frontends retry 5xx and pass 4xx through. Grafana shows
/// either with the body's `error`. A dashboard opening many panels at once is not a client
/// misbehaving, so it should get the answer that invites a retry.
async fn run(app: &Arc<App>, req: Request) -> Result<Vec<u8>, PromError> {
    let cfg = &app.prom.cfg;
    let Ok(permit) = app.prom.slots(&req.tenant).try_acquire_owned() else {
        metrics::counter!("strata_promql_queries_refused_total", "reason" => "concurrency").increment(1);
        return Err(PromError::unavailable(
            format!(
                "tenant {:?} is already running {} queries, the most query.concurrent_per_tenant_max allows; retry shortly",
                req.tenant.as_str(),
                cfg.concurrent_per_tenant_max
            ),
            1,
        ));
    };
    let configured = Duration::from_millis(cfg.timeout_ms);
    let timeout = req.timeout.map_or(configured, |t| t.min(configured));
    if timeout.is_zero() {
        // Prometheus's answer to a query whose deadline passed before it started.
        return Err(PromError::query(&QueryError::Timeout("query queue")));
    }
    let engine = Engine::new(Limits {
        max_samples: cfg.samples_max,
        max_points_per_series: POINTS_PER_SERIES_MAX as usize,
        timeout,
        lookback_ms: cfg.lookback_delta_ms as i64,
    });
    let (store, rollups) = (app.tsdb.clone(), app.rollups.clone());
    let Request { tenant, query, eval, limit, .. } = req;
    let instant = matches!(eval, Eval::Instant { .. });
    let task = tokio::task::spawn_blocking(move || {
        // Held until evaluation ends, even when the client stopped waiting for it.
        let _permit = permit;
        // The engine holds the query to `samples_max` samples in memory at once, as Prometheus's
        // `--query.max-samples`; reads are not capped in total, so that an aggregation streamed
        // over many series can read more than it ever holds.
        // The raw series and the rollups' series, read as one.
        let storage = Union(TsdbStorage::new(&store, tenant.as_str()), TsdbStorage::new(&rollups, tenant.as_str()));
        let mut result = match eval {
            Eval::Instant { t_ms } => engine.instant(&storage, &query, t_ms),
            Eval::Range { start_ms, end_ms, step_ms } => engine.range(&storage, &query, start_ms, end_ms, step_ms),
        }?;
        if let (Eval::Range { .. }, Value::Matrix(m)) = (&eval, &mut result.value) {
            // As Prometheus sorts a range query's matrix.
            m.sort_by(|a, b| a.labels.cmp(&b.labels));
        }
        truncate(&mut result, limit);
        Ok::<_, QueryError>(render::success(&result))
    });
    let answer = match tokio::time::timeout(timeout + (timeout / 10).min(TIMEOUT_GRACE_MAX), task).await {
        Err(_) => Err(QueryError::Timeout("expression evaluation")),
        Ok(Err(e)) if e.is_panic() => {
            tracing::error!(error = %e, "promql evaluation panicked");
            return Err(PromError::internal(format!("query evaluation failed: {e}")));
        }
        Ok(Err(e)) => return Err(PromError::canceled(format!("query evaluation was canceled: {e}"))),
        Ok(Ok(answer)) => answer,
    };
    answer.map_err(|e| match e {
        // Prometheus names the parameter in an instant query's parse errors, not a range query's.
        QueryError::BadData(msg) if instant => PromError::invalid_param("query", msg),
        e => PromError::query(&e),
    })
}

/// At most `limit` series (0: all), with Prometheus's warning when some were left out.
fn truncate(result: &mut QueryResult, limit: usize) {
    let len = match &result.value {
        Value::Vector(v) => v.len(),
        Value::Matrix(m) => m.len(),
        _ => return,
    };
    if limit == 0 || len <= limit {
        return;
    }
    match &mut result.value {
        Value::Vector(v) => v.truncate(limit),
        Value::Matrix(m) => m.truncate(limit),
        _ => {}
    }
    result.annotations.warn("results truncated due to limit");
}

/// The HTTP answer, with the request counted by endpoint and status.
fn respond(endpoint: &'static str, started: Instant, answer: Result<Vec<u8>, PromError>) -> Response {
    let status = answer.as_ref().map_or_else(PromError::status, |_| StatusCode::OK);
    metrics::histogram!("strata_promql_request_seconds", "endpoint" => endpoint, "status" => status.as_str().to_string())
        .record(started.elapsed().as_secs_f64());
    tracing::debug!(
        endpoint,
        status = status.as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "promql request"
    );
    match answer {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => e.into_response(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_bound_counts_brackets_and_operators_outside_strings_and_matchers() {
        for (q, want) in [
            ("up", 0),
            ("sum(rate(x[5m]))", 3),
            (r#"up{job=~"a|b", le!="+Inf"}"#, 1),
            (r#"label_replace(up, "a", "(((", "b", "-+-")"#, 1),
            ("a + b * c", 2),
            ("a and b or c unless d", 3),
            ("atan2(a, b) / c", 3),
            ("# (((\nup", 0),
            ("-1", 1),
        ] {
            assert_eq!(depth_bound(q), want, "{q}");
        }
        let deep = format!("{}1{}", "(".repeat(300), ")".repeat(300));
        assert_eq!(depth_bound(&deep), 300);
        let params = Params::new(None, format!("query={}", "1%2B".repeat(300) + "1").as_bytes());
        let err = query_param(&params).unwrap_err();
        assert!(err.contains("300 brackets and operators deep"), "{err}");
    }

    /// Queries twice as deep as the guard lets through still evaluate on a blocking thread's
    /// stack (tokio's default, 2 MiB) in a debug build, whose frames are the largest; four
    /// times as deep overflowed it when this was written.
    #[test]
    fn queries_past_the_depth_limit_fit_a_blocking_threads_stack() {
        let n = QUERY_DEPTH_MAX * 2;
        let shapes = [
            format!("{}1{}", "(".repeat(n), ")".repeat(n)),
            vec!["1"; n + 1].join("+"),
            vec!["vector(1)"; n + 1].join(" * "),
            format!("{}1", "-".repeat(n)),
            format!("{}vector(1){}", "abs(".repeat(n), ")".repeat(n)),
            format!("{}vector(1){}", "sum(".repeat(n), ")".repeat(n)),
            format!("{}vector(1){}", "max_over_time(".repeat(n / 2), "[1m:1m])".repeat(n / 2)),
            vec!["vector(1)"; n + 1].join(" and "),
        ];
        for query in shapes {
            assert!(depth_bound(&query) <= n + 1, "{}", &query[..40]);
            let run = move || {
                let engine = Engine::new(Limits::default());
                let storage = strata_query::MemStorage::new();
                let instant = engine.instant(&storage, &query, 60_000).map(|_| ());
                let range = engine.range(&storage, &query, 0, 60_000, 15_000).map(|_| ());
                (instant, range)
            };
            let thread = std::thread::Builder::new().stack_size(2 << 20).spawn(run).unwrap();
            let (instant, range) = thread.join().unwrap();
            assert_eq!((instant, range), (Ok(()), Ok(())));
        }
    }
    fn req(params: &str) -> Result<Request, String> {
        range_request(TenantId::default_tenant(), &Params::new(Some(params), b"")).map_err(|e| e.msg)
    }

    /// Each error is what Prometheus 2.42 answered to the same parameters.
    #[test]
    fn range_parameters_are_checked_in_prometheus_order_and_words() {
        for (params, want) in [
            ("query=up&end=1&step=1", r#"invalid parameter "start": cannot parse "" to a valid timestamp"#),
            ("query=up&start=1&step=1", r#"invalid parameter "end": cannot parse "" to a valid timestamp"#),
            (
                "query=up&start=10&end=5&step=x",
                r#"invalid parameter "end": end timestamp must not be before start time"#,
            ),
            ("query=up&start=1&end=2", r#"invalid parameter "step": cannot parse "" to a valid duration"#),
            ("query=up&start=1&end=2&step=xx", r#"invalid parameter "step": cannot parse "xx" to a valid duration"#),
            (
                "query=up&start=1&end=5&step=0",
                "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
            ),
            ("query=up&start=1&end=5&step=-1s", r#"invalid parameter "step": cannot parse "-1s" to a valid duration"#),
            (
                "query=up&start=0&end=1&step=0.0001",
                "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
            ),
            (
                "query=up&start=0&end=11001&step=1",
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            ),
            (
                "query=up&start=-292273086-05-16T16:47:06Z&end=292277025-08-18T07:12:54.999999999Z&step=1d",
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            ),
            (
                "query=up&start=0&end=1&step=1&timeout=x",
                r#"invalid parameter "timeout": cannot parse "x" to a valid duration"#,
            ),
            (
                "query=up&start=0&end=1&step=1&limit=x",
                r#"invalid parameter "limit": strconv.Atoi: parsing "x": invalid syntax"#,
            ),
            ("query=up&start=0&end=1&step=1&limit=-1", r#"invalid parameter "limit": limit must be non-negative"#),
            ("query=&start=0&end=1&step=1", "1:1: parse error: no expression found in input"),
        ] {
            assert_eq!(req(params).err().as_deref(), Some(want), "{params}");
        }
        let ok = req("query=up&start=0&end=11000&step=1&timeout=1m30s&limit=5").unwrap();
        assert!(matches!(ok.eval, Eval::Range { start_ms: 0, end_ms: 11_000_000, step_ms: 1000 }));
        assert_eq!((ok.timeout, ok.limit, ok.query.as_str()), (Some(Duration::from_secs(90)), 5, "up"));
    }

    #[test]
    fn instant_parameters_are_checked_in_prometheus_order_and_words() {
        let req = |p: &str| instant_request(TenantId::default_tenant(), &Params::new(Some(p), b"")).map_err(|e| e.msg);
        for (params, want) in [
            (
                "query=up&time=abc&timeout=x",
                r#"invalid parameter "time": Invalid time value for 'time': cannot parse "abc" to a valid timestamp"#,
            ),
            ("query=&timeout=x", r#"invalid parameter "timeout": cannot parse "x" to a valid duration"#),
            ("", r#"invalid parameter "query": 1:1: parse error: no expression found in input"#),
            ("query=%20%20", r#"invalid parameter "query": 1:1: parse error: no expression found in input"#),
        ] {
            assert_eq!(req(params).err().as_deref(), Some(want), "{params}");
        }
        let before = now_ms();
        let ok = req("query=up").unwrap();
        let Eval::Instant { t_ms } = ok.eval else { panic!("an instant query") };
        assert!(t_ms >= before && t_ms <= now_ms(), "time defaults to now");
        let ok = req("query=up&time=2015-07-01T20:10:51.781Z&timeout=-1").unwrap();
        assert!(matches!(ok.eval, Eval::Instant { t_ms: 1_435_781_451_781 }));
        assert_eq!(ok.timeout, Some(Duration::ZERO));
    }

    #[test]
    fn limits_truncate_series_with_a_warning() {
        let sample = |v| strata_query::Sample { labels: vec![], t: 0, v };
        let mut r =
            QueryResult { value: Value::Vector(vec![sample(1.0), sample(2.0)]), annotations: Default::default() };
        truncate(&mut r, 0);
        truncate(&mut r, 2);
        assert!(r.annotations.warnings.is_empty());
        truncate(&mut r, 1);
        assert_eq!(r.value, Value::Vector(vec![sample(1.0)]));
        assert_eq!(r.annotations.warnings, ["results truncated due to limit"]);
    }
}
