//! Aggregations. Input rows arrive one at a time and are folded into their group's per-step
//! state at once, so an aggregation over a function of a selector holds the groups, never the
//! whole input.

use std::collections::HashMap;

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::{Evaluator, Grid, Row, Sink};
use crate::engine::QueryError;
use crate::functions::stats::{kahan_add, quantile};
use crate::value::Labels;

/// How series are grouped.
struct Grouping {
    without: bool,
    /// Sorted.
    names: Vec<String>,
}

impl Grouping {
    fn of(a: &AggregateExpr, extra: Option<&str>) -> Grouping {
        let (without, mut names) = match &a.modifier {
            Some(LabelModifier::Include(l)) => (false, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (true, l.labels.clone()),
            None => (false, Vec::new()),
        };
        if let Some(e) = extra
            && !without
        {
            names.push(e.to_string());
        }
        names.sort();
        names.dedup();
        Grouping { without, names }
    }

    fn labels(&self, labels: &Labels) -> Labels {
        if self.without {
            labels.iter().filter(|(n, _)| n != "__name__" && self.names.binary_search(n).is_err()).cloned().collect()
        } else {
            labels.iter().filter(|(n, _)| self.names.binary_search(n).is_ok()).cloned().collect()
        }
    }
}

/// The running state of one group at one step.
#[derive(Clone, Copy, Default)]
struct Acc {
    seen: bool,
    value: f64,
    comp: f64,
    mean: f64,
    count: f64,
    incremental: bool,
}

impl Evaluator<'_> {
    pub(super) fn aggregate(&mut self, a: &AggregateExpr, grid: Grid, out: &mut Sink) -> Result<(), QueryError> {
        let op = a.op.to_string();
        let n = grid.len();
        match op.as_str() {
            "topk" | "bottomk" | "limitk" | "limit_ratio" => return self.aggregate_k(a, &op, grid, out),
            "count_values" => return self.count_values(a, grid, out),
            _ => {}
        }
        let param = match (&a.param, op.as_str()) {
            (Some(p), "quantile") => Some(self.scalar(p, grid)?),
            _ => None,
        };
        if let (Some(q), Some(p)) = (&param, &a.param) {
            let at = self.position_after(&op, p);
            for &v in q {
                if v.is_nan() || !(0.0..=1.0).contains(&v) {
                    self.ann.warn(format!(
                        "PromQL warning: quantile value should be between 0 and 1, got {}{at}",
                        go_float(v)
                    ));
                }
            }
        }
        let grouping = Grouping::of(a, None);
        let mut groups: Vec<(Labels, bool)> = Vec::new();
        let mut index: HashMap<Labels, usize> = HashMap::new();
        let mut accs: Vec<Vec<Acc>> = Vec::new();
        let mut values: Vec<Vec<Vec<f64>>> = Vec::new();
        let is_quantile = op == "quantile";
        let mut charged = 0usize;
        // Each group holds a state per step: counted as it is made, so that many groups over many
        // steps meet the sample limit before they are allocated.
        let budget = self.limits.max_samples.saturating_sub(self.samples);
        self.each(&a.expr, grid, &mut |row: Row| {
            let key = grouping.labels(&row.labels);
            let gi = match index.get(&key) {
                Some(&i) => i,
                None => {
                    index.insert(key.clone(), groups.len());
                    groups.push((key, false));
                    if is_quantile {
                        values.push(vec![Vec::new(); n]);
                    } else {
                        accs.push(vec![Acc::default(); n]);
                    }
                    charged += n;
                    if charged > budget {
                        return Err(QueryError::TooManySamples);
                    }
                    groups.len() - 1
                }
            };
            if row.drop_name {
                groups[gi].1 = true;
            }
            for &(step, f) in &row.points {
                if is_quantile {
                    values[gi][step as usize].push(f);
                } else {
                    fold(&op, &mut accs[gi][step as usize], f);
                }
            }
            Ok(())
        })?;
        self.charge(charged)?;
        for (gi, (labels, drop_name)) in groups.into_iter().enumerate() {
            let mut points = Vec::new();
            if is_quantile {
                let q = param.as_deref().unwrap_or(&[]);
                for (step, vals) in values[gi].iter_mut().enumerate() {
                    if !vals.is_empty() {
                        points.push((step as u32, quantile(q[step], vals)));
                    }
                }
            } else {
                for (step, acc) in accs[gi].iter().enumerate() {
                    if acc.seen {
                        points.push((step as u32, result(&op, acc)));
                    }
                }
            }
            if !points.is_empty() {
                // The metric name stays only under `by (__name__)`, and goes at the end if any
                // input was to lose it.
                out(Row { labels, drop_name, points })?;
            }
        }
        self.release(charged);
        Ok(())
    }

