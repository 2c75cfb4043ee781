//! The workload's records as OTLP requests, for `ingest --protocol otlp-http|otlp-grpc`: log lines
//! as log records and metric points as gauge points, grouped by source into one resource each
//! (`host.name`), as an agent that ships many services' telemetry would send them.

use std::collections::BTreeMap;

use anyhow::Context as _;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::Value;
use strata_client::RecordKind;

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.to_string(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn string(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

fn resource(source: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("host.name", any_value::Value::StringValue(source.to_string()))],
        ..Default::default()
    })
}

/// An `ExportLogsServiceRequest` or `ExportMetricsServiceRequest` holding the NDJSON's records.
pub fn encode(kind: RecordKind, ndjson: &[u8], now_ms: i64) -> anyhow::Result<Vec<u8>> {
    let now_ns = (now_ms as u64) * 1_000_000;
    let records = ndjson
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(serde_json::from_slice::<Value>)
        .collect::<Result<Vec<_>, _>>()
        .context("the workload's NDJSON")?;
    match kind {
        RecordKind::Metrics => {
            let mut by_source: BTreeMap<String, Vec<Metric>> = BTreeMap::new();
            for r in records {
                let attributes = r["labels"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| kv(k, any_value::Value::StringValue(string(v)))).collect())
                    .unwrap_or_default();
                let point = NumberDataPoint {
                    attributes,
                    time_unix_nano: now_ns,
                    value: Some(number_data_point::Value::AsDouble(r["value"].as_f64().unwrap_or(0.0))),
                    ..Default::default()
                };
                by_source.entry(string(&r["source_id"])).or_default().push(Metric {
                    name: string(&r["name"]),
                    data: Some(metric::Data::Gauge(Gauge { data_points: vec![point] })),
                    ..Default::default()
                });
            }
            let request = ExportMetricsServiceRequest {
                resource_metrics: by_source
                    .into_iter()
                    .map(|(source, metrics)| ResourceMetrics {
                        resource: resource(&source),
                        scope_metrics: vec![ScopeMetrics { metrics, ..Default::default() }],
                        ..Default::default()
                    })
                    .collect(),
            };
            Ok(request.encode_to_vec())
        }
        _ => {
            let mut by_source: BTreeMap<String, Vec<LogRecord>> = BTreeMap::new();
            for r in records {
                let mut attributes: Vec<KeyValue> = r["attributes"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| kv(k, any_value::Value::StringValue(string(v)))).collect())
                    .unwrap_or_default();
                for field in ["service", "run_id"] {
                    if let Some(v) = r[field].as_str() {
                        attributes.push(kv(field, any_value::Value::StringValue(v.to_string())));
                    }
                }
                let trace_id = r["trace_id"]
                    .as_str()
                    .map(|h| {
                        (0..h.len() / 2).filter_map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok()).collect()
                    })
                    .unwrap_or_default();
                by_source.entry(string(&r["source_id"])).or_default().push(LogRecord {
                    time_unix_nano: now_ns,
                    severity_text: string(&r["level"]),
                    body: Some(AnyValue { value: Some(any_value::Value::StringValue(string(&r["message"]))) }),
                    attributes,
                    trace_id,
                    ..Default::default()
                });
            }
            let request = ExportLogsServiceRequest {
                resource_logs: by_source
                    .into_iter()
                    .map(|(source, log_records)| ResourceLogs {
                        resource: resource(&source),
                        scope_logs: vec![ScopeLogs { log_records, ..Default::default() }],
                        ..Default::default()
                    })
                    .collect(),
            };
            Ok(request.encode_to_vec())
        }
    }
}

/// A message as the one message of a unary gRPC request.
pub fn frame(message: Vec<u8>) -> Vec<u8> {
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    framed
}

/// The records an OTLP answer says were rejected (a logs or a metrics answer: the partial
/// success is field 1 in both, its count field 1).
pub fn rejected(answer: &[u8]) -> Option<u64> {
    let logs = ExportLogsServiceResponse::decode(answer).ok()?;
    if let Some(p) = logs.partial_success {
        return Some(p.rejected_log_records.max(0) as u64);
    }
    let metrics = ExportMetricsServiceResponse::decode(answer).ok()?;
    Some(metrics.partial_success.map_or(0, |p| p.rejected_data_points.max(0) as u64))
}
