//! The commands that read the data file themselves, beside a running daemon or without one:
//! `query`, `errors`, `backtest`, `report`, and `compact` (which writes it, with the daemon
//! stopped).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

use super::{QueryArgs, ReportArgs, load_inline, runtime};
use crate::store::logs::WINDOW_MS;

/// `--data-dir` if given, else the configuration's data directory.
fn data_dir_of(data_dir: Option<PathBuf>, config: &Path) -> anyhow::Result<PathBuf> {
    match data_dir {
        Some(d) => Ok(d),
        None => Ok(load_inline(config)?.daemon.data_dir),
    }
}

/// Runs `f` on a snapshot of the data in `dir` and its error types, read-only beside a
/// running daemon. A file that was not closed cleanly, with no daemon running, is opened for
/// writing once to recover it.
fn read_store<T>(
    dir: &Path,
    f: impl FnOnce(&crate::store::Snapshot, &crate::store::logs::ErrorSnapshot) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let store = crate::store::Reader::open(dir)?;
    f(&store.snapshot()?, &store.errors()?)
}

/// Reads a snapshot and the alert history since `history_from` (the newest events when there
/// are more than a report reads, oldest first) beside a running daemon.
fn read_report_inputs<T>(
    dir: &Path,
    history_from: i64,
    f: impl FnOnce(&crate::store::Snapshot, &[crate::history::Event]) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let store = crate::store::Reader::open(dir)?;
    let mut history: Vec<crate::history::Event> =
        store.history_newest(history_from, crate::report::schedule::HISTORY_LIMIT)?;
    history.reverse();
    f(&store.snapshot()?, &history)
}

/// `sloguard query`.
pub(super) fn query(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let QueryArgs {
        metric,
        matchers,
        since,
        until,
        agg,
        step,
        format,
        config,
        data_dir,
    } = args;
    let dir = data_dir_of(data_dir, &config)?;
    let Some(metric) = metric else {
        let metrics = read_store(&dir, |snap, _| Ok(metric_list(snap)))?;
        print_metrics(&metrics, &format)?;
        return Ok(ExitCode::SUCCESS);
    };
    let request = crate::query::Request::parse(
        &metric,
        &matchers,
        &since,
        &until,
        agg.as_deref(),
        step.as_deref(),
        crate::clock::now_ms(),
    )?;
    let (answer, metrics) =
        read_store(&dir, |snap, _| Ok((request.run(snap)?, metric_list(snap))))?;
    print_answer(&answer, &format)?;
    let matched = match &answer {
        crate::query::Answer::Values(v) => !v.is_empty(),
        crate::query::Answer::Points(p) => !p.is_empty(),
    };
    if matched {
        return Ok(ExitCode::SUCCESS);
    }
    // Nothing matched: say why on standard error, and fail, so that a script notices.
    match metrics.iter().find(|m| m.metric == metric) {
        Some(m) => eprintln!(
            "no series of `{metric}` match {}; its labels: {}",
            matchers.join(", "),
            if m.labels.is_empty() {
                "none".to_string()
            } else {
                m.labels.join(", ")
            }
        ),
        None => {
            let mut close: Vec<(f64, &str)> = metrics
                .iter()
                .map(|m| (strsim::jaro_winkler(&metric, &m.metric), m.metric.as_str()))
                .filter(|(score, _)| *score >= 0.8)
                .collect();
            close.sort_by(|a, b| b.0.total_cmp(&a.0));
            let hint = match close.first() {
                Some((_, name)) => format!("; did you mean `{name}`?"),
                None => String::new(),
            };
            eprintln!(
                "no metric `{metric}` in the data file{hint} (`sloguard query` without a metric lists them)"
            );
        }
    }
    Ok(ExitCode::FAILURE)
}

/// A metric of the store: its kind, how many series it has, and their label names.
#[derive(Debug, Serialize)]
struct MetricRow {
    metric: String,
    kind: &'static str,
    series: usize,
    labels: Vec<String>,
}

fn metric_list(snap: &crate::store::Snapshot) -> Vec<MetricRow> {
    let mut by_name: std::collections::BTreeMap<&str, MetricRow> = Default::default();
    for info in snap.series() {
        let row = by_name
            .entry(info.key.name.as_str())
            .or_insert_with(|| MetricRow {
                metric: info.key.name.clone(),
                kind: match info.kind {
                    crate::store::Kind::Gauge => "gauge",
                    crate::store::Kind::Distribution => "distribution",
                },
                series: 0,
                labels: Vec::new(),
            });
        row.series += 1;
        for label in info.key.labels.keys() {
            if !row.labels.contains(label) {
                row.labels.push(label.clone());
            }
        }
    }
    let mut rows: Vec<MetricRow> = by_name.into_values().collect();
    for r in &mut rows {
        r.labels.sort();
    }
    rows
}

