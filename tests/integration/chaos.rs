//! The chaos run: one daemon under steady probes, log lines and capture while everything
//! around it fails in turn. It is SIGKILLed and started again over and over while its Slack
//! receiver is down; then Slack answers 429 storms; the PostgreSQL it watches is stopped and
//! then hangs (SIGSTOP to every backend); the filesystem under its data file is full; its
//! wall clock steps an hour forward and back (libfaketime, monotonic time untouched).
//!
//! Afterwards: every alert the history says fired or resolved was delivered to every routed
//! channel (Slack and a webhook) with the same text; no channel got a message of an alert
//! the history does not know; every log line written is counted once; every capture event
//! the daemon answered 200 for is stored, once; and the last process's memory stayed flat.
//!
//! The short form runs in the test command; `cargo bench --bench chaos` runs the long form
//! (every fault longer, the faults after the kills repeated) and prints its figures.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::util::{Daemon, Postgres, Receiver, Target, Tmpfs, free_port, sloguard, tempdir};

const TOKEN: &str = "phc_sloguard_chaos_0001";

/// How long each fault lasts, and how often the faults after the kills repeat.
#[derive(Debug, Clone)]
pub struct Plan {
    /// SIGKILLs, one every `kill_every`, while Slack is down.
    pub kills: u32,
    pub kill_every: Duration,
    /// Slack refuses connections this long from the start.
    pub slack_down: Duration,
    /// Then answers most requests 429 (`Retry-After: 1`) this long.
    pub storm: Duration,
    /// PostgreSQL stopped this long, then frozen this long.
    pub pg_stopped: Duration,
    pub pg_hung: Duration,
    /// The data file's filesystem full this long.
    pub disk_full: Duration,
    /// The wall clock an hour ahead this long, right this long, an hour behind this long.
    pub clock_off: Duration,
    /// How often storm, PostgreSQL, disk and clock faults repeat after the kills.
    pub cycles: u32,
    /// The tmpfs under the data directory.
    pub tmpfs_size: &'static str,
}

impl Plan {
    /// The form the test command runs: about three minutes.
    pub fn short() -> Plan {
        Plan {
            kills: 20,
            kill_every: Duration::from_secs(2),
            slack_down: Duration::from_secs(45),
            storm: Duration::from_secs(15),
            pg_stopped: Duration::from_secs(8),
            pg_hung: Duration::from_secs(8),
            disk_full: Duration::from_secs(30),
            clock_off: Duration::from_secs(8),
            cycles: 1,
            tmpfs_size: "96m",
        }
    }