    fn count_values(&mut self, a: &AggregateExpr, grid: Grid, out: &mut Sink) -> Result<(), QueryError> {
        let name = match a.param.as_deref() {
            Some(p) if p.value_type() == ValueType::String => self.string(p)?,
            _ => return Err(QueryError::BadData("count_values needs a label name".into())),
        };
        if name.is_empty() {
            return Err(QueryError::Execution(format!("invalid label name {name:?}")));
        }
        let grouping = Grouping::of(a, Some(&name));
        let mut counts: HashMap<Labels, Vec<(u32, f64)>> = HashMap::new();
        let mut order: Vec<Labels> = Vec::new();
        self.each(&a.expr, grid, &mut |row: Row| {
            for &(step, f) in &row.points {
                let mut labels = row.labels.clone();
                super::set_label(&mut labels, &name, &go_float(f));
                let key = grouping.labels(&labels);
                let points = counts.entry(key.clone()).or_insert_with(|| {
                    order.push(key);
                    Vec::new()
                });
                match points.iter_mut().find(|p| p.0 == step) {
                    Some(p) => p.1 += 1.0,
                    None => points.push((step, 1.0)),
                }
            }
            Ok(())
        })?;
        for labels in order {
            let mut points = counts.remove(&labels).unwrap_or_default();
            points.sort_by_key(|p| p.0);
            out(Row { labels, drop_name: false, points })?;
        }
        Ok(())
    }

    /// `topk`, `bottomk`, `limitk` and `limit_ratio`: the output keeps the input's labels, so
    /// every input row is kept until the last step is decided.
    fn aggregate_k(&mut self, a: &AggregateExpr, op: &str, grid: Grid, out: &mut Sink) -> Result<(), QueryError> {
        let n = grid.len();
        let param = match &a.param {
            Some(p) => self.scalar(p, grid)?,
            None => return Err(QueryError::BadData(format!("{op} needs a parameter"))),
        };
        if op == "limit_ratio" {
            let max = param.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let min = param.iter().cloned().fold(f64::INFINITY, f64::min);
            if param.iter().any(|v| v.is_nan()) {
                return Err(QueryError::Execution("Ratio value is NaN".into()));
            }
            if max > 1.0 {
                self.ann.warn(format!(
                    "PromQL warning: ratio value should be between -1 and 1, got {}, capping to 1",
                    go_float(max)
                ));
            }
            if min < -1.0 {
                self.ann.warn(format!(
                    "PromQL warning: ratio value should be between -1 and 1, got {}, capping to -1",
                    go_float(min)
                ));
            }
        } else {
            if param.iter().all(|&k| k < 1.0) {
                // Still evaluate the input for its errors, as Prometheus does not; nothing is
                // returned either way.
                return Ok(());
            }
            if param.iter().any(|v| v.is_nan()) {
                return Err(QueryError::Execution("Parameter value is NaN".into()));
            }
            for &k in &param {
                if k <= i64::MIN as f64 {
                    return Err(QueryError::Execution(format!("Scalar value {} underflows int64", go_float(k))));
                }
                if k >= i64::MAX as f64 {
                    return Err(QueryError::Execution(format!("Scalar value {} overflows int64", go_float(k))));
                }
            }
        }
        let grouping = Grouping::of(a, None);
        let rows = self.rows(&a.expr, grid)?;
        let mut group_of: Vec<usize> = Vec::with_capacity(rows.len());
        let mut index: HashMap<Labels, usize> = HashMap::new();
        for r in &rows {
            let key = grouping.labels(&r.labels);
            let next = index.len();
            group_of.push(*index.entry(key).or_insert(next));
        }
        let groups = index.len();
        let mut by_step: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
        for (ri, r) in rows.iter().enumerate() {
            for &(i, v) in &r.points {
                by_step[i as usize].push((ri, v));
            }
        }
        let mut kept: Vec<Vec<(u32, f64)>> = vec![Vec::new(); rows.len()];
        // For an instant query the order of the result is the order of selection.
        let mut order: Vec<usize> = Vec::new();
        let mut per_group: Vec<Vec<(usize, f64)>> = vec![Vec::new(); groups];
        for (step, present) in by_step.iter().enumerate() {
            for g in &mut per_group {
                g.clear();
            }
            let p = param[step];
            if op == "limit_ratio" {
                let r = p.clamp(-1.0, 1.0);
                if r == 0.0 {
                    continue;
                }
                for &(ri, v) in present {
                    let offset = ratio_offset(&rows[ri].labels);
                    if (r >= 0.0 && offset < r) || (r < 0.0 && offset >= 1.0 + r) {
                        per_group[group_of[ri]].push((ri, v));
                    }
                }
            } else {
                let k = (p as i64).min(rows.len() as i64);
                if k < 1 {
                    continue;
                }
                let k = k as usize;
                for &(ri, v) in present {
                    let g = &mut per_group[group_of[ri]];
                    match op {
                        "limitk" => {
                            if g.len() < k {
                                g.push((ri, v));
                            }
                        }
                        _ => {
                            g.push((ri, v));
                        }
                    }
                }
                if op != "limitk" {
                    let top = op == "topk";
                    for g in &mut per_group {
                        // Stable, so equal values keep input order; NaN sorts last either way.
                        g.sort_by(|a, b| by_value(a.1, b.1, top));
                        g.truncate(k);
                    }
                }
            }
            for g in &per_group {
                for &(ri, v) in g {
                    if kept[ri].is_empty() {
                        order.push(ri);
                    }
                    kept[ri].push((step as u32, v));
                }
            }
        }
        let mut rows: Vec<Option<Row>> = rows.into_iter().map(Some).collect();
        for ri in order {
            let points = std::mem::take(&mut kept[ri]);
            let row = rows[ri].take().expect("each row once");
            out(Row { labels: row.labels, drop_name: row.drop_name, points })?;
        }
        Ok(())
    }
}

