//! `[[logs]]` with real files and processes: a `sloguard run` child follows files that are
//! appended to, rotated both ways and truncated, and is killed mid-stream; every line counts
//! exactly once. A command source is restarted when its command exits.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::util::{Daemon, free_port, query_agg, sloguard, tempdir};

/// One seed-format line: a success with `ms`, or an error with a message.
fn line(i: u64, ms: u64, error: Option<&str>) -> String {
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    match error {
        None => format!(
            r#"{{"event":"api_segmentation_success","duration_ms":{ms},"customer_count":{i},"timestamp":"{ts}"}}"#
        ),
        Some(e) => format!(
            r#"{{"event":"api_segmentation_error","duration_ms":{ms},"error":"{e}","timestamp":"{ts}"}}"#
        ),
    }
}

fn append(path: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut text = lines.join("\n");
    text.push('\n');
    f.write_all(text.as_bytes()).unwrap();
}

/// What the test wrote: every duration per event.
#[derive(Default)]
struct Written {
    success: Vec<f64>,
    errors: Vec<f64>,
}

impl Written {
    /// `n` lines, one error in ten, durations spread over 10..2000 ms.
    fn lines(&mut self, n: u64) -> Vec<String> {
        (0..n)
            .map(|_| {
                let i = (self.success.len() + self.errors.len()) as u64;
                let ms = 10 + (i * 7919) % 1990;
                if i % 10 == 3 {
                    self.errors.push(ms as f64);
                    line(
                        i,
                        ms,
                        Some(&format!("Cannot connect to database at 10.0.0.{}", i % 250)),
                    )
                } else {
                    self.success.push(ms as f64);
                    line(i, ms, None)
                }
            })
            .collect()
    }
}

/// One aggregate per series of `metric` over the last two hours.
fn agg(data: &Path, metric: &str, agg: &str, matchers: &[&str]) -> Vec<(String, f64)> {
    query_agg(data.to_str().unwrap(), metric, "2h", agg, matchers)
}

/// Empties a file in place, as copytruncate does.
fn truncate(path: &Path) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

/// A directory `logs/` with `app.log` holding `n` lines, and a daemon that has read them.
async fn following(n: u64) -> (tempfile::TempDir, std::path::PathBuf, Written, Daemon) {
    let dir = tempdir();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut w = Written::default();
    append(&logs.join("app.log"), &w.lines(n));
    let d = Daemon::start(dir.path(), &config(&logs, free_port()), &[]).await;
    wait_total(&d, n as usize, "the lines written before the start").await;
    (dir, logs, w, d)
}

fn total(data: &Path, metric: &str, matchers: &[&str]) -> f64 {
    agg(data, metric, "count", matchers)
        .iter()
        .map(|(_, v)| v)
        .sum()
}

/// Waits until the store holds `want` events of `app_requests` (and no more).
async fn wait_total(d: &Daemon, want: usize, what: &str) {
    let data = d.dir.join("data");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = 0.0;
    while Instant::now() < deadline {
        got = total(&data, "app_requests", &[]);
        if got == want as f64 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{what}: {got} requests stored, wrote {want}\n{}",
        d.all_logs()
    );
}

/// The exact percentile of `values` (nearest rank).
fn percentile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
}

fn config(logs: &Path, port: u16) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[[logs]]
name = "app"
files = ["{dir}/app.log*"]
exclude = ["{dir}/*.gz"]
start_at = "beginning"
poll_interval = "50ms"
timestamp = "timestamp"
max_line_bytes = 2048

[[logs.metric]]
name = "app_requests"
kind = "counter"
match_regex = {{ event = "^api_segmentation_" }}
labels = {{ event = "event" }}

[[logs.metric]]
name = "app_request_duration_ms"
kind = "distribution"
value = "duration_ms"
match_regex = {{ event = "^api_segmentation_" }}
labels = {{ event = "event" }}

