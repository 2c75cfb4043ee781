//! Every tenant's series index, head and blocks, fed from the `metrics` topic by `TsdbSink`.
//!
//! Durability comes from the log and the blocks alone. A checkpoint cuts every 2-hour range that
//! the out-of-order window has closed into a block, merges a settled day's blocks into one, drops
//! blocks past retention, and writes the manifest: the blocks, and the positions of the oldest
//! records whose samples are still only in the head. After a crash the head is rebuilt by
//! replaying the topic from those positions; a replayed sample that a block already holds (its
//! record is older than the block's cut position for its partition) is skipped. So no sample is
//! lost and none is stored twice. See `crates/strata-tsdb/DESIGN.md`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use strata_model::Topic;
use strata_model::topic::Metrics;
use strata_pipeline::{Decoded, Positions, SinkError, TopicSink};

use crate::block::{BlockError, BlockFile, BlockWriter, SeriesEntry};
use crate::head::{AppendError, BLOCK_RANGE_MS, Head, range_start};
use crate::index::{LabelSet, Matcher, SeriesId, SeriesIndex};
use crate::manifest::{self, BlockRef, ManifestError};

const DAY_MS: i64 = 24 * 3600 * 1000;
const TOPIC: &str = Metrics::SPEC.name;

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
    /// How often a checkpoint looks for ranges to cut, days to merge and blocks to drop.
    pub checkpoint_interval_ms: u64,
    /// A tenant that has received no sample for this long has its whole head cut into blocks, so
    /// that a quiet tenant does not hold old samples (and old log positions) in memory forever.
    pub head_idle_ms: u64,
}

impl TsdbConfig {
    pub fn new(dir: impl Into<PathBuf>) -> TsdbConfig {
        TsdbConfig {
            dir: dir.into(),
            ooo_window_ms: 3_600_000,
            retention_ms: 30 * DAY_MS,
            tenant_retention_ms: HashMap::new(),
            checkpoint_interval_ms: 30_000,
            head_idle_ms: 2 * 3_600_000,
        }
    }

    fn retention_ms(&self, tenant: &str) -> i64 {
        self.tenant_retention_ms.get(tenant).copied().unwrap_or(self.retention_ms)
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

/// Why a read was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("the query selects more than {max} series; narrow it with more label matchers")]
    TooManySeries { max: usize },
    #[error("the query reads more than {max} samples; use a shorter range or narrow it")]
    TooManySamples { max: usize },
    #[error("cannot read a block: {0}")]
    Block(String),
}

type Samples = Vec<(i64, f64)>;

/// A block merged from others, and the sequences of the blocks it replaces.
type Merged = (Arc<Block>, Vec<u64>);

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
    dir: PathBuf,
    index: SeriesIndex,
    head: Head,
    /// Newest sample of any series.
    max_t: i64,
    last_append: Instant,
    /// Per block range in the head, per partition, the first record that added a sample to it:
    /// where a replay must start to rebuild that range.
    head_offsets: BTreeMap<i64, BTreeMap<u32, u64>>,
    /// Sorted by sequence.
    blocks: Vec<Arc<Block>>,
    /// Per partition, the highest cut position of any block: records at or past it cannot be
    /// in a block, which makes the replay check free for new records.
    cut_max: BTreeMap<u32, u64>,
}

