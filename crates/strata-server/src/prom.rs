//! The Prometheus HTTP API over `strata-tsdb` and `strata-query`, tenant-scoped by the API key:
//! PromQL queries (`query.rs`), the series and label endpoints (here), and what Grafana and
//! vmalert call around them (`status.rs`). Parameters, the JSON envelope and error texts are
//! Prometheus's (`params.rs`, `render.rs`), so its clients work unchanged.

pub mod params;
pub mod query;
mod render;
pub mod status;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use strata_gateway::ApiError;
use strata_model::TenantId;
use strata_tsdb::{Matcher, parse_selector};
use tokio::sync::Semaphore;

use self::params::{MAX_TIME_MS, MIN_TIME_MS, Params};
use crate::config::{Config, QuerySection};
use crate::server::App;

/// An error answer in Prometheus's envelope: `{"status":"error","errorType":..,"error":..}`.
#[derive(Debug)]
pub struct PromError {
    status: StatusCode,
    kind: &'static str,
    msg: String,
    retry_after_s: Option<u64>,
}

impl PromError {
    fn new(status: StatusCode, kind: &'static str, msg: impl Into<String>) -> PromError {
        PromError { status, kind, msg: msg.into(), retry_after_s: None }
    }

    /// The request is malformed: 400 `bad_data`.
    pub fn bad_data(msg: impl Into<String>) -> PromError {
        PromError::new(StatusCode::BAD_REQUEST, "bad_data", msg)
    }

    /// One parameter is malformed, worded as Prometheus's `invalidParamError`.
    pub fn invalid_param(param: &str, msg: impl std::fmt::Display) -> PromError {
        PromError::bad_data(format!("invalid parameter {param:?}: {msg}"))
    }

    /// A bug or a failed read on our side: 500 `internal`.
    pub fn internal(msg: impl Into<String>) -> PromError {
        PromError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", msg)
    }

