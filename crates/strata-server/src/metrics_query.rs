//! `GET|POST /query/v1/metrics`: the native metrics query over `strata-tsdb`. This file reads
//! the parameters from the request into a `strata_tsdb::NativeQuery`, runs it over the store's
//! querier and writes the answer; what the query computes is in `strata_tsdb::query`.
//!
//! Parameters, from the query string and, for POST, a form or a JSON object:
//!
//! - `name` (required): the metric name.
//! - `labels` (repeatable, all must hold): `k:v` or `k=v` (equal), `k!=v`, `k=~re`, `k!~re` (regexes
//!   anchored at both ends, as in Prometheus). The value is everything after the operator, commas
//!   included, so give one filter per `labels`. An absent label has the value `""`: `k:` selects the
//!   series without `k`. At most `LABEL_FILTERS_MAX`.
//! - `from`, `to`: Unix milliseconds or RFC 3339, both inclusive; `to` defaults to now and `from`
//!   to one hour before `to`.
//! - `step`: milliseconds, or a duration such as `500ms`, `30s`, `5m`, `1h`, `1d`, `1w`. By default
//!   the smallest of 1, 2, 5, 10, 20, 50, 100, 200, 500 ms, 1, 2, 5, 10, 15, 30 s, 1, 2, 5, 10, 15,
//!   30 min, 1, 2, 3, 6, 12 h, then whole days, that gives at most `DEFAULT_POINTS_MAX` points.
//!   A step giving more than `POINTS_MAX` points per series is refused, as Prometheus does.
//! - `agg`: `sum`, `avg`, `min`, `max`, `count`, or a percentile `p1` to `p99` (`p50`, `p90`, `p99`).
//! - `group_by` (comma-separated or repeatable): label names, at most `GROUP_BY_MAX`.
//! - `limit`: series per page, default `LIMIT_DEFAULT`, at most `LIMIT_MAX`.
//! - `cursor`: the previous answer's `next_cursor`, unchanged.
//!
//! Any other parameter, or a single-valued one given twice, is refused so that a typo cannot
//! silently widen a query. An empty value counts as absent (except for `name`).
//!
//! A page ends after `limit` series, or earlier once it holds a million points (but always has
//! one series), so follow `next_cursor` until it is absent rather than counting series. The
//! cursor is the last label set of the page, so pages stay consistent while series come and go:
//! no series is returned twice, and none present throughout is skipped. It carries a checksum
//! and the fingerprint of `name`, `labels` and `group_by`: a damaged cursor or one from another
//! query is refused.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use strata_gateway::ApiError;
use strata_tsdb::query::{TIME_MS_MAX, bucket_count};
use strata_tsdb::{Agg, LabelSet, Matcher, MatcherError, NativeQuery, QueryAnswer, QueryError};

use crate::server::App;

/// Points one output series may have, as in Prometheus.
pub const POINTS_MAX: u64 = 11_000;
/// Points per series the default step aims at.
pub const DEFAULT_POINTS_MAX: u64 = 300;
/// The range when `from` is absent.
pub const DEFAULT_RANGE_MS: i64 = 3_600_000;
pub const LIMIT_DEFAULT: usize = 100;
/// Series one page may have.
pub const LIMIT_MAX: usize = 10_000;
/// `labels` filters one query may have.
pub const LABEL_FILTERS_MAX: usize = 64;
/// Labels one query may group by.
pub const GROUP_BY_MAX: usize = 30;
/// Longest cursor accepted; a cursor is a hex-encoded label set, so this bounds the work to decode it.
pub const CURSOR_BYTES_MAX: usize = 262_144;

const PARAMS: [&str; 9] = ["name", "labels", "from", "to", "step", "agg", "group_by", "limit", "cursor"];
/// Version 2: the fingerprint and the checksum are `strata_model::stable_hash` (64 bits).
const CURSOR_VERSION: u8 = 2;
/// Longest cursor quoted back in an error message.
const CURSOR_QUOTE_BYTES_MAX: usize = 64;

