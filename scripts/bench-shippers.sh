#!/usr/bin/env bash
# Small batches at full speed: 1 KiB log events with durable acknowledgement at 100, 512 and 1,000
# records per request, through the native NDJSON endpoint, OTLP/HTTP protobuf and OTLP/gRPC, and
# OTLP/gRPC metric points, all against one server in one run (32 connections, closed loop).
# Usage: scripts/bench-shippers.sh [work-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}
work=${1:-./strata-bench-data}
port=${STRATA_BENCH_PORT:-7899}
grpc_port=$((port + 1))
mkdir -p "$work"
cargo build --release -q -p strata-server -p strata-bench
release="$CARGO_TARGET_DIR/release"
bench="$release/strata-bench"
print_machine "$work"

rm -rf "$work/srv"
STRATA_OTLP_GRPC_ADDR="127.0.0.1:$grpc_port" "$release/strata" serve --data-dir "$work/srv" \
  --http-addr "127.0.0.1:$port" --no-auth 2>"$work/serve.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
run() {
  local protocol=$1 kind=$2 batch=$3 url="http://127.0.0.1:$port"
  [ "$protocol" = otlp-grpc ] && url="http://127.0.0.1:$grpc_port"
  echo "== $protocol $kind, $batch records per request"
  $bench ingest --url "$url" --protocol "$protocol" --kind "$kind" --rate 0 --duration-s 20 --connections 32 \
    --batch-records "$batch" --event-bytes 1024 --server-pid $pid --json
}
for batch in 100 512 1000; do
  run native logs "$batch"
  run otlp-http logs "$batch"
done
run otlp-grpc logs 512
run otlp-grpc metrics 512
kill -TERM $pid
wait $pid || true
trap - EXIT
rm -rf "$work/srv"
