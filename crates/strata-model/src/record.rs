use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::limits::Limits;
use crate::timestamp::{TimestampError, parse_timestamp, type_name};

/// Why one record of a batch was refused. The gateway reports it next to the record's index; the
/// other records of the batch are unaffected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    #[error("record is not valid JSON: {0}")]
    Json(String),
    #[error("record must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error("field {0:?} is required")]
    Missing(&'static str),
    #[error("field {field:?} must be {expected}, got {got}")]
    Type { field: String, expected: &'static str, got: &'static str },
    #[error("field {field:?} is {len} bytes, more than the limit of {max}")]
    TooLong { field: String, len: usize, max: usize },
    #[error("field {0:?} must not be empty")]
    Empty(&'static str),
    #[error("unknown field {0:?}")]
    UnknownField(String),
    #[error("timestamp is {ahead_ms} ms in the future, more than the limit of {max_ms} ms")]
    Future { ahead_ms: i64, max_ms: u64 },
    #[error(transparent)]
    Timestamp(#[from] TimestampError),
    #[error("metric name {0:?} is not a valid Prometheus metric name")]
    MetricName(String),
    #[error("label name {0:?} is not a valid Prometheus label name")]
    LabelName(String),
    #[error("label name {0:?} is reserved")]
    ReservedLabel(String),
    #[error("label name {0:?} appears more than once")]
    DuplicateLabel(String),
    #[error("{count} labels, more than the limit of {max}")]
    TooManyLabels { count: usize, max: usize },
    #[error("metric value must be a number or one of \"NaN\", \"+Inf\", \"-Inf\", got {0}")]
    Value(String),
    #[error("series is new and the tenant has reached its limit of {0} active series")]
    SeriesLimit(usize),
    #[error("{0} are not supported")]
    Unsupported(&'static str),
}

impl RecordError {
    /// A short, fixed name for the cause, used as a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            RecordError::Json(_) => "invalid_json",
            RecordError::NotAnObject(_) | RecordError::Type { .. } | RecordError::Value(_) => "wrong_type",
            RecordError::Missing(_) | RecordError::Empty(_) => "missing_field",
            RecordError::TooLong { .. } => "too_long",
            RecordError::UnknownField(_) => "unknown_field",
            RecordError::Future { .. } => "future_timestamp",
            RecordError::Timestamp(_) => "invalid_timestamp",
            RecordError::MetricName(_) | RecordError::LabelName(_) | RecordError::ReservedLabel(_) => "invalid_name",
            RecordError::DuplicateLabel(_) => "duplicate_label",
            RecordError::TooManyLabels { .. } => "too_many_labels",
            RecordError::SeriesLimit(_) => "series_limit",
            RecordError::Unsupported(_) => "unsupported",
        }
    }
}

/// A log line as stored in the `logs` topic (the tenant is in the record envelope).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub timestamp_ns: i64,
    pub source_id: String,
    pub level: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
}

/// A float sample of one series as stored in the `metrics` topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(with = "json_f64")]
    pub value: f64,
    pub timestamp_ns: i64,
    pub source_id: String,
}

/// A structured event as stored in the `events` topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub event_type: String,
    pub timestamp_ns: i64,
    pub source_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default)]
    pub data: Map<String, Value>,
}

/// An event read without building it: its strings borrowed from the payload (copied only when
/// they hold escapes) and each field of `data` kept as its JSON text. Operators that look at a
/// few fields of every event (deduplication, enrichment, rollups) read events this way.
#[derive(Debug, Deserialize)]
pub struct EventRef<'a> {
    #[serde(rename = "type", borrow)]
    pub event_type: Cow<'a, str>,
    pub timestamp_ns: i64,
    #[serde(borrow)]
    pub source_id: Cow<'a, str>,
    #[serde(default, borrow)]
    pub event_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub data: RawFields<'a>,
}

impl<'a> EventRef<'a> {
    pub fn parse(payload: &'a [u8]) -> Result<EventRef<'a>, serde_json::Error> {
        serde_json::from_slice(payload)
    }
}

/// A JSON object's fields in their order, each value as its JSON text.
#[derive(Debug, Default)]
pub struct RawFields<'a>(pub Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> RawFields<'a> {
    /// The value of `name`: the last one when the object names it twice, as a map would keep.
    pub fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| *v)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawFields<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Fields<'a> {
            type Value = RawFields<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<RawFields<'a>, M::Error> {
                #[derive(Deserialize)]
                struct Key<'a>(#[serde(borrow)] Cow<'a, str>);
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
                    fields.push((k, map.next_value::<&'de RawValue>()?));
                }
                Ok(RawFields(fields))
            }
        }
        d.deserialize_map(Fields(std::marker::PhantomData))
    }
}

/// A JSON number's value.
pub fn raw_number(v: &RawValue) -> Option<f64> {
    let text = v.get();
    match text.as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => text.parse().ok(),
        _ => None,
    }
}

