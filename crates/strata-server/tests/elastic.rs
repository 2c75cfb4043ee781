//! Elasticsearch's bulk API from the real shippers: the Python client's `helpers.bulk` and
//! syslog-ng's `elasticsearch-http()` destination, found again through search; and the answers
//! they act on.

mod common;

use std::io::Write;

use common::{Peer, Server};
use serde_json::{Value, json};

#[test]
fn the_python_client_bulk_indexes_logs_with_the_answers_it_expects() {
    let server = Server::start("");
    let key = server.tenant_key("es");
    let venv = common::shippers_venv();
    let out = std::process::Command::new(format!("{venv}/bin/python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/es_bulk.py"))
        .args([&server.url(""), &key, "runbulk"])
        .output()
        .unwrap_or_else(|e| panic!("{venv}/bin/python: {e}; run scripts/install-shippers.sh"));
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The client checked the product header, read the version, counted 100 created items, and
    // read a refused delete as an item error.
    assert_eq!(
        answer,
        json!({"version": "8.17.0", "ok": 100, "errors": [], "refused": [400, "illegal_argument_exception"]})
    );
    let hits = server.search_until(&key, "runbulk", 100);
    let first = hits.iter().find(|h| h["attributes"]["order"] == 0).unwrap();
    assert_eq!(first["source_id"], "web-es", "{first}");
    assert_eq!(first["level"], "warning", "{first}");
    assert_eq!(first["attributes"]["_id"], "runbulk-0", "{first}");
    assert_eq!(first["attributes"]["_index"], "app-logs", "{first}");
    assert!(common::now_ms() * 1_000_000 - first["timestamp_ns"].as_i64().unwrap() > 30_000_000_000, "{first}");
}

#[test]
fn bulk_answers_malformed_and_hostile_bodies_in_elasticsearchs_shape() {
    let server = Server::start("");
    let key = server.tenant_key("es");
    let post = |path: &str, body: Vec<u8>| {
        server
            .http
            .post(server.url(path))
            .header("authorization", format!("ApiKey {key}"))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .unwrap()
    };
    let r = server.http.get(server.url("/")).send().unwrap();
    assert_eq!(r.headers()["x-elastic-product"], "Elasticsearch");
    assert_eq!(r.json::<Value>().unwrap()["version"]["number"], "8.17.0");
    // A broken action line fails the request: 400 with an error object, the product header still set.
    let r = post("/_bulk", b"{\"index\": {\"_index\": \"a\"}}\n{\"message\": \"ok\"}\n{broken\n".to_vec());
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-elastic-product"], "Elasticsearch");
    let v: Value = r.json().unwrap();
    assert_eq!(v["status"], 400);
    assert!(v["error"]["reason"].as_str().unwrap().contains("line 3"), "{v}");
    // Documents that are not objects, or have a bad timestamp, fail alone.
    let body = concat!(
        "{\"index\": {}}\n\"just a string\"\n",
        "{\"create\": {}}\n{\"message\": \"kept line\", \"@timestamp\": \"yesterday\"}\n",
        "{\"create\": {\"_id\": \"k\"}}\n{\"message\": \"kept line two\"}\n",
    );
    let v: Value = post("/app/_bulk", body.as_bytes().to_vec()).json().unwrap();
    assert_eq!(v["errors"], true);
    let items = v["items"].as_array().unwrap();
    assert_eq!(items[0]["index"]["status"], 400);
    assert_eq!(items[0]["index"]["error"]["type"], "document_parsing_exception");
    assert_eq!(items[1]["create"]["status"], 400);
    assert_eq!(items[2]["create"]["status"], 201);
    assert_eq!(items[2]["create"]["_id"], "k");
    assert_eq!(items[2]["create"]["_index"], "app");
    server.search_until(&key, "\"kept line two\"", 1);
    // Events indexes hold events.
    let v: Value =
        post("/events-orders/_bulk", b"{\"index\": {}}\n{\"amount\": 3, \"source_id\": \"shop\"}\n".to_vec())
            .json()
            .unwrap();
    assert_eq!(v["errors"], false, "{v}");
    // A wrong key, and a compressed bomb.
    let r = server
        .http
        .post(server.url("/_bulk"))
        .header("authorization", "ApiKey nope")
        .header("content-type", "application/x-ndjson")
        .body("{}\n")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().unwrap()["error"]["type"], "security_exception");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b'\n'; 200 << 20]).unwrap();
    let r = server
        .http
        .post(server.url("/_bulk"))
        .bearer_auth(&key)
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["x-elastic-product"], "Elasticsearch");
    assert!(server.is_up());
}

#[test]
fn syslog_ng_ships_to_bulk_with_its_elasticsearch_destination() {
    let server = Server::start("");
    let key = server.tenant_key("sys");
    let config = format!(
        "@version: 3.38\n@include \"scl.conf\"\n\
         source s_in {{ network(ip(\"127.0.0.1\") port({{port}}) transport(\"tcp\") keep-hostname(yes)); }};\n\
         destination d_strata {{ elasticsearch-http(url(\"{}\") index(\"syslog\") type(\"\") user(\"syslog\")\n\
           password(\"{key}\") batch-lines(50) batch-timeout(200)); }};\n\
         log {{ source(s_in); destination(d_strata); }};\n",
        server.url("/_bulk")
    );
    let peer = Peer::start_with_files(
        "syslog-ng",
        "syslog-ng",
        &[
            "-F",
            "-f",
            "{dir}/syslog-ng.conf",
            "-R",
            "{dir}/persist",
            "-p",
            "{dir}/pid",
            "-c",
            "{dir}/ctl",
            "--no-caps",
            "-e",
        ],
        &[("syslog-ng.conf", config.as_str())],
        "",
        "scripts/install-shippers.sh",
    );
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", peer.port)).unwrap();
    let now = time_now();
    for i in 0..120 {
        writeln!(conn, "<11>{now} web-sys app[123]: disk {i} full runsyslog").unwrap();
    }
    drop(conn);
    let hits = server.search_until(&key, "runsyslog", 120);
    let h = &hits[0];
    assert_eq!(h["source_id"], "web-sys", "{h}");
    assert_eq!(h["service"], "app", "{h}");
    assert_eq!(h["level"], "err", "{h}");
    assert_eq!(h["attributes"]["PID"], "123", "{h}");
    assert_eq!(h["attributes"]["_index"], "syslog", "{h}");
    assert!(!h["attributes"].as_object().unwrap().contains_key("ISODATE"), "{h}");
}

/// The time as RFC 3164 writes it, in UTC: `Dec  6 01:15:36`.
fn time_now() -> String {
    let out = std::process::Command::new("date").env("LC_ALL", "C").args(["-u", "+%b %e %H:%M:%S"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim_end().to_string()
}
