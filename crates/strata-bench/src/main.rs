//! `strata-bench`: generates realistic telemetry and measures a Strata server with it.
//!
//! Each subcommand lives in its own module with its own `Args`; add one by adding a variant to
//! [`Command`] and a match arm in `main`.

mod args;
mod generate;
mod ingest;
mod log_append;
mod process;
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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Gen(args) => generate::run(&args),
        Command::Ingest(args) => ingest::run(args),
        Command::LogAppend(args) => log_append::run(args),
    }
}
