//! Turns configuration text into a [`Config`], collecting every problem with its place.
//!
//! Each section and each element of `[[channels]]`, `[[targets]]` and `[[rules]]` is
//! deserialised on its own, so one broken rule does not hide the problems of the next.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use toml::de::DeTable;

use super::channels::{self, Channel, ChannelKind};
use super::daemon;
use super::databases;
use super::fields::{
    MAX_DURATION, RawSelector, agg_field, check_name, condition_field, duration_field, metric_name,
    nested_duration,
};
use super::logs;
use super::problems::{
    Problems, Site, declared_names, element, keywords, named_elements, single, sub_sites, tables,
    tag,
};
use super::raw::{
    RawConsecutive, RawContext, RawDashboard, RawDistinct, RawGrowth, RawMaintenance,
    RawNewErrorType, RawPanelSeries, RawRatio, RawReport, RawSlo, RawStale, RawThreshold, RawUsage,
};
use super::routing::{self, Routing, check_channel_refs};
use super::scrapes;
use super::store::{self, StoreConfig};
use super::targets;
use super::{
    Burn, Combine, Config, ConsecutiveRule, Context, DashboardConfig, Distinct, LogMetricKind,
    LogSource, Panel, PanelInput, PanelSeries, Problem, Report, ReportSection, ReportWindow, Rule,
    RuleKind, Severity, SloEvents, ThresholdRule, UsageItem, UsageKind, WindowInput, defaults,
    parse_duration,
};
use crate::vocab::{Condition, Op};

keywords! {
    /// The `kind` of a `[[rules]]` entry.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum RuleTag {
        Consecutive = "consecutive",
        Threshold = "threshold",
        Ratio = "ratio",
        Growth = "growth",
        Stale = "stale",
        NewErrorType = "new_error_type",
        Slo = "slo",
    }
}

const SECTIONS: &[&str] = &[
    "daemon",
    "server",
    "store",
    "outbox",
    "routing",
    "channels",
    "targets",
    "databases",
    "scrapes",
    "logs",
    "rules",
    "maintenance",
    "dashboard",
    "reports",
];

