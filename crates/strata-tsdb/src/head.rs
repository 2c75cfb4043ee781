//! The head: recent samples of every series in memory, as compressed chunks. Late samples inside
//! the out-of-order window are merged in order; a sample at a timestamp the series already has
//! replaces it (the last written wins), so replaying the log into the head changes nothing.
//!
//! Each series keeps sealed chunks and one open chunk, sorted and disjoint in time, and never
//! spanning two block ranges, so that cutting a block takes whole chunks. In-order samples are
//! appended to the open chunk's bit stream; a late one decodes the one chunk it falls into, merges
//! and encodes it again.

use crate::chunk::{Chunk, ChunkAppender, ChunkPos, encode};
use crate::index::SeriesId;

/// The time range of a block cut from the head: 2 hours, aligned to the Unix epoch.
pub const BLOCK_RANGE_MS: i64 = 2 * 3600 * 1000;

/// Samples in a chunk before it is sealed: 30 minutes at a 15 s interval, as Prometheus does.
pub const CHUNK_SAMPLES_MAX: u32 = 120;

/// The start of the block range holding `ts`.
pub fn range_start(ts: i64) -> i64 {
    ts.div_euclid(BLOCK_RANGE_MS).saturating_mul(BLOCK_RANGE_MS)
}

/// What an append did with a sample it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// A timestamp the series did not have.
    Added,
    /// A timestamp the series had, with another value: the new value replaced it.
    Replaced,
    /// The series already held the same value at that timestamp (a replay, a retry, the other
    /// replica of a pair): nothing changed, and no chunk was decoded or written again.
    Unchanged,
    /// The series already held a sample in the sample's deduplication interval: it was dropped.
    Deduplicated,
}

/// Why a sample was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("sample at {timestamp_ms} ms is older than the out-of-order window ({window_ms} ms before {newest_ms} ms)")]
    TooOld { timestamp_ms: i64, newest_ms: i64, window_ms: i64 },
}

#[derive(Debug, Clone)]
struct Sealed {
    min_t: i64,
    max_t: i64,
    count: u32,
    /// A chunk with its header (`chunk::encode`).
    bytes: Box<[u8]>,
}

impl Sealed {
    fn new(samples: &[(i64, f64)]) -> Sealed {
        Sealed {
            min_t: samples.first().expect("a sealed chunk has samples").0,
            max_t: samples.last().expect("a sealed chunk has samples").0,
            count: samples.len() as u32,
            bytes: encode(samples).into_boxed_slice(),
        }
    }

    fn samples(&self) -> Vec<(i64, f64)> {
        Chunk::in_memory(&self.bytes).decode().expect("a chunk this process wrote decodes")
    }

    fn value_at_from(&self, ts: i64, from: &mut ChunkPos) -> Option<f64> {
        if ts < self.min_t || ts > self.max_t {
            return None;
        }
        Chunk::in_memory(&self.bytes).value_at_from(ts, from).expect("a chunk this process wrote decodes")
    }

    fn extend_range(&self, from_ms: i64, to_ms: i64, out: &mut Vec<(i64, f64)>) {
        Chunk::in_memory(&self.bytes).extend_range(from_ms, to_ms, out).expect("a chunk this process wrote decodes")
    }
}

/// Inserts a sample into sorted samples, replacing one at the same timestamp.
fn merge(samples: &mut Vec<(i64, f64)>, ts: i64, v: f64) -> Appended {
    match samples.binary_search_by_key(&ts, |s| s.0) {
        Ok(i) => {
            samples[i].1 = v;
            Appended::Replaced
        }
        Err(i) => {
            samples.insert(i, (ts, v));
            Appended::Added
        }
    }
}

/// The same value, bit for bit (so a stale marker equals only a stale marker).
fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits()
}

/// Where the last lookup of a held sample stopped (`SeriesSamples::held`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeldCursor {
    /// `None` for the open chunk, else the index of a sealed one.
    sealed: Option<usize>,
    pos: ChunkPos,
}

/// The samples of one series in the head.
#[derive(Debug, Clone)]
pub struct SeriesSamples {
    sealed: Vec<Sealed>,
    open: ChunkAppender,
    open_min_t: i64,
    /// The newest timestamp ever appended, kept after the samples are cut into a block: the
    /// out-of-order window is measured from it.
    max_t: i64,
    /// Where the last lookup of a held sample stopped, so that the next one, later in the same
    /// chunk, decodes from there rather than from the chunk's start: a replay or a retry resends
    /// samples in time order. Boxed so that a series never looked up pays one pointer; dropped
    /// whenever a chunk is replaced, moved or cut (`forget_cursor`), so it lives no longer than
    /// its chunk.
    cursor: Option<Box<HeldCursor>>,
}

