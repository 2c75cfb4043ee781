//! The native ingest endpoints: decode, validate and normalise each record, route it to its
//! partition, append, and answer with per-record errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use strata_log::EncodedRecords;
use strata_model::{Kind, Limits, RecordError, TenantId, headers as record_headers, partition_for};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;

use crate::body::{Encoding, decompress};
use crate::{ApiError, Gateway};

/// How records are laid out in a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`: a JSON array of records, or objects one per line.
    Json,
    /// `application/x-ndjson`: one JSON record per line.
    Ndjson,
}

impl Format {
    pub fn from_headers(headers: &HeaderMap) -> Result<Format, ApiError> {
        let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match mime.as_str() {
            "application/json" => Ok(Format::Json),
            "application/x-ndjson" | "application/ndjson" | "application/jsonlines" | "application/x-jsonlines" => {
                Ok(Format::Ndjson)
            }
            "" => Err(ApiError::unsupported("missing content type; use application/json or application/x-ndjson")),
            other => Err(ApiError::unsupported(format!(
                "content type {other:?} is not supported; use application/json or application/x-ndjson"
            ))),
        }
    }
}

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

/// The records of one partition, with the request indexes they came from.
pub(crate) struct PartitionBatch {
    records: EncodedRecords,
    indexes: Vec<usize>,
}

/// Metric samples of one request grouped into one batch record per source (`MetricBatch`).
pub(crate) struct MetricBatches {
    by_source: BTreeMap<String, (strata_model::MetricBatchBuilder, Vec<usize>)>,
    series: Arc<std::sync::Mutex<crate::series::TenantSeries>>,
    now_s: u32,
}

impl MetricBatches {
    pub fn new(gw: &crate::Gateway, tenant: &TenantId) -> MetricBatches {
        MetricBatches {
            by_source: BTreeMap::new(),
            series: gw.series.tenant(tenant.as_str()),
            now_s: crate::series::now_s(),
        }
    }

    /// Adds the samples of one series, validated, with the request indexes they came from; labels
    /// are sorted and without `__name__`. Refused if the series is new and the tenant is at its
    /// limit of active series.
    pub fn add(
        &mut self,
        source_id: &str,
        name: &str,
        labels: &[(&str, &str)],
        samples: &[(i64, f64)],
        indexes: impl Iterator<Item = usize>,
    ) -> Result<(), RecordError> {
        let fp = strata_model::series_fingerprint(name, labels.iter().copied());
        let mut series = self.series.lock().expect("tenant series lock");
        if !series.admit(fp, self.now_s) {
            return Err(RecordError::SeriesLimit(series.max()));
        }
        drop(series);
        self.add_admitted(source_id, name, labels, samples, indexes);
        Ok(())
    }

    /// Admits series by fingerprint against the tenant's active-series limit, in one lock.
    pub fn admit(&self, fingerprints: impl Iterator<Item = u64>) -> Vec<Result<(), RecordError>> {
        let mut series = self.series.lock().expect("tenant series lock");
        let refused = RecordError::SeriesLimit(series.max());
        fingerprints.map(|fp| if series.admit(fp, self.now_s) { Ok(()) } else { Err(refused.clone()) }).collect()
    }

    /// Adds a series that `admit` took, as `add` does.
    pub fn add_admitted(
        &mut self,
        source_id: &str,
        name: &str,
        labels: &[(&str, &str)],
        samples: &[(i64, f64)],
        indexes: impl Iterator<Item = usize>,
    ) {
        let entry = match self.by_source.get_mut(source_id) {
            Some(e) => e,
            None => self
                .by_source
                .entry(source_id.to_string())
                .or_insert_with(|| (strata_model::MetricBatchBuilder::new(), Vec::new())),
        };
        entry.0.add_series(name, labels.iter().copied(), samples);
        entry.1.extend(indexes);
    }

    /// One record per source into `out`.
    pub fn finish(self, out: &mut Decoded, tenant: &TenantId, partitions: u32) {
        for (source_id, (batch, indexes)) in self.by_source {
            let ts_ns = batch.max_ts_ms().saturating_mul(1_000_000);
            out.push_many(indexes, tenant, &source_id, ts_ns, &batch.finish(), partitions);
        }
    }
}

/// A decoded and validated body, ready to append.
pub(crate) struct Decoded {
    pub batches: BTreeMap<u32, PartitionBatch>,
    pub total: usize,
    pub errors: Vec<(usize, RecordError)>,
}

impl Decoded {
    pub fn new() -> Decoded {
        Decoded { batches: BTreeMap::new(), total: 0, errors: Vec::new() }
    }

