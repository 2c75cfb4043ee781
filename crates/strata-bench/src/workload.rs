//! Synthetic telemetry that looks like a fleet of servers: Zipf-distributed log sources, a realistic
//! level mix, templated messages, structured events and node-exporter-like metric series.
//!
//! Everything but the timestamps is a pure function of the seed, so two runs with the same seed send the
//! same bytes when given the same clock.

use std::fmt::Write as _;

use anyhow::{Context as _, ensure};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom as _, SliceRandom as _};
use rand::{Rng as _, SeedableRng as _};
use rand_distr::{Distribution as _, Zipf};
use serde_json::{Value, json};
use strata_client::RecordKind;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Shape of the generated workload.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Distinct log and event sources, named `host-00001` upwards.
    pub sources: u64,
    /// Zipf exponent of how often each source speaks: source 1 most, then source 2, ...
    pub zipf_exponent: f64,
    /// Average serialized size of a log record; each is within ±25% of it unless its unpadded form is
    /// already larger. Events keep their natural size (a few hundred bytes).
    pub event_bytes: usize,
    /// Distinct metric series, cycled through in order as a scraper would.
    pub series: u64,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig { seed: 1, sources: 10_000, zipf_exponent: 1.1, event_bytes: 1024, series: 10_000 }
    }
}

/// A deterministic generator of records.
pub struct Workload {
    config: WorkloadConfig,
    rng: StdRng,
    zipf: Zipf<f64>,
    series_shapes: Vec<SeriesShape>,
    next_series: u64,
}

impl Workload {
    /// A generator for `config`; fails if a parameter is out of range.
    pub fn new(config: WorkloadConfig) -> anyhow::Result<Workload> {
        ensure!(config.sources >= 1, "sources must be at least 1, got {}", config.sources);
        ensure!(config.series >= 1, "series must be at least 1, got {}", config.series);
        let zipf = Zipf::new(config.sources as f64, config.zipf_exponent)
            .with_context(|| format!("invalid zipf exponent {}", config.zipf_exponent))?;
        Ok(Workload {
            rng: StdRng::seed_from_u64(config.seed),
            zipf,
            series_shapes: node_series_shapes(),
            next_series: 0,
            config,
        })
    }

    /// One record of `kind` stamped `now_ms` (Unix milliseconds).
    pub fn record(&mut self, kind: RecordKind, now_ms: i64) -> Value {
        match kind {
            RecordKind::Logs => self.log(now_ms),
            RecordKind::Events => self.event(now_ms),
            RecordKind::Metrics => self.metric(now_ms),
        }
    }

    /// Appends `count` records of `kind` to `out` as NDJSON.
    pub fn write_ndjson(&mut self, kind: RecordKind, count: usize, now_ms: i64, out: &mut Vec<u8>) {
        for _ in 0..count {
            let record = self.record(kind, now_ms);
            serde_json::to_writer(&mut *out, &record).expect("a json value always serializes");
            out.push(b'\n');
        }
    }

    /// A log line from a Zipf-chosen source.
    pub fn log(&mut self, now_ms: i64) -> Value {
        let source = self.source();
        let host = host_name(source);
        let service = service_of(source);
        let level = self.level();
        let message = self.message(level, source);
        let trace_id = self.rng.random_bool(0.8).then(|| self.hex(32));
        let mut record = json!({
            "timestamp": rfc3339(now_ms),
            "source_id": host,
            "level": level,
            "message": message,
            "service": service,
            "run_id": run_id(self.config.seed, source),
            "attributes": {
                "env": if source.is_multiple_of(10) { "staging" } else { "prod" },
                "region": REGIONS[(mix(source) % REGIONS.len() as u64) as usize],
                "pod": format!("{service}-{:08x}", mix(source ^ 0x9e37) as u32),
                "thread": format!("worker-{}", self.rng.random_range(0..32)),
            },
        });
        if let Some(trace_id) = trace_id {
            record["trace_id"] = Value::String(trace_id);
        }
        self.pad(&mut record, "/message");
        record
    }

