//! The command line: one function per subcommand, each returning how the process ends, and
//! the one place that prints a failure (`main`). The commands that talk to the running
//! daemon are in `api.rs`, those that read the data file in `store.rs`; here are the ones that
//! need only the configuration (`check`, `run`, `demo`, `test-notify`) and the logging setup.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, ConfigError, LogFormat, defaults};
use crate::daemon::{self, RunOptions};
use crate::notify::{self, Notification, SendError};

mod api;
mod store;

#[derive(Debug, Parser)]
#[command(
    name = "sloguard",
    version,
    about = "Watches a production app's endpoints and SLOs, and escalates until someone acknowledges."
)]
pub struct Cli {
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
        /// Keep the daemon and its dashboard running after the demo, until Ctrl-C.
        #[arg(long)]
        keep: bool,
    },
    /// Show the pending and firing alerts of the running daemon.
    Status {
        #[arg(long, short, default_value = defaults::CONFIG_PATH)]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge a firing alert: by fingerprint (`rule{labels}`) or rule name (all its alerts).
    Ack {
        /// The alert's fingerprint, as `sloguard status` shows it, or a rule name.
        alert: String,
        /// Who is on it (default: $USER).
        #[arg(long)]
        by: Option<String>,
        /// What they are doing about it.
        #[arg(long)]
        comment: Option<String>,
        #[arg(long, short, default_value = defaults::CONFIG_PATH)]
        config: PathBuf,
    },
    /// What happened to alerts: firings, notifications and their results, acknowledgements.
    History {
        /// How far back.
        #[arg(long, default_value = "24h")]
        since: String,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
        #[arg(long, short, default_value = defaults::CONFIG_PATH)]
        config: PathBuf,
    },
    /// Read measurements from the data directory; works while the daemon runs.
    Query(QueryArgs),
    /// Replay one rule of a configuration file (loaded by a daemon or not) over the stored
    /// history: when it would have fired and resolved, and what it would have sent.
    Backtest {
        /// The configuration holding the rule (an edited copy works).
        #[arg(long, short, default_value = defaults::CONFIG_PATH)]
        config: PathBuf,
        /// The rule's name.
        #[arg(long)]
        rule: String,
        /// Start: a duration ago (`7d`) or a time.
        #[arg(long, default_value = "7d")]
        since: String,
        /// End: `now`, a duration ago or a time.
        #[arg(long, default_value = "now")]
        until: String,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
        /// The data directory; overrides the configuration's.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Make a `[[reports]]` report now: print it, write its HTML, or send it.
    Report(ReportArgs),
    /// Error types seen in the logs: pattern, count, first and last seen, last message.
    Errors {
        /// Only this `[[logs]]` source.
        #[arg(long)]
        source: Option<String>,
        /// Only types seen since: a duration ago (`24h`) or a time; counts are for this span
        /// (whole hours).
        #[arg(long, default_value = "7d")]
        since: String,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
        #[arg(long, short, default_value = defaults::CONFIG_PATH)]
        config: PathBuf,
        /// The data directory; overrides the configuration's (which is then not read).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// With the daemon stopped: make rollups, delete what is past retention and give the
    /// data file's free space back to the filesystem.
    Compact {
        #[arg(long, short, default_value = defaults::CONFIG_PATH)]
        config: PathBuf,
        /// The data directory; overrides the configuration's.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Notifications that could not be delivered (refused, or given up after retrying).
    DeadLetters {
        #[arg(long, short, default_value = defaults::CONFIG_PATH)]
        config: PathBuf,
    },
    /// Silence alerts for a while (a deploy), list silences, or end one.
    Silence {
        #[command(subcommand)]
        action: SilenceAction,
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

#[derive(Debug, Subcommand)]
enum SilenceAction {
    /// Add a silence: alerts matching every `--match` notify no one until it ends.
    Add {
        /// `rule=NAME` or `LABEL=VALUE`; repeat to narrow.
        #[arg(long = "match", required = true, value_name = "KEY=VALUE")]
        matchers: Vec<String>,
        /// How long, e.g. `2h`.
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        /// Why, e.g. `deploy`.
        #[arg(long)]
        reason: String,
        /// Who (default: $USER).
        #[arg(long)]
        by: Option<String>,
        #[arg(long, short, default_value = defaults::CONFIG_PATH)]
        config: PathBuf,
    },
    /// List silences.
    List {
        #[arg(long, short, default_value = defaults::CONFIG_PATH)]
        config: PathBuf,
    },
    /// End a silence now.
    Expire {
        id: u64,
        #[arg(long, short, default_value = defaults::CONFIG_PATH)]
        config: PathBuf,
    },
}

// The arguments of `query` and `report`, kept together because they travel together; no
// `///` comment, so that the subcommand's help stays the variant's.
#[derive(Debug, Args)]
struct QueryArgs {
    /// The metric name, e.g. `probe_up`; without it, every metric is listed.
    metric: Option<String>,
    /// `label=value`, `label!=value`, `label=~regex` or `label!~regex`; repeat to narrow.
    #[arg(long = "match", value_name = "MATCHER")]
    matchers: Vec<String>,
    /// Start: a duration ago (`24h`) or a time (`2026-11-26T10:00:00Z`).
    #[arg(long, default_value = "1h")]
    since: String,
    /// End: `now`, a duration ago or a time.
    #[arg(long, default_value = "now")]
    until: String,
    /// avg, min, max, sum, count, rate, increase, last or a percentile (p50, p95, p99.9).
    #[arg(long)]
    agg: Option<String>,
    /// One value per step (`5m`) instead of one per series; the average unless `--agg`.
    #[arg(long)]
    step: Option<String>,
    #[arg(long, default_value = "table", value_parser = ["table", "json", "csv"])]
    format: String,
    #[arg(long, short, default_value = defaults::CONFIG_PATH)]
    config: PathBuf,
    /// The data directory; overrides the configuration's (which is then not read).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ReportArgs {
    #[arg(long, short, default_value = defaults::CONFIG_PATH)]
    config: PathBuf,
    /// The report's name.
    #[arg(long)]
    name: String,
    /// Print the plain text (the default when nothing else is asked).
    #[arg(long)]
    print: bool,
    /// Write the HTML, its charts inlined, to this file.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Mail it now through its channel (the daemon's schedule is not changed).
    #[arg(long)]
    send: bool,
    /// Print its figures as JSON.
    #[arg(long)]
    json: bool,
    /// As if it ran at this time: `now`, a duration ago or a time.
    #[arg(long, default_value = "now")]
    at: String,
    /// The data directory; overrides the configuration's.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// A command used wrongly, in a way the argument parser cannot tell (a `--match` that is not
/// `KEY=VALUE`, a channel the configuration does not have): `error: …` and exit code 2, as
/// for the parser's own usage errors.
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The configuration at `path`; its problems stay a `ConfigError`, which `main` prints as
/// `check` does: a headline and one line per problem, without `error: `.
fn load(path: &Path) -> anyhow::Result<Config> {
    Ok(config::load(path)?)
}

/// The configuration at `path`, for the commands that read the data file; its problems become
/// one `error: …` message.
fn load_inline(path: &Path) -> anyhow::Result<Config> {
    config::load(path).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))
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
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            let (text, code) = failure(&e);
            eprint!("{text}");
            code
        }
    }
}

/// What a failed command prints on stderr, and its exit code.
fn failure(e: &anyhow::Error) -> (String, ExitCode) {
    if let Some(problems) = e.downcast_ref::<ConfigError>() {
        // Its own headline and lines, each ending in a newline.
        return (problems.to_string(), ExitCode::FAILURE);
    }
    let code = if e.is::<UsageError>() {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    };
    (format!("error: {e:#}\n"), code)
}

/// Runs one command. `Ok` carries how the process ends when the command did its work, which
/// may be a failure it has reported itself (`test-notify` when the channel refused); `Err` is
/// a failure for `main` to print.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Run { config, data_dir } => run_daemon(&config, data_dir),
        Command::Demo { duration, keep } => demo(duration, keep),
        Command::TestNotify { config, channel } => test_notify(&config, &channel),
        Command::Query(args) => store::query(args),
        Command::Errors {
            source,
            since,
            json,
            config,
            data_dir,
        } => store::errors(source.as_deref(), &since, json, &config, data_dir),
        Command::Backtest {
            config,
            rule,
            since,
            until,
            json,
            data_dir,
        } => store::backtest(&config, &rule, &since, &until, json, data_dir),
        Command::Report(args) => store::report(args),
        Command::Compact { config, data_dir } => store::compact(&config, data_dir),
        Command::Status { config, json } => api::status(&config, json),
        Command::Ack {
            alert,
            by,
            comment,
            config,
        } => api::ack(alert, by, comment, &config),
        Command::Silence { action } => api::silence(action),
        Command::History {
            since,
            json,
            config,
        } => api::history(&since, json, &config),
        Command::DeadLetters { config } => api::dead_letters(&config),
    }
}

