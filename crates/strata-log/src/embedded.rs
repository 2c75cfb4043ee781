//! The embedded log: topics of partitions of segment files under one directory.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::coming::{Announced, Arrivals};
use crate::groups::Groups;
use crate::partition::{Partition, SealedCompression, fsync_dir};
use crate::{
    AppendAck, Codec, EncodedRecords, Error, GroupOffset, Log, LogConfig, ReadResult, Result, RetentionRemoved,
    ThreadPriority, TopicConfig, TopicInfo, io_err,
};

const TOPIC_FILE_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct TopicFile {
    version: u32,
    partitions: u32,
    crc32c: u32,
}

struct Topic {
    config: TopicConfig,
    partitions: Vec<Arc<Partition>>,
    arrivals: Arc<Arrivals>,
}

/// The log on the local disk: `<dir>/<topic>/<partition>/<base offset>.{log,index,timeindex}`,
/// consumer groups in `<dir>/groups/`. One process owns a directory at a time (a lock file).
pub struct EmbeddedLog {
    topics: BTreeMap<String, Topic>,
    groups: Arc<Groups>,
    compressor: Compressor,
    _lock: File,
}

/// How often the compression thread looks for sealed segments and idle active ones.
const COMPRESS_CHECK: Duration = Duration::from_secs(1);

/// An idle active segment smaller than this is left to fill: sealing it would only make many
/// small segments of a quiet partition.
const IDLE_SEAL_BYTES_MIN: u64 = 1 << 20;

/// Appends faster than this make the log busy: its compression thread waits for a quieter second
/// (unless half the backlog is used), so that a burst of ingest does not share the CPU and the
/// disk with compressing what the burst itself sealed.
const BUSY_APPEND_BYTES_PER_S: f64 = (32 << 20) as f64;

/// Whether the compression thread should leave sealed segments for now: the log took appends
/// faster than [`BUSY_APPEND_BYTES_PER_S`] since the last look, and less than half of the
/// backlog past which appends compress their batches themselves waits.
struct Busy {
    appended: u64,
    at: Instant,
}

impl Busy {
    fn new(sealed: &SealedCompression) -> Busy {
        Busy { appended: sealed.appended_bytes.load(Ordering::Relaxed), at: Instant::now() }
    }

    /// Looks again (at most once a second, else answers as the last look did).
    fn defer(&mut self, sealed: &SealedCompression, last: bool) -> bool {
        let elapsed = self.at.elapsed();
        if elapsed < COMPRESS_CHECK {
            return last;
        }
        let appended = sealed.appended_bytes.load(Ordering::Relaxed);
        let rate = appended.saturating_sub(self.appended) as f64 / elapsed.as_secs_f64();
        (self.appended, self.at) = (appended, Instant::now());
        let urgent = sealed.backlog_bytes.load(Ordering::Acquire) > sealed.backlog_bytes_max / 2;
        rate > BUSY_APPEND_BYTES_PER_S && !urgent
    }
}

/// The thread that compresses sealed segments, in the idle CPU class.
#[derive(Default)]
struct Compressor {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Compressor {
    fn start(&self, partitions: Vec<Arc<Partition>>, sealed: Arc<SealedCompression>, cfg: LogConfig) -> Result<()> {
        let stop = self.stop.clone();
        let thread = std::thread::Builder::new()
            .name("log-compress".into())
            .spawn(move || {
                if let Err(e) = ThreadPriority::Idle.apply_to_current_thread() {
                    tracing::warn!(error = %e, "cannot put the compression thread in the idle CPU class");
                }
                let mut busy = Busy::new(&sealed);
                let mut deferring = false;
                loop {
                    for p in &partitions {
                        p.seal_if_idle(cfg.segment_idle_ms, IDLE_SEAL_BYTES_MIN);
                    }
                    deferring = busy.defer(&sealed, deferring);
                    if !deferring && sealed.backlog_bytes.load(Ordering::Acquire) > 0 {
                        'partitions: for p in &partitions {
                            loop {
                                if *stop.0.lock().expect("stop lock") {
                                    return;
                                }
                                deferring = busy.defer(&sealed, deferring);
                                if deferring {
                                    break 'partitions;
                                }
                                match p.compress_one(&cfg) {
                                    Ok(true) => {}
                                    Ok(false) => break,
                                    Err(e) => {
                                        tracing::error!(topic = %p.topic, partition = p.id, error = %e, "cannot compress a sealed segment; it stays as it is");
                                        metrics::counter!("strata_log_compression_errors_total").increment(1);
                                    }
                                }
                            }
                        }
                    }
                    let stopped = stop.0.lock().expect("stop lock");
                    let (stopped, _) = stop.1.wait_timeout(stopped, COMPRESS_CHECK).expect("stop lock");
                    if *stopped {
                        return;
                    }
                }
            })
            .map_err(io_err("compression thread"))?;
        *self.thread.lock().expect("thread lock") = Some(thread);
        Ok(())
    }

