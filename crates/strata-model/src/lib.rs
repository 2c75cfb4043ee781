//! The record types every other crate speaks: tenants, kinds of record, logs, metric points, events,
//! the topics they are appended to, the limits they are validated against, and the partition key.
//!
//! This crate does no I/O. Everything here is a pure function of its input, so the gateway can
//! validate on any thread and later stages can decode what the gateway wrote.

mod duration;
mod hash;
mod limits;
mod metric_batch;
mod record;
mod series_registry;
mod tenant;
mod timestamp;
pub mod topic;
pub mod varint;

pub use duration::{parse_duration_ms, parse_prometheus_duration_ms};
pub use hash::{FastHash, FastHasher, partition_for, series_fingerprint, stable_hash};
pub use limits::Limits;
pub use metric_batch::{
    BatchError, BatchSeries, METRIC_BATCH_REFS_VERSION, METRIC_BATCH_VERSION, MetricBatch, MetricBatchBuilder,
};
pub use record::{
    Event, EventRef, LogFields, LogLine, LogLineRef, MetricPoint, RawFields, RecordError, check_timestamp,
    is_valid_label_name, is_valid_metric_name, normalize_event, normalize_log, normalize_metric, raw_number,
    raw_string, validate_series, write_json_str,
};
pub use series_registry::{SERIES_DEFS_VERSION, SeriesDef, SeriesDefs, SeriesRegistry, SeriesView, decode_defs};
pub use tenant::{TenantError, TenantId};
pub use timestamp::{TimestampError, format_rfc3339_nanos, parse_timestamp};
pub use topic::{DecodeError, Topic, TopicSpec};

/// The four kinds of record a producer sends, one topic each (declared in [`topic`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Logs,
    Events,
    Metrics,
    Raw,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Logs, Kind::Events, Kind::Metrics, Kind::Raw];

    /// The name of the log topic records of this kind are appended to, from its declaration.
    pub fn topic(self) -> &'static str {
        self.spec().name
    }

    pub fn as_str(self) -> &'static str {
        self.topic()
    }

    pub fn from_topic(topic: &str) -> Option<Kind> {
        TopicSpec::named(topic).and_then(|s| s.kind)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Header names carried by raw records next to their opaque payload.
pub mod headers {
    /// The stream name of a raw payload (`/ingest/v1/raw/{stream}`).
    pub const STREAM: &str = "stream";
    /// The content type the producer declared for a raw payload.
    pub const CONTENT_TYPE: &str = "content-type";
    /// The `Idempotency-Key` of the request, on the first record it appended to each partition:
    /// what tells a restarted gateway which keyed requests the log already holds.
    pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
}
