//! What queries return: scalars, strings, instant vectors and range vectors (matrices).

/// A label set sorted by name, `__name__` included.
pub type Labels = strata_tsdb::LabelSet;

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
}

/// A series with its points in time order (milliseconds since the epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
}

/// The value of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { t: i64, v: f64 },
    String { t: i64, s: String },
    Vector(Vec<Sample>),
    Matrix(Vec<Series>),
}

/// Prometheus's annotations: warnings say a result may be wrong, infos that a query may not mean
/// what it says (for example `rate` over a series that does not look like a counter).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotations {
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

impl Annotations {
    pub fn warn(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        if !self.warnings.contains(&msg) {
            self.warnings.push(msg);
        }
    }

    pub fn info(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        if !self.infos.contains(&msg) {
            self.infos.push(msg);
        }
    }
}

/// A query's value with its annotations.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResult {
    pub value: Value,
    pub annotations: Annotations,
}
