//! Store write throughput and size: `cargo bench --bench store`.
//!
//! Appends probe-like samples (4 series per target, 50 targets) in durable commits of one
//! probe round each, as the pipeline does, and reports commits/s, samples/s and the data
//! file's size per point.

use std::time::Instant;

use sloguard::series::{Sample, SeriesKey};
use sloguard::store::Store;

const TARGETS: usize = 50;
const ROUNDS: usize = 400;

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open store");
    let names = [
        "probe_up",
        "probe_duration_seconds",
        "probe_http_status_code",
        "probe_tls_cert_expiry_days",
    ];
    let keys: Vec<SeriesKey> = (0..TARGETS)
        .flat_map(|t| {
            let target = format!("target-{t:03}");
            names
                .iter()
                .map(move |n| SeriesKey::new(n, &[("target", &target)]))
        })
        .collect();
    let start_ts = 1_780_000_000_000i64;
    let started = Instant::now();
    for round in 0..ROUNDS {
        let ts = start_ts + round as i64 * 30_000;
        let batch: Vec<Sample> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| Sample {
                series: k.clone(),
                ts_ms: ts,
                value: (i % 7) as f64 * 0.013 + round as f64 * 1e-3,
                note: None,
            })
            .collect();
        store.append(&batch).expect("append");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let points = (ROUNDS * keys.len()) as f64;
    let size = std::fs::metadata(store.path())
        .map(|m| m.len())
        .unwrap_or(0) as f64;
    println!(
        "store append: {ROUNDS} durable commits of {} samples",
        keys.len()
    );
    println!(
        "  {:.0} commits/s, {:.0} samples/s, {:.2} s total",
        ROUNDS as f64 / elapsed,
        points / elapsed,
        elapsed
    );
    println!(
        "  data file: {:.1} MiB for {points} points = {:.1} bytes/point",
        size / 1048576.0,
        size / points
    );
}
