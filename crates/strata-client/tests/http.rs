//! The client and producer against a small scripted HTTP server on 127.0.0.1.

use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use strata_client::{Client, ClientConfig, Compression, Error, IngestResponse, Producer, ProducerConfig, RecordKind};
use tokio::sync::Semaphore;

/// One request as the server saw it, body decoded.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn records(&self) -> Vec<Value> {
        self.body
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| serde_json::from_slice(line).unwrap())
            .collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }
}

/// What the server answers to request number `n` (0-based).
type Script = dyn Fn(usize, &Received) -> Reply + Send + Sync;

struct Reply {
    status: u16,
    retry_after: Option<&'static str>,
    body: Value,
}

impl Reply {
    fn new(status: u16, body: Value) -> Reply {
        Reply { status, retry_after: None, body }
    }

    fn retry_after(status: u16, seconds: &'static str) -> Reply {
        Reply { status, retry_after: Some(seconds), body: json!({"error": "overloaded"}) }
    }

    /// 200 accepting every record except those with `"bad": true`.
    fn accept_good(request: &Received) -> Reply {
        let records = request.records();
        let errors: Vec<Value> = records
            .iter()
            .enumerate()
            .filter(|(_, record)| record["bad"] == json!(true))
            .map(|(index, _)| json!({"index": index, "error": "record marked bad"}))
            .collect();
        Reply::new(200, json!({"accepted": records.len() - errors.len(), "rejected": errors.len(), "errors": errors}))
    }
}

#[derive(Clone)]
struct ServerState {
    script: Arc<Script>,
    received: Arc<Mutex<Vec<Received>>>,
    /// Each answer waits for one permit, so a test can hold answers back.
    gate: Arc<Semaphore>,
}

struct TestServer {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    gate: Arc<Semaphore>,
}

impl TestServer {
    async fn start(script: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static) -> TestServer {
        let state = ServerState {
            script: Arc::new(script),
            received: Arc::default(),
            gate: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = TestServer { url, received: Arc::clone(&state.received), gate: Arc::clone(&state.gate) };
        let app = Router::new().fallback(handle).with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        server
    }

    /// A server that answers nothing until `release` is called.
    async fn start_gated(script: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static) -> TestServer {
        let server = TestServer::start(script).await;
        server.gate.forget_permits(Semaphore::MAX_PERMITS);
        server
    }

    fn release(&self, answers: usize) {
        self.gate.add_permits(answers);
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn config(&self) -> ClientConfig {
        ClientConfig {
            backoff_initial_ms: 1,
            backoff_max_ms: 20,
            request_timeout_ms: 5_000,
            ..ClientConfig::new(&self.url)
        }
    }

    fn client(&self) -> Client {
        Client::new(self.config()).unwrap()
    }
}

async fn handle(State(state): State<ServerState>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let body = match headers.get("content-encoding").map(|value| value.to_str().unwrap()) {
        None => body.to_vec(),
        Some("gzip") => {
            let mut decoded = Vec::new();
            flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut decoded).unwrap();
            decoded
        }
        Some("zstd") => zstd::decode_all(&body[..]).unwrap(),
        Some(other) => panic!("unexpected content-encoding {other}"),
    };
    let request = Received { path: uri.path().to_owned(), headers, body };
    let n = {
        let mut received = state.received.lock().unwrap();
        received.push(request.clone());
        received.len() - 1
    };
    state.gate.acquire().await.unwrap().forget();
    let reply = (state.script)(n, &request);
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), axum::Json(reply.body)).into_response();
    if let Some(seconds) = reply.retry_after {
        response.headers_mut().insert("retry-after", seconds.parse().unwrap());
    }
    response
}

fn logs(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"timestamp": 1_700_000_000_000i64 + i as i64, "source_id": "host-1", "level": "info", "message": format!("line {i}")}))
        .collect()
}

