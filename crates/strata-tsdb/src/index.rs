//! Series identity and the inverted index from label pairs to series, with Prometheus matchers.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A series' identity within a tenant: its label set, `__name__` included, sorted by name.
pub type LabelSet = Vec<(String, String)>;

/// A series number, dense from 0 within one index.
pub type SeriesId = u32;

/// Anchored regexes longer than this are refused.
pub const MATCHER_REGEX_BYTES_MAX: usize = 4096;

/// Why a matcher cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("regex {pattern:?} is not valid: {reason}")]
    Regex { pattern: String, reason: String },
    #[error("regex of {0} bytes, more than the limit of {MATCHER_REGEX_BYTES_MAX}")]
    RegexTooLong(usize),
}

pub(crate) fn is_label_name(s: &str) -> bool {
    strata_model::is_valid_label_name(s)
}

/// `name op value`, as in `{job="api", code=~"5.."}`.
#[derive(Debug, Clone)]
pub enum Matcher {
    Equal(String, String),
    NotEqual(String, String),
    Regex(String, regex::Regex),
    NotRegex(String, regex::Regex),
}

impl Matcher {
    /// A regex matcher; like Prometheus, the pattern is anchored at both ends.
    pub fn regex(name: &str, pattern: &str, negate: bool) -> Result<Matcher, MatcherError> {
        if pattern.len() > MATCHER_REGEX_BYTES_MAX {
            return Err(MatcherError::RegexTooLong(pattern.len()));
        }
        let re = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(1 << 20)
            .build()
            .map_err(|e| MatcherError::Regex { pattern: pattern.to_string(), reason: e.to_string() })?;
        Ok(if negate { Matcher::NotRegex(name.to_string(), re) } else { Matcher::Regex(name.to_string(), re) })
    }

    pub fn name(&self) -> &str {
        match self {
            Matcher::Equal(n, _) | Matcher::NotEqual(n, _) | Matcher::Regex(n, _) | Matcher::NotRegex(n, _) => n,
        }
    }

    /// Whether a label value (empty when the label is absent, as Prometheus treats it) matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Matcher::Equal(_, v) => value == v,
            Matcher::NotEqual(_, v) => value != v,
            Matcher::Regex(_, re) => re.is_match(value),
            Matcher::NotRegex(_, re) => !re.is_match(value),
        }
    }
}

/// A series' labels in one allocation: each name and value as a varint length and its bytes.
/// Confirming that a fingerprint's series is the one wanted, for every sample, then reads one
/// run of memory instead of a string per label scattered over the heap, and a series costs a
/// quarter of the memory of a vector of string pairs.
struct PackedLabels(Box<[u8]>);

/// The next string of packed labels and what follows it.
fn next_packed(mut b: &[u8]) -> (&[u8], &[u8]) {
    let len = strata_model::varint::take(&mut b).expect("packed by PackedLabels::new") as usize;
    b.split_at(len)
}

impl PackedLabels {
    fn new(labels: &[(&str, &str)]) -> PackedLabels {
        let mut out = Vec::with_capacity(labels.iter().map(|(n, v)| n.len() + v.len() + 2).sum());
        for s in labels.iter().flat_map(|(n, v)| [n, v]) {
            strata_model::varint::put(&mut out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        PackedLabels(out.into_boxed_slice())
    }

    fn strings(&self) -> impl Iterator<Item = &[u8]> {
        let mut rest: &[u8] = &self.0;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            let (s, r) = next_packed(rest);
            rest = r;
            Some(s)
        })
    }

    fn is(&self, labels: &[(&str, &str)]) -> bool {
        let mut stored = self.strings();
        labels.iter().flat_map(|(n, v)| [n, v]).all(|s| stored.next() == Some(s.as_bytes())) && stored.next().is_none()
    }

    /// The labels as they were given, sorted by name.
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        // Written from `&str`s, so always UTF-8.
        let text = |b| std::str::from_utf8(b).expect("packed from strings");
        let mut strings = self.strings();
        std::iter::from_fn(move || Some((text(strings.next()?), text(strings.next()?))))
    }

    fn to_label_set(&self) -> LabelSet {
        self.pairs().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }
}

/// The ids in both sorted lists, sorted.
fn intersect_sorted(a: &[SeriesId], b: &[SeriesId]) -> Vec<SeriesId> {
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Series of one tenant and the postings of each label pair.
#[derive(Default)]
pub struct SeriesIndex {
    /// Series by fingerprint: the first series of each fingerprint here, any other with the same
    /// fingerprint (a 64-bit collision) in `collided`, so the common lookup is one probe.
    ids: HashMap<u64, SeriesId, strata_model::FastHash>,
    collided: HashMap<u64, Vec<SeriesId>, strata_model::FastHash>,
    series: Vec<PackedLabels>,
    /// Ids ascending: a new series always has the largest id, so postings only ever grow at the end.
    postings: BTreeMap<String, BTreeMap<String, Vec<SeriesId>>>,
}

/// The fingerprint of sorted labels that include `__name__`.
fn fingerprint<'a>(labels: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> u64 {
    let name = labels.clone().find(|(n, _)| *n == "__name__").map_or("", |(_, v)| v);
    strata_model::series_fingerprint(name, labels.filter(|(n, _)| *n != "__name__"))
}

