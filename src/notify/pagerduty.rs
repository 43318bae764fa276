//! PagerDuty Events API v2: a firing alert triggers, a resolve resolves, both under a
//! `dedup_key` derived from the alert's fingerprint, so repeats and a second sloguard with the
//! same configuration never open a second incident. `test-notify` sends a change event, which
//! shows in PagerDuty without paging anyone.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{Delivered, Notification, SendError, Status, post_json};
use crate::config::{Secret, Severity};
use crate::format::rfc3339;

/// PagerDuty's limits: `summary` ≤ 1024 characters, `dedup_key` ≤ 255.
const MAX_SUMMARY: usize = 1024;
const MAX_DEDUP_KEY: usize = 255;

/// The stable incident key of an alert: its fingerprint, or a hash of it when too long.
pub fn dedup_key(fingerprint: &str) -> String {
    let key = format!("sloguard/{fingerprint}");
    if key.len() <= MAX_DEDUP_KEY {
        return key;
    }
    let hash = Sha256::digest(fingerprint.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sloguard/sha256/{hex}")
}

/// Cuts `text` to at most `max` characters, marking the cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

/// The one-line summary: severity, title, reason and labels.
fn summary(n: &Notification) -> String {
    let mut s = format!("[{}] {}", n.severity.as_str().to_uppercase(), n.summary);
    if let Some(r) = &n.reason {
        s.push_str(&format!(": {r}"));
    }
    if !n.labels.is_empty() {
        let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        s.push_str(&format!(" ({})", labels.join(", ")));
    }
    truncate(&s, MAX_SUMMARY)
}

fn links(n: &Notification) -> Vec<serde_json::Value> {
    let mut links = Vec::new();
    if let Some(u) = &n.runbook_url {
        links.push(serde_json::json!({ "href": u, "text": "Runbook" }));
    }
    if let Some(u) = &n.dashboard_url {
        links.push(serde_json::json!({ "href": u, "text": "Dashboard" }));
    }
    links
}

/// The event body and the path it goes to (`/v2/enqueue` or `/v2/change/enqueue`).
pub fn payload(
    routing_key: &str,
    source: &str,
    n: &Notification,
) -> (serde_json::Value, &'static str) {
    let details = serde_json::json!({
        "labels": n.labels,
        "value": n.value_text,
        "reason": n.reason,
        "started_at": rfc3339(n.started_at_ms),
        "fired_at": rfc3339(n.fired_at_ms),
        "rule": n.rule,
    });
    match n.status {
        Status::Firing => (
            serde_json::json!({
                "routing_key": routing_key,
                "event_action": "trigger",
                "dedup_key": dedup_key(&n.fingerprint),
                "payload": {
                    "summary": summary(n),
                    "source": source,
                    "severity": severity(n.severity),
                    "timestamp": rfc3339(n.fired_at_ms),
                    "component": n.labels.get("target"),
                    "group": n.rule,
                    "class": n.rule,
                    "custom_details": details,
                },
                "links": links(n),
                "client": "sloguard",
                "client_url": n.dashboard_url,
            }),
            "/v2/enqueue",
        ),
        Status::Resolved | Status::Acknowledged => (
            serde_json::json!({
                "routing_key": routing_key,
                "event_action": if n.status == Status::Resolved { "resolve" } else { "acknowledge" },
                "dedup_key": dedup_key(&n.fingerprint),
            }),
            "/v2/enqueue",
        ),
        Status::Test | Status::Report => (
            serde_json::json!({
                "routing_key": routing_key,
                "payload": {
                    "summary": truncate(&n.summary, MAX_SUMMARY),
                    "source": source,
                    "timestamp": rfc3339(n.fired_at_ms),
                    "custom_details": { "message": n.value_text },
                },
                "links": links(n),
            }),
            "/v2/change/enqueue",
        ),
    }
}

pub async fn send(
    client: &reqwest::Client,
    events_url: &url::Url,
    routing_key: &Secret,
    source: &str,
    n: &Notification,
    timeout: Duration,
) -> Result<Delivered, SendError> {
    let (body, path) = payload(routing_key.expose(), source, n);
    let mut url = events_url.clone();
    url.set_path(path);
    // The key travels in the body; an answer that echoes it is scrubbed of it.
    let url = Secret::literal(url.as_str());
    post_json(client, &url, &[], &[routing_key], &body, timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::Labels;

    fn firing() -> Notification {
        let mut labels = Labels::new();
        labels.insert("target".into(), "segmentation-api".into());
        Notification {
            status: Status::Firing,
            rule: "segmentation_api_down".into(),
            fingerprint: r#"segmentation_api_down{target="segmentation-api"}"#.into(),
            severity: Severity::Critical,
            summary: "Segmentation API down".into(),
            labels,
            value_text: "Consecutive failed probes: 5 (threshold: 5)".into(),
            reason: Some("HTTP 503 Service Unavailable".into()),
            note: None,
            started_at_ms: 1_770_388_260_000,
            fired_at_ms: 1_770_388_320_000,
            ended_at_ms: None,
            runbook_url: Some("https://docs.example.com/runbooks/segmentation-api".into()),
            dashboard_url: Some("http://127.0.0.1:9797/".into()),
            grouped: Vec::new(),
        }
    }

    #[test]
    fn trigger_payload_matches_the_golden_json() {
        let (body, path) = payload("R0UTINGKEY0000000000000000000001", "ops-box", &firing());
        assert_eq!(path, "/v2/enqueue");
        let golden = serde_json::json!({
            "routing_key": "R0UTINGKEY0000000000000000000001",
            "event_action": "trigger",
            "dedup_key": "sloguard/segmentation_api_down{target=\"segmentation-api\"}",
            "payload": {
                "summary": "[CRITICAL] Segmentation API down: HTTP 503 Service Unavailable (target=segmentation-api)",
                "source": "ops-box",
                "severity": "critical",
                "timestamp": "2026-02-06T14:32:00.000Z",
                "component": "segmentation-api",
                "group": "segmentation_api_down",
                "class": "segmentation_api_down",
                "custom_details": {
                    "labels": {"target": "segmentation-api"},
                    "value": "Consecutive failed probes: 5 (threshold: 5)",
                    "reason": "HTTP 503 Service Unavailable",
                    "started_at": "2026-02-06T14:31:00.000Z",
                    "fired_at": "2026-02-06T14:32:00.000Z",
                    "rule": "segmentation_api_down"
                }
            },
            "links": [
                {"href": "https://docs.example.com/runbooks/segmentation-api", "text": "Runbook"},
                {"href": "http://127.0.0.1:9797/", "text": "Dashboard"}
            ],
            "client": "sloguard",
            "client_url": "http://127.0.0.1:9797/"
        });
        assert_eq!(body, golden);
    }

    #[test]
    fn resolve_carries_only_the_key_and_the_action() {
        let mut n = firing();
        n.status = Status::Resolved;
        let (body, _) = payload("K", "ops-box", &n);
        assert_eq!(
            body,
            serde_json::json!({
                "routing_key": "K",
                "event_action": "resolve",
                "dedup_key": "sloguard/segmentation_api_down{target=\"segmentation-api\"}"
            })
        );
    }

    #[test]
    fn limits_are_kept() {
        let mut n = firing();
        n.summary = "x".repeat(5000);
        n.fingerprint = format!("rule{{target=\"{}\"}}", "y".repeat(400));
        let (body, _) = payload("K", "ops-box", &n);
        let summary = body["payload"]["summary"].as_str().unwrap();
        assert_eq!(summary.chars().count(), 1024);
        assert!(summary.ends_with('…'));
        let key = body["dedup_key"].as_str().unwrap();
        assert!(key.len() <= 255, "{}", key.len());
        // Stable: the same fingerprint always gives the same key.
        assert_eq!(key, dedup_key(&n.fingerprint));
        assert!(key.starts_with("sloguard/sha256/"));
    }
}
