//! Reads Prometheus's promqltest `.test` files (the format of `promql/promqltest/test.go`).
//!
//! The rules follow promqltest: lines are trimmed, a line starting with `#` counts as blank, a
//! blank line ends a `load` or `eval` block, the first word of a line outside a block names the
//! command (`clear`, `load…`, `eval…`). Series descriptions (`metric{l="v"} 1+2x3 _ stale`) follow
//! the series grammar of Prometheus's PromQL parser.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

/// A label set sorted by name, `__name__` included.
pub type Labels = Vec<(String, String)>;

/// One position of a value sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeqValue {
    /// `_`: no sample at this position.
    Omitted,
    Float(f64),
    /// A native histogram (`{{…}}`): understood, never loaded or compared.
    Histogram,
}

/// A line a file could not be read at: the harness, not the engine, is at fault.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    /// 1-based.
    pub line: usize,
    pub msg: String,
}

#[derive(Debug)]
pub struct TestFile {
    pub commands: Vec<Command>,
    /// Lines no command understood; each also fails the eval it belongs to, if any.
    pub errors: Vec<ParseError>,
}

#[derive(Debug)]
pub enum Command {
    Clear,
    Load(Load),
    Eval(Box<Eval>),
}

#[derive(Debug)]
pub struct Load {
    pub interval_ms: i64,
    /// `load_with_nhcb`: classic histograms are also stored as native histograms with custom buckets.
    pub with_nhcb: bool,
    /// One entry per label set; a label set defined twice in one load keeps the later values.
    pub series: Vec<(Labels, Vec<SeqValue>)>,
}

/// How an expected annotation, error or order is matched: an exact message or a regex.
#[derive(Debug, Clone)]
pub enum Expect {
    Message(String),
    Regex(Regex),
}

impl Expect {
    pub fn matches(&self, s: &str) -> bool {
        match self {
            Expect::Message(m) => m == s,
            Expect::Regex(r) => r.is_match(s),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Expect::Message(m) => format!("message {m:?}"),
            Expect::Regex(r) => format!("pattern {:?}", r.as_str()),
        }
    }
}

/// The `expect <kind>` lines of an eval, by kind.
#[derive(Debug, Default, Clone)]
pub struct Expects {
    pub ordered: Vec<Expect>,
    pub fail: Vec<Expect>,
    pub warn: Vec<Expect>,
    pub no_warn: Vec<Expect>,
    pub info: Vec<Expect>,
    pub no_info: Vec<Expect>,
}

/// One `eval` command: a conformance case.
#[derive(Debug, Clone)]
pub struct Eval {
    /// 1-based line of the `eval` line.
    pub line: usize,
    pub query: String,
    pub is_range: bool,
    /// For a range eval (or an instant eval with `expect range vector`) the expected points are at
    /// `start_ms + i * step_ms`, none after `end_ms`.
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
    /// When an instant eval runs: its `at` time, or the end of its `expect range vector`.
    pub eval_ms: i64,
    /// The older forms `eval_fail`, `eval_warn`, `eval_info`, `eval_ordered`.
    pub fail: bool,
    pub warn: bool,
    pub info: bool,
    pub ordered: bool,
    pub expected_fail_message: Option<String>,
    pub expected_fail_regexp: Option<Regex>,
    pub expects: Expects,
    /// A bare number line: the result must be a scalar.
    pub expect_scalar: bool,
    pub scalar: Option<f64>,
    /// Expected series: label set -> (position, for `ordered`; values).
    pub metrics: BTreeMap<Labels, (usize, Vec<SeqValue>)>,
    /// `expect string "…"`; a string result is compared with this (empty if not given).
    pub expected_string: String,
    /// `expect string` and `expect range vector` evals are not re-run as range queries.
    pub exclude_from_range_query: bool,
    /// A `{{…}}` expected value: a native-histogram case.
    pub expects_histogram: bool,
    /// Why a line of this eval's block could not be read (the case then fails).
    pub parse_error: Option<String>,
}

