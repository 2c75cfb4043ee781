//! Runs a parsed test file against the engine, case by case, as promqltest's `exec` does.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{LazyLock, Once};
use std::time::SystemTime;

use promql_parser::parser::{
    self as pp, AtModifier, Expr, LabelModifier, VectorMatchCardinality, VectorMatchFillValues, VectorSelector,
};
use regex::Regex;
use strata_query::{Engine, Limits, MemStorage, QueryError, QueryResult, Value};

use crate::check;
use crate::testfile::{self, Command, Eval, Labels, Load, SeqValue};

/// Functions whose result changes with the evaluation time even when their arguments do not, or
/// that return their argument's timestamps: promqltest does not try `@` variants of queries
/// calling them (outside subqueries). `start()`, `end()`, `range()` and `step()` are the query's own
/// times, which change with the evaluation time just as `time()` does.
const AT_MODIFIER_UNSAFE_FUNCTIONS: [&str; 15] = [
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
    "start",
    "end",
    "range",
    "step",
];

/// Queries whose value depends on the query's own range: not checked in range mode.
static QUERY_CONTEXT_FUNCS: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(start|end|range|step)\(\)").unwrap());

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

#[derive(Debug, Clone)]
pub struct CaseResult {
    pub line: usize,
    pub query: String,
    pub ev: Box<Eval>,
    pub outcome: Outcome,
    /// The last result the engine returned for the failing check, for reports.
    pub got: Option<String>,
}

#[derive(Debug, Default)]
pub struct FileResult {
    pub cases: Vec<CaseResult>,
    /// Lines the harness could not read: always a failure of the conformance test.
    pub harness_errors: Vec<String>,
    /// Instant cases whose `@` variants could not be written back as PromQL (so were not run).
    pub no_at_variants: Vec<String>,
}

/// Runs every case of one file. `all_skipped` marks a file whose cases are all out of scope
/// (native histograms); it is still parsed in full.
pub fn run_file(name: &str, text: &str, all_skipped: bool) -> FileResult {
    install_panic_hook();
    let parsed = testfile::parse_file(text);
    let mut result = FileResult::default();
    for e in &parsed.errors {
        result.harness_errors.push(format!("{name}:{}: {}", e.line, e.msg));
    }
    let engine = Engine::new(Limits::default());
    let mut state = State { storage: MemStorage::new(), histogram_series: Vec::new() };
    for cmd in parsed.commands {
        match cmd {
            Command::Clear => state = State { storage: MemStorage::new(), histogram_series: Vec::new() },
            Command::Load(load) => state.load(&load),
            Command::Eval(ev) => {
                let (outcome, got) = if all_skipped {
                    (Outcome::Skipped(format!("{name} is out of scope (native histograms)")), None)
                } else if let Some(e) = &ev.parse_error {
                    (Outcome::Failed(format!("harness could not read this eval: {e}")), None)
                } else if ev.expects_histogram {
                    (Outcome::Skipped("expects a native histogram value".into()), None)
                } else if let Some(series) = state.touches_histograms(&ev.query) {
                    (Outcome::Skipped(format!("selects native histogram series {}", check::fmt_labels(&series))), None)
                } else {
                    let mut run = CaseRun { engine: &engine, storage: &state.storage, got: None };
                    let r = if ev.is_range { run.range_case(&ev) } else { run.instant_case(&ev) };
                    match r {
                        Ok(()) => (Outcome::Passed, None),
                        Err(CaseError::Failed(e)) => (Outcome::Failed(e), run.got),
                        Err(CaseError::NoAtVariants(e)) => {
                            result.no_at_variants.push(format!("{name}:{} {} ({e})", ev.line, ev.query));
                            (Outcome::Passed, None)
                        }
                    }
                };
                result.cases.push(CaseResult { line: ev.line, query: ev.query.clone(), ev, outcome, got });
            }
        }
    }
    result
}

