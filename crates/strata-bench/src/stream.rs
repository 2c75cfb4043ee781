//! `strata-bench stream`: the stream processing operators in process, on one thread, as the
//! server runs them: events through deduplication and enrichment (the events pipeline), then a
//! tumbling and a hopping rollup over many groups, with a commit (flush and state snapshot of
//! both operators) every `commit_every` events. Reports events per second, the state's bytes per
//! group and how long a commit's snapshot takes. No HTTP, no log appends: what the operators
//! themselves cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use serde_json::json;
use strata_log::{EmbeddedLog, LogConfig, Record, StoredRecord};
use strata_pipeline::enrich::{CatalogBook, EventPipeline, EventPipelineStats};
use strata_pipeline::rollup::{RollupOperator, RollupStats, RuleBook};
use strata_pipeline::{Emit, Operator};

/// Options of `strata-bench stream`.
#[derive(Debug, clap::Args)]
pub struct StreamArgs {
    /// Events to process.
    #[arg(long, default_value_t = 3_000_000)]
    pub events: u64,
    /// Groups of the rollups (and distinct sources), each seen once per second of event time.
    #[arg(long, default_value_t = 100_000)]
    pub groups: u64,
    /// Events handed to the operators at a time, as one read of a partition is.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Events between commits (at the target rate, one commit a second).
    #[arg(long, default_value_t = 300_000)]
    pub commit_every: u64,
    /// One event in this many is sent again (a duplicate for deduplication to drop).
    #[arg(long, default_value_t = 100)]
    pub duplicate_every: u64,
    /// Only what Flink is measured doing beside it: a 1 s tumbling count and sum per group, no
    /// deduplication or enrichment, and no allowed lateness (Flink's default).
    #[arg(long)]
    pub tumbling_only: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    events: u64,
    groups: u64,
    seconds: f64,
    events_per_s: f64,
    duplicates_dropped: u64,
    rollup_samples_emitted: usize,
    commits: u64,
    commit_ms_max: f64,
    commit_ms_mean: f64,
    pipeline_state_bytes: usize,
    rollup_state_bytes: usize,
    state_bytes_per_group: f64,
}

fn stored(offset: u64, tenant: &str, source: &str, ts_ms: i64, payload: Vec<u8>) -> StoredRecord {
    StoredRecord {
        offset,
        append_time_ms: ts_ms,
        record: Record {
            timestamp_ns: ts_ms * 1_000_000,
            tenant: tenant.into(),
            source_id: source.into(),
            headers: Vec::new(),
            payload,
        },
    }
}

