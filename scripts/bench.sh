#!/usr/bin/env bash
# Reproduces the README's performance tables: installs what the comparisons
# run (Debian's mosquitto and influxdb), builds the release binary, and runs
# the benchmarks. Extra arguments go to `medmesh bench ingest`.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto >/dev/null 2>&1 || need_apt+=(mosquitto)
command -v influxd >/dev/null 2>&1 || need_apt+=(influxdb)
dpkg -s libsqlite3-dev >/dev/null 2>&1 || need_apt+=(libsqlite3-dev)
if ((${#need_apt[@]})); then
  echo "== installing ${need_apt[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${need_apt[@]}"
fi

cargo build --release --locked --bin medmesh
export MEDMESH_LOG=${MEDMESH_LOG:-warn}
target/release/medmesh bench ingest "$@"
target/release/medmesh bench query
# 10,000 MQTT connections: needs an open-files hard limit of about 10,300 (see README).
target/release/medmesh bench alarms
