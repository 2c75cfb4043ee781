//! Prometheus remote write 1.0 into the `metrics` topic: good samples stored with their exact
//! values, bad requests and bad series answered as the protocol says, the server unharmed.

mod common;

use common::Server;
use prost::Message;
use serde_json::Value;
use strata_gateway::remote_write::proto::{Label, Sample, TimeSeries, WriteRequest};

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels.iter().map(|(n, v)| Label { name: n.to_string(), value: v.to_string() }).collect(),
        samples: samples.iter().map(|&(timestamp, value)| Sample { value, timestamp }).collect(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn write(s: &Server, key: &str, body: Vec<u8>) -> (u16, String) {
    let r = s
        .http
        .post(s.url("/api/v1/write"))
        .bearer_auth(key)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-write-version", "0.1.0")
        .body(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    // Errors are JSON `{"error": ...}`; compare their message.
    let msg = serde_json::from_str::<Value>(&text).ok().and_then(|v| v["error"].as_str().map(str::to_string));
    (status, msg.unwrap_or(text))
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
    assert_eq!(write(&s, &key, encode(&good)), (204, String::new()));
    let records = s.all_records("metrics");
    assert_eq!(records.len(), 4);
    let mut http: Vec<&Value> = records.iter().filter(|r| r["payload"]["name"] == "http_requests_total").collect();
    http.sort_by_key(|r| r["payload"]["timestamp_ns"].as_i64().unwrap());
    assert_eq!(http[0]["payload"]["value"], 10.0);
    assert_eq!(http[1]["payload"]["value"], 12.5);
    assert_eq!(http[2]["payload"]["value"], "NaN:7ff0000000000002", "the staleness marker keeps its bits");
    assert_eq!(http[0]["payload"]["timestamp_ns"], (t - 30_000) * 1_000_000);
    assert_eq!(http[0]["payload"]["labels"]["code"], "200");
    assert_eq!(http[0]["source_id"], "h1:9090");
    assert_eq!(http[0]["tenant"], "prom");

    // Bodies that are not what the protocol says.
    let (st, body) = write(&s, &key, b"definitely not snappy".to_vec());
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("snappy"), "{body}");
    let full = good.encode_to_vec();
    let truncated = snap::raw::Encoder::new().compress_vec(&full[..full.len() - 7]).unwrap();
    let (st, body) = write(&s, &key, truncated);
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
        let (st, body) = write(&s, &key, encode(&req));
        assert_eq!(st, 400, "{want}: {body}");
        assert!(body.contains(want), "{want}: {body}");
        assert!(body.contains("1 of 2 samples rejected"), "{body}");
    }
    let kept = s.all_records("metrics").iter().filter(|r| r["payload"]["name"] == "kept").count();
    assert_eq!(kept, 7, "the good series of each mixed request was stored");

    // A snappy body that declares a gigantic length is refused before anything is allocated.
    // (The snappy header is the uncompressed length as a varint: 1 GiB here.)
    let mut bomb = vec![0x80, 0x80, 0x80, 0x80, 0x04];
    bomb.extend_from_slice(&[0u8; 16]);
    let (st, body) = write(&s, &key, bomb);
    assert_eq!(st, 413, "{body}");
    assert!(body.contains("larger than decompressed_bytes_max"), "{body}");
    // An empty request is fine.
    assert_eq!(write(&s, &key, encode(&WriteRequest { timeseries: vec![] })).0, 204);
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
    assert_eq!(write(&s, &key, encode(&req)).0, 204);
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
