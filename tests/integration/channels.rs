//! Email through a real SMTP server, and PagerDuty events to a local stand-in, for the seed's
//! CRITICAL routing: Slack + email + PagerDuty.

use std::time::Duration;

use mail_parser::MessageParser;

use crate::util::{Daemon, Receiver, SmtpServer, Target, slack_text, tempdir};

fn config(target: &Target, slack: &Receiver, smtp_port: u16, pd: &Receiver) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[outbox]
initial_backoff = "200ms"

[routing]
warning = ["slack"]
critical = ["slack", "email", "pagerduty"]

[[channels]]
name = "slack"
type = "slack"
webhook_url = "{slack}"

[[channels]]
name = "email"
type = "email"
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
tls = "none"
from = "sloguard <alerts@example.com>"
to = ["engineering@example.com", "oncall@example.com"]

[[channels]]
name = "pagerduty"
type = "pagerduty"
routing_key = "env:PD_KEY"
events_url = "{pd}"
source = "ops-box"

[[targets]]
name = "web"
url = "{url}"
interval = "300ms"
timeout = "1s"

[[rules]]
name = "web_down"
kind = "consecutive"
match = {{ target = "web" }}
fire_after = 2
severity = "critical"
summary = "Web down"
runbook_url = "https://runbooks.example.com/web-down"
"#,
        slack = slack.url("/slack"),
        pd = pd.url(""),
        url = target.url(),
    )
}

