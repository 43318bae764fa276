//! A secret channel URL never appears in a log line, an error or a command's output.

use std::time::Duration;

use crate::base_config;
use crate::util::{Daemon, Receiver, Target, sloguard, tempdir};

const TOKEN: &str = "XOXB9SECRET4TOKEN2VALUE";
const FILE_TOKEN: &str = "FILE7SECRET3PATH";
const HEADER_TOKEN: &str = "Bearer HDR5SECRET8VALUE";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_url_from_the_environment_never_reaches_logs_or_errors() {
    let dir = tempdir();
    let mut target = Target::start().await;
    let slack = Receiver::start().await;
    let hook = Receiver::start().await;
    // Slack refuses with 404 (a dead webhook): the error is logged, without the URL.
    slack.set_default(404);
    let secret_url = slack.url(&format!("/services/T0/B0/{TOKEN}"));
    // The webhook's URL comes from a file and its token from the environment; it answers 500,
    // so its retries are logged too.
    hook.set_default(500);
    std::fs::write(
        dir.path().join("hook-url"),
        hook.url(&format!("/hook/{FILE_TOKEN}")),
    )
    .unwrap();
    let cfg = base_config(&target, "env:SLACK_URL", "unused")
        .replace(
            "url = \"unused\"",
            "url_file = \"hook-url\"\nheaders = { Authorization = \"env:HOOK_TOKEN\" }",
        )
        .replace("fire_after = 3", "fire_after = 1");
    let env = [
        ("SLACK_URL", secret_url.as_str()),
        ("HOOK_TOKEN", HEADER_TOKEN),
    ];
    let mut daemon = Daemon::start(dir.path(), &cfg, &env).await;
    target.answer(500).await;
    assert!(
        daemon
            .wait_log("refused the notification", Duration::from_secs(10))
            .await,
        "{}",
        daemon.log_text()
    );
    assert!(
        daemon
            .wait_log(
                "Notification not delivered; will retry",
                Duration::from_secs(10)
            )
            .await
    );
    // The webhook did get the token, so the check below is not vacuous.
    assert_eq!(
        hook.received()[0].authorization.as_deref(),
        Some(HEADER_TOKEN)
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

    // Unreachable: `test-notify` reports the connection error without the URL.
    drop(slack);
    std::fs::write(&daemon.config, &cfg).unwrap();
    let out = sloguard(
        &[
            "test-notify",
            "--config",
            daemon.config.to_str().unwrap(),
            "--channel",
            "slack",
        ],
        &env,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("connection refused"), "{stderr}");

    // A secret that is not a URL: `check` says so without quoting it.
    let out = sloguard(
        &["check", "--config", daemon.config.to_str().unwrap()],
        &[
            ("SLACK_URL", &format!("not a url {TOKEN}")),
            ("HOOK_TOKEN", HEADER_TOKEN),
        ],
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
