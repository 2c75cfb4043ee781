//! The embedded log through its public API: appends and reads, segment rolls, recovery from torn
//! and corrupt tails, consumer groups, time seeks and retention.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use strata_log::{Codec, EmbeddedLog, EncodedRecords, Error, GroupOffset, Log, LogConfig, Record, TopicConfig};

/// Uncompressed, so that sizes (segment rolls, torn tails at every byte) are the records' own.
fn config(dir: &Path, segment_bytes_max: u64) -> LogConfig {
    config_with(dir, segment_bytes_max, Codec::None)
}

fn config_with(dir: &Path, segment_bytes_max: u64, codec: Codec) -> LogConfig {
    let mut cfg = LogConfig::new(dir, 1);
    cfg.topics =
        vec![TopicConfig { name: "logs".into(), partitions: 1, retention_ms: None, retention_bytes: None, codec }];
    cfg.segment_bytes_max = segment_bytes_max;
    cfg.index_interval_bytes = 256;
    cfg
}

fn record(i: u64) -> Record {
    Record {
        timestamp_ns: i as i64 * 1000,
        tenant: "acme".into(),
        source_id: format!("src-{}", i % 7),
        headers: vec![("k".into(), i.to_le_bytes().to_vec())],
        payload: format!("payload number {i} {}", "x".repeat((i % 50) as usize)).into_bytes(),
    }
}

fn batch(range: std::ops::Range<u64>) -> EncodedRecords {
    let mut e = EncodedRecords::new();
    for i in range {
        e.push_record(&record(i)).unwrap();
    }
    e
}

async fn append_batches(log: &EmbeddedLog, n: u64, per: u64) {
    for b in 0..n {
        let ack = log.append("logs", 0, batch(b * per..(b + 1) * per)).await.unwrap();
        assert_eq!(ack.base_offset, b * per);
        assert_eq!(ack.count as u64, per);
    }
}

fn read_all(log: &EmbeddedLog) -> Result<Vec<(u64, Record)>, Error> {
    let mut out = Vec::new();
    let mut offset = log.topics()[0].partitions[0].earliest_offset;
    loop {
        let r = log.read("logs", 0, offset, 1000)?;
        if r.records.is_empty() {
            return Ok(out);
        }
        for s in r.records {
            out.push((s.offset, s.record));
        }
        offset = r.next_offset;
    }
}

fn assert_prefix(records: &[(u64, Record)], n: u64) {
    assert_eq!(records.len() as u64, n);
    for (i, (off, r)) in records.iter().enumerate() {
        assert_eq!(*off, i as u64);
        assert_eq!(r, &record(i as u64));
    }
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("logs/0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn compressed_topics_read_back_what_was_written_and_take_less_disk() {
    let plain_dir = tempfile::tempdir().unwrap();
    let zstd_dir = tempfile::tempdir().unwrap();
    let plain = EmbeddedLog::open(config_with(plain_dir.path(), 1 << 20, Codec::None)).unwrap();
    append_batches(&plain, 60, 5).await;
    // Compressed as batches are appended, not when segments are sealed.
    let mut cfg = config_with(zstd_dir.path(), 1 << 20, Codec::Zstd);
    cfg.compress_sealed = false;
    let zstd = EmbeddedLog::open(cfg).unwrap();
    assert_eq!(zstd.codec("logs").unwrap(), Codec::Zstd);
    // Half compressed by the producer, half by the partition's writer.
    for b in 0..60u64 {
        let mut e = batch(b * 5..(b + 1) * 5);
        if b % 2 == 0 {
            e.compress(Codec::Zstd);
        }
        zstd.append("logs", 0, e).await.unwrap();
    }
    assert_prefix(&read_all(&zstd).unwrap(), 300);
    let (p, z) = (plain.topics()[0].partitions[0].bytes, zstd.topics()[0].partitions[0].bytes);
    assert!(z * 2 < p, "compressed {z} bytes against {p}");
    // Reads from the middle of a compressed batch start at that record.
    let r = zstd.read("logs", 0, 137, 1).unwrap();
    assert_eq!(r.records[0].offset, 137);
    zstd.close();
    drop(zstd);
    // Reopened, and with batches of both kinds in one partition (the codec changed).
    let mixed = EmbeddedLog::open(config_with(zstd_dir.path(), 1 << 20, Codec::None)).unwrap();
    assert_prefix(&read_all(&mixed).unwrap(), 300);
    append_batches_from(&mixed, 300, 10).await;
    assert_prefix(&read_all(&mixed).unwrap(), 310);
}

#[tokio::test(flavor = "multi_thread")]
async fn appends_read_back_across_segments_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EmbeddedLog::open(config(dir.path(), 8192)).unwrap();
        append_batches(&log, 60, 5).await;
        assert_prefix(&read_all(&log).unwrap(), 300);
        let info = &log.topics()[0].partitions[0];
        assert_eq!(info.latest_offset, 300);
        assert!(info.segments > 3, "segments rolled: {info:?}");
        // Reads from the middle of a batch start at that record.
        let r = log.read("logs", 0, 137, 1).unwrap();
        assert_eq!(r.records[0].offset, 137);
        assert_eq!(r.records[0].record, record(137));
    }
    let log = EmbeddedLog::open(config(dir.path(), 8192)).unwrap();
    assert_prefix(&read_all(&log).unwrap(), 300);
    append_batches_from(&log, 300, 10).await;
    assert_prefix(&read_all(&log).unwrap(), 310);
    // Out of range reads are errors that name the range.
    let err = log.read("logs", 0, 311, 1000).unwrap_err().to_string();
    assert_eq!(err, "offset 311 of logs/0 is outside [0, 310]");
}

