//! A chunk of samples of one series: timestamps as delta-of-delta, values as the XOR of each with
//! the previous, in a bit stream (the scheme of Facebook's Gorilla paper, which Prometheus uses
//! too). Arithmetic on timestamps wraps, so any sequence of i64 timestamps round-trips, including
//! equal, decreasing and extreme ones; values round-trip bit for bit, NaN payloads included.
//!
//! ```text
//! u8   version (1)
//! u32  sample count, little endian
//! u32  crc32c of the bit stream
//! ...  bit stream
//! ```
//! Timestamps: the first as 64 bits; then the delta-of-delta as `0` (zero), `10`+7 bits,
//! `110`+9 bits, `1110`+12 bits (two's complement in that width), or `1111`+64 bits.
//! Values: the first as 64 bits; then `0` for an XOR of zero, `10` + the meaningful bits when they
//! fit the previous leading/trailing window, else `11` + 6 bits of leading zeros + 6 bits of
//! (meaningful length - 1) + the meaningful bits.

const VERSION: u8 = 1;
const HEADER_BYTES: usize = 9;

/// Why bytes are not a valid chunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk is {0} bytes, shorter than its 9-byte header")]
    Short(usize),
    #[error("chunk format version {0} is unknown")]
    Version(u8),
    #[error("chunk crc32c {computed:08x} does not match stored {stored:08x}")]
    Crc { stored: u32, computed: u32 },
    #[error("chunk bit stream ends before sample {0}")]
    Truncated(u32),
}

#[derive(Debug, Clone)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used in the last byte (0 = a new byte is needed).
    used: u8,
}

/// The least a bit stream grows by when it is full.
const GROW_BYTES_MIN: usize = 32;

impl BitWriter {
    /// Appends a byte. A full stream grows by a quarter (at least `GROW_BYTES_MIN`) rather than
    /// doubling: every series in the head has an open chunk, and doubling left the streams of a
    /// million series with 60 samples each (about 150 bytes) in 256-byte allocations.
    fn push(&mut self, byte: u8) {
        if self.bytes.len() == self.bytes.capacity() {
            self.bytes.reserve_exact((self.bytes.len() / 4).max(GROW_BYTES_MIN));
        }
        self.bytes.push(byte);
    }

    /// Writes the low `bits` bits of `value`, most significant first: the rest of the last byte,
    /// then whole bytes, then the start of a new one.
    fn write(&mut self, value: u64, bits: u8) {
        debug_assert!(bits <= 64);
        let mut remaining = bits;
        if self.used != 0 && remaining > 0 {
            let free = 8 - self.used;
            let take = free.min(remaining);
            let part = ((value >> (remaining - take)) & ((1u64 << take) - 1)) as u8;
            *self.bytes.last_mut().expect("a byte is in use") |= part << (free - take);
            self.used = (self.used + take) % 8;
            remaining -= take;
        }
        while remaining >= 8 {
            remaining -= 8;
            self.push((value >> remaining) as u8);
        }
        if remaining > 0 {
            // The low `remaining` bits, at the top of the byte.
            self.push((value << (8 - remaining)) as u8);
            self.used = remaining;
        }
    }
}

struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn read(&mut self, bits: u8) -> Option<u64> {
        if self.pos + bits as usize > self.bytes.len() * 8 {
            return None;
        }
        let mut v = 0u64;
        let mut remaining = bits;
        // Up to a byte at a step: what is left of the current byte, or as much as is wanted.
        while remaining > 0 {
            let byte = self.bytes[self.pos / 8];
            let left = 8 - (self.pos % 8) as u8;
            let take = left.min(remaining);
            let part = (byte >> (left - take)) & (((1u16 << take) - 1) as u8);
            v = (v << take) | u64::from(part);
            self.pos += usize::from(take);
            remaining -= take;
        }
        Some(v)
    }

    fn bit(&mut self) -> Option<bool> {
        self.read(1).map(|b| b == 1)
    }
}

/// Whether `v` fits in `bits` bits of two's complement.
fn fits(v: i64, bits: u8) -> bool {
    let min = -(1i64 << (bits - 1));
    let max = (1i64 << (bits - 1)) - 1;
    (min..=max).contains(&v)
}

fn sign_extend(v: u64, bits: u8) -> i64 {
    let shift = 64 - u32::from(bits);
    ((v << shift) as i64) >> shift
}

