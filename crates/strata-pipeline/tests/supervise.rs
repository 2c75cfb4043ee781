//! Supervision: a sink that panics on one record, one that fails at start, and one that returns
//! a retryable error five times. Each is restarted or retried with backoff, shows its state and
//! last error while it is down, and in the end every record has been applied exactly once.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_log::{EmbeddedLog, EncodedRecords, Log, LogConfig, StoredRecord};
use strata_model::topic::Logs;
use strata_model::{Topic, TopicSpec};
use strata_pipeline::{
    ConsumerConfig, ConsumerState, ConsumerStatus, Consumers, DiskFloor, Positions, Sink, SinkError, SinkFactory,
    spawn_consumer,
};

const RECORDS: u64 = 300;

/// What the sink has made durable: the numbers it applied and the positions they came from,
/// committed together as a real sink does.
#[derive(Default)]
struct Durable {
    applied: Vec<u64>,
    positions: Positions,
}

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    PanicOn(u64),
    FailStarts(u32),
    RetryWrites(u32),
}

struct Applier {
    group: String,
    durable: Arc<Mutex<Durable>>,
    pending: Vec<u64>,
    fault: Fault,
    /// Faults still to inject, shared by every sink the factory builds.
    faults_left: Arc<AtomicU32>,
}

#[strata_pipeline::async_trait]
impl Sink for Applier {
    fn group(&self) -> &str {
        &self.group
    }

    fn topics(&self) -> Vec<TopicSpec> {
        vec![Logs::SPEC]
    }

    async fn committed(&mut self) -> Result<Positions, SinkError> {
        if let Fault::FailStarts(_) = self.fault
            && take_fault(&self.faults_left)
        {
            return Err(SinkError::Corrupt { path: "applier.state".into(), reason: "injected start failure".into() });
        }
        Ok(self.durable.lock().unwrap().positions.clone())
    }

    async fn write(&mut self, _topic: &str, _partition: u32, records: &[StoredRecord]) -> Result<(), SinkError> {
        if let Fault::RetryWrites(_) = self.fault
            && take_fault(&self.faults_left)
        {
            return Err(SinkError::Retry { reason: "injected busy dependency".into() });
        }
        for r in records {
            let n: u64 = std::str::from_utf8(&r.record.payload).unwrap().parse().unwrap();
            if self.fault == Fault::PanicOn(n) && take_fault(&self.faults_left) {
                panic!("injected panic on record {n}");
            }
            self.pending.push(n);
        }
        Ok(())
    }

    async fn commit(&mut self, positions: &Positions) -> Result<(), SinkError> {
        let mut d = self.durable.lock().unwrap();
        d.applied.append(&mut self.pending);
        d.positions = positions.clone();
        Ok(())
    }
}

fn take_fault(left: &AtomicU32) -> bool {
    left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}

async fn numbered_log(dir: &std::path::Path) -> Arc<EmbeddedLog> {
    let mut cfg = LogConfig::new(dir.join("log"), 2);
    cfg.topics.retain(|t| t.name == "logs");
    let log = Arc::new(EmbeddedLog::open(cfg).unwrap());
    for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(10) {
        let p = (chunk[0] / 10 % 2) as u32;
        let mut e = EncodedRecords::new();
        for n in chunk {
            e.push(0, "t", "s", &[], n.to_string().as_bytes()).unwrap();
        }
        log.append("logs", p, e).await.unwrap();
    }
    log
}

fn status(consumers: &Consumers, group: &str) -> ConsumerStatus {
    consumers.list().into_iter().find(|c| c.group == group).unwrap()
}

