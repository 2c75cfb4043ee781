//! The metric store under SIGKILL: writers send six hours of samples through Prometheus remote
//! write while the server is killed again and again, with checkpoints cutting blocks all along.
//! Afterwards every acknowledged sample is in the store with its exact value, and the store
//! holds each sample of the log once: in a block or in the head, never in both. Every request
//! also brings a series never seen before, so series definitions are written while the server
//! is killed too, and every one an acknowledged request brought can be found afterwards.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Server;
use prost::Message;
use rand::Rng;
use serde_json::Value;
use strata_gateway::remote_write::proto::{Label, Sample, TimeSeries, WriteRequest};

const WRITERS: usize = 4;
const STEP_MS: i64 = 2_000;
/// Six hours at one sample every 2 s: three block ranges, and under the 11,000 points a query
/// may return.
const SAMPLES: i64 = 10_800;
const PER_REQUEST: i64 = 50;

fn value(writer: usize, k: i64) -> f64 {
    k as f64 + writer as f64 / 8.0
}

fn request(writer: usize, t0: i64, first: i64) -> Vec<u8> {
    let labels = [("__name__", "crash_metric"), ("instance", &format!("w{writer}")), ("job", "crash")]
        .iter()
        .map(|(n, v)| Label { name: n.to_string(), value: v.to_string() })
        .collect();
    let samples =
        (first..first + PER_REQUEST).map(|k| Sample { value: value(writer, k), timestamp: t0 + k * STEP_MS }).collect();
    // A series of its own for every request: new series are defined all through the kills.
    let fresh = [("__name__", "crash_fresh"), ("instance", &format!("w{writer}")), ("request", &first.to_string())]
        .iter()
        .map(|(n, v)| Label { name: n.to_string(), value: v.to_string() })
        .collect();
    let fresh_sample = vec![Sample { value: value(writer, first), timestamp: t0 + first * STEP_MS }];
    let req = WriteRequest {
        timeseries: vec![TimeSeries { labels, samples }, TimeSeries { labels: fresh, samples: fresh_sample }],
    };
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap()
}

fn gauge_sum(s: &Server, name: &str) -> f64 {
    s.metric(&format!("{name}{{tenant=\"crash\"}}")).unwrap_or(0.0)
}