    /// A structured business or operations event from a Zipf-chosen source.
    pub fn event(&mut self, now_ms: i64) -> Value {
        let source = self.source();
        let user_id = self.rng.random_range(1..5_000_000u64);
        let amount_cents = self.rng.random_range(199..250_000u64);
        let (event_type, data) = match self.rng.random_range(0..100) {
            0..35 => (
                "order.placed",
                json!({"order_id": self.hex(16), "user_id": user_id, "amount_cents": amount_cents,
                       "currency": *["USD", "EUR", "GBP", "JPY"].choose(&mut self.rng).unwrap(),
                       "items": self.rng.random_range(1..12)}),
            ),
            35..60 => (
                "user.login",
                json!({"user_id": user_id, "method": *["password", "sso", "token"].choose(&mut self.rng).unwrap(),
                       "client_ip": self.ip(), "success": self.rng.random_bool(0.97)}),
            ),
            60..75 => (
                "user.signup",
                json!({"user_id": user_id, "plan": *["free", "pro", "team"].choose(&mut self.rng).unwrap(),
                       "country": *["US", "DE", "FR", "GB", "JP", "BR", "IN"].choose(&mut self.rng).unwrap()}),
            ),
            75..88 => (
                "payment.failed",
                json!({"payment_id": self.hex(16), "user_id": user_id, "amount_cents": amount_cents,
                       "reason": *["card_declined", "insufficient_funds", "expired_card", "processing_error"]
                           .choose(&mut self.rng).unwrap()}),
            ),
            88..96 => (
                "deploy.finished",
                json!({"service": service_of(source), "version": format!("1.{}.{}", self.rng.random_range(0..40), self.rng.random_range(0..20)),
                       "commit": self.hex(12), "duration_s": self.rng.random_range(20..900)}),
            ),
            _ => (
                "alert.fired",
                json!({"alert": *["HighErrorRate", "DiskAlmostFull", "HighLatency", "InstanceDown"].choose(&mut self.rng).unwrap(),
                       "severity": *["warning", "critical"].choose(&mut self.rng).unwrap(),
                       "value": self.rng.random_range(0.0..100.0f64)}),
            ),
        };
        json!({
            "type": event_type,
            "timestamp": rfc3339(now_ms),
            "source_id": host_name(source),
            "event_id": self.hex(32),
            "data": data,
        })
    }

    /// The next sample of the next series, cycling through `series` node-exporter-like series.
    pub fn metric(&mut self, now_ms: i64) -> Value {
        let series = self.next_series;
        self.next_series = (self.next_series + 1) % self.config.series;
        let per_host = self.series_shapes.len() as u64;
        let host = series / per_host + 1;
        let shape = &self.series_shapes[(series % per_host) as usize];
        let mut labels = serde_json::Map::new();
        labels.insert("instance".to_owned(), Value::String(format!("{}:9100", host_name(host))));
        labels.insert("job".to_owned(), Value::String("node".to_owned()));
        for (name, value) in &shape.labels {
            labels.insert(name.clone(), Value::String(value.clone()));
        }
        // Counters grow at a steady per-series rate so that rate() is meaningful; gauges wander around
        // a per-series level.
        let unit = 0.5 + (mix(series ^ self.config.seed) % 1000) as f64 / 1000.0;
        let value = match shape.kind {
            SeriesKind::Counter => (shape.scale * unit * now_ms as f64 / 1000.0).floor(),
            SeriesKind::Gauge => (shape.scale * unit * self.rng.random_range(0.9..1.1)).round(),
            SeriesKind::GaugeFraction => shape.scale * unit * self.rng.random_range(0.5..1.5),
        };
        json!({
            "name": shape.name,
            "labels": labels,
            "value": value,
            "timestamp": now_ms,
            "source_id": host_name(host),
        })
    }

    fn source(&mut self) -> u64 {
        self.zipf.sample(&mut self.rng) as u64
    }

