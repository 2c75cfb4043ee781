//! Elasticsearch's bulk API, so that the clients and agents that ship to Elasticsearch (its
//! language clients, Filebeat, Fluent Bit, Vector, syslog-ng's `elasticsearch-http()`) ship to
//! Strata: `POST /_bulk` and `/{index}/_bulk`, and `GET /` with a version document. Every answer
//! carries `X-Elastic-Product: Elasticsearch`, which the clients check.
//!
//! `index` and `create` actions become log lines, or events when the index name starts with
//! `events`; a request holds one of the two: events go to `/{events index}/_bulk`. `update` and
//! `delete` are refused per item: the log is append-only. A document maps to a line by the
//! usual names: `@timestamp` (or `timestamp`, syslog-ng's `ISODATE`), `message` (`MESSAGE`,
//! `msg`, `log`; absent: the document as JSON), `log.level` (`level`, `severity`, `PRIORITY`),
//! the source from `host.name` (`host`, `HOST`, `hostname`, `source_id`; absent: the index name),
//! `service.name` (`service`, `PROGRAM`), `trace.id` (`trace_id`); the rest, with `_index` and
//! `_id`, become attributes. An event takes `type` (else the index name) and `event_id` (else
//! `_id`); its other fields become `data`.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use strata_model::{Kind, Limits, RecordError, TenantId};

use crate::body::{Encoding, decompress};
use crate::ingest::{Decoded, ingest_decoded, now_ns};
use crate::{ApiError, Gateway};

/// The Elasticsearch version Strata answers as: what current clients and agents expect.
const VERSION: &str = "8.17.0";

/// `GET /`: the version document clients and agents read before they send.
pub(crate) async fn root() -> Response {
    product(
        StatusCode::OK,
        json!({
            "name": "strata",
            "cluster_name": "strata",
            "cluster_uuid": "strata",
            "version": {
                "number": VERSION,
                "build_flavor": "default",
                "build_type": "strata",
                "lucene_version": "9.12.0",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0"
            },
            "tagline": "You Know, for Search"
        }),
    )
}

pub(crate) async fn bulk(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    bulk_into(gw, None, headers, body).await
}

pub(crate) async fn bulk_index(
    State(gw): State<Arc<Gateway>>,
    Path(index): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    bulk_into(gw, Some(index), headers, body).await
}

/// What became of one action, for its item in the answer.
#[derive(Debug, Clone)]
struct Item {
    action: &'static str,
    index: String,
    id: String,
    /// Why it was refused, as Elasticsearch's error type and reason.
    refused: Option<(&'static str, String)>,
}

async fn bulk_into(gw: Arc<Gateway>, path_index: Option<String>, headers: HeaderMap, body: Body) -> Response {
    let started = std::time::Instant::now();
    let items: Arc<Mutex<Vec<Item>>> = Arc::default();
    let result = ingest(&gw, path_index, &headers, body, items.clone()).await;
    let response = match result {
        Ok(errors) => {
            let items = std::mem::take(&mut *items.lock().expect("bulk items"));
            answer(items, &errors, started)
        }
        Err(e) => error(e),
    };
    metrics::counter!("strata_ingest_requests_total", "kind" => "elasticsearch_bulk", "status" => response.status().as_str().to_string())
        .increment(1);
    metrics::histogram!("strata_ingest_request_seconds", "kind" => "elasticsearch_bulk")
        .record(started.elapsed().as_secs_f64());
    response
}

/// Ingests the request's documents; returns the items that could not be appended (retryable).
async fn ingest(
    gw: &Arc<Gateway>,
    path_index: Option<String>,
    headers: &HeaderMap,
    body: Body,
    items: Arc<Mutex<Vec<Item>>>,
) -> Result<Vec<usize>, ApiError> {
    let encoding = Encoding::from_headers(headers)?;
    check_content_type(headers)?;
    let kind = kind_of(path_index.as_deref().unwrap_or(""));
    let (_, _, retry) =
        ingest_decoded(gw, kind, headers, body, true, move |gw, raw, permit, tenant, partitions, out| {
            let body = decompress(raw, encoding, gw.cfg.decompressed_bytes_max, |n| gw.grow(permit, n))?;
            let (decoded, parsed) =
                decode(&body, kind, path_index.as_deref(), tenant, &gw.cfg.record, partitions, out)?;
            *items.lock().expect("bulk items") = parsed;
            Ok(decoded)
        })
        .await?;
    Ok(retry)
}

/// Events indexes (`events*`) hold events; every other index holds log lines.
fn kind_of(index: &str) -> Kind {
    if index.starts_with("events") { Kind::Events } else { Kind::Logs }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/x-ndjson");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "application/x-ndjson"
        | "application/json"
        | "application/vnd.elasticsearch+x-ndjson"
        | "application/vnd.elasticsearch+json"
        | "text/plain"
        | "" => Ok(()),
        other => {
            Err(ApiError::unsupported(format!("content type {other:?} is not a bulk body; use application/x-ndjson")))
        }
    }
}

