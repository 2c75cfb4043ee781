//! Commands that inspect a running server through its admin API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::Value;

/// How an inspection command finds the server and its admin token.
#[derive(clap::Args)]
pub struct Remote {
    /// The server's base URL.
    #[arg(long, env = "STRATA_SERVER", default_value = "http://127.0.0.1:7878")]
    server: String,
    /// Admin token [default: $STRATA_ADMIN_TOKEN, else the file <data-dir>/meta/admin-token]
    #[arg(long)]
    token: Option<String>,
    /// The server's data directory, where its admin token file is.
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "./strata-data")]
    data_dir: PathBuf,
}

/// Where the admin token came from, or where it was looked for in vain.
enum Token {
    Given { value: String, from: String },
    Missing { looked: String },
}

impl Remote {
    fn token(&self) -> Token {
        if let Some(t) = &self.token {
            return Token::Given { value: t.clone(), from: "--token".into() };
        }
        if let Ok(t) = std::env::var("STRATA_ADMIN_TOKEN") {
            return Token::Given { value: t, from: "STRATA_ADMIN_TOKEN".into() };
        }
        let path = self.data_dir.join("meta/admin-token");
        match std::fs::read_to_string(&path) {
            Ok(t) => Token::Given { value: t.trim().to_string(), from: path.display().to_string() },
            Err(e) => Token::Missing {
                looked: format!(
                    "--token is not given, STRATA_ADMIN_TOKEN is not set, and {} cannot be read ({e})",
                    path.display()
                ),
            },
        }
    }
}

#[derive(clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    remote: Remote,
    /// Topic to read.
    topic: String,
    /// Partition to read [default: every partition, one after another].
    #[arg(long, short)]
    partition: Option<u32>,
    /// First offset [default: the earliest]; needs --partition.
    #[arg(long, short, requires = "partition")]
    offset: Option<u64>,
    /// Start at the first record appended at or after this time (RFC 3339 or Unix ms).
    #[arg(long)]
    time: Option<String>,
    /// Records to print.
    #[arg(long, short = 'n', default_value_t = 10)]
    limit: usize,
}

