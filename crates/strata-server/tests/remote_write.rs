//! Prometheus remote write 1.0 into the `metrics` topic: good samples stored with their exact
//! values, bad requests and bad series answered as the protocol says, the server unharmed.

mod common;

use common::{Server, now_ms};
use prost::Message;
use serde_json::{Value, json};
use strata_gateway::remote_write::proto::{Label, Sample, TimeSeries, WriteRequest};

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels.iter().map(|(n, v)| Label { name: n.to_string(), value: v.to_string() }).collect(),
        samples: samples.iter().map(|&(timestamp, value)| Sample { value, timestamp }).collect(),
    }
}

fn encode(req: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap()
}

#[test]
fn samples_are_stored_exactly_and_bad_input_is_refused() {
    let s = Server::start("");
    let key = s.tenant_key("prom");
    let t = now_ms();
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let good = WriteRequest {
        timeseries: vec![
            series(
                &[("__name__", "http_requests_total"), ("job", "api"), ("instance", "h1:9090"), ("code", "200")],
                &[(t - 30_000, 10.0), (t - 15_000, 12.5), (t, stale)],
            ),
            series(&[("__name__", "up"), ("job", "api"), ("instance", "h2:9090")], &[(t, 1.0)]),
        ],
    };
    assert_eq!(s.remote_write(&key, encode(&good)), (204, String::new()));
    // One batch record per source (the `instance` label) and request.
    let records = s.all_records("metrics");
    assert_eq!(records.len(), 2);
    let h1 = records.iter().find(|r| r["source_id"] == "h1:9090").unwrap();
    assert_eq!(h1["tenant"], "prom");
    assert_eq!(h1["payload_encoding"], "metric_batch");
    let http = &h1["payload"][0];
    assert_eq!(
        http["labels"],
        json!({"__name__": "http_requests_total", "code": "200", "instance": "h1:9090", "job": "api"})
    );
    assert_eq!(http["samples"], json!([[t - 30_000, 10.0], [t - 15_000, 12.5], [t, "NaN:7ff0000000000002"]]));
    // The batches name their series by number; the two new series were defined first, once.
    let defs = s.all_records("series");
    assert_eq!(defs.len(), 1, "{defs:?}");
    assert_eq!((&defs[0]["tenant"], &defs[0]["payload_encoding"]), (&json!("prom"), &json!("series_definitions")));
    let defined: Vec<&Value> = defs[0]["payload"].as_array().unwrap().iter().map(|d| &d["labels"]).collect();
    assert_eq!(defined.len(), 2);
    assert!(defined.contains(&&http["labels"]), "{defined:?}");
    assert_eq!(s.remote_write(&key, encode(&good)).0, 204);
    assert_eq!(s.all_records("series").len(), 1, "known series are not defined again");
    // The store has the values (queries leave NaNs, staleness markers included, out).
    let stored = wait_for_samples(&s, &key, "http_requests_total", t - 60_000, t + 1000, 2);
    let values: Vec<&Value> = stored.iter().map(|p| &p[1]).collect();
    assert_eq!(values, [&json!(10.0), &json!(12.5)], "{stored:?}");

    // Bodies that are not what the protocol says.
    let (st, body) = s.remote_write(&key, b"definitely not snappy".to_vec());
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("snappy"), "{body}");
    let full = good.encode_to_vec();
    let truncated = snap::raw::Encoder::new().compress_vec(&full[..full.len() - 7]).unwrap();
    let (st, body) = s.remote_write(&key, truncated);
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("not a remote write WriteRequest"), "{body}");
    let r = s
        .http
        .post(s.url("/api/v1/write"))
        .bearer_auth(&key)
        .header("content-encoding", "gzip")
        .body("x")
        .send()
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = s.http.post(s.url("/api/v1/write")).body(encode(&good)).send().unwrap();
    assert_eq!(r.status(), 401);

    // Bad series are named; the good ones of the same request are stored.
    let many: Vec<(String, String)> = (0..31).map(|i| (format!("l{i}"), "v".to_string())).collect();
    let mut many_labels: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    many_labels.push(("__name__", "wide"));
    let cases: Vec<(TimeSeries, &str)> = vec![
        (
            series(&[("__name__", "dup"), ("a", "1"), ("a", "2")], &[(t, 1.0)]),
            r#"label name "a" appears more than once"#,
        ),
        (
            series(&[("__name__", "x"), ("__name__", "y")], &[(t, 1.0)]),
            r#"label name "__name__" appears more than once"#,
        ),
        (
            series(&[("__name__", "bad-name")], &[(t, 1.0)]),
            r#"metric name "bad-name" is not a valid Prometheus metric name"#,
        ),
        (series(&[("__name__", "m"), ("bad label", "1")], &[(t, 1.0)]), r#"label name "bad label" is not a valid"#),
        (series(&[("job", "nameless")], &[(t, 1.0)]), r#"field "__name__" is required"#),
        (series(&many_labels, &[(t, 1.0)]), "31 labels, more than the limit of 30"),
        (series(&[("__name__", "future")], &[(t + 3_600_000, 1.0)]), "in the future"),
    ];
    for (bad, want) in cases {
        let req = WriteRequest { timeseries: vec![series(&[("__name__", "kept")], &[(t, 7.0)]), bad] };
        let (st, body) = s.remote_write(&key, encode(&req));
        assert_eq!(st, 400, "{want}: {body}");
        assert!(body.contains(want), "{want}: {body}");
        assert!(body.contains("1 of 2 samples rejected"), "{body}");
    }
    let kept = stored_samples(&s.all_records("metrics"), "kept");
    assert_eq!(kept, 7, "the good series of each mixed request was stored");

    // A snappy body that declares a gigantic length is refused before anything is allocated.
    // (The snappy header is the uncompressed length as a varint: 1 GiB here.)
    let mut bomb = vec![0x80, 0x80, 0x80, 0x80, 0x04];
    bomb.extend_from_slice(&[0u8; 16]);
    let (st, body) = s.remote_write(&key, bomb);
    assert_eq!(st, 413, "{body}");
    assert!(body.contains("larger than decompressed_bytes_max"), "{body}");
    // An empty request is fine.
    assert_eq!(s.remote_write(&key, encode(&WriteRequest { timeseries: vec![] })).0, 204);
    assert!(s.is_up());
}

/// Samples of metric `name` in batch records.
fn stored_samples(records: &[Value], name: &str) -> usize {
    records
        .iter()
        .flat_map(|r| r["payload"].as_array().unwrap().iter())
        .filter(|series| series["labels"]["__name__"] == name)
        .map(|series| series["samples"].as_array().unwrap().len())
        .sum()
}

/// The points of `name` in `[from, to]` at a 1 s step, once there are `n` of them.
fn wait_for_samples(s: &Server, key: &str, name: &str, from: i64, to: i64, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r: Value = s
            .http
            .get(s.url("/query/v1/metrics"))
            .bearer_auth(key)
            .query(&[("name", name), ("step", "1s"), ("limit", "10")])
            .query(&[("from", from), ("to", to)])
            .send()
            .unwrap()
            .json()
            .unwrap();
        let points: Vec<Value> = r["series"]
            .as_array()
            .map(|a| a.iter().flat_map(|s| s["points"].as_array().unwrap().clone()).collect())
            .unwrap_or_default();
        if points.len() >= n {
            return points;
        }
        assert!(std::time::Instant::now() < deadline, "{name}: {r}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn new_series_past_the_tenant_limit_are_refused_and_known_ones_kept() {
    let s =
        Server::start("[ingest.metrics]\nactive_series_max = 3\n[ingest.metrics.tenant_active_series_max]\nbig = 5\n");
    let key = s.tenant_key("prom");
    let t = now_ms();
    let one = |name: &str| series(&[("__name__", name), ("instance", "h:1")], &[(t, 1.0)]);
    let req = WriteRequest { timeseries: vec![one("a"), one("b"), one("c")] };
    assert_eq!(s.remote_write(&key, encode(&req)).0, 204);
    let req = WriteRequest { timeseries: vec![one("a"), one("d")] };
    let (st, body) = s.remote_write(&key, encode(&req));
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("1 of 2 samples rejected"), "{body}");
    assert!(body.contains("limit of 3 active series"), "{body}");
    // The native path answers the same, per record.
    let r = s
        .http
        .post(s.url("/ingest/v1/metrics"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(
            json!([{"name": "b", "labels": {"instance": "h:1"}, "value": 2, "source_id": "h:1"},
                     {"name": "e", "value": 1, "source_id": "h:1"}])
            .to_string(),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().unwrap();
    assert_eq!(answer["accepted"], 1);
    assert!(answer["errors"][0]["error"].as_str().unwrap().contains("limit of 3 active series"), "{answer}");
    // Another tenant has its own count, and its own limit.
    let big = s.tenant_key("big");
    let req = WriteRequest { timeseries: vec![one("a"), one("b"), one("c"), one("d"), one("e")] };
    assert_eq!(s.remote_write(&big, encode(&req)).0, 204);
    let records = s.all_records("metrics");
    assert_eq!(stored_samples(&records, "d"), 1, "only the other tenant's d");
    assert_eq!(stored_samples(&records, "a"), 3);
    let refused = s
        .metric(r#"strata_ingest_records_rejected_total{tenant="prom",kind="metrics",reason="series_limit"}"#)
        .unwrap_or(0.0);
    assert_eq!(refused, 2.0);
    assert!(s.is_up());
}

fn prom_get(s: &Server, key: &str, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let r = s.http.get(s.url(path)).bearer_auth(key).query(params).send().unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

/// Waits until the metric store has consumed what was written.
fn wait_for_series(s: &Server, key: &str, selector: &str, n: usize) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (st, v) = prom_get(s, key, "/api/v1/series", &[("match[]", selector)]);
        assert_eq!(st, 200, "{v}");
        if v["data"].as_array().unwrap().len() == n {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn series_and_labels_apis_answer_in_prometheus_format_and_survive_a_kill() {
    let mut s = Server::start("");
    let key = s.tenant_key("prom");
    let other = s.tenant_key("other");
    let t = now_ms();
    let req = WriteRequest {
        timeseries: vec![
            series(&[("__name__", "http_requests_total"), ("job", "api"), ("code", "200")], &[(t, 1.0)]),
            series(&[("__name__", "http_requests_total"), ("job", "api"), ("code", "500")], &[(t, 2.0)]),
            series(&[("__name__", "up"), ("job", "web")], &[(t, 1.0)]),
        ],
    };
    assert_eq!(s.remote_write(&key, encode(&req)).0, 204);
    let v = wait_for_series(&s, &key, r#"http_requests_total{code=~"5.."}"#, 1);
    assert_eq!(
        v,
        serde_json::json!({"status": "success", "data": [{"__name__": "http_requests_total", "code": "500", "job": "api"}]})
    );
    let (_, v) = prom_get(&s, &key, "/api/v1/labels", &[]);
    assert_eq!(v["data"], serde_json::json!(["__name__", "code", "job"]));
    let (_, v) = prom_get(&s, &key, "/api/v1/label/job/values", &[]);
    assert_eq!(v["data"], serde_json::json!(["api", "web"]));
    let (_, v) = prom_get(&s, &key, "/api/v1/label/__name__/values", &[("match[]", r#"{job="web"}"#)]);
    assert_eq!(v["data"], serde_json::json!(["up"]));
    let (_, v) = prom_get(&s, &other, "/api/v1/label/__name__/values", &[]);
    assert_eq!(v["data"], serde_json::json!([]), "another tenant sees nothing");
    let (st, v) = prom_get(&s, &key, "/api/v1/series", &[]);
    assert_eq!((st, v["errorType"].as_str()), (400, Some("bad_data")));
    let (st, _) = prom_get(&s, &key, "/api/v1/series", &[("match[]", r#"{job=""}"#)]);
    assert_eq!(st, 400, "a selector matching everything is refused");
    let (st, _) = prom_get(&s, &key, "/api/v1/series", &[("match[]", "up"), ("start", "yesterday")]);
    assert_eq!(st, 400);
    let (_, v) =
        prom_get(&s, &key, "/api/v1/series", &[("match[]", "up"), ("end", &format!("{}", (t - 60_000) / 1000))]);
    assert_eq!(v["data"], serde_json::json!([]), "no sample before the range's end");
    let (st, v) = prom_get(&s, &key, "/api/v1/status/buildinfo", &[]);
    assert_eq!((st, v["status"].as_str()), (200, Some("success")));
    // POST with a form body, as Grafana sends it.
    let v: Value = s
        .http
        .post(s.url("/api/v1/series"))
        .bearer_auth(&key)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("match%5B%5D=up")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 1);

    // The store is rebuilt from the log after a SIGKILL.
    s.kill();
    s.spawn();
    wait_for_series(&s, &key, r#"{__name__=~".+"}"#, 3);
}

#[test]
fn late_samples_inside_the_window_are_merged_and_older_ones_counted() {
    let s = Server::start("");
    let key = s.tenant_key("late");
    let t = now_ms() / 1000 * 1000;
    let send = |samples: &[(i64, f64)]| {
        let req = WriteRequest { timeseries: vec![series(&[("__name__", "late"), ("instance", "h:1")], samples)] };
        assert_eq!(s.remote_write(&key, encode(&req)).0, 204);
    };
    send(&[(t, 1.0)]);
    // Behind the newest sample but inside the hour's window: merged in order.
    send(&[(t - 30_000, 2.0)]);
    // Another late one, and a second value for t - 30 s: the last written wins.
    send(&[(t - 10_000, 3.0), (t - 30_000, 2.5)]);
    // Two hours behind: the log takes it (the gateway cannot know), the store refuses and counts it.
    send(&[(t - 2 * 3_600_000, 9.0)]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let rejected = r#"strata_tsdb_samples_rejected_total{tenant="late",reason="too_old"}"#;
    while s.metric(rejected).is_none() {
        assert!(std::time::Instant::now() < deadline, "the too-old sample was not counted");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(s.metric(rejected), Some(1.0));
    let points = wait_for_samples(&s, &key, "late", t - 3 * 3_600_000, t + 1000, 3);
    assert_eq!(points, [json!([t - 30_000, 2.5]), json!([t - 10_000, 3.0]), json!([t, 1.0])]);
}

#[test]
fn native_histogram_samples_are_refused_by_name_and_floats_kept() {
    let s = Server::start("");
    let key = s.tenant_key("hist");
    let t = now_ms();
    // A series with one float sample and one native histogram sample (field 4; its contents do
    // not matter to a store that does not keep histograms).
    let mut ts = series(&[("__name__", "mixed"), ("instance", "h:1")], &[(t, 5.0)]).encode_to_vec();
    ts.extend_from_slice(&[0x22, 0x02, 0x08, 0x01]);
    let mut req = vec![0x0a];
    prost::encoding::encode_varint(ts.len() as u64, &mut req);
    req.extend_from_slice(&ts);
    let body = snap::raw::Encoder::new().compress_vec(&req).unwrap();
    let (st, msg) = s.remote_write(&key, body);
    assert_eq!(st, 400, "{msg}");
    assert!(msg.contains("1 of 2 samples rejected; first: native histogram samples are not supported"), "{msg}");
    assert_eq!(stored_samples(&s.all_records("metrics"), "mixed"), 1, "the float sample is kept");
    let counted =
        s.metric(r#"strata_ingest_records_rejected_total{tenant="hist",kind="metrics",reason="unsupported"}"#);
    assert_eq!(counted, Some(1.0));
}

/// A Prometheus HA pair: two replicas send the same series, told apart by `__replica__`. One
/// replica's samples are stored, as one sender's series (no replica label); the other's requests
/// get 202 and are dropped whole, even where its values differ. When the elected replica has been
/// silent past the failover timeout, the other is elected.
#[test]
fn an_ha_pair_is_stored_as_one_sender_and_fails_over_when_its_replica_stops() {
    let s = Server::start("[ingest.ha]\nfailover_timeout_ms = 2000\n");
    let key = s.tenant_key("prom");
    let t = now_ms() / 1000 * 1000;
    let load = |replica: &str, samples: &[(i64, f64)]| {
        let labels = [
            ("__name__", "node_load1"),
            ("job", "node"),
            ("instance", "h1:9100"),
            ("cluster", "eu"),
            ("__replica__", replica),
        ];
        encode(&WriteRequest { timeseries: vec![series(&labels, samples)] })
    };
    assert_eq!(s.remote_write(&key, load("a", &[(t - 30_000, 1.0), (t - 15_000, 2.0)])), (204, String::new()));
    let (status, body) = s.remote_write(&key, load("b", &[(t - 30_000, 100.0), (t - 15_000, 200.0)]));
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("elected"), "{body}");
    assert_eq!(s.remote_write(&key, load("a", &[(t - 10_000, 3.0)])).0, 204);
    // Another cluster elects its own replica.
    let other =
        [("__name__", "node_load1"), ("job", "node"), ("instance", "h2:9100"), ("cluster", "us"), ("__replica__", "b")];
    assert_eq!(s.remote_write(&key, encode(&WriteRequest { timeseries: vec![series(&other, &[(t, 7.0)])] })).0, 204);

    let found = wait_for_series(&s, &key, "node_load1", 2);
    let mut labels: Vec<Value> = found["data"].as_array().unwrap().clone();
    labels.sort_by_key(|l| l["instance"].as_str().unwrap().to_string());
    assert_eq!(
        labels,
        vec![
            json!({"__name__": "node_load1", "job": "node", "instance": "h1:9100", "cluster": "eu"}),
            json!({"__name__": "node_load1", "job": "node", "instance": "h2:9100", "cluster": "us"}),
        ]
    );
    // Every 5 s from t - 30 s, once the store has what was acknowledged.
    let eu_values = |until: i64, last: &str| -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let (st, v) = prom_get(
                &s,
                &key,
                "/api/v1/query_range",
                &[
                    ("query", "node_load1{cluster=\"eu\"}"),
                    ("start", &((t - 30_000) / 1000).to_string()),
                    ("end", &(until / 1000).to_string()),
                    ("step", "5"),
                ],
            );
            assert_eq!(st, 200, "{v}");
            let values: Vec<String> = v["data"]["result"][0]["values"]
                .as_array()
                .map(|a| a.iter().map(|p| p[1].as_str().unwrap().to_string()).collect())
                .unwrap_or_default();
            if values.last().map(String::as_str) == Some(last) {
                return values;
            }
            assert!(std::time::Instant::now() < deadline, "{v}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    assert_eq!(eu_values(t - 10_000, "3"), ["1", "1", "1", "2", "3"], "replica b's values are not stored");
    assert_eq!(s.metric(r#"strata_ingest_ha_dropped_samples_total{tenant="prom"}"#), Some(2.0));

    // Replica a stops; past the timeout b is elected, and a is the one dropped.
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    assert_eq!(s.remote_write(&key, load("b", &[(t - 5_000, 4.0)])).0, 204);
    assert_eq!(s.remote_write(&key, load("a", &[(t, 5.0)])).0, 202);
    assert_eq!(eu_values(t, "4"), ["1", "1", "1", "2", "3", "4", "4"], "replica a's last value is not stored");
    assert_eq!(s.metric(r#"strata_ingest_ha_dropped_samples_total{tenant="prom"}"#), Some(3.0));
    assert_eq!(s.metric(r#"strata_ingest_ha_failovers_total{tenant="prom"}"#), Some(1.0));
    assert!(s.is_up());
}

/// Two senders of the same series (not an HA pair: no replica label), 5 s apart every 15 s. A
/// tenant with a 15 s dedup interval keeps the first sample of each interval; a tenant without
/// one keeps all six.
#[test]
fn a_tenant_with_a_dedup_interval_keeps_one_sample_per_interval() {
    let s = Server::start("[tsdb.tenant_dedup_interval_ms]\nprom = 15000\n");
    let t = now_ms() / 15_000 * 15_000 - 60_000;
    let labels = [("__name__", "node_load1"), ("job", "node"), ("instance", "h1:9100")];
    let first =
        encode(&WriteRequest { timeseries: vec![series(&labels, &[(t, 1.0), (t + 15_000, 2.0), (t + 30_000, 3.0)])] });
    let second = encode(&WriteRequest {
        timeseries: vec![series(&labels, &[(t + 5_000, 100.0), (t + 20_000, 200.0), (t + 35_000, 300.0)])],
    });
    let at = ((t + 40_000) / 1000).to_string();
    let scalar = |key: &str, query: &str, want: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let (st, v) = prom_get(&s, key, "/api/v1/query", &[("query", query), ("time", &at)]);
            assert_eq!(st, 200, "{v}");
            if v["data"]["result"][0]["value"][1].as_str() == Some(want) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{query}: {v}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let (prom, other) = (s.tenant_key("prom"), s.tenant_key("other"));
    for key in [&prom, &other] {
        assert_eq!(s.remote_write(key, first.clone()).0, 204);
        assert_eq!(s.remote_write(key, second.clone()).0, 204);
    }
    scalar(&other, "count_over_time(node_load1[1m])", "6");
    scalar(&other, "sum_over_time(node_load1[1m])", "606");
    // Once the second sender's three samples are counted, the store has read both requests.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while s.metric(r#"strata_tsdb_samples_deduplicated_total{tenant="prom"}"#) != Some(3.0) {
        assert!(std::time::Instant::now() < deadline, "the second sender's samples were not deduplicated");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    scalar(&prom, "count_over_time(node_load1[1m])", "3");
    scalar(&prom, "sum_over_time(node_load1[1m])", "6");
    assert_eq!(s.metric(r#"strata_tsdb_samples_deduplicated_total{tenant="other"}"#), None);
    assert!(s.is_up());
}

/// The benchmark's own workload (`strata-bench remote-write`, 10 minutes of one node-exporter host)
/// sent by one sender, sent twice (a replay: a retry, or a WAL read again), and sent by an HA pair:
/// each tenant stores exactly the samples the fleet generated, each once, with the same values.
#[test]
fn a_replay_and_an_ha_pair_store_exactly_what_one_sender_sends() {
    use std::collections::BTreeMap;
    use strata_bench::metrics_workload::{Fleet, FleetConfig};

    type Labels = Vec<(String, String)>;
    let s = Server::start("");
    let end = now_ms() / 1000 * 1000;
    let start = end - 10 * 60_000;
    let mut fleet = Fleet::new(FleetConfig { seed: 7, hosts: 1, interval_ms: 15_000, jitter_share: 0.25 }).unwrap();
    let labels: Vec<Labels> = (0..fleet.series_per_host()).map(|i| fleet.labels(0, i)).collect();
    let mut generated: Vec<Vec<(i64, f64)>> = vec![Vec::new(); labels.len()];
    let scrapes: Vec<(u32, i64)> = fleet.scrapes(start, end).collect();
    for (host, ts) in scrapes {
        fleet.scrape(host, ts, |i, value| generated[i].push((ts, value)));
    }
    let samples: usize = generated.iter().map(Vec::len).sum();
    assert_eq!(samples, 40 * labels.len(), "10 minutes of scrapes every 15 s");

    // Requests of 100 series each, every series with all its samples; `ha` adds the pair's labels.
    let requests = |ha: Option<&str>| -> Vec<Vec<u8>> {
        let all: Vec<TimeSeries> = labels
            .iter()
            .zip(&generated)
            .map(|(series_labels, samples)| {
                let mut l: Vec<(&str, &str)> = series_labels.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                if let Some(replica) = ha {
                    l.extend([("cluster", "strata-bench"), ("__replica__", replica)]);
                    l.sort();
                }
                series(&l, samples)
            })
            .collect();
        all.chunks(100).map(|chunk| encode(&WriteRequest { timeseries: chunk.to_vec() })).collect()
    };
    let (single, replay, pair) = (s.tenant_key("single"), s.tenant_key("replay"), s.tenant_key("pair"));
    for body in requests(None) {
        assert_eq!(s.remote_write(&single, body.clone()).0, 204);
        assert_eq!(s.remote_write(&replay, body).0, 204);
    }
    for body in requests(None) {
        assert_eq!(s.remote_write(&replay, body).0, 204, "a replay is acknowledged");
    }
    // The replicas take turns, request by request; the first to send is the one stored.
    for (a, b) in requests(Some("replica-1")).into_iter().zip(requests(Some("replica-2"))) {
        assert_eq!(s.remote_write(&pair, a).0, 204);
        assert_eq!(s.remote_write(&pair, b).0, 202, "the other replica's samples are acknowledged and dropped");
    }

    // Every raw sample of every series, by a range selector at the end of the data.
    let expected: BTreeMap<Labels, Vec<(i64, u64)>> = labels
        .iter()
        .zip(&generated)
        .map(|(l, samples)| (l.clone(), samples.iter().map(|&(t, v)| (t, v.to_bits())).collect()))
        .collect();
    let stored = |key: &str| -> BTreeMap<Labels, Vec<(i64, u64)>> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let at = format!("{:.3}", end as f64 / 1000.0);
            let (st, v) = prom_get(&s, key, "/api/v1/query", &[("query", r#"{__name__=~".+"}[11m]"#), ("time", &at)]);
            assert_eq!(st, 200, "{v}");
            let mut found = BTreeMap::new();
            for series in v["data"]["result"].as_array().unwrap() {
                let mut l: Labels = series["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .filter(|(name, _)| name.as_str() != "cluster")
                    .map(|(name, value)| (name.clone(), value.as_str().unwrap().to_string()))
                    .collect();
                l.sort();
                let values: Vec<(i64, u64)> = series["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                        (t, p[1].as_str().unwrap().parse::<f64>().unwrap().to_bits())
                    })
                    .collect();
                found.insert(l, values);
            }
            let count: usize = found.values().map(Vec::len).sum();
            if count >= samples || std::time::Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    for (tenant, key) in [("single", &single), ("replay", &replay), ("pair", &pair)] {
        let found = stored(key);
        assert_eq!(found.len(), expected.len(), "{tenant}: series");
        for (l, want) in &expected {
            assert_eq!(found.get(l), Some(want), "{tenant}: samples of {l:?}");
        }
    }
    let counter = |name: &str, tenant: &str| s.metric(&format!("{name}{{tenant=\"{tenant}\"}}")).unwrap_or(0.0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while counter("strata_tsdb_samples_unchanged_total", "replay") < samples as f64 {
        assert!(std::time::Instant::now() < deadline, "the replay was not counted as unchanged samples");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(counter("strata_tsdb_samples_unchanged_total", "replay"), samples as f64);
    assert_eq!(counter("strata_tsdb_samples_appended_total", "replay"), samples as f64);
    let metrics = s.http.get(s.url("/metrics")).send().unwrap().text().unwrap();
    let rejected: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("strata_tsdb_samples_rejected_total{") && l.contains(r#"tenant="replay""#))
        .collect();
    assert!(rejected.is_empty(), "nothing of the replay is refused: {rejected:?}");
    assert_eq!(counter("strata_ingest_ha_dropped_samples_total", "pair"), samples as f64);
    assert_eq!(counter("strata_tsdb_samples_appended_total", "pair"), samples as f64);
    assert!(s.is_up());
}
