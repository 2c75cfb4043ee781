//! The lake's upkeep, in the background: small files merged per partition, partitions past
//! their retention dropped, and files no version refers to any more deleted after a grace period.
//!
//! Each step is one Delta commit of its own (or, for the deletion of files, none), so a crash at
//! any moment leaves the table at a version readers can read: compaction's new files are invisible
//! until its commit, which removes the files they replace in the same step. The sinks' commits
//! and these run side by side; Delta's conflict check lets an append pass a compaction (neither
//! reads what the other removes), and a compaction that loses a race is simply tried again at the
//! next round.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Location;
use crate::table::{DataFile, Table, TableError};

/// How the lake is kept.
#[derive(Debug, Clone)]
pub struct Maintenance {
    /// The lake's root.
    pub location: Location,
    /// How often a round runs.
    pub interval: Duration,
    /// The size compaction writes files up to; files at least this big are left alone.
    pub target_file_bytes: u64,
    /// Small files a partition must have before it is compacted.
    pub compact_min_files: usize,
    /// How long a file no version refers to is kept (for readers still reading an older version)
    /// before it is deleted.
    pub vacuum_grace: Duration,
    pub retention: Retention,
    /// A compaction writes its new files before the old ones can go: on a local lake, one that
    /// could leave less than this free on the lake's disk waits for a later round (0: never).
    /// Retention and vacuum, which only free space, run all the same.
    pub disk_free_bytes_min: u64,
}

/// How many days of each table are kept, by table and, overriding that, by tenant; 0 keeps them
/// for ever.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    pub days: BTreeMap<String, u32>,
    pub tenant_days: BTreeMap<String, BTreeMap<String, u32>>,
}

impl Retention {
    /// The days of `table` kept for `tenant` (0: all).
    pub fn days(&self, table: &str, tenant: &str) -> u32 {
        self.tenant_days.get(tenant).and_then(|t| t.get(table)).or_else(|| self.days.get(table)).copied().unwrap_or(0)
    }
}

/// What one round did to one table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoundReport {
    /// Partitions compacted, and the files they had and have instead.
    pub compactions: u64,
    pub files_compacted: u64,
    pub files_written: u64,
    /// Files removed from the table because their day is past retention.
    pub files_expired: u64,
    /// Files deleted from storage.
    pub files_vacuumed: u64,
    /// Compactions put off for want of disk.
    pub compactions_put_off: u64,
}

/// The UTC day `days` days before `now`, `yyyy-mm-dd`: partitions of earlier days are past a
/// retention of `days` days.
fn cutoff(now: SystemTime, days: u32) -> String {
    let ns = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as i64;
    crate::day(ns - i64::from(days) * 86_400_000_000_000)
}

/// Partitions with at least `min_files` files smaller than `target_bytes`, with their count.
pub fn partitions_to_compact(files: &[DataFile], target_bytes: u64, min_files: usize) -> Vec<(String, String)> {
    let mut small: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for f in files.iter().filter(|f| f.bytes < target_bytes) {
        *small.entry((f.tenant.as_str(), f.dt.as_str())).or_default() += 1;
    }
    small
        .into_iter()
        .filter(|(_, n)| *n >= min_files.max(2))
        .map(|((t, d), _)| (t.to_string(), d.to_string()))
        .collect()
}

/// One round over table `name`: retention, compaction, then vacuum.
pub async fn round(cfg: &Maintenance, name: &str, now: SystemTime) -> Result<RoundReport, TableError> {
    let mut report = RoundReport::default();
    let mut table = Table::open_in(&cfg.location, name).await?;
    if table.version().is_none() {
        return Ok(report);
    }
    let files = table.files();
    let tenants: BTreeSet<&str> = files.iter().map(|f| f.tenant.as_str()).collect();
    let mut expired = Vec::new();
    for tenant in tenants {
        let days = cfg.retention.days(name, tenant);
        if days == 0 {
            continue;
        }
        let before = cutoff(now, days);
        if files.iter().any(|f| f.tenant == tenant && f.dt < before) {
            expired.push((tenant.to_string(), before));
        }
    }
    for (tenant, before) in expired {
        report.files_expired += table.drop_days(&tenant, &before).await?;
    }
    let files = table.files();
    for (tenant, dt) in partitions_to_compact(&files, cfg.target_file_bytes, cfg.compact_min_files) {
        if let Some(dir) = cfg.location.local_dir() {
            let bytes: u64 = files
                .iter()
                .filter(|f| f.tenant == tenant && f.dt == dt && f.bytes < cfg.target_file_bytes)
                .map(|f| f.bytes)
                .sum();
            if let Err(free) = strata_log::disk::room_for(&dir, bytes, cfg.disk_free_bytes_min) {
                tracing::warn!(table = %name, %tenant, %dt, free_bytes = free, compaction_bytes = bytes,
                    "a compaction waits: it could take the disk below pipeline.disk_free_bytes_min");
                report.compactions_put_off += 1;
                continue;
            }
        }
        let (removed, added) = table.compact(&tenant, &dt, cfg.target_file_bytes).await?;
        report.compactions += 1;
        report.files_compacted += removed;
        report.files_written += added;
    }
    report.files_vacuumed = table.vacuum(cfg.vacuum_grace).await?;
    record(name, &table.files(), &report);
    Ok(report)
}

