//! OpenTelemetry's OTLP, logs and metrics: over HTTP (`POST /v1/logs`, `/v1/metrics`, protobuf or
//! JSON, answered in the encoding of the request) and over gRPC (the collector's `Export`
//! services). gRPC is served by the gateway's own router over HTTP/2, on the HTTP port and on the
//! OTLP gRPC port alike, so both transports go through the same authentication, limits, memory
//! budget and durable acknowledgement as every other ingest path.
//!
//! Answers follow the OTLP specification: a request that decodes is answered with success, and
//! the records refused one by one are counted in `partial_success` with the first reasons; a body
//! that does not decode is a 400 (gRPC `INVALID_ARGUMENT`) with a `google.rpc.Status`; overload is
//! a 429 or 503 with `Retry-After` (gRPC `RESOURCE_EXHAUSTED` or `UNAVAILABLE` with a
//! `google.rpc.RetryInfo`), which exporters retry.

mod logs;
mod logs_wire;
mod metrics;
mod status;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::Frame;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use strata_model::Kind;

use crate::body::{Encoding, decompress};
use crate::ingest::{IngestResponse, MetricBatches, ingest_decoded};
use crate::{ApiError, Gateway};

pub(crate) const GRPC_LOGS: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
pub(crate) const GRPC_METRICS: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
pub(crate) const GRPC_TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Logs,
    Metrics,
}

impl Signal {
    fn kind(self) -> Kind {
        match self {
            Signal::Logs => Kind::Logs,
            Signal::Metrics => Kind::Metrics,
        }
    }

    fn items(self) -> &'static str {
        match self {
            Signal::Logs => "log records",
            Signal::Metrics => "data points",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Signal::Logs => "otlp_logs",
            Signal::Metrics => "otlp_metrics",
        }
    }
}

/// How a request's message travels, and so how its answer must.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Protobuf,
    Json,
    Grpc,
}

impl Wire {
    fn of_http(headers: &HeaderMap) -> Result<Wire, ApiError> {
        let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        match ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str() {
            "application/x-protobuf" | "application/protobuf" => Ok(Wire::Protobuf),
            "application/json" => Ok(Wire::Json),
            other => Err(ApiError::unsupported(format!(
                "content type {other:?} is not an OTLP encoding; use application/x-protobuf or application/json"
            ))),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Wire::Protobuf => "application/x-protobuf",
            Wire::Json => "application/json",
            Wire::Grpc => "application/grpc",
        }
    }
}

pub(crate) async fn http_logs(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    let wire = Wire::of_http(&headers);
    export(gw, Signal::Logs, wire, headers, body).await
}

pub(crate) async fn http_metrics(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    let wire = Wire::of_http(&headers);
    export(gw, Signal::Metrics, wire, headers, body).await
}

pub(crate) async fn grpc_logs(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    export(gw, Signal::Logs, Ok(Wire::Grpc), headers, body).await
}

pub(crate) async fn grpc_metrics(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    export(gw, Signal::Metrics, Ok(Wire::Grpc), headers, body).await
}

/// Traces are not stored: said plainly, so that a collector's traces pipeline fails visibly.
pub(crate) async fn http_traces(headers: HeaderMap) -> Response {
    let wire = Wire::of_http(&headers).unwrap_or(Wire::Json);
    failure(wire, ApiError::new(StatusCode::NOT_IMPLEMENTED, "Strata does not store traces; export logs and metrics"))
}

pub(crate) async fn grpc_traces() -> Response {
    failure(
        Wire::Grpc,
        ApiError::new(StatusCode::NOT_IMPLEMENTED, "Strata does not store traces; export logs and metrics"),
    )
}

async fn export(
    gw: Arc<Gateway>,
    signal: Signal,
    wire: Result<Wire, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let (wire, result) = match wire {
        Ok(w) => (w, ingest(&gw, signal, w, &headers, body).await),
        Err(e) => (Wire::Json, Err(e)),
    };
    let response = match result {
        Ok(r) => success(signal, wire, &r),
        Err(e) => failure(wire, e),
    };
    let status = match response.headers().get("grpc-status").and_then(|v| v.to_str().ok()) {
        Some(code) => format!("grpc_{code}"),
        None => response.status().as_str().to_string(),
    };
    ::metrics::counter!("strata_ingest_requests_total", "kind" => signal.label(), "status" => status).increment(1);
    ::metrics::histogram!("strata_ingest_request_seconds", "kind" => signal.label())
        .record(started.elapsed().as_secs_f64());
    response
}

