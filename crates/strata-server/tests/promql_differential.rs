//! Differential: Prometheus 2.42 (Debian's package) and Strata receive the same hour of samples by
//! remote write, then `promtool query instant` and `promtool query range` ask each the same
//! dashboard queries. Every answer must have the same series with the same values (within float
//! rounding).
//!
//! Strata follows Prometheus 3 where it differs from Prometheus 2, so the data and times keep
//! clear of the two differences: range windows are closed in Prometheus 2 and open at the start
//! in Prometheus 3 (samples sit 3.3 s past a 15 s grid, queries and subquery steps fall on whole
//! or half seconds, so no window edge meets a sample); and Prometheus 3 extrapolates a counter's
//! increase less far back when its window starts before the counter's first sample (every window
//! here starts after the data does).
//!
//! Needs `prometheus` and `promtool` on PATH: `scripts/install-prometheus.sh` installs them.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Peer, Server, now_ms};
use prost::Message;
use serde_json::Value;
use strata_gateway::remote_write::proto::{Label, Sample, TimeSeries, WriteRequest};

const STEP_MS: i64 = 15_000;
const POINTS: i64 = 480;
/// Sample times sit this far past the 15 s grid.
const SKEW_MS: i64 = 3_300;

/// Dashboard-style queries: rates, sums by label, histogram quantiles, joins, subqueries,
/// offsets, absent, topk, label_replace and the functions around them.
const QUERIES: &[&str] = &[
    "rate(diff_http_requests_total[5m])",
    "sum by (job) (rate(diff_http_requests_total[5m]))",
    "sum by (job, code) (rate(diff_http_requests_total[5m]))",
    "sum without (instance) (rate(diff_http_requests_total[5m]))",
    "irate(diff_http_requests_total[5m])",
    "increase(diff_http_requests_total[1h])",
    "sum by (job) (increase(diff_http_requests_total[10m])) * 60",
    "sum(rate(diff_http_requests_total{code=\"500\"}[5m])) / sum(rate(diff_http_requests_total[5m]))",
    "sum by (job) (rate(diff_http_requests_total{code=~\"5..\"}[5m])) / sum by (job) (rate(diff_http_requests_total[5m]))",
    "sum by (job, instance) (rate(diff_http_requests_total[5m])) / on (job) group_left sum by (job) (rate(diff_http_requests_total[5m]))",
    "histogram_quantile(0.99, sum by (le) (rate(diff_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.5, sum by (job, le) (rate(diff_request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.9, rate(diff_request_duration_seconds_bucket[10m]))",
    "rate(diff_request_duration_seconds_sum[5m]) / rate(diff_request_duration_seconds_count[5m])",
    "diff_memory_bytes * on (instance) group_left (version, team) diff_info",
    "sum by (team) (diff_memory_bytes * on (instance) group_left (team) diff_info)",
    "diff_info * on (instance) group_right (version) diff_memory_bytes",
    "max_over_time(diff_memory_bytes[10m])",
    "min_over_time(diff_memory_bytes[10m])",
    "avg_over_time(diff_memory_bytes[10m])",
    "quantile_over_time(0.9, diff_memory_bytes[30m])",
    "stddev_over_time(diff_memory_bytes[30m])",
    "max_over_time(rate(diff_http_requests_total[5m])[30m:1m])",
    "avg_over_time(sum by (job) (rate(diff_http_requests_total[5m]))[20m:2m])",
    "rate(diff_http_requests_total[5m] offset 10m)",
    "diff_memory_bytes offset 5m",
    "sum by (job) (rate(diff_http_requests_total[5m])) - sum by (job) (rate(diff_http_requests_total[5m] offset 15m))",
    "absent(diff_nonexistent{job=\"api\"})",
    "absent(diff_up{job=\"api\"})",
    "absent_over_time(diff_temp[5m])",
    "topk(3, diff_memory_bytes)",
    "bottomk(2, sum by (instance) (rate(diff_http_requests_total[5m])))",
    "topk by (job) (1, diff_memory_bytes)",
    "label_replace(diff_up, \"host\", \"$1\", \"instance\", \"i(.*)\")",
    "label_join(diff_up, \"id\", \"/\", \"job\", \"instance\")",
    "count by (job) (diff_up == 1)",
    "avg by (job) (diff_memory_bytes)",
    "quantile(0.5, diff_memory_bytes)",
    "count_values(\"value\", diff_up)",
    "diff_memory_bytes > 1.5e9",
    "diff_memory_bytes > bool 1.5e9",
    "deriv(diff_memory_bytes[10m])",
    "predict_linear(diff_memory_bytes[30m], 3600)",
    "delta(diff_memory_bytes[10m])",
    "idelta(diff_memory_bytes[5m])",
    "changes(diff_up[30m])",
    "resets(diff_http_requests_total[1h])",
    "holt_winters(diff_memory_bytes[30m], 0.5, 0.5)",
    "clamp_max(diff_memory_bytes, 1.2e9)",
    "round(rate(diff_http_requests_total[5m]), 0.1)",
    "time() - timestamp(diff_up)",
    "diff_up and on (instance) diff_temp",
    "diff_up unless on (instance) diff_temp",
    "diff_up or diff_temp",
    "sort_desc(sum by (instance) (diff_memory_bytes))",
    "sum by (job) (rate(diff_http_requests_total[5m])) > 1",
    "last_over_time(diff_temp[10m])",
    "present_over_time(diff_temp[10m])",
    "scalar(sum(diff_up)) * diff_memory_bytes",
    "max(diff_memory_bytes) - min(diff_memory_bytes)",
    "stddev by (job) (diff_memory_bytes)",
    "group by (job) (diff_up)",
    "sum(rate(diff_http_requests_total[5m]) * on (instance) group_left (team) diff_info) by (team)",
];

