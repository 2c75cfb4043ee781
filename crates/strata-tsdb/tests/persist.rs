//! The store across crashes: the sink is driven by hand through `BlockingSink`, the way the
//! consumer runtime drives it, and "crashes" by being dropped without `stop` at many points, with
//! and without a checkpoint just before. After every restart it resumes from the manifest, and at
//! the end it must hold exactly what one uninterrupted run holds: every sample, once, with the
//! last written value, in blocks cut from the head, merged per day, and dropped by retention.
//! Half the records name their series by registry number (version 3 batches, as the gateway
//! writes them) and half spell out their labels, so both paths are crashed through.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use strata_log::{Record, StoredRecord};
use strata_model::{MetricBatch, MetricBatchBuilder, MetricPoint, SeriesDefs, SeriesRegistry};
use strata_pipeline::{BlockingSink, Positions, Typed};
use strata_tsdb::{Store, TsdbConfig, TsdbSink};

const MIN_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MIN_MS;
const PARTITIONS: u32 = 2;

fn point(series: usize, ts_ms: i64, value: f64) -> MetricPoint {
    MetricPoint {
        name: "node_load1".into(),
        labels: [("instance".to_string(), format!("host-{series}")), ("job".to_string(), "node".to_string())]
            .into_iter()
            .collect(),
        value,
        timestamp_ns: ts_ms * 1_000_000,
        source_id: format!("host-{series}"),
    }
}

fn stored(offset: u64, tenant: &str, p: &MetricPoint) -> StoredRecord {
    stored_in(offset, tenant, p, None)
}

/// A record of `p`, naming its series by number in `registry` if one is given.
fn stored_in(offset: u64, tenant: &str, p: &MetricPoint, registry: Option<&SeriesRegistry>) -> StoredRecord {
    let payload = match registry {
        None => batch(p),
        Some(registry) => {
            let labels: Vec<(&str, &str)> = p.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let fp = strata_model::series_fingerprint(&p.name, labels.iter().copied());
            let (mut ids, mut defs) = (Vec::new(), SeriesDefs::default());
            registry.assign(tenant, std::iter::once((fp, p.name.as_str(), labels.as_slice())), &mut ids, &mut defs);
            registry.defined(defs.ids());
            let mut b = MetricBatchBuilder::with_refs();
            b.add_series_ref(ids[0], &[(p.timestamp_ns / 1_000_000, p.value)]);
            b.finish()
        }
    };
    StoredRecord {
        offset,
        append_time_ms: 0,
        record: Record {
            timestamp_ns: p.timestamp_ns,
            tenant: tenant.into(),
            source_id: p.source_id.clone(),
            headers: vec![],
            payload,
        },
    }
}

fn batch(p: &MetricPoint) -> Vec<u8> {
    let mut b = MetricBatchBuilder::new();
    let labels: Vec<(&str, &str)> = p.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    b.add_series(&p.name, labels.into_iter(), &[(p.timestamp_ns / 1_000_000, p.value)]);
    b.finish()
}

/// Ten hours across a UTC midnight, 10 series in two partitions, one sample a minute, with late
/// samples inside the window and rewrites of earlier timestamps.
fn workload(start: i64, registry: &SeriesRegistry) -> Vec<Vec<StoredRecord>> {
    let mut parts: Vec<Vec<StoredRecord>> = vec![Vec::new(); PARTITIONS as usize];
    let mut n = 0u64;
    for step in 0..600i64 {
        for s in 0..10usize {
            let p = s % PARTITIONS as usize;
            let ts = start + step * MIN_MS;
            let mut points = vec![point(s, ts, (step * 10 + s as i64) as f64)];
            n += 1;
            if n.is_multiple_of(37) {
                // Late, inside the window: a timestamp the series has not had yet.
                points.push(point(s, ts - 20 * MIN_MS - 1, -(n as f64)));
            }
            if n.is_multiple_of(53) {
                // A rewrite of a sample 30 minutes back: the last written value must win.
                points.push(point(s, ts - 30 * MIN_MS, n as f64 + 0.5));
            }
            for pt in points {
                let offset = parts[p].len() as u64;
                let by_number = offset.is_multiple_of(2).then_some(registry);
                parts[p].push(stored_in(offset, "acme", &pt, by_number));
            }
        }
    }
    parts
}

