//! Idempotent ingest: a request sent with an `Idempotency-Key` header is appended to the log at
//! most once however often it is retried within the window, and a retry gets the original answer.
//! A client that retries with the same key after a timeout or a lost connection is exactly-once
//! from producer to log, the way Kafka's idempotent producer is (Stripe's API is the model of the
//! header and its answers).
//!
//! How it holds across a crash: the key is written into the log with the records, as a header of
//! the first record the request appends to each partition. The table of keys kept in memory is
//! saved now and then (`meta/idempotency.json`) with, per partition, a position before which every
//! keyed append is in the saved table; a restart loads the table and reads the log from those
//! positions for the keys appended since. A request whose appends were cut short (a crash, an
//! append that failed, a dropped connection) is remembered with the partitions it reached, and
//! its retry appends only the partitions it did not reach.
//!
//! Answers:
//! - the first request with a key is processed as any other;
//! - a retry of a completed request gets the stored answer and appends nothing (a request known
//!   only from the log, after a restart, is decoded again for its counts: its answer is rebuilt,
//!   not stored);
//! - a retry while the first is still being processed gets 409 with `Retry-After`;
//! - a request refused as a whole (bad body, rate limit, log unavailable) leaves no trace: its
//!   retry is processed anew;
//! - past `keys_max` keys in the window new keyed requests get 503 with `Retry-After`, rather
//!   than the table forgetting a key it promised to remember.
//!
//! Keys belong to a tenant: two tenants may use the same key.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use strata_log::Log;
use strata_model::headers::IDEMPOTENCY_KEY;

use crate::{ApiError, IngestResponse};

/// The request header.
pub const HEADER: &str = "idempotency-key";

/// Longest key accepted, in bytes.
pub const KEY_BYTES_MAX: usize = 255;

/// Answers longer than this (in JSON) are kept with their error list cut to fit: a table of
/// thousands of keys must not hold thousands of long error lists.
const ANSWER_BYTES_MAX: usize = 2048;

const FILE_VERSION: u32 = 1;

/// Configuration of idempotent ingest (`[ingest.idempotency]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdempotencyConfig {
    /// How long a key is remembered after its first request.
    pub window_ms: u64,
    /// Keys remembered at once, over all tenants; past it keyed requests get 503.
    pub keys_max: usize,
    /// How often the table is saved (when it changed): a restart reads the log written since.
    pub save_interval_ms: u64,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig { window_ms: 600_000, keys_max: 200_000, save_interval_ms: 2_000 }
    }
}

/// A completed request's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub status: u16,
    pub body: IngestResponse,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    created_ms: i64,
    topic: String,
    /// Partitions the request's records are durable in.
    appended: BTreeSet<u32>,
    answer: Option<Answer>,
    /// Appends under way: partition and a position at or before where each will land.
    #[serde(skip)]
    pending: Vec<(u32, u64)>,
    /// A request is working on it.
    #[serde(skip)]
    held: bool,
}

impl Entry {
    fn busy(&self) -> bool {
        self.held || !self.pending.is_empty()
    }
}

#[derive(Default)]
struct Table {
    /// By tenant and key (`tenant` NUL `key`).
    entries: HashMap<String, Entry>,
    /// Keys in the order they were created, to expire them.
    order: VecDeque<(i64, String)>,
    changed: bool,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    /// Per topic and partition, where the log must be read from for keys the table lacks.
    positions: BTreeMap<String, BTreeMap<u32, u64>>,
    entries: Vec<(String, Entry)>,
}

/// What a keyed request is to do.
pub(crate) enum Begin {
    /// Process it; the partitions listed already hold its records and are skipped.
    Proceed(Ticket, BTreeSet<u32>),
    /// Answer with this and do nothing else.
    Replay(Answer),
}

/// A request holding a key; dropping it without `finish` leaves the key open for a retry.
pub(crate) struct Ticket {
    table: Arc<Idempotency>,
    id: String,
    done: bool,
}

