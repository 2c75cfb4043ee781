//! The schema of a day index and how a log line becomes a document.

use std::collections::BTreeMap;

use strata_model::LogLine;
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, JsonObjectOptions, OwnedValue, STORED, Schema, TextFieldIndexing,
    TextOptions,
};
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::{IndexSettings, TantivyDocument};

/// Bytes of stored lines compressed together. Larger blocks compress better (generated 1 KiB
/// lines: 0.30 of their size in 16 KiB blocks, 0.25 in 64 KiB) but every hit read from another
/// block decompresses one more block.
pub const DOCSTORE_BLOCK_BYTES: usize = 64 << 10;

/// zstd's level for stored lines: 3 is its default, compressing at several hundred MB/s.
pub const DOCSTORE_ZSTD_LEVEL: i32 = 3;

/// Fields searchable as exact tokens (`source_id:web-1`).
pub const KEYWORD_FIELDS: [&str; 6] = ["level", "source_id", "run_id", "trace_id", "service", "host"];

/// The fields of a log index.
#[derive(Clone, Debug)]
pub struct LogSchema {
    pub schema: Schema,
    /// Event time, Unix nanoseconds: indexed for ranges, fast for sorting and histograms.
    pub timestamp: Field,
    pub level: Field,
    pub source_id: Field,
    pub run_id: Field,
    pub trace_id: Field,
    pub service: Field,
    pub host: Field,
    /// Full text with positions, so phrases work.
    pub message: Field,
    /// A JSON field: `attributes.user_id:42`.
    pub attributes: Field,
    /// Where the line is in the log: with `timestamp`, a total order for cursors.
    pub partition: Field,
    pub offset: Field,
    /// The stored line, returned in hits.
    pub source: Field,
}

impl LogSchema {
    pub fn new() -> LogSchema {
        let mut b = Schema::builder();
        let timestamp = b.add_i64_field("timestamp", INDEXED | FAST);
        // Exact tokens, not fast fields: nothing sorts or aggregates by them, and a filter is a
        // term lookup. Without field norms, a byte per document and field that a field of one
        // token has no use for.
        let keyword_options = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("raw")
                .set_index_option(IndexRecordOption::Basic)
                .set_fieldnorms(false),
        );
        let keyword =
            |b: &mut tantivy::schema::SchemaBuilder, name: &str| b.add_text_field(name, keyword_options.clone());
        let level = keyword(&mut b, "level");
        let source_id = keyword(&mut b, "source_id");
        let run_id = keyword(&mut b, "run_id");
        let trace_id = keyword(&mut b, "trace_id");
        let service = keyword(&mut b, "service");
        let host = keyword(&mut b, "host");
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("default")
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        let message = b.add_text_field("message", text);
        let json = JsonObjectOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("default")
                .set_index_option(IndexRecordOption::WithFreqsAndPositions)
                .set_fieldnorms(false),
        );
        let attributes = b.add_json_field("attributes", json);
        let partition = b.add_u64_field("_partition", FAST);
        let offset = b.add_u64_field("_offset", FAST);
        let source = b.add_bytes_field("_source", STORED);
        LogSchema {
            schema: b.build(),
            timestamp,
            level,
            source_id,
            run_id,
            trace_id,
            service,
            host,
            message,
            attributes,
            partition,
            offset,
            source,
        }
    }

    /// The settings a new day index is created with: stored lines compressed with zstd in
    /// larger blocks than tantivy's default (LZ4, 16 KiB). An index keeps the settings it was
    /// created with, and each segment names its own compressor, so older indexes stay readable.
    pub fn index_settings() -> IndexSettings {
        IndexSettings {
            docstore_compression: Compressor::Zstd(ZstdCompressor { compression_level: Some(DOCSTORE_ZSTD_LEVEL) }),
            docstore_blocksize: DOCSTORE_BLOCK_BYTES,
            ..IndexSettings::default()
        }
    }

    /// True when an index with schema `other` can be searched and written with this one: the same
    /// fields with the same names and value types in the same order. Their options may differ;
    /// day indexes created by earlier versions made every keyword field a fast field as well.
    pub fn compatible(&self, other: &Schema) -> bool {
        let shape = |s: &Schema| -> Vec<(String, tantivy::schema::Type)> {
            s.fields().map(|(_, e)| (e.name().to_string(), e.field_type().value_type())).collect()
        };
        shape(&self.schema) == shape(other)
    }

    /// The document for a line read from `partition` at `offset`; `raw` is its stored JSON.
    pub fn document(&self, line: &LogLine, raw: &[u8], partition: u32, offset: u64) -> TantivyDocument {
        let mut d = TantivyDocument::new();
        d.add_i64(self.timestamp, line.timestamp_ns);
        d.add_text(self.level, &line.level);
        d.add_text(self.source_id, &line.source_id);
        for (field, value) in [
            (self.run_id, &line.run_id),
            (self.trace_id, &line.trace_id),
            (self.service, &line.service),
            (self.host, &line.host),
        ] {
            if let Some(v) = value {
                d.add_text(field, v);
            }
        }
        d.add_text(self.message, &line.message);
        if !line.attributes.is_empty() {
            let object: BTreeMap<String, OwnedValue> =
                line.attributes.iter().map(|(k, v)| (k.clone(), OwnedValue::from(v.clone()))).collect();
            d.add_object(self.attributes, object);
        }
        d.add_u64(self.partition, u64::from(partition));
        d.add_u64(self.offset, offset);
        d.add_bytes(self.source, raw);
        d
    }
}

impl Default for LogSchema {
    fn default() -> Self {
        Self::new()
    }
}
