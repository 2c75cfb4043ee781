//! The native ingest endpoints: decode, validate and normalise each record, route it to its
//! partition, append, and answer with per-record errors.

mod batch;
mod decode;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use strata_log::EncodedRecords;
use strata_model::topic::{Series, Topic};
use strata_model::{Kind, TenantId, headers as record_headers, partition_for};
use tokio::sync::OwnedSemaphorePermit;

use crate::body::{Encoding, decompress};
use crate::idempotency::{self, Answer, Begin, Ticket};
use crate::{ApiError, Gateway};

pub(crate) use batch::{Decoded, MetricBatches, PartitionBatch};
pub use decode::Format;
use decode::decode;
pub(crate) use decode::now_ns;

/// One rejected record in an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemError {
    pub index: usize,
    pub error: String,
    /// The record was valid but could not be appended now; sending it again may succeed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retryable: bool,
}

/// The answer to an ingest request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestResponse {
    pub accepted: usize,
    pub rejected: usize,
    pub errors: Vec<ItemError>,
    /// Errors not listed because of `errors_max`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub errors_omitted: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// `POST /ingest/v1/{logs,events,metrics}`.
pub(crate) async fn ingest_records(gw: Arc<Gateway>, kind: Kind, headers: HeaderMap, body: Body) -> Response {
    let started = std::time::Instant::now();
    let result = ingest_records_inner(&gw, kind, &headers, body).await;
    finish(kind, started, result)
}