/// Deterministic noise in [0, 1).
fn noise(seed: u64) -> f64 {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

type SeriesData = (Vec<(String, String)>, Vec<(i64, f64)>);

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

/// Two hours of samples: request counters (one resets), latency histograms, gauges, an info
/// series to join on, and a series that stops three quarters of the way.
fn dataset(base: i64) -> Vec<SeriesData> {
    let mut out: Vec<SeriesData> = Vec::new();
    let ts = |i: i64| base + i * STEP_MS;
    let jobs = ["api", "web"];
    let instances = ["i1", "i2", "i3"];
    let mut seed = 0u64;
    for job in jobs {
        for inst in instances {
            for code in ["200", "500"] {
                for method in ["get", "post"] {
                    seed += 1;
                    let mut v = 0.0;
                    let rate = if code == "200" { 20.0 } else { 1.0 } * (1.0 + noise(seed));
                    let samples = (0..POINTS)
                        .map(|i| {
                            v += rate * 15.0 * (0.5 + noise(seed * 1000 + i as u64));
                            // One counter restarts two thirds of the way through.
                            if seed == 5 && i == POINTS * 2 / 3 {
                                v = 3.0;
                            }
                            (ts(i), v.round())
                        })
                        .collect();
                    out.push((
                        labels(&[
                            ("__name__", "diff_http_requests_total"),
                            ("job", job),
                            ("instance", inst),
                            ("code", code),
                            ("method", method),
                        ]),
                        samples,
                    ));
                }
            }
            // A latency histogram: observations spread over the buckets.
            seed += 1;
            let bounds = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"];
            let mut counts = [0.0f64; 7];
            let mut count = 0.0;
            let mut sum = 0.0;
            let mut per_bucket: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 7];
            let mut sums = Vec::new();
            let mut totals = Vec::new();
            for i in 0..POINTS {
                let n = (10.0 + 20.0 * noise(seed * 7919 + i as u64)).round();
                for k in 0..n as u64 {
                    let x = noise(seed * 104729 + i as u64 * 131 + k).powi(2) * 3.0;
                    for (b, bound) in bounds.iter().enumerate() {
                        let le: f64 = if *bound == "+Inf" { f64::INFINITY } else { bound.parse().unwrap() };
                        if x <= le {
                            counts[b] += 1.0;
                        }
                    }
                    count += 1.0;
                    sum += x;
                }
                for b in 0..7 {
                    per_bucket[b].push((ts(i), counts[b]));
                }
                sums.push((ts(i), sum));
                totals.push((ts(i), count));
            }
            for (b, bound) in bounds.iter().enumerate() {
                out.push((
                    labels(&[
                        ("__name__", "diff_request_duration_seconds_bucket"),
                        ("job", job),
                        ("instance", inst),
                        ("le", bound),
                    ]),
                    per_bucket[b].clone(),
                ));
            }
            out.push((
                labels(&[("__name__", "diff_request_duration_seconds_sum"), ("job", job), ("instance", inst)]),
                sums,
            ));
            out.push((
                labels(&[("__name__", "diff_request_duration_seconds_count"), ("job", job), ("instance", inst)]),
                totals,
            ));
            seed += 1;
            let memory = (0..POINTS)
                .map(|i| (ts(i), 1e9 + 1e9 * noise(seed) + 2e6 * i as f64 + 5e7 * noise(seed * 31 + i as u64)))
                .collect();
            out.push((labels(&[("__name__", "diff_memory_bytes"), ("job", job), ("instance", inst)]), memory));
            let up = (0..POINTS).map(|i| (ts(i), if (i / 40 + seed as i64) % 5 == 0 { 0.0 } else { 1.0 })).collect();
            out.push((labels(&[("__name__", "diff_up"), ("job", job), ("instance", inst)]), up));
        }
    }
    for (inst, team) in [("i1", "storage"), ("i2", "storage"), ("i3", "edge")] {
        let samples = (0..POINTS).map(|i| (ts(i), 1.0)).collect();
        out.push((
            labels(&[("__name__", "diff_info"), ("instance", inst), ("version", "1.2"), ("team", team)]),
            samples,
        ));
    }
    let temp = (0..POINTS * 3 / 4).map(|i| (ts(i), 20.0 + noise(900 + i as u64))).collect();
    out.push((labels(&[("__name__", "diff_temp"), ("instance", "i1")]), temp));
    out
}

