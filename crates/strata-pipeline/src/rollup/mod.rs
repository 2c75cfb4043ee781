//! Rollups: metric samples and event values (of deduplicated, enriched events: the
//! `events_enriched` topic) aggregated per group in event-time windows, written
//! to the `rollups` topic as metric series that the rollup store serves through PromQL.
//!
//! Event time is the sample's (or event's) timestamp. Each input partition's clock is the newest
//! event time it has shown; a rule's watermark is the oldest clock among the partitions of its
//! input topic that showed a record within `IDLE_MS` (an idle partition does not hold it back),
//! minus the rule's `out_of_orderness`. A window is emitted when the watermark passes its end, at
//! the next commit; a record for a window already emitted, up to `allowed_lateness` after its end,
//! updates it and it is emitted again; a record later than that, for every window it belongs to,
//! goes to the `late` topic and is counted. Outputs are samples at the window's end, so emitting a
//! window again overwrites its sample: re-emission never double counts.
//!
//! Tumbling windows are hopping windows whose slide is their size: both are built from panes of
//! `slide`, merged per window when it is emitted. Sliding windows keep each group's values and
//! emit, for each distinct timestamp, the window of `size` that ends there.
//!
//! The operator runs under [`OperatorSink`](crate::OperatorSink): its whole state (panes, values,
//! clocks) is part of each commit, so a restart resumes exactly where the last commit was.

mod rules;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use strata_log::StoredRecord;
use strata_model::topic::{EventsEnriched, Late, Metrics, Reference, Rollups, Topic};
use strata_model::{EventRef, MetricBatch, MetricBatchBuilder, SeriesRegistry, TopicSpec, raw_number, raw_string};

pub use rules::{Aggregation, Compiled, EventInput, Input, MetricInput, RollupRule, RuleBook, Window, WindowSpec};

use crate::OutputRecord;
use crate::enrich::{
    Catalog, CatalogBook, EnrichKind, Enrichment, Tables, json_inside, reference_caught_up, value_text,
};
use crate::operator::{Emit, Operator, decode_state, encode_state};
use crate::sketch::Sketch;

/// By default, a partition without a record for this long (and none left to read) does not hold
/// the watermark back.
pub const IDLE_MS: u64 = 30_000;

/// Output series per emitted record.
const SERIES_PER_RECORD: usize = 2000;

/// Floats in a state snapshot: as they are in a binary form; in JSON (states written before the
/// binary form, and tests) numbers when finite, `"+Inf"`, `"-Inf"` or `"NaN"` otherwise (JSON
/// has no number for them, and a sample may be infinite).
mod float {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return s.serialize_f64(*v);
        }
        match *v {
            v if v.is_finite() => s.serialize_f64(v),
            v if v.is_nan() => s.serialize_str("NaN"),
            v if v > 0.0 => s.serialize_str("+Inf"),
            _ => s.serialize_str("-Inf"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        if !d.is_human_readable() {
            return f64::deserialize(d);
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum F {
            Number(f64),
            Text(String),
        }
        match F::deserialize(d)? {
            F::Number(v) => Ok(v),
            F::Text(t) => match t.as_str() {
                "NaN" => Ok(f64::NAN),
                "+Inf" => Ok(f64::INFINITY),
                "-Inf" => Ok(f64::NEG_INFINITY),
                other => Err(D::Error::custom(format!("{other:?} is not a float"))),
            },
        }
    }
}

/// A value of a sliding window's group: its time and value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Point(i64, #[serde(with = "float")] f64);

/// What a window holds for one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Partial {
    n: u64,
    #[serde(with = "float")]
    sum: f64,
    #[serde(with = "float")]
    min: f64,
    #[serde(with = "float")]
    max: f64,
    last_ts: i64,
    #[serde(with = "float")]
    last: f64,
    /// Boxed: most rules have no quantile, and a partial without its sketch inline keeps a
    /// pane's table small.
    #[serde(default)]
    sketch: Option<Box<Sketch>>,
}

impl Partial {
    fn new(quantiles: bool) -> Partial {
        Partial {
            n: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            last_ts: i64::MIN,
            last: f64::NAN,
            sketch: quantiles.then(Box::default),
        }
    }

    fn add(&mut self, ts: i64, v: f64) {
        self.n += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        // The newest sample wins; of two at one time, the larger (so that the order in which
        // partitions were read never decides).
        if ts > self.last_ts || (ts == self.last_ts && v > self.last) {
            (self.last_ts, self.last) = (ts, v);
        }
        if let Some(s) = &mut self.sketch {
            s.add(v);
        }
    }

