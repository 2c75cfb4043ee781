//! The events pipeline: events are deduplicated and enriched from reference tables, then
//! appended to `events_enriched`, which the rollups of events read.
//!
//! Reference tables are versioned by time. Their changes arrive in the `reference` topic, one
//! record per change of a row, in Debezium's JSON envelope (`{"before", "after", "op", "ts_ms"}`,
//! with or without the `schema`/`payload` wrapper) or as a plain row (an upsert at the record's
//! time); the record's source is the table's name. An event with event time `t` is joined with
//! the row version valid at `t`, so a replay from the start joins as the first run did. To make
//! that hold, an event waits while the `reference` topic has changes this operator has not read
//! yet (it is read first at every turn, so in a live system events do not wait).
//!
//! Deduplication drops an event whose key (`event_id`, or the tenant's configured field) was seen
//! within the tenant's TTL (10 minutes by default), measured in the log's append time, so a
//! producer's retry is dropped however late its own clock says it is. Dropped duplicates and
//! joins that found no row are counted per tenant.
//!
//! The whole state (tables, keys seen, waiting events) is part of each commit of the operator
//! (see [`OperatorSink`](crate::OperatorSink)), so a crash neither drops nor repeats an event.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use strata_log::{Log, StoredRecord};
use strata_model::topic::{Events, EventsEnriched, Reference, Topic};
use strata_model::{EventRef, TopicSpec, raw_string};

use crate::OutputRecord;
use crate::operator::{Emit, Operator, decode_state, encode_state};

/// Keys a tenant's deduplication remembers at most; past it the oldest are forgotten early
/// (counted in `strata_dedup_evicted_total`).
pub const DEDUP_KEYS_MAX: usize = 2_000_000;

/// Versions a table keeps per key at most: the oldest past it are dropped.
const VERSIONS_MAX: usize = 64;

/// How a tenant deduplicates its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    /// The field that identifies an event: `event_id`, or a field of its data.
    #[serde(default = "default_dedup_key")]
    pub key: String,
    /// How long a key is remembered, as a duration (`10m`).
    #[serde(default = "default_ttl")]
    pub ttl: String,
}

fn default_dedup_key() -> String {
    "event_id".into()
}

fn default_ttl() -> String {
    "10m".into()
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig { key: default_dedup_key(), ttl: default_ttl() }
    }
}

/// A reference table's declaration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDecl {
    /// The row field that identifies a row.
    pub key: String,
}

/// What an enrichment adds to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnrichKind {
    /// Fields of events' `data`, in `events_enriched`.
    #[default]
    Events,
    /// Labels of metric samples, as the rollups aggregate them (`group_by` may name them); the
    /// metric store keeps the series as they were sent.
    Metrics,
}

impl EnrichKind {
    fn is_events(&self) -> bool {
        *self == EnrichKind::Events
    }
}

/// An enrichment rule: events of `event_type` (all if absent), or samples of `metric` (all if
/// absent), joined on their field or label `on` with `table`, adding the row's `fields` that the
/// record does not have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrichment {
    pub name: String,
    #[serde(default, skip_serializing_if = "EnrichKind::is_events")]
    pub kind: EnrichKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    pub table: String,
    /// Events: `source_id`, `type`, `event_id` or a field of the event's data. Metrics:
    /// `source_id` (the record's source) or a label.
    pub on: String,
    pub fields: Vec<String>,
}

/// Every tenant's tables, enrichments and deduplication, saved in `meta/enrichment.json`.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    #[serde(default)]
    pub tables: BTreeMap<String, BTreeMap<String, TableDecl>>,
    #[serde(default)]
    pub enrichments: BTreeMap<String, Vec<Enrichment>>,
    #[serde(default)]
    pub dedup: BTreeMap<String, DedupConfig>,
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The catalog, shared by the admin API (which changes and saves it) and the operator.
pub struct CatalogBook {
    path: Option<PathBuf>,
    catalog: RwLock<Catalog>,
    version: AtomicU64,
}

