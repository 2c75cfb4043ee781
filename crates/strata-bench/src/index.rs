//! `strata-bench index`: the log search indexer alone, in process. Generated lines are fed to a
//! `SearchSink` the way the consumer runtime feeds it (through `Typed`, which decodes each stored
//! line, in per-partition batches with consecutive offsets, a commit about every second), and the
//! throughput, the index size and the memory are reported.
//!
//! A pool of distinct producer lines is generated and normalised with `normalize_log`, as the
//! gateway does, before the clock starts. The timed part takes pool lines in rotation, stamps each
//! with its own timestamp (and the rare token on every K-th line), serialises it to the stored
//! form and hands it to the sink, so it counts serialisation, indexing and commits, but not JSON
//! parsing or validation, which belong to the gateway.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::Args;
use serde::Serialize;
use strata_log::{Record, StoredRecord};
use strata_model::topic::Logs;
use strata_model::{Limits, LogLine, TenantId, Topic};
use strata_pipeline::{BlockingSink, Positions, Typed};
use strata_search::{IndexerConfig, Indexes, Retention, SearchSink};

use crate::args::{WorkloadArgs, now_ms};
use crate::process::read_memory;
use crate::search_latency::{count, whole_range};
use crate::workload::Workload;

/// The token appended to the message of every `--rare-every`-th line.
pub const RARE_TOKEN: &str = "xyzzyrare";

/// The tenant every line is indexed for.
pub const TENANT: &str = "bench";

/// The topic the search sink reads.
const TOPIC: &str = Logs::SPEC.name;

/// The clock the pool is generated with: 2024-05-01T12:00:00Z.
const POOL_CLOCK_MS: i64 = 1_714_564_800_000;

/// Arguments of `strata-bench index`.
#[derive(Debug, Args)]
pub struct IndexArgs {
    /// Directory of the indexes; created, and must not hold anything yet.
    #[arg(long)]
    dir: PathBuf,
    /// Lines to index.
    #[arg(long)]
    lines: u64,
    /// Timestamps are spread evenly over this many hours up to now.
    #[arg(long, default_value_t = 6.0)]
    hours: f64,
    /// Every K-th line's message gets the extra token "xyzzyrare".
    #[arg(long, default_value_t = 10_000)]
    rare_every: u64,
    /// Distinct producer lines generated before the clock starts and indexed in rotation.
    #[arg(long, default_value_t = 100_000)]
    pool_lines: usize,
    /// Partitions of the `logs` topic; line i goes to partition i % partitions.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Stored bytes handed to the sink per `write` call.
    #[arg(long, default_value_t = 1 << 20)]
    batch_bytes: usize,
    /// The sink commits after the first `write` this long after its previous commit, and at the end.
    #[arg(long, default_value_t = 1000)]
    commit_interval_ms: u64,
    /// Threads of each index writer (the server's `search.indexing_threads`).
    #[arg(long, default_value_t = IndexerConfig::default().indexing_threads)]
    indexing_threads: usize,
    /// Memory of each index writer, in MiB (the server's `search.writer_memory_bytes`).
    #[arg(long, default_value_t = IndexerConfig::default().writer_memory_bytes >> 20)]
    writer_memory_mib: usize,
    /// Print one JSON object instead of a human-readable summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    workload: WorkloadArgs,
}

#[cfg(test)]
impl IndexArgs {
    /// Arguments for a small run in tests: a pool of 500 lines and 64 KiB batches.
    pub fn for_test(dir: &Path, lines: u64, rare_every: u64, hours: f64) -> IndexArgs {
        IndexArgs {
            dir: dir.to_path_buf(),
            lines,
            hours,
            rare_every,
            pool_lines: 500,
            partitions: 4,
            batch_bytes: 64 << 10,
            commit_interval_ms: 1000,
            indexing_threads: 1,
            writer_memory_mib: 64,
            json: true,
            workload: WorkloadArgs { seed: 1, sources: 10_000, zipf_exponent: 1.1, event_bytes: 1024, series: 10_000 },
        }
    }
}