impl Eval {
    fn new(line: usize, query: String) -> Eval {
        Eval {
            line,
            query,
            is_range: false,
            start_ms: 0,
            end_ms: i64::MIN,
            step_ms: 0,
            eval_ms: 0,
            fail: false,
            warn: false,
            info: false,
            ordered: false,
            expected_fail_message: None,
            expected_fail_regexp: None,
            expects: Expects::default(),
            expect_scalar: false,
            scalar: None,
            metrics: BTreeMap::new(),
            expected_string: String::new(),
            exclude_from_range_query: false,
            expects_histogram: false,
            parse_error: None,
        }
    }

    pub fn is_fail(&self) -> bool {
        self.fail || !self.expects.fail.is_empty()
    }

    pub fn is_ordered(&self) -> bool {
        self.ordered || !self.expects.ordered.is_empty()
    }

    /// A short description of where the eval runs, for messages.
    pub fn describe_time(&self) -> String {
        if self.is_range {
            format!("range from {}ms to {}ms step {}ms", self.start_ms, self.end_ms, self.step_ms)
        } else {
            format!("instant at {}ms", self.eval_ms)
        }
    }
}

static LOAD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^load(?:_(with_nhcb))?\s+(.+?)$").unwrap());
static EVAL_INSTANT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$").unwrap());
static EVAL_RANGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$").unwrap()
});
static EXPECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.+))?$").unwrap()
});
static EXPECT_RANGE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^expect range vector\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$").unwrap());
/// What `expect warn` (no `msg:`/`regex:`) matches: any one-line message, as promqltest's `^.*$`.
static MATCH_ANY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^.*$").unwrap());

const EXPECT_RANGE_PREFIX: &str = "expect range vector";
const EXPECT_STRING_PREFIX: &str = "expect string";

/// Lines trimmed, comment lines blanked, as promqltest reads them.
fn lines_of(input: &str) -> Vec<String> {
    input
        .split('\n')
        .map(|l| {
            let l = l.trim();
            if l.starts_with('#') { String::new() } else { l.to_string() }
        })
        .collect()
}

/// Parses a whole file. Never stops early: every line is tried, and each line that cannot be
/// read becomes a [`ParseError`].
pub fn parse_file(input: &str) -> TestFile {
    let lines = lines_of(input);
    let mut file = TestFile { commands: Vec::new(), errors: Vec::new() };
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        if l.is_empty() {
            i += 1;
            continue;
        }
        let word = l.split([' ', '\t']).next().unwrap_or("").to_lowercase();
        if word == "clear" {
            file.commands.push(Command::Clear);
            i += 1;
        } else if word.starts_with("load") {
            match parse_load(&lines, i) {
                Ok((next, load)) => {
                    file.commands.push(Command::Load(load));
                    i = next;
                }
                Err(e) => {
                    file.errors.push(e);
                    i = skip_block(&lines, i);
                }
            }
        } else if word.starts_with("eval") {
            let (next, eval) = parse_eval(&lines, i);
            if let Some(msg) = &eval.parse_error {
                file.errors.push(ParseError { line: eval.line, msg: msg.clone() });
            }
            file.commands.push(Command::Eval(Box::new(eval)));
            i = next;
        } else {
            file.errors.push(ParseError { line: i + 1, msg: format!("invalid command {l:?}") });
            i = skip_block(&lines, i);
        }
    }
    file
}

/// The index of the blank line that ends the block starting at `i` (or the end).
fn skip_block(lines: &[String], mut i: usize) -> usize {
    while i < lines.len() && !lines[i].is_empty() {
        i += 1;
    }
    i
}

