//! The columns of a line's key (timestamp, partition, offset), opened once per segment.
//!
//! Opening a fast-field column reads and decodes its block index, which for a rare term costs
//! more than the whole search of the segment. A segment never changes, so each day index keeps
//! its segments' key columns for as long as its searchers can see them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tantivy::columnar::Column;
use tantivy::index::SegmentId;
use tantivy::{DocId, Searcher, SegmentReader};

/// The total order of lines: (timestamp ns, partition, offset).
pub(crate) type LineKey = (i64, u64, u64);

/// The columns of a line's key in one segment.
pub(crate) struct KeyColumns {
    ts: Column<i64>,
    partition: Column<u64>,
    offset: Column<u64>,
}

impl KeyColumns {
    fn open(reader: &SegmentReader) -> tantivy::Result<KeyColumns> {
        let ff = reader.fast_fields();
        Ok(KeyColumns { ts: ff.i64("timestamp")?, partition: ff.u64("_partition")?, offset: ff.u64("_offset")? })
    }

    pub(crate) fn timestamp(&self, doc: DocId) -> Option<i64> {
        self.ts.first(doc)
    }

    /// The key of `doc`; every line has all three, so a missing value sorts it last.
    pub(crate) fn key(&self, doc: DocId) -> LineKey {
        self.key_at(doc, self.ts.first(doc).unwrap_or(i64::MIN))
    }

    /// The key of `doc`, whose timestamp (`i64::MIN` if it has none) was read already.
    pub(crate) fn key_at(&self, doc: DocId, ts: i64) -> LineKey {
        (ts, self.partition.first(doc).unwrap_or(0), self.offset.first(doc).unwrap_or(0))
    }
}

/// One day index's key columns by segment.
#[derive(Default)]
pub(crate) struct KeyCache {
    segments: Mutex<HashMap<SegmentId, Arc<KeyColumns>>>,
}

impl KeyCache {
    /// The key columns of each segment `searcher` reads, by segment ordinal: `None` for a segment
    /// whose columns cannot be read (only damage gets there; it is counted and logged, and the
    /// segment's lines are left out of newest-first pages). Segments that `searcher` no longer
    /// reads are forgotten, so a merged-away segment's file is not held open.
    pub(crate) fn for_searcher(&self, searcher: &Searcher) -> Vec<Option<Arc<KeyColumns>>> {
        let readers = searcher.segment_readers();
        let mut segments = self.segments.lock().expect("key cache lock");
        let found = readers
            .iter()
            .map(|reader| {
                let id = reader.segment_id();
                if let Some(columns) = segments.get(&id) {
                    return Some(columns.clone());
                }
                match KeyColumns::open(reader) {
                    Ok(columns) => {
                        let columns = Arc::new(columns);
                        segments.insert(id, columns.clone());
                        Some(columns)
                    }
                    Err(e) => {
                        metrics::counter!("strata_search_segment_errors_total").increment(1);
                        tracing::error!(segment = %id.short_uuid_string(), error = %e, "a segment's key columns cannot be read; its lines are left out");
                        None
                    }
                }
            })
            .collect();
        if segments.len() > readers.len() {
            segments.retain(|id, _| readers.iter().any(|r| r.segment_id() == *id));
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use tantivy::{IndexWriter, TantivyDocument};

    use super::*;
    use crate::schema::LogSchema;

    fn add(writer: &mut IndexWriter, schema: &LogSchema, ts: i64, offset: u64) {
        let mut d = TantivyDocument::new();
        d.add_i64(schema.timestamp, ts);
        d.add_u64(schema.partition, 1);
        d.add_u64(schema.offset, offset);
        writer.add_document(d).unwrap();
    }

    /// Keys are read from the right segment, a segment's columns are opened once, and a segment
    /// merged away is forgotten.
    #[test]
    fn columns_are_kept_per_live_segment() {
        let schema = LogSchema::new();
        let index = schema.index_in_ram();
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for segment in 0..3u64 {
            add(&mut writer, &schema, 100 * segment as i64, segment);
            add(&mut writer, &schema, 100 * segment as i64 + 1, segment + 10);
            writer.commit().unwrap();
        }
        let reader = index.reader_builder().reload_policy(tantivy::ReloadPolicy::Manual).try_into().unwrap();
        let cache = KeyCache::default();
        let searcher = reader.searcher();
        let first = cache.for_searcher(&searcher);
        assert_eq!(first.len(), 3);
        let mut keys: Vec<LineKey> =
            first.iter().flat_map(|c| [c.as_ref().unwrap().key(0), c.as_ref().unwrap().key(1)]).collect();
        keys.sort();
        assert_eq!(keys, vec![(0, 1, 0), (1, 1, 10), (100, 1, 1), (101, 1, 11), (200, 1, 2), (201, 1, 12)]);
        let again = cache.for_searcher(&searcher);
        assert!(first.iter().zip(&again).all(|(a, b)| Arc::ptr_eq(a.as_ref().unwrap(), b.as_ref().unwrap())));

        let ids = index.searchable_segment_ids().unwrap();
        writer.merge(&ids).wait().unwrap();
        reader.reload().unwrap();
        let merged = reader.searcher();
        let after = cache.for_searcher(&merged);
        assert_eq!(after.len(), 1);
        assert_eq!(cache.segments.lock().unwrap().len(), 1, "the merged-away segments are forgotten");
        let columns = after[0].as_ref().unwrap();
        let mut keys: Vec<LineKey> = (0..6).map(|d| columns.key(d)).collect();
        keys.sort();
        assert_eq!(keys[0], (0, 1, 0));
        assert_eq!(keys[5], (201, 1, 12));
    }
}