pub fn run(args: StreamArgs) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    let log = Arc::new(EmbeddedLog::open(LogConfig::new(dir.join("log"), 1)).context("cannot open a scratch log")?);
    let catalog = Arc::new(CatalogBook::open(None).map_err(anyhow::Error::msg)?);
    catalog
        .update(|c| {
            c.tables
                .entry("bench".into())
                .or_default()
                .insert("hosts".into(), serde_json::from_value(json!({"key": "host"})).expect("decl"));
            c.enrichments.entry("bench".into()).or_default().push(
                serde_json::from_value(
                    json!({"name": "by-host", "table": "hosts", "on": "source_id", "fields": ["region"]}),
                )
                .expect("enrichment"),
            );
            Ok(())
        })
        .map_err(anyhow::Error::msg)?;
    let rules = Arc::new(RuleBook::open(None).map_err(anyhow::Error::msg)?);
    let windows = if args.tumbling_only {
        vec![("latency_1s", json!({"type": "tumbling", "size": "1s"}), json!(["count", "sum"]))]
    } else {
        vec![
            ("latency_10s", json!({"type": "tumbling", "size": "10s"}), json!(["count", "sum", "max"])),
            ("latency_1m", json!({"type": "hopping", "size": "1m", "slide": "10s"}), json!(["count", "sum", "max"])),
        ]
    };
    for (name, window, aggregations) in windows {
        let rule = json!({"name": name, "input": {"event_type": "request", "value_field": "latency"},
            "group_by": ["group"], "window": window, "aggregations": aggregations, "output": name,
            "out_of_orderness": "1s", "allowed_lateness": if args.tumbling_only { "0s" } else { "1m" }});
        rules.put("bench", serde_json::from_value(rule)?).map_err(anyhow::Error::msg)?;
    }
    let pipeline_stats = EventPipelineStats::default();
    let mut pipeline = EventPipeline::new(catalog, log.clone(), pipeline_stats.clone());
    pipeline.restore(None).map_err(anyhow::Error::msg)?;
    let registry = Arc::new(strata_model::SeriesRegistry::new(3600));
    let mut rollups = RollupOperator::new(rules, registry, RollupStats::default());
    rollups.restore(None).map_err(anyhow::Error::msg)?;

    // A thousand hosts in the reference table.
    let rows: Vec<StoredRecord> = (0..1000)
        .map(|h| {
            let region = ["eu", "us", "ap"][h % 3];
            let row = json!({"host": format!("host-{h}"), "region": region});
            stored(h as u64, "bench", "hosts", 0, serde_json::to_vec(&row).expect("json"))
        })
        .collect();
    let mut out: Vec<Emit> = Vec::new();
    pipeline.process("reference", 0, &rows, &mut out);

    let t0: i64 = 1_700_000_000_000;
    let per_ms = (args.groups as f64 / 1000.0).max(1e-9);
    let make = |i: u64| {
        let n =
            if args.duplicate_every > 0 && i % args.duplicate_every == args.duplicate_every - 1 { i - 1 } else { i };
        let ts = t0 + (n as f64 / per_ms) as i64;
        let group = n % args.groups;
        let e = json!({"type": "request", "timestamp_ns": ts * 1_000_000, "source_id": format!("host-{}", group % 1000),
            "event_id": format!("e{n}"), "data": {"group": format!("g{group}"), "latency": (n % 997) as f64 / 10.0}});
        stored(i, "bench", &format!("host-{}", group % 1000), ts, serde_json::to_vec(&e).expect("json"))
    };
    let mut emitted = 0usize;
    let (mut commits, mut commit_total, mut commit_max) = (0u64, Duration::ZERO, Duration::ZERO);
    let (mut pipeline_bytes, mut rollup_bytes) = (0, 0);
    // Only the operators' time counts: making the input events is the generator's work, as
    // reading them is the log's in the server.
    let mut busy = Duration::ZERO;
    let mut i = 0u64;
    let mut since_commit = 0u64;
    while i < args.events {
        let n = (args.batch as u64).min(args.events - i);
        let batch: Vec<StoredRecord> = (i..i + n).map(make).collect();
        let started = Instant::now();
        i += n;
        out.clear();
        let enriched: Vec<StoredRecord> = if args.tumbling_only {
            batch
        } else {
            pipeline.process("events", 0, &batch, &mut out);
            out.drain(..)
                .enumerate()
                .map(|(k, e)| {
                    stored(
                        k as u64,
                        &e.tenant,
                        &e.record.source_id,
                        e.record.timestamp_ns / 1_000_000,
                        e.record.payload,
                    )
                })
                .collect()
        };
        rollups.process("events_enriched", 0, &enriched, &mut out);
        emitted += out.len();
        since_commit += n;
        if since_commit >= args.commit_every || i >= args.events {
            since_commit = 0;
            let t = Instant::now();
            pipeline.flush(&mut out);
            rollups.flush(&mut out);
            emitted += out.len();
            pipeline_bytes = pipeline.snapshot().len();
            rollup_bytes = rollups.snapshot().len();
            let took = t.elapsed();
            commits += 1;
            commit_total += took;
            commit_max = commit_max.max(took);
        }
        busy += started.elapsed();
    }
    let seconds = busy.as_secs_f64();
    let dropped = pipeline_stats.lock().expect("stats lock").get("bench").map_or(0, |s| s.duplicates_dropped);
    let report = Report {
        events: args.events,
        groups: args.groups,
        seconds,
        events_per_s: args.events as f64 / seconds,
        duplicates_dropped: dropped,
        rollup_samples_emitted: emitted,
        commits,
        commit_ms_max: commit_max.as_secs_f64() * 1000.0,
        commit_ms_mean: commit_total.as_secs_f64() * 1000.0 / commits.max(1) as f64,
        pipeline_state_bytes: pipeline_bytes,
        rollup_state_bytes: rollup_bytes,
        state_bytes_per_group: (pipeline_bytes + rollup_bytes) as f64 / args.groups as f64,
    };
    let _ = std::fs::remove_dir_all(&dir);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "stream: {} events over {} groups in {:.1} s: {:.0} events/s; {} commits, snapshot {:.0} ms mean, {:.0} ms max; state {} + {} bytes ({:.1} per group)",
            report.events,
            report.groups,
            report.seconds,
            report.events_per_s,
            report.commits,
            report.commit_ms_mean,
            report.commit_ms_max,
            report.pipeline_state_bytes,
            report.rollup_state_bytes,
            report.state_bytes_per_group
        );
    }
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("strata-bench-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