    /// The bench's form: the issue's two minutes of Slack down, and four rounds of the rest.
    pub fn long() -> Plan {
        Plan {
            kills: 20,
            kill_every: Duration::from_secs(5),
            slack_down: Duration::from_secs(120),
            storm: Duration::from_secs(60),
            pg_stopped: Duration::from_secs(30),
            pg_hung: Duration::from_secs(30),
            disk_full: Duration::from_secs(30),
            clock_off: Duration::from_secs(30),
            cycles: 4,
            tmpfs_size: "256m",
        }
    }
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct Figures {
    pub seconds: f64,
    pub kills: u32,
    /// Alerts fired and resolved, as the history has them.
    pub firings: usize,
    pub resolves: usize,
    /// Deliveries (2xx) per channel, and requests refused with 429.
    pub slack_delivered: usize,
    pub slack_429: usize,
    pub webhook_delivered: usize,
    /// The same message delivered more than once to one channel.
    pub slack_duplicates: usize,
    pub webhook_duplicates: usize,
    pub log_lines: u64,
    pub capture_events: u64,
    /// Capture requests answered other than 200 (and retried by the client).
    pub capture_refused: u64,
    /// Resident memory of the last process, in KiB: after its start-up, then the highest
    /// seen in each round of faults.
    pub rss_start_kib: u64,
    pub rss_round_max_kib: Vec<u64>,
}

/// The libfaketime library Debian's `faketime` package installs.
fn libfaketime() -> PathBuf {
    for dir in [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ] {
        let p = Path::new(dir).join("faketime/libfaketimeMT.so.1");
        if p.exists() {
            return p;
        }
    }
    panic!("libfaketime is not installed: tests/run.sh installs Debian's faketime package");
}

/// The wall-clock offset the daemon sees, through libfaketime's timestamp file (read again
/// at most once a second).
struct Clock(PathBuf);

impl Clock {
    fn set(&self, offset_secs: i64) {
        std::fs::write(&self.0, format!("{offset_secs:+}\n")).unwrap();
    }
}

fn config(
    port: u16,
    target: &Target,
    pg: &Postgres,
    slack: &str,
    hook: &str,
    logs: &Path,
) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[outbox]
initial_backoff = "200ms"
max_backoff = "2s"
max_retry_after = "2s"
timeout = "2s"

[routing]
warning = ["slack", "hook"]
critical = ["slack", "hook"]

[[channels]]
name = "slack"
type = "slack"
webhook_url = "{slack}"

[[channels]]
name = "hook"
type = "webhook"
url = "{hook}"

[[targets]]
name = "web"
url = "{target}"
interval = "500ms"
timeout = "1s"

[[databases]]
name = "app"
url = "{pg}"
tls = "disable"
interval = "500ms"
timeout = "1s"
statements = false

[[targets]]
type = "sql"
name = "lookup"
database = "app"
sql = "SELECT 1"
interval = "500ms"
timeout = "1s"

[[logs]]
name = "app"
files = ["{logs}/app.log"]
start_at = "beginning"
poll_interval = "50ms"

[[logs.metric]]
name = "app_requests"
kind = "counter"
match = {{ event = "request" }}

[[logs]]
name = "posthog"
ingest = "posthog"
token = "{TOKEN}"

[[logs.metric]]
name = "client_clicks"
kind = "counter"
match = {{ event = "chaos_click" }}

[[rules]]
name = "web_down"
kind = "consecutive"
match = {{ target = "web" }}
fire_after = 2
resolve_after = 1
severity = "critical"
summary = "Web down"

[[rules]]
name = "lookup_failing"
kind = "consecutive"
match = {{ target = "lookup" }}
fire_after = 2
resolve_after = 1
severity = "warning"
summary = "Lookup failing"

[[rules]]
name = "database_unreachable"
kind = "consecutive"
metric = "pg_up"
match = {{ database = "app" }}
fire_after = 2
resolve_after = 1
severity = "critical"
summary = "Database unreachable"
"#,
        target = target.url(),
        pg = pg.url("monitor", "monitor-secret"),
        logs = logs.display(),
    )
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Background load and fault drivers share this.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    lines: AtomicU64,
    /// Capture events answered 200.
    events: AtomicU64,
    refused: AtomicU64,
    /// The current daemon's PID, for the memory sampler.
    pid: AtomicI32,
}