impl CatalogBook {
    /// The catalog saved at `path`, empty if there is none; a damaged file is an error naming it.
    pub fn open(path: Option<PathBuf>) -> Result<CatalogBook, String> {
        let mut catalog = Catalog::default();
        if let Some(p) = &path
            && let Some(c) = strata_durable::read(p).map_err(|e| e.to_string())?
        {
            let body = c.checked(p).map_err(|e| e.to_string())?;
            catalog = serde_json::from_slice(&body).map_err(|e| format!("{} is not valid: {e}", p.display()))?;
        }
        Ok(CatalogBook { path, catalog: RwLock::new(catalog), version: AtomicU64::new(1) })
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn get(&self) -> Catalog {
        self.catalog.read().expect("catalog lock").clone()
    }

    /// Changes the catalog through `f`, which may refuse with a message; saved before it is seen.
    pub fn update(&self, f: impl FnOnce(&mut Catalog) -> Result<(), String>) -> Result<(), String> {
        let mut c = self.catalog.write().expect("catalog lock");
        let mut next = c.clone();
        f(&mut next)?;
        if let Some(path) = &self.path {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            strata_durable::write(path, &serde_json::to_vec_pretty(&next).expect("catalog serialises"))
                .map_err(|e| e.to_string())?;
        }
        *c = next;
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

/// Checks a table declaration.
pub fn check_table(name: &str, t: &TableDecl) -> Result<(), String> {
    if !is_name(name) {
        return Err(format!("table name {name:?} must be 1 to 128 of [A-Za-z0-9_-]"));
    }
    if t.key.is_empty() || t.key.len() > 128 {
        return Err("key must name a field".into());
    }
    Ok(())
}

/// Checks an enrichment against the tenant's tables.
pub fn check_enrichment(e: &Enrichment, tables: Option<&BTreeMap<String, TableDecl>>) -> Result<(), String> {
    if !is_name(&e.name) {
        return Err(format!("enrichment name {:?} must be 1 to 128 of [A-Za-z0-9_-]", e.name));
    }
    if !tables.is_some_and(|t| t.contains_key(&e.table)) {
        return Err(format!(
            "there is no reference table {:?}: declare it first (PUT /admin/v1/reference/{})",
            e.table, e.table
        ));
    }
    if e.fields.is_empty() || e.fields.len() > 64 {
        return Err("fields must name 1 to 64 fields of the table's rows".into());
    }
    match e.kind {
        EnrichKind::Events if e.metric.is_some() => {
            Err("metric is for kind \"metrics\"; events filter by event_type".into())
        }
        EnrichKind::Metrics if e.event_type.is_some() => {
            Err("event_type is for kind \"events\"; metrics filter by metric".into())
        }
        EnrichKind::Metrics => {
            match e.fields.iter().find(|f| !strata_model::is_valid_label_name(f) || f.starts_with("__")) {
                Some(f) => Err(format!(
                    "field {f:?} would be a label: it must be a Prometheus label name, not starting with __"
                )),
                None => Ok(()),
            }
        }
        EnrichKind::Events => Ok(()),
    }
}

/// Checks a deduplication configuration.
pub fn check_dedup(d: &DedupConfig) -> Result<i64, String> {
    if d.key.is_empty() {
        return Err("key must name a field".into());
    }
    strata_model::parse_duration_ms(&d.ttl).ok_or_else(|| format!("ttl {:?} is not a duration (10m)", d.ttl))
}

/// A change of a reference row, parsed from the `reference` topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub key: String,
    /// From when the version holds, Unix ms.
    pub valid_from_ms: i64,
    /// `None`: the row was deleted.
    pub row: Option<Map<String, Value>>,
}

/// A field's text as a key: a string's text, or a number's or boolean's JSON text.
fn raw_key_text(v: &RawValue) -> Option<Cow<'_, str>> {
    match v.get().as_bytes().first()? {
        b'"' => raw_string(v),
        b'-' | b'0'..=b'9' | b't' | b'f' => Some(Cow::Borrowed(v.get())),
        _ => None,
    }
}

/// The event as the `events_enriched` topic holds it: the event's own fields as they were, with
/// `added` in `data`, which keeps its fields in name order (as the gateway writes it).
fn enriched(e: &EventRef<'_>, added: &[(&str, &Value)]) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(untagged)]
    enum Field<'a> {
        Raw(&'a RawValue),
        Added(&'a Value),
    }
    struct Data<'a>(Vec<(&'a str, Field<'a>)>);
    impl Serialize for Data<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
        }
    }
    #[derive(Serialize)]
    struct Out<'a> {
        #[serde(rename = "type")]
        event_type: &'a str,
        timestamp_ns: i64,
        source_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        event_id: Option<&'a str>,
        data: Data<'a>,
    }
    let mut data: Vec<(&str, Field)> = e.data.0.iter().map(|(k, v)| (k.as_ref(), Field::Raw(v))).collect();
    if !added.is_empty() {
        data.extend(added.iter().map(|(k, v)| (*k, Field::Added(v))));
        data.sort_by(|a, b| a.0.cmp(b.0));
    }
    let out = Out {
        event_type: &e.event_type,
        timestamp_ns: e.timestamp_ns,
        source_id: &e.source_id,
        event_id: e.event_id.as_deref(),
        data: Data(data),
    };
    serde_json::to_vec(&out).expect("events serialise")
}

fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// One change from a record of the `reference` topic: a Debezium envelope (with or without the
/// `schema`/`payload` wrapper) or a plain row; `key` is the table's key field and `default_ms`
/// the time a change without `ts_ms` takes (the record's).
pub fn parse_change(payload: &[u8], key: &str, default_ms: i64) -> Result<Change, String> {
    let mut v: Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
    if v.get("schema").is_some() && v.get("payload").is_some() {
        v = v["payload"].take();
    }
    let Value::Object(mut obj) = v else { return Err("a change must be a JSON object".into()) };
    let ts = |o: &Map<String, Value>| {
        o.get("ts_ms").and_then(Value::as_i64).or_else(|| o.get("source").and_then(|s| s["ts_ms"].as_i64()))
    };
    let op = obj.get("op").map(|o| o.as_str().map(str::to_string).ok_or("op must be a string"));
    let op = op.transpose()?;
    let (row, before, valid_from_ms) = match op.as_deref() {
        Some(op @ ("c" | "u" | "r" | "d")) => {
            let t = ts(&obj).unwrap_or(default_ms);
            let after = match obj.remove("after") {
                Some(Value::Object(a)) => Some(a),
                _ => None,
            };
            let before = match obj.remove("before") {
                Some(Value::Object(b)) => Some(b),
                _ => None,
            };
            if op == "d" {
                (None, before, t)
            } else {
                (Some(after.ok_or_else(|| format!("op {op:?} without an \"after\" row"))?), None, t)
            }
        }
        Some(other) => return Err(format!("op {other:?} is not one of c, u, r, d")),
        None => (Some(obj), None, default_ms),
    };
    let keyed = row.as_ref().or(before.as_ref()).ok_or("a delete without a \"before\" row")?;
    let k = keyed.get(key).and_then(key_text).ok_or_else(|| format!("the row has no key field {key:?}"))?;
    Ok(Change { key: k, valid_from_ms, row })
}

/// A row from a time on (`None`: deleted from then).
type Version = (i64, Option<Map<String, Value>>);

/// Every tenant's reference tables, as the `reference` topic's changes built them.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Tables(BTreeMap<String, BTreeMap<String, Table>>);

impl Tables {
    /// Applies the change a `reference` record holds, if its table is declared; an error says
    /// why the change could not be read.
    pub(crate) fn apply(&mut self, catalog: &Catalog, r: &StoredRecord) -> Result<(), String> {
        let tenant = r.record.tenant.as_str();
        let table = r.record.source_id.as_str();
        let Some(decl) = catalog.tables.get(tenant).and_then(|t| t.get(table)) else { return Ok(()) };
        let c = parse_change(&r.record.payload, &decl.key, r.append_time_ms)?;
        self.0.entry(tenant.to_string()).or_default().entry(table.to_string()).or_default().apply(c);
        Ok(())
    }

    /// The row of `table` with key `key` valid at `t`.
    pub(crate) fn row(&self, tenant: &str, table: &str, key: &str, t: i64) -> Option<&Map<String, Value>> {
        self.0.get(tenant)?.get(table)?.at(key, t)
    }
}

/// Whether every change the `reference` topic holds has been read, `read` being the next offset
/// to read of each of its partitions.
pub(crate) fn reference_caught_up(log: &dyn Log, read: &BTreeMap<u32, u64>) -> bool {
    let Ok(n) = log.partition_count(Reference::SPEC.name) else { return true };
    (0..n).all(|p| {
        let end = log.end_offset(Reference::SPEC.name, p).unwrap_or(0);
        read.get(&p).copied().unwrap_or(0) >= end
    })
}

/// The text a row's field gives a label or a key: a string's text, any other value's JSON.
pub(crate) fn value_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

/// A table's rows by key, each a list of versions by validity time.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Table {
    rows: HashMap<String, Vec<Version>>,
}