/// The result of a run, as printed with `--json`.
#[derive(Debug, Serialize)]
pub struct IndexReport {
    pub dir: PathBuf,
    pub lines: u64,
    /// Lines that carry the rare token.
    pub rare_lines: u64,
    /// Sum of the producer JSON sizes of the lines indexed.
    pub raw_bytes: u64,
    /// Sum of the stored (normalised) JSON sizes handed to the sink.
    pub stored_bytes: u64,
    /// Wall time of the timed part: serialisation, `write` calls and commits.
    pub seconds: f64,
    /// Of `seconds`, time inside `SearchSink::write`.
    pub write_seconds: f64,
    /// Of `seconds`, time inside `SearchSink::commit`.
    pub commit_seconds: f64,
    /// Raw JSON megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    pub lines_per_s: f64,
    pub commits: u64,
    pub write_calls: u64,
    /// Lines a search finds in the day indexes after the run; equal to `lines` unless some were lost.
    pub documents: u64,
    /// Day indexes written (one per UTC day the timestamps touch).
    pub day_indexes: usize,
    /// Bytes of every file under `dir` after the run.
    pub index_bytes: u64,
    pub index_bytes_per_raw_byte: f64,
    /// Resident memory once the pool was ready, before the clock started.
    pub rss_after_pool_bytes: u64,
    /// Peak resident memory of this process over the whole run, pool included.
    pub rss_peak_bytes: u64,
    pub pool_lines: usize,
    pub partitions: u32,
    pub batch_bytes: usize,
    pub indexing_threads: usize,
    pub writer_memory_mib: usize,
    pub hours: f64,
    pub rare_every: u64,
    pub seed: u64,
}

/// Where line `i` of a run goes: its partition, offset, timestamp, and whether it is rare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    partition: u32,
    offset: u64,
    timestamp_ms: i64,
    rare: bool,
}

/// The placement of every line of a run, a pure function of the line number.
#[derive(Debug, Clone, Copy)]
struct Plan {
    lines: u64,
    partitions: u32,
    start_ms: i64,
    span_ms: i64,
    rare_every: u64,
}

impl Plan {
    fn slot(&self, i: u64) -> Slot {
        let partitions = u64::from(self.partitions);
        let step = i128::from(self.span_ms) * i128::from(i) / i128::from(self.lines);
        Slot {
            partition: (i % partitions) as u32,
            offset: i / partitions,
            timestamp_ms: self.start_ms + step as i64,
            rare: (i + 1).is_multiple_of(self.rare_every),
        }
    }

    fn rare_lines(&self) -> u64 {
        self.lines / self.rare_every
    }
}

/// A normalised producer line and the size of the JSON it came from.
struct PoolLine {
    line: LogLine,
    /// Bytes of the producer JSON, its `timestamp` string excluded.
    raw_bytes_untimed: u64,
}

/// Stored records of one partition waiting for a `write`; their allocations are reused.
struct Batch {
    records: Vec<StoredRecord>,
    len: usize,
    bytes: usize,
}

impl Batch {
    fn new() -> Batch {
        Batch { records: Vec::new(), len: 0, bytes: 0 }
    }

    /// The next record slot, with the allocations of a record sent earlier if there is one.
    fn next(&mut self) -> &mut StoredRecord {
        if self.len == self.records.len() {
            self.records.push(StoredRecord {
                offset: 0,
                append_time_ms: 0,
                record: Record {
                    timestamp_ns: 0,
                    tenant: TENANT.to_owned(),
                    source_id: String::new(),
                    headers: Vec::new(),
                    payload: Vec::new(),
                },
            });
        }
        self.len += 1;
        &mut self.records[self.len - 1]
    }
}

/// Runs the benchmark and prints its report.
pub fn run(args: IndexArgs) -> anyhow::Result<()> {
    let report = build(&args)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_summary(&report);
    }
    if report.documents != report.lines {
        eprintln!("warning: the indexes hold {} documents for {} lines indexed", report.documents, report.lines);
    }
    Ok(())
}

