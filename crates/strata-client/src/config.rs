//! Client configuration.

use std::fmt;

use crate::{Error, Result};

/// The address a Strata server listens on by default.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:7878";

/// How request bodies are compressed before they are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Send bodies as they are.
    #[default]
    None,
    /// `Content-Encoding: gzip`.
    Gzip,
    /// `Content-Encoding: zstd`.
    Zstd,
}

impl Compression {
    /// The `Content-Encoding` header value, `None` when uncompressed.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.content_encoding().unwrap_or("none"))
    }
}

/// Settings for a [`Client`](crate::Client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Server address, e.g. `http://127.0.0.1:7878`; a path prefix is kept.
    pub base_url: String,
    /// Sent as `Authorization: Bearer <key>`; `None` for a server running without auth.
    pub api_key: Option<String>,
    /// Compression of request bodies.
    pub compression: Compression,
    /// Time allowed for one attempt, from connecting to reading the whole answer.
    pub request_timeout_ms: u64,
    /// Retries after the first attempt on 429, 503, connection errors and timeouts.
    pub retries_max: u32,
    /// Delay before the first retry; it doubles on each further retry.
    pub backoff_initial_ms: u64,
    /// Upper bound on any delay between attempts, including one asked for by `Retry-After`.
    pub backoff_max_ms: u64,
    /// Names this producer in the `Idempotency-Key` of its requests (`<producer id>-<sequence>`);
    /// `None` draws a random one per client. Two producers must never share one.
    pub producer_id: Option<String>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key: None,
            compression: Compression::None,
            request_timeout_ms: 30_000,
            retries_max: 5,
            backoff_initial_ms: 100,
            backoff_max_ms: 10_000,
            producer_id: None,
        }
    }
}

impl ClientConfig {
    /// A default configuration for the server at `base_url`.
    pub fn new(base_url: impl Into<String>) -> Self {
        ClientConfig { base_url: base_url.into(), ..ClientConfig::default() }
    }

    /// Checks that every limit is in range.
    pub fn validate(&self) -> Result<()> {
        if self.request_timeout_ms == 0 {
            return Err(invalid("request_timeout_ms", self.request_timeout_ms, "must be at least 1"));
        }
        if self.backoff_initial_ms == 0 {
            return Err(invalid("backoff_initial_ms", self.backoff_initial_ms, "must be at least 1"));
        }
        if self.backoff_max_ms < self.backoff_initial_ms {
            return Err(invalid("backoff_max_ms", self.backoff_max_ms, "must be at least backoff_initial_ms"));
        }
        if let Some(id) = &self.producer_id
            && (id.is_empty() || id.len() > 200 || !id.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(invalid("producer_id", id, "must be 1 to 200 visible ASCII characters"));
        }
        Ok(())
    }
}

pub(crate) fn invalid(field: &'static str, value: impl fmt::Display, reason: &'static str) -> Error {
    Error::InvalidConfig { field, value: value.to_string(), reason }
}
