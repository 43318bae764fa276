#!/usr/bin/env bash
# Runs every check of sloguard: formatting, lints, then all tests (unit and integration).
# Installs what the checks need when it is missing; safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")/.."

# rustfmt and clippy come with rustup's default profile, but not with every toolchain.
if command -v rustup >/dev/null 2>&1; then
    for component in rustfmt clippy; do
        if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
            rustup component add "${component}"
        fi
    done
fi

# Real parts the tests run: an SMTP server (Debian's aiosmtpd), a Prometheus server, a
# PostgreSQL server with pg_stat_statements (the tests start their own private clusters),
# PgBouncer (a transaction-mode pooler, standing in for Supavisor), Node.js for the official
# posthog-node client, Chromium, and libfaketime.
missing=()
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || missing+=(python3-aiosmtpd)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 ||
    ! ls /usr/share/postgresql/*/extension/pg_stat_statements.control >/dev/null 2>&1; then
    missing+=(postgresql postgresql-contrib)
fi
[ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
# Node.js and npm run the official posthog-node client against the ingest endpoints.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# Headless Chromium opens the dashboard.
[ -x /usr/bin/chromium ] || missing+=(chromium)
# libfaketime steps the daemon's wall clock in the chaos run.
ls /usr/lib/*/faketime/libfaketimeMT.so.1 >/dev/null 2>&1 || missing+=(faketime)
if ((${#missing[@]})); then
    if command -v apt-get >/dev/null 2>&1; then
        echo "==> installing ${missing[*]}"
        SUDO=""
        if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "missing ${missing[*]} and apt-get is not available: install them first" >&2
        exit 1
    fi
fi

# The official clients the tests drive, at the versions in tests/node/package-lock.json.
if ! cmp -s tests/node/package-lock.json tests/node/node_modules/.installed-lock.json 2>/dev/null; then
    echo "==> npm ci (tests/node)"
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error &&
        cp package-lock.json node_modules/.installed-lock.json)
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings
echo "==> cargo test"
cargo test --locked
