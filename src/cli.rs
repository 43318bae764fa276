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
    Query {
        /// The metric name, e.g. `probe_up`.
        metric: String,
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
    },
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
    Report {
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
    },
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

/// `--data-dir` if given, else the configuration's data directory.
fn data_dir_of(data_dir: Option<PathBuf>, config: &std::path::Path) -> anyhow::Result<PathBuf> {
    match data_dir {
        Some(d) => Ok(d),
        None => match config::load(config) {
            Ok(cfg) => Ok(cfg.daemon.data_dir),
            Err(e) => anyhow::bail!("{}", e.to_string().trim_end()),
        },
    }
}

/// Runs `f` on a snapshot of the data in `dir` and its error types, read-only beside a
/// running daemon. A file that was not closed cleanly, with no daemon running, is opened for
/// writing once to recover it.
fn read_store<T>(
    dir: &std::path::Path,
    f: impl FnOnce(&crate::store::Snapshot, &crate::store::logs::Errors) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let store = crate::store::Reader::open(dir)?;
    f(&store.snapshot()?, &store.errors()?)
}

/// Reads a snapshot and the alert history since `history_from` (the newest events when there
/// are more than a report reads, oldest first) beside a running daemon.
fn read_report_inputs<T>(
    dir: &std::path::Path,
    history_from: i64,
    f: impl FnOnce(&crate::store::Snapshot, &[crate::history::Event]) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let store = crate::store::Reader::open(dir)?;
    let mut history: Vec<crate::history::Event> =
        store.history_newest(history_from, crate::report::schedule::HISTORY_LIMIT)?;
    history.reverse();
    f(&store.snapshot()?, &history)
}

/// Prints the error types seen since `from_ms`, with their counts in whole hours since then.
fn print_errors(
    dir: &std::path::Path,
    source: Option<&str>,
    from_ms: i64,
    now_ms: i64,
    json: bool,
) -> anyhow::Result<()> {
    use crate::store::logs::WINDOW_MS;
    let hour = from_ms.div_euclid(WINDOW_MS) * WINDOW_MS;
    read_store(dir, |_, errors| {
        print_error_types(errors, source, from_ms, hour, now_ms, json)
    })
}

