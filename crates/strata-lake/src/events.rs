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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;
use serde_json::Value;
use strata_model::topic::EventsEnriched;
use strata_model::{Event, Topic as _};
use strata_pipeline::{Decoded, Positions, SinkError, TopicSink};

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
    /// The lake's root: tables are directories below it (`events/`, `rejected/`).
    pub dir: PathBuf,
    /// Bytes of events buffered past which the sink commits before its interval ends.
    pub commit_bytes_max: usize,
    /// Partitions of the topic the sink reads.
    pub partitions: u32,
}

/// One event waiting for the next commit.
struct Row {
    tenant: String,
    partition: u32,
    offset: u64,
    event: Event,
}

/// Writes the `events` table (and `rejected`) from the `events_enriched` topic.
pub struct EventsSink {
    cfg: LakeConfig,
    events: Option<Table>,
    rejected: Option<Table>,
    /// How far the `rejected` table has recorded: its rows of records before are there already.
    rejected_to: Positions,
    rows: Vec<Row>,
    bytes: usize,
}

impl EventsSink {
    pub const GROUP: &'static str = "lake-events";

    pub fn new(cfg: LakeConfig) -> EventsSink {
        EventsSink { cfg, events: None, rejected: None, rejected_to: Positions::new(), rows: Vec::new(), bytes: 0 }
    }

    fn wanted(&self) -> Vec<(String, u32)> {
        (0..self.cfg.partitions).map(|p| (EventsEnriched::SPEC.name.to_string(), p)).collect()
    }
}

fn sink_error(e: TableError) -> SinkError {
    SinkError::Retry { reason: e.to_string() }
}

/// The column a data field is stored in.
fn column_name(field: &str) -> String {
    let mut name: String = field.chars().map(|c| if NOT_IN_NAMES.contains(&c) { '_' } else { c }).collect();
    if name.is_empty() {
        name.push('_');
    }
    if FIXED.iter().any(|f| f.eq_ignore_ascii_case(&name)) {
        name = format!("data_{name}");
    }
    name
}

/// The column type a value asks for (`None` for null, which fits any).
fn value_type(v: &Value) -> Option<DataType> {
    match v {
        Value::Null => None,
        Value::Bool(_) => Some(DataType::Boolean),
        Value::Number(n) if n.is_i64() => Some(DataType::Int64),
        Value::Number(_) => Some(DataType::Float64),
        Value::String(_) | Value::Array(_) | Value::Object(_) => Some(DataType::Utf8),
    }
}