/// Why the parameters do not make a query: every variant is the caller's doing.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamError {
    MissingName,
    UnknownParameter(String),
    Repeated {
        param: &'static str,
        count: usize,
    },
    MetricName(String),
    LabelFilter(String),
    LabelRegex {
        filter: String,
        source: MatcherError,
    },
    TooManyLabelFilters(usize),
    GroupBy(String),
    TooManyGroupBy(usize),
    Time {
        param: &'static str,
        value: String,
    },
    Range {
        from_ms: i64,
        to_ms: i64,
    },
    Step(String),
    TooManyPoints {
        step_ms: i64,
        points: u64,
        from_ms: i64,
        to_ms: i64,
    },
    Agg(String),
    Limit(String),
    Cursor(String),
    CursorQuery,
    /// The parameters passed every check here and `NativeQuery::new` still refused them.
    Query(QueryError),
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamError::MissingName => write!(f, "parameter \"name\" is required"),
            ParamError::UnknownParameter(p) => {
                write!(
                    f,
                    "parameter {p:?} is not known; use name, labels, from, to, step, agg, group_by, limit or cursor"
                )
            }
            ParamError::Repeated { param, count } => {
                write!(f, "parameter {param:?} is given {count} times; it takes one value")
            }
            ParamError::MetricName(name) => write!(f, "name {name:?} is not a valid metric name"),
            ParamError::LabelFilter(filter) => {
                write!(f, "labels {filter:?} must be name:value, name=value, name!=value, name=~regex or name!~regex")
            }
            ParamError::LabelRegex { filter, source } => write!(f, "labels {filter:?}: {source}"),
            ParamError::TooManyLabelFilters(n) => {
                write!(f, "labels has {n} filters, more than label_filters_max {LABEL_FILTERS_MAX}")
            }
            ParamError::GroupBy(label) => write!(f, "group_by {label:?} is not a valid label name"),
            ParamError::TooManyGroupBy(n) => {
                write!(f, "group_by has {n} labels, more than group_by_max {GROUP_BY_MAX}")
            }
            ParamError::Time { param, value } => {
                write!(f, "{param} {value:?} must be Unix milliseconds or RFC 3339, from 1970 to 9999")
            }
            ParamError::Range { from_ms, to_ms } => {
                write!(f, "from {from_ms} is after to {to_ms} (to defaults to now)")
            }
            ParamError::Step(step) => write!(
                f,
                "step {step:?} must be a positive number of milliseconds or a duration such as 500ms, 30s, 5m, 1h, 1d"
            ),
            ParamError::TooManyPoints { step_ms, points, from_ms, to_ms } => write!(
                f,
                "step {step_ms}ms gives {points} points per series from {from_ms} to {to_ms}, more than points_max \
                 {POINTS_MAX}; use a larger step or a shorter range"
            ),
            ParamError::Agg(agg) => {
                write!(f, "agg {agg:?} must be sum, avg, min, max, count or a percentile p1 to p99")
            }
            ParamError::Limit(limit) => write!(f, "limit {limit:?} must be a whole number from 1 to {LIMIT_MAX}"),
            ParamError::Cursor(cursor) => {
                write!(f, "cursor {cursor:?} is not valid; pass the previous answer's next_cursor unchanged")
            }
            ParamError::CursorQuery => write!(f, "cursor belongs to a query with other name, labels or group_by"),
            ParamError::Query(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ParamError {}

fn query_error(e: QueryError) -> ApiError {
    if e.is_too_large() {
        return ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
    }
    // The parameters are checked before the query is built: anything else is the store's
    // failure or our own bug.
    ApiError::internal(e.to_string())
}

/// Parameters from the query string and, for POST, from a form or a JSON object. A JSON value
/// may be a string, a number or a list of them; `labels` may also be an object `{"k": "v"}`.
fn params(
    method: &Method,
    headers: &HeaderMap,
    raw: Option<&str>,
    body: &Bytes,
) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("query string does not parse: {e}")))?;
    if method != Method::POST || body.is_empty() {
        return Ok(pairs);
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let json = content_type.starts_with("application/json")
        || (content_type.is_empty() && body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{'));
    if !json {
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| ApiError::bad_request(format!("body is not a form: {e}")))?;
        pairs.extend(form);
        return Ok(pairs);
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("body is not JSON: {e}")))?;
    let Value::Object(obj) = v else { return Err(ApiError::bad_request("body must be a JSON object")) };
    for (key, v) in obj {
        let bad = || ApiError::bad_request(format!("parameter {key:?} must be a string, a number or a list of them"));
        let scalar = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        match v {
            Value::Null => {}
            Value::Array(items) => {
                for item in &items {
                    pairs.push((key.clone(), scalar(item).ok_or_else(bad)?));
                }
            }
            Value::Object(labels) if key == "labels" => {
                for (name, value) in &labels {
                    let value = value.as_str().ok_or_else(|| {
                        ApiError::bad_request(format!("labels {name:?} must have a string value, got {value}"))
                    })?;
                    pairs.push((key.clone(), format!("{name}:{value}")));
                }
            }
            other => pairs.push((key.clone(), scalar(&other).ok_or_else(bad)?)),
        }
    }
    Ok(pairs)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub async fn query(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let tenant = app.auth.tenant(&headers)?;
    let params = params(&method, &headers, raw.as_deref(), &body)?;
    let store = app.tsdb.clone();
    let now = now_ms();
    // Regexes, the read and the aggregation are all CPU work proportional to the data.
    let work = tokio::task::spawn_blocking(move || {
        let request = Request::parse(&params, now).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let answer = strata_tsdb::query::run(&store, tenant.as_str(), &request.query).map_err(query_error)?;
        tracing::debug!(
            tenant = tenant.as_str(),
            series_scanned = answer.series_scanned,
            samples_read = answer.samples_read,
            series = answer.series.len(),
            "metrics query"
        );
        let next_cursor =
            answer.series.last().filter(|_| answer.more).map(|s| encode_cursor(&s.labels, request.fingerprint));
        Ok::<_, ApiError>(render(&answer, next_cursor.as_deref(), started.elapsed().as_millis() as u64))
    });
    let result = match work.await {
        Ok(r) => r,
        Err(e) => Err(ApiError::internal(format!("metrics query task failed: {e}"))),
    };
    let status = match &result {
        Ok(_) => "200",
        Err(e) => e.status.as_str(),
    };
    metrics::histogram!("strata_metrics_query_request_seconds", "status" => status.to_string())
        .record(started.elapsed().as_secs_f64());
    let body = result?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// A request's query, and the fingerprint of what decides its output series' identities and
/// order (`name`, `labels`, `group_by`), so that a cursor fits only its own query.
#[derive(Debug)]
struct Request {
    query: NativeQuery,
    fingerprint: u64,
}

impl Request {
    /// Validates query-string pairs; `now_ms` is the default `to`.
    fn parse(params: &[(String, String)], now_ms: i64) -> Result<Request, ParamError> {
        // `_` is the cache-busting parameter that browsers' and dashboards' HTTP clients add.
        if let Some((k, _)) = params.iter().find(|(k, _)| k != "_" && !PARAMS.contains(&k.as_str())) {
            return Err(ParamError::UnknownParameter(k.clone()));
        }
        let single = |param: &'static str| -> Result<Option<&str>, ParamError> {
            let values: Vec<&str> =
                params.iter().filter(|(k, v)| k == param && !v.is_empty()).map(|(_, v)| v.as_str()).collect();
            match values.len() {
                0 => Ok(None),
                1 => Ok(Some(values[0])),
                count => Err(ParamError::Repeated { param, count }),
            }
        };
        let name = single("name")?.ok_or(ParamError::MissingName)?.to_string();
        if !strata_model::is_valid_metric_name(&name) {
            return Err(ParamError::MetricName(name));
        }

        let raw_filters: Vec<&str> =
            params.iter().filter(|(k, v)| k == "labels" && !v.is_empty()).map(|(_, v)| v.as_str()).collect();
        if raw_filters.len() > LABEL_FILTERS_MAX {
            return Err(ParamError::TooManyLabelFilters(raw_filters.len()));
        }
        let mut filters = Vec::with_capacity(raw_filters.len());
        let mut matchers = Vec::with_capacity(raw_filters.len());
        for raw in raw_filters {
            let (label, op, value) = parse_filter(raw).ok_or_else(|| ParamError::LabelFilter(raw.to_string()))?;
            let regex = |negate| {
                Matcher::regex(label, value, negate)
                    .map_err(|source| ParamError::LabelRegex { filter: raw.to_string(), source })
            };
            matchers.push(match op {
                "=" => Matcher::Equal(label.to_string(), value.to_string()),
                "!=" => Matcher::NotEqual(label.to_string(), value.to_string()),
                "=~" => regex(false)?,
                _ => regex(true)?,
            });
            filters.push((label.to_string(), op, value.to_string()));
        }

        let mut group_by: Vec<String> = params
            .iter()
            .filter(|(k, _)| k == "group_by")
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(bad) = group_by.iter().find(|l| !strata_model::is_valid_label_name(l)) {
            return Err(ParamError::GroupBy(bad.clone()));
        }
        group_by.sort();
        group_by.dedup();
        if group_by.len() > GROUP_BY_MAX {
            return Err(ParamError::TooManyGroupBy(group_by.len()));
        }

        let now_ms = now_ms.clamp(0, TIME_MS_MAX);
        let to_ms = single("to")?.map(|v| parse_time("to", v)).transpose()?.unwrap_or(now_ms);
        let from_ms =
            single("from")?.map(|v| parse_time("from", v)).transpose()?.unwrap_or((to_ms - DEFAULT_RANGE_MS).max(0));
        if from_ms > to_ms {
            return Err(ParamError::Range { from_ms, to_ms });
        }
        let step_ms = match single("step")? {
            None => default_step_ms(from_ms, to_ms),
            Some(v) => {
                let step_ms = parse_duration_ms(v).ok_or_else(|| ParamError::Step(v.to_string()))?;
                let points = bucket_count(from_ms, to_ms, step_ms);
                if points > POINTS_MAX {
                    return Err(ParamError::TooManyPoints { step_ms, points, from_ms, to_ms });
                }
                step_ms
            }
        };
        let agg = single("agg")?.map(|v| parse_agg(v).ok_or_else(|| ParamError::Agg(v.to_string()))).transpose()?;
        let limit = match single("limit")? {
            None => LIMIT_DEFAULT,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=LIMIT_MAX).contains(n))
                .ok_or_else(|| ParamError::Limit(v.to_string()))?,
        };
        let fingerprint = fingerprint(&name, &filters, &group_by);
        let after = single("cursor")?.map(|c| decode_cursor(c, fingerprint)).transpose()?;

        // The checks above are stricter than those of `NativeQuery::new`, which so never refuses.
        let mut query = NativeQuery::new(name, matchers, from_ms, to_ms, step_ms)
            .map_err(ParamError::Query)?
            .with_group_by(group_by)
            .with_limit(limit);
        if let Some(agg) = agg {
            query = query.with_agg(agg);
        }
        if let Some(after) = after {
            query = query.with_after(after);
        }
        Ok(Request { query, fingerprint })
    }
}

