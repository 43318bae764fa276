//! SIGHUP reload: a valid change takes effect; an invalid file is rejected and the old
//! configuration keeps running.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::base_config;
use crate::util::{Daemon, Receiver, Target, slack_text, tempdir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_reload_takes_effect_and_an_invalid_one_keeps_the_old_config() {
    let dir = tempdir();
    let mut target = Target::start().await;
    let slack = Receiver::start().await;
    let hook = Receiver::start().await;
    let cfg = base_config(&target, &slack.url("/slack"), &hook.url("/hook"));
    let mut daemon = Daemon::start(dir.path(), &cfg, &[]).await;

    // A valid change: a new summary and firing after one failure.
    let changed = cfg
        .replace(
            "summary = \"Web down\"",
            "summary = \"Web is down ({target})\"",
        )
        .replace("fire_after = 3", "fire_after = 1");
    std::fs::write(&daemon.config, &changed).unwrap();
    daemon.signal(Signal::SIGHUP);
    assert!(
        daemon
            .wait_log("Configuration reloaded", Duration::from_secs(5))
            .await
    );

    target.answer(500).await;
    let got = slack.wait_delivered(1, Duration::from_secs(6)).await;
    assert_eq!(got.len(), 1);
    let text = slack_text(&got[0]);
    assert!(text.starts_with("🔴 CRITICAL: Web is down (web)"), "{text}");
    assert!(text.contains("(threshold: 1)"), "{text}");

    // An invalid file with two problems: both are logged with their lines, nothing changes.
    let broken = changed
        .replace(
            "summary = \"Web is down ({target})\"",
            "summary = \"BROKEN\"",
        )
        .replace("interval = \"1s\"", "interval = \"soon\"")
        .replace(
            "critical = [\"slack\", \"ops-webhook\"]",
            "critical = [\"slack\", \"pager\"]",
        );
    std::fs::write(&daemon.config, &broken).unwrap();
    daemon.signal(Signal::SIGHUP);
    assert!(
        daemon
            .wait_log("Configuration reload rejected", Duration::from_secs(5))
            .await
    );
    let log = daemon.log_text();
    assert!(
        log.contains("targets[0].interval") && log.contains("`soon` is not a duration"),
        "{log}"
    );
    assert!(
        log.contains("routing.critical") && log.contains("no channel named `pager`"),
        "{log}"
    );
    let line_of = |needle: &str| broken.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let interval_line = format!("line={}", line_of("interval = \"soon\""));
    let routing_line = format!("line={}", line_of("\"pager\""));
    assert!(
        log.contains(&interval_line),
        "{interval_line} missing:\n{log}"
    );
    assert!(
        log.contains(&routing_line),
        "{routing_line} missing:\n{log}"
    );
    assert!(daemon.alive(), "the daemon died on an invalid reload");

    // The old configuration still runs: the alert resolves and is reported with the old summary.
    target.answer(200).await;
    let got = slack.wait_delivered(2, Duration::from_secs(8)).await;
    assert_eq!(got.len(), 2, "log:\n{}", daemon.log_text());
    assert!(slack_text(&got[1]).starts_with("✅ RESOLVED: Web is down (web)"));
    assert!(daemon.stop().await.is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_alert_survives_a_reload_and_resolves_through_the_changed_channel() {
    let dir = tempdir();
    let mut target = Target::start().await;
    let slack = Receiver::start().await;
    let new_slack = Receiver::start().await;
    let hook = Receiver::start().await;
    let cfg = base_config(&target, &slack.url("/slack"), &hook.url("/hook"));
    let mut daemon = Daemon::start(dir.path(), &cfg, &[]).await;

    target.answer(500).await;
    assert_eq!(
        slack.wait_delivered(1, Duration::from_secs(10)).await.len(),
        1,
        "log:\n{}",
        daemon.log_text()
    );

    // Move the Slack channel to another webhook while the alert fires.
    std::fs::write(
        &daemon.config,
        cfg.replace(&slack.url("/slack"), &new_slack.url("/slack")),
    )
    .unwrap();
    daemon.signal(Signal::SIGHUP);
    assert!(
        daemon
            .wait_log("Configuration reloaded", Duration::from_secs(5))
            .await,
        "log:\n{}",
        daemon.log_text()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        new_slack.received().is_empty(),
        "the alert fired again after the reload: {:?}\nlog:\n{}",
        new_slack.received(),
        daemon.log_text()
    );

    target.answer(200).await;
    let got = new_slack.wait_delivered(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "log:\n{}", daemon.log_text());
    assert!(slack_text(&got[0]).starts_with("✅ RESOLVED: Web down"));
    assert_eq!(
        slack.received().len(),
        1,
        "the old webhook was used after the reload; log:\n{}",
        daemon.log_text()
    );
    assert_eq!(
        hook.wait_delivered(2, Duration::from_secs(5)).await.len(),
        2,
        "log:\n{}",
        daemon.log_text()
    );
    assert!(daemon.stop().await.is_some_and(|s| s.success()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_a_firing_alerts_severity_notifies_the_new_route_at_once() {
    let dir = tempdir();
    let mut target = Target::start().await;
    let slack = Receiver::start().await;
    let pd = Receiver::start().await;
    pd.set_default(202);
    let cfg = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[routing]
warning = ["slack"]
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
severity = "warning"
summary = "Web down"
"#,
        slack = slack.url("/slack"),
        pd = pd.url(""),
        url = target.url()
    );
    let mut daemon = Daemon::start(dir.path(), &cfg, &[]).await;
    target.answer(500).await;
    let got = slack.wait_delivered(1, Duration::from_secs(10)).await;
    assert!(slack_text(&got[0]).starts_with("⚠️ Web down"));
    assert!(pd.received().is_empty());

    std::fs::write(
        &daemon.config,
        cfg.replace("severity = \"warning\"", "severity = \"critical\""),
    )
    .unwrap();
    daemon.signal(Signal::SIGHUP);
    let got = slack.wait_delivered(2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2, "log:\n{}", daemon.log_text());
    let text = slack_text(&got[1]);
    assert!(text.starts_with("🔴 CRITICAL: Web down"), "{text}");
    assert!(
        text.contains("Note: Severity raised from warning to critical"),
        "{text}"
    );
    let events = pd.wait_delivered(1, Duration::from_secs(10)).await;
    assert_eq!(events[0].body["event_action"], "trigger");

    target.answer(200).await;
    assert_eq!(
        pd.wait_delivered(2, Duration::from_secs(10)).await[1].body["event_action"],
        "resolve"
    );
    assert!(
        slack_text(&slack.wait_delivered(3, Duration::from_secs(10)).await[2])
            .starts_with("✅ RESOLVED: Web down")
    );
    assert!(daemon.stop().await.is_some_and(|s| s.success()));
}
