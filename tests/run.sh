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

# The email tests talk to a real SMTP server: Debian's aiosmtpd.
if ! /usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        echo "==> installing python3-aiosmtpd"
        SUDO=""
        if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-aiosmtpd >/dev/null
    else
        echo "python3-aiosmtpd is missing and apt-get is not available: install aiosmtpd for /usr/bin/python3" >&2
        exit 1
    fi
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings
echo "==> cargo test"
cargo test --locked