/// Reads the bulk body: one action line, then (for `index`, `create` and `update`) one document line.
fn decode(
    body: &[u8],
    kind: Kind,
    path_index: Option<&str>,
    tenant: &TenantId,
    limits: &Limits,
    partitions: u32,
    mut out: Decoded,
) -> Result<(Decoded, Vec<Item>), ApiError> {
    let now = now_ns();
    let mut items = Vec::new();
    let mut lines = body.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).enumerate();
    let mut payload = Vec::with_capacity(1024);
    while let Some((n, line)) = lines.next() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let action: Map<String, Value> = serde_json::from_slice(line)
            .map_err(|e| ApiError::bad_request(format!("line {}: an action must be a JSON object: {e}", n + 1)))?;
        let Some((name, meta)) = action.into_iter().next() else {
            return Err(ApiError::bad_request(format!(
                "line {}: an action must name index, create, update or delete",
                n + 1
            )));
        };
        let action = match name.as_str() {
            "index" => "index",
            "create" => "create",
            "update" => "update",
            "delete" => "delete",
            other => {
                return Err(ApiError::bad_request(format!(
                    "line {}: unknown action {other:?}; use index, create, update or delete",
                    n + 1
                )));
            }
        };
        let index = meta.get("_index").and_then(Value::as_str).or(path_index).unwrap_or("").to_string();
        let given_id = meta.get("_id").and_then(Value::as_str).map(str::to_string);
        let id = given_id.clone().unwrap_or_else(new_id);
        let document = if action == "delete" {
            None
        } else {
            let Some((_, doc)) = lines.next().filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace)) else {
                return Err(ApiError::bad_request(format!("line {}: the {action} action has no document line", n + 1)));
            };
            Some(doc)
        };
        let item_index = items.len();
        out.total += 1;
        let mut item = Item { action, index: index.clone(), id, refused: None };
        let this_kind = kind_of(&index);
        let result = match (action, document) {
            ("update" | "delete", _) => Err((
                "illegal_argument_exception",
                format!("{action} is not supported: Strata's logs and events are append-only"),
            )),
            _ if index.is_empty() => Err(("action_request_validation_exception", "index is missing".to_string())),
            _ if this_kind != kind => Err((
                "illegal_argument_exception",
                format!("documents of {} indexes go to /{{index}}/_bulk of such an index", this_kind.as_str()),
            )),
            (_, Some(doc)) => serde_json::from_slice::<Value>(doc)
                .map_err(|e| RecordError::Json(e.to_string()))
                .and_then(|doc| match this_kind {
                    Kind::Events => event(doc, &index, given_id.as_deref(), now, limits, &mut payload),
                    _ => log_line(doc, &index, given_id.as_deref(), now, limits, &mut payload),
                })
                .map_err(|e| ("document_parsing_exception", e.to_string())),
            (_, None) => unreachable!("index and create actions have a document"),
        };
        match result {
            Ok((source_id, ts)) => out.push(item_index, tenant, &source_id, ts, &payload, partitions),
            Err((kind, reason)) => {
                out.errors.push((item_index, RecordError::Unsupported("bulk item")));
                item.refused = Some((kind, reason));
            }
        }
        // Each item is answered: what it takes until then, twice over for the vector's slack.
        let item_bytes = std::mem::size_of::<Item>()
            + item.index.len()
            + item.id.len()
            + item.refused.as_ref().map_or(0, |(_, reason)| reason.len());
        out.budget.spend(2 * item_bytes)?;
        items.push(item);
    }
    Ok((out, items))
}

