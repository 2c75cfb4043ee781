//! The schema of a day index and how a log line becomes a document.

use std::borrow::Cow;
use std::collections::BTreeMap;

use strata_model::LogLine;
use tantivy::schema::{
    FAST, Field, IndexRecordOption, JsonObjectOptions, OwnedValue, STORED, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::store::{Compressor, ZstdCompressor};
use tantivy::tokenizer::{Token, TokenStream, Tokenizer};
use tantivy::{Index, IndexSettings, TantivyDocument};

/// Bytes of stored lines compressed together. Larger blocks compress better (generated 1 KiB
/// lines: 0.30 of their size in 16 KiB blocks, 0.25 in 64 KiB) but every hit read from another
/// block decompresses one more block.
pub const DOCSTORE_BLOCK_BYTES: usize = 64 << 10;

/// zstd's level for stored lines: 3 is its default, compressing at several hundred MB/s.
pub const DOCSTORE_ZSTD_LEVEL: i32 = 3;

/// The tokenizer of `trace_id`: see [`TraceIdTokenizer`].
pub const TRACE_ID_TOKENIZER: &str = "trace_id";

/// Fields searchable as exact tokens (`source_id:web-1`).
pub const KEYWORD_FIELDS: [&str; 6] = ["level", "source_id", "run_id", "trace_id", "service", "host"];

/// The fields of a log index.
#[derive(Clone, Debug)]
pub struct LogSchema {
    pub schema: Schema,
    /// Event time, Unix nanoseconds: a fast field, for ranges, sorting and histograms.
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
        // Not indexed: a time range is answered from the fast field (tantivy's range query reads
        // it when the field has one), and nearly every line has a timestamp of its own, so terms
        // and postings of it cost about 12 bytes a line (a third of a 350-byte line's message).
        let timestamp = b.add_i64_field("timestamp", FAST);
        // Exact tokens, not fast fields: nothing sorts or aggregates by them, and a filter is a
        // term lookup. Without field norms, a byte per document and field that a field of one
        // token has no use for.
        let keyword_options = |tokenizer: &str| {
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(tokenizer)
                    .set_index_option(IndexRecordOption::Basic)
                    .set_fieldnorms(false),
            )
        };
        let keyword =
            |b: &mut tantivy::schema::SchemaBuilder, name: &str| b.add_text_field(name, keyword_options("raw"));
        let level = keyword(&mut b, "level");
        let source_id = keyword(&mut b, "source_id");
        let run_id = keyword(&mut b, "run_id");
        let trace_id = b.add_text_field("trace_id", keyword_options(TRACE_ID_TOKENIZER));
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

    /// Makes the tokenizers of this schema known to `index`: every `Index` value a day index or
    /// an in-memory index is opened as needs them before it indexes or parses a query.
    pub fn register_tokenizers(index: &Index) {
        index.tokenizers().register(TRACE_ID_TOKENIZER, TraceIdTokenizer::default());
    }

    /// An index in memory with this schema and its tokenizers.
    pub fn index_in_ram(&self) -> Index {
        let index = Index::create_in_ram(self.schema.clone());
        LogSchema::register_tokenizers(&index);
        index
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
        d.add_bytes(self.source, &stored_form(raw, line.timestamp_ns));
        d
    }
}

/// What a day index stores of a line written as `raw` with timestamp `timestamp_ns`: the line
/// without its leading `"timestamp_ns"` member, which the `timestamp` fast field holds and a hit
/// takes from there. Nanosecond timestamps are nearly unique, so they cost several bytes a line
/// even compressed (about 4 of a 350-byte line's 76 stored bytes at millisecond precision, 7 at
/// nanosecond). A line written otherwise (its timestamp elsewhere, or not the one given) is
/// stored whole.
fn stored_form(raw: &[u8], timestamp_ns: i64) -> Cow<'_, [u8]> {
    const PREFIX: &[u8] = b"{\"timestamp_ns\":";
    let Some(rest) = raw.strip_prefix(PREFIX) else {
        return Cow::Borrowed(raw);
    };
    let digits = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
    match std::str::from_utf8(&rest[..digits]).ok().and_then(|d| d.parse::<i64>().ok()) {
        Some(t) if t == timestamp_ns && digits < rest.len() => {
            let mut stored = Vec::with_capacity(raw.len());
            stored.push(b'{');
            stored.extend_from_slice(&rest[digits + 1..]);
            Cow::Owned(stored)
        }
        _ => Cow::Borrowed(raw),
    }
}

