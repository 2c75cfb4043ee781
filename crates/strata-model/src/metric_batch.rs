//! The stored form of metric samples: one record of the `metrics` topic holds a batch of series
//! of one source with their samples, label strings written once in a symbol table (as Prometheus
//! remote write 2.0 does). Against one JSON point per record this is a sixth of the bytes in the
//! log and a fraction of the work to write and to read back, which is what lets ingest and the
//! metric store keep up with hundreds of thousands of samples a second.
//!
//! A remote-write request carries one sample for each of thousands of series, so a batch is
//! mostly labels, timestamps and values, one of each per series. Version 2 lays them out in
//! columns so that the log's compression (zstd per batch of records) finds the repeats: label
//! symbols repeat position by position from series to series and from source to source,
//! timestamps are deltas (a scrape's samples share one, so most deltas are zero), and values are
//! written as decimals where that is exact (`12345.67` is the integer 1234567 and the exponent 2,
//! three bytes instead of eight). A series' fingerprint is not stored: eight random bytes a sample
//! would cost more than everything else after compression, and the reader hashes the labels it
//! resolves anyway.
//!
//! ```text
//! u8      version (2)
//! varint  symbol count, then each: varint length, UTF-8 bytes
//! varint  series count
//! varint  length of the labels column, then per series:
//!           varint label count, then each: varint name symbol, varint value symbol
//!             (sorted by name, `__name__` included)
//! varint  length of the counts column, then per series: varint sample count
//! varint  length of the timestamps column, then per sample: zigzag varint, the timestamp in ms
//!           minus the previous sample's (the first minus zero)
//! values column (the rest), per sample: varint tag = zigzag(m) << 4 | e, the value m / 10^e for
//!   e in 0..=14; e = 15 is followed by the value's eight bits (little endian) as they are
//! ```
//! Version 3 names each series by its number in the series registry
//! ([`crate::SeriesRegistry`]) instead of by its labels, which are defined once in the `series`
//! topic: no symbol table, and the labels column is a refs column holding per series a zigzag
//! varint, its number minus the previous series' (a request's series were mostly numbered
//! together, so most are one byte); the other columns are as in version 2. This is what the
//! gateway writes; its readers resolve numbers through the registry
//! ([`MetricBatch::for_each_series_in`]).
//!
//! Version 1 (still read): symbols, then per series its labels, its fingerprint (u64) and its
//! samples as (i64 ms, f64) pairs, little endian.
//! `strata consume` and the admin API show a batch as JSON through [`MetricBatch::to_json`].

use std::collections::HashMap;

use crate::varint;

/// The version byte of batches that spell out their labels.
pub const METRIC_BATCH_VERSION: u8 = 2;

/// The version byte of batches that name their series by registry number.
pub const METRIC_BATCH_REFS_VERSION: u8 = 3;

/// The first version, read but no longer written.
const VERSION_1: u8 = 1;

/// The value tag's exponent that says eight raw bytes follow.
const RAW_VALUE: u64 = 15;

/// Powers of ten exact as `f64`, for the decimal values.
const POW10: [f64; 15] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14];

/// Integers up to this magnitude are exact as `f64`.
const EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// Why bytes are not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("metric batch version {0} is unknown")]
    Version(u8),
    #[error("metric batch ends early")]
    Truncated,
    #[error("metric batch symbol {0} is out of range")]
    Symbol(u64),
    #[error("metric batch symbol is not UTF-8")]
    Utf8,
    #[error("metric batch has {0} bytes after its last series")]
    Trailing(usize),
    #[error("series number {0} is not in the series registry for this tenant")]
    SeriesRef(u64),
    #[error("series number {0} is defined twice with different labels or tenants")]
    SeriesConflict(u64),
    #[error("metric batch names its series by number: read it through the series registry")]
    Unresolved,
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// `v` as `m / 10^e` with `m` an exact integer, if some `e` below 15 gives back `v` bit for bit.
/// Negative zero, infinities and NaNs (staleness markers among them) have no such form.
fn decimal(v: f64) -> Option<(i64, u64)> {
    if !v.is_finite() || v.to_bits() == (-0.0f64).to_bits() {
        return None;
    }
    for (e, &p) in POW10.iter().enumerate() {
        let m = (v * p).round();
        if m.abs() >= EXACT_INT {
            return None;
        }
        // Both sides are finite and `v` is not -0, so `==` compares bits.
        if m / p == v {
            return Some((m as i64, e as u64));
        }
    }
    None
}