/// Runs a sink with `fault` to the end; returns every state seen while it ran.
async fn run(fault: Fault, faults: u32) -> (Vec<u64>, ConsumerStatus, Vec<(ConsumerState, Option<String>)>) {
    let dir = tempfile::tempdir().unwrap();
    let log = numbered_log(dir.path()).await;
    let durable = Arc::new(Mutex::new(Durable::default()));
    let faults_left = Arc::new(AtomicU32::new(faults));
    let factory: SinkFactory = {
        let (durable, faults_left) = (durable.clone(), faults_left.clone());
        Box::new(move || {
            Box::new(Applier {
                group: "applier".into(),
                durable: durable.clone(),
                pending: Vec::new(),
                fault,
                faults_left: faults_left.clone(),
            })
        })
    };
    let cfg = ConsumerConfig {
        commit_interval_ms: 20,
        read_bytes_max: 200,
        backoff_ms_min: 150,
        backoff_ms_max: 400,
        ..ConsumerConfig::default()
    };
    let consumers = Consumers::new();
    let consumer = spawn_consumer(log, factory, cfg, &consumers);
    let mut seen: Vec<(ConsumerState, Option<String>)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(&consumers, "applier");
        if seen.last().map(|l| l.0) != Some(s.state) {
            seen.push((s.state, s.last_error.clone()));
        }
        let done = durable.lock().unwrap().applied.len() as u64 >= RECORDS;
        if done && s.state == ConsumerState::Running {
            break;
        }
        assert!(Instant::now() < deadline, "not done: {s:?}, seen {seen:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let s = status(&consumers, "applier");
    tokio::task::spawn_blocking(move || consumer.stop()).await.unwrap();
    assert_eq!(status(&consumers, "applier").state, ConsumerState::Stopped);
    let mut applied = durable.lock().unwrap().applied.clone();
    applied.sort_unstable();
    (applied, s, seen)
}

fn exactly_once(applied: &[u64]) {
    assert_eq!(applied, (0..RECORDS).collect::<Vec<_>>(), "every record applied once: none skipped, none twice");
}

fn saw(seen: &[(ConsumerState, Option<String>)], state: ConsumerState, error: &str) -> bool {
    seen.iter().any(|(s, e)| *s == state && e.as_deref().is_some_and(|e| e.contains(error)))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sink_that_panics_is_restarted_from_its_last_commit() {
    let (applied, status, seen) = run(Fault::PanicOn(157), 1).await;
    exactly_once(&applied);
    assert!(saw(&seen, ConsumerState::Failed, "panicked: injected panic on record 157"), "{seen:?}");
    assert_eq!(status.restarts, 1);
    assert_eq!(status.errors, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sink_that_fails_at_start_is_restarted_with_backoff() {
    let started = Instant::now();
    let (applied, status, seen) = run(Fault::FailStarts(3), 3).await;
    exactly_once(&applied);
    assert!(saw(&seen, ConsumerState::Failed, "cannot load its state"), "{seen:?}");
    assert!(saw(&seen, ConsumerState::Failed, "injected start failure"), "{seen:?}");
    assert_eq!(status.restarts, 3);
    // Waits of 150, 300 and 400 ms (doubling, capped) came before the successful start.
    assert!(started.elapsed() >= Duration::from_millis(850), "backoff was skipped: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retryable_error_retries_the_same_records() {
    let (applied, status, seen) = run(Fault::RetryWrites(5), 5).await;
    exactly_once(&applied);
    assert!(saw(&seen, ConsumerState::Retrying, "injected busy dependency"), "{seen:?}");
    assert_eq!(status.restarts, 0, "a retryable error does not restart the sink");
    assert_eq!(status.errors, 5);
    assert_eq!(status.last_error.as_deref(), Some("sink write failed: injected busy dependency"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_below_its_disk_floor_waits_and_reads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = numbered_log(dir.path()).await;
    let durable = Arc::new(Mutex::new(Durable::default()));
    let factory = |durable: &Arc<Mutex<Durable>>| -> SinkFactory {
        let durable = durable.clone();
        Box::new(move || {
            Box::new(Applier {
                group: "applier".into(),
                durable: durable.clone(),
                pending: Vec::new(),
                fault: Fault::RetryWrites(0),
                faults_left: Arc::new(AtomicU32::new(0)),
            })
        })
    };
    let cfg = |free_bytes_min: u64| ConsumerConfig {
        commit_interval_ms: 20,
        read_bytes_max: 200,
        backoff_ms_min: 50,
        backoff_ms_max: 200,
        disk_floor: Some(DiskFloor { dir: dir.path().to_path_buf(), free_bytes_min }),
        ..ConsumerConfig::default()
    };
    // No disk has this much free: the consumer waits, shows why once, and reads nothing.
    let consumers = Consumers::new();
    let consumer = spawn_consumer(log.clone(), factory(&durable), cfg(u64::MAX / 2), &consumers);
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&consumers, "applier").state != ConsumerState::WaitingForDisk {
        assert!(Instant::now() < deadline, "{:?}", status(&consumers, "applier"));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = status(&consumers, "applier");
    assert_eq!(s.state, ConsumerState::WaitingForDisk);
    assert!(!s.is_down(), "waiting for disk does not make the server unready: queries go on");
    assert!(s.last_error.as_deref().unwrap().contains("pipeline.disk_free_bytes_min"), "{s:?}");
    assert_eq!(s.errors, 1, "waiting is reported once, not at every look at the disk");
    assert!(durable.lock().unwrap().applied.is_empty(), "nothing is written below the floor");
    // It stops at once while it waits.
    let asked = Instant::now();
    tokio::task::spawn_blocking(move || consumer.stop()).await.unwrap();
    assert!(asked.elapsed() < Duration::from_secs(10));
    assert_eq!(status(&consumers, "applier").state, ConsumerState::Stopped);
    // With room, the same sink reads every record once.
    let consumers = Consumers::new();
    let consumer = spawn_consumer(log, factory(&durable), cfg(1), &consumers);
    while durable.lock().unwrap().applied.len() < RECORDS as usize {
        assert!(Instant::now() < deadline, "{:?}", status(&consumers, "applier"));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(status(&consumers, "applier").state, ConsumerState::Running);
    tokio::task::spawn_blocking(move || consumer.stop()).await.unwrap();
    let mut applied = durable.lock().unwrap().applied.clone();
    applied.sort_unstable();
    exactly_once(&applied);
}
