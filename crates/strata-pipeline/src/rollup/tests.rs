//! The operator driven by hand: records in, flushes, and the samples and late records out.

use std::collections::BTreeMap;

use serde_json::json;
use strata_log::{Record, StoredRecord};

use super::*;

fn event(partition_offset: u64, ts_ms: i64, service: &str, value: f64) -> StoredRecord {
    let e = json!({"type": "request", "timestamp_ns": ts_ms * 1_000_000, "source_id": "s",
        "data": {"service": service, "latency": value}});
    StoredRecord {
        offset: partition_offset,
        append_time_ms: 0,
        record: Record {
            timestamp_ns: ts_ms * 1_000_000,
            tenant: "t".into(),
            source_id: "s".into(),
            headers: Vec::new(),
            payload: serde_json::to_vec(&e).unwrap(),
        },
    }
}

fn operator(rule: serde_json::Value) -> RollupOperator {
    let book = Arc::new(RuleBook::open(None).unwrap());
    book.put("t", serde_json::from_value(rule).unwrap()).unwrap();
    let mut op = RollupOperator::new(book, Arc::new(SeriesRegistry::new(3600)), RollupStats::default());
    op.restore(None).unwrap();
    op
}

/// The samples of the rollups records: (series name, group, window end) to value, last write wins.
type Samples = BTreeMap<(String, String, i64), f64>;

fn samples(out: &[Emit], into: &mut Samples) {
    for e in out.iter().filter(|e| e.topic == "rollups") {
        let batch = MetricBatch::decode(&e.record.payload).unwrap();
        for s in batch.series().unwrap() {
            let name = s.labels.iter().find(|l| l.0 == "__name__").unwrap().1.to_string();
            let group = s.labels.iter().find(|l| l.0 == "service").map_or("", |l| l.1).to_string();
            for (t, v) in s.samples {
                into.insert((name.clone(), group.clone(), t), v);
            }
        }
    }
}

fn late_count(out: &[Emit]) -> usize {
    out.iter().filter(|e| e.topic == "late").count()
}

#[test]
fn tumbling_windows_emit_when_the_watermark_passes_and_late_records_update_or_go_late() {
    let mut op = operator(json!({"name": "lat", "input": {"event_type": "request", "value_field": "latency"},
        "group_by": ["service"], "window": {"type": "tumbling", "size": "10s"},
        "aggregations": ["count", "sum", "min", "max", "avg", "last", "p50"], "output": "lat_10s",
        "out_of_orderness": "1s", "allowed_lateness": "5s"}));
    let mut out = Vec::new();
    let mut got = Samples::new();
    op.process(
        "events_enriched",
        0,
        &[event(0, 1_000, "a", 2.0), event(1, 4_000, "a", 4.0), event(2, 9_999, "b", 1.0)],
        &mut out,
    );
    op.flush(&mut out);
    assert!(out.is_empty(), "no window is final before the watermark passes its end");
    // 11.5 s - 1 s out of orderness: the watermark passes 10 s.
    op.process("events_enriched", 0, &[event(3, 11_500, "a", 8.0)], &mut out);
    op.flush(&mut out);
    samples(&out, &mut got);
    assert_eq!(got[&("lat_10s_count".into(), "a".into(), 10_000)], 2.0);
    assert_eq!(got[&("lat_10s_sum".into(), "a".into(), 10_000)], 6.0);
    assert_eq!(got[&("lat_10s_avg".into(), "a".into(), 10_000)], 3.0);
    assert_eq!(got[&("lat_10s_last".into(), "a".into(), 10_000)], 4.0);
    assert_eq!(got[&("lat_10s_max".into(), "b".into(), 10_000)], 1.0);
    let p50 = got[&("lat_10s_p50".into(), "a".into(), 10_000)];
    assert!((p50 - 2.0).abs() <= 0.02, "{p50}");
    // Within the lateness: the window is emitted again with the record in it.
    out.clear();
    op.process("events_enriched", 0, &[event(4, 3_000, "a", 10.0)], &mut out);
    op.flush(&mut out);
    samples(&out, &mut got);
    assert_eq!(got[&("lat_10s_count".into(), "a".into(), 10_000)], 3.0);
    assert_eq!(got[&("lat_10s_max".into(), "a".into(), 10_000)], 10.0);
    // Past it: kept in the late output, and the window stays as it was.
    out.clear();
    op.process("events_enriched", 0, &[event(5, 30_000, "a", 1.0)], &mut out);
    op.process("events_enriched", 0, &[event(6, 2_000, "a", 100.0)], &mut out);
    op.flush(&mut out);
    assert_eq!(late_count(&out), 1);
    samples(&out, &mut got);
    assert_eq!(got[&("lat_10s_count".into(), "a".into(), 10_000)], 3.0);
    let stats = op.stats.lock().unwrap()["t/lat"].clone();
    assert_eq!((stats.late_records, stats.watermark_ms), (1, Some(29_000)));
}

