//! An `ExportLogsServiceRequest` read in place: its strings borrowed from the body and each
//! record's stored line written straight from them, where decoding into the prost types costs an
//! allocation for every attribute's key and value, and the mapping another copy into a JSON map.
//!
//! The reader takes a request only when it reads it exactly as prost would; anything else
//! (a malformed message, a singular message field sent twice, which protobuf merges, a group, a
//! value nested deeper than `DEPTH_MAX`) is `Unread::Irregular`, and the caller decodes the
//! request with prost instead, which either reads it or names what is wrong. So both readers
//! give the same lines and the same errors (a property test compares them), and the mapping is
//! the one described in `logs.rs`. What the reader's structures take is charged to the memory
//! budget (the request's `Budget`) as they grow, so a body of many tiny messages is refused
//! before it takes more.

use std::ops::Range;

use strata_model::{Limits, LogLineRef, RecordError, TenantId, check_timestamp, write_json_str};

use super::logs::severity_name;
use crate::ApiError;
use crate::budget::Budget;
use crate::ingest::Decoded;
use crate::wire::{FIXED32, FIXED64, LEN, Reader, VARINT};

/// How deep arrays and key-value lists may nest in a value read here (prost allows about 100
/// messages in all, so nothing read here is refused by prost for its depth).
const DEPTH_MAX: u32 = 32;

/// Why a request was not read here.
#[derive(Debug)]
pub(super) enum Unread {
    /// Left to prost.
    Irregular,
    /// The memory budget does not hold what reading it takes: the request's answer.
    Refused(ApiError),
}

impl From<String> for Unread {
    fn from(_: String) -> Unread {
        Unread::Irregular
    }
}

type Read<T> = Result<T, Unread>;

/// An `AnyValue`: `Null` when no value is set (or the `KeyValue` has none), arrays and key-value
/// lists as their message's bytes, read again when written.
#[derive(Debug, Clone, Copy)]
enum Any<'a> {
    Null,
    /// A string table's index, which exists only in profiles.
    Strindex,
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Array(&'a [u8]),
    Kvlist(&'a [u8]),
    Bytes(&'a [u8]),
}

struct Resource {
    attributes: Range<usize>,
    scopes: Range<usize>,
}

struct Scope<'a> {
    name: &'a str,
    version: &'a str,
    records: Range<usize>,
}

#[derive(Default)]
struct Record<'a> {
    time_unix_nano: u64,
    observed_time_unix_nano: u64,
    severity_number: i32,
    severity_text: &'a str,
    body: Option<Any<'a>>,
    attributes: Range<usize>,
    trace_id: &'a [u8],
    span_id: &'a [u8],
    event_name: &'a str,
}

/// A whole request: every resource, scope and record, their attributes in one vector; and the
/// request's budget, which what reading takes is charged to before it is allocated.
struct Parsed<'a, 'c> {
    resources: Vec<Resource>,
    scopes: Vec<Scope<'a>>,
    records: Vec<Record<'a>>,
    attributes: Vec<(&'a str, Any<'a>)>,
    budget: &'c mut Budget,
    /// Bytes that writing the arrays and key-value lists read so far will take, not charged yet.
    pending: usize,
}

impl Parsed<'_, '_> {
    /// Charges `bytes` of structures (twice over, for the slack of growing vectors) and what is
    /// pending.
    fn spend(&mut self, bytes: usize) -> Read<()> {
        let bytes = bytes.saturating_mul(2).saturating_add(std::mem::take(&mut self.pending));
        self.budget.spend(bytes).map_err(Unread::Refused)
    }
}

/// What `n` values of `T` take.
fn size<T>(n: usize) -> usize {
    n.saturating_mul(std::mem::size_of::<T>())
}

/// The next field of `r`: its number and wire type, refused where prost would refuse it
/// (field 0, a number past 32 bits) or skip it as a group.
fn field(r: &mut Reader<'_>) -> Read<(u64, u64)> {
    let (number, wire) = r.key()?;
    if number == 0 || number > u64::from(u32::MAX >> 3) || !matches!(wire, VARINT | FIXED64 | LEN | FIXED32) {
        return Err(Unread::Irregular);
    }
    Ok((number, wire))
}

fn want(wire: u64, expected: u64) -> Read<()> {
    if wire == expected { Ok(()) } else { Err(Unread::Irregular) }
}

fn text<'a>(r: &mut Reader<'a>, wire: u64) -> Read<&'a str> {
    want(wire, LEN)?;
    std::str::from_utf8(r.bytes()?).map_err(|_| Unread::Irregular)
}

fn bytes<'a>(r: &mut Reader<'a>, wire: u64) -> Read<&'a [u8]> {
    want(wire, LEN)?;
    Ok(r.bytes()?)
}