impl Table {
    fn apply(&mut self, c: Change) {
        let versions = self.rows.entry(c.key).or_default();
        let at = versions.partition_point(|v| v.0 <= c.valid_from_ms);
        versions.insert(at, (c.valid_from_ms, c.row));
        if versions.len() > VERSIONS_MAX {
            versions.remove(0);
        }
    }

    /// The row valid at `t`, if there is one.
    fn at(&self, key: &str, t: i64) -> Option<&Map<String, Value>> {
        let versions = self.rows.get(key)?;
        let i = versions.partition_point(|v| v.0 <= t);
        versions.get(i.checked_sub(1)?)?.1.as_ref()
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Seen {
    /// Key to when it was last seen (append time, ms). Not saved: `order` holds the same, and
    /// saving each key once halves the deduplication's share of a commit.
    #[serde(skip)]
    keys: HashMap<String, i64, foldhash::fast::RandomState>,
    /// Keys in the order they were seen, to expire them.
    order: VecDeque<(i64, String)>,
}

/// An event read while the reference topic had changes not read yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Waiting {
    append_ms: i64,
    tenant: String,
    source_id: String,
    payload: Vec<u8>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    #[serde(with = "json_inside")]
    tables: Tables,
    /// By tenant.
    seen: BTreeMap<String, Seen>,
    /// Events waiting for the reference topic to be read up to its end.
    waiting: Vec<Waiting>,
    /// The next offset to read of each `reference` partition, as far as this operator has read.
    reference_read: BTreeMap<u32, u64>,
}

/// The reference tables in a binary state: their rows are JSON values, which only a
/// self-describing format can read back, so they are kept as one JSON text there.
pub(crate) mod json_inside {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return v.serialize(s);
        }
        let json = serde_json::to_vec(v).map_err(serde::ser::Error::custom)?;
        s.serialize_bytes(&json)
    }

    pub fn deserialize<'de, T: serde::de::DeserializeOwned, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        if d.is_human_readable() {
            return T::deserialize(d);
        }
        let json = <Vec<u8>>::deserialize(d)?;
        serde_json::from_slice(&json).map_err(D::Error::custom)
    }
}

/// Counts of the pipeline, per tenant, shared with the admin API.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct PipelineStats {
    pub duplicates_dropped: u64,
    pub enrichment_missing: u64,
    pub events_out: u64,
    pub reference_rows: usize,
    pub dedup_keys: usize,
}

pub type EventPipelineStats = Arc<Mutex<BTreeMap<String, PipelineStats>>>;

/// Deduplicates and enriches events.
pub struct EventPipeline {
    book: Arc<CatalogBook>,
    log: Arc<dyn Log>,
    version: u64,
    catalog: Catalog,
    ttl_ms: HashMap<String, i64>,
    state: State,
    stats: EventPipelineStats,
    counts: BTreeMap<String, PipelineStats>,
}

impl EventPipeline {
    pub const NAME: &'static str = "events-pipeline";

    pub fn new(book: Arc<CatalogBook>, log: Arc<dyn Log>, stats: EventPipelineStats) -> EventPipeline {
        EventPipeline {
            book,
            log,
            version: 0,
            catalog: Catalog::default(),
            ttl_ms: HashMap::new(),
            state: State::default(),
            stats,
            counts: BTreeMap::new(),
        }
    }

    fn adopt(&mut self) {
        let v = self.book.version();
        if v == self.version {
            return;
        }
        self.version = v;
        self.catalog = self.book.get();
        self.ttl_ms = self.catalog.dedup.iter().filter_map(|(t, d)| Some((t.clone(), check_dedup(d).ok()?))).collect();
    }

    fn reference_caught_up(&self) -> bool {
        reference_caught_up(self.log.as_ref(), &self.state.reference_read)
    }

