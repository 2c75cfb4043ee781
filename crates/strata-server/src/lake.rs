//! `POST /query/v1/sql`: SQL over the caller's tenant's lake tables (`events`, `rejected`), read
//! only, within the `[lake]` limits.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use strata_gateway::ApiError;
use strata_lake::sql::{SqlError, SqlLimits};

use crate::server::App;

/// The largest query text taken.
const SQL_BYTES_MAX: usize = 256 << 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
    #[serde(default)]
    format: Option<String>,
}

pub async fn sql(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, ApiError> {
    let tenant = app.auth.tenant(&headers)?;
    if body.len() > SQL_BYTES_MAX {
        return Err(ApiError::too_large(format!("a query is at most {SQL_BYTES_MAX} bytes of JSON")));
    }
    let req: SqlRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("body must be {{\"sql\": \"...\", \"format\": \"json\"}}: {e}")))?;
    if let Some(f) = req.format.as_deref().filter(|f| *f != "json") {
        return Err(ApiError::bad_request(format!("format {f:?} is not supported; use \"json\"")));
    }
    let limits = SqlLimits {
        timeout: std::time::Duration::from_millis(app.lake.sql_timeout_ms),
        memory_bytes: app.lake.sql_memory_bytes,
        rows_max: app.lake.sql_rows_max,
    };
    let dir = app.lake_dir.clone();
    let rows = strata_lake::sql::query(&dir, tenant.as_str(), &req.sql, &limits).await.map_err(|e| match e {
        SqlError::Refused(m) => ApiError::bad_request(m),
        SqlError::Limit(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
        SqlError::Timeout(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        SqlError::Internal(m) => ApiError::internal(m),
    })?;
    Ok(Json(json!({ "rows": rows })))
}