/// The self-metrics of a round.
fn record(name: &str, files: &[DataFile], report: &RoundReport) {
    let table = name.to_string();
    let mut per_partition: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for f in files {
        *per_partition.entry((f.tenant.as_str(), f.dt.as_str())).or_default() += 1;
    }
    metrics::gauge!("strata_lake_files", "table" => table.clone()).set(files.len() as f64);
    metrics::gauge!("strata_lake_bytes", "table" => table.clone())
        .set(files.iter().map(|f| f.bytes).sum::<u64>() as f64);
    metrics::gauge!("strata_lake_partitions", "table" => table.clone()).set(per_partition.len() as f64);
    metrics::gauge!("strata_lake_partition_files_max", "table" => table.clone())
        .set(per_partition.values().copied().max().unwrap_or(0) as f64);
    metrics::counter!("strata_lake_compactions_total", "table" => table.clone()).increment(report.compactions);
    metrics::counter!("strata_lake_compacted_files_total", "table" => table.clone()).increment(report.files_compacted);
    metrics::counter!("strata_lake_expired_files_total", "table" => table.clone()).increment(report.files_expired);
    metrics::counter!("strata_lake_vacuumed_files_total", "table" => table.clone()).increment(report.files_vacuumed);
    metrics::counter!("strata_lake_compactions_put_off_total", "table" => table).increment(report.compactions_put_off);
}

/// Runs rounds over `tables` every `cfg.interval`, until the task is aborted. A round that fails
/// is logged and counted, and the next one tries again.
pub async fn run(cfg: Maintenance, tables: Vec<String>) {
    loop {
        tokio::time::sleep(cfg.interval).await;
        for name in &tables {
            match round(&cfg, name, SystemTime::now()).await {
                Ok(r) if r != RoundReport::default() => {
                    tracing::info!(table = %name, compactions = r.compactions, files_compacted = r.files_compacted,
                        files_written = r.files_written, files_expired = r.files_expired,
                        files_vacuumed = r.files_vacuumed, compactions_put_off = r.compactions_put_off,
                        "lake maintenance");
                }
                Ok(_) => {}
                Err(e) => {
                    metrics::counter!("strata_lake_maintenance_errors_total", "table" => name.clone()).increment(1);
                    tracing::warn!(table = %name, error = %e, "lake maintenance failed; the next round tries again");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tenant: &str, dt: &str, bytes: u64) -> DataFile {
        DataFile {
            uri: String::new(),
            path: String::new(),
            location: Default::default(),
            bytes,
            rows: None,
            tenant: tenant.into(),
            dt: dt.into(),
            time_min: None,
            time_max: None,
            stats: None,
            deletion_vector: false,
        }
    }

    #[test]
    fn only_partitions_with_enough_small_files_are_compacted() {
        let files = vec![
            file("a", "2026-01-01", 10),
            file("a", "2026-01-01", 10),
            file("a", "2026-01-01", 1000),
            file("a", "2026-01-02", 10),
            file("b", "2026-01-01", 10),
            file("b", "2026-01-01", 10),
            file("b", "2026-01-01", 10),
        ];
        assert_eq!(partitions_to_compact(&files, 100, 3), vec![("b".into(), "2026-01-01".into())]);
        assert_eq!(
            partitions_to_compact(&files, 100, 1),
            vec![("a".into(), "2026-01-01".into()), ("b".into(), "2026-01-01".into())],
            "one small file alone is never rewritten"
        );
    }

    #[test]
    fn retention_is_by_table_then_tenant() {
        let r = Retention {
            days: BTreeMap::from([("events".into(), 30)]),
            tenant_days: BTreeMap::from([("acme".into(), BTreeMap::from([("events".into(), 7)]))]),
        };
        assert_eq!(r.days("events", "other"), 30);
        assert_eq!(r.days("events", "acme"), 7);
        assert_eq!(r.days("logs", "acme"), 0);
        let now = UNIX_EPOCH + Duration::from_secs(86_400 * 10 + 3600);
        assert_eq!(cutoff(now, 3), "1970-01-08");
    }
}
