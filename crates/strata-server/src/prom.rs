//! The Prometheus HTTP API's metadata endpoints, in Prometheus's JSON envelope, over `strata-tsdb`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use strata_tsdb::{Matcher, parse_selector};

use crate::server::App;

/// An error answer in Prometheus's envelope.
pub struct PromError {
    status: StatusCode,
    kind: &'static str,
    msg: String,
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"status": "error", "errorType": self.kind, "error": self.msg}))).into_response()
    }
}

fn error(status: StatusCode, kind: &'static str, msg: impl Into<String>) -> PromError {
    PromError { status, kind, msg: msg.into() }
}

fn success(data: Value) -> Response {
    Json(json!({"status": "success", "data": data})).into_response()
}

/// Parameters from the query string and, for POST, a form body, as Prometheus accepts them.
fn params(query: Vec<(String, String)>, body: &Bytes) -> Result<Vec<(String, String)>, PromError> {
    let mut all = query;
    if !body.is_empty() {
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| error(StatusCode::BAD_REQUEST, "bad_data", format!("body is not a form: {e}")))?;
        all.extend(form);
    }
    Ok(all)
}

/// A Prometheus time: Unix seconds (with a fraction) or RFC 3339. In milliseconds.
fn time(params: &[(String, String)], key: &str, default: i64) -> Result<i64, PromError> {
    let Some((_, v)) = params.iter().rev().find(|(k, _)| k == key) else { return Ok(default) };
    if let Ok(secs) = v.parse::<f64>() {
        return Ok((secs * 1000.0).round() as i64);
    }
    strata_model::parse_timestamp(&Value::String(v.clone()))
        .map(|ns| ns / 1_000_000)
        .map_err(|_| error(StatusCode::BAD_REQUEST, "bad_data", format!("cannot parse {v:?} to a valid timestamp")))
}

fn selectors(params: &[(String, String)], required: bool) -> Result<Vec<Vec<Matcher>>, PromError> {
    let raw: Vec<&String> = params.iter().filter(|(k, _)| k == "match[]").map(|(_, v)| v).collect();
    if raw.is_empty() && required {
        return Err(error(StatusCode::BAD_REQUEST, "bad_data", "no match[] parameter provided"));
    }
    raw.into_iter().map(|s| parse_selector(s).map_err(|e| error(StatusCode::BAD_REQUEST, "bad_data", e))).collect()
}

struct Request {
    tenant: String,
    params: Vec<(String, String)>,
    from_ms: i64,
    to_ms: i64,
}

fn request(app: &App, headers: &HeaderMap, query: Vec<(String, String)>, body: &Bytes) -> Result<Request, PromError> {
    let tenant = app.auth.tenant(headers).map_err(|e| error(e.status, "unauthorized", e.message))?;
    let params = params(query, body)?;
    let from_ms = time(&params, "start", i64::MIN)?;
    let to_ms = time(&params, "end", i64::MAX)?;
    if from_ms > to_ms {
        return Err(error(StatusCode::BAD_REQUEST, "bad_data", "end timestamp must not be before start time"));
    }
    Ok(Request { tenant: tenant.to_string(), params, from_ms, to_ms })
}

pub async fn series(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Result<Response, PromError> {
    let r = request(&app, &headers, query, &body)?;
    let sel = selectors(&r.params, true)?;
    let data: Vec<Value> = app
        .tsdb
        .series(&r.tenant, &sel, r.from_ms, r.to_ms)
        .into_iter()
        .map(|ls| Value::Object(ls.into_iter().map(|(k, v)| (k, Value::String(v))).collect()))
        .collect();
    Ok(success(Value::Array(data)))
}

pub async fn labels(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Result<Response, PromError> {
    let r = request(&app, &headers, query, &body)?;
    let sel = selectors(&r.params, false)?;
    Ok(success(json!(app.tsdb.label_names(&r.tenant, &sel, r.from_ms, r.to_ms))))
}

pub async fn label_values(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, PromError> {
    if !strata_model::is_valid_label_name(&name) {
        return Err(error(StatusCode::BAD_REQUEST, "bad_data", format!("invalid label name: {name:?}")));
    }
    let r = request(&app, &headers, query, &Bytes::new())?;
    let sel = selectors(&r.params, false)?;
    Ok(success(json!(app.tsdb.label_values(&r.tenant, &name, &sel, r.from_ms, r.to_ms))))
}

pub async fn buildinfo() -> Response {
    success(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
}