fn validate(args: &IndexArgs) -> anyhow::Result<()> {
    ensure!(args.lines >= 1, "lines must be at least 1, got {}", args.lines);
    ensure!(
        args.hours.is_finite() && args.hours > 0.0 && args.hours <= 24.0 * 366.0,
        "hours must be more than 0 and at most a year, got {}",
        args.hours
    );
    ensure!(args.rare_every >= 1, "rare-every must be at least 1, got {}", args.rare_every);
    ensure!(args.pool_lines >= 1, "pool-lines must be at least 1, got {}", args.pool_lines);
    ensure!(args.partitions >= 1, "partitions must be at least 1, got {}", args.partitions);
    ensure!(args.batch_bytes >= 1, "batch-bytes must be at least 1, got {}", args.batch_bytes);
    ensure!(args.commit_interval_ms >= 1, "commit-interval-ms must be at least 1, got {}", args.commit_interval_ms);
    Ok(())
}

/// Indexes the lines and measures; the report is not printed.
pub fn build(args: &IndexArgs) -> anyhow::Result<IndexReport> {
    validate(args)?;
    let occupied = std::fs::read_dir(&args.dir).is_ok_and(|mut entries| entries.next().is_some());
    if occupied {
        bail!("{} is not empty; remove it or choose another directory", args.dir.display());
    }
    let mut pool = generate_pool(args)?;
    let rss_after_pool_bytes = read_memory(std::process::id())?.rss_bytes;

    let now = now_ms();
    let span_ms = (args.hours * 3_600_000.0) as i64;
    let plan = Plan {
        lines: args.lines,
        partitions: args.partitions,
        start_ms: now - span_ms,
        span_ms,
        rare_every: args.rare_every,
    };
    let indexes = Arc::new(
        Indexes::new(args.dir.clone(), Retention::default())
            .with_context(|| format!("cannot create indexes in {}", args.dir.display()))?,
    );
    let mut sink = BlockingSink::new(Typed::new(SearchSink::new(
        Arc::clone(&indexes),
        IndexerConfig {
            indexing_threads: args.indexing_threads,
            writer_memory_bytes: args.writer_memory_mib << 20,
            ..IndexerConfig::default()
        },
    )));
    // The consumer runtime asks for the sink's positions before it feeds it; on an empty directory
    // there are none.
    let resumed = sink.committed()?;
    ensure!(resumed.is_empty(), "{} already holds committed positions {resumed:?}", args.dir.display());

    let commit_interval = Duration::from_millis(args.commit_interval_ms);
    let mut batches: Vec<Batch> = (0..args.partitions).map(|_| Batch::new()).collect();
    let mut positions = Positions::new();
    let (mut raw_bytes, mut stored_bytes, mut commits, mut write_calls) = (0u64, 0u64, 0u64, 0u64);
    let (mut write_time, mut commit_time) = (Duration::ZERO, Duration::ZERO);

    let pool_len = pool.len() as u64;
    let started = Instant::now();
    let mut last_commit = started;
    for i in 0..args.lines {
        let slot = plan.slot(i);
        let pooled = &mut pool[(i % pool_len) as usize];
        raw_bytes += pooled.raw_bytes_untimed + timestamp_text_len(slot.timestamp_ms);
        let line = &mut pooled.line;
        line.timestamp_ns = slot.timestamp_ms * 1_000_000;
        let message_len = line.message.len();
        if slot.rare {
            // Appended to the producer's message, the token adds its own length and a space to the JSON.
            line.message.push(' ');
            line.message.push_str(RARE_TOKEN);
            raw_bytes += 1 + RARE_TOKEN.len() as u64;
        }
        let batch = &mut batches[slot.partition as usize];
        let stored = batch.next();
        stored.offset = slot.offset;
        stored.append_time_ms = slot.timestamp_ms;
        stored.record.timestamp_ns = line.timestamp_ns;
        stored.record.source_id.clear();
        stored.record.source_id.push_str(&line.source_id);
        stored.record.payload.clear();
        serde_json::to_writer(&mut stored.record.payload, &*line).context("a log line always serializes")?;
        line.message.truncate(message_len);
        let stored_len = stored.record.payload.len();
        batch.bytes += stored_len;
        stored_bytes += stored_len as u64;

        if batch.bytes >= args.batch_bytes {
            let t = Instant::now();
            flush(&mut sink, slot.partition, batch, &mut positions)?;
            write_time += t.elapsed();
            write_calls += 1;
            if last_commit.elapsed() >= commit_interval {
                let t = Instant::now();
                sink.commit(&positions)?;
                commit_time += t.elapsed();
                commits += 1;
                last_commit = Instant::now();
            }
        }
    }
    for (partition, batch) in batches.iter_mut().enumerate() {
        if batch.len > 0 {
            let t = Instant::now();
            flush(&mut sink, partition as u32, batch, &mut positions)?;
            write_time += t.elapsed();
            write_calls += 1;
        }
    }
    let t = Instant::now();
    sink.commit(&positions)?;
    commit_time += t.elapsed();
    commits += 1;
    let seconds = started.elapsed().as_secs_f64();
    drop(sink);

    let tenant = TenantId::new(TENANT)?;
    let days = indexes.days(&tenant);
    let documents = match whole_range(&days)? {
        Some(range) => count(&indexes, &tenant, "", &[], range)?,
        None => 0,
    };
    let index_bytes = tree_bytes(&args.dir);
    let rss_peak_bytes = read_memory(std::process::id())?.rss_peak_bytes;
    Ok(IndexReport {
        dir: args.dir.clone(),
        lines: args.lines,
        rare_lines: plan.rare_lines(),
        raw_bytes,
        stored_bytes,
        seconds,
        write_seconds: write_time.as_secs_f64(),
        commit_seconds: commit_time.as_secs_f64(),
        mb_per_s: raw_bytes as f64 / 1e6 / seconds,
        lines_per_s: args.lines as f64 / seconds,
        commits,
        write_calls,
        documents,
        day_indexes: days.len(),
        index_bytes,
        index_bytes_per_raw_byte: index_bytes as f64 / raw_bytes.max(1) as f64,
        rss_after_pool_bytes,
        rss_peak_bytes,
        pool_lines: pool.len(),
        partitions: args.partitions,
        batch_bytes: args.batch_bytes,
        indexing_threads: args.indexing_threads,
        writer_memory_mib: args.writer_memory_mib,
        hours: args.hours,
        rare_every: args.rare_every,
        seed: args.workload.seed,
    })
}

