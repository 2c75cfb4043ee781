//! The indexing sink on its own: replays after a crash add nothing twice, past days are merged
//! when they go quiet, and a broken day index costs only its own lines.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_log::{Record, StoredRecord};
use strata_model::{LogLine, TenantId};
use strata_pipeline::{BlockingSink, Positions, Typed};
use strata_search::{IndexerConfig, Indexes, SearchRequest, SearchSink, Sort, day_name, day_of, search};

const DAY_NS: i64 = 86_400 * 1_000_000_000;

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

fn record(offset: u64, ts: i64, msg: &str) -> StoredRecord {
    let line = LogLine {
        timestamp_ns: ts,
        source_id: "s".into(),
        level: "info".into(),
        message: msg.into(),
        run_id: None,
        trace_id: None,
        service: None,
        host: None,
        attributes: Default::default(),
    };
    StoredRecord {
        offset,
        append_time_ms: 0,
        record: Record {
            timestamp_ns: ts,
            tenant: "acme".into(),
            source_id: "s".into(),
            headers: vec![],
            payload: serde_json::to_vec(&line).unwrap(),
        },
    }
}

/// The sink as the consumer runtime runs it, lines decoded by `Typed`, driven call by call.
fn driven_sink(indexes: &Arc<Indexes>, cfg: IndexerConfig) -> BlockingSink<Typed<SearchSink>> {
    BlockingSink::new(Typed::new(SearchSink::new(indexes.clone(), cfg)))
}

fn positions(next: u64) -> Positions {
    [(("logs".to_string(), 0u32), next)].into_iter().collect()
}

fn count(indexes: &Indexes, q: &str, from_ns: i64) -> (usize, Vec<String>) {
    let req = SearchRequest {
        q: q.into(),
        source_ids: vec![],
        run_id: None,
        levels: vec![],
        from_ns,
        to_ns: now_ns() + DAY_NS,
        limit: 1000,
        sort: Sort::Newest,
        cursor: None,
    };
    let r = search(indexes, &TenantId::new("acme").unwrap(), &req, Instant::now() + Duration::from_secs(30)).unwrap();
    (r.hits.len(), r.errors)
}

#[test]
fn a_replay_from_older_positions_indexes_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let indexes = Arc::new(Indexes::new(dir.path().to_path_buf(), Default::default()).unwrap());
    let now = now_ns();
    let recs: Vec<StoredRecord> = (0..100).map(|i| record(i, now - i as i64, &format!("line {i}"))).collect();
    let mut sink = driven_sink(&indexes, IndexerConfig::default());
    assert!(sink.committed().unwrap().is_empty());
    sink.write("logs", 0, &recs[..60]).unwrap();
    sink.commit(&positions(60)).unwrap();
    drop(sink);
    // A crash after the index commit but before the state file: the state says 20.
    std::fs::write(dir.path().join("state.json"), r#"{"version":1,"positions":[["logs",0,20]]}"#).unwrap();
    let mut sink = driven_sink(&indexes, IndexerConfig::default());
    assert_eq!(sink.committed().unwrap(), positions(20));
    sink.write("logs", 0, &recs[20..]).unwrap();
    sink.commit(&positions(100)).unwrap();
    assert_eq!(count(&indexes, "", 0).0, 100);
    assert_eq!(count(&indexes, "\"line 42\"", 0).0, 1);
}

#[test]
fn quiet_past_days_are_merged_and_broken_days_cost_only_their_lines() {
    let dir = tempfile::tempdir().unwrap();
    let indexes = Arc::new(Indexes::new(dir.path().to_path_buf(), Default::default()).unwrap());
    let cfg = IndexerConfig { writer_idle_ms: 0, ..IndexerConfig::default() };
    let mut sink = driven_sink(&indexes, cfg);
    let yesterday = now_ns() - DAY_NS;
    let mut offset = 0;
    // Several commits make several segments in yesterday's index.
    for _ in 0..4 {
        let recs: Vec<StoredRecord> = (0..10).map(|i| record(offset + i, yesterday + i as i64, "old line")).collect();
        sink.write("logs", 0, &recs).unwrap();
        offset += 10;
        // The writer stays open while it is written to: commit, then touch it again.
        sink.commit(&positions(offset)).unwrap();
    }
    let tenant = TenantId::new("acme").unwrap();
    let day = indexes.open(&tenant, day_of(yesterday), false).unwrap().unwrap();
    assert_eq!(day.index.searchable_segment_ids().unwrap().len(), 1, "closed past day merged into one segment");
    assert_eq!(count(&indexes, "old", yesterday - DAY_NS).0, 40);

    // A day directory that is not an index: its lines are skipped, the others indexed.
    let broken_day = day_of(now_ns() - 3 * DAY_NS);
    let broken = dir.path().join("acme").join(day_name(broken_day));
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("meta.json"), b"not json").unwrap();
    let recs = vec![record(offset, now_ns() - 3 * DAY_NS, "lost line"), record(offset + 1, now_ns(), "fine line")];
    sink.write("logs", 0, &recs).unwrap();
    sink.commit(&positions(offset + 2)).unwrap();
    let (hits, errors) = count(&indexes, "", now_ns() - 4 * DAY_NS);
    assert_eq!(hits, 41, "yesterday's 40 and today's line");
    assert_eq!(errors.len(), 1, "the broken day is reported: {errors:?}");
    assert!(errors[0].contains(&day_name(broken_day)), "{errors:?}");
    assert!(indexes.failed().keys().any(|p| p == &broken));
}

