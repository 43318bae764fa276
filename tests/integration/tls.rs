//! HTTPS probes: certificate days-to-expiry as a series a rule can alert on, and TLS
//! failures quoted as the alert's reason.

use std::time::Duration;

use crate::util::{Daemon, Receiver, TlsTarget, slack_text, tempdir};

fn config(target: &TlsTarget, slack: &Receiver, ca_file: Option<&str>) -> String {
    let ca = ca_file
        .map(|f| format!("ca_file = \"{f}\""))
        .unwrap_or_default();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[routing]
warning = ["slack"]
critical = ["slack"]

[[channels]]
name = "slack"
type = "slack"
webhook_url = "{slack}"

[[targets]]
name = "secure"
url = "{url}"
interval = "1s"
timeout = "2s"
{ca}

[[rules]]
name = "secure_down"
kind = "consecutive"
match = {{ target = "secure" }}
fire_after = 1
severity = "critical"
summary = "{{target}} down"

[[rules]]
name = "certificate_expiring"
kind = "consecutive"
metric = "probe_tls_cert_expiry_days"
condition = "< 14"
fire_after = 1
severity = "warning"
summary = "TLS certificate of {{target}} expires within 14 days"
"#,
        slack = slack.url("/slack"),
        url = target.url(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_close_to_expiry_raises_a_warning_with_the_days_left() {
    let dir = tempdir();
    let target = TlsTarget::start(10).await;
    std::fs::write(dir.path().join("ca.pem"), &target.ca_pem).unwrap();
    let slack = Receiver::start().await;
    let _daemon = Daemon::start(dir.path(), &config(&target, &slack, Some("ca.pem")), &[]).await;

    let got = slack.wait_delivered(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    let text = slack_text(&got[0]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "⚠️ TLS certificate of secure expires within 14 days"
    );
    let re = regex::Regex::new(
        r"^probe_tls_cert_expiry_days: (10|9\.9\d*) \(threshold: < 14; 1 consecutive sample, fires after 1\)$",
    )
    .unwrap();
    assert!(re.is_match(lines[1]), "{text}");
    // The endpoint itself is up: no down alert.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(slack.received().len(), 1, "{:?}", slack.received());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_are_quoted_in_the_alert() {
    // A certificate from an unknown CA.
    let dir = tempdir();
    let target = TlsTarget::start(90).await;
    let slack = Receiver::start().await;
    let _daemon = Daemon::start(dir.path(), &config(&target, &slack, None), &[]).await;
    let got = slack.wait_delivered(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    let text = slack_text(&got[0]);
    assert!(text.starts_with("🔴 CRITICAL: secure down"), "{text}");
    assert!(
        text.contains("Reason: TLS error: invalid peer certificate: UnknownIssuer"),
        "{text}\n{}",
        _daemon.log_text()
    );

    // An expired certificate from a trusted CA.
    let dir = tempdir();
    let target = TlsTarget::start(-1).await;
    std::fs::write(dir.path().join("ca.pem"), &target.ca_pem).unwrap();
    let slack = Receiver::start().await;
    let _daemon = Daemon::start(dir.path(), &config(&target, &slack, Some("ca.pem")), &[]).await;
    let got = slack.wait_delivered(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    let text = slack_text(&got[0]);
    let reason = text
        .lines()
        .find(|l| l.starts_with("Reason: "))
        .unwrap_or_default();
    assert!(
        reason.starts_with("Reason: TLS error: invalid peer certificate: certificate expired"),
        "{text}"
    );
}