/// Parses a `load` block starting at `lines[i]`; returns the index after it.
fn parse_load(lines: &[String], i: usize) -> Result<(usize, Load), ParseError> {
    let err = |line: usize, msg: String| ParseError { line: line + 1, msg };
    let caps =
        LOAD.captures(&lines[i]).ok_or_else(|| err(i, "invalid load command (load[_with_nhcb] <step>)".into()))?;
    let with_nhcb = caps.get(1).is_some();
    let step = &caps[2];
    let interval_ms = parse_duration(step).map_err(|e| err(i, format!("invalid step definition {step:?}: {e}")))?;
    let mut series: Vec<(Labels, Vec<SeqValue>)> = Vec::new();
    let mut j = i + 1;
    while j < lines.len() && !lines[j].is_empty() {
        let def = &lines[j];
        if is_start_timestamp_line(def) {
            return Err(err(j, "`@st` start-timestamp lines are not supported by this harness".into()));
        }
        let (labels, values) = parse_series(def).map_err(|e| err(j, e))?;
        match series.iter_mut().find(|(l, _)| *l == labels) {
            Some(slot) => slot.1 = values,
            None => series.push((labels, values)),
        }
        j += 1;
    }
    Ok((j, Load { interval_ms, with_nhcb, series }))
}

/// promqltest's `metric{…}@st <offsets>` lines (start timestamps), which these files do not use.
fn is_start_timestamp_line(def: &str) -> bool {
    def.split([' ', '\t']).next().is_some_and(|w| w.ends_with("@st")) && def.contains([' ', '\t'])
}

/// Parses an `eval` block starting at `lines[i]`; returns the index after it and the eval, whose
/// `parse_error` says what could not be read.
fn parse_eval(lines: &[String], i: usize) -> (usize, Eval) {
    let header = &lines[i];
    let instant = EVAL_INSTANT.captures(header);
    let range = EVAL_RANGE.captures(header);
    let (modifier, query) = match (&instant, &range) {
        (Some(c), _) => (c.get(1).map(|m| m.as_str()), c[3].to_string()),
        (None, Some(c)) => (c.get(1).map(|m| m.as_str()), c[5].to_string()),
        (None, None) => {
            let query = header.split_once([' ', '\t']).map_or("", |(_, q)| q).to_string();
            let mut ev = Eval::new(i + 1, query);
            ev.parse_error = Some(format!(
                "invalid eval command {header:?}: must be `eval[_fail|_warn|_info|_ordered] instant at <time> <query>` \
                 or `eval[_fail|_warn|_info] range from <t> to <t> step <d> <query>`"
            ));
            return (skip_block(lines, i), ev);
        }
    };
    let mut ev = Eval::new(i + 1, query);
    let header_result = if let Some(c) = &instant {
        let at = c.get(2).map_or("", |m| m.as_str());
        parse_duration(at).map(|t| {
            ev.start_ms = t;
            ev.eval_ms = t;
        })
    } else {
        let c = range.as_ref().unwrap();
        parse_durations(&c[2], &c[3], &c[4]).map(|(from, to, step)| {
            ev.is_range = true;
            ev.start_ms = from;
            ev.end_ms = to;
            ev.step_ms = step;
            ev.eval_ms = to;
        })
    };
    if let Err(e) = header_result {
        ev.parse_error = Some(format!("invalid time in {header:?}: {e}"));
        return (skip_block(lines, i), ev);
    }
    match modifier {
        Some("ordered") => ev.ordered = true,
        Some("fail") => ev.fail = true,
        Some("warn") => ev.warn = true,
        Some("info") => ev.info = true,
        _ => {}
    }
    let mut expect_range_vector = false;
    // The position of an expected series, for `ordered` (promqltest's counter, quirks included).
    let mut pos = 1usize;
    let mut j = i;
    while j + 1 < lines.len() {
        j += 1;
        let def = lines[j].as_str();
        if def.is_empty() {
            return (j, ev);
        }
        let mut line_result = || -> Result<LineEffect, String> {
            if ev.fail && def.starts_with("expected_fail_message") {
                ev.expected_fail_message = Some(def["expected_fail_message".len()..].trim().to_string());
                return Ok(LineEffect::EndBlock);
            }
            if ev.fail && def.starts_with("expected_fail_regexp") {
                let pattern = def["expected_fail_regexp".len()..].trim();
                let re = Regex::new(pattern).map_err(|e| format!("invalid regexp {pattern:?}: {e}"))?;
                ev.expected_fail_regexp = Some(re);
                return Ok(LineEffect::EndBlock);
            }
            if def.starts_with(EXPECT_RANGE_PREFIX) {
                let c = EXPECT_RANGE.captures(def).ok_or_else(|| format!("invalid range vector definition {def:?}"))?;
                let (from, to, step) = parse_durations(&c[1], &c[2], &c[3])?;
                expect_range_vector = true;
                ev.start_ms = from;
                ev.end_ms = to;
                ev.step_ms = step;
                ev.eval_ms = to;
                ev.exclude_from_range_query = true;
                return Ok(LineEffect::Counted);
            }
            if def.starts_with(EXPECT_STRING_PREFIX) {
                ev.expected_string = parse_expect_string(def)?;
                ev.exclude_from_range_query = true;
                return Ok(LineEffect::Counted);
            }
            if def.split(' ').next() == Some("expect") {
                parse_expect(def, &mut ev.expects)?;
                return Ok(LineEffect::NotCounted);
            }
            if let Ok(f) = parse_go_number(def) {
                ev.expect_scalar = true;
                ev.scalar = Some(f);
                return Ok(LineEffect::EndBlock);
            }
            let (labels, values) = parse_series(def)?;
            if values.len() > 1 && !ev.is_range && !expect_range_vector {
                return Err("expecting multiple values in instant evaluation not allowed \
                            (use `expect range vector` for a range vector result)"
                    .into());
            }
            if values.contains(&SeqValue::Histogram) {
                ev.expects_histogram = true;
            }
            ev.expect_scalar = false;
            ev.metrics.insert(labels, (pos, values));
            Ok(LineEffect::Counted)
        };
        match line_result() {
            Ok(LineEffect::EndBlock) => return (j + 1, ev),
            Ok(LineEffect::Counted) => pos += 1,
            Ok(LineEffect::NotCounted) => {}
            Err(e) => {
                if ev.parse_error.is_none() {
                    ev.parse_error = Some(format!("line {}: {e}", j + 1));
                }
            }
        }
    }
    (lines.len(), ev)
}