    fn merge(&mut self, o: &Partial) {
        self.n += o.n;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        if o.last_ts > self.last_ts || (o.last_ts == self.last_ts && o.last > self.last) {
            (self.last_ts, self.last) = (o.last_ts, o.last);
        }
        if let (Some(s), Some(o)) = (&mut self.sketch, &o.sketch) {
            s.merge(o);
        }
    }

    fn value(&self, a: Aggregation) -> f64 {
        match a {
            Aggregation::Count => self.n as f64,
            Aggregation::Sum => self.sum,
            Aggregation::Min => self.min,
            Aggregation::Max => self.max,
            Aggregation::Avg => self.sum / self.n as f64,
            Aggregation::Last => self.last,
            q => self.sketch.as_ref().and_then(|s| s.quantile(q.quantile().expect("a quantile"))).unwrap_or(f64::NAN),
        }
    }
}

/// One group's values of a sliding window rule, sorted by time.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Slide {
    points: Vec<Point>,
    /// Timestamps up to here have been emitted.
    emitted_to: i64,
    /// Emitted timestamps whose windows changed since.
    redo: BTreeSet<i64>,
}

/// A pane's groups: the group's key to its partial.
type Groups = HashMap<String, Partial, foldhash::fast::RandomState>;

/// The state of one rule.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct RuleState {
    id: u64,
    /// Pane start to the groups' partials (tumbling and hopping).
    panes: BTreeMap<i64, Groups>,
    /// Windows ending at or before this were emitted.
    fired_to: Option<i64>,
    /// Emitted windows (end, group) that changed since.
    redo: BTreeSet<(i64, String)>,
    sliding: HashMap<String, Slide, foldhash::fast::RandomState>,
    late: u64,
    watermark: Option<i64>,
}

/// A partition's clock.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Clock {
    max_event_ms: i64,
    /// The next offset of the partition this operator has not read.
    #[serde(default)]
    next_offset: u64,
    /// When it last showed a record; not kept across a restart (all start active).
    #[serde(skip, default = "Instant::now")]
    seen: Instant,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// By "tenant/rule".
    rules: BTreeMap<String, RuleState>,
    /// By topic, then partition.
    clocks: BTreeMap<String, BTreeMap<u32, Clock>>,
    /// By topic, then partition: the next offset not read, whether its records had samples or not.
    #[serde(default)]
    read_to: BTreeMap<String, BTreeMap<u32, u64>>,
    /// Reference tables, for the enrichments of metrics.
    #[serde(default, with = "json_inside")]
    tables: Tables,
    /// The next offset to read of each `reference` partition.
    #[serde(default)]
    reference_read: BTreeMap<u32, u64>,
    /// Metric records of tenants with enrichments of metrics, read while the `reference` topic
    /// had changes not read yet.
    #[serde(default)]
    held: Vec<Held>,
}

/// A record held until the reference topic is read: what the rollups need of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Held {
    topic: String,
    partition: u32,
    offset: u64,
    append_ms: i64,
    timestamp_ns: i64,
    tenant: String,
    source_id: String,
    payload: Vec<u8>,
}

impl Held {
    fn of(topic: &str, partition: u32, r: &StoredRecord) -> Held {
        Held {
            topic: topic.to_string(),
            partition,
            offset: r.offset,
            append_ms: r.append_time_ms,
            timestamp_ns: r.record.timestamp_ns,
            tenant: r.record.tenant.clone(),
            source_id: r.record.source_id.clone(),
            payload: r.record.payload.clone(),
        }
    }

    fn record(&self) -> StoredRecord {
        StoredRecord {
            offset: self.offset,
            append_time_ms: self.append_ms,
            record: strata_log::Record {
                timestamp_ns: self.timestamp_ns,
                tenant: self.tenant.clone(),
                source_id: self.source_id.clone(),
                headers: Vec::new(),
                payload: self.payload.clone(),
            },
        }
    }
}

/// What the admin API and `/metrics` show of one rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RuleStats {
    pub tenant: String,
    pub rule: String,
    /// The rule's watermark, Unix ms (none before its input showed a record).
    pub watermark_ms: Option<i64>,
    /// Groups held in open windows or sliding buffers.
    pub groups: usize,
    /// Windows (panes) or buffered values held.
    pub state_entries: usize,
    pub late_records: u64,
    pub emitted_samples: u64,
    /// Each partition of the rule's input topic.
    pub partitions: Vec<PartitionStats>,
}

/// One input partition as a rule sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PartitionStats {
    pub partition: u32,
    /// The newest event time the partition showed, minus the rule's out-of-orderness (none
    /// before its first record).
    pub watermark_ms: Option<i64>,
    /// The next offset the operator has not read.
    pub next_offset: u64,
    /// Records of the partition not read yet.
    pub lag: u64,
    /// Quiet for `IDLE_MS` with nothing left to read: it does not hold the rule's watermark back.
    pub idle: bool,
}

