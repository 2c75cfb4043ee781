//! The typed configuration: defaults, then the TOML file, then `STRATA_*` environment variables,
//! then command-line flags. Parsed and validated once, at start; an error names the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_gateway::GatewayConfig;
use strata_model::TopicSpec;
use strata_model::topic::{PARTITIONS_DEFAULT, RETENTION_MS_DEFAULT};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where every component keeps its files.
    pub data_dir: PathBuf,
    /// The HTTP listener.
    pub http_addr: String,
    /// The OTLP gRPC listener (the collector's port, 4317); empty for none. It serves the same
    /// endpoints as `http_addr`, which takes OTLP gRPC too.
    pub otlp_grpc_addr: String,
    /// Turns authentication off: everything is tenant `default`, every caller is admin.
    pub no_auth: bool,
    /// How long a shutdown waits for in-flight requests.
    pub shutdown_timeout_ms: u64,
    pub log: LogSection,
    pub ingest: GatewayConfig,
    pub pipeline: PipelineSection,
    pub search: SearchSection,
    pub tsdb: TsdbSection,
    pub query: QuerySection,
    pub rollups: RollupsSection,
    pub lake: LakeSection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./strata-data"),
            http_addr: "127.0.0.1:7878".to_string(),
            otlp_grpc_addr: "127.0.0.1:4317".to_string(),
            no_auth: false,
            shutdown_timeout_ms: 30_000,
            log: LogSection::default(),
            ingest: GatewayConfig::default(),
            pipeline: PipelineSection::default(),
            search: SearchSection::default(),
            tsdb: TsdbSection::default(),
            query: QuerySection::default(),
            rollups: RollupsSection::default(),
            lake: LakeSection::default(),
        }
    }
}

/// The data lake: Delta Lake tables under `<data_dir>/lake`, or in an S3-compatible bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LakeSection {
    /// Where the tables are: empty for `<data_dir>/lake`, another local directory, or
    /// `s3://<bucket>/<prefix>`.
    pub url: String,
    /// Options of the object store that holds the lake; for S3, `object_store`'s keys
    /// (`aws_endpoint`, `aws_region`, `aws_access_key_id`, `aws_secret_access_key`,
    /// `aws_allow_http`, ...). What they leave out comes from the `AWS_*` environment variables.
    pub storage: BTreeMap<String, String>,
    /// How often a table commits what it was given: each commit adds a file per tenant and day.
    pub commit_interval_ms: u64,
    /// Bytes of records a table buffers past which it commits before the interval ends.
    pub commit_bytes_max: usize,
    /// How long one SQL query may run (503 past it).
    pub sql_timeout_ms: u64,
    /// The memory one SQL query may hold (422 past it).
    pub sql_memory_bytes: usize,
    /// The rows one SQL answer may have (422 past it).
    pub sql_rows_max: usize,
    /// Threads the lake's queries run on (at a lower priority than ingest).
    pub sql_threads: usize,
    /// Queries of the lake running at once, past which a query is answered 429.
    pub sql_concurrent_max: usize,
    /// How often the background upkeep runs: compaction, retention, vacuum.
    pub compact_interval_ms: u64,
    /// The size compaction writes files up to; bigger files are left alone.
    pub compact_target_bytes: u64,
    /// Files smaller than that a partition (tenant and day) must have before it is compacted.
    pub compact_min_files: usize,
    /// How long a file no table version refers to any more is kept, for readers of older
    /// versions and for writes not yet committed, before it is deleted (at least a minute).
    pub vacuum_grace_ms: u64,
    /// Days kept of each table (whole days are dropped past it); 0 keeps them for ever. Tables not
    /// named keep their default (`events` 365, `rejected` 30, `logs` 90, `raw` 30,
    /// `metrics_aggregates` 395).
    pub retention_days: BTreeMap<String, u32>,
    /// Per tenant, days kept of each table, overriding `retention_days`.
    pub tenant_retention_days: BTreeMap<String, BTreeMap<String, u32>>,
}

