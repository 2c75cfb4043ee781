//! The `strata` binary.

mod admin;
mod cli;
mod config;
#[cfg(feature = "fault-injection")]
mod faults;
mod lake;
mod metrics_query;
mod pipeline;
mod prom;
mod rollups;
mod search;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "A telemetry pipeline: durable log, stream processing, metrics, logs and SQL",
    after_help = REMOTE_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How the inspection commands find the server and the token, shown in every command's help.
const REMOTE_HELP: &str = "\
`serve` runs the server. `topics`, `consume`, `groups` and `consumers` ask a running server through
its admin API:
  server  --server, else $STRATA_SERVER, else http://127.0.0.1:7878
  token   --token, else $STRATA_ADMIN_TOKEN, else the file <data-dir>/meta/admin-token, where
          <data-dir> is --data-dir, else $STRATA_DATA_DIR, else ./strata-data (so run them in the
          directory `strata serve` was started in, or say where its data is)";

/// What `serve` reads besides its flags.
const SERVE_HELP: &str = "\
Every key of the configuration file can also be set as STRATA_<KEY> (STRATA_LOG_PARTITIONS=8);
flags beat the environment, which beats the file. The admin token is $STRATA_ADMIN_TOKEN, else
the file <data-dir>/meta/admin-token, generated on the first start (mode 0600).";

#[derive(Subcommand)]
enum Command {
    /// Runs every component in this process.
    #[command(after_help = SERVE_HELP)]
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
    #[command(after_help = REMOTE_HELP)]
    Topics(cli::Remote),
    /// Prints records of one partition as JSON lines.
    #[command(after_help = REMOTE_HELP)]
    Consume(cli::ConsumeArgs),
    /// Lists consumer groups with their committed offsets and lag.
    #[command(after_help = REMOTE_HELP)]
    Groups(cli::Remote),
    /// Lists the server's consumers with their state, restarts, lag and last error.
    #[command(after_help = REMOTE_HELP)]
    Consumers(cli::Remote),
    /// Lists every tenant's rollup rules with their watermark, state and late records, and what
    /// the events pipeline deduplicated and enriched.
    #[command(after_help = REMOTE_HELP)]
    Stream(cli::Remote),
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
        Command::Consumers(r) => cli::run(cli::consumers(&r)),
        Command::Stream(r) => cli::run(cli::stream(&r)),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        // The Delta libraries narrate every snapshot they load at info; their warnings are kept.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                "info,buoyant_kernel=warn,buoyant_kernel_engine=warn,deltalake_core=warn",
            )
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