/// The schema day indexes were created with before keyword fields stopped being fast fields and
/// stored lines moved to zstd: the same fields in the same order.
fn schema_of_earlier_versions() -> tantivy::schema::Schema {
    use tantivy::schema::{
        FAST, INDEXED, IndexRecordOption, JsonObjectOptions, STORED, STRING, TextFieldIndexing, TextOptions,
    };
    let mut b = tantivy::schema::Schema::builder();
    b.add_i64_field("timestamp", INDEXED | FAST);
    for name in ["level", "source_id", "run_id", "trace_id", "service", "host"] {
        b.add_text_field(name, STRING | FAST);
    }
    let positions = TextFieldIndexing::default()
        .set_tokenizer("default")
        .set_index_option(IndexRecordOption::WithFreqsAndPositions);
    b.add_text_field("message", TextOptions::default().set_indexing_options(positions.clone()));
    b.add_json_field("attributes", JsonObjectOptions::default().set_indexing_options(positions));
    b.add_u64_field("_partition", FAST);
    b.add_u64_field("_offset", FAST);
    b.add_bytes_field("_source", STORED);
    b.build()
}

#[test]
fn day_indexes_of_earlier_versions_are_searched_and_written() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ns();
    let day_dir = dir.path().join("acme").join(day_name(day_of(now)));
    std::fs::create_dir_all(&day_dir).unwrap();
    let old = tantivy::Index::create_in_dir(&day_dir, schema_of_earlier_versions()).unwrap();
    assert_ne!(old.schema(), strata_search::LogSchema::new().schema, "the schemas differ in their options");
    let indexes = Arc::new(Indexes::new(dir.path().to_path_buf(), Default::default()).unwrap());
    let mut sink = driven_sink(&indexes, IndexerConfig::default());
    let recs: Vec<StoredRecord> = (0..10).map(|i| record(i, now - i as i64, &format!("kept line {i}"))).collect();
    sink.write("logs", 0, &recs[..5]).unwrap();
    sink.commit(&positions(5)).unwrap();
    drop(sink);
    // Written in the earlier version's settings (LZ4-compressed stored lines), then read again.
    let mut sink = driven_sink(&indexes, IndexerConfig::default());
    assert_eq!(sink.committed().unwrap(), positions(5));
    sink.write("logs", 0, &recs[5..]).unwrap();
    sink.commit(&positions(10)).unwrap();
    assert_eq!(count(&indexes, "kept", 0), (10, vec![]));
    assert_eq!(count(&indexes, "\"line 7\"", 0).0, 1);
    assert!(indexes.failed().is_empty());
}

#[test]
fn new_day_indexes_store_lines_with_zstd_in_large_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let indexes = Arc::new(Indexes::new(dir.path().to_path_buf(), Default::default()).unwrap());
    let now = now_ns();
    let mut sink = driven_sink(&indexes, IndexerConfig::default());
    let recs: Vec<StoredRecord> = (0..3).map(|i| record(i, now, "a line")).collect();
    sink.write("logs", 0, &recs).unwrap();
    sink.commit(&positions(3)).unwrap();
    let day = indexes.open(&TenantId::new("acme").unwrap(), day_of(now), false).unwrap().unwrap();
    let settings = day.index.settings();
    assert_eq!(settings.docstore_blocksize, strata_search::DOCSTORE_BLOCK_BYTES);
    assert!(
        matches!(settings.docstore_compression, tantivy::store::Compressor::Zstd(_)),
        "{:?}",
        settings.docstore_compression
    );
}
