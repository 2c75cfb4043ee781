//! The spine in the real server, with consumers that fail on purpose (`STRATA_FAULTS`, compiled
//! in by the `fault-injection` feature, which `scripts/test.sh` turns on):
//!
//! - supervision: a sink that panics on one event, one that fails at start three times, one
//!   whose writes are refused as retryable five times. Each shows as down on `/readyz`,
//!   `/admin/v1/consumers` and `/metrics` with its error while it is, recovers, and has applied
//!   every event exactly once;
//! - exactly once between topics: a processor turns events into log lines while the server is
//!   SIGKILLed at random at least twenty times; each event's line is in `logs` once, in the
//!   order of its partition.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{NumberedClients, Server};
use rand::Rng;
use serde_json::{Value, json};

/// Without the feature the server ignores `STRATA_FAULTS`: say so rather than fail obscurely.
#[test]
#[allow(clippy::assertions_on_constants)]
fn the_suite_builds_the_server_with_fault_injection() {
    assert!(
        cfg!(feature = "fault-injection"),
        "these tests need `--features strata-server/fault-injection`, as scripts/test.sh passes"
    );
}

fn eventually(what: &str, s: &Server, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not seen in time\n{}", s.server_log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A consumer's status; `Null` while the server is still starting (the admin API answers 503).
fn consumer(s: &Server, group: &str) -> Value {
    let r = s.http.get(s.url("/admin/v1/consumers")).bearer_auth(common::ADMIN_TOKEN).send().unwrap();
    if r.status() != 200 {
        return Value::Null;
    }
    let v: Value = r.json().unwrap();
    v["consumers"].as_array().unwrap().iter().find(|c| c["group"] == group).cloned().unwrap_or(Value::Null)
}

fn readyz(s: &Server) -> (u16, String) {
    let r = s.http.get(s.url("/readyz")).send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// The event numbers a fault sink made durable, in the order it applied them.
fn applied(s: &Server, group: &str) -> Vec<u64> {
    let path = s.data_dir().join("faults").join(format!("{group}.state"));
    match strata_durable::read(&path).unwrap() {
        None => Vec::new(),
        Some(c) => {
            let v: Value = serde_json::from_slice(&c.checked(&path).unwrap()).unwrap();
            v["applied"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).collect()
        }
    }
}

/// Waits until `group` is down with an error containing `error`, and checks that each of
/// `/readyz`, the admin API and `/metrics` says so.
fn seen_down(s: &Server, group: &str, state: &str, error: &str) {
    eventually(&format!("{group} {state}"), s, || {
        let c = consumer(s, group);
        c["state"] == state && c["last_error"].as_str().is_some_and(|e| e.contains(error))
    });
    // Each view is read while the consumer is still in its backoff (a second at least).
    let (code, text) = readyz(s);
    assert_eq!(code, 503, "{text}");
    assert!(text.contains(&format!("consumer {group} is {state}")) && text.contains(error), "{text}");
    assert_eq!(s.metric(&format!(r#"strata_consumer_up{{group="{group}"}}"#)), Some(0.0));
}

#[test]
fn supervised_sinks_apply_every_event_once_through_panics_start_failures_and_retries() {
    const EVENTS: u64 = 300;
    let mut s = Server::new("[pipeline]\ncommit_interval_ms = 100\n", false);
    s.envs.push(("STRATA_FAULTS".into(), "panic-on=150,fail-starts=3,retry-writes=5".into()));
    s.launch();
    // Up, but not ready while a consumer fails at start.
    eventually("the listener", &s, || s.http.get(s.url("/healthz")).send().is_ok_and(|r| r.status() == 200));
    seen_down(&s, "fault-start", "failed", "injected start failure");

    let key = s.tenant_key("faults");
    for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(100) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|n| json!({"type": "numbered", "source_id": format!("s{}", n % 5), "data": {"n": n}}))
            .collect();
        assert_eq!(s.ingest_ndjson(&key, "events", &events), 200);
    }
    seen_down(&s, "fault-retry", "retrying", "injected busy dependency");
    seen_down(&s, "fault-panic", "failed", "injected panic on event 150");

    eventually("every fault sink applied every event", &s, || {
        ["fault-panic", "fault-start", "fault-retry"].iter().all(|g| applied(&s, g).len() as u64 >= EVENTS)
    });
    eventually("ready again", &s, || readyz(&s).0 == 200);
    for group in ["fault-panic", "fault-start", "fault-retry"] {
        let mut got = applied(&s, group);
        got.sort_unstable();
        assert_eq!(got, (0..EVENTS).collect::<Vec<_>>(), "{group}: each event applied once, none skipped");
        let c = consumer(&s, group);
        assert_eq!(c["state"], "running", "{c}");
        assert_eq!(s.metric(&format!(r#"strata_consumer_up{{group="{group}"}}"#)), Some(1.0));
    }
    assert!(consumer(&s, "fault-start")["restarts"].as_u64().unwrap() >= 3);
    assert!(consumer(&s, "fault-panic")["restarts"].as_u64().unwrap() >= 1);
    assert!(consumer(&s, "fault-retry")["errors"].as_u64().unwrap() >= 5);
    assert!(s.metric(r#"strata_consumer_errors_total{group="fault-retry"}"#).unwrap() >= 5.0);
    assert!(s.metric(r#"strata_consumer_restarts_total{group="fault-start"}"#).unwrap() >= 3.0);
    assert!(s.terminate().success());
}

const CLIENTS: usize = 3;
const KILLS: usize = 22;
const BATCH: u64 = 20;

/// (client, number) of a record: `source_id` is `client-<c>`, and `n` is in the event's data or
/// the line's attributes.
fn numbered(r: &Value, field: &str) -> (usize, u64) {
    let c = r["source_id"].as_str().unwrap().strip_prefix("client-").unwrap().parse().unwrap();
    (c, r["payload"][field]["n"].as_u64().unwrap())
}

/// Records by partition, in offset order, as (client, number).
fn by_partition(s: &Server, topic: &str, field: &str) -> BTreeMap<u64, Vec<(usize, u64)>> {
    let records = s.records_by_partition(topic);
    records.into_iter().map(|(p, rs)| (p, rs.iter().map(|r| numbered(r, field)).collect())).collect()
}

#[test]
fn a_processor_writes_each_output_once_while_the_server_is_killed_at_random() {
    let mut server = Server::new("[pipeline]\ncommit_interval_ms = 100\n", false);
    server.envs.push(("STRATA_FAULTS".into(), "copy-events".into()));
    server.spawn();
    let key = server.tenant_key("copy");
    let clients = NumberedClients::start(
        &server,
        &key,
        "events",
        CLIENTS,
        BATCH,
        0,
        |c, n| json!({"type": "numbered", "source_id": format!("client-{c}"), "data": {"n": n}}),
    );
    let mut rng = rand::rng();
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(rng.random_range(50..500)));
        server.kill();
        server.spawn();
    }
    std::thread::sleep(Duration::from_millis(300));
    let acked = clients.stop();

    // The processor catches up: as many lines as events, never more.
    let count = |m: &BTreeMap<u64, Vec<(usize, u64)>>| m.values().map(Vec::len).sum::<usize>();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (events, lines) = loop {
        let events = by_partition(&server, "events", "data");
        let lines = by_partition(&server, "logs", "attributes");
        assert!(count(&lines) <= count(&events), "{} lines for {} events", count(&lines), count(&events));
        if count(&lines) == count(&events) {
            break (events, lines);
        }
        assert!(
            Instant::now() < deadline,
            "{} lines for {} events\n{}",
            count(&lines),
            count(&events),
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(acked.len() >= 1000, "too few acknowledged events to mean anything: {}", acked.len());
    let in_log: BTreeSet<(usize, u64)> = events.values().flatten().copied().collect();
    assert_eq!(in_log.len(), count(&events), "no event twice in the log");
    assert!(acked.is_subset(&in_log), "every acknowledged event is in the log");
    // Partition p of the input feeds partition p of the output (both have four): the lines of
    // each partition are its events, once each, in the same order.
    assert_eq!(lines, events, "each event's line once, in its partition's order");
    assert!(server.terminate().success());
    eprintln!("{KILLS} kills, {} events acknowledged, {} in the log, as many lines", acked.len(), in_log.len());
}