pub(super) fn validate(text: &str, file: &Path) -> Result<Config, Vec<Problem>> {
    let mut problems = Problems::new(text);
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            problems.push(e.span(), "", format!("invalid TOML: {}", e.message()));
            return Err(problems.list);
        }
    };
    let root_span = root.span();
    let root = root.into_inner();

    for (key, value) in root.iter() {
        if !SECTIONS.contains(&key.get_ref().as_ref()) {
            problems.push(
                Some(key.span()),
                key.get_ref().to_string(),
                format!("unknown section; expected one of: {}", SECTIONS.join(", ")),
            );
            let _ = value;
        }
    }

    let section = |name: &str| root.get(name);
    let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();

    let daemon = daemon::daemon(&mut problems, section("daemon"), &root_span);
    let server = daemon::server(&mut problems, section("server"), &root_span, &base_dir);
    let store = store::store(&mut problems, section("store"), &root_span);
    let outbox = daemon::outbox(&mut problems, section("outbox"), &root_span);
    // [routing] names channels: read here, in the order of the sections, and checked once
    // the channels are known.
    let routing =
        single::<routing::RawRouting>(&mut problems, section("routing"), "routing", &root_span);
    let dashboard =
        single::<RawDashboard>(&mut problems, section("dashboard"), "dashboard", &root_span)
            .map(|(raw, site)| dashboard_config(&mut problems, raw, &site));

    let (channel_names, channels) =
        channels::channels(&mut problems, section("channels"), &base_dir);

    let routing =
        routing.map(|(raw, site)| routing::routing(&mut problems, raw, &site, &channel_names));

    let databases = databases::databases(&mut problems, section("databases"), &base_dir);
    let scrapes = scrapes::scrapes(&mut problems, section("scrapes"), &base_dir);

    let logs = logs::logs(&mut problems, section("logs"), &base_dir);

    let targets = targets::targets(&mut problems, section("targets"), &base_dir, &databases);

    let rule_names = declared_names(&mut problems, section("rules"), "rules", "rule");
    let mut depends_spans = BTreeMap::new();
    let mut rules: Vec<Rule> = Vec::new();
    for (value, site) in tables(&mut problems, section("rules"), "rules") {
        let rule = match tag(&mut problems, &site, "kind") {
            Some(RuleTag::Threshold) => element::<RawThreshold>(&mut problems, value, &site)
                .and_then(|raw| {
                    threshold(&mut problems, raw, &site, &channel_names, routing.as_ref())
                }),
            Some(RuleTag::Ratio) => element::<RawRatio>(&mut problems, value, &site)
                .and_then(|raw| ratio(&mut problems, raw, &site, &channel_names, routing.as_ref())),
            Some(RuleTag::Slo) => element::<RawSlo>(&mut problems, value, &site)
                .and_then(|raw| slo(&mut problems, raw, &site, &channel_names, routing.as_ref())),
            Some(RuleTag::Growth) => {
                element::<RawGrowth>(&mut problems, value, &site).and_then(|raw| {
                    growth(&mut problems, raw, &site, &channel_names, routing.as_ref())
                })
            }
            Some(RuleTag::Stale) => element::<RawStale>(&mut problems, value, &site)
                .and_then(|raw| stale(&mut problems, raw, &site, &channel_names, routing.as_ref())),
            Some(RuleTag::NewErrorType) => element::<RawNewErrorType>(&mut problems, value, &site)
                .and_then(|raw| {
                    let (names, routing) = (&channel_names, routing.as_ref());
                    new_error_type(&mut problems, raw, &site, names, routing, &logs)
                }),
            Some(RuleTag::Consecutive) => element::<RawConsecutive>(&mut problems, value, &site)
                .and_then(|raw| {
                    consecutive(&mut problems, raw, &site, &channel_names, routing.as_ref())
                }),
            None => None,
        };
        if let Some(r) = rule {
            if let RuleKind::Threshold(th) = &r.kind {
                window_checks(&mut problems, &site, th, &logs, &store);
            }
            depends_spans.insert(
                r.name.clone(),
                (site.span_of("depends_on"), site.field("depends_on")),
            );
            for (i, d) in r.depends_on.iter().enumerate() {
                if !rule_names.contains(d) || d == &r.name {
                    problems.push(
                        Some(site.span_of("depends_on")),
                        site.field(&format!("depends_on[{i}]")),
                        format!("`{d}` is not another rule of this configuration"),
                    );
                }
            }
            if !rules.iter().any(|o| o.name == r.name) {
                rules.push(r);
            }
        }
    }

    // A cycle of `depends_on` would keep every rule in it quiet while they all fire.
    for r in &rules {
        let mut path = vec![r.name.as_str()];
        if let Some(cycle) = depends_cycle(&rules, r, &mut path) {
            let (span, path) = depends_spans
                .get(&r.name)
                .cloned()
                .unwrap_or((root_span.clone(), format!("rules.{}.depends_on", r.name)));
            problems.push(
                Some(span),
                path,
                format!("depends_on goes round in a circle ({cycle}); a rule cannot depend on itself through others"),
            );
            break;
        }
    }

    declared_names(
        &mut problems,
        section("maintenance"),
        "maintenance",
        "maintenance window",
    );
    let mut maintenance = Vec::new();
    for (value, site) in tables(&mut problems, section("maintenance"), "maintenance") {
        if let Some(w) = element::<RawMaintenance>(&mut problems, value, &site)
            .and_then(|raw| maintenance_window(&mut problems, raw, &site))
        {
            maintenance.push(w);
        }
    }

    let reports: Vec<Report> = named_elements::<RawReport, _>(
        &mut problems,
        section("reports"),
        ("reports", "report"),
        |problems, raw, site| report(problems, raw, site, &channels, &rules),
        |r| &r.name,
    );

    if !problems.list.is_empty() {
        return Err(problems.list);
    }
    Ok(Config {
        maintenance,
        reports,
        path: file.to_path_buf(),
        daemon,
        server,
        store,
        outbox,
        routing: routing.unwrap_or_default(),
        channels,
        targets,
        databases,
        scrapes,
        logs,
        rules,
        dashboard: dashboard.unwrap_or_else(default_dashboard),
    })
}

fn default_dashboard() -> DashboardConfig {
    DashboardConfig {
        title: "sloguard".to_string(),
        default_range: defaults::dashboard_range(),
        refresh: Some(defaults::dashboard_refresh()),
        panels: Vec::new(),
    }
}

fn dashboard_config(
    problems: &mut Problems<'_>,
    raw: RawDashboard,
    site: &Site<'_, '_>,
) -> DashboardConfig {
    let mut cfg = default_dashboard();
    if let Some(t) = raw.title {
        cfg.title = t;
    }
    cfg.default_range = duration_field(
        problems,
        site,
        "default_range",
        raw.default_range.as_ref(),
        defaults::dashboard_range(),
        Duration::from_secs(60),
    );
    if cfg.default_range > super::MAX_RANGE {
        problems.push(
            Some(site.span_of("default_range")),
            site.field("default_range"),
            "must be at most 400d",
        );
    }
    let refresh = duration_field(
        problems,
        site,
        "refresh",
        raw.refresh.as_ref(),
        defaults::dashboard_refresh(),
        Duration::ZERO,
    );
    cfg.refresh = (!refresh.is_zero()).then_some(refresh);
    let panel_sites = sub_sites(site, "panel");
    for (raw, psite) in raw.panel.unwrap_or_default().into_iter().zip(&panel_sites) {
        let series_sites = sub_sites(psite, "series");
        if raw.series.is_empty() {
            problems.push(
                Some(psite.span_of("series")),
                psite.field("series"),
                "a panel needs at least one series",
            );
        }
        let mut series = Vec::new();
        for (s, ssite) in raw.series.into_iter().zip(&series_sites) {
            if let Some(s) = panel_series(problems, s, ssite) {
                series.push(s);
            }
        }
        cfg.panels.push(Panel {
            title: raw.title,
            unit: raw.unit.unwrap_or_default(),
            series,
        });
    }
    cfg
}

