//! `[[rules]]` of `kind = "slo"`: an objective over a period, alerting on multi-window burn
//! rates; as written, validated and defaulted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;

use super::Severity;
use super::fields::{MAX_DURATION, RawSelector, duration_field, nested_duration};
use super::problems::{Problems, Site};
use super::routing::Routing;
use super::rules::{Rule, RuleHeader, RuleKind, rule};
use super::window_rules::{WindowInput, WindowRule};
use crate::vocab::Condition;

// Defaults; docs/rules.md lists the same.

const DAY: u64 = 24 * 3600;
fn slo_period() -> Duration {
    Duration::from_secs(30 * DAY)
}
fn slo_every() -> Duration {
    Duration::from_secs(60)
}

/// The SRE workbook's burn-rate alerts: (long, short, factor, critical).
fn slo_burns() -> Vec<(Duration, Duration, f64, bool)> {
    let (m, h) = (60, 3600);
    vec![
        (
            Duration::from_secs(h),
            Duration::from_secs(5 * m),
            14.4,
            true,
        ),
        (
            Duration::from_secs(6 * h),
            Duration::from_secs(30 * m),
            6.0,
            true,
        ),
        (
            Duration::from_secs(3 * DAY),
            Duration::from_secs(6 * h),
            1.0,
            false,
        ),
    ]
}

/// One burn-rate alert of an SLO: the budget burns `factor` times too fast over both windows.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBurn {
    /// The long window, e.g. `1h`.
    pub long: String,
    /// The short window, which must burn too, e.g. `5m`.
    pub short: String,
    /// How many times faster than the objective allows the budget burns, e.g. `14.4`.
    pub factor: f64,
    /// `warning` or `critical`.
    pub severity: String,
}

/// `[[rules]]` with `kind = "slo"`: an objective over a period, alerting on burn rates.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlo {
    /// The tag, `slo`, already read by validation.
    #[serde(rename = "kind")]
    pub _tag: serde::de::IgnoredAny,
    /// Unique rule name.
    pub name: String,
    /// In percent: `99.9`.
    pub objective: f64,
    /// Default 30d.
    pub period: Option<String>,
    /// Bad events (errors) and all events (requests).
    pub bad: Option<RawSelector>,
    /// All events (requests), with `bad`.
    pub total: Option<RawSelector>,
    /// Or: a 0/1 series whose average is the availability (`probe_up`).
    pub up: Option<RawSelector>,
    /// Default: 14.4× over 1h and 5m, 6× over 6h and 30m (critical); 1× over 3d and 6h
    /// (warning).
    pub burn: Option<Vec<RawBurn>>,
    /// Time between evaluations (default 1m).
    pub every: Option<String>,
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

/// What an SLO counts.
#[derive(Debug, Clone, PartialEq)]
pub enum SloEvents {
    /// Bad events over all events (errors over requests).
    Ratio {
        bad: (String, BTreeMap<String, String>),
        total: (String, BTreeMap<String, String>),
    },
    /// A 0/1 series: the error ratio is one minus its average.
    Up {
        metric: String,
        matchers: BTreeMap<String, String>,
    },
}

/// One multi-window burn-rate alert of an SLO.
#[derive(Debug, Clone, PartialEq)]
pub struct Burn {
    pub long: Duration,
    pub short: Duration,
    pub factor: f64,
    pub critical: bool,
}

