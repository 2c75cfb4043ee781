//! Phrases in the message, checked against the stored line.
//!
//! The message is indexed with its terms and their frequencies but not their positions: positions
//! were a quarter of a day index, and the whole line is stored beside it anyway. A phrase
//! (`"connection refused"`) is found as the conjunction of its terms, and each document the
//! conjunction finds is checked by tokenizing the stored line's message with the field's own
//! analyzer: the phrase holds where its terms occur at the positions the phrase gives them, moved
//! by at most `slop` positions in all (`"refused connection"~2`), the last term a prefix of a token
//! for a phrase prefix (`"connection ref"*`). These are the answers a positional index gives.
//!
//! Checking reads and decompresses a stored line, dearer than reading positions, so a
//! newest-first page does not check every candidate: it collects the newest candidates of the
//! conjunction ([`Phrases::Relaxed`]), then checks only those ([`Phrases::Among`]), and looks
//! further back only when too few of them hold. A histogram, a relevance page and live tail
//! check every candidate ([`Phrases::Exact`]).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use tantivy::index::SegmentId;
use tantivy::query::{BooleanQuery, EmptyScorer, EnableScoring, Explanation, Occur, Query, Scorer, TermQuery, Weight};
use tantivy::schema::{Field, IndexRecordOption, Value};
use tantivy::store::StoreReader;
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{DocAddress, DocId, DocSet, Score, Searcher, SegmentReader, TERMINATED, TantivyDocument, Term};

/// Blocks of stored lines a phrase's check keeps decompressed per segment: candidates come in
/// document order, so the block of the last one is usually the block of the next.
const STORE_CACHE_BLOCKS: usize = 2;

/// How a query's message phrases are searched.
#[derive(Clone, Debug)]
pub(crate) enum Phrases {
    /// Every candidate is checked.
    Exact,
    /// Not checked: a phrase matches every document with all its terms. Where a phrase is
    /// negated (`NOT "a b"`) it matches nothing instead, so that the query as a whole still
    /// finds every document the exact query finds, and more.
    Relaxed,
    /// Checked, among these documents only; a phrase matches no other document.
    Among(Arc<Candidates>),
}

/// The terms of a phrase, each with its position in the phrase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Phrase {
    terms: Vec<(usize, String)>,
    slop: u32,
    prefix: bool,
}

impl Phrase {
    /// The phrase `text` tokenized by `analyzer`; `None` below two terms, which is a term query.
    pub(crate) fn new(text: &str, slop: u32, prefix: bool, analyzer: &mut TextAnalyzer) -> Option<Phrase> {
        let mut terms = Vec::new();
        let mut stream = analyzer.token_stream(text);
        while stream.advance() {
            let token = stream.token();
            terms.push((token.position, token.text.clone()));
        }
        (terms.len() >= 2).then_some(Phrase { terms, slop, prefix })
    }

    /// The terms every match has: all of them, or all but the last for a prefix.
    fn required(&self) -> &[(usize, String)] {
        &self.terms[..self.terms.len() - usize::from(self.prefix)]
    }

    /// Whether `text`, tokenized by `analyzer`, holds the phrase. Positions are compared as a
    /// positional index compares them: each term's positions are moved back by its place in the
    /// phrase, and a match is a choice of one position per term whose neighbours differ by `slop`
    /// in all at most (0: the same position, the phrase word for word).
    pub(crate) fn holds(&self, text: &str, analyzer: &mut TextAnalyzer) -> bool {
        let last = self.terms.len() - 1;
        let mut at: Vec<Vec<i64>> = vec![Vec::new(); self.terms.len()];
        let mut stream = analyzer.token_stream(text);
        while stream.advance() {
            let token = stream.token();
            for (k, (offset, term)) in self.terms.iter().enumerate() {
                let matches =
                    if self.prefix && k == last { token.text.starts_with(term.as_str()) } else { token.text == *term };
                if matches {
                    at[k].push(token.position as i64 - *offset as i64);
                }
            }
        }
        // (moved position, slop spent so far) of the partial matches ending at each term.
        let mut reached: Vec<(i64, u64)> = at[0].iter().map(|&p| (p, 0)).collect();
        for positions in &at[1..] {
            reached = positions
                .iter()
                .filter_map(|&p| {
                    let spent = reached.iter().map(|&(q, s)| s + q.abs_diff(p)).min()?;
                    (spent <= u64::from(self.slop)).then_some((p, spent))
                })
                .collect();
            if reached.is_empty() {
                return false;
            }
        }
        !reached.is_empty()
    }
}

