//! The native metrics query (`GET /query/v1/metrics`): series selection, downsampling by step,
//! aggregation and grouping, pagination over series.
//!
//! Parameters (`NativeQuery::parse` takes them as query-string pairs):
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
//! Semantics:
//!
//! - Buckets are aligned to multiples of `step` since the Unix epoch: a sample at `t` falls in
//!   `[b, b + step)` with `b = t - t mod step`, and the point's timestamp is `b`. The first and last
//!   buckets may start before `from` or end after `to`; they hold only the samples within `[from, to]`.
//! - A bucket without a sample gives no point, and a series without a point is left out.
//! - NaN samples are no samples: the Prometheus staleness marker (`STALE_NAN_BITS`) and any other
//!   NaN are dropped before anything else, so they are neither counted nor averaged.
//! - Without `group_by`, every selected series is returned with its full label set (`__name__`
//!   included); a point is the average of the series' samples in the bucket, or with `agg` their
//!   sum, minimum, maximum, count or percentile.
//! - With `group_by`, series are grouped by the values of those labels (a series without one of
//!   them has `""` there) and each bucket aggregates across the group with `agg` (default `avg`):
//!   `sum` adds each series' average over the bucket, so a gauge scraped twice per bucket is not
//!   counted twice; `avg`, `min`, `max` and percentiles are over every sample of the group in the
//!   bucket; `count` is the number of those samples. An output series' labels are the `group_by`
//!   labels with a non-empty value. `group_by=__name__` puts every selected series in one group.
//! - Percentiles are exact, interpolated linearly between the closest ranks as Prometheus's
//!   `quantile_over_time` does: with the `n` values sorted, `p` lies at rank `p / 100 * (n - 1)`.
//! - Sums are compensated (Neumaier) so that adding many small values loses no precision. A value
//!   is non-finite only when a sample is ±Inf or a sum passes `f64::MAX`.
//! - Output series are sorted by their label set, and a page holds the first `limit` of them after
//!   the cursor. A page ends earlier once it holds `Limits::page_points_max` points (but always
//!   has one series), so follow `next_cursor` until it is absent rather than counting series.
//!   The cursor is the last label set of the page, so pages stay consistent while series come and
//!   go: no series is returned twice, and none present throughout is skipped. It carries a
//!   checksum and the fingerprint of `name`, `labels` and `group_by`: a damaged cursor or one from
//!   another query is refused.
//! - Limits: at most `Limits::series_max` series selected and `Limits::samples_max` samples read
//!   per request, with an error saying which and how to narrow the query.

use std::collections::BTreeMap;

use crate::index::{LabelSet, Matcher, MatcherError, is_label_name};
use crate::store::{SelectError, Store};

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
/// Latest time accepted: 9999-12-31T23:59:59.999Z, as far as RFC 3339 goes. It also keeps bucket
/// arithmetic far from overflow.
pub const TIME_MS_MAX: i64 = 253_402_300_799_999;

const PARAMS: [&str; 9] = ["name", "labels", "from", "to", "step", "agg", "group_by", "limit", "cursor"];
const CURSOR_VERSION: u8 = 1;
/// Longest cursor quoted back in an error message.
const CURSOR_QUOTE_BYTES_MAX: usize = 64;

/// What one request may read and answer.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Series the selection may match (passed to `Store::select`).
    pub series_max: usize,
    /// Samples the selected series may have in the range, together.
    pub samples_max: usize,
    /// Points one page may hold; a page ends early, with a cursor, once it has this many.
    pub page_points_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { series_max: 100_000, samples_max: 50_000_000, page_points_max: 1_000_000 }
    }
}

/// Why a query was refused. Every variant but `Store` is the caller's doing; `TooManySeries` and
/// `TooManySamples` are a valid query that asks for too much.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("parameter \"name\" is required")]
    MissingName,
    #[error("parameter {0:?} is not known; use name, labels, from, to, step, agg, group_by, limit or cursor")]
    UnknownParameter(String),
    #[error("parameter {param:?} is given {count} times; it takes one value")]
    Repeated { param: &'static str, count: usize },
    #[error("name {0:?} is not a valid metric name")]
    MetricName(String),
    #[error("labels {0:?} must be name:value, name=value, name!=value, name=~regex or name!~regex")]
    LabelFilter(String),
    #[error("labels {filter:?}: {source}")]
    LabelRegex { filter: String, source: MatcherError },
    #[error("labels has {0} filters, more than label_filters_max {LABEL_FILTERS_MAX}")]
    TooManyLabelFilters(usize),
    #[error("group_by {0:?} is not a valid label name")]
    GroupBy(String),
    #[error("group_by has {0} labels, more than group_by_max {GROUP_BY_MAX}")]
    TooManyGroupBy(usize),
    #[error("{param} {value:?} must be Unix milliseconds or RFC 3339, from 1970 to 9999")]
    Time { param: &'static str, value: String },
    #[error("from {from_ms} is after to {to_ms} (to defaults to now)")]
    Range { from_ms: i64, to_ms: i64 },
    #[error("step {0:?} must be a positive number of milliseconds or a duration such as 500ms, 30s, 5m, 1h, 1d")]
    Step(String),
    #[error(
        "step {step_ms}ms gives {points} points per series from {from_ms} to {to_ms}, more than points_max \
         {POINTS_MAX}; use a larger step or a shorter range"
    )]
    TooManyPoints { step_ms: i64, points: u64, from_ms: i64, to_ms: i64 },
    #[error("agg {0:?} must be sum, avg, min, max, count or a percentile p1 to p99")]
    Agg(String),
    #[error("limit {0:?} must be a whole number from 1 to {LIMIT_MAX}")]
    Limit(String),
    #[error("cursor {0:?} is not valid; pass the previous answer's next_cursor unchanged")]
    Cursor(String),
    #[error("cursor belongs to a query with other name, labels or group_by")]
    CursorQuery,
    #[error("the query selects more than series_max {max} series; narrow it with labels")]
    TooManySeries { max: usize },
    #[error("the query reads more than samples_max {max} samples; use a shorter range or narrow it with labels")]
    TooManySamples { max: usize },
    /// Not the caller's doing: the store could not be read.
    #[error("cannot read the metric store: {0}")]
    Store(String),
}