/// Hands the records of `batch` to the sink and advances the partition's position past them.
fn flush(
    sink: &mut BlockingSink<Typed<SearchSink>>,
    partition: u32,
    batch: &mut Batch,
    positions: &mut Positions,
) -> anyhow::Result<()> {
    let records = &batch.records[..batch.len];
    sink.write(TOPIC, partition, records)?;
    if let Some(last) = records.last() {
        positions.insert((TOPIC.to_owned(), partition), last.offset + 1);
    }
    batch.len = 0;
    batch.bytes = 0;
    Ok(())
}

/// Generates and normalises the pool, exactly as the gateway normalises a producer's line.
fn generate_pool(args: &IndexArgs) -> anyhow::Result<Vec<PoolLine>> {
    let mut workload = Workload::new(args.workload.config())?;
    let limits = Limits::default();
    let now = now_ms();
    let size = args.pool_lines.min(usize::try_from(args.lines).unwrap_or(usize::MAX));
    let mut pool = Vec::with_capacity(size);
    for _ in 0..size {
        // The generator pads a line by its size with the timestamp, so a fixed clock keeps the pool, and
        // the index, the same from run to run; every line gets its own timestamp later anyway.
        let value = workload.log(POOL_CLOCK_MS);
        let raw_bytes = serde_json::to_vec(&value)?.len() as u64;
        let timestamp_len = value["timestamp"].as_str().map_or(0, str::len) as u64;
        let line = strata_model::normalize_log(value, now * 1_000_000, &limits)
            .context("a generated log line does not pass validation")?;
        pool.push(PoolLine { line, raw_bytes_untimed: raw_bytes - timestamp_len });
    }
    Ok(pool)
}

