//! The read path of samples. A `Querier` is one tenant and one time range; its `select` picks
//! the series that matchers select and returns a `SeriesSet` that reads each series' samples only
//! when it is reached, as Prometheus's `storage.Querier.Select` does. The native query and PromQL
//! read through it.
//!
//! What a read touches: the blocks whose time range meets the query's are chosen when the querier
//! is made; in those, a series is read only where its own entry meets the range. The head is read
//! under the tenant's read lock for one series at a time and blocks under no lock at all, so a
//! slow query holds ingestion up for no longer than copying one series' recent samples.
//!
//! A checkpoint moves samples from the head into a new block under the tenant's write lock. The
//! set reads a series' head samples and checks that its list of blocks is the tenant's current
//! one under the same read lock (taking the new list if a checkpoint changed it), so it never
//! reads a head that has given samples to a block it does not know about. Blocks it holds stay
//! readable after a checkpoint drops them: the open file outlives its name.

use std::iter::FusedIterator;
use std::sync::{Arc, RwLock};

use super::{Block, SelectError, SeriesData, Store, Tenant};
use crate::head::Head;
use crate::index::{LabelSet, Matcher, SeriesId};

type Samples = Vec<(i64, f64)>;

/// What one `select` may read; asking for more is an error, not an out-of-memory kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Series with a sample in the range that the matchers may select.
    pub series_max: usize,
    /// Samples read from blocks and the head together, counted as they are read. A sample in a
    /// block and again in the head (a late write) counts twice, which errs on the side of the
    /// limit.
    pub samples_max: usize,
}

impl ReadLimits {
    /// No limit at all.
    pub const NONE: ReadLimits = ReadLimits { series_max: usize::MAX, samples_max: usize::MAX };
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits::NONE
    }
}

/// The blocks of a tenant that meet a time range, as of one version of the tenant's list.
#[derive(Clone, Default)]
struct Blocks {
    version: u64,
    /// Sorted by sequence: a later block wins on equal timestamps.
    list: Vec<Arc<Block>>,
}

impl Blocks {
    fn of(t: &Tenant, from_ms: i64, to_ms: i64) -> Blocks {
        let list =
            t.blocks.iter().filter(|b| b.file.stats.max_t >= from_ms && b.file.stats.min_t <= to_ms).cloned().collect();
        Blocks { version: t.blocks_version, list }
    }

    /// Takes the tenant's list again if a checkpoint has changed it.
    fn catch_up(&mut self, t: &Tenant, from_ms: i64, to_ms: i64) {
        if self.version != t.blocks_version {
            *self = Blocks::of(t, from_ms, to_ms);
        }
    }
}

/// Whether series `id` may have a sample in `[from_ms, to_ms]`, judged by the bounds of its head
/// chunks and block entries.
pub(super) fn has_data(head: &Head, blocks: &[Arc<Block>], id: SeriesId, from_ms: i64, to_ms: i64) -> bool {
    head.series(id).is_some_and(|s| s.overlaps(from_ms, to_ms))
        || blocks.iter().any(|b| b.entry(id).is_some_and(|e| e.max_t >= from_ms && e.min_t <= to_ms))
}

/// Merges sample runs given oldest first: on equal timestamps the later run wins.
pub(super) fn merge_runs(runs: Vec<Samples>) -> Samples {
    let mut non_empty: Vec<Samples> = runs.into_iter().filter(|r| !r.is_empty()).collect();
    if non_empty.len() <= 1 {
        return non_empty.pop().unwrap_or_default();
    }
    // The usual case: blocks and the head hold one range after another. Runs that do not overlap
    // are joined in time order, with no sample compared to another.
    let mut order: Vec<usize> = (0..non_empty.len()).collect();
    order.sort_by_key(|&i| non_empty[i][0].0);
    let disjoint = order.windows(2).all(|w| non_empty[w[0]].last().is_none_or(|l| l.0 < non_empty[w[1]][0].0));
    if disjoint {
        let mut out: Samples = Vec::with_capacity(non_empty.iter().map(Vec::len).sum());
        for i in order {
            out.append(&mut non_empty[i]);
        }
        return out;
    }
    let mut all: Vec<(i64, usize, f64)> =
        non_empty.into_iter().enumerate().flat_map(|(i, r)| r.into_iter().map(move |(t, v)| (t, i, v))).collect();
    all.sort_by_key(|s| (s.0, s.1));
    let mut out: Samples = Vec::with_capacity(all.len());
    for (t, _, v) in all {
        match out.last_mut() {
            Some(last) if last.0 == t => last.1 = v,
            _ => out.push((t, v)),
        }
    }
    out
}

