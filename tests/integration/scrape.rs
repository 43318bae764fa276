//! `[[scrapes]]` against real endpoints: the daemon's own `/metrics` (OpenMetrics, as a
//! Prometheus exporter writes it) and a Supabase-shaped endpoint behind basic auth.

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::util::{Daemon, free_port, query_values, tempdir};

const SUPABASE: &str = "# HELP pg_up Whether the last scrape could connect.\n# TYPE pg_up gauge\npg_up{service_type=\"db\",supabase_project_ref=\"abcd\"} 1\n# TYPE pg_stat_database_xact_commit_total counter\npg_stat_database_xact_commit_total{datname=\"postgres\",supabase_project_ref=\"abcd\"} COMMITS\n# TYPE node_load1 gauge\nnode_load1 0.42\n";

/// Serves Supabase-shaped metrics to `service_role:sb_secret_test` only; the commit counter
/// grows by 50 a request.
async fn supabase_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let app = Router::new().route(
        "/customer/v1/privileged/metrics",
        get(move |headers: HeaderMap| {
            let served = served.clone();
            async move {
                // "service_role:sb_secret_test" in base64.
                let ok = headers.get("authorization").and_then(|v| v.to_str().ok())
                    == Some("Basic c2VydmljZV9yb2xlOnNiX3NlY3JldF90ZXN0");
                if !ok {
                    return (StatusCode::UNAUTHORIZED, "unauthorized".to_string());
                }
                let n = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                (
                    StatusCode::OK,
                    SUPABASE.replace("COMMITS", &(1000 + 50 * n).to_string()),
                )
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/customer/v1/privileged/metrics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_keep_families_turn_counters_into_rates_and_report_failures() {
    let dir = tempdir();
    let supabase = supabase_endpoint().await;
    let port = free_port();
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[[scrapes]]
name = "supabase"
url = "{supabase}"
username = "service_role"
password = "env:SUPABASE_SECRET_KEY"
interval = "500ms"
keep = ["pg_up", "pg_stat_database_.*"]

[[scrapes]]
name = "self"
url = "http://127.0.0.1:{port}/metrics"
interval = "500ms"
keep = ["sloguard_samples", "sloguard_build"]

[[scrapes]]
name = "wrong_password"
url = "{supabase}"
username = "service_role"
password = "not-the-key"
interval = "500ms"

[[scrapes]]
name = "nobody_home"
url = "http://127.0.0.1:{closed}/metrics"
interval = "500ms"
"#,
        closed = free_port()
    );
    let daemon = Daemon::start(
        dir.path(),
        &config,
        &[("SUPABASE_SECRET_KEY", "sb_secret_test")],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();

    // Supabase: the gauge as it is, with its labels and ours; the counter as a rate (50 per
    // request, a request every 500 ms: about 100 a second); node_load1 not kept.
    let up = query_values(
        data,
        "pg_up",
        &["scrape=supabase", "supabase_project_ref=abcd"],
    );
    assert!(!up.is_empty() && up.iter().all(|v| *v == 1.0), "{up:?}");
    let rates = query_values(
        data,
        "pg_stat_database_xact_commit_per_second",
        &["datname=postgres"],
    );
    assert!(!rates.is_empty(), "no rate");
    assert!(rates.iter().all(|r| (50.0..200.0).contains(r)), "{rates:?}");
    assert!(query_values(data, "node_load1", &[]).is_empty());

    // The daemon's own OpenMetrics: a counter family named without `_total`, and an info.
    let samples = query_values(data, "sloguard_samples_per_second", &["scrape=self"]);
    // Commits come in groups, so a half-second may see none; never a negative rate.
    assert!(samples.iter().all(|r| *r >= 0.0), "{samples:?}");
    assert!(samples.iter().any(|r| *r > 0.0), "{samples:?}");
    assert!(!query_values(data, "sloguard_build_info", &["scrape=self"]).is_empty());

    // Failures are data, with their reasons in the log; the key never appears.
    for name in ["wrong_password", "nobody_home"] {
        let up = query_values(data, "scrape_up", &[&format!("scrape={name}")]);
        assert!(
            !up.is_empty() && up.iter().all(|v| *v == 0.0),
            "{name}: {up:?}"
        );
    }
    let log = daemon.log_text();
    assert!(log.contains("HTTP 401 Unauthorized"), "{log}");
    assert!(log.contains("connection failed"), "{log}");
    assert!(
        !log.contains("sb_secret_test") && !log.contains("not-the-key"),
        "{log}"
    );
}
