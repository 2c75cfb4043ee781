//! `GET|POST /query/v1/metrics`: the native metrics query over `strata-tsdb`. Parameters and
//! semantics are in `strata_tsdb::query`; this file reads them from the request and writes the
//! answer.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use strata_gateway::ApiError;
use strata_tsdb::{NativeQuery, QueryAnswer, QueryError};

use crate::server::App;

fn to_api(e: QueryError) -> ApiError {
    match e {
        QueryError::Store(_) => ApiError::internal(e.to_string()),
        e if e.is_too_large() => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        e => ApiError::bad_request(e.to_string()),
    }
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
        let q = NativeQuery::parse(&params, now)?;
        let answer = strata_tsdb::query::run(&store, tenant.as_str(), &q)?;
        tracing::debug!(
            tenant = tenant.as_str(),
            series_scanned = answer.series_scanned,
            samples_read = answer.samples_read,
            series = answer.series.len(),
            "metrics query"
        );
        Ok::<_, QueryError>(render(&answer, started.elapsed().as_millis() as u64))
    });
    let result = match work.await {
        Ok(r) => r.map_err(to_api),
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

/// `{"series":[{"labels":{..},"points":[[ts_ms, value], ..]}],"next_cursor":..,"step_ms":..,"took_ms":..}`,
/// written directly: a page may hold a million points. Finite values are JSON numbers; NaN and
/// ±Inf, which only ±Inf samples can produce, are the strings "NaN", "+Inf" and "-Inf" as in
/// Prometheus.
fn render(a: &QueryAnswer, took_ms: u64) -> Vec<u8> {
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
    match &a.next_cursor {
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
            next_cursor: Some("0a".into()),
            step_ms: 10,
            series_scanned: 2,
            samples_read: 6,
        };
        let v: Value = serde_json::from_slice(&render(&a, 3)).unwrap();
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
        let empty = QueryAnswer { series: vec![], next_cursor: None, step_ms: 1, series_scanned: 0, samples_read: 0 };
        assert_eq!(
            String::from_utf8(render(&empty, 0)).unwrap(),
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
}