#[tokio::test]
async fn retries_503_honouring_retry_after_then_succeeds() {
    let server =
        TestServer::start(|n, request| if n < 2 { Reply::retry_after(503, "1") } else { Reply::accept_good(request) })
            .await;
    let client = Client::new(ClientConfig { backoff_max_ms: 300, ..server.config() }).unwrap();

    let started = Instant::now();
    let response = client.send(RecordKind::Logs, &logs(2)).await.unwrap();

    assert_eq!(response, IngestResponse { accepted: 2, rejected: 0, errors: vec![] });
    let received = server.received();
    assert_eq!(received.len(), 3);
    assert!(received.iter().all(|request| request.body == received[0].body), "a retry resends the same body");
    assert!(received.iter().all(|request| request.path == "/ingest/v1/logs"));
    let key = received[0].header("idempotency-key").expect("every request has a key").to_owned();
    assert!(received.iter().all(|r| r.header("idempotency-key") == Some(&key)), "a retry resends the same key");
    // Retry-After: 1 capped at backoff_max_ms = 300 ms, twice; the 1 ms backoff alone would be far shorter.
    assert!(started.elapsed() >= Duration::from_millis(600), "waited {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(2), "Retry-After is capped at backoff_max_ms");
}

#[tokio::test]
async fn each_request_has_its_own_key_and_a_busy_key_is_retried() {
    // 409: the server is still processing the same key's first attempt.
    let server =
        TestServer::start(|n, request| if n == 1 { Reply::retry_after(409, "0") } else { Reply::accept_good(request) })
            .await;
    let client = Client::new(ClientConfig { producer_id: Some("shipper-7".to_owned()), ..server.config() }).unwrap();
    client.send(RecordKind::Logs, &logs(1)).await.unwrap();
    client.send(RecordKind::Logs, &logs(1)).await.unwrap();
    let keys: Vec<String> = server.received().iter().map(|r| r.header("idempotency-key").unwrap().to_owned()).collect();
    assert_eq!(keys, ["shipper-7-0", "shipper-7-1", "shipper-7-1"]);
    let bad = Client::new(ClientConfig { producer_id: Some("has space".to_owned()), ..server.config() });
    assert!(matches!(bad, Err(Error::InvalidConfig { field: "producer_id", .. })), "{bad:?}");
}

#[tokio::test]
async fn gives_up_after_retries_max_when_still_overloaded() {
    let server = TestServer::start(|_, _| Reply::retry_after(429, "0")).await;
    let client = Client::new(ClientConfig { retries_max: 2, ..server.config() }).unwrap();

    let error = client.send(RecordKind::Metrics, &logs(1)).await.unwrap_err();

    assert!(
        matches!(&error, Error::Overloaded { status: 429, attempts: 3, message } if message == "overloaded"),
        "{error:?}"
    );
    assert_eq!(server.received().len(), 3);
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    type Check = fn(&Error) -> bool;
    let cases: [(u16, Check); 4] = [
        (400, |e| matches!(e, Error::BadRequest { message, response: None } if message == "server says 400")),
        (401, |e| matches!(e, Error::Unauthorized { message } if message == "server says 401")),
        (
            413,
            |e| matches!(e, Error::PayloadTooLarge { message, body_bytes } if message == "server says 413" && *body_bytes > 0),
        ),
        (415, |e| matches!(e, Error::UnsupportedMediaType { message } if message == "server says 415")),
    ];
    for (status, expected) in cases {
        // Refuses once, then would accept: a retry would turn the error into a success.
        let server = TestServer::start(move |n, request| {
            if n == 0 {
                Reply::new(status, json!({"error": format!("server says {status}")}))
            } else {
                Reply::accept_good(request)
            }
        })
        .await;

        let error = server.client().send(RecordKind::Events, &logs(1)).await.unwrap_err();

        assert!(expected(&error), "status {status}: {error:?}");
        assert!(error.is_permanent());
        assert_eq!(server.received().len(), 1, "status {status} must not be retried");
    }
}

#[tokio::test]
async fn bad_request_keeps_per_record_errors() {
    let server = TestServer::start(|_, _| {
        Reply::new(400, json!({"accepted": 0, "rejected": 1, "errors": [{"index": 0, "error": "missing field level"}]}))
    })
    .await;

    let error = server.client().send(RecordKind::Logs, &logs(1)).await.unwrap_err();

    let Error::BadRequest { message, response: Some(response) } = error else {
        panic!("{error:?}");
    };
    assert_eq!(message, "0 accepted, 1 rejected; record 0: missing field level");
    assert_eq!(response.errors[0].error, "missing field level");
}

#[tokio::test]
async fn connection_errors_are_retried() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let client = Client::new(ClientConfig {
        retries_max: 2,
        backoff_initial_ms: 1,
        backoff_max_ms: 5,
        ..ClientConfig::new(url)
    })
    .unwrap();

    let error = client.send(RecordKind::Logs, &logs(1)).await.unwrap_err();

    assert!(matches!(error, Error::Transport { attempts: 3, .. }), "{error:?}");
}

