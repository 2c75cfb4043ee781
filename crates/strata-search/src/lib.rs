//! Log search: the only crate that knows tantivy. A sink indexes the `logs` topic into one index
//! per tenant per UTC day; searches open only the caller's indexes for the days they touch; a tail
//! hub streams new matching lines straight from the log.

mod index;
mod keys;
mod merge;
mod query;
mod schema;
mod sink;
mod tail;
mod usage;
mod window;

use std::path::PathBuf;

pub use index::{DayIndex, Indexes, Retention, day_name, day_of, today};
pub use query::{
    BUCKETS_MAX, Bucket, Cursor, Histogram, Hit, PATTERN_BYTES_MAX, QUERY_TERMS_MAX, RELEVANCE_HITS_MAX, SearchRequest,
    SearchResponse, Sort, auto_interval_ms, histogram, parse_user_query, search,
};
pub use schema::{DOCSTORE_BLOCK_BYTES, DOCSTORE_ZSTD_LEVEL, KEYWORD_FIELDS, LogSchema};
pub use sink::{IndexerConfig, SearchSink};
pub use tail::{Subscription, TailConfig, TailEvent, TailFilter, TailHub};
pub use usage::{FieldUsage, IndexUsage, index_usage};

/// What can go wrong in search.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("query syntax error at position {position}: {reason}")]
    Query { position: usize, reason: String },
    #[error("{0}")]
    Request(String),
    #[error("the query did not finish within its time limit")]
    Timeout,
    #[error("tenant {tenant} has {max} live tails open, the limit")]
    TooManyTails { tenant: String, max: usize },
    #[error("index {path}: {source}")]
    Index { path: PathBuf, source: tantivy::TantivyError },
    #[error("index {path} is not valid: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl Error {
    /// True when the caller asked for something wrong, as opposed to a failure on our side.
    pub fn is_user_error(&self) -> bool {
        matches!(self, Error::Query { .. } | Error::Request(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
