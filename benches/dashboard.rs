//! How long the server takes to make the dashboard page: `cargo bench --bench dashboard`.
//!
//! The store holds DAYS simulated days (default 30) of the seed's workload, as the daemon
//! would have written and compacted it: the five targets of `config.toml.example` probed every
//! 30 s; 2 API requests a second (1 % errors) with their latencies, from the log; the JS heap
//! of 50 users every minute, from PostHog events; 10 query means from pg_stat_statements every
//! 30 s; 500 alert history events. The page is that of `config.toml.example` (its five panels,
//! SLO, uptime of every target), made in process (store snapshot, queries, HTML) for each
//! range the page offers, RUNS times (default 20); the median and the slowest are printed.
//!
//! Then it evaluates each window rule of `config.toml.example` over the same store, as the
//! pipeline does when the rule is due (one snapshot, `rules::window_values`), and makes
//! the two reports of `config.toml.example` (weekly, monthly) over the same
//! store, as the daemon does at their scheduled time: figures, charts rasterised to PNG,
//! the mail's text and HTML.
//!
//! `SLOGUARD_BENCH_DAYS` and `SLOGUARD_BENCH_RUNS` change the size of the run.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use sloguard::series::{Sample, SeriesKey};
use sloguard::store::{Batch, Store};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `config.toml.example` with stand-ins for its secrets.
fn example() -> sloguard::config::Config {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml.example");
    let mut text = std::fs::read_to_string(path).expect("read config.toml.example");
    for (name, value) in [
        ("SLOGUARD_API_TOKEN", "0123456789abcdef0123456789abcdef"),
        (
            "SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T/B/X",
        ),
        ("SMTP_PASSWORD", "password"),
        ("PAGERDUTY_ROUTING_KEY", "R0UTINGKEY0000000000000000000001"),
        ("OPS_WEBHOOK_TOKEN", "token"),
        (
            "SUPABASE_DB_URL",
            "postgres://m:pw@db.example.com:5432/postgres",
        ),
        ("SUPABASE_SECRET_KEY", "sb_secret_0000"),
        ("POSTHOG_PROJECT_TOKEN", "phc_example0000"),
    ] {
        text = text.replace(&format!("\"env:{name}\""), &format!("\"{value}\""));
    }
    sloguard::config::parse(&text, std::path::Path::new(path)).expect("config.toml.example")
}

fn sample(series: SeriesKey, ts_ms: i64, value: f64) -> Sample {
    Sample {
        series,
        ts_ms,
        value,
        note: None,
    }
}

