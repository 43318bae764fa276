//! The public endpoints under attack, as docs/security.md bounds them: a real daemon child
//! on loopback, requests a stranger holding the public project token (or none) could send,
//! and what each one may cost: memory, time, stored data.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ingest::{gzip, metric};
use crate::util::{Daemon, Receiver, free_port, query_agg, tempdir};

const TOKEN: &str = "phc_sloguard_attack_project_01";

fn config(port: u16, extra_source: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
allowed_hosts = ["sloguard.example.com"]

[store]
distribution_interval = "1s"

[[logs]]
name = "posthog"
ingest = "posthog"
token = "{TOKEN}"
{extra_source}

[[logs.metric]]
name = "client_api_duration_ms"
kind = "distribution"
match = {{ event = "segmentation_api_success" }}
value = "properties.duration_ms"

[[logs.metric]]
name = "client_js_heap_mb"
kind = "gauge"
match = {{ event = "segmentation_memory_snapshot" }}
value = "properties.used_js_heap_mb"
"#
    )
}

/// A line of the daemon's `/proc/PID/status`, in KiB.
fn status_kib(d: &Daemon, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {text}"))
}

/// Huge uuids, and 50 parallel 20 MiB bodies with a wrong token (half declaring their
/// length, half streamed without one): all refused, memory stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_and_uuids_are_refused_and_cost_little_memory() {
    let dir = tempdir();
    let port = free_port();
    let mut d = Daemon::start(dir.path(), &config(port, ""), &[]).await;
    let url = format!("http://127.0.0.1:{port}/batch/");
    let http = reqwest::Client::new();
    let before = status_kib(&d, "VmRSS:");

    // 20 one-event requests whose uuid is 5 MiB: plain (413 unread) and gzip (5 KiB on the
    // wire, 413 once it decompresses past the limit); one of 1 KiB fits the body and is 400.
    let uuid = "a".repeat(5 << 20);
    let body = format!(
        r#"{{"api_key":"{TOKEN}","batch":[{{"event":"e","distinct_id":"u","uuid":"{uuid}"}}]}}"#
    );
    for i in 0..20 {
        let b = if i % 2 == 0 {
            body.clone().into_bytes()
        } else {
            gzip(body.as_bytes())
        };
        // Refused before the body is read, the connection is closed: a client still
        // writing its body may see the close rather than the 413.
        if let Ok(r) = http.post(&url).body(b).send().await {
            assert_eq!(r.status(), 413, "request {i}");
        }
    }
    assert_eq!(
        metric(
            port,
            r#"sloguard_ingest_requests_total{result="too_large"}"#
        )
        .await,
        Some(20.0)
    );
    let small = format!(
        r#"{{"api_key":"{TOKEN}","batch":[{{"event":"e","distinct_id":"u","uuid":"{}"}}]}}"#,
        "b".repeat(1024)
    );
    let r = http.post(&url).body(small).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let after = status_kib(&d, "VmRSS:");
    assert!(
        after < before + 20 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );

    // 50 bodies of 20 MiB at once with a wrong token.
    let big = format!(
        r#"{{"api_key":"phc_wrong","batch":[{{"event":"e","distinct_id":"u","properties":{{"x":"{}"}}}}]}}"#,
        "x".repeat(20 << 20)
    );
    let big = axum::body::Bytes::from(big);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (http, url, big) = (http.clone(), url.clone(), big.clone());
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let r = http
                    .post(&url)
                    .timeout(Duration::from_secs(60))
                    .body(big)
                    .send()
                    .await;
                // The server may close the connection while the rest of the body is sent.
                return r.ok().map(|r| r.status().as_u16());
            }
            // No Content-Length: chunks of 1 MiB, read until the limit.
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()?;
            let head =
                "POST /batch/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n";
            s.write_all(head.as_bytes()).await.ok()?;
            for chunk in big.chunks(1 << 20) {
                let size = format!("{:x}\r\n", chunk.len());
                if s.write_all(size.as_bytes()).await.is_err()
                    || s.write_all(chunk).await.is_err()
                    || s.write_all(b"\r\n").await.is_err()
                {
                    break;
                }
            }
            let _ = s.write_all(b"0\r\n\r\n").await;
            let mut answer = vec![0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut answer))
                .await
                .ok()?
                .ok()?;
            let head = String::from_utf8_lossy(&answer[..n]).to_string();
            head.split(' ').nth(1).and_then(|c| c.parse().ok())
        }));
    }
    let mut answered = 0;
    for t in tasks {
        if let Some(status) = t.await.unwrap() {
            assert!([401, 413, 429, 503].contains(&status), "answered {status}");
            answered += 1;
        }
    }
    assert!(answered >= 25, "only {answered} of 50 got an answer");
    let peak = status_kib(&d, "VmHWM:");
    assert!(peak < 150 * 1024, "peak RSS {peak} KiB");
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .unwrap()
            .status()
            .is_success()
    );
    d.stop().await;
}

