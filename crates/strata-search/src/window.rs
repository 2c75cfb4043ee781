//! A query restricted to a window of event time, decided segment by segment.
//!
//! A range query on the timestamp's fast field scans the column of every segment for the rows in
//! range, even where the other clauses match a handful of documents, and even in segments whose
//! lines all lie inside the window (or all outside it). Segments are written in about the order of
//! time, so most are one or the other: such a segment is searched without the range, or not at
//! all, and only a segment that straddles an edge of the window pays for the range. There, a
//! query that matches few documents (a rare term) checks the time of each match instead of
//! scanning the column for the window.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::{LazyLock, Mutex};

use tantivy::columnar::Column;
use tantivy::index::SegmentId;
use tantivy::query::{
    BooleanQuery, ConstScoreQuery, EmptyScorer, EnableScoring, Explanation, Occur, Query, RangeQuery, Scorer, Weight,
};
use tantivy::schema::Field;
use tantivy::{DocId, DocSet, Score, SegmentReader, TERMINATED, Term};

/// In a segment that straddles an edge of the window, a query expected to match fewer than one
/// document in this many checks the time of each match; a denser one scans the column for the
/// window's documents and intersects.
const SPARSE_RATIO: u32 = 64;

/// Segments whose time span is remembered; past it the cache starts again. A segment never
/// changes, so a remembered span stays true until the segment is merged away.
const SPANS_MAX: usize = 4096;

/// The oldest and newest event time in a segment; `None` for a segment without lines.
type Span = Option<(i64, i64)>;

/// The span of each segment seen, by segment id (unique in the process).
static SPANS: LazyLock<Mutex<HashMap<SegmentId, Span>>> = LazyLock::new(Default::default);

/// The span of the segment `reader` reads.
fn span(reader: &SegmentReader, field_name: &str) -> tantivy::Result<Span> {
    let id = reader.segment_id();
    if let Some(span) = SPANS.lock().expect("spans lock").get(&id) {
        return Ok(*span);
    }
    // A segment whose timestamps cannot be read is an error of the search, not a segment
    // without lines.
    let span = if reader.num_docs() == 0 {
        None
    } else {
        let column = reader.fast_fields().i64(field_name)?;
        Some((column.min_value(), column.max_value()))
    };
    let mut spans = SPANS.lock().expect("spans lock");
    if spans.len() >= SPANS_MAX {
        spans.clear();
    }
    spans.insert(id, span);
    Ok(span)
}

/// The newest event time among the lines `searcher` sees, from its segments' spans; `None` when
/// it has no line, or a segment's times cannot be read.
pub(crate) fn newest(searcher: &tantivy::Searcher, field_name: &str) -> Option<i64> {
    let mut newest = None;
    for reader in searcher.segment_readers() {
        if let Some((_, max)) = span(reader, field_name).ok()? {
            newest = newest.max(Some(max));
        }
    }
    newest
}

/// `inner` for documents whose `field` (an indexed, fast i64) lies in `[from, to)`. It scores as
/// `inner` does, so a relevance order is the same in every segment.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    inner: Box<dyn Query>,
    field: Field,
    from: i64,
    to: i64,
}

impl TimeWindow {
    pub(crate) fn new(inner: Box<dyn Query>, field: Field, from: i64, to: i64) -> TimeWindow {
        TimeWindow { inner, field, from, to }
    }
}

impl Clone for TimeWindow {
    fn clone(&self) -> TimeWindow {
        TimeWindow { inner: self.inner.box_clone(), ..*self }
    }
}

impl Query for TimeWindow {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        let range: Box<dyn Query> = Box::new(ConstScoreQuery::new(
            Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_i64(self.field, self.from)),
                Bound::Excluded(Term::from_field_i64(self.field, self.to)),
            )),
            0.0,
        ));
        let ranged = BooleanQuery::new(vec![(Occur::Must, self.inner.box_clone()), (Occur::Must, range)]);
        let field_name = scoring.schema().get_field_name(self.field).to_string();
        Ok(Box::new(TimeWindowWeight {
            inner: self.inner.weight(scoring)?,
            ranged: ranged.weight(scoring)?,
            field_name,
            from: self.from,
            to: self.to,
        }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        self.inner.query_terms(visitor);
    }
}

struct TimeWindowWeight {
    inner: Box<dyn Weight>,
    ranged: Box<dyn Weight>,
    field_name: String,
    from: i64,
    to: i64,
}

