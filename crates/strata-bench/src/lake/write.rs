//! `strata-bench lake write`: the `events` table written by the lake's sink in process, driven
//! as the consumer runtime drives it: through `Typed` (which decodes each stored event), in
//! reads of about `read_bytes_max` of one partition with consecutive offsets, a commit whenever
//! the sink asks for one (every `commit_bytes_max` of events) and at the end. Only the sink's
//! calls are timed: making and serialising the events is the generator's work, as reading them
//! is the log's in the server.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use serde::Serialize;
use strata_lake::{EventsSink, LakeConfig};
use strata_log::StoredRecord;
use strata_model::Topic as _;
use strata_model::topic::EventsEnriched;
use strata_pipeline::{BlockingSink, Positions, Sink as _, Typed};

use super::data::Generator;

/// Options of `strata-bench lake write`.
#[derive(Debug, clap::Args)]
pub struct WriteArgs {
    /// The lake's directory; created, and must not hold anything yet.
    #[arg(long)]
    dir: PathBuf,
    /// Events to write.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Days the events' timestamps spread over.
    #[arg(long, default_value_t = 3)]
    days: u32,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The sink commits past this many bytes of event JSON (the server's `lake.commit_bytes_max`).
    #[arg(long, default_value_t = 128 << 20)]
    commit_bytes_max: usize,
    /// Bytes of event JSON handed to the sink at a time (the server's `pipeline.read_bytes_max`).
    #[arg(long, default_value_t = 1 << 20)]
    read_bytes_max: usize,
    /// Also time decoding the events' JSON alone (as `Typed` does before the sink's `write`),
    /// outside the measured time: how much of the write calls it is.
    #[arg(long)]
    breakdown: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    events: u64,
    raw_json_bytes: u64,
    seconds: f64,
    /// Of raw event JSON, in millions of bytes a second.
    mb_per_s: f64,
    events_per_s: f64,
    /// Time in the sink's `write` calls (decoding, buffering) and `commit` calls (Arrow, Parquet, Delta).
    write_seconds: f64,
    commit_seconds: f64,
    /// With `--breakdown`: decoding the JSON alone, timed apart (not part of `seconds`).
    #[serde(skip_serializing_if = "Option::is_none")]
    decode_seconds: Option<f64>,
    commits: u64,
    commit_ms_max: f64,
    parquet_files: u64,
    parquet_bytes: u64,
    delta_log_bytes: u64,
    table_bytes: u64,
    /// The table's bytes on disk over the raw JSON's.
    size_fraction: f64,
    rejected_bytes: u64,
    rss_peak_bytes: u64,
}

pub fn run(args: WriteArgs) -> anyhow::Result<()> {
    ensure!(
        !args.dir.exists() || std::fs::read_dir(&args.dir)?.next().is_none(),
        "{} must be empty or absent",
        args.dir.display()
    );
    std::fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    let topic = EventsEnriched::SPEC.name;
    let cfg = LakeConfig {
        location: strata_lake::Location::local(&args.dir),
        commit_bytes_max: args.commit_bytes_max,
        partitions: 1,
    };
    let mut sink = BlockingSink::new(Typed::new(EventsSink::new(cfg)));
    ensure!(sink.committed()?.is_empty(), "a new lake covers no position");
    let mut generator = Generator::new(args.seed, args.events, args.days)?;

    let (mut write_time, mut commit_time, mut commit_max) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut decode_time = Duration::ZERO;
    let (mut raw_bytes, mut commits) = (0u64, 0u64);
    let mut batch: Vec<StoredRecord> = Vec::new();
    let mut next = 0u64;
    while next < args.events {
        batch.clear();
        let mut bytes = 0;
        while bytes < args.read_bytes_max && next < args.events {
            let record = generator.record(next);
            bytes += record.record.payload.len();
            batch.push(record);
            next += 1;
        }
        raw_bytes += bytes as u64;
        if args.breakdown {
            let started = Instant::now();
            for r in &batch {
                std::hint::black_box(EventsEnriched::decode(&r.record.payload)?);
            }
            decode_time += started.elapsed();
        }
        let started = Instant::now();
        sink.write(topic, 0, &batch)?;
        write_time += started.elapsed();
        if sink.get_ref().wants_commit() || next == args.events {
            let started = Instant::now();
            sink.commit(&Positions::from([((topic.to_string(), 0), next)]))?;
            let took = started.elapsed();
            commit_time += took;
            commit_max = commit_max.max(took);
            commits += 1;
        }
    }
    drop(sink);

    let seconds = (write_time + commit_time).as_secs_f64();
    let events_dir = args.dir.join("events");
    let (parquet_files, parquet_bytes) = files_under(&events_dir, &|p| {
        p.extension().is_some_and(|e| e == "parquet") && !p.components().any(|c| c.as_os_str() == "_delta_log")
    })?;
    let (_, delta_log_bytes) = files_under(&events_dir.join("_delta_log"), &|_| true)?;
    let (_, rejected_bytes) = files_under(&args.dir.join("rejected"), &|_| true)?;
    let table_bytes = parquet_bytes + delta_log_bytes;
    let report = Report {
        events: args.events,
        raw_json_bytes: raw_bytes,
        seconds,
        mb_per_s: raw_bytes as f64 / 1e6 / seconds,
        events_per_s: args.events as f64 / seconds,
        write_seconds: write_time.as_secs_f64(),
        commit_seconds: commit_time.as_secs_f64(),
        decode_seconds: args.breakdown.then_some(decode_time.as_secs_f64()),
        commits,
        commit_ms_max: commit_max.as_secs_f64() * 1000.0,
        parquet_files,
        parquet_bytes,
        delta_log_bytes,
        table_bytes,
        size_fraction: table_bytes as f64 / raw_bytes as f64,
        rejected_bytes,
        rss_peak_bytes: crate::process::read_memory(std::process::id())?.rss_peak_bytes,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "lake write: {} events, {:.1} MB of JSON in {:.1} s: {:.1} MB/s, {:.0} events/s ({:.1} s in write, {:.1} s in {} commits, {:.0} ms max); table {:.1} MB in {} Parquet files + {:.2} MB of log = {:.1}% of the JSON",
            report.events,
            raw_bytes as f64 / 1e6,
            seconds,
            report.mb_per_s,
            report.events_per_s,
            report.write_seconds,
            report.commit_seconds,
            commits,
            report.commit_ms_max,
            parquet_bytes as f64 / 1e6,
            parquet_files,
            delta_log_bytes as f64 / 1e6,
            report.size_fraction * 100.0
        );
        if let Some(decode) = report.decode_seconds {
            println!("  decoding the JSON alone (timed apart): {decode:.1} s");
        }
    }
    Ok(())
}

/// How many files below `dir` (at any depth) `wanted` keeps, and their bytes; none if `dir` is missing.
fn files_under(dir: &Path, wanted: &dyn Fn(&Path) -> bool) -> anyhow::Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    if !dir.exists() {
        return Ok((0, 0));
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            let (f, b) = files_under(&path, wanted)?;
            files += f;
            bytes += b;
        } else if wanted(&path) {
            files += 1;
            bytes += entry.metadata()?.len();
        }
    }
    Ok((files, bytes))
}
