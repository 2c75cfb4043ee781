//! The metric store as the engine's [`Storage`]: one tenant of a `strata_tsdb::Store`, read
//! through its `Querier` one series at a time, with a budget of samples read for the whole query.

use std::sync::atomic::{AtomicUsize, Ordering};

use strata_tsdb::{Matcher, ReadLimits, SelectError, Store};

use crate::engine::QueryError;
use crate::storage::{SeriesSet, Storage};
use crate::value::Series;

/// One tenant's series in the metric store, for one query.
pub struct TsdbStorage<'a> {
    store: &'a Store,
    tenant: &'a str,
    samples_max: usize,
    /// Samples read by every `select` so far: the budget is the query's, not one selector's.
    samples_read: AtomicUsize,
}

impl<'a> TsdbStorage<'a> {
    /// The series of `tenant` in `store`, with no limit on the samples read.
    pub fn new(store: &'a Store, tenant: &'a str) -> TsdbStorage<'a> {
        TsdbStorage { store, tenant, samples_max: usize::MAX, samples_read: AtomicUsize::new(0) }
    }

    /// At most `samples_max` samples read by all the `select`s of this storage together; reading
    /// more is `QueryError::TooManySamples`. A sample in a block and again in the head (a late
    /// write) counts twice, as `strata_tsdb::ReadLimits` counts it.
    pub fn with_samples_max(mut self, samples_max: usize) -> TsdbStorage<'a> {
        self.samples_max = samples_max;
        self
    }

    /// Samples read so far by every `select`.
    pub fn samples_read(&self) -> usize {
        self.samples_read.load(Ordering::Relaxed)
    }
}

fn query_error(e: SelectError) -> QueryError {
    match e {
        SelectError::TooManySamples { .. } => QueryError::TooManySamples,
        // No series limit is set; should one be, it is a valid query asking for too much.
        SelectError::TooManySeries { .. } => QueryError::Execution(e.to_string()),
        SelectError::Block(_) => QueryError::Storage(e.to_string()),
    }
}

impl Storage for TsdbStorage<'_> {
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Result<SeriesSet<'_>, QueryError> {
        // The set stops within what is left of the budget now; the total is checked after each
        // series too, since the engine may read two sets in turns (the sides of a binary operator).
        let left = self.samples_max.saturating_sub(self.samples_read());
        let limits = ReadLimits { series_max: usize::MAX, samples_max: left };
        let mut set = self.store.querier(self.tenant, start_ms, end_ms).with_limits(limits).select(matchers);
        let mut counted = 0usize;
        let mut failed = false;
        Ok(Box::new(std::iter::from_fn(move || {
            if failed {
                return None;
            }
            let next = set.next()?;
            let read = set.samples_read();
            let total = self.samples_read.fetch_add(read - counted, Ordering::Relaxed) + (read - counted);
            counted = read;
            let next = match next {
                Ok(_) if total > self.samples_max => Err(QueryError::TooManySamples),
                Ok(s) => Ok(Series { labels: s.labels, points: s.samples }),
                Err(e) => Err(query_error(e)),
            };
            failed = next.is_err();
            Some(next)
        })))
    }
}

#[cfg(test)]
mod tests {
    use strata_tsdb::{LabelSet, STALE_NAN_BITS, TsdbConfig};

