//! A real rule engine: vmalert (Debian's `victoria-metrics` package) uses Strata as its data source
//! and as the remote-write target of what it computes. A recording rule's series must come back
//! from Strata with the values Prometheus 2.42 computes for the same expression over the same
//! samples, and the alerting rule's `ALERTS` series must appear (and the alert reach the notifier)
//! while its condition holds.
//!
//! Needs `vmalert` and `prometheus` on PATH: `scripts/install-victoria-metrics.sh` and
//! `scripts/install-prometheus.sh` install them.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Peer, Server, now_ms};
use prost::Message;
use serde_json::Value;
use strata_gateway::remote_write::proto::{Label, Sample, TimeSeries, WriteRequest};

const RULES: &str = r#"groups:
  - name: strata
    interval: 2s
    rules:
      - record: job:vm_requests:rate1m
        expr: sum by (job) (rate(vm_requests_total[1m]))
      - alert: HighRequestRate
        expr: sum by (job) (rate(vm_requests_total[1m])) > 1
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.job }} serves {{ $value }} requests per second"
"#;

const EXPR: &str = "sum by (job) (rate(vm_requests_total[1m]))";

/// Three minutes of two counters at one sample a second, up to now: rules evaluated in the next
/// minute see a full window whatever their alignment, and the data no longer changes.
fn samples(now: i64) -> Vec<u8> {
    let timeseries = ["i1", "i2"]
        .iter()
        .enumerate()
        .map(|(n, instance)| {
            let mut v = 0.0;
            let samples = (0..=180)
                .map(|k| {
                    v += 3.0 + ((k * 7 + n * 13) % 5) as f64;
                    Sample { value: v, timestamp: now - 180_000 + k as i64 * 1000 }
                })
                .collect();
            TimeSeries {
                labels: [("__name__", "vm_requests_total"), ("instance", instance), ("job", "api")]
                    .iter()
                    .map(|(n, v)| Label { name: n.to_string(), value: v.to_string() })
                    .collect(),
                samples,
            }
        })
        .collect();
    snap::raw::Encoder::new().compress_vec(&WriteRequest { timeseries }.encode_to_vec()).unwrap()
}

/// An HTTP endpoint that answers 200 to anything and keeps the bodies: where vmalert sends its
/// alerts (Alertmanager's API) in place of an Alertmanager.
fn notifier() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            // Headers, then as much body as Content-Length says.
            let (head_end, length) = loop {
                let Ok(n) = stream.read(&mut chunk) else { break (None, 0) };
                if n == 0 {
                    break (None, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                        .unwrap_or(0usize);
                    break (Some(end + 4), length);
                }
            };
            let Some(head_end) = head_end else { continue };
            while buf.len() < head_end + length {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            kept.lock().unwrap().push(String::from_utf8_lossy(&buf[head_end..]).into_owned());
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, bodies)
}

fn api(http: &reqwest::blocking::Client, url: &str, key: Option<&str>, params: &[(&str, &str)]) -> Value {
    let mut req = http.get(url).query(params);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let v: Value = req.send().unwrap().json().unwrap();
    assert_eq!(v["status"], "success", "{url} {params:?}: {v}");
    v["data"].clone()
}

fn value(s: &Value) -> f64 {
    s.as_str().unwrap().parse().unwrap()
}

#[test]
fn vmalert_records_and_alerts_through_strata() {
    let strata = Server::start("");
    let key = strata.tenant_key("rules");
    let prometheus = Peer::prometheus_receiver();
    let config = tempfile::tempdir().unwrap();
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let body = samples(now_ms());
    prometheus.remote_write(body.clone());
    let (status, text) = strata.remote_write(&key, body);
    assert_eq!(status, 204, "{text}");

    let (notifier_port, alerts_sent) = notifier();
    let rules = config.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let strata_url = strata.url("");
    let args = [
        format!("-rule={}", rules.display()),
        format!("-datasource.url={strata_url}"),
        format!("-datasource.bearerToken={key}"),
        format!("-remoteWrite.url={strata_url}"),
        format!("-remoteWrite.bearerToken={key}"),
        "-remoteWrite.flushInterval=500ms".into(),
        format!("-notifier.url=http://127.0.0.1:{notifier_port}"),
        "-evaluationInterval=2s".into(),
        "-httpListenAddr=127.0.0.1:{port}".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let vmalert = Peer::start("vmalert", "vmalert", &args, "/health", "scripts/install-victoria-metrics.sh");

    // The recorded series and the alert arrive in Strata by remote write.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (recorded, alerts) = loop {
        let now = format!("{:.3}", now_ms() as f64 / 1000.0);
        let recorded = api(
            &http,
            &strata.url("/api/v1/query"),
            Some(&key),
            &[("query", "job:vm_requests:rate1m[5m]"), ("time", &now)],
        );
        let alerts = api(
            &http,
            &strata.url("/api/v1/query"),
            Some(&key),
            &[("query", "ALERTS{alertname=\"HighRequestRate\"}"), ("time", &now)],
        );
        let points =
            recorded["result"].as_array().and_then(|r| r.first()).map_or(0, |s| s["values"].as_array().unwrap().len());
        if points >= 3 && !alerts["result"].as_array().unwrap().is_empty() {
            break (recorded, alerts);
        }
        assert!(
            Instant::now() < deadline,
            "no recording or alert in Strata after 60 s: {recorded} {alerts}\n{}\n{}",
            vmalert.output(),
            strata.server_log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };

    // Each recorded value is what Prometheus computes for the expression at its time.
    let series = &recorded["result"][0];
    assert_eq!(series["metric"]["__name__"], "job:vm_requests:rate1m", "{recorded}");
    assert_eq!(series["metric"]["job"], "api", "{recorded}");
    let mut compared = 0;
    for point in series["values"].as_array().unwrap() {
        let t = point[0].as_f64().unwrap();
        let got = value(&point[1]);
        let prom = api(&http, &prometheus.url("/api/v1/query"), None, &[("query", EXPR), ("time", &format!("{t:.3}"))]);
        let want = value(&prom["result"][0]["value"][1]);
        assert!(
            (got - want).abs() <= 1e-9 * want.abs(),
            "at {t}: vmalert recorded {got} from Strata, Prometheus computes {want}"
        );
        compared += 1;
    }
    assert!(compared >= 3);

    let alert = &alerts["result"][0]["metric"];
    assert_eq!(alert["alertstate"], "firing", "{alerts}");
    assert_eq!(alert["job"], "api", "{alerts}");
    assert_eq!(alert["severity"], "page", "{alerts}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !alerts_sent.lock().unwrap().iter().any(|b| b.contains("HighRequestRate")) {
        assert!(Instant::now() < deadline, "vmalert sent no alert to the notifier:\n{}", vmalert.output());
        std::thread::sleep(Duration::from_millis(200));
    }
}
