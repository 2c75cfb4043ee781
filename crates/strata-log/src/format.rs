//! The on-disk batch format. One batch is what one append request wrote; its records get
//! consecutive offsets starting at the batch's base offset.
//!
//! ```text
//! batch header, 48 bytes, little endian
//!   0  u32  batch_len        whole batch, header included
//!   4  u32  crc32c           of bytes [8, batch_len)
//!   8  u8   version          FORMAT_VERSION
//!   9  u8   flags            bits 0-1: the codec of the records (0 none, 1 zstd)
//!  10  u16  reserved         0
//!  12  u32  record_count     >= 1
//!  16  u64  base_offset
//!  24  i64  append_time_ms   when the log appended the batch; the time index and retention use it
//!  32  i64  min_timestamp_ns of the records
//!  40  i64  max_timestamp_ns of the records
//! records, each
//!   u32 record_len (bytes after this field), i64 timestamp_ns,
//!   u16 len + tenant, u16 len + source_id,
//!   u16 header count, each: u16 len + key, u32 len + value,
//!   u32 len + payload
//! (compressed together as one zstd frame when the codec says so; the CRC covers what is stored)
//! ```

use strata_model::topic::Compression;

use crate::{Error, Record, Result};

pub const FORMAT_VERSION: u8 = 1;
pub const HEADER_BYTES: usize = 48;
const CODEC_MASK: u8 = 0b11;
/// zstd's level for batches: its fastest that still finds the repetition across records.
const ZSTD_LEVEL: i32 = 1;

/// The most a batch may inflate to. Batches are written at most a few MiB before compression;
/// a frame that says it holds more is damage, refused before anything is allocated.
const INFLATED_BYTES_MAX: u64 = 256 << 20;

thread_local! {
    // One context per thread, kept: a context is hundreds of KiB to set up, and the threads that
    // compress (the gateway's decode threads, the partition writers) and decompress (consumers)
    // do it batch after batch.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> = const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
}

fn zstd_compress(data: &[u8]) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with_borrow_mut(|c| {
        let c = match c {
            Some(c) => c,
            None => c.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
        };
        c.compress(data)
    })
}

/// Inflates one frame into a buffer of exactly its content size (which `zstd_compress` writes in
/// the frame header), with no growing and copying on the way.
fn zstd_decompress(frame: &[u8]) -> std::result::Result<Vec<u8>, Invalid> {
    let bad = Invalid::Records("zstd frame does not decompress");
    let size = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) if size <= INFLATED_BYTES_MAX => size as usize,
        _ => return Err(bad),
    };
    DECOMPRESSOR.with_borrow_mut(|d| {
        let d = match d {
            Some(d) => d,
            None => d.insert(zstd::bulk::Decompressor::new().map_err(|_| bad.clone())?),
        };
        match d.decompress(frame, size) {
            Ok(out) if out.len() == size => Ok(out),
            _ => Err(bad),
        }
    })
}

/// How a topic's batches are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    #[default]
    None,
    Zstd,
}

impl Codec {
    fn flag(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Zstd => 1,
        }
    }

    fn from_flags(flags: u8) -> Option<Codec> {
        match flags {
            0 => Some(Codec::None),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }

    /// `none` or `zstd`, as configuration spells it.
    pub fn parse(s: &str) -> Option<Codec> {
        Compression::ALL.into_iter().find(|c| c.name() == s).map(Codec::from)
    }
}

/// A topic declaration's compression is the codec of the same name.
impl From<Compression> for Codec {
    fn from(c: Compression) -> Codec {
        match c {
            Compression::None => Codec::None,
            Compression::Zstd => Codec::Zstd,
        }
    }
}

/// Records encoded for one append, without the batch header; the log adds the header when it
/// assigns offsets. Encoding happens on the caller's thread, so the log's writer only copies.
#[derive(Debug, Clone, Default)]
pub struct EncodedRecords {
    buf: Vec<u8>,
    count: u32,
    min_ts: i64,
    max_ts: i64,
    /// How `buf` is compressed; records can be pushed only while it is `None`.
    codec: Codec,
}

impl EncodedRecords {
    pub fn new() -> Self {
        EncodedRecords { buf: Vec::new(), count: 0, min_ts: i64::MAX, max_ts: i64::MIN, codec: Codec::None }
    }