    fn level(&mut self) -> &'static str {
        match self.rng.random_range(0..1000) {
            0..720 => "info",
            720..870 => "debug",
            870..970 => "warn",
            _ => "error",
        }
    }

    fn message(&mut self, level: &str, source: u64) -> String {
        let path = self.path();
        let rng = &mut self.rng;
        let duration_ms = rng.random_range(1..400u64);
        match level {
            "info" => match rng.random_range(0..4) {
                0 => format!(
                    "{} {path} {} {duration_ms}ms user_id={} client_ip={}",
                    *METHODS.choose(rng).unwrap(),
                    *[200, 200, 200, 201, 204, 304].choose(rng).unwrap(),
                    rng.random_range(1..5_000_000u64),
                    self.ip(),
                ),
                1 => format!(
                    "cache {} key=session:{} ttl_s={}",
                    *["hit", "hit", "miss"].choose(rng).unwrap(),
                    rng.random_range(1..5_000_000u64),
                    rng.random_range(60..3600)
                ),
                2 => format!(
                    "job {} finished in {duration_ms}ms, processed {} items",
                    *JOBS.choose(rng).unwrap(),
                    rng.random_range(1..50_000)
                ),
                _ => format!("accepted connection from {}:{}", self.ip(), self.rng.random_range(1024..65535)),
            },
            "debug" => match rng.random_range(0..2) {
                0 => format!(
                    "db query table={} rows={} elapsed_us={}",
                    *TABLES.choose(rng).unwrap(),
                    rng.random_range(0..5000),
                    rng.random_range(50..90_000)
                ),
                _ => format!(
                    "calling upstream {} path={path} attempt={}",
                    *SERVICES.choose(rng).unwrap(),
                    rng.random_range(1..4)
                ),
            },
            "warn" => match rng.random_range(0..3) {
                0 => format!(
                    "slow request {} {path} duration_ms={} threshold_ms=500",
                    *METHODS.choose(rng).unwrap(),
                    rng.random_range(500..8_000)
                ),
                1 => format!("disk usage {}% on /var/lib/{}", rng.random_range(80..97), service_of(source)),
                _ => format!(
                    "retrying request to {} after error: {}",
                    *SERVICES.choose(rng).unwrap(),
                    *ERRORS.choose(rng).unwrap()
                ),
            },
            _ => match rng.random_range(0..2) {
                0 => format!(
                    "request failed {} {path} status={} error=\"{}\"",
                    *METHODS.choose(rng).unwrap(),
                    *[500, 502, 503, 504].choose(rng).unwrap(),
                    *ERRORS.choose(rng).unwrap()
                ),
                _ => format!(
                    "failed to process payment for user {}: {}",
                    rng.random_range(1..5_000_000u64),
                    *ERRORS.choose(rng).unwrap()
                ),
            },
        }
    }

    /// Appends `key=value` context to the string at `pointer` so the serialized record lands near a
    /// target drawn around `event_bytes`. Keys come in a shuffled order and repeat only once all have
    /// been used.
    fn pad(&mut self, record: &mut Value, pointer: &str) {
        let target = (self.config.event_bytes as f64 * self.rng.random_range(0.75..1.25)) as usize;
        let size = serde_json::to_vec(record).map_or(0, |bytes| bytes.len());
        let Some(deficit) = target.checked_sub(size).filter(|deficit| *deficit > 0) else {
            return;
        };
        let mut filler = String::with_capacity(deficit + 128);
        let mut order: Vec<usize> = (0..FILLER_KEYS).collect();
        'fill: loop {
            order.shuffle(&mut self.rng);
            for &key in &order {
                if filler.len() >= deficit {
                    break 'fill;
                }
                self.filler_token(key, &mut filler);
            }
        }
        filler.truncate(deficit);
        if let Some(Value::String(field)) = record.pointer_mut(pointer) {
            field.push_str(&filler);
        }
    }

    /// Writes context token number `key` (below [`FILLER_KEYS`]) with a random value.
    fn filler_token(&mut self, key: usize, out: &mut String) {
        let token = match key {
            0 => format!(" request_id={}", self.hex(16)),
            1 => format!(" span_id={}", self.hex(16)),
            2 => format!(" parent_span_id={}", self.hex(16)),
            3 => format!(" bytes_in={}", self.rng.random_range(0..20_000)),
            4 => format!(" bytes_out={}", self.rng.random_range(0..2_000_000)),
            5 => format!(
                " upstream={}:{}",
                *SERVICES.choose(&mut self.rng).unwrap(),
                *[8080, 8443, 9000, 50051].choose(&mut self.rng).unwrap()
            ),
            6 => format!(" upstream_ms={}", self.rng.random_range(0..900)),
            7 => format!(
                " user_agent=Mozilla/5.0 (X11; Linux x86_64; rv:{0}.0) Gecko/20100101 Firefox/{0}.0",
                self.rng.random_range(90..130)
            ),
            8 => {
                let path = self.path();
                format!(" referer=https://shop.example.com{path}")
            }
            9 => format!(" proto={}", *["HTTP/1.1", "HTTP/2"].choose(&mut self.rng).unwrap()),
            10 => format!(" tls={}", *["TLSv1.2", "TLSv1.3"].choose(&mut self.rng).unwrap()),
            11 => format!(" cache={}", *["HIT", "MISS", "EXPIRED"].choose(&mut self.rng).unwrap()),
            12 => format!(" db_rows={}", self.rng.random_range(0..500)),
            13 => format!(" db_ms={}", self.rng.random_range(0..120)),
            14 => format!(
                " feature_flags=checkout_v{},search_rank_{},dark_mode",
                self.rng.random_range(1..4),
                self.rng.random_range(1..9)
            ),
            15 => format!(" client_ip={}", self.ip()),
            16 => format!(" x_forwarded_for={}, {}", self.ip(), self.ip()),
            17 => format!(" session={}", self.hex(24)),
            18 => format!(" tenant=acct-{:06}", self.rng.random_range(1..200_000)),
            19 => format!(" build=1.{}.{}+{}", self.rng.random_range(0..40), self.rng.random_range(0..20), self.hex(7)),
            20 => format!(
                " zone={}{}",
                *REGIONS.choose(&mut self.rng).unwrap(),
                *["a", "b", "c"].choose(&mut self.rng).unwrap()
            ),
            21 => {
                format!(" k8s_node=ip-10-0-{}-{}.internal", self.rng.random_range(0..64), self.rng.random_range(1..255))
            }
            22 => format!(" namespace={}", *["shop", "platform", "payments", "edge"].choose(&mut self.rng).unwrap()),
            23 => format!(
                " content_type={}",
                *["application/json", "text/html; charset=utf-8", "application/grpc"].choose(&mut self.rng).unwrap()
            ),
            24 => format!(
                " accept_language={}",
                *["en-US,en;q=0.9", "de-DE,de;q=0.8", "fr-FR"].choose(&mut self.rng).unwrap()
            ),
            25 => format!(" retry_count={}", self.rng.random_range(0..3)),
            26 => format!(" queue_depth={}", self.rng.random_range(0..256)),
            27 => format!(" gc_pause_ms={:.2}", self.rng.random_range(0.0..12.0f64)),
            _ => format!(" heap_mb={}", self.rng.random_range(64..4096)),
        };
        out.push_str(&token);
    }

    fn path(&mut self) -> String {
        let path = *PATHS.choose(&mut self.rng).unwrap();
        path.replace("{id}", &self.rng.random_range(1..10_000_000u64).to_string())
    }

    fn hex(&mut self, digits: usize) -> String {
        let mut out = String::with_capacity(digits);
        while out.len() < digits {
            let _ = write!(out, "{:016x}", self.rng.random::<u64>());
        }
        out.truncate(digits);
        out
    }

    fn ip(&mut self) -> String {
        let [a, b, c, d]: [u8; 4] = self.rng.random();
        format!("{}.{b}.{c}.{}", 10 + a % 200, d.max(1))
    }
}