/// The rollup operator's figures, shared with the admin API.
pub type RollupStats = Arc<Mutex<BTreeMap<String, RuleStats>>>;

/// Aggregates records by the rules of a [`RuleBook`].
pub struct RollupOperator {
    book: Arc<RuleBook>,
    registry: Arc<SeriesRegistry>,
    version: u64,
    rules: Vec<Compiled>,
    /// Each rule's key in the state ("tenant/rule"), by the rule's place in `rules`.
    keys: Vec<String>,
    by_tenant: HashMap<String, Vec<usize>>,
    state: State,
    stats: RollupStats,
    emitted: HashMap<String, u64>,
    /// Tells a partition that is quiet from one whose records are not read yet.
    log: Option<Arc<dyn strata_log::Log>>,
    /// The reference tables' declarations and the enrichments of metrics, by tenant.
    catalog: Option<Arc<CatalogBook>>,
    catalog_version: u64,
    catalog_now: Catalog,
    metric_enrichments: HashMap<String, Vec<Enrichment>>,
    /// A partition quiet this long, with nothing left to read, does not hold the watermark back.
    idle_ms: u64,
}

fn key(c: &Compiled) -> String {
    format!("{}/{}", c.tenant, c.rule.name)
}

impl RollupOperator {
    pub const NAME: &'static str = "rollups";

    pub fn new(book: Arc<RuleBook>, registry: Arc<SeriesRegistry>, stats: RollupStats) -> RollupOperator {
        RollupOperator {
            book,
            registry,
            version: 0,
            rules: Vec::new(),
            keys: Vec::new(),
            by_tenant: HashMap::new(),
            state: State::default(),
            stats,
            emitted: HashMap::new(),
            log: None,
            catalog: None,
            catalog_version: 0,
            catalog_now: Catalog::default(),
            metric_enrichments: HashMap::new(),
            idle_ms: IDLE_MS,
        }
    }

    /// How long a partition must be quiet (with nothing left to read) before it stops holding the
    /// watermark back: long enough that a sender's pause is not taken for the end of its data.
    pub fn with_idle_ms(mut self, idle_ms: u64) -> RollupOperator {
        self.idle_ms = idle_ms;
        self
    }

    /// Enriches metric samples by the catalog's enrichments of kind `metrics`: a `group_by`
    /// label a series lacks is looked up in the row valid at each sample's time.
    pub fn with_catalog(mut self, catalog: Arc<CatalogBook>) -> RollupOperator {
        self.catalog = Some(catalog);
        self
    }

    /// Reads the log's partition ends, so that a partition with records not read yet is never
    /// taken for idle (without it, only the time since its last record says so).
    pub fn with_log(mut self, log: Arc<dyn strata_log::Log>) -> RollupOperator {
        self.log = Some(log);
        self
    }

    /// Takes the book's rules if they changed: a new rule starts empty, a removed or replaced
    /// one's state is dropped.
    fn adopt(&mut self) {
        if let Some(book) = &self.catalog
            && book.version() != self.catalog_version
        {
            self.catalog_version = book.version();
            self.catalog_now = book.get();
            self.metric_enrichments = self
                .catalog_now
                .enrichments
                .iter()
                .map(|(t, es)| (t.clone(), es.iter().filter(|e| e.kind == EnrichKind::Metrics).cloned().collect()))
                .filter(|(_, es): &(String, Vec<Enrichment>)| !es.is_empty())
                .collect();
        }
        let version = self.book.version();
        if version == self.version {
            return;
        }
        self.version = version;
        self.rules = self.book.all();
        self.keys = self.rules.iter().map(key).collect();
        self.by_tenant.clear();
        for (i, c) in self.rules.iter().enumerate() {
            self.by_tenant.entry(c.tenant.clone()).or_default().push(i);
        }
        let live: HashMap<&String, u64> = self.keys.iter().zip(&self.rules).map(|(k, c)| (k, c.id)).collect();
        self.state.rules.retain(|k, s| live.get(k) == Some(&s.id));
        for (k, c) in self.keys.iter().zip(&self.rules) {
            self.state.rules.entry(k.clone()).or_insert_with(|| RuleState { id: c.id, ..RuleState::default() });
        }
    }