    /// Deduplicates, enriches and emits one event.
    fn event(&mut self, tenant: &str, append_ms: i64, source_id: &str, payload: &[u8], out: &mut Vec<Emit>) {
        let Ok(e) = EventRef::parse(payload) else { return };
        if !self.counts.contains_key(tenant) {
            self.counts.insert(tenant.to_string(), PipelineStats::default());
        }
        let counts = self.counts.get_mut(tenant).expect("inserted above");
        let dedup_key = self.catalog.dedup.get(tenant).map_or("event_id", |d| d.key.as_str());
        let ttl = self.ttl_ms.get(tenant).copied().unwrap_or(600_000);
        let key = match dedup_key {
            "event_id" => e.event_id.clone(),
            field => e.data.get(field).and_then(raw_key_text),
        };
        if let Some(k) = key {
            if !self.state.seen.contains_key(tenant) {
                self.state.seen.insert(tenant.to_string(), Seen::default());
            }
            let seen = self.state.seen.get_mut(tenant).expect("inserted above");
            while let Some((t, _)) = seen.order.front() {
                if *t + ttl > append_ms && seen.order.len() <= DEDUP_KEYS_MAX {
                    break;
                }
                let (t, old) = seen.order.pop_front().expect("front exists");
                if seen.keys.get(&old) == Some(&t) {
                    seen.keys.remove(&old);
                    if t + ttl > append_ms {
                        metrics::counter!("strata_dedup_evicted_total", "tenant" => tenant.to_string()).increment(1);
                    }
                }
            }
            if seen.keys.get(k.as_ref()).is_some_and(|&t| t + ttl > append_ms) {
                counts.duplicates_dropped += 1;
                metrics::counter!("strata_dedup_dropped_total", "tenant" => tenant.to_string()).increment(1);
                return;
            }
            let k = k.into_owned();
            seen.keys.insert(k.clone(), append_ms);
            seen.order.push_back((append_ms, k));
        }
        let t = e.timestamp_ns.div_euclid(1_000_000);
        // Fields the rules add; a field the event has, or an earlier rule added, is kept.
        let mut added: Vec<(&str, &Value)> = Vec::new();
        for rule in self.catalog.enrichments.get(tenant).into_iter().flatten() {
            if rule.kind != EnrichKind::Events || rule.event_type.as_ref().is_some_and(|ty| *ty != e.event_type) {
                continue;
            }
            let on = match rule.on.as_str() {
                "source_id" => Some(e.source_id.clone()),
                "type" => Some(e.event_type.clone()),
                "event_id" => e.event_id.clone(),
                field => e.data.get(field).and_then(raw_key_text),
            };
            let row = on.and_then(|k| self.state.tables.row(tenant, &rule.table, &k, t));
            match row {
                Some(row) => {
                    for f in &rule.fields {
                        if let Some(v) = row.get(f)
                            && !e.data.contains(f)
                            && !added.iter().any(|(n, _)| n == f)
                        {
                            added.push((f, v));
                        }
                    }
                }
                None => {
                    counts.enrichment_missing += 1;
                    metrics::counter!("strata_enrichment_missing_total", "tenant" => tenant.to_string(), "enrichment" => rule.name.clone())
                        .increment(1);
                }
            }
        }
        counts.events_out += 1;
        out.push(Emit {
            topic: EventsEnriched::SPEC.name,
            tenant: tenant.to_string(),
            record: OutputRecord {
                timestamp_ns: e.timestamp_ns,
                source_id: source_id.to_string(),
                headers: Vec::new(),
                payload: enriched(&e, &added),
            },
        });
    }

    fn release_waiting(&mut self, out: &mut Vec<Emit>) {
        if self.state.waiting.is_empty() || !self.reference_caught_up() {
            return;
        }
        for w in std::mem::take(&mut self.state.waiting) {
            self.event(&w.tenant, w.append_ms, &w.source_id, &w.payload, out);
        }
    }
}

impl Operator for EventPipeline {
    fn name(&self) -> &str {
        Self::NAME
    }

    /// The reference topic first: at every turn its changes are read before the events.
    fn inputs(&self) -> Vec<TopicSpec> {
        vec![Reference::SPEC, Events::SPEC]
    }

    fn restore(&mut self, state: Option<&[u8]>) -> Result<(), String> {
        self.state = decode_state(state, "an events pipeline state")?;
        for seen in self.state.seen.values_mut() {
            seen.keys = seen.order.iter().map(|(t, k)| (k.clone(), *t)).collect();
        }
        self.version = 0;
        self.adopt();
        Ok(())
    }

    fn snapshot(&mut self) -> Vec<u8> {
        encode_state(&self.state)
    }

    fn process(&mut self, topic: &str, partition: u32, records: &[StoredRecord], out: &mut Vec<Emit>) {
        self.adopt();
        if topic == Reference::SPEC.name {
            for r in records {
                self.state.reference_read.insert(partition, r.offset + 1);
                if let Err(e) = self.state.tables.apply(&self.catalog, r) {
                    let (tenant, table) = (r.record.tenant.as_str(), r.record.source_id.as_str());
                    tracing::warn!(tenant, table, offset = r.offset, error = %e, "reference change not applied");
                    metrics::counter!("strata_reference_rejected_total", "tenant" => tenant.to_string()).increment(1);
                }
            }
            self.release_waiting(out);
            return;
        }
        let caught_up = self.state.waiting.is_empty() && self.reference_caught_up();
        for r in records {
            if caught_up {
                self.event(&r.record.tenant, r.append_time_ms, &r.record.source_id, &r.record.payload, out);
            } else {
                self.state.waiting.push(Waiting {
                    append_ms: r.append_time_ms,
                    tenant: r.record.tenant.clone(),
                    source_id: r.record.source_id.clone(),
                    payload: r.record.payload.clone(),
                });
            }
        }
    }

