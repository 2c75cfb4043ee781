//! Processors: steps that consume one topic and append to another, exactly once.
//!
//! How: the records a processor makes from one read of input partition `p` are appended as one
//! batch to output partition `p mod n`, and the last record of that batch carries, in the
//! `strata-source-position` header, the input position the batch reaches (processor, topic,
//! partition, next offset). A batch is durable whole or not at all, so the output topic itself
//! records how far each input partition has been applied. At start the processor reads the
//! output partitions from where its last hint left them (a state file written at each commit,
//! which may be stale) to their end, and resumes each input partition from the furthest position
//! it finds there. An input read whose batch was made durable is therefore never processed again,
//! and one whose batch was not is processed again from scratch: every input record's output is in
//! the output topic once, in input order, whatever moment the process dies at.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use strata_log::{EncodedRecords, Log, StoredRecord};
use strata_model::TopicSpec;

use crate::{Positions, Sink, SinkError};

/// The header of an output record that says how far its processor's input is applied.
pub const SOURCE_POSITION_HEADER: &str = "strata-source-position";

/// One output record; its tenant is the input record's.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputRecord {
    pub timestamp_ns: i64,
    pub source_id: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub payload: Vec<u8>,
}

/// A step from one topic to another.
pub trait Processor: Send + 'static {
    /// Names the processor: its consumer group, its state file and its position headers.
    fn name(&self) -> &str;
    /// The declared topic it reads.
    fn input(&self) -> TopicSpec;
    /// The declared topic it appends to.
    fn output(&self) -> TopicSpec;
    /// The output records of one input record: none, one or several. It must give the same
    /// output for the same input, as a record may be processed again after a crash (its earlier
    /// output then never reached the log).
    fn process(&mut self, record: &StoredRecord, out: &mut Vec<OutputRecord>) -> Result<(), SinkError>;
}

/// The hint a processor keeps beside the log: positions as of its last commit, and the output
/// offsets from which the headers after them are to be read.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Hint {
    version: u32,
    positions: Vec<(String, u32, u64)>,
    output_scanned_to: Vec<(u32, u64)>,
}

const HINT_VERSION: u32 = 1;
/// Bytes read at a time when the output is scanned at start.
const SCAN_READ_BYTES: u64 = 4 << 20;

/// Runs a [`Processor`] as a sink of the consumer runtime.
pub struct ProcessorSink<P: Processor> {
    processor: P,
    log: Arc<dyn Log>,
    hint_path: PathBuf,
    output_partitions: u32,
    out: Vec<OutputRecord>,
}

impl<P: Processor> ProcessorSink<P> {
    /// `state_dir` keeps the processor's hint file, `<name>.processor`.
    pub fn new(processor: P, log: Arc<dyn Log>, state_dir: &std::path::Path) -> ProcessorSink<P> {
        let hint_path = state_dir.join(format!("{}.processor", processor.name()));
        ProcessorSink { processor, log, hint_path, output_partitions: 0, out: Vec::new() }
    }

    fn header_value(&self, topic: &str, partition: u32, next_offset: u64) -> Vec<u8> {
        format!("{}\t{topic}\t{partition}\t{next_offset}", self.processor.name()).into_bytes()
    }

    /// The input position a record's header says is applied, if it is this processor's.
    fn position_of(&self, record: &StoredRecord) -> Option<((String, u32), u64)> {
        let value = std::str::from_utf8(record.record.header(SOURCE_POSITION_HEADER)?).ok()?;
        let mut parts = value.split('\t');
        if parts.next()? != self.processor.name() {
            return None;
        }
        let topic = parts.next()?.to_string();
        let partition = parts.next()?.parse().ok()?;
        let offset = parts.next()?.parse().ok()?;
        Some(((topic, partition), offset))
    }

    fn read_hint(&self) -> Result<Hint, SinkError> {
        let body = match strata_durable::read(&self.hint_path)? {
            None => return Ok(Hint::default()),
            Some(c) => c.checked(&self.hint_path)?,
        };
        let hint: Hint =
            serde_json::from_slice(&body).map_err(|e| strata_durable::Error::invalid(&self.hint_path, e))?;
        if hint.version != HINT_VERSION {
            let reason = format!("version {} is unknown", hint.version);
            return Err(strata_durable::Error::invalid(&self.hint_path, reason).into());
        }
        Ok(hint)
    }
}

