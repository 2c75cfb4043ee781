//! A remote write `WriteRequest` read in place: label strings are borrowed from the decompressed
//! body and every series lands in three shared vectors, where decoding into the `proto` types
//! costs two allocations per label. Series, their labels and float samples are read; native
//! histogram samples are counted so that they can be refused by name rather than dropped
//! unseen; exemplars and metadata, which no query of Strata uses, are skipped.

use std::ops::Range;

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

/// `field`, the part of a message that ends at byte `end`, as text: cut from `whole` (the message
/// already checked as UTF-8) where there is one, else checked on its own.
fn text<'a>(whole: Option<&'a str>, end: usize, field: &'a [u8], what: &str) -> Result<&'a str, String> {
    match whole.and_then(|w| w.get(end - field.len()..end)) {
        Some(s) => Ok(s),
        None => std::str::from_utf8(field).map_err(|_| format!("{what} is not valid UTF-8")),
    }
}

/// Reads a whole `WriteRequest`, or says what is wrong with it.
pub fn parse(body: &[u8]) -> Result<Parsed<'_>, String> {
    let mut out = Parsed::default();
    let mut r = Reader { b: body };
    while !r.b.is_empty() {
        match r.key()? {
            (1, wire) => {
                expect("timeseries", wire, LEN)?;
                let ts = r.bytes()?;
                series(ts, &mut out)?;
            }
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(out)
}

fn series<'a>(b: &'a [u8], out: &mut Parsed<'a>) -> Result<(), String> {
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
                out.labels.push((name, value));
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
                out.samples.push((timestamp, value));
            }
            (4, wire) => {
                expect("histograms", wire, LEN)?;
                r.bytes()?;
                histograms += 1;
            }
            (_, wire) => r.skip(wire)?,
        }
    }
    out.series.push((l0..out.labels.len(), s0..out.samples.len()));
    out.histograms.push(histograms);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
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
            let parsed = parse(&bytes).unwrap();
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
            let _ = parse(&bytes);
            let good = request(&[(vec![("__name__".into(), "up".into())], vec![(1, 1.0)])]).encode_to_vec();
            let _ = parse(&good[..cut.min(good.len())]);
        }
    }

    #[test]
    fn truncation_and_bad_text_are_named() {
        let good = request(&[(vec![("__name__".into(), "up".into())], vec![(1, 1.0)])]).encode_to_vec();
        assert!(parse(&good[..good.len() - 3]).unwrap_err().contains("past the end"));
        let mut bad = good.clone();
        let at = bad.windows(2).position(|w| w == b"up").unwrap();
        bad[at] = 0xff;
        assert_eq!(parse(&bad).unwrap_err(), "label value is not valid UTF-8");
    }
}
