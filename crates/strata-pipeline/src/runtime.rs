//! Consumers under supervision. Each consumer runs on its own thread: it loads its sink's
//! positions, reads every partition of the sink's topics, hands records to the sink and commits.
//! A retryable sink error retries the same records with capped exponential backoff; a fatal one,
//! a failure at start or a panic ends the attempt, and the supervisor builds a new sink and starts
//! again from its last commit, also with backoff. Every consumer's state is in `Consumers`, which
//! the admin API, `/readyz` and `/metrics` read.
//!
//! The consumer thread owns a current-thread tokio runtime (every driver enabled) and drives each
//! of the sink's calls to its end with `block_on`: a sink may await I/O, and the calls of one
//! sink never overlap, as they never did when they were blocking.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::Gauge;
use serde::Serialize;
use strata_log::disk::DiskRoom;
use strata_log::{Error as LogError, GroupOffset, Log, ThreadPriority};
use tokio::sync::watch;

use crate::checkpoint::{Checkpoint, CheckpointDelta};
use crate::{CheckpointKind, Positions, Sink, SinkError, kept};

/// How a consumer reads, commits and recovers.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Bytes of batches one read of a partition returns at most (at least one batch).
    pub read_bytes_max: u64,
    /// A sink commits at least this often while records flow.
    pub commit_interval_ms: u64,
    /// An idle consumer waits for the log to say that one of its partitions grew; past this
    /// it looks again anyway, as a safety net.
    pub idle_wait_ms: u64,
    /// The first wait before retrying after a retryable error, or restarting after a failure;
    /// it doubles with each failure in a row up to `backoff_ms_max`.
    pub backoff_ms_min: u64,
    pub backoff_ms_max: u64,
    /// Where the runtime keeps the positions of a sink of `CheckpointKind::Runtime`, one file per
    /// consumer group. Such a sink fails at start without it.
    pub checkpoint_dir: Option<PathBuf>,
    /// The CPU class of the consumer's thread (where its sink's calls and their futures run, and
    /// the threads a sink starts): a view that may fall behind a burst (search, the lake's
    /// tables) runs `Idle` and yields the CPU to ingest at once.
    pub priority: ThreadPriority,
    /// The disk the sink writes to and the free space it leaves: below it the consumer waits
    /// instead of reading, so that no store meets a full disk half-way through a write.
    pub disk_floor: Option<DiskFloor>,
}

/// A consumer's disk floor: it waits while the file system of `dir` has less than
/// `free_bytes_min` free, and goes on once it has a quarter more than that.
#[derive(Debug, Clone)]
pub struct DiskFloor {
    pub dir: PathBuf,
    pub free_bytes_min: u64,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            read_bytes_max: 1 << 20,
            commit_interval_ms: 1000,
            idle_wait_ms: 10_000,
            backoff_ms_min: 200,
            backoff_ms_max: 30_000,
            checkpoint_dir: None,
            priority: ThreadPriority::Normal,
            disk_floor: None,
        }
    }
}

/// What a consumer is doing, as an operator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerState {
    /// Loading its sink's state.
    Starting,
    Running,
    /// Waiting to try the same records again after a retryable error.
    Retrying,
    /// Waiting for the disk its store is on to have room (`DiskFloor`). Not down: the server
    /// still answers queries, and the log refuses appends before its consumers wait.
    WaitingForDisk,
    /// Its last attempt failed (at start, on a fatal error or a panic); it restarts after a backoff.
    Failed,
    Stopped,
}

/// One consumer's state, restarts and last error.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerStatus {
    pub group: String,
    pub state: ConsumerState,
    /// Attempts started after a failure.
    pub restarts: u64,
    /// Errors and panics since the process started.
    pub errors: u64,
    pub last_error: Option<String>,
    /// When the last error happened, Unix milliseconds.
    pub last_error_ms: Option<i64>,
}

