//! Function calls: functions over range vectors, element-wise functions, and those that work on
//! whole vectors (`absent`, `sort`, `histogram_quantile`, `label_replace`, …).

use std::collections::HashMap;

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{Call, Expr, VectorSelector};

use super::{DEADLINE_EVERY, Evaluator, Grid, Row, Sink, label, set_label};
use crate::engine::QueryError;
use crate::functions::histogram::{bucket_fraction, bucket_quantile};
use crate::functions::instant;
use crate::functions::range::{self, RangeFn};
use crate::functions::stats;
use crate::value::Labels;

/// Native-histogram functions: float series have no native histograms, so they give nothing.
const NATIVE_HISTOGRAM_FUNCTIONS: [&str; 5] =
    ["histogram_avg", "histogram_count", "histogram_stddev", "histogram_stdvar", "histogram_sum"];

const DATE_FUNCTIONS: [&str; 8] =
    ["day_of_month", "day_of_week", "day_of_year", "days_in_month", "hour", "minute", "month", "year"];

impl Evaluator<'_> {
    pub(super) fn scalar_call(&mut self, c: &Call, grid: Grid) -> Result<Vec<f64>, QueryError> {
        let n = grid.len();
        match c.func.name {
            "time" => Ok((0..n).map(|i| grid.ts(i) as f64 / 1000.0).collect()),
            "pi" => Ok(vec![std::f64::consts::PI; n]),
            "step" => Ok(vec![self.query_step as f64 / 1000.0; n]),
            "range" => Ok(vec![(self.query_end - self.query_start) as f64 / 1000.0; n]),
            "start" => Ok(vec![self.query_start as f64 / 1000.0; n]),
            "end" => Ok(vec![self.query_end as f64 / 1000.0; n]),
            "min_of" | "max_of" => {
                let a = self.scalar(&c.args.args[0], grid)?;
                let b = self.scalar(&c.args.args[1], grid)?;
                let f = if c.func.name == "min_of" { stats::go_min } else { stats::go_max };
                Ok(a.into_iter().zip(b).map(|(a, b)| f(a, b)).collect())
            }
            "scalar" => {
                let mut values = vec![f64::NAN; n];
                let mut count = vec![0u32; n];
                self.each(&c.args.args[0], grid, &mut |row| {
                    for &(i, v) in &row.points {
                        values[i as usize] = v;
                        count[i as usize] += 1;
                    }
                    Ok(())
                })?;
                Ok(values.into_iter().zip(count).map(|(v, c)| if c == 1 { v } else { f64::NAN }).collect())
            }
            other => Err(QueryError::BadData(format!("function {other:?} does not return a scalar"))),
        }
    }

    pub(super) fn call(&mut self, c: &Call, grid: Grid, out: &mut Sink) -> Result<(), QueryError> {
        let name = c.func.name;
        let args = &c.args.args;
        if let Some(f) = RangeFn::from_name(name) {
            if f == RangeFn::AbsentOverTime {
                return self.absent_over_time(&args[0], grid, out);
            }
            return self.range_call(name, f, args, grid, out);
        }
        if let Some(f) = instant::math(name) {
            return self.each(&args[0], grid, &mut |mut row| {
                for p in &mut row.points {
                    p.1 = f(p.1);
                }
                row.drop_name = true;
                out(row)
            });
        }
        if DATE_FUNCTIONS.contains(&name) {
            return self.date(name, args, grid, out);
        }
        if NATIVE_HISTOGRAM_FUNCTIONS.contains(&name) {
            return self.each(&args[0], grid, &mut |_| Ok(()));
        }
        match name {
            "round" => {
                let to = match args.get(1) {
                    Some(a) => self.scalar(a, grid)?,
                    None => vec![1.0; grid.len()],
                };
                self.map_points(&args[0], grid, out, |i, v| Some(instant::round(v, to[i])))
            }
            "clamp" => {
                let min = self.scalar(&args[1], grid)?;
                let max = self.scalar(&args[2], grid)?;
                self.map_points(&args[0], grid, out, |i, v| instant::clamp(v, min[i], max[i]))
            }
            "clamp_min" => {
                let min = self.scalar(&args[1], grid)?;
                self.map_points(&args[0], grid, out, |i, v| Some(instant::clamp_min(v, min[i])))
            }
            "clamp_max" => {
                let max = self.scalar(&args[1], grid)?;
                self.map_points(&args[0], grid, out, |i, v| Some(instant::clamp_max(v, max[i])))
            }
            "timestamp" => self.timestamp(&args[0], grid, out),
            "vector" => {
                let values = self.scalar(&args[0], grid)?;
                let points: Vec<(u32, f64)> = values.into_iter().enumerate().map(|(i, v)| (i as u32, v)).collect();
                out(Row { labels: Labels::new(), drop_name: false, points })
            }
            "absent" => self.absent(&args[0], grid, out),
            "label_replace" => self.label_replace(args, grid, out),
            "label_join" => self.label_join(args, grid, out),
            "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" => self.sort(name, args, grid, out),
            "histogram_quantile" | "histogram_quantiles" | "histogram_fraction" => {
                self.classic_histogram(name, args, grid, out)
            }
            other => Err(QueryError::BadData(format!("function {other:?} is not supported"))),
        }
    }

    /// An element-wise function with per-step parameters; `None` drops the element.
    fn map_points(
        &mut self,
        arg: &Expr,
        grid: Grid,
        out: &mut Sink,
        f: impl Fn(usize, f64) -> Option<f64>,
    ) -> Result<(), QueryError> {
        self.each(arg, grid, &mut |mut row| {
            row.points.retain_mut(|p| match f(p.0 as usize, p.1) {
                Some(v) => {
                    p.1 = v;
                    true
                }
                None => false,
            });
            row.drop_name = true;
            if row.points.is_empty() { Ok(()) } else { out(row) }
        })
    }

    fn range_call(
        &mut self,
        name: &str,
        f: RangeFn,
        args: &[Box<Expr>],
        grid: Grid,
        out: &mut Sink,
    ) -> Result<(), QueryError> {
        let n = grid.len();
        let matrix_at = args
            .iter()
            .position(|a| a.value_type() == ValueType::Matrix)
            .ok_or_else(|| QueryError::BadData(format!("function {name:?} needs a range vector argument")))?;
        let mut params: Vec<Vec<f64>> = Vec::new();
        for (i, a) in args.iter().enumerate() {
            if i != matrix_at {
                params.push(self.scalar(a, grid)?);
            }
        }
        let counter_check = matches!(f, RangeFn::Rate | RangeFn::Increase);
        let mut step_args = vec![0.0; params.len()];
        self.range_arg(&args[matrix_at], grid, &mut |ev, rs| {
            ev.check_deadline()?;
            let s = &rs.samples;
            let mut points = Vec::new();
            let (mut lo, mut hi) = (0usize, 0usize);
            // A counter's resets summed from the start, so that each step's window costs the
            // same however many samples it holds.
            let resets = counter_check.then(|| range::reset_prefix(s));
            // Samples looked at since the clock was last read: a window can be large.
            let mut work = 0usize;
            for i in 0..n {
                if work > DEADLINE_EVERY * 16 {
                    work = 0;
                    ev.check_deadline()?;
                }
                let t = grid.ts(i);
                let (from, to) = rs.window.bounds(t);
                if rs.window.at.is_some() {
                    lo = s.partition_point(|p| p.0 <= from);
                    hi = s.partition_point(|p| p.0 <= to);
                } else {
                    while hi < s.len() && s[hi].0 <= to {
                        hi += 1;
                    }
                    while lo < hi && s[lo].0 <= from {
                        lo += 1;
                    }
                }
                work += hi - lo + 1;
                if lo >= hi {
                    continue;
                }
                for (j, p) in params.iter().enumerate() {
                    step_args[j] = p[i];
                }
                if let Some(prefix) = &resets {
                    let in_window = prefix[hi - 1] - prefix[lo];
                    if let Some(v) = range::extrapolate(&s[lo..hi], in_window, from, to, true, f == RangeFn::Rate) {
                        points.push((i as u32, v));
                    }
                    continue;
                }
                match range::eval(f, &s[lo..hi], from, to, t, &step_args, &mut ev.ann) {
                    Ok(Some(v)) => points.push((i as u32, v)),
                    Ok(None) => {}
                    Err(msg) => return Err(QueryError::Execution(msg)),
                }
            }
            if points.is_empty() {
                return Ok(());
            }
            if counter_check {
                let metric = label(&rs.labels, "__name__");
                if !metric.is_empty()
                    && !["_total", "_sum", "_count", "_bucket"].iter().any(|suffix| metric.ends_with(suffix))
                {
                    ev.ann.info(format!(
                        "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {metric:?}"
                    ));
                }
            }
            out(Row { labels: rs.labels, drop_name: rs.drop_name || !f.keeps_name(), points })
        })
    }

    fn absent_over_time(&mut self, arg: &Expr, grid: Grid, out: &mut Sink) -> Result<(), QueryError> {
        let n = grid.len();
        let mut present = vec![false; n];
        self.range_arg(arg, grid, &mut |_, rs| {
            let s = &rs.samples;
            for (i, seen) in present.iter_mut().enumerate() {
                let (from, to) = rs.window.bounds(grid.ts(i));
                let lo = s.partition_point(|p| p.0 <= from);
                if lo < s.len() && s[lo].0 <= to {
                    *seen = true;
                }
            }
            Ok(())
        })?;
        let labels = match unwrap_paren(arg) {
            Expr::MatrixSelector(ms) => absent_labels(&ms.vs),
            _ => Labels::new(),
        };
        let points: Vec<(u32, f64)> =
            present.iter().enumerate().filter(|(_, p)| !**p).map(|(i, _)| (i as u32, 1.0)).collect();
        if points.is_empty() {
            return Ok(());
        }
        out(Row { labels, drop_name: true, points })
    }

    fn absent(&mut self, arg: &Expr, grid: Grid, out: &mut Sink) -> Result<(), QueryError> {
        let n = grid.len();
        let mut present = vec![false; n];
        self.each(arg, grid, &mut |row| {
            for &(i, _) in &row.points {
                present[i as usize] = true;
            }
            Ok(())
        })?;
        let labels = match unwrap_paren(arg) {
            Expr::VectorSelector(vs) => absent_labels(vs),
            _ => Labels::new(),
        };
        let points: Vec<(u32, f64)> =
            present.iter().enumerate().filter(|(_, p)| !**p).map(|(i, _)| (i as u32, 1.0)).collect();
        if points.is_empty() {
            return Ok(());
        }
        out(Row { labels, drop_name: false, points })
    }

    fn timestamp(&mut self, arg: &Expr, grid: Grid, out: &mut Sink) -> Result<(), QueryError> {
        if let Expr::VectorSelector(vs) = arg {
            // The time of the sample itself, not of the step.
            return self.vector_selector_with(vs, grid, true, &mut |mut row| {
                row.drop_name = true;
                out(row)
            });
        }
        self.each(arg, grid, &mut |mut row| {
            for p in &mut row.points {
                p.1 = grid.ts(p.0 as usize) as f64 / 1000.0;
            }
            row.drop_name = true;
            out(row)
        })
    }

    fn date(&mut self, name: &str, args: &[Box<Expr>], grid: Grid, out: &mut Sink) -> Result<(), QueryError> {
        let apply = |v: f64| instant::date(name, v).unwrap_or(f64::NAN);
        match args.first() {
            None => {
                let points: Vec<(u32, f64)> =
                    (0..grid.len()).map(|i| (i as u32, apply(grid.ts(i) as f64 / 1000.0))).collect();
                out(Row { labels: Labels::new(), drop_name: false, points })
            }
            Some(a) => self.each(a, grid, &mut |mut row| {
                for p in &mut row.points {
                    p.1 = apply(p.1);
                }
                row.drop_name = true;
                out(row)
            }),
        }
    }

    fn string_arg(&mut self, e: &Expr, _grid: Grid) -> Result<String, QueryError> {
        self.string(e)
    }

    fn label_replace(&mut self, args: &[Box<Expr>], grid: Grid, out: &mut Sink) -> Result<(), QueryError> {
        let dst = self.string_arg(&args[1], grid)?;
        let replacement = self.string_arg(&args[2], grid)?;
        let src = self.string_arg(&args[3], grid)?;
        let pattern = self.string_arg(&args[4], grid)?;
        let re = regex::Regex::new(&format!("^(?s:{pattern})$"))
            .map_err(|_| QueryError::Execution(format!("invalid regular expression in label_replace(): {pattern}")))?;
        if dst.is_empty() {
            return Err(QueryError::Execution(format!("invalid destination label name in label_replace(): {dst}")));
        }
        self.each(&args[0], grid, &mut |mut row| {
            let value = label(&row.labels, &src).to_string();
            if let Some(caps) = re.captures(&value) {
                let mut res = String::new();
                caps.expand(&replacement, &mut res);
                set_label(&mut row.labels, &dst, &res);
                if dst == "__name__" {
                    row.drop_name = false;
                }
            }
            out(row)
        })
    }

    fn label_join(&mut self, args: &[Box<Expr>], grid: Grid, out: &mut Sink) -> Result<(), QueryError> {
        let dst = self.string_arg(&args[1], grid)?;
        let sep = self.string_arg(&args[2], grid)?;
        let mut srcs = Vec::new();
        for a in &args[3..] {
            srcs.push(self.string_arg(a, grid)?);
        }
        if dst.is_empty() {
            return Err(QueryError::Execution(format!("invalid destination label name in label_join(): {dst}")));
        }
        self.each(&args[0], grid, &mut |mut row| {
            let joined: Vec<&str> = srcs.iter().map(|s| label(&row.labels, s)).collect();
            let joined = joined.join(&sep);
            set_label(&mut row.labels, &dst, &joined);
            if dst == "__name__" {
                row.drop_name = false;
            }
            out(row)
        })
    }

    fn sort(&mut self, name: &str, args: &[Box<Expr>], grid: Grid, out: &mut Sink) -> Result<(), QueryError> {
        let mut by = Vec::new();
        for a in &args[1..] {
            by.push(self.string_arg(a, grid)?);
        }
        let mut rows = self.rows(&args[0], grid)?;
        // Only an instant query has an order; a range query's series are sorted by labels.
        if self.query_start != self.query_end {
            let at = self.position_of(&format!("{name}("));
            self.ann.warn(format!(
                "PromQL warning: sort is ineffective for range queries since results are always ordered by labels{at}"
            ));
        } else {
            match name {
                "sort" | "sort_desc" => {
                    let desc = name == "sort_desc";
                    rows.sort_by(|a, b| {
                        let (x, y) = (a.points[0].1, b.points[0].1);
                        match (x.is_nan(), y.is_nan()) {
                            (true, true) => std::cmp::Ordering::Equal,
                            (true, false) => std::cmp::Ordering::Greater,
                            (false, true) => std::cmp::Ordering::Less,
                            _ if desc => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal),
                            _ => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
                        }
                    });
                }
                _ => {
                    let desc = name == "sort_by_label_desc";
                    rows.sort_by(|a, b| {
                        for l in &by {
                            let o = natural_cmp(label(&a.labels, l), label(&b.labels, l));
                            if o != std::cmp::Ordering::Equal {
                                return if desc { o.reverse() } else { o };
                            }
                        }
                        let o = a.labels.cmp(&b.labels);
                        if desc { o.reverse() } else { o }
                    });
                }
            }
        }
        for r in rows {
            out(r)?;
        }
        Ok(())
    }

    /// `histogram_quantile(φ, b)`, `histogram_quantiles(b, "label", φ…)` and
    /// `histogram_fraction(lower, upper, b)` over classic buckets: series grouped by their labels
    /// without `le`, one bucket per series.
    fn classic_histogram(
        &mut self,
        name: &str,
        args: &[Box<Expr>],
        grid: Grid,
        out: &mut Sink,
    ) -> Result<(), QueryError> {
        enum Want {
            Quantile(Vec<f64>),
            Quantiles(String, Vec<Vec<f64>>),
            Fraction(Vec<f64>, Vec<f64>),
        }
        let (want, buckets_arg) = match name {
            "histogram_quantile" => (Want::Quantile(self.scalar(&args[0], grid)?), &args[1]),
            "histogram_quantiles" => {
                let label_name = self.string_arg(&args[1], grid)?;
                let mut qs = Vec::new();
                for a in &args[2..] {
                    qs.push(self.scalar(a, grid)?);
                }
                (Want::Quantiles(label_name, qs), &args[0])
            }
            _ => (Want::Fraction(self.scalar(&args[0], grid)?, self.scalar(&args[1], grid)?), &args[2]),
        };
        let call = format!("{name}(");
        let quantiles: Vec<(&Vec<f64>, &Expr)> = match &want {
            Want::Quantile(q) => vec![(q, &*args[0])],
            Want::Quantiles(_, qs) => qs.iter().zip(args[2..].iter().map(|a| &**a)).collect(),
            Want::Fraction(..) => Vec::new(),
        };
        for (q, arg) in quantiles {
            if let Some(&qi) = q.iter().find(|q| !stats::is_valid_quantile(**q)) {
                let at = self.position_after(&call, arg);
                self.ann.warn(format!("{}{at}", stats::invalid_quantile_warning(qi)));
            }
        }
        let buckets_at = self.position_after(&call, buckets_arg);
        let n = grid.len();
        let mut groups: Vec<(Labels, StepBuckets)> = Vec::new();
        let mut index: HashMap<Labels, usize> = HashMap::new();
        let mut bad: Vec<(String, String)> = Vec::new();
        self.each(buckets_arg, grid, &mut |row| {
            let le = label(&row.labels, "le");
            let Some(upper) = parse_le(le) else {
                bad.push((label(&row.labels, "__name__").to_string(), le.to_string()));
                return Ok(());
            };
            let key: Labels = row.labels.iter().filter(|(n, _)| n != "le").cloned().collect();
            let gi = match index.get(&key) {
                Some(&i) => i,
                None => {
                    index.insert(key.clone(), groups.len());
                    groups.push((key, vec![Vec::new(); n]));
                    groups.len() - 1
                }
            };
            for &(i, v) in &row.points {
                groups[gi].1[i as usize].push((upper, v));
            }
            Ok(())
        })?;
        for (metric, le) in bad {
            self.ann.warn(format!(
                "PromQL warning: bucket label \"le\" is missing or has a malformed value of {le:?} for metric name {metric:?}{buckets_at}"
            ));
        }
        for (labels, mut steps) in groups {
            let metric = label(&labels, "__name__").to_string();
            let mut outputs: Vec<(Labels, Vec<(u32, f64)>)> = match &want {
                Want::Quantiles(l, qs) => qs
                    .iter()
                    .map(|q| {
                        let mut ls = labels.clone();
                        set_label(&mut ls, l, &stats::format_openmetrics_float(q[0]));
                        (ls, Vec::new())
                    })
                    .collect(),
                _ => vec![(labels, Vec::new())],
            };
            let mut forced = false;
            for (i, buckets) in steps.iter_mut().enumerate() {
                if buckets.is_empty() {
                    continue;
                }
                match &want {
                    Want::Quantile(q) => {
                        let r = bucket_quantile(q[i], buckets);
                        forced |= r.forced_monotonic;
                        outputs[0].1.push((i as u32, r.value));
                    }
                    Want::Quantiles(_, qs) => {
                        for (k, q) in qs.iter().enumerate() {
                            let mut b = buckets.clone();
                            let r = bucket_quantile(q[i], &mut b);
                            forced |= r.forced_monotonic;
                            outputs[k].1.push((i as u32, r.value));
                        }
                    }
                    Want::Fraction(lo, hi) => outputs[0].1.push((i as u32, bucket_fraction(lo[i], hi[i], buckets))),
                }
            }
            if forced {
                self.ann.info(format!(
                    "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {metric:?}{buckets_at}"
                ));
            }
            for (labels, points) in outputs {
                if !points.is_empty() {
                    out(Row { labels, drop_name: true, points })?;
                }
            }
        }
        Ok(())
    }
}

