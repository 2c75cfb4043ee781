//! SQL over a tenant's lake tables, with DataFusion.
//!
//! Each query gets a session of its own in which every table is a view of the Delta table
//! filtered to the tenant's rows: the filter is part of the table the query reads (a plan, not a
//! rewrite of the query's text), so nothing a query says can reach another tenant's rows. The
//! session is read-only (DDL, DML and statements such as `COPY` or `SET` are refused, and no
//! table function reads files), its memory is bounded by a pool, and the query by a timeout and
//! a maximum of rows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use deltalake::DeltaTable;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::ipc::writer::StreamWriter;
use deltalake::arrow::json::{ArrayWriter, LineDelimitedWriter};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::catalog::TableProvider;
use deltalake::datafusion::catalog::view::ViewTable;
use deltalake::datafusion::common::config::Dialect;
use deltalake::datafusion::datasource::empty::EmptyTable;
use deltalake::datafusion::datasource::provider_as_source;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::cache::cache_manager::{CacheManagerConfig, FileMetadataCache};
use deltalake::datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use deltalake::datafusion::prelude::{SQLOptions, SessionConfig, SessionContext, col, lit};
use deltalake::parquet::arrow::ArrowWriter;
use serde_json::Value;

use crate::Location;
use crate::scan::ActiveFiles;
use crate::table::{DataFile, Table, data_files};

/// The tables SQL can read, by the name a query gives them (their directories in the lake).
pub const TABLES: [&str; 5] = ["events", "rejected", "logs", "raw", "metrics_aggregates"];

/// What one query may take.
#[derive(Debug, Clone)]
pub struct SqlLimits {
    pub timeout: Duration,
    pub memory_bytes: usize,
    pub rows_max: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits { timeout: Duration::from_secs(60), memory_bytes: 512 << 20, rows_max: 100_000 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The query is not one this endpoint runs: a syntax error, an unknown table or column, or
    /// anything but a read.
    #[error("{0}")]
    Refused(String),
    /// The query needs more than its limits allow.
    #[error("{0}")]
    Limit(String),
    #[error("the query ran longer than {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Internal(String),
}

/// What a query answered: its columns and rows.
#[derive(Debug)]
pub struct Answer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// The encodings an answer is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"columns": [{"name", "type"}], "rows": [{column: value}]}`.
    Json,
    /// One JSON object per row and line.
    Ndjson,
    /// A header line, then one line per row.
    Csv,
    /// An Arrow IPC stream.
    Arrow,
    /// A Parquet file.
    Parquet,
}

impl Format {
    pub const NAMES: [&'static str; 5] = ["json", "ndjson", "csv", "arrow", "parquet"];

    pub fn parse(name: &str) -> Option<Format> {
        Some(match name {
            "json" => Format::Json,
            "ndjson" => Format::Ndjson,
            "csv" => Format::Csv,
            "arrow" => Format::Arrow,
            "parquet" => Format::Parquet,
            _ => return None,
        })
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }
}

impl Answer {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }

    /// The answer in `format`.
    pub fn encode(&self, format: Format) -> Result<Vec<u8>, SqlError> {
        let internal = |e: &dyn std::fmt::Display| SqlError::Internal(e.to_string());
        let mut out = Vec::new();
        match format {
            Format::Json => {
                let mut rows = ArrayWriter::new(Vec::new());
                for b in &self.batches {
                    rows.write(b).map_err(|e| internal(&e))?;
                }
                rows.finish().map_err(|e| internal(&e))?;
                let rows = rows.into_inner();
                let columns: Vec<Value> = self
                    .schema
                    .fields()
                    .iter()
                    .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
                    .collect();
                out.extend_from_slice(b"{\"columns\":");
                serde_json::to_writer(&mut out, &columns).map_err(|e| internal(&e))?;
                out.extend_from_slice(b",\"rows\":");
                out.extend_from_slice(if rows.is_empty() { b"[]" } else { &rows });
                out.push(b'}');
            }
            Format::Ndjson => {
                let mut w = LineDelimitedWriter::new(&mut out);
                for b in &self.batches {
                    w.write(b).map_err(|e| internal(&e))?;
                }
                w.finish().map_err(|e| internal(&e))?;
            }
            Format::Csv => {
                // An answer without rows still has its header line.
                let empty = [RecordBatch::new_empty(self.schema.clone())];
                let batches = if self.batches.is_empty() { &empty[..] } else { &self.batches[..] };
                let mut w = deltalake::arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
                for b in batches {
                    w.write(b).map_err(|e| internal(&e))?;
                }
            }
            Format::Arrow => {
                let mut w = StreamWriter::try_new(&mut out, &self.schema).map_err(|e| internal(&e))?;
                for b in &self.batches {
                    w.write(b).map_err(|e| internal(&e))?;
                }
                w.finish().map_err(|e| internal(&e))?;
            }
            Format::Parquet => {
                let mut w = ArrowWriter::try_new(&mut out, self.schema.clone(), None).map_err(|e| internal(&e))?;
                for b in &self.batches {
                    w.write(b).map_err(|e| internal(&e))?;
                }
                w.close().map_err(|e| internal(&e))?;
            }
        }
        Ok(out)
    }
}

