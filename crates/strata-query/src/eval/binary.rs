//! Binary operators: arithmetic, comparisons (filtering or `bool`), and the set operators, between
//! scalars and vectors, with Prometheus's vector matching (`on`, `ignoring`, `group_left`,
//! `group_right`, fill values) and its errors.

use std::collections::HashMap;

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::{Evaluator, Grid, Row, Sink, label, labels_string, set_label};
use crate::engine::QueryError;
use crate::value::Labels;

fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

fn is_set(op: &str) -> bool {
    matches!(op, "and" | "or" | "unless")
}

/// Arithmetic, or a comparison as 1/0, between two floats.
pub(crate) fn scalar_op(op: &str, l: f64, r: f64) -> f64 {
    match op {
        "+" => l + r,
        "-" => l - r,
        "*" => l * r,
        "/" => l / r,
        "%" => l % r,
        "^" => l.powf(r),
        "atan2" => l.atan2(r),
        _ => {
            if compare(op, l, r) {
                1.0
            } else {
                0.0
            }
        }
    }
}

fn compare(op: &str, l: f64, r: f64) -> bool {
    match op {
        "==" => l == r,
        "!=" => l != r,
        ">" => l > r,
        "<" => l < r,
        ">=" => l >= r,
        "<=" => l <= r,
        _ => false,
    }
}

/// The value an element-wise operation gives, and whether the element stays (comparisons
/// without `bool` filter).
fn element(op: &str, l: f64, r: f64) -> (f64, bool) {
    if is_comparison(op) { (l, compare(op, l, r)) } else { (scalar_op(op, l, r), true) }
}

/// How the two sides of a vector–vector operation are matched.
struct Matching {
    card: VectorMatchCardinality,
    /// `on(...)` when true, `ignoring(...)` when false.
    on: bool,
    names: Vec<String>,
    fill_lhs: Option<f64>,
    fill_rhs: Option<f64>,
}

impl Matching {
    fn of(b: &BinaryExpr) -> Matching {
        let (card, matching, fill_lhs, fill_rhs) = match &b.modifier {
            Some(m) => (m.card.clone(), m.matching.clone(), m.fill_values.lhs, m.fill_values.rhs),
            None => (VectorMatchCardinality::OneToOne, None, None, None),
        };
        let op = b.op.to_string();
        let card = if is_set(&op) { VectorMatchCardinality::ManyToMany } else { card };
        let (on, mut names) = match matching {
            Some(LabelModifier::Include(l)) => (true, l.labels),
            Some(LabelModifier::Exclude(l)) => (false, l.labels),
            None => (false, Vec::new()),
        };
        names.sort();
        names.dedup();
        Matching { card, on, names, fill_lhs, fill_rhs }
    }

    /// The labels two series must share to match.
    fn signature(&self, labels: &Labels) -> Labels {
        if self.on {
            labels.iter().filter(|(n, _)| self.names.binary_search(n).is_ok()).cloned().collect()
        } else {
            labels.iter().filter(|(n, _)| n != "__name__" && self.names.binary_search(n).is_err()).cloned().collect()
        }
    }

    fn include(&self) -> &[String] {
        match &self.card {
            VectorMatchCardinality::ManyToOne(l) | VectorMatchCardinality::OneToMany(l) => &l.labels,
            _ => &[],
        }
    }
}

/// Rows by step: for each step, the (row, value) pairs present.
fn by_step(rows: &[Row], n: usize) -> Vec<Vec<(usize, f64)>> {
    let mut steps: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
    for (ri, r) in rows.iter().enumerate() {
        for &(i, v) in &r.points {
            steps[i as usize].push((ri, v));
        }
    }
    steps
}

/// Collects output rows by label set across steps.
struct Collector {
    rows: Vec<Row>,
    index: HashMap<(Labels, bool), usize>,
}

impl Collector {
    fn new() -> Collector {
        Collector { rows: Vec::new(), index: HashMap::new() }
    }

