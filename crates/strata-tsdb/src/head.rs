//! The head: recent samples of every series in memory. Late samples inside the out-of-order window
//! are merged in order; a sample at a timestamp the series already has replaces it (the last
//! written wins), so replaying the log into the head changes nothing.

use crate::index::SeriesId;

/// Why a sample was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("sample at {timestamp_ms} ms is older than the out-of-order window ({window_ms} ms before {newest_ms} ms)")]
    TooOld { timestamp_ms: i64, newest_ms: i64, window_ms: i64 },
}

/// The samples of one series, sorted by timestamp, one per timestamp.
#[derive(Debug, Default, Clone)]
pub struct SeriesSamples {
    samples: Vec<(i64, f64)>,
}

impl SeriesSamples {
    /// Adds a sample; `window_ms` bounds how far behind the newest sample it may be.
    pub fn append(&mut self, timestamp_ms: i64, value: f64, window_ms: i64) -> Result<(), AppendError> {
        match self.samples.last() {
            None => self.samples.push((timestamp_ms, value)),
            Some(&(newest, _)) if timestamp_ms > newest => self.samples.push((timestamp_ms, value)),
            Some(&(newest, _)) => {
                if newest - timestamp_ms > window_ms {
                    return Err(AppendError::TooOld { timestamp_ms, newest_ms: newest, window_ms });
                }
                match self.samples.binary_search_by_key(&timestamp_ms, |s| s.0) {
                    Ok(i) => self.samples[i].1 = value,
                    Err(i) => self.samples.insert(i, (timestamp_ms, value)),
                }
            }
        }
        Ok(())
    }

    /// Samples with `from_ms <= t <= to_ms`.
    pub fn range(&self, from_ms: i64, to_ms: i64) -> &[(i64, f64)] {
        let start = self.samples.partition_point(|s| s.0 < from_ms);
        let end = self.samples.partition_point(|s| s.0 <= to_ms);
        &self.samples[start..end.max(start)]
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// Samples of every series of one tenant, by series id.
#[derive(Debug, Default)]
pub struct Head {
    series: Vec<SeriesSamples>,
}

impl Head {
    pub fn append(&mut self, id: SeriesId, timestamp_ms: i64, value: f64, window_ms: i64) -> Result<(), AppendError> {
        let i = id as usize;
        if self.series.len() <= i {
            self.series.resize_with(i + 1, SeriesSamples::default);
        }
        self.series[i].append(timestamp_ms, value, window_ms)
    }

    pub fn series(&self, id: SeriesId) -> Option<&SeriesSamples> {
        self.series.get(id as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_samples_merge_and_duplicates_keep_the_last() {
        let mut s = SeriesSamples::default();
        for (t, v) in [(1000, 1.0), (3000, 3.0), (2000, 2.0), (3000, 3.5), (500, 0.5)] {
            s.append(t, v, 3_600_000).unwrap();
        }
        assert_eq!(s.range(0, 10_000), [(500, 0.5), (1000, 1.0), (2000, 2.0), (3000, 3.5)]);
        assert_eq!(s.range(1000, 2000), [(1000, 1.0), (2000, 2.0)]);
        assert!(s.range(5000, 1000).is_empty());
        assert_eq!(
            s.append(3000 - 3_600_001, 9.0, 3_600_000),
            Err(AppendError::TooOld { timestamp_ms: 3000 - 3_600_001, newest_ms: 3000, window_ms: 3_600_000 })
        );
    }

    #[test]
    fn replaying_the_same_samples_changes_nothing() {
        let mut h = Head::default();
        let samples = [(0u32, 10, 1.0), (1, 10, 2.0), (0, 20, 3.0), (0, 15, 4.0)];
        for _ in 0..3 {
            for &(id, t, v) in &samples {
                h.append(id, t, v, 1000).unwrap();
            }
        }
        assert_eq!(h.series(0).unwrap().range(0, 100), [(10, 1.0), (15, 4.0), (20, 3.0)]);
        assert_eq!(h.series(1).unwrap().len(), 1);
        assert!(h.series(7).is_none());
    }
}