/// A JSON string's text (`None` for any other value).
pub fn raw_string(v: &RawValue) -> Option<Cow<'_, str>> {
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    if !v.get().starts_with('"') {
        return None;
    }
    serde_json::from_str::<Text>(v.get()).ok().map(|t| t.0)
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, as Prometheus defines a metric name.
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, as Prometheus defines a label name.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Fields a log line knows; every other top-level field of a log record becomes an attribute.
const LOG_FIELDS: [&str; 10] =
    ["timestamp", "source_id", "level", "message", "run_id", "trace_id", "service", "host", "attributes", "tenant"];

/// Validates a log record from a producer and turns it into the stored form.
pub fn normalize_log(v: Value, now_ns: i64, limits: &Limits) -> Result<LogLine, RecordError> {
    LogFields::from_map(into_object(v)?).normalize(now_ns, limits)
}

/// The top-level fields of a log record, each taken out on its own: from a parsed map by
/// `normalize_log`, or straight from the JSON text (`serde_json::from_slice::<LogFields>`),
/// which builds no map for the record itself. A text that is not a JSON object fails to
/// deserialize with a data error; parse it as a `Value` and call `normalize_log` to name it.
#[derive(Debug, Default)]
pub struct LogFields {
    /// The values of `LOG_FIELDS`, in its order, as sent.
    known: [Option<Value>; LOG_FIELDS.len()],
    /// Every other field, an attribute unless `attributes` has the same name.
    extra: Map<String, Value>,
}

impl LogFields {
    fn from_map(mut obj: Map<String, Value>) -> LogFields {
        let known = LOG_FIELDS.map(|name| obj.remove(name));
        LogFields { known, extra: obj }
    }

    /// Validates the fields and makes the stored line.
    pub fn normalize(self, now_ns: i64, limits: &Limits) -> Result<LogLine, RecordError> {
        let [timestamp, source_id, level, message, run_id, trace_id, service, host, attributes, tenant] = self.known;
        let timestamp_ns = match timestamp {
            None | Some(Value::Null) => now_ns,
            Some(v) => check_timestamp(parse_timestamp(&v)?, now_ns, limits)?,
        };
        let source_id = id_value("source_id", source_id, limits)?.ok_or(RecordError::Missing("source_id"))?;
        let level = id_value("level", level, limits)?.unwrap_or_else(|| "unknown".to_string());
        let message = match message {
            Some(Value::String(s)) => s,
            Some(other) => return Err(type_err("message", "a string", &other)),
            None => return Err(RecordError::Missing("message")),
        };
        let run_id = id_value("run_id", run_id, limits)?;
        let trace_id = id_value("trace_id", trace_id, limits)?;
        let service = id_value("service", service, limits)?;
        let host = id_value("host", host, limits)?;
        if tenant.is_some() {
            // The tenant comes from the credential, never from the payload.
            return Err(RecordError::UnknownField("tenant".to_string()));
        }
        let mut attributes = match attributes {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(other) => return Err(type_err("attributes", "an object", &other)),
        };
        for (k, v) in self.extra {
            attributes.entry(k).or_insert(v);
        }
        LogLine { timestamp_ns, source_id, level, message, run_id, trace_id, service, host, attributes }.checked(limits)
    }
}

impl<'de> Deserialize<'de> for LogFields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = LogFields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<LogFields, A::Error> {
                let mut fields = LogFields::default();
                while let Some(key) = map.next_key::<FieldKey>()? {
                    let value = map.next_value::<Value>()?;
                    match key {
                        FieldKey::Known(i) => fields.known[i] = Some(value),
                        FieldKey::Other(name) => {
                            fields.extra.insert(name, value);
                        }
                    }
                }
                Ok(fields)
            }
        }
        d.deserialize_map(Fields)
    }
}

/// A field's name: one of `LOG_FIELDS` (no copy made), or another.
enum FieldKey {
    Known(usize),
    Other(String),
}

impl<'de> Deserialize<'de> for FieldKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Key;
        impl serde::de::Visitor<'_> for Key {
            type Value = FieldKey;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<FieldKey, E> {
                Ok(LOG_FIELDS
                    .iter()
                    .position(|f| *f == s)
                    .map_or_else(|| FieldKey::Other(s.to_string()), FieldKey::Known))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<FieldKey, E> {
                Ok(LOG_FIELDS.iter().position(|f| *f == s).map_or(FieldKey::Other(s), FieldKey::Known))
            }
        }
        d.deserialize_str(Key)
    }
}

impl LogLine {
    /// Appends the line's stored form to `out`: the same bytes as `serde_json::to_writer`, with
    /// its strings escaped by `write_json_str`. Writing the stored line is on every log line's
    /// acknowledgement path, where serde_json's byte-at-a-time escaping of the message was a tenth
    /// of the server's CPU.
    pub fn write_stored(&self, out: &mut Vec<u8>) {
        let line = self.as_ref();
        line.write_head(out, line.level);
        if !self.attributes.is_empty() {
            out.extend_from_slice(b",\"attributes\":");
            serde_json::to_writer(&mut *out, &self.attributes).expect("a JSON map serialises");
        }
        out.push(b'}');
    }

