//! The Prometheus query API end to end against the real binary: PromQL instant and range queries
//! by GET and by POST form, in Prometheus's JSON; each malformed parameter refused with the
//! error Prometheus gives; the samples limit, the timeout and the per-tenant concurrency limit;
//! tenants apart; the endpoints Grafana and vmalert call around queries; and hostile input
//! answered with a readable 4xx while the server stays up.

mod common;

use std::time::{Duration, Instant};

use common::{Server, now_ms};
use serde_json::{Value, json};

/// The status, the headers and the body (JSON when it is JSON) of an answer.
type Answer = (u16, reqwest::header::HeaderMap, Value);

fn answer(r: reqwest::blocking::Response) -> Answer {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().unwrap();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn get(s: &Server, key: &str, path: &str, params: &[(&str, &str)]) -> Answer {
    answer(s.http.get(s.url(path)).bearer_auth(key).query(params).send().unwrap())
}

/// A POST with the parameters in a form body, as Grafana sends queries.
fn post(s: &Server, key: &str, path: &str, params: &[(&str, &str)]) -> Answer {
    answer(s.http.post(s.url(path)).bearer_auth(key).form(params).send().unwrap())
}

/// A successful answer to a GET, checking the envelope.
fn ok_get(s: &Server, key: &str, path: &str, params: &[(&str, &str)]) -> Value {
    let (status, headers, v) = get(s, key, path, params);
    assert_eq!(status, 200, "{path} {params:?}: {v}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(v["status"], "success", "{v}");
    v
}

/// A successful answer by GET and by POST, which must agree.
fn ok(s: &Server, key: &str, path: &str, params: &[(&str, &str)]) -> Value {
    let v = ok_get(s, key, path, params);
    let (status, _, by_post) = post(s, key, path, params);
    assert_eq!((status, &by_post), (200, &v), "{path} {params:?} by POST");
    v
}

/// The status line of a request written by hand: clients refuse to send what is tested here.
fn raw_status(s: &Server, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    conn.write_all(request).unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    text.lines().next().unwrap_or("").to_string()
}

/// An error answer: its status and its `errorType` and `error`, checking the envelope.
fn err(a: Answer) -> (u16, String, String) {
    let (status, headers, v) = a;
    assert_eq!(headers["content-type"], "application/json", "{v}");
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v.as_object().unwrap().len(), 3, "status, errorType and error only: {v}");
    (status, v["errorType"].as_str().unwrap().to_string(), v["error"].as_str().unwrap().to_string())
}

/// Waits (bounded) until the store has consumed what was written: `n` series match `selector`.
fn wait_series(s: &Server, key: &str, selector: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, v) = get(s, key, "/api/v1/series", &[("match[]", selector)]);
        assert_eq!(status, 200, "{v}");
        if v["data"].as_array().unwrap().len() == n {
            return;
        }
        assert!(Instant::now() < deadline, "{selector}: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Seconds as the query API takes them.
fn secs(ms: i64) -> String {
    format!("{}", ms as f64 / 1000.0)
}

/// A recent minute, far enough back that ten minutes of samples after it are in the past.
fn t0() -> i64 {
    (now_ms() - 20 * 60_000) / 60_000 * 60_000
}

/// `cpu{host}` every 15 s for 2 minutes from `t0`: host a counts 1, 2, 3...; host b 10, 20...
fn ingest_cpu(s: &Server, key: &str, t0: i64) {
    let points: Vec<Value> = (0..9)
        .flat_map(|i| {
            [("a", 1.0), ("b", 10.0)].map(|(host, scale)| {
                json!({"name": "cpu", "labels": {"host": host, "job": "node"}, "value": scale * f64::from(i + 1),
                       "timestamp": t0 + i64::from(i) * 15_000, "source_id": host})
            })
        })
        .collect();
    s.ingest_metrics(key, Value::Array(points));
    wait_series(s, key, "cpu", 2);
}

#[test]
fn queries_answer_in_prometheus_json() {
    let s = Server::start("");
    let key = s.tenant_key("acme");
    let other = s.tenant_key("other");
    let t0 = t0();
    ingest_cpu(&s, &key, t0);
    let at = secs(t0 + 30_000);

    // An instant vector: labels with the name, the timestamp in seconds, the value a string.
    let v = ok(&s, &key, "/api/v1/query", &[("query", r#"cpu{host="a"}"#), ("time", &at)]);
    assert_eq!(
        v,
        json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"__name__": "cpu", "host": "a", "job": "node"}, "value": [(t0 + 30_000) / 1000, "3"]}
        ]}})
    );
    // The time as RFC 3339, and between samples: the last one within the lookback.
    let rfc3339 = "2030-01-01T00:00:00Z";
    let (status, _, _) = get(&s, &key, "/api/v1/query", &[("query", "cpu"), ("time", rfc3339)]);
    assert_eq!(status, 200);
    let v = ok(&s, &key, "/api/v1/query", &[("query", "sum(cpu)"), ("time", &secs(t0 + 37_500))]);
    assert_eq!(v["data"]["result"], json!([{"metric": {}, "value": [(t0 + 37_500) as f64 / 1000.0, "33"]}]));
    // Without a time, now: the newest samples are 18 minutes old, past the 5-minute lookback.
    let v = ok(&s, &key, "/api/v1/query", &[("query", "cpu")]);
    assert_eq!(v["data"]["result"], json!([]));

    // A range query: a matrix sorted by labels, a point per step.
    let v = ok(
        &s,
        &key,
        "/api/v1/query_range",
        &[("query", "cpu * 2"), ("start", &secs(t0)), ("end", &secs(t0 + 30_000)), ("step", "15s")],
    );
    let t = |ms: i64| json!((t0 + ms) / 1000);
    assert_eq!(
        v["data"],
        json!({"resultType": "matrix", "result": [
            {"metric": {"host": "a", "job": "node"}, "values": [[t(0), "2"], [t(15_000), "4"], [t(30_000), "6"]]},
            {"metric": {"host": "b", "job": "node"}, "values": [[t(0), "20"], [t(15_000), "40"], [t(30_000), "60"]]},
        ]})
    );
    // Fractional seconds and a step in seconds: timestamps keep their milliseconds, written as
    // Prometheus writes them (all three decimals, or none).
    let r = s
        .http
        .get(s.url("/api/v1/query_range"))
        .bearer_auth(&key)
        .query(&[
            ("query", r#"cpu{host="b"}"#),
            ("start", &secs(t0 + 500)),
            ("end", &secs(t0 + 15_500)),
            ("step", "7.5"),
        ])
        .send()
        .unwrap();
    let text = r.text().unwrap();
    let s0 = t0 / 1000;
    let want = format!(r#""values":[[{s0}.500,"10"],[{},"10"],[{}.500,"20"]]"#, s0 + 8, s0 + 15);
    assert!(text.contains(&want), "{text}");
    // A scalar and a string: `[time, "value"]`.
    let v = ok(&s, &key, "/api/v1/query", &[("query", "1e21 / 1e-7 * 0 + 0.5"), ("time", "1435781451.781")]);
    assert_eq!(v["data"], json!({"resultType": "scalar", "result": [1435781451.781, "0.5"]}));
    let v = ok(&s, &key, "/api/v1/query", &[("query", r#""a \"b\"""#), ("time", "1")]);
    assert_eq!(v["data"], json!({"resultType": "string", "result": [1, "a \"b\""]}));
    // Values Prometheus writes specially.
    let v = ok(
        &s,
        &key,
        "/api/v1/query",
        &[("query", "vector(1/0) or label_replace(vector(-1/0), \"s\", \"n\", \"\", \"\")"), ("time", "10")],
    );
    let values: Vec<&str> =
        v["data"]["result"].as_array().unwrap().iter().map(|r| r["value"][1].as_str().unwrap()).collect();
    assert_eq!(values, ["+Inf", "-Inf"]);
    let v = ok(&s, &key, "/api/v1/query", &[("query", "vector(1e-7)"), ("time", "10")]);
    assert_eq!(v["data"]["result"][0]["value"], json!([10, "1e-07"]));

    // `limit` keeps the first series, with Prometheus's warning.
    let v = ok(
        &s,
        &key,
        "/api/v1/query_range",
        &[("query", "cpu"), ("start", &secs(t0)), ("end", &secs(t0)), ("step", "1"), ("limit", "1")],
    );
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"]["result"][0]["metric"]["host"], "a");
    assert_eq!(v["warnings"], json!(["results truncated due to limit"]));
    // The engine's annotations: rate over a series whose name is not a counter's is an info.
    let v = ok(&s, &key, "/api/v1/query", &[("query", "rate(cpu[1m])"), ("time", &at)]);
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(
        v["infos"],
        json!(["PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"cpu\""])
    );
    assert!(v.get("warnings").is_none(), "{v}");

    // Another tenant sees none of it.
    let v = ok(&s, &other, "/api/v1/query", &[("query", "cpu"), ("time", &at)]);
    assert_eq!(v["data"]["result"], json!([]));
    let v = ok(&s, &other, "/api/v1/query", &[("query", "count(cpu) or vector(0)"), ("time", &at)]);
    assert_eq!(v["data"]["result"][0]["value"][1], "0");
    assert!(s.is_up());
}

#[test]
fn malformed_requests_get_prometheus_errors() {
    let s = Server::start("[query]\nsamples_max = 10\n");
    let key = s.tenant_key("acme");
    let t0 = t0();
    ingest_cpu(&s, &key, t0);
    let range = |extra: &[(&'static str, &'static str)]| {
        let mut p = vec![("query", "cpu"), ("start", "1"), ("end", "2"), ("step", "1")];
        for e in extra {
            p.retain(|(k, _)| k != &e.0);
            p.push(*e);
        }
        p
    };
    let bad = "bad_data".to_string();
    type Case = (&'static str, Vec<(&'static str, &'static str)>, (u16, &'static str, &'static str));
    let cases: Vec<Case> = vec![
        (
            "/api/v1/query",
            vec![],
            (400, "bad_data", r#"invalid parameter "query": 1:1: parse error: no expression found in input"#),
        ),
        (
            "/api/v1/query",
            vec![("query", "  ")],
            (400, "bad_data", r#"invalid parameter "query": 1:1: parse error: no expression found in input"#),
        ),
        (
            "/api/v1/query",
            vec![("query", "up"), ("time", "yesterday")],
            (
                400,
                "bad_data",
                r#"invalid parameter "time": Invalid time value for 'time': cannot parse "yesterday" to a valid timestamp"#,
            ),
        ),
        (
            "/api/v1/query",
            vec![("query", "up"), ("timeout", "soon")],
            (400, "bad_data", r#"invalid parameter "timeout": cannot parse "soon" to a valid duration"#),
        ),
        ("/api/v1/query", vec![("query", "up"), ("timeout", "0")], (503, "timeout", "query timed out in query queue")),
        (
            "/api/v1/query_range",
            range(&[("start", "x")]),
            (400, "bad_data", r#"invalid parameter "start": cannot parse "x" to a valid timestamp"#),
        ),
        (
            "/api/v1/query_range",
            range(&[("start", "3")]),
            (400, "bad_data", r#"invalid parameter "end": end timestamp must not be before start time"#),
        ),
        (
            "/api/v1/query_range",
            range(&[("step", "1x")]),
            (400, "bad_data", r#"invalid parameter "step": cannot parse "1x" to a valid duration"#),
        ),
        (
            "/api/v1/query_range",
            range(&[("step", "0")]),
            (
                400,
                "bad_data",
                "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
            ),
        ),
        (
            "/api/v1/query_range",
            range(&[("step", "-15s")]),
            (400, "bad_data", r#"invalid parameter "step": cannot parse "-15s" to a valid duration"#),
        ),
        (
            "/api/v1/query_range",
            range(&[("end", "11002")]),
            (
                400,
                "bad_data",
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            ),
        ),
        (
            "/api/v1/query_range",
            range(&[("query", "")]),
            (400, "bad_data", "1:1: parse error: no expression found in input"),
        ),
        (
            "/api/v1/query_range",
            range(&[("limit", "-1")]),
            (400, "bad_data", r#"invalid parameter "limit": limit must be non-negative"#),
        ),
    ];
    for (path, params, (status, kind, msg)) in &cases {
        for a in [get(&s, &key, path, params), post(&s, &key, path, params)] {
            assert_eq!(err(a), (*status, kind.to_string(), msg.to_string()), "{path} {params:?}");
        }
    }
    // 11,000 points in all is still allowed, as in Prometheus.
    let (status, _, v) = get(&s, &key, "/api/v1/query_range", &range(&[("end", "11001")]));
    assert_eq!(status, 200, "{v}");

    // Syntax errors: 400 with the parser's message, which says where.
    for (path, params) in [
        ("/api/v1/query", vec![("query", "sum(rate(cpu[5m])")]),
        ("/api/v1/query_range", range(&[("query", "cpu{")])),
        ("/api/v1/query", vec![("query", r#"cpu{host=~"("}"#)]),
    ] {
        let (status, kind, msg) = err(get(&s, &key, path, &params));
        assert_eq!((status, &kind), (400, &bad), "{params:?}: {msg}");
        assert!(msg.contains("parse error") || msg.contains("regex"), "{params:?}: {msg}");
        if path == "/api/v1/query" {
            assert!(msg.starts_with(r#"invalid parameter "query": "#), "{msg}");
        }
    }
    // Wrong types are the query's errors too.
    let (status, kind, msg) = err(get(&s, &key, "/api/v1/query", &[("query", "rate(cpu)")]));
    assert_eq!((status, kind.as_str()), (400, "bad_data"), "{msg}");
    assert!(msg.starts_with(r#"invalid parameter "query": "#) && msg.contains("rate"), "{msg}");

    // More samples held at once than query.samples_max: 422.
    let (status, kind, msg) =
        err(get(&s, &key, "/api/v1/query", &[("query", "cpu[1h]"), ("time", &secs(t0 + 200_000))]));
    assert_eq!((status, kind.as_str()), (422, "execution"), "{msg}");
    assert_eq!(msg, "query processing would load too many samples into memory in query execution");

    // No key, a wrong key.
    let r = s.http.get(s.url("/api/v1/query")).query(&[("query", "cpu")]).send().unwrap();
    assert_eq!(err(answer(r)).0, 401);
    assert_eq!(err(get(&s, "strata_not_a_key", "/api/v1/query_range", &range(&[]))).0, 401);
    assert!(s.is_up());
}

/// A query of minutes that loads no sample and stays under the sample limit: a median over a day
/// of one-second points, for each minute of a day (1,440 sorts of 86,400 values).
const SLOW_QUERY: &str = "max_over_time(quantile_over_time(0.5, vector(1)[1d:1s])[1d:1m])";

#[test]
fn timeouts_and_concurrency_limits_answer_503() {
    let s = Server::start("[query]\ntimeout_ms = 1000\nconcurrent_per_tenant_max = 1\n");
    // A tenant each: a query that timed out may still hold its tenant's one slot for a while.
    let keys: Vec<String> = ["t1", "t2", "t3", "t4", "t5"].iter().map(|t| s.tenant_key(t)).collect();
    // The configured timeout.
    let started = Instant::now();
    let (status, kind, msg) = err(get(&s, &keys[0], "/api/v1/query", &[("query", SLOW_QUERY)]));
    assert_eq!((status, kind.as_str(), msg.as_str()), (503, "timeout", "query timed out in expression evaluation"));
    // Far sooner than the query would take: the timeout stopped it.
    assert!(started.elapsed() < Duration::from_secs(20), "answered when the timeout passed");
    // A request's timeout shortens it; it cannot lengthen it.
    let started = Instant::now();
    let (status, kind, _) = err(post(&s, &keys[1], "/api/v1/query", &[("query", SLOW_QUERY), ("timeout", "50ms")]));
    assert_eq!((status, kind.as_str()), (503, "timeout"));
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    let started = Instant::now();
    let (status, kind, _) = err(post(&s, &keys[2], "/api/v1/query", &[("query", SLOW_QUERY), ("timeout", "1h")]));
    assert_eq!((status, kind.as_str()), (503, "timeout"));
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());

    // One query at a time per tenant: a second one gets 503 with Retry-After while the first
    // runs; another tenant is not held up.
    let key = keys[3].clone();
    let slow = {
        let (url, key) = (s.url("/api/v1/query"), key.clone());
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::new();
            answer(http.get(url).bearer_auth(key).query(&[("query", SLOW_QUERY)]).send().unwrap())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let (status, headers, v) = get(&s, &key, "/api/v1/query", &[("query", "1")]);
    assert_eq!((status, &v["errorType"]), (503, &json!("unavailable")), "{v}");
    assert_eq!(headers["retry-after"], "1");
    assert!(v["error"].as_str().unwrap().contains("query.concurrent_per_tenant_max"), "{v}");
    let (status, _, v) = get(&s, &keys[4], "/api/v1/query", &[("query", "1")]);
    assert_eq!(status, 200, "{v}");
    let (status, _, v) = slow.join().unwrap();
    assert_eq!((status, &v["errorType"]), (503, &json!("timeout")), "the slow query ran to its timeout: {v}");
    // The slot is free again once the evaluation has stopped.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, v) = get(&s, &key, "/api/v1/query", &[("query", "1")]);
        if status == 200 {
            break;
        }
        assert_eq!(v["errorType"], "unavailable", "{v}");
        assert!(Instant::now() < deadline, "the slot was never given back");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(s.is_up());
}

#[test]
fn hostile_input_gets_a_readable_4xx() {
    let s = Server::start("");
    let key = s.tenant_key("acme");
    // A form body past query.body_bytes_max (1 MiB).
    let big = format!("query={}", "a".repeat(2 << 20));
    let r = s
        .http
        .post(s.url("/api/v1/query"))
        .bearer_auth(&key)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .unwrap();
    let (status, kind, msg) = err(answer(r));
    assert_eq!((status, kind.as_str()), (413, "bad_data"));
    assert_eq!(msg, "request body is larger than query.body_bytes_max (1048576 bytes)");
    // The same without a declared length.
    let chunked = reqwest::blocking::Body::new(std::io::Cursor::new(vec![b'a'; 8 << 20]));
    let r = s
        .http
        .post(s.url("/api/v1/query_range"))
        .bearer_auth(&key)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(chunked)
        .send()
        .unwrap();
    assert_eq!(err(answer(r)).0, 413);
    // A URL past what the HTTP server reads.
    let long = format!(
        "GET /api/v1/query?query={} HTTP/1.1\r\nhost: strata\r\nauthorization: Bearer {key}\r\nconnection: close\r\n\r\n",
        "a".repeat(100_000)
    );
    let status = raw_status(&s, long.as_bytes());
    assert!(status.starts_with("HTTP/1.1 4"), "{status}");
    // A long query that fits, nested past what is evaluated, and a long chain of operators.
    for query in [
        format!("{}1{}", "(".repeat(5000), ")".repeat(5000)),
        vec!["1"; 20_000].join("+"),
        format!("{}1", "-".repeat(50_000)),
        format!("{}up{}", "abs(".repeat(3000), ")".repeat(3000)),
    ] {
        for a in [
            post(&s, &key, "/api/v1/query", &[("query", &query)]),
            post(&s, &key, "/api/v1/query_range", &[("query", &query), ("start", "0"), ("end", "1"), ("step", "1")]),
        ] {
            let (status, kind, msg) = err(a);
            assert_eq!((status, kind.as_str()), (400, "bad_data"), "{msg}");
            assert!(msg.contains("brackets and operators deep"), "{msg}");
        }
    }
    // Bytes that are no query, a body that is no form.
    for query in ["\u{0}\u{1}\u{ff}", "{{{{", "sum by (", "1 +", "\"unterminated", "cpu[5m:"] {
        let (status, kind, _) = err(post(&s, &key, "/api/v1/query", &[("query", query)]));
        assert_eq!((status, kind.as_str()), (400, "bad_data"), "{query:?}");
    }
    let r = s
        .http
        .post(s.url("/api/v1/query"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(r#"{"query": "up"}"#)
        .send()
        .unwrap();
    let (status, _, msg) = err(answer(r));
    assert_eq!(status, 400, "a JSON body is not read, as in Prometheus: {msg}");
    let r = s
        .http
        .post(s.url("/api/v1/query"))
        .bearer_auth(&key)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("query=%zz&&=&time")
        .send()
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    assert!(s.is_up());
    let (status, _, _) = get(&s, &key, "/api/v1/query", &[("query", "1")]);
    assert_eq!(status, 200);
}

#[test]
fn endpoints_around_queries_answer_in_prometheus_shapes() {
    let s = Server::start("[query]\ntimeout_ms = 90000\n[tsdb]\nretention_days = 28\n");
    let key = s.tenant_key("acme");
    let other = s.tenant_key("other");
    let t0 = t0();
    ingest_cpu(&s, &key, t0);
    s.ingest_metrics(&key, json!([{"name": "mem", "labels": {}, "value": 1, "timestamp": t0, "source_id": "m"}]));
    wait_series(&s, &key, "mem", 1);

    let v = ok_get(&s, &key, "/api/v1/status/flags", &[]);
    let flags = v["data"].as_object().unwrap();
    assert!(flags.values().all(Value::is_string), "{v}");
    assert_eq!(flags["query.timeout"], "1m30s");
    assert_eq!(flags["query.lookback-delta"], "5m");
    assert_eq!(flags["query.max-samples"], "50000000");
    assert_eq!(flags["query.max-concurrency"], "20");
    assert_eq!(flags["storage.tsdb.retention.time"], "4w");

    let v = ok_get(&s, &key, "/api/v1/status/runtimeinfo", &[]);
    let info = v["data"].as_object().unwrap();
    for field in ["startTime", "CWD", "lastConfigTime", "GOGC", "GODEBUG", "storageRetention"] {
        assert!(info[field].is_string(), "{field}: {v}");
    }
    for field in ["corruptionCount", "goroutineCount", "GOMAXPROCS"] {
        assert!(info[field].is_u64(), "{field}: {v}");
    }
    assert_eq!(info["reloadConfigSuccess"], true);
    assert_eq!(info["storageRetention"], "4w");
    assert!(info["startTime"].as_str().unwrap().ends_with('Z'), "{v}");

    assert_eq!(ok_get(&s, &key, "/api/v1/rules", &[])["data"], json!({"groups": []}));
    assert_eq!(ok_get(&s, &key, "/api/v1/rules", &[("type", "alert")])["data"], json!({"groups": []}));
    assert_eq!(
        err(get(&s, &key, "/api/v1/rules", &[("type", "x")])),
        (400, "bad_data".into(), r#"invalid parameter "type": not supported value "x""#.into())
    );
    assert_eq!(ok_get(&s, &key, "/api/v1/alerts", &[])["data"], json!({"alerts": []}));
    assert_eq!(
        ok(&s, &key, "/api/v1/query_exemplars", &[("query", "cpu"), ("start", "1"), ("end", "2")])["data"],
        json!([])
    );
    assert_eq!(
        err(get(&s, &key, "/api/v1/query_exemplars", &[])),
        (400, "bad_data".into(), "1:1: parse error: no expression found in input".into())
    );
    let (status, kind, msg) = err(get(&s, &key, "/api/v1/query_exemplars", &[("query", "sum(cpu")]));
    assert_eq!((status, kind.as_str()), (400, "bad_data"), "{msg}");
    assert!(msg.contains("parse error"), "{msg}");
    assert_eq!(
        err(get(&s, &key, "/api/v1/query_exemplars", &[("query", "cpu"), ("start", "2"), ("end", "1")])),
        (400, "bad_data".into(), "end timestamp must not be before start timestamp".into())
    );

    let unknown = json!([{"type": "unknown", "help": "", "unit": ""}]);
    let (status, _, v) = get(&s, &key, "/api/v1/metadata", &[]);
    assert_eq!(status, 200);
    assert_eq!(v["data"], json!({"cpu": unknown, "mem": unknown}));
    let (_, _, v) = get(&s, &key, "/api/v1/metadata", &[("metric", "mem")]);
    assert_eq!(v["data"], json!({"mem": unknown}));
    let (_, _, v) = get(&s, &key, "/api/v1/metadata", &[("limit", "1"), ("limit_per_metric", "1")]);
    assert_eq!(v["data"], json!({"cpu": unknown}));
    assert_eq!(
        err(get(&s, &key, "/api/v1/metadata", &[("limit", "x")])),
        (400, "bad_data".into(), "limit must be a number".into())
    );
    let (_, _, v) = get(&s, &other, "/api/v1/metadata", &[]);
    assert_eq!(v["data"], json!({}), "another tenant's metric names are not shown");

    // The series and label endpoints take the same times as queries: seconds and RFC 3339.
    let (from, to) = (secs(t0 - 60_000), secs(t0 + 200_000));
    for (start, end) in [(from.clone(), to.clone()), (rfc3339(t0 - 60_000), rfc3339(t0 + 200_000))] {
        let v = ok(&s, &key, "/api/v1/series", &[("match[]", "cpu"), ("start", &start), ("end", &end)]);
        assert_eq!(v["data"].as_array().unwrap().len(), 2, "{start} {end}: {v}");
        let v = ok(&s, &key, "/api/v1/labels", &[("start", &start), ("end", &end)]);
        assert_eq!(v["data"], json!(["__name__", "host", "job"]));
        let v = ok_get(&s, &key, "/api/v1/label/host/values", &[("start", &start), ("end", &end)]);
        assert_eq!(v["data"], json!(["a", "b"]));
    }
    let (status, kind, msg) = err(get(&s, &key, "/api/v1/series", &[("match[]", "cpu"), ("start", "soon")]));
    assert_eq!(
        (status, kind.as_str(), msg.as_str()),
        (
            400,
            "bad_data",
            r#"invalid parameter "start": Invalid time value for 'start': cannot parse "soon" to a valid timestamp"#
        )
    );
    // A start after the end selects nothing, as in Prometheus.
    let v = ok(&s, &key, "/api/v1/series", &[("match[]", "cpu"), ("start", &to), ("end", &from)]);
    assert_eq!(v["data"], json!([]));
    let (status, _, _) = get(&s, &key, "/api/v1/status/buildinfo", &[]);
    assert_eq!(status, 200);
    for path in
        ["/api/v1/status/flags", "/api/v1/status/runtimeinfo", "/api/v1/metadata", "/api/v1/rules", "/api/v1/alerts"]
    {
        let r = s.http.get(s.url(path)).send().unwrap();
        assert_eq!(err(answer(r)).0, 401, "{path}");
    }
}

/// Unix milliseconds as RFC 3339 with milliseconds, `2015-07-01T20:10:51.781Z`.
fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms.rem_euclid(1000))
}