    /// The watermark of a rule reading `topic`: the oldest clock of its active partitions. A
    /// partition is idle when it showed no record for `IDLE_MS` and has none left to read: one
    /// whose records wait behind another's never lets the watermark pass them.
    fn watermark(&self, topic: &str, c: &Compiled) -> Option<i64> {
        let clocks = self.state.clocks.get(topic)?;
        let unread =
            |p: u32, next: u64| self.log.as_ref().is_some_and(|l| l.end_offset(topic, p).is_ok_and(|end| end > next));
        // A partition with records not read yet and no clock (none of its records read so far)
        // could hold anything: the watermark waits for it.
        if let Some(log) = &self.log {
            let read_to = self.state.read_to.get(topic);
            for p in 0..log.partition_count(topic).unwrap_or(0) {
                let next = read_to.and_then(|r| r.get(&p)).copied().unwrap_or(0);
                if !clocks.contains_key(&p) && unread(p, next) {
                    return None;
                }
            }
        }
        clocks
            .iter()
            .filter(|(p, c)| c.seen.elapsed().as_millis() as u64 <= self.idle_ms || unread(**p, c.next_offset))
            .map(|(_, c)| c.max_event_ms)
            .min()
            .map(|m| m.saturating_sub(c.out_of_orderness_ms))
    }

    /// Each partition of `topic`, with its clock (the newest event time it showed).
    fn partition_stats(&self, topic: &str) -> Vec<(PartitionStats, Option<i64>)> {
        let clocks = self.state.clocks.get(topic);
        let read_to = self.state.read_to.get(topic);
        let count = match &self.log {
            Some(log) => log.partition_count(topic).unwrap_or(0),
            None => clocks.and_then(|c| c.keys().max()).map_or(0, |m| m + 1),
        };
        (0..count)
            .map(|p| {
                let clock = clocks.and_then(|c| c.get(&p));
                let next_offset = read_to.and_then(|r| r.get(&p)).copied().unwrap_or(0);
                let end = self.log.as_ref().and_then(|l| l.end_offset(topic, p).ok()).unwrap_or(next_offset);
                let lag = end.saturating_sub(next_offset);
                let quiet = clock.is_none_or(|c| c.seen.elapsed().as_millis() as u64 > self.idle_ms);
                let stats =
                    PartitionStats { partition: p, watermark_ms: None, next_offset, lag, idle: quiet && lag == 0 };
                (stats, clock.map(|c| c.max_event_ms))
            })
            .collect()
    }

    fn tick(&mut self, topic: &str, partition: u32, ts: i64) {
        if !self.state.clocks.contains_key(topic) {
            self.state.clocks.insert(topic.to_string(), BTreeMap::new());
        }
        let clocks = self.state.clocks.get_mut(topic).expect("inserted above");
        let clock = clocks.entry(partition).or_insert(Clock { max_event_ms: ts, next_offset: 0, seen: Instant::now() });
        clock.max_event_ms = clock.max_event_ms.max(ts);
        clock.seen = Instant::now();
    }
}

/// A group's key: its values in `group_by` order, joined by NUL.
fn group_key<'a>(group_by: &[String], mut value: impl FnMut(&str) -> Option<&'a str>) -> String {
    let mut k = String::new();
    for (i, name) in group_by.iter().enumerate() {
        if i > 0 {
            k.push('\0');
        }
        k.push_str(value(name).unwrap_or(""));
    }
    k
}

/// A group's key from values that may be owned (labels added by an enrichment).
fn group_key_with<'a>(group_by: &[String], mut value: impl FnMut(&str) -> Option<Cow<'a, str>>) -> String {
    let mut k = String::new();
    for (i, name) in group_by.iter().enumerate() {
        if i > 0 {
            k.push('\0');
        }
        if let Some(v) = value(name) {
            k.push_str(&v);
        }
    }
    k
}

/// The value label `name` of a sample of `metric` at `ts` gets from the first of `enrichments`
/// that adds it and finds a row; `Err` names an enrichment that found no row for its key.
#[allow(clippy::too_many_arguments)]
fn enriched_label<'t, 'e>(
    tables: &'t Tables,
    enrichments: &'e [Enrichment],
    tenant: &str,
    metric: &str,
    labels: &[(&str, &str)],
    source_id: &str,
    name: &str,
    ts: i64,
) -> Result<Option<Cow<'t, str>>, &'e str> {
    let mut missing = None;
    for e in enrichments
        .iter()
        .filter(|e| e.metric.as_ref().is_none_or(|m| m == metric) && e.fields.iter().any(|f| f == name))
    {
        let key = if e.on == "source_id" { Some(source_id) } else { labels.iter().find(|l| l.0 == e.on).map(|l| l.1) };
        match key.and_then(|k| tables.row(tenant, &e.table, k, ts)) {
            Some(row) => {
                if let Some(v) = row.get(name) {
                    return Ok(Some(value_text(v)));
                }
            }
            None => missing = missing.or(Some(e.name.as_str())),
        }
    }
    missing.map_or(Ok(None), Err)
}