async fn append_batches_from(log: &EmbeddedLog, start: u64, n: u64) {
    let ack = log.append("logs", 0, batch(start..start + n)).await.unwrap();
    assert_eq!(ack.base_offset, start);
}

#[tokio::test(flavor = "multi_thread")]
async fn index_files_are_rebuilt_when_missing_or_wrong() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EmbeddedLog::open(config(dir.path(), 8192)).unwrap();
        append_batches(&log, 40, 5).await;
    }
    for p in segment_files(dir.path()) {
        let idx = p.with_extension("index");
        if p == segment_files(dir.path())[0] {
            std::fs::remove_file(&idx).unwrap();
        } else {
            std::fs::write(&idx, [0xffu8; 16]).unwrap();
        }
    }
    let log = EmbeddedLog::open(config(dir.path(), 8192)).unwrap();
    assert_prefix(&read_all(&log).unwrap(), 200);
    for probe in [0, 17, 99, 150, 199] {
        assert_eq!(log.read("logs", 0, probe, 1).unwrap().records[0].record, record(probe));
    }
}

/// Writes 10 batches of 3 records, closes the log, and returns the last segment and where its
/// final batch starts.
async fn prepared_log(dir: &Path) -> (std::path::PathBuf, u64, u64) {
    {
        let log = EmbeddedLog::open(config(dir, 1 << 20)).unwrap();
        append_batches(&log, 10, 3).await;
    }
    let seg = segment_files(dir).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let data = std::fs::read(&seg).unwrap();
    // Walk the batch lengths to find the final batch.
    let mut pos = 0u64;
    let mut last = 0u64;
    while pos < len {
        last = pos;
        pos += u64::from(u32::from_le_bytes(data[pos as usize..pos as usize + 4].try_into().unwrap()));
    }
    assert_eq!(pos, len);
    (seg, last, len)
}