/// Operators a query may have. Planning walks expressions recursively, so a chain of operators
/// (`a = 1 OR a = 2 OR ...`, `1 + 1 + ...`) as deep as a request body allows would exhaust a
/// thread's stack and end the process; nesting of parentheses and subqueries is bounded by the
/// parser's recursion limit.
pub const OPERATORS_MAX: usize = 1000;

/// Refuses a query with more than [`OPERATORS_MAX`] operators, counted on its tokens (which
/// the tokenizer finds without recursion).
fn check_operators(sql: &str) -> Result<(), SqlError> {
    use deltalake::datafusion::sql::sqlparser::dialect::GenericDialect;
    use deltalake::datafusion::sql::sqlparser::keywords::Keyword;
    use deltalake::datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    // A query that does not tokenize is refused by the parser, with its message.
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else { return Ok(()) };
    let operators = tokens
        .iter()
        .filter(|t| match t {
            Token::Word(w) => matches!(w.keyword, Keyword::AND | Keyword::OR | Keyword::NOT),
            Token::DoubleEq
            | Token::Eq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::StringConcat
            | Token::Ampersand
            | Token::Pipe
            | Token::Caret
            | Token::ShiftLeft
            | Token::ShiftRight
            | Token::Arrow
            | Token::LongArrow => true,
            _ => false,
        })
        .count();
    if operators > OPERATORS_MAX {
        return Err(SqlError::Refused(format!(
            "the query has {operators} operators, more than {OPERATORS_MAX}; use IN (...) for long lists of values"
        )));
    }
    Ok(())
}

/// The answer to `sql` over `tenant`'s rows of the lake at `dir`, opening the tables it reads
/// for this query alone; [`Lake`] keeps them open between queries.
pub async fn query(location: &Location, tenant: &str, sql: &str, limits: &SqlLimits) -> Result<Answer, SqlError> {
    Lake::new(location.clone()).query(tenant, sql, limits).await
}

fn internal(e: &dyn std::fmt::Display) -> SqlError {
    SqlError::Internal(e.to_string())
}

/// The lake's tables as queries read them, kept open between queries: a query brings each table
/// it names up to date by reading only the commits made since the last one, instead of reading
/// the table's whole log again.
pub struct Lake {
    location: Location,
    open: tokio::sync::Mutex<HashMap<&'static str, Open>>,
    /// The Parquet footers (schemas, statistics, page indexes) read so far, shared by the
    /// queries' sessions so that a query does not read every file's footer again. Bounded by
    /// DataFusion's default limit; data files never change once written.
    footers: Option<Arc<FileMetadataCache>>,
}

/// A table kept open, and the active files of its loaded version by tenant.
struct Open {
    table: DeltaTable,
    files: HashMap<String, Arc<[DataFile]>>,
}

impl Open {
    fn new(table: DeltaTable) -> Open {
        Open { files: files_by_tenant(&table), table }
    }
}

/// The active files of `table`'s loaded version, by tenant.
fn files_by_tenant(table: &DeltaTable) -> HashMap<String, Arc<[DataFile]>> {
    let mut files: HashMap<String, Vec<DataFile>> = HashMap::new();
    for f in data_files(table) {
        files.entry(f.tenant.clone()).or_default().push(f);
    }
    files.into_iter().map(|(tenant, files)| (tenant, files.into())).collect()
}