enum LineEffect {
    /// The line ends the block (a scalar, `expected_fail_…`): the next line is a command again.
    EndBlock,
    /// Counts as a position of the expected result.
    Counted,
    NotCounted,
}

fn parse_durations(from: &str, to: &str, step: &str) -> Result<(i64, i64, i64), String> {
    let f = parse_duration(from).map_err(|e| format!("invalid start timestamp definition {from:?}: {e}"))?;
    let t = parse_duration(to).map_err(|e| format!("invalid end timestamp definition {to:?}: {e}"))?;
    if t < f {
        return Err(format!("end timestamp ({to}) is before start timestamp ({from})"));
    }
    let s = parse_duration(step).map_err(|e| format!("invalid step definition {step:?}: {e}"))?;
    Ok((f, t, s))
}

/// `expect <ordered|fail|warn|no_warn|info|no_info> [msg: <text> | regex: <pattern>]`.
fn parse_expect(def: &str, expects: &mut Expects) -> Result<(), String> {
    let c = EXPECT
        .captures(def.trim())
        .ok_or_else(|| format!("invalid expect statement {def:?}: must be `expect <type> [msg|regex]: <string>`"))?;
    let kind = &c[1];
    let expect = match c.get(2).map(|m| m.as_str()) {
        Some("msg") => Expect::Message(c[3].trim().to_string()),
        Some(_) => {
            let pattern = c[3].trim();
            Expect::Regex(Regex::new(pattern).map_err(|e| format!("invalid regex {pattern:?} for {kind}: {e}"))?)
        }
        None => Expect::Regex(MATCH_ANY.clone()),
    };
    let list = match kind {
        "ordered" => &mut expects.ordered,
        "fail" => &mut expects.fail,
        "warn" => &mut expects.warn,
        "no_warn" => &mut expects.no_warn,
        "info" => &mut expects.info,
        _ => &mut expects.no_info,
    };
    list.push(expect);
    if !expects.info.is_empty() && !expects.no_info.is_empty() {
        return Err("info and no_info cannot be used together".into());
    }
    if !expects.warn.is_empty() && !expects.no_warn.is_empty() {
        return Err("warn and no_warn cannot be used together".into());
    }
    if expects.fail.len() > 1 {
        return Err("multiple expect fail lines are not allowed".into());
    }
    Ok(())
}

