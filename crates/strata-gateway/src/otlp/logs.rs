//! OTLP log records into log lines.
//!
//! - time: `time_unix_nano`, else `observed_time_unix_nano`, else the time of arrival;
//! - source: the resource's `host.name`, else `service.instance.id`, else `service.name`, else
//!   `otlp`; `service` is `service.name`, `host` is `host.name`;
//! - level: the severity text, else the severity number's range (`trace`, `debug`, `info`, `warn`,
//!   `error`, `fatal`), else `unknown`;
//! - message: the body, as text if it is a string and as JSON otherwise;
//! - `trace_id` as hex; the span id, the record's attributes, the other resource attributes
//!   (`otel.scope.name`, `otel.scope.version` and `event.name` too) as attributes, typed as sent.
//!   A record's own attribute wins over a resource attribute of the same name.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde_json::{Map, Value};
use strata_model::{Limits, LogLine, RecordError, TenantId, check_timestamp};

use super::{any_to_json, any_to_string, attribute, hex};
use crate::ingest::Decoded;

pub(super) fn decode(
    request: ExportLogsServiceRequest,
    tenant: &TenantId,
    limits: &Limits,
    partitions: u32,
    mut out: Decoded,
) -> Decoded {
    let now = crate::ingest::now_ns();
    let mut payload = Vec::with_capacity(1024);
    let mut index = 0usize;
    for resource_logs in request.resource_logs {
        let resource = Resource::new(resource_logs.resource.map(|r| r.attributes).unwrap_or_default());
        for scope_logs in resource_logs.scope_logs {
            for record in scope_logs.log_records {
                out.total += 1;
                match line(record, &resource, scope_logs.scope.as_ref(), now, limits) {
                    Ok(line) => out.push_line(index, tenant, &line, partitions, &mut payload),
                    Err(e) => out.errors.push((index, e)),
                }
                index += 1;
            }
        }
    }
    out
}

/// What every record of one resource shares, worked out once for all of them.
struct Resource {
    source: String,
    service: Option<String>,
    host: Option<String>,
    /// The attributes other than `service.name` and `host.name`, as JSON.
    attributes: Vec<(String, Value)>,
}

impl Resource {
    fn new(attributes: Vec<KeyValue>) -> Resource {
        let service = attribute(&attributes, "service.name").map(str::to_string);
        let host = attribute(&attributes, "host.name").map(str::to_string);
        let source = host.as_deref().or_else(|| attribute(&attributes, "service.instance.id")).or(service.as_deref());
        let source = source.unwrap_or("otlp").to_string();
        let attributes = attributes
            .into_iter()
            .filter(|kv| kv.key != "service.name" && kv.key != "host.name")
            .map(|kv| (kv.key, kv.value.map_or(Value::Null, any_to_json)))
            .collect();
        Resource { source, service, host, attributes }
    }
}

fn line(
    record: LogRecord,
    resource: &Resource,
    scope: Option<&InstrumentationScope>,
    now: i64,
    limits: &Limits,
) -> Result<LogLine, RecordError> {
    let sent = if record.time_unix_nano > 0 { record.time_unix_nano } else { record.observed_time_unix_nano };
    let timestamp_ns = match sent {
        0 => now,
        t => {
            let t = i64::try_from(t)
                .map_err(|_| RecordError::Timestamp(strata_model::TimestampError::Range(t.to_string())))?;
            check_timestamp(t, now, limits)?
        }
    };
    let level = match record.severity_text.trim() {
        "" => severity_name(record.severity_number).unwrap_or("unknown").to_string(),
        text => text.to_string(),
    };
    let message = match record.body {
        Some(AnyValue { value: Some(any_value::Value::StringValue(s)) }) => s,
        Some(body) => any_to_string(body),
        None => String::new(),
    };
    let mut attributes = Map::new();
    for kv in record.attributes {
        attributes.insert(kv.key, kv.value.map_or(Value::Null, any_to_json));
    }
    if let Some(s) = hex(&record.span_id) {
        attributes.entry("span_id").or_insert(Value::String(s));
    }
    if !record.event_name.is_empty() {
        attributes.entry("event.name").or_insert(Value::String(record.event_name));
    }
    if let Some(scope) = scope {
        if !scope.name.is_empty() {
            attributes.entry("otel.scope.name").or_insert(Value::from(scope.name.as_str()));
        }
        if !scope.version.is_empty() {
            attributes.entry("otel.scope.version").or_insert(Value::from(scope.version.as_str()));
        }
    }
    for (k, v) in &resource.attributes {
        if !attributes.contains_key(k) {
            attributes.insert(k.clone(), v.clone());
        }
    }
    LogLine {
        timestamp_ns,
        source_id: resource.source.clone(),
        level,
        message,
        run_id: None,
        trace_id: hex(&record.trace_id),
        service: resource.service.clone(),
        host: resource.host.clone(),
        attributes,
    }
    .checked(limits)
}