    /// Checks a line against the limits and puts its level in lower case: ids (`source_id`,
    /// `level`, `run_id`, `trace_id`, `service`, `host`) not empty and within `id_bytes_max`, the
    /// message within `log_line_bytes_max`, the attributes' JSON within `attributes_bytes_max`.
    /// `normalize_log` ends with it; a decoder that builds lines field by field from another
    /// protocol (OTLP, Loki) calls it instead, so that every line is held to the same rules.
    /// The timestamp is the decoder's to check (`check_timestamp`), since only it knows the unit.
    pub fn checked(mut self, limits: &Limits) -> Result<LogLine, RecordError> {
        self.as_ref().check_fields(limits)?;
        self.level.make_ascii_lowercase();
        if !self.attributes.is_empty() {
            check_json_len("attributes", &self.attributes, limits.attributes_bytes_max)?;
        }
        Ok(self)
    }

    fn as_ref(&self) -> LogLineRef<'_> {
        LogLineRef {
            timestamp_ns: self.timestamp_ns,
            source_id: &self.source_id,
            level: &self.level,
            message: &self.message,
            run_id: self.run_id.as_deref(),
            trace_id: self.trace_id.as_deref(),
            service: self.service.as_deref(),
            host: self.host.as_deref(),
        }
    }
}

/// A log line's fields borrowed from a request, for a decoder that writes the stored line
/// straight from the request's bytes (OTLP's protobuf reader) instead of building a `LogLine`.
/// `write_checked` holds it to the rules of `LogLine::checked` and writes the bytes that
/// `LogLine::write_stored` would write for the checked line.
#[derive(Debug, Clone, Copy)]
pub struct LogLineRef<'a> {
    pub timestamp_ns: i64,
    pub source_id: &'a str,
    /// As sent: written in lower case.
    pub level: &'a str,
    pub message: &'a str,
    pub run_id: Option<&'a str>,
    pub trace_id: Option<&'a str>,
    pub service: Option<&'a str>,
    pub host: Option<&'a str>,
}

impl LogLineRef<'_> {
    /// The checks of `LogLine::checked` but the attributes', in its order.
    fn check_fields(&self, limits: &Limits) -> Result<(), RecordError> {
        check_id("source_id", self.source_id, limits)?;
        check_id("level", self.level, limits)?;
        check_len("message", self.message.len(), limits.log_line_bytes_max)?;
        for (field, id) in
            [("run_id", self.run_id), ("trace_id", self.trace_id), ("service", self.service), ("host", self.host)]
        {
            if let Some(id) = id {
                check_id(field, id, limits)?;
            }
        }
        Ok(())
    }

    /// The stored form up to its attributes, with `level` for the line's.
    fn write_head(&self, out: &mut Vec<u8>, level: &str) {
        write!(out, "{{\"timestamp_ns\":{}", self.timestamp_ns).expect("writing to a Vec cannot fail");
        for (name, value) in [("source_id", self.source_id), ("level", level), ("message", self.message)] {
            write_json_field(out, name, value);
        }
        for (name, value) in
            [("run_id", self.run_id), ("trace_id", self.trace_id), ("service", self.service), ("host", self.host)]
        {
            if let Some(value) = value {
                write_json_field(out, name, value);
            }
        }
    }

    /// Checks the line and appends its stored form to `out`. `attributes` writes the members of
    /// the attributes object (`"key":value`, comma-separated, keys in `Map`'s order, each once)
    /// and returns how many it wrote; their JSON is held to `attributes_bytes_max`. On an error
    /// `out` is left as it was.
    pub fn write_checked(
        &self,
        limits: &Limits,
        out: &mut Vec<u8>,
        attributes: impl FnOnce(&mut Vec<u8>) -> usize,
    ) -> Result<(), RecordError> {
        self.check_fields(limits)?;
        let start = out.len();
        if self.level.bytes().any(|b| b.is_ascii_uppercase()) {
            self.write_head(out, &self.level.to_ascii_lowercase());
        } else {
            self.write_head(out, self.level);
        }
        let before = out.len();
        out.extend_from_slice(b",\"attributes\":{");
        let object = out.len() - 1;
        if attributes(out) == 0 {
            out.truncate(before);
        } else {
            out.push(b'}');
            if let Err(e) = check_len("attributes", out.len() - object, limits.attributes_bytes_max) {
                out.truncate(start);
                return Err(e);
            }
        }
        out.push(b'}');
        Ok(())
    }
}

