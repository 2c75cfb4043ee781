//! Rollup rules over HTTP, per tenant (the tenant's key): `GET/POST /admin/v1/rollups`,
//! `GET/DELETE /admin/v1/rollups/{name}`, and the records that came too late for their windows,
//! `GET /query/v1/late?rule=`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use strata_gateway::ApiError;
use strata_model::Topic;
use strata_model::topic::{Events, Late, Reference};
use strata_pipeline::enrich::EventPipeline;
use strata_pipeline::rollup::{Compiled, RollupRule, RuleStats};

use crate::server::App;

/// Late records a query returns at most.
const LATE_LIMIT_MAX: usize = 1000;
/// How far back from the end of the `late` topic a query looks, in records.
const LATE_SCAN_RECORDS: u64 = 100_000;

/// A rule's figures as the operator last published them (zeros before its first commit).
fn status(c: &Compiled, stats: Option<&RuleStats>) -> RuleStats {
    RuleStats { tenant: c.tenant.clone(), rule: c.rule.name.clone(), ..stats.cloned().unwrap_or_default() }
}

fn rule_json(c: &Compiled, stats: Option<&RuleStats>) -> Value {
    let mut v = serde_json::to_value(&c.rule).expect("rules serialise");
    let mut s = serde_json::to_value(status(c, stats)).expect("stats serialise");
    if let Some(fields) = s.as_object_mut() {
        fields.remove("tenant");
        fields.remove("rule");
    }
    v["status"] = s;
    v
}

pub async fn list(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let tenant = app.auth.tenant(&headers)?;
    let stats = app.rollup_stats.lock().expect("rollup stats lock").clone();
    let rules: Vec<Value> = app
        .rules
        .of(tenant.as_str())
        .iter()
        .map(|c| rule_json(c, stats.get(&format!("{}/{}", c.tenant, c.rule.name))))
        .collect();
    Ok(Json(json!({ "rules": rules })))
}

pub async fn get_one(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let tenant = app.auth.tenant(&headers)?;
    let stats = app.rollup_stats.lock().expect("rollup stats lock").clone();
    let c = app
        .rules
        .of(tenant.as_str())
        .into_iter()
        .find(|c| c.rule.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no rollup rule {name:?}")))?;
    Ok(Json(rule_json(&c, stats.get(&format!("{}/{}", c.tenant, c.rule.name)))))
}

/// Creates or replaces a rule; a replaced rule starts over.
pub async fn put(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let tenant = app.auth.tenant(&headers)?;
    if body.len() > 64 << 10 {
        return Err(ApiError::too_large("a rule is at most 64 KiB of JSON"));
    }
    let rule: RollupRule =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("body is not a rollup rule: {e}")))?;
    let existed = app.rules.of(tenant.as_str()).iter().any(|c| c.rule.name == rule.name);
    let rules = app.rules.clone();
    let t = tenant.to_string();
    let compiled = tokio::task::spawn_blocking(move || rules.put(&t, rule))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(ApiError::bad_request)?;
    tracing::info!(%tenant, rule = %compiled.rule.name, replaced = existed, "rollup rule saved");
    let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(rule_json(&compiled, None))).into_response())
}

pub async fn delete(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let tenant = app.auth.tenant(&headers)?;
    let rules = app.rules.clone();
    let t = tenant.to_string();
    let n = name.clone();
    let deleted = tokio::task::spawn_blocking(move || rules.delete(&t, &n))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(ApiError::internal)?;
    if !deleted {
        return Err(ApiError::not_found(format!("no rollup rule {name:?}")));
    }
    tracing::info!(%tenant, rule = %name, "rollup rule deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Every tenant's rules and events pipeline, for operators (the admin token): `strata stream`.
pub async fn overview(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    app.auth.admin(&headers)?;
    let stats = app.rollup_stats.lock().expect("rollup stats lock").clone();
    let rollups: Vec<Value> = app
        .rules
        .all()
        .iter()
        .map(|c| {
            let s = status(c, stats.get(&format!("{}/{}", c.tenant, c.rule.name)));
            let mut v = serde_json::to_value(&s).expect("stats serialise");
            v["watermark"] =
                json!(s.watermark_ms.map(|ms| strata_model::format_rfc3339_nanos(ms.saturating_mul(1_000_000))));
            v
        })
        .collect();
    let pipeline = app.pipeline_stats.lock().expect("pipeline stats lock").clone();
    // The events pipeline's inputs, partition by partition, from the offsets it commits.
    let committed = app.log.committed_offsets(EventPipeline::NAME).unwrap_or_default();
    let pipeline_inputs: Vec<Value> = [Reference::SPEC.name, Events::SPEC.name]
        .into_iter()
        .flat_map(|topic| {
            let count = app.log.partition_count(topic).unwrap_or(0);
            (0..count)
                .map(|p| {
                    let end = app.log.end_offset(topic, p).unwrap_or(0);
                    let next = committed.iter().find(|o| o.topic == topic && o.partition == p).map_or(0, |o| o.offset);
                    json!({"topic": topic, "partition": p, "next_offset": next, "lag": end.saturating_sub(next)})
                })
                .collect::<Vec<_>>()
        })
        .collect();
    Ok(Json(json!({ "rollups": rollups, "pipeline": pipeline, "pipeline_inputs": pipeline_inputs })))
}

#[derive(Deserialize)]
pub struct LateQuery {
    rule: Option<String>,
    limit: Option<usize>,
}

/// The newest records that came after their windows closed, of the caller's tenant (and rule).
pub async fn late(
    State(app): State<Arc<App>>,
    Query(q): Query<LateQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let tenant = app.auth.tenant(&headers)?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > LATE_LIMIT_MAX {
        return Err(ApiError::bad_request(format!("limit must be 1 to {LATE_LIMIT_MAX}, got {limit}")));
    }
    let log = app.log.clone();
    let records = tokio::task::spawn_blocking(move || -> Result<Vec<Value>, ApiError> {
        let topic = Late::SPEC.name;
        let mut out = std::collections::VecDeque::new();
        for info in log.topics().into_iter().filter(|t| t.name == topic).flat_map(|t| t.partitions) {
            let mut at = info.earliest_offset.max(info.latest_offset.saturating_sub(LATE_SCAN_RECORDS));
            while at < info.latest_offset {
                let r = log.read(topic, info.partition, at, 1 << 20)?;
                for rec in &r.records {
                    if rec.record.tenant != tenant.as_str() {
                        continue;
                    }
                    let Ok(v) = serde_json::from_slice::<Value>(&rec.record.payload) else { continue };
                    if q.rule.as_deref().is_some_and(|rule| v["rule"] != rule) {
                        continue;
                    }
                    out.push_back(v);
                    if out.len() > limit {
                        out.pop_front();
                    }
                }
                if r.next_offset <= at {
                    break;
                }
                at = r.next_offset;
            }
        }
        Ok(out.into_iter().collect())
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(Json(json!({ "records": records })))
}
