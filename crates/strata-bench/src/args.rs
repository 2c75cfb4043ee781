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

/// An HTTP client with `headers` and, given a key, a bearer token sent with every request.
/// `one_connection` keeps one idle connection per host, so that a task with its own client
/// really has its own TCP connection.
pub fn http_client(
    mut headers: reqwest::header::HeaderMap,
    bearer: Option<&str>,
    timeout: std::time::Duration,
    one_connection: bool,
) -> anyhow::Result<reqwest::Client> {
    use anyhow::Context as _;
    if let Some(key) = bearer {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
            .context("the api key contains characters not allowed in an http header")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let mut builder = reqwest::Client::builder().default_headers(headers).timeout(timeout);
    if one_connection {
        builder = builder.pool_max_idle_per_host(1);
    }
    builder.build().context("failed to build the http client")
}

/// Checks that `url` parses and is plain http (the servers under test listen on 127.0.0.1).
pub fn check_url(url: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let parsed = reqwest::Url::parse(url).with_context(|| format!("invalid url {url:?}"))?;
    anyhow::ensure!(parsed.scheme() == "http", "invalid url {url:?}: the scheme must be http");
    Ok(())
}

/// The current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
}
