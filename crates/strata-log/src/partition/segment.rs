//! Segment files: a partition's batches, with their offset and time indexes, and the scan that
//! recovers a segment after a crash.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use crate::format::{self, BatchHeader, Codec, HEADER_BYTES};
use crate::{Error, LogConfig, Result, io_err};

pub(super) const INDEX_ENTRY_BYTES: usize = 8;
pub(super) const TIME_ENTRY_BYTES: usize = 12;

/// An offset index entry: the batch that starts at `position` has base offset `base + rel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IndexEntry {
    pub(super) rel: u32,
    pub(super) position: u32,
}

/// A time index entry: the batch with base offset `base + rel` was appended at `append_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TimeEntry {
    pub(super) append_ms: i64,
    pub(super) rel: u32,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub(super) fn segment_path(dir: &Path, base: u64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// A segment file with its in-memory indexes. Sealed segments never change; the active one grows
/// only at `durable_len`, which the writer advances after each fsync.
pub(super) struct Segment {
    pub(super) base_offset: u64,
    pub(super) path: PathBuf,
    pub(super) file: File,
    pub(super) durable_len: AtomicU64,
    pub(super) end_offset: AtomicU64,
    pub(super) max_append_ms: AtomicI64,
    pub(super) index: RwLock<Vec<IndexEntry>>,
    pub(super) time_index: RwLock<Vec<TimeEntry>>,
    /// Sealed and rewritten with the topic's codec (its `.compressed` marker file exists).
    pub(super) compressed: AtomicBool,
}

/// The files of a segment, its marker of compression included.
pub(super) const SEGMENT_FILES: [&str; 4] = ["log", "index", "timeindex", "compressed"];

impl Segment {
    pub(super) fn len(&self) -> u64 {
        self.durable_len.load(Ordering::Acquire)
    }

    /// The position and base offset of the last indexed batch at or before `offset`.
    pub(super) fn floor(&self, offset: u64) -> (u64, u64) {
        let rel = offset.saturating_sub(self.base_offset).min(u64::from(u32::MAX)) as u32;
        let index = self.index.read().expect("index lock");
        match index.partition_point(|e| e.rel <= rel) {
            0 => (0, self.base_offset),
            i => (u64::from(index[i - 1].position), self.base_offset + u64::from(index[i - 1].rel)),
        }
    }

    pub(super) fn read_header(&self, pos: u64, batch_bytes_max: u32) -> Result<BatchHeader> {
        let mut h = [0u8; HEADER_BYTES];
        self.file.read_exact_at(&mut h, pos).map_err(io_err(&self.path))?;
        format::decode_header(&h, batch_bytes_max).map_err(|e| self.corrupt(pos, e))
    }

    pub(super) fn corrupt(&self, position: u64, reason: impl ToString) -> Error {
        Error::Corrupt { path: self.path.clone(), position, reason: reason.to_string() }
    }
}

/// The segments' base offsets. Files a compression left half made (`.tmp`) are removed: the
/// segment they were made from is still whole.
pub(super) fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".tmp") {
            let p = entry.path();
            fs::remove_file(&p).map_err(io_err(&p))?;
            continue;
        }
        if let Some(stem) = name.strip_suffix(".log")
            && let Ok(base) = stem.parse::<u64>()
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

pub(super) fn create_segment_files(dir: &Path, base: u64) -> Result<()> {
    for ext in ["log", "index", "timeindex"] {
        let p = segment_path(dir, base, ext);
        OpenOptions::new().create(true).truncate(true).write(true).open(&p).map_err(io_err(&p))?;
    }
    Ok(())
}

pub(super) fn open_segment(dir: &Path, base: u64) -> Result<(PathBuf, File)> {
    let path = segment_path(dir, base, "log");
    let file = OpenOptions::new().read(true).write(true).open(&path).map_err(io_err(&path))?;
    Ok((path, file))
}

pub(super) struct Scan {
    pub(super) valid_len: u64,
    pub(super) end_offset: u64,
    pub(super) index: Vec<IndexEntry>,
    pub(super) time_index: Vec<TimeEntry>,
    pub(super) max_append_ms: i64,
    pub(super) first_append_ms: Option<i64>,
    pub(super) last_batch_rel: u32,
    pub(super) since_index: u64,
    pub(super) stopped: Option<String>,
}

