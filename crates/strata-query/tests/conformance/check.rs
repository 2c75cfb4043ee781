//! How a query's result is held against an eval's expectation, with promqltest's rules.

use strata_query::{Annotations, Sample, Series, Value};

use crate::testfile::{Eval, Expect, Labels, SeqValue};

/// Relative error allowed between an expected and a returned value.
pub const EPSILON: f64 = 1e-6;

const STALE_NAN_BITS: u64 = strata_tsdb::STALE_NAN_BITS;

pub fn is_stale(f: f64) -> bool {
    f.to_bits() == STALE_NAN_BITS
}

/// promqltest's float equality: a staleness marker equals only a staleness marker, NaN equals
/// NaN, otherwise a relative difference below `epsilon` (absolute near zero).
pub fn almost_equal(a: f64, b: f64, epsilon: f64) -> bool {
    if is_stale(a) || is_stale(b) {
        return is_stale(a) && is_stale(b);
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let min_normal = f64::MIN_POSITIVE;
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < min_normal {
        return diff < epsilon * min_normal;
    }
    diff / abs_sum.min(f64::MAX) < epsilon
}

/// Checks a result value against the eval's expected series, scalar or string.
pub fn compare_result(ev: &Eval, value: &Value) -> Result<(), String> {
    match value {
        Value::Matrix(series) => compare_matrix(ev, series),
        Value::Vector(samples) => compare_vector(ev, samples),
        Value::Scalar { v, .. } => {
            if !ev.expect_scalar {
                return Err(format!("expected vector or matrix result, but got scalar {}", fmt_f(*v)));
            }
            let exp = ev.scalar.unwrap_or(f64::NAN);
            if !almost_equal(exp, *v, EPSILON) {
                return Err(format!("expected scalar {} but got {}", fmt_f(exp), fmt_f(*v)));
            }
            Ok(())
        }
        Value::String { s, .. } => {
            if &ev.expected_string != s {
                return Err(format!("expected string {:?} but got {s:?}", ev.expected_string));
            }
            Ok(())
        }
    }
}

fn compare_matrix(ev: &Eval, series: &[Series]) -> Result<(), String> {
    if ev.is_ordered() {
        return Err("expected ordered result, but query returned a matrix".into());
    }
    if ev.expect_scalar {
        return Err(format!("expected scalar result, but got matrix {}", fmt_matrix(series)));
    }
    assert_matrix_sorted(series)?;
    for s in series {
        let Some((_, vals)) = ev.metrics.get(&s.labels) else {
            return Err(format!(
                "unexpected metric {} in result, has {}",
                fmt_labels(&s.labels),
                fmt_points(&s.points)
            ));
        };
        let mut expected = Vec::new();
        for (i, v) in vals.iter().enumerate() {
            let t = ev.start_ms + i as i64 * ev.step_ms;
            if t > ev.end_ms {
                return Err(format!(
                    "expected {} points for {}, but query time range cannot return this many points",
                    vals.len(),
                    fmt_labels(&s.labels)
                ));
            }
            if let SeqValue::Float(f) = v {
                expected.push((t, *f));
            }
        }
        if expected.len() != s.points.len() {
            return Err(format!(
                "expected {} float points for {}, but got {}",
                expected.len(),
                fmt_labels(&s.labels),
                fmt_points(&s.points)
            ));
        }
        for (i, (&(et, ef), &(at, af))) in expected.iter().zip(&s.points).enumerate() {
            if et != at {
                return Err(format!(
                    "expected point {i} of {} at t={et}, but it was at t={at} (result has {})",
                    fmt_labels(&s.labels),
                    fmt_points(&s.points)
                ));
            }
            if !almost_equal(af, ef, EPSILON) {
                return Err(format!(
                    "expected point {i} (t={at}) of {} to be {}, but got {} (result has {})",
                    fmt_labels(&s.labels),
                    fmt_f(ef),
                    fmt_f(af),
                    fmt_points(&s.points)
                ));
            }
        }
    }
    for labels in ev.metrics.keys() {
        if !series.iter().any(|s| &s.labels == labels) {
            return Err(format!("expected metric {} not found", fmt_labels(labels)));
        }
    }
    Ok(())
}

fn compare_vector(ev: &Eval, samples: &[Sample]) -> Result<(), String> {
    if ev.expect_scalar {
        return Err(format!("expected scalar result, but got vector {}", fmt_vector(samples)));
    }
    for (i, s) in samples.iter().enumerate() {
        let Some((pos, vals)) = ev.metrics.get(&s.labels) else {
            return Err(format!("unexpected metric {} in result, has value {}", fmt_labels(&s.labels), fmt_f(s.v)));
        };
        if ev.is_ordered() && *pos != i + 1 {
            return Err(format!("expected metric {} at position {pos} but was at {}", fmt_labels(&s.labels), i + 1));
        }
        let exp = match vals.first() {
            Some(SeqValue::Float(f)) => *f,
            other => return Err(format!("expected {other:?} for {}, cannot compare", fmt_labels(&s.labels))),
        };
        if !almost_equal(exp, s.v, EPSILON) {
            return Err(format!("expected {} for {} but got {}", fmt_f(exp), fmt_labels(&s.labels), fmt_f(s.v)));
        }
    }
    for (labels, (_, vals)) in &ev.metrics {
        if !samples.iter().any(|s| &s.labels == labels) {
            return Err(format!("expected metric {} with {} not found", fmt_labels(labels), fmt_seq(vals)));
        }
    }
    Ok(())
}

/// Range results are sorted by label set.
pub fn assert_matrix_sorted(series: &[Series]) -> Result<(), String> {
    for (i, w) in series.windows(2).enumerate() {
        if w[0].labels > w[1].labels {
            return Err(format!(
                "matrix results should always be sorted by labels, but series {} ({}) sorts after series {} ({})",
                i,
                fmt_labels(&w[0].labels),
                i + 1,
                fmt_labels(&w[1].labels)
            ));
        }
    }
    Ok(())
}

/// Checks the annotations of a result against the eval's `expect warn/info/no_warn/no_info`
/// lines (and `eval_warn`/`eval_info`); an eval that says nothing about annotations accepts any.
pub fn check_annotations(ev: &Eval, annotations: &Annotations) -> Result<(), String> {
    let (warnings, infos) = (&annotations.warnings, &annotations.infos);
    if ev.warn && warnings.is_empty() {
        return Err("expected warnings but got none".into());
    }
    if ev.info && infos.is_empty() {
        return Err("expected info annotations but got none".into());
    }
    check_kind("warn", &ev.expects.warn, warnings, annotations)?;
    check_kind("info", &ev.expects.info, infos, annotations)?;
    if !ev.expects.no_warn.is_empty() && !warnings.is_empty() {
        return Err(format!("unexpected warning annotations: {}", fmt_annotations(annotations)));
    }
    if !ev.expects.no_info.is_empty() && !infos.is_empty() {
        return Err(format!("unexpected info annotations: {}", fmt_annotations(annotations)));
    }
    Ok(())
}

/// Every expected annotation of a kind matches one returned, and every returned one is expected.
fn check_kind(kind: &str, expected: &[Expect], actual: &[String], all: &Annotations) -> Result<(), String> {
    if expected.is_empty() {
        return Ok(());
    }
    if actual.is_empty() {
        return Err(format!("expected {kind} annotations but none were found"));
    }
    for e in expected {
        if !actual.iter().any(|a| e.matches(a)) {
            return Err(format!(
                "expected {kind} annotation matching {} but no matching annotation was found, found: {}",
                e.describe(),
                fmt_annotations(all)
            ));
        }
    }
    for a in actual {
        if !expected.iter().any(|e| e.matches(a)) {
            return Err(format!("unexpected {kind} annotation {a:?}"));
        }
    }
    Ok(())
}

/// Whether an error is the one a failing eval expects (any error if it names none).
pub fn check_expected_failure(ev: &Eval, err: &str) -> Result<(), String> {
    if let Some(msg) = &ev.expected_fail_message
        && !msg.is_empty()
        && msg != err
    {
        return Err(format!("expected error {msg:?}, but got: {err}"));
    }
    if let Some(re) = &ev.expected_fail_regexp
        && !re.is_match(err)
    {
        return Err(format!("expected error matching pattern {:?}, but got: {err}", re.as_str()));
    }
    if let Some(e) = ev.expects.fail.first()
        && !e.matches(err)
    {
        return Err(format!("expected error matching {}, but got: {err}", e.describe()));
    }
    Ok(())
}

pub fn fmt_f(f: f64) -> String {
    if is_stale(f) {
        "stale".into()
    } else if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf".into() } else { "-Inf".into() }
    } else if f != 0.0 && (f.abs() >= 1e21 || f.abs() < 1e-6) {
        format!("{f:e}")
    } else {
        format!("{f}")
    }
}