/// A source over its rate gets 429 with `Retry-After`; posthog-node retries and, once the
/// rate allows, every event is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_source_answers_429_and_posthog_node_delivers_everything() {
    let dir = tempdir();
    let port = free_port();
    let cfg = config(port, "max_events_per_second = 5");
    let mut d = Daemon::start(dir.path(), &cfg, &[]).await;
    let host = format!("http://127.0.0.1:{port}");

    // 100 events in batches of 10: the bucket holds 50, then refills 5 a second.
    let node = crate::ingest::node_dir();
    let out = std::process::Command::new("timeout")
        .args(["90", "node"])
        .arg(node.join("flood.mjs"))
        .args([host.as_str(), TOKEN, "100"])
        .current_dir(&node)
        .output()
        .expect("run node");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "posthog-node gave up:\n{text}");
    let limited = metric(
        port,
        r#"sloguard_ingest_requests_total{result="rate_limited"}"#,
    )
    .await
    .unwrap_or(0.0);
    assert!(limited >= 1.0, "no request was rate limited");
    let data = dir.path().join("data");
    let count = query_agg(
        data.to_str().unwrap(),
        "client_api_duration_ms",
        "1h",
        "count",
        &[],
    );
    assert_eq!(count[0].1, 100.0, "every event once: {count:?}");

    // What a raw client sees while the bucket is empty.
    let event = |i: usize| {
        format!(
            r#"{{"api_key":"{TOKEN}","batch":[{}]}}"#,
            (0..10)
                .map(|j| format!(
                    r#"{{"event":"segmentation_api_success","distinct_id":"u","properties":{{"duration_ms":{}}}}}"#,
                    i * 10 + j
                ))
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let http = reqwest::Client::new();
    let mut seen = None;
    for i in 0..20 {
        let r = http
            .post(format!("{host}/batch/"))
            .body(event(i))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            seen = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            break;
        }
    }
    let wait = seen.expect("a 429 with a Retry-After of whole seconds");
    assert!((1..=10).contains(&wait), "Retry-After: {wait}");
    d.stop().await;
}

/// An event dated 30 days back counts at its arrival: it does not rewrite the past.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_dated_30_days_back_counts_at_arrival() {
    let dir = tempdir();
    let port = free_port();
    let mut d = Daemon::start(dir.path(), &config(port, ""), &[]).await;
    let old = chrono::Utc::now() - chrono::Duration::days(30);
    let body = format!(
        r#"{{"api_key":"{TOKEN}","batch":[{{"event":"segmentation_memory_snapshot","distinct_id":"u","timestamp":"{}","properties":{{"used_js_heap_mb":123}}}}]}}"#,
        old.to_rfc3339()
    );
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/batch/"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let data = dir.path().join("data");
    let last = query_agg(
        data.to_str().unwrap(),
        "client_js_heap_mb",
        "10m",
        "last",
        &[],
    );
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(last[0].1, 123.0);
    d.stop().await;
}

/// 2 000 connections that never send a byte do not keep `/healthz` from answering or the
/// probes from probing, and the server closes them after its head-read timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_do_not_starve_the_server() {
    // Room for 2 000 sockets on each side (the daemon inherits the limit, as under the unit).
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let want = 8192.min(hard);
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, want, hard).unwrap();
    let dir = tempdir();
    let port = free_port();
    let target = crate::util::Target::start().await;
    let text = format!(
        "{}\n[[targets]]\nname = \"web\"\nurl = \"{}\"\ninterval = \"1s\"\ntimeout = \"1s\"\n",
        config(port, ""),
        target.url()
    );
    let mut d = Daemon::start(dir.path(), &text, &[]).await;
    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    let started = Instant::now();
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .expect("/healthz answers within 1 s");
    assert!(r.status().is_success());
    assert!(started.elapsed() < Duration::from_secs(1));
    // The probes go on meanwhile: a success a second (the connections are still held).
    let data = dir.path().join("data");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let probes = query_agg(data.to_str().unwrap(), "probe_up", "3s", "count", &[]);
    let ups = query_agg(data.to_str().unwrap(), "probe_up", "3s", "min", &[]);
    assert!(
        probes.first().is_some_and(|(_, n)| *n >= 2.0)
            && ups.first().is_some_and(|(_, v)| *v == 1.0),
        "probes while 2 000 connections idle: {probes:?} {ups:?}\n{}",
        d.log_text()
    );
    // The head-read timeout (10 s) closes them: a read sees the end.
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(15), idle[0].read(&mut buf))
        .await
        .expect("closed within 15 s")
        .unwrap_or(0);
    assert_eq!(n, 0);
    drop(idle);
    d.stop().await;
}