pub fn run(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn get(r: &Remote, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
    let token = r.token();
    let client = reqwest::blocking::Client::new();
    let mut req = client.get(format!("{}{path}", r.server.trim_end_matches('/'))).query(query);
    if let Token::Given { value, .. } = &token {
        req = req.bearer_auth(value);
    }
    let resp = req
        .send()
        .with_context(|| format!("cannot reach the server at {} (set it with --server or STRATA_SERVER)", r.server))?;
    let status = resp.status();
    let body: Value = resp.json().context("the server's answer is not JSON")?;
    if !status.is_success() {
        let error = body["error"].as_str().unwrap_or("unknown error");
        match (status.as_u16(), &token) {
            (401 | 403, Token::Missing { looked }) => bail!(
                "{status}: {error}\nno admin token: {looked}.\nRun this in the directory `strata serve` was \
                 started in, point --data-dir (or STRATA_DATA_DIR) at its data directory, or pass --token \
                 (or STRATA_ADMIN_TOKEN)"
            ),
            (401 | 403, Token::Given { from, .. }) => bail!(
                "{status}: {error}\nthe admin token from {from} was refused by {}: is it that server's token?",
                r.server
            ),
            _ => bail!("{status}: {error}"),
        }
    }
    Ok(body)
}

pub fn topics(r: &Remote) -> anyhow::Result<()> {
    let v = get(r, "/admin/v1/topics", &[])?;
    println!(
        "{:<10} {:>9} {:>15} {:>15} {:>14} {:>8}",
        "TOPIC", "PARTITION", "EARLIEST", "LATEST", "BYTES", "SEGMENTS"
    );
    for t in v["topics"].as_array().into_iter().flatten() {
        for p in t["partitions"].as_array().into_iter().flatten() {
            println!(
                "{:<10} {:>9} {:>15} {:>15} {:>14} {:>8}",
                t["name"].as_str().unwrap_or(""),
                p["partition"].to_string(),
                p["earliest_offset"].to_string(),
                p["latest_offset"].to_string(),
                p["bytes"].to_string(),
                p["segments"].to_string()
            );
        }
    }
    Ok(())
}

pub fn consume(a: &ConsumeArgs) -> anyhow::Result<()> {
    let partitions: Vec<u32> = match a.partition {
        Some(p) => vec![p],
        None => {
            let v = get(&a.remote, "/admin/v1/topics", &[])?;
            let topic = v["topics"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["name"] == a.topic.as_str())
                .with_context(|| format!("unknown topic {:?}", a.topic))?;
            topic["partitions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["partition"].as_u64())
                .map(|p| p as u32)
                .collect()
        }
    };
    let mut left = a.limit;
    for partition in partitions {
        if left == 0 {
            break;
        }
        let mut query = vec![("limit", left.to_string())];
        if let Some(o) = a.offset {
            query.push(("offset", o.to_string()));
        }
        if let Some(t) = &a.time {
            query.push(("time", t.clone()));
        }
        let path = format!("/admin/v1/topics/{}/partitions/{partition}/records", a.topic);
        let v = get(&a.remote, &path, &query)?;
        for r in v["records"].as_array().into_iter().flatten() {
            println!("{r}");
            left = left.saturating_sub(1);
        }
    }
    Ok(())
}

pub fn groups(r: &Remote) -> anyhow::Result<()> {
    let v = get(r, "/admin/v1/consumer-groups", &[])?;
    println!("{:<16} {:<10} {:>9} {:>15} {:>15} {:>10}", "GROUP", "TOPIC", "PARTITION", "COMMITTED", "LATEST", "LAG");
    for g in v["groups"].as_array().into_iter().flatten() {
        for p in g["partitions"].as_array().into_iter().flatten() {
            println!(
                "{:<16} {:<10} {:>9} {:>15} {:>15} {:>10}",
                g["group"].as_str().unwrap_or(""),
                p["topic"].as_str().unwrap_or(""),
                p["partition"].to_string(),
                p["committed_offset"].to_string(),
                p["latest_offset"].to_string(),
                p["lag"].to_string()
            );
        }
    }
    Ok(())
}

pub fn consumers(r: &Remote) -> anyhow::Result<()> {
    let v = get(r, "/admin/v1/consumers", &[])?;
    println!("{:<16} {:<9} {:>8} {:>12}  LAST ERROR", "CONSUMER", "STATE", "RESTARTS", "LAG");
    for c in v["consumers"].as_array().into_iter().flatten() {
        let error = match (c["last_error_time"].as_str(), c["last_error"].as_str()) {
            (Some(t), Some(e)) => format!("{t} {e}"),
            _ => "-".to_string(),
        };
        println!(
            "{:<16} {:<9} {:>8} {:>12}  {error}",
            c["group"].as_str().unwrap_or(""),
            c["state"].as_str().unwrap_or(""),
            c["restarts"].to_string(),
            c["lag"].to_string(),
        );
    }
    Ok(())
}

pub fn stream(r: &Remote) -> anyhow::Result<()> {
    let v = get(r, "/admin/v1/stream", &[])?;
    println!(
        "{:<16} {:<24} {:<24} {:>10} {:>12} {:>10} {:>12}",
        "TENANT", "RULE", "WATERMARK", "GROUPS", "STATE", "LATE", "EMITTED"
    );
    for rule in v["rollups"].as_array().into_iter().flatten() {
        let watermark = rule["watermark"].as_str().unwrap_or("-");
        println!(
            "{:<16} {:<24} {:<24} {:>10} {:>12} {:>10} {:>12}",
            rule["tenant"].as_str().unwrap_or(""),
            rule["rule"].as_str().unwrap_or(""),
            watermark,
            rule["groups"].to_string(),
            rule["state_entries"].to_string(),
            rule["late_records"].to_string(),
            rule["emitted_samples"].to_string(),
        );
    }
    println!();
    println!(
        "{:<16} {:<24} {:>9} {:<24} {:>12} {:>10} {:>5}",
        "TENANT", "RULE", "PARTITION", "WATERMARK", "NEXT OFFSET", "LAG", "IDLE"
    );
    for rule in v["rollups"].as_array().into_iter().flatten() {
        for p in rule["partitions"].as_array().into_iter().flatten() {
            let watermark = p["watermark_ms"]
                .as_i64()
                .map_or("-".to_string(), |ms| strata_model::format_rfc3339_nanos(ms.saturating_mul(1_000_000)));
            println!(
                "{:<16} {:<24} {:>9} {:<24} {:>12} {:>10} {:>5}",
                rule["tenant"].as_str().unwrap_or(""),
                rule["rule"].as_str().unwrap_or(""),
                p["partition"].to_string(),
                watermark,
                p["next_offset"].to_string(),
                p["lag"].to_string(),
                if p["idle"].as_bool() == Some(true) { "yes" } else { "no" },
            );
        }
    }
    println!();
    println!(
        "{:<16} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "TENANT", "EVENTS OUT", "DUPLICATES", "NO ROW", "ROWS", "DEDUP KEYS"
    );
    for (tenant, s) in v["pipeline"].as_object().into_iter().flatten() {
        println!(
            "{:<16} {:>12} {:>12} {:>12} {:>12} {:>12}",
            tenant,
            s["events_out"].to_string(),
            s["duplicates_dropped"].to_string(),
            s["enrichment_missing"].to_string(),
            s["reference_rows"].to_string(),
            s["dedup_keys"].to_string(),
        );
    }
    println!();
    println!("{:<16} {:>9} {:>12} {:>10}", "PIPELINE INPUT", "PARTITION", "NEXT OFFSET", "LAG");
    for p in v["pipeline_inputs"].as_array().into_iter().flatten() {
        println!(
            "{:<16} {:>9} {:>12} {:>10}",
            p["topic"].as_str().unwrap_or(""),
            p["partition"].to_string(),
            p["next_offset"].to_string(),
            p["lag"].to_string()
        );
    }
    Ok(())
}