/// How one segment is searched.
enum Plan {
    /// No line of the segment is in the window.
    Skip,
    /// Every line of the segment is: the query alone, with its own fast paths.
    Inner,
    /// The segment straddles an edge and the query is dense: intersected with the range.
    Ranged,
    /// The segment straddles an edge and the query is sparse: each match's time checked.
    Filtered(Box<dyn Scorer>),
}

impl TimeWindowWeight {
    fn plan(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Plan> {
        let (min, max) = match span(reader, &self.field_name)? {
            None => return Ok(Plan::Skip),
            Some(span) => span,
        };
        if max < self.from || min >= self.to {
            return Ok(Plan::Skip);
        }
        if min >= self.from && max < self.to {
            return Ok(Plan::Inner);
        }
        let inner = self.inner.scorer(reader, boost)?;
        if inner.size_hint().saturating_mul(SPARSE_RATIO) >= reader.max_doc() {
            return Ok(Plan::Ranged);
        }
        let times = reader.fast_fields().i64(&self.field_name)?;
        Ok(Plan::Filtered(Box::new(InWindow::new(inner, times, self.from, self.to))))
    }
}

impl Weight for TimeWindowWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        match self.plan(reader, boost)? {
            Plan::Skip => Ok(Box::new(EmptyScorer)),
            Plan::Inner => self.inner.scorer(reader, boost),
            Plan::Ranged => self.ranged.scorer(reader, boost),
            Plan::Filtered(scorer) => Ok(scorer),
        }
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        self.ranged.explain(reader, doc)
    }

    // The methods below hand a whole segment to the chosen weight, so that a segment inside the
    // window keeps the query's own block-at-a-time paths.

    fn count(&self, reader: &SegmentReader) -> tantivy::Result<u32> {
        match self.plan(reader, 1.0)? {
            Plan::Skip => Ok(0),
            Plan::Inner => self.inner.count(reader),
            Plan::Ranged => self.ranged.count(reader),
            Plan::Filtered(mut scorer) => Ok(match reader.alive_bitset() {
                Some(alive) => scorer.count(alive),
                None => scorer.count_including_deleted(),
            }),
        }
    }

    fn for_each(&self, reader: &SegmentReader, callback: &mut dyn FnMut(DocId, Score)) -> tantivy::Result<()> {
        match self.plan(reader, 1.0)? {
            Plan::Skip => Ok(()),
            Plan::Inner => self.inner.for_each(reader, callback),
            Plan::Ranged => self.ranged.for_each(reader, callback),
            Plan::Filtered(mut scorer) => {
                let mut doc = scorer.doc();
                while doc != TERMINATED {
                    callback(doc, scorer.score());
                    doc = scorer.advance();
                }
                Ok(())
            }
        }
    }

    fn for_each_no_score(&self, reader: &SegmentReader, callback: &mut dyn FnMut(&[DocId])) -> tantivy::Result<()> {
        match self.plan(reader, 1.0)? {
            Plan::Skip => Ok(()),
            Plan::Inner => self.inner.for_each_no_score(reader, callback),
            Plan::Ranged => self.ranged.for_each_no_score(reader, callback),
            Plan::Filtered(mut scorer) => {
                let mut buffer = Vec::with_capacity(64);
                let mut doc = scorer.doc();
                while doc != TERMINATED {
                    buffer.push(doc);
                    if buffer.len() == buffer.capacity() {
                        callback(&buffer);
                        buffer.clear();
                    }
                    doc = scorer.advance();
                }
                if !buffer.is_empty() {
                    callback(&buffer);
                }
                Ok(())
            }
        }
    }

    fn for_each_pruning(
        &self,
        threshold: Score,
        reader: &SegmentReader,
        callback: &mut dyn FnMut(DocId, Score) -> Score,
    ) -> tantivy::Result<()> {
        match self.plan(reader, 1.0)? {
            Plan::Skip => Ok(()),
            Plan::Inner => self.inner.for_each_pruning(threshold, reader, callback),
            Plan::Ranged => self.ranged.for_each_pruning(threshold, reader, callback),
            Plan::Filtered(mut scorer) => {
                let mut threshold = threshold;
                let mut doc = scorer.doc();
                while doc != TERMINATED {
                    let score = scorer.score();
                    if score > threshold {
                        threshold = callback(doc, score);
                    }
                    doc = scorer.advance();
                }
                Ok(())
            }
        }
    }
}