fn panel_series(
    problems: &mut Problems<'_>,
    raw: RawPanelSeries,
    site: &Site<'_, '_>,
) -> Option<PanelSeries> {
    let before = problems.list.len();
    let (input, default_agg) = match (raw.metric, raw.numerator, raw.denominator) {
        (Some(metric), None, None) => {
            metric_name(problems, site, &metric);
            (
                PanelInput::Metric {
                    metric,
                    matchers: raw.matchers,
                },
                crate::query::Agg::Avg,
            )
        }
        (None, Some(n), Some(d)) => {
            if !raw.matchers.is_empty() {
                problems.push(
                    Some(site.key_span("match")),
                    site.field("match"),
                    "a ratio has its `match` in `numerator` and `denominator`",
                );
            }
            metric_name(problems, site, &n.metric);
            metric_name(problems, site, &d.metric);
            (
                PanelInput::Ratio {
                    numerator: (n.metric, n.matchers),
                    denominator: (d.metric, d.matchers),
                },
                crate::query::Agg::Increase,
            )
        }
        _ => {
            problems.push(
                Some(site.span.clone()),
                site.field("metric"),
                "give `metric` (an aggregate per step) or both `numerator` and `denominator` (a ratio)",
            );
            return None;
        }
    };
    let agg = match raw.agg.as_deref() {
        Some(text) => agg_field(problems, site, text),
        None => Some(default_agg),
    };
    let combine = match raw.combine.as_deref() {
        None => None,
        Some("sum") => Some(Combine::Sum),
        Some("max") => Some(Combine::Max),
        Some("min") => Some(Combine::Min),
        Some("avg") => Some(Combine::Avg),
        Some(other) => {
            problems.push(
                Some(site.span_of("combine")),
                site.field("combine"),
                format!("`{other}` is not a way to combine series; use sum, max, min or avg"),
            );
            None
        }
    };
    if combine.is_some() && matches!(input, PanelInput::Ratio { .. }) {
        problems.push(
            Some(site.key_span("combine")),
            site.field("combine"),
            "a ratio is one line already",
        );
    }
    let scale = raw.scale.unwrap_or(1.0);
    if !scale.is_finite() || scale == 0.0 {
        problems.push(
            Some(site.span_of("scale")),
            site.field("scale"),
            "must be a finite number other than 0",
        );
    }
    if problems.list.len() > before {
        return None;
    }
    Some(PanelSeries {
        label: raw.label,
        input,
        agg: agg?,
        scale,
        combine,
    })
}

