//! Notifications: what an alert says, how each channel renders and sends it, and the durable
//! outbox that delivers it.
//!
//! Only this module sends messages. A channel send says whether a failure is worth retrying
//! ([`SendError::Retryable`]: 5xx, 408, 429, timeouts, connection failures) or is a
//! configuration problem ([`SendError::Permanent`]: other 4xx); the outbox does the retrying.
//! Channel URLs are secrets: no error or log line built here contains one.

pub mod alertmanager;
mod channel;
pub mod email;
pub mod outbox;
pub mod pagerduty;
pub mod slack;
pub mod webhook;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::{Channel, ChannelKind, Secret, Severity};
use crate::format::{format_span, format_time};
use crate::series::Labels;

/// What a notification announces. On disk: inside notifications, as these snake_case names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Firing,
    Resolved,
    /// Sent by `sloguard test-notify`.
    Test,
    /// Someone acknowledged the alert (`sloguard ack`); only PagerDuty is told.
    Acknowledged,
    /// A scheduled report (`[[reports]]`), mailed; the outbox entry carries it.
    Report,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
            Status::Test => "test",
            Status::Acknowledged => "acknowledged",
            Status::Report => "report",
        }
    }
}

/// Everything a channel needs to render one message about one alert. On disk: inside outbox
/// entries and alert records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub status: Status,
    pub rule: String,
    /// The alert's stable identity: rule name and labels.
    pub fingerprint: String,
    pub severity: Severity,
    /// The rule's summary with `{label}` placeholders filled in.
    pub summary: String,
    pub labels: Labels,
    /// The value against the threshold, e.g. `Consecutive failed probes: 3 (threshold: 3)`.
    pub value_text: String,
    /// The latest failure reason, e.g. `HTTP 503 Service Unavailable`.
    pub reason: Option<String>,
    /// Why the alert resolved when it was not the data (a reload removed the rule).
    pub note: Option<String>,
    /// The first breaching sample.
    pub started_at_ms: i64,
    /// When the alert fired.
    pub fired_at_ms: i64,
    /// When it resolved.
    pub ended_at_ms: Option<i64>,
    pub runbook_url: Option<String>,
    pub dashboard_url: Option<String>,
    /// When several alerts of one rule go out as one message: every one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grouped: Vec<Member>,
}

/// One alert in a grouped message. On disk: inside notifications.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub fingerprint: String,
    pub summary: String,
    pub labels: Labels,
    pub reason: Option<String>,
}

impl Member {
    pub fn of(n: &Notification) -> Member {
        Member {
            fingerprint: n.fingerprint.clone(),
            summary: n.summary.clone(),
            labels: n.labels.clone(),
            reason: n.reason.clone(),
        }
    }
}

impl Notification {
    /// A message for `sloguard test-notify`.
    pub fn test(channel: &str, now_ms: i64) -> Notification {
        Notification {
            status: Status::Test,
            rule: "test-notify".into(),
            fingerprint: "test-notify".into(),
            severity: Severity::Info,
            summary: format!("Test notification from sloguard to channel `{channel}`"),
            labels: Labels::new(),
            value_text: "If you can read this, the channel works.".into(),
            reason: None,
            note: None,
            started_at_ms: now_ms,
            fired_at_ms: now_ms,
            ended_at_ms: None,
            runbook_url: None,
            dashboard_url: None,
            grouped: Vec::new(),
        }
    }

    /// The outbox's record of a report mail: `report:NAME` is its rule and fingerprint.
    pub fn report(name: &str, subject: &str, now_ms: i64) -> Notification {
        Notification {
            status: Status::Report,
            rule: format!("report:{name}"),
            fingerprint: format!("report:{name}"),
            summary: subject.to_string(),
            value_text: String::new(),
            ..Notification::test("", now_ms)
        }
    }

