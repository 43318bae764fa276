//! `[routing]`: which channels an alert goes to, by severity, by labels, and as it
//! escalates; as written and validated.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;

use super::Severity;
use super::fields::{MAX_DURATION, duration_field, nested_duration};
use super::problems::{Problems, Site};

// Defaults; docs/configuration.md lists the same. Without `repeat_interval`, no reminders.

fn group_wait() -> Duration {
    Duration::ZERO
}

/// `[routing]`: which channels each severity goes to. `info` is logged only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouting {
    /// Channels for warning alerts.
    #[serde(default)]
    pub warning: Vec<String>,
    /// Channels for critical alerts.
    #[serde(default)]
    pub critical: Vec<String>,
    /// Resend a firing, unacknowledged alert to its channels this often.
    pub repeat_interval: Option<String>,
    /// Wait this long before a message, to send alerts of the same rule together. Default 0s.
    pub group_wait: Option<String>,
    /// Steps that notify more channels while an alert fires unacknowledged.
    #[serde(default)]
    pub escalation: Vec<RawEscalation>,
    /// Routes by labels, tried in order before the severity lists.
    #[serde(default)]
    pub route: Vec<RawRoute>,
}

/// `[[routing.route]]`: alerts matching `match` (and `severity`, if given) go to `channels`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    /// `rule` and label equality matchers.
    #[serde(rename = "match", default)]
    pub matchers: BTreeMap<String, String>,
    /// Only alerts of this severity.
    pub severity: Option<String>,
    /// Where matching alerts go.
    pub channels: Vec<String>,
}

/// `[[routing.escalation]]`: after `after` unacknowledged, notify `channels` too.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEscalation {
    /// The severity this step applies to.
    pub severity: String,
    /// Time since the alert fired, e.g. `30m`.
    pub after: String,
    /// The channels to add.
    pub channels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Routing {
    pub warning: Vec<String>,
    pub critical: Vec<String>,
    /// Reminders to a firing, unacknowledged alert's channels.
    pub repeat_interval: Option<Duration>,
    /// How long a message waits for other alerts of its rule to go out together (Slack,
    /// email, webhook; PagerDuty and Alertmanager get one event per alert).
    pub group_wait: Duration,
    /// Escalation steps, by increasing `after`.
    pub escalation: Vec<EscalationStep>,
    /// Routes by labels, tried in order; the first that matches decides.
    pub routes: Vec<Route>,
}

/// Alerts matching `matchers` (and `severity`, if set) go to `channels`.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub matchers: crate::silence::Matchers,
    pub severity: Option<Severity>,
    pub channels: Vec<String>,
}

/// After `after` of firing unacknowledged, an alert of `severity` also goes to `channels`.
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationStep {
    pub severity: Severity,
    pub after: Duration,
    pub channels: Vec<String>,
}

impl Routing {
    /// The channels an alert of `severity` goes to when its rule names none.
    pub fn channels_for(&self, severity: Severity) -> &[String] {
        match severity {
            Severity::Info => &[],
            Severity::Warning => &self.warning,
            Severity::Critical => &self.critical,
        }
    }
}