/// Adds one value to a rule's state, or reports it late.
fn add(c: &Compiled, s: &mut RuleState, wm: Option<i64>, group: &str, ts: i64, v: f64) -> bool {
    let lateness = c.allowed_lateness_ms;
    let closed = |end: i64| wm.is_some_and(|w| end.saturating_add(lateness) <= w);
    match c.window {
        Window::Panes { size, slide } => {
            let pane = ts.div_euclid(slide) * slide;
            if closed(pane + size) {
                return false;
            }
            let quantiles = c.quantiles;
            if let Some(fired) = s.fired_to {
                let mut end = pane + slide;
                while end <= pane + size {
                    if end <= fired && !closed(end) {
                        s.redo.insert((end, group.to_string()));
                    }
                    end += slide;
                }
            }
            // The group's key is copied only the first time it shows in a pane.
            let groups = s.panes.entry(pane).or_default();
            match groups.get_mut(group) {
                Some(p) => p.add(ts, v),
                None => {
                    let mut p = Partial::new(quantiles);
                    p.add(ts, v);
                    groups.insert(group.to_string(), p);
                }
            }
        }
        Window::Sliding { size } => {
            if closed(ts) {
                return false;
            }
            if !s.sliding.contains_key(group) {
                s.sliding.insert(group.to_string(), Slide { emitted_to: i64::MIN, ..Slide::default() });
            }
            let g = s.sliding.get_mut(group).expect("inserted above");
            let at = g.points.partition_point(|p| p.0 <= ts);
            g.points.insert(at, Point(ts, v));
            if ts <= g.emitted_to {
                let emitted_to = g.emitted_to;
                let redo: Vec<i64> = g
                    .points
                    .iter()
                    .map(|p| p.0)
                    .filter(|&t| t >= ts && t < ts.saturating_add(size) && t <= emitted_to)
                    .collect();
                g.redo.extend(redo);
            }
        }
    }
    true
}

/// Output series of one rule being emitted: one metric batch per `SERIES_PER_RECORD` series.
struct Output<'a> {
    c: &'a Compiled,
    /// `group_by` in label order, with each one's place in the key.
    order: Vec<(usize, &'a str)>,
    batch: MetricBatchBuilder,
    series: usize,
    samples: u64,
    out: &'a mut Vec<Emit>,
}

impl<'a> Output<'a> {
    fn new(c: &'a Compiled, out: &'a mut Vec<Emit>) -> Output<'a> {
        let mut order: Vec<(usize, &str)> = c.rule.group_by.iter().enumerate().map(|(i, n)| (i, n.as_str())).collect();
        order.sort_by_key(|(_, n)| *n);
        Output { c, order, batch: MetricBatchBuilder::new(), series: 0, samples: 0, out }
    }

    fn emit(&mut self, group: &str, end: i64, p: &Partial) {
        let values: Vec<&str> = group.split('\0').collect();
        let labels: Vec<(&str, &str)> =
            self.order.iter().filter_map(|&(i, n)| values.get(i).filter(|v| !v.is_empty()).map(|v| (n, *v))).collect();
        for &a in &self.c.rule.aggregations {
            let name = format!("{}_{}", self.c.rule.output, a.name());
            self.batch.add_series(&name, labels.iter().copied(), &[(end, p.value(a))]);
            self.series += 1;
            self.samples += 1;
        }
        if self.series >= SERIES_PER_RECORD {
            self.finish_batch();
        }
    }

    fn finish_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, MetricBatchBuilder::new());
        self.series = 0;
        self.out.push(Emit {
            topic: Rollups::SPEC.name,
            tenant: self.c.tenant.clone(),
            record: OutputRecord {
                timestamp_ns: batch.max_ts_ms().saturating_mul(1_000_000),
                source_id: self.c.rule.name.clone(),
                headers: Vec::new(),
                payload: batch.finish(),
            },
        });
    }
}