pub(super) fn slo(
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
        slo_period(),
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
            for (long, short, factor, critical) in slo_burns() {
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
                let critical = match Severity::parse(&b.severity) {
                    Some(Severity::Critical) => true,
                    Some(Severity::Warning) => false,
                    Some(Severity::Info) | None => {
                        problems.push(
                            Some(site.span_of("burn")),
                            site.field(&field("severity")),
                            format!("`{}` is not `warning` or `critical`", b.severity),
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
        slo_every(),
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
        RuleKind::Window(WindowRule {
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
        page_on_client_data: raw.page_on_client_data,
    };
    rule(problems, site, before, header, kind, channels, routing)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::{Burn, SloEvents};
    use crate::config::testing::{config, expect};
    use crate::config::{RuleKind, Severity, WindowInput};
    use crate::vocab::{Condition, Op};

    /// Channels for warning and critical alerts, then the rule from line 10.
    const ROUTED: &str = r#"[[channels]]
name = "slack"
type = "slack"
webhook_url = "http://127.0.0.1:9/hook"

[routing]
warning = ["slack"]
critical = ["slack"]

"#;

    const SLO: &str = r#"[[rules]]
name = "api"
kind = "slo"
objective = 99.9
up = { metric = "probe_up", match = { target = "api" } }
summary = "API"
"#;

    #[test]
    fn defaults_and_levels() {
        let c = config(&format!("{ROUTED}{SLO}"));
        let rule = &c.rules[0];
        let RuleKind::Window(t) = &rule.kind else {
            panic!("{rule:?}");
        };
        let (m, h) = (60, 3600);
        let secs = Duration::from_secs;
        assert_eq!(
            t.input,
            WindowInput::Slo {
                events: SloEvents::Up {
                    metric: "probe_up".into(),
                    matchers: BTreeMap::from([("target".to_string(), "api".to_string())]),
                },
                objective: 99.9 / 100.0,
                period: secs(30 * 86400),
                burns: vec![
                    Burn {
                        long: secs(h),
                        short: secs(5 * m),
                        factor: 14.4,
                        critical: true,
                    },
                    Burn {
                        long: secs(6 * h),
                        short: secs(30 * m),
                        factor: 6.0,
                        critical: true,
                    },
                    Burn {
                        long: secs(3 * 86400),
                        short: secs(6 * h),
                        factor: 1.0,
                        critical: false,
                    },
                ],
            }
        );
        // Warning and critical burns: a warning rule with a critical level.
        let gt = |threshold| Condition {
            op: Op::Gt,
            threshold,
        };
        assert_eq!(rule.severity, Severity::Warning);
        assert_eq!((t.condition, t.critical), (gt(0.0), Some(gt(1.0))));
        assert_eq!(t.every, secs(60));
        // Critical burns only: a critical rule.
        let c = config(&format!(
            "{ROUTED}{SLO}burn = [{{ long = \"1h\", short = \"5m\", factor = 14.4, severity = \"critical\" }}]\n"
        ));
        let RuleKind::Window(t) = &c.rules[0].kind else {
            panic!();
        };
        assert_eq!(c.rules[0].severity, Severity::Critical);
        assert_eq!((t.condition, t.critical), (gt(1.0), None));
        let c = config(&format!(
            "{ROUTED}{}",
            SLO.replace(
                "up = { metric = \"probe_up\", match = { target = \"api\" } }",
                "bad = { metric = \"errors\" }\ntotal = { metric = \"requests\" }"
            )
        ));
        let RuleKind::Window(t) = &c.rules[0].kind else {
            panic!();
        };
        assert!(matches!(
            &t.input,
            WindowInput::Slo { events: SloEvents::Ratio { bad, total }, .. }
                if bad.0 == "errors" && total.0 == "requests"
        ));
    }

    #[test]
    fn problems() {
        let slo = |extra: &str| format!("{ROUTED}{SLO}{extra}\n");
        let burn = |b: &str| slo(&format!("burn = [{b}]"));
        expect(&[
            (
                &format!("{ROUTED}{}", SLO.replace("99.9", "100.0")),
                "rules[0].objective",
                13,
                "must be a percentage between 0 and 100, e.g. 99.9",
            ),
            (
                &slo("period = \"30m\""),
                "rules[0].period",
                16,
                "must be at least 1h",
            ),
            (
                &format!("{ROUTED}{}", SLO.replace("\"probe_up\"", "\"probe up\"")),
                "rules[0].up.metric",
                14,
                "`probe up` is not a metric name",
            ),
            (
                &slo("total = { metric = \"requests\" }"),
                "rules[0].bad",
                10,
                "give `bad` and `total` (events, e.g. errors and requests) or `up` (a 0/1 series such as probe_up)",
            ),
            (
                &burn("{ long = \"1h\", short = \"30s\", factor = 14.4, severity = \"critical\" }"),
                "rules[0].burn[0].short",
                16,
                "must be between 1m and 3650d",
            ),
            (
                &burn(
                    "{ long = \"an hour\", short = \"5m\", factor = 14.4, severity = \"critical\" }",
                ),
                "rules[0].burn[0].long",
                16,
                "`an hour` is not a duration",
            ),
            (
                &burn("{ long = \"1h\", short = \"5m\", factor = 0.0, severity = \"critical\" }"),
                "rules[0].burn[0].factor",
                16,
                "must be a number above 0",
            ),
            (
                &burn("{ long = \"1h\", short = \"5m\", factor = 14.4, severity = \"info\" }"),
                "rules[0].burn[0].severity",
                16,
                "`info` is not `warning` or `critical`",
            ),
            (
                &burn("{ long = \"1h\", short = \"1h\", factor = 14.4, severity = \"critical\" }"),
                "rules[0].burn[0].short",
                16,
                "must be shorter than `long`",
            ),
            (
                &burn(""),
                "rules[0].burn",
                16,
                "needs at least one burn-rate alert (or leave `burn` out for the defaults)",
            ),
            (
                &format!(
                    "{ROUTED}{}burn = [{{ long = \"1h\", short = \"5m\", factor = 100.0, severity = \"critical\" }}]\n",
                    SLO.replace("99.9", "99.0")
                ),
                "rules[0].burn",
                16,
                "a factor of 100 or more can never be reached: at 99 % the budget burns at most 100× (everything failing)",
            ),
            (
                &slo("every = \"0s\""),
                "rules[0].every",
                16,
                "must be at least 1s",
            ),
        ]);
    }
}
