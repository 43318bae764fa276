//! Planning without I/O: what a set of transitions, a turn of the clock (escalations,
//! reminders, held-back firings whose silence ended) or a raised severity writes to the store
//! — alert records, deletions, one outbox entry per notification and channel, history
//! events. Pure functions of (configuration, alert records, transitions, now).

use std::collections::{BTreeMap, HashMap};

use super::compose::notification;
use super::{Fired, StoredAlert};
use crate::config::{Config, Rule, Severity};
use crate::history::{Event, EventKind};
use crate::notify::outbox::Entry;
use crate::notify::{Notification, Status};
use crate::rules::{AlertState, Transition, TransitionKind};
use crate::series::{Labels, SeriesKey};
use crate::silence::Silence;

/// Whether an alert watches a probe series of a target the configuration no longer has.
pub(super) fn probe_target_gone(cfg: &Config) -> impl Fn(&Rule, &Labels) -> bool + '_ {
    move |rule, labels| {
        rule.kind
            .selects()
            .is_some_and(|(metric, _)| metric.starts_with("probe_"))
            && labels
                .get("target")
                .is_some_and(|t| !cfg.targets.iter().any(|x| &x.name == t))
    }
}

pub(super) const TARGET_GONE: &str = "the probe target was removed from the configuration";

/// The store changes a set of transitions calls for.
#[derive(Debug, Default)]
pub struct Plan {
    pub put: Vec<(String, StoredAlert)>,
    pub delete: Vec<String>,
    pub outbox: Vec<Entry>,
    pub history: Vec<Event>,
}

impl Plan {
    pub(super) fn is_empty(&self) -> bool {
        self.put.is_empty()
            && self.delete.is_empty()
            && self.outbox.is_empty()
            && self.history.is_empty()
    }
}

