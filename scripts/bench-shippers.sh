#!/usr/bin/env bash
# Small batches at full speed: 1 KiB log events with durable acknowledgement at 100, 512 and 1,000
# records per request, through the native NDJSON endpoint, OTLP/HTTP protobuf and OTLP/gRPC, and
# OTLP/gRPC metric points, in one run (32 connections, closed loop, a fresh server per row, the
# per-tenant ingest rate limit raised so that the server, not its guard, is measured).
# Usage: scripts/bench-shippers.sh [work-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}
work=${1:-./strata-bench-data}
mkdir -p "$work"
# A row's log is written uncompressed while it runs (about 5 GB in 20 s here: sealed segments are
# compressed in the server's idle time) and deleted after it.
need_bytes=8000000000
avail_bytes=$(df -B1 --output=avail "$work" | tail -n 1 | tr -d ' ')
if [ "$avail_bytes" -lt "$need_bytes" ] && [ "${STRATA_BENCH_FORCE:-0}" != 1 ]; then
  echo "bench-shippers: only $((avail_bytes / 1000000000)) GB free in $work, and a row needs about 8: use another disk, or STRATA_BENCH_FORCE=1" >&2
  exit 1
fi
cargo build --release -q -p strata-server -p strata-bench
release="$CARGO_TARGET_DIR/release"
bench="$release/strata-bench"
print_machine "$work"

grpc_port=$(free_port 7950)
trap 'if [ -n "${pid:-}" ]; then kill "$pid" 2>/dev/null || true; fi' EXIT
# Each row gets a fresh server, so that no row runs beside the search indexing and lake writing
# of the rows before it (those run behind a burst, and would take the CPU of the next row).
run() {
  local protocol=$1 kind=$2 batch=$3 to
  rm -rf "$work/srv"
  start_strata "$release/strata" "$work/srv" "$work/serve.log" STRATA_OTLP_GRPC_ADDR="127.0.0.1:$grpc_port" \
    STRATA_INGEST_RATE_RECORDS_PER_S=1e9 STRATA_INGEST_RATE_RECORDS_BURST=1e9
  to=$url
  [ "$protocol" = otlp-grpc ] && to="http://127.0.0.1:$grpc_port"
  echo "== $protocol $kind, $batch records per request"
  $bench ingest --url "$to" --protocol "$protocol" --kind "$kind" --rate 0 --duration-s 20 --connections 32 \
    --batch-records "$batch" --event-bytes 1024 --server-pid "$pid" --json
  stop_strata
}
for batch in 100 512 1000; do
  run native logs "$batch"
  run otlp-http logs "$batch"
done
run otlp-grpc logs 512
run otlp-grpc metrics 512
trap - EXIT
rm -rf "$work/srv"
