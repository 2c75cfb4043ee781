//! The consumer runtime: reads every partition of a sink's topics and hands the records to the
//! sink, which commits its input positions together with its own data. After a crash a sink
//! resumes from the positions of its last commit, so it neither skips nor repeats a record.

mod checkpoint;
mod processor;
mod runtime;
mod stats;

use std::collections::BTreeMap;

pub use checkpoint::{Checkpoint, CheckpointDelta, CheckpointError};
pub use processor::{OutputRecord, Processor, ProcessorSink, SOURCE_POSITION_HEADER};
pub use runtime::{Consumer, ConsumerConfig, ConsumerState, ConsumerStatus, Consumers, SinkFactory, spawn_consumer};
pub use stats::StatsSink;
use strata_log::StoredRecord;

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

/// A materialised view fed from the log.
pub trait Sink: Send + 'static {
    /// The consumer group: names the sink's positions in the log and in metrics.
    fn group(&self) -> &str;

    /// The topics the sink reads.
    fn topics(&self) -> Vec<String>;

    /// The positions stored with the sink's data by its last commit. Called once per attempt, at
    /// its start, on a sink the runtime has just built.
    fn committed(&mut self) -> Result<Positions, SinkError>;

    /// Takes records read from one partition. Nothing of them needs to be durable until `commit`.
    fn write(&mut self, topic: &str, partition: u32, records: &[StoredRecord]) -> Result<(), SinkError>;

    /// Makes everything written so far durable, in one atomic step with `positions`. A sink whose
    /// data can be rebuilt from the log may persist less often than it is asked to (and resume
    /// from older positions), as long as `committed` then returns the positions of what it did.
    fn commit(&mut self, positions: &Positions) -> Result<(), SinkError>;

    /// Whether the sink lost its state (a damaged state file it set aside) and must be fed the
    /// log from the start, rather than from its consumer group's offsets. Asked after `committed`.
    fn rebuild_from_start(&self) -> bool {
        false
    }

    /// Called once when the consumer stops, after the last `commit`: a sink that persists less
    /// often than `commit` is called persists everything here, so a restart replays little.
    fn stop(&mut self, positions: &Positions) -> Result<(), SinkError> {
        let _ = positions;
        Ok(())
    }
}