impl QueryError {
    /// Whether the query was valid but asked for more than the limits allow.
    pub fn is_too_large(&self) -> bool {
        matches!(self, QueryError::TooManySeries { .. } | QueryError::TooManySamples { .. })
    }
}

/// How the samples of a bucket become one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    /// A percentile, 1 to 99.
    Percentile(u8),
}

impl Agg {
    fn parse(s: &str) -> Option<Agg> {
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
}

/// A validated native query: build it with `NativeQuery::parse`.
#[derive(Debug, Clone)]
pub struct NativeQuery {
    name: String,
    /// `(label, operator, value)` as given, for the cursor's fingerprint.
    filters: Vec<(String, &'static str, String)>,
    matchers: Vec<Matcher>,
    from_ms: i64,
    to_ms: i64,
    step_ms: i64,
    agg: Option<Agg>,
    /// Sorted, unique.
    group_by: Vec<String>,
    limit: usize,
    /// Where the previous page ended.
    after: Option<LabelSet>,
}

impl NativeQuery {
    /// Validates query-string pairs; `now_ms` is the default `to`.
    pub fn parse(params: &[(String, String)], now_ms: i64) -> Result<NativeQuery, QueryError> {
        // `_` is the cache-busting parameter that browsers' and dashboards' HTTP clients add.
        if let Some((k, _)) = params.iter().find(|(k, _)| k != "_" && !PARAMS.contains(&k.as_str())) {
            return Err(QueryError::UnknownParameter(k.clone()));
        }
        let single = |param: &'static str| -> Result<Option<&str>, QueryError> {
            let values: Vec<&str> =
                params.iter().filter(|(k, v)| k == param && !v.is_empty()).map(|(_, v)| v.as_str()).collect();
            match values.len() {
                0 => Ok(None),
                1 => Ok(Some(values[0])),
                count => Err(QueryError::Repeated { param, count }),
            }
        };
        let name = single("name")?.ok_or(QueryError::MissingName)?.to_string();
        if !strata_model::is_valid_metric_name(&name) {
            return Err(QueryError::MetricName(name));
        }

        let raw_filters: Vec<&str> =
            params.iter().filter(|(k, v)| k == "labels" && !v.is_empty()).map(|(_, v)| v.as_str()).collect();
        if raw_filters.len() > LABEL_FILTERS_MAX {
            return Err(QueryError::TooManyLabelFilters(raw_filters.len()));
        }
        let mut filters = Vec::with_capacity(raw_filters.len());
        let mut matchers = Vec::with_capacity(raw_filters.len());
        for raw in raw_filters {
            let (label, op, value) = parse_filter(raw).ok_or_else(|| QueryError::LabelFilter(raw.to_string()))?;
            let regex = |negate| {
                Matcher::regex(label, value, negate)
                    .map_err(|source| QueryError::LabelRegex { filter: raw.to_string(), source })
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
        if let Some(bad) = group_by.iter().find(|l| !is_label_name(l)) {
            return Err(QueryError::GroupBy(bad.clone()));
        }
        group_by.sort();
        group_by.dedup();
        if group_by.len() > GROUP_BY_MAX {
            return Err(QueryError::TooManyGroupBy(group_by.len()));
        }

        let now_ms = now_ms.clamp(0, TIME_MS_MAX);
        let to_ms = single("to")?.map(|v| parse_time("to", v)).transpose()?.unwrap_or(now_ms);
        let from_ms =
            single("from")?.map(|v| parse_time("from", v)).transpose()?.unwrap_or((to_ms - DEFAULT_RANGE_MS).max(0));
        if from_ms > to_ms {
            return Err(QueryError::Range { from_ms, to_ms });
        }
        let step_ms = match single("step")? {
            None => default_step_ms(from_ms, to_ms),
            Some(v) => {
                let step_ms = parse_duration_ms(v).ok_or_else(|| QueryError::Step(v.to_string()))?;
                let points = bucket_count(from_ms, to_ms, step_ms);
                if points > POINTS_MAX {
                    return Err(QueryError::TooManyPoints { step_ms, points, from_ms, to_ms });
                }
                step_ms
            }
        };
        let agg = single("agg")?.map(|v| Agg::parse(v).ok_or_else(|| QueryError::Agg(v.to_string()))).transpose()?;
        let limit = match single("limit")? {
            None => LIMIT_DEFAULT,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=LIMIT_MAX).contains(n))
                .ok_or_else(|| QueryError::Limit(v.to_string()))?,
        };

        let mut q = NativeQuery { name, filters, matchers, from_ms, to_ms, step_ms, agg, group_by, limit, after: None };
        if let Some(c) = single("cursor")? {
            q.after = Some(decode_cursor(c, q.fingerprint())?);
        }
        Ok(q)
    }

