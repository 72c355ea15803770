#!/usr/bin/env bash
# Crash soak: many rounds of "ingest hard, SIGKILL at a random moment, restart,
# check every acknowledged sample". The test suite runs 20 rounds; this runs
# ROUNDS (default 200) with the release build.
set -euo pipefail
cd "$(dirname "$0")/.."
MEDMESH_CRASH_ROUNDS="${ROUNDS:-200}" cargo test --release -p medmesh --test crash -- --nocapture