fn print_error_types(
    errors: &crate::store::logs::Errors,
    source: Option<&str>,
    from_ms: i64,
    hour: i64,
    now_ms: i64,
    json: bool,
) -> anyhow::Result<()> {
    use crate::store::logs::WINDOW_MS;
    let mut rows = Vec::new();
    for t in errors
        .types(source)?
        .into_iter()
        .filter(|t| t.last_ms >= from_ms)
    {
        let recent: u64 = errors
            .windows(&t.source, t.id, hour, now_ms + WINDOW_MS)?
            .iter()
            .map(|(_, n)| n)
            .sum();
        rows.push(serde_json::json!({
            "source": t.source,
            "id": format!("{:016x}", t.id),
            "pattern": t.pattern,
            "last_message": t.last_message,
            "first_seen": crate::format::rfc3339(t.first_ms),
            "last_seen": crate::format::rfc3339(t.last_ms),
            "count": t.count,
            "count_since": recent,
        }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no error types seen");
    }
    for r in &rows {
        println!(
            "{} {} x{} (all time {}, first {}) [{}] {}\n    last: {}",
            r["last_seen"].as_str().unwrap_or(""),
            r["source"].as_str().unwrap_or(""),
            r["count_since"],
            r["count"],
            r["first_seen"].as_str().unwrap_or(""),
            r["id"].as_str().unwrap_or(""),
            r["pattern"].as_str().unwrap_or(""),
            r["last_message"].as_str().unwrap_or(""),
        );
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn print_answer(answer: &crate::query::Answer, format: &str) -> anyhow::Result<()> {
    use crate::query::Answer;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let fmt_value = |v: f64| format!("{v}");
    match (format, answer) {
        ("json", a) => writeln!(out, "{}", serde_json::to_string_pretty(&a.to_json())?)?,
        ("csv", Answer::Values(values)) => {
            writeln!(out, "series,value")?;
            for v in values {
                let value = v.value.map(fmt_value).unwrap_or_default();
                writeln!(out, "{},{value}", csv_field(&v.series.to_string()))?;
            }
        }
        ("csv", Answer::Points(series)) => {
            writeln!(out, "series,time,timestamp_ms,value")?;
            for s in series {
                let name = csv_field(&s.series.to_string());
                for (t, v) in &s.points {
                    let time = crate::format::rfc3339(*t);
                    writeln!(out, "{name},{time},{t},{}", fmt_value(*v))?;
                }
            }
        }
        (_, Answer::Values(values)) => {
            if values.is_empty() {
                writeln!(out, "no series match")?;
            }
            let width = values
                .iter()
                .map(|v| v.series.to_string().len())
                .max()
                .unwrap_or(0);
            for v in values {
                let value = v.value.map(fmt_value).unwrap_or_else(|| "no data".into());
                writeln!(out, "{:<width$}  {value}", v.series.to_string())?;
            }
        }
        (_, Answer::Points(series)) => {
            if series.is_empty() {
                writeln!(out, "no series match")?;
            }
            for s in series {
                writeln!(out, "{}", s.series)?;
                if s.points.is_empty() {
                    writeln!(out, "  no data in the range")?;
                }
                for (t, v) in &s.points {
                    let time = crate::format::rfc3339(*t);
                    writeln!(
                        out,
                        "  {}  {}",
                        time.get(..23).unwrap_or(&time),
                        fmt_value(*v)
                    )?;
                }
            }
        }
    }
    Ok(())
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
                    RunOptions {
                        data_dir,
                        listener: None,
                    },
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
        Command::Demo { duration, keep } => {
            init_logging(LogFormat::Text, "info");
            match runtime()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(crate::demo::run(duration, keep)))
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::TestNotify { config, channel } => test_notify(&config, &channel),
        Command::Silence { action } => silence(action),
        Command::DeadLetters { config } => api_call(&config, |client, base, _| async move {
            let body = answer(
                client
                    .get(format!("{base}/api/v1/dead-letters"))
                    .send()
                    .await?,
            )
            .await?;
            let list = body.as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no dead letters");
            }
            for d in list {
                println!(
                    "#{} {} [{}] {} {}: {} attempt(s), {}",
                    d["id"],
                    d["created_at"]
                        .as_str()
                        .unwrap_or_default()
                        .get(..19)
                        .unwrap_or_default()
                        .replace('T', " "),
                    d["channel"].as_str().unwrap_or_default(),
                    d["status"].as_str().unwrap_or_default(),
                    d["alert"].as_str().unwrap_or_default(),
                    d["attempts"],
                    d["error"].as_str().unwrap_or("no error recorded")
                );
            }
            Ok(())
        }),
        Command::Query {
            metric,
            matchers,
            since,
            until,
            agg,
            step,
            format,
            config,
            data_dir,
        } => {
            let result = (|| {
                let dir = data_dir_of(data_dir, &config)?;
                let request = crate::query::Request::parse(
                    &metric,
                    &matchers,
                    &since,
                    &until,
                    agg.as_deref(),
                    step.as_deref(),
                    crate::clock::now_ms(),
                )?;
                let answer = read_store(&dir, |snap, _| Ok(request.run(snap)?))?;
                print_answer(&answer, &format)
            })();
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Report {
            config,
            name,
            print,
            html,
            send,
            json,
            at,
            data_dir,
        } => {
            let result = (|| {
                let cfg = config::load(&config)
                    .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
                let Some(report) = cfg.reports.iter().find(|r| r.name == name) else {
                    let names: Vec<&str> = cfg.reports.iter().map(|r| r.name.as_str()).collect();
                    anyhow::bail!(
                        "{} has no report `{name}`; its reports: {}",
                        config.display(),
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    );
                };
                let dir = data_dir.unwrap_or_else(|| cfg.daemon.data_dir.clone());
                let at = crate::query::parse_time(&at, crate::clock::now_ms())?;
                let from = crate::report::schedule::history_from(report, at)?;
                let data = read_report_inputs(&dir, from, |snap, history| {
                    crate::report::schedule::make(&cfg, report, snap, history, at)
                })?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&data)?);
                }
                if let Some(path) = &html {
                    std::fs::write(path, crate::report::render::standalone_html(&data))
                        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                    eprintln!("Wrote {}", path.display());
                }
                if print || !(json || html.is_some() || send) {
                    print!("{}", crate::report::render::text(&data));
                }
                if send {
                    let Some(crate::config::Channel {
                        kind: crate::config::ChannelKind::Email(email),
                        ..
                    }) = cfg.channels.get(&report.channel)
                    else {
                        anyhow::bail!("channel `{}` is not an email channel", report.channel);
                    };
                    let mail = crate::report::render::mail(&data, &report.to);
                    let answer = runtime()?.block_on(crate::notify::email::send_report(
                        email,
                        &mail,
                        cfg.outbox.timeout,
                    ));
                    match answer {
                        Ok(d) => eprintln!(
                            "Sent to {} through {}: {} {}",
                            if mail.to.is_empty() {
                                email.to.join(", ")
                            } else {
                                mail.to.join(", ")
                            },
                            report.channel,
                            d.status,
                            d.body
                        ),
                        Err(e) => anyhow::bail!("{e}"),
                    }
                }
                Ok(())
            })();
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Backtest {
            config,
            rule,
            since,
            until,
            json,
            data_dir,
        } => {
            let result = (|| {
                let cfg = config::load(&config)
                    .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
                let Some(r) = cfg.rules.iter().find(|r| r.name == rule) else {
                    let names: Vec<&str> = cfg.rules.iter().map(|r| r.name.as_str()).collect();
                    anyhow::bail!(
                        "{} has no rule `{rule}`; its rules: {}",
                        config.display(),
                        names.join(", ")
                    );
                };
                let dir = data_dir.unwrap_or_else(|| cfg.daemon.data_dir.clone());
                let now = crate::clock::now_ms();
                let from = crate::query::parse_time(&since, now)?;
                let to = crate::query::parse_time(&until, now)?;
                if from >= to {
                    anyhow::bail!("--since must be before --until");
                }
                let report = read_store(&dir, |snap, errors| {
                    crate::backtest::run(r, snap, errors, from, to)
                })?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    print!("{}", crate::backtest::render(&report));
                }
                Ok::<_, anyhow::Error>(())
            })();
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Errors {
            source,
            since,
            json,
            config,
            data_dir,
        } => {
            let result = (|| {
                let dir = data_dir_of(data_dir, &config)?;
                let now = crate::clock::now_ms();
                let from = crate::query::parse_time(&since, now)?;
                print_errors(&dir, source.as_deref(), from, now, json)
            })();
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Compact { config, data_dir } => {
            let result = (|| {
                let cfg = config::load(&config)
                    .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
                let dir = data_dir.unwrap_or(cfg.daemon.data_dir.clone());
                let mut store = crate::store::Store::open(&dir)?;
                store.set_layout(cfg.store.layout())?;
                let size = |s: &crate::store::Store| {
                    std::fs::metadata(s.path()).map(|m| m.len()).unwrap_or(0)
                };
                let before = size(&store);
                let stats = store.compact(crate::clock::now_ms())?;
                store.shrink()?;
                let after = size(&store);
                println!(
                    "{}: {:.1} MiB -> {:.1} MiB ({} rollup buckets made, {} chunks merged, {} chunks and {} rollup blocks past retention deleted)",
                    store.path().display(),
                    before as f64 / 1048576.0,
                    after as f64 / 1048576.0,
                    stats.rollup_buckets,
                    stats.chunks_merged,
                    stats.chunks_removed,
                    stats.blocks_removed
                );
                Ok::<_, anyhow::Error>(())
            })();
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::History {
            since,
            json,
            config,
        } => api_call(&config, |client, base, _| async move {
            let body = answer(
                client
                    .get(format!("{base}/api/v1/history"))
                    .query(&[("since", since.as_str()), ("limit", "10000")])
                    .send()
                    .await?,
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&body)?);
                return Ok(());
            }
            let events: Vec<crate::history::Event> = serde_json::from_value(body)?;
            if events.is_empty() {
                println!("nothing happened");
            }
            for e in events {
                let at = e.at.get(..19).unwrap_or(&e.at).replace('T', " ");
                let channel = e.channel.map(|c| format!(" [{c}]")).unwrap_or_default();
                let detail = e.detail.map(|d| format!(": {d}")).unwrap_or_default();
                println!("{at}  {:<12} {}{channel}{detail}", e.event, e.alert);
            }
            Ok(())
        }),
        Command::Status { config, json } => api_call(&config, |client, base, _| async move {
            let resp = client.get(format!("{base}/api/v1/alerts")).send().await?;
            let status = resp.status();
            let body = resp.text().await?;
            if !status.is_success() {
                anyhow::bail!(
                    "the daemon answered HTTP {}: {}",
                    status.as_u16(),
                    body.trim()
                );
            }
            let alerts: Vec<crate::pipeline::AlertView> = serde_json::from_str(&body)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&alerts)?);
            } else {
                print_status(&alerts);
            }
            Ok(())
        }),
        Command::Ack {
            alert,
            by,
            comment,
            config,
        } => {
            let by = by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "unknown".into());
            api_call(&config, |client, base, token| async move {
                let req = crate::api::AckRequest { alert, by, comment };
                let mut call = client.post(format!("{base}/api/v1/alerts/ack")).json(&req);
                if let Some(t) = token {
                    call = call.bearer_auth(t);
                }
                let resp = call.send().await?;
                let status = resp.status();
                let body: serde_json::Value = resp.json().await.unwrap_or_default();
                if !status.is_success() {
                    anyhow::bail!("{}", body["error"].as_str().unwrap_or("the daemon refused"));
                }
                let acked: Vec<String> = serde_json::from_value(body["acknowledged"].clone())?;
                if acked.is_empty() {
                    println!("already acknowledged");
                }
                for fp in acked {
                    println!("acknowledged {fp}");
                }
                Ok(())
            })
        }
    }
}

