//! `sloguard demo`: the whole pipeline against a built-in simulated application, with no setup.
//!
//! It starts, all on 127.0.0.1: a simulated "segmentation API" whose health endpoint fails
//! on a schedule, a stand-in Slack webhook that prints what it receives, and a real daemon
//! (probes, store, rules, outbox, Slack channel) with a temporary data directory.

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::daemon::{self, RunOptions};

/// When the simulated app is down, counted from the start of the demo.
const DOWN_FROM: Duration = Duration::from_secs(6);
const DOWN_UNTIL: Duration = Duration::from_secs(18);

fn app_is_down(started: Instant) -> bool {
    let t = started.elapsed();
    t >= DOWN_FROM && t < DOWN_UNTIL
}

/// When the app's requests are slow (a latency spike), and when its client heap is high.
const SLOW: std::ops::Range<u64> = 19..24;
const HEAP_HIGH: std::ops::Range<u64> = 19..25;

/// Writes the app's JSON log like the seed's middleware does: about 40 requests a second,
/// each a success with its duration or (while the database is down) an error.
async fn write_app_log(path: std::path::PathBuf, started: Instant, stop: CancellationToken) {
    use tokio::io::AsyncWriteExt;
    let Ok(mut file) = tokio::fs::File::create(&path).await else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    let mut i: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        i += 1;
        let second = started.elapsed().as_secs();
        let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let base = 120 + (i * 7919) % 260;
        let mut text = if app_is_down(started) {
            format!(
                r#"{{"event":"api_segmentation_error","duration_ms":{},"error":"Cannot connect to database at 10.0.0.{}:5432","timestamp":"{ts}"}}"#,
                20 + i % 60,
                i % 4 + 1
            )
        } else {
            let ms = if SLOW.contains(&second) {
                base * 6
            } else {
                base
            };
            format!(
                r#"{{"event":"api_segmentation_success","duration_ms":{ms},"customer_count":{},"timestamp":"{ts}"}}"#,
                1200 + i % 50
            )
        };
        text.push('\n');
        if file.write_all(text.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The demo's PostHog project token.
const POSTHOG_TOKEN: &str = "phc_sloguard_demo_project";

/// The browser side of the app, as posthog-js would report it to the daemon's capture
/// endpoint once a second: a gzip batch with a heap snapshot (182 MB during `HEAP_HIGH`), a
/// dashboard view by data mode and, now and then, a segment click.
async fn send_client_events(
    daemon: std::net::SocketAddr,
    started: Instant,
    stop: CancellationToken,
) {
    use std::io::Write as _;
    let client = reqwest::Client::new();
    let url = format!("http://{daemon}/batch/");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        n += 1;
        let second = started.elapsed().as_secs();
        let heap = if HEAP_HIGH.contains(&second) {
            182
        } else {
            96 + n % 7
        };
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let segments = ["Champions", "Loyal", "At risk", "Hibernating"];
        // Each user's browser tab lives 10 s (a new `$session_id` then), so that the demo's
        // sessions end while it runs (its `idle` is 5 s).
        let user = n % 3;
        let session = |u: u64| format!("demo-session-{u}-{}", n / 10);
        let mut batch = vec![
            serde_json::json!({"event": "segmentation_memory_snapshot", "distinct_id": "demo-user",
                "timestamp": now, "properties": {"used_js_heap_mb": heap, "total_js_heap_mb": heap + 40, "$lib": "web"}}),
            serde_json::json!({"event": "segmentation_dashboard_viewed", "distinct_id": format!("user-{user}"),
                "timestamp": now, "properties": {"data_mode": if n.is_multiple_of(4) { "demo" } else { "live" }, "segment_count": 4,
                "$session_id": session(user)}}),
        ];
        if n.is_multiple_of(2) {
            batch.push(serde_json::json!({"event": "segmentation_segment_clicked", "distinct_id": format!("user-{user}"),
                "timestamp": now, "properties": {"segment_name": segments[(n as usize / 2) % 4], "$session_id": session(user)}}));
        }
        let body = serde_json::json!({"api_key": POSTHOG_TOKEN, "batch": batch, "sent_at": now});
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        if gz.write_all(body.to_string().as_bytes()).is_err() {
            continue;
        }
        let Ok(gz) = gz.finish() else { continue };
        // Before the daemon listens, and after it stops, the events are lost: as in a browser.
        let _ = client
            .post(&url)
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            .timeout(Duration::from_secs(2))
            .body(gz)
            .send()
            .await;
    }
}

/// A socket on 127.0.0.1:9797 when it is free, else on any free port.
fn dashboard_socket() -> std::io::Result<std::net::TcpListener> {
    match std::net::TcpListener::bind("127.0.0.1:9797") {
        Ok(l) => Ok(l),
        Err(_) => std::net::TcpListener::bind("127.0.0.1:0"),
    }
}

/// `keep`: the daemon goes on after `duration`, until Ctrl-C.
pub async fn run(duration: Duration, keep: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let stop = CancellationToken::new();

    let app = Router::new()
        .route(
            "/health",
            get(move || async move {
                if app_is_down(started) {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        r#"{"status": "down", "error": "Cannot connect to database"}"#,
                    )
                } else {
                    (StatusCode::OK, r#"{"status": "ok"}"#)
                }
            }),
        )
        // Supabase-shaped database metrics: about 40 commits a second, none while down.
        .route(
            "/customer/v1/privileged/metrics",
            get(move || async move {
                let t = started.elapsed().as_secs_f64();
                let down = app_is_down(started);
                let lost = (DOWN_UNTIL.min(started.elapsed()).as_secs_f64()
                    - DOWN_FROM.as_secs_f64())
                .max(0.0);
                let commits = ((t - lost) * 40.0) as u64;
                format!(
                    "# TYPE pg_up gauge\npg_up{{service_type=\"db\"}} {}\n\
                     # TYPE pg_stat_database_xact_commit_total counter\n\
                     pg_stat_database_xact_commit_total{{datname=\"postgres\"}} {commits}\n",
                    if down { 0 } else { 1 }
                )
            }),
        );
    let app_listener = TcpListener::bind("127.0.0.1:0").await?;
    let app_addr = app_listener.local_addr()?;

    let slack = Router::new()
        .route(
            "/v2/enqueue",
            post(|body: axum::Json<serde_json::Value>| async move {
                println!(
                    "[PagerDuty stand-in] {} dedup_key={}",
                    body["event_action"].as_str().unwrap_or_default(),
                    body["dedup_key"].as_str().unwrap_or_default()
                );
                (StatusCode::ACCEPTED, "{\"status\":\"success\"}")
            }),
        )
        .route(
            "/slack",
            post(|body: axum::Json<serde_json::Value>| async move {
                let text = body
                    .get("text")
                    .and_then(|t| t.as_str())
                    .unwrap_or_default();
                let text = text
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&");
                // One write, so that the PagerDuty stand-in's line, printed from another
                // task, never lands inside the message.
                let mut block =
                    String::from("\n┌── Slack message received ─────────────────────────\n");
                for line in text.lines() {
                    block.push_str(&format!("│ {line}\n"));
                }
                block.push_str("└───────────────────────────────────────────────────\n");
                println!("{block}");
                "ok"
            }),
        );
    let slack_listener = TcpListener::bind("127.0.0.1:0").await?;
    let slack_addr = slack_listener.local_addr()?;

    let servers = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let a = axum::serve(app_listener, app)
                .with_graceful_shutdown(stop.clone().cancelled_owned());
            let s =
                axum::serve(slack_listener, slack).with_graceful_shutdown(stop.cancelled_owned());
            let _ = tokio::join!(a, s);
        })
    };

    let dir = tempfile::Builder::new()
        .prefix("sloguard-demo-")
        .tempdir()?;
    let config_path = dir.path().join("config.toml");
    let daemon_socket = std::sync::Arc::new(dashboard_socket()?);
    let daemon_addr = daemon_socket.local_addr()?;
    let text = format!(
        r#"# Written by `sloguard demo`.
[daemon]
data_dir = "{data}"

# 9797 unless a daemon runs there already: the dashboard and the PostHog capture endpoint.
[server]
listen = "{daemon_addr}"

[dashboard]
title = "Customer Segmentation (sloguard demo)"
default_range = "2m"
refresh = "5s"

[[dashboard.panel]]
title = "API latency"
unit = "ms"
series = [
  {{ label = "p50", metric = "app_request_duration_ms", agg = "p50" }},
  {{ label = "p95", metric = "app_request_duration_ms", agg = "p95" }},
  {{ label = "p99", metric = "app_request_duration_ms", agg = "p99" }},
]

[[dashboard.panel]]
title = "Error rate"
unit = "%"
series = [
  {{ label = "errors", numerator = {{ metric = "app_requests", match = {{ event = "api_segmentation_error" }} }}, denominator = {{ metric = "app_requests" }}, scale = 100 }},
]

[[dashboard.panel]]
title = "Requests"
unit = "req/min"
series = [{{ label = "requests", metric = "app_requests", agg = "rate", scale = 60 }}]

[[dashboard.panel]]
title = "Client memory (PostHog)"
unit = "MB"
series = [{{ label = "JS heap", metric = "client_js_heap_mb", agg = "max" }}]

[[dashboard.panel]]
title = "Database commits"
unit = "/s"
series = [{{ label = "commits", metric = "pg_stat_database_xact_commit_per_second" }}]

[routing]
warning = ["slack"]
critical = ["slack", "pagerduty"]

[[channels]]
name = "slack"
type = "slack"
webhook_url = "http://{slack_addr}/slack"

[[channels]]
name = "pagerduty"
type = "pagerduty"
routing_key = "demo-routing-key"
events_url = "http://{slack_addr}"
source = "sloguard-demo"

# Probed every 5 s; after a failure, every second until 3 failures confirm it.
[[targets]]
name = "segmentation-api"
url = "http://{app_addr}/health"
interval = "5s"
retry_interval = "1s"
timeout = "500ms"
body_json = ['$.status == "ok"']

# The same app's TCP port.
[[targets]]
type = "tcp"
name = "segmentation-api-port"
address = "{app_addr}"
interval = "5s"
timeout = "500ms"

# Log counters and latencies summed per second (10 s by default), for short demo windows.
[store]
distribution_interval = "1s"

# The app's JSON log, as its middleware writes it.
[[logs]]
name = "app"
files = ["{log}"]
start_at = "beginning"
poll_interval = "100ms"
timestamp = "timestamp"

[[logs.metric]]
name = "app_requests"
kind = "counter"
match_regex = {{ event = "^api_segmentation_" }}
labels = {{ event = "event" }}

[[logs.metric]]
name = "app_request_duration_ms"
kind = "distribution"
value = "duration_ms"
match = {{ event = "api_segmentation_success" }}

[[logs.metric]]
name = "app_customers"
kind = "gauge"
value = "customer_count"
match = {{ event = "api_segmentation_success" }}

[[logs.errors]]
match = {{ event = "api_segmentation_error" }}
message = "error"

# The browser's events, sent by the PostHog SDK to this daemon instead of PostHog.
[[logs]]
name = "posthog"
ingest = "posthog"
token = "{POSTHOG_TOKEN}"

# Sessions by `$session_id`; idle 5 s here (30 minutes, PostHog's rule, by default).
[logs.sessions]
name = "client_sessions"
idle = "5s"

[[logs.sessions.count]]
name = "segment_clicks"
match = {{ event = "segmentation_segment_clicked" }}

[[logs.metric]]
name = "client_js_heap_mb"
kind = "gauge"
match = {{ event = "segmentation_memory_snapshot" }}
value = "properties.used_js_heap_mb"
labels = {{ user = "distinct_id" }}

[[logs.metric]]
name = "client_dashboard_views"
kind = "counter"
match = {{ event = "segmentation_dashboard_viewed" }}
labels = {{ data_mode = "properties.data_mode" }}

[[logs.metric]]
name = "client_segment_clicks"
kind = "counter"
match = {{ event = "segmentation_segment_clicked" }}
labels = {{ segment = "properties.segment_name" }}

# The database's metrics, as Supabase serves them, every 2 s.
[[scrapes]]
name = "supabase"
url = "http://{app_addr}/customer/v1/privileged/metrics"
interval = "2s"
keep = ["pg_up", "pg_stat_database_xact_commit_total"]

# Where reports would be mailed (nothing listens there: the demo prints its report).
[[channels]]
name = "report-mail"
type = "email"
smtp_host = "127.0.0.1"
smtp_port = 9
tls = "none"
from = "sloguard <reports@example.com>"
to = ["product@example.com"]

# The weekly usage summary, here over the demo's last two minutes; printed at the end as
# `sloguard report --name demo --print` would print it.
[[reports]]
name = "demo"
title = "Customer Segmentation — usage summary (demo)"
schedule = "0 9 * * MON"
channel = "report-mail"
window = "2m"
sections = ["slo", "alerts", "usage", "daemon"]

[[reports.usage]]
title = "Dashboard views"
metric = "client_dashboard_views"
by = "data_mode"

[[reports.usage]]
title = "Segment clicks"
metric = "client_segment_clicks"
by = "segment"

[[reports.usage]]
title = "Users"
distinct = {{ metric = "client_js_heap_mb", label = "user" }}

[[reports.usage]]
title = "Sessions"
metric = "client_sessions"

[[reports.usage]]
title = "Average session duration (s)"
metric = "client_sessions_duration_seconds"
agg = "avg"

[[reports.usage]]
title = "Segment clicks per session"
metric = "client_sessions_segment_clicks"
agg = "avg"

[[rules]]
name = "segmentation_api_down"
kind = "consecutive"
match = {{ target = "segmentation-api" }}
fire_after = 3
resolve_after = 2
severity = "critical"
summary = "Segmentation API down"
runbook_url = "https://docs.example.com/runbooks/segmentation-api"

# The availability SLO, 99.9 % of probes: the outage burns the error budget hundreds of
# times too fast (the SRE workbook's burn-rate alerts), which pages.
[[rules]]
name = "api_availability_slo"
kind = "slo"
objective = 99.9
up = {{ metric = "probe_up", match = {{ target = "segmentation-api" }} }}
every = "1s"
summary = "Segmentation API availability SLO at risk"

# From the log: more than half the requests of the last 4 s failed (at least 20 of them).
[[rules]]
name = "api_error_ratio"
kind = "ratio"
numerator = {{ metric = "app_requests", match = {{ event = "api_segmentation_error" }} }}
denominator = {{ metric = "app_requests" }}
window = "4s"
condition = "> 0.5"
resolve = "< 0.2"
min_volume = 20
every = "1s"
severity = "warning"
summary = "API error rate above 50 %"

# From the log: an error type not seen in the week before.
[[rules]]
name = "api_new_error_type"
kind = "new_error_type"
source = "app"
every = "1s"
severity = "warning"
summary = "New API error: {{pattern}}"

# From the log: p95 of the requests of the last 3 s above 600 ms.
[[rules]]
name = "api_latency_p95"
kind = "threshold"
metric = "app_request_duration_ms"
agg = "p95"
window = "3s"
condition = "> 600"
resolve = "< 500"
context = [{{ metric = "app_customers", agg = "max" }}]
every = "1s"
severity = "warning"
summary = "API p95 latency above 600 ms"

# From the PostHog events: a user's heap growing more than 50 MB from one report (refresh)
# to the next pages at once; it resolves with the next report that does not grow.
[[rules]]
name = "client_heap_growth"
kind = "growth"
metric = "client_js_heap_mb"
between = "samples"
window = "1m"
condition = "> 50"
every = "1s"
severity = "critical"
summary = "Client heap grew more than 50 MB in one refresh (user {{user}})"
# Anyone with the public project token can send a heap: critical in Slack, never a page.
channels = ["slack"]

# From the PostHog events: a user's heap above 150 MB three reports in a row.
[[rules]]
name = "client_heap_high"
kind = "consecutive"
metric = "client_js_heap_mb"
condition = "> 150"
fire_after = 3
resolve_after = 2
severity = "warning"
summary = "Client heap above 150 MB"
"#,
        data = dir.path().join("data").display(),
        log = dir.path().join("app.log").display(),
    );
    std::fs::write(&config_path, text)?;
    let cfg = config::load(&config_path)?;
    let cfg_for_report = cfg.clone();

    println!(
        "sloguard demo: a simulated app on http://{app_addr}/health and a stand-in Slack on http://{slack_addr}/slack"
    );
    println!(
        "The app fails from {}s to {}s. It is probed every 5s; after a failure, every 1s, so the rule's 3 failures are confirmed in about 2s. It resolves after 2 good probes.",
        DOWN_FROM.as_secs(),
        DOWN_UNTIL.as_secs()
    );
    println!("Configuration used: {}\n", config_path.display());

    let announcer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut was_down = false;
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => return,
                }
                let down = app_is_down(started);
                if down != was_down {
                    println!(
                        "[demo app, {:>4.1}s] {}",
                        started.elapsed().as_secs_f64(),
                        if down {
                            "now answering HTTP 503"
                        } else {
                            "healthy again"
                        }
                    );
                    was_down = down;
                }
            }
        })
    };

    let log_writer = tokio::spawn(write_app_log(
        dir.path().join("app.log"),
        started,
        stop.clone(),
    ));
    println!(
        "The app logs ~40 requests a second to {}: errors while it is down, a latency spike from {}s to {}s.",
        dir.path().join("app.log").display(),
        SLOW.start,
        SLOW.end,
    );

    let client_events = tokio::spawn(send_client_events(daemon_addr, started, stop.clone()));
    println!(
        "The app's browser sends PostHog events (heap snapshots, dashboard views, segment clicks) to http://{daemon_addr}/batch/: the heap is 182 MB from {}s to {}s.",
        HEAP_HIGH.start, HEAP_HIGH.end
    );
    println!("\nDashboard: http://{daemon_addr}/");
    if keep {
        println!("(it stays up after the demo until Ctrl-C)\n");
    } else {
        println!(
            "(open it while the demo runs; `sloguard demo --keep` keeps it up until Ctrl-C)\n"
        );
    }

    let daemon_stop = CancellationToken::new();
    let timer = {
        let t = daemon_stop.clone();
        tokio::spawn(async move {
            if keep {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(duration).await;
            t.cancel();
        })
    };
    let demo_from = crate::clock::now_ms();
    let opts = RunOptions {
        listener: Some(daemon_socket),
        ..RunOptions::default()
    };
    let result = daemon::run(cfg, opts, daemon_stop).await;
    timer.abort();
    stop.cancel();
    let _ = announcer.await;
    let _ = log_writer.await;
    let _ = client_events.await;
    let _ = servers.await;
    println!(
        "Demo finished after {:.0}s.",
        started.elapsed().as_secs_f64()
    );
    result?;
    let data = dir.path().join("data");
    let until = crate::clock::now_ms();
    tokio::task::spawn_blocking(move || {
        summarize(&data, demo_from, until)?;
        print_report(&cfg_for_report, &data, until)
    })
    .await??;
    Ok(())
}