    /// An error of the query engine, with the status Prometheus's `respondError` gives its type.
    pub fn query(e: &strata_query::QueryError) -> PromError {
        let status = match e.kind() {
            "bad_data" => StatusCode::BAD_REQUEST,
            "execution" => StatusCode::UNPROCESSABLE_ENTITY,
            "timeout" | "canceled" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        PromError::new(status, e.kind(), e.to_string())
    }

    /// The request did not run because the tenant's queries are all in use: 503 `unavailable`
    /// with Retry-After.
    pub fn unavailable(msg: impl Into<String>, retry_after_s: u64) -> PromError {
        PromError {
            retry_after_s: Some(retry_after_s),
            ..PromError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", msg)
        }
    }

    /// The evaluation was stopped before it answered: 503 `canceled`.
    pub fn canceled(msg: impl Into<String>) -> PromError {
        PromError::new(StatusCode::SERVICE_UNAVAILABLE, "canceled", msg)
    }

    fn from_api(e: ApiError, kind: &'static str) -> PromError {
        PromError { retry_after_s: e.retry_after_s, ..PromError::new(e.status, kind, e.message) }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        // Written in Prometheus's key order: status, errorType, error.
        let body = format!(
            r#"{{"status":"error","errorType":{},"error":{}}}"#,
            Value::String(self.kind.to_string()),
            Value::String(self.msg)
        );
        let mut resp = (self.status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if let Some(s) = self.retry_after_s {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if matches!(self.status, StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNAUTHORIZED) {
            // Answered before the body was read to its end: the connection cannot carry another
            // request, and saying so keeps the client from sending one on it.
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// `{"status":"success","data":..}`, in Prometheus's key order.
fn success(data: impl serde::Serialize) -> Response {
    match serde_json::to_string(&data) {
        Ok(data) => ([(header::CONTENT_TYPE, "application/json")], format!(r#"{{"status":"success","data":{data}}}"#))
            .into_response(),
        Err(e) => PromError::internal(format!("cannot write the answer: {e}")).into_response(),
    }
}

/// What the Prometheus API keeps between requests: the `[query]` limits, the values shown by
/// the status endpoints, and the queries each tenant is running.
pub struct PromApi {
    pub cfg: QuerySection,
    /// `/api/v1/status/flags`: Strata's settings under Prometheus's flag names.
    flags: BTreeMap<String, String>,
    started: SystemTime,
    /// As Prometheus's `storageRetention`: `30d`.
    retention: String,
    /// Per tenant, the permits of `concurrent_per_tenant_max` queries.
    running: Mutex<HashMap<TenantId, Arc<Semaphore>>>,
}

impl PromApi {
    pub fn new(cfg: &Config) -> PromApi {
        let q = &cfg.query;
        let retention = params::format_duration(i64::from(cfg.tsdb.retention_days) * 86_400_000);
        let flags = [
            ("query.lookback-delta", params::format_duration(q.lookback_delta_ms as i64)),
            ("query.max-samples", q.samples_max.to_string()),
            ("query.timeout", params::format_duration(q.timeout_ms as i64)),
            // Prometheus's is for the whole server; Strata's is per tenant.
            ("query.max-concurrency", q.concurrent_per_tenant_max.to_string()),
            ("storage.tsdb.path", cfg.data_dir.join("tsdb").display().to_string()),
            ("storage.tsdb.retention.time", retention.clone()),
            ("storage.tsdb.min-block-duration", "2h".to_string()),
            ("storage.tsdb.max-block-duration", "2h".to_string()),
            ("web.listen-address", cfg.http_addr.clone()),
            ("web.enable-remote-write-receiver", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        PromApi { cfg: q.clone(), flags, started: SystemTime::now(), retention, running: Mutex::new(HashMap::new()) }
    }

    /// The semaphore that bounds `tenant`'s concurrent queries.
    fn slots(&self, tenant: &TenantId) -> Arc<Semaphore> {
        let mut running = self.running.lock().expect("prom running lock");
        running
            .entry(tenant.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.cfg.concurrent_per_tenant_max)))
            .clone()
    }
}

/// The tenant of a request's API key and its parameters: the URL's, and a form body's when the
/// body is one (Go's `ParseForm` reads only `application/x-www-form-urlencoded` bodies).
async fn read_request(
    app: &App,
    headers: &HeaderMap,
    raw_query: Option<&str>,
    body: Body,
) -> Result<(TenantId, Params), PromError> {
    let tenant = app.auth.tenant(headers).map_err(|e| PromError::from_api(e, "unauthorized"))?;
    let bytes = read_body(body, headers, app.prom.cfg.body_bytes_max).await?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let form = content_type.is_empty() || content_type.starts_with("application/x-www-form-urlencoded");
    Ok((tenant, Params::new(raw_query, if form { &bytes } else { &[] })))
}

/// How much of a body past `query.body_bytes_max` is read and dropped before the 413 is sent.
/// A client still sending when the server closes the connection gets a reset instead of the
/// answer; reading on lets it finish and read the 413. Past this, the connection is cut.
const BODY_DRAIN_BYTES_MAX: u64 = 16 << 20;

/// The body, when it has at most `bytes_max` bytes; else 413, once the body is read to its end
/// or to `BODY_DRAIN_BYTES_MAX`.
async fn read_body(body: Body, headers: &HeaderMap, bytes_max: u64) -> Result<Vec<u8>, PromError> {
    use futures_util::StreamExt;
    let too_large = || {
        PromError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "bad_data",
            format!("request body is larger than query.body_bytes_max ({bytes_max} bytes)"),
        )
    };
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_DRAIN_BYTES_MAX) {
        return Err(too_large());
    }
    let mut out = Vec::with_capacity(declared.unwrap_or(0).min(bytes_max) as usize);
    let mut seen = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| PromError::bad_data(format!("cannot read request body: {e}")))?;
        seen += chunk.len() as u64;
        if seen > BODY_DRAIN_BYTES_MAX {
            break;
        }
        if seen <= bytes_max {
            out.extend_from_slice(&chunk);
        }
    }
    if seen > bytes_max {
        return Err(too_large());
    }
    Ok(out)
}

/// Runs store reads off the async runtime: they take the tenant's lock and walk its index.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, PromError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| PromError::internal(format!("read task failed: {e}")))
}

/// `match[]` selectors, Prometheus's `parseMatchersParam`.
fn selectors(params: &Params) -> Result<Vec<Vec<Matcher>>, String> {
    params.all("match[]").into_iter().map(parse_selector).collect()
}

/// `start` and `end`, by default the widest range; a start after the end selects nothing, as
/// in Prometheus.
fn range(params: &Params) -> Result<(i64, i64), PromError> {
    let start = params.time_or("start", MIN_TIME_MS).map_err(|e| PromError::invalid_param("start", e))?;
    let end = params.time_or("end", MAX_TIME_MS).map_err(|e| PromError::invalid_param("end", e))?;
    Ok((start, end))
}

pub async fn series(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, PromError> {
    let (tenant, params) = read_request(&app, &headers, raw.as_deref(), body).await?;
    if params.all("match[]").is_empty() {
        return Err(PromError::bad_data("no match[] parameter provided"));
    }
    let (start, end) = range(&params)?;
    let sel = selectors(&params).map_err(|e| PromError::invalid_param("match[]", e))?;
    let stores = app.stores();
    let series = blocking(move || {
        let mut all: Vec<_> = stores.iter().flat_map(|s| s.series(tenant.as_str(), &sel, start, end)).collect();
        all.sort();
        all.dedup();
        all
    })
    .await?;
    let data = series
        .into_iter()
        .map(|ls| Value::Object(ls.into_iter().map(|(k, v)| (k, Value::String(v))).collect()))
        .collect();
    Ok(success(Value::Array(data)))
}

pub async fn labels(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, PromError> {
    let (tenant, params) = read_request(&app, &headers, raw.as_deref(), body).await?;
    let (start, end) = range(&params)?;
    let sel = selectors(&params).map_err(PromError::bad_data)?;
    let stores = app.stores();
    let names = blocking(move || {
        let all: std::collections::BTreeSet<String> =
            stores.iter().flat_map(|s| s.label_names(tenant.as_str(), &sel, start, end)).collect();
        all.into_iter().collect::<Vec<_>>()
    })
    .await?;
    Ok(success(json!(names)))
}

pub async fn label_values(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, PromError> {
    if !strata_model::is_valid_label_name(&name) {
        return Err(PromError::bad_data(format!("invalid label name: {name:?}")));
    }
    let (tenant, params) = read_request(&app, &headers, raw.as_deref(), body).await?;
    let (start, end) = range(&params)?;
    let sel = selectors(&params).map_err(PromError::bad_data)?;
    let stores = app.stores();
    let values = blocking(move || {
        let all: std::collections::BTreeSet<String> =
            stores.iter().flat_map(|s| s.label_values(tenant.as_str(), &name, &sel, start, end)).collect();
        all.into_iter().collect::<Vec<_>>()
    })
    .await?;
    Ok(success(json!(values)))
}

/// Prometheus's `PrometheusVersion`, its fields in its order.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct BuildInfo {
    version: &'static str,
    revision: &'static str,
    branch: &'static str,
    build_user: &'static str,
    build_date: &'static str,
    go_version: &'static str,
}

pub async fn buildinfo() -> Response {
    success(BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        revision: "",
        branch: "",
        build_user: "",
        build_date: "",
        go_version: "",
    })
}