/// Reads every batch of a segment from the start, checking lengths, offsets and CRCs, and rebuilds
/// its indexes. Stops at the first batch that is torn or corrupt.
pub(super) fn scan(file: &File, base: u64, file_len: u64, cfg: &LogConfig) -> Scan {
    let mut s = Scan {
        valid_len: 0,
        end_offset: base,
        index: Vec::new(),
        time_index: Vec::new(),
        max_append_ms: i64::MIN,
        first_append_ms: None,
        last_batch_rel: 0,
        since_index: 0,
        stopped: None,
    };
    let mut pos = 0u64;
    let mut buf = Vec::new();
    while pos < file_len {
        if pos + HEADER_BYTES as u64 > file_len {
            s.stopped = Some(format!("torn batch header at byte {pos}"));
            break;
        }
        let mut h = [0u8; HEADER_BYTES];
        if let Err(e) = file.read_exact_at(&mut h, pos) {
            s.stopped = Some(format!("read error at byte {pos}: {e}"));
            break;
        }
        let header = match format::decode_header(&h, cfg.batch_bytes_max) {
            Ok(h) => h,
            Err(e) => {
                s.stopped = Some(format!("bad batch header at byte {pos}: {e}"));
                break;
            }
        };
        if header.base_offset != s.end_offset {
            s.stopped =
                Some(format!("batch at byte {pos} has base offset {}, expected {}", header.base_offset, s.end_offset));
            break;
        }
        let len = u64::from(header.batch_len);
        if pos + len > file_len {
            s.stopped = Some(format!("torn batch at byte {pos}: {len} bytes, {} in the file", file_len - pos));
            break;
        }
        buf.resize(len as usize, 0);
        if let Err(e) = file.read_exact_at(&mut buf, pos) {
            s.stopped = Some(format!("read error at byte {pos}: {e}"));
            break;
        }
        if let Err(e) = format::check_crc(&header, &buf) {
            s.stopped = Some(format!("corrupt batch at byte {pos}: {e}"));
            break;
        }
        let rel = (header.base_offset - base) as u32;
        if s.since_index >= cfg.index_interval_bytes {
            s.index.push(IndexEntry { rel, position: pos as u32 });
            s.time_index.push(TimeEntry { append_ms: header.append_time_ms, rel });
            s.since_index = 0;
        }
        s.since_index += len;
        s.max_append_ms = s.max_append_ms.max(header.append_time_ms);
        s.first_append_ms.get_or_insert(header.append_time_ms);
        s.last_batch_rel = rel;
        pos += len;
        s.valid_len = pos;
        s.end_offset = header.end_offset();
    }
    s
}

/// Writes a segment's index files, their names ending in `suffix` after the extension.
pub(super) fn write_index_files(
    dir: &Path,
    base: u64,
    index: &[IndexEntry],
    time_index: &[TimeEntry],
    sync: bool,
    suffix: &str,
) -> Result<()> {
    let mut bytes = Vec::with_capacity(index.len() * INDEX_ENTRY_BYTES);
    for e in index {
        bytes.extend_from_slice(&e.rel.to_le_bytes());
        bytes.extend_from_slice(&e.position.to_le_bytes());
    }
    let mut tbytes = Vec::with_capacity(time_index.len() * TIME_ENTRY_BYTES);
    for e in time_index {
        tbytes.extend_from_slice(&e.append_ms.to_le_bytes());
        tbytes.extend_from_slice(&e.rel.to_le_bytes());
    }
    for (ext, data) in [("index", bytes), ("timeindex", tbytes)] {
        let p = segment_path(dir, base, &format!("{ext}{suffix}"));
        let mut f = OpenOptions::new().create(true).truncate(true).write(true).open(&p).map_err(io_err(&p))?;
        f.write_all(&data).map_err(io_err(&p))?;
        if sync {
            f.sync_data().map_err(io_err(&p))?;
        }
    }
    Ok(())
}

pub(super) fn read_index_files(dir: &Path, base: u64) -> Option<(Vec<IndexEntry>, Vec<TimeEntry>)> {
    let bytes = fs::read(segment_path(dir, base, "index")).ok()?;
    let tbytes = fs::read(segment_path(dir, base, "timeindex")).ok()?;
    if bytes.len() % INDEX_ENTRY_BYTES != 0 || tbytes.len() % TIME_ENTRY_BYTES != 0 {
        return None;
    }
    let index = bytes
        .chunks_exact(INDEX_ENTRY_BYTES)
        .map(|c| IndexEntry {
            rel: u32::from_le_bytes(c[0..4].try_into().expect("4 bytes")),
            position: u32::from_le_bytes(c[4..8].try_into().expect("4 bytes")),
        })
        .collect();
    let time_index = tbytes
        .chunks_exact(TIME_ENTRY_BYTES)
        .map(|c| TimeEntry {
            append_ms: i64::from_le_bytes(c[0..8].try_into().expect("8 bytes")),
            rel: u32::from_le_bytes(c[8..12].try_into().expect("4 bytes")),
        })
        .collect();
    Some((index, time_index))
}