/// The keys of the window and what became of their requests.
pub struct Idempotency {
    cfg: IdempotencyConfig,
    path: Option<PathBuf>,
    table: Mutex<Table>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The key of a request, if it has one; a malformed key is a 400.
pub(crate) fn key_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(HEADER) else { return Ok(None) };
    let ok = |s: &str| !s.is_empty() && s.len() <= KEY_BYTES_MAX && s.bytes().all(|b| b.is_ascii_graphic());
    match v.to_str() {
        Ok(s) if ok(s) => Ok(Some(s.to_string())),
        _ => {
            Err(ApiError::bad_request(format!("Idempotency-Key must be 1 to {KEY_BYTES_MAX} visible ASCII characters")))
        }
    }
}

impl Idempotency {
    /// An empty table saved in `path`; `recover` fills it.
    pub fn new(cfg: IdempotencyConfig, path: Option<PathBuf>) -> Arc<Idempotency> {
        Arc::new(Idempotency { cfg, path, table: Mutex::new(Table::default()) })
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.table.lock().expect("idempotency lock").entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts a keyed request of `tenant` to `topic`.
    pub(crate) fn begin(self: &Arc<Self>, tenant: &str, key: &str, topic: &str) -> Result<Begin, ApiError> {
        let now = now_ms();
        let id = format!("{tenant}\0{key}");
        let mut t = self.table.lock().expect("idempotency lock");
        self.expire(&mut t, now);
        if let Some(e) = t.entries.get_mut(&id) {
            if e.topic != topic {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("Idempotency-Key was used for a request to {} and cannot be reused for {topic}", e.topic),
                ));
            }
            if e.busy() {
                metrics::counter!("strata_ingest_idempotent_total", "outcome" => "busy").increment(1);
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "a request with this Idempotency-Key is still being processed; retry later",
                )
                .retry_after(1));
            }
            if let Some(answer) = &e.answer {
                metrics::counter!("strata_ingest_idempotent_total", "outcome" => "replayed").increment(1);
                return Ok(Begin::Replay(answer.clone()));
            }
            metrics::counter!("strata_ingest_idempotent_total", "outcome" => "resumed").increment(1);
            e.held = true;
            let skip = e.appended.clone();
            return Ok(Begin::Proceed(Ticket { table: self.clone(), id, done: false }, skip));
        }
        if t.entries.len() >= self.cfg.keys_max {
            metrics::counter!("strata_ingest_idempotent_total", "outcome" => "full").increment(1);
            return Err(ApiError::overloaded(
                format!("{} idempotency keys are held (ingest.idempotency.keys_max); retry later", self.cfg.keys_max),
                (self.cfg.window_ms / 10_000).max(1),
            ));
        }
        metrics::counter!("strata_ingest_idempotent_total", "outcome" => "new").increment(1);
        let entry = Entry {
            created_ms: now,
            topic: topic.to_string(),
            appended: BTreeSet::new(),
            answer: None,
            pending: Vec::new(),
            held: true,
        };
        t.entries.insert(id.clone(), entry);
        t.order.push_back((now, id.clone()));
        t.changed = true;
        Ok(Begin::Proceed(Ticket { table: self.clone(), id, done: false }, BTreeSet::new()))
    }

    fn expire(&self, t: &mut Table, now: i64) {
        let horizon = now - self.cfg.window_ms as i64;
        while let Some((created, _)) = t.order.front() {
            if *created >= horizon {
                break;
            }
            let (_, id) = t.order.pop_front().expect("front exists");
            // A key still being worked on stays until its request ends.
            match t.entries.get(&id) {
                Some(e) if e.busy() => t.order.push_back((now, id)),
                Some(e) if e.created_ms < horizon => {
                    t.entries.remove(&id);
                    t.changed = true;
                }
                _ => {}
            }
        }
    }

    /// An append of the ticket's request to `partition` is about to start; `lower` is the
    /// partition's end before it, where the records will land at the earliest.
    pub(crate) fn appending(&self, ticket: &Ticket, partition: u32, lower: u64) {
        let mut t = self.table.lock().expect("idempotency lock");
        if let Some(e) = t.entries.get_mut(&ticket.id) {
            e.pending.push((partition, lower));
        }
    }

    /// The append to `partition` that started at `lower` ended, durable or not. Called by the
    /// append's own task, so it runs even if the request was dropped meanwhile.
    pub(crate) fn appended(&self, id: &str, partition: u32, lower: u64, durable: bool) {
        let mut t = self.table.lock().expect("idempotency lock");
        if let Some(e) = t.entries.get_mut(id) {
            if let Some(i) = e.pending.iter().position(|&p| p == (partition, lower)) {
                e.pending.swap_remove(i);
            }
            if durable {
                e.appended.insert(partition);
            }
            if !e.busy() && e.appended.is_empty() && e.answer.is_none() {
                t.entries.remove(id);
            }
            t.changed = true;
        }
    }

    /// Every position to read the log from on a restart for keys a saved table lacks: per
    /// partition the end before the table is copied, or an earlier start of an append under way.
    fn snapshot(&self, log: &dyn Log) -> Option<Vec<u8>> {
        let mut positions: BTreeMap<String, BTreeMap<u32, u64>> = BTreeMap::new();
        for topic in log.topics() {
            for p in topic.partitions {
                positions.entry(topic.name.clone()).or_default().insert(p.partition, p.latest_offset);
            }
        }
        let mut t = self.table.lock().expect("idempotency lock");
        if !t.changed {
            return None;
        }
        t.changed = false;
        for e in t.entries.values() {
            for &(p, lower) in &e.pending {
                if let Some(at) = positions.get_mut(&e.topic).and_then(|m| m.get_mut(&p)) {
                    *at = (*at).min(lower);
                }
            }
        }
        let entries: Vec<(String, Entry)> = t.entries.iter().map(|(k, e)| (k.clone(), e.clone())).collect();
        drop(t);
        let saved = Saved { version: FILE_VERSION, positions, entries };
        Some(serde_json::to_vec(&saved).expect("the table serialises"))
    }

    /// Saves the table if it changed since the last save. Blocking.
    pub fn save(&self, log: &dyn Log) -> Result<(), strata_durable::Error> {
        let Some(path) = &self.path else { return Ok(()) };
        let Some(bytes) = self.snapshot(log) else { return Ok(()) };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| strata_durable::Error::Io {
                path: dir.to_path_buf(),
                action: "create directory",
                source,
            })?;
        }
        let written = strata_durable::write(path, &bytes);
        if written.is_err() {
            // Saved next time.
            self.table.lock().expect("idempotency lock").changed = true;
        }
        written
    }

    /// Fills the table at start: the saved table, then the keys of the log written since it was
    /// saved. A saved table that cannot be read is named in the log and rebuilt from the whole
    /// window of the log (answers are then rebuilt on retry, not replayed). Blocking.
    pub fn recover(&self, log: &dyn Log) -> Result<usize, strata_log::Error> {
        let now = now_ms();
        let horizon = now - self.cfg.window_ms as i64;
        let saved = match &self.path {
            None => None,
            Some(path) => match load(path) {
                Ok(s) => s,
                Err(reason) => {
                    tracing::error!(path = %path.display(), %reason, "idempotency keys not loaded; rebuilding them from the log");
                    None
                }
            },
        };
        let mut t = self.table.lock().expect("idempotency lock");
        let positions = match saved {
            Some(s) => {
                for (id, e) in s.entries {
                    if e.created_ms >= horizon {
                        t.order.push_back((e.created_ms, id.clone()));
                        t.entries.insert(id, e);
                    }
                }
                Some(s.positions)
            }
            None => None,
        };
        let mut found = 0;
        for topic in log.topics() {
            if strata_model::Kind::from_topic(&topic.name).is_none() {
                continue;
            }
            for p in &topic.partitions {
                let from = match positions.as_ref() {
                    Some(pos) => pos.get(&topic.name).and_then(|m| m.get(&p.partition)).copied().unwrap_or(0),
                    None => log.offset_for_time(&topic.name, p.partition, horizon)?,
                };
                let mut offset = from.max(p.earliest_offset);
                while offset < p.latest_offset {
                    let read = log.read(&topic.name, p.partition, offset, 4 << 20)?;
                    for r in &read.records {
                        let Some(key) = r.record.header(IDEMPOTENCY_KEY) else { continue };
                        let Ok(key) = std::str::from_utf8(key) else { continue };
                        if r.append_time_ms < horizon {
                            continue;
                        }
                        let id = format!("{}\0{key}", r.record.tenant);
                        if !t.entries.contains_key(&id) {
                            t.order.push_back((r.append_time_ms, id.clone()));
                        }
                        let e = t.entries.entry(id).or_insert_with(|| Entry {
                            created_ms: r.append_time_ms,
                            topic: topic.name.clone(),
                            appended: BTreeSet::new(),
                            answer: None,
                            pending: Vec::new(),
                            held: false,
                        });
                        if e.appended.insert(p.partition) {
                            found += 1;
                        }
                    }
                    if read.next_offset <= offset {
                        break;
                    }
                    offset = read.next_offset;
                }
            }
        }
        t.order.make_contiguous().sort();
        t.changed = true;
        Ok(found)
    }
}