/// Per step, the (upper bound, count) buckets of one histogram.
type StepBuckets = Vec<Vec<(f64, f64)>>;

fn unwrap_paren(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_paren(&p.expr),
        other => other,
    }
}

/// The labels `absent` gives: the selector's equality matchers (a label matched twice is left
/// out, as Prometheus does), without the metric name.
fn absent_labels(vs: &VectorSelector) -> Labels {
    let mut out = Labels::new();
    let mut has: Vec<String> = Vec::new();
    let matchers = vs.matchers.matchers.iter();
    for m in matchers {
        if m.name == "__name__" {
            continue;
        }
        if matches!(m.op, promql_parser::label::MatchOp::Equal) && !has.contains(&m.name) {
            set_label(&mut out, &m.name, &m.value);
            has.push(m.name.clone());
        } else {
            set_label(&mut out, &m.name, "");
        }
    }
    out
}

fn parse_le(s: &str) -> Option<f64> {
    match s.trim() {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "" => None,
        other => other.parse::<f64>().ok(),
    }
}

/// Natural order: runs of digits compare as numbers.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    while !x.is_empty() && !y.is_empty() {
        if x[0].is_ascii_digit() && y[0].is_ascii_digit() {
            let xe = x.iter().position(|c| !c.is_ascii_digit()).unwrap_or(x.len());
            let ye = y.iter().position(|c| !c.is_ascii_digit()).unwrap_or(y.len());
            let xs = std::str::from_utf8(&x[..xe]).unwrap_or("").trim_start_matches('0');
            let ys = std::str::from_utf8(&y[..ye]).unwrap_or("").trim_start_matches('0');
            let o = xs.len().cmp(&ys.len()).then_with(|| xs.cmp(ys));
            if o != Ordering::Equal {
                return o;
            }
            x = &x[xe..];
            y = &y[ye..];
        } else {
            if x[0] != y[0] {
                return x[0].cmp(&y[0]);
            }
            x = &x[1..];
            y = &y[1..];
        }
    }
    x.len().cmp(&y.len())
}
