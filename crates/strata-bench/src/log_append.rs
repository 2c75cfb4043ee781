//! `log-append`: the embedded log alone, appending with fsync, measured side by side with what
//! `dd ... conv=fdatasync` writes to the same disk in the same run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use hdrhistogram::Histogram;
use strata_log::{EmbeddedLog, EncodedRecords, Log, LogConfig};
use strata_model::Topic;
use strata_model::topic::Logs;

#[derive(Debug, Args)]
pub struct LogAppendArgs {
    /// Directory on the disk to measure; created, and emptied afterwards.
    #[arg(long, default_value = "./strata-bench-data")]
    dir: PathBuf,
    /// Bytes to append (and for dd to write).
    #[arg(long, default_value_t = 2 << 30)]
    bytes_total: u64,
    /// Payload bytes of one record.
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,
    /// Records of one append (one batch).
    #[arg(long, default_value_t = 1024)]
    batch_records: usize,
    /// Concurrent appenders.
    #[arg(long, default_value_t = 8)]
    writers: usize,
    /// Partitions of the topic; appender i writes partition i % partitions.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Skip the dd runs.
    #[arg(long)]
    no_dd: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

fn dd(dir: &Path, bytes_total: u64) -> anyhow::Result<f64> {
    let file = dir.join("dd.bin");
    let out = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", file.display()))
        .arg("bs=1M")
        .arg(format!("count={}", bytes_total >> 20))
        .arg("conv=fdatasync")
        .output()
        .context("cannot run dd")?;
    let _ = std::fs::remove_file(&file);
    if !out.status.success() {
        bail!("dd failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    // "2147483648 bytes (2.1 GB, 2.0 GiB) copied, 3.07 s, 699 MB/s"
    let text = String::from_utf8_lossy(&out.stderr);
    let secs: f64 = text
        .lines()
        .last()
        .and_then(|l| l.split(", ").find(|p| p.ends_with(" s")))
        .and_then(|p| p.trim_end_matches(" s").trim().parse().ok())
        .with_context(|| format!("cannot read dd's output: {text}"))?;
    Ok((bytes_total >> 20 << 20) as f64 / secs / 1e6)
}

pub fn run(args: LogAppendArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dd_before = if args.no_dd { None } else { Some(dd(&args.dir, args.bytes_total)?) };
    let log_dir = args.dir.join("log");
    let _ = std::fs::remove_dir_all(&log_dir);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (elapsed, hist, bytes) = rt.block_on(append(&args, &log_dir))?;
    std::fs::remove_dir_all(&log_dir)?;
    let dd_after = if args.no_dd { None } else { Some(dd(&args.dir, args.bytes_total)?) };
    let log_mbps = bytes as f64 / elapsed.as_secs_f64() / 1e6;
    let dd_mbps = match (dd_before, dd_after) {
        (Some(a), Some(b)) => Some((a + b) / 2.0),
        _ => None,
    };
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "log_mb_per_s": log_mbps,
                "dd_mb_per_s": dd_mbps,
                "dd_before_mb_per_s": dd_before,
                "dd_after_mb_per_s": dd_after,
                "ratio": dd_mbps.map(|d| log_mbps / d),
                "bytes": bytes,
                "seconds": elapsed.as_secs_f64(),
                "appends": hist.len(),
                "append_ms": {"p50": ms(0.5), "p99": ms(0.99), "max": hist.max() as f64 / 1000.0},
                "writers": args.writers, "partitions": args.partitions,
                "batch_records": args.batch_records, "record_bytes": args.record_bytes,
            })
        );
    } else {
        println!(
            "log append with fsync: {log_mbps:.0} MB/s ({bytes} bytes in {:.2} s, {} appends)",
            elapsed.as_secs_f64(),
            hist.len()
        );
        println!(
            "append latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(0.5),
            ms(0.99),
            hist.max() as f64 / 1000.0
        );
        if let (Some(d), Some(a), Some(b)) = (dd_mbps, dd_before, dd_after) {
            println!("dd conv=fdatasync: {d:.0} MB/s (before {a:.0}, after {b:.0}); log / dd = {:.2}", log_mbps / d);
        }
    }
    Ok(())
}

async fn append(args: &LogAppendArgs, dir: &Path) -> anyhow::Result<(Duration, Histogram<u64>, u64)> {
    let mut cfg = LogConfig::new(dir, args.partitions);
    cfg.topics.retain(|t| t.name == Logs::SPEC.name);
    let log = Arc::new(EmbeddedLog::open(cfg)?);
    let payload = vec![b'x'; args.record_bytes];
    let mut batch = EncodedRecords::new();
    for i in 0..args.batch_records {
        batch.push(0, "bench", &format!("source-{i}"), &[], &payload)?;
    }
    let batch_bytes = batch.bytes_len() as u64;
    let appends_total = args.bytes_total.div_ceil(batch_bytes);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.writers {
        let (log, batch, next) = (log.clone(), batch.clone(), next.clone());
        let partition = w as u32 % args.partitions;
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < appends_total {
                let t = Instant::now();
                log.append(Logs::SPEC.name, partition, batch.clone()).await?;
                hist.record(t.elapsed().as_micros() as u64).expect("in bounds");
            }
            Ok::<_, strata_log::Error>(hist)
        }));
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        hist.add(t.await??)?;
    }
    let elapsed = started.elapsed();
    let bytes: u64 = log.topics().iter().flat_map(|t| t.partitions.iter()).map(|p| p.bytes).sum();
    log.close();
    Ok((elapsed, hist, bytes))
}
