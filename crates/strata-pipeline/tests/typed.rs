//! A typed sink run by the consumer runtime: it is handed the records of its topic decoded, with
//! their offsets, tenants and headers; a record that does not decode is skipped, counted once in
//! `strata_consumer_undecodable_total{group}` (also when the write it was in is retried), and its
//! position is committed past it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusBuilder;
use strata_log::{EmbeddedLog, EncodedRecords, Log, LogConfig};
use strata_model::LogLine;
use strata_model::topic::Logs;
use strata_pipeline::{ConsumerConfig, Consumers, Decoded, Positions, SinkError, TopicSink, Typed, spawn_consumer};

const GROUP: &str = "typed";

/// What the sink was handed: (partition, offset, tenant, header "h", message).
type Seen = (u32, u64, String, Option<Vec<u8>>, String);

#[derive(Default)]
struct Durable {
    seen: Vec<Seen>,
    positions: Positions,
}

struct Lines {
    durable: Arc<Mutex<Durable>>,
    pending: Vec<Seen>,
    /// Writes still to fail with a retryable error.
    busy: Arc<AtomicU32>,
}

#[strata_pipeline::async_trait]
impl TopicSink for Lines {
    type Topic = Logs;

    fn group(&self) -> &str {
        GROUP
    }

    async fn committed(&mut self) -> Result<Positions, SinkError> {
        Ok(self.durable.lock().unwrap().positions.clone())
    }

    async fn write<'r>(&mut self, partition: u32, records: &[Decoded<'r, Logs>]) -> Result<(), SinkError> {
        if self.busy.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(SinkError::Retry { reason: "injected busy dependency".into() });
        }
        for d in records {
            let line: &LogLine = &d.record;
            self.pending.push((
                partition,
                d.offset(),
                d.tenant().to_string(),
                d.header("h").map(<[u8]>::to_vec),
                line.message.clone(),
            ));
        }
        Ok(())
    }

    async fn commit(&mut self, positions: &Positions) -> Result<(), SinkError> {
        let mut d = self.durable.lock().unwrap();
        d.seen.append(&mut self.pending);
        d.positions = positions.clone();
        Ok(())
    }
}

fn line(message: &str) -> Vec<u8> {
    serde_json::to_vec(&LogLine {
        timestamp_ns: 1,
        source_id: "s".into(),
        level: "info".into(),
        message: message.into(),
        run_id: None,
        trace_id: None,
        service: None,
        host: None,
        attributes: Default::default(),
    })
    .unwrap()
}

/// Partition 0: good, bad, good; partition 1: good, bad (the read ends on a bad record).
async fn fill(log: &EmbeddedLog) {
    let records: [(u32, &str, Vec<u8>); 5] = [
        (0, "a", line("zero")),
        (0, "a", b"not json".to_vec()),
        (0, "b", line("two")),
        (1, "b", line("one-zero")),
        (1, "a", b"{\"message\": \"no timestamp\"}".to_vec()),
    ];
    for (p, tenant, payload) in records {
        let mut e = EncodedRecords::new();
        e.push(0, tenant, "s", &[("h", tenant.as_bytes())], &payload).unwrap();
        log.append("logs", p, e).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn records_arrive_decoded_and_undecodable_ones_are_skipped_and_counted_once() {
    let metrics = PrometheusBuilder::new().install_recorder().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = LogConfig::new(dir.path().join("log"), 2);
    cfg.topics.retain(|t| t.name == "logs");
    let log = Arc::new(EmbeddedLog::open(cfg).unwrap());
    fill(&log).await;

    let durable = Arc::new(Mutex::new(Durable::default()));
    let busy = Arc::new(AtomicU32::new(2));
    let factory: strata_pipeline::SinkFactory = {
        let (durable, busy) = (durable.clone(), busy.clone());
        Box::new(move || {
            Box::new(Typed::new(Lines { durable: durable.clone(), pending: Vec::new(), busy: busy.clone() }))
        })
    };
    let cc =
        ConsumerConfig { commit_interval_ms: 20, backoff_ms_min: 20, backoff_ms_max: 40, ..ConsumerConfig::default() };
    let consumers = Consumers::new();
    let consumer = spawn_consumer(log.clone(), factory, cc, &consumers);
    let end: Positions = [(("logs".to_string(), 0), 3), (("logs".to_string(), 1), 2)].into();
    let deadline = Instant::now() + Duration::from_secs(30);
    while durable.lock().unwrap().positions != end {
        assert!(Instant::now() < deadline, "positions reached {:?}", durable.lock().unwrap().positions);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::task::spawn_blocking(move || consumer.stop()).await.unwrap();

    let mut seen = durable.lock().unwrap().seen.clone();
    seen.sort();
    let want: Vec<Seen> = vec![
        (0, 0, "a".into(), Some(b"a".to_vec()), "zero".into()),
        (0, 2, "b".into(), Some(b"b".to_vec()), "two".into()),
        (1, 0, "b".into(), Some(b"b".to_vec()), "one-zero".into()),
    ];
    assert_eq!(seen, want, "each good record once, decoded, with its offset, tenant and headers");
    assert_eq!(busy.load(Ordering::SeqCst), 0, "both retryable failures were injected");
    let text = metrics.render();
    let counted: Vec<&str> =
        text.lines().filter(|l| l.starts_with("strata_consumer_undecodable_total{group=\"typed\"}")).collect();
    assert_eq!(counted, ["strata_consumer_undecodable_total{group=\"typed\"} 2"], "{text}");
}
