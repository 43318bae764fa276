//! Slack incoming webhooks: `{"text": ...}`, answered by HTTP 200 `ok`.

use std::time::Duration;

use super::{Delivered, Notification, SendError, post_json};
use crate::config::Secret;

/// Slack truncates text past 40 000 characters and recommends at most 4 000; a long grouped
/// message is cut here, where the cut can be marked.
const MAX_TEXT: usize = 4000;

/// Slack wants `&`, `<` and `>` escaped in message text.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The JSON body sent to the webhook.
pub fn payload(n: &Notification) -> serde_json::Value {
    let mut text = escape(&n.text());
    if text.chars().count() > MAX_TEXT {
        text = text.chars().take(MAX_TEXT - 40).collect();
        // Do not leave half an escape sequence behind.
        if let Some(amp) = text.rfind('&')
            && !text[amp..].contains(';')
        {
            text.truncate(amp);
        }
        text.push_str("\n… (cut; see `sloguard status`)");
    }
    serde_json::json!({ "text": text })
}

pub async fn send(
    client: &reqwest::Client,
    url: &Secret,
    n: &Notification,
    timeout: Duration,
) -> Result<Delivered, SendError> {
    post_json(client, url, &[], &[], &payload(n), timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Severity;
    use crate::notify::{Member, Status};
    use crate::series::Labels;

    fn firing() -> Notification {
        let mut labels = Labels::new();
        labels.insert("target".into(), "segmentation-api".into());
        Notification {
            status: Status::Firing,
            rule: "segmentation_api_slow".into(),
            fingerprint: r#"segmentation_api_slow{target="segmentation-api"}"#.into(),
            severity: Severity::Warning,
            summary: "Segmentation API Slow".into(),
            labels,
            value_text: "probe_duration_seconds: 0.62 (threshold: > 0.5; 5 consecutive samples, fires after 5)".into(),
            reason: Some("the probe took 0.62s".into()),
            note: None,
            started_at_ms: 1_770_388_260_000,
            fired_at_ms: 1_770_388_320_000,
            ended_at_ms: None,
            runbook_url: None,
            dashboard_url: Some("https://posthog.example.com/dashboard/1".into()),
            grouped: Vec::new(),
        }
    }

    #[test]
    fn golden_payload_shaped_like_the_seed_example() {
        assert_eq!(
            payload(&firing()),
            serde_json::json!({
                "text": "⚠️ Segmentation API Slow\nprobe_duration_seconds: 0.62 (threshold: &gt; 0.5; 5 consecutive samples, fires after 5)\nTarget: segmentation-api\nReason: the probe took 0.62s\nTime: 2026-02-06 14:32:00 UTC\nDashboard: https://posthog.example.com/dashboard/1"
            })
        );
    }

    #[test]
    fn a_long_grouped_message_is_cut_within_slacks_limit() {
        let mut n = firing();
        n.grouped = (0..500)
            .map(|i| Member {
                fingerprint: format!("r{{target=\"t{i}\"}}"),
                summary: n.summary.clone(),
                labels: [(
                    "target".to_string(),
                    format!("target-with-a-long-name-{i:04}"),
                )]
                .into(),
                reason: Some("HTTP 503 Service Unavailable & <more>".into()),
            })
            .collect();
        let text = payload(&n)["text"].as_str().unwrap().to_string();
        assert!(text.chars().count() <= MAX_TEXT, "{}", text.chars().count());
        assert!(text.ends_with("… (cut; see `sloguard status`)"));
        assert!(text.starts_with("⚠️ Segmentation API Slow (500 alerts)"));
    }
}