impl SeriesIndex {
    /// The id of a label set, adding it if new. Labels are sorted here.
    pub fn get_or_insert(&mut self, mut labels: LabelSet) -> (SeriesId, bool) {
        labels.sort();
        let pairs: Vec<(&str, &str)> = labels.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let before = self.series.len();
        let id = self.get_or_insert_sorted(&pairs);
        (id, self.series.len() > before)
    }

    /// The id of a label set sorted by name, adding it if new, without allocating when the series
    /// is known: the path of every sample.
    pub fn get_or_insert_sorted(&mut self, labels: &[(&str, &str)]) -> SeriesId {
        self.get_or_insert_fingerprinted(fingerprint(labels.iter().copied()), labels)
    }

    /// As `get_or_insert_sorted`, with the fingerprint the gateway computed (`series_fingerprint`).
    pub fn get_or_insert_fingerprinted(&mut self, fp: u64, labels: &[(&str, &str)]) -> SeriesId {
        if let Some(id) = self.find(fp, labels) {
            return id;
        }
        let id = self.series.len() as SeriesId;
        for (n, v) in labels {
            self.postings.entry(n.to_string()).or_default().entry(v.to_string()).or_default().push(id);
        }
        match self.ids.entry(fp) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(id);
            }
            std::collections::hash_map::Entry::Occupied(_) => self.collided.entry(fp).or_default().push(id),
        }
        self.series.push(PackedLabels::new(labels));
        id
    }

    pub fn get(&self, labels: &LabelSet) -> Option<SeriesId> {
        let mut sorted = labels.clone();
        sorted.sort();
        let pairs: Vec<(&str, &str)> = sorted.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        self.find(fingerprint(pairs.iter().copied()), &pairs)
    }

    fn find(&self, fp: u64, labels: &[(&str, &str)]) -> Option<SeriesId> {
        let &first = self.ids.get(&fp)?;
        if self.series[first as usize].is(labels) {
            return Some(first);
        }
        self.collided.get(&fp)?.iter().copied().find(|&id| self.series[id as usize].is(labels))
    }

    /// Reads where the series of each fingerprint is, so that the lookups that follow find it in
    /// cache: in a loop this tight the processor overlaps the cache misses, which it cannot when
    /// each lookup sits among the work of applying a sample. Returns the ids found.
    pub fn warm(&self, fingerprints: &[u64], ids: &mut Vec<SeriesId>) {
        ids.clear();
        let mut touched = 0u8;
        for fp in fingerprints {
            if let Some(&id) = self.ids.get(fp) {
                // A series' labels span two or three cache lines: its first and last byte.
                let packed = &self.series[id as usize].0;
                touched ^= packed.first().copied().unwrap_or(0) ^ packed.last().copied().unwrap_or(0);
                ids.push(id);
            }
        }
        std::hint::black_box(touched);
    }

    /// The labels of a series, sorted by name.
    pub fn labels(&self, id: SeriesId) -> LabelSet {
        self.series[id as usize].to_label_set()
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Series matching every matcher. With no matcher that can only be satisfied by a non-empty
    /// value, Prometheus refuses the selector; callers check that before asking.
    pub fn select(&self, matchers: &[Matcher]) -> BTreeSet<SeriesId> {
        // Matchers that need a non-empty value narrow through postings; the others filter.
        let (narrowing, filtering): (Vec<&Matcher>, Vec<&Matcher>) = matchers.iter().partition(|m| !m.matches(""));
        // Each narrowing matcher's series as a sorted list (a series has one value per label,
        // so the postings of different values never share an id), intersected smallest first.
        let mut lists: Vec<Vec<SeriesId>> = narrowing
            .iter()
            .map(|m| {
                let mut ids: Vec<SeriesId> = Vec::new();
                if let Some(values) = self.postings.get(m.name()) {
                    let mut parts = 0;
                    for (v, posting) in values {
                        if m.matches(v) {
                            ids.extend_from_slice(posting);
                            parts += 1;
                        }
                    }
                    if parts > 1 {
                        ids.sort_unstable();
                    }
                }
                ids
            })
            .collect();
        lists.sort_by_key(Vec::len);
        let mut lists = lists.into_iter();
        let result: Option<Vec<SeriesId>> =
            lists.next().map(|first| lists.fold(first, |acc, next| intersect_sorted(&acc, &next)));
        let candidates: Box<dyn Iterator<Item = SeriesId>> = match result {
            Some(r) => Box::new(r.into_iter()),
            None => Box::new(0..self.series.len() as SeriesId),
        };
        candidates
            .filter(|&id| {
                let labels = &self.series[id as usize];
                filtering.iter().all(|m| {
                    let v = labels.pairs().find(|(n, _)| *n == m.name()).map_or("", |(_, v)| v);
                    m.matches(v)
                })
            })
            .collect()
    }

    /// Label names used by any of `ids`, sorted.
    pub fn label_names(&self, ids: &BTreeSet<SeriesId>) -> BTreeSet<String> {
        ids.iter().flat_map(|&id| self.series[id as usize].pairs().map(|(n, _)| n.to_string())).collect()
    }

    /// Values of `name` among `ids`, sorted.
    pub fn label_values(&self, name: &str, ids: &BTreeSet<SeriesId>) -> BTreeSet<String> {
        ids.iter()
            .filter_map(|&id| self.series[id as usize].pairs().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    fn index() -> SeriesIndex {
        let mut ix = SeriesIndex::default();
        for (name, job, code) in [
            ("http", "api", "200"),
            ("http", "api", "500"),
            ("http", "web", "503"),
            ("up", "api", ""),
            ("up", "web", ""),
        ] {
            let mut l = ls(&[("__name__", name), ("job", job)]);
            if !code.is_empty() {
                l.push(("code".into(), code.into()));
            }
            ix.get_or_insert(l);
        }
        ix
    }

    fn names(ix: &SeriesIndex, m: &[Matcher]) -> Vec<String> {
        ix.select(m)
            .into_iter()
            .map(|id| ix.labels(id).iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(","))
            .collect()
    }

    proptest::proptest! {
        /// Packed labels give back what was packed, and are equal only to the same labels.
        #[test]
        fn packed_labels_round_trip_and_compare_exactly(
            a in proptest::collection::vec(("[a-c]{0,3}", "\\PC{0,3}|x{120,140}"), 0..5),
            b in proptest::collection::vec(("[a-c]{0,3}", "\\PC{0,3}"), 0..5),
        ) {
            fn borrowed(l: &[(String, String)]) -> Vec<(&str, &str)> {
                l.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
            }
            let packed = PackedLabels::new(&borrowed(&a));
            proptest::prop_assert_eq!(packed.to_label_set(), a.clone());
            proptest::prop_assert!(packed.is(&borrowed(&a)));
            proptest::prop_assert_eq!(packed.is(&borrowed(&b)), a == b);
        }
    }

    #[test]
    fn colliding_fingerprints_keep_series_apart() {
        let mut ix = SeriesIndex::default();
        let a = ix.get_or_insert_fingerprinted(42, &[("__name__", "a")]);
        let b = ix.get_or_insert_fingerprinted(42, &[("__name__", "b")]);
        let c = ix.get_or_insert_fingerprinted(42, &[("__name__", "c")]);
        assert_eq!((a, b, c), (0, 1, 2));
        assert_eq!(ix.get_or_insert_fingerprinted(42, &[("__name__", "b")]), 1);
        assert_eq!(ix.get_or_insert_fingerprinted(42, &[("__name__", "c")]), 2);
    }

    #[test]
    fn identity_ignores_label_order() {
        let mut ix = SeriesIndex::default();
        let (a, new_a) = ix.get_or_insert(ls(&[("__name__", "m"), ("b", "2"), ("a", "1")]));
        let (b, new_b) = ix.get_or_insert(ls(&[("a", "1"), ("__name__", "m"), ("b", "2")]));
        assert_eq!((a, new_a, new_b), (b, true, false));
        assert_eq!(ix.get(&ls(&[("b", "2"), ("a", "1"), ("__name__", "m")])), Some(a));
    }

    #[test]
    fn matchers_select_like_prometheus() {
        let ix = index();
        let eq = |n: &str, v: &str| Matcher::Equal(n.into(), v.into());
        assert_eq!(names(&ix, &[eq("__name__", "http"), eq("job", "api")]).len(), 2);
        assert_eq!(
            names(&ix, &[eq("__name__", "http"), Matcher::regex("code", "5..", false).unwrap()]),
            ["__name__=http,code=500,job=api", "__name__=http,code=503,job=web"]
        );
        // Anchored: "5" alone does not match "500".
        assert!(names(&ix, &[Matcher::regex("code", "5", false).unwrap()]).is_empty());
        assert_eq!(names(&ix, &[eq("__name__", "http"), Matcher::NotEqual("job".into(), "api".into())]).len(), 1);
        assert_eq!(names(&ix, &[eq("__name__", "http"), Matcher::regex("code", "2..", true).unwrap()]).len(), 2);
        // An absent label is the empty string: `code=""` selects the series without it.
        assert_eq!(names(&ix, &[eq("code", "")]).len(), 2);
        assert_eq!(names(&ix, &[Matcher::regex("job", "api|web", false).unwrap(), eq("code", "")]).len(), 2);
        assert!(Matcher::regex("x", "(", false).is_err());
        assert!(matches!(Matcher::regex("x", &"a".repeat(5000), false), Err(MatcherError::RegexTooLong(5000))));
        let all = ix.select(&[Matcher::regex("__name__", ".+", false).unwrap()]);
        assert_eq!(ix.label_names(&all).into_iter().collect::<Vec<_>>(), ["__name__", "code", "job"]);
        assert_eq!(ix.label_values("job", &all).into_iter().collect::<Vec<_>>(), ["api", "web"]);
    }
}
