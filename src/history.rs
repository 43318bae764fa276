//! Alert history: what happened to each alert, kept in the store for `sloguard history`, the
//! API and the reports: when it fired and resolved, whom it notified on which channel with
//! what result, who acknowledged it, when it escalated or was held back by a silence.

use serde::{Deserialize, Serialize};

use crate::format::rfc3339;
use crate::vocab::Severity;

/// What happened to an alert (or a report). On disk: the same snake_case strings the history
/// has always held (`firing`, `resolved`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The alert fired (`severity` says how loud; `held_back` whether a silence kept it).
    Firing,
    Resolved,
    Acknowledged,
    /// An escalation step sent it to more channels.
    Escalated,
    /// The silence that held back its firing ended, and the firing was sent.
    Released,
    /// Its severity rose while it fired (`severity` is the new one).
    Upgraded,
    /// A channel accepted a notification about it.
    Notified,
    /// A channel refused a notification, or delivery was given up.
    Failed,
    /// A scheduled report was made (or could not be).
    Report,
    /// A kind written by a later release: listed, never acted on.
    #[serde(other)]
    Other,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Firing => "firing",
            EventKind::Resolved => "resolved",
            EventKind::Acknowledged => "acknowledged",
            EventKind::Escalated => "escalated",
            EventKind::Released => "released",
            EventKind::Upgraded => "upgraded",
            EventKind::Notified => "notified",
            EventKind::Failed => "failed",
            EventKind::Report => "report",
            EventKind::Other => "other",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so that `sloguard history`'s `{:<12}` column keeps its width.
        f.pad(self.as_str())
    }
}

/// One history event. On disk (a version byte and this as JSON): renaming a field changes the
/// data file's format; `tests/integration/records.rs` reads events an earlier release wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at_ms: i64,
    /// RFC 3339, for people and JSON readers.
    pub at: String,
    /// The alert's fingerprint.
    pub alert: String,
    pub rule: String,
    pub event: EventKind,
    pub channel: Option<String>,
    pub detail: Option<String>,
    /// Of a `firing` event: the alert's severity then; of an `upgraded` one: the new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Of a `firing` event: the silence, maintenance window or firing dependency that kept it
    /// from being sent. Events written before this field say so only in `detail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_back: Option<String>,
}

impl Event {
    pub fn new(at_ms: i64, alert: &str, rule: &str, event: EventKind) -> Event {
        Event {
            at_ms,
            at: rfc3339(at_ms),
            alert: alert.to_string(),
            rule: rule.to_string(),
            event,
            channel: None,
            detail: None,
            severity: None,
            held_back: None,
        }
    }

    pub fn severity(mut self, severity: Severity) -> Event {
        self.severity = Some(severity);
        self
    }

    /// Records what held the firing back, also in the detail people read.
    pub fn held_back(mut self, why: Option<&str>) -> Event {
        if let Some(why) = why {
            self.held_back = Some(why.to_string());
            let detail = match self.detail.take() {
                Some(d) => format!("{d} (held back: {why})"),
                None => format!("(held back: {why})"),
            };
            self.detail = Some(detail);
        }
        self
    }

    /// What held this firing back, if anything: the field, or for events written before it
    /// existed, the `(held back: …)` at the end of the detail.
    pub fn held_back_by(&self) -> Option<&str> {
        self.held_back.as_deref().or_else(|| {
            let d = self.detail.as_deref()?;
            let start = d.rfind("(held back: ")? + "(held back: ".len();
            d[start..].strip_suffix(')')
        })
    }

    pub fn channel(mut self, channel: &str) -> Event {
        self.channel = Some(channel.to_string());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Event {
        let d: String = detail.into();
        if !d.is_empty() {
            self.detail = Some(d);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_back_reads_the_field_and_the_prose_of_older_events() {
        let e = Event::new(0, "a", "r", EventKind::Firing)
            .detail("HTTP 503")
            .held_back(Some("silence #1 (deploy)"));
        assert_eq!(
            e.detail.as_deref(),
            Some("HTTP 503 (held back: silence #1 (deploy))")
        );
        assert_eq!(e.held_back_by(), Some("silence #1 (deploy)"));
        let old = Event {
            held_back: None,
            ..e.clone()
        };
        assert_eq!(old.held_back_by(), Some("silence #1 (deploy)"));
        let told = Event::new(0, "a", "r", EventKind::Firing).detail("HTTP 503");
        assert_eq!(told.held_back_by(), None);
        let json = r#"{"at_ms":0,"at":"","alert":"a","rule":"r","event":"paused","channel":null,"detail":null}"#;
        let later: Event = serde_json::from_str(json).unwrap();
        assert_eq!(later.event, EventKind::Other);
    }
}