    /// Appends one record. Fails, leaving the batch as it was, when a field is too long for the format.
    pub fn push(
        &mut self,
        timestamp_ns: i64,
        tenant: &str,
        source_id: &str,
        headers: &[(&str, &[u8])],
        payload: &[u8],
    ) -> Result<()> {
        if self.codec != Codec::None {
            return Err(Error::Compressed);
        }
        check_len("tenant", tenant.len(), u16::MAX as usize)?;
        check_len("source_id", source_id.len(), u16::MAX as usize)?;
        check_len("headers", headers.len(), u16::MAX as usize)?;
        for (k, v) in headers {
            check_len("header name", k.len(), u16::MAX as usize)?;
            check_len("header value", v.len(), u32::MAX as usize)?;
        }
        check_len("payload", payload.len(), u32::MAX as usize - 1024)?;
        let body_len = 8
            + 2
            + tenant.len()
            + 2
            + source_id.len()
            + 2
            + headers.iter().map(|(k, v)| 2 + k.len() + 4 + v.len()).sum::<usize>()
            + 4
            + payload.len();
        check_len("record", body_len, u32::MAX as usize)?;
        let b = &mut self.buf;
        b.reserve(4 + body_len);
        b.extend_from_slice(&(body_len as u32).to_le_bytes());
        b.extend_from_slice(&timestamp_ns.to_le_bytes());
        b.extend_from_slice(&(tenant.len() as u16).to_le_bytes());
        b.extend_from_slice(tenant.as_bytes());
        b.extend_from_slice(&(source_id.len() as u16).to_le_bytes());
        b.extend_from_slice(source_id.as_bytes());
        b.extend_from_slice(&(headers.len() as u16).to_le_bytes());
        for (k, v) in headers {
            b.extend_from_slice(&(k.len() as u16).to_le_bytes());
            b.extend_from_slice(k.as_bytes());
            b.extend_from_slice(&(v.len() as u32).to_le_bytes());
            b.extend_from_slice(v);
        }
        b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        b.extend_from_slice(payload);
        self.count += 1;
        self.min_ts = self.min_ts.min(timestamp_ns);
        self.max_ts = self.max_ts.max(timestamp_ns);
        Ok(())
    }

    pub fn push_record(&mut self, r: &Record) -> Result<()> {
        let headers: Vec<(&str, &[u8])> = r.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        self.push(r.timestamp_ns, &r.tenant, &r.source_id, &headers, &r.payload)
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encoded bytes of the records, without the batch header (compressed, once they are).
    pub fn bytes_len(&self) -> usize {
        self.buf.len()
    }

    /// Compresses the records with `codec`, once, keeping them as they are when that would not
    /// make them smaller. CPU work: call it where blocking is fine (a blocking thread, a
    /// consumer's own thread), not on an async worker.
    pub fn compress(&mut self, codec: Codec) {
        if self.codec != Codec::None || codec == Codec::None || self.buf.is_empty() {
            return;
        }
        if let Ok(z) = zstd_compress(&self.buf)
            && z.len() < self.buf.len()
        {
            self.buf = z;
            self.codec = codec;
        }
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<()> {
    if len > max {
        return Err(Error::RecordTooLarge { field, len, max });
    }
    Ok(())
}

/// A decoded batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub batch_len: u32,
    pub crc: u32,
    pub codec: Codec,
    pub record_count: u32,
    pub base_offset: u64,
    pub append_time_ms: i64,
    pub min_timestamp_ns: i64,
    pub max_timestamp_ns: i64,
}

impl BatchHeader {
    pub fn end_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }
}

/// Writes a batch (header and records) to `out` and returns its header.
pub fn encode_batch(out: &mut Vec<u8>, base_offset: u64, append_time_ms: i64, records: &EncodedRecords) -> BatchHeader {
    debug_assert!(records.count > 0);
    let start = out.len();
    let batch_len = (HEADER_BYTES + records.buf.len()) as u32;
    out.extend_from_slice(&batch_len.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.push(FORMAT_VERSION);
    out.push(records.codec.flag());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&records.count.to_le_bytes());
    out.extend_from_slice(&base_offset.to_le_bytes());
    out.extend_from_slice(&append_time_ms.to_le_bytes());
    out.extend_from_slice(&records.min_ts.to_le_bytes());
    out.extend_from_slice(&records.max_ts.to_le_bytes());
    out.extend_from_slice(&records.buf);
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    BatchHeader {
        batch_len,
        crc,
        codec: records.codec,
        record_count: records.count,
        base_offset,
        append_time_ms,
        min_timestamp_ns: records.min_ts,
        max_timestamp_ns: records.max_ts,
    }
}

/// Why bytes on disk are not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    Length(u32),
    Version(u8),
    Flags(u8),
    Crc { stored: u32, computed: u32 },
    Count,
    Offset { expected: u64, found: u64 },
    Records(&'static str),
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::Length(n) => write!(f, "batch length {n} is impossible"),
            Invalid::Version(v) => write!(f, "batch format version {v} is unknown"),
            Invalid::Flags(x) => write!(f, "batch flags {x:#04x} name no known codec"),
            Invalid::Crc { stored, computed } => write!(f, "crc32c {computed:08x} does not match stored {stored:08x}"),
            Invalid::Count => write!(f, "batch has no records"),
            Invalid::Offset { expected, found } => {
                write!(f, "batch base offset {found}, expected {expected}")
            }
            Invalid::Records(why) => write!(f, "records do not decode: {why}"),
        }
    }
}

