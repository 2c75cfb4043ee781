#!/usr/bin/env bash
# Benchmarks of log search: the indexer alone on 10 million generated lines (throughput, index size,
# memory), search latency over that index, how soon a line ingested into a running server can be
# found through its search API, and searches through the HTTP API over 1 million ingested lines
# beside ripgrep over the same file. Usage: scripts/bench-search.sh [work-dir]   (work-dir on the
# disk to measure; the index of 10 million lines needs about 10 GB there)
# STRATA_BENCH_LINES sets the first part's lines, STRATA_BENCH_HTTP_LINES the last part's.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
# The same build cache as scripts/test.sh and scripts/strata.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}
work=${1:-./strata-bench-data}
lines=${STRATA_BENCH_LINES:-10000000}
http_lines=${STRATA_BENCH_HTTP_LINES:-1000000}
scripts/install-deb.sh ripgrep rg
mkdir -p "$work"
cargo build --release -q -p strata-server -p strata-bench
release="$CARGO_TARGET_DIR/release"
bench="$release/strata-bench"
index="$work/search-index"
srv="$work/search-srv"
ndjson="$work/search-lines.ndjson"
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  rm -rf "$index" "$srv" "$ndjson"
}
trap cleanup EXIT

print_machine "$work"

rm -rf "$index"
echo "== index ($lines lines of about 1 KiB over 6 h, 4 partitions, 1 MiB writes, a commit a second, in process)"
$bench index --dir "$index" --lines "$lines" --json
echo "== search-latency (50 runs per query after 3 warm-up runs, limit 100, newest first)"
$bench search-latency --dir "$index" --json

rm -rf "$srv"
start_strata "$release/strata" "$srv/data" "$work/search-serve.log"
echo "== searchable (100 probes every 200 ms under 5,000 background lines/s, search polled every 20 ms)"
$bench searchable --url "$url" --rate 5000 --probes 100 --json
stop_strata
rm -rf "$srv" "$work/search-serve.log"
rm -rf "$index"

start_strata "$release/strata" "$srv/data" "$work/search-serve.log"
echo "== search-http ($http_lines lines of about 330 bytes ingested, then 500 searches per query through the HTTP API after 50 warm-up runs, limit 100, newest first; rg --count over the same NDJSON, 10 runs after 1; $(rg --version 2>/dev/null | head -1))"
$bench search-http --url "$url" --file "$ndjson" --lines "$http_lines" --event-bytes 320 --json
# Merges go on after the lines are searchable: the index is measured once its size holds still.
size=0
while [ "$size" != "$(du -sb "$srv/data/search" | cut -f1)" ]; do size=$(du -sb "$srv/data/search" | cut -f1); sleep 10; done
echo "== the index of those lines: $size bytes on disk for $(stat -c %s "$ndjson") bytes of NDJSON; by field and part:"
$bench index-usage --dir "$srv/data/search" --raw-bytes "$(stat -c %s "$ndjson")"
stop_strata
rm -rf "$srv" "$work/search-serve.log" "$ndjson"
trap - EXIT