impl Lake {
    pub fn new(location: Location) -> Lake {
        let footers = RuntimeEnvBuilder::new().build().ok().map(|rt| rt.cache_manager.get_file_metadata_cache());
        Lake { location, open: Default::default(), footers }
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Table `name` at its latest version, and `tenant`'s active files in it; `None` before its
    /// first commit.
    async fn table(&self, name: &'static str, tenant: &str) -> Result<Option<(DeltaTable, Arc<[DataFile]>)>, SqlError> {
        let mut open = self.open.lock().await;
        match open.get_mut(name) {
            Some(kept) => {
                let before = kept.table.version();
                kept.table.update_incremental(None).await.map_err(|e| internal(&e))?;
                if kept.table.version() != before {
                    kept.files = files_by_tenant(&kept.table);
                }
            }
            None => {
                let table = Table::open_in(&self.location, name).await.map_err(|e| internal(&e))?.into_delta();
                // Not committed yet: opened again by the next query, until it is.
                if table.version().is_none() {
                    return Ok(None);
                }
                open.insert(name, Open::new(table));
            }
        }
        Ok(open.get(name).map(|kept| {
            let files = kept.files.get(tenant).cloned().unwrap_or_else(|| Arc::from(Vec::new()));
            (kept.table.clone(), files)
        }))
    }

    /// The answer to `sql` over `tenant`'s rows.
    pub async fn query(&self, tenant: &str, sql: &str, limits: &SqlLimits) -> Result<Answer, SqlError> {
        check_operators(sql)?;
        // No spilling: a query's memory is its pool, and past it the query fails rather than filling
        // the disk.
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
            .with_cache_manager(CacheManagerConfig::default().with_file_metadata_cache(self.footers.clone()))
            .build_arc()
            .map_err(|e| internal(&e))?;
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
        // Only the tables the query names are read.
        let statement =
            ctx.state().sql_to_statement(sql, &Dialect::Generic).map_err(|e| SqlError::Refused(e.to_string()))?;
        let named = ctx.state().resolve_table_references(&statement).map_err(|e| SqlError::Refused(e.to_string()))?;
        for name in TABLES.into_iter().filter(|t| named.iter().any(|r| r.table() == *t)) {
            let Some((table, files)) = self.table(name, tenant).await? else {
                // Not committed yet: the table is there, with its first columns and no rows.
                let empty = EmptyTable::new(crate::first_columns(name));
                ctx.register_table(name, Arc::new(empty)).map_err(|e| internal(&e))?;
                continue;
            };
            // The tenant's files as plain Parquet where that reads what Delta does, and through
            // delta-rs otherwise; the tenant's filter is part of the view either way.
            let provider: Arc<dyn TableProvider> = match ActiveFiles::new(&table, files) {
                Some(scan) => {
                    let store = table.log_store();
                    ctx.runtime_env()
                        .register_object_store(store.object_store_url().as_ref(), store.object_store(None));
                    Arc::new(scan)
                }
                None => {
                    table.update_datafusion_session(&ctx.state()).map_err(|e| internal(&e))?;
                    table.table_provider().await.map_err(|e| internal(&e))?
                }
            };
            let plan = LogicalPlanBuilder::scan(name, provider_as_source(provider), None)
                .and_then(|b| b.filter(col("tenant").eq(lit(tenant))))
                .and_then(|b| b.build())
                .map_err(|e| internal(&e))?;
            ctx.register_table(name, Arc::new(ViewTable::new(plan, None))).map_err(|e| internal(&e))?;
        }
        let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
        let limit_error = |e: DataFusionError| {
            let text = e.to_string();
            if text.contains("Resources exhausted") {
                SqlError::Limit(format!(
                    "the query needs more than its {} bytes of memory: {text}",
                    limits.memory_bytes
                ))
            } else {
                SqlError::Refused(text)
            }
        };
        let run = async {
            let df = ctx.sql_with_options(sql, options).await.map_err(|e| SqlError::Refused(e.to_string()))?;
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            // One row past the limit tells an answer that is too long; a plan's explanation is only
            // ever the root.
            let df = match df.logical_plan() {
                LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => df,
                _ => df.limit(0, Some(limits.rows_max + 1)).map_err(|e| internal(&e))?,
            };
            let batches = df.collect().await.map_err(limit_error)?;
            Ok::<Answer, SqlError>(Answer { schema, batches })
        };
        let answer =
            tokio::time::timeout(limits.timeout, run).await.map_err(|_| SqlError::Timeout(limits.timeout))??;
        if answer.rows() > limits.rows_max {
            return Err(SqlError::Limit(format!(
                "the answer has more than {} rows; aggregate, filter or add a LIMIT",
                limits.rows_max
            )));
        }
        Ok(answer)
    }
}
