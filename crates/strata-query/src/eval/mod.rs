//! The evaluator. Every expression is evaluated over a grid of steps (one step for an instant
//! query); instant vectors travel as rows, one row a series with its points on the grid.
//!
//! Nodes that can work one series at a time (selectors, functions, vector–scalar operators,
//! aggregations) pass rows on through a callback as soon as each is computed, so a pipeline such
//! as `sum by (job) (rate(x[5m]))` holds one input series and the groups. Nodes that need all
//! their input (vector matching, `sort`, `histogram_quantile`) collect it first.
//!
//! Names follow Prometheus 3's delayed removal: a row that loses its metric name keeps it with
//! `drop_name` set until the end of evaluation, so that `label_replace` can still read it.

mod aggregate;
mod binary;
mod call;

use std::collections::HashMap;
use std::time::Instant;

use promql_parser::label::MatchOp;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{AtModifier, Expr, Offset, SubqueryExpr, VectorSelector};
use strata_tsdb::{Matcher, STALE_NAN_BITS};

use crate::engine::{Limits, QueryError};
use crate::storage::Storage;
use crate::value::{Annotations, Labels, QueryResult, Sample, Series, Value};

/// Loops over steps look at the clock this often.
pub(crate) const DEADLINE_EVERY: usize = 4096;

/// A subquery without a step uses this one, as Prometheus's default evaluation interval.
const DEFAULT_SUBQUERY_STEP_MS: i64 = 60_000;

/// The steps an expression is evaluated at: `start`, `start + step`, … up to `end`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl Grid {
    pub fn len(&self) -> usize {
        ((self.end - self.start) / self.step + 1).max(0) as usize
    }

    pub fn ts(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }
}

/// One series of an instant vector over the grid.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub labels: Labels,
    /// The metric name goes at the end of evaluation (Prometheus's delayed name removal).
    pub drop_name: bool,
    /// (step index, value), in step order.
    pub points: Vec<(u32, f64)>,
}

pub(crate) type Sink<'s> = dyn FnMut(Row) -> Result<(), QueryError> + 's;

pub(crate) struct Evaluator<'a> {
    storage: &'a dyn Storage,
    limits: &'a Limits,
    deadline: Instant,
    /// The query's own start and end, which `@ start()` and `@ end()` mean at any depth.
    query_start: i64,
    query_end: i64,
    /// The step of a range query; 0 for an instant query.
    query_step: i64,
    /// The query's text, for the positions annotations give.
    query: &'a str,
    /// Samples loaded and points produced so far, against `limits.max_samples`.
    samples: usize,
    pub ann: Annotations,
}

pub(crate) fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

pub(crate) fn label<'l>(labels: &'l Labels, name: &str) -> &'l str {
    labels.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str())
}

pub(crate) fn set_label(labels: &mut Labels, name: &str, value: &str) {
    match labels.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        Ok(i) if value.is_empty() => {
            labels.remove(i);
        }
        Ok(i) => labels[i].1 = value.to_string(),
        Err(_) if value.is_empty() => {}
        Err(i) => labels.insert(i, (name.to_string(), value.to_string())),
    }
}

/// Prometheus's `labels.String()`: `{a="1", b="2"}`.
pub(crate) fn labels_string(labels: &Labels) -> String {
    let inner: Vec<String> = labels.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
    }
}