    fn push(&mut self, labels: Labels, drop_name: bool, step: u32, v: f64) -> Result<(), QueryError> {
        let key = (labels, drop_name);
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                self.rows.push(Row { labels: key.0.clone(), drop_name, points: Vec::new() });
                self.index.insert(key, self.rows.len() - 1);
                self.rows.len() - 1
            }
        };
        let row = &mut self.rows[i];
        if row.points.last().is_some_and(|p| p.0 == step) {
            return Err(QueryError::Execution("vector cannot contain metrics with the same labelset".into()));
        }
        row.points.push((step, v));
        Ok(())
    }
}

impl Evaluator<'_> {
    pub(super) fn binary(&mut self, b: &BinaryExpr, grid: Grid, out: &mut Sink) -> Result<(), QueryError> {
        let op = b.op.to_string();
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        match (b.lhs.value_type(), b.rhs.value_type()) {
            (ValueType::Vector, ValueType::Scalar) => {
                let scalar = self.scalar(&b.rhs, grid)?;
                self.each(&b.lhs, grid, &mut |row| vector_scalar(&op, row, &scalar, false, return_bool, out))
            }
            (ValueType::Scalar, ValueType::Vector) => {
                let scalar = self.scalar(&b.lhs, grid)?;
                self.each(&b.rhs, grid, &mut |row| vector_scalar(&op, row, &scalar, true, return_bool, out))
            }
            (ValueType::Vector, ValueType::Vector) => {
                let lhs = self.rows(&b.lhs, grid)?;
                let rhs = self.rows(&b.rhs, grid)?;
                let held: usize = lhs.iter().chain(&rhs).map(|r| r.points.len()).sum();
                let matching = Matching::of(b);
                let rows = if is_set(&op) {
                    set_operation(&op, lhs, rhs, &matching, grid.len())?
                } else {
                    vector_vector(&op, lhs, rhs, &matching, return_bool, grid.len())?
                };
                self.release(held);
                for r in rows {
                    out(r)?;
                }
                Ok(())
            }
            (l, r) => Err(QueryError::BadData(format!(
                "binary operation between {} and {} is not allowed here",
                crate::engine::type_name(l),
                crate::engine::type_name(r)
            ))),
        }
    }
}

fn vector_scalar(
    op: &str,
    mut row: Row,
    scalar: &[f64],
    scalar_left: bool,
    return_bool: bool,
    out: &mut Sink,
) -> Result<(), QueryError> {
    let comparison = is_comparison(op);
    row.points.retain_mut(|p| {
        let s = scalar[p.0 as usize];
        let (l, r) = if scalar_left { (s, p.1) } else { (p.1, s) };
        let (mut v, keep) = element(op, l, r);
        // A comparison keeps the vector's value, whichever side it is on.
        if comparison {
            v = p.1;
        }
        if return_bool {
            p.1 = if keep { 1.0 } else { 0.0 };
            return true;
        }
        p.1 = v;
        keep
    });
    if !comparison || return_bool {
        row.drop_name = true;
    }
    if row.points.is_empty() {
        return Ok(());
    }
    out(row)
}

