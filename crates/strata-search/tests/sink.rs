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
    traced(offset, ts, msg, None)
}

fn traced(offset: u64, ts: i64, msg: &str, trace_id: Option<&str>) -> StoredRecord {
    let line = LogLine {
        timestamp_ns: ts,
        source_id: "s".into(),
        level: "info".into(),
        message: msg.into(),
        run_id: None,
        trace_id: trace_id.map(Into::into),
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

/// Trace ids of every kind, each written to the sink once; the queries and the messages of the
/// lines each finds.
const TRACE_IDS: [Option<&str>; 5] = [
    Some("4bf92f3577b34da6a3ce929d0e0e4736"),
    Some("000000000000000000F067AA0BA902B7"),
    Some("00f067aa0ba902b7"),
    Some("req-7f3a"),
    Some("ffffffffffffffffa3ce929d0e0e47"),
];

fn trace_queries() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("trace_id:4bf92f3577b34da6a3ce929d0e0e4736", vec!["traced 0"]),
        ("trace_id:4BF92F3577B34DA6A3CE929D0E0E4736", vec!["traced 0"]),
        // A 64-bit id and the W3C id that zero-pads it are one trace.
        ("trace_id:00f067aa0ba902b7", vec!["traced 1", "traced 2"]),
        ("trace_id:000000000000000000f067aa0ba902b7", vec!["traced 1", "traced 2"]),
        ("trace_id:\"req-7f3a\"", vec!["traced 3"]),
        ("trace_id:ffffffffffffffffa3ce929d0e0e47", vec!["traced 4"]),
        // Only the whole id, or a form of it, finds its lines.
        ("trace_id:4bf92f3577b34da6", vec![]),
        // A 64-bit id finds the 128-bit ids whose low half it is, as it finds its padded form.
        ("trace_id:a3ce929d0e0e4736", vec!["traced 0"]),
        ("trace_id:00f067aa0ba902", vec![]),
    ]
}

fn messages(indexes: &Indexes, q: &str) -> Vec<String> {
    let req = SearchRequest {
        q: q.into(),
        source_ids: vec![],
        run_id: None,
        levels: vec![],
        from_ns: 0,
        to_ns: now_ns() + DAY_NS,
        limit: 1000,
        sort: Sort::Newest,
        cursor: None,
    };
    let r = search(indexes, &TenantId::new("acme").unwrap(), &req, Instant::now() + Duration::from_secs(30)).unwrap();
    assert!(r.errors.is_empty(), "{q}: {:?}", r.errors);
    let mut found: Vec<String> =
        r.hits.iter().map(|h| serde_json::to_value(h).unwrap()["message"].as_str().unwrap().to_string()).collect();
    found.sort();
    found
}

/// Writes a line for each of [`TRACE_IDS`] at offsets from `first` and checks what each trace
/// query finds.
fn check_trace_ids(indexes: &Arc<Indexes>, first: u64, exact: bool) {
    let mut sink = driven_sink(indexes, IndexerConfig::default());
    sink.committed().unwrap();
    let now = now_ns();
    let recs: Vec<StoredRecord> = TRACE_IDS
        .iter()
        .enumerate()
        .map(|(i, id)| traced(first + i as u64, now + i as i64, &format!("traced {i}"), *id))
        .collect();
    sink.write("logs", 0, &recs).unwrap();
    sink.commit(&positions(first + recs.len() as u64)).unwrap();
    for (q, want) in trace_queries() {
        let found = messages(indexes, q);
        if exact {
            // An index of an earlier version matches the id as it was written.
            let id = q.trim_start_matches("trace_id:").trim_matches('"').replace('\\', "");
            let want: Vec<String> = (0..TRACE_IDS.len())
                .filter(|&i| TRACE_IDS[i] == Some(id.as_str()))
                .map(|i| format!("traced {i}"))
                .collect();
            assert_eq!(found, want, "{q}");
        } else {
            assert_eq!(found, want, "{q}");
        }
    }
}