/// A `depends_on` path from `rule` back to the start of `path`, as `a → b → a`.
fn depends_cycle<'r>(rules: &'r [Rule], rule: &'r Rule, path: &mut Vec<&'r str>) -> Option<String> {
    for d in &rule.depends_on {
        if d == path[0] {
            let mut names = path.clone();
            names.push(d);
            return Some(names.join(" → "));
        }
        if path.contains(&d.as_str()) {
            continue;
        }
        if let Some(next) = rules.iter().find(|r| &r.name == d) {
            path.push(&next.name);
            if let Some(c) = depends_cycle(rules, next, path) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
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
        None => ReportWindow::Last(Duration::from_secs(7 * 86400)),
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
        match ReportSection::ALL.iter().find(|s| s.as_str() == name) {
            Some(s) if !sections.contains(s) => sections.push(*s),
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
        Duration::from_secs(300),
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
    if problems.list.len() > before {
        return None;
    }
    Some(UsageItem {
        title: raw.title,
        kind,
    })
}

fn maintenance_window(
    problems: &mut Problems<'_>,
    raw: RawMaintenance,
    site: &Site<'_, '_>,
) -> Option<crate::silence::MaintenanceWindow> {
    let before = problems.list.len();
    check_name(problems, site, &raw.name);
    let schedule = match crate::silence::Schedule::parse(&raw.schedule) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(Some(site.span_of("schedule")), site.field("schedule"), e);
            None
        }
    };
    let duration = duration_field(
        problems,
        site,
        "duration",
        Some(&raw.duration),
        Duration::ZERO,
        Duration::from_secs(60),
    );
    if problems.list.len() > before {
        return None;
    }
    Some(crate::silence::MaintenanceWindow {
        name: raw.name,
        schedule: schedule?,
        duration,
        matchers: raw.matchers,
    })
}

fn positive(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    key: &str,
    raw: Option<i64>,
    default: u32,
) -> u32 {
    match raw {
        None => default,
        Some(n) if (1..=10_000).contains(&n) => n as u32,
        Some(n) => {
            problems.push(
                Some(site.span_of(key)),
                site.field(key),
                format!("{n} is out of range; must be between 1 and 10000"),
            );
            default
        }
    }
}

fn link(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    key: &str,
    raw: Option<String>,
) -> Option<String> {
    let text = raw?;
    match url::Url::parse(&text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Some(text),
        _ => {
            problems.push(
                Some(site.span_of(key)),
                site.field(key),
                format!("`{text}` is not an http:// or https:// URL"),
            );
            None
        }
    }
}

/// The fields every raw rule kind shares, moved into a [`RuleHeader`].
macro_rules! header {
    ($raw:ident, $critical_level:expr) => {
        RuleHeader {
            critical_level: $critical_level,
            name: $raw.name,
            severity: $raw.severity,
            summary: $raw.summary,
            runbook_url: $raw.runbook_url,
            dashboard_url: $raw.dashboard_url,
            channels: $raw.channels,
            depends_on: $raw.depends_on,
        }
    };
}

/// The fields every rule kind has.
struct RuleHeader {
    /// The rule has a `critical` level besides its severity.
    critical_level: bool,
    name: String,
    severity: String,
    summary: String,
    runbook_url: Option<String>,
    dashboard_url: Option<String>,
    channels: Option<Vec<String>>,
    depends_on: Vec<String>,
}

/// Checks the fields every rule kind has and makes the rule, if nothing was wrong with it.
fn rule(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    before: usize,
    header: RuleHeader,
    kind: Option<RuleKind>,
    channels: &BTreeSet<String>,
    routing: Option<&Routing>,
) -> Option<Rule> {
    let RuleHeader {
        critical_level,
        name,
        severity,
        summary,
        runbook_url,
        dashboard_url,
        channels: rule_channels,
        depends_on,
    } = header;
    check_name(problems, site, &name);
    let severity = match Severity::parse(&severity) {
        Some(s) => s,
        None => {
            let other = severity.as_str();
            problems.push(
                Some(site.span_of("severity")),
                site.field("severity"),
                format!("`{other}` is not a severity; use `info`, `warning` or `critical`"),
            );
            Severity::Info
        }
    };
    if summary.trim().is_empty() {
        problems.push(
            Some(site.span_of("summary")),
            site.field("summary"),
            "must not be empty",
        );
    }
    let runbook_url = link(problems, site, "runbook_url", runbook_url);
    let dashboard_url = link(problems, site, "dashboard_url", dashboard_url);
    if let Some(list) = &rule_channels {
        check_channel_refs(problems, channels, list, site, "channels");
    }
    // An alert that goes nowhere is a silent failure; say so now, not during an outage.
    let routed = match (&rule_channels, routing) {
        (Some(list), _) => !list.is_empty(),
        // A label route that could match this rule's alerts counts as a way out.
        (None, Some(r)) => {
            !r.channels_for(severity).is_empty()
                || r.routes.iter().any(|route| {
                    route.severity.is_none_or(|s| s == severity)
                        && route.matchers.get("rule").is_none_or(|n| n == &name)
                })
        }
        (None, None) => true, // the routing has its own problem, reported already
    };
    if critical_level && severity != Severity::Warning {
        problems.push(
            Some(site.span_of("severity")),
            site.field("severity"),
            "a rule with a `critical` level has severity = \"warning\": its alerts become critical past that level",
        );
    }
    let critical_routed = !critical_level
        || match (&rule_channels, routing) {
            (Some(list), _) => !list.is_empty(),
            (None, Some(r)) => {
                !r.channels_for(Severity::Critical).is_empty()
                    || r.routes.iter().any(|route| {
                        route.severity.is_none_or(|s| s == Severity::Critical)
                            && route.matchers.get("rule").is_none_or(|n| n == &name)
                    })
            }
            (None, None) => true,
        };
    if !critical_routed {
        problems.push(
            Some(site.span_of("critical")),
            site.field("critical"),
            "its critical alerts would notify no one: list channels in [routing].critical or in this rule's `channels`",
        );
    }
    if severity != Severity::Info && !routed {
        let (key, place) = if rule_channels.is_some() {
            ("channels", site.span_of("channels"))
        } else {
            ("severity", site.span_of("severity"))
        };
        problems.push(
            Some(place),
            site.field(key),
            format!(
                "a {severity} alert would notify no one: list channels in [routing].{severity} or in this rule's `channels`, or use severity = \"info\" to only log it"
            ),
        );
    }
    if problems.list.len() > before {
        return None;
    }
    Some(Rule {
        name,
        severity,
        summary,
        runbook_url,
        dashboard_url,
        channels: rule_channels,
        depends_on,
        kind: kind?,
    })
}

fn consecutive(
    problems: &mut Problems<'_>,
    raw: RawConsecutive,
    site: &Site<'_, '_>,
    channels: &BTreeSet<String>,
    routing: Option<&Routing>,
) -> Option<Rule> {
    let before = problems.list.len();
    let RawConsecutive {
        _tag: _,
        name,
        metric,
        matchers,
        condition,
        critical,
        fire_after,
        resolve_after,
        severity,
        summary,
        runbook_url,
        dashboard_url,
        channels: rule_channels,
        depends_on,
    } = raw;
    let metric = metric.unwrap_or_else(|| defaults::consecutive_metric().to_string());
    metric_name(problems, site, &metric);
    let condition_text = condition.unwrap_or_else(|| defaults::consecutive_condition().to_string());
    let condition = condition_field(problems, site, "condition", &condition_text);
    let critical = match &critical {
        Some(text) => critical_level(problems, site, condition.as_ref(), text),
        None => Some(None),
    };
    let critical_level_set = matches!(critical, Some(Some(_)));
    let fire_after = positive(
        problems,
        site,
        "fire_after",
        fire_after,
        defaults::consecutive_fire_after(),
    );
    let resolve_after = positive(
        problems,
        site,
        "resolve_after",
        resolve_after,
        defaults::consecutive_resolve_after(),
    );
    let kind = match (condition, critical) {
        (Some(condition), Some(critical)) => Some(RuleKind::Consecutive(ConsecutiveRule {
            metric,
            matchers,
            condition,
            critical,
            fire_after,
            resolve_after,
        })),
        _ => None,
    };
    let header = RuleHeader {
        critical_level: critical_level_set,
        name,
        severity,
        summary,
        runbook_url,
        dashboard_url,
        channels: rule_channels,
        depends_on,
    };
    rule(problems, site, before, header, kind, channels, routing)
}

/// `condition`, `resolve`, `for` and `every` of a window rule.
/// The `critical` level beside `condition`: a level beyond it on the same side.
fn critical_level(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    condition: Option<&Condition>,
    text: &str,
) -> Option<Option<Condition>> {
    let k = condition_field(problems, site, "critical", text)?;
    if let Some(c) = condition {
        let same_side = matches!(
            (c.op, k.op),
            (Op::Gt | Op::Ge, Op::Gt | Op::Ge) | (Op::Lt | Op::Le, Op::Lt | Op::Le)
        );
        let beyond = match c.op {
            Op::Gt | Op::Ge => k.threshold > c.threshold,
            _ => k.threshold < c.threshold,
        };
        if !same_side || !beyond {
            problems.push(
                Some(site.span_of("critical")),
                site.field("critical"),
                format!(
                    "`{k}` must be a level beyond `{c}` on the same side (for `> 500`, e.g. `> 1000`)"
                ),
            );
        }
    }
    Some(Some(k))
}

/// What a window rule's `condition`, `critical`, `resolve`, `for` and `every` make.
struct Tail {
    context: Vec<Context>,
    condition: Condition,
    critical: Option<Condition>,
    resolve: Option<Condition>,
    hold: Duration,
    every: Duration,
}

/// The text of those fields, as the rule wrote them.
struct TailText<'r> {
    context: Option<Vec<RawContext>>,
    condition: &'r str,
    critical: Option<&'r String>,
    resolve: Option<&'r String>,
    hold: Option<&'r String>,
    every: Option<&'r String>,
}