impl Default for SeriesSamples {
    fn default() -> Self {
        SeriesSamples { sealed: Vec::new(), open: ChunkAppender::new(), open_min_t: 0, max_t: i64::MIN, cursor: None }
    }
}

impl SeriesSamples {
    /// Adds a sample; `window_ms` bounds how far behind the newest sample it may be. With
    /// `dedup_ms` above 0 the series keeps one sample per interval of that length (aligned to the
    /// epoch): the first to arrive; a later one in an interval it holds a sample in is dropped.
    /// Held means the newest sample ever appended or one still in the head: a late sample whose
    /// interval was already cut into a block is taken.
    pub fn append(&mut self, ts: i64, value: f64, window_ms: i64, dedup_ms: i64) -> Result<Appended, AppendError> {
        if self.max_t != i64::MIN && ts < self.max_t.saturating_sub(window_ms) {
            // Too old to merge; but a sample the head still holds with the same value is a resend
            // that changes nothing, not an error.
            if self.held(ts).is_some_and(|v| same(v, value)) {
                return Ok(Appended::Unchanged);
            }
            return Err(AppendError::TooOld { timestamp_ms: ts, newest_ms: self.max_t, window_ms });
        }
        if dedup_ms > 0 && self.max_t != i64::MIN {
            let from = ts - ts.rem_euclid(dedup_ms);
            let to = from.saturating_add(dedup_ms - 1);
            // In order, the newest sample is the only one that can share the interval.
            let taken = if ts > self.max_t { self.max_t >= from } else { !self.range(from, to).is_empty() };
            if taken {
                if self.held(ts).is_some_and(|v| same(v, value)) {
                    return Ok(Appended::Unchanged);
                }
                return Ok(Appended::Deduplicated);
            }
        }
        // The common case, first: the next sample of the open chunk's range. Every sealed chunk
        // ends before the open chunk starts, so they need not be read (a cache miss per sample).
        if !self.open.is_empty() && ts > self.open.last_timestamp() && range_start(ts) == range_start(self.open_min_t) {
            self.max_t = self.max_t.max(ts);
            self.open.append(ts, value);
            if self.open.len() >= CHUNK_SAMPLES_MAX {
                self.seal();
            }
            return Ok(Appended::Added);
        }
        // A sample the series already holds, with the same value, changes nothing: found by
        // decoding one chunk up to its timestamp, and never encoded again.
        if ts <= self.max_t && self.held(ts).is_some_and(|v| same(v, value)) {
            return Ok(Appended::Unchanged);
        }
        // Every path below may replace a chunk or shift the sealed ones.
        self.forget_cursor();
        self.max_t = self.max_t.max(ts);
        let last_sealed_max = self.sealed.last().map_or(i64::MIN, |c| c.max_t);
        let appended = if ts > last_sealed_max {
            if self.open.is_empty() {
                self.open.append(ts, value);
                self.open_min_t = ts;
            } else if range_start(ts) == range_start(self.open_min_t) {
                if ts > self.open.last_timestamp() {
                    self.open.append(ts, value);
                } else {
                    let mut samples = self.open.samples();
                    let appended = merge(&mut samples, ts, value);
                    self.open = ChunkAppender::new();
                    for &(t, v) in &samples {
                        self.open.append(t, v);
                    }
                    self.open_min_t = samples[0].0;
                    if self.open.len() >= CHUNK_SAMPLES_MAX {
                        self.seal();
                    }
                    return Ok(appended);
                }
            } else if ts > self.open.last_timestamp() {
                self.seal();
                self.open.append(ts, value);
                self.open_min_t = ts;
            } else {
                // Later than every sealed chunk, in an earlier range than the open one.
                self.sealed.push(Sealed::new(&[(ts, value)]));
            }
            if self.open.len() >= CHUNK_SAMPLES_MAX {
                self.seal();
            }
            Appended::Added
        } else {
            self.merge_sealed(ts, value)
        };
        Ok(appended)
    }

