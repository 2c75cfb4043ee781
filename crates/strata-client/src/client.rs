//! One request at a time: encoding, compression, retries.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::backoff::{retry_after, retry_delay};
use crate::{ClientConfig, Compression, Error, Result};

/// Longest server message kept in an error, so a misbehaving server cannot fill memory or logs.
const SERVER_MESSAGE_BYTES_MAX: usize = 1024;

/// Longest raw stream name accepted.
const STREAM_NAME_BYTES_MAX: usize = 255;

/// Bodies smaller than this are compressed on the calling task; larger ones on a blocking thread.
const INLINE_COMPRESSION_BYTES_MAX: usize = 16 * 1024;

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

const NDJSON: &str = "application/x-ndjson";
const OCTET_STREAM: &str = "application/octet-stream";
const SOURCE_ID: HeaderName = HeaderName::from_static("x-source-id");

/// The kind of record, which picks the ingest endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// Log lines, sent to `/ingest/v1/logs`.
    Logs,
    /// Structured events, sent to `/ingest/v1/events`.
    Events,
    /// Metric samples, sent to `/ingest/v1/metrics`.
    Metrics,
}

impl RecordKind {
    /// Every kind, in a fixed order.
    pub const ALL: [RecordKind; 3] = [RecordKind::Logs, RecordKind::Events, RecordKind::Metrics];

    /// The last path segment of the kind's endpoint: `logs`, `events` or `metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Logs => "logs",
            RecordKind::Events => "events",
            RecordKind::Metrics => "metrics",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            RecordKind::Logs => 0,
            RecordKind::Events => 1,
            RecordKind::Metrics => 2,
        }
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The server's answer to an ingest request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestResponse {
    /// Records durably stored.
    pub accepted: u64,
    /// Records refused; each has an entry in `errors`.
    #[serde(default)]
    pub rejected: u64,
    /// Why each refused record was refused.
    #[serde(default)]
    pub errors: Vec<RecordError>,
}

/// Why the server refused one record of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordError {
    /// Position of the record in the request body (0-based).
    pub index: usize,
    /// The server's reason.
    pub error: String,
}

/// An async client for Strata's native ingest API.
///
/// Cheap to clone: clones share one connection pool. Delivery is at-least-once: a request whose answer
/// was lost (timeout, connection reset) is sent again with the same body, so its records may be
/// appended to the log twice.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: ClientConfig,
    base_url: String,
    endpoints: [Url; 3],
    producer_id: String,
    /// The sequence number of the next request.
    sequence: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url)
            .field("compression", &self.inner.config.compression)
            .finish_non_exhaustive()
    }
}

/// A request ready to be sent as many times as needed.
struct Prepared<'a> {
    url: &'a Url,
    content_type: &'static str,
    content_encoding: Option<&'static str>,
    source_id: Option<HeaderValue>,
    body: Bytes,
}

/// A failed attempt that may succeed if tried again.
enum Transient {
    Status { status: u16, message: String, retry_after: Option<Duration> },
    Transport(reqwest::Error),
}

