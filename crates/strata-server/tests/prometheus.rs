//! A real client: Prometheus (2.42, Debian's package) scrapes a target inside this test and
//! remote-writes to Strata. Every series Prometheus holds for the job must be found in Strata with
//! the same labels, and every sample it holds must be in Strata's log and in its metric store with
//! the same timestamp and bits of value.
//!
//! Needs `prometheus` on PATH: `scripts/install-prometheus.sh` installs it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::Value;
use serde_json::value::RawValue;

const JOB: &str = "strata-e2e";
/// How long any one wait for Prometheus or Strata may last.
const WAIT_MAX: Duration = Duration::from_secs(60);
/// Scrapes to see before comparing: the ephemeral series has come and gone by then.
const SCRAPES_MIN: u64 = 6;
/// The ephemeral series is exposed only in scrapes up to this one, so Prometheus marks it stale.
const EPHEMERAL_SCRAPES: u64 = 2;
/// Prometheus's staleness marker, which remote write sends as an ordinary sample.
const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

type Labels = BTreeMap<String, String>;

/// Label values as the test means them; the exposition escapes them and Prometheus must undo that.
const PATH_VALUE: &str = r"C:\Program Files\strata";
const QUOTE_VALUE: &str = r#"say "hi""#;
const MULTILINE_VALUE: &str = "first\nsecond";
const UTF8_VALUE: &str = "grüße, 日本語, ☃";

fn kitchen_celsius(scrape: u64) -> f64 {
    21.5 + scrape as f64 * 0.25
}

