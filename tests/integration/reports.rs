//! Scheduled reports: a store filled with known data gives a report whose figures are
//! exact; the mail reaches a real SMTP server with its text, HTML and inline PNG charts; a
//! run missed while the daemon was down is made once when it starts again.

use std::time::Duration;

use mail_parser::{MessageParser, MimeHeaders};
use sloguard::series::{Sample, SeriesKey};
use sloguard::store::{Batch, Store};

use crate::util::{Daemon, SmtpServer, free_port, sloguard, tempdir};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// Monday 2026-11-16 00:00 UTC: the start of the week the report covers.
fn week_start() -> i64 {
    chrono::DateTime::parse_from_rfc3339("2026-11-16T00:00:00Z")
        .unwrap()
        .timestamp_millis()
}

fn config(smtp_port: u16, schedule: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{api}"

[[channels]]
name = "mail"
type = "email"
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
tls = "none"
from = "sloguard <reports@example.com>"
to = ["engineering@example.com"]

[routing]
warning = ["mail"]
critical = ["mail"]

[[rules]]
name = "api_availability"
kind = "slo"
objective = 99.9
up = {{ metric = "probe_up", match = {{ target = "api" }} }}
summary = "API availability"

[[rules]]
name = "api_latency_p95"
kind = "threshold"
metric = "app_request_duration_ms"
agg = "p95"
window = "5m"
condition = "> 500"
severity = "warning"
summary = "API p95 latency"

[[rules]]
name = "api_error_rate"
kind = "ratio"
numerator = {{ metric = "app_requests", match = {{ event = "error" }} }}
denominator = {{ metric = "app_requests" }}
window = "5m"
condition = "> 0.02"
severity = "warning"
summary = "API error rate"

[[rules]]
name = "api_down"
kind = "consecutive"
match = {{ target = "api" }}
fire_after = 3
severity = "critical"
summary = "API down"

[[rules]]
name = "disk_info"
kind = "consecutive"
metric = "disk_used_ratio"
condition = "> 0.8"
severity = "info"
summary = "Disk filling"

[[reports]]
name = "weekly"
title = "Weekly usage summary"
schedule = "{schedule}"
timezone = "UTC"
channel = "mail"
to = ["product@example.com", "leadership@example.com"]
window = "last_week"

[[reports.usage]]
title = "Dashboard views"
metric = "client_dashboard_views"
by = "data_mode"

[[reports.usage]]
title = "Refreshes per session"
metric = "client_refreshes"
per = {{ metric = "client_refreshes", label = "session" }}

[[reports.usage]]
title = "Users"
distinct = {{ metric = "client_js_heap_mb", label = "user" }}

[[reports.usage]]
title = "Live data share"
metric = "client_dashboard_views"
by = "data_mode"
share = "live"
target = "> 80 %"

[[reports.usage]]
title = "Adoption (users of all agencies)"
distinct = {{ metric = "client_js_heap_mb", label = "user" }}
divide_by = {{ metric = "app_agencies" }}
percent = true
target = "> 50 %"

[[reports.usage]]
title = "Revenue by segment (USD)"
metric = "app_segment_revenue_usd"
agg = "last"
by = "segment"

[[reports.usage]]
title = "Revenue per segment, on average (USD)"
metric = "app_segment_revenue_usd"
agg = "last"
combine = "avg"

[[reports]]
name = "monthly"
schedule = "0 8 1 * *"
channel = "mail"
window = "last_month"
sections = ["slo", "daemon"]
"#,
        api = free_port()
    )
}

fn sample(name: &str, labels: &[(&str, &str)], ts_ms: i64, value: f64) -> Sample {
    Sample {
        series: SeriesKey::new(name, labels),
        ts_ms,
        value,
        note: None,
    }
}

fn event(at_ms: i64, alert: &str, rule: &str, what: &str) -> sloguard::history::Event {
    let kind = serde_json::from_value(serde_json::Value::String(what.to_string())).unwrap();
    sloguard::history::Event::new(at_ms, alert, rule, kind)
}