impl Client {
    /// Builds a client; fails if the configuration is out of range or the base URL or API key is invalid.
    pub fn new(config: ClientConfig) -> Result<Client> {
        config.validate()?;
        let base_url = parse_base_url(&config.base_url)?;
        let endpoint = |kind: RecordKind| {
            Url::parse(&format!("{base_url}/ingest/v1/{kind}"))
                .map_err(|error| Error::InvalidBaseUrl { url: config.base_url.clone(), reason: error.to_string() })
        };
        let endpoints = [endpoint(RecordKind::Logs)?, endpoint(RecordKind::Events)?, endpoint(RecordKind::Metrics)?];

        let mut headers = HeaderMap::new();
        if let Some(key) = &config.api_key {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| Error::InvalidApiKey)?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(Error::HttpClient)?;

        let producer_id = config.producer_id.clone().unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()));
        let sequence = std::sync::atomic::AtomicU64::new(0);
        Ok(Client { inner: Arc::new(Inner { http, config, base_url, endpoints, producer_id, sequence }) })
    }

    /// The configuration the client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Sends `records` as one NDJSON request to the endpoint of `kind` and returns the server's answer.
    ///
    /// The records are serialized on the calling task; for large batches built elsewhere, serialize them
    /// yourself and use [`Client::send_body`]. An empty slice sends nothing.
    pub async fn send<T: Serialize>(&self, kind: RecordKind, records: &[T]) -> Result<IngestResponse> {
        if records.is_empty() {
            return Ok(IngestResponse::default());
        }
        let body = encode_ndjson(records)?;
        self.send_body(kind, Bytes::from(body)).await
    }

    /// Sends a body that is already NDJSON (one JSON record per line) to the endpoint of `kind`,
    /// compressing it as configured.
    ///
    /// Retries on 429, 503, connection errors and timeouts; 400, 401, 413 and 415 are returned at once
    /// as their own [`Error`] variant with the server's message.
    pub async fn send_body(&self, kind: RecordKind, ndjson: Bytes) -> Result<IngestResponse> {
        let compression = self.inner.config.compression;
        let body = compress_body(compression, ndjson).await?;
        self.execute(Prepared {
            url: &self.inner.endpoints[kind.index()],
            content_type: NDJSON,
            content_encoding: compression.content_encoding(),
            source_id: None,
            body,
        })
        .await
    }

    /// Sends opaque bytes to `/ingest/v1/raw/{stream}` with `X-Source-Id: source_id`.
    ///
    /// The bytes are sent as they are, never compressed, and retried like [`Client::send_body`].
    pub async fn send_raw(&self, stream: &str, source_id: &str, bytes: Bytes) -> Result<IngestResponse> {
        validate_stream(stream)?;
        let source_id_header =
            HeaderValue::from_str(source_id).map_err(|_| Error::InvalidSourceId { source_id: source_id.to_owned() })?;
        let url = Url::parse(&format!("{}/ingest/v1/raw/{stream}", self.inner.base_url)).map_err(|_| {
            Error::InvalidStream { stream: stream.to_owned(), reason: "it does not form a valid url path" }
        })?;
        self.execute(Prepared {
            url: &url,
            content_type: OCTET_STREAM,
            content_encoding: None,
            source_id: Some(source_id_header),
            body: bytes,
        })
        .await
    }

    /// Sends one request until it is answered or the retries run out. Every attempt carries the
    /// same `Idempotency-Key`, so a retry of a request the server stored but could not answer is
    /// not stored again.
    async fn execute(&self, request: Prepared<'_>) -> Result<IngestResponse> {
        let sequence = self.inner.sequence.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = HeaderValue::from_str(&format!("{}-{sequence}", self.inner.producer_id))
            .expect("producer ids are checked to be visible ASCII");
        let config = &self.inner.config;
        let initial = Duration::from_millis(config.backoff_initial_ms);
        let max = Duration::from_millis(config.backoff_max_ms);
        let mut retry = 0u32;
        loop {
            let attempts = retry + 1;
            let transient = match self.attempt(&request, &key).await {
                Ok(result) => return result,
                Err(transient) => transient,
            };
            if retry >= config.retries_max {
                return Err(match transient {
                    Transient::Status { status, message, .. } => Error::Overloaded { status, attempts, message },
                    Transient::Transport(source) => Error::Transport { url: request.url.to_string(), attempts, source },
                });
            }
            let (status, server_delay) = match &transient {
                Transient::Status { status, retry_after, .. } => (*status, *retry_after),
                Transient::Transport(_) => (0, None),
            };
            let delay = retry_delay(retry, server_delay, initial, max, rand::random::<f64>());
            tracing::warn!(
                url = %request.url,
                status,
                attempts,
                delay_ms = delay.as_millis() as u64,
                error = %TransientDisplay(&transient),
                "ingest request failed, retrying"
            );
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    /// One attempt. `Ok` is final (success or a permanent error); `Err` may be retried.
    async fn attempt(&self, request: &Prepared<'_>, key: &HeaderValue) -> Result<Result<IngestResponse>, Transient> {
        let mut builder = self
            .inner
            .http
            .post(request.url.clone())
            .header(IDEMPOTENCY_KEY, key.clone())
            .header(CONTENT_TYPE, request.content_type)
            .body(request.body.clone());
        if let Some(encoding) = request.content_encoding {
            builder = builder.header(CONTENT_ENCODING, encoding);
        }
        if let Some(source_id) = &request.source_id {
            builder = builder.header(SOURCE_ID, source_id.clone());
        }

        let response = builder.send().await.map_err(Transient::Transport)?;
        let status = response.status().as_u16();
        let server_delay = retry_after(response.headers());
        let body = response.bytes().await.map_err(Transient::Transport)?;

        let url = || request.url.to_string();
        Ok(match status {
            200..=299 => serde_json::from_slice::<IngestResponse>(&body)
                .map_err(|source| Error::InvalidResponse { url: url(), source }),
            // 409: the same request's first attempt is still being processed.
            409 | 429 | 503 => {
                return Err(Transient::Status { status, message: server_message(&body), retry_after: server_delay });
            }
            400 => Err(match serde_json::from_slice::<IngestResponse>(&body) {
                Ok(response) => Error::BadRequest { message: summarize(&response), response: Some(response) },
                Err(_) => Error::BadRequest { message: server_message(&body), response: None },
            }),
            401 => Err(Error::Unauthorized { message: server_message(&body) }),
            413 => Err(Error::PayloadTooLarge { body_bytes: request.body.len(), message: server_message(&body) }),
            415 => Err(Error::UnsupportedMediaType { message: server_message(&body) }),
            _ => Err(Error::UnexpectedStatus { status, url: url(), message: server_message(&body) }),
        })
    }
}

struct TransientDisplay<'a>(&'a Transient);

