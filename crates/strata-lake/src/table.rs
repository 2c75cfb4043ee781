//! One Delta table of the lake: opened (or created by its first commit) at a directory, appended
//! to with the log positions its rows cover, in one atomic commit.

use std::path::{Path, PathBuf};

use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use strata_pipeline::Positions;

/// Columns every table is partitioned by: a tenant's rows of a UTC day are files of their own.
pub const PARTITION_COLUMNS: [&str; 2] = ["tenant", "dt"];

/// Columns that get a Parquet bloom filter, where a table has them: the ids a query looks up.
const BLOOM_COLUMNS: [&str; 4] = ["source_id", "run_id", "event_id", "trace_id"];

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("delta table {path}: {source}")]
    Delta { path: PathBuf, source: Box<DeltaTableError> },
}

/// A Delta table and where it is.
pub struct Table {
    path: PathBuf,
    table: Option<DeltaTable>,
}

impl Table {
    /// The table at `path` (a directory, created if missing); it has no version until its first
    /// commit.
    pub async fn open(path: &Path) -> Result<Table, TableError> {
        let err = |source: DeltaTableError| TableError::Delta { path: path.to_path_buf(), source: Box::new(source) };
        let url = deltalake::ensure_table_uri(path.to_string_lossy()).map_err(err)?;
        let table = DeltaTable::try_from_url(url).await.map_err(err)?;
        Ok(Table { path: path.to_path_buf(), table: Some(table) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, source: DeltaTableError) -> TableError {
        TableError::Delta { path: self.path.clone(), source: Box::new(source) }
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
        let schema = batch.schema();
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("zstd level 3")))
            .set_statistics_enabled(EnabledStatistics::Page);
        for column in BLOOM_COLUMNS {
            if schema.column_with_name(column).is_some() {
                props = props.set_column_bloom_filter_enabled(column.into(), true);
            }
        }
        let result = table
            .clone()
            .write(vec![batch])
            .with_save_mode(SaveMode::Append)
            .with_schema_mode(SchemaMode::Merge)
            .with_partition_columns(PARTITION_COLUMNS)
            .with_writer_properties(props.build())
            .with_commit_properties(CommitProperties::default().with_application_transactions(txns))
            .await;
        match result {
            Ok(t) => {
                self.table = Some(t);
                Ok(())
            }
            Err(e) => {
                // The table as it was: a commit that failed left no version behind.
                self.table = Some(table);
                Err(self.error(e))
            }
        }
    }
}

/// The application id under which a table records how far it has read a log partition.
pub fn app_id(topic: &str, partition: u32) -> String {
    format!("strata:{topic}:{partition}")
}