fn window_tail(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    text: TailText<'_>,
) -> Option<Tail> {
    let TailText {
        context,
        condition,
        critical,
        resolve,
        hold,
        every,
    } = text;
    let condition = condition_field(problems, site, "condition", condition);
    let critical = match critical {
        Some(text) => critical_level(problems, site, condition.as_ref(), text),
        None => Some(None),
    };
    let resolve = match resolve {
        Some(text) => condition_field(problems, site, "resolve", text).map(Some),
        None => Some(None),
    };
    if let (Some(c), Some(Some(r))) = (&condition, &resolve) {
        // The resolve level is on the other side of the firing one, or the alert would
        // resolve as it fires and fire again at the next evaluation.
        let ok = match c.op {
            Op::Gt | Op::Ge => matches!(r.op, Op::Lt | Op::Le) && r.threshold <= c.threshold,
            Op::Lt | Op::Le => matches!(r.op, Op::Gt | Op::Ge) && r.threshold >= c.threshold,
            Op::Eq | Op::Ne => false,
        };
        if !ok {
            problems.push(
                Some(site.span_of("resolve")),
                site.field("resolve"),
                format!(
                    "`{r}` must be on the other side of `{c}` (for `> 0.05`, e.g. `< 0.03`; none for `==` and `!=`)"
                ),
            );
        }
    }
    let hold = duration_field(problems, site, "for", hold, Duration::ZERO, Duration::ZERO);
    let every = duration_field(
        problems,
        site,
        "every",
        every,
        defaults::threshold_every(),
        Duration::from_secs(1),
    );
    let mut figures = Vec::new();
    for (i, c) in context.unwrap_or_default().into_iter().enumerate() {
        if !crate::series::valid_metric_name(&c.metric) {
            problems.push(
                Some(site.span_of("context")),
                site.field(&format!("context[{i}].metric")),
                format!("`{}` is not a metric name", c.metric),
            );
            continue;
        }
        match c
            .agg
            .as_deref()
            .unwrap_or("last")
            .parse::<crate::query::Agg>()
        {
            Ok(agg) => figures.push(Context {
                metric: c.metric,
                matchers: c.matchers,
                agg,
            }),
            Err(e) => problems.push(
                Some(site.span_of("context")),
                site.field(&format!("context[{i}].agg")),
                e.to_string(),
            ),
        }
    }
    Some(Tail {
        context: figures,
        condition: condition?,
        critical: critical?,
        resolve: resolve?,
        hold,
        every,
    })
}