/// `expect string "…"`: a Go-quoted string literal.
fn parse_expect_string(def: &str) -> Result<String, String> {
    let quoted = def.strip_prefix("expect string ").unwrap_or("");
    if quoted.is_empty() {
        return Err("expected string literal not valid - a quoted string literal is required".into());
    }
    go_unquote(quoted, false).map_err(|e| format!("expected string literal not valid ({e}): {quoted}"))
}

/// A Prometheus duration (`model.ParseDuration`), in milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    strata_model::parse_prometheus_duration_ms(s).ok_or_else(|| format!("not a valid duration string: {s:?}"))
}

/// promqltest's `parseNumber`: Go's `strconv.ParseInt(s, 0, 64)` (so `0x1f`, `0o17`, `0b101`, and
/// `017` is octal), else `strconv.ParseFloat`.
pub fn parse_go_number(s: &str) -> Result<f64, String> {
    if let Some(i) = parse_go_int(s) {
        return Ok(i as f64);
    }
    parse_go_float(s).ok_or_else(|| format!("error parsing number: {s:?}"))
}

fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from_str_radix(digits, radix).ok()?;
    i64::try_from(if neg { -magnitude } else { magnitude }).ok()
}

/// Go's `strconv.ParseFloat` for the forms these files use: decimals, exponents, `Inf`,
/// `Infinity`, `NaN` in any case, with a sign.
fn parse_go_float(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let ok = body.eq_ignore_ascii_case("inf")
        || body.eq_ignore_ascii_case("infinity")
        || (body.eq_ignore_ascii_case("nan") && body.len() == s.len())
        || (!body.is_empty()
            && body.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')));
    if !ok {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Unquotes a Go string literal: `"…"` with escapes, `` `…` `` raw, and `'…'` (one character, or
/// any number with `multi_char_single` as PromQL allows).
pub fn go_unquote(s: &str, multi_char_single: bool) -> Result<String, String> {
    let quote = s.chars().next().ok_or("empty literal")?;
    if s.len() < 2 || !s.ends_with(quote) || !matches!(quote, '"' | '\'' | '`') {
        return Err(format!("invalid quoted string {s}"));
    }
    let inner = &s[1..s.len() - 1];
    if quote == '`' {
        if inner.contains('`') {
            return Err("unexpected backquote".into());
        }
        return Ok(inner.replace('\r', ""));
    }
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    let mut count = 0usize;
    while let Some(c) = chars.next() {
        count += 1;
        if c == quote || c == '\n' {
            return Err(format!("unescaped {c:?} in {s}"));
        }
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let e = chars.next().ok_or("trailing backslash")?;
        let simple = match e {
            'a' => Some(7u8),
            'b' => Some(8),
            'f' => Some(12),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(11),
            '\\' => Some(b'\\'),
            '\'' | '"' if e == quote => Some(e as u8),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            continue;
        }
        let mut take = |n: usize, radix: u32| -> Result<u32, String> {
            let digits: String = (0..n).filter_map(|_| chars.next()).collect();
            if digits.len() != n {
                return Err(format!("short escape in {s}"));
            }
            u32::from_str_radix(&digits, radix).map_err(|_| format!("invalid escape \\{e}{digits} in {s}"))
        };
        match e {
            'x' => out.push(take(2, 16)? as u8),
            '0'..='7' => {
                let rest = take(2, 8)?;
                let v = (e as u32 - '0' as u32) * 64 + rest;
                out.push(u8::try_from(v).map_err(|_| format!("octal escape out of range in {s}"))?);
            }
            'u' | 'U' => {
                let v = take(if e == 'u' { 4 } else { 8 }, 16)?;
                let c = char::from_u32(v).ok_or_else(|| format!("invalid code point in {s}"))?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => return Err(format!("invalid escape \\{e} in {s}")),
        }
    }
    if quote == '\'' && !multi_char_single && count != 1 {
        return Err(format!("a single-quoted literal holds one character: {s}"));
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Parses a series description: `metric{l="v", …} <values>`, `{__name__="m"} <values>`,
/// `{} <values>`. Labels come back sorted, empty values dropped.
pub fn parse_series(def: &str) -> Result<(Labels, Vec<SeqValue>), String> {
    let mut labels: Labels = Vec::new();
    let bytes = def.as_bytes();
    let mut i = 0;
    let is_name_start = |b: u8| b.is_ascii_alphabetic() || b == b'_' || b == b':';
    let is_name_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    if i < bytes.len() && is_name_start(bytes[i]) {
        let start = i;
        while i < bytes.len() && is_name_char(bytes[i]) {
            i += 1;
        }
        labels.push(("__name__".to_string(), def[start..i].to_string()));
    }
    if i < bytes.len() && bytes[i] == b'{' && !def[i..].starts_with("{{") {
        i = parse_label_block(def, i, &mut labels)?;
    }
    if labels.is_empty() && i == 0 {
        return Err(format!("a series description starts with a metric name or `{{`: {def:?}"));
    }
    if i < bytes.len() && !bytes[i].is_ascii_whitespace() {
        return Err(format!("unexpected {:?} after the series' labels in {def:?}", &def[i..]));
    }
    let values = parse_values(&def[i..]).map_err(|e| format!("{e} in {def:?}"))?;
    labels.retain(|(_, v)| !v.is_empty());
    labels.sort();
    if labels.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(format!("duplicate label name in {def:?}"));
    }
    Ok((labels, values))
}

/// Parses `{…}` starting at `def[open]`; returns the index after `}`.
fn parse_label_block(def: &str, open: usize, labels: &mut Labels) -> Result<usize, String> {
    let b = def.as_bytes();
    let mut i = open + 1;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        match b.get(i) {
            None => return Err(format!("unterminated label set in {def:?}")),
            Some(b'}') => return Ok(i + 1),
            _ => {}
        }
        // A label name (identifier or quoted), or a quoted metric name alone.
        let quoted = matches!(b[i], b'"' | b'\'' | b'`');
        let name = if quoted {
            let (s, next) = read_quoted(def, i)?;
            i = next;
            s
        } else {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            if start == i || b[start].is_ascii_digit() {
                return Err(format!("invalid label name at {:?}", &def[start..]));
            }
            def[start..i].to_string()
        };
        skip_ws(&mut i);
        match b.get(i) {
            Some(b'=') => {
                i += 1;
                skip_ws(&mut i);
                if !matches!(b.get(i), Some(b'"' | b'\'' | b'`')) {
                    return Err(format!("label value must be quoted at {:?}", &def[i..]));
                }
                let (value, next) = read_quoted(def, i)?;
                i = next;
                labels.push((name, value));
            }
            Some(b',' | b'}') if quoted => {
                labels.push(("__name__".to_string(), name));
            }
            _ => return Err(format!("expected `=` after label name {name:?} in {def:?}")),
        }
        skip_ws(&mut i);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return Ok(i + 1),
            _ => return Err(format!("expected `,` or `}}` in label set of {def:?}")),
        }
    }
}

/// Reads a quoted string starting at `def[i]`; returns it unquoted and the index after it.
fn read_quoted(def: &str, i: usize) -> Result<(String, usize), String> {
    let b = def.as_bytes();
    let q = b[i];
    let mut j = i + 1;
    while j < b.len() && b[j] != q {
        if b[j] == b'\\' && q != b'`' {
            j += 1;
        }
        j += 1;
    }
    if j >= b.len() {
        return Err(format!("unterminated quoted string in {def:?}"));
    }
    Ok((go_unquote(&def[i..=j], true)?, j + 1))
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Space,
    Add,
    Sub,
    Times,
    Blank,
    /// A number's text (digits, `Inf`, `NaN`).
    Number(String),
    Stale,
    Histogram,
}

/// Splits a value sequence into tokens, as PromQL's lexer does in series-description mode.
fn lex_values(s: &str) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            _ if c.is_ascii_whitespace() => {
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
                toks.push(Tok::Space);
                continue;
            }
            b'+' => toks.push(Tok::Add),
            b'-' => toks.push(Tok::Sub),
            b'x' => toks.push(Tok::Times),
            b'_' => toks.push(Tok::Blank),
            b'{' if s[i..].starts_with("{{") => {
                let end = s[i..].find("}}").ok_or_else(|| format!("unterminated histogram {:?}", &s[i..]))?;
                check_histogram(&s[i + 2..i + end])?;
                toks.push(Tok::Histogram);
                i += end + 2;
                continue;
            }
            _ if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) => {
                let start = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if i < b.len() && b[i] == b'.' {
                    i += 1;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
                    i += 1;
                    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
                        i += 1;
                    }
                    let digits = i;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    if digits == i {
                        return Err(format!("bad number syntax {:?}", &s[start..i]));
                    }
                }
                if i < b.len() && b[i] != b'x' && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    return Err(format!("bad number syntax {:?}", &s[start..=i]));
                }
                toks.push(Tok::Number(s[start..i].to_string()));
                continue;
            }
            _ if c.is_ascii_alphabetic() => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                    i += 1;
                }
                let word = &s[start..i];
                if word.eq_ignore_ascii_case("inf") || word.eq_ignore_ascii_case("nan") {
                    toks.push(Tok::Number(word.to_string()));
                } else if word == "stale" {
                    toks.push(Tok::Stale);
                } else {
                    return Err(format!("unexpected identifier {word:?} in series values (number or \"stale\")"));
                }
                continue;
            }
            _ => return Err(format!("unexpected character in series sequence: {:?}", c as char)),
        }
        i += 1;
    }
    Ok(toks)
}

