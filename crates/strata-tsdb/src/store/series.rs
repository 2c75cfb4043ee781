//! Series, label names and values of the series that selectors pick (the series and labels
//! endpoints), and the counts of what a tenant stores. Samples are read by `querier.rs`.

use std::collections::BTreeSet;

use super::{Store, Tenant};
use crate::index::{LabelSet, Matcher, SeriesId};

impl Tenant {
    fn has_data(&self, id: SeriesId, from_ms: i64, to_ms: i64) -> bool {
        super::querier::has_data(&self.head, &self.blocks, id, from_ms, to_ms)
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

impl Store {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TsdbConfig;

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
        assert_eq!(store.label_names("b", &[], 0, 5000), ["__name__"]);
        assert!(store.series("a", &[], 3000, 5000).is_empty(), "no sample in range");
        assert!(store.series("c", &[], 0, 5000).is_empty(), "an unknown tenant has nothing");
    }
}
