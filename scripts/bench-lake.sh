#!/usr/bin/env bash
# The data lake beside DuckDB, in one run: `strata-bench lake write` writes generated events to
# the `events` Delta table through the lake's sink in process (MB/s of raw event JSON, size on
# disk); `strata-bench lake query` times analytical queries through Strata's SQL; then
# scripts/bench-lake-duckdb.py runs the same SQL text in DuckDB (from PyPI, installed once by
# scripts/install-lake-readers.sh) over the Parquet files the Delta log lists as active, checks
# both answer alike and prints the ratios. The lake is written outside the clone and deleted.
# Usage: scripts/bench-lake.sh   (STRATA_BENCH_EVENTS, STRATA_BENCH_RUNS, STRATA_BENCH_DIR: where the
# lake is written, /tmp by default)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}
events=${STRATA_BENCH_EVENTS:-10000000}
runs=${STRATA_BENCH_RUNS:-5}
cargo build --release -q -p strata-bench
bash scripts/install-lake-readers.sh
python="${STRATA_LAKE_VENV:-$HOME/.cache/strata-lake-readers}/bin/python"
bench="$CARGO_TARGET_DIR/release/strata-bench"
work=$(mktemp -d "${STRATA_BENCH_DIR:-/tmp}/strata-bench-lake.XXXXXX")
trap 'rm -rf "$work"' EXIT
print_machine "$work"
echo "== strata: write $events events to the lake's events table"
"$bench" lake write --dir "$work/lake" --events "$events" --breakdown --json | tee "$work/write.json"
echo "== strata: queries over the events table (1 warm-up, then the median of $runs timed runs)"
"$bench" lake query --dir "$work/lake" --events "$events" --runs "$runs" >"$work/strata.jsonl"
cut -c1-160 "$work/strata.jsonl"
echo "== duckdb: the same SQL over the same Parquet files"
"$python" scripts/bench-lake-duckdb.py --lake "$work/lake" --strata "$work/strata.jsonl" \
  --write "$work/write.json" --runs "$runs"