/// The documents a newest-first page checks: found with the same searcher, so their segment
/// ordinals name the same segments.
#[derive(Debug, Default)]
pub(crate) struct Candidates {
    addresses: HashSet<DocAddress>,
    by_segment: HashMap<SegmentId, Vec<DocId>>,
}

impl Candidates {
    pub(crate) fn new(searcher: &Searcher, addresses: impl IntoIterator<Item = DocAddress>) -> Candidates {
        let mut c = Candidates::default();
        for a in addresses {
            let segment = searcher.segment_reader(a.segment_ord).segment_id();
            c.by_segment.entry(segment).or_default().push(a.doc_id);
            c.addresses.insert(a);
        }
        for docs in c.by_segment.values_mut() {
            docs.sort_unstable();
        }
        c
    }

    pub(crate) fn contains(&self, address: &DocAddress) -> bool {
        self.addresses.contains(address)
    }
}

/// A phrase in the message field, checked against the stored line (see the module).
#[derive(Clone)]
pub(crate) struct MessagePhrase {
    phrase: Arc<Phrase>,
    /// One term per phrase term, in the message field.
    terms: Vec<Term>,
    source: Field,
    analyzer: TextAnalyzer,
    among: Option<Arc<Candidates>>,
}

impl fmt::Debug for MessagePhrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessagePhrase").field("phrase", &self.phrase).field("among", &self.among.is_some()).finish()
    }
}

impl MessagePhrase {
    /// `message`: the field the phrase's terms are in; `source`: the stored line.
    pub(crate) fn new(
        phrase: Phrase,
        message: Field,
        source: Field,
        analyzer: TextAnalyzer,
        among: Option<Arc<Candidates>>,
    ) -> MessagePhrase {
        let terms = phrase.terms.iter().map(|(_, t)| Term::from_field_text(message, t)).collect();
        MessagePhrase { phrase: Arc::new(phrase), terms, source, analyzer, among }
    }

    /// The documents with every required term: what the phrase matches unchecked.
    pub(crate) fn conjunction(&self) -> BooleanQuery {
        let required = &self.terms[..self.phrase.required().len()];
        BooleanQuery::new(
            required
                .iter()
                .map(|t| {
                    (Occur::Must, Box::new(TermQuery::new(t.clone(), IndexRecordOption::WithFreqs)) as Box<dyn Query>)
                })
                .collect(),
        )
    }
}

impl Query for MessagePhrase {
    fn weight(&self, scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(MessagePhraseWeight {
            conjunction: self.conjunction().weight(scoring)?,
            phrase: self.phrase.clone(),
            source: self.source,
            analyzer: self.analyzer.clone(),
            among: self.among.clone(),
        }))
    }

    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        for t in &self.terms {
            visitor(t, false);
        }
    }
}

struct MessagePhraseWeight {
    conjunction: Box<dyn Weight>,
    phrase: Arc<Phrase>,
    source: Field,
    analyzer: TextAnalyzer,
    among: Option<Arc<Candidates>>,
}

impl Weight for MessagePhraseWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let allowed = match &self.among {
            None => None,
            Some(c) => match c.by_segment.get(&reader.segment_id()) {
                Some(docs) => Some(docs.clone()),
                None => return Ok(Box::new(EmptyScorer)),
            },
        };
        let inner = self.conjunction.scorer(reader, boost)?;
        let mut scorer = PhraseScorer {
            inner,
            allowed,
            next_allowed: 0,
            store: reader.get_store_reader(STORE_CACHE_BLOCKS)?,
            phrase: self.phrase.clone(),
            source: self.source,
            analyzer: self.analyzer.clone(),
            doc: 0,
        };
        scorer.settle();
        Ok(Box::new(scorer))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let mut scorer = self.scorer(reader, 1.0)?;
        if scorer.seek(doc) != doc {
            return Err(tantivy::TantivyError::InvalidArgument(format!("document {doc} does not hold the phrase")));
        }
        Ok(Explanation::new("phrase checked against the stored message", scorer.score()))
    }
}

/// The conjunction's documents (of the allowed ones, if any) whose stored message holds the phrase.
struct PhraseScorer {
    inner: Box<dyn Scorer>,
    allowed: Option<Vec<DocId>>,
    next_allowed: usize,
    store: StoreReader,
    phrase: Arc<Phrase>,
    source: Field,
    analyzer: TextAnalyzer,
    doc: DocId,
}

/// The one member of a stored line a phrase reads.
#[derive(Deserialize)]
struct StoredMessage<'a> {
    #[serde(borrow, default)]
    message: Cow<'a, str>,
}

