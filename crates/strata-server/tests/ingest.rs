//! The ingest API end to end against the real binary: good records land in the log, bad input
//! gets the documented status and message, and the server stays up.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{ADMIN_TOKEN, Server};
use serde_json::{Value, json};

fn post(s: &Server, path: &str, key: Option<&str>, ct: &str, body: Vec<u8>) -> (u16, Option<String>, Value) {
    let mut req = s.http.post(s.url(path)).header("content-type", ct).body(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let text = r.text().unwrap();
    (status, retry, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn ndjson(values: &[Value]) -> Vec<u8> {
    values.iter().map(|v| format!("{v}\n")).collect::<String>().into_bytes()
}

#[test]
fn logs_events_metrics_and_raw_payloads_land_in_the_log() {
    let s = Server::start("");
    let key = s.tenant_key("acme");
    let logs = json!([
        {"timestamp": "2026-01-02T03:04:05.123456789Z", "source_id": "web-1", "level": "ERROR", "message": "disk full",
         "run_id": "r7", "trace_id": "t1", "attributes": {"user_id": 42}},
        {"timestamp": 1767323045000i64, "source_id": "web-2", "level": "info", "message": "ok"}
    ]);
    let (st, _, body) = post(&s, "/ingest/v1/logs", Some(&key), "application/json", logs.to_string().into_bytes());
    assert_eq!((st, body.clone()), (200, json!({"accepted": 2, "rejected": 0, "errors": []})));
    let events = ndjson(&[json!({"type": "signup", "source_id": "api", "event_id": "e1", "data": {"plan": "pro"}})]);
    assert_eq!(post(&s, "/ingest/v1/events", Some(&key), "application/x-ndjson", events).0, 200);
    let metrics = ndjson(&[
        json!({"name": "http_requests_total", "labels": {"code": "200"}, "value": 5, "source_id": "web-1"}),
        json!({"metric_name": "cpu", "tags": {"core": "0"}, "value": 0.5, "source_id": "web-1"}),
    ]);
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&metrics).unwrap();
        e.finish().unwrap()
    };
    let r = s
        .http
        .post(s.url("/ingest/v1/metrics"))
        .bearer_auth(&key)
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .body(gz)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let zs = zstd::encode_all(&ndjson(&[json!({"source_id": "z", "message": "zstd line"})])[..], 3).unwrap();
    let r = s
        .http
        .post(s.url("/ingest/v1/logs"))
        .bearer_auth(&key)
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "zstd")
        .body(zs)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .http
        .post(s.url("/ingest/v1/raw/firmware-dumps?source_id=dev-9"))
        .bearer_auth(&key)
        .header("content-type", "application/octet-stream")
        .body(vec![0u8, 159, 146, 150, 255])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);

    let logs = s.all_records("logs");
    assert_eq!(logs.len(), 3);
    let disk = logs.iter().find(|r| r["payload"]["message"] == "disk full").unwrap();
    assert_eq!(disk["tenant"], "acme");
    assert_eq!(disk["source_id"], "web-1");
    assert_eq!(disk["timestamp"], "2026-01-02T03:04:05.123456789Z");
    assert_eq!(disk["payload"]["level"], "error");
    assert_eq!(disk["payload"]["run_id"], "r7");
    assert_eq!(disk["payload"]["attributes"]["user_id"], 42);
    let ok = logs.iter().find(|r| r["payload"]["message"] == "ok").unwrap();
    assert_eq!(ok["timestamp"], "2026-01-02T03:04:05Z");
    let ev = s.all_records("events");
    assert_eq!(ev[0]["payload"]["type"], "signup");
    assert_eq!(ev[0]["payload"]["data"]["plan"], "pro");
    // Metric points are stored as batches of series, one record per source and request.
    let m = s.all_records("metrics");
    assert!(m.iter().all(|r| r["payload_encoding"] == "metric_batch"), "{m:?}");
    let mut names: Vec<&str> = m
        .iter()
        .flat_map(|r| r["payload"].as_array().unwrap().iter())
        .map(|series| series["labels"]["__name__"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["cpu", "http_requests_total"]);
    let raw = s.all_records("raw");
    assert_eq!(raw[0]["headers"]["stream"], "firmware-dumps");
    assert_eq!(raw[0]["source_id"], "dev-9");
    assert_eq!(raw[0]["payload_encoding"], "base64");
    assert_eq!(raw[0]["payload"], "AJ+Slv8=");
    assert_eq!(raw[0]["headers"]["content-type"], "application/octet-stream");
    // Without a content type, or with the form type curl sends by default, a payload is stored as
    // application/octet-stream; a type the sender names is kept.
    for (ct, stored) in [
        (None, "application/octet-stream"),
        (Some("application/x-www-form-urlencoded"), "application/octet-stream"),
        (Some("application/x-coredump"), "application/x-coredump"),
    ] {
        let mut req = s.http.post(s.url("/ingest/v1/raw/typed?source_id=dev-9")).bearer_auth(&key).body("core");
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        assert_eq!(req.send().unwrap().status(), 200);
        let raw = s.all_records("raw");
        assert_eq!(raw.last().unwrap()["headers"]["content-type"], stored, "{ct:?}");
    }

    // Every record of one source is in one partition, in order.
    let lines: Vec<Value> = (0..50).map(|i| json!({"source_id": "ordered", "message": format!("n{i}")})).collect();
    assert_eq!(post(&s, "/ingest/v1/logs", Some(&key), "application/x-ndjson", ndjson(&lines)).0, 200);
    let ordered: Vec<String> = s
        .all_records("logs")
        .into_iter()
        .filter(|r| r["source_id"] == "ordered")
        .map(|r| r["payload"]["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ordered, (0..50).map(|i| format!("n{i}")).collect::<Vec<_>>());
}

#[test]
fn bad_records_are_named_and_good_ones_kept() {
    let s = Server::start("");
    let key = s.tenant_key("acme");
    let mut body = ndjson(&[json!({"source_id": "a", "message": "good 0"})]);
    body.extend_from_slice(b"{\"source_id\": \"a\", \"message\": \n");
    body.extend(ndjson(&[
        json!({"source_id": 12, "message": "wrong type"}),
        json!({"message": "no source"}),
        json!({"source_id": "a", "message": "good 1", "timestamp": "2099-01-01T00:00:00Z"}),
        json!({"source_id": "a", "message": "good 2"}),
        json!("just a string"),
    ]));
    let (st, _, v) = post(&s, "/ingest/v1/logs", Some(&key), "application/x-ndjson", body);
    assert_eq!(st, 200);
    assert_eq!(v["accepted"], 2);
    assert_eq!(v["rejected"], 5);
    let errs: Vec<(u64, String)> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["error"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(errs[0].0, 1);
    assert!(errs[0].1.starts_with("record is not valid JSON"), "{}", errs[0].1);
    assert_eq!(errs[1], (2, r#"field "source_id" must be a string, got a number"#.to_string()));
    assert_eq!(errs[2], (3, r#"field "source_id" is required"#.to_string()));
    assert_eq!(errs[3].0, 4);
    assert!(errs[3].1.contains("in the future"), "{}", errs[3].1);
    assert_eq!(errs[4], (6, "record must be a JSON object, got a string".to_string()));
    let kept: Vec<String> =
        s.all_records("logs").iter().map(|r| r["payload"]["message"].as_str().unwrap().to_string()).collect();
    assert_eq!(kept.len(), 2);
    assert!(kept.contains(&"good 0".to_string()) && kept.contains(&"good 2".to_string()));

    // Metric validation: names, labels, limits.
    let many: serde_json::Map<String, Value> = (0..31).map(|i| (format!("l{i}"), json!("v"))).collect();
    let body = ndjson(&[
        json!({"name": "ok_metric", "value": 1, "source_id": "a"}),
        json!({"name": "bad-name", "value": 1}),
        json!({"name": "m", "labels": {"__reserved": "x"}, "value": 1}),
        json!({"name": "m", "labels": many, "value": 1}),
        json!({"name": "m", "labels": {"k": "x".repeat(2049)}, "value": 1}),
    ]);
    let (st, _, v) = post(&s, "/ingest/v1/metrics", Some(&key), "application/x-ndjson", body);
    assert_eq!(st, 200);
    assert_eq!(v["accepted"], 1);
    let msgs: Vec<&str> = v["errors"].as_array().unwrap().iter().map(|e| e["error"].as_str().unwrap()).collect();
    assert_eq!(
        msgs,
        [
            r#"metric name "bad-name" is not a valid Prometheus metric name"#,
            r#"label name "__reserved" is reserved"#,
            "31 labels, more than the limit of 30",
            r#"field "labels.k" is 2049 bytes, more than the limit of 2048"#,
        ]
    );
    // More bad records than an answer lists (100): every one counted, the first listed in order.
    let body: Vec<u8> = (0..1000)
        .flat_map(|i| if i % 10 < 7 { b"7\n".to_vec() } else { ndjson(&[json!({"source_id": "a", "message": "m"})]) })
        .collect();
    let (st, _, v) = post(&s, "/ingest/v1/logs", Some(&key), "application/x-ndjson", body);
    assert_eq!(st, 200);
    assert_eq!((v["accepted"].as_u64(), v["rejected"].as_u64()), (Some(300), Some(700)));
    assert_eq!(v["errors_omitted"], 600);
    let listed: Vec<u64> = v["errors"].as_array().unwrap().iter().map(|e| e["index"].as_u64().unwrap()).collect();
    let want: Vec<u64> = (0..1000).filter(|i| i % 10 < 7).take(100).collect();
    assert_eq!(listed, want);
    // A body of which nothing could be accepted is a 400 with the same per-record errors.
    let (st, _, v) =
        post(&s, "/ingest/v1/events", Some(&key), "application/x-ndjson", ndjson(&[json!({"source_id": "a"})]));
    assert_eq!(st, 400);
    assert_eq!(v["errors"][0]["error"], r#"field "type" is required"#);
    assert!(s.is_up());
}

#[test]
fn concurrent_requests_are_each_answered_for_their_own_records() {
    let s = Server::start("");
    let key = s.tenant_key("acme");
    let (threads, requests, lines) = (8, 12, 40);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (s, key) = (&s, &key);
            scope.spawn(move || {
                for r in 0..requests {
                    let records: Vec<Value> = (0..lines)
                        .map(|i| json!({"source_id": format!("s{t}"), "message": format!("t{t} r{r} n{i}")}))
                        .collect();
                    let mut body = ndjson(&records);
                    body.extend_from_slice(b"not json\n");
                    let (st, _, v) = post(s, "/ingest/v1/logs", Some(key), "application/x-ndjson", body);
                    assert_eq!(st, 200, "{v}");
                    assert_eq!((v["accepted"].as_u64(), v["rejected"].as_u64()), (Some(lines), Some(1)), "{v}");
                    assert_eq!(v["errors"][0]["index"], lines);
                }
            });
        }
    });
    // Every line once, each source's in the order it was sent.
    let records = s.all_records("logs");
    assert_eq!(records.len() as u64, threads * requests * lines);
    for t in 0..threads {
        let got: Vec<&str> = records
            .iter()
            .filter(|r| r["source_id"] == format!("s{t}"))
            .map(|r| r["payload"]["message"].as_str().unwrap())
            .collect();
        let want: Vec<String> =
            (0..requests).flat_map(|r| (0..lines).map(move |i| format!("t{t} r{r} n{i}"))).collect();
        assert_eq!(got, want, "source s{t}");
    }
}

#[test]
fn malformed_bodies_and_headers_get_clear_errors() {
    let s = Server::start("[ingest]\nbody_bytes_max = 1048576\ndecompressed_bytes_max = 8388608\n");
    let key = s.tenant_key("acme");
    let k = Some(key.as_str());
    // A JSON array that does not parse names the byte.
    let (st, _, v) = post(&s, "/ingest/v1/logs", k, "application/json", b"[{\"source_id\": \"a\"}, {oops}]".to_vec());
    assert_eq!(st, 400);
    assert!(v["error"].as_str().unwrap().starts_with("invalid JSON at byte 22 (line 1, column 23)"), "{v}");
    let (st, _, v) = post(&s, "/ingest/v1/logs", k, "application/json", b"   ".to_vec());
    assert_eq!((st, v["error"].as_str().unwrap()), (400, "body contains no records"));
    // Wrong and missing content types.
    for ct in ["text/plain", "application/x-www-form-urlencoded", ""] {
        let (st, _, v) = post(&s, "/ingest/v1/logs", k, ct, b"{}".to_vec());
        assert_eq!(st, 415, "{ct}: {v}");
        assert!(v["error"].as_str().unwrap().contains("application/x-ndjson"), "{v}");
    }
    let r = s
        .http
        .post(s.url("/ingest/v1/logs"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .body("[]")
        .send()
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = s
        .http
        .post(s.url("/ingest/v1/logs"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body("this is not gzip")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("body is not valid gzip"));
    // Oversized, declared and undeclared (chunked).
    let (st, _, v) = post(&s, "/ingest/v1/logs", k, "application/x-ndjson", vec![b' '; (1 << 20) + 1]);
    assert_eq!(st, 413);
    assert_eq!(v["error"], "request body is larger than body_bytes_max (1048576 bytes)");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..40).map(|_| Ok(vec![b' '; 64 << 10])).collect();
    let r = s
        .http
        .post(s.url("/ingest/v1/logs"))
        .bearer_auth(&key)
        .header("content-type", "application/x-ndjson")
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(
            chunks.into_iter().flatten().flatten().collect::<Vec<u8>>(),
        )))
        .send();
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
    }
    // Answered before the body is read, so the client is told not to reuse the connection.
    let r = s.http.post(s.url("/ingest/v1/logs")).header("content-type", "application/json").body("[]").send().unwrap();
    let connection = r.headers().get("connection").map(|v| v.to_str().unwrap().to_string());
    assert_eq!((r.status().as_u16(), connection.as_deref()), (401, Some("close")));
    let r = s
        .http
        .post(s.url("/ingest/v1/logs"))
        .bearer_auth(&key)
        .header("content-type", "application/x-ndjson")
        .body(vec![b' '; (1 << 20) + 1])
        .send()
        .unwrap();
    let connection = r.headers().get("connection").map(|v| v.to_str().unwrap().to_string());
    assert_eq!((r.status().as_u16(), connection.as_deref()), (413, Some("close")));
    // Auth.
    let (st, _, v) = post(&s, "/ingest/v1/logs", None, "application/json", b"[]".to_vec());
    assert_eq!((st, v["error"].as_str().unwrap()), (401, "missing bearer token"));
    let (st, _, v) = post(&s, "/ingest/v1/logs", Some("strata_not_a_key"), "application/json", b"[]".to_vec());
    assert_eq!((st, v["error"].as_str().unwrap()), (401, "unknown api key"));
    let (st, _, _) = post(&s, "/admin/v1/tenants", Some(&key), "application/json", br#"{"name":"x"}"#.to_vec());
    assert_eq!(st, 401, "a tenant key is not an admin token");
    // Tenant names are path components.
    for bad in ["..", "a/b", "../../etc", "UPPER", "", &"x".repeat(65)] {
        let r = s.create_tenant(bad);
        assert_eq!(r.status(), 400, "{bad:?}");
        let msg = r.json::<Value>().unwrap()["error"].as_str().unwrap().to_string();
        assert!(msg.starts_with("tenant name"), "{msg}");
    }
    assert_eq!(s.create_tenant("acme").status(), 409);
    let r = s.http.post(s.url("/admin/v1/tenants")).bearer_auth(ADMIN_TOKEN).body("{").send().unwrap();
    assert_eq!(r.status(), 400);
    // Raw payloads need a source and a sane stream name.
    let r = s.http.post(s.url("/ingest/v1/raw/s")).bearer_auth(&key).body("x").send().unwrap();
    assert_eq!(r.status(), 400);
    let r = s.http.post(s.url("/ingest/v1/raw/..hidden?source_id=a")).bearer_auth(&key).body("x").send().unwrap();
    assert_eq!(r.status(), 400);
    // An empty payload is most often a file that was not there: refused, not stored.
    let r = s.http.post(s.url("/ingest/v1/raw/s?source_id=a")).bearer_auth(&key).body("").send().unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().unwrap();
    assert!(v["error"].as_str().unwrap().contains("raw payload is empty"), "{v}");
    assert_eq!(s.all_records("raw").len(), 0, "no empty record was stored");
    assert!(s.is_up());
    assert_eq!(s.all_records("logs").len(), 0, "nothing of the bad requests was appended");
}

fn bomb(encoding: &str, expanded_bytes: usize) -> Vec<u8> {
    let zeros = vec![b' '; 1 << 20];
    match encoding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            for _ in 0..expanded_bytes >> 20 {
                e.write_all(&zeros).unwrap();
            }
            e.finish().unwrap()
        }
        _ => {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
            for _ in 0..expanded_bytes >> 20 {
                e.write_all(&zeros).unwrap();
            }
            e.finish().unwrap()
        }
    }
}

#[test]
fn compression_bombs_stop_at_the_limit_with_memory_bounded() {
    let s = Server::start("");
    let key = s.tenant_key("acme");
    let before = s.peak_rss_bytes();
    for enc in ["gzip", "zstd"] {
        let body = bomb(enc, 1 << 30);
        assert!(body.len() < 16 << 20, "{enc} bomb is {} bytes", body.len());
        let r = s
            .http
            .post(s.url("/ingest/v1/logs"))
            .bearer_auth(&key)
            .header("content-type", "application/x-ndjson")
            .header("content-encoding", enc)
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 413, "{enc}");
        assert_eq!(
            r.json::<Value>().unwrap()["error"],
            "decompressed body is larger than decompressed_bytes_max (67108864 bytes)"
        );
        assert!(s.is_up());
    }
    let after = s.peak_rss_bytes();
    // The 1 GiB expansions were cut at 64 MiB each: the peak grew by about that, not by gigabytes.
    assert!(after < before + (200 << 20), "peak RSS went from {before} to {after} bytes");
}

#[test]
fn over_the_rate_limit_gets_429_with_retry_after() {
    let s = Server::start("[ingest.rate]\nrecords_per_s = 5.0\nrecords_burst = 10.0\n");
    let key = s.tenant_key("acme");
    let other = s.tenant_key("other");
    let body = ndjson(&(0..20).map(|i| json!({"source_id": "a", "message": format!("{i}")})).collect::<Vec<_>>());
    assert_eq!(post(&s, "/ingest/v1/logs", Some(&key), "application/x-ndjson", body.clone()).0, 200);
    let (st, retry, v) = post(&s, "/ingest/v1/logs", Some(&key), "application/x-ndjson", body.clone());
    assert_eq!(st, 429, "{v}");
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=4).contains(&retry), "{retry}");
    assert!(v["error"].as_str().unwrap().contains("tenant acme is over its ingest rate"));
    // Another tenant has its own budget.
    assert_eq!(post(&s, "/ingest/v1/logs", Some(&other), "application/x-ndjson", body).0, 200);
    assert_eq!(s.all_records("logs").len(), 40);
}

