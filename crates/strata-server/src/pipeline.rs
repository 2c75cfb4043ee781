//! The events pipeline over HTTP, per tenant (the tenant's key): reference tables
//! (`PUT /admin/v1/reference/{table}`, rows and changes by `POST .../rows`), enrichment rules
//! (`/admin/v1/enrichments`), deduplication (`/admin/v1/dedup`) and what the pipeline did
//! (`GET /admin/v1/pipeline`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use strata_gateway::ApiError;
use strata_log::EncodedRecords;
use strata_model::Topic;
use strata_model::topic::Reference;
use strata_pipeline::enrich::{
    DedupConfig, Enrichment, TableDecl, check_dedup, check_enrichment, check_table, parse_change,
};

use crate::server::App;

/// A rows request's body at most.
const ROWS_BODY_BYTES_MAX: usize = 16 << 20;
/// A declaration's body at most.
const DECL_BODY_BYTES_MAX: usize = 64 << 10;

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    if body.len() > DECL_BODY_BYTES_MAX {
        return Err(ApiError::too_large(format!("a {what} is at most 64 KiB of JSON")));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("body is not a {what}: {e}")))
}

async fn update(
    app: &App,
    f: impl FnOnce(&mut strata_pipeline::enrich::Catalog) -> Result<(), String> + Send + 'static,
) -> Result<(), ApiError> {
    let book = app.catalog.clone();
    tokio::task::spawn_blocking(move || book.update(f))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(ApiError::bad_request)
}

pub async fn tables(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let tenant = app.auth.tenant(&headers)?;
    let c = app.catalog.get();
    Ok(Json(json!({ "tables": c.tables.get(tenant.as_str()).cloned().unwrap_or_default() })))
}

/// Declares a table (or changes its key field).
pub async fn put_table(
    State(app): State<Arc<App>>,
    Path(table): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let tenant = app.auth.tenant(&headers)?.to_string();
    let decl: TableDecl = json_body(&body, "table declaration ({\"key\": \"field\"})")?;
    check_table(&table, &decl).map_err(ApiError::bad_request)?;
    let existed = app.catalog.get().tables.get(&tenant).is_some_and(|t| t.contains_key(&table));
    update(&app, move |c| {
        c.tables.entry(tenant).or_default().insert(table, decl);
        Ok(())
    })
    .await?;
    Ok(if existed { StatusCode::OK } else { StatusCode::CREATED })
}

/// Upserts and deletes rows: NDJSON of plain rows (upserts now) or Debezium envelopes (`op`,
/// `before`, `after`, `ts_ms`, with or without the `schema`/`payload` wrapper), appended to the
/// `reference` topic. Answers as ingest does: counts and per-line errors.
pub async fn rows(
    State(app): State<Arc<App>>,
    Path(table): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let tenant = app.auth.tenant(&headers)?;
    if body.len() > ROWS_BODY_BYTES_MAX {
        return Err(ApiError::too_large("a rows request is at most 16 MiB"));
    }
    let key =
        app.catalog.get().tables.get(tenant.as_str()).and_then(|t| t.get(&table)).map(|d| d.key.clone()).ok_or_else(
            || {
                ApiError::not_found(format!(
                    "there is no reference table {table:?}: PUT /admin/v1/reference/{table} first"
                ))
            },
        )?;
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let mut records = EncodedRecords::new();
    let (mut accepted, mut errors) = (0usize, Vec::new());
    for (index, line) in body.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).enumerate() {
        match parse_change(line, &key, now_ms) {
            Ok(_) => {
                records
                    .push(now_ms.saturating_mul(1_000_000), tenant.as_str(), &table, &[], line)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                accepted += 1;
            }
            Err(e) => errors.push(json!({"index": index, "error": e})),
        }
    }
    if accepted > 0 {
        let codec = app.log.codec(Reference::SPEC.name)?;
        records.compress(codec);
        app.log.append(Reference::SPEC.name, 0, records).await?;
    }
    let answer = json!({"accepted": accepted, "rejected": errors.len(), "errors": errors});
    if accepted == 0 {
        return Err(ApiError::bad_request(format!("no row was accepted: {answer}")));
    }
    Ok(Json(answer))
}

pub async fn enrichments(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let tenant = app.auth.tenant(&headers)?;
    let c = app.catalog.get();
    Ok(Json(json!({ "enrichments": c.enrichments.get(tenant.as_str()).cloned().unwrap_or_default() })))
}

/// Adds or replaces an enrichment rule.
pub async fn put_enrichment(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let tenant = app.auth.tenant(&headers)?.to_string();
    let e: Enrichment = json_body(&body, "enrichment")?;
    update(&app, move |c| {
        check_enrichment(&e, c.tables.get(&tenant))?;
        let list = c.enrichments.entry(tenant).or_default();
        list.retain(|o| o.name != e.name);
        if list.len() >= 32 {
            return Err("a tenant may have at most 32 enrichments".into());
        }
        list.push(e);
        Ok(())
    })
    .await?;
    Ok(StatusCode::OK)
}

pub async fn delete_enrichment(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let tenant = app.auth.tenant(&headers)?.to_string();
    let found = app.catalog.get().enrichments.get(&tenant).is_some_and(|l| l.iter().any(|e| e.name == name));
    if !found {
        return Err(ApiError::not_found(format!("no enrichment {name:?}")));
    }
    update(&app, move |c| {
        c.enrichments.entry(tenant).or_default().retain(|e| e.name != name);
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn get_dedup(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let tenant = app.auth.tenant(&headers)?;
    let d = app.catalog.get().dedup.get(tenant.as_str()).cloned().unwrap_or_default();
    Ok(Json(serde_json::to_value(d).expect("dedup serialises")))
}

pub async fn put_dedup(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Result<StatusCode, ApiError> {
    let tenant = app.auth.tenant(&headers)?.to_string();
    let d: DedupConfig = json_body(&body, "deduplication ({\"key\": \"event_id\", \"ttl\": \"10m\"})")?;
    check_dedup(&d).map_err(ApiError::bad_request)?;
    update(&app, move |c| {
        c.dedup.insert(tenant, d);
        Ok(())
    })
    .await?;
    Ok(StatusCode::OK)
}

/// What the events pipeline did for the tenant since the server started, and its state.
pub async fn status(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let tenant = app.auth.tenant(&headers)?;
    let s = app.pipeline_stats.lock().expect("pipeline stats lock").get(tenant.as_str()).cloned().unwrap_or_default();
    Ok(Json(serde_json::to_value(s).expect("stats serialise")))
}