impl fmt::Display for TransientDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Transient::Status { status, message, .. } => write!(f, "status {status}: {message}"),
            Transient::Transport(error) => write!(f, "{error}"),
        }
    }
}

/// Serializes records as NDJSON: one compact JSON document per line, each line ending in `\n`.
pub fn encode_ndjson<T: Serialize>(records: &[T]) -> Result<Vec<u8>> {
    let mut body = Vec::with_capacity(records.len() * 256);
    for (index, record) in records.iter().enumerate() {
        serde_json::to_writer(&mut body, record).map_err(|source| Error::Serialize { index, source })?;
        body.push(b'\n');
    }
    Ok(body)
}

/// Checks the base URL and returns it without a trailing slash, ready for endpoint paths to be appended.
fn parse_base_url(base_url: &str) -> Result<String> {
    let invalid = |reason: &str| Error::InvalidBaseUrl { url: base_url.to_owned(), reason: reason.to_owned() };
    let url = Url::parse(base_url).map_err(|error| invalid(&error.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("a host is required"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a query or fragment is not allowed"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn validate_stream(stream: &str) -> Result<()> {
    let invalid = |reason| Error::InvalidStream { stream: stream.to_owned(), reason };
    if stream.is_empty() {
        return Err(invalid("it is empty"));
    }
    if stream.len() > STREAM_NAME_BYTES_MAX {
        return Err(invalid("it is longer than 255 bytes"));
    }
    if stream == "." || stream == ".." {
        return Err(invalid("it is a relative path component"));
    }
    if !stream.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err(invalid("only ascii letters, digits, '-', '_' and '.' are allowed"));
    }
    Ok(())
}

/// Compresses off the async runtime when the body is large enough for it to matter.
async fn compress_body(compression: Compression, body: Bytes) -> Result<Bytes> {
    if compression == Compression::None {
        return Ok(body);
    }
    if body.len() <= INLINE_COMPRESSION_BYTES_MAX {
        return compress(compression, &body).map(Bytes::from);
    }
    match tokio::task::spawn_blocking(move || compress(compression, &body)).await {
        Ok(result) => result.map(Bytes::from),
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only happens while the runtime shuts down, when nobody is left to read the result.
            Err(error) => panic!("compression task cancelled: {error}"),
        },
    }
}

/// Compresses `body` with the given codec, as [`Client::send_body`] does before sending.
pub fn compress(compression: Compression, body: &[u8]) -> Result<Vec<u8>> {
    use std::io::Write as _;

    let codec_error = |source| Error::Compress {
        compression: compression.content_encoding().unwrap_or("none"),
        body_bytes: body.len(),
        source,
    };
    match compression {
        Compression::None => Ok(body.to_vec()),
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4 + 64), flate2::Compression::default());
            encoder.write_all(body).map_err(codec_error)?;
            encoder.finish().map_err(codec_error)
        }
        Compression::Zstd => zstd::bulk::compress(body, zstd::DEFAULT_COMPRESSION_LEVEL).map_err(codec_error),
    }
}

