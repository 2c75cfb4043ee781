//! The sink that indexes the `logs` topic into day indexes. Each index commit carries, as its
//! payload, the log positions it covers; a sink-level state file records positions every index
//! has reached. After a crash the sink resumes from the state file and skips, per index, the lines
//! that index already committed: no gap, no duplicate.
//!
//! It is a `TopicSink` of `logs`: the consumer runtime decodes the lines (and skips and counts the
//! ones that do not decode), so it runs as `Typed::new(SearchSink::new(..))`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_model::topic::Logs;
use strata_model::{TenantId, Topic};
use strata_pipeline::{Decoded, Positions, SinkError, TopicSink};
use tantivy::{IndexWriter, TantivyDocument};
use time::Date;

use crate::index::{DayIndex, Indexes, day_of, encode_payload};
use crate::merge::FlooredMerges;

const STATE_VERSION: u32 = 1;

/// How the indexing sink uses memory and files.
#[derive(Debug, Clone)]
pub struct IndexerConfig {
    /// Memory of one index writer before it flushes a segment, shared by its indexing threads.
    pub writer_memory_bytes: usize,
    /// Threads of one index writer, each building segments of its own.
    pub indexing_threads: usize,
    /// Writers open at once; the least recently used is committed and closed past this.
    pub writers_max: usize,
    /// A writer unused this long is closed after the next commit.
    pub writer_idle_ms: u64,
    /// Merges of segments wait while they could leave less free on the index's disk (0: never);
    /// see `FlooredMerges`.
    pub disk_free_bytes_min: u64,
}

impl Default for IndexerConfig {
    fn default() -> Self {
        IndexerConfig {
            writer_memory_bytes: 64 << 20,
            // One: on two cores, two threads indexed 12–33 % more lines a second, but made twice
            // the segments, and the index after its merges was 3–5 % larger (BENCHMARKS.md).
            indexing_threads: 1,
            writers_max: 8,
            writer_idle_ms: 60_000,
            disk_free_bytes_min: 0,
        }
    }
}

struct Writer {
    day: Arc<DayIndex>,
    writer: IndexWriter<TantivyDocument>,
    /// Positions of this index's last commit: lines before them are already in it.
    committed: Positions,
    dirty: bool,
    last_used: Instant,
}

/// Indexes log lines; the consumer group is `search`.
pub struct SearchSink {
    indexes: Arc<Indexes>,
    cfg: IndexerConfig,
    state_path: PathBuf,
    writers: HashMap<(TenantId, Date), Writer>,
    /// Next offset per partition after every line handed to `write`.
    seen: Positions,
    /// The state file was damaged and set aside: the log is replayed from its start.
    rebuild: bool,
}

fn index_err(day: &DayIndex, e: impl std::fmt::Display) -> SinkError {
    SinkError::Corrupt { path: day.dir.clone(), reason: e.to_string() }
}

impl SearchSink {
    pub const GROUP: &'static str = "search";

    pub fn new(indexes: Arc<Indexes>, cfg: IndexerConfig) -> SearchSink {
        let state_path = indexes.root().join("state.json");
        SearchSink { indexes, cfg, state_path, writers: HashMap::new(), seen: Positions::new(), rebuild: false }
    }

    fn writer(&mut self, tenant: &TenantId, day: Date) -> Result<&mut Writer, SinkError> {
        let key = (tenant.clone(), day);
        if !self.writers.contains_key(&key) {
            if self.writers.len() >= self.cfg.writers_max {
                self.evict_one()?;
            }
            let d = self
                .indexes
                .open(tenant, day, true)
                .map_err(|e| SinkError::Corrupt { path: self.indexes.root().to_path_buf(), reason: e.to_string() })?
                .expect("created");
            let committed = d.committed_positions().map_err(|e| index_err(&d, e))?;
            let writer = d
                .index
                .writer_with_num_threads(self.cfg.indexing_threads, self.cfg.writer_memory_bytes)
                .map_err(|e| index_err(&d, e))?;
            writer.set_merge_policy(Box::new(FlooredMerges::new(&d.dir, self.cfg.disk_free_bytes_min)));
            metrics::gauge!("strata_search_writers_open").increment(1.0);
            self.writers
                .insert(key.clone(), Writer { day: d, writer, committed, dirty: false, last_used: Instant::now() });
        }
        Ok(self.writers.get_mut(&key).expect("inserted"))
    }

