//! Where queries read samples from.

use std::collections::BTreeMap;

pub use strata_tsdb::Matcher;

use crate::engine::QueryError;
use crate::value::{Labels, Series};

/// Series one after another, sorted by label set, each with its samples in the asked range.
pub type SeriesSet<'a> = Box<dyn Iterator<Item = Result<Series, QueryError>> + 'a>;

/// A source of series. `select` returns the series matching every matcher that have a sample in
/// `[start_ms, end_ms]`, lazily: the engine takes one series at a time.
pub trait Storage: Sync {
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Result<SeriesSet<'_>, QueryError>;
}

/// Two storages read as one (the metric store and the rollup store): the series of both, in
/// label order; a label set in both has the samples of both, the second's winning a timestamp
/// they share.
pub struct Union<A, B>(pub A, pub B);

impl<A: Storage, B: Storage> Storage for Union<A, B> {
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Result<SeriesSet<'_>, QueryError> {
        let mut a = self.0.select(matchers, start_ms, end_ms)?.peekable();
        let mut b = self.1.select(matchers, start_ms, end_ms)?.peekable();
        Ok(Box::new(std::iter::from_fn(move || {
            let order = match (a.peek(), b.peek()) {
                (None, None) => return None,
                (Some(_), None) | (Some(Err(_)), _) => std::cmp::Ordering::Less,
                (None, Some(_)) | (_, Some(Err(_))) => std::cmp::Ordering::Greater,
                (Some(Ok(x)), Some(Ok(y))) => x.labels.cmp(&y.labels),
            };
            match order {
                std::cmp::Ordering::Less => a.next(),
                std::cmp::Ordering::Greater => b.next(),
                std::cmp::Ordering::Equal => {
                    let (Some(Ok(mut x)), Some(Ok(y))) = (a.next(), b.next()) else { unreachable!("both peeked Ok") };
                    let mut points: BTreeMap<i64, f64> = x.points.into_iter().collect();
                    points.extend(y.points);
                    x.points = points.into_iter().collect();
                    Some(Ok(x))
                }
            }
        })))
    }
}

/// Series held in memory: the conformance tests' store, and a reference for the others.
#[derive(Debug, Default)]
pub struct MemStorage {
    series: BTreeMap<Labels, Vec<(i64, f64)>>,
}

impl MemStorage {
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// Adds a sample; a sample at a timestamp the series already has replaces it.
    pub fn add(&mut self, mut labels: Labels, t: i64, v: f64) {
        labels.sort();
        let points = self.series.entry(labels).or_default();
        match points.binary_search_by_key(&t, |p| p.0) {
            Ok(i) => points[i].1 = v,
            Err(i) => points.insert(i, (t, v)),
        }
    }

    pub fn clear(&mut self) {
        self.series.clear();
    }
}

impl Storage for MemStorage {
    fn select(&self, matchers: &[Matcher], start_ms: i64, end_ms: i64) -> Result<SeriesSet<'_>, QueryError> {
        let matchers = matchers.to_vec();
        Ok(Box::new(self.series.iter().filter_map(move |(labels, points)| {
            let selected = matchers.iter().all(|m| {
                let value = labels.iter().find(|(n, _)| n == m.name()).map_or("", |(_, v)| v.as_str());
                m.matches(value)
            });
            if !selected {
                return None;
            }
            let from = points.partition_point(|p| p.0 < start_ms);
            let to = points.partition_point(|p| p.0 <= end_ms);
            (from < to).then(|| Ok(Series { labels: labels.clone(), points: points[from..to].to_vec() }))
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_union_reads_both_in_label_order() {
        let (mut a, mut b) = (MemStorage::new(), MemStorage::new());
        a.add(labels(&[("__name__", "m"), ("i", "1")]), 10, 1.0);
        a.add(labels(&[("__name__", "m"), ("i", "3")]), 10, 3.0);
        b.add(labels(&[("__name__", "m"), ("i", "2")]), 10, 2.0);
        b.add(labels(&[("__name__", "m"), ("i", "3")]), 20, 4.0);
        let all: Vec<Series> = Union(a, b)
            .select(&[Matcher::Equal("__name__".into(), "m".into())], 0, 100)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let got: Vec<(String, Vec<(i64, f64)>)> = all.into_iter().map(|s| (s.labels[1].1.clone(), s.points)).collect();
        assert_eq!(
            got,
            [("1".into(), vec![(10, 1.0)]), ("2".into(), vec![(10, 2.0)]), ("3".into(), vec![(10, 3.0), (20, 4.0)])]
        );
    }
}