/// `sloguard check`: the configuration's problems, or what it holds.
fn check(config: &Path) -> anyhow::Result<ExitCode> {
    let cfg = load(config)?;
    for warning in cfg.warnings() {
        eprintln!("warning: {warning}");
    }
    println!("{}: OK ({})", config.display(), summary(&cfg));
    Ok(ExitCode::SUCCESS)
}

/// What a configuration holds, in words: targets, rules and channels always, the other
/// sections when there are any (`1 target, 2 log sources, …`).
fn summary(cfg: &crate::config::Config) -> String {
    let counts = [
        (cfg.targets.len(), "target", true),
        (cfg.databases.len(), "database", false),
        (cfg.scrapes.len(), "scrape", false),
        (cfg.logs.len(), "log source", false),
        (cfg.rules.len(), "rule", true),
        (cfg.channels.len(), "channel", true),
        (cfg.reports.len(), "report", false),
    ];
    counts
        .iter()
        .filter(|(n, _, always)| *always || *n > 0)
        .map(|(n, what, _)| format!("{n} {what}{}", if *n == 1 { "" } else { "s" }))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `sloguard run`: the daemon, until a signal stops it.
fn run_daemon(config: &Path, data_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let cfg = load(config)?;
    init_logging(cfg.daemon.log_format, &cfg.daemon.log_level);
    let result = runtime().map_err(anyhow::Error::from).and_then(|rt| {
        rt.block_on(daemon::run(
            cfg,
            RunOptions {
                data_dir,
                listener: None,
            },
            CancellationToken::new(),
        ))
    });
    if let Err(e) = &result {
        // In the log too, where a service manager keeps it.
        tracing::error!(error = format!("{e:#}"), "sloguard cannot run");
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

/// `sloguard demo`.
fn demo(duration: Duration, keep: bool) -> anyhow::Result<ExitCode> {
    init_logging(LogFormat::Text, "info");
    runtime()?.block_on(crate::demo::run(duration, keep))?;
    Ok(ExitCode::SUCCESS)
}

/// `sloguard test-notify`: sends a test message to one channel and prints what it answered.
/// A channel that does not take it is the command's answer, printed here with exit code 1.
fn test_notify(config: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let cfg = load(config)?;
    let Some(channel) = cfg.channels.get(name) else {
        let known: Vec<&str> = cfg.channels.keys().map(String::as_str).collect();
        return Err(UsageError(format!(
            "{} has no channel named `{name}`; its channels: {}",
            config.display(),
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        ))
        .into());
    };
    let sent = runtime()?.block_on(async {
        let client = reqwest::Client::builder()
            .user_agent(concat!("sloguard/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let n = Notification::test(name, crate::clock::now_ms());
        anyhow::Ok(notify::send(&client, channel, &n, cfg.outbox.timeout).await)
    })?;
    let kind = channel.kind.type_name();
    match sent {
        Ok(answer) => {
            println!(
                "{name} ({kind}): delivered; the channel answered {} {} {}",
                answer.protocol,
                answer.status,
                answer.body.trim()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(SendError::Retryable { message, .. }) => {
            eprintln!(
                "{name} ({kind}): not delivered: {message} (temporary; the daemon would retry)"
            );
            Ok(ExitCode::FAILURE)
        }
        Err(SendError::Permanent { message }) => {
            eprintln!(
                "{name} ({kind}): not delivered: {message} (permanent; check the channel's configuration)"
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printed(e: anyhow::Error) -> (String, u8) {
        let (text, code) = failure(&e);
        let code = if code == ExitCode::SUCCESS {
            0
        } else if code == ExitCode::FAILURE {
            1
        } else if code == ExitCode::from(2) {
            2
        } else {
            255
        };
        (text, code)
    }

    #[test]
    fn a_configuration_error_prints_as_check_prints_it() {
        let e = config::load(Path::new("/nonexistent/sloguard.toml")).unwrap_err();
        let (text, code) = printed(e.clone().into());
        assert_eq!(text, e.to_string());
        assert!(text.starts_with("/nonexistent/sloguard.toml has 1 problem:\n"));
        assert!(text.ends_with('\n') && !text.ends_with("\n\n"));
        assert_eq!(code, 1);
    }

    #[test]
    fn other_failures_print_one_error_line_with_their_causes() {
        let e = anyhow::anyhow!("cannot open the data file").context("the data directory is /x");
        assert_eq!(
            printed(e),
            (
                "error: the data directory is /x: cannot open the data file\n".into(),
                1
            )
        );
        let inline = load_inline(Path::new("/nonexistent/sloguard.toml")).unwrap_err();
        let (text, code) = printed(inline);
        assert!(text.starts_with("error: /nonexistent/sloguard.toml has 1 problem:\n  "));
        assert!(text.ends_with("(os error 2)\n"), "{text}");
        assert_eq!(code, 1);
    }

    #[test]
    fn a_usage_error_exits_with_2() {
        let e = UsageError("`--match rule` is not KEY=VALUE".into()).into();
        assert_eq!(
            printed(e),
            ("error: `--match rule` is not KEY=VALUE\n".into(), 2)
        );
    }
}
