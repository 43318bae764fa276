//! Log extraction throughput: `cargo bench --bench logs`.
//!
//! Writes a file of seed-format JSON lines (98 % `api_segmentation_success` with
//! `duration_ms` and `customer_count`, 2 % `api_segmentation_error` with a message), then:
//! 1. runs `sloguard run`, pinned to one core (`taskset -c 0`), with a `[[logs]]` source
//!    reading the file from its beginning into a request counter and a latency distribution
//!    by event, and error types; measures from the start of the process until the store
//!    holds every line (read by this process from the data file), sampling the daemon's
//!    resident memory every 20 ms;
//! 2. runs Google's mtail (`mtail --one_shot`, Debian package `mtail`), pinned to the same
//!    core, with a program counting requests by event and a latency histogram by event, on
//!    the same file; measures its wall time.
//!
//! `SLOGUARD_BENCH_LINES` sets the number of lines (default 2 000 000);
//! `SLOGUARD_BENCH_EXTRACT_ONLY=1` stops after timing the extraction alone (for profiling).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/mod.rs"]
mod common;

const BIN: &str = env!("CARGO_BIN_EXE_sloguard");

fn lines() -> u64 {
    std::env::var("SLOGUARD_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000)
}

/// Writes `n` lines spread over the last hour; returns the file's size.
fn write_file(path: &std::path::Path, n: u64) -> u64 {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let start = chrono::Utc::now() - chrono::Duration::hours(1);
    let step_us = 3_600_000_000 / n as i64;
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..n {
        // xorshift: reproducible noise without a dependency.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let ts = (start + chrono::Duration::microseconds(step_us * i as i64))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        if x.is_multiple_of(50) {
            writeln!(
                f,
                r#"{{"event":"api_segmentation_error","duration_ms":{},"error":"Cannot connect to database at 10.0.{}.{}","timestamp":"{ts}"}}"#,
                5 + x % 200,
                (x >> 8) % 10,
                (x >> 16) % 256
            )
            .unwrap();
        } else {
            writeln!(
                f,
                r#"{{"event":"api_segmentation_success","duration_ms":{},"customer_count":{},"timestamp":"{ts}"}}"#,
                80 + (x >> 3) % 900,
                100 + (x >> 20) % 4900
            )
            .unwrap();
        }
    }
    f.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

/// The number of `app_requests` events in the store, read beside the running daemon.
fn stored(data: &std::path::Path) -> f64 {
    let Ok(store) = sloguard::store::ReadOnlyStore::open(data) else {
        return 0.0;
    };
    let Ok(snap) = store.snapshot() else {
        return 0.0;
    };
    let now = sloguard::clock::now_ms();
    let request =
        sloguard::query::Request::parse("app_requests", &[], "3h", "now", Some("count"), None, now)
            .unwrap();
    match request.run(&snap) {
        Ok(answer) => answer
            .to_json()
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["value"].as_f64()).sum())
            .unwrap_or(0.0),
        Err(_) => 0.0,
    }
}