/// Parses and checks the fixed header. The CRC is checked separately, once the whole batch is read.
pub fn decode_header(h: &[u8; HEADER_BYTES], batch_bytes_max: u32) -> std::result::Result<BatchHeader, Invalid> {
    let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
    let batch_len = u32_at(0);
    if (batch_len as usize) < HEADER_BYTES || batch_len > batch_bytes_max {
        return Err(Invalid::Length(batch_len));
    }
    if h[8] != FORMAT_VERSION {
        return Err(Invalid::Version(h[8]));
    }
    let codec = Codec::from_flags(h[9]).filter(|_| h[9] & !CODEC_MASK == 0).ok_or(Invalid::Flags(h[9]))?;
    let record_count = u32_at(12);
    if record_count == 0 {
        return Err(Invalid::Count);
    }
    Ok(BatchHeader {
        batch_len,
        crc: u32_at(4),
        codec,
        record_count,
        base_offset: u64_at(16),
        append_time_ms: u64_at(24) as i64,
        min_timestamp_ns: u64_at(32) as i64,
        max_timestamp_ns: u64_at(40) as i64,
    })
}

/// Checks the CRC of a whole batch (`bytes` starts at the header).
/// Appends a stored batch (`bytes`, its CRC checked) to `out` with its records compressed by
/// `codec`: the same offsets, times and record count, a new codec flag and CRC. A batch that is
/// compressed already, or that would not get smaller, is appended as it is. Returns whether it was
/// compressed here.
pub fn recompress(header: &BatchHeader, bytes: &[u8], codec: Codec, out: &mut Vec<u8>) -> bool {
    let mut records = EncodedRecords {
        buf: bytes[HEADER_BYTES..].to_vec(),
        count: header.record_count,
        min_ts: header.min_timestamp_ns,
        max_ts: header.max_timestamp_ns,
        codec: header.codec,
    };
    records.compress(codec);
    if records.codec == header.codec {
        out.extend_from_slice(bytes);
        return false;
    }
    encode_batch(out, header.base_offset, header.append_time_ms, &records);
    true
}

pub fn check_crc(header: &BatchHeader, bytes: &[u8]) -> std::result::Result<(), Invalid> {
    let computed = crc32c::crc32c(&bytes[8..]);
    if computed != header.crc {
        return Err(Invalid::Crc { stored: header.crc, computed });
    }
    Ok(())
}

