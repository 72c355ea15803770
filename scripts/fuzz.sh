#!/usr/bin/env bash
# Short fuzz run of every decoder (cargo fuzz, libFuzzer). Each target runs
# SECONDS_PER_TARGET seconds (default 30); a crash stops the script and
# leaves the input under fuzz/artifacts/. cargo fuzz needs nightly features;
# on a stable toolchain RUSTC_BOOTSTRAP=1 enables them.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
seconds="${SECONDS_PER_TARGET:-30}"
for target in $(cargo fuzz list); do
  echo "== fuzzing $target for ${seconds}s"
  cargo fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048
done
echo "== no crashes"
