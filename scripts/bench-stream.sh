#!/usr/bin/env bash
# Stream processing beside Apache Flink on the same machine, in one run: `strata-bench stream`
# runs events through deduplication, enrichment and a tumbling and a hopping rollup over 100,000
# groups, then the 1 s tumbling count/sum alone; PyFlink (a local mini-cluster, installed once by
# scripts/install-pyflink.sh) runs the same tumbling aggregation over as many keys.
# Usage: scripts/bench-stream.sh   (STRATA_BENCH_EVENTS, STRATA_BENCH_GROUPS, STRATA_BENCH_FLINK_EVENTS)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}
events=${STRATA_BENCH_EVENTS:-3000000}
groups=${STRATA_BENCH_GROUPS:-100000}
flink_events=${STRATA_BENCH_FLINK_EVENTS:-1000000}
cargo build --release -q -p strata-server -p strata-bench
bash scripts/install-pyflink.sh
bench="$CARGO_TARGET_DIR/release/strata-bench"
print_machine /tmp
echo "== strata: dedup + enrichment + tumbling 10s + hopping 1m/10s, $groups groups, $events events"
"$bench" stream --events "$events" --groups "$groups" --json
echo "== strata: tumbling 1s count/sum alone, $groups groups, $events events"
"$bench" stream --events "$events" --groups "$groups" --tumbling-only --json
echo "== flink: tumbling 1s count/sum, $groups keys, $flink_events events, parallelism 2"
"${STRATA_FLINK_VENV:-$HOME/.cache/strata-flink}/bin/python" scripts/flink-tumbling.py "$flink_events" "$groups" 2 2>/dev/null | tail -1
echo "== flink: the same with 10,000 events (start-up and shut-down alone)"
"${STRATA_FLINK_VENV:-$HOME/.cache/strata-flink}/bin/python" scripts/flink-tumbling.py 10000 "$groups" 2 2>/dev/null | tail -1
echo "== strata: from a window's end to its rollup answering through PromQL (10 s windows, out of orderness 1 s, lateness 10 s)"
srv=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$srv"' EXIT
start_strata "$CARGO_TARGET_DIR/release/strata" "$srv/data" "$srv/serve.log"
"$bench" rollup-delay --url "$url" --windows 10 --json
stop_strata