[[logs.errors]]
match = {{ event = "api_segmentation_error" }}
message = "error"
"#,
        dir = logs.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_count_exactly_once_through_rotation_truncation_and_kill() {
    let dir = tempdir();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let app = logs.join("app.log");
    let mut w = Written::default();
    append(&app, &w.lines(1000));
    let port = free_port();
    let mut d = Daemon::start(dir.path(), &config(&logs, port), &[]).await;
    wait_total(&d, 1000, "the file written before the start").await;

    append(&app, &w.lines(500));
    wait_total(&d, 1500, "appended lines").await;

    // Rotation by rename: the writer adds a few lines to the old file before it reopens.
    std::fs::rename(&app, logs.join("app.log.1")).unwrap();
    append(&logs.join("app.log.1"), &w.lines(20));
    append(&app, &w.lines(300));
    wait_total(&d, 1820, "rename and create").await;

    // A compressed old file is excluded.
    std::fs::write(logs.join("app.log.2.gz"), b"\x1f\x8b\x08 not text").unwrap();

    // copytruncate: a copy appears (matched by the glob), then the original is emptied
    // and written again from its start.
    std::fs::copy(&app, logs.join("app.log.0")).unwrap();
    truncate(&app);
    append(&app, &w.lines(200));
    wait_total(&d, 2020, "copytruncate").await;

    // Bad lines are counted and skipped, and lose nothing around them.
    let mut bad = w.lines(2);
    bad.insert(1, "not json at all".into());
    bad.insert(
        2,
        r#"{"event":"api_segmentation_success","duration_ms":4"#.into(),
    );
    bad.insert(3, format!(r#"{{"event":"{}"}}"#, "x".repeat(5000)));
    append(&app, &bad);
    wait_total(&d, 2022, "bad lines").await;
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for want in [
        r#"sloguard_log_lines_rejected_total{source="app",reason="not_json"} 2"#,
        r#"sloguard_log_lines_rejected_total{source="app",reason="too_long"} 1"#,
        r#"sloguard_log_rotations_total{source="app",reason="truncated"} 1"#,
    ] {
        assert!(metrics.contains(want), "{want} missing from\n{metrics}");
    }

    // Killed while a writer appends, then started again: nothing skipped, nothing twice.
    let writer_path = app.clone();
    let mut batches = Vec::new();
    for _ in 0..20 {
        batches.push(w.lines(250));
    }
    let writer = tokio::task::spawn_blocking(move || {
        for b in batches {
            append(&writer_path, &b);
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    d.kill9();
    writer.await.unwrap();
    d.spawn().await;
    let written = w.success.len() + w.errors.len();
    wait_total(&d, written, "after kill -9 and restart").await;

    // A graceful restart in the middle of a file: the file grows while the daemon is down.
    d.stop().await;
    append(&app, &w.lines(700));
    d.spawn().await;
    let written = w.success.len() + w.errors.len();
    wait_total(&d, written, "after a restart").await;
    // Quiet for a while: still exactly that many.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let data = d.dir.join("data");
    assert_eq!(total(&data, "app_requests", &[]), written as f64);
    assert_eq!(
        total(&data, "app_requests", &["event=api_segmentation_error"]),
        w.errors.len() as f64
    );

    // Percentiles of what was written, within the sketch's 1 % (plus a rank's width).
    for (q, name) in [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")] {
        let got = agg(
            &data,
            "app_request_duration_ms",
            name,
            &["event=api_segmentation_success"],
        );
        let want = percentile(&w.success, q);
        assert_eq!(got.len(), 1, "{got:?}");
        let err = (got[0].1 - want).abs() / want;
        assert!(err < 0.02, "{name}: stored {} vs written {want}", got[0].1);
    }
    let max = agg(&data, "app_request_duration_ms", "max", &[]);
    let want_max = w
        .success
        .iter()
        .chain(&w.errors)
        .copied()
        .fold(0.0, f64::max);
    assert_eq!(max.iter().map(|(_, v)| *v).fold(0.0, f64::max), want_max);

    // One error type, with every occurrence and the newest message.
    let out = sloguard(
        &["errors", "--data-dir", data.to_str().unwrap(), "--json"],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let types: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let types = types.as_array().unwrap();
    assert_eq!(types.len(), 1, "{types:?}");
    assert_eq!(types[0]["pattern"], "Cannot connect to database at #.#.#.#");
    assert_eq!(types[0]["count"], w.errors.len() as u64);
    assert_eq!(types[0]["count_since"], w.errors.len() as u64);
    assert!(
        types[0]["last_message"]
            .as_str()
            .unwrap()
            .starts_with("Cannot connect to database at 10.0.0.")
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_deleted_and_comes_back_is_followed() {
    let dir = tempdir();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let app = logs.join("app.log");
    let mut w = Written::default();
    let mut d = Daemon::start(dir.path(), &config(&logs, free_port()), &[]).await;
    // Appears after the start: read from its beginning.
    append(&app, &w.lines(100));
    wait_total(&d, 100, "a file that appeared later").await;
    std::fs::remove_file(&app).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    append(&app, &w.lines(40));
    wait_total(&d, 140, "the file came back").await;
    d.stop().await;
}

/// A link planted among the log files (`app.log.1 -> another file`) is not read unless the
/// source says `follow_symlinks = true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symbolic_link_among_the_log_files_is_not_read_unless_asked() {
    let dir = tempdir();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // Outside the globs: what the link would expose.
    let elsewhere = dir.path().join("elsewhere.log");
    let mut w = Written::default();
    append(&elsewhere, &w.lines(50));
    std::os::unix::fs::symlink(&elsewhere, logs.join("app.log.1")).unwrap();
    append(&logs.join("app.log"), &w.lines(20));
    let port = free_port();
    let mut d = Daemon::start(dir.path(), &config(&logs, port), &[]).await;
    wait_total(&d, 20, "the real file only").await;
    assert!(
        d.wait_log("is a symbolic link; not read", Duration::from_secs(10))
            .await,
        "the skipped link is named in the log\n{}",
        d.all_logs()
    );
    // Still not read a few polls later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    wait_total(&d, 20, "the link stays unread").await;
    d.stop().await;

    // Asked for: the link's lines are read too.
    let followed = config(&logs, port).replace(
        "poll_interval = \"50ms\"",
        "poll_interval = \"50ms\"\nfollow_symlinks = true",
    );
    assert_ne!(followed, config(&logs, port));
    let mut d = Daemon::start(dir.path(), &followed, &[]).await;
    wait_total(&d, 70, "the link followed when asked").await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_source_reads_journald_lines_and_is_restarted_when_it_exits() {
    let dir = tempdir();
    let journal = dir.path().join("journal.json");
    // journalctl -o json: the app's line is a string in MESSAGE; times in microseconds.
    let now_us = chrono::Utc::now().timestamp_micros();
    let mut lines = Vec::new();
    for i in 0..50 {
        let app_line = line(i, 100 + i, None).replace('"', "\\\"");
        lines.push(format!(
            r#"{{"__REALTIME_TIMESTAMP":"{now_us}","_SYSTEMD_UNIT":"app.service","MESSAGE":"{app_line}"}}"#
        ));
    }
    append(&journal, &lines);
    let config = format!(
        r#"
[[logs]]
name = "journal"
command = ["sh", "-c", "cat '{journal}'; echo 'journal reader says hello' >&2; exit 3"]
json_in = "MESSAGE"
timestamp = "__REALTIME_TIMESTAMP"

[[logs.metric]]
name = "app_requests"
kind = "counter"
match = {{ event = "api_segmentation_success" }}
labels = {{ unit = "_SYSTEMD_UNIT" }}

[[logs.metric]]
name = "app_request_duration_ms"
kind = "distribution"
value = "duration_ms"
"#,
        journal = journal.display()
    );
    let mut d = Daemon::start(dir.path(), &config, &[]).await;
    // Runs at once, then after 1 s and 2 s of backoff: three runs within 5 s.
    assert!(
        d.wait_log("The log command exited", Duration::from_secs(10))
            .await,
        "{}",
        d.log_text()
    );
    let data = d.dir.join("data");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let runs = total(&data, "app_requests", &["unit=app.service"]) / 50.0;
        if runs >= 3.0 {
            assert_eq!(runs.fract(), 0.0, "a run was counted in part: {runs}");
            break;
        }
        assert!(Instant::now() < deadline, "{runs} runs\n{}", d.log_text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = d.log_text();
    assert!(log.contains("journal reader says hello"), "{log}");
    assert!(
        log.contains("source=journal") || log.contains("source: journal"),
        "{log}"
    );
    // Durations came from inside MESSAGE.
    let max = agg(&data, "app_request_duration_ms", "max", &[]);
    assert_eq!(max[0].1, 149.0);
    d.stop().await;
}

#[test]
fn log_configuration_mistakes_name_the_field() {
    let dir = tempdir();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[[logs]]
name = "app"
files = ["relative/*.log"]
timestamp_format = "unix_weeks"

[[logs.metric]]
name = "app requests"
kind = "histogram"
"#,
    )
    .unwrap();
    let out = sloguard(&["check", "--config", path.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    for want in [
        "bad.toml:4: logs[0].files[0]: `relative/*.log` must be an absolute path",
        "bad.toml:5: logs[0].timestamp_format: `unix_weeks` is not a time format",
        "bad.toml:8: logs[0].metric[0].name: `app requests` is not a valid metric name",
        "bad.toml:9: logs[0].metric[0].kind: `histogram` is not a metric kind",
    ] {
        assert!(text.contains(want), "{want}\nnot in\n{text}");
    }
}

/// logrotate's copytruncate as it really goes: the copy is written a piece at a time while
/// the app keeps writing to the original, which is truncated only after the copy is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_written_slowly_before_the_truncation_counts_nothing_twice() {
    let (_dir, logs, mut w, mut d) = following(3000).await;
    let app = logs.join("app.log");

    let copy = logs.join("app.log.1");
    let original = std::fs::read(&app).unwrap();
    let mut out = std::fs::File::create(&copy).unwrap();
    for (i, piece) in original.chunks(40_000).enumerate() {
        out.write_all(piece).unwrap();
        out.flush().unwrap();
        // The app goes on writing to the original meanwhile.
        if i % 2 == 0 {
            append(&app, &w.lines(5));
        }
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    // The lines written while copying reach the copy too, then the original is emptied.
    let rest = std::fs::read(&app).unwrap();
    out.write_all(&rest[original.len()..]).unwrap();
    drop(out);
    tokio::time::sleep(Duration::from_millis(300)).await;
    truncate(&app);
    append(&app, &w.lines(50));
    let written = w.success.len() + w.errors.len();
    wait_total(&d, written, "a slow copy, then the truncation").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    wait_total(&d, written, "some time later").await;
    d.stop().await;
}

/// copytruncate while the daemon is down: the copy is recognised by the checkpoint's
/// fingerprint, whichever of the two files is found first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_by_copy_while_stopped_counts_nothing_twice() {
    let (_dir, logs, mut w, mut d) = following(800).await;
    let app = logs.join("app.log");
    d.stop().await;
    // Lines the daemon has not read, then the rotation, then new lines.
    append(&app, &w.lines(70));
    std::fs::copy(&app, logs.join("app.log.1")).unwrap();
    truncate(&app);
    append(&app, &w.lines(30));
    d.spawn().await;
    let written = w.success.len() + w.errors.len();
    wait_total(&d, written, "after the restart").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    wait_total(&d, written, "some time later").await;
    d.stop().await;
}

/// Stopping the daemon stops everything the command started, not only the command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_and_what_it_started_stop_with_the_daemon() {
    let dir = tempdir();
    let pid_file = dir.path().join("helper.pid");
    let config = format!(
        r#"
[[logs]]
name = "pipeline"
command = ["sh", "-c", "sleep 300 & echo $! > '{pid}'; echo '{{\"event\":\"x\"}}'; wait"]

[[logs.metric]]
name = "events"
kind = "counter"
"#,
        pid = pid_file.display()
    );
    let mut d = Daemon::start(dir.path(), &config, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "{}", d.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    };
    assert!(alive(pid));
    d.stop().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = alive(pid);
    if left {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(!left, "the command's child {pid} outlived the daemon");
}

/// A threshold rule over a log counter: more than 20 errors in the last 3 s fires a
/// webhook with the value and the window; when the errors stop, the window empties and the
/// alert resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_burst_in_the_log_fires_a_threshold_rule_and_resolves_after_it() {
    let dir = tempdir();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let app = logs.join("app.log");
    let hook = crate::util::Receiver::start().await;
    let config = format!(
        r#"{logs_config}
# Events are summed per second, so that a 3 s window is three whole intervals.
[store]
distribution_interval = "1s"

[routing]
warning = ["hook"]

[[channels]]
name = "hook"
type = "webhook"
url = "{hook}"

[[rules]]
name = "api_errors_burst"
kind = "threshold"
metric = "app_requests"
match = {{ event = "api_segmentation_error" }}
agg = "increase"
window = "3s"
condition = "> 20"
every = "1s"
severity = "warning"
summary = "API errors: a burst"
"#,
        logs_config = config(&logs, free_port()),
        hook = hook.url("/hook")
    );
    let mut w = Written::default();
    let mut d = Daemon::start(dir.path(), &config, &[]).await;
    // A quiet start: 30 lines, 3 of them errors.
    append(&app, &w.lines(30));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(hook.delivered().is_empty(), "fired on 3 errors");
    // A burst: 40 errors in a second.
    let burst: Vec<String> = (0..40)
        .map(|i| line(i, 50, Some("Cannot connect to database at 10.0.0.1")))
        .collect();
    append(&app, &burst);
    let got = hook.wait_delivered(1, Duration::from_secs(10)).await;
    let firing = &got[0].body;
    assert_eq!(firing["status"], "firing", "{firing}");
    let text = firing.to_string();
    assert!(text.contains("API errors: a burst"), "{text}");
    assert!(text.contains("increase of app_requests over 3 s"), "{text}");
    // Quiet again: the burst leaves the 3 s window and the alert resolves.
    let got = hook.wait_delivered(2, Duration::from_secs(10)).await;
    assert_eq!(got[1].body["status"], "resolved", "{}", got[1].body);
    d.stop().await;
}

/// The window kinds over one log: an error ratio with a minimum volume (a handful of
/// requests does not page), a new error type (with its message), and a gauge gone stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratio_new_error_type_and_staleness_rules_over_a_log() {
    let dir = tempdir();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let app = logs.join("app.log");
    let hook = crate::util::Receiver::start().await;
    let config = format!(
        r#"{logs_config}
[[logs.metric]]
name = "app_heap_mb"
kind = "gauge"
value = "used_js_heap_mb"

[store]
distribution_interval = "1s"

[routing]
warning = ["hook"]

[[channels]]
name = "hook"
type = "webhook"
url = "{hook}"

[[rules]]
name = "error_ratio"
kind = "ratio"
numerator = {{ metric = "app_requests", match = {{ event = "api_segmentation_error" }} }}
denominator = {{ metric = "app_requests" }}
window = "4s"
condition = "> 0.5"
min_volume = 10
every = "1s"
severity = "warning"
summary = "Error ratio above 50 %"

[[rules]]
name = "new_errors"
kind = "new_error_type"
source = "app"
every = "1s"
severity = "warning"
summary = "New error type: {{pattern}}"

[[rules]]
name = "heap_stale"
kind = "stale"
metric = "app_heap_mb"
max_age = "3s"
every = "1s"
severity = "warning"
summary = "No heap figures"
"#,
        logs_config = config(&logs, free_port()),
        hook = hook.url("/hook")
    );
    let mut d = Daemon::start(dir.path(), &config, &[]).await;
    let rules_seen = |got: &[crate::util::Received]| -> Vec<(String, String)> {
        got.iter()
            .map(|r| {
                (
                    r.body["rule"].as_str().unwrap_or_default().to_string(),
                    r.body["status"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    // Five requests, all errors of one type: under the minimum volume, no ratio alert; the
    // error type is new.
    let errors: Vec<String> = (0..5)
        .map(|i| line(i, 40, Some("Cannot connect to database at 10.0.0.1")))
        .collect();
    append(&app, &errors);
    append(&app, &[r#"{"used_js_heap_mb":120}"#.to_string()]);
    let got = hook.wait_delivered(1, Duration::from_secs(10)).await;
    assert_eq!(rules_seen(&got)[0], ("new_errors".into(), "firing".into()));
    let text = got[0].body.to_string();
    assert!(
        text.contains("New error type: Cannot connect to database at #.#.#.#"),
        "{text}"
    );
    assert!(
        text.contains("Cannot connect to database at 10.0.0.1"),
        "{text}"
    );
    // The heap reports stop: stale after 3 s.
    let got = hook.wait_delivered(2, Duration::from_secs(10)).await;
    assert!(
        rules_seen(&got).contains(&("heap_stale".into(), "firing".into())),
        "{:?}",
        rules_seen(&got)
    );
    assert!(
        !rules_seen(&hook.delivered())
            .iter()
            .any(|(r, _)| r == "error_ratio"),
        "5 requests paged: {:?}",
        rules_seen(&hook.delivered())
    );
    // Now 20 requests, 15 of them errors (of the known type): 75 % over the minimum volume.
    let mut w = Written::default();
    let mut burst = w.lines(5);
    burst.extend((0..15).map(|i| line(i, 40, Some("Cannot connect to database at 10.0.0.2"))));
    append(&app, &burst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rules_seen(&hook.delivered()).contains(&("error_ratio".into(), "firing".into())) {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            rules_seen(&hook.delivered())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ratio = hook
        .delivered()
        .into_iter()
        .find(|r| r.body["rule"] == "error_ratio")
        .unwrap();
    // 15 or more of the 20 to 25 requests in the window are errors.
    let text = ratio.body["value"].as_str().unwrap_or_default().to_string();
    let value: f64 = text
        .strip_prefix("app_requests / app_requests over 4 s: ")
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!((0.74..=0.85).contains(&value), "{text}");
    // The error-rate alert quotes what the errors say.
    assert_eq!(
        ratio.body["reason"], "last error: Cannot connect to database at 10.0.0.2",
        "{}",
        ratio.body
    );
    // The same error type again is not new.
    assert_eq!(
        rules_seen(&hook.delivered())
            .iter()
            .filter(|(r, s)| r == "new_errors" && s == "firing")
            .count(),
        1
    );
    d.stop().await;
}

/// One rule, two levels: past `critical` a firing warning is raised, and the critical route
/// hears of it at once with a note.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warning_raised_past_its_critical_level_reaches_the_critical_route() {
    let dir = tempdir();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let app = logs.join("app.log");
    let slack = crate::util::Receiver::start().await;
    let pager = crate::util::Receiver::start().await;
    let config = format!(
        r#"{logs_config}
[store]
distribution_interval = "1s"

[routing]
warning = ["slack"]
critical = ["slack", "pager"]

[[channels]]
name = "slack"
type = "webhook"
url = "{slack}"

[[channels]]
name = "pager"
type = "webhook"
url = "{pager}"

[[rules]]
name = "api_errors"
kind = "threshold"
metric = "app_requests"
match = {{ event = "api_segmentation_error" }}
agg = "increase"
window = "10s"
condition = "> 20"
critical = "> 40"
every = "1s"
severity = "warning"
summary = "API errors"
"#,
        logs_config = config(&logs, free_port()),
        slack = slack.url("/slack"),
        pager = pager.url("/pager")
    );
    let mut d = Daemon::start(dir.path(), &config, &[]).await;
    let errors = |n: u64| -> Vec<String> {
        (0..n)
            .map(|i| line(i, 50, Some("Cannot connect to database at 10.0.0.1")))
            .collect()
    };
    append(&app, &errors(25));
    let got = slack.wait_delivered(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].body["severity"], "warning", "{}", got[0].body);
    // The figure in a message: `increase of app_requests over 10 s: 25 (threshold: …)`.
    let figure = |body: &serde_json::Value| -> f64 {
        body["value"]
            .as_str()
            .and_then(|v| v.strip_prefix("increase of app_requests over 10 s: "))
            .and_then(|v| v.split(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no figure in {body}"))
    };
    let first = figure(&got[0].body);
    assert!(first > 20.0 && first <= 25.0, "{}", got[0].body);
    assert!(pager.delivered().is_empty());
    append(&app, &errors(25));
    let got = pager.wait_delivered(1, Duration::from_secs(10)).await;
    let raised = &got[0].body;
    assert_eq!(raised["severity"], "critical", "{raised}");
    assert!(
        raised
            .to_string()
            .contains("Severity raised from warning to critical"),
        "{raised}"
    );
    // The figure that raised it, not the one it fired with.
    assert!(figure(raised) > 40.0, "{raised}");
    d.stop().await;
}

/// A command source used to inherit the daemon's whole environment, `env:` secrets included:
/// a wrapper that printed its environment put them in the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_source_does_not_see_the_daemons_secrets() {
    let dir = tempdir();
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[[logs]]
name = "printer"
command = ["sh", "-c", "env >&2; echo \"path ${{PATH:+set}} tz ${{TZ:-unset}}\" >&2; sleep 30"]

[[logs.metric]]
name = "printer_lines"
kind = "counter"
"#,
        port = free_port()
    );
    let mut d = Daemon::start(
        dir.path(),
        &config,
        &[
            (
                "SLACK_WEBHOOK_URL",
                "https://hooks.example/s3cr3t-token-value",
            ),
            ("TZ", "Europe/Berlin"),
        ],
    )
    .await;
    assert!(
        d.wait_log("path set tz Europe/Berlin", Duration::from_secs(10))
            .await,
        "the command did not get PATH and TZ:\n{}",
        d.log_text()
    );
    let log = d.log_text();
    assert!(!log.contains("s3cr3t-token-value"), "{log}");
    assert!(!log.contains("SLACK_WEBHOOK_URL"), "{log}");
    d.stop().await;
}