fn main() {
    let days = env_or("SLOGUARD_BENCH_DAYS", 30) as i64;
    let runs = env_or("SLOGUARD_BENCH_RUNS", 20);
    let cfg = example();
    let dir = std::path::Path::new("target/bench-dashboard");
    let _ = std::fs::remove_dir_all(dir);
    let store = Store::open(dir).expect("open store");
    store.set_layout(cfg.store.layout()).expect("layout");
    let end = sloguard::clock::now_ms();
    let start = (end - days * DAY) / 60_000 * 60_000;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);

    let targets: Vec<String> = cfg.targets.iter().map(|t| t.name.clone()).collect();
    let key = |name: &str, labels: &[(&str, &str)]| SeriesKey::new(name, labels);
    let up: Vec<SeriesKey> = targets
        .iter()
        .map(|t| key("probe_up", &[("target", t)]))
        .collect();
    let took: Vec<SeriesKey> = targets
        .iter()
        .map(|t| key("probe_duration_seconds", &[("target", t)]))
        .collect();
    let heap: Vec<SeriesKey> = (0..50)
        .map(|u| key("client_js_heap_mb", &[("user", &format!("user-{u}"))]))
        .collect();
    let queries: Vec<SeriesKey> = (0..10)
        .map(|q| key("pg_query_mean_exec_ms", &[("query", &format!("q{q}"))]))
        .collect();
    let ok = key("app_requests", &[("event", "api_segmentation_success")]);
    let err = key("app_requests", &[("event", "api_segmentation_error")]);
    let ok_ms = key(
        "app_request_duration_ms",
        &[("event", "api_segmentation_success")],
    );
    let err_ms = key(
        "app_request_duration_ms",
        &[("event", "api_segmentation_error")],
    );

    let written = Instant::now();
    let (mut points, mut observed) = (0u64, 0u64);
    let mut t = start;
    let mut samples = Vec::new();
    let mut observations = Vec::new();
    while t < end {
        samples.clear();
        observations.clear();
        let hour_end = (t + HOUR).min(end);
        let mut ts = t;
        while ts < hour_end {
            // Probes every 30 s, one target down a few minutes a day.
            if ts % 30_000 == 0 {
                for (i, (u, d)) in up.iter().zip(&took).enumerate() {
                    let down = i == 1 && (ts % DAY) < 5 * 60_000;
                    samples.push(sample(u.clone(), ts, if down { 0.0 } else { 1.0 }));
                    samples.push(sample(d.clone(), ts, rng.random_range(0.05..0.4)));
                }
                for q in &queries {
                    samples.push(sample(q.clone(), ts, rng.random_range(20.0..600.0)));
                }
            }
            if ts % 60_000 == 0 {
                for h in &heap {
                    samples.push(sample(h.clone(), ts, rng.random_range(60.0..190.0)));
                }
            }
            // Two requests a second, one in a hundred an error.
            for k in 0..2 {
                let at = ts + k * 500;
                if rng.random_range(0..100) == 0 {
                    observations.push(sample(err.clone(), at, 1.0));
                    observations.push(sample(err_ms.clone(), at, rng.random_range(20.0..90.0)));
                } else {
                    observations.push(sample(ok.clone(), at, 1.0));
                    observations.push(sample(
                        ok_ms.clone(),
                        at,
                        rng.random_range(120.0..900.0_f64).round(),
                    ));
                }
            }
            ts += 1000;
        }
        points += samples.len() as u64;
        observed += observations.len() as u64;
        store
            .write(&Batch {
                samples: &samples,
                observations: &observations,
                ..Batch::default()
            })
            .expect("write");
        t = hour_end;
    }
    let mut batch = Batch::default();
    for i in 0..500 {
        let at = end - i * (days * DAY / 500);
        let e = sloguard::history::Event::new(
            at,
            "segmentation_api_down{target=\"segmentation-api\"}",
            "segmentation_api_down",
            if i % 2 == 0 {
                sloguard::history::EventKind::Firing
            } else {
                sloguard::history::EventKind::Resolved
            },
        );
        batch.push_history(at, &e);
    }
    store.write(&batch).expect("history");
    let write_secs = written.elapsed().as_secs_f64();
    let compacted = Instant::now();
    // As the daemon's background compaction leaves it: rollups made, old raw data expired.
    for _ in 0..5 {
        let stats = store.compact(end).expect("compact");
        if stats.rollup_buckets == 0 && stats.chunks_removed == 0 {
            break;
        }
    }
    println!(
        "store: {days} days, {points} points and {observed} observations written in {write_secs:.1} s, compacted in {:.1} s, {:.1} MiB",
        compacted.elapsed().as_secs_f64(),
        std::fs::metadata(store.path())
            .map(|m| m.len())
            .unwrap_or(0) as f64
            / 1048576.0
    );

    for (name, range) in sloguard::dashboard::RANGES {
        if range.as_millis() as i64 > days * DAY {
            continue;
        }
        let mut times = Vec::with_capacity(runs);
        let mut size = 0;
        let mut chart_points = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let now = sloguard::clock::now_ms();
            let from = now - range.as_millis() as i64;
            let history = sloguard::dashboard::history(&store, from).expect("history");
            let snap = store.snapshot().expect("snapshot");
            let held = sloguard::dashboard::Held {
                alerts: Vec::new(),
                silences: Vec::new(),
                history,
            };
            let d =
                sloguard::dashboard::build(&cfg, &snap, held, (name, range), now).expect("build");
            let page = sloguard::dashboard::html::page(&d, now);
            times.push(t.elapsed());
            size = page.len();
            chart_points = d
                .panels
                .iter()
                .flat_map(|p| &p.series)
                .map(|l| l.points.len())
                .sum::<usize>();
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "page for {name:>3}: median {:.1} ms, slowest {:.1} ms ({runs} runs; {chart_points} chart points, {} KiB of HTML)",
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1]),
            size / 1024
        );
    }

    let errors = store.errors().expect("errors");
    let mut round = Duration::ZERO;
    for rule in &cfg.rules {
        let sloguard::config::RuleKind::Window(th) = &rule.kind else {
            continue;
        };
        let mut times = Vec::with_capacity(runs);
        let mut values = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let snap = store.snapshot().expect("snapshot");
            let now = sloguard::clock::now_ms();
            let v =
                sloguard::rules::window_values(&errors, &snap, th, now, &mut Default::default())
                    .expect("evaluate");
            times.push(t.elapsed());
            values = v.len();
        }
        times.sort();
        round += times[times.len() / 2];
        println!(
            "rule {:<28} every {:>4}: median {:.2} ms, slowest {:.2} ms ({values} label sets)",
            rule.name,
            humantime::format_duration(th.every).to_string(),
            times[times.len() / 2].as_secs_f64() * 1000.0,
            times[times.len() - 1].as_secs_f64() * 1000.0,
        );
    }
    println!(
        "every window rule once: {:.1} ms (sum of the medians)",
        round.as_secs_f64() * 1000.0
    );
    for report in &cfg.reports {
        let mut times = Vec::new();
        let mut size = (0, 0, 0);
        for _ in 0..runs.min(5) {
            let t = Instant::now();
            let at = sloguard::clock::now_ms();
            let from = sloguard::report::schedule::history_from(report, at).expect("window");
            let history: Vec<sloguard::history::Event> = store
                .history(from, sloguard::report::schedule::HISTORY_LIMIT)
                .expect("history");
            let snap = store.snapshot().expect("snapshot");
            let data = sloguard::report::schedule::make(&cfg, report, &snap, &history, at)
                .expect("report");
            let mail = sloguard::report::render::mail(&data, &report.to);
            times.push(t.elapsed());
            size = (
                mail.images.len(),
                mail.images
                    .iter()
                    .map(|(_, b)| b.len() * 3 / 4)
                    .sum::<usize>(),
                mail.html.len() + mail.text.len(),
            );
        }
        times.sort();
        println!(
            "report {:>7}: median {:.0} ms, slowest {:.0} ms ({} runs; {} charts, {} KiB of PNG, {} KiB of text and HTML)",
            report.name,
            times[times.len() / 2].as_secs_f64() * 1000.0,
            times[times.len() - 1].as_secs_f64() * 1000.0,
            times.len(),
            size.0,
            size.1 / 1024,
            size.2 / 1024
        );
    }
}