/// The exposition of the `scrape`-th request (from 1): counters grow, gauges move, one series
/// exists only in the first scrapes.
fn exposition(scrape: u64) -> String {
    let n = scrape as f64;
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line("# HELP strata_e2e_requests_total Requests served.".into());
    line("# TYPE strata_e2e_requests_total counter".into());
    line(format!(r#"strata_e2e_requests_total{{method="get",code="200"}} {:?}"#, 100.0 * n));
    line(format!(r#"strata_e2e_requests_total{{method="post",code="500"}} {:?}"#, n));
    line(r#"strata_e2e_requests_total{method="put",code="201"} 0"#.into());
    line("# HELP strata_e2e_bytes_total Bytes sent, a counter past 2^53.".into());
    line("# TYPE strata_e2e_bytes_total counter".into());
    line(format!("strata_e2e_bytes_total {:?}", 9_007_199_254_740_993.0 + 4096.0 * n));
    line("# HELP strata_e2e_temperature_celsius Temperature by room.".into());
    line("# TYPE strata_e2e_temperature_celsius gauge".into());
    line(format!(r#"strata_e2e_temperature_celsius{{room="kitchen"}} {:?}"#, kitchen_celsius(scrape)));
    line(format!(r#"strata_e2e_temperature_celsius{{room="freezer"}} {:?}"#, -18.75 - n));
    line(r#"strata_e2e_temperature_celsius{room="void"} 0"#.into());
    line(format!(r#"strata_e2e_temperature_celsius{{room="sun"}} {:?}"#, 1.5e300 * n));
    line(format!(r#"strata_e2e_temperature_celsius{{room="lab"}} {:?}"#, 1e-300 / n));
    line("# TYPE strata_e2e_escaped_info gauge".into());
    line(format!(
        r#"strata_e2e_escaped_info{{path="{}",quote="{}",multiline="{}",utf8="{}"}} 1"#,
        escape(PATH_VALUE),
        escape(QUOTE_VALUE),
        escape(MULTILINE_VALUE),
        escape(UTF8_VALUE)
    ));
    line("# HELP strata_e2e_latency_seconds Request latency.".into());
    line("# TYPE strata_e2e_latency_seconds histogram".into());
    line(format!(r#"strata_e2e_latency_seconds_bucket{{le="0.1"}} {:?}"#, n));
    line(format!(r#"strata_e2e_latency_seconds_bucket{{le="1"}} {:?}"#, 2.0 * n));
    line(format!(r#"strata_e2e_latency_seconds_bucket{{le="+Inf"}} {:?}"#, 3.0 * n));
    line(format!("strata_e2e_latency_seconds_sum {:?}", 0.375 * n));
    line(format!("strata_e2e_latency_seconds_count {:?}", 3.0 * n));
    if scrape <= EPHEMERAL_SCRAPES {
        line("# TYPE strata_e2e_ephemeral gauge".into());
        line("strata_e2e_ephemeral -42.5".into());
    }
    out
}

/// The text format's escaping of a label value.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
}

/// Serves `GET /metrics` with `exposition(n)` for the n-th request; returns its port and the
/// number of scrapes served so far.
fn start_target() -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let scrapes = Arc::new(AtomicU64::new(0));
    let counter = scrapes.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            // A broken connection only costs Prometheus one scrape.
            let _ = serve(stream, &counter);
        }
    });
    (port, scrapes)
}

fn serve(mut stream: TcpStream, scrapes: &AtomicU64) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 || request.len() > 64 * 1024 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&request);
    let (status, body) = if head.starts_with("GET /metrics ") {
        ("200 OK", exposition(scrapes.fetch_add(1, Ordering::SeqCst) + 1))
    } else {
        ("404 Not Found", String::new())
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// A Prometheus child process with its own configuration and storage; killed on drop, and its
/// output printed when the test fails.
struct Prometheus {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
    http: reqwest::blocking::Client,
}

impl Prometheus {
    fn start(target_port: u16, strata_port: u16, api_key: &str) -> Prometheus {
        let version = match Command::new("prometheus").arg("--version").output() {
            Ok(out) => String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_string(),
            Err(e) => panic!("prometheus is not runnable ({e}): run scripts/install-prometheus.sh to install it"),
        };
        eprintln!("using {version}");
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: {JOB}
    static_configs:
      - targets: ["127.0.0.1:{target_port}"]
        labels:
          env: "e2e test"
remote_write:
  - url: http://127.0.0.1:{strata_port}/api/v1/write
    authorization:
      credentials: {api_key}
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
"#
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let port = common::free_port();
        let child = Command::new("prometheus")
            .arg("--config.file")
            .arg(&config_path)
            .arg("--storage.tsdb.path")
            .arg(dir.path().join("data"))
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start prometheus ({e}): run scripts/install-prometheus.sh"));
        let mut p = Prometheus {
            dir,
            port,
            child,
            http: reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap(),
        };
        p.wait_ready();
        p
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("prometheus.log")
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            let url = format!("http://127.0.0.1:{}/-/ready", self.port);
            if self.http.get(url).send().is_ok_and(|r| r.status() == 200) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("prometheus exited with {status} before it was ready");
            }
            assert!(Instant::now() < deadline, "prometheus not ready in {WAIT_MAX:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `data` of a successful answer of Prometheus's HTTP API.
    fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let v: Value = self.http.get(url).query(params).send().unwrap().json().unwrap();
        assert_eq!(v["status"], "success", "prometheus {path}: {v}");
        v["data"].clone()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            eprintln!("--- prometheus output ---\n{log}--- end of prometheus output ---");
        }
    }
}

/// Prints Strata's log when the test fails.
struct StrataLogOnPanic<'a>(&'a Server);

impl Drop for StrataLogOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- strata output ---\n{}--- end of strata output ---", self.0.server_log());
        }
    }
}

fn strata_api(s: &Server, key: &str, path: &str, params: &[(&str, &str)]) -> Value {
    let r = s.http.get(s.url(path)).bearer_auth(key).query(params).send().unwrap();
    let status = r.status();
    let v: Value = r.json().unwrap();
    assert!(status == 200 && v["status"] == "success", "strata {path}: {status} {v}");
    v["data"].clone()
}

fn label_sets(data: &Value) -> BTreeSet<Labels> {
    data.as_array().unwrap().iter().map(|s| serde_json::from_value::<Labels>(s.clone()).unwrap()).collect()
}

fn strings(data: &Value) -> BTreeSet<String> {
    serde_json::from_value(data.clone()).unwrap()
}

/// The samples of every series, as (timestamp in ms, value bits): bits, so that a staleness
/// marker is told apart from any other NaN.
type Samples = BTreeMap<Labels, BTreeSet<(i64, u64)>>;

/// Every sample Prometheus holds for the job, from its own query API. Staleness markers are not
/// among them: Prometheus's queries hide them.
fn prometheus_samples(p: &Prometheus) -> Samples {
    let data = p.api("/api/v1/query", &[("query", &format!(r#"{{job="{JOB}"}}[1h]"#))]);
    assert_eq!(data["resultType"], "matrix", "{data}");
    let mut out = Samples::new();
    for series in data["result"].as_array().unwrap() {
        let labels: Labels = serde_json::from_value(series["metric"].clone()).unwrap();
        let samples = out.entry(labels).or_default();
        for pair in series["values"].as_array().unwrap() {
            // Prometheus answers seconds with millisecond decimals and the value as Go formats it.
            let t_ms = (pair[0].as_f64().unwrap() * 1000.0).round() as i64;
            let v: f64 = parse_value(pair[1].as_str().unwrap());
            samples.insert((t_ms, v.to_bits()));
        }
    }
    out
}

fn parse_value(s: &str) -> f64 {
    match s {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse().unwrap_or_else(|e| panic!("sample value {s:?}: {e}")),
    }
}

/// A sample value exactly as the server wrote it: a JSON number, "+Inf" or "-Inf", or
/// "NaN:<payload bits in hex>". The test parses the number itself rather than trust a JSON
/// library's float parsing to be correctly rounded, which would blame Strata for the client.
fn exact_value(raw: &RawValue) -> f64 {
    match serde_json::from_str::<String>(raw.get()) {
        Ok(s) => match s.strip_prefix("NaN:") {
            Some(bits) => f64::from_bits(u64::from_str_radix(bits, 16).unwrap()),
            None => parse_value(&s),
        },
        Err(_) => parse_value(raw.get()),
    }
}

#[derive(serde::Deserialize)]
struct RecordsPage {
    records: Vec<StoredRecord>,
    next_offset: u64,
}

#[derive(serde::Deserialize)]
struct StoredRecord {
    payload_encoding: String,
    payload: Box<RawValue>,
}

#[derive(serde::Deserialize)]
struct BatchSeries {
    labels: Labels,
    samples: Vec<(i64, Box<RawValue>)>,
}

/// Every sample of the job in Strata's `metrics` topic, read back through the admin API.
fn strata_samples(s: &Server) -> Samples {
    let topics = s.admin_get("/admin/v1/topics");
    let topic = topics["topics"].as_array().unwrap().iter().find(|t| t["name"] == "metrics").unwrap();
    let mut out = Samples::new();
    for partition in topic["partitions"].as_array().unwrap() {
        let mut offset = partition["earliest_offset"].as_u64().unwrap();
        let latest = partition["latest_offset"].as_u64().unwrap();
        while offset < latest {
            let path = format!(
                "/admin/v1/topics/metrics/partitions/{}/records?offset={offset}&limit=1000",
                partition["partition"]
            );
            let r = s.http.get(s.url(&path)).bearer_auth(common::ADMIN_TOKEN).send().unwrap();
            assert_eq!(r.status(), 200, "{path}");
            let page: RecordsPage = serde_json::from_str(&r.text().unwrap()).unwrap();
            assert!(!page.records.is_empty(), "{path}");
            for record in &page.records {
                assert_eq!(record.payload_encoding, "metric_batch", "{}", record.payload);
                let batch: Vec<BatchSeries> = serde_json::from_str(record.payload.get()).unwrap();
                for series in batch.into_iter().filter(|s| s.labels.get("job").is_some_and(|j| j == JOB)) {
                    let samples = out.entry(series.labels).or_default();
                    for (t, v) in &series.samples {
                        // NaNs keep their payload: a staleness marker is told apart from other NaNs.
                        samples.insert((*t, exact_value(v).to_bits()));
                    }
                }
            }
            offset = page.next_offset;
        }
    }
    out
}

/// Samples of `a` that `b` lacks, for failure messages.
fn missing(a: &Samples, b: &Samples) -> Vec<String> {
    let empty = BTreeSet::new();
    a.iter()
        .flat_map(|(labels, samples)| {
            let other = b.get(labels).unwrap_or(&empty);
            samples.difference(other).map(move |(t, bits)| format!("{labels:?} @{t} = {:?}", f64::from_bits(*bits)))
        })
        .collect()
}

#[test]
fn prometheus_remote_writes_every_series_and_sample_it_scraped() {
    let s = Server::start("");
    let _strata_log = StrataLogOnPanic(&s);
    let key = s.tenant_key("prometheus");
    let (target_port, scrapes) = start_target();
    let p = Prometheus::start(target_port, s.port, &key);

    let deadline = Instant::now() + WAIT_MAX;
    while scrapes.load(Ordering::SeqCst) < SCRAPES_MIN {
        assert!(
            Instant::now() < deadline,
            "prometheus scraped the target {} times in {WAIT_MAX:?}",
            scrapes.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // What Prometheus holds for the job, read from Prometheus itself. Its series do not change
    // from here on: the ephemeral one is already there, every other one is in every scrape.
    let selector = format!(r#"{{job="{JOB}"}}"#);
    let prom_series = label_sets(&p.api("/api/v1/series", &[("match[]", &selector)]));
    let instance = format!("127.0.0.1:{target_port}");
    let names: BTreeSet<&str> = prom_series.iter().map(|l| l["__name__"].as_str()).collect();
    for name in [
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
        "strata_e2e_requests_total",
        "strata_e2e_bytes_total",
        "strata_e2e_temperature_celsius",
        "strata_e2e_escaped_info",
        "strata_e2e_latency_seconds_bucket",
        "strata_e2e_latency_seconds_sum",
        "strata_e2e_latency_seconds_count",
        "strata_e2e_ephemeral",
    ] {
        assert!(names.contains(name), "prometheus has no {name}: {names:?}");
    }
    for labels in &prom_series {
        assert_eq!(labels["instance"], instance, "{labels:?}");
        assert_eq!(labels["env"], "e2e test", "{labels:?}");
    }
    // The escaped label values arrived as the target meant them, before Strata is even involved.
    let escaped = prom_series.iter().find(|l| l["__name__"] == "strata_e2e_escaped_info").unwrap();
    assert_eq!(escaped["path"], PATH_VALUE);
    assert_eq!(escaped["quote"], QUOTE_VALUE);
    assert_eq!(escaped["multiline"], MULTILINE_VALUE);
    assert_eq!(escaped["utf8"], UTF8_VALUE);

    // Every one of those series reaches Strata's metric store with exactly its labels.
    let deadline = Instant::now() + WAIT_MAX;
    let strata_series = loop {
        let got = label_sets(&strata_api(&s, &key, "/api/v1/series", &[("match[]", &selector)]));
        if prom_series.is_subset(&got) {
            break got;
        }
        assert!(
            Instant::now() < deadline,
            "strata lacks these series after {WAIT_MAX:?}: {:#?}",
            prom_series.difference(&got).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(strata_series, prom_series, "strata has series prometheus does not");
    let mut by_name = BTreeMap::<&str, usize>::new();
    for labels in &prom_series {
        *by_name.entry(labels["__name__"].as_str()).or_default() += 1;
    }
    eprintln!("{} series, by name: {by_name:?}", prom_series.len());

    // The label APIs agree: the tenant holds nothing but what Prometheus sent.
    let labels = strings(&p.api("/api/v1/labels", &[]));
    assert_eq!(strings(&strata_api(&s, &key, "/api/v1/labels", &[])), labels);
    for name in ["job", "instance", "__name__", "path", "quote", "multiline", "utf8", "le"] {
        assert!(labels.contains(name), "prometheus has no label {name}: {labels:?}");
        let path = format!("/api/v1/label/{name}/values");
        let want = strings(&p.api(&path, &[]));
        assert_eq!(strings(&strata_api(&s, &key, &path, &[])), want, "{path}");
    }
    assert_eq!(strings(&strata_api(&s, &key, "/api/v1/label/job/values", &[])), BTreeSet::from([JOB.to_string()]));

    // Every sample Prometheus holds reaches Strata's log with its timestamp and exact value.
    let prom_before = prometheus_samples(&p);
    let deadline = Instant::now() + WAIT_MAX;
    let strata = loop {
        let got = strata_samples(&s);
        let lacking = missing(&prom_before, &got);
        if lacking.is_empty() {
            break got;
        }
        assert!(Instant::now() < deadline, "strata lacks these samples after {WAIT_MAX:?}: {lacking:#?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    // And Strata holds nothing Prometheus does not, but for staleness markers, which Prometheus's
    // queries hide. Only scrapes Prometheus had committed when it was asked are compared: one
    // target's scrapes are committed in order, so those are the ones up to its newest sample.
    let cutoff_ms = prom_before.values().flatten().map(|&(t, _)| t).max().unwrap();
    let mut stale = strata.clone();
    let mut real = strata.clone();
    for samples in stale.values_mut() {
        samples.retain(|&(_, bits)| bits == STALE_NAN_BITS);
    }
    for samples in real.values_mut() {
        samples.retain(|&(t, bits)| bits != STALE_NAN_BITS && t <= cutoff_ms);
    }
    let extra = missing(&real, &prom_before);
    assert!(extra.is_empty(), "strata has samples prometheus does not: {extra:#?}");

    // The target's values went through unchanged: the kitchen gauge took one value per scrape.
    let kitchen = strata
        .iter()
        .find(|(l, _)| l["__name__"] == "strata_e2e_temperature_celsius" && l["room"] == "kitchen")
        .unwrap()
        .1;
    let served = scrapes.load(Ordering::SeqCst);
    let expected: BTreeSet<u64> = (1..=served).map(|n| kitchen_celsius(n).to_bits()).collect();
    assert!(kitchen.len() >= SCRAPES_MIN as usize - 1, "{kitchen:?}");
    for (t, bits) in kitchen {
        assert!(expected.contains(bits), "kitchen @{t} = {} was never served", f64::from_bits(*bits));
    }
    let sun = strata.iter().find(|(l, _)| l.get("room").is_some_and(|r| r == "sun")).unwrap().1;
    assert!(sun.iter().all(|&(_, bits)| f64::from_bits(bits) >= 1.5e300), "{sun:?}");

    // The series that left the target was marked stale after its last sample.
    let ephemeral = |m: &Samples| -> Vec<(i64, u64)> {
        m.iter()
            .find(|(l, _)| l["__name__"] == "strata_e2e_ephemeral")
            .map(|(_, s)| s.iter().copied().collect())
            .unwrap_or_default()
    };
    let last_real = ephemeral(&real).last().copied().expect("strata has samples of strata_e2e_ephemeral");
    assert_eq!(f64::from_bits(last_real.1), -42.5);
    let markers = ephemeral(&stale);
    assert!(
        markers.iter().any(|&(t, _)| t > last_real.0),
        "no staleness marker after {last_real:?} for strata_e2e_ephemeral: {markers:?}"
    );
    let marked: Vec<_> = stale.iter().filter(|(_, s)| !s.is_empty()).map(|(l, _)| &l["__name__"]).collect();
    eprintln!("staleness markers for {marked:?}");

    // The metric store answers the native query with exactly the samples Prometheus holds, metric
    // by metric: a 1 ms step puts each sample in a bucket of its own, so a point is the sample.
    // The window starts at the first scrape and ends at the last one Prometheus had committed;
    // 1 ms steps allow at most 11 000 points, hence at most 10 s.
    let from_ms = prom_before.values().flatten().map(|&(t, _)| t).min().unwrap();
    let to_ms = cutoff_ms.min(from_ms + 10_000);
    let in_window = |m: &Samples| -> Samples {
        m.iter()
            .map(|(l, s)| (l.clone(), s.iter().copied().filter(|&(t, _)| (from_ms..=to_ms).contains(&t)).collect()))
            .filter(|(_, s): &(Labels, BTreeSet<(i64, u64)>)| !s.is_empty())
            .collect()
    };
    let want = in_window(&prom_before);
    let scrape_times: BTreeSet<i64> = want.values().flatten().map(|&(t, _)| t).collect();
    assert!(scrape_times.len() >= 3, "too few scrapes in the window: {scrape_times:?}");
    for name in &names {
        let want: Samples =
            want.iter().filter(|(l, _)| l["__name__"] == *name).map(|(l, s)| (l.clone(), s.clone())).collect();
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            let got = native_query(&s, &key, name, from_ms, to_ms);
            if got == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the native query for {name} in [{from_ms}, {to_ms}] differs from prometheus after {WAIT_MAX:?}:\n\
                 strata lacks {:#?}\nstrata has more {:#?}",
                missing(&want, &got),
                missing(&got, &want)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[derive(serde::Deserialize)]
struct QueryAnswer {
    series: Vec<QuerySeries>,
    next_cursor: Option<String>,
}

#[derive(serde::Deserialize)]
struct QuerySeries {
    labels: Labels,
    points: Vec<(i64, Box<RawValue>)>,
}

/// The samples of `name` for the job in `[from_ms, to_ms]`, read from Strata's metric store
/// through the native query, one point per sample.
fn native_query(s: &Server, key: &str, name: &str, from_ms: i64, to_ms: i64) -> Samples {
    let (from, to) = (from_ms.to_string(), to_ms.to_string());
    let job = format!("job:{JOB}");
    let params = [("name", name), ("labels", &job), ("from", &from), ("to", &to), ("step", "1"), ("limit", "10000")];
    let r = s.http.get(s.url("/query/v1/metrics")).bearer_auth(key).query(&params).send().unwrap();
    let status = r.status();
    let text = r.text().unwrap();
    assert_eq!(status, 200, "native query for {name}: {text}");
    let answer: QueryAnswer = serde_json::from_str(&text).unwrap();
    assert_eq!(answer.next_cursor, None, "one page holds every series: {text}");
    answer
        .series
        .into_iter()
        .map(|s| (s.labels, s.points.iter().map(|(t, v)| (*t, exact_value(v).to_bits())).collect()))
        .collect()
}
