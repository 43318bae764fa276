//! The time-series store at scale: `cargo bench --bench tsdb`.
//!
//! For SERIES series (default 1000) at 10 s resolution over DAYS simulated days (default 30),
//! in three workloads (a constant "up" series, integer-millisecond latencies with ±20 % noise,
//! float gauges), it reports:
//! - ingest rate through `Store::write`, one simulated hour of every series per call;
//! - bytes per point: the file after compaction (rollups included) and after shrinking it, and
//!   beside it the naive one-row-per-point layout, measured on a slice of the same data;
//! - query latency: p95 over 24 h of one distribution series, avg over the last 5 min of all
//!   series, before and after rollups exist;
//! - resident memory: this process holding the store, and a `sloguard run` daemon with the
//!   latency workload's file open, after answering the same queries over HTTP.
//!
//! `SLOGUARD_BENCH_SERIES`, `SLOGUARD_BENCH_DAYS` and `SLOGUARD_BENCH_WORKLOADS` (comma list of
//! up, latency, gauge) shrink the run.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use redb::{Database, TableDefinition};
use sloguard::query::{Agg, Selector, aggregate};
use sloguard::series::{Sample, SeriesKey};
use sloguard::store::{Batch, Layout, Store};

#[path = "common/mod.rs"]
mod common;

const STEP: i64 = 10_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// Observations of the distribution series per 10 s interval.
const OBSERVATIONS: usize = 20;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, PartialEq)]
enum Workload {
    Up,
    Latency,
    Gauge,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Up => "up",
            Workload::Latency => "latency",
            Workload::Gauge => "gauge",
        }
    }
}

/// Generates the values of one workload, series by series, deterministically.
struct Generator {
    workload: Workload,
    rng: rand::rngs::StdRng,
    base: Vec<f64>,
    level: Vec<f64>,
}

impl Generator {
    fn new(workload: Workload, series: usize) -> Generator {
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let base = (0..series).map(|_| rng.random_range(50.0..500.0)).collect();
        let level = (0..series).map(|_| rng.random_range(10.0..90.0)).collect();
        Generator {
            workload,
            rng,
            base,
            level,
        }
    }

    fn value(&mut self, s: usize) -> f64 {
        match self.workload {
            Workload::Up => 1.0,
            Workload::Latency => (self.base[s] * self.rng.random_range(0.8..1.2)).round(),
            Workload::Gauge => {
                // A random walk in full float precision (CPU %, memory in GiB).
                let l = &mut self.level[s];
                *l = (*l + self.rng.random_range(-0.5..0.5)).clamp(0.0, 100.0);
                *l
            }
        }
    }
}

struct Measured {
    points: u64,
    write_secs: f64,
    build_secs: f64,
    compact_secs: f64,
    size_before_compaction: u64,
    size_after_compaction: u64,
    size_shrunk: u64,
}

fn file_size(store: &Store) -> u64 {
    std::fs::metadata(store.path())
        .map(|m| m.len())
        .unwrap_or(0)
}

fn timed<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, f64, T) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let p99 = times[((times.len() as f64 * 0.99) as usize).min(times.len() - 1)];
    (median, p99, last.expect("at least one run"))
}

fn queries(store: &Store, series: usize, end: i64, label: &str) {
    let lat = Selector::new("request_duration_ms", vec![]);
    let all = Selector::new("bench_latency_ms", vec![]);
    let (m, p99, v) = timed(50, || {
        let snap = store.snapshot().expect("snapshot");
        aggregate(&snap, &lat, Agg::Quantile(0.95), end - DAY, end).expect("p95")
    });
    println!(
        "  p95 over 24 h of one distribution series ({label}): median {m:.2} ms, p99 {p99:.2} ms (value {:.1})",
        v[0].value.unwrap_or(f64::NAN)
    );
    let (m, p99, v) = timed(50, || {
        let snap = store.snapshot().expect("snapshot");
        aggregate(&snap, &all, Agg::Avg, end - 300_000, end).expect("avg")
    });
    println!(
        "  avg over the last 5 min of all {} series ({label}): median {m:.2} ms, p99 {p99:.2} ms",
        v.len()
    );
    assert_eq!(v.len(), series);
}

