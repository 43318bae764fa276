//! `[[reports]]`: reports mailed on a schedule, their windows, sections and usage lines; as
//! written, validated and defaulted.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::channels::{Channel, ChannelKind};
use super::fields::{agg_field, check_name, duration_field, metric_name, parse_duration};
use super::problems::{Keyword, Problems, Site, keywords, named_elements, sub_sites};
use super::rules::Rule;
use crate::vocab::Condition;

// Defaults; docs/configuration.md lists the same. A report covers every section, every
// `slo`, percentile `threshold` and `ratio` rule, and goes to its channel's recipients.

fn report_window() -> Duration {
    Duration::from_secs(7 * 86400)
}
fn false_positive_within() -> Duration {
    Duration::from_secs(300)
}

/// `[[reports]]`, validated against the channels and rules.
pub(super) fn reports(
    problems: &mut Problems<'_>,
    value: Option<&Spanned<DeValue<'_>>>,
    channels: &BTreeMap<String, Channel>,
    rules: &[Rule],
) -> Vec<Report> {
    named_elements::<RawReport, _>(
        problems,
        value,
        ("reports", "report"),
        |problems, raw, site| report(problems, raw, site, channels, rules),
        |r| &r.name,
    )
}

/// `[[reports]]`: a report mailed on a schedule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReport {
    /// Unique; `sloguard report --name` takes it.
    pub name: String,
    /// The subject and heading; the name when absent.
    pub title: Option<String>,
    /// When it is sent: a crontab line (`0 9 * * MON`) or a 6/7-field cron expression.
    pub schedule: String,
    /// The schedule's time zone (IANA, `Europe/Berlin`); UTC when absent.
    pub timezone: Option<String>,
    /// The email channel whose SMTP server sends it.
    pub channel: String,
    /// Recipients; the channel's when absent.
    pub to: Option<Vec<String>>,
    /// `7d` (any duration) ending when it runs, `last_week` or `last_month` (calendar, in the
    /// time zone).
    pub window: Option<String>,
    /// Which sections, in order: `slo`, `alerts`, `usage`, `database`, `daemon`.
    pub sections: Option<Vec<String>>,
    /// Rules whose compliance is reported; every `slo`, percentile `threshold` and `ratio`
    /// rule when absent.
    pub slos: Option<Vec<String>>,
    /// Alerts resolved within this, unacknowledged, are false-positive candidates.
    pub false_positive_within: Option<String>,
    /// The usage section's lines.
    pub usage: Option<Vec<RawUsage>>,
}

/// `[[reports.usage]]`: a count from events, or a distinct count.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUsage {
    /// The line's title.
    pub title: String,
    /// The metric whose events are counted.
    pub metric: Option<String>,
    /// Label equality matchers selecting series of `metric`.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// How the window is summed per series: `sum` (default), `count`, `increase`, …
    pub agg: Option<String>,
    /// A label to break the count down by.
    pub by: Option<String>,
    /// Divide the count by the distinct values of a label: "per session".
    pub per: Option<RawDistinct>,
    /// Instead of `metric`: how many distinct values a label had in the window.
    pub distinct: Option<RawDistinct>,
    /// With `by`: the line's value is this label value's share of the total, in percent.
    pub share: Option<String>,
    /// Divide the figure by another metric's, summed over its series (agencies in total).
    pub divide_by: Option<RawFigure>,
    /// Show the figure times 100, as a percentage.
    pub percent: Option<bool>,
    /// A condition the figure should meet (`> 80 %`, `>= 0.5`), marked met or missed.
    pub target: Option<String>,
    /// How the series' figures make the line's: `sum` (default) or `avg`.
    pub combine: Option<String>,
}

/// Another metric's figure over the window: `agg` per series, summed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFigure {
    pub metric: String,
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// `last` by default: the newest value (a total read from the app's database).
    pub agg: Option<String>,
}

