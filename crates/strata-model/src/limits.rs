use serde::{Deserialize, Serialize};

/// What a single record may contain. Every limit has a name and a unit; the gateway checks each
/// record against them and rejects that record alone when one is exceeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// How far in the future a timestamp may be, relative to the receive time.
    pub future_skew_ms: u64,
    /// Labels on one metric point, `__name__` excluded.
    pub labels_per_series_max: usize,
    pub label_name_bytes_max: usize,
    pub label_value_bytes_max: usize,
    /// A log line's `message`.
    pub log_line_bytes_max: usize,
    /// `source_id`, `run_id`, `trace_id`, `level`, event `type` and `event_id`.
    pub id_bytes_max: usize,
    /// A metric name.
    pub metric_name_bytes_max: usize,
    /// The serialised `attributes` of a log line or `data` of an event.
    pub attributes_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            future_skew_ms: 10 * 60 * 1000,
            labels_per_series_max: 30,
            label_name_bytes_max: 1024,
            label_value_bytes_max: 2048,
            log_line_bytes_max: 256 * 1024,
            id_bytes_max: 512,
            metric_name_bytes_max: 1024,
            attributes_bytes_max: 256 * 1024,
        }
    }
}