/// Appends 5 JSON lines every 20 ms until told to stop.
fn write_lines(path: PathBuf, load: Arc<Load>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        while !load.stop.load(Ordering::SeqCst) {
            let n = load.lines.load(Ordering::SeqCst);
            let mut batch = String::new();
            for i in n..n + 5 {
                batch.push_str(&format!("{{\"event\":\"request\",\"n\":{i}}}\n"));
            }
            f.write_all(batch.as_bytes()).unwrap();
            load.lines.fetch_add(5, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

/// Sends batches of 5 capture events with unique uuids, as an SDK does: a batch is sent
/// again until it is answered 200, and only then the next one.
async fn capture(port: u16, load: Arc<Load>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/i/v0/e/");
    let mut next = 0u64;
    while !load.stop.load(Ordering::SeqCst) {
        let batch: Vec<serde_json::Value> = (next..next + 5)
            .map(|i| {
                serde_json::json!({
                    "event": "chaos_click",
                    "distinct_id": format!("user-{}", i % 7),
                    "uuid": format!("019a6b5e-0000-7000-8000-{i:012x}"),
                    "properties": {"n": i},
                })
            })
            .collect();
        let body = serde_json::json!({"api_key": TOKEN, "batch": batch});
        loop {
            match http.post(&url).json(&body).send().await {
                Ok(r) if r.status() == 200 => break,
                _ => {
                    load.refused.fetch_add(1, Ordering::SeqCst);
                    // A batch is never given up: the run ends with it answered.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        load.events.fetch_add(5, Ordering::SeqCst);
        next += 5;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Switches the target between 500 and 200 every 3 s, so alerts fire and resolve throughout.
async fn flap(target: Arc<tokio::sync::Mutex<Target>>, load: Arc<Load>) {
    let mut failing = false;
    while !load.stop.load(Ordering::SeqCst) {
        failing = !failing;
        target
            .lock()
            .await
            .answer(if failing { 500 } else { 200 })
            .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    target.lock().await.answer(200).await;
}

/// Samples the current daemon's resident memory every second into `samples`.
async fn sample_memory(load: Arc<Load>, samples: Arc<std::sync::Mutex<Vec<(Instant, u64)>>>) {
    while !load.stop.load(Ordering::SeqCst) {
        if let Some(kib) = rss_kib(load.pid.load(Ordering::SeqCst)) {
            samples.lock().unwrap().push((Instant::now(), kib));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A 429 storm: most requests are refused with `Retry-After: 1`, a few get through.
async fn storm(slack: &Receiver, how_long: Duration) {
    let end = Instant::now() + how_long;
    while Instant::now() < end {
        slack.script(&[
            (429, Some("1")),
            (429, Some("1")),
            (429, Some("1")),
            (200, None),
        ]);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    slack.script(&[]);
}

async fn metrics(port: u16) -> String {
    match reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The sum of every sample of `name` in a `/metrics` text.
fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// The count of `metric` over the last three hours and the next two (the clock stepped).
fn stored_count(data: &Path, metric: &str) -> f64 {
    let until = chrono::Utc::now() + chrono::Duration::hours(2);
    let until = until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let out = sloguard(
        &[
            "query",
            metric,
            "--data-dir",
            data.to_str().unwrap(),
            "--since",
            "3h",
            "--until",
            &until,
            "--agg",
            "count",
            "--format",
            "json",
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "query {metric}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let series: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    series
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["value"].as_f64())
        .sum()
}

/// Runs the whole plan; panics with what was lost if anything was.
pub async fn run(plan: Plan) -> Figures {
    let started = Instant::now();
    let dir = tempdir();
    let data = dir.path().join("data");
    let tmpfs = Tmpfs::mount(&data, plan.tmpfs_size);
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();

    let target = Arc::new(tokio::sync::Mutex::new(Target::start().await));
    let mut slack = Receiver::start().await;
    let hook = Receiver::start().await;
    let mut pg = Postgres::start(dir.path(), false).await;
    pg.admin()
        .await
        .unwrap()
        .batch_execute("CREATE ROLE monitor LOGIN PASSWORD 'monitor-secret' IN ROLE pg_monitor")
        .await
        .unwrap();

    let clock = Clock(dir.path().join("faketime"));
    clock.set(0);
    let faketime = libfaketime();
    let env = [
        ("LD_PRELOAD", faketime.to_str().unwrap()),
        ("FAKETIME_TIMESTAMP_FILE", clock.0.to_str().unwrap()),
        ("FAKETIME_CACHE_DURATION", "1"),
        ("DONT_FAKE_MONOTONIC", "1"),
    ];
    let port = free_port();
    let cfg = config(
        port,
        &*target.lock().await,
        &pg,
        &slack.url("/slack"),
        &hook.url("/hook"),
        &logs,
    );
    slack.refuse().await;
    let mut daemon = Daemon::start(dir.path(), &cfg, &env).await;

    let load = Arc::new(Load::default());
    load.pid.store(daemon.pid().as_raw(), Ordering::SeqCst);
    let memory = Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = write_lines(logs.join("app.log"), load.clone());
    let client = tokio::spawn(capture(port, load.clone()));
    let flapper = tokio::spawn(flap(target.clone(), load.clone()));
    let sampler = tokio::spawn(sample_memory(load.clone(), memory.clone()));
    let mut figures = Figures::default();

    // SIGKILL and start again, while Slack is down.
    for _ in 0..plan.kills {
        tokio::time::sleep(plan.kill_every).await;
        daemon.kill9();
        daemon.spawn().await;
        load.pid.store(daemon.pid().as_raw(), Ordering::SeqCst);
        figures.kills += 1;
    }
    let slack_up = started + plan.slack_down;
    tokio::time::sleep_until(slack_up).await;
    slack.listen().await;
    let last_start = Instant::now();

    let mut round_starts = Vec::new();
    for _ in 0..plan.cycles {
        round_starts.push(Instant::now());
        storm(&slack, plan.storm).await;

        pg.stop();
        tokio::time::sleep(plan.pg_stopped).await;
        pg.spawn().await;
        pg.hang();
        tokio::time::sleep(plan.pg_hung).await;
        pg.resume();

        let filler = tmpfs.fill();
        tokio::time::sleep(plan.disk_full).await;
        std::fs::remove_file(&filler).unwrap();

        // An hour forward and back, then an hour back and forward.
        clock.set(3600);
        tokio::time::sleep(plan.clock_off).await;
        clock.set(0);
        tokio::time::sleep(plan.clock_off).await;
        clock.set(-3600);
        tokio::time::sleep(plan.clock_off).await;
        clock.set(0);
        // The daemon reads the offset at most a second later.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    round_starts.push(Instant::now());

    // Quiet: everything answers, every alert resolves, the outbox empties.
    load.stop.store(true, Ordering::SeqCst);
    flapper.await.unwrap();
    writer.join().unwrap();
    tokio::time::timeout(Duration::from_secs(60), client)
        .await
        .expect("the last capture batch was answered within 60 s")
        .unwrap();
    sampler.await.unwrap();
    assert!(daemon.alive(), "the daemon died:\n{}", daemon.log_text());
    drain(port, &daemon).await;

    figures.log_lines = load.lines.load(Ordering::SeqCst);
    figures.capture_events = load.events.load(Ordering::SeqCst);
    figures.capture_refused = load.refused.load(Ordering::SeqCst);
    let history = history(port).await;
    check_deliveries(&history, &slack, &hook, &mut figures);

    // Stored exactly once: every line written, every event answered 200.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = 0.0;
    while Instant::now() < deadline {
        lines = stored_count(&data, "app_requests");
        if lines >= figures.log_lines as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let events = stored_count(&data, "client_clicks");
    if lines != figures.log_lines as f64 || events != figures.capture_events as f64 {
        panic!(
            "log lines: {lines} counted, {} written; capture events: {events} stored, {} \
             answered 200\n{}",
            figures.log_lines,
            figures.capture_events,
            diagnose(port, &daemon).await
        );
    }

    // Memory: the last process after its start-up, then each round's highest.
    let samples = memory.lock().unwrap().clone();
    let after = |t: Instant| samples.iter().filter(move |(at, _)| *at >= t);
    figures.rss_start_kib = after(last_start + Duration::from_secs(5))
        .map(|(_, k)| *k)
        .next()
        .unwrap_or(0);
    for w in round_starts.windows(2) {
        let max = after(w[0])
            .filter(|(at, _)| *at < w[1])
            .map(|(_, k)| *k)
            .max()
            .unwrap_or(0);
        figures.rss_round_max_kib.push(max);
    }

    let status = daemon.stop().await;
    assert!(
        status.is_some_and(|s| s.success()),
        "the daemon did not stop cleanly: {status:?}\n{}",
        daemon.log_text()
    );
    drop(tmpfs);
    figures.seconds = started.elapsed().as_secs_f64();
    figures
}

/// What the daemon counted about its sources and store, and the warnings it logged, for a
/// failure's message.
async fn diagnose(port: u16, daemon: &Daemon) -> String {
    let m = metrics(port).await;
    let counted: Vec<&str> = m
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            ["log", "store", "ingest", "dropped", "lost"]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    let warnings: Vec<String> = daemon
        .all_logs()
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .filter(|l| seen.insert(l.get(28..120).unwrap_or(l).to_string()))
        .map(|l| l.get(..400).unwrap_or(l).to_string())
        .collect();
    format!(
        "metrics:\n{}\nwarnings:\n{}",
        counted.join("\n"),
        warnings.join("\n")
    )
}

/// Waits until no alert fires and no notification is pending, for 3 s in a row.
async fn drain(port: u16, daemon: &Daemon) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut quiet_since: Option<Instant> = None;
    loop {
        let m = metrics(port).await;
        let pending = metric_sum(&m, "sloguard_outbox_pending");
        let firing = m
            .lines()
            .find_map(|l| l.strip_prefix(r#"sloguard_alerts{state="firing"} "#))
            .and_then(|v| v.parse::<f64>().ok());
        let quiet = pending == Some(0.0) && firing.unwrap_or(0.0) == 0.0;
        match (quiet, quiet_since) {
            (true, None) => quiet_since = Some(Instant::now()),
            (true, Some(t)) if t.elapsed() >= Duration::from_secs(3) => return,
            (false, _) => quiet_since = None,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "still pending {pending:?}, firing {firing:?} after 120 s\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn history(port: u16) -> Vec<serde_json::Value> {
    let r = reqwest::get(format!(
        "http://127.0.0.1:{port}/api/v1/history?since=3h&limit=10000"
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Vec<serde_json::Value>>().await.unwrap()
}

/// Milliseconds since the epoch of an RFC 3339 time.
fn ms(t: &serde_json::Value) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(t.as_str()?)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Every firing and resolve in the history reached both channels with one text; nothing
/// reached them that the history does not hold. A message and its history event are one
/// when they are of the same alert and status and their times are within a second (the
/// event is written in the same turn, its time read a moment apart).
fn check_deliveries(
    history: &[serde_json::Value],
    slack: &Receiver,
    hook: &Receiver,
    figures: &mut Figures,
) {
    let hooks = hook.delivered();
    let slacks: Vec<String> = slack
        .delivered()
        .iter()
        .map(crate::util::slack_text)
        .collect();
    figures.webhook_delivered = hooks.len();
    figures.slack_delivered = slacks.len();
    figures.slack_429 = slack
        .received()
        .iter()
        .filter(|r| r.answered == 429)
        .count();
    let time_field = |status: &str| {
        if status == "resolved" {
            "ended_at"
        } else {
            "fired_at"
        }
    };

    let mut matched = vec![false; hooks.len()];
    for e in history {
        let status = match e["event"].as_str() {
            Some("firing") if e["held_back"].is_null() => "firing",
            Some("resolved") => "resolved",
            _ => continue,
        };
        if status == "firing" {
            figures.firings += 1;
        } else {
            figures.resolves += 1;
        }
        let alert = e["alert"].as_str().unwrap();
        let at = e["at_ms"].as_i64().unwrap();
        let found = hooks.iter().enumerate().find(|(i, h)| {
            !matched[*i]
                && h.body["status"] == status
                && h.body["fingerprint"] == alert
                && ms(&h.body[time_field(status)]).is_some_and(|t| (t - at).abs() <= 1000)
        });
        let Some((i, found)) = found else {
            panic!(
                "{status} of {alert} at {} never reached the webhook; it got:\n{:#?}",
                e["at"],
                hooks.iter().map(|h| &h.body).collect::<Vec<_>>()
            );
        };
        // Its duplicates (the same message again) are accounted for with it.
        for (j, h) in hooks.iter().enumerate() {
            if h.body == found.body {
                matched[j] = true;
            }
        }
        matched[i] = true;
        let text = found.body["text"].as_str().unwrap();
        assert!(
            slacks.iter().any(|s| s == text),
            "{status} of {alert} at {} reached the webhook but not Slack:\n{text}\nSlack got:\n{slacks:#?}",
            e["at"]
        );
    }
    assert!(
        figures.firings > 0,
        "no alert fired: the run tested nothing"
    );
    // Nothing delivered that the history does not hold.
    for (h, m) in hooks.iter().zip(&matched) {
        assert!(
            m,
            "the webhook got a message the history does not hold: {:#}",
            h.body
        );
    }
    let texts: std::collections::BTreeSet<&str> = hooks
        .iter()
        .filter_map(|h| h.body["text"].as_str())
        .collect();
    for s in &slacks {
        assert!(
            texts.contains(s.as_str()),
            "Slack got a message the history does not hold:\n{s}"
        );
    }
    figures.webhook_duplicates = duplicates(hooks.iter().map(|h| h.body.to_string()));
    figures.slack_duplicates = duplicates(slacks.into_iter());
}

/// How many messages arrived again after their first delivery.
fn duplicates(messages: impl Iterator<Item = String>) -> usize {
    let mut seen = std::collections::BTreeSet::new();
    messages.filter(|m| !seen.insert(m.clone())).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_short_form_loses_no_page_no_line_and_no_acknowledged_event() {
    let figures = run(Plan::short()).await;
    eprintln!("chaos run (short form): {figures:#?}");
    // A duplicate needs a SIGKILL between the receiver's answer and the commit that removes
    // the entry: at most one per kill, per channel.
    assert!(
        figures.slack_duplicates <= figures.kills as usize,
        "{figures:#?}"
    );
    assert!(
        figures.webhook_duplicates <= figures.kills as usize,
        "{figures:#?}"
    );
    // Memory flat: the round's highest within a quarter (and 8 MiB) of the start.
    let bound = figures.rss_start_kib + figures.rss_start_kib / 4 + 8 * 1024;
    for max in &figures.rss_round_max_kib {
        assert!(*max <= bound, "memory grew: {figures:#?}");
    }
}
