//! The first sink: records and bytes stored per tenant and kind, counted exactly once.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_log::StoredRecord;
use strata_model::TopicSpec;

use crate::{Positions, Sink, SinkError};

const STATS_FILE_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub records: u64,
    pub bytes: u64,
}

#[derive(Serialize, Deserialize)]
struct StatsFile {
    version: u32,
    crc32c: u32,
    body: StatsBody,
}

#[derive(Serialize, Deserialize, Default, Clone)]
struct StatsBody {
    positions: Vec<(String, u32, u64)>,
    counts: Vec<(String, String, Count)>,
}

/// Counts every record of the record topics by (tenant, topic), and keeps the counts and its log
/// positions in one file replaced atomically, so a crash can never count a record twice.
///
/// A plain [`Sink`] rather than a `TopicSink`: it reads every topic and needs only each record's
/// tenant and payload length, so decoding would be wasted work, and a record that does not decode
/// is still stored and still counted.
pub struct StatsSink {
    path: PathBuf,
    topics: Vec<TopicSpec>,
    counts: BTreeMap<(String, String), Count>,
    /// Counts as of the last commit: what `/metrics` shows.
    published: BTreeMap<(String, String), Count>,
    /// The state file was damaged and set aside: the counts start again from the log's start.
    rebuild: bool,
}

impl StatsSink {
    pub const GROUP: &'static str = "stats";

    pub fn new(dir: &Path, topics: Vec<TopicSpec>) -> StatsSink {
        StatsSink {
            path: dir.join("stats.json"),
            topics,
            counts: BTreeMap::new(),
            published: BTreeMap::new(),
            rebuild: false,
        }
    }

    fn io(&self) -> impl FnOnce(std::io::Error) -> SinkError + '_ {
        move |source| SinkError::Io { path: self.path.clone(), source }
    }

    fn publish(&mut self) {
        for ((tenant, topic), c) in &self.counts {
            if self.published.get(&(tenant.clone(), topic.clone())) == Some(c) {
                continue;
            }
            let labels = [("tenant", tenant.clone()), ("kind", topic.clone())];
            metrics::counter!("strata_stored_records_total", &labels).absolute(c.records);
            metrics::counter!("strata_stored_bytes_total", &labels).absolute(c.bytes);
        }
        self.published = self.counts.clone();
    }
}

fn crc(body: &StatsBody) -> u32 {
    crc32c::crc32c(&serde_json::to_vec(body).expect("stats serialise"))
}

/// `meta/stats.json`, framed or written before the frame existed; both carry their own checksum.
fn read_stats(path: &std::path::Path) -> Result<Option<StatsFile>, strata_durable::Error> {
    let body = match strata_durable::read(path)? {
        None => return Ok(None),
        Some(strata_durable::Contents::Checked(b) | strata_durable::Contents::Legacy(b)) => b,
    };
    let f: StatsFile = serde_json::from_slice(&body).map_err(|e| strata_durable::Error::invalid(path, e))?;
    if f.version != STATS_FILE_VERSION {
        return Err(strata_durable::Error::invalid(path, format!("version {} is unknown", f.version)));
    }
    if f.crc32c != crc(&f.body) {
        return Err(strata_durable::Error::invalid(path, "its counts do not match their checksum"));
    }
    Ok(Some(f))
}

#[async_trait::async_trait]
impl Sink for StatsSink {
    fn group(&self) -> &str {
        Self::GROUP
    }

    fn topics(&self) -> Vec<TopicSpec> {
        self.topics.clone()
    }

    async fn committed(&mut self) -> Result<Positions, SinkError> {
        self.load()
    }

    fn rebuild_from_start(&self) -> bool {
        self.rebuild
    }

    async fn write(&mut self, topic: &str, _partition: u32, records: &[StoredRecord]) -> Result<(), SinkError> {
        // Counted by runs of one tenant (a batch is usually one tenant's), so that the map's
        // owned key is made once per run, not once per record.
        for run in records.chunk_by(|a, b| a.record.tenant == b.record.tenant) {
            let c = self.counts.entry((run[0].record.tenant.clone(), topic.to_string())).or_default();
            c.records += run.len() as u64;
            c.bytes += run.iter().map(|r| r.record.payload.len() as u64).sum::<u64>();
        }
        Ok(())
    }

    async fn commit(&mut self, positions: &Positions) -> Result<(), SinkError> {
        let body = StatsBody {
            positions: positions.iter().map(|((t, p), o)| (t.clone(), *p, *o)).collect(),
            counts: self.counts.iter().map(|((t, k), c)| (t.clone(), k.clone(), c.clone())).collect(),
        };
        let file = StatsFile { version: STATS_FILE_VERSION, crc32c: crc(&body), body };
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(self.io())?;
        }
        strata_durable::write(&self.path, &serde_json::to_vec(&file).expect("stats serialise"))?;
        self.publish();
        Ok(())
    }
}

impl StatsSink {
    /// Reads the counts and positions of the last commit, as `Sink::committed` does; a damaged
    /// file is set aside and the counts start again from the log's start.
    pub fn load(&mut self) -> Result<Positions, SinkError> {
        let f = match read_stats(&self.path) {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(Positions::new()),
            // The counts are a view of the log: recounted from what it still holds.
            Err(e) if e.is_damage() => {
                let aside = strata_durable::set_aside(&self.path)?;
                tracing::error!(error = %e, set_aside = %aside.display(), "stats state is damaged: recounting from the start of the log");
                self.rebuild = true;
                return Ok(Positions::new());
            }
            Err(e) => return Err(e.into()),
        };
        self.counts = f.body.counts.into_iter().map(|(t, k, c)| ((t, k), c)).collect();
        self.publish();
        Ok(f.body.positions.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
    }

    /// Counts as of the last commit, by (tenant, topic).
    pub fn committed_counts(&self) -> &BTreeMap<(String, String), Count> {
        &self.published
    }
}