fn threshold(
    problems: &mut Problems<'_>,
    raw: RawThreshold,
    site: &Site<'_, '_>,
    channels: &BTreeSet<String>,
    routing: Option<&Routing>,
) -> Option<Rule> {
    let before = problems.list.len();
    metric_name(problems, site, &raw.metric);
    let agg = agg_field(problems, site, &raw.agg);
    let second = Duration::from_secs(1);
    let window = duration_field(problems, site, "window", Some(&raw.window), second, second);
    let tail = window_tail(
        problems,
        site,
        TailText {
            context: raw.context,
            condition: &raw.condition,
            critical: raw.critical.as_ref(),
            resolve: raw.resolve.as_ref(),
            hold: raw.hold.as_ref(),
            every: raw.every.as_ref(),
        },
    );
    let critical_level = tail.as_ref().is_some_and(|t| t.critical.is_some());
    let kind = match (agg, tail) {
        (Some(agg), Some(t)) => Some(RuleKind::Threshold(ThresholdRule {
            input: WindowInput::Series {
                metric: raw.metric,
                matchers: raw.matchers,
                agg,
                window,
            },
            condition: t.condition,
            critical: t.critical,
            resolve: t.resolve,
            hold: t.hold,
            every: t.every,
            context: t.context,
        })),
        _ => None,
    };
    let header = header!(raw, critical_level);
    rule(problems, site, before, header, kind, channels, routing)
}

fn ratio(
    problems: &mut Problems<'_>,
    raw: RawRatio,
    site: &Site<'_, '_>,
    channels: &BTreeSet<String>,
    routing: Option<&Routing>,
) -> Option<Rule> {
    let before = problems.list.len();
    for (key, sel) in [
        ("numerator", &raw.numerator),
        ("denominator", &raw.denominator),
    ] {
        if !crate::series::valid_metric_name(&sel.metric) {
            problems.push(
                Some(site.span_of(key)),
                site.field(&format!("{key}.metric")),
                format!(
                    "`{}` is not a metric name (letters, digits, `_` and `:`)",
                    sel.metric
                ),
            );
        }
    }
    let agg = agg_field(problems, site, raw.agg.as_deref().unwrap_or("increase"));
    let second = Duration::from_secs(1);
    let window = duration_field(problems, site, "window", Some(&raw.window), second, second);
    let min_volume = raw.min_volume.unwrap_or(0.0);
    if !(min_volume.is_finite() && min_volume >= 0.0) {
        problems.push(
            Some(site.span_of("min_volume")),
            site.field("min_volume"),
            "must be a number, 0 or more",
        );
    }
    let tail = window_tail(
        problems,
        site,
        TailText {
            context: raw.context,
            condition: &raw.condition,
            critical: raw.critical.as_ref(),
            resolve: raw.resolve.as_ref(),
            hold: raw.hold.as_ref(),
            every: raw.every.as_ref(),
        },
    );
    let critical_level = tail.as_ref().is_some_and(|t| t.critical.is_some());
    let kind = match (agg, tail) {
        (Some(agg), Some(t)) => Some(RuleKind::Threshold(ThresholdRule {
            input: WindowInput::Ratio {
                numerator: (raw.numerator.metric, raw.numerator.matchers),
                denominator: (raw.denominator.metric, raw.denominator.matchers),
                agg,
                window,
                min_volume,
                by: raw.by,
            },
            condition: t.condition,
            critical: t.critical,
            resolve: t.resolve,
            hold: t.hold,
            every: t.every,
            context: t.context,
        })),
        _ => None,
    };
    let header = header!(raw, critical_level);
    rule(problems, site, before, header, kind, channels, routing)
}

fn growth(
    problems: &mut Problems<'_>,
    raw: RawGrowth,
    site: &Site<'_, '_>,
    channels: &BTreeSet<String>,
    routing: Option<&Routing>,
) -> Option<Rule> {
    let before = problems.list.len();
    metric_name(problems, site, &raw.metric);
    let second = Duration::from_secs(1);
    let window = duration_field(
        problems,
        site,
        "window",
        raw.window.as_ref(),
        Duration::from_secs(3600),
        second,
    );
    let per_sample = match raw.between.as_deref() {
        None | Some("samples") => true,
        Some("window") => false,
        Some(other) => {
            problems.push(
                Some(site.span_of("between")),
                site.field("between"),
                format!("`{other}` is not `samples` or `window`"),
            );
            true
        }
    };
    let tail = window_tail(
        problems,
        site,
        TailText {
            context: raw.context,
            condition: &raw.condition,
            critical: raw.critical.as_ref(),
            resolve: raw.resolve.as_ref(),
            hold: raw.hold.as_ref(),
            every: raw.every.as_ref(),
        },
    );
    let critical_level = tail.as_ref().is_some_and(|t| t.critical.is_some());
    let kind = tail.map(|t| {
        RuleKind::Threshold(ThresholdRule {
            input: WindowInput::Growth {
                metric: raw.metric,
                matchers: raw.matchers,
                window,
                per_sample,
            },
            condition: t.condition,
            critical: t.critical,
            resolve: t.resolve,
            hold: t.hold,
            every: t.every,
            context: t.context,
        })
    });
    let header = header!(raw, critical_level);
    rule(problems, site, before, header, kind, channels, routing)
}