#[tokio::test]
async fn sends_api_key_content_type_and_compressed_bodies() {
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let server = TestServer::start(|_, request| Reply::accept_good(request)).await;
        let client =
            Client::new(ClientConfig { api_key: Some("secret-key".to_owned()), compression, ..server.config() })
                .unwrap();

        let response = client.send(RecordKind::Logs, &logs(3)).await.unwrap();

        assert_eq!(response.accepted, 3, "{compression}");
        let request = &server.received()[0];
        assert_eq!(request.records(), logs(3), "{compression}");
        assert_eq!(request.header("authorization"), Some("Bearer secret-key"));
        assert_eq!(request.header("content-type"), Some("application/x-ndjson"));
        assert_eq!(request.header("content-encoding"), compression.content_encoding());
    }
}

#[tokio::test]
async fn sends_raw_bytes_with_source_id() {
    let server = TestServer::start(|_, _| Reply::new(200, json!({"accepted": 1}))).await;

    let response =
        server.client().send_raw("audit.v1", "host-00042", Bytes::from_static(b"\x00\x01opaque")).await.unwrap();

    assert_eq!(response.accepted, 1);
    let request = &server.received()[0];
    assert_eq!(request.path, "/ingest/v1/raw/audit.v1");
    assert_eq!(request.header("x-source-id"), Some("host-00042"));
    assert_eq!(request.body, b"\x00\x01opaque");
    let error = server.client().send_raw("../etc", "h", Bytes::new()).await.unwrap_err();
    assert!(matches!(error, Error::InvalidStream { .. }), "{error:?}");
}

#[tokio::test]
async fn producer_groups_records_into_batches_and_reports_each_record() {
    let server = TestServer::start(|_, request| Reply::accept_good(request)).await;
    let producer = Producer::new(
        server.client(),
        ProducerConfig { batch_records_max: 3, linger_ms: 60_000, in_flight_max: 1, ..ProducerConfig::default() },
    )
    .unwrap();

    let mut deliveries = Vec::new();
    for i in 0..7 {
        let record = json!({"i": i, "bad": i == 4});
        deliveries.push(producer.send(RecordKind::Logs, &record).await.unwrap());
    }
    producer.flush().await.unwrap();

    let batches: Vec<Vec<i64>> = server
        .received()
        .iter()
        .map(|request| request.records().iter().map(|r| r["i"].as_i64().unwrap()).collect())
        .collect();
    assert_eq!(batches, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let outcome = delivery.await;
        if i == 4 {
            // Record 4 is the second record of the second batch.
            assert!(
                matches!(&outcome, Err(Error::Rejected { index: 1, message }) if message == "record marked bad"),
                "{outcome:?}"
            );
        } else {
            assert!(outcome.is_ok(), "record {i}: {outcome:?}");
        }
    }
    producer.close().await.unwrap();
}

#[tokio::test]
async fn producer_sends_after_linger_and_by_bytes() {
    let server = TestServer::start(|_, request| Reply::accept_good(request)).await;
    let record = json!({"message": "x".repeat(100)});
    let record_bytes = serde_json::to_vec(&record).unwrap().len() + 1;
    let producer = Producer::new(
        server.client(),
        ProducerConfig {
            batch_bytes_max: record_bytes * 2,
            linger_ms: 20,
            in_flight_max: 1,
            ..ProducerConfig::default()
        },
    )
    .unwrap();

    let mut deliveries = Vec::new();
    for _ in 0..3 {
        deliveries.push(producer.send(RecordKind::Metrics, &record).await.unwrap());
    }
    for delivery in deliveries {
        delivery.await.unwrap();
    }

    let sizes: Vec<usize> = server.received().iter().map(|r| r.records().len()).collect();
    assert_eq!(sizes, vec![2, 1], "two records fill batch_bytes_max, linger sends the third");
    assert!(server.received().iter().all(|r| r.path == "/ingest/v1/metrics"));
    let too_large = json!({"message": "x".repeat(300)});
    let error = producer.send(RecordKind::Metrics, &too_large).await.unwrap_err();
    assert!(matches!(error, Error::RecordTooLarge { .. }), "{error:?}");
}

