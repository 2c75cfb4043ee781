//! JSON and NDJSON bodies decoded, validated and normalised record by record.

use axum::http::{HeaderMap, header};
use serde_json::Value;
use strata_model::{Kind, Limits, RecordError, TenantId};

use super::batch::Decoded;
use crate::ApiError;

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

pub(crate) fn now_ns() -> i64 {
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
            l.write_stored(payload);
            Ok((l.source_id, l.timestamp_ns))
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
/// Metric points go into `out`'s metric batches (`Decoded::with_metrics`), one record per source.
pub(super) fn decode(
    kind: Kind,
    tenant: &TenantId,
    body: &[u8],
    format: Format,
    limits: &Limits,
    partitions: u32,
    mut out: Decoded,
) -> Result<Decoded, ApiError> {
    let mut metrics = out.metrics.take();
    if (kind == Kind::Metrics) != metrics.is_some() || kind == Kind::Raw {
        return Err(ApiError::internal(format!("{kind:?} records cannot be decoded as JSON records")));
    }
    let now = now_ns();
    let mut payload = Vec::with_capacity(2048);
    let mut handle = |out: &mut Decoded, index: usize, parsed: Result<Value, RecordError>| {
        out.total += 1;
        if out.budget.refused().is_some() {
            // The request is answered with the refusal: the rest is not worth decoding.
            return;
        }
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
        let mut line_payload = Vec::with_capacity(2048);
        for line in lines(body) {
            if out.budget.refused().is_some() {
                break;
            }
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if kind == Kind::Logs {
                out.total += 1;
                match parse_log_line(line, now, limits) {
                    Ok(l) => out.push_line(index, tenant, &l, partitions, &mut line_payload),
                    Err(e) => out.errors.push((index, e)),
                }
            } else {
                let parsed = serde_json::from_slice::<Value>(line).map_err(|e| RecordError::Json(strip_position(&e)));
                handle(&mut out, index, parsed);
            }
            index += 1;
        }
    }
    if let Some(batches) = metrics {
        batches.finish(&mut out, tenant, partitions);
    }
    Ok(out)
}

/// The lines of a body, as `split` on `\n` gives them, found with `memchr`: a byte-at-a-time
/// split compared each byte of a 1 KiB line on its own.
fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(body);
    std::iter::from_fn(move || {
        let b = rest?;
        match memchr::memchr(b'\n', b) {
            Some(i) => {
                rest = Some(&b[i + 1..]);
                Some(&b[..i])
            }
            None => {
                rest = None;
                Some(b)
            }
        }
    })
}

/// One NDJSON log line, parsed straight into its fields (no map of the whole record is built).
fn parse_log_line(line: &[u8], now: i64, limits: &Limits) -> Result<strata_model::LogLine, RecordError> {
    match serde_json::from_slice::<strata_model::LogFields>(line) {
        Ok(fields) => fields.normalize(now, limits),
        // Valid JSON that is not an object: parsed again as a value, for the error to name it.
        Err(e) if e.is_data() => {
            let v = serde_json::from_slice::<Value>(line).map_err(|e| RecordError::Json(strip_position(&e)))?;
            strata_model::normalize_log(v, now, limits)
        }
        Err(e) => Err(RecordError::Json(strip_position(&e))),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use strata_model::partition_for;

    fn run(kind: Kind, body: &str, format: Format) -> Result<Decoded, ApiError> {
        decode(kind, &TenantId::new("t").unwrap(), body.as_bytes(), format, &Limits::default(), 4, Decoded::new(None))
    }

    #[test]
    fn lines_are_what_split_gives() {
        for body in ["", "\n", "a", "a\n", "a\nb", "\n\na\r\n\nbc\n", "no newline at all"] {
            let want: Vec<&[u8]> = body.as_bytes().split(|&b| b == b'\n').collect();
            assert_eq!(lines(body.as_bytes()).collect::<Vec<_>>(), want, "{body:?}");
        }
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
