//! The `events` table: deduplicated, enriched events (the `events_enriched` topic), one column
//! per top-level field of their `data`, and the `rejected` table for the events whose fields do
//! not fit it.
//!
//! Columns: `tenant` and `dt` (the event's UTC day; both partition the table), `timestamp`
//! (microseconds, UTC), `type`, `source_id`, `event_id`, then the data's fields. A field seen for
//! the first time becomes a nullable column of its value's type (boolean, a 64-bit integer, a
//! double, or a string; objects and arrays are kept as their JSON text in a string column); an
//! integer column becomes a double one when a batch brings a fraction. A field named like one of
//! the fixed columns is stored as `data_<name>`, and characters Delta does not allow in a column
//! name become `_`. An event whose field has a type its column cannot hold (a string in a number
//! column) is never lost: it goes whole to the `rejected` table with the reason.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;
use serde_json::value::RawValue;
use strata_model::topic::EventsEnriched;
use strata_model::{EventRef, Topic as _, raw_string};
use strata_pipeline::{Decoded, Positions, SinkError, TopicSink};

use crate::Location;
use crate::day;
use crate::table::{Table, TableError};

/// Columns every event has, before those of its data.
const FIXED: [&str; 6] = ["tenant", "dt", "timestamp", "type", "source_id", "event_id"];

/// Columns a table may have at most; an event that would add more is rejected.
const COLUMNS_MAX: usize = 1024;

/// Characters a Delta column name may not hold (without column mapping).
const NOT_IN_NAMES: &[char] = &[' ', ',', ';', '{', '}', '(', ')', '\n', '\t', '='];

/// Where the lake is and how much it buffers.
#[derive(Debug, Clone)]
pub struct LakeConfig {
    /// The lake's root: tables are directories or prefixes below it (`events/`, `rejected/`).
    pub location: Location,
    /// Bytes of events buffered past which the sink commits before its interval ends.
    pub commit_bytes_max: usize,
    /// Partitions of the topic the sink reads.
    pub partitions: u32,
}

/// The column a data field is stored in.
/// Most fields are their own column's name, and cost no copy.
fn column_name(field: &str) -> Cow<'_, str> {
    let fine =
        !field.is_empty() && !field.contains(NOT_IN_NAMES) && !FIXED.iter().any(|f| f.eq_ignore_ascii_case(field));
    if fine {
        return Cow::Borrowed(field);
    }
    let mut name: String = field.chars().map(|c| if NOT_IN_NAMES.contains(&c) { '_' } else { c }).collect();
    if name.is_empty() {
        name.push('_');
    }
    if FIXED.iter().any(|f| f.eq_ignore_ascii_case(&name)) {
        name = format!("data_{name}");
    }
    Cow::Owned(name)
}