/// Validates a metric point (`name`/`metric_name`, `labels`/`tags`, `value`, `timestamp`,
/// `source_id`) and turns it into the stored form. Without `source_id` the `instance` label, if
/// any, names the source.
pub fn normalize_metric(v: Value, now_ns: i64, limits: &Limits) -> Result<MetricPoint, RecordError> {
    let mut obj = into_object(v)?;
    let timestamp_ns = timestamp(&mut obj, now_ns, limits)?;
    let name = match take_alias(&mut obj, "name", "metric_name") {
        Some((_, Value::String(s))) => s,
        Some((field, other)) => return Err(type_err(field, "a string", &other)),
        None => return Err(RecordError::Missing("name")),
    };
    let labels_in = match take_alias(&mut obj, "labels", "tags") {
        None | Some((_, Value::Null)) => Map::new(),
        Some((_, Value::Object(m))) => m,
        Some((field, other)) => return Err(type_err(field, "an object", &other)),
    };
    let mut pairs = Vec::with_capacity(labels_in.len());
    for (k, v) in labels_in {
        match v {
            Value::String(s) => pairs.push((k, s)),
            other => return Err(type_err(&format!("labels.{k}"), "a string", &other)),
        }
    }
    validate_series(&name, &pairs, limits)?;
    let labels: BTreeMap<String, String> = pairs.into_iter().collect();
    let value = match obj.remove("value") {
        Some(Value::Number(n)) => n.as_f64().ok_or_else(|| RecordError::Value(n.to_string()))?,
        Some(Value::String(s)) => parse_special_float(&s).ok_or(RecordError::Value(format!("{s:?}")))?,
        Some(other) => return Err(RecordError::Value(type_name(&other).to_string())),
        None => return Err(RecordError::Missing("value")),
    };
    let source_id = match optional_id(&mut obj, "source_id", limits)? {
        Some(s) => s,
        None => labels.get("instance").cloned().unwrap_or_default(),
    };
    if let Some(k) = obj.keys().next() {
        return Err(RecordError::UnknownField(k.clone()));
    }
    Ok(MetricPoint { name, labels, value, timestamp_ns, source_id })
}

/// Checks a metric name and its labels (without `__name__`) against the limits: valid Prometheus
/// names, no reserved or repeated label name, lengths and count. Every metric ingest path uses it.
pub fn validate_series<S: AsRef<str>>(name: &str, labels: &[(S, S)], limits: &Limits) -> Result<(), RecordError> {
    check_len("name", name.len(), limits.metric_name_bytes_max)?;
    if !is_valid_metric_name(name) {
        return Err(RecordError::MetricName(name.to_string()));
    }
    if labels.len() > limits.labels_per_series_max {
        return Err(RecordError::TooManyLabels { count: labels.len(), max: limits.labels_per_series_max });
    }
    for (i, (k, v)) in labels.iter().enumerate() {
        let (k, v) = (k.as_ref(), v.as_ref());
        check_len("label name", k.len(), limits.label_name_bytes_max)?;
        if !is_valid_label_name(k) {
            return Err(RecordError::LabelName(k.to_string()));
        }
        if k.starts_with("__") {
            return Err(RecordError::ReservedLabel(k.to_string()));
        }
        if labels[..i].iter().any(|(other, _)| other.as_ref() == k) {
            return Err(RecordError::DuplicateLabel(k.to_string()));
        }
        // The field name is built only for the error: this runs for every series ingested.
        if v.len() > limits.label_value_bytes_max {
            check_len(&format!("labels.{k}"), v.len(), limits.label_value_bytes_max)?;
        }
    }
    Ok(())
}

/// Checks a timestamp against the future skew limit.
pub fn check_timestamp(timestamp_ns: i64, now_ns: i64, limits: &Limits) -> Result<i64, RecordError> {
    let ahead_ns = timestamp_ns.saturating_sub(now_ns);
    let max_ns = i64::try_from(limits.future_skew_ms).unwrap_or(i64::MAX / 1_000_000).saturating_mul(1_000_000);
    if ahead_ns > max_ns {
        return Err(RecordError::Future { ahead_ms: ahead_ns / 1_000_000, max_ms: limits.future_skew_ms });
    }
    Ok(timestamp_ns)
}

/// Validates an event (`type`, `timestamp`, `source_id`, `event_id`, `data`) and turns it into the
/// stored form.
pub fn normalize_event(v: Value, now_ns: i64, limits: &Limits) -> Result<Event, RecordError> {
    let mut obj = into_object(v)?;
    let timestamp_ns = timestamp(&mut obj, now_ns, limits)?;
    let event_type = required_id(&mut obj, "type", limits)?;
    let source_id = required_id(&mut obj, "source_id", limits)?;
    let event_id = optional_id(&mut obj, "event_id", limits)?;
    let data = match obj.remove("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => return Err(type_err("data", "an object", &other)),
    };
    if !data.is_empty() {
        check_json_len("data", &data, limits.attributes_bytes_max)?;
    }
    if let Some(k) = obj.keys().next() {
        return Err(RecordError::UnknownField(k.clone()));
    }
    Ok(Event { event_type, timestamp_ns, source_id, event_id, data })
}

fn into_object(v: Value) -> Result<Map<String, Value>, RecordError> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(RecordError::NotAnObject(type_name(&other))),
    }
}

fn timestamp(obj: &mut Map<String, Value>, now_ns: i64, limits: &Limits) -> Result<i64, RecordError> {
    let ts = match obj.remove("timestamp") {
        None | Some(Value::Null) => return Ok(now_ns),
        Some(v) => parse_timestamp(&v)?,
    };
    check_timestamp(ts, now_ns, limits)
}

