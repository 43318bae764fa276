//! The dashboard in a real browser: headless Chromium (Debian's package) opens the page of a
//! daemon running `sloguard demo`; the charts carry the demo's data in the DOM and in the
//! pixels of a screenshot, kept as `target/tmp/dashboard-demo.png`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::BIN;

const CHROMIUM: &str = "/usr/bin/chromium";

/// A child process killed by PID when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs Chromium headless on `args` + `url`, bounded by 60 s; its standard output.
pub fn chromium(profile: &Path, args: &[&str], url: &str) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: tests/run.sh installs Debian's chromium"
    );
    let child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => String::from_utf8_lossy(&out.expect("wait for chromium").stdout).into_owned(),
        Err(_) => {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            panic!("chromium did not finish within 60 s");
        }
    }
}

/// The `data-points` of every element of `class` in the DOM, in order.
fn data_points(dom: &str, class: &str) -> Vec<usize> {
    let needle = format!(r#"class="{class}" data-points=""#);
    dom.match_indices(&needle)
        .filter_map(|(i, _)| {
            dom[i + needle.len()..]
                .split('"')
                .next()
                .and_then(|n| n.parse().ok())
        })
        .collect()
}

/// Pixels of the screenshot within a few levels of `rgb`.
fn pixels_of(png_path: &Path, rgb: [u8; 3]) -> usize {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|p| (0..3).all(|c| p[c].abs_diff(rgb[c]) <= 12))
        .count()
}

#[test]
fn chromium_shows_the_demos_charts_with_data() {
    let started = Instant::now();
    let mut demo = Command::new(BIN);
    demo.args(["demo", "--duration", "60s"])
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut demo = Guard(demo.spawn().expect("start sloguard demo"));
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let out = demo.0.stdout.take().unwrap();
        let lines = lines.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        });
    }
    let url = loop {
        let found = lines
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| l.strip_prefix("Dashboard: ").map(str::to_string));
        if let Some(u) = found {
            break u;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the demo printed no dashboard URL: {:?}",
            lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    // After the outage (6–18 s), the latency spike (19–24 s) and the heap (19–25 s).
    std::thread::sleep(Duration::from_secs(28).saturating_sub(started.elapsed()));

    let profile = crate::util::tempdir();
    let dom = chromium(profile.path(), &["--dump-dom"], &url);
    assert!(
        dom.contains("Customer Segmentation (sloguard demo)"),
        "{dom}"
    );
    // Five panels, each with data; the latency panel with its three percentiles.
    let charts = data_points(&dom, "chart");
    assert_eq!(charts.len(), 5, "{dom}");
    assert!(
        charts.iter().all(|n| *n >= 10),
        "points per chart: {charts:?}"
    );
    for p in ["p50", "p95", "p99"] {
        assert!(
            dom.contains(&format!(r#"data-series="{p}""#)),
            "no {p} line in {dom}"
        );
    }
    assert!(
        dom.contains(r#"data-series="JS heap {user=demo-user}""#),
        "{dom}"
    );
    // The uptime strips, the outage's alerts in the history, the SLO's budget.
    let strips = data_points(&dom, "strip");
    assert_eq!(strips.len(), 2, "{dom}");
    assert!(strips.iter().all(|n| *n > 0), "{strips:?}");
    assert!(dom.contains("segmentation_api_down"), "{dom}");
    assert!(dom.contains(r#"<tr class="slo">"#), "{dom}");

    // The pixels: the first line colour of every chart and the green of the uptime strips.
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-demo.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,2400",
        ],
        &url,
    );
    assert!(shot.exists(), "no screenshot at {}", shot.display());
    let blue = pixels_of(&shot, [0x00, 0x72, 0xb2]);
    let green = pixels_of(&shot, [0x2d, 0xa4, 0x4e]);
    assert!(blue > 500, "{blue} pixels of the first line colour");
    assert!(green > 100, "{green} pixels of the uptime strips' green");

    // The demo stops on Ctrl-C and says so.
    let _ = kill(Pid::from_raw(demo.0.id() as i32), Signal::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(20);
    while demo.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the demo did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("screenshot: {}", shot.display());
}

/// The JSON API of the page, `/healthz`, and no secret anywhere in either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_api_reports_uptime_and_slos_and_hides_secrets() {
    use crate::util::{Daemon, Receiver, Target, free_port, tempdir};
    let dir = tempdir();
    let target = Target::start().await;
    let slack = Receiver::start().await;
    let port = free_port();
    let api_token = "s3cr3t-api-token-0123456789";
    let slack_url = slack.url("/services/T000/B000/s3cr3t-slack-path");
    let cfg = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
token = "{api_token}"

[routing]
warning = ["slack"]
critical = ["slack"]

[[channels]]
name = "slack"
type = "slack"
webhook_url = "{slack_url}"

[[targets]]
name = "web"
url = "{url}"
interval = "200ms"

[[rules]]
name = "web_availability"
kind = "slo"
objective = 99.5
up = {{ metric = "probe_up", match = {{ target = "web" }} }}
every = "1s"
summary = "Web availability"
"#,
        url = target.url()
    );
    let _d = Daemon::start(dir.path(), &cfg, &[]).await;
    let base = format!("http://127.0.0.1:{port}");
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");

    // Wait for a few probes.
    let deadline = Instant::now() + Duration::from_secs(20);
    let d: serde_json::Value = loop {
        let d: serde_json::Value = reqwest::get(format!("{base}/api/v1/dashboard?range=1h"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if d["uptime"][0]["steps"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
            && d["panels"][0]["series"][0]["points"]
                .as_array()
                .is_some_and(|p| !p.is_empty())
        {
            break d;
        }
        assert!(Instant::now() < deadline, "no data on the dashboard: {d}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(d["range"], "1h");
    assert_eq!(d["step_ms"], 30_000, "about 300 points at most");
    assert_eq!(d["uptime"][0]["target"], "web");
    assert_eq!(d["uptime"][0]["uptime"], 100.0);
    assert_eq!(d["uptime"][0]["up"], true);
    assert_eq!(d["slos"][0]["rule"], "web_availability");
    assert_eq!(d["slos"][0]["objective"], 99.5);
    assert_eq!(d["slos"][0]["attained"], 100.0);
    assert_eq!(d["slos"][0]["budget_left"], 100.0);
    // Without configured panels: the probe durations.
    assert_eq!(d["panels"][0]["title"], "Probe duration");
    assert_eq!(d["panels"][0]["series"][0]["label"], "probe {target=web}");

    let page = reqwest::get(format!("{base}/?range=7d")).await.unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains(r#"<a href="?range=7d" class="on">7d</a>"#));
    assert!(page.contains("Web availability"));
    let bad = reqwest::get(format!("{base}/?range=forever"))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let json = d.to_string();
    for secret in [api_token, "s3cr3t-slack-path"] {
        assert!(!page.contains(secret), "{secret} in the page");
        assert!(!json.contains(secret), "{secret} in the JSON");
    }
}