/// Integer milliseconds, or RFC 3339.
fn parse_time(param: &'static str, v: &str) -> Result<i64, ParamError> {
    let err = || ParamError::Time { param, value: v.to_string() };
    let ms = if v.bytes().all(|b| b.is_ascii_digit()) {
        v.parse::<i64>().map_err(|_| err())?
    } else {
        strata_model::parse_timestamp(&serde_json::Value::String(v.to_string()))
            .map_err(|_| err())?
            .div_euclid(1_000_000)
    };
    if !(0..=TIME_MS_MAX).contains(&ms) {
        return Err(err());
    }
    Ok(ms)
}

/// A step: one of the durations every API takes, at most `TIME_MS_MAX`.
fn parse_duration_ms(s: &str) -> Option<i64> {
    strata_model::parse_duration_ms(s).filter(|ms| *ms <= TIME_MS_MAX)
}

/// The smallest round step giving at most `DEFAULT_POINTS_MAX` points.
fn default_step_ms(from_ms: i64, to_ms: i64) -> i64 {
    const ROUND_MS: [i64; 27] = [
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
        600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000,
    ];
    if let Some(&step) = ROUND_MS.iter().find(|&&s| bucket_count(from_ms, to_ms, s) <= DEFAULT_POINTS_MAX) {
        return step;
    }
    // Whole days: `range / step <= points - 2` keeps the count within `points` however the range
    // is aligned.
    const DAY_MS: i64 = 86_400_000;
    let per_point = (DEFAULT_POINTS_MAX - 2) as i64 * DAY_MS;
    let days = ((to_ms - from_ms) + per_point - 1) / per_point;
    let step = days.max(1) * DAY_MS;
    debug_assert!(bucket_count(from_ms, to_ms, step) <= DEFAULT_POINTS_MAX);
    step
}