fn varint(r: &mut Reader<'_>, wire: u64) -> Read<u64> {
    want(wire, VARINT)?;
    Ok(r.varint()?)
}

fn fixed64(r: &mut Reader<'_>, wire: u64) -> Read<u64> {
    want(wire, FIXED64)?;
    Ok(u64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes")))
}

fn parse<'a, 'c>(body: &'a [u8], budget: &'c mut Budget) -> Read<Parsed<'a, 'c>> {
    let mut p = Parsed {
        resources: Vec::new(),
        scopes: Vec::new(),
        records: Vec::new(),
        attributes: Vec::new(),
        budget,
        pending: 0,
    };
    let mut r = Reader { b: body };
    while !r.b.is_empty() {
        match field(&mut r)? {
            (1, wire) => {
                let message = bytes(&mut r, wire)?;
                resource_logs(message, &mut p)?;
            }
            (_, wire) => r.skip(wire)?,
        }
    }
    p.spend(0)?;
    Ok(p)
}

fn resource_logs<'a>(b: &'a [u8], p: &mut Parsed<'a, '_>) -> Read<()> {
    let mut r = Reader { b };
    let mut attributes = None;
    let scopes = p.scopes.len();
    while !r.b.is_empty() {
        match field(&mut r)? {
            (1, wire) if attributes.is_none() => attributes = Some(resource(bytes(&mut r, wire)?, p)?),
            (2, wire) => {
                let message = bytes(&mut r, wire)?;
                scope_logs(message, p)?;
            }
            (3, wire) => drop(text(&mut r, wire)?),
            (1, _) => return Err(Unread::Irregular),
            (_, wire) => r.skip(wire)?,
        }
    }
    let attributes = attributes.unwrap_or(0..0);
    p.spend(size::<Resource>(1))?;
    p.resources.push(Resource { attributes, scopes: scopes..p.scopes.len() });
    Ok(())
}

