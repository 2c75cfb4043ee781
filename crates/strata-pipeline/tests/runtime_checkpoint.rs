//! Runtime-kept checkpoints: a sink that stores no positions of its own declares
//! `CheckpointKind::Runtime`, and the runtime keeps them in `<checkpoint_dir>/<group>.positions`
//! after each commit of the sink. Stopped and restarted, or restarted after a panic, the sink
//! sees every record exactly once.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_log::{EmbeddedLog, EncodedRecords, Log, LogConfig, StoredRecord};
use strata_model::topic::Logs;
use strata_model::{Topic, TopicSpec};
use strata_pipeline::{
    CheckpointKind, ConsumerConfig, ConsumerState, Consumers, Positions, Sink, SinkError, SinkFactory, spawn_consumer,
};

const GROUP: &str = "applier";

/// A sink that keeps only data: the numbers it applied, made durable by `commit`.
struct Applier {
    durable: Arc<Mutex<Vec<u64>>>,
    pending: Vec<u64>,
    /// Panics once on this record, the first time it is written.
    panic_on: Option<(u64, Arc<AtomicBool>)>,
    /// Keeps its positions with its data, like a store, rather than in the runtime.
    with_data: bool,
    /// A store that has not persisted yet: its commits keep nothing (and it has no positions).
    persists: bool,
}

#[strata_pipeline::async_trait]
impl Sink for Applier {
    fn group(&self) -> &str {
        GROUP
    }

    fn topics(&self) -> Vec<TopicSpec> {
        vec![Logs::SPEC]
    }

    fn checkpoint_kind(&self) -> CheckpointKind {
        if self.with_data { CheckpointKind::WithData } else { CheckpointKind::Runtime }
    }

    async fn committed(&mut self) -> Result<Positions, SinkError> {
        // Nothing of its own: were these used, it would start from the beginning every time.
        Ok(Positions::new())
    }

    async fn write(&mut self, _topic: &str, _partition: u32, records: &[StoredRecord]) -> Result<(), SinkError> {
        for r in records {
            let n: u64 = std::str::from_utf8(&r.record.payload).unwrap().parse().unwrap();
            if let Some((at, armed)) = &self.panic_on
                && *at == n
                && armed.swap(false, Ordering::SeqCst)
            {
                panic!("injected panic on record {n}");
            }
            self.pending.push(n);
        }
        Ok(())
    }

    async fn commit(&mut self, _positions: &Positions) -> Result<(), SinkError> {
        if self.persists {
            self.durable.lock().unwrap().append(&mut self.pending);
        } else {
            // Allowed to a sink whose data comes from the log: it persists later, or never.
            self.pending.clear();
        }
        Ok(())
    }
}

fn open_log(dir: &Path) -> Arc<EmbeddedLog> {
    let mut cfg = LogConfig::new(dir.join("log"), 2);
    cfg.topics.retain(|t| t.name == "logs");
    Arc::new(EmbeddedLog::open(cfg).unwrap())
}

/// Appends the numbers `range` to `logs`, ten per batch, the batches alternating partitions.
async fn append(log: &EmbeddedLog, range: std::ops::Range<u64>) {
    for chunk in range.collect::<Vec<_>>().chunks(10) {
        let p = (chunk[0] / 10 % 2) as u32;
        let mut e = EncodedRecords::new();
        for n in chunk {
            e.push(0, "t", "s", &[], n.to_string().as_bytes()).unwrap();
        }
        log.append("logs", p, e).await.unwrap();
    }
}

fn cfg(checkpoint_dir: Option<&Path>) -> ConsumerConfig {
    ConsumerConfig {
        commit_interval_ms: 20,
        read_bytes_max: 200,
        backoff_ms_min: 50,
        backoff_ms_max: 100,
        checkpoint_dir: checkpoint_dir.map(Path::to_path_buf),
        ..ConsumerConfig::default()
    }
}

