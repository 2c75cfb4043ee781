//! The durable, partitioned, replayable log: the source of truth every store is rebuilt from.
//!
//! [`Log`] is the trait the rest of Strata speaks; [`EmbeddedLog`] implements it with segment files
//! on the local disk (see `DESIGN.md` beside this crate for the write path and crash behaviour).
//! An append resolves only once its records are fsync'd; a reader never sees a record that is not.

mod coming;
pub mod disk;
mod embedded;
pub mod format;
mod groups;
mod partition;
mod priority;

use std::path::PathBuf;

use strata_model::TopicSpec;

pub use coming::Announced;
pub use embedded::EmbeddedLog;
pub use format::{Codec, EncodedRecords};
pub use groups::validate_group_name;
pub use priority::ThreadPriority;

/// One record of the log: who sent it, when it happened, and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Event time given by the producer, Unix nanoseconds.
    pub timestamp_ns: i64,
    pub tenant: String,
    pub source_id: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub payload: Vec<u8>,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_slice())
    }
}

/// A record read back, with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: u64,
    /// When the log appended the record, Unix milliseconds.
    pub append_time_ms: i64,
    pub record: Record,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendAck {
    pub base_offset: u64,
    pub count: u32,
}

/// What one read returned.
#[derive(Debug, Clone, Default)]
pub struct ReadResult {
    pub records: Vec<StoredRecord>,
    /// The offset to read from next.
    pub next_offset: u64,
    /// The partition's end (the offset the next append will get) when the read ran.
    pub end_offset: u64,
    /// Encoded bytes read, batch headers included.
    pub bytes: u64,
}

/// The state of one partition, for inspection and lag.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionInfo {
    pub partition: u32,
    /// The first offset still in the log (older ones were removed by retention).
    pub earliest_offset: u64,
    /// The offset the next appended record will get.
    pub latest_offset: u64,
    pub bytes: u64,
    pub segments: usize,
    /// Set when an I/O error stopped appends to this partition until restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// The state of one topic.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: Vec<PartitionInfo>,
}

/// A committed consumer-group position: the next offset the group will read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

/// What a retention pass removed from one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRemoved {
    pub topic: String,
    pub partition: u32,
    pub segments: usize,
    pub bytes: u64,
}

/// Configuration of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub name: String,
    pub partitions: u32,
    /// Segments whose newest record was appended longer ago are deleted. `None` keeps them.
    pub retention_ms: Option<u64>,
    /// Oldest segments are deleted while a partition holds more. `None` keeps them.
    pub retention_bytes: Option<u64>,
    /// How the topic's batches are compressed.
    pub codec: Codec,
}

impl TopicConfig {
    /// A topic as its declaration has it, with `partitions` partitions unless it declares its
    /// own count.
    pub fn declared(spec: &TopicSpec, partitions: u32) -> TopicConfig {
        TopicConfig {
            name: spec.name.to_string(),
            partitions: spec.partitions.unwrap_or(partitions),
            retention_ms: spec.retention_ms,
            retention_bytes: None,
            codec: spec.compression.into(),
        }
    }
}

/// The default `group_commit_interval_us`: at most 200 fsyncs a second per partition busy with
/// many producers (a lone producer is never held; see `LogConfig::group_commit_interval_us`).
/// An fsync is cheap in time on a fast disk and dear in CPU (a flush request through the
/// kernel's block layer and, in a virtual machine, the hypervisor): small requests each fsynced
/// alone spent a quarter of their ingest CPU there, and at 2 ms, 100-record requests from 32
/// connections still spent about 2.5 µs a record in the partition writers against 1.7 at 5 ms
/// (BENCHMARKS.md, the shippers' protocols). The price is up to 5 ms more before an
/// acknowledgement under that load, where requests queue for longer than that anyway. Kafka's
/// producers linger as long by default.
pub const GROUP_COMMIT_INTERVAL_US_DEFAULT: u64 = 5_000;

