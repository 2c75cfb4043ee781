//! The lake's upkeep on a table the sink wrote: compaction merges a partition's small files in one
//! commit without changing a row or the positions the table covers, appends go on around it,
//! vacuum deletes the replaced files after the grace period, and retention drops whole days.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use strata_lake::deltalake::datafusion::prelude::SessionContext;
use strata_lake::maintain::{self, Maintenance, Retention};
use strata_lake::{EventsSink, LakeConfig, Table};
use strata_log::{Record, StoredRecord};
use strata_pipeline::{BlockingSink, Positions, Typed};

const DAY_NS: i64 = 86_400_000_000_000;
const T0_NS: i64 = 1_700_000_000_000_000_000 / DAY_NS * DAY_NS;

fn event(offset: u64, tenant: &str, day: i64) -> StoredRecord {
    let e = json!({"type": "order", "timestamp_ns": T0_NS + day * DAY_NS + offset as i64, "source_id": "shop-1",
        "event_id": format!("e{offset}"), "data": {"amount": offset}});
    StoredRecord {
        offset,
        append_time_ms: 0,
        record: Record {
            timestamp_ns: T0_NS,
            tenant: tenant.into(),
            source_id: "shop-1".into(),
            headers: Vec::new(),
            payload: serde_json::to_vec(&e).unwrap(),
        },
    }
}

fn at(next: u64) -> Positions {
    Positions::from([(("events_enriched".to_string(), 0), next)])
}

fn cfg(dir: &std::path::Path) -> Maintenance {
    Maintenance {
        location: strata_lake::Location::local(dir),
        interval: Duration::from_secs(1),
        target_file_bytes: 128 << 20,
        compact_min_files: 3,
        vacuum_grace: Duration::ZERO,
        retention: Retention::default(),
        disk_free_bytes_min: 0,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

fn files(dir: &std::path::Path) -> Vec<strata_lake::DataFile> {
    rt().block_on(async { Table::open(&dir.join("events")).await.unwrap().files() })
}

fn parquet_on_disk(dir: &std::path::Path) -> usize {
    fn walk(p: &std::path::Path, n: &mut usize) {
        for e in std::fs::read_dir(p).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(&path, n);
            } else if path.extension().is_some_and(|x| x == "parquet") {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(&dir.join("events"), &mut n);
    n
}

fn count(dir: &std::path::Path, sql: &str) -> String {
    rt().block_on(async {
        let url = strata_lake::deltalake::ensure_table_uri(dir.join("events").to_string_lossy()).unwrap();
        let t = strata_lake::deltalake::open_table(url).await.unwrap();
        let ctx = SessionContext::new();
        t.update_datafusion_session(&ctx.state()).unwrap();
        ctx.register_table("events", t.table_provider().await.unwrap()).unwrap();
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        strata_lake::deltalake::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string()
    })
}

#[test]
fn compaction_vacuum_and_retention_keep_every_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake =
        LakeConfig { location: strata_lake::Location::local(dir.path()), commit_bytes_max: 1 << 20, partitions: 1 };
    let mut s = BlockingSink::new(Typed::new(EventsSink::new(lake.clone())));
    s.committed().unwrap();
    // Five commits, each adding a file to acme's day 0 and day 1 and to other's day 0.
    for c in 0..5u64 {
        let records: Vec<StoredRecord> = (c * 30..c * 30 + 30)
            .map(|o| event(o, if o % 3 == 0 { "other" } else { "acme" }, (o % 2) as i64))
            .collect();
        s.write("events_enriched", 0, &records).unwrap();
        s.commit(&at(c * 30 + 30)).unwrap();
    }
    assert_eq!(files(dir.path()).len(), 20, "one file per commit and partition");
    let before = count(
        dir.path(),
        "SELECT tenant, count(*), count(DISTINCT event_id), sum(amount) FROM events GROUP BY tenant ORDER BY tenant",
    );

    // With no room on the disk for their new files, the compactions wait for a later round.
    let full = Maintenance { disk_free_bytes_min: u64::MAX / 2, ..cfg(dir.path()) };
    let report = rt().block_on(maintain::round(&full, "events", SystemTime::now())).unwrap();
    assert_eq!((report.compactions, report.compactions_put_off), (0, 4), "{report:?}");
    assert_eq!(files(dir.path()).len(), 20);

    let report = rt().block_on(maintain::round(&cfg(dir.path()), "events", SystemTime::now())).unwrap();
    assert_eq!(report.compactions, 4, "each partition with at least 3 small files: {report:?}");
    assert_eq!(report.files_compacted, 20);
    assert_eq!(report.files_written, 4);
    assert_eq!(report.files_vacuumed, 20, "with no grace, the replaced files go at once");
    assert_eq!(files(dir.path()).len(), 4);
    assert_eq!(parquet_on_disk(dir.path()), 4);
    assert_eq!(
        count(
            dir.path(),
            "SELECT tenant, count(*), count(DISTINCT event_id), sum(amount) FROM events GROUP BY tenant ORDER BY tenant"
        ),
        before
    );

    // The positions survive the compaction's commit, and the sink appends after it.
    let mut s = BlockingSink::new(Typed::new(EventsSink::new(lake.clone())));
    assert_eq!(s.committed().unwrap(), at(150));
    s.write("events_enriched", 0, &[event(150, "acme", 0)]).unwrap();
    s.commit(&at(151)).unwrap();
    assert!(count(dir.path(), "SELECT count(*) FROM events").contains("| 151 "));

    for o in 151..154 {
        s.write("events_enriched", 0, &[event(o, "acme", 0)]).unwrap();
        s.commit(&at(o + 1)).unwrap();
    }
    let report = rt().block_on(maintain::round(&cfg(dir.path()), "events", SystemTime::now())).unwrap();
    assert_eq!(report.compactions, 1, "{report:?}");

    // The sink still holds the version before that compaction, and commits after it all the
    // same. A grace period keeps the replaced files for readers of older versions.
    let kept = Maintenance { vacuum_grace: Duration::from_secs(3600), ..cfg(dir.path()) };
    for o in 154..158 {
        s.write("events_enriched", 0, &[event(o, "acme", 1)]).unwrap();
        s.commit(&at(o + 1)).unwrap();
    }
    let report = rt().block_on(maintain::round(&kept, "events", SystemTime::now())).unwrap();
    assert_eq!((report.compactions, report.files_vacuumed), (1, 0), "{report:?}");
    assert!(parquet_on_disk(dir.path()) > files(dir.path()).len());

    // Retention: acme keeps one day, so at "day 2 + 1 hour" its day 0 goes; other keeps all.
    let now = UNIX_EPOCH + Duration::from_nanos((T0_NS + 2 * DAY_NS) as u64 + 3_600_000_000_000);
    let retention = Retention {
        days: Default::default(),
        tenant_days: [("acme".to_string(), [("events".to_string(), 1)].into())].into(),
    };
    let report = rt().block_on(maintain::round(&Maintenance { retention, ..cfg(dir.path()) }, "events", now)).unwrap();
    assert_eq!(report.files_expired, 1, "{report:?}");
    let left = count(dir.path(), "SELECT tenant, min(dt), count(*) FROM events GROUP BY tenant ORDER BY tenant")
        .replace(' ', "");
    assert!(left.contains("|acme|2023-11-15|54|"), "acme's day 0 is gone, its day 1 kept: {left}");
    assert!(left.contains("|other|2023-11-14|50|"), "{left}");
    assert_eq!(BlockingSink::new(Typed::new(EventsSink::new(lake))).committed().unwrap(), at(158));
}
