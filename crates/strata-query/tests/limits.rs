//! What a query may cost, and the errors bad queries get: each limit is an error of Prometheus's
//! kind, reached before the memory it guards is spent.

use std::time::Duration;

use strata_query::{Engine, Limits, MemStorage, QueryError, Value};

fn storage(series: usize, points: i64) -> MemStorage {
    let mut s = MemStorage::new();
    for i in 0..series {
        for t in 0..points {
            let labels = vec![("__name__".to_string(), "m".to_string()), ("i".to_string(), i.to_string())];
            s.add(labels, t * 15_000, t as f64);
        }
    }
    s
}

fn engine(f: impl FnOnce(&mut Limits)) -> Engine {
    let mut limits = Limits::default();
    f(&mut limits);
    Engine::new(limits)
}

#[test]
fn samples_past_the_limit_are_an_execution_error() {
    let s = storage(10, 100);
    let e = engine(|l| l.max_samples = 500);
    let err = e.range(&s, "m", 0, 1_500_000, 15_000).unwrap_err();
    assert_eq!(err, QueryError::TooManySamples);
    assert_eq!(err.kind(), "execution");
    // Under the limit the same query answers.
    let e = engine(|l| l.max_samples = 10_000);
    assert!(matches!(e.range(&s, "m", 0, 1_500_000, 15_000).unwrap().value, Value::Matrix(m) if m.len() == 10));
}

#[test]
fn a_subquery_grid_past_the_limit_is_refused_before_it_is_built() {
    let s = storage(1, 10);
    let e = engine(|l| l.max_samples = 1_000_000);
    // A thousand days at one-second resolution: 86 million steps.
    let err = e.instant(&s, "count_over_time(vector(1)[1000d:1s])", 0).unwrap_err();
    assert_eq!(err, QueryError::TooManySamples);
}

#[test]
fn many_groups_over_many_steps_meet_the_limit() {
    let s = storage(50, 100);
    let e = engine(|l| l.max_samples = 4_000);
    let err = e.range(&s, "sum by (i) (m)", 0, 1_485_000, 15_000).unwrap_err();
    assert_eq!(err, QueryError::TooManySamples);
}

#[test]
fn too_many_points_and_bad_steps_are_bad_data() {
    let s = storage(1, 10);
    let e = Engine::default();
    let err = e.range(&s, "m", 0, 11_001 * 1000, 1000).unwrap_err();
    assert_eq!(err.kind(), "bad_data");
    assert!(err.to_string().contains("exceeded maximum resolution of 11,000 points per timeseries"), "{err}");
    assert!(e.range(&s, "m", 0, 11_000 * 1000, 1000).is_ok(), "11,001 points is the most");
    assert_eq!(e.range(&s, "m", 0, 1000, 0).unwrap_err().kind(), "bad_data");
    assert_eq!(e.range(&s, "m", 1000, 0, 1).unwrap_err().kind(), "bad_data");
}

#[test]
fn a_query_past_its_timeout_stops_with_a_timeout() {
    let s = storage(20, 200);
    let e = engine(|l| l.timeout = Duration::ZERO);
    let err = e.range(&s, "sum(rate(m[5m]))", 0, 3_000_000, 15_000).unwrap_err();
    assert_eq!(err, QueryError::Timeout("expression evaluation"));
    assert_eq!(err.kind(), "timeout");
}

#[test]
fn bad_queries_are_bad_data_with_the_reason() {
    let s = storage(1, 10);
    let e = Engine::default();
    for (q, says) in [
        ("sum(rate(m[5m])", "unclosed left parenthesis"),
        ("rate(m)", "expected type matrix"),
        ("m{i=~\"(\"}", "illegal regex"),
        ("abs(\"a\")", "expected type vector"),
        ("m offset 5q", "bad number or duration"),
        ("{i=\"1\"} ", ""),
    ] {
        match e.instant(&s, q, 100_000) {
            Err(err) => {
                assert_eq!(err.kind(), "bad_data", "{q}: {err}");
                assert!(err.to_string().contains(says), "{q}: {err}");
            }
            Ok(_) => assert!(says.is_empty(), "{q} should fail"),
        }
    }
    // A range vector cannot be the result of a range query.
    let err = e.range(&s, "m[5m]", 0, 60_000, 15_000).unwrap_err();
    assert_eq!(err.kind(), "bad_data");
    assert!(err.to_string().contains("invalid expression type \"range vector\" for range query"), "{err}");
}

#[test]
fn matching_errors_are_execution_errors() {
    let mut s = MemStorage::new();
    for (name, l) in [("a", "x"), ("a", "y"), ("b", "z")] {
        s.add(vec![("__name__".into(), name.into()), ("l".into(), l.into())], 0, 1.0);
    }
    let e = Engine::default();
    let err = e.instant(&s, "b + on() a", 0).unwrap_err();
    assert_eq!(err.kind(), "execution");
    assert!(err.to_string().contains("many-to-many matching not allowed"), "{err}");
    let err = e.instant(&s, "a + on() group_left b", 0);
    assert!(err.is_ok(), "{err:?}");
    let err = e.instant(&s, "label_replace(a, \"l\", \"same\", \"l\", \".*\")", 0).unwrap_err();
    assert_eq!(err.to_string(), "vector cannot contain metrics with the same labelset");
}

#[test]
fn syntax_errors_say_where() {
    let s = storage(1, 10);
    let e = Engine::default();
    for (q, says) in [
        ("sum(rate(m[5m])", "1:4: parse error: unclosed left parenthesis"),
        ("foo bar", "1:5: parse error: unexpected \"bar\""),
        ("sum by (a b) (m)", "1:11: parse error: unexpected \"b\""),
        ("1 +", "1:4: parse error: unexpected end of input"),
        ("m offset 5q", "1:10: parse error: bad number or duration syntax: 5q"),
        ("m)", "1:2: parse error: unexpected right parenthesis ')'"),
    ] {
        let err = e.instant(&s, q, 0).unwrap_err();
        assert_eq!(err.to_string(), says, "{q}");
    }
}

#[test]
fn the_limit_is_on_samples_held_at_once_not_on_all_ever_loaded() {
    // 40 series of 100 samples: 4,000 loaded in all, but one series at a time and one group.
    let s = storage(40, 100);
    let e = engine(|l| l.max_samples = 1_000);
    let r = e.range(&s, "sum(rate(m[5m]))", 0, 1_485_000, 15_000).unwrap();
    assert!(matches!(r.value, Value::Matrix(m) if m.len() == 1));
}

#[test]
fn a_long_bad_query_is_refused_without_searching_for_the_place() {
    let s = storage(1, 1);
    let q = format!("{}m m", "m + ".repeat(20_000));
    let started = std::time::Instant::now();
    let err = Engine::default().instant(&s, &q, 0).unwrap_err();
    assert_eq!(err.kind(), "bad_data");
    // Searching would parse 40,000 prefixes of up to 80 kB each: minutes, not this.
    assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
}
