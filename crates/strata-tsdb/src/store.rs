//! Every tenant's series index and head, fed from the `metrics` topic by `TsdbSink`.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use strata_log::StoredRecord;
use strata_model::MetricPoint;
use strata_pipeline::{Positions, Sink, SinkError};

use crate::head::{AppendError, Head};
use crate::index::{LabelSet, Matcher, SeriesIndex};

/// Limits of the metric store.
#[derive(Debug, Clone)]
pub struct TsdbConfig {
    /// How far behind a series' newest sample a late sample may be and still be merged.
    pub ooo_window_ms: i64,
    /// Series one tenant may have; samples of new series past it are rejected.
    pub active_series_max: usize,
}

impl Default for TsdbConfig {
    fn default() -> Self {
        TsdbConfig { ooo_window_ms: 3_600_000, active_series_max: 150_000 }
    }
}

/// Why a sample was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    #[error("tenant has {0} series, its limit")]
    SeriesLimit(usize),
    #[error(transparent)]
    TooOld(#[from] AppendError),
}

impl Reject {
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::SeriesLimit(_) => "series_limit",
            Reject::TooOld(_) => "too_old",
        }
    }
}

#[derive(Default)]
struct TenantData {
    index: SeriesIndex,
    head: Head,
}

/// The metric store of every tenant.
pub struct Store {
    cfg: TsdbConfig,
    tenants: RwLock<HashMap<String, TenantData>>,
}

impl Store {
    pub fn new(cfg: TsdbConfig) -> Store {
        Store { cfg, tenants: RwLock::new(HashMap::new()) }
    }

    /// Adds one sample of the series `labels` (with `__name__`).
    pub fn append(&self, tenant: &str, labels: LabelSet, timestamp_ms: i64, value: f64) -> Result<(), Reject> {
        let mut tenants = self.tenants.write().expect("store lock");
        let t = tenants.entry(tenant.to_string()).or_default();
        let id = match t.index.get(&labels) {
            Some(id) => id,
            None if t.index.len() >= self.cfg.active_series_max => return Err(Reject::SeriesLimit(t.index.len())),
            None => t.index.get_or_insert(labels).0,
        };
        t.head.append(id, timestamp_ms, value, self.cfg.ooo_window_ms)?;
        Ok(())
    }

    /// Series of `tenant` matching any of `selectors` (each a list of matchers that must all
    /// hold) with a sample in `[from_ms, to_ms]`.
    pub fn series(&self, tenant: &str, selectors: &[Vec<Matcher>], from_ms: i64, to_ms: i64) -> Vec<LabelSet> {
        let tenants = self.tenants.read().expect("store lock");
        let Some(t) = tenants.get(tenant) else { return Vec::new() };
        let ids = matching(t, selectors, from_ms, to_ms);
        let mut out: Vec<LabelSet> = ids.into_iter().map(|id| t.index.labels(id).clone()).collect();
        out.sort();
        out
    }

    /// Label names of the matching series (all series when `selectors` is empty).
    pub fn label_names(&self, tenant: &str, selectors: &[Vec<Matcher>], from_ms: i64, to_ms: i64) -> Vec<String> {
        let tenants = self.tenants.read().expect("store lock");
        let Some(t) = tenants.get(tenant) else { return Vec::new() };
        t.index.label_names(&matching(t, selectors, from_ms, to_ms)).into_iter().collect()
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
        let tenants = self.tenants.read().expect("store lock");
        let Some(t) = tenants.get(tenant) else { return Vec::new() };
        t.index.label_values(name, &matching(t, selectors, from_ms, to_ms)).into_iter().collect()
    }

    /// Samples of one series in `[from_ms, to_ms]`.
    pub fn samples(&self, tenant: &str, labels: &LabelSet, from_ms: i64, to_ms: i64) -> Vec<(i64, f64)> {
        let tenants = self.tenants.read().expect("store lock");
        let Some(t) = tenants.get(tenant) else { return Vec::new() };
        let Some(id) = t.index.get(labels) else { return Vec::new() };
        t.head.series(id).map(|s| s.range(from_ms, to_ms).to_vec()).unwrap_or_default()
    }

