//! Every tenant's series index, head and blocks: the `Store`, its configuration and errors, the
//! `Tenant` and `Block` it keeps them in, and opening it from the manifest. One concern per file
//! below it: `append.rs` (head appends), `querier.rs` (the lazy read path of samples), `series.rs`
//! (series, label names and values, counts), `checkpoint.rs` (cuts, day merges, retention and the
//! manifest) and `sink.rs` (`TsdbSink`, fed from the `metrics` topic).
//!
//! Durability comes from the log and the blocks alone. A checkpoint cuts every 2-hour range that
//! the out-of-order window has closed into a block, merges a settled day's blocks into one, drops
//! blocks past retention, and writes the manifest: the blocks, and the positions of the oldest
//! records whose samples are still only in the head. After a crash the head is rebuilt by
//! replaying the topic from those positions; a replayed sample that a block already holds (its
//! record is older than the block's cut position for its partition) is skipped. So no sample is
//! lost and none is stored twice. See `crates/strata-tsdb/DESIGN.md`.

mod append;
mod checkpoint;
mod querier;
mod series;
mod sink;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use strata_pipeline::Positions;

use crate::block::{BlockError, BlockFile, SeriesEntry};
use crate::head::{AppendError, Head};
use crate::index::{LabelSet, SeriesId, SeriesIndex};
use crate::manifest::{self, BlockRef, ManifestError};

pub use querier::{Querier, ReadLimits, SeriesSet};
pub use sink::{MetricTopic, TsdbSink};

const DAY_MS: i64 = 24 * 3600 * 1000;

/// How the metric store keeps and persists samples.
#[derive(Debug, Clone)]
pub struct TsdbConfig {
    /// `<data_dir>/tsdb`.
    pub dir: PathBuf,
    /// How far behind a series' newest sample a late sample may be and still be merged.
    pub ooo_window_ms: i64,
    /// Blocks whose newest sample is older than this (before now) are deleted.
    pub retention_ms: i64,
    /// Per-tenant overrides of `retention_ms`.
    pub tenant_retention_ms: HashMap<String, i64>,
    /// A series keeps one sample per interval of this length, the first to arrive; 0 keeps every
    /// sample (VictoriaMetrics' `-dedup.minScrapeInterval`, for senders that scrape the same
    /// targets twice).
    pub dedup_interval_ms: i64,
    /// Per-tenant overrides of `dedup_interval_ms`.
    pub tenant_dedup_interval_ms: HashMap<String, i64>,
    /// How often a checkpoint looks for ranges to cut, days to merge and blocks to drop.
    pub checkpoint_interval_ms: u64,
    /// A tenant that has received no sample for this long has its whole head cut into blocks, so
    /// that a quiet tenant does not hold old samples (and old log positions) in memory forever.
    pub head_idle_ms: u64,
    /// The topic the store is fed from, whose positions its manifest keeps.
    pub topic: &'static str,
}

impl TsdbConfig {
    pub fn new(dir: impl Into<PathBuf>) -> TsdbConfig {
        TsdbConfig {
            dir: dir.into(),
            ooo_window_ms: 3_600_000,
            retention_ms: 30 * DAY_MS,
            tenant_retention_ms: HashMap::new(),
            dedup_interval_ms: 0,
            tenant_dedup_interval_ms: HashMap::new(),
            checkpoint_interval_ms: 30_000,
            head_idle_ms: 2 * 3_600_000,
            topic: <strata_model::topic::Metrics as strata_model::Topic>::SPEC.name,
        }
    }

    fn retention_ms(&self, tenant: &str) -> i64 {
        self.tenant_retention_ms.get(tenant).copied().unwrap_or(self.retention_ms)
    }

    fn dedup_interval_ms(&self, tenant: &str) -> i64 {
        self.tenant_dedup_interval_ms.get(tenant).copied().unwrap_or(self.dedup_interval_ms).max(0)
    }
}

/// Why a sample was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error(transparent)]
    TooOld(#[from] AppendError),
}