/// Encodes samples `(timestamp, value)` into a chunk.
pub fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
    let mut a = ChunkAppender::new();
    for &(ts, v) in samples {
        a.append(ts, v);
    }
    a.to_chunk()
}

/// A chunk being written, one sample at a time: the head's open chunk. It holds only the bit
/// stream and the state needed to continue it, so an open chunk costs what a sealed one does.
#[derive(Debug, Clone)]
pub struct ChunkAppender {
    w: BitWriter,
    count: u32,
    prev_ts: i64,
    prev_delta: i64,
    prev_bits: u64,
    leading: u8,
    trailing: u8,
}

impl Default for ChunkAppender {
    fn default() -> Self {
        ChunkAppender::new()
    }
}

impl ChunkAppender {
    pub fn new() -> ChunkAppender {
        ChunkAppender {
            w: BitWriter { bytes: Vec::new(), used: 0 },
            count: 0,
            prev_ts: 0,
            prev_delta: 0,
            prev_bits: 0,
            leading: u8::MAX,
            trailing: 0,
        }
    }

    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The newest timestamp appended (meaningless when empty).
    pub fn last_timestamp(&self) -> i64 {
        self.prev_ts
    }

    /// The newest value appended (meaningless when empty).
    pub fn last_value(&self) -> f64 {
        f64::from_bits(self.prev_bits)
    }

    /// The byte the next sample will be written into (0 when there is none yet).
    pub fn last_byte(&self) -> u8 {
        self.w.bytes.last().copied().unwrap_or(0)
    }

    /// Bytes of the bit stream so far.
    pub fn bytes_len(&self) -> usize {
        self.w.bytes.len()
    }

    pub fn append(&mut self, ts: i64, v: f64) {
        let bits = v.to_bits();
        let w = &mut self.w;
        if self.count == 0 {
            w.write(ts as u64, 64);
            w.write(bits, 64);
        } else {
            let delta = ts.wrapping_sub(self.prev_ts);
            let dod = if self.count == 1 { delta } else { delta.wrapping_sub(self.prev_delta) };
            if dod == 0 {
                w.write(0, 1);
            } else if fits(dod, 7) {
                w.write(0b10, 2);
                w.write(dod as u64 & 0x7f, 7);
            } else if fits(dod, 9) {
                w.write(0b110, 3);
                w.write(dod as u64 & 0x1ff, 9);
            } else if fits(dod, 12) {
                w.write(0b1110, 4);
                w.write(dod as u64 & 0xfff, 12);
            } else {
                w.write(0b1111, 4);
                w.write(dod as u64, 64);
            }
            self.prev_delta = delta;
            let xor = bits ^ self.prev_bits;
            if xor == 0 {
                w.write(0, 1);
            } else {
                let lz = xor.leading_zeros().min(63) as u8;
                let tz = xor.trailing_zeros() as u8;
                if self.leading != u8::MAX && lz >= self.leading && tz >= self.trailing {
                    w.write(0b10, 2);
                    let len = 64 - self.leading - self.trailing;
                    w.write(xor >> self.trailing, len);
                } else {
                    self.leading = lz;
                    self.trailing = tz;
                    let len = 64 - lz - tz;
                    w.write(0b11, 2);
                    w.write(u64::from(lz), 6);
                    w.write(u64::from(len - 1), 6);
                    w.write(xor >> tz, len);
                }
            }
        }
        self.prev_ts = ts;
        self.prev_bits = bits;
        self.count += 1;
    }

    /// The samples appended so far. The stream was written by this process, so it decodes.
    pub fn samples(&self) -> Vec<(i64, f64)> {
        Chunk { count: self.count, stream: &self.w.bytes }.decode().expect("a chunk this process wrote decodes")
    }

    /// Appends the samples with `from <= t <= to` to `out`.
    pub fn extend_range(&self, from: i64, to: i64, out: &mut Vec<(i64, f64)>) {
        Chunk { count: self.count, stream: &self.w.bytes }
            .extend_range(from, to, out)
            .expect("a chunk this process wrote decodes")
    }

    /// `Chunk::value_at_from` over the samples appended so far. Appending more leaves a position
    /// valid: the bits before it do not change.
    pub fn value_at_from(&self, t: i64, from: &mut ChunkPos) -> Option<f64> {
        Chunk { count: self.count, stream: &self.w.bytes }
            .value_at_from(t, from)
            .expect("a chunk this process wrote decodes")
    }

