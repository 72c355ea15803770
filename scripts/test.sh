#!/usr/bin/env bash
# The medmesh test command: installs the peer tools the tests drive, then runs
# the format check, clippy with warnings as errors, and the whole test suite.
# Safe to run on a fresh machine and again and again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto_pub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
# Quiet hours in a named time zone read the system tz database.
[ -e /usr/share/zoneinfo/Europe/London ] || need_apt+=(tzdata)
# The broker `medmesh bench alarms` compares with (its test runs it).
command -v mosquitto >/dev/null 2>&1 || need_apt+=(mosquitto)
# rusqlite (the SQLite side of `medmesh bench ingest`) links the system library.
dpkg -s libsqlite3-dev >/dev/null 2>&1 || need_apt+=(libsqlite3-dev)
# coap-client-notls and coap-client-openssl (CoAP, and CoAP over DTLS with PSK).
{ command -v coap-client-notls && command -v coap-client-openssl; } >/dev/null 2>&1 || need_apt+=(libcoap3-bin)
# The openssl crate (CoAP over DTLS) builds against the system OpenSSL.
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# `openssl s_client` is a second DTLS peer in the coaps tests.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# The dashboard's browser test: Debian's Chromium, driven from Node.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if ((${#need_apt[@]})); then
  echo "== installing ${need_apt[*]} (Debian packages the tests use as real peers)"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${need_apt[@]}"
fi

if ! python3 -c "import aiocoap, hl7apy, fhir.resources, paho.mqtt, aiosmtpd" >/dev/null 2>&1; then
  echo "== installing aiocoap, hl7apy, fhir.resources, paho-mqtt and aiosmtpd (PyPI; peers the tests use)"
  python3 -m pip install --quiet aiocoap hl7apy fhir.resources paho-mqtt aiosmtpd
fi

# playwright-core (npm) drives /usr/bin/chromium; it never downloads a browser.
browser_tests=crates/cli/tests/browser
want=$(node -p "require('./$browser_tests/package.json').dependencies['playwright-core']")
have=$(node -p "require('./$browser_tests/node_modules/playwright-core/package.json').version" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  echo "== npm ci in $browser_tests (playwright-core for the dashboard's browser test)"
  (cd "$browser_tests" && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy (-D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  # nextest does not run doc tests.
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast
fi
