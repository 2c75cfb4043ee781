//! One partition: its segments, the writer thread that appends with group commit, recovery, and
//! reads. See `DESIGN.md` beside this crate for the write path step by step.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram};
use tokio::sync::{mpsc, oneshot, watch};

use crate::format::{self, BatchHeader, Codec, EncodedRecords, HEADER_BYTES};
use crate::{AppendAck, Error, LogConfig, PartitionInfo, ReadResult, Result, StoredRecord, io_err};

const INDEX_ENTRY_BYTES: usize = 8;
const TIME_ENTRY_BYTES: usize = 12;

/// An offset index entry: the batch that starts at `position` has base offset `base + rel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexEntry {
    rel: u32,
    position: u32,
}

/// A time index entry: the batch with base offset `base + rel` was appended at `append_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TimeEntry {
    append_ms: i64,
    rel: u32,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn segment_path(dir: &Path, base: u64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}"))
}

pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// A segment file with its in-memory indexes. Sealed segments never change; the active one grows
/// only at `durable_len`, which the writer advances after each fsync.
pub(crate) struct Segment {
    base_offset: u64,
    path: PathBuf,
    file: File,
    durable_len: AtomicU64,
    end_offset: AtomicU64,
    max_append_ms: AtomicI64,
    index: RwLock<Vec<IndexEntry>>,
    time_index: RwLock<Vec<TimeEntry>>,
}

impl Segment {
    fn len(&self) -> u64 {
        self.durable_len.load(Ordering::Acquire)
    }

    /// The position and base offset of the last indexed batch at or before `offset`.
    fn floor(&self, offset: u64) -> (u64, u64) {
        let rel = offset.saturating_sub(self.base_offset).min(u64::from(u32::MAX)) as u32;
        let index = self.index.read().expect("index lock");
        match index.partition_point(|e| e.rel <= rel) {
            0 => (0, self.base_offset),
            i => (u64::from(index[i - 1].position), self.base_offset + u64::from(index[i - 1].rel)),
        }
    }

    fn read_header(&self, pos: u64, batch_bytes_max: u32) -> Result<BatchHeader> {
        let mut h = [0u8; HEADER_BYTES];
        self.file.read_exact_at(&mut h, pos).map_err(io_err(&self.path))?;
        format::decode_header(&h, batch_bytes_max).map_err(|e| self.corrupt(pos, e))
    }

    fn corrupt(&self, position: u64, reason: impl ToString) -> Error {
        Error::Corrupt { path: self.path.clone(), position, reason: reason.to_string() }
    }
}

pub(crate) struct AppendReq {
    records: EncodedRecords,
    reply: oneshot::Sender<Result<AppendAck>>,
}

/// One partition of a topic.
pub(crate) struct Partition {
    pub topic: String,
    pub id: u32,
    segments: RwLock<Vec<Arc<Segment>>>,
    /// The durable end: the offset the next record will get. Waiters subscribe to it.
    end: watch::Sender<u64>,
    failed: Mutex<Option<String>>,
    tx: Mutex<Option<mpsc::Sender<AppendReq>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    append_wait: Duration,
    batch_bytes_max: u32,
    /// The topic's codec: a batch not compressed by its producer is compressed by the writer.
    pub codec: Codec,
    append_seconds: Histogram,
}