impl ConsumerStatus {
    /// Whether the consumer is not applying records: retrying or failed.
    pub fn is_down(&self) -> bool {
        matches!(self.state, ConsumerState::Retrying | ConsumerState::Failed)
    }
}

/// Every consumer's status, shared between the consumers and whoever reports on them.
#[derive(Clone, Default)]
pub struct Consumers {
    inner: Arc<Mutex<BTreeMap<String, ConsumerStatus>>>,
}

impl Consumers {
    pub fn new() -> Consumers {
        Consumers::default()
    }

    /// Every consumer, by group.
    pub fn list(&self) -> Vec<ConsumerStatus> {
        self.inner.lock().expect("consumers lock").values().cloned().collect()
    }

    /// The consumers that are retrying or failed.
    pub fn down(&self) -> Vec<ConsumerStatus> {
        self.list().into_iter().filter(ConsumerStatus::is_down).collect()
    }

    fn register(&self, group: &str) {
        let status = ConsumerStatus {
            group: group.to_string(),
            state: ConsumerState::Starting,
            restarts: 0,
            errors: 0,
            last_error: None,
            last_error_ms: None,
        };
        self.inner.lock().expect("consumers lock").insert(group.to_string(), status);
        publish_up(group, ConsumerState::Starting);
    }

    fn set_state(&self, group: &str, state: ConsumerState) {
        if let Some(s) = self.inner.lock().expect("consumers lock").get_mut(group) {
            s.state = state;
        }
        publish_up(group, state);
    }

    fn error(&self, group: &str, state: ConsumerState, error: &str) {
        if let Some(s) = self.inner.lock().expect("consumers lock").get_mut(group) {
            s.state = state;
            s.errors += 1;
            s.last_error = Some(error.to_string());
            s.last_error_ms = Some(now_ms());
        }
        metrics::counter!("strata_consumer_errors_total", "group" => group.to_string()).increment(1);
        publish_up(group, state);
    }

    fn restarted(&self, group: &str) {
        if let Some(s) = self.inner.lock().expect("consumers lock").get_mut(group) {
            s.restarts += 1;
            s.state = ConsumerState::Starting;
        }
        metrics::counter!("strata_consumer_restarts_total", "group" => group.to_string()).increment(1);
        publish_up(group, ConsumerState::Starting);
    }
}