fn set_operation(op: &str, lhs: Vec<Row>, rhs: Vec<Row>, m: &Matching, n: usize) -> Result<Vec<Row>, QueryError> {
    let lsig: Vec<Labels> = lhs.iter().map(|r| m.signature(&r.labels)).collect();
    let rsig: Vec<Labels> = rhs.iter().map(|r| m.signature(&r.labels)).collect();
    let mut ids: HashMap<&Labels, usize> = HashMap::new();
    let lid: Vec<usize> = lsig.iter().map(|s| ids.len_or_insert(s)).collect();
    let rid: Vec<usize> = rsig.iter().map(|s| ids.len_or_insert(s)).collect();
    let sigs = ids.len();
    let lsteps = by_step(&lhs, n);
    let rsteps = by_step(&rhs, n);
    let mut lkeep: Vec<Vec<(u32, f64)>> = vec![Vec::new(); lhs.len()];
    let mut rkeep: Vec<Vec<(u32, f64)>> = vec![Vec::new(); rhs.len()];
    let mut present = vec![false; sigs];
    for step in 0..n {
        match op {
            "and" | "unless" => {
                for &(ri, _) in &rsteps[step] {
                    present[rid[ri]] = true;
                }
                for &(li, v) in &lsteps[step] {
                    if present[lid[li]] == (op == "and") {
                        lkeep[li].push((step as u32, v));
                    }
                }
                for &(ri, _) in &rsteps[step] {
                    present[rid[ri]] = false;
                }
            }
            _ => {
                for &(li, v) in &lsteps[step] {
                    present[lid[li]] = true;
                    lkeep[li].push((step as u32, v));
                }
                for &(ri, v) in &rsteps[step] {
                    if !present[rid[ri]] {
                        rkeep[ri].push((step as u32, v));
                    }
                }
                for &(li, _) in &lsteps[step] {
                    present[lid[li]] = false;
                }
            }
        }
    }
    let mut out = Vec::new();
    for (row, points) in lhs.into_iter().zip(lkeep).chain(rhs.into_iter().zip(rkeep)) {
        if !points.is_empty() {
            out.push(Row { labels: row.labels, drop_name: row.drop_name, points });
        }
    }
    Ok(out)
}

trait Ordinal<'a> {
    fn len_or_insert(&mut self, key: &'a Labels) -> usize;
}

impl<'a> Ordinal<'a> for HashMap<&'a Labels, usize> {
    fn len_or_insert(&mut self, key: &'a Labels) -> usize {
        let next = self.len();
        *self.entry(key).or_insert(next)
    }
}

/// One element to compute at a step: the "many" row and value (or a fill), the "one" row and
/// value (or a fill), and the match group.
type Pairing = (Option<usize>, f64, Option<usize>, f64, usize);