/// Reads an answer: the JSON body on success, the daemon's `error` otherwise.
async fn answer(resp: reqwest::Response) -> anyhow::Result<serde_json::Value> {
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!(
            "{}",
            body["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("the daemon answered HTTP {}", status.as_u16()))
        );
    }
    Ok(body)
}

fn silence(action: SilenceAction) -> ExitCode {
    match action {
        SilenceAction::Add {
            matchers,
            duration,
            reason,
            by,
            config,
        } => {
            let mut map = crate::silence::Matchers::new();
            for m in &matchers {
                match m.split_once('=') {
                    Some((k, v)) if !k.is_empty() && !v.is_empty() => {
                        map.insert(k.to_string(), v.to_string());
                    }
                    _ => {
                        eprintln!(
                            "error: `--match {m}` is not KEY=VALUE, e.g. `--match rule=api_down`"
                        );
                        return ExitCode::from(2);
                    }
                }
            }
            let by = by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "unknown".into());
            api_call(&config, |client, base, token| async move {
                let req = crate::api::SilenceRequest {
                    matchers: map,
                    duration,
                    reason,
                    by,
                };
                let mut call = client.post(format!("{base}/api/v1/silences")).json(&req);
                if let Some(t) = token {
                    call = call.bearer_auth(t);
                }
                let body = answer(call.send().await?).await?;
                println!(
                    "silence #{} until {}",
                    body["id"],
                    body["ends_at"].as_str().unwrap_or_default()
                );
                Ok(())
            })
        }
        SilenceAction::List { config } => api_call(&config, |client, base, _| async move {
            let body = answer(client.get(format!("{base}/api/v1/silences")).send().await?).await?;
            let list = body.as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no silences");
            }
            for s in list {
                let matchers: Vec<String> = s["matchers"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                            .collect()
                    })
                    .unwrap_or_default();
                println!(
                    "#{} {} until {} by {}: {} [{}]",
                    s["id"],
                    if s["active"].as_bool() == Some(true) {
                        "active "
                    } else {
                        "expired"
                    },
                    s["ends_at"].as_str().unwrap_or_default(),
                    s["by"].as_str().unwrap_or_default(),
                    s["reason"].as_str().unwrap_or_default(),
                    matchers.join(", ")
                );
            }
            Ok(())
        }),
        SilenceAction::Expire { id, config } => {
            api_call(&config, |client, base, token| async move {
                let mut call = client.post(format!("{base}/api/v1/silences/{id}/expire"));
                if let Some(t) = token {
                    call = call.bearer_auth(t);
                }
                answer(call.send().await?).await?;
                println!("silence #{id} expired");
                Ok(())
            })
        }
    }
}

