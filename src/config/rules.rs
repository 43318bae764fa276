//! `[[rules]]`: the `kind` tag, the fields every kind shares (severity, summary, links,
//! channels, `depends_on`) and whether its alerts reach anyone, and the `consecutive` kind.
//! The window kinds are in `window_rules.rs` and `slo.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::Severity;
use super::fields::{check_name, condition_field, metric_name};
use super::logs::LogSource;
use super::problems::{Problems, Site, declared_names, element, keywords, tables, tag};
use super::routing::{Routing, check_channel_refs};
use super::slo::{RawSlo, slo};
use super::store::StoreConfig;
use super::window_rules::{
    RawGrowth, RawNewErrorType, RawRatio, RawStale, RawThreshold, WindowInput, WindowRule, growth,
    new_error_type, ratio, stale, threshold, window_checks,
};
use crate::vocab::{Condition, Op};

// Defaults of `consecutive`; docs/configuration.md lists the same.

fn consecutive_metric() -> &'static str {
    "probe_up"
}
fn consecutive_condition() -> &'static str {
    "< 1"
}
fn consecutive_fire_after() -> u32 {
    3
}
fn consecutive_resolve_after() -> u32 {
    1
}

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

/// What rules are checked against, from the sections read before them.
pub(super) struct Known<'a> {
    /// Every declared channel.
    pub(super) channel_names: &'a BTreeSet<String>,
    /// The PagerDuty channels.
    pub(super) paging: &'a BTreeSet<String>,
    pub(super) routing: Option<&'a Routing>,
    pub(super) logs: &'a [LogSource],
    pub(super) store: &'a StoreConfig,
}