impl Reject {
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::TooOld(_) => "too_old",
        }
    }
}

/// Why the store cannot open or persist itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Block(#[from] BlockError),
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// One series and its samples in a time range.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    /// Sorted by name, `__name__` included.
    pub labels: LabelSet,
    /// Sorted by timestamp (ms), one per timestamp.
    pub samples: Vec<(i64, f64)>,
}

/// Why a read was refused or failed. `TooManySeries` and `TooManySamples` are a query that asks
/// for more than `ReadLimits` allow; `Block` is the store's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("the query selects more than {max} series; narrow it with more label matchers")]
    TooManySeries { max: usize },
    #[error("the query reads more than {max} samples; use a shorter range or narrow it")]
    TooManySamples { max: usize },
    #[error("cannot read a block: {0}")]
    Block(String),
}

/// A block of one tenant, open, with its series by id.
struct Block {
    file: BlockFile,
    reference: BlockRef,
    /// Sorted by series id.
    series: Vec<(SeriesId, SeriesEntry)>,
}

impl Block {
    fn entry(&self, id: SeriesId) -> Option<&SeriesEntry> {
        self.series.binary_search_by_key(&id, |s| s.0).ok().map(|i| &self.series[i].1)
    }

    /// Whether a sample at `ts` from the record at `offset` of `partition` is already here.
    fn holds(&self, partition: u32, offset: u64, ts: i64) -> bool {
        let (start, end) = self.reference.cover;
        ts >= start && ts < end && self.reference.cut.get(&partition).is_some_and(|&cut| offset < cut)
    }
}

struct Tenant {
    name: String,
    /// `TsdbConfig::dedup_interval_ms` for this tenant.
    dedup_ms: i64,
    dir: PathBuf,
    index: SeriesIndex,
    /// Series registry number to series, for version 3 batches.
    refs: HashMap<u64, SeriesId, strata_model::FastHash>,
    head: Head,
    /// Newest sample of any series.
    max_t: i64,
    last_append: Instant,
    /// Per block range in the head, per partition, the first record that added a sample to it:
    /// where a replay must start to rebuild that range.
    head_offsets: BTreeMap<i64, BTreeMap<u32, u64>>,
    /// Sorted by sequence.
    blocks: Vec<Arc<Block>>,
    /// Changes whenever `blocks` does, so that a querier's copy of the list can tell it is old.
    blocks_version: u64,
    /// Per partition, the highest cut position of any block: records at or past it cannot be
    /// in a block, which makes the replay check free for new records.
    cut_max: BTreeMap<u32, u64>,
}

impl Tenant {
    fn new(name: &str, root: &Path, dedup_ms: i64) -> Tenant {
        Tenant {
            name: name.to_string(),
            dedup_ms,
            dir: root.join(name),
            index: SeriesIndex::default(),
            refs: HashMap::default(),
            head: Head::default(),
            max_t: i64::MIN,
            last_append: Instant::now(),
            head_offsets: BTreeMap::new(),
            blocks: Vec::new(),
            blocks_version: 0,
            cut_max: BTreeMap::new(),
        }
    }

    fn add_block(&mut self, block: Arc<Block>) {
        for (&p, &cut) in &block.reference.cut {
            let m = self.cut_max.entry(p).or_default();
            *m = (*m).max(cut);
        }
        let at = self.blocks.partition_point(|b| b.reference.seq < block.reference.seq);
        self.blocks.insert(at, block);
        self.blocks_version += 1;
    }

    /// Removes the blocks `gone` says to and returns them.
    fn remove_blocks(&mut self, gone: impl Fn(&Block) -> bool) -> Vec<Arc<Block>> {
        let (removed, kept) = std::mem::take(&mut self.blocks).into_iter().partition(|b| gone(b));
        self.blocks = kept;
        self.blocks_version += 1;
        removed
    }

