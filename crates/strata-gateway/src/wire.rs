//! A remote write `WriteRequest` read in place: label strings are borrowed from the decompressed
//! body and every series lands in three shared vectors, where decoding into the `proto` types
//! costs two allocations per label. Series, their labels and float samples are read; native
//! histogram samples are counted so that they can be refused by name rather than dropped
//! unseen; exemplars and metadata, which no query of Strata uses, are skipped.

use std::ops::Range;

use crate::budget::Budget;

/// A request's series: each one's labels and samples as ranges of the shared vectors.
#[derive(Debug, Default)]
pub struct Parsed<'a> {
    pub labels: Vec<(&'a str, &'a str)>,
    pub samples: Vec<(i64, f64)>,
    pub series: Vec<(Range<usize>, Range<usize>)>,
    /// Native histogram samples of each series, which Strata does not store.
    pub histograms: Vec<usize>,
}

/// A protobuf message read field by field, its bytes borrowed.
pub(crate) struct Reader<'a> {
    pub b: &'a [u8],
}

pub(crate) const VARINT: u64 = 0;
pub(crate) const FIXED64: u64 = 1;
pub(crate) const LEN: u64 = 2;
pub(crate) const FIXED32: u64 = 5;

impl<'a> Reader<'a> {
    pub fn varint(&mut self) -> Result<u64, String> {
        let before = self.b;
        let v = strata_model::varint::take(&mut self.b).map_err(|e| match e {
            strata_model::varint::VarintError::Ends => "message ends inside a varint".to_string(),
            strata_model::varint::VarintError::TooLong => "varint longer than 10 bytes".to_string(),
        })?;
        // A tenth byte holds the top bit of a u64 and nothing else.
        if before.len() - self.b.len() == 10 && before[9] > 1 {
            return Err("varint overflows 64 bits".into());
        }
        Ok(v)
    }

    pub fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let n = usize::try_from(n).map_err(|_| "length does not fit".to_string())?;
        if n > self.b.len() {
            return Err(format!("field of {n} bytes runs past the end of its message"));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    /// The next field's number and wire type.
    pub fn key(&mut self) -> Result<(u64, u64), String> {
        let k = self.varint()?;
        Ok((k >> 3, k & 7))
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.varint()?;
        self.take(n)
    }

    pub fn skip(&mut self, wire: u64) -> Result<(), String> {
        match wire {
            VARINT => self.varint().map(|_| ()),
            FIXED64 => self.take(8).map(|_| ()),
            LEN => self.bytes().map(|_| ()),
            FIXED32 => self.take(4).map(|_| ()),
            other => Err(format!("wire type {other} is not supported")),
        }
    }
}

pub(crate) fn expect(field: &str, wire: u64, want: u64) -> Result<(), String> {
    if wire != want {
        return Err(format!("field {field} has wire type {wire}, expected {want}"));
    }
    Ok(())
}

/// What a protobuf message takes once decoded by prost, for `decoded_bytes`: its own bytes (its
/// structure with room for the growth of the vectors that hold it), and which of its fields hold
/// messages of which shape. Shapes refer to each other, so they are statics.
pub(crate) struct Shape {
    pub bytes: usize,
    pub fields: &'static [(u64, &'static Shape)],
}

/// A message whose fields are not counted.
pub(crate) static LEAF: Shape = Shape { bytes: 128, fields: &[] };

/// How deep `decoded_bytes` counts: prost refuses messages nested deeper than 100.
const NESTING_MAX: u32 = 100;

/// What decoding `body` as a message of `shape` may take in memory beyond the body's own bytes:
/// the `bytes` of every message in it, counted before anything is decoded. A message is 2 bytes
/// at least, so a body of empty messages would take fifty times its size and more. Counting stops
/// where the body stops parsing (prost stops there too) or nests past prost's limit.
pub(crate) fn decoded_bytes(body: &[u8], shape: &'static Shape) -> usize {
    fn walk(b: &[u8], shape: &'static Shape, depth: u32, bytes: &mut usize) -> Result<(), String> {
        *bytes = bytes.saturating_add(shape.bytes);
        if depth > NESTING_MAX {
            return Ok(());
        }
        let mut r = Reader { b };
        while !r.b.is_empty() {
            let (number, wire) = r.key()?;
            match shape.fields.iter().find(|(n, _)| *n == number) {
                Some((_, inner)) if wire == LEN => walk(r.bytes()?, inner, depth + 1, bytes)?,
                _ => r.skip(wire)?,
            }
        }
        Ok(())
    }
    let mut bytes = 0;
    let _ = walk(body, shape, 0, &mut bytes);
    bytes
}

