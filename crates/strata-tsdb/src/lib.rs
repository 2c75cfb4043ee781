//! Time-series storage for float samples: the chunk codec, the series index with Prometheus
//! matchers, and the in-memory head. Blocks on disk and the query paths build on them.

pub mod chunk;
pub mod head;
pub mod index;
pub mod selector;
pub mod store;

pub use chunk::{Chunk, ChunkError, ChunkIter, encode};
pub use head::{AppendError, Head, SeriesSamples};
pub use index::{LabelSet, Matcher, MatcherError, SeriesId, SeriesIndex};
pub use selector::parse_selector;
pub use store::{Reject, Store, TsdbConfig, TsdbSink};

/// A Prometheus staleness marker: a NaN with this exact bit pattern. Chunks keep NaN payloads, so
/// it survives encoding.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
