//! Scheduled reports: the plan's weekly usage summary and monthly business-impact report.
//!
//! [`build`] reads one store snapshot and the alert history into a [`ReportData`] for a
//! window (`7d` ending at the run, the last calendar week or month in the report's time
//! zone) and the window before it: SLO compliance, alerts (by severity and rule, time to
//! acknowledge and to resolve, the noisiest rules, false-positive candidates), usage counts
//! from events, database query time, and whether sloguard itself was up. [`render`] makes the
//! plain text, the HTML with inline PNG charts, and the email; [`schedule`] runs them on their
//! cron schedules in the daemon, catching up a run missed while it was down, once.

pub mod render;
pub mod schedule;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::Serialize;

use crate::config::{
    Config, Distinct, Report, ReportSection, ReportWindow, RuleKind, Severity, UsageKind,
    WindowInput,
};
use crate::history::EventKind;
use crate::query::equal_selector;
use crate::query::{Agg, QueryError, aggregate};
use crate::rules::slo_error_ratio;
use crate::series::Labels;
use crate::store::Snapshot;

/// The daemon's own heartbeat series: a point a minute while it runs.
pub const HEARTBEAT_METRIC: &str = "sloguard_up";
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(60);
/// A gap longer than this between heartbeats is downtime.
const DOWN_AFTER_MS: i64 = 150_000;

/// A window: `[from, to)` in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    pub from_ms: i64,
    pub to_ms: i64,
}

/// Local midnight of `date` in `tz` (the earliest, where a change of clocks repeats it; the
/// first moment after, where it skips it).
fn midnight<Tz: TimeZone>(tz: &Tz, date: NaiveDate) -> i64 {
    let naive = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    match tz.from_local_datetime(&naive).earliest() {
        Some(t) => t.timestamp_millis(),
        None => tz
            .from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest()
            .map(|t| t.timestamp_millis())
            .unwrap_or_else(|| naive.and_utc().timestamp_millis()),
    }
}

/// The report's window for a run at `at`, and the window before it.
pub fn windows(window: ReportWindow, tz: chrono_tz::Tz, at: DateTime<Utc>) -> (Span, Span) {
    let local = at.with_timezone(&tz).date_naive();
    match window {
        ReportWindow::Last(d) => {
            let d = d.as_millis() as i64;
            let to = at.timestamp_millis();
            (
                Span {
                    from_ms: to - d,
                    to_ms: to,
                },
                Span {
                    from_ms: to - 2 * d,
                    to_ms: to - d,
                },
            )
        }
        ReportWindow::LastWeek => {
            let monday =
                local - chrono::Duration::days(local.weekday().num_days_from_monday() as i64);
            let week = |weeks_back: i64| Span {
                from_ms: midnight(&tz, monday - chrono::Duration::weeks(weeks_back)),
                to_ms: midnight(&tz, monday - chrono::Duration::weeks(weeks_back - 1)),
            };
            (week(1), week(2))
        }
        ReportWindow::LastMonth => {
            let first = |d: NaiveDate| d.with_day(1).unwrap_or(d);
            let this = first(local);
            let last = first(this - chrono::Duration::days(1));
            let before = first(last - chrono::Duration::days(1));
            (
                Span {
                    from_ms: midnight(&tz, last),
                    to_ms: midnight(&tz, this),
                },
                Span {
                    from_ms: midnight(&tz, before),
                    to_ms: midnight(&tz, last),
                },
            )
        }
    }
}

/// One objective's compliance.
#[derive(Debug, Clone, Serialize)]
pub struct SloLine {
    pub rule: String,
    pub summary: String,
    /// What is measured: `availability`, `p95 of app_request_duration_ms`, `error ratio`.
    pub measure: String,
    /// The objective as text: `99.9 %`, `≤ 500`.
    pub objective: String,
    /// The attained value over the window (percent for an `slo` rule); none without data.
    pub attained: Option<f64>,
    pub previous: Option<f64>,
    /// Whether the objective was met; none without data.
    pub met: Option<bool>,
    /// Of an `slo` rule: percent of the window's error budget spent, and left.
    pub budget_used: Option<f64>,
    pub budget_left: Option<f64>,
}

