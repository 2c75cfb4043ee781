//! The single writer of a partition: group commit, fsync, index appends and segment rolls.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram};
use tokio::sync::{mpsc, oneshot};

use super::Partition;
use super::segment::*;
use crate::coming::Arrivals;
use crate::format::{self, EncodedRecords, HEADER_BYTES};
use crate::{AppendAck, Error, LogConfig, Result, io_err};

pub(super) struct AppendReq {
    pub(super) records: EncodedRecords,
    /// The producer announced it (`Log::announce`): a group of announced appends is written as
    /// soon as no other is on its way.
    pub(super) announced: bool,
    pub(super) reply: oneshot::Sender<Result<AppendAck>>,
}

/// What a partition's writer is asked to do.
pub(super) enum WriterMsg {
    Append(AppendReq),
    /// Seal the active segment if it holds at least `min_bytes` and nothing was appended for
    /// `idle_ms`, so that the background compresses it.
    SealIfIdle {
        idle_ms: u64,
        min_bytes: u64,
    },
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
pub(super) struct Writer {
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
    group_commit_interval: Duration,
    /// When the last group's write started, and how many appends it held.
    last_group: Option<(Instant, usize)>,
    /// Appends announced to the topic and not yet handed to its writers.
    arrivals: Arc<Arrivals>,
    room: crate::disk::DiskRoom,
    metrics: WriterMetrics,
}

impl Writer {
    pub(super) fn new(
        part: Arc<Partition>,
        dir: PathBuf,
        active: Arc<Segment>,
        cfg: &LogConfig,
        labels: &[(&'static str, String); 2],
        arrivals: Arc<Arrivals>,
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
            group_commit_interval: Duration::from_micros(cfg.group_commit_interval_us),
            last_group: None,
            arrivals,
            room: crate::disk::DiskRoom::new(cfg.disk_free_bytes_min),
            metrics,
        })
    }

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<WriterMsg>) {
        self.arrivals.register_writer();
        let mut group: Vec<AppendReq> = Vec::new();
        while let Some(msg) = rx.blocking_recv() {
            let first = match msg {
                WriterMsg::Append(req) => req,
                WriterMsg::SealIfIdle { idle_ms, min_bytes } => {
                    self.seal_if_idle(idle_ms, min_bytes);
                    continue;
                }
            };
            let mut bytes = first.records.bytes_len();
            group.push(first);
            self.take_queued(&mut rx, &mut group, &mut bytes);
            if let Some(wait) = self.linger() {
                self.gather(&mut rx, &mut group, &mut bytes, Instant::now() + wait);
            }
            self.last_group = Some((Instant::now(), group.len()));
            self.metrics.group_requests.record(group.len() as f64);
            self.metrics.group_bytes.record(bytes as f64);
            if !self.has_room(bytes as u64, &mut group) {
                continue;
            }
            self.write_group(&mut group);
        }
        // Sealed or not, make the indexes of the active segment durable on a clean shutdown.
        let _ = self.index_file.sync_data();
        let _ = self.time_file.sync_data();
    }

    /// How long to wait for more appends to share the next group's fsync: the rest of the
    /// interval since the previous group started, if that group held appends of more than one
    /// producer. Only then are others likely on their way; a lone producer that appends again as
    /// soon as it is acknowledged (an agent exporting one batch at a time) would only be slowed.
    fn linger(&self) -> Option<Duration> {
        let (started, appends) = self.last_group?;
        if appends < 2 {
            return None;
        }
        self.group_commit_interval.checked_sub(started.elapsed())
    }

    /// Adds appends to `group` until `deadline` or until it is full. A group of announced
    /// appends stops waiting as soon as no other is on its way: nothing more comes until the
    /// group is answered. An append that was not announced waits the whole interval, since its
    /// producer did not say whether others follow.
    fn gather(
        &self,
        rx: &mut mpsc::Receiver<WriterMsg>,
        group: &mut Vec<AppendReq>,
        bytes: &mut usize,
        deadline: Instant,
    ) {
        loop {
            self.take_queued(rx, group, bytes);
            let left = deadline.saturating_duration_since(Instant::now());
            let all_arrived = self.arrivals.none_coming() && group.iter().all(|r| r.announced);
            if *bytes >= self.group_commit_bytes_max || all_arrived || left.is_zero() {
                return;
            }
            // Unparked by the last announced append to arrive; appends that arrive before it
            // wait in the queue.
            std::thread::park_timeout(left);
        }
    }

    /// Whether the disk has room for `bytes` more above the floor; if not, every append of
    /// `group` is refused as retryable and the partition goes on.
    fn has_room(&mut self, bytes: u64, group: &mut Vec<AppendReq>) -> bool {
        let was_refusing = self.room.is_refusing();
        let refused = self.room.admit(bytes, || crate::disk::free_bytes(&self.dir)).err();
        let (topic, partition) = (&self.part.topic, self.part.id);
        match (refused, was_refusing) {
            (Some(free), false) => {
                tracing::error!(%topic, partition, free, min = self.room.min(), "appends refused: the log's disk is nearly full")
            }
            (None, true) => tracing::info!(%topic, partition, "appends taken again: the log's disk has room"),
            _ => {}
        }
        let Some(free) = refused else { return true };
        metrics::counter!("strata_log_appends_refused_total", "topic" => topic.clone(), "reason" => "disk_full")
            .increment(group.len() as u64);
        let min = self.room.min();
        self.fail_all(group.drain(..), || Error::DiskFull { topic: topic.clone(), partition, free, min });
        false
    }

    /// Adds the appends already queued to `group`, up to `group_commit_bytes_max`.
    fn take_queued(&self, rx: &mut mpsc::Receiver<WriterMsg>, group: &mut Vec<AppendReq>, bytes: &mut usize) {
        while *bytes < self.group_commit_bytes_max {
            match rx.try_recv() {
                Ok(WriterMsg::Append(req)) => {
                    *bytes += req.records.bytes_len();
                    group.push(req);
                }
                // Appends are coming: the segment is not idle.
                Ok(WriterMsg::SealIfIdle { .. }) => {}
                Err(_) => break,
            }
        }
    }

    fn seal_if_idle(&mut self, idle_ms: u64, min_bytes: u64) {
        let idle = now_ms().saturating_sub(self.last_append_ms) >= idle_ms as i64;
        if !idle || self.len < min_bytes || !self.buf.is_empty() {
            return;
        }
        if let Err(e) = self.roll() {
            self.poison(e.to_string());
        }
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
            req.records.compress(self.part.append_codec());
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
            compressed: AtomicBool::new(false),
        });
        let (index_file, time_file) = open_index_appenders(&self.dir, base)?;
        self.index_file = index_file;
        self.time_file = time_file;
        self.active = seg.clone();
        self.part.sealed_segment(self.len);
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