impl Partition {
    /// Opens (creating if needed) the partition in `dir`, recovers its last segment, and starts
    /// its writer thread.
    pub fn open(topic: &str, id: u32, dir: PathBuf, cfg: &LogConfig) -> Result<Arc<Partition>> {
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut bases = list_segments(&dir)?;
        if bases.is_empty() {
            create_segment_files(&dir, 0)?;
            fsync_dir(&dir)?;
            if let Some(parent) = dir.parent() {
                fsync_dir(parent)?;
            }
            bases.push(0);
        }
        let mut segments = Vec::with_capacity(bases.len());
        for (i, &base) in bases.iter().enumerate() {
            let last = i + 1 == bases.len();
            let seg = if last { recover_last(&dir, base, cfg)? } else { open_sealed(&dir, base, bases[i + 1], cfg)? };
            segments.push(Arc::new(seg));
        }
        let active = segments.last().expect("at least one segment").clone();
        let end_offset = active.end_offset.load(Ordering::Acquire);
        let (tx, rx) = mpsc::channel(cfg.append_queue_max.max(1));
        let labels = [("topic", topic.to_string()), ("partition", id.to_string())];
        let part = Arc::new(Partition {
            topic: topic.to_string(),
            id,
            segments: RwLock::new(segments),
            end: watch::Sender::new(end_offset),
            failed: Mutex::new(None),
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(None),
            append_wait: Duration::from_millis(cfg.append_wait_ms),
            batch_bytes_max: cfg.batch_bytes_max,
            codec: cfg.topics.iter().find(|t| t.name == topic).map_or(Codec::None, |t| t.codec),
            append_seconds: metrics::histogram!("strata_log_append_seconds", "topic" => topic.to_string()),
        });
        let writer = Writer::new(part.clone(), dir, active, cfg, &labels)?;
        let handle = std::thread::Builder::new()
            .name(format!("log-{topic}-{id}"))
            .spawn(move || writer.run(rx))
            .map_err(io_err("writer thread"))?;
        *part.writer.lock().expect("writer lock") = Some(handle);
        Ok(part)
    }

    pub fn end_offset(&self) -> u64 {
        *self.end.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.end.subscribe()
    }

    pub fn info(&self) -> PartitionInfo {
        let segs = self.segments.read().expect("segments lock");
        PartitionInfo {
            partition: self.id,
            earliest_offset: segs.first().map_or(0, |s| s.base_offset),
            latest_offset: self.end_offset(),
            bytes: segs.iter().map(|s| s.len()).sum(),
            segments: segs.len(),
            failed: self.failed.lock().expect("failed lock").clone(),
        }
    }

    pub async fn append(&self, records: EncodedRecords) -> Result<AppendAck> {
        if let Some(reason) = self.failed.lock().expect("failed lock").clone() {
            return Err(Error::Failed { topic: self.topic.clone(), partition: self.id, reason });
        }
        let len = HEADER_BYTES + records.bytes_len();
        if len > self.batch_bytes_max as usize {
            return Err(Error::BatchTooLarge { len, max: self.batch_bytes_max });
        }
        let tx = self.tx.lock().expect("tx lock").clone().ok_or(Error::Closed)?;
        let started = Instant::now();
        let (reply, rx) = oneshot::channel();
        let req = AppendReq { records, reply };
        match tokio::time::timeout(self.append_wait, tx.send(req)).await {
            Err(_) => {
                return Err(Error::Overloaded { topic: self.topic.clone(), partition: self.id });
            }
            Ok(Err(_)) => return Err(Error::Closed),
            Ok(Ok(())) => {}
        }
        let ack = rx.await.map_err(|_| Error::Closed)??;
        self.append_seconds.record(started.elapsed().as_secs_f64());
        Ok(ack)
    }

    /// Stops the writer after it has written what is queued.
    pub fn close(&self) {
        drop(self.tx.lock().expect("tx lock").take());
        if let Some(h) = self.writer.lock().expect("writer lock").take() {
            let _ = h.join();
        }
    }

    fn out_of_range(&self, requested: u64, earliest: u64, latest: u64) -> Error {
        Error::OffsetOutOfRange { topic: self.topic.clone(), partition: self.id, requested, earliest, latest }
    }