    /// The message as plain text, shaped like the seed's Slack examples. Every channel that
    /// carries free text uses it.
    pub fn text(&self) -> String {
        let mut lines = Vec::new();
        let title = match (self.status, self.severity) {
            (Status::Resolved, _) => format!("✅ RESOLVED: {}", self.summary),
            (Status::Test, _) => format!("🧪 TEST: {}", self.summary),
            (Status::Acknowledged, _) => format!("👀 ACKNOWLEDGED: {}", self.summary),
            (Status::Report, _) => format!("📊 {}", self.summary),
            (Status::Firing, Severity::Critical) => format!("🔴 CRITICAL: {}", self.summary),
            (Status::Firing, Severity::Warning) => format!("⚠️ {}", self.summary),
            (Status::Firing, Severity::Info) => format!("ℹ️ {}", self.summary),
        };
        if !self.grouped.is_empty() {
            // One title for all: the shared summary, or the rule's name when the summaries
            // differ (they name their labels).
            let shared = self.grouped.iter().all(|m| m.summary == self.summary);
            let title = if shared {
                title
            } else {
                title.replacen(&self.summary, &self.rule, 1)
            };
            lines.push(format!("{title} ({} alerts)", self.grouped.len()));
            for m in &self.grouped {
                let labels: Vec<String> =
                    m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                match &m.reason {
                    Some(r) => lines.push(format!("- {}: {r}", labels.join(", "))),
                    None => lines.push(format!("- {}", labels.join(", "))),
                }
            }
            lines.push(format!(
                "Time: {}",
                format_time(self.ended_at_ms.unwrap_or(self.fired_at_ms))
            ));
            if let Some(u) = &self.dashboard_url {
                lines.push(format!("Dashboard: {u}"));
            }
            if let Some(u) = &self.runbook_url {
                lines.push(format!("Runbook: {u}"));
            }
            return lines.join("\n");
        }
        lines.push(title);
        match self.status {
            Status::Resolved => {
                let end = self.ended_at_ms.unwrap_or(self.fired_at_ms);
                lines.push(format!(
                    "Lasted: {} (since {})",
                    format_span(end - self.started_at_ms),
                    format_time(self.started_at_ms)
                ));
            }
            _ => lines.push(self.value_text.clone()),
        }
        for (k, v) in &self.labels {
            lines.push(format!("{}: {v}", label_title(k)));
        }
        match (self.status, &self.reason) {
            (Status::Resolved, Some(r)) => lines.push(format!("Last failure: {r}")),
            (_, Some(r)) => lines.push(format!("Reason: {r}")),
            _ => {}
        }
        if let Some(note) = &self.note {
            lines.push(format!("Note: {note}"));
        }
        let at = match self.status {
            Status::Resolved => self.ended_at_ms.unwrap_or(self.fired_at_ms),
            _ => self.fired_at_ms,
        };
        lines.push(format!("Time: {}", format_time(at)));
        if let Some(u) = &self.dashboard_url {
            lines.push(format!("Dashboard: {u}"));
        }
        if let Some(u) = &self.runbook_url {
            lines.push(format!("Runbook: {u}"));
        }
        lines.join("\n")
    }
}

/// `target` → `Target`, `query_name` → `Query name`.
fn label_title(key: &str) -> String {
    let mut s = key.replace('_', " ");
    if let Some(first) = s.get(0..1) {
        let up = first.to_ascii_uppercase();
        s.replace_range(0..1, &up);
    }
    s
}

/// What a channel answered to a successful send.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    /// `HTTP` or `SMTP`.
    pub protocol: &'static str,
    pub status: u16,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    /// Worth retrying later.
    #[error("{message}")]
    Retryable {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Retrying will not help; the channel's configuration needs a fix.
    #[error("{message}")]
    Permanent { message: String },
}

/// Sends one notification to one channel.
pub async fn send(
    client: &reqwest::Client,
    channel: &Channel,
    n: &Notification,
    timeout: Duration,
) -> Result<Delivered, SendError> {
    match &channel.kind {
        ChannelKind::Slack { webhook_url } => slack::send(client, webhook_url, n, timeout).await,
        ChannelKind::Webhook { url, headers } => {
            webhook::send(client, url, headers, n, timeout).await
        }
        ChannelKind::Email(cfg) => email::send(cfg, n, timeout).await,
        ChannelKind::Alertmanager {
            url,
            headers,
            resend_interval,
        } => alertmanager::send(client, url, headers, *resend_interval, n, timeout).await,
        ChannelKind::PagerDuty {
            routing_key,
            events_url,
            source,
        } => pagerduty::send(client, events_url, routing_key, source, n, timeout).await,
    }
}

/// The longest response body we read from a channel, to quote in errors.
const MAX_ANSWER: usize = 4096;