#[test]
fn sigkill_during_remote_write_loses_no_acknowledged_sample_and_stores_none_twice() {
    let config = "[pipeline]\ncommit_interval_ms = 100\n[tsdb]\ncheckpoint_interval_ms = 100\n";
    let mut server = Server::start(config);
    let key = server.tenant_key("crash");
    let port = server.port;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    // Aligned to the query step, so that each point's bucket starts at its sample.
    let t0 = (now - SAMPLES * STEP_MS) / STEP_MS * STEP_MS;
    let acked: Arc<Mutex<BTreeMap<usize, BTreeSet<i64>>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (acked, key) = (acked.clone(), key.clone());
        writers.push(std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
            let mut first = 0;
            while first < SAMPLES {
                let r = http
                    .post(format!("http://127.0.0.1:{port}/api/v1/write"))
                    .bearer_auth(&key)
                    .header("content-encoding", "snappy")
                    .body(request(w, t0, first))
                    .send();
                match r {
                    Ok(r) if r.status() == 204 => {
                        acked.lock().unwrap().entry(w).or_default().extend(first..first + PER_REQUEST)
                    }
                    // Not acknowledged (cut off by a kill, or refused while starting): not resent,
                    // so what reached the log anyway must still be stored once.
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
                first += PER_REQUEST;
                // Slow enough that the kills land in the middle of the run.
                std::thread::sleep(Duration::from_millis(15));
            }
        }));
    }
    let mut rng = rand::rng();
    let mut kills = 0;
    while writers.iter().any(|w| !w.is_finished()) && kills < 12 {
        std::thread::sleep(Duration::from_millis(rng.random_range(150..600)));
        server.kill();
        server.spawn();
        kills += 1;
    }
    for w in writers {
        w.join().unwrap();
    }

    // Every distinct sample in the log, per writer.
    // Every series of every record resolves through the registry read back after the last kill.
    let records = server.all_records("metrics");
    let mut in_log: BTreeMap<usize, BTreeSet<i64>> = BTreeMap::new();
    let mut fresh_in_log: BTreeSet<(usize, i64)> = BTreeSet::new();
    for r in &records {
        assert_eq!(r["payload_encoding"], "metric_batch", "a record whose series do not resolve: {r}");
        for series in r["payload"].as_array().unwrap() {
            let w: usize = series["labels"]["instance"].as_str().unwrap()[1..].parse().unwrap();
            if series["labels"]["__name__"] == "crash_fresh" {
                fresh_in_log.insert((w, series["labels"]["request"].as_str().unwrap().parse().unwrap()));
                continue;
            }
            for p in series["samples"].as_array().unwrap() {
                in_log.entry(w).or_default().insert((p[0].as_i64().unwrap() - t0) / STEP_MS);
            }
        }
    }
    let distinct: usize = in_log.values().map(BTreeSet::len).sum::<usize>() + fresh_in_log.len();

    // The store converges to exactly the log's samples, and never counts more.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let stored = gauge_sum(&server, "strata_tsdb_head_samples") + gauge_sum(&server, "strata_tsdb_block_samples");
        assert!(
            stored as usize <= distinct,
            "the store holds {stored} samples, more than the {distinct} distinct samples in the log"
        );
        if stored as usize == distinct {
            break;
        }
        assert!(Instant::now() < deadline, "the store holds {stored} of {distinct} samples");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(gauge_sum(&server, "strata_tsdb_blocks") >= 1.0, "checkpoints cut blocks during the run");

    let acked = acked.lock().unwrap().clone();
    let acked_count: usize = acked.values().map(BTreeSet::len).sum();
    assert!(acked_count >= SAMPLES as usize, "too few acknowledged samples to mean anything: {acked_count}");
    for w in 0..WRITERS {
        let r: Value = server
            .http
            .get(server.url("/query/v1/metrics"))
            .bearer_auth(&key)
            .query(&[("name", "crash_metric"), ("labels", &format!("instance:w{w}")), ("step", "2s")])
            .query(&[("from", t0), ("to", t0 + SAMPLES * STEP_MS)])
            .send()
            .unwrap()
            .json()
            .unwrap();
        let points: BTreeMap<i64, f64> = r["series"][0]["points"]
            .as_array()
            .unwrap_or_else(|| panic!("writer {w}: {r}"))
            .iter()
            .map(|p| ((p[0].as_i64().unwrap() - t0) / STEP_MS, p[1].as_f64().unwrap()))
            .collect();
        for &k in acked.get(&w).into_iter().flatten() {
            assert_eq!(points.get(&k), Some(&value(w, k)), "writer {w} lost acknowledged sample {k}");
        }
        let want: BTreeSet<i64> = in_log.remove(&w).unwrap_or_default();
        assert_eq!(points.keys().copied().collect::<BTreeSet<i64>>(), want, "writer {w}: the store is the log");
        assert!(points.iter().all(|(&k, &v)| v == value(w, k)), "writer {w}: a value changed");
    }
    // Every new series of an acknowledged request is in the store, under its own labels.
    let r: Value = server
        .http
        .get(server.url("/api/v1/series"))
        .bearer_auth(&key)
        .query(&[("match[]", "crash_fresh")])
        .query(&[("start", t0 / 1000 - 1), ("end", (t0 + SAMPLES * STEP_MS) / 1000 + 1)])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let fresh_stored: BTreeSet<(usize, i64)> = r["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .map(|s| {
            (s["instance"].as_str().unwrap()[1..].parse().unwrap(), s["request"].as_str().unwrap().parse().unwrap())
        })
        .collect();
    assert_eq!(fresh_stored, fresh_in_log, "the store has the log's new series, each once");
    for (&w, firsts) in &acked {
        for first in firsts.iter().copied().filter(|k| k % PER_REQUEST == 0) {
            assert!(fresh_stored.contains(&(w, first)), "writer {w}: acknowledged new series of request {first} lost");
        }
    }
    eprintln!("{kills} kills, {acked_count} samples acknowledged, {distinct} in the log");
}
