#!/usr/bin/env bash
# PromQL queries beside Prometheus 2.42 and VictoriaMetrics, in one run on the same remote-written
# data: 10,000 series (9,000 request counters, 1,000 latency histogram buckets) every 15 s for the
# past N hours. Each server gets a fresh data directory and the same bytes, one after another; once
# each answers a count of every sample and its background compaction has settled, every query runs
# against each server in turn (warm-up, then N timed runs), the order of servers rotating from one
# query to the next. All three keep running while the others are measured, idle.
#
# Usage: scripts/bench-promql.sh [work-dir]
# Environment (defaults in brackets):
#   STRATA_BENCH_HOURS [24]             hours of data; the 24 h range query needs 24
#   STRATA_BENCH_RUNS [10]              timed runs per query and server, after one warm-up
#   STRATA_BENCH_SEED [1]               generator seed
#   STRATA_BENCH_SAMPLES_MAX [200000000] query sample limit of Prometheus and Strata, the same for
#                                       both; at its default of 50,000,000 Prometheus refuses the 24 h
#                                       range query ("would load too many samples into memory")
#   STRATA_BENCH_SETTLE_S [75]          a server's compaction figures must hold still this long (Strata
#                                       checkpoints every 30 s)
#   STRATA_BENCH_SETTLE_WAIT_S [900]    longest wait for them, per server
#   STRATA_BENCH_KEEP=1                 keep the data directories (the servers are stopped either way)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench-lib.sh
# The same build cache as scripts/test.sh and scripts/strata.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/strata-target}
work=${1:-./strata-bench-data}
hours=${STRATA_BENCH_HOURS:-24}
runs=${STRATA_BENCH_RUNS:-10}
seed=${STRATA_BENCH_SEED:-1}
samples_max=${STRATA_BENCH_SAMPLES_MAX:-200000000}
settle_s=${STRATA_BENCH_SETTLE_S:-75}
settle_wait_s=${STRATA_BENCH_SETTLE_WAIT_S:-900}
mkdir -p "$work"
work=$(cd "$work" && pwd)
run_dir="$work/promql"

log() { echo "bench-promql: $*" >&2; }

scripts/install-prometheus.sh
scripts/install-victoria-metrics.sh
cargo build --release -q -p strata-server -p strata-bench
bin="$CARGO_TARGET_DIR/release"
bench="$bin/strata-bench"

servers=(prometheus victoria strata)
declare -A server_pid=() server_url=() metrics_path=()

# Stops every server started: SIGTERM, SIGKILL after 30 s.
cleanup() {
  local name p
  for name in "${!server_pid[@]}"; do
    p=${server_pid[$name]}
    kill -TERM "$p" 2>/dev/null || continue
    for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ "${STRATA_BENCH_KEEP:-0}" != 1 ]; then rm -rf "$run_dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits up to 60 s for server $1 to answer 2xx at $2 (a path under its URL) while it lives.
await_http() {
  local name=$1 url="${server_url[$1]}$2"
  for _ in $(seq 600); do
    curl -sf "$url" >/dev/null && return 0
    kill -0 "${server_pid[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  log "$name did not answer $url:"
  tail -n 20 "$run_dir/$name.log" >&2
  exit 1
}

# The sum over every series of the metrics named $2 in server $1's /metrics, or "-" if there are none.
metric_total() {
  { curl -sf "${server_url[$1]}${metrics_path[$1]}" || true; } \
    | awk -v name="$2" '$1 == name || index($1, name "{") == 1 { s += $NF; n++ } END { if (n) printf "%.0f\n", s; else print "-" }'
}

# The figures of server $1 that move while it compacts or merges in the background.
background_figures() {
  case $1 in
    prometheus)
      # The head is compacted into 2 h blocks until it spans at most 3 h; a shorter span reads 0.
      local max min span=0
      max=$(metric_total prometheus prometheus_tsdb_head_max_time)
      min=$(metric_total prometheus prometheus_tsdb_head_min_time)
      if [ "$max" != - ] && [ "$min" != - ]; then span=$((max - min)); fi
      echo "$(metric_total prometheus prometheus_tsdb_compactions_total)" \
        "$(metric_total prometheus prometheus_tsdb_blocks_loaded)" "$(( span > 10800000 ? span : 0 ))" ;;
    victoria)
      echo "$(metric_total victoria vm_merges_total)" "$(metric_total victoria vm_active_merges)" \
        "$(metric_total victoria vm_parts)" ;;
    strata)
      echo "$(metric_total strata strata_tsdb_blocks)" "$(metric_total strata strata_tsdb_block_samples)" ;;
  esac
}