    /// The chunk with its header, as `Chunk::new` reads it.
    pub fn to_chunk(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.w.bytes.len());
        out.push(VERSION);
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&self.w.bytes).to_le_bytes());
        out.extend_from_slice(&self.w.bytes);
        out
    }
}

/// A checked chunk, ready to iterate.
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a> {
    count: u32,
    stream: &'a [u8],
}

impl<'a> Chunk<'a> {
    /// Checks the header and the CRC. Decoding can still fail on a chunk written by a buggy
    /// encoder; the iterator then yields an error instead of panicking.
    pub fn new(bytes: &'a [u8]) -> Result<Chunk<'a>, ChunkError> {
        if bytes.len() < HEADER_BYTES {
            return Err(ChunkError::Short(bytes.len()));
        }
        if bytes[0] != VERSION {
            return Err(ChunkError::Version(bytes[0]));
        }
        let count = u32::from_le_bytes(bytes[1..5].try_into().expect("4 bytes"));
        let stored = u32::from_le_bytes(bytes[5..9].try_into().expect("4 bytes"));
        let stream = &bytes[HEADER_BYTES..];
        let computed = crc32c::crc32c(stream);
        if stored != computed {
            return Err(ChunkError::Crc { stored, computed });
        }
        Ok(Chunk { count, stream })
    }

    /// A chunk this process encoded and holds in memory (the head's sealed chunks): the header is
    /// read, the CRC not computed again. A head lookup happens for every resent sample, and the
    /// CRC over the whole chunk cost as much as decoding part of it; it guards bytes that were on
    /// disk, which these never were.
    pub fn in_memory(bytes: &'a [u8]) -> Chunk<'a> {
        assert!(bytes.len() >= HEADER_BYTES && bytes[0] == VERSION, "a chunk this process encoded has its header");
        let count = u32::from_le_bytes(bytes[1..5].try_into().expect("4 bytes"));
        Chunk { count, stream: &bytes[HEADER_BYTES..] }
    }

    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> ChunkIter<'a> {
        self.iter_at(&ChunkPos::default())
    }

    /// An iterator going on from `pos`, a position taken in this very chunk.
    fn iter_at(&self, pos: &ChunkPos) -> ChunkIter<'a> {
        ChunkIter {
            r: BitReader { bytes: self.stream, pos: pos.bit },
            count: self.count,
            state: pos.state,
            failed: false,
        }
    }

    /// Every sample, or the first error.
    pub fn decode(&self) -> Result<Vec<(i64, f64)>, ChunkError> {
        let mut out = Vec::with_capacity(self.count as usize);
        for s in self.iter() {
            out.push(s?);
        }
        Ok(out)
    }

    /// The value at `t`, if there is a sample at `t`; decodes nothing past it.
    pub fn value_at(&self, t: i64) -> Result<Option<f64>, ChunkError> {
        for s in self.iter() {
            let (st, v) = s?;
            if st >= t {
                return Ok((st == t).then_some(v));
            }
        }
        Ok(None)
    }

    /// The value at `t`, decoding from `from` rather than from the start when `from` is before
    /// `t`, and leaving `from` just before the first sample at or after `t`. Looking up samples
    /// in time order (a sender resending what the head holds) so decodes each sample once, where
    /// `value_at` decodes the chunk up to each. `from` must come from this chunk (or be the
    /// default, its start).
    pub fn value_at_from(&self, t: i64, from: &mut ChunkPos) -> Result<Option<f64>, ChunkError> {
        if from.state.i > 0 && from.state.ts >= t {
            *from = ChunkPos::default();
        }
        let mut it = self.iter_at(from);
        loop {
            let before = it.pos();
            let Some(s) = it.next() else {
                *from = before;
                return Ok(None);
            };
            let (st, v) = s?;
            if st >= t {
                *from = before;
                return Ok((st == t).then_some(v));
            }
        }
    }

    /// Appends the samples with `from <= t <= to` to `out`, decoding nothing past `to`.
    pub fn extend_range(&self, from: i64, to: i64, out: &mut Vec<(i64, f64)>) -> Result<(), ChunkError> {
        for s in self.iter() {
            let (t, v) = s?;
            if t > to {
                break;
            }
            if t >= from {
                out.push((t, v));
            }
        }
        Ok(())
    }
}