fn put_value(out: &mut Vec<u8>, v: f64) {
    match decimal(v) {
        Some((m, e)) => varint::put(out, (zigzag(m) << 4) | e),
        None => {
            varint::put(out, RAW_VALUE);
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    }
}

/// Builds one batch. Labels must already be validated; they are sorted here.
#[derive(Debug, Default)]
pub struct MetricBatchBuilder {
    /// The symbol of each string added so far, by the string's hash; a hit is confirmed against
    /// the symbol's bytes, so keys need no copy of the string.
    symbols: HashMap<u64, u64, crate::FastHash>,
    /// Where each symbol's bytes are in `symbol_bytes`.
    symbol_at: Vec<(usize, usize)>,
    symbol_bytes: Vec<u8>,
    /// The symbols of the last series, label by label: consecutive series of a source mostly
    /// share names and many values position by position, and comparing a few bytes is cheaper
    /// than hashing them.
    previous: Vec<(u64, u64)>,
    labels: Vec<u8>,
    counts: Vec<u8>,
    timestamps: Vec<u8>,
    values: Vec<u8>,
    last_ts_ms: i64,
    series_count: u64,
    samples: usize,
    min_ts_ms: i64,
    max_ts_ms: i64,
    /// Whether series are added by number (version 3); `labels` is then the refs column.
    by_ref: bool,
    last_ref: u64,
}

impl MetricBatchBuilder {
    pub fn new() -> MetricBatchBuilder {
        MetricBatchBuilder {
            // Sized for a source's label names and common values, so that it rarely grows.
            symbols: HashMap::with_capacity_and_hasher(256, Default::default()),
            min_ts_ms: i64::MAX,
            max_ts_ms: i64::MIN,
            ..MetricBatchBuilder::default()
        }
    }

    /// A builder of version 3 batches, whose series are added by number
    /// ([`MetricBatchBuilder::add_series_ref`]).
    pub fn with_refs() -> MetricBatchBuilder {
        MetricBatchBuilder { by_ref: true, min_ts_ms: i64::MAX, max_ts_ms: i64::MIN, ..MetricBatchBuilder::default() }
    }

    /// Adds the samples of the series numbered `id` in the series registry.
    pub fn add_series_ref(&mut self, id: u64, samples: &[(i64, f64)]) {
        assert!(self.by_ref, "add_series_ref on a builder of labelled batches");
        varint::put(&mut self.labels, zigzag(id.wrapping_sub(self.last_ref) as i64));
        self.last_ref = id;
        self.put_samples(samples);
    }

    fn is_symbol(&self, n: u64, s: &str) -> bool {
        let (at, len) = self.symbol_at[n as usize];
        &self.symbol_bytes[at..at + len] == s.as_bytes()
    }

    /// The symbol of `s`, added if it is new; `guess` is checked first.
    fn symbol(&mut self, s: &str, guess: Option<u64>) -> u64 {
        if let Some(n) = guess
            && self.is_symbol(n, s)
        {
            return n;
        }
        let key = crate::hash::string_hash(s);
        let known = self.symbols.get(&key).copied();
        if let Some(n) = known
            && self.is_symbol(n, s)
        {
            return n;
        }
        let n = self.symbol_at.len() as u64;
        varint::put(&mut self.symbol_bytes, s.len() as u64);
        self.symbol_at.push((self.symbol_bytes.len(), s.len()));
        self.symbol_bytes.extend_from_slice(s.as_bytes());
        // Two strings with one hash: the later one is written again wherever it occurs, which
        // costs bytes, never correctness.
        if known.is_none() {
            self.symbols.insert(key, n);
        }
        n
    }

    /// Adds a series: `name` becomes the `__name__` label; `labels` are sorted by name and
    /// contain no `__name__`.
    pub fn add_series<'a>(
        &mut self,
        name: &str,
        labels: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
        samples: &[(i64, f64)],
    ) {
        assert!(!self.by_ref, "add_series on a builder of numbered batches");
        varint::put(&mut self.labels, labels.len() as u64 + 1);
        let mut position = 0;
        let mut name_written = false;
        for (n, v) in labels {
            if !name_written && n > "__name__" {
                self.put_label(position, "__name__", name);
                position += 1;
                name_written = true;
            }
            self.put_label(position, n, v);
            position += 1;
        }
        if !name_written {
            self.put_label(position, "__name__", name);
        }
        self.put_samples(samples);
    }

    fn put_samples(&mut self, samples: &[(i64, f64)]) {
        varint::put(&mut self.counts, samples.len() as u64);
        for &(ts, v) in samples {
            varint::put(&mut self.timestamps, zigzag(ts.wrapping_sub(self.last_ts_ms)));
            self.last_ts_ms = ts;
            put_value(&mut self.values, v);
            self.min_ts_ms = self.min_ts_ms.min(ts);
            self.max_ts_ms = self.max_ts_ms.max(ts);
        }
        self.series_count += 1;
        self.samples += samples.len();
    }

    fn put_label(&mut self, position: usize, n: &str, v: &str) {
        let previous = self.previous.get(position).copied();
        let n = self.symbol(n, previous.map(|p| p.0));
        let v = self.symbol(v, previous.map(|p| p.1));
        match self.previous.get_mut(position) {
            Some(p) => *p = (n, v),
            None => self.previous.push((n, v)),
        }
        varint::put(&mut self.labels, n);
        varint::put(&mut self.labels, v);
    }

    pub fn is_empty(&self) -> bool {
        self.series_count == 0
    }

    /// Samples added so far.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The newest sample's timestamp in ms (`i64::MIN` when empty).
    pub fn max_ts_ms(&self) -> i64 {
        self.max_ts_ms
    }

    /// The encoded batch.
    pub fn finish(&self) -> Vec<u8> {
        let columns = self.labels.len() + self.counts.len() + self.timestamps.len() + self.values.len();
        let mut out = Vec::with_capacity(40 + self.symbol_bytes.len() + columns);
        if self.by_ref {
            out.push(METRIC_BATCH_REFS_VERSION);
        } else {
            out.push(METRIC_BATCH_VERSION);
            varint::put(&mut out, self.symbol_at.len() as u64);
            out.extend_from_slice(&self.symbol_bytes);
        }
        varint::put(&mut out, self.series_count);
        for column in [&self.labels, &self.counts, &self.timestamps] {
            varint::put(&mut out, column.len() as u64);
            out.extend_from_slice(column);
        }
        out.extend_from_slice(&self.values);
        out
    }
}

