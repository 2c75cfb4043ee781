//! The first sink: records and bytes stored per tenant and kind, counted exactly once.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_log::StoredRecord;

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
pub struct StatsSink {
    path: PathBuf,
    topics: Vec<String>,
    counts: BTreeMap<(String, String), Count>,
    /// Counts as of the last commit: what `/metrics` shows.
    published: BTreeMap<(String, String), Count>,
}

impl StatsSink {
    pub const GROUP: &'static str = "stats";

    pub fn new(dir: &Path, topics: Vec<String>) -> StatsSink {
        StatsSink { path: dir.join("stats.json"), topics, counts: BTreeMap::new(), published: BTreeMap::new() }
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

impl Sink for StatsSink {
    fn group(&self) -> &str {
        Self::GROUP
    }

    fn topics(&self) -> Vec<String> {
        self.topics.clone()
    }

    fn committed(&mut self) -> Result<Positions, SinkError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Positions::new()),
            Err(e) => {
                return Err(SinkError::Io { path: self.path.clone(), source: e });
            }
        };
        let bad = |reason: String| SinkError::Corrupt { path: self.path.clone(), reason };
        let f: StatsFile = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if f.version != STATS_FILE_VERSION || f.crc32c != crc(&f.body) {
            return Err(bad("unknown version or bad checksum".into()));
        }
        self.counts = f.body.counts.into_iter().map(|(t, k, c)| ((t, k), c)).collect();
        self.publish();
        Ok(f.body.positions.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
    }

    fn write(&mut self, topic: &str, _partition: u32, records: &[StoredRecord]) -> Result<(), SinkError> {
        for r in records {
            let c = self.counts.entry((r.record.tenant.clone(), topic.to_string())).or_default();
            c.records += 1;
            c.bytes += r.record.payload.len() as u64;
        }
        Ok(())
    }

    fn commit(&mut self, positions: &Positions) -> Result<(), SinkError> {
        let body = StatsBody {
            positions: positions.iter().map(|((t, p), o)| (t.clone(), *p, *o)).collect(),
            counts: self.counts.iter().map(|((t, k), c)| (t.clone(), k.clone(), c.clone())).collect(),
        };
        let file = StatsFile { version: STATS_FILE_VERSION, crc32c: crc(&body), body };
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(self.io())?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let mut f = File::create(&tmp).map_err(self.io())?;
        f.write_all(&serde_json::to_vec(&file).expect("stats serialise")).map_err(self.io())?;
        f.sync_all().map_err(self.io())?;
        fs::rename(&tmp, &self.path).map_err(self.io())?;
        let dir = self.path.parent().expect("stats file has a dir");
        File::open(dir).and_then(|d| d.sync_all()).map_err(self.io())?;
        self.publish();
        Ok(())
    }
}

impl StatsSink {
    /// Counts as of the last commit, by (tenant, topic).
    pub fn committed_counts(&self) -> &BTreeMap<(String, String), Count> {
        &self.published
    }
}