/// Waits until every sealed segment of `logs/0` has its compression marker.
fn wait_compressed(dir: &Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let segments = segment_files(dir);
        let sealed = &segments[..segments.len() - 1];
        if sealed.iter().all(|s| s.with_extension("compressed").exists()) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "sealed segments not compressed: {segments:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sealed_segments_are_compressed_in_the_background_and_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(config_with(dir.path(), 16 << 10, Codec::Zstd)).unwrap();
    assert_eq!(log.codec("logs").unwrap(), Codec::None, "appends wait for no compression");
    append_batches(&log, 200, 5).await;
    let segments = segment_files(dir.path());
    assert!(segments.len() > 5, "{segments:?}");
    let plain_bytes: u64 = segments.iter().map(|s| s.metadata().unwrap().len()).sum();
    let times: Vec<i64> =
        [0, 250, 500, 999].iter().map(|&o| log.read("logs", 0, o, 1).unwrap().records[0].append_time_ms).collect();
    let seeks: Vec<u64> = times.iter().map(|&t| log.offset_for_time("logs", 0, t).unwrap()).collect();
    wait_compressed(dir.path());
    let bytes: u64 = segment_files(dir.path()).iter().map(|s| s.metadata().unwrap().len()).sum();
    assert!(bytes * 2 < plain_bytes, "compressed {bytes} bytes against {plain_bytes}");
    assert_eq!(log.topics()[0].partitions[0].bytes, bytes);
    assert_prefix(&read_all(&log).unwrap(), 1000);
    for from in [0, 1, 137, 499, 999] {
        assert_eq!(log.read("logs", 0, from, 1).unwrap().records[0].offset, from);
    }
    let again: Vec<u64> = times.iter().map(|&t| log.offset_for_time("logs", 0, t).unwrap()).collect();
    assert_eq!(again, seeks, "time seeks after compression");
    log.close();
    drop(log);
    let reopened = EmbeddedLog::open(config_with(dir.path(), 16 << 10, Codec::Zstd)).unwrap();
    assert_prefix(&read_all(&reopened).unwrap(), 1000);
    append_batches_from(&reopened, 1000, 100).await;
    wait_compressed(dir.path());
    assert_prefix(&read_all(&reopened).unwrap(), 1100);
}