/// POSTs `body` as JSON and classifies the answer.
pub(crate) async fn post_json(
    client: &reqwest::Client,
    url: &Secret,
    headers: &[(String, Secret)],
    other_secrets: &[&Secret],
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<Delivered, SendError> {
    let mut req = client.post(url.expose()).timeout(timeout).json(body);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.expose());
    }
    let resp = req.send().await.map_err(|e| classify_error(e, timeout))?;
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, Utc::now()));
    let text = scrub(&read_limited(resp).await, url, headers, other_secrets);
    let code = status.as_u16();
    let quoted = if text.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", text.trim())
    };
    if status.is_success() {
        Ok(Delivered {
            protocol: "HTTP",
            status: code,
            body: text,
        })
    } else if code == 429 || code == 408 || status.is_server_error() {
        Err(SendError::Retryable {
            message: format!("HTTP {code}{quoted}"),
            retry_after,
        })
    } else {
        Err(SendError::Permanent {
            message: format!("HTTP {code}{quoted}"),
        })
    }
}

/// Removes the channel's secrets from its answer before anyone quotes it: a receiver that
/// echoes the request would otherwise put the URL or a token into our logs.
fn scrub(text: &str, url: &Secret, headers: &[(String, Secret)], others: &[&Secret]) -> String {
    let mut secrets: Vec<String> = vec![url.expose().to_string()];
    if let Ok(u) = url::Url::parse(url.expose()) {
        // Slack's token is the URL's path; an echo may show only that.
        secrets.push(u.path().to_string());
        if let Some(q) = u.query() {
            secrets.push(q.to_string());
        }
    }
    secrets.extend(headers.iter().map(|(_, v)| v.expose().to_string()));
    secrets.extend(others.iter().map(|v| v.expose().to_string()));
    // An echo may quote a secret as a JSON string (`\/` for `/` by some encoders, `\"` …)
    // or percent-encoded (a URL or form field).
    let mut forms: Vec<String> = Vec::new();
    for s in secrets.into_iter().filter(|s| s.len() >= 4) {
        let json = serde_json::to_string(&s).unwrap_or_default();
        let json = json.trim_matches('"').to_string();
        let percent: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
        forms.push(json.replace('/', "\\/"));
        forms.push(json);
        forms.push(percent.replace('+', "%20"));
        forms.push(percent);
        forms.push(s);
    }
    // Longest first, so that no part of a longer form is left behind.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    let mut out = text.to_string();
    for f in forms {
        out = out.replace(&f, "<redacted>");
    }
    out
}

async fn read_limited(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_ANSWER.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= MAX_ANSWER {
            break;
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Describes a transport failure without the URL (it may be a secret).
pub(crate) fn classify_error(e: reqwest::Error, timeout: Duration) -> SendError {
    let message = if e.is_timeout() {
        format!("timed out after {}", humantime::format_duration(timeout))
    } else {
        crate::format::describe_transport_error(&e)
    };
    if e.is_builder() {
        SendError::Permanent { message }
    } else {
        SendError::Retryable {
            message,
            retry_after: None,
        }
    }
}

/// `Retry-After` is either delay-seconds or an HTTP date; either way at most 24 hours.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(24 * 3600)));
    }
    let when = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some(
        (when - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(24 * 3600)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = DateTime::parse_from_rfc3339("2026-02-06T14:32:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Fri, 06 Feb 2026 14:32:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn answers_are_scrubbed_of_the_channel_secrets() {
        let url = Secret::from_text("https://hooks.example/services/T0/B0/TOKEN123").unwrap();
        let headers = vec![(
            "Authorization".to_string(),
            Secret::from_text("Bearer abc123").unwrap(),
        )];
        let echo = "got POST /services/T0/B0/TOKEN123 with Authorization: Bearer abc123 from https://hooks.example/services/T0/B0/TOKEN123";
        assert_eq!(
            scrub(echo, &url, &headers, &[]),
            "got POST <redacted> with Authorization: <redacted> from <redacted>"
        );
        // Quoted back as JSON, with `/` escaped, and percent-encoded.
        let json = r#"{"url":"https:\/\/hooks.example\/services\/T0\/B0\/TOKEN123","auth":"Bearer abc123"}"#;
        assert_eq!(
            scrub(json, &url, &headers, &[]),
            r#"{"url":"<redacted>","auth":"<redacted>"}"#
        );
        let form = "next=https%3A%2F%2Fhooks.example%2Fservices%2FT0%2FB0%2FTOKEN123&a=Bearer%20abc123&b=Bearer+abc123";
        assert_eq!(
            scrub(form, &url, &headers, &[]),
            "next=<redacted>&a=<redacted>&b=<redacted>"
        );
    }

    #[test]
    fn spans_and_times() {
        assert_eq!(format_span(72_400), "1m 12s");
        assert_eq!(format_time(1_770_388_320_000), "2026-02-06 14:32:00 UTC");
        assert_eq!(label_title("query_name"), "Query name");
    }
}
