//! Stateful operators: steps that keep state across records (windows, deduplication, reference
//! tables) and append what they make to derived topics, exactly once across crashes.
//!
//! A [`Processor`](crate::Processor) is a function of each record, so it can simply process a
//! record again after a crash. An operator's output depends on its state and on the order in
//! which it saw the partitions' records, which a restart does not reproduce. So an operator
//! publishes only at commits, in two phases, as Flink's checkpoints with a transactional sink do:
//!
//! 1. its state, the input positions it reflects and the outputs made since the last commit are
//!    written in one state file (`<name>.operator`, replaced atomically), under a new epoch;
//! 2. those outputs are appended, one batch per output partition, the last record of each carrying
//!    the epoch in the `strata-epoch` header.
//!
//! At start the operator restores the state file and appends whichever of its outputs the output
//! partitions do not hold yet (read from where they ended when the file was written), then
//! resumes its inputs from the file's positions. Whatever moment the process dies at, the outputs
//! in the log are those of one run that never crashed: records processed after the last state
//! file are processed again, and their outputs were never published.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use strata_log::{EncodedRecords, Log, StoredRecord};
use strata_model::{TopicSpec, varint};

use crate::{OutputRecord, Positions, Sink, SinkError};

/// The header of the last record of each output batch: the operator and its epoch.
pub const EPOCH_HEADER: &str = "strata-epoch";

const FILE_VERSION: u8 = 1;

/// Bytes read at a time when the outputs are checked at start.
const SCAN_READ_BYTES: u64 = 4 << 20;

/// One output of an operator: the topic it goes to and the record; the tenant is the record's.
#[derive(Debug, Clone, PartialEq)]
pub struct Emit {
    pub topic: &'static str,
    pub tenant: String,
    pub record: OutputRecord,
}

/// A step that keeps state between records. Every call is made on the consumer's thread.
pub trait Operator: Send + 'static {
    /// Names the operator: its consumer group, its state file and its epoch headers.
    fn name(&self) -> &str;
    /// The declared topics it reads.
    fn inputs(&self) -> Vec<TopicSpec>;
    /// Puts back the state of the last commit (`None`: the operator starts empty).
    fn restore(&mut self, state: Option<&[u8]>) -> Result<(), String>;
    /// The state to keep with the input positions it reflects.
    fn snapshot(&mut self) -> Vec<u8>;
    /// Takes the records of one read of `topic`'s `partition`, in offset order.
    fn process(&mut self, topic: &str, partition: u32, records: &[StoredRecord], out: &mut Vec<Emit>);
    /// Called before each commit: emit what time has made final (windows the watermark passed).
    fn flush(&mut self, out: &mut Vec<Emit>);
}

/// The first byte of a state [`encode_state`] makes: bincode (variable-length integers), then
/// zstd. States written before it are zstd-compressed JSON, which starts with zstd's magic.
const BINARY_STATE: u8 = 0xb1;

/// An operator's state as its snapshot keeps it: a tag byte, then the state in bincode,
/// zstd-compressed. A binary form, because at a commit a rollup's state is a million partials:
/// as JSON, writing their floats and keys was most of a commit's time.
///
/// The state's types must not need a self-describing format: no `skip_serializing_if`, no
/// untagged enums, no `serde_json::Value` (a field holding those can be kept as JSON text
/// inside, as the events pipeline keeps its reference rows).
pub fn encode_state<T: serde::Serialize>(state: &T) -> Vec<u8> {
    let raw = bincode::serde::encode_to_vec(state, bincode::config::standard()).expect("operator state serialises");
    let mut out = vec![BINARY_STATE];
    zstd::stream::copy_encode(raw.as_slice(), &mut out, 1).expect("in-memory zstd");
    out
}

/// A state [`encode_state`] made (or, from before the binary form, zstd-compressed JSON), or the
/// default one when there is none; `what` names it in the error.
pub fn decode_state<T: serde::de::DeserializeOwned + Default>(bytes: Option<&[u8]>, what: &str) -> Result<T, String> {
    let Some(bytes) = bytes else { return Ok(T::default()) };
    if let Some(rest) = bytes.strip_prefix(&[BINARY_STATE]) {
        let raw = zstd::decode_all(rest).map_err(|e| format!("not zstd: {e}"))?;
        let (state, used) = bincode::serde::decode_from_slice(&raw, bincode::config::standard())
            .map_err(|e| format!("not {what}: {e}"))?;
        if used != raw.len() {
            return Err(format!("not {what}: {} bytes left over", raw.len() - used));
        }
        return Ok(state);
    }
    let json = zstd::decode_all(bytes).map_err(|e| format!("not zstd: {e}"))?;
    serde_json::from_slice(&json).map_err(|e| format!("not {what}: {e}"))
}

