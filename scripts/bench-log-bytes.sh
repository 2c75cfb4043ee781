#!/usr/bin/env bash
# What the log costs on disk with and without compression, and what compression costs in
# ingest throughput: one server per codec (none, then zstd) takes 1 KiB log lines as fast as it
# goes for 30 s, then a node-exporter-like fleet's samples by remote write; the log's segment
# bytes per raw NDJSON byte and per sample (the metrics topic with the series definitions its
# batches name), and the rates, are printed for each. Compressed segments are compressed in the
# background once sealed (an active segment is sealed after 10 s of quiet): after each phase the
# script waits until nothing is left to compress, and prints how long that took and how many
# bytes the topic took before.
# Usage: scripts/bench-log-bytes.sh [work-dir]
# STRATA_BENCH_CODECS="zstd none" runs the codecs in another order (or one of them twice).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}
work=${1:-./strata-bench-data}
hosts=${STRATA_BENCH_HOSTS:-20}
hours=${STRATA_BENCH_HOURS:-2}
mkdir -p "$work"
cargo build --release -q -p strata-server -p strata-bench
release="$CARGO_TARGET_DIR/release"
bench="$release/strata-bench"
srv="$work/bytes-srv"
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  rm -rf "$srv"
}
trap cleanup EXIT
print_machine "$work"

segment_bytes() { find "$srv/data/log/$1" -name '*.log' -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }
# Waits until the server has sealed its idle active segments, compressed every sealed one and
# its consumers (search indexing above all) have caught up, so that the next phase runs alone;
# prints the seconds that took and the topic $1's bytes before.
settle() {
  local before started backlog lag
  before=$(segment_bytes "$1")
  started=$(date +%s.%N)
  sleep 11
  for _ in $(seq 1200); do
    backlog=$(curl -sf "$url/metrics" | awk '/^strata_log_compression_backlog_bytes / {print $2}')
    lag=$(curl -sf "$url/metrics" | awk '/^strata_consumer_lag_records/ {s += $2} END {print s + 0}')
    [ "${backlog:-0}" = 0 ] && [ "$lag" = 0 ] && break
    sleep 0.5
  done
  echo "{\"topic\": \"$1\", \"bytes_before\": $before, \"settled_after_s\": $(awk -v a="$(date +%s.%N)" -v b="$started" 'BEGIN {printf "%.1f", a - b}')}"
}
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

for codec in ${STRATA_BENCH_CODECS:-none zstd}; do
  rm -rf "$srv"
  mkdir -p "$srv"
  start_strata "$release/strata" "$srv/data" "$srv/serve.log" STRATA_LOG_CODECS_LOGS=$codec \
    STRATA_LOG_CODECS_METRICS=$codec STRATA_LOG_CODECS_SERIES=$codec STRATA_INGEST_RATE_RECORDS_PER_S=1e9 STRATA_INGEST_RATE_RECORDS_BURST=1e9
  echo "== codec $codec: ingest of 1 KiB log lines, closed loop, 30 s"
  $bench ingest --url "$url" --rate 0 --duration-s 30 --connections 8 --batch-records 1000 --json >"$srv/logs.json"
  cat "$srv/logs.json"
  echo "== codec $codec: until the idle segments are sealed and compressed"
  settle logs
  echo "== codec $codec: remote write, $hosts hosts x $hours h"
  $bench remote-write --url "$url/api/v1/write" --label "strata-$codec" --hosts "$hosts" --hours "$hours" --json \
    >"$srv/metrics.json"
  cat "$srv/metrics.json"
  echo "== codec $codec: until the idle segments are sealed and compressed"
  settle metrics
  stop_strata
  logs_bytes=$(segment_bytes logs)
  series_bytes=$(segment_bytes series)
  metrics_bytes=$(($(segment_bytes metrics) + series_bytes))
  raw=$(field "$srv/logs.json" bytes_acknowledged)
  samples=$(field "$srv/metrics.json" samples_acknowledged)
  echo "== codec $codec: log bytes"
  awk -v lb="$logs_bytes" -v raw="$raw" -v mb="$metrics_bytes" -v s="$samples" -v c="$codec" \
    -v lr="$(field "$srv/logs.json" records_per_s)" -v mr="$(field "$srv/metrics.json" acknowledged_samples_per_s)" \
    -v sb="$series_bytes" \
    'BEGIN { printf "{\"codec\": \"%s\", \"logs_log_bytes_per_raw_byte\": %.3f, \"logs_records_per_s\": %.0f, \"metrics_log_bytes_per_sample\": %.2f, \"of_which_series_definitions\": %.2f, \"metrics_samples_per_s\": %.0f}\n", c, lb / raw, lr, mb / s, sb / s, mr }'
done
rm -rf "$srv"
trap - EXIT
