//! Blocks: immutable files holding every sample of one tenant's series over a time range, cut
//! from the head (2 hours) or compacted from other blocks (a day). A block is written under a
//! temporary name, fsync'd and renamed; it becomes part of the store when the manifest that names
//! it is renamed into place (`manifest.rs`).
//!
//! ```text
//! header   8 bytes "STRATAB\0", u8 version (2), 7 bytes zero
//! columns  `codec::encode_column` blobs: per series its values, and its timestamps unless a
//!          series before it in the block had the same ones (a scrape stamps every series of
//!          its target alike), in which case it names that column
//! table    zstd of: u32 symbol count, each u32 len + UTF-8 bytes;
//!                   u32 timestamp column count, each u64 offset, u32 len;
//!                   u32 series count, each u16 label count, (u32 name, u32 value) symbol numbers,
//!                   u32 timestamp column, u64 offset, u32 len (of its values), u32 samples,
//!                   i64 min_t, i64 max_t
//! footer   u64 table offset, u64 table len, u32 crc32c of the table bytes, u32 zero,
//!          i64 min_t, i64 max_t, u64 samples, 8 bytes "STRATAB\0"
//! ```
//! Numbers are little endian. The table carries the label sets, so a block stands alone: the
//! store's series index is rebuilt from the blocks and the log at start. Blocks of version 1 (one
//! `codec::encode_series` blob per series, both columns in it, and no timestamp columns in the
//! table or its series) are still read.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

#[cfg(test)]
use crate::codec::encode_series;
use crate::codec::{CodecError, decode_column, decode_series, encode_column};
use crate::index::LabelSet;

const MAGIC: &[u8; 8] = b"STRATAB\0";
const VERSION: u8 = 2;

/// The timestamp column of a series of a version 1 block: it has none of its own.
const IN_SERIES_BLOB: u32 = u32::MAX;

/// Bytes of distinct timestamp columns a writer remembers to share; past them, new columns are
/// written but not looked for again (a block of series that share nothing stays bounded).
const SHARED_TIMESTAMPS_BYTES_MAX: usize = 16 << 20;
const HEADER_BYTES: u64 = 16;
const FOOTER_BYTES: u64 = 48;

/// What can go wrong with a block file.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("block {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("series at byte {offset} of block {path}: {source}")]
    Series { path: PathBuf, offset: u64, source: CodecError },
}

type Result<T, E = BlockError> = std::result::Result<T, E>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BlockError + '_ {
    move |source| BlockError::Io { path: path.to_path_buf(), source }
}

/// Where one series' samples are in a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesEntry {
    /// Its values column (version 1: its blob with both columns).
    pub offset: u64,
    pub len: u32,
    pub samples: u32,
    /// The block's timestamp column it uses ([`IN_SERIES_BLOB`] in a version 1 block).
    pub timestamps: u32,
    pub min_t: i64,
    pub max_t: i64,
}

/// A block's totals, from its footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockStats {
    pub min_t: i64,
    pub max_t: i64,
    pub samples: u64,
    pub series: u32,
    pub bytes: u64,
}

/// Writes a block, one series at a time.
pub struct BlockWriter {
    tmp: PathBuf,
    path: PathBuf,
    out: BufWriter<File>,
    pos: u64,
    version: u8,
    /// Where each timestamp column is, by number.
    timestamp_columns: Vec<(u64, u32)>,
    /// The number of each column written so far, by its bytes, up to [`SHARED_TIMESTAMPS_BYTES_MAX`].
    shared_timestamps: HashMap<Vec<u8>, u32>,
    shared_timestamps_bytes: usize,
    symbols: HashMap<String, u32>,
    symbol_list: Vec<String>,
    table: Vec<u8>,
    series: u32,
    min_t: i64,
    max_t: i64,
    samples: u64,
}

impl BlockWriter {
    /// Starts a block that will be at `path` once finished.
    pub fn create(path: &Path) -> Result<BlockWriter> {
        BlockWriter::create_version(path, VERSION)
    }

    fn create_version(path: &Path, version: u8) -> Result<BlockWriter> {
        let tmp = path.with_extension("block.tmp");
        let file = File::create(&tmp).map_err(io(&tmp))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut header = [0u8; HEADER_BYTES as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8] = version;
        out.write_all(&header).map_err(io(&tmp))?;
        Ok(BlockWriter {
            tmp,
            path: path.to_path_buf(),
            out,
            pos: HEADER_BYTES,
            version,
            timestamp_columns: Vec::new(),
            shared_timestamps: HashMap::new(),
            shared_timestamps_bytes: 0,
            symbols: HashMap::new(),
            symbol_list: Vec::new(),
            table: Vec::new(),
            series: 0,
            min_t: i64::MAX,
            max_t: i64::MIN,
            samples: 0,
        })
    }

