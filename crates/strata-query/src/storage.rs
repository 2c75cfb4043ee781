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