/// Length of the RFC 3339 text a producer sends for Unix milliseconds `ms` in this century:
/// `2024-05-01T12:00:00Z`, with `.1` to `.123` before the `Z` when there are milliseconds (trailing
/// zeros dropped).
fn timestamp_text_len(ms: i64) -> u64 {
    let mut fraction = ms.rem_euclid(1000);
    if fraction == 0 {
        return 20;
    }
    let mut digits = 3;
    while fraction % 10 == 0 {
        fraction /= 10;
        digits -= 1;
    }
    20 + 1 + digits
}

/// Arguments of `strata-bench index-usage`.
#[derive(Debug, Args)]
pub struct IndexUsageArgs {
    /// Day indexes: each directory under here (any depth) that holds a `meta.json`.
    #[arg(long)]
    dir: PathBuf,
    /// Divide the bytes by this many raw bytes (the lines' JSON) as well.
    #[arg(long)]
    raw_bytes: Option<u64>,
    /// Print one JSON object per day index instead of a table.
    #[arg(long)]
    json: bool,
}

/// Prints what each day index under `--dir` holds.
pub fn usage(args: &IndexUsageArgs) -> anyhow::Result<()> {
    let mut dirs = Vec::new();
    find_indexes(&args.dir, &mut dirs);
    dirs.sort();
    ensure!(!dirs.is_empty(), "no index (a directory with meta.json) under {}", args.dir.display());
    for dir in dirs {
        let usage = strata_search::index_usage(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
        if args.json {
            println!("{}", serde_json::json!({"dir": dir, "raw_bytes": args.raw_bytes, "usage": usage}));
            continue;
        }
        let share =
            |bytes: u64| args.raw_bytes.map_or(String::new(), |raw| format!(" ({:.4})", bytes as f64 / raw as f64));
        println!("{}: {} documents in {} segments", dir.display(), usage.docs, usage.segments);
        println!(
            "  total {}{}, stored lines {}{}",
            usage.total_bytes,
            share(usage.total_bytes),
            usage.store_bytes,
            share(usage.store_bytes)
        );
        println!(
            "  {:<14} {:>12} {:>12} {:>12} {:>12} {:>12}",
            "field", "terms", "postings", "positions", "fast", "norms"
        );
        for (name, f) in &usage.fields {
            println!(
                "  {name:<14} {:>12} {:>12} {:>12} {:>12} {:>12}",
                f.terms, f.postings, f.positions, f.fast, f.norms
            );
        }
    }
    Ok(())
}

fn find_indexes(dir: &Path, out: &mut Vec<PathBuf>) {
    if dir.join("meta.json").is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().filter_map(Result::ok) {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            find_indexes(&entry.path(), out);
        }
    }
}

/// Bytes of every file under `dir`, recursively.
pub fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => tree_bytes(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |metadata| metadata.len()),
            Err(_) => 0,
        })
        .sum()
}

