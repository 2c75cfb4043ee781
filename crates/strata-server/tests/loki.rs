//! Loki's push API from python-logging-loki (JSON) and a snappy protobuf push built by hand, as
//! Promtail sends it, found again through search; and the answers senders act on.

mod common;

use common::Server;
use serde_json::json;

#[derive(Clone, PartialEq, prost::Message)]
struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    streams: Vec<Stream>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Stream {
    #[prost(string, tag = "1")]
    labels: String,
    #[prost(message, repeated, tag = "2")]
    entries: Vec<Entry>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Entry {
    #[prost(message, optional, tag = "1")]
    timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    line: String,
    #[prost(message, repeated, tag = "3")]
    structured_metadata: Vec<LabelPair>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LabelPair {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Timestamp {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

#[test]
fn python_logging_loki_pushes_json_that_search_finds() {
    let server = Server::start("");
    let key = server.tenant_key("loki");
    let venv = common::shippers_venv();
    let out = std::process::Command::new(format!("{venv}/bin/python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/loki_push.py"))
        .args([&server.url(""), &key, "runloki"])
        .output()
        .unwrap_or_else(|e| panic!("{venv}/bin/python: {e}; run scripts/install-shippers.sh"));
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    let hits = server.search_until(&key, "runloki", 5);
    let error = hits.iter().find(|h| h["message"].as_str().unwrap().starts_with("invoice 7 failed")).unwrap();
    assert_eq!(error["source_id"], "web-loki", "{error}");
    assert_eq!(error["service"], "billing", "{error}");
    assert_eq!(error["level"], "error", "{error}");
    assert_eq!(error["attributes"]["customer"], "acme", "{error}");
    assert_eq!(error["attributes"]["logger"], "billing", "{error}");
}

#[test]
fn a_snappy_protobuf_push_is_searchable_and_bad_pushes_get_loki_answers() {
    let server = Server::start("");
    let key = server.tenant_key("loki");
    let now_s = common::now_ms() / 1000;
    let push = PushRequest {
        streams: vec![Stream {
            labels: r#"{job="varlogs", host="db-1", level="warn"}"#.into(),
            entries: (0..50)
                .map(|i| Entry {
                    timestamp: Some(Timestamp { seconds: now_s - 60, nanos: i }),
                    line: format!("slow query {i} runproto"),
                    structured_metadata: vec![LabelPair { name: "trace_id".into(), value: "0af7651916cd43dd".into() }],
                })
                .collect(),
        }],
    };
    let post = |content_type: &str, body: Vec<u8>| {
        server
            .http
            .post(server.url("/loki/api/v1/push"))
            .bearer_auth(&key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap()
    };
    let body = snap::raw::Encoder::new().compress_vec(&prost::Message::encode_to_vec(&push)).unwrap();
    assert_eq!(post("application/x-protobuf", body).status(), 204);
    let hits = server.search_until(&key, "runproto", 50);
    let h = &hits[0];
    assert_eq!((&h["source_id"], &h["level"], &h["service"]), (&json!("db-1"), &json!("warn"), &json!("varlogs")));
    assert_eq!(h["trace_id"], "0af7651916cd43dd");
    assert_eq!(h["timestamp_ns"].as_i64().unwrap() / 1_000_000_000, now_s - 60);

    // One bad entry among good ones: 400 naming it, the others stored.
    let ns = |s: i64| (s * 1_000_000_000).to_string();
    let body = json!({"streams": [{"stream": {"host": "h"}, "values": [
        [ns(now_s), "good line runjson"], ["soon", "bad timestamp"], [ns(now_s), "meta line runjson", {"user": "ann"}]
    ]}]});
    let r = post("application/json", serde_json::to_vec(&body).unwrap());
    assert_eq!(r.status(), 400);
    let text = r.text().unwrap();
    assert!(text.starts_with("1 of 3 entries rejected: entry 1:"), "{text}");
    let hits = server.search_until(&key, "runjson", 2);
    assert!(hits.iter().any(|h| h["attributes"]["user"] == "ann"), "{hits:?}");

    // Not snappy, not a push, a bomb that declares its size, a wrong type, no key.
    assert_eq!(post("application/x-protobuf", b"\xff\xff\xff\xff\xff\xff".to_vec()).status(), 400);
    let not_push = snap::raw::Encoder::new().compress_vec(&[0x0a, 0xff, 0x01]).unwrap();
    assert_eq!(post("application/x-protobuf", not_push).status(), 400);
    let mut bomb = Vec::new();
    let mut n = 1u64 << 30;
    while n >= 0x80 {
        bomb.push((n as u8) | 0x80);
        n >>= 7;
    }
    bomb.push(n as u8);
    assert_eq!(post("application/x-protobuf", bomb).status(), 413);
    let bad_labels = PushRequest { streams: vec![Stream { labels: "job=x".into(), entries: vec![] }] };
    let body = snap::raw::Encoder::new().compress_vec(&prost::Message::encode_to_vec(&bad_labels)).unwrap();
    let r = post("application/x-protobuf", body);
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("stream labels"));
    assert_eq!(post("text/plain", b"x".to_vec()).status(), 415);
    let r =
        server.http.post(server.url("/loki/api/v1/push")).header("content-type", "application/json").body("{}").send();
    assert_eq!(r.unwrap().status(), 401);
    assert!(server.is_up());
}