# Strata's store checkpoints (cuts closed ranges into blocks, merges days) only when its consumer
# commits, which it does when records arrive: a live server gets them all the time, an idle one
# would keep everything in its head. While it settles it gets one point of its own a poll, of a
# metric no query reads.
heartbeat() {
  [ "$1" = strata ] || return 0
  curl -sf -X POST -H 'Content-Type: application/json' "${server_url[strata]}/ingest/v1/metrics" \
    -d '[{"name":"strata_bench_heartbeat","value":1,"source_id":"strata-bench"}]' >/dev/null || true
}

# Whether figures $2 of server $1 can be final: Prometheus's head spans at most 3 h; Strata has
# checkpointed at least once since it started (its figures appear at a checkpoint).
settled_shape() {
  case $1 in
    prometheus) [ "${2##* }" = 0 ] ;;
    strata) [ "${2%% *}" != - ] ;;
    *) true ;;
  esac
}

# Waits until server $1's background figures have held still for settle_s (and, for Prometheus, its
# head spans at most 3 h), up to settle_wait_s.
settle() {
  local name=$1 last= now since=$SECONDS deadline=$((SECONDS + settle_wait_s))
  while [ $SECONDS -lt "$deadline" ]; do
    heartbeat "$name"
    now=$(background_figures "$name")
    if [ "$now" != "$last" ]; then last=$now; since=$SECONDS; fi
    if [ $((SECONDS - since)) -ge "$settle_s" ] && settled_shape "$name" "$now"; then
      log "$name settled after $((SECONDS - deadline + settle_wait_s)) s: $now"
      return 0
    fi
    sleep 2
  done
  log "$name was still busy after ${settle_wait_s} s ($now); measuring as it stands"
}

# A string field of a flat JSON object: the first "key":value in file $1 (numbers and strings).
json_field() { grep -o "\"$2\":\(\"[^\"]*\"\|[-0-9.eE+]*\)" "$1" | head -n 1 | cut -d: -f2- | tr -d '"'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }
ms() { awk -v a="$1" 'BEGIN { if (a == "") print "n/a"; else if (a < 10) printf "%.2f ms\n", a; else if (a < 100) printf "%.1f ms\n", a; else printf "%.0f ms\n", a }'; }

print_machine "$work"
echo "prometheus: $(prometheus --version 2>&1 | head -n 1)"
echo "victoria-metrics: $(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null || echo unknown)"
echo "strata: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' with uncommitted changes')"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
rm -rf "$run_dir"
mkdir -p "$run_dir"

# ---------------------------------------------------------------------------------------------------
echo "== servers"
printf 'global:\n  scrape_interval: 15s\n' >"$run_dir/prometheus.yml"
port=$(free_port 9190)
server_url[prometheus]="http://127.0.0.1:$port"
metrics_path[prometheus]=/metrics
# No scrape jobs: everything it stores comes from the benchmark.
prometheus --config.file="$run_dir/prometheus.yml" --storage.tsdb.path="$run_dir/prometheus-data" \
  --web.listen-address="127.0.0.1:$port" --web.enable-remote-write-receiver \
  --query.max-samples="$samples_max" --query.timeout=5m 2>"$run_dir/prometheus.log" &
server_pid[prometheus]=$!
await_http prometheus /-/ready

port=$(free_port 8428)
server_url[victoria]="http://127.0.0.1:$port"
metrics_path[victoria]=/metrics
# No response cache: it would answer the timed runs from the warm-up's result. No latency offset:
# the data end now, and the last 30 s would otherwise be left out of every answer.
victoria-metrics -storageDataPath="$run_dir/victoria-data" -httpListenAddr="127.0.0.1:$port" \
  -retentionPeriod=100y -search.latencyOffset=0s -search.disableCache -search.maxQueryDuration=5m \
  -loggerLevel=WARN >"$run_dir/victoria.log" 2>&1 &
server_pid[victoria]=$!
await_http victoria /health

# The ingest rate limit (1,000,000 records/s by default) protects a shared server from one tenant;
# here the one tenant is the benchmark.
start_strata "$bin/strata" "$run_dir/strata-data" "$run_dir/strata.log" \
  STRATA_INGEST_RATE_RECORDS_PER_S=1e9 STRATA_INGEST_RATE_RECORDS_BURST=2e9 \
  STRATA_QUERY_SAMPLES_MAX="$samples_max" STRATA_QUERY_TIMEOUT_MS=300000
server_pid[strata]=$pid
server_url[strata]=$url
metrics_path[strata]=/metrics
for name in "${servers[@]}"; do echo "$name: ${server_url[$name]} (pid ${server_pid[$name]})"; done

# ---------------------------------------------------------------------------------------------------
echo "== load: $hours h of 10,000 series every 15 s, the same bytes to each server"
# One end for all three, so that they get the same bytes.
end_ms=$(( $(date +%s%3N) / 15000 * 15000 ))
for name in "${servers[@]}"; do
  $bench promql-load --url "${server_url[$name]}/api/v1/write" --query-url "${server_url[$name]}" \
    --label "$name" --hours "$hours" --seed "$seed" --end-ms "$end_ms" | tee "$run_dir/load-$name.json"