/// Configuration of the embedded log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub dir: PathBuf,
    pub topics: Vec<TopicConfig>,
    /// A segment is rolled before it would grow past this size.
    pub segment_bytes_max: u64,
    /// A segment is rolled once its first batch is older than this.
    pub segment_age_ms: u64,
    /// An offset and a time index entry is written every this many bytes of batches.
    pub index_interval_bytes: u64,
    /// Append requests waiting for one partition's writer.
    pub append_queue_max: usize,
    /// How long an append waits for room in a full queue before it fails as overloaded.
    pub append_wait_ms: u64,
    /// Bytes of batches one group commit (one fsync) covers at most.
    pub group_commit_bytes_max: usize,
    /// A partition's writer starts a group commit at most this often while several producers
    /// keep appending: an append that finds the previous group (of more than one append)
    /// started less than this long ago waits for the rest of the interval, and the appends that
    /// arrive meanwhile share its fsync. An append after a quiet interval, or after a group of
    /// one, is written at once. 0 writes every group as soon as it is taken.
    pub group_commit_interval_us: u64,
    /// The largest batch accepted, header included. Larger appends must be split by the caller.
    pub batch_bytes_max: u32,
    /// Compress a topic's batches when their segment is sealed, on a background thread at the
    /// lowest CPU priority, rather than before each append: acknowledgements never wait for
    /// compression, and a consumer that keeps up reads the active segment without inflating it.
    pub compress_sealed: bool,
    /// Bytes of sealed segments waiting for compression past which batches are compressed
    /// before they are appended again, until the background catches up: what bounds the disk an
    /// ingest burst longer than the CPU's spare time can take uncompressed.
    pub compress_backlog_bytes_max: u64,
    /// With `compress_sealed`, an active segment of at least 1 MiB that took no append for this
    /// long is sealed, so that it is compressed too.
    pub segment_idle_ms: u64,
    /// Appends are refused (`Error::DiskFull`, retryable) while the log's file system has less
    /// than this many bytes free, before a write could fail half-way and stop the partition; they
    /// are taken again once retention or an operator frees a quarter of it more. 0 turns the
    /// floor off.
    pub disk_free_bytes_min: u64,
}

impl LogConfig {
    /// Defaults for a data directory: every declared topic (`TopicSpec::ALL`) with `partitions`
    /// each, and its declared codec and retention.
    pub fn new(dir: impl Into<PathBuf>, partitions: u32) -> Self {
        let topics = TopicSpec::ALL.iter().map(|spec| TopicConfig::declared(spec, partitions)).collect();
        LogConfig {
            dir: dir.into(),
            topics,
            segment_bytes_max: 128 << 20,
            segment_age_ms: 3600 * 1000,
            index_interval_bytes: 4096,
            append_queue_max: 1024,
            append_wait_ms: 2000,
            group_commit_bytes_max: 8 << 20,
            group_commit_interval_us: GROUP_COMMIT_INTERVAL_US_DEFAULT,
            batch_bytes_max: 96 << 20,
            compress_sealed: true,
            compress_backlog_bytes_max: 1 << 30,
            segment_idle_ms: 10_000,
            disk_free_bytes_min: DISK_FREE_BYTES_MIN_DEFAULT,
        }
    }
}

/// The default `disk_free_bytes_min`: room for the other stores' files (index commits, blocks,
/// state files) once the log stops taking appends.
pub const DISK_FREE_BYTES_MIN_DEFAULT: u64 = 256 << 20;