/// What one uninterrupted run stores: per series, last write wins.
fn model(parts: &[Vec<StoredRecord>], registry: &SeriesRegistry) -> BTreeMap<String, BTreeMap<i64, u64>> {
    let mut m: BTreeMap<String, BTreeMap<i64, u64>> = BTreeMap::new();
    for part in parts {
        for r in part {
            let batch = MetricBatch::decode(&r.record.payload).unwrap();
            batch
                .for_each_series_in(&r.record.tenant, &registry.read(), |_, labels, samples| {
                    let instance = labels.iter().find(|(n, _)| *n == "instance").unwrap().1;
                    for (t, v) in samples {
                        m.entry(instance.to_string()).or_default().insert(t, v.to_bits());
                    }
                })
                .unwrap();
        }
    }
    m
}

fn config(dir: &std::path::Path) -> TsdbConfig {
    let mut cfg = TsdbConfig::new(dir);
    cfg.checkpoint_interval_ms = 0;
    // The workload is in 2026's first days: keep it whatever today is.
    cfg.retention_ms = i64::MAX / 4;
    cfg
}

/// The sink as the consumer runtime runs it, batches decoded by `Typed`, driven call by call.
type Driven = BlockingSink<Typed<TsdbSink>>;

fn key(p: u32) -> (String, u32) {
    ("metrics".to_string(), p)
}

/// Feeds records from `positions` on, in chunks of varying size, alternating partitions,
/// checkpointing after every `commit_every` chunks; stops after `chunks_max` chunks.
fn feed(
    sink: &mut Driven,
    parts: &[Vec<StoredRecord>],
    positions: &mut Positions,
    chunks_max: usize,
    commit_every: usize,
) -> bool {
    let mut chunks = 0;
    let mut size = 7usize;
    loop {
        let mut progressed = false;
        for p in 0..PARTITIONS {
            let at = *positions.get(&key(p)).unwrap_or(&0) as usize;
            let end = (at + size).min(parts[p as usize].len());
            if at >= end {
                continue;
            }
            sink.write("metrics", p, &parts[p as usize][at..end]).unwrap();
            positions.insert(key(p), end as u64);
            progressed = true;
            chunks += 1;
            size = size * 7 % 29 + 1;
            if chunks % commit_every == 0 {
                sink.commit(positions).unwrap();
            }
            if chunks >= chunks_max {
                return false;
            }
        }
        if !progressed {
            return true;
        }
    }
}

fn open(dir: &std::path::Path, registry: &Arc<SeriesRegistry>) -> (Arc<Store>, Driven, Positions) {
    let store = Arc::new(Store::new(config(dir)));
    let mut sink = BlockingSink::new(Typed::new(TsdbSink::new(store.clone(), registry.clone())));
    let mut positions = sink.committed().unwrap();
    for p in 0..PARTITIONS {
        positions.entry(key(p)).or_insert(0);
    }
    (store, sink, positions)
}

fn stored_now(store: &Store) -> BTreeMap<String, BTreeMap<i64, u64>> {
    let matchers = [strata_tsdb::Matcher::Equal("__name__".into(), "node_load1".into())];
    store
        .querier("acme", i64::MIN, i64::MAX)
        .select(&matchers)
        .map(|s| {
            let s = s.unwrap();
            let instance = s.labels.iter().find(|(n, _)| n == "instance").unwrap().1.clone();
            (instance, s.samples.into_iter().map(|(t, v)| (t, v.to_bits())).collect())
        })
        .collect()
}

