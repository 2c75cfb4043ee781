//! Live tail: new lines of the `logs` topic, matched against each subscriber's query and sent to
//! it within a poll interval of their acknowledgement. Matching builds a small in-memory index of
//! each poll's new lines, so a tail query means exactly what the same search query means.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use strata_log::{Log, StoredRecord};
use strata_model::topic::Logs;
use strata_model::{TenantId, Topic};
use tantivy::TantivyDocument;
use tantivy::collector::DocSetCollector;
use tantivy::query::Query;
use tantivy::query_grammar::UserInputAst;
use tokio::sync::mpsc;

use crate::query::{Hit, build_tail_query, parse_user_query, with_filters};
use crate::schema::LogSchema;
use crate::{Error, Result};

/// Limits of live tail.
#[derive(Debug, Clone)]
pub struct TailConfig {
    /// Lines buffered per connection; a slower reader loses lines and is told how many.
    pub buffer_lines: usize,
    pub connections_per_tenant_max: usize,
    /// How often the log is polled for new lines while someone tails.
    pub poll_ms: u64,
}

impl Default for TailConfig {
    fn default() -> Self {
        TailConfig { buffer_lines: 1000, connections_per_tenant_max: 10, poll_ms: 100 }
    }
}

/// Filters of a tail besides its query.
#[derive(Debug, Clone, Default)]
pub struct TailFilter {
    pub source_ids: Vec<String>,
    pub levels: Vec<String>,
    pub run_id: Option<String>,
}

/// What a tail connection receives.
#[derive(Debug, Clone)]
pub enum TailEvent {
    Line(Box<Hit>),
    /// Lines that matched but did not fit the connection's buffer since the last event.
    Dropped(u64),
}

struct Subscriber {
    id: u64,
    tenant: TenantId,
    ast: UserInputAst,
    filter: TailFilter,
    tx: mpsc::Sender<TailEvent>,
    dropped: AtomicU64,
}

struct Inner {
    log: Arc<dyn Log>,
    schema: LogSchema,
    cfg: TailConfig,
    subs: Mutex<Vec<Arc<Subscriber>>>,
    /// Wakes the hub when the first subscriber comes or the hub stops: idle, it does not poll.
    woken: Condvar,
    next_id: AtomicU64,
    stopped: AtomicBool,
}

/// Fans new log lines out to tail connections.
#[derive(Clone)]
pub struct TailHub {
    inner: Arc<Inner>,
}

/// One tail connection; dropping it unsubscribes.
pub struct Subscription {
    inner: Arc<Inner>,
    id: u64,
    tenant: TenantId,
    rx: mpsc::Receiver<TailEvent>,
}

impl Subscription {
    pub async fn next(&mut self) -> Option<TailEvent> {
        self.rx.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.inner.subs.lock().expect("tail lock").retain(|s| s.id != self.id);
        metrics::gauge!("strata_search_tail_connections", "tenant" => self.tenant.to_string()).decrement(1.0);
    }
}

impl TailHub {
    /// Starts the hub's thread; it reads the log only while someone is subscribed.
    pub fn start(log: Arc<dyn Log>, cfg: TailConfig) -> TailHub {
        let inner = Arc::new(Inner {
            log,
            schema: LogSchema::new(),
            cfg,
            subs: Mutex::new(Vec::new()),
            woken: Condvar::new(),
            next_id: AtomicU64::new(1),
            stopped: AtomicBool::new(false),
        });
        let run = inner.clone();
        std::thread::Builder::new().name("log-tail".into()).spawn(move || run_hub(run)).expect("spawn tail thread");
        TailHub { inner }
    }