/// A decoded batch that borrows its strings from the encoded bytes.
#[derive(Debug)]
pub struct MetricBatch<'a> {
    symbols: Vec<&'a str>,
    series_count: u64,
    layout: Layout<'a>,
}

#[derive(Debug)]
enum Layout<'a> {
    /// Series one after another, each with its fingerprint and raw samples.
    V1 { series: &'a [u8] },
    /// Columns, checked and with samples decoded when the batch is.
    V2 { labels: &'a [u8], counts: &'a [u8], fingerprints: Vec<u64>, samples: Vec<(i64, f64)> },
    /// Series numbers and columns, checked and decoded when the batch is.
    V3 { refs: Vec<u64>, counts: Vec<usize>, samples: Vec<(i64, f64)> },
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, BatchError> {
        varint::take(&mut self.b).map_err(|_| BatchError::Truncated)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], BatchError> {
        let n = usize::try_from(n).map_err(|_| BatchError::Truncated)?;
        if n > self.b.len() {
            return Err(BatchError::Truncated);
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    /// A column: its length, then its bytes.
    fn column(&mut self) -> Result<&'a [u8], BatchError> {
        let n = self.varint()?;
        self.take(n)
    }

    fn end(&self) -> Result<(), BatchError> {
        if self.b.is_empty() { Ok(()) } else { Err(BatchError::Trailing(self.b.len())) }
    }
}

/// What `walk_v1` calls with each series: its labels and its raw samples.
type SeriesVisitor<'a, 'f> = dyn FnMut(u64, &[(&'a str, &'a str)], &'a [u8]) + 'f;

/// One series of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSeries<'a> {
    /// Sorted by name, `__name__` included.
    pub labels: Vec<(&'a str, &'a str)>,
    pub fingerprint: u64,
    pub samples: Vec<(i64, f64)>,
}

/// The fingerprint of labels as a batch holds them (`__name__` among them, sorted): the same
/// number `series_fingerprint` gives for the name and the other labels.
fn fingerprint_of(labels: &[(&str, &str)]) -> u64 {
    let name = labels.iter().find(|(n, _)| *n == "__name__").map_or("", |l| l.1);
    crate::series_fingerprint(name, labels.iter().filter(|(n, _)| *n != "__name__").copied())
}

fn v1_samples(bytes: &[u8]) -> impl Iterator<Item = (i64, f64)> + '_ {
    bytes.chunks_exact(16).map(|c| {
        let ts = i64::from_le_bytes(c[..8].try_into().expect("8 bytes"));
        let v = f64::from_le_bytes(c[8..].try_into().expect("8 bytes"));
        (ts, v)
    })
}

impl<'a> MetricBatch<'a> {
    /// Reads the header and the symbol table; a version 2 batch is checked whole here, its
    /// labels resolved and its samples decoded.
    pub fn decode(bytes: &'a [u8]) -> Result<MetricBatch<'a>, BatchError> {
        let (&version, rest) = bytes.split_first().ok_or(BatchError::Truncated)?;
        if version == METRIC_BATCH_REFS_VERSION {
            return decode_v3(rest);
        }
        if version != METRIC_BATCH_VERSION && version != VERSION_1 {
            return Err(BatchError::Version(version));
        }
        let mut r = Reader { b: rest };
        let symbols = read_symbols(&mut r)?;
        let series_count = r.varint()?;
        if version == VERSION_1 {
            return Ok(MetricBatch { symbols, series_count, layout: Layout::V1 { series: r.b } });
        }
        // Each series takes a byte at least in the counts column.
        if series_count > r.b.len() as u64 {
            return Err(BatchError::Truncated);
        }
        let labels = r.column()?;
        let counts = r.column()?;
        let timestamps = r.column()?;
        let values = r.b;
        let mut batch = MetricBatch {
            symbols,
            series_count,
            layout: Layout::V2 { labels, counts, fingerprints: Vec::new(), samples: Vec::new() },
        };
        let fps = batch.v2_fingerprints(labels)?;
        let samples = v2_samples(series_count, counts, timestamps, values)?;
        if let Layout::V2 { fingerprints, samples: s, .. } = &mut batch.layout {
            *fingerprints = fps;
            *s = samples;
        }
        Ok(batch)
    }

    fn symbol(&self, n: u64) -> Result<&'a str, BatchError> {
        self.symbols.get(n as usize).copied().ok_or(BatchError::Symbol(n))
    }

