//! PromQL conformance: Prometheus's own promqltest cases (`/work/shared/conformance/promql/*.test`,
//! outside this repository) run against Strata's engine with promqltest's rules.
//!
//! - Every `eval` is a case. An instant eval runs the query at its time; then, unless the query
//!   calls a time-dependent function, the query with each selector pinned `@` that time at four
//!   or five other times; and each of these as a range query from t-1m to t+1m whose step at t must
//!   give the same result (not for `expect ordered`, `expect string`, `expect range vector`, or
//!   queries using `start()`, `end()`, `range()`, `step()`). A range eval runs one range query.
//! - Values match with a relative error of 1e-6 (NaN equals NaN, a staleness marker only a
//!   staleness marker), label sets exactly, series in any order unless `expect ordered`.
//!   Annotations are checked when the eval says something about them (`expect warn`, `no_warn`,
//!   `info`, `no_info`, `eval_warn`, `eval_info`); `expect fail` needs an error (matching its
//!   `msg:`/`regex:` if given).
//! - Cases touching native histograms are skipped (never passed): all of `native_histograms.test`,
//!   evals expecting a `{{…}}` value, and evals whose selectors match a series loaded with `{{…}}`
//!   points or made by `load_with_nhcb` from a classic histogram.
//! - `conformance/known_failures.txt` lists the cases failing today as `<file>:<line> <query>`.
//!   The test fails when another case fails (a regression) or a listed case no longer fails (take
//!   it off the list). `STRATA_CONFORMANCE_UPDATE=1` rewrites the list from this run instead.
//! - A line of a `.test` file the harness cannot read fails the test whatever the list says.
//!
//! The per-file table goes to stdout (`--nocapture`) and `$CARGO_TARGET_TMPDIR/conformance.txt`,
//! every failure with its reason to `$CARGO_TARGET_TMPDIR/conformance-failures.txt`, every skipped
//! case with the reason to `conformance-skipped.txt` there.

#[path = "conformance/check.rs"]
mod check;
#[path = "conformance/runner.rs"]
mod runner;
#[path = "conformance/testfile.rs"]
mod testfile;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use runner::{CaseResult, FileResult, Outcome};

/// The file whose cases are all out of scope for now.
const NATIVE_HISTOGRAMS_FILE: &str = "native_histograms.test";
/// How many unexpected results are printed in detail, and how long each part may be.
const MAX_DETAILED: usize = 30;
const MAX_PART_CHARS: usize = 600;

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/promql")
}

fn known_failures_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/known_failures.txt")
}

fn case_key(file: &str, line: usize, query: &str) -> String {
    format!("{file}:{line} {query}")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max).collect();
    format!("{cut}… ({} chars)", s.chars().count())
}

fn indent(s: &str, prefix: &str) -> String {
    s.lines().map(|l| format!("{prefix}{l}")).collect::<Vec<_>>().join("\n")
}

/// Reads `known_failures.txt`: one `<file>:<line> <query>` per line; `#` comments and blank lines
/// ignored.
fn parse_known_failures(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(String::from)
        .collect()
}

fn render_known_failures(keys: &[String]) -> String {
    let mut out = String::from(
        "# PromQL conformance cases that fail today, as `<file>:<line> <query>` (line of the eval).\n\
         # The conformance test (tests/conformance.rs) fails when a case not listed here fails, and when\n\
         # a listed case passes: take it off the list. Regenerate with\n\
         #   STRATA_CONFORMANCE_UPDATE=1 cargo test -p strata-query --test conformance\n",
    );
    for k in keys {
        out.push_str(k);
        out.push('\n');
    }
    out
}

fn describe_case(file: &str, c: &CaseResult) -> String {
    let mut s = format!("{} [{}]\n", case_key(file, c.line, &c.query), c.ev.describe_time());
    if let Outcome::Failed(reason) = &c.outcome {
        let _ = writeln!(s, "  reason:   {}", truncate(reason, MAX_PART_CHARS));
    }
    let _ = writeln!(s, "  expected:\n{}", indent(&truncate(&check::fmt_expected(&c.ev), MAX_PART_CHARS), "    "));
    if let Some(got) = &c.got {
        let _ = writeln!(s, "  got:      {}", truncate(got, MAX_PART_CHARS));
    }
    s
}

