//! A real Prometheus (Debian's package) scrapes the daemon's `/metrics`: the scrape is
//! healthy and the probe series arrive with their labels.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::{Daemon, Receiver, Target, free_port, tempdir};

/// A Prometheus server child, killed by PID when dropped.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn query(port: u16, q: &str) -> serde_json::Value {
    let url = format!("http://127.0.0.1:{port}/api/v1/query");
    match reqwest::Client::new()
        .get(url)
        .query(&[("query", q)])
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_metrics() {
    let dir = tempdir();
    let target = Target::start().await;
    let slack = Receiver::start().await;
    let port = free_port();
    let cfg = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

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
severity = "critical"
summary = "Web down"
"#,
        slack = slack.url("/slack"),
        url = target.url()
    );
    let _daemon = Daemon::start(dir.path(), &cfg, &[]).await;

    let prom_port = free_port();
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sloguard\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .unwrap();
    let _prometheus = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus (apt install prometheus)"),
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let probe = loop {
        let up = query(prom_port, r#"up{job="sloguard"}"#).await;
        let probe = query(prom_port, r#"probe_up{job="sloguard",target="web"}"#).await;
        if up["data"]["result"][0]["value"][1] == "1"
            && probe["data"]["result"][0]["value"][1] == "1"
        {
            break probe;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "Prometheus did not get the metrics: up={up} probe={probe}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(probe["data"]["result"][0]["metric"]["target"], "web");
    let info = query(prom_port, "sloguard_build_info").await;
    assert_eq!(
        info["data"]["result"][0]["metric"]["version"],
        env!("CARGO_PKG_VERSION")
    );
    // The daemon's own health, as the issue lists it: rule evaluation time, notifications
    // pending, store size and commits (the write rate), samples written, configuration
    // reloads. Each is a series Prometheus holds.
    for family in [
        "sloguard_rule_evaluation_seconds_total",
        "sloguard_outbox_pending",
        "sloguard_store_size_bytes",
        "sloguard_store_commits_total",
        "sloguard_store_commit_seconds_total",
        "sloguard_samples_total",
        "sloguard_config_last_reload_success_timestamp_seconds",
        "probe_duration_seconds",
    ] {
        let r = query(prom_port, family).await;
        let value: f64 = r["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{family} not in Prometheus: {r}"));
        assert!(value >= 0.0, "{family} = {value}");
    }
    let commits = query(prom_port, "sloguard_store_commits_total").await;
    let commits: f64 = commits["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(commits >= 1.0, "no commit counted");
    let targets: serde_json::Value =
        reqwest::get(format!("http://127.0.0.1:{prom_port}/api/v1/targets"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let t = &targets["data"]["activeTargets"][0];
    assert_eq!(t["health"], "up", "{t}");
    assert_eq!(t["lastError"], "", "{t}");
}