    fn symbol(&mut self, s: &str) -> u32 {
        if let Some(&n) = self.symbols.get(s) {
            return n;
        }
        let n = self.symbol_list.len() as u32;
        self.symbols.insert(s.to_string(), n);
        self.symbol_list.push(s.to_string());
        n
    }

    /// Appends `blob` to the block's data; returns where it starts.
    fn write(&mut self, blob: &[u8]) -> Result<u64> {
        self.out.write_all(blob).map_err(io(&self.tmp))?;
        let at = self.pos;
        self.pos += blob.len() as u64;
        Ok(at)
    }

    /// The number of the timestamp column `blob`, written unless an identical one already was.
    fn timestamps(&mut self, blob: Vec<u8>) -> Result<u32> {
        if let Some(&n) = self.shared_timestamps.get(&blob) {
            return Ok(n);
        }
        let at = self.write(&blob)?;
        let n = self.timestamp_columns.len() as u32;
        self.timestamp_columns.push((at, blob.len() as u32));
        if self.shared_timestamps_bytes + blob.len() <= SHARED_TIMESTAMPS_BYTES_MAX {
            self.shared_timestamps_bytes += blob.len();
            self.shared_timestamps.insert(blob, n);
        }
        Ok(n)
    }

    /// Adds one series with its samples, sorted by timestamp and not empty.
    pub fn add(&mut self, labels: &LabelSet, samples: &[(i64, f64)]) -> Result<()> {
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else { return Ok(()) };
        #[cfg(test)]
        if self.version == 1 {
            let blob = encode_series(samples);
            let at = self.write(&blob)?;
            self.entry(labels, IN_SERIES_BLOB, at, blob.len(), samples.len(), (first.0, last.0));
            return Ok(());
        }
        let timestamps: Vec<i64> = samples.iter().map(|s| s.0).collect();
        let column = self.timestamps(encode_column(&timestamps))?;
        let values: Vec<f64> = samples.iter().map(|s| s.1).collect();
        let blob = encode_column(&values);
        let at = self.write(&blob)?;
        self.entry(labels, column, at, blob.len(), samples.len(), (first.0, last.0));
        Ok(())
    }

    /// Adds a series' entry to the table.
    fn entry(
        &mut self,
        labels: &LabelSet,
        column: u32,
        at: u64,
        len: usize,
        samples: usize,
        (min_t, max_t): (i64, i64),
    ) {
        let mut entry = Vec::with_capacity(2 + labels.len() * 8 + 36);
        entry.extend_from_slice(&(labels.len() as u16).to_le_bytes());
        for (n, v) in labels {
            let (n, v) = (self.symbol(n), self.symbol(v));
            entry.extend_from_slice(&n.to_le_bytes());
            entry.extend_from_slice(&v.to_le_bytes());
        }
        if self.version >= 2 {
            entry.extend_from_slice(&column.to_le_bytes());
        }
        entry.extend_from_slice(&at.to_le_bytes());
        entry.extend_from_slice(&(len as u32).to_le_bytes());
        entry.extend_from_slice(&(samples as u32).to_le_bytes());
        entry.extend_from_slice(&min_t.to_le_bytes());
        entry.extend_from_slice(&max_t.to_le_bytes());
        self.table.extend_from_slice(&entry);
        self.series += 1;
        self.samples += samples as u64;
        self.min_t = self.min_t.min(min_t);
        self.max_t = self.max_t.max(max_t);
    }