/// What decoding a chunk carries from one sample to the next, after `i` samples, the last of
/// them at `ts`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct DecodeState {
    i: u32,
    ts: i64,
    delta: i64,
    bits: u64,
    leading: u8,
    trailing: u8,
}

/// Where a decoder stands in a chunk: its bit position and state (`Chunk::value_at_from`). The
/// default is the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkPos {
    bit: usize,
    state: DecodeState,
}

/// Samples of a chunk in order.
pub struct ChunkIter<'a> {
    r: BitReader<'a>,
    count: u32,
    state: DecodeState,
    failed: bool,
}

impl ChunkIter<'_> {
    fn pos(&self) -> ChunkPos {
        ChunkPos { bit: self.r.pos, state: self.state }
    }

    fn step(&mut self) -> Option<(i64, f64)> {
        let r = &mut self.r;
        let d = &mut self.state;
        if d.i == 0 {
            d.ts = r.read(64)? as i64;
            d.bits = r.read(64)?;
        } else {
            let dod = if !r.bit()? {
                0
            } else if !r.bit()? {
                sign_extend(r.read(7)?, 7)
            } else if !r.bit()? {
                sign_extend(r.read(9)?, 9)
            } else if !r.bit()? {
                sign_extend(r.read(12)?, 12)
            } else {
                r.read(64)? as i64
            };
            d.delta = if d.i == 1 { dod } else { d.delta.wrapping_add(dod) };
            d.ts = d.ts.wrapping_add(d.delta);
            if r.bit()? {
                if r.bit()? {
                    d.leading = r.read(6)? as u8;
                    let len = r.read(6)? as u8 + 1;
                    if u32::from(d.leading) + u32::from(len) > 64 {
                        return None;
                    }
                    d.trailing = 64 - d.leading - len;
                }
                let len = 64u8.checked_sub(d.leading + d.trailing).filter(|l| *l > 0)?;
                d.bits ^= r.read(len)? << d.trailing;
            }
        }
        Some((d.ts, f64::from_bits(d.bits)))
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = Result<(i64, f64), ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.state.i >= self.count {
            return None;
        }
        match self.step() {
            Some(s) => {
                self.state.i += 1;
                Some(Ok(s))
            }
            None => {
                self.failed = true;
                Some(Err(ChunkError::Truncated(self.state.i)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::STALE_NAN_BITS;
    use proptest::prelude::*;

    const CHUNK_SAMPLES: i64 = crate::head::CHUNK_SAMPLES_MAX as i64;

    /// An open chunk's stream is never much larger than what it holds: the head keeps one per
    /// series, so the slack of its allocation is paid once per series.
    #[test]
    fn an_open_chunk_allocates_little_more_than_it_holds() {
        let mut a = ChunkAppender::new();
        for i in 0..CHUNK_SAMPLES {
            // A counter scraped every 15 s with a little jitter: about 2.5 bytes a sample.
            a.append(1_700_000_000_000 + i * 15_000 + (i * 7) % 13, (i * i) as f64 * 1.5);
            let (len, capacity) = (a.w.bytes.len(), a.w.bytes.capacity());
            assert!(capacity <= len + (len / 4).max(GROW_BYTES_MIN), "{capacity} bytes for {len} at sample {i}");
        }
        assert_eq!(a.samples().len() as i64, CHUNK_SAMPLES);
    }

    fn round_trip(samples: &[(i64, f64)]) {
        let bytes = encode(samples);
        let back = Chunk::new(&bytes).unwrap().decode().unwrap();
        assert_eq!(back.len(), samples.len());
        for (a, b) in samples.iter().zip(&back) {
            assert_eq!(a.0, b.0);
            assert_eq!(a.1.to_bits(), b.1.to_bits(), "value bits differ: {} vs {}", a.1, b.1);
        }
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
            (0..1000).map(|i| (1_700_000_000_000 + i * 15_000, 42.0)).collect(),
            (0..1000).map(|i| (1_700_000_000_000 + i * 15_000 + (i % 7) * 3, i as f64 * 0.1)).collect(),
            vec![(0, 1.0), (1 << 40, 1.0), (-(1 << 40), 1.0), (i64::MAX, 1.0), (i64::MIN, 1.0)],
        ];
        for c in cases {
            round_trip(&c);
        }
    }

    #[test]
    fn regular_series_compress_well() {
        // A counter scraped every 15 s: about a byte per sample or less.
        let samples: Vec<(i64, f64)> = (0..120).map(|i| (1_700_000_000_000 + i * 15_000, (i * 3) as f64)).collect();
        let bytes = encode(&samples);
        assert!(bytes.len() < samples.len() * 3, "{} bytes for {} samples", bytes.len(), samples.len());
    }

    #[test]
    fn damaged_chunks_are_errors() {
        let bytes = encode(&[(1, 1.0), (2, 2.0), (3, 3.0)]);
        assert_eq!(Chunk::new(&bytes[..5]).unwrap_err(), ChunkError::Short(5));
        let mut v = bytes.clone();
        v[0] = 9;
        assert_eq!(Chunk::new(&v).unwrap_err(), ChunkError::Version(9));
        let mut v = bytes.clone();
        *v.last_mut().unwrap() ^= 1;
        assert!(matches!(Chunk::new(&v), Err(ChunkError::Crc { .. })));
        // A count larger than the stream: an error at the first missing sample, not a panic.
        let mut v = bytes.clone();
        v[1] = 200;
        assert!(Chunk::new(&v).unwrap().decode().is_err());
    }

    proptest! {
        /// The bit writer lays out bits as writing them one at a time would, and the reader
        /// gives back each value, for any mix of widths.
        #[test]
        fn bits_are_written_and_read_as_one_at_a_time(fields in proptest::collection::vec((any::<u64>(), 0u8..=64), 0..40)) {
            let mut w = BitWriter { bytes: Vec::new(), used: 0 };
            let mut naive: Vec<bool> = Vec::new();
            for &(value, bits) in &fields {
                w.write(value, bits);
                naive.extend((0..bits).rev().map(|i| (value >> i) & 1 == 1));
            }
            let packed: Vec<u8> = naive
                .chunks(8)
                .map(|c| c.iter().enumerate().fold(0u8, |b, (i, &bit)| b | (u8::from(bit) << (7 - i))))
                .collect();
            prop_assert_eq!(&w.bytes, &packed);
            let mut r = BitReader { bytes: &w.bytes, pos: 0 };
            for &(value, bits) in &fields {
                let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
                prop_assert_eq!(r.read(bits), Some(value & mask));
            }
            prop_assert_eq!(r.read(8 - (r.pos % 8) as u8 + 1), None);
        }

        #[test]
        fn any_series_round_trips(samples in proptest::collection::vec((any::<i64>(), any::<u64>()), 0..200)) {
            let samples: Vec<(i64, f64)> = samples.into_iter().map(|(t, b)| (t, f64::from_bits(b))).collect();
            round_trip(&samples);
        }

        #[test]
        fn realistic_series_round_trip(
            start in 0i64..2_000_000_000_000,
            steps in proptest::collection::vec((-2000i64..2000, any::<bool>(), -1e6f64..1e6), 1..300),
        ) {
            let mut ts = start;
            let mut v = 0.0;
            let mut samples = Vec::new();
            for (jitter, same, dv) in steps {
                ts += 15_000 + jitter;
                if !same { v += dv; }
                samples.push((ts, v));
            }
            round_trip(&samples);
        }

        /// Lookups through one position, in any order, answer as lookups from the start do.
        #[test]
        fn lookups_going_on_from_a_position_answer_as_from_the_start(
            gaps in proptest::collection::vec(1i64..40, 1..150),
            lookups in proptest::collection::vec(0i64..4000, 0..300),
            forward in any::<bool>(),
        ) {
            let mut t = 0;
            let samples: Vec<(i64, f64)> = gaps.iter().enumerate().map(|(i, g)| { t += g; (t, i as f64) }).collect();
            let bytes = encode(&samples);
            let chunk = Chunk::new(&bytes).unwrap();
            let mut lookups = lookups;
            if forward {
                lookups.sort_unstable();
            }
            let mut pos = ChunkPos::default();
            for l in lookups {
                prop_assert_eq!(chunk.value_at_from(l, &mut pos).unwrap(), chunk.value_at(l).unwrap(), "at {}", l);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(header in any::<[u8; 4]>(), stream in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut bytes = vec![VERSION];
            bytes.extend_from_slice(&header);
            bytes.extend_from_slice(&crc32c::crc32c(&stream).to_le_bytes());
            bytes.extend_from_slice(&stream);
            let chunk = Chunk::new(&bytes).unwrap();
            // Bounded: a huge count stops at the first missing bit.
            for s in chunk.iter().take(10_000) {
                if s.is_err() { break; }
            }
        }
    }
}
