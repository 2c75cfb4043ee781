//! Export pointers: the data files of a table that may hold a tenant's rows of a time range and
//! with given column values, after pruning by partition (tenant, day) and by the statistics the
//! Delta log keeps of each file. A warehouse job loads these files itself; nothing is copied.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::sql::SqlError;
use crate::table::{DataFile, PARTITION_COLUMNS, Table};
use crate::{Location, day};

/// Which rows are wanted.
#[derive(Debug, Clone, Default)]
pub struct Range {
    /// `timestamp` at or after this, in Unix nanoseconds.
    pub from_ns: Option<i64>,
    /// `timestamp` before this.
    pub to_ns: Option<i64>,
    /// Columns equal to values.
    pub equal: BTreeMap<String, Value>,
}

/// The files that may hold wanted rows, and how many files the tenant's rows span in all.
#[derive(Debug)]
pub struct Files {
    pub files: Vec<DataFile>,
    pub considered: usize,
}

/// Delta keeps at most this many characters of a string's statistics: longer ones are prefixes,
/// which cannot rule a value out.
const STATS_STRING_CHARS: usize = 32;

/// Delta keeps timestamps' statistics to the millisecond, truncated.
const STATS_TIME_NS: i64 = 1_000_000;

/// Whether a file whose statistics are `min` and `max` may hold `v`.
fn may_hold(min: &Value, max: &Value, v: &Value) -> bool {
    match (min, max, v) {
        (Value::Number(lo), Value::Number(hi), Value::Number(x)) => {
            let (lo, hi, x) = (lo.as_f64().unwrap_or(f64::MIN), hi.as_f64().unwrap_or(f64::MAX), x.as_f64());
            x.is_none_or(|x| lo <= x && x <= hi)
        }
        (Value::String(lo), Value::String(hi), Value::String(x)) => {
            let exact = |s: &str| s.chars().count() < STATS_STRING_CHARS;
            let below = exact(lo) && x.as_str() < lo.as_str();
            let above = exact(hi) && x.as_str() > hi.as_str();
            !below && !above
        }
        (Value::Bool(lo), Value::Bool(hi), Value::Bool(x)) => lo <= x && x <= hi,
        // Statistics of another type than the value: nothing is ruled out.
        _ => true,
    }
}

fn time_ns(text: Option<&str>) -> Option<i64> {
    strata_model::parse_timestamp(&Value::String(text?.to_string())).ok()
}

/// Whether `f` may hold rows of `range`.
fn wanted(f: &DataFile, range: &Range) -> bool {
    if let Some(from) = range.from_ns {
        if f.dt.as_str() < day(from).as_str() {
            return false;
        }
        if time_ns(f.time_max.as_deref()).is_some_and(|max| max + STATS_TIME_NS <= from) {
            return false;
        }
    }
    if let Some(to) = range.to_ns {
        if f.dt.as_str() > day(to - 1).as_str() {
            return false;
        }
        if time_ns(f.time_min.as_deref()).is_some_and(|min| min >= to) {
            return false;
        }
    }
    range.equal.iter().all(|(column, v)| {
        if column == "dt" {
            return v.as_str().is_none_or(|d| d == f.dt);
        }
        let Some(stats) = &f.stats else { return true };
        let (min, max) = (&stats["minValues"][column], &stats["maxValues"][column]);
        if min.is_null() || max.is_null() {
            // No statistics, or only nulls: a file with only nulls holds no value.
            let nulls = stats["nullCount"][column].as_u64();
            return !(nulls.is_some() && nulls == stats["numRecords"].as_u64() && !v.is_null());
        }
        may_hold(min, max, v)
    })
}

/// The files of table `name` of the lake at `location` that may hold `tenant`'s rows of `range`.
pub async fn files(location: &Location, name: &str, tenant: &str, range: &Range) -> Result<Files, SqlError> {
    let table = Table::open_in(location, name).await.map_err(|e| SqlError::Internal(e.to_string()))?;
    if table.version().is_none() {
        return Ok(Files { files: Vec::new(), considered: 0 });
    }
    if let Some(schema) = table.schema() {
        for column in range.equal.keys() {
            if schema.column_with_name(column).is_none() {
                return Err(SqlError::Refused(format!("the table has no column {column:?}")));
            }
            if column == PARTITION_COLUMNS[0] {
                return Err(SqlError::Refused("the tenant is the caller's; it is not a filter".into()));
            }
        }
    }
    let mine: Vec<DataFile> = table.files().into_iter().filter(|f| f.tenant == tenant).collect();
    let considered = mine.len();
    let files = mine.into_iter().filter(|f| wanted(f, range)).collect();
    Ok(Files { files, considered })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statistics_rule_values_out_only_when_they_can() {
        assert!(may_hold(&json!(1), &json!(5), &json!(3)));
        assert!(!may_hold(&json!(1), &json!(5), &json!(6)));
        assert!(!may_hold(&json!("b"), &json!("d"), &json!("a")));
        assert!(may_hold(&json!("b"), &json!("d"), &json!("c")));
        let long = "x".repeat(STATS_STRING_CHARS);
        assert!(may_hold(&json!("b"), &json!(long), &json!("y")), "a truncated maximum rules nothing out");
        assert!(may_hold(&json!(1), &json!(5), &json!("3")), "another type rules nothing out");
    }

    #[test]
    fn files_are_pruned_by_day_and_time_statistics() {
        let f = DataFile {
            uri: String::new(),
            path: String::new(),
            location: Default::default(),
            bytes: 1,
            rows: Some(2),
            tenant: "a".into(),
            dt: "2023-11-14".into(),
            time_min: Some("2023-11-14T10:00:00.000Z".into()),
            time_max: Some("2023-11-14T12:00:00.000Z".into()),
            stats: Some(json!({"numRecords": 2, "minValues": {"amount": 1}, "maxValues": {"amount": 9},
                "nullCount": {"amount": 0, "region": 2}})),
            deletion_vector: false,
        };
        let at = |s: &str| strata_model::parse_timestamp(&json!(s)).unwrap();
        let range = |from: &str, to: &str| Range { from_ns: Some(at(from)), to_ns: Some(at(to)), ..Range::default() };
        assert!(wanted(&f, &range("2023-11-14T11:00:00Z", "2023-11-14T11:30:00Z")));
        assert!(!wanted(&f, &range("2023-11-14T13:00:00Z", "2023-11-15T00:00:00Z")));
        assert!(!wanted(&f, &range("2023-11-14T00:00:00Z", "2023-11-14T10:00:00Z")), "to is exclusive");
        assert!(wanted(&f, &range("2023-11-14T12:00:00.0005Z", "2023-11-15T00:00:00Z")), "stats are truncated to ms");
        assert!(!wanted(&f, &range("2023-11-15T00:00:00Z", "2023-11-16T00:00:00Z")));
        let eq = |c: &str, v: Value| Range { equal: BTreeMap::from([(c.to_string(), v)]), ..Range::default() };
        assert!(wanted(&f, &eq("amount", json!(5))));
        assert!(!wanted(&f, &eq("amount", json!(10))));
        assert!(!wanted(&f, &eq("region", json!("eu"))), "a column of nulls only");
        assert!(wanted(&f, &eq("dt", json!("2023-11-14"))));
        assert!(!wanted(&f, &eq("dt", json!("2023-11-15"))));
    }
}