fn log_err(e: strata_log::Error) -> SinkError {
    match e {
        strata_log::Error::Overloaded { .. } | strata_log::Error::DiskFull { .. } | strata_log::Error::Io { .. } => {
            SinkError::Retry { reason: e.to_string() }
        }
        other => SinkError::Corrupt { path: PathBuf::from("log"), reason: other.to_string() },
    }
}

#[async_trait::async_trait]
impl<P: Processor> Sink for ProcessorSink<P> {
    fn group(&self) -> &str {
        self.processor.name()
    }

    fn topics(&self) -> Vec<TopicSpec> {
        vec![self.processor.input()]
    }

    async fn committed(&mut self) -> Result<Positions, SinkError> {
        self.output_partitions = self.log.partition_count(self.processor.output().name).map_err(log_err)?;
        let hint = self.read_hint()?;
        let mut positions: Positions = hint.positions.into_iter().map(|(t, p, o)| ((t, p), o)).collect();
        let scanned: BTreeMap<u32, u64> = hint.output_scanned_to.into_iter().collect();
        // The output says the truth; the hint only says where to start reading it.
        let output = self.processor.output().name.to_string();
        for q in 0..self.output_partitions {
            let mut at = scanned.get(&q).copied().unwrap_or(0);
            loop {
                let r = match self.log.read(&output, q, at, SCAN_READ_BYTES) {
                    Ok(r) => r,
                    Err(strata_log::Error::OffsetOutOfRange { earliest, latest, .. }) => {
                        at = if at < earliest { earliest } else { latest };
                        continue;
                    }
                    Err(e) => return Err(log_err(e)),
                };
                for rec in &r.records {
                    if let Some((key, offset)) = self.position_of(rec) {
                        let p = positions.entry(key).or_insert(0);
                        *p = (*p).max(offset);
                    }
                }
                if r.next_offset <= at || r.next_offset >= r.end_offset {
                    break;
                }
                at = r.next_offset;
            }
        }
        Ok(positions)
    }

    async fn write(&mut self, topic: &str, partition: u32, records: &[StoredRecord]) -> Result<(), SinkError> {
        let Some(last) = records.last() else { return Ok(()) };
        let mut outputs: Vec<(&str, OutputRecord)> = Vec::new();
        for r in records {
            self.out.clear();
            self.processor.process(r, &mut self.out)?;
            outputs.extend(self.out.drain(..).map(|o| (r.record.tenant.as_str(), o)));
        }
        if outputs.is_empty() {
            // Nothing to append: after a crash these inputs are processed again, to nothing again.
            return Ok(());
        }
        let position = self.header_value(topic, partition, last.offset + 1);
        let n = outputs.len();
        let mut batch = EncodedRecords::new();
        for (i, (tenant, o)) in outputs.iter().enumerate() {
            let mut headers: Vec<(&str, &[u8])> = o.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
            if i + 1 == n {
                headers.push((SOURCE_POSITION_HEADER, &position));
            }
            batch
                .push(o.timestamp_ns, tenant, &o.source_id, &headers, &o.payload)
                .map_err(|e| SinkError::Corrupt { path: PathBuf::from("log"), reason: e.to_string() })?;
        }
        let q = partition % self.output_partitions.max(1);
        // One batch, durable whole or not at all, with the input position on its last record.
        self.log.append(self.processor.output().name, q, batch).await.map_err(log_err)?;
        Ok(())
    }

    async fn commit(&mut self, positions: &Positions) -> Result<(), SinkError> {
        let output = self.processor.output().name;
        let topics = self.log.topics();
        let ends: Vec<(u32, u64)> = topics
            .iter()
            .find(|t| t.name == output)
            .map(|t| t.partitions.iter().map(|p| (p.partition, p.latest_offset)).collect())
            .unwrap_or_default();
        let hint = Hint {
            version: HINT_VERSION,
            positions: positions.iter().map(|((t, p), o)| (t.clone(), *p, *o)).collect(),
            output_scanned_to: ends,
        };
        if let Some(dir) = self.hint_path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| SinkError::Io { path: dir.to_path_buf(), source })?;
        }
        strata_durable::write(&self.hint_path, &serde_json::to_vec(&hint).expect("hint serialises"))?;
        Ok(())
    }
}
