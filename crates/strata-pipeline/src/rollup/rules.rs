//! Rollup rules: what to aggregate, grouped how, over which windows, into which series. Kept per
//! tenant in one book that the admin API changes and the rollup operator reads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// What a rule reads: samples of one metric (with label equalities), or a numeric field of one
/// event type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Metric(MetricInput),
    Event(EventInput),
}

/// `{"metric": "name", "labels": {"job": "api"}}`: the samples of one metric whose labels
/// include these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricInput {
    pub metric: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// `{"event_type": "order", "value_field": "amount"}`: a numeric field of one type of event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    pub event_type: String,
    pub value_field: String,
}

/// The windows a rule aggregates over. Durations are Strata's (`30s`, `1m`, `1h`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowSpec {
    /// Back to back windows of `size`.
    Tumbling { size: String },
    /// Windows of `size` every `slide`, built from panes of `slide` (`size` a multiple of it).
    Hopping { size: String, slide: String },
    /// For every arriving record, the window of `size` that ends at it.
    Sliding { size: String },
}

/// One aggregation of a window's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    Last,
    P50,
    P90,
    P95,
    P99,
}

impl Aggregation {
    pub fn name(self) -> &'static str {
        match self {
            Aggregation::Count => "count",
            Aggregation::Sum => "sum",
            Aggregation::Min => "min",
            Aggregation::Max => "max",
            Aggregation::Avg => "avg",
            Aggregation::Last => "last",
            Aggregation::P50 => "p50",
            Aggregation::P90 => "p90",
            Aggregation::P95 => "p95",
            Aggregation::P99 => "p99",
        }
    }

    /// The quantile of a `pNN`.
    pub fn quantile(self) -> Option<f64> {
        match self {
            Aggregation::P50 => Some(0.5),
            Aggregation::P90 => Some(0.9),
            Aggregation::P95 => Some(0.95),
            Aggregation::P99 => Some(0.99),
            _ => None,
        }
    }
}

/// A rollup rule as the admin API takes and shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupRule {
    /// Unique within its tenant.
    pub name: String,
    pub input: Input,
    /// Labels (or event fields, `source_id` among them) whose values make a group.
    #[serde(default)]
    pub group_by: Vec<String>,
    pub window: WindowSpec,
    pub aggregations: Vec<Aggregation>,
    /// The output series are `<output>_<aggregation>` with the group's labels, one sample per
    /// window at its end.
    pub output: String,
    /// How far behind the newest event time records may arrive and still be on time.
    #[serde(default = "default_out_of_orderness")]
    pub out_of_orderness: String,
    /// How long after a window is emitted records may still update it (it is emitted again).
    #[serde(default = "default_allowed_lateness")]
    pub allowed_lateness: String,
}

fn default_out_of_orderness() -> String {
    "5s".into()
}

fn default_allowed_lateness() -> String {
    "1m".into()
}

/// A rule checked and with its durations in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    pub tenant: String,
    pub rule: RollupRule,
    /// Distinguishes a rule from a later one of the same name: state is never carried over.
    pub id: u64,
    pub window: Window,
    pub out_of_orderness_ms: i64,
    pub allowed_lateness_ms: i64,
    pub quantiles: bool,
}

/// A window in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Tumbling windows have one pane: `size == slide`.
    Panes {
        size: i64,
        slide: i64,
    },
    Sliding {
        size: i64,
    },
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Windows shorter than this are refused: a window per sample is what a raw series is.
const WINDOW_MS_MIN: i64 = 1000;
/// Longer windows are refused: a day of panes held per group is the most state a rule may ask.
const WINDOW_MS_MAX: i64 = 24 * 3_600_000;