    /// Adds one valid record's stored form to its partition's batch.
    pub fn push(
        &mut self,
        index: usize,
        tenant: &TenantId,
        source_id: &str,
        timestamp_ns: i64,
        payload: &[u8],
        partitions: u32,
    ) {
        self.push_many(std::iter::once(index), tenant, source_id, timestamp_ns, payload, partitions)
    }

    /// Adds one record that carries the items `indexes` of the request (a metric batch).
    pub fn push_many(
        &mut self,
        indexes: impl IntoIterator<Item = usize>,
        tenant: &TenantId,
        source_id: &str,
        timestamp_ns: i64,
        payload: &[u8],
        partitions: u32,
    ) {
        let p = partition_for(tenant.as_str(), source_id, partitions);
        let batch = self
            .batches
            .entry(p)
            .or_insert_with(|| PartitionBatch { records: EncodedRecords::new(), indexes: Vec::new() });
        match batch.records.push(timestamp_ns, tenant.as_str(), source_id, &[], payload) {
            Ok(()) => batch.indexes.extend(indexes),
            Err(_) => {
                let e = RecordError::TooLong { field: "record".into(), len: payload.len(), max: u32::MAX as usize };
                self.errors.extend(indexes.into_iter().map(|i| (i, e.clone())));
            }
        }
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// Normalises one record and appends its stored form to `payload`; returns its source and time.
fn normalize(
    kind: Kind,
    v: Value,
    now_ns: i64,
    limits: &Limits,
    payload: &mut Vec<u8>,
) -> Result<(String, i64), RecordError> {
    payload.clear();
    let out = match kind {
        Kind::Logs => {
            let l = strata_model::normalize_log(v, now_ns, limits)?;
            serde_json::to_writer(&mut *payload, &l).map(|()| (l.source_id, l.timestamp_ns))
        }
        Kind::Events => {
            let e = strata_model::normalize_event(v, now_ns, limits)?;
            serde_json::to_writer(&mut *payload, &e).map(|()| (e.source_id, e.timestamp_ns))
        }
        // `decode` refuses both before any record: metric points are stored as metric batches
        // (the only form the metric store reads), raw payloads as they are.
        Kind::Metrics | Kind::Raw => unreachable!("metrics and raw payloads are not stored as JSON records"),
    };
    Ok(out.expect("normalised records serialise"))
}

/// Decodes a JSON or NDJSON body into per-partition batches. CPU-bound: runs on a blocking thread.
/// Metric points go into `metrics`, one batch record per source.
fn decode(
    kind: Kind,
    tenant: &TenantId,
    body: &[u8],
    format: Format,
    limits: &Limits,
    partitions: u32,
    mut metrics: Option<MetricBatches>,
) -> Result<Decoded, ApiError> {
    if (kind == Kind::Metrics) != metrics.is_some() || kind == Kind::Raw {
        return Err(ApiError::internal(format!("{kind:?} records cannot be decoded as JSON records")));
    }
    let now = now_ns();
    let mut out = Decoded::new();
    let mut payload = Vec::with_capacity(2048);
    let mut handle = |out: &mut Decoded, index: usize, parsed: Result<Value, RecordError>| {
        out.total += 1;
        if let Some(batches) = metrics.as_mut() {
            let added = parsed.and_then(|v| strata_model::normalize_metric(v, now, limits)).and_then(|m| {
                let labels: Vec<(&str, &str)> = m.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let ts_ms = m.timestamp_ns.div_euclid(1_000_000);
                batches.add(&m.source_id, &m.name, &labels, &[(ts_ms, m.value)], std::iter::once(index))
            });
            if let Err(e) = added {
                out.errors.push((index, e));
            }
            return;
        }
        let result = parsed.and_then(|v| normalize(kind, v, now, limits, &mut payload));
        match result {
            Ok((source_id, ts)) => out.push(index, tenant, &source_id, ts, &payload, partitions),
            Err(e) => out.errors.push((index, e)),
        }
    };
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if format == Format::Json && first == Some(b'[') {
        let mut index = 0usize;
        let mut de = serde_json::Deserializer::from_slice(body);
        let visitor = EachElement(|v: Value| {
            handle(&mut out, index, Ok(v));
            index += 1;
        });
        serde::Deserializer::deserialize_seq(&mut de, visitor)
            .and_then(|()| de.end())
            .map_err(|e| ApiError::bad_request(json_error_message(body, &e)))?;
    } else {
        let mut index = 0usize;
        for line in body.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let parsed = serde_json::from_slice::<Value>(line).map_err(|e| RecordError::Json(strip_position(&e)));
            handle(&mut out, index, parsed);
            index += 1;
        }
    }
    if let Some(batches) = metrics {
        batches.finish(&mut out, tenant, partitions);
    }
    Ok(out)
}

struct EachElement<F>(F);

impl<'de, F: FnMut(Value)> serde::de::Visitor<'de> for EachElement<F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of records")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element::<Value>()? {
            (self.0)(v);
        }
        Ok(())
    }
}

fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// "invalid JSON at byte N (line L, column C): reason", with N counted from 0.
fn json_error_message(body: &[u8], e: &serde_json::Error) -> String {
    let (line, column) = (e.line(), e.column());
    let line_start: usize = body.split(|&b| b == b'\n').take(line.saturating_sub(1)).map(|l| l.len() + 1).sum();
    let byte = (line_start + column.saturating_sub(1)).min(body.len());
    format!("invalid JSON at byte {byte} (line {line}, column {column}): {}", strip_position(e))
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
    ingest_decoded(gw, kind, headers, body, false, move |gw, raw, permit, tenant, partitions| {
        let body = decompress(raw, encoding, gw.cfg.decompressed_bytes_max, |n| gw.grow(permit, n))?;
        // The encoded records take about as much memory as the body they come from.
        gw.grow(permit, body.len())?;
        let metrics = (kind == Kind::Metrics).then(|| MetricBatches::new(gw, tenant));
        decode(kind, tenant, &body, format, &gw.cfg.record, partitions, metrics)
    })
    .await
}

/// What every record ingest path shares once it knows how to decode a body: authentication, the
/// memory budget, the body limit, rate limits, appending, counting and the answer. `decode` runs
/// on a blocking thread with the raw body, and may grow the request's memory share.
pub(crate) async fn ingest_decoded<F>(
    gw: &Arc<Gateway>,
    kind: Kind,
    headers: &HeaderMap,
    body: Body,
    empty_ok: bool,
    decode: F,
) -> Result<(StatusCode, IngestResponse), ApiError>
where
    F: FnOnce(&Gateway, Vec<u8>, &mut OwnedSemaphorePermit, &TenantId, u32) -> Result<Decoded, ApiError>
        + Send
        + 'static,
{
    let tenant = gw.auth.tenant(headers)?;
    let mut permit = gw.reserve_body(headers).await?;
    let raw = gw.read_body(body, headers).await?;
    gw.rate.take(&tenant, 0, raw.len() as u64).map_err(|wait| {
        ApiError::rate_limited(format!("tenant {tenant} is over its ingest rate of bytes per second"), wait)
    })?;
    count_bytes(&tenant, kind, raw.len());
    let partitions = gw.log.partition_count(kind.topic())?;
    let codec = gw.log.codec(kind.topic())?;
    let (decoded, _permit) = {
        let tenant = tenant.clone();
        let worker = gw.clone();
        gw.decode_blocking(move || {
            let mut decoded = decode(&worker, raw, &mut permit, &tenant, partitions)?;
            // Compressed here, on a blocking thread and in parallel, not by the partition's writer.
            for batch in decoded.batches.values_mut() {
                batch.records.compress(codec);
            }
            Ok((decoded, permit))
        })
        .await?
    };
    if decoded.total == 0 && empty_ok {
        return Ok((
            StatusCode::OK,
            IngestResponse { accepted: 0, rejected: 0, errors: Vec::new(), errors_omitted: 0 },
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
    let mut errors: Vec<ItemError> = Vec::new();
    let mut reasons: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (index, e) in &decoded.errors {
        *reasons.entry(e.reason()).or_default() += 1;
        errors.push(ItemError { index: *index, error: e.to_string(), retryable: false });
    }
    let (accepted, append_error) = append_batches(gw, kind, decoded.batches, &mut errors, &mut reasons).await;
    if accepted == 0
        && let Some(e) = append_error
    {
        // Nothing was appended because the log could not take it: the whole request may be retried.
        count_records(&tenant, kind, 0, &reasons);
        return Err(e);
    }
    count_records(&tenant, kind, accepted, &reasons);
    errors.sort_by_key(|e| e.index);
    let rejected = errors.len();
    let omitted = rejected.saturating_sub(gw.cfg.errors_max);
    errors.truncate(gw.cfg.errors_max);
    let resp = IngestResponse { accepted, rejected, errors, errors_omitted: omitted };
    let status = if accepted == 0 { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok((status, resp))
}

/// Appends every partition's batch concurrently. Records of a partition whose append failed become
/// retryable per-record errors. Returns the number appended and the last append error.
async fn append_batches(
    gw: &Arc<Gateway>,
    kind: Kind,
    batches: BTreeMap<u32, PartitionBatch>,
    errors: &mut Vec<ItemError>,
    reasons: &mut BTreeMap<&'static str, u64>,
) -> (usize, Option<ApiError>) {
    let mut set = JoinSet::new();
    for (p, batch) in batches {
        let log = gw.log.clone();
        set.spawn(async move {
            let n = batch.indexes.len();
            let r = log.append(kind.topic(), p, batch.records).await;
            (r.map(|_| n), batch.indexes)
        });
    }
    let mut accepted = 0;
    let mut last_err = None;
    while let Some(joined) = set.join_next().await {
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
                tracing::warn!(kind = %kind, error = %e, records = indexes.len(), "append failed");
                let api: ApiError = e.into();
                *reasons.entry("log_unavailable").or_default() += indexes.len() as u64;
                for index in indexes {
                    errors.push(ItemError { index, error: api.message.clone(), retryable: true });
                }
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
    let mut permit = gw.reserve_body(headers).await?;
    let raw = gw.read_body(body, headers).await?;
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
            let hdrs: [(&str, &[u8]); 2] =
                [(record_headers::STREAM, stream.as_bytes()), (record_headers::CONTENT_TYPE, content_type.as_bytes())];
            records.push(now_ns(), tenant.as_str(), &source_id, &hdrs, &payload).map_err(ApiError::from)?;
            records.compress(codec);
            Ok((records, permit))
        })
        .await?
    };
    let p = partition_for(tenant.as_str(), &source_id, partitions);
    gw.log.append(Kind::Raw.topic(), p, records).await?;
    count_records(&tenant, Kind::Raw, 1, &BTreeMap::new());
    Ok((StatusCode::OK, IngestResponse { accepted: 1, rejected: 0, errors: Vec::new(), errors_omitted: 0 }))
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
    use serde_json::json;

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

    fn run(kind: Kind, body: &str, format: Format) -> Result<Decoded, ApiError> {
        decode(kind, &TenantId::new("t").unwrap(), body.as_bytes(), format, &Limits::default(), 4, None)
    }

    #[test]
    fn ndjson_keeps_good_records_and_names_bad_ones() {
        let body = format!(
            "{}\n\n{{not json\n{}\r\n[1]\n",
            json!({"source_id": "a", "message": "one"}),
            json!({"source_id": "b", "message": "two"})
        );
        let d = run(Kind::Logs, &body, Format::Ndjson).unwrap();
        assert_eq!(d.total, 4);
        let accepted: usize = d.batches.values().map(|b| b.indexes.len()).sum();
        assert_eq!(accepted, 2);
        let errs: Vec<(usize, String)> = d.errors.iter().map(|(i, e)| (*i, e.to_string())).collect();
        assert_eq!(errs[0].0, 1);
        assert!(errs[0].1.starts_with("record is not valid JSON: key must be a string"), "{}", errs[0].1);
        assert_eq!(errs[1], (3, "record must be a JSON object, got an array".to_string()));
    }

    #[test]
    fn metric_points_are_only_ever_stored_as_metric_batches() {
        // The metric store reads metric batches only: a JSON form would be stored and never read.
        let err = run(Kind::Metrics, r#"[{"name": "up", "value": 1, "source_id": "a"}]"#, Format::Json).err().unwrap();
        assert_eq!(err.status, 500);
        assert!(run(Kind::Raw, "x", Format::Ndjson).is_err());
    }

    #[test]
    fn a_broken_array_names_the_byte() {
        let err =
            run(Kind::Logs, "[{\"source_id\": \"a\", \"message\": \"m\"},\n {\"a\": }]", Format::Json).err().unwrap();
        assert_eq!(err.status, 400);
        assert!(err.message.starts_with("invalid JSON at byte 44 (line 2, column 8)"), "{}", err.message);
        let err = run(Kind::Logs, "[{}", Format::Json).err().unwrap();
        assert!(
            err.message.starts_with("invalid JSON at byte 2 (line 1, column 3): EOF while parsing a list"),
            "{}",
            err.message
        );
    }

    #[test]
    fn one_source_goes_to_one_partition() {
        let body: Vec<Value> = (0..50).map(|i| json!({"source_id": format!("s{}", i % 3), "message": "m"})).collect();
        let d = run(Kind::Logs, &serde_json::to_string(&body).unwrap(), Format::Json).unwrap();
        let total: u32 = d.batches.values().map(|b| b.records.count()).sum();
        assert_eq!(total, 50);
        for s in 0..3 {
            let p = partition_for("t", &format!("s{s}"), 4);
            assert!(d.batches.contains_key(&p));
        }
        assert!(d.batches.len() <= 3);
    }
}