/// A segment's compressed copy is written before the segment is removed: with no room for it
/// above the floor, compression waits (the segments read as before, nothing is given up on) and
/// goes on once there is room.
#[tokio::test(flavor = "multi_thread")]
async fn sealed_segments_wait_for_room_to_be_compressed() {
    let dir = tempfile::tempdir().unwrap();
    // Written plain: then the topic is compressed, and its sealed segments wait for it.
    let log = EmbeddedLog::open(config_with(dir.path(), 16 << 10, Codec::None)).unwrap();
    append_batches(&log, 100, 5).await;
    log.close();
    drop(log);
    let compressed = |dir: &Path| segment_files(dir).iter().filter(|s| s.with_extension("compressed").exists()).count();
    assert!(segment_files(dir.path()).len() > 3);
    assert_eq!(compressed(dir.path()), 0);

    // A floor past any disk: no copy fits.
    let mut cfg = config_with(dir.path(), 16 << 10, Codec::Zstd);
    cfg.disk_free_bytes_min = u64::MAX / 2;
    let waiting = EmbeddedLog::open(cfg).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(compressed(dir.path()), 0, "compressed with no room");
    assert_prefix(&read_all(&waiting).unwrap(), 500);
    assert_eq!(waiting.topics()[0].partitions[0].failed, None);
    waiting.close();
    drop(waiting);

    let log = EmbeddedLog::open(config_with(dir.path(), 16 << 10, Codec::Zstd)).unwrap();
    wait_compressed(dir.path());
    assert_prefix(&read_all(&log).unwrap(), 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compression_cut_short_leaves_every_segment_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(config_with(dir.path(), 16 << 10, Codec::Zstd)).unwrap();
    append_batches(&log, 100, 5).await;
    wait_compressed(dir.path());
    log.close();
    drop(log);
    let segments = segment_files(dir.path());
    // What a crash at each step of putting a compressed segment in place leaves: the rewrite's
    // files half written beside the segment; the old indexes removed; the new segment in place
    // without indexes; no marker yet.
    std::fs::write(segments[0].with_extension("log.tmp"), b"half a segment").unwrap();
    std::fs::write(segments[0].with_extension("index.tmp"), b"").unwrap();
    for ext in ["index", "timeindex", "compressed"] {
        std::fs::remove_file(segments[1].with_extension(ext)).unwrap();
    }
    std::fs::remove_file(segments[2].with_extension("compressed")).unwrap();
    let reopened = EmbeddedLog::open(config_with(dir.path(), 16 << 10, Codec::Zstd)).unwrap();
    assert!(!segments[0].with_extension("log.tmp").exists() && !segments[0].with_extension("index.tmp").exists());
    assert_prefix(&read_all(&reopened).unwrap(), 500);
    wait_compressed(dir.path());
    assert_prefix(&read_all(&reopened).unwrap(), 500);
    // And retention removes a compressed segment with its marker.
    reopened.close();
    drop(reopened);
    let mut cfg = config_with(dir.path(), 16 << 10, Codec::Zstd);
    cfg.topics[0].retention_bytes = Some(1);
    let trimmed = EmbeddedLog::open(cfg).unwrap();
    trimmed.enforce_retention(0).await.unwrap();
    let left: Vec<_> = std::fs::read_dir(dir.path().join("logs/0")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(left.iter().filter(|p| p.extension().is_some_and(|e| e == "compressed")).count(), 0, "{left:?}");
    assert_eq!(segment_files(dir.path()).len(), 1);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_torn_tail_at_every_byte_keeps_every_complete_batch() {
    let src = tempfile::tempdir().unwrap();
    let (seg, last, len) = prepared_log(src.path()).await;
    let rel = seg.strip_prefix(src.path()).unwrap().to_path_buf();
    for cut in last..len {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(src.path(), dir.path());
        let f = std::fs::OpenOptions::new().write(true).open(dir.path().join(&rel)).unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        let log = EmbeddedLog::open(config(dir.path(), 1 << 20)).unwrap();
        let records = read_all(&log).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_prefix(&records, 27);
        assert_eq!(std::fs::metadata(dir.path().join(&rel)).unwrap().len(), last, "tail truncated");
        // The log goes on from where the torn batch would have started.
        let ack = log.append("logs", 0, batch(27..30)).await.unwrap();
        assert_eq!(ack.base_offset, 27);
        assert_prefix(&read_all(&log).unwrap(), 30);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_byte_in_the_final_batch_is_dropped_never_served() {
    let src = tempfile::tempdir().unwrap();
    let (seg, last, len) = prepared_log(src.path()).await;
    let rel = seg.strip_prefix(src.path()).unwrap().to_path_buf();
    for pos in last..len {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(src.path(), dir.path());
        let path = dir.path().join(&rel);
        let mut data = std::fs::read(&path).unwrap();
        data[pos as usize] ^= 0x5a;
        std::fs::write(&path, data).unwrap();
        let log = EmbeddedLog::open(config(dir.path(), 1 << 20)).unwrap();
        let records = read_all(&log).unwrap_or_else(|e| panic!("flip at {pos}: {e}"));
        assert_prefix(&records, 27);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn corruption_in_a_sealed_segment_is_an_error_not_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EmbeddedLog::open(config(dir.path(), 4096)).unwrap();
        append_batches(&log, 40, 5).await;
    }
    let first = segment_files(dir.path())[0].clone();
    let mut data = std::fs::read(&first).unwrap();
    data[100] ^= 1;
    std::fs::write(&first, data).unwrap();
    let log = EmbeddedLog::open(config(dir.path(), 4096)).unwrap();
    match read_all(&log) {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("crc32c"), "{reason}"),
        other => panic!("expected a corrupt batch error, got {other:?}"),
    }
}

/// The group commit interval holds back appends that arrive while other producers append too;
/// a lone producer that appends again as soon as it is acknowledged is never held. With an
/// interval of a minute, holding it even once would run past the generous deadline.
#[tokio::test(flavor = "multi_thread")]
async fn a_lone_producer_is_not_held_by_the_group_commit_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 64 << 10);
    cfg.group_commit_interval_us = 60_000_000;
    let log = EmbeddedLog::open(cfg).unwrap();
    tokio::time::timeout(Duration::from_secs(30), append_batches(&log, 20, 3))
        .await
        .expect("20 appends one after the other are each written at once");
    assert_prefix(&read_all(&log).unwrap(), 60);
}

/// A busy partition holds a group back for the rest of its interval only while announced
/// appends are still on their way: producers that each announce, append and wait are written as
/// soon as all of them wait. Eight of them at once make groups of several appends, after which
/// the writer lingers; with an interval of a minute, a linger that waited out the interval even
/// once would run past the generous deadline.
#[tokio::test(flavor = "multi_thread")]
async fn a_group_is_written_once_no_announced_append_is_on_its_way() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 64 << 10);
    cfg.group_commit_interval_us = 60_000_000;
    let log = Arc::new(EmbeddedLog::open(cfg).unwrap());
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10u64 {
                let announced = Arc::new(log.announce("logs"));
                tokio::task::yield_now().await;
                let id = t * 1000 + i;
                log.append_announced("logs", 0, batch(id..id + 1), announced).await.unwrap();
            }
        }));
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
    .expect("announced appends are written once none is on its way, not after the interval");
    let records = read_all(&log).unwrap();
    assert_eq!(records.len(), 80);
    assert_eq!(records.iter().map(|(o, _)| *o).collect::<Vec<_>>(), (0..80).collect::<Vec<u64>>());
}

