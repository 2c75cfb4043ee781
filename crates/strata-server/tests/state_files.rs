//! Damaged state files: each kind of state file is flipped and truncated in a copy of a real data
//! directory, and the server either rebuilds it from the log (and then answers exactly as before)
//! or refuses to start with a message naming the file and the damage. It never serves state it
//! read wrong.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, Server};
use serde_json::{Value, json};

const LINES: usize = 20;
/// The lines and one more, sent with an `Idempotency-Key` from another source.
const STORED: usize = LINES + 1;

/// What the server does with a damaged file of one kind.
enum Outcome {
    Refuses,
    /// Rebuilds and logs this.
    Rebuilds(&'static str),
    /// Serves everything else while this consumer is down, and says so on /readyz; once the
    /// file is whole again the consumer recovers by itself.
    ConsumerDown(&'static str),
}

fn damage(path: &Path, how: &str) {
    let mut bytes = std::fs::read(path).unwrap();
    assert!(bytes.len() > 24, "{} is {} bytes", path.display(), bytes.len());
    match how {
        "flip" => {
            let at = bytes.len() * 2 / 3;
            bytes[at] ^= 0x20;
        }
        "truncate" => bytes.truncate(bytes.len() / 2),
        _ => unreachable!(),
    }
    std::fs::write(path, bytes).unwrap();
}

fn search_count(s: &Server, key: &str) -> usize {
    let v: Value = s
        .http
        .get(s.url("/query/v1/logs/search"))
        .bearer_auth(key)
        .query(&[("q", "source_id:web-1"), ("limit", "1000"), ("from", "0")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["hits"].as_array().map_or(0, Vec::len)
}

/// The keyed request, sent again after each restart: it must never be stored twice.
fn send_keyed(s: &Server, key: &str) -> u16 {
    let line = json!({"source_id": "web-2", "message": "keyed"});
    let r = s
        .http
        .post(s.url("/ingest/v1/logs"))
        .bearer_auth(key)
        .header("idempotency-key", "setup-1")
        .header("content-type", "application/x-ndjson")
        .body(format!("{line}\n"))
        .send()
        .unwrap();
    r.status().as_u16()
}

fn stored_logs(s: &Server) -> Option<f64> {
    s.metric(r#"strata_stored_records_total{tenant="acme",kind="logs"}"#)
}

fn eventually(what: &str, s: &Server, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "{what} did not happen:\n{}", s.server_log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn damaged_state_files_are_rebuilt_or_named_never_served() {
    let mut s = Server::start("[tsdb]\ncheckpoint_interval_ms = 200\n");
    let key = s.tenant_key("acme");
    let lines: Vec<Value> =
        (0..LINES).map(|i| json!({"source_id": "web-1", "level": "info", "message": format!("line {i}")})).collect();
    assert_eq!(s.ingest_ndjson(&key, "logs", &lines), 200);
    assert_eq!(send_keyed(&s, &key), 200);
    // A rollup rule (its operator's state file comes with the metric below) and a reference table.
    let rule = json!({"name": "up_1m", "input": {"metric": "up"}, "window": {"type": "tumbling", "size": "1m"},
        "aggregations": ["count"], "output": "up_1m"});
    let r = s.http.post(s.url("/admin/v1/rollups")).bearer_auth(&key).json(&rule).send().unwrap();
    assert_eq!(r.status(), 201);
    let r =
        s.http.put(s.url("/admin/v1/reference/hosts")).bearer_auth(&key).json(&json!({"key": "host"})).send().unwrap();
    assert_eq!(r.status(), 201);
    let point = json!({"name": "up", "labels": {"job": "a"}, "value": 1, "source_id": "web-1"});
    assert_eq!(s.ingest_ndjson(&key, "metrics", &[point]), 200);
    eventually("indexing", &s, || search_count(&s, &key) == LINES);
    eventually("counting", &s, || stored_logs(&s) == Some(STORED as f64));
    eventually("the rollup operator's commit", &s, || s.data_dir().join("stream/rollups.operator").exists());
    assert!(s.terminate().success());

    let data = s.data_dir();
    let cases: [(&str, Outcome); 11] = [
        ("meta/tenants.json", Outcome::Refuses),
        ("log/logs/topic.json", Outcome::Refuses),
        ("log/groups/search.json", Outcome::Refuses),
        ("tsdb/manifest.json", Outcome::ConsumerDown("tsdb")),
        ("meta/stats.json", Outcome::Rebuilds("stats state is damaged")),
        ("search/state.json", Outcome::Rebuilds("search state is damaged")),
        ("meta/active-series.bin", Outcome::Rebuilds("active series not loaded")),
        ("meta/idempotency.json", Outcome::Rebuilds("idempotency keys not loaded")),
        ("meta/rollups.json", Outcome::Refuses),
        ("meta/enrichment.json", Outcome::Refuses),
        ("stream/rollups.operator", Outcome::ConsumerDown("rollups")),
    ];
    for (file, outcome) in &cases {
        for how in ["flip", "truncate"] {
            let mut copy = Server::new(&s.extra_config, false);
            copy.http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
            let status = Command::new("cp").arg("-a").arg(&data).arg(copy.data_dir()).status().unwrap();
            assert!(status.success());
            damage(&copy.data_dir().join(file), how);
            if let Outcome::ConsumerDown(group) = outcome {
                consumer_down_then_recovered(&mut copy, &data, file, group, &key);
                continue;
            }
            let started = copy.try_spawn();
            let name = Path::new(file).file_name().unwrap().to_string_lossy().into_owned();
            match (outcome, started) {
                (Outcome::Refuses, Err(log)) => {
                    assert!(log.contains(&name), "{file} {how}: the error names the file:\n{log}");
                    assert!(log.contains("damaged") || log.contains("not valid"), "{file} {how}: says what:\n{log}");
                }
                (Outcome::Refuses, Ok(())) => {
                    panic!("{file} {how}: served with a damaged file:\n{}", copy.server_log())
                }
                (Outcome::ConsumerDown(_), _) => unreachable!(),
                (Outcome::Rebuilds(_), Err(log)) => panic!("{file} {how}: did not start:\n{log}"),
                (Outcome::Rebuilds(said), Ok(())) => {
                    // Consumers load their state on their own threads, after the server is ready.
                    eventually(&format!("{file} {how}: the report"), &copy, || {
                        let log = copy.server_log();
                        log.contains(said) && log.contains(&name)
                    });
                    // Rebuilt from the log: every line found once, every line counted once.
                    eventually("the rebuild", &copy, || {
                        search_count(&copy, &key) == LINES && stored_logs(&copy) == Some(STORED as f64)
                    });
                    // The keyed request is known from the log whatever was damaged: not stored again.
                    assert_eq!(send_keyed(&copy, &key), 200, "{file} {how}");
                    std::thread::sleep(Duration::from_millis(1500));
                    assert_eq!(search_count(&copy, &key), LINES, "{file} {how}: no line twice");
                    assert_eq!(stored_logs(&copy), Some(STORED as f64), "{file} {how}: no line counted twice");
                    let r = copy.http.get(copy.url("/admin/v1/tenants")).bearer_auth(ADMIN_TOKEN).send().unwrap();
                    assert_eq!(r.status(), 200);
                }
            }
        }
    }
}

/// The consumer of a damaged state file is down, loudly, and everything else is served; when the
/// file is whole again it recovers after its backoff and serves what it held.
fn consumer_down_then_recovered(s: &mut Server, pristine: &Path, file: &str, group: &str, key: &str) {
    s.launch();
    let readyz = |s: &Server| {
        let r = s.http.get(s.url("/readyz")).send().ok()?;
        Some((r.status().as_u16(), r.text().unwrap_or_default()))
    };
    let name = Path::new(file).file_name().unwrap().to_string_lossy().into_owned();
    eventually("the consumer's failure on /readyz", s, || {
        readyz(s).is_some_and(|(code, text)| {
            code == 503 && text.contains(&format!("consumer {group} is failed")) && text.contains(&name)
        })
    });
    let v = s.admin_get("/admin/v1/consumers");
    let c = v["consumers"].as_array().unwrap().iter().find(|c| c["group"] == group).unwrap().clone();
    assert_eq!(c["state"], "failed", "{v}");
    assert!(c["last_error"].as_str().unwrap().contains(&name), "{v}");
    assert_eq!(s.metric(&format!(r#"strata_consumer_up{{group="{group}"}}"#)), Some(0.0));
    // The rest is served meanwhile.
    assert_eq!(search_count(s, key), LINES);
    // Whole again: the consumer restarts after its backoff and comes up with its data.
    std::fs::copy(pristine.join(file), s.data_dir().join(file)).unwrap();
    eventually("recovery", s, || readyz(s).is_some_and(|(code, _)| code == 200));
    assert_eq!(s.metric(&format!(r#"strata_consumer_up{{group="{group}"}}"#)), Some(1.0));
    let v = s.admin_get("/admin/v1/consumers");
    let c = v["consumers"].as_array().unwrap().iter().find(|c| c["group"] == group).unwrap().clone();
    assert_eq!(c["state"], "running", "{v}");
    assert!(c["restarts"].as_u64().unwrap() >= 1, "{v}");
    let series: Value = s
        .http
        .get(s.url("/api/v1/series"))
        .bearer_auth(key)
        .query(&[("match[]", "up")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(series["data"].as_array().map(Vec::len), Some(1), "{series}");
}
