//! The `events` table through the sink's own calls, as the consumer runtime makes them: rows land
//! once across a crash before and after a commit, new fields become columns, a field of the wrong
//! type sends its event to `rejected`, and DataFusion reads the table back.

use serde_json::json;
use strata_lake::deltalake::datafusion::prelude::SessionContext;
use strata_lake::{EventsSink, LakeConfig};
use strata_log::{Record, StoredRecord};
use strata_pipeline::{BlockingSink, Positions, Typed};

const T0_NS: i64 = 1_700_000_000_000_000_000;

fn event(offset: u64, data: serde_json::Value) -> StoredRecord {
    let e = json!({"type": "order", "timestamp_ns": T0_NS + offset as i64 * 1_000_000_000, "source_id": "shop-1",
        "event_id": format!("e{offset}"), "data": data});
    StoredRecord {
        offset,
        append_time_ms: 0,
        record: Record {
            timestamp_ns: T0_NS,
            tenant: "acme".into(),
            source_id: "shop-1".into(),
            headers: Vec::new(),
            payload: serde_json::to_vec(&e).unwrap(),
        },
    }
}

fn sink(dir: &std::path::Path) -> BlockingSink<Typed<EventsSink>> {
    let cfg = LakeConfig { location: strata_lake::Location::local(dir), commit_bytes_max: 1 << 20, partitions: 1 };
    BlockingSink::new(Typed::new(EventsSink::new(cfg)))
}

fn at(next: u64) -> Positions {
    Positions::from([(("events_enriched".to_string(), 0), next)])
}

fn query(dir: &std::path::Path, table: &str, sql: &str) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = strata_lake::deltalake::ensure_table_uri(dir.join(table).to_string_lossy()).unwrap();
        let t = strata_lake::deltalake::open_table(url).await.unwrap();
        let ctx = SessionContext::new();
        t.update_datafusion_session(&ctx.state()).unwrap();
        ctx.register_table(table, t.table_provider().await.unwrap()).unwrap();
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let text = strata_lake::deltalake::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
        text.lines().filter(|l| l.starts_with('|')).skip(1).map(|l| l.replace(' ', "")).collect()
    })
}

#[test]
fn events_land_once_across_crashes_with_their_fields_as_columns() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = sink(dir.path());
    assert_eq!(s.committed().unwrap(), Positions::new(), "a new table covers nothing");
    let first: Vec<StoredRecord> =
        (0..10).map(|i| event(i, json!({"amount": i, "name": format!("n{i}"), "paid": i % 2 == 0}))).collect();
    s.write("events_enriched", 0, &first).unwrap();
    s.commit(&at(10)).unwrap();
    // Records written and then a crash before their commit: nothing of them stays.
    let lost: Vec<StoredRecord> = (10..15).map(|i| event(i, json!({"amount": i}))).collect();
    s.write("events_enriched", 0, &lost).unwrap();
    drop(s);

    let mut s = sink(dir.path());
    assert_eq!(s.committed().unwrap(), at(10), "the table's commit holds the positions it covers");
    let mut second: Vec<StoredRecord> =
        (10..20).map(|i| event(i, json!({"amount": i, "region": "eu", "tags": ["a", i]}))).collect();
    second.push(event(20, json!({"amount": "twenty"})));
    second.push(event(21, json!({"amount": 21.5})));
    s.write("events_enriched", 0, &second).unwrap();
    s.commit(&at(22)).unwrap();
    drop(s);
    assert_eq!(sink(dir.path()).committed().unwrap(), at(22));

    assert_eq!(
        query(
            dir.path(),
            "events",
            "SELECT count(*), count(DISTINCT event_id), sum(amount), count(region) FROM events"
        ),
        vec!["|20|20|190|10|"]
    );
    assert_eq!(
        query(
            dir.path(),
            "events",
            "SELECT event_id, tenant, dt, name, paid, region, tags FROM events WHERE event_id IN ('e3', 'e12') ORDER BY event_id"
        ),
        vec!["|e12|acme|2023-11-14|||eu|[\"a\",12]|", "|e3|acme|2023-11-14|n3|false|||"]
    );
    assert_eq!(
        query(dir.path(), "rejected", "SELECT offset, reason FROM rejected ORDER BY offset"),
        vec![
            "|20|field\"amount\"isastringbutitscolumn\"amount\"isInt64|",
            "|21|field\"amount\"isanumberbutitscolumn\"amount\"isInt64|"
        ]
    );
    // Partitioned by tenant and day, as any engine expects to find them.
    assert!(dir.path().join("events/tenant=acme/dt=2023-11-14").is_dir());
}