/// `[[rules]]`, validated: each by its kind, then `depends_on` across them.
pub(super) fn rules(
    problems: &mut Problems<'_>,
    value: Option<&Spanned<DeValue<'_>>>,
    root_span: &Range<usize>,
    known: Known<'_>,
) -> Vec<Rule> {
    let Known {
        channel_names,
        paging,
        routing,
        logs,
        store,
    } = known;
    let rule_names = declared_names(problems, value, "rules", "rule");
    let mut depends_spans = BTreeMap::new();
    let mut rules: Vec<Rule> = Vec::new();
    for (value, site) in tables(problems, value, "rules") {
        let rule = match tag(problems, &site, "kind") {
            Some(RuleTag::Threshold) => element::<RawThreshold>(problems, value, &site)
                .and_then(|raw| threshold(problems, raw, &site, channel_names, routing)),
            Some(RuleTag::Ratio) => element::<RawRatio>(problems, value, &site)
                .and_then(|raw| ratio(problems, raw, &site, channel_names, routing, logs)),
            Some(RuleTag::Slo) => element::<RawSlo>(problems, value, &site)
                .and_then(|raw| slo(problems, raw, &site, channel_names, routing)),
            Some(RuleTag::Growth) => element::<RawGrowth>(problems, value, &site)
                .and_then(|raw| growth(problems, raw, &site, channel_names, routing)),
            Some(RuleTag::Stale) => element::<RawStale>(problems, value, &site)
                .and_then(|raw| stale(problems, raw, &site, channel_names, routing)),
            Some(RuleTag::NewErrorType) => element::<RawNewErrorType>(problems, value, &site)
                .and_then(|raw| new_error_type(problems, raw, &site, channel_names, routing, logs)),
            Some(RuleTag::Consecutive) => element::<RawConsecutive>(problems, value, &site)
                .and_then(|raw| consecutive(problems, raw, &site, channel_names, routing)),
            None => None,
        };
        if let Some(mut r) = rule {
            if let RuleKind::Window(th) = &r.kind {
                window_checks(problems, &site, th, logs, store);
            }
            client_data_check(problems, &site, &r, logs, routing, paging);
            r.client_reported = client_data(&r, logs).is_some();
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
    rules
}

/// What of an ingest source a rule reads: the first metric (or error types) that anyone
/// holding the source's public project token can send, and the source's name.
pub fn client_data<'a>(rule: &'a Rule, logs: &'a [LogSource]) -> Option<(&'a str, &'a str)> {
    let ingest = logs
        .iter()
        .filter(|l| matches!(l.input, super::LogInput::Posthog { .. }));
    let mut metrics: Vec<&str> = Vec::new();
    match &rule.kind {
        RuleKind::Consecutive(c) => metrics.push(&c.metric),
        RuleKind::Window(w) => match &w.input {
            WindowInput::Series { metric, .. }
            | WindowInput::Growth { metric, .. }
            | WindowInput::Stale { metric, .. } => metrics.push(metric),
            WindowInput::Ratio {
                numerator,
                denominator,
                ..
            } => metrics.extend([numerator.0.as_str(), denominator.0.as_str()]),
            WindowInput::Slo { events, .. } => match events {
                super::SloEvents::Ratio { bad, total } => {
                    metrics.extend([bad.0.as_str(), total.0.as_str()])
                }
                super::SloEvents::Up { metric, .. } => metrics.push(metric),
            },
            WindowInput::NewErrors { source, .. } => {
                return ingest
                    .filter(|l| !l.errors.is_empty())
                    .find(|l| source.as_ref().is_none_or(|s| s == &l.name))
                    .map(|l| ("error types", l.name.as_str()));
            }
        },
    }
    for l in ingest {
        if let Some(m) = l
            .metrics
            .iter()
            .find(|m| metrics.contains(&m.name.as_str()))
        {
            return Some((&m.name, &l.name));
        }
    }
    None
}

/// The severities a rule's alerts can have: its own, and critical when it has a critical
/// level (a `critical` condition, or an SLO's critical burn).
fn severities(rule: &Rule) -> Vec<Severity> {
    let critical_level = match &rule.kind {
        RuleKind::Consecutive(c) => c.critical.is_some(),
        RuleKind::Window(w) => {
            w.critical.is_some()
                || matches!(&w.input, WindowInput::Slo { burns, .. } if burns.iter().any(|b| b.critical))
        }
    };
    let mut out = vec![rule.severity];
    if critical_level && rule.severity != Severity::Critical {
        out.push(Severity::Critical);
    }
    out.retain(|s| *s != Severity::Info);
    out
}

/// A rule over client-reported series must not page unless it says so: the project token is
/// public, so whoever reads the app's JavaScript could otherwise wake on-call. Paging is
/// PagerDuty anywhere on the rule's way (its channels, routes, escalation) or, for a rule
/// routed by `[routing]`, the critical route.
fn client_data_check(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    rule: &Rule,
    logs: &[LogSource],
    routing: Option<&Routing>,
    paging: &BTreeSet<String>,
) {
    if rule.page_on_client_data {
        return;
    }
    let Some((what, source)) = client_data(rule, logs) else {
        return;
    };
    let severities = severities(rule);
    let mut reached: Vec<&String> = Vec::new();
    let mut critical_route = false;
    match &rule.channels {
        Some(list) => reached.extend(list),
        None => {
            if let Some(routing) = routing {
                for s in &severities {
                    reached.extend(routing.channels_for(*s));
                    critical_route |= *s == Severity::Critical;
                }
                for r in &routing.routes {
                    if r.severity.is_none_or(|s| severities.contains(&s)) {
                        reached.extend(&r.channels);
                    }
                }
            } else {
                critical_route = severities.contains(&Severity::Critical);
            }
        }
    }
    if let Some(routing) = routing {
        for step in &routing.escalation {
            if severities.contains(&step.severity) {
                reached.extend(&step.channels);
            }
        }
    }
    let pager = reached.iter().find(|c| paging.contains(c.as_str()));
    let how = match (pager, critical_route) {
        (Some(c), _) => format!("PagerDuty (channel `{c}`)"),
        (None, true) => "the critical route".to_string(),
        (None, false) => return,
    };
    problems.push(
        Some(site.span_of("severity")),
        site.field("severity"),
        format!(
            "reads client-reported data (`{what}` of ingest source `{source}`), which anyone with the public project token can send, and would page through {how}; send it to non-paging channels (`channels = [\"slack\"]`), or set `page_on_client_data = true` to accept that (docs/security.md)"
        ),
    );
}

/// `[[rules]]` with `kind = "consecutive"`: fire after N consecutive breaching samples,
/// resolve after M clear ones.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsecutive {
    /// The tag, `consecutive`, already read by validation.
    #[serde(rename = "kind")]
    pub _tag: serde::de::IgnoredAny,
    /// Unique rule name.
    pub name: String,
    /// The metric the rule watches.
    pub metric: Option<String>,
    /// Label equality matchers selecting series of `metric`.
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// Breach condition applied to each sample, e.g. `< 1` or `> 0.5`.
    pub condition: Option<String>,
    /// A second level: a sample breaching this makes the alert critical.
    pub critical: Option<String>,
    /// Breaching samples in a row needed to fire.
    pub fire_after: Option<i64>,
    /// Clear samples in a row needed to resolve.
    pub resolve_after: Option<i64>,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Title of the alert; `{label}` is replaced by the label's value.
    pub summary: String,
    /// Runbook link shown in notifications.
    pub runbook_url: Option<String>,
    /// Dashboard link shown in notifications.
    pub dashboard_url: Option<String>,
    /// Channels for this rule instead of `[routing]`.
    pub channels: Option<Vec<String>>,
    /// Rules whose firing explains this one: while one of them fires, this rule's new
    /// alerts notify no one.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Lets a rule over client-reported series (an ingest source's) page: reach PagerDuty
    /// or the critical route. Off: `sloguard check` refuses such a rule.
    #[serde(default)]
    pub page_on_client_data: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub severity: Severity,
    pub summary: String,
    pub runbook_url: Option<String>,
    pub dashboard_url: Option<String>,
    /// Channels instead of `[routing]`; `None` means route by severity.
    pub channels: Option<Vec<String>>,
    /// While an alert of one of these rules fires, this rule's new alerts are inhibited.
    pub depends_on: Vec<String>,
    /// The rule may page on client-reported series (`page_on_client_data`).
    pub page_on_client_data: bool,
    /// The rule reads what clients of an ingest source reported: the strings its alerts
    /// quote (label values, error messages) are cut and marked as client-reported.
    pub client_reported: bool,
    pub kind: RuleKind,
}

