//! The native metrics query end to end against the real binary: points ingested as JSON and by
//! Prometheus remote write come back with exact values, downsampled, grouped, filtered and paged;
//! other tenants see nothing; bad parameters get 400 naming the parameter.

mod common;

use std::time::{Duration, Instant};

use common::{Server, now_ms};
use prost::Message;
use serde_json::{Value, json};
use strata_gateway::remote_write::proto::{Label, Sample, TimeSeries, WriteRequest};

const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Labels and samples of one series.
type Series<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

fn remote_write(s: &Server, key: &str, series: &[Series]) {
    let req = WriteRequest {
        timeseries: series
            .iter()
            .map(|(labels, samples)| TimeSeries {
                labels: labels.iter().map(|(n, v)| Label { name: n.to_string(), value: v.to_string() }).collect(),
                samples: samples.iter().map(|&(timestamp, value)| Sample { value, timestamp }).collect(),
            })
            .collect(),
    };
    let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap();
    let (status, text) = s.remote_write(key, body);
    assert_eq!(status, 204, "{text}");
}

fn query(s: &Server, key: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let r = s.http.get(s.url("/query/v1/metrics")).bearer_auth(key).query(params).send().unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn ok(s: &Server, key: &str, params: &[(&str, &str)]) -> Value {
    let (st, v) = query(s, key, params);
    assert_eq!(st, 200, "{params:?}: {v}");
    v
}

/// `labels => offset:value ...`, one line per series, `__name__` left out and timestamps as
/// seconds after `t0`, for compact expectations.
fn render(v: &Value, t0: i64) -> Vec<String> {
    v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels: Vec<String> = s["labels"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(n, _)| *n != "__name__")
                .map(|(n, v)| format!("{n}={}", v.as_str().unwrap()))
                .collect();
            let points: Vec<String> = s["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| format!("{}s:{}", (p[0].as_i64().unwrap() - t0) / 1000, p[1].as_f64().unwrap()))
                .collect();
            format!("{} => {}", labels.join(","), points.join(" ")).trim_start().to_string()
        })
        .collect()
}

/// `range` followed by `extra`.
fn with<'a>(range: &[(&'a str, &'a str)], extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    range.iter().chain(extra).copied().collect()
}

fn points(v: &Value) -> usize {
    v["series"].as_array().unwrap().iter().map(|s| s["points"].as_array().unwrap().len()).sum()
}