pub fn fmt_labels(labels: &Labels) -> String {
    let name = labels.iter().find(|(n, _)| n == "__name__").map_or("", |(_, v)| v.as_str());
    let rest: Vec<String> = labels.iter().filter(|(n, _)| n != "__name__").map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{name}{{{}}}", rest.join(", "))
}

fn fmt_points(points: &[(i64, f64)]) -> String {
    let shown: Vec<String> = points.iter().take(12).map(|(t, v)| format!("{} @{t}", fmt_f(*v))).collect();
    let more = if points.len() > 12 { format!(" …(+{})", points.len() - 12) } else { String::new() };
    format!("{} point(s) [{}{more}]", points.len(), shown.join(", "))
}

fn fmt_seq(vals: &[SeqValue]) -> String {
    let shown: Vec<String> = vals
        .iter()
        .map(|v| match v {
            SeqValue::Omitted => "_".to_string(),
            SeqValue::Float(f) => fmt_f(*f),
            SeqValue::Histogram => "{{…}}".to_string(),
        })
        .collect();
    shown.join(" ")
}

fn fmt_annotations(a: &Annotations) -> String {
    format!("warnings {:?}, infos {:?}", a.warnings, a.infos)
}

fn fmt_vector(samples: &[Sample]) -> String {
    let shown: Vec<String> = samples.iter().map(|s| format!("{} {}", fmt_labels(&s.labels), fmt_f(s.v))).collect();
    format!("[{}]", shown.join("; "))
}