/// Reads of one tenant's samples in `[from_ms, to_ms]`, both ends included.
pub struct Querier {
    tenant: Option<Arc<RwLock<Tenant>>>,
    from_ms: i64,
    to_ms: i64,
    blocks: Blocks,
    limits: ReadLimits,
}

impl Store {
    /// A querier over the samples of `tenant` in `[from_ms, to_ms]`, without limits. It holds the
    /// tenant and its blocks that meet the range, not the store.
    pub fn querier(&self, tenant: &str, from_ms: i64, to_ms: i64) -> Querier {
        let tenant = self.tenant(tenant);
        let blocks =
            tenant.as_ref().map(|t| Blocks::of(&t.read().expect("tenant lock"), from_ms, to_ms)).unwrap_or_default();
        Querier { tenant, from_ms, to_ms, blocks, limits: ReadLimits::NONE }
    }
}

impl Querier {
    /// The same querier with these limits on every `select`.
    pub fn with_limits(mut self, limits: ReadLimits) -> Querier {
        self.limits = limits;
        self
    }

    /// The series matching every matcher with a sample in the range, sorted by label set. Which
    /// series is decided now, under the tenant's read lock (without reading a sample); their
    /// samples are read as the set reaches each. More than `series_max` series is an error, the
    /// set's first item.
    pub fn select(&self, matchers: &[Matcher]) -> SeriesSet {
        let mut set = SeriesSet {
            tenant: self.tenant.clone(),
            blocks: self.blocks.clone(),
            from_ms: self.from_ms,
            to_ms: self.to_ms,
            samples_max: self.limits.samples_max,
            samples_read: 0,
            refused: None,
            pending: Vec::new().into_iter(),
        };
        let Some(tenant) = &self.tenant else { return set };
        let mut selected: Vec<(LabelSet, SeriesId)> = {
            let t = tenant.read().expect("tenant lock");
            set.blocks.catch_up(&t, self.from_ms, self.to_ms);
            let mut ids = Vec::new();
            for id in t.index.select(matchers) {
                if !has_data(&t.head, &set.blocks.list, id, self.from_ms, self.to_ms) {
                    continue;
                }
                if ids.len() == self.limits.series_max {
                    set.refused = Some(SelectError::TooManySeries { max: self.limits.series_max });
                    return set;
                }
                ids.push(id);
            }
            ids.into_iter().map(|id| (t.index.labels(id), id)).collect()
        };
        // Label sets are unique within a tenant, so the id never decides.
        selected.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        set.pending = selected.into_iter();
        set
    }
}

/// The series one `Querier::select` picked, sorted by label set, each with its samples in the
/// range (sorted, one per timestamp, staleness markers as stored). A series is read when the set
/// reaches it; one whose chunks meet the range but hold no sample in it is skipped. An error
/// ends the set.
pub struct SeriesSet {
    tenant: Option<Arc<RwLock<Tenant>>>,
    blocks: Blocks,
    from_ms: i64,
    to_ms: i64,
    samples_max: usize,
    samples_read: usize,
    /// Why the selection was refused, given as the first item.
    refused: Option<SelectError>,
    /// The series not read yet, next first.
    pending: std::vec::IntoIter<(LabelSet, SeriesId)>,
}

impl SeriesSet {
    /// Samples read so far, counted as `ReadLimits::samples_max` counts them.
    pub fn samples_read(&self) -> usize {
        self.samples_read
    }

    /// Passes over the series whose label set sorts at or before `labels` without reading them:
    /// where a page after `labels` starts.
    pub fn skip_through(&mut self, labels: &LabelSet) {
        let n = self.pending.as_slice().partition_point(|(l, _)| l <= labels);
        if n > 0 {
            self.pending.nth(n - 1);
        }
    }

