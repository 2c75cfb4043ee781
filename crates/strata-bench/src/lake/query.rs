//! `strata-bench lake query`: analytical queries over the `events` table written by `lake
//! write`, each through `Lake::query` and its JSON encoding (what `POST /query/v1/sql` runs) for
//! the measured tenant, with one `Lake` kept open between queries and a multi-threaded runtime,
//! as in the server. Each query runs `--warmups`
//! times untimed, then `--runs` times timed; one JSON line per query carries its SQL text, the
//! timings and Strata's answer, so that `scripts/bench-lake-duckdb.py` runs the very same text
//! in DuckDB and checks that both answer alike. These queries are the one source of that text.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use serde_json::Value;
use strata_lake::sql::{Format, Lake, SqlLimits};

use super::data::{REGIONS, TENANT, needle};

/// Worker threads of the server's query runtime on its defaults (`lake.sql_threads`).
const SQL_THREADS: usize = 2;

/// The stack of a query thread, as the server's: planning recurses over expressions.
const QUERY_STACK_BYTES: usize = 64 << 20;

/// Options of `strata-bench lake query`.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The lake's directory, as `lake write` left it.
    #[arg(long)]
    dir: PathBuf,
    /// Events `lake write` wrote, and its seed: they name the event the lookup query finds.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Untimed runs of each query before the timed ones.
    #[arg(long, default_value_t = 1)]
    warmups: u32,
    /// Timed runs of each query; the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: u32,
    /// Only the queries with these names.
    #[arg(long)]
    only: Vec<String>,
    /// Print each query's `EXPLAIN ANALYZE`, after its warm-ups, instead of timing it.
    #[arg(long)]
    explain: bool,
    /// Run this SQL instead of the benchmark's queries (to look into one).
    #[arg(long)]
    sql: Option<String>,
}

/// One query of the benchmark.
pub struct Query {
    pub name: &'static str,
    pub sql: String,
}

/// The queries, in SQL that DataFusion and DuckDB read alike; the last one finds `needle_id`.
pub fn queries(needle_id: &str) -> Vec<Query> {
    let dim = REGIONS.iter().map(|(r, c)| format!("('{r}', '{c}')")).collect::<Vec<_>>().join(", ");
    let q = |name, sql: &str| Query { name, sql: sql.to_string() };
    vec![
        q("count_filter", "SELECT count(*) AS n FROM events WHERE status >= 500"),
        q(
            "by_type",
            "SELECT \"type\", count(*) AS n, sum(amount) AS amount, avg(latency_ms) AS latency_ms \
             FROM events GROUP BY \"type\" ORDER BY \"type\"",
        ),
        q(
            "top_sources",
            "SELECT source_id, count(*) AS n FROM events GROUP BY source_id ORDER BY n DESC, source_id LIMIT 10",
        ),
        q("distinct_users", "SELECT count(DISTINCT user_id) AS users FROM events"),
        q(
            "top_countries_by_users",
            "SELECT country, count(DISTINCT user_id) AS users FROM events GROUP BY country \
             ORDER BY users DESC, country LIMIT 10",
        ),
        q(
            "hourly",
            "SELECT date_trunc('hour', \"timestamp\") AS hour, count(*) AS n, avg(latency_ms) AS latency_ms \
             FROM events GROUP BY date_trunc('hour', \"timestamp\") ORDER BY hour",
        ),
        q(
            "daily_active",
            "SELECT dt, count(DISTINCT source_id) AS sources, count(DISTINCT user_id) AS users \
             FROM events GROUP BY dt ORDER BY dt",
        ),
        q(
            "one_day_revenue",
            "SELECT region, count(*) AS orders, sum(price * quantity) AS revenue FROM events \
             WHERE dt = '2026-03-03' AND \"type\" = 'order.placed' GROUP BY region ORDER BY region",
        ),
        q(
            "six_hours_latency",
            "SELECT \"type\", count(*) AS n, min(latency_ms) AS min_ms, max(latency_ms) AS max_ms FROM events \
             WHERE \"timestamp\" >= '2026-03-02T06:00:00Z' AND \"timestamp\" < '2026-03-02T12:00:00Z' \
             GROUP BY \"type\" ORDER BY \"type\"",
        ),
        q(
            "top_error_paths",
            "SELECT path, count(*) AS n, sum(CASE WHEN status >= 500 THEN 1 ELSE 0 END) AS errors \
             FROM events GROUP BY path ORDER BY errors DESC, path LIMIT 10",
        ),
        q(
            "join_dimension",
            &format!(
                "WITH dim(region, continent) AS (VALUES {dim}) \
                 SELECT d.continent, count(*) AS n, sum(e.amount) AS amount FROM events e \
                 JOIN dim d ON e.region = d.region GROUP BY d.continent ORDER BY d.continent"
            ),
        ),
        q(
            "source_lookup",
            "SELECT count(*) AS n, sum(amount) AS amount, max(latency_ms) AS max_ms FROM events \
             WHERE source_id = 'host-0500'",
        ),
        q(
            "event_lookup",
            &format!("SELECT event_id, source_id, \"type\", amount FROM events WHERE event_id = '{needle_id}'"),
        ),
    ]
}

