//! The numeric parts of PromQL's functions and aggregations, free of the evaluator: each works
//! on plain samples and values so that it can be tested against Prometheus's definitions alone.

pub mod histogram;
pub mod instant;
pub mod range;
pub mod stats;