    pub fn read(&self, offset: u64, bytes_max: u64) -> Result<ReadResult> {
        let end = self.end_offset();
        let segs: Vec<Arc<Segment>> = self.segments.read().expect("segments lock").clone();
        let earliest = segs.first().map_or(0, |s| s.base_offset);
        if offset < earliest || offset > end {
            return Err(self.out_of_range(offset, earliest, end));
        }
        let mut out = ReadResult { records: Vec::new(), next_offset: offset, end_offset: end, bytes: 0 };
        if offset == end {
            return Ok(out);
        }
        let mut i = segs.partition_point(|s| s.base_offset <= offset).saturating_sub(1);
        let mut cursor = offset;
        while i < segs.len() {
            let seg = &segs[i];
            let durable = seg.len();
            let (mut pos, mut expected) = seg.floor(cursor);
            while pos < durable {
                let h = seg.read_header(pos, self.batch_bytes_max)?;
                // The writer publishes a segment's durable length just before the partition's end:
                // a batch between the two is durable but not yet visible. Stopping at the end seen
                // when the read began keeps `next_offset <= end_offset` for every reader.
                if h.base_offset >= end {
                    return Ok(out);
                }
                if h.base_offset != expected {
                    return Err(seg.corrupt(pos, format::Invalid::Offset { expected, found: h.base_offset }));
                }
                if pos + u64::from(h.batch_len) > durable {
                    return Err(seg.corrupt(pos, format::Invalid::Length(h.batch_len)));
                }
                if h.end_offset() > cursor {
                    let mut buf = vec![0u8; h.batch_len as usize];
                    seg.file.read_exact_at(&mut buf, pos).map_err(io_err(&seg.path))?;
                    format::check_crc(&h, &buf).map_err(|e| seg.corrupt(pos, e))?;
                    format::decode_records(&h, &buf, cursor, |offset, record| {
                        out.records.push(StoredRecord { offset, append_time_ms: h.append_time_ms, record })
                    })
                    .map_err(|e| seg.corrupt(pos, e))?;
                    out.bytes += u64::from(h.batch_len);
                    cursor = h.end_offset();
                    out.next_offset = cursor;
                }
                pos += u64::from(h.batch_len);
                expected = h.end_offset();
                if out.bytes >= bytes_max {
                    return Ok(out);
                }
            }
            i += 1;
            if let Some(next) = segs.get(i) {
                cursor = cursor.max(next.base_offset);
            }
        }
        Ok(out)
    }

    pub fn offset_for_time(&self, append_time_ms: i64) -> Result<u64> {
        let segs: Vec<Arc<Segment>> = self.segments.read().expect("segments lock").clone();
        for seg in &segs {
            if seg.max_append_ms.load(Ordering::Acquire) < append_time_ms {
                continue;
            }
            let rel = {
                let ti = seg.time_index.read().expect("time index lock");
                match ti.partition_point(|e| e.append_ms < append_time_ms) {
                    0 => 0,
                    i => ti[i - 1].rel,
                }
            };
            let (mut pos, _) = seg.floor(seg.base_offset + u64::from(rel));
            let durable = seg.len();
            while pos < durable {
                let h = seg.read_header(pos, self.batch_bytes_max)?;
                if h.append_time_ms >= append_time_ms {
                    return Ok(h.base_offset);
                }
                pos += u64::from(h.batch_len);
            }
        }
        Ok(self.end_offset())
    }

    /// Deletes the oldest sealed segments while they are older than `retention_ms` or the
    /// partition is larger than `retention_bytes`. Returns (segments, bytes) removed.
    pub fn enforce_retention(
        &self,
        now_ms: i64,
        retention_ms: Option<u64>,
        retention_bytes: Option<u64>,
    ) -> (usize, u64) {
        let removed: Vec<Arc<Segment>> = {
            let mut segs = self.segments.write().expect("segments lock");
            let mut total: u64 = segs.iter().map(|s| s.len()).sum();
            let mut n = 0;
            // The active (last) segment is never deleted.
            while n + 1 < segs.len() {
                let s = &segs[n];
                let too_old = retention_ms
                    .is_some_and(|r| now_ms.saturating_sub(s.max_append_ms.load(Ordering::Acquire)) > r as i64);
                let too_big = retention_bytes.is_some_and(|r| total > r);
                if !(too_old || too_big) {
                    break;
                }
                total -= s.len();
                n += 1;
            }
            segs.drain(..n).collect()
        };
        let mut bytes = 0;
        for seg in &removed {
            bytes += seg.len();
            for ext in ["log", "index", "timeindex"] {
                let p = segment_path(seg.path.parent().expect("segment has a dir"), seg.base_offset, ext);
                if let Err(e) = fs::remove_file(&p) {
                    tracing::warn!(path = %p.display(), error = %e, "cannot remove expired segment file");
                }
            }
        }
        (removed.len(), bytes)
    }
}

fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".log")
            && let Ok(base) = stem.parse::<u64>()
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

fn create_segment_files(dir: &Path, base: u64) -> Result<()> {
    for ext in ["log", "index", "timeindex"] {
        let p = segment_path(dir, base, ext);
        OpenOptions::new().create(true).truncate(true).write(true).open(&p).map_err(io_err(&p))?;
    }
    Ok(())
}

fn open_segment(dir: &Path, base: u64) -> Result<(PathBuf, File)> {
    let path = segment_path(dir, base, "log");
    let file = OpenOptions::new().read(true).write(true).open(&path).map_err(io_err(&path))?;
    Ok((path, file))
}

struct Scan {
    valid_len: u64,
    end_offset: u64,
    index: Vec<IndexEntry>,
    time_index: Vec<TimeEntry>,
    max_append_ms: i64,
    first_append_ms: Option<i64>,
    last_batch_rel: u32,
    since_index: u64,
    stopped: Option<String>,
}

/// Reads every batch of a segment from the start, checking lengths, offsets and CRCs, and rebuilds
/// its indexes. Stops at the first batch that is torn or corrupt.
fn scan(file: &File, base: u64, file_len: u64, cfg: &LogConfig) -> Scan {
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

fn write_index_files(dir: &Path, base: u64, index: &[IndexEntry], time_index: &[TimeEntry], sync: bool) -> Result<()> {
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
        let p = segment_path(dir, base, ext);
        let mut f = OpenOptions::new().create(true).truncate(true).write(true).open(&p).map_err(io_err(&p))?;
        f.write_all(&data).map_err(io_err(&p))?;
        if sync {
            f.sync_data().map_err(io_err(&p))?;
        }
    }
    Ok(())
}

fn read_index_files(dir: &Path, base: u64) -> Option<(Vec<IndexEntry>, Vec<TimeEntry>)> {
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
fn open_sealed(dir: &Path, base: u64, next_base: u64, cfg: &LogConfig) -> Result<Segment> {
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
            write_index_files(dir, base, &s.index, &time_index, true)?;
            (s.index, time_index)
        }
    };
    seg.max_append_ms.store(time_index.last().map_or(i64::MIN, |e| e.append_ms), Ordering::Release);
    *seg.index.write().expect("index lock") = index;
    *seg.time_index.write().expect("time index lock") = time_index;
    Ok(seg)
}

/// Opens the last segment: scans it, truncates a torn or corrupt tail, rewrites its indexes.
fn recover_last(dir: &Path, base: u64, cfg: &LogConfig) -> Result<Segment> {
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
    write_index_files(dir, base, &s.index, &s.time_index, false)?;
    Ok(Segment {
        base_offset: base,
        path,
        file,
        durable_len: AtomicU64::new(s.valid_len),
        end_offset: AtomicU64::new(s.end_offset),
        max_append_ms: AtomicI64::new(s.max_append_ms),
        index: RwLock::new(s.index),
        time_index: RwLock::new(s.time_index),
    })
}

struct WriterMetrics {
    fsync_seconds: Histogram,
    group_requests: Histogram,
    group_bytes: Histogram,
    records: Counter,
    bytes: Gauge,
    segments: Gauge,
}