async fn ingest(
    gw: &Arc<Gateway>,
    signal: Signal,
    wire: Wire,
    headers: &HeaderMap,
    body: Body,
) -> Result<IngestResponse, ApiError> {
    let encoding = match wire {
        Wire::Grpc => grpc_encoding(headers)?,
        _ => Encoding::from_headers(headers)?,
    };
    let decoded =
        ingest_decoded(gw, signal.kind(), headers, body, true, move |gw, raw, permit, tenant, partitions, out| {
            let max = gw.cfg.decompressed_bytes_max;
            let body = match wire {
                Wire::Grpc => unframe(raw, encoding, max, |n| gw.grow(permit, n))?,
                _ => decompress(raw, encoding, max, |n| gw.grow(permit, n))?,
            };
            // The decoded message takes about twice the memory of its encoding.
            gw.grow(permit, body.len().saturating_mul(2))?;
            let limits = &gw.cfg.record;
            match signal {
                Signal::Logs => {
                    let mut out = out;
                    // A body of many tiny messages decodes into far more than twice its size: what
                    // decoding takes is charged to the memory budget first, and a request that
                    // would need more than half of it is refused as too large to ever fit.
                    if wire != Wire::Json {
                        // Read in place; prost decides what that reader leaves.
                        match logs_wire::decode(&body, tenant, limits, partitions, &mut out) {
                            Ok(()) => return Ok(out),
                            Err(logs_wire::Unread::Refused(e)) => return Err(e),
                            Err(logs_wire::Unread::Irregular) => {}
                        }
                    }
                    out.budget.spend(match wire {
                        Wire::Json => memchr::memchr_iter(b'{', &body).count().saturating_mul(512),
                        Wire::Protobuf | Wire::Grpc => logs_wire::decoded_bytes(&body),
                    })?;
                    let request: ExportLogsServiceRequest = parse(wire, &body, "ExportLogsServiceRequest")?;
                    drop(body);
                    Ok(logs::decode(request, tenant, limits, partitions, out))
                }
                Signal::Metrics => {
                    let mut out = out;
                    // Charged before anything is decoded, as for logs.
                    out.budget.spend(match wire {
                        Wire::Json => memchr::memchr_iter(b'{', &body).count().saturating_mul(256),
                        Wire::Protobuf | Wire::Grpc => metrics::decoded_bytes(&body),
                    })?;
                    let request: ExportMetricsServiceRequest = parse(wire, &body, "ExportMetricsServiceRequest")?;
                    drop(body);
                    let mut batches = MetricBatches::new(gw, tenant);
                    metrics::decode(request, &mut batches, limits, &mut out);
                    batches.finish(&mut out, tenant, partitions);
                    Ok(out)
                }
            }
        })
        .await?;
    Ok(decoded.1)
}

fn parse<M: Message + Default + serde::de::DeserializeOwned>(
    wire: Wire,
    body: &[u8],
    what: &str,
) -> Result<M, ApiError> {
    match wire {
        Wire::Json => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("body is not an OTLP/JSON {what}: {e}"))),
        Wire::Protobuf | Wire::Grpc => {
            M::decode(body).map_err(|e| ApiError::bad_request(format!("body is not a protobuf {what}: {e}")))
        }
    }
}

/// The compression of a gRPC request's messages (`grpc-encoding`).
fn grpc_encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    match headers.get("grpc-encoding").map(|v| v.to_str().unwrap_or("").trim().to_ascii_lowercase()) {
        None => Ok(Encoding::Identity),
        Some(e) if e.is_empty() || e == "identity" => Ok(Encoding::Identity),
        Some(e) if e == "gzip" => Ok(Encoding::Gzip),
        Some(e) => Err(ApiError::unsupported(format!("grpc-encoding {e:?} is not supported; use gzip or identity"))),
    }
}