/// The level of an OTLP severity number: 1–4 trace, 5–8 debug, 9–12 info, 13–16 warn, 17–20
/// error, 21–24 fatal.
pub(super) fn severity_name(n: i32) -> Option<&'static str> {
    Some(match n {
        1..=4 => "trace",
        5..=8 => "debug",
        9..=12 => "info",
        13..=16 => "warn",
        17..=20 => "error",
        21..=24 => "fatal",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.into())
    }

    fn record(now: i64) -> LogRecord {
        LogRecord {
            time_unix_nano: (now - 1_000_000_000) as u64,
            severity_number: 17,
            body: Some(AnyValue { value: Some(s("disk full")) }),
            attributes: vec![kv("disk", any_value::Value::IntValue(3)), kv("region", s("from-record"))],
            trace_id: vec![0xab; 16],
            span_id: vec![0x01; 8],
            ..Default::default()
        }
    }

    fn request_resource() -> Vec<KeyValue> {
        vec![kv("service.name", s("checkout")), kv("host.name", s("web-1")), kv("region", s("eu"))]
    }

    #[test]
    fn records_map_to_log_lines_with_resource_scope_and_ids() {
        let now = crate::ingest::now_ns();
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource { attributes: request_resource(), ..Default::default() }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope { name: "app.db".into(), ..Default::default() }),
                    log_records: vec![record(now), LogRecord { time_unix_nano: u64::MAX, ..Default::default() }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let tenant = TenantId::new("t").unwrap();
        let mut out = decode(request, &tenant, &Limits::default(), 4, Decoded::new(None));
        assert_eq!(out.total, 2);
        assert_eq!(out.errors.len(), 1);
        assert_eq!(out.errors.first()[0].0, 1);
        assert_eq!(out.batches.values().map(|b| b.records.count()).sum::<u32>(), 1);
        let resource = super::Resource::new(request_resource());
        let scope = InstrumentationScope { name: "app.db".into(), ..Default::default() };
        let line = line(record(now), &resource, Some(&scope), now, &Limits::default()).unwrap();
        assert_eq!(line.timestamp_ns, now - 1_000_000_000);
        assert_eq!(
            (line.source_id.as_str(), line.level.as_str(), line.message.as_str()),
            ("web-1", "error", "disk full")
        );
        assert_eq!((line.service.as_deref(), line.host.as_deref()), (Some("checkout"), Some("web-1")));
        assert_eq!(line.trace_id.as_deref(), Some("abababababababababababababababab"));
        assert_eq!(line.attributes["span_id"], "0101010101010101");
        assert_eq!(line.attributes["disk"], 3);
        assert_eq!(line.attributes["region"], "from-record");
        assert_eq!(line.attributes["otel.scope.name"], "app.db");
        assert!(!line.attributes.contains_key("service.name"));
    }

    #[test]
    fn severity_numbers_name_levels() {
        assert_eq!(severity_name(9), Some("info"));
        assert_eq!(severity_name(24), Some("fatal"));
        assert_eq!(severity_name(0), None);
    }
}