/// `name op value`; `op` is `=` for both `:` and `=`.
fn parse_filter(s: &str) -> Option<(&str, &'static str, &str)> {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    let (label, rest) = s.split_at(end);
    if !strata_model::is_valid_label_name(label) {
        return None;
    }
    [("!=", "!="), ("!~", "!~"), ("=~", "=~"), ("=", "="), (":", "=")]
        .into_iter()
        .find_map(|(given, op)| rest.strip_prefix(given).map(|value| (label, op, value)))
}

/// `sum`, `avg`, `min`, `max`, `count`, or `p1` to `p99`.
fn parse_agg(s: &str) -> Option<Agg> {
    Some(match s {
        "sum" => Agg::Sum,
        "avg" => Agg::Avg,
        "min" => Agg::Min,
        "max" => Agg::Max,
        "count" => Agg::Count,
        _ => {
            let digits = s.strip_prefix('p')?;
            if digits.is_empty() || digits.len() > 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let p: u8 = digits.parse().ok()?;
            if !(1..=99).contains(&p) {
                return None;
            }
            Agg::Percentile(p)
        }
    })
}

/// The stable hash of the query's name, filters (in any order) and `group_by` (sorted, unique).
fn fingerprint(name: &str, filters: &[(String, &'static str, String)], group_by: &[String]) -> u64 {
    let mut filters: Vec<&(String, &'static str, String)> = filters.iter().collect();
    filters.sort();
    let mut buf = Vec::new();
    put_str(&mut buf, name);
    put_u32(&mut buf, filters.len());
    for (label, op, value) in filters {
        put_str(&mut buf, label);
        put_str(&mut buf, op);
        put_str(&mut buf, value);
    }
    put_u32(&mut buf, group_by.len());
    for l in group_by {
        put_str(&mut buf, l);
    }
    strata_model::stable_hash(&[&buf])
}

fn put_u32(buf: &mut Vec<u8>, n: usize) {
    // Label sets and their strings are far below 4 GiB (cursors are bounded by CURSOR_BYTES_MAX).
    buf.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_u32(buf, s.len());
    buf.extend_from_slice(s.as_bytes());
}

/// Hex of: version, fingerprint (u64 LE), label count, each name and value length-prefixed, and
/// the stable hash of all of that as a checksum.
fn encode_cursor(labels: &LabelSet, fingerprint: u64) -> String {
    let mut buf = vec![CURSOR_VERSION];
    buf.extend_from_slice(&fingerprint.to_le_bytes());
    put_u32(&mut buf, labels.len());
    for (n, v) in labels {
        put_str(&mut buf, n);
        put_str(&mut buf, v);
    }
    let checksum = strata_model::stable_hash(&[&buf]);
    buf.extend_from_slice(&checksum.to_le_bytes());
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(s: &str, fingerprint: u64) -> Result<LabelSet, ParamError> {
    let invalid = || {
        let mut quoted = s.to_string();
        if quoted.len() > CURSOR_QUOTE_BYTES_MAX {
            let mut end = CURSOR_QUOTE_BYTES_MAX;
            while !quoted.is_char_boundary(end) {
                end -= 1;
            }
            quoted.truncate(end);
            quoted.push('…');
        }
        ParamError::Cursor(quoted)
    };
    // Lowercase only, as encoded: one cursor has one spelling.
    if s.len() > CURSOR_BYTES_MAX
        || !s.len().is_multiple_of(2)
        || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(invalid());
    }
    let bytes: Vec<u8> = s
        .as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).ok().and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<_>>()
        .ok_or_else(invalid)?;
    let Some((body, checksum)) = bytes.split_last_chunk::<8>() else { return Err(invalid()) };
    if strata_model::stable_hash(&[body]) != u64::from_le_bytes(*checksum) {
        return Err(invalid());
    }
    let mut r = Reader(body);
    if r.take(1).ok_or_else(invalid)? != [CURSOR_VERSION] {
        return Err(invalid());
    }
    if r.u64().ok_or_else(invalid)? != fingerprint {
        return Err(ParamError::CursorQuery);
    }
    let count = r.u32().ok_or_else(invalid)? as usize;
    // Each label takes at least 8 bytes, which bounds `count` by what is really there.
    if count > r.0.len() / 8 {
        return Err(invalid());
    }
    let mut labels = Vec::with_capacity(count);
    for _ in 0..count {
        let n = r.str().ok_or_else(invalid)?;
        let v = r.str().ok_or_else(invalid)?;
        labels.push((n, v));
    }
    if !r.0.is_empty() {
        return Err(invalid());
    }
    Ok(labels)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn str(&mut self) -> Option<String> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

/// `{"series":[{"labels":{..},"points":[[ts_ms, value], ..]}],"next_cursor":..,"step_ms":..,"took_ms":..}`,
/// written directly: a page may hold a million points. Finite values are JSON numbers; NaN and
/// ±Inf, which only ±Inf samples can produce, are the strings "NaN", "+Inf" and "-Inf" as in
/// Prometheus.
fn render(a: &QueryAnswer, next_cursor: Option<&str>, took_ms: u64) -> Vec<u8> {
    let points: usize = a.series.iter().map(|s| s.points.len()).sum();
    let mut out = Vec::with_capacity(64 + a.series.len() * 128 + points * 24);
    out.extend_from_slice(b"{\"series\":[");
    for (i, s) in a.series.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"labels\":{");
        for (j, (name, value)) in s.labels.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            json(&mut out, name);
            out.push(b':');
            json(&mut out, value);
        }
        out.extend_from_slice(b"},\"points\":[");
        for (j, &(t, v)) in s.points.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            write!(out, "[{t},").expect("writing to a Vec");
            match v {
                v if v.is_finite() => json(&mut out, &v),
                v if v.is_nan() => out.extend_from_slice(b"\"NaN\""),
                v if v > 0.0 => out.extend_from_slice(b"\"+Inf\""),
                _ => out.extend_from_slice(b"\"-Inf\""),
            }
            out.push(b']');
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"],\"next_cursor\":");
    match next_cursor {
        Some(c) => json(&mut out, c),
        None => out.extend_from_slice(b"null"),
    }
    write!(out, ",\"step_ms\":{},\"took_ms\":{took_ms}}}", a.step_ms).expect("writing to a Vec");
    out
}

