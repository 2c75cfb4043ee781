//! `strata-bench lake`: the data lake's `events` table written by its sink in process (`write`),
//! then analytical SQL over it (`query`), which `scripts/bench-lake.sh` times beside DuckDB on
//! the same Parquet files.

mod data;
mod query;
mod write;

/// Options of `strata-bench lake`.
#[derive(Debug, clap::Args)]
pub struct LakeArgs {
    #[command(subcommand)]
    phase: Phase,
}

#[derive(Debug, clap::Subcommand)]
enum Phase {
    /// Write generated events to a new lake through the events sink; report MB/s of JSON and size on disk.
    Write(write::WriteArgs),
    /// Time analytical queries over the lake through Strata's SQL; print one JSON line per query.
    Query(query::QueryArgs),
}

pub fn run(args: LakeArgs) -> anyhow::Result<()> {
    match args.phase {
        Phase::Write(args) => write::run(args),
        Phase::Query(args) => query::run(args),
    }
}