/// The single writer of a partition. It owns the active segment's write side.
struct Writer {
    part: Arc<Partition>,
    dir: PathBuf,
    active: Arc<Segment>,
    index_file: File,
    time_file: File,
    /// Durable length of the active segment.
    len: u64,
    /// The offset the next staged batch gets.
    next_offset: u64,
    first_append_ms: Option<i64>,
    last_append_ms: i64,
    last_batch_rel: u32,
    since_index: u64,
    buf: Vec<u8>,
    staged_index: Vec<IndexEntry>,
    staged_time: Vec<TimeEntry>,
    staged_max_append_ms: i64,
    segment_bytes_max: u64,
    segment_age_ms: u64,
    index_interval_bytes: u64,
    group_commit_bytes_max: usize,
    metrics: WriterMetrics,
}

impl Writer {
    fn new(
        part: Arc<Partition>,
        dir: PathBuf,
        active: Arc<Segment>,
        cfg: &LogConfig,
        labels: &[(&'static str, String); 2],
    ) -> Result<Writer> {
        let (index_file, time_file) = open_index_appenders(&dir, active.base_offset)?;
        let len = active.len();
        let next_offset = active.end_offset.load(Ordering::Acquire);
        // Recovery rebuilt the indexes; continue the spacing from the last entry.
        let since_index = {
            let index = active.index.read().expect("index lock");
            len - index.last().map_or(0, |e| u64::from(e.position))
        };
        let max_append = active.max_append_ms.load(Ordering::Acquire);
        let topic = labels[0].1.clone();
        let nsegs = part.segments.read().expect("segments lock").len();
        let total: u64 = part.segments.read().expect("segments lock").iter().map(|s| s.len()).sum();
        let metrics = WriterMetrics {
            fsync_seconds: metrics::histogram!("strata_log_fsync_seconds", "topic" => topic.clone()),
            group_requests: metrics::histogram!("strata_log_group_commit_requests", "topic" => topic.clone()),
            group_bytes: metrics::histogram!("strata_log_group_commit_bytes", "topic" => topic.clone()),
            records: metrics::counter!("strata_log_appended_records_total", "topic" => topic),
            bytes: metrics::gauge!("strata_log_bytes", labels),
            segments: metrics::gauge!("strata_log_segments", labels),
        };
        metrics.bytes.set(total as f64);
        metrics.segments.set(nsegs as f64);
        Ok(Writer {
            part,
            dir,
            first_append_ms: (len > 0).then_some(max_append),
            last_append_ms: max_append.max(0),
            last_batch_rel: 0,
            active,
            index_file,
            time_file,
            len,
            next_offset,
            since_index,
            buf: Vec::new(),
            staged_index: Vec::new(),
            staged_time: Vec::new(),
            staged_max_append_ms: i64::MIN,
            segment_bytes_max: cfg.segment_bytes_max,
            segment_age_ms: cfg.segment_age_ms,
            index_interval_bytes: cfg.index_interval_bytes,
            group_commit_bytes_max: cfg.group_commit_bytes_max,
            metrics,
        })
    }

    fn run(mut self, mut rx: mpsc::Receiver<AppendReq>) {
        let mut group: Vec<AppendReq> = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            let mut bytes = first.records.bytes_len();
            group.push(first);
            while bytes < self.group_commit_bytes_max {
                match rx.try_recv() {
                    Ok(req) => {
                        bytes += req.records.bytes_len();
                        group.push(req);
                    }
                    Err(_) => break,
                }
            }
            self.metrics.group_requests.record(group.len() as f64);
            self.metrics.group_bytes.record(bytes as f64);
            self.write_group(&mut group);
        }
        // Sealed or not, make the indexes of the active segment durable on a clean shutdown.
        let _ = self.index_file.sync_data();
        let _ = self.time_file.sync_data();
    }

    fn fail_all(&self, reqs: impl Iterator<Item = AppendReq>, err: impl Fn() -> Error) {
        for r in reqs {
            let _ = r.reply.send(Err(err()));
        }
    }

    fn write_group(&mut self, group: &mut Vec<AppendReq>) {
        let now = now_ms().max(self.last_append_ms);
        // Requests whose batches are staged in `buf` but not yet durable, with their acks.
        let mut staged: Vec<(AppendReq, AppendAck)> = Vec::new();
        let mut reqs = std::mem::take(group).into_iter();
        while let Some(mut req) = reqs.next() {
            // Producers that compress on their own threads (the gateway) have done so already.
            req.records.compress(self.part.codec);
            if req.records.is_empty() {
                let _ = req.reply.send(Ok(AppendAck { base_offset: self.next_offset, count: 0 }));
                continue;
            }
            let batch_len = (HEADER_BYTES + req.records.bytes_len()) as u64;
            let cur = self.len + self.buf.len() as u64;
            let too_big = cur + batch_len > self.segment_bytes_max;
            let too_old = self.first_append_ms.is_some_and(|t| now.saturating_sub(t) > self.segment_age_ms as i64);
            if cur > 0 && (too_big || too_old) {
                let rolled = self.flush().and_then(|()| self.roll());
                match rolled {
                    Ok(()) => {
                        for (r, ack) in staged.drain(..) {
                            let _ = r.reply.send(Ok(ack));
                        }
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        self.fail_all(staged.drain(..).map(|(r, _)| r).chain(std::iter::once(req)), || {
                            self.failed_error(&msg)
                        });
                        self.fail_all(reqs, || self.failed_error(&msg));
                        return;
                    }
                }
            }
            let position = self.len + self.buf.len() as u64;
            let rel = (self.next_offset - self.active.base_offset) as u32;
            if self.since_index >= self.index_interval_bytes {
                self.staged_index.push(IndexEntry { rel, position: position as u32 });
                self.staged_time.push(TimeEntry { append_ms: now, rel });
                self.since_index = 0;
            }
            self.since_index += batch_len;
            let header = format::encode_batch(&mut self.buf, self.next_offset, now, &req.records);
            let ack = AppendAck { base_offset: header.base_offset, count: header.record_count };
            self.next_offset = header.end_offset();
            self.first_append_ms.get_or_insert(now);
            self.last_append_ms = now;
            self.last_batch_rel = rel;
            self.staged_max_append_ms = now;
            staged.push((req, ack));
        }
        match self.flush() {
            Ok(()) => {
                for (r, ack) in staged {
                    let _ = r.reply.send(Ok(ack));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                self.fail_all(staged.into_iter().map(|(r, _)| r), || self.failed_error(&msg));
            }
        }
    }

    fn failed_error(&self, reason: &str) -> Error {
        Error::Failed { topic: self.part.topic.clone(), partition: self.part.id, reason: reason.to_string() }
    }

    /// Writes the staged batches, fsyncs, and only then makes them visible to readers.
    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let failed = self.part.failed.lock().expect("failed lock").clone();
        if let Some(reason) = failed {
            self.discard_staged();
            return Err(self.failed_error(&reason));
        }
        let path = self.active.path.clone();
        if let Err(e) = self.active.file.write_all_at(&self.buf, self.len) {
            // Nothing of this group was acknowledged: cut the partial write off and go on.
            self.discard_staged();
            if let Err(e2) = self.active.file.set_len(self.len) {
                self.poison(format!("write failed ({e}) and the tail could not be cut ({e2})"));
            }
            return Err(Error::Io { path, source: e });
        }
        let t = Instant::now();
        if let Err(e) = self.active.file.sync_data() {
            // After a failed fsync the page cache cannot be trusted: stop until a restart recovers.
            self.discard_staged();
            self.poison(format!("fsync failed: {e}"));
            return Err(Error::Io { path, source: e });
        }
        self.metrics.fsync_seconds.record(t.elapsed().as_secs_f64());
        let written = self.buf.len() as u64;
        self.len += written;
        self.buf.clear();
        self.publish_index();
        self.active.max_append_ms.store(self.staged_max_append_ms, Ordering::Release);
        self.active.durable_len.store(self.len, Ordering::Release);
        self.active.end_offset.store(self.next_offset, Ordering::Release);
        let records = self.next_offset - *self.part.end.borrow();
        self.metrics.records.increment(records);
        self.metrics.bytes.increment(written as f64);
        self.part.end.send_replace(self.next_offset);
        Ok(())
    }

    fn discard_staged(&mut self) {
        self.buf.clear();
        self.staged_index.clear();
        self.staged_time.clear();
        self.next_offset = self.active.end_offset.load(Ordering::Acquire);
    }

    fn poison(&self, reason: String) {
        tracing::error!(topic = %self.part.topic, partition = self.part.id, %reason, "partition stopped");
        *self.part.failed.lock().expect("failed lock") = Some(reason);
    }

    /// Index files are hints, rebuilt by recovery: they are written but not fsync'd per group.
    fn publish_index(&mut self) {
        if self.staged_index.is_empty() {
            return;
        }
        let mut bytes = Vec::with_capacity(self.staged_index.len() * INDEX_ENTRY_BYTES);
        for e in &self.staged_index {
            bytes.extend_from_slice(&e.rel.to_le_bytes());
            bytes.extend_from_slice(&e.position.to_le_bytes());
        }
        let mut tbytes = Vec::with_capacity(self.staged_time.len() * TIME_ENTRY_BYTES);
        for e in &self.staged_time {
            tbytes.extend_from_slice(&e.append_ms.to_le_bytes());
            tbytes.extend_from_slice(&e.rel.to_le_bytes());
        }
        if let Err(e) = self.index_file.write_all(&bytes).and_then(|()| self.time_file.write_all(&tbytes)) {
            tracing::warn!(segment = %self.active.path.display(), error = %e, "cannot write index entries");
        }
        self.active.index.write().expect("index lock").append(&mut self.staged_index);
        self.active.time_index.write().expect("time index lock").append(&mut self.staged_time);
    }

    /// Seals the active segment and starts a new one at `next_offset`.
    fn roll(&mut self) -> Result<()> {
        // The last batch gets a time entry so retention and time seeks see the segment's newest time.
        let last = TimeEntry { append_ms: self.last_append_ms, rel: self.last_batch_rel };
        let mut tbytes = Vec::with_capacity(TIME_ENTRY_BYTES);
        tbytes.extend_from_slice(&last.append_ms.to_le_bytes());
        tbytes.extend_from_slice(&last.rel.to_le_bytes());
        let p = segment_path(&self.dir, self.active.base_offset, "timeindex");
        self.time_file.write_all(&tbytes).map_err(io_err(&p))?;
        self.time_file.sync_data().map_err(io_err(&p))?;
        self.index_file.sync_data().map_err(io_err(&p))?;
        self.active.time_index.write().expect("time index lock").push(last);

        let base = self.next_offset;
        create_segment_files(&self.dir, base)?;
        fsync_dir(&self.dir)?;
        let (path, file) = open_segment(&self.dir, base)?;
        let seg = Arc::new(Segment {
            base_offset: base,
            path,
            file,
            durable_len: AtomicU64::new(0),
            end_offset: AtomicU64::new(base),
            max_append_ms: AtomicI64::new(self.last_append_ms),
            index: RwLock::new(Vec::new()),
            time_index: RwLock::new(Vec::new()),
        });
        let (index_file, time_file) = open_index_appenders(&self.dir, base)?;
        self.index_file = index_file;
        self.time_file = time_file;
        self.active = seg.clone();
        self.len = 0;
        self.since_index = 0;
        self.first_append_ms = None;
        let mut segs = self.part.segments.write().expect("segments lock");
        segs.push(seg);
        self.metrics.segments.set(segs.len() as f64);
        tracing::debug!(topic = %self.part.topic, partition = self.part.id, base_offset = base, "rolled segment");
        Ok(())
    }
}

fn open_index_appenders(dir: &Path, base: u64) -> Result<(File, File)> {
    let open = |ext: &str| {
        let p = segment_path(dir, base, ext);
        OpenOptions::new().create(true).append(true).open(&p).map_err(io_err(&p))
    };
    Ok((open("index")?, open("timeindex")?))
}
