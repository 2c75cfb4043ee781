#!/usr/bin/env bash
# Small batches at full speed: 1 KiB log events with durable acknowledgement at 100, 512 and 1,000
# records per request, through the native NDJSON endpoint, OTLP/HTTP protobuf and OTLP/gRPC, and
# OTLP/gRPC metric points, in one run (32 connections, closed loop, a fresh server per row, the
# per-tenant ingest rate limit raised so that the server, not its guard, is measured).
# Every row runs STRATA_BENCH_ROUNDS times (3 by default), the sizes in turn forwards and
# backwards, and the summary at the end gives each row's median and the ratios the targets name.
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
  echo "== round $round: $protocol $kind, $batch records per request"
  local out
  out=$($bench ingest --url "$to" --protocol "$protocol" --kind "$kind" --rate 0 --duration-s 20 --connections 32 \
    --batch-records "$batch" --event-bytes 1024 --server-pid "$pid" --json)
  echo "$out"
  printf '%s\t%s\t%s\t%s\n' "$protocol" "$kind" "$batch" "$out" >>"$rows"
  stop_strata
}
rows="$work/shippers-rows.tsv"
: >"$rows"
# A shared machine's speed drifts within a run (the rows right after a build are the slowest), so
# the sizes take turns going first: a fixed order would bill the drift to one size.
for round in $(seq "${STRATA_BENCH_ROUNDS:-3}"); do
  sizes="100 512 1000"
  [ $((round % 2)) = 0 ] && sizes="1000 512 100"
  for batch in $sizes; do
    run native logs "$batch"
    run otlp-http logs "$batch"
  done
  run otlp-grpc logs 512
  run otlp-grpc metrics 512
done
trap - EXIT
rm -rf "$work/srv"
# The summary: each row's median over the rounds, and the ratios the targets name, per round and
# of the medians.
python3 - "$rows" <<'PY'
import json, statistics, sys
rates = {}
for line in open(sys.argv[1]):
    protocol, kind, batch, out = line.rstrip("\n").split("\t", 3)
    rates.setdefault((protocol, kind, int(batch)), []).append(json.loads(out)["records_per_s"])
print("== summary: events/s (metric points/s for metrics), median of the rounds [each round]")
for (protocol, kind, batch), r in rates.items():
    print(f"{protocol:10} {kind:8} {batch:5} {statistics.median(r):>11,.0f}  [{', '.join(f'{x:,.0f}' for x in r)}]")
def ratios(a, b):
    each = [x / y for x, y in zip(rates[a], rates[b])]
    med = statistics.median(rates[a]) / statistics.median(rates[b])
    return f"{med:.2f} of the medians [{', '.join(f'{x:.2f}' for x in each)}]"
for protocol in ("native", "otlp-http"):
    print(f"{protocol}: 100 against 1,000 records {ratios((protocol, 'logs', 100), (protocol, 'logs', 1000))}")
for batch in (100, 512, 1000):
    print(f"OTLP/HTTP against NDJSON at {batch}: {ratios(('otlp-http', 'logs', batch), ('native', 'logs', batch))}")
print(f"OTLP/gRPC against NDJSON at 512: {ratios(('otlp-grpc', 'logs', 512), ('native', 'logs', 512))}")
PY
