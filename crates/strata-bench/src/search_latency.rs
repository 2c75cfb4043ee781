//! `strata-bench search-latency`: the latency of `strata_search::search` over indexes written by
//! `strata-bench index`, in process, for a few kinds of query a user types.
//!
//! Each query runs a few times unmeasured first, so the figures are for open indexes and a warm page
//! cache: the steady state of a server that is being used, not a cold start.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::Args;
use serde::Serialize;
use strata_model::{TenantId, format_rfc3339_nanos};
use strata_search::{Indexes, Retention, SearchRequest, SearchResponse, Sort};
use time::Date;

use crate::index::{RARE_TOKEN, TENANT, tree_bytes};
use crate::summary::Summary;

/// Time allowed for one search; far above any figure worth reporting.
const QUERY_TIMEOUT: Duration = Duration::from_secs(120);

/// Hits asked for, as a user's first page.
const LIMIT: usize = 100;

const NS_PER_HOUR: i64 = 3_600_000_000_000;

/// Arguments of `strata-bench search-latency`.
#[derive(Debug, Args)]
pub struct SearchLatencyArgs {
    /// Directory of the indexes, as given to `strata-bench index`.
    #[arg(long)]
    dir: PathBuf,
    /// Measured runs of each query.
    #[arg(long, default_value_t = 50)]
    iterations: usize,
    /// Unmeasured runs of each query before the measured ones.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Tenant whose indexes are searched.
    #[arg(long, default_value = TENANT)]
    tenant: String,
    /// Print one JSON object instead of a human-readable summary.
    #[arg(long)]
    json: bool,
}

/// The time range a query covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Range {
    /// Every day that has an index.
    Whole,
    /// The hour up to the newest indexed line.
    LastHour,
}

/// One query of the benchmark.
struct QuerySpec {
    name: &'static str,
    q: &'static str,
    source_ids: &'static [&'static str],
    range: Range,
}

/// The queries measured. The words come from the generator's templates: "upstream" is in almost
/// every message (a debug template and the padding), "accepted connection" starts about one info
/// line in four, "failed" is in the error templates, and host-00001 is the most frequent source.
const QUERIES: [QuerySpec; 4] = [
    QuerySpec { name: "rare_term", q: RARE_TOKEN, source_ids: &[], range: Range::Whole },
    QuerySpec { name: "common_term", q: "upstream", source_ids: &[], range: Range::Whole },
    QuerySpec { name: "phrase", q: "\"accepted connection\"", source_ids: &[], range: Range::Whole },
    QuerySpec { name: "term_source_last_hour", q: "failed", source_ids: &["host-00001"], range: Range::LastHour },
];

/// The result of a run, as printed with `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    dir: PathBuf,
    tenant: String,
    day_indexes: usize,
    documents: u64,
    index_bytes: u64,
    /// Timestamp of the newest indexed line.
    newest: String,
    iterations: usize,
    warmup: usize,
    limit: usize,
    queries: Vec<QueryReport>,
}

/// The figures of one query.
#[derive(Debug, Serialize)]
pub struct QueryReport {
    name: &'static str,
    q: &'static str,
    source_ids: &'static [&'static str],
    from: String,
    to: String,
    /// Hits of the (last) answer: at most `limit`.
    hits: usize,
    /// Every matching line in the range, counted once with a histogram query.
    matches: u64,
    latency_ms: Summary,
}

/// Runs the benchmark and prints its report.
pub fn run(args: SearchLatencyArgs) -> anyhow::Result<()> {
    let report = measure(&args)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_summary(&report);
    }
    for query in &report.queries {
        if query.hits == 0 {
            eprintln!(
                "warning: query {} ({}) found no line; its latency is that of an empty answer. Was {} written by \
                 `strata-bench index` with --lines of at least --rare-every?",
                query.name,
                query.q,
                report.dir.display()
            );
        }
    }
    Ok(())
}

