//! PromQL for Strata: queries parsed by `promql-parser` and evaluated here, over any [`Storage`]
//! (the metric store's querier in the server, an in-memory store in tests), with Prometheus's
//! semantics: lookback and staleness, extrapolated rates, vector matching, and its errors.
//!
//! Evaluation pushes series through the expression tree one at a time where the operator allows
//! it (selectors, functions, aggregations), so `sum by (job) (rate(x[5m]))` holds one input series
//! and the groups, never the whole matrix of rates.

pub mod engine;
mod eval;
pub mod functions;
pub mod storage;
mod syntax;
pub mod tsdb;
pub mod value;

pub use engine::{Engine, Limits, QueryError};
pub use storage::{MemStorage, SeriesSet, Storage, Union};
pub use value::{Annotations, Labels, QueryResult, Sample, Series, Value};