done
digests=$(for name in "${servers[@]}"; do json_field "$run_dir/load-$name.json" body_digest; done | sort -u | wc -l)
if [ "$digests" != 1 ]; then log "the servers were sent different data"; exit 1; fi
for name in "${servers[@]}"; do settle "$name"; done

# ---------------------------------------------------------------------------------------------------
data_end_s=$(( $(json_field "$run_dir/load-strata.json" data_end_ms) / 1000 ))
hour_ago=$((data_end_s - 3600))
# The long range query covers the whole period: 24 h in the benchmark proper.
period_start=$(awk -v e="$data_end_s" -v h="$hours" 'BEGIN { printf "%d", e - h * 3600 }')
range_1h="--start $hour_ago --end $data_end_s --step 15s"
# Per query: its name in the table, its expression, and how it is evaluated (promql-query's flags).
labels=(
  "sum by (job) (rate(x[5m])), 1 h"
  "sum by (job) (rate(x[5m])), $hours h"
  "histogram_quantile(0.99, sum by (le) (rate(b[5m]))), 1 h"
  "topk(5, sum by (instance) (rate(x[5m]))), 1 h"
  "instant, regex matchers"
)
exprs=(
  "sum by (job) (rate(http_requests_total[5m]))"
  "sum by (job) (rate(http_requests_total[5m]))"
  "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))"
  "topk(5, sum by (instance) (rate(http_requests_total[5m])))"
  "sum by (job, code) (rate(http_requests_total{instance=~\"(api|web|auth)-[0-4][0-9]:8080\", method=~\"GET|POST\"}[5m]))"
)
evals=(
  "$range_1h"
  "--start $period_start --end $data_end_s --step 15s"
  "$range_1h"
  "$range_1h"
  "--time $data_end_s"
)

echo "== queries: $runs timed runs each after a warm-up, servers in rotating order"
for i in "${!labels[@]}"; do
  order=("${servers[@]:$((i % 3))}" "${servers[@]:0:$((i % 3))}")
  for name in "${order[@]}"; do
    # shellcheck disable=SC2086 # the evaluation's flags, split on purpose
    $bench promql-query --url "${server_url[$name]}" --label "$name" --query "${exprs[$i]}" ${evals[$i]} --runs "$runs" \
      | tee "$run_dir/query-$i-$name.json"
  done
done

# ---------------------------------------------------------------------------------------------------
mismatch=0
echo
echo "## PromQL queries beside Prometheus and VictoriaMetrics ($(date -u +%Y-%m-%d), $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/ {print $2}') GiB)"
echo
echo "Data: 10,000 series (9,000 http_requests_total, 1,000 http_request_duration_seconds_bucket), $hours h every 15 s ending at the load,"
echo "$(json_field "$run_dir/load-strata.json" samples) samples remote-written to each server (seed $seed). Median of $runs runs after a warm-up, client-side, whole answer received."
echo
echo "| query | Prometheus 2.42 | VictoriaMetrics | Strata | Strata / Prometheus | VM / Prometheus | series (P/VM/S) |"
echo "|---|---|---|---|---|---|---|"
for i in "${!labels[@]}"; do
  declare -A median=() series=()
  for name in "${servers[@]}"; do
    median[$name]=$(json_field "$run_dir/query-$i-$name.json" median_ms)
    series[$name]=$(json_field "$run_dir/query-$i-$name.json" series)
  done
  counts="${series[prometheus]}/${series[victoria]}/${series[strata]}"
  if [ "${series[prometheus]}" != "${series[strata]}" ] || [ "${series[prometheus]}" != "${series[victoria]}" ]; then
    counts+=" MISMATCH"
    mismatch=1
  fi
  echo "| \`${labels[$i]}\` | $(ms "${median[prometheus]}") | $(ms "${median[victoria]}") | $(ms "${median[strata]}") | $(ratio "${median[strata]}" "${median[prometheus]}") | $(ratio "${median[victoria]}" "${median[prometheus]}") | $counts |"
done
echo
echo "p90, Prometheus / VictoriaMetrics / Strata:"
for i in "${!labels[@]}"; do
  p90s=$(for name in "${servers[@]}"; do ms "$(json_field "$run_dir/query-$i-$name.json" p90_ms)"; done | paste -sd/ | sed 's,/, / ,g')
  echo "- \`${labels[$i]}\`: $p90s"
done
echo "Queries (evaluation flags of strata-bench promql-query):"
for i in "${!labels[@]}"; do
  echo "- \`${exprs[$i]}\` ${evals[$i]}"
done
echo "Target: Strata's median <= 0.7x Prometheus's for every query."
if [ "$mismatch" = 1 ]; then log "the servers answered different numbers of series"; exit 1; fi