    /// The samples of series `id`: its block entries that meet the range, oldest block first,
    /// then the head, merged by timestamp with the later write winning.
    fn read(&mut self, id: SeriesId) -> Result<Samples, SelectError> {
        let Some(tenant) = &self.tenant else { return Ok(Vec::new()) };
        let (from_ms, to_ms) = (self.from_ms, self.to_ms);
        let head = {
            let t = tenant.read().expect("tenant lock");
            self.blocks.catch_up(&t, from_ms, to_ms);
            t.head.series(id).map(|s| s.range(from_ms, to_ms)).unwrap_or_default()
        };
        count(&mut self.samples_read, head.len(), self.samples_max)?;
        let mut runs = Vec::new();
        for b in &self.blocks.list {
            let Some(e) = b.entry(id) else { continue };
            if e.max_t < from_ms || e.min_t > to_ms {
                continue;
            }
            let mut run = b.file.read(e).map_err(|e| SelectError::Block(e.to_string()))?;
            run.retain(|s| s.0 >= from_ms && s.0 <= to_ms);
            count(&mut self.samples_read, run.len(), self.samples_max)?;
            runs.push(run);
        }
        runs.push(head);
        Ok(merge_runs(runs))
    }

    fn end(&mut self) {
        self.pending = Vec::new().into_iter();
    }
}

/// Adds `n` samples to those `read`; passing `max` is an error.
fn count(read: &mut usize, n: usize, max: usize) -> Result<(), SelectError> {
    *read = read.saturating_add(n);
    if *read > max {
        return Err(SelectError::TooManySamples { max });
    }
    Ok(())
}