impl LakeSection {
    /// Days kept of each table when the configuration does not say.
    pub const RETENTION_DAYS_DEFAULT: [(&'static str, u32); 5] =
        [("events", 365), ("rejected", 30), ("logs", 90), ("raw", 30), ("metrics_aggregates", 395)];

    /// Where the lake's tables are, for a server whose data directory is `data_dir`.
    pub fn location(&self, data_dir: &Path) -> Result<strata_lake::Location, String> {
        let options = self.storage.clone().into_iter().collect();
        if self.url.is_empty() {
            return Ok(strata_lake::Location::local(&data_dir.join("lake")));
        }
        strata_lake::Location::parse(&self.url, options)
    }

    /// The background upkeep of the lake at `location`; compactions wait while they could leave
    /// less than `disk_free_bytes_min` free (`pipeline.disk_free_bytes_min`).
    pub fn maintenance(&self, location: strata_lake::Location, disk_free_bytes_min: u64) -> strata_lake::Maintenance {
        let mut days: BTreeMap<String, u32> =
            Self::RETENTION_DAYS_DEFAULT.iter().map(|(t, d)| (t.to_string(), *d)).collect();
        days.extend(self.retention_days.clone());
        strata_lake::Maintenance {
            location,
            interval: std::time::Duration::from_millis(self.compact_interval_ms),
            target_file_bytes: self.compact_target_bytes,
            compact_min_files: self.compact_min_files,
            vacuum_grace: std::time::Duration::from_millis(self.vacuum_grace_ms),
            retention: strata_lake::Retention { days, tenant_days: self.tenant_retention_days.clone() },
            disk_free_bytes_min,
        }
    }
}

impl Default for LakeSection {
    fn default() -> Self {
        LakeSection {
            url: String::new(),
            storage: BTreeMap::new(),
            commit_interval_ms: 60_000,
            commit_bytes_max: 128 << 20,
            sql_timeout_ms: 60_000,
            sql_memory_bytes: 512 << 20,
            sql_rows_max: 100_000,
            sql_threads: 2,
            sql_concurrent_max: 4,
            compact_interval_ms: 300_000,
            compact_target_bytes: 128 << 20,
            compact_min_files: 10,
            vacuum_grace_ms: 86_400_000,
            retention_days: BTreeMap::new(),
            tenant_retention_days: BTreeMap::new(),
        }
    }
}

/// The embedded log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// Partitions of each new record topic, and the count existing ones are raised to; a topic
    /// with more on disk keeps them (partitions are never removed).
    pub partitions: u32,
    pub segment_bytes_max: u64,
    pub segment_age_ms: u64,
    /// Segments older than this are deleted; 0 keeps them forever.
    pub retention_ms: u64,
    /// Per partition, oldest segments are deleted past this size; 0 means no size limit.
    pub retention_bytes: u64,
    /// How often retention runs.
    pub retention_check_interval_ms: u64,
    pub append_queue_max: usize,
    pub group_commit_bytes_max: usize,
    /// A busy partition starts a group commit (an fsync) at most this often.
    pub group_commit_interval_us: u64,
    /// How each topic's batches are compressed: `zstd` or `none`.
    pub codecs: std::collections::BTreeMap<String, String>,
    /// Compress segments when they are sealed, in the background, rather than each batch
    /// before it is appended.
    pub compress_sealed: bool,
    /// Sealed bytes waiting for compression past which batches are compressed before they are
    /// appended again.
    pub compress_backlog_bytes_max: u64,
    /// An active segment of at least 1 MiB idle this long is sealed (and so compressed).
    pub segment_idle_ms: u64,
    /// Appends are refused with 503 while the data directory's disk has less free, until it has
    /// a quarter more (0: never).
    pub disk_free_bytes_min: u64,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            partitions: PARTITIONS_DEFAULT,
            segment_bytes_max: 128 << 20,
            segment_age_ms: 3_600_000,
            retention_ms: RETENTION_MS_DEFAULT,
            retention_bytes: 0,
            retention_check_interval_ms: 60_000,
            append_queue_max: 1024,
            group_commit_bytes_max: 8 << 20,
            group_commit_interval_us: strata_log::GROUP_COMMIT_INTERVAL_US_DEFAULT,
            codecs: TopicSpec::ALL.iter().map(|t| (t.name.to_string(), t.compression.name().to_string())).collect(),
            compress_sealed: true,
            compress_backlog_bytes_max: 1 << 30,
            segment_idle_ms: 10_000,
            disk_free_bytes_min: strata_log::DISK_FREE_BYTES_MIN_DEFAULT,
        }
    }
}

/// The consumers that feed stores from the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineSection {
    pub commit_interval_ms: u64,
    pub read_bytes_max: u64,
    /// The consumers (search, the metric and rollup stores, the lake, the stream operators) stop
    /// reading while the disk they write to has less free, and go on once it has a quarter
    /// more; 0: never. Below the log's floor, so that the log stops taking appends first and
    /// what it took can still be written to the stores.
    pub disk_free_bytes_min: u64,
}

impl Default for PipelineSection {
    fn default() -> Self {
        PipelineSection {
            commit_interval_ms: 1000,
            read_bytes_max: 1 << 20,
            disk_free_bytes_min: strata_log::DISK_FREE_BYTES_MIN_DEFAULT / 2,
        }
    }
}

