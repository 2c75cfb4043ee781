//! `strata serve` as an operator meets it: configuration errors, health, graceful shutdown,
//! running without auth, self-metrics, and the inspection commands.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{ADMIN_TOKEN, PARTITIONS_ENV, Server};
use serde_json::{Value, json};

fn serve_with(config: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("strata.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.args(["serve", "--http-addr", "127.0.0.1:0", "--data-dir"]).arg(dir.path().join("d")).arg("--config").arg(&cfg);
    cmd.env("STRATA_OTLP_GRPC_ADDR", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_bad_configuration_fails_at_start_naming_the_key() {
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 5] = [
        ("[log]\npartitions = 0\n", &[], "invalid configuration key log.partitions: must be 1 to 1024, got 0"),
        ("[ingest]\nbody_limit = 5\n", &[], "unknown field `body_limit`"),
        (
            "",
            &[("STRATA_INGEST_BODY_BYTES_MAX", "lots")],
            "invalid environment variable STRATA_INGEST_BODY_BYTES_MAX=\"lots\" (configuration key ingest.body_bytes_max)",
        ),
        ("", &[("STRATA_HTTP_ADR", "x")], "environment variable STRATA_HTTP_ADR is not a configuration key"),
        (
            "",
            &[("STRATA_LOG_PARTITIONS", "abc")],
            "invalid environment variable STRATA_LOG_PARTITIONS=\"abc\" (configuration key log.partitions)",
        ),
    ];
    for (file, env, want) in cases {
        let (code, stderr) = serve_with(file, env);
        assert_eq!(code, 2, "{file:?} {env:?}: {stderr}");
        assert!(stderr.contains(want), "{file:?} {env:?}: {stderr}");
    }
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let mut s = Server::start("");
    let key = s.tenant_key("acme");
    assert_eq!(s.http.get(s.url("/healthz")).send().unwrap().status(), 200);
    assert_eq!(s.http.get(s.url("/readyz")).send().unwrap().text().unwrap(), "ready\n");
    // A request whose body is still arriving when the signal comes.
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    write!(
        c,
        "POST /ingest/v1/logs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    let line = format!("{}\n", json!({"source_id": "a", "message": "in flight"}));
    write!(c, "{:x}\r\n{line}\r\n", line.len()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    common::signal(s.pid(), libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    write!(c, "0\r\n\r\n").unwrap();
    let mut resp = String::new();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = c.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains(r#""accepted":1"#), "{resp}");
    let status = s.terminate();
    assert!(status.success(), "{status}");
    // The record is there after a restart.
    s.spawn();
    let recs = s.all_records("logs");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["payload"]["message"], "in flight");
}

#[test]
fn without_auth_everything_is_the_default_tenant() {
    let s = Server::start_with("", true);
    let r = s
        .http
        .post(s.url("/ingest/v1/logs"))
        .header("content-type", "application/json")
        .body(json!([{"source_id": "a", "message": "m"}]).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let topics: Value = s.http.get(s.url("/admin/v1/topics")).send().unwrap().json().unwrap();
    assert!(topics["topics"].is_array());
    assert_eq!(s.all_records("logs")[0]["tenant"], "default");
    assert!(s.server_log().contains("authentication is off"));
}

#[test]
fn self_metrics_cover_ingest_log_and_consumers() {
    // On the default partition count: one per topic.
    let mut s = Server::new("", false);
    s.envs.retain(|(k, _)| k != PARTITIONS_ENV);
    s.spawn();
    let key = s.tenant_key("acme");
    let r = s
        .http
        .post(s.url("/ingest/v1/logs"))
        .bearer_auth(&key)
        .header("content-type", "application/x-ndjson")
        .body(format!("{}\n{{bad\n", json!({"source_id": "a", "message": "m"})))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    std::thread::sleep(Duration::from_millis(1500));
    let text = s.http.get(s.url("/metrics")).send().unwrap().text().unwrap();
    for want in [
        r#"strata_ingest_records_accepted_total{tenant="acme",kind="logs"} 1"#,
        r#"strata_ingest_records_rejected_total{tenant="acme",kind="logs",reason="invalid_json"} 1"#,
        r#"strata_ingest_bytes_total{tenant="acme",kind="logs"}"#,
        r#"strata_ingest_requests_total{kind="logs",status="200"} 1"#,
        r#"strata_ingest_request_seconds_bucket{kind="logs",le="0.005"}"#,
        r#"strata_log_append_seconds_bucket{topic="logs",le="+Inf"} 1"#,
        r#"strata_log_fsync_seconds_bucket{topic="logs""#,
        r#"strata_log_group_commit_requests_bucket{topic="logs""#,
        r#"strata_log_segments{topic="logs",partition="0"} 1"#,
        r#"strata_log_bytes{topic="logs",partition="#,
        r#"strata_consumer_lag_records{group="stats",topic="logs",partition="0"} 0"#,
        r#"strata_stored_records_total{tenant="acme",kind="logs"} 1"#,
        r#"strata_build_info{version="#,
        r#"strata_consumer_up{group="search"} 1"#,
        r#"strata_consumer_up{group="tsdb"} 1"#,
    ] {
        assert!(text.contains(want), "missing {want} in:\n{text}");
    }
    assert!(!text.contains(r#"strata_log_segments{topic="logs",partition="1"}"#), "one partition:\n{text}");
    let topics = s.admin_get("/admin/v1/topics");
    let logs = topics["topics"].as_array().unwrap().iter().find(|t| t["name"] == "logs").unwrap();
    assert_eq!(logs["partitions"].as_array().unwrap().len(), 1, "{logs}");
}

#[test]
fn inspection_commands_read_a_running_server() {
    let s = Server::start("");
    let key = s.tenant_key("acme");
    let lines: Vec<Value> = (0..5).map(|i| json!({"source_id": "only", "message": format!("line {i}")})).collect();
    assert_eq!(s.ingest_ndjson(&key, "logs", &lines), 200);
    std::thread::sleep(Duration::from_millis(1500));
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(args)
            .args(["--server", &s.url(""), "--token", ADMIN_TOKEN])
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let topics = run(&["topics"]);
    let logs_rows: Vec<&str> = topics.lines().filter(|l| l.starts_with("logs ")).collect();
    assert_eq!(logs_rows.len(), 4, "{topics}");
    let p = logs_rows.iter().find(|l| l.split_whitespace().nth(3) == Some("5")).expect("a partition with 5 records");
    let partition = p.split_whitespace().nth(1).unwrap().to_string();
    let consumed = run(&["consume", "logs", "-p", &partition, "-o", "2", "-n", "2"]);
    let recs: Vec<Value> = consumed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["offset"], 2);
    assert_eq!(recs[0]["payload"]["message"], "line 2");
    assert_eq!(recs[1]["payload"]["message"], "line 3");
    let groups = run(&["groups"]);
    assert!(
        groups
            .lines()
            .any(|l| l.starts_with("stats") && l.contains(" logs ") && l.split_whitespace().nth(3) == Some("5")),
        "{groups}"
    );
    // Without a token the admin API refuses.
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["topics", "--server", &s.url(""), "--data-dir", "/nonexistent"])
        .env_remove("STRATA_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_start_that_fails_says_why_and_leaves_nothing_behind() {
    let s = Server::start("");
    // The port is taken: the error names it, and no data directory is created.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh-data");
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--http-addr", &format!("127.0.0.1:{}", s.port), "--data-dir"])
        .arg(&data)
        .env("STRATA_OTLP_GRPC_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("cannot listen on 127.0.0.1:{}", s.port)), "{stderr}");
    assert!(stderr.contains("--http-addr"), "{stderr}");
    assert!(!data.exists(), "a failed start left {} behind", data.display());
    // The data directory is in use: the error says so, not that the configuration is invalid.
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(s.data_dir())
        .env("STRATA_OTLP_GRPC_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("is in use by another process"), "{stderr}");
    assert!(stderr.contains("another data directory"), "{stderr}");
    assert!(!stderr.contains("invalid log configuration"), "{stderr}");
    assert!(s.is_up(), "the first server is untouched");
}

#[test]
fn inspection_commands_say_where_they_looked_for_the_token() {
    let s = Server::start("");
    let dir = tempfile::tempdir().unwrap();
    let run = |envs: &[(&str, &str)], args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.arg("topics").args(args).current_dir(dir.path()).env_remove("STRATA_ADMIN_TOKEN");
        cmd.env_remove("STRATA_SERVER").env_remove("STRATA_DATA_DIR");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let url = s.url("");
    // Run where there is no strata-data: the error says where it looked and how to pass a token.
    let (ok, _, err) = run(&[("STRATA_SERVER", &url)], &[]);
    assert!(!ok);
    for want in
        ["401", "STRATA_ADMIN_TOKEN is not set", "strata-data/meta/admin-token cannot be read", "--token", "--data-dir"]
    {
        assert!(err.contains(want), "missing {want:?} in {err}");
    }
    // A wrong token is named by where it came from.
    let (ok, _, err) = run(&[("STRATA_SERVER", &url), ("STRATA_ADMIN_TOKEN", "wrong")], &[]);
    assert!(!ok);
    assert!(err.contains("the admin token from STRATA_ADMIN_TOKEN was refused"), "{err}");
    // The server and the data directory can come from the environment, as for `strata serve`.
    let data = s.data_dir();
    let (ok, out, err) = run(&[("STRATA_SERVER", &url), ("STRATA_DATA_DIR", data.to_str().unwrap())], &[]);
    assert!(!ok, "the test server's token is not in its data directory: {out}");
    assert!(err.contains(&format!("{}/meta/admin-token cannot be read", data.display())), "{err}");
    let (ok, out, err) = run(&[("STRATA_SERVER", &url), ("STRATA_ADMIN_TOKEN", ADMIN_TOKEN)], &[]);
    assert!(ok && out.starts_with("TOPIC"), "{out}{err}");
    // No server there: the error says how to point at one.
    let (ok, _, err) = run(&[], &["--server", "http://127.0.0.1:9"]);
    assert!(!ok);
    assert!(err.contains("cannot reach the server at http://127.0.0.1:9") && err.contains("STRATA_SERVER"), "{err}");
}

#[test]
fn help_says_how_commands_find_the_server_and_the_token() {
    let commands = [
        &["--help"][..],
        &["topics", "--help"],
        &["consume", "--help"],
        &["groups", "--help"],
        &["consumers", "--help"],
    ];
    for args in commands {
        let out = Command::new(env!("CARGO_BIN_EXE_strata")).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        for want in ["STRATA_SERVER", "http://127.0.0.1:7878", "STRATA_ADMIN_TOKEN", "meta/admin-token", "--token"] {
            assert!(help.contains(want), "{args:?}: missing {want:?} in\n{help}");
        }
    }
}