/// `[routing]`, validated against the channels' names.
pub(super) fn routing(
    problems: &mut Problems<'_>,
    raw: RawRouting,
    site: &Site<'_, '_>,
    channel_names: &BTreeSet<String>,
) -> Routing {
    for (severity, names) in [("warning", &raw.warning), ("critical", &raw.critical)] {
        check_channel_refs(problems, channel_names, names, site, severity);
    }
    let repeat_interval = raw.repeat_interval.as_ref().map(|text| {
        duration_field(
            problems,
            site,
            "repeat_interval",
            Some(text),
            Duration::from_secs(3600),
            Duration::from_secs(1),
        )
    });
    let mut escalation = Vec::new();
    for (i, step) in raw.escalation.into_iter().enumerate() {
        let field = format!("escalation[{i}]");
        let severity = match Severity::parse(&step.severity) {
            Some(s @ (Severity::Warning | Severity::Critical)) => s,
            Some(Severity::Info) | None => {
                problems.push(
                    Some(site.span_of("escalation")),
                    site.field(&format!("{field}.severity")),
                    format!(
                        "`{}` is not a severity to escalate; use `warning` or `critical`",
                        step.severity
                    ),
                );
                continue;
            }
        };
        let Some(after) = nested_duration(
            problems,
            site,
            ("escalation", &format!("{field}.after")),
            &step.after,
            Duration::ZERO..=MAX_DURATION,
            "must be at most 3650d",
        ) else {
            continue;
        };
        check_channel_refs(problems, channel_names, &step.channels, site, "escalation");
        escalation.push(EscalationStep {
            severity,
            after,
            channels: step.channels,
        });
    }
    escalation.sort_by_key(|s| s.after);
    let mut routes = Vec::new();
    for (i, r) in raw.route.into_iter().enumerate() {
        let severity = match r.severity.as_deref() {
            None => None,
            Some(other) => match Severity::parse(other) {
                Some(s @ (Severity::Warning | Severity::Critical)) => Some(s),
                Some(Severity::Info) | None => {
                    problems.push(
                        Some(site.span_of("route")),
                        site.field(&format!("route[{i}].severity")),
                        format!(
                            "`{other}` is not a severity to route; use `warning` or `critical`"
                        ),
                    );
                    continue;
                }
            },
        };
        check_channel_refs(problems, channel_names, &r.channels, site, "route");
        if r.channels.is_empty() {
            problems.push(
                Some(site.span_of("route")),
                site.field(&format!("route[{i}].channels")),
                "a route needs at least one channel",
            );
        }
        routes.push(Route {
            matchers: r.matchers,
            severity,
            channels: r.channels,
        });
    }
    let group_wait = duration_field(
        problems,
        site,
        "group_wait",
        raw.group_wait.as_ref(),
        group_wait(),
        Duration::ZERO,
    );
    Routing {
        warning: raw.warning,
        critical: raw.critical,
        repeat_interval,
        group_wait,
        escalation,
        routes,
    }
}

