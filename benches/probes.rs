//! Uptime probes at scale: `cargo bench --bench probes`.
//!
//! 200 HTTP targets on 127.0.0.1 (one local server, one path each), interval 5 s, retry
//! interval 1 s, timeout 3 s, a rule firing after 3 failures and resolving after 1 success,
//! notifying a local webhook. Measures, on a real `sloguard run` child process:
//! 1. resident memory and CPU time over 60 s of steady probing (from /proc);
//! 2. for 15 flips of a random target to HTTP 500 and 15 to never answering, at random
//!    moments: the time from the flip to the firing notification at the webhook, and from
//!    the recovery to the resolve notification.

use std::collections::VecDeque;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use rand::Rng;
use tokio::net::TcpListener;
use tokio::time::Instant;

#[path = "common/mod.rs"]
mod common;

const TARGETS: usize = 200;
/// Flips per kind; `SLOGUARD_BENCH_FLIPS=0` measures only the steady state.
fn flips() -> usize {
    std::env::var("SLOGUARD_BENCH_FLIPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15)
}
const OK: u8 = 0;
const ERROR: u8 = 1;
const HANG: u8 = 2;

type Modes = Arc<Vec<AtomicU8>>;
type Events = Arc<Mutex<VecDeque<(Instant, String, String)>>>;

async fn target(State(modes): State<Modes>, Path(i): Path<usize>) -> (StatusCode, &'static str) {
    match modes.get(i).map(|m| m.load(Ordering::SeqCst)) {
        Some(ERROR) => (StatusCode::INTERNAL_SERVER_ERROR, "error"),
        Some(HANG) => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            (StatusCode::OK, "late")
        }
        _ => (StatusCode::OK, "ok"),
    }
}

async fn hook(State(events): State<Events>, body: axum::Json<serde_json::Value>) -> &'static str {
    let status = body["status"].as_str().unwrap_or_default().to_string();
    let target = body["labels"]["target"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    events
        .lock()
        .unwrap()
        .push_back((Instant::now(), status, target));
    "ok"
}

/// Waits for a notification with `status` about `target`; returns when it arrived.
async fn wait_event(
    events: &Events,
    status: &str,
    target: &str,
    limit: Duration,
) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        {
            let mut q = events.lock().unwrap();
            if let Some(pos) = q.iter().position(|(_, s, t)| s == status && t == target) {
                return q.remove(pos).map(|(at, _, _)| at);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn summary(name: &str, mut v: Vec<f64>) {
    v.sort_by(|a, b| a.total_cmp(b));
    println!(
        "  {name}: median {:.2} s, p90 {:.2} s, max {:.2} s (n = {})",
        percentile(&v, 0.5),
        percentile(&v, 0.9),
        v[v.len() - 1],
        v.len()
    );
}

#[tokio::main]
async fn main() {
    let modes: Modes = Arc::new((0..TARGETS).map(|_| AtomicU8::new(OK)).collect());
    let events: Events = Arc::new(Mutex::new(VecDeque::new()));
    let targets = Router::new()
        .route("/t/{i}", get(target))
        .with_state(modes.clone());
    let hooks = Router::new()
        .route("/hook", post(hook))
        .with_state(events.clone());
    let tl = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hl = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (taddr, haddr) = (tl.local_addr().unwrap(), hl.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(tl, targets).await });
    tokio::spawn(async move { axum::serve(hl, hooks).await });

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = format!(
        r#"
[daemon]
log_level = "warn"
[server]
listen = "127.0.0.1:0"
[outbox]
initial_backoff = "200ms"
[routing]
critical = ["hook"]
[[channels]]
name = "hook"
type = "webhook"
url = "http://{haddr}/hook"
[[rules]]
name = "down"
kind = "consecutive"
fire_after = 3
resolve_after = 1
severity = "critical"
summary = "{{target}} down"
"#
    );
    for i in 0..TARGETS {
        cfg.push_str(&format!(
            "[[targets]]\nname = \"t{i:03}\"\nurl = \"http://{taddr}/t/{i}\"\ninterval = \"5s\"\nretry_interval = \"1s\"\ntimeout = \"3s\"\n"
        ));
    }
    let config = dir.path().join("config.toml");
    std::fs::write(&config, cfg).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sloguard"))
        .args(["run", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();

    // 1. Steady probing: memory and CPU over 60 s, after 10 s of warm-up.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let cpu0 = common::cpu_seconds(pid);
    let mut rss_max = 0;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_max = rss_max.max(common::status_kib(&pid.to_string(), "VmRSS:"));
    }
    let (cpu1, rss_end) = (
        common::cpu_seconds(pid),
        common::status_kib(&pid.to_string(), "VmRSS:"),
    );
    println!("probes bench: {TARGETS} targets, interval 5 s, retry 1 s, timeout 3 s");
    println!(
        "  steady state: {:.2} CPU-seconds per minute, resident memory {:.1} MiB at the end, {:.1} MiB at most",
        cpu1 - cpu0,
        rss_end as f64 / 1024.0,
        rss_max as f64 / 1024.0
    );

    // 2. Flips.
    for (mode, name) in [(ERROR, "HTTP 500"), (HANG, "hang")] {
        let (mut fire, mut resolve) = (Vec::new(), Vec::new());
        for _ in 0..flips() {
            let i = rand::rng().random_range(0..TARGETS);
            let wait = rand::rng().random_range(0..5000);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let name_i = format!("t{i:03}");
            modes[i].store(mode, Ordering::SeqCst);
            let flipped = Instant::now();
            let Some(fired) = wait_event(&events, "firing", &name_i, Duration::from_secs(60)).await
            else {
                println!("  {name}: no firing notification for {name_i} within 60 s");
                continue;
            };
            fire.push((fired - flipped).as_secs_f64());
            modes[i].store(OK, Ordering::SeqCst);
            let recovered = Instant::now();
            match wait_event(&events, "resolved", &name_i, Duration::from_secs(60)).await {
                Some(at) => resolve.push((at - recovered).as_secs_f64()),
                None => println!("  {name}: no resolve notification for {name_i} within 60 s"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if !fire.is_empty() {
            summary(&format!("{name}: flip → firing notification"), fire);
        }
        if !resolve.is_empty() {
            summary(&format!("{name}: recovery → resolve notification"), resolve);
        }
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}