/// A field's value, read from its JSON text without building a `serde_json::Value`.
#[derive(Debug, Clone, PartialEq)]
enum Scalar<'a> {
    Null,
    Bool(bool),
    /// A number that is an integer within `i64`, as `serde_json` tells them apart.
    Int(i64),
    Float(f64),
    Text(Cow<'a, str>),
    /// An array or an object, kept as its JSON text.
    Json(&'a str),
}

impl<'a> Scalar<'a> {
    fn read(v: &'a RawValue) -> Scalar<'a> {
        let text = v.get().trim_start();
        match text.as_bytes().first() {
            None | Some(b'n') => Scalar::Null,
            Some(b't') => Scalar::Bool(true),
            Some(b'f') => Scalar::Bool(false),
            Some(b'"') => Scalar::Text(raw_string(v).unwrap_or_default()),
            Some(b'[' | b'{') => Scalar::Json(text.trim_end()),
            Some(_) => match text.trim_end() {
                // `serde_json` reads a negative zero as a double.
                "-0" => Scalar::Float(-0.0),
                text => {
                    text.parse::<i64>().map_or_else(|_| Scalar::Float(text.parse().unwrap_or(f64::NAN)), Scalar::Int)
                }
            },
        }
    }
}

/// The column type a value asks for (`None` for null, which fits any).
fn value_type(v: &Scalar) -> Option<DataType> {
    match v {
        Scalar::Null => None,
        Scalar::Bool(_) => Some(DataType::Boolean),
        Scalar::Int(_) => Some(DataType::Int64),
        Scalar::Float(_) => Some(DataType::Float64),
        Scalar::Text(_) | Scalar::Json(_) => Some(DataType::Utf8),
    }
}

/// Whether a column of type `t` holds `v`.
fn fits(t: &DataType, v: &Scalar) -> bool {
    matches!(
        (t, v),
        (_, Scalar::Null)
            | (DataType::Boolean, Scalar::Bool(_))
            | (DataType::Int64, Scalar::Int(_))
            | (DataType::Float64, Scalar::Int(_) | Scalar::Float(_))
            | (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, Scalar::Text(_) | Scalar::Json(_))
    )
}

fn type_name(v: &Scalar) -> &'static str {
    match v {
        Scalar::Null => "null",
        Scalar::Bool(_) => "a boolean",
        Scalar::Int(_) => "an integer",
        Scalar::Float(_) => "a number",
        Scalar::Text(_) => "a string",
        Scalar::Json(t) if t.starts_with('[') => "an array",
        Scalar::Json(_) => "an object",
    }
}

/// A data column being built: its values so far, one per row (null where a row lacks it).
enum Values {
    Boolean(BooleanBuilder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Utf8(StringBuilder),
}

impl Values {
    /// A builder of `t`'s values, starting with `nulls` nulls.
    fn new(t: &DataType, nulls: usize) -> Values {
        let mut v = match t {
            DataType::Boolean => Values::Boolean(BooleanBuilder::new()),
            DataType::Int64 => Values::Int64(Int64Builder::new()),
            DataType::Float64 => Values::Float64(Float64Builder::new()),
            _ => Values::Utf8(StringBuilder::new()),
        };
        for _ in 0..nulls {
            v.push(&Scalar::Null);
        }
        v
    }

    fn len(&self) -> usize {
        match self {
            Values::Boolean(b) => b.len(),
            Values::Int64(b) => b.len(),
            Values::Float64(b) => b.len(),
            Values::Utf8(b) => b.len(),
        }
    }

    /// Appends `v`, which fits the column (checked before; anything else is a null).
    fn push(&mut self, v: &Scalar) {
        match (self, v) {
            (Values::Boolean(b), Scalar::Bool(x)) => b.append_value(*x),
            (Values::Int64(b), Scalar::Int(i)) => b.append_value(*i),
            (Values::Float64(b), Scalar::Int(i)) => b.append_value(*i as f64),
            (Values::Float64(b), Scalar::Float(f)) => b.append_value(*f),
            (Values::Utf8(b), Scalar::Text(s)) => b.append_value(s),
            (Values::Utf8(b), Scalar::Json(t)) => b.append_value(t),
            (Values::Boolean(b), _) => b.append_null(),
            (Values::Int64(b), _) => b.append_null(),
            (Values::Float64(b), _) => b.append_null(),
            (Values::Utf8(b), _) => b.append_null(),
        }
    }

    /// The values so far, kept for more (a commit that fails is retried with them).
    fn array(&self) -> ArrayRef {
        match self {
            Values::Boolean(b) => Arc::new(b.finish_cloned()),
            Values::Int64(b) => Arc::new(b.finish_cloned()),
            Values::Float64(b) => Arc::new(b.finish_cloned()),
            Values::Utf8(b) => Arc::new(b.finish_cloned()),
        }
    }

    /// An integer column as a double one, with the same values.
    fn widen(&mut self) {
        if let Values::Int64(b) = self {
            let ints = b.finish_cloned();
            let mut f = Float64Builder::with_capacity(ints.len());
            ints.iter().for_each(|v| f.append_option(v.map(|i| i as f64)));
            *self = Values::Float64(f);
        }
    }
}

/// A data column of the next commit.
struct Column {
    name: String,
    data_type: DataType,
    /// Whether the table has the column already: its type is then fixed.
    in_table: bool,
    values: Values,
}

/// An event set aside for the `rejected` table.
struct Rejected {
    tenant: String,
    partition: u32,
    offset: u64,
    timestamp_ns: i64,
    payload: String,
    reason: String,
}

/// The rows of the next commit, built column by column as events arrive: memory holds Arrow
/// arrays, not parsed JSON.
#[derive(Default)]
struct Rows {
    tenant: StringBuilder,
    dt: StringBuilder,
    timestamp: TimestampMicrosecondBuilder,
    event_type: StringBuilder,
    source_id: StringBuilder,
    event_id: StringBuilder,
    columns: Vec<Column>,
    /// Each column's index, by name and by lowercase name (Delta does not tell names apart by
    /// case).
    by_name: HashMap<String, usize>,
    by_lowercase: HashMap<String, usize>,
    rows: usize,
    days: crate::Days,
    rejected: Vec<Rejected>,
}

/// What a row does with one of its fields.
enum Place {
    /// Into this column.
    Column(usize),
    /// Into this column, which becomes a double one first.
    Widen(usize),
    /// Into a new column of this name and type.
    New(String, DataType),
    /// Nowhere: the field is null and has no column.
    Skip,
}

impl Rows {
    /// Rows whose data columns start as the table's (`schema`, if it has been committed).
    fn new(schema: Option<&Schema>) -> Rows {
        let mut rows = Rows::default();
        for f in schema.map(|s| s.fields().iter().collect::<Vec<_>>()).unwrap_or_default() {
            if !FIXED.contains(&f.name().as_str()) {
                rows.add_column(f.name().clone(), f.data_type().clone(), true);
            }
        }
        rows
    }

    fn add_column(&mut self, name: String, data_type: DataType, in_table: bool) -> usize {
        let i = self.columns.len();
        self.by_name.insert(name.clone(), i);
        self.by_lowercase.insert(name.to_lowercase(), i);
        let values = Values::new(&data_type, self.rows);
        self.columns.push(Column { name, data_type, in_table, values });
        i
    }

    /// Where each field of `data` goes, or why the event cannot be a row.
    fn place(&self, data: &[(&str, Scalar)]) -> Result<Vec<Place>, String> {
        let mut places = Vec::with_capacity(data.len());
        let mut new_columns = 0;
        for (k, v) in data {
            let name = column_name(k);
            let place = match self.by_name.get(name.as_ref()) {
                Some(&i) => {
                    let c = &self.columns[i];
                    if fits(&c.data_type, v) {
                        Place::Column(i)
                    } else if !c.in_table && c.data_type == DataType::Int64 && matches!(v, Scalar::Float(_)) {
                        Place::Widen(i)
                    } else {
                        return Err(format!(
                            "field {k:?} is {} but its column {name:?} is {}",
                            type_name(v),
                            c.data_type
                        ));
                    }
                }
                None => {
                    if let Some(&i) = self.by_lowercase.get(&name.to_lowercase()) {
                        return Err(format!(
                            "field {k:?} differs from the column {:?} only in case, which Delta does not tell apart",
                            self.columns[i].name
                        ));
                    }
                    match value_type(v) {
                        None => Place::Skip,
                        Some(_) if self.columns.len() + new_columns + FIXED.len() >= COLUMNS_MAX => {
                            return Err(format!("field {k:?} would make the table wider than {COLUMNS_MAX} columns"));
                        }
                        Some(t) => {
                            new_columns += 1;
                            Place::New(name.into_owned(), t)
                        }
                    }
                }
            };
            places.push(place);
        }
        // Two fields that become the same column (`a b` and `a_b`) cannot both be kept.
        let mut seen: Vec<&str> = Vec::with_capacity(places.len());
        for p in &places {
            let name = match p {
                Place::Column(i) | Place::Widen(i) => self.columns[*i].name.as_str(),
                Place::New(n, _) => n.as_str(),
                Place::Skip => continue,
            };
            if seen.iter().any(|s| s.eq_ignore_ascii_case(name)) {
                return Err(format!("two fields of the event are both stored as the column {name:?}"));
            }
            seen.push(name);
        }
        Ok(places)
    }

    /// Adds one event: as a row, or to the rejected ones with the reason.
    fn push(&mut self, tenant: &str, partition: u32, offset: u64, event: &EventRef, payload: &[u8]) {
        // The fields in name order, a name sent twice counting once with its last value: as a
        // map of the data would hold them, so that new columns come in the same order.
        let mut data: Vec<(&str, Scalar)> =
            event.data.0.iter().rev().map(|(k, v)| (k.as_ref(), Scalar::read(v))).collect();
        data.sort_by(|a, b| a.0.cmp(b.0));
        data.dedup_by(|a, b| a.0 == b.0);
        let places = match self.place(&data) {
            Ok(p) => p,
            Err(reason) => {
                self.rejected.push(Rejected {
                    tenant: tenant.to_string(),
                    partition,
                    offset,
                    timestamp_ns: event.timestamp_ns,
                    payload: String::from_utf8_lossy(payload).into_owned(),
                    reason,
                });
                return;
            }
        };
        self.tenant.append_value(tenant);
        self.dt.append_value(self.days.of(event.timestamp_ns));
        self.timestamp.append_value(event.timestamp_ns.div_euclid(1000));
        self.event_type.append_value(&event.event_type);
        self.source_id.append_value(&event.source_id);
        self.event_id.append_option(event.event_id.as_deref());
        for (place, (_, v)) in places.into_iter().zip(&data) {
            let i = match place {
                Place::Skip => continue,
                Place::Column(i) => i,
                Place::Widen(i) => {
                    self.columns[i].values.widen();
                    self.columns[i].data_type = DataType::Float64;
                    i
                }
                Place::New(name, t) => self.add_column(name, t, false),
            };
            self.columns[i].values.push(v);
        }
        self.rows += 1;
        // Columns the event has no value for.
        for c in &mut self.columns {
            if c.values.len() < self.rows {
                c.values.push(&Scalar::Null);
            }
        }
    }

    /// The rows so far as one batch; they stay until `clear`.
    fn batch(&self) -> RecordBatch {
        let text = |b: &StringBuilder| -> ArrayRef { Arc::new(b.finish_cloned()) };
        let timestamp = self.timestamp.finish_cloned().with_timezone("UTC");
        let mut fields = vec![
            Field::new("tenant", DataType::Utf8, true),
            Field::new("dt", DataType::Utf8, true),
            Field::new("timestamp", utc_micros(), true),
            Field::new("type", DataType::Utf8, true),
            Field::new("source_id", DataType::Utf8, true),
            Field::new("event_id", DataType::Utf8, true),
        ];
        let mut arrays: Vec<ArrayRef> = vec![
            text(&self.tenant),
            text(&self.dt),
            Arc::new(timestamp),
            text(&self.event_type),
            text(&self.source_id),
            text(&self.event_id),
        ];
        for c in &self.columns {
            let array = c.values.array();
            fields.push(Field::new(&c.name, array.data_type().clone(), true));
            arrays.push(array);
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
            .expect("columns of equal length and their own types")
    }
}

/// The columns every event has.
pub(crate) fn first_columns() -> SchemaRef {
    Rows::default().batch().schema()
}

/// The columns of the `rejected` table.
pub(crate) fn rejected_columns() -> SchemaRef {
    rejected_batch(&[]).schema()
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The rejected events, whole, with their reason.
fn rejected_batch(rows: &[&Rejected]) -> RecordBatch {
    let mut tenant = StringBuilder::new();
    let mut dt = StringBuilder::new();
    let (mut topic, mut reason, mut payload) = (StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
    let (mut partition, mut offset) = (Int64Builder::new(), Int64Builder::new());
    for r in rows {
        tenant.append_value(&r.tenant);
        dt.append_value(day(r.timestamp_ns));
        topic.append_value(EventsEnriched::SPEC.name);
        partition.append_value(i64::from(r.partition));
        offset.append_value(r.offset as i64);
        reason.append_value(&r.reason);
        payload.append_value(&r.payload);
    }
    let schema = Schema::new(vec![
        Field::new("tenant", DataType::Utf8, true),
        Field::new("dt", DataType::Utf8, true),
        Field::new("topic", DataType::Utf8, true),
        Field::new("partition", DataType::Int64, true),
        Field::new("offset", DataType::Int64, true),
        Field::new("reason", DataType::Utf8, true),
        Field::new("payload", DataType::Utf8, true),
    ]);
    let arrays: Vec<ArrayRef> = vec![
        Arc::new(tenant.finish()),
        Arc::new(dt.finish()),
        Arc::new(topic.finish()),
        Arc::new(partition.finish()),
        Arc::new(offset.finish()),
        Arc::new(reason.finish()),
        Arc::new(payload.finish()),
    ];
    RecordBatch::try_new(Arc::new(schema), arrays).expect("columns of equal length")
}

/// Writes the `events` table (and `rejected`) from the `events_enriched` topic.
pub struct EventsSink {
    cfg: LakeConfig,
    events: Option<Table>,
    rejected: Option<Table>,
    /// How far the `rejected` table has recorded: its rows of records before are there already.
    rejected_to: Positions,
    rows: Rows,
    bytes: usize,
}

impl EventsSink {
    pub const GROUP: &'static str = "lake-events";

    pub fn new(cfg: LakeConfig) -> EventsSink {
        EventsSink { cfg, events: None, rejected: None, rejected_to: Positions::new(), rows: Rows::default(), bytes: 0 }
    }

    fn wanted(&self) -> Vec<(String, u32)> {
        (0..self.cfg.partitions).map(|p| (EventsEnriched::SPEC.name.to_string(), p)).collect()
    }
}

fn sink_error(e: TableError) -> SinkError {
    SinkError::Retry { reason: e.to_string() }
}

#[async_trait::async_trait]
impl TopicSink for EventsSink {
    type Topic = EventsEnriched;

    fn group(&self) -> &str {
        Self::GROUP
    }

    async fn committed(&mut self) -> Result<Positions, SinkError> {
        let events = Table::open_in(&self.cfg.location, "events").await.map_err(sink_error)?;
        let rejected = Table::open_in(&self.cfg.location, "rejected").await.map_err(sink_error)?;
        let wanted = self.wanted();
        self.rejected_to = rejected.positions(&wanted).await.map_err(sink_error)?;
        let positions = events.positions(&wanted).await.map_err(sink_error)?;
        self.rows = Rows::new(events.schema().as_deref());
        self.events = Some(events);
        self.rejected = Some(rejected);
        self.bytes = 0;
        Ok(positions)
    }

    async fn write<'r>(&mut self, partition: u32, records: &[Decoded<'r, EventsEnriched>]) -> Result<(), SinkError> {
        for d in records {
            self.bytes += d.payload().len();
            self.rows.push(d.tenant(), partition, d.offset(), &d.record, d.payload());
        }
        Ok(())
    }

    fn wants_commit(&self) -> bool {
        self.bytes >= self.cfg.commit_bytes_max
    }

    async fn commit(&mut self, positions: &Positions) -> Result<(), SinkError> {
        if self.rows.rows == 0 && self.rows.rejected.is_empty() {
            return Ok(());
        }
        // Rejected rows first, leaving out those an earlier commit of `rejected` holds already (a
        // crash between the two commits): that table records the same positions.
        let topic = EventsEnriched::SPEC.name.to_string();
        let reject: Vec<&Rejected> = self
            .rows
            .rejected
            .iter()
            .filter(|r| self.rejected_to.get(&(topic.clone(), r.partition)).is_none_or(|&to| r.offset >= to))
            .collect();
        if !reject.is_empty() {
            let n = reject.len() as u64;
            let batch = rejected_batch(&reject);
            let rejected = self.rejected.as_mut().expect("committed opens the tables");
            rejected.append(batch, positions).await.map_err(sink_error)?;
            metrics::counter!("strata_lake_rejected_rows_total", "table" => "events").increment(n);
        }
        // Kept whatever happens next: a retry of this commit does not write them again.
        self.rejected_to = positions.clone();
        self.rows.rejected.clear();
        if self.rows.rows > 0 {
            let events = self.events.as_mut().expect("committed opens the tables");
            // On failure the rows stay, and the runtime's retry commits them with any new ones.
            events.append(self.rows.batch(), positions).await.map_err(sink_error)?;
            metrics::counter!("strata_lake_rows_total", "table" => "events").increment(self.rows.rows as u64);
        }
        metrics::counter!("strata_lake_input_bytes_total", "table" => "events").increment(self.bytes as u64);
        self.rows = Rows::new(self.events.as_ref().and_then(|t| t.schema()).as_deref());
        self.bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_calendar_days() {
        assert_eq!(day(0), "1970-01-01");
        assert_eq!(day(-1), "1969-12-31");
        assert_eq!(day(1_700_000_000_000_000_000), "2023-11-14");
        assert_eq!(day(951_782_400_000_000_000), "2000-02-29");
        let mut days = crate::Days::default();
        for ns in [0, -1, 1, 86_399_999_999_999, 86_400_000_000_000, -86_400_000_000_001, 951_782_400_000_000_000] {
            assert_eq!(days.of(ns), day(ns), "{ns}");
        }
    }

    fn push(rows: &mut Rows, offset: u64, data: &str) {
        let payload = format!(r#"{{"type":"t","timestamp_ns":0,"source_id":"s","data":{data}}}"#);
        rows.push("a", 0, offset, &EventRef::parse(payload.as_bytes()).unwrap(), payload.as_bytes());
    }

    #[test]
    fn rows_are_built_column_by_column() {
        let mut rows = Rows::default();
        push(&mut rows, 0, r#"{"s": "x", "n": 1}"#);
        push(&mut rows, 1, r#"{"n": 1.5, "b": true}"#);
        push(&mut rows, 2, r#"{"a b": 1, "a_b": 2}"#);
        push(&mut rows, 3, r#"{"Case": 1, "case": 2}"#);
        push(&mut rows, 4, r#"{"S": "y"}"#);
        push(&mut rows, 5, r#"{"s": 3}"#);
        let batch = rows.batch();
        assert_eq!(batch.num_rows(), 2);
        let names: Vec<_> = batch.schema().fields().iter().skip(FIXED.len()).map(|f| f.name().clone()).collect();
        assert_eq!(names, ["n", "s", "b"]);
        assert_eq!(batch.column(FIXED.len()).data_type(), &DataType::Float64, "a new integer column takes fractions");
        assert_eq!(batch.column(FIXED.len() + 2).null_count(), 1);
        let reasons: Vec<_> = rows.rejected.iter().map(|r| (r.offset, r.reason.as_str())).collect();
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert!(reasons[0].1.contains("both stored as the column \"a_b\""), "{reasons:?}");
        assert!(reasons[1].1.contains("both stored as the column"), "{reasons:?}");
        assert!(reasons[2].1.contains("only in case"), "{reasons:?}");
        assert!(reasons[3].1.contains("is an integer but its column \"s\" is Utf8"), "{reasons:?}");
    }

    #[test]
    fn values_read_from_their_text_are_typed_as_serde_json_types_them() {
        let raw = |t: &str| serde_json::from_str::<Box<RawValue>>(t).unwrap();
        let cases = [
            ("null", Scalar::Null),
            ("true", Scalar::Bool(true)),
            ("-0", Scalar::Float(-0.0)),
            ("0", Scalar::Int(0)),
            ("-12", Scalar::Int(-12)),
            ("9223372036854775807", Scalar::Int(i64::MAX)),
            ("9223372036854775808", Scalar::Float(9223372036854775808.0)),
            ("1.0", Scalar::Float(1.0)),
            ("-2.5e3", Scalar::Float(-2500.0)),
            (r#""a\"b""#, Scalar::Text("a\"b".into())),
            (r#"[1,{"k":null}]"#, Scalar::Json(r#"[1,{"k":null}]"#)),
        ];
        for (text, want) in cases {
            let v = raw(text);
            let got = Scalar::read(&v);
            assert_eq!(got, want, "{text}");
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            let serde_type = match &value {
                serde_json::Value::Number(n) if n.is_i64() => Some(DataType::Int64),
                serde_json::Value::Number(_) => Some(DataType::Float64),
                serde_json::Value::Null => None,
                serde_json::Value::Bool(_) => Some(DataType::Boolean),
                _ => Some(DataType::Utf8),
            };
            assert_eq!(value_type(&got), serde_type, "{text}");
        }
        let mut rows = Rows::default();
        push(&mut rows, 0, r#"{"k": 1, "k": "last"}"#);
        let batch = rows.batch();
        assert_eq!(batch.column(FIXED.len()).data_type(), &DataType::Utf8, "a name sent twice keeps its last value");
    }

    #[test]
    fn field_names_become_column_names_delta_accepts() {
        assert_eq!(column_name("amount"), "amount");
        assert_eq!(column_name("a b=c"), "a_b_c");
        assert_eq!(column_name("type"), "data_type");
        assert_eq!(column_name("Tenant"), "data_Tenant");
        assert_eq!(column_name(""), "_");
    }
}