/// The week of 2026-11-16 and the one before, in known figures.
fn fill(data: &std::path::Path) {
    let store = Store::open(data).unwrap();
    let w = week_start();
    let prev = w - 7 * DAY;
    let mut samples = Vec::new();
    let mut obs = Vec::new();
    // Probes every 10 minutes: all up the week before; two down this week (1008 probes).
    for i in 0..(7 * 24 * 6) {
        samples.push(sample(
            "probe_up",
            &[("target", "api")],
            prev + i * 10 * MIN,
            1.0,
        ));
    }
    for i in 0..(7 * 24 * 6) {
        let down = i == 100 || i == 101;
        let v = if down { 0.0 } else { 1.0 };
        samples.push(sample(
            "probe_up",
            &[("target", "api")],
            w + i * 10 * MIN,
            v,
        ));
    }
    // 100 requests this week: 50 at 400 ms and 50 at 600 ms; 2 errors; the week before,
    // 100 at 300 ms and no error.
    for i in 0..100 {
        let at = w + DAY + i * MIN;
        let ms = if i < 50 { 400.0 } else { 600.0 };
        obs.push(sample("app_request_duration_ms", &[], at, ms));
        let e = if i < 2 { "error" } else { "success" };
        obs.push(sample("app_requests", &[("event", e)], at, 1.0));
        obs.push(sample(
            "app_request_duration_ms",
            &[],
            prev + DAY + i * MIN,
            300.0,
        ));
        obs.push(sample(
            "app_requests",
            &[("event", "success")],
            prev + DAY + i * MIN,
            1.0,
        ));
    }
    // Usage: 30 live and 12 demo views, 20 the week before; refreshes 4 + 2 in two sessions;
    // five users' heaps this week, three the week before.
    for i in 0..42 {
        let mode = if i < 30 { "live" } else { "demo" };
        obs.push(sample(
            "client_dashboard_views",
            &[("data_mode", mode)],
            w + 2 * DAY + i * MIN,
            1.0,
        ));
    }
    for i in 0..20 {
        obs.push(sample(
            "client_dashboard_views",
            &[("data_mode", "live")],
            prev + 2 * DAY + i * MIN,
            1.0,
        ));
    }
    for (i, s) in ["s1", "s1", "s1", "s1", "s2", "s2"].iter().enumerate() {
        obs.push(sample(
            "client_refreshes",
            &[("session", s)],
            w + 3 * DAY + i as i64 * MIN,
            1.0,
        ));
    }
    for u in 0..5 {
        let user = format!("user-{u}");
        samples.push(sample(
            "client_js_heap_mb",
            &[("user", &user)],
            w + 4 * DAY + u * MIN,
            120.0,
        ));
        if u < 3 {
            samples.push(sample(
                "client_js_heap_mb",
                &[("user", &user)],
                prev + 4 * DAY + u * MIN,
                110.0,
            ));
        }
    }
    // From the app's database, hourly: 8 agencies; revenue by segment, Elite up from 2 500 to
    // 3 000 this week.
    for (start, elite) in [(prev, 2500.0), (w, 3000.0)] {
        for h in 0..(7 * 24) {
            let at = start + h * HOUR + 30 * MIN;
            samples.push(sample("app_agencies", &[("database", "app")], at, 8.0));
            for (segment, usd) in [("Elite", elite), ("Premium", 500.0)] {
                samples.push(sample(
                    "app_segment_revenue_usd",
                    &[("database", "app"), ("segment", segment)],
                    at,
                    usd,
                ));
            }
        }
    }
    // A named query: 12 000 ms in 400 calls this week, 8 000 ms in 400 the week before.
    let q = [
        ("database", "supabase"),
        ("query", "customer_insights_by_agency"),
    ];
    for (start, total) in [(w, 12_000.0), (prev, 8_000.0)] {
        for i in 0..4 {
            let at = start + 5 * DAY + i * HOUR;
            samples.push(sample("pg_query_exec_ms", &q, at, total / 4.0));
            samples.push(sample("pg_query_calls", &q, at, 100.0));
            samples.push(sample("pg_query_mean_exec_ms", &q, at, total / 400.0));
        }
    }
    // sloguard ran all week but for an hour on Wednesday (heartbeats every minute).
    for i in 0..(7 * 24 * 60) {
        let at = w + i * MIN;
        let wednesday_gap = (2 * DAY + 10 * HOUR..2 * DAY + 11 * HOUR).contains(&(at - w));
        if !wednesday_gap {
            samples.push(sample("sloguard_up", &[], at, 1.0));
        }
    }
    samples.sort_by_key(|s| s.ts_ms);
    store
        .write(&Batch {
            samples: &samples,
            observations: &obs,
            ..Batch::default()
        })
        .unwrap();
    // Alerts: the API down (acknowledged after 4 min, resolved after 20), the p95 twice (once
    // resolved after 2 minutes unacknowledged, once raised to critical and resolved after
    // 30), an info alert and a silenced one (1 minute each), and one firing the week before.
    let down = "api_down{target=\"api\"}";
    let slow = "api_latency_p95";
    let t1 = w + DAY + 2 * HOUR;
    let t2 = w + 2 * DAY + 3 * HOUR;
    let t3 = w + 3 * DAY + 4 * HOUR;
    let mut batch = Batch::default();
    for e in [
        event(prev + DAY, down, "api_down", "firing"),
        event(prev + DAY + 10 * MIN, down, "api_down", "resolved"),
        event(t1, down, "api_down", "firing"),
        event(t1 + 4 * MIN, down, "api_down", "acknowledged"),
        event(t1 + 20 * MIN, down, "api_down", "resolved"),
        event(t2, slow, "api_latency_p95", "firing"),
        event(t2 + 2 * MIN, slow, "api_latency_p95", "resolved"),
        event(t3, slow, "api_latency_p95", "firing"),
        event(t3 + MIN, slow, "api_latency_p95", "upgraded"),
        event(t3 + 30 * MIN, slow, "api_latency_p95", "resolved"),
        // Nobody could acknowledge these two: an info alert (logged only) and one held back
        // by a silence that ended after it resolved. Not false-positive candidates.
        event(t3 + HOUR, "disk_info", "disk_info", "firing"),
        event(t3 + HOUR + MIN, "disk_info", "disk_info", "resolved"),
        event(t3 + 2 * HOUR, down, "api_down", "firing").detail("HTTP 503 (held back: silence 4)"),
        event(t3 + 2 * HOUR + MIN, down, "api_down", "resolved"),
    ] {
        batch.push_history(e.at_ms, &e);
    }
    store.write(&batch).unwrap();
}