#[test]
fn when_ingest_memory_is_exhausted_requests_get_503_and_slow_bodies_408() {
    // Room for exactly three bodies of the maximum size.
    let s = Server::start(
        "[ingest]\nbody_bytes_max = 65536\ndecompressed_bytes_max = 65536\nmemory_bytes_max = 196608\nqueue_wait_ms = 200\nbody_read_timeout_ms = 1500\n",
    );
    let key = s.tenant_key("acme");
    // Three slow requests without a length hold the whole budget while they trickle in.
    let mut slow = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        write!(
            c,
            "POST /ingest/v1/logs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n     \r\n"
        )
        .unwrap();
        slow.push(c);
    }
    std::thread::sleep(Duration::from_millis(300));
    let (st, retry, v) = post(
        &s,
        "/ingest/v1/logs",
        Some(&key),
        "application/x-ndjson",
        ndjson(&[json!({"source_id": "a", "message": "m"})]),
    );
    assert_eq!(st, 503, "{v}");
    assert_eq!(retry.as_deref(), Some("1"));
    assert_eq!(v["error"], "ingest is at its memory limit; retry later");
    drop(slow);
    std::thread::sleep(Duration::from_millis(300));
    let (st, _, _) = post(
        &s,
        "/ingest/v1/logs",
        Some(&key),
        "application/x-ndjson",
        ndjson(&[json!({"source_id": "a", "message": "m"})]),
    );
    assert_eq!(st, 200, "memory is given back when the slow requests go away");
}

