//! Rollups end to end: rules made through the admin API aggregate metric samples in tumbling,
//! hopping and sliding windows while the server is SIGKILLed again and again. The sender retries
//! every request it got no answer to, with the same `Idempotency-Key`, so the log holds each
//! sample once; some samples come out of order, some after their windows (within the lateness)
//! and some far too late. At the end every window of every rule, every aggregation, equals what
//! is computed here from the same samples (quantiles within the sketch's 1%), the too-late samples
//! are all in the late output, and the rollups read through PromQL are those values.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Server, now_ms};
use rand::Rng;
use serde_json::{Value, json};

const SERVICES: usize = 6;
const INSTANCES: usize = 4;
/// Seconds of event time sent, one tick a second.
const TICKS: i64 = 600;
/// Too late for any window: five minutes behind.
const TOO_LATE_MS: i64 = 300_000;
const KILLS: usize = 20;

/// One sample: service, instance, timestamp, value.
type Point = (usize, usize, i64, f64);

fn value(service: usize, instance: usize, tick: i64) -> f64 {
    ((service * 7919 + instance * 104_729 + tick as usize * 31) % 997) as f64 / 10.0 + 0.5
}

/// Each request's samples: every series at the tick, one of them a second out of order, every
/// 7th tick one sample 5 s behind (after its windows were emitted, within the lateness), every
/// 11th one far too late.
fn requests(t0: i64) -> Vec<Vec<Point>> {
    (0..TICKS)
        .map(|tick| {
            let t = t0 + tick * 1000;
            let mut points: Vec<Point> = Vec::new();
            for s in 0..SERVICES {
                for i in 0..INSTANCES {
                    // Each series a few ms apart, so that no two samples of a group share a time.
                    points.push((s, i, t + (s * INSTANCES + i) as i64, value(s, i, tick)));
                }
            }
            // The last series' sample of this tick sent before the others: out of order within 2 s.
            points.rotate_right(1);
            if tick % 7 == 6 {
                points.push((tick as usize % SERVICES, 0, t - 5000 + 500, value(0, 3, tick) + 1000.0));
            }
            if tick % 11 == 10 && tick * 1000 > TOO_LATE_MS {
                points.push((tick as usize % SERVICES, 1, t - TOO_LATE_MS + 700, -1.0));
            }
            points
        })
        .collect()
}

fn body(points: &[Point]) -> String {
    points
        .iter()
        .map(|&(s, i, ts, v)| {
            let p = json!({"name": "req_seconds", "labels": {"service": format!("s{s}"), "instance": format!("h{i}")},
                "value": v, "timestamp": ts, "source_id": format!("h{i}")});
            format!("{p}\n")
        })
        .collect()
}

/// A window's aggregations, computed here.
#[derive(Debug, Default, Clone)]
struct Agg {
    values: Vec<(i64, f64)>,
}

impl Agg {
    fn get(&self, a: &str) -> f64 {
        let vs: Vec<f64> = self.values.iter().map(|p| p.1).collect();
        let mut sorted = vs.clone();
        sorted.sort_by(f64::total_cmp);
        let q = |q: f64| sorted[(q * (sorted.len() - 1) as f64).floor() as usize];
        match a {
            "count" => vs.len() as f64,
            "sum" => vs.iter().sum(),
            "min" => sorted[0],
            "max" => sorted[sorted.len() - 1],
            "avg" => vs.iter().sum::<f64>() / vs.len() as f64,
            "last" => self.values.iter().max_by(|x, y| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1))).unwrap().1,
            "p50" => q(0.5),
            "p99" => q(0.99),
            _ => unreachable!(),
        }
    }
}

const AGGS: [&str; 8] = ["count", "sum", "min", "max", "avg", "last", "p50", "p99"];

