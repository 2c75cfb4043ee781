//! Idempotent ingest under SIGKILL: clients send numbered records with an `Idempotency-Key` per
//! request and retry every request whose answer they did not get, with the same key and body,
//! while the server is killed again and again. Each request spreads its records over several
//! partitions, so a kill can leave a request appended to some partitions and not others. At the
//! end the log holds every record exactly once, and a key sent again gets its first answer.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::Server;
use rand::Rng;
use serde_json::{Value, json};

const CLIENTS: usize = 4;
const KILLS: usize = 22;
const BATCH: u64 = 12;

fn body(client: usize, first: u64) -> String {
    (first..first + BATCH)
        .map(|n| {
            // Six sources per request: its records land in several partitions.
            let line = json!({"source_id": format!("c{client}-s{}", n % 6), "message": format!("c{client} n{n}")});
            format!("{line}\n")
        })
        .collect()
}

/// Sends one request until it is answered, always with the same key and body.
fn send_until_answered(http: &reqwest::blocking::Client, url: &str, api_key: &str, key: &str, body: &str) -> Value {
    loop {
        let r = http
            .post(url)
            .bearer_auth(api_key)
            .header("idempotency-key", key)
            .header("content-type", "application/x-ndjson")
            .body(body.to_string())
            .send();
        match r {
            Ok(r) if r.status() == 200 => return r.json().unwrap(),
            Ok(r) if r.status().is_client_error() && r.status() != 409 && r.status() != 429 => {
                panic!("{key}: {} {}", r.status(), r.text().unwrap_or_default())
            }
            // 409 (the first attempt is still under way), 503 while starting, a cut connection.
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[test]
fn retried_requests_are_appended_once_across_kills() {
    let mut server = Server::start(
        "[log]\nsegment_bytes_max = 1048576\n[ingest.idempotency]\nsave_interval_ms = 300\n[pipeline]\ncommit_interval_ms = 200\n",
    );
    let api_key = server.tenant_key("idem");
    let url = server.url("/ingest/v1/logs");
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (stop, url, api_key) = (stop.clone(), url.clone(), api_key.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("client-{c}-batch-{sent}");
                    let answer = send_until_answered(&http, &url, &api_key, &key, &body(c, sent));
                    assert_eq!(answer["accepted"], BATCH, "{key}: {answer}");
                    sent += BATCH;
                    std::thread::sleep(Duration::from_millis(10));
                }
                sent
            })
        })
        .collect();
    let mut rng = rand::rng();
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(rng.random_range(80..400)));
        server.kill();
        server.spawn();
    }
    stop.store(true, Ordering::Relaxed);
    let sent: Vec<u64> = clients.into_iter().map(|h| h.join().unwrap()).collect();
    let total: u64 = sent.iter().sum();
    assert!(total >= 1000, "too few records to mean anything: {total}");

    // Every record of every request is in the log once.
    let mut count: BTreeMap<(usize, u64), usize> = BTreeMap::new();
    for r in server.all_records("logs") {
        let message = r["payload"]["message"].as_str().unwrap();
        let (c, n) = message.split_once(' ').unwrap();
        *count.entry((c[1..].parse().unwrap(), n[1..].parse().unwrap())).or_default() += 1;
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "records appended more than once: {twice:?}");
    for (c, &n) in sent.iter().enumerate() {
        for i in 0..n {
            assert_eq!(count.get(&(c, i)), Some(&1), "client {c} record {i} is not in the log");
        }
    }
    assert_eq!(count.len() as u64, total, "the log holds only the records sent");

    // A key sent again after the kills gets its answer and appends nothing.
    let http = reqwest::blocking::Client::new();
    let again = send_until_answered(&http, &url, &api_key, "client-0-batch-0", &body(0, 0));
    assert_eq!(again["accepted"], BATCH);
    assert_eq!(server.all_records("logs").len() as u64, total);
    eprintln!("{KILLS} kills, {total} records sent by {CLIENTS} clients, each in the log once");
}

#[test]
fn a_key_gets_its_first_answer_on_every_endpoint() {
    let server = Server::start("");
    let api_key = server.tenant_key("idem");
    let post = |path: &str, key: &str, content_type: &str, body: &str| {
        let r = server
            .http
            .post(server.url(path))
            .bearer_auth(&api_key)
            .header("idempotency-key", key)
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().unwrap())
    };
    // One good record and one bad: the answer lists the error, and a retry gets the same answer.
    let body = "{\"source_id\": \"a\", \"message\": \"m\"}\n{\"message\": 5}\n";
    let first = post("/ingest/v1/logs", "k1", "application/x-ndjson", body);
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(post("/ingest/v1/logs", "k1", "application/x-ndjson", body), first);
    assert_eq!(server.all_records("logs").len(), 1);
    // The same key for another endpoint is an error the client can act on.
    let other = post("/ingest/v1/events", "k1", "application/x-ndjson", "{}");
    assert_eq!(other.0, 422, "{}", other.1);
    assert!(other.1.contains("Idempotency-Key"), "{}", other.1);
    // Raw payloads, events and metrics: sent twice, stored once.
    for _ in 0..2 {
        assert_eq!(post("/ingest/v1/raw/dumps?source_id=h", "raw-1", "application/octet-stream", "bytes").0, 200);
        let event = "{\"source_id\": \"a\", \"type\": \"deploy\", \"event_id\": \"e1\", \"data\": {}}";
        assert_eq!(post("/ingest/v1/events", "ev-1", "application/json", event).0, 200);
        let metric = "{\"source_id\": \"a\", \"name\": \"m\", \"value\": 1}";
        assert_eq!(post("/ingest/v1/metrics", "m-1", "application/json", metric).0, 200);
    }
    assert_eq!(server.all_records("raw").len(), 1);
    assert_eq!(server.all_records("events").len(), 1);
    assert_eq!(server.all_records("metrics").len(), 1);
    // The key is written with the records: the first record of each partition carries it.
    let raw = &server.all_records("raw")[0];
    assert_eq!(raw["headers"]["idempotency-key"], "raw-1", "{raw}");
    // A malformed key is refused before anything is stored.
    let bad = post("/ingest/v1/logs", "two words", "application/x-ndjson", body);
    assert_eq!(bad.0, 400, "{}", bad.1);
    assert_eq!(server.all_records("logs").len(), 1);
}