/// Waits (bounded) until the store has consumed what was written: `n` raw points.
fn wait_points(s: &Server, key: &str, params: &[(&str, &str)], n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = ok(s, key, params);
        if points(&v) == n {
            return;
        }
        assert!(Instant::now() < deadline, "{params:?}: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn queries_answer_exact_points_and_refuse_bad_parameters() {
    let s = Server::start("");
    let key = s.tenant_key("acme");
    let other = s.tenant_key("other");
    // A recent, 10-minute-aligned start, so that every step below divides it; remote write
    // refuses samples far from now.
    let t0 = (now_ms() - 40 * 60_000) / 600_000 * 600_000;
    let (from, to) = (t0.to_string(), (t0 + 119_999).to_string());
    let range = [("from", from.as_str()), ("to", to.as_str())];

    let point = |host: &str, dc: &str, offset_s: i64, value: Value| {
        json!({"name": "cpu", "labels": {"host": host, "dc": dc}, "value": value,
               "timestamp": t0 + offset_s * 1000, "source_id": host})
    };
    s.ingest_metrics(
        &key,
        json!([
            point("a", "x", 0, json!(1)),
            point("a", "x", 20, json!(2)),
            point("a", "x", 40, json!(3)),
            point("a", "x", 60, json!(4)),
            point("b", "x", 5, json!(10)),
            point("b", "x", 30, json!(35)),
            point("b", "x", 65, json!(104)),
            point("c", "y", 10, json!(100)),
            point("c", "y", 70, json!("NaN")),
            point("c", "y", 75, json!(200)),
        ]),
    );
    let stale = f64::from_bits(STALE_NAN_BITS);
    remote_write(
        &s,
        &key,
        &[
            (
                &[("__name__", "rw_gauge"), ("job", "api"), ("instance", "h1")],
                &[(t0, 1.0), (t0 + 15_000, 3.0), (t0 + 30_000, stale), (t0 + 45_000, 5.0)],
            ),
            (&[("__name__", "rw_gauge"), ("job", "api"), ("instance", "h2")], &[(t0, 10.0), (t0 + 45_000, 20.0)]),
        ],
    );
    let paged: Vec<Value> = (0..25)
        .map(|i| {
            json!({"name": "paged", "labels": {"i": format!("{i:02}")}, "value": i, "timestamp": t0, "source_id": "p"})
        })
        .collect();
    s.ingest_metrics(&key, Value::Array(paged));
    // NaN is no sample, so 9 of cpu's 10 points and 5 of rw_gauge's 6 come back.
    wait_points(&s, &key, &with(&range, &[("name", "cpu"), ("step", "1s")]), 9);
    wait_points(&s, &key, &with(&range, &[("name", "rw_gauge"), ("step", "1s")]), 5);
    wait_points(&s, &key, &with(&range, &[("name", "paged"), ("limit", "10000")]), 25);

    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: &[Case] = &[
        // Raw series: one sample per 1 s bucket.
        (
            &[("name", "cpu"), ("step", "1000")],
            &[
                "dc=x,host=a => 0s:1 20s:2 40s:3 60s:4",
                "dc=x,host=b => 5s:10 30s:35 65s:104",
                "dc=y,host=c => 10s:100 75s:200",
            ],
        ),
        // Downsampling: the average per 60 s bucket.
        (
            &[("name", "cpu"), ("step", "60000")],
            &["dc=x,host=a => 0s:2 60s:4", "dc=x,host=b => 0s:22.5 60s:104", "dc=y,host=c => 0s:100 60s:200"],
        ),
        (
            &[("name", "cpu"), ("step", "1m"), ("agg", "max")],
            &["dc=x,host=a => 0s:3 60s:4", "dc=x,host=b => 0s:35 60s:104", "dc=y,host=c => 0s:100 60s:200"],
        ),
        // Grouped: sum of each series' bucket average; avg, max and p99 over every sample.
        (
            &[("name", "cpu"), ("step", "1m"), ("group_by", "dc"), ("agg", "sum")],
            &["dc=x => 0s:24.5 60s:108", "dc=y => 0s:100 60s:200"],
        ),
        (
            &[("name", "cpu"), ("step", "1m"), ("group_by", "dc"), ("agg", "avg")],
            &["dc=x => 0s:10.2 60s:54", "dc=y => 0s:100 60s:200"],
        ),
        (&[("name", "cpu"), ("step", "1m"), ("group_by", "dc")], &["dc=x => 0s:10.2 60s:54", "dc=y => 0s:100 60s:200"]),
        (
            &[("name", "cpu"), ("step", "1m"), ("group_by", "dc"), ("agg", "max")],
            &["dc=x => 0s:35 60s:104", "dc=y => 0s:100 60s:200"],
        ),
        // [1,2,3,10,35]: rank 3.96 -> 10 + 25 * 0.96; [4,104]: rank 0.99 -> 4 + 100 * 0.99.
        (
            &[("name", "cpu"), ("step", "1m"), ("group_by", "dc"), ("agg", "p99")],
            &["dc=x => 0s:34 60s:103", "dc=y => 0s:100 60s:200"],
        ),
        (
            &[("name", "cpu"), ("step", "1m"), ("group_by", "dc"), ("agg", "count")],
            &["dc=x => 0s:5 60s:2", "dc=y => 0s:1 60s:1"],
        ),
        // Label filters.
        (&[("name", "cpu"), ("step", "2m"), ("labels", "host:a")], &["dc=x,host=a => 0s:2.5"]),
        (&[("name", "cpu"), ("step", "2m"), ("labels", "dc!=x")], &["dc=y,host=c => 0s:150"]),
        (
            &[("name", "cpu"), ("step", "2m"), ("labels", "host=~a|b"), ("labels", "dc=x")],
            &["dc=x,host=a => 0s:2.5", "dc=x,host=b => 0s:49.666666666666664"],
        ),
        (&[("name", "cpu"), ("step", "2m"), ("labels", "host!~a|b")], &["dc=y,host=c => 0s:150"]),
        // Remote write: the staleness marker is no sample.
        (
            &[("name", "rw_gauge"), ("step", "15s")],
            &["instance=h1,job=api => 0s:1 15s:3 45s:5", "instance=h2,job=api => 0s:10 45s:20"],
        ),
        (&[("name", "rw_gauge"), ("step", "1m")], &["instance=h1,job=api => 0s:3", "instance=h2,job=api => 0s:15"]),
        (&[("name", "rw_gauge"), ("step", "1m"), ("group_by", "job"), ("agg", "sum")], &["job=api => 0s:18"]),
        (&[("name", "rw_gauge"), ("step", "1m"), ("group_by", "job"), ("agg", "count")], &["job=api => 0s:5"]),
        (&[("name", "nothing"), ("step", "1m")], &[]),
    ];
    for (params, want) in cases {
        let v = ok(&s, &key, &with(&range, params));
        assert_eq!(render(&v, t0), *want, "{params:?}");
        assert_eq!(v["next_cursor"], Value::Null);
        assert!(v["took_ms"].is_u64(), "{v}");
    }
    // The answer's shape, and the step chosen by default: 2 minutes give 500 ms buckets.
    let v = ok(&s, &key, &with(&range, &[("name", "cpu"), ("labels", "host:c")]));
    assert_eq!(v["step_ms"], 500);
    assert_eq!(v["series"][0]["labels"], json!({"__name__": "cpu", "dc": "y", "host": "c"}));
    assert_eq!(v["series"][0]["points"], json!([[t0 + 10_000, 100.0], [t0 + 75_000, 200.0]]));
    // Without from and to: the last hour, in 15 s steps.
    let v = ok(&s, &key, &[("name", "cpu"), ("labels", "host:c")]);
    assert_eq!(v["step_ms"], 15_000);

    // Pagination: 25 series in pages of 10, in label order, none lost or repeated.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut params = with(&range, &[("name", "paged"), ("limit", "10")]);
        if let Some(c) = &cursor {
            params.push(("cursor", c));
        }
        let v = ok(&s, &key, &params);
        pages += 1;
        for series in v["series"].as_array().unwrap() {
            seen.push(series["labels"]["i"].as_str().unwrap().to_string());
            assert_eq!(series["points"].as_array().unwrap().len(), 1);
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(pages < 10, "{v}");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..25).map(|i| format!("{i:02}")).collect::<Vec<_>>());

    // POST with a JSON body and with a form, as the GET.
    let body = json!({"name": "cpu", "from": t0, "to": t0 + 119_999, "step": "1m", "group_by": ["dc"], "agg": "sum"});
    let v: Value =
        s.http.post(s.url("/query/v1/metrics")).bearer_auth(&key).json(&body).send().unwrap().json().unwrap();
    assert_eq!(render(&v, t0), ["dc=x => 0s:24.5 60s:108", "dc=y => 0s:100 60s:200"]);
    let form = format!("name=cpu&from={t0}&to={to}&step=2m&labels=host%3Da");
    let v: Value = s
        .http
        .post(s.url("/query/v1/metrics"))
        .bearer_auth(&key)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(render(&v, t0), ["dc=x,host=a => 0s:2.5"]);

    // Tenants are apart.
    let v = ok(&s, &other, &with(&range, &[("name", "cpu"), ("step", "1s")]));
    assert_eq!(v["series"], json!([]));

    // Bad parameters: 400 naming the parameter and the value.
    let far = (t0 + 3_600_000).to_string();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("step", "1m")], r#"parameter "name" is required"#),
        (&[("name", "cpu"), ("step", "abc")], r#"step "abc" must be"#),
        (&[("name", "cpu"), ("step", "0")], r#"step "0" must be"#),
        (&[("name", "cpu"), ("from", &from), ("to", &far), ("step", "1")], "step 1ms gives 3600001 points per series"),
        (&[("name", "cpu"), ("cursor", "not-a-cursor")], r#"cursor "not-a-cursor" is not valid"#),
        (&[("name", "cpu"), ("from", &to), ("to", &from)], &format!("from {to} is after to {from}")),
        (&[("name", "cpu"), ("from", "yesterday")], r#"from "yesterday" must be"#),
        (&[("name", "cpu"), ("agg", "median")], r#"agg "median" must be"#),
        (&[("name", "cpu"), ("limit", "0")], r#"limit "0" must be"#),
        (&[("name", "cpu"), ("labels", "host")], r#"labels "host" must be"#),
        (&[("name", "cpu"), ("labels", "host=~(")], r#"labels "host=~(""#),
        (&[("name", "cpu"), ("group_by", "1x")], r#"group_by "1x" is not"#),
        (&[("name", "cpu-1")], r#"name "cpu-1" is not a valid metric name"#),
        (&[("name", "cpu"), ("lables", "host:a")], r#"parameter "lables" is not known"#),
    ];
    for (params, want) in cases {
        let (st, v) = query(&s, &key, params);
        assert_eq!(st, 400, "{params:?}: {v}");
        let msg = v["error"].as_str().unwrap_or_else(|| panic!("{params:?}: {v}"));
        assert!(msg.contains(want), "{params:?}: {msg}");
    }
    assert!(
        query(&s, &key, &[("name", "cpu"), ("step", "1"), ("from", &from), ("to", &far)]).1["error"]
            .as_str()
            .unwrap()
            .contains("points_max 11000")
    );
    // A cursor from another query is refused.
    let c =
        ok(&s, &key, &with(&range, &[("name", "paged"), ("limit", "1")]))["next_cursor"].as_str().unwrap().to_string();
    let (st, v) = query(&s, &key, &with(&range, &[("name", "cpu"), ("cursor", &c)]));
    assert_eq!(st, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("cursor belongs to a query"), "{v}");
    // Authentication.
    let r = s.http.get(s.url("/query/v1/metrics?name=cpu")).send().unwrap();
    assert_eq!(r.status(), 401);
    let r = s.http.get(s.url("/query/v1/metrics?name=cpu")).bearer_auth("strata_wrong").send().unwrap();
    assert_eq!(r.status(), 401);
    assert!(s.is_up());
}