impl Rule {
    /// The channels an alert of this rule with `labels` goes to: the rule's own list, else
    /// the first `[[routing.route]]` that matches, else the severity's list. Info alerts are
    /// logged only.
    pub fn route<'a>(
        &'a self,
        routing: &'a Routing,
        labels: &crate::series::Labels,
    ) -> &'a [String] {
        self.route_as(routing, labels, self.severity)
    }

    /// [`Rule::route`] for an alert of this rule at `severity` (a rule with a critical
    /// threshold raises its alerts' severity).
    pub fn route_as<'a>(
        &'a self,
        routing: &'a Routing,
        labels: &crate::series::Labels,
        severity: Severity,
    ) -> &'a [String] {
        if severity == Severity::Info {
            return &[];
        }
        if let Some(list) = &self.channels {
            return list;
        }
        let matched = routing.routes.iter().find(|r| {
            r.severity.is_none_or(|s| s == severity)
                && crate::silence::matches(&r.matchers, &self.name, labels)
        });
        match matched {
            Some(r) => &r.channels,
            None => routing.channels_for(severity),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    Consecutive(ConsecutiveRule),
    Window(WindowRule),
}

impl RuleKind {
    /// The metric and label matchers selecting the series the rule watches, for rules that
    /// watch one series per alert.
    pub fn selects(&self) -> Option<(&str, &BTreeMap<String, String>)> {
        match self {
            RuleKind::Consecutive(c) => Some((&c.metric, &c.matchers)),
            RuleKind::Window(t) => match &t.input {
                WindowInput::Series {
                    metric, matchers, ..
                }
                | WindowInput::Stale {
                    metric, matchers, ..
                }
                | WindowInput::Growth {
                    metric, matchers, ..
                } => Some((metric, matchers)),
                WindowInput::Ratio { .. }
                | WindowInput::NewErrors { .. }
                | WindowInput::Slo { .. } => None,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConsecutiveRule {
    pub metric: String,
    pub matchers: BTreeMap<String, String>,
    pub condition: Condition,
    /// A second level: a breaching sample past it makes the alert critical.
    pub critical: Option<Condition>,
    pub fire_after: u32,
    pub resolve_after: u32,
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

/// The fields every rule kind has.
pub(super) struct RuleHeader {
    /// The rule has a `critical` level besides its severity.
    pub(super) critical_level: bool,
    pub(super) name: String,
    pub(super) severity: String,
    pub(super) summary: String,
    pub(super) runbook_url: Option<String>,
    pub(super) dashboard_url: Option<String>,
    pub(super) channels: Option<Vec<String>>,
    pub(super) depends_on: Vec<String>,
    pub(super) page_on_client_data: bool,
}

/// Checks the fields every rule kind has and makes the rule, if nothing was wrong with it.
pub(super) fn rule(
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
        page_on_client_data,
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
        page_on_client_data,
        client_reported: false,
        kind: kind?,
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
        page_on_client_data,
    } = raw;
    let metric = metric.unwrap_or_else(|| consecutive_metric().to_string());
    metric_name(problems, site, &metric);
    let condition_text = condition.unwrap_or_else(|| consecutive_condition().to_string());
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
        consecutive_fire_after(),
    );
    let resolve_after = positive(
        problems,
        site,
        "resolve_after",
        resolve_after,
        consecutive_resolve_after(),
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
        page_on_client_data,
    };
    rule(problems, site, before, header, kind, channels, routing)
}

/// The `critical` level beside `condition`: a level beyond it on the same side.
pub(super) fn critical_level(
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{ConsecutiveRule, Rule, RuleKind};
    use crate::config::Severity;
    use crate::config::testing::{config, expect};
    use crate::vocab::{Condition, Op};

    const CONSECUTIVE: &str = r#"[[rules]]
name = "web_down"
kind = "consecutive"
severity = "info"
summary = "Web down"
"#;

    const SLACK: &str = r#"[[channels]]
name = "slack"
type = "slack"
webhook_url = "http://127.0.0.1:9/hook"

"#;

    #[test]
    fn a_consecutive_rule_with_its_defaults() {
        let c = config(CONSECUTIVE);
        assert_eq!(
            c.rules,
            [Rule {
                name: "web_down".into(),
                severity: Severity::Info,
                summary: "Web down".into(),
                runbook_url: None,
                dashboard_url: None,
                channels: None,
                depends_on: Vec::new(),
                page_on_client_data: false,
                client_reported: false,
                kind: RuleKind::Consecutive(ConsecutiveRule {
                    metric: "probe_up".into(),
                    matchers: BTreeMap::new(),
                    condition: Condition {
                        op: Op::Lt,
                        threshold: 1.0
                    },
                    critical: None,
                    fire_after: 3,
                    resolve_after: 1,
                }),
            }]
        );
    }

    #[test]
    fn routes_by_rule_then_label_route_then_severity() {
        let c = config(&format!(
            r#"{SLACK}[[channels]]
name = "db"
type = "webhook"
url = "http://127.0.0.1:9/db"

[routing]
critical = ["slack"]
route = [{{ match = {{ team = "db" }}, channels = ["db"] }}]

[[rules]]
name = "disk"
kind = "consecutive"
metric = "disk_free"
condition = "< 0.1"
critical = "< 0.05"
fire_after = 2
resolve_after = 2
severity = "warning"
summary = "Disk"
runbook_url = "https://runbooks.example.com/disk"
"#
        ));
        let rule = &c.rules[0];
        let RuleKind::Consecutive(k) = &rule.kind else {
            panic!("{rule:?}");
        };
        assert_eq!(
            k.critical,
            Some(Condition {
                op: Op::Lt,
                threshold: 0.05
            })
        );
        let db: crate::series::Labels = [("team".to_string(), "db".to_string())].into();
        let web: crate::series::Labels = [("team".to_string(), "web".to_string())].into();
        assert_eq!(rule.route(&c.routing, &db), ["db"]);
        // A warning with no route of its own goes nowhere; the critical level to [routing].
        assert_eq!(rule.route(&c.routing, &web), &[] as &[String]);
        assert_eq!(
            rule.route_as(&c.routing, &web, Severity::Critical),
            ["slack"]
        );
    }

    #[test]
    fn problems_of_the_fields_every_rule_has() {
        let routed = |rule: &str| format!("{SLACK}[routing]\nwarning = [\"slack\"]\n\n{rule}");
        expect(&[
            (
                &CONSECUTIVE.replace("\"info\"", "\"urgent\""),
                "rules[0].severity",
                4,
                "`urgent` is not a severity; use `info`, `warning` or `critical`",
            ),
            (
                &CONSECUTIVE.replace("\"Web down\"", "\" \""),
                "rules[0].summary",
                5,
                "must not be empty",
            ),
            (
                &format!("{CONSECUTIVE}runbook_url = \"wiki/web-down\"\n"),
                "rules[0].runbook_url",
                6,
                "`wiki/web-down` is not an http:// or https:// URL",
            ),
            (
                &format!("{CONSECUTIVE}dashboard_url = \"ftp://dash\"\n"),
                "rules[0].dashboard_url",
                6,
                "`ftp://dash` is not an http:// or https:// URL",
            ),
            (
                &format!("{CONSECUTIVE}channels = [\"pager\"]\n"),
                "rules[0].channels",
                6,
                "no channel named `pager`; defined channels: none",
            ),
            (
                &CONSECUTIVE.replace("\"info\"", "\"warning\""),
                "rules[0].severity",
                4,
                "a warning alert would notify no one: list channels in [routing].warning or in this rule's `channels`, or use severity = \"info\" to only log it",
            ),
            (
                &format!(
                    "{}channels = []\n",
                    CONSECUTIVE.replace("\"info\"", "\"critical\"")
                ),
                "rules[0].channels",
                6,
                "a critical alert would notify no one: list channels in [routing].critical or in this rule's `channels`",
            ),
            (
                &routed(&format!(
                    "{}critical = \"< 0.5\"\n",
                    CONSECUTIVE.replace("\"info\"", "\"warning\"")
                )),
                "rules[0].critical",
                14,
                "its critical alerts would notify no one: list channels in [routing].critical or in this rule's `channels`",
            ),
            (
                &routed(&format!(
                    "{}critical = \"< 0.5\"\n",
                    CONSECUTIVE.replace("\"info\"", "\"critical\"")
                )),
                "rules[0].severity",
                12,
                "a rule with a `critical` level has severity = \"warning\": its alerts become critical past that level",
            ),
        ]);
    }

    #[test]
    fn problems_of_consecutive_rules() {
        expect(&[
            (
                &format!("{CONSECUTIVE}fire_after = 0\n"),
                "rules[0].fire_after",
                6,
                "0 is out of range; must be between 1 and 10000",
            ),
            (
                &format!("{CONSECUTIVE}resolve_after = 10001\n"),
                "rules[0].resolve_after",
                6,
                "10001 is out of range; must be between 1 and 10000",
            ),
            (
                &format!("{CONSECUTIVE}metric = \"probe up\"\n"),
                "rules[0].metric",
                6,
                "`probe up` is not a metric name",
            ),
            (
                &format!("{CONSECUTIVE}critical = \"> 5\"\n"),
                "rules[0].critical",
                6,
                "`> 5` must be a level beyond `< 1` on the same side (for `> 500`, e.g. `> 1000`)",
            ),
            (
                &format!("{CONSECUTIVE}critical = \"< 2\"\n"),
                "rules[0].critical",
                6,
                "`< 2` must be a level beyond `< 1` on the same side",
            ),
        ]);
    }

    #[test]
    fn problems_of_depends_on() {
        let second = CONSECUTIVE.replace("web_down", "web_slow");
        expect(&[
            (
                &format!("{CONSECUTIVE}depends_on = [\"db_down\"]\n"),
                "rules[0].depends_on[0]",
                6,
                "`db_down` is not another rule of this configuration",
            ),
            (
                &format!("{CONSECUTIVE}depends_on = [\"web_down\"]\n"),
                "rules[0].depends_on[0]",
                6,
                "`web_down` is not another rule of this configuration",
            ),
            (
                &format!(
                    "{CONSECUTIVE}depends_on = [\"web_slow\"]\n\n{second}depends_on = [\"web_down\"]\n"
                ),
                "rules[0].depends_on",
                6,
                "depends_on goes round in a circle (web_down → web_slow → web_down); a rule cannot depend on itself through others",
            ),
        ]);
        // One circle is reported once, at its first rule.
        let text = format!(
            "{CONSECUTIVE}depends_on = [\"web_slow\"]\n\n{second}depends_on = [\"web_down\"]\n"
        );
        assert_eq!(crate::config::testing::problems(&text).len(), 1);
    }

    /// A rule over an ingest source's data that would page is refused, unless it opts in or
    /// goes to channels that do not page.
    #[test]
    fn a_rule_over_client_data_does_not_page_unless_it_says_so() {
        let base = r#"[routing]
warning = ["slack"]
critical = ["slack", "pd"]

[[channels]]
name = "slack"
type = "slack"
webhook_url = "http://127.0.0.1:9/hook"

[[channels]]
name = "pd"
type = "pagerduty"
routing_key = "0123456789abcdef0123456789abcdef"

[[logs]]
name = "posthog"
ingest = "posthog"
token = "phc_x"

[[logs.metric]]
name = "heap_mb"
kind = "gauge"
value = "properties.heap"

[[logs.errors]]
message = "properties.message"

"#;
        let growth = |extra: &str| {
            format!(
                "{base}[[rules]]\nname = \"heap_growth\"\nkind = \"growth\"\nmetric = \"heap_mb\"\ncondition = \"> 50\"\nsummary = \"Heap grew\"\n{extra}"
            )
        };
        let message = "reads client-reported data (`heap_mb` of ingest source `posthog`), which anyone with the public project token can send, and would page through PagerDuty (channel `pd`); send it to non-paging channels (`channels = [\"slack\"]`), or set `page_on_client_data = true` to accept that (docs/security.md)";
        expect(&[
            (
                &growth("severity = \"critical\"\n"),
                "rules[0].severity",
                34,
                message,
            ),
            // A warning with a critical level can become critical.
            (
                &growth("severity = \"warning\"\ncritical = \"> 100\"\n"),
                "rules[0].severity",
                34,
                message,
            ),
            (
                &growth("severity = \"warning\"\nchannels = [\"pd\"]\n"),
                "rules[0].severity",
                34,
                message,
            ),
            (
                &format!(
                    "{base}[[rules]]\nname = \"new_errors\"\nkind = \"new_error_type\"\nseverity = \"critical\"\nsummary = \"New error\"\n"
                ),
                "rules[0].severity",
                31,
                &message.replace("`heap_mb`", "`error types`"),
            ),
        ]);
        let ok = |text: &str| crate::config::testing::problems(text).is_empty();
        assert!(
            ok(&growth("severity = \"warning\"\n")),
            "a warning to Slack"
        );
        assert!(ok(&growth(
            "severity = \"critical\"\nchannels = [\"slack\"]\n"
        )));
        assert!(ok(&growth(
            "severity = \"critical\"\npage_on_client_data = true\n"
        )));
    }
}