fn vector_vector(
    op: &str,
    lhs: Vec<Row>,
    rhs: Vec<Row>,
    m: &Matching,
    return_bool: bool,
    n: usize,
) -> Result<Vec<Row>, QueryError> {
    if (lhs.is_empty() || rhs.is_empty()) && m.fill_lhs.is_none() && m.fill_rhs.is_none() {
        return Ok(Vec::new());
    }
    // One-to-many is many-to-one with the sides swapped.
    let swapped = matches!(m.card, VectorMatchCardinality::OneToMany(_));
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };
    let (fill_many, fill_one) = if swapped { (m.fill_rhs, m.fill_lhs) } else { (m.fill_lhs, m.fill_rhs) };
    let msig: Vec<Labels> = many.iter().map(|r| m.signature(&r.labels)).collect();
    let osig: Vec<Labels> = one.iter().map(|r| m.signature(&r.labels)).collect();
    let mut ids: HashMap<&Labels, usize> = HashMap::new();
    let mid: Vec<usize> = msig.iter().map(|s| ids.len_or_insert(s)).collect();
    let oid: Vec<usize> = osig.iter().map(|s| ids.len_or_insert(s)).collect();
    let sig_labels: Vec<Labels> = {
        let mut v = vec![Labels::new(); ids.len()];
        for (k, &i) in &ids {
            v[i] = (*k).clone();
        }
        v
    };
    let msteps = by_step(&many, n);
    let osteps = by_step(&one, n);
    let comparison = is_comparison(op);
    let one_to_one = matches!(m.card, VectorMatchCardinality::OneToOne);
    let mut collector = Collector::new();
    // Output labels by (many row, one row); a fill on either side is `usize::MAX`.
    let mut metric_cache: HashMap<(usize, usize), Labels> = HashMap::new();
    let mut one_at: Vec<Option<(usize, f64)>> = vec![None; sig_labels.len()];
    let mut matched: HashMap<usize, Vec<Labels>> = HashMap::new();
    let mut calls: Vec<Pairing> = Vec::new();
    for step in 0..n {
        for &(oi, v) in &osteps[step] {
            let s = oid[oi];
            if let Some((other, _)) = one_at[s] {
                let side = if swapped { "left" } else { "right" };
                let mut pair = [&one[oi].labels, &one[other].labels];
                pair.sort();
                return Err(QueryError::Execution(format!(
                    "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                    labels_string(&m.signature(&one[oi].labels)),
                    labels_string(pair[0]),
                    labels_string(pair[1]),
                )));
            }
            one_at[s] = Some((oi, v));
        }
        matched.clear();
        let mut emit = |mi: Option<usize>, mv: f64, oi: Option<usize>, ov: f64, sig: usize| -> Result<(), QueryError> {
            let (l, r) = if swapped { (ov, mv) } else { (mv, ov) };
            let (mut v, keep) = element(op, l, r);
            if return_bool {
                v = if keep { 1.0 } else { 0.0 };
            }
            let key = (mi.unwrap_or(usize::MAX), oi.unwrap_or(usize::MAX));
            let metric = match metric_cache.get(&key) {
                Some(l) => l.clone(),
                None => {
                    let many_labels = mi.map_or(&sig_labels[sig], |i| &many[i].labels);
                    let one_labels = oi.map_or(&sig_labels[sig], |i| &one[i].labels);
                    let l = result_metric(many_labels, one_labels, op, m);
                    metric_cache.insert(key, l.clone());
                    l
                }
            };
            let seen = matched.entry(sig).or_default();
            if one_to_one {
                if !seen.is_empty() {
                    return Err(QueryError::Execution(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                            .into(),
                    ));
                }
                seen.push(Labels::new());
            } else {
                if seen.contains(&metric) {
                    return Err(QueryError::Execution(
                        "multiple matches for labels: grouping labels must ensure unique matches".into(),
                    ));
                }
                seen.push(metric.clone());
            }
            if !keep && !return_bool {
                return Ok(());
            }
            let keeps_name = comparison && !return_bool;
            collector.push(metric, !keeps_name && comparison, step as u32, v)
        };
        for &(mi, v) in &msteps[step] {
            let s = mid[mi];
            match one_at[s] {
                Some((oi, ov)) => calls.push((Some(mi), v, Some(oi), ov, s)),
                None => {
                    if let Some(fill) = fill_one {
                        calls.push((Some(mi), v, None, fill, s));
                    }
                }
            }
        }
        if let Some(fill) = fill_many {
            let matched_sigs: std::collections::HashSet<usize> = calls.iter().map(|c| c.4).collect();
            for &(oi, ov) in &osteps[step] {
                let s = oid[oi];
                if !matched_sigs.contains(&s) {
                    calls.push((None, fill, Some(oi), ov, s));
                }
            }
        }
        for (mi, mv, oi, ov, s) in calls.drain(..) {
            emit(mi, mv, oi, ov, s)?;
        }
        for &(oi, _) in &osteps[step] {
            one_at[oid[oi]] = None;
        }
    }
    Ok(collector.rows)
}

/// The labels of an output element: the "many" side's, reduced to the matching labels for
/// one-to-one matching, with the `group_x` labels taken from the "one" side. Arithmetic drops
/// the metric name at once (it changes what the series measures).
fn result_metric(many: &Labels, one: &Labels, op: &str, m: &Matching) -> Labels {
    let mut out: Labels = many.clone();
    if !is_comparison(op) {
        out.retain(|(n, _)| n != "__name__");
    }
    if matches!(m.card, VectorMatchCardinality::OneToOne) {
        if m.on {
            out.retain(|(n, _)| m.names.binary_search(n).is_ok());
        } else {
            out.retain(|(n, _)| m.names.binary_search(n).is_err());
        }
    }
    for name in m.include() {
        let v = label(one, name).to_string();
        set_label(&mut out, name, &v);
    }
    out
}
