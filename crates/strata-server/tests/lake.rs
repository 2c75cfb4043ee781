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
        server.post_events_until_taken(&key, &body, Some(&format!("req-{n}")));
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
    // The upkeep's figures: files and bytes of the table, after a round of the running server.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.metric("strata_lake_files{table=\"events\"}").is_none() {
        assert!(Instant::now() < deadline, "no strata_lake_files");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server.metric("strata_lake_files{table=\"events\"}"), Some(readers["files"].as_f64().unwrap()));
    assert!(server.metric("strata_lake_bytes{table=\"events\"}").unwrap() > 0.0);
}

/// What Python's deltalake and DuckDB (over the files the Delta log lists) find in `tenant`'s rows
/// of the events table: `[rows, sum(amount), distinct event ids]` each. Both are installed by
/// scripts/install-lake-readers.sh, which the test command runs.
fn read_independently(server: &Server, tenant: &str) -> serde_json::Value {
    read_table(&server.data_dir().join("lake/events").to_string_lossy(), tenant, &[])
}

/// The virtualenv of scripts/install-lake-readers.sh.
fn lake_venv() -> String {
    std::env::var("STRATA_LAKE_VENV")
        .unwrap_or_else(|_| format!("{}/.cache/strata-lake-readers", std::env::var("HOME").unwrap()))
}

