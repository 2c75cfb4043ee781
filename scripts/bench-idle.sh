#!/usr/bin/env bash
# What an idle server costs and how soon a line becomes searchable: the CPU time `strata serve`
# uses over 60 s with nothing to do (after some lines were ingested, so every consumer has
# caught up and waits), then the time from acknowledgement to searchable under 5,000 lines/s.
# Usage: scripts/bench-idle.sh [work-dir]. STRATA_BENCH_BIN runs another strata binary (an older
# build, to compare) instead of the one built here.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}
work=${1:-./strata-bench-data}
idle_s=${STRATA_BENCH_IDLE_S:-60}
mkdir -p "$work"
cargo build --release -q -p strata-server -p strata-bench
strata=${STRATA_BENCH_BIN:-$CARGO_TARGET_DIR/release/strata}
bench="$CARGO_TARGET_DIR/release/strata-bench"
srv="$work/idle-srv"
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  rm -rf "$srv"
}
trap cleanup EXIT

print_machine "$work"
echo "binary: $strata ($("$strata" --version))"

rm -rf "$srv"
start_strata "$strata" "$srv/data" "$work/idle-serve.log"
curl -sf -H 'Content-Type: application/json' "$url/ingest/v1/logs" \
  -d '[{"source_id":"a","message":"warm up"},{"source_id":"b","message":"warm up"}]' >/dev/null
curl -sf -H 'Content-Type: application/json' "$url/ingest/v1/metrics" \
  -d '[{"name":"up","value":1,"source_id":"a"}]' >/dev/null
sleep 10

ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
before=$(ticks)
sleep "$idle_s"
after=$(ticks)
echo "== idle ($idle_s s with nothing to do)"
awk -v t=$((after - before)) -v hz="$hz" -v s="$idle_s" \
  'BEGIN { printf "{\"cpu_seconds\": %.2f, \"percent_of_one_core\": %.3f}\n", t / hz, 100 * t / hz / s }'

echo "== searchable (100 probes every 200 ms under 5,000 background lines/s, search polled every 20 ms)"
$bench searchable --url "$url" --rate 5000 --probes 100 --json
stop_strata
rm -rf "$srv" "$work/idle-serve.log"
trap - EXIT