impl<'a> Evaluator<'a> {
    pub fn new(storage: &'a dyn Storage, limits: &'a Limits, query: &'a str, grid: Grid) -> Evaluator<'a> {
        Evaluator {
            storage,
            limits,
            deadline: Instant::now() + limits.timeout,
            query_start: grid.start,
            query_end: grid.end,
            query_step: if grid.start == grid.end { 0 } else { grid.step },
            query,
            samples: 0,
            ann: Annotations::default(),
        }
    }

    pub fn instant(&mut self, expr: &Expr, t: i64) -> Result<QueryResult, QueryError> {
        let grid = Grid { start: t, end: t, step: 1 };
        let value = match expr.value_type() {
            ValueType::Matrix => Value::Matrix(self.matrix(expr, t)?),
            ValueType::String => Value::String { t, s: self.string(expr)? },
            ValueType::Scalar => Value::Scalar { t, v: self.scalar(expr, grid)?[0] },
            ValueType::Vector => {
                let rows = finish(self.rows(expr, grid)?, false)?;
                Value::Vector(
                    rows.into_iter()
                        .filter_map(|r| r.points.first().map(|p| Sample { labels: r.labels, t, v: p.1 }))
                        .collect(),
                )
            }
        };
        Ok(QueryResult { value, annotations: std::mem::take(&mut self.ann) })
    }

    pub fn range(&mut self, expr: &Expr, start: i64, end: i64, step: i64) -> Result<QueryResult, QueryError> {
        let grid = Grid { start, end, step };
        let rows = match expr.value_type() {
            ValueType::Scalar => {
                let values = self.scalar(expr, grid)?;
                vec![Row {
                    labels: Labels::new(),
                    drop_name: false,
                    points: values.into_iter().enumerate().map(|(i, v)| (i as u32, v)).collect(),
                }]
            }
            _ => self.rows(expr, grid)?,
        };
        let mut series: Vec<Series> = finish(rows, true)?
            .into_iter()
            .map(|r| Series {
                labels: r.labels,
                points: r.points.into_iter().map(|(i, v)| (grid.ts(i as usize), v)).collect(),
            })
            .collect();
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(QueryResult { value: Value::Matrix(series), annotations: std::mem::take(&mut self.ann) })
    }

    /// Where `text` first appears in the query, as Prometheus appends positions to annotations:
    /// ` (line:column)`, or nothing when it does not appear.
    pub fn position_of(&self, text: &str) -> String {
        match self.query.find(text) {
            Some(at) => {
                let before = &self.query[..at];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!(" ({line}:{column})")
            }
            None => String::new(),
        }
    }

    /// Where `expr` (as it prints) first appears after `anchor` in the query, as ` (line:column)`:
    /// the parser keeps no positions, and annotations name the sub-expression they are about.
    pub fn position_after(&self, anchor: &str, expr: &Expr) -> String {
        let text = expr.to_string();
        let Some(a) = self.query.find(anchor) else { return String::new() };
        match self.query[a..].find(&text) {
            Some(at) => {
                let (line, column) = crate::syntax::line_column(self.query, a + at);
                format!(" ({line}:{column})")
            }
            None => String::new(),
        }
    }

    /// Fails once the query has run past its timeout.
    pub fn check_deadline(&self) -> Result<(), QueryError> {
        if Instant::now() > self.deadline {
            return Err(QueryError::Timeout("expression evaluation"));
        }
        Ok(())
    }

    /// Counts `n` more points held (collected rows, aggregation state) against the limit.
    pub fn charge(&mut self, n: usize) -> Result<(), QueryError> {
        self.samples += n;
        if self.samples > self.limits.max_samples {
            return Err(QueryError::TooManySamples);
        }
        self.check_deadline()
    }

    /// `n` points held before are gone.
    pub fn release(&mut self, n: usize) {
        self.samples = self.samples.saturating_sub(n);
    }

    /// A series of `n` samples is loaded for as long as it is worked on: it must fit beside what
    /// is held, as Prometheus counts samples in memory at once.
    fn load(&self, n: usize) -> Result<(), QueryError> {
        if self.samples + n > self.limits.max_samples {
            return Err(QueryError::TooManySamples);
        }
        self.check_deadline()
    }

    /// The time `@` pins a selector or subquery to, if it has one.
    fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.query_start),
            Some(AtModifier::End) => Some(self.query_end),
            Some(AtModifier::At(t)) => Some(match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => d.as_millis() as i64,
                Err(e) => -(e.duration().as_millis() as i64),
            }),
        }
    }

    // ---- dispatch ----

    /// Evaluates an instant-vector expression and keeps all of it; its points count against the
    /// sample limit until the caller releases them.
    pub fn rows(&mut self, expr: &Expr, grid: Grid) -> Result<Vec<Row>, QueryError> {
        let mut out = Vec::new();
        let budget = self.limits.max_samples.saturating_sub(self.samples);
        let mut held = 0usize;
        self.each(expr, grid, &mut |r| {
            held += r.points.len();
            if held > budget {
                return Err(QueryError::TooManySamples);
            }
            out.push(r);
            Ok(())
        })?;
        self.charge(held)?;
        Ok(out)
    }

    /// Evaluates an instant-vector expression, handing each row to `out` as it is complete.
    pub fn each(&mut self, expr: &Expr, grid: Grid, out: &mut Sink) -> Result<(), QueryError> {
        match expr {
            Expr::Paren(p) => self.each(&p.expr, grid, out),
            Expr::VectorSelector(vs) => self.vector_selector(vs, grid, out),
            Expr::Aggregate(a) => self.aggregate(a, grid, out),
            Expr::Binary(b) => self.binary(b, grid, out),
            Expr::Call(c) => self.call(c, grid, out),
            Expr::Unary(u) => self.each(&u.expr, grid, &mut |mut r| {
                for p in &mut r.points {
                    p.1 = -p.1;
                }
                r.drop_name = true;
                out(r)
            }),
            Expr::Extension(_) => Err(QueryError::BadData("extension expressions are not supported".into())),
            other => Err(QueryError::BadData(format!(
                "expected an instant vector, got {}",
                crate::engine::type_name(other.value_type())
            ))),
        }
    }

    pub fn scalar(&mut self, expr: &Expr, grid: Grid) -> Result<Vec<f64>, QueryError> {
        let n = grid.len();
        match expr {
            Expr::NumberLiteral(l) => Ok(vec![l.val; n]),
            Expr::Paren(p) => self.scalar(&p.expr, grid),
            Expr::Unary(u) => Ok(self.scalar(&u.expr, grid)?.into_iter().map(|v| -v).collect()),
            Expr::Binary(b) => {
                let op = b.op.to_string();
                let l = self.scalar(&b.lhs, grid)?;
                let r = self.scalar(&b.rhs, grid)?;
                Ok(l.into_iter().zip(r).map(|(l, r)| binary::scalar_op(&op, l, r)).collect())
            }
            Expr::Call(c) => self.scalar_call(c, grid),
            Expr::StringLiteral(_) => Err(QueryError::BadData("expected a scalar, got a string".into())),
            _ => Err(QueryError::BadData(format!(
                "expected a scalar, got {}",
                crate::engine::type_name(expr.value_type())
            ))),
        }
    }

    pub fn string(&mut self, expr: &Expr) -> Result<String, QueryError> {
        match expr {
            Expr::StringLiteral(s) => Ok(s.val.clone()),
            Expr::Paren(p) => self.string(&p.expr),
            _ => Err(QueryError::BadData("expected a string".into())),
        }
    }

    // ---- selectors ----

    fn matchers(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, QueryError> {
        let convert = |ms: &[promql_parser::label::Matcher]| -> Vec<Matcher> {
            let mut out: Vec<Matcher> = Vec::with_capacity(ms.len() + 1);
            if let Some(name) = &vs.name {
                out.push(Matcher::Equal("__name__".into(), name.clone()));
            }
            for m in ms {
                out.push(match &m.op {
                    MatchOp::Equal => Matcher::Equal(m.name.clone(), m.value.clone()),
                    MatchOp::NotEqual => Matcher::NotEqual(m.name.clone(), m.value.clone()),
                    MatchOp::Re(re) => Matcher::Regex(m.name.clone(), re.clone()),
                    MatchOp::NotRe(re) => Matcher::NotRegex(m.name.clone(), re.clone()),
                });
            }
            out
        };
        if vs.matchers.or_matchers.is_empty() {
            Ok(vec![convert(&vs.matchers.matchers)])
        } else {
            Ok(vs.matchers.or_matchers.iter().map(|ms| convert(ms)).collect())
        }
    }

    /// Every series the selector matches, with its samples in `[mint, maxt]`, sorted by labels.
    pub fn select(
        &mut self,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
        each: &mut dyn FnMut(&mut Self, Series) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        let groups = Self::matchers(vs)?;
        if groups.len() == 1 {
            let set = self.storage.select(&groups[0], mint, maxt)?;
            for series in set {
                let series = series?;
                self.load(series.points.len())?;
                each(self, series)?;
            }
            return Ok(());
        }
        // `{a="1" or b="2"}`: the union, each series once.
        let mut all: Vec<Series> = Vec::new();
        for g in &groups {
            for series in self.storage.select(g, mint, maxt)? {
                all.push(series?);
            }
        }
        all.sort_by(|a, b| a.labels.cmp(&b.labels));
        all.dedup_by(|a, b| a.labels == b.labels);
        for series in all {
            self.load(series.points.len())?;
            each(self, series)?;
        }
        Ok(())
    }

    fn vector_selector(&mut self, vs: &VectorSelector, grid: Grid, out: &mut Sink) -> Result<(), QueryError> {
        self.vector_selector_with(vs, grid, false, out)
    }

    /// A selector's value at each step: the newest sample in the lookback window before the
    /// step's time (less the offset, or at the `@` time), unless it is a staleness marker. With
    /// `timestamps`, the value is the sample's time in seconds instead.
    pub(super) fn vector_selector_with(
        &mut self,
        vs: &VectorSelector,
        grid: Grid,
        timestamps: bool,
        out: &mut Sink,
    ) -> Result<(), QueryError> {
        let offset = offset_ms(&vs.offset);
        let at = self.at_ms(&vs.at);
        let lookback = self.limits.lookback_ms;
        let (first, last) = match at {
            Some(t) => (t, t),
            None => (grid.start, grid.end),
        };
        let n = grid.len();
        self.select(vs, first - offset - lookback + 1, last - offset, &mut |ev, series| {
            let mut points = Vec::new();
            let s = &series.points;
            // The newest sample at or before each step's reference time; steps only go forward.
            let mut next = 0usize;
            for i in 0..n {
                if i % DEADLINE_EVERY == DEADLINE_EVERY - 1 {
                    ev.check_deadline()?;
                }
                let reference = at.unwrap_or_else(|| grid.ts(i)) - offset;
                if at.is_some() {
                    next = s.partition_point(|p| p.0 <= reference);
                } else {
                    while next < s.len() && s[next].0 <= reference {
                        next += 1;
                    }
                }
                if next == 0 {
                    continue;
                }
                let (t, v) = s[next - 1];
                if t <= reference - lookback || is_stale(v) {
                    continue;
                }
                points.push((i as u32, if timestamps { t as f64 / 1000.0 } else { v }));
            }
            if points.is_empty() {
                return Ok(());
            }
            out(Row { labels: series.labels, drop_name: false, points })
        })
    }

    /// The samples each series of a range argument holds (a range selector or a subquery), with
    /// the window of each step: `(end - range, end]` where `end` is the step's time less the
    /// offset, or the `@` time.
    pub fn range_arg(
        &mut self,
        expr: &Expr,
        grid: Grid,
        each: &mut dyn FnMut(&mut Self, RangeSeries) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        match expr {
            Expr::MatrixSelector(ms) => {
                let vs = &ms.vs;
                let range = ms.range.as_millis() as i64;
                let offset = offset_ms(&vs.offset);
                let at = self.at_ms(&vs.at);
                let (first, last) = match at {
                    Some(t) => (t, t),
                    None => (grid.start, grid.end),
                };
                let window = Window { range, offset, at };
                self.select(vs, first - offset - range + 1, last - offset, &mut |ev, series| {
                    let samples: Vec<(i64, f64)> = series.points.into_iter().filter(|p| !is_stale(p.1)).collect();
                    each(ev, RangeSeries { labels: series.labels, drop_name: false, samples, window })
                })
            }
            Expr::Subquery(sq) => {
                let (rows, inner) = self.subquery(sq, grid)?;
                let held: usize = rows.iter().map(|r| r.points.len()).sum();
                let window = Window {
                    range: sq.range.as_millis() as i64,
                    offset: offset_ms(&sq.offset),
                    at: self.at_ms(&sq.at),
                };
                for row in rows {
                    let samples = row.points.iter().map(|&(i, v)| (inner.ts(i as usize), v)).collect();
                    each(self, RangeSeries { labels: row.labels, drop_name: row.drop_name, samples, window })?;
                }
                self.release(held);
                Ok(())
            }
            Expr::Paren(p) => self.range_arg(&p.expr, grid, each),
            _ => Err(QueryError::BadData(format!(
                "expected a range vector, got {}",
                crate::engine::type_name(expr.value_type())
            ))),
        }
    }

    /// Evaluates a subquery's expression on its own grid: aligned to its step, covering the
    /// outer grid's windows.
    fn subquery(&mut self, sq: &SubqueryExpr, grid: Grid) -> Result<(Vec<Row>, Grid), QueryError> {
        let offset = offset_ms(&sq.offset);
        let range = sq.range.as_millis() as i64;
        let step = sq.step.map_or(DEFAULT_SUBQUERY_STEP_MS, |d| d.as_millis() as i64);
        if step <= 0 {
            return Err(QueryError::BadData("subquery step must be positive".into()));
        }
        let (first, last) = match self.at_ms(&sq.at) {
            Some(t) => (t, t),
            None => (grid.start, grid.end),
        };
        let from = first - offset - range;
        let mut start = step * (from / step);
        if start <= from {
            start += step;
        }
        let inner = Grid { start, end: last - offset, step };
        if inner.end < inner.start {
            return Ok((Vec::new(), inner));
        }
        // Every row of the subquery holds up to this many points: refuse a grid that alone
        // would pass the sample limit before allocating it.
        if inner.len() > self.limits.max_samples {
            return Err(QueryError::TooManySamples);
        }
        Ok((self.rows(&sq.expr, inner)?, inner))
    }

    /// The value of a range-vector expression at one time: a range selector's raw samples or a
    /// subquery's points in their window.
    fn matrix(&mut self, expr: &Expr, t: i64) -> Result<Vec<Series>, QueryError> {
        let grid = Grid { start: t, end: t, step: 1 };
        let mut out = Vec::new();
        self.range_arg(expr, grid, &mut |ev, rs| {
            let (from, to) = rs.window.bounds(t);
            let points: Vec<(i64, f64)> = rs.samples.into_iter().filter(|p| p.0 > from && p.0 <= to).collect();
            // The answer holds every sample it returns.
            ev.charge(points.len())?;
            if !points.is_empty() {
                let mut labels = rs.labels;
                if rs.drop_name {
                    labels.retain(|(n, _)| n != "__name__");
                }
                out.push(Series { labels, points });
            }
            Ok(())
        })?;
        Ok(out)
    }
}