/// (rule output, service, window end) to the window's values, for the on-time samples.
fn model(points: &[Point]) -> BTreeMap<(&'static str, String, i64), Agg> {
    let mut m: BTreeMap<(&'static str, String, i64), Agg> = BTreeMap::new();
    for &(s, _, ts, v) in points {
        let g = format!("s{s}");
        let end10 = (ts.div_euclid(10_000) + 1) * 10_000;
        m.entry(("tumbling_10s", g.clone(), end10)).or_default().values.push((ts, v));
        for k in 0..3 {
            m.entry(("hopping_30s", g.clone(), end10 + k * 10_000)).or_default().values.push((ts, v));
        }
    }
    // Sliding: a window of 10 s ending at each sample of the group.
    let mut by_group: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for &(s, _, ts, v) in points {
        by_group.entry(format!("s{s}")).or_default().push((ts, v));
    }
    for (g, pts) in by_group {
        for &(t, _) in &pts {
            let values = pts.iter().copied().filter(|&(ts, _)| ts > t - 10_000 && ts <= t).collect();
            m.insert(("sliding_10s", g.clone(), t), Agg { values });
        }
    }
    m
}

fn put_rule(s: &Server, key: &str, rule: Value) {
    let r = s.http.post(s.url("/admin/v1/rollups")).bearer_auth(key).json(&rule).send().unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
}

fn rule(name: &str, window: Value) -> Value {
    json!({"name": name, "input": {"metric": "req_seconds"}, "group_by": ["service"], "window": window,
        "aggregations": AGGS, "output": name, "out_of_orderness": "2s", "allowed_lateness": "10s"})
}

/// Every sample of `name` per service, read through PromQL as a range vector.
fn stored(s: &Server, key: &str, name: &str, at_ms: i64) -> BTreeMap<(String, i64), f64> {
    let r: Value = s
        .http
        .get(s.url("/api/v1/query"))
        .bearer_auth(key)
        .query(&[("query", format!("{name}[1h]")), ("time", format!("{}", at_ms as f64 / 1000.0))])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["status"], "success", "{r}");
    let mut out = BTreeMap::new();
    for series in r["data"]["result"].as_array().unwrap() {
        let g = series["metric"]["service"].as_str().unwrap().to_string();
        for p in series["values"].as_array().unwrap() {
            let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
            out.insert((g.clone(), t), p[1].as_str().unwrap().parse::<f64>().unwrap());
        }
    }
    out
}

/// The records of `rule` in the late output.
fn late_records(s: &Server, key: &str, rule: &str) -> Vec<Value> {
    let r: Value = s
        .http
        .get(s.url("/query/v1/late"))
        .bearer_auth(key)
        .query(&[("rule", rule), ("limit", "1000")])
        .send()
        .unwrap()
        .json()
        .unwrap();
    r["records"].as_array().unwrap_or_else(|| panic!("{r}")).clone()
}

fn close(got: f64, want: f64, agg: &str) -> bool {
    let tolerance = if agg.starts_with('p') { 0.01 * want.abs() * 1.000_001 } else { 1e-9 * want.abs().max(1.0) };
    (got - want).abs() <= tolerance
}