    /// Writes the table and footer, fsyncs and renames the block into place. The caller fsyncs
    /// the directory (once for all blocks of a checkpoint) before it publishes them.
    pub fn finish(mut self) -> Result<BlockStats> {
        let mut raw = Vec::with_capacity(8 + self.table.len() + self.symbol_list.len() * 16);
        raw.extend_from_slice(&(self.symbol_list.len() as u32).to_le_bytes());
        for s in &self.symbol_list {
            raw.extend_from_slice(&(s.len() as u32).to_le_bytes());
            raw.extend_from_slice(s.as_bytes());
        }
        if self.version >= 2 {
            raw.extend_from_slice(&(self.timestamp_columns.len() as u32).to_le_bytes());
            for (at, len) in &self.timestamp_columns {
                raw.extend_from_slice(&at.to_le_bytes());
                raw.extend_from_slice(&len.to_le_bytes());
            }
        }
        raw.extend_from_slice(&self.series.to_le_bytes());
        raw.extend_from_slice(&self.table);
        let table = zstd::bulk::compress(&raw, 3).map_err(io(&self.tmp))?;
        let table_offset = self.pos;
        self.out.write_all(&table).map_err(io(&self.tmp))?;
        let mut footer = Vec::with_capacity(FOOTER_BYTES as usize + 8);
        footer.extend_from_slice(&table_offset.to_le_bytes());
        footer.extend_from_slice(&(table.len() as u64).to_le_bytes());
        footer.extend_from_slice(&crc32c::crc32c(&table).to_le_bytes());
        footer.extend_from_slice(&0u32.to_le_bytes());
        footer.extend_from_slice(&self.min_t.to_le_bytes());
        footer.extend_from_slice(&self.max_t.to_le_bytes());
        footer.extend_from_slice(&self.samples.to_le_bytes());
        footer.extend_from_slice(MAGIC);
        self.out.write_all(&footer).map_err(io(&self.tmp))?;
        let file =
            self.out.into_inner().map_err(|e| BlockError::Io { path: self.tmp.clone(), source: e.into_error() })?;
        file.sync_all().map_err(io(&self.tmp))?;
        fs::rename(&self.tmp, &self.path).map_err(io(&self.path))?;
        Ok(BlockStats {
            min_t: self.min_t,
            max_t: self.max_t,
            samples: self.samples,
            series: self.series,
            bytes: table_offset + table.len() as u64 + FOOTER_BYTES + 8,
        })
    }
}

/// An open block: its file, totals, and every series' label set and place.
pub struct BlockFile {
    path: PathBuf,
    file: File,
    /// Where each timestamp column is (none in a version 1 block).
    timestamp_columns: Vec<(u64, u32)>,
    pub stats: BlockStats,
}

impl BlockFile {
    /// Opens a block and reads its table, checking the magic, version, bounds and CRC.
    pub fn open(path: &Path) -> Result<(BlockFile, Vec<(LabelSet, SeriesEntry)>)> {
        let corrupt = |reason: String| BlockError::Corrupt { path: path.to_path_buf(), reason };
        let file = File::open(path).map_err(io(path))?;
        let len = file.metadata().map_err(io(path))?.len();
        if len < HEADER_BYTES + FOOTER_BYTES + 8 {
            return Err(corrupt(format!("{len} bytes is too short for a block")));
        }
        let mut header = [0u8; HEADER_BYTES as usize];
        file.read_exact_at(&mut header, 0).map_err(io(path))?;
        if &header[..8] != MAGIC {
            return Err(corrupt("not a block file".into()));
        }
        let version = header[8];
        if !(1..=VERSION).contains(&version) {
            return Err(corrupt(format!("block format version {} is unknown", header[8])));
        }
        let mut footer = [0u8; FOOTER_BYTES as usize + 8];
        file.read_exact_at(&mut footer, len - FOOTER_BYTES - 8).map_err(io(path))?;
        if &footer[48..] != MAGIC {
            return Err(corrupt("footer magic is missing: the block is truncated".into()));
        }
        let u64_at = |i: usize| u64::from_le_bytes(footer[i..i + 8].try_into().expect("8 bytes"));
        let table_offset = u64_at(0);
        let table_len = u64_at(8);
        let crc = u32::from_le_bytes(footer[16..20].try_into().expect("4 bytes"));
        let (min_t, max_t, samples) = (u64_at(24) as i64, u64_at(32) as i64, u64_at(40));
        if table_offset < HEADER_BYTES || table_offset.saturating_add(table_len) != len - FOOTER_BYTES - 8 {
            return Err(corrupt(format!("table at {table_offset}+{table_len} does not end at the footer")));
        }
        let mut table = vec![0u8; table_len as usize];
        file.read_exact_at(&mut table, table_offset).map_err(io(path))?;
        let computed = crc32c::crc32c(&table);
        if computed != crc {
            return Err(corrupt(format!("table crc32c {computed:08x} does not match stored {crc:08x}")));
        }
        // The CRC matched, so the table is what this process's writer compressed; the bound
        // only guards against a writer bug turning into an enormous allocation.
        let raw = zstd::bulk::decompress(&table, 1 << 31).map_err(|e| corrupt(format!("table: {e}")))?;
        let (timestamp_columns, series) = parse_table(&raw, version, table_offset).map_err(corrupt)?;
        let stats = BlockStats { min_t, max_t, samples, series: series.len() as u32, bytes: len };
        Ok((BlockFile { path: path.to_path_buf(), file, timestamp_columns, stats }, series))
    }