/// Log search: indexing, queries, live tail.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchSection {
    /// How often new lines are committed, i.e. how soon after acknowledgement they are searchable.
    pub commit_interval_ms: u64,
    /// Memory of one index writer, shared by its indexing threads.
    pub writer_memory_bytes: usize,
    /// Threads of one index writer, each building segments of its own.
    pub indexing_threads: usize,
    /// Day indexes written at once.
    pub writers_max: usize,
    /// Day indexes older than this many days are deleted.
    pub retention_days: u32,
    /// Per-tenant retention, overriding `retention_days`.
    pub tenant_retention_days: std::collections::BTreeMap<String, u32>,
    pub query_timeout_ms: u64,
    pub tail_connections_per_tenant_max: usize,
    pub tail_buffer_lines: usize,
    pub tail_poll_ms: u64,
}

impl Default for SearchSection {
    fn default() -> Self {
        SearchSection {
            // Half a second: a line is searchable within about 0.6 s at p99 under 5,000 lines/s,
            // against 1.2 s at 1 s (BENCHMARKS.md); under a full load commits run back to back
            // either way, and indexing is as fast.
            commit_interval_ms: 500,
            writer_memory_bytes: 64 << 20,
            indexing_threads: strata_search::IndexerConfig::default().indexing_threads,
            writers_max: 8,
            retention_days: 90,
            tenant_retention_days: Default::default(),
            query_timeout_ms: 30_000,
            tail_connections_per_tenant_max: 10,
            tail_buffer_lines: 1000,
            tail_poll_ms: 100,
        }
    }
}

/// The metric store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TsdbSection {
    /// How far behind a series' newest sample a late sample is still merged.
    pub ooo_window_ms: u64,
    /// Blocks of samples older than this many days are deleted.
    pub retention_days: u32,
    /// Per-tenant retention, overriding `retention_days`.
    pub tenant_retention_days: std::collections::BTreeMap<String, u32>,
    /// How often closed 2-hour ranges are written to blocks and the manifest is updated.
    pub checkpoint_interval_ms: u64,
    /// A tenant without samples for this long has its whole head written to blocks.
    pub head_idle_ms: u64,
    /// A series keeps one sample per interval of this length, the first to arrive; 0 keeps all.
    pub dedup_interval_ms: u64,
    /// Per-tenant deduplication interval, overriding `dedup_interval_ms`.
    pub tenant_dedup_interval_ms: std::collections::BTreeMap<String, u64>,
}

impl Default for TsdbSection {
    fn default() -> Self {
        TsdbSection {
            ooo_window_ms: 3_600_000,
            retention_days: 30,
            tenant_retention_days: Default::default(),
            checkpoint_interval_ms: 30_000,
            head_idle_ms: 2 * 3_600_000,
            dedup_interval_ms: 0,
            tenant_dedup_interval_ms: Default::default(),
        }
    }
}

/// Rollups: the operator that aggregates windows and the store that keeps its series.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RollupsSection {
    /// The rollup store keeps its samples this many days (13 months).
    pub retention_days: u32,
    /// How often the operator commits: emits what windows became final, saves its state and
    /// publishes. A restart reprocesses at most this much input.
    pub commit_interval_ms: u64,
    /// An input partition without a record for this long, with nothing left to read, no longer
    /// holds the rules' watermarks back.
    pub partition_idle_ms: u64,
}

impl Default for RollupsSection {
    fn default() -> Self {
        RollupsSection {
            retention_days: 400,
            commit_interval_ms: 1000,
            partition_idle_ms: strata_pipeline::rollup::IDLE_MS,
        }
    }
}

/// PromQL at `/api/v1/query` and `/api/v1/query_range`. The defaults are Prometheus's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuerySection {
    /// Samples one query may load and hold at once (Prometheus's `--query.max-samples`,
    /// 50,000,000); past it the query fails with 422.
    pub samples_max: usize,
    /// How long one query may run (Prometheus's `--query.timeout`, 2 minutes); a request's
    /// `timeout` parameter can shorten it, never lengthen it. Past it the answer is 503.
    pub timeout_ms: u64,
    /// How far back an instant selector looks for a sample (Prometheus's
    /// `--query.lookback-delta`, 5 minutes).
    pub lookback_delta_ms: u64,
    /// Queries one tenant may run at once (Prometheus's `--query.max-concurrency` is 20 for the
    /// whole server); one more gets 503 with Retry-After.
    pub concurrent_per_tenant_max: usize,
    /// The largest form body of a query request (1 MiB); a larger one gets 413.
    pub body_bytes_max: u64,
}

