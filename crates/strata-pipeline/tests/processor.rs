//! Exactly once between topics: a processor transforms a numbered stream from `logs` to `events`
//! in a child process (this test binary, run again) that is SIGKILLed at random moments, at least
//! twenty times while its output is incomplete. At the end the output topic holds each input
//! record's output exactly once, in per-partition order.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_log::{EmbeddedLog, EncodedRecords, Log, LogConfig, StoredRecord};
use strata_model::topic::{Events, Logs};
use strata_model::{Topic, TopicSpec};
use strata_pipeline::{
    ConsumerConfig, Consumers, OutputRecord, Processor, ProcessorSink, SinkError, SinkFactory, spawn_consumer,
};

const CHILD_ENV: &str = "STRATA_PROCESSOR_TEST_DIR";
const FINISH_ENV: &str = "STRATA_PROCESSOR_TEST_FINISH";
const RECORDS: u64 = 18_000;
const PARTITIONS: u32 = 3;
const MID_RUN_KILLS: usize = 20;

/// Zero, one or two outputs per input, so that batches of every shape are cut by the kills.
struct Transform;

fn outputs_of(n: u64) -> Vec<String> {
    match n {
        n if n % 7 == 0 => Vec::new(),
        n if n % 5 == 0 => vec![format!("{n}:a"), format!("{n}:b")],
        n => vec![format!("{n}:{}", n * 2)],
    }
}

impl Processor for Transform {
    fn name(&self) -> &str {
        "transform"
    }

    fn input(&self) -> TopicSpec {
        Logs::SPEC
    }

    fn output(&self) -> TopicSpec {
        Events::SPEC
    }

    fn process(&mut self, record: &StoredRecord, out: &mut Vec<OutputRecord>) -> Result<(), SinkError> {
        let n: u64 = std::str::from_utf8(&record.record.payload).unwrap().parse().unwrap();
        for payload in outputs_of(n) {
            out.push(OutputRecord {
                timestamp_ns: record.record.timestamp_ns,
                source_id: record.record.source_id.clone(),
                headers: Vec::new(),
                payload: payload.into_bytes(),
            });
        }
        Ok(())
    }
}

fn log_config(dir: &Path) -> LogConfig {
    let mut cfg = LogConfig::new(dir.join("log"), PARTITIONS);
    cfg.topics.retain(|t| t.name == "logs" || t.name == "events");
    cfg
}

/// The child: runs the processor; with `FINISH_ENV`, stops and exits once it has caught up.
fn child(dir: &Path) -> ! {
    let finish = std::env::var_os(FINISH_ENV).is_some();
    let log = Arc::new(EmbeddedLog::open(log_config(dir)).expect("the killed process's lock is gone with it"));
    let dyn_log: Arc<dyn Log> = log.clone();
    let state = dir.join("state");
    let factory: SinkFactory = {
        let log = dyn_log.clone();
        Box::new(move || Box::new(ProcessorSink::new(Transform, log.clone(), &state)))
    };
    // One small batch per read: one output append (and fsync) per four input records.
    let cfg = ConsumerConfig { read_bytes_max: 64, commit_interval_ms: 30, ..ConsumerConfig::default() };
    let consumer = spawn_consumer(dyn_log.clone(), factory, cfg, &Consumers::new());
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if !finish {
            continue;
        }
        let committed = log.committed_offsets("transform").unwrap_or_default();
        let done = (0..PARTITIONS).all(|p| {
            let end =
                dyn_log.topics().into_iter().find(|t| t.name == "logs").unwrap().partitions[p as usize].latest_offset;
            committed.iter().any(|o| o.partition == p && o.offset == end)
        });
        if done {
            consumer.stop();
            log.close();
            std::process::exit(0);
        }
    }
}

/// Output payloads per output partition, in log order.
fn outputs(dir: &Path) -> Vec<Vec<String>> {
    let log = EmbeddedLog::open(log_config(dir)).unwrap();
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        let mut payloads = Vec::new();
        let mut at = 0;
        loop {
            let r = log.read("events", p, at, 1 << 20).unwrap();
            payloads.extend(r.records.iter().map(|r| String::from_utf8(r.record.payload.clone()).unwrap()));
            if r.next_offset >= r.end_offset {
                break;
            }
            at = r.next_offset;
        }
        out.push(payloads);
    }
    log.close();
    out
}

fn spawn_child(dir: &Path, finish: bool) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["processor_output_is_exactly_once_across_sigkills", "--exact", "--nocapture"]).env(CHILD_ENV, dir);
    if finish {
        cmd.env(FINISH_ENV, "1");
    }
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap()
}

#[test]
fn processor_output_is_exactly_once_across_sigkills() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(&PathBuf::from(dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    {
        let log = EmbeddedLog::open(log_config(dir.path())).unwrap();
        for p in 0..PARTITIONS {
            let numbers: Vec<u64> = (0..RECORDS).filter(|n| n % u64::from(PARTITIONS) == u64::from(p)).collect();
            // Small batches, so that the processor takes many reads and appends, and kills cut it
            // anywhere among them.
            for chunk in numbers.chunks(4) {
                let mut e = EncodedRecords::new();
                for n in chunk {
                    e.push(*n as i64, "t", &format!("s{p}"), &[], n.to_string().as_bytes()).unwrap();
                }
                rt.block_on(log.append("logs", p, e)).unwrap();
            }
        }
        log.close();
    }
    let want: Vec<Vec<String>> = (0..PARTITIONS)
        .map(|p| (0..RECORDS).filter(|n| n % u64::from(PARTITIONS) == u64::from(p)).flat_map(outputs_of).collect())
        .collect();
    let total: usize = want.iter().map(Vec::len).sum();

    // Kill at random moments until twenty kills have landed while the output was incomplete.
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    let mut mid_run = 0;
    let mut kills = 0;
    let mut last_len = 0;
    while mid_run < MID_RUN_KILLS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut c = spawn_child(dir.path(), false);
        std::thread::sleep(Duration::from_millis(5 + seed % 45));
        c.kill().unwrap();
        c.wait().unwrap();
        kills += 1;
        let got = outputs(dir.path());
        let len: usize = got.iter().map(Vec::len).sum();
        // Whatever moment it died at, the output so far is a prefix of the right output.
        for (p, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(g.len() <= w.len() && g[..] == w[..g.len()], "partition {p} after kill {kills}: not a prefix");
        }
        assert!(len >= last_len, "output shrank");
        last_len = len;
        if len < total {
            mid_run += 1;
        } else {
            break;
        }
        assert!(kills < 200, "too many kills without progress");
    }
    assert!(mid_run >= MID_RUN_KILLS, "only {mid_run} of {kills} kills landed before the output was complete");

    let mut c = spawn_child(dir.path(), true);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = c.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the last run did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let got = outputs(dir.path());
    for (p, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.len(), w.len(), "partition {p}: every output once");
        assert!(g == w, "partition {p}: outputs in input order, none twice, none missing");
    }
}
