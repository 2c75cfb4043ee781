//! The codec of one series' samples inside a block: timestamps and values as two columns, each
//! compressed with Pcodec. Pcodec finds what regular metric data has to give (steady scrape
//! intervals, counters moving by small integers or by multiples of 0.01, constant gauges) and
//! stores it in a fraction of a byte per sample, where the head's Gorilla chunks need one to two
//! bytes. It is lossless bit for bit, NaN payloads (staleness markers) included.
//!
//! Blocks of format 2 store each column as its own blob, so that series scraped together (every
//! series of a target carries the scrape's timestamp) share one timestamp column:
//!
//! ```text
//! u32  crc32c of the Pcodec bytes that follow
//! ...  one i64 (timestamps) or f64 (values) Pcodec column
//! ```
//!
//! Blocks of format 1 hold one blob per series with both columns, still read:
//!
//! ```text
//! u8   version (1)
//! u32  sample count, little endian
//! u32  crc32c of everything after this field
//! u32  length of the timestamp column
//! ...  timestamps: i64 Pcodec column
//! ...  values: f64 Pcodec column
//! ```

use pco::data_types::Number;

const VERSION: u8 = 1;
const HEADER_BYTES: usize = 9;

/// Pcodec's effort: level 4 compresses about a third faster than the default 8 and loses
/// little on metric data.
const COMPRESSION_LEVEL: usize = 4;

/// Why bytes are not a valid encoded series.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("encoded series is {0} bytes, shorter than its header")]
    Short(usize),
    #[error("encoded series format version {0} is unknown")]
    Version(u8),
    #[error("encoded series crc32c {computed:08x} does not match stored {stored:08x}")]
    Crc { stored: u32, computed: u32 },
    #[error("encoded series is malformed: {0}")]
    Malformed(String),
}

/// Bytes before a column blob's Pcodec bytes: their CRC32C.
const COLUMN_HEADER_BYTES: usize = 4;

/// Encodes one column (a series' timestamps or its values) as a blob of format 2.
pub fn encode_column<T: Number>(column: &[T]) -> Vec<u8> {
    let cfg = pco::ChunkConfig::default().with_compression_level(COMPRESSION_LEVEL);
    // Pcodec fails only on an invalid configuration, which this is not.
    let bytes = pco::standalone::simple_compress(column, &cfg).expect("pco compresses numbers");
    let mut out = Vec::with_capacity(COLUMN_HEADER_BYTES + bytes.len());
    out.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
    out.extend_from_slice(&bytes);
    out
}

/// Decodes a column blob of `count` numbers, checking its CRC and its length.
pub fn decode_column<T: Number>(blob: &[u8], count: usize) -> Result<Vec<T>, CodecError> {
    if blob.len() < COLUMN_HEADER_BYTES {
        return Err(CodecError::Short(blob.len()));
    }
    let stored = u32::from_le_bytes(blob[..4].try_into().expect("4 bytes"));
    let body = &blob[COLUMN_HEADER_BYTES..];
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(CodecError::Crc { stored, computed });
    }
    let column: Vec<T> = pco::standalone::simple_decompress(body).map_err(|e| CodecError::Malformed(e.to_string()))?;
    if column.len() != count {
        return Err(CodecError::Malformed(format!("{} numbers in a column of {count}", column.len())));
    }
    Ok(column)
}

