//! Loki's push API, `POST /loki/api/v1/push`, so that Promtail, Grafana Alloy, Fluent Bit's `loki`
//! output, Vector's `loki` sink and the logging libraries that speak it ship to Strata: a
//! snappy-compressed protobuf `PushRequest` (`application/x-protobuf`) or its JSON form
//! (`application/json`, gzip allowed).
//!
//! A stream's labels name the line's source (`host`, `hostname`, `instance`, `source_id`, else
//! `job`, else `loki`), its level (`level`, `detected_level`, `severity`) and its service
//! (`service_name`, `service`, `app`, `job`); every label and an entry's structured metadata
//! become attributes (a `trace_id` in the metadata becomes the line's trace id). The tenant comes
//! from the API key, never from `X-Scope-OrgID`.
//!
//! Answers are Loki's: 204 when every entry was stored; 400 naming the first refused entries
//! when some were not (the others are stored, and a sender does not retry a 400); 429 and 503
//! with `Retry-After` when the sender should retry.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};
use strata_model::{Kind, Limits, RecordError, TenantId, check_timestamp};

use crate::body::{Encoding, decompress};
use crate::ingest::{Decoded, ingest_decoded, now_ns};
use crate::{ApiError, Gateway};

/// Loki's `logproto` push messages.
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<Stream>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Stream {
        #[prost(string, tag = "1")]
        pub labels: String,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<Entry>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entry {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        #[prost(string, tag = "2")]
        pub line: String,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPair>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPair {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

/// The messages of a push, for `decoded_bytes`: 256 bytes an entry (prost's structure and the
/// one it becomes), 128 for any other message.
mod shape {
    use crate::wire::{LEAF, Shape};

    pub static REQUEST: Shape = Shape { bytes: 128, fields: &[(1, &STREAM)] };
    static STREAM: Shape = Shape { bytes: 128, fields: &[(2, &ENTRY)] };
    /// Its timestamp is held in its structure; each pair of structured metadata is a message.
    static ENTRY: Shape = Shape { bytes: 256, fields: &[(3, &LEAF)] };
}

#[derive(Deserialize)]
struct JsonPush {
    #[serde(default)]
    streams: Vec<JsonStream>,
}

#[derive(Deserialize)]
struct JsonStream {
    #[serde(default)]
    stream: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<JsonEntry>,
}

/// `["<unix ns>", "<line>"]` or `["<unix ns>", "<line>", {structured metadata}]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum JsonEntry {
    Plain((String, String)),
    WithMetadata((String, String, std::collections::BTreeMap<String, String>)),
}

/// One entry, whichever form it came in.
struct Entry {
    timestamp_ns: Result<i64, String>,
    line: String,
    metadata: Vec<(String, String)>,
}

pub(crate) async fn push(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    let started = std::time::Instant::now();
    let result = ingest(&gw, &headers, body).await;
    let response = match result {
        Ok(r) if r.rejected == 0 => StatusCode::NO_CONTENT.into_response(),
        Ok(r) => {
            let first: Vec<String> =
                r.errors.iter().take(3).map(|e| format!("entry {}: {}", e.index, e.error)).collect();
            let msg = format!("{} of {} entries rejected: {}", r.rejected, r.rejected + r.accepted, first.join("; "));
            (StatusCode::BAD_REQUEST, msg).into_response()
        }
        Err(e) => e.into_response(),
    };
    metrics::counter!("strata_ingest_requests_total", "kind" => "loki_push", "status" => response.status().as_str().to_string())
        .increment(1);
    metrics::histogram!("strata_ingest_request_seconds", "kind" => "loki_push").record(started.elapsed().as_secs_f64());
    response
}

async fn ingest(gw: &Arc<Gateway>, headers: &HeaderMap, body: Body) -> Result<crate::IngestResponse, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let json = match ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase().as_str() {
        "application/json" => true,
        "application/x-protobuf" | "application/protobuf" | "" => false,
        other => {
            return Err(ApiError::unsupported(format!(
                "content type {other:?} is not a Loki push; use application/x-protobuf (snappy) or application/json"
            )));
        }
    };
    let encoding = Encoding::from_headers(headers)?;
    let (_, resp, _) =
        ingest_decoded(gw, Kind::Logs, headers, body, true, move |gw, raw, permit, tenant, partitions, out| {
            let max = gw.cfg.decompressed_bytes_max;
            let mut out = out;
            let streams = if json {
                let body = decompress(raw, encoding, max, |n| gw.grow(permit, n))?;
                // What decoding takes, charged first: an entry and each string of it (a pair of
                // structured metadata is two) several times over their bytes at the least.
                let entries = memchr::memchr_iter(b'[', &body).count();
                let strings = memchr::memchr_iter(b'"', &body).count() / 2;
                out.budget.spend(body.len() + entries.saturating_mul(256) + strings.saturating_mul(128))?;
                let push: JsonPush = serde_json::from_slice(&body)
                    .map_err(|e| ApiError::bad_request(format!("body is not a Loki JSON push: {e}")))?;
                push.streams
                    .into_iter()
                    .map(|s| (s.stream.into_iter().collect(), s.values.into_iter().map(json_entry).collect()))
                    .collect()
            } else {
                let body = crate::body::snappy_block(&raw, max, "a protobuf push", |n| gw.grow(permit, n))?;
                out.budget.spend(body.len() + crate::wire::decoded_bytes(&body, &shape::REQUEST))?;
                let push = <proto::PushRequest as prost::Message>::decode(body.as_slice())
                    .map_err(|e| ApiError::bad_request(format!("body is not a Loki PushRequest: {e}")))?;
                let mut streams = Vec::with_capacity(push.streams.len());
                for s in push.streams {
                    let labels = parse_labels(&s.labels).map_err(ApiError::bad_request)?;
                    streams.push((labels, s.entries.into_iter().map(proto_entry).collect()));
                }
                streams
            };
            Ok(decode(streams, tenant, &gw.cfg.record, partitions, out))
        })
        .await?;
    Ok(resp)
}

fn json_entry(e: JsonEntry) -> Entry {
    let (ts, line, metadata) = match e {
        JsonEntry::Plain((ts, line)) => (ts, line, Vec::new()),
        JsonEntry::WithMetadata((ts, line, m)) => (ts, line, m.into_iter().collect()),
    };
    let timestamp_ns = ts.parse::<i64>().map_err(|_| format!("timestamp {ts:?} is not Unix nanoseconds"));
    Entry { timestamp_ns, line, metadata }
}

fn proto_entry(e: proto::Entry) -> Entry {
    let timestamp_ns = match e.timestamp {
        None => Err("an entry has no timestamp".to_string()),
        Some(t) => t
            .seconds
            .checked_mul(1_000_000_000)
            .and_then(|s| s.checked_add(i64::from(t.nanos)))
            .ok_or_else(|| format!("timestamp {}s is out of range", t.seconds)),
    };
    Entry {
        timestamp_ns,
        line: e.line,
        metadata: e.structured_metadata.into_iter().map(|p| (p.name, p.value)).collect(),
    }
}

type Streams = Vec<(Vec<(String, String)>, Vec<Entry>)>;

fn decode(streams: Streams, tenant: &TenantId, limits: &Limits, partitions: u32, mut out: Decoded) -> Decoded {
    let now = now_ns();
    let mut payload = Vec::with_capacity(1024);
    let mut index = 0usize;
    for (labels, entries) in streams {
        let get = |names: &[&str]| names.iter().find_map(|n| labels.iter().find(|(k, v)| k == n && !v.is_empty()));
        let source = get(&["host", "hostname", "instance", "source_id", "job"]).map_or("loki", |(_, v)| v.as_str());
        let level = get(&["level", "detected_level", "severity"]).map(|(_, v)| v.clone());
        let service = get(&["service_name", "service", "app", "job"]).map(|(_, v)| v.clone());
        for entry in entries {
            if out.budget.refused().is_some() {
                // The request is answered with the refusal.
                return out;
            }
            out.total += 1;
            match line(&labels, source, level.as_deref(), service.as_deref(), entry, now, limits) {
                Ok(l) => out.push_line(index, tenant, &l, partitions, &mut payload),
                Err(e) => out.errors.push((index, e)),
            }
            index += 1;
        }
    }
    out
}

fn line(
    labels: &[(String, String)],
    source: &str,
    level: Option<&str>,
    service: Option<&str>,
    entry: Entry,
    now: i64,
    limits: &Limits,
) -> Result<strata_model::LogLine, RecordError> {
    let ts = entry
        .timestamp_ns
        .map_err(|e| RecordError::Timestamp(strata_model::TimestampError::Range(e)))
        .and_then(|t| check_timestamp(t, now, limits))?;
    let mut trace_id = None;
    let mut attributes = Map::new();
    for (k, v) in entry.metadata {
        if k == "trace_id" && !v.is_empty() {
            trace_id = Some(v);
        } else {
            attributes.insert(k, Value::String(v));
        }
    }
    for (k, v) in labels {
        attributes.entry(k.clone()).or_insert_with(|| Value::String(v.clone()));
    }
    strata_model::LogLine {
        timestamp_ns: ts,
        source_id: source.to_string(),
        level: level.unwrap_or("unknown").to_string(),
        message: entry.line,
        run_id: None,
        trace_id,
        service: service.map(str::to_string),
        host: None,
        attributes,
    }
    .checked(limits)
}

/// Parses a stream's labels as Loki writes them: `{name="value", ...}`, values with Go escapes.
fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let bad = |why: &str| format!("stream labels {s:?} are not {{name=\"value\", ...}}: {why}");
    let inner = s.trim().strip_prefix('{').and_then(|r| r.strip_suffix('}')).ok_or_else(|| bad("no braces"))?;
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                chars.next();
            } else {
                break;
            }
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if name.is_empty() || chars.next() != Some('=') {
            return Err(bad("a label needs a name and '='"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('"') {
            return Err(bad("a value must be quoted"));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                None => return Err(bad("a value is not closed")),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some(c) => value.push(c),
                    None => return Err(bad("a value is not closed")),
                },
                Some(c) => value.push(c),
            }
        }
        out.push((name, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_labels_parse_with_escapes() {
        let got = parse_labels(r#"{job="api", host="web-1",msg="say \"hi\"\n" }"#).unwrap();
        let want: Vec<(String, String)> = [("job", "api"), ("host", "web-1"), ("msg", "say \"hi\"\n")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(parse_labels("{}").unwrap(), vec![]);
        assert!(parse_labels("job=\"x\"").is_err());
        assert!(parse_labels("{job=x}").is_err());
        assert!(parse_labels("{job=\"x}").is_err());
    }

    #[test]
    fn labels_name_source_level_and_service() {
        let labels = vec![("job".to_string(), "api".to_string()), ("level".to_string(), "WARN".to_string())];
        let now = now_ns();
        let entry =
            Entry { timestamp_ns: Ok(now), line: "slow".into(), metadata: vec![("trace_id".into(), "abc".into())] };
        let streams =
            vec![(labels, vec![entry, Entry { timestamp_ns: Err("bad".into()), line: "x".into(), metadata: vec![] }])];
        let out = decode(streams, &TenantId::new("t").unwrap(), &Limits::default(), 4, Decoded::new(None));
        assert_eq!(out.total, 2);
        assert_eq!(out.errors.len(), 1);
        let l = line(
            &[("job".into(), "api".into())],
            "api",
            Some("WARN"),
            Some("api"),
            Entry { timestamp_ns: Ok(now), line: "slow".into(), metadata: vec![("trace_id".into(), "abc".into())] },
            now,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!((l.source_id.as_str(), l.level.as_str(), l.trace_id.as_deref()), ("api", "warn", Some("abc")));
        assert_eq!(l.attributes["job"], "api");
    }
}