/// `topk` order: larger first; `bottomk`: smaller first; NaN after every number.
fn by_value(a: f64, b: f64, top: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => {
            let o = a.partial_cmp(&b).unwrap_or(Ordering::Equal);
            if top { o.reverse() } else { o }
        }
    }
}

/// A series' place in [0, 1) for `limit_ratio`, stable for its label set.
fn ratio_offset(labels: &Labels) -> f64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    labels.hash(&mut h);
    h.finish() as f64 / u64::MAX as f64
}

fn fold(op: &str, acc: &mut Acc, f: f64) {
    if !acc.seen {
        *acc = Acc { seen: true, value: f, comp: 0.0, mean: f, count: 1.0, incremental: false };
        match op {
            "stddev" | "stdvar" => {
                acc.value = if f.is_nan() || f.is_infinite() { f64::NAN } else { 0.0 };
            }
            "group" => acc.value = 1.0,
            _ => {}
        }
        return;
    }
    match op {
        "sum" => (acc.value, acc.comp) = kahan_add(f, acc.value, acc.comp),
        "avg" => {
            acc.count += 1.0;
            if !acc.incremental {
                let (v, c) = kahan_add(f, acc.value, acc.comp);
                if !v.is_infinite() {
                    acc.value = v;
                    acc.comp = c;
                    return;
                }
                // The sum would overflow: from here on, the mean is kept instead.
                acc.incremental = true;
                acc.mean = acc.value / (acc.count - 1.0);
                acc.comp /= acc.count - 1.0;
            }
            let q = (acc.count - 1.0) / acc.count;
            (acc.mean, acc.comp) = kahan_add(f / acc.count, q * acc.mean, q * acc.comp);
        }
        "max" if acc.value < f || acc.value.is_nan() => acc.value = f,
        "min" if acc.value > f || acc.value.is_nan() => acc.value = f,
        "count" => acc.count += 1.0,
        "stddev" | "stdvar" => {
            acc.count += 1.0;
            let delta = f - acc.mean;
            acc.mean += delta / acc.count;
            acc.value += delta * (f - acc.mean);
        }
        _ => {}
    }
}

fn result(op: &str, acc: &Acc) -> f64 {
    match op {
        "sum" => acc.value + acc.comp,
        "avg" if acc.incremental => acc.mean + acc.comp,
        "avg" => acc.value / acc.count + acc.comp / acc.count,
        "count" => acc.count,
        "stdvar" => acc.value / acc.count,
        "stddev" => (acc.value / acc.count).sqrt(),
        _ => acc.value,
    }
}

/// A float as Go's `strconv.FormatFloat(f, 'f', -1, 64)` writes it, as Prometheus formats label
/// values and messages.
pub(crate) fn go_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f == f64::INFINITY {
        "+Inf".into()
    } else if f == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{f}")
    }
}