    pub fn from_ms(&self) -> i64 {
        self.from_ms
    }

    pub fn to_ms(&self) -> i64 {
        self.to_ms
    }

    /// The bucket width, given or chosen.
    pub fn step_ms(&self) -> i64 {
        self.step_ms
    }

    /// What decides the output series' identities and order, so a cursor fits only its own query.
    fn fingerprint(&self) -> u32 {
        let mut filters: Vec<&(String, &'static str, String)> = self.filters.iter().collect();
        filters.sort();
        let mut buf = Vec::new();
        put_str(&mut buf, &self.name);
        put_u32(&mut buf, filters.len());
        for (label, op, value) in filters {
            put_str(&mut buf, label);
            put_str(&mut buf, op);
            put_str(&mut buf, value);
        }
        put_u32(&mut buf, self.group_by.len());
        for l in &self.group_by {
            put_str(&mut buf, l);
        }
        crc32c::crc32c(&buf)
    }

    /// An output series' identity: the full label set, or the group's labels.
    fn output_labels(&self, labels: LabelSet) -> LabelSet {
        if self.group_by.is_empty() {
            return labels;
        }
        labels.into_iter().filter(|(n, v)| !v.is_empty() && self.group_by.binary_search(n).is_ok()).collect()
    }
}

/// One output series.
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySeries {
    /// Sorted by name.
    pub labels: LabelSet,
    /// `(bucket start ms, value)`, sorted, only buckets with a sample.
    pub points: Vec<(i64, f64)>,
}

/// One page of a query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryAnswer {
    pub series: Vec<QuerySeries>,
    /// Passed as `cursor`, continues after the last series of this page; `None` on the last page.
    pub next_cursor: Option<String>,
    pub step_ms: i64,
    /// Series the selection matched, before grouping and pagination.
    pub series_scanned: usize,
    pub samples_read: usize,
}

/// Runs a query with the default limits.
pub fn run(store: &Store, tenant: &str, q: &NativeQuery) -> Result<QueryAnswer, QueryError> {
    run_with_limits(store, tenant, q, &Limits::default())
}

pub fn run_with_limits(
    store: &Store,
    tenant: &str,
    q: &NativeQuery,
    limits: &Limits,
) -> Result<QueryAnswer, QueryError> {
    let mut matchers = Vec::with_capacity(q.matchers.len() + 1);
    matchers.push(Matcher::Equal("__name__".to_string(), q.name.clone()));
    matchers.extend(q.matchers.iter().cloned());
    let selected = store.select(tenant, &matchers, q.from_ms, q.to_ms, limits.series_max, limits.samples_max).map_err(
        |e| match e {
            SelectError::TooManySeries { max } => QueryError::TooManySeries { max },
            SelectError::TooManySamples { max } => QueryError::TooManySamples { max },
            SelectError::Block(reason) => QueryError::Store(reason),
        },
    )?;
    let series_scanned = selected.len();
    let samples_read: usize = selected.iter().map(|s| s.samples.len()).sum();

    // Output series after the cursor, each with the samples of its members. NaN samples go
    // first, so that every series left has at least one point.
    let mut groups: BTreeMap<LabelSet, Vec<Vec<(i64, f64)>>> = BTreeMap::new();
    for s in selected {
        let key = q.output_labels(s.labels);
        if q.after.as_ref().is_some_and(|after| key <= *after) {
            continue;
        }
        let mut samples = s.samples;
        samples.retain(|(_, v)| !v.is_nan());
        if !samples.is_empty() {
            groups.entry(key).or_default().push(samples);
        }
    }

    let mut series = Vec::new();
    let mut points_total = 0usize;
    let mut next_cursor = None;
    let mut rest = groups.into_iter().peekable();
    while let Some((labels, members)) = rest.next() {
        let points = if q.group_by.is_empty() {
            // Without group_by the key is a full label set, which one series has.
            debug_assert_eq!(members.len(), 1);
            bucket_points(&members[0], q.step_ms, q.agg.unwrap_or(Agg::Avg))
        } else {
            group_points(&members, q.step_ms, q.agg.unwrap_or(Agg::Avg))
        };
        if !series.is_empty() && points_total + points.len() > limits.page_points_max {
            next_cursor = series.last().map(|s: &QuerySeries| encode_cursor(&s.labels, q.fingerprint()));
            break;
        }
        points_total += points.len();
        series.push(QuerySeries { labels, points });
        if series.len() == q.limit {
            if rest.peek().is_some() {
                next_cursor = series.last().map(|s| encode_cursor(&s.labels, q.fingerprint()));
            }
            break;
        }
    }
    Ok(QueryAnswer { series, next_cursor, step_ms: q.step_ms, series_scanned, samples_read })
}

fn bucket_start(t: i64, step_ms: i64) -> i64 {
    t - t.rem_euclid(step_ms)
}

/// Buckets `[from, to]` touches.
fn bucket_count(from_ms: i64, to_ms: i64, step_ms: i64) -> u64 {
    (to_ms.div_euclid(step_ms) - from_ms.div_euclid(step_ms) + 1) as u64
}

/// One series' samples (sorted, no NaN) aggregated per bucket.
fn bucket_points(samples: &[(i64, f64)], step_ms: i64, agg: Agg) -> Vec<(i64, f64)> {
    let mut values = Vec::new();
    samples
        .chunk_by(|a, b| bucket_start(a.0, step_ms) == bucket_start(b.0, step_ms))
        .map(|bucket| {
            values.clear();
            values.extend(bucket.iter().map(|&(_, v)| v));
            (bucket_start(bucket[0].0, step_ms), aggregate(agg, &mut values))
        })
        .collect()
}

/// A group's series aggregated together per bucket.
fn group_points(members: &[Vec<(i64, f64)>], step_ms: i64, agg: Agg) -> Vec<(i64, f64)> {
    let mut buckets: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for samples in members {
        if agg == Agg::Sum {
            // Each series counts once per bucket however often it was scraped.
            for (t, avg) in bucket_points(samples, step_ms, Agg::Avg) {
                buckets.entry(t).or_default().push(avg);
            }
        } else {
            for &(t, v) in samples {
                buckets.entry(bucket_start(t, step_ms)).or_default().push(v);
            }
        }
    }
    buckets.into_iter().map(|(t, mut values)| (t, aggregate(agg, &mut values))).collect()
}

/// `values` is not empty and has no NaN.
fn aggregate(agg: Agg, values: &mut [f64]) -> f64 {
    debug_assert!(!values.is_empty());
    match agg {
        Agg::Sum => sum(values),
        Agg::Avg => mean(values),
        Agg::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
        Agg::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        Agg::Count => values.len() as f64,
        Agg::Percentile(p) => {
            values.sort_unstable_by(f64::total_cmp);
            percentile(values, p)
        }
    }
}

/// Neumaier's compensated sum.
fn sum(values: &[f64]) -> f64 {
    let naive: f64 = values.iter().sum();
    if !naive.is_finite() {
        // An infinity (or an overflow) decides the result; compensation would turn it into NaN.
        return naive;
    }
    let (mut s, mut c) = (0.0f64, 0.0f64);
    for &v in values {
        let t = s + v;
        c += if s.abs() >= v.abs() { (s - t) + v } else { (v - t) + s };
        s = t;
    }
    s + c
}

fn mean(values: &[f64]) -> f64 {
    let s = sum(values);
    if s.is_finite() || values.iter().any(|v| v.is_infinite()) {
        return s / values.len() as f64;
    }
    // The sum of finite values overflowed; their mean does not.
    let mut m = 0.0;
    for (i, &v) in values.iter().enumerate() {
        m += (v - m) / (i + 1) as f64;
    }
    m
}

/// Linear interpolation between the closest ranks of `sorted`. The rank is split into whole and
/// hundredths in integers so that, for example, p90 of 0..=10 is exactly 9.
fn percentile(sorted: &[f64], p: u8) -> f64 {
    let scaled = usize::from(p) * (sorted.len() - 1);
    let (i, hundredths) = (scaled / 100, scaled % 100);
    let lo = sorted[i];
    if hundredths == 0 {
        return lo;
    }
    let hi = sorted[i + 1];
    if lo == hi {
        return lo;
    }
    if lo.is_infinite() || hi.is_infinite() {
        // -Inf, +Inf or NaN between -Inf and +Inf, as Prometheus gives.
        let w = hundredths as f64 / 100.0;
        return lo * (1.0 - w) + hi * w;
    }
    lo + (hi - lo) * hundredths as f64 / 100.0
}

/// Integer milliseconds, or RFC 3339.
fn parse_time(param: &'static str, v: &str) -> Result<i64, QueryError> {
    let err = || QueryError::Time { param, value: v.to_string() };
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
    if !is_label_name(label) {
        return None;
    }
    [("!=", "!="), ("!~", "!~"), ("=~", "=~"), ("=", "="), (":", "=")]
        .into_iter()
        .find_map(|(given, op)| rest.strip_prefix(given).map(|value| (label, op, value)))
}

fn put_u32(buf: &mut Vec<u8>, n: usize) {
    // Label sets and their strings are far below 4 GiB (cursors are bounded by CURSOR_BYTES_MAX).
    buf.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_u32(buf, s.len());
    buf.extend_from_slice(s.as_bytes());
}

/// Hex of: version, fingerprint (u32 LE), label count, each name and value length-prefixed, and a
/// CRC32C of all of that.
fn encode_cursor(labels: &LabelSet, fingerprint: u32) -> String {
    let mut buf = vec![CURSOR_VERSION];
    buf.extend_from_slice(&fingerprint.to_le_bytes());
    put_u32(&mut buf, labels.len());
    for (n, v) in labels {
        put_str(&mut buf, n);
        put_str(&mut buf, v);
    }
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(s: &str, fingerprint: u32) -> Result<LabelSet, QueryError> {
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
        QueryError::Cursor(quoted)
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
    let Some((body, crc)) = bytes.split_last_chunk::<4>() else { return Err(invalid()) };
    if crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
        return Err(invalid());
    }
    let mut r = Reader(body);
    if r.take(1).ok_or_else(invalid)? != [CURSOR_VERSION] {
        return Err(invalid());
    }
    if r.u32().ok_or_else(invalid)? != fingerprint {
        return Err(QueryError::CursorQuery);
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

    fn str(&mut self) -> Option<String> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TsdbConfig;

    /// A store that stays in memory: nothing here opens or checkpoints it.
    fn new_store() -> Store {
        Store::new(TsdbConfig::new(std::env::temp_dir().join("strata-query-tests-unused")))
    }

    const STALE: u64 = crate::STALE_NAN_BITS;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        let mut l: LabelSet = pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        l.sort();
        l
    }

    fn params(s: &str) -> Vec<(String, String)> {
        s.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    fn parse(s: &str) -> Result<NativeQuery, QueryError> {
        NativeQuery::parse(&params(s), 1_000_000)
    }

    /// Series of `cpu` (host, dc) and `mem`, in one tenant; every timestamp is in the first
    /// minutes after 600_000 ms so that steps of 10 s and 60 s split them in known ways.
    fn store() -> Store {
        let s = new_store();
        let stale = f64::from_bits(STALE);
        type Series<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);
        let data: [Series; 5] = [
            (
                &[("__name__", "cpu"), ("host", "a"), ("dc", "x")],
                &[(600_000, 1.0), (620_000, 2.0), (640_000, 3.0), (650_000, stale), (660_000, 4.0)],
            ),
            (&[("__name__", "cpu"), ("host", "b"), ("dc", "x")], &[(605_000, 10.0), (630_000, 35.0), (665_000, 104.0)]),
            (
                &[("__name__", "cpu"), ("host", "c"), ("dc", "y")],
                &[(610_000, 100.0), (670_000, f64::NAN), (675_000, 200.0)],
            ),
            // Only NaN in range: no point, so no series.
            (&[("__name__", "cpu"), ("host", "d"), ("dc", "y")], &[(610_000, stale)]),
            (&[("__name__", "mem"), ("host", "a")], &[(600_000, 7.0)]),
        ];
        for (labels, samples) in data {
            for &(t, v) in samples {
                s.append("t1", ls(labels), t, v).unwrap();
            }
        }
        s
    }

    fn answer(store: &Store, q: &str) -> QueryAnswer {
        run(store, "t1", &parse(q).unwrap_or_else(|e| panic!("{q}: {e}"))).unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    /// `labels => points`, one line per series, for compact expectations.
    fn render(a: &QueryAnswer) -> Vec<String> {
        a.series
            .iter()
            .map(|s| {
                let labels: Vec<String> =
                    s.labels.iter().filter(|(n, _)| n != "__name__").map(|(n, v)| format!("{n}={v}")).collect();
                let points: Vec<String> = s.points.iter().map(|(t, v)| format!("{t}:{v}")).collect();
                format!("{} => {}", labels.join(","), points.join(" "))
            })
            .collect()
    }

    #[test]
    fn queries_give_exact_points() {
        let s = store();
        let range = "name=cpu&from=600000&to=719999";
        let cases: &[(&str, &[&str])] = &[
            // Raw: one sample per 1 s bucket; NaN and the staleness marker are no samples.
            (
                "step=1s",
                &[
                    "dc=x,host=a => 600000:1 620000:2 640000:3 660000:4",
                    "dc=x,host=b => 605000:10 630000:35 665000:104",
                    "dc=y,host=c => 610000:100 675000:200",
                ],
            ),
            // Average per 60 s bucket, aligned to multiples of the step.
            (
                "step=60000",
                &[
                    "dc=x,host=a => 600000:2 660000:4",
                    "dc=x,host=b => 600000:22.5 660000:104",
                    "dc=y,host=c => 600000:100 660000:200",
                ],
            ),
            // Buckets are aligned to the step, not to from: the first starts before from and
            // holds only the samples from it on.
            (
                "from=630000&to=719999&step=1m",
                &[
                    "dc=x,host=a => 600000:3 660000:4",
                    "dc=x,host=b => 600000:35 660000:104",
                    "dc=y,host=c => 660000:200",
                ],
            ),
            (
                "step=1m&agg=sum",
                &[
                    "dc=x,host=a => 600000:6 660000:4",
                    "dc=x,host=b => 600000:45 660000:104",
                    "dc=y,host=c => 600000:100 660000:200",
                ],
            ),
            (
                "step=1m&agg=min",
                &[
                    "dc=x,host=a => 600000:1 660000:4",
                    "dc=x,host=b => 600000:10 660000:104",
                    "dc=y,host=c => 600000:100 660000:200",
                ],
            ),
            (
                "step=1m&agg=max",
                &[
                    "dc=x,host=a => 600000:3 660000:4",
                    "dc=x,host=b => 600000:35 660000:104",
                    "dc=y,host=c => 600000:100 660000:200",
                ],
            ),
            (
                "step=1m&agg=count",
                &[
                    "dc=x,host=a => 600000:3 660000:1",
                    "dc=x,host=b => 600000:2 660000:1",
                    "dc=y,host=c => 600000:1 660000:1",
                ],
            ),
            // p50 of [1,2,3] is 2; of [10,35] halfway, 22.5.
            (
                "step=1m&agg=p50",
                &[
                    "dc=x,host=a => 600000:2 660000:4",
                    "dc=x,host=b => 600000:22.5 660000:104",
                    "dc=y,host=c => 600000:100 660000:200",
                ],
            ),
            // Grouped sum adds each series' bucket average: x = 2 + 22.5, then 4 + 104.
            ("step=1m&group_by=dc&agg=sum", &["dc=x => 600000:24.5 660000:108", "dc=y => 600000:100 660000:200"]),
            // Grouped avg, min, max, count and percentiles are over every raw sample of the group.
            ("step=1m&group_by=dc", &["dc=x => 600000:10.2 660000:54", "dc=y => 600000:100 660000:200"]),
            ("step=1m&group_by=dc&agg=avg", &["dc=x => 600000:10.2 660000:54", "dc=y => 600000:100 660000:200"]),
            ("step=1m&group_by=dc&agg=min", &["dc=x => 600000:1 660000:4", "dc=y => 600000:100 660000:200"]),
            ("step=1m&group_by=dc&agg=max", &["dc=x => 600000:35 660000:104", "dc=y => 600000:100 660000:200"]),
            ("step=1m&group_by=dc&agg=count", &["dc=x => 600000:5 660000:2", "dc=y => 600000:1 660000:1"]),
            // [1,2,3,10,35]: rank 4 * 0.5 = 2 -> 3; rank 4 * 0.9 = 3.6 -> 10 + 25 * 0.6 = 25;
            // rank 4 * 0.99 = 3.96 -> 10 + 25 * 0.96 = 34. [4,104]: 54, 94, 103.
            ("step=1m&group_by=dc&agg=p50", &["dc=x => 600000:3 660000:54", "dc=y => 600000:100 660000:200"]),
            ("step=1m&group_by=dc&agg=p90", &["dc=x => 600000:25 660000:94", "dc=y => 600000:100 660000:200"]),
            ("step=1m&group_by=dc&agg=p99", &["dc=x => 600000:34 660000:103", "dc=y => 600000:100 660000:200"]),
            // Every series in one group; the empty-valued label is left out of the output.
            ("step=2m&group_by=__name__&agg=max", &["=> 600000:200"]),
            ("step=2m&group_by=nope&agg=count", &[" => 600000:9"]),
            ("step=1m&group_by=dc,host&agg=sum&labels=host:a", &["dc=x,host=a => 600000:2 660000:4"]),
            ("step=1m&group_by=host&group_by=dc&agg=sum&labels=host:b", &["dc=x,host=b => 600000:22.5 660000:104"]),
            // Label filters.
            ("step=2m&labels=host:a", &["dc=x,host=a => 600000:2.5"]),
            ("step=2m&labels=host=a", &["dc=x,host=a => 600000:2.5"]),
            ("step=2m&labels=dc!=x", &["dc=y,host=c => 600000:150"]),
            (
                "step=2m&labels=host=~a|b&labels=dc:x",
                &["dc=x,host=a => 600000:2.5", "dc=x,host=b => 600000:49.666666666666664"],
            ),
            ("step=2m&labels=host!~a|b", &["dc=y,host=c => 600000:150"]),
            (
                "step=2m&labels=host=~.",
                &["dc=x,host=a => 600000:2.5", "dc=x,host=b => 600000:49.666666666666664", "dc=y,host=c => 600000:150"],
            ),
            ("step=2m&labels=host:", &[]),
            (
                "step=2m&labels=zone:",
                &["dc=x,host=a => 600000:2.5", "dc=x,host=b => 600000:49.666666666666664", "dc=y,host=c => 600000:150"],
            ),
            // The range is inclusive at both ends.
            ("step=1s&labels=host:a&from=620000&to=660000", &["dc=x,host=a => 620000:2 640000:3 660000:4"]),
            ("step=1s&labels=host:a&from=620001&to=659999", &["dc=x,host=a => 640000:3"]),
        ];
        for (extra, want) in cases {
            let q = if extra.contains("from=") { format!("name=cpu&{extra}") } else { format!("{range}&{extra}") };
            let got: Vec<String> = render(&answer(&s, &q)).iter().map(|l| l.trim_start().to_string()).collect();
            let want: Vec<String> = want.iter().map(|l| l.trim_start().to_string()).collect();
            assert_eq!(got, want, "{q}");
        }
        let mem = answer(&s, "name=mem&from=0&to=700000&step=1m");
        assert_eq!(mem.series[0].labels, ls(&[("__name__", "mem"), ("host", "a")]));
        assert_eq!(mem.series_scanned, 1);
        assert!(answer(&s, "name=cpu&from=0&to=599999&step=1m").series.is_empty());
        assert!(run(&s, "t2", &parse(range).unwrap()).unwrap().series.is_empty(), "another tenant sees nothing");
    }

    #[test]
    fn aggregates_are_exact_at_the_edges() {
        let inf = f64::INFINITY;
        let cases: &[(Agg, &[f64], f64)] = &[
            (Agg::Sum, &[0.1; 10], 1.0),
            (Agg::Sum, &[1e100, 1.0, -1e100], 1.0),
            (Agg::Sum, &[1.0, inf], inf),
            (Agg::Avg, &[f64::MAX, f64::MAX], f64::MAX),
            (Agg::Avg, &[2.0, inf], inf),
            (Agg::Min, &[3.0, -inf, 1.0], -inf),
            (Agg::Max, &[3.0, 5.0, 1.0], 5.0),
            (Agg::Count, &[3.0, 5.0], 2.0),
            (Agg::Percentile(50), &[7.0], 7.0),
            (Agg::Percentile(50), &[4.0, 1.0, 3.0, 2.0], 2.5),
            (Agg::Percentile(90), &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 9.0),
            (Agg::Percentile(99), &[0.0, 100.0], 99.0),
            (Agg::Percentile(1), &[0.0, 100.0], 1.0),
            (Agg::Percentile(50), &[-inf, 1.0], -inf),
            (Agg::Percentile(50), &[1.0, inf], inf),
            (Agg::Percentile(50), &[inf, inf], inf),
        ];
        for (agg, values, want) in cases {
            let got = aggregate(*agg, &mut values.to_vec());
            assert_eq!(got, *want, "{agg:?} of {values:?}");
        }
        assert!(aggregate(Agg::Sum, &mut [inf, -inf]).is_nan());
    }

    #[test]
    fn parameters_are_validated_with_their_name_and_value() {
        let e = |q: &str| parse(q).unwrap_err();
        assert!(parse("name=cpu&_=1764000000000").is_ok(), "a cache-busting `_` is ignored");
        let cases: Vec<(&str, QueryError)> = vec![
            ("", QueryError::MissingName),
            ("name=", QueryError::MissingName),
            ("name=cpu&lables=a:b", QueryError::UnknownParameter("lables".into())),
            ("name=cpu&name=mem", QueryError::Repeated { param: "name", count: 2 }),
            ("name=cpu&step=1s&step=2s", QueryError::Repeated { param: "step", count: 2 }),
            ("name=cpu-x", QueryError::MetricName("cpu-x".into())),
            ("name=cpu&labels=host", QueryError::LabelFilter("host".into())),
            ("name=cpu&labels=1a:b", QueryError::LabelFilter("1a:b".into())),
            ("name=cpu&labels=:b", QueryError::LabelFilter(":b".into())),
            ("name=cpu&group_by=dc,1x", QueryError::GroupBy("1x".into())),
            ("name=cpu&from=yesterday", QueryError::Time { param: "from", value: "yesterday".into() }),
            ("name=cpu&to=-5", QueryError::Time { param: "to", value: "-5".into() }),
            (
                "name=cpu&to=99999999999999999999",
                QueryError::Time { param: "to", value: "99999999999999999999".into() },
            ),
            ("name=cpu&to=253402300800000", QueryError::Time { param: "to", value: "253402300800000".into() }),
            ("name=cpu&from=5&to=4", QueryError::Range { from_ms: 5, to_ms: 4 }),
            ("name=cpu&from=2000000", QueryError::Range { from_ms: 2_000_000, to_ms: 1_000_000 }),
            ("name=cpu&step=0", QueryError::Step("0".into())),
            ("name=cpu&step=-1s", QueryError::Step("-1s".into())),
            ("name=cpu&step=1y", QueryError::Step("1y".into())),
            ("name=cpu&step=1.5s", QueryError::Step("1.5s".into())),
            ("name=cpu&step=s", QueryError::Step("s".into())),
            ("name=cpu&step=99999999999w", QueryError::Step("99999999999w".into())),
            (
                "name=cpu&from=0&to=11000&step=1",
                QueryError::TooManyPoints { step_ms: 1, points: 11_001, from_ms: 0, to_ms: 11_000 },
            ),
            ("name=cpu&agg=median", QueryError::Agg("median".into())),
            ("name=cpu&agg=p0", QueryError::Agg("p0".into())),
            ("name=cpu&agg=p100", QueryError::Agg("p100".into())),
            ("name=cpu&agg=p", QueryError::Agg("p".into())),
            ("name=cpu&agg=p+9", QueryError::Agg("p+9".into())),
            ("name=cpu&limit=0", QueryError::Limit("0".into())),
            ("name=cpu&limit=10001", QueryError::Limit("10001".into())),
            ("name=cpu&limit=ten", QueryError::Limit("ten".into())),
            ("name=cpu&cursor=zz", QueryError::Cursor("zz".into())),
            ("name=cpu&cursor=abc", QueryError::Cursor("abc".into())),
            ("name=cpu&cursor=00", QueryError::Cursor("00".into())),
        ];
        for (q, want) in cases {
            assert_eq!(e(q), want, "{q}");
        }
        assert!(matches!(e("name=cpu&labels=a=~("), QueryError::LabelRegex { .. }));
        let many = "&labels=a:b".repeat(LABEL_FILTERS_MAX + 1);
        assert_eq!(e(&format!("name=cpu{many}")), QueryError::TooManyLabelFilters(LABEL_FILTERS_MAX + 1));
        let wide: Vec<String> = (0..=GROUP_BY_MAX).map(|i| format!("l{i}")).collect();
        assert_eq!(e(&format!("name=cpu&group_by={}", wide.join(","))), QueryError::TooManyGroupBy(GROUP_BY_MAX + 1));

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
        assert_eq!(parse("name=cpu&from=0&to=10999&step=1").unwrap().step_ms(), 1);
        assert_eq!(parse("name=cpu&from=5&to=5&step=1").unwrap().from_ms(), 5);
        // Empty values are absent; commas and repeats both list group_by labels.
        let q = parse("name=cpu&step=&agg=&cursor=&labels=&group_by=b,a&group_by=a&group_by=").unwrap();
        assert_eq!((q.group_by.clone(), q.agg, q.filters.len()), (vec!["a".to_string(), "b".to_string()], None, 0));
        // RFC 3339 and defaults.
        let q = parse("name=cpu&from=1970-01-01T00:00:01.5Z&to=1970-01-01T00:00:02Z&step=250ms").unwrap();
        assert_eq!((q.from_ms(), q.to_ms(), q.step_ms()), (1_500, 2_000, 250));
        let q = parse("name=cpu").unwrap();
        assert_eq!((q.from_ms(), q.to_ms(), q.limit), (0, 1_000_000, LIMIT_DEFAULT));
        assert_eq!(
            NativeQuery::parse(&params("name=cpu"), 10_000_000).unwrap().from_ms(),
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
    fn pages_cover_every_series_once() {
        let s = new_store();
        for i in 0..23 {
            for j in 0..3 {
                let labels = ls(&[("__name__", "req"), ("i", &format!("{i:02}")), ("j", &j.to_string())]);
                s.append("t1", labels, 1_000 * (i as i64 + 1), (i * 10 + j) as f64).unwrap();
            }
        }
        let base = "name=req&from=0&to=100000&step=1m";
        let collect = |extra: &str, limits: &Limits| -> (Vec<QuerySeries>, usize) {
            let mut all = Vec::new();
            let mut pages = 0;
            let mut cursor: Option<String> = None;
            loop {
                let mut q = format!("{base}&{extra}");
                if let Some(c) = &cursor {
                    q.push_str(&format!("&cursor={c}"));
                }
                let a = run_with_limits(&s, "t1", &parse(&q).unwrap(), limits).unwrap();
                pages += 1;
                assert!(!a.series.is_empty() || pages == 1, "page {pages} is empty");
                all.extend(a.series);
                match a.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => return (all, pages),
                }
                assert!(pages < 100);
            }
        };
        let whole = answer(&s, &format!("{base}&limit=10000")).series;
        assert_eq!(whole.len(), 69);
        let cases: &[(&str, usize, usize)] = &[
            ("limit=10", 1_000_000, 7),
            ("limit=69", 1_000_000, 1),
            ("limit=68", 1_000_000, 2),
            ("limit=1", 1_000_000, 69),
            ("limit=100", 5, 14),
        ];
        for &(extra, page_points_max, pages) in cases {
            let limits = Limits { page_points_max, ..Limits::default() };
            let (all, n) = collect(extra, &limits);
            assert_eq!(all, whole, "{extra}, page_points_max {page_points_max}");
            assert_eq!(n, pages, "{extra}, page_points_max {page_points_max}");
        }

        // Grouped pages: groups by `i`, each summing its three series.
        let (grouped, pages) = collect("group_by=i&agg=sum&limit=5", &Limits::default());
        assert_eq!(pages, 5);
        let want: Vec<QuerySeries> = (0..23)
            .map(|i| QuerySeries { labels: ls(&[("i", &format!("{i:02}"))]), points: vec![(0, (30 * i + 3) as f64)] })
            .collect();
        assert_eq!(grouped, want);

        // A series added before the cursor is not returned; one after it is, once.
        let first = answer(&s, &format!("{base}&limit=3"));
        s.append("t1", ls(&[("__name__", "req"), ("i", "00"), ("j", "00")]), 500, 1.0).unwrap();
        s.append("t1", ls(&[("__name__", "req"), ("i", "99")]), 500, 1.0).unwrap();
        let q = format!("{base}&limit=10000&cursor={}", first.next_cursor.clone().unwrap());
        let rest = answer(&s, &q);
        assert_eq!(rest.series.len(), 67);
        assert_eq!(rest.series[0].labels, whole[3].labels);
        assert_eq!(rest.series.last().unwrap().labels, ls(&[("__name__", "req"), ("i", "99")]));
    }

    #[test]
    fn cursors_are_checked() {
        let s = store();
        let a = answer(&s, "name=cpu&from=0&to=700000&limit=1");
        let c = a.next_cursor.unwrap();
        assert!(c.bytes().all(|b| b.is_ascii_hexdigit()));
        // The same selection with another step, range or agg continues; another selection does not.
        assert!(parse(&format!("name=cpu&from=0&to=800000&step=1s&agg=max&cursor={c}")).is_ok());
        assert_eq!(parse(&format!("name=mem&cursor={c}")).unwrap_err(), QueryError::CursorQuery);
        assert_eq!(parse(&format!("name=cpu&labels=dc:x&cursor={c}")).unwrap_err(), QueryError::CursorQuery);
        assert_eq!(parse(&format!("name=cpu&group_by=dc&cursor={c}")).unwrap_err(), QueryError::CursorQuery);
        // Filters in another order are the same selection.
        let two = answer(&s, "name=cpu&from=0&to=700000&limit=1&labels=dc:x&labels=host=~a|b").next_cursor.unwrap();
        assert!(parse(&format!("name=cpu&labels=host=~a|b&labels=dc:x&cursor={two}")).is_ok());

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
        body.extend_from_slice(&parse("name=cpu").unwrap().fingerprint().to_le_bytes());
        body.extend_from_slice(&u32::MAX.to_le_bytes());
        body.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        let forged: String = body.iter().map(|b| format!("{b:02x}")).collect();
        assert!(matches!(parse(&format!("name=cpu&cursor={forged}")), Err(QueryError::Cursor(_))));
    }

    #[test]
    fn limits_are_enforced() {
        let s = store();
        let q = parse("name=cpu&from=0&to=800000").unwrap();
        let limits = |series_max, samples_max| Limits { series_max, samples_max, ..Limits::default() };
        assert_eq!(run_with_limits(&s, "t1", &q, &limits(3, 100)).unwrap_err(), QueryError::TooManySeries { max: 3 });
        // cpu has 4 series with 12 samples, NaN and staleness markers included.
        assert!(run_with_limits(&s, "t1", &q, &limits(4, 12)).is_ok());
        let e = run_with_limits(&s, "t1", &q, &limits(4, 11)).unwrap_err();
        assert_eq!(e, QueryError::TooManySamples { max: 11 });
        assert!(e.is_too_large());
        assert_eq!(
            e.to_string(),
            "the query reads more than samples_max 11 samples; use a shorter range or narrow it with labels"
        );
    }
}
