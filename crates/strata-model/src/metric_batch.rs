//! The stored form of metric samples: one record of the `metrics` topic holds a batch of series
//! of one source with their samples, label strings written once in a symbol table (as Prometheus
//! remote write 2.0 does). Against one JSON point per record this is a sixth of the bytes in the
//! log and a fraction of the work to write and to read back, which is what lets ingest and the
//! metric store keep up with hundreds of thousands of samples a second.
//!
//! ```text
//! u8      version (1)
//! varint  symbol count, then each: varint length, UTF-8 bytes
//! varint  series count, then each:
//!           varint label count, then each: varint name symbol, varint value symbol
//!             (sorted by name, `__name__` included)
//!           u64 the series' fingerprint (`series_fingerprint`), so the store need not hash again
//!           varint sample count, then each: i64 timestamp in ms, f64 value (little endian)
//! ```
//! `strata consume` and the admin API show a batch as JSON through [`MetricBatch::to_json`].

use std::collections::HashMap;

use crate::varint;

/// The version byte every batch starts with.
pub const METRIC_BATCH_VERSION: u8 = 1;

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
    series: Vec<u8>,
    series_count: u64,
    samples: usize,
    min_ts_ms: i64,
    max_ts_ms: i64,
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
    /// contain no `__name__`; `fingerprint` is `series_fingerprint(name, labels)`.
    pub fn add_series<'a>(
        &mut self,
        fingerprint: u64,
        name: &str,
        labels: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
        samples: &[(i64, f64)],
    ) {
        varint::put(&mut self.series, labels.len() as u64 + 1);
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
        self.series.extend_from_slice(&fingerprint.to_le_bytes());
        varint::put(&mut self.series, samples.len() as u64);
        for &(ts, v) in samples {
            self.series.extend_from_slice(&ts.to_le_bytes());
            self.series.extend_from_slice(&v.to_le_bytes());
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
        varint::put(&mut self.series, n);
        varint::put(&mut self.series, v);
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
        let mut out = Vec::with_capacity(12 + self.symbol_bytes.len() + self.series.len());
        out.push(METRIC_BATCH_VERSION);
        varint::put(&mut out, self.symbol_at.len() as u64);
        out.extend_from_slice(&self.symbol_bytes);
        varint::put(&mut out, self.series_count);
        out.extend_from_slice(&self.series);
        out
    }
}

/// A decoded batch that borrows its strings from the encoded bytes.
#[derive(Debug)]
pub struct MetricBatch<'a> {
    symbols: Vec<&'a str>,
    series: &'a [u8],
    series_count: u64,
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
}

/// What `walk` calls with each series: its labels and its raw samples.
type SeriesVisitor<'a, 'f> = dyn FnMut(u64, &[(&'a str, &'a str)], &'a [u8]) + 'f;

/// One series of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSeries<'a> {
    /// Sorted by name, `__name__` included.
    pub labels: Vec<(&'a str, &'a str)>,
    pub fingerprint: u64,
    pub samples: Vec<(i64, f64)>,
}

