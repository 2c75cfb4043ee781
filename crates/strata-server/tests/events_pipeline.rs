//! The events pipeline end to end: deduplication by `event_id` across SIGKILLs, and enrichment
//! from a reference table fed with Debezium change events, by the row version valid at each
//! event's time, the same again when the log is replayed from the start.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Server, now_ms};
use rand::Rng;
use serde_json::{Value, json};

fn post(s: &Server, key: &str, path: &str, body: String) -> (u16, String) {
    let r = s
        .http
        .post(s.url(path))
        .bearer_auth(key)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().unwrap())
}

fn put(s: &Server, key: &str, path: &str, body: Value) -> u16 {
    s.http.put(s.url(path)).bearer_auth(key).json(&body).send().unwrap().status().as_u16()
}

/// The records of `events_enriched` as (event_id, data), in partition order.
fn enriched(s: &Server) -> Vec<(String, Value)> {
    s.all_records("events_enriched")
        .into_iter()
        .map(|r| (r["payload"]["event_id"].as_str().unwrap_or("").to_string(), r["payload"]["data"].clone()))
        .collect()
}

fn wait_for(s: &Server, what: &str, n: usize) -> Vec<(String, Value)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = enriched(s);
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {n} enriched events\n{}",
            got.len(),
            s.admin_get("/admin/v1/consumers")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn resent_events_are_dropped_once_each_across_kills() {
    let mut server = Server::start("[rollups]\ncommit_interval_ms = 200\n");
    let key = server.tenant_key("dedup");
    let mut rng = rand::rng();
    const EVENTS: usize = 400;
    let mut sent = 0;
    let mut kills = 0;
    // Every event is sent twice, the second time a few events later; no Idempotency-Key, so the
    // log holds both and only deduplication can drop the second.
    for i in 0..EVENTS + 3 {
        let mut body = String::new();
        if i < EVENTS {
            body.push_str(&format!("{}\n", json!({"type": "order", "source_id": format!("shop-{}", i % 3), "event_id": format!("e{i}"), "data": {"n": i}})));
        }
        if i >= 3 {
            let j = i - 3;
            body.push_str(&format!("{}\n", json!({"type": "order", "source_id": format!("shop-{}", j % 3), "event_id": format!("e{j}"), "data": {"n": j}})));
        }
        server.post_events_until_taken(&key, &body, None);
        sent += 1;
        if sent % 40 == 0 && kills < 8 {
            std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
            server.kill();
            server.spawn();
            kills += 1;
        }
    }
    wait_for(&server, "deduplicated events", EVENTS);
    // Time for a second copy to show, were there one.
    std::thread::sleep(Duration::from_millis(1000));
    let got = enriched(&server);
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for (id, _) in &got {
        *count.entry(id.clone()).or_default() += 1;
    }
    assert_eq!(count.len(), EVENTS, "every event once");
    assert!(count.values().all(|&n| n == 1), "an event passed twice: {:?}", count.iter().find(|(_, n)| **n > 1));
    assert_eq!(server.all_records("events").len(), 2 * EVENTS, "the log keeps what was sent");

    // Past the TTL a resent event is a new one.
    assert_eq!(put(&server, &key, "/admin/v1/dedup", json!({"key": "event_id", "ttl": "1s"})), 200);
    let again = json!({"type": "order", "source_id": "shop-0", "event_id": "late-1", "data": {}}).to_string();
    assert_eq!(post(&server, &key, "/ingest/v1/events", again.clone()).0, 200);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(post(&server, &key, "/ingest/v1/events", again).0, 200);
    let got = wait_for(&server, "the resend after the TTL", EVENTS + 2);
    assert_eq!(got.iter().filter(|(id, _)| id == "late-1").count(), 2);

    // An operator sees the pipeline's inputs partition by partition, read to their ends.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v: Value = server
            .http
            .get(server.url("/admin/v1/stream"))
            .bearer_auth(common::ADMIN_TOKEN)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let inputs = v["pipeline_inputs"].as_array().unwrap();
        let events: Vec<&Value> = inputs.iter().filter(|p| p["topic"] == "events").collect();
        assert!(!events.is_empty() && inputs.iter().any(|p| p["topic"] == "reference"), "{v}");
        let read: u64 = events.iter().map(|p| p["next_offset"].as_u64().unwrap()).sum();
        if read == 2 * EVENTS as u64 + 2 && events.iter().all(|p| p["lag"] == 0) {
            break;
        }
        assert!(Instant::now() < deadline, "the pipeline's inputs: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("{kills} kills, {EVENTS} events sent twice, each passed once");
}

#[test]
fn events_are_enriched_with_the_row_valid_at_their_time_also_in_a_replay() {
    let mut server = Server::start("[rollups]\ncommit_interval_ms = 200\n");
    let key = server.tenant_key("enrich");
    assert_eq!(put(&server, &key, "/admin/v1/reference/hosts", json!({"key": "host"})), 201);
    let t0 = now_ms() - 600_000;
    // Debezium envelopes: created in eu at t0+100 s, moved to us at t0+200 s, deleted at t0+300 s;
    // one with the schema/payload wrapper, one plain row for another host.
    let changes = [
        json!({"before": null, "after": {"host": "web-1", "region": "eu", "team": "core"}, "op": "c", "ts_ms": t0 + 100_000}),
        json!({"schema": {"type": "struct"}, "payload": {"before": {"host": "web-1", "region": "eu", "team": "core"},
            "after": {"host": "web-1", "region": "us", "team": "core"}, "op": "u", "ts_ms": t0 + 200_000}}),
        json!({"before": {"host": "web-1", "region": "us", "team": "core"}, "after": null, "op": "d", "ts_ms": t0 + 300_000}),
        json!({"host": "web-2", "region": "ap", "team": "edge"}),
    ];
    let body: String = changes.iter().map(|c| format!("{c}\n")).collect();
    let (status, text) = post(&server, &key, "/admin/v1/reference/hosts/rows", body);
    assert_eq!(status, 200, "{text}");
    let (status, text) = post(&server, &key, "/admin/v1/reference/hosts/rows", "{\"op\": \"u\"}\n".into());
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("after"), "{text}");
    let r = server
        .http
        .post(server.url("/admin/v1/enrichments"))
        .bearer_auth(&key)
        .json(&json!({"name": "by-host", "table": "hosts", "on": "source_id", "fields": ["region", "team"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let missing = server
        .http
        .post(server.url("/admin/v1/enrichments"))
        .bearer_auth(&key)
        .json(&json!({"name": "x", "table": "nope", "on": "source_id", "fields": ["a"]}))
        .send()
        .unwrap();
    assert_eq!(missing.status(), 400);

    // Events of web-1 before, during each version, and after the delete; one of web-2 (plain
    // row, valid from when it was posted, so before it there is none) and one of an unknown host.
    let events = [
        ("a", "web-1", t0 + 50_000),
        ("b", "web-1", t0 + 150_000),
        ("c", "web-1", t0 + 250_000),
        ("d", "web-1", t0 + 350_000),
        ("e", "web-2", now_ms() + 1000),
        ("f", "db-9", t0 + 150_000),
    ];
    let body: String = events
        .iter()
        .map(|(id, host, t)| {
            format!("{}\n", json!({"type": "req", "source_id": host, "event_id": id, "timestamp": t, "data": {}}))
        })
        .collect();
    assert_eq!(post(&server, &key, "/ingest/v1/events", body).0, 200);
    let first = wait_for(&server, "enriched events", events.len());
    let by_id: BTreeMap<&str, &Value> = first.iter().map(|(id, d)| (id.as_str(), d)).collect();
    assert_eq!(by_id["a"], &json!({}), "before the row existed");
    assert_eq!(by_id["b"], &json!({"region": "eu", "team": "core"}));
    assert_eq!(by_id["c"], &json!({"region": "us", "team": "core"}));
    assert_eq!(by_id["d"], &json!({}), "after the delete");
    assert_eq!(by_id["e"], &json!({"region": "ap", "team": "edge"}));
    assert_eq!(by_id["f"], &json!({}), "no such host");
    let status =
        server.http.get(server.url("/admin/v1/pipeline")).bearer_auth(&key).send().unwrap().json::<Value>().unwrap();
    assert_eq!(status["enrichment_missing"], 3, "{status}");

    // A replay from the start (the operator's state gone): the same enrichment, event for event.
    assert!(server.terminate().success());
    std::fs::remove_file(server.data_dir().join("stream").join("events-pipeline.operator")).unwrap();
    server.spawn();
    let all = wait_for(&server, "the replayed events", 2 * events.len());
    let mut copies_of: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for (id, d) in &all {
        copies_of.entry(id.as_str()).or_default().push(d);
    }
    for (id, copies) in copies_of {
        assert_eq!(copies.len(), 2, "{id}: the first run's and the replay's");
        assert_eq!(copies[0], copies[1], "{id}: the replay enriched it as the first run did");
    }
}