#[derive(Default)]
struct Counts {
    cases: usize,
    passed: usize,
    failed: usize,
    skipped: usize,
}

impl Counts {
    fn add(&mut self, o: &Outcome) {
        self.cases += 1;
        match o {
            Outcome::Passed => self.passed += 1,
            Outcome::Failed(_) => self.failed += 1,
            Outcome::Skipped(_) => self.skipped += 1,
        }
    }

    fn rate(&self) -> String {
        let in_scope = self.cases - self.skipped;
        if in_scope == 0 { "-".into() } else { format!("{:.1}%", 100.0 * self.passed as f64 / in_scope as f64) }
    }
}

fn table(results: &[(String, FileResult)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<26} {:>6} {:>7} {:>7} {:>8} {:>10}",
        "file", "cases", "passed", "failed", "skipped", "in-scope %"
    );
    let mut total = Counts::default();
    for (name, r) in results {
        let mut c = Counts::default();
        for case in &r.cases {
            c.add(&case.outcome);
            total.add(&case.outcome);
        }
        let _ = writeln!(
            out,
            "{name:<26} {:>6} {:>7} {:>7} {:>8} {:>10}",
            c.cases,
            c.passed,
            c.failed,
            c.skipped,
            c.rate()
        );
    }
    let _ = writeln!(
        out,
        "{:<26} {:>6} {:>7} {:>7} {:>8} {:>10}",
        "total",
        total.cases,
        total.passed,
        total.failed,
        total.skipped,
        total.rate()
    );
    let _ = writeln!(
        out,
        "in scope: {} cases, {} passed ({}); skipped (native histograms): {}",
        total.cases - total.skipped,
        total.passed,
        total.rate(),
        total.skipped
    );
    out
}