pub(super) fn check_channel_refs(
    problems: &mut Problems<'_>,
    channels: &BTreeSet<String>,
    names: &[String],
    site: &Site<'_, '_>,
    key: &str,
) {
    let mut seen = BTreeSet::new();
    for name in names {
        if !channels.contains(name) {
            let known: Vec<&str> = channels.iter().map(String::as_str).collect();
            problems.push(
                Some(site.span_of(key)),
                site.field(key),
                format!(
                    "no channel named `{name}`; defined channels: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        } else if !seen.insert(name) {
            problems.push(
                Some(site.span_of(key)),
                site.field(key),
                format!("channel `{name}` is listed twice"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{EscalationStep, Route, Routing};
    use crate::config::Severity;
    use crate::config::testing::{config, expect};

    const CHANNELS: &str = r#"[[channels]]
name = "slack"
type = "slack"
webhook_url = "http://127.0.0.1:9/hook"

[[channels]]
name = "pager"
type = "webhook"
url = "http://127.0.0.1:9/pager"
"#;

    #[test]
    fn routing_as_written() {
        let c = config(&format!(
            r#"{CHANNELS}
[routing]
warning = ["slack"]
critical = ["slack", "pager"]
repeat_interval = "4h"
group_wait = "30s"
escalation = [
  {{ severity = "critical", after = "1h", channels = ["pager"] }},
  {{ severity = "warning", after = "30m", channels = ["pager"] }},
]
route = [{{ match = {{ team = "db" }}, severity = "critical", channels = ["pager"] }}]
"#
        ));
        let min = |m: u64| Duration::from_secs(m * 60);
        assert_eq!(
            c.routing,
            Routing {
                warning: vec!["slack".into()],
                critical: vec!["slack".into(), "pager".into()],
                repeat_interval: Some(min(240)),
                group_wait: Duration::from_secs(30),
                // By increasing `after`.
                escalation: vec![
                    EscalationStep {
                        severity: Severity::Warning,
                        after: min(30),
                        channels: vec!["pager".into()],
                    },
                    EscalationStep {
                        severity: Severity::Critical,
                        after: min(60),
                        channels: vec!["pager".into()],
                    },
                ],
                routes: vec![Route {
                    matchers: [("team".to_string(), "db".to_string())].into(),
                    severity: Some(Severity::Critical),
                    channels: vec!["pager".into()],
                }],
            }
        );
        assert_eq!(c.routing.channels_for(Severity::Info), &[] as &[String]);
    }

    #[test]
    fn problems() {
        let routing = |body: &str| format!("{CHANNELS}\n[routing]\n{body}\n");
        expect(&[
            (
                &routing("critical = [\"slack\", \"pagr\"]"),
                "routing.critical",
                12,
                "no channel named `pagr`; defined channels: pager, slack",
            ),
            (
                "[routing]\nwarning = [\"slack\"]\n",
                "routing.warning",
                2,
                "no channel named `slack`; defined channels: none",
            ),
            (
                &routing("critical = [\"slack\", \"slack\"]"),
                "routing.critical",
                12,
                "channel `slack` is listed twice",
            ),
            (
                &routing("repeat_interval = \"0s\""),
                "routing.repeat_interval",
                12,
                "must be at least 1s",
            ),
            (
                &routing("group_wait = \"a while\""),
                "routing.group_wait",
                12,
                "`a while` is not a duration",
            ),
            (
                &routing(
                    "escalation = [{ severity = \"info\", after = \"1h\", channels = [\"pager\"] }]",
                ),
                "routing.escalation[0].severity",
                12,
                "`info` is not a severity to escalate; use `warning` or `critical`",
            ),
            (
                &routing(
                    "escalation = [{ severity = \"urgent\", after = \"1h\", channels = [\"pager\"] }]",
                ),
                "routing.escalation[0].severity",
                12,
                "`urgent` is not a severity to escalate; use `warning` or `critical`",
            ),
            (
                &routing(
                    "escalation = [{ severity = \"critical\", after = \"5000d\", channels = [\"pager\"] }]",
                ),
                "routing.escalation[0].after",
                12,
                "must be at most 3650d",
            ),
            (
                &routing(
                    "escalation = [{ severity = \"critical\", after = \"later\", channels = [\"pager\"] }]",
                ),
                "routing.escalation[0].after",
                12,
                "`later` is not a duration",
            ),
            (
                &routing(
                    "escalation = [{ severity = \"critical\", after = \"1h\", channels = [\"sms\"] }]",
                ),
                "routing.escalation",
                12,
                "no channel named `sms`; defined channels: pager, slack",
            ),
            (
                &routing(
                    "route = [{ match = { team = \"db\" }, severity = \"info\", channels = [\"pager\"] }]",
                ),
                "routing.route[0].severity",
                12,
                "`info` is not a severity to route; use `warning` or `critical`",
            ),
            (
                &routing("route = [{ match = { team = \"db\" }, channels = [] }]"),
                "routing.route[0].channels",
                12,
                "a route needs at least one channel",
            ),
            (
                &routing("route = [{ match = { team = \"db\" }, channels = [\"sms\"] }]"),
                "routing.route",
                12,
                "no channel named `sms`",
            ),
        ]);
    }

    /// An array of tables written as `[[routing.escalation]]` places its problems at its first
    /// table.
    #[test]
    fn problems_of_escalation_tables() {
        expect(&[(
            &format!(
                "{CHANNELS}\n[[routing.escalation]]\nseverity = \"critical\"\nafter = \"1h\"\nchannels = [\"pager\"]\n\n[[routing.escalation]]\nseverity = \"info\"\nafter = \"2h\"\nchannels = [\"pager\"]\n"
            ),
            "routing.escalation[1].severity",
            11,
            "`info` is not a severity to escalate",
        )]);
    }
}