/// Removes the first of `names` present in `doc` (a dotted name also as nested objects).
fn take(doc: &mut Map<String, Value>, names: &[&str]) -> Option<Value> {
    for name in names {
        if let Some(v) = doc.remove(*name) {
            return Some(v);
        }
        if let Some((outer, inner)) = name.split_once('.')
            && let Some(Value::Object(o)) = doc.get_mut(outer)
            && let Some(v) = o.remove(inner)
        {
            if o.is_empty() {
                doc.remove(outer);
            }
            return Some(v);
        }
    }
    None
}

fn take_string(doc: &mut Map<String, Value>, names: &[&str]) -> Option<String> {
    match take(doc, names)? {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::String(_) | Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn log_line(
    doc: Value,
    index: &str,
    id: Option<&str>,
    now: i64,
    limits: &Limits,
    payload: &mut Vec<u8>,
) -> Result<(String, i64), RecordError> {
    let Value::Object(mut doc) = doc else {
        return Err(RecordError::NotAnObject("a document that is not an object"));
    };
    let mut line = Map::new();
    // syslog-ng's default template sends its ISODATE twice, as it is and as @timestamp.
    let names = ["@timestamp", "timestamp", "ISODATE"];
    if let Some(t) = take(&mut doc, &names) {
        line.insert("timestamp".into(), t);
        names.iter().for_each(|n| drop(take(&mut doc, &[n])));
    }
    let source = take_string(&mut doc, &["host.name", "host.hostname", "HOST", "hostname", "source_id"])
        .or_else(|| match doc.get("host") {
            Some(Value::String(_)) => take_string(&mut doc, &["host"]),
            _ => None,
        })
        .unwrap_or_else(|| index.to_string());
    line.insert("host".into(), Value::String(source.clone()));
    line.insert("source_id".into(), Value::String(source));
    if let Some(level) = take_string(&mut doc, &["log.level", "level", "severity", "PRIORITY"]) {
        line.insert("level".into(), Value::String(level));
    }
    if let Some(service) = take_string(&mut doc, &["service.name", "PROGRAM"]).or_else(|| match doc.get("service") {
        Some(Value::String(_)) => take_string(&mut doc, &["service"]),
        _ => None,
    }) {
        line.insert("service".into(), Value::String(service));
    }
    if let Some(trace) = take_string(&mut doc, &["trace.id", "trace_id"]) {
        line.insert("trace_id".into(), Value::String(trace));
    }
    let message = match take(&mut doc, &["message", "MESSAGE", "msg", "log"]) {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => Value::Object(doc.clone()).to_string(),
    };
    line.insert("message".into(), Value::String(message));
    doc.insert("_index".into(), Value::from(index));
    if let Some(id) = id {
        doc.insert("_id".into(), Value::from(id));
    }
    line.insert("attributes".into(), Value::Object(doc));
    let l = strata_model::normalize_log(Value::Object(line), now, limits)?;
    payload.clear();
    l.write_stored(payload);
    Ok((l.source_id, l.timestamp_ns))
}

fn event(
    doc: Value,
    index: &str,
    id: Option<&str>,
    now: i64,
    limits: &Limits,
    payload: &mut Vec<u8>,
) -> Result<(String, i64), RecordError> {
    let Value::Object(mut doc) = doc else {
        return Err(RecordError::NotAnObject("a document that is not an object"));
    };
    let mut event = Map::new();
    if let Some(t) = take(&mut doc, &["@timestamp", "timestamp"]) {
        event.insert("timestamp".into(), t);
    }
    let event_type = take_string(&mut doc, &["type", "event.type"]).unwrap_or_else(|| index.to_string());
    event.insert("type".into(), Value::String(event_type));
    let source = take_string(&mut doc, &["source_id", "host.name", "hostname"])
        .or_else(|| match doc.get("host") {
            Some(Value::String(_)) => take_string(&mut doc, &["host"]),
            _ => None,
        })
        .unwrap_or_else(|| index.to_string());
    event.insert("source_id".into(), Value::String(source));
    if let Some(event_id) = take_string(&mut doc, &["event_id", "event.id"]).or_else(|| id.map(str::to_string)) {
        event.insert("event_id".into(), Value::String(event_id));
    }
    event.insert("data".into(), Value::Object(doc));
    let e = strata_model::normalize_event(Value::Object(event), now, limits)?;
    payload.clear();
    serde_json::to_writer(&mut *payload, &e).expect("events serialise");
    Ok((e.source_id, e.timestamp_ns))
}

fn new_id() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 15];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Elasticsearch's answer: `errors`, and one item per action, in order; `retryable` is sorted.
/// Written item by item straight into the body: a tree of JSON values took about 4.6 KB an item
/// (2.6 GB for the half million items of a 7 MB body of deletes), the text takes about 200 bytes.
fn answer(items: Vec<Item>, retryable: &[usize], started: std::time::Instant) -> Response {
    #[derive(serde::Serialize)]
    struct Shards {
        total: u32,
        successful: u32,
        failed: u32,
    }
    #[derive(serde::Serialize)]
    struct Created<'a> {
        _index: &'a str,
        _id: &'a str,
        _version: u32,
        result: &'static str,
        _shards: Shards,
        _seq_no: u64,
        _primary_term: u32,
        status: u16,
    }
    #[derive(serde::Serialize)]
    struct Cause<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        reason: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Failed<'a> {
        _index: &'a str,
        _id: &'a str,
        status: u16,
        error: Cause<'a>,
    }
    const REJECTED: &str = "es_rejected_execution_exception";
    const RETRY: &str = "the log could not take the document now; retry";
    let took = started.elapsed().as_millis() as u64;
    let errors = !retryable.is_empty() || items.iter().any(|i| i.refused.is_some());
    let mut out = Vec::with_capacity(64 + items.len() * 200);
    out.extend_from_slice(format!("{{\"took\":{took},\"errors\":{errors},\"items\":[").as_bytes());
    let mut seq_no = 0u64;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'{');
        strata_model::write_json_str(&mut out, item.action);
        out.push(b':');
        let refused = match &item.refused {
            Some((kind, reason)) => Some((*kind, reason.as_str())),
            None => retryable.binary_search(&i).is_ok().then_some((REJECTED, RETRY)),
        };
        let written = match refused {
            None => {
                seq_no += 1;
                let shards = Shards { total: 1, successful: 1, failed: 0 };
                serde_json::to_writer(
                    &mut out,
                    &Created {
                        _index: &item.index,
                        _id: &item.id,
                        _version: 1,
                        result: "created",
                        _shards: shards,
                        _seq_no: seq_no - 1,
                        _primary_term: 1,
                        status: 201,
                    },
                )
            }
            Some((kind, reason)) => {
                let status = if kind == REJECTED { 429 } else { 400 };
                let error = Cause { kind, reason };
                serde_json::to_writer(&mut out, &Failed { _index: &item.index, _id: &item.id, status, error })
            }
        };
        written.expect("writing to a Vec cannot fail");
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    drop(items);
    let mut resp =
        (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], out).into_response();
    resp.headers_mut().insert("x-elastic-product", HeaderValue::from_static("Elasticsearch"));
    resp
}