#[test]
fn rollups_are_exact_across_sigkills() {
    let mut server = Server::start("[rollups]\ncommit_interval_ms = 200\n[pipeline]\ncommit_interval_ms = 200\n");
    let key = server.tenant_key("roll");
    put_rule(&server, &key, rule("tumbling_10s", json!({"type": "tumbling", "size": "10s"})));
    put_rule(&server, &key, rule("hopping_30s", json!({"type": "hopping", "size": "30s", "slide": "10s"})));
    put_rule(&server, &key, rule("sliding_10s", json!({"type": "sliding", "size": "10s"})));

    let t0 = (now_ms() - 40 * 60_000) / 60_000 * 60_000;
    let reqs = requests(t0);
    let done = Arc::new(AtomicBool::new(false));
    let sender = {
        let (reqs, done, url, key) = (reqs.clone(), done.clone(), server.url("/ingest/v1/metrics"), key.clone());
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
            for (n, points) in reqs.iter().enumerate() {
                let body = body(points);
                loop {
                    let r = http
                        .post(&url)
                        .bearer_auth(&key)
                        .header("idempotency-key", format!("tick-{n}"))
                        .header("content-type", "application/x-ndjson")
                        .body(body.clone())
                        .send();
                    match r {
                        Ok(r) if r.status() == 200 => break,
                        Ok(r) if r.status() == 400 => panic!("tick {n}: {}", r.text().unwrap()),
                        _ => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
                std::thread::sleep(Duration::from_millis(12));
            }
            done.store(true, Ordering::Relaxed);
        })
    };
    let mut rng = rand::rng();
    let mut kills = 0;
    while kills < KILLS || !done.load(Ordering::Relaxed) {
        if done.load(Ordering::Relaxed) && kills >= KILLS {
            break;
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(150..450)));
        if kills < KILLS {
            server.kill();
            server.spawn();
            kills += 1;
        }
    }
    sender.join().unwrap();
    // Moves every partition's clock past the last windows, their lateness and the sliding ones.
    let end = t0 + TICKS * 1000;
    let flush: String = (0..INSTANCES)
        .map(|i| {
            let p = json!({"name": "heartbeat", "value": 1, "timestamp": end + 60_000, "source_id": format!("h{i}"),
                "labels": {"instance": format!("h{i}")}});
            format!("{p}\n")
        })
        .collect();
    let r = server
        .http
        .post(server.url("/ingest/v1/metrics"))
        .bearer_auth(&key)
        .header("content-type", "application/x-ndjson")
        .body(flush)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);

    // What should come out.
    let all: Vec<Point> = reqs.iter().flatten().copied().collect();
    let (on_time, too_late): (Vec<Point>, Vec<Point>) = all.iter().partition(|p| p.3 >= 0.0);
    let want = model(&on_time);
    let at = end + 120_000;

    // Wait until the rollup store has every window of the last rule's output.
    let deadline = Instant::now() + Duration::from_secs(120);
    let expected_windows = |name: &str| want.keys().filter(|k| k.0 == name).count();
    loop {
        let got = stored(&server, &key, "sliding_10s_count", at);
        if got.len() >= expected_windows("sliding_10s")
            && stored(&server, &key, "hopping_30s_count", at).len() >= expected_windows("hopping_30s")
        {
            break;
        }
        if Instant::now() >= deadline {
            for rule in ["tumbling_10s", "hopping_30s", "sliding_10s"] {
                let unexpected: Vec<String> = late_records(&server, &key, rule)
                    .iter()
                    .filter(|l| l["value"].as_f64() != Some(-1.0))
                    .take(10)
                    .map(|l| {
                        format!(
                            "{} at t0+{} ms (watermark t0+{} ms)",
                            l["group"],
                            l["timestamp_ms"].as_i64().unwrap() - t0,
                            l["watermark_ms"].as_i64().unwrap_or(0) - t0
                        )
                    })
                    .collect();
                eprintln!("{rule}: samples late that should not be: {unexpected:#?}");
            }
        }
        assert!(
            Instant::now() < deadline,
            "the rollup store has {} of {} sliding windows\n{}\n{}\n{}",
            got.len(),
            expected_windows("sliding_10s"),
            server.admin_get("/admin/v1/consumers"),
            server.http.get(server.url("/admin/v1/rollups")).bearer_auth(&key).send().unwrap().text().unwrap(),
            server
                .server_log()
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(1000));

    let mut checked = 0;
    for rule in ["tumbling_10s", "hopping_30s", "sliding_10s"] {
        for agg in AGGS {
            let got = stored(&server, &key, &format!("{rule}_{agg}"), at);
            let expect: BTreeMap<(String, i64), f64> =
                want.iter().filter(|(k, _)| k.0 == rule).map(|(k, a)| ((k.1.clone(), k.2), a.get(agg))).collect();
            let keys: BTreeSet<&(String, i64)> = got.keys().collect();
            let want_keys: BTreeSet<&(String, i64)> = expect.keys().collect();
            assert_eq!(keys, want_keys, "{rule}_{agg}: the windows emitted");
            for (k, &w) in &expect {
                let g = got[k];
                assert!(close(g, w, agg), "{rule}_{agg} {k:?}: {g} against {w}");
                checked += 1;
            }
        }
    }

    // Every too-late sample is in the late output, once per rule.
    for rule in ["tumbling_10s", "hopping_30s", "sliding_10s"] {
        let records = late_records(&server, &key, rule);
        let got: BTreeSet<(String, i64)> = records
            .iter()
            .map(|l| (l["group"]["service"].as_str().unwrap().to_string(), l["timestamp_ms"].as_i64().unwrap()))
            .collect();
        let want: BTreeSet<(String, i64)> = too_late.iter().map(|p| (format!("s{}", p.0), p.2)).collect();
        let extra: Vec<_> = got.difference(&want).take(10).collect();
        assert_eq!(got, want, "{rule}: the late output; late but not meant to be: {extra:?} (t0 {t0})");
        assert_eq!(records.len(), want.len(), "{rule}: each late sample once");
    }

    // Through query_range, stepping on the tumbling windows' ends, the counts are the windows'.
    let r: Value = server
        .http
        .get(server.url("/api/v1/query_range"))
        .bearer_auth(&key)
        .query(&[("query", "sum(tumbling_10s_count)".to_string())])
        .query(&[("start", (t0 + 10_000) / 1000), ("end", end / 1000), ("step", 10)])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let values = r["data"]["result"][0]["values"].as_array().unwrap_or_else(|| panic!("{r}"));
    for p in values {
        let t = (p[0].as_f64().unwrap() * 1000.0) as i64;
        let total: f64 =
            want.iter().filter(|(k, _)| k.0 == "tumbling_10s" && k.2 == t).map(|(_, a)| a.get("count")).sum();
        assert_eq!(p[1].as_str().unwrap().parse::<f64>().unwrap(), total, "sum of counts at {t}");
    }

    // The rules show their state.
    let rules: Value =
        server.http.get(server.url("/admin/v1/rollups")).bearer_auth(&key).send().unwrap().json().unwrap();
    let tumbling = rules["rules"].as_array().unwrap().iter().find(|r| r["name"] == "tumbling_10s").unwrap().clone();
    let watermark = tumbling["status"]["watermark_ms"].as_i64().unwrap();
    assert!(watermark > end, "{tumbling}");
    // Partition by partition: the rule's watermark is one of its partitions' (the oldest active).
    let parts: Vec<i64> = tumbling["status"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["watermark_ms"].as_i64())
        .collect();
    assert!(!parts.is_empty(), "{tumbling}");
    assert!(parts.iter().min() <= Some(&watermark) && Some(&watermark) <= parts.iter().max(), "{tumbling}");
    // And to an operator, for every tenant, through the CLI.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["stream", "--server", &server.url(""), "--token", common::ADMIN_TOKEN])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let line = text.lines().find(|l| l.contains("sliding_10s")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.starts_with("roll ") && line.contains(&too_late.len().to_string()), "{line}");
    let partition_lines = text.lines().skip_while(|l| !l.contains("PARTITION")).filter(|l| l.contains("tumbling_10s"));
    assert!(partition_lines.count() >= parts.len(), "one line per partition: {text}");
    eprintln!("{kills} kills; {checked} window values checked; {} samples too late", too_late.len());
}