/// Emits what the watermark made final and what changed since it was emitted.
fn flush_rule(c: &Compiled, s: &mut RuleState, wm: Option<i64>, out: &mut Vec<Emit>) -> u64 {
    let mut o = Output::new(c, out);
    let lateness = c.allowed_lateness_ms;
    match c.window {
        Window::Panes { size, slide } => {
            let merged = |panes: &BTreeMap<i64, Groups>, end: i64, only: Option<&str>| {
                let mut groups: BTreeMap<String, Partial> = BTreeMap::new();
                for (_, pane) in panes.range(end - size..end) {
                    match only {
                        Some(g) => {
                            if let Some(p) = pane.get(g) {
                                groups.entry(g.to_string()).or_insert_with(|| Partial::new(c.quantiles)).merge(p);
                            }
                        }
                        None => {
                            for (g, p) in pane {
                                groups.entry(g.clone()).or_insert_with(|| Partial::new(c.quantiles)).merge(p);
                            }
                        }
                    }
                }
                groups
            };
            for (end, group) in std::mem::take(&mut s.redo) {
                for (g, p) in merged(&s.panes, end, Some(&group)) {
                    o.emit(&g, end, &p);
                }
            }
            if let Some(w) = wm {
                let fire_to = w.div_euclid(slide) * slide;
                let ends: BTreeSet<i64> = s
                    .panes
                    .keys()
                    .flat_map(|&p| (1..=size / slide).map(move |k| p + k * slide))
                    .filter(|&e| e <= fire_to && s.fired_to.is_none_or(|f| e > f))
                    .collect();
                for end in ends {
                    for (g, p) in merged(&s.panes, end, None) {
                        o.emit(&g, end, &p);
                    }
                }
                s.fired_to = Some(s.fired_to.map_or(fire_to, |f| f.max(fire_to)));
                s.panes.retain(|&p, _| p + size + lateness > w);
            }
        }
        Window::Sliding { size } => {
            for (g, slide) in s.sliding.iter_mut() {
                let value_at = |points: &[Point], t: i64| {
                    let mut p = Partial::new(c.quantiles);
                    for &Point(ts, v) in points.iter().filter(|p| p.0 > t - size && p.0 <= t) {
                        p.add(ts, v);
                    }
                    p
                };
                let mut times: BTreeSet<i64> = std::mem::take(&mut slide.redo);
                if let Some(w) = wm {
                    times.extend(slide.points.iter().map(|p| p.0).filter(|&t| t > slide.emitted_to && t <= w));
                    slide.emitted_to = slide.emitted_to.max(w);
                }
                for t in times {
                    o.emit(g, t, &value_at(&slide.points, t));
                }
                if let Some(w) = wm {
                    slide.points.retain(|p| p.0 + size + lateness > w);
                }
            }
            s.sliding.retain(|_, g| !g.points.is_empty());
        }
    }
    o.finish_batch();
    s.watermark = wm;
    o.samples
}

fn late(c: &Compiled, group: &str, ts: i64, v: f64, wm: Option<i64>, out: &mut Vec<Emit>) {
    let labels: serde_json::Map<String, serde_json::Value> = c
        .rule
        .group_by
        .iter()
        .zip(group.split('\0'))
        .map(|(n, v)| (n.clone(), serde_json::Value::String(v.to_string())))
        .collect();
    let value = if v.is_finite() { serde_json::json!(v) } else { serde_json::json!(v.to_string()) };
    let payload = serde_json::json!({
        "rule": c.rule.name, "timestamp_ms": ts, "value": value, "group": labels, "watermark_ms": wm,
    });
    out.push(Emit {
        topic: Late::SPEC.name,
        tenant: c.tenant.clone(),
        record: OutputRecord {
            timestamp_ns: ts.saturating_mul(1_000_000),
            source_id: c.rule.name.clone(),
            headers: Vec::new(),
            payload: serde_json::to_vec(&payload).expect("json"),
        },
    });
}

/// An event's group, written into `key`: `source_id`, `type` or a field of its data, per
/// `group_by` name, joined by NUL; a number, boolean, array or object field counts as its JSON
/// text, a missing or null one as empty.
fn event_group(group_by: &[String], e: &EventRef<'_>, key: &mut String) {
    key.clear();
    for (i, name) in group_by.iter().enumerate() {
        if i > 0 {
            key.push('\0');
        }
        match name.as_str() {
            "source_id" => key.push_str(&e.source_id),
            "type" => key.push_str(&e.event_type),
            _ => match e.data.get(name) {
                None => {}
                Some(v) if v.get() == "null" => {}
                Some(v) => match raw_string(v) {
                    Some(s) => key.push_str(&s),
                    None => key.push_str(v.get()),
                },
            },
        }
    }
}

impl RollupOperator {
    fn reference_caught_up(&self) -> bool {
        self.log.as_ref().is_none_or(|log| reference_caught_up(log.as_ref(), &self.state.reference_read))
    }

    /// Processes the held records once the reference topic is read to its end.
    fn release_held(&mut self, out: &mut Vec<Emit>) {
        if self.state.held.is_empty() || !self.reference_caught_up() {
            return;
        }
        let held = std::mem::take(&mut self.state.held);
        let mut i = 0;
        while i < held.len() {
            let (topic, partition) = (held[i].topic.clone(), held[i].partition);
            let n = held[i..].iter().take_while(|h| h.topic == topic && h.partition == partition).count();
            let records: Vec<StoredRecord> = held[i..i + n].iter().map(Held::record).collect();
            self.records(&topic, partition, &records, out);
            i += n;
        }
    }

    /// Notes that `partition` of `topic` was read up to `next` (never backwards: held records
    /// are processed after later ones).
    fn read_to(&mut self, topic: &str, partition: u32, next: u64) {
        let read = self.state.read_to.entry(topic.to_string()).or_default().entry(partition).or_default();
        *read = (*read).max(next);
        if let Some(clock) = self.state.clocks.get_mut(topic).and_then(|c| c.get_mut(&partition)) {
            clock.next_offset = clock.next_offset.max(next);
        }
    }

