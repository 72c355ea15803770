#!/usr/bin/env bash
# Runs `medmesh demo` (24 patients, as shipped) for MINUTES on a fresh data
# directory, nobody acknowledging anything, then counts the alarms it raised
# from its alarm log (alarms.jsonl): new alarms per hour and per bed, and how
# many were raised again at a higher priority. The README quotes its output.
#
#   scripts/demo-alarms.sh [MINUTES=60] [MEDMESH=target/release/medmesh]
set -euo pipefail
minutes=${1:-60}
medmesh=${2:-target/release/medmesh}
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
# Ports of its own, so a running medmesh is left alone.
"$medmesh" demo --data-dir "$dir/data" --http-listen 127.0.0.1:18480 --mqtt-listen 127.0.0.1:18483 \
  --coap-listen 127.0.0.1:18484 --hl7-listen 127.0.0.1:18485 >"$dir/demo.log" 2>&1 &
pid=$!
sleep $((minutes * 60))
python3 - "$dir/data/alarms.jsonl" "$minutes" <<'PY'
import collections, json, sys
path, minutes = sys.argv[1], int(sys.argv[2])
hours = minutes / 60
new, again, fleeting, raised_at = collections.Counter(), 0, 0, {}
per_condition = collections.Counter()
for line in open(path):
    c = json.loads(line)
    a, kind = c, c.get("change")
    if kind == "raised":
        if a["id"] in raised_at:
            again += 1
            continue
        raised_at[a["id"]] = a["raised_ms"]
        new[a["patient_id"]] += 1
        per_condition[(a["patient_id"], a["rule"], a.get("vital") or a.get("device_id"))] += 1
    elif kind == "resolved" and a["id"] in raised_at:
        fleeting += (a["resolved"]["at_ms"] - raised_at[a["id"]]) < 60_000
total = sum(new.values())
print(f"{minutes} min: {total} alarms ({total / hours:.1f} an hour, {total / hours / 24:.2f} per bed an hour), "
      f"raised again at a higher priority {again} times, resolved within 60 s {fleeting}")
print("per patient:", dict(sorted(new.items())))
print("most raised condition:", per_condition.most_common(1))
PY
