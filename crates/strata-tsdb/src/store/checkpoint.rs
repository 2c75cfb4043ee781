//! Checkpoints: cut the head ranges the out-of-order window has closed into blocks, merge a
//! settled day's blocks into one, drop blocks past retention, and publish all of it in one
//! manifest with the positions a replay starts from; and the size gauges of every tenant.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use strata_pipeline::Positions;

use super::querier::merge_runs;
use super::{Block, DAY_MS, Error, Store, Tenant};
use crate::block::{BlockFile, BlockWriter};
use crate::head::BLOCK_RANGE_MS;
use crate::index::SeriesId;
use crate::manifest::{self, BlockRef};

/// A block merged from others, and the sequences of the blocks it replaces.
type Merged = (Arc<Block>, Vec<u64>);

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Store {
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
                let cut: BTreeMap<u32, u64> = positions
                    .iter()
                    .filter(|((topic, _), _)| topic == self.cfg.topic)
                    .map(|((_, p), &o)| (*p, o))
                    .collect();
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
                    if let Some(pos) = replay.get_mut(&(self.cfg.topic.to_string(), p)) {
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
            let gone = t.remove_blocks(|b| expired.contains(&b.reference.seq) || replaced.contains(&b.reference.seq));
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
    pub(super) fn publish_sizes(&self) {
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