fn near(v: &serde_json::Value, want: f64, rel: f64) -> bool {
    v.as_f64()
        .is_some_and(|x| (x - want).abs() <= want.abs() * rel)
}

#[test]
fn a_report_over_known_data_has_exact_figures() {
    let dir = tempdir();
    let data = dir.path().join("data");
    fill(&data);
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, config(2525, "0 9 * * MON")).unwrap();
    let (cfg_s, data_s) = (cfg.to_str().unwrap(), data.to_str().unwrap());
    let run = |extra: &[&str]| {
        let mut args = vec![
            "report",
            "--config",
            cfg_s,
            "--name",
            "weekly",
            "--data-dir",
            data_s,
            "--at",
            "2026-11-23T09:00:00Z",
        ];
        args.extend_from_slice(extra);
        let out = sloguard(&args, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let r: serde_json::Value = serde_json::from_slice(&run(&["--json"]).stdout).unwrap();
    assert_eq!(r["window"]["from_ms"], week_start());
    assert_eq!(r["window"]["to_ms"], week_start() + 7 * DAY);
    assert_eq!(r["previous"]["to_ms"], week_start());

    // SLOs: 1006 of 1008 probes (99.802 %, missed, budget 198 % used); p95 600 ms against
    // ≤ 500 (missed; 300 before); error ratio 2 % against ≤ 0.02 (met: not above it).
    let slos = r["slos"].as_array().unwrap();
    assert_eq!(slos.len(), 3, "{slos:?}");
    let avail = &slos[0];
    assert_eq!(avail["rule"], "api_availability");
    assert_eq!(avail["objective"], "99.9 %");
    assert!(
        near(&avail["attained"], 100.0 * 1006.0 / 1008.0, 1e-9),
        "{avail}"
    );
    assert_eq!(avail["previous"], 100.0);
    assert_eq!(avail["met"], false);
    assert!(
        near(&avail["budget_used"], (2.0 / 1008.0) / 0.001 * 100.0, 1e-9),
        "{avail}"
    );
    let p95 = &slos[1];
    assert_eq!(p95["measure"], "p95 of app_request_duration_ms");
    assert_eq!(p95["objective"], "≤ 500");
    assert!(near(&p95["attained"], 600.0, 0.01), "{p95}");
    assert!(near(&p95["previous"], 300.0, 0.01), "{p95}");
    assert_eq!(p95["met"], false);
    let ratio = &slos[2];
    assert_eq!(
        ratio["measure"],
        "ratio of app_requests{event=error} to app_requests"
    );
    assert_eq!(ratio["objective"], "≤ 2 %");
    assert_eq!(ratio["attained"], 0.02);
    assert_eq!(ratio["previous"], 0.0);
    assert_eq!(ratio["met"], true);

    // Alerts.
    let a = &r["alerts"];
    assert_eq!(a["fired"], 5);
    assert_eq!(a["previous_fired"], 1);
    assert_eq!(
        a["by_severity"],
        serde_json::json!([["critical", 3], ["warning", 1], ["info", 1]])
    );
    assert_eq!(
        a["by_rule"],
        serde_json::json!([["api_down", 2], ["api_latency_p95", 2], ["disk_info", 1]])
    );
    assert_eq!(a["acknowledged"], 1);
    assert_eq!(a["mean_to_acknowledge_ms"], 4 * MIN);
    assert_eq!(a["resolved"], 5);
    assert_eq!(a["mean_to_resolve_ms"], (20 + 2 + 30 + 1 + 1) * MIN / 5);
    let fp = a["false_positives"].as_array().unwrap();
    assert_eq!(fp.len(), 1, "{fp:?}");
    assert_eq!(fp[0]["rule"], "api_latency_p95");
    assert_eq!(fp[0]["lasted_ms"], 2 * MIN);

    // Usage.
    let u = r["usage"].as_array().unwrap();
    assert_eq!(u[0]["title"], "Dashboard views");
    assert_eq!(u[0]["value"], 42.0);
    assert_eq!(u[0]["previous"], 20.0);
    assert_eq!(
        u[0]["breakdown"],
        serde_json::json!([["live", 30.0], ["demo", 12.0]])
    );
    assert_eq!(u[1]["value"], 3.0, "6 refreshes in 2 sessions");
    assert_eq!(u[2]["value"], 5.0);
    assert_eq!(u[2]["previous"], 3.0);
    // Shares and targets: 30 of 42 views live (71.4 %, below the 80 % target), all 20 the
    // week before; 5 users of 8 agencies (62.5 %, above 50 %), 3 of 8 before.
    assert_eq!(u[3]["unit"], "%");
    assert!(near(&u[3]["value"], 30.0 / 42.0 * 100.0, 1e-9), "{}", u[3]);
    assert_eq!(u[3]["previous"], 100.0);
    assert_eq!(u[3]["target"], "> 80 %");
    assert_eq!(u[3]["met"], false);
    assert!(near(&u[3]["breakdown"][1][1], 12.0 / 42.0 * 100.0, 1e-9));
    assert_eq!(u[4]["value"], 62.5);
    assert_eq!(u[4]["previous"], 37.5);
    assert_eq!(u[4]["met"], true);
    // Revenue by segment from SQL metrics, with the week before per segment.
    assert_eq!(u[5]["value"], 3500.0);
    assert_eq!(u[5]["previous"], 3000.0);
    assert_eq!(
        u[5]["breakdown"],
        serde_json::json!([["Elite", 3000.0], ["Premium", 500.0]])
    );
    assert_eq!(
        u[5]["breakdown_before"],
        serde_json::json!([["Elite", 2500.0], ["Premium", 500.0]])
    );
    assert_eq!(u[6]["value"], 1750.0);
    assert_eq!(u[6]["previous"], 1500.0);
    assert!(u[0].get("unit").is_none() && u[0].get("target").is_none());

    // Database.
    let q = &r["database"][0];
    assert_eq!(q["query"], "customer_insights_by_agency");
    assert_eq!(q["total_ms"], 12_000.0);
    assert_eq!(q["calls"], 400.0);
    assert_eq!(q["mean_ms"], 30.0);
    assert_eq!(q["previous_mean_ms"], 20.0);

    // sloguard itself: down once, for the hour without heartbeats.
    let d = &r["daemon"];
    assert_eq!(d["recorded"], true);
    let down = d["down"].as_array().unwrap();
    assert_eq!(down.len(), 1, "{d}");
    let lost = down[0]["to_ms"].as_i64().unwrap() - down[0]["from_ms"].as_i64().unwrap();
    assert_eq!(lost, HOUR, "the minutes without a heartbeat");
    assert_eq!(d["recorded_since"], serde_json::Value::Null);

    // After compaction the raw points of that week are gone (7 days of raw retention): the
    // report reads the rollups and says the same.
    let out = sloguard(&["compact", "--config", cfg_s, "--data-dir", data_s], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = sloguard(
        &[
            "query",
            "sloguard_up",
            "--data-dir",
            data_s,
            "--since",
            "2026-11-16T00:00:00Z",
            "--until",
            "2026-11-17T00:00:00Z",
            "--format",
            "json",
        ],
        &[],
    );
    let raw: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert!(
        raw[0]["points"].as_array().is_none_or(|p| p.is_empty()),
        "raw heartbeats of that Monday still there: {raw}"
    );
    let again: serde_json::Value = serde_json::from_slice(&run(&["--json"]).stdout).unwrap();
    assert!(
        near(&again["slos"][0]["attained"], 100.0 * 1006.0 / 1008.0, 1e-9),
        "{}",
        again["slos"]
    );
    assert!(
        near(&again["slos"][1]["attained"], 600.0, 0.01),
        "{}",
        again["slos"]
    );
    assert_eq!(again["slos"][2]["attained"], 0.02);
    assert_eq!(again["usage"], r["usage"]);
    assert_eq!(again["database"], r["database"]);
    assert_eq!(again["alerts"], r["alerts"]);
    assert_eq!(
        again["daemon"], r["daemon"],
        "the downtime from the 1-minute rollups"
    );

    // November, a month later: heartbeats began on the 16th (recorded since then), and
    // stopped on the 23rd.
    let out = sloguard(
        &[
            "report",
            "--config",
            cfg_s,
            "--name",
            "monthly",
            "--data-dir",
            data_s,
            "--at",
            "2026-12-01T08:00:00Z",
            "--json",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        m["window"]["to_ms"],
        week_start() + 15 * DAY,
        "{}",
        m["window"]
    );
    assert_eq!(m["daemon"]["recorded_since"], week_start());
    let down = m["daemon"]["down"].as_array().unwrap();
    assert_eq!(down.len(), 2, "{}", m["daemon"]);
    assert_eq!(down[1]["from_ms"], week_start() + 7 * DAY);
    assert_eq!(down[1]["to_ms"], week_start() + 15 * DAY);

    // The text reads on its own.
    let text = String::from_utf8(run(&["--print"]).stdout).unwrap();
    for needle in [
        "Weekly usage summary",
        "API availability [MISSED]",
        "availability: 99.802 % (objective 99.9 %; before: 100.0 %)",
        "error budget: 198 % used, 0 % left",
        "ratio of app_requests{event=error} to app_requests: 2 % (objective ≤ 2 %; before: 0 %)",
        "5 fired: 3 critical, 1 warning, 1 info (before: 1)",
        "acknowledged: 1 of 5, after 4 min on average",
        "false-positive candidates (resolved within 5 min, nobody acknowledged): 1",
        "Dashboard views: 42 (before: 20, +110 %)",
        "by data_mode: live 30 (+50 %), demo 12",
        "Live data share: 71.4 % (target > 80 %: MISSED) (before: 100 %, −28.6 pp)",
        "by data_mode: live 71.4 % (−28.6 pp), demo 28.6 %",
        "Adoption (users of all agencies): 62.5 % (target > 50 %: met) (before: 37.5 %, +25.0 pp)",
        "Revenue by segment (USD): 3500 (before: 3000, +17 %)",
        "by segment: Elite 3000 (+20 %), Premium 500",
        "supabase/customer_insights_by_agency: total 12 s in 400 calls, mean 30 ms (before: 20 ms, +50 %)",
        "sloguard was down 1 time, 1 h 0 min in all",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }

    // The HTML file, its charts inlined; both kept as test artefacts.
    let keep = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(keep.join("report-weekly.txt"), &text).unwrap();
    let html_path = keep.join("report-weekly.html");
    run(&["--html", html_path.to_str().unwrap()]);
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.contains("<h1"), "{html}");
    assert!(
        html.matches("data:image/png;base64,").count() >= 3,
        "charts in the HTML"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_reaches_a_real_smtp_server_with_its_charts() {
    let dir = tempdir();
    let data = dir.path().join("data");
    fill(&data);
    let smtp = SmtpServer::start(dir.path()).await;
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, config(smtp.port, "0 9 * * MON")).unwrap();
    let out = sloguard(
        &[
            "report",
            "--config",
            cfg.to_str().unwrap(),
            "--name",
            "weekly",
            "--data-dir",
            data.to_str().unwrap(),
            "--at",
            "2026-11-23T09:00:00Z",
            "--send",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mails = smtp.wait_messages(1, Duration::from_secs(10)).await;
    assert_eq!(mails.len(), 1);
    let mail = MessageParser::default().parse(&mails[0]).unwrap();
    assert!(
        mail.subject()
            .unwrap()
            .starts_with("Weekly usage summary — Mon 16 Nov 2026 to Sun 22 Nov 2026"),
        "{:?}",
        mail.subject()
    );
    let to: Vec<&str> = mail
        .to()
        .unwrap()
        .iter()
        .filter_map(|a| a.address())
        .collect();
    assert_eq!(to, ["product@example.com", "leadership@example.com"]);
    let text = mail.body_text(0).unwrap();
    assert!(
        text.contains("5 fired: 3 critical, 1 warning, 1 info"),
        "{text}"
    );
    let html = mail.body_html(0).unwrap();
    // Every image the HTML shows is a PNG part with that Content-ID.
    let cids: Vec<String> = html
        .match_indices("src=\"cid:")
        .map(|(i, _)| html[i + 9..].split('"').next().unwrap().to_string())
        .collect();
    assert!(cids.len() >= 3, "{html}");
    for cid in &cids {
        let part = mail
            .parts
            .iter()
            .find(|p| p.content_id() == Some(cid.as_str()))
            .unwrap_or_else(|| panic!("no part for cid:{cid}"));
        let ct = part.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("image", Some("png")));
        let png = part.contents();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{cid} is not a PNG");
        let decoder = png::Decoder::new(std::io::Cursor::new(png.to_vec()));
        let info = decoder.read_info().unwrap();
        assert_eq!(info.info().width, 640);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_missed_while_down_is_sent_once_when_the_daemon_starts() {
    let dir = tempdir();
    let data = dir.path().join("data");
    fill(&data);
    // The report runs every day at 09:00 UTC and last ran three days ago: runs were missed.
    let now = chrono::Utc::now();
    let three_days_ago = (now - chrono::Duration::days(3))
        .date_naive()
        .and_hms_opt(9, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis();
    {
        let store = Store::open(&data).unwrap();
        store
            .write(&Batch {
                report_runs: vec![("weekly".into(), three_days_ago)],
                ..Batch::default()
            })
            .unwrap();
    }
    let smtp = SmtpServer::start(dir.path()).await;
    let text = config(smtp.port, "0 9 * * *");
    let mut d = Daemon::start(dir.path(), &text, &[]).await;
    let mails = smtp.wait_messages(1, Duration::from_secs(20)).await;
    assert_eq!(mails.len(), 1, "log:\n{}", d.log_text());
    assert!(
        d.wait_log(
            "Report made for a run missed while sloguard was down",
            Duration::from_secs(5)
        )
        .await,
        "{}",
        d.log_text()
    );
    // Restarted, it does not send it again.
    d.stop().await;
    d.spawn().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(smtp.messages().len(), 1, "sent twice:\n{}", d.all_logs());
    d.stop().await;
    // The run is recorded for the latest scheduled time.
    let store = sloguard::store::ReadOnlyStore::open(&data).unwrap();
    let last = store.report_runs().unwrap()["weekly"];
    let latest = if now.time() >= chrono::NaiveTime::from_hms_opt(9, 0, 0).unwrap() {
        now.date_naive()
    } else {
        now.date_naive() - chrono::Duration::days(1)
    };
    assert_eq!(
        last,
        latest
            .and_hms_opt(9, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis()
    );
}