fn print_metrics(rows: &[MetricRow], format: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match format {
        "json" => writeln!(out, "{}", serde_json::to_string_pretty(rows)?)?,
        "csv" => {
            writeln!(out, "metric,kind,series,labels")?;
            for r in rows {
                writeln!(
                    out,
                    "{},{},{},{}",
                    csv_field(&r.metric),
                    r.kind,
                    r.series,
                    csv_field(&r.labels.join(" "))
                )?;
            }
        }
        _ => {
            if rows.is_empty() {
                writeln!(out, "the data file holds no series yet")?;
            }
            let width = rows.iter().map(|r| r.metric.len()).max().unwrap_or(0);
            for r in rows {
                writeln!(
                    out,
                    "{:<width$}  {:<12}  {:>6} series  {}",
                    r.metric,
                    r.kind,
                    r.series,
                    r.labels.join(", ")
                )?;
            }
        }
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

/// One error type as `sloguard errors` shows it, and as `--json` prints it. Fields in
/// alphabetical order, the order of the JSON map this was first printed from.
#[derive(Debug, Serialize)]
struct ErrorTypeRow {
    /// All time.
    count: u64,
    /// In the whole hours since `--since`.
    count_since: u64,
    first_seen: String,
    /// The type's stable id, 16 hex digits.
    id: String,
    last_message: String,
    last_seen: String,
    pattern: String,
    source: String,
}

/// `sloguard errors`: the error types seen since `--since`, with their counts in whole hours
/// since then.
pub(super) fn errors(
    source: Option<&str>,
    since: &str,
    json: bool,
    config: &Path,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let dir = data_dir_of(data_dir, config)?;
    let now_ms = crate::clock::now_ms();
    let from_ms = crate::query::parse_time(since, now_ms)?;
    let hour = from_ms.div_euclid(WINDOW_MS) * WINDOW_MS;
    let rows = read_store(&dir, |_, errors| {
        error_rows(errors, source, from_ms, hour, now_ms)
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no error types seen");
    }
    for r in &rows {
        println!(
            "{} {} x{} (all time {}, first {}) [{}] {}\n    last: {}",
            r.last_seen,
            r.source,
            r.count_since,
            r.count,
            r.first_seen,
            r.id,
            r.pattern,
            r.last_message,
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn error_rows(
    errors: &crate::store::logs::ErrorSnapshot,
    source: Option<&str>,
    from_ms: i64,
    hour: i64,
    now_ms: i64,
) -> anyhow::Result<Vec<ErrorTypeRow>> {
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
        rows.push(ErrorTypeRow {
            count: t.count,
            count_since: recent,
            first_seen: crate::format::rfc3339(t.first_ms),
            id: format!("{:016x}", t.id),
            last_message: t.last_message,
            last_seen: crate::format::rfc3339(t.last_ms),
            pattern: t.pattern,
            source: t.source,
        });
    }
    Ok(rows)
}

/// `sloguard backtest`.
pub(super) fn backtest(
    config: &Path,
    rule: &str,
    since: &str,
    until: &str,
    json: bool,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let cfg = load_inline(config)?;
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
    let from = crate::query::parse_time(since, now)?;
    let to = crate::query::parse_time(until, now)?;
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
    Ok(ExitCode::SUCCESS)
}

/// `sloguard report`: makes a `[[reports]]` report as if it ran at `--at`.
pub(super) fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let ReportArgs {
        config,
        name,
        print,
        html,
        send,
        json,
        at,
        data_dir,
    } = args;
    let cfg = load_inline(&config)?;
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
    Ok(ExitCode::SUCCESS)
}

/// `sloguard compact`, with the daemon stopped: rollups, retention, and the file's free space
/// given back.
pub(super) fn compact(config: &Path, data_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let cfg = load_inline(config)?;
    let dir = data_dir.unwrap_or(cfg.daemon.data_dir.clone());
    let mut store = crate::store::Store::open(&dir)?;
    store.set_layout(cfg.store.layout())?;
    let size = |s: &crate::store::Store| std::fs::metadata(s.path()).map(|m| m.len()).unwrap_or(0);
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
    Ok(ExitCode::SUCCESS)
}
