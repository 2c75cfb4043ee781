//! Time-series storage for float samples: the series index with Prometheus matchers, the head
//! of recent samples in Gorilla chunks, immutable blocks on disk in Pcodec columns, the manifest
//! that ties blocks to log positions, and the read paths queries build on.

pub mod block;
pub mod chunk;
pub mod codec;
pub mod head;
pub mod index;
pub mod manifest;
pub mod query;
pub mod selector;
pub mod store;

pub use chunk::{Chunk, ChunkAppender, ChunkError, ChunkIter, encode};
pub use head::{AppendError, Appended, BLOCK_RANGE_MS, Head, SeriesSamples};
pub use index::{LabelSet, Matcher, MatcherError, SeriesId, SeriesIndex};
pub use query::{Agg, Limits as QueryLimits, NativeQuery, QueryAnswer, QueryError, QuerySeries};
pub use selector::parse_selector;
pub use store::{
    Error, MetricTopic, Querier, ReadLimits, Reject, SelectError, SeriesData, SeriesSet, Store, TsdbConfig, TsdbSink,
};

/// A Prometheus staleness marker: a NaN with this exact bit pattern. Chunks keep NaN payloads, so
/// it survives encoding.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