fn slo(
    problems: &mut Problems<'_>,
    raw: RawSlo,
    site: &Site<'_, '_>,
    channels: &BTreeSet<String>,
    routing: Option<&Routing>,
) -> Option<Rule> {
    let before = problems.list.len();
    if !(raw.objective > 0.0 && raw.objective < 100.0) {
        problems.push(
            Some(site.span_of("objective")),
            site.field("objective"),
            "must be a percentage between 0 and 100, e.g. 99.9",
        );
    }
    let minute = Duration::from_secs(60);
    let period = duration_field(
        problems,
        site,
        "period",
        raw.period.as_ref(),
        defaults::slo_period(),
        Duration::from_secs(3600),
    );
    let selector = |problems: &mut Problems<'_>, key: &str, sel: RawSelector| {
        if !crate::series::valid_metric_name(&sel.metric) {
            problems.push(
                Some(site.span_of(key)),
                site.field(&format!("{key}.metric")),
                format!("`{}` is not a metric name", sel.metric),
            );
        }
        (sel.metric, sel.matchers)
    };
    let events = match (raw.bad, raw.total, raw.up) {
        (Some(bad), Some(total), None) => Some(SloEvents::Ratio {
            bad: selector(problems, "bad", bad),
            total: selector(problems, "total", total),
        }),
        (None, None, Some(up)) => {
            let (metric, matchers) = selector(problems, "up", up);
            Some(SloEvents::Up { metric, matchers })
        }
        _ => {
            problems.push(
                Some(site.span.clone()),
                site.field("bad"),
                "give `bad` and `total` (events, e.g. errors and requests) or `up` (a 0/1 series such as probe_up)",
            );
            None
        }
    };
    let mut burns = Vec::new();
    match raw.burn {
        None => {
            for (long, short, factor, critical) in defaults::slo_burns() {
                burns.push(Burn {
                    long,
                    short,
                    factor,
                    critical,
                });
            }
        }
        Some(list) => {
            for (i, b) in list.into_iter().enumerate() {
                let field = |f: &str| format!("burn[{i}].{f}");
                let long = nested_duration(
                    problems,
                    site,
                    ("burn", &field("long")),
                    &b.long,
                    minute..=MAX_DURATION,
                    "must be between 1m and 3650d",
                );
                let short = nested_duration(
                    problems,
                    site,
                    ("burn", &field("short")),
                    &b.short,
                    minute..=MAX_DURATION,
                    "must be between 1m and 3650d",
                );
                if !(b.factor.is_finite() && b.factor > 0.0) {
                    problems.push(
                        Some(site.span_of("burn")),
                        site.field(&field("factor")),
                        "must be a number above 0",
                    );
                }
                let critical = match b.severity.as_str() {
                    "critical" => true,
                    "warning" => false,
                    other => {
                        problems.push(
                            Some(site.span_of("burn")),
                            site.field(&field("severity")),
                            format!("`{other}` is not `warning` or `critical`"),
                        );
                        false
                    }
                };
                if let (Some(long), Some(short)) = (long, short) {
                    if short >= long {
                        problems.push(
                            Some(site.span_of("burn")),
                            site.field(&field("short")),
                            "must be shorter than `long`",
                        );
                    }
                    burns.push(Burn {
                        long,
                        short,
                        factor: b.factor,
                        critical,
                    });
                }
            }
        }
    }
    if burns.is_empty() {
        problems.push(
            Some(site.span_of("burn")),
            site.field("burn"),
            "needs at least one burn-rate alert (or leave `burn` out for the defaults)",
        );
    }
    let budget = 1.0 - raw.objective / 100.0;
    if budget > 0.0 && burns.iter().any(|b| b.factor * budget >= 1.0) {
        let most = crate::format::format_value(1.0 / budget);
        problems.push(
            Some(site.span_of("burn")),
            site.field("burn"),
            format!(
                "a factor of {most} or more can never be reached: at {} % the budget burns at most {most}× (everything failing)",
                raw.objective
            ),
        );
    }
    let every = duration_field(
        problems,
        site,
        "every",
        raw.every.as_ref(),
        minute,
        Duration::from_secs(1),
    );
    // Warning burns make warnings, critical ones critical alerts: one rule, two levels.
    let has_warning = burns.iter().any(|b| !b.critical);
    let has_critical = burns.iter().any(|b| b.critical);
    let level = |threshold: f64| Condition {
        op: crate::vocab::Op::Gt,
        threshold,
    };
    let (severity, condition, critical) = match (has_warning, has_critical) {
        (true, true) => ("warning", level(0.0), Some(level(1.0))),
        (true, false) => ("warning", level(0.0), None),
        _ => ("critical", level(1.0), None),
    };
    let kind = events.map(|events| {
        RuleKind::Threshold(ThresholdRule {
            input: WindowInput::Slo {
                events,
                objective: raw.objective / 100.0,
                period,
                burns,
            },
            condition,
            critical,
            resolve: None,
            hold: Duration::ZERO,
            every,
            context: Vec::new(),
        })
    });
    let header = RuleHeader {
        critical_level: critical.is_some(),
        name: raw.name,
        severity: severity.to_string(),
        summary: raw.summary,
        runbook_url: raw.runbook_url,
        dashboard_url: raw.dashboard_url,
        channels: raw.channels,
        depends_on: raw.depends_on,
    };
    rule(problems, site, before, header, kind, channels, routing)
}

