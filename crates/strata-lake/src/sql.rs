//! SQL over a tenant's lake tables, with DataFusion.
//!
//! Each query gets a session of its own in which every table is a view of the Delta table
//! filtered to the tenant's rows: the filter is part of the table the query reads (a plan, not a
//! rewrite of the query's text), so nothing a query says can reach another tenant's rows. The
//! session is read-only (DDL, DML and statements such as `COPY` or `SET` are refused, and no
//! table function reads files), its memory is bounded by a pool, and the query by a timeout and
//! a maximum of rows.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deltalake::arrow::json::ArrayWriter;
use deltalake::datafusion::catalog::view::ViewTable;
use deltalake::datafusion::datasource::provider_as_source;
use deltalake::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use deltalake::datafusion::logical_expr::LogicalPlanBuilder;
use deltalake::datafusion::prelude::{SQLOptions, SessionConfig, SessionContext, col, lit};
use serde_json::Value;

/// The tables SQL can read, by the name a query gives them (their directories in the lake).
pub const TABLES: [&str; 2] = ["events", "rejected"];

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

/// The columns and rows (as JSON objects) of `sql` over `tenant`'s rows of the lake at `dir`.
pub async fn query(dir: &Path, tenant: &str, sql: &str, limits: &SqlLimits) -> Result<Vec<Value>, SqlError> {
    let internal = |e: &dyn std::fmt::Display| SqlError::Internal(e.to_string());
    let runtime =
        RuntimeEnvBuilder::new().with_memory_limit(limits.memory_bytes, 1.0).build_arc().map_err(|e| internal(&e))?;
    let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
    for name in TABLES {
        let path = dir.join(name);
        if !path.join("_delta_log").is_dir() {
            continue;
        }
        let url = deltalake::ensure_table_uri(path.to_string_lossy()).map_err(|e| internal(&e))?;
        let table = deltalake::open_table(url).await.map_err(|e| internal(&e))?;
        table.update_datafusion_session(&ctx.state()).map_err(|e| internal(&e))?;
        let provider = table.table_provider().await.map_err(|e| internal(&e))?;
        let plan = LogicalPlanBuilder::scan(name, provider_as_source(provider), None)
            .and_then(|b| b.filter(col("tenant").eq(lit(tenant))))
            .and_then(|b| b.build())
            .map_err(|e| internal(&e))?;
        ctx.register_table(name, Arc::new(ViewTable::new(plan, None))).map_err(|e| internal(&e))?;
    }
    let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    let run = async {
        let df = ctx.sql_with_options(sql, options).await.map_err(|e| SqlError::Refused(e.to_string()))?;
        let df = df.limit(0, Some(limits.rows_max + 1)).map_err(|e| internal(&e))?;
        df.collect().await.map_err(|e| {
            let text = e.to_string();
            if text.contains("Resources exhausted") {
                SqlError::Limit(format!(
                    "the query needs more than its {} bytes of memory: {text}",
                    limits.memory_bytes
                ))
            } else {
                SqlError::Refused(text)
            }
        })
    };
    let batches = tokio::time::timeout(limits.timeout, run).await.map_err(|_| SqlError::Timeout(limits.timeout))??;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    if rows > limits.rows_max {
        return Err(SqlError::Limit(format!(
            "the answer has more than {} rows; aggregate, filter or add a LIMIT",
            limits.rows_max
        )));
    }
    let mut writer = ArrayWriter::new(Vec::new());
    for b in &batches {
        writer.write(b).map_err(|e| internal(&e))?;
    }
    writer.finish().map_err(|e| internal(&e))?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&bytes).map_err(|e| internal(&e))
}