/// Whether a column of type `t` holds `v`.
fn fits(t: &DataType, v: &Value) -> bool {
    match (t, v) {
        (_, Value::Null) => true,
        (DataType::Boolean, Value::Bool(_)) => true,
        (DataType::Int64, Value::Number(n)) => n.is_i64(),
        (DataType::Float64, Value::Number(_)) => true,
        (
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View,
            Value::String(_) | Value::Array(_) | Value::Object(_),
        ) => true,
        _ => false,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What a commit writes: the data columns (the table's and new ones), the rows the table takes,
/// and the rejected ones with their reason.
struct Plan {
    columns: Vec<(String, DataType)>,
    take: Vec<Row>,
    reject: Vec<(Row, String)>,
}

/// Splits the rows into those the table takes, with the columns they need, and the rejected ones.
fn plan(existing: Option<&Schema>, rows: Vec<Row>) -> Plan {
    let mut columns: Vec<(String, DataType)> = match existing {
        Some(s) => s
            .fields()
            .iter()
            .filter(|f| !FIXED.contains(&f.name().as_str()))
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect(),
        None => Vec::new(),
    };
    let known = columns.len();
    // New columns' types from the first value seen; an integer column takes a later fraction.
    for row in &rows {
        for (k, v) in &row.event.data {
            let name = column_name(k);
            let Some(t) = value_type(v) else { continue };
            match columns.iter_mut().position(|(n, _)| *n == name) {
                Some(i) if i >= known && columns[i].1 == DataType::Int64 && t == DataType::Float64 => {
                    columns[i].1 = DataType::Float64
                }
                Some(_) => {}
                None if columns.len() + FIXED.len() < COLUMNS_MAX => columns.push((name, t)),
                None => {}
            }
        }
    }
    let mut take = Vec::with_capacity(rows.len());
    let mut reject = Vec::new();
    for row in rows {
        let why = row.event.data.iter().find_map(|(k, v)| {
            let name = column_name(k);
            match columns.iter().find(|(n, _)| *n == name) {
                Some((_, t)) if fits(t, v) => None,
                Some((_, t)) => Some(format!("field {k:?} is {} but its column {name:?} is {t}", type_name(v))),
                None if v.is_null() => None,
                None => Some(format!("field {k:?} would make the table wider than {COLUMNS_MAX} columns")),
            }
            .or_else(|| {
                columns.iter().find(|(n, _)| *n != name && n.eq_ignore_ascii_case(&name)).map(|(n, _)| {
                    format!("field {k:?} differs from the column {n:?} only in case, which Delta does not tell apart")
                })
            })
        });
        match why {
            Some(reason) => reject.push((row, reason)),
            None => take.push(row),
        }
    }
    Plan { columns, take, reject }
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The events as one record batch with `columns` after the fixed ones.
fn events_batch(columns: &[(String, DataType)], rows: &[Row]) -> RecordBatch {
    let text = |f: &dyn Fn(&Row) -> Option<String>| -> ArrayRef {
        let mut b = StringBuilder::new();
        for r in rows {
            b.append_option(f(r));
        }
        Arc::new(b.finish())
    };
    let mut fields = vec![
        Field::new("tenant", DataType::Utf8, true),
        Field::new("dt", DataType::Utf8, true),
        Field::new("timestamp", utc_micros(), true),
        Field::new("type", DataType::Utf8, true),
        Field::new("source_id", DataType::Utf8, true),
        Field::new("event_id", DataType::Utf8, true),
    ];
    let mut ts = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    for r in rows {
        ts.append_value(r.event.timestamp_ns.div_euclid(1000));
    }
    let mut arrays: Vec<ArrayRef> = vec![
        text(&|r| Some(r.tenant.clone())),
        text(&|r| Some(day(r.event.timestamp_ns))),
        Arc::new(ts.finish()),
        text(&|r| Some(r.event.event_type.clone())),
        text(&|r| Some(r.event.source_id.clone())),
        text(&|r| r.event.event_id.clone()),
    ];
    // Each row's data by column name.
    let by_column: Vec<BTreeMap<String, &Value>> =
        rows.iter().map(|r| r.event.data.iter().map(|(k, v)| (column_name(k), v)).collect()).collect();
    for (name, t) in columns {
        let values = by_column.iter().map(|m| m.get(name).copied().filter(|v| !v.is_null()));
        let array: ArrayRef = match t {
            DataType::Boolean => {
                let mut b = BooleanBuilder::new();
                values.for_each(|v| b.append_option(v.and_then(Value::as_bool)));
                Arc::new(b.finish())
            }
            DataType::Int64 => {
                let mut b = Int64Builder::new();
                values.for_each(|v| b.append_option(v.and_then(Value::as_i64)));
                Arc::new(b.finish())
            }
            DataType::Float64 => {
                let mut b = Float64Builder::new();
                values.for_each(|v| b.append_option(v.and_then(Value::as_f64)));
                Arc::new(b.finish())
            }
            _ => {
                let mut b = StringBuilder::new();
                values.for_each(|v| {
                    b.append_option(v.map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    }))
                });
                Arc::new(b.finish())
            }
        };
        fields.push(Field::new(name, array.data_type().clone(), true));
        arrays.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("columns of equal length and their own types")
}

/// The rejected events, whole, with their reason.
fn rejected_batch(rows: &[(Row, String)]) -> RecordBatch {
    let mut tenant = StringBuilder::new();
    let mut dt = StringBuilder::new();
    let (mut topic, mut reason, mut payload) = (StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
    let (mut partition, mut offset) = (Int64Builder::new(), Int64Builder::new());
    for (r, why) in rows {
        tenant.append_value(&r.tenant);
        dt.append_value(day(r.event.timestamp_ns));
        topic.append_value(EventsEnriched::SPEC.name);
        partition.append_value(i64::from(r.partition));
        offset.append_value(r.offset as i64);
        reason.append_value(why);
        payload.append_value(serde_json::to_string(&r.event).expect("events serialise"));
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

#[async_trait::async_trait]
impl TopicSink for EventsSink {
    type Topic = EventsEnriched;

    fn group(&self) -> &str {
        Self::GROUP
    }

    async fn committed(&mut self) -> Result<Positions, SinkError> {
        let events = Table::open(&self.cfg.dir.join("events")).await.map_err(sink_error)?;
        let rejected = Table::open(&self.cfg.dir.join("rejected")).await.map_err(sink_error)?;
        let wanted = self.wanted();
        self.rejected_to = rejected.positions(&wanted).await.map_err(sink_error)?;
        let positions = events.positions(&wanted).await.map_err(sink_error)?;
        self.events = Some(events);
        self.rejected = Some(rejected);
        self.rows.clear();
        self.bytes = 0;
        Ok(positions)
    }

    async fn write<'r>(&mut self, partition: u32, records: &[Decoded<'r, EventsEnriched>]) -> Result<(), SinkError> {
        for d in records {
            self.bytes += d.payload().len();
            self.rows.push(Row {
                tenant: d.tenant().to_string(),
                partition,
                offset: d.offset(),
                event: d.record.clone(),
            });
        }
        Ok(())
    }

    fn wants_commit(&self) -> bool {
        self.bytes >= self.cfg.commit_bytes_max
    }

    async fn commit(&mut self, positions: &Positions) -> Result<(), SinkError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let events = self.events.as_mut().expect("committed opens the tables");
        let rows = std::mem::take(&mut self.rows);
        let Plan { columns, take, reject } = plan(events.schema().as_deref(), rows);
        // Rejected rows first, skipping those an earlier commit of `rejected` holds already (a
        // crash between the two commits): that table records the same positions.
        let reject: Vec<(Row, String)> = reject
            .into_iter()
            .filter(|(r, _)| {
                let to = self.rejected_to.get(&(EventsEnriched::SPEC.name.to_string(), r.partition));
                to.is_none_or(|&to| r.offset >= to)
            })
            .collect();
        let result = async {
            if !reject.is_empty() {
                metrics::counter!("strata_lake_rejected_rows_total", "table" => "events")
                    .increment(reject.len() as u64);
                let rejected = self.rejected.as_mut().expect("committed opens the tables");
                rejected.append(rejected_batch(&reject), positions).await?;
                self.rejected_to = positions.clone();
            }
            if !take.is_empty() {
                let events = self.events.as_mut().expect("committed opens the tables");
                events.append(events_batch(&columns, &take), positions).await?;
                metrics::counter!("strata_lake_rows_total", "table" => "events").increment(take.len() as u64);
            }
            Ok::<(), TableError>(())
        }
        .await;
        match result {
            Ok(()) => {
                metrics::counter!("strata_lake_input_bytes_total", "table" => "events").increment(self.bytes as u64);
                self.bytes = 0;
                Ok(())
            }
            Err(e) => {
                // Kept for the runtime's retry of this commit (rejected rows committed already are
                // skipped then).
                let mut rows: Vec<Row> = take;
                rows.extend(reject.into_iter().map(|(r, _)| r));
                self.rows = rows;
                Err(sink_error(e))
            }
        }
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