fn stale(
    problems: &mut Problems<'_>,
    raw: RawStale,
    site: &Site<'_, '_>,
    channels: &BTreeSet<String>,
    routing: Option<&Routing>,
) -> Option<Rule> {
    let before = problems.list.len();
    metric_name(problems, site, &raw.metric);
    let second = Duration::from_secs(1);
    let max_age = duration_field(
        problems,
        site,
        "max_age",
        Some(&raw.max_age),
        second,
        second,
    );
    let every = duration_field(
        problems,
        site,
        "every",
        raw.every.as_ref(),
        defaults::threshold_every(),
        second,
    );
    let kind = Some(RuleKind::Threshold(ThresholdRule {
        input: WindowInput::Stale {
            metric: raw.metric,
            matchers: raw.matchers,
            max_age,
        },
        condition: Condition {
            op: crate::vocab::Op::Gt,
            threshold: 0.0,
        },
        critical: None,
        resolve: None,
        hold: Duration::ZERO,
        every,
        context: Vec::new(),
    }));
    let header = header!(raw, false);
    rule(problems, site, before, header, kind, channels, routing)
}

fn new_error_type(
    problems: &mut Problems<'_>,
    raw: RawNewErrorType,
    site: &Site<'_, '_>,
    channels: &BTreeSet<String>,
    routing: Option<&Routing>,
    logs: &[LogSource],
) -> Option<Rule> {
    let before = problems.list.len();
    if let Some(source) = &raw.source
        && !logs
            .iter()
            .any(|l| &l.name == source && !l.errors.is_empty())
    {
        problems.push(
            Some(site.span_of("source")),
            site.field("source"),
            format!("`{source}` is not a [[logs]] source with [[logs.errors]]"),
        );
    }
    let hour = Duration::from_secs(3600);
    let window = duration_field(problems, site, "window", raw.window.as_ref(), hour, hour);
    let quiet = duration_field(
        problems,
        site,
        "quiet",
        raw.quiet.as_ref(),
        hour * 24 * 7,
        hour,
    );
    let every = duration_field(
        problems,
        site,
        "every",
        raw.every.as_ref(),
        defaults::threshold_every(),
        Duration::from_secs(1),
    );
    let kind = Some(RuleKind::Threshold(ThresholdRule {
        input: WindowInput::NewErrors {
            source: raw.source,
            window,
            quiet,
        },
        // 2: new; 1: seen again (a firing alert goes on); none: not seen in the window.
        condition: Condition {
            op: crate::vocab::Op::Gt,
            threshold: 1.0,
        },
        critical: None,
        resolve: Some(Condition {
            op: crate::vocab::Op::Lt,
            threshold: 1.0,
        }),
        hold: Duration::ZERO,
        every,
        context: Vec::new(),
    }));
    let header = header!(raw, false);
    rule(problems, site, before, header, kind, channels, routing)
}

/// Windows a window rule reads log events through must hold at least two of the store's
/// intervals (a shorter one sees none, one or two, by chance), and a counting window must
/// not be shorter than the time between evaluations (what falls between is never counted).
fn window_checks(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    th: &ThresholdRule,
    logs: &[LogSource],
    store: &StoreConfig,
) {
    let interval = store.distribution_interval;
    let events = |metric: &str| {
        logs.iter()
            .flat_map(|l| &l.metrics)
            .any(|m| m.name == metric && m.kind != LogMetricKind::Gauge)
    };
    // (field, metric, window) of every read of the rule.
    let mut reads: Vec<(&str, &str, Duration)> = Vec::new();
    let mut counting_window = None;
    match &th.input {
        WindowInput::Series {
            metric,
            agg,
            window,
            ..
        } => {
            reads.push(("window", metric, *window));
            if matches!(
                agg,
                crate::query::Agg::Count
                    | crate::query::Agg::Sum
                    | crate::query::Agg::Increase
                    | crate::query::Agg::Rate
            ) {
                counting_window = Some(*window);
            }
        }
        WindowInput::Ratio {
            numerator,
            denominator,
            window,
            ..
        } => {
            reads.push(("window", &numerator.0, *window));
            reads.push(("window", &denominator.0, *window));
            counting_window = Some(*window);
        }
        WindowInput::Slo {
            events: SloEvents::Ratio { bad, total },
            burns,
            ..
        } => {
            if let Some(shortest) = burns.iter().map(|b| b.short).min() {
                reads.push(("burn", &bad.0, shortest));
                reads.push(("burn", &total.0, shortest));
            }
        }
        _ => {}
    }
    let window = reads.first().map(|r| r.2);
    if let Some(w) = window {
        for c in &th.context {
            reads.push(("context", &c.metric, w));
        }
    }
    if let Some((field, metric, _)) = reads
        .iter()
        .find(|(_, metric, w)| events(metric) && *w < interval * 2)
    {
        problems.push(
            Some(site.span_of(field)),
            site.field(field),
            format!(
                "`{metric}` is counted per [store].distribution_interval ({}): the window must be at least two of those",
                humantime::format_duration(interval)
            ),
        );
    }
    if let Some(w) = counting_window
        && w < th.every
    {
        problems.push(
            Some(site.span_of("window")),
            site.field("window"),
            format!(
                "shorter than `every` ({}): what happens between two evaluations would never be counted",
                humantime::format_duration(th.every)
            ),
        );
    }
}
