//! Alert history: what happened to each alert, kept in the store for `sloguard history`, the
//! API and the reports: when it fired and resolved, whom it notified on which channel with
//! what result, who acknowledged it, when it escalated or was held back by a silence.

use serde::{Deserialize, Serialize};

use crate::format::rfc3339;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at_ms: i64,
    /// RFC 3339, for people and JSON readers.
    pub at: String,
    /// The alert's fingerprint.
    pub alert: String,
    pub rule: String,
    /// `firing`, `resolved`, `acknowledged`, `escalated`, `released`, `notified`, `failed`.
    pub event: String,
    pub channel: Option<String>,
    pub detail: Option<String>,
    /// Of a `firing` event: the alert's severity then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
}

impl Event {
    pub fn new(at_ms: i64, alert: &str, rule: &str, event: &str) -> Event {
        Event {
            at_ms,
            at: rfc3339(at_ms),
            alert: alert.to_string(),
            rule: rule.to_string(),
            event: event.to_string(),
            channel: None,
            detail: None,
            severity: None,
        }
    }

    pub fn severity(mut self, severity: crate::config::Severity) -> Event {
        self.severity = Some(severity.to_string());
        self
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