/// Decides, without I/O, what `transitions` write: alert records, deletions, and one outbox
/// entry per notification and channel. Logs each state change. Updates `fired`.
pub fn plan(
    cfg: &Config,
    fired: &mut HashMap<String, Fired>,
    transitions: &[Transition],
    now: i64,
    silenced: &dyn Fn(&str, &Labels) -> Option<String>,
) -> Plan {
    let mut plan = Plan::default();
    for t in transitions {
        let fp = t.alert.fingerprint();
        let rule = cfg.rules.iter().find(|r| r.name == t.alert.rule);
        let labels = SeriesKey {
            name: String::new(),
            labels: t.alert.labels.clone(),
        }
        .to_string();
        match t.kind {
            TransitionKind::Pending => {
                tracing::info!(rule = %t.alert.rule, labels = %labels, "Alert pending");
                plan.put.push((
                    fp,
                    StoredAlert {
                        state: t.alert.clone(),
                        fired: None,
                    },
                ));
            }
            TransitionKind::Cleared => {
                tracing::info!(rule = %t.alert.rule, labels = %labels, "Alert cleared before firing");
                fired.remove(&fp);
                plan.delete.push(fp);
            }
            TransitionKind::Firing => {
                let Some(rule) = rule else { continue };
                let n = notification(rule, t);
                let suppressed_by = silenced(&t.alert.rule, &t.alert.labels);
                let suppressed = suppressed_by.is_some();
                // A silenced alert is recorded and notifies no one, until its silence ends.
                let channels: Vec<String> = match suppressed_by {
                    Some(_) => Vec::new(),
                    None => routed(cfg, rule, &t.alert.labels, t.alert.severity),
                };
                tracing::info!(
                    rule = %t.alert.rule,
                    labels = %labels,
                    severity = %t.alert.severity,
                    reason = t.alert.note.as_deref().unwrap_or(""),
                    channels = %channels.join(","),
                    silenced_by = suppressed_by.as_deref().unwrap_or(""),
                    "Alert firing"
                );
                for ch in &channels {
                    plan.outbox.push(Entry::new(ch, n.clone(), now));
                }
                plan.history.push(
                    Event::new(now, &fp, &t.alert.rule, EventKind::Firing)
                        .detail(t.alert.note.as_deref().unwrap_or("").trim())
                        .held_back(suppressed_by.as_deref())
                        .severity(t.alert.severity),
                );
                let f = Fired {
                    channels,
                    notification: n,
                    ack: None,
                    suppressed_by,
                    escalated: 0,
                    last_sent_ms: now,
                    resent_ms: BTreeMap::new(),
                    notified_at_ms: if suppressed { 0 } else { now },
                };
                fired.insert(fp.clone(), f.clone());
                plan.put.push((
                    fp,
                    StoredAlert {
                        state: t.alert.clone(),
                        fired: Some(f),
                    },
                ));
            }
            TransitionKind::Resolved => {
                plan.delete.push(fp.clone());
                let earlier = fired.remove(&fp);
                // The resolve goes where the firing went, and reads like it.
                let (n, channels) = match (earlier, rule) {
                    (Some(f), rule) => {
                        let mut n = match rule {
                            Some(rule) => notification(rule, t),
                            None => resolved_from(&f.notification, t),
                        };
                        n.fired_at_ms = f.notification.fired_at_ms;
                        (n, f.channels)
                    }
                    (None, Some(rule)) => (
                        notification(rule, t),
                        routed(cfg, rule, &t.alert.labels, t.alert.severity),
                    ),
                    (None, None) => {
                        tracing::warn!(rule = %t.alert.rule, labels = %labels, "Alert resolved; its rule and firing record are gone, so no resolve is sent");
                        continue;
                    }
                };
                let (deliverable, lost): (Vec<String>, Vec<String>) = channels
                    .into_iter()
                    .partition(|c| cfg.channels.contains_key(c));
                if !lost.is_empty() {
                    tracing::warn!(rule = %t.alert.rule, channels = %lost.join(","), "The resolve cannot go to channels removed from the configuration");
                }
                tracing::info!(
                    rule = %t.alert.rule,
                    labels = %labels,
                    severity = %t.alert.severity,
                    note = t.reason.as_deref().unwrap_or(""),
                    channels = %deliverable.join(","),
                    "Alert resolved"
                );
                for ch in &deliverable {
                    plan.outbox.push(Entry::new(ch, n.clone(), now));
                }
                let lasted = format!(
                    "lasted {}",
                    crate::format::format_span(t.at_ms - t.alert.since_ms)
                );
                let detail = match &t.reason {
                    Some(r) => format!("{lasted}; {r}"),
                    None => lasted,
                };
                plan.history
                    .push(Event::new(now, &fp, &t.alert.rule, EventKind::Resolved).detail(detail));
            }
        }
    }
    plan
}