/// An output batch made durable in the state file and not yet known to be in the log.
#[derive(Debug, Clone, PartialEq)]
struct Pending {
    topic: String,
    partition: u32,
    /// The partition's end when the state file was written: the batch is at or after it.
    from: u64,
    records: Vec<Emit>,
}

/// Runs an [`Operator`] as a sink of the consumer runtime.
pub struct OperatorSink<O: Operator> {
    op: O,
    log: Arc<dyn Log>,
    path: PathBuf,
    epoch: u64,
    /// Outputs made since the last commit.
    made: Vec<Emit>,
    /// Outputs of the current epoch, in the state file, not all appended yet.
    pending: Vec<Pending>,
    last_commit_ms: f64,
}

impl<O: Operator> OperatorSink<O> {
    /// `state_dir` keeps the operator's state file, `<name>.operator`.
    pub fn new(op: O, log: Arc<dyn Log>, state_dir: &std::path::Path) -> OperatorSink<O> {
        let path = state_dir.join(format!("{}.operator", op.name()));
        OperatorSink { op, log, path, epoch: 0, made: Vec::new(), pending: Vec::new(), last_commit_ms: 0.0 }
    }

    /// How long the last commit took, in milliseconds (the state file and the appends).
    pub fn last_commit_ms(&self) -> f64 {
        self.last_commit_ms
    }

    fn epoch_value(&self, epoch: u64) -> Vec<u8> {
        format!("{}\t{epoch}", self.op.name()).into_bytes()
    }

    /// Appends the pending batches that are not in the log yet, dropping each once it is.
    async fn publish(&mut self, check_log: bool) -> Result<(), SinkError> {
        let marker = self.epoch_value(self.epoch);
        while let Some(batch) = self.pending.first() {
            if !(check_log && self.holds(batch, &marker)?) {
                let mut records = EncodedRecords::new();
                let n = batch.records.len();
                for (i, e) in batch.records.iter().enumerate() {
                    let mut headers: Vec<(&str, &[u8])> =
                        e.record.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
                    if i + 1 == n {
                        headers.push((EPOCH_HEADER, &marker));
                    }
                    records
                        .push(e.record.timestamp_ns, &e.tenant, &e.record.source_id, &headers, &e.record.payload)
                        .map_err(|e| SinkError::Corrupt { path: PathBuf::from("log"), reason: e.to_string() })?;
                }
                self.log.append(&batch.topic, batch.partition, records).await.map_err(log_err)?;
            }
            self.pending.remove(0);
        }
        Ok(())
    }

    /// Whether the output partition holds `batch` (a record with this epoch's marker past
    /// where the partition ended when the batch was saved).
    fn holds(&self, batch: &Pending, marker: &[u8]) -> Result<bool, SinkError> {
        let mut at = batch.from;
        loop {
            let r = match self.log.read(&batch.topic, batch.partition, at, SCAN_READ_BYTES) {
                Ok(r) => r,
                Err(strata_log::Error::OffsetOutOfRange { earliest, latest, .. }) if at < earliest => {
                    at = earliest.min(latest);
                    continue;
                }
                Err(e) => return Err(log_err(e)),
            };
            if r.records.iter().any(|rec| rec.record.header(EPOCH_HEADER) == Some(marker)) {
                return Ok(true);
            }
            if r.next_offset <= at || r.next_offset >= r.end_offset {
                return Ok(false);
            }
            at = r.next_offset;
        }
    }

    fn save(&self, positions: &Positions, state: &[u8]) -> Result<(), SinkError> {
        let mut out = vec![FILE_VERSION];
        varint::put(&mut out, self.epoch);
        varint::put(&mut out, positions.len() as u64);
        for ((topic, partition), offset) in positions {
            put_bytes(&mut out, topic.as_bytes());
            varint::put(&mut out, u64::from(*partition));
            varint::put(&mut out, *offset);
        }
        varint::put(&mut out, self.pending.len() as u64);
        for b in &self.pending {
            put_bytes(&mut out, b.topic.as_bytes());
            varint::put(&mut out, u64::from(b.partition));
            varint::put(&mut out, b.from);
            varint::put(&mut out, b.records.len() as u64);
            for e in &b.records {
                put_bytes(&mut out, e.topic.as_bytes());
                put_bytes(&mut out, e.tenant.as_bytes());
                varint::put(&mut out, e.record.timestamp_ns as u64);
                put_bytes(&mut out, e.record.source_id.as_bytes());
                varint::put(&mut out, e.record.headers.len() as u64);
                for (k, v) in &e.record.headers {
                    put_bytes(&mut out, k.as_bytes());
                    put_bytes(&mut out, v);
                }
                put_bytes(&mut out, &e.record.payload);
            }
        }
        out.extend_from_slice(state);
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| SinkError::Io { path: dir.to_path_buf(), source })?;
        }
        strata_durable::write(&self.path, &out)?;
        Ok(())
    }
}

