//! `strata-bench rollup-delay`: how long after a window's end its rollup can be read through
//! PromQL. Against a server without authentication: makes a tumbling rule, sends samples of a
//! few series at the wall clock's time every `interval_ms`, and for each of the next windows polls
//! `/api/v1/query` for the rollup sample at the window's end; the delay is when it first answers,
//! minus the window's end.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::{Value, json};

/// Options of `strata-bench rollup-delay`.
#[derive(Debug, clap::Args)]
pub struct RollupDelayArgs {
    /// The server's base URL (started with --no-auth).
    #[arg(long, default_value = "http://127.0.0.1:7878")]
    pub url: String,
    /// Windows measured.
    #[arg(long, default_value_t = 10)]
    pub windows: usize,
    /// The tumbling window's size, in seconds.
    #[arg(long, default_value_t = 10)]
    pub window_s: u64,
    /// The rule's bounded out-of-orderness, in seconds.
    #[arg(long, default_value_t = 1)]
    pub out_of_orderness_s: u64,
    /// The rule's allowed lateness, in seconds.
    #[arg(long, default_value_t = 10)]
    pub lateness_s: u64,
    /// How often samples are sent, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub interval_ms: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    windows: usize,
    window_s: u64,
    out_of_orderness_s: u64,
    lateness_s: u64,
    /// Per window, ms from its end to its rollup answering.
    delays_ms: Vec<i64>,
    delay_ms_p50: i64,
    delay_ms_max: i64,
    /// The target: window end + lateness + 2 s.
    target_ms: i64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

pub fn run(args: RollupDelayArgs) -> anyhow::Result<()> {
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let rule = json!({"name": "delay_probe", "input": {"metric": "delay_probe_seconds"}, "group_by": ["instance"],
        "window": {"type": "tumbling", "size": format!("{}s", args.window_s)}, "aggregations": ["count"],
        "output": "delay_probe_window", "out_of_orderness": format!("{}s", args.out_of_orderness_s),
        "allowed_lateness": format!("{}s", args.lateness_s)});
    let r =
        http.post(format!("{}/admin/v1/rollups", args.url)).json(&rule).send().context("cannot reach the server")?;
    if !r.status().is_success() {
        bail!("the rule was refused: {}", r.text().unwrap_or_default());
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (stop, url, interval) = (stop.clone(), args.url.clone(), args.interval_ms);
        std::thread::spawn(move || -> anyhow::Result<()> {
            let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build()?;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = now_ms();
                let body: String = (0..10)
                    .map(|i| {
                        format!(
                            "{}\n",
                            json!({"name": "delay_probe_seconds", "value": 1, "timestamp": t,
                            "labels": {"instance": format!("h{i}")}, "source_id": format!("h{i}")})
                        )
                    })
                    .collect();
                http.post(format!("{url}/ingest/v1/metrics"))
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()?;
                std::thread::sleep(Duration::from_millis(interval));
            }
            Ok(())
        })
    };
    let window_ms = args.window_s as i64 * 1000;
    // The first whole window after the rule exists.
    let mut end = (now_ms() / window_ms + 2) * window_ms;
    let mut delays = Vec::new();
    for _ in 0..args.windows {
        let deadline = Instant::now() + Duration::from_millis((end - now_ms()).max(0) as u64 + 120_000);
        loop {
            let at = format!("{:.3}", end as f64 / 1000.0);
            let v: Value = http
                .get(format!("{}/api/v1/query", args.url))
                .query(&[("query", "delay_probe_window_count[1s]"), ("time", at.as_str())])
                .send()?
                .json()?;
            let found = v["data"]["result"].as_array().is_some_and(|r| !r.is_empty());
            if found {
                delays.push(now_ms() - end);
                break;
            }
            if Instant::now() > deadline {
                bail!("the window ending at {end} never answered: {v}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        end += window_ms;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.join().map_err(|_| anyhow::anyhow!("the sender panicked"))??;
    let mut sorted = delays.clone();
    sorted.sort_unstable();
    let report = Report {
        windows: args.windows,
        window_s: args.window_s,
        out_of_orderness_s: args.out_of_orderness_s,
        lateness_s: args.lateness_s,
        delay_ms_p50: sorted[sorted.len() / 2],
        delay_ms_max: *sorted.last().expect("at least one window"),
        delays_ms: delays,
        target_ms: args.lateness_s as i64 * 1000 + 2000,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "rollup-delay: {} windows of {} s: visible {} ms (median), {} ms (max) after the window's end; target {} ms",
            report.windows, report.window_s, report.delay_ms_p50, report.delay_ms_max, report.target_ms
        );
    }
    Ok(())
}