/// As [`read_independently`], of the table at `table` (a directory or an `s3://` URL, whose
/// store `envs` configure).
fn read_table(table: &str, tenant: &str, envs: &[(&str, &str)]) -> serde_json::Value {
    use std::os::unix::process::ExitStatusExt;
    let venv = lake_venv();
    let run = || {
        std::process::Command::new(format!("{venv}/bin/python"))
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lake_readers.py"))
            .arg(table)
            .arg(tenant)
            .envs(envs.iter().copied())
            .output()
            .unwrap_or_else(|e| panic!("{venv}/bin/python: {e}; run scripts/install-lake-readers.sh"))
    };
    let mut out = run();
    // pyarrow's threads have been seen to abort the reader (SIGABRT from C++'s terminate) on a
    // loaded machine. That is the reader's fault, not the table's: read once more, and say so.
    if let Some(signal) = out.status.signal() {
        eprintln!("lake reader killed by signal {signal}: {}; reading again", String::from_utf8_lossy(&out.stderr));
        out = run();
    }
    assert!(
        out.status.success(),
        "{}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
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
        let events: Vec<_> = (1..=n)
            .map(|i| json!({"type": "order", "source_id": "shop", "event_id": format!("e{i}"), "data": {"amount": i}}))
            .collect();
        assert_eq!(server.ingest_ndjson(key, "events", &events), 200);
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
    // A tenant without rows in a table others have written sees it empty.
    let c = server.tenant_key("c");
    let (status, v) = sql(&server, &c, "SELECT count(*) AS n FROM events WHERE dt >= '2000-01-01'");
    assert_eq!((status, v["rows"].clone()), (200, json!([{"n": 0}])), "{v}");
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

/// Sends `events` (JSON objects) to tenant `key` and waits until the lake's `events` table holds
/// `total` of the tenant's rows.
fn send_events(server: &Server, key: &str, events: &[serde_json::Value], total: usize) {
    assert_eq!(server.ingest_ndjson(key, "events", events), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = sql(server, key, "SELECT count(*) AS n FROM events");
        if status == 200 && v["rows"][0]["n"] == json!(total) {
            return;
        }
        assert!(Instant::now() < deadline, "{status} {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sql_as(server: &Server, key: &str, query: &str, format: &str) -> (u16, String, Vec<u8>) {
    let r = server
        .http
        .post(server.url("/query/v1/sql"))
        .bearer_auth(key)
        .json(&json!({"sql": query, "format": format}))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let ctype = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, ctype, r.bytes().unwrap().to_vec())
}

#[test]
fn sql_formats_day_pruning_export_and_schema_evolution() {
    let server = Server::start("[lake]\ncommit_interval_ms = 200\n");
    let key = server.tenant_key("c");
    let event = |day: u32, i: u32, data: serde_json::Value| {
        json!({"type": "order", "source_id": format!("shop-{}", i % 2), "event_id": format!("d{day}-{i}"),
            "timestamp": format!("2026-01-0{day}T10:00:0{i}Z"), "data": data})
    };
    // Day 1: amount is an integer. Day 2: the events gain a field, and one of them sends amount as
    // a string, which its integer column cannot hold.
    let day1: Vec<_> = (0..4).map(|i| event(1, i, json!({"amount": i}))).collect();
    send_events(&server, &key, &day1, 4);
    let mut day2: Vec<_> = (0..3).map(|i| event(2, i, json!({"amount": 10 + i, "region": "eu"}))).collect();
    day2.push(event(2, 9, json!({"amount": "lots", "region": "us"})));
    send_events(&server, &key, &day2, 7);

    // Schema evolution: old rows have no region, new rows have it, and the conflict is kept.
    let (status, v) = sql(
        &server,
        &key,
        "SELECT dt, count(*) AS n, sum(amount) AS s, count(region) AS r FROM events GROUP BY dt ORDER BY dt",
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["rows"],
        json!([{"dt": "2026-01-01", "n": 4, "s": 6, "r": 0}, {"dt": "2026-01-02", "n": 3, "s": 33, "r": 3}])
    );
    assert_eq!(v["columns"][0]["name"], "dt", "{v}");
    assert_eq!(v["columns"][1], json!({"name": "n", "type": "Int64"}), "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = sql(&server, &key, "SELECT reason, payload FROM rejected");
        if let Some(row) = v["rows"].get(0) {
            let reason = row["reason"].as_str().unwrap();
            assert!(reason.contains("\"amount\" is a string") && reason.contains("Int64"), "{reason}");
            assert!(row["payload"].as_str().unwrap().contains("lots"), "the whole event is kept: {row}");
            break;
        }
        assert!(Instant::now() < deadline, "no rejected row: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Every format.
    let q = "SELECT event_id, amount FROM events WHERE dt = '2026-01-01' ORDER BY event_id LIMIT 2";
    let (status, ctype, body) = sql_as(&server, &key, q, "ndjson");
    assert_eq!((status, ctype.as_str()), (200, "application/x-ndjson"));
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "{\"event_id\":\"d1-0\",\"amount\":0}\n{\"event_id\":\"d1-1\",\"amount\":1}\n"
    );
    let (status, ctype, body) = sql_as(&server, &key, q, "csv");
    assert_eq!((status, ctype.as_str()), (200, "text/csv; charset=utf-8"));
    assert_eq!(String::from_utf8(body).unwrap(), "event_id,amount\nd1-0,0\nd1-1,1\n");
    let (_, _, body) = sql_as(&server, &key, "SELECT event_id FROM events WHERE amount > 100", "csv");
    assert_eq!(String::from_utf8(body).unwrap(), "event_id\n", "no rows, still a header");
    let (status, ctype, body) = sql_as(&server, &key, q, "arrow");
    assert_eq!((status, ctype.as_str()), (200, "application/vnd.apache.arrow.stream"));
    let reader = deltalake::arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None).unwrap();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    assert_eq!(batches[0].schema().field(1).name(), "amount");
    let (status, ctype, body) = sql_as(&server, &key, q, "parquet");
    assert_eq!((status, ctype.as_str()), (200, "application/vnd.apache.parquet"));
    let reader =
        deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(body))
            .unwrap()
            .build()
            .unwrap();
    assert_eq!(reader.map(|b| b.unwrap().num_rows()).sum::<usize>(), 2);
    let (status, _, body) = sql_as(&server, &key, q, "xml");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));

    // A query of one day reads that day's files only: by its partition, and by the statistics of
    // `timestamp` when the day is not named.
    for filter in ["dt = '2026-01-02'", "timestamp >= '2026-01-02T00:00:00Z' AND timestamp < '2026-01-03T00:00:00Z'"] {
        let (status, v) = sql(&server, &key, &format!("EXPLAIN ANALYZE SELECT sum(amount) FROM events WHERE {filter}"));
        assert_eq!(status, 200, "{v}");
        let plan = v["rows"].to_string();
        assert!(plan.contains("dt=2026-01-02"), "{filter}: the day's files are read: {plan}");
        assert!(!plan.contains("dt=2026-01-01"), "{filter}: the other day's files are not: {plan}");
    }

    // Export pointers: the files of day 2, then only those that may hold shop-1's amount 11.
    let export = |body: serde_json::Value| {
        let r = server.http.post(server.url("/query/v1/export")).bearer_auth(&key).json(&body).send().unwrap();
        (r.status().as_u16(), r.json::<serde_json::Value>().unwrap())
    };
    let (status, v) = export(json!({"table": "events", "from": "2026-01-02T00:00:00Z", "to": "2026-01-03T00:00:00Z"}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rows"], json!(3), "{v}");
    let files = v["files"].as_array().unwrap();
    assert!(v["files_considered"].as_u64().unwrap() > files.len() as u64, "{v}");
    for file in files {
        let uri = file["uri"].as_str().unwrap();
        assert!(uri.starts_with("file:///") && uri.contains("/tenant=c/dt=2026-01-02/"), "{v}");
        assert!(file["time_min"].as_str().unwrap().starts_with("2026-01-02T10:00:0"), "{v}");
        let path = uri.strip_prefix("file://").unwrap();
        assert_eq!(std::fs::metadata(path).unwrap().len(), file["bytes"].as_u64().unwrap(), "{v}");
    }
    let (_, v) = export(json!({"table": "events", "filters": {"amount": 1000}}));
    assert_eq!(v["files"], json!([]), "no file's statistics allow amount 1000: {v}");
    let (_, v) = export(json!({"table": "events", "filters": {"source_id": "shop-1", "amount": 11}}));
    assert_eq!(v["files"].as_array().unwrap().len(), 1, "{v}");
    for (bad, why) in [
        (json!({"table": "nope"}), "there is no table"),
        (json!({"table": "events", "filters": {"nope": 1}}), "no column"),
        (json!({"table": "events", "from": "yesterday"}), "from"),
        (json!({"table": "events", "filters": {"tenant": "a"}}), "tenant"),
    ] {
        let (status, v) = export(bad.clone());
        assert_eq!(status, 400, "{bad}: {v}");
        assert!(v["error"].as_str().unwrap().contains(why), "{bad}: {v}");
    }
    // Self-metrics of writes and queries.
    assert_eq!(sql(&server, &key, "DROP TABLE events").0, 400);
    assert_eq!(server.metric("strata_lake_rows_total{table=\"events\"}"), Some(7.0));
    assert!(server.metric("strata_lake_input_bytes_total{table=\"events\"}").unwrap() > 7.0 * 100.0);
    assert!(server.metric("strata_lake_commit_seconds_count{table=\"events\"}").unwrap() >= 2.0);
    assert!(server.metric("strata_lake_query_seconds_count{outcome=\"ok\"}").unwrap() >= 10.0);
    assert!(server.metric("strata_lake_query_seconds_count{outcome=\"refused\"}").unwrap() >= 1.0);
}

#[test]
fn sql_limits_fail_clearly_and_the_server_stays_up() {
    let server =
        Server::start("[lake]\ncommit_interval_ms = 200\nsql_memory_bytes = 67108864\nsql_timeout_ms = 5000\n");
    let key = server.tenant_key("m");
    send_events(&server, &key, &[json!({"type": "t", "source_id": "s", "data": {"amount": 1}})], 1);
    // A hash table of ten million groups does not fit in 64 MiB.
    let (status, v) = sql(
        &server,
        &key,
        "SELECT v % 10000000 AS k, count(*) FROM generate_series(1, 20000000) AS t(v) GROUP BY k ORDER BY k LIMIT 1",
    );
    assert_eq!(status, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("memory"), "{v}");
    // The server is up and answers the next query.
    assert_eq!(sql(&server, &key, "SELECT count(*) AS n FROM events").1["rows"], json!([{"n": 1}]));
    assert_eq!(server.http.get(server.url("/healthz")).send().unwrap().status(), 200);
    drop(server);

    // Longer than its timeout: 503 with a Retry-After. On a server of its own with the default
    // memory pool, since a scan starved of CPU may buffer its way into a small pool first.
    let server = Server::start("[lake]\ncommit_interval_ms = 200\nsql_timeout_ms = 1000\n");
    let key = server.tenant_key("m");
    let r = server
        .http
        .post(server.url("/query/v1/sql"))
        .bearer_auth(&key)
        .json(&json!({"sql": "SELECT count(*) FROM generate_series(1, 100000000000) AS t(v) WHERE v % 7 = 3"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 503, "{}", r.text().unwrap());
    assert!(r.headers().get("retry-after").is_some());
    let v: serde_json::Value = r.json().unwrap();
    assert!(v["error"].as_str().unwrap().contains("longer than"), "{v}");
    assert_eq!(server.http.get(server.url("/healthz")).send().unwrap().status(), 200);
}

#[test]
fn logs_raw_payloads_and_rollup_windows_have_tables_of_their_own() {
    let server = Server::start(
        "[lake]\ncommit_interval_ms = 200\n[rollups]\ncommit_interval_ms = 200\npartition_idle_ms = 500\n",
    );
    let key = server.tenant_key("f");
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let lines: Vec<_> = (0..3)
        .map(|i| {
            json!({"source_id": "web-1", "level": "ERROR", "message": format!("disk {i} full"), "trace_id": "abc",
                "attributes": {"disk": i}})
        })
        .collect();
    assert_eq!(server.ingest_ndjson(&key, "logs", &lines), 200);
    let payload: Vec<u8> = (0..=255u8).collect();
    let r = server
        .http
        .post(server.url("/ingest/v1/raw/dumps"))
        .bearer_auth(&key)
        .header("content-type", "application/octet-stream")
        .header("x-source-id", "box-7")
        .body(payload.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let rule = json!({"name": "req_1s", "input": {"metric": "req_seconds"}, "group_by": ["service"],
        "window": {"type": "tumbling", "size": "1s"}, "aggregations": ["count", "sum"], "output": "req_1s",
        "out_of_orderness": "0s", "allowed_lateness": "0s"});
    let r = server.http.post(server.url("/admin/v1/rollups")).bearer_auth(&key).json(&rule).send().unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let start = (now_ms - 60_000) / 1000 * 1000;
    let samples: Vec<_> = (0..6)
        .map(|i| json!({"name": "req_seconds", "labels": {"service": "api"}, "value": 0.5, "timestamp": start + i * 500}))
        .chain([json!({"name": "req_seconds", "labels": {"service": "api"}, "value": 1.0, "timestamp": now_ms})])
        .collect();
    server.ingest_metrics(&key, json!(samples));

    let deadline = Instant::now() + Duration::from_secs(60);
    let wait = |query: &str, want: serde_json::Value| loop {
        let (status, v) = sql(&server, &key, query);
        assert_eq!(status, 200, "{query}: {v}");
        if v["rows"] == want {
            return;
        }
        assert!(Instant::now() < deadline, "{query}: {status} {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    wait(
        "SELECT count(*) AS n, min(level) AS level, max(trace_id) AS t, max(attributes) AS a FROM logs \
         WHERE message LIKE 'disk % full'",
        json!([{"n": 3, "level": "error", "t": "abc", "a": "{\"disk\":2}"}]),
    );
    wait(
        "SELECT stream, content_type, source_id, encode(payload, 'hex') AS hex FROM raw",
        json!([{"stream": "dumps", "content_type": "application/octet-stream", "source_id": "box-7",
            "hex": payload.iter().map(|b| format!("{b:02x}")).collect::<String>()}]),
    );
    // Three closed windows of two samples each: a count and a sum row per window.
    let windows = format!(
        "SELECT metric, count(*) AS windows, sum(value) AS total FROM metrics_aggregates \
         WHERE labels LIKE '%\"service\":\"api\"%' AND CAST(timestamp AS BIGINT) <= {} GROUP BY metric ORDER BY metric",
        (start + 3000) * 1000
    );
    wait(
        &windows,
        json!([{"metric": "req_1s_count", "windows": 3, "total": 6.0}, {"metric": "req_1s_sum", "windows": 3, "total": 3.0}]),
    );
}

#[test]
fn sql_and_export_answer_hostile_input_with_clear_errors() {
    let server = Server::start("[lake]\ncommit_interval_ms = 200\n");
    let key = server.tenant_key("h");
    send_events(&server, &key, &[json!({"type": "t", "source_id": "s", "data": {"amount": 1}})], 1);
    let post = |path: &str, body: Vec<u8>, encoding: Option<&str>| {
        let mut r = server.http.post(server.url(path)).bearer_auth(&key).header("content-type", "application/json");
        if let Some(e) = encoding {
            r = r.header("content-encoding", e);
        }
        let r = r.body(body).send().unwrap_or_else(|e| panic!("{path}: {e}\n{}", server.server_log()));
        let status = r.status().as_u16();
        (status, r.json::<serde_json::Value>().unwrap_or_default())
    };
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gzip, &vec![b' '; 64 << 20]).unwrap();
    let bomb = gzip.finish().unwrap();
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_sql = format!("SELECT {}1{} AS x", "(".repeat(5000), ")".repeat(5000));
    // As many operators as a query may have, in the shapes that nest deepest; then one more.
    let max = strata_lake::sql::OPERATORS_MAX;
    let many_ors = format!("SELECT count(*) AS n FROM events WHERE {}", vec!["amount IS NULL"; max / 2].join(" OR "));
    let many_pluses = format!("SELECT {} AS x", vec!["1"; max + 1].join("+"));
    let too_many = format!("SELECT {} AS x", vec!["1"; max + 2].join("+"));
    for path in ["/query/v1/sql", "/query/v1/export"] {
        for (body, encoding, want, why) in [
            (bomb.clone(), Some("gzip"), 415, "content-encoding"),
            (vec![0xff, 0xfe, 0x00], None, 400, "body must be"),
            (b"{\"sql\": ".to_vec(), None, 400, "body must be"),
            (deep_json.clone().into_bytes(), None, 400, "body must be"),
            (format!("{{\"sql\": \"{}\"}}", "x".repeat(300 << 10)).into_bytes(), None, 413, "at most"),
        ] {
            let (status, v) = post(path, body, encoding);
            assert_eq!(status, want, "{path} {why}: {v}");
            assert!(v["error"].as_str().unwrap().contains(why), "{path}: {v}");
        }
    }
    // Queries that would exhaust a parser's stack or a planner: an error, not a crash.
    let run = |sql: &str| post("/query/v1/sql", serde_json::to_vec(&json!({"sql": sql})).unwrap(), None);
    assert_eq!(run(&many_ors), (200, json!({"columns": [{"name": "n", "type": "Int64"}], "rows": [{"n": 0}]})));
    assert_eq!(run(&many_pluses).1["rows"], json!([{"x": max + 1}]));
    let (status, v) = run(&too_many);
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("operators"), "{v}");
    let (status, v) = run(&deep_sql);
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("RecursionLimitExceeded"), "{v}");
    assert_eq!(run("SELECT '\u{0}\u{ffff}' AS x").0, 200);
    assert_eq!(sql(&server, &key, "SELECT count(*) AS n FROM events").1["rows"], json!([{"n": 1}]));
    assert!(server.is_up());
}

/// The lake in an S3 bucket (moto's S3-compatible server, from PyPI): the tables are written,
/// committed with the log positions they cover, compacted, queried and exported there, survive a
/// SIGKILL without a row lost or doubled, and Python's deltalake reads them from the bucket.
#[test]
fn the_lake_lives_in_an_s3_bucket() {
    let venv = lake_venv();
    let moto = common::Peer::start(
        "moto",
        &format!("{venv}/bin/moto_server"),
        &["-H", "127.0.0.1", "-p", "{port}"],
        "/",
        "scripts/install-lake-readers.sh",
    );
    let http = reqwest::blocking::Client::new();
    assert_eq!(http.put(moto.url("/strata-lake")).send().unwrap().status(), 200, "the bucket is made");
    let endpoint = moto.url("");
    let mut server = Server::start(&format!(
        "[lake]\nurl = \"s3://strata-lake/tables\"\ncommit_interval_ms = 200\ncompact_interval_ms = 300\n\
         compact_min_files = 2\n\
         [lake.storage]\naws_endpoint = \"{endpoint}\"\naws_region = \"us-east-1\"\n\
         aws_access_key_id = \"strata\"\naws_secret_access_key = \"strata\"\naws_allow_http = \"true\"\n"
    ));
    let key = server.tenant_key("s3");
    let batch = |n: usize| -> Vec<serde_json::Value> {
        (0..10)
            .map(|i| {
                let id = n * 10 + i;
                json!({"type": "order", "source_id": "shop", "event_id": format!("e{id}"), "data": {"amount": id}})
            })
            .collect()
    };
    for n in 0..3 {
        send_events(&server, &key, &batch(n), (n + 1) * 10);
    }
    // A SIGKILL, then more events: the sink resumes from the positions its last commit in the
    // bucket recorded.
    server.kill();
    server.spawn();
    for n in 3..6 {
        send_events(&server, &key, &batch(n), (n + 1) * 10);
    }
    let (status, v) =
        sql(&server, &key, "SELECT count(*) AS n, count(DISTINCT event_id) AS d, sum(amount) AS s FROM events");
    assert_eq!((status, v["rows"].clone()), (200, json!([{"n": 60, "d": 60, "s": 1770}])), "{v}");
    // Compaction rewrites the small files in the bucket; the rows stay as they were.
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.metric("strata_lake_compactions_total{table=\"events\"}").unwrap_or(0.0) < 1.0 {
        assert!(Instant::now() < deadline, "no compaction of the table in the bucket");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, v) = sql(&server, &key, "SELECT count(*) AS n, sum(amount) AS s FROM events");
    assert_eq!(v["rows"], json!([{"n": 60, "s": 1770}]), "{v}");
    // Export pointers name the objects in the bucket.
    let r = server
        .http
        .post(server.url("/query/v1/export"))
        .bearer_auth(&key)
        .json(&json!({"table": "events"}))
        .send()
        .unwrap();
    let v: serde_json::Value = r.json().unwrap();
    let files = v["files"].as_array().unwrap();
    assert!(!files.is_empty(), "{v}");
    for f in files {
        assert!(f["uri"].as_str().unwrap().starts_with("s3://strata-lake/tables/events/tenant=s3/dt="), "{v}");
    }
    assert!(!server.data_dir().join("lake").exists(), "nothing of the lake is on the local disk");
    // Another reader finds the same rows in the bucket, at rest: the server stops first.
    let status = server.terminate();
    assert!(status.success(), "{status}");
    let envs = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "strata"),
        ("AWS_SECRET_ACCESS_KEY", "strata"),
        ("AWS_ALLOW_HTTP", "true"),
    ];
    let readers = read_table("s3://strata-lake/tables/events", "s3", &envs);
    assert_eq!(readers["deltalake"], json!([60, 1770, 60]), "{readers}");
}