    /// Aggregates one read's records of `metrics` or `events_enriched`.
    fn records(&mut self, topic: &str, partition: u32, records: &[StoredRecord], out: &mut Vec<Emit>) {
        let is_metrics = topic == Metrics::SPEC.name;
        if !is_metrics && topic != EventsEnriched::SPEC.name {
            return;
        }
        // Lateness is judged against the watermark as this read began.
        let marks: Vec<Option<i64>> = self.rules.iter().map(|c| self.watermark(topic, c)).collect();
        // An event's group key, reused for every event.
        let mut group = String::new();
        for r in records {
            let tenant = r.record.tenant.as_str();
            let rules: &[usize] = self.by_tenant.get(tenant).map_or(&[], Vec::as_slice);
            if is_metrics {
                let Ok(batch) = MetricBatch::decode(&r.record.payload) else { continue };
                // The watermark needs the samples' times, not the series' labels: a tenant
                // without rules has nothing resolved.
                let view = self.registry.read();
                let Some(newest) = batch.newest_in(tenant, &view) else { continue };
                if rules.is_empty() {
                    drop(view);
                    self.tick(topic, partition, newest);
                    continue;
                }
                let State { rules: rule_states, tables, .. } = &mut self.state;
                let (all, keys) = (&self.rules, &self.keys);
                let enrichments: &[Enrichment] = self.metric_enrichments.get(tenant).map_or(&[], Vec::as_slice);
                let source_id = r.record.source_id.as_str();
                // Reused for every series of the batch.
                let mut points: Vec<(i64, f64)> = Vec::new();
                let _ = batch.for_each_series_in(tenant, &view, |_, labels, samples| {
                    points.clear();
                    points.extend(samples);
                    let name = labels.iter().find(|(n, _)| *n == "__name__").map_or("", |l| l.1);
                    let matching = rules.iter().copied().filter(|&i| match &all[i].rule.input {
                        Input::Metric(MetricInput { metric, labels: want }) => {
                            metric == name && want.iter().all(|(k, v)| labels.iter().any(|(n, lv)| n == k && lv == v))
                        }
                        Input::Event(_) => false,
                    });
                    let mut missing: Option<&str> = None;
                    for i in matching {
                        let c = &all[i];
                        let s = rule_states.get_mut(&keys[i]).expect("adopted rules have state");
                        let own = |n: &str| labels.iter().find(|l| l.0 == n).map(|l| l.1);
                        // `group_by` labels the series lacks and an enrichment adds: looked up at
                        // each sample's time (the row may change between two samples).
                        let enriched = !enrichments.is_empty()
                            && c.rule.group_by.iter().any(|n| {
                                own(n).is_none()
                                && enrichments.iter().any(|e| e.metric.as_ref().is_none_or(|m| m == name) && e.fields.contains(n))
                        });
                        let fixed = (!enriched).then(|| group_key(&c.rule.group_by, own));
                        for &(ts, v) in points.iter().filter(|s| !s.1.is_nan()) {
                            let group = match &fixed {
                                Some(g) => Cow::Borrowed(g.as_str()),
                                None => Cow::Owned(group_key_with(&c.rule.group_by, |n| match own(n) {
                                    Some(v) => Some(Cow::Borrowed(v)),
                                    None => {
                                        let found = enriched_label(tables, enrichments, tenant, name, labels, source_id, n, ts);
                                        found.map_err(|e| missing = Some(e)).ok().flatten()
                                    }
                                })),
                            };
                            if !add(c, s, marks[i], &group, ts, v) {
                                s.late += 1;
                                late(c, &group, ts, v, marks[i], out);
                            }
                        }
                    }
                    if let Some(enrichment) = missing {
                        metrics::counter!("strata_enrichment_missing_total", "tenant" => tenant.to_string(), "enrichment" => enrichment.to_string())
                            .increment(1);
                    }
                });
                drop(view);
                self.tick(topic, partition, newest);
            } else {
                let Ok(e) = EventRef::parse(&r.record.payload) else { continue };
                let ts = e.timestamp_ns.div_euclid(1_000_000);
                for &i in rules {
                    let c = &self.rules[i];
                    let Input::Event(EventInput { event_type, value_field }) = &c.rule.input else { continue };
                    if *event_type != e.event_type {
                        continue;
                    }
                    let Some(v) = e.data.get(value_field).and_then(raw_number) else { continue };
                    event_group(&c.rule.group_by, &e, &mut group);
                    let s = self.state.rules.get_mut(&self.keys[i]).expect("adopted rules have state");
                    if !add(c, s, marks[i], &group, ts, v) {
                        s.late += 1;
                        late(c, &group, ts, v, marks[i], out);
                    }
                }
                self.tick(topic, partition, ts);
            }
        }
        if let Some(last) = records.last() {
            self.read_to(topic, partition, last.offset + 1);
        }
    }
}

