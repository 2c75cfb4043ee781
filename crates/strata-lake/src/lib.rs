//! The data lake: Delta Lake tables on Parquet, written from the log by sinks of the consumer
//! runtime, readable by any engine that reads Delta (Spark, Trino, DuckDB, polars) and by
//! Strata's own SQL. This is the only crate that depends on `deltalake` (and through it on
//! DataFusion, Arrow and Parquet).
//!
//! A table's commits are its checkpoints: each commit of a sink adds the Parquet files of the
//! records read since the last one and, in the same atomic Delta commit, an application
//! transaction per log partition (`appId` `strata:<topic>:<partition>`, `version` the next
//! offset to read). After a crash the sink resumes from those versions, so a replay never adds a
//! row twice and no acknowledged record is left out.

mod events;
pub mod export;
mod fixed;
pub mod location;
pub mod maintain;
mod scan;
pub mod sql;
mod table;

pub use events::{EventsSink, LakeConfig};
pub use fixed::{AggregateRows, FixedRows, FixedSink, LogRows, RawRows};
pub use location::Location;
pub use maintain::{Maintenance, Retention};
pub use table::{DataFile, Table, TableError};

/// The columns every row of table `name` has (for `events`, those before the data's), which a
/// table not committed yet shows.
pub(crate) fn first_columns(name: &str) -> deltalake::arrow::datatypes::SchemaRef {
    use fixed::FixedRows as _;
    match name {
        "events" => events::first_columns(),
        "rejected" => events::rejected_columns(),
        "logs" => LogRows::default().finish().schema(),
        "raw" => RawRows::default().finish().schema(),
        "metrics_aggregates" => AggregateRows::default().finish().schema(),
        _ => std::sync::Arc::new(deltalake::arrow::datatypes::Schema::empty()),
    }
}

/// The `dt` of a run of rows: formatted once per day they fall on, not once per row.
#[derive(Default)]
pub(crate) struct Days {
    start_ns: i64,
    text: String,
}

impl Days {
    const NS: i64 = 86_400_000_000_000;

    /// The UTC day of `ns`, as [`day`] gives it.
    pub(crate) fn of(&mut self, ns: i64) -> &str {
        let start = ns.div_euclid(Self::NS) * Self::NS;
        if self.text.is_empty() || start != self.start_ns {
            self.start_ns = start;
            self.text = day(ns);
        }
        &self.text
    }
}

/// The UTC day of a time in nanoseconds, `yyyy-mm-dd`: the `dt` partition of a row.
pub(crate) fn day(ns: i64) -> String {
    let mut text = strata_model::format_rfc3339_nanos(ns);
    text.truncate(text.find('T').unwrap_or(text.len()));
    text
}

/// Re-exported for callers that read the tables (tests, SQL).
pub use deltalake;