    fn flush(&mut self, out: &mut Vec<Emit>) {
        self.adopt();
        self.release_waiting(out);
        let mut stats = self.counts.clone();
        for (tenant, tables) in &self.state.tables.0 {
            stats.entry(tenant.clone()).or_default().reference_rows = tables.values().map(|t| t.rows.len()).sum();
        }
        for (tenant, seen) in &self.state.seen {
            stats.entry(tenant.clone()).or_default().dedup_keys = seen.keys.len();
        }
        *self.stats.lock().expect("pipeline stats lock") = stats;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_model::Event;

    #[test]
    fn an_enriched_event_is_the_event_with_the_fields_added() {
        let event: Event = serde_json::from_value(serde_json::json!({"type": "req", "timestamp_ns": 7,
            "source_id": "h\"1", "event_id": "e1", "data": {"b": 1.25, "d": {"x": [1, null]}, "s": "\u{e9}\n"}}))
        .unwrap();
        let payload = serde_json::to_vec(&event).unwrap();
        let e = EventRef::parse(&payload).unwrap();
        assert_eq!(enriched(&e, &[]), payload, "nothing added: the same bytes");
        let (region, aa) = (Value::from("eu"), serde_json::json!({"k": 1}));
        let mut expected = event.clone();
        expected.data.insert("region".into(), region.clone());
        expected.data.insert("aa".into(), aa.clone());
        assert_eq!(enriched(&e, &[("region", &region), ("aa", &aa)]), serde_json::to_vec(&expected).unwrap());
        assert_eq!(raw_key_text(e.data.get("b").unwrap()).as_deref(), Some("1.25"));
        assert_eq!(raw_key_text(e.data.get("s").unwrap()).as_deref(), Some("\u{e9}\n"));
        assert_eq!(raw_key_text(e.data.get("d").unwrap()), None);
    }

    #[test]
    fn debezium_envelopes_and_plain_rows_become_changes() {
        let c =
            parse_change(br#"{"before": null, "after": {"id": 7, "region": "eu"}, "op": "c", "ts_ms": 1000}"#, "id", 5)
                .unwrap();
        assert_eq!((c.key.as_str(), c.valid_from_ms, c.row.unwrap()["region"].as_str()), ("7", 1000, Some("eu")));
        let wrapped = br#"{"schema": {"type": "struct"}, "payload": {"before": {"id": "h1", "region": "eu"}, "after": null, "op": "d", "ts_ms": 2000}}"#;
        let d = parse_change(wrapped, "id", 5).unwrap();
        assert_eq!((d.key.as_str(), d.valid_from_ms, d.row), ("h1", 2000, None));
        let plain = parse_change(br#"{"id": "h2", "team": "core"}"#, "id", 5).unwrap();
        assert_eq!((plain.key.as_str(), plain.valid_from_ms), ("h2", 5));
        for bad in [&br#"{"op": "x"}"#[..], br#"{"op": "u", "ts_ms": 1}"#, br#"{"name": "no key"}"#, b"[1]", b"nope"] {
            assert!(parse_change(bad, "id", 0).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_table_answers_with_the_version_valid_at_a_time() {
        let mut t = Table::default();
        let row = |r: &str| Some(serde_json::json!({"region": r}).as_object().unwrap().clone());
        t.apply(Change { key: "h".into(), valid_from_ms: 100, row: row("eu") });
        t.apply(Change { key: "h".into(), valid_from_ms: 300, row: None });
        t.apply(Change { key: "h".into(), valid_from_ms: 200, row: row("us") });
        assert_eq!(t.at("h", 50), None);
        assert_eq!(t.at("h", 100).unwrap()["region"], "eu");
        assert_eq!(t.at("h", 250).unwrap()["region"], "us");
        assert_eq!(t.at("h", 300), None, "deleted");
        assert_eq!(t.at("other", 250), None);
    }
}