    /// Stops the thread between two segments (a segment being compressed is finished first).
    fn stop(&self) {
        *self.stop.0.lock().expect("stop lock") = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.lock().expect("thread lock").take() {
            let _ = t.join();
        }
    }
}

impl EmbeddedLog {
    /// Opens the log, creating what is missing and recovering every partition. Blocking.
    pub fn open(cfg: LogConfig) -> Result<EmbeddedLog> {
        validate(&cfg)?;
        fs::create_dir_all(&cfg.dir).map_err(io_err(&cfg.dir))?;
        let lock_path = cfg.dir.join("LOCK");
        let lock = File::create(&lock_path).map_err(io_err(&lock_path))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => Error::Locked { dir: cfg.dir.clone() },
            std::fs::TryLockError::Error(source) => Error::Io { path: lock_path.clone(), source },
        })?;
        let mut topics = BTreeMap::new();
        let sealed = Arc::new(SealedCompression::new(&cfg));
        for tc in &cfg.topics {
            let dir = cfg.dir.join(&tc.name);
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            let count = reconcile_partitions(&dir, tc)?;
            let mut partitions = Vec::with_capacity(count as usize);
            let arrivals = Arc::new(Arrivals::default());
            for p in 0..count {
                let (dir, sealed) = (dir.join(p.to_string()), sealed.clone());
                partitions.push(Partition::open(&tc.name, p, dir, &cfg, sealed, arrivals.clone())?);
            }
            let config = TopicConfig { partitions: count, ..tc.clone() };
            topics.insert(tc.name.clone(), Topic { config, partitions, arrivals });
        }
        fsync_dir(&cfg.dir)?;
        let groups = Arc::new(Groups::open(cfg.dir.join("groups"))?);
        let compressor = Compressor::default();
        let compressed: Vec<Arc<Partition>> =
            topics.values().flat_map(|t| t.partitions.iter().filter(|p| p.compresses_sealed()).cloned()).collect();
        if !compressed.is_empty() {
            compressor.start(compressed, sealed, cfg.clone())?;
        }
        Ok(EmbeddedLog { topics, groups, compressor, _lock: lock })
    }

    fn partition(&self, topic: &str, partition: u32) -> Result<&Arc<Partition>> {
        let t = self.topics.get(topic).ok_or_else(|| Error::UnknownTopic(topic.to_string()))?;
        t.partitions
            .get(partition as usize)
            .ok_or_else(|| Error::UnknownPartition { topic: topic.to_string(), partition })
    }

    /// Stops every writer after it has made what it was given durable. Blocking.
    pub fn close(&self) {
        self.compressor.stop();
        for t in self.topics.values() {
            for p in &t.partitions {
                p.close();
            }
        }
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        self.close();
    }
}