impl Default for QuerySection {
    fn default() -> Self {
        QuerySection {
            samples_max: 50_000_000,
            timeout_ms: 120_000,
            lookback_delta_ms: 300_000,
            concurrent_per_tenant_max: 20,
            body_bytes_max: 1 << 20,
        }
    }
}

/// Flags that override the file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub http_addr: Option<String>,
    pub no_auth: bool,
}

impl Config {
    /// Builds the configuration from its four sources and validates it.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &Overrides,
    ) -> Result<Config, String> {
        let mut value = toml::Value::try_from(Config::default()).expect("defaults serialise");
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
            let from_file: toml::Value =
                toml::from_str(&text).map_err(|e| format!("config file {} is not valid TOML: {e}", path.display()))?;
            merge(&mut value, from_file);
        }
        let mut keys = Vec::new();
        leaf_keys(&value, String::new(), &mut keys);
        // Where a key's value came from when it was not the file, so an error names what the user set.
        let mut origins: Vec<(String, String)> = Vec::new();
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix("STRATA_") else {
                continue;
            };
            // Not configuration keys: a secret, the log filter read before the config, and the
            // inspection commands' server URL; and in test builds the faults to inject.
            if matches!(rest, "ADMIN_TOKEN" | "LOG" | "SERVER")
                || (cfg!(feature = "fault-injection") && rest == "FAULTS")
            {
                continue;
            }
            let Some(key) = keys.iter().find(|k| k.replace('.', "_").eq_ignore_ascii_case(rest)) else {
                return Err(format!("environment variable {name} is not a configuration key"));
            };
            set_path(&mut value, key, parse_env_value(&raw));
            origins.push((key.clone(), format!("environment variable {name}={raw:?}")));
        }
        if let Some(d) = &flags.data_dir {
            set_path(&mut value, "data_dir", toml::Value::String(d.display().to_string()));
            origins.push(("data_dir".into(), format!("--data-dir {:?}", d.display().to_string())));
        }
        if let Some(a) = &flags.http_addr {
            set_path(&mut value, "http_addr", toml::Value::String(a.clone()));
            origins.push(("http_addr".into(), format!("--http-addr {a:?}")));
        }
        if flags.no_auth {
            set_path(&mut value, "no_auth", toml::Value::Boolean(true));
        }
        let cfg: Config = serde_path_to_error::deserialize(value)
            .map_err(|e| {
                let path = e.path().to_string();
                format!("invalid configuration key {path}: {}", e.into_inner())
            })
            .map_err(|e| name_origin(e, &origins))?;
        cfg.validate().map_err(|e| name_origin(e, &origins))?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        self.http_addr
            .parse::<SocketAddr>()
            .map_err(|e| format!("invalid configuration key http_addr: {:?} is not host:port ({e})", self.http_addr))?;
        if let Err(e) = self.grpc_addr() {
            return Err(format!(
                "invalid configuration key otlp_grpc_addr: {:?} is not host:port or empty ({e})",
                self.otlp_grpc_addr
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err("invalid configuration key data_dir: must not be empty".into());
        }
        let l = &self.log;
        if !(1..=1024).contains(&l.partitions) {
            return Err(format!("invalid configuration key log.partitions: must be 1 to 1024, got {}", l.partitions));
        }
        if l.segment_idle_ms < 1000 {
            return Err(format!(
                "invalid configuration key log.segment_idle_ms: must be at least 1000, got {}",
                l.segment_idle_ms
            ));
        }
        if !(1 << 20..=1 << 31).contains(&l.segment_bytes_max) {
            return Err(format!(
                "invalid configuration key log.segment_bytes_max: must be 1 MiB to 2 GiB, got {}",
                l.segment_bytes_max
            ));
        }
        if l.group_commit_interval_us > 1_000_000 {
            return Err(format!(
                "invalid configuration key log.group_commit_interval_us: must be at most 1000000 (1 s), got {}",
                l.group_commit_interval_us
            ));
        }
        if l.append_queue_max == 0 {
            return Err("invalid configuration key log.append_queue_max: must be at least 1".into());
        }
        if l.retention_check_interval_ms == 0 {
            return Err("invalid configuration key log.retention_check_interval_ms: must be at least 1".into());
        }
        for (topic, codec) in &l.codecs {
            if TopicSpec::named(topic).is_none() {
                return Err(format!("invalid configuration key log.codecs.{topic}: there is no topic {topic:?}"));
            }
            if strata_log::Codec::parse(codec).is_none() {
                return Err(format!(
                    "invalid configuration key log.codecs.{topic}: must be \"zstd\" or \"none\", got {codec:?}"
                ));
            }
        }
        let floor = self.pipeline.disk_free_bytes_min;
        if floor > 0 && l.disk_free_bytes_min > 0 && floor >= l.disk_free_bytes_min {
            return Err(format!(
                "invalid configuration key pipeline.disk_free_bytes_min: must be below log.disk_free_bytes_min ({}), \
                 so that the log stops taking appends before the consumers stop writing what it took, got {floor}",
                l.disk_free_bytes_min
            ));
        }
        self.ingest.validate().map_err(|e| format!("invalid configuration key {e}"))?;
        let s = &self.search;
        // tantivy's least memory for an indexing thread.
        if s.writer_memory_bytes < 15_000_000 * s.indexing_threads.max(1) {
            return Err(format!(
                "invalid configuration key search.writer_memory_bytes: must be at least 15000000 for each of \
                 search.indexing_threads ({}), got {}",
                s.indexing_threads, s.writer_memory_bytes
            ));
        }
        for (key, v) in [
            ("search.commit_interval_ms", s.commit_interval_ms),
            ("search.indexing_threads", s.indexing_threads as u64),
            ("search.writers_max", s.writers_max as u64),
            ("search.retention_days", u64::from(s.retention_days)),
            ("search.query_timeout_ms", s.query_timeout_ms),
            ("search.tail_buffer_lines", s.tail_buffer_lines as u64),
            ("search.tail_poll_ms", s.tail_poll_ms),
            ("rollups.retention_days", u64::from(self.rollups.retention_days)),
            ("rollups.commit_interval_ms", self.rollups.commit_interval_ms),
        ] {
            if v == 0 {
                return Err(format!("invalid configuration key {key}: must be at least 1"));
            }
        }
        for tenant in s.tenant_retention_days.keys() {
            strata_model::TenantId::new(tenant)
                .map_err(|e| format!("invalid configuration key search.tenant_retention_days.{tenant}: {e}"))?;
        }
        let t = &self.tsdb;
        for (key, v) in [
            ("tsdb.retention_days", u64::from(t.retention_days)),
            ("tsdb.checkpoint_interval_ms", t.checkpoint_interval_ms),
            ("tsdb.head_idle_ms", t.head_idle_ms),
        ] {
            if v == 0 {
                return Err(format!("invalid configuration key {key}: must be at least 1"));
            }
        }
        if t.ooo_window_ms > 24 * 3_600_000 {
            return Err(format!(
                "invalid configuration key tsdb.ooo_window_ms: must be at most 86400000 (a day), got {}",
                t.ooo_window_ms
            ));
        }
        for tenant in t.tenant_retention_days.keys() {
            strata_model::TenantId::new(tenant)
                .map_err(|e| format!("invalid configuration key tsdb.tenant_retention_days.{tenant}: {e}"))?;
        }
        let dedup = std::iter::once(("tsdb.dedup_interval_ms".to_string(), t.dedup_interval_ms))
            .chain(t.tenant_dedup_interval_ms.iter().map(|(k, &v)| (format!("tsdb.tenant_dedup_interval_ms.{k}"), v)));
        for (key, v) in dedup {
            if v > 24 * 3_600_000 {
                return Err(format!("invalid configuration key {key}: must be at most 86400000 (a day), got {v}"));
            }
        }
        for tenant in t.tenant_dedup_interval_ms.keys() {
            strata_model::TenantId::new(tenant)
                .map_err(|e| format!("invalid configuration key tsdb.tenant_dedup_interval_ms.{tenant}: {e}"))?;
        }
        let q = &self.query;
        for (key, v) in [
            ("query.samples_max", q.samples_max as u64),
            ("query.timeout_ms", q.timeout_ms),
            ("query.lookback_delta_ms", q.lookback_delta_ms),
            ("query.concurrent_per_tenant_max", q.concurrent_per_tenant_max as u64),
        ] {
            if v == 0 {
                return Err(format!("invalid configuration key {key}: must be at least 1"));
            }
        }
        // A semaphore holds at most this many permits.
        if q.concurrent_per_tenant_max > 1 << 20 {
            return Err(format!(
                "invalid configuration key query.concurrent_per_tenant_max: must be at most 1048576, got {}",
                q.concurrent_per_tenant_max
            ));
        }
        if q.body_bytes_max < 1024 {
            return Err(format!(
                "invalid configuration key query.body_bytes_max: must be at least 1024, got {}",
                q.body_bytes_max
            ));
        }
        let k = &self.lake;
        for (key, v) in [
            ("lake.commit_interval_ms", k.commit_interval_ms),
            ("lake.compact_interval_ms", k.compact_interval_ms),
            ("lake.compact_target_bytes", k.compact_target_bytes),
            ("lake.sql_timeout_ms", k.sql_timeout_ms),
            ("lake.sql_rows_max", k.sql_rows_max as u64),
            ("lake.sql_threads", k.sql_threads as u64),
            ("lake.sql_concurrent_max", k.sql_concurrent_max as u64),
        ] {
            if v == 0 {
                return Err(format!("invalid configuration key {key}: must be at least 1"));
            }
        }
        // A file a sink has written but not yet committed looks unreferenced; the grace period
        // must outlast any commit.
        if k.vacuum_grace_ms < 60_000 {
            return Err(format!(
                "invalid configuration key lake.vacuum_grace_ms: must be at least 60000, got {}",
                k.vacuum_grace_ms
            ));
        }
        if let Some(key) = k.storage.keys().find(|key| !strata_lake::location::is_store_option(key)) {
            return Err(format!(
                "invalid configuration key lake.storage.{key}: not an option of an S3 store (aws_endpoint, \
                 aws_region, aws_access_key_id, aws_secret_access_key, aws_allow_http, ...)"
            ));
        }
        k.location(&self.data_dir).map_err(|e| format!("invalid configuration key lake.url: {e}"))?;
        let tables = strata_lake::sql::TABLES;
        for (key, table) in k.retention_days.keys().map(|t| (format!("lake.retention_days.{t}"), t)).chain(
            k.tenant_retention_days.iter().flat_map(|(tenant, days)| {
                days.keys().map(move |t| (format!("lake.tenant_retention_days.{tenant}.{t}"), t))
            }),
        ) {
            if !tables.contains(&table.as_str()) {
                return Err(format!(
                    "invalid configuration key {key}: there is no table {table:?} (tables: {tables:?})"
                ));
            }
        }
        for tenant in k.tenant_retention_days.keys() {
            strata_model::TenantId::new(tenant)
                .map_err(|e| format!("invalid configuration key lake.tenant_retention_days.{tenant}: {e}"))?;
        }
        if self.pipeline.commit_interval_ms == 0 || self.pipeline.read_bytes_max == 0 {
            return Err(
                "invalid configuration key pipeline: commit_interval_ms and read_bytes_max must be positive".into()
            );
        }
        Ok(())
    }

    pub fn addr(&self) -> SocketAddr {
        self.http_addr.parse().expect("validated")
    }

    /// The OTLP gRPC listener's address, if there is one.
    pub fn grpc_addr(&self) -> Result<Option<SocketAddr>, std::net::AddrParseError> {
        match self.otlp_grpc_addr.trim() {
            "" => Ok(None),
            a => a.parse().map(Some),
        }
    }

    pub fn tsdb_config(&self) -> strata_tsdb::TsdbConfig {
        let day_ms = |d: u32| i64::from(d) * 24 * 3_600_000;
        let t = &self.tsdb;
        let mut c = strata_tsdb::TsdbConfig::new(self.data_dir.join("tsdb"));
        c.ooo_window_ms = t.ooo_window_ms as i64;
        c.retention_ms = day_ms(t.retention_days);
        c.tenant_retention_ms = t.tenant_retention_days.iter().map(|(k, &d)| (k.clone(), day_ms(d))).collect();
        c.checkpoint_interval_ms = t.checkpoint_interval_ms;
        c.head_idle_ms = t.head_idle_ms;
        c.dedup_interval_ms = t.dedup_interval_ms as i64;
        c.tenant_dedup_interval_ms = t.tenant_dedup_interval_ms.iter().map(|(k, &v)| (k.clone(), v as i64)).collect();
        c
    }

    /// The rollup store: the metric store's settings, its own directory, topic and retention.
    pub fn rollups_store_config(&self) -> strata_tsdb::TsdbConfig {
        let mut c = self.tsdb_config();
        c.dir = self.data_dir.join("tsdb-rollups");
        c.topic = <strata_model::topic::Rollups as strata_model::Topic>::SPEC.name;
        c.retention_ms = i64::from(self.rollups.retention_days) * 24 * 3_600_000;
        c.tenant_retention_ms.clear();
        // Rollups write one sample per window: nothing to deduplicate.
        c.dedup_interval_ms = 0;
        c.tenant_dedup_interval_ms.clear();
        c
    }

    pub fn log_config(&self) -> strata_log::LogConfig {
        let mut c = strata_log::LogConfig::new(self.data_dir.join("log"), self.log.partitions);
        for t in &mut c.topics {
            t.retention_ms = (self.log.retention_ms > 0).then_some(self.log.retention_ms);
            t.retention_bytes = (self.log.retention_bytes > 0).then_some(self.log.retention_bytes);
            if t.name == <strata_model::topic::Series as strata_model::Topic>::SPEC.name {
                // Definitions outlive the metric batches naming them: the registry defines a
                // series in use again once per retention, so twice the retention always holds
                // the latest definition of every series a batch still names. Never cut by size.
                t.retention_ms = t.retention_ms.map(|ms| ms.saturating_mul(2));
                t.retention_bytes = None;
            }
            if let Some(codec) = self.log.codecs.get(&t.name).and_then(|c| strata_log::Codec::parse(c)) {
                t.codec = codec;
            }
        }
        c.segment_bytes_max = self.log.segment_bytes_max;
        c.segment_age_ms = self.log.segment_age_ms;
        c.append_queue_max = self.log.append_queue_max;
        c.group_commit_bytes_max = self.log.group_commit_bytes_max;
        c.group_commit_interval_us = self.log.group_commit_interval_us;
        c.compress_sealed = self.log.compress_sealed;
        c.compress_backlog_bytes_max = self.log.compress_backlog_bytes_max;
        c.disk_free_bytes_min = self.log.disk_free_bytes_min;
        c.segment_idle_ms = self.log.segment_idle_ms;
        // One request's records for one partition must fit one batch.
        c.batch_bytes_max = (self.ingest.decompressed_bytes_max * 3 / 2 + (1 << 20)).min(1 << 30) as u32;
        c
    }
}