fn run(workload: Workload, series: usize, days: usize, end: i64) -> Measured {
    let dir = std::path::Path::new("target/bench-tsdb").join(workload.name());
    let _ = std::fs::remove_dir_all(&dir);
    let mut store = Store::open(&dir).expect("open store");
    // Keep every raw point (so that bytes per point counts them all), default rollup tiers.
    store
        .set_layout(Layout {
            raw_retention_ms: 3650 * DAY,
            ..Layout::default()
        })
        .expect("layout");
    let metric = format!("bench_{}", workload.name());
    let keys: Vec<SeriesKey> = (0..series)
        .map(|i| {
            SeriesKey::new(
                &if workload == Workload::Latency {
                    "bench_latency_ms".to_string()
                } else {
                    metric.clone()
                },
                &[("target", &format!("target-{i:04}"))],
            )
        })
        .collect();
    let dist = SeriesKey::new("request_duration_ms", &[("route", "/api/segments")]);
    let mut generator = Generator::new(workload, series);
    let mut obs_rng = rand::rngs::StdRng::seed_from_u64(7);
    let start = end - days as i64 * DAY;
    let (mut write_secs, mut build_secs) = (0.0, 0.0);
    let mut points = 0u64;
    let mut t = start;
    let mut samples: Vec<Sample> = Vec::with_capacity(series * 360);
    let mut observations: Vec<Sample> = Vec::new();
    while t < end {
        let built = Instant::now();
        samples.clear();
        observations.clear();
        for (s, key) in keys.iter().enumerate() {
            for k in 0..(HOUR / STEP) {
                samples.push(Sample {
                    series: key.clone(),
                    ts_ms: t + k * STEP,
                    value: generator.value(s),
                    note: None,
                });
            }
        }
        if workload == Workload::Latency {
            for k in 0..(HOUR / STEP) {
                for j in 0..OBSERVATIONS {
                    let v = if obs_rng.random_bool(0.03) {
                        obs_rng.random_range(1000.0..5000.0f64)
                    } else {
                        obs_rng.random_range(80.0..400.0f64)
                    };
                    observations.push(Sample {
                        series: dist.clone(),
                        ts_ms: t + k * STEP + j as i64,
                        value: v.round(),
                        note: None,
                    });
                }
            }
        }
        build_secs += built.elapsed().as_secs_f64();
        let wrote = Instant::now();
        store
            .write(&Batch {
                samples: &samples,
                observations: &observations,
                ..Batch::default()
            })
            .expect("write");
        write_secs += wrote.elapsed().as_secs_f64();
        points += samples.len() as u64;
        t += HOUR;
    }
    let size_before_compaction = file_size(&store);
    println!(
        "  this process after ingest: VmRSS {} KiB, VmHWM {} KiB",
        common::status_kib("self", "VmRSS:"),
        common::status_kib("self", "VmHWM:")
    );
    if workload == Workload::Latency {
        queries(&store, series, end, "raw data only, before compaction");
    }
    let compacting = Instant::now();
    let stats = store.compact(end).expect("compact");
    let compact_secs = compacting.elapsed().as_secs_f64();
    println!(
        "  compaction: {} rollup buckets in {compact_secs:.1} s",
        stats.rollup_buckets
    );
    let size_after_compaction = file_size(&store);
    if workload == Workload::Latency {
        queries(&store, series, end, "with rollups");
        println!(
            "  this process after compaction and queries: VmRSS {} KiB, VmHWM {} KiB (the hour of samples it builds included)",
            common::status_kib("self", "VmRSS:"),
            common::status_kib("self", "VmHWM:")
        );
    }
    store.shrink().expect("shrink");
    let size_shrunk = file_size(&store);
    let usage = store.snapshot().expect("snapshot").usage().expect("usage");
    let pts = points as f64;
    println!(
        "  by table, bytes/point (data + index and fragmentation): {}",
        usage
            .iter()
            .map(|(t, d, o)| format!("{t} {:.3} + {:.3}", *d as f64 / pts, *o as f64 / pts))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Measured {
        points,
        write_secs,
        build_secs,
        compact_secs,
        size_before_compaction,
        size_after_compaction,
        size_shrunk,
    }
}

/// The naive layout: one redb row per point, key (series, time), value f64.
fn naive_bytes_per_point(workload: Workload, series: usize, hours: i64) -> f64 {
    const POINTS: TableDefinition<(u64, i64), f64> = TableDefinition::new("points");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("naive.redb");
    let mut db = Database::create(&path).expect("create");
    let mut generator = Generator::new(workload, series);
    let mut n = 0u64;
    for h in 0..hours {
        let txn = db.begin_write().expect("txn");
        {
            let mut table = txn.open_table(POINTS).expect("table");
            for s in 0..series {
                for k in 0..(HOUR / STEP) {
                    table
                        .insert((s as u64, h * HOUR + k * STEP), generator.value(s))
                        .expect("insert");
                    n += 1;
                }
            }
        }
        txn.commit().expect("commit");
    }
    db.compact().expect("compact");
    drop(db);
    std::fs::metadata(&path).expect("size").len() as f64 / n as f64
}

fn daemon_rss(dir: &std::path::Path, series: usize, end: i64) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let config = dir.join("bench.toml");
    std::fs::write(
        &config,
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n\n[store]\nraw_retention = \"3650d\"\n"),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sloguard"))
        .args(["run", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir)
        .env("SLOGUARD_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn daemon");
    let pid = child.id().to_string();
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        match lines.next() {
            Some(Ok(l)) if l.contains("sloguard started") => break,
            Some(_) => {}
            None => break,
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let base = format!("http://127.0.0.1:{port}/api/v1/query");
    let (since5, since24, until) = (
        sloguard::format::rfc3339(end - 300_000),
        sloguard::format::rfc3339(end - DAY),
        sloguard::format::rfc3339(end),
    );
    let (m, _, n) = timed(20, || {
        rt.block_on(async {
            let body: serde_json::Value = reqwest::get(format!(
                "{base}?metric=bench_latency_ms&since={since5}&until={until}&agg=avg"
            ))
            .await
            .expect("query")
            .json()
            .await
            .expect("json");
            let _ = reqwest::get(format!(
                "{base}?metric=request_duration_ms&since={since24}&until={until}&agg=p95"
            ))
            .await
            .expect("query");
            body.as_array().map(|a| a.len()).unwrap_or(0)
        })
    });
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "daemon with the latency file open, after 20 rounds of both queries over HTTP (median {m:.1} ms a round, {n} of {series} series): VmRSS {} KiB, VmHWM {} KiB",
        common::status_kib(&pid, "VmRSS:"),
        common::status_kib(&pid, "VmHWM:")
    );
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    let series = env_or("SLOGUARD_BENCH_SERIES", 1000);
    let days = env_or("SLOGUARD_BENCH_DAYS", 30);
    let workloads: Vec<Workload> = std::env::var("SLOGUARD_BENCH_WORKLOADS")
        .unwrap_or_else(|_| "up,latency,gauge".into())
        .split(',')
        .filter_map(|w| match w.trim() {
            "up" => Some(Workload::Up),
            "latency" => Some(Workload::Latency),
            "gauge" => Some(Workload::Gauge),
            _ => None,
        })
        .collect();
    // The data ends now, so that a daemon started on it finds its rollups current.
    let end = sloguard::clock::now_ms() / STEP * STEP;
    println!("tsdb bench: {series} series at 10 s over {days} days");
    let (mut total_points, mut total_bytes, mut total_naive) = (0.0, 0.0, 0.0);
    for w in workloads {
        println!("workload {}:", w.name());
        let m = run(w, series, days, end);
        let naive = naive_bytes_per_point(w, series.min(100), 72);
        let pts = m.points as f64;
        println!(
            "  ingest: {} points in {:.1} s of write calls = {:.2} M points/s ({:.1} s more building the batches)",
            m.points,
            m.write_secs,
            pts / m.write_secs / 1e6,
            m.build_secs
        );
        println!(
            "  bytes/point: {:.3} after ingest, {:.3} after compaction (rollups in), {:.3} shrunk; naive one row per point: {naive:.1} ({:.0}x larger than shrunk)",
            m.size_before_compaction as f64 / pts,
            m.size_after_compaction as f64 / pts,
            m.size_shrunk as f64 / pts,
            naive / (m.size_shrunk as f64 / pts)
        );
        println!("  compaction took {:.1} s", m.compact_secs);
        total_points += pts;
        total_bytes += m.size_shrunk as f64;
        total_naive += naive * pts;
    }
    if total_points > 0.0 {
        println!(
            "overall: {:.3} bytes/point shrunk vs {:.1} naive = {:.0}x smaller",
            total_bytes / total_points,
            total_naive / total_points,
            total_naive / total_bytes
        );
    }
    let latency_dir = std::path::Path::new("target/bench-tsdb/latency");
    if latency_dir.join("sloguard.redb").exists() {
        daemon_rss(latency_dir, series, end);
    }
}