/// Everything that can go wrong in the log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition { topic: String, partition: u32 },
    #[error("offset {requested} of {topic}/{partition} is outside [{earliest}, {latest}]")]
    OffsetOutOfRange { topic: String, partition: u32, requested: u64, earliest: u64, latest: u64 },
    #[error("append queue of {topic}/{partition} is full")]
    Overloaded { topic: String, partition: u32 },
    #[error("record {field} is {len} bytes, more than the format allows ({max})")]
    RecordTooLarge { field: &'static str, len: usize, max: usize },
    #[error("batch is {len} bytes, more than batch_bytes_max ({max})")]
    BatchTooLarge { len: usize, max: u32 },
    #[error("corrupt batch in {path} at byte {position}: {reason}")]
    Corrupt { path: PathBuf, position: u64, reason: String },
    #[error(
        "no room for appends to {topic}/{partition}: {free} bytes free on the log's disk, below log.disk_free_bytes_min ({min})"
    )]
    DiskFull { topic: String, partition: u32, free: u64, min: u64 },
    #[error("partition {topic}/{partition} stopped after an i/o error and needs a restart: {reason}")]
    Failed { topic: String, partition: u32, reason: String },
    #[error("the log is shut down")]
    Closed,
    #[error("records cannot be added to a batch once it is compressed")]
    Compressed,
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("consumer group name {0:?} must be 1 to 128 of [A-Za-z0-9._-] and not start with '.'")]
    GroupName(String),
    #[error("invalid log configuration: {0}")]
    Config(String),
    #[error(
        "log directory {} is in use by another process, most likely another strata server with the same \
         data directory: stop that one, or give this one another data directory",
        dir.display()
    )]
    Locked { dir: PathBuf },
    #[error("file {path} is not valid: {reason}")]
    Metadata { path: PathBuf, reason: String },
    #[error(transparent)]
    State(#[from] strata_durable::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

/// The log as the rest of Strata uses it. The embedded implementation keeps it on the local disk;
/// a Kafka implementation keeps it in Kafka topics of the same names.
#[async_trait::async_trait]
pub trait Log: Send + Sync + 'static {
    /// Topics with their partitions' offsets and sizes.
    fn topics(&self) -> Vec<TopicInfo>;

    /// The number of partitions of `topic`.
    fn partition_count(&self, topic: &str) -> Result<u32>;

    /// The codec `topic`'s batches are compressed with before they are appended (`None` while
    /// its sealed segments are compressed in the background instead): a producer that compresses
    /// them on its own threads (`EncodedRecords::compress`) spares the partition's writer the work.
    fn codec(&self, topic: &str) -> Result<Codec>;

    /// The offset the next append to a partition will get at the earliest.
    fn end_offset(&self, topic: &str, partition: u32) -> Result<u64>;

    /// Appends records to one partition as one batch. Resolves once they are durable.
    async fn append(&self, topic: &str, partition: u32, records: EncodedRecords) -> Result<AppendAck>;

    /// Says that an append to `topic` is on its way: a producer calls it before it starts on
    /// what it will append (decoding a request). A partition busy with many producers holds a
    /// group back to share its fsync only while appends are announced; once all of them have
    /// arrived it writes at once. The announcement counts until it is dropped or handed to
    /// [`Log::append_announced`].
    fn announce(&self, _topic: &str) -> Announced {
        Announced::none()
    }

    /// [`Log::append`] of an announced append: `announced` (shared by the appends of one request
    /// to several partitions) stops counting once the partition's writer has the batch.
    async fn append_announced(
        &self,
        topic: &str,
        partition: u32,
        records: EncodedRecords,
        announced: std::sync::Arc<Announced>,
    ) -> Result<AppendAck> {
        drop(announced);
        self.append(topic, partition, records).await
    }

    /// Reads records from `offset` on, about `bytes_max` bytes of them but always at least one
    /// batch when one is there. Blocking file I/O: call it off the async runtime's worker threads.
    fn read(&self, topic: &str, partition: u32, offset: u64, bytes_max: u64) -> Result<ReadResult>;

    /// Waits until the partition's end is past `offset`, or `timeout` passes. Returns the end.
    async fn wait_for(&self, topic: &str, partition: u32, offset: u64, timeout: std::time::Duration) -> Result<u64>;

    /// The first offset whose batch was appended at or after `append_time_ms` (the end if none).
    fn offset_for_time(&self, topic: &str, partition: u32, append_time_ms: i64) -> Result<u64>;

    /// Stores a consumer group's positions durably.
    async fn commit_offsets(&self, group: &str, offsets: &[GroupOffset]) -> Result<()>;

    /// A consumer group's committed positions.
    fn committed_offsets(&self, group: &str) -> Result<Vec<GroupOffset>>;

    /// Every consumer group with committed positions.
    fn groups(&self) -> Vec<String>;

    /// Deletes whole segments that are past their topic's retention.
    async fn enforce_retention(&self, now_ms: i64) -> Result<Vec<RetentionRemoved>>;
}
