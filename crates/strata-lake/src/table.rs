//! One Delta table of the lake: opened (or created by its first commit) at a directory, appended
//! to with the log positions its rows cover, in one atomic commit.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::Path;
use std::time::{Duration, Instant};

use deltalake::arrow::datatypes::{Schema, SchemaRef};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::prelude::{col, lit};
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::vacuum::VacuumMode;
use deltalake::operations::write::SchemaMode;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError, FilterOp, FilterValue};
use strata_pipeline::Positions;
use url::Url;

use crate::Location;

/// Columns every table is partitioned by: a tenant's rows of a UTC day are files of their own.
pub const PARTITION_COLUMNS: [&str; 2] = ["tenant", "dt"];

/// Columns that get a Parquet bloom filter, where a table has them: the ids a query looks up.
const BLOOM_COLUMNS: [&str; 4] = ["source_id", "run_id", "event_id", "trace_id"];

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("delta table {url}: {source}")]
    Delta { url: String, source: Box<DeltaTableError> },
}

/// A Delta table and where it is.
pub struct Table {
    url: Url,
    table: Option<DeltaTable>,
}

impl Table {
    /// The table in the local directory `path` (created if missing); it has no version until its
    /// first commit.
    pub async fn open(path: &Path) -> Result<Table, TableError> {
        Table::open_url(Location::local(path).root().clone(), &HashMap::new()).await
    }

    /// Table `name` of the lake at `location`.
    pub async fn open_in(location: &Location, name: &str) -> Result<Table, TableError> {
        Table::open_url(location.table(name), location.options()).await
    }

    async fn open_url(url: Url, options: &HashMap<String, String>) -> Result<Table, TableError> {
        let err = |source: DeltaTableError| TableError::Delta { url: url.to_string(), source: Box::new(source) };
        let table_url = match url.to_file_path() {
            Ok(dir) => deltalake::ensure_table_uri(dir.to_string_lossy()).map_err(err)?,
            Err(()) => url.clone(),
        };
        let mut table = deltalake::DeltaTableBuilder::from_url(table_url)
            .map(|b| b.with_storage_options(options.clone()))
            .and_then(|b| b.build())
            .map_err(err)?;
        // A table not committed yet is not loaded: there is no log to read.
        if exists(&table).await.map_err(err)? {
            table.load().await.map_err(err)?;
        }
        Ok(Table { url, table: Some(table) })
    }

    fn error(&self, source: DeltaTableError) -> TableError {
        TableError::Delta { url: self.url.to_string(), source: Box::new(source) }
    }

    /// The Delta table itself.
    pub(crate) fn into_delta(mut self) -> DeltaTable {
        self.table.take().expect("a table is put back after each write")
    }

    fn delta(&self) -> &DeltaTable {
        self.table.as_ref().expect("a table is put back after each write")
    }

    /// The table's version, `None` before its first commit.
    pub fn version(&self) -> Option<u64> {
        self.delta().version()
    }

    /// The table's columns as Arrow sees them (none before its first commit).
    pub fn schema(&self) -> Option<SchemaRef> {
        Some(self.delta().snapshot().ok()?.snapshot().arrow_schema())
    }

    /// The log positions the table's commits cover: for each `(topic, partition)` of `wanted`,
    /// the next offset to read, from the application transaction its commits carry.
    pub async fn positions(&self, wanted: &[(String, u32)]) -> Result<Positions, TableError> {
        let mut out = Positions::new();
        let table = self.delta();
        let Ok(snapshot) = table.snapshot() else { return Ok(out) };
        for (topic, partition) in wanted {
            let version = snapshot
                .transaction_version(table.log_store().as_ref(), app_id(topic, *partition))
                .await
                .map_err(|e| self.error(e))?;
            if let Some(v) = version {
                out.insert((topic.clone(), *partition), v.max(0) as u64);
            }
        }
        Ok(out)
    }

    /// Appends `batch` (partitioned by [`PARTITION_COLUMNS`]; new columns join the schema) and
    /// records `positions` in the same commit.
    pub async fn append(&mut self, batch: RecordBatch, positions: &Positions) -> Result<(), TableError> {
        let txns = positions
            .iter()
            .map(|((topic, partition), next)| Transaction::new(app_id(topic, *partition), *next as i64))
            .collect();
        let table = self.table.take().expect("a table is put back after each write");
        let props = writer_properties(&batch.schema());
        let started = Instant::now();
        let result = table
            .clone()
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .with_schema_mode(SchemaMode::Merge)
            .with_partition_columns(PARTITION_COLUMNS)
            .with_writer_properties(props)
            .with_commit_properties(CommitProperties::default().with_application_transactions(txns))
            .await;
        metrics::histogram!("strata_lake_commit_seconds", "table" => self.name()).record(started.elapsed());
        self.put_back(table, result.map(|t| (t, ())))
    }

    /// The table's name: its directory's.
    pub fn name(&self) -> String {
        let mut segments = self.url.path_segments().into_iter().flatten();
        segments.rfind(|s| !s.is_empty()).unwrap_or_default().to_string()
    }

    /// Keeps the table an operation returned, or the one it started from if it failed (a failed
    /// commit leaves no version behind).
    fn put_back<T>(
        &mut self,
        before: DeltaTable,
        result: Result<(DeltaTable, T), DeltaTableError>,
    ) -> Result<T, TableError> {
        match result {
            Ok((t, out)) => {
                self.table = Some(t);
                Ok(out)
            }
            Err(e) => {
                self.table = Some(before);
                Err(self.error(e))
            }
        }
    }

    /// The table's active data files, with their partition, size, rows and time range.
    pub fn files(&self) -> Vec<DataFile> {
        data_files(self.delta())
    }

