#!/usr/bin/env bash
# Benchmarks of the foundation: the log alone beside dd on the same disk, then HTTP ingest with
# durable acknowledgement. Usage: scripts/bench-foundation.sh [work-dir]   (work-dir on the disk to measure)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
# The same build cache as scripts/test.sh and scripts/strata.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}
work=${1:-./strata-bench-data}
port=${STRATA_BENCH_PORT:-7899}
mkdir -p "$work"
cargo build --release -q -p strata-server -p strata-bench
release="$CARGO_TARGET_DIR/release"
bench="$release/strata-bench"

print_machine "$work"

echo "== log-append (2 GiB, 1 KiB records, 1 MiB batches, 8 appenders over 4 partitions) vs dd"
$bench log-append --dir "$work" --json
echo "== log-append, one appender on one partition"
$bench log-append --dir "$work" --writers 1 --partitions 1 --json

rm -rf "$work/srv"
"$release/strata" serve --data-dir "$work/srv" --http-addr "127.0.0.1:$port" --no-auth 2>"$work/serve.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
url="http://127.0.0.1:$port"
echo "== ingest, closed loop (as fast as it goes)"
$bench ingest --url "$url" --rate 0 --duration-s 30 --connections 8 --batch-records 1000 --server-pid $pid --json
echo "== ingest at 100,000 records/s"
$bench ingest --url "$url" --rate 100000 --duration-s 60 --connections 8 --batch-records 200 --server-pid $pid --json
echo "== ingest at 50,000 records/s"
$bench ingest --url "$url" --rate 50000 --duration-s 60 --connections 8 --batch-records 200 --server-pid $pid --json
kill -TERM $pid
wait $pid || true
trap - EXIT
rm -rf "$work/srv"