fn print_summary(report: &IndexReport) {
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    println!("strata-bench index: {} lines into {}", report.lines, report.dir.display());
    println!(
        "  input         {:.1} MB of producer JSON ({:.0} bytes/line), {} rare lines, {} partitions, {:.1} h of timestamps",
        report.raw_bytes as f64 / 1e6,
        report.raw_bytes as f64 / report.lines as f64,
        report.rare_lines,
        report.partitions,
        report.hours
    );
    println!(
        "  indexed       {:.2} s: {:.1} MB/s, {:.0} lines/s ({:.2} s in write, {:.2} s in {} commits)",
        report.seconds,
        report.mb_per_s,
        report.lines_per_s,
        report.write_seconds,
        report.commit_seconds,
        report.commits
    );
    println!(
        "  index         {:.1} MiB in {} day indexes, {:.3} bytes per raw byte, {} documents",
        mib(report.index_bytes),
        report.day_indexes,
        report.index_bytes_per_raw_byte,
        report.documents
    );
    println!(
        "  memory        {:.1} MiB peak rss ({:.1} MiB once the pool of {} lines was ready)",
        mib(report.rss_peak_bytes),
        mib(report.rss_after_pool_bytes),
        report.pool_lines
    );
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    use super::*;

    fn plan(lines: u64, rare_every: u64) -> Plan {
        Plan { lines, partitions: 4, start_ms: 1_714_564_800_000, span_ms: 6 * 3_600_000, rare_every }
    }

    #[test]
    fn lines_go_round_robin_with_consecutive_offsets() {
        let plan = plan(10, 10_000);
        let placed: Vec<(u32, u64)> = (0..10).map(|i| plan.slot(i)).map(|s| (s.partition, s.offset)).collect();
        assert_eq!(placed, [(0, 0), (1, 0), (2, 0), (3, 0), (0, 1), (1, 1), (2, 1), (3, 1), (0, 2), (1, 2)]);
    }

    #[test]
    fn timestamps_spread_evenly_over_the_span() {
        let plan = plan(1000, 10_000);
        let stamps: Vec<i64> = (0..1000).map(|i| plan.slot(i).timestamp_ms).collect();
        assert_eq!(stamps[0], plan.start_ms);
        assert!(stamps.is_sorted());
        assert!(*stamps.last().unwrap() < plan.start_ms + plan.span_ms);
        assert_eq!(stamps[500] - stamps[0], plan.span_ms / 2);
    }

    #[test]
    fn every_kth_line_is_rare() {
        let plan = plan(20_000, 10_000);
        let rare: Vec<u64> = (0..20_000).filter(|&i| plan.slot(i).rare).collect();
        assert_eq!(rare, [9_999, 19_999]);
        assert_eq!(plan.rare_lines(), 2);
        let every = super::tests::plan(10, 1);
        assert!((0..10).all(|i| every.slot(i).rare));
        assert_eq!(every.rare_lines(), 10);
    }

    #[test]
    fn timestamp_length_matches_rfc3339_text() {
        for ms in [
            1_714_564_800_000,
            1_714_564_800_001,
            1_714_564_800_010,
            1_714_564_800_100,
            1_714_564_800_120,
            1_714_564_800_999,
        ] {
            let text = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                .unwrap()
                .format(&Rfc3339)
                .unwrap();
            assert_eq!(timestamp_text_len(ms), text.len() as u64, "{text}");
        }
    }

    fn args(dir: &Path, lines: u64, rare_every: u64) -> IndexArgs {
        IndexArgs::for_test(dir, lines, rare_every, 6.0)
    }

    #[test]
    fn indexes_every_line_and_counts_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let args = args(&dir.path().join("index"), 2_000, 500);
        let report = build(&args).unwrap();
        assert_eq!(report.documents, 2_000);
        assert_eq!(report.rare_lines, 4);
        // Batches of 64 KiB of about 1 KiB lines: several `write` calls per partition.
        assert!(report.write_calls > 8, "{} write calls", report.write_calls);
        // The pool of 500 lines is used four times over, with different timestamps each time.
        let pool_bytes: u64 = generate_pool(&args).unwrap().iter().map(|p| p.raw_bytes_untimed).sum();
        assert!(report.raw_bytes >= 4 * pool_bytes + 4 * 10 + 2_000 * 20, "{} raw bytes", report.raw_bytes);
        assert!(report.raw_bytes <= 4 * pool_bytes + 4 * 10 + 2_000 * 24, "{} raw bytes", report.raw_bytes);
        assert!(report.index_bytes > 0 && report.index_bytes == tree_bytes(&args.dir));

        let again = build(&args).unwrap_err().to_string();
        assert!(again.contains("is not empty"), "{again}");
    }

    #[test]
    fn refuses_bad_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        for bad in [
            IndexArgs { lines: 0, ..args(&path, 1, 1) },
            IndexArgs { rare_every: 0, ..args(&path, 1, 1) },
            IndexArgs { hours: 0.0, ..args(&path, 1, 1) },
            IndexArgs { partitions: 0, ..args(&path, 1, 1) },
        ] {
            assert!(build(&bad).is_err());
        }
        assert!(!path.exists(), "nothing is created for bad arguments");
    }
}
