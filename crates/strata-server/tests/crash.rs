//! Crash safety: concurrent producers, the server SIGKILLed at random moments again and again.
//! Every acknowledged record must be in the log exactly once, every batch must pass its CRC, and
//! the stats consumer must have counted every record of the log exactly once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{NumberedClients, Server};
use rand::Rng;
use serde_json::{Value, json};
use strata_log::{EmbeddedLog, Log, LogConfig};

const CLIENTS: usize = 4;
const KILLS: usize = 24;
const BATCH: u64 = 10;

#[test]
fn sigkill_during_ingest_loses_and_duplicates_nothing_acknowledged() {
    sigkills("", |c, n| json!({"source_id": format!("client-{c}"), "message": format!("c{c} n{n}")}));
}

/// Lines of 2 KiB, 1 MiB segments sealed after a second of quiet: sealed segments are being
/// compressed in the background (rewritten and put in place) while the server is killed.
#[test]
fn sigkill_while_sealed_segments_are_compressed_loses_nothing() {
    let server = sigkills("segment_idle_ms = 1000\n", |c, n| {
        let padding = "lorem ipsum dolor ".repeat(110);
        json!({"source_id": format!("client-{c}"), "message": format!("c{c} n{n} {padding}")})
    });
    let markers = std::fs::read_dir(server.data_dir().join("log/logs/0"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "compressed"))
        .count();
    assert!(markers >= 2, "{markers} segments of logs/0 compressed");
}

/// Runs clients sending `record`s (whose message starts `c<client> n<number>`) against a server
/// SIGKILLed `KILLS` times, with `log` added to its `[log]` configuration, and checks the log.
fn sigkills(log: &str, record: fn(usize, u64) -> Value) -> Server {
    let mut server =
        Server::start(&format!("[log]\nsegment_bytes_max = 1048576\n{log}[pipeline]\ncommit_interval_ms = 200\n"));
    let key = server.tenant_key("crash");
    let clients = NumberedClients::start(&server, &key, "logs", CLIENTS, BATCH, 0, record);
    let mut rng = rand::rng();
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(rng.random_range(50..400)));
        server.kill();
        server.spawn();
    }
    std::thread::sleep(Duration::from_millis(300));
    let acked = clients.stop();

    // The stats consumer catches up and has counted each record of the log exactly once.
    let deadline = Instant::now() + Duration::from_secs(60);
    let total_in_log = loop {
        let topics = server.admin_get("/admin/v1/topics");
        let logs = topics["topics"].as_array().unwrap().iter().find(|t| t["name"] == "logs").unwrap().clone();
        let total: u64 =
            logs["partitions"].as_array().unwrap().iter().map(|p| p["latest_offset"].as_u64().unwrap()).sum();
        let counted =
            server.metric("strata_stored_records_total{tenant=\"crash\",kind=\"logs\"}").unwrap_or(0.0) as u64;
        if counted == total {
            break total;
        }
        assert!(Instant::now() < deadline, "stats counted {counted} of {total} records");
        assert!(
            counted < total,
            "stats counted {counted}, more than the {total} records in the log\ntopics: {}\ngroups: {}\n{}",
            server.admin_get("/admin/v1/topics"),
            server.admin_get("/admin/v1/consumer-groups"),
            server
                .server_log()
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(server.terminate().success(), "a clean shutdown exits 0");

    let acked_count = acked.len();
    assert!(acked_count >= 2000, "too few acknowledged records to mean anything: {acked_count}");

    // Read the log files directly: every batch is CRC-checked on the way.
    let log = EmbeddedLog::open(LogConfig::new(server.data_dir().join("log"), 4)).unwrap();
    let mut seen: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    let mut records = 0u64;
    for p in 0..4 {
        let mut offset = 0;
        loop {
            let r = log.read("logs", p, offset, 1 << 20).unwrap_or_else(|e| panic!("logs/{p} at {offset}: {e}"));
            if r.records.is_empty() {
                break;
            }
            for s in &r.records {
                let v: Value = serde_json::from_slice(&s.record.payload).unwrap();
                let mut words = v["message"].as_str().unwrap().split(' ');
                let c: usize = words.next().unwrap()[1..].parse().unwrap();
                let n: u64 = words.next().unwrap()[1..].parse().unwrap();
                seen.entry(c).or_default().push(n);
                records += 1;
            }
            offset = r.next_offset;
        }
    }
    assert_eq!(records, total_in_log);
    for c in 0..CLIENTS {
        let got = seen.remove(&c).unwrap_or_default();
        // One client's records are in one partition, in the order it sent them, none twice.
        assert!(got.windows(2).all(|w| w[0] < w[1]), "client {c}: out of order or duplicated");
        let got: BTreeSet<u64> = got.into_iter().collect();
        let want: BTreeSet<u64> = acked.iter().filter(|(client, _)| *client == c).map(|(_, n)| *n).collect();
        let lost: Vec<&u64> = want.difference(&got).collect();
        assert!(lost.is_empty(), "client {c} lost {} acknowledged records, first {:?}", lost.len(), lost.first());
    }
    eprintln!("{KILLS} kills, {acked_count} records acknowledged, {records} in the log");
    log.close();
    server
}