    /// Rewrites the small files of one partition into files of about `target_bytes`, in one
    /// commit; readers see either the old files or the new ones. Returns the files removed and
    /// added.
    pub async fn compact(&mut self, tenant: &str, dt: &str, target_bytes: u64) -> Result<(u64, u64), TableError> {
        let table = self.table.take().expect("a table is put back after each operation");
        let props = match table.snapshot() {
            Ok(s) => writer_properties(&s.snapshot().arrow_schema()),
            Err(_) => WriterProperties::default(),
        };
        let filters =
            [("tenant", FilterOp::Eq, FilterValue::Scalar(tenant)), ("dt", FilterOp::Eq, FilterValue::Scalar(dt))];
        let result = table
            .clone()
            .optimize()
            .with_filters(&filters)
            .with_target_size(NonZeroU64::new(target_bytes.max(1)).expect("at least 1"))
            .with_writer_properties(props)
            .with_max_concurrent_tasks(1)
            .await
            .map(|(t, m)| (t, (m.num_files_removed, m.num_files_added)));
        self.put_back(table, result)
    }

    /// Drops `tenant`'s partitions of days before `before` (`yyyy-mm-dd`), whole files only, in
    /// one commit. Returns the files removed.
    pub async fn drop_days(&mut self, tenant: &str, before: &str) -> Result<u64, TableError> {
        let table = self.table.take().expect("a table is put back after each operation");
        let predicate = col("tenant").eq(lit(tenant.to_string())).and(col("dt").lt(lit(before.to_string())));
        let result =
            table.clone().delete().with_predicate(predicate).await.map(|(t, m)| (t, m.num_removed_files as u64));
        self.put_back(table, result)
    }

    /// Deletes the files no version newer than `grace` ago refers to: those compaction and
    /// retention replaced, and any left by a write that crashed before its commit.
    pub async fn vacuum(&mut self, grace: Duration) -> Result<u64, TableError> {
        let table = self.table.take().expect("a table is put back after each operation");
        let result = table
            .clone()
            .vacuum()
            .with_mode(VacuumMode::Full)
            .with_retention_period(chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX))
            .with_enforce_retention_duration(false)
            .await
            .map(|(t, m)| (t, m.files_deleted.len() as u64));
        self.put_back(table, result)
    }
}

/// Whether `table` has a log: a local one is looked for as a directory, without listing it.
pub(crate) async fn exists(table: &DeltaTable) -> Result<bool, DeltaTableError> {
    match table.table_url().to_file_path() {
        Ok(dir) => Ok(dir.join("_delta_log").is_dir()),
        Err(()) => table.verify_deltatable_existence().await,
    }
}

/// The active data files of `table`'s loaded version, with their partition, size, rows, time
/// range and statistics.
pub(crate) fn data_files(table: &DeltaTable) -> Vec<DataFile> {
    let Ok(snapshot) = table.snapshot() else { return Vec::new() };
    snapshot
        .log_data()
        .iter()
        .map(|f| {
            let partition = f.partition_values_map();
            let value = |k: &str| partition.get(k).cloned().flatten().unwrap_or_default();
            let stats: Option<serde_json::Value> = f.stats().and_then(|s| serde_json::from_str(&s).ok());
            let bound = |which: &str| stats.as_ref().and_then(|s| s[which]["timestamp"].as_str()).map(str::to_string);
            let location = f.object_store_path();
            DataFile {
                uri: file_uri(table.log_store().to_uri(&location)),
                path: f.path().into_owned(),
                location,
                bytes: f.size().max(0) as u64,
                rows: f.num_records().map(|n| n as u64),
                tenant: value("tenant"),
                dt: value("dt"),
                time_min: bound("minValues"),
                time_max: bound("maxValues"),
                stats,
                deletion_vector: f.deletion_vector_descriptor().is_some(),
            }
        })
        .collect()
}

/// A URI any reader takes: local files' with the `file` scheme.
fn file_uri(uri: String) -> String {
    if uri.starts_with('/') { format!("file://{uri}") } else { uri }
}

/// One data file of a table, as its log lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DataFile {
    /// Where a reader finds it.
    pub uri: String,
    /// Its path relative to the table's root, as the log has it.
    #[serde(skip)]
    pub path: String,
    /// Where the table's object store has it.
    #[serde(skip)]
    pub location: deltalake::Path,
    pub bytes: u64,
    /// Rows, when the log's statistics have them.
    pub rows: Option<u64>,
    #[serde(skip)]
    pub tenant: String,
    #[serde(skip)]
    pub dt: String,
    /// The earliest and latest `timestamp` of its rows, RFC 3339, when the log's statistics have
    /// them.
    pub time_min: Option<String>,
    pub time_max: Option<String>,
    /// The log's statistics of the file (`numRecords`, `minValues`, `maxValues`, `nullCount`).
    #[serde(skip)]
    pub stats: Option<serde_json::Value>,
    /// Whether some of its rows are deleted by a deletion vector, which only a Delta reader knows.
    #[serde(skip)]
    pub deletion_vector: bool,
}

/// How every data file is written: zstd, page statistics and indexes, bloom filters on the id
/// columns `schema` has.
fn writer_properties(schema: &Schema) -> WriterProperties {
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("zstd level 3")))
        .set_statistics_enabled(EnabledStatistics::Page);
    for column in BLOOM_COLUMNS {
        if schema.column_with_name(column).is_some() {
            props = props.set_column_bloom_filter_enabled(column.into(), true);
        }
    }
    props.build()
}

/// The application id under which a table records how far it has read a log partition.
pub fn app_id(topic: &str, partition: u32) -> String {
    format!("strata:{topic}:{partition}")
}
