//! Commands that inspect a running server through its admin API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::Value;

#[derive(clap::Args)]
pub struct Remote {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:7878")]
    server: String,
    /// Admin token [default: $STRATA_ADMIN_TOKEN, else <data-dir>/meta/admin-token]
    #[arg(long)]
    token: Option<String>,
    /// Data directory to read the admin token from.
    #[arg(long, default_value = "./strata-data")]
    data_dir: PathBuf,
}

#[derive(clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    remote: Remote,
    /// Topic to read.
    topic: String,
    #[arg(long, short, default_value_t = 0)]
    partition: u32,
    /// First offset [default: the earliest].
    #[arg(long, short)]
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
    let token = match &r.token {
        Some(t) => Some(t.clone()),
        None => std::env::var("STRATA_ADMIN_TOKEN").ok().or_else(|| {
            std::fs::read_to_string(r.data_dir.join("meta/admin-token")).ok().map(|t| t.trim().to_string())
        }),
    };
    let client = reqwest::blocking::Client::new();
    let mut req = client.get(format!("{}{path}", r.server.trim_end_matches('/'))).query(query);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().with_context(|| format!("cannot reach {}", r.server))?;
    let status = resp.status();
    let body: Value = resp.json().context("the server's answer is not JSON")?;
    if !status.is_success() {
        bail!("{status}: {}", body["error"].as_str().unwrap_or("unknown error"));
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
    let mut query = vec![("limit", a.limit.to_string())];
    if let Some(o) = a.offset {
        query.push(("offset", o.to_string()));
    }
    if let Some(t) = &a.time {
        query.push(("time", t.clone()));
    }
    let path = format!("/admin/v1/topics/{}/partitions/{}/records", a.topic, a.partition);
    let v = get(&a.remote, &path, &query)?;
    for r in v["records"].as_array().into_iter().flatten() {
        println!("{r}");
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