    fn in_blocks(&self, partition: u32, offset: u64, ts: i64) -> bool {
        self.cut_max.get(&partition).is_some_and(|&m| offset < m)
            && self.blocks.iter().any(|b| b.holds(partition, offset, ts))
    }
}

/// What the last manifest said, kept to write the next one.
#[derive(Default)]
struct Persisted {
    positions: Positions,
    next_seq: u64,
}

/// The metric store of every tenant.
pub struct Store {
    cfg: TsdbConfig,
    tenants: RwLock<HashMap<String, Arc<RwLock<Tenant>>>>,
    persisted: Mutex<Persisted>,
}

impl Store {
    pub fn new(cfg: TsdbConfig) -> Store {
        Store { cfg, tenants: RwLock::new(HashMap::new()), persisted: Mutex::new(Persisted::default()) }
    }

    pub fn config(&self) -> &TsdbConfig {
        &self.cfg
    }

    fn tenant(&self, tenant: &str) -> Option<Arc<RwLock<Tenant>>> {
        self.tenants.read().expect("store lock").get(tenant).cloned()
    }

    fn tenant_or_create(&self, tenant: &str) -> Arc<RwLock<Tenant>> {
        if let Some(t) = self.tenant(tenant) {
            return t;
        }
        let mut tenants = self.tenants.write().expect("store lock");
        tenants
            .entry(tenant.to_string())
            .or_insert_with(|| {
                Arc::new(RwLock::new(Tenant::new(tenant, &self.cfg.dir, self.cfg.dedup_interval_ms(tenant))))
            })
            .clone()
    }

    /// Opens what the manifest names, deletes what it does not, and returns the positions to
    /// replay the log from.
    pub fn open(&self) -> Result<Positions, Error> {
        // A restart after a failed attempt (even a panic inside a lock) begins from what is on
        // disk, never from what the failed attempt left in memory.
        self.tenants.write().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        self.tenants.clear_poison();
        *self.persisted.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Persisted::default();
        self.persisted.clear_poison();
        let dir = &self.cfg.dir;
        std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
        let body = manifest::read(dir)?;
        for (name, refs) in &body.tenants {
            let t = self.tenant_or_create(name);
            let mut t = t.write().expect("tenant lock");
            for r in refs {
                let path = t.dir.join(&r.file);
                match BlockFile::open(&path) {
                    Ok((file, series)) => {
                        let mut series: Vec<(SeriesId, SeriesEntry)> =
                            series.into_iter().map(|(labels, e)| (t.index.get_or_insert(labels).0, e)).collect();
                        series.sort_by_key(|s| s.0);
                        t.add_block(Arc::new(Block { file, reference: r.clone(), series }));
                    }
                    Err(e) => {
                        // The samples of an unreadable block are lost to queries, not to the
                        // store's bookkeeping: say so loudly and keep serving the rest.
                        metrics::counter!("strata_tsdb_blocks_unreadable_total", "tenant" => name.clone()).increment(1);
                        tracing::error!(tenant = %name, error = %e, "block unreadable; its samples are missing from queries");
                    }
                }
            }
        }
        // Files no manifest names: blocks of a checkpoint that did not finish, temporary files.
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().to_string();
                if !path.is_dir() {
                    continue;
                }
                let listed: BTreeSet<&str> =
                    body.tenants.get(&name).map(|r| r.iter().map(|b| b.file.as_str()).collect()).unwrap_or_default();
                for f in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                    let fname = f.file_name().to_string_lossy().to_string();
                    if !listed.contains(fname.as_str()) {
                        tracing::info!(file = %f.path().display(), "removing a block no manifest names");
                        let _ = std::fs::remove_file(f.path());
                    }
                }
            }
        }
        let positions: Positions = body.positions.iter().map(|(t, p, o)| ((t.clone(), *p), *o)).collect();
        let mut persisted = self.persisted.lock().expect("persisted lock");
        persisted.positions = positions.clone();
        persisted.next_seq = body.next_seq;
        drop(persisted);
        self.publish_sizes();
        Ok(positions)
    }
}