struct State {
    storage: MemStorage,
    /// Series stored as native histograms (from `{{…}}` points or `load_with_nhcb`).
    histogram_series: Vec<Labels>,
}

impl State {
    fn load(&mut self, load: &Load) {
        for (labels, values) in &load.series {
            if values.contains(&SeqValue::Histogram) && !self.histogram_series.contains(labels) {
                self.histogram_series.push(labels.clone());
            }
            for (i, v) in values.iter().enumerate() {
                if let SeqValue::Float(f) = v {
                    self.storage.add(labels.clone(), i as i64 * load.interval_ms, *f);
                }
            }
        }
        if load.with_nhcb {
            for labels in nhcb_series(&load.series) {
                if !self.histogram_series.contains(&labels) {
                    self.histogram_series.push(labels);
                }
            }
        }
    }

    /// A native histogram series the query selects, if any. A query the harness cannot parse
    /// is checked by the names it mentions.
    fn touches_histograms(&self, query: &str) -> Option<Labels> {
        if self.histogram_series.is_empty() {
            return None;
        }
        match pp::parse(query) {
            Ok(expr) => {
                let mut selectors = Vec::new();
                collect_selectors(&expr, &mut selectors);
                self.histogram_series.iter().find(|s| selectors.iter().any(|vs| selector_matches(vs, s))).cloned()
            }
            Err(_) => {
                let words: Vec<&str> =
                    query.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).collect();
                self.histogram_series
                    .iter()
                    .find(|s| s.iter().any(|(n, v)| n == "__name__" && words.contains(&v.as_str())))
                    .cloned()
            }
        }
    }
}

/// The native histograms with custom buckets `load_with_nhcb` adds: one per classic histogram
/// (`x_bucket{le=…}`, `x_count`, `x_sum` grouped by their other labels), named `x`.
fn nhcb_series(series: &[(Labels, Vec<SeqValue>)]) -> Vec<Labels> {
    let mut out: Vec<Labels> = Vec::new();
    for (labels, _) in series {
        let Some(name) = labels.iter().find(|(n, _)| n == "__name__").map(|(_, v)| v.as_str()) else { continue };
        let base = if let Some(base) = name.strip_suffix("_bucket") {
            let le = labels.iter().find(|(n, _)| n == "le").map(|(_, v)| v.as_str());
            match le.and_then(|le| le.parse::<f64>().ok()) {
                Some(le) if !le.is_nan() => base,
                _ => continue,
            }
        } else if let Some(base) = name.strip_suffix("_count").or_else(|| name.strip_suffix("_sum")) {
            base
        } else {
            continue;
        };
        let mut h: Labels = labels
            .iter()
            .filter(|(n, _)| n != "le" && n != "__name__")
            .cloned()
            .chain([("__name__".to_string(), base.to_string())])
            .collect();
        h.sort();
        if !out.contains(&h) {
            out.push(h);
        }
    }
    out
}

