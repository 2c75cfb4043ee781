//! The native metrics query (`/query/v1/metrics`): the series of one metric that label matchers
//! select, downsampled by step, aggregated and grouped, one page of output series at a time. The
//! server reads the request's parameters into a `NativeQuery` (`strata-server`'s
//! `metrics_query.rs` documents them); the samples come from the store's `Querier`.
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
//!   the label set `after` (the last of the previous page). A page ends earlier once it holds
//!   `Limits::page_points_max` points (but always has one series); `QueryAnswer::more` says
//!   whether another page follows.
//! - Without `group_by` the series are read one at a time and reading stops once the page is
//!   full; series up to `after` are not read at all. With `group_by` every selected series is
//!   read, since any of them may belong to any group.
//! - Limits: at most `Limits::series_max` series selected and `Limits::samples_max` samples read
//!   per request, with an error saying which and how to narrow the query.

use std::collections::BTreeMap;

use crate::index::{LabelSet, Matcher};
use crate::store::{ReadLimits, SelectError, SeriesSet, Store};

/// Latest time a query may name: 9999-12-31T23:59:59.999Z, as far as RFC 3339 goes. It also keeps
/// bucket arithmetic far from overflow.
pub const TIME_MS_MAX: i64 = 253_402_300_799_999;

/// What one request may read and answer.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Series the selection may match (`ReadLimits::series_max`).
    pub series_max: usize,
    /// Samples the selected series may have in the range, together (`ReadLimits::samples_max`).
    pub samples_max: usize,
    /// Points one page may hold; a page ends early, with more to follow, once it has this many.
    pub page_points_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { series_max: 100_000, samples_max: 50_000_000, page_points_max: 1_000_000 }
    }
}

/// Why a query has no answer. `Range` and `Step` are a query its builder should not have made;
/// `TooManySeries` and `TooManySamples` are a valid query that asks for too much; `Store` is the
/// store's failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error("range {from_ms} to {to_ms} is empty or outside 0 to {TIME_MS_MAX}")]
    Range { from_ms: i64, to_ms: i64 },
    #[error("step {0}ms is not positive")]
    Step(i64),
    #[error("the query selects more than series_max {max} series; narrow it with labels")]
    TooManySeries { max: usize },
    #[error("the query reads more than samples_max {max} samples; use a shorter range or narrow it with labels")]
    TooManySamples { max: usize },
    #[error("cannot read the metric store: {0}")]
    Store(String),
}

impl QueryError {
    /// Whether the query was valid but asked for more than the limits allow.
    pub fn is_too_large(&self) -> bool {
        matches!(self, QueryError::TooManySeries { .. } | QueryError::TooManySamples { .. })
    }
}

