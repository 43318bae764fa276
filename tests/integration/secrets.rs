//! A secret channel URL never appears in a log line, an error or a command's output.

use std::time::Duration;

use crate::base_config;
use crate::util::{Daemon, Receiver, Target, sloguard, tempdir};

const TOKEN: &str = "XOXB9SECRET4TOKEN2VALUE";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_url_from_the_environment_never_reaches_logs_or_errors() {
    let dir = tempdir();
    let mut target = Target::start().await;
    let slack = Receiver::start().await;
    let hook = Receiver::start().await;
    // Slack refuses with 404 (a dead webhook): the error is logged, without the URL.
    slack.set_default(404);
    let secret_url = slack.url(&format!("/services/T0/B0/{TOKEN}"));
    let cfg = base_config(&target, "env:SLACK_URL", &hook.url("/hook"))
        .replace("fire_after = 3", "fire_after = 1");
    let mut daemon = Daemon::start(dir.path(), &cfg, &[("SLACK_URL", &secret_url)]).await;
    target.answer(500).await;
    assert!(
        daemon
            .wait_log("refused the notification", Duration::from_secs(10))
            .await,
        "{}",
        daemon.log_text()
    );
    // A reload with a broken file: its errors must not quote the secret either.
    std::fs::write(
        &daemon.config,
        cfg.replace("interval = \"1s\"", "interval = \"x\""),
    )
    .unwrap();
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        daemon
            .wait_log("reload rejected", Duration::from_secs(5))
            .await
    );
    daemon.stop().await;

    // Unreachable: the connection error is reported without the URL.
    drop(slack);
    let out = sloguard(
        &[
            "test-notify",
            "--config",
            daemon.config.to_str().unwrap(),
            "--channel",
            "slack",
        ],
        &[("SLACK_URL", &secret_url)],
    );
    // The config on disk is the broken one now; restore the good one for test-notify.
    let _ = out;
    std::fs::write(&daemon.config, &cfg).unwrap();
    let out = sloguard(
        &[
            "test-notify",
            "--config",
            daemon.config.to_str().unwrap(),
            "--channel",
            "slack",
        ],
        &[("SLACK_URL", &secret_url)],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("connection refused"), "{stderr}");

    // A secret that is not a URL: `check` says so without quoting it.
    let out = sloguard(
        &["check", "--config", daemon.config.to_str().unwrap()],
        &[("SLACK_URL", &format!("not a url {TOKEN}"))],
    );
    assert!(!out.status.success());
    let check_err = String::from_utf8_lossy(&out.stderr);
    assert!(
        check_err.contains("the URL from env:SLACK_URL is not a valid URL"),
        "{check_err}"
    );

    let everything = format!(
        "{}\n{}\n{}\n{}",
        daemon.all_logs(),
        String::from_utf8_lossy(&out.stdout),
        stderr,
        check_err
    );
    assert!(
        everything.contains("slack"),
        "the logs say nothing about the channel"
    );
    assert!(
        !everything.contains(TOKEN),
        "the secret leaked:\n{everything}"
    );
}
