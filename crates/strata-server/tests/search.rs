//! Log search end to end against the real binary: queries, filters, order and cursors; tenant
//! isolation and bad queries; live tail; and exactly-once indexing across SIGKILLs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{NumberedClients, Server, now_ms};
use serde_json::{Value, json};

fn ingest(s: &Server, key: &str, lines: &[Value]) {
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let r = s
        .http
        .post(s.url("/ingest/v1/logs"))
        .bearer_auth(key)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn search_raw(s: &Server, key: &str, params: &[(&str, String)]) -> (u16, Value) {
    let r = s.http.get(s.url("/query/v1/logs/search")).bearer_auth(key).query(params).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap())
}

fn search(s: &Server, key: &str, params: &[(&str, String)]) -> Value {
    let (status, v) = search_raw(s, key, params);
    assert_eq!(status, 200, "{params:?}: {v}");
    v
}

fn messages(v: &Value) -> Vec<String> {
    v["hits"].as_array().unwrap().iter().map(|h| h["message"].as_str().unwrap().to_string()).collect()
}

/// Waits until a search finds `n` lines (indexing commits about once a second).
fn wait_for_hits(s: &Server, key: &str, params: &[(&str, String)], n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = search(s, key, params)["hits"].as_array().unwrap().len();
        if got == n {
            return;
        }
        assert!(Instant::now() < deadline, "found {got} of {n} lines for {params:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn p(k: &'static str, v: impl ToString) -> (&'static str, String) {
    (k, v.to_string())
}

#[test]
fn lines_are_found_by_words_fields_and_time_in_order_with_cursors() {
    let s = Server::start("");
    let key = s.tenant_key("acme");
    let t0 = now_ms() - 30 * 60 * 1000;
    let line = |i: i64, source: &str, level: &str, run: &str, msg: &str, attrs: Value| {
        json!({"timestamp": t0 + i * 1000, "source_id": source, "level": level, "run_id": run, "message": msg,
               "attributes": attrs})
    };
    ingest(
        &s,
        &key,
        &[
            line(0, "web-1", "info", "r1", "GET /index served in 12 ms", json!({"user_id": 7})),
            line(1, "web-1", "error", "r1", "disk full on /dev/sda while writing", json!({"user_id": 42})),
            line(2, "web-2", "warn", "r2", "timeout talking to the database", json!({"user_id": 42})),
            line(3, "db-1", "error", "r2", "the disk is not full yet", json!({})),
            line(4, "web-2", "info", "r2", "timed out retry succeeded", json!({"region": "eu"})),
            line(5, "db-1", "debug", "r3", "checkpoint complete", json!({})),
        ],
    );
    let all = [p("from", t0 - 1000), p("limit", 1000)];
    wait_for_hits(&s, &key, &all, 6);
    let q = |query: &str, extra: &[(&'static str, String)]| {
        let mut params = vec![p("q", query), p("from", t0 - 1000)];
        params.extend_from_slice(extra);
        messages(&search(&s, &key, &params))
    };
    // Newest first by default.
    assert_eq!(q("", &[])[0], "checkpoint complete");
    assert_eq!(q("disk", &[]), ["the disk is not full yet", "disk full on /dev/sda while writing"]);
    assert_eq!(q("\"disk full\"", &[]), ["disk full on /dev/sda while writing"], "a phrase");
    assert_eq!(q("disk AND NOT yet", &[]), ["disk full on /dev/sda while writing"]);
    assert_eq!(q("checkpoint OR timeout", &[]), ["checkpoint complete", "timeout talking to the database"]);
    assert_eq!(q("NOT disk", &[]).len(), 4);
    assert_eq!(q("level:warn", &[]), ["timeout talking to the database"]);
    assert_eq!(q("source_id:db-1 AND disk", &[]), ["the disk is not full yet"]);
    assert_eq!(q("tim*", &[]), ["timed out retry succeeded", "timeout talking to the database"], "a prefix");
    assert_eq!(
        q("attributes.user_id:42", &[]),
        ["timeout talking to the database", "disk full on /dev/sda while writing"]
    );
    assert_eq!(q("attributes.region:eu", &[]), ["timed out retry succeeded"]);
    assert_eq!(q("DISK", &[]).len(), 2, "the message is case-insensitive");
    // A bare term searches the message and the keyword fields.
    assert_eq!(q("error", &[]), ["the disk is not full yet", "disk full on /dev/sda while writing"], "by level");
    assert_eq!(q("web-2", &[]), ["timed out retry succeeded", "timeout talking to the database"], "by source");
    assert_eq!(q("r3 OR warn", &[]), ["checkpoint complete", "timeout talking to the database"], "run and level");
    assert_eq!(q("error AND yet", &[]), ["the disk is not full yet"], "a level and a word of the message");
    // Filters, alone and together, one value or several.
    assert_eq!(q("", &[p("source_id", "web-2")]), ["timed out retry succeeded", "timeout talking to the database"]);
    assert_eq!(q("", &[p("source_id", "web-1,db-1"), p("level", "error")]).len(), 2);
    assert_eq!(q("", &[p("run_id", "r3")]), ["checkpoint complete"]);
    assert_eq!(q("", &[p("level", "ERROR")]).len(), 2);
    // Time range: [from, to).
    let mid = vec![p("q", ""), p("from", t0 + 1000), p("to", t0 + 3000)];
    assert_eq!(
        messages(&search(&s, &key, &mid)),
        ["timeout talking to the database", "disk full on /dev/sda while writing"]
    );
    let rfc = search(&s, &key, &[p("from", "2000-01-01T00:00:00Z"), p("to", "2000-01-02T00:00:00Z")]);
    assert!(rfc["hits"].as_array().unwrap().is_empty());
    // Hits carry every field and a highlight of the matching words.
    let hit = &search(&s, &key, &[p("q", "\"disk full\""), p("from", t0 - 1000)])["hits"][0];
    assert_eq!(hit["source_id"], "web-1");
    assert_eq!(hit["level"], "error");
    assert_eq!(hit["run_id"], "r1");
    assert_eq!(hit["attributes"]["user_id"], 42);
    assert!(hit["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(hit["highlight"].as_str().unwrap().contains("<b>disk</b> <b>full</b>"), "{hit}");
    assert!(hit["took_ms"].is_null());
    // Relevance order puts the line where both words occur before lines with one.
    let rel = q("disk OR checkpoint OR full", &[p("sort", "relevance")]);
    assert_eq!(rel.len(), 3);

    // Cursors: 25 lines of one source in pages of 10, with new lines arriving between pages.
    let pager: Vec<Value> = (0..25)
        .map(|i| json!({"timestamp": t0 + 100_000 + i, "source_id": "pager", "message": format!("page line {i}")}))
        .collect();
    ingest(&s, &key, &pager);
    let base = vec![p("source_id", "pager"), p("from", t0 - 1000), p("limit", 10)];
    wait_for_hits(&s, &key, &[p("source_id", "pager"), p("from", t0 - 1000), p("limit", 100)], 25);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0..3 {
        let mut params = base.clone();
        if let Some(c) = &cursor {
            params.push(p("cursor", c));
        }
        let v = search(&s, &key, &params);
        seen.extend(messages(&v));
        cursor = v["next_cursor"].as_str().map(str::to_string);
        if page == 0 {
            // Newer lines of the same source arrive while the user reads page one.
            let newer: Vec<Value> =
                (0..5).map(|i| json!({"source_id": "pager", "message": format!("late line {i}")})).collect();
            ingest(&s, &key, &newer);
            std::thread::sleep(Duration::from_millis(1500));
        }
    }
    let want: Vec<String> = (0..25).rev().map(|i| format!("page line {i}")).collect();
    assert_eq!(seen, want, "three pages continue exactly where each stopped");
    assert!(cursor.is_none(), "the last page has no next cursor");

    // Histogram of matching lines per minute.
    let h: Value = s
        .http
        .get(s.url("/query/v1/logs/histogram"))
        .bearer_auth(&key)
        .query(&[
            p("q", "disk OR timeout OR timed"),
            p("from", t0 - 60_000),
            p("to", t0 + 120_000),
            p("interval", "1m"),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(h["interval_ms"], 60_000);
    let total: u64 = h["buckets"].as_array().unwrap().iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 4, "{h}");
}

#[test]
fn tenants_never_see_each_other_and_bad_queries_are_explained() {
    let s = Server::start("[search]\ntail_connections_per_tenant_max = 2\n");
    let a = s.tenant_key("alpha");
    let b = s.tenant_key("beta");
    ingest(&s, &a, &[json!({"source_id": "shared-host", "message": "secret of alpha"})]);
    ingest(&s, &b, &[json!({"source_id": "shared-host", "message": "note of beta"})]);
    wait_for_hits(&s, &a, &[], 1);
    wait_for_hits(&s, &b, &[], 1);
    assert_eq!(messages(&search(&s, &a, &[])), ["secret of alpha"]);
    assert_eq!(messages(&search(&s, &b, &[])), ["note of beta"]);
    assert!(messages(&search(&s, &b, &[p("q", "secret")])).is_empty());
    assert!(messages(&search(&s, &b, &[p("source_id", "shared-host"), p("q", "alpha")])).is_empty());

    let bad = |params: &[(&'static str, String)], want: &str| {
        let (status, v) = search_raw(&s, &a, params);
        assert_eq!(status, 400, "{params:?}: {v}");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains(want), "{params:?}: {msg}");
    };
    bad(&[p("q", "error AND (disk")], "query syntax error at position 15");
    bad(&[p("q", "message:\"unclosed")], "query syntax error at position");
    bad(&[p("q", "nosuchfield:x")], "nosuchfield");
    bad(&[p("q", format!("{}*", "a".repeat(300)))], "more than the limit of 256");
    bad(&[p("q", (0..70).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" OR "))], "more than the limit of 64");
    bad(&[p("limit", 5000)], "limit must be 1 to 1000");
    bad(&[p("limit", 0)], "limit must be 1 to 1000");
    bad(&[p("from", 2000), p("to", 1000)], "\"from\" must be before \"to\"");
    bad(&[p("from", "yesterday")], "parameter \"from\"");
    bad(&[p("from", "yesterday")], "nor integer Unix milliseconds");
    bad(&[p("q", "error AND")], "query syntax error at position 6: AND at the end of the query");
    bad(&[p("sourceid", "web-1")], "parameter \"sourceid\" is not known; this endpoint takes q, source_id");
    search(&s, &a, &[p("_", "1700000000000")]);
    // Nesting that the grammar would recurse through until the stack overflowed (which aborts
    // the process) is refused first.
    bad(
        &[p("q", format!("{}a{}", "(".repeat(5000), ")".repeat(5000)))],
        "parentheses nest deeper than the limit of 32",
    );
    bad(&[p("q", format!("{}a", "NOT ".repeat(2000)))], "more than 64 NOT operators");
    bad(&[p("cursor", "garbage")], "cursor \"garbage\" is not valid");
    // A relevance cursor deeper than its window is refused, not ranked: one ten billion hits deep
    // asked for 80 GB and aborted the server, one near 2^64 overflowed.
    for deep in ["r10000", "r10000000000", "r18446744073709551000"] {
        bad(&[p("sort", "relevance"), p("cursor", deep)], "pages through its best 10000 hits");
    }
    bad(&[p("sort", "relevance"), p("cursor", "r18446744073709551616")], "is not valid");
    let (status, v) = search_raw(&s, &a, &[p("sort", "relevance"), p("cursor", "r9999"), p("limit", "1000")]);
    assert_eq!(status, 200, "{v}");
    assert!(v["next_cursor"].is_null(), "the window's last page has no next cursor: {v}");
    bad(&[p("sort", "random")], "sort must be");
    let r = s.http.get(s.url("/query/v1/logs/histogram")).bearer_auth(&a).query(&[p("interval", "1")]).send().unwrap();
    assert_eq!(r.status(), 400, "a millisecond interval over an hour is too many buckets");
    let r = s.http.get(s.url("/query/v1/logs/histogram")).bearer_auth(&a).query(&[p("limit", "5")]).send().unwrap();
    assert_eq!(r.status(), 400, "histograms take no limit");
    let v: Value = r.json().unwrap();
    assert!(v["error"].as_str().unwrap().contains("parameter \"limit\" is not known"), "{v}");
    let r = s.http.get(s.url("/query/v1/logs/tail")).bearer_auth(&a).query(&[p("from", "0")]).send().unwrap();
    assert_eq!(r.status(), 400, "a tail has no time range");
    let r = s.http.get(s.url("/query/v1/logs/search")).send().unwrap();
    assert_eq!(r.status(), 401);
    let r = s.http.post(s.url("/query/v1/logs/search")).bearer_auth(&a).body("{not json").send().unwrap();
    assert_eq!(r.status(), 400);
    // POST with a JSON body works like GET.
    let v: Value = s
        .http
        .post(s.url("/query/v1/logs/search"))
        .bearer_auth(&a)
        .json(&json!({"q": "secret", "source_id": ["shared-host"], "limit": 5}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(messages(&v), ["secret of alpha"]);

    // Tail connections are limited per tenant, and a tail sees only its own tenant.
    let mut tails: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut t = open_tail(&s, &b, "");
            let head = read_head(&mut t);
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(head.contains("text/event-stream"), "{head}");
            t
        })
        .collect();
    let mut third = open_tail(&s, &b, "");
    let mut head = String::new();
    third.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = third.read_to_string(&mut head);
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    ingest(&s, &a, &[json!({"source_id": "shared-host", "message": "another secret of alpha"})]);
    ingest(&s, &b, &[json!({"source_id": "shared-host", "message": "marker of beta"})]);
    let events = read_events(&mut tails[0], 1, Duration::from_secs(10));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1["message"], "marker of beta");
    assert!(s.is_up());
}

fn open_tail(s: &Server, key: &str, query: &str) -> TcpStream {
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let q: String = query.bytes().map(|b| format!("%{b:02X}")).collect();
    write!(c, "GET /query/v1/logs/tail?q={q} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    c
}

/// Reads the status line and headers of a streaming answer.
fn read_head(c: &mut TcpStream) -> String {
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && c.read(&mut byte).unwrap() == 1 {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Reads server-sent events until `n` of them arrived or the timeout passed: (event, data).
fn read_events(c: &mut TcpStream, n: usize, timeout: Duration) -> Vec<(String, Value)> {
    c.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let deadline = Instant::now() + timeout;
    let mut reader = BufReader::new(c.try_clone().unwrap());
    let mut out = Vec::new();
    let mut event = String::new();
    let mut line = String::new();
    while out.len() < n && Instant::now() < deadline {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {
                let l = line.trim_end();
                if let Some(e) = l.strip_prefix("event: ") {
                    event = e.to_string();
                } else if let Some(d) = l.strip_prefix("data: ")
                    && let Ok(v) = serde_json::from_str::<Value>(d)
                {
                    out.push((event.clone(), v));
                }
            }
            Err(_) => continue,
        }
    }
    out
}

#[test]
fn tail_streams_new_matching_lines_in_order_and_a_stalled_reader_is_told_what_it_lost() {
    let s = Server::start("[search]\ntail_buffer_lines = 20\n");
    let key = s.tenant_key("acme");
    ingest(&s, &key, &[json!({"source_id": "before", "message": "important but sent before the tail"})]);
    let mut tail = open_tail(&s, &key, "important");
    assert!(read_head(&mut tail).starts_with("HTTP/1.1 200"));
    let mut stalled = open_tail(&s, &key, "");
    assert!(read_head(&mut stalled).starts_with("HTTP/1.1 200"));
    std::thread::sleep(Duration::from_millis(300));
    let mut acked = Vec::new();
    for i in 0..10 {
        let lines = [
            json!({"source_id": "app", "message": format!("important event {i}")}),
            json!({"source_id": "app", "message": format!("noise {i}")}),
        ];
        ingest(&s, &key, &lines);
        acked.push(Instant::now());
        std::thread::sleep(Duration::from_millis(50));
    }
    let events = read_events(&mut tail, 10, Duration::from_secs(10));
    let received = Instant::now();
    let got: Vec<String> = events.iter().map(|(_, v)| v["message"].as_str().unwrap().to_string()).collect();
    assert_eq!(got, (0..10).map(|i| format!("important event {i}")).collect::<Vec<_>>(), "in order, only matches");
    // The last line arrived within a second of its acknowledgement (the tail polls every 100 ms).
    let lag = received.duration_since(*acked.last().unwrap());
    assert!(lag < Duration::from_secs(1), "last line arrived {lag:?} after its acknowledgement");

    // The stalled reader has not read a byte. Ingest goes on regardless.
    let big = "x".repeat(4000);
    let started = Instant::now();
    for round in 0..20 {
        let lines: Vec<Value> =
            (0..100).map(|i| json!({"source_id": "bulk", "message": format!("bulk {round} {i} {big}")})).collect();
        ingest(&s, &key, &lines);
    }
    eprintln!("2,000 lines of 4 KB ingested in {:?} with a stalled tail open", started.elapsed());
    std::thread::sleep(Duration::from_millis(500));
    let events = read_events(&mut stalled, 10_000, Duration::from_secs(5));
    let dropped: u64 = events.iter().filter(|(e, _)| e == "dropped").map(|(_, v)| v["dropped"].as_u64().unwrap()).sum();
    assert!(dropped > 0, "the stalled reader was told it lost lines ({} events read)", events.len());
    let lines = events.iter().filter(|(e, _)| e == "line").count() as u64;
    // 20 lines before the bulk, 2,000 in it: each one either reached the reader or was counted.
    assert_eq!(lines + dropped, 2020, "every line is either delivered or counted as dropped: {lines} + {dropped}");
}

#[test]
fn sigkill_during_ingest_leaves_each_acknowledged_line_searchable_exactly_once() {
    let mut server = Server::start("[search]\ncommit_interval_ms = 300\n");
    let key = server.tenant_key("crash");
    let clients = NumberedClients::start(
        &server,
        &key,
        "logs",
        3,
        20,
        2,
        |c, n| json!({"source_id": format!("s{c}"), "message": format!("c{c}x{n}")}),
    );
    for i in 0..10 {
        std::thread::sleep(Duration::from_millis(200 + (i * 37) % 300));
        server.kill();
        server.spawn();
    }
    std::thread::sleep(Duration::from_millis(300));
    let acked: BTreeSet<String> = clients.stop().into_iter().map(|(c, n)| format!("c{c}x{n}")).collect();
    // Wait for the indexer to catch up with the log.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let groups = server.admin_get("/admin/v1/consumer-groups");
        let search = groups["groups"].as_array().unwrap().iter().find(|g| g["group"] == "search").cloned();
        let caught_up = search.is_some_and(|g| {
            g["partitions"].as_array().unwrap().iter().filter(|p| p["topic"] == "logs").all(|p| p["lag"] == 0)
        });
        if caught_up {
            break;
        }
        assert!(Instant::now() < deadline, "the indexer did not catch up: {groups}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Page through everything the tenant has.
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut params = vec![p("from", 0), p("limit", 1000)];
        if let Some(c) = &cursor {
            params.push(p("cursor", c));
        }
        let v = search(&server, &key, &params);
        for m in messages(&v) {
            *counts.entry(m).or_default() += 1;
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert!(acked.len() >= 1000, "too few acknowledged lines to mean anything: {}", acked.len());
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(dups.is_empty(), "lines found more than once: {dups:?}");
    let missing: Vec<_> = acked.iter().filter(|m| !counts.contains_key(*m)).take(5).collect();
    assert!(missing.is_empty(), "acknowledged lines not found: {missing:?}");
    let in_log: u64 = server.admin_get("/admin/v1/topics")["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "logs")
        .unwrap()["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["latest_offset"].as_u64().unwrap())
        .sum();
    assert_eq!(counts.len() as u64, in_log, "every line of the log is indexed once");
    eprintln!("{} acknowledged, {} in the log and the index", acked.len(), in_log);
}

#[test]
fn retention_deletes_whole_old_days_per_tenant_and_search_is_in_the_metrics() {
    let mut s = Server::start("[log]\nretention_check_interval_ms = 300\n[search]\nretention_days = 90\n");
    let long = s.tenant_key("long");
    let short = s.tenant_key("short");
    let day_ms = 86_400_000;
    let now = now_ms();
    for key in [&long, &short] {
        ingest(
            &s,
            key,
            &[
                json!({"timestamp": now - 100 * day_ms, "source_id": "a", "message": "ancient"}),
                json!({"timestamp": now - 10 * day_ms, "source_id": "a", "message": "recent"}),
                json!({"timestamp": now, "source_id": "a", "message": "today"}),
            ],
        );
    }
    let everything = [p("from", 0), p("limit", 100)];
    let wait_for = |s: &Server, key: &str, want: &[&str]| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = messages(&search(s, key, &everything));
            if got == want {
                return;
            }
            assert!(Instant::now() < deadline, "got {got:?}, want {want:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // Lines older than the retention are not indexed at all.
    wait_for(&s, &long, &["today", "recent"]);
    wait_for(&s, &short, &["today", "recent"]);
    let days = |s: &Server, tenant: &str| -> usize {
        std::fs::read_dir(s.data_dir().join("search").join(tenant))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_dir())
            .count()
    };
    assert_eq!((days(&s, "long"), days(&s, "short")), (2, 2));

    let _tail = open_tail(&s, &long, "");
    std::thread::sleep(Duration::from_millis(500));
    let text = s.http.get(s.url("/metrics")).send().unwrap().text().unwrap();
    for want in [
        r#"strata_search_documents_indexed_total{tenant="long"} 2"#,
        r#"strata_search_discarded_total{reason="expired"} 2"#,
        "strata_search_commit_seconds_count",
        r#"strata_search_index_bytes{tenant="long"}"#,
        r#"strata_search_request_seconds_bucket{endpoint="search",status="200""#,
        r#"strata_search_tail_connections{tenant="long"} 1"#,
        r#"strata_consumer_lag_records{group="search",topic="logs",partition="0"} 0"#,
    ] {
        assert!(text.contains(want), "missing {want}");
    }

    // A shorter retention for one tenant removes its older day directory whole.
    assert!(s.terminate().success());
    s.extra_config.push_str("[search.tenant_retention_days]\nshort = 2\n");
    s.spawn();
    wait_for(&s, &short, &["today"]);
    wait_for(&s, &long, &["today", "recent"]);
    assert_eq!((days(&s, "long"), days(&s, "short")), (2, 1));
}
