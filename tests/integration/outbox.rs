//! The durable outbox: retries with backoff, `Retry-After`, and delivery after a crash.

use std::time::Duration;

use crate::base_config;
use crate::util::{Daemon, Receiver, Target, slack_text, tempdir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_5xx_and_429_honouring_retry_after_then_delivers_exactly_once() {
    let dir = tempdir();
    let mut target = Target::start().await;
    let slack = Receiver::start().await;
    let hook = Receiver::start().await;
    slack.script(&[
        (500, None),
        (500, None),
        (500, None),
        (429, Some("2")),
        (200, None),
    ]);
    let cfg = base_config(&target, &slack.url("/slack"), &hook.url("/hook"));
    let daemon = Daemon::start(dir.path(), &cfg, &[]).await;

    target.answer(500).await;
    let delivered = slack.wait_delivered(1, Duration::from_secs(30)).await;
    assert_eq!(
        delivered.len(),
        1,
        "never delivered; log:\n{}",
        daemon.log_text()
    );
    let attempts = slack.received();
    let answered: Vec<u16> = attempts.iter().map(|r| r.answered).collect();
    assert_eq!(answered, vec![500, 500, 500, 429, 200]);
    let after_429 = attempts[4].at - attempts[3].at;
    assert!(
        after_429 >= Duration::from_secs(2),
        "retried {after_429:?} after a Retry-After of 2 s"
    );
    // Every attempt carried the same message.
    for a in &attempts {
        assert_eq!(a.body, attempts[0].body);
    }
    assert!(slack_text(&delivered[0]).starts_with("🔴 CRITICAL: Web down"));

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        slack.received().len(),
        5,
        "sent again after a successful delivery"
    );
    assert!(
        daemon
            .log_text()
            .contains("Notification not delivered; will retry")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_notification_survives_sigkill_and_is_delivered_once_after_restart() {
    let dir = tempdir();
    let mut target = Target::start().await;
    let slack = Receiver::start().await;
    let hook = Receiver::start().await;
    slack.set_default(500);
    let cfg = base_config(&target, &slack.url("/slack"), &hook.url("/hook"));
    let mut daemon = Daemon::start(dir.path(), &cfg, &[]).await;

    target.answer(500).await;
    // Wait for at least one failed attempt, so the notification is pending in the outbox.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while slack.received().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!slack.received().is_empty(), "no attempt was made");
    daemon.kill9();
    let attempts_before = slack.received().len();

    slack.set_default(200);
    daemon.spawn().await;
    let got = slack.wait_delivered(1, Duration::from_secs(15)).await;
    assert_eq!(
        got.len(),
        1,
        "pending notification lost; log:\n{}",
        daemon.log_text()
    );
    assert!(slack_text(&got[0]).starts_with("🔴 CRITICAL: Web down"));
    // The target is still failing: the restored alert must not fire a second time.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(slack.delivered().len(), 1, "delivered more than once");
    assert_eq!(slack.received().len(), attempts_before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_never_answers_times_out_and_is_retried() {
    let dir = tempdir();
    let mut target = Target::start().await;
    let slack = Receiver::start().await;
    let hook = Receiver::start().await;
    slack.script(&[(crate::util::HANG, None)]);
    let cfg = base_config(&target, &slack.url("/slack"), &hook.url("/hook"));
    let daemon = Daemon::start(dir.path(), &cfg, &[]).await;

    target.answer(500).await;
    let got = slack.wait_delivered(1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1, "log:\n{}", daemon.log_text());
    let attempts = slack.received();
    assert_eq!(attempts.len(), 2, "{attempts:?}\n{}", daemon.log_text());
    // The hung attempt is abandoned after the 2 s timeout, then retried.
    assert!(attempts[1].at - attempts[0].at >= Duration::from_secs(2));
    assert!(
        daemon.log_text().contains("timed out after 2s"),
        "{}",
        daemon.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_failing_past_give_up_after_goes_to_dead_letters_and_says_so() {
    let dir = tempdir();
    let mut target = Target::start().await;
    let slack = Receiver::start().await;
    let hook = Receiver::start().await;
    slack.set_default(503);
    let cfg = base_config(&target, &slack.url("/slack"), &hook.url("/hook")).replace(
        "timeout = \"2s\"",
        "timeout = \"2s\"\ngive_up_after = \"1s\"",
    );
    let daemon = Daemon::start(dir.path(), &cfg, &[]).await;

    target.answer(500).await;
    assert!(
        daemon
            .wait_log(
                "Notification given up after retrying for 1s",
                Duration::from_secs(20)
            )
            .await,
        "{}",
        daemon.log_text()
    );
    let attempts = slack.received().len();
    assert!(attempts >= 2, "{attempts} attempts");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        slack.received().len(),
        attempts,
        "still retrying after giving up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_an_alert_fires_still_delivers_it_before_exiting() {
    let dir = tempdir();
    let mut target = Target::start().await;
    let slack = Receiver::start().await;
    let hook = Receiver::start().await;
    let cfg = base_config(&target, &slack.url("/slack"), &hook.url("/hook"))
        .replace("fire_after = 3", "fire_after = 1");
    let mut daemon = Daemon::start(dir.path(), &cfg, &[]).await;

    target.answer(500).await;
    assert!(
        daemon
            .wait_log("Alert firing", Duration::from_secs(10))
            .await
    );
    let status = daemon.stop().await.expect("did not stop");
    assert!(status.success());
    assert_eq!(slack.delivered().len(), 1, "log:\n{}", daemon.log_text());
    assert_eq!(hook.delivered().len(), 1, "log:\n{}", daemon.log_text());
}

/// A receiver answers a warning `429` with `Retry-After: 86400`: that wait holds the warning
/// (capped at `max_retry_after`), never a critical alert that fires afterwards on the same
/// channel, which goes out within 2 s of firing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_warning_does_not_hold_back_a_critical_alert() {
    let dir = tempdir();
    let mut web = Target::start().await;
    let mut api = Target::start().await;
    let slack = Receiver::start().await;
    let hook = Receiver::start().await;
    hook.script(&[(429, Some("86400"))]);
    let cfg = base_config(&web, &slack.url("/slack"), &hook.url("/hook"))
        .replace("warning = [\"slack\"]", "warning = [\"ops-webhook\"]")
        .replace(
            "critical = [\"slack\", \"ops-webhook\"]",
            "critical = [\"ops-webhook\"]",
        )
        + &format!(
            r#"
[[targets]]
name = "api"
url = "{api}"
interval = "1s"
timeout = "1s"

[[rules]]
name = "api_down"
kind = "consecutive"
match = {{ target = "api" }}
fire_after = 1
resolve_after = 2
severity = "warning"
summary = "API down"
"#,
            api = api.url()
        );
    let daemon = Daemon::start(dir.path(), &cfg, &[]).await;

    api.answer(500).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while hook.received().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = hook.received();
    assert_eq!(
        first.len(),
        1,
        "the warning was tried once\n{}",
        daemon.log_text()
    );
    assert_eq!(first[0].answered, 429);
    assert_eq!(first[0].body["severity"], "warning");

    web.answer(500).await;
    let got = hook.wait_delivered(1, Duration::from_secs(15)).await;
    assert_eq!(
        got.len(),
        1,
        "the critical alert was held back\n{}",
        daemon.log_text()
    );
    let critical = &got[0];
    assert_eq!(critical.body["severity"], "critical", "{}", critical.body);
    let fired = chrono::DateTime::parse_from_rfc3339(critical.body["fired_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let arrived = chrono::Utc::now() - critical.at.elapsed();
    let late = (arrived - fired).num_milliseconds();
    assert!(late <= 2000, "delivered {late} ms after it fired");
    // The warning still waits for its (capped) Retry-After.
    assert!(
        hook.delivered()
            .iter()
            .all(|r| r.body["severity"] != "warning"),
        "the warning went before its wait"
    );
    drop(daemon);
}