    /// The value the series holds at `ts`, if any.
    fn held(&mut self, ts: i64) -> Option<f64> {
        let chunk = if !self.open.is_empty() && ts >= self.open_min_t && ts <= self.open.last_timestamp() {
            if ts == self.open.last_timestamp() {
                // The newest sample: what an HA pair's second replica or a retry sends most.
                return Some(self.open.last_value());
            }
            None
        } else {
            // Sealed chunks are sorted and disjoint in time: the last one starting at or before `ts`.
            let i = self.sealed.partition_point(|c| c.min_t <= ts).checked_sub(1)?;
            if ts > self.sealed[i].max_t {
                return None;
            }
            Some(i)
        };
        let cursor =
            self.cursor.get_or_insert_with(|| Box::new(HeldCursor { sealed: chunk, pos: ChunkPos::default() }));
        if cursor.sealed != chunk {
            **cursor = HeldCursor { sealed: chunk, pos: ChunkPos::default() };
        }
        match chunk {
            None => self.open.value_at_from(ts, &mut cursor.pos),
            Some(i) => self.sealed[i].value_at_from(ts, &mut cursor.pos),
        }
    }

    /// Drops the lookup cursor: its chunk is about to change, move or go.
    fn forget_cursor(&mut self) {
        self.cursor = None;
    }

    fn seal(&mut self) {
        if self.open.is_empty() {
            return;
        }
        self.forget_cursor();
        let bytes = self.open.to_chunk().into_boxed_slice();
        let (min_t, max_t, count) = (self.open_min_t, self.open.last_timestamp(), self.open.len());
        self.sealed.push(Sealed { min_t, max_t, count, bytes });
        self.open = ChunkAppender::new();
    }

    /// Merges a sample no later than the newest sealed chunk into the chunk of its range that
    /// covers it, or the nearest one of that range, or a new chunk.
    fn merge_sealed(&mut self, ts: i64, value: f64) -> Appended {
        let range = range_start(ts);
        let in_range = |c: &Sealed| range_start(c.min_t) == range;
        let target = self
            .sealed
            .iter()
            .rposition(|c| in_range(c) && c.min_t <= ts)
            .or_else(|| self.sealed.iter().position(in_range));
        match target {
            Some(i) => {
                let mut samples = self.sealed[i].samples();
                let appended = merge(&mut samples, ts, value);
                self.sealed[i] = Sealed::new(&samples);
                appended
            }
            None => {
                let at = self.sealed.partition_point(|c| c.min_t < ts);
                self.sealed.insert(at, Sealed::new(&[(ts, value)]));
                Appended::Added
            }
        }
    }

    /// Samples with `from_ms <= t <= to_ms`, sorted.
    pub fn range(&self, from_ms: i64, to_ms: i64) -> Vec<(i64, f64)> {
        let meets = |min_t: i64, max_t: i64| max_t >= from_ms && min_t <= to_ms;
        let open = !self.open.is_empty() && meets(self.open_min_t, self.open.last_timestamp());
        let wanted = self.sealed.iter().filter(|c| meets(c.min_t, c.max_t));
        let capacity =
            wanted.clone().map(|c| c.count as usize).sum::<usize>() + if open { self.open.len() as usize } else { 0 };
        let mut out = Vec::with_capacity(capacity);
        for c in wanted {
            c.extend_range(from_ms, to_ms, &mut out);
        }
        if open {
            self.open.extend_range(from_ms, to_ms, &mut out);
        }
        out
    }

    /// Whether the series has a sample in `[from_ms, to_ms]`, judged by chunk bounds.
    pub fn overlaps(&self, from_ms: i64, to_ms: i64) -> bool {
        self.sealed.iter().any(|c| c.max_t >= from_ms && c.min_t <= to_ms)
            || (!self.open.is_empty() && self.open_min_t <= to_ms && self.open.last_timestamp() >= from_ms)
    }

    /// Removes and returns the samples of the block range starting at `range`, sorted.
    pub fn take_range(&mut self, range: i64) -> Vec<(i64, f64)> {
        self.forget_cursor();
        let mut out = Vec::new();
        let mut kept = Vec::with_capacity(self.sealed.len());
        for c in self.sealed.drain(..) {
            if range_start(c.min_t) == range {
                out.extend(c.samples());
            } else {
                kept.push(c);
            }
        }
        self.sealed = kept;
        if !self.open.is_empty() && range_start(self.open_min_t) == range {
            out.extend(self.open.samples());
            self.open = ChunkAppender::new();
        }
        out
    }

