//! PostHog capture: what the official SDKs send, and how fast the daemon takes it.
//! `cargo bench --bench capture`.
//!
//! 1. **posthog-js request sizes**: a page in headless Chromium (Debian's `chromium`) loads
//!    posthog-js from `tests/node` (tests/run.sh installs it) and captures bursts of 1, 100
//!    and 1 000 seed events with its default batching; a local server stands in for the
//!    host and records each request's body as sent and decompressed.
//! 2. **Throughput on one core**: a `sloguard run` (release build), pinned to one core
//!    (`taskset -c 0`), with an ingest source like config.toml.example's; the official
//!    posthog-node client (`tests/node/throughput.mjs`), pinned to the other core, sends
//!    `SLOGUARD_BENCH_EVENTS` seed events (default 200 000) in its default batches of 100,
//!    one request at a time, as a server-side producer does. Reports the events a second
//!    the client got accepted, the daemon's CPU time and resident memory, and the sizes of
//!    posthog-node's requests.
//!
//! `SLOGUARD_BENCH_BIN` runs another build of the daemon (an older commit's, for a before
//! and after); `SLOGUARD_BENCH_BEFORE=1` leaves out the configuration fields older builds do
//! not know (the source's rate limits).

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "common/mod.rs"]
mod common;

const TOKEN: &str = "phc_capture_bench_token_01";

fn node_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// What the stand-in host received: (bytes as sent, bytes decompressed) per request.
type Sizes = Arc<Mutex<Vec<(usize, usize)>>>;

async fn record(
    axum::extract::State(sizes): axum::extract::State<Sizes>,
    body: axum::body::Bytes,
) -> &'static str {
    let raw = if body.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .map(|_| out.len())
            .unwrap_or(body.len())
    } else {
        body.len()
    };
    sizes.lock().unwrap().push((body.len(), raw));
    r#"{"status":1}"#
}

/// Part 1: the requests posthog-js makes for bursts of `burst` events.
async fn posthog_js_sizes(burst: usize) -> Option<Vec<(usize, usize)>> {
    if !std::path::Path::new("/usr/bin/chromium").exists() {
        println!("posthog-js: skipped, /usr/bin/chromium is missing");
        return None;
    }
    let sdk =
        std::fs::read_to_string(node_dir().join("node_modules/posthog-js/dist/array.full.js"))
            .ok()?;
    let sizes: Sizes = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let page = format!(
        r#"<!doctype html><html><head><script src="/posthog.js"></script></head><body><script>
posthog.init('{TOKEN}', {{
  api_host: 'http://127.0.0.1:{port}',
  advanced_disable_flags: true,
  disable_session_recording: true,
  autocapture: false,
  capture_pageview: false,
  persistence: 'memory',
  opt_out_useragent_filter: true,
}});
for (let i = 0; i < {burst}; i++) {{
  posthog.capture('segmentation_api_success', {{ duration_ms: 100 + i, customer_count: 120, segment_count: 4 }});
}}
document.body.setAttribute('data-captured', 'yes');
</script></body></html>"#
    );
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(move || {
                let page = page.clone();
                async move { axum::response::Html(page) }
            }),
        )
        .route(
            "/posthog.js",
            axum::routing::get(move || {
                let sdk = sdk.clone();
                async move { ([("content-type", "application/javascript")], sdk) }
            }),
        )
        .fallback(axum::routing::post(record))
        .with_state(sizes.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args([
                "60",
                "/usr/bin/chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
            ])
            .args(["--no-first-run", "--disable-background-networking"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--virtual-time-budget=15000", "--dump-dom"])
            .arg(url)
            .stderr(Stdio::null())
            .output()
    })
    .await
    .unwrap()
    .ok()?;
    server.abort();
    let dom = String::from_utf8_lossy(&out.stdout);
    if !dom.contains("data-captured") {
        println!("posthog-js: the page did not run");
        return None;
    }
    let got = sizes.lock().unwrap().clone();
    Some(got)
}

fn config(port: u16, before: bool) -> String {
    let limits = if before {
        ""
    } else {
        "max_events_per_second = 1000000\nmax_bytes_per_second = 1073741824\n"
    };
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[[logs]]
name = "posthog"
ingest = "posthog"
token = "{TOKEN}"
{limits}
[[logs.metric]]
name = "client_js_heap_mb"
kind = "gauge"
match = {{ event = "segmentation_memory_snapshot" }}
value = "properties.used_js_heap_mb"
labels = {{ user = "distinct_id" }}
max_series = 500

[[logs.metric]]
name = "client_dashboard_views"
kind = "counter"
match = {{ event = "segmentation_dashboard_viewed" }}
labels = {{ data_mode = "properties.data_mode" }}

[[logs.metric]]
name = "client_api_duration_ms"
kind = "distribution"
match = {{ event = "segmentation_api_success" }}
value = "properties.duration_ms"

[[logs.metric]]
name = "client_api_calls"
kind = "counter"
match_regex = {{ event = "^segmentation_api_(success|error)$" }}
labels = {{ event = "event" }}

[[logs.errors]]
match = {{ event = "segmentation_error_occurred" }}
message = "properties.error_message"
"#
    )
}

#[tokio::main]
async fn main() {
    for burst in [1, 100, 1000] {
        if let Some(sizes) = posthog_js_sizes(burst).await {
            let max_sent = sizes.iter().map(|s| s.0).max().unwrap_or(0);
            let max_raw = sizes.iter().map(|s| s.1).max().unwrap_or(0);
            println!(
                "posthog-js, a burst of {burst} events: {} requests, the largest {max_sent} bytes as sent, {max_raw} decompressed",
                sizes.len()
            );
        }
    }

    let bin = std::env::var("SLOGUARD_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_sloguard").to_string());
    let before = std::env::var_os("SLOGUARD_BENCH_BEFORE").is_some();
    let events: u64 = std::env::var("SLOGUARD_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, config(port, before)).unwrap();
    let mut daemon = Command::new("taskset")
        .args(["-c", "0", &bin, "run", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("SLOGUARD_LOG", "warn")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("taskset (util-linux) and the sloguard binary");
    let pid = daemon.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the daemon did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let cpu_before = common::cpu_seconds(pid);
    let out = Command::new("taskset")
        .args(["-c", "1", "node"])
        .arg(node_dir().join("throughput.mjs"))
        .arg(format!("http://127.0.0.1:{port}"))
        .arg(TOKEN)
        .arg(events.to_string())
        .output()
        .expect("node and tests/node (tests/run.sh installs them)");
    let (cpu_after, hwm_kib) = (
        common::cpu_seconds(pid),
        common::status_kib(&pid.to_string(), "VmHWM:"),
    );
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let _ = daemon.wait();
    let line = String::from_utf8_lossy(&out.stdout);
    let r: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| {
        panic!(
            "posthog-node's report ({e}): {line}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let seconds = r["seconds"].as_f64().unwrap_or(f64::NAN);
    let cpu = cpu_after - cpu_before;
    println!(
        "posthog-node: {events} events in {} requests (the largest {} bytes as sent, {} decompressed; {:?}), failed batches {}",
        r["requests"], r["max_body"], r["max_raw"], r["encodings"], r["failed"]
    );
    println!(
        "sloguard on one core: accepted in {seconds:.2} s = {:.0} events/s; daemon {cpu:.2} CPU-s = {:.0} events per CPU-second; VmHWM {:.1} MiB",
        events as f64 / seconds,
        events as f64 / cpu,
        hwm_kib as f64 / 1024.0
    );
}
