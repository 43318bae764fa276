//! Start-up after an unclean stop: `cargo bench --bench repair`.
//!
//! A child process fills a data file to `SLOGUARD_BENCH_MB` MiB (default 1024) of history
//! records (64 KiB each, 256 to a commit) and aborts with the file open, as SIGKILL or a
//! power loss leaves it. This process then times `Store::open` on it, which repairs the file
//! first (redb reads and checks its whole length), and a second, clean open for comparison.
//! The file lives under Cargo's target directory (a disk, not a tmpfs).

use std::process::Command;
use std::time::Instant;

use sloguard::store::{Batch, Store};

const RECORD: usize = 64 * 1024;

fn megabytes() -> u64 {
    std::env::var("SLOGUARD_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

fn file_mib(dir: &std::path::Path) -> f64 {
    std::fs::metadata(dir.join("sloguard.redb"))
        .map(|m| m.len() as f64 / (1 << 20) as f64)
        .unwrap_or(0.0)
}

/// The child: fills the file, then aborts with it open.
fn fill(dir: &std::path::Path, mb: u64) -> ! {
    let store = Store::open(dir).expect("open the data file");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut at = 0i64;
    while file_mib(dir) < mb as f64 {
        let mut batch = Batch::default();
        for _ in 0..256 {
            let mut record = vec![0u8; RECORD];
            for b in record.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
            }
            at += 1;
            batch.history.push((at, record));
        }
        store.write(&batch).expect("write");
    }
    std::process::abort();
}

fn main() {
    let mb = megabytes();
    if let Some(dir) = std::env::var_os("SLOGUARD_BENCH_REPAIR_CHILD") {
        fill(std::path::Path::new(&dir), mb);
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let started = Instant::now();
    let status = Command::new(std::env::current_exe().unwrap())
        .env("SLOGUARD_BENCH_REPAIR_CHILD", dir.path())
        .status()
        .expect("run the filling child");
    assert!(!status.success(), "the child should have aborted");
    println!(
        "filled {:.0} MiB in {:.1} s, then aborted with the file open",
        file_mib(dir.path()),
        started.elapsed().as_secs_f64()
    );
    // Out of the page cache, as after a reboot (needs root; skipped otherwise).
    let dropped = std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok();
    let started = Instant::now();
    let store = Store::open(dir.path()).expect("the file opens after the abort");
    let repair = started.elapsed();
    drop(store);
    let started = Instant::now();
    let store = Store::open(dir.path()).expect("the file opens again");
    let clean = started.elapsed();
    drop(store);
    println!(
        "open with repair: {:.2} s ({}); clean open: {:.3} s",
        repair.as_secs_f64(),
        if dropped {
            "page cache dropped first"
        } else {
            "page cache warm"
        },
        clean.as_secs_f64()
    );
}