/// Below the disk floor an append is refused as such, nothing is written, and the partition is
/// not stopped: the next append is asked again (and here refused again, the floor being past any
/// disk).
#[tokio::test]
async fn appends_below_the_disk_floor_are_refused_and_the_partition_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 64 << 10);
    cfg.disk_free_bytes_min = u64::MAX / 2;
    let log = EmbeddedLog::open(cfg).unwrap();
    for _ in 0..2 {
        match log.append("logs", 0, batch(0..3)).await {
            Err(Error::DiskFull { topic, partition: 0, free, min }) => {
                assert_eq!(topic, "logs");
                assert!(free < min);
            }
            other => panic!("expected DiskFull, got {other:?}"),
        }
    }
    assert_eq!(log.end_offset("logs", 0).unwrap(), 0);
    assert!(read_all(&log).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_appends_get_unique_contiguous_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(config(dir.path(), 64 << 10)).unwrap());
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..50u64 {
                let id = t * 1000 + i;
                acks.push(log.append("logs", 0, batch(id..id + 1)).await.unwrap().base_offset);
            }
            acks
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (0..800).collect::<Vec<u64>>());
    let records = read_all(&log).unwrap();
    let mut ids: Vec<u64> =
        records.iter().map(|(_, r)| u64::from_le_bytes(r.headers[0].1[..].try_into().unwrap())).collect();
    ids.sort_unstable();
    let want: Vec<u64> = (0..16u64).flat_map(|t| (0..50).map(move |i| t * 1000 + i)).collect();
    assert_eq!(ids, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn consumer_groups_commit_durably_and_can_rewind() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EmbeddedLog::open(config(dir.path(), 1 << 20)).unwrap();
        append_batches(&log, 4, 5).await;
        let o = |offset| vec![GroupOffset { topic: "logs".into(), partition: 0, offset }];
        log.commit_offsets("search", &o(12)).await.unwrap();
        log.commit_offsets("search", &o(3)).await.unwrap();
        assert!(matches!(log.commit_offsets("../x", &o(1)).await, Err(Error::GroupName(_))));
        assert!(
            log.commit_offsets("g", &[GroupOffset { topic: "nope".into(), partition: 0, offset: 1 }]).await.is_err()
        );
    }
    let log = EmbeddedLog::open(config(dir.path(), 1 << 20)).unwrap();
    assert_eq!(log.groups(), vec!["search".to_string()]);
    assert_eq!(
        log.committed_offsets("search").unwrap(),
        vec![GroupOffset { topic: "logs".into(), partition: 0, offset: 3 }]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn seek_by_time_and_wait_for_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(config(dir.path(), 4096)).unwrap());
    append_batches(&log, 10, 5).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let cut = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    tokio::time::sleep(Duration::from_millis(30)).await;
    append_batches_from(&log, 50, 5).await;
    assert_eq!(log.offset_for_time("logs", 0, cut).unwrap(), 50);
    assert_eq!(log.offset_for_time("logs", 0, 0).unwrap(), 0);
    assert_eq!(log.offset_for_time("logs", 0, i64::MAX).unwrap(), 55);
    // A waiter wakes when a record arrives and times out when none does.
    assert_eq!(log.wait_for("logs", 0, 55, Duration::from_millis(50)).await.unwrap(), 55);
    let waiter = {
        let log = log.clone();
        tokio::spawn(async move { log.wait_for("logs", 0, 55, Duration::from_secs(10)).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    append_batches_from(&log, 55, 1).await;
    assert_eq!(waiter.await.unwrap(), 56);
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_deletes_whole_old_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 4096);
    cfg.topics[0].retention_bytes = Some(10_000);
    let log = EmbeddedLog::open(cfg.clone()).unwrap();
    append_batches(&log, 60, 5).await;
    let before = log.topics()[0].partitions[0].clone();
    let removed = log.enforce_retention(i64::MAX / 2).await.unwrap();
    let after = log.topics()[0].partitions[0].clone();
    assert_eq!(removed.len(), 1);
    assert!(after.bytes <= 10_000 && after.bytes + 4096 > 10_000, "{after:?}");
    assert_eq!(before.bytes - after.bytes, removed[0].bytes);
    assert!(after.earliest_offset > 0);
    assert_eq!(after.latest_offset, 300);
    // What is left is whole and readable from the new earliest offset.
    let rest = read_all(&log).unwrap();
    assert_eq!(rest.first().unwrap().0, after.earliest_offset);
    assert_eq!(rest.len() as u64, 300 - after.earliest_offset);
    assert!(matches!(log.read("logs", 0, 0, 10), Err(Error::OffsetOutOfRange { .. })));
    drop(log);

    // Age: with a retention of 0 ms every sealed segment goes, the active one stays.
    cfg.topics[0].retention_bytes = None;
    cfg.topics[0].retention_ms = Some(0);
    let log = EmbeddedLog::open(cfg).unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    log.enforce_retention(now).await.unwrap();
    let info = &log.topics()[0].partitions[0];
    assert_eq!(info.segments, 1);
    assert_eq!(info.latest_offset, 300);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _log = EmbeddedLog::open(config(dir.path(), 1 << 20)).unwrap();
    let err = EmbeddedLog::open(config(dir.path(), 1 << 20)).err().expect("second open fails");
    assert!(matches!(err, strata_log::Error::Locked { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("in use by another process") && msg.contains("another data directory"), "{msg}");
    assert!(!msg.contains("invalid log configuration"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn partitions_can_be_added_but_never_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 1 << 20);
    cfg.topics[0].partitions = 2;
    drop(EmbeddedLog::open(cfg.clone()).unwrap());
    cfg.topics[0].partitions = 3;
    assert_eq!(EmbeddedLog::open(cfg.clone()).unwrap().partition_count("logs").unwrap(), 3);
    // A smaller count (a lower default, or a configuration written for a new directory) leaves
    // the topic as it is on disk, with every record where it was.
    let log = EmbeddedLog::open(cfg.clone()).unwrap();
    log.append("logs", 2, batch(0..1)).await.unwrap();
    drop(log);
    cfg.topics[0].partitions = 1;
    let log = EmbeddedLog::open(cfg).unwrap();
    assert_eq!(log.partition_count("logs").unwrap(), 3);
    assert_eq!(log.topics()[0].partitions.len(), 3);
    assert_eq!(log.end_offset("logs", 2).unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_never_gets_ahead_of_the_published_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(config(dir.path(), 64 << 10)).unwrap());
    let writers: Vec<_> = (0..4u64)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..300u64 {
                    log.append("logs", 0, batch(t * 10_000 + i..t * 10_000 + i + 1)).await.unwrap();
                }
            })
        })
        .collect();
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            let mut pos = 0u64;
            let mut seen = 0u64;
            while seen < 1200 {
                // Out of range would mean an earlier read handed out an offset past the end.
                let r = log.read("logs", 0, pos, 512).unwrap();
                assert!(r.next_offset <= r.end_offset, "{} > {}", r.next_offset, r.end_offset);
                seen += r.records.len() as u64;
                pos = r.next_offset;
            }
            pos
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(tokio::task::spawn_blocking(move || reader.join().unwrap()).await.unwrap(), 1200);
}
