//! Blocks: immutable files holding every sample of one tenant's series over a time range, cut
//! from the head (2 hours) or compacted from other blocks (a day). A block is written under a
//! temporary name, fsync'd and renamed; it becomes part of the store when the manifest that names
//! it is renamed into place (`manifest.rs`).
//!
//! ```text
//! header   8 bytes "STRATAB\0", u8 version (1), 7 bytes zero
//! series   one `codec::encode_series` blob per series, back to back
//! table    zstd of: u32 symbol count, each u32 len + UTF-8 bytes;
//!                   u32 series count, each u16 label count, (u32 name, u32 value) symbol numbers,
//!                   u64 offset, u32 len, u32 samples, i64 min_t, i64 max_t
//! footer   u64 table offset, u64 table len, u32 crc32c of the table bytes, u32 zero,
//!          i64 min_t, i64 max_t, u64 samples, 8 bytes "STRATAB\0"
//! ```
//! Numbers are little endian. The table carries the label sets, so a block stands alone: the
//! store's series index is rebuilt from the blocks and the log at start.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::codec::{CodecError, decode_series, encode_series};
use crate::index::LabelSet;

const MAGIC: &[u8; 8] = b"STRATAB\0";
const VERSION: u8 = 1;
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
    pub offset: u64,
    pub len: u32,
    pub samples: u32,
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
        let tmp = path.with_extension("block.tmp");
        let file = File::create(&tmp).map_err(io(&tmp))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut header = [0u8; HEADER_BYTES as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8] = VERSION;
        out.write_all(&header).map_err(io(&tmp))?;
        Ok(BlockWriter {
            tmp,
            path: path.to_path_buf(),
            out,
            pos: HEADER_BYTES,
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

    /// Adds one series with its samples, sorted by timestamp and not empty.
    pub fn add(&mut self, labels: &LabelSet, samples: &[(i64, f64)]) -> Result<()> {
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else { return Ok(()) };
        let blob = encode_series(samples);
        self.out.write_all(&blob).map_err(io(&self.tmp))?;
        let mut entry = Vec::with_capacity(2 + labels.len() * 8 + 32);
        entry.extend_from_slice(&(labels.len() as u16).to_le_bytes());
        for (n, v) in labels {
            let (n, v) = (self.symbol(n), self.symbol(v));
            entry.extend_from_slice(&n.to_le_bytes());
            entry.extend_from_slice(&v.to_le_bytes());
        }
        entry.extend_from_slice(&self.pos.to_le_bytes());
        entry.extend_from_slice(&(blob.len() as u32).to_le_bytes());
        entry.extend_from_slice(&(samples.len() as u32).to_le_bytes());
        entry.extend_from_slice(&first.0.to_le_bytes());
        entry.extend_from_slice(&last.0.to_le_bytes());
        self.table.extend_from_slice(&entry);
        self.pos += blob.len() as u64;
        self.series += 1;
        self.samples += samples.len() as u64;
        self.min_t = self.min_t.min(first.0);
        self.max_t = self.max_t.max(last.0);
        Ok(())
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
        if header[8] != VERSION {
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
        let series = parse_table(&raw, table_offset).map_err(corrupt)?;
        let stats = BlockStats { min_t, max_t, samples, series: series.len() as u32, bytes: len };
        Ok((BlockFile { path: path.to_path_buf(), file, stats }, series))
    }

    /// The samples of one series.
    pub fn read(&self, entry: &SeriesEntry) -> Result<Vec<(i64, f64)>> {
        let mut buf = vec![0u8; entry.len as usize];
        self.file.read_exact_at(&mut buf, entry.offset).map_err(io(&self.path))?;
        decode_series(&buf).map_err(|source| BlockError::Series {
            path: self.path.clone(),
            offset: entry.offset,
            source,
        })
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

fn parse_table(raw: &[u8], data_end: u64) -> Result<Vec<(LabelSet, SeriesEntry)>, String> {
    let mut c = Cursor { b: raw, at: 0 };
    let n_symbols = c.u32()? as usize;
    let mut symbols = Vec::with_capacity(n_symbols.min(raw.len() / 4));
    for _ in 0..n_symbols {
        let len = c.u32()? as usize;
        let s = std::str::from_utf8(c.take(len)?).map_err(|e| format!("symbol is not UTF-8: {e}"))?;
        symbols.push(s.to_string());
    }
    let sym = |n: u32| symbols.get(n as usize).cloned().ok_or_else(|| format!("symbol {n} out of range"));
    let n_series = c.u32()? as usize;
    let mut out = Vec::with_capacity(n_series.min(raw.len() / 34));
    for _ in 0..n_series {
        let n_labels = c.u16()?;
        let mut labels = Vec::with_capacity(n_labels as usize);
        for _ in 0..n_labels {
            let (n, v) = (c.u32()?, c.u32()?);
            labels.push((sym(n)?, sym(v)?));
        }
        let entry = SeriesEntry {
            offset: c.u64()?,
            len: c.u32()?,
            samples: c.u32()?,
            min_t: c.u64()? as i64,
            max_t: c.u64()? as i64,
        };
        if entry.offset < HEADER_BYTES || entry.offset + u64::from(entry.len) > data_end {
            return Err(format!("series at {}+{} is outside the data", entry.offset, entry.len));
        }
        out.push((labels, entry));
    }
    if c.at != raw.len() {
        return Err(format!("{} bytes after the last series", raw.len() - c.at));
    }
    Ok(out)
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
}