fn day_start_ns(day: Date) -> i64 {
    (day.midnight().assume_utc().unix_timestamp_nanos()) as i64
}

/// Measures every query; the report is not printed.
pub fn measure(args: &SearchLatencyArgs) -> anyhow::Result<Report> {
    ensure!(args.iterations >= 1, "iterations must be at least 1, got {}", args.iterations);
    ensure!(args.dir.is_dir(), "{} is not a directory of indexes", args.dir.display());
    let tenant = TenantId::new(&args.tenant).with_context(|| format!("invalid tenant {:?}", args.tenant))?;
    let indexes = Indexes::new(args.dir.clone(), Retention::default())
        .with_context(|| format!("cannot open the indexes in {}", args.dir.display()))?;
    let days = indexes.days(&tenant);
    let Some(whole) = whole_range(&days)? else {
        bail!("{} has no index of tenant {tenant}; run `strata-bench index` first", args.dir.display());
    };
    let documents = count(&indexes, &tenant, "", &[], whole)?;

    let newest = search(&indexes, &tenant, "", &[], whole, 1)?
        .hits
        .first()
        .map(|hit| hit.timestamp_ns)
        .with_context(|| format!("the indexes of tenant {tenant} hold no line"))?;
    let last_hour = (newest + 1 - NS_PER_HOUR, newest + 1);

    let mut queries = Vec::with_capacity(QUERIES.len());
    for spec in &QUERIES {
        let range = match spec.range {
            Range::Whole => whole,
            Range::LastHour => last_hour,
        };
        for _ in 0..args.warmup {
            search(&indexes, &tenant, spec.q, spec.source_ids, range, LIMIT)?;
        }
        let mut samples_ms = Vec::with_capacity(args.iterations);
        let mut hits = 0;
        for _ in 0..args.iterations {
            let started = Instant::now();
            let response = search(&indexes, &tenant, spec.q, spec.source_ids, range, LIMIT)?;
            samples_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            hits = response.hits.len();
        }
        queries.push(QueryReport {
            name: spec.name,
            q: spec.q,
            source_ids: spec.source_ids,
            from: format_rfc3339_nanos(range.0),
            to: format_rfc3339_nanos(range.1),
            hits,
            matches: count(&indexes, &tenant, spec.q, spec.source_ids, range)?,
            latency_ms: Summary::of(samples_ms),
        });
    }
    Ok(Report {
        dir: args.dir.clone(),
        tenant: tenant.to_string(),
        day_indexes: days.len(),
        documents,
        index_bytes: tree_bytes(&args.dir),
        newest: format_rfc3339_nanos(newest),
        iterations: args.iterations,
        warmup: args.warmup,
        limit: LIMIT,
        queries,
    })
}

fn request(q: &str, source_ids: &[&str], (from_ns, to_ns): (i64, i64), limit: usize) -> SearchRequest {
    SearchRequest {
        q: q.to_owned(),
        source_ids: source_ids.iter().map(|s| (*s).to_owned()).collect(),
        run_id: None,
        levels: Vec::new(),
        from_ns,
        to_ns,
        limit,
        sort: Sort::Newest,
        cursor: None,
    }
}

/// One search, newest first; an index that could not be searched is an error here, not a partial answer.
fn search(
    indexes: &Indexes,
    tenant: &TenantId,
    q: &str,
    source_ids: &[&str],
    range: (i64, i64),
    limit: usize,
) -> anyhow::Result<SearchResponse> {
    let request = request(q, source_ids, range, limit);
    let response = strata_search::search(indexes, tenant, &request, Instant::now() + QUERY_TIMEOUT)
        .with_context(|| format!("search {q:?} failed"))?;
    ensure!(response.errors.is_empty(), "search {q:?} skipped indexes: {}", response.errors.join("; "));
    Ok(response)
}

