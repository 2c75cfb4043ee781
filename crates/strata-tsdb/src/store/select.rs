//! The read path: series, label names and values, and samples of the series that matchers
//! select, each read from the blocks and the head and merged by timestamp, newest write winning;
//! and the counts of what a tenant stores.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Block, SelectError, SeriesData, Store, Tenant};
use crate::index::{LabelSet, Matcher, SeriesId};

type Samples = Vec<(i64, f64)>;

impl Tenant {
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

/// Merges sample runs given oldest first: on equal timestamps the later run wins.
pub(super) fn merge_runs(runs: Vec<Vec<(i64, f64)>>) -> Vec<(i64, f64)> {
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
}

#[cfg(test)]
mod tests {
    use strata_pipeline::Positions;

    use super::*;
    use crate::head::BLOCK_RANGE_MS;
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
