//! Typed sinks: a [`TopicSink`] reads one declared topic and is handed its records decoded. The
//! [`Typed`] adapter runs one as a [`Sink`] of the consumer runtime, and is the one place where a
//! payload is decoded: a record that does not decode is skipped, logged with its partition and
//! offset, and counted in `strata_consumer_undecodable_total{group}`. Its position still moves
//! past it, since the log will never hold anything else at that offset.

use std::collections::BTreeMap;

use strata_log::StoredRecord;
use strata_model::{Topic, TopicSpec};

use crate::{CheckpointKind, Positions, Sink, SinkError};

/// A record of topic `T` with its payload decoded, borrowed from the read it came from.
pub struct Decoded<'r, T: Topic> {
    /// The record as the log stored it: source, timestamps and the payload's bytes.
    pub stored: &'r StoredRecord,
    /// The payload, decoded as `T` declares.
    pub record: T::Record<'r>,
}

impl<'r, T: Topic> Decoded<'r, T> {
    pub fn offset(&self) -> u64 {
        self.stored.offset
    }

    pub fn tenant(&self) -> &'r str {
        &self.stored.record.tenant
    }

    pub fn headers(&self) -> &'r [(String, Vec<u8>)] {
        &self.stored.record.headers
    }

    pub fn header(&self, name: &str) -> Option<&'r [u8]> {
        self.stored.record.header(name)
    }

    /// The payload's bytes, as stored.
    pub fn payload(&self) -> &'r [u8] {
        &self.stored.record.payload
    }
}

/// A materialised view of one topic, fed decoded records. The calls and their contract are
/// those of [`Sink`]; only `write` differs, taking the partition's records decoded.
#[async_trait::async_trait]
pub trait TopicSink: Send + 'static {
    /// The topic the sink reads.
    type Topic: Topic;

    /// The consumer group: names the sink's positions in the log and in metrics.
    fn group(&self) -> &str;

    /// Who keeps the sink's positions; see [`Sink::checkpoint_kind`].
    fn checkpoint_kind(&self) -> CheckpointKind {
        CheckpointKind::WithData
    }

    /// See [`Sink::committed`].
    async fn committed(&mut self) -> Result<Positions, SinkError>;

    /// Takes the records of one read of `partition` that decoded, in offset order (those that did
    /// not are left out). Nothing of them needs to be durable until `commit`.
    async fn write<'r>(&mut self, partition: u32, records: &[Decoded<'r, Self::Topic>]) -> Result<(), SinkError>;

    /// See [`Sink::commit`].
    async fn commit(&mut self, positions: &Positions) -> Result<(), SinkError>;

    /// See [`Sink::rebuild_from_start`].
    fn rebuild_from_start(&self) -> bool {
        false
    }

    /// See [`Sink::wants_commit`].
    fn wants_commit(&self) -> bool {
        false
    }

    /// See [`Sink::stop`].
    async fn stop(&mut self, positions: &Positions) -> Result<(), SinkError> {
        let _ = positions;
        Ok(())
    }
}

/// Runs a [`TopicSink`] as a [`Sink`]: reads its topic, decodes every record and hands it the
/// ones that decode.
pub struct Typed<S: TopicSink> {
    sink: S,
    undecodable: metrics::Counter,
    /// Per partition, the offset up to which undecodable records were reported: a retried
    /// `write` of the same records reports them once.
    reported_to: BTreeMap<u32, u64>,
}

impl<S: TopicSink> Typed<S> {
    /// Wraps `sink`; box the result for a `SinkFactory`.
    pub fn new(sink: S) -> Typed<S> {
        let undecodable = metrics::counter!("strata_consumer_undecodable_total", "group" => sink.group().to_string());
        Typed { sink, undecodable, reported_to: BTreeMap::new() }
    }

    pub fn get_ref(&self) -> &S {
        &self.sink
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// The typed sink, for callers that drive it by hand and then inspect it.
    pub fn into_inner(self) -> S {
        self.sink
    }

    /// The records that decode; the others are reported and left out.
    fn decode<'r>(&mut self, partition: u32, records: &'r [StoredRecord]) -> Vec<Decoded<'r, S::Topic>> {
        let reported_to = self.reported_to.get(&partition).copied().unwrap_or(0);
        let mut decoded = Vec::with_capacity(records.len());
        for stored in records {
            match <S::Topic as Topic>::decode(&stored.record.payload) {
                Ok(record) => decoded.push(Decoded { stored, record }),
                Err(e) if stored.offset >= reported_to => {
                    self.undecodable.increment(1);
                    tracing::warn!(
                        group = self.sink.group(),
                        topic = <S::Topic as Topic>::SPEC.name,
                        partition,
                        offset = stored.offset,
                        error = %e,
                        "record does not decode; skipped"
                    );
                }
                Err(_) => {}
            }
        }
        if let Some(last) = records.last() {
            self.reported_to.insert(partition, reported_to.max(last.offset + 1));
        }
        decoded
    }
}

#[async_trait::async_trait]
impl<S: TopicSink> Sink for Typed<S> {
    fn group(&self) -> &str {
        self.sink.group()
    }

    fn topics(&self) -> Vec<TopicSpec> {
        vec![<S::Topic as Topic>::SPEC]
    }

    fn checkpoint_kind(&self) -> CheckpointKind {
        self.sink.checkpoint_kind()
    }

    async fn committed(&mut self) -> Result<Positions, SinkError> {
        self.sink.committed().await
    }

    async fn write(&mut self, _topic: &str, partition: u32, records: &[StoredRecord]) -> Result<(), SinkError> {
        let decoded = self.decode(partition, records);
        if decoded.is_empty() {
            return Ok(());
        }
        self.sink.write(partition, &decoded).await
    }

    async fn commit(&mut self, positions: &Positions) -> Result<(), SinkError> {
        self.sink.commit(positions).await
    }

    fn rebuild_from_start(&self) -> bool {
        self.sink.rebuild_from_start()
    }

    fn wants_commit(&self) -> bool {
        self.sink.wants_commit()
    }

    async fn stop(&mut self, positions: &Positions) -> Result<(), SinkError> {
        self.sink.stop(positions).await
    }
}
