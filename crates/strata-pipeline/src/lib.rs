//! The consumer runtime: reads every partition of a sink's topics and hands the records to the
//! sink, which commits its input positions together with its own data. After a crash a sink
//! resumes from the positions of its last commit, so it neither skips nor repeats a record.
//!
//! Sinks are async-capable: each consumer thread owns a current-thread tokio runtime and drives
//! its sink's futures with `block_on`, so a sink may await I/O (an object store) while the ones
//! that only touch local files stay synchronous inside their `async fn`s. A [`TopicSink`] reads
//! one declared topic and is handed its records decoded, through the [`Typed`] adapter.

mod blocking;
mod checkpoint;
pub mod enrich;
mod kept;
mod operator;
mod processor;
pub mod rollup;
mod runtime;
pub mod sketch;
mod stats;
mod typed;

use std::collections::BTreeMap;

/// Implementations of [`Sink`] and [`TopicSink`] put this on their `impl` block.
pub use async_trait::async_trait;
pub use blocking::BlockingSink;
pub use checkpoint::{Checkpoint, CheckpointDelta, CheckpointError};
pub use operator::{EPOCH_HEADER, Emit, Operator, OperatorSink};
pub use processor::{OutputRecord, Processor, ProcessorSink, SOURCE_POSITION_HEADER};
pub use runtime::{
    Consumer, ConsumerConfig, ConsumerState, ConsumerStatus, Consumers, DiskFloor, SinkFactory, spawn_consumer,
};
pub use stats::StatsSink;
use strata_log::StoredRecord;
use strata_model::TopicSpec;
pub use typed::{Decoded, TopicSink, Typed};

/// Next offset to read, per (topic, partition).
pub type Positions = BTreeMap<(String, u32), u64>;

/// Why a sink could not take or commit records, and so what the runtime does next: retry the
/// same records (`is_retryable`), or end the attempt and restart the sink from its last commit.
/// A sink returns a retryable error only when the call applied nothing, or applying it again is
/// harmless.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("i/o error on {path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("state file {path} is not valid: {reason}")]
    Corrupt { path: std::path::PathBuf, reason: String },
    #[error(transparent)]
    State(#[from] strata_durable::Error),
    /// A condition that should pass: a full disk, a busy dependency.
    #[error("{reason}")]
    Retry { reason: String },
}

impl SinkError {
    /// Whether trying the same call again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            SinkError::Io { .. } | SinkError::Retry { .. } => true,
            SinkError::State(e) => !e.is_damage(),
            SinkError::Corrupt { .. } => false,
        }
    }
}

/// Who keeps a sink's positions, and so what a crash can cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckpointKind {
    /// The sink stores them with its data in one atomic step (`commit`) and gives them back
    /// (`committed`): exactly once across crashes. Every store does this.
    #[default]
    WithData,
    /// The runtime stores them in `<checkpoint_dir>/<group>.positions` (see
    /// `ConsumerConfig::checkpoint_dir`) after each `commit` of the sink succeeds, and starts the
    /// sink from them. Stopped, failed or panicked, the sink resumes exactly after what its last
    /// commit made durable. A crash of the process after the sink's commit and before the
    /// runtime's write (or a stop while that write keeps failing) replays the records since the
    /// runtime's previous write: at least once across that window, which is why stores keep
    /// their positions with their data. For sinks that cannot.
    Runtime,
}

/// A materialised view fed from the log. The runtime awaits each call to its end before it makes
/// the next one, on the consumer's own thread.
#[async_trait::async_trait]
pub trait Sink: Send + 'static {
    /// The consumer group: names the sink's positions in the log and in metrics.
    fn group(&self) -> &str;

    /// The declared topics the sink reads.
    fn topics(&self) -> Vec<TopicSpec>;

    /// Who keeps the sink's positions. Asked once per attempt, at its start.
    fn checkpoint_kind(&self) -> CheckpointKind {
        CheckpointKind::WithData
    }

    /// The positions stored with the sink's data by its last commit. Called once per attempt, at
    /// its start, on a sink the runtime has just built; a sink opens its state here. With
    /// [`CheckpointKind::Runtime`] the runtime starts from the positions it kept and ignores these.
    async fn committed(&mut self) -> Result<Positions, SinkError>;

    /// Takes records read from one partition. Nothing of them needs to be durable until `commit`.
    async fn write(&mut self, topic: &str, partition: u32, records: &[StoredRecord]) -> Result<(), SinkError>;

    /// Makes everything written so far durable, in one atomic step with `positions`. A sink whose
    /// data can be rebuilt from the log may persist less often than it is asked to (and resume
    /// from older positions), as long as `committed` then returns the positions of what it did.
    async fn commit(&mut self, positions: &Positions) -> Result<(), SinkError>;

    /// Whether the sink lost its state (a damaged state file it set aside) and must be fed the
    /// log from the start, rather than from its consumer group's offsets. Asked after `committed`.
    fn rebuild_from_start(&self) -> bool {
        false
    }

    /// Whether the sink holds enough not yet committed that it should commit now rather than at
    /// the end of the commit interval (a sink that buffers what it writes bounds its memory so).
    /// Asked after each `write`.
    fn wants_commit(&self) -> bool {
        false
    }

    /// Called once when the consumer stops, after the last `commit`: a sink that persists less
    /// often than `commit` is called persists everything here, so a restart replays little.
    async fn stop(&mut self, positions: &Positions) -> Result<(), SinkError> {
        let _ = positions;
        Ok(())
    }
}