/// Prints the demo's report as `sloguard report --print` does.
fn print_report(cfg: &config::Config, data: &std::path::Path, at: i64) -> anyhow::Result<()> {
    let Some(report) = cfg.reports.first() else {
        return Ok(());
    };
    let store = crate::store::ReadOnlyStore::open(data)?;
    let from = crate::report::schedule::history_from(report, at)?;
    let history: Vec<crate::history::Event> =
        store.history(from, crate::report::schedule::HISTORY_LIMIT)?;
    let made = crate::report::schedule::make(cfg, report, &store.snapshot()?, &history, at)?;
    println!(
        "\nThe report `{}` (sloguard report --name {} --print):\n",
        report.name, report.name
    );
    for line in crate::report::render::text(&made).lines() {
        println!("  {line}");
    }
    Ok(())
}

/// Reads back what the daemon stored, through the same query API as `sloguard query`.
fn summarize(data: &std::path::Path, from: i64, to: i64) -> anyhow::Result<()> {
    use crate::query::{Agg, Selector, aggregate, stepped};
    let store = crate::store::ReadOnlyStore::open(data)?;
    let snap = store.snapshot()?;
    let up = Selector::new("probe_up", vec![]);
    let latency = Selector::new("probe_duration_seconds", vec![]);
    println!("\nWhat the store kept (as `sloguard query` would read it):");
    let availability = aggregate(&snap, &up, Agg::Avg, from, to)?;
    let p95 = aggregate(&snap, &latency, Agg::Quantile(0.95), from, to)?;
    for (a, l) in availability.iter().zip(&p95) {
        let target = a.series.labels.get("target").cloned().unwrap_or_default();
        println!(
            "  {target:<22} availability {:>5.1} %   probe latency p95 {:>6.1} ms",
            a.value.unwrap_or(f64::NAN) * 100.0,
            l.value.unwrap_or(f64::NAN) * 1000.0
        );
    }
    let timeline = stepped(
        &snap,
        &Selector::new("probe_up", vec!["target=segmentation-api".parse()?]),
        Agg::Min,
        from,
        to,
        5_000,
    )?;
    if let Some(series) = timeline.first() {
        let marks: String = series
            .points
            .iter()
            .map(|(_, v)| if *v >= 1.0 { '▇' } else { '_' })
            .collect();
        println!("  segmentation-api up, per 5 s: {marks}");
    }
    let commits = stepped(
        &snap,
        &Selector::new("pg_stat_database_xact_commit_per_second", vec![]),
        Agg::Avg,
        from,
        to,
        5_000,
    )?;
    if let Some(series) = commits.first() {
        let rates: Vec<String> = series
            .points
            .iter()
            .map(|(_, v)| format!("{v:.0}"))
            .collect();
        println!(
            "  database commits per second (scraped), per 5 s: {}",
            rates.join(" ")
        );
    }
    let per_5s = |metric: &str, matchers: &[&str], agg: Agg| -> anyhow::Result<String> {
        let matchers = matchers
            .iter()
            .map(|m| m.parse())
            .collect::<Result<Vec<_>, _>>()?;
        let series = stepped(
            &snap,
            &Selector::new(metric, matchers),
            agg,
            from,
            to,
            5_000,
        )?;
        Ok(series
            .first()
            .map(|s| {
                s.points
                    .iter()
                    .map(|(t, v)| format!("{}s:{v:.0}", (t - from).max(0) / 1000))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|| "-".into()))
    };
    println!(
        "  requests logged, per 5 s (seconds into the demo:count): ok {}",
        per_5s(
            "app_requests",
            &["event=api_segmentation_success"],
            Agg::Count
        )?
    );
    println!(
        "                                                        error {}",
        per_5s(
            "app_requests",
            &["event=api_segmentation_error"],
            Agg::Count
        )?
    );
    println!(
        "  request latency p95 in ms, per 5 s: {}",
        per_5s("app_request_duration_ms", &[], Agg::Quantile(0.95))?
    );
    for t in store.errors()?.types(None)? {
        println!(
            "  error type \"{}\": {} times, last: {}",
            t.pattern, t.count, t.last_message
        );
    }
    Ok(())
}