#[test]
fn crashes_at_any_point_lose_nothing_and_store_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    // 20:00 UTC, so the data crosses a midnight and the first day gets merged.
    let start = (1_767_225_600_000i64 / (24 * HOUR_MS)) * 24 * HOUR_MS + 20 * HOUR_MS;
    // The registry outlives the crashes, as the `series` topic it is read back from does.
    let registry = Arc::new(SeriesRegistry::new(3600));
    let parts = workload(start, &registry);
    let want = model(&parts, &registry);

    let mut cycles = 0;
    loop {
        let (_store, mut sink, mut positions) = open(dir.path(), &registry);
        cycles += 1;
        // Crash after a different amount of work each time; checkpoint every few chunks.
        let done = feed(&mut sink, &parts, &mut positions, 30 + 10 * cycles, 3 + cycles % 4);
        if done {
            sink.stop(&positions).unwrap();
            break;
        }
        assert!(cycles < 200, "the workload never finished");
        // Dropped here without `stop`: whatever the last checkpoint did not persist is gone.
    }
    assert!(cycles > 10, "the test crashed only {cycles} times");
    eprintln!("{} crashes before the workload finished", cycles - 1);

    // A clean restart reads back exactly the model, from blocks and the replayed head.
    let (store, mut sink, mut positions) = open(dir.path(), &registry);
    feed(&mut sink, &parts, &mut positions, usize::MAX, 5);
    assert_eq!(stored_now(&store), want);
    let total: usize = want.values().map(|s| s.len()).sum();
    assert_eq!(store.sample_count("acme"), total as u64, "no sample is stored twice");

    // Blocks were cut and the first day merged into one block.
    let files: Vec<String> = std::fs::read_dir(dir.path().join("acme"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(files.iter().all(|f| f.ends_with(".block")), "{files:?}");
    assert!(files.len() >= 2, "{files:?}");
    let path = dir.path().join("manifest.json");
    let manifest: serde_json::Value =
        serde_json::from_slice(&strata_durable::read(&path).unwrap().unwrap().checked(&path).unwrap()).unwrap();
    let blocks = manifest["body"]["tenants"]["acme"].as_array().unwrap();
    let day_start = (start / (24 * HOUR_MS)) * 24 * HOUR_MS;
    assert!(
        blocks.iter().any(|b| b["cover"] == serde_json::json!([day_start, day_start + 24 * HOUR_MS])),
        "the first day is one merged block: {blocks:?}"
    );
    assert_eq!(blocks.len(), files.len(), "every block file is in the manifest and no other");
}

#[test]
fn retention_drops_whole_blocks_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut cfg = config(dir.path());
    cfg.tenant_retention_ms = HashMap::from([("short".to_string(), 24 * HOUR_MS)]);
    let store = Arc::new(Store::new(cfg));
    let mut sink = BlockingSink::new(Typed::new(TsdbSink::new(store.clone(), Arc::new(SeriesRegistry::new(3600)))));
    let mut positions = sink.committed().unwrap();
    // Two days ago, then now: the old range is cut and, for "short", past retention.
    for tenant in ["short", "long"] {
        let records: Vec<StoredRecord> = [now - 48 * HOUR_MS, now - 47 * HOUR_MS, now]
            .iter()
            .enumerate()
            .map(|(i, &ts)| stored(i as u64, tenant, &point(1, ts, 1.0)))
            .collect();
        sink.write("metrics", 0, &records).unwrap();
    }
    positions.insert(key(0), 3);
    sink.commit(&positions).unwrap();
    sink.commit(&positions).unwrap();
    let matchers = [strata_tsdb::Matcher::Equal("__name__".into(), "node_load1".into())];
    let count = |tenant: &str| {
        store.querier(tenant, i64::MIN, i64::MAX).select(&matchers).map(|s| s.unwrap().samples.len()).sum::<usize>()
    };
    assert_eq!(count("long"), 3);
    assert_eq!(count("short"), 1, "the two-day-old samples of \"short\" are gone");
    assert!(std::fs::read_dir(dir.path().join("long")).unwrap().count() >= 1);
}