fn collect_selectors<'a>(expr: &'a Expr, out: &mut Vec<&'a VectorSelector>) {
    match expr {
        Expr::VectorSelector(vs) => out.push(vs),
        Expr::MatrixSelector(ms) => out.push(&ms.vs),
        Expr::Aggregate(a) => {
            collect_selectors(&a.expr, out);
            if let Some(p) = &a.param {
                collect_selectors(p, out);
            }
        }
        Expr::Unary(u) => collect_selectors(&u.expr, out),
        Expr::Binary(b) => {
            collect_selectors(&b.lhs, out);
            collect_selectors(&b.rhs, out);
        }
        Expr::Paren(p) => collect_selectors(&p.expr, out),
        Expr::Subquery(s) => collect_selectors(&s.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| collect_selectors(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

fn selector_matches(vs: &VectorSelector, labels: &Labels) -> bool {
    let get = |name: &str| labels.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_str());
    if let Some(name) = &vs.name
        && get("__name__") != name
    {
        return false;
    }
    let all = |ms: &[promql_parser::label::Matcher]| ms.iter().all(|m| m.is_match(get(&m.name)));
    all(&vs.matchers.matchers) && (vs.matchers.or_matchers.is_empty() || vs.matchers.or_matchers.iter().any(|g| all(g)))
}

enum CaseError {
    Failed(String),
    /// The case passed but its `@` variants could not be built: reported, not failed.
    NoAtVariants(String),
}

impl From<String> for CaseError {
    fn from(s: String) -> CaseError {
        CaseError::Failed(s)
    }
}

struct CaseRun<'a> {
    engine: &'a Engine,
    storage: &'a MemStorage,
    got: Option<String>,
}

/// What one engine call gave.
enum Call {
    Ok(QueryResult),
    Err(QueryError),
    Panic(String),
}

impl CaseRun<'_> {
    fn call(&mut self, f: impl FnOnce() -> Result<QueryResult, QueryError>) -> Call {
        PANIC_MESSAGE.with(|m| m.borrow_mut().take());
        match panic::catch_unwind(AssertUnwindSafe(f)) {
            Ok(Ok(r)) => {
                self.got = Some(format!("{}; annotations {:?}", check::fmt_value(&r.value), r.annotations));
                Call::Ok(r)
            }
            Ok(Err(e)) => {
                self.got = Some(format!("error ({}): {e}", e.kind()));
                Call::Err(e)
            }
            Err(_) => {
                let msg = PANIC_MESSAGE.with(|m| m.borrow_mut().take()).unwrap_or_else(|| "unknown panic".into());
                self.got = Some(format!("panic: {msg}"));
                Call::Panic(msg)
            }
        }
    }

    /// A range eval: one range query.
    fn range_case(&mut self, ev: &Eval) -> Result<(), CaseError> {
        let (engine, storage) = (self.engine, self.storage);
        let res = match self.call(|| engine.range(storage, &ev.query, ev.start_ms, ev.end_ms, ev.step_ms)) {
            Call::Ok(res) => res,
            Call::Err(e) if ev.is_fail() => return Ok(check::check_expected_failure(ev, &e.to_string())?),
            Call::Err(e) => return Err(format!("error evaluating query: {e}").into()),
            Call::Panic(p) => return Err(format!("engine panicked: {p}").into()),
        };
        if ev.is_fail() {
            return Err("expected an error evaluating the query but got none".to_string().into());
        }
        check::check_annotations(ev, &res.annotations)?;
        check::compare_result(ev, &res.value)?;
        Ok(())
    }

    /// An instant eval: the query at its time, then (unless it calls a time-dependent function)
    /// the query with every selector pinned `@` that time, evaluated at other times; each one also
    /// as a range query whose middle step must agree.
    fn instant_case(&mut self, ev: &Eval) -> Result<(), CaseError> {
        self.instant_query(ev, &ev.query, ev.eval_ms)?;
        let variants = at_variants(&ev.query, ev.eval_ms);
        let extra = match &variants {
            AtVariants::Variants(v) => v.as_slice(),
            AtVariants::Unsafe => &[],
            AtVariants::ParseError(e) => {
                return Err(format!("cannot build the `@` variants, promql-parser rejects the query: {e}").into());
            }
            AtVariants::NotWritable(_) => &[],
        };
        for (q, t) in extra {
            self.instant_query(ev, q, *t).map_err(|e| format!("in `@` variant `{q}` evaluated at {t}ms: {e}"))?;
        }
        if let AtVariants::NotWritable(e) = variants {
            return Err(CaseError::NoAtVariants(e));
        }
        Ok(())
    }

    fn instant_query(&mut self, ev: &Eval, query: &str, t: i64) -> Result<(), String> {
        let (engine, storage) = (self.engine, self.storage);
        let res = match self.call(|| engine.instant(storage, query, t)) {
            Call::Ok(res) => res,
            Call::Err(e) if ev.is_fail() => return check::check_expected_failure(ev, &e.to_string()),
            Call::Err(e) => return Err(format!("error evaluating query: {e}")),
            Call::Panic(p) => return Err(format!("engine panicked: {p}")),
        };
        if ev.is_fail() {
            return Err("expected an error evaluating the query but got none".into());
        }
        check::check_annotations(ev, &res.annotations)?;
        check::compare_result(ev, &res.value)?;
        if ev.exclude_from_range_query || QUERY_CONTEXT_FUNCS.is_match(query) {
            return Ok(());
        }
        // The same query as a range query from t-1m to t+1m: its step at t must agree.
        let range = match self.call(|| engine.range(storage, query, t - 60_000, t + 60_000, 60_000)) {
            Call::Ok(r) => r,
            Call::Err(e) => return Err(format!("error evaluating query in range mode: {e}")),
            Call::Panic(p) => return Err(format!("engine panicked in range mode: {p}")),
        };
        if ev.is_ordered() {
            return Ok(());
        }
        let Value::Matrix(series) = &range.value else {
            return Err(format!("range mode returned a {}, not a matrix", check::fmt_value(&range.value)));
        };
        check::assert_matrix_sorted(series).map_err(|e| format!("range mode: {e}"))?;
        let samples: Vec<strata_query::Sample> = series
            .iter()
            .filter_map(|s| {
                s.points.iter().find(|p| p.0 == t).map(|p| strata_query::Sample { labels: s.labels.clone(), t, v: p.1 })
            })
            .collect();
        let value = if matches!(res.value, Value::Scalar { .. }) {
            match samples.first() {
                Some(s) => Value::Scalar { t, v: s.v },
                None => return Err("range mode returned no point at the evaluation time for a scalar".into()),
            }
        } else {
            Value::Vector(samples)
        };
        check::compare_result(ev, &value).map_err(|e| format!("range mode (step at {t}ms): {e}"))
    }
}