/// What a state file holds.
struct Saved {
    epoch: u64,
    positions: Positions,
    pending: Vec<Pending>,
    state: Vec<u8>,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    varint::put(out, b.len() as u64);
    out.extend_from_slice(b);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        varint::take(&mut self.0).map_err(|_| "it ends inside a number".to_string())
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = usize::try_from(self.varint()?).map_err(|_| "a length is too large".to_string())?;
        if n > self.0.len() {
            return Err("it ends inside a field".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "a name is not UTF-8".to_string())
    }

    fn topic(&mut self, declared: &[TopicSpec]) -> Result<&'static str, String> {
        let name = self.string()?;
        declared.iter().find(|t| t.name == name).map(|t| t.name).ok_or_else(|| format!("topic {name:?} is unknown"))
    }
}

fn parse(bytes: &[u8]) -> Result<Saved, String> {
    let (&version, rest) = bytes.split_first().ok_or("it is empty")?;
    if version != FILE_VERSION {
        return Err(format!("format version {version} is unknown"));
    }
    let mut r = Reader(rest);
    let epoch = r.varint()?;
    let mut positions = Positions::new();
    for _ in 0..r.varint()? {
        let topic = r.string()?;
        let partition = u32::try_from(r.varint()?).map_err(|_| "a partition is out of range")?;
        positions.insert((topic, partition), r.varint()?);
    }
    let declared = TopicSpec::ALL;
    let mut pending = Vec::new();
    for _ in 0..r.varint()? {
        let topic = r.string()?;
        let partition = u32::try_from(r.varint()?).map_err(|_| "a partition is out of range")?;
        let from = r.varint()?;
        let mut records = Vec::new();
        for _ in 0..r.varint()? {
            let out_topic = r.topic(&declared)?;
            let tenant = r.string()?;
            let timestamp_ns = r.varint()? as i64;
            let source_id = r.string()?;
            let mut headers = Vec::new();
            for _ in 0..r.varint()? {
                headers.push((r.string()?, r.bytes()?.to_vec()));
            }
            let payload = r.bytes()?.to_vec();
            records.push(Emit {
                topic: out_topic,
                tenant,
                record: OutputRecord { timestamp_ns, source_id, headers, payload },
            });
        }
        pending.push(Pending { topic, partition, from, records });
    }
    Ok(Saved { epoch, positions, pending, state: r.0.to_vec() })
}

fn log_err(e: strata_log::Error) -> SinkError {
    match e {
        strata_log::Error::Overloaded { .. }
        | strata_log::Error::DiskFull { .. }
        | strata_log::Error::Io { .. }
        | strata_log::Error::Closed => SinkError::Retry { reason: e.to_string() },
        other => SinkError::Corrupt { path: PathBuf::from("log"), reason: other.to_string() },
    }
}

#[async_trait::async_trait]
impl<O: Operator> Sink for OperatorSink<O> {
    fn group(&self) -> &str {
        self.op.name()
    }

    fn topics(&self) -> Vec<TopicSpec> {
        self.op.inputs()
    }

    async fn committed(&mut self) -> Result<Positions, SinkError> {
        let saved = match strata_durable::read(&self.path)? {
            None => None,
            Some(c) => {
                let body = c.checked(&self.path)?;
                Some(parse(&body).map_err(|reason| SinkError::Corrupt { path: self.path.clone(), reason })?)
            }
        };
        let Some(saved) = saved else {
            self.op.restore(None).map_err(|reason| SinkError::Corrupt { path: self.path.clone(), reason })?;
            return Ok(Positions::new());
        };
        self.op
            .restore(Some(&saved.state))
            .map_err(|reason| SinkError::Corrupt { path: self.path.clone(), reason: format!("state: {reason}") })?;
        self.epoch = saved.epoch;
        self.pending = saved.pending;
        self.made.clear();
        // Outputs of the last epoch that did not all reach the log before the process ended.
        self.publish(true).await?;
        Ok(saved.positions)
    }

    async fn write(&mut self, topic: &str, partition: u32, records: &[StoredRecord]) -> Result<(), SinkError> {
        self.op.process(topic, partition, records, &mut self.made);
        Ok(())
    }