#[test]
fn promql_conformance() {
    let started = Instant::now();
    let dir = cases_dir();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "PromQL conformance cases not found: looked in {} ({}): {e}",
            dir.display(),
            dir.canonicalize().map_or_else(|_| "does not resolve".into(), |p| p.display().to_string())
        )
    });
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.test files in {}", dir.display());

    let results: Vec<(String, FileResult)> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .iter()
            .map(|path| {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
                std::thread::Builder::new()
                    .name(format!("{}{name}", runner::WORKER_PREFIX))
                    .stack_size(64 << 20)
                    .spawn_scoped(scope, move || {
                        let all_skipped = name == NATIVE_HISTOGRAMS_FILE;
                        let r = runner::run_file(&name, &text, all_skipped);
                        (name, r)
                    })
                    .unwrap()
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a conformance worker panicked outside the engine")).collect()
    });

    let report = table(&results);
    println!("\nPromQL conformance ({} files from {})\n{report}", results.len(), dir.display());

    // Every failure, for the engine's author.
    let mut all_failures = String::new();
    let mut all_skipped = String::new();
    let mut current: Vec<String> = Vec::new();
    let mut outcomes: BTreeMap<String, &Outcome> = BTreeMap::new();
    for (name, r) in &results {
        for c in &r.cases {
            let key = case_key(name, c.line, &c.query);
            match &c.outcome {
                Outcome::Failed(_) => {
                    current.push(key.clone());
                    all_failures.push_str(&describe_case(name, c));
                }
                Outcome::Skipped(why) => {
                    let _ = writeln!(all_skipped, "{key}\n  skipped: {why}");
                }
                Outcome::Passed => {}
            }
            outcomes.insert(key, &c.outcome);
        }
    }
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let _ = std::fs::create_dir_all(tmp);
    let _ = std::fs::write(tmp.join("conformance.txt"), &report);
    let _ = std::fs::write(tmp.join("conformance-failures.txt"), &all_failures);
    let _ = std::fs::write(tmp.join("conformance-skipped.txt"), &all_skipped);

    let harness_errors: Vec<&String> = results.iter().flat_map(|(_, r)| &r.harness_errors).collect();
    let no_variants: Vec<&String> = results.iter().flat_map(|(_, r)| &r.no_at_variants).collect();
    if !no_variants.is_empty() {
        println!(
            "note: {} instant case(s) ran without their `@` variants (promql-parser cannot print them back):",
            no_variants.len()
        );
        for n in &no_variants {
            println!("  {}", truncate(n, MAX_PART_CHARS));
        }
    }

    let update = std::env::var("STRATA_CONFORMANCE_UPDATE").is_ok_and(|v| v == "1");
    let list_path = known_failures_path();
    let mut problems = Vec::new();
    if !harness_errors.is_empty() {
        println!("\nlines of the .test files the harness cannot read ({}):", harness_errors.len());
        for e in &harness_errors {
            println!("  {}", truncate(e, MAX_PART_CHARS));
        }
        problems.push(format!("{} unreadable line(s) in the .test files", harness_errors.len()));
    }

    if update {
        std::fs::write(&list_path, render_known_failures(&current))
            .unwrap_or_else(|e| panic!("writing {}: {e}", list_path.display()));
        println!("wrote {} known failures to {}", current.len(), list_path.display());
    } else {
        let listed = match std::fs::read_to_string(&list_path) {
            Ok(text) => parse_known_failures(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("reading {}: {e}", list_path.display()),
        };
        let listed_set: BTreeSet<&String> = listed.iter().collect();
        let unexpected: Vec<(&String, &CaseResult)> = results
            .iter()
            .flat_map(|(name, r)| r.cases.iter().map(move |c| (name, c)))
            .filter(|(name, c)| {
                matches!(c.outcome, Outcome::Failed(_)) && !listed_set.contains(&case_key(name, c.line, &c.query))
            })
            .collect();
        let stale: Vec<(&String, &str)> = listed
            .iter()
            .filter_map(|k| match outcomes.get(k) {
                Some(Outcome::Failed(_)) => None,
                Some(Outcome::Passed) => Some((k, "passes now")),
                Some(Outcome::Skipped(_)) => Some((k, "is skipped")),
                None => Some((k, "is no case of the .test files")),
            })
            .collect();
        if !unexpected.is_empty() {
            println!("\n{} case(s) fail that known_failures.txt does not list:", unexpected.len());
            for (name, c) in unexpected.iter().take(MAX_DETAILED) {
                println!("{}", describe_case(name, c));
            }
            if unexpected.len() > MAX_DETAILED {
                println!(
                    "… and {} more (all failures: {})",
                    unexpected.len() - MAX_DETAILED,
                    tmp.join("conformance-failures.txt").display()
                );
            }
            problems.push(format!("{} case(s) fail that are not in known_failures.txt", unexpected.len()));
        }
        if !stale.is_empty() {
            println!("\n{} case(s) listed in known_failures.txt no longer fail; take them off the list:", stale.len());
            for (k, why) in &stale {
                println!("  {} — {why}", truncate(k, MAX_PART_CHARS));
            }
            problems.push(format!("{} listed case(s) no longer fail", stale.len()));
        }
    }
    println!("conformance run took {:.2?}", started.elapsed());
    assert!(
        problems.is_empty(),
        "PromQL conformance: {} (see the output above with --nocapture; \
         STRATA_CONFORMANCE_UPDATE=1 rewrites known_failures.txt)",
        problems.join("; ")
    );
}

/// Every line of every `.test` file is understood: no unknown command, series line, value or
/// expectation.
#[test]
fn every_test_file_parses() {
    let dir = cases_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        panic!("PromQL conformance cases not found: looked in {}", dir.display());
    };
    let mut errors = Vec::new();
    let mut evals = 0;
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "test"))
    {
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed = testfile::parse_file(&text);
        evals += parsed.commands.iter().filter(|c| matches!(c, testfile::Command::Eval(_))).count();
        for e in parsed.errors {
            errors.push(format!("{}:{}: {}", path.file_name().unwrap().to_string_lossy(), e.line, e.msg));
        }
    }
    assert!(errors.is_empty(), "unreadable lines:\n{}", errors.join("\n"));
    assert!(evals > 1000, "only {evals} evals found");
}

