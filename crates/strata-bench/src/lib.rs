//! The parts of `strata-bench` that tests elsewhere in the workspace use: the metric fleet, so that
//! a test can check what the server stores of the very workload the benchmarks send.

pub mod metrics_workload;
