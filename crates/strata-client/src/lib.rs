//! The Rust producer SDK for Strata's native ingest API.
//!
//! [`Client`] sends one request at a time to `/ingest/v1/{logs,events,metrics}` or
//! `/ingest/v1/raw/{stream}`, compressed with gzip or zstd if configured, and retries with exponential
//! backoff and jitter on 429, 503, connection errors and timeouts, honouring `Retry-After`.
//! [`Producer`] batches single records on top of it, with a bounded queue for backpressure.
//!
//! Delivery is exactly-once from producer to log: the server answers only once records are durably
//! stored, and a request whose answer was lost is sent again with the same body and the same
//! `Idempotency-Key` (this client's producer id and the request's sequence number), which the
//! server appends at most once within its window (10 minutes by default). Past the window, or
//! across a restart of the producer with unanswered requests, a batch may be appended twice.
//!
//! ```no_run
//! use strata_client::{Client, ClientConfig, Producer, ProducerConfig, RecordKind};
//!
//! # async fn example() -> strata_client::Result<()> {
//! let client = Client::new(ClientConfig {
//!     api_key: Some("my-key".to_owned()),
//!     ..ClientConfig::new("http://127.0.0.1:7878")
//! })?;
//! let producer = Producer::new(client, ProducerConfig::default())?;
//! let record = serde_json::json!({
//!     "timestamp": "2024-05-01T12:00:00Z",
//!     "source_id": "host-00001",
//!     "level": "info",
//!     "message": "service started",
//! });
//! let delivery = producer.send(RecordKind::Logs, &record).await?;
//! delivery.await?; // stored in the server's log
//! producer.close().await?;
//! # Ok(())
//! # }
//! ```

mod backoff;
mod client;
mod config;
mod error;
mod producer;

pub use backoff::{backoff_ceiling, backoff_delay, parse_retry_after, retry_delay};
pub use client::{Client, IngestResponse, RecordError, RecordKind, compress, encode_ndjson};
pub use config::{ClientConfig, Compression, DEFAULT_BASE_URL};
pub use error::{Error, Result};
pub use producer::{Delivery, Producer, ProducerConfig};
