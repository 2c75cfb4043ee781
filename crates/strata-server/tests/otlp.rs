//! OTLP from the real OpenTelemetry SDKs: logs and metrics over gRPC (plain and gzip) and HTTP
//! protobuf, found again through search and PromQL; and the answers exporters act on.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use serde_json::{Value, json};

/// Runs tests/otlp_send.py; returns its standard output.
fn send(transport: &str, address: &str, key: &str, run: &str) -> String {
    let venv = common::shippers_venv();
    let out = std::process::Command::new(format!("{venv}/bin/python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otlp_send.py"))
        .args([transport, address, key, run])
        .output()
        .unwrap_or_else(|e| panic!("{venv}/bin/python: {e}; run scripts/install-shippers.sh"));
    assert!(
        out.status.success(),
        "{transport}: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The value of a PromQL instant query with one series, waiting for the store to have it.
fn promql(s: &Server, key: &str, query: &str) -> (Value, f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v: Value = s
            .http
            .get(s.url("/api/v1/query"))
            .bearer_auth(key)
            .query(&[("query", query)])
            .send()
            .unwrap()
            .json()
            .unwrap();
        if let Some(first) = v["data"]["result"].as_array().and_then(|r| r.first()) {
            assert_eq!(v["data"]["result"].as_array().unwrap().len(), 1, "{query}: {v}");
            let value = first["value"][1].as_str().unwrap().parse().unwrap();
            return (first["metric"].clone(), value);
        }
        assert!(Instant::now() < deadline, "{query}: no series: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_python_sdk_exports_logs_and_metrics_over_grpc_and_http() {
    let server = Server::start("");
    let key = server.tenant_key("otel");
    let grpc = format!("127.0.0.1:{}", server.grpc_port);
    let http = format!("127.0.0.1:{}", server.port);
    for (transport, address) in [("grpc", &grpc), ("grpc-gzip", &grpc), ("http", &http)] {
        let run = format!("run{}", transport.replace('-', ""));
        assert_eq!(send(transport, address, &key, &run).trim(), "ok");
        let hits = server.search_until(&key, &run, 4);
        let error = hits.iter().find(|h| h["message"].as_str().unwrap().starts_with("disk full")).unwrap();
        assert_eq!(error["level"], "error", "{error}");
        assert_eq!(error["service"], "checkout", "{error}");
        assert_eq!(error["source_id"], format!("web-{transport}"), "{error}");
        assert_eq!(error["attributes"]["disk"], "sda", "{error}");
        assert_eq!(error["attributes"]["deployment.environment"], "test", "{error}");
        assert_eq!(error["attributes"]["otel.scope.name"], "shop.payments", "{error}");
        let info: Vec<&Value> = hits.iter().filter(|h| h["level"] == "info").collect();
        assert_eq!(info.len(), 3);
        assert!(info.iter().any(|h| h["attributes"]["order"] == 2 && h["attributes"]["amount"] == 9.5), "{hits:?}");

        let (labels, value) = promql(&server, &key, &format!("shop_orders_total{{route=\"/pay\", run=\"{run}\"}}"));
        assert_eq!(value, 5.0);
        assert_eq!(labels["service"], "checkout", "{labels}");
        assert_eq!(labels["otel_scope_name"], "shop.meter", "{labels}");
        assert_eq!(labels["otel_scope_version"], "1.2.3", "{labels}");
        assert_eq!(labels["deployment_environment"], "test", "{labels}");
        assert_eq!(promql(&server, &key, &format!("shop_queue{{run=\"{run}\"}}")).1, 4.0);
        let bucket = |le: &str| format!("shop_latency_bucket{{run=\"{run}\", le=\"{le}\"}}");
        assert_eq!(promql(&server, &key, &bucket("0.1")).1, 1.0);
        assert_eq!(promql(&server, &key, &bucket("0.5")).1, 3.0);
        assert_eq!(promql(&server, &key, &bucket("+Inf")).1, 4.0);
        assert_eq!(promql(&server, &key, &format!("shop_latency_count{{run=\"{run}\"}}")).1, 4.0);
        assert_eq!(promql(&server, &key, &format!("shop_latency_sum{{run=\"{run}\"}}")).1, 2.65);
    }
    // A refused key is final for the exporter: it fails at once instead of retrying.
    assert_eq!(send("grpc", &grpc, "bad-key", "x").trim(), "FAILURE");
    assert_eq!(send("http", &http, "bad-key", "x").trim(), "FAILURE");
}

#[test]
fn otlp_http_answers_partial_success_and_errors_in_the_request_encoding() {
    let server = Server::start("");
    let key = server.tenant_key("otel");
    let post = |content_type: &str, body: Vec<u8>| {
        server
            .http
            .post(server.url("/v1/logs"))
            .bearer_auth(&key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap()
    };
    let now_ns = common::now_ms() as u128 * 1_000_000;
    let far_future = now_ns + 10 * 24 * 3600 * 1_000_000_000;
    let body = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-app"}}]},
        "scopeLogs": [{"logRecords": [
            {"timeUnixNano": now_ns.to_string(), "severityText": "WARN", "body": {"stringValue": "json line kept"},
             "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
             "attributes": [{"key": "count", "value": {"intValue": "42"}}]},
            {"timeUnixNano": far_future.to_string(), "body": {"stringValue": "from the future"}}
        ]}]
    }]});
    let r = post("application/json", serde_json::to_vec(&body).unwrap());
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().unwrap();
    assert_eq!(v["partialSuccess"]["rejectedLogRecords"], "1", "{v}");
    assert!(v["partialSuccess"]["errorMessage"].as_str().unwrap().contains("item 1: timestamp is"), "{v}");
    let hits = server.search_until(&key, "\"json line kept\"", 1);
    assert_eq!(hits[0]["level"], "warn");
    assert_eq!(hits[0]["service"], "json-app");
    assert_eq!(hits[0]["trace_id"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(hits[0]["attributes"]["span_id"], "eee19b7ec3c1b174");
    assert_eq!(hits[0]["attributes"]["count"], 42);

    // Bodies that do not decode: 400 with a google.rpc.Status in the request's encoding.
    let r = post("application/json", b"{\"resourceLogs\": 7}".to_vec());
    assert_eq!(r.status(), 400);
    let v: Value = r.json().unwrap();
    assert_eq!(v["code"], 3, "{v}");
    assert!(v["message"].as_str().unwrap().contains("OTLP/JSON"), "{v}");
    let r = post("application/x-protobuf", vec![0xff; 64]);
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    assert!(!r.bytes().unwrap().is_empty());
    // A gzip bomb is refused by its size, not decompressed.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &vec![b' '; 200 << 20]).unwrap();
    let r = server
        .http
        .post(server.url("/v1/logs"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status(), 413, "{}", r.text().unwrap());
    assert_eq!(post("text/plain", b"x".to_vec()).status(), 415);
    // Three million empty records in 6 MB: a hundred times that once decoded. Refused by the
    // memory budget once what reading them and writing their lines takes passes half of it.
    let len_field = |tag: u8, inner: &[u8]| {
        let mut v = vec![tag];
        let mut n = inner.len();
        while n >= 0x80 {
            v.push((n as u8) | 0x80);
            n >>= 7;
        }
        v.push(n as u8);
        v.extend_from_slice(inner);
        v
    };
    let records = [0x12, 0x00].repeat(3_000_000);
    let r = post("application/x-protobuf", len_field(0x0a, &len_field(0x12, &records)));
    assert_eq!(r.status(), 413);
    let status = r.bytes().unwrap();
    assert!(String::from_utf8_lossy(&status).contains("too many records"), "{status:?}");
    assert!(server.is_up());
    let r =
        server.http.post(server.url("/v1/logs")).header("content-type", "application/json").body("{}").send().unwrap();
    assert_eq!(r.status(), 401);
    // Traces are refused plainly.
    assert_eq!(server.http.post(server.url("/v1/traces")).bearer_auth(&key).body("{}").send().unwrap().status(), 501);
    // An empty export is a success with nothing to say.
    let r = post("application/json", b"{}".to_vec());
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap(), json!({}));
    assert!(server.is_up());
}

#[test]
fn the_node_sdk_exports_logs_and_metrics_as_otlp_json() {
    let server = Server::start("");
    let key = server.tenant_key("node");
    let modules = format!("{}/node/node_modules", common::shippers_venv());
    let out = std::process::Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otlp_send.js"))
        .args([&server.url(""), &key, "runnode"])
        .env("NODE_PATH", &modules)
        .output()
        .unwrap_or_else(|e| panic!("node: {e}; run scripts/install-shippers.sh"));
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    let hits = server.search_until(&key, "runnode", 3);
    let h = hits.iter().find(|h| h["attributes"]["cart.items"] == 1).unwrap();
    assert_eq!((&h["source_id"], &h["level"], &h["service"]), (&json!("web-node"), &json!("warn"), &json!("frontend")));
    assert_eq!(h["attributes"]["user.vip"], true, "{h}");
    assert_eq!(h["attributes"]["otel.scope.version"], "2.0.0", "{h}");
    let (labels, clicks) = promql(&server, &key, "web_clicks_total{run=\"runnode\"}");
    assert_eq!(clicks, 3.0);
    assert_eq!(labels["host_name"], "web-node", "{labels}");
    assert_eq!(promql(&server, &key, "web_render_bucket{run=\"runnode\", le=\"100\"}").1, 2.0);
    assert_eq!(promql(&server, &key, "web_render_sum{run=\"runnode\"}").1, 555.0);
}

#[test]
fn otlp_grpc_answers_bad_requests_with_codes_the_client_reads() {
    let server = Server::start("");
    let key = server.tenant_key("otel");
    let venv = common::shippers_venv();
    let out = std::process::Command::new(format!("{venv}/bin/python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otlp_grpc_raw.py"))
        .args([&format!("127.0.0.1:{}", server.grpc_port), &key])
        .output()
        .unwrap_or_else(|e| panic!("{venv}/bin/python: {e}; run scripts/install-shippers.sh"));
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        got,
        json!({"valid": "OK", "empty": "OK", "garbage": "INVALID_ARGUMENT", "truncated": "INVALID_ARGUMENT",
            "bad_key": "UNAUTHENTICATED", "bomb": "RESOURCE_EXHAUSTED", "traces": "UNIMPLEMENTED"})
    );
    server.search_until(&key, "\"a line\"", 5);
    assert!(server.is_up());
}