    fn bytes(&self, offset: u64, len: u32) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len as usize];
        self.file.read_exact_at(&mut buf, offset).map_err(io(&self.path))?;
        Ok(buf)
    }

    /// The samples of one series.
    pub fn read(&self, entry: &SeriesEntry) -> Result<Vec<(i64, f64)>> {
        let damaged = |offset: u64| move |source| BlockError::Series { path: self.path.clone(), offset, source };
        let blob = self.bytes(entry.offset, entry.len)?;
        // The table was checked when the block was opened: a version 1 block has no columns.
        let Some(&(at, len)) = self.timestamp_columns.get(entry.timestamps as usize) else {
            return decode_series(&blob).map_err(damaged(entry.offset));
        };
        let count = entry.samples as usize;
        let timestamps: Vec<i64> = decode_column(&self.bytes(at, len)?, count).map_err(damaged(at))?;
        let values: Vec<f64> = decode_column(&blob, count).map_err(damaged(entry.offset))?;
        Ok(timestamps.into_iter().zip(values).collect())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or("table ends early")?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
}

type Table = (Vec<(u64, u32)>, Vec<(LabelSet, SeriesEntry)>);

fn parse_table(raw: &[u8], version: u8, data_end: u64) -> Result<Table, String> {
    let outside = |what: &str, at: u64, len: u32| {
        (at < HEADER_BYTES || at.saturating_add(u64::from(len)) > data_end)
            .then(|| format!("{what} at {at}+{len} is outside the data"))
    };
    let mut c = Cursor { b: raw, at: 0 };
    let n_symbols = c.u32()? as usize;
    let mut symbols = Vec::with_capacity(n_symbols.min(raw.len() / 4));
    for _ in 0..n_symbols {
        let len = c.u32()? as usize;
        let s = std::str::from_utf8(c.take(len)?).map_err(|e| format!("symbol is not UTF-8: {e}"))?;
        symbols.push(s.to_string());
    }
    let sym = |n: u32| symbols.get(n as usize).cloned().ok_or_else(|| format!("symbol {n} out of range"));
    let mut columns = Vec::new();
    if version >= 2 {
        let n_columns = c.u32()? as usize;
        columns.reserve(n_columns.min(raw.len() / 12));
        for _ in 0..n_columns {
            let (at, len) = (c.u64()?, c.u32()?);
            if let Some(e) = outside("timestamp column", at, len) {
                return Err(e);
            }
            columns.push((at, len));
        }
    }
    let n_series = c.u32()? as usize;
    let mut out = Vec::with_capacity(n_series.min(raw.len() / 34));
    for _ in 0..n_series {
        let n_labels = c.u16()?;
        let mut labels = Vec::with_capacity(n_labels as usize);
        for _ in 0..n_labels {
            let (n, v) = (c.u32()?, c.u32()?);
            labels.push((sym(n)?, sym(v)?));
        }
        let timestamps = if version >= 2 { c.u32()? } else { IN_SERIES_BLOB };
        let entry = SeriesEntry {
            offset: c.u64()?,
            len: c.u32()?,
            samples: c.u32()?,
            timestamps,
            min_t: c.u64()? as i64,
            max_t: c.u64()? as i64,
        };
        if let Some(e) = outside("series", entry.offset, entry.len) {
            return Err(e);
        }
        if version >= 2 && timestamps as usize >= columns.len() {
            return Err(format!("series names timestamp column {timestamps} of {}", columns.len()));
        }
        out.push((labels, entry));
    }
    if c.at != raw.len() {
        return Err(format!("{} bytes after the last series", raw.len() - c.at));
    }
    Ok((columns, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn blocks_round_trip_and_damage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.block");
        let a = ls(&[("__name__", "up"), ("job", "api")]);
        let b = ls(&[("__name__", "up"), ("job", "web \"quoted\" ü")]);
        let sa: Vec<(i64, f64)> = (0..500).map(|i| (i * 15_000, i as f64)).collect();
        let sb = vec![(7, f64::from_bits(crate::STALE_NAN_BITS)), (9, -1.5)];
        let mut w = BlockWriter::create(&path).unwrap();
        w.add(&a, &sa).unwrap();
        w.add(&b, &sb).unwrap();
        w.add(&b, &[]).unwrap();
        let stats = w.finish().unwrap();
        assert_eq!((stats.min_t, stats.max_t, stats.samples, stats.series), (0, 499 * 15_000, 502, 2));
        assert!(!dir.path().join("1.block.tmp").exists());

        let (block, series) = BlockFile::open(&path).unwrap();
        assert_eq!(block.stats, BlockStats { bytes: std::fs::metadata(&path).unwrap().len(), ..stats });
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].0, a);
        assert_eq!(series[1].0, b);
        assert_eq!(block.read(&series[0].1).unwrap(), sa);
        let back = block.read(&series[1].1).unwrap();
        assert_eq!(back[0].1.to_bits(), crate::STALE_NAN_BITS);

        // A flipped byte in a series is caught by that series' CRC; in the table, by the table's.
        let good = std::fs::read(&path).unwrap();
        let mut bad = good.clone();
        bad[HEADER_BYTES as usize + 20] ^= 0xff;
        std::fs::write(&path, &bad).unwrap();
        let (block, series) = BlockFile::open(&path).unwrap();
        assert!(matches!(block.read(&series[0].1), Err(BlockError::Series { .. })));
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 60] ^= 0xff;
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(BlockFile::open(&path), Err(BlockError::Corrupt { .. })));
        std::fs::write(&path, &good[..good.len() - 3]).unwrap();
        assert!(matches!(BlockFile::open(&path), Err(BlockError::Corrupt { .. })));
    }

    /// Two hosts' scrapes: every series of a host carries the host's scrape timestamps.
    fn scraped(hosts: u32, per_host: u32) -> Vec<(LabelSet, Vec<(i64, f64)>)> {
        let mut out = Vec::new();
        for h in 0..hosts {
            let stamps: Vec<i64> =
                (0..480).map(|i| 1_700_000_000_000 + i * 15_000 + i64::from(h) * 7 + (i % 5)).collect();
            for s in 0..per_host {
                let labels = ls(&[("__name__", &format!("m{s}")), ("instance", &format!("host-{h}"))]);
                let samples = stamps.iter().enumerate().map(|(i, &t)| (t, (i as u32 * (s + 1)) as f64 * 0.5)).collect();
                out.push((labels, samples));
            }
        }
        out
    }

    fn write(path: &Path, version: u8, series: &[(LabelSet, Vec<(i64, f64)>)]) -> BlockStats {
        let mut w = BlockWriter::create_version(path, version).unwrap();
        for (labels, samples) in series {
            w.add(labels, samples).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn series_scraped_together_share_one_timestamp_column() {
        let dir = tempfile::tempdir().unwrap();
        let series = scraped(2, 50);
        let shared = write(&dir.path().join("2.block"), VERSION, &series);
        let own = write(&dir.path().join("1.block"), 1, &series);
        let (block, read) = BlockFile::open(&dir.path().join("2.block")).unwrap();
        assert_eq!(block.timestamp_columns.len(), 2, "one column per host");
        assert_eq!(read.len(), series.len());
        for ((labels, samples), (l, e)) in series.iter().zip(&read) {
            assert_eq!(labels, l);
            assert_eq!(&block.read(e).unwrap(), samples);
        }
        // 100 series of 480 samples: the timestamps are stored twice instead of 100 times.
        assert!(shared.bytes * 2 < own.bytes, "{} bytes shared, {} bytes each its own", shared.bytes, own.bytes);
        assert_eq!(
            (shared.samples, shared.series, shared.min_t, shared.max_t),
            (own.samples, own.series, own.min_t, own.max_t)
        );
    }

    #[test]
    fn blocks_of_version_1_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.block");
        let series = scraped(1, 3);
        write(&path, 1, &series);
        let (block, read) = BlockFile::open(&path).unwrap();
        assert!(block.timestamp_columns.is_empty());
        for ((labels, samples), (l, e)) in series.iter().zip(&read) {
            assert_eq!((labels, samples), (l, &block.read(e).unwrap()));
        }
    }

    #[test]
    fn a_damaged_shared_column_fails_every_series_that_uses_it_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("2.block");
        let series = scraped(2, 3);
        write(&path, VERSION, &series);
        let (block, read) = BlockFile::open(&path).unwrap();
        let (at, _) = block.timestamp_columns[0];
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at as usize + 6] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (block, _) = BlockFile::open(&path).unwrap();
        for (i, (_, e)) in read.iter().enumerate() {
            let r = block.read(e);
            if i < 3 {
                assert!(matches!(r, Err(BlockError::Series { offset, .. }) if offset == at), "series {i}: {r:?}");
            } else {
                assert_eq!(r.unwrap(), series[i].1);
            }
        }
    }
}