    /// Commits (if needed) and closes the least recently used writer.
    fn evict_one(&mut self) -> Result<(), SinkError> {
        let Some(key) = self.writers.iter().min_by_key(|(_, w)| w.last_used).map(|(k, _)| k.clone()) else {
            return Ok(());
        };
        let seen = self.seen.clone();
        let mut w = self.writers.remove(&key).expect("present");
        if w.dirty {
            commit_writer(&mut w, &seen)?;
        }
        metrics::gauge!("strata_search_writers_open").decrement(1.0);
        Ok(())
    }
}

fn commit_writer(w: &mut Writer, positions: &Positions) -> Result<(), SinkError> {
    let t = Instant::now();
    let mut prepared = w.writer.prepare_commit().map_err(|e| index_err(&w.day, e))?;
    prepared.set_payload(&encode_payload(positions));
    prepared.commit().map_err(|e| index_err(&w.day, e))?;
    w.day.reader.reload().map_err(|e| index_err(&w.day, e))?;
    w.committed = positions.clone();
    w.dirty = false;
    metrics::histogram!("strata_search_commit_seconds").record(t.elapsed().as_secs_f64());
    Ok(())
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// A past day that stopped receiving lines is merged into one segment: fewer files to open and
/// faster searches. Late lines for it later simply open a writer again. With no room on the disk
/// for the merge (`FlooredMerges`), the day stays as its merges left it.
fn seal(w: Writer, disk_free_bytes_min: u64) {
    let Writer { day, mut writer, .. } = w;
    let t = Instant::now();
    let room = FlooredMerges::new(&day.dir, disk_free_bytes_min);
    let merged = day.index.searchable_segment_ids().and_then(|ids| {
        if ids.len() > 1 && room.room_for(&ids) { writer.merge(&ids).wait().map(|_| ()) } else { Ok(()) }
    });
    let waited = writer.wait_merging_threads();
    match merged.and(waited).and_then(|()| day.reader.reload()) {
        Ok(()) => tracing::info!(
            tenant = %day.tenant,
            day = %crate::index::day_name(day.day),
            seconds = t.elapsed().as_secs_f64(),
            "sealed a past day index"
        ),
        Err(e) => tracing::warn!(path = %day.dir.display(), error = %e, "cannot merge a past day index"),
    }
}

/// The positions in `search/state.json`: framed, or a file written before the frame existed.
fn read_state(path: &std::path::Path) -> Result<Positions, strata_durable::Error> {
    let body = match strata_durable::read(path)? {
        None => return Ok(Positions::new()),
        Some(strata_durable::Contents::Checked(b) | strata_durable::Contents::Legacy(b)) => b,
    };
    let bad = |reason: String| strata_durable::Error::invalid(path, reason);
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
    if v["version"] != STATE_VERSION {
        return Err(bad(format!("version {} is unknown", v["version"])));
    }
    let positions: Vec<(String, u32, u64)> =
        serde_json::from_value(v["positions"].clone()).map_err(|e| bad(e.to_string()))?;
    Ok(positions.into_iter().map(|(t, part, o)| ((t, part), o)).collect())
}

#[strata_pipeline::async_trait]
impl TopicSink for SearchSink {
    type Topic = Logs;

    fn group(&self) -> &str {
        Self::GROUP
    }

    async fn committed(&mut self) -> Result<Positions, SinkError> {
        let p = match read_state(&self.state_path) {
            Ok(p) => p,
            // Every day index keeps its own positions in its commits and skips the lines it
            // holds, so a replay from the start rebuilds this file without adding a line twice.
            Err(e) if e.is_damage() => {
                let aside = strata_durable::set_aside(&self.state_path)?;
                tracing::error!(error = %e, set_aside = %aside.display(), "search state is damaged: replaying the log from the start to rebuild it");
                self.rebuild = true;
                Positions::new()
            }
            Err(e) => return Err(e.into()),
        };
        self.seen = p.clone();
        Ok(p)
    }

    fn rebuild_from_start(&self) -> bool {
        self.rebuild
    }

    async fn write<'r>(&mut self, partition: u32, records: &[Decoded<'r, Logs>]) -> Result<(), SinkError> {
        let schema = self.indexes.schema().clone();
        let key = (Logs::SPEC.name.to_string(), partition);
        let mut indexed: HashMap<TenantId, u64> = HashMap::new();
        for d in records {
            let (r, line) = (d.stored, &d.record);
            let Ok(tenant) = TenantId::new(&r.record.tenant) else {
                metrics::counter!("strata_search_discarded_total", "reason" => "tenant").increment(1);
                self.seen.insert(key.clone(), r.offset + 1);
                continue;
            };
            let day = day_of(line.timestamp_ns);
            if self.indexes.is_expired(&tenant, day) {
                metrics::counter!("strata_search_discarded_total", "reason" => "expired").increment(1);
                self.seen.insert(key.clone(), r.offset + 1);
                continue;
            }
            let w = match self.writer(&tenant, day) {
                Ok(w) => w,
                Err(e) => {
                    // One unusable day index must not stop indexing of every other line.
                    metrics::counter!("strata_search_discarded_total", "reason" => "index_unavailable").increment(1);
                    tracing::error!(%tenant, day = %crate::index::day_name(day), error = %e, "line not indexed");
                    self.seen.insert(key.clone(), r.offset + 1);
                    continue;
                }
            };
            w.last_used = Instant::now();
            // Replay after a crash: this index already committed the line.
            if w.committed.get(&key).is_some_and(|&c| r.offset < c) {
                self.seen.insert(key.clone(), r.offset + 1);
                continue;
            }
            let doc = schema.document(line, &r.record.payload, partition, r.offset);
            w.writer.add_document(doc).map_err(|e| index_err(&w.day, e))?;
            w.dirty = true;
            *indexed.entry(tenant).or_default() += 1;
            self.seen.insert(key.clone(), r.offset + 1);
        }
        for (tenant, n) in indexed {
            metrics::counter!("strata_search_documents_indexed_total", "tenant" => tenant.to_string()).increment(n);
        }
        Ok(())
    }

    async fn commit(&mut self, positions: &Positions) -> Result<(), SinkError> {
        // `seen` may lag: the runtime moves past lines that do not decode without handing them here.
        debug_assert!(positions.iter().all(|(k, v)| self.seen.get(k).is_none_or(|s| s <= v)));
        let positions = positions.clone();
        self.seen = positions.clone();
        let mut gone = Vec::new();
        for (key, w) in self.writers.iter_mut().filter(|(_, w)| w.dirty) {
            if let Err(e) = commit_writer(w, &positions) {
                // Retention may remove a day while its writer is open: its lines are expired anyway.
                if self.indexes.is_expired(&key.0, key.1) || !w.day.dir.exists() {
                    tracing::info!(tenant = %key.0, day = %crate::index::day_name(key.1), "dropping the writer of an expired day");
                    gone.push(key.clone());
                    continue;
                }
                return Err(e);
            }
        }
        for key in gone {
            self.writers.remove(&key);
            metrics::gauge!("strata_search_writers_open").decrement(1.0);
        }
        // Every index now has everything before `positions`: record that for the next start.
        let state = serde_json::json!({
            "version": STATE_VERSION,
            "positions": positions.iter().map(|((t, p), o)| (t.clone(), *p, *o)).collect::<Vec<_>>(),
        });
        strata_durable::write(&self.state_path, state.to_string().as_bytes())?;
        let idle = Duration::from_millis(self.cfg.writer_idle_ms);
        let today = day_of(now_ns());
        let closing: Vec<(TenantId, Date)> = self
            .writers
            .iter()
            .filter(|(_, w)| !w.dirty && w.last_used.elapsed() >= idle)
            .map(|(k, _)| k.clone())
            .collect();
        for key in closing {
            let w = self.writers.remove(&key).expect("present");
            metrics::gauge!("strata_search_writers_open").decrement(1.0);
            if key.1 < today {
                seal(w, self.cfg.disk_free_bytes_min);
            }
        }
        Ok(())
    }
}