impl Operator for RollupOperator {
    fn name(&self) -> &str {
        Self::NAME
    }

    /// The reference topic first, for the tables that enrichments of metrics join with.
    fn inputs(&self) -> Vec<TopicSpec> {
        vec![Reference::SPEC, Metrics::SPEC, EventsEnriched::SPEC]
    }

    fn restore(&mut self, state: Option<&[u8]>) -> Result<(), String> {
        self.state = decode_state(state, "a rollup state")?;
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
                // A change that does not read is logged and counted by the events pipeline.
                let _ = self.state.tables.apply(&self.catalog_now, r);
            }
            self.release_held(out);
            return;
        }
        if topic == Metrics::SPEC.name && !self.metric_enrichments.is_empty() {
            let caught_up = self.state.held.is_empty() && self.reference_caught_up();
            if !caught_up {
                // Samples joined with reference rows wait until the rows of their time are read,
                // so that a replay joins them as the first run did.
                let (hold, now): (Vec<&StoredRecord>, Vec<&StoredRecord>) =
                    records.iter().partition(|r| self.metric_enrichments.contains_key(&r.record.tenant));
                self.state.held.extend(hold.into_iter().map(|r| Held::of(topic, partition, r)));
                let now: Vec<StoredRecord> = now.into_iter().cloned().collect();
                self.records(topic, partition, &now, out);
                if let Some(last) = records.last() {
                    self.read_to(topic, partition, last.offset + 1);
                }
                return;
            }
        }
        self.records(topic, partition, records, out);
    }

    fn flush(&mut self, out: &mut Vec<Emit>) {
        self.adopt();
        let partitions: BTreeMap<&str, Vec<(PartitionStats, Option<i64>)>> =
            [Metrics::SPEC.name, EventsEnriched::SPEC.name].into_iter().map(|t| (t, self.partition_stats(t))).collect();
        let mut stats = BTreeMap::new();
        for i in 0..self.rules.len() {
            let c = &self.rules[i];
            let topic = match c.rule.input {
                Input::Metric(_) => Metrics::SPEC.name,
                Input::Event(_) => EventsEnriched::SPEC.name,
            };
            let wm = self.watermark(topic, c);
            let k = self.keys[i].clone();
            let s = self.state.rules.get_mut(&k).expect("adopted rules have state");
            let n = flush_rule(c, s, wm, out);
            let emitted = self.emitted.entry(k.clone()).or_default();
            *emitted += n;
            let groups: std::collections::HashSet<&str, foldhash::fast::RandomState> =
                s.panes.values().flat_map(|p| p.keys()).chain(s.sliding.keys()).map(String::as_str).collect();
            stats.insert(
                k,
                RuleStats {
                    tenant: c.tenant.clone(),
                    rule: c.rule.name.clone(),
                    watermark_ms: s.watermark,
                    groups: groups.len(),
                    state_entries: s.panes.values().map(HashMap::len).sum::<usize>()
                        + s.sliding.values().map(|g| g.points.len()).sum::<usize>(),
                    late_records: s.late,
                    emitted_samples: *emitted,
                    partitions: partitions[topic]
                        .iter()
                        .map(|(p, clock)| PartitionStats {
                            watermark_ms: clock.map(|m| m.saturating_sub(c.out_of_orderness_ms)),
                            ..p.clone()
                        })
                        .collect(),
                },
            );
        }
        for (topic, parts) in &partitions {
            for (p, clock) in parts {
                let labels = [("topic", topic.to_string()), ("partition", p.partition.to_string())];
                if let Some(ms) = clock {
                    metrics::gauge!("strata_rollup_partition_event_time_seconds", &labels).set(*ms as f64 / 1000.0);
                }
                metrics::gauge!("strata_rollup_partition_idle", &labels).set(if p.idle { 1.0 } else { 0.0 });
            }
        }
        for st in stats.values() {
            let labels = [("tenant", st.tenant.clone()), ("rule", st.rule.clone())];
            metrics::gauge!("strata_rollup_groups", &labels).set(st.groups as f64);
            metrics::gauge!("strata_rollup_late_records", &labels).set(st.late_records as f64);
            if let Some(w) = st.watermark_ms {
                metrics::gauge!("strata_rollup_watermark_seconds", &labels).set(w as f64 / 1000.0);
            }
        }
        *self.stats.lock().expect("rollup stats lock") = stats;
    }
}

#[cfg(test)]
mod tests;
