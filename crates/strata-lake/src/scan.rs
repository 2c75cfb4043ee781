//! A read-only scan of one tenant's active files of a Delta table, as plain DataFusion Parquet.
//!
//! The Delta log says which files are active, their partition values and their statistics; once
//! that is known, reading them needs nothing of Delta's. delta-rs's own scan adds a file-id
//! column and the partition values to every batch and always filters rows inside the Parquet
//! reader, which costs short queries up to twice their time. This scan prunes files by partition
//! and by the log's statistics while planning, then hands the rest to DataFusion's Parquet
//! source, which prunes row groups and pages by their own statistics and reads the files in
//! parallel.
//!
//! It is used only where plain Parquet reads the same rows a Delta reader does: a table without
//! column mapping and whose files have no deletion vectors. Strata writes neither; a table that
//! has them is read through delta-rs.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use deltalake::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt64Array};
use deltalake::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use deltalake::datafusion::catalog::{Session, TableProvider};
use deltalake::datafusion::common::pruning::PruningStatistics;
use deltalake::datafusion::common::stats::Precision;
use deltalake::datafusion::common::{Column, DFSchema, Result, ScalarValue, Statistics, project_schema};
use deltalake::datafusion::datasource::TableType;
use deltalake::datafusion::datasource::file_format::FileFormat;
use deltalake::datafusion::datasource::file_format::parquet::ParquetFormat;
use deltalake::datafusion::datasource::listing::PartitionedFile;
use deltalake::datafusion::datasource::listing::helpers::expr_applicable_for_cols;
use deltalake::datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use deltalake::datafusion::datasource::table_schema::TableSchema;
use deltalake::datafusion::execution::object_store::ObjectStoreUrl;
use deltalake::datafusion::logical_expr::utils::conjunction;
use deltalake::datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use deltalake::datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use deltalake::datafusion::physical_plan::ExecutionPlan;
use deltalake::datafusion::physical_plan::empty::EmptyExec;
use deltalake::{DeltaTable, ObjectMeta};
use serde_json::Value;

use crate::table::{DataFile, PARTITION_COLUMNS};

/// Delta keeps at most this many characters of a string's statistics: a longer maximum is a
/// prefix, which bounds nothing.
const STATS_STRING_CHARS: usize = 32;

/// The type of a partition column as queries see it: one value per file, so a dictionary.
fn partition_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::UInt16), Box::new(DataType::Utf8))
}

/// How the Parquet reader hands out a column of the table's type: strings and binaries as views,
/// which it fills without copying.
fn read_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 => DataType::Utf8View,
        DataType::Binary | DataType::LargeBinary => DataType::BinaryView,
        other => other.clone(),
    }
}

/// One tenant's rows of a Delta table, read as the Parquet files its loaded version lists.
#[derive(Debug)]
pub(crate) struct ActiveFiles {
    /// The data columns, then [`PARTITION_COLUMNS`].
    schema: SchemaRef,
    file_schema: SchemaRef,
    partitions: Vec<FieldRef>,
    store: ObjectStoreUrl,
    files: Arc<[DataFile]>,
}

impl ActiveFiles {
    /// The scan of `files` (the tenant's, of `table`'s loaded version), or `None` where plain
    /// Parquet would not read what Delta does: column mapping, or deletion vectors.
    pub(crate) fn new(table: &DeltaTable, files: Arc<[DataFile]>) -> Option<ActiveFiles> {
        let snapshot = table.snapshot().ok()?;
        let mapped = snapshot
            .snapshot()
            .table_properties()
            .column_mapping_mode
            .is_some_and(|m| serde_json::to_value(m).ok() != Some(Value::from("none")));
        if mapped || files.iter().any(|f| f.deletion_vector) {
            return None;
        }
        let table_schema = snapshot.snapshot().arrow_schema();
        let data: Vec<Field> = table_schema
            .fields()
            .iter()
            .filter(|f| !PARTITION_COLUMNS.contains(&f.name().as_str()))
            .map(|f| f.as_ref().clone().with_data_type(read_type(f.data_type())))
            .collect();
        let partitions: Vec<FieldRef> =
            PARTITION_COLUMNS.iter().map(|name| Arc::new(Field::new(*name, partition_type(), false))).collect();
        let file_schema = Arc::new(Schema::new(data));
        let all = file_schema.fields().iter().cloned().chain(partitions.iter().cloned()).collect::<Vec<_>>();
        Some(ActiveFiles {
            schema: Arc::new(Schema::new(all)),
            file_schema,
            partitions,
            store: table.log_store().object_store_url(),
            files,
        })
    }