    /// Reads one series' labels into `out`.
    fn read_labels(&self, r: &mut Reader<'a>, out: &mut Vec<(&'a str, &'a str)>) -> Result<(), BatchError> {
        let n_labels = r.varint()?;
        // Each label takes two bytes at least: a count past the bytes left is a lie.
        if n_labels > r.b.len() as u64 {
            return Err(BatchError::Truncated);
        }
        out.clear();
        for _ in 0..n_labels {
            out.push((self.symbol(r.varint()?)?, self.symbol(r.varint()?)?));
        }
        Ok(())
    }

    fn v2_fingerprints(&self, labels: &'a [u8]) -> Result<Vec<u64>, BatchError> {
        let mut r = Reader { b: labels };
        let mut out = Vec::with_capacity(self.series_count as usize);
        let mut buf = Vec::new();
        for _ in 0..self.series_count {
            self.read_labels(&mut r, &mut buf)?;
            out.push(fingerprint_of(&buf));
        }
        r.end()?;
        Ok(out)
    }

    /// Calls `f` with each series' fingerprint, labels and samples, without allocating per series.
    /// The whole batch is checked first, so `f` sees all of it or none of it.
    pub fn for_each_series(
        &self,
        mut f: impl FnMut(u64, &[(&'a str, &'a str)], &mut dyn Iterator<Item = (i64, f64)>),
    ) -> Result<(), BatchError> {
        match &self.layout {
            Layout::V1 { series } => {
                self.walk_v1(series, &mut |_, _, _| {})?;
                self.walk_v1(series, &mut |fingerprint, labels, samples| {
                    f(fingerprint, labels, &mut v1_samples(samples))
                })
            }
            Layout::V2 { labels, counts, fingerprints, samples } => {
                let (mut lr, mut cr) = (Reader { b: labels }, Reader { b: counts });
                let mut buf = Vec::new();
                let mut at = 0usize;
                for &fingerprint in fingerprints {
                    // Checked when the batch was decoded.
                    self.read_labels(&mut lr, &mut buf)?;
                    let n = cr.varint()? as usize;
                    f(fingerprint, &buf, &mut samples[at..at + n].iter().copied());
                    at += n;
                }
                Ok(())
            }
            Layout::V3 { .. } => Err(BatchError::Unresolved),
        }
    }

    /// The series numbers of a version 3 batch, in order; `None` for a batch that spells out its
    /// labels.
    pub fn refs(&self) -> Option<&[u64]> {
        match &self.layout {
            Layout::V3 { refs, .. } => Some(refs),
            _ => None,
        }
    }

    /// Calls `f` with each series' number and samples of a version 3 batch (an error for others).
    pub fn for_each_ref(&self, mut f: impl FnMut(u64, &mut dyn Iterator<Item = (i64, f64)>)) -> Result<(), BatchError> {
        let Layout::V3 { refs, counts, samples } = &self.layout else { return Err(BatchError::Unresolved) };
        let mut at = 0usize;
        for (&id, &n) in refs.iter().zip(counts) {
            f(id, &mut samples[at..at + n].iter().copied());
            at += n;
        }
        Ok(())
    }

    /// As [`MetricBatch::for_each_series`], for a batch of any version: the numbers of a version
    /// 3 batch are resolved through `series` for `tenant`, the tenant of the record. A number the
    /// tenant has no series for is an error before `f` is called at all.
    pub fn for_each_series_in(
        &self,
        tenant: &str,
        series: &crate::SeriesView<'_>,
        mut f: impl FnMut(u64, &[(&str, &str)], &mut dyn Iterator<Item = (i64, f64)>),
    ) -> Result<(), BatchError> {
        let Some(refs) = self.refs() else {
            return self.for_each_series(|fp, labels, samples| f(fp, labels, samples));
        };
        if let Some(&bad) = refs.iter().find(|&&id| !series.contains(tenant, id)) {
            return Err(BatchError::SeriesRef(bad));
        }
        let mut labels = Vec::new();
        self.for_each_ref(|id, samples| {
            let fp = series.resolve(tenant, id, &mut labels).expect("checked above");
            f(fp, &labels, samples)
        })
    }

