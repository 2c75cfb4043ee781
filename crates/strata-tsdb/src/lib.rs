//! Time-series storage for float samples. This first part is the chunk codec every block and
//! head chunk will use; the series index, head, blocks and query paths build on it.

pub mod chunk;

pub use chunk::{Chunk, ChunkError, ChunkIter, encode};

/// A Prometheus staleness marker: a NaN with this exact bit pattern. Chunks keep NaN payloads, so
/// it survives encoding.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