/// `host-00042`: the name of source number 42.
pub fn host_name(source: u64) -> String {
    format!("host-{source:05}")
}

/// A source always runs the same service.
fn service_of(source: u64) -> &'static str {
    SERVICES[(mix(source) % SERVICES.len() as u64) as usize]
}

/// A source keeps one run id for a whole workload, as a process does until it restarts.
fn run_id(seed: u64, source: u64) -> String {
    format!("run-{:016x}", mix(seed.rotate_left(17) ^ source))
}

fn rfc3339(now_ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_else(|| now_ms.to_string())
}

/// SplitMix64: a fixed, well-spread hash of an integer.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Debug, Clone, Copy)]
enum SeriesKind {
    Counter,
    Gauge,
    GaugeFraction,
}

/// One series of a host, before the `instance` and `job` labels.
#[derive(Debug, Clone)]
struct SeriesShape {
    name: &'static str,
    labels: Vec<(String, String)>,
    kind: SeriesKind,
    /// Typical magnitude: per-second rate of a counter, level of a gauge.
    scale: f64,
}

/// The series one node-exporter-like host exposes (62 of them).
fn node_series_shapes() -> Vec<SeriesShape> {
    let mut shapes = Vec::new();
    let mut add = |name, labels: &[(&str, &str)], kind, scale| {
        shapes.push(SeriesShape {
            name,
            labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            kind,
            scale,
        });
    };
    for cpu in ["0", "1", "2", "3"] {
        for (mode, share) in [
            ("idle", 0.7),
            ("user", 0.15),
            ("system", 0.06),
            ("iowait", 0.02),
            ("irq", 0.005),
            ("softirq", 0.01),
            ("steal", 0.002),
            ("nice", 0.001),
        ] {
            add("node_cpu_seconds_total", &[("cpu", cpu), ("mode", mode)], SeriesKind::Counter, share);
        }
    }
    for (name, scale) in [
        ("node_memory_MemTotal_bytes", 3.4e10),
        ("node_memory_MemAvailable_bytes", 1.6e10),
        ("node_memory_Cached_bytes", 8.0e9),
        ("node_memory_Buffers_bytes", 5.0e8),
    ] {
        add(name, &[], SeriesKind::Gauge, scale);
    }
    for (name, scale) in [("node_load1", 1.2), ("node_load5", 1.0), ("node_load15", 0.9)] {
        add(name, &[], SeriesKind::GaugeFraction, scale);
    }
    for (device, mountpoint, fstype) in [("/dev/nvme0n1p2", "/", "ext4"), ("/dev/nvme1n1", "/var/lib/data", "xfs")] {
        let labels = [("device", device), ("mountpoint", mountpoint), ("fstype", fstype)];
        add("node_filesystem_size_bytes", &labels, SeriesKind::Gauge, 5.0e11);
        add("node_filesystem_avail_bytes", &labels, SeriesKind::Gauge, 2.0e11);
    }
    for device in ["eth0", "lo"] {
        add("node_network_receive_bytes_total", &[("device", device)], SeriesKind::Counter, 2.0e6);
        add("node_network_transmit_bytes_total", &[("device", device)], SeriesKind::Counter, 1.5e6);
        add("node_network_receive_packets_total", &[("device", device)], SeriesKind::Counter, 2.0e3);
        add("node_network_transmit_packets_total", &[("device", device)], SeriesKind::Counter, 1.8e3);
    }
    for device in ["nvme0n1", "nvme1n1"] {
        add("node_disk_read_bytes_total", &[("device", device)], SeriesKind::Counter, 4.0e6);
        add("node_disk_written_bytes_total", &[("device", device)], SeriesKind::Counter, 6.0e6);
        add("node_disk_io_time_seconds_total", &[("device", device)], SeriesKind::Counter, 0.05);
    }
    add("node_context_switches_total", &[], SeriesKind::Counter, 1.5e4);
    add("node_intr_total", &[], SeriesKind::Counter, 9.0e3);
    add("node_procs_running", &[], SeriesKind::Gauge, 3.0);
    add("node_procs_blocked", &[], SeriesKind::Gauge, 1.0);
    add("node_boot_time_seconds", &[], SeriesKind::Gauge, 1.7e9);
    shapes
}