fn validate(cfg: &LogConfig) -> Result<()> {
    let bad = |m: String| Err(Error::Config(m));
    if cfg.topics.is_empty() {
        return bad("no topics".into());
    }
    for t in &cfg.topics {
        let name_ok = !t.name.is_empty()
            && t.name.len() <= 64
            && t.name != "groups"
            && t.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !name_ok {
            return bad(format!("topic name {:?} must be 1 to 64 of [a-z0-9_-] and not \"groups\"", t.name));
        }
        if t.partitions == 0 || t.partitions > 1024 {
            return bad(format!("topic {:?}: partitions must be 1 to 1024, got {}", t.name, t.partitions));
        }
    }
    if cfg.segment_bytes_max < 4096 || cfg.segment_bytes_max > (1 << 31) {
        return bad(format!("segment_bytes_max must be 4096 to 2147483648, got {}", cfg.segment_bytes_max));
    }
    if cfg.batch_bytes_max < 1024 || cfg.batch_bytes_max > (1 << 30) {
        return bad(format!("batch_bytes_max must be 1024 to 1073741824, got {}", cfg.batch_bytes_max));
    }
    Ok(())
}

/// The partition count to open `tc` with: the configured one for a new topic, or to raise an
/// existing one to; a topic with more on disk keeps them, as Kafka's default partition count
/// applies to new topics only. Partitions are never removed: that would strand records and move
/// sources to other partitions.
fn reconcile_partitions(dir: &Path, tc: &TopicConfig) -> Result<u32> {
    let path = dir.join("topic.json");
    let crc = |n: u32| crc32c::crc32c(&n.to_le_bytes());
    // Only a file that is not there is a new topic: any other failure to read it is an error, or
    // a damaged file would silently let the partition count shrink.
    if let Some(strata_durable::Contents::Checked(bytes) | strata_durable::Contents::Legacy(bytes)) =
        strata_durable::read(&path)?
    {
        let bad = |reason: String| Error::Metadata { path: path.clone(), reason };
        let f: TopicFile = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if f.version != TOPIC_FILE_VERSION {
            return Err(bad(format!("version {} is unknown", f.version)));
        }
        if f.crc32c != crc(f.partitions) {
            return Err(bad("its partition count does not match its checksum".into()));
        }
        if f.partitions > tc.partitions {
            tracing::info!(
                topic = %tc.name,
                on_disk = f.partitions,
                configured = tc.partitions,
                "keeping the partitions on disk: partitions are never removed"
            );
            return Ok(f.partitions);
        }
        if f.partitions == tc.partitions {
            return Ok(f.partitions);
        }
        tracing::info!(topic = %tc.name, from = f.partitions, to = tc.partitions, "adding partitions");
    }
    let f = TopicFile { version: TOPIC_FILE_VERSION, partitions: tc.partitions, crc32c: crc(tc.partitions) };
    strata_durable::write(&path, &serde_json::to_vec(&f).expect("topic file serialises"))?;
    Ok(tc.partitions)
}

#[async_trait::async_trait]
impl Log for EmbeddedLog {
    fn topics(&self) -> Vec<TopicInfo> {
        self.topics
            .values()
            .map(|t| TopicInfo {
                name: t.config.name.clone(),
                partitions: t.partitions.iter().map(|p| p.info()).collect(),
            })
            .collect()
    }

    fn partition_count(&self, topic: &str) -> Result<u32> {
        self.topics.get(topic).map(|t| t.partitions.len() as u32).ok_or_else(|| Error::UnknownTopic(topic.to_string()))
    }

    fn codec(&self, topic: &str) -> Result<Codec> {
        Ok(self.partition(topic, 0)?.append_codec())
    }

    fn end_offset(&self, topic: &str, partition: u32) -> Result<u64> {
        Ok(self.partition(topic, partition)?.end_offset())
    }

    async fn append(&self, topic: &str, partition: u32, records: EncodedRecords) -> Result<AppendAck> {
        self.partition(topic, partition)?.append(records, None).await
    }

    fn announce(&self, topic: &str) -> Announced {
        self.topics.get(topic).map_or_else(Announced::none, |t| t.arrivals.announce())
    }