/// Where a range argument's window lies for a step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
}

impl Window {
    /// `(from, to]` for the step at `t`.
    pub fn bounds(&self, t: i64) -> (i64, i64) {
        let to = self.at.unwrap_or(t) - self.offset;
        (to - self.range, to)
    }
}

/// One series of a range argument.
pub(crate) struct RangeSeries {
    pub labels: Labels,
    pub drop_name: bool,
    /// Samples in time order, staleness markers left out.
    pub samples: Vec<(i64, f64)>,
    pub window: Window,
}

/// Removes metric names that were to go, and refuses two series with the same labels at the
/// same step. In a range result, series that became equal but never share a step are one.
fn finish(rows: Vec<Row>, merge: bool) -> Result<Vec<Row>, QueryError> {
    let mut out: Vec<Row> = Vec::with_capacity(rows.len());
    let mut seen: HashMap<Labels, usize> = HashMap::with_capacity(rows.len());
    for mut row in rows {
        if row.drop_name {
            row.labels.retain(|(n, _)| n != "__name__");
            row.drop_name = false;
        }
        match seen.get(&row.labels) {
            None => {
                seen.insert(row.labels.clone(), out.len());
                out.push(row);
            }
            Some(&i) => {
                let same = &mut out[i];
                let overlap = {
                    let mut a = same.points.iter().peekable();
                    let mut b = row.points.iter().peekable();
                    let mut found = false;
                    while let (Some(x), Some(y)) = (a.peek(), b.peek()) {
                        if x.0 == y.0 {
                            found = true;
                            break;
                        }
                        if x.0 < y.0 {
                            a.next();
                        } else {
                            b.next();
                        }
                    }
                    found
                };
                if overlap || !merge {
                    return Err(QueryError::Execution("vector cannot contain metrics with the same labelset".into()));
                }
                same.points.extend(row.points);
                same.points.sort_by_key(|p| p.0);
            }
        }
    }
    Ok(out)
}