/// Remote-write requests of `per` timestamps each, oldest first, as a Prometheus sender would
/// cut them.
fn requests(data: &[SeriesData], per: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut from = 0usize;
    while from < POINTS as usize {
        let to = (from + per).min(POINTS as usize);
        let timeseries = data
            .iter()
            .filter_map(|(ls, samples)| {
                let samples: Vec<Sample> = samples
                    .iter()
                    .skip(from)
                    .take(to - from)
                    .map(|&(timestamp, value)| Sample { value, timestamp })
                    .collect();
                (!samples.is_empty()).then(|| TimeSeries {
                    labels: ls.iter().map(|(n, v)| Label { name: n.clone(), value: v.clone() }).collect(),
                    samples,
                })
            })
            .collect();
        let req = WriteRequest { timeseries };
        out.push(snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap());
        from = to;
    }
    out
}

/// One query's answer: series by label set, each with its (time, value) points.
type Answer = BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>>;

/// `promtool query <kind> -o json <flags> <server> <expr>`.
fn promtool(server: &str, kind: &str, flags: &[String], expr: &str) -> Result<Answer, String> {
    let out = Command::new("promtool")
        .args(["query", kind, "-o", "json"])
        .args(flags)
        .arg(server)
        .arg(expr)
        .output()
        .expect("promtool is runnable: run scripts/install-prometheus.sh");
    if !out.status.success() {
        return Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("promtool printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))?;
    Ok(parse_answer(&v))
}

fn parse_answer(v: &Value) -> Answer {
    let point = |p: &Value| {
        let t = p[0].as_f64().unwrap();
        let v = p[1].as_str().unwrap();
        let v = match v {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other.parse().unwrap(),
        };
        (t, v)
    };
    let mut out = Answer::new();
    match v {
        Value::Array(items) if items.first().is_some_and(|i| i.is_object()) || items.is_empty() => {
            for item in items {
                let metric: BTreeMap<String, String> = item["metric"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
                    .unwrap_or_default();
                let points = match item.get("values") {
                    Some(values) => values.as_array().unwrap().iter().map(point).collect(),
                    None => vec![point(&item["value"])],
                };
                out.insert(metric, points);
            }
        }
        // A scalar: [time, "value"].
        Value::Array(_) => {
            out.insert(BTreeMap::new(), vec![point(v)]);
        }
        other => panic!("unexpected promtool output: {other}"),
    }
    out
}

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12)
}

fn differences(prom: &Answer, strata: &Answer) -> Option<String> {
    if prom.keys().ne(strata.keys()) {
        return Some(format!(
            "different series:\n  prometheus {:?}\n  strata     {:?}",
            prom.keys().collect::<Vec<_>>(),
            strata.keys().collect::<Vec<_>>()
        ));
    }
    for (labels, p) in prom {
        let s = &strata[labels];
        let same = p.len() == s.len() && p.iter().zip(s).all(|(a, b)| a.0 == b.0 && close(a.1, b.1));
        if !same {
            return Some(format!("{labels:?}:\n  prometheus {p:?}\n  strata     {s:?}"));
        }
    }
    None
}

#[test]
fn promtool_gets_the_same_answers_from_strata_and_prometheus() {
    let strata = Server::start("");
    let key = strata.tenant_key("diff");
    let prometheus = Peer::prometheus_receiver();
    let end = now_ms() / STEP_MS * STEP_MS - 2 * STEP_MS + SKEW_MS;
    let base = end - (POINTS - 1) * STEP_MS;
    let data = dataset(base);
    let total: usize = data.iter().map(|(_, s)| s.len()).sum();
    for body in requests(&data, 20) {
        prometheus.remote_write(body.clone());
        let (status, text) = strata.remote_write(&key, body);
        assert_eq!(status, 204, "strata remote write: {text}");
    }
    let strata_url = format!("http://promtool:{key}@127.0.0.1:{}", strata.port);
    let prom_url = prometheus.url("");
    // Both hold every sample before any comparison. (One query per metric: Prometheus 2 drops
    // the names before `sum`, and refuses a vector whose series become equal.)
    let at = format!("{:.1}", (end - SKEW_MS + 7_500) as f64 / 1000.0);
    let mut names: Vec<&str> = data.iter().map(|(ls, _)| ls[0].1.as_str()).collect();
    names.sort();
    names.dedup();
    let window = format!("{}s", POINTS * STEP_MS / 1000 + 60);
    let deadline = Instant::now() + Duration::from_secs(60);
    for (name, url) in [("prometheus", &prom_url), ("strata", &strata_url)] {
        loop {
            let mut held = 0.0;
            let mut answers = Vec::new();
            for metric in &names {
                let q = format!("sum(count_over_time({metric}[{window}]))");
                let answer = promtool(url, "instant", &[format!("--time={at}")], &q);
                held +=
                    answer.as_ref().ok().and_then(|a| a.values().next().and_then(|p| p.first())).map_or(0.0, |p| p.1);
                answers.push(answer);
            }
            if held == total as f64 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} holds {held} samples, not {total}: {answers:?}\n{}",
                strata.server_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let mid = format!("{:.1}", (base - SKEW_MS + 90 * 60_000 + 7_500) as f64 / 1000.0);
    let start = format!("{:.1}", (base - SKEW_MS + 65 * 60_000 + 7_500) as f64 / 1000.0);
    let mut failures = Vec::new();
    let mut compared = 0;
    for q in QUERIES {
        let cases: [(&str, &str, Vec<String>); 3] = [
            ("instant at the end", "instant", vec![format!("--time={at}")]),
            ("instant mid-way", "instant", vec![format!("--time={mid}")]),
            ("range", "range", vec![format!("--start={start}"), format!("--end={at}"), "--step=1m".into()]),
        ];
        let mut answered = false;
        for (what, kind, flags) in cases {
            let p = promtool(&prom_url, kind, &flags, q);
            let s = promtool(&strata_url, kind, &flags, q);
            compared += 1;
            match (p, s) {
                (Ok(p), Ok(s)) => {
                    answered |= !p.is_empty();
                    if let Some(d) = differences(&p, &s) {
                        failures.push(format!("{what} {q}: {d}"));
                    }
                }
                (p, s) => failures.push(format!("{what} {q}: prometheus {p:?}, strata {s:?}")),
            }
        }
        if !answered && !q.starts_with("absent(diff_up") {
            failures.push(format!("{q}: prometheus returned nothing at all, so the query proves nothing"));
        }
    }
    eprintln!("compared {compared} answers for {} queries", QUERIES.len());
    assert!(failures.is_empty(), "{} of {compared} answers differ:\n{}", failures.len(), failures.join("\n"));
}
