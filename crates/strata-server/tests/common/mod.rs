//! Starts the real `strata` binary on 127.0.0.1 with its own data directory.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const ADMIN_TOKEN: &str = "test-admin-token";

pub struct Server {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// The OTLP gRPC listener's port.
    pub grpc_port: u16,
    pub child: Option<Child>,
    pub extra_config: String,
    pub no_auth: bool,
    /// Environment variables the server is started with, besides the admin token and log level.
    pub envs: Vec<(String, String)>,
    pub http: reqwest::blocking::Client,
}

/// The wall clock in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// The virtualenv of scripts/install-shippers.sh (its `node/` holds the npm shippers).
pub fn shippers_venv() -> String {
    std::env::var("STRATA_SHIPPERS_VENV")
        .unwrap_or_else(|_| format!("{}/.cache/strata-shippers", std::env::var("HOME").unwrap()))
}

/// A port for a server of the suite, from below Linux's ephemeral range (32768 and up), where the
/// kernel never puts the local end of an outgoing connection: a port taken from that range by
/// binding port 0 and letting go can be the local port of some test's client connection by the
/// time the server binds it. Each port is handed out once per test process and was free when
/// handed out.
pub fn free_port() -> u16 {
    use std::sync::atomic::AtomicU32;
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Test processes run one after another, but a process's ports start from its id so that
    // two suites on one machine seldom try the same ones.
    let first = (u64::from(std::process::id()) * 7919 % u64::from(COUNT)) as u32;
    let _ = NEXT.compare_exchange(u32::MAX, first, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..COUNT {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port from {FIRST} to {}", FIRST + COUNT);
}

/// The variable by which the suite's servers get four partitions (`Server::new`).
pub const PARTITIONS_ENV: &str = "STRATA_LOG_PARTITIONS";

impl Server {
    /// Starts a server; `extra_config` is TOML appended to its config file.
    pub fn start(extra_config: &str) -> Server {
        Self::start_with(extra_config, false)
    }

    pub fn start_with(extra_config: &str, no_auth: bool) -> Server {
        let mut s = Server::new(extra_config, no_auth);
        s.spawn();
        s
    }

    /// A server not started yet: set `envs`, then `spawn` or `launch` it. It runs with four
    /// partitions per topic rather than the default one, so that a request's records span
    /// partitions (a cut request appended to some of them, per-partition order and watermarks);
    /// remove the variable from `envs` to run on the default.
    pub fn new(extra_config: &str, no_auth: bool) -> Server {
        Server {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            grpc_port: free_port(),
            child: None,
            extra_config: extra_config.to_string(),
            no_auth,
            envs: vec![(PARTITIONS_ENV.into(), "4".into())],
            http: reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Starts the server and waits for it to be ready; `Err` with its log when it exits first.
    pub fn try_spawn(&mut self) -> Result<(), String> {
        self.launch();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.http.get(self.url("/readyz")).timeout(Duration::from_secs(2)).send()
                && r.status() == 200
            {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("exited with {status}:\n{}", self.server_log()));
            }
            assert!(Instant::now() < deadline, "server neither ready nor stopped in time:\n{}", self.server_log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn spawn(&mut self) {
        self.launch();
        self.wait_ready();
    }

    pub fn launch(&mut self) {
        let cfg = self.dir.path().join("strata.toml");
        std::fs::write(&cfg, &self.extra_config).unwrap();
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("server.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--config")
            .arg(&cfg)
            .env("STRATA_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("STRATA_LOG", "info")
            .env("STRATA_OTLP_GRPC_ADDR", format!("127.0.0.1:{}", self.grpc_port))
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log);
        if self.no_auth {
            cmd.arg("--no-auth");
        }
        self.child = Some(cmd.spawn().unwrap());
    }

    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.http.get(self.url("/readyz")).timeout(Duration::from_secs(2)).send()
                && r.status() == 200
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited with {status} before it was ready:\n{}", self.server_log());
            }
            assert!(Instant::now() < deadline, "server not ready in time:\n{}", self.server_log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn server_log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("server.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// SIGKILL: the process gets no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        signal(c.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "server did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_up(&self) -> bool {
        self.http.get(self.url("/healthz")).send().is_ok_and(|r| r.status() == 200)
    }

    pub fn create_tenant(&self, name: &str) -> reqwest::blocking::Response {
        self.http
            .post(self.url("/admin/v1/tenants"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .unwrap()
    }

    /// Creates a tenant and returns its API key.
    pub fn tenant_key(&self, name: &str) -> String {
        let r = self.create_tenant(name);
        assert_eq!(r.status(), 201);
        r.json::<Value>().unwrap()["api_key"].as_str().unwrap().to_string()
    }

    /// Posts a snappy-compressed remote write body as Prometheus does; the status, and the
    /// error message of a JSON error answer (else the body).
    pub fn remote_write(&self, key: &str, body: Vec<u8>) -> (u16, String) {
        let r = self
            .http
            .post(self.url("/api/v1/write"))
            .bearer_auth(key)
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "snappy")
            .header("x-prometheus-remote-write-version", "0.1.0")
            .body(body)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        let msg = serde_json::from_str::<Value>(&text).ok().and_then(|v| v["error"].as_str().map(str::to_string));
        (status, msg.unwrap_or(text))
    }

    /// Posts records as NDJSON to an ingest endpoint (`logs`, `events`, `metrics`) and returns
    /// the status.
    pub fn ingest_ndjson(&self, key: &str, kind: &str, records: &[Value]) -> u16 {
        let body: String = records.iter().map(|r| format!("{r}\n")).collect();
        let r = self
            .http
            .post(self.url(&format!("/ingest/v1/{kind}")))
            .bearer_auth(key)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .unwrap();
        r.status().as_u16()
    }

    /// Posts NDJSON `body` to the events endpoint until it is taken (200), retrying through
    /// connection errors and 5xx while the server is being killed and restarted; a 4xx fails
    /// the test. With `idempotency_key`, every retry carries it.
    pub fn post_events_until_taken(&self, key: &str, body: &str, idempotency_key: Option<&str>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut r = self
                .http
                .post(self.url("/ingest/v1/events"))
                .timeout(Duration::from_secs(5))
                .bearer_auth(key)
                .header("content-type", "application/x-ndjson");
            if let Some(k) = idempotency_key {
                r = r.header("idempotency-key", k);
            }
            match r.body(body.to_string()).send() {
                Ok(r) if r.status() == 200 => return,
                Ok(r) if r.status().is_client_error() => panic!("{}: {}", r.status(), r.text().unwrap()),
                _ => {}
            }
            assert!(Instant::now() < deadline, "the server did not take {body:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ingests native metric points as JSON; every one must be accepted.
    pub fn ingest_metrics(&self, key: &str, points: Value) {
        let n = points.as_array().unwrap().len();
        let r = self.http.post(self.url("/ingest/v1/metrics")).bearer_auth(key).json(&points).send().unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().unwrap();
        assert_eq!((status, &body["accepted"]), (200, &serde_json::json!(n)), "{body}");
    }

    /// Waits (30 s at most) until a log search for `q` finds `want` lines, and returns them;
    /// fails if it finds more.
    pub fn search_until(&self, key: &str, q: &str, want: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r =
                self.http.get(self.url("/query/v1/logs/search")).bearer_auth(key).query(&[("q", q), ("limit", "500")]);
            let v: Value = r.send().unwrap().json().unwrap();
            let hits = v["hits"].as_array().cloned().unwrap_or_default();
            if hits.len() >= want {
                assert_eq!(hits.len(), want, "{q}: {v}");
                return hits;
            }
            assert!(Instant::now() < deadline, "{q}: {} of {want} lines found: {v}", hits.len());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn admin_get(&self, path: &str) -> Value {
        let r = self.http.get(self.url(path)).bearer_auth(ADMIN_TOKEN).send().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json().unwrap()
    }

    /// Every record of a topic, read through the admin API.
    pub fn all_records(&self, topic: &str) -> Vec<Value> {
        self.records_by_partition(topic).into_values().flatten().collect()
    }

    /// Every record of a topic by partition, in offset order, read through the admin API.
    pub fn records_by_partition(&self, topic: &str) -> BTreeMap<u64, Vec<Value>> {
        let topics = self.admin_get("/admin/v1/topics");
        let t = topics["topics"].as_array().unwrap().iter().find(|t| t["name"] == topic).unwrap().clone();
        let mut out = BTreeMap::new();
        for p in t["partitions"].as_array().unwrap() {
            let id = p["partition"].as_u64().unwrap();
            let mut offset = p["earliest_offset"].as_u64().unwrap();
            let latest = p["latest_offset"].as_u64().unwrap();
            let mut records = Vec::new();
            while offset < latest {
                let v = self
                    .admin_get(&format!("/admin/v1/topics/{topic}/partitions/{id}/records?offset={offset}&limit=1000"));
                let recs = v["records"].as_array().unwrap();
                assert!(!recs.is_empty());
                records.extend(recs.iter().cloned());
                offset = v["next_offset"].as_u64().unwrap();
            }
            out.insert(id, records);
        }
        out
    }

    /// The value of one sample of `/metrics`, by its full name with labels.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = self.http.get(self.url("/metrics")).send().unwrap().text().unwrap();
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
    }

    /// Peak resident memory of the server process, in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:") * 1024
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        // KEEP_TEST_DATA=1 keeps the data directory of a failed test for a post-mortem.
        if std::thread::panicking() && std::env::var_os("KEEP_TEST_DATA").is_some() {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            eprintln!("kept {}", dir.keep().display());
        }
    }
}

/// Clients that each send numbered records, `batch` to a request, until stopped, and remember
/// which were acknowledged. A request that fails (the server was killed under it) is never
/// resent, so a record that reached the log anyway is there once.
pub struct NumberedClients {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeSet<(usize, u64)>>>,
    handles: Vec<JoinHandle<()>>,
}

impl NumberedClients {
    /// `record(client, n)` is the record numbered `n` of client `client`; `kind` is the ingest
    /// endpoint (`logs`, `events`); `pause_ms` is the wait between a client's requests.
    pub fn start(
        s: &Server,
        key: &str,
        kind: &'static str,
        clients: usize,
        batch: u64,
        pause_ms: u64,
        record: fn(usize, u64) -> Value,
    ) -> NumberedClients {
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<BTreeSet<(usize, u64)>>> = Arc::default();
        let url = s.url(&format!("/ingest/v1/{kind}"));
        let handles = (0..clients)
            .map(|c| {
                let (stop, acked, key, url) = (stop.clone(), acked.clone(), key.to_string(), url.clone());
                std::thread::spawn(move || {
                    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
                    let mut seq = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let body: String = (seq..seq + batch).map(|n| format!("{}\n", record(c, n))).collect();
                        let r = http
                            .post(&url)
                            .bearer_auth(&key)
                            .header("content-type", "application/x-ndjson")
                            .body(body)
                            .send();
                        match r {
                            Ok(r) if r.status() == 200 => {
                                let v: Value = r.json().unwrap();
                                assert_eq!(v["accepted"], batch, "{v}");
                                acked.lock().unwrap().extend((seq..seq + batch).map(|n| (c, n)));
                            }
                            _ => std::thread::sleep(Duration::from_millis(5)),
                        }
                        seq += batch;
                        std::thread::sleep(Duration::from_millis(pause_ms));
                    }
                })
            })
            .collect();
        NumberedClients { stop, acked, handles }
    }

    /// Stops the clients; the (client, number) of every record acknowledged.
    pub fn stop(self) -> BTreeSet<(usize, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles {
            h.join().unwrap();
        }
        self.acked.lock().unwrap().clone()
    }
}

pub fn signal(pid: u32, sig: i32) {
    let status = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status().unwrap();
    assert!(status.success());
}

pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}

/// A peer server the test runs beside Strata (Prometheus, vmalert): its own directory and port on
/// 127.0.0.1, killed on drop, its output printed when the test fails.
pub struct Peer {
    pub name: &'static str,
    pub dir: tempfile::TempDir,
    pub port: u16,
    child: Child,
}

impl Peer {
    /// Starts `program` with `args` (where `{port}` and `{dir}` are replaced) and waits until
    /// `ready_path` answers 200, or with an empty `ready_path` until the port takes connections.
    /// `install` names the script that installs the program.
    pub fn start(name: &'static str, program: &str, args: &[&str], ready_path: &str, install: &str) -> Peer {
        Peer::start_with_files(name, program, args, &[], ready_path, install)
    }

    /// As `start`, with `files` (name, contents, where `{port}` is replaced) written into its
    /// directory first.
    pub fn start_with_files(
        name: &'static str,
        program: &str,
        args: &[&str],
        files: &[(&str, &str)],
        ready_path: &str,
        install: &str,
    ) -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        for (file, contents) in files {
            std::fs::write(dir.path().join(file), contents.replace("{port}", &port.to_string())).unwrap();
        }
        let log = std::fs::File::create(dir.path().join("output.log")).unwrap();
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("{port}", &port.to_string()).replace("{dir}", &dir.path().to_string_lossy()))
            .collect();
        let child = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program} ({e}): run {install}"));
        let mut peer = Peer { name, dir, port, child };
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = if ready_path.is_empty() {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            } else {
                http.get(peer.url(ready_path)).send().is_ok_and(|r| r.status() == 200)
            };
            if ready {
                return peer;
            }
            if let Some(status) = peer.child.try_wait().unwrap() {
                panic!("{name} exited with {status} before it was ready:\n{}", peer.output());
            }
            assert!(Instant::now() < deadline, "{name} not ready in 60 s:\n{}", peer.output());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("output.log")).unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- {} output ---\n{}--- end of {} output ---", self.name, self.output(), self.name);
        }
    }
}

impl Peer {
    /// Prometheus (Debian's 2.42) with no scrape targets, taking samples by remote write only:
    /// the reference a test compares Strata's answers with.
    pub fn prometheus_receiver() -> Peer {
        Peer::start_with_files(
            "prometheus",
            "prometheus",
            &[
                "--config.file={dir}/prometheus.yml",
                "--storage.tsdb.path={dir}/data",
                "--web.listen-address=127.0.0.1:{port}",
                "--web.enable-remote-write-receiver",
            ],
            &[("prometheus.yml", "global:\n  scrape_interval: 15s\n")],
            "/-/ready",
            "scripts/install-prometheus.sh",
        )
    }

    /// Sends a snappy-compressed remote-write request, as Prometheus's own sender does.
    pub fn remote_write(&self, body: Vec<u8>) {
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        let r = http
            .post(self.url("/api/v1/write"))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body)
            .send()
            .unwrap();
        let status = r.status();
        assert_eq!(status, 204, "{} remote write: {}", self.name, r.text().unwrap_or_default());
    }
}
