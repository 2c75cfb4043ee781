//! What Grafana's Prometheus data source and vmalert ask for around queries: flags, runtime
//! information, metric metadata, and the rules, alerts and exemplars Strata does not have yet
//! (empty, in Prometheus's shapes, so clients show "none" rather than an error).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use serde_json::{Value, json};
use strata_tsdb::Matcher;

use super::params::{MAX_TIME_MS, MIN_TIME_MS};
use super::{PromError, blocking, read_request, success};
use crate::server::App;

/// `/api/v1/status/flags`: Strata's settings under the names of the Prometheus flags that mean
/// the same (`query.timeout`, `query.max-samples`, `storage.tsdb.retention.time`, ...).
pub async fn flags(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, PromError> {
    read_request(&app, &headers, raw.as_deref(), body).await?;
    Ok(success(&app.prom.flags))
}

/// `/api/v1/status/runtimeinfo` in Prometheus's fields: goroutines are the runtime's live
/// tasks, GOMAXPROCS its worker threads; the configuration is read once, at start.
pub async fn runtimeinfo(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, PromError> {
    read_request(&app, &headers, raw.as_deref(), body).await?;
    let started_ns = app
        .prom
        .started
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let runtime = tokio::runtime::Handle::current().metrics();
    let cwd = std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default();
    Ok(success(RuntimeInfo {
        start_time: strata_model::format_rfc3339_nanos(started_ns),
        cwd,
        reload_config_success: true,
        last_config_time: strata_model::format_rfc3339_nanos(started_ns / 1_000_000_000 * 1_000_000_000),
        corruption_count: 0,
        goroutine_count: runtime.num_alive_tasks(),
        gomaxprocs: runtime.num_workers(),
        gogc: "",
        godebug: "",
        storage_retention: app.prom.retention.clone(),
    }))
}

/// Prometheus's `RuntimeInfo`, its fields in its order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeInfo {
    start_time: String,
    #[serde(rename = "CWD")]
    cwd: String,
    reload_config_success: bool,
    last_config_time: String,
    corruption_count: u64,
    goroutine_count: usize,
    #[serde(rename = "GOMAXPROCS")]
    gomaxprocs: usize,
    #[serde(rename = "GOGC")]
    gogc: &'static str,
    #[serde(rename = "GODEBUG")]
    godebug: &'static str,
    storage_retention: String,
}

/// `/api/v1/rules`: no rule groups, after checking `type` as Prometheus does.
pub async fn rules(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, PromError> {
    let (_, params) = read_request(&app, &headers, raw.as_deref(), body).await?;
    let kind = params.get("type").to_ascii_lowercase();
    if !matches!(kind.as_str(), "" | "alert" | "record") {
        return Err(PromError::invalid_param("type", format!("not supported value {kind:?}")));
    }
    Ok(success(json!({"groups": []})))
}

/// `/api/v1/alerts`: no alerts.
pub async fn alerts(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, PromError> {
    read_request(&app, &headers, raw.as_deref(), body).await?;
    Ok(success(json!({"alerts": []})))
}

/// `/api/v1/query_exemplars`: none until exemplars are stored; the parameters and the query's
/// syntax are checked first, as Prometheus checks them.
pub async fn exemplars(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, PromError> {
    let (_, params) = read_request(&app, &headers, raw.as_deref(), body).await?;
    let start = params.time_or("start", MIN_TIME_MS).map_err(|e| PromError::invalid_param("start", e))?;
    let end = params.time_or("end", MAX_TIME_MS).map_err(|e| PromError::invalid_param("end", e))?;
    if end < start {
        return Err(PromError::bad_data("end timestamp must not be before start timestamp"));
    }
    let query = params.get("query");
    if query.trim().is_empty() {
        return Err(PromError::bad_data("1:1: parse error: no expression found in input"));
    }
    let query = query.to_string();
    blocking(move || strata_query::engine::parse(&query).map(drop))
        .await?
        .map_err(|e| PromError::bad_data(e.to_string()))?;
    Ok(success(json!([])))
}

/// `/api/v1/metadata`: `{"<metric>": [{"type", "help", "unit"}]}` for the tenant's metric
/// names, each of type `unknown` with no help, since remote write's metadata is not kept.
/// `limit` bounds the metrics, `limit_per_metric` the entries of each, `metric` picks one.
pub async fn metadata(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Body,
) -> Result<Response, PromError> {
    let (tenant, params) = read_request(&app, &headers, raw.as_deref(), body).await?;
    let number = |key: &str| -> Result<i64, PromError> {
        match params.get(key) {
            "" => Ok(-1),
            v => v.parse().map_err(|_| PromError::bad_data(format!("{key} must be a number"))),
        }
    };
    let limit = number("limit")?;
    // One entry per metric, which any limit_per_metric leaves as it is; still checked.
    number("limit_per_metric")?;
    let metric = params.get("metric").to_string();
    let stores = app.stores();
    let names = blocking(move || {
        let selectors: Vec<Vec<Matcher>> = match metric.as_str() {
            "" => Vec::new(),
            m => vec![vec![Matcher::Equal("__name__".to_string(), m.to_string())]],
        };
        let all: std::collections::BTreeSet<String> = stores
            .iter()
            .flat_map(|s| s.label_values(tenant.as_str(), "__name__", &selectors, MIN_TIME_MS, MAX_TIME_MS))
            .collect();
        all
    })
    .await?;
    // A negative limit is none; 0 returns no metric, as in Prometheus 2.42.
    let taken = usize::try_from(limit).unwrap_or(usize::MAX);
    let data: BTreeMap<String, Value> = names
        .into_iter()
        .take(taken)
        .map(|name| (name, json!([{"type": "unknown", "help": "", "unit": ""}])))
        .collect();
    Ok(success(data))
}