/// Distinct values of `label` among the series of `metric` with data in the window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDistinct {
    /// The metric whose series are looked at.
    pub metric: String,
    /// Label equality matchers selecting series of `metric`.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// The label whose distinct values are counted.
    pub label: String,
}

/// `[[reports]]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub name: String,
    pub title: String,
    pub schedule: crate::silence::Schedule,
    pub timezone: chrono_tz::Tz,
    /// An email channel's name.
    pub channel: String,
    /// Recipients; empty: the channel's.
    pub to: Vec<String>,
    pub window: ReportWindow,
    pub sections: Vec<ReportSection>,
    /// Rules reported on; `None`: every `slo`, percentile `threshold` and `ratio` rule.
    pub slos: Option<Vec<String>>,
    pub false_positive_within: Duration,
    pub usage: Vec<UsageItem>,
}

/// What a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportWindow {
    /// This long, ending when the report runs.
    Last(Duration),
    /// The calendar week (Monday to Monday) before the one the report runs in.
    LastWeek,
    /// The calendar month before the one the report runs in.
    LastMonth,
}

keywords! {
    /// A section of a report, in the order a report without `sections` has them.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ReportSection {
        Slo = "slo",
        Alerts = "alerts",
        Usage = "usage",
        Database = "database",
        Daemon = "daemon",
    }
}