impl From<SelectError> for QueryError {
    fn from(e: SelectError) -> QueryError {
        match e {
            SelectError::TooManySeries { max } => QueryError::TooManySeries { max },
            SelectError::TooManySamples { max } => QueryError::TooManySamples { max },
            SelectError::Block(reason) => QueryError::Store(reason),
        }
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

/// A native query: which series, which range and step, how to aggregate, which page.
#[derive(Debug, Clone)]
pub struct NativeQuery {
    name: String,
    /// Besides `__name__`; all must hold.
    matchers: Vec<Matcher>,
    from_ms: i64,
    to_ms: i64,
    step_ms: i64,
    agg: Agg,
    /// Sorted, unique.
    group_by: Vec<String>,
    limit: usize,
    /// Where the previous page ended.
    after: Option<LabelSet>,
}

impl NativeQuery {
    /// The series of metric `name` matching every one of `matchers`, over `[from_ms, to_ms]` in
    /// buckets of `step_ms`, averaged, ungrouped, the first 100 of them. The range must lie
    /// within `0..=TIME_MS_MAX` and the step be positive.
    pub fn new(
        name: impl Into<String>,
        matchers: Vec<Matcher>,
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
    ) -> Result<NativeQuery, QueryError> {
        if !(0 <= from_ms && from_ms <= to_ms && to_ms <= TIME_MS_MAX) {
            return Err(QueryError::Range { from_ms, to_ms });
        }
        if step_ms <= 0 {
            return Err(QueryError::Step(step_ms));
        }
        Ok(NativeQuery {
            name: name.into(),
            matchers,
            from_ms,
            to_ms,
            step_ms,
            agg: Agg::Avg,
            group_by: Vec::new(),
            limit: 100,
            after: None,
        })
    }

    /// How a bucket's samples become one value (by default their average).
    pub fn with_agg(mut self, agg: Agg) -> NativeQuery {
        self.agg = agg;
        self
    }

    /// Groups the series by these labels.
    pub fn with_group_by(mut self, mut labels: Vec<String>) -> NativeQuery {
        labels.sort();
        labels.dedup();
        self.group_by = labels;
        self
    }

    /// Output series per page, at least one.
    pub fn with_limit(mut self, limit: usize) -> NativeQuery {
        self.limit = limit.max(1);
        self
    }

    /// Starts the page after the output series with these labels (the previous page's last).
    pub fn with_after(mut self, labels: LabelSet) -> NativeQuery {
        self.after = Some(labels);
        self
    }

    /// The metric name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matchers besides the name.
    pub fn matchers(&self) -> &[Matcher] {
        &self.matchers
    }

    pub fn from_ms(&self) -> i64 {
        self.from_ms
    }

    pub fn to_ms(&self) -> i64 {
        self.to_ms
    }

    pub fn step_ms(&self) -> i64 {
        self.step_ms
    }

    pub fn agg(&self) -> Agg {
        self.agg
    }

    /// Sorted, unique.
    pub fn group_by(&self) -> &[String] {
        &self.group_by
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Where the page starts: after this output series.
    pub fn after(&self) -> Option<&LabelSet> {
        self.after.as_ref()
    }

    /// An output series' identity: the full label set, or the group's labels.
    fn output_labels(&self, labels: LabelSet) -> LabelSet {
        if self.group_by.is_empty() {
            return labels;
        }
        labels.into_iter().filter(|(n, v)| !v.is_empty() && self.group_by.binary_search(n).is_ok()).collect()
    }

    fn is_after_cursor(&self, labels: &LabelSet) -> bool {
        self.after.as_ref().is_none_or(|after| labels > after)
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
    /// Whether output series follow the last of this page: ask again with it as `after`.
    pub more: bool,
    pub step_ms: i64,
    /// Selected series read, before grouping.
    pub series_scanned: usize,
    /// Samples read, as `ReadLimits::samples_max` counts them.
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
    let read_limits = ReadLimits { series_max: limits.series_max, samples_max: limits.samples_max };
    let mut set = store.querier(tenant, q.from_ms, q.to_ms).with_limits(read_limits).select(&matchers);
    let mut series_scanned = 0usize;
    let (series, more) = if q.group_by.is_empty() {
        if let Some(after) = &q.after {
            set.skip_through(after);
        }
        // Series come sorted by label set, which is the output order: read only what the page
        // needs. NaN samples go first, so that every series left has at least one point.
        let outputs = set.by_ref().filter_map(|s| {
            let s = match s {
                Ok(s) => s,
                Err(e) => return Some(Err(e.into())),
            };
            series_scanned += 1;
            let mut samples = s.samples;
            samples.retain(|(_, v)| !v.is_nan());
            (!samples.is_empty()).then(|| Ok((s.labels, bucket_points(&samples, q.step_ms, q.agg))))
        });
        page(outputs, q.limit, limits.page_points_max)?
    } else {
        let groups = groups(q, &mut set, &mut series_scanned)?;
        let outputs =
            groups.into_iter().map(|(labels, members)| Ok((labels, group_points(&members, q.step_ms, q.agg))));
        page(outputs, q.limit, limits.page_points_max)?
    };
    Ok(QueryAnswer { series, more, step_ms: q.step_ms, series_scanned, samples_read: set.samples_read() })
}

/// Output series by label set, each with the samples of its members.
type Groups = BTreeMap<LabelSet, Vec<Vec<(i64, f64)>>>;

/// Every group after the cursor with the samples of its members, NaN left out.
fn groups(q: &NativeQuery, set: &mut SeriesSet, series_scanned: &mut usize) -> Result<Groups, QueryError> {
    let mut groups = Groups::new();
    for s in set {
        let s = s?;
        *series_scanned += 1;
        let key = q.output_labels(s.labels);
        if !q.is_after_cursor(&key) {
            continue;
        }
        let mut samples = s.samples;
        samples.retain(|(_, v)| !v.is_nan());
        if !samples.is_empty() {
            groups.entry(key).or_default().push(samples);
        }
    }
    Ok(groups)
}

/// The first output series, in label order, that fit in a page; and whether any follow.
fn page(
    outputs: impl Iterator<Item = Result<(LabelSet, Vec<(i64, f64)>), QueryError>>,
    limit: usize,
    page_points_max: usize,
) -> Result<(Vec<QuerySeries>, bool), QueryError> {
    let mut series: Vec<QuerySeries> = Vec::new();
    let mut points_total = 0usize;
    for output in outputs {
        let (labels, points) = output?;
        if series.len() == limit || (!series.is_empty() && points_total + points.len() > page_points_max) {
            return Ok((series, true));
        }
        points_total += points.len();
        series.push(QuerySeries { labels, points });
    }
    Ok((series, false))
}

fn bucket_start(t: i64, step_ms: i64) -> i64 {
    t - t.rem_euclid(step_ms)
}

/// Buckets `[from_ms, to_ms]` touches: the points one output series may have.
pub fn bucket_count(from_ms: i64, to_ms: i64, step_ms: i64) -> u64 {
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

    /// A query written as the server's parameters (`name=cpu&step=1m&labels=host=~a|b&...`), so
    /// that tables of cases stay short. Without `to`, `from` and `step`: 1_000_000, an hour
    /// before `to`, and 1 minute. Only well-formed input: the server's own tests check parsing.
    fn parse(s: &str) -> NativeQuery {
        let (mut name, mut matchers, mut group_by) = (String::new(), Vec::new(), Vec::new());
        let (mut from, mut to, mut step) = (None, 1_000_000, 60_000);
        let (mut agg, mut limit, mut after) = (Agg::Avg, 100, None);
        for (k, v) in s.split('&').filter_map(|p| p.split_once('=')) {
            match k {
                "name" => name = v.to_string(),
                "from" => from = Some(v.parse().unwrap()),
                "to" => to = v.parse().unwrap(),
                "step" => step = strata_model::parse_duration_ms(v).unwrap(),
                "limit" => limit = v.parse().unwrap(),
                "group_by" => group_by.extend(v.split(',').map(str::to_string)),
                "agg" => {
                    agg = match v {
                        "sum" => Agg::Sum,
                        "avg" => Agg::Avg,
                        "min" => Agg::Min,
                        "max" => Agg::Max,
                        "count" => Agg::Count,
                        p => Agg::Percentile(p[1..].parse().unwrap()),
                    }
                }
                "labels" => {
                    let end = v.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap();
                    let (label, rest) = v.split_at(end);
                    let m = if let Some(value) = rest.strip_prefix("!=") {
                        Matcher::NotEqual(label.into(), value.into())
                    } else if let Some(re) = rest.strip_prefix("!~") {
                        Matcher::regex(label, re, true).unwrap()
                    } else if let Some(re) = rest.strip_prefix("=~") {
                        Matcher::regex(label, re, false).unwrap()
                    } else {
                        Matcher::Equal(label.into(), rest[1..].into())
                    };
                    matchers.push(m);
                }
                "after" => after = Some(ls(&[("i", v)])),
                other => panic!("no parameter {other} in these tests"),
            }
        }
        let from = from.unwrap_or((to - 3_600_000).max(0));
        let q = NativeQuery::new(name, matchers, from, to, step).unwrap();
        let q = q.with_agg(agg).with_group_by(group_by).with_limit(limit);
        match after {
            Some(a) => q.with_after(a),
            None => q,
        }
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
        run(store, "t1", &parse(q)).unwrap_or_else(|e| panic!("{q}: {e}"))
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
        assert!(run(&s, "t2", &parse(range)).unwrap().series.is_empty(), "another tenant sees nothing");
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
    fn queries_must_have_a_range_within_bounds_and_a_positive_step() {
        let new = |from, to, step| NativeQuery::new("cpu", Vec::new(), from, to, step).map(|q| q.step_ms());
        assert_eq!(new(0, TIME_MS_MAX, 1), Ok(1));
        assert_eq!(new(5, 5, 1), Ok(1), "from == to is one instant");
        assert_eq!(new(5, 4, 1), Err(QueryError::Range { from_ms: 5, to_ms: 4 }));
        assert_eq!(new(-1, 4, 1), Err(QueryError::Range { from_ms: -1, to_ms: 4 }));
        assert_eq!(new(0, TIME_MS_MAX + 1, 1), Err(QueryError::Range { from_ms: 0, to_ms: TIME_MS_MAX + 1 }));
        assert_eq!(new(0, 4, 0), Err(QueryError::Step(0)));
        assert_eq!(new(0, 4, -1000), Err(QueryError::Step(-1000)));
        let q = NativeQuery::new("cpu", Vec::new(), 0, 1, 1).unwrap();
        let q = q.with_group_by(vec!["b".into(), "a".into(), "b".into()]).with_limit(0);
        assert_eq!((q.group_by, q.limit), (vec!["a".to_string(), "b".to_string()], 1));
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
            let mut all: Vec<QuerySeries> = Vec::new();
            let mut pages = 0;
            let mut after: Option<LabelSet> = None;
            loop {
                let mut q = parse(&format!("{base}&{extra}"));
                if let Some(a) = after.take() {
                    q = q.with_after(a);
                }
                let a = run_with_limits(&s, "t1", &q, limits).unwrap();
                pages += 1;
                assert!(!a.series.is_empty() || pages == 1, "page {pages} is empty");
                all.extend(a.series);
                if !a.more {
                    return (all, pages);
                }
                after = Some(all.last().unwrap().labels.clone());
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
        assert_eq!(answer(&s, &format!("{base}&group_by=i&agg=sum&after=20")).series, want[21..]);

        // A series added before the page's start is not returned; one after it is, once.
        let first = answer(&s, &format!("{base}&limit=3"));
        assert!(first.more);
        s.append("t1", ls(&[("__name__", "req"), ("i", "00"), ("j", "00")]), 500, 1.0).unwrap();
        s.append("t1", ls(&[("__name__", "req"), ("i", "99")]), 500, 1.0).unwrap();
        let q = parse(&format!("{base}&limit=10000")).with_after(first.series[2].labels.clone());
        let rest = run(&s, "t1", &q).unwrap();
        assert_eq!(rest.series.len(), 67);
        assert_eq!(rest.series[0].labels, whole[3].labels);
        assert_eq!(rest.series.last().unwrap().labels, ls(&[("__name__", "req"), ("i", "99")]));
        assert!(!rest.more);
    }

    #[test]
    fn limits_are_enforced() {
        let s = store();
        let q = parse("name=cpu&from=0&to=800000");
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
        assert_eq!(
            QueryError::TooManySeries { max: 3 }.to_string(),
            "the query selects more than series_max 3 series; narrow it with labels"
        );
    }

    #[test]
    fn an_ungrouped_page_reads_only_the_series_it_needs() {
        let s = store();
        // host=a has 5 samples, b 3, c 3, d 1. A page of one series reads a, and b to know
        // that more follow; the page after a starts reading at b.
        let limits = |samples_max| Limits { samples_max, ..Limits::default() };
        let first = parse("name=cpu&from=0&to=800000&limit=1");
        let a = run_with_limits(&s, "t1", &first, &limits(8)).unwrap();
        assert_eq!((a.series.len(), a.more, a.series_scanned, a.samples_read), (1, true, 2, 8));
        assert_eq!(run_with_limits(&s, "t1", &first, &limits(7)).unwrap_err(), QueryError::TooManySamples { max: 7 });
        let second = first.clone().with_after(a.series[0].labels.clone());
        let b = run_with_limits(&s, "t1", &second, &limits(6)).unwrap();
        assert_eq!(b.series[0].labels, ls(&[("__name__", "cpu"), ("dc", "x"), ("host", "b")]));
        assert_eq!((b.series_scanned, b.samples_read), (2, 6));
        // Grouped, any series may belong to the first group: all are read.
        let grouped = parse("name=cpu&from=0&to=800000&limit=1&group_by=dc");
        assert_eq!(
            run_with_limits(&s, "t1", &grouped, &limits(11)).unwrap_err(),
            QueryError::TooManySamples { max: 11 }
        );
    }
}