    /// The timestamp of the batch's newest sample, as [`MetricBatch::for_each_series_in`] would
    /// give it, without resolving any series' labels: `None` for a batch without samples or one
    /// that `for_each_series_in` refuses.
    pub fn newest_in(&self, tenant: &str, series: &crate::SeriesView<'_>) -> Option<i64> {
        let Layout::V3 { refs, samples, .. } = &self.layout else {
            let mut newest = None;
            self.for_each_series(|_, _, s| newest = newest.max(s.map(|s| s.0).max())).ok()?;
            return newest;
        };
        if refs.iter().any(|&id| !series.contains(tenant, id)) {
            return None;
        }
        samples.iter().map(|s| s.0).max()
    }

    fn walk_v1(&self, series: &'a [u8], f: &mut SeriesVisitor<'a, '_>) -> Result<(), BatchError> {
        let mut r = Reader { b: series };
        let mut labels = Vec::new();
        for _ in 0..self.series_count {
            self.read_labels(&mut r, &mut labels)?;
            let fingerprint = u64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
            let n_samples = r.varint()?;
            let bytes = r.take(n_samples.checked_mul(16).ok_or(BatchError::Truncated)?)?;
            f(fingerprint, &labels, bytes);
        }
        r.end()
    }

    /// The fingerprint of every series in order into `out`. A damaged version 1 batch gives the
    /// fingerprints before the damage (a damaged version 2 batch does not decode).
    pub fn fingerprints(&self, out: &mut Vec<u64>) {
        out.clear();
        let series = match &self.layout {
            Layout::V2 { fingerprints, .. } => return out.extend_from_slice(fingerprints),
            Layout::V3 { .. } => return,
            Layout::V1 { series } => series,
        };
        let mut r = Reader { b: series };
        for _ in 0..self.series_count {
            let Ok(n_labels) = r.varint() else { return };
            // Each varint takes a byte at least, so a huge count ends at the batch's end.
            for _ in 0..n_labels.saturating_mul(2) {
                if r.varint().is_err() {
                    return;
                }
            }
            let Ok(fp) = r.take(8) else { return };
            out.push(u64::from_le_bytes(fp.try_into().expect("8 bytes")));
            let Ok(n) = r.varint() else { return };
            if n.checked_mul(16).is_none_or(|len| r.take(len).is_err()) {
                return;
            }
        }
    }

    /// Every series, in the order they were added.
    pub fn series(&self) -> Result<Vec<BatchSeries<'a>>, BatchError> {
        let mut out = Vec::new();
        self.for_each_series(|fingerprint, labels, samples| {
            out.push(BatchSeries { labels: labels.to_vec(), fingerprint, samples: samples.collect() })
        })?;
        Ok(out)
    }

    /// The batch as JSON, for people: `[{"labels": {...}, "samples": [[ts_ms, value], ...]}]`,
    /// infinities as Prometheus writes them ("+Inf", "-Inf") and NaNs with their payload bits
    /// ("NaN:7ff0000000000002" is a staleness marker), as native points are written.
    pub fn to_json(&self) -> Result<serde_json::Value, BatchError> {
        self.to_json_with(|f| self.for_each_series(|fp, labels, samples| f(fp, labels, samples)))
    }

    /// [`MetricBatch::to_json`] for a batch of any version, numbers resolved through `series`.
    pub fn to_json_in(&self, tenant: &str, series: &crate::SeriesView<'_>) -> Result<serde_json::Value, BatchError> {
        self.to_json_with(|f| self.for_each_series_in(tenant, series, |fp, labels, samples| f(fp, labels, samples)))
    }

    fn to_json_with(
        &self,
        walk: impl FnOnce(
            &mut dyn FnMut(u64, &[(&str, &str)], &mut dyn Iterator<Item = (i64, f64)>),
        ) -> Result<(), BatchError>,
    ) -> Result<serde_json::Value, BatchError> {
        use serde_json::{Value, json};
        let value = |v: f64| {
            if v.is_finite() {
                json!(v)
            } else if v.is_nan() {
                json!(format!("NaN:{:016x}", v.to_bits()))
            } else if v > 0.0 {
                json!("+Inf")
            } else {
                json!("-Inf")
            }
        };
        let mut series = Vec::new();
        walk(&mut |_, labels, samples| {
            let labels: serde_json::Map<String, Value> =
                labels.iter().map(|(n, v)| (n.to_string(), Value::String(v.to_string()))).collect();
            let samples: Vec<Value> = samples.map(|(t, v)| json!([t, value(v)])).collect();
            series.push(json!({"labels": labels, "samples": samples}));
        })?;
        Ok(Value::Array(series))
    }
}