impl<'a> MetricBatch<'a> {
    /// Reads the header and the symbol table; series are decoded by `series`.
    pub fn decode(bytes: &'a [u8]) -> Result<MetricBatch<'a>, BatchError> {
        let (&version, rest) = bytes.split_first().ok_or(BatchError::Truncated)?;
        if version != METRIC_BATCH_VERSION {
            return Err(BatchError::Version(version));
        }
        let mut r = Reader { b: rest };
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
        let symbols = ends
            .into_iter()
            .map(|(end, len)| match whole.and_then(|w| w.get(end - len..end)) {
                Some(s) => Ok(s),
                None => std::str::from_utf8(&table[end - len..end]).map_err(|_| BatchError::Utf8),
            })
            .collect::<Result<Vec<&str>, BatchError>>()?;
        let series_count = r.varint()?;
        Ok(MetricBatch { symbols, series: r.b, series_count })
    }

    /// Calls `f` with each series' labels and samples, without allocating per series. The whole
    /// batch is checked first, so `f` sees all of it or none of it.
    pub fn for_each_series(
        &self,
        mut f: impl FnMut(u64, &[(&'a str, &'a str)], &mut dyn Iterator<Item = (i64, f64)>),
    ) -> Result<(), BatchError> {
        self.walk(&mut |_, _, _| {})?;
        self.walk(&mut |fingerprint, labels, samples| {
            let mut it = samples.chunks_exact(16).map(|c| {
                let ts = i64::from_le_bytes(c[..8].try_into().expect("8 bytes"));
                let v = f64::from_le_bytes(c[8..].try_into().expect("8 bytes"));
                (ts, v)
            });
            f(fingerprint, labels, &mut it)
        })
    }

    fn walk(&self, f: &mut SeriesVisitor<'a, '_>) -> Result<(), BatchError> {
        let mut r = Reader { b: self.series };
        let sym = |n: u64| self.symbols.get(n as usize).copied().ok_or(BatchError::Symbol(n));
        let mut labels = Vec::new();
        for _ in 0..self.series_count {
            let n_labels = r.varint()?;
            if n_labels > r.b.len() as u64 {
                return Err(BatchError::Truncated);
            }
            labels.clear();
            for _ in 0..n_labels {
                labels.push((sym(r.varint()?)?, sym(r.varint()?)?));
            }
            let fingerprint = u64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
            let n_samples = r.varint()?;
            let bytes = r.take(n_samples.checked_mul(16).ok_or(BatchError::Truncated)?)?;
            f(fingerprint, &labels, bytes);
        }
        if !r.b.is_empty() {
            return Err(BatchError::Trailing(r.b.len()));
        }
        Ok(())
    }

    /// The fingerprint of every series in order, read without resolving labels, into `out`. A
    /// damaged batch gives the fingerprints before the damage.
    pub fn fingerprints(&self, out: &mut Vec<u64>) {
        out.clear();
        let mut r = Reader { b: self.series };
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
        let mut r = Reader { b: self.series };
        if self.series_count > r.b.len() as u64 {
            return Err(BatchError::Truncated);
        }
        let mut out = Vec::with_capacity(self.series_count as usize);
        let sym = |n: u64| self.symbols.get(n as usize).copied().ok_or(BatchError::Symbol(n));
        for _ in 0..self.series_count {
            let n_labels = r.varint()?;
            if n_labels > r.b.len() as u64 {
                return Err(BatchError::Truncated);
            }
            let mut labels = Vec::with_capacity(n_labels as usize);
            for _ in 0..n_labels {
                labels.push((sym(r.varint()?)?, sym(r.varint()?)?));
            }
            let fingerprint = u64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
            let n_samples = r.varint()?;
            let bytes = r.take(n_samples.checked_mul(16).ok_or(BatchError::Truncated)?)?;
            let samples = bytes
                .chunks_exact(16)
                .map(|c| {
                    let ts = i64::from_le_bytes(c[..8].try_into().expect("8 bytes"));
                    let v = f64::from_le_bytes(c[8..].try_into().expect("8 bytes"));
                    (ts, v)
                })
                .collect();
            out.push(BatchSeries { labels, fingerprint, samples });
        }
        if !r.b.is_empty() {
            return Err(BatchError::Trailing(r.b.len()));
        }
        Ok(out)
    }

    /// The batch as JSON, for people: `[{"labels": {...}, "samples": [[ts_ms, value], ...]}]`,
    /// infinities as Prometheus writes them ("+Inf", "-Inf") and NaNs with their payload bits
    /// ("NaN:7ff0000000000002" is a staleness marker), as native points are written.
    pub fn to_json(&self) -> Result<serde_json::Value, BatchError> {
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
        let series = self
            .series()?
            .into_iter()
            .map(|s| {
                let labels: serde_json::Map<String, Value> =
                    s.labels.iter().map(|(n, v)| (n.to_string(), Value::String(v.to_string()))).collect();
                let samples: Vec<Value> = s.samples.iter().map(|&(t, v)| json!([t, value(v)])).collect();
                json!({"labels": labels, "samples": samples})
            })
            .collect();
        Ok(Value::Array(series))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn batches_round_trip_with_the_name_among_sorted_labels() {
        let mut b = MetricBatchBuilder::new();
        b.add_series(7, "up", [("instance", "h:9100"), ("job", "node")].into_iter(), &[(1000, 1.0), (2000, f64::NAN)]);
        b.add_series(8, "a_metric", [("zone", "ü")].into_iter(), &[(5, -0.0)]);
        b.add_series(9, "__x", std::iter::empty(), &[]);
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
        assert_eq!(series[0].fingerprint, 7);
        let mut fps = Vec::new();
        batch.fingerprints(&mut fps);
        assert_eq!(fps, [7, 8, 9]);
        MetricBatch::decode(&bytes[..bytes.len() - 9]).unwrap().fingerprints(&mut fps);
        assert_eq!(fps, [7, 8], "a cut batch gives the fingerprints before the cut");
        assert_eq!(batch.to_json().unwrap()[0]["samples"][1][1], format!("NaN:{:016x}", f64::NAN.to_bits()));
    }

    #[test]
    fn symbols_are_checked_as_utf8_whatever_their_length() {
        let long = "é".repeat(100);
        let mut b = MetricBatchBuilder::new();
        b.add_series(1, "m", [("long", long.as_str()), ("short", "ü")].into_iter(), &[(1, 1.0)]);
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
                b.add_series(i as u64, name, labels.iter().copied(), &[(i as i64, 0.5)]);
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

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut b = vec![METRIC_BATCH_VERSION];
            b.extend_from_slice(&bytes);
            if let Ok(batch) = MetricBatch::decode(&b) {
                let whole = batch.series().is_ok();
                let mut calls = 0;
                let visited = batch.for_each_series(|_, _, _| calls += 1).is_ok();
                prop_assert_eq!(whole, visited);
                prop_assert!(visited || calls == 0, "a bad batch is not visited in part");
            }
        }
    }
}