/// The dashboard answers only to this server's names (DNS rebinding), and a write without
/// the token is refused before its body arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_and_a_tokenless_write_are_refused_early() {
    let dir = tempdir();
    let port = free_port();
    let mut d = Daemon::start(dir.path(), &config(port, ""), &[]).await;
    let http = reqwest::Client::new();
    let get = |host: &str| {
        http.get(format!("http://127.0.0.1:{port}/api/v1/alerts"))
            .header("Host", host)
            .send()
    };
    assert_eq!(
        get("rebind.attacker.example:9797").await.unwrap().status(),
        421
    );
    assert_eq!(
        get(&format!("127.0.0.1:{port}")).await.unwrap().status(),
        200
    );
    assert_eq!(get("localhost").await.unwrap().status(), 200);
    assert_eq!(get("[::1]:80").await.unwrap().status(), 200);
    assert_eq!(get("sloguard.example.com").await.unwrap().status(), 200);
    // Capture takes any host: the proxy in front names it.
    let r = http
        .post(format!("http://127.0.0.1:{port}/batch/"))
        .header("Host", "events.example.net")
        .body(format!(
            r#"{{"api_key":"{TOKEN}","batch":[{{"event":"e","distinct_id":"u"}}]}}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Headers that promise a body that never comes: the answer comes anyway.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(
        format!(
            "POST /api/v1/alerts/ack HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut answer))
        .await
        .expect("answered before the body")
        .unwrap();
    let head = String::from_utf8_lossy(&answer[..n]);
    assert!(
        head.starts_with("HTTP/1.1 403") || head.starts_with("HTTP/1.1 401"),
        "{head}"
    );
    d.stop().await;
}

/// `config.toml.example` as a daemon on loopback runs it: Slack and the webhook to `slack`,
/// PagerDuty to `pagerduty`, email to a loopback port where nothing listens, the PostHog
/// source with [`TOKEN`] and room for a flood (the rate limit is not what is tested), the
/// app's log files in `dir`, every rule evaluated each second, and no targets, databases or
/// scrapes (they name other machines).
fn example_on_loopback(
    dir: &std::path::Path,
    port: u16,
    slack: &Receiver,
    pagerduty: &Receiver,
) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml.example");
    let mut doc: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
    for section in ["targets", "databases", "scrapes"] {
        doc.remove(section);
    }
    let table = |v: &mut toml::Value| v.as_table_mut().unwrap().clone();
    let mut server = table(&mut doc["server"]);
    server.insert("listen".into(), format!("127.0.0.1:{port}").into());
    doc.insert("server".into(), server.into());
    let closed = free_port() as i64;
    for ch in doc["channels"].as_array_mut().unwrap() {
        let ch = ch.as_table_mut().unwrap();
        match ch["type"].as_str().unwrap() {
            "slack" => {
                ch.insert("webhook_url".into(), slack.url("/slack").into());
            }
            "webhook" => {
                ch.insert("url".into(), slack.url("/hook").into());
            }
            "pagerduty" => {
                ch.insert("events_url".into(), pagerduty.url("").into());
            }
            "email" => {
                ch.insert("smtp_host".into(), "127.0.0.1".into());
                ch.insert("smtp_port".into(), closed.into());
            }
            other => panic!("a channel type this test does not place on loopback: {other}"),
        }
    }
    for l in doc["logs"].as_array_mut().unwrap() {
        let l = l.as_table_mut().unwrap();
        if l.contains_key("files") {
            let files = toml::Value::Array(vec![format!("{}/app.log*", dir.display()).into()]);
            l.insert("files".into(), files);
            l.remove("exclude");
        } else {
            l.insert("max_events_per_second".into(), 1_000_000.into());
            l.insert("max_bytes_per_second".into(), (1i64 << 30).into());
        }
    }
    for r in doc["rules"].as_array_mut().unwrap() {
        let r = r.as_table_mut().unwrap();
        if r.contains_key("every") {
            r.insert("every".into(), "1s".into());
        }
    }
    toml::to_string(&doc).unwrap()
}

/// The environment the example's `env:` secrets read.
const EXAMPLE_ENV: &[(&str, &str)] = &[
    ("SLOGUARD_API_TOKEN", "0123456789abcdef0123456789abcdef"),
    ("SLACK_WEBHOOK_URL", "unused: replaced by the test"),
    ("SMTP_PASSWORD", "password"),
    ("PAGERDUTY_ROUTING_KEY", "R0UTINGKEY0000000000000000000001"),
    ("OPS_WEBHOOK_TOKEN", "token"),
    ("POSTHOG_PROJECT_TOKEN", TOKEN),
];

/// Posts one batch of events to the capture path; the answer's status.
async fn post_batch(http: &reqwest::Client, port: u16, events: &[serde_json::Value]) -> u16 {
    let body = serde_json::json!({ "api_key": TOKEN, "batch": events });
    http.post(format!("http://127.0.0.1:{port}/batch/"))
        .header("Content-Encoding", "gzip")
        .body(gzip(body.to_string().as_bytes()))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// 500 made-up users whose heap jumps, against the example's rules: the growth and the
/// heap-high alerts reach Slack, cut and marked as client-reported, and PagerDuty hears
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_users_with_heap_jumps_never_page() {
    let dir = tempdir();
    let port = free_port();
    let slack = Receiver::start().await;
    let pagerduty = Receiver::start().await;
    let text = example_on_loopback(dir.path(), port, &slack, &pagerduty);
    let mut d = Daemon::start(dir.path(), &text, EXAMPLE_ENV).await;
    let http = reqwest::Client::new();
    let long = "x".repeat(200);
    for heap in [10, 100, 200, 300, 400] {
        let events: Vec<serde_json::Value> = (0..500)
            .map(|i| {
                serde_json::json!({
                    "event": "segmentation_memory_snapshot",
                    "distinct_id": format!("made-up-{i}-{long}"),
                    "properties": { "used_js_heap_mb": heap },
                })
            })
            .collect();
        assert_eq!(post_batch(&http, port, &events).await, 200);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    // The growth rule fires (critical), the heap-high rule too (warning): both to Slack.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut texts = Vec::new();
    while Instant::now() < deadline {
        texts = slack
            .delivered()
            .iter()
            .map(crate::util::slack_text)
            .collect();
        if ["client_heap_growth", "client_heap_high"]
            .iter()
            .all(|r| texts.iter().any(|t| t.contains(r)))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let all = texts.join("\n---\n");
    assert!(
        all.contains("client_heap_growth") && all.contains("client_heap_high"),
        "both heap rules reach Slack:\n{all}\n{}",
        d.log_text()
    );
    // Marked in every message, one alert or a group.
    assert!(all.contains("client_reported=true"), "{all}");
    assert!(!all.contains(&long), "client strings are cut:\n{all}");
    // A few more turns for anything that could still page.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let paged = pagerduty.received();
    assert!(
        paged.is_empty(),
        "PagerDuty was sent {} events: {:?}",
        paged.len(),
        paged.first().map(|r| &r.body)
    );
    d.stop().await;
}

/// 100 000 made-up error messages from one token holder: the source keeps at most its cap of
/// types, `/healthz` answers throughout, and the example's window rules then evaluate over
/// the store in under 50 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_made_up_errors_is_capped_and_cheap_to_evaluate() {
    use rand::Rng;
    let dir = tempdir();
    let port = free_port();
    let slack = Receiver::start().await;
    let pagerduty = Receiver::start().await;
    let text = example_on_loopback(dir.path(), port, &slack, &pagerduty);
    let mut d = Daemon::start(dir.path(), &text, EXAMPLE_ENV).await;
    let http = reqwest::Client::new();
    let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let done = tokio_util::sync::CancellationToken::new();
    let watch = {
        let (healthy, done, http) = (healthy.clone(), done.clone(), http.clone());
        tokio::spawn(async move {
            let mut checks = 0u32;
            while !done.is_cancelled() {
                let ok = http
                    .get(format!("http://127.0.0.1:{port}/healthz"))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if !ok {
                    healthy.store(false, std::sync::atomic::Ordering::SeqCst);
                }
                checks += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            checks
        })
    };
    let word = |rng: &mut rand::rngs::ThreadRng| -> String {
        (0..30)
            .map(|_| rng.random_range(b'a'..=b'z') as char)
            .collect()
    };
    for _ in 0..100 {
        let events: Vec<serde_json::Value> = {
            let mut rng = rand::rng();
            (0..1000)
                .map(|_| {
                    serde_json::json!({
                        "event": "segmentation_error_occurred",
                        "distinct_id": "attacker",
                        "properties": { "error_message": format!("{} {}", word(&mut rng), word(&mut rng)) },
                    })
                })
                .collect()
        };
        assert_eq!(post_batch(&http, port, &events).await, 200);
    }
    done.cancel();
    let checks = watch.await.unwrap();
    assert!(checks > 0);
    assert!(
        healthy.load(std::sync::atomic::Ordering::SeqCst),
        "/healthz failed or took over 1 s during the flood\n{}",
        d.log_text()
    );
    d.stop().await;

    let data = dir.path().join("data");
    let store = sloguard::store::Store::open(&data).unwrap();
    let errors = store.errors().unwrap();
    let types = errors.types(Some("posthog")).unwrap();
    assert!(
        types.len() <= 1001,
        "{} types kept, the cap is 1 000 and `other`",
        types.len()
    );
    let other = types
        .iter()
        .find(|t| t.id == sloguard::store::logs::OTHER_ID)
        .expect("the types past the cap count as `other`");
    assert!(other.count >= 90_000, "{}", other.count);

    // Every window rule of the example, as the daemon evaluates them, over that store.
    let mut literal = text.clone();
    for (name, value) in EXAMPLE_ENV {
        literal = literal.replace(&format!("\"env:{name}\""), &format!("\"{value}\""));
    }
    let cfg = sloguard::config::parse(&literal, &dir.path().join("config.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let now = sloguard::clock::now_ms();
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let snap = store.snapshot().unwrap();
        let errors = store.errors().unwrap();
        for rule in &cfg.rules {
            if let sloguard::config::RuleKind::Window(w) = &rule.kind {
                let mut memory = sloguard::rules::WindowMemory::default();
                sloguard::rules::window_values(&errors, &snap, w, now, &mut memory).unwrap();
            }
        }
        best = best.min(started.elapsed());
    }
    assert!(
        best < Duration::from_millis(50),
        "the example's window rules took {best:?}"
    );
}

/// 3 000 users, against a metric that keeps 20 series: the report still counts every one,
/// from the hourly sketch, not from the few dozen series that were kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_counts_more_users_than_the_metric_keeps_series() {
    let dir = tempdir();
    let port = free_port();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[[channels]]
name = "mail"
type = "email"
smtp_host = "127.0.0.1"
smtp_port = {closed}
tls = "none"
from = "sloguard <alerts@example.com>"
to = ["product@example.com"]

[[logs]]
name = "posthog"
ingest = "posthog"
token = "{TOKEN}"

[[logs.metric]]
name = "client_js_heap_mb"
kind = "gauge"
match = {{ event = "segmentation_memory_snapshot" }}
value = "properties.used_js_heap_mb"
labels = {{ user = "distinct_id" }}
max_series = 20

[[reports]]
name = "daily"
schedule = "0 9 * * *"
channel = "mail"
window = "24h"
sections = ["usage"]

[[reports.usage]]
title = "Active users"
distinct = {{ metric = "client_js_heap_mb", label = "user" }}
"#,
        closed = free_port()
    );
    let mut d = Daemon::start(dir.path(), &text, &[]).await;
    let http = reqwest::Client::new();
    for batch in 0..3 {
        let events: Vec<serde_json::Value> = (0..1000)
            .map(|i| {
                serde_json::json!({
                    "event": "segmentation_memory_snapshot",
                    "distinct_id": format!("user-{batch}-{i}"),
                    "properties": { "used_js_heap_mb": 50 },
                })
            })
            .collect();
        assert_eq!(post_batch(&http, port, &events).await, 200);
    }
    let data = dir.path().join("data");
    let series = query_agg(
        data.to_str().unwrap(),
        "client_js_heap_mb",
        "1h",
        "last",
        &[],
    );
    // The label sets that kept a series (20 at a time, the rest evicted or overflowed):
    // counting them would say a few dozen.
    assert!(series.len() < 100, "{} series kept", series.len());
    let out = crate::util::sloguard(
        &[
            "report",
            "--config",
            d.config.to_str().unwrap(),
            "--name",
            "daily",
            "--data-dir",
            data.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let users = r["usage"][0]["value"].as_f64().unwrap();
    assert!(
        (users - 3000.0).abs() <= 30.0,
        "{users} active users counted, 3 000 sent"
    );
    d.stop().await;
}