/// The server's explanation from an error body: the `error` field of `{"error": "..."}`, else the start
/// of the body as text.
fn server_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
        return truncate(parsed.error);
    }
    if let Ok(response) = serde_json::from_slice::<IngestResponse>(body) {
        return summarize(&response);
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(SERVER_MESSAGE_BYTES_MAX)]);
    let text = text.trim();
    if text.is_empty() { "empty response body".to_owned() } else { text.to_owned() }
}

fn summarize(response: &IngestResponse) -> String {
    let mut message = format!("{} accepted, {} rejected", response.accepted, response.rejected);
    if let Some(first) = response.errors.first() {
        message.push_str(&format!("; record {}: {}", first.index, first.error));
    }
    truncate(message)
}

fn truncate(mut message: String) -> String {
    if message.len() > SERVER_MESSAGE_BYTES_MAX {
        let mut end = SERVER_MESSAGE_BYTES_MAX;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_checks() {
        let cases = [
            ("http://127.0.0.1:7878", Some("http://127.0.0.1:7878")),
            ("http://127.0.0.1:7878/", Some("http://127.0.0.1:7878")),
            ("https://strata.example.com/prefix/", Some("https://strata.example.com/prefix")),
            ("ftp://127.0.0.1", None),
            ("127.0.0.1:7878", None),
            ("http://127.0.0.1:7878/?a=b", None),
            ("not a url", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_base_url(input).ok().as_deref(), expected, "input {input:?}");
        }
    }

    #[test]
    fn stream_names() {
        for good in ["app", "audit.v2", "a-b_c", "x"] {
            assert!(validate_stream(good).is_ok(), "{good:?}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(256)] {
            assert!(matches!(validate_stream(bad), Err(Error::InvalidStream { .. })), "{bad:?}");
        }
    }

    #[test]
    fn server_messages() {
        let cases: [(&[u8], &str); 4] = [
            (br#"{"error": "bad key"}"#, "bad key"),
            (
                br#"{"accepted": 0, "rejected": 2, "errors": [{"index": 1, "error": "missing level"}]}"#,
                "0 accepted, 2 rejected; record 1: missing level",
            ),
            (b"  upstream says no\n", "upstream says no"),
            (b"", "empty response body"),
        ];
        for (body, expected) in cases {
            assert_eq!(server_message(body), expected);
        }
        assert_eq!(server_message(&[b'x'; 5000]).len(), SERVER_MESSAGE_BYTES_MAX);
    }

    #[test]
    fn ndjson_has_one_line_per_record() {
        let body = encode_ndjson(&[serde_json::json!({"a": "x\ny"}), serde_json::json!(2)]).unwrap();
        assert_eq!(body, b"{\"a\":\"x\\ny\"}\n2\n");
    }

    #[test]
    fn compression_round_trips() {
        use std::io::Read as _;

        let body = b"{\"message\":\"hello\"}\n".repeat(100);
        let gzip = compress(Compression::Gzip, &body).unwrap();
        let mut decoded = Vec::new();
        flate2::read::GzDecoder::new(&gzip[..]).read_to_end(&mut decoded).unwrap();
        assert_eq!(decoded, body);

        let zstd = compress(Compression::Zstd, &body).unwrap();
        assert_eq!(zstd::decode_all(&zstd[..]).unwrap(), body);
        assert!(zstd.len() < body.len() && gzip.len() < body.len());
    }
}