#[test]
fn hopping_windows_merge_their_panes() {
    let mut op = operator(json!({"name": "h", "input": {"event_type": "request", "value_field": "latency"},
        "window": {"type": "hopping", "size": "30s", "slide": "10s"},
        "aggregations": ["count", "sum"], "output": "h_30s", "out_of_orderness": "1s"}));
    let mut out = Vec::new();
    let records: Vec<StoredRecord> = (0..60).map(|i| event(i, i as i64 * 1000, "a", i as f64)).collect();
    op.process("events_enriched", 0, &records, &mut out);
    op.process("events_enriched", 0, &[event(60, 100_000, "a", 0.0)], &mut out);
    op.flush(&mut out);
    let mut got = Samples::new();
    samples(&out, &mut got);
    // The window ending at 30 s holds 0..30 s, the one ending at 60 s holds 30..60 s.
    for end in [10_000i64, 20_000, 30_000, 40_000, 50_000, 60_000] {
        let values: Vec<f64> = (0..60)
            .map(|i| i as f64)
            .filter(|&v| v * 1000.0 >= (end - 30_000) as f64 && v * 1000.0 < end as f64)
            .collect();
        assert_eq!(got[&("h_30s_count".into(), "".into(), end)], values.len() as f64, "end {end}");
        assert_eq!(got[&("h_30s_sum".into(), "".into(), end)], values.iter().sum::<f64>(), "end {end}");
    }
}

#[test]
fn sliding_windows_emit_per_timestamp_and_revise_for_records_within_the_lateness() {
    let mut op = operator(json!({"name": "s", "input": {"event_type": "request", "value_field": "latency"},
        "window": {"type": "sliding", "size": "5s"}, "aggregations": ["sum"], "output": "s_5s",
        "out_of_orderness": "0s", "allowed_lateness": "10s"}));
    let mut out = Vec::new();
    op.process(
        "events_enriched",
        0,
        &[event(0, 1_000, "a", 1.0), event(1, 3_000, "a", 2.0), event(2, 7_000, "a", 4.0)],
        &mut out,
    );
    op.process("events_enriched", 0, &[event(3, 9_000, "a", 8.0)], &mut out);
    op.flush(&mut out);
    let mut got = Samples::new();
    samples(&out, &mut got);
    let at = |g: &Samples, t: i64| g[&("s_5s_sum".into(), "".into(), t)];
    assert_eq!((at(&got, 1_000), at(&got, 3_000), at(&got, 7_000), at(&got, 9_000)), (1.0, 3.0, 6.0, 12.0));
    // A record at 6 s changes the windows ending at 6, 7 and 9 s (not 3 s).
    out.clear();
    op.process("events_enriched", 0, &[event(4, 6_000, "a", 16.0)], &mut out);
    op.flush(&mut out);
    samples(&out, &mut got);
    assert_eq!((at(&got, 3_000), at(&got, 6_000), at(&got, 7_000), at(&got, 9_000)), (3.0, 18.0, 22.0, 28.0));
}

#[test]
fn a_restored_snapshot_continues_as_if_never_stopped() {
    let rule = json!({"name": "r", "input": {"event_type": "request", "value_field": "latency"}, "group_by": ["service"],
        "window": {"type": "hopping", "size": "20s", "slide": "5s"}, "aggregations": ["count", "p99", "last"],
        "output": "r_20s", "allowed_lateness": "10s"});
    let records: Vec<StoredRecord> = (0..400)
        .map(|i| event(i, (i as i64 * 397) % 60_000 + i as i64 * 100, ["a", "b", "c"][i as usize % 3], i as f64))
        .collect();
    let run = |cut: Option<usize>| {
        let mut op = operator(rule.clone());
        let mut out = Vec::new();
        for (n, chunk) in records.chunks(25).enumerate() {
            op.process("events_enriched", 0, chunk, &mut out);
            op.flush(&mut out);
            if cut == Some(n) {
                let snap = op.snapshot();
                let book = op.book.clone();
                op = RollupOperator::new(book, Arc::new(SeriesRegistry::new(3600)), RollupStats::default());
                op.restore(Some(&snap)).unwrap();
            }
        }
        let mut got = Samples::new();
        samples(&out, &mut got);
        (got, late_count(&out))
    };
    let whole = run(None);
    assert!(whole.1 > 0 && whole.0.len() > 20, "the data has windows and late records: {}", whole.1);
    for cut in [0, 3, 7, 15] {
        assert_eq!(run(Some(cut)), whole, "restored after chunk {cut}");
    }
}

