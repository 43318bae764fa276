//! Probes that confirm fast and say why: retry interval, body assertions, latency, TCP.

use std::time::Duration;

use tokio::time::Instant;

use crate::util::{Daemon, Receiver, Target, slack_text, tempdir};

fn config(slack: &Receiver, targets: &str, rules: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[outbox]
initial_backoff = "200ms"

[routing]
warning = ["hook"]
critical = ["hook"]

[[channels]]
name = "hook"
type = "webhook"
url = "{hook}"
{targets}
{rules}
"#,
        hook = slack.url("/hook"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_confirmed_at_the_retry_interval_not_the_normal_one() {
    let dir = tempdir();
    let mut target = Target::start().await;
    let hook = Receiver::start().await;
    let targets = format!(
        r#"
[[targets]]
name = "web"
url = "{}"
interval = "5s"
retry_interval = "500ms"
timeout = "1s"
"#,
        target.url()
    );
    let rules = r#"
[[rules]]
name = "web_down"
kind = "consecutive"
fire_after = 3
severity = "critical"
summary = "{target} down"
"#;
    let _daemon = Daemon::start(dir.path(), &config(&hook, &targets, rules), &[]).await;
    // Let the first (spread) probe happen.
    tokio::time::sleep(Duration::from_secs(5)).await;

    target.answer(500).await;
    let flipped = Instant::now();
    let got = hook.wait_delivered(1, Duration::from_secs(15)).await;
    assert_eq!(got.len(), 1);
    let took = got[0].at - flipped;
    // At most one normal interval to notice, then two retries 0.5 s apart. Three normal
    // intervals would be 10 s or more.
    assert!(
        took <= Duration::from_millis(5000 + 2 * 500 + 1500),
        "firing took {took:?}"
    );
    assert_eq!(
        got[0].body["value"],
        "Consecutive failed probes: 3 (threshold: 3)"
    );

    target.answer(200).await;
    let recovered = Instant::now();
    let got = hook.wait_delivered(2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2);
    let took = got[1].at - recovered;
    assert!(
        took <= Duration::from_millis(5000 + 1500),
        "resolve took {took:?}"
    );
    assert_eq!(got[1].body["status"], "resolved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_assertions_and_slow_answers_are_quoted_as_the_reason() {
    let dir = tempdir();
    let target = Target::start().await;
    target.set_body(r#"{"status": "ok", "db": {"latency_ms": 40}}"#);
    let hook = Receiver::start().await;
    let targets = format!(
        r#"
[[targets]]
name = "json"
url = "{url}"
interval = "300ms"
timeout = "2s"
body_regex = '"status":\s*"\w+"'
body_json = ['$.status == "ok"', '$.db.latency_ms < 100']
"#,
        url = target.url()
    );
    let rules = r#"
[[rules]]
name = "json_down"
kind = "consecutive"
fire_after = 2
severity = "critical"
summary = "{target} unhealthy"

[[rules]]
name = "json_slow"
kind = "consecutive"
metric = "probe_duration_seconds"
condition = "> 0.4"
fire_after = 2
severity = "warning"
summary = "{target} slow"
"#;
    let daemon = Daemon::start(dir.path(), &config(&hook, &targets, rules), &[]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        hook.received().is_empty(),
        "alerts while healthy: {:?}",
        hook.received()
    );

    target.set_body(r#"{"status": "ok", "db": {"latency_ms": 250}}"#);
    let got = hook.wait_delivered(1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].body["reason"],
        "$.db.latency_ms is 250, expected < 100"
    );
    target.set_body(r#"{"status": "ok", "db": {"latency_ms": 40}}"#);
    assert_eq!(
        hook.wait_delivered(2, Duration::from_secs(5)).await.len(),
        2
    );

    target.set_body("<html>maintenance</html>");
    let got = hook.wait_delivered(3, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 3);
    assert_eq!(
        got[2].body["reason"],
        r#"response body does not match /"status":\s*"\w+"/"#
    );
    target.set_body(r#"{"status": "ok", "db": {"latency_ms": 40}}"#);
    assert_eq!(
        hook.wait_delivered(4, Duration::from_secs(5)).await.len(),
        4
    );

    // Slow but correct: the latency rule fires, quoting the time taken.
    target.set_delay(Duration::from_millis(600));
    let got = hook.wait_delivered(5, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 5, "log:\n{}", daemon.log_text());
    let slow = &got[4].body;
    assert_eq!(slow["rule"], "json_slow");
    assert_eq!(slow["severity"], "warning");
    let reason = slow["reason"].as_str().unwrap();
    assert!(reason.starts_with("the probe took 0.6"), "{reason}");
    assert!(slack_text(&got[4]).starts_with("⚠️ json slow"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_port_that_stops_accepting_fires_with_connection_refused() {
    let dir = tempdir();
    let mut port = Target::start().await;
    let hook = Receiver::start().await;
    let targets = format!(
        r#"
[[targets]]
type = "tcp"
name = "db-port"
address = "{}"
interval = "300ms"
timeout = "1s"
"#,
        port.addr
    );
    let rules = r#"
[[rules]]
name = "port_closed"
kind = "consecutive"
fire_after = 2
severity = "critical"
summary = "{target} not accepting connections"
"#;
    let _daemon = Daemon::start(dir.path(), &config(&hook, &targets, rules), &[]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(hook.received().is_empty());
    port.refuse().await;
    let got = hook.wait_delivered(1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["reason"], "connection refused");
    let text = slack_text(&got[0]);
    assert!(
        text.starts_with("🔴 CRITICAL: db-port not accepting connections"),
        "{text}"
    );
    port.answer(200).await;
    let got = hook.wait_delivered(2, Duration::from_secs(5)).await;
    assert_eq!(got[1].body["status"], "resolved");
}
