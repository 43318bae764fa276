//! PostHog-compatible ingest: the official `posthog-node` client (from npm, `tests/node`)
//! pointed at a running daemon sends a gzip batch and single events, which become series and
//! error types; malformed, oversized, bomb and wrong-token bodies are refused with PostHog's
//! status codes and counted in `/metrics`.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{Daemon, free_port, query_agg, sloguard, tempdir};

const TOKEN: &str = "phc_sloguard_test_project_0001";

fn config(port: u16) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
max_ingest_bytes = 65536

[store]
distribution_interval = "1s"

[[logs]]
name = "posthog"
ingest = "posthog"
token = "{TOKEN}"

[[logs.metric]]
name = "client_api_duration_ms"
kind = "distribution"
match = {{ event = "segmentation_api_success" }}
value = "properties.duration_ms"

[[logs.metric]]
name = "client_dashboard_views"
kind = "counter"
match = {{ event = "segmentation_dashboard_viewed" }}
labels = {{ data_mode = "properties.data_mode" }}

[[logs.metric]]
name = "client_js_heap_mb"
kind = "gauge"
match = {{ event = "segmentation_memory_snapshot" }}
value = "properties.used_js_heap_mb"
labels = {{ distinct_id = "distinct_id" }}

[[logs.errors]]
match = {{ event = "segmentation_error_occurred" }}
message = "properties.error_message"
"#
    )
}

pub fn node_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    assert!(
        dir.join("node_modules/posthog-node").exists(),
        "posthog-node is not installed: tests/run.sh runs `npm ci` in {}",
        dir.display()
    );
    dir
}

/// Runs the posthog-node script against `host` with `token`, bounded by 60 s; its exit code
/// and what it printed.
fn posthog_node(host: &str, token: &str) -> (i32, String) {
    node_script("capture.mjs", &[host, token])
}

/// Runs a script of `tests/node` with `args`, bounded by 60 s; its exit code and output.
fn node_script(script: &str, args: &[&str]) -> (i32, String) {
    let dir = node_dir();
    let child = Command::new("node")
        .arg(dir.join(script))
        .args(args)
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node (tests/run.sh installs Node.js)");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => {
            let out = out.expect("wait for node");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.code().unwrap_or(-1), text)
        }
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("node {script} did not finish within 60 s");
        }
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    w.write_all(bytes).unwrap();
    w.finish().unwrap()
}