fn required_id(obj: &mut Map<String, Value>, field: &'static str, limits: &Limits) -> Result<String, RecordError> {
    optional_id(obj, field, limits)?.ok_or(RecordError::Missing(field))
}

fn optional_id(
    obj: &mut Map<String, Value>,
    field: &'static str,
    limits: &Limits,
) -> Result<Option<String>, RecordError> {
    id_value(field, obj.remove(field), limits)
}

/// An id field's value, if it has one: a string, not empty, within `id_bytes_max`.
fn id_value(field: &'static str, v: Option<Value>, limits: &Limits) -> Result<Option<String>, RecordError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            check_id(field, &s, limits)?;
            Ok(Some(s))
        }
        Some(other) => Err(type_err(field, "a string", &other)),
    }
}

fn check_id(field: &'static str, id: &str, limits: &Limits) -> Result<(), RecordError> {
    if id.is_empty() {
        return Err(RecordError::Empty(field));
    }
    check_len(field, id.len(), limits.id_bytes_max)
}

fn take_alias(obj: &mut Map<String, Value>, name: &'static str, alias: &'static str) -> Option<(&'static str, Value)> {
    obj.remove(name).map(|v| (name, v)).or_else(|| obj.remove(alias).map(|v| (alias, v)))
}

fn check_len(field: &str, len: usize, max: usize) -> Result<(), RecordError> {
    if len > max {
        return Err(RecordError::TooLong { field: field.to_string(), len, max });
    }
    Ok(())
}

fn type_err(field: &str, expected: &'static str, got: &Value) -> RecordError {
    RecordError::Type { field: field.to_string(), expected, got: type_name(got) }
}

/// Whether `m` written as JSON is longer than `max`: `Err` with its length if so. The writing
/// is counted only when a bound says it might be (a string's byte is 6 written at most, as
/// `\u0000`; a number 24): attributes are small next to their limit, and the line writes them
/// once more anyway.
fn check_json_len(field: &str, m: &Map<String, Value>, max: usize) -> Result<(), RecordError> {
    fn bound(v: &Value) -> usize {
        match v {
            Value::Null | Value::Bool(_) => 5,
            Value::Number(_) => 24,
            Value::String(s) => 2 + 6 * s.len(),
            Value::Array(a) => a.iter().fold(2, |n, v| n.saturating_add(bound(v) + 1)),
            Value::Object(m) => object_bound(m),
        }
    }
    fn object_bound(m: &Map<String, Value>) -> usize {
        m.iter().fold(2, |n, (k, v)| n.saturating_add(2 + 6 * k.len() + 2 + bound(v)))
    }
    if object_bound(m) <= max {
        return Ok(());
    }
    check_len(field, json_len(m), max)
}

/// The length of `m` as JSON, counted without keeping the text.
fn json_len(m: &Map<String, Value>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, m).map_or(usize::MAX, |()| count.0)
}

fn parse_special_float(s: &str) -> Option<f64> {
    match s {
        "NaN" | "nan" => Some(f64::NAN),
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse::<f64>().ok(),
    }
}

/// JSON has no NaN or infinities; they travel as the strings Prometheus uses.
mod json_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_nan() {
            // Keep the payload bits: a Prometheus staleness marker is a NaN with a particular payload.
            s.serialize_str(&format!("NaN:{:016x}", v.to_bits()))
        } else if v.is_infinite() {
            s.serialize_str(if *v > 0.0 { "+Inf" } else { "-Inf" })
        } else {
            s.serialize_f64(*v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Num(f64),
            Str(String),
        }
        match Repr::deserialize(d)? {
            Repr::Num(n) => Ok(n),
            Repr::Str(s) => {
                if let Some(bits) = s.strip_prefix("NaN:") {
                    return u64::from_str_radix(bits, 16).map(f64::from_bits).map_err(serde::de::Error::custom);
                }
                super::parse_special_float(&s).ok_or_else(|| serde::de::Error::custom(format!("bad float {s:?}")))
            }
        }
    }
}

/// `,"name":` and `value` as a JSON string.
fn write_json_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    write_json_str(out, value);
}