#[test]
fn trace_ids_are_found_by_the_whole_id_in_any_case_and_width() {
    let dir = tempfile::tempdir().unwrap();
    let indexes = Arc::new(Indexes::new(dir.path().to_path_buf(), Default::default()).unwrap());
    check_trace_ids(&indexes, 0, false);
    // The hit is the line as written, its trace id whole.
    let req = SearchRequest {
        q: "trace_id:00F067AA0BA902B7".into(),
        source_ids: vec![],
        run_id: None,
        levels: vec![],
        from_ns: 0,
        to_ns: now_ns() + DAY_NS,
        limit: 10,
        sort: Sort::Newest,
        cursor: None,
    };
    let r = search(&indexes, &TenantId::new("acme").unwrap(), &req, Instant::now() + Duration::from_secs(30)).unwrap();
    let ids: Vec<String> =
        r.hits.iter().map(|h| serde_json::to_value(h).unwrap()["trace_id"].as_str().unwrap().into()).collect();
    assert_eq!(ids, ["00f067aa0ba902b7", "000000000000000000F067AA0BA902B7"]);
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
    // Their timestamps are indexed and their trace ids are whole terms: both still answer.
    drop(sink);
    check_trace_ids(&indexes, 10, true);
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

/// The timestamp is a fast field and not indexed, yet an exact time and a range of times in the
/// query both find their lines.
#[test]
fn lines_are_found_by_an_exact_time_and_by_a_range_in_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let indexes = Arc::new(Indexes::new(dir.path().to_path_buf(), Default::default()).unwrap());
    let mut sink = driven_sink(&indexes, IndexerConfig::default());
    sink.committed().unwrap();
    let now = now_ns();
    let recs: Vec<StoredRecord> = (0..5).map(|i| record(i, now + i as i64, &format!("at {i}"))).collect();
    sink.write("logs", 0, &recs).unwrap();
    sink.commit(&positions(5)).unwrap();
    for (q, want) in [
        (format!("timestamp:{}", now + 2), vec!["at 2"]),
        (format!("timestamp:{} OR timestamp:{}", now, now + 4), vec!["at 0", "at 4"]),
        (format!("timestamp:[{} TO {}]", now + 1, now + 3), vec!["at 1", "at 2", "at 3"]),
        (format!("timestamp:>{}", now + 3), vec!["at 4"]),
        (format!("timestamp:{}", now - 1), vec![]),
    ] {
        assert_eq!(messages(&indexes, &q), want, "{q}");
    }
}

/// A writer with several indexing threads puts every line in the index once.
#[test]
fn several_indexing_threads_index_every_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let indexes = Arc::new(Indexes::new(dir.path().to_path_buf(), Default::default()).unwrap());
    let cfg = IndexerConfig { indexing_threads: 2, writer_memory_bytes: 30_000_000, ..IndexerConfig::default() };
    let mut sink = driven_sink(&indexes, cfg);
    let now = now_ns();
    let recs: Vec<StoredRecord> = (0..2000).map(|i| record(i, now - i as i64, &format!("line {i}"))).collect();
    for (n, chunk) in recs.chunks(500).enumerate() {
        sink.write("logs", 0, chunk).unwrap();
        sink.commit(&positions(500 * (n as u64 + 1))).unwrap();
    }
    let day = indexes.open(&TenantId::new("acme").unwrap(), day_of(now), false).unwrap().unwrap();
    let searcher = day.reader.searcher();
    assert_eq!(searcher.num_docs(), 2000);
    assert_eq!(count(&indexes, "\"line 1999\"", 0).0, 1);
    assert_eq!(count(&indexes, "line", 0).0, 1000, "a page holds at most the limit");
}

/// Pages newest first, cursor after cursor, over ranges that end after the day's newest line,
/// at it, and before it: every line in the range once, in order.
#[test]
fn newest_first_pages_hold_every_line_once_whatever_the_range_end() {
    let dir = tempfile::tempdir().unwrap();
    let indexes = Arc::new(Indexes::new(dir.path().to_path_buf(), Default::default()).unwrap());
    let mut sink = driven_sink(&indexes, IndexerConfig::default());
    let day = (now_ns() - DAY_NS).div_euclid(DAY_NS) * DAY_NS;
    // 600 lines an hour to five hours into yesterday, 37 s apart, written out of order in
    // three commits (three segments), and two more at one instant.
    let mut times: Vec<i64> = (0..600).map(|i| day + 3_600_000_000_000 + i * 37_000_000_000).collect();
    times.swap(10, 590);
    times.extend([times[300], times[300]]);
    let recs: Vec<StoredRecord> =
        times.iter().enumerate().map(|(i, ts)| record(i as u64, *ts, &format!("line {i}"))).collect();
    for (c, chunk) in recs.chunks(201).enumerate() {
        sink.write("logs", 0, chunk).unwrap();
        sink.commit(&positions(((c + 1) * 201).min(recs.len()) as u64)).unwrap();
    }
    let tenant = TenantId::new("acme").unwrap();
    let mut keys: Vec<(i64, u64)> = times.iter().enumerate().map(|(i, ts)| (*ts, i as u64)).collect();
    keys.sort_by(|a, b| b.cmp(a));
    let newest = keys[0].0;
    for to_ns in [day + DAY_NS, newest + 1, newest, times[300] + 1, day + 2 * 3_600_000_000_000] {
        let want: Vec<(i64, u64)> = keys.iter().copied().filter(|(ts, _)| *ts < to_ns).collect();
        let mut got = Vec::new();
        let mut cursor = None;
        loop {
            let req = SearchRequest {
                q: String::new(),
                source_ids: vec![],
                run_id: None,
                levels: vec![],
                from_ns: day,
                to_ns,
                limit: 37,
                sort: Sort::Newest,
                cursor,
            };
            let r = search(&indexes, &tenant, &req, Instant::now() + Duration::from_secs(30)).unwrap();
            assert!(r.errors.is_empty(), "{:?}", r.errors);
            got.extend(r.hits.iter().map(|h| (h.key.0, h.key.2)));
            match r.next_cursor {
                Some(c) => cursor = Some(strata_search::Cursor::decode(&c).unwrap()),
                None => break,
            }
        }
        assert_eq!(got, want, "to {to_ns}");
    }
}
