//! The lake's query endpoints, over the caller's tenant's tables, read only, within the `[lake]`
//! limits:
//! - `POST /query/v1/sql {"sql", "format"}`: the answer as JSON, NDJSON, CSV, Arrow or Parquet;
//! - `POST /query/v1/export {"table", "from", "to", "filters"}`: the data files that may hold
//!   matching rows, after partition and statistics pruning, for a warehouse job to load.
//!
//! Queries run on a runtime of their own, at a lower CPU priority than ingest, a few at a time:
//! a heavy query slows other queries, not the acknowledgement of records.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use strata_gateway::ApiError;
use strata_lake::sql::{Format, SqlError, SqlLimits};

use crate::config::LakeSection;
use crate::server::App;

/// The largest request body taken.
const BODY_BYTES_MAX: usize = 256 << 10;

/// The stack of a query thread (reserved, touched only as deep as a query's plan goes).
const QUERY_STACK_BYTES: usize = 64 << 20;

/// The CPU class of the query threads: ingest's threads win the CPU from them.
const QUERY_PRIORITY: strata_log::ThreadPriority = strata_log::ThreadPriority::Nice(10);

/// Runs the lake's queries on threads of their own.
pub struct LakeQueries {
    lake: Arc<strata_lake::sql::Lake>,
    limits: SqlLimits,
    runtime: Option<tokio::runtime::Runtime>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl LakeQueries {
    pub fn new(location: strata_lake::Location, cfg: &LakeSection) -> std::io::Result<LakeQueries> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.sql_threads)
            .thread_name("lake-sql")
            // Planning recurses over expressions; the operators of a query are bounded
            // (`OPERATORS_MAX`), and this is room for them with a wide margin.
            .thread_stack_size(QUERY_STACK_BYTES)
            .on_thread_start(|| {
                // Best effort: a query thread that keeps the default priority is only less polite.
                let _ = QUERY_PRIORITY.apply_to_current_thread();
            })
            .enable_all()
            .build()?;
        Ok(LakeQueries {
            lake: Arc::new(strata_lake::sql::Lake::new(location)),
            limits: SqlLimits {
                timeout: Duration::from_millis(cfg.sql_timeout_ms),
                memory_bytes: cfg.sql_memory_bytes,
                rows_max: cfg.sql_rows_max,
            },
            runtime: Some(runtime),
            permits: Arc::new(tokio::sync::Semaphore::new(cfg.sql_concurrent_max)),
        })
    }

    /// `f` on the query runtime, once one of the permits is free (429 when none is).
    async fn run<F, T>(&self, f: F) -> Result<T, ApiError>
    where
        F: Future<Output = Result<T, ApiError>> + Send + 'static,
        T: Send + 'static,
    {
        let permit =
            self.permits.clone().try_acquire_owned().map_err(|_| {
                ApiError::rate_limited("the lake is answering as many queries as it may; retry shortly", 1)
            })?;
        let runtime = self.runtime.as_ref().expect("the runtime lives as long as the queries");
        let task = runtime.spawn(async move {
            let out = f.await;
            drop(permit);
            out
        });
        task.await.map_err(|e| ApiError::internal(format!("the query failed: {e}")))?
    }
}

impl Drop for LakeQueries {
    fn drop(&mut self) {
        // Dropped from within the server's runtime, which may not block.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
    #[serde(default)]
    format: Option<String>,
}

fn parse<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &Bytes, shape: &str) -> Result<T, ApiError> {
    if let Some(enc) = headers.get(header::CONTENT_ENCODING).filter(|v| v.as_bytes() != b"identity") {
        return Err(ApiError::unsupported(format!(
            "content-encoding {:?} is not taken here: a query is small, send it as plain JSON",
            String::from_utf8_lossy(enc.as_bytes())
        )));
    }
    if body.len() > BODY_BYTES_MAX {
        return Err(ApiError::too_large(format!("a query is at most {BODY_BYTES_MAX} bytes of JSON")));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("body must be {shape}: {e}")))
}

fn api_error(e: SqlError) -> ApiError {
    match e {
        SqlError::Refused(m) => ApiError::bad_request(m),
        SqlError::Limit(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
        SqlError::Timeout(_) => ApiError::overloaded(e.to_string(), 1),
        SqlError::Internal(m) => ApiError::internal(m),
    }
}

pub async fn sql(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let tenant = app.auth.tenant(&headers)?;
    let req: SqlRequest = parse(&headers, &body, r#"{"sql": "...", "format": "json"}"#)?;
    let format = match req.format.as_deref() {
        None => Format::Json,
        Some(f) => Format::parse(f)
            .ok_or_else(|| ApiError::bad_request(format!("format {f:?} is not one of {}", Format::NAMES.join(", "))))?,
    };
    let queries = &app.lake_queries;
    let (lake, limits) = (queries.lake.clone(), queries.limits.clone());
    let started = Instant::now();
    let result = queries
        .run(async move {
            let answer = lake.query(tenant.as_str(), &req.sql, &limits).await.map_err(api_error)?;
            answer.encode(format).map_err(api_error)
        })
        .await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) if e.status.is_client_error() => "refused",
        Err(_) => "failed",
    };
    metrics::histogram!("strata_lake_query_seconds", "outcome" => outcome).record(started.elapsed());
    let bytes = result?;
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, format.content_type())
        .body(Body::from(bytes))
        .expect("a valid response"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportRequest {
    table: String,
    /// RFC 3339 or Unix milliseconds; the rows' `timestamp` is at or after it.
    #[serde(default)]
    from: Option<Value>,
    /// The rows' `timestamp` is before it.
    #[serde(default)]
    to: Option<Value>,
    /// Column equal to value: files whose statistics rule the value out are left out.
    #[serde(default)]
    filters: BTreeMap<String, Value>,
}

/// A time as every ingest endpoint takes it (RFC 3339 or Unix milliseconds), in nanoseconds.
fn time_ns(key: &str, v: &Value) -> Result<i64, ApiError> {
    strata_model::parse_timestamp(v).map_err(|e| ApiError::bad_request(format!("{key}: {e}")))
}

pub async fn export(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Result<Json, ApiError> {
    let tenant = app.auth.tenant(&headers)?;
    let req: ExportRequest = parse(
        &headers,
        &body,
        r#"{"table": "events", "from": "<RFC 3339>", "to": "<RFC 3339>", "filters": {"column": value}}"#,
    )?;
    if !strata_lake::sql::TABLES.contains(&req.table.as_str()) {
        return Err(ApiError::bad_request(format!(
            "there is no table {:?}; tables: {}",
            req.table,
            strata_lake::sql::TABLES.join(", ")
        )));
    }
    let from = req.from.as_ref().map(|v| time_ns("from", v)).transpose()?;
    let to = req.to.as_ref().map(|v| time_ns("to", v)).transpose()?;
    let range = strata_lake::export::Range { from_ns: from, to_ns: to, equal: req.filters };
    let location = app.lake_queries.lake.location().clone();
    let tenant = tenant.as_str().to_string();
    let name = req.table.clone();
    let files = app
        .lake_queries
        .run(async move { strata_lake::export::files(&location, &name, &tenant, &range).await.map_err(api_error) })
        .await?;
    Ok(axum::Json(json!({
        "table": req.table,
        "format": "delta",
        "files": files.files,
        "files_considered": files.considered,
        "rows": files.files.iter().filter_map(|f| f.rows).sum::<u64>(),
        "bytes": files.files.iter().map(|f| f.bytes).sum::<u64>(),
    })))
}

type Json = axum::Json<Value>;