/// Whether any of the 8 bytes of `w` must be escaped in a JSON string: a control byte (below
/// 0x20), `"` or `\`. Each test is exact for "any byte": no false positives, so a word without
/// one is copied as it is.
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below_0x20 = w.wrapping_sub(ONES * 0x20) & !w & HIGHS;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    below_0x20 | zero_byte(w ^ (ONES * u64::from(b'"'))) | zero_byte(w ^ (ONES * u64::from(b'\\'))) != 0
}

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes it (`\"`, `\\`, `\b`,
/// `\f`, `\n`, `\r`, `\t`, other control bytes as `\u00xx`; everything else as it is), looking
/// at 8 bytes at a time while none of them needs it.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        if let Some(word) = b.get(i..i + 8)
            && !word_needs_escape(u64::from_le_bytes(word.try_into().expect("8 bytes")))
        {
            i += 8;
            continue;
        }
        let c = b[i];
        let short = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x00..=0x1f => b'u',
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&b[start..i]);
        out.extend_from_slice(&[b'\\', short]);
        if short == b'u' {
            out.extend_from_slice(&[b'0', b'0', HEX[usize::from(c >> 4)], HEX[usize::from(c & 0xf)]]);
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Strings mixing plain runs longer than a word with every byte that needs escaping, and
    /// multi-byte characters.
    fn json_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop::collection::vec(
            prop_oneof![
                3 => "[a-z0-9 ]{0,20}",
                1 => (0u8..0x20).prop_map(|c| (c as char).to_string()),
                1 => prop::sample::select(vec!["\"", "\\", "/", "\u{7f}", "é", "日本", "🦀", "\u{2028}"]).prop_map(String::from),
            ],
            0..12,
        )
        .prop_map(|parts| parts.concat())
    }

    #[test]
    fn every_byte_that_needs_escaping_is_escaped_as_serde_json_does() {
        for c in 0u8..=0x7f {
            let s = format!("abcdefgh{}ijklmnopq{}", c as char, c as char);
            let mut out = Vec::new();
            write_json_str(&mut out, &s);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap(), "byte {c:#04x}");
        }
    }

    proptest::proptest! {
        #[test]
        fn a_stored_line_is_the_bytes_serde_json_writes(
            message in json_text(),
            source_id in json_text(),
            ids in proptest::collection::vec(proptest::option::of(json_text()), 4),
            attribute in proptest::option::of((json_text(), json_text())),
            timestamp_ns in proptest::prelude::any::<i64>(),
        ) {
            let mut line = LogLine {
                timestamp_ns,
                source_id,
                level: "info".into(),
                message,
                run_id: ids[0].clone(),
                trace_id: ids[1].clone(),
                service: ids[2].clone(),
                host: ids[3].clone(),
                attributes: Map::new(),
            };
            if let Some((k, v)) = attribute {
                line.attributes.insert(k, Value::String(v));
                line.attributes.insert("n".into(), json!([1, null, {"x": 2.5}]));
            }
            let mut out = vec![b'x'];
            line.write_stored(&mut out);
            let want = serde_json::to_vec(&line).unwrap();
            proptest::prop_assert_eq!(&out[1..], want.as_slice());
        }

        /// A line written from borrowed fields is checked as `LogLine::checked` checks it and
        /// written as `write_stored` writes the checked line, under limits small enough to fail.
        #[test]
        fn a_borrowed_line_is_checked_and_written_as_a_log_line(
            message in json_text(),
            source_id in json_text(),
            level in "[a-zA-Z]{0,6}",
            ids in proptest::collection::vec(proptest::option::of(json_text()), 4),
            attributes in proptest::collection::btree_map(json_text(), json_text(), 0..3),
            max in 0usize..40,
        ) {
            let limits = Limits { id_bytes_max: max, log_line_bytes_max: max, attributes_bytes_max: max, ..Limits::default() };
            let line = LogLine {
                timestamp_ns: 7,
                source_id,
                level,
                message,
                run_id: ids[0].clone(),
                trace_id: ids[1].clone(),
                service: ids[2].clone(),
                host: ids[3].clone(),
                attributes: attributes.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect(),
            };
            let mut out = b"kept".to_vec();
            let written = line.as_ref().write_checked(&limits, &mut out, |out| {
                for (i, (k, v)) in attributes.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_json_str(out, k);
                    out.push(b':');
                    write_json_str(out, v);
                }
                attributes.len()
            });
            match line.checked(&limits) {
                Ok(line) => {
                    proptest::prop_assert!(written.is_ok());
                    let mut want = b"kept".to_vec();
                    line.write_stored(&mut want);
                    proptest::prop_assert_eq!(out, want);
                }
                Err(e) => {
                    proptest::prop_assert_eq!(written, Err(e));
                    proptest::prop_assert_eq!(out, b"kept".to_vec());
                }
            }
        }
    }

    const NOW: i64 = 1_700_000_000_000_000_000;

    #[test]
    fn a_log_line_parsed_from_text_is_the_line_normalised_from_a_map() {
        let lines = [
            r#"{"source_id":"web-1","message":"hi","level":"WARN","timestamp":1700000000000,"k":1}"#,
            r#"{"source_id":"a","message":"m","attributes":{"k":"inner"},"k":"outer","x":[1,{"y":null}]}"#,
            r#"{"source_id":"a","message":"first","message":"second"}"#,
            r#"{"sour\u0063e_id":"escaped key","mess\u0061ge":"m\n","trace_id":"t","host":"h","service":"s","run_id":"r"}"#,
            r#"{"source_id":"a","message":"m","tenant":null}"#,
            r#"{"source_id":null,"message":"m"}"#,
            r#"{"source_id":"","message":"m"}"#,
            r#"{"source_id":"a","message":7}"#,
            r#"{"source_id":"a"}"#,
            r#"{"source_id":"a","message":"m","attributes":[1]}"#,
            r#"{"source_id":"a","message":"m","level":null,"timestamp":null}"#,
            r#"{"source_id":"a","message":"m","timestamp":"yesterday"}"#,
            r#"{"source_id":"a","message":"m","timestamp":1}"#,
            r#"{}"#,
        ];
        let limits = Limits::default();
        for line in lines {
            let from_text = serde_json::from_str::<LogFields>(line).unwrap().normalize(NOW, &limits);
            let from_map = normalize_log(serde_json::from_str(line).unwrap(), NOW, &limits);
            assert_eq!(format!("{from_text:?}"), format!("{from_map:?}"), "{line}");
        }
        for not_an_object in ["[1]", "\"text\"", "3", "null"] {
            assert!(serde_json::from_str::<LogFields>(not_an_object).unwrap_err().is_data(), "{not_an_object}");
        }
        let long = format!(r#"{{"source_id":"a","message":"{}"}}"#, "x".repeat(limits.log_line_bytes_max + 1));
        let err = serde_json::from_str::<LogFields>(&long).unwrap().normalize(NOW, &limits).unwrap_err();
        assert!(matches!(err, RecordError::TooLong { .. }), "{err:?}");
    }

    #[test]
    fn the_json_length_is_checked_as_exactly_as_by_writing_it() {
        let maps = [
            json!({}),
            json!({"k": "v"}),
            json!({"ctl": "\u{0}\u{1}\n\"", "é": "ünïcode", "n": -2.2250738585072014e-308, "i": i64::MIN}),
            json!({"a": [1, [true, null], {"b": "c"}], "u": u64::MAX, "f": false}),
            json!({"long": "x".repeat(300)}),
        ];
        for m in maps {
            let m = m.as_object().unwrap().clone();
            let exact = json_len(&m);
            assert_eq!(exact, serde_json::to_vec(&m).unwrap().len());
            for max in [0, exact.saturating_sub(1), exact, exact + 1, 10 * exact + 100] {
                let checked = check_json_len("attributes", &m, max);
                assert_eq!(checked.is_ok(), exact <= max, "{m:?} against {max}");
                if let Err(RecordError::TooLong { len, .. }) = checked {
                    assert_eq!(len, exact);
                }
            }
        }
    }

    #[test]
    fn an_event_read_in_place_has_the_fields_of_the_event() {
        let event = Event {
            event_type: "deploy \"blue\"".into(),
            timestamp_ns: -5,
            source_id: "web-1".into(),
            event_id: Some("e\u{e9}1".into()),
            data: json!({"n": 1.5, "big": 12345678901234567890u64, "s": "a\nb", "t": true, "z": null,
                "o": {"k": [1, "x"]}})
            .as_object()
            .unwrap()
            .clone(),
        };
        let payload = serde_json::to_vec(&event).unwrap();
        let e = EventRef::parse(&payload).unwrap();
        assert_eq!((e.event_type.as_ref(), e.timestamp_ns, e.source_id.as_ref()), ("deploy \"blue\"", -5, "web-1"));
        assert!(matches!(e.source_id, Cow::Borrowed(_)), "no escapes: borrowed");
        assert_eq!(e.event_id.as_deref(), Some("e\u{e9}1"));
        assert_eq!(e.data.0.len(), event.data.len());
        for (k, v) in &event.data {
            assert_eq!(e.data.get(k).unwrap().get(), v.to_string(), "{k}");
        }
        assert_eq!(raw_number(e.data.get("n").unwrap()), Some(1.5));
        assert_eq!(raw_number(e.data.get("big").unwrap()), Some(12345678901234567890u64 as f64));
        assert_eq!(raw_number(e.data.get("s").unwrap()), None);
        assert_eq!(raw_string(e.data.get("s").unwrap()).as_deref(), Some("a\nb"));
        assert_eq!(raw_string(e.data.get("t").unwrap()), None);
        assert!(e.data.contains("z") && !e.data.contains("missing"));
        let bare = EventRef::parse(br#"{"type": "x", "timestamp_ns": 1, "source_id": "s", "data": {"a": 1, "a": 2}}"#)
            .unwrap();
        assert_eq!((bare.event_id, bare.data.get("a").unwrap().get()), (None, "2"), "the last of a repeated field");
        assert!(EventRef::parse(br#"{"type": "x", "timestamp_ns": 1, "source_id": "s", "data": [1]}"#).is_err());
        assert!(EventRef::parse(br#"{"type": "x", "source_id": "s"}"#).is_err());
    }

    fn log(v: Value) -> Result<LogLine, RecordError> {
        normalize_log(v, NOW, &Limits::default())
    }

    fn metric(v: Value) -> Result<MetricPoint, RecordError> {
        normalize_metric(v, NOW, &Limits::default())
    }

    #[test]
    fn log_lines_normalise() {
        let l = log(json!({"timestamp": 1_700_000_000_000i64, "source_id": "web-1", "level": "WARN",
            "message": "disk full", "run_id": "r1", "attributes": {"user_id": 42}, "pod": "p-1"}))
        .unwrap();
        assert_eq!(l.timestamp_ns, NOW);
        assert_eq!(l.level, "warn");
        assert_eq!(l.run_id.as_deref(), Some("r1"));
        assert_eq!(l.attributes["user_id"], json!(42));
        assert_eq!(l.attributes["pod"], json!("p-1"), "unknown top-level fields become attributes");
        let no_ts = log(json!({"source_id": "a", "message": "m"})).unwrap();
        assert_eq!(no_ts.timestamp_ns, NOW, "receive time when absent");
        assert_eq!(no_ts.level, "unknown");
    }

    #[test]
    fn log_errors_name_the_field() {
        let cases = [
            (json!({"message": "m"}), r#"field "source_id" is required"#),
            (json!({"source_id": "a"}), r#"field "message" is required"#),
            (json!({"source_id": 7, "message": "m"}), r#"field "source_id" must be a string, got a number"#),
            (json!({"source_id": "a", "message": ["m"]}), r#"field "message" must be a string, got an array"#),
            (
                json!({"source_id": "a", "message": "m", "timestamp": "soon"}),
                r#"timestamp "soon" is neither RFC 3339 (2026-11-24T09:30:00Z) nor integer Unix milliseconds"#,
            ),
            (json!({"source_id": "a", "message": "m", "tenant": "other"}), r#"unknown field "tenant""#),
            (json!({"source_id": "", "message": "m"}), r#"field "source_id" must not be empty"#),
            (json!([1]), "record must be a JSON object, got an array"),
            (
                json!({"source_id": "a", "message": "m", "timestamp": (NOW / 1_000_000) + 11 * 60 * 1000}),
                "timestamp is 660000 ms in the future, more than the limit of 600000 ms",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(log(input.clone()).unwrap_err().to_string(), want, "{input}");
        }
        let long = "x".repeat(256 * 1024 + 1);
        assert_eq!(
            log(json!({"source_id": "a", "message": long})).unwrap_err().to_string(),
            r#"field "message" is 262145 bytes, more than the limit of 262144"#
        );
    }

    #[test]
    fn metrics_validate_names_and_labels() {
        let m = metric(json!({"metric_name": "http_requests_total", "tags": {"code": "200", "instance": "h:9"},
            "value": 3, "timestamp": "2023-11-14T22:13:20Z"}))
        .unwrap();
        assert_eq!(m.name, "http_requests_total");
        assert_eq!(m.source_id, "h:9");
        assert_eq!(m.value, 3.0);
        assert!(metric(json!({"name": "up", "value": "NaN", "source_id": "s"})).unwrap().value.is_nan());
        let cases = [
            (json!({"name": "1up", "value": 1}), r#"metric name "1up" is not a valid Prometheus metric name"#),
            (json!({"name": "up", "labels": {"__x": "1"}, "value": 1}), r#"label name "__x" is reserved"#),
            (
                json!({"name": "up", "labels": {"a-b": "1"}, "value": 1}),
                r#"label name "a-b" is not a valid Prometheus label name"#,
            ),
            (
                json!({"name": "up", "labels": {"a": 1}, "value": 1}),
                r#"field "labels.a" must be a string, got a number"#,
            ),
            (
                json!({"name": "up", "value": "x"}),
                r#"metric value must be a number or one of "NaN", "+Inf", "-Inf", got "x""#,
            ),
            (json!({"name": "up"}), r#"field "value" is required"#),
            (json!({"name": "up", "value": 1, "extra": 1}), r#"unknown field "extra""#),
        ];
        for (input, want) in cases {
            assert_eq!(metric(input.clone()).unwrap_err().to_string(), want, "{input}");
        }
        let many: Map<String, Value> = (0..31).map(|i| (format!("l{i}"), json!("v"))).collect();
        assert_eq!(
            metric(json!({"name": "up", "labels": many, "value": 1})).unwrap_err().to_string(),
            "31 labels, more than the limit of 30"
        );
    }

    #[test]
    fn metric_values_round_trip_through_json() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        for v in [1.5, -0.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, stale, f64::MAX, f64::MIN_POSITIVE] {
            let p = MetricPoint {
                name: "m".into(),
                labels: BTreeMap::new(),
                value: v,
                timestamp_ns: 1,
                source_id: "s".into(),
            };
            let back: MetricPoint = serde_json::from_slice(&serde_json::to_vec(&p).unwrap()).unwrap();
            assert_eq!(back.value.to_bits(), v.to_bits());
        }
    }

    #[test]
    fn events_normalise() {
        let limits = Limits::default();
        let e = normalize_event(json!({"type": "signup", "source_id": "api", "data": {"plan": "pro"}}), NOW, &limits)
            .unwrap();
        assert_eq!(e.event_type, "signup");
        assert_eq!(e.data["plan"], json!("pro"));
        assert_eq!(
            normalize_event(json!({"source_id": "api"}), NOW, &limits).unwrap_err().to_string(),
            r#"field "type" is required"#
        );
        assert_eq!(
            normalize_event(json!({"type": "t", "source_id": "api", "data": 3}), NOW, &limits).unwrap_err().to_string(),
            r#"field "data" must be an object, got a number"#
        );
    }
}
