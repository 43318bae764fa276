//! What a notification says: its value in words, the rule's summary with its labels filled
//! in, the reason and the links.

use crate::config::{Rule, RuleKind};
use crate::format::{client_text, format_value};
use crate::notify::{Notification, Status};
use crate::rules::{Transition, TransitionKind};
use crate::series::Labels;

/// Fills `{label}` placeholders of a rule's summary.
fn render_summary(summary: &str, labels: &Labels) -> String {
    let mut out = summary.to_string();
    for (k, v) in labels {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// The notification a firing or resolved transition owes.
pub fn notification(rule: &Rule, t: &Transition) -> Notification {
    let a = &t.alert;
    let value_text = match &rule.kind {
        RuleKind::Consecutive(c) if c.metric == "probe_up" && c.condition.to_string() == "< 1" => {
            format!(
                "Consecutive failed probes: {} (threshold: {})",
                a.breaches, c.fire_after
            )
        }
        RuleKind::Consecutive(c) => format!(
            "{}: {} (threshold: {}; {} consecutive sample{}, fires after {})",
            c.metric,
            format_value(a.value),
            c.condition,
            a.breaches,
            if a.breaches == 1 { "" } else { "s" },
            c.fire_after
        ),
        RuleKind::Window(th) => {
            use crate::config::WindowInput;
            let hold = if th.hold.is_zero() {
                String::new()
            } else {
                format!(", for {}", crate::format::duration_words(th.hold))
            };
            let d = crate::format::duration_words;
            match &th.input {
                WindowInput::Series {
                    metric,
                    agg,
                    window,
                    ..
                } => format!(
                    "{} of {metric} over {}: {} (threshold: {}{hold})",
                    crate::query::agg_name(*agg),
                    d(*window),
                    format_value(a.value),
                    th.condition,
                ),
                WindowInput::Ratio {
                    numerator,
                    denominator,
                    window,
                    ..
                } => format!(
                    "{} / {} over {}: {} (threshold: {}{hold})",
                    numerator.0,
                    denominator.0,
                    d(*window),
                    format_value(a.value),
                    th.condition,
                ),
                WindowInput::Growth {
                    metric,
                    window,
                    per_sample,
                    ..
                } => format!(
                    "{metric} grew by {} {} (threshold: {}{hold})",
                    format_value(a.value),
                    if *per_sample {
                        "since its previous point".to_string()
                    } else {
                        format!("over {}", d(*window))
                    },
                    th.condition,
                ),
                WindowInput::Stale {
                    metric, max_age, ..
                } => format!("No new point of {metric} for more than {}", d(*max_age)),
                WindowInput::Slo {
                    objective, period, ..
                } => format!(
                    "SLO {}% over {}: the error budget burns too fast",
                    format_value(objective * 100.0),
                    d(*period)
                ),
                WindowInput::NewErrors { quiet, .. } => format!(
                    "A new error type, not seen in the {} before: {}",
                    d(*quiet),
                    a.labels.get("pattern").map(String::as_str).unwrap_or("")
                ),
            }
        }
    };
    let resolved = t.kind == TransitionKind::Resolved;
    // What clients of a public endpoint reported is quoted cut, and said to be theirs.
    let (summary, labels) = if rule.client_reported {
        let mut labels: Labels = a
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), client_text(v)))
            .collect();
        let summary = format!(
            "{} (client-reported data)",
            render_summary(&rule.summary, &labels)
        );
        labels.insert("client_reported".into(), "true".into());
        (summary, labels)
    } else {
        (render_summary(&rule.summary, &a.labels), a.labels.clone())
    };
    Notification {
        status: if resolved {
            Status::Resolved
        } else {
            Status::Firing
        },
        rule: rule.name.clone(),
        fingerprint: a.fingerprint(),
        severity: a.severity,
        summary,
        labels,
        value_text,
        reason: a.note.clone(),
        note: t.reason.clone(),
        started_at_ms: a.since_ms,
        fired_at_ms: a.fired_at_ms.unwrap_or(t.at_ms),
        ended_at_ms: resolved.then_some(t.at_ms),
        runbook_url: rule.runbook_url.clone(),
        dashboard_url: rule.dashboard_url.clone(),
        grouped: Vec::new(),
    }
}