/// Rewrites "invalid configuration key K: why" to name the environment variable or flag that set
/// K, when one did: that is what the user typed and has to change.
fn name_origin(message: String, origins: &[(String, String)]) -> String {
    let Some((key, why)) = message.strip_prefix("invalid configuration key ").and_then(|r| r.split_once(": ")) else {
        return message;
    };
    match origins.iter().rev().find(|(k, _)| k == key) {
        Some((_, origin)) => format!("invalid {origin} (configuration key {key}): {why}"),
        None => message,
    }
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn leaf_keys(v: &toml::Value, prefix: String, out: &mut Vec<String>) {
    if let toml::Value::Table(t) = v {
        for (k, v) in t {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            if v.is_table() {
                leaf_keys(v, key, out);
            } else {
                out.push(key);
            }
        }
    }
}

fn set_path(v: &mut toml::Value, path: &str, new: toml::Value) {
    let mut cur = v;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        let toml::Value::Table(t) = cur else { return };
        if i + 1 == parts.len() {
            t.insert(p.to_string(), new);
            return;
        }
        cur = t.entry(p.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
    }
}

/// An environment value is read as a TOML value when it is one (`8`, `true`, `1.5`), else as a string.
fn parse_env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file: Option<&str>, env: &[(&str, &str)], flags: Overrides) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.toml");
        if let Some(f) = file {
            std::fs::write(&path, f).unwrap();
        }
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(file.map(|_| path.as_path()), env, &flags)
    }

    #[test]
    fn sources_override_in_order() {
        let c = load(None, &[], Overrides::default()).unwrap();
        assert_eq!(c.http_addr, "127.0.0.1:7878");
        assert_eq!(c.log.partitions, 1);
        let c = load(
            Some("http_addr = \"127.0.0.1:9000\"\n[log]\npartitions = 8\n[ingest.rate]\nrecords_per_s = 10.0\n"),
            &[("STRATA_LOG_PARTITIONS", "16"), ("STRATA_DATA_DIR", "/tmp/x y"), ("HOME", "/root")],
            Overrides { http_addr: Some("127.0.0.1:9100".into()), ..Default::default() },
        )
        .unwrap();
        assert_eq!(c.log.partitions, 16, "env beats file");
        assert_eq!(c.http_addr, "127.0.0.1:9100", "flag beats file");
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x y"));
        assert_eq!(c.ingest.rate.records_per_s, 10.0);
    }

    #[test]
    fn dedup_intervals_reach_the_metric_store_and_not_the_rollup_store() {
        let file = "[tsdb]\ndedup_interval_ms = 15000\n[tsdb.tenant_dedup_interval_ms]\nacme = 30000\n";
        let c = load(Some(file), &[], Overrides::default()).unwrap();
        let t = c.tsdb_config();
        assert_eq!(t.dedup_interval_ms, 15_000);
        assert_eq!(t.tenant_dedup_interval_ms.get("acme"), Some(&30_000));
        let r = c.rollups_store_config();
        assert_eq!((r.dedup_interval_ms, r.tenant_dedup_interval_ms.len()), (0, 0));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (Some("[log]\npartitions = \"many\"\n"), vec![], "invalid configuration key log.partitions"),
            (Some("[log]\nparts = 3\n"), vec![], "invalid configuration key log"),
            (
                Some("[log]\npartitions = 0\n"),
                vec![],
                "invalid configuration key log.partitions: must be 1 to 1024, got 0",
            ),
            (Some("http_addr = \"nowhere\"\n"), vec![], "invalid configuration key http_addr"),
            (Some("otlp_grpc_addr = \"4317\"\n"), vec![], "invalid configuration key otlp_grpc_addr"),
            (Some("[ingest]\nbody_bytes_max = 0\n"), vec![], "invalid configuration key ingest.body_bytes_max"),
            (Some("this is not toml"), vec![], "is not valid TOML"),
            (
                Some("[tsdb.tenant_dedup_interval_ms]\nacme = 90000000\n"),
                vec![],
                "invalid configuration key tsdb.tenant_dedup_interval_ms.acme: must be at most 86400000",
            ),
            (
                Some("[tsdb.tenant_dedup_interval_ms]\n\"../x\" = 15000\n"),
                vec![],
                "invalid configuration key tsdb.tenant_dedup_interval_ms.../x",
            ),
            (
                Some("[search]\nindexing_threads = 0\n"),
                vec![],
                "invalid configuration key search.indexing_threads: must be at least 1",
            ),
            (
                Some("[search]\nindexing_threads = 4\nwriter_memory_bytes = 50000000\n"),
                vec![],
                "invalid configuration key search.writer_memory_bytes: must be at least 15000000 for each of \
                 search.indexing_threads (4), got 50000000",
            ),
            (
                Some("[query]\ntimeout_ms = 0\n"),
                vec![],
                "invalid configuration key query.timeout_ms: must be at least 1",
            ),
            (
                Some("[log]\ndisk_free_bytes_min = 1000000\n"),
                vec![("STRATA_PIPELINE_DISK_FREE_BYTES_MIN", "1000000")],
                "invalid environment variable STRATA_PIPELINE_DISK_FREE_BYTES_MIN=\"1000000\" (configuration key \
                 pipeline.disk_free_bytes_min): must be below log.disk_free_bytes_min (1000000), so that the log \
                 stops taking appends before the consumers stop writing what it took, got 1000000",
            ),
            (
                Some("[log.codecs]\nlogs = \"gzip\"\n"),
                vec![],
                "invalid configuration key log.codecs.logs: must be \"zstd\" or \"none\", got \"gzip\"",
            ),
            (
                None,
                vec![("STRATA_LOG_CODECS_METRICS", "lz4")],
                "invalid environment variable STRATA_LOG_CODECS_METRICS=\"lz4\" (configuration key log.codecs.metrics)",
            ),
            (
                None,
                vec![("STRATA_LOG_PARTITONS", "3")],
                "environment variable STRATA_LOG_PARTITONS is not a configuration key",
            ),
            (
                None,
                vec![("STRATA_LOG_PARTITIONS", "abc")],
                "invalid environment variable STRATA_LOG_PARTITIONS=\"abc\" (configuration key log.partitions): ",
            ),
            (
                None,
                vec![("STRATA_LOG_PARTITIONS", "0")],
                "invalid environment variable STRATA_LOG_PARTITIONS=\"0\" (configuration key log.partitions): \
                 must be 1 to 1024, got 0",
            ),
            (
                Some("[lake]\nurl = \"gs://bucket/lake\"\n"),
                vec![],
                "invalid configuration key lake.url: \"gs://bucket/lake\": the lake is a local directory or s3://",
            ),
            (
                Some("[lake]\nurl = \"s3://bucket/lake\"\n[lake.storage]\ncolour = \"blue\"\n"),
                vec![],
                "invalid configuration key lake.storage.colour: not an option of an S3 store",
            ),
            (
                None,
                vec![("STRATA_INGEST_BODY_BYTES_MAX", "0")],
                "invalid environment variable STRATA_INGEST_BODY_BYTES_MAX=\"0\" (configuration key ingest.body_bytes_max)",
            ),
        ];
        for (file, env, want) in cases {
            let err = load(file, &env, Overrides::default()).unwrap_err();
            assert!(err.contains(want), "{file:?} {env:?}: {err}");
        }
        let flag = Overrides { http_addr: Some("nowhere".into()), ..Default::default() };
        let err = load(None, &[], flag).unwrap_err();
        assert!(err.starts_with("invalid --http-addr \"nowhere\" (configuration key http_addr): "), "{err}");
        let err = load(Some("[log]\nparts = 3\n"), &[], Overrides::default()).unwrap_err();
        assert!(err.contains("unknown field `parts`"), "{err}");
    }
}