/// A request-level error in Elasticsearch's shape, with its status (and `Retry-After`).
fn error(e: ApiError) -> Response {
    let kind = match e.status {
        StatusCode::UNAUTHORIZED => "security_exception",
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => "es_rejected_execution_exception",
        StatusCode::PAYLOAD_TOO_LARGE => "content_too_long_exception",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "media_type_header_exception",
        _ if e.status.is_server_error() => "exception",
        _ => "illegal_argument_exception",
    };
    let cause = json!({"type": kind, "reason": e.message});
    let mut resp = product(
        e.status,
        json!({"error": {"root_cause": [cause.clone()], "type": kind, "reason": e.message}, "status": e.status.as_u16()}),
    );
    if let Some(s) = e.retry_after_s {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    if e.status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("ApiKey, Basic realm=\"strata\""));
    }
    resp
}

fn product(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut().insert("x-elastic-product", HeaderValue::from_static("Elasticsearch"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use strata_log::{
        AppendAck, Codec, EmbeddedLog, EncodedRecords, GroupOffset, Log, LogConfig, ReadResult, RetentionRemoved,
        TopicInfo,
    };

    /// A log of two partitions per topic whose partition 1 refuses every append.
    struct HalfDown(EmbeddedLog);

    #[async_trait::async_trait]
    impl Log for HalfDown {
        fn topics(&self) -> Vec<TopicInfo> {
            self.0.topics()
        }
        fn partition_count(&self, topic: &str) -> strata_log::Result<u32> {
            self.0.partition_count(topic)
        }
        fn codec(&self, topic: &str) -> strata_log::Result<Codec> {
            self.0.codec(topic)
        }
        fn end_offset(&self, topic: &str, partition: u32) -> strata_log::Result<u64> {
            self.0.end_offset(topic, partition)
        }
        async fn append(&self, topic: &str, partition: u32, records: EncodedRecords) -> strata_log::Result<AppendAck> {
            if partition == 1 {
                return Err(strata_log::Error::Overloaded { topic: topic.to_string(), partition });
            }
            self.0.append(topic, partition, records).await
        }
        fn read(&self, topic: &str, partition: u32, offset: u64, bytes_max: u64) -> strata_log::Result<ReadResult> {
            self.0.read(topic, partition, offset, bytes_max)
        }
        async fn wait_for(&self, topic: &str, partition: u32, offset: u64, t: Duration) -> strata_log::Result<u64> {
            self.0.wait_for(topic, partition, offset, t).await
        }
        fn offset_for_time(&self, topic: &str, partition: u32, append_ms: i64) -> strata_log::Result<u64> {
            self.0.offset_for_time(topic, partition, append_ms)
        }
        async fn commit_offsets(&self, group: &str, offsets: &[GroupOffset]) -> strata_log::Result<()> {
            self.0.commit_offsets(group, offsets).await
        }
        fn committed_offsets(&self, group: &str) -> strata_log::Result<Vec<GroupOffset>> {
            self.0.committed_offsets(group)
        }
        fn groups(&self) -> Vec<String> {
            self.0.groups()
        }
        async fn enforce_retention(&self, now_ms: i64) -> strata_log::Result<Vec<RetentionRemoved>> {
            self.0.enforce_retention(now_ms).await
        }
    }

    #[tokio::test]
    async fn every_document_a_partition_could_not_take_is_answered_429_past_errors_max() {
        let dir = tempfile::tempdir().unwrap();
        let log = HalfDown(EmbeddedLog::open(LogConfig::new(dir.path().join("log"), 2)).unwrap());
        let (auth, _) = crate::Auth::open(&dir.path().join("meta"), None, true).unwrap();
        let registry = Arc::new(strata_model::SeriesRegistry::new(60));
        let gw = crate::Gateway::new(Arc::new(log), Arc::new(auth), Default::default(), None, registry);
        let tenant = gw.auth.tenant(&HeaderMap::new()).unwrap();
        // 150 documents that cannot be taken (more than errors_max, 100) before 300 good ones
        // spread over both partitions.
        let mut body = String::new();
        for i in 0..150 {
            body.push_str(&format!("{{\"update\":{{\"_index\":\"app\",\"_id\":\"u{i}\"}}}}\n{{}}\n"));
        }
        let sources: Vec<String> = (0..300).map(|i| format!("host-{}", i % 7)).collect();
        for (i, source) in sources.iter().enumerate() {
            body.push_str(&format!(
                "{{\"create\":{{\"_index\":\"app\"}}}}\n{{\"host\":\"{source}\",\"message\":\"m{i}\"}}\n"
            ));
        }
        let mut headers = HeaderMap::new();
        headers.insert(axum::http::header::CONTENT_TYPE, "application/x-ndjson".parse().unwrap());
        let response = bulk_into(gw.clone(), None, headers, Body::from(body)).await;
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["errors"], true);
        let items = v["items"].as_array().unwrap();
        assert_eq!(items.len(), 450);
        for item in &items[..150] {
            assert_eq!(item["update"]["status"], 400, "{item}");
        }
        let mut down = 0;
        for (item, source) in items[150..].iter().zip(&sources) {
            let want = if strata_model::partition_for(tenant.as_str(), source, 2) == 1 { 429 } else { 201 };
            down += usize::from(want == 429);
            assert_eq!(item["create"]["status"], want, "{source}: {item}");
        }
        assert!(down > 0 && down < 300, "both partitions hold some of the sources ({down} down)");
        let kept: usize = (0..2).map(|p| gw.log.end_offset("logs", p).unwrap() as usize).sum();
        assert_eq!(kept, 300 - down);
    }

    fn run(body: &str, path_index: Option<&str>) -> Result<(Decoded, Vec<Item>), ApiError> {
        decode(
            body.as_bytes(),
            kind_of(path_index.unwrap_or("")),
            path_index,
            &TenantId::new("t").unwrap(),
            &Limits::default(),
            4,
            Decoded::new(None),
        )
    }

    #[test]
    fn actions_pair_with_their_documents_and_refusals_are_per_item() {
        let body = concat!(
            "{\"index\": {\"_index\": \"app-logs\", \"_id\": \"a1\"}}\n",
            "{\"@timestamp\": \"2026-01-02T03:04:05Z\", \"message\": \"disk full\", \"host\": {\"name\": \"web-1\"}, \"log\": {\"level\": \"ERROR\"}}\n",
            "{\"delete\": {\"_index\": \"app-logs\", \"_id\": \"a1\"}}\n",
            "{\"create\": {}}\n",
            "{\"MESSAGE\": \"syslog line\", \"HOST\": \"db-1\", \"PROGRAM\": \"sshd\"}\n",
            "{\"update\": {\"_id\": \"x\"}}\n",
            "{\"doc\": {}}\n",
            "{\"index\": {\"_index\": \"events-orders\"}}\n",
            "{\"amount\": 3}\n",
        );
        let (out, items) = run(body, Some("fallback")).unwrap();
        assert_eq!(out.total, 5);
        assert_eq!(items.len(), 5);
        assert!(items[0].refused.is_none());
        assert_eq!(items[0].id, "a1");
        assert_eq!(items[1].refused.as_ref().unwrap().0, "illegal_argument_exception");
        assert!(items[2].refused.is_none());
        assert_eq!(items[2].index, "fallback");
        assert!(items[3].refused.as_ref().unwrap().1.contains("append-only"));
        assert!(items[4].refused.as_ref().unwrap().1.contains("events indexes go to"));
        assert_eq!(out.batches.values().map(|b| b.records.count()).sum::<u32>(), 2);
        let mut payload = Vec::new();
        let doc = json!({"@timestamp": "2026-01-02T03:04:05Z", "message": "disk full", "host": {"name": "web-1"},
            "log": {"level": "ERROR"}, "user": "ann"});
        let (source, _) = log_line(doc, "app-logs", Some("a1"), now_ns(), &Limits::default(), &mut payload).unwrap();
        assert_eq!(source, "web-1");
        let line: strata_model::LogLine = serde_json::from_slice(&payload).unwrap();
        assert_eq!((line.level.as_str(), line.message.as_str()), ("error", "disk full"));
        assert_eq!(line.attributes["user"], "ann");
        assert_eq!(line.attributes["_index"], "app-logs");
        assert!(!line.attributes.contains_key("host"));
    }

    #[test]
    fn a_broken_action_line_fails_the_request() {
        assert_eq!(run("{nope\n", None).err().unwrap().status, 400);
        assert!(run("{\"index\": {}}\n", None).err().unwrap().message.contains("no document line"));
        assert!(run("{\"upsert\": {}}\n{}\n", None).err().unwrap().message.contains("unknown action"));
    }
}
