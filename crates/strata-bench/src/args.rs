//! Command-line arguments shared by several subcommands.

use clap::{Args, ValueEnum};
use strata_client::{Compression, RecordKind};

use crate::workload::WorkloadConfig;

/// The kind of record to generate or send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// Log lines.
    Logs,
    /// Structured events.
    Events,
    /// Metric samples.
    Metrics,
}

impl From<KindArg> for RecordKind {
    fn from(kind: KindArg) -> RecordKind {
        match kind {
            KindArg::Logs => RecordKind::Logs,
            KindArg::Events => RecordKind::Events,
            KindArg::Metrics => RecordKind::Metrics,
        }
    }
}

/// How request bodies are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    /// Uncompressed.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl From<CompressionArg> for Compression {
    fn from(compression: CompressionArg) -> Compression {
        match compression {
            CompressionArg::None => Compression::None,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
        }
    }
}

/// The shape of the generated workload.
#[derive(Debug, Clone, Args)]
pub struct WorkloadArgs {
    /// Seed of the generator: the same seed gives the same records (timestamps aside).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Distinct sources (`host-00001` ...) of logs and events.
    #[arg(long, default_value_t = 10_000)]
    pub sources: u64,
    /// Zipf exponent of how often each source appears.
    #[arg(long, default_value_t = 1.1)]
    pub zipf_exponent: f64,
    /// Average serialized size of one log record, in bytes (events keep their natural size).
    #[arg(long, default_value_t = 1024)]
    pub event_bytes: usize,
    /// Distinct metric series (node-exporter-like, 62 per host).
    #[arg(long, default_value_t = 10_000)]
    pub series: u64,
}

impl WorkloadArgs {
    /// The generator configuration these arguments describe.
    pub fn config(&self) -> WorkloadConfig {
        WorkloadConfig {
            seed: self.seed,
            sources: self.sources,
            zipf_exponent: self.zipf_exponent,
            event_bytes: self.event_bytes,
            series: self.series,
        }
    }
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
}