    async fn append_announced(
        &self,
        topic: &str,
        partition: u32,
        records: EncodedRecords,
        announced: Arc<Announced>,
    ) -> Result<AppendAck> {
        self.partition(topic, partition)?.append(records, Some(announced)).await
    }

    fn read(&self, topic: &str, partition: u32, offset: u64, bytes_max: u64) -> Result<ReadResult> {
        self.partition(topic, partition)?.read(offset, bytes_max)
    }

    async fn wait_for(&self, topic: &str, partition: u32, offset: u64, timeout: Duration) -> Result<u64> {
        let mut rx = self.partition(topic, partition)?.subscribe();
        let reached = match tokio::time::timeout(timeout, rx.wait_for(|&end| end > offset)).await {
            Ok(Ok(end)) => Some(*end),
            Ok(Err(_)) => return Err(Error::Closed),
            Err(_) => None,
        };
        Ok(reached.unwrap_or_else(|| *rx.borrow()))
    }

    fn offset_for_time(&self, topic: &str, partition: u32, append_time_ms: i64) -> Result<u64> {
        self.partition(topic, partition)?.offset_for_time(append_time_ms)
    }

    async fn commit_offsets(&self, group: &str, offsets: &[GroupOffset]) -> Result<()> {
        for o in offsets {
            self.partition(&o.topic, o.partition)?;
        }
        let (groups, group, offsets) = (self.groups.clone(), group.to_string(), offsets.to_vec());
        tokio::task::spawn_blocking(move || groups.commit(&group, &offsets)).await.map_err(|_| Error::Closed)?
    }

    fn committed_offsets(&self, group: &str) -> Result<Vec<GroupOffset>> {
        self.groups.get(group)
    }

    fn groups(&self) -> Vec<String> {
        self.groups.names()
    }

    async fn enforce_retention(&self, now_ms: i64) -> Result<Vec<RetentionRemoved>> {
        let mut out = Vec::new();
        for t in self.topics.values() {
            for p in &t.partitions {
                let (part, ms, bytes) = (p.clone(), t.config.retention_ms, t.config.retention_bytes);
                let (segments, bytes) = tokio::task::spawn_blocking(move || part.enforce_retention(now_ms, ms, bytes))
                    .await
                    .map_err(|_| Error::Closed)?;
                if segments > 0 {
                    let labels = [("topic", t.config.name.clone()), ("partition", p.id.to_string())];
                    metrics::gauge!("strata_log_bytes", &labels).decrement(bytes as f64);
                    metrics::gauge!("strata_log_segments", &labels).decrement(segments as f64);
                    tracing::info!(topic = %t.config.name, partition = p.id, segments, bytes, "retention removed segments");
                    out.push(RetentionRemoved { topic: t.config.name.clone(), partition: p.id, segments, bytes });
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(backlog: u64, appended: u64) -> SealedCompression {
        let cfg = LogConfig { compress_backlog_bytes_max: 1 << 30, ..LogConfig::new("unused", 1) };
        let s = SealedCompression::new(&cfg);
        s.backlog_bytes.store(backlog, Ordering::Relaxed);
        s.appended_bytes.store(appended, Ordering::Relaxed);
        s
    }

    fn looked_two_seconds_ago() -> Busy {
        Busy { appended: 0, at: Instant::now() - Duration::from_secs(2) }
    }

    #[test]
    fn compression_waits_while_appends_are_fast_unless_half_the_backlog_is_used() {
        let burst = 1 << 40;
        assert!(looked_two_seconds_ago().defer(&sealed(1 << 20, burst), false), "a burst defers compression");
        assert!(
            !looked_two_seconds_ago().defer(&sealed(600 << 20, burst), false),
            "past half the backlog it compresses"
        );
        assert!(!looked_two_seconds_ago().defer(&sealed(1 << 20, 1 << 20), false), "a quiet log compresses");
        let mut recent = Busy { appended: 0, at: Instant::now() };
        assert!(recent.defer(&sealed(1 << 20, 0), true), "within a second the last answer stands");
    }
}