impl Iterator for SeriesSet {
    type Item = Result<SeriesData, SelectError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.refused.take() {
            self.end();
            return Some(Err(e));
        }
        while let Some((labels, id)) = self.pending.next() {
            match self.read(id) {
                Ok(samples) if samples.is_empty() => continue,
                Ok(samples) => return Some(Ok(SeriesData { labels, samples })),
                Err(e) => {
                    self.end();
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

impl FusedIterator for SeriesSet {}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use strata_pipeline::Positions;

    use super::*;
    use crate::STALE_NAN_BITS;
    use crate::head::BLOCK_RANGE_MS;
    use crate::store::TsdbConfig;

    const HOUR_MS: i64 = 3_600_000;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        let mut l: LabelSet = pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        l.sort();
        l
    }

    fn up(job: &str) -> LabelSet {
        ls(&[("__name__", "up"), ("job", job)])
    }

    fn name(n: &str) -> Vec<Matcher> {
        vec![Matcher::Equal("__name__".into(), n.into())]
    }

    /// An opened store in a temporary directory that keeps samples from 1970 forever.
    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(TsdbConfig { retention_ms: i64::MAX, ..TsdbConfig::new(dir.path()) });
        store.open().unwrap();
        (dir, store)
    }

    /// Cuts every head range that ends more than the out-of-order window before `now_ms` into
    /// blocks: a sample of another series at `now_ms` moves the tenant's newest sample there.
    fn cut_before(store: &Store, tenant: &str, now_ms: i64) {
        store.append(tenant, ls(&[("__name__", "clock")]), now_ms, 0.0).unwrap();
        store.checkpoint(&Positions::new()).unwrap();
    }

    fn block_count(store: &Store, tenant: &str) -> usize {
        store.tenant(tenant).unwrap().read().unwrap().blocks.len()
    }

    /// Flips the last byte of series `labels`, where its CRC will catch it, in every block whose
    /// entry for it starts in `starts`.
    fn damage(store: &Store, tenant: &str, labels: &LabelSet, starts: std::ops::Range<i64>) {
        let t = store.tenant(tenant).unwrap();
        let t = t.read().unwrap();
        let id = t.index.get(labels).unwrap();
        let mut damaged = 0;
        for b in &t.blocks {
            let Some(e) = b.entry(id).filter(|e| starts.contains(&e.min_t)) else { continue };
            let file = std::fs::OpenOptions::new().read(true).write(true).open(b.file.path()).unwrap();
            let at = e.offset + u64::from(e.len) - 1;
            let mut byte = [0u8];
            file.read_exact_at(&mut byte, at).unwrap();
            file.write_all_at(&[byte[0] ^ 0xff], at).unwrap();
            damaged += 1;
        }
        assert!(damaged > 0, "no block holds {labels:?}");
    }

    fn collect(set: SeriesSet) -> Result<Vec<SeriesData>, SelectError> {
        set.collect()
    }

    fn samples(n: i64, start_ms: i64, value: f64) -> Vec<(i64, f64)> {
        (0..n).map(|i| (start_ms + i * 15_000, value + i as f64)).collect()
    }

    fn append_all(store: &Store, tenant: &str, labels: &LabelSet, samples: &[(i64, f64)]) {
        for &(t, v) in samples {
            store.append(tenant, labels.clone(), t, v).unwrap();
        }
    }

    #[test]
    fn series_are_read_only_when_the_set_reaches_them() {
        let (_dir, store) = store();
        append_all(&store, "a", &up("a"), &samples(10, 0, 1.0));
        append_all(&store, "a", &up("b"), &samples(10, 0, 100.0));
        cut_before(&store, "a", 4 * BLOCK_RANGE_MS);
        assert_eq!(block_count(&store, "a"), 1);

        // A limit that the first series stays under: it comes whole, the error with the second.
        let limited = store.querier("a", 0, HOUR_MS).with_limits(ReadLimits { series_max: 2, samples_max: 15 });
        let mut set = limited.select(&name("up"));
        let first = set.next().unwrap().unwrap();
        assert_eq!((first.labels, first.samples), (up("a"), samples(10, 0, 1.0)));
        assert_eq!(set.samples_read(), 10);
        assert_eq!(set.next().unwrap(), Err(SelectError::TooManySamples { max: 15 }));
        assert!(set.next().is_none(), "an error ends the set");

        // A damaged second series: the first is read and given before the second is touched.
        damage(&store, "a", &up("b"), 0..i64::MAX);
        let mut set = store.querier("a", 0, HOUR_MS).select(&name("up"));
        assert_eq!(set.next().unwrap().unwrap().labels, up("a"));
        assert!(matches!(set.next(), Some(Err(SelectError::Block(_)))));
        assert!(set.next().is_none());
    }

    #[test]
    fn blocks_and_entries_outside_the_range_are_not_read() {
        let (_dir, store) = store();
        // `up{job="a"}` in the first two 2-hour ranges; `up{job="b"}` only late in the second.
        append_all(&store, "a", &up("a"), &samples(8, 0, 1.0));
        append_all(&store, "a", &up("a"), &samples(8, BLOCK_RANGE_MS, 10.0));
        append_all(&store, "a", &up("b"), &samples(8, BLOCK_RANGE_MS + HOUR_MS, 20.0));
        cut_before(&store, "a", 4 * BLOCK_RANGE_MS);
        assert_eq!(block_count(&store, "a"), 2);

        // The first block's series is damaged: a read of the second range never opens it.
        damage(&store, "a", &up("a"), 0..BLOCK_RANGE_MS);
        let second = BLOCK_RANGE_MS..2 * BLOCK_RANGE_MS - 1;
        let got = collect(store.querier("a", second.start, second.end).select(&name("up"))).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].samples, samples(8, BLOCK_RANGE_MS, 10.0));
        assert!(matches!(collect(store.querier("a", 0, i64::MAX).select(&name("up"))), Err(SelectError::Block(_))));

