//! A full disk under the data file: the daemon says so (`/healthz`, `/metrics`, a page on the
//! critical route), keeps paging from memory, and when there is room again stores what it
//! held and carries on. The data directory is a small tmpfs (the test command runs as root).

use std::time::Duration;

use crate::base_config;
use crate::util::{Daemon, Receiver, Target, Tmpfs, free_port, slack_text, sloguard, tempdir};

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// Polls `url` until `ok` holds for its answer.
async fn wait_for(url: &str, timeout: Duration, ok: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (status, body) = get(url).await;
        if ok(status, &body) || tokio::time::Instant::now() >= deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Texts of what a receiver accepted: Slack's text, or a webhook's summary and status.
fn texts(r: &Receiver, slack: bool) -> Vec<String> {
    r.delivered()
        .iter()
        .map(|d| {
            if slack {
                slack_text(d)
            } else {
                format!("{} {}", d.body["status"], d.body["summary"])
            }
        })
        .collect()
}

async fn wait_text(r: &Receiver, slack: bool, needle: &str, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if texts(r, slack).iter().any(|t| t.contains(needle)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_pages_from_memory_and_everything_is_stored_when_there_is_room() {
    let dir = tempdir();
    let tmpfs = Tmpfs::mount(&dir.path().join("data"), "12m");
    let mut target = Target::start().await;
    let slack = Receiver::start().await;
    let hook = Receiver::start().await;
    let port = free_port();
    let cfg = base_config(&target, &slack.url("/slack"), &hook.url("/hook")).replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    let mut daemon = Daemon::start(dir.path(), &cfg, &[]).await;
    let base = format!("http://127.0.0.1:{port}");
    let (status, _) = wait_for(
        &format!("{base}/healthz"),
        Duration::from_secs(10),
        |s, _| s == 200,
    )
    .await;
    assert_eq!(status, 200, "{}", daemon.log_text());
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The disk fills up.
    let filler = tmpfs.fill();
    let full_at = now_ms();
    let (status, body) = wait_for(
        &format!("{base}/healthz"),
        Duration::from_secs(20),
        |s, _| s == 503,
    )
    .await;
    assert_eq!(
        status,
        503,
        "healthz stayed {status} {body}\n{}",
        daemon.log_text()
    );
    assert!(
        body.contains("cannot write the data file") && body.contains("No space left on device"),
        "{body}"
    );
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(
        metric(&metrics, "sloguard_store_writable"),
        Some(0.0),
        "{metrics}"
    );
    assert!(metric(&metrics, "sloguard_store_write_errors_total").unwrap_or(0.0) >= 1.0);

    // The built-in alert goes to the critical route (both channels), without a disk.
    let page = "sloguard cannot write its data file: No space left on device";
    assert!(
        wait_text(&slack, true, page, Duration::from_secs(15)).await,
        "no page on Slack: {:?}\n{}",
        texts(&slack, true),
        daemon.log_text()
    );
    assert!(
        wait_text(&hook, false, page, Duration::from_secs(5)).await,
        "no page on the webhook: {:?}",
        texts(&hook, false)
    );

    // An alert that fires meanwhile is notified from memory.
    target.answer(500).await;
    assert!(
        wait_text(&slack, true, "CRITICAL: Web down", Duration::from_secs(15)).await,
        "{:?}\n{}",
        texts(&slack, true),
        daemon.log_text()
    );
    assert!(wait_text(&hook, false, "Web down", Duration::from_secs(5)).await);
    // Full for a while longer: opening the file again fails or its first write does, and
    // the waits grow; the probe results of the time are held in memory.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        get(&format!("{base}/healthz")).await.0,
        503,
        "the disk is still full"
    );
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    assert!(metric(&metrics, "sloguard_store_write_errors_total").unwrap_or(0.0) >= 2.0);

    // Room again: the file is opened again, what was held is stored, the page resolves.
    std::fs::remove_file(&filler).unwrap();
    let emptied_at = now_ms();
    let (status, body) = wait_for(
        &format!("{base}/healthz"),
        Duration::from_secs(40),
        |s, _| s == 200,
    )
    .await;
    assert_eq!(status, 200, "{body}\n{}", daemon.log_text());
    assert!(
        wait_text(&slack, true, "RESOLVED", Duration::from_secs(15)).await
            && texts(&slack, true)
                .iter()
                .any(|t| t.contains("RESOLVED") && t.contains("cannot write its data file")),
        "{:?}",
        texts(&slack, true)
    );
    assert!(
        wait_text(
            &hook,
            false,
            "\"resolved\" \"sloguard cannot write",
            Duration::from_secs(5)
        )
        .await,
        "{:?}",
        texts(&hook, false)
    );
    target.answer(200).await;
    assert!(
        wait_text(&slack, true, "RESOLVED: Web down", Duration::from_secs(15)).await,
        "{:?}",
        texts(&slack, true)
    );
    // Each message once per channel: nothing kept in memory was sent twice.
    for r in [(&slack, true), (&hook, false)] {
        let all = texts(r.0, r.1);
        let mut unique = all.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(all.len(), unique.len(), "{all:?}");
        assert_eq!(all.len(), 4, "{all:?}");
    }
    let (_, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(metric(&metrics, "sloguard_store_writable"), Some(1.0));
    assert_eq!(
        metric(&metrics, "sloguard_store_unsaved_records"),
        Some(0.0)
    );
    assert_eq!(
        metric(&metrics, "sloguard_store_records_lost_total"),
        Some(0.0)
    );
    daemon.stop().await;

    // What was held in memory is in the file: the probe results of the full minute, and the
    // alerts' history.
    let data = dir.path().join("data");
    let out = sloguard(
        &[
            "query",
            "probe_up",
            "--data-dir",
            data.to_str().unwrap(),
            "--since",
            "1h",
            "--match",
            "target=web",
            "--format",
            "csv",
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // series,time,timestamp_ms,value — the points taken while the disk was full.
    let points: Vec<f64> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.rsplitn(3, ',').collect();
            let t: i64 = f.get(1)?.parse().ok()?;
            (full_at..emptied_at)
                .contains(&t)
                .then(|| f[0].parse().ok())?
        })
        .collect();
    let seconds = (emptied_at - full_at) / 1000;
    assert!(
        points.len() as i64 >= seconds - 3,
        "{} points stored for {seconds} s of a full disk: {text}\n{}",
        points.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        points.contains(&0.0),
        "the failing probes were kept: {points:?}"
    );
    let mut daemon = daemon;
    daemon.spawn().await;
    let (_, history) = get(&format!("{base}/api/v1/history?since=1h")).await;
    for needle in [
        "sloguard_data_file_unwritable",
        "\"event\":\"resolved\"",
        "web_down",
        "\"event\":\"notified\"",
    ] {
        assert!(
            history.contains(needle),
            "{needle} not in the history: {history}"
        );
    }
    daemon.stop().await;
    drop(tmpfs);
}
