//! What a day index's bytes hold, by field and by part: how a change to the schema is measured.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use tantivy::Index;
use tantivy::space_usage::PerFieldSpaceUsage;

use crate::{Error, Result};

/// The bytes of one day index.
#[derive(Debug, Clone, Serialize)]
pub struct IndexUsage {
    pub docs: u64,
    pub segments: usize,
    pub total_bytes: u64,
    /// The stored lines, compressed.
    pub store_bytes: u64,
    /// By field name.
    pub fields: BTreeMap<String, FieldUsage>,
}

/// The bytes of one field, by part.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FieldUsage {
    pub terms: u64,
    pub postings: u64,
    pub positions: u64,
    pub fast: u64,
    pub norms: u64,
}

/// Reads what the index in `dir` holds (tantivy's space usage of its committed segments).
pub fn index_usage(dir: &Path) -> Result<IndexUsage> {
    let ierr = |source: tantivy::TantivyError| Error::Index { path: dir.to_path_buf(), source };
    let index = Index::open_in_dir(dir).map_err(ierr)?;
    let searcher = index.reader().map_err(ierr)?.searcher();
    let usage = searcher.space_usage().map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    let mut fields: BTreeMap<String, FieldUsage> = BTreeMap::new();
    let mut add = |part: &PerFieldSpaceUsage, to: fn(&mut FieldUsage) -> &mut u64| {
        for f in part.fields() {
            *to(fields.entry(f.field_name().to_string()).or_default()) += f.total().get_bytes();
        }
    };
    let mut store_bytes = 0;
    for segment in usage.segments() {
        store_bytes += segment.store().total().get_bytes();
        add(segment.termdict(), |f| &mut f.terms);
        add(segment.postings(), |f| &mut f.postings);
        add(segment.positions(), |f| &mut f.positions);
        add(segment.fast_fields(), |f| &mut f.fast);
        add(segment.fieldnorms(), |f| &mut f.norms);
    }
    Ok(IndexUsage {
        docs: searcher.num_docs(),
        segments: usage.segments().len(),
        total_bytes: usage.total().get_bytes(),
        store_bytes,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LogSchema;
    use strata_model::LogLine;

    #[test]
    fn usage_names_the_fields_that_hold_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let schema = LogSchema::new();
        let index = Index::create_in_dir(dir.path(), schema.schema.clone()).unwrap();
        LogSchema::register_tokenizers(&index);
        let mut writer: tantivy::IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for i in 0..100u64 {
            let line = LogLine {
                timestamp_ns: i as i64,
                source_id: "s".into(),
                level: "info".into(),
                message: format!("line {i}"),
                run_id: None,
                trace_id: Some(format!("{i:032x}")),
                service: None,
                host: None,
                attributes: Default::default(),
            };
            let mut raw = Vec::new();
            line.write_stored(&mut raw);
            writer.add_document(schema.document(&line, &raw, 0, i)).unwrap();
        }
        writer.commit().unwrap();
        let usage = index_usage(dir.path()).unwrap();
        assert_eq!((usage.docs, usage.segments), (100, 1));
        assert!(usage.store_bytes > 0 && usage.total_bytes > usage.store_bytes);
        let message = &usage.fields["message"];
        assert!(message.terms > 0 && message.postings > 0 && message.positions > 0 && message.norms > 0);
        assert!(usage.fields["trace_id"].terms > 0);
        assert!(usage.fields["timestamp"].fast > 0);
        assert_eq!(usage.fields["timestamp"].terms, 0, "timestamps are not indexed");
        let parts: u64 = usage.fields.values().map(|f| f.terms + f.postings + f.positions + f.fast + f.norms).sum();
        assert!(parts + usage.store_bytes <= usage.total_bytes);
    }
}