impl ReportSection {
    /// The section's name in the configuration and in a report's data.
    pub fn as_str(self) -> &'static str {
        self.name()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UsageItem {
    pub title: String,
    pub kind: UsageKind,
    /// With `by`: the value is this label value's share of the total, in percent.
    pub share: Option<String>,
    /// The figure is divided by this one.
    pub divide_by: Option<Figure>,
    /// The figure is shown times 100, with `%`.
    pub percent: bool,
    /// A condition the figure should meet; its text as written.
    pub target: Option<(Condition, String)>,
    /// The line's figure is the average of its series' (a satisfaction score by segment),
    /// not their sum.
    pub average: bool,
}

impl UsageItem {
    /// Whether the line's value is in percent.
    pub fn in_percent(&self) -> bool {
        self.percent || self.share.is_some()
    }
}

/// A metric's figure over a window: `agg` per series, summed over the series.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub metric: String,
    pub matchers: BTreeMap<String, String>,
    pub agg: crate::query::Agg,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UsageKind {
    /// `agg` over the window, summed over the selected series; broken down by a label;
    /// divided by a distinct count.
    Count {
        metric: String,
        matchers: BTreeMap<String, String>,
        agg: crate::query::Agg,
        by: Option<String>,
        per: Option<Distinct>,
    },
    Distinct(Distinct),
}

/// Distinct values of `label` among the series of `metric` with data in the window.
#[derive(Debug, Clone, PartialEq)]
pub struct Distinct {
    pub metric: String,
    pub matchers: BTreeMap<String, String>,
    pub label: String,
}

/// Marks the log metric labels whose distinct values a report counts (`distinct`, `per`,
/// without `match`), so that their sources sketch them: the count then covers every value,
/// not only those that kept a series under `max_series`.
pub(super) fn sketch_labels(reports: &[Report], logs: &mut [super::LogSource]) {
    let counted = reports
        .iter()
        .flat_map(|r| &r.usage)
        .filter_map(|u| match &u.kind {
            UsageKind::Distinct(d) => Some(d),
            UsageKind::Count { per, .. } => per.as_ref(),
        });
    for d in counted.filter(|d| d.matchers.is_empty()) {
        for m in logs
            .iter_mut()
            .flat_map(|l| &mut l.metrics)
            .filter(|m| m.name == d.metric)
        {
            if let Some(i) = m.labels.iter().position(|(name, _)| *name == d.label)
                && !m.sketch.contains(&i)
            {
                m.sketch.push(i);
            }
        }
    }
}

fn report(
    problems: &mut Problems<'_>,
    raw: RawReport,
    site: &Site<'_, '_>,
    channels: &BTreeMap<String, Channel>,
    rules: &[Rule],
) -> Option<Report> {
    let before = problems.list.len();
    check_name(problems, site, &raw.name);
    let schedule = match crate::silence::Schedule::parse(&raw.schedule) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(Some(site.span_of("schedule")), site.field("schedule"), e);
            None
        }
    };
    let timezone = match raw.timezone.as_deref() {
        None => chrono_tz::UTC,
        Some(text) => match text.parse::<chrono_tz::Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                problems.push(
                    Some(site.span_of("timezone")),
                    site.field("timezone"),
                    format!("`{text}` is not a time zone; use an IANA name such as `Europe/Berlin` or `UTC`"),
                );
                chrono_tz::UTC
            }
        },
    };
    match channels.get(&raw.channel).map(|c| &c.kind) {
        Some(ChannelKind::Email(_)) => {}
        Some(_) => problems.push(
            Some(site.span_of("channel")),
            site.field("channel"),
            format!(
                "`{}` is not an email channel; a report is mailed",
                raw.channel
            ),
        ),
        None => problems.push(
            Some(site.span_of("channel")),
            site.field("channel"),
            format!(
                "`{}` is not a [[channels]] entry (known: {})",
                raw.channel,
                channels.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        ),
    }
    for (i, to) in raw.to.iter().flatten().enumerate() {
        if to.parse::<lettre::message::Mailbox>().is_err() {
            problems.push(
                Some(site.span_of("to")),
                site.field(&format!("to[{i}]")),
                format!("`{to}` is not an email address"),
            );
        }
    }
    let window = match raw.window.as_deref() {
        None => ReportWindow::Last(report_window()),
        Some("last_week") => ReportWindow::LastWeek,
        Some("last_month") => ReportWindow::LastMonth,
        Some(text) => match parse_duration(text) {
            Ok(d) if d >= Duration::from_secs(60) && d <= Duration::from_secs(400 * 86400) => {
                ReportWindow::Last(d)
            }
            Ok(_) => {
                problems.push(
                    Some(site.span_of("window")),
                    site.field("window"),
                    "must be between 1m and 400d",
                );
                ReportWindow::LastWeek
            }
            Err(_) => {
                problems.push(
                    Some(site.span_of("window")),
                    site.field("window"),
                    format!("`{text}` is not a window; use a duration (`7d`), `last_week` or `last_month`"),
                );
                ReportWindow::LastWeek
            }
        },
    };
    let mut sections = Vec::new();
    for (i, name) in raw.sections.iter().flatten().enumerate() {
        match ReportSection::parse(name) {
            Some(s) if !sections.contains(&s) => sections.push(s),
            Some(_) => {}
            None => problems.push(
                Some(site.span_of("sections")),
                site.field(&format!("sections[{i}]")),
                format!("`{name}` is not a section; use slo, alerts, usage, database or daemon"),
            ),
        }
    }
    if raw.sections.is_none() {
        sections = ReportSection::ALL.to_vec();
    }
    for (i, name) in raw.slos.iter().flatten().enumerate() {
        if !rules.iter().any(|r| &r.name == name) {
            problems.push(
                Some(site.span_of("slos")),
                site.field(&format!("slos[{i}]")),
                format!("`{name}` is not a rule of this configuration"),
            );
        }
    }
    let false_positive_within = duration_field(
        problems,
        site,
        "false_positive_within",
        raw.false_positive_within.as_ref(),
        false_positive_within(),
        Duration::from_secs(1),
    );
    let mut usage = Vec::new();
    let usage_sites = sub_sites(site, "usage");
    for (u, usite) in raw.usage.unwrap_or_default().into_iter().zip(&usage_sites) {
        if let Some(item) = usage_item(problems, u, usite) {
            usage.push(item);
        }
    }
    if problems.list.len() > before {
        return None;
    }
    Some(Report {
        title: raw.title.unwrap_or_else(|| raw.name.clone()),
        name: raw.name,
        schedule: schedule?,
        timezone,
        channel: raw.channel,
        to: raw.to.unwrap_or_default(),
        window,
        sections,
        slos: raw.slos,
        false_positive_within,
        usage,
    })
}