/// The fields of a native histogram literal `{{schema:0 sum:5 count:4 buckets:[1 2 1]}}`: checked
/// for shape only, since histograms are never loaded.
fn check_histogram(inner: &str) -> Result<(), String> {
    const KEYS: [&str; 11] = [
        "schema",
        "sum",
        "count",
        "z_bucket",
        "z_bucket_w",
        "buckets",
        "n_buckets",
        "offset",
        "n_offset",
        "custom_values",
        "counter_reset_hint",
    ];
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once(':').ok_or_else(|| format!("bad histogram field {rest:?}"))?;
        let key = key.trim();
        if !KEYS.contains(&key) {
            return Err(format!("unknown histogram field {key:?}"));
        }
        let after = after.trim_start();
        let (value, next) = if let Some(list) = after.strip_prefix('[') {
            let end = list.find(']').ok_or("unterminated histogram bucket list")?;
            for n in list[..end].split_whitespace() {
                parse_go_float(n).ok_or_else(|| format!("bad histogram bucket {n:?}"))?;
            }
            ("", &list[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if !value.is_empty() && key != "counter_reset_hint" && parse_go_float(value).is_none() {
            return Err(format!("bad histogram value {key}:{value}"));
        }
        if key == "counter_reset_hint" && !["unknown", "reset", "not_reset", "gauge"].contains(&value) {
            return Err(format!("bad counter_reset_hint {value:?}"));
        }
        rest = next.trim_start();
    }
    Ok(())
}

/// Expands a value sequence: `1 2 _ 3`, `1+2x3` (1 3 5 7), `1-2x3`, `5x3` (four 5s), `_x3` (three
/// gaps), `stale`, `Inf`, `-Inf`, `NaN`, and histogram forms `{{…}}`, `{{…}}x3`, `{{…}}+{{…}}x3`.
pub fn parse_values(s: &str) -> Result<Vec<SeqValue>, String> {
    let toks = lex_values(s)?;
    let mut out = Vec::new();
    let mut i = 0;
    let number = |t: Option<&Tok>| -> Option<f64> {
        match t {
            Some(Tok::Number(n)) => parse_go_float(n),
            _ => None,
        }
    };
    let uint = |t: Option<&Tok>| -> Result<u64, String> {
        match t {
            Some(Tok::Number(n)) => n.parse::<u64>().map_err(|_| format!("invalid repetition count {n:?}")),
            other => Err(format!("expected a repetition count, got {other:?}")),
        }
    };
    while i < toks.len() {
        match &toks[i] {
            Tok::Space => {
                i += 1;
                continue;
            }
            Tok::Blank => {
                if toks.get(i + 1) == Some(&Tok::Times) {
                    let n = uint(toks.get(i + 2))?;
                    out.extend((0..n).map(|_| SeqValue::Omitted));
                    i += 3;
                } else {
                    out.push(SeqValue::Omitted);
                    i += 1;
                }
            }
            Tok::Histogram => match (toks.get(i + 1), toks.get(i + 2)) {
                (Some(Tok::Times), _) => {
                    let n = uint(toks.get(i + 2))?;
                    out.extend((0..=n).map(|_| SeqValue::Histogram));
                    i += 3;
                }
                (Some(Tok::Add | Tok::Sub), Some(Tok::Histogram)) => {
                    if toks.get(i + 3) != Some(&Tok::Times) {
                        return Err("expected `x<count>` after a histogram increment".into());
                    }
                    let n = uint(toks.get(i + 4))?;
                    out.extend((0..=n).map(|_| SeqValue::Histogram));
                    i += 5;
                }
                _ => {
                    out.push(SeqValue::Histogram);
                    i += 1;
                }
            },
            _ => {
                // series_value: stale | number | signed number.
                let (mut value, mut k) = match &toks[i] {
                    Tok::Stale => (f64::from_bits(strata_tsdb::STALE_NAN_BITS), i + 1),
                    Tok::Number(_) => (number(toks.get(i)).ok_or("bad number")?, i + 1),
                    Tok::Add | Tok::Sub => {
                        let v = number(toks.get(i + 1)).ok_or("expected a number after a sign")?;
                        (if toks[i] == Tok::Sub { -v } else { v }, i + 2)
                    }
                    other => return Err(format!("unexpected {other:?} in series values")),
                };
                match toks.get(k) {
                    Some(Tok::Times) => {
                        let n = uint(toks.get(k + 1))?;
                        out.extend((0..=n).map(|_| SeqValue::Float(value)));
                        k += 2;
                    }
                    Some(Tok::Add | Tok::Sub) => {
                        let delta = number(toks.get(k + 1)).ok_or("expected a number after `+`/`-`")?;
                        let delta = if toks[k] == Tok::Sub { -delta } else { delta };
                        if toks.get(k + 2) != Some(&Tok::Times) {
                            return Err("expected `x<count>` after an increment".into());
                        }
                        let n = uint(toks.get(k + 3))?;
                        for _ in 0..=n {
                            out.push(SeqValue::Float(value));
                            value += delta;
                        }
                        k += 4;
                    }
                    _ => out.push(SeqValue::Float(value)),
                }
                i = k;
            }
        }
        if i < toks.len() && toks[i] != Tok::Space {
            return Err(format!("unexpected {:?} after a value (values are separated by spaces)", toks[i]));
        }
    }
    Ok(out)
}
