//! The chaos run's long form: `cargo bench --bench chaos` (as root: it mounts a tmpfs).
//!
//! The same program as the test command's short form (`tests/integration/chaos.rs`), with
//! the durations: twenty SIGKILLs five seconds apart while Slack is down for two
//! minutes, then four rounds of a minute of 429 storms, PostgreSQL stopped and hung for half
//! a minute each, a full disk for 30 s and the clock an hour ahead, right and an hour behind
//! for 30 s each. It checks the same things and prints its figures, the memory of each round
//! among them, for docs/benchmarks.md. `SLOGUARD_CHAOS_CYCLES=8` runs eight rounds instead of four.

#[path = "../tests/integration/util.rs"]
mod util;

#[path = "../tests/integration/chaos.rs"]
mod chaos;

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // `SLOGUARD_CHAOS_CYCLES` repeats the rounds more often, to see where memory settles.
    let mut plan = chaos::Plan::long();
    if let Some(n) = std::env::var("SLOGUARD_CHAOS_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        plan.cycles = n;
    }
    println!("chaos run, long form: {plan:?}");
    let figures = runtime.block_on(chaos::run(plan));
    println!("{figures:#?}");
    let first = figures.rss_round_max_kib.first().copied().unwrap_or(0);
    let last = figures.rss_round_max_kib.last().copied().unwrap_or(0);
    println!(
        "resident memory: {} KiB after start-up; highest per round {:?} KiB; last round {:+} KiB against the first",
        figures.rss_start_kib,
        figures.rss_round_max_kib,
        last as i64 - first as i64
    );
}
