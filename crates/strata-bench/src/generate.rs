//! `strata-bench gen`: generated records as NDJSON on stdout, for curl and other tools.

use std::io::{self, Write as _};

use clap::Args;

use crate::args::{KindArg, WorkloadArgs, now_ms};
use crate::workload::Workload;

/// Records generated per write to stdout.
const CHUNK_RECORDS_MAX: u64 = 1024;

/// Arguments of `strata-bench gen`.
#[derive(Debug, Args)]
pub struct GenArgs {
    /// Kind of record to generate.
    #[arg(long, value_enum, default_value_t = KindArg::Logs)]
    kind: KindArg,
    /// Number of records.
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// Stamp every record with this Unix time in milliseconds instead of the current time, for output
    /// that is the same on every run.
    #[arg(long)]
    time_ms: Option<i64>,
    #[command(flatten)]
    workload: WorkloadArgs,
}

/// Writes the records; a closed stdout (`| head`) ends the command quietly.
pub fn run(args: &GenArgs) -> anyhow::Result<()> {
    match write_records(args) {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        result => Ok(result?),
    }
}

fn write_records(args: &GenArgs) -> io::Result<()> {
    let mut workload = Workload::new(args.workload.config()).map_err(io::Error::other)?;
    let mut stdout = io::stdout().lock();
    let mut buffer = Vec::with_capacity(CHUNK_RECORDS_MAX as usize * (args.workload.event_bytes + 64));
    let mut remaining = args.count;
    while remaining > 0 {
        let chunk = remaining.min(CHUNK_RECORDS_MAX);
        buffer.clear();
        let now = args.time_ms.unwrap_or_else(now_ms);
        workload.write_ndjson(args.kind.into(), chunk as usize, now, &mut buffer);
        stdout.write_all(&buffer)?;
        remaining -= chunk;
    }
    stdout.flush()
}