    /// Which files may hold rows matching `filters`: exactly by the filters of partition columns
    /// alone (which need no more evaluation), then by the log's statistics. Other filters it
    /// cannot use rule nothing out.
    fn wanted(&self, state: &dyn Session, filters: &[Expr]) -> Result<Vec<bool>> {
        let mut wanted = vec![true; self.files.len()];
        if self.files.is_empty() {
            return Ok(wanted);
        }
        let (exact, rest): (Vec<Expr>, Vec<Expr>) = filters.iter().cloned().partition(on_partitions);
        if let Some(filter) = conjunction(exact) {
            let schema = Arc::new(Schema::new(self.partitions.clone()));
            let predicate = state.create_physical_expr(filter, &DFSchema::try_from(schema.clone())?)?;
            let value = |f: &DataFile, i: usize| partition_value(if i == 0 { &f.tenant } else { &f.dt });
            let columns = (0..self.partitions.len())
                .map(|i| ScalarValue::iter_to_array(self.files.iter().map(|f| value(f, i))))
                .collect::<Result<Vec<_>>>()?;
            let batch = RecordBatch::try_new(schema, columns)?;
            let matched = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
            let matched = matched.as_boolean();
            for (i, w) in wanted.iter_mut().enumerate() {
                *w = matched.is_valid(i) && matched.value(i);
            }
        }
        let Some(filter) = conjunction(rest) else { return Ok(wanted) };
        let pruned = DFSchema::try_from(self.schema.clone())
            .and_then(|schema| state.create_physical_expr(filter, &schema))
            .and_then(|predicate| {
                PruningPredicateBuilder::new().with_file_schema(self.schema.clone()).try_build(predicate)
            })
            .and_then(|pruning| pruning.prune(&FileStatistics { scan: self }));
        if let Ok(kept) = pruned {
            wanted.iter_mut().zip(kept).for_each(|(w, k)| *w &= k);
        }
        Ok(wanted)
    }
}

/// Whether `filter` reads partition columns alone: the scan applies it exactly, file by file.
fn on_partitions(filter: &Expr) -> bool {
    expr_applicable_for_cols(&PARTITION_COLUMNS, filter)
}

/// A partition column's value, of its type.
fn partition_value(value: &str) -> ScalarValue {
    ScalarValue::Dictionary(Box::new(DataType::UInt16), Box::new(ScalarValue::from(value)))
}

#[async_trait]
impl TableProvider for ActiveFiles {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Filters of partition columns alone choose the files, exactly; the others prune files, row
    /// groups and pages, and are applied to the rows read again.
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if on_partitions(f) { TableProviderFilterPushDown::Exact } else { TableProviderFilterPushDown::Inexact }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let wanted = self.wanted(state, filters)?;
        let mut files: Vec<&DataFile> = self.files.iter().zip(wanted).filter(|(_, w)| *w).map(|(f, _)| f).collect();
        if files.is_empty() {
            return Ok(Arc::new(EmptyExec::new(project_schema(&self.schema, projection)?)));
        }
        // The largest files first, each to the group with the fewest bytes so far: the groups
        // are read in parallel.
        files.sort_by_key(|f| std::cmp::Reverse(f.bytes));
        let groups_max = state.config().target_partitions().max(1).min(files.len());
        let mut groups: Vec<(u64, Vec<PartitionedFile>)> = vec![(0, Vec::new()); groups_max];
        let (mut rows, mut bytes) = (Some(0usize), 0usize);
        for f in files {
            let meta = ObjectMeta {
                location: f.location.clone(),
                last_modified: Default::default(),
                size: f.bytes,
                e_tag: None,
                version: None,
            };
            let values = vec![partition_value(&f.tenant), partition_value(&f.dt)];
            let file = PartitionedFile::new_from_meta(meta).with_partition_values(values);
            let group = groups.iter_mut().min_by_key(|(b, _)| *b).expect("at least one group");
            group.0 += f.bytes;
            group.1.push(file);
            rows = rows.zip(f.rows).map(|(a, b)| a + b as usize);
            bytes += f.bytes as usize;
        }
        let statistics = Statistics {
            num_rows: rows.map_or(Precision::Absent, Precision::Exact),
            total_byte_size: Precision::Inexact(bytes),
            column_statistics: Statistics::unknown_column(&self.schema),
        };
        let format = ParquetFormat::new().with_options(state.table_options().parquet.clone());
        let source = format.file_source(
            TableSchema::builder(self.file_schema.clone()).with_table_partition_cols(self.partitions.clone()).build(),
        );
        let config = FileScanConfigBuilder::new(self.store.clone(), source)
            .with_file_groups(groups.into_iter().map(|(_, files)| FileGroup::new(files)).collect())
            .with_statistics(statistics)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        format.create_physical_plan(state, config).await
    }
}

