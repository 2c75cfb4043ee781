//! Inspection of the log, as a user of `kcat` would expect: topics, records, consumer groups.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use strata_gateway::ApiError;
use strata_log::StoredRecord;
use strata_model::format_rfc3339_nanos;

use crate::server::App;

const RECORDS_LIMIT_MAX: usize = 1000;

pub async fn topics(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    app.auth.admin(&headers)?;
    Ok(Json(json!({ "topics": app.log.topics() })))
}

#[derive(Deserialize)]
pub struct RecordsQuery {
    offset: Option<u64>,
    /// Start at the first record appended at or after this time (RFC 3339 or Unix ms).
    time: Option<String>,
    limit: Option<usize>,
}

pub async fn records(
    State(app): State<Arc<App>>,
    Path((topic, partition)): Path<(String, u32)>,
    Query(q): Query<RecordsQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    app.auth.admin(&headers)?;
    let limit = q.limit.unwrap_or(10);
    if limit == 0 || limit > RECORDS_LIMIT_MAX {
        return Err(ApiError::bad_request(format!("limit must be 1 to {RECORDS_LIMIT_MAX}, got {limit}")));
    }
    let log = app.log.clone();
    let info = log
        .topics()
        .into_iter()
        .find(|t| t.name == topic)
        .ok_or_else(|| ApiError::not_found(format!("unknown topic {topic:?}")))?;
    let p = info
        .partitions
        .iter()
        .find(|p| p.partition == partition)
        .ok_or_else(|| ApiError::not_found(format!("topic {topic:?} has no partition {partition}")))?;
    let offset = match (&q.time, q.offset) {
        (Some(t), _) => {
            let v = t.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(t.clone()));
            let ns = strata_model::parse_timestamp(&v).map_err(|e| ApiError::bad_request(e.to_string()))?;
            log.offset_for_time(&topic, partition, ns / 1_000_000)?
        }
        (None, Some(o)) => o,
        (None, None) => p.earliest_offset,
    };
    let name = topic.clone();
    let (records, next) = tokio::task::spawn_blocking(move || -> Result<(Vec<StoredRecord>, u64), ApiError> {
        let mut out = Vec::new();
        let mut next = offset;
        while out.len() < limit {
            let r = log.read(&topic, partition, next, 256 << 10)?;
            if r.records.is_empty() {
                break;
            }
            next = r.next_offset;
            out.extend(r.records);
        }
        out.truncate(limit);
        let next = out.last().map_or(next, |r| r.offset + 1);
        Ok((out, next))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let registry = app.gateway.registry();
    let records: Vec<Value> = records.iter().map(|r| record_json(r, &name, registry)).collect();
    Ok(Json(json!({ "records": records, "next_offset": next })))
}

/// A record as JSON: a JSON payload inline, a metric batch as its series (numbers resolved
/// through `registry`), series definitions as a list, text as a string, anything else in base64.
pub fn record_json(r: &StoredRecord, topic: &str, registry: &strata_model::SeriesRegistry) -> Value {
    let tenant = r.record.tenant.as_str();
    let batch = || {
        strata_model::MetricBatch::decode(&r.record.payload).and_then(|b| b.to_json_in(tenant, &registry.read())).ok()
    };
    let defs = || {
        let defs = strata_model::decode_defs(&r.record.payload).ok()?;
        let defs = defs.into_iter().map(|(id, labels)| {
            let labels: serde_json::Map<String, Value> =
                labels.into_iter().map(|(n, v)| (n, Value::String(v))).collect();
            json!({"series": id, "labels": labels})
        });
        Some(Value::Array(defs.collect()))
    };
    let series_topic = topic == <strata_model::topic::Series as strata_model::Topic>::SPEC.name;
    let (payload, encoding) = match serde_json::from_slice::<Value>(&r.record.payload) {
        Ok(v) if !series_topic => (v, "json"),
        _ => match if series_topic {
            defs().map(|v| (v, "series_definitions"))
        } else {
            batch().map(|v| (v, "metric_batch"))
        } {
            Some((v, encoding)) => (v, encoding),
            None => match std::str::from_utf8(&r.record.payload) {
                Ok(s) => (Value::String(s.to_string()), "utf8"),
                Err(_) => (Value::String(base64(&r.record.payload)), "base64"),
            },
        },
    };
    let headers: serde_json::Map<String, Value> = r
        .record
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(String::from_utf8_lossy(v).into_owned())))
        .collect();
    json!({
        "offset": r.offset,
        "append_time": format_rfc3339_nanos(r.append_time_ms.saturating_mul(1_000_000)),
        "timestamp": format_rfc3339_nanos(r.record.timestamp_ns),
        "tenant": r.record.tenant,
        "source_id": r.record.source_id,
        "headers": headers,
        "payload_encoding": encoding,
        "payload": payload,
    })
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub async fn groups(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    app.auth.admin(&headers)?;
    let topics = app.log.topics();
    let mut groups = Vec::new();
    for g in app.log.groups() {
        let offsets = app.log.committed_offsets(&g)?;
        let partitions: Vec<Value> = offsets
            .iter()
            .map(|o| {
                let latest = latest_offset(&topics, o);
                json!({
                    "topic": o.topic,
                    "partition": o.partition,
                    "committed_offset": o.offset,
                    "latest_offset": latest,
                    "lag": latest.saturating_sub(o.offset),
                })
            })
            .collect();
        groups.push(json!({ "group": g, "partitions": partitions }));
    }
    Ok(Json(json!({ "groups": groups })))
}

/// The end of the partition a group offset is in (the offset itself if the partition is gone).
fn latest_offset(topics: &[strata_log::TopicInfo], o: &strata_log::GroupOffset) -> u64 {
    topics
        .iter()
        .find(|t| t.name == o.topic)
        .and_then(|t| t.partitions.iter().find(|p| p.partition == o.partition))
        .map_or(o.offset, |p| p.latest_offset)
}

/// Records of `group`'s topics not yet committed by it, from the group's offsets in the log.
fn group_lag(app: &App, topics: &[strata_log::TopicInfo], group: &str) -> u64 {
    let offsets = app.log.committed_offsets(group).unwrap_or_default();
    offsets.iter().map(|o| latest_offset(topics, o).saturating_sub(o.offset)).sum()
}

/// `GET /admin/v1/consumers`: each consumer's state, restarts, last error and lag.
pub async fn consumers(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    app.auth.admin(&headers)?;
    let topics = app.log.topics();
    let consumers: Vec<Value> = app
        .consumers
        .list()
        .into_iter()
        .map(|c| {
            let mut v = serde_json::to_value(&c).unwrap_or_default();
            v["lag"] = json!(group_lag(&app, &topics, &c.group));
            v["last_error_time"] =
                c.last_error_ms.map(|ms| json!(format_rfc3339_nanos(ms * 1_000_000))).unwrap_or_default();
            v
        })
        .collect();
    Ok(Json(json!({ "consumers": consumers })))
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foobar", "Zm9vYmFy")] {
            assert_eq!(super::base64(i.as_bytes()), o);
        }
    }
}