fn fmt_matrix(series: &[Series]) -> String {
    let shown: Vec<String> =
        series.iter().map(|s| format!("{} {}", fmt_labels(&s.labels), fmt_points(&s.points))).collect();
    format!("[{}]", shown.join("; "))
}

/// What an eval expects, one line each, for failure reports.
pub fn fmt_expected(ev: &Eval) -> String {
    let mut out = Vec::new();
    if ev.is_fail() {
        let what = ev
            .expects
            .fail
            .first()
            .map(Expect::describe)
            .or_else(|| ev.expected_fail_message.as_ref().map(|m| format!("message {m:?}")))
            .or_else(|| ev.expected_fail_regexp.as_ref().map(|r| format!("pattern {:?}", r.as_str())))
            .unwrap_or_else(|| "any error".into());
        out.push(format!("an error: {what}"));
    }
    if ev.expect_scalar {
        out.push(format!("scalar {}", fmt_f(ev.scalar.unwrap_or(f64::NAN))));
    } else if ev.exclude_from_range_query && ev.metrics.is_empty() && !ev.is_fail() {
        out.push(format!("string {:?}", ev.expected_string));
    } else if !ev.is_fail() {
        if ev.metrics.is_empty() {
            out.push("an empty result".into());
        }
        for (labels, (_, vals)) in &ev.metrics {
            out.push(format!("{} {}", fmt_labels(labels), fmt_seq(vals)));
        }
    }
    let e = &ev.expects;
    for (kind, list) in [("warn", &e.warn), ("info", &e.info)] {
        for x in list {
            out.push(format!("{kind} {}", x.describe()));
        }
    }
    if !e.no_warn.is_empty() {
        out.push("no warnings".into());
    }
    if !e.no_info.is_empty() {
        out.push("no infos".into());
    }
    out.join("\n")
}

/// A result, shortly, for failure reports.
pub fn fmt_value(v: &Value) -> String {
    match v {
        Value::Scalar { v, .. } => format!("scalar {}", fmt_f(*v)),
        Value::String { s, .. } => format!("string {s:?}"),
        Value::Vector(samples) => format!("vector {}", fmt_vector(samples)),
        Value::Matrix(series) => format!("matrix {}", fmt_matrix(series)),
    }
}