#[test]
fn bad_rules_get_errors_that_say_what_to_change() {
    let server = Server::start("");
    let key = server.tenant_key("roll");
    let post = |rule: Value| {
        let r = server.http.post(server.url("/admin/v1/rollups")).bearer_auth(&key).json(&rule).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let (status, text) = post(rule("x", json!({"type": "hopping", "size": "30s", "slide": "7s"})));
    assert_eq!(status, 400);
    assert!(text.contains("multiple of its slide"), "{text}");
    let (status, text) = post(json!({"name": "x"}));
    assert_eq!(status, 400);
    assert!(text.contains("missing field"), "{text}");
    assert_eq!(post(rule("ok", json!({"type": "tumbling", "size": "1m"}))).0, 201);
    assert_eq!(post(rule("ok", json!({"type": "tumbling", "size": "2m"}))).0, 200, "replaced");
    let other = server.tenant_key("other");
    let r: Value = server.http.get(server.url("/admin/v1/rollups")).bearer_auth(&other).send().unwrap().json().unwrap();
    assert_eq!(r["rules"], json!([]), "a tenant sees only its own rules");
    let r = server.http.delete(server.url("/admin/v1/rollups/ok")).bearer_auth(&key).send().unwrap();
    assert_eq!(r.status(), 204);
    let r = server.http.delete(server.url("/admin/v1/rollups/ok")).bearer_auth(&key).send().unwrap();
    assert_eq!(r.status(), 404);
}

/// Enrichment of metrics: a rule groups by `region`, a label no sample has, looked up per
/// sample in the reference row of its `instance` valid at the sample's time; the same after a
/// replay of the rollups from the start.
#[test]
fn metric_samples_are_grouped_by_labels_of_the_row_valid_at_their_time() {
    let mut server = Server::start("[rollups]\ncommit_interval_ms = 200\n");
    let key = server.tenant_key("menrich");
    let send = |path: &str, body: String| {
        let r = server
            .http
            .post(server.url(path))
            .bearer_auth(&key)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let r = server.http.put(server.url("/admin/v1/reference/hosts")).bearer_auth(&key).json(&json!({"key": "host"}));
    assert_eq!(r.send().unwrap().status(), 201);
    let t0 = (now_ms() - 30 * 60_000) / 60_000 * 60_000;
    // web-1 is in eu, then in us from t0 + 30 s; web-2 is in ap; web-3 has no row.
    let changes = [
        json!({"before": null, "after": {"host": "web-1", "region": "eu"}, "op": "c", "ts_ms": t0 - 60_000}),
        json!({"before": {"host": "web-1", "region": "eu"}, "after": {"host": "web-1", "region": "us"}, "op": "u", "ts_ms": t0 + 30_000}),
        json!({"before": null, "after": {"host": "web-2", "region": "ap"}, "op": "r", "ts_ms": t0 - 60_000}),
    ];
    let (status, text) =
        send("/admin/v1/reference/hosts/rows", changes.iter().map(|c| format!("{c}\n")).collect::<String>());
    assert_eq!(status, 200, "{text}");
    let enrichment = |e: Value| {
        let r = server.http.post(server.url("/admin/v1/enrichments")).bearer_auth(&key).json(&e).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let (status, text) = enrichment(
        json!({"name": "x", "kind": "metrics", "event_type": "req", "table": "hosts", "on": "instance", "fields": ["region"]}),
    );
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("event_type is for kind"), "{text}");
    let (status, text) =
        enrichment(json!({"name": "x", "kind": "metrics", "table": "hosts", "on": "instance", "fields": ["__region"]}));
    assert_eq!(status, 400, "{text}");
    let (status, text) = enrichment(json!({"name": "host-region", "kind": "metrics", "metric": "req_total",
        "table": "hosts", "on": "instance", "fields": ["region"]}));
    assert_eq!(status, 200, "{text}");
    put_rule(
        &server,
        &key,
        json!({"name": "by_region", "input": {"metric": "req_total"}, "group_by": ["region"],
            "window": {"type": "tumbling", "size": "10s"}, "aggregations": ["count", "sum"], "output": "by_region",
            "out_of_orderness": "1s", "allowed_lateness": "0s"}),
    );

    // Samples at 5, 15, 35 and 45 s of each host, and one two minutes on that moves the
    // watermark of each host's partition past the windows.
    let mut lines = String::new();
    for (host, v) in [("web-1", 1.0), ("web-2", 10.0), ("web-3", 100.0)] {
        for s in [5, 15, 35, 45, 120] {
            let p = json!({"name": "req_total", "labels": {"instance": host}, "value": v, "timestamp": t0 + s * 1000, "source_id": host});
            lines.push_str(&format!("{p}\n"));
        }
    }
    let (status, text) = send("/ingest/v1/metrics", lines);
    assert_eq!(status, 200, "{text}");

    let want: BTreeMap<(String, i64), f64> = [
        ("eu", 10, 1.0),
        ("eu", 20, 1.0),
        ("us", 40, 1.0),
        ("us", 50, 1.0),
        ("ap", 10, 10.0),
        ("ap", 20, 10.0),
        ("ap", 40, 10.0),
        ("ap", 50, 10.0),
        ("", 10, 100.0),
        ("", 20, 100.0),
        ("", 40, 100.0),
        ("", 50, 100.0),
    ]
    .into_iter()
    .map(|(region, end_s, sum)| ((region.to_string(), t0 + end_s * 1000), sum))
    .collect();
    let sums = |server: &Server| -> BTreeMap<(String, i64), f64> {
        let r: Value = server
            .http
            .get(server.url("/api/v1/query"))
            .bearer_auth(&key)
            .query(&[
                ("query", "by_region_sum[1h]".to_string()),
                ("time", format!("{}", (t0 + 60_000) as f64 / 1000.0)),
            ])
            .send()
            .unwrap()
            .json()
            .unwrap();
        let mut out = BTreeMap::new();
        for series in r["data"]["result"].as_array().unwrap() {
            let region = series["metric"]["region"].as_str().unwrap_or("").to_string();
            for p in series["values"].as_array().unwrap() {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                out.insert((region.clone(), t), p[1].as_str().unwrap().parse::<f64>().unwrap());
            }
        }
        out
    };
    let wait = |server: &Server, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = sums(server);
            if got == want {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: {got:?} against {want:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait(&server, "the rollups by region");

    // A replay from the start (the rollups' state gone): every window emitted again, and the
    // store, which keeps the last value of each window, still shows the same ones.
    let emitted = server.all_records("rollups").len();
    assert!(server.terminate().success());
    std::fs::remove_file(server.data_dir().join("stream").join("rollups.operator")).unwrap();
    server.spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.all_records("rollups").len() < 2 * emitted {
        assert!(
            Instant::now() < deadline,
            "the replay emitted {} records",
            server.all_records("rollups").len() - emitted
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait(&server, "the replayed rollups by region");
}