    use super::*;
    use crate::storage::MemStorage;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        let mut l: LabelSet = pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        l.sort();
        l
    }

    /// A store that stays in memory (nothing opens or checkpoints it), and the same samples in a
    /// `MemStorage`.
    fn both() -> (Store, MemStorage) {
        let store = Store::new(TsdbConfig::new(std::env::temp_dir().join("strata-query-tsdb-tests-unused")));
        let mut mem = MemStorage::new();
        let stale = f64::from_bits(STALE_NAN_BITS);
        type Samples<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);
        let data: &[Samples] = &[
            (&[("__name__", "up"), ("job", "web"), ("instance", "b")], &[(1_000, 1.0), (2_000, stale), (3_000, 1.0)]),
            (&[("__name__", "up"), ("job", "web"), ("instance", "a")], &[(1_000, 0.0), (5_000, 1.0)]),
            (&[("__name__", "up"), ("job", "db")], &[(4_000, 1.0)]),
            (&[("__name__", "http_requests_total"), ("code", "500")], &[(1_000, 3.0), (2_000, 4.0), (3_000, 7.0)]),
        ];
        for (labels, samples) in data {
            for &(t, v) in *samples {
                store.append("t", ls(labels), t, v).unwrap();
                mem.add(ls(labels), t, v);
            }
        }
        store.append("other", ls(&[("__name__", "up"), ("job", "web")]), 1_000, 9.0).unwrap();
        (store, mem)
    }

    fn read(storage: &dyn Storage, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Vec<(LabelSet, Vec<u64>)> {
        storage
            .select(matchers, start_ms, end_ms)
            .unwrap()
            .map(|s| {
                let s = s.unwrap();
                (s.labels, s.points.iter().flat_map(|&(t, v)| [t as u64, v.to_bits()]).collect())
            })
            .collect()
    }

    #[test]
    fn the_store_gives_what_memory_gives() {
        let (store, mem) = both();
        let tsdb = TsdbStorage::new(&store, "t");
        let eq = |n: &str, v: &str| Matcher::Equal(n.into(), v.into());
        let selectors = [
            vec![eq("__name__", "up")],
            vec![eq("__name__", "up"), eq("job", "web")],
            vec![eq("__name__", "up"), Matcher::NotEqual("instance".into(), "a".into())],
            vec![Matcher::regex("__name__", ".+", false).unwrap()],
            vec![Matcher::regex("__name__", "up|http_.*", false).unwrap(), Matcher::regex("job", "d.*", true).unwrap()],
            vec![eq("__name__", "nothing")],
        ];
        for matchers in &selectors {
            for (start, end) in [(0, 10_000), (2_000, 3_000), (2_001, 2_999), (5_000, 5_000), (6_000, 9_000)] {
                let want = read(&mem, matchers, start, end);
                assert_eq!(read(&tsdb, matchers, start, end), want, "{matchers:?} {start}..{end}");
            }
        }
        // Staleness markers come through bit for bit, and series come sorted.
        let up = read(&tsdb, &selectors[1], 0, 10_000);
        assert_eq!(up[1].1[3], STALE_NAN_BITS);
        assert_eq!(up[0].0, ls(&[("__name__", "up"), ("job", "web"), ("instance", "a")]));
        assert_eq!(read(&TsdbStorage::new(&store, "other"), &selectors[0], 0, 10_000).len(), 1);
    }

    #[test]
    fn the_sample_budget_is_the_querys() {
        let (store, _) = both();
        let up = [Matcher::Equal("__name__".into(), "up".into())];
        let http = [Matcher::Equal("__name__".into(), "http_requests_total".into())];
        // `up` has 6 samples, `http_requests_total` 3.
        let tsdb = TsdbStorage::new(&store, "t").with_samples_max(8);
        assert_eq!(tsdb.select(&up, 0, 10_000).unwrap().count(), 3);
        assert_eq!(tsdb.samples_read(), 6);
        let mut second = tsdb.select(&http, 0, 10_000).unwrap();
        assert_eq!(second.next(), Some(Err(QueryError::TooManySamples)));
        assert!(second.next().is_none(), "an error ends the set");

        // Two sets read in turns share the budget.
        let tsdb = TsdbStorage::new(&store, "t").with_samples_max(8);
        let mut a = tsdb.select(&up, 0, 10_000).unwrap();
        let mut b = tsdb.select(&http, 0, 10_000).unwrap();
        assert!(matches!(a.next(), Some(Ok(_))));
        assert!(matches!(b.next(), Some(Ok(_))));
        let rest: Vec<_> = a.collect();
        assert!(rest.contains(&Err(QueryError::TooManySamples)), "{rest:?}");
    }
}