fn publish_up(group: &str, state: ConsumerState) {
    let up = !matches!(state, ConsumerState::Retrying | ConsumerState::Failed | ConsumerState::WaitingForDisk);
    metrics::gauge!("strata_consumer_up", "group" => group.to_string()).set(if up { 1.0 } else { 0.0 });
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A running consumer: stop it with `stop`, which commits what was written.
pub struct Consumer {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Consumer {
    /// Asks the consumer to commit and stop, and waits for it. Blocking.
    pub fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

struct PartitionState {
    topic: String,
    partition: u32,
    lag: Gauge,
}

/// Builds a consumer's sink, once at start and again for every restart after a failure, so that
/// a restarted attempt never sees what a failed one left in memory.
pub type SinkFactory = Box<dyn FnMut() -> Box<dyn Sink> + Send>;

/// Starts a supervised consumer on its own thread (a sink's calls may be blocking work: files,
/// indexes) and registers it in `consumers`. Returns at once; failures show in its status.
pub fn spawn_consumer(
    log: Arc<dyn Log>,
    mut factory: SinkFactory,
    cfg: ConsumerConfig,
    consumers: &Consumers,
) -> Consumer {
    let (stop, stopped) = watch::channel(false);
    let first = factory();
    let group = first.group().to_string();
    consumers.register(&group);
    let consumers = consumers.clone();
    let thread = std::thread::Builder::new()
        .name(format!("sink-{group}"))
        .spawn(move || {
            if let Err(e) = cfg.priority.apply_to_current_thread() {
                // A consumer that keeps the default class is only less polite.
                tracing::warn!(%group, priority = ?cfg.priority, error = %e, "cannot set the consumer's CPU class");
            }
            supervise(log, first, factory, cfg, stopped, consumers)
        })
        .expect("spawn consumer thread");
    Consumer { stop, thread: Some(thread) }
}

/// Why an attempt ended.
enum Ended {
    /// Asked to stop, everything committed.
    Stopped,
    Failed(String),
}

fn supervise(
    log: Arc<dyn Log>,
    first: Box<dyn Sink>,
    mut factory: SinkFactory,
    cfg: ConsumerConfig,
    mut stopped: watch::Receiver<bool>,
    consumers: Consumers,
) {
    let group = first.group().to_string();
    let mut sink = Some(first);
    let mut failures = 0u32;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("consumer runtime");
    loop {
        let attempt_sink = sink.take().unwrap_or_else(|| factory());
        let started = Instant::now();
        let ended = std::panic::catch_unwind(AssertUnwindSafe(|| {
            attempt(&log, attempt_sink, &cfg, &mut stopped, &consumers, &rt)
        }))
        .unwrap_or_else(|panic| Ended::Failed(format!("panicked: {}", panic_message(&*panic))));
        let reason = match ended {
            Ended::Stopped => {
                consumers.set_state(&group, ConsumerState::Stopped);
                return;
            }
            Ended::Failed(reason) => reason,
        };
        consumers.error(&group, ConsumerState::Failed, &reason);
        // An attempt that ran for a while before failing starts the backoff over.
        if started.elapsed() > Duration::from_millis(cfg.backoff_ms_max) {
            failures = 0;
        }
        let wait = backoff(&cfg, failures);
        failures = failures.saturating_add(1);
        tracing::error!(%group, error = %reason, retry_in_ms = wait.as_millis() as u64, "consumer failed; restarting from its last commit");
        if rt.block_on(stop_within(&mut stopped, wait)) {
            consumers.set_state(&group, ConsumerState::Stopped);
            return;
        }
        consumers.restarted(&group);
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (_, Some(s)) => s.clone(),
        _ => "a panic without a message".to_string(),
    }
}

/// Capped exponential backoff: `backoff_ms_min` doubled per failure in a row.
fn backoff(cfg: &ConsumerConfig, failures: u32) -> Duration {
    let ms = cfg.backoff_ms_min.saturating_mul(1u64 << failures.min(20)).min(cfg.backoff_ms_max);
    Duration::from_millis(ms)
}

/// Waits `d`, or less if the consumer is asked to stop; true when it was.
async fn stop_within(stopped: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stopped.borrow() {
        return true;
    }
    let asked = tokio::select! {
        r = stopped.wait_for(|s| *s) => r.is_ok(),
        _ = tokio::time::sleep(d) => false,
    };
    asked || *stopped.borrow()
}

/// Loads the sink's positions (its own, or the ones the runtime kept for it) and fills in the
/// partitions it has none for.
fn start(
    log: &dyn Log,
    sink: &mut dyn Sink,
    kept_path: Option<&std::path::Path>,
    rt: &tokio::runtime::Runtime,
) -> Result<(Positions, Vec<PartitionState>), String> {
    let group = sink.group().to_string();
    let own = rt.block_on(sink.committed()).map_err(|e| format!("cannot load its state: {e}"))?;
    let mut positions = match kept_path {
        None => own,
        Some(_) if sink.rebuild_from_start() => Positions::new(),
        Some(path) => kept::read(path).map_err(|e| format!("cannot load its positions: {e}"))?,
    };
    let mut parts = Vec::new();
    for topic in sink.topics().into_iter().map(|t| t.name.to_string()) {
        let n = log.partition_count(&topic).map_err(|e| e.to_string())?;
        // The group's offsets are recorded after each commit of the sink, whether or not the sink
        // persisted anything then (a store may persist less often than it is asked to): for a sink
        // that keeps its positions with its data they may be ahead of its data, so a partition it
        // has no position for starts at the beginning. Only a sink whose positions the runtime
        // keeps may start where its group was.
        let group_offsets = if sink.rebuild_from_start() || kept_path.is_none() {
            Vec::new()
        } else {
            log.committed_offsets(&group).unwrap_or_default()
        };
        for p in 0..n {
            let key = (topic.clone(), p);
            if let std::collections::btree_map::Entry::Vacant(slot) = positions.entry(key) {
                // A sink without a position starts where the group was (if it may), else at the beginning.
                let from_group = group_offsets.iter().find(|o| o.topic == topic && o.partition == p).map(|o| o.offset);
                let earliest = log
                    .topics()
                    .into_iter()
                    .find(|t| t.name == topic)
                    .and_then(|t| t.partitions.into_iter().find(|i| i.partition == p))
                    .map_or(0, |i| i.earliest_offset);
                slot.insert(from_group.unwrap_or(earliest));
            }
            let lag = metrics::gauge!("strata_consumer_lag_records", "group" => group.clone(), "topic" => topic.clone(), "partition" => p.to_string());
            parts.push(PartitionState { topic: topic.clone(), partition: p, lag });
        }
    }
    Ok((positions, parts))
}

/// Where the runtime keeps the sink's positions: `None` when the sink keeps them itself.
fn kept_path(sink: &dyn Sink, cfg: &ConsumerConfig) -> Result<Option<PathBuf>, String> {
    if sink.checkpoint_kind() == CheckpointKind::WithData {
        return Ok(None);
    }
    let Some(dir) = &cfg.checkpoint_dir else {
        return Err("it asks the runtime to keep its positions, but the consumer has no checkpoint_dir".to_string());
    };
    kept::path(dir, sink.group()).map(Some).map_err(|e| e.to_string())
}

/// Retries a sink call while it fails with a retryable error, with capped exponential backoff,
/// showing the consumer as retrying meanwhile. `Err` is a fatal error, or a stop while retrying.
fn with_retries<T>(
    group: &str,
    what: &str,
    cfg: &ConsumerConfig,
    consumers: &Consumers,
    stopped: &mut watch::Receiver<bool>,
    rt: &tokio::runtime::Runtime,
    mut call: impl FnMut() -> Result<T, SinkError>,
) -> Result<T, Option<String>> {
    let mut failures = 0u32;
    loop {
        match call() {
            Ok(v) => {
                if failures > 0 {
                    consumers.set_state(group, ConsumerState::Running);
                    tracing::info!(%group, failures, "{what} succeeded after retries");
                }
                return Ok(v);
            }
            Err(e) if e.is_retryable() => {
                let wait = backoff(cfg, failures);
                failures = failures.saturating_add(1);
                consumers.error(group, ConsumerState::Retrying, &format!("{what} failed: {e}"));
                tracing::warn!(%group, error = %e, retry_in_ms = wait.as_millis() as u64, "{what} failed; retrying the same records");
                if rt.block_on(stop_within(stopped, wait)) {
                    return Err(None);
                }
            }
            Err(e) => return Err(Some(format!("{what} failed: {e}"))),
        }
    }
}

/// One attempt: start the sink and feed it until asked to stop or it fails.
fn attempt(
    log: &Arc<dyn Log>,
    mut sink: Box<dyn Sink>,
    cfg: &ConsumerConfig,
    stopped: &mut watch::Receiver<bool>,
    consumers: &Consumers,
    rt: &tokio::runtime::Runtime,
) -> Ended {
    let group = sink.group().to_string();
    consumers.set_state(&group, ConsumerState::Starting);
    let kept_path = match kept_path(&*sink, cfg) {
        Ok(p) => p,
        Err(reason) => return Ended::Failed(reason),
    };
    let (positions, parts) = match start(&**log, &mut *sink, kept_path.as_deref(), rt) {
        Ok(p) => p,
        Err(reason) => return Ended::Failed(reason),
    };
    let mut checkpoint = Checkpoint::new(positions);
    consumers.set_state(&group, ConsumerState::Running);
    let records_total = metrics::counter!("strata_consumer_records_total", "group" => group.clone());
    let skipped_total = metrics::counter!("strata_consumer_skipped_records_total", "group" => group.clone());
    let commit_seconds = metrics::histogram!("strata_consumer_commit_seconds", "group" => group.clone());
    let mut dirty = false;
    let mut last_commit = Instant::now();
    let commit_every = Duration::from_millis(cfg.commit_interval_ms);
    let mut room = cfg.disk_floor.as_ref().map(|f| (f, DiskRoom::new(f.free_bytes_min)));
    loop {
        let stopping = *stopped.borrow();
        if !stopping && let Some((floor, room)) = room.as_mut() {
            let was_waiting = room.is_refusing();
            match room.admit(0, || strata_log::disk::free_bytes(&floor.dir)) {
                Err(free) => {
                    if !was_waiting {
                        let why = format!(
                            "the disk of {} has {free} bytes free, below the consumers' floor of {} \
                             (pipeline.disk_free_bytes_min): waiting for room",
                            floor.dir.display(),
                            floor.free_bytes_min
                        );
                        tracing::error!(%group, "{why}");
                        metrics::counter!("strata_consumer_disk_waits_total", "group" => group.clone()).increment(1);
                        consumers.error(&group, ConsumerState::WaitingForDisk, &why);
                    }
                    // Records are neither read nor written, nor commits made, until there is room.
                    rt.block_on(stop_within(stopped, Duration::from_millis(cfg.backoff_ms_max.min(1000))));
                    continue;
                }
                Ok(()) if was_waiting => {
                    tracing::info!(%group, dir = %floor.dir.display(), "the consumer's disk has room again; going on");
                    consumers.set_state(&group, ConsumerState::Running);
                }
                Ok(()) => {}
            }
        }
        let mut progressed = false;
        for ps in &parts {
            if stopping {
                break;
            }
            let pos = checkpoint.position(&ps.topic, ps.partition).expect("start gives every partition a position");
            match log.read(&ps.topic, ps.partition, pos, cfg.read_bytes_max) {
                Ok(r) => {
                    ps.lag.set(r.end_offset.saturating_sub(r.next_offset) as f64);
                    if r.next_offset <= pos {
                        continue;
                    }
                    let fresh = checkpoint.unapplied(&ps.topic, ps.partition, &r.records);
                    if !fresh.is_empty() {
                        let written = with_retries(&group, "sink write", cfg, consumers, stopped, rt, || {
                            rt.block_on(sink.write(&ps.topic, ps.partition, fresh))
                        });
                        match written {
                            Ok(()) => {}
                            // Stopped while retrying: the records were not taken, nothing to commit for them.
                            Err(None) => break,
                            Err(Some(reason)) => return Ended::Failed(reason),
                        }
                    }
                    let mut delta = CheckpointDelta::new();
                    let applied = delta
                        .record(&ps.topic, ps.partition, pos, r.next_offset)
                        .and_then(|()| checkpoint.try_apply(&delta));
                    if let Err(e) = applied {
                        return Ended::Failed(format!("checkpoint refused a read: {e}"));
                    }
                    records_total.increment(fresh.len() as u64);
                    progressed = true;
                    dirty = true;
                }
                Err(LogError::OffsetOutOfRange { earliest, latest, .. }) => {
                    // Retention removed records this consumer had not read yet, or its position
                    // is past the end after a log was replaced: go to the nearest valid offset.
                    let to = if pos < earliest { earliest } else { latest };
                    skipped_total.increment(earliest.saturating_sub(pos));
                    tracing::warn!(%group, topic = %ps.topic, partition = ps.partition, from = pos, to, "consumer position out of range, moved");
                    checkpoint.reset(&ps.topic, ps.partition, to);
                    dirty = true;
                }
                Err(e) => {
                    consumers.error(&group, ConsumerState::Retrying, &format!("log read failed: {e}"));
                    tracing::error!(%group, topic = %ps.topic, partition = ps.partition, error = %e, "log read failed");
                    if rt.block_on(stop_within(stopped, Duration::from_millis(cfg.backoff_ms_min))) {
                        break;
                    }
                    consumers.set_state(&group, ConsumerState::Running);
                }
            }
        }
        let stopping = *stopped.borrow();
        // Commits follow the interval even when idle, so a slow trickle of records does not turn
        // into one commit per record.
        if dirty && (stopping || last_commit.elapsed() >= commit_every || sink.wants_commit()) {
            let t = Instant::now();
            let positions = checkpoint.positions();
            let committed = with_retries(&group, "sink commit", cfg, consumers, stopped, rt, || {
                rt.block_on(sink.commit(positions))
            })
            .and_then(|()| match &kept_path {
                None => Ok(()),
                // After the sink's commit, never before: positions ahead of the data would skip
                // records, behind it they only replay them.
                Some(path) => with_retries(&group, "checkpoint write", cfg, consumers, stopped, rt, || {
                    kept::write(path, positions)
                }),
            });
            match committed {
                Ok(()) => {
                    commit_seconds.record(t.elapsed().as_secs_f64());
                    dirty = false;
                    // The interval runs from one commit's start to the next: a commit that takes a
                    // while does not stretch it, so what is written is visible (searchable,
                    // queryable) within about one interval.
                    last_commit = t;
                    let offsets = to_group_offsets(positions);
                    // The sink's own commit is what counts; the group's copy is for lag reports and replay.
                    if let Err(e) = rt.block_on(log.commit_offsets(&group, &offsets)) {
                        tracing::warn!(%group, error = %e, "cannot record group offsets");
                    }
                }
                // Asked to stop while the commit kept failing: what was not committed is read
                // again at the next start.
                Err(None) => return Ended::Stopped,
                Err(Some(reason)) => return Ended::Failed(reason),
            }
        }
        if stopping && !dirty {
            if let Err(e) = rt.block_on(sink.stop(checkpoint.positions())) {
                tracing::error!(%group, error = %e, "sink could not persist its state at stop");
            }
            return Ended::Stopped;
        }
        if !progressed && !stopping {
            // Wake for new records, for the stop, or when a pending commit falls due.
            let mut wait = Duration::from_millis(cfg.idle_wait_ms);
            if dirty {
                wait = wait.min(commit_every.saturating_sub(last_commit.elapsed()));
            }
            rt.block_on(wait_for_records(log, &parts, checkpoint.positions(), stopped, wait));
        }
    }
}

/// Returns when any of the partitions has records past the consumer's position, the consumer is
/// asked to stop, or `timeout` passes: an idle consumer costs no CPU, and a new record is seen as
/// soon as it is durable.
async fn wait_for_records(
    log: &Arc<dyn Log>,
    parts: &[PartitionState],
    positions: &Positions,
    stopped: &mut watch::Receiver<bool>,
    timeout: Duration,
) {
    if timeout.is_zero() || *stopped.borrow() {
        return;
    }
    let mut waits = tokio::task::JoinSet::new();
    for ps in parts {
        let (log, topic, partition) = (log.clone(), ps.topic.clone(), ps.partition);
        let offset = positions[&(topic.clone(), partition)];
        waits.spawn(async move { log.wait_for(&topic, partition, offset, timeout).await });
    }
    tokio::select! {
        _ = waits.join_next() => {}
        _ = stopped.wait_for(|s| *s) => {}
        _ = tokio::time::sleep(timeout) => {}
    }
}

/// Positions as group offsets.
pub fn to_group_offsets(positions: &Positions) -> Vec<GroupOffset> {
    positions
        .iter()
        .map(|((topic, partition), &offset)| GroupOffset { topic: topic.clone(), partition: *partition, offset })
        .collect()
}
