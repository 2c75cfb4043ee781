//! The tables whose columns never change: `logs` (normalised log lines), `raw` (opaque payloads
//! with their metadata) and `metrics_aggregates` (the rollups' windows, a row per sample). Each is
//! written by a [`FixedSink`] from its topic, committing the log positions it covers with its rows
//! as the `events` table does.
//!
//! Every table starts with `tenant`, `dt` (both partition it) and `timestamp` (microseconds, UTC).

use std::sync::Arc;

use deltalake::arrow::array::{ArrayRef, BinaryBuilder, Float64Builder, StringBuilder, TimestampMicrosecondBuilder};
use deltalake::arrow::compute::concat_batches;
use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;
use strata_model::topic::{Logs, Raw, Rollups};
use strata_model::{Topic, headers as record_headers};
use strata_pipeline::{Decoded, Positions, SinkError, TopicSink};

use crate::events::LakeConfig;
use crate::table::{Table, TableError};

/// The rows of a table with fixed columns, built from the records of its topic.
pub trait FixedRows: Default + Send + 'static {
    type Topic: Topic;
    /// The table's name: its directory in the lake.
    const TABLE: &'static str;
    /// The sink's consumer group.
    const GROUP: &'static str;

    /// Adds the rows of one record.
    fn push(&mut self, record: &Decoded<'_, Self::Topic>);

    /// Rows added since the last `finish`.
    fn rows(&self) -> usize;

    /// The rows added as a batch; the builders start again empty.
    fn finish(&mut self) -> RecordBatch;
}

/// The first columns of every fixed table: `tenant`, `dt` and `timestamp`.
#[derive(Default)]
struct Keys {
    tenant: StringBuilder,
    dt: StringBuilder,
    timestamp: TimestampMicrosecondBuilder,
    rows: usize,
    days: crate::Days,
}

impl Keys {
    fn push(&mut self, tenant: &str, timestamp_ns: i64) {
        self.tenant.append_value(tenant);
        self.dt.append_value(self.days.of(timestamp_ns));
        self.timestamp.append_value(timestamp_ns.div_euclid(1000));
        self.rows += 1;
    }

    fn len(&self) -> usize {
        self.rows
    }

    /// The batch of these columns then `rest`.
    fn finish(&mut self, rest: Vec<(&str, ArrayRef)>) -> RecordBatch {
        self.rows = 0;
        let timestamp = self.timestamp.finish().with_timezone("UTC");
        let mut fields = vec![
            Field::new("tenant", DataType::Utf8, true),
            Field::new("dt", DataType::Utf8, true),
            Field::new("timestamp", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), true),
        ];
        let mut arrays: Vec<ArrayRef> =
            vec![Arc::new(self.tenant.finish()), Arc::new(self.dt.finish()), Arc::new(timestamp)];
        for (name, array) in rest {
            fields.push(Field::new(name, array.data_type().clone(), true));
            arrays.push(array);
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("columns of equal length")
    }
}

/// `logs`: one row per log line, its attributes as a JSON object's text.
#[derive(Default)]
pub struct LogRows {
    keys: Keys,
    source_id: StringBuilder,
    level: StringBuilder,
    message: StringBuilder,
    run_id: StringBuilder,
    trace_id: StringBuilder,
    service: StringBuilder,
    host: StringBuilder,
    attributes: StringBuilder,
}

impl FixedRows for LogRows {
    type Topic = Logs;
    const TABLE: &'static str = "logs";
    const GROUP: &'static str = "lake-logs";

    fn push(&mut self, d: &Decoded<'_, Logs>) {
        let l = &d.record;
        self.keys.push(d.tenant(), l.timestamp_ns);
        self.source_id.append_value(&l.source_id);
        self.level.append_value(&l.level);
        self.message.append_value(&l.message);
        self.run_id.append_option(l.run_id.as_deref());
        self.trace_id.append_option(l.trace_id.as_deref());
        self.service.append_option(l.service.as_deref());
        self.host.append_option(l.host.as_deref());
        if l.attributes.is_empty() {
            self.attributes.append_null();
        } else {
            self.attributes.append_value(serde_json::Value::Object(l.attributes.clone()).to_string());
        }
    }

    fn rows(&self) -> usize {
        self.keys.len()
    }

    fn finish(&mut self) -> RecordBatch {
        let col = |b: &mut StringBuilder| -> ArrayRef { Arc::new(b.finish()) };
        let rest = vec![
            ("source_id", col(&mut self.source_id)),
            ("level", col(&mut self.level)),
            ("message", col(&mut self.message)),
            ("run_id", col(&mut self.run_id)),
            ("trace_id", col(&mut self.trace_id)),
            ("service", col(&mut self.service)),
            ("host", col(&mut self.host)),
            ("attributes", col(&mut self.attributes)),
        ];
        self.keys.finish(rest)
    }
}

/// `raw`: one row per payload, the bytes as they came, with the stream and content type they were
/// sent with.
#[derive(Default)]
pub struct RawRows {
    keys: Keys,
    source_id: StringBuilder,
    stream: StringBuilder,
    content_type: StringBuilder,
    payload: BinaryBuilder,
}

impl FixedRows for RawRows {
    type Topic = Raw;
    const TABLE: &'static str = "raw";
    const GROUP: &'static str = "lake-raw";