/// Decodes the records of a CRC-checked batch, calling `f(offset, record)` for each one at or
/// after `from_offset`.
pub fn decode_records(
    header: &BatchHeader,
    bytes: &[u8],
    from_offset: u64,
    mut f: impl FnMut(u64, Record),
) -> std::result::Result<(), Invalid> {
    let inflated;
    let body = match header.codec {
        Codec::None => &bytes[HEADER_BYTES..],
        Codec::Zstd => {
            inflated = zstd_decompress(&bytes[HEADER_BYTES..])?;
            &inflated[..]
        }
    };
    let mut r = Reader { b: body };
    for i in 0..header.record_count {
        let len = r.u32()? as usize;
        let mut rec = Reader { b: r.take(len)? };
        let offset = header.base_offset + u64::from(i);
        if offset < from_offset {
            continue;
        }
        let timestamp_ns = rec.u64()? as i64;
        let tenant = rec.string16()?;
        let source_id = rec.string16()?;
        let n_headers = rec.u16()?;
        let mut headers = Vec::with_capacity(usize::from(n_headers));
        for _ in 0..n_headers {
            let k = rec.string16()?;
            let vlen = rec.u32()? as usize;
            headers.push((k, rec.take(vlen)?.to_vec()));
        }
        let plen = rec.u32()? as usize;
        let payload = rec.take(plen)?.to_vec();
        if !rec.b.is_empty() {
            return Err(Invalid::Records("trailing bytes in record"));
        }
        f(offset, Record { timestamp_ns, tenant, source_id, headers, payload });
    }
    if !r.b.is_empty() {
        return Err(Invalid::Records("trailing bytes after records"));
    }
    Ok(())
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], Invalid> {
        if self.b.len() < n {
            return Err(Invalid::Records("field runs past the end"));
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Ok(head)
    }
    fn u16(&mut self) -> std::result::Result<u16, Invalid> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> std::result::Result<u32, Invalid> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> std::result::Result<u64, Invalid> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn string16(&mut self) -> std::result::Result<String, Invalid> {
        let n = usize::from(self.u16()?);
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| Invalid::Records("string is not utf-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_declared_compression_is_the_codec_configuration_names_alike() {
        for c in Compression::ALL {
            assert_eq!(Codec::parse(c.name()), Some(Codec::from(c)), "{c:?}");
        }
        assert_eq!(Codec::from(Compression::None), Codec::None);
        assert_eq!(Codec::from(Compression::Zstd), Codec::Zstd);
        assert_eq!(Codec::parse("gzip"), None);
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        (
            any::<i64>(),
            "[a-z0-9_-]{1,64}",
            ".{0,40}",
            proptest::collection::vec(("[a-z-]{1,12}", proptest::collection::vec(any::<u8>(), 0..20)), 0..3),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(timestamp_ns, tenant, source_id, headers, payload)| Record {
                timestamp_ns,
                tenant,
                source_id,
                headers,
                payload,
            })
    }

    proptest! {
        #[test]
        fn batches_round_trip(
            records in proptest::collection::vec(arb_record(), 1..20),
            base in 0u64..1 << 40,
            t in any::<i64>(),
            zstd in any::<bool>(),
        ) {
            let mut enc = EncodedRecords::new();
            for r in &records {
                enc.push_record(r).unwrap();
            }
            let plain = enc.bytes_len();
            if zstd {
                enc.compress(Codec::Zstd);
                prop_assert!(enc.bytes_len() <= plain);
                prop_assert_eq!(enc.codec() == Codec::Zstd, enc.bytes_len() < plain, "compressed only when smaller");
                if enc.codec() == Codec::Zstd {
                    prop_assert!(enc.clone().push(0, "t", "s", &[], b"late").is_err(), "a compressed batch takes no more records");
                }
            }
            let mut out = Vec::new();
            let h = encode_batch(&mut out, base, t, &enc);
            prop_assert_eq!(out.len(), h.batch_len as usize);
            let decoded = decode_header(out[..HEADER_BYTES].try_into().unwrap(), u32::MAX).unwrap();
            prop_assert_eq!(decoded, h);
            check_crc(&decoded, &out).unwrap();
            let mut back = Vec::new();
            decode_records(&decoded, &out, base, |o, r| back.push((o, r))).unwrap();
            prop_assert_eq!(back.len(), records.len());
            for (i, (o, r)) in back.into_iter().enumerate() {
                prop_assert_eq!(o, base + i as u64);
                prop_assert_eq!(&r, &records[i]);
            }
        }

        #[test]
        fn any_flipped_byte_is_caught(pos in 0usize..200, bit in 0u8..8, zstd in any::<bool>()) {
            let mut enc = EncodedRecords::new();
            enc.push(1, "t", "s", &[("k", b"v")], &[7u8; 100]).unwrap();
            enc.push(2, "t", "s", &[], &[9u8; 40]).unwrap();
            if zstd {
                enc.compress(Codec::Zstd);
                prop_assert_eq!(enc.codec(), Codec::Zstd);
            }
            let mut out = Vec::new();
            encode_batch(&mut out, 5, 9, &enc);
            let pos = pos % out.len();
            out[pos] ^= 1 << bit;
            let ok = decode_header(out[..HEADER_BYTES].try_into().unwrap(), u32::MAX)
                .and_then(|h| if h.batch_len as usize == out.len() { check_crc(&h, &out).map(|_| h) } else { Err(Invalid::Length(h.batch_len)) });
            prop_assert!(ok.is_err());
        }
    }

    #[test]
    fn repetitive_records_compress_and_unknown_codecs_are_refused() {
        let mut enc = EncodedRecords::new();
        for i in 0..200 {
            let line = format!(r#"{{"source_id":"web-1","level":"info","message":"GET /api/v1/items/{i} 200"}}"#);
            enc.push(i, "acme", "web-1", &[], line.as_bytes()).unwrap();
        }
        let plain = enc.bytes_len();
        enc.compress(Codec::Zstd);
        assert!(enc.bytes_len() * 5 < plain, "{} of {plain} bytes", enc.bytes_len());
        let mut out = Vec::new();
        encode_batch(&mut out, 0, 0, &enc);
        let mut h: [u8; HEADER_BYTES] = out[..HEADER_BYTES].try_into().unwrap();
        h[9] = 2;
        assert_eq!(decode_header(&h, u32::MAX), Err(Invalid::Flags(2)));
        h[9] = 0x81;
        assert_eq!(decode_header(&h, u32::MAX), Err(Invalid::Flags(0x81)));
    }
}
