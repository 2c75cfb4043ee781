//! `strata-bench`: generates realistic telemetry and measures a Strata server with it.
//!
//! Each subcommand lives in its own module with its own `Args`; add one by adding a variant to
//! [`Command`] and a match arm in `main`.

mod args;
mod generate;
mod http1;
mod index;
mod ingest;
mod lake;
mod log_append;
mod otlp_body;
mod process;
mod promql_dataset;
mod promql_load;
mod promql_query;
mod remote_write;
mod rollup_delay;
mod search_http;
mod search_latency;
mod searchable;
mod stream;
mod summary;
mod workload;

use clap::{Parser, Subcommand};

/// Workload generator and benchmark tool for Strata.
#[derive(Debug, Parser)]
#[command(name = "strata-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Print generated records as NDJSON on stdout.
    Gen(generate::GenArgs),
    /// Send generated records to a server's ingest API; report throughput, statuses and latency.
    Ingest(ingest::IngestArgs),
    /// Append to the embedded log alone, with fsync, beside `dd conv=fdatasync` on the same disk.
    LogAppend(log_append::LogAppendArgs),
    /// Index generated log lines in process with the search sink; report throughput, index size and memory.
    Index(index::IndexArgs),
    /// Print what a day index's bytes hold, by field and part (terms, postings, positions, fast, norms).
    IndexUsage(index::IndexUsageArgs),
    /// Time searches over indexes written by `index`: a rare term, a common term, a phrase, a filter.
    SearchLatency(search_latency::SearchLatencyArgs),
    /// Time searches through a server's HTTP API over lines it ingested, beside ripgrep over the same file.
    SearchHttp(search_http::SearchHttpArgs),
    /// Measure how long after its ingest acknowledgement a line is found by a server's search API.
    Searchable(searchable::SearchableArgs),
    /// Send hours of a node-exporter-like fleet to a Prometheus remote write endpoint; report throughput.
    RemoteWrite(remote_write::RemoteWriteArgs),
    /// Remote-write the PromQL benchmark's 10,000 series, in time order; wait until they can be queried.
    PromqlLoad(promql_load::PromqlLoadArgs),
    /// Time a PromQL query through the Prometheus HTTP API; report median, p90 and what it answered.
    PromqlQuery(promql_query::PromqlQueryArgs),
    /// Run events through deduplication, enrichment and two rollups in process; report events/s and state.
    Stream(stream::StreamArgs),
    /// Measure how long after a window's end its rollup is read through PromQL, against a server.
    RollupDelay(rollup_delay::RollupDelayArgs),
    /// Write the lake's events table through its sink in process, then time SQL over it.
    Lake(lake::LakeArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Gen(args) => generate::run(&args),
        Command::Ingest(args) => ingest::run(args),
        Command::LogAppend(args) => log_append::run(args),
        Command::Index(args) => index::run(args),
        Command::IndexUsage(args) => index::usage(&args),
        Command::SearchLatency(args) => search_latency::run(args),
        Command::SearchHttp(args) => search_http::run(args),
        Command::Searchable(args) => searchable::run(args),
        Command::RemoteWrite(args) => remote_write::run(args),
        Command::PromqlLoad(args) => promql_load::run(args),
        Command::PromqlQuery(args) => promql_query::run(args),
        Command::Stream(args) => stream::run(args),
        Command::RollupDelay(args) => rollup_delay::run(args),
        Command::Lake(args) => lake::run(args),
    }
}