enum AtVariants {
    /// (query, evaluation time) pairs to run besides the original.
    Variants(Vec<(String, i64)>),
    /// The query calls a function whose result depends on the evaluation time: no variants.
    Unsafe,
    ParseError(String),
    /// promql-parser's printer did not reproduce the modified query faithfully.
    NotWritable(String),
}

/// promqltest's `@` modifier variants of an instant query at `t`: every selector and subquery
/// without `@` (outside subqueries) gets `@ t`, and the result must be the same at other times:
/// -10t, 0, t/5, t, 10t (or -1s, 0, 1s when t is 0).
fn at_variants(query: &str, t: i64) -> AtVariants {
    let mut expr = match pp::parse(query) {
        Ok(e) => e,
        Err(e) => return AtVariants::ParseError(e),
    };
    let at = if t >= 0 {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(t as u64)
    } else {
        SystemTime::UNIX_EPOCH - std::time::Duration::from_millis(t.unsigned_abs())
    };
    let mut unsafe_call = false;
    pin_at(&mut expr, &AtModifier::At(at), &mut unsafe_call);
    if unsafe_call {
        return AtVariants::Unsafe;
    }
    let text = expr.to_string();
    match pp::parse(&text) {
        Ok(mut back) => {
            normalize(&mut back);
            normalize(&mut expr);
            if back != expr {
                return AtVariants::NotWritable(format!("`{text}` parses differently"));
            }
        }
        Err(e) => return AtVariants::NotWritable(format!("`{text}` does not parse: {e}")),
    }
    let times = if t == 0 { vec![-1000, 0, 1000] } else { vec![-10 * t, 0, t / 5, t, 10 * t] };
    AtVariants::Variants(times.into_iter().map(|et| (text.clone(), et)).collect())
}