/// Distinct context keys [`Workload::filler_token`] can write.
const FILLER_KEYS: usize = 29;

const SERVICES: [&str; 12] = [
    "api-gateway",
    "auth",
    "billing",
    "catalog",
    "checkout",
    "inventory",
    "notifications",
    "payments",
    "recommendations",
    "search",
    "shipping",
    "user-profile",
];

const REGIONS: [&str; 5] = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1"];

const METHODS: [&str; 10] = ["GET", "GET", "GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE"];

const PATHS: [&str; 10] = [
    "/api/v1/users/{id}",
    "/api/v1/users/{id}/orders",
    "/api/v1/orders/{id}",
    "/api/v1/cart",
    "/api/v1/search",
    "/api/v2/products/{id}/reviews",
    "/api/v1/payments/{id}/capture",
    "/api/v1/sessions",
    "/login",
    "/healthz",
];

const JOBS: [&str; 6] = [
    "reindex-products",
    "send-digest-emails",
    "expire-sessions",
    "sync-inventory",
    "compact-audit-log",
    "refresh-recommendations",
];

const TABLES: [&str; 6] = ["users", "orders", "order_items", "products", "sessions", "payments"];

const ERRORS: [&str; 10] = [
    "connection refused",
    "context deadline exceeded",
    "upstream connect error or disconnect/reset before headers",
    "no healthy upstream",
    "deadlock detected",
    "too many open files",
    "x509: certificate has expired or is not yet valid",
    "invalid token signature",
    "duplicate key value violates unique constraint orders_pkey",
    "read tcp 10.0.3.7:443: i/o timeout",
];

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_714_564_800_000;

    fn ndjson(config: WorkloadConfig, kind: RecordKind, count: usize) -> Vec<u8> {
        let mut out = Vec::new();
        Workload::new(config).unwrap().write_ndjson(kind, count, NOW_MS, &mut out);
        out
    }

    #[test]
    fn same_seed_same_records() {
        for kind in RecordKind::ALL {
            let a = ndjson(WorkloadConfig::default(), kind, 200);
            let b = ndjson(WorkloadConfig::default(), kind, 200);
            let c = ndjson(WorkloadConfig { seed: 2, ..WorkloadConfig::default() }, kind, 200);
            assert_eq!(a, b, "{kind}");
            assert_ne!(a, c, "{kind}");
        }
    }

    #[test]
    fn records_average_the_requested_size() {
        for event_bytes in [600, 1024, 4096] {
            let count = 2_000;
            let config = WorkloadConfig { event_bytes, ..WorkloadConfig::default() };
            let average = ndjson(config, RecordKind::Logs, count).len() / count;
            let low = event_bytes * 9 / 10;
            let high = event_bytes * 11 / 10;
            assert!((low..=high).contains(&average), "logs at {event_bytes}: average {average}");
        }
    }

    #[test]
    fn logs_have_the_ingest_shape_and_a_realistic_mix() {
        let mut workload = Workload::new(WorkloadConfig::default()).unwrap();
        let logs: Vec<Value> = (0..5_000).map(|_| workload.log(NOW_MS)).collect();
        for log in &logs {
            for field in ["timestamp", "source_id", "level", "message", "run_id"] {
                assert!(log[field].is_string(), "{field} in {log}");
            }
            assert!(log["attributes"].is_object());
        }
        assert_eq!(logs[0]["timestamp"], "2024-05-01T12:00:00Z");
        let share = |level: &str| logs.iter().filter(|log| log["level"] == level).count() as f64 / logs.len() as f64;
        assert!(share("info") > 0.6 && share("error") < 0.06 && share("error") > 0.0);
        assert!(share("debug") > 0.05 && share("warn") > 0.05);
        // Zipf: the first source speaks far more often than a source from the tail.
        let count = |host: &str| logs.iter().filter(|log| log["source_id"] == host).count();
        assert!(count("host-00001") > 10 * count("host-00100").max(1), "{}", count("host-00001"));
    }

    #[test]
    fn metrics_cycle_through_the_configured_series() {
        let series = 150;
        let mut workload = Workload::new(WorkloadConfig { series, ..WorkloadConfig::default() }).unwrap();
        let samples: Vec<Value> = (0..series * 2).map(|_| workload.metric(NOW_MS)).collect();
        let identity = |v: &Value| format!("{}{}", v["name"], v["labels"]);
        let distinct: std::collections::BTreeSet<String> = samples.iter().map(identity).collect();
        assert_eq!(distinct.len(), series as usize);
        assert_eq!(identity(&samples[0]), identity(&samples[series as usize]));
        assert!(samples.iter().all(|s| s["value"].is_number() && s["timestamp"] == NOW_MS));
        assert_eq!(samples[0]["labels"]["instance"], "host-00001:9100");
        assert_eq!(samples[149]["source_id"], "host-00003");
    }

    #[test]
    fn rejects_bad_parameters() {
        for config in [
            WorkloadConfig { sources: 0, ..WorkloadConfig::default() },
            WorkloadConfig { series: 0, ..WorkloadConfig::default() },
            WorkloadConfig { zipf_exponent: -1.0, ..WorkloadConfig::default() },
        ] {
            assert!(Workload::new(config).is_err());
        }
    }
}
