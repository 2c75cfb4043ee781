//! Searching the day indexes: query parsing, filters, newest-first pages with exact cursors,
//! relevance pages, highlights, and histograms of matching lines over time.

use std::cmp::Reverse;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use strata_model::{LogLine, TenantId, format_rfc3339_nanos};
use tantivy::collector::{Collector, SegmentCollector, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, ConstScoreQuery, Occur, Query, QueryParser, TermQuery, TermSetQuery};
use tantivy::query_grammar::{Delimiter, Occur as UserOccur, UserInputAst, UserInputBound, UserInputLeaf};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::snippet::{Snippet, SnippetGenerator, collapse_overlapped_ranges};
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader, TantivyDocument, Term};
use time::Date;

use crate::index::{DayIndex, Indexes, day_of};
use crate::keys::{KeyColumns, LineKey};
use crate::schema::LogSchema;
use crate::window::TimeWindow;
use crate::{Error, Result};

/// Leaves one query may have.
pub const QUERY_TERMS_MAX: usize = 64;

/// How deep a query's parentheses may nest. The grammar and the rewrite recurse once a level,
/// and a query of a few thousand levels overflowed the stack of the thread parsing it, which
/// aborts the whole process.
pub const QUERY_DEPTH_MAX: usize = 32;
/// Length of one wildcard or regex pattern.
pub const PATTERN_BYTES_MAX: usize = 256;

/// The deepest a relevance order pages: its pages come from the best this many hits. Ranking
/// deeper keeps every better hit in memory first (a cursor a billion hits deep asked for 80 GB);
/// Elasticsearch's `index.max_result_window` is the same 10,000. Newest-first cursors go anywhere.
pub const RELEVANCE_HITS_MAX: usize = 10_000;

/// How hits are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Newest,
    Relevance,
}

/// A position in a result list to continue from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// Newest first: the (timestamp, partition, offset) of the last hit returned.
    After { timestamp_ns: i64, partition: u64, offset: u64 },
    /// Relevance: hits already returned.
    Skip(usize),
}

impl Cursor {
    pub fn encode(&self) -> String {
        match self {
            Cursor::After { timestamp_ns, partition, offset } => format!("t{timestamp_ns}.{partition}.{offset}"),
            Cursor::Skip(n) => format!("r{n}"),
        }
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        if let Some(rest) = s.strip_prefix('t') {
            let mut it = rest.split('.');
            let c = Cursor::After {
                timestamp_ns: it.next()?.parse().ok()?,
                partition: it.next()?.parse().ok()?,
                offset: it.next()?.parse().ok()?,
            };
            return it.next().is_none().then_some(c);
        }
        s.strip_prefix('r')?.parse().ok().map(Cursor::Skip)
    }
}

/// A validated search.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub q: String,
    pub source_ids: Vec<String>,
    pub run_id: Option<String>,
    pub levels: Vec<String>,
    /// Inclusive start, Unix ns.
    pub from_ns: i64,
    /// Exclusive end, Unix ns.
    pub to_ns: i64,
    pub limit: usize,
    pub sort: Sort,
    pub cursor: Option<Cursor>,
}

/// One matching line: its time in RFC 3339, the members of the line as stored (a `LogLine`'s
/// JSON object, written through as they are: parsing each hit into a `LogLine` and writing it
/// out again cost a search of a rare term a fifth of its time), and a highlight.
#[derive(Debug, Clone)]
pub struct Hit {
    pub timestamp_ns: i64,
    /// The message with matching terms in `<b>`, HTML-escaped; absent when no term matched it.
    pub highlight: Option<String>,
    pub key: LineKey,
    /// The stored line, a JSON object (checked when the hit was made).
    line: Box<str>,
    /// Where the message's JSON string is in `line`.
    message: Range<usize>,
}

/// The members of a stored line, in order; its keys are `LogLine`'s field names, which need no
/// escaping, so they are borrowed.
struct Members<'a>(Vec<(&'a str, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Members<'de>, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a log line's JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Members<'de>, A::Error> {
                let mut members = Vec::with_capacity(10);
                while let Some(member) = map.next_entry::<&'de str, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Visit)
    }
}

impl Hit {
    /// The hit for a line stored as `stored` (a `LogLine`'s JSON object), with key `key` when it
    /// is known. A line stored without its timestamp, as a day index stores it, takes the key's.
    /// A line stored with members a `LogLine` does not have, that still decodes as one, is
    /// written in `LogLine`'s form first.
    pub fn from_stored(stored: &[u8], key: Option<LineKey>) -> std::result::Result<Hit, String> {
        Hit::from_members(stored, key).or_else(|e| {
            let mut value: serde_json::Value = serde_json::from_slice(stored).map_err(|_| e.clone())?;
            if let (Some(object), Some((timestamp_ns, _, _))) = (value.as_object_mut(), key) {
                object.entry("timestamp_ns").or_insert(timestamp_ns.into());
            }
            let line = LogLine::deserialize(value).map_err(|_| e)?;
            let mut written = Vec::with_capacity(stored.len());
            line.write_stored(&mut written);
            Hit::from_members(&written, key)
        })
    }

    fn from_members(stored: &[u8], key: Option<LineKey>) -> std::result::Result<Hit, String> {
        let line = std::str::from_utf8(stored).map_err(|e| e.to_string())?;
        let (mut timestamp_ns, mut message) = (None, None);
        let members: Members = serde_json::from_str(line).map_err(|e| e.to_string())?;
        for (name, value) in members.0 {
            match name {
                "timestamp_ns" => {
                    timestamp_ns = Some(serde_json::from_str::<i64>(value.get()).map_err(|e| e.to_string())?)
                }
                "message" => {
                    if !value.get().starts_with('"') {
                        return Err("message is not a string".into());
                    }
                    let start = value.get().as_ptr() as usize - line.as_ptr() as usize;
                    message = Some(start..start + value.get().len());
                }
                "source_id" | "level" | "run_id" | "trace_id" | "service" | "host" | "attributes" => {}
                other => return Err(format!("{other:?} is not a field of a log line")),
            }
        }
        let timestamp_ns = timestamp_ns.or(key.map(|k| k.0)).ok_or("no timestamp_ns")?;
        let message = message.ok_or("no message")?;
        Ok(Hit { timestamp_ns, highlight: None, key: key.unwrap_or((timestamp_ns, 0, 0)), line: line.into(), message })
    }