    async fn commit(&mut self, positions: &Positions) -> Result<(), SinkError> {
        let started = std::time::Instant::now();
        // A commit that failed while appending resumes its own batches before taking new ones.
        if self.pending.is_empty() {
            self.op.flush(&mut self.made);
            let mut by_partition: BTreeMap<(&'static str, u32), Vec<Emit>> = BTreeMap::new();
            for e in self.made.drain(..) {
                let n = self.log.partition_count(e.topic).map_err(log_err)?;
                let p = strata_model::partition_for(&e.tenant, &e.record.source_id, n);
                by_partition.entry((e.topic, p)).or_default().push(e);
            }
            for ((topic, partition), records) in by_partition {
                let from = self.log.end_offset(topic, partition).map_err(log_err)?;
                self.pending.push(Pending { topic: topic.to_string(), partition, from, records });
            }
            self.epoch += 1;
            let state = self.op.snapshot();
            self.save(positions, &state)?;
        }
        self.publish(false).await?;
        self.last_commit_ms = started.elapsed().as_secs_f64() * 1000.0;
        metrics::histogram!("strata_operator_commit_seconds", "operator" => self.op.name().to_string())
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }

    async fn stop(&mut self, positions: &Positions) -> Result<(), SinkError> {
        self.commit(positions).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_binary_and_older_json_states_still_read() {
        #[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
        struct S {
            groups: BTreeMap<String, (u64, f64)>,
            clock: Option<i64>,
        }
        let s = S {
            groups: BTreeMap::from([("a\0b".into(), (3, f64::INFINITY)), ("c".into(), (1, -0.5))]),
            clock: Some(-7),
        };
        let bytes = encode_state(&s);
        assert_eq!(bytes[0], BINARY_STATE);
        assert_eq!(decode_state::<S>(Some(&bytes), "a test state").unwrap(), s);
        let json = zstd::encode_all(&br#"{"groups": {"c": [1, -0.5]}, "clock": 4}"#[..], 1).unwrap();
        let old = decode_state::<S>(Some(&json), "a test state").unwrap();
        assert_eq!((old.groups["c"], old.clock), ((1, -0.5), Some(4)));
        assert_eq!(decode_state::<S>(None, "a test state").unwrap(), S::default());
        let mut extra = bincode::serde::encode_to_vec(&s, bincode::config::standard()).unwrap();
        extra.push(0);
        let mut damaged = vec![BINARY_STATE];
        damaged.extend(zstd::encode_all(extra.as_slice(), 1).unwrap());
        let err = decode_state::<S>(Some(&damaged), "a test state").unwrap_err();
        assert!(err.contains("not a test state: 1 bytes left over"), "{err}");
        let err = decode_state::<S>(Some(&bytes[..bytes.len() - 3]), "a test state").unwrap_err();
        assert!(err.contains("zstd") || err.contains("not a test state"), "{err}");
    }

    #[test]
    fn state_files_round_trip_and_damage_is_an_error() {
        let rec = |p: &str| Emit {
            topic: "rollups",
            tenant: "t".into(),
            record: OutputRecord {
                timestamp_ns: 5,
                source_id: "s".into(),
                headers: vec![("h".into(), vec![1, 2])],
                payload: p.as_bytes().to_vec(),
            },
        };
        let mut positions = Positions::new();
        positions.insert(("metrics".into(), 3), 77);
        let dir = tempfile::tempdir().unwrap();
        let log = strata_log::EmbeddedLog::open(strata_log::LogConfig::new(dir.path().join("log"), 1)).unwrap();
        let sink = OperatorSink {
            op: Nothing,
            log: Arc::new(log),
            path: dir.path().join("x.operator"),
            epoch: 9,
            made: Vec::new(),
            pending: vec![Pending {
                topic: "rollups".into(),
                partition: 1,
                from: 4,
                records: vec![rec("a"), rec("b")],
            }],
            last_commit_ms: 0.0,
        };
        sink.save(&positions, b"STATE").unwrap();
        let body = strata_durable::read(&sink.path).unwrap().unwrap().checked(&sink.path).unwrap();
        let saved = parse(&body).unwrap();
        assert_eq!((saved.epoch, &saved.positions, saved.state.as_slice()), (9, &positions, b"STATE".as_slice()));
        assert_eq!(saved.pending, sink.pending);
        for cut in 1..body.len() - 5 {
            assert!(parse(&body[..cut]).is_err(), "cut at {cut}");
        }
    }

    struct Nothing;
    impl Operator for Nothing {
        fn name(&self) -> &str {
            "nothing"
        }
        fn inputs(&self) -> Vec<TopicSpec> {
            Vec::new()
        }
        fn restore(&mut self, _: Option<&[u8]>) -> Result<(), String> {
            Ok(())
        }
        fn snapshot(&mut self) -> Vec<u8> {
            Vec::new()
        }
        fn process(&mut self, _: &str, _: u32, _: &[StoredRecord], _: &mut Vec<Emit>) {}
        fn flush(&mut self, _: &mut Vec<Emit>) {}
    }
}