        // Within the second block, `up{job="a"}` ends before the last hour; it has a sample in
        // that hour only in the head. A read of that hour leaves its block entry alone, damaged.
        damage(&store, "a", &up("a"), BLOCK_RANGE_MS..2 * BLOCK_RANGE_MS);
        let half_past = BLOCK_RANGE_MS + 3 * HOUR_MS / 2;
        store.append("a", up("a"), half_past, 7.0).unwrap();
        let last_hour = collect(store.querier("a", BLOCK_RANGE_MS + HOUR_MS, second.end).select(&name("up"))).unwrap();
        let want = [
            SeriesData { labels: up("a"), samples: vec![(half_past, 7.0)] },
            SeriesData { labels: up("b"), samples: samples(8, BLOCK_RANGE_MS + HOUR_MS, 20.0) },
        ];
        assert_eq!(last_hour, want);
    }

    #[test]
    fn the_later_write_wins_across_blocks_and_head() {
        let (_dir, store) = store();
        append_all(&store, "a", &up("a"), &[(1_000, 1.0), (2_000, 2.0)]);
        cut_before(&store, "a", 4 * BLOCK_RANGE_MS);
        assert_eq!(block_count(&store, "a"), 1);
        // A late write at a timestamp the block holds goes to the head, and wins.
        store.append("a", up("a"), 2_000, 20.0).unwrap();
        store.append("a", up("a"), 3_000, 30.0).unwrap();
        let want = [(1_000, 1.0), (2_000, 20.0), (3_000, 30.0)];
        let read = || collect(store.querier("a", 0, HOUR_MS).select(&name("up"))).unwrap();
        assert_eq!(read()[0].samples, want);
        // Cut again, the late write is a second block over the same range, and still wins.
        cut_before(&store, "a", 4 * BLOCK_RANGE_MS + 1);
        assert_eq!(block_count(&store, "a"), 2);
        assert_eq!(read()[0].samples, want);
    }

    #[test]
    fn later_runs_win_on_equal_timestamps() {
        let merged = merge_runs(vec![vec![(1, 1.0), (2, 2.0)], vec![(2, 20.0), (3, 30.0)], vec![(1, 10.0)]]);
        assert_eq!(merged, [(1, 10.0), (2, 20.0), (3, 30.0)]);
        assert_eq!(merge_runs(vec![vec![], vec![(1, 1.0)], vec![]]), [(1, 1.0)]);
        assert!(merge_runs(vec![]).is_empty());
        // Runs one after another, in any order, are joined in time order.
        let joined = merge_runs(vec![vec![(5, 5.0), (6, 6.0)], vec![(1, 1.0), (2, 2.0)], vec![(3, 3.0)]]);
        assert_eq!(joined, [(1, 1.0), (2, 2.0), (3, 3.0), (5, 5.0), (6, 6.0)]);
        // Touching at one timestamp is an overlap: the later run wins it.
        assert_eq!(merge_runs(vec![vec![(1, 1.0), (2, 2.0)], vec![(2, 20.0)]]), [(1, 1.0), (2, 20.0)]);
    }

    #[test]
    fn series_come_sorted_by_label_set_in_their_range() {
        let (_dir, store) = store();
        // Inserted out of order, so that series ids are not in label order.
        for job in ["z", "a", "m"] {
            store.append("a", up(job), 1_000, 1.0).unwrap();
        }
        store.append("a", ls(&[("__name__", "up"), ("job", "a"), ("zone", "1")]), 1_000, 1.0).unwrap();
        store.append("a", ls(&[("__name__", "down"), ("job", "b")]), 1_000, 1.0).unwrap();
        store.append("a", up("late"), 5_000, 1.0).unwrap();
        let any = [Matcher::regex("__name__", ".+", false).unwrap()];
        let got: Vec<LabelSet> = store.querier("a", 0, 2_000).select(&any).map(|s| s.unwrap().labels).collect();
        let want = vec![
            ls(&[("__name__", "down"), ("job", "b")]),
            up("a"),
            ls(&[("__name__", "up"), ("job", "a"), ("zone", "1")]),
            up("m"),
            up("z"),
        ];
        assert_eq!(got, want, "sorted, and up{{job=\"late\"}} has no sample in the range");
        // Skipping goes past a label set, whether a series has it or not.
        let mut set = store.querier("a", 0, 2_000).select(&any);
        set.skip_through(&up("a"));
        assert_eq!(set.next().unwrap().unwrap().labels, want[2]);
        set.skip_through(&up("b"));
        assert_eq!(set.next().unwrap().unwrap().labels, want[3]);
        set.skip_through(&up("zz"));
        assert!(set.next().is_none());
        assert_eq!(set.samples_read(), 2, "skipped series are not read");
        // Both ends of the range are included.
        let at = |from, to| store.querier("a", from, to).select(&name("up")).count();
        assert_eq!((at(1_000, 1_000), at(5_000, 5_000), at(1_001, 4_999)), (4, 1, 0));
    }

    #[test]
    fn tenants_are_apart() {
        let (_dir, store) = store();
        store.append("a", up("x"), 1_000, 1.0).unwrap();
        store.append("b", up("y"), 1_000, 2.0).unwrap();
        let read = |tenant| collect(store.querier(tenant, 0, 2_000).select(&name("up"))).unwrap();
        assert_eq!(read("a"), [SeriesData { labels: up("x"), samples: vec![(1_000, 1.0)] }]);
        assert_eq!(read("b"), [SeriesData { labels: up("y"), samples: vec![(1_000, 2.0)] }]);
        assert!(read("c").is_empty(), "a tenant that never wrote has nothing");
    }

    #[test]
    fn staleness_markers_come_through_unchanged_from_blocks_and_head() {
        let (_dir, store) = store();
        let stale = f64::from_bits(STALE_NAN_BITS);
        append_all(&store, "a", &up("a"), &[(1_000, 1.0), (2_000, stale), (3_000, f64::NAN)]);
        cut_before(&store, "a", 4 * BLOCK_RANGE_MS);
        append_all(&store, "a", &up("a"), &[(4 * BLOCK_RANGE_MS, stale)]);
        let got = collect(store.querier("a", 0, i64::MAX).select(&name("up"))).unwrap();
        let bits: Vec<(i64, u64)> = got[0].samples.iter().map(|(t, v)| (*t, v.to_bits())).collect();
        let want = [(1_000, 1.0), (2_000, stale), (3_000, f64::NAN), (4 * BLOCK_RANGE_MS, stale)];
        assert_eq!(bits, want.map(|(t, v)| (t, v.to_bits())));
    }

    #[test]
    fn a_checkpoint_during_a_read_loses_nothing() {
        let (_dir, store) = store();
        for job in ["a", "b"] {
            append_all(&store, "a", &up(job), &samples(20, 0, 1.0));
        }
        // The querier and the set are made while the samples are in the head; then they move
        // to a block, between the querier and the set and between two series.
        let querier = store.querier("a", 0, HOUR_MS);
        let early = querier.select(&name("up"));
        append_all(&store, "a", &up("a"), &[(1, 0.5)]);
        cut_before(&store, "a", 4 * BLOCK_RANGE_MS);
        assert_eq!(block_count(&store, "a"), 1);
        let late = querier.select(&name("up"));
        let want = samples(20, 0, 1.0);
        let with_late: Vec<(i64, f64)> = [(0, 1.0), (1, 0.5)].into_iter().chain(want[1..].iter().copied()).collect();
        for set in [early, late] {
            let got = collect(set).unwrap();
            assert_eq!(got.len(), 2);
            assert_eq!(got[0].samples, with_late);
            assert_eq!(got[1].samples, want);
        }
        assert_eq!(collect(querier.select(&name("nothing"))).unwrap(), []);
    }

    #[test]
    fn reads_stop_at_the_limits_in_blocks_and_head() {
        let (_dir, store) = store();
        // Two series, 240 samples each in the first 2-hour range, cut into a block; then one
        // more sample of the first in the head.
        for job in ["x", "y"] {
            for i in 0..240 {
                store.append("a", up(job), i * 30_000, 1.0).unwrap();
            }
        }
        store.append("a", up("x"), 4 * BLOCK_RANGE_MS, 2.0).unwrap();
        store.checkpoint(&Positions::new()).unwrap();
        assert_eq!(block_count(&store, "a"), 1, "the first range is cut into a block");
        let read = |from_ms, series_max, samples_max| {
            let limits = ReadLimits { series_max, samples_max };
            collect(store.querier("a", from_ms, i64::MAX).with_limits(limits).select(&name("up")))
        };
        assert_eq!(read(0, 2, 481).unwrap().iter().map(|s| s.samples.len()).sum::<usize>(), 481);
        assert_eq!(read(0, 2, 480).unwrap_err(), SelectError::TooManySamples { max: 480 });
        assert_eq!(read(0, 2, 239).unwrap_err(), SelectError::TooManySamples { max: 239 });
        assert_eq!(read(0, 1, usize::MAX).unwrap_err(), SelectError::TooManySeries { max: 1 });
        // From the head alone: only one series has a sample there.
        assert_eq!(read(4 * BLOCK_RANGE_MS, 1, 0).unwrap_err(), SelectError::TooManySamples { max: 0 });
        assert_eq!(read(4 * BLOCK_RANGE_MS, 1, 1).unwrap().len(), 1);
    }
}