/// The files' partition values and the log's statistics, as bounds a pruning predicate tests.
struct FileStatistics<'a> {
    scan: &'a ActiveFiles,
}

#[derive(Clone, Copy)]
enum Bound {
    Min,
    Max,
}

impl FileStatistics<'_> {
    fn bounds(&self, column: &Column, bound: Bound) -> Option<ArrayRef> {
        let field = self.scan.schema.field_with_name(&column.name).ok()?;
        let null = ScalarValue::try_from(field.data_type()).ok()?;
        let values = self.scan.files.iter().map(|f| {
            let partition = match column.name.as_str() {
                "tenant" => Some(&f.tenant),
                "dt" => Some(&f.dt),
                _ => None,
            };
            if let Some(value) = partition {
                return partition_value(value);
            }
            let which = match bound {
                Bound::Min => "minValues",
                Bound::Max => "maxValues",
            };
            let stat = f.stats.as_ref().map(|s| &s[which][&column.name]).unwrap_or(&Value::Null);
            bound_value(stat, field.data_type(), bound).unwrap_or_else(|| null.clone())
        });
        ScalarValue::iter_to_array(values).ok()
    }

    fn counts(&self, count: impl Fn(&DataFile) -> Option<u64>) -> Option<ArrayRef> {
        Some(Arc::new(self.scan.files.iter().map(count).collect::<UInt64Array>()))
    }
}

/// A bound of a column's values from the log's statistics, of the column's type; `None` where
/// the statistic bounds nothing. Delta truncates a string's statistics to a prefix (a lower bound
/// still, never an upper one) and a timestamp's to the millisecond.
fn bound_value(stat: &Value, t: &DataType, bound: Bound) -> Option<ScalarValue> {
    let value = match (stat, t) {
        (Value::Number(n), DataType::Float32 | DataType::Float64) => ScalarValue::Float64(Some(n.as_f64()?)),
        (Value::Number(n), t) if t.is_integer() => ScalarValue::Int64(Some(n.as_i64()?)),
        (Value::Bool(b), DataType::Boolean) => ScalarValue::Boolean(Some(*b)),
        (Value::String(s), DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8) => {
            if matches!(bound, Bound::Max) && s.chars().count() >= STATS_STRING_CHARS {
                return None;
            }
            ScalarValue::Utf8(Some(s.clone()))
        }
        (Value::String(_), DataType::Timestamp(_, tz)) => {
            let ns = strata_model::parse_timestamp(stat).ok()?;
            let us = match bound {
                Bound::Min => ns.div_euclid(1_000),
                Bound::Max => (ns + 999_999).div_euclid(1_000),
            };
            ScalarValue::TimestampMicrosecond(Some(us), tz.clone())
        }
        _ => return None,
    };
    value.cast_to(t).ok()
}

impl PruningStatistics for FileStatistics<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bounds(column, Bound::Min)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.bounds(column, Bound::Max)
    }

    fn num_containers(&self) -> usize {
        self.scan.files.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        if PARTITION_COLUMNS.contains(&column.name.as_str()) {
            return self.counts(|_| Some(0));
        }
        self.counts(|f| f.stats.as_ref()?["nullCount"][&column.name].as_u64())
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        self.counts(|f| f.rows)
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::datatypes::TimeUnit;
    use serde_json::json;

    #[test]
    fn bounds_are_bounds_even_where_the_log_truncates() {
        let micros = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let at = json!("2026-01-02T10:00:00.123Z");
        let us = 1_767_348_000_123_000;
        assert_eq!(
            bound_value(&at, &micros, Bound::Min),
            Some(ScalarValue::TimestampMicrosecond(Some(us), Some("UTC".into())))
        );
        assert_eq!(
            bound_value(&at, &micros, Bound::Max),
            Some(ScalarValue::TimestampMicrosecond(Some(us + 999), Some("UTC".into()))),
            "a maximum kept to the millisecond bounds the microseconds after it"
        );
        let long = json!("x".repeat(STATS_STRING_CHARS));
        assert_eq!(bound_value(&long, &DataType::Utf8View, Bound::Max), None, "a prefix is no upper bound");
        assert!(bound_value(&long, &DataType::Utf8View, Bound::Min).is_some(), "but it is a lower bound");
        assert_eq!(bound_value(&json!(5), &DataType::Int32, Bound::Min), Some(ScalarValue::Int32(Some(5))));
        assert_eq!(bound_value(&json!(2.5), &DataType::Float64, Bound::Max), Some(ScalarValue::Float64(Some(2.5))));
        assert_eq!(bound_value(&json!("5"), &DataType::Int64, Bound::Min), None, "another type bounds nothing");
    }
}