/// Opens a sealed segment, trusting its index files only if they are consistent with the data.
pub(super) fn open_sealed(dir: &Path, base: u64, next_base: u64, cfg: &LogConfig) -> Result<Segment> {
    let (path, file) = open_segment(dir, base)?;
    let len = file.metadata().map_err(io_err(&path))?.len();
    let seg = Segment {
        base_offset: base,
        path,
        file,
        durable_len: AtomicU64::new(len),
        end_offset: AtomicU64::new(next_base),
        max_append_ms: AtomicI64::new(i64::MIN),
        index: RwLock::new(Vec::new()),
        time_index: RwLock::new(Vec::new()),
        compressed: AtomicBool::new(segment_path(dir, base, "compressed").exists()),
    };
    let loaded = read_index_files(dir, base).filter(|(index, time_index)| {
        let ordered = index.windows(2).all(|w| w[0].rel < w[1].rel && w[0].position < w[1].position)
            && time_index.windows(2).all(|w| w[0].rel <= w[1].rel && w[0].append_ms <= w[1].append_ms);
        let last_ok = match index.last() {
            None => true,
            Some(e) => {
                (u64::from(e.position) < len)
                    && seg
                        .read_header(u64::from(e.position), cfg.batch_bytes_max)
                        .is_ok_and(|h| h.base_offset == base + u64::from(e.rel))
            }
        };
        ordered && last_ok && !time_index.is_empty()
    });
    let (index, time_index) = match loaded {
        Some(x) => x,
        None => {
            tracing::info!(segment = %seg.path.display(), "rebuilding segment indexes");
            let s = scan(&seg.file, base, len, cfg);
            let mut time_index = s.time_index;
            if s.valid_len > 0 {
                time_index.push(TimeEntry { append_ms: s.max_append_ms, rel: s.last_batch_rel });
            }
            write_index_files(dir, base, &s.index, &time_index, true, "")?;
            (s.index, time_index)
        }
    };
    seg.max_append_ms.store(time_index.last().map_or(i64::MIN, |e| e.append_ms), Ordering::Release);
    *seg.index.write().expect("index lock") = index;
    *seg.time_index.write().expect("time index lock") = time_index;
    Ok(seg)
}

/// Opens the last segment: scans it, truncates a torn or corrupt tail, rewrites its indexes.
pub(super) fn recover_last(dir: &Path, base: u64, cfg: &LogConfig) -> Result<Segment> {
    let (path, file) = open_segment(dir, base)?;
    let len = file.metadata().map_err(io_err(&path))?.len();
    let s = scan(&file, base, len, cfg);
    if s.valid_len < len {
        tracing::warn!(
            segment = %path.display(),
            kept_bytes = s.valid_len,
            dropped_bytes = len - s.valid_len,
            reason = s.stopped.as_deref().unwrap_or("unknown"),
            "truncating the log tail"
        );
        file.set_len(s.valid_len).map_err(io_err(&path))?;
        file.sync_all().map_err(io_err(&path))?;
    }
    write_index_files(dir, base, &s.index, &s.time_index, false, "")?;
    Ok(Segment {
        base_offset: base,
        path,
        file,
        durable_len: AtomicU64::new(s.valid_len),
        end_offset: AtomicU64::new(s.end_offset),
        max_append_ms: AtomicI64::new(s.max_append_ms),
        index: RwLock::new(s.index),
        time_index: RwLock::new(s.time_index),
        compressed: AtomicBool::new(false),
    })
}

/// A sealed segment rewritten with its batches compressed, in files beside it (`.log.tmp`,
/// `.index.tmp`, `.timeindex.tmp`), synced; [`Compressed::install`] puts them in its place.
pub(super) struct Compressed {
    pub(super) segment: Segment,
    /// Batches compressed here (the others were compressed already, or would not shrink).
    pub(super) batches: u64,
    dir: PathBuf,
}

/// Most bytes of a segment's rewrite held before they are written (`compress_segment`).
const REWRITE_BUFFER_BYTES_MAX: u64 = 1 << 20;

