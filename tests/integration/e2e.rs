//! The first complete path: probe → store → rule → alert → outbox → Slack and webhook.

use std::time::Duration;

use tokio::time::Instant;

use crate::base_config;
use crate::util::{Daemon, Receiver, Target, assert_text, slack_text, tempdir};

const TIME: &str = r"~Time: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_failing_then_refusing_then_recovering_fires_once_and_resolves_once() {
    let dir = tempdir();
    let mut target = Target::start().await;
    let slack = Receiver::start().await;
    let hook = Receiver::start().await;
    let cfg = base_config(&target, &slack.url("/services/T/B/x"), &hook.url("/hook"));
    let _daemon = Daemon::start(dir.path(), &cfg, &[]).await;

    // Healthy: nothing is sent.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(slack.received().is_empty());

    // 3 failures 1 s apart fire the alert: within N × interval + 2 s.
    target.answer(500).await;
    let flipped = Instant::now();
    let got = slack.wait_delivered(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "no firing message");
    assert!(
        got[0].at - flipped <= Duration::from_secs(3 + 2),
        "firing took {:?}",
        got[0].at - flipped
    );
    assert_text(
        &slack_text(&got[0]),
        &[
            "🔴 CRITICAL: Web down",
            "Consecutive failed probes: 3 (threshold: 3)",
            "Target: web",
            "Reason: HTTP 500 Internal Server Error",
            TIME,
            "Dashboard: http://127.0.0.1:9797/",
            "Runbook: https://runbooks.example.com/web-down",
        ],
    );
    let fired = hook.wait_delivered(1, Duration::from_secs(5)).await;
    assert_eq!(fired.len(), 1);
    let body = &fired[0].body;
    assert_eq!(body["status"], "firing");
    assert_eq!(body["rule"], "web_down");
    assert_eq!(body["severity"], "critical");
    assert_eq!(body["labels"]["target"], "web");
    assert_eq!(body["reason"], "HTTP 500 Internal Server Error");
    assert_eq!(body["fingerprint"], r#"web_down{target="web"}"#);

    // Refusing connections keeps it firing without a second message.
    target.refuse().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        slack.received().len(),
        1,
        "a second message while still firing"
    );

    // Two successes resolve it.
    target.answer(200).await;
    let recovered = Instant::now();
    let got = slack.wait_delivered(2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2, "no resolved message");
    assert!(
        got[1].at - recovered <= Duration::from_secs(2 + 2),
        "resolve took {:?}",
        got[1].at - recovered
    );
    assert_text(
        &slack_text(&got[1]),
        &[
            "✅ RESOLVED: Web down",
            r"~Lasted: \d+s \(since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)",
            "Target: web",
            "Last failure: connection refused",
            TIME,
            "Dashboard: http://127.0.0.1:9797/",
            "Runbook: https://runbooks.example.com/web-down",
        ],
    );
    let resolved = hook.wait_delivered(2, Duration::from_secs(5)).await;
    assert_eq!(resolved[1].body["status"], "resolved");
    assert!(resolved[1].body["ended_at"].is_string());

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(slack.received().len(), 2, "messages after the resolve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_while_firing_neither_fires_again_nor_forgets_the_alert() {
    let dir = tempdir();
    let mut target = Target::start().await;
    let slack = Receiver::start().await;
    let hook = Receiver::start().await;
    let cfg = base_config(&target, &slack.url("/slack"), &hook.url("/hook"));
    let mut daemon = Daemon::start(dir.path(), &cfg, &[]).await;

    target.answer(503).await;
    assert_eq!(
        slack.wait_delivered(1, Duration::from_secs(10)).await.len(),
        1
    );
    let status = daemon.stop().await.expect("daemon did not stop on SIGTERM");
    assert!(status.success(), "exit status {status:?}");

    daemon.spawn().await;
    assert!(
        daemon
            .wait_log("Restored pending and firing alerts", Duration::from_secs(5))
            .await
    );
    // Still failing after the restart: the alert stays firing, silently.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(slack.received().len(), 1, "fired again after restart");

    target.answer(200).await;
    let got = slack.wait_delivered(2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2, "the resolve after restart never came");
    assert!(slack_text(&got[1]).starts_with("✅ RESOLVED: Web down"));
    assert!(slack_text(&got[1]).contains("Last failure: HTTP 503 Service Unavailable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_notify_prints_what_the_channel_answered() {
    let dir = tempdir();
    let target = Target::start().await;
    let slack = Receiver::start().await;
    let hook = Receiver::start().await;
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        base_config(&target, &slack.url("/slack"), &hook.url("/hook")),
    )
    .unwrap();
    let out = crate::util::sloguard(
        &[
            "test-notify",
            "--config",
            path.to_str().unwrap(),
            "--channel",
            "slack",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "slack (slack): delivered; the channel answered HTTP 200 ok\n"
    );
    let got = slack.delivered();
    assert_eq!(got.len(), 1);
    assert!(
        slack_text(&got[0])
            .starts_with("🧪 TEST: Test notification from sloguard to channel `slack`")
    );

    // A webhook that refuses: the answer is printed and the exit code says it failed.
    hook.set_default(404);
    let out = crate::util::sloguard(
        &[
            "test-notify",
            "--config",
            path.to_str().unwrap(),
            "--channel",
            "ops-webhook",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "ops-webhook (webhook): not delivered: HTTP 404: no_service (permanent; check the channel's configuration)\n"
    );
    assert_eq!(hook.received()[0].body["status"], "test");

    let out = crate::util::sloguard(
        &[
            "test-notify",
            "--config",
            path.to_str().unwrap(),
            "--channel",
            "pager",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no channel named `pager`; its channels: ops-webhook, slack")
    );
}