impl RollupRule {
    /// Checks the rule for `tenant`; the error says what to change.
    pub fn compile(self, tenant: &str, id: u64) -> Result<Compiled, String> {
        if !is_name(&self.name) {
            return Err(format!("rule name {:?} must be 1 to 128 of [A-Za-z0-9_-]", self.name));
        }
        if !strata_model::is_valid_metric_name(&self.output) {
            return Err(format!("output {:?} is not a valid metric name", self.output));
        }
        match &self.input {
            Input::Metric(MetricInput { metric, labels }) => {
                if !strata_model::is_valid_metric_name(metric) {
                    return Err(format!("metric {metric:?} is not a valid metric name"));
                }
                if let Some(bad) = labels.keys().find(|l| !strata_model::is_valid_label_name(l)) {
                    return Err(format!("label {bad:?} is not a valid label name"));
                }
                if *metric == self.output
                    || self.aggregations.iter().any(|a| *metric == format!("{}_{}", self.output, a.name()))
                {
                    return Err("a rule cannot read its own output".into());
                }
            }
            Input::Event(EventInput { event_type, value_field }) => {
                if event_type.is_empty() || value_field.is_empty() {
                    return Err("event_type and value_field must not be empty".into());
                }
            }
        }
        if let Some(bad) = self.group_by.iter().find(|l| !strata_model::is_valid_label_name(l) || *l == "__name__") {
            return Err(format!("group_by {bad:?} is not a label name a group can have"));
        }
        if self.group_by.len() > 16 {
            return Err("group_by takes at most 16 labels".into());
        }
        if self.aggregations.is_empty() {
            return Err(
                "aggregations must name at least one of count, sum, min, max, avg, last, p50, p90, p95, p99".into()
            );
        }
        let ms = |what: &str, s: &str| {
            strata_model::parse_duration_ms(s).ok_or_else(|| format!("{what} {s:?} is not a duration (30s, 1m, 1h)"))
        };
        let window = match &self.window {
            WindowSpec::Tumbling { size } => {
                let size = ms("window size", size)?;
                Window::Panes { size, slide: size }
            }
            WindowSpec::Hopping { size, slide } => {
                let (size, slide) = (ms("window size", size)?, ms("window slide", slide)?);
                if slide > size || size % slide != 0 {
                    return Err(format!(
                        "a hopping window's size ({size} ms) must be a multiple of its slide ({slide} ms)"
                    ));
                }
                if size / slide > 1440 {
                    return Err("a hopping window may have at most 1440 slides".into());
                }
                Window::Panes { size, slide }
            }
            WindowSpec::Sliding { size } => Window::Sliding { size: ms("window size", size)? },
        };
        let size = match window {
            Window::Panes { size, slide } => {
                if slide < WINDOW_MS_MIN {
                    return Err(format!("window slide must be at least {WINDOW_MS_MIN} ms"));
                }
                size
            }
            Window::Sliding { size } => size,
        };
        if !(WINDOW_MS_MIN..=WINDOW_MS_MAX).contains(&size) {
            return Err(format!("window size must be 1s to 24h, got {size} ms"));
        }
        // These two may be zero.
        let ms0 = |what: &str, s: &str| match s.trim().trim_end_matches(|c: char| c.is_ascii_alphabetic()) {
            digits if !digits.is_empty() && digits.bytes().all(|b| b == b'0') => Ok(0),
            _ => ms(what, s),
        };
        let out_of_orderness_ms = ms0("out_of_orderness", &self.out_of_orderness)?;
        let allowed_lateness_ms = ms0("allowed_lateness", &self.allowed_lateness)?;
        if out_of_orderness_ms > 3_600_000 || allowed_lateness_ms > 24 * 3_600_000 {
            return Err("out_of_orderness is at most 1h and allowed_lateness at most 24h".into());
        }
        let quantiles = self.aggregations.iter().any(|a| a.quantile().is_some());
        Ok(Compiled {
            tenant: tenant.to_string(),
            id,
            window,
            out_of_orderness_ms,
            allowed_lateness_ms,
            quantiles,
            rule: self,
        })
    }
}

/// Every tenant's rules, saved in a file the admin API rewrites on each change.
pub struct RuleBook {
    path: Option<PathBuf>,
    rules: RwLock<Vec<Compiled>>,
    /// Changes whenever the rules do, so the operator can tell its copy is old.
    version: AtomicU64,
    next_id: AtomicU64,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    next_id: u64,
    rules: Vec<(String, u64, RollupRule)>,
}

/// Rules a tenant may have.
pub const RULES_PER_TENANT_MAX: usize = 100;

impl RuleBook {
    /// The book saved at `path` (empty if there is none). A file that cannot be read is an error
    /// naming it: starting without the rules would stop rollups silently.
    pub fn open(path: Option<PathBuf>) -> Result<RuleBook, String> {
        let mut rules = Vec::new();
        let mut next_id = 1;
        if let Some(p) = &path {
            let read = strata_durable::read(p).map_err(|e| e.to_string())?;
            if let Some(c) = read {
                let body = c.checked(p).map_err(|e| e.to_string())?;
                let saved: Saved =
                    serde_json::from_slice(&body).map_err(|e| format!("{} is not valid: {e}", p.display()))?;
                next_id = saved.next_id;
                for (tenant, id, rule) in saved.rules {
                    rules.push(rule.compile(&tenant, id).map_err(|e| format!("{}: {e}", p.display()))?);
                }
            }
        }
        Ok(RuleBook { path, rules: RwLock::new(rules), version: AtomicU64::new(1), next_id: AtomicU64::new(next_id) })
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Every rule of every tenant.
    pub fn all(&self) -> Vec<Compiled> {
        self.rules.read().expect("rules lock").clone()
    }

    /// The rules of one tenant.
    pub fn of(&self, tenant: &str) -> Vec<Compiled> {
        self.rules.read().expect("rules lock").iter().filter(|r| r.tenant == tenant).cloned().collect()
    }

    /// Adds or replaces a rule (a replaced rule starts over with empty state).
    pub fn put(&self, tenant: &str, rule: RollupRule) -> Result<Compiled, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let compiled = rule.compile(tenant, id)?;
        let mut rules = self.rules.write().expect("rules lock");
        let replacing = rules.iter().any(|r| r.tenant == tenant && r.rule.name == compiled.rule.name);
        if !replacing && rules.iter().filter(|r| r.tenant == tenant).count() >= RULES_PER_TENANT_MAX {
            return Err(format!("a tenant may have at most {RULES_PER_TENANT_MAX} rollup rules"));
        }
        let mut next = rules.clone();
        next.retain(|r| !(r.tenant == tenant && r.rule.name == compiled.rule.name));
        next.push(compiled.clone());
        self.save(&next)?;
        *rules = next;
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(compiled)
    }