/// Rewrites what promql-parser's printer changes without changing the meaning: label matchers
/// in sorted order, `by ()` as no grouping, `ignoring ()` as no matching modifier.
fn normalize(expr: &mut Expr) {
    fn sort_matchers(vs: &mut VectorSelector) {
        let key = |m: &promql_parser::label::Matcher| (m.name.clone(), m.op.to_string(), m.value.clone());
        vs.matchers.matchers.sort_by_key(key);
        vs.matchers.or_matchers.iter_mut().for_each(|g| g.sort_by_key(key));
    }
    match expr {
        Expr::VectorSelector(vs) => sort_matchers(vs),
        Expr::MatrixSelector(ms) => sort_matchers(&mut ms.vs),
        Expr::Subquery(sq) => normalize(&mut sq.expr),
        Expr::Aggregate(a) => {
            if matches!(&a.modifier, Some(LabelModifier::Include(l)) if l.labels.is_empty()) {
                a.modifier = None;
            }
            if let Some(p) = &mut a.param {
                normalize(p);
            }
            normalize(&mut a.expr);
        }
        Expr::Unary(u) => normalize(&mut u.expr),
        Expr::Binary(b) => {
            if let Some(m) = &mut b.modifier {
                if matches!(&m.matching, Some(LabelModifier::Exclude(l)) if l.labels.is_empty()) {
                    m.matching = None;
                }
                if m.card == VectorMatchCardinality::OneToOne
                    && m.matching.is_none()
                    && !m.return_bool
                    && m.fill_values == VectorMatchFillValues::default()
                {
                    b.modifier = None;
                }
            }
            normalize(&mut b.lhs);
            normalize(&mut b.rhs);
        }
        Expr::Paren(p) => normalize(&mut p.expr),
        Expr::Call(c) => c.args.args.iter_mut().for_each(|a| normalize(a)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Sets `@` on selectors and subqueries lacking a fixed time (`@ start()`/`@ end()` are replaced,
/// as promqltest does); does not enter subqueries; notes calls to time-dependent functions.
fn pin_at(expr: &mut Expr, at: &AtModifier, unsafe_call: &mut bool) {
    let pin = |slot: &mut Option<AtModifier>| {
        if !matches!(slot, Some(AtModifier::At(_))) {
            *slot = Some(at.clone());
        }
    };
    match expr {
        Expr::VectorSelector(vs) => pin(&mut vs.at),
        Expr::MatrixSelector(ms) => pin(&mut ms.vs.at),
        Expr::Subquery(sq) => pin(&mut sq.at),
        Expr::Aggregate(a) => {
            if let Some(p) = &mut a.param {
                pin_at(p, at, unsafe_call);
            }
            pin_at(&mut a.expr, at, unsafe_call);
        }
        Expr::Unary(u) => pin_at(&mut u.expr, at, unsafe_call),
        Expr::Binary(b) => {
            pin_at(&mut b.lhs, at, unsafe_call);
            pin_at(&mut b.rhs, at, unsafe_call);
        }
        Expr::Paren(p) => pin_at(&mut p.expr, at, unsafe_call),
        Expr::Call(c) => {
            if AT_MODIFIER_UNSAFE_FUNCTIONS.contains(&c.func.name) {
                *unsafe_call = true;
            }
            c.args.args.iter_mut().for_each(|a| pin_at(a, at, unsafe_call));
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

thread_local! {
    static PANIC_MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Worker threads are named with this prefix; their panics (engine panics) are recorded for the
/// report instead of printed.
pub const WORKER_PREFIX: &str = "conformance-";

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let worker = std::thread::current().name().is_some_and(|n| n.starts_with(WORKER_PREFIX));
            if !worker {
                previous(info);
                return;
            }
            let payload = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            PANIC_MESSAGE.with(|m| *m.borrow_mut() = Some(format!("{payload}{at}")));
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variants(q: &str, t: i64) -> Vec<(String, i64)> {
        match at_variants(q, t) {
            AtVariants::Variants(v) => v,
            AtVariants::Unsafe => vec![],
            AtVariants::ParseError(e) | AtVariants::NotWritable(e) => panic!("{e}"),
        }
    }

    #[test]
    fn at_variants_pin_selectors_not_inside_subqueries() {
        let v = variants("sum(rate(foo[5m])) + bar", 50 * 60_000);
        let times: Vec<i64> = v.iter().map(|(_, t)| *t).collect();
        assert_eq!(times, vec![-30_000_000, 0, 600_000, 3_000_000, 30_000_000]);
        assert_eq!(v[0].0, "sum(rate(foo[5m] @ 3000.000)) + bar @ 3000.000");
        let v = variants("max_over_time(foo[5m:1m])", 0);
        assert_eq!(v.iter().map(|(_, t)| *t).collect::<Vec<_>>(), vec![-1000, 0, 1000]);
        assert_eq!(v[0].0, "max_over_time(foo[5m:1m] @ 0.000)");
        assert_eq!(variants("foo @ start()", 1000)[0].0, "foo @ 1.000");
        assert_eq!(variants("foo @ 20", 1000)[0].0, "foo @ 20.000");
        assert!(variants("time() - foo", 1000).is_empty());
        assert!(variants("timestamp(foo)", 1000).is_empty());
        // Unsafe functions inside a subquery do not count.
        assert_eq!(variants("max_over_time(vector(time())[5m:1m])", 1000).len(), 5);
    }

    /// promql-parser prints the `@` variant of every instant query of the in-scope files so that
    /// it parses back to the same query.
    #[test]
    fn at_variants_of_all_cases_are_writable() {
        let dir = crate::cases_dir();
        let mut problems = Vec::new();
        let mut with_variants = 0;
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("PromQL conformance cases not found: looked in {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.extension().is_none_or(|x| x != "test") || name == crate::NATIVE_HISTOGRAMS_FILE {
                continue;
            }
            for cmd in testfile::parse_file(&std::fs::read_to_string(&path).unwrap()).commands {
                let Command::Eval(ev) = cmd else { continue };
                if ev.is_range {
                    continue;
                }
                match at_variants(&ev.query, ev.eval_ms) {
                    AtVariants::Variants(_) => with_variants += 1,
                    AtVariants::Unsafe => {}
                    AtVariants::ParseError(e) | AtVariants::NotWritable(e) => {
                        problems.push(format!("{name}:{} {}: {e}", ev.line, ev.query))
                    }
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        assert!(with_variants > 500, "{with_variants}");
    }

    #[test]
    fn nhcb_series_group_classic_histograms() {
        let l = |pairs: &[(&str, &str)]| -> Labels {
            let mut v: Labels = pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
            v.sort();
            v
        };
        let series = vec![
            (l(&[("__name__", "h_bucket"), ("le", "0.1"), ("job", "a")]), vec![]),
            (l(&[("__name__", "h_bucket"), ("le", "+Inf"), ("job", "a")]), vec![]),
            (l(&[("__name__", "h_sum"), ("job", "a")]), vec![]),
            (l(&[("__name__", "g_bucket"), ("le", "NaN")]), vec![]),
            (l(&[("__name__", "other")]), vec![]),
        ];
        assert_eq!(nhcb_series(&series), vec![l(&[("__name__", "h"), ("job", "a")])]);
    }

    #[test]
    fn selectors_match_histogram_series() {
        let s: Labels = vec![("__name__".into(), "request_duration_seconds".into()), ("job".into(), "a".into())];
        let st = State { storage: MemStorage::new(), histogram_series: vec![s] };
        assert!(st.touches_histograms("histogram_count(request_duration_seconds)").is_some());
        assert!(st.touches_histograms(r#"{__name__=~"request_duration_seconds\\d*"}"#).is_some());
        assert!(st.touches_histograms("request_duration_seconds_bucket").is_none());
        assert!(st.touches_histograms(r#"request_duration_seconds{job="b"}"#).is_none());
        assert!(st.touches_histograms("sum(rate(request_duration_seconds[5m:1m]))").is_some());
    }
}