/// The one message of a unary gRPC request: a flag byte (compressed or not), a big-endian length,
/// the message.
fn unframe(
    raw: Vec<u8>,
    encoding: Encoding,
    bytes_max: u64,
    grow: impl FnMut(usize) -> Result<(), ApiError>,
) -> Result<Vec<u8>, ApiError> {
    if raw.len() < 5 {
        return Err(ApiError::bad_request(format!(
            "a gRPC message needs a 5-byte prefix; the body has {} bytes",
            raw.len()
        )));
    }
    let compressed = raw[0];
    let len = u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]) as usize;
    if raw.len() - 5 != len {
        return Err(ApiError::bad_request(format!(
            "a unary request holds one gRPC message: its prefix says {len} bytes, the body has {}",
            raw.len() - 5
        )));
    }
    let message = raw[5..].to_vec();
    drop(raw);
    match (compressed, encoding) {
        (0, _) => Ok(message),
        (1, Encoding::Identity) => {
            Err(ApiError::bad_request("the gRPC message is flagged compressed but the request names no grpc-encoding"))
        }
        (1, encoding) => decompress(message, encoding, bytes_max, grow),
        (flag, _) => Err(ApiError::bad_request(format!("gRPC message flag {flag} is neither 0 nor 1"))),
    }
}

/// Success, or partial success with the number refused and the first reasons.
fn success(signal: Signal, wire: Wire, r: &IngestResponse) -> Response {
    let message = if r.rejected == 0 {
        String::new()
    } else {
        let first: Vec<String> = r.errors.iter().take(3).map(|e| format!("item {}: {}", e.index, e.error)).collect();
        format!("{} of {} {} rejected: {}", r.rejected, r.rejected + r.accepted, signal.items(), first.join("; "))
    };
    let rejected = r.rejected as i64;
    if wire == Wire::Json {
        // proto3's JSON mapping writes an int64 as a string.
        let field = match signal {
            Signal::Logs => "rejectedLogRecords",
            Signal::Metrics => "rejectedDataPoints",
        };
        let body = if rejected == 0 {
            serde_json::json!({})
        } else {
            serde_json::json!({"partialSuccess": {field: rejected.to_string(), "errorMessage": message}})
        };
        return with_type(StatusCode::OK, wire, body.to_string().into_bytes());
    }
    let proto = match signal {
        Signal::Logs => ExportLogsServiceResponse {
            partial_success: (rejected > 0)
                .then_some(ExportLogsPartialSuccess { rejected_log_records: rejected, error_message: message }),
        }
        .encode_to_vec(),
        Signal::Metrics => ExportMetricsServiceResponse {
            partial_success: (rejected > 0)
                .then_some(ExportMetricsPartialSuccess { rejected_data_points: rejected, error_message: message }),
        }
        .encode_to_vec(),
    };
    match wire {
        Wire::Grpc => grpc_response(proto),
        _ => with_type(StatusCode::OK, wire, proto),
    }
}

fn with_type(status: StatusCode, wire: Wire, body: Vec<u8>) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(wire.content_type()));
    resp
}