impl PhraseScorer {
    /// Moves from the conjunction's current document to the first that is allowed and holds the
    /// phrase.
    fn settle(&mut self) -> DocId {
        let mut doc = self.inner.doc();
        loop {
            if let Some(allowed) = &self.allowed {
                while self.next_allowed < allowed.len() && allowed[self.next_allowed] < doc {
                    self.next_allowed += 1;
                }
                let Some(&target) = allowed.get(self.next_allowed) else {
                    self.doc = TERMINATED;
                    return TERMINATED;
                };
                if target > doc {
                    doc = self.inner.seek(target);
                    if doc != target {
                        continue;
                    }
                }
            }
            if doc == TERMINATED || self.holds(doc) {
                self.doc = doc;
                return doc;
            }
            doc = self.inner.advance();
        }
    }

    /// A line that cannot be read or decoded holds nothing; a hit on it would report the error.
    fn holds(&mut self, doc: DocId) -> bool {
        let Ok(stored) = self.store.get::<TantivyDocument>(doc) else { return false };
        let Some(line) = stored.get_first(self.source).and_then(|v| v.as_bytes()) else { return false };
        let Ok(line) = serde_json::from_slice::<StoredMessage>(line) else { return false };
        self.phrase.holds(&line.message, &mut self.analyzer)
    }
}

impl DocSet for PhraseScorer {
    fn advance(&mut self) -> DocId {
        if self.doc == TERMINATED {
            return TERMINATED;
        }
        self.inner.advance();
        self.settle()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc >= target {
            return self.doc;
        }
        self.inner.seek(target);
        self.settle()
    }

    fn doc(&self) -> DocId {
        self.doc
    }

    fn size_hint(&self) -> u32 {
        match &self.allowed {
            Some(allowed) => self.inner.size_hint().min(allowed.len() as u32),
            None => self.inner.size_hint(),
        }
    }
}

impl Scorer for PhraseScorer {
    fn score(&mut self) -> Score {
        self.inner.score()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::tokenizer::TokenizerManager;

    fn analyzer() -> TextAnalyzer {
        TokenizerManager::default().get("default").unwrap()
    }

    fn holds(phrase: &str, slop: u32, prefix: bool, text: &str) -> bool {
        Phrase::new(phrase, slop, prefix, &mut analyzer()).unwrap().holds(text, &mut analyzer())
    }

    #[test]
    fn a_phrase_holds_word_for_word() {
        assert!(holds("accepted connection", 0, false, "Accepted connection from 10.0.0.1"));
        assert!(holds("accepted connection", 0, false, "x accepted, connection"), "punctuation is not a word");
        assert!(!holds("accepted connection", 0, false, "connection accepted"));
        assert!(!holds("accepted connection", 0, false, "accepted a connection"));
        assert!(!holds("accepted connection", 0, false, "accepted"));
        assert!(holds("a b a c", 0, false, "a b a b a c"), "a repeated term is found where the rest follows");
    }

    #[test]
    fn slop_lets_terms_move() {
        assert!(holds("accepted connection", 1, false, "accepted a connection"));
        assert!(!holds("accepted connection", 1, false, "accepted a new connection"));
        assert!(holds("accepted connection", 2, false, "connection accepted"), "swapped terms cost two");
        assert!(!holds("accepted connection", 1, false, "connection accepted"));
        assert!(holds("a b c", 2, false, "a x b x c"), "slop is spent over the whole phrase");
        assert!(!holds("a b c", 1, false, "a x b x c"));
    }

    #[test]
    fn a_prefix_phrase_completes_its_last_term() {
        assert!(holds("connection ref", 0, true, "connection refused"));
        assert!(!holds("connection ref", 0, true, "connection lost, refused"));
        assert_eq!(Phrase::new("connection ref", 0, true, &mut analyzer()).unwrap().required().len(), 1);
    }

    /// A token the analyzer drops (longer than 40 bytes) still takes its position, in the phrase
    /// and in the line, as a positional index counts them.
    #[test]
    fn dropped_tokens_keep_their_positions() {
        let long = "x".repeat(50);
        assert!(holds(&format!("a {long} b"), 0, false, &format!("a {long} b")));
        assert!(holds(&format!("a {long} b"), 0, false, "a y b"));
        assert!(!holds(&format!("a {long} b"), 0, false, "a b"));
        assert!(Phrase::new("one", 0, false, &mut analyzer()).is_none());
        assert!(Phrase::new("one, !", 0, false, &mut analyzer()).is_none());
    }
}