/// What time owes the firing alerts at `now`, without I/O: the held-back firing of alerts
/// whose silence ended, escalation steps that came due (to channels not yet notified; the
/// resolve will go there too), and reminders every `repeat_interval`. Acknowledged and
/// silenced alerts get neither escalations nor reminders.
pub fn tick_plan(
    cfg: &Config,
    firing: &[AlertState],
    fired: &mut HashMap<String, Fired>,
    now: i64,
    silenced: &dyn Fn(&str, &Labels) -> Option<String>,
) -> Plan {
    let mut plan = Plan::default();
    for state in firing {
        let fp = state.fingerprint();
        let Some(f) = fired.get_mut(&fp) else {
            continue;
        };
        let mut changed = false;
        if f.suppressed_by.is_some() {
            if silenced(&state.rule, &state.labels).is_some() {
                continue;
            }
            let Some(rule) = cfg.rules.iter().find(|r| r.name == state.rule) else {
                continue;
            };
            f.channels = routed(cfg, rule, &state.labels, state.severity);
            if state.severity > f.notification.severity {
                // Raised while held back: it goes out once, as it is now.
                f.notification.severity = state.severity;
                refresh_figures(&mut f.notification, rule, state, now);
            }
            tracing::info!(alert = %fp, was = f.suppressed_by.as_deref().unwrap_or(""), channels = %f.channels.join(","), "Silence over; sending the firing alert");
            plan.history.push(
                Event::new(now, &fp, &state.rule, EventKind::Released)
                    .detail(f.suppressed_by.clone().unwrap_or_default()),
            );
            f.suppressed_by = None;
            f.last_sent_ms = now;
            f.notified_at_ms = now;
            for ch in &f.channels {
                plan.outbox
                    .push(Entry::new(ch, f.notification.clone(), now));
                if kind(cfg, ch).is_some_and(|k| k.keep_alive().is_some()) {
                    // The release is this interval's keep-alive send.
                    f.resent_ms.insert(ch.clone(), now);
                }
                // Acknowledged while held back: PagerDuty learns it right after the trigger.
                if f.ack.is_some() && kind(cfg, ch).is_some_and(|k| k.hears_acknowledgement()) {
                    let n = Notification {
                        status: Status::Acknowledged,
                        ..f.notification.clone()
                    };
                    plan.outbox.push(Entry::new(ch, n, now));
                }
            }
            changed = true;
        } else if f.ack.is_none() && silenced(&state.rule, &state.labels).is_none() {
            // Escalation counts from when people were first told, not from a held-back firing.
            let fired_at = if f.notified_at_ms > 0 {
                f.notified_at_ms
            } else {
                f.notification.fired_at_ms
            };
            let steps: Vec<&crate::config::EscalationStep> = cfg
                .routing
                .escalation
                .iter()
                .filter(|s| s.severity == state.severity)
                .collect();
            while let Some(step) = steps.get(f.escalated) {
                if fired_at.saturating_add(step.after.as_millis() as i64) > now {
                    break;
                }
                f.escalated += 1;
                changed = true;
                let new: Vec<String> = step
                    .channels
                    .iter()
                    .filter(|c| cfg.channels.contains_key(*c) && !f.channels.contains(*c))
                    .cloned()
                    .collect();
                let n = Notification {
                    note: Some(format!(
                        "Escalated: unacknowledged for {}",
                        crate::format::format_span(step.after.as_millis() as i64)
                    )),
                    ..f.notification.clone()
                };
                tracing::info!(alert = %fp, after = %humantime::format_duration(step.after), channels = %new.join(","), "Alert escalated");
                for ch in &new {
                    plan.outbox.push(Entry::new(ch, n.clone(), now));
                }
                plan.history.push(
                    Event::new(now, &fp, &state.rule, EventKind::Escalated).detail(format!(
                        "after {}: {}",
                        humantime::format_duration(step.after),
                        new.join(", ")
                    )),
                );
                f.channels.extend(new);
            }
            if let Some(every) = cfg.routing.repeat_interval {
                let last = if f.last_sent_ms > 0 {
                    f.last_sent_ms
                } else {
                    fired_at
                };
                if now.saturating_sub(last) >= every.as_millis() as i64 {
                    f.last_sent_ms = now;
                    changed = true;
                    let n = Notification {
                        note: Some(format!(
                            "Reminder: still firing, unacknowledged, after {}",
                            crate::format::format_span(now - fired_at)
                        )),
                        ..f.notification.clone()
                    };
                    tracing::info!(alert = %fp, "Alert reminder");
                    for ch in f
                        .channels
                        .iter()
                        .filter(|c| kind(cfg, c).is_none_or(|k| k.reminds()))
                    {
                        plan.outbox.push(Entry::new(ch, n.clone(), now));
                    }
                }
            }
        }
        // Alertmanager forgets an alert that is not re-sent; keep it alive while it fires.
        for ch in &f.channels {
            let Some(resend_interval) = kind(cfg, ch).and_then(|k| k.keep_alive()) else {
                continue;
            };
            let last = f
                .resent_ms
                .get(ch)
                .copied()
                .unwrap_or(f.notification.fired_at_ms);
            if now.saturating_sub(last) >= resend_interval.as_millis() as i64 {
                f.resent_ms.insert(ch.clone(), now);
                plan.outbox
                    .push(Entry::new(ch, f.notification.clone(), now));
                changed = true;
            }
        }
        if changed {
            plan.put.push((
                fp,
                StoredAlert {
                    state: state.clone(),
                    fired: Some(f.clone()),
                },
            ));
        }
    }
    plan
}