#[cfg(test)]
mod parser_tests {
    use super::testfile::*;

    fn floats(s: &str) -> Vec<Option<f64>> {
        parse_values(s)
            .unwrap_or_else(|e| panic!("{s:?}: {e}"))
            .into_iter()
            .map(|v| match v {
                SeqValue::Float(f) => Some(f),
                SeqValue::Omitted => None,
                SeqValue::Histogram => panic!("histogram"),
            })
            .collect()
    }

    #[test]
    fn value_expansion() {
        assert_eq!(floats("1+2x3"), vec![Some(1.0), Some(3.0), Some(5.0), Some(7.0)]);
        assert_eq!(floats("10-2x2"), vec![Some(10.0), Some(8.0), Some(6.0)]);
        assert_eq!(floats("-1-1x2"), vec![Some(-1.0), Some(-2.0), Some(-3.0)]);
        assert_eq!(floats("5x2"), vec![Some(5.0); 3]);
        assert_eq!(floats("1x0"), vec![Some(1.0)]);
        assert_eq!(floats("_x3 1 _ 2"), vec![None, None, None, Some(1.0), None, Some(2.0)]);
        assert_eq!(floats("0+1.5x2"), vec![Some(0.0), Some(1.5), Some(3.0)]);
        assert_eq!(floats("1e3 .5 -2.5E-1 +3"), vec![Some(1000.0), Some(0.5), Some(-0.25), Some(3.0)]);
        assert_eq!(
            floats("Inf -Inf +Inf inf"),
            vec![Some(f64::INFINITY), Some(f64::NEG_INFINITY), Some(f64::INFINITY), Some(f64::INFINITY)]
        );
        assert!(floats("NaN")[0].unwrap().is_nan());
        assert_eq!(floats("\t1 \t 2\t"), vec![Some(1.0), Some(2.0)]);
        assert_eq!(floats(""), vec![]);
        // Repeated addition, as promqltest accumulates.
        let acc = floats("0+0.1x3");
        assert_eq!(acc[3], Some(0.1 + 0.1 + 0.1));
        let stale = parse_values("1 stale 2").unwrap();
        assert!(matches!(stale[1], SeqValue::Float(f) if f.to_bits() == strata_tsdb::STALE_NAN_BITS));
    }

    #[test]
    fn value_errors() {
        for bad in ["1+2", "abc", "1m", "1 x3", "_x", "1+2x", "1..2", "stalex3", "1,2"] {
            assert!(parse_values(bad).is_err(), "{bad:?} should not parse: {:?}", parse_values(bad));
        }
    }

    #[test]
    fn histogram_values() {
        let v = parse_values("{{schema:0 sum:5 count:4 buckets:[1 2 1]}} {{count:1 z_bucket:1}}x2 _").unwrap();
        assert_eq!(
            v,
            vec![SeqValue::Histogram, SeqValue::Histogram, SeqValue::Histogram, SeqValue::Histogram, SeqValue::Omitted]
        );
        let v = parse_values(
            "{{schema:-53 sum:1 count:1 custom_values:[5 10] buckets:[1]}}+{{sum:1 count:1 buckets:[1]}}x3",
        )
        .unwrap();
        assert_eq!(v.len(), 4);
        let v = parse_values("{{counter_reset_hint:gauge n_buckets:[1 -2] n_offset:-1 offset:2 z_bucket_w:0.001}}")
            .unwrap();
        assert_eq!(v, vec![SeqValue::Histogram]);
        assert!(parse_values("{{bogus:1}}").is_err());
    }