    pub fn series_count(&self, tenant: &str) -> usize {
        self.tenants.read().expect("store lock").get(tenant).map_or(0, |t| t.index.len())
    }
}

fn matching(t: &TenantData, selectors: &[Vec<Matcher>], from_ms: i64, to_ms: i64) -> BTreeSet<u32> {
    let mut ids = BTreeSet::new();
    if selectors.is_empty() {
        ids.extend(0..t.index.len() as u32);
    }
    for sel in selectors {
        ids.extend(t.index.select(sel));
    }
    ids.retain(|&id| t.head.series(id).is_some_and(|s| !s.range(from_ms, to_ms).is_empty()));
    ids
}

/// Feeds the store from the `metrics` topic (consumer group `tsdb`). The store is rebuilt by
/// replaying the topic at start: appends are idempotent (a repeated sample replaces itself), so a
/// replay after a crash neither loses nor duplicates a sample.
pub struct TsdbSink {
    store: Arc<Store>,
}

impl TsdbSink {
    pub const GROUP: &'static str = "tsdb";

    pub fn new(store: Arc<Store>) -> TsdbSink {
        TsdbSink { store }
    }
}

impl Sink for TsdbSink {
    fn group(&self) -> &str {
        Self::GROUP
    }

    fn topics(&self) -> Vec<String> {
        vec!["metrics".to_string()]
    }

    fn committed(&mut self) -> Result<Positions, SinkError> {
        // Nothing is persisted yet: start from the beginning of the topic.
        Ok(Positions::new())
    }

    fn write(&mut self, _topic: &str, _partition: u32, records: &[StoredRecord]) -> Result<(), SinkError> {
        let mut appended: HashMap<&str, u64> = HashMap::new();
        for r in records {
            let Ok(p) = serde_json::from_slice::<MetricPoint>(&r.record.payload) else {
                metrics::counter!("strata_tsdb_samples_rejected_total", "tenant" => r.record.tenant.clone(), "reason" => "undecodable").increment(1);
                continue;
            };
            let mut labels: LabelSet = p.labels.into_iter().collect();
            labels.push(("__name__".to_string(), p.name));
            match self.store.append(&r.record.tenant, labels, p.timestamp_ns.div_euclid(1_000_000), p.value) {
                Ok(()) => *appended.entry(r.record.tenant.as_str()).or_default() += 1,
                Err(e) => {
                    metrics::counter!("strata_tsdb_samples_rejected_total", "tenant" => r.record.tenant.clone(), "reason" => e.reason())
                        .increment(1)
                }
            }
        }
        for (tenant, n) in appended {
            metrics::counter!("strata_tsdb_samples_appended_total", "tenant" => tenant.to_string()).increment(n);
            metrics::gauge!("strata_tsdb_active_series", "tenant" => tenant.to_string())
                .set(self.store.series_count(tenant) as f64);
        }
        Ok(())
    }

    fn commit(&mut self, _positions: &Positions) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn tenants_are_apart_and_series_are_limited() {
        let store = Store::new(TsdbConfig { active_series_max: 2, ..TsdbConfig::default() });
        store.append("a", ls(&[("__name__", "up"), ("job", "x")]), 1000, 1.0).unwrap();
        store.append("a", ls(&[("__name__", "up"), ("job", "y")]), 1000, 1.0).unwrap();
        assert_eq!(store.append("a", ls(&[("__name__", "up"), ("job", "z")]), 1000, 1.0), Err(Reject::SeriesLimit(2)));
        store.append("a", ls(&[("job", "x"), ("__name__", "up")]), 2000, 2.0).unwrap();
        store.append("b", ls(&[("__name__", "other")]), 1000, 1.0).unwrap();
        assert_eq!(store.series("a", &[], 0, 5000).len(), 2);
        assert_eq!(store.label_values("a", "__name__", &[], 0, 5000), ["up"]);
        assert_eq!(store.label_values("b", "__name__", &[], 0, 5000), ["other"]);
        assert!(store.series("a", &[], 3000, 5000).is_empty(), "no sample in range");
        assert_eq!(store.samples("a", &ls(&[("__name__", "up"), ("job", "x")]), 0, 5000), [(1000, 1.0), (2000, 2.0)]);
    }
}
