//! The `strata` binary.

mod admin;
mod cli;
mod config;
mod metrics_query;
mod prom;
mod search;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "A telemetry pipeline: durable log, stream processing, metrics, logs and SQL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs every component in this process.
    Serve {
        /// Data directory [default: ./strata-data]
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// HTTP listen address [default: 127.0.0.1:7878]
        #[arg(long)]
        http_addr: Option<String>,
        /// A TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Turns authentication off (local use only).
        #[arg(long)]
        no_auth: bool,
    },
    /// Lists topics with their partitions, offsets and sizes.
    Topics(cli::Remote),
    /// Prints records of one partition as JSON lines.
    Consume(cli::ConsumeArgs),
    /// Lists consumer groups with their committed offsets and lag.
    Groups(cli::Remote),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { data_dir, http_addr, config, no_auth } => {
            init_tracing();
            let flags = config::Overrides { data_dir, http_addr, no_auth };
            let cfg = match config::Config::load(config.as_deref(), std::env::vars(), &flags) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("strata: {e}");
                    return ExitCode::from(2);
                }
            };
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("strata").build();
            let rt = match rt {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("strata: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(server::serve(cfg)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("strata: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Topics(r) => cli::run(cli::topics(&r)),
        Command::Consume(a) => cli::run(cli::consume(&a)),
        Command::Groups(r) => cli::run(cli::groups(&r)),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
