//! `TsdbSink`: the `TopicSink` that feeds the store from the `metrics` topic, batch by batch, and
//! checkpoints it on commit and stop.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use strata_model::topic::{Metrics, Rollups, Topic};
use strata_model::{MetricBatch, SeriesRegistry};
use strata_pipeline::{Decoded, Positions, SinkError, TopicSink};

use super::{Store, Tenant};
use crate::head::Appended;
use crate::index::SeriesId;
use crate::manifest;

/// What became of the samples of one record.
#[derive(Default)]
struct Applied {
    /// Taken: a timestamp the series did not have, or a new value at one it had.
    appended: u64,
    /// Equal to the sample the series holds at that timestamp: taken, nothing changed.
    unchanged: u64,
    /// In a deduplication interval the series already holds a sample in: dropped.
    deduplicated: u64,
    /// Already in a block cut from the head (a replay of the log).
    skipped: u64,
    /// Refused, counted by reason (a handful of reasons: looked up by a scan, not a hash, since a
    /// replay refuses millions of samples as too old).
    rejected: Vec<(&'static str, u64)>,
}

impl Applied {
    fn count(&mut self, appended: Result<Appended, super::Reject>) {
        match appended {
            Ok(Appended::Unchanged) => self.unchanged += 1,
            Ok(Appended::Deduplicated) => self.deduplicated += 1,
            Ok(Appended::Added | Appended::Replaced) => self.appended += 1,
            Err(e) => {
                let reason = e.reason();
                match self.rejected.iter_mut().find(|(r, _)| *r == reason) {
                    Some((_, n)) => *n += 1,
                    None => self.rejected.push((reason, 1)),
                }
            }
        }
    }
}

/// A topic of metric batches a store can be fed from: `metrics` (consumer group `tsdb`) or
/// `rollups` (the rollup store, group `tsdb-rollups`).
pub trait MetricTopic: Topic {
    const GROUP: &'static str;
    fn batch<'a, 'r: 'a>(record: &'a Self::Record<'r>) -> &'a MetricBatch<'r>;
}

impl MetricTopic for Metrics {
    const GROUP: &'static str = "tsdb";
    fn batch<'a, 'r: 'a>(record: &'a MetricBatch<'r>) -> &'a MetricBatch<'r> {
        record
    }
}

impl MetricTopic for Rollups {
    const GROUP: &'static str = "tsdb-rollups";
    fn batch<'a, 'r: 'a>(record: &'a MetricBatch<'r>) -> &'a MetricBatch<'r> {
        record
    }
}

/// Feeds the store from a topic of metric batches (`metrics` by default), and checkpoints it. A
/// `TopicSink`: the runtime decodes each record's batch header and symbols (and skips and counts
/// the ones that do not decode), so it runs as `Typed::new(TsdbSink::new(..))`.
pub struct TsdbSink<T: MetricTopic = Metrics> {
    topic: std::marker::PhantomData<T>,
    store: Arc<Store>,
    /// Resolves the series numbers of version 3 batches.
    registry: Arc<SeriesRegistry>,
    last_checkpoint: Instant,
    /// Reused for every batch: its series' fingerprints and the ids already known.
    fingerprints: Vec<u64>,
    ids: Vec<SeriesId>,
}

impl TsdbSink<Metrics> {
    pub const GROUP: &'static str = Metrics::GROUP;

    /// The metric store's sink, fed from `metrics`.
    pub fn new(store: Arc<Store>, registry: Arc<SeriesRegistry>) -> TsdbSink<Metrics> {
        TsdbSink::for_topic(store, registry)
    }
}

impl<T: MetricTopic> TsdbSink<T> {
    /// The sink of `store` fed from `T`, the topic the store is configured with.
    pub fn for_topic(store: Arc<Store>, registry: Arc<SeriesRegistry>) -> TsdbSink<T> {
        debug_assert_eq!(store.cfg.topic, T::SPEC.name, "a store is fed from the topic it is configured with");
        TsdbSink {
            topic: std::marker::PhantomData,
            store,
            registry,
            last_checkpoint: Instant::now(),
            fingerprints: Vec::new(),
            ids: Vec::new(),
        }
    }