#[test]
fn infinite_values_survive_a_snapshot() {
    let mut op = operator(json!({"name": "inf", "input": {"event_type": "request", "value_field": "latency"},
        "window": {"type": "tumbling", "size": "10s"}, "aggregations": ["sum", "max"], "output": "inf_10s"}));
    let mut out = Vec::new();
    // The window's sum overflows to infinity before the snapshot (a metric sample may be
    // infinite too); JSON has no number for it, and the state must keep it all the same.
    op.process("events_enriched", 0, &[event(0, 1_000, "a", f64::MAX)], &mut out);
    op.process("events_enriched", 0, &[event(1, 2_000, "a", f64::MAX)], &mut out);
    let snap = op.snapshot();
    let book = op.book.clone();
    let mut restored = RollupOperator::new(book, Arc::new(SeriesRegistry::new(3600)), RollupStats::default());
    restored.restore(Some(&snap)).unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    op.process("events_enriched", 0, &[event(2, 30_000, "a", 1.0)], &mut a);
    op.flush(&mut a);
    restored.process("events_enriched", 0, &[event(2, 30_000, "a", 1.0)], &mut b);
    restored.flush(&mut b);
    let (mut got_a, mut got_b) = (Samples::new(), Samples::new());
    samples(&a, &mut got_a);
    samples(&b, &mut got_b);
    assert_eq!(got_a[&("inf_10s_sum".into(), "".into(), 10_000)], f64::INFINITY, "two f64::MAX overflow");
    assert_eq!(got_a, got_b);
}

/// Samples of a tenant with enrichments of metrics, read while the reference topic has a change
/// not read yet, wait for it, and are then grouped by the label its row adds.
#[test]
fn samples_wait_for_the_reference_rows_and_are_grouped_by_their_labels() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn strata_log::Log> =
        Arc::new(strata_log::EmbeddedLog::open(strata_log::LogConfig::new(dir.path(), 1)).unwrap());
    let catalog = Arc::new(crate::enrich::CatalogBook::open(None).unwrap());
    catalog
        .update(|c| {
            c.tables
                .entry("t".into())
                .or_default()
                .insert("hosts".into(), serde_json::from_value(json!({"key": "host"})).unwrap());
            c.enrichments.entry("t".into()).or_default().push(
                serde_json::from_value(json!({"name": "region", "kind": "metrics", "table": "hosts", "on": "instance",
                    "fields": ["region"]}))
                .unwrap(),
            );
            Ok(())
        })
        .unwrap();
    let book = Arc::new(RuleBook::open(None).unwrap());
    let rule = json!({"name": "r", "input": {"metric": "req_total"}, "group_by": ["region"],
        "window": {"type": "tumbling", "size": "10s"}, "aggregations": ["count"], "output": "req_10s",
        "out_of_orderness": "0s", "allowed_lateness": "0s"});
    book.put("t", serde_json::from_value(rule).unwrap()).unwrap();
    let mut op = RollupOperator::new(book, Arc::new(SeriesRegistry::new(3600)), RollupStats::default())
        .with_log(log.clone())
        .with_catalog(catalog);
    op.restore(None).unwrap();

    // The row is in the log, not read yet.
    let change = json!({"before": null, "after": {"host": "web-1", "region": "eu"}, "op": "c", "ts_ms": 0});
    let mut records = strata_log::EncodedRecords::new();
    records.push(0, "t", "hosts", &[], &serde_json::to_vec(&change).unwrap()).unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(log.append("reference", 0, records)).unwrap();
    let mut batch = MetricBatchBuilder::new();
    batch.add_series("req_total", [("instance", "web-1")].into_iter(), &[(5_000, 1.0), (25_000, 1.0)]);
    let metrics = StoredRecord {
        offset: 0,
        append_time_ms: 0,
        record: Record {
            timestamp_ns: 25_000_000_000,
            tenant: "t".into(),
            source_id: "web-1".into(),
            headers: Vec::new(),
            payload: batch.finish(),
        },
    };
    let mut out = Vec::new();
    op.process("metrics", 0, std::slice::from_ref(&metrics), &mut out);
    op.flush(&mut out);
    assert_eq!(op.state.held.len(), 1, "held");
    assert!(out.iter().all(|e| e.topic != "rollups"), "nothing aggregated yet");

    // Reading the change releases the samples, joined with the row of their time.
    let read = log.read("reference", 0, 0, 1 << 20).unwrap();
    op.process("reference", 0, &read.records, &mut out);
    assert!(op.state.held.is_empty());
    op.flush(&mut out);
    let mut by_region = BTreeMap::new();
    for e in out.iter().filter(|e| e.topic == "rollups") {
        for s in MetricBatch::decode(&e.record.payload).unwrap().series().unwrap() {
            let region = s.labels.iter().find(|l| l.0 == "region").map(|l| l.1.to_string());
            for (t, v) in s.samples {
                by_region.insert((region.clone(), t), v);
            }
        }
    }
    assert_eq!(by_region, BTreeMap::from([((Some("eu".to_string()), 10_000), 1.0)]));
    assert_eq!(op.state.read_to["metrics"][&0], 1, "the metrics read is noted");
}