/// An error: over HTTP its status with a `google.rpc.Status` body; over gRPC a trailers-only
/// answer with the matching code and, when the client should come back, a `RetryInfo`.
fn failure(wire: Wire, e: ApiError) -> Response {
    let code = status::grpc_code(e.status);
    match wire {
        Wire::Grpc => status::grpc_error(code, &e.message, e.retry_after_s),
        Wire::Protobuf | Wire::Json => {
            let body = match wire {
                Wire::Json => serde_json::to_vec(&serde_json::json!({"code": code, "message": e.message}))
                    .expect("status serialises"),
                _ => status::Status { code, message: e.message.clone(), details: Vec::new() }.encode_to_vec(),
            };
            let mut resp = with_type(e.status, wire, body);
            if let Some(s) = e.retry_after_s {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            if e.status == StatusCode::UNAUTHORIZED {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            resp
        }
    }
}

/// A gRPC answer of one message, then the `grpc-status: 0` trailer.
fn grpc_response(message: Vec<u8>) -> Response {
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let mut resp = Response::new(Body::new(GrpcBody { message: Some(Bytes::from(framed)), trailers: Some(trailers) }));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    resp
}

/// A body of one data frame followed by trailers.
struct GrpcBody {
    message: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for GrpcBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(m) = self.message.take() {
            return Poll::Ready(Some(Ok(Frame::data(m))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.message.is_none() && self.trailers.is_none()
    }
}

/// An attribute's value as JSON: strings, booleans and numbers as they are, arrays and key-value
/// lists as arrays and objects, bytes as base64.
fn any_to_json(v: AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match v.value {
        // A string table's index exists only in profiles.
        None | Some(any_value::Value::StringValueStrindex(_)) => J::Null,
        Some(any_value::Value::StringValue(s)) => J::String(s),
        Some(any_value::Value::BoolValue(b)) => J::Bool(b),
        Some(any_value::Value::IntValue(i)) => J::from(i),
        Some(any_value::Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(d).map_or_else(|| J::String(d.to_string()), J::Number)
        }
        Some(any_value::Value::ArrayValue(a)) => J::Array(a.values.into_iter().map(any_to_json).collect()),
        Some(any_value::Value::KvlistValue(kv)) => {
            J::Object(kv.values.into_iter().map(|kv| (kv.key, kv.value.map_or(J::Null, any_to_json))).collect())
        }
        Some(any_value::Value::BytesValue(b)) => {
            use base64::Engine as _;
            J::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
    }
}

/// An attribute's value as text (a label value, a message): strings as they are, the rest as JSON.
fn any_to_string(v: AnyValue) -> String {
    match v.value {
        Some(any_value::Value::StringValue(s)) => s,
        None => String::new(),
        _ => any_to_json(v).to_string(),
    }
}

/// The string value of attribute `key`, if it is there and not empty.
fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) if !s.is_empty() => Some(s.as_str()),
        _ => None,
    })
}

/// A trace or span id as lower-case hex; `None` when it is empty or all zeros (not set).
fn hex(bytes: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes).then(|| String::from_utf8(out).expect("hex digits are ASCII"))
}

/// Appends `bytes` as lower-case hex, unless they are empty or all zeros; says whether it did.
fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) -> bool {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    if bytes.iter().all(|&b| b == 0) {
        return false;
    }
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unary_grpc_body_holds_exactly_one_message() {
        let ok = |raw: Vec<u8>, e| unframe(raw, e, 1 << 20, |_| Ok(()));
        assert_eq!(ok(vec![0, 0, 0, 0, 2, 7, 8], Encoding::Identity).unwrap(), vec![7, 8]);
        assert!(ok(vec![0, 0, 0], Encoding::Identity).unwrap_err().message.contains("5-byte prefix"));
        assert!(ok(vec![0, 0, 0, 0, 3, 7, 8], Encoding::Identity).unwrap_err().message.contains("says 3 bytes"));
        assert!(ok(vec![1, 0, 0, 0, 1, 7], Encoding::Identity).unwrap_err().message.contains("no grpc-encoding"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"hello").unwrap();
        let gz = gz.finish().unwrap();
        let mut framed = vec![1];
        framed.extend_from_slice(&(gz.len() as u32).to_be_bytes());
        framed.extend_from_slice(&gz);
        assert_eq!(ok(framed, Encoding::Gzip).unwrap(), b"hello");
    }

    #[test]
    fn attribute_values_keep_their_types() {
        use opentelemetry_proto::tonic::common::v1::ArrayValue;
        let v = |x| AnyValue { value: Some(x) };
        assert_eq!(any_to_json(v(any_value::Value::IntValue(7))), serde_json::json!(7));
        assert_eq!(any_to_json(v(any_value::Value::DoubleValue(f64::NAN))), serde_json::json!("NaN"));
        let arr = v(any_value::Value::ArrayValue(ArrayValue {
            values: vec![v(any_value::Value::BoolValue(true)), v(any_value::Value::StringValue("x".into()))],
        }));
        assert_eq!(any_to_json(arr.clone()), serde_json::json!([true, "x"]));
        assert_eq!(any_to_string(arr), r#"[true,"x"]"#);
        assert_eq!(any_to_string(v(any_value::Value::StringValue("plain".into()))), "plain");
        assert_eq!(hex(&[0, 0]), None);
        assert_eq!(hex(&[0xab, 1]).as_deref(), Some("ab01"));
    }
}
