//! Turns configuration text into a [`Config`], collecting every problem with its place.
//!
//! Each section and each element of `[[channels]]`, `[[targets]]` and `[[rules]]` is
//! deserialised on its own, so one broken rule does not hide the problems of the next.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use toml::de::DeTable;

use super::channels::{self, Channel, ChannelKind};
use super::daemon;
use super::databases;
use super::fields::{agg_field, check_name, duration_field, metric_name};
use super::logs;
use super::problems::{
    Problems, Site, declared_names, element, named_elements, single, sub_sites, tables,
};
use super::raw::{RawDashboard, RawDistinct, RawMaintenance, RawPanelSeries, RawReport, RawUsage};
use super::routing;
use super::rules::{self, Rule};
use super::scrapes;
use super::store;
use super::targets;
use super::{
    Combine, Config, DashboardConfig, Distinct, Panel, PanelInput, PanelSeries, Problem, Report,
    ReportSection, ReportWindow, UsageItem, UsageKind, defaults, parse_duration,
};

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

    let rules = rules::rules(
        &mut problems,
        section("rules"),
        &root_span,
        &channel_names,
        routing.as_ref(),
        &logs,
        &store,
    );

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
