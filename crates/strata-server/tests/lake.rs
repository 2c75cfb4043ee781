//! The lake end to end: events sent to `strata serve`, SIGKILLed while the lake's `events` table
//! commits and compacts, are each in the Delta table exactly once, read back with DataFusion as
//! any engine reading Delta would, and with Python's deltalake and DuckDB.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use serde_json::json;
use strata_lake::deltalake;
use strata_lake::deltalake::datafusion::prelude::SessionContext;

const REQUESTS: usize = 100;
const PER_REQUEST: usize = 10;
const KILLS: usize = 20;

/// `(rows, distinct event ids)` of the events table, `None` before its first commit.
fn counts(server: &Server) -> Option<(i64, i64)> {
    let path = server.data_dir().join("lake/events");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = deltalake::ensure_table_uri(path.to_string_lossy()).ok()?;
        let table = deltalake::open_table(url).await.ok()?;
        let ctx = SessionContext::new();
        table.update_datafusion_session(&ctx.state()).unwrap();
        ctx.register_table("events", table.table_provider().await.unwrap()).unwrap();
        let batches = ctx
            .sql("SELECT count(*), count(DISTINCT event_id) FROM events WHERE tenant = 'lake'")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let col = |i: usize| {
            batches[0].column(i).as_any().downcast_ref::<deltalake::arrow::array::Int64Array>().unwrap().value(0)
        };
        Some((col(0), col(1)))
    })
}

