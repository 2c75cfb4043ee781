//! One partition: its segments, the writer thread that appends with group commit, recovery, and
//! reads. See `DESIGN.md` beside this crate for the write path step by step.

mod segment;
mod writer;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use metrics::Histogram;
use tokio::sync::{mpsc, oneshot, watch};

use crate::coming::{Announced, Arrivals};
use crate::format::{self, Codec, EncodedRecords, HEADER_BYTES};
use crate::{AppendAck, Error, LogConfig, PartitionInfo, ReadResult, Result, StoredRecord, io_err};

pub(crate) use segment::fsync_dir;
use segment::*;
use writer::{AppendReq, Writer, WriterMsg};

/// One partition of a topic.
pub(crate) struct Partition {
    pub topic: String,
    pub id: u32,
    segments: RwLock<Vec<Arc<Segment>>>,
    /// The durable end: the offset the next record will get. Waiters subscribe to it.
    end: watch::Sender<u64>,
    failed: Mutex<Option<String>>,
    tx: Mutex<Option<mpsc::Sender<WriterMsg>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    append_wait: Duration,
    batch_bytes_max: u32,
    /// The topic's codec: what its sealed segments are compressed with.
    pub codec: Codec,
    sealed: Arc<SealedCompression>,
    append_seconds: Histogram,
}

/// Compression of sealed segments in the background, shared by a log's partitions.
pub(crate) struct SealedCompression {
    pub(crate) enabled: bool,
    /// Bytes of sealed segments of compressed topics not compressed yet.
    pub(crate) backlog_bytes: AtomicU64,
    pub(crate) backlog_bytes_max: u64,
    /// Bytes appended to any partition of the log since it opened: how busy the log is.
    pub(crate) appended_bytes: AtomicU64,
    /// Compression is put off for want of disk.
    put_off: crate::disk::PutOff,
}

impl SealedCompression {
    pub(crate) fn new(cfg: &LogConfig) -> SealedCompression {
        SealedCompression {
            enabled: cfg.compress_sealed,
            backlog_bytes: AtomicU64::new(0),
            backlog_bytes_max: cfg.compress_backlog_bytes_max,
            appended_bytes: AtomicU64::new(0),
            put_off: crate::disk::PutOff::default(),
        }
    }

    fn add(&self, bytes: u64) {
        let now = self.backlog_bytes.fetch_add(bytes, Ordering::AcqRel) + bytes;
        metrics::gauge!("strata_log_compression_backlog_bytes").set(now as f64);
    }

    fn sub(&self, bytes: u64) {
        let update = |b: u64| Some(b.saturating_sub(bytes));
        let before = self.backlog_bytes.fetch_update(Ordering::AcqRel, Ordering::Acquire, update).unwrap_or(0);
        metrics::gauge!("strata_log_compression_backlog_bytes").set(before.saturating_sub(bytes) as f64);
    }

    /// `seg` no longer waits for compression (compressed, removed, or given up on).
    fn done(&self, seg: &Segment) {
        if !seg.compressed.swap(true, Ordering::AcqRel) {
            self.sub(seg.len());
        }
    }
}

