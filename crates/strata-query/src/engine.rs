//! Evaluation of PromQL expressions.

use std::time::Duration;

use std::sync::Once;

use promql_parser::parser::Expr;
use promql_parser::parser::function::{Function, register_extra_functions};
use promql_parser::parser::value::ValueType;

use crate::eval::{Evaluator, Grid};
use crate::storage::Storage;
use crate::syntax;
use crate::value::QueryResult;

/// What one query may cost. Each exceeded limit is an error, never an out-of-memory kill.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Samples loaded from storage and points held at once, as Prometheus's `--query.max-samples`.
    pub max_samples: usize,
    /// Steps of a range query (Prometheus refuses more than 11,000).
    pub max_points_per_series: usize,
    pub timeout: Duration,
    /// How far back an instant selector looks for a sample.
    pub lookback_ms: i64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_samples: 50_000_000,
            max_points_per_series: 11_000,
            timeout: Duration::from_secs(120),
            lookback_ms: 5 * 60 * 1000,
        }
    }
}

/// Why a query has no answer, in Prometheus's error types.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The query or a parameter is not valid (`bad_data`, 400).
    #[error("{0}")]
    BadData(String),
    /// The query is valid but cannot be evaluated (`execution`, 422).
    #[error("{0}")]
    Execution(String),
    /// More samples than `max_samples` would be loaded (`execution`, 422).
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    /// The query ran past its timeout (`timeout`, 503).
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// The storage failed to read (`internal`, 500).
    #[error("{0}")]
    Storage(String),
}

impl QueryError {
    /// The `errorType` of Prometheus's API envelope.
    pub fn kind(&self) -> &'static str {
        match self {
            QueryError::BadData(_) => "bad_data",
            QueryError::Execution(_) | QueryError::TooManySamples => "execution",
            QueryError::Timeout(_) => "timeout",
            QueryError::Storage(_) => "internal",
        }
    }
}

/// Evaluates PromQL queries under limits.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    pub limits: Limits,
}

impl Engine {
    pub fn new(limits: Limits) -> Engine {
        Engine { limits }
    }

    /// Evaluates `query` at `t_ms`. The value is of the expression's type: a scalar, a string,
    /// an instant vector, or a range vector for a range selector or subquery.
    pub fn instant(&self, storage: &dyn Storage, query: &str, t_ms: i64) -> Result<QueryResult, QueryError> {
        let expr = parse(query)?;
        let mut ev = Evaluator::new(storage, &self.limits, query, Grid { start: t_ms, end: t_ms, step: 1 });
        ev.instant(&expr, t_ms)
    }

    /// Evaluates `query` at every `step_ms` from `start_ms` to `end_ms`; the value is a matrix.
    pub fn range(
        &self,
        storage: &dyn Storage,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, QueryError> {
        if step_ms <= 0 {
            return Err(QueryError::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        if end_ms < start_ms {
            return Err(QueryError::BadData("end timestamp must not be before start time".into()));
        }
        // As Prometheus: at most `max_points_per_series` steps after the first.
        if (end_ms - start_ms) / step_ms > self.limits.max_points_per_series as i64 {
            return Err(QueryError::BadData(format!(
                "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
                thousands(self.limits.max_points_per_series)
            )));
        }
        let expr = parse(query)?;
        match expr.value_type() {
            ValueType::Vector | ValueType::Scalar => {}
            other => {
                return Err(QueryError::BadData(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    type_name(other)
                )));
            }
        }
        let mut ev = Evaluator::new(storage, &self.limits, query, Grid { start: start_ms, end: end_ms, step: step_ms });
        ev.range(&expr, start_ms, end_ms, step_ms)
    }
}

/// Parses a query, with the functions Prometheus 2 had under other names.
pub fn parse(query: &str) -> Result<Expr, QueryError> {
    static LEGACY: Once = Once::new();
    LEGACY.call_once(|| {
        // `holt_winters` became `double_exponential_smoothing` in Prometheus 3; dashboards and
        // rules written for Prometheus 2 still call it.
        let _ = register_extra_functions(vec![Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        )]);
    });
    promql_parser::parser::parse(query).map_err(|e| QueryError::BadData(parse_error(query, &e)))
}

/// A parse error as Prometheus words it: `line:column: parse error: …` where the place is known.
fn parse_error(query: &str, reason: &str) -> String {
    let ends_early = |at: usize| {
        let (line, column) = syntax::line_column(query, at);
        format!("{line}:{column}: parse error: unexpected end of input")
    };
    if reason == "invalid promql query" {
        if !syntax::searchable(query) {
            return format!("parse error: {reason}");
        }
        return match syntax::locate(query) {
            Some((at, token)) => {
                let (line, column) = syntax::line_column(query, at);
                format!("{line}:{column}: parse error: unexpected {token:?}")
            }
            None => ends_early(query.trim_end().len()),
        };
    }
    // The lexer's errors name the text they stopped at; where it appears once, that is the place.
    let at = if reason.contains("parenthesis") || reason.contains("inside braces") || reason.contains("inside brackets")
    {
        syntax::unbalanced(query)
    } else {
        ["bad number or duration syntax: ", "illegal regex for "]
            .iter()
            .find_map(|p| reason.strip_prefix(p))
            .and_then(|text| (query.matches(text).count() == 1).then(|| query.find(text)).flatten())
    };
    match at {
        Some(at) => {
            let (line, column) = syntax::line_column(query, at);
            format!("{line}:{column}: parse error: {reason}")
        }
        None => format!("parse error: {reason}"),
    }
}

pub(crate) fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Vector => "instant vector",
        ValueType::Matrix => "range vector",
        ValueType::Scalar => "scalar",
        ValueType::String => "string",
    }
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