/// A `Resource`: its attributes into `p`, as a range of them.
fn resource<'a>(b: &'a [u8], p: &mut Parsed<'a, '_>) -> Read<Range<usize>> {
    let start = p.attributes.len();
    let mut r = Reader { b };
    while !r.b.is_empty() {
        match field(&mut r)? {
            (1, wire) => {
                let kv = key_value(bytes(&mut r, wire)?, 0, &mut p.pending)?;
                p.spend(size::<(&str, Any<'_>)>(1))?;
                p.attributes.push(kv);
            }
            (2, wire) => drop(varint(&mut r, wire)?),
            (3, wire) => entity_ref(bytes(&mut r, wire)?)?,
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(start..p.attributes.len())
}

/// An `EntityRef` of a resource: not used, but read for prost's checks.
fn entity_ref(b: &[u8]) -> Read<()> {
    let mut r = Reader { b };
    while !r.b.is_empty() {
        match field(&mut r)? {
            (1..=4, wire) => drop(text(&mut r, wire)?),
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(())
}

fn scope_logs<'a>(b: &'a [u8], p: &mut Parsed<'a, '_>) -> Read<()> {
    let mut r = Reader { b };
    let mut scope = None;
    let records = p.records.len();
    while !r.b.is_empty() {
        match field(&mut r)? {
            (1, wire) if scope.is_none() => scope = Some(instrumentation_scope(bytes(&mut r, wire)?)?),
            (2, wire) => {
                let message = bytes(&mut r, wire)?;
                let record = log_record(message, p)?;
                p.spend(size::<Record<'_>>(1))?;
                p.records.push(record);
            }
            (3, wire) => drop(text(&mut r, wire)?),
            (1, _) => return Err(Unread::Irregular),
            (_, wire) => r.skip(wire)?,
        }
    }
    let (name, version) = scope.unwrap_or(("", ""));
    p.spend(size::<Scope<'_>>(1))?;
    p.scopes.push(Scope { name, version, records: records..p.records.len() });
    Ok(())
}

/// An `InstrumentationScope`'s name and version (its attributes are read for prost's checks only).
fn instrumentation_scope(b: &[u8]) -> Read<(&str, &str)> {
    let mut r = Reader { b };
    let (mut name, mut version) = ("", "");
    while !r.b.is_empty() {
        match field(&mut r)? {
            (1, wire) => name = text(&mut r, wire)?,
            (2, wire) => version = text(&mut r, wire)?,
            (3, wire) => drop(key_value(bytes(&mut r, wire)?, 0, &mut 0)?),
            (4, wire) => drop(varint(&mut r, wire)?),
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok((name, version))
}

fn log_record<'a>(b: &'a [u8], p: &mut Parsed<'a, '_>) -> Read<Record<'a>> {
    let mut r = Reader { b };
    let start = p.attributes.len();
    let mut record = Record::default();
    while !r.b.is_empty() {
        match field(&mut r)? {
            (1, wire) => record.time_unix_nano = fixed64(&mut r, wire)?,
            (11, wire) => record.observed_time_unix_nano = fixed64(&mut r, wire)?,
            (2, wire) => record.severity_number = varint(&mut r, wire)? as i32,
            (3, wire) => record.severity_text = text(&mut r, wire)?,
            (5, wire) if record.body.is_none() => {
                record.body = Some(any_value(bytes(&mut r, wire)?, 0, &mut p.pending)?)
            }
            (5, _) => return Err(Unread::Irregular),
            (6, wire) => {
                let kv = key_value(bytes(&mut r, wire)?, 0, &mut p.pending)?;
                p.spend(size::<(&str, Any<'_>)>(1))?;
                p.attributes.push(kv);
            }
            (7, wire) => drop(varint(&mut r, wire)?),
            (8, wire) => {
                want(wire, FIXED32)?;
                r.take(4)?;
            }
            (9, wire) => record.trace_id = bytes(&mut r, wire)?,
            (10, wire) => record.span_id = bytes(&mut r, wire)?,
            (12, wire) => record.event_name = text(&mut r, wire)?,
            (_, wire) => r.skip(wire)?,
        }
    }
    record.attributes = start..p.attributes.len();
    Ok(record)
}

/// A `KeyValue`; `spent` counts the key-value lists in its value (see `any_value`).
fn key_value<'a>(b: &'a [u8], depth: u32, spent: &mut usize) -> Read<(&'a str, Any<'a>)> {
    let mut r = Reader { b };
    let (mut key, mut value) = ("", None);
    while !r.b.is_empty() {
        match field(&mut r)? {
            (1, wire) => key = text(&mut r, wire)?,
            (2, wire) if value.is_none() => value = Some(any_value(bytes(&mut r, wire)?, depth, spent)?),
            (2, _) => return Err(Unread::Irregular),
            (3, wire) => drop(varint(&mut r, wire)?),
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok((key, value.unwrap_or(Any::Null)))
}

/// One `AnyValue`, with the arrays and lists in it checked to the bottom; `spent` counts what
/// writing its arrays and key-value lists will take (a list's pairs are collected to be sorted).
fn any_value<'a>(b: &'a [u8], depth: u32, spent: &mut usize) -> Read<Any<'a>> {
    let mut r = Reader { b };
    let mut value = None;
    while !r.b.is_empty() {
        let (number, wire) = field(&mut r)?;
        let v = match number {
            1 => Any::Str(text(&mut r, wire)?),
            2 => Any::Bool(varint(&mut r, wire)? != 0),
            3 => Any::Int(varint(&mut r, wire)? as i64),
            4 => Any::Double(f64::from_bits(fixed64(&mut r, wire)?)),
            5 | 6 => {
                let message = bytes(&mut r, wire)?;
                if depth >= DEPTH_MAX {
                    return Err(Unread::Irregular);
                }
                // Written out as JSON later: at most six bytes for a byte of its strings (a
                // control character's escape), and a number's text for its few bytes.
                *spent = spent.saturating_add(message.len().saturating_mul(6));
                each_element(message, |element| match number {
                    5 => {
                        *spent = spent.saturating_add(32);
                        any_value(element, depth + 1, spent).map(drop)
                    }
                    _ => {
                        *spent = spent.saturating_add(size::<(&str, Any<'_>)>(2));
                        key_value(element, depth + 1, spent).map(drop)
                    }
                })?;
                if number == 5 { Any::Array(message) } else { Any::Kvlist(message) }
            }
            7 => Any::Bytes(bytes(&mut r, wire)?),
            8 => {
                varint(&mut r, wire)?;
                Any::Strindex
            }
            _ => {
                r.skip(wire)?;
                continue;
            }
        };
        // One of a oneof sent twice replaces or merges; prost decides which.
        if value.replace(v).is_some() {
            return Err(Unread::Irregular);
        }
    }
    Ok(value.unwrap_or(Any::Null))
}

/// Calls `f` with each element (field 1) of an `ArrayValue` or a `KeyValueList`.
fn each_element<'a>(b: &'a [u8], mut f: impl FnMut(&'a [u8]) -> Read<()>) -> Read<()> {
    let mut r = Reader { b };
    while !r.b.is_empty() {
        match field(&mut r)? {
            (1, wire) => f(bytes(&mut r, wire)?)?,
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(())
}

/// The messages of a logs request, for `decoded_bytes`: about 512 bytes a record and 128 for any
/// other message, the size of prost's structures with room for the growth of their vectors.
mod shape {
    use crate::wire::{LEAF, Shape};

    pub static REQUEST: Shape = Shape { bytes: 128, fields: &[(1, &RESOURCE_LOGS)] };
    static RESOURCE_LOGS: Shape = Shape { bytes: 128, fields: &[(1, &RESOURCE), (2, &SCOPE_LOGS)] };
    pub static RESOURCE: Shape = Shape { bytes: 128, fields: &[(1, &KEY_VALUE), (3, &LEAF)] };
    static SCOPE_LOGS: Shape = Shape { bytes: 128, fields: &[(1, &SCOPE), (2, &RECORD)] };
    pub static SCOPE: Shape = Shape { bytes: 128, fields: &[(3, &KEY_VALUE)] };
    static RECORD: Shape = Shape { bytes: 512, fields: &[(5, &ANY_VALUE), (6, &KEY_VALUE)] };
    pub static KEY_VALUE: Shape = Shape { bytes: 128, fields: &[(2, &ANY_VALUE)] };
    static ANY_VALUE: Shape = Shape { bytes: 128, fields: &[(5, &LIST), (6, &LIST)] };
    /// An `ArrayValue`'s values and a `KeyValueList`'s pairs: both at most a pair's cost.
    static LIST: Shape = Shape { bytes: 128, fields: &[(1, &KEY_VALUE)] };
}

pub(super) use shape::{KEY_VALUE, RESOURCE, SCOPE};

/// What decoding a protobuf logs request may take in memory beyond its own bytes (which the
/// caller counts twice already): see `wire::decoded_bytes`. Either reader allocates less.
pub(super) fn decoded_bytes(body: &[u8]) -> usize {
    crate::wire::decoded_bytes(body, &shape::REQUEST)
}

/// Writes `v` as `any_to_json` makes it.
fn write_any(out: &mut Vec<u8>, v: Any<'_>) {
    use std::io::Write as _;
    match v {
        Any::Null | Any::Strindex => out.extend_from_slice(b"null"),
        Any::Str(s) => write_json_str(out, s),
        Any::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Any::Int(i) => write!(out, "{i}").expect("writing to a Vec cannot fail"),
        Any::Double(d) if d.is_finite() => serde_json::to_writer(&mut *out, &d).expect("a finite double serialises"),
        Any::Double(d) => write_json_str(out, &d.to_string()),
        Any::Bytes(b) => {
            use base64::Engine as _;
            write_json_str(out, &base64::engine::general_purpose::STANDARD.encode(b));
        }
        Any::Array(b) => {
            out.push(b'[');
            let mut first = true;
            // Read once already: no element fails here.
            let _ = each_element(b, |element| {
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                write_any(out, any_value(element, 0, &mut 0).unwrap_or(Any::Null));
                Ok(())
            });
            out.push(b']');
        }
        Any::Kvlist(b) => {
            let mut members = Vec::new();
            let _ = each_element(b, |element| {
                members.push(key_value(element, 0, &mut 0).unwrap_or(("", Any::Null)));
                Ok(())
            });
            // A JSON map's order, and its last value of a key sent twice.
            members.reverse();
            out.push(b'{');
            write_members(out, &mut members, |out, v| write_any(out, *v));
            out.push(b'}');
        }
    }
}

/// Writes `members` as a JSON object's members, in key order and each key once (the first of
/// `members` to name it); returns how many.
fn write_members<V>(out: &mut Vec<u8>, members: &mut [(&str, V)], mut write: impl FnMut(&mut Vec<u8>, &V)) -> usize {
    members.sort_by(|a, b| a.0.cmp(b.0));
    let mut written = 0;
    let mut last: Option<&str> = None;
    for (key, value) in members.iter() {
        if last == Some(*key) {
            continue;
        }
        last = Some(key);
        if written > 0 {
            out.push(b',');
        }
        write_json_str(out, key);
        out.push(b':');
        write(out, value);
        written += 1;
    }
    written
}

/// A value of a line's attributes: one the request sent, or text the mapping made (an id's
/// bytes written as hex).
enum Attribute<'a> {
    Sent(Any<'a>),
    Text(&'a str),
    Hex(&'a [u8]),
}

/// Buffers a request's lines are written with, kept from one record to the next.
struct Scratch<'a> {
    /// A body that is not a string, as JSON.
    message: Vec<u8>,
    /// The trace id as hex.
    trace_id: Vec<u8>,
    /// The line's attributes before they are sorted.
    members: Vec<(&'a str, Attribute<'a>)>,
}

/// Decodes the log records of a protobuf request into `out` as `logs::decode` does with the
/// request decoded by prost; leaves `out`'s records untouched when the request is irregular (what
/// reading it took stays charged). What reading takes beyond the body's own bytes, the stored
/// lines included, is taken from `out`'s budget before it is allocated; when the budget refuses,
/// `out` holds part of the request.
pub(super) fn decode(
    body: &[u8],
    tenant: &TenantId,
    limits: &Limits,
    partitions: u32,
    out: &mut Decoded,
) -> Result<(), Unread> {
    let Parsed { resources, scopes, records, attributes: all_attributes, .. } = parse(body, &mut out.budget)?;
    let now = crate::ingest::now_ns();
    let mut payload = Vec::with_capacity(2048);
    let mut scratch = Scratch { message: Vec::new(), trace_id: Vec::new(), members: Vec::new() };
    let mut index = 0usize;
    for resource in &resources {
        let attributes = &all_attributes[resource.attributes.clone()];
        let service = attribute(attributes, "service.name");
        let host = attribute(attributes, "host.name");
        let source = host.or_else(|| attribute(attributes, "service.instance.id")).or(service).unwrap_or("otlp");
        let shared: Vec<(&str, Any<'_>)> =
            attributes.iter().filter(|(k, _)| *k != "service.name" && *k != "host.name").copied().collect();
        for scope in &scopes[resource.scopes.clone()] {
            for record in &records[scope.records.clone()] {
                out.total += 1;
                payload.clear();
                let line = Line { source, service, host, scope, shared: &shared, now };
                match line.write(record, &all_attributes[record.attributes.clone()], limits, &mut scratch, &mut payload)
                {
                    Ok(ts) => {
                        // `out` takes what the record's batch holds from the budget.
                        out.push(index, tenant, source, ts, &payload, partitions);
                        if let Some(e) = out.budget.refused() {
                            return Err(Unread::Refused(e.clone()));
                        }
                    }
                    Err(e) => out.errors.push((index, e)),
                }
                index += 1;
            }
        }
    }
    Ok(())
}

/// What a record's line takes from its resource and scope.
struct Line<'r, 'a> {
    source: &'a str,
    service: Option<&'a str>,
    host: Option<&'a str>,
    scope: &'r Scope<'a>,
    /// The resource's attributes but `service.name` and `host.name`.
    shared: &'r [(&'a str, Any<'a>)],
    now: i64,
}

impl<'a> Line<'_, 'a> {
    /// Writes the record's stored line to `payload`; returns its timestamp.
    fn write(
        &self,
        record: &Record<'a>,
        attributes: &[(&'a str, Any<'a>)],
        limits: &Limits,
        scratch: &mut Scratch<'a>,
        payload: &mut Vec<u8>,
    ) -> Result<i64, RecordError> {
        let Scratch { message, trace_id, members } = scratch;
        let sent = if record.time_unix_nano > 0 { record.time_unix_nano } else { record.observed_time_unix_nano };
        let timestamp_ns = match sent {
            0 => self.now,
            t => {
                let t = i64::try_from(t)
                    .map_err(|_| RecordError::Timestamp(strata_model::TimestampError::Range(t.to_string())))?;
                check_timestamp(t, self.now, limits)?
            }
        };
        let level = match record.severity_text.trim() {
            "" => severity_name(record.severity_number).unwrap_or("unknown"),
            text => text,
        };
        message.clear();
        let message = match record.body {
            None | Some(Any::Null) => "",
            Some(Any::Str(s)) => s,
            Some(body) => {
                write_any(message, body);
                std::str::from_utf8(message).expect("JSON written from UTF-8 is UTF-8")
            }
        };
        trace_id.clear();
        let trace_id = super::push_hex(trace_id, record.trace_id)
            .then(|| std::str::from_utf8(trace_id).expect("hex digits are ASCII"));
        let line = LogLineRef {
            timestamp_ns,
            source_id: self.source,
            level,
            message,
            run_id: None,
            trace_id,
            service: self.service,
            host: self.host,
        };
        line.write_checked(limits, payload, |out| {
            // In the order in which the mapping lets them win: the record's own (its last of a
            // name), then what the mapping adds, then the resource's (its first of a name).
            members.clear();
            members.extend(attributes.iter().rev().map(|&(k, v)| (k, Attribute::Sent(v))));
            if record.span_id.iter().any(|&b| b != 0) {
                members.push(("span_id", Attribute::Hex(record.span_id)));
            }
            if !record.event_name.is_empty() {
                members.push(("event.name", Attribute::Text(record.event_name)));
            }
            if !self.scope.name.is_empty() {
                members.push(("otel.scope.name", Attribute::Text(self.scope.name)));
            }
            if !self.scope.version.is_empty() {
                members.push(("otel.scope.version", Attribute::Text(self.scope.version)));
            }
            members.extend(self.shared.iter().map(|&(k, v)| (k, Attribute::Sent(v))));
            write_members(out, members, |out, v| match v {
                Attribute::Sent(v) => write_any(out, *v),
                Attribute::Text(s) => write_json_str(out, s),
                Attribute::Hex(bytes) => {
                    out.push(b'"');
                    super::push_hex(out, bytes);
                    out.push(b'"');
                }
            })
        })?;
        Ok(timestamp_ns)
    }
}

/// The string value of attribute `key` (the first of that name), if it is a string and not empty.
fn attribute<'a>(attributes: &[(&'a str, Any<'a>)], key: &str) -> Option<&'a str> {
    match attributes.iter().find(|(k, _)| *k == key)?.1 {
        Any::Str(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
    };
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use proptest::prelude::*;
    use prost::Message;

    use super::*;

    /// A decoded request as bytes that compare: each partition's records as a log batch, the
    /// request indexes they came from, and the errors.
    type Outcome = (usize, Vec<(u32, Vec<usize>, Vec<u8>)>, Vec<(usize, String)>);

    fn outcome(out: &Decoded) -> Outcome {
        let batches = out
            .batches
            .iter()
            .map(|(p, b)| {
                let mut bytes = Vec::new();
                strata_log::format::encode_batch(&mut bytes, 0, 0, &b.records);
                (*p, b.indexes.clone(), bytes)
            })
            .collect();
        // How far in the future a time is depends on the clock of each reader.
        let error = |e: &RecordError| match e {
            RecordError::Future { max_ms, .. } => format!("future, limit {max_ms}"),
            e => e.to_string(),
        };
        (out.total, batches, out.errors.iter().map(|(i, e)| (*i, error(e))).collect())
    }

    fn both(body: &[u8], limits: &Limits) -> (Option<Decoded>, Result<Decoded, prost::DecodeError>) {
        let tenant = TenantId::new("t").unwrap();
        let mut in_place = Decoded::new(None);
        let in_place = decode(body, &tenant, limits, 4, &mut in_place).ok().map(|()| in_place);
        let by_prost = ExportLogsServiceRequest::decode(body)
            .map(|r| super::super::logs::decode(r, &tenant, limits, 4, Decoded::new(None)));
        (in_place, by_prost)
    }

    /// A request of `log_records` in one resource and scope, encoded.
    fn encoded(log_records: Vec<LogRecord>) -> Vec<u8> {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs { log_records, ..Default::default() }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }

    /// `value` inside `depth` arrays of one element.
    fn nested(mut value: AnyValue, depth: u32) -> AnyValue {
        for _ in 0..depth {
            value = AnyValue { value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![value] })) };
        }
        value
    }

    /// Times are `now`'s give or take an hour, so that a second's difference between the two
    /// readers' clocks changes nothing; 0 takes the time of arrival, which differs, so it is
    /// not drawn.
    fn time() -> impl Strategy<Value = u64> {
        let now = crate::ingest::now_ns() as u64;
        prop_oneof![Just(now - 5_000_000_000), Just(now + 3_600_000_000_000_000), Just(u64::MAX), Just(17)]
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof!["[a-zA-Z._ ]{0,6}", "\\PC{0,12}", Just("service.name".into()), Just("host.name".into())]
    }

    fn any() -> impl Strategy<Value = AnyValue> {
        let leaf = prop_oneof![
            Just(None),
            text().prop_map(|s| Some(any_value::Value::StringValue(s))),
            proptest::bool::ANY.prop_map(|b| Some(any_value::Value::BoolValue(b))),
            proptest::num::i64::ANY.prop_map(|i| Some(any_value::Value::IntValue(i))),
            prop_oneof![proptest::num::f64::ANY, Just(f64::NAN), Just(f64::INFINITY), Just(-0.0)]
                .prop_map(|d| Some(any_value::Value::DoubleValue(d))),
            proptest::collection::vec(proptest::num::u8::ANY, 0..6).prop_map(|b| Some(any_value::Value::BytesValue(b))),
            Just(Some(any_value::Value::StringValueStrindex(3))),
        ]
        .prop_map(|value| AnyValue { value });
        leaf.prop_recursive(3, 12, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|values| AnyValue { value: Some(any_value::Value::ArrayValue(ArrayValue { values })) }),
                proptest::collection::vec((text(), proptest::option::of(inner)), 0..4).prop_map(|kvs| AnyValue {
                    value: Some(any_value::Value::KvlistValue(KeyValueList {
                        values: kvs
                            .into_iter()
                            .map(|(key, value)| KeyValue { key, value, ..Default::default() })
                            .collect(),
                    })),
                }),
            ]
        })
    }

    fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
        proptest::collection::vec((text(), proptest::option::of(any())), 0..5)
            .prop_map(|kvs| kvs.into_iter().map(|(key, value)| KeyValue { key, value, ..Default::default() }).collect())
    }

    fn record() -> impl Strategy<Value = LogRecord> {
        (
            (time(), time(), -2..30i32, prop_oneof![Just(String::new()), text(), Just(" WARN ".into())]),
            (proptest::option::of(any()), attributes()),
            (
                prop_oneof![Just(vec![]), Just(vec![0; 16]), proptest::collection::vec(proptest::num::u8::ANY, 0..17)],
                prop_oneof![Just(vec![]), proptest::collection::vec(proptest::num::u8::ANY, 8)],
                prop_oneof![Just(String::new()), text()],
            ),
        )
            .prop_map(
                |(
                    (t, observed, severity_number, severity_text),
                    (body, attributes),
                    (trace_id, span_id, event_name),
                )| {
                    LogRecord {
                        time_unix_nano: t,
                        observed_time_unix_nano: observed,
                        severity_number,
                        severity_text,
                        body,
                        attributes,
                        trace_id,
                        span_id,
                        event_name,
                        ..Default::default()
                    }
                },
            )
    }

    fn request() -> impl Strategy<Value = ExportLogsServiceRequest> {
        let scope = (proptest::option::of((text(), text())), proptest::collection::vec(record(), 0..4)).prop_map(
            |(scope, log_records)| ScopeLogs {
                scope: scope.map(|(name, version)| InstrumentationScope { name, version, ..Default::default() }),
                log_records,
                ..Default::default()
            },
        );
        let resource = (proptest::option::of(attributes()), proptest::collection::vec(scope, 0..3)).prop_map(
            |(attributes, scope_logs)| ResourceLogs {
                resource: attributes.map(|attributes| Resource { attributes, ..Default::default() }),
                scope_logs,
                ..Default::default()
            },
        );
        proptest::collection::vec(resource, 0..3).prop_map(|resource_logs| ExportLogsServiceRequest { resource_logs })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Any request prost encodes is read in place, into the same lines and errors as
        /// through prost's types; with small limits too, so that every check is reached.
        #[test]
        fn read_in_place_as_through_prost(request in request(), small in proptest::bool::ANY) {
            let body = request.encode_to_vec();
            let limits = if small {
                Limits { id_bytes_max: 8, log_line_bytes_max: 10, attributes_bytes_max: 40, ..Limits::default() }
            } else {
                Limits::default()
            };
            let (in_place, by_prost) = both(&body, &limits);
            let in_place = in_place.expect("a request prost encodes is read in place");
            prop_assert_eq!(outcome(&in_place), outcome(&by_prost.unwrap()));
        }

        /// Cut or damaged, a request is either read in place as prost reads it, or left to
        /// prost; the reader never takes what prost refuses.
        #[test]
        fn damaged_requests_are_read_as_prost_reads_them(
            request in request(),
            cut in proptest::num::usize::ANY,
            flips in proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY), 0..3),
        ) {
            let mut body = request.encode_to_vec();
            if !body.is_empty() {
                body.truncate(cut % (body.len() + 1));
                for (at, byte) in flips {
                    if !body.is_empty() {
                        let n = body.len();
                        body[at % n] = byte;
                    }
                }
            }
            let (in_place, by_prost) = both(&body, &Limits::default());
            if let Some(in_place) = in_place {
                let by_prost = by_prost.expect("what is read in place, prost reads");
                prop_assert_eq!(outcome(&in_place), outcome(&by_prost));
            }
        }
    }

    #[test]
    fn what_prost_merges_or_refuses_is_left_to_it() {
        let kv = |key: &str| KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue("v".into())) }),
            ..Default::default()
        };
        let record = LogRecord { attributes: vec![kv("a")], ..Default::default() };
        let one = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource { attributes: vec![kv("service.name")], ..Default::default() }),
                scope_logs: vec![ScopeLogs { log_records: vec![record], ..Default::default() }],
                ..Default::default()
            }],
        }
        .encode_to_vec();
        let tenant = TenantId::new("t").unwrap();
        let read = |body: &[u8]| decode(body, &tenant, &Limits::default(), 4, &mut Decoded::new(None)).is_ok();
        assert!(read(&one));
        // A body whose record's `body` field comes twice: protobuf merges the two values.
        let twice = |field: u8, value: &[u8]| {
            let mut record = Vec::new();
            for _ in 0..2 {
                record.push(field << 3 | 2);
                record.push(value.len() as u8);
                record.extend_from_slice(value);
            }
            let scope = [&[2 << 3 | 2, record.len() as u8][..], &record].concat();
            let resource = [&[2 << 3 | 2, scope.len() as u8][..], &scope].concat();
            [&[1 << 3 | 2, resource.len() as u8][..], &resource].concat()
        };
        let body = twice(5, &[1 << 3 | 2, 1, b'x']);
        assert!(ExportLogsServiceRequest::decode(&body[..]).is_ok());
        assert!(!read(&body), "a singular message sent twice is prost's to merge");
        // Wire type 3 (a group); field 0 (key 2: field 0, wire type 2); a varint of 11 bytes.
        for body in
            [vec![1 << 3 | 3], vec![2, 0], vec![1 << 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]]
        {
            assert!(!read(&body), "{body:?}");
        }
        // A string that is not UTF-8, in a field the mapping does not use (a schema URL).
        let body = [&[1 << 3 | 2, 4, 3 << 3 | 2, 2][..], &[0xff, 0xfe]].concat();
        assert!(ExportLogsServiceRequest::decode(&body[..]).is_err());
        assert!(!read(&body));
    }

    #[test]
    fn what_decoding_takes_is_counted_by_message() {
        let kv = KeyValue {
            key: "k".into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue("v".into())) }),
            ..Default::default()
        };
        let record = LogRecord { attributes: vec![kv.clone(), kv], ..Default::default() };
        let body = encoded(vec![record.clone(), record]);
        // The request, one ResourceLogs, one ScopeLogs, and per record itself, two pairs and
        // their two values.
        assert_eq!(decoded_bytes(&body), 3 * 128 + 2 * (512 + 4 * 128));
        // Counting stops where the body stops parsing.
        assert_eq!(decoded_bytes(&[0x0a, 0x7f]), 128);
        // Nesting past prost's limit is counted to the limit, not further down.
        let record = LogRecord { body: Some(nested(AnyValue::default(), 300)), ..Default::default() };
        let deep = encoded(vec![record]);
        assert!(decoded_bytes(&deep) < 120 * 128 + 512);
    }

    #[test]
    fn what_reading_takes_is_charged_before_it_is_allocated() {
        let tenant = TenantId::new("t").unwrap();
        // Reads with a budget of `max` bytes; returns the outcome and what was charged.
        let read = |body: &[u8], max: usize| {
            let mut out = Decoded::new(None).with_budget(Budget::counting(max));
            let r = decode(body, &tenant, &Limits::default(), 4, &mut out);
            // What reading took, and what the records' batches took.
            (r, out.budget.spent())
        };
        // A thousand empty records in 2 KB take far more once read: charged step by step, and
        // refused when the budget runs out, before the structures grow past it.
        let records = [0x12, 0x00].repeat(1000);
        let scope = [&[0x12, 0xd0, 0x0f][..], &records].concat();
        let empty = [&[0x0a, 0xd3, 0x0f][..], &scope].concat();
        let resource_logs = ExportLogsServiceRequest::decode(&empty[..]).unwrap().resource_logs;
        assert_eq!(resource_logs[0].scope_logs[0].log_records.len(), 1000);
        let (r, charged) = read(&empty, usize::MAX);
        assert!(r.is_ok());
        assert!(charged >= 1000 * 2 * std::mem::size_of::<Record<'_>>(), "{charged}");
        let (r, charged) = read(&empty, crate::budget::CHARGE_STEP);
        assert!(matches!(r, Err(Unread::Refused(_))), "{r:?}");
        assert!(charged <= 3 * crate::budget::CHARGE_STEP, "{charged}");
        // A value's lists are charged for what writing them takes.
        let list = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![AnyValue { value: Some(any_value::Value::IntValue(i64::MIN)) }; 20_000],
            })),
        };
        let body = encoded(vec![LogRecord { body: Some(list), ..Default::default() }]);
        let (r, charged) = read(&body, usize::MAX);
        assert!(r.is_ok());
        assert!(charged >= 20_000 * "-9223372036854775808,".len(), "{charged}");
    }

    #[test]
    fn a_value_nested_past_the_depth_is_left_to_prost() {
        let value = nested(AnyValue { value: Some(any_value::Value::IntValue(1)) }, DEPTH_MAX + 1);
        let record = LogRecord { body: Some(value), ..Default::default() };
        let body = encoded(vec![record]);
        let (in_place, by_prost) = both(&body, &Limits::default());
        assert!(in_place.is_none());
        assert_eq!(by_prost.unwrap().total, 1);
    }
}
