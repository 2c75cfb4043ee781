//! The consumer runtime with the stats sink: it resumes from its own committed positions and
//! counts every record exactly once across restarts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_log::{EmbeddedLog, EncodedRecords, Log, LogConfig};
use strata_model::Topic;
use strata_model::topic::Logs;
use strata_pipeline::{ConsumerConfig, Consumers, StatsSink, spawn_consumer};

async fn append(log: &EmbeddedLog, tenant: &str, n: u32) {
    for p in 0..2 {
        let mut e = EncodedRecords::new();
        for i in 0..n {
            e.push(0, tenant, &format!("s{i}"), &[], b"0123456789").unwrap();
        }
        log.append("logs", p, e).await.unwrap();
    }
}

fn committed(dir: &std::path::Path) -> (u64, u64) {
    let mut s = StatsSink::new(dir, vec![Logs::SPEC]);
    let positions = s.load().unwrap();
    let records = s.committed_counts().values().map(|c| c.records).sum();
    (records, positions.values().sum())
}

fn wait_for(dir: &std::path::Path, records: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while committed(dir).0 != records {
        assert!(Instant::now() < deadline, "stats reached {:?}, want {records}", committed(dir));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_resume_from_the_sinks_own_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = LogConfig::new(dir.path().join("log"), 2);
    cfg.topics.retain(|t| t.name == "logs");
    let log = Arc::new(EmbeddedLog::open(cfg).unwrap());
    let meta = dir.path().join("meta");
    let cc = ConsumerConfig { commit_interval_ms: 50, ..ConsumerConfig::default() };

    append(&log, "a", 50).await;
    let consumers = Consumers::new();
    let factory = |meta: std::path::PathBuf| -> strata_pipeline::SinkFactory {
        Box::new(move || Box::new(StatsSink::new(&meta, vec![Logs::SPEC])))
    };
    let consumer = spawn_consumer(log.clone(), factory(meta.clone()), cc.clone(), &consumers);
    wait_for(&meta, 100);
    append(&log, "b", 10).await;
    wait_for(&meta, 120);
    tokio::task::spawn_blocking(move || consumer.stop()).await.unwrap();
    assert_eq!(committed(&meta), (120, 120), "positions are committed with the counts");

    // Records appended while no consumer ran are counted once the next one starts, and the ones
    // counted before are not counted again.
    append(&log, "a", 5).await;
    let consumer = spawn_consumer(log.clone(), factory(meta.clone()), cc, &consumers);
    wait_for(&meta, 130);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(committed(&meta), (130, 130));
    tokio::task::spawn_blocking(move || consumer.stop()).await.unwrap();
    let group = log.committed_offsets("stats").unwrap();
    assert_eq!(group.iter().map(|o| o.offset).sum::<u64>(), 130, "the group copy follows the sink");
}