/// Why an alert must not notify now, if it must not: a silence, a maintenance window, or a
/// rule it `depends_on` that fires (inhibition).
pub(super) fn suppression<'a>(
    cfg: &'a Config,
    silences: &'a [Silence],
    firing_rules: &'a std::collections::BTreeSet<String>,
    now: i64,
) -> impl Fn(&str, &Labels) -> Option<String> + 'a {
    move |rule: &str, labels: &Labels| {
        crate::silence::silenced_by(silences, &cfg.maintenance, rule, labels, now).or_else(|| {
            let r = cfg.rules.iter().find(|r| r.name == rule)?;
            r.depends_on
                .iter()
                .find(|d| firing_rules.contains(*d))
                .map(|d| format!("rule {d}, which fires"))
        })
    }
}

/// Puts the alert's figures of now (value, reason) into its notification.
fn refresh_figures(n: &mut Notification, rule: &Rule, state: &AlertState, now: i64) {
    let fresh = notification(
        rule,
        &Transition {
            kind: TransitionKind::Firing,
            alert: state.clone(),
            at_ms: now,
            reason: None,
        },
    );
    n.value_text = fresh.value_text;
    n.reason = fresh.reason;
}

/// Firing alerts whose severity went up (a reload made their rule critical) are news at
/// once: the firing goes out again with the new severity, to every channel of the new route
/// and those told before, with a note; the resolve will reach all of them.
pub fn upgrade_plan(
    cfg: &Config,
    firing: &[AlertState],
    fired: &mut HashMap<String, Fired>,
    now: i64,
) -> Plan {
    let mut plan = Plan::default();
    for state in firing {
        let fp = state.fingerprint();
        let Some(f) = fired.get_mut(&fp) else {
            continue;
        };
        let before = f.notification.severity;
        if state.severity <= before || f.suppressed_by.is_some() {
            continue;
        }
        let Some(rule) = cfg.rules.iter().find(|r| r.name == state.rule) else {
            continue;
        };
        f.notification.severity = state.severity;
        for ch in routed(cfg, rule, &state.labels, state.severity) {
            if !f.channels.contains(&ch) {
                f.channels.push(ch);
            }
        }
        // The figures that raised it, not those it fired with.
        refresh_figures(&mut f.notification, rule, state, now);
        let n = Notification {
            note: Some(format!(
                "Severity raised from {before} to {}",
                state.severity
            )),
            ..f.notification.clone()
        };
        tracing::info!(alert = %fp, from = %before, to = %state.severity, channels = %f.channels.join(","), "Alert severity raised");
        for ch in &f.channels {
            plan.outbox.push(Entry::new(ch, n.clone(), now));
        }
        plan.history.push(
            Event::new(now, &fp, &state.rule, EventKind::Upgraded)
                .detail(format!("{before} → {}", state.severity))
                .severity(state.severity),
        );
        plan.put.push((
            fp,
            StoredAlert {
                state: state.clone(),
                fired: Some(f.clone()),
            },
        ));
    }
    plan
}

/// The kind of the channel named `channel`, if it is configured.
fn kind<'a>(cfg: &'a Config, channel: &str) -> Option<&'a crate::config::ChannelKind> {
    cfg.channels.get(channel).map(|c| &c.kind)
}

/// The configured channels a rule's notifications go to.
fn routed(cfg: &Config, rule: &Rule, labels: &Labels, severity: Severity) -> Vec<String> {
    rule.route_as(&cfg.routing, labels, severity)
        .iter()
        .filter(|c| cfg.channels.contains_key(*c))
        .cloned()
        .collect()
}