impl Partition {
    /// Opens (creating if needed) the partition in `dir`, recovers its last segment, and starts
    /// its writer thread.
    pub fn open(
        topic: &str,
        id: u32,
        dir: PathBuf,
        cfg: &LogConfig,
        sealed: Arc<SealedCompression>,
        arrivals: Arc<Arrivals>,
    ) -> Result<Arc<Partition>> {
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
            sealed,
            append_seconds: metrics::histogram!("strata_log_append_seconds", "topic" => topic.to_string()),
        });
        if part.compresses_sealed() {
            let segs = part.segments.read().expect("segments lock");
            let waiting: u64 =
                segs[..segs.len() - 1].iter().filter(|s| !s.compressed.load(Ordering::Acquire)).map(|s| s.len()).sum();
            part.sealed.add(waiting);
        }
        let writer = Writer::new(part.clone(), dir, active, cfg, &labels, arrivals)?;
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

    /// Whether this partition's sealed segments are compressed in the background.
    pub(crate) fn compresses_sealed(&self) -> bool {
        self.sealed.enabled && self.codec != Codec::None
    }

    /// The codec batches are compressed with before they are appended: the topic's, unless its
    /// sealed segments are compressed in the background and that is keeping up.
    pub fn append_codec(&self) -> Codec {
        let behind = self.sealed.backlog_bytes.load(Ordering::Acquire) > self.sealed.backlog_bytes_max;
        if self.compresses_sealed() && !behind { Codec::None } else { self.codec }
    }

    /// Asks the writer to seal the active segment if it holds at least `min_bytes` and took no
    /// append for `idle_ms`: a burst followed by quiet ends compressed, not in an active segment.
    pub(crate) fn seal_if_idle(&self, idle_ms: u64, min_bytes: u64) {
        let active = self.segments.read().expect("segments lock").last().cloned();
        let Some(active) = active else { return };
        let quiet = now_ms().saturating_sub(active.max_append_ms.load(Ordering::Acquire)) >= idle_ms as i64;
        if !quiet || active.len() < min_bytes {
            return;
        }
        if let Some(tx) = self.tx.lock().expect("tx lock").as_ref() {
            let _ = tx.try_send(WriterMsg::SealIfIdle { idle_ms, min_bytes });
        }
    }

    /// A segment was sealed by the writer: its bytes wait for compression.
    pub(crate) fn sealed_segment(&self, len: u64) {
        if self.compresses_sealed() {
            self.sealed.add(len);
        }
    }

    /// Compresses the oldest sealed segment not compressed yet, and puts it in place of the
    /// original (unless retention removed that meanwhile). Returns whether there was one.
    /// Blocking: file I/O and CPU work, on the log's compression thread.
    pub(crate) fn compress_one(&self, cfg: &LogConfig) -> Result<bool> {
        if !self.compresses_sealed() {
            return Ok(false);
        }
        let seg = {
            let segs = self.segments.read().expect("segments lock");
            segs[..segs.len() - 1].iter().find(|s| !s.compressed.load(Ordering::Acquire)).cloned()
        };
        let Some(seg) = seg else { return Ok(false) };
        let started = Instant::now();
        let before = seg.len();
        // The compressed copy (at most the segment's size) is written before the segment is
        // removed. It waits while that could leave less than half the log's floor free: below
        // the floor appends stop, and compression is what gives room back, but not at the cost
        // of the consumers' share under it (`pipeline.disk_free_bytes_min`, half by default).
        let dir = seg.path.parent().unwrap_or(std::path::Path::new("."));
        let room = self.sealed.put_off.room_for(
            dir,
            before,
            cfg.disk_free_bytes_min / 2,
            |free| {
                tracing::warn!(
                    topic = %self.topic, partition = self.id, free_bytes = free, segment_bytes = before,
                    "sealed segments wait to be compressed: their copies could take the disk below half of log.disk_free_bytes_min"
                )
            },
            || tracing::info!(topic = %self.topic, partition = self.id, "room again: sealed segments are compressed"),
        );
        if !room {
            metrics::counter!("strata_log_compressions_put_off_total").increment(1);
            return Ok(false);
        }
        let done = match compress_segment(&seg, self.codec, cfg) {
            Ok(done) => done,
            Err(e) => {
                // Left as it is (it still reads); not tried again until a restart.
                discard_compression(&seg);
                self.sealed.done(&seg);
                return Err(e);
            }
        };
        let mut segs = self.segments.write().expect("segments lock");
        let Some(i) = segs.iter().position(|s| Arc::ptr_eq(s, &seg)) else {
            done.discard();
            return Ok(true);
        };
        let batches = done.batches;
        let installed = done.install();
        self.sealed.done(&seg);
        let new = installed?;
        let after = new.len();
        segs[i] = Arc::new(new);
        drop(segs);
        let labels = [("topic", self.topic.clone())];
        metrics::counter!("strata_log_segments_compressed_total", &labels).increment(1);
        metrics::counter!("strata_log_compressed_bytes_in_total", &labels).increment(before);
        metrics::counter!("strata_log_compressed_bytes_out_total", &labels).increment(after);
        tracing::debug!(
            topic = %self.topic, partition = self.id, base_offset = seg.base_offset, batches, before, after,
            seconds = started.elapsed().as_secs_f64(), "compressed a sealed segment"
        );
        Ok(true)
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

    /// Appends one batch; `announced`, if given, stops counting once the writer has it.
    pub async fn append(&self, records: EncodedRecords, announced: Option<Arc<Announced>>) -> Result<AppendAck> {
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
        let req = WriterMsg::Append(AppendReq { records, announced: announced.is_some(), reply });
        match tokio::time::timeout(self.append_wait, tx.send(req)).await {
            Err(_) => {
                return Err(Error::Overloaded { topic: self.topic.clone(), partition: self.id });
            }
            Ok(Err(_)) => return Err(Error::Closed),
            Ok(Ok(())) => {}
        }
        drop(announced);
        let ack = rx.await.map_err(|_| Error::Closed)??;
        self.append_seconds.record(started.elapsed().as_secs_f64());
        self.sealed.appended_bytes.fetch_add(len as u64, Ordering::Relaxed);
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
            if self.compresses_sealed() {
                self.sealed.done(seg);
            }
            for ext in SEGMENT_FILES {
                let p = segment_path(seg.path.parent().expect("segment has a dir"), seg.base_offset, ext);
                if let Err(e) = fs::remove_file(&p)
                    && (ext != "compressed" || e.kind() != std::io::ErrorKind::NotFound)
                {
                    tracing::warn!(path = %p.display(), error = %e, "cannot remove expired segment file");
                }
            }
        }
        (removed.len(), bytes)
    }
}