    /// Stops the hub and ends every tail stream (their senders are dropped).
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::Relaxed);
        self.inner.subs.lock().expect("tail lock").clear();
        self.inner.woken.notify_all();
    }

    /// Subscribes to new lines of `tenant` matching `q` and `filter`.
    pub fn subscribe(&self, tenant: &TenantId, q: &str, filter: TailFilter) -> Result<Subscription> {
        let ast = parse_user_query(q)?;
        let mut subs = self.inner.subs.lock().expect("tail lock");
        let max = self.inner.cfg.connections_per_tenant_max;
        if subs.iter().filter(|s| &s.tenant == tenant).count() >= max {
            return Err(Error::TooManyTails { tenant: tenant.to_string(), max });
        }
        let (tx, rx) = mpsc::channel(self.inner.cfg.buffer_lines.max(1));
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        subs.push(Arc::new(Subscriber { id, tenant: tenant.clone(), ast, filter, tx, dropped: AtomicU64::new(0) }));
        self.inner.woken.notify_all();
        metrics::gauge!("strata_search_tail_connections", "tenant" => tenant.to_string()).increment(1.0);
        Ok(Subscription { inner: self.inner.clone(), id, tenant: tenant.clone(), rx })
    }
}

fn run_hub(inner: Arc<Inner>) {
    let poll = Duration::from_millis(inner.cfg.poll_ms);
    // Where the hub reads next, per partition; empty while nobody tails.
    let mut positions: BTreeMap<u32, u64> = BTreeMap::new();
    while !inner.stopped.load(Ordering::Relaxed) {
        let subs: Vec<Arc<Subscriber>> = inner.subs.lock().expect("tail lock").clone();
        if subs.is_empty() {
            positions.clear();
            let guard = inner.subs.lock().expect("tail lock");
            if guard.is_empty() && !inner.stopped.load(Ordering::Relaxed) {
                // The timeout is a safety net only: subscribe and stop notify.
                let _ = inner.woken.wait_timeout(guard, Duration::from_secs(10)).expect("tail lock");
            }
            continue;
        }
        // A reader that lost lines hears about it as soon as its buffer has room, new lines or not.
        for sub in &subs {
            let pending = sub.dropped.load(Ordering::Relaxed);
            if pending > 0 && sub.tx.try_send(TailEvent::Dropped(pending)).is_ok() {
                sub.dropped.fetch_sub(pending, Ordering::Relaxed);
            }
        }
        if positions.is_empty() {
            for t in inner.log.topics().into_iter().filter(|t| t.name == Logs::SPEC.name) {
                for p in t.partitions {
                    positions.insert(p.partition, p.latest_offset);
                }
            }
        }
        let mut records: Vec<(u32, StoredRecord)> = Vec::new();
        for (&p, pos) in positions.iter_mut() {
            match inner.log.read(Logs::SPEC.name, p, *pos, 4 << 20) {
                Ok(r) => {
                    *pos = r.next_offset;
                    records.extend(r.records.into_iter().map(|s| (p, s)));
                }
                Err(strata_log::Error::OffsetOutOfRange { latest, .. }) => *pos = latest,
                Err(e) => tracing::warn!(partition = p, error = %e, "tail cannot read the log"),
            }
        }
        if records.is_empty() {
            std::thread::sleep(poll);
            continue;
        }
        let mut by_tenant: HashMap<&str, Vec<(u32, &StoredRecord)>> = HashMap::new();
        for (p, r) in &records {
            if subs.iter().any(|s| s.tenant.as_str() == r.record.tenant) {
                by_tenant.entry(r.record.tenant.as_str()).or_default().push((*p, r));
            }
        }
        for (tenant, recs) in by_tenant {
            let tenant_subs: Vec<&Arc<Subscriber>> = subs.iter().filter(|s| s.tenant.as_str() == tenant).collect();
            if let Err(e) = deliver(&inner.schema, &recs, &tenant_subs) {
                tracing::warn!(tenant, error = %e, "tail matching failed");
            }
        }
    }
}