/// Rewrites the sealed segment `seg` with every batch compressed by `codec`. Reads through the
/// segment's own file, so retention removing it meanwhile does no harm; every batch's CRC is
/// checked on the way, and damage stops the rewrite with an error.
pub(super) fn compress_segment(seg: &Segment, codec: Codec, cfg: &LogConfig) -> Result<Compressed> {
    let dir = seg.path.parent().expect("a segment has a dir").to_path_buf();
    let tmp = |ext: &str| segment_path(&dir, seg.base_offset, &format!("{ext}.tmp"));
    let log_tmp = tmp("log");
    let len = seg.len();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&log_tmp)
        .map_err(io_err(&log_tmp))?;
    // The rewrite goes to the file a few batches at a time, so that compressing a segment holds
    // an eighth of it in memory (at most `REWRITE_BUFFER_BYTES_MAX`), not the whole segment.
    let flush_at = (cfg.segment_bytes_max / 8).min(REWRITE_BUFFER_BYTES_MAX) as usize;
    let (mut out, mut written) = (Vec::with_capacity(flush_at), 0u64);
    let (mut pos, mut batches) = (0u64, 0u64);
    let mut buf = Vec::new();
    while pos < len {
        let h = seg.read_header(pos, cfg.batch_bytes_max)?;
        if pos + u64::from(h.batch_len) > len {
            return Err(seg.corrupt(pos, format::Invalid::Length(h.batch_len)));
        }
        buf.resize(h.batch_len as usize, 0);
        seg.file.read_exact_at(&mut buf, pos).map_err(io_err(&seg.path))?;
        format::check_crc(&h, &buf).map_err(|e| seg.corrupt(pos, e))?;
        batches += u64::from(format::recompress(&h, &buf, codec, &mut out));
        pos += u64::from(h.batch_len);
        if out.len() >= flush_at || pos >= len {
            file.write_all_at(&out, written).map_err(io_err(&log_tmp))?;
            written += out.len() as u64;
            out.clear();
        }
    }
    file.sync_all().map_err(io_err(&log_tmp))?;
    let s = scan(&file, seg.base_offset, written, cfg);
    if s.valid_len != written || s.end_offset != seg.end_offset.load(Ordering::Acquire) {
        return Err(Error::Corrupt {
            path: log_tmp,
            position: s.valid_len,
            reason: s.stopped.unwrap_or_else(|| "the rewrite does not end where the segment does".into()),
        });
    }
    let mut time_index = s.time_index;
    time_index.push(TimeEntry { append_ms: s.max_append_ms, rel: s.last_batch_rel });
    write_index_files(&dir, seg.base_offset, &s.index, &time_index, true, ".tmp")?;
    let segment = Segment {
        base_offset: seg.base_offset,
        path: seg.path.clone(),
        file,
        durable_len: AtomicU64::new(written),
        end_offset: AtomicU64::new(s.end_offset),
        max_append_ms: AtomicI64::new(seg.max_append_ms.load(Ordering::Acquire)),
        index: RwLock::new(s.index),
        time_index: RwLock::new(time_index),
        compressed: AtomicBool::new(true),
    };
    Ok(Compressed { segment, batches, dir })
}

/// Removes what a compression of `seg` left beside it (`.tmp` files), if anything.
pub(super) fn discard_compression(seg: &Segment) {
    let dir = seg.path.parent().expect("a segment has a dir");
    for ext in ["log", "index", "timeindex"] {
        let _ = fs::remove_file(segment_path(dir, seg.base_offset, &format!("{ext}.tmp")));
    }
}

impl Compressed {
    /// Puts the rewritten files in the segment's place. The old index files go first, so that a
    /// crash part way leaves a whole segment file (old or new) without indexes, which opening
    /// rebuilds; the marker comes last (without it a restart compresses again, which only copies).
    /// Call with the partition's segments locked, after checking the segment is still there.
    pub(super) fn install(self) -> Result<Segment> {
        let base = self.segment.base_offset;
        for ext in ["index", "timeindex"] {
            let p = segment_path(&self.dir, base, ext);
            match fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&p)(e)),
                _ => {}
            }
        }
        for ext in ["log", "index", "timeindex"] {
            let from = segment_path(&self.dir, base, &format!("{ext}.tmp"));
            fs::rename(&from, segment_path(&self.dir, base, ext)).map_err(io_err(&from))?;
        }
        let marker = segment_path(&self.dir, base, "compressed");
        File::create(&marker).map_err(io_err(&marker))?;
        fsync_dir(&self.dir)?;
        Ok(self.segment)
    }

    /// Removes the rewritten files when they are not installed.
    pub(super) fn discard(self) {
        discard_compression(&self.segment);
    }
}