    /// The block ranges the series has samples in.
    pub fn ranges(&self) -> impl Iterator<Item = i64> + '_ {
        let open = (!self.open.is_empty()).then(|| range_start(self.open_min_t));
        self.sealed.iter().map(|c| range_start(c.min_t)).chain(open)
    }

    /// The newest timestamp ever appended, `i64::MIN` if none.
    pub fn max_t(&self) -> i64 {
        self.max_t
    }

    pub fn is_empty(&self) -> bool {
        self.sealed.is_empty() && self.open.is_empty()
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.sealed.iter().map(|c| c.count as usize).sum::<usize>() + self.open.len() as usize
    }

    /// Bytes of compressed samples held.
    pub fn bytes(&self) -> usize {
        self.sealed.iter().map(|c| c.bytes.len()).sum::<usize>() + self.open.bytes_len()
    }
}

/// Samples of every series of one tenant, by series id.
#[derive(Debug, Default)]
pub struct Head {
    series: Vec<SeriesSamples>,
}

impl Head {
    pub fn append(
        &mut self,
        id: SeriesId,
        timestamp_ms: i64,
        value: f64,
        window_ms: i64,
        dedup_ms: i64,
    ) -> Result<Appended, AppendError> {
        let i = id as usize;
        if self.series.len() <= i {
            self.series.resize_with(i + 1, SeriesSamples::default);
        }
        self.series[i].append(timestamp_ms, value, window_ms, dedup_ms)
    }

    /// Reads the state of each series, as `SeriesIndex::warm` does, ahead of appending to them.
    pub fn warm(&self, ids: &[SeriesId]) {
        let touched = ids
            .iter()
            .filter_map(|&id| self.series.get(id as usize))
            .fold(0i64, |a, s| a ^ s.max_t ^ i64::from(s.open.last_byte()));
        std::hint::black_box(touched);
    }

    pub fn series(&self, id: SeriesId) -> Option<&SeriesSamples> {
        self.series.get(id as usize)
    }

