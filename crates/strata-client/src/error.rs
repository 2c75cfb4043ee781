//! The one error type of the client.

use std::sync::Arc;

use crate::IngestResponse;

/// A specialised `Result` whose error defaults to the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while building a client or sending records.
///
/// The variants from [`Error::BadRequest`] to [`Error::UnsupportedMediaType`] mean the server refused
/// the request for good: retrying the same body cannot succeed, so it is not retried.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configured base URL is not an absolute `http` or `https` URL.
    #[error("invalid base url {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The URL as configured.
        url: String,
        /// Why it was refused.
        reason: String,
    },

    /// A configuration value is out of its allowed range.
    #[error("invalid config: {field} = {value}: {reason}")]
    InvalidConfig {
        /// The configuration field, e.g. `batch_records_max`.
        field: &'static str,
        /// The value given.
        value: String,
        /// The allowed range.
        reason: &'static str,
    },

    /// The API key contains bytes that cannot be sent in an HTTP header.
    #[error("invalid api key: it contains characters not allowed in an http header")]
    InvalidApiKey,

    /// A raw stream name is not a plain path segment.
    #[error("invalid stream name {stream:?}: {reason}")]
    InvalidStream {
        /// The stream name given.
        stream: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A source id contains bytes that cannot be sent in an HTTP header.
    #[error("invalid source id {source_id:?}: it contains characters not allowed in an http header")]
    InvalidSourceId {
        /// The source id given.
        source_id: String,
    },

    /// The underlying HTTP client could not be built.
    #[error("failed to build the http client: {0}")]
    HttpClient(#[source] reqwest::Error),

    /// A record could not be serialized to JSON.
    #[error("failed to serialize record {index} to json: {source}")]
    Serialize {
        /// Position of the record in the slice given (0 for a single record).
        index: usize,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },

    /// Compressing a request body failed.
    #[error("failed to compress a request body of {body_bytes} bytes with {compression}: {source}")]
    Compress {
        /// The codec used.
        compression: &'static str,
        /// Size of the uncompressed body.
        body_bytes: usize,
        /// The codec's error.
        #[source]
        source: std::io::Error,
    },

    /// The request could not be delivered (connection refused or reset, timeout), and every retry failed
    /// the same way or ran out.
    #[error("request to {url} failed after {attempts} attempts: {source}")]
    Transport {
        /// The URL requested.
        url: String,
        /// How many times the request was sent.
        attempts: u32,
        /// The last transport error.
        #[source]
        source: reqwest::Error,
    },

    /// The server kept answering 429 or 503 until the retries ran out.
    #[error("server still overloaded (status {status}) after {attempts} attempts: {message}")]
    Overloaded {
        /// The last status, 429 or 503.
        status: u16,
        /// How many times the request was sent.
        attempts: u32,
        /// The server's last message.
        message: String,
    },

    /// The server answered 400: the body is malformed or none of its records could be accepted.
    #[error("request rejected by the server (status 400): {message}")]
    BadRequest {
        /// The server's message, or a summary of the per-record errors.
        message: String,
        /// The per-record answer, when the server sent one.
        response: Option<IngestResponse>,
    },

    /// The server answered 401: the API key is missing or wrong.
    #[error("api key rejected by the server (status 401): {message}")]
    Unauthorized {
        /// The server's message.
        message: String,
    },

    /// The server answered 413: the request body is larger than the server accepts.
    #[error("request body of {body_bytes} bytes too large for the server (status 413): {message}")]
    PayloadTooLarge {
        /// Size of the body as sent (after compression).
        body_bytes: usize,
        /// The server's message.
        message: String,
    },

    /// The server answered 415: it does not accept this content type or encoding.
    #[error("content type or encoding rejected by the server (status 415): {message}")]
    UnsupportedMediaType {
        /// The server's message.
        message: String,
    },

    /// The server answered a status this client has no meaning for (404, 500, ...).
    #[error("unexpected status {status} from {url}: {message}")]
    UnexpectedStatus {
        /// The status received.
        status: u16,
        /// The URL requested.
        url: String,
        /// The server's message.
        message: String,
    },

    /// A successful answer did not have the ingest response shape.
    #[error("invalid ingest response from {url}: {source}")]
    InvalidResponse {
        /// The URL requested.
        url: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },

    /// The server rejected this one record; the others in its batch may have been accepted.
    #[error("record {index} of its batch rejected by the server: {message}")]
    Rejected {
        /// Position of the record in the batch the producer sent.
        index: usize,
        /// The server's reason.
        message: String,
    },

    /// The server's counts do not account for every record of the batch, so this record's fate is unknown.
    #[error(
        "ingest response accounts for {accepted} accepted and {rejected} rejected records but the batch held {records}"
    )]
    InconsistentResponse {
        /// Records the server reported accepted.
        accepted: u64,
        /// Records the server reported rejected.
        rejected: u64,
        /// Records in the batch.
        records: usize,
    },

    /// One serialized record is larger than a whole batch may be.
    #[error("record of {record_bytes} bytes exceeds batch_bytes_max of {batch_bytes_max} bytes")]
    RecordTooLarge {
        /// Size of the serialized record.
        record_bytes: usize,
        /// The producer's limit.
        batch_bytes_max: usize,
    },

    /// The batch holding this record failed as a whole; the cause is shared by every record in it.
    #[error("batch of {records} records failed: {source}")]
    BatchFailed {
        /// Records in the failed batch.
        records: usize,
        /// Why the batch failed.
        #[source]
        source: Arc<Error>,
    },

    /// The producer was closed before the record was accepted into a batch.
    #[error("producer is closed")]
    Closed,

    /// The producer's background task stopped before the record's batch was answered (the runtime shut
    /// down or the task panicked); the record may or may not have been stored.
    #[error("producer stopped before the record's batch was acknowledged")]
    Abandoned,
}

impl Error {
    /// True when the server refused the request for good, so sending it again cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Error::BadRequest { .. }
                | Error::Unauthorized { .. }
                | Error::PayloadTooLarge { .. }
                | Error::UnsupportedMediaType { .. }
                | Error::Rejected { .. }
                | Error::RecordTooLarge { .. }
        )
    }
}