impl Tenant {
    fn new(name: &str, root: &Path) -> Tenant {
        Tenant {
            name: name.to_string(),
            dir: root.join(name),
            index: SeriesIndex::default(),
            head: Head::default(),
            max_t: i64::MIN,
            last_append: Instant::now(),
            head_offsets: BTreeMap::new(),
            blocks: Vec::new(),
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
    }

    fn in_blocks(&self, partition: u32, offset: u64, ts: i64) -> bool {
        self.cut_max.get(&partition).is_some_and(|&m| offset < m)
            && self.blocks.iter().any(|b| b.holds(partition, offset, ts))
    }

    fn has_data(&self, id: SeriesId, from_ms: i64, to_ms: i64) -> bool {
        self.head.series(id).is_some_and(|s| s.overlaps(from_ms, to_ms))
            || self.blocks.iter().any(|b| b.entry(id).is_some_and(|e| e.max_t >= from_ms && e.min_t <= to_ms))
    }

    fn matching(&self, selectors: &[Vec<Matcher>], from_ms: i64, to_ms: i64) -> BTreeSet<SeriesId> {
        let mut ids = BTreeSet::new();
        if selectors.is_empty() {
            ids.extend(0..self.index.len() as SeriesId);
        }
        for sel in selectors {
            ids.extend(self.index.select(sel));
        }
        ids.retain(|&id| self.has_data(id, from_ms, to_ms));
        ids
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

/// Merges sample runs given oldest first: on equal timestamps the later run wins.
fn merge_runs(runs: Vec<Vec<(i64, f64)>>) -> Vec<(i64, f64)> {
    if runs.len() == 1 {
        return runs.into_iter().next().expect("one run");
    }
    let mut all: Vec<(i64, usize, f64)> =
        runs.into_iter().enumerate().flat_map(|(i, r)| r.into_iter().map(move |(t, v)| (t, i, v))).collect();
    all.sort_by_key(|s| (s.0, s.1));
    let mut out: Vec<(i64, f64)> = Vec::with_capacity(all.len());
    for (t, _, v) in all {
        match out.last_mut() {
            Some(last) if last.0 == t => last.1 = v,
            _ => out.push((t, v)),
        }
    }
    out
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
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
            .or_insert_with(|| Arc::new(RwLock::new(Tenant::new(tenant, &self.cfg.dir))))
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

    /// Adds one sample of the series `labels` (with `__name__`), read from the record at `offset`
    /// of `partition`. Returns `Ok(false)` when a block already holds it (a replay).
    fn append_at(
        &self,
        t: &mut Tenant,
        labels: LabelSet,
        ts: i64,
        value: f64,
        partition: u32,
        offset: u64,
    ) -> Result<bool, Reject> {
        if t.in_blocks(partition, offset, ts) {
            return Ok(false);
        }
        let id = t.index.get_or_insert(labels).0;
        self.append_id(t, id, ts, value, partition, offset)?;
        Ok(true)
    }

    fn append_id(
        &self,
        t: &mut Tenant,
        id: SeriesId,
        ts: i64,
        value: f64,
        partition: u32,
        offset: u64,
    ) -> Result<(), Reject> {
        t.head.append(id, ts, value, self.cfg.ooo_window_ms)?;
        t.max_t = t.max_t.max(ts);
        let range = range_start(ts);
        // Samples come in time order mostly: the newest range is the one to look at first.
        match t.head_offsets.last_entry() {
            Some(mut e) if *e.key() == range => {
                e.get_mut().entry(partition).or_insert(offset);
            }
            _ => {
                t.head_offsets.entry(range).or_default().entry(partition).or_insert(offset);
            }
        }
        Ok(())
    }

    /// Adds one sample outside of any log record (tests, tools).
    pub fn append(&self, tenant: &str, labels: LabelSet, timestamp_ms: i64, value: f64) -> Result<(), Reject> {
        let t = self.tenant_or_create(tenant);
        let mut t = t.write().expect("tenant lock");
        t.last_append = Instant::now();
        self.append_at(&mut t, labels, timestamp_ms, value, u32::MAX, u64::MAX).map(|_| ())
    }

    /// Series of `tenant` matching any of `selectors` (each a list of matchers that must all
    /// hold) with a sample in `[from_ms, to_ms]`.
    pub fn series(&self, tenant: &str, selectors: &[Vec<Matcher>], from_ms: i64, to_ms: i64) -> Vec<LabelSet> {
        let Some(t) = self.tenant(tenant) else { return Vec::new() };
        let t = t.read().expect("tenant lock");
        let mut out: Vec<LabelSet> =
            t.matching(selectors, from_ms, to_ms).into_iter().map(|id| t.index.labels(id)).collect();
        out.sort();
        out
    }

    /// Label names of the matching series (all series when `selectors` is empty).
    pub fn label_names(&self, tenant: &str, selectors: &[Vec<Matcher>], from_ms: i64, to_ms: i64) -> Vec<String> {
        let Some(t) = self.tenant(tenant) else { return Vec::new() };
        let t = t.read().expect("tenant lock");
        t.index.label_names(&t.matching(selectors, from_ms, to_ms)).into_iter().collect()
    }

    /// Values of `name` among the matching series.
    pub fn label_values(
        &self,
        tenant: &str,
        name: &str,
        selectors: &[Vec<Matcher>],
        from_ms: i64,
        to_ms: i64,
    ) -> Vec<String> {
        let Some(t) = self.tenant(tenant) else { return Vec::new() };
        let t = t.read().expect("tenant lock");
        t.index.label_values(name, &t.matching(selectors, from_ms, to_ms)).into_iter().collect()
    }

    /// Samples of one series in `[from_ms, to_ms]`.
    pub fn samples(&self, tenant: &str, labels: &LabelSet, from_ms: i64, to_ms: i64) -> Vec<(i64, f64)> {
        let mut sorted = labels.clone();
        sorted.sort();
        let matchers: Vec<Matcher> = sorted.iter().map(|(n, v)| Matcher::Equal(n.clone(), v.clone())).collect();
        match self.select(tenant, &matchers, from_ms, to_ms, usize::MAX, usize::MAX) {
            Ok(series) => series.into_iter().find(|s| s.labels == sorted).map(|s| s.samples).unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// Every series of `tenant` matching all of `matchers`, with its samples in
    /// `[from_ms, to_ms]`, sorted by label set. Series without a sample in the range are left out.
    /// The read path of the native query and of PromQL. Reading stops as soon as more than
    /// `series_max` series or `samples_max` samples are found, so a query that asks for too much
    /// costs about its limit in memory, not what it asked for.
    pub fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        from_ms: i64,
        to_ms: i64,
        series_max: usize,
        samples_max: usize,
    ) -> Result<Vec<SeriesData>, SelectError> {
        let Some(t) = self.tenant(tenant) else { return Ok(Vec::new()) };
        // Under the lock: the head's samples and the blocks to read; blocks are read after it is
        // released, so a slow read never holds up ingestion.
        let mut wanted: Vec<(SeriesId, LabelSet, Samples)> = Vec::new();
        // Samples read so far; a sample in both a block and the head counts twice here, which
        // errs on the side of the limit.
        let mut read = 0usize;
        let blocks: Vec<Arc<Block>> = {
            let t = t.read().expect("tenant lock");
            for id in t.index.select(matchers) {
                if !t.has_data(id, from_ms, to_ms) {
                    continue;
                }
                if wanted.len() >= series_max {
                    return Err(SelectError::TooManySeries { max: series_max });
                }
                let head = t.head.series(id).map(|s| s.range(from_ms, to_ms)).unwrap_or_default();
                read += head.len();
                if read > samples_max {
                    return Err(SelectError::TooManySamples { max: samples_max });
                }
                wanted.push((id, t.index.labels(id), head));
            }
            t.blocks.iter().filter(|b| b.file.stats.max_t >= from_ms && b.file.stats.min_t <= to_ms).cloned().collect()
        };
        let mut out = Vec::with_capacity(wanted.len());
        for (id, labels, head) in wanted {
            let mut runs = Vec::new();
            for b in &blocks {
                let Some(e) = b.entry(id) else { continue };
                if e.max_t < from_ms || e.min_t > to_ms {
                    continue;
                }
                let samples = b.file.read(e).map_err(|e| SelectError::Block(e.to_string()))?;
                let run: Samples = samples.into_iter().filter(|s| s.0 >= from_ms && s.0 <= to_ms).collect();
                read += run.len();
                if read > samples_max {
                    return Err(SelectError::TooManySamples { max: samples_max });
                }
                runs.push(run);
            }
            runs.push(head);
            let samples = merge_runs(runs);
            if !samples.is_empty() {
                out.push(SeriesData { labels, samples });
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(out)
    }

    /// Samples stored for `tenant`, in blocks and in the head. A sample in two blocks that
    /// overlap (a late sample after its range was cut) counts twice until the blocks are merged.
    pub fn sample_count(&self, tenant: &str) -> u64 {
        let Some(t) = self.tenant(tenant) else { return 0 };
        let t = t.read().expect("tenant lock");
        let head: usize = t.head.iter().map(|(_, s)| s.len()).sum();
        t.blocks.iter().map(|b| b.file.stats.samples).sum::<u64>() + head as u64
    }

    /// Series of `tenant` that have samples in the head.
    pub fn series_count(&self, tenant: &str) -> usize {
        let Some(t) = self.tenant(tenant) else { return 0 };
        let t = t.read().expect("tenant lock");
        t.head.iter().filter(|(_, s)| !s.is_empty()).count()
    }

    /// Makes samples durable in blocks where the out-of-order window has closed, merges settled
    /// days, applies retention, and writes the manifest with the positions a replay starts from.
    /// `positions` are the consumer's: everything before them has been appended.
    pub fn checkpoint(&self, positions: &Positions) -> Result<(), Error> {
        let started = Instant::now();
        let tenants: Vec<Arc<RwLock<Tenant>>> = self.tenants.read().expect("store lock").values().cloned().collect();
        let now = now_ms();
        let mut persisted = self.persisted.lock().expect("persisted lock");
        let mut seq = persisted.next_seq;
        // Per tenant: blocks written, ranges they replace in the head, blocks they replace.
        let mut plans = Vec::new();
        for t in &tenants {
            let t = t.read().expect("tenant lock");
            let idle = t.last_append.elapsed().as_millis() as u64 >= self.cfg.head_idle_ms;
            let ranges: Vec<i64> = t
                .head_offsets
                .keys()
                .copied()
                .filter(|&r| idle || r.saturating_add(BLOCK_RANGE_MS).saturating_add(self.cfg.ooo_window_ms) <= t.max_t)
                .collect();
            let mut new_blocks = Vec::new();
            for &range in &ranges {
                seq += 1;
                let cut: BTreeMap<u32, u64> =
                    positions.iter().filter(|((topic, _), _)| topic == TOPIC).map(|((_, p), &o)| (*p, o)).collect();
                let reference =
                    BlockRef { file: format!("{seq:016x}.block"), seq, cover: (range, range + BLOCK_RANGE_MS), cut };
                if let Some(b) = self.cut_range(&t, range, reference)? {
                    new_blocks.push(b);
                }
            }
            let retention = self.cfg.retention_ms(&t.name);
            let expired: Vec<u64> = t
                .blocks
                .iter()
                .filter(|b| b.reference.cover.1 <= now.saturating_sub(retention))
                .map(|b| b.reference.seq)
                .collect();
            let merged = self.merge_day(&t, &ranges, &expired, &mut seq)?;
            plans.push((ranges, new_blocks, expired, merged));
        }
        if plans.iter().any(|(_, new, expired, merged)| !new.is_empty() || !expired.is_empty() || merged.is_some()) {
            manifest::sync_dir(&self.cfg.dir).map_err(|source| Error::Io { path: self.cfg.dir.clone(), source })?;
            for t in &tenants {
                let dir = t.read().expect("tenant lock").dir.clone();
                if dir.exists() {
                    manifest::sync_dir(&dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
                }
            }
        }
        // The manifest as it will be once the plans are applied.
        let mut body = manifest::Body { next_seq: seq, ..manifest::Body::default() };
        let mut replay = positions.clone();
        for (t, (ranges, new_blocks, expired, merged)) in tenants.iter().zip(&plans) {
            let t = t.read().expect("tenant lock");
            let replaced: BTreeSet<u64> =
                merged.as_ref().map(|(_, old)| old.iter().copied().collect()).unwrap_or_default();
            let mut refs: Vec<BlockRef> = t
                .blocks
                .iter()
                .map(|b| b.reference.clone())
                .filter(|r| !expired.contains(&r.seq) && !replaced.contains(&r.seq))
                .chain(new_blocks.iter().map(|b| b.reference.clone()))
                .chain(merged.iter().map(|(b, _)| b.reference.clone()))
                .collect();
            refs.sort_by_key(|r| r.seq);
            if !refs.is_empty() {
                body.tenants.insert(t.name.clone(), refs);
            }
            for (range, offsets) in &t.head_offsets {
                if ranges.contains(range) {
                    continue;
                }
                for (&p, &o) in offsets {
                    if let Some(pos) = replay.get_mut(&(TOPIC.to_string(), p)) {
                        *pos = (*pos).min(o);
                    }
                }
            }
        }
        body.positions = replay.iter().map(|((t, p), &o)| (t.clone(), *p, o)).collect();
        manifest::write(&self.cfg.dir, &body)?;
        persisted.positions = replay;
        persisted.next_seq = seq;
        drop(persisted);
        // Published: now the head can let go of what the blocks hold.
        let mut obsolete = Vec::new();
        for (t, (ranges, new_blocks, expired, merged)) in tenants.iter().zip(plans) {
            let mut t = t.write().expect("tenant lock");
            for &range in &ranges {
                for (_, s) in t.head.iter_mut() {
                    s.take_range(range);
                }
                t.head_offsets.remove(&range);
            }
            for b in new_blocks {
                t.add_block(b);
            }
            let replaced: Vec<u64> = merged.as_ref().map(|(_, old)| old.clone()).unwrap_or_default();
            if let Some((b, _)) = merged {
                t.add_block(b);
            }
            let (gone, kept): (Vec<Arc<Block>>, Vec<Arc<Block>>) = std::mem::take(&mut t.blocks)
                .into_iter()
                .partition(|b| expired.contains(&b.reference.seq) || replaced.contains(&b.reference.seq));
            t.blocks = kept;
            obsolete.extend(gone.into_iter().map(|b| b.file.path().to_path_buf()));
            if !expired.is_empty() {
                tracing::info!(tenant = %t.name, blocks = expired.len(), "retention removed blocks");
            }
        }
        for path in obsolete {
            // A reader holding the block keeps its open file; the name goes now.
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an obsolete block");
            }
        }
        metrics::histogram!("strata_tsdb_checkpoint_seconds").record(started.elapsed().as_secs_f64());
        self.publish_sizes();
        Ok(())
    }

    /// Writes the samples of one head range into a block. `None` when the range holds no sample.
    fn cut_range(&self, t: &Tenant, range: i64, reference: BlockRef) -> Result<Option<Arc<Block>>, Error> {
        let started = Instant::now();
        std::fs::create_dir_all(&t.dir).map_err(|source| Error::Io { path: t.dir.clone(), source })?;
        let path = t.dir.join(&reference.file);
        let mut w = BlockWriter::create(&path)?;
        let mut series = Vec::new();
        for (id, s) in t.head.iter() {
            let samples = s.range(range, range + BLOCK_RANGE_MS - 1);
            if samples.is_empty() {
                continue;
            }
            w.add(&t.index.labels(id), &samples)?;
            series.push(id);
        }
        let stats = w.finish()?;
        if series.is_empty() {
            let _ = std::fs::remove_file(&path);
            return Ok(None);
        }
        let (file, entries) = BlockFile::open(&path)?;
        let series = series.into_iter().zip(entries.into_iter().map(|(_, e)| e)).collect();
        metrics::histogram!("strata_tsdb_compaction_seconds", "kind" => "cut").record(started.elapsed().as_secs_f64());
        tracing::debug!(tenant = %t.name, range, samples = stats.samples, series = stats.series, "cut a block from the head");
        Ok(Some(Arc::new(Block { file, reference, series })))
    }

    /// Merges the blocks of the oldest settled day with more than one block: a day no head range
    /// touches (after this checkpoint's cuts) and that the out-of-order window has closed. Returns
    /// the new block and the sequences of the blocks it replaces.
    fn merge_day(&self, t: &Tenant, cut_now: &[i64], expired: &[u64], seq: &mut u64) -> Result<Option<Merged>, Error> {
        let in_head = |day: i64| t.head_offsets.keys().any(|&r| !cut_now.contains(&r) && r >= day && r < day + DAY_MS);
        let mut days: BTreeMap<i64, Vec<&Arc<Block>>> = BTreeMap::new();
        for b in t.blocks.iter().filter(|b| !expired.contains(&b.reference.seq)) {
            let (start, end) = b.reference.cover;
            let day = start.div_euclid(DAY_MS) * DAY_MS;
            if end <= day + DAY_MS {
                days.entry(day).or_default().push(b);
            }
        }
        let Some((&day, inputs)) = days.iter().find(|(day, blocks)| {
            blocks.len() > 1 && !in_head(**day) && **day + DAY_MS + self.cfg.ooo_window_ms <= t.max_t
        }) else {
            return Ok(None);
        };
        let started = Instant::now();
        *seq += 1;
        let mut cut = BTreeMap::new();
        for b in inputs {
            for (&p, &o) in &b.reference.cut {
                let c: &mut u64 = cut.entry(p).or_default();
                *c = (*c).max(o);
            }
        }
        let reference = BlockRef { file: format!("{:016x}.block", *seq), seq: *seq, cover: (day, day + DAY_MS), cut };
        let path = t.dir.join(&reference.file);
        let mut w = BlockWriter::create(&path)?;
        let ids: BTreeSet<SeriesId> = inputs.iter().flat_map(|b| b.series.iter().map(|s| s.0)).collect();
        let mut series = Vec::with_capacity(ids.len());
        for id in ids {
            let mut runs = Vec::new();
            for b in inputs {
                if let Some(e) = b.entry(id) {
                    runs.push(b.file.read(e)?);
                }
            }
            let samples = merge_runs(runs);
            w.add(&t.index.labels(id), &samples)?;
            series.push(id);
        }
        let stats = w.finish()?;
        let (file, entries) = BlockFile::open(&path)?;
        let series = series.into_iter().zip(entries.into_iter().map(|(_, e)| e)).collect();
        metrics::histogram!("strata_tsdb_compaction_seconds", "kind" => "merge")
            .record(started.elapsed().as_secs_f64());
        tracing::info!(tenant = %t.name, day, blocks = inputs.len(), samples = stats.samples, "merged a day's blocks");
        let replaced = inputs.iter().map(|b| b.reference.seq).collect();
        Ok(Some((Arc::new(Block { file, reference, series }), replaced)))
    }

    /// Sets the size gauges of every tenant.
    fn publish_sizes(&self) {
        let tenants: Vec<Arc<RwLock<Tenant>>> = self.tenants.read().expect("store lock").values().cloned().collect();
        for t in tenants {
            let t = t.read().expect("tenant lock");
            let tenant = t.name.clone();
            let (mut active, mut head_bytes, mut head_samples) = (0usize, 0usize, 0usize);
            for (_, s) in t.head.iter() {
                if !s.is_empty() {
                    active += 1;
                    head_bytes += s.bytes();
                    head_samples += s.len();
                }
            }
            let block_bytes: u64 = t.blocks.iter().map(|b| b.file.stats.bytes).sum();
            let block_samples: u64 = t.blocks.iter().map(|b| b.file.stats.samples).sum();
            metrics::gauge!("strata_tsdb_active_series", "tenant" => tenant.clone()).set(active as f64);
            metrics::gauge!("strata_tsdb_head_bytes", "tenant" => tenant.clone()).set(head_bytes as f64);
            metrics::gauge!("strata_tsdb_head_samples", "tenant" => tenant.clone()).set(head_samples as f64);
            metrics::gauge!("strata_tsdb_series", "tenant" => tenant.clone()).set(t.index.len() as f64);
            metrics::gauge!("strata_tsdb_blocks", "tenant" => tenant.clone()).set(t.blocks.len() as f64);
            metrics::gauge!("strata_tsdb_block_bytes", "tenant" => tenant.clone()).set(block_bytes as f64);
            metrics::gauge!("strata_tsdb_block_samples", "tenant" => tenant).set(block_samples as f64);
        }
    }
}

/// Feeds the store from the `metrics` topic (consumer group `tsdb`), and checkpoints it. A
/// `TopicSink`: the runtime decodes each record's batch header and symbols (and skips and counts
/// the ones that do not decode), so it runs as `Typed::new(TsdbSink::new(..))`.
pub struct TsdbSink {
    store: Arc<Store>,
    last_checkpoint: Instant,
    /// Reused for every batch: its series' fingerprints and the ids already known.
    fingerprints: Vec<u64>,
    ids: Vec<SeriesId>,
}

impl TsdbSink {
    pub const GROUP: &'static str = "tsdb";

    pub fn new(store: Arc<Store>) -> TsdbSink {
        TsdbSink { store, last_checkpoint: Instant::now(), fingerprints: Vec::new(), ids: Vec::new() }
    }

    fn checkpoint(&mut self, positions: &Positions) -> Result<(), SinkError> {
        self.store.checkpoint(positions).map_err(|e| SinkError::Corrupt {
            path: self.store.cfg.dir.join(manifest::FILE_NAME),
            reason: format!("checkpoint failed: {e}"),
        })?;
        self.last_checkpoint = Instant::now();
        Ok(())
    }
}

#[strata_pipeline::async_trait]
impl TopicSink for TsdbSink {
    type Topic = Metrics;

    fn group(&self) -> &str {
        Self::GROUP
    }

    async fn committed(&mut self) -> Result<Positions, SinkError> {
        self.store.open().map_err(|e| SinkError::Corrupt { path: self.store.cfg.dir.clone(), reason: e.to_string() })
    }

    async fn write<'r>(&mut self, partition: u32, records: &[Decoded<'r, Metrics>]) -> Result<(), SinkError> {
        let mut appended: HashMap<&str, u64> = HashMap::new();
        let mut rejected: HashMap<(&str, &'static str), u64> = HashMap::new();
        let mut skipped = 0u64;
        let mut current: Option<(&str, Arc<RwLock<Tenant>>)> = None;
        for d in records {
            let (r, batch, tenant) = (d.stored, &d.record, d.tenant());
            if current.as_ref().is_none_or(|(name, _)| *name != tenant) {
                current = Some((tenant, self.store.tenant_or_create(tenant)));
            }
            let t = &current.as_ref().expect("set above").1;
            let mut t = t.write().expect("tenant lock");
            t.last_append = Instant::now();
            batch.fingerprints(&mut self.fingerprints);
            t.index.warm(&self.fingerprints, &mut self.ids);
            t.head.warm(&self.ids);
            let (mut n_appended, mut n_skipped) = (0u64, 0u64);
            let mut n_rejected: Vec<&'static str> = Vec::new();
            let applied = batch.for_each_series(|fingerprint, labels, samples| {
                let mut id = None;
                for (ts, v) in samples {
                    if t.in_blocks(partition, r.offset, ts) {
                        n_skipped += 1;
                        continue;
                    }
                    let id = *id.get_or_insert_with(|| t.index.get_or_insert_fingerprinted(fingerprint, labels));
                    match self.store.append_id(&mut t, id, ts, v, partition, r.offset) {
                        Ok(()) => n_appended += 1,
                        Err(e) => n_rejected.push(e.reason()),
                    }
                }
            });
            // Damage past the symbol table shows only when the series are walked, here.
            if let Err(e) = applied {
                tracing::warn!(tenant, partition, offset = r.offset, error = %e, "undecodable metric record");
                *rejected.entry((tenant, "undecodable")).or_default() += 1;
                continue;
            }
            *appended.entry(tenant).or_default() += n_appended;
            skipped += n_skipped;
            for reason in n_rejected {
                *rejected.entry((tenant, reason)).or_default() += 1;
            }
        }
        for (tenant, n) in appended {
            metrics::counter!("strata_tsdb_samples_appended_total", "tenant" => tenant.to_string()).increment(n);
        }
        for ((tenant, reason), n) in rejected {
            metrics::counter!("strata_tsdb_samples_rejected_total", "tenant" => tenant.to_string(), "reason" => reason)
                .increment(n);
        }
        if skipped > 0 {
            metrics::counter!("strata_tsdb_samples_replay_skipped_total").increment(skipped);
        }
        Ok(())
    }

    async fn commit(&mut self, positions: &Positions) -> Result<(), SinkError> {
        if self.last_checkpoint.elapsed().as_millis() as u64 >= self.store.cfg.checkpoint_interval_ms {
            self.checkpoint(positions)?;
        }
        Ok(())
    }

    async fn stop(&mut self, positions: &Positions) -> Result<(), SinkError> {
        self.checkpoint(positions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn tenants_are_apart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(TsdbConfig::new(dir.path()));
        store.append("a", ls(&[("__name__", "up"), ("job", "x")]), 1000, 1.0).unwrap();
        store.append("a", ls(&[("__name__", "up"), ("job", "y")]), 1000, 1.0).unwrap();
        store.append("a", ls(&[("job", "x"), ("__name__", "up")]), 2000, 2.0).unwrap();
        store.append("b", ls(&[("__name__", "other")]), 1000, 1.0).unwrap();
        assert_eq!(store.series("a", &[], 0, 5000).len(), 2);
        assert_eq!(store.label_values("a", "__name__", &[], 0, 5000), ["up"]);
        assert_eq!(store.label_values("b", "__name__", &[], 0, 5000), ["other"]);
        assert!(store.series("a", &[], 3000, 5000).is_empty(), "no sample in range");
        assert_eq!(store.samples("a", &ls(&[("__name__", "up"), ("job", "x")]), 0, 5000), [(1000, 1.0), (2000, 2.0)]);
    }

    #[test]
    fn reads_stop_at_the_sample_limit_in_blocks_and_head() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(TsdbConfig::new(dir.path()));
        store.open().unwrap();
        // Two series, 240 samples each in the first 2-hour range, then one far enough ahead
        // that the range is cut into a block.
        for job in ["x", "y"] {
            for i in 0..240 {
                store.append("a", ls(&[("__name__", "up"), ("job", job)]), i * 30_000, 1.0).unwrap();
            }
        }
        store.append("a", ls(&[("__name__", "up"), ("job", "x")]), 4 * BLOCK_RANGE_MS, 2.0).unwrap();
        store.checkpoint(&Positions::new()).unwrap();
        let blocks = store.tenant("a").unwrap().read().unwrap().blocks.len();
        assert_eq!(blocks, 1, "the first range is cut into a block");
        let up = [Matcher::Equal("__name__".into(), "up".into())];
        let read = |max| store.select("a", &up, 0, i64::MAX, 10, max);
        assert_eq!(read(481).unwrap().iter().map(|s| s.samples.len()).sum::<usize>(), 481);
        assert_eq!(read(480).unwrap_err(), SelectError::TooManySamples { max: 480 });
        assert_eq!(read(239).unwrap_err(), SelectError::TooManySamples { max: 239 });
        // From the head alone.
        assert_eq!(
            store.select("a", &up, 4 * BLOCK_RANGE_MS, i64::MAX, 10, 0).unwrap_err(),
            SelectError::TooManySamples { max: 0 }
        );
        assert_eq!(store.select("a", &up, 4 * BLOCK_RANGE_MS, i64::MAX, 10, 1).unwrap().len(), 1);
    }

    #[test]
    fn later_runs_win_on_equal_timestamps() {
        let merged = merge_runs(vec![vec![(1, 1.0), (2, 2.0)], vec![(2, 20.0), (3, 30.0)], vec![(1, 10.0)]]);
        assert_eq!(merged, [(1, 10.0), (2, 20.0), (3, 30.0)]);
    }
}