/// The documents of `inner` whose time lies in `[from, to)`, by the time of each.
struct InWindow {
    inner: Box<dyn Scorer>,
    times: Column<i64>,
    from: i64,
    to: i64,
}

impl InWindow {
    fn new(inner: Box<dyn Scorer>, times: Column<i64>, from: i64, to: i64) -> InWindow {
        let mut s = InWindow { inner, times, from, to };
        s.skip_outside();
        s
    }

    fn inside(&self, doc: DocId) -> bool {
        self.times.first(doc).is_some_and(|t| t >= self.from && t < self.to)
    }

    /// Moves on from the current document to the first one inside the window.
    fn skip_outside(&mut self) -> DocId {
        let mut doc = self.inner.doc();
        while doc != TERMINATED && !self.inside(doc) {
            doc = self.inner.advance();
        }
        doc
    }
}

impl DocSet for InWindow {
    fn advance(&mut self) -> DocId {
        self.inner.advance();
        self.skip_outside()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        self.inner.seek(target);
        self.skip_outside()
    }

    fn doc(&self) -> DocId {
        self.inner.doc()
    }

    fn size_hint(&self) -> u32 {
        self.inner.size_hint()
    }
}

impl Scorer for InWindow {
    fn score(&mut self) -> Score {
        self.inner.score()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use tantivy::collector::{DocSetCollector, TopDocs};
    use tantivy::query::TermQuery;
    use tantivy::schema::{FAST, INDEXED, IndexRecordOption, STRING, Schema};
    use tantivy::{DocAddress, Index, TantivyDocument};

    use super::*;

    /// The same documents as the plain intersection with a range query, in segments inside,
    /// outside and across the window's edges, for a rare and a common term.
    #[test]
    fn a_window_finds_what_a_range_query_finds() {
        let mut b = Schema::builder();
        let ts = b.add_i64_field("timestamp", INDEXED | FAST);
        let word = b.add_text_field("word", STRING);
        let index = Index::create_in_ram(b.build());
        let mut writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
        // Five segments of 1,000 lines, each 1,000 ticks later than the last; "rare" every 97th.
        for segment in 0..5i64 {
            for i in 0..1000i64 {
                let t = segment * 1000 + i;
                let mut d = TantivyDocument::new();
                d.add_i64(ts, t);
                d.add_text(word, if t % 97 == 0 { "rare" } else { "common" });
                writer.add_document(d).unwrap();
            }
            writer.commit().unwrap();
        }
        let searcher = index.reader().unwrap().searcher();
        assert_eq!(searcher.segment_readers().len(), 5);
        let found = |q: &dyn Query| -> HashSet<DocAddress> { searcher.search(q, &DocSetCollector).unwrap() };
        for w in ["rare", "common"] {
            let term: Box<dyn Query> =
                Box::new(TermQuery::new(Term::from_field_text(word, w), IndexRecordOption::Basic));
            for (from, to) in [(0, 5000), (1000, 2000), (1500, 3500), (999, 1001), (4990, 9000), (6000, 7000), (-5, 0)]
            {
                let ranged = BooleanQuery::new(vec![
                    (Occur::Must, term.box_clone()),
                    (
                        Occur::Must,
                        Box::new(RangeQuery::new(
                            Bound::Included(Term::from_field_i64(ts, from)),
                            Bound::Excluded(Term::from_field_i64(ts, to)),
                        )),
                    ),
                ]);
                let window = TimeWindow::new(term.box_clone(), ts, from, to);
                let expected = found(&ranged);
                assert_eq!(found(&window), expected, "{w} in [{from}, {to})");
                assert_eq!(window.count(&searcher).unwrap(), expected.len(), "count of {w} in [{from}, {to})");
                let top = searcher.search(&window, &TopDocs::with_limit(10_000).order_by_score()).unwrap();
                let top: HashSet<DocAddress> = top.into_iter().map(|(_, a)| a).collect();
                assert_eq!(top, expected, "top docs of {w} in [{from}, {to})");
                let in_range = (from.max(0)..to.min(5000)).filter(|t| (t % 97 == 0) == (w == "rare")).count();
                assert_eq!(expected.len(), in_range, "{w} in [{from}, {to})");
            }
        }
    }
}
