//! The command line: `run`, `check`, `demo` and `test-notify`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{self, LogFormat, defaults};
use crate::daemon::{self, RunOptions};
use crate::notify::{self, Notification, SendError};

#[derive(Debug, Parser)]
#[command(
    name = "sloguard",
    version,
    about = "Watches a production app's endpoints and SLOs, and escalates until someone acknowledges."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        /// The configuration file.
        #[arg(long, short, default_value = defaults::CONFIG_PATH)]
        config: PathBuf,
        /// The data directory; overrides `[daemon].data_dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Validate a configuration file; lists every problem and exits non-zero if there is one.
    Check {
        #[arg(long, short, default_value = defaults::CONFIG_PATH)]
        config: PathBuf,
    },
    /// Run the whole pipeline against a built-in simulated application; no setup needed.
    Demo {
        /// How long the demo runs.
        #[arg(long, default_value = "60s", value_parser = config::parse_duration)]
        duration: Duration,
    },
    /// Send a test message to one channel and print what it answered.
    TestNotify {
        #[arg(long, short, default_value = defaults::CONFIG_PATH)]
        config: PathBuf,
        /// The channel's name from `[[channels]]`.
        #[arg(long)]
        channel: String,
    },
}

/// Sets up `tracing` on stderr. `SLOGUARD_LOG` overrides the configured filter.
pub fn init_logging(format: LogFormat, level: &str) {
    let filter = std::env::var("SLOGUARD_LOG")
        .ok()
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .or_else(|| tracing_subscriber::EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match config::load(&config) {
            Ok(cfg) => {
                println!(
                    "{}: OK ({} targets, {} rules, {} channels)",
                    config.display(),
                    cfg.targets.len(),
                    cfg.rules.len(),
                    cfg.channels.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config, data_dir } => {
            let cfg = match config::load(&config) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprint!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            init_logging(cfg.daemon.log_format, &cfg.daemon.log_level);
            let result = runtime().map_err(anyhow::Error::from).and_then(|rt| {
                rt.block_on(daemon::run(
                    cfg,
                    RunOptions { data_dir },
                    CancellationToken::new(),
                ))
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "sloguard cannot run");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo { duration } => {
            init_logging(LogFormat::Text, "info");
            match runtime()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(crate::demo::run(duration)))
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::TestNotify { config, channel } => test_notify(&config, &channel),
    }
}

fn test_notify(path: &std::path::Path, name: &str) -> ExitCode {
    let cfg = match config::load(path) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(channel) = cfg.channels.get(name) else {
        let known: Vec<&str> = cfg.channels.keys().map(String::as_str).collect();
        eprintln!(
            "error: {} has no channel named `{name}`; its channels: {}",
            path.display(),
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        );
        return ExitCode::from(2);
    };
    let result = runtime().map_err(anyhow::Error::from).and_then(|rt| {
        rt.block_on(async {
            let client = reqwest::Client::builder()
                .user_agent(concat!("sloguard/", env!("CARGO_PKG_VERSION")))
                .build()?;
            let n = Notification::test(name, crate::clock::now_ms());
            Ok(notify::send(&client, channel, &n, cfg.outbox.timeout).await)
        })
    });
    let kind = channel.kind.type_name();
    match result {
        Ok(Ok(answer)) => {
            println!(
                "{name} ({kind}): delivered; the channel answered {} {} {}",
                answer.protocol,
                answer.status,
                answer.body.trim()
            );
            ExitCode::SUCCESS
        }
        Ok(Err(SendError::Retryable { message, .. })) => {
            eprintln!(
                "{name} ({kind}): not delivered: {message} (temporary; the daemon would retry)"
            );
            ExitCode::FAILURE
        }
        Ok(Err(SendError::Permanent { message })) => {
            eprintln!(
                "{name} ({kind}): not delivered: {message} (permanent; check the channel's configuration)"
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