    /// Every series with its id.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (SeriesId, &mut SeriesSamples)> {
        self.series.iter_mut().enumerate().map(|(i, s)| (i as SeriesId, s))
    }

    pub fn iter(&self) -> impl Iterator<Item = (SeriesId, &SeriesSamples)> {
        self.series.iter().enumerate().map(|(i, s)| (i as SeriesId, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Two senders scraping the same target 5 s apart every 15 s, with a 15 s interval: one
    /// sample per interval is kept, the first, in order and out of order; off, both are kept.
    #[test]
    fn a_dedup_interval_keeps_the_first_sample_of_each_interval() {
        let window = 3_600_000;
        let mut s = SeriesSamples::default();
        let mut kept = Vec::new();
        for i in 0..40i64 {
            let t = 1_500_000_000 + i * 15_000;
            assert_eq!(s.append(t, i as f64, window, 15_000), Ok(Appended::Added));
            // The other replica, 5 s later, in the same interval, with its own value.
            assert_eq!(s.append(t + 5_000, -(i as f64), window, 15_000), Ok(Appended::Deduplicated));
            // A resend of the kept sample changes nothing.
            assert_eq!(s.append(t, i as f64, window, 15_000), Ok(Appended::Unchanged));
            kept.push((t, i as f64));
        }
        assert_eq!(s.range(i64::MIN, i64::MAX), kept);
        // Late, into an interval held in the head: dropped; into an empty one: taken.
        let first = kept[0].0;
        assert_eq!(s.append(first + 20_000, 7.0, window, 15_000), Ok(Appended::Deduplicated));
        assert_eq!(s.append(first - 15_000 + 1, 7.0, window, 15_000), Ok(Appended::Added));
        assert_eq!(s.range(i64::MIN, i64::MAX).len(), kept.len() + 1);
        // Intervals are aligned to the epoch, also before it.
        let mut n = SeriesSamples::default();
        assert_eq!(n.append(-1, 1.0, window, 10), Ok(Appended::Added));
        assert_eq!(n.append(-10, 1.0, window, 10), Ok(Appended::Deduplicated));
        assert_eq!(n.append(0, 1.0, window, 10), Ok(Appended::Added));
        // Without an interval every sample is kept.
        let mut off = SeriesSamples::default();
        for i in 0..10i64 {
            assert_eq!(off.append(i * 5_000, 1.0, window, 0), Ok(Appended::Added));
        }
        assert_eq!(off.range(i64::MIN, i64::MAX).len(), 10);
    }

    #[test]
    fn late_samples_merge_and_duplicates_keep_the_last() {
        let mut s = SeriesSamples::default();
        for (t, v) in [(1000, 1.0), (3000, 3.0), (2000, 2.0), (3000, 3.5), (500, 0.5)] {
            s.append(t, v, 3_600_000, 0).unwrap();
        }
        assert_eq!(s.range(0, 10_000), [(500, 0.5), (1000, 1.0), (2000, 2.0), (3000, 3.5)]);
        assert_eq!(s.range(1000, 2000), [(1000, 1.0), (2000, 2.0)]);
        assert!(s.range(5000, 1000).is_empty());
        assert_eq!(
            s.append(3000 - 3_600_001, 9.0, 3_600_000, 0),
            Err(AppendError::TooOld { timestamp_ms: 3000 - 3_600_001, newest_ms: 3000, window_ms: 3_600_000 })
        );
    }

    #[test]
    fn replaying_the_same_samples_changes_nothing() {
        let mut h = Head::default();
        let samples = [(0u32, 10, 1.0), (1, 10, 2.0), (0, 20, 3.0), (0, 15, 4.0)];
        for _ in 0..3 {
            for &(id, t, v) in &samples {
                h.append(id, t, v, 1000, 0).unwrap();
            }
        }
        assert_eq!(h.series(0).unwrap().range(0, 100), [(10, 1.0), (15, 4.0), (20, 3.0)]);
        assert_eq!(h.series(1).unwrap().range(0, 100).len(), 1);
        assert!(h.series(7).is_none());
    }

    /// A second sender of the same samples (a replay, a retry, the other replica of a pair) finds
    /// each one held already: nothing is decoded past it or encoded again, and each is answered
    /// `Unchanged`; a new value at a held timestamp replaces it.
    #[test]
    fn samples_held_already_change_nothing_and_new_values_replace() {
        let mut s = SeriesSamples::default();
        // Four hours of 15 s samples: sealed chunks in two block ranges, and an open one.
        let samples: Vec<(i64, f64)> = (0..1000).map(|i| (i * 15_000, (i % 7) as f64)).collect();
        for &(t, v) in &samples {
            assert_eq!(s.append(t, v, i64::MAX / 4, 0), Ok(Appended::Added));
        }
        let bytes = s.bytes();
        let sealed: Vec<*const u8> = s.sealed.iter().map(|c| c.bytes.as_ptr()).collect();
        for &(t, v) in &samples {
            assert_eq!(s.append(t, v, i64::MAX / 4, 0), Ok(Appended::Unchanged), "at {t}");
        }
        // Not one chunk was written again.
        assert_eq!(s.bytes(), bytes);
        assert_eq!(s.sealed.iter().map(|c| c.bytes.as_ptr()).collect::<Vec<_>>(), sealed);
        assert_eq!(s.range(0, i64::MAX), samples);
        // Between two held samples is new; a held one with another value is replaced.
        assert_eq!(s.append(7_500, 9.0, i64::MAX / 4, 0), Ok(Appended::Added));
        assert_eq!(s.append(15_000, 9.0, i64::MAX / 4, 0), Ok(Appended::Replaced));
        assert_eq!(s.append(samples[999].0, 9.0, i64::MAX / 4, 0), Ok(Appended::Replaced));
        assert_eq!(s.range(0, 15_000), [(0, 0.0), (7_500, 9.0), (15_000, 9.0)]);
        // A stale marker equals only a stale marker.
        let stale = f64::from_bits(crate::STALE_NAN_BITS);
        assert_eq!(s.append(30_000, stale, i64::MAX / 4, 0), Ok(Appended::Replaced));
        assert_eq!(s.append(30_000, stale, i64::MAX / 4, 0), Ok(Appended::Unchanged));
        assert_eq!(s.append(30_000, f64::NAN, i64::MAX / 4, 0), Ok(Appended::Replaced));
        // Past the out-of-order window, a held sample resent is still no error; a new one is.
        assert_eq!(s.append(45_000, 3.0, 60_000, 0), Ok(Appended::Unchanged));
        assert!(matches!(s.append(45_000, 4.0, 60_000, 0), Err(AppendError::TooOld { .. })));
        assert!(matches!(s.append(45_001, 3.0, 60_000, 0), Err(AppendError::TooOld { .. })));
    }

    #[test]
    fn chunks_never_span_two_block_ranges_and_cutting_takes_one_range() {
        let mut s = SeriesSamples::default();
        let start = 10 * BLOCK_RANGE_MS - 30 * 60_000;
        // An hour of 15 s samples across a range boundary, then a late sample in the first range.
        for i in 0..240 {
            s.append(start + i * 15_000, i as f64, 3_600_000, 0).unwrap();
        }
        s.append(start + 7, -1.0, 3_600_000, 0).unwrap();
        let ranges: std::collections::BTreeSet<i64> = s.ranges().collect();
        assert_eq!(ranges.into_iter().collect::<Vec<_>>(), [9 * BLOCK_RANGE_MS, 10 * BLOCK_RANGE_MS]);
        let first = s.take_range(9 * BLOCK_RANGE_MS);
        assert_eq!(first.len(), 121);
        assert!(first.iter().all(|x| x.0 < 10 * BLOCK_RANGE_MS));
        assert_eq!(s.range(i64::MIN, i64::MAX).len(), 120);
        // The window still counts from the newest sample, even after its range was cut.
        assert_eq!(s.max_t(), start + 239 * 15_000);
    }

    proptest! {
        /// Whatever the order of appends, the head holds what a sorted map with last-write-wins
        /// holds, for samples inside the window.
        #[test]
        fn the_head_is_a_last_write_wins_map(
            appends in proptest::collection::vec((0i64..(3 * BLOCK_RANGE_MS), -5i32..5), 0..400),
        ) {
            let mut s = SeriesSamples::default();
            let mut model = std::collections::BTreeMap::new();
            for (i, &(t, v)) in appends.iter().enumerate() {
                let v = f64::from(v) + i as f64 * 1e-3;
                if s.append(t, v, i64::MAX / 4, 0).is_ok() {
                    model.insert(t, v);
                }
            }
            let expected: Vec<(i64, f64)> = model.into_iter().collect();
            prop_assert_eq!(s.range(i64::MIN, i64::MAX), expected);
        }

        /// Resending held samples between new ones, in order or not: a resent sample with the
        /// value held is `Unchanged`, and the head stays the model's.
        #[test]
        fn resent_samples_are_found_whatever_the_order(
            ops in proptest::collection::vec((any::<bool>(), 0usize..400, 0i64..200), 0..600),
        ) {
            let mut s = SeriesSamples::default();
            let mut model = std::collections::BTreeMap::new();
            for (i, &(resend, pick, jitter)) in ops.iter().enumerate() {
                let held: Vec<(i64, f64)> = model.iter().map(|(t, v)| (*t, *v)).collect();
                if resend && !held.is_empty() {
                    let (t, v) = held[pick % held.len()];
                    prop_assert_eq!(s.append(t, v, i64::MAX / 4, 0), Ok(Appended::Unchanged), "at {}", t);
                } else {
                    // Mostly forward, 15 s apart, sometimes back into an earlier chunk.
                    let t = (i as i64) * 15_000 - jitter * 1_000;
                    let v = i as f64;
                    let want = if model.contains_key(&t) { Appended::Replaced } else { Appended::Added };
                    prop_assert_eq!(s.append(t, v, i64::MAX / 4, 0), Ok(want));
                    model.insert(t, v);
                }
            }
            let expected: Vec<(i64, f64)> = model.into_iter().collect();
            prop_assert_eq!(s.range(i64::MIN, i64::MAX), expected);
        }

        /// The same with the order of a real sender: mostly forward in steady steps, long enough
        /// to seal chunks and cross ranges, now and then back a little or far.
        #[test]
        fn mostly_ordered_appends_keep_last_write_wins(
            steps in proptest::collection::vec((0u8..20, 1i64..40_000), 0..800),
            cut in proptest::option::of(0i64..3),
        ) {
            let mut s = SeriesSamples::default();
            let mut model = std::collections::BTreeMap::new();
            let mut t = BLOCK_RANGE_MS - 300_000;
            for (i, &(kind, step)) in steps.iter().enumerate() {
                t = match kind {
                    0 => t - step,
                    1 => t - 100 * step,
                    2 => t,
                    _ => t + step,
                };
                let v = i as f64;
                if s.append(t, v, i64::MAX / 4, 0).is_ok() {
                    model.insert(t, v);
                }
            }
            if let Some(k) = cut {
                let range = k * BLOCK_RANGE_MS;
                let taken = s.take_range(range);
                let want: Vec<(i64, f64)> =
                    model.iter().filter(|(t, _)| range_start(**t) == range).map(|(t, v)| (*t, *v)).collect();
                prop_assert_eq!(taken, want);
                model.retain(|t, _| range_start(*t) != range);
            }
            let expected: Vec<(i64, f64)> = model.into_iter().collect();
            prop_assert_eq!(s.range(i64::MIN, i64::MAX), expected);
        }
    }
}