    fn push(&mut self, d: &Decoded<'_, Raw>) {
        let text = |name| d.header(name).map(String::from_utf8_lossy);
        self.keys.push(d.tenant(), d.stored.record.timestamp_ns);
        self.source_id.append_value(&d.stored.record.source_id);
        self.stream.append_option(text(record_headers::STREAM));
        self.content_type.append_option(text(record_headers::CONTENT_TYPE));
        self.payload.append_value(d.record);
    }

    fn rows(&self) -> usize {
        self.keys.len()
    }

    fn finish(&mut self) -> RecordBatch {
        let rest: Vec<(&str, ArrayRef)> = vec![
            ("source_id", Arc::new(self.source_id.finish())),
            ("stream", Arc::new(self.stream.finish())),
            ("content_type", Arc::new(self.content_type.finish())),
            ("payload", Arc::new(self.payload.finish())),
        ];
        self.keys.finish(rest)
    }
}

/// `metrics_aggregates`: one row per window a rollup rule closed, at the window's end: the metric
/// name, the other labels as a JSON object's text, and the value.
#[derive(Default)]
pub struct AggregateRows {
    keys: Keys,
    metric: StringBuilder,
    labels: StringBuilder,
    value: Float64Builder,
}

impl FixedRows for AggregateRows {
    type Topic = Rollups;
    const TABLE: &'static str = "metrics_aggregates";
    const GROUP: &'static str = "lake-metrics-aggregates";

    fn push(&mut self, d: &Decoded<'_, Rollups>) {
        let tenant = d.tenant();
        let result = d.record.for_each_series(|_, labels, samples| {
            let name = labels.iter().find(|(k, _)| *k == "__name__").map_or("", |(_, v)| *v);
            let others: serde_json::Map<String, serde_json::Value> = labels
                .iter()
                .filter(|(k, _)| *k != "__name__")
                .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
                .collect();
            let others = serde_json::Value::Object(others).to_string();
            for (ts_ms, value) in samples {
                self.keys.push(tenant, ts_ms.saturating_mul(1_000_000));
                self.metric.append_value(name);
                self.labels.append_value(&others);
                self.value.append_value(value);
            }
        });
        if let Err(e) = result {
            // Rollup batches spell their labels out; one that does not is not the operator's.
            metrics::counter!("strata_lake_unreadable_records_total", "table" => Self::TABLE).increment(1);
            tracing::warn!(offset = d.offset(), error = %e, "a rollups record without its labels is left out of the lake");
        }
    }

    fn rows(&self) -> usize {
        self.keys.len()
    }

    fn finish(&mut self) -> RecordBatch {
        let rest: Vec<(&str, ArrayRef)> = vec![
            ("metric", Arc::new(self.metric.finish())),
            ("labels", Arc::new(self.labels.finish())),
            ("value", Arc::new(self.value.finish())),
        ];
        self.keys.finish(rest)
    }
}

/// Writes the fixed table `R` from its topic.
pub struct FixedSink<R: FixedRows> {
    cfg: LakeConfig,
    table: Option<Table>,
    rows: R,
    /// A batch whose commit failed, kept for the runtime's retry with the same positions.
    pending: Option<RecordBatch>,
    bytes: usize,
}

impl<R: FixedRows> FixedSink<R> {
    pub fn new(cfg: LakeConfig) -> FixedSink<R> {
        FixedSink { cfg, table: None, rows: R::default(), pending: None, bytes: 0 }
    }
}

fn sink_error(e: TableError) -> SinkError {
    SinkError::Retry { reason: e.to_string() }
}

#[async_trait::async_trait]
impl<R: FixedRows> TopicSink for FixedSink<R> {
    type Topic = R::Topic;

    fn group(&self) -> &str {
        R::GROUP
    }

    async fn committed(&mut self) -> Result<Positions, SinkError> {
        let table = Table::open_in(&self.cfg.location, R::TABLE).await.map_err(sink_error)?;
        let wanted: Vec<(String, u32)> =
            (0..self.cfg.partitions).map(|p| (R::Topic::SPEC.name.to_string(), p)).collect();
        let positions = table.positions(&wanted).await.map_err(sink_error)?;
        self.table = Some(table);
        self.rows = R::default();
        self.pending = None;
        self.bytes = 0;
        Ok(positions)
    }

    async fn write<'r>(&mut self, _partition: u32, records: &[Decoded<'r, R::Topic>]) -> Result<(), SinkError> {
        for d in records {
            self.bytes += d.payload().len();
            self.rows.push(d);
        }
        Ok(())
    }

    fn wants_commit(&self) -> bool {
        self.bytes >= self.cfg.commit_bytes_max
    }

    async fn commit(&mut self, positions: &Positions) -> Result<(), SinkError> {
        let batch = match (self.pending.take(), self.rows.rows()) {
            (None, 0) => return Ok(()),
            (None, _) => self.rows.finish(),
            (Some(b), 0) => b,
            // Rows written since a failed commit join it: the positions cover them too.
            (Some(b), _) => {
                concat_batches(&b.schema(), [&b, &self.rows.finish()]).expect("a table's batches have the same columns")
            }
        };
        let table = self.table.as_mut().expect("committed opens the table");
        let rows = batch.num_rows() as u64;
        if let Err(e) = table.append(batch.clone(), positions).await {
            self.pending = Some(batch);
            return Err(sink_error(e));
        }
        metrics::counter!("strata_lake_rows_total", "table" => R::TABLE).increment(rows);
        metrics::counter!("strata_lake_input_bytes_total", "table" => R::TABLE).increment(self.bytes as u64);
        self.bytes = 0;
        Ok(())
    }
}
