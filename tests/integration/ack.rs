//! `sloguard status` and `sloguard ack` against a running daemon's HTTP API: the alert is
//! listed, acknowledged by name, the PagerDuty incident acknowledged, and the
//! acknowledgement kept across a restart.

use std::time::Duration;

use crate::util::{Daemon, Receiver, Target, free_port, slack_text, sloguard, tempdir};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_lists_acknowledges_and_tells_pagerduty() {
    let dir = tempdir();
    let mut target = Target::start().await;
    let slack = Receiver::start().await;
    let pd = Receiver::start().await;
    pd.set_default(202);
    let port = free_port();
    let cfg = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
token = "env:API_TOKEN"

[routing]
critical = ["slack", "pagerduty"]

[[channels]]
name = "slack"
type = "slack"
webhook_url = "{slack}"

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
summary = "{{target}} down"
"#,
        slack = slack.url("/slack"),
        pd = pd.url(""),
        url = target.url()
    );
    let env = [("API_TOKEN", TOKEN)];
    let mut daemon = Daemon::start(dir.path(), &cfg, &env).await;
    let config = daemon.config.to_str().unwrap().to_string();

    let out = sloguard(&["status", "--config", &config], &env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "no pending or firing alerts\n"
    );

    target.answer(500).await;
    assert_eq!(pd.wait_delivered(1, Duration::from_secs(10)).await.len(), 1);
    let out = sloguard(&["status", "--config", &config, "--json"], &env);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["fingerprint"], r#"web_down{target="web"}"#);
    assert_eq!(listed[0]["status"], "firing");
    assert_eq!(listed[0]["reason"], "HTTP 500 Internal Server Error");
    assert!(listed[0]["acknowledged_by"].is_null());

    // Without the token: refused, and nothing is acknowledged.
    let out = sloguard(
        &["ack", "web_down", "--by", "mallory", "--config", &config],
        &[("API_TOKEN", "wrong-token-of-enough-length")],
    );
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: missing or wrong bearer token\n"
    );
    let out = sloguard(
        &[
            "ack",
            "nothing_like_this",
            "--by",
            "alice",
            "--config",
            &config,
        ],
        &env,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no firing alert is named `nothing_like_this`")
    );

    let out = sloguard(
        &[
            "ack",
            "web_down",
            "--by",
            "alice",
            "--comment",
            "rolling back the deploy",
            "--config",
            &config,
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "acknowledged web_down{target=\"web\"}\n"
    );
    let events = pd.wait_delivered(2, Duration::from_secs(10)).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].body["event_action"], "acknowledge");
    assert_eq!(
        events[1].body["dedup_key"],
        r#"sloguard/web_down{target="web"}"#
    );
    // Slack heard only the firing.
    assert_eq!(slack.received().len(), 1);

    // A second ack changes nothing.
    let out = sloguard(
        &[
            "ack",
            "web_down{target=\"web\"}",
            "--by",
            "bob",
            "--config",
            &config,
        ],
        &env,
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "already acknowledged\n"
    );

    // The acknowledgement survives a restart.
    daemon.stop().await;
    daemon.spawn().await;
    let out = sloguard(&["status", "--config", &config], &env);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("alice: rolling back the deploy"), "{table}");

    target.answer(200).await;
    let events = pd.wait_delivered(3, Duration::from_secs(10)).await;
    assert_eq!(events[2].body["event_action"], "resolve");
    assert_eq!(pd.received().len(), 3);

    // The history tells the whole story, in order.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let story = loop {
        let out = sloguard(
            &["history", "--since", "1h", "--json", "--config", &config],
            &env,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let events: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        let story: Vec<String> = events
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e["event"].as_str().unwrap(),
                    e["channel"].as_str().unwrap_or("-")
                )
            })
            .collect();
        if story.len() >= 7 || tokio::time::Instant::now() > deadline {
            break story;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let pos = |s: &str| {
        story
            .iter()
            .position(|x| x == s)
            .unwrap_or_else(|| panic!("{s} missing from {story:?}"))
    };
    assert!(pos("firing -") < pos("notified slack"));
    assert!(pos("firing -") < pos("notified pagerduty"));
    assert!(pos("notified pagerduty") < pos("acknowledged -"));
    assert!(pos("acknowledged -") < pos("resolved -"));
    let out = sloguard(&["history", "--since", "1h", "--config", &config], &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("acknowledged web_down{target=\"web\"}: by alice: rolling back the deploy"),
        "{text}"
    );
}