/// `field`, the part of a message that ends at byte `end`, as text: cut from `whole` (the message
/// already checked as UTF-8) where there is one, else checked on its own.
fn text<'a>(whole: Option<&'a str>, end: usize, field: &'a [u8], what: &str) -> Result<&'a str, String> {
    match whole.and_then(|w| w.get(end - field.len()..end)) {
        Some(s) => Ok(s),
        None => std::str::from_utf8(field).map_err(|_| format!("{what} is not valid UTF-8")),
    }
}

/// Pushes `item`, first taking from `budget` what the vector's growth allocates when it is full.
fn push<T>(v: &mut Vec<T>, item: T, budget: &mut Budget) -> Result<(), String> {
    if v.len() == v.capacity() {
        // A full vector doubles, to four at least.
        let more = v.capacity().max(4).saturating_mul(std::mem::size_of::<T>());
        budget.spend(more).map_err(|e| e.message)?;
    }
    v.push(item);
    Ok(())
}

/// Reads a whole `WriteRequest`, or says what is wrong with it. What its vectors take is taken
/// from `budget` as they grow: a label or a sample is 2 bytes at least in the body and 32 or 16
/// once read. When the budget refuses, so does this, and `budget` says why.
pub fn parse<'a>(body: &'a [u8], budget: &mut Budget) -> Result<Parsed<'a>, String> {
    let mut out = Parsed::default();
    let mut r = Reader { b: body };
    while !r.b.is_empty() {
        match r.key()? {
            (1, wire) => {
                expect("timeseries", wire, LEN)?;
                let ts = r.bytes()?;
                series(ts, &mut out, budget)?;
            }
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(out)
}

fn series<'a>(b: &'a [u8], out: &mut Parsed<'a>, budget: &mut Budget) -> Result<(), String> {
    let (l0, s0) = (out.labels.len(), out.samples.len());
    let mut histograms = 0;
    let mut r = Reader { b };
    while !r.b.is_empty() {
        match r.key()? {
            (1, wire) => {
                expect("labels", wire, LEN)?;
                let message = r.bytes()?;
                // A label's message is UTF-8 as a whole when its strings are and their lengths
                // are below 128 (the common case): then one check covers both strings.
                let whole = std::str::from_utf8(message).ok();
                let mut l = Reader { b: message };
                let (mut name, mut value) = ("", "");
                while !l.b.is_empty() {
                    match l.key()? {
                        (1, w) => {
                            expect("label name", w, LEN)?;
                            let field = l.bytes()?;
                            name = text(whole, message.len() - l.b.len(), field, "label name")?;
                        }
                        (2, w) => {
                            expect("label value", w, LEN)?;
                            let field = l.bytes()?;
                            value = text(whole, message.len() - l.b.len(), field, "label value")?;
                        }
                        (_, w) => l.skip(w)?,
                    }
                }
                push(&mut out.labels, (name, value), budget)?;
            }
            (2, wire) => {
                expect("samples", wire, LEN)?;
                let mut s = Reader { b: r.bytes()? };
                let (mut value, mut timestamp) = (0f64, 0i64);
                while !s.b.is_empty() {
                    match s.key()? {
                        (1, w) => {
                            expect("sample value", w, FIXED64)?;
                            value = f64::from_le_bytes(s.take(8)?.try_into().expect("8 bytes"));
                        }
                        (2, w) => {
                            expect("sample timestamp", w, VARINT)?;
                            timestamp = s.varint()? as i64;
                        }
                        (_, w) => s.skip(w)?,
                    }
                }
                push(&mut out.samples, (timestamp, value), budget)?;
            }
            (4, wire) => {
                expect("histograms", wire, LEN)?;
                r.bytes()?;
                histograms += 1;
            }
            (_, wire) => r.skip(wire)?,
        }
    }
    push(&mut out.series, (l0..out.labels.len(), s0..out.samples.len()), budget)?;
    push(&mut out.histograms, histograms, budget)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unlimited() -> Budget {
        Budget::counting(usize::MAX)
    }
    use crate::remote_write::proto::{Label, Sample, TimeSeries, WriteRequest};
    use proptest::prelude::*;
    use prost::Message;

    /// Labels and samples of one series.
    type Series = (Vec<(String, String)>, Vec<(i64, f64)>);

    fn request(series: &[Series]) -> WriteRequest {
        WriteRequest {
            timeseries: series
                .iter()
                .map(|(labels, samples)| TimeSeries {
                    labels: labels.iter().map(|(n, v)| Label { name: n.clone(), value: v.clone() }).collect(),
                    samples: samples.iter().map(|&(timestamp, value)| Sample { value, timestamp }).collect(),
                })
                .collect(),
        }
    }

    proptest! {
        /// Whatever prost encodes, the in-place reader reads back the same.
        #[test]
        fn it_reads_what_prost_writes(
            series in proptest::collection::vec(
                (
                    proptest::collection::vec(("[a-z_]{0,8}", "\\PC{0,12}"), 0..6),
                    proptest::collection::vec((any::<i64>(), any::<u64>()), 0..5),
                ),
                0..6,
            ),
        ) {
            let series: Vec<Series> = series
                .into_iter()
                .map(|(l, s)| (l, s.into_iter().map(|(t, b)| (t, f64::from_bits(b))).collect()))
                .collect();
            let bytes = request(&series).encode_to_vec();
            let parsed = parse(&bytes, &mut unlimited()).unwrap();
            prop_assert_eq!(parsed.series.len(), series.len());
            for ((labels, samples), (lr, sr)) in series.iter().zip(&parsed.series) {
                let got: Vec<(String, String)> =
                    parsed.labels[lr.clone()].iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
                prop_assert_eq!(&got, labels);
                let got: Vec<(i64, u64)> = parsed.samples[sr.clone()].iter().map(|(t, v)| (*t, v.to_bits())).collect();
                let want: Vec<(i64, u64)> = samples.iter().map(|(t, v)| (*t, v.to_bits())).collect();
                prop_assert_eq!(got, want);
            }
        }

        /// Truncated or arbitrary bytes are an error or a request, never a panic.
        #[test]
        fn damaged_requests_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), cut in 0usize..200) {
            let _ = parse(&bytes, &mut unlimited());
            let good = request(&[(vec![("__name__".into(), "up".into())], vec![(1, 1.0)])]).encode_to_vec();
            let _ = parse(&good[..cut.min(good.len())], &mut unlimited());
        }
    }

    #[test]
    fn truncation_and_bad_text_are_named() {
        let good = request(&[(vec![("__name__".into(), "up".into())], vec![(1, 1.0)])]).encode_to_vec();
        assert!(parse(&good[..good.len() - 3], &mut unlimited()).unwrap_err().contains("past the end"));
        let mut bad = good.clone();
        let at = bad.windows(2).position(|w| w == b"up").unwrap();
        bad[at] = 0xff;
        assert_eq!(parse(&bad, &mut unlimited()).unwrap_err(), "label value is not valid UTF-8");
    }

    #[test]
    fn what_the_vectors_take_is_charged_as_they_grow() {
        // One series of 100,000 empty labels: 200 KB of body, 3.2 MB of vector once read.
        let series = [&[0x0a, 0x00][..]].repeat(100_000).concat();
        let mut len = Vec::new();
        prost::encoding::encode_varint(series.len() as u64, &mut len);
        let body = [&[0x0a][..], &len, &series].concat();
        let mut budget = unlimited();
        let parsed = parse(&body, &mut budget).unwrap();
        assert_eq!(parsed.labels.len(), 100_000);
        let taken = parsed.labels.capacity() * std::mem::size_of::<(&str, &str)>();
        assert!(budget.spent() >= taken, "{} < {taken}", budget.spent());
        assert!(budget.spent() < 2 * taken, "{} charged for {taken}", budget.spent());
        // Refused once the budget is spent, before the vector grows past it, and `budget` says why.
        let mut budget = Budget::counting(1 << 20);
        let e = parse(&body, &mut budget).unwrap_err();
        assert!(e.contains("ingest.memory_bytes_max"), "{e}");
        assert_eq!(budget.refused().unwrap().status, axum::http::StatusCode::PAYLOAD_TOO_LARGE);
        assert!(budget.spent() <= 2 << 20, "{}", budget.spent());
    }
}