/// The range from the start of the first of `days` to the end of the last, in Unix ns; `None` for no days.
pub fn whole_range(days: &[Date]) -> anyhow::Result<Option<(i64, i64)>> {
    let (Some(first), Some(last)) = (days.first(), days.last()) else { return Ok(None) };
    let end = last.next_day().context("the last day is the end of time")?;
    Ok(Some((day_start_ns(*first), day_start_ns(end))))
}

/// Every line matching `q` and `source_ids` in `range`, from a histogram with one bucket per day.
pub fn count(
    indexes: &Indexes,
    tenant: &TenantId,
    q: &str,
    source_ids: &[&str],
    range: (i64, i64),
) -> anyhow::Result<u64> {
    let request = request(q, source_ids, range, LIMIT);
    let histogram = strata_search::histogram(indexes, tenant, &request, 86_400_000, Instant::now() + QUERY_TIMEOUT)
        .with_context(|| format!("counting the matches of {q:?} failed"))?;
    ensure!(histogram.errors.is_empty(), "counting {q:?} skipped indexes: {}", histogram.errors.join("; "));
    Ok(histogram.buckets.iter().map(|bucket| bucket.count).sum())
}

fn print_summary(report: &Report) {
    println!(
        "strata-bench search-latency: {} lines of tenant {} in {} day indexes ({:.1} MiB) under {}",
        report.documents,
        report.tenant,
        report.day_indexes,
        report.index_bytes as f64 / (1024.0 * 1024.0),
        report.dir.display()
    );
    println!(
        "  {} runs per query after {} warm-up runs, limit {}, newest first; newest line {}",
        report.iterations, report.warmup, report.limit, report.newest
    );
    println!(
        "  {:<24} {:>9} {:>9} {:>9} {:>9} {:>6} {:>10}  query",
        "ms", "p50", "p99", "max", "mean", "hits", "matches"
    );
    for query in &report.queries {
        let latency = &query.latency_ms;
        let filter = if query.source_ids.is_empty() {
            String::new()
        } else {
            format!(" source_id={}", query.source_ids.join(","))
        };
        println!(
            "  {:<24} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>6} {:>10}  {}{filter} from {} to {}",
            query.name,
            latency.p50,
            latency.p99,
            latency.max,
            latency.mean,
            query.hits,
            query.matches,
            query.q,
            query.from,
            query.to
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{IndexArgs, build};

    #[test]
    fn every_query_finds_lines_in_a_generated_index() {
        let dir = tempfile::tempdir().unwrap();
        let index_dir = dir.path().join("index");
        build(&IndexArgs::for_test(&index_dir, 3_000, 1_000, 1.5)).unwrap();
        let args =
            SearchLatencyArgs { dir: index_dir, iterations: 2, warmup: 1, tenant: TENANT.to_owned(), json: true };
        let report = measure(&args).unwrap();
        assert_eq!(report.documents, 3_000);
        let by_name = |name: &str| report.queries.iter().find(|q| q.name == name).unwrap();
        assert_eq!(by_name("rare_term").matches, 3);
        assert_eq!(by_name("rare_term").hits, 3);
        assert!(by_name("common_term").matches > 2_500, "{}", by_name("common_term").matches);
        assert_eq!(by_name("common_term").hits, LIMIT);
        for query in &report.queries {
            assert!(query.hits >= 1, "{} found nothing", query.name);
            assert_eq!(query.latency_ms.count, 2);
        }
        // About 3% of lines fail, about 15% come from host-00001, two thirds are in the last hour.
        let filtered = by_name("term_source_last_hour");
        assert!(filtered.matches < 100, "{} matches", filtered.matches);
    }

    #[test]
    fn refuses_a_directory_without_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let args = SearchLatencyArgs {
            dir: dir.path().to_path_buf(),
            iterations: 1,
            warmup: 0,
            tenant: TENANT.to_owned(),
            json: true,
        };
        let error = measure(&args).unwrap_err().to_string();
        assert!(error.contains("no index of tenant bench"), "{error}");
    }
}
