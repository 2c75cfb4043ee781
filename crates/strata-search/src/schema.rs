//! The schema of a day index and how a log line becomes a document.

use std::collections::BTreeMap;

use strata_model::LogLine;
use tantivy::TantivyDocument;
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, JsonObjectOptions, OwnedValue, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions,
};

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
        let keyword = |b: &mut tantivy::schema::SchemaBuilder, name: &str| b.add_text_field(name, STRING | FAST);
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
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
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