/// An alert of the window that resolved quickly with nobody acknowledging it.
#[derive(Debug, Clone, Serialize)]
pub struct FalsePositive {
    pub alert: String,
    pub rule: String,
    pub fired_at_ms: i64,
    pub lasted_ms: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertStats {
    /// Alerts that fired in the window.
    pub fired: usize,
    pub previous_fired: usize,
    /// By severity name, most severe first.
    pub by_severity: Vec<(String, usize)>,
    /// By rule, the most first.
    pub by_rule: Vec<(String, usize)>,
    pub acknowledged: usize,
    /// Mean time from firing to acknowledgement, of those acknowledged.
    pub mean_to_acknowledge_ms: Option<i64>,
    pub resolved: usize,
    /// Mean time from firing to resolve, of those resolved.
    pub mean_to_resolve_ms: Option<i64>,
    pub false_positives: Vec<FalsePositive>,
    /// The false-positive bound, for the text.
    pub false_positive_within_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct UsageLine {
    pub title: String,
    pub value: Option<f64>,
    pub previous: Option<f64>,
    /// By label value, the largest first.
    pub breakdown: Vec<(String, f64)>,
    /// The label of the breakdown.
    pub by: Option<String>,
    /// The breakdown of the period before, by label value.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub breakdown_before: Vec<(String, f64)>,
    /// `%` when the figures are percentages (a share, or `percent`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The target as written (`> 80 %`), and whether the value meets it (none without data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueryLine {
    pub database: String,
    pub query: String,
    /// Execution time summed over the window, ms.
    pub total_ms: Option<f64>,
    pub calls: Option<f64>,
    pub mean_ms: Option<f64>,
    pub previous_mean_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DaemonLine {
    /// Whether the store has any heartbeat of the window.
    pub recorded: bool,
    /// When heartbeats began, if after the window's start (sloguard was new, or older than
    /// its heartbeats): the figures cover the window from then.
    pub recorded_since: Option<i64>,
    /// Periods without a heartbeat, clipped to the window.
    pub down: Vec<Span>,
    /// Percent of the window it ran.
    pub up_percent: f64,
}

/// Everything a report shows.
#[derive(Debug, Clone, Serialize)]
pub struct ReportData {
    pub name: String,
    pub title: String,
    pub timezone: String,
    pub window: Span,
    pub previous: Span,
    pub generated_ms: i64,
    pub sections: Vec<String>,
    pub slos: Vec<SloLine>,
    pub alerts: AlertStats,
    pub usage: Vec<UsageLine>,
    pub database: Vec<QueryLine>,
    pub daemon: DaemonLine,
    /// The charts, per section, over the window.
    pub charts: Vec<ChartData>,
}

/// One chart of a report: lines over the window, a point per step.
#[derive(Debug, Clone, Serialize)]
pub struct ChartData {
    /// The section it belongs to: `slo`, `alerts`, `usage`, `database`.
    pub section: String,
    pub title: String,
    pub unit: String,
    pub lines: Vec<crate::dashboard::Line>,
    pub step_ms: i64,
}

fn sum_of(
    snap: &Snapshot,
    metric: &str,
    matchers: &BTreeMap<String, String>,
    agg: Agg,
    span: Span,
) -> Result<Option<f64>, QueryError> {
    let values: Vec<f64> = aggregate(
        snap,
        &equal_selector(metric, matchers),
        agg,
        span.from_ms,
        span.to_ms,
    )?
    .iter()
    .filter_map(|v| v.value)
    .collect();
    Ok((!values.is_empty()).then(|| values.iter().sum()))
}

/// The objective a condition that fires implies: `> 500` fires, so `≤ 500` is the aim.
fn objective_of(c: &crate::vocab::Condition) -> String {
    use crate::vocab::Op;
    let op = match c.op {
        Op::Gt => "≤",
        Op::Ge => "<",
        Op::Lt => "≥",
        Op::Le => ">",
        Op::Eq => "≠",
        Op::Ne => "=",
    };
    format!("{op} {}", crate::format::format_value(c.threshold))
}

fn slo_lines(
    cfg: &Config,
    report: &Report,
    snap: &Snapshot,
    window: Span,
    previous: Span,
) -> Result<Vec<SloLine>, QueryError> {
    let mut out = Vec::new();
    for rule in &cfg.rules {
        let listed = report
            .slos
            .as_ref()
            .is_none_or(|names| names.contains(&rule.name));
        let RuleKind::Window(th) = &rule.kind else {
            continue;
        };
        let line = |measure: String,
                    objective: String,
                    attained: Option<f64>,
                    previous: Option<f64>,
                    met: Option<bool>| SloLine {
            rule: rule.name.clone(),
            summary: rule.summary.clone(),
            measure,
            objective,
            attained,
            previous,
            met,
            budget_used: None,
            budget_left: None,
        };
        match &th.input {
            WindowInput::Slo {
                events, objective, ..
            } if listed => {
                let bad = |s: Span| slo_error_ratio(snap, events, s.from_ms, s.to_ms);
                let (now, before) = (bad(window)?, bad(previous)?);
                let budget = 1.0 - objective;
                let mut l = line(
                    "availability".into(),
                    format!("{} %", crate::format::format_value(objective * 100.0)),
                    now.map(|r| (1.0 - r) * 100.0),
                    before.map(|r| (1.0 - r) * 100.0),
                    now.map(|r| r <= budget),
                );
                l.budget_used = now.map(|r| r / budget * 100.0);
                l.budget_left = now.map(|r| (1.0 - r / budget) * 100.0);
                out.push(l);
            }
            WindowInput::Series {
                metric,
                matchers,
                agg,
                ..
            } if listed && (report.slos.is_some() || matches!(agg, Agg::Quantile(_))) => {
                // Of every series the rule watches, the worst.
                let worst = |s: Span| -> Result<Option<f64>, QueryError> {
                    let vs: Vec<f64> = aggregate(
                        snap,
                        &equal_selector(metric, matchers),
                        *agg,
                        s.from_ms,
                        s.to_ms,
                    )?
                    .iter()
                    .filter_map(|v| v.value)
                    .collect();
                    // The worst in the condition's direction: the largest for `>`.
                    use crate::vocab::Op;
                    let larger_is_worse = !matches!(th.condition.op, Op::Lt | Op::Le);
                    Ok(vs
                        .into_iter()
                        .reduce(|a, b| if (b > a) == larger_is_worse { b } else { a }))
                };
                let (now, before) = (worst(window)?, worst(previous)?);
                out.push(line(
                    format!("{} of {metric}", crate::query::agg_name(*agg)),
                    objective_of(&th.condition),
                    now,
                    before,
                    now.map(|v| !th.condition.breached(v)),
                ));
            }
            WindowInput::Ratio {
                numerator,
                denominator,
                agg,
                ..
            } if listed => {
                let ratio = |s: Span| -> Result<Option<f64>, QueryError> {
                    let n = sum_of(snap, &numerator.0, &numerator.1, *agg, s)?;
                    let d = sum_of(snap, &denominator.0, &denominator.1, *agg, s)?;
                    Ok(match (n, d) {
                        (n, Some(d)) if d > 0.0 => Some(n.unwrap_or(0.0) / d),
                        _ => None,
                    })
                };
                let (now, before) = (ratio(window)?, ratio(previous)?);
                let sel = |(m, matchers): &(String, BTreeMap<String, String>)| {
                    if matchers.is_empty() {
                        m.clone()
                    } else {
                        let l: Vec<String> =
                            matchers.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        format!("{m}{{{}}}", l.join(","))
                    }
                };
                out.push(line(
                    format!("ratio of {} to {}", sel(numerator), sel(denominator)),
                    format!(
                        "{} %",
                        objective_of(&crate::vocab::Condition {
                            op: th.condition.op,
                            threshold: th.condition.threshold * 100.0,
                        })
                    ),
                    now,
                    before,
                    now.map(|v| !th.condition.breached(v)),
                ));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Alert statistics from the history of `window` (events up to `until` are read so that
/// alerts resolved after the window still count their resolve).
pub fn alert_stats(
    cfg: &Config,
    history: &[crate::history::Event],
    window: Span,
    previous: Span,
    false_positive_within: Duration,
) -> AlertStats {
    let within = false_positive_within.as_millis() as i64;
    let mut stats = AlertStats {
        false_positive_within_ms: within,
        ..AlertStats::default()
    };
    let (mut to_ack, mut to_resolve) = (Vec::new(), Vec::new());
    let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_severity: BTreeMap<Severity, usize> = BTreeMap::new();
    for (i, e) in history.iter().enumerate() {
        if e.event != EventKind::Firing {
            continue;
        }
        if (previous.from_ms..previous.to_ms).contains(&e.at_ms) {
            stats.previous_fired += 1;
        }
        if !(window.from_ms..window.to_ms).contains(&e.at_ms) {
            continue;
        }
        stats.fired += 1;
        *by_rule.entry(e.rule.clone()).or_default() += 1;
        // Until this alert's resolve (or its next firing).
        let mut acked = None;
        let mut resolved = None;
        let mut raised: Option<Severity> = None;
        // Held back by a silence and not released: nobody was told.
        let mut told = e.held_back_by().is_none();
        for later in &history[i + 1..] {
            if later.alert != e.alert {
                continue;
            }
            match later.event {
                EventKind::Acknowledged if acked.is_none() => acked = Some(later.at_ms),
                EventKind::Upgraded => {
                    let to = later.severity.unwrap_or(Severity::Critical);
                    raised = Some(raised.map_or(to, |r| r.max(to)));
                }
                EventKind::Released => told = true,
                EventKind::Resolved => {
                    resolved = Some(later.at_ms);
                    break;
                }
                EventKind::Firing => break,
                EventKind::Acknowledged
                | EventKind::Escalated
                | EventKind::Notified
                | EventKind::Failed
                | EventKind::Report
                | EventKind::Other => {}
            }
        }
        // As it fired (recorded since reports exist), else the rule's; raised while firing.
        let fired_as = e
            .severity
            .or_else(|| {
                cfg.rules
                    .iter()
                    .find(|r| r.name == e.rule)
                    .map(|r| r.severity)
            })
            .unwrap_or(Severity::Warning);
        let severity = raised.map_or(fired_as, |r| r.max(fired_as));
        // An info alert is only logged: nobody could have acknowledged it.
        told &= severity != Severity::Info;
        *by_severity.entry(severity).or_default() += 1;
        if let Some(a) = acked {
            to_ack.push(a - e.at_ms);
        }
        if let Some(r) = resolved {
            to_resolve.push(r - e.at_ms);
            if told && acked.is_none() && r - e.at_ms <= within {
                stats.false_positives.push(FalsePositive {
                    alert: e.alert.clone(),
                    rule: e.rule.clone(),
                    fired_at_ms: e.at_ms,
                    lasted_ms: r - e.at_ms,
                });
            }
        }
    }
    let mean = |v: &[i64]| (!v.is_empty()).then(|| v.iter().sum::<i64>() / v.len() as i64);
    stats.acknowledged = to_ack.len();
    stats.mean_to_acknowledge_ms = mean(&to_ack);
    stats.resolved = to_resolve.len();
    stats.mean_to_resolve_ms = mean(&to_resolve);
    let mut rules: Vec<(String, usize)> = by_rule.into_iter().collect();
    rules.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    stats.by_rule = rules;
    let mut sev: Vec<(Severity, usize)> = by_severity.into_iter().collect();
    sev.sort_by_key(|s| std::cmp::Reverse(s.0));
    stats.by_severity = sev.into_iter().map(|(s, n)| (s.to_string(), n)).collect();
    stats
}

/// How many distinct values `d.label` had in `span`: from the hourly sketches its log source
/// keeps (every value, however many, over the hours of the span), else, for a metric that
/// has none (not a log metric, a `match`, data from before the sketches), from the series
/// with data in the span.
fn distinct(snap: &Snapshot, d: &Distinct, span: Span) -> Result<usize, QueryError> {
    if d.matchers.is_empty()
        && let Some(n) = snap
            .distinct(&d.metric, &d.label, span.from_ms, span.to_ms)
            .map_err(QueryError::from)?
    {
        return Ok(usize::try_from(n).unwrap_or(usize::MAX));
    }
    let mut seen = std::collections::BTreeSet::new();
    for v in aggregate(
        snap,
        &equal_selector(&d.metric, &d.matchers),
        Agg::Count,
        span.from_ms,
        span.to_ms,
    )? {
        if v.value.is_some_and(|n| n > 0.0)
            && let Some(value) = v.series.labels.get(&d.label)
        {
            seen.insert(value.clone());
        }
    }
    Ok(seen.len())
}

fn usage_lines(
    report: &Report,
    snap: &Snapshot,
    window: Span,
    previous: Span,
) -> Result<Vec<UsageLine>, QueryError> {
    let mut out = Vec::new();
    for item in &report.usage {
        // The figure and its breakdown over a span, before shares, ratios and percent.
        let raw = |s: Span| -> Result<(Option<f64>, BTreeMap<String, f64>), QueryError> {
            match &item.kind {
                UsageKind::Count {
                    metric,
                    matchers,
                    agg,
                    by,
                    per,
                } => {
                    let mut total = None;
                    let mut series = 0u32;
                    let mut groups: BTreeMap<String, f64> = BTreeMap::new();
                    for v in aggregate(
                        snap,
                        &equal_selector(metric, matchers),
                        *agg,
                        s.from_ms,
                        s.to_ms,
                    )? {
                        let Some(x) = v.value else { continue };
                        *total.get_or_insert(0.0) += x;
                        series += 1;
                        if let Some(label) = by {
                            let key = v
                                .series
                                .labels
                                .get(label)
                                .cloned()
                                .unwrap_or_else(|| "(none)".into());
                            *groups.entry(key).or_default() += x;
                        }
                    }
                    if item.average && series > 0 {
                        total = total.map(|t| t / f64::from(series));
                    }
                    if let Some(p) = per {
                        let n = distinct(snap, p, s)?;
                        let per_one = |x: f64| if n > 0 { x / n as f64 } else { f64::NAN };
                        total = total.map(per_one).filter(|x| x.is_finite());
                        for g in groups.values_mut() {
                            *g = per_one(*g);
                        }
                        groups.retain(|_, g| g.is_finite());
                    }
                    Ok((total, groups))
                }
                UsageKind::Distinct(d) => Ok((Some(distinct(snap, d, s)? as f64), BTreeMap::new())),
            }
        };
        let figure = |s: Span| -> Result<(Option<f64>, BTreeMap<String, f64>), QueryError> {
            let (mut total, mut groups) = raw(s)?;
            if let Some(share) = &item.share {
                // Each label value's share of the whole breakdown.
                let sum: f64 = groups.values().sum();
                if sum > 0.0 {
                    total = Some(groups.get(share).copied().unwrap_or(0.0) / sum * 100.0);
                    for g in groups.values_mut() {
                        *g = *g / sum * 100.0;
                    }
                } else {
                    total = None;
                    groups.clear();
                }
                return Ok((total, groups));
            }
            if let Some(f) = &item.divide_by {
                let d = sum_figure(snap, f, s)?.filter(|d| *d != 0.0);
                total = match d {
                    Some(d) => total.map(|t| t / d),
                    None => None,
                };
                match d {
                    Some(d) => groups.values_mut().for_each(|g| *g /= d),
                    None => groups.clear(),
                }
            }
            if item.percent {
                total = total.map(|t| t * 100.0);
                groups.values_mut().for_each(|g| *g *= 100.0);
            }
            Ok((total, groups))
        };
        let (value, groups) = figure(window)?;
        let (before, groups_before) = figure(previous)?;
        let mut breakdown: Vec<(String, f64)> = groups.into_iter().collect();
        breakdown.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let by = match &item.kind {
            UsageKind::Count { by, .. } => by.clone(),
            UsageKind::Distinct(_) => None,
        };
        out.push(UsageLine {
            title: item.title.clone(),
            value,
            previous: before,
            breakdown,
            by,
            breakdown_before: groups_before.into_iter().collect(),
            unit: item.in_percent().then(|| "%".to_string()),
            target: item.target.as_ref().map(|(_, text)| text.clone()),
            met: item
                .target
                .as_ref()
                .and_then(|(c, _)| value.map(|v| c.breached(v))),
        });
    }
    Ok(out)
}

/// A [`Figure`] over a span: its `agg` per series, summed; none without data.
fn sum_figure(
    snap: &Snapshot,
    f: &crate::config::Figure,
    s: Span,
) -> Result<Option<f64>, QueryError> {
    let mut total = None;
    for v in aggregate(
        snap,
        &equal_selector(&f.metric, &f.matchers),
        f.agg,
        s.from_ms,
        s.to_ms,
    )? {
        if let Some(x) = v.value {
            *total.get_or_insert(0.0) += x;
        }
    }
    Ok(total)
}

/// The step of a report's charts: at least ten minutes (a week or a month stays readable in
/// a mail), but never so coarse that the window has fewer than a dozen steps (a two-minute
/// demo window would otherwise be one point, which draws no line).
fn chart_step(window_ms: i64) -> i64 {
    const NICE: [i64; 12] = [
        1_000, 5_000, 10_000, 30_000, 60_000, 300_000, 600_000, 1_800_000, 3_600_000, 7_200_000,
        21_600_000, 86_400_000,
    ];
    let len = Duration::from_millis(window_ms.max(1) as u64);
    let coarse = crate::dashboard::step_for(len).max(600_000);
    let dozen = NICE
        .iter()
        .rev()
        .copied()
        .find(|s| *s <= window_ms / 12)
        .unwrap_or(1_000);
    coarse.min(dozen)
}

/// The named queries of every database, by total execution time in the window.
fn query_lines(
    snap: &Snapshot,
    window: Span,
    previous: Span,
) -> Result<Vec<QueryLine>, QueryError> {
    let by_labels =
        |metric: &str, agg: Agg, s: Span| -> Result<BTreeMap<Labels, f64>, QueryError> {
            Ok(aggregate(
                snap,
                &equal_selector(metric, &BTreeMap::new()),
                agg,
                s.from_ms,
                s.to_ms,
            )?
            .into_iter()
            .filter_map(|v| v.value.map(|x| (v.series.labels, x)))
            .collect())
        };
    let total = by_labels("pg_query_exec_ms", Agg::Sum, window)?;
    let calls = by_labels("pg_query_calls", Agg::Sum, window)?;
    let mean = by_labels("pg_query_mean_exec_ms", Agg::Avg, window)?;
    let mean_before = by_labels("pg_query_mean_exec_ms", Agg::Avg, previous)?;
    let total_before = by_labels("pg_query_exec_ms", Agg::Sum, previous)?;
    let calls_before = by_labels("pg_query_calls", Agg::Sum, previous)?;
    let mut keys: std::collections::BTreeSet<&Labels> = total.keys().collect();
    keys.extend(mean.keys());
    let mut out: Vec<QueryLine> = keys
        .into_iter()
        .map(|labels| {
            // The mean of every call: total over calls where both are known.
            let exact = |t: &BTreeMap<Labels, f64>, c: &BTreeMap<Labels, f64>| match (
                t.get(labels),
                c.get(labels),
            ) {
                (Some(t), Some(c)) if *c > 0.0 => Some(t / c),
                _ => None,
            };
            QueryLine {
                database: labels.get("database").cloned().unwrap_or_default(),
                query: labels.get("query").cloned().unwrap_or_default(),
                total_ms: total.get(labels).copied(),
                calls: calls.get(labels).copied(),
                mean_ms: exact(&total, &calls).or_else(|| mean.get(labels).copied()),
                previous_mean_ms: exact(&total_before, &calls_before)
                    .or_else(|| mean_before.get(labels).copied()),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.total_ms
            .unwrap_or(-1.0)
            .total_cmp(&a.total_ms.unwrap_or(-1.0))
            .then_with(|| {
                b.mean_ms
                    .unwrap_or(-1.0)
                    .total_cmp(&a.mean_ms.unwrap_or(-1.0))
            })
    });
    out.truncate(10);
    Ok(out)
}

/// When sloguard ran in the window, by its heartbeats counted per minute (per hour for a
/// window older than the 1-minute rollups keep), so that raw points past their retention
/// still count. `at` is when the report runs.
fn daemon_line(snap: &Snapshot, window: Span, at: i64) -> Result<DaemonLine, QueryError> {
    let sel = equal_selector(HEARTBEAT_METRIC, &BTreeMap::new());
    let step = if window.from_ms >= at - 85 * 86_400_000 {
        60_000
    } else {
        3_600_000
    };
    let down_after = DOWN_AFTER_MS.max(2 * step);
    let from = window.from_ms.saturating_sub(down_after).max(0);
    // In pieces: a query gives at most 11 000 steps.
    let mut beats = std::collections::BTreeSet::new();
    let mut piece = from;
    while piece < window.to_ms {
        let end = (piece + 10_000 * step).min(window.to_ms);
        for s in crate::query::stepped(snap, &sel, Agg::Count, piece, end, step)? {
            beats.extend(s.points.iter().filter(|(_, n)| *n > 0.0).map(|(t, _)| *t));
        }
        piece = end;
    }
    let beats: Vec<i64> = beats.into_iter().collect();
    let (Some(&first), Some(&last)) = (beats.first(), beats.last()) else {
        return Ok(DaemonLine {
            recorded: false,
            recorded_since: None,
            down: Vec::new(),
            up_percent: 0.0,
        });
    };
    // Did sloguard record heartbeats before this window at all?
    let earlier = window.from_ms > 0
        && aggregate(snap, &sel, Agg::Count, 0, window.from_ms)?
            .iter()
            .any(|v| v.value.is_some_and(|n| n > 0.0));
    let mut down = Vec::new();
    let recorded_since = (!earlier && first > window.from_ms + down_after).then_some(first);
    if earlier && first - window.from_ms > down_after {
        down.push(Span {
            from_ms: window.from_ms,
            to_ms: first.min(window.to_ms),
        });
    }
    for pair in beats.windows(2) {
        let (a, b) = (pair[0] + step, pair[1]);
        if b - a > down_after - step {
            down.push(Span {
                from_ms: a.max(window.from_ms),
                to_ms: b.min(window.to_ms),
            });
        }
    }
    if window.to_ms - (last + step) > down_after {
        down.push(Span {
            from_ms: (last + step).max(window.from_ms),
            to_ms: window.to_ms,
        });
    }
    down.retain(|s| s.to_ms > s.from_ms);
    let counted_from = recorded_since.unwrap_or(window.from_ms);
    let len = (window.to_ms - counted_from).max(1) as f64;
    let lost: i64 = down.iter().map(|s| s.to_ms - s.from_ms).sum();
    Ok(DaemonLine {
        recorded: true,
        recorded_since,
        up_percent: (1.0 - lost as f64 / len) * 100.0,
        down,
    })
}

/// The charts of the sections a report has.
fn charts(
    cfg: &Config,
    report: &Report,
    snap: &Snapshot,
    history: &[crate::history::Event],
    window: Span,
) -> Result<Vec<ChartData>, QueryError> {
    use crate::config::{PanelInput, PanelSeries};
    let step = chart_step(window.to_ms - window.from_ms);
    let lines = |s: PanelSeries| {
        crate::dashboard::panel_lines(snap, &s, window.from_ms, window.to_ms, step)
    };
    let metric = |metric: &str, matchers: &BTreeMap<String, String>| PanelInput::Metric {
        metric: metric.to_string(),
        matchers: matchers.clone(),
    };
    let series = |label: &str, input: PanelInput, agg: Agg, scale: f64, combine| PanelSeries {
        label: Some(label.to_string()),
        input,
        agg,
        scale,
        combine,
    };
    let chart = |section: ReportSection,
                 title: String,
                 unit: &str,
                 lines: Vec<crate::dashboard::Line>| ChartData {
        section: section.as_str().to_string(),
        title,
        unit: unit.to_string(),
        lines,
        step_ms: step,
    };
    let has = |s: ReportSection| report.sections.contains(&s);
    let mut out = Vec::new();
    if has(ReportSection::Slo) {
        use crate::config::{Combine, SloEvents};
        for rule in &cfg.rules {
            let RuleKind::Window(th) = &rule.kind else {
                continue;
            };
            if report
                .slos
                .as_ref()
                .is_some_and(|names| !names.contains(&rule.name))
            {
                continue;
            }
            let (title, unit, drawn) = match &th.input {
                WindowInput::Slo {
                    events:
                        SloEvents::Up {
                            metric: m,
                            matchers,
                        },
                    ..
                } => (
                    format!("{}: availability", rule.summary),
                    "%",
                    lines(series(
                        "availability",
                        metric(m, matchers),
                        Agg::Avg,
                        100.0,
                        Some(Combine::Avg),
                    ))?,
                ),
                WindowInput::Slo {
                    events: SloEvents::Ratio { bad, total },
                    ..
                } => (
                    format!("{}: bad events", rule.summary),
                    "%",
                    lines(series(
                        "bad events",
                        PanelInput::Ratio {
                            numerator: bad.clone(),
                            denominator: total.clone(),
                        },
                        Agg::Increase,
                        100.0,
                        None,
                    ))?,
                ),
                WindowInput::Series {
                    metric: m,
                    matchers,
                    agg,
                    ..
                } if report.slos.is_some() || matches!(agg, Agg::Quantile(_)) => (
                    format!("{}: {} of {m}", rule.summary, crate::query::agg_name(*agg)),
                    "",
                    lines(series(
                        &crate::query::agg_name(*agg),
                        metric(m, matchers),
                        *agg,
                        1.0,
                        Some(Combine::Max),
                    ))?,
                ),
                WindowInput::Ratio {
                    numerator,
                    denominator,
                    agg,
                    ..
                } => (
                    format!("{}: {} over {}", rule.summary, numerator.0, denominator.0),
                    "%",
                    lines(series(
                        "ratio",
                        PanelInput::Ratio {
                            numerator: numerator.clone(),
                            denominator: denominator.clone(),
                        },
                        *agg,
                        100.0,
                        None,
                    ))?,
                ),
                _ => continue,
            };
            out.push(chart(ReportSection::Slo, title, unit, drawn));
        }
    }
    if has(ReportSection::Alerts) {
        // Alerts fired per step.
        let mut per_step: BTreeMap<i64, f64> = BTreeMap::new();
        let mut t = window.from_ms.div_euclid(step) * step;
        while t < window.to_ms {
            per_step.insert(t, 0.0);
            t += step;
        }
        for e in history {
            if e.event == EventKind::Firing && (window.from_ms..window.to_ms).contains(&e.at_ms) {
                *per_step.entry(e.at_ms.div_euclid(step) * step).or_default() += 1.0;
            }
        }
        out.push(chart(
            ReportSection::Alerts,
            "Alerts fired".into(),
            "",
            vec![crate::dashboard::Line {
                label: "alerts".into(),
                points: per_step.into_iter().collect(),
            }],
        ));
    }
    if has(ReportSection::Usage) {
        use crate::config::Combine;
        for item in &report.usage {
            // A count per session is not a count per step: no chart.
            if let UsageKind::Count {
                metric: m,
                matchers,
                agg,
                per: None,
                ..
            } = &item.kind
            {
                out.push(chart(
                    ReportSection::Usage,
                    item.title.clone(),
                    "",
                    lines(series(
                        &item.title,
                        metric(m, matchers),
                        *agg,
                        1.0,
                        Some(Combine::Sum),
                    ))?,
                ));
            }
        }
    }
    if has(ReportSection::Database) {
        out.push(chart(
            ReportSection::Database,
            "Mean time of the slowest named query".into(),
            "ms",
            lines(series(
                "slowest query",
                metric("pg_query_mean_exec_ms", &BTreeMap::new()),
                Agg::Avg,
                1.0,
                Some(crate::config::Combine::Max),
            ))?,
        ));
    }
    out.retain(|c| c.lines.iter().any(|l| !l.points.is_empty()));
    Ok(out)
}

/// The report `report` for a run at `at`, from `snap` and the history since the previous
/// window began (oldest first).
pub fn build(
    cfg: &Config,
    report: &Report,
    snap: &Snapshot,
    history: &[crate::history::Event],
    at: DateTime<Utc>,
) -> Result<ReportData, QueryError> {
    let (window, previous) = windows(report.window, report.timezone, at);
    let has = |s: ReportSection| report.sections.contains(&s);
    Ok(ReportData {
        name: report.name.clone(),
        title: report.title.clone(),
        timezone: report.timezone.name().to_string(),
        window,
        previous,
        generated_ms: at.timestamp_millis(),
        sections: report
            .sections
            .iter()
            .map(|s| s.as_str().to_string())
            .collect(),
        slos: if has(ReportSection::Slo) {
            slo_lines(cfg, report, snap, window, previous)?
        } else {
            Vec::new()
        },
        alerts: if has(ReportSection::Alerts) {
            alert_stats(cfg, history, window, previous, report.false_positive_within)
        } else {
            AlertStats::default()
        },
        usage: if has(ReportSection::Usage) {
            usage_lines(report, snap, window, previous)?
        } else {
            Vec::new()
        },
        database: if has(ReportSection::Database) {
            query_lines(snap, window, previous)?
        } else {
            Vec::new()
        },
        daemon: daemon_line(snap, window, at.timestamp_millis())?,
        charts: charts(cfg, report, snap, history, window)?,
    })
}

#[cfg(test)]
mod tests {
    use super::chart_step;

    #[test]
    fn report_charts_have_at_least_a_dozen_steps_and_ten_minutes_each_when_there_is_room() {
        let min = 60_000;
        let day = 1_440 * min;
        // A week and a day: ten minutes or more (as before).
        assert_eq!(chart_step(7 * day), 3_600_000);
        assert_eq!(chart_step(day), 10 * min);
        // Two hours: ten minutes, twelve steps.
        assert_eq!(chart_step(120 * min), 10 * min);
        // The demo's two minutes: ten seconds, twelve steps, not one point.
        assert_eq!(chart_step(2 * min), 10_000);
        for window in [2 * min, 30 * min, 120 * min, day, 7 * day, 31 * day] {
            assert!(window / chart_step(window) >= 12, "{window}");
        }
    }
}