/// Sends a request whose body is `body_bytes` long over a raw connection, writing all of it before
/// reading anything, as a client without `Expect: 100-continue` does; returns the status line, or
/// why the body could not be sent.
fn send_all_then_read(
    s: &Server,
    path: &str,
    key: Option<&str>,
    content_type: &str,
    body_bytes: usize,
) -> Result<String, String> {
    use std::io::Read;
    let mut conn = TcpStream::connect(s.url("").trim_start_matches("http://")).unwrap();
    conn.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = key.map(|k| format!("authorization: Bearer {k}\r\n")).unwrap_or_default();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: strata\r\n{auth}content-type: {content_type}\r\n\
         content-length: {body_bytes}\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).map_err(|e| format!("headers: {e}"))?;
    let line = format!("{}\n", json!({"message": "x".repeat(1000)}));
    let mut sent = 0;
    while sent < body_bytes {
        let n = line.len().min(body_bytes - sent);
        conn.write_all(&line.as_bytes()[..n]).map_err(|e| format!("body, after {sent} bytes: {e}"))?;
        sent += n;
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("answer: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    Ok(text.lines().next().unwrap_or_default().to_string())
}

/// Errors answered before the body is read (a wrong key, an unknown content type, a declared
/// size over the limit) still reach a client that sends its whole body before reading: the rest
/// of the body is read and discarded first, so the client reads the answer, not a broken pipe.
#[test]
fn errors_answered_before_the_body_reach_a_client_still_sending() {
    let s = Server::start("[ingest]\nbody_bytes_max = 1048576\n");
    let key = s.tenant_key("linger");
    let key = Some(key.as_str());
    for (path, key, content_type, bytes, want) in [
        ("/ingest/v1/logs", None, "application/x-ndjson", 4 << 20, "401"),
        ("/ingest/v1/logs", key, "text/html", 4 << 20, "415"),
        ("/ingest/v1/logs", key, "application/x-ndjson", 8 << 20, "413"),
        // The shippers' protocols answer the same way.
        ("/v1/logs", key, "application/x-protobuf", 8 << 20, "413"),
        ("/v1/metrics", None, "application/json", 4 << 20, "401"),
        ("/loki/api/v1/push", key, "application/x-protobuf", 8 << 20, "413"),
        ("/_bulk", key, "application/x-ndjson", 8 << 20, "413"),
        ("/_bulk", key, "image/png", 4 << 20, "415"),
    ] {
        let status = send_all_then_read(&s, path, key, content_type, bytes);
        assert!(
            status.as_ref().is_ok_and(|l| l.starts_with(&format!("HTTP/1.1 {want} "))),
            "{path} {want}: {status:?}"
        );
    }
    assert_eq!(s.http.get(s.url("/healthz")).send().unwrap().status(), 200, "the server is up");
}

/// Below the disk floor (here set past any disk) appends are answered 503 with a Retry-After a
/// sender backs off by, keeping its records, and not 500, which OTLP exporters drop; the
/// partition is not stopped, so every request is answered the same until there is room.
#[test]
fn a_nearly_full_disk_is_answered_503_with_retry_after_and_stops_nothing() {
    let s = Server::start("[log]\ndisk_free_bytes_min = 9000000000000000000\n");
    let key = s.tenant_key("acme");
    let line = ndjson(&[json!({"timestamp": 1767323045000i64, "source_id": "web-1", "message": "hello"})]);
    for _ in 0..3 {
        let (st, retry, body) = post(&s, "/ingest/v1/logs", Some(&key), "application/x-ndjson", line.clone());
        assert_eq!((st, retry.as_deref()), (503, Some("30")), "{body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains("log.disk_free_bytes_min"), "{body}");
    }
    // OTLP/HTTP: exporters retry 503 (and drop 500).
    let export = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"timeUnixNano": "1767323045000000000", "body": {"stringValue": "hello"}}
    ]}]}]});
    let (st, retry, body) = post(&s, "/v1/logs", Some(&key), "application/json", export.to_string().into_bytes());
    assert_eq!((st, retry.as_deref()), (503, Some("30")), "{body}");
    assert!(body.to_string().contains("log.disk_free_bytes_min"), "{body}");
    assert_eq!(s.http.get(s.url("/readyz")).send().unwrap().status(), 200);
}