impl Ticket {
    /// The table's id of the key, for the append tasks.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Ends the request: with an answer when every partition it had records for holds them;
    /// without one when some could not be appended (a retry appends those). A request that
    /// appended nothing and has no answer leaves no trace.
    pub(crate) fn finish(mut self, answer: Option<Answer>) {
        self.end(answer);
    }

    fn end(&mut self, answer: Option<Answer>) {
        self.done = true;
        let mut t = self.table.table.lock().expect("idempotency lock");
        let Some(e) = t.entries.get_mut(&self.id) else { return };
        e.held = false;
        match answer {
            Some(mut a) => {
                fit(&mut a);
                e.answer = Some(a);
            }
            None if e.appended.is_empty() && e.pending.is_empty() => {
                t.entries.remove(&self.id);
            }
            None => {}
        }
        t.changed = true;
    }
}

impl Drop for Ticket {
    /// A request that ends without an answer (refused, failed, or dropped with its connection)
    /// leaves what it appended, if anything, for a retry to resume.
    fn drop(&mut self) {
        if !self.done {
            self.end(None);
        }
    }
}

/// Cuts an answer's error list until it fits `ANSWER_BYTES_MAX`, counting the cut ones as
/// omitted.
fn fit(a: &mut Answer) {
    let len = |a: &Answer| serde_json::to_vec(&a.body).map_or(0, |v| v.len());
    while len(a) > ANSWER_BYTES_MAX && !a.body.errors.is_empty() {
        let cut = a.body.errors.len().div_ceil(2);
        a.body.errors.truncate(a.body.errors.len() - cut);
        a.body.errors_omitted += cut;
    }
}