/// The symbol table.
fn read_symbols<'a>(r: &mut Reader<'a>) -> Result<Vec<&'a str>, BatchError> {
    let n = r.varint()?;
    // Each symbol takes at least one byte: a count past the bytes left is a lie.
    if n > r.b.len() as u64 {
        return Err(BatchError::Truncated);
    }
    let table = r.b;
    let mut ends = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let len = r.varint()?;
        r.take(len)?;
        ends.push((table.len() - r.b.len(), len as usize));
    }
    // The table is UTF-8 as a whole when its symbols are and their lengths are below 128 (the
    // common case): one check then covers every symbol.
    let whole = std::str::from_utf8(&table[..table.len() - r.b.len()]).ok();
    ends.into_iter()
        .map(|(end, len)| match whole.and_then(|w| w.get(end - len..end)) {
            Some(s) => Ok(s),
            None => std::str::from_utf8(&table[end - len..end]).map_err(|_| BatchError::Utf8),
        })
        .collect()
}

/// A version 3 batch after its version byte.
fn decode_v3(bytes: &[u8]) -> Result<MetricBatch<'_>, BatchError> {
    let mut r = Reader { b: bytes };
    let series_count = r.varint()?;
    // Each series takes a byte at least in the refs column.
    if series_count > r.b.len() as u64 {
        return Err(BatchError::Truncated);
    }
    let refs_column = r.column()?;
    let counts_column = r.column()?;
    let timestamps = r.column()?;
    let samples = v2_samples(series_count, counts_column, timestamps, r.b)?;
    let mut rr = Reader { b: refs_column };
    let mut refs = Vec::with_capacity(series_count as usize);
    let mut id = 0u64;
    for _ in 0..series_count {
        id = id.wrapping_add(unzigzag(rr.varint()?) as u64);
        refs.push(id);
    }
    rr.end()?;
    let mut cr = Reader { b: counts_column };
    let counts = (0..series_count).map(|_| cr.varint().map(|n| n as usize)).collect::<Result<Vec<_>, _>>()?;
    Ok(MetricBatch { symbols: Vec::new(), series_count, layout: Layout::V3 { refs, counts, samples } })
}