/// A protobuf length-delimited field: `key`, the varint length, `inner`.
fn len_field(key: u8, inner: &[u8]) -> Vec<u8> {
    let mut v = vec![key];
    prost::encoding::encode_varint(inner.len() as u64, &mut v);
    v.extend_from_slice(inner);
    v
}

#[test]
fn bodies_that_decode_into_far_more_than_their_size_are_refused_by_the_memory_budget() {
    // Half the budget, 24 MiB, is the most one request's decoding may take.
    let s = Server::start(
        "[ingest]\nbody_bytes_max = 8388608\ndecompressed_bytes_max = 8388608\nmemory_bytes_max = 50331648\n",
    );
    let key = s.tenant_key("acme");
    let before = s.peak_rss_bytes();
    let snappy = |b: &[u8]| snap::raw::Encoder::new().compress_vec(b).unwrap();
    let filled = |unit: &[u8], head: &[u8], tail: &[u8]| {
        let n = (7 << 20) / unit.len();
        [head, &unit.repeat(n), tail].concat()
    };
    // (what, path, content type, content encoding, body); every one of 7 MB decoded.
    type Hostile = (&'static str, &'static str, &'static str, Option<&'static str>, Vec<u8>);
    let hostile: Vec<Hostile> = vec![
        (
            "NDJSON of tiny lines (stored lines six times their size)",
            "/ingest/v1/logs",
            "application/x-ndjson",
            None,
            filled(b"{\"source_id\":\"a\",\"message\":\"a\"}\n", b"", b""),
        ),
        (
            "remote write of empty labels (32 bytes each once read, 2 in the body)",
            "/api/v1/write",
            "application/x-protobuf",
            Some("snappy"),
            snappy(&len_field(0x0a, &[0x0a, 0x00].repeat(3_500_000))),
        ),
        (
            "OTLP metrics of empty gauge points",
            "/v1/metrics",
            "application/x-protobuf",
            None,
            len_field(0x0a, &len_field(0x12, &len_field(0x12, &len_field(0x2a, &[0x0a, 0x00].repeat(3_000_000))))),
        ),
        (
            "a Loki protobuf push of empty entries",
            "/loki/api/v1/push",
            "application/x-protobuf",
            None,
            snappy(&len_field(0x0a, &[0x12, 0x00].repeat(3_000_000))),
        ),
        (
            "a Loki JSON push of empty entries",
            "/loki/api/v1/push",
            "application/json",
            None,
            filled(b"[\"1\",\"\"],", b"{\"streams\":[{\"stream\":{\"job\":\"a\"},\"values\":[", b"[\"1\",\"\"]]}]}"),
        ),
        (
            "an Elasticsearch _bulk of deletes (each answered with an item)",
            "/_bulk",
            "application/x-ndjson",
            None,
            filled(b"{\"delete\":{}}\n", b"", b""),
        ),
    ];
    for (what, path, content_type, encoding, body) in hostile {
        let mut r = s.http.post(s.url(path)).bearer_auth(&key).header("content-type", content_type);
        if let Some(e) = encoding {
            r = r.header("content-encoding", e);
        }
        let r = r.body(body).send().unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        assert_eq!(status, 413, "{what}: {text}");
        assert!(text.contains("ingest.memory_bytes_max"), "{what}: {text}");
        assert!(s.is_up(), "{what}");
    }
    // Before, the remote write body alone grew the vectors it was read into past 200 MB.
    let after = s.peak_rss_bytes();
    assert!(after < before + (100 << 20), "peak RSS went from {before} to {after} bytes");
    // What the refused requests took is given back: a request of the same size that decodes to
    // less is taken.
    let lines: Vec<Value> =
        (0..20_000).map(|i| json!({"source_id": "a", "message": "m".repeat(300) + &i.to_string()})).collect();
    let (st, _, v) = post(&s, "/ingest/v1/logs", Some(&key), "application/x-ndjson", ndjson(&lines));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["accepted"], 20_000);
    assert_eq!(s.all_records("logs").len(), 20_000, "nothing of the refused requests was appended");
}