#[test]
fn events_are_in_the_lake_once_across_sigkills() {
    // Compaction runs every 250 ms over any partition with two small files, so the kills land
    // during compactions as well as during the sink's commits.
    let mut server = Server::start(
        "[lake]\ncommit_interval_ms = 300\ncompact_interval_ms = 250\ncompact_min_files = 2\n\
         [rollups]\ncommit_interval_ms = 200\n",
    );
    let key = server.tenant_key("lake");
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut kills = 0;
    for n in 0..REQUESTS {
        let body: String = (0..PER_REQUEST)
            .map(|i| {
                let id = n * PER_REQUEST + i;
                format!(
                    "{}\n",
                    json!({"type": "order", "source_id": format!("shop-{}", id % 5), "event_id": format!("e{id}"),
                        "data": {"amount": id, "currency": "EUR"}})
                )
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = http
                .post(server.url("/ingest/v1/events"))
                .bearer_auth(&key)
                .header("content-type", "application/x-ndjson")
                .header("idempotency-key", format!("req-{n}"))
                .body(body.clone())
                .send();
            match r {
                Ok(r) if r.status() == 200 => break,
                Ok(r) if r.status().is_client_error() => panic!("{}: {}", r.status(), r.text().unwrap()),
                _ => {}
            }
            assert!(Instant::now() < deadline, "request {n} was not taken");
            std::thread::sleep(Duration::from_millis(50));
        }
        if n % 5 == 4 && kills < KILLS {
            // Let a lake commit or two happen, then kill at a moment of the commit cycle that varies.
            std::thread::sleep(Duration::from_millis(150 + 23 * kills as u64));
            server.kill();
            server.spawn();
            kills += 1;
        }
    }
    let want = (REQUESTS * PER_REQUEST) as i64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = counts(&server);
        if got == Some((want, want)) {
            break;
        }
        if let Some((rows, distinct)) = got {
            assert_eq!(rows, distinct, "an event is in the lake twice");
            assert!(rows <= want, "{rows} rows for {want} events");
        }
        assert!(Instant::now() < deadline, "the lake holds {got:?} of {want} events");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The table committed many times between the kills, not once at the end, and compacted
    // along the way.
    let log: Vec<String> = std::fs::read_dir(server.data_dir().join("lake/events/_delta_log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let commits = log.iter().filter(|c| c.contains("\"operation\":\"WRITE\"")).count();
    let compactions = log.iter().filter(|c| c.contains("\"operation\":\"OPTIMIZE\"")).count();
    assert!(commits >= 5, "{commits} commits");
    assert!(compactions >= 3, "{compactions} compactions");
    eprintln!("{kills} kills, {commits} commits, {compactions} compactions, {want} events in the lake once each");
    // Independent readers see the same rows after the compactions.
    let readers = read_independently(&server, "lake");
    let sum = want * (want - 1) / 2;
    assert_eq!(readers["deltalake"], json!([want, sum, want]), "{readers}");
    assert_eq!(readers["duckdb"], json!([want, sum, want]), "{readers}");
    assert!(readers["files"].as_u64().unwrap() < commits as u64, "{readers}");
}

/// What Python's deltalake and DuckDB (over the files the Delta log lists) find in `tenant`'s rows
/// of the events table: `[rows, sum(amount), distinct event ids]` each. Both are installed by
/// scripts/install-lake-readers.sh, which the test command runs.
fn read_independently(server: &Server, tenant: &str) -> serde_json::Value {
    let venv = std::env::var("STRATA_LAKE_VENV")
        .unwrap_or_else(|_| format!("{}/.cache/strata-lake-readers", std::env::var("HOME").unwrap()));
    let out = std::process::Command::new(format!("{venv}/bin/python"))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lake_readers.py"))
        .arg(server.data_dir().join("lake/events"))
        .arg(tenant)
        .output()
        .unwrap_or_else(|e| panic!("{venv}/bin/python: {e}; run scripts/install-lake-readers.sh"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sql(server: &Server, key: &str, query: &str) -> (u16, serde_json::Value) {
    let r = server.http.post(server.url("/query/v1/sql")).bearer_auth(key).json(&json!({"sql": query})).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap())
}

#[test]
fn sql_reads_the_callers_rows_only_and_refuses_anything_but_a_read() {
    let server = Server::start("[lake]\ncommit_interval_ms = 200\nsql_rows_max = 4\n");
    let (a, b) = (server.tenant_key("a"), server.tenant_key("b"));
    for (key, n) in [(&a, 5), (&b, 3)] {
        let body: String = (1..=n)
            .map(|i| {
                format!(
                    "{}\n",
                    json!({"type": "order", "source_id": "shop", "event_id": format!("e{i}"), "data": {"amount": i}})
                )
            })
            .collect();
        let r = server
            .http
            .post(server.url("/ingest/v1/events"))
            .bearer_auth(key)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = sql(&server, &a, "SELECT count(*) AS n, sum(amount) AS s FROM events");
        if status == 200 && v["rows"] == json!([{"n": 5, "s": 15}]) {
            break;
        }
        assert!(Instant::now() < deadline, "{status} {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while sql(&server, &b, "SELECT count(*) AS n FROM events").1["rows"] != json!([{"n": 3}]) {
        assert!(Instant::now() < deadline, "tenant b's events");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Another tenant's rows cannot be named.
    assert_eq!(sql(&server, &a, "SELECT count(*) AS n FROM events WHERE tenant = 'b'").1["rows"], json!([{"n": 0}]));
    // Past the row limit, a clear error; under it, the rows.
    let (status, v) = sql(&server, &a, "SELECT event_id FROM events");
    assert_eq!(status, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("more than 4 rows"), "{v}");
    let (status, v) = sql(&server, &a, "SELECT event_id FROM events ORDER BY amount DESC LIMIT 2");
    assert_eq!((status, v["rows"].clone()), (200, json!([{"event_id": "e5"}, {"event_id": "e4"}])));
    // Nothing but reads.
    for refused in [
        "DROP TABLE events",
        "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc'",
        "INSERT INTO events (event_id) VALUES ('x')",
        "DELETE FROM events",
        "COPY events TO '/tmp/strata-copy.parquet'",
        "SET datafusion.execution.batch_size = 1",
        "SELECT * FROM read_parquet('/etc/passwd')",
        "SELECT * FROM nope",
        "SELEC 1",
    ] {
        let (status, v) = sql(&server, &a, refused);
        assert_eq!(status, 400, "{refused}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{refused}: {v}");
    }
    // Independent readers find the same rows.
    let readers = read_independently(&server, "a");
    assert_eq!(readers["deltalake"], json!([5, 15, 5]), "{readers}");
    assert_eq!(readers["duckdb"], json!([5, 15, 5]), "{readers}");

    let r = server.http.post(server.url("/query/v1/sql")).bearer_auth(&a).body("{\"query\": 1}").send().unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(server.http.get(server.url("/healthz")).send().unwrap().status(), 200, "the server is up");
    assert!(!std::path::Path::new("/tmp/strata-copy.parquet").exists());
}