    /// Removes a rule; whether there was one.
    pub fn delete(&self, tenant: &str, name: &str) -> Result<bool, String> {
        let mut rules = self.rules.write().expect("rules lock");
        let mut next = rules.clone();
        next.retain(|r| !(r.tenant == tenant && r.rule.name == name));
        if next.len() == rules.len() {
            return Ok(false);
        }
        self.save(&next)?;
        *rules = next;
        self.version.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }

    fn save(&self, rules: &[Compiled]) -> Result<(), String> {
        let Some(path) = &self.path else { return Ok(()) };
        let saved = Saved {
            version: 1,
            next_id: self.next_id.load(Ordering::Relaxed),
            rules: rules.iter().map(|r| (r.tenant.clone(), r.id, r.rule.clone())).collect(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        strata_durable::write(path, &serde_json::to_vec_pretty(&saved).expect("rules serialise"))
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: serde_json::Value) -> Result<Compiled, String> {
        serde_json::from_value::<RollupRule>(json).map_err(|e| e.to_string())?.compile("t", 1)
    }

    #[test]
    fn rules_are_checked_with_errors_that_say_what_to_change() {
        let ok = rule(serde_json::json!({
            "name": "latency_5m", "input": {"metric": "http_request_seconds", "labels": {"job": "api"}},
            "group_by": ["service"], "window": {"type": "hopping", "size": "5m", "slide": "1m"},
            "aggregations": ["count", "p99"], "output": "http_request_seconds_5m"
        }))
        .unwrap();
        assert_eq!(ok.window, Window::Panes { size: 300_000, slide: 60_000 });
        assert_eq!((ok.out_of_orderness_ms, ok.allowed_lateness_ms, ok.quantiles), (5000, 60_000, true));
        let events = rule(serde_json::json!({
            "name": "orders", "input": {"event_type": "order", "value_field": "amount"},
            "window": {"type": "sliding", "size": "10m"}, "aggregations": ["sum"], "output": "orders_10m"
        }))
        .unwrap();
        assert!(matches!(events.rule.input, Input::Event(_)));
        let bad = |v: serde_json::Value, says: &str| {
            let e = rule(v).unwrap_err();
            assert!(e.contains(says), "{e}");
        };
        let base = || {
            serde_json::json!({"name": "r", "input": {"metric": "m"}, "window": {"type": "tumbling", "size": "1m"},
                "aggregations": ["sum"], "output": "m_1m"})
        };
        let with = |k: &str, v: serde_json::Value| {
            let mut b = base();
            b[k] = v;
            b
        };
        bad(
            with("window", serde_json::json!({"type": "hopping", "size": "5m", "slide": "2m"})),
            "multiple of its slide",
        );
        bad(with("window", serde_json::json!({"type": "tumbling", "size": "100ms"})), "at least 1000 ms");
        bad(with("aggregations", serde_json::json!([])), "at least one");
        bad(with("aggregations", serde_json::json!(["median"])), "unknown variant");
        bad(with("output", serde_json::json!("m")), "its own output");
        bad(with("group_by", serde_json::json!(["__name__"])), "group_by");
        bad(with("name", serde_json::json!("a b")), "rule name");
        bad(with("allowed_lateness", serde_json::json!("soon")), "not a duration");
    }

    #[test]
    fn the_book_keeps_rules_per_tenant_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rollups.json");
        let book = RuleBook::open(Some(path.clone())).unwrap();
        let r: RollupRule = serde_json::from_value(serde_json::json!({"name": "r", "input": {"metric": "m"},
            "window": {"type": "tumbling", "size": "1m"}, "aggregations": ["sum"], "output": "m_1m"}))
        .unwrap();
        let v0 = book.version();
        let first = book.put("a", r.clone()).unwrap();
        book.put("b", r.clone()).unwrap();
        let again = book.put("a", r.clone()).unwrap();
        assert_ne!(first.id, again.id, "a replaced rule is a new rule");
        assert!(book.version() > v0);
        assert_eq!(book.of("a").len(), 1);
        let reopened = RuleBook::open(Some(path.clone())).unwrap();
        assert_eq!(reopened.all(), book.all());
        assert!(reopened.delete("a", "r").unwrap());
        assert!(!reopened.delete("a", "r").unwrap());
        assert_eq!(RuleBook::open(Some(path)).unwrap().of("a").len(), 0);
    }
}