/// A resolve built from the firing notification, for an alert whose rule is gone.
fn resolved_from(firing: &Notification, t: &Transition) -> Notification {
    Notification {
        status: Status::Resolved,
        ended_at_ms: Some(t.at_ms),
        note: t.reason.clone(),
        reason: t.alert.note.clone(),
        ..firing.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::pipeline::Ack;
    use crate::rules::Engine;
    use crate::series::Sample;

    fn cfg(extra_rule: &str, routing_critical: &str) -> Config {
        let text = format!(
            r#"
[routing]
critical = [{routing_critical}]
[[channels]]
name = "slack"
type = "slack"
webhook_url = "http://127.0.0.1:9/slack"
[[channels]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
[[targets]]
name = "web"
url = "http://127.0.0.1:9/"
{extra_rule}
"#
        );
        config::parse(&text, std::path::Path::new("test.toml")).unwrap()
    }

    const RULE: &str = r#"
[[rules]]
name = "down"
kind = "consecutive"
match = { target = "web" }
fire_after = 1
severity = "critical"
summary = "Web down"
"#;

    fn fail(t: i64) -> Sample {
        Sample {
            series: SeriesKey::new("probe_up", &[("target", "web")]),
            ts_ms: t,
            value: 0.0,
            note: Some("HTTP 500".into()),
        }
    }

    fn outbox_channels(p: &Plan) -> Vec<(&str, Status)> {
        p.outbox
            .iter()
            .map(|e| (e.channel.as_str(), e.notification.status))
            .collect()
    }

    #[test]
    fn a_resolve_goes_where_the_firing_went_even_after_routing_changed() {
        let before = cfg(RULE, r#""slack", "hook""#);
        let (mut engine, _) = Engine::restore(before.rules.clone(), vec![], 0);
        let mut fired = HashMap::new();
        let ts = engine.observe(&fail(1), 1);
        let p = plan(&before, &mut fired, &ts, 1, &|_, _| None);
        assert_eq!(
            outbox_channels(&p),
            vec![("slack", Status::Firing), ("hook", Status::Firing)]
        );
        // A reload routes critical to Slack only; the rule itself is then removed.
        let after = cfg("", r#""slack""#);
        let ts = engine.reload(after.rules.clone(), 5);
        let p = plan(&after, &mut fired, &ts, 5, &|_, _| None);
        assert_eq!(
            outbox_channels(&p),
            vec![("slack", Status::Resolved), ("hook", Status::Resolved)]
        );
        let n = &p.outbox[0].notification;
        assert_eq!(n.summary, "Web down");
        assert_eq!(n.fired_at_ms, 1);
        assert!(n.note.as_deref().unwrap_or("").contains("removed"));
        assert_eq!(p.delete, vec![r#"down{target="web"}"#.to_string()]);
    }

    #[test]
    fn a_firing_alert_of_a_removed_target_resolves() {
        let c = cfg(RULE, r#""slack""#);
        let (mut engine, _) = Engine::restore(c.rules.clone(), vec![], 0);
        let mut fired = HashMap::new();
        let ts = engine.observe(&fail(1), 1);
        plan(&c, &mut fired, &ts, 1, &|_, _| None);
        let mut without = c.clone();
        without.targets.clear();
        let ts = engine.retire(probe_target_gone(&without), 9, TARGET_GONE);
        let p = plan(&without, &mut fired, &ts, 9, &|_, _| None);
        assert_eq!(outbox_channels(&p), vec![("slack", Status::Resolved)]);
        assert_eq!(p.outbox[0].notification.note.as_deref(), Some(TARGET_GONE));
    }

    #[test]
    fn escalation_and_reminders_follow_the_clock_until_acknowledged() {
        let mut c = cfg(RULE, r#""slack""#);
        c.routing.repeat_interval = Some(std::time::Duration::from_secs(3600));
        c.routing.escalation = vec![
            crate::config::EscalationStep {
                severity: crate::config::Severity::Critical,
                after: std::time::Duration::from_secs(30 * 60),
                channels: vec!["hook".into()],
            },
            crate::config::EscalationStep {
                severity: crate::config::Severity::Warning,
                after: std::time::Duration::from_secs(60),
                channels: vec!["hook".into()],
            },
        ];
        let (mut engine, _) = Engine::restore(c.rules.clone(), vec![], 0);
        let mut fired = HashMap::new();
        let ts = engine.observe(&fail(0), 0);
        plan(&c, &mut fired, &ts, 0, &|_, _| None);
        let firing: Vec<AlertState> = engine.alerts().cloned().collect();
        let min = 60_000;
        let mut timeline = Vec::new();
        // Three simulated hours, one tick a minute.
        for m in 1..=180 {
            let p = tick_plan(&c, &firing, &mut fired, m * min, &|_, _| None);
            for e in p.outbox {
                timeline.push((m, e.channel, e.notification.note.unwrap_or_default()));
            }
        }
        let expect = |m: i64, ch: &str, note: &str| (m, ch.to_string(), note.to_string());
        assert_eq!(
            timeline,
            vec![
                expect(30, "hook", "Escalated: unacknowledged for 30m"),
                expect(
                    60,
                    "slack",
                    "Reminder: still firing, unacknowledged, after 1h"
                ),
                expect(
                    60,
                    "hook",
                    "Reminder: still firing, unacknowledged, after 1h"
                ),
                expect(
                    120,
                    "slack",
                    "Reminder: still firing, unacknowledged, after 2h"
                ),
                expect(
                    120,
                    "hook",
                    "Reminder: still firing, unacknowledged, after 2h"
                ),
                expect(
                    180,
                    "slack",
                    "Reminder: still firing, unacknowledged, after 3h"
                ),
                expect(
                    180,
                    "hook",
                    "Reminder: still firing, unacknowledged, after 3h"
                ),
            ]
        );
        // Acknowledged: nothing more.
        fired.values_mut().for_each(|f| {
            f.ack = Some(Ack {
                by: "alice".into(),
                at_ms: 0,
                comment: None,
            })
        });
        let p = tick_plan(&c, &firing, &mut fired, 400 * min, &|_, _| None);
        assert!(p.outbox.is_empty());
    }

    #[test]
    fn a_silenced_alert_raised_meanwhile_is_sent_once_at_its_new_severity() {
        let text = r#"
[routing]
warning = ["slack"]
critical = ["slack", "hook"]
[[channels]]
name = "slack"
type = "slack"
webhook_url = "http://127.0.0.1:9/slack"
[[channels]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
[[targets]]
name = "web"
url = "http://127.0.0.1:9/health"
[[rules]]
name = "down"
kind = "consecutive"
match = { target = "web" }
fire_after = 1
severity = "warning"
summary = "Web down"
"#;
        let c = config::parse(text, std::path::Path::new("t.toml")).unwrap();
        let (mut engine, _) = Engine::restore(c.rules.clone(), vec![], 0);
        let mut fired = HashMap::new();
        let ts = engine.observe(&fail(1), 1);
        let held = plan(&c, &mut fired, &ts, 1, &|_, _| {
            Some("silence 1".to_string())
        });
        assert!(held.outbox.is_empty(), "held back by the silence");
        // Raised to critical while held back; then the silence ends.
        let mut firing: Vec<AlertState> = engine.alerts().cloned().collect();
        firing[0].severity = crate::config::Severity::Critical;
        let released = tick_plan(&c, &firing, &mut fired, 2, &|_, _| None);
        let raised = upgrade_plan(&c, &firing, &mut fired, 2);
        let sent: Vec<(&str, crate::config::Severity, Option<String>)> = released
            .outbox
            .iter()
            .chain(&raised.outbox)
            .map(|e| {
                (
                    e.channel.as_str(),
                    e.notification.severity,
                    e.notification.note.clone(),
                )
            })
            .collect();
        use crate::config::Severity::Critical;
        assert_eq!(
            sent,
            vec![("slack", Critical, None), ("hook", Critical, None)],
            "one firing each, at the new severity; no second 'raised' message"
        );
    }

    #[test]
    fn label_routes_decide_before_the_severity_lists() {
        let text = r#"
[routing]
critical = ["slack"]
[[routing.route]]
match = { target = "staging" }
channels = ["hook"]
[[routing.route]]
match = { rule = "down", target = "web" }
severity = "warning"
channels = ["hook"]
[[channels]]
name = "slack"
type = "slack"
webhook_url = "http://127.0.0.1:9/slack"
[[channels]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
[[rules]]
name = "down"
kind = "consecutive"
severity = "critical"
summary = "{target} down"
"#;
        let c = config::parse(text, std::path::Path::new("t.toml")).unwrap();
        let rule = &c.rules[0];
        let labels = |t: &str| -> Labels { [("target".to_string(), t.to_string())].into() };
        assert_eq!(
            rule.route(&c.routing, &labels("staging")),
            ["hook".to_string()]
        );
        // The second route is for warnings only; this rule is critical.
        assert_eq!(
            rule.route(&c.routing, &labels("web")),
            ["slack".to_string()]
        );
    }
}
