//! Query results in Prometheus's JSON, byte for byte as Prometheus 2.42 writes them: samples of
//! vectors and matrices as `[1435781451.500,"1e-07"]` (its `marshalPointJSON`), scalars and
//! strings as `[1435781451.5,"0.0000001"]` (`encoding/json` of `Scalar.MarshalJSON`). The two
//! differ, in Prometheus too, and clients parse both.

use std::fmt::Write as _;

use strata_query::{Labels, QueryResult, Value};

/// The `data.resultType` of a value.
pub fn result_type(v: &Value) -> &'static str {
    match v {
        Value::Scalar { .. } => "scalar",
        Value::String { .. } => "string",
        Value::Vector(_) => "vector",
        Value::Matrix(_) => "matrix",
    }
}

/// `{"status":"success","data":{"resultType":..,"result":..},"warnings":[..],"infos":[..]}`,
/// the annotations only when there are some.
pub fn success(result: &QueryResult) -> Vec<u8> {
    let points = match &result.value {
        Value::Matrix(m) => m.iter().map(|s| s.points.len()).sum(),
        Value::Vector(v) => v.len(),
        _ => 1,
    };
    let mut out = String::with_capacity(128 + points * 32);
    out.push_str(r#"{"status":"success","data":{"resultType":""#);
    out.push_str(result_type(&result.value));
    out.push_str(r#"","result":"#);
    match &result.value {
        Value::Scalar { t, v } => {
            out.push('[');
            json_seconds(&mut out, *t);
            out.push_str(",\"");
            go_float(&mut out, *v);
            out.push_str("\"]");
        }
        Value::String { t, s } => {
            out.push('[');
            json_seconds(&mut out, *t);
            out.push(',');
            json_string(&mut out, s);
            out.push(']');
        }
        Value::Vector(samples) => {
            out.push('[');
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"metric":"#);
                metric(&mut out, &s.labels);
                out.push_str(r#","value":"#);
                point(&mut out, s.t, s.v);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push('[');
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"metric":"#);
                metric(&mut out, &s.labels);
                out.push_str(r#","values":["#);
                for (j, &(t, v)) in s.points.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    point(&mut out, t, v);
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    out.push('}');
    for (key, list) in [("warnings", &result.annotations.warnings), ("infos", &result.annotations.infos)] {
        if !list.is_empty() {
            out.push_str(&format!(",\"{key}\":"));
            out.push_str(&serde_json::to_string(list).expect("strings serialise"));
        }
    }
    out.push('}');
    out.into_bytes()
}

fn metric(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_string(out, name);
        out.push(':');
        json_string(out, value);
    }
    out.push('}');
}

fn json_string(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a string serialises"));
}

/// `[<seconds>,"<value>"]` of a vector or matrix sample.
fn point(out: &mut String, t_ms: i64, v: f64) {
    out.push('[');
    point_seconds(out, t_ms);
    out.push_str(",\"");
    point_value(out, v);
    out.push_str("\"]");
}

/// Milliseconds as seconds with all three decimals when any is not zero (`1.500`, `1`,
/// `-0.001`): Prometheus's `marshalTimestamp`.
pub fn point_seconds(out: &mut String, t_ms: i64) {
    if t_ms < 0 {
        out.push('-');
    }
    let t = t_ms.unsigned_abs();
    let _ = write!(out, "{}", t / 1000);
    if !t.is_multiple_of(1000) {
        let _ = write!(out, ".{:03}", t % 1000);
    }
}

/// Milliseconds as the shortest float of seconds (`1.5`, `1435781451.78`): Go's
/// `encoding/json` of `float64(t)/1000`, as Prometheus writes the time of scalars and strings.
pub fn json_seconds(out: &mut String, t_ms: i64) {
    let _ = write!(out, "{}", t_ms as f64 / 1000.0);
}

/// A sample value as Prometheus's `marshalValue`: Go's `strconv.FormatFloat(v, 'f', -1, 64)`,
/// except `'e'` below 1e-6 and from 1e21 on in magnitude (`1e-07`, `1e+21`).
pub fn point_value(out: &mut String, v: f64) {
    let abs = v.abs();
    if abs != 0.0 && abs.is_finite() && !(1e-6..1e21).contains(&abs) {
        go_float_e(out, v);
    } else {
        go_float(out, v);
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: the shortest digits that read back as `v`,
/// never an exponent; `NaN`, `+Inf`, `-Inf`.
pub fn go_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        // Rust's Display is the same shortest round trip, also without an exponent.
        let _ = write!(out, "{v}");
    }
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)` of a finite `v`: `1.5e+300`, `1e-07`.
fn go_float_e(out: &mut String, v: f64) {
    let s = format!("{v:e}");
    let (mantissa, exp) = s.split_once('e').expect("LowerExp writes an exponent");
    let (sign, digits) = match exp.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exp),
    };
    let _ = write!(out, "{mantissa}e{sign}{digits:0>2}");
}

#[cfg(test)]
mod tests {
    use strata_query::{Annotations, Sample, Series};

    use super::*;

    fn f(v: f64) -> String {
        let mut s = String::new();
        go_float(&mut s, v);
        s
    }

    fn p(v: f64) -> String {
        let mut s = String::new();
        point_value(&mut s, v);
        s
    }

    /// Go's outputs: `strconv.FormatFloat(v, 'f', -1, 64)`, and what Prometheus 2.42 answered
    /// for `vector(v)` (the point format) and for the scalar `v`.
    #[test]
    fn floats_format_as_go_formats_them() {
        let cases: &[(f64, &str, &str)] = &[
            (1.0, "1", "1"),
            (-0.0, "-0", "-0"),
            (0.0, "0", "0"),
            (0.1 + 0.2, "0.30000000000000004", "0.30000000000000004"),
            (1e21, "1000000000000000000000", "1e+21"),
            (-1e21, "-1000000000000000000000", "-1e+21"),
            (1e20, "100000000000000000000", "100000000000000000000"),
            (123456789012345678901.0, "123456789012345680000", "123456789012345680000"),
            (1e-7, "0.0000001", "1e-07"),
            (0.000001, "0.000001", "0.000001"),
            (0.0000009999, "0.0000009999", "9.999e-07"),
            (1.5e300, &format!("15{}", "0".repeat(299)), "1.5e+300"),
            (-1.2345e-10, "-0.00000000012345", "-1.2345e-10"),
            (5e-324, &format!("0.{}5", "0".repeat(323)), "5e-324"),
            (f64::MAX, &format!("17976931348623157{}", "0".repeat(292)), "1.7976931348623157e+308"),
            (9007199254740993.0, "9007199254740992", "9007199254740992"),
            (1435781451.5, "1435781451.5", "1435781451.5"),
            (f64::NAN, "NaN", "NaN"),
            (f64::INFINITY, "+Inf", "+Inf"),
            (f64::NEG_INFINITY, "-Inf", "-Inf"),
        ];
        for (v, want_f, want_point) in cases {
            assert_eq!(f(*v), *want_f, "{v:e} as 'f'");
            assert_eq!(p(*v), *want_point, "{v:e} as a point");
        }
    }

    #[test]
    fn timestamps_format_as_prometheus_formats_them() {
        for (ms, point, scalar) in [
            (1_435_781_451_500, "1435781451.500", "1435781451.5"),
            (1_435_781_451_781, "1435781451.781", "1435781451.781"),
            (1_435_781_452_000, "1435781452", "1435781452"),
            (1, "0.001", "0.001"),
            (10, "0.010", "0.01"),
            (0, "0", "0"),
            (-1500, "-1.500", "-1.5"),
            (-1000, "-1", "-1"),
            (i64::MIN, "-9223372036854775.808", "-9223372036854776"),
        ] {
            let (mut a, mut b) = (String::new(), String::new());
            point_seconds(&mut a, ms);
            json_seconds(&mut b, ms);
            assert_eq!((a.as_str(), b.as_str()), (point, scalar), "{ms}");
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    fn render(value: Value, annotations: Annotations) -> String {
        String::from_utf8(success(&QueryResult { value, annotations })).unwrap()
    }

    #[test]
    fn results_have_prometheus_shape() {
        let none = Annotations::default();
        assert_eq!(
            render(Value::Scalar { t: 1_435_781_451_500, v: 1e-7 }, none.clone()),
            r#"{"status":"success","data":{"resultType":"scalar","result":[1435781451.5,"0.0000001"]}}"#
        );
        assert_eq!(
            render(Value::String { t: 1000, s: "a\"b".into() }, none.clone()),
            r#"{"status":"success","data":{"resultType":"string","result":[1,"a\"b"]}}"#
        );
        let v = Value::Vector(vec![
            Sample { labels: labels(&[("__name__", "up"), ("job", "a\nb")]), t: 1500, v: 1.0 },
            Sample { labels: labels(&[]), t: 1500, v: f64::NAN },
        ]);
        assert_eq!(
            render(v, none.clone()),
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a\nb"},"value":[1.500,"1"]},{"metric":{},"value":[1.500,"NaN"]}]}}"#
        );
        let m = Value::Matrix(vec![
            Series { labels: labels(&[("a", "1")]), points: vec![(0, 1.0), (15_000, f64::INFINITY)] },
            Series { labels: labels(&[("a", "2")]), points: vec![] },
        ]);
        let annotations = Annotations { warnings: vec!["w \"1\"".into()], infos: vec![] };
        assert_eq!(
            render(m, annotations),
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"1"},"values":[[0,"1"],[15,"+Inf"]]},{"metric":{"a":"2"},"values":[]}]},"warnings":["w \"1\""]}"#
        );
        let annotations = Annotations { warnings: vec![], infos: vec!["i".into()] };
        assert_eq!(
            render(Value::Vector(vec![]), annotations),
            r#"{"status":"success","data":{"resultType":"vector","result":[]},"infos":["i"]}"#
        );
    }
}