/// Indexes a poll's lines of one tenant in memory and sends each subscriber its matches, in
/// (timestamp, partition, offset) order.
fn deliver(schema: &LogSchema, recs: &[(u32, &StoredRecord)], subs: &[&Arc<Subscriber>]) -> Result<()> {
    let index = schema.index_in_ram();
    let ierr = |e| Error::Index { path: "memory".into(), source: e };
    let mut writer = index.writer_with_num_threads::<TantivyDocument>(1, 15_000_000).map_err(ierr)?;
    for (p, r) in recs {
        // A line that does not decode is left out here as it is by the indexing sink.
        if let Ok(line) = Logs::decode(&r.record.payload) {
            writer.add_document(schema.document(&line, &[], *p, r.offset)).map_err(ierr)?;
        }
    }
    writer.commit().map_err(ierr)?;
    let searcher = index.reader().map_err(ierr)?.searcher();
    let by_key: HashMap<(u64, u64), usize> =
        recs.iter().enumerate().map(|(i, (p, r))| ((u64::from(*p), r.offset), i)).collect();
    for sub in subs {
        let query = filtered(build_tail_query(&index, schema, &sub.ast)?, schema, &sub.filter);
        let docs = searcher.search(&*query, &DocSetCollector).map_err(ierr)?;
        let mut matched: Vec<Hit> = docs
            .into_iter()
            .filter_map(|addr| {
                let ff = searcher.segment_reader(addr.segment_ord).fast_fields();
                let t = ff.i64("timestamp").ok()?.first(addr.doc_id)?;
                let p = ff.u64("_partition").ok()?.first(addr.doc_id)?;
                let o = ff.u64("_offset").ok()?.first(addr.doc_id)?;
                let i = *by_key.get(&(p, o))?;
                Hit::from_stored(&recs[i].1.record.payload, Some((t, p, o))).ok()
            })
            .collect();
        matched.sort_by_key(|h| h.key);
        for hit in matched {
            send(sub, hit);
        }
    }
    Ok(())
}

fn send(sub: &Subscriber, hit: Hit) {
    let pending = sub.dropped.load(Ordering::Relaxed);
    if pending > 0 {
        if sub.tx.try_send(TailEvent::Dropped(pending)).is_err() {
            sub.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("strata_search_tail_dropped_lines_total", "tenant" => sub.tenant.to_string())
                .increment(1);
            return;
        }
        sub.dropped.fetch_sub(pending, Ordering::Relaxed);
    }
    if sub.tx.try_send(TailEvent::Line(Box::new(hit))).is_err() {
        sub.dropped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("strata_search_tail_dropped_lines_total", "tenant" => sub.tenant.to_string()).increment(1);
    }
}

fn filtered(user: Box<dyn Query>, schema: &LogSchema, f: &TailFilter) -> Box<dyn Query> {
    with_filters(user, schema, &f.source_ids, &f.levels, f.run_id.as_deref(), None)
}

#[cfg(test)]
mod tests {
    use strata_log::Record;
    use strata_model::LogLine;

    use super::*;

    fn record(offset: u64, timestamp_ns: i64, trace_id: &str) -> StoredRecord {
        let line = LogLine {
            timestamp_ns,
            source_id: "s".into(),
            level: "info".into(),
            message: format!("line {offset}"),
            run_id: None,
            trace_id: Some(trace_id.into()),
            service: None,
            host: None,
            attributes: Default::default(),
        };
        let mut payload = Vec::new();
        line.write_stored(&mut payload);
        StoredRecord {
            offset,
            append_time_ms: 0,
            record: Record { timestamp_ns, tenant: "acme".into(), source_id: "s".into(), headers: vec![], payload },
        }
    }

    /// Tail matches a trace id as search does, and sends the matches in time order with their
    /// times, whatever order the log holds them in.
    #[test]
    fn tail_finds_a_trace_by_its_whole_id_in_time_order() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let recs = [record(7, 30, id), record(8, 10, &id.to_uppercase()), record(9, 20, "other"), record(10, 5, id)];
        let in_log: Vec<(u32, &StoredRecord)> = recs.iter().map(|r| (1, r)).collect();
        let (tx, mut rx) = mpsc::channel(16);
        let sub = Arc::new(Subscriber {
            id: 1,
            tenant: TenantId::new("acme").unwrap(),
            ast: parse_user_query(&format!("trace_id:{}", id.to_uppercase())).unwrap(),
            filter: TailFilter::default(),
            tx,
            dropped: AtomicU64::new(0),
        });
        deliver(&LogSchema::new(), &in_log, &[&sub]).unwrap();
        let mut got = Vec::new();
        while let Ok(TailEvent::Line(hit)) = rx.try_recv() {
            got.push((hit.timestamp_ns, hit.key, hit.message()));
        }
        assert_eq!(
            got,
            [(5, (5, 1, 10), "line 10".into()), (10, (10, 1, 8), "line 8".into()), (30, (30, 1, 7), "line 7".into())]
        );
    }
}