#[tokio::test]
async fn producer_keeps_kinds_in_separate_batches() {
    let server = TestServer::start(|_, request| Reply::accept_good(request)).await;
    let producer = Producer::new(server.client(), ProducerConfig::default()).unwrap();

    let a = producer.send(RecordKind::Logs, &json!({"k": "log"})).await.unwrap();
    let b = producer.send(RecordKind::Events, &json!({"k": "event"})).await.unwrap();
    producer.close().await.unwrap();
    a.await.unwrap();
    b.await.unwrap();

    let mut seen: Vec<(String, Vec<Value>)> = server.received().iter().map(|r| (r.path.clone(), r.records())).collect();
    seen.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        seen,
        vec![
            ("/ingest/v1/events".to_owned(), vec![json!({"k": "event"})]),
            ("/ingest/v1/logs".to_owned(), vec![json!({"k": "log"})]),
        ]
    );
}

#[tokio::test]
async fn producer_queue_gives_backpressure() {
    let server = TestServer::start_gated(|_, request| Reply::accept_good(request)).await;
    let producer = Producer::new(
        server.client(),
        ProducerConfig { batch_records_max: 1, queue_records_max: 2, ..ProducerConfig::default() },
    )
    .unwrap();

    let first = producer.send(RecordKind::Logs, &json!({"i": 0})).await.unwrap();
    let second = producer.send(RecordKind::Logs, &json!({"i": 1})).await.unwrap();
    let record = json!({"i": 2});
    let blocked = tokio::time::timeout(Duration::from_millis(200), producer.send(RecordKind::Logs, &record)).await;
    assert!(blocked.is_err(), "a third record must wait while two are unanswered");

    server.release(usize::MAX >> 4);
    first.await.unwrap();
    second.await.unwrap();
    let third = producer.send(RecordKind::Logs, &record).await.unwrap();
    third.await.unwrap();
    assert_eq!(server.received().len(), 3);
}

#[tokio::test]
async fn full_queue_sends_a_partial_batch_instead_of_waiting_for_linger() {
    let server = TestServer::start(|_, request| Reply::accept_good(request)).await;
    let producer = Producer::new(
        server.client(),
        ProducerConfig { batch_records_max: 10, queue_records_max: 2, linger_ms: 600_000, ..ProducerConfig::default() },
    )
    .unwrap();

    let all_sent = async {
        let mut deliveries = Vec::new();
        for i in 0..3 {
            deliveries.push(producer.send(RecordKind::Logs, &json!({"i": i})).await.unwrap());
        }
        for delivery in deliveries.drain(..2) {
            delivery.await.unwrap();
        }
        deliveries
    };
    let rest = tokio::time::timeout(Duration::from_secs(10), all_sent)
        .await
        .expect("a full queue must not wait for linger_ms");

    assert_eq!(server.received()[0].records().len(), 2);
    producer.close().await.unwrap();
    for delivery in rest {
        delivery.await.unwrap();
    }
}

#[tokio::test]
async fn whole_batch_failure_reaches_every_delivery() {
    let server = TestServer::start(|_, _| Reply::new(401, json!({"error": "invalid api key"}))).await;
    let producer = Producer::new(server.client(), ProducerConfig::default()).unwrap();

    let a = producer.send(RecordKind::Logs, &json!({"i": 0})).await.unwrap();
    let b = producer.send(RecordKind::Logs, &json!({"i": 1})).await.unwrap();
    producer.flush().await.unwrap();

    for outcome in [a.await, b.await] {
        let Err(Error::BatchFailed { records: 2, source }) = outcome else {
            panic!("{outcome:?}");
        };
        assert!(matches!(&*source, Error::Unauthorized { message } if message == "invalid api key"));
    }
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn close_sends_queued_records_then_refuses_new_ones() {
    let server = TestServer::start(|_, request| Reply::accept_good(request)).await;
    let producer =
        Producer::new(server.client(), ProducerConfig { linger_ms: 60_000, ..ProducerConfig::default() }).unwrap();
    let other_handle = producer.clone();

    let queued = producer.send(RecordKind::Logs, &json!({"i": 0})).await.unwrap();
    producer.close().await.unwrap();

    queued.await.unwrap();
    assert_eq!(server.received().len(), 1);
    let error = other_handle.send(RecordKind::Logs, &json!({"i": 1})).await.unwrap_err();
    assert!(matches!(error, Error::Closed), "{error:?}");
    assert!(matches!(other_handle.flush().await, Err(Error::Closed)));
    other_handle.close().await.unwrap();
}
