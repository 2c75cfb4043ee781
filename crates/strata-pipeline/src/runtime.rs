use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::Gauge;
use strata_log::{Error as LogError, GroupOffset, Log};
use tokio::sync::watch;

use crate::{Positions, Sink};

/// How a consumer reads and commits.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Bytes of batches one read of a partition returns at most (at least one batch).
    pub read_bytes_max: u64,
    /// A sink commits at least this often while records flow.
    pub commit_interval_ms: u64,
    /// How long an idle consumer sleeps before it looks for new records again.
    pub idle_poll_ms: u64,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig { read_bytes_max: 1 << 20, commit_interval_ms: 1000, idle_poll_ms: 20 }
    }
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

/// Why a consumer did not start: its sink could not load its state, or the log does not have
/// its topics. The state a sink cannot rebuild is not served half-loaded: the start fails.
#[derive(Debug, thiserror::Error)]
#[error("consumer {group} cannot start: {reason}")]
pub struct StartError {
    pub group: String,
    pub reason: String,
}

/// Starts a consumer on its own thread: a sink's calls are blocking work (files, indexes).
/// Blocking until the sink has loaded its state, so that a start failure is the caller's error.
pub fn spawn_consumer(log: Arc<dyn Log>, sink: Box<dyn Sink>, cfg: ConsumerConfig) -> Result<Consumer, StartError> {
    let (stop, stopped) = watch::channel(false);
    let name = format!("sink-{}", sink.group());
    let (started_tx, started_rx) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let mut sink = sink;
            match start(&*log, &mut *sink) {
                Ok((positions, parts)) => {
                    let _ = started_tx.send(Ok(()));
                    run(log, sink, cfg, stopped, positions, parts);
                }
                Err(e) => {
                    let _ = started_tx.send(Err(e));
                }
            }
        })
        .expect("spawn consumer thread");
    match started_rx.recv() {
        Ok(Ok(())) => Ok(Consumer { stop, thread: Some(thread) }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            Err(StartError { group: "?".into(), reason: "the consumer thread ended while starting".into() })
        }
    }
}

/// Loads the sink's positions and fills in the partitions it has none for.
fn start(log: &dyn Log, sink: &mut dyn Sink) -> Result<(Positions, Vec<PartitionState>), StartError> {
    let group = sink.group().to_string();
    let fail = |reason: String| StartError { group: group.clone(), reason };
    let mut positions = sink.committed().map_err(|e| fail(e.to_string()))?;
    let mut parts = Vec::new();
    for topic in sink.topics() {
        let n = log.partition_count(&topic).map_err(|e| fail(e.to_string()))?;
        let group_offsets =
            if sink.rebuild_from_start() { Vec::new() } else { log.committed_offsets(&group).unwrap_or_default() };
        for p in 0..n {
            let key = (topic.clone(), p);
            if let std::collections::btree_map::Entry::Vacant(slot) = positions.entry(key) {
                // A sink without its own position starts where the group was, else at the beginning.
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

fn run(
    log: Arc<dyn Log>,
    mut sink: Box<dyn Sink>,
    cfg: ConsumerConfig,
    stopped: watch::Receiver<bool>,
    mut positions: Positions,
    parts: Vec<PartitionState>,
) {
    let group = sink.group().to_string();
    let records_total = metrics::counter!("strata_consumer_records_total", "group" => group.clone());
    let errors_total = metrics::counter!("strata_consumer_errors_total", "group" => group.clone());
    let skipped_total = metrics::counter!("strata_consumer_skipped_records_total", "group" => group.clone());
    let commit_seconds = metrics::histogram!("strata_consumer_commit_seconds", "group" => group.clone());
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("consumer runtime");
    let mut dirty = false;
    let mut last_commit = Instant::now();
    let commit_every = Duration::from_millis(cfg.commit_interval_ms);
    loop {
        let stopping = *stopped.borrow();
        let mut progressed = false;
        for ps in &parts {
            if stopping {
                break;
            }
            let key = (ps.topic.clone(), ps.partition);
            let pos = positions[&key];
            match log.read(&ps.topic, ps.partition, pos, cfg.read_bytes_max) {
                Ok(r) => {
                    ps.lag.set(r.end_offset.saturating_sub(r.next_offset) as f64);
                    if r.records.is_empty() {
                        continue;
                    }
                    if let Err(e) = sink.write(&ps.topic, ps.partition, &r.records) {
                        errors_total.increment(1);
                        tracing::error!(%group, topic = %ps.topic, partition = ps.partition, error = %e, "sink write failed; retrying");
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                    records_total.increment(r.records.len() as u64);
                    positions.insert(key, r.next_offset);
                    progressed = true;
                    dirty = true;
                }
                Err(LogError::OffsetOutOfRange { earliest, latest, .. }) => {
                    // Retention removed records this consumer had not read yet, or its position
                    // is past the end after a log was replaced: go to the nearest valid offset.
                    let to = if pos < earliest { earliest } else { latest };
                    skipped_total.increment(earliest.saturating_sub(pos));
                    tracing::warn!(%group, topic = %ps.topic, partition = ps.partition, from = pos, to, "consumer position out of range, moved");
                    positions.insert(key, to);
                    dirty = true;
                }
                Err(e) => {
                    errors_total.increment(1);
                    tracing::error!(%group, topic = %ps.topic, partition = ps.partition, error = %e, "log read failed");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
        // Commits follow the interval even when idle, so a slow trickle of records does not turn
        // into one commit per record.
        if dirty && (stopping || last_commit.elapsed() >= commit_every) {
            let t = Instant::now();
            match sink.commit(&positions) {
                Ok(()) => {
                    commit_seconds.record(t.elapsed().as_secs_f64());
                    dirty = false;
                    last_commit = Instant::now();
                    let offsets = to_group_offsets(&positions);
                    // The sink's own commit is what counts; the group's copy is for lag reports and replay.
                    if let Err(e) = rt.block_on(log.commit_offsets(&group, &offsets)) {
                        tracing::warn!(%group, error = %e, "cannot record group offsets");
                    }
                }
                Err(e) => {
                    errors_total.increment(1);
                    tracing::error!(%group, error = %e, "sink commit failed; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        if stopping && !dirty {
            if let Err(e) = sink.stop(&positions) {
                tracing::error!(%group, error = %e, "sink could not persist its state at stop");
            }
            return;
        }
        if !progressed && !stopping {
            std::thread::sleep(Duration::from_millis(cfg.idle_poll_ms));
        }
    }
}

/// Positions as group offsets.
pub fn to_group_offsets(positions: &Positions) -> Vec<GroupOffset> {
    positions
        .iter()
        .map(|((topic, partition), &offset)| GroupOffset { topic: topic.clone(), partition: *partition, offset })
        .collect()
}