/// The value of one sample line of `/metrics`.
pub async fn metric(port: u16, line_start: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn one(values: &[(String, f64)], labels: &str) -> f64 {
    values
        .iter()
        .find(|(l, _)| l.contains(labels))
        .unwrap_or_else(|| panic!("no series with {labels} in {values:?}"))
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posthog_node_events_become_series() {
    let dir = tempdir();
    let port = free_port();
    let mut d = Daemon::start(dir.path(), &config(port), &[]).await;
    let host = format!("http://127.0.0.1:{port}");

    let (code, out) = posthog_node(&host, TOKEN);
    assert_eq!(code, 0, "posthog-node reported an error:\n{out}");

    // Answered only once committed: the store holds every event now.
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let count = query_agg(data, "client_api_duration_ms", "1h", "count", &[]);
    assert_eq!(count.len(), 1, "{count:?}");
    assert_eq!(count[0].1, 23.0, "20 in the batch and 3 sent one by one");
    let max = query_agg(data, "client_api_duration_ms", "1h", "max", &[]);
    assert_eq!(max[0].1, 3000.0);
    let sum = query_agg(data, "client_api_duration_ms", "1h", "sum", &[]);
    assert_eq!(sum[0].1, 2100.0 + 6000.0);
    let views = query_agg(data, "client_dashboard_views", "1h", "count", &[]);
    assert_eq!(one(&views, r#""data_mode":"live""#), 7.0);
    assert_eq!(one(&views, r#""data_mode":"demo""#), 3.0);
    let heap = query_agg(data, "client_js_heap_mb", "1h", "last", &[]);
    assert_eq!(one(&heap, r#""distinct_id":"user-1""#), 120.0);
    assert_eq!(one(&heap, r#""distinct_id":"user-2""#), 180.0);

    let out = sloguard(&["errors", "--data-dir", data, "--json"], &[]);
    assert!(out.status.success());
    let types: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(types.as_array().unwrap().len(), 1, "{types}");
    assert_eq!(types[0]["source"], "posthog");
    assert_eq!(types[0]["pattern"], "Segmentation failed for portfolio #");
    assert_eq!(types[0]["count"], 2);

    // Events counted as the source's lines; one batch and three single requests accepted.
    assert_eq!(
        metric(port, r#"sloguard_log_lines_total{source="posthog"}"#).await,
        Some(37.0)
    );
    assert_eq!(
        metric(port, r#"sloguard_ingest_requests_total{result="accepted"}"#).await,
        Some(4.0)
    );

    // The same client with a project token the daemon does not know sees the refusal.
    let (code, out) = posthog_node(&host, "phc_not_a_configured_token");
    assert_eq!(code, 1, "a wrong token must be refused:\n{out}");
    assert!(out.contains("401"), "{out}");
    let count = query_agg(data, "client_api_duration_ms", "1h", "count", &[]);
    assert_eq!(count[0].1, 23.0, "nothing of the refused requests was kept");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_are_refused_and_counted() {
    let dir = tempdir();
    let port = free_port();
    let mut d = Daemon::start(dir.path(), &config(port), &[]).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let post = |path: &str, body: Vec<u8>, ctype: &str| {
        http.post(url(path))
            .header("Content-Type", ctype)
            .body(body)
            .send()
    };
    let event = |token: &str| {
        format!(
            r#"{{"api_key":"{token}","event":"segmentation_api_success","distinct_id":"u","properties":{{"duration_ms":5}}}}"#
        )
    };

    // Accepted: one event as plain JSON, base64 form data (sendBeacon), an array gzipped
    // without any header saying so.
    let r = post("/i/v0/e/", event(TOKEN).into_bytes(), "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"status": 1})
    );
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(event(TOKEN));
    let form = format!(
        "data={}",
        url::form_urlencoded::byte_serialize(b64.as_bytes()).collect::<String>()
    );
    let r = post(
        "/e/?compression=base64&ver=1.449.2",
        form.into_bytes(),
        "application/x-www-form-urlencoded",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let array = format!(
        r#"[{{"event":"segmentation_api_success","properties":{{"token":"{TOKEN}","distinct_id":"u","duration_ms":7}}}}]"#
    );
    let r = post("/e/", gzip(array.as_bytes()), "text/plain")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // An SDK's retry of a request whose answer it lost: the same event uuid counts once.
    let with_uuid = format!(
        r#"{{"api_key":"{TOKEN}","batch":[{{"event":"segmentation_api_success","distinct_id":"u","uuid":"019a6b5e-0000-7000-8000-000000000001","properties":{{"duration_ms":9}}}}]}}"#
    );
    for _ in 0..2 {
        let r = post(
            "/batch/",
            with_uuid.clone().into_bytes(),
            "application/json",
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        metric(
            port,
            r#"sloguard_ingest_duplicate_events_total{source="posthog"}"#
        )
        .await,
        Some(1.0)
    );

    // Refused: not JSON, a missing distinct id, a wrong token, mixed tokens, a body over the
    // limit, and a gzip bomb that stays small until decompressed.
    let r = post("/batch/", b"{not json".to_vec(), "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = post(
        "/capture/",
        format!(r#"{{"api_key":"{TOKEN}","event":"e"}}"#).into_bytes(),
        "application/json",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let r = post("/e/", event("phc_wrong").into_bytes(), "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let mixed = format!(
        r#"[{{"event":"e","distinct_id":"u","api_key":"{TOKEN}"}},{{"event":"e","distinct_id":"u","api_key":"phc_other"}}]"#
    );
    let r = post("/e/", mixed.into_bytes(), "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = post("/batch/", vec![b' '; 100_000], "application/json")
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let bomb = gzip(&vec![b' '; 8 << 20]);
    assert!(bomb.len() < 65536);
    let r = http
        .post(url("/batch/"))
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    // A browser's preflight from the app's origin is answered with that origin.
    let r = http
        .request(reqwest::Method::OPTIONS, url("/e/"))
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(r.headers()["access-control-allow-credentials"], "true");

    for (result, n) in [
        ("accepted", 5.0),
        ("bad_request", 2.0),
        ("unauthorized", 2.0),
        ("too_large", 2.0),
    ] {
        assert_eq!(
            metric(
                port,
                &format!(r#"sloguard_ingest_requests_total{{result="{result}"}}"#)
            )
            .await,
            Some(n),
            "{result}"
        );
    }
    let data = dir.path().join("data");
    let count = query_agg(
        data.to_str().unwrap(),
        "client_api_duration_ms",
        "1h",
        "count",
        &[],
    );
    assert_eq!(
        count[0].1, 4.0,
        "only the accepted events are kept, the repeated one once"
    );
    d.stop().await;
}

/// The official browser SDK, posthog-js, loaded by a page in headless Chromium from another
/// origin, captures two events into the daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posthog_js_in_a_real_browser_posts_to_the_daemon() {
    let dir = tempdir();
    let port = free_port();
    let mut d = Daemon::start(dir.path(), &config(port), &[]).await;
    let sdk =
        std::fs::read_to_string(node_dir().join("node_modules/posthog-js/dist/array.full.js"))
            .expect("posthog-js is installed by tests/run.sh");
    let page = format!(
        r#"<!doctype html><html><head><script src="/posthog.js"></script></head><body><script>
posthog.init('{TOKEN}', {{
  api_host: 'http://127.0.0.1:{port}',
  advanced_disable_flags: true,
  disable_session_recording: true,
  autocapture: false,
  capture_pageview: false,
  request_batching: false,
  persistence: 'memory',
  // posthog-js drops the events of headless browsers as bots unless told not to.
  opt_out_useragent_filter: true,
}});
posthog.capture('segmentation_dashboard_viewed', {{ data_mode: 'live' }});
posthog.capture('segmentation_api_success', {{ duration_ms: 777 }});
document.body.setAttribute('data-captured', 'yes');
</script></body></html>"#
    );
    // The app's own origin, another port on 127.0.0.1.
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
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let profile = tempdir();
    let url = format!("http://127.0.0.1:{app_port}/");
    let profile_path = profile.path().to_path_buf();
    let dom = tokio::task::spawn_blocking(move || {
        crate::dashboard::chromium(
            &profile_path,
            &["--virtual-time-budget=10000", "--dump-dom"],
            &url,
        )
    })
    .await
    .unwrap();
    assert!(
        dom.contains(r#"data-captured="yes""#),
        "the page did not run: {dom}"
    );

    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let views = query_agg(data, "client_dashboard_views", "1h", "count", &[]);
        let ms = query_agg(data, "client_api_duration_ms", "1h", "max", &[]);
        if views.len() == 1 && ms.len() == 1 {
            assert_eq!(one(&views, r#""data_mode":"live""#), 1.0);
            assert_eq!(ms[0].1, 777.0);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "posthog-js's events did not arrive: {views:?} {ms:?}\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.abort();
    d.stop().await;
}

/// Sessions from posthog-node's `$session_id`s over two simulated days (tests/node/sessions.mjs):
/// six sessions end, one of them split by 40 idle minutes; their count, durations, events and
/// refreshes exactly; the seventh is still open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_from_posthog_node_have_exact_counts_and_durations() {
    let dir = tempdir();
    let port = free_port();
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[[logs]]
name = "posthog"
ingest = "posthog"
token = "{TOKEN}"
max_event_age = "4d"

[logs.sessions]
name = "app_sessions"

[[logs.sessions.count]]
name = "refreshes"
match = {{ event = "segmentation_data_refreshed" }}
"#
    );
    let d = Daemon::start(dir.path(), &config, &[]).await;
    // 01:00 UTC of a day two or three days back, so that the simulated days are calendar
    // days (the per-day query below) whatever the time of day now.
    let day = 86_400_000;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let start = (now - 49 * 3_600_000).div_euclid(day) * day + 3_600_000;
    let host = format!("http://127.0.0.1:{port}");
    let (code, out) = node_script("sessions.mjs", &[&host, TOKEN, &start.to_string()]);
    assert_eq!(code, 0, "posthog-node reported an error:\n{out}");

    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let total = |metric: &str, agg: &str| -> f64 {
        let v = query_agg(data, metric, "4d", agg, &[]);
        assert_eq!(v.len(), 1, "{metric}: {v:?}");
        v[0].1
    };
    assert_eq!(total("app_sessions", "sum"), 6.0);
    // 20 + 10 + 10 + 15 + 29 + 0 minutes.
    assert_eq!(total("app_sessions_duration_seconds", "count"), 6.0);
    assert_eq!(total("app_sessions_duration_seconds", "sum"), 5040.0);
    assert_eq!(total("app_sessions_duration_seconds", "max"), 1740.0);
    assert_eq!(total("app_sessions_events", "sum"), 14.0);
    assert_eq!(total("app_sessions_refreshes", "sum"), 5.0);
    assert_eq!(total("app_sessions_refreshes", "count"), 6.0);
    assert_eq!(
        metric(port, r#"sloguard_log_sessions_open{source="posthog"}"#).await,
        Some(1.0)
    );
    // Per day: four sessions ended on the first, two on the second.
    let out = sloguard(
        &[
            "query",
            "app_sessions",
            "--data-dir",
            data,
            "--since",
            "4d",
            "--agg",
            "sum",
            "--step",
            "1d",
            "--format",
            "json",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let days: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut per_day: Vec<f64> = days[0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p[1].as_f64())
        .filter(|v| *v > 0.0)
        .collect();
    per_day.sort_by(f64::total_cmp);
    drop(d);
    assert_eq!(per_day, [2.0, 4.0], "{days}");
}