/// The samples of a version 2 batch, checked against its series' counts.
fn v2_samples(
    series_count: u64,
    counts: &[u8],
    timestamps: &[u8],
    values: &[u8],
) -> Result<Vec<(i64, f64)>, BatchError> {
    let mut cr = Reader { b: counts };
    let mut total = 0u64;
    for _ in 0..series_count {
        total = total.checked_add(cr.varint()?).ok_or(BatchError::Truncated)?;
    }
    cr.end()?;
    // Each sample takes a byte at least in the timestamps column.
    if total > timestamps.len() as u64 {
        return Err(BatchError::Truncated);
    }
    let (mut tr, mut vr) = (Reader { b: timestamps }, Reader { b: values });
    let mut out = Vec::with_capacity(total as usize);
    let mut ts = 0i64;
    for _ in 0..total {
        ts = ts.wrapping_add(unzigzag(tr.varint()?));
        let tag = vr.varint()?;
        let e = tag & 15;
        let v = if e == RAW_VALUE {
            f64::from_bits(u64::from_le_bytes(vr.take(8)?.try_into().expect("8 bytes")))
        } else {
            unzigzag(tag >> 4) as f64 / POW10[e as usize]
        };
        out.push((ts, v));
    }
    tr.end()?;
    vr.end()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn batches_round_trip_with_the_name_among_sorted_labels() {
        let mut b = MetricBatchBuilder::new();
        b.add_series("up", [("instance", "h:9100"), ("job", "node")].into_iter(), &[(1000, 1.0), (2000, f64::NAN)]);
        b.add_series("a_metric", [("zone", "ü")].into_iter(), &[(5, -0.0)]);
        b.add_series("__x", std::iter::empty(), &[]);
        assert_eq!((b.samples(), b.max_ts_ms()), (3, 2000));
        let bytes = b.finish();
        let batch = MetricBatch::decode(&bytes).unwrap();
        let series = batch.series().unwrap();
        assert_eq!(series[0].labels, [("__name__", "up"), ("instance", "h:9100"), ("job", "node")]);
        assert_eq!(series[0].samples[0], (1000, 1.0));
        assert!(series[0].samples[1].1.is_nan());
        assert_eq!(series[1].labels, [("__name__", "a_metric"), ("zone", "ü")]);
        assert_eq!(series[2].labels, [("__name__", "__x")]);
        let mut visited = Vec::new();
        batch
            .for_each_series(|fp, labels, samples| visited.push((fp, labels.to_vec(), samples.collect::<Vec<_>>())))
            .unwrap();
        let bits = |s: &[(i64, f64)]| s.iter().map(|(t, v)| (*t, v.to_bits())).collect::<Vec<_>>();
        assert_eq!(visited.len(), 3);
        for (v, s) in visited.iter().zip(&series) {
            assert_eq!(v.0, s.fingerprint);
            assert_eq!(v.1, s.labels);
            assert_eq!(bits(&v.2), bits(&s.samples));
        }
        let want = [
            crate::series_fingerprint("up", [("instance", "h:9100"), ("job", "node")].into_iter()),
            crate::series_fingerprint("a_metric", [("zone", "ü")].into_iter()),
            crate::series_fingerprint("__x", std::iter::empty()),
        ];
        let mut fps = Vec::new();
        batch.fingerprints(&mut fps);
        assert_eq!(fps, want, "the fingerprints the gateway computes");
        assert_eq!(series[1].samples[0].1.to_bits(), (-0.0f64).to_bits());
        for cut in 1..bytes.len() {
            assert!(MetricBatch::decode(&bytes[..cut]).is_err(), "a batch cut at {cut} is an error");
        }
        assert_eq!(batch.to_json().unwrap()[0]["samples"][1][1], format!("NaN:{:016x}", f64::NAN.to_bits()));
    }

    #[test]
    fn numbered_batches_resolve_through_the_registry_for_their_tenant_only() {
        let registry = crate::SeriesRegistry::new(3600);
        let up: &[(&str, &str)] = &[("instance", "h:9100"), ("job", "node")];
        let load: &[(&str, &str)] = &[("instance", "h:9100")];
        let series = [("up", up), ("node_load1", load)];
        let (mut ids, mut defs) = (Vec::new(), crate::SeriesDefs::default());
        let items = series.iter().map(|&(n, l)| (crate::series_fingerprint(n, l.iter().copied()), n, l));
        registry.assign("t", items, &mut ids, &mut defs);
        let mut b = MetricBatchBuilder::with_refs();
        b.add_series_ref(ids[1], &[(1000, 0.25), (2000, f64::INFINITY)]);
        b.add_series_ref(ids[0], &[(1000, 1.0)]);
        b.add_series_ref(ids[1], &[]);
        assert_eq!((b.samples(), b.max_ts_ms()), (3, 2000));
        let bytes = b.finish();
        assert_eq!(bytes[0], METRIC_BATCH_REFS_VERSION);
        let batch = MetricBatch::decode(&bytes).unwrap();
        assert_eq!(batch.refs(), Some([ids[1], ids[0], ids[1]].as_slice()));
        assert_eq!(batch.series().unwrap_err(), BatchError::Unresolved, "labels need the registry");
        let mut seen = Vec::new();
        batch
            .for_each_series_in("t", &registry.read(), |fp, labels, samples| {
                let labels: Vec<String> = labels.iter().map(|(n, v)| format!("{n}={v}")).collect();
                seen.push((fp, labels.join(","), samples.count()))
            })
            .unwrap();
        let fp_load = crate::series_fingerprint("node_load1", load.iter().copied());
        assert_eq!(seen[0], (fp_load, "__name__=node_load1,instance=h:9100".to_string(), 2));
        assert_eq!(seen[1].1, "__name__=up,instance=h:9100,job=node");
        assert_eq!(seen[2].2, 0);
        let json = batch.to_json_in("t", &registry.read()).unwrap();
        assert_eq!(json[0]["samples"][1][1], "+Inf");
        assert_eq!(json[1]["labels"]["job"], "node");
        // Another tenant cannot read this tenant's series through a batch of its own.
        let mut calls = 0;
        let err = batch.for_each_series_in("u", &registry.read(), |_, _, _| calls += 1).unwrap_err();
        assert_eq!((err, calls), (BatchError::SeriesRef(ids[1]), 0));
        // The newest sample's time needs no labels, and is refused where the series are.
        assert_eq!(batch.newest_in("t", &registry.read()), Some(2000));
        assert_eq!(batch.newest_in("u", &registry.read()), None);
        for cut in 1..bytes.len() {
            assert!(MetricBatch::decode(&bytes[..cut]).is_err(), "a batch cut at {cut} is an error");
        }
    }

    /// A version 1 batch, as the log holds it from before version 2: the fingerprint stored with
    /// each series, raw samples.
    #[test]
    fn version_1_batches_are_still_read() {
        let mut v1 = vec![VERSION_1, 3, 2, b'u', b'p', 3, b'j', b'o', b'b', 1, b'x', 1, 2, 0, 0, 1, 2];
        v1.extend_from_slice(&42u64.to_le_bytes());
        v1.push(1);
        v1.extend_from_slice(&1000i64.to_le_bytes());
        v1.extend_from_slice(&2.5f64.to_le_bytes());
        let batch = MetricBatch::decode(&v1).unwrap();
        let series = batch.series().unwrap();
        assert_eq!(
            series,
            [BatchSeries { labels: vec![("up", "up"), ("job", "x")], fingerprint: 42, samples: vec![(1000, 2.5)] }]
        );
        let mut fps = Vec::new();
        MetricBatch::decode(&v1[..v1.len() - 9]).unwrap().fingerprints(&mut fps);
        assert_eq!(fps, [42], "a cut version 1 batch gives the fingerprints before the cut");
    }

    #[test]
    fn decimals_are_found_where_exact() {
        assert_eq!(decimal(12345.67), Some((1234567, 2)));
        assert_eq!(decimal(3.0), Some((3, 0)));
        assert_eq!(decimal(-0.5), Some((-5, 1)));
        assert_eq!(decimal(0.0), Some((0, 0)));
        assert_eq!(decimal(-0.0), None);
        assert_eq!(decimal(f64::INFINITY), None);
        assert_eq!(decimal(1e300), None);
        assert_eq!(decimal(std::f64::consts::PI), None);
    }

    #[test]
    fn symbols_are_checked_as_utf8_whatever_their_length() {
        let long = "é".repeat(100);
        let mut b = MetricBatchBuilder::new();
        b.add_series("m", [("long", long.as_str()), ("short", "ü")].into_iter(), &[(1, 1.0)]);
        let bytes = b.finish();
        let series = MetricBatch::decode(&bytes).unwrap().series().unwrap();
        assert_eq!(series[0].labels, [("__name__", "m"), ("long", long.as_str()), ("short", "ü")]);
        assert_eq!(MetricBatch::decode(&[1, 1, 1, 0xff, 0]).unwrap_err(), BatchError::Utf8);
        // One symbol of 200 bytes (a two-byte length), with a lead byte and no continuation.
        let mut long_bad = vec![1, 1, 0xc8, 0x01];
        long_bad.extend(std::iter::repeat_n(b'a', 200));
        long_bad[104] = 0xc3;
        long_bad.push(0);
        assert_eq!(MetricBatch::decode(&long_bad).unwrap_err(), BatchError::Utf8);
    }

    proptest! {
        /// Whatever series are added, in whatever order and with whatever repeats, they come back
        /// as added, and each distinct string is in the symbol table once.
        #[test]
        fn series_round_trip_with_each_string_written_once(
            series in proptest::collection::vec(
                ("[a-c]{1,2}", proptest::collection::btree_map("[a-d_]{1,3}", "[a-c]{0,2}", 0..5)),
                0..12,
            ),
        ) {
            let mut b = MetricBatchBuilder::new();
            let mut want = Vec::new();
            let mut strings = std::collections::BTreeSet::new();
            for (i, (name, labels)) in series.iter().enumerate() {
                let labels: Vec<(&str, &str)> =
                    labels.iter().filter(|(n, _)| *n != "__name__").map(|(n, v)| (n.as_str(), v.as_str())).collect();
                b.add_series(name, labels.iter().copied(), &[(i as i64, 0.5)]);
                let mut all = labels.clone();
                all.push(("__name__", name));
                all.sort_unstable();
                strings.extend(all.iter().flat_map(|(n, v)| [*n, *v]));
                want.push(all);
            }
            let bytes = b.finish();
            let batch = MetricBatch::decode(&bytes).unwrap();
            let got: Vec<Vec<(&str, &str)>> = batch.series().unwrap().into_iter().map(|s| s.labels).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(batch.symbols.len(), strings.len());
        }

        /// Every value and timestamp comes back bit for bit, whichever form it was written in.
        #[test]
        fn samples_round_trip_bit_for_bit(
            samples in proptest::collection::vec((any::<i64>(), prop_oneof![
                any::<f64>(),
                (-1_000_000_000i64..1_000_000_000, 0u32..8).prop_map(|(m, e)| m as f64 / 10f64.powi(e as i32)),
                Just(f64::from_bits(0x7ff0_0000_0000_0002)),
                Just(-0.0),
            ]), 0..20),
        ) {
            let mut b = MetricBatchBuilder::new();
            b.add_series("m", std::iter::empty(), &samples[..samples.len() / 2]);
            b.add_series("n", std::iter::empty(), &samples[samples.len() / 2..]);
            let bytes = b.finish();
            let got: Vec<(i64, u64)> = MetricBatch::decode(&bytes).unwrap().series().unwrap()
                .into_iter().flat_map(|s| s.samples).map(|(t, v)| (t, v.to_bits())).collect();
            let want: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn arbitrary_bytes_never_panic(version in 1u8..=3, bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut b = vec![version];
            b.extend_from_slice(&bytes);
            if let Ok(batch) = MetricBatch::decode(&b) {
                let whole = batch.series().is_ok();
                let mut calls = 0;
                let registry = crate::SeriesRegistry::new(1);
                let visited = batch.for_each_series_in("t", &registry.read(), |_, _, _| calls += 1).is_ok();
                let mut newest = None;
                let _ = batch.for_each_series_in("t", &registry.read(), |_, _, s| newest = newest.max(s.map(|s| s.0).max()));
                prop_assert_eq!(batch.newest_in("t", &registry.read()), if visited { newest } else { None });
                prop_assert!(whole == visited || batch.refs().is_some());
                prop_assert!(visited || calls == 0, "a bad batch is not visited in part");
            }
        }
    }
}
