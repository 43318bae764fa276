//! An Alertmanager v2 push (`POST /api/v2/alerts`), for teams that already route with
//! Alertmanager. Like Prometheus, sloguard re-sends a firing alert every `resend_interval`
//! with `endsAt` four intervals ahead, so Alertmanager keeps it open only while sloguard
//! says so; a resolve sends `endsAt` = the resolve time.

use std::time::Duration;

use super::{Delivered, Notification, SendError, Status, post_json};
use crate::clock::now_ms;
use crate::config::Secret;
use crate::format::rfc3339;

/// The JSON array of one `postableAlert`.
pub fn payload(n: &Notification, resend_interval: Duration, now: i64) -> serde_json::Value {
    let mut labels = serde_json::Map::new();
    labels.insert("alertname".into(), n.rule.clone().into());
    labels.insert("severity".into(), n.severity.as_str().into());
    for (k, v) in &n.labels {
        if k != "alertname" && k != "severity" {
            labels.insert(k.clone(), v.clone().into());
        }
    }
    let mut annotations = serde_json::Map::new();
    annotations.insert("summary".into(), n.summary.clone().into());
    annotations.insert("description".into(), n.value_text.clone().into());
    if let Some(r) = &n.reason {
        annotations.insert("reason".into(), r.clone().into());
    }
    if let Some(u) = &n.runbook_url {
        annotations.insert("runbook_url".into(), u.clone().into());
    }
    if let Some(u) = &n.dashboard_url {
        annotations.insert("dashboard_url".into(), u.clone().into());
    }
    let ends = match n.status {
        Status::Resolved => n.ended_at_ms.unwrap_or(now),
        _ => now + 4 * resend_interval.as_millis() as i64,
    };
    let mut alert = serde_json::json!({
        "labels": labels,
        "annotations": annotations,
        "startsAt": rfc3339(n.fired_at_ms),
        "endsAt": rfc3339(ends),
    });
    if let Some(u) = &n.dashboard_url {
        alert["generatorURL"] = u.clone().into();
    }
    serde_json::json!([alert])
}

pub async fn send(
    client: &reqwest::Client,
    base: &url::Url,
    headers: &[(String, Secret)],
    resend_interval: Duration,
    n: &Notification,
    timeout: Duration,
) -> Result<Delivered, SendError> {
    if matches!(n.status, Status::Acknowledged) {
        // Alertmanager has no acknowledgement; nothing to say.
        return Ok(Delivered {
            protocol: "HTTP",
            status: 200,
            body: "acknowledgements are not sent to Alertmanager".into(),
        });
    }
    let mut url = base.clone();
    let path = format!("{}/api/v2/alerts", url.path().trim_end_matches('/'));
    url.set_path(&path);
    let url = Secret::literal(url.as_str());
    post_json(
        client,
        &url,
        headers,
        &[],
        &payload(n, resend_interval, now_ms()),
        timeout,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Severity;
    use crate::series::Labels;

    #[test]
    fn firing_and_resolved_payloads() {
        let mut labels = Labels::new();
        labels.insert("target".into(), "web".into());
        let mut n = Notification {
            status: Status::Firing,
            rule: "web_down".into(),
            fingerprint: r#"web_down{target="web"}"#.into(),
            severity: Severity::Critical,
            summary: "Web down".into(),
            labels,
            value_text: "Consecutive failed probes: 3 (threshold: 3)".into(),
            reason: Some("HTTP 500 Internal Server Error".into()),
            note: None,
            started_at_ms: 1_770_388_260_000,
            fired_at_ms: 1_770_388_320_000,
            ended_at_ms: None,
            runbook_url: None,
            dashboard_url: Some("http://127.0.0.1:9797/".into()),
            grouped: Vec::new(),
        };
        let now = 1_770_388_330_000;
        assert_eq!(
            payload(&n, Duration::from_secs(60), now),
            serde_json::json!([{
                "labels": {"alertname": "web_down", "severity": "critical", "target": "web"},
                "annotations": {
                    "summary": "Web down",
                    "description": "Consecutive failed probes: 3 (threshold: 3)",
                    "reason": "HTTP 500 Internal Server Error",
                    "dashboard_url": "http://127.0.0.1:9797/"
                },
                "startsAt": "2026-02-06T14:32:00.000Z",
                "endsAt": "2026-02-06T14:36:10.000Z",
                "generatorURL": "http://127.0.0.1:9797/"
            }])
        );
        n.status = Status::Resolved;
        n.ended_at_ms = Some(1_770_388_400_000);
        assert_eq!(
            payload(&n, Duration::from_secs(60), now)[0]["endsAt"],
            "2026-02-06T14:33:20.000Z"
        );
    }
}
