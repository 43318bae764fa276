#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for SECONDS each (default 60), two at a time,
# with cargo-fuzz and the nightly toolchain; installs cargo-fuzz when it is missing.
# A crash leaves its input in fuzz/artifacts/TARGET/ and makes this exit non-zero; keep it
# as a regression test in tests/fuzz_regressions.rs.
# Usage: tests/fuzz.sh [SECONDS] [TARGET ...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build -O "${targets[@]/#/}" >/dev/null 2>&1 || cargo +nightly fuzz build -O
status=0
run() {
    local t="$1"
    mkdir -p "fuzz/corpus/$t"
    cargo +nightly fuzz run -O "$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
        -print_final_stats=1 >"fuzz/$t.log" 2>&1 || { echo "FAILED: $t (fuzz/$t.log)"; return 1; }
    local runs
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "fuzz/$t.log" | grep -o '[0-9]*$' || echo "?")
    echo "$t: $runs executions in ${seconds}s, no crash"
}
pids=()
for t in "${targets[@]}"; do
    run "$t" &
    pids+=($!)
    # Two at a time (one per core).
    if ((${#pids[@]} == 2)); then
        wait "${pids[0]}" || status=1
        pids=("${pids[1]}")
    fi
done
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