/// Encodes samples sorted by timestamp as one blob of format 1 (blocks of format 2 write
/// [`encode_column`] twice instead).
#[cfg(test)]
pub fn encode_series(samples: &[(i64, f64)]) -> Vec<u8> {
    let ts: Vec<i64> = samples.iter().map(|s| s.0).collect();
    let vs: Vec<f64> = samples.iter().map(|s| s.1).collect();
    let cfg = pco::ChunkConfig::default().with_compression_level(COMPRESSION_LEVEL);
    // Pcodec fails only on an invalid configuration, which this is not.
    let ts = pco::standalone::simple_compress(&ts, &cfg).expect("pco compresses i64");
    let vs = pco::standalone::simple_compress(&vs, &cfg).expect("pco compresses f64");
    let mut body = Vec::with_capacity(4 + ts.len() + vs.len());
    body.extend_from_slice(&(ts.len() as u32).to_le_bytes());
    body.extend_from_slice(&ts);
    body.extend_from_slice(&vs);
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.push(VERSION);
    out.extend_from_slice(&(samples.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes what `encode_series` wrote, checking the version, the CRC and the counts.
pub fn decode_series(bytes: &[u8]) -> Result<Vec<(i64, f64)>, CodecError> {
    if bytes.len() < HEADER_BYTES + 4 {
        return Err(CodecError::Short(bytes.len()));
    }
    if bytes[0] != VERSION {
        return Err(CodecError::Version(bytes[0]));
    }
    let count = u32::from_le_bytes(bytes[1..5].try_into().expect("4 bytes")) as usize;
    let stored = u32::from_le_bytes(bytes[5..9].try_into().expect("4 bytes"));
    let body = &bytes[HEADER_BYTES..];
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(CodecError::Crc { stored, computed });
    }
    let ts_len = u32::from_le_bytes(body[..4].try_into().expect("4 bytes")) as usize;
    let rest = &body[4..];
    if ts_len > rest.len() {
        return Err(CodecError::Malformed(format!("timestamp column of {ts_len} bytes past the end")));
    }
    let bad = |e: pco::errors::PcoError| CodecError::Malformed(e.to_string());
    let ts: Vec<i64> = pco::standalone::simple_decompress(&rest[..ts_len]).map_err(bad)?;
    let vs: Vec<f64> = pco::standalone::simple_decompress(&rest[ts_len..]).map_err(bad)?;
    if ts.len() != count || vs.len() != count {
        return Err(CodecError::Malformed(format!(
            "{} timestamps and {} values for {count} samples",
            ts.len(),
            vs.len()
        )));
    }
    Ok(ts.into_iter().zip(vs).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::STALE_NAN_BITS;
    use proptest::prelude::*;

    fn round_trip(samples: &[(i64, f64)]) -> usize {
        let bytes = encode_series(samples);
        let back = decode_series(&bytes).unwrap();
        assert_eq!(back.len(), samples.len());
        for (a, b) in samples.iter().zip(&back) {
            assert_eq!(a.0, b.0);
            assert_eq!(a.1.to_bits(), b.1.to_bits(), "value bits differ: {} vs {}", a.1, b.1);
        }
        bytes.len()
    }

    #[test]
    fn adversarial_series_round_trip() {
        let stale = f64::from_bits(STALE_NAN_BITS);
        let cases: Vec<Vec<(i64, f64)>> = vec![
            vec![],
            vec![(0, 0.0)],
            vec![(1, 1.0), (1, 1.0), (1, 2.0)],
            vec![(100, 1.0), (50, 2.0), (-7, 3.0), (i64::MIN, -0.0), (i64::MAX, f64::MAX), (0, f64::MIN_POSITIVE)],
            vec![(0, f64::NAN), (15_000, stale), (30_000, f64::INFINITY), (45_000, f64::NEG_INFINITY), (60_000, stale)],
            vec![(0, 1.0), (1 << 40, 1.0), (-(1 << 40), 1.0), (i64::MAX, 1.0), (i64::MIN, 1.0)],
        ];
        for c in cases {
            round_trip(&c);
        }
    }

    #[test]
    fn regular_series_take_a_fraction_of_a_byte_per_sample() {
        // A counter of CPU seconds scraped every 15 s for 2 hours, with a little jitter.
        let mut v = 0.0f64;
        let samples: Vec<(i64, f64)> = (0..480)
            .map(|i| {
                v = ((v + 0.1 + (i % 13) as f64 * 0.01) * 100.0).round() / 100.0;
                (1_700_000_000_000 + i * 15_000 + if i % 17 == 0 { 3 } else { 0 }, v)
            })
            .collect();
        let bytes = round_trip(&samples);
        assert!(bytes < samples.len(), "{bytes} bytes for {} samples", samples.len());
    }

    #[test]
    fn damaged_bytes_are_errors() {
        let bytes = encode_series(&[(1, 1.0), (2, 2.0), (3, 3.0)]);
        assert_eq!(decode_series(&bytes[..5]).unwrap_err(), CodecError::Short(5));
        let mut v = bytes.clone();
        v[0] = 9;
        assert_eq!(decode_series(&v).unwrap_err(), CodecError::Version(9));
        let mut v = bytes.clone();
        *v.last_mut().unwrap() ^= 1;
        assert!(matches!(decode_series(&v), Err(CodecError::Crc { .. })));
        let mut v = bytes.clone();
        v[1] = 7;
        assert!(matches!(decode_series(&v), Err(CodecError::Malformed(_))));
    }

    #[test]
    fn damaged_columns_are_errors() {
        let blob = encode_column(&[1.5f64, -2.0, f64::from_bits(STALE_NAN_BITS)]);
        let back: Vec<f64> = decode_column(&blob, 3).unwrap();
        assert_eq!(back[2].to_bits(), STALE_NAN_BITS);
        assert_eq!(decode_column::<f64>(&blob[..3], 3).unwrap_err(), CodecError::Short(3));
        assert!(matches!(decode_column::<f64>(&blob, 4), Err(CodecError::Malformed(_))));
        let mut bad = blob.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(decode_column::<f64>(&bad, 3), Err(CodecError::Crc { .. })));
    }

    proptest! {
        #[test]
        fn any_series_round_trips(samples in proptest::collection::vec((any::<i64>(), any::<u64>()), 0..300)) {
            let samples: Vec<(i64, f64)> = samples.into_iter().map(|(t, b)| (t, f64::from_bits(b))).collect();
            round_trip(&samples);
            let timestamps: Vec<i64> = samples.iter().map(|s| s.0).collect();
            let values: Vec<u64> = samples.iter().map(|s| s.1.to_bits()).collect();
            prop_assert_eq!(decode_column::<i64>(&encode_column(&timestamps), samples.len()).unwrap(), timestamps);
            let back: Vec<f64> = decode_column(&encode_column(&samples.iter().map(|s| s.1).collect::<Vec<_>>()), samples.len()).unwrap();
            prop_assert_eq!(back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), values);
        }

        #[test]
        fn arbitrary_bodies_never_panic(count in any::<u32>(), body in proptest::collection::vec(any::<u8>(), 4..128)) {
            let mut bytes = vec![VERSION];
            bytes.extend_from_slice(&count.to_le_bytes());
            bytes.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
            bytes.extend_from_slice(&body);
            let _ = decode_series(&bytes);
        }
    }
}