fn silence_config(port: u16, slack: &Receiver, target: &Target, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
token = "{TOKEN}"

[routing]
critical = ["slack"]

[[channels]]
name = "slack"
type = "slack"
webhook_url = "{slack}"

[[targets]]
name = "web"
url = "{url}"
interval = "300ms"

[[rules]]
name = "web_down"
kind = "consecutive"
fire_after = 2
severity = "critical"
summary = "{{target}} down"
{extra}
"#,
        slack = slack.url("/slack"),
        url = target.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silenced_alert_is_recorded_quietly_and_notifies_when_the_silence_ends() {
    let dir = tempdir();
    let mut target = Target::start().await;
    let slack = Receiver::start().await;
    let port = free_port();
    let daemon = Daemon::start(dir.path(), &silence_config(port, &slack, &target, ""), &[]).await;
    let config = daemon.config.to_str().unwrap().to_string();

    let out = sloguard(
        &[
            "silence",
            "add",
            "--match",
            "rule=web_down",
            "--match",
            "target=web",
            "--for",
            "1h",
            "--reason",
            "deploy",
            "--by",
            "alice",
            "--config",
            &config,
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("silence #1 until "));

    target.answer(500).await;
    assert!(
        daemon
            .wait_log("Alert firing", Duration::from_secs(10))
            .await
    );
    assert!(
        daemon
            .log_text()
            .contains("silenced_by=\"silence #1 (deploy)\""),
        "{}",
        daemon.log_text()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(slack.received().is_empty(), "a silenced alert notified");
    let out = sloguard(&["status", "--config", &config], &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("firing   critical  web_down{target=\"web\"}")
    );
    let out = sloguard(&["silence", "list", "--config", &config], &[]);
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.starts_with("#1 active  until "), "{list}");
    assert!(
        list.contains("by alice: deploy [rule=web_down, target=web]"),
        "{list}"
    );

    // Ending the silence while the alert still fires sends the firing.
    let out = sloguard(&["silence", "expire", "1", "--config", &config], &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "silence #1 expired\n");
    let got = slack.wait_delivered(1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert!(slack_text(&got[0]).starts_with("🔴 CRITICAL: web down"));
    target.answer(200).await;
    let got = slack.wait_delivered(2, Duration::from_secs(5)).await;
    assert!(slack_text(&got[1]).starts_with("✅ RESOLVED: web down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_within_a_maintenance_window_fires_and_resolves_without_a_message() {
    let dir = tempdir();
    let mut target = Target::start().await;
    let slack = Receiver::start().await;
    // Opens every minute for two minutes: always open.
    let window = r#"
[[maintenance]]
name = "always"
schedule = "* * * * *"
duration = "2m"
match = { rule = "web_down" }
"#;
    let daemon = Daemon::start(dir.path(), &silence_config(0, &slack, &target, window), &[]).await;
    target.answer(500).await;
    assert!(
        daemon
            .wait_log("Alert firing", Duration::from_secs(10))
            .await
    );
    assert!(
        daemon
            .log_text()
            .contains("silenced_by=\"maintenance window always\""),
        "{}",
        daemon.log_text()
    );
    target.answer(200).await;
    assert!(
        daemon
            .wait_log("Alert resolved", Duration::from_secs(10))
            .await
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(slack.received().is_empty(), "{:?}", slack.received());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_alert_escalates_and_an_acknowledged_one_does_not() {
    let dir = tempdir();
    let mut web = Target::start().await;
    let mut api = Target::start().await;
    let slack = Receiver::start().await;
    let pager = Receiver::start().await;
    let port = free_port();
    let cfg = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
token = "{TOKEN}"

[routing]
critical = ["slack"]

[[routing.escalation]]
severity = "critical"
after = "3s"
channels = ["pager"]

[[channels]]
name = "slack"
type = "slack"
webhook_url = "{slack}"

[[channels]]
name = "pager"
type = "webhook"
url = "{pager}"

[[targets]]
name = "web"
url = "{web}"
interval = "300ms"

[[targets]]
name = "api"
url = "{api}"
interval = "300ms"

[[rules]]
name = "down"
kind = "consecutive"
fire_after = 2
severity = "critical"
summary = "{{target}} down"
"#,
        slack = slack.url("/slack"),
        pager = pager.url("/pager"),
        web = web.url(),
        api = api.url()
    );
    let daemon = Daemon::start(dir.path(), &cfg, &[]).await;
    let config = daemon.config.to_str().unwrap().to_string();

    web.answer(500).await;
    api.answer(500).await;
    assert_eq!(
        slack.wait_delivered(2, Duration::from_secs(10)).await.len(),
        2
    );
    let out = sloguard(
        &[
            "ack",
            r#"down{target="api"}"#,
            "--by",
            "alice",
            "--config",
            &config,
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let got = pager.wait_delivered(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "log:\n{}", daemon.log_text());
    assert_eq!(got[0].body["labels"]["target"], "web");
    assert_eq!(got[0].body["note"], "Escalated: unacknowledged for 3s");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        pager.received().len(),
        1,
        "the acknowledged alert escalated"
    );

    // The resolve goes to every channel that heard of the alert, the escalated one included.
    web.answer(200).await;
    let got = pager.wait_delivered(2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].body["status"], "resolved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_alert_stays_quiet_while_its_cause_fires() {
    let dir = tempdir();
    let mut db = Target::start().await;
    let mut web = Target::start().await;
    let slack = Receiver::start().await;
    let cfg = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[routing]
critical = ["slack"]

[[channels]]
name = "slack"
type = "slack"
webhook_url = "{slack}"

[[targets]]
type = "tcp"
name = "db"
address = "{db}"
interval = "300ms"

[[targets]]
name = "web"
url = "{web}"
interval = "300ms"

[[rules]]
name = "database_down"
kind = "consecutive"
match = {{ target = "db" }}
fire_after = 2
severity = "critical"
summary = "Database down"

[[rules]]
name = "web_down"
kind = "consecutive"
match = {{ target = "web" }}
fire_after = 4
severity = "critical"
summary = "Web down"
depends_on = ["database_down"]
"#,
        slack = slack.url("/slack"),
        db = db.addr,
        web = web.url()
    );
    let daemon = Daemon::start(dir.path(), &cfg, &[]).await;

    db.refuse().await;
    web.answer(500).await;
    let got = slack.wait_delivered(1, Duration::from_secs(10)).await;
    assert!(slack_text(&got[0]).starts_with("🔴 CRITICAL: Database down"));
    assert!(
        daemon
            .wait_log(
                "silenced_by=\"rule database_down, which fires\"",
                Duration::from_secs(10)
            )
            .await,
        "{}",
        daemon.log_text()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(slack.received().len(), 1, "the dependent alert notified");

    // The cause resolves while the web still fails: now the web alert is news.
    db.answer(200).await;
    let got = slack.wait_delivered(3, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 3, "log:\n{}", daemon.log_text());
    let texts: Vec<String> = got.iter().map(slack_text).collect();
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("✅ RESOLVED: Database down")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.starts_with("🔴 CRITICAL: Web down")),
        "{texts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_notification_is_listed_in_dead_letters() {
    let dir = tempdir();
    let mut target = Target::start().await;
    let slack = Receiver::start().await;
    slack.set_default(404);
    let port = free_port();
    let daemon = Daemon::start(dir.path(), &silence_config(port, &slack, &target, ""), &[]).await;
    let config = daemon.config.to_str().unwrap().to_string();
    let out = sloguard(&["dead-letters", "--config", &config], &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "no dead letters\n");

    target.answer(500).await;
    assert!(
        daemon
            .wait_log("refused the notification", Duration::from_secs(10))
            .await
    );
    let out = sloguard(&["dead-letters", "--config", &config], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("#1 "), "{text}");
    assert!(
        text.contains(
            "[slack] firing web_down{target=\"web\"}: 1 attempt(s), HTTP 404: no_service"
        ),
        "{text}"
    );
}

/// The value of the first exposition line that starts with `series `.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .split(' ')
            .next()?
            .parse()
            .ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_probes_alerts_notifications_and_reloads() {
    let dir = tempdir();
    let mut target = Target::start().await;
    let slack = Receiver::start().await;
    let port = free_port();
    let cfg = silence_config(port, &slack, &target, "");
    let daemon = Daemon::start(dir.path(), &cfg, &[]).await;
    target.answer(500).await;
    assert_eq!(
        slack.wait_delivered(1, Duration::from_secs(10)).await.len(),
        1
    );
    std::fs::write(&daemon.config, &cfg).unwrap();
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        daemon
            .wait_log("Configuration unchanged", Duration::from_secs(5))
            .await
    );

    let resp = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert_eq!(
        metric(&text, r#"probe_up{target="web"}"#),
        Some(0.0),
        "{text}"
    );
    assert!(
        metric(&text, r#"probe_duration_seconds{target="web"}"#).is_some(),
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"probe_http_status_code{target="web"}"#),
        Some(500.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"sloguard_alerts{state="firing"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"sloguard_notifications_total{channel="slack",result="delivered"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"sloguard_config_reloads_total{result="success"}"#),
        Some(1.0),
        "{text}"
    );
    assert!(
        metric(&text, "sloguard_samples_total").is_some_and(|n| n >= 2.0),
        "{text}"
    );
    assert!(
        metric(&text, "sloguard_store_size_bytes").is_some_and(|n| n > 0.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "sloguard_outbox_pending"),
        Some(0.0),
        "{text}"
    );
    assert!(text.contains(r#"sloguard_build_info{version=""#), "{text}");
}