fn json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Strings and finite floats always serialise.
    serde_json::to_writer(out, v).expect("a string or a finite number");
}

#[cfg(test)]
mod tests {
    use strata_tsdb::QuerySeries;

    use super::*;

    fn pairs(s: &str) -> Vec<(String, String)> {
        s.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    fn parse(s: &str) -> Result<Request, ParamError> {
        Request::parse(&pairs(s), 1_000_000)
    }

    #[test]
    fn answers_are_json_with_non_finite_values_as_strings() {
        let a = QueryAnswer {
            series: vec![
                QuerySeries {
                    labels: vec![("__name__".into(), "cpu".into()), ("q\"".into(), "é\n".into())],
                    points: vec![(0, 1.5), (10, f64::NAN), (20, f64::INFINITY), (30, f64::NEG_INFINITY), (40, 1e300)],
                },
                QuerySeries { labels: vec![], points: vec![(5, -2.0)] },
            ],
            more: true,
            step_ms: 10,
            series_scanned: 2,
            samples_read: 6,
        };
        let v: Value = serde_json::from_slice(&render(&a, Some("0a"), 3)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "series": [
                    {"labels": {"__name__": "cpu", "q\"": "é\n"},
                     "points": [[0, 1.5], [10, "NaN"], [20, "+Inf"], [30, "-Inf"], [40, 1e300]]},
                    {"labels": {}, "points": [[5, -2.0]]},
                ],
                "next_cursor": "0a",
                "step_ms": 10,
                "took_ms": 3,
            })
        );
        let empty = QueryAnswer { series: vec![], more: false, step_ms: 1, series_scanned: 0, samples_read: 0 };
        assert_eq!(
            String::from_utf8(render(&empty, None, 0)).unwrap(),
            r#"{"series":[],"next_cursor":null,"step_ms":1,"took_ms":0}"#
        );
    }

    #[test]
    fn json_bodies_become_parameters() {
        let headers = HeaderMap::new();
        let body = Bytes::from(
            r#"{"name": "cpu", "labels": {"host": "a"}, "group_by": ["dc", "az"], "limit": 5, "cursor": null}"#,
        );
        let p = params(&Method::POST, &headers, Some("step=1m"), &body).unwrap();
        let want: Vec<(String, String)> = [
            ("step", "1m"),
            ("name", "cpu"),
            ("labels", "host:a"),
            ("group_by", "dc"),
            ("group_by", "az"),
            ("limit", "5"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut got = p.clone();
        got.sort();
        let mut want_sorted = want.clone();
        want_sorted.sort();
        assert_eq!(got, want_sorted);
        let form = params(&Method::POST, &headers, None, &Bytes::from("name=cpu&labels=host%3Da")).unwrap();
        assert_eq!(form, [("name".to_string(), "cpu".to_string()), ("labels".to_string(), "host=a".to_string())]);
        for bad in [r#"{"name": true}"#, r#"{"group_by": [{"a": 1}]}"#, r#"{"labels": {"a": 1}}"#, "[1]", "{"] {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
            assert!(params(&Method::POST, &h, None, &Bytes::from(bad)).is_err(), "{bad}");
        }
    }
    #[test]
    fn parameters_are_validated_with_their_name_and_value() {
        let e = |q: &str| parse(q).unwrap_err();
        assert!(parse("name=cpu&_=1764000000000").is_ok(), "a cache-busting `_` is ignored");
        let cases: Vec<(&str, ParamError)> = vec![
            ("", ParamError::MissingName),
            ("name=", ParamError::MissingName),
            ("name=cpu&lables=a:b", ParamError::UnknownParameter("lables".into())),
            ("name=cpu&name=mem", ParamError::Repeated { param: "name", count: 2 }),
            ("name=cpu&step=1s&step=2s", ParamError::Repeated { param: "step", count: 2 }),
            ("name=cpu-x", ParamError::MetricName("cpu-x".into())),
            ("name=cpu&labels=host", ParamError::LabelFilter("host".into())),
            ("name=cpu&labels=1a:b", ParamError::LabelFilter("1a:b".into())),
            ("name=cpu&labels=:b", ParamError::LabelFilter(":b".into())),
            ("name=cpu&group_by=dc,1x", ParamError::GroupBy("1x".into())),
            ("name=cpu&from=yesterday", ParamError::Time { param: "from", value: "yesterday".into() }),
            ("name=cpu&to=-5", ParamError::Time { param: "to", value: "-5".into() }),
            (
                "name=cpu&to=99999999999999999999",
                ParamError::Time { param: "to", value: "99999999999999999999".into() },
            ),
            ("name=cpu&to=253402300800000", ParamError::Time { param: "to", value: "253402300800000".into() }),
            ("name=cpu&from=5&to=4", ParamError::Range { from_ms: 5, to_ms: 4 }),
            ("name=cpu&from=2000000", ParamError::Range { from_ms: 2_000_000, to_ms: 1_000_000 }),
            ("name=cpu&step=0", ParamError::Step("0".into())),
            ("name=cpu&step=-1s", ParamError::Step("-1s".into())),
            ("name=cpu&step=1y", ParamError::Step("1y".into())),
            ("name=cpu&step=1.5s", ParamError::Step("1.5s".into())),
            ("name=cpu&step=s", ParamError::Step("s".into())),
            ("name=cpu&step=99999999999w", ParamError::Step("99999999999w".into())),
            (
                "name=cpu&from=0&to=11000&step=1",
                ParamError::TooManyPoints { step_ms: 1, points: 11_001, from_ms: 0, to_ms: 11_000 },
            ),
            ("name=cpu&agg=median", ParamError::Agg("median".into())),
            ("name=cpu&agg=p0", ParamError::Agg("p0".into())),
            ("name=cpu&agg=p100", ParamError::Agg("p100".into())),
            ("name=cpu&agg=p", ParamError::Agg("p".into())),
            ("name=cpu&agg=p+9", ParamError::Agg("p+9".into())),
            ("name=cpu&limit=0", ParamError::Limit("0".into())),
            ("name=cpu&limit=10001", ParamError::Limit("10001".into())),
            ("name=cpu&limit=ten", ParamError::Limit("ten".into())),
            ("name=cpu&cursor=zz", ParamError::Cursor("zz".into())),
            ("name=cpu&cursor=abc", ParamError::Cursor("abc".into())),
            ("name=cpu&cursor=00", ParamError::Cursor("00".into())),
        ];
        for (q, want) in cases {
            assert_eq!(e(q), want, "{q}");
        }
        assert!(matches!(e("name=cpu&labels=a=~("), ParamError::LabelRegex { .. }));
        let many = "&labels=a:b".repeat(LABEL_FILTERS_MAX + 1);
        assert_eq!(e(&format!("name=cpu{many}")), ParamError::TooManyLabelFilters(LABEL_FILTERS_MAX + 1));
        let wide: Vec<String> = (0..=GROUP_BY_MAX).map(|i| format!("l{i}")).collect();
        assert_eq!(e(&format!("name=cpu&group_by={}", wide.join(","))), ParamError::TooManyGroupBy(GROUP_BY_MAX + 1));

        // Messages name the parameter and the value.
        assert_eq!(
            e("name=cpu&step=0").to_string(),
            "step \"0\" must be a positive number of milliseconds or a duration such as 500ms, 30s, 5m, 1h, 1d"
        );
        assert!(e("name=cpu&from=0&to=11000&step=1").to_string().contains("points_max 11000"));
        assert_eq!(e("name=cpu&from=5&to=4").to_string(), "from 5 is after to 4 (to defaults to now)");
        let long = format!("name=cpu&cursor={}", "g".repeat(1000));
        assert!(e(&long).to_string().len() < 200, "a long cursor is not echoed whole");

        // Exactly points_max points is allowed; from == to is one instant.
        assert_eq!(parse("name=cpu&from=0&to=10999&step=1").unwrap().query.step_ms(), 1);
        assert_eq!(parse("name=cpu&from=5&to=5&step=1").unwrap().query.from_ms(), 5);
        // Empty values are absent; commas and repeats both list group_by labels.
        let q = parse("name=cpu&step=&agg=&cursor=&labels=&group_by=b,a&group_by=a&group_by=").unwrap().query;
        assert_eq!((q.group_by(), q.agg(), q.matchers().len()), (&["a".to_string(), "b".to_string()][..], Agg::Avg, 0));
        let q = parse("name=cpu&agg=p90&labels=host=~a|b&limit=7").unwrap().query;
        assert_eq!((q.name(), q.agg(), q.matchers().len(), q.limit()), ("cpu", Agg::Percentile(90), 1, 7));
        // RFC 3339 and defaults.
        let q = parse("name=cpu&from=1970-01-01T00:00:01.5Z&to=1970-01-01T00:00:02Z&step=250ms").unwrap().query;
        assert_eq!((q.from_ms(), q.to_ms(), q.step_ms()), (1_500, 2_000, 250));
        let q = parse("name=cpu").unwrap().query;
        assert_eq!((q.from_ms(), q.to_ms(), q.limit()), (0, 1_000_000, LIMIT_DEFAULT));
        assert_eq!(
            Request::parse(&pairs("name=cpu"), 10_000_000).unwrap().query.from_ms(),
            10_000_000 - DEFAULT_RANGE_MS
        );
    }

    #[test]
    fn the_default_step_is_round_and_gives_at_most_a_few_hundred_points() {
        let cases: &[(i64, i64, i64)] = &[
            (0, 0, 1),
            (0, 299, 1),
            (0, 300, 2),
            (1_000, 1_000 + 3_600_000, 15_000),
            (0, 86_400_000, 300_000),
            (0, 7 * 86_400_000, 3_600_000),
            (0, 365 * 86_400_000, 2 * 86_400_000),
            (123_456_789, TIME_MS_MAX, 9_842 * 86_400_000),
        ];
        for &(from, to, want) in cases {
            let step = default_step_ms(from, to);
            assert_eq!(step, want, "{from}..{to}");
            assert!(bucket_count(from, to, step) <= DEFAULT_POINTS_MAX, "{from}..{to}");
        }
    }

    #[test]
    fn cursors_are_checked() {
        let labels: LabelSet = vec![("__name__".into(), "cpu".into()), ("host".into(), "a".into())];
        let c = encode_cursor(&labels, parse("name=cpu").unwrap().fingerprint);
        assert!(c.bytes().all(|b| b.is_ascii_hexdigit()));
        let after = |q: &str| parse(q).map(|r| r.query.after().cloned());
        assert_eq!(after(&format!("name=cpu&cursor={c}")), Ok(Some(labels.clone())));
        // The same selection with another step, range or agg continues; another selection does not.
        assert!(parse(&format!("name=cpu&from=0&to=800000&step=1s&agg=max&cursor={c}")).is_ok());
        assert_eq!(parse(&format!("name=mem&cursor={c}")).unwrap_err(), ParamError::CursorQuery);
        assert_eq!(parse(&format!("name=cpu&labels=dc:x&cursor={c}")).unwrap_err(), ParamError::CursorQuery);
        assert_eq!(parse(&format!("name=cpu&group_by=dc&cursor={c}")).unwrap_err(), ParamError::CursorQuery);
        // Filters in another order, and group_by spelled otherwise, are the same selection.
        let two =
            encode_cursor(&labels, parse("name=cpu&labels=dc:x&labels=host=~a|b&group_by=a,b").unwrap().fingerprint);
        assert!(parse(&format!("name=cpu&labels=host=~a|b&labels=dc:x&group_by=b&group_by=a,b&cursor={two}")).is_ok());

        // Every single-character change, truncation or extension is refused without a panic.
        let bytes = c.as_bytes();
        for i in 0..bytes.len() {
            for sub in [b'0', b'f', b'g', b'A'] {
                if bytes[i] == sub {
                    continue;
                }
                let mut t = bytes.to_vec();
                t[i] = sub;
                let t = String::from_utf8(t).unwrap();
                assert!(parse(&format!("name=cpu&cursor={t}")).is_err(), "{t}");
            }
            if i > 0 {
                assert!(parse(&format!("name=cpu&cursor={}", &c[..i])).is_err());
            }
        }
        assert!(parse(&format!("name=cpu&cursor={c}00")).is_err());
        assert!(parse(&format!("name=cpu&cursor={c}é")).is_err());
        // A well-formed cursor claiming more labels than it holds.
        let mut body = vec![CURSOR_VERSION];
        body.extend_from_slice(&parse("name=cpu").unwrap().fingerprint.to_le_bytes());
        body.extend_from_slice(&u32::MAX.to_le_bytes());
        body.extend_from_slice(&strata_model::stable_hash(&[&body]).to_le_bytes());
        let forged: String = body.iter().map(|b| format!("{b:02x}")).collect();
        assert!(matches!(parse(&format!("name=cpu&cursor={forged}")), Err(ParamError::Cursor(_))));
    }
}