/// Runs `f` against the running daemon's HTTP API, found through the configuration.
fn api_call<F, Fut>(path: &std::path::Path, f: F) -> ExitCode
where
    F: FnOnce(reqwest::Client, String, Option<String>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let cfg = match config::load(path) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = cfg.server.listen;
    if addr.port() == 0 {
        eprintln!(
            "error: [server].listen in {} has port 0; give the daemon a fixed port to reach it",
            path.display()
        );
        return ExitCode::FAILURE;
    }
    let host = if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let base = format!("http://{host}");
    let token = cfg.server.token.as_ref().map(|t| t.expose().to_string());
    let result = runtime().map_err(anyhow::Error::from).and_then(|rt| {
        rt.block_on(async {
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(15))
                .build()?;
            f(client, base.clone(), token).await
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let why = match e.downcast_ref::<reqwest::Error>() {
                Some(re) if re.is_connect() => {
                    format!("cannot reach the daemon at {base}: is it running?")
                }
                _ => format!("{e:#}"),
            };
            eprintln!("error: {why}");
            ExitCode::FAILURE
        }
    }
}

fn print_status(alerts: &[crate::pipeline::AlertView]) {
    if alerts.is_empty() {
        println!("no pending or firing alerts");
        return;
    }
    println!(
        "{:<8} {:<9} {:<48} {:<20} ACKNOWLEDGED",
        "STATUS", "SEVERITY", "ALERT", "SINCE"
    );
    for a in alerts {
        let ack = match (&a.acknowledged_by, &a.comment) {
            (Some(by), Some(c)) => format!("{by}: {c}"),
            (Some(by), None) => by.clone(),
            _ => "-".into(),
        };
        println!(
            "{:<8} {:<9} {:<48} {:<20} {ack}",
            a.status,
            a.severity.as_str(),
            a.fingerprint,
            a.since.get(..19).unwrap_or(&a.since).replace('T', " ")
        );
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