fn usage_item(
    problems: &mut Problems<'_>,
    raw: RawUsage,
    site: &Site<'_, '_>,
) -> Option<UsageItem> {
    let before = problems.list.len();
    let label_ok = |problems: &mut Problems<'_>, key: &str, label: &str| {
        if !crate::series::valid_metric_name(label) || label.contains(':') {
            problems.push(
                Some(site.span_of(key)),
                site.field(key),
                format!("`{label}` is not a label name"),
            );
        }
    };
    let distinct = |problems: &mut Problems<'_>, key: &str, d: RawDistinct| {
        metric_name(problems, site, &d.metric);
        label_ok(problems, key, &d.label);
        Distinct {
            metric: d.metric,
            matchers: d.matchers,
            label: d.label,
        }
    };
    let kind = match (raw.metric, raw.distinct) {
        (Some(metric), None) => {
            metric_name(problems, site, &metric);
            let agg = match raw.agg.as_deref() {
                Some(text) => agg_field(problems, site, text),
                None => Some(crate::query::Agg::Sum),
            };
            if let Some(by) = &raw.by {
                label_ok(problems, "by", by);
            }
            let per = raw.per.map(|d| distinct(problems, "per", d));
            UsageKind::Count {
                metric,
                matchers: raw.matchers,
                agg: agg.unwrap_or(crate::query::Agg::Sum),
                by: raw.by,
                per,
            }
        }
        (None, Some(d)) => {
            for key in ["agg", "by", "per", "match"] {
                if site.table.is_some_and(|t| t.get(key).is_some()) {
                    problems.push(
                        Some(site.key_span(key)),
                        site.field(key),
                        "applies to `metric` counts only; a `distinct` has its own `match`",
                    );
                }
            }
            UsageKind::Distinct(distinct(problems, "distinct", d))
        }
        _ => {
            problems.push(
                Some(site.span.clone()),
                site.field("metric"),
                "give `metric` (a count) or `distinct` (how many distinct values of a label)",
            );
            return None;
        }
    };
    let by = match &kind {
        UsageKind::Count { by, .. } => by.clone(),
        UsageKind::Distinct(_) => None,
    };
    if raw.share.is_some() && by.is_none() {
        problems.push(
            Some(site.span_of("share")),
            site.field("share"),
            "a share is of a breakdown: set `by` too (`by = \"data_mode\"`, `share = \"live\"`)",
        );
    }
    if raw.share.is_some() && raw.divide_by.is_some() {
        problems.push(
            Some(site.span_of("divide_by")),
            site.field("divide_by"),
            "a share is divided by its own total already; leave out `divide_by`",
        );
    }
    let divide_by = raw.divide_by.map(|f| {
        metric_name(problems, site, &f.metric);
        let agg = match f.agg.as_deref().map(str::parse::<crate::query::Agg>) {
            Some(Ok(a)) => a,
            Some(Err(e)) => {
                problems.push(
                    Some(site.span_of("divide_by")),
                    site.field("divide_by.agg"),
                    e.to_string(),
                );
                crate::query::Agg::Last
            }
            None => crate::query::Agg::Last,
        };
        Figure {
            metric: f.metric,
            matchers: f.matchers,
            agg,
        }
    });
    let target = raw.target.and_then(|text| {
        let bare = text.trim().trim_end_matches('%');
        match Condition::parse(bare) {
            Ok(c) => Some((c, text.trim().to_string())),
            Err(e) => {
                problems.push(Some(site.span_of("target")), site.field("target"), e);
                None
            }
        }
    });
    let average = match raw.combine.as_deref() {
        None | Some("sum") => false,
        Some("avg") => true,
        Some(other) => {
            problems.push(
                Some(site.span_of("combine")),
                site.field("combine"),
                format!("`{other}` is not a way to combine series; use `sum` or `avg`"),
            );
            false
        }
    };
    if problems.list.len() > before {
        return None;
    }
    Some(UsageItem {
        title: raw.title,
        kind,
        average,
        share: raw.share,
        divide_by,
        percent: raw.percent.unwrap_or(false),
        target,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::{Distinct, ReportSection, ReportWindow, UsageItem, UsageKind};
    use crate::config::problems::Keyword;
    use crate::config::testing::{config, expect};
    use crate::query::Agg;

    /// An email and a Slack channel and an info rule; `REPORT` after it is on lines 19 to 22.
    const SETUP: &str = r#"[[channels]]
name = "mail"
type = "email"
smtp_host = "smtp.example.com"
from = "sloguard <alerts@example.com>"
to = ["ops@example.com"]

[[channels]]
name = "slack"
type = "slack"
webhook_url = "http://127.0.0.1:9/hook"

[[rules]]
name = "web_down"
kind = "consecutive"
severity = "info"
summary = "Web down"
"#;

    const REPORT: &str =
        "\n[[reports]]\nname = \"weekly\"\nschedule = \"0 9 * * MON\"\nchannel = \"mail\"\n";

    #[test]
    fn a_report_as_written_with_its_defaults() {
        let c = config(&format!("{SETUP}{REPORT}"));
        let r = &c.reports[0];
        assert_eq!(r.title, "weekly");
        assert_eq!(r.timezone, chrono_tz::UTC);
        assert_eq!(r.window, ReportWindow::Last(Duration::from_secs(7 * 86400)));
        assert_eq!(r.sections, ReportSection::ALL);
        assert_eq!(r.false_positive_within, Duration::from_secs(300));
        assert_eq!((r.to.len(), r.slos.is_none(), r.usage.len()), (0, true, 0));
        let c = config(&format!(
            r#"{SETUP}{REPORT}title = "Week"
timezone = "Europe/Berlin"
to = ["cto@example.com"]
window = "last_month"
sections = ["usage", "slo", "usage"]
slos = ["web_down"]
false_positive_within = "10m"
usage = [
  {{ title = "Orders", metric = "orders", match = {{ shop = "eu" }}, by = "plan", per = {{ metric = "sessions", label = "session" }} }},
  {{ title = "Users", distinct = {{ metric = "events", label = "user" }} }},
]
"#
        ));
        let r = &c.reports[0];
        assert_eq!(r.timezone, chrono_tz::Europe::Berlin);
        assert_eq!(r.window, ReportWindow::LastMonth);
        // In the order given, each once.
        assert_eq!(r.sections, [ReportSection::Usage, ReportSection::Slo]);
        assert_eq!(r.false_positive_within, Duration::from_secs(600));
        let sessions = Distinct {
            metric: "sessions".into(),
            matchers: BTreeMap::new(),
            label: "session".into(),
        };
        assert_eq!(
            r.usage,
            [
                UsageItem {
                    title: "Orders".into(),
                    kind: UsageKind::Count {
                        metric: "orders".into(),
                        matchers: [("shop".to_string(), "eu".to_string())].into(),
                        agg: Agg::Sum,
                        by: Some("plan".into()),
                        per: Some(sessions),
                    },
                    share: None,
                    divide_by: None,
                    percent: false,
                    target: None,
                    average: false,
                },
                UsageItem {
                    title: "Users".into(),
                    kind: UsageKind::Distinct(Distinct {
                        metric: "events".into(),
                        matchers: BTreeMap::new(),
                        label: "user".into(),
                    }),
                    share: None,
                    divide_by: None,
                    percent: false,
                    target: None,
                    average: false,
                },
            ]
        );
        let names: Vec<&str> = ReportSection::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["slo", "alerts", "usage", "database", "daemon"]);
    }

    #[test]
    fn problems() {
        let report = |extra: &str| format!("{SETUP}{REPORT}{extra}\n");
        let usage = |u: &str| report(&format!("usage = [\n  {u},\n]"));
        expect(&[
            (
                &format!("{SETUP}{}", REPORT.replace("0 9 * * MON", "Mondays at 9")),
                "reports[0].schedule",
                21,
                "`Mondays at 9` has 3 fields",
            ),
            (
                &report("timezone = \"Europe/Atlantis\""),
                "reports[0].timezone",
                23,
                "`Europe/Atlantis` is not a time zone; use an IANA name such as `Europe/Berlin` or `UTC`",
            ),
            (
                &format!("{SETUP}{}", REPORT.replace("\"mail\"", "\"slack\"")),
                "reports[0].channel",
                22,
                "`slack` is not an email channel; a report is mailed",
            ),
            (
                &format!("{SETUP}{}", REPORT.replace("\"mail\"", "\"post\"")),
                "reports[0].channel",
                22,
                "`post` is not a [[channels]] entry (known: mail, slack)",
            ),
            (
                &report("to = [\"cto@example.com\", \"cto\"]"),
                "reports[0].to[1]",
                23,
                "`cto` is not an email address",
            ),
            (
                &report("window = \"30s\""),
                "reports[0].window",
                23,
                "must be between 1m and 400d",
            ),
            (
                &report("window = \"fortnight\""),
                "reports[0].window",
                23,
                "`fortnight` is not a window; use a duration (`7d`), `last_week` or `last_month`",
            ),
            (
                &report("sections = [\"slo\", \"costs\"]"),
                "reports[0].sections[1]",
                23,
                "`costs` is not a section; use slo, alerts, usage, database or daemon",
            ),
            (
                &report("slos = [\"web_slow\"]"),
                "reports[0].slos[0]",
                23,
                "`web_slow` is not a rule of this configuration",
            ),
            (
                &report("false_positive_within = \"0s\""),
                "reports[0].false_positive_within",
                23,
                "must be at least 1s",
            ),
            (
                &usage("{ title = \"Orders\", metric = \"orders\", by = \"plan:tier\" }"),
                "reports[0].usage[0].by",
                24,
                "`plan:tier` is not a label name",
            ),
            (
                &usage("{ title = \"Live\", metric = \"views\", share = \"live\" }"),
                "reports[0].usage[0].share",
                24,
                "a share is of a breakdown: set `by` too",
            ),
            (
                &usage("{ title = \"Live\", metric = \"views\", target = \"more than 80 %\" }"),
                "reports[0].usage[0].target",
                24,
                "is not a condition",
            ),
            (
                &usage(
                    "{ title = \"Adoption\", distinct = { metric = \"heap\", label = \"user\" }, divide_by = { metric = \"agencies\", agg = \"mean\" } }",
                ),
                "reports[0].usage[0].divide_by.agg",
                24,
                "mean",
            ),
            (
                &usage(
                    "{ title = \"Orders\", metric = \"orders\", per = { metric = \"sessions\", label = \"1st\" } }",
                ),
                "reports[0].usage[0].per",
                24,
                "`1st` is not a label name",
            ),
            (
                &usage(
                    "{ title = \"Users\", distinct = { metric = \"events\", label = \"user\" }, agg = \"sum\" }",
                ),
                "reports[0].usage[0].agg",
                24,
                "applies to `metric` counts only; a `distinct` has its own `match`",
            ),
            (
                &usage("{ title = \"Users\" }"),
                "reports[0].usage[0].metric",
                24,
                "give `metric` (a count) or `distinct` (how many distinct values of a label)",
            ),
            (
                &usage("{ title = \"Orders\", metric = \"orders\", agg = \"median\" }"),
                "reports[0].usage[0].agg",
                24,
                "`median` is not an aggregation",
            ),
            (
                &usage(
                    "{ title = \"Users\", distinct = { metric = \"event s\", label = \"user\" } }",
                ),
                "reports[0].usage[0].metric",
                24,
                "`event s` is not a metric name",
            ),
        ]);
    }
}