fn load(path: &std::path::Path) -> Result<Option<Saved>, String> {
    let bytes = match strata_durable::read(path).map_err(|e| e.to_string())? {
        None => return Ok(None),
        Some(strata_durable::Contents::Checked(b)) => b,
        Some(strata_durable::Contents::Legacy(_)) => return Err("the file has no checksum frame".into()),
    };
    let saved: Saved = serde_json::from_slice(&bytes).map_err(|e| format!("not a saved key table: {e}"))?;
    if saved.version != FILE_VERSION {
        return Err(format!("format version {} is unknown", saved.version));
    }
    Ok(Some(saved))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(accepted: usize) -> Answer {
        Answer { status: 200, body: IngestResponse { accepted, rejected: 0, errors: Vec::new(), errors_omitted: 0 } }
    }

    fn proceed(b: Result<Begin, ApiError>) -> (Ticket, BTreeSet<u32>) {
        match b {
            Ok(Begin::Proceed(t, skip)) => (t, skip),
            Ok(Begin::Replay(a)) => panic!("replayed {a:?}"),
            Err(e) => panic!("{}", e.message),
        }
    }

    #[test]
    fn a_completed_key_replays_and_a_busy_one_is_a_conflict() {
        let idem = Idempotency::new(IdempotencyConfig::default(), None);
        let (ticket, skip) = proceed(idem.begin("t", "k1", "logs"));
        assert!(skip.is_empty());
        let busy = idem.begin("t", "k1", "logs").err().unwrap();
        assert_eq!(busy.status, StatusCode::CONFLICT);
        idem.appending(&ticket, 2, 10);
        idem.appended(ticket.id(), 2, 10, true);
        ticket.finish(Some(answer(3)));
        match idem.begin("t", "k1", "logs") {
            Ok(Begin::Replay(a)) => assert_eq!(a, answer(3)),
            _ => panic!("not replayed"),
        }
        // The same key of another tenant is another key.
        let (other, _) = proceed(idem.begin("u", "k1", "logs"));
        drop(other);
        assert_eq!(idem.begin("t", "k1", "events").err().unwrap().status, StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn a_cut_request_resumes_with_the_partitions_it_reached() {
        let idem = Idempotency::new(IdempotencyConfig::default(), None);
        let (ticket, _) = proceed(idem.begin("t", "k", "logs"));
        idem.appending(&ticket, 0, 5);
        idem.appending(&ticket, 1, 7);
        idem.appended(ticket.id(), 0, 5, true);
        let id = ticket.id().to_string();
        // Dropped (a lost connection) while partition 1's append is still under way.
        drop(ticket);
        assert_eq!(idem.begin("t", "k", "logs").err().unwrap().status, StatusCode::CONFLICT);
        idem.appended(&id, 1, 7, false);
        let (ticket, skip) = proceed(idem.begin("t", "k", "logs"));
        assert_eq!(skip, BTreeSet::from([0]));
        ticket.finish(None);
        let (_, skip) = proceed(idem.begin("t", "k", "logs"));
        assert_eq!(skip, BTreeSet::from([0]), "still remembered: one partition holds its records");
        // A request that appended nothing leaves no trace.
        let (ticket, _) = proceed(idem.begin("t", "refused", "logs"));
        ticket.finish(None);
        assert_eq!(idem.len(), 1);
    }

    #[test]
    fn the_table_is_bounded_and_keys_expire() {
        let cfg = IdempotencyConfig { keys_max: 2, window_ms: 60_000, ..IdempotencyConfig::default() };
        let idem = Idempotency::new(cfg, None);
        for k in ["a", "b"] {
            let (t, _) = proceed(idem.begin("t", k, "logs"));
            t.finish(Some(answer(1)));
        }
        let full = idem.begin("t", "c", "logs").err().unwrap();
        assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE);
        // Age the keys past the window.
        {
            let mut t = idem.table.lock().unwrap();
            for e in t.entries.values_mut() {
                e.created_ms -= 120_000;
            }
            for o in t.order.iter_mut() {
                o.0 -= 120_000;
            }
        }
        let (t, _) = proceed(idem.begin("t", "c", "logs"));
        t.finish(None);
        assert!(idem.is_empty(), "expired keys are gone");
    }

    #[test]
    fn long_answers_are_cut_to_fit() {
        let errors =
            (0..200).map(|index| crate::ItemError { index, error: "x".repeat(50), retryable: false }).collect();
        let mut a =
            Answer { status: 200, body: IngestResponse { accepted: 1, rejected: 200, errors, errors_omitted: 5 } };
        fit(&mut a);
        assert!(serde_json::to_vec(&a.body).unwrap().len() <= ANSWER_BYTES_MAX);
        assert_eq!(a.body.errors.len() + a.body.errors_omitted, 205);
    }

    #[test]
    fn keys_are_checked() {
        let mut h = HeaderMap::new();
        assert_eq!(key_of(&h).unwrap(), None);
        h.insert(HEADER, "batch-17".parse().unwrap());
        assert_eq!(key_of(&h).unwrap().as_deref(), Some("batch-17"));
        h.insert(HEADER, "has space".parse().unwrap());
        assert!(key_of(&h).is_err());
        h.insert(HEADER, "x".repeat(KEY_BYTES_MAX + 1).parse().unwrap());
        assert!(key_of(&h).is_err());
    }
}