    /// Applies a version 3 batch: each number maps to the tenant's series through `t.refs`, and a
    /// number seen for the first time is resolved through the registry. Returns what became of
    /// the samples, or the first number the tenant has no series for (nothing is applied then).
    fn apply_refs(
        &mut self,
        t: &mut Tenant,
        tenant: &str,
        partition: u32,
        offset: u64,
        batch: &MetricBatch<'_>,
        refs: &[u64],
    ) -> Result<Applied, u64> {
        let unknown = refs.iter().any(|r| !t.refs.contains_key(r));
        let view = unknown.then(|| self.registry.read());
        if let Some(view) = &view
            && let Some(&bad) = refs.iter().find(|&&r| !t.refs.contains_key(&r) && !view.contains(tenant, r))
        {
            return Err(bad);
        }
        self.ids.clear();
        self.ids.extend(refs.iter().filter_map(|r| t.refs.get(r).copied()));
        t.head.warm(&self.ids);
        let mut n = Applied::default();
        let mut labels = Vec::new();
        let walked = batch.for_each_ref(|r, samples| {
            let mut id = None;
            for (ts, v) in samples {
                if t.in_blocks(partition, offset, ts) {
                    n.skipped += 1;
                    continue;
                }
                let id = *id.get_or_insert_with(|| match t.refs.get(&r) {
                    Some(&id) => id,
                    None => {
                        let view = view.as_ref().expect("a view is taken when a number is new");
                        let fp = view.resolve(tenant, r, &mut labels).expect("every number was checked");
                        let id = t.index.get_or_insert_fingerprinted(fp, &labels);
                        t.refs.insert(r, id);
                        id
                    }
                });
                n.count(self.store.append_id(t, id, ts, v, partition, offset));
            }
        });
        debug_assert!(walked.is_ok(), "refs() was Some");
        Ok(n)
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

/// What one `write` did, by tenant, published as counters once at its end.
#[derive(Default)]
struct Tally<'a> {
    appended: HashMap<&'a str, u64>,
    unchanged: HashMap<&'a str, u64>,
    deduplicated: HashMap<&'a str, u64>,
    rejected: HashMap<(&'a str, &'static str), u64>,
    skipped: u64,
}

impl<'a> Tally<'a> {
    fn add(&mut self, tenant: &'a str, n: Applied) {
        *self.appended.entry(tenant).or_default() += n.appended;
        *self.unchanged.entry(tenant).or_default() += n.unchanged;
        *self.deduplicated.entry(tenant).or_default() += n.deduplicated;
        self.skipped += n.skipped;
        for (reason, count) in n.rejected {
            *self.rejected.entry((tenant, reason)).or_default() += count;
        }
    }

    fn publish(self) {
        for (tenant, n) in self.appended {
            metrics::counter!("strata_tsdb_samples_appended_total", "tenant" => tenant.to_string()).increment(n);
        }
        for (tenant, n) in self.unchanged {
            if n > 0 {
                metrics::counter!("strata_tsdb_samples_unchanged_total", "tenant" => tenant.to_string()).increment(n);
            }
        }
        for (tenant, n) in self.deduplicated {
            if n > 0 {
                metrics::counter!("strata_tsdb_samples_deduplicated_total", "tenant" => tenant.to_string())
                    .increment(n);
            }
        }
        for ((tenant, reason), n) in self.rejected {
            metrics::counter!("strata_tsdb_samples_rejected_total", "tenant" => tenant.to_string(), "reason" => reason)
                .increment(n);
        }
        if self.skipped > 0 {
            metrics::counter!("strata_tsdb_samples_replay_skipped_total").increment(self.skipped);
        }
    }
}

#[strata_pipeline::async_trait]
impl<T: MetricTopic> TopicSink for TsdbSink<T> {
    type Topic = T;

    fn group(&self) -> &str {
        T::GROUP
    }

    async fn committed(&mut self) -> Result<Positions, SinkError> {
        self.store.open().map_err(|e| SinkError::Corrupt { path: self.store.cfg.dir.clone(), reason: e.to_string() })
    }

    async fn write<'r>(&mut self, partition: u32, records: &[Decoded<'r, T>]) -> Result<(), SinkError> {
        let mut tally = Tally::default();
        let mut current: Option<(&str, Arc<RwLock<Tenant>>)> = None;
        for d in records {
            let (r, batch, tenant) = (d.stored, T::batch(&d.record), d.tenant());
            if current.as_ref().is_none_or(|(name, _)| *name != tenant) {
                current = Some((tenant, self.store.tenant_or_create(tenant)));
            }
            let t = &current.as_ref().expect("set above").1;
            let mut t = t.write().expect("tenant lock");
            t.last_append = Instant::now();
            if let Some(refs) = batch.refs() {
                match self.apply_refs(&mut t, tenant, partition, r.offset, batch, refs) {
                    Ok(n) => {
                        tally.add(tenant, n);
                    }
                    Err(bad) => {
                        tracing::warn!(
                            tenant,
                            partition,
                            offset = r.offset,
                            series = bad,
                            "metric record names a series the registry does not have"
                        );
                        *tally.rejected.entry((tenant, "unknown_series")).or_default() += 1;
                    }
                }
                continue;
            }
            batch.fingerprints(&mut self.fingerprints);
            t.index.warm(&self.fingerprints, &mut self.ids);
            t.head.warm(&self.ids);
            let mut n = Applied::default();
            let applied = batch.for_each_series(|fingerprint, labels, samples| {
                let mut id = None;
                for (ts, v) in samples {
                    if t.in_blocks(partition, r.offset, ts) {
                        n.skipped += 1;
                        continue;
                    }
                    let id = *id.get_or_insert_with(|| t.index.get_or_insert_fingerprinted(fingerprint, labels));
                    n.count(self.store.append_id(&mut t, id, ts, v, partition, r.offset));
                }
            });
            // Damage past the symbol table shows only when the series are walked, here.
            if let Err(e) = applied {
                tracing::warn!(tenant, partition, offset = r.offset, error = %e, "undecodable metric record");
                *tally.rejected.entry((tenant, "undecodable")).or_default() += 1;
                continue;
            }
            tally.add(tenant, n);
        }
        tally.publish();
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