    /// The line's message.
    pub fn message(&self) -> String {
        serde_json::from_str(&self.line[self.message.clone()]).unwrap_or_default()
    }
}

impl Serialize for Hit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeMap};
        let members: Members = serde_json::from_str(&self.line).map_err(S::Error::custom)?;
        let mut map = s.serialize_map(Some(members.0.len() + 2))?;
        map.serialize_entry("timestamp", &format_rfc3339_nanos(self.timestamp_ns))?;
        // A line stored without its timestamp gets it where a line stored whole has it.
        if !members.0.iter().any(|(name, _)| *name == "timestamp_ns") {
            map.serialize_entry("timestamp_ns", &self.timestamp_ns)?;
        }
        for (name, value) in members.0 {
            map.serialize_entry(name, value)?;
        }
        if let Some(highlight) = &self.highlight {
            map.serialize_entry("highlight", highlight)?;
        }
        map.end()
    }
}

/// The answer to a search.
#[derive(Debug, Clone, Serialize)]
pub struct SearchResponse {
    pub hits: Vec<Hit>,
    pub next_cursor: Option<String>,
    pub took_ms: u64,
    /// Day indexes that could not be searched, with why; the hits come from the others.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// Parses a Lucene-like query string. Bare wildcards (`time*`) search the message.
pub fn parse_user_query(q: &str) -> Result<UserInputAst> {
    if q.trim().is_empty() {
        return Ok(UserInputAst::Leaf(Box::new(UserInputLeaf::All)));
    }
    let words = words(q);
    nesting(&words)?;
    dangling_operator(&words)?;
    let ast = match tantivy::query_grammar::parse_query(q) {
        Ok(ast) => ast,
        Err(_) => {
            let (_, errors) = tantivy::query_grammar::parse_query_lenient(q);
            let (pos, reason) = errors
                .first()
                .map(|e| (e.pos, e.message.clone()))
                .unwrap_or((0, "the query does not parse; quote text that holds ( ) : \" or operators".to_string()));
            return Err(Error::Query { position: pos, reason });
        }
    };
    let mut leaves = 0;
    let ast = rewrite(ast, &mut leaves)?;
    if leaves > QUERY_TERMS_MAX {
        return Err(Error::Query {
            position: 0,
            reason: format!("{leaves} terms, more than the limit of {QUERY_TERMS_MAX}"),
        });
    }
    Ok(ast)
}

/// The words of a query outside quotes, with their byte positions, and each parenthesis outside
/// quotes as a word of its own: what the checks before the grammar look at. A character after a
/// backslash is part of its word (`a\(` is one word, as the grammar reads it).
fn words(q: &str) -> Vec<(usize, &str)> {
    let mut words = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, None);
    for (i, c) in q.char_indices().chain(std::iter::once((q.len(), ' '))) {
        let plain = !escaped;
        escaped = plain && c == '\\';
        if plain && c == '"' {
            quoted = !quoted;
        }
        let paren = plain && !quoted && (c == '(' || c == ')');
        let boundary = paren || (plain && !quoted && c.is_whitespace());
        match (start, boundary) {
            (None, false) => start = Some(i),
            (Some(s), true) => {
                words.push((s, &q[s..i]));
                start = None;
            }
            _ => {}
        }
        if paren {
            words.push((i, &q[i..i + 1]));
        }
    }
    words
}