fn main() {
    let n = lines();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.log");
    let size = write_file(&file, n);
    println!(
        "{n} lines, {:.1} MiB ({:.0} bytes a line)",
        size as f64 / 1048576.0,
        size as f64 / n as f64
    );
    // Read once so that both runs find it in the page cache.
    let _ = std::fs::read(&file);

    let data = dir.path().join("data");
    let config = dir.path().join("config.toml");
    let config_text = format!(
        r#"
[server]
listen = "127.0.0.1:0"

[[logs]]
name = "app"
files = ["{}"]
start_at = "beginning"
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
match_regex = {{ event = "^api_segmentation_" }}
labels = {{ event = "event" }}

[[logs.errors]]
match = {{ event = "api_segmentation_error" }}
message = "error"
"#,
        file.display()
    );
    std::fs::write(&config, &config_text).unwrap();

    // Extraction alone, in this process: parse, match, aggregate; no file, no store.
    {
        let cfg = sloguard::config::parse(&config_text, &config).unwrap();
        let text = std::fs::read(&file).unwrap();
        let passes = if std::env::var_os("SLOGUARD_BENCH_EXTRACT_ONLY").is_some() {
            5
        } else {
            1
        };
        for _ in 0..passes {
            let mut x = sloguard::source::log::extract::Extractor::new(&cfg.logs[0], 10_000);
            let started = Instant::now();
            for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                x.line(line, 0);
            }
            let out = x.flush();
            let took = started.elapsed();
            assert_eq!(out.counts.lines, n);
            println!(
                "extraction alone (one thread, in process): {:.2} s = {:.0} lines/s",
                took.as_secs_f64(),
                n as f64 / took.as_secs_f64()
            );
        }
    }

    if std::env::var_os("SLOGUARD_BENCH_EXTRACT_ONLY").is_some() {
        return;
    }
    let started = Instant::now();
    let mut child = Command::new("taskset")
        .args(["-c", "0", BIN, "run", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .env("SLOGUARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("taskset (util-linux) and the sloguard binary");
    let pid = child.id();
    let mut rss = Vec::new();
    let deadline = started + Duration::from_secs(600);
    let mut got = 0.0;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        rss.push(common::status_kib(&pid.to_string(), "VmRSS:"));
        got = stored(&data);
        if got >= n as f64 {
            break;
        }
    }
    let took = started.elapsed();
    let hwm = common::status_kib(&pid.to_string(), "VmHWM:");
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let _ = child.wait();
    assert_eq!(got, n as f64, "the store holds {got} of {n} lines");
    let fields: Vec<&str> = cpu
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime (fields 14 and 15 of /proc/PID/stat, counted after the comm field).
    let cpu_s = (ticks(11) + ticks(12)) / 100.0;
    let ours = n as f64 / took.as_secs_f64();
    let quarter = rss.len() / 4;
    let steady = &rss[quarter.min(rss.len().saturating_sub(1))..];
    println!(
        "sloguard: every line in the store after {:.2} s = {:.0} lines/s on one core ({:.2} CPU-s); VmRSS over the run {} samples, first {} KiB, min/max after the first quarter {}/{} KiB, last {} KiB; VmHWM {} KiB",
        took.as_secs_f64(),
        ours,
        cpu_s,
        rss.len(),
        rss.first().unwrap_or(&0),
        steady.iter().min().unwrap_or(&0),
        steady.iter().max().unwrap_or(&0),
        rss.last().unwrap_or(&0),
        hwm
    );

    let progs = dir.path().join("progs");
    std::fs::create_dir_all(&progs).unwrap();
    std::fs::write(
        progs.join("app.mtail"),
        r#"counter app_requests by event
histogram app_request_duration_ms by event buckets 50, 100, 250, 500, 1000, 2000, 5000

/"event":"(?P<event>api_segmentation_[a-z]+)","duration_ms":(?P<duration>\d+)/ {
  app_requests[$event]++
  app_request_duration_ms[$event] = $duration
}
"#,
    )
    .unwrap();
    let started = Instant::now();
    let out = Command::new("taskset")
        .args(["-c", "0", "mtail", "--progs"])
        .arg(&progs)
        .arg("--logs")
        .arg(&file)
        .args(["--one_shot", "--one_shot_format=prometheus"])
        .output();
    let took = started.elapsed();
    match out {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let counted: f64 = text
                .lines()
                .filter(|l| l.starts_with("app_requests{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum();
            assert_eq!(counted, n as f64, "mtail counted {counted} of {n} lines");
            let theirs = n as f64 / took.as_secs_f64();
            println!(
                "mtail: {:.2} s = {:.0} lines/s on one core; sloguard / mtail = {:.1}x",
                took.as_secs_f64(),
                theirs,
                ours / theirs
            );
        }
        Ok(out) => println!("mtail failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => println!("mtail not run ({e}); install the Debian package `mtail`"),
    }
}