    #[test]
    fn series_descriptions() {
        let (l, v) =
            parse_series(r#"http_requests{job="api-server", instance="0", group="production"}	0+10x2"#).unwrap();
        assert_eq!(
            l,
            vec![
                ("__name__".to_string(), "http_requests".to_string()),
                ("group".into(), "production".into()),
                ("instance".into(), "0".into()),
                ("job".into(), "api-server".into())
            ]
        );
        assert_eq!(v.len(), 3);
        let (l, v) = parse_series("{} 1").unwrap();
        assert!(l.is_empty());
        assert_eq!(v, vec![SeqValue::Float(1.0)]);
        let (l, _) = parse_series(r#"{__name__="x", a="b c", d='e'} 1"#).unwrap();
        assert_eq!(l, vec![("__name__".into(), "x".into()), ("a".into(), "b c".into()), ("d".into(), "e".into())]);
        let (l, _) = parse_series(r#"{"some.metric", "utf8.label"="v\"q\\", b=""} 1"#).unwrap();
        assert_eq!(l, vec![("__name__".into(), "some.metric".into()), ("utf8.label".into(), "v\"q\\".into())]);
        let (l, v) = parse_series("metric:with:colons").unwrap();
        assert_eq!(l, vec![("__name__".into(), "metric:with:colons".into())]);
        assert!(v.is_empty());
        let (l, _) = parse_series(r#"foo{a="1",} 1"#).unwrap();
        assert_eq!(l.len(), 2);
        assert!(parse_series(r#"foo{a="1" 1"#).is_err());
        assert!(parse_series(r#"foo{a=1} 1"#).is_err());
        assert!(parse_series(r#"foo{a="1",a="2"} 1"#).is_err());
        assert!(parse_series("1 2").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Ok(0));
        assert_eq!(parse_duration("50m"), Ok(3_000_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("9m10s"), Ok(550_000));
        assert_eq!(parse_duration("100ms"), Ok(100));
        assert_eq!(parse_duration("1d"), Ok(86_400_000));
        assert_eq!(parse_duration("1y"), Ok(365 * 86_400_000));
        for bad in ["", "5", "1m1h", "1.5m", "-1m", "1m1m", "m"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn numbers_and_strings() {
        assert_eq!(parse_go_number("1"), Ok(1.0));
        assert_eq!(parse_go_number("-2.5"), Ok(-2.5));
        assert_eq!(parse_go_number("0x10"), Ok(16.0));
        assert_eq!(parse_go_number("010"), Ok(8.0));
        assert_eq!(parse_go_number("1e3"), Ok(1000.0));
        assert_eq!(parse_go_number("-Inf"), Ok(f64::NEG_INFINITY));
        assert!(parse_go_number("NaN").unwrap().is_nan());
        for bad in ["{} 1", "foo", "1 2", "", "stale"] {
            assert!(parse_go_number(bad).is_err(), "{bad:?}");
        }
        assert_eq!(go_unquote(r#""a\"b\n\x41\u00e9""#, false).as_deref(), Ok("a\"b\nAé"));
        assert_eq!(go_unquote("`raw\\n`", false).as_deref(), Ok("raw\\n"));
        assert_eq!(go_unquote("'x'", false).as_deref(), Ok("x"));
        assert!(go_unquote("'xy'", false).is_err());
        assert_eq!(go_unquote("'xy'", true).as_deref(), Ok("xy"));
        assert!(go_unquote(r#""a"b""#, false).is_err());
        assert!(go_unquote(r#""\q""#, false).is_err());
    }

    fn only_eval(text: &str) -> Eval {
        let f = parse_file(text);
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        let evals: Vec<Eval> = f
            .commands
            .into_iter()
            .filter_map(|c| match c {
                Command::Eval(e) => Some(*e),
                _ => None,
            })
            .collect();
        assert_eq!(evals.len(), 1);
        evals.into_iter().next().unwrap()
    }

    #[test]
    fn file_structure() {
        let f = parse_file(
            "# comment\nload 5m\n  a{x=\"1\"} 1 2\n  a{x=\"1\"} 3\n  b 0+1x2\n\nclear\nload_with_nhcb 1m\n  h_bucket{le=\"1\"} 1\n\n\
             eval instant at 10m a\n  a{x=\"1\"} 3\n",
        );
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        assert_eq!(f.commands.len(), 4);
        let Command::Load(load) = &f.commands[0] else { panic!() };
        assert_eq!(load.interval_ms, 300_000);
        assert_eq!(load.series.len(), 2, "a later definition of a series replaces the earlier");
        assert_eq!(load.series[0].1, vec![SeqValue::Float(3.0)]);
        assert!(matches!(f.commands[1], Command::Clear));
        let Command::Load(load) = &f.commands[2] else { panic!() };
        assert!(load.with_nhcb);
        let f = parse_file("lode 5m\n\nfoo bar\n");
        assert_eq!(f.errors.len(), 2, "{:?}", f.errors);
        assert!(parse_file("frobnicate\n").errors[0].msg.contains("invalid command"));
    }

    #[test]
    fn comment_ends_a_block() {
        let f = parse_file("load 1m\n  a 1\n# c\n  b 1\n");
        // `b 1` follows a comment, which counts as a blank line: it is a command of its own.
        assert_eq!(f.errors.len(), 1);
    }

    #[test]
    fn eval_instant_with_expectations() {
        let ev = only_eval(
            "eval instant at 50m sum by (job) (foo)\n  expect no_warn\n  expect info msg: PromQL info: x (1:5)\n  \
             {job=\"a\"} 1\n  {job=\"b\"} NaN\n",
        );
        assert_eq!(ev.line, 1);
        assert_eq!(ev.query, "sum by (job) (foo)");
        assert_eq!(ev.eval_ms, 3_000_000);
        assert!(!ev.is_range && !ev.is_fail() && !ev.expect_scalar);
        assert_eq!(ev.expects.no_warn.len(), 1);
        assert!(ev.expects.info[0].matches("PromQL info: x (1:5)"));
        assert!(!ev.expects.info[0].matches("PromQL info: x (1:6)"));
        assert_eq!(ev.metrics.len(), 2);
        assert_eq!(ev.metrics[&vec![("job".to_string(), "a".to_string())]].0, 1);
        assert_eq!(ev.metrics[&vec![("job".to_string(), "b".to_string())]].0, 2);
    }

    #[test]
    fn eval_forms() {
        let ev = only_eval("eval range from 0 to 10m step 5m rate(x[5m])\n  {} 1 _ 3\n");
        assert!(ev.is_range);
        assert_eq!((ev.start_ms, ev.end_ms, ev.step_ms), (0, 600_000, 300_000));
        assert_eq!(ev.metrics[&vec![]].1, vec![SeqValue::Float(1.0), SeqValue::Omitted, SeqValue::Float(3.0)]);

        let ev = only_eval("eval instant at 1m 1 + 1\n  2\n");
        assert!(ev.expect_scalar);
        assert_eq!(ev.scalar, Some(2.0));

        let ev = only_eval("eval instant at 0 topk(NaN, x)\n  expect fail msg: Parameter value is NaN\n");
        assert!(ev.is_fail());
        assert!(ev.expects.fail[0].matches("Parameter value is NaN"));

        let ev = only_eval("eval instant at 0 x\n  expect fail regex: bad .*\n");
        assert!(ev.expects.fail[0].matches("very bad thing"));

        let ev = only_eval("eval_fail instant at 0 x\n  expected_fail_message boom\n");
        assert!(ev.fail);
        assert_eq!(ev.expected_fail_message.as_deref(), Some("boom"));

        let ev = only_eval("eval_ordered instant at 1m sort(x)\n  x{a=\"2\"} 1\n  x{a=\"1\"} 2\n");
        assert!(ev.is_ordered());

        let ev = only_eval("eval instant at 1m sort(x)\n  expect ordered\n  expect warn\n  x{a=\"2\"} 1\n");
        assert!(ev.is_ordered());
        assert_eq!(ev.metrics.values().next().unwrap().0, 1, "expect lines take no position");
        assert!(ev.expects.warn[0].matches("anything"));

        let ev = only_eval("eval instant at 1m \"Foo\"\n  expect string \"Foo\"\n");
        assert_eq!(ev.expected_string, "Foo");
        assert!(ev.exclude_from_range_query);

        let ev = only_eval("eval instant at 1m x[1m]\n  expect range vector from 10s to 1m step 10s\n  x 1 2 3\n");
        assert_eq!((ev.start_ms, ev.end_ms, ev.step_ms, ev.eval_ms), (10_000, 60_000, 10_000, 60_000));
        assert!(ev.exclude_from_range_query);
        assert_eq!(ev.metrics.values().next().unwrap().0, 2, "`expect range vector` takes a position");

        let ev = only_eval("eval instant at 1m x\n  {} {{schema:0 sum:1 count:1}}\n");
        assert!(ev.expects_histogram);

        let ev = only_eval("eval instant at 1m x\n");
        assert!(ev.metrics.is_empty() && !ev.expect_scalar);
    }

    #[test]
    fn eval_errors_fail_the_case() {
        for text in [
            "eval instant at 1m x\n  x 1 2\n",
            "eval instant at 1x x\n",
            "eval range from 5m to 1m step 1m x\n",
            "eval instant at 1m x\n  expect warn\n  expect no_warn\n",
            "eval instant at 1m x\n  expect fail\n  expect fail\n",
            "eval instant at 1m x\n  expect sometimes\n",
            "eval instant at 1m x\n  expect string Foo\n",
            "eval sometime x\n",
        ] {
            let f = parse_file(text);
            assert_eq!(f.errors.len(), 1, "{text:?}: {:?}", f.errors);
            let Some(Command::Eval(ev)) = f.commands.first() else { panic!("{text:?}: no eval") };
            assert!(ev.parse_error.is_some(), "{text:?}");
        }
    }
}

#[cfg(test)]
mod check_tests {
    use strata_query::{Annotations, Sample, Series, Value};

    use super::check::*;
    use super::testfile::*;

    fn eval(text: &str) -> Eval {
        let f = parse_file(text);
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        match f.commands.into_iter().next() {
            Some(Command::Eval(e)) => *e,
            _ => panic!(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        v.sort();
        v
    }

    fn vector(samples: &[(&[(&str, &str)], f64)]) -> Value {
        Value::Vector(samples.iter().map(|(l, v)| Sample { labels: labels(l), t: 0, v: *v }).collect())
    }

    #[test]
    fn float_equality() {
        assert!(almost_equal(1.0, 1.0 + 1e-9, EPSILON));
        assert!(!almost_equal(1.0, 1.001, EPSILON));
        assert!(almost_equal(f64::NAN, f64::NAN, EPSILON));
        let stale = f64::from_bits(strata_tsdb::STALE_NAN_BITS);
        assert!(almost_equal(stale, stale, EPSILON));
        assert!(!almost_equal(stale, f64::NAN, EPSILON));
        assert!(almost_equal(f64::INFINITY, f64::INFINITY, EPSILON));
        assert!(!almost_equal(f64::INFINITY, f64::NEG_INFINITY, EPSILON));
        assert!(!almost_equal(0.0, 1e-300, EPSILON));
        assert!(almost_equal(0.0, -0.0, EPSILON));
    }

    #[test]
    fn vectors_unordered_unless_ordered() {
        let ev = eval("eval instant at 0 x\n  x{a=\"1\"} 1\n  x{a=\"2\"} 2\n");
        let got = vector(&[(&[("__name__", "x"), ("a", "2")], 2.0), (&[("__name__", "x"), ("a", "1")], 1.0000000001)]);
        assert_eq!(compare_result(&ev, &got), Ok(()));
        let ordered = eval("eval_ordered instant at 0 x\n  x{a=\"1\"} 1\n  x{a=\"2\"} 2\n");
        assert!(compare_result(&ordered, &got).is_err());
        assert!(
            compare_result(&ev, &vector(&[(&[("__name__", "x"), ("a", "1")], 1.0)])).unwrap_err().contains("not found")
        );
        assert!(compare_result(&ev, &vector(&[(&[("a", "1")], 1.0)])).unwrap_err().contains("unexpected metric"));
        let empty = eval("eval instant at 0 x\n");
        assert_eq!(compare_result(&empty, &Value::Vector(vec![])), Ok(()));
        assert!(compare_result(&empty, &Value::Scalar { t: 0, v: 1.0 }).is_err());
    }

    #[test]
    fn scalars_strings_matrices() {
        let ev = eval("eval instant at 0 1\n  1\n");
        assert_eq!(compare_result(&ev, &Value::Scalar { t: 0, v: 1.0 }), Ok(()));
        assert!(compare_result(&ev, &Value::Scalar { t: 0, v: 2.0 }).is_err());
        assert!(compare_result(&ev, &vector(&[])).is_err());

        let ev = eval("eval instant at 0 \"a\"\n  expect string \"a\"\n");
        assert_eq!(compare_result(&ev, &Value::String { t: 0, s: "a".into() }), Ok(()));
        assert!(compare_result(&ev, &Value::String { t: 0, s: "b".into() }).is_err());

        let ev = eval("eval range from 0 to 2m step 1m x\n  x 1 _ 3\n");
        let series =
            |points: Vec<(i64, f64)>| Value::Matrix(vec![Series { labels: labels(&[("__name__", "x")]), points }]);
        assert_eq!(compare_result(&ev, &series(vec![(0, 1.0), (120_000, 3.0)])), Ok(()));
        assert!(compare_result(&ev, &series(vec![(0, 1.0), (60_000, 3.0)])).is_err());
        assert!(compare_result(&ev, &series(vec![(0, 1.0), (60_000, 2.0), (120_000, 3.0)])).is_err());
        let unsorted = Value::Matrix(vec![
            Series { labels: labels(&[("__name__", "y")]), points: vec![] },
            Series { labels: labels(&[("__name__", "x")]), points: vec![] },
        ]);
        assert!(compare_result(&ev, &unsorted).unwrap_err().contains("sorted"));
        let too_many = eval("eval range from 0 to 1m step 1m x\n  x 1 2 3\n");
        assert!(compare_result(&too_many, &series(vec![(0, 1.0), (60_000, 2.0)])).is_err());
    }

    #[test]
    fn annotations() {
        let a = |w: &[&str], i: &[&str]| Annotations {
            warnings: w.iter().map(|s| s.to_string()).collect(),
            infos: i.iter().map(|s| s.to_string()).collect(),
        };
        let none = eval("eval instant at 0 x\n");
        assert_eq!(check_annotations(&none, &a(&["w"], &["i"])), Ok(()));
        let no_warn = eval("eval instant at 0 x\n  expect no_warn\n");
        assert!(check_annotations(&no_warn, &a(&["w"], &[])).is_err());
        assert_eq!(check_annotations(&no_warn, &a(&[], &["i"])), Ok(()));
        let warn = eval("eval instant at 0 x\n  expect warn msg: PromQL warning: w\n");
        assert_eq!(check_annotations(&warn, &a(&["PromQL warning: w"], &[])), Ok(()));
        assert!(check_annotations(&warn, &a(&["PromQL warning: w", "PromQL warning: v"], &[])).is_err());
        assert!(check_annotations(&warn, &a(&[], &[])).is_err());
        let info = eval("eval instant at 0 x\n  expect info regex: counter\n");
        assert_eq!(check_annotations(&info, &a(&[], &["not a counter"])), Ok(()));
        let old = eval("eval_warn instant at 0 x\n");
        assert!(check_annotations(&old, &a(&[], &[])).is_err());
    }

    #[test]
    fn expected_failures() {
        let any = eval("eval instant at 0 x\n  expect fail\n");
        assert_eq!(check_expected_failure(&any, "anything"), Ok(()));
        assert!(check_expected_failure(&any, "two\nlines").is_err(), "promqltest's default pattern is ^.*$");
        let msg = eval("eval instant at 0 x\n  expect fail msg: exact\n");
        assert!(check_expected_failure(&msg, "exact!").is_err());
    }

    #[test]
    fn known_failures_file_round_trips() {
        let keys = vec!["a.test:3 sum(x)".to_string(), "b.test:10 rate(y[5m]) # not a comment".to_string()];
        let text = super::render_known_failures(&keys);
        assert_eq!(super::parse_known_failures(&text), keys);
    }
}