fn factory(durable: &Arc<Mutex<Vec<u64>>>, panic_on: Option<(u64, Arc<AtomicBool>)>) -> SinkFactory {
    let durable = durable.clone();
    Box::new(move || {
        Box::new(Applier {
            durable: durable.clone(),
            pending: Vec::new(),
            panic_on: panic_on.clone(),
            with_data: false,
            persists: true,
        })
    })
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn applied(durable: &Mutex<Vec<u64>>) -> Vec<u64> {
    let mut v = durable.lock().unwrap().clone();
    v.sort_unstable();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_and_restarted_sink_sees_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let durable = Arc::new(Mutex::new(Vec::new()));

    let log = open_log(dir.path());
    append(&log, 0..100).await;
    let consumers = Consumers::new();
    let consumer = spawn_consumer(log.clone(), factory(&durable, None), cfg(Some(&checkpoints)), &consumers);
    wait_until("the first 100 records", || durable.lock().unwrap().len() >= 100).await;
    tokio::task::spawn_blocking(move || consumer.stop()).await.unwrap();
    assert_eq!(applied(&durable), (0..100).collect::<Vec<_>>());
    assert!(checkpoints.join("applier.positions").exists(), "the runtime wrote the sink's positions");
    log.close();
    drop(log);

    // The group's copy of the positions is gone: only the runtime's file says where the sink is.
    std::fs::remove_file(dir.path().join("log").join("groups").join("applier.json")).unwrap();
    let log = open_log(dir.path());
    assert!(log.committed_offsets(GROUP).unwrap().is_empty());
    append(&log, 100..150).await;
    let consumer = spawn_consumer(log.clone(), factory(&durable, None), cfg(Some(&checkpoints)), &consumers);
    wait_until("the next 50 records", || durable.lock().unwrap().len() >= 150).await;
    // Time for a replay to show, were there one.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::task::spawn_blocking(move || consumer.stop()).await.unwrap();
    assert_eq!(applied(&durable), (0..150).collect::<Vec<_>>(), "every record once: none replayed, none skipped");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sink_that_panics_resumes_from_the_runtimes_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let durable = Arc::new(Mutex::new(Vec::new()));
    let log = open_log(dir.path());
    append(&log, 0..300).await;
    let consumers = Consumers::new();
    let armed = Arc::new(AtomicBool::new(true));
    let consumer =
        spawn_consumer(log.clone(), factory(&durable, Some((157, armed.clone()))), cfg(Some(&checkpoints)), &consumers);
    wait_until("every record", || durable.lock().unwrap().len() >= 300).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = consumers.list().into_iter().find(|c| c.group == GROUP).unwrap();
    tokio::task::spawn_blocking(move || consumer.stop()).await.unwrap();
    assert!(!armed.load(Ordering::SeqCst), "the panic was injected");
    assert_eq!(status.restarts, 1, "{status:?}");
    assert_eq!(applied(&durable), (0..300).collect::<Vec<_>>(), "what the panic lost is read again, nothing more");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_kept_sink_without_a_checkpoint_dir_fails_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    let durable = Arc::new(Mutex::new(Vec::new()));
    let log = open_log(dir.path());
    append(&log, 0..10).await;
    let consumers = Consumers::new();
    let consumer = spawn_consumer(log.clone(), factory(&durable, None), cfg(None), &consumers);
    let status = || consumers.list().into_iter().find(|c| c.group == GROUP).unwrap();
    wait_until("the consumer to fail", || status().state == ConsumerState::Failed).await;
    let error = status().last_error.unwrap_or_default();
    assert!(error.contains("no checkpoint_dir"), "{error}");
    tokio::task::spawn_blocking(move || consumer.stop()).await.unwrap();
    assert!(durable.lock().unwrap().is_empty(), "nothing is applied without a place for its positions");
}

/// A sink that keeps its positions with its data and has persisted none of them yet (a store
/// before its first checkpoint) starts from the beginning, never from its group's offsets: the
/// runtime records those after every commit, whether the sink persisted anything or not.
#[tokio::test(flavor = "multi_thread")]
async fn a_sink_without_positions_of_its_own_starts_at_the_beginning_not_at_its_groups_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_log(dir.path());
    append(&log, 0..100).await;
    let consumers = Consumers::new();
    let lost = Arc::new(Mutex::new(Vec::new()));
    let sink = |durable: &Arc<Mutex<Vec<u64>>>, persists: bool| -> SinkFactory {
        let durable = durable.clone();
        Box::new(move || {
            Box::new(Applier {
                durable: durable.clone(),
                pending: Vec::new(),
                panic_on: None,
                with_data: true,
                persists,
            })
        })
    };
    let consumer = spawn_consumer(log.clone(), sink(&lost, false), cfg(None), &consumers);
    wait_until("the group's offsets to reach the end", || {
        log.committed_offsets(GROUP).unwrap_or_default().iter().map(|o| o.offset).sum::<u64>() >= 100
    })
    .await;
    tokio::task::spawn_blocking(move || consumer.stop()).await.unwrap();
    assert!(lost.lock().unwrap().is_empty(), "the first sink kept nothing");
    let durable = Arc::new(Mutex::new(Vec::new()));
    let consumer = spawn_consumer(log.clone(), sink(&durable, true), cfg(None), &consumers);
    wait_until("every record again", || durable.lock().unwrap().len() >= 100).await;
    tokio::task::spawn_blocking(move || consumer.stop()).await.unwrap();
    assert_eq!(applied(&durable), (0..100).collect::<Vec<_>>());
}