/// The token of a trace id: a W3C trace id (32 hex digits, either case) or a 64-bit one (16) is
/// indexed as its low 64 bits in 11 characters of the URL-safe base64 alphabet, anything else as
/// it is. A trace id is unique to the lines of one request, so each is a term of its own: over a
/// million generated lines the term dictionary held 35 bytes a trace id for the 32 characters,
/// 18 for 16 hex digits and 17 for these 11 characters. The low half is the random half in
/// every common scheme (64-bit tracers zero the high half, X-Ray's starts with a time), two ids
/// that share it are one in 2^64, and `0000000000000000a3ce929d0e0e4736` finds the lines of
/// 64-bit `a3ce929d0e0e4736`, the same trace. A query is tokenized the same way, so the whole id
/// finds its lines; a prefix of one does not.
#[derive(Clone, Default)]
pub struct TraceIdTokenizer {
    token: Token,
}

const TRACE_TOKEN_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

impl Tokenizer for TraceIdTokenizer {
    type TokenStream<'a> = OneToken<'a>;

    fn token_stream<'a>(&'a mut self, text: &str) -> OneToken<'a> {
        self.token.reset();
        self.token.position = 0;
        self.token.offset_to = text.len();
        let low = match text.len() {
            16 | 32 if text.bytes().all(|b| b.is_ascii_hexdigit()) => {
                u64::from_str_radix(&text[text.len() - 16..], 16).ok()
            }
            _ => None,
        };
        match low {
            Some(low) => {
                for i in (0..11).rev() {
                    self.token.text.push(TRACE_TOKEN_ALPHABET[(low >> (6 * i) & 63) as usize] as char);
                }
            }
            None => self.token.text.push_str(text),
        }
        OneToken { token: &mut self.token, pending: true }
    }
}

/// A stream of the one token a [`TraceIdTokenizer`] makes of a value.
pub struct OneToken<'a> {
    token: &'a mut Token,
    pending: bool,
}

impl TokenStream for OneToken<'_> {
    fn advance(&mut self) -> bool {
        std::mem::replace(&mut self.pending, false)
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

impl Default for LogSchema {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a leading `timestamp_ns` equal to the line's is left out of what is stored.
    #[test]
    fn the_stored_form_leaves_out_only_the_lines_own_leading_timestamp() {
        let cases: [(&[u8], i64, &[u8]); 7] = [
            (br#"{"timestamp_ns":17,"message":"m"}"#, 17, br#"{"message":"m"}"#),
            (br#"{"timestamp_ns":-17,"message":"m"}"#, -17, br#"{"message":"m"}"#),
            (br#"{"timestamp_ns":17,"message":"m"}"#, 18, br#"{"timestamp_ns":17,"message":"m"}"#),
            (br#"{"message":"m","timestamp_ns":17}"#, 17, br#"{"message":"m","timestamp_ns":17}"#),
            (br#"{"timestamp_ns":17}"#, 17, br#"{"timestamp_ns":17}"#),
            (br#"{"timestamp_ns":1e3,"message":"m"}"#, 1000, br#"{"timestamp_ns":1e3,"message":"m"}"#),
            (b"", 0, b""),
        ];
        for (raw, timestamp_ns, stored) in cases {
            assert_eq!(&*stored_form(raw, timestamp_ns), stored, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn trace_ids_are_indexed_by_their_low_64_bits() {
        let mut tokenizer = TraceIdTokenizer::default();
        // 0xa3ce929d0e0e4736 in six-bit digits from the top: 1010 001111 001110 100100 101001
        // 110100 001110 000011 100100 011100 110110, or 10 15 14 36 41 52 14 3 36 28 54.
        for (id, token) in [
            ("4bf92f3577b34da6a3ce929d0e0e4736", "KPOkp0ODkc2"),
            ("4BF92F3577B34DA6A3CE929D0E0E4736", "KPOkp0ODkc2"),
            ("A3CE929D0E0E4736", "KPOkp0ODkc2"),
            ("0000000000000000", "AAAAAAAAAAA"),
            ("ffffffffffffffffffffffffffffffff", "P__________"),
            ("Req-7F3A", "Req-7F3A"),
            ("4bf92f3577b34da6a3ce929d0e0e473g", "4bf92f3577b34da6a3ce929d0e0e473g"),
            ("", ""),
        ] {
            let mut stream = tokenizer.token_stream(id);
            assert!(stream.advance());
            assert_eq!(stream.token().text, token);
            assert_eq!((stream.token().position, stream.token().offset_to), (0, id.len()));
            assert!(!stream.advance(), "one token");
        }
    }
}