const PD_KEY: &str = "R0UTINGKEY0000000000000000000042";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_alert_reaches_slack_email_and_pagerduty_and_resolves_on_each() {
    let dir = tempdir();
    let smtp = SmtpServer::start(dir.path()).await;
    let mut target = Target::start().await;
    let slack = Receiver::start().await;
    let pd = Receiver::start().await;
    pd.set_default(202);
    let cfg = config(&target, &slack, smtp.port, &pd);
    let daemon = Daemon::start(dir.path(), &cfg, &[("PD_KEY", PD_KEY)]).await;

    target.answer(503).await;
    assert_eq!(
        slack.wait_delivered(1, Duration::from_secs(10)).await.len(),
        1
    );
    let mails = smtp.wait_messages(1, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 1, "log:\n{}", daemon.log_text());
    let mail = MessageParser::default().parse(&mails[0]).unwrap();
    assert_eq!(mail.subject(), Some("[CRITICAL] Web down"));
    let to: Vec<&str> = mail
        .to()
        .unwrap()
        .iter()
        .filter_map(|a| a.address())
        .collect();
    assert_eq!(to, vec!["engineering@example.com", "oncall@example.com"]);
    let raw = String::from_utf8_lossy(&mails[0]);
    assert!(
        raw.contains("X-RcptTo: engineering@example.com, oncall@example.com"),
        "{raw}"
    );
    let text = mail.body_text(0).unwrap();
    assert_eq!(text.lines().next(), Some("🔴 CRITICAL: Web down"));
    assert!(
        text.contains("Reason: HTTP 503 Service Unavailable"),
        "{text}"
    );
    let html = mail.body_html(0).unwrap();
    assert!(html.contains("<h2>🔴 CRITICAL: Web down</h2>"), "{html}");
    assert!(
        html.contains("Runbook: <a href=\"https://runbooks.example.com/web-down\">"),
        "{html}"
    );

    let events = pd.wait_delivered(1, Duration::from_secs(10)).await;
    assert_eq!(events.len(), 1);
    let trigger = &events[0].body;
    assert_eq!(trigger["routing_key"], PD_KEY);
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], r#"sloguard/web_down{target="web"}"#);
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["source"], "ops-box");
    assert_eq!(
        trigger["payload"]["summary"],
        "[CRITICAL] Web down: HTTP 503 Service Unavailable (target=web)"
    );

    target.answer(200).await;
    assert!(
        slack_text(&slack.wait_delivered(2, Duration::from_secs(10)).await[1])
            .starts_with("✅ RESOLVED: Web down")
    );
    let mails = smtp.wait_messages(2, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 2);
    let mut subjects: Vec<String> = mails
        .iter()
        .map(|m| {
            MessageParser::default()
                .parse(m)
                .unwrap()
                .subject()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    subjects.sort();
    assert_eq!(subjects, vec!["[CRITICAL] Web down", "[RESOLVED] Web down"]);
    let events = pd.wait_delivered(2, Duration::from_secs(10)).await;
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[1].body,
        serde_json::json!({
            "routing_key": PD_KEY,
            "event_action": "resolve",
            "dedup_key": r#"sloguard/web_down{target="web"}"#,
        })
    );
    assert!(
        !daemon.log_text().contains(PD_KEY),
        "the routing key was logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_notify_sends_mail_and_a_pagerduty_change_event_that_pages_no_one() {
    let dir = tempdir();
    let smtp = SmtpServer::start(dir.path()).await;
    let target = Target::start().await;
    let slack = Receiver::start().await;
    let pd = Receiver::start().await;
    pd.set_default(202);
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config(&target, &slack, smtp.port, &pd)).unwrap();
    let env = [("PD_KEY", PD_KEY)];
    let out = crate::util::sloguard(
        &[
            "test-notify",
            "--config",
            path.to_str().unwrap(),
            "--channel",
            "email",
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with("email (email): delivered; the channel answered SMTP 250")
    );
    let mails = smtp.wait_messages(1, Duration::from_secs(5)).await;
    let mail = MessageParser::default().parse(&mails[0]).unwrap();
    assert_eq!(
        mail.subject(),
        Some("[TEST] Test notification from sloguard to channel `email`")
    );

    let out = crate::util::sloguard(
        &[
            "test-notify",
            "--config",
            path.to_str().unwrap(),
            "--channel",
            "pagerduty",
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = pd.received();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].body.get("event_action").is_none(),
        "{:?}",
        got[0].body
    );
    assert_eq!(got[0].body["routing_key"], PD_KEY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_gets_the_alert_re_sent_while_firing_and_ended_on_resolve() {
    let dir = tempdir();
    let mut target = Target::start().await;
    let am = Receiver::start().await;
    let cfg = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[routing]
critical = ["alertmanager"]

[[channels]]
name = "alertmanager"
type = "alertmanager"
url = "{am}"
resend_interval = "1s"

[[targets]]
name = "web"
url = "{url}"
interval = "300ms"

[[rules]]
name = "web_down"
kind = "consecutive"
fire_after = 2
severity = "critical"
summary = "Web down"
"#,
        am = am.url(""),
        url = target.url()
    );
    let _daemon = Daemon::start(dir.path(), &cfg, &[]).await;
    target.answer(500).await;
    let got = am.wait_delivered(3, Duration::from_secs(10)).await;
    assert!(got.len() >= 3, "{got:?}");
    let alert = &got[0].body[0];
    assert_eq!(alert["labels"]["alertname"], "web_down");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["target"], "web");
    assert_eq!(alert["annotations"]["summary"], "Web down");
    // The latest re-send, at most a second old, keeps the alert open four intervals ahead.
    let latest = am.received().last().unwrap().body[0].clone();
    let ends = chrono::DateTime::parse_from_rfc3339(latest["endsAt"].as_str().unwrap()).unwrap();
    let now = chrono::Utc::now();
    assert!(
        ends > now + chrono::Duration::seconds(2),
        "endsAt {ends} is not ahead of {now}"
    );
    // Every re-send is the same alert.
    assert!(
        got.iter()
            .all(|r| r.body[0]["startsAt"] == alert["startsAt"])
    );

    target.answer(200).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let resolved = loop {
        let last = am.received().last().cloned().unwrap();
        let ends =
            chrono::DateTime::parse_from_rfc3339(last.body[0]["endsAt"].as_str().unwrap()).unwrap();
        if ends <= chrono::Utc::now() {
            break last;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no resolve with endsAt in the past"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(resolved.body[0]["labels"]["alertname"], "web_down");
    let count = am.received().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(am.received().len(), count, "re-sent after the resolve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_targets_failing_together_make_one_slack_message() {
    let dir = tempdir();
    let mut target = Target::start().await;
    let slack = Receiver::start().await;
    let mut cfg = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[routing]
critical = ["slack"]
group_wait = "3s"

[[channels]]
name = "slack"
type = "slack"
webhook_url = "{slack}"

[[rules]]
name = "down"
kind = "consecutive"
fire_after = 1
severity = "critical"
summary = "Endpoints down"
runbook_url = "https://runbooks.example.com/down"
"#,
        slack = slack.url("/slack")
    );
    for i in 0..20 {
        cfg.push_str(&format!(
            "[[targets]]\nname = \"web-{i:02}\"\nurl = \"{}\"\ninterval = \"300ms\"\n",
            target.url()
        ));
    }
    let daemon = Daemon::start(dir.path(), &cfg, &[]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    target.answer(503).await;
    let got = slack.wait_delivered(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "log:\n{}", daemon.log_text());
    let text = slack_text(&got[0]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "🔴 CRITICAL: Endpoints down (20 alerts)",
        "{text}"
    );
    let members: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("- target="))
        .collect();
    assert_eq!(members.len(), 20, "{text}");
    assert!(
        members.contains(&"- target=web-07: HTTP 503 Service Unavailable"),
        "{text}"
    );
    assert_eq!(
        lines.last(),
        Some(&"Runbook: https://runbooks.example.com/down")
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        slack.received().len(),
        1,
        "more than one message for one outage"
    );

    target.answer(200).await;
    let got = slack.wait_delivered(2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2);
    assert!(slack_text(&got[1]).starts_with("✅ RESOLVED: Endpoints down (20 alerts)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_with_one_config_use_the_same_pagerduty_dedup_key() {
    let (a, b) = (tempdir(), tempdir());
    let mut target = Target::start().await;
    let pd = Receiver::start().await;
    pd.set_default(202);
    let cfg = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[routing]
critical = ["pagerduty"]

[[channels]]
name = "pagerduty"
type = "pagerduty"
routing_key = "R0UTINGKEY0000000000000000000042"
events_url = "{pd}"

[[targets]]
name = "web"
url = "{url}"
interval = "300ms"

[[rules]]
name = "web_down"
kind = "consecutive"
fire_after = 2
severity = "critical"
summary = "Web down"
"#,
        pd = pd.url(""),
        url = target.url()
    );
    let _first = Daemon::start(a.path(), &cfg, &[]).await;
    let _second = Daemon::start(b.path(), &cfg, &[]).await;
    target.answer(500).await;
    let events = pd.wait_delivered(2, Duration::from_secs(10)).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].body["event_action"], "trigger");
    assert_eq!(events[1].body["event_action"], "trigger");
    // PagerDuty folds the second trigger into the first incident.
    assert_eq!(events[0].body["dedup_key"], events[1].body["dedup_key"]);
    assert_eq!(
        events[0].body["dedup_key"],
        r#"sloguard/web_down{target="web"}"#
    );
}