/// Refuses parentheses nested deeper than `QUERY_DEPTH_MAX`, and more `NOT`s than
/// `QUERY_TERMS_MAX` (a chain of them recurses as parentheses do), naming where.
fn nesting(words: &[(usize, &str)]) -> Result<()> {
    let (mut depth, mut nots) = (0usize, 0usize);
    for &(pos, w) in words {
        match w {
            "(" => {
                depth += 1;
                if depth > QUERY_DEPTH_MAX {
                    return Err(Error::Query {
                        position: pos,
                        reason: format!("parentheses nest deeper than the limit of {QUERY_DEPTH_MAX}"),
                    });
                }
            }
            ")" => depth = depth.saturating_sub(1),
            "NOT" => {
                nots += 1;
                if nots > QUERY_TERMS_MAX {
                    return Err(Error::Query {
                        position: pos,
                        reason: format!("more than {QUERY_TERMS_MAX} NOT operators"),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// An operator with nothing on one side (`error AND`, `OR disk`) is the commonest slip; the
/// grammar's own error for it points at the start of the query, so name it here instead.
fn dangling_operator(words: &[(usize, &str)]) -> Result<()> {
    let is_op = |w: &str| matches!(w, "AND" | "OR" | "NOT" | "&&" | "||");
    let binary = |w: &str| matches!(w, "AND" | "OR" | "&&" | "||");
    for (k, &(pos, w)) in words.iter().enumerate() {
        let before = k.checked_sub(1).map(|j| words[j].1);
        let after = words.get(k + 1).map(|&(_, w)| w);
        if is_op(w) && matches!(after, None | Some(")")) {
            return Err(Error::Query {
                position: pos,
                reason: format!("{w} at the end of the query: a term must follow it"),
            });
        }
        if binary(w) && matches!(before, None | Some("(")) {
            return Err(Error::Query {
                position: pos,
                reason: format!("{w} at the start of the query: a term must come before it"),
            });
        }
        if binary(w) && after.is_some_and(binary) {
            return Err(Error::Query { position: pos, reason: format!("{w} is followed by another operator") });
        }
    }
    Ok(())
}

fn rewrite(ast: UserInputAst, leaves: &mut usize) -> Result<UserInputAst> {
    Ok(match ast {
        UserInputAst::Clause(clauses) => {
            let mut clauses: Vec<(Option<UserOccur>, UserInputAst)> =
                clauses.into_iter().map(|(o, a)| rewrite(a, leaves).map(|a| (o, a))).collect::<Result<_>>()?;
            // `NOT disk` alone means every line without "disk", as in Lucene-based tools.
            if !clauses.is_empty() && clauses.iter().all(|(o, _)| *o == Some(UserOccur::MustNot)) {
                clauses.push((Some(UserOccur::Must), UserInputAst::Leaf(Box::new(UserInputLeaf::All))));
            }
            UserInputAst::Clause(clauses)
        }
        UserInputAst::Boost(a, b) => UserInputAst::Boost(Box::new(rewrite(*a, leaves)?), b),
        UserInputAst::Leaf(leaf) => {
            *leaves += 1;
            UserInputAst::Leaf(Box::new(rewrite_leaf(*leaf)?))
        }
    })
}

fn too_long(pattern: &str) -> Result<()> {
    if pattern.len() > PATTERN_BYTES_MAX {
        return Err(Error::Query {
            position: 0,
            reason: format!("pattern of {} bytes, more than the limit of {PATTERN_BYTES_MAX}", pattern.len()),
        });
    }
    Ok(())
}

/// Wildcard terms (`time*`, `ti?e`) become regex queries on their field, the message by default.
/// The message is indexed lowercased, so its patterns are lowercased too; other fields are exact.
/// An exact timestamp becomes a range of one value.
fn rewrite_leaf(leaf: UserInputLeaf) -> Result<UserInputLeaf> {
    match leaf {
        // The timestamp is a fast field, not indexed: an exact time is the range of that time.
        UserInputLeaf::Literal(lit) if lit.field_name.as_deref() == Some("timestamp") => Ok(UserInputLeaf::Range {
            field: lit.field_name,
            lower: UserInputBound::Inclusive(lit.phrase.clone()),
            upper: UserInputBound::Inclusive(lit.phrase),
        }),
        UserInputLeaf::Literal(lit)
            if lit.delimiter == Delimiter::None && (lit.phrase.contains('*') || lit.phrase.contains('?')) =>
        {
            too_long(&lit.phrase)?;
            let field = lit.field_name.unwrap_or_else(|| "message".to_string());
            if field.starts_with("attributes") {
                return Err(Error::Query { position: 0, reason: format!("wildcards are not supported in {field}") });
            }
            let text = if field == "message" { lit.phrase.to_lowercase() } else { lit.phrase };
            let mut pattern = String::with_capacity(text.len() + 8);
            for c in text.chars() {
                match c {
                    '*' => pattern.push_str(".*"),
                    '?' => pattern.push('.'),
                    c if c.is_alphanumeric() || c == '_' => pattern.push(c),
                    c => {
                        pattern.push('\\');
                        pattern.push(c);
                    }
                }
            }
            Ok(UserInputLeaf::Regex { field: Some(field), pattern })
        }
        UserInputLeaf::Regex { field, pattern } => {
            too_long(&pattern)?;
            let (field, pattern) = match field {
                None => (Some("message".to_string()), pattern.to_lowercase()),
                Some(f) if f == "message" => (Some(f), pattern.to_lowercase()),
                Some(f) => (Some(f), pattern),
            };
            Ok(UserInputLeaf::Regex { field, pattern })
        }
        other => Ok(other),
    }
}

/// What a term without a field searches: the message and every keyword field, so `error` finds a
/// line whose level is `error` and `web-1` one whose source is `web-1`. Attributes are searched
/// only by name (`attributes.user_id:42`).
pub fn default_fields(schema: &LogSchema) -> Vec<tantivy::schema::Field> {
    vec![schema.message, schema.level, schema.source_id, schema.service, schema.host, schema.run_id, schema.trace_id]
}

/// The full query for one day index: the user's query and the filters.
fn build_query(
    day: &DayIndex,
    schema: &LogSchema,
    ast: &UserInputAst,
    req: &SearchRequest,
    (from_ns, to_ns): (i64, i64),
) -> Result<Box<dyn Query>> {
    let mut parser = QueryParser::for_index(&day.index, default_fields(schema));
    parser.set_conjunction_by_default();
    parser.allow_regexes();
    let user = parser
        .build_query_from_user_input_ast(ast.clone())
        .map_err(|e| Error::Query { position: 0, reason: e.to_string() })?;
    Ok(with_filters(user, schema, &req.source_ids, &req.levels, req.run_id.as_deref(), Some((from_ns, to_ns))))
}

/// The user's query restricted to sources, levels, a run and a time range `[from, to)`: what
/// search, histogram and tail all apply.
pub(crate) fn with_filters(
    user: Box<dyn Query>,
    schema: &LogSchema,
    source_ids: &[String],
    levels: &[String],
    run_id: Option<&str>,
    range: Option<(i64, i64)>,
) -> Box<dyn Query> {
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, user)];
    if !source_ids.is_empty() {
        clauses.push((Occur::Must, any_of(source_ids.iter().map(|s| Term::from_field_text(schema.source_id, s)))));
    }
    if !levels.is_empty() {
        let terms = levels.iter().map(|s| Term::from_field_text(schema.level, &s.to_ascii_lowercase()));
        clauses.push((Occur::Must, any_of(terms)));
    }
    if let Some(run) = run_id {
        clauses.push((Occur::Must, any_of([Term::from_field_text(schema.run_id, run)])));
    }
    let query: Box<dyn Query> = Box::new(BooleanQuery::new(clauses));
    match range {
        Some((from_ns, to_ns)) => Box::new(TimeWindow::new(query, schema.timestamp, from_ns, to_ns)),
        None => query,
    }
}

/// Values of one filter united by a union of posting lists up to this many; past it, by one pass
/// over the field's term dictionary.
const FILTER_TERMS_AS_POSTINGS_MAX: usize = 64;

/// A filter: documents with any of `terms` (all of one field), scored 0 so that a filter never
/// changes a relevance order. A few values are read as posting lists, which an intersection with
/// the user's query skips through; a `TermSetQuery` would walk the field's whole term dictionary
/// and fill a bitset of every document per segment, which made a filtered query dearer than the
/// same query without the filter.
fn any_of(terms: impl IntoIterator<Item = Term>) -> Box<dyn Query> {
    let terms: Vec<Term> = terms.into_iter().collect();
    let query: Box<dyn Query> = match terms.len() {
        1 => Box::new(TermQuery::new(terms.into_iter().next().expect("one"), IndexRecordOption::Basic)),
        n if n <= FILTER_TERMS_AS_POSTINGS_MAX => Box::new(BooleanQuery::new(
            terms
                .into_iter()
                .map(|t| (Occur::Should, Box::new(TermQuery::new(t, IndexRecordOption::Basic)) as Box<dyn Query>))
                .collect(),
        )),
        _ => Box::new(TermSetQuery::new(terms)),
    };
    Box::new(ConstScoreQuery::new(query, 0.0))
}

const DAY_NS: i64 = 86_400 * 1_000_000_000;
/// The first window a newest-first search looks at, back from the end of its range.
const FIRST_WINDOW_NS: i64 = 60 * 1_000_000_000;

fn day_start_ns(day: Date) -> i64 {
    day.midnight().assume_utc().unix_timestamp_nanos() as i64
}

/// A day's index for reading; one that fails to open is noted in `errors` and skipped.
fn open_day(indexes: &Indexes, tenant: &TenantId, day: Date, errors: &mut Vec<String>) -> Option<Arc<DayIndex>> {
    match indexes.open(tenant, day, false) {
        Ok(d) => d,
        Err(e) => {
            errors.push(e.to_string());
            None
        }
    }
}

/// The days a time range touches, newest first, among those that have an index.
fn days_in_range(indexes: &Indexes, tenant: &TenantId, from_ns: i64, to_ns: i64) -> Vec<Date> {
    let (first, last) = (day_of(from_ns), day_of(to_ns.saturating_sub(1)));
    let mut days: Vec<Date> = indexes.days(tenant).into_iter().filter(|d| *d >= first && *d <= last).collect();
    days.reverse();
    days
}

/// Runs a search over the tenant's day indexes that the time range touches.
pub fn search(indexes: &Indexes, tenant: &TenantId, req: &SearchRequest, deadline: Instant) -> Result<SearchResponse> {
    let started = Instant::now();
    let ast = parse_user_query(&req.q)?;
    let schema = indexes.schema().clone();
    let mut errors = Vec::new();
    // (key or score, day index, address)
    let mut found: Vec<(LineKey, Arc<DayIndex>, DocAddress)> = Vec::new();
    let mut scored: Vec<(Score, Arc<DayIndex>, DocAddress)> = Vec::new();
    let skip = match req.cursor {
        Some(Cursor::Skip(n)) => n,
        _ => 0,
    };
    if req.sort == Sort::Relevance && skip >= RELEVANCE_HITS_MAX {
        return Err(Error::Request(format!(
            "a relevance order pages through its best {RELEVANCE_HITS_MAX} hits, and this cursor is {skip} deep: \
             narrow the query, or sort by time, whose cursors go anywhere"
        )));
    }
    // A relevance page ends at the last of the best RELEVANCE_HITS_MAX hits.
    let limit = if req.sort == Sort::Relevance { req.limit.min(RELEVANCE_HITS_MAX - skip) } else { req.limit };
    let cursor_key = match req.cursor {
        Some(Cursor::After { timestamp_ns, partition, offset }) => Some((timestamp_ns, partition, offset)),
        _ => None,
    };
    let mut queries = Vec::new();
    for day in days_in_range(indexes, tenant, req.from_ns, req.to_ns) {
        if Instant::now() > deadline {
            return Err(Error::Timeout);
        }
        if let Some((ts, _, _)) = cursor_key
            && day > day_of(ts)
        {
            continue;
        }
        let Some(d) = open_day(indexes, tenant, day, &mut errors) else { continue };
        let query = build_query(&d, &schema, &ast, req, (req.from_ns, req.to_ns))?;
        let searcher = d.reader.searcher();
        match req.sort {
            Sort::Newest => {
                // Newest first, the page is usually full long before the start of the range: search
                // windows back from the end, each four times the last, and stop once it is full.
                let day_start = day_start_ns(day);
                let start = req.from_ns.max(day_start);
                let mut hi = req.to_ns.min(day_start.saturating_add(DAY_NS));
                if let Some((ts, _, _)) = cursor_key {
                    hi = hi.min(ts.saturating_add(1));
                }
                // From the day's newest line, not the range's end: a range that ends well after it
                // (today, to midnight) searched empty windows, each four times the last, and then
                // one that held most of the day.
                if let Some(newest) = crate::window::newest(&searcher, "timestamp") {
                    hi = hi.min(newest.saturating_add(1));
                }
                let mut window = FIRST_WINDOW_NS;
                let keys: Arc<[Option<Arc<KeyColumns>>]> = d.keys.for_searcher(&searcher).into();
                while hi > start && found.len() < req.limit {
                    if Instant::now() > deadline {
                        return Err(Error::Timeout);
                    }
                    let lo = hi.saturating_sub(window).max(start);
                    let windowed = build_query(&d, &schema, &ast, req, (lo, hi))?;
                    let collector = NewestFirst {
                        limit: req.limit - found.len(),
                        before: cursor_key,
                        deadline,
                        keys: keys.clone(),
                    };
                    let keys = searcher
                        .search(&*windowed, &collector)
                        .map_err(|e| Error::Index { path: d.dir.clone(), source: e })?;
                    for (key, addr) in keys {
                        found.push((key, d.clone(), addr));
                    }
                    hi = lo;
                    window = window.saturating_mul(4);
                }
                found.sort_by_key(|(key, _, _)| Reverse(*key));
                found.truncate(req.limit);
                // Days are disjoint in time: once a page is full, older days cannot beat it.
                if found.len() >= req.limit {
                    queries.push((d, searcher, query));
                    break;
                }
            }
            Sort::Relevance => {
                let top = TopDocs::with_limit(limit + skip).order_by_score();
                let docs =
                    searcher.search(&*query, &top).map_err(|e| Error::Index { path: d.dir.clone(), source: e })?;
                for (score, addr) in docs {
                    scored.push((score, d.clone(), addr));
                }
            }
        }
        queries.push((d, searcher, query));
    }
    if Instant::now() > deadline {
        return Err(Error::Timeout);
    }
    let mut next_cursor = None;
    let selected: Vec<(Arc<DayIndex>, DocAddress, Option<LineKey>)> = match req.sort {
        Sort::Newest => {
            if found.len() == req.limit
                && let Some(&((timestamp_ns, partition, offset), _, _)) = found.last()
            {
                next_cursor = Some(Cursor::After { timestamp_ns, partition, offset }.encode());
            }
            found.into_iter().map(|(key, d, a)| (d, a, Some(key))).collect()
        }
        Sort::Relevance => {
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            let total = scored.len();
            let page: Vec<_> = scored.into_iter().skip(skip).take(limit).map(|(_, d, a)| (d, a, None)).collect();
            if total >= skip + limit && !page.is_empty() && skip + page.len() < RELEVANCE_HITS_MAX {
                next_cursor = Some(Cursor::Skip(skip + page.len()).encode());
            }
            page
        }
    };
    let mut hits = Vec::with_capacity(selected.len());
    // Per day index: the searcher its hits were found with (their addresses name its segments,
    // which a commit since may have merged away), the highlighter of its query, made once for
    // all its hits (making one looks up every query term in every segment), and for a relevance
    // page, whose hits' keys are not known yet, the key columns of its segments.
    struct DayHits {
        day: Arc<DayIndex>,
        searcher: tantivy::Searcher,
        snippets: Option<SnippetGenerator>,
        keys: Vec<Option<Arc<KeyColumns>>>,
    }
    let mut per_day: Vec<DayHits> = Vec::new();
    for (d, addr, key) in selected {
        let at = match per_day.iter().position(|p| Arc::ptr_eq(&p.day, &d)) {
            Some(i) => i,
            None => {
                let (searcher, snippets) = match queries.iter().find(|(qd, _, _)| Arc::ptr_eq(qd, &d)) {
                    Some((_, searcher, q)) => {
                        (searcher.clone(), SnippetGenerator::create(searcher, &**q, schema.message).ok())
                    }
                    None => (d.reader.searcher(), None),
                };
                let keys = if key.is_none() { d.keys.for_searcher(&searcher) } else { Vec::new() };
                per_day.push(DayHits { day: d.clone(), searcher, snippets, keys });
                per_day.len() - 1
            }
        };
        let DayHits { searcher, snippets, keys, .. } = &mut per_day[at];
        let doc: TantivyDocument = searcher.doc(addr).map_err(|e| Error::Index { path: d.dir.clone(), source: e })?;
        let raw = doc.get_first(schema.source).and_then(|v| v.as_bytes()).unwrap_or_default();
        let key = key.or_else(|| keys.get(addr.segment_ord as usize)?.as_ref().map(|c| c.key(addr.doc_id)));
        let mut hit = Hit::from_stored(raw, key)
            .map_err(|e| Error::Corrupt { path: d.dir.clone(), reason: format!("stored line does not decode: {e}") })?;
        if let Some(snippets) = snippets {
            let message = hit.message();
            snippets.set_max_num_chars(message.len().clamp(1, 512));
            let snippet = snippets.snippet(&message);
            if !snippet.highlighted().is_empty() {
                hit.highlight = Some(highlight_html(&snippet));
            }
        }
        hits.push(hit);
    }
    Ok(SearchResponse { hits, next_cursor, took_ms: started.elapsed().as_millis() as u64, errors })
}

/// `snippet.to_html()`, with its default `<b>` marks, escaping a run of plain text at a time
/// (tantivy's escaper looks each character up and writes it on its own).
fn highlight_html(snippet: &Snippet) -> String {
    let fragment = snippet.fragment();
    let mut html = String::with_capacity(fragment.len() + 32);
    let mut from = 0;
    for marked in collapse_overlapped_ranges(snippet.highlighted()) {
        escape_html(&fragment[from..marked.start], &mut html);
        html.push_str("<b>");
        escape_html(&fragment[marked.clone()], &mut html);
        html.push_str("</b>");
        from = marked.end;
    }
    escape_html(&fragment[from..], &mut html);
    html
}

/// Appends `text` with the five characters HTML gives meaning to written as entities.
fn escape_html(text: &str, out: &mut String) {
    let mut plain = 0;
    for (i, b) in text.bytes().enumerate() {
        let entity = match b {
            b'"' => "&quot;",
            b'&' => "&amp;",
            b'\'' => "&#x27;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            _ => continue,
        };
        out.push_str(&text[plain..i]);
        out.push_str(entity);
        plain = i + 1;
    }
    out.push_str(&text[plain..]);
}

/// Collects the `limit` matching documents with the largest (timestamp, partition, offset) below
/// a cursor. The key is unique per line, so a cursor continues exactly where a page ended, however
/// many lines arrive meanwhile.
struct NewestFirst {
    limit: usize,
    before: Option<LineKey>,
    deadline: Instant,
    /// The key columns of the searcher's segments, by ordinal.
    keys: Arc<[Option<Arc<KeyColumns>>]>,
}

/// The newest `limit` matches of a segment. Documents come in the order they were indexed, which
/// is about the order of time, so nearly every one is newer than those kept before it: a heap of
/// the best `limit` would replace its oldest at almost every document. Candidates are gathered
/// instead, and cut back to the newest `limit` whenever twice that are held; the oldest key kept
/// at the last cut turns away what cannot make the page, mostly by its timestamp alone.
struct NewestFirstSegment {
    limit: usize,
    before: Option<LineKey>,
    deadline: Instant,
    seen: u64,
    segment: SegmentOrdinal,
    /// `None` when the segment's columns cannot be read: its lines are left out.
    keys: Option<Arc<KeyColumns>>,
    best: Vec<(LineKey, DocId)>,
    /// The oldest key kept at the last cut: a document no newer cannot make the page.
    floor: Option<LineKey>,
}

impl NewestFirstSegment {
    /// Keeps the newest `limit` candidates.
    fn cut(&mut self) {
        if self.best.len() > self.limit {
            self.best.select_nth_unstable_by(self.limit - 1, |a, b| b.0.cmp(&a.0));
            self.best.truncate(self.limit);
            self.floor = self.best.iter().map(|(k, _)| *k).min();
        }
    }
}

impl Collector for NewestFirst {
    type Fruit = Vec<(LineKey, DocAddress)>;
    type Child = NewestFirstSegment;

    fn for_segment(&self, segment: SegmentOrdinal, _: &SegmentReader) -> tantivy::Result<NewestFirstSegment> {
        let keys = self.keys.get(segment as usize).cloned().flatten();
        Ok(NewestFirstSegment {
            limit: if keys.is_some() { self.limit } else { 0 },
            before: self.before,
            deadline: self.deadline,
            seen: 0,
            segment,
            keys,
            // Grown as needed past a first few thousand: `limit` is the caller's.
            best: Vec::with_capacity(2 * self.limit.min(4096)),
            floor: None,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<(LineKey, DocAddress)>>) -> tantivy::Result<Self::Fruit> {
        let mut all: Vec<_> = fruits.into_iter().flatten().collect();
        all.sort_by_key(|(k, _)| Reverse(*k));
        all.truncate(self.limit);
        Ok(all)
    }
}

impl SegmentCollector for NewestFirstSegment {
    type Fruit = Vec<(LineKey, DocAddress)>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.seen += 1;
        // A query past its deadline stops collecting; the caller reports the timeout.
        if self.seen.is_multiple_of(65_536) && Instant::now() > self.deadline {
            self.limit = 0;
            self.best.clear();
        }
        if self.limit == 0 {
            return;
        }
        let Some(keys) = &self.keys else { return };
        let ts = keys.timestamp(doc).unwrap_or(i64::MIN);
        if self.floor.is_some_and(|f| ts < f.0) || self.before.is_some_and(|b| ts > b.0) {
            return;
        }
        let key = keys.key_at(doc, ts);
        if self.floor.is_some_and(|f| key <= f) || self.before.is_some_and(|b| key >= b) {
            return;
        }
        self.best.push((key, doc));
        if self.best.len() >= 2 * self.limit {
            self.cut();
        }
    }

    fn harvest(mut self) -> Self::Fruit {
        self.cut();
        let segment = self.segment;
        self.best.into_iter().map(|(k, d)| (k, DocAddress::new(segment, d))).collect()
    }
}

/// Counts of matching lines per time bucket.
#[derive(Debug, Clone, Serialize)]
pub struct Histogram {
    pub interval_ms: i64,
    pub buckets: Vec<Bucket>,
    pub took_ms: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    pub start: String,
    pub start_ms: i64,
    pub count: u64,
}

/// Buckets one histogram may have.
pub const BUCKETS_MAX: i64 = 1000;

/// A bucket width that gives about 60 buckets over the range.
pub fn auto_interval_ms(from_ns: i64, to_ns: i64) -> i64 {
    const NICE: [i64; 16] = [
        1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000,
        10_800_000, 21_600_000, 86_400_000,
    ];
    let span_ms = (to_ns - from_ns).max(1) / 1_000_000;
    NICE.into_iter().find(|i| span_ms / i <= 60).unwrap_or(86_400_000)
}

pub fn histogram(
    indexes: &Indexes,
    tenant: &TenantId,
    req: &SearchRequest,
    interval_ms: i64,
    deadline: Instant,
) -> Result<Histogram> {
    let started = Instant::now();
    let ast = parse_user_query(&req.q)?;
    let schema = indexes.schema().clone();
    let interval_ns = interval_ms.saturating_mul(1_000_000);
    // Buckets align to multiples of the interval since the epoch, as Grafana and Kibana draw them.
    let first = req.from_ns.div_euclid(interval_ns) * interval_ns;
    let n = ((req.to_ns - first + interval_ns - 1) / interval_ns).max(0);
    if n > BUCKETS_MAX {
        return Err(Error::Request(format!(
            "{n} buckets, more than the limit of {BUCKETS_MAX}; use a larger interval"
        )));
    }
    let mut counts = vec![0u64; n as usize];
    let mut errors = Vec::new();
    for day in days_in_range(indexes, tenant, req.from_ns, req.to_ns) {
        if Instant::now() > deadline {
            return Err(Error::Timeout);
        }
        let Some(d) = open_day(indexes, tenant, day, &mut errors) else { continue };
        let query = build_query(&d, &schema, &ast, req, (req.from_ns, req.to_ns))?;
        let searcher = d.reader.searcher();
        let keys = d.keys.for_searcher(&searcher).into();
        let c = BucketCounter { first, interval_ns, n: n as usize, keys };
        let part = searcher.search(&*query, &c).map_err(|e| Error::Index { path: d.dir.clone(), source: e })?;
        for (a, b) in counts.iter_mut().zip(part) {
            *a += b;
        }
    }
    let buckets = counts
        .into_iter()
        .enumerate()
        .map(|(i, count)| {
            let start_ns = first + i as i64 * interval_ns;
            Bucket { start: format_rfc3339_nanos(start_ns), start_ms: start_ns / 1_000_000, count }
        })
        .collect();
    Ok(Histogram { interval_ms, buckets, took_ms: started.elapsed().as_millis() as u64, errors })
}

struct BucketCounter {
    first: i64,
    interval_ns: i64,
    n: usize,
    /// The key columns of the searcher's segments, by ordinal: the timestamp is one.
    keys: Arc<[Option<Arc<KeyColumns>>]>,
}

struct BucketCounterSegment {
    first: i64,
    interval_ns: i64,
    keys: Arc<KeyColumns>,
    counts: Vec<u64>,
}

impl Collector for BucketCounter {
    type Fruit = Vec<u64>;
    type Child = BucketCounterSegment;

    fn for_segment(&self, segment: SegmentOrdinal, _: &SegmentReader) -> tantivy::Result<BucketCounterSegment> {
        // A segment whose timestamps cannot be read fails the count rather than undercount it.
        let keys = self.keys.get(segment as usize).cloned().flatten().ok_or_else(|| {
            tantivy::TantivyError::InternalError(format!("segment {segment}: its timestamps cannot be read"))
        })?;
        Ok(BucketCounterSegment { first: self.first, interval_ns: self.interval_ns, keys, counts: vec![0; self.n] })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<u64>>) -> tantivy::Result<Vec<u64>> {
        let mut out = vec![0; self.n];
        for f in fruits {
            for (a, b) in out.iter_mut().zip(f) {
                *a += b;
            }
        }
        Ok(out)
    }
}

impl SegmentCollector for BucketCounterSegment {
    type Fruit = Vec<u64>;

    fn collect(&mut self, doc: DocId, _score: Score) {
        if let Some(ts) = self.keys.timestamp(doc) {
            let i = (ts - self.first) / self.interval_ns;
            if let Some(c) = usize::try_from(i).ok().and_then(|i| self.counts.get_mut(i)) {
                *c += 1;
            }
        }
    }

    fn harvest(self) -> Vec<u64> {
        self.counts
    }
}

/// A query for matching lines that are not in an index yet (live tail): the same parser and
/// filters, run over a small in-memory index of new lines.
pub fn build_tail_query(index: &tantivy::Index, schema: &LogSchema, ast: &UserInputAst) -> Result<Box<dyn Query>> {
    let mut parser = QueryParser::for_index(index, default_fields(schema));
    parser.set_conjunction_by_default();
    parser.allow_regexes();
    match ast {
        UserInputAst::Leaf(l) if matches!(**l, UserInputLeaf::All) => Ok(Box::new(AllQuery)),
        _ => parser
            .build_query_from_user_input_ast(ast.clone())
            .map_err(|e| Error::Query { position: 0, reason: e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(message: &str, optional: bool, attributes: bool) -> LogLine {
        let some = |s: &str| optional.then(|| s.to_string());
        LogLine {
            timestamp_ns: 1_700_000_000_123_456_789,
            source_id: "web-1".into(),
            level: "error".into(),
            message: message.into(),
            run_id: some("run-7"),
            trace_id: some("4bf92f3577b34da6a3ce929d0e0e4736"),
            service: some("checkout"),
            host: some("h\"1"),
            attributes: if attributes {
                serde_json::json!({"user": {"id": 42, "tags": ["a", "é"]}, "ok": true, "ratio": 0.5})
                    .as_object()
                    .unwrap()
                    .clone()
            } else {
                Default::default()
            },
        }
    }

    /// A hit is its time, then the stored line's members as they are, then its highlight: the
    /// same JSON a hit made from the decoded line writes.
    #[test]
    fn a_hit_writes_the_stored_line_through() {
        for message in ["plain", "quote \" back\\slash \n tab\t <b>html</b> \u{1} ünï 🚀", ""] {
            for (optional, attributes) in [(false, false), (true, false), (false, true), (true, true)] {
                let line = line(message, optional, attributes);
                let mut stored = Vec::new();
                line.write_stored(&mut stored);
                let mut hit = Hit::from_stored(&stored, Some((1, 2, 3))).unwrap();
                assert_eq!(hit.timestamp_ns, line.timestamp_ns);
                assert_eq!(hit.key, (1, 2, 3));
                assert_eq!(hit.message(), message);
                hit.highlight = Some("<b>x</b> & \"y\"".into());
                let mut expected = serde_json::Map::new();
                expected.insert("timestamp".into(), format_rfc3339_nanos(line.timestamp_ns).into());
                for (k, v) in serde_json::to_value(&line).unwrap().as_object().unwrap() {
                    expected.insert(k.clone(), v.clone());
                }
                expected.insert("highlight".into(), "<b>x</b> & \"y\"".into());
                let written = serde_json::to_string(&hit).unwrap();
                assert_eq!(
                    serde_json::from_str::<serde_json::Value>(&written).unwrap(),
                    serde_json::Value::Object(expected)
                );
                let stored = std::str::from_utf8(&stored).unwrap();
                let members = &stored[1..stored.len() - 1];
                let rfc = format_rfc3339_nanos(line.timestamp_ns);
                assert_eq!(written, format!(r#"{{"timestamp":"{rfc}",{members},"highlight":"<b>x</b> & \"y\""}}"#));
            }
        }
    }

    /// A day index stores a line without its timestamp; the hit takes it from its key and writes
    /// the same JSON as the hit of the whole line, also for a line whose extra members send it
    /// through `LogLine`.
    #[test]
    fn a_line_stored_without_its_timestamp_writes_the_same_hit() {
        let schema = LogSchema::new();
        for (optional, attributes) in [(false, false), (true, true)] {
            let line = line("quote \" and <b>", optional, attributes);
            let mut whole = Vec::new();
            line.write_stored(&mut whole);
            let doc = schema.document(&line, &whole, 2, 3);
            let stored = doc.get_first(schema.source).and_then(|v| v.as_bytes()).unwrap().to_vec();
            assert!(!String::from_utf8_lossy(&stored).contains("timestamp_ns"), "{}", String::from_utf8_lossy(&stored));
            let key = (line.timestamp_ns, 2, 3);
            let hit = Hit::from_stored(&stored, Some(key)).unwrap();
            assert_eq!((hit.timestamp_ns, hit.key), (line.timestamp_ns, key));
            let of_whole = Hit::from_stored(&whole, Some(key)).unwrap();
            assert_eq!(serde_json::to_string(&hit).unwrap(), serde_json::to_string(&of_whole).unwrap());
        }
        let extra = br#"{"extra":1,"source_id":"s","level":"info","message":"m"}"#;
        let hit = Hit::from_stored(extra, Some((5, 0, 0))).unwrap();
        assert_eq!(
            serde_json::to_string(&hit).unwrap(),
            format!(
                r#"{{"timestamp":"{}","timestamp_ns":5,"source_id":"s","level":"info","message":"m"}}"#,
                format_rfc3339_nanos(5)
            )
        );
    }

    /// Highlights are what tantivy's `to_html` writes, for text with and without characters to
    /// escape, marks next to and inside them, and more than one mark.
    #[test]
    fn highlights_are_tantivys_html() {
        let schema = LogSchema::new();
        let index = schema.index_in_ram();
        // A snippet marks only terms the index has.
        let mut writer: tantivy::IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        let mut doc = TantivyDocument::new();
        doc.add_text(schema.message, "the quick fox and the dog, amp");
        writer.add_document(doc).unwrap();
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let parser = QueryParser::for_index(&index, vec![schema.message]);
        for q in ["fox", "fox OR dog", "\"quick fox\"", "amp"] {
            let query = parser.parse_query(q).unwrap();
            let mut generator = SnippetGenerator::create(&searcher, &*query, schema.message).unwrap();
            for text in [
                "the quick fox",
                "fox<fox>&fox \"fox\" 'dog' & amp; &amp; <b>fox</b>",
                "no match at all <>&\"'",
                "ünïcödé fox 🚀 dog",
                "",
                "fox fox fox fox fox fox fox fox fox fox fox fox fox fox fox fox fox fox fox fox fox fox fox",
            ] {
                generator.set_max_num_chars(text.len().clamp(1, 512));
                let snippet = generator.snippet(text);
                if q == "fox" && text.contains("fox") {
                    assert!(!snippet.highlighted().is_empty(), "{text:?} has a mark");
                }
                assert_eq!(highlight_html(&snippet), snippet.to_html(), "{q:?} in {text:?}");
            }
        }
    }

    /// A stored line's members are written in their order; one with members a `LogLine` does
    /// not have is written in `LogLine`'s form, and one that does not decode is an error.
    #[test]
    fn a_line_stored_otherwise_is_written_as_a_log_line() {
        let rfc = format_rfc3339_nanos(5);
        let reordered = br#"{"message":"m","level":"info","timestamp_ns":5,"source_id":"s"}"#;
        let hit = Hit::from_stored(reordered, Some((5, 0, 0))).unwrap();
        assert_eq!(
            serde_json::to_string(&hit).unwrap(),
            format!(r#"{{"timestamp":"{rfc}","message":"m","level":"info","timestamp_ns":5,"source_id":"s"}}"#)
        );
        let extra = br#"{"timestamp_ns":5,"extra":[1],"source_id":"s","level":"info","message":"m"}"#;
        let hit = Hit::from_stored(extra, Some((5, 0, 0))).unwrap();
        assert_eq!(
            serde_json::to_string(&hit).unwrap(),
            format!(r#"{{"timestamp":"{rfc}","timestamp_ns":5,"source_id":"s","level":"info","message":"m"}}"#)
        );
        for bad in [
            &b"not json"[..],
            br#"{"timestamp_ns":"5","message":"m"}"#,
            br#"{"timestamp_ns":5,"message":7}"#,
            b"[1,2]",
            b"\xff",
        ] {
            assert!(Hit::from_stored(bad, Some((0, 0, 0))).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        // Without a timestamp, stored or in a key, a line is not a hit.
        assert!(Hit::from_stored(br#"{"source_id":"s","level":"info","message":"m"}"#, None).is_err());
    }

    /// The newest matches of a segment, with and without a cursor, are those a sort of every
    /// key gives, whatever the order of time the lines were indexed in.
    #[test]
    fn newest_first_keeps_the_newest_in_any_order_of_time() {
        let schema = LogSchema::new();
        // xorshift: a fixed, spread sequence.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let n = 3_000i64;
        let ascending: Vec<i64> = (0..n).collect();
        let descending: Vec<i64> = (0..n).rev().collect();
        let mut shuffled = ascending.clone();
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        // Few distinct times: the partition and offset decide.
        let ties: Vec<i64> = (0..n).map(|_| (next() % 5) as i64).collect();
        for (name, times) in
            [("ascending", ascending), ("descending", descending), ("shuffled", shuffled), ("ties", ties)]
        {
            let index = schema.index_in_ram();
            let mut writer: tantivy::IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
            let mut all = Vec::new();
            for (i, ts) in times.iter().enumerate() {
                let (partition, offset) = ((i % 3) as u64, i as u64);
                let mut doc = TantivyDocument::new();
                doc.add_i64(schema.timestamp, *ts);
                doc.add_u64(schema.partition, partition);
                doc.add_u64(schema.offset, offset);
                writer.add_document(doc).unwrap();
                all.push((*ts, partition, offset));
                // Three segments.
                if i as i64 % (n / 3) == n / 3 - 1 {
                    writer.commit().unwrap();
                }
            }
            writer.commit().unwrap();
            let searcher = index.reader().unwrap().searcher();
            let keys: Arc<[Option<Arc<KeyColumns>>]> = crate::keys::KeyCache::default().for_searcher(&searcher).into();
            all.sort_by_key(|k| Reverse(*k));
            let cursors = [None, Some(all[17]), Some(all[n as usize / 2]), Some(all[n as usize - 2])];
            for limit in [1, 7, 100, 5_000] {
                for before in cursors {
                    let collector = NewestFirst {
                        limit,
                        before,
                        deadline: Instant::now() + std::time::Duration::from_secs(60),
                        keys: keys.clone(),
                    };
                    let got: Vec<LineKey> =
                        searcher.search(&AllQuery, &collector).unwrap().into_iter().map(|(k, _)| k).collect();
                    let want: Vec<LineKey> =
                        all.iter().copied().filter(|k| before.is_none_or(|b| *k < b)).take(limit).collect();
                    assert_eq!(got, want, "{name}, limit {limit}, before {before:?}");
                }
            }
        }
    }

    #[test]
    fn cursors_round_trip() {
        for c in [Cursor::After { timestamp_ns: -5, partition: 3, offset: 99 }, Cursor::Skip(200)] {
            assert_eq!(Cursor::decode(&c.encode()), Some(c));
        }
        for bad in ["", "t1.2", "t1.2.3.4", "x", "r-1", "tA.1.1"] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn syntax_errors_have_a_position() {
        match parse_user_query("error AND (disk") {
            Err(Error::Query { position, reason }) => {
                assert!(position > 0 && !reason.is_empty(), "{position} {reason}")
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_user_query("").is_ok());
        let check = |q: &str, want_pos: usize, want: &str| match parse_user_query(q) {
            Err(Error::Query { position, reason }) => {
                assert_eq!(position, want_pos, "{q}: {reason}");
                assert!(reason.contains(want), "{q}: {reason}");
            }
            other => panic!("{q}: {other:?}"),
        };
        check("error AND", 6, "AND at the end of the query");
        check("error AND  ", 6, "AND at the end");
        check("(disk OR) AND x", 6, "OR at the end");
        check("NOT", 0, "NOT at the end");
        check("OR disk", 0, "OR at the start of the query");
        check("disk AND OR full", 5, "AND is followed by another operator");
        for fine in ["\"a AND\"", "disk AND NOT full", "NOT disk", "(a OR b) AND c", "level:error", "ANDROID"] {
            assert!(parse_user_query(fine).is_ok(), "{fine}");
        }
        let many = (0..70).map(|i| format!("t{i}")).collect::<Vec<_>>().join(" ");
        assert!(matches!(parse_user_query(&many), Err(Error::Query { .. })));
        // Nesting is bounded before the grammar recurses; quoted or escaped parentheses do not count.
        let nested = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
        assert!(parse_user_query(&nested(QUERY_DEPTH_MAX)).is_ok());
        check(&nested(QUERY_DEPTH_MAX + 1), QUERY_DEPTH_MAX, "nest deeper than the limit of 32");
        check(&nested(100_000), QUERY_DEPTH_MAX, "nest deeper than the limit of 32");
        assert!(parse_user_query(&format!("\"{}\"", "(".repeat(100))).is_ok());
        assert!(parse_user_query(&format!("a{}", "\\(".repeat(100))).is_ok());
        assert!(parse_user_query("a\\( AND b").is_ok(), "an escaped parenthesis is part of its word");
        // So is a chain of NOTs, which recurses as deep.
        let nots = |n: usize| format!("{}a", "NOT ".repeat(n));
        assert!(parse_user_query(&nots(QUERY_TERMS_MAX)).is_ok());
        check(&nots(QUERY_TERMS_MAX + 1), QUERY_TERMS_MAX * 4, "more than 64 NOT operators");
        check(&nots(100_000), QUERY_TERMS_MAX * 4, "more than 64 NOT operators");
        assert!(parse_user_query(&format!("\"{}\" a", "NOT ".repeat(100))).is_ok());
    }

    #[test]
    fn intervals_are_nice() {
        assert_eq!(auto_interval_ms(0, 3600 * 1_000_000_000), 60_000);
        assert_eq!(auto_interval_ms(0, 60 * 1_000_000_000), 1_000);
        assert_eq!(auto_interval_ms(0, 30 * 86_400 * 1_000_000_000), 86_400_000);
    }
}