#[derive(Debug, Serialize)]
struct Line<'a> {
    query: &'a str,
    sql: &'a str,
    tenant: &'a str,
    runs_ms: Vec<f64>,
    median_ms: f64,
    rows: Vec<Value>,
}

pub fn run(args: QueryArgs) -> anyhow::Result<()> {
    // As the server's query runtime on its defaults (`lake.sql_threads`, its threads' stack).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(SQL_THREADS)
        .thread_stack_size(QUERY_STACK_BYTES)
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    let limits = SqlLimits { timeout: Duration::from_secs(600), memory_bytes: 8 << 30, rows_max: 10_000 };
    let (_, needle_id) = needle(args.seed, args.events);
    let lake = Lake::new(strata_lake::Location::local(&args.dir));
    // What `POST /query/v1/sql` does: the query, then its answer encoded as JSON.
    let run_one = |sql: &str| -> anyhow::Result<(Duration, Vec<u8>)> {
        let started = Instant::now();
        let body = rt.block_on(async {
            let answer = lake.query(TENANT, sql, &limits).await?;
            answer.encode(Format::Json)
        });
        let body = body.with_context(|| format!("query failed: {sql}"))?;
        Ok((started.elapsed(), body))
    };
    let rows_of = |body: &[u8]| -> anyhow::Result<Vec<Value>> {
        let answer: Value = serde_json::from_slice(body).context("the answer is not JSON")?;
        Ok(answer.get("rows").and_then(Value::as_array).cloned().unwrap_or_default())
    };
    let queries = match &args.sql {
        Some(sql) => vec![Query { name: "adhoc", sql: sql.clone() }],
        None => queries(&needle_id),
    };
    for q in queries {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == q.name) {
            continue;
        }
        for _ in 0..args.warmups {
            run_one(&q.sql)?;
        }
        if args.explain {
            let (took, body) = run_one(&format!("EXPLAIN ANALYZE {}", q.sql))?;
            println!("== {} ({:.0} ms)", q.name, took.as_secs_f64() * 1000.0);
            for row in rows_of(&body)? {
                println!("{}", row.get("plan").and_then(Value::as_str).unwrap_or_default());
            }
            continue;
        }
        let mut runs_ms = Vec::new();
        let mut rows = Vec::new();
        for _ in 0..args.runs.max(1) {
            let (took, body) = run_one(&q.sql)?;
            runs_ms.push(took.as_secs_f64() * 1000.0);
            rows = rows_of(&body)?;
        }
        let mut sorted = runs_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let median_ms = sorted[sorted.len() / 2];
        let line = Line { query: q.name, sql: &q.sql, tenant: TENANT, runs_ms, median_ms, rows };
        println!("{}", serde_json::to_string(&line)?);
    }
    Ok(())
}