fn finish(kind: Kind, started: std::time::Instant, result: Result<(StatusCode, IngestResponse), ApiError>) -> Response {
    let status = match &result {
        Ok((s, _)) => *s,
        Err(e) => e.status,
    };
    metrics::counter!("strata_ingest_requests_total", "kind" => kind.as_str(), "status" => status.as_str().to_string())
        .increment(1);
    metrics::histogram!("strata_ingest_request_seconds", "kind" => kind.as_str())
        .record(started.elapsed().as_secs_f64());
    match result {
        Ok((status, resp)) => (status, Json(resp)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn ingest_records_inner(
    gw: &Arc<Gateway>,
    kind: Kind,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StatusCode, IngestResponse), ApiError> {
    let format = Format::from_headers(headers)?;
    let encoding = Encoding::from_headers(headers)?;
    ingest_decoded(gw, kind, headers, body, false, move |gw, raw, permit, tenant, partitions, out| {
        let body = decompress(raw, encoding, gw.cfg.decompressed_bytes_max, |n| gw.grow(permit, n))?;
        // Metric points wait in their batches until the body is read: about as much memory as
        // the body they come from. Stored lines are counted by `out` as they are written.
        if kind == Kind::Metrics {
            gw.grow(permit, body.len())?;
        }
        let metrics = (kind == Kind::Metrics).then(|| MetricBatches::new(gw, tenant));
        decode(kind, tenant, &body, format, &gw.cfg.record, partitions, out.with_metrics(metrics))
    })
    .await
    .map(|(status, resp, _)| (status, resp))
}

/// What every record ingest path shares once it knows how to decode a body: authentication, the
/// memory budget, the body limit, rate limits, appending, counting and the answer. `decode` runs
/// on a blocking thread with the raw body, and may grow the request's memory share. Returned with
/// the answer: the indexes of every valid record whose partition could not take it (to be sent
/// again), in order, since the answer lists at most `errors_max` errors of all kinds and a
/// protocol that answers each record on its own (Elasticsearch `_bulk`) needs all of them.
pub(crate) async fn ingest_decoded<F>(
    gw: &Arc<Gateway>,
    kind: Kind,
    headers: &HeaderMap,
    body: Body,
    empty_ok: bool,
    decode: F,
) -> Result<(StatusCode, IngestResponse, Vec<usize>), ApiError>
where
    F: FnOnce(&Gateway, Vec<u8>, &mut OwnedSemaphorePermit, &TenantId, u32, Decoded) -> Result<Decoded, ApiError>
        + Send
        + 'static,
{
    let tenant = gw.auth.tenant(headers)?;
    let key = idempotency::key_of(headers)?;
    let mut permit = gw.reserve_body(headers).await?;
    let raw = gw.read_body(body, headers).await?;
    // From here until its batches reach their partitions' writers, a busy partition's group
    // commit waits for this request's appends (see `Log::announce`).
    let announced = Arc::new(gw.log.announce(kind.topic()));
    // Taken once the body is read, so that a replayed answer leaves the connection usable.
    let (ticket, skip) = match &key {
        None => (None, BTreeSet::new()),
        Some(key) => match gw.idempotency.begin(tenant.as_str(), key, kind.topic())? {
            Begin::Replay(a) => {
                let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK);
                // A kept answer is a final one: every partition took its records.
                return Ok((status, a.body, Vec::new()));
            }
            Begin::Proceed(ticket, skip) => (Some(ticket), skip),
        },
    };
    gw.rate.take(&tenant, 0, raw.len() as u64).map_err(|wait| {
        ApiError::rate_limited(format!("tenant {tenant} is over its ingest rate of bytes per second"), wait)
    })?;
    count_bytes(&tenant, kind, raw.len());
    let partitions = gw.log.partition_count(kind.topic())?;
    let codec = gw.log.codec(kind.topic())?;
    let series_codec = gw.log.codec(Series::SPEC.name)?;
    let (mut decoded, series_defs, _permit) = {
        let tenant = tenant.clone();
        let worker = gw.clone();
        gw.decode_blocking(move || {
            let errors_max = worker.cfg.errors_max;
            let out = Decoded::new(key).keeping_errors(errors_max).with_budget(worker.decoding_budget());
            let mut decoded = decode(&worker, raw, &mut permit, &tenant, partitions, out)?;
            if let Some(e) = decoded.budget.refused() {
                return Err(e.clone());
            }
            // Held with the body's share until the request is answered.
            if let Some(held) = decoded.budget.take_permit() {
                permit.merge(held);
            }
            // Compressed here, on a blocking thread and in parallel, not by the partition's writer.
            for batch in decoded.batches.values_mut() {
                batch.records.compress(codec);
            }
            let defs = if decoded.series_defs.is_empty() {
                None
            } else {
                let mut records = EncodedRecords::new();
                records
                    .push(0, tenant.as_str(), "", &[], &decoded.series_defs.encode())
                    .map_err(|e| ApiError::internal(format!("series definitions: {e}")))?;
                records.compress(series_codec);
                Some(records)
            };
            Ok((decoded, defs, permit))
        })
        .await?
    };
    if let Some(why) = decoded.dropped.take() {
        tracing::debug!(tenant = %tenant, "{why}");
        return Ok((
            StatusCode::ACCEPTED,
            IngestResponse { accepted: 0, rejected: 0, errors: Vec::new(), errors_omitted: 0 },
            Vec::new(),
        ));
    }
    if decoded.total == 0 && empty_ok {
        return Ok((
            StatusCode::OK,
            IngestResponse { accepted: 0, rejected: 0, errors: Vec::new(), errors_omitted: 0 },
            Vec::new(),
        ));
    }
    let valid = decoded.total - decoded.errors.len();
    if decoded.total == 0 {
        return Err(ApiError::bad_request("body contains no records"));
    }
    if valid > 0 {
        gw.rate.take(&tenant, valid as u64, 0).map_err(|wait| {
            ApiError::rate_limited(format!("tenant {tenant} is over its ingest rate of records per second"), wait)
        })?;
    }
    let mut reasons: BTreeMap<&'static str, u64> = decoded.errors.reasons().clone();
    // Only the first `errors_max` are kept and made text (`Rejected`).
    let invalid = decoded.errors.len();
    let mut errors: Vec<ItemError> = decoded
        .errors
        .first()
        .iter()
        .take(gw.cfg.errors_max)
        .map(|(index, e)| ItemError { index: *index, error: e.to_string(), retryable: false })
        .collect();
    if let Some(defs) = series_defs {
        // Durable before any batch naming them is appended (see `SeriesRegistry`).
        if let Err(e) = gw.log.append(Series::SPEC.name, 0, defs).await {
            tracing::warn!(error = %e, "appending series definitions failed");
            count_records(&tenant, kind, 0, &reasons);
            return Err(e.into());
        }
        gw.registry.defined(decoded.series_defs.ids());
    }
    let mut batches = std::mem::take(&mut decoded.batches);
    // A retry of a keyed request that was cut short: its records are already in these partitions.
    let mut already = 0;
    for p in &skip {
        if let Some(b) = batches.remove(p) {
            already += b.indexes.len();
        }
    }
    let mut failed = Vec::new();
    let (appended, append_error) =
        append_batches(gw, kind, batches, announced, ticket.as_ref(), &mut failed, &mut reasons).await;
    let accepted = already + appended;
    if accepted == 0
        && let Some(e) = append_error
    {
        // Nothing was appended because the log could not take it: the whole request may be retried.
        count_records(&tenant, kind, 0, &reasons);
        return Err(e);
    }
    count_records(&tenant, kind, accepted, &reasons);
    // The valid records whose partition could not take them: all returned, the first listed.
    failed.sort_unstable_by_key(|(index, _)| *index);
    let retry: Vec<usize> = failed.iter().map(|(index, _)| *index).collect();
    errors.extend(failed.iter().take(gw.cfg.errors_max).map(|(index, why)| ItemError {
        index: *index,
        error: why.to_string(),
        retryable: true,
    }));
    errors.sort_by_key(|e| e.index);
    let rejected = invalid + failed.len();
    let omitted = rejected.saturating_sub(gw.cfg.errors_max);
    errors.truncate(gw.cfg.errors_max);
    let resp = IngestResponse { accepted, rejected, errors, errors_omitted: omitted };
    let status = if accepted == 0 { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    if let Some(ticket) = ticket {
        // Every partition holds its records: the answer is final. Otherwise a retry appends the rest.
        let answer = append_error.is_none().then(|| Answer { status: status.as_u16(), body: resp.clone() });
        ticket.finish(answer);
    }
    Ok((status, resp, retry))
}

/// Appends every partition's batch concurrently. The records of a partition whose append failed go
/// to `failed` with why (retryable: sending them again may succeed). Returns the number appended
/// and the last append error.
/// The appends run as tasks of their own that finish even if the request is dropped, and tell
/// the idempotency table of a keyed request how each ended.
async fn append_batches(
    gw: &Arc<Gateway>,
    kind: Kind,
    batches: BTreeMap<u32, PartitionBatch>,
    announced: Arc<strata_log::Announced>,
    ticket: Option<&Ticket>,
    failed: &mut Vec<(usize, Arc<str>)>,
    reasons: &mut BTreeMap<&'static str, u64>,
) -> (usize, Option<ApiError>) {
    let mut tasks = Vec::with_capacity(batches.len());
    for (p, batch) in batches {
        let log = gw.log.clone();
        let keyed = match ticket {
            Some(t) => {
                let lower = match log.end_offset(kind.topic(), p) {
                    Ok(o) => o,
                    Err(e) => {
                        tasks.push(tokio::spawn(async move { (Err(e), batch.indexes) }));
                        continue;
                    }
                };
                gw.idempotency.appending(t, p, lower);
                Some((gw.idempotency.clone(), t.id().to_string(), lower))
            }
            None => None,
        };
        let announced = announced.clone();
        tasks.push(tokio::spawn(async move {
            let n = batch.indexes.len();
            let r = log.append_announced(kind.topic(), p, batch.records, announced).await;
            if let Some((table, id, lower)) = keyed {
                table.appended(&id, p, lower, r.is_ok());
            }
            (r.map(|_| n), batch.indexes)
        }));
    }
    // Each task's copy goes once its partition's writer has the batch.
    drop(announced);
    let mut accepted = 0;
    let mut last_err = None;
    for task in tasks {
        let joined = task.await;
        let (result, indexes) = match joined {
            Ok(x) => x,
            Err(e) => {
                last_err = Some(ApiError::internal(format!("append task failed: {e}")));
                continue;
            }
        };
        match result {
            Ok(n) => accepted += n,
            Err(e) => {
                // The log says once when its disk floor starts and stops refusing appends.
                if !matches!(e, strata_log::Error::DiskFull { .. }) {
                    tracing::warn!(kind = %kind, error = %e, records = indexes.len(), "append failed");
                }
                let api: ApiError = e.into();
                *reasons.entry("log_unavailable").or_default() += indexes.len() as u64;
                let why: Arc<str> = api.message.as_str().into();
                failed.extend(indexes.into_iter().map(|index| (index, why.clone())));
                last_err = Some(api);
            }
        }
    }
    (accepted, last_err)
}

fn count_bytes(tenant: &TenantId, kind: Kind, bytes: usize) {
    metrics::counter!("strata_ingest_bytes_total", "tenant" => tenant.to_string(), "kind" => kind.as_str())
        .increment(bytes as u64);
}

fn count_records(tenant: &TenantId, kind: Kind, accepted: usize, reasons: &BTreeMap<&'static str, u64>) {
    let t = tenant.to_string();
    if accepted > 0 {
        metrics::counter!("strata_ingest_records_accepted_total", "tenant" => t.clone(), "kind" => kind.as_str())
            .increment(accepted as u64);
    }
    for (reason, n) in reasons {
        metrics::counter!("strata_ingest_records_rejected_total", "tenant" => t.clone(), "kind" => kind.as_str(), "reason" => *reason)
            .increment(*n);
    }
}

#[derive(Deserialize)]
pub(crate) struct RawQuery {
    source_id: Option<String>,
}

/// `POST /ingest/v1/raw/{stream}`: one opaque payload, stored as it is.
pub(crate) async fn ingest_raw(
    State(gw): State<Arc<Gateway>>,
    Path(stream): Path<String>,
    Query(q): Query<RawQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let result = ingest_raw_inner(&gw, stream, q, &headers, body).await;
    finish(Kind::Raw, started, result)
}

fn valid_stream(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

async fn ingest_raw_inner(
    gw: &Arc<Gateway>,
    stream: String,
    q: RawQuery,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StatusCode, IngestResponse), ApiError> {
    let tenant = gw.auth.tenant(headers)?;
    if !valid_stream(&stream) {
        return Err(ApiError::bad_request(format!(
            "stream name {stream:?} must be 1 to 128 of [A-Za-z0-9._-] and not start with '.'"
        )));
    }
    let source_id = headers
        .get("x-source-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(q.source_id)
        .ok_or_else(|| ApiError::bad_request("a source id is required: X-Source-Id header or ?source_id="))?;
    if source_id.is_empty() || source_id.len() > gw.cfg.record.id_bytes_max {
        return Err(ApiError::bad_request(format!(
            "source id must be 1 to {} bytes, got {}",
            gw.cfg.record.id_bytes_max,
            source_id.len()
        )));
    }
    let encoding = Encoding::from_headers(headers)?;
    let content_type = raw_content_type(headers);
    let key = idempotency::key_of(headers)?;
    let mut permit = gw.reserve_body(headers).await?;
    let raw = gw.read_body(body, headers).await?;
    let announced = Arc::new(gw.log.announce(Kind::Raw.topic()));
    let ticket = match &key {
        None => None,
        Some(k) => match gw.idempotency.begin(tenant.as_str(), k, Kind::Raw.topic())? {
            Begin::Replay(a) => return Ok((StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK), a.body)),
            // Its one record is in the log already.
            Begin::Proceed(t, skip) if !skip.is_empty() => {
                let resp = IngestResponse { accepted: 1, rejected: 0, errors: Vec::new(), errors_omitted: 0 };
                t.finish(Some(Answer { status: 200, body: resp.clone() }));
                return Ok((StatusCode::OK, resp));
            }
            Begin::Proceed(t, _) => Some(t),
        },
    };
    gw.rate
        .take(&tenant, 1, raw.len() as u64)
        .map_err(|wait| ApiError::rate_limited(format!("tenant {tenant} is over its ingest rate"), wait))?;
    count_bytes(&tenant, Kind::Raw, raw.len());
    let partitions = gw.log.partition_count(Kind::Raw.topic())?;
    let codec = gw.log.codec(Kind::Raw.topic())?;
    let (records, _permit) = {
        let tenant = tenant.clone();
        let source_id = source_id.clone();
        let worker = gw.clone();
        gw.decode_blocking(move || {
            let gw = worker;
            let payload = decompress(raw, encoding, gw.cfg.decompressed_bytes_max, |n| gw.grow(&mut permit, n))?;
            if payload.is_empty() {
                // Most often a file that was not there (`curl --data-binary @missing` sends nothing).
                return Err(ApiError::bad_request("raw payload is empty: the request has no body"));
            }
            gw.grow(&mut permit, payload.len())?;
            let mut records = EncodedRecords::new();
            let mut hdrs: Vec<(&str, &[u8])> = vec![
                (record_headers::STREAM, stream.as_bytes()),
                (record_headers::CONTENT_TYPE, content_type.as_bytes()),
            ];
            if let Some(k) = &key {
                hdrs.push((record_headers::IDEMPOTENCY_KEY, k.as_bytes()));
            }
            records.push(now_ns(), tenant.as_str(), &source_id, &hdrs, &payload).map_err(ApiError::from)?;
            records.compress(codec);
            Ok((records, permit))
        })
        .await?
    };
    let p = partition_for(tenant.as_str(), &source_id, partitions);
    let mut batches = BTreeMap::new();
    batches.insert(p, PartitionBatch { records, indexes: vec![0] });
    let (mut failed, mut reasons) = (Vec::new(), BTreeMap::new());
    let (accepted, error) =
        append_batches(gw, Kind::Raw, batches, announced, ticket.as_ref(), &mut failed, &mut reasons).await;
    if let Some(e) = error {
        return Err(e);
    }
    count_records(&tenant, Kind::Raw, accepted, &BTreeMap::new());
    let resp = IngestResponse { accepted: 1, rejected: 0, errors: Vec::new(), errors_omitted: 0 };
    if let Some(t) = ticket {
        t.finish(Some(Answer { status: 200, body: resp.clone() }));
    }
    Ok((StatusCode::OK, resp))
}

/// The content type a raw payload is stored with. A form type is what HTTP clients such as curl
/// send when the user named none, not a description of the payload, so it counts as none:
/// `application/octet-stream`.
fn raw_content_type(headers: &HeaderMap) -> String {
    let given = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::trim).unwrap_or("");
    let essence = given.split(';').next().unwrap_or("").trim();
    if essence.is_empty() || essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        "application/octet-stream".to_string()
    } else {
        given.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_content_types_default_to_octet_stream() {
        let ct = |v: Option<&str>| {
            let mut h = HeaderMap::new();
            if let Some(v) = v {
                h.insert(header::CONTENT_TYPE, v.parse().unwrap());
            }
            raw_content_type(&h)
        };
        assert_eq!(ct(None), "application/octet-stream");
        assert_eq!(ct(Some("application/x-www-form-urlencoded")), "application/octet-stream");
        assert_eq!(ct(Some("Application/X-WWW-Form-Urlencoded; charset=utf-8")), "application/octet-stream");
        assert_eq!(ct(Some("application/x-core-dump")), "application/x-core-dump");
        assert_eq!(ct(Some("text/plain; charset=utf-8")), "text/plain; charset=utf-8");
    }
}
