//! A generic JSON webhook: one POST per notification, any 2xx is success.

use std::time::Duration;

use super::{Delivered, Notification, SendError, post_json};
use crate::config::Secret;
use crate::format::rfc3339;

/// The JSON body; `version` changes when a field changes meaning.
pub fn payload(n: &Notification) -> serde_json::Value {
    serde_json::json!({
        "version": "1",
        "status": n.status.as_str(),
        "rule": n.rule,
        "fingerprint": n.fingerprint,
        "severity": n.severity.as_str(),
        "summary": n.summary,
        "labels": n.labels,
        "value": n.value_text,
        "reason": n.reason,
        "note": n.note,
        "started_at": rfc3339(n.started_at_ms),
        "fired_at": rfc3339(n.fired_at_ms),
        "ended_at": n.ended_at_ms.map(rfc3339),
        "runbook_url": n.runbook_url,
        "dashboard_url": n.dashboard_url,
        "text": n.text(),
        "grouped": n.grouped,
    })
}

pub async fn send(
    client: &reqwest::Client,
    url: &Secret,
    headers: &[(String, Secret)],
    n: &Notification,
    timeout: Duration,
) -> Result<Delivered, SendError> {
    post_json(client, url, headers, &[], &payload(n), timeout).await
}
